#!/bin/bash
# Install libbnn into a temporary prefix and build three programs the way a
# user would, with nothing but `pkg-config bnn`: a C program against the
# shared library, a C++17 program, and a fully static C program.  Then the
# same C program against the build tree through the uninstalled .pc file,
# against a staged install found through PKG_CONFIG_SYSROOT_DIR, and
# against a staged install moved elsewhere and found through
# `pkg-config --define-prefix`.
#
# usage: install_consumers.sh SOURCE_ROOT [MESON]
set -euo pipefail
# (No `grep -q` after a pipe: with pipefail, grep quitting early can kill
# the writer with SIGPIPE and turn a match into a failure.)

root=$(cd "$1" && pwd)
meson=${2:-meson}
cc=${CC:-cc}
cxx=${CXX:-c++}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

step() { echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }
quiet() { # run a command, show its output only if it fails
    if ! "$@" >"$tmp/log" 2>&1; then
        cat "$tmp/log"
        fail "$*"
    fi
}

step "configure, build and install into $prefix"
quiet "$meson" setup "$tmp/build" "$root" --prefix="$prefix" \
    -Dtests=false -Dexamples=false -Dbench=false -Dmpi=disabled \
    -Dplots=disabled -Ddocs=disabled -Dfuzz=false
quiet "$meson" compile -C "$tmp/build"
quiet "$meson" install -C "$tmp/build"

pc=$(find "$prefix" -name bnn.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "bnn.pc not installed"
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir bnn)
includedir=$(pkg-config --variable=includedir bnn)
version=$(sed -n 's/^#define BNN_VERSION_STRING "\(.*\)"$/\1/p' "$root/include/bnn.h")

step "installed files"
[ "$(pkg-config --modversion bnn)" = "$version" ] ||
    fail "bnn.pc version $(pkg-config --modversion bnn), header $version"
case $libdir in "$prefix"/*) ;; *) fail "libdir $libdir outside $prefix" ;; esac
for f in "$includedir/bnn.h" "$libdir/libbnn.so.0" "$libdir/libbnn.so" \
    "$libdir/libbnn.a"; do
    [ -e "$f" ] || fail "$f not installed"
done
# Only the public header is installed: the internal ones are not an API.
extra=$(find "$includedir" -type f ! -name bnn.h)
[ -z "$extra" ] || fail "unexpected headers installed: $extra"
soname=$(readelf -d "$libdir/libbnn.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libbnn.so.0 ] || fail "SONAME is '$soname'"

step "pkg-config metadata"
requires=$(pkg-config --print-requires-private bnn)
echo "Requires.private: $requires"
echo "$requires" | grep -E '^(openblas|blas-netlib)' >/dev/null ||
    fail "Requires.private names no BLAS"
static_libs=$(pkg-config --static --libs bnn)
echo "static libs: $static_libs"
echo " $static_libs " | grep -- ' -lm ' >/dev/null || fail "no -lm for static linking"
# A shared link needs nothing but libbnn itself.
shared_libs=$(pkg-config --libs bnn | xargs)
[ "$shared_libs" = "-L$libdir -lbnn" ] || fail "unexpected --libs: $shared_libs"

src=$root/tests/consumers
# shellcheck disable=SC2046 # pkg-config output is a word list
{
    step "C consumer, shared library"
    quiet "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror \
        "$src/consumer.c" -o "$tmp/c_shared" $(pkg-config --cflags --libs bnn) -lm
    LD_LIBRARY_PATH=$libdir ldd "$tmp/c_shared" | grep "$libdir/libbnn.so.0" >/dev/null ||
        fail "c_shared does not load the installed libbnn"
    LD_LIBRARY_PATH=$libdir "$tmp/c_shared" || fail "c_shared exited $?"

    step "C++17 consumer, shared library"
    quiet "$cxx" -std=c++17 -Wall -Wextra -Wpedantic -Werror \
        "$src/consumer.cpp" -o "$tmp/cxx_shared" $(pkg-config --cflags --libs bnn)
    LD_LIBRARY_PATH=$libdir "$tmp/cxx_shared" || fail "cxx_shared exited $?"

    step "C consumer, fully static"
    quiet "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror -static \
        "$src/consumer.c" -o "$tmp/c_static" $(pkg-config --static --cflags --libs bnn)
    if readelf -d "$tmp/c_static" | grep NEEDED >/dev/null; then
        fail "c_static has dynamic dependencies"
    fi
    "$tmp/c_static" || fail "c_static exited $?"
}

# The .pc file names its folders relative to ${prefix}.
grep -x 'libdir=${prefix}/.*' "$pc" >/dev/null || fail "bnn.pc: libdir not relative to prefix"
grep -x 'includedir=${prefix}/.*' "$pc" >/dev/null ||
    fail "bnn.pc: includedir not relative to prefix"

# c_program NAME: build consumer.c with the current pkg-config answer, run
# it with LIBDIR on the loader path, check it loaded libbnn from LIBDIR.
c_program() { # name libdir [pkg-config options...]
    local name=$1 dir=$2
    shift 2
    # shellcheck disable=SC2046
    quiet "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror \
        "$src/consumer.c" -o "$tmp/$name" $(pkg-config "$@" --cflags --libs bnn) -lm
    LD_LIBRARY_PATH=$dir ldd "$tmp/$name" | grep "$dir/libbnn.so.0" >/dev/null ||
        fail "$name does not load libbnn from $dir"
    LD_LIBRARY_PATH=$dir "$tmp/$name" || fail "$name exited $?"
}

step "C consumer against the build tree (meson-uninstalled/bnn-uninstalled.pc)"
[ -f "$tmp/build/meson-uninstalled/bnn-uninstalled.pc" ] ||
    fail "no meson-uninstalled/bnn-uninstalled.pc in the build folder"
PKG_CONFIG_PATH=$tmp/build/meson-uninstalled c_program c_uninstalled "$tmp/build"
case $(PKG_CONFIG_PATH=$tmp/build/meson-uninstalled pkg-config --cflags bnn) in
*"-I$root/include"*) ;;
*) fail "uninstalled cflags do not name $root/include" ;;
esac

step "C consumer against a staged install (meson install --destdir, PKG_CONFIG_SYSROOT_DIR)"
stage=$tmp/stage
quiet "$meson" install -C "$tmp/build" --destdir "$stage"
PKG_CONFIG_PATH=$stage$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$stage \
    c_program c_sysroot "$stage$libdir"

step "C consumer against a staged install moved elsewhere (pkg-config --define-prefix)"
# --define-prefix takes the prefix as two folders above the .pc file, so
# this install uses a one-level libdir.
quiet "$meson" configure "$tmp/build" -Dprefix=/opt/libbnn-staged -Dlibdir=lib
quiet "$meson" install -C "$tmp/build" --destdir "$tmp/stage2"
mv "$tmp/stage2/opt/libbnn-staged" "$tmp/moved"
PKG_CONFIG_PATH=$tmp/moved/lib/pkgconfig c_program c_relocated "$tmp/moved/lib" --define-prefix
[ "$(PKG_CONFIG_PATH=$tmp/moved/lib/pkgconfig pkg-config --define-prefix \
    --variable=includedir bnn)" = "$tmp/moved/include" ] ||
    fail "relocated includedir is not $tmp/moved/include"

echo "ok: installed library usable from C, C++17 and static C; build tree, staged and relocated installs usable through pkg-config"
