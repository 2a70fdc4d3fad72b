#!/bin/bash
# The exported ABI has three written descriptions that must never drift:
# the BNN_API declarations in include/bnn.h, the linker version script
# src/bnn.map and the committed list tests/symbols.txt.  This checks that the
# three agree exactly and that the shared library exports exactly that list
# (nothing internal leaks, nothing declared is missing).
#
# usage: check_symbols.sh LIBBNN_SO SOURCE_ROOT [NM]
set -euo pipefail

lib=$1
root=$2
nm=${3:-nm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Declarations may span lines, but the name and its '(' always share the
# line that starts with BNN_API.
grep -E '^BNN_API[[:space:]]' "$root/include/bnn.h" |
    sed -E 's/^BNN_API[^(]*[[:space:]*]([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*\(.*/\1/' |
    LC_ALL=C sort >"$tmp/header"

# Names listed in the global: sections of the version script (a function
# whose struct grew is listed in the old node and the new one).
awk '/^[[:space:]]*global:/ {g = 1; next}
     /^[[:space:]]*local:/  {g = 0}
     /^[[:space:]]*}/       {g = 0}
     g && match($0, /[A-Za-z_][A-Za-z0-9_]*[[:space:]]*;/) {
         s = substr($0, RSTART, RLENGTH); sub(/[[:space:]]*;$/, "", s); print s
     }' "$root/src/bnn.map" | LC_ALL=C sort -u >"$tmp/map"

grep -vE '^[[:space:]]*(#|$)' "$root/tests/symbols.txt" | LC_ALL=C sort >"$tmp/list"

# Defined, global symbols of the dynamic table, without @VERSION suffixes.
# The version node itself shows up as an absolute symbol ('A') and is not
# a function of the API.
"$nm" -D --defined-only "$lib" |
    awk 'NF >= 3 && $2 ~ /^[TDBRVWGSi]$/ {print $3}' |
    sed -E 's/@.*//' | LC_ALL=C sort -u >"$tmp/exported"

status=0
report() { # name-a file-a name-b file-b
    if ! cmp -s "$2" "$4"; then
        echo "FAIL: $1 and $3 differ ('<' only in $1, '>' only in $3):"
        diff "$2" "$4" | grep -E '^[<>]' || true
        status=1
    else
        echo "ok: $1 == $3 ($(wc -l <"$2") symbols)"
    fi
}

report include/bnn.h "$tmp/header" tests/symbols.txt "$tmp/list"
report src/bnn.map "$tmp/map" tests/symbols.txt "$tmp/list"
comm -23 "$tmp/exported" "$tmp/list" >"$tmp/leaked"
comm -13 "$tmp/exported" "$tmp/list" >"$tmp/missing"
if [ -s "$tmp/leaked" ]; then
    echo "FAIL: exported by $(basename "$lib") but not in tests/symbols.txt:"
    sed 's/^/  /' "$tmp/leaked"
    status=1
fi
if [ -s "$tmp/missing" ]; then
    echo "FAIL: in tests/symbols.txt but not exported (not defined with BNN_API?):"
    sed 's/^/  /' "$tmp/missing"
    status=1
fi
if [ ! -s "$tmp/leaked" ] && [ ! -s "$tmp/missing" ]; then
    echo "ok: $(basename "$lib") exports exactly tests/symbols.txt"
fi

if [ "$(wc -l <"$tmp/list")" -eq 0 ]; then
    echo "FAIL: tests/symbols.txt is empty"
    status=1
fi
exit $status
