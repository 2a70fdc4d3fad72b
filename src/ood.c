/* Telling in-distribution inputs from out-of-distribution (OOD) ones by one
 * field of their prediction records, and the share of inputs a refusal
 * policy refuses.
 *
 * Every score is turned into an uncertainty u, higher meaning "more likely
 * OOD" (entropies as they are, probabilities negated exactly).  OOD is the
 * positive class of AUROC and AUPR-out; one descending sort of all n_in +
 * n_out values, swept in groups of equal u, gives every figure with ties
 * handled exactly:
 *   AUROC    = P(u_out > u_in) + P(u_out = u_in) / 2   (Mann-Whitney U)
 *   AUPR-out = sum over groups g of (a_g / n_out) * TP_g / (TP_g + FP_g)
 *   FPR95    = share of OOD with u <= t*, t* the smallest in-distribution u
 *              with #{in: u <= t*} >= 0.95 n_in
 * (a_g: OOD inputs in group g; TP_g, FP_g: OOD and in-distribution inputs
 * with u >= the group's value), AUPR-in the same sum from the other end. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "eval.h"
#include "refusal.h"

/* The record field a score reads, and whether higher means more certain. */
static int score_field(bnn_ood_score s, size_t *offset, int *confidence)
{
    switch (s) {
    case BNN_OOD_ENTROPY: *offset = offsetof(bnn_prediction, entropy); *confidence = 0; return 1;
    case BNN_OOD_MUTUAL_INFO: *offset = offsetof(bnn_prediction, mutual_info); *confidence = 0; return 1;
    case BNN_OOD_EXPECTED_ENTROPY:
        *offset = offsetof(bnn_prediction, expected_entropy); *confidence = 0; return 1;
    case BNN_OOD_MAX_PROB: *offset = offsetof(bnn_prediction, prob); *confidence = 1; return 1;
    case BNN_OOD_MAX_MEDIAN: *offset = offsetof(bnn_prediction, max_median); *confidence = 1; return 1;
    }
    return 0;
}

/* Each record's score as an uncertainty into u; BNN_E_INVALID for a value
 * out of the score's range (probabilities in [0, 1], entropies finite and
 * >= 0; NaN is neither). */
static bnn_status load_scores(const char *fn, const char *which, const bnn_prediction *rec,
                              size_t n, size_t rs, size_t off, int confidence, float *u)
{
    const unsigned char *base = (const unsigned char *)rec;
    for (size_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, base + i * rs + off, sizeof v);
        int ok = confidence ? v >= 0.0f && v <= 1.0f : v >= 0.0f && isfinite(v);
        if (!ok)
            return error_set(BNN_E_INVALID, "%s: %s record %zu has score %g out of range", fn,
                             which, i, (double)v);
        u[i] = confidence ? -v : v;
    }
    return BNN_OK;
}

BNN_API void bnn_ood_report_init(bnn_ood_report *r)
{
    if (r)
        *r = (bnn_ood_report){.struct_size = sizeof *r};
}

BNN_API bnn_status bnn_eval_ood(const bnn_prediction *in, size_t n_in,
                                const bnn_prediction *out, size_t n_out,
                                size_t record_size, bnn_ood_score score,
                                const bnn_allocator *alloc, bnn_ood_report *report)
{
    API_ENTRY();
    static const char fn[] = "bnn_eval_ood";
    size_t off, bytes, n;
    int confidence;
    if (!in || !out || !report)
        return error_set(BNN_E_INVALID, "%s: NULL argument", fn);
    if (n_in == 0 || n_out == 0)
        return error_set(BNN_E_INVALID, "%s: n_in and n_out must be >= 1", fn);
    if (!score_field(score, &off, &confidence))
        return error_set(BNN_E_INVALID, "%s: unknown score %d", fn, (int)score);
    if (record_size < off + sizeof(float))
        return error_set(BNN_E_INVALID,
                         "%s: record_size %zu does not cover the field this score reads", fn,
                         record_size);
    if (alloc && (!alloc->alloc || !alloc->free))
        return error_set(BNN_E_INVALID, "%s: allocator without alloc or free", fn);
    bnn_status st = sized_check(report, SIZED_END(bnn_ood_report, auroc), "bnn_ood_report");
    if (st != BNN_OK)
        return st;
    if (mem_mul_overflow(n_in, record_size, &bytes) ||
        mem_mul_overflow(n_out, record_size, &bytes) || n_in > SIZE_MAX - n_out)
        return error_set(BNN_E_SHAPE, "%s: n x record_size overflows", fn);
    n = n_in + n_out;

    /* One block: u (n floats), then the sort's idx and tmp (n each). */
    const size_t per = sizeof(float) + 2 * sizeof(size_t);
    bnn_allocator al = alloc ? *alloc : mem_default_allocator();
    unsigned char *block = mem_alloc_array(&al, n, per);
    if (!block)
        return error_set(BNN_E_NOMEM, "%s: cannot sort %zu records", fn, n);
    size_t *idx = (size_t *)(void *)block;
    size_t *tmp = idx + n;
    float *u = (float *)(void *)(tmp + n);
    if ((st = load_scores(fn, "in-distribution", in, n_in, record_size, off, confidence, u)) ||
        (st = load_scores(fn, "out-of-distribution", out, n_out, record_size, off, confidence,
                          u + n_in))) {
        mem_free(&al, block);
        return st;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    eval_sort_desc(idx, tmp, n, u);

    /* Descending sweep: TP, FP = OOD and in-distribution inputs seen. */
    double pairs2 = 0.0, ap_out = 0.0; /* pairs2: twice the U statistic */
    size_t tp = 0, fp = 0;
    for (size_t k = 0; k < n;) {
        size_t a = 0, b = 0, j = k;
        for (; j < n && u[idx[j]] == u[idx[k]]; j++)
            *(idx[j] < n_in ? &b : &a) += 1;
        pairs2 += (double)b * (2.0 * (double)tp + (double)a);
        tp += a;
        fp += b;
        if (a)
            ap_out += (double)a / (double)n_out * ((double)tp / (double)(tp + fp));
        k = j;
    }

    /* Ascending sweep: inputs with u <= the group's value are accepted as
     * in-distribution; the first group reaching 95% of them gives t*. */
    const size_t need = n_in - n_in / 20; /* ceil(0.95 n_in), exactly */
    double ap_in = 0.0, fpr95 = 1.0, tpr95 = 1.0;
    float t95 = 0.0f;
    size_t acc_in = 0, acc_out = 0;
    int found = 0;
    for (size_t k = n; k > 0;) {
        size_t a = 0, b = 0, j = k;
        for (; j > 0 && u[idx[j - 1]] == u[idx[k - 1]]; j--)
            *(idx[j - 1] < n_in ? &b : &a) += 1;
        acc_in += b;
        acc_out += a;
        if (b)
            ap_in += (double)b / (double)n_in * ((double)acc_in / (double)(acc_in + acc_out));
        if (!found && acc_in >= need) {
            found = 1;
            fpr95 = (double)acc_out / (double)n_out;
            tpr95 = (double)acc_in / (double)n_in;
            t95 = u[idx[k - 1]];
        }
        k = j;
    }
    mem_free(&al, block);

    bnn_ood_report r = {sizeof r, n_in, n_out,
                        pairs2 / (2.0 * (double)n_in * (double)n_out),
                        ap_out, ap_in, fpr95, tpr95, confidence ? -t95 : t95};
    sized_write(report, &r, sizeof r);
    return BNN_OK;
}

BNN_API bnn_status bnn_eval_refused_fraction(const bnn_prediction *records,
                                             size_t record_size, size_t n,
                                             bnn_refusal_rule rule, float threshold,
                                             double *fraction)
{
    API_ENTRY();
    static const char fn[] = "bnn_eval_refused_fraction";
    size_t bytes;
    bnn_status st;
    if (!records || !fraction)
        return error_set(BNN_E_INVALID, "%s: NULL argument", fn);
    if (n == 0)
        return error_set(BNN_E_INVALID, "%s: n is 0", fn);
    if ((st = refusal_check_rule(fn, rule, threshold)))
        return st;
    if (record_size < refusal_rule_field_end(rule))
        return error_set(BNN_E_INVALID,
                         "%s: record_size %zu does not cover the field this rule reads", fn,
                         record_size);
    if (mem_mul_overflow(n, record_size, &bytes))
        return error_set(BNN_E_SHAPE, "%s: n * record_size overflows", fn);

    const unsigned char *base = (const unsigned char *)records;
    size_t refused = 0;
    for (size_t i = 0; i < n; i++) {
        bnn_prediction r;
        refusal_record_load(base + i * record_size, record_size, &r);
        refused += (size_t)refusal_refuses(&r, rule, threshold);
    }
    *fraction = (double)refused / (double)n;
    return BNN_OK;
}
