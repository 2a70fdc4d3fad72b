#!/bin/sh
# Run an example program and check what it prints.
#   check_example.sh custom_loop|regression|cpp|from_point EXE [ARGS...]
# The output is echoed first, so a failing check can be read in the log.
set -u
kind=$1
shift
out=$("$@")
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 0 ]; then
    echo "FAIL: $1 exited with status $rc"
    exit 1
fi

case $kind in
custom_loop)
    # Validation accuracy of the reloaded model, and far points more
    # uncertain than points on the spirals (both entropy and MI, averaged).
    printf '%s\n' "$out" | awk -v min_acc=0.95 '
        /^validation accuracy:/ { acc = $3; seen_acc = 1 }
        /^reloaded / { reloaded = 1 }
        $1 == "near" || $1 == "far" {
            for (i = 1; i < NF; i++) {
                if ($i == "entropy") h[$1] += $(i + 1)
                if ($i == "MI") mi[$1] += $(i + 1)
            }
            cnt[$1]++
        }
        END {
            if (!reloaded) { print "FAIL: no reload line"; exit 1 }
            if (!seen_acc) { print "FAIL: no validation accuracy line"; exit 1 }
            if (acc + 0 <= min_acc) {
                printf "FAIL: validation accuracy %s <= %s\n", acc, min_acc; exit 1
            }
            if (cnt["near"] < 1 || cnt["far"] < 1) { print "FAIL: missing records"; exit 1 }
            hn = h["near"] / cnt["near"]; hf = h["far"] / cnt["far"]
            mn = mi["near"] / cnt["near"]; mf = mi["far"] / cnt["far"]
            printf "check: accuracy %s > %s; entropy near %.4f far %.4f; MI near %.4f far %.4f\n",
                acc, min_acc, hn, hf, mn, mf
            if (!(hf > hn) || !(mf > mn)) { print "FAIL: far points are not more uncertain"; exit 1 }
        }' || exit 1
    ;;
regression)
    # Band width (last column of the grid table) far from the data, at
    # |x| = 2, against the median width over the data [-1, 0.2] U
    # [0.6, 1] (leaving out 0.05 at the ends of each interval).  The width in
    # the gap (0.2, 0.6) is reported, not required: mean-field posteriors
    # barely widen between clusters of data.
    printf '%s\n' "$out" | awk '
        NF == 5 && $1 ~ /^-?[0-9.]+$/ {
            x = $1 + 0; w = $5 + 0; rows++
            if (x == -2 || x == 2) {
                far_min = (far_n++ == 0 || w < far_min) ? w : far_min
            }
            if (x >= 0.35 && x <= 0.45) { gap_min = (gap_n++ == 0 || w < gap_min) ? w : gap_min }
            if ((x >= -0.95 && x <= 0.15) || (x >= 0.65 && x <= 0.95)) in_w[in_n++] = w
        }
        END {
            if (far_n != 2 || gap_n < 1 || in_n < 10) {
                printf "FAIL: grid table incomplete (%d rows)\n", rows; exit 1
            }
            for (i = 1; i < in_n; i++) {          # insertion sort (POSIX awk)
                v = in_w[i]
                for (j = i - 1; j >= 0 && in_w[j] > v; j--) in_w[j + 1] = in_w[j]
                in_w[j + 1] = v
            }
            med = in_n % 2 ? in_w[(in_n - 1) / 2] : (in_w[in_n / 2 - 1] + in_w[in_n / 2]) / 2
            printf "check: median band on the data %.4f; narrowest at |x| = 2 %.4f (x%.2f); gap %.4f (x%.2f)\n",
                med, far_min, far_min / med, gap_min, gap_min / med
            if (!(far_min > 3 * med)) { print "FAIL: the band far from the data is not 3 times wider than on it"; exit 1 }
        }' || exit 1
    ;;
from_point)
    # The converted guide answers as the point network did (MOPED keeps the
    # means), fine-tuning keeps the accuracy, and far points are more
    # uncertain than test points afterwards (entropy and MI).
    printf '%s\n' "$out" | awk '
        $2 == "accuracy" { acc[$1] = $3; seen[$1] = 1
            for (i = 4; i < NF; i += 2) v[$1, $i] = $(i + 1) }
        END {
            if (!seen["point"] || !seen["converted"] || !seen["finetuned"]) {
                print "FAIL: missing stage lines"; exit 1
            }
            p = acc["point"]; c = acc["converted"]; f = acc["finetuned"]
            printf "check: accuracy point %s converted %s finetuned %s; MI test %s far %s\n",
                p, c, f, v["finetuned", "MI"], v["finetuned", "far_MI"]
            if (p + 0 <= 0.95) { print "FAIL: the point network did not learn"; exit 1 }
            d = c - p; if (d < 0) d = -d
            if (d > 0.01) { print "FAIL: the converted guide does not answer as the point network"; exit 1 }
            if (f + 0 < p - 0.02) { print "FAIL: fine-tuning lost accuracy"; exit 1 }
            if (!(v["finetuned", "far_MI"] > v["finetuned", "MI"]) ||
                !(v["finetuned", "far_entropy"] > v["finetuned", "entropy"])) {
                print "FAIL: far points are not more uncertain"; exit 1
            }
        }' || exit 1
    ;;
cpp)
    printf '%s\n' "$out" | awk -v min_acc=0.93 '
        /^test accuracy:/ { acc = $3; seen = 1 }
        /^caught expected error \(BNN_E_INVALID\)/ { caught = 1 }
        END {
            if (!seen || acc + 0 <= min_acc) { printf "FAIL: test accuracy %s <= %s\n", acc, min_acc; exit 1 }
            if (!caught) { print "FAIL: the invalid call did not throw BNN_E_INVALID"; exit 1 }
            printf "check: accuracy %s > %s; invalid call threw\n", acc, min_acc
        }' || exit 1
    ;;
*)
    echo "unknown example kind $kind"
    exit 2
    ;;
esac
