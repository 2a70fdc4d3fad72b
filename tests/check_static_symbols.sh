#!/bin/bash
# In libbnn.a the visibility attributes do not hide anything: every
# non-static function of every module is a global symbol of the
# application that links it.  So each one must carry its module's prefix
# (tensor_* in tensor.c, ...) or be a public bnn_* function listed in
# tests/symbols.txt, and an application's own names cannot collide.
#
# usage: check_static_symbols.sh LIBBNN_A SOURCE_ROOT [NM]
set -euo pipefail

lib=$1
root=$2
nm=${3:-nm}

status=0
obj=
while read -r line; do
    case $line in
    '') continue ;;
    *:) obj=${line%:} ; continue ;;
    esac
    # "<value> <type> <name>"; undefined symbols are already excluded.
    read -r _ _ sym _ <<<"$line"
    sym=${sym%%@*} # bnn_x@BNN_0, bnn_x@@BNN_0.2: the versions of one function
    [ -n "${sym:-}" ] || continue
    # meson names objects after their path, e.g. src_tensor.c.o.
    module=${obj%.c.o}
    module=${module#src_}
    prefix=${sym%%_*}
    case $sym in
    bnn_*)
        if ! grep -qx "$sym" "$root/tests/symbols.txt"; then
            echo "FAIL: $obj defines $sym: bnn_ is reserved for the API in tests/symbols.txt"
            status=1
        fi
        ;;
    *)
        # The module name, possibly lengthened (optim.c: optimizer_step).
        case $prefix in
        "$module"*) ;;
        *) echo "FAIL: $obj defines $sym without the prefix ${module}_"; status=1 ;;
        esac
        ;;
    esac
done < <("$nm" -g --defined-only "$lib")
[ $status -ne 0 ] || echo "ok: every global symbol of $(basename "$lib") is bnn_* or module-prefixed"
exit $status
