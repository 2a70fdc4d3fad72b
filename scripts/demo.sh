#!/usr/bin/env bash
# The MNIST demo from start to finish: install what is missing, fetch and
# convert the data, build a release build, train a Bayesian network with the
# default configuration, evaluate it (accuracy, calibration, refusal) and
# draw the figures.  Both data sets are fetched: the other one serves as
# out-of-distribution images (Fashion-MNIST for the digits and the digits for
# Fashion-MNIST), beside rotated test images and noise.
#
# usage: bash scripts/demo.sh [mnist10k|fashion] [bnn_mnist train options...]
#   e.g. bash scripts/demo.sh
#        bash scripts/demo.sh mnist10k --pyro-config
#        bash scripts/demo.sh fashion --epochs 3
#
# Results go to out/<data set>/ (out/<data set>-pyro/ with --pyro-config):
# model.bnn, report.json, plots/ (emptied first).
# The build folder is build-demo-release/ (configured once, rebuilt as needed).
# Set BNN_DEMO_SKIP_APT=1 to skip the package check.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

set_name=mnist10k
case ${1:-} in
    mnist10k|fashion) set_name=$1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

say() { printf '\n== %s\n' "$*"; }

# ---- packages: the CI list minus the test-only tools, plus node for the data
packages=(build-essential pkg-config meson ninja-build check libsubunit-dev
          libopenblas-dev zlib1g-dev libcairo2-dev)
if [ "${BNN_DEMO_SKIP_APT:-0}" != 1 ]; then
    missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed ||
            missing+=("$p")
    done
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    # A nodejs build that bundles npm conflicts with Debian's npm package.
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        export DEBIAN_FRONTEND=noninteractive
        if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null; then
            "${sudo[@]}" apt-get update -q </dev/null
            "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
        fi
    fi
fi

say "data: $set_name (and the other set, as out-of-distribution images)"
bash "$here/get-data.sh" all

build=build-demo-release
say "build: $build"
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" --buildtype=release -Dtests=false -Dbench=false
fi
ninja -C "$build" examples/mnist/bnn_mnist
prog=$build/examples/mnist/bnn_mnist

# OpenBLAS keeps its idle threads spinning (sched_yield) for 2^28 cycles
# after each product, which takes the cores that the library's threads need
# for the per-parameter passes between products; 2^4 lets them sleep at
# once (training 10 epochs: 11.0 s -> 9.0 s here).  A caller's own setting
# wins.
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"

# Fashion-MNIST has 6.75 times more training images: 5 epochs (the figure
# the README gives) keep the demo within a few minutes (pass --epochs to
# choose).
extra=()
[ "$set_name" = fashion ] && extra=(--epochs 5)

# One folder per data set and configuration, emptied of earlier plots, so
# that the pictures always come from this run.
out=out/$set_name
case " $* " in *" --pyro-config "*) out=out/$set_name-pyro ;; esac
rm -rf "$out/plots"
mkdir -p "$out"
say "train and evaluate"
start=$SECONDS
"$prog" train --data "data/$set_name" --out "$out/model.bnn" --report "$out/report.json" \
    --plots "$out/plots" "${extra[@]}" "$@"

say "done in $((SECONDS - start)) s; results in $out/"
echo "  model      $out/model.bnn    (evaluate again: $prog evaluate --data data/$set_name --load $out/model.bnn)"
echo "  figures    $out/report.json"
if [ -d "$out/plots" ]; then
    echo "  pictures   $out/plots/  ($(ls "$out/plots" | wc -l) PNG files)"
fi
