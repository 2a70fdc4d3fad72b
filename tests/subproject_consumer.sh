#!/bin/bash
# Build tests/subproject_consumer with libbnn vendored as a meson subproject
# (subprojects/libbnn links to this source tree), then run its test.
#
# usage: subproject_consumer.sh SOURCE_ROOT [MESON]
set -euo pipefail

root=$(cd "$1" && pwd)
meson=${2:-meson}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cp -r "$root/tests/subproject_consumer" "$tmp/app"
mkdir "$tmp/app/subprojects"
ln -s "$root" "$tmp/app/subprojects/libbnn"

run() {
    if ! "$@" >"$tmp/log" 2>&1; then
        cat "$tmp/log"
        echo "FAIL: $*"
        exit 1
    fi
}
# Force the fallback so that an installed libbnn cannot stand in for it.
run "$meson" setup "$tmp/build" "$tmp/app" --force-fallback-for=bnn
grep -q 'Subproject libbnn' "$tmp/build/meson-logs/meson-log.txt" ||
    { echo "FAIL: libbnn was not built as a subproject"; exit 1; }
run "$meson" compile -C "$tmp/build"
# The consumer alone: libbnn's own tests are not this project's business.
"$tmp/build/consumer"
echo "ok: libbnn works as a meson subproject"
