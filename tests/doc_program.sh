#!/bin/bash
# The complete program of docs/getting-started.md ("The whole program"),
# extracted, compiled against this build (its meson-uninstalled .pc file)
# and run: the guide's code must build warning-free and do what it says.
#
# usage: doc_program.sh SOURCE_ROOT BUILD_ROOT
set -euo pipefail
root=$1
build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '/^### The whole program/ {on = 1; next}
     on && /^```c/ {code = 1; next}
     code && /^```/ {exit}
     code {print}' "$root/docs/getting-started.md" >"$tmp/first.c"
[ -s "$tmp/first.c" ] || { echo "FAIL: no program found in getting-started.md"; exit 1; }
export PKG_CONFIG_PATH=$build/meson-uninstalled
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Wpedantic -Werror "$tmp/first.c" -o "$tmp/first" \
    $(pkg-config --cflags --libs bnn) -lm
LD_LIBRARY_PATH=$build "$tmp/first" | tee "$tmp/out"
# 100 epochs reported every 20, then one line per query point; the points
# far inside and far outside the circle are answered with confidence.
[ "$(grep -c '^epoch' "$tmp/out")" -eq 5 ] || { echo "FAIL: epoch lines"; exit 1; }
grep -q '^(0.0, 0.0): class 1, p = 0\.9' "$tmp/out" || { echo "FAIL: (0,0) not inside"; exit 1; }
grep -q '^(0.9, 0.9): class 0, p = 0\.9' "$tmp/out" || { echo "FAIL: (0.9,0.9) not outside"; exit 1; }
# and, as the guide says, the point near the boundary less so on every count
awk -F'[=,%]' '/^\(/ {split($0, a, "p = "); split(a[2], b, ","); p[NR] = b[1] + 0;
    split($0, c, "entropy "); split(c[2], d, ","); e[NR] = d[1] + 0;
    split($0, m, "MI "); mi[NR] = m[2] + 0; n = NR}
    END {ok = p[n] < p[n-1] && p[n] < p[n-2] && e[n] > e[n-1] && e[n] > e[n-2] &&
         mi[n] > mi[n-1] && mi[n] > mi[n-2]; exit !ok}' "$tmp/out" ||
    { echo "FAIL: the third point is not the least certain"; exit 1; }
echo "ok: the getting-started program builds and answers as described"
