#!/bin/bash
# ABI of libbnn.so against the committed baseline abi/libbnn.abi.
#
# Functions may be added (--no-added-syms); a removed function or a change
# to any type reachable from the public header (a struct field, an enum
# value, a parameter) fails.  Only types from include/ count: the internal
# structs behind the opaque handles may change freely.
#
# usage: abi_check.sh LIBBNN_SO SOURCE_ROOT           compare
#        abi_check.sh LIBBNN_SO SOURCE_ROOT --update  rewrite the baseline
# The library must carry DWARF (-g: buildtype debug or debugoptimized).
set -euo pipefail

lib=$1
root=$2
mode=${3:-check}
baseline=$root/abi/libbnn.abi

for tool in abidw abidiff; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: $tool not found (Debian package abigail-tools)"
        exit 77
    fi
done
if ! readelf -S "$lib" | grep '\.debug_info' >/dev/null; then
    echo "SKIP: $lib has no debug info; use buildtype=debugoptimized"
    exit 77
fi

if [ "$mode" = --update ]; then
    mkdir -p "$(dirname "$baseline")"
    abidw --headers-dir "$root/include" --drop-private-types \
        --no-elf-needed --drop-undefined-syms \
        --no-corpus-path --no-comp-dir-path --short-locs \
        --out-file "$baseline" "$lib"
    echo "wrote $baseline"
    exit 0
fi

if [ ! -f "$baseline" ]; then
    echo "FAIL: no baseline $baseline (create it with: $0 $lib $root --update)"
    exit 1
fi

rc=0
abidiff --no-added-syms --drop-private-types --fail-no-debug-info \
    --headers-dir2 "$root/include" "$baseline" "$lib" || rc=$?
# abidiff's exit status is a bit set: 1 error, 2 usage, 4 ABI change,
# 8 incompatible change.  With additions hidden, any bit is a failure.
if [ $rc -ne 0 ]; then
    echo "FAIL: abidiff exit status $rc against $baseline"
    echo "If the change is intended, refresh the baseline (see README.md)."
    exit 1
fi
echo "ok: ABI compatible with $baseline"
