/* Evaluation helpers: accuracy, NLL, Brier score, calibration error,
 * risk-coverage curves and the refusal report of the original program. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "eval.h"

/* Below this a probability is treated as this, so one confident mistake
 * gives a large but finite NLL. */
#define NLL_FLOOR 1e-12

BNN_API void bnn_metrics_init(bnn_metrics *m)
{
    if (m)
        *m = (bnn_metrics){.struct_size = sizeof *m};
}

BNN_API void bnn_refusal_report_init(bnn_refusal_report *r)
{
    if (r)
        *r = (bnn_refusal_report){.struct_size = sizeof *r};
}

BNN_API bnn_status bnn_eval_metrics(const float *probs, const int32_t *labels,
                                    size_t n, size_t classes, size_t ece_bins,
                                    bnn_metrics *out)
{
    API_ENTRY();
    size_t total;
    if (!probs || !labels || !out)
        return error_set(BNN_E_INVALID, "bnn_eval_metrics: NULL argument");
    if (n == 0 || classes == 0)
        return error_set(BNN_E_INVALID,
                         "bnn_eval_metrics: n and classes must be >= 1");
    if (ece_bins == 0 || ece_bins > (1u << 24))
        return error_set(BNN_E_INVALID,
                         "bnn_eval_metrics: ece_bins %zu not in [1, 2^24]",
                         ece_bins);
    bnn_status st = sized_check(out, SIZED_END(bnn_metrics, accuracy), "bnn_metrics");
    if (st != BNN_OK)
        return st;
    if (classes > INT32_MAX)
        return error_set(BNN_E_SHAPE, "bnn_eval_metrics: too many classes");
    if (mem_mul_overflow(n, classes, &total))
        return error_set(BNN_E_SHAPE,
                         "bnn_eval_metrics: n * classes overflows");
    if (!tensor_all_finite(probs, total))
        return error_set(BNN_E_INVALID,
                         "bnn_eval_metrics: probs holds NaN or Inf");
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || (size_t)labels[i] >= classes)
            return error_set(BNN_E_INVALID,
                             "bnn_eval_metrics: labels[%zu] = %d not in "
                             "[0, %zu)",
                             i, (int)labels[i], classes);

    bnn_allocator al = mem_default_allocator();
    double *bins = mem_calloc_array(&al, ece_bins, 3 * sizeof(double));
    if (!bins)
        return error_set(BNN_E_NOMEM, "bnn_eval_metrics: %zu ECE bins",
                         ece_bins);

    /* bins[3b]: count, [3b+1]: correct, [3b+2]: sum of confidences. */
    double correct = 0.0, nll = 0.0, brier = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float *p = probs + i * classes;
        size_t best = 0;
        for (size_t c = 1; c < classes; c++)
            if (p[c] > p[best])
                best = c;
        size_t y = (size_t)labels[i];
        double hit = best == y ? 1.0 : 0.0;
        correct += hit;
        double py = p[y] > NLL_FLOOR ? (double)p[y] : NLL_FLOOR;
        nll -= log(py);
        double b = 0.0;
        for (size_t c = 0; c < classes; c++) {
            double d = (double)p[c] - (c == y ? 1.0 : 0.0);
            b += d * d;
        }
        brier += b;

        /* conf * B is exact in double (a 24-bit float times an integer
         * below 2^24), so ceil() places conf in (b/B, (b+1)/B] exactly;
         * conf <= 0 goes to bin 0 and conf > 1 to the last bin. */
        double conf = (double)p[best];
        double cb = ceil(conf * (double)ece_bins) - 1.0;
        size_t bin = cb <= 0.0 ? 0
                     : cb >= (double)(ece_bins - 1) ? ece_bins - 1
                                                   : (size_t)cb;
        bins[3 * bin] += 1.0;
        bins[3 * bin + 1] += hit;
        bins[3 * bin + 2] += conf;
    }

    double ece = 0.0;
    for (size_t b = 0; b < ece_bins; b++) {
        double cnt = bins[3 * b];
        if (cnt > 0.0)
            ece += cnt / (double)n *
                   fabs(bins[3 * b + 1] / cnt - bins[3 * b + 2] / cnt);
    }
    mem_free(&al, bins);

    double dn = (double)n;
    bnn_metrics r = {sizeof r, correct / dn, nll / dn, brier / dn, ece};
    sized_write(out, &r, sizeof r);
    return BNN_OK;
}

/* Bottom-up merge sort: stable, and no recursion depth to worry about. */
void eval_sort_desc(size_t *idx, size_t *tmp, size_t n, const float *key)
{
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi) {
                /* Take from the right run only when strictly greater, so
                 * equal keys keep their relative order. */
                if (key[idx[b]] > key[idx[a]])
                    tmp[k++] = idx[b++];
                else
                    tmp[k++] = idx[a++];
            }
            while (a < mid)
                tmp[k++] = idx[a++];
            while (b < hi)
                tmp[k++] = idx[b++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

BNN_API bnn_status bnn_eval_risk_coverage(const float *confidence,
                                          const int32_t *correct, size_t n,
                                          double *risk, double *coverage,
                                          double *aurc)
{
    API_ENTRY();
    if (!confidence || !correct)
        return error_set(BNN_E_INVALID,
                         "bnn_eval_risk_coverage: NULL argument");
    if (n == 0)
        return error_set(BNN_E_INVALID, "bnn_eval_risk_coverage: n is 0");
    if (!tensor_all_finite(confidence, n))
        return error_set(BNN_E_INVALID,
                         "bnn_eval_risk_coverage: confidence holds NaN or "
                         "Inf");

    bnn_allocator al = mem_default_allocator();
    size_t *idx = mem_alloc_array(&al, n, sizeof *idx);
    size_t *tmp = mem_alloc_array(&al, n, sizeof *tmp);
    if (!idx || !tmp) {
        mem_free(&al, idx);
        mem_free(&al, tmp);
        return error_set(BNN_E_NOMEM,
                         "bnn_eval_risk_coverage: cannot sort %zu inputs", n);
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    eval_sort_desc(idx, tmp, n, confidence);

    double errors = 0.0, sum_risk = 0.0;
    for (size_t k = 0; k < n; k++) {
        if (!correct[idx[k]])
            errors += 1.0;
        double r = errors / (double)(k + 1);
        sum_risk += r;
        if (risk)
            risk[k] = r;
        if (coverage)
            coverage[k] = (double)(k + 1) / (double)n;
    }
    if (aurc)
        *aurc = sum_risk / (double)n;
    mem_free(&al, idx);
    mem_free(&al, tmp);
    return BNN_OK;
}

BNN_API bnn_status bnn_eval_refusal(const bnn_prediction *records,
                                    size_t record_size, const int32_t *labels,
                                    size_t n, bnn_refusal_report *out)
{
    API_ENTRY();
    size_t total;
    if (!records || !labels || !out)
        return error_set(BNN_E_INVALID, "bnn_eval_refusal: NULL argument");
    if (n == 0)
        return error_set(BNN_E_INVALID, "bnn_eval_refusal: n is 0");
    if (record_size < offsetof(bnn_prediction, prob))
        return error_set(BNN_E_INVALID,
                         "bnn_eval_refusal: record_size %zu does not cover "
                         "label and refused",
                         record_size);
    if (mem_mul_overflow(n, record_size, &total))
        return error_set(BNN_E_SHAPE,
                         "bnn_eval_refusal: n * record_size overflows");
    bnn_status st = sized_check(out, SIZED_END(bnn_refusal_report, n), "bnn_refusal_report");
    if (st != BNN_OK)
        return st;
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0)
            return error_set(BNN_E_INVALID,
                             "bnn_eval_refusal: labels[%zu] = %d is negative",
                             i, (int)labels[i]);

    const unsigned char *base = (const unsigned char *)records;
    size_t refused = 0, correct = 0, accepted_correct = 0;
    for (size_t i = 0; i < n; i++) {
        /* record_size need not be a multiple of the struct's alignment. */
        int32_t label, ref;
        const unsigned char *r = base + i * record_size;
        memcpy(&label, r + offsetof(bnn_prediction, label), sizeof label);
        memcpy(&ref, r + offsetof(bnn_prediction, refused), sizeof ref);
        int ok = label == labels[i];
        correct += (size_t)ok;
        if (ref)
            refused++;
        else
            accepted_correct += (size_t)ok;
    }

    size_t accepted = n - refused;
    bnn_refusal_report r = {sizeof r, n, refused, (double)correct / (double)n,
                            (double)refused / (double)n,
                            accepted ? (double)accepted_correct / (double)accepted : 0.0};
    sized_write(out, &r, sizeof r);
    return BNN_OK;
}
