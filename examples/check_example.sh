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
    # Learned noise and the split (rows of the grid table: x mean sd_alea
    # true_sd sd_epis width95 refused).  On the data [-1, 0.2] U [0.6, 1]
    # (leaving out 0.05 at the ends): the aleatoric sd within 15% of the
    # true noise in the median and growing with it (true ratio 3.3 from
    # x = -0.9 to 0.9; above 2.4 asked); far from it, at |x| = 2 and 1.5 or
    # more: an epistemic sd 5 times the median on the data and every input
    # refused.  The single learned sigma within 15% of the noise's root mean
    # square, the 95% interval covering 92 to 99% of held-out data, and a
    # PNG.  (Over data seeds 1 to 6 and three OpenBLAS kernels: sigma within
    # 8%, median error at most 7.8%, ratio at least 2.92, coverage 0.950 to
    # 0.978.)
    png=$2
    printf '%s\n' "$out" | awk '
        /^learned sigma [0-9]/ { sig = $3; rms = $7 }
        /^held-out:/ { cover = $5 }
        NF == 7 && $1 ~ /^-?[0-9.]+$/ {
            x = $1 + 0; rows++
            if ((x >= -0.95 && x <= 0.15) || (x >= 0.65 && x <= 0.95)) {
                e = ($3 - $4) / $4; if (e < 0) e = -e
                rel[n_in] = e; epi[n_in] = $5; n_in++
                refused_in += $7
            }
            if (x == -0.9) a_lo = $3
            if (x == 0.9) a_hi = $3
            if (x <= -1.5 || x >= 1.5) { n_far++; refused_far += $7 }
            if (x == -2 || x == 2) far_epi[n_end++] = $5
        }
        function median(a, n,    i, j, v) {
            for (i = 1; i < n; i++) {             # insertion sort (POSIX awk)
                v = a[i]
                for (j = i - 1; j >= 0 && a[j] > v; j--) a[j + 1] = a[j]
                a[j + 1] = v
            }
            return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2
        }
        END {
            if (sig == "" || cover == "" || n_in < 10 || n_end != 2 || a_lo == "" || a_hi == "") {
                printf "FAIL: output incomplete (%d rows)\n", rows; exit 1
            }
            r = median(rel, n_in); me = median(epi, n_in)
            s = (sig - rms) / rms; if (s < 0) s = -s
            printf "check: sigma %s vs rms %s (%.1f%%); aleatoric median error %.1f%%, x0.9/x-0.9 %.2f; epistemic far %s %s vs %.4f; refused far %d/%d, on data %d/%d; held-out coverage %s\n",
                sig, rms, 100 * s, 100 * r, a_hi / a_lo, far_epi[0], far_epi[1], me,
                refused_far, n_far, refused_in, n_in, cover
            if (!(s < 0.15)) { print "FAIL: learned sigma off the noise rms"; exit 1 }
            if (!(r < 0.15)) { print "FAIL: aleatoric sd off the true noise"; exit 1 }
            if (!(a_hi / a_lo > 2.4)) { print "FAIL: aleatoric sd does not grow with the noise"; exit 1 }
            if (!(far_epi[0] > 5 * me && far_epi[1] > 5 * me)) { print "FAIL: epistemic sd does not grow away from the data"; exit 1 }
            if (refused_far != n_far) { print "FAIL: inputs far from the data accepted"; exit 1 }
            if (!(refused_in < n_in / 4)) { print "FAIL: too many inputs on the data refused"; exit 1 }
            if (!(cover > 0.92 && cover < 0.99)) { print "FAIL: held-out coverage of the 95% interval"; exit 1 }
        }' || exit 1
    sig=$(od -An -tx1 -N8 "$png" | tr -d ' \n')
    if [ "$sig" != "89504e470d0a1a0a" ]; then
        echo "FAIL: $png is not a PNG ($sig)"; exit 1
    fi
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
