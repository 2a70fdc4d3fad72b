/* Refusal rules and threshold calibration on prediction records of a
 * caller-chosen size. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "eval.h"
#include "refusal.h"

/* The record fields are size-versioned: a field is read or written only
 * when the caller's record_size covers all of it. */
int refusal_refuses(const bnn_prediction *rec, bnn_refusal_rule rule, float t)
{
    /* Written as negated acceptance tests so that NaN scores refuse. */
    switch (rule) {
    case BNN_REFUSE_NONE: return 0;
    case BNN_REFUSE_MEDIAN: return !(rec->max_median > t);
    case BNN_REFUSE_MAX_PROB: return !(rec->prob >= t);
    case BNN_REFUSE_ENTROPY: return !(rec->entropy <= t);
    case BNN_REFUSE_MUTUAL_INFO: return !(rec->mutual_info <= t);
    }
    return 1;
}


/* ---- records of caller-chosen size --------------------------------------- */

/* Copy the fields of *r that fit in record_size bytes to dst.  memcpy
 * because record_size need not keep the records aligned. */
void refusal_record_store(unsigned char *dst, size_t rs,
                          const bnn_prediction *r)
{
#define STORE(f)                                                           \
    if (SIZED_COVERS(rs, bnn_prediction, f))                                     \
    memcpy(dst + offsetof(bnn_prediction, f), &r->f, sizeof r->f)
    STORE(label);
    STORE(refused);
    STORE(prob);
    STORE(entropy);
    STORE(expected_entropy);
    STORE(mutual_info);
    STORE(max_median);
    STORE(mean_label);
#undef STORE
}

/* The fields that fit in record_size; the others are zero. */
void refusal_record_load(const unsigned char *src, size_t rs,
                         bnn_prediction *r)
{
    memset(r, 0, sizeof *r);
#define LOAD(f)                                                            \
    if (SIZED_COVERS(rs, bnn_prediction, f))                                     \
    memcpy(&r->f, src + offsetof(bnn_prediction, f), sizeof r->f)
    LOAD(label);
    LOAD(refused);
    LOAD(prob);
    LOAD(entropy);
    LOAD(expected_entropy);
    LOAD(mutual_info);
    LOAD(max_median);
    LOAD(mean_label);
#undef LOAD
}

/* The record field a rule's score lives in, its end offset. */
size_t refusal_rule_field_end(bnn_refusal_rule rule)
{
    switch (rule) {
    case BNN_REFUSE_NONE: return offsetof(bnn_prediction, prob);
    case BNN_REFUSE_MEDIAN:
        return offsetof(bnn_prediction, max_median) + sizeof(float);
    case BNN_REFUSE_MAX_PROB:
        return offsetof(bnn_prediction, prob) + sizeof(float);
    case BNN_REFUSE_ENTROPY:
        return offsetof(bnn_prediction, entropy) + sizeof(float);
    case BNN_REFUSE_MUTUAL_INFO:
        return offsetof(bnn_prediction, mutual_info) + sizeof(float);
    }
    return SIZE_MAX;
}

bnn_status refusal_check_rule(const char *fn, bnn_refusal_rule rule, float t)
{
    switch (rule) {
    case BNN_REFUSE_NONE: return BNN_OK; /* the threshold is not used */
    case BNN_REFUSE_MEDIAN:
    case BNN_REFUSE_MAX_PROB:
        if (!(t >= 0.0f && t <= 1.0f))
            return error_set(BNN_E_INVALID,
                             "%s: threshold %g not in [0, 1] for this rule",
                             fn, (double)t);
        return BNN_OK;
    case BNN_REFUSE_ENTROPY:
    case BNN_REFUSE_MUTUAL_INFO:
        if (!(t >= 0.0f && isfinite(t)))
            return error_set(BNN_E_INVALID,
                             "%s: threshold %g must be finite and >= 0 "
                             "(nats)",
                             fn, (double)t);
        return BNN_OK;
    }
    return error_set(BNN_E_INVALID, "%s: unknown refusal rule %d", fn,
                     (int)rule);
}
/* ---- refusal on existing records ----------------------------------------- */

static bnn_status apply_refusal(const char *fn, bnn_prediction *records, size_t record_size,
                                size_t n, bnn_refusal_rule rule, float threshold)
{
    size_t tmp;
    bnn_status st;
    if (!records)
        return error_set(BNN_E_INVALID, "%s: NULL records", fn);
    if (n == 0)
        return error_set(BNN_E_INVALID, "%s: n is 0", fn);
    if ((st = refusal_check_rule(fn, rule, threshold)))
        return st;
    if (record_size < offsetof(bnn_prediction, prob) ||
        record_size < refusal_rule_field_end(rule))
        return error_set(BNN_E_INVALID,
                         "%s: record_size %zu does not cover the fields "
                         "this rule reads",
                         fn, record_size);
    if (mem_mul_overflow(n, record_size, &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * record_size overflows", fn);

    unsigned char *base = (unsigned char *)records;
    for (size_t i = 0; i < n; i++) {
        bnn_prediction r;
        unsigned char *p = base + i * record_size;
        refusal_record_load(p, record_size, &r);
        int32_t refused = refusal_refuses(&r, rule, threshold);
        memcpy(p + offsetof(bnn_prediction, refused), &refused,
               sizeof refused);
    }
    return BNN_OK;
}

/* ---- threshold calibration ----------------------------------------------- */

static bnn_status calibrate(const char *fn, const bnn_prediction *records, size_t record_size,
                            const int32_t *labels, size_t n, bnn_refusal_rule rule,
                            bnn_calibration_target target, double value, float *threshold,
                            double *coverage, double *accuracy)
{
    size_t tmp;
    bnn_status st;
    if (!records || !labels || !threshold)
        return error_set(BNN_E_INVALID, "%s: NULL argument", fn);
    if (n == 0)
        return error_set(BNN_E_INVALID, "%s: n is 0", fn);
    if (rule == BNN_REFUSE_NONE)
        return error_set(BNN_E_INVALID, "%s: rule NONE has no threshold", fn);
    if ((st = refusal_check_rule(fn, rule, 0.0f)))
        return st;
    if (target != BNN_CALIBRATE_ACCURACY && target != BNN_CALIBRATE_COVERAGE)
        return error_set(BNN_E_INVALID, "%s: unknown target %d", fn,
                         (int)target);
    if (!(value > 0.0 && value <= 1.0))
        return error_set(BNN_E_INVALID, "%s: target value %g not in (0, 1]",
                         fn, value);
    int median_rule = rule == BNN_REFUSE_MEDIAN;
    /* The median rule answers with label, the others with mean_label. */
    size_t need = median_rule ? refusal_rule_field_end(rule) : sizeof(bnn_prediction);
    if (record_size < need)
        return error_set(BNN_E_INVALID,
                         "%s: record_size %zu does not cover the fields "
                         "this rule reads",
                         fn, record_size);
    if (mem_mul_overflow(n, record_size, &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * record_size overflows", fn);

    bnn_allocator al = mem_default_allocator();
    size_t *idx = mem_alloc_array(&al, n, sizeof *idx);
    size_t *tmpi = mem_alloc_array(&al, n, sizeof *tmpi);
    float *key = mem_alloc_array(&al, n, sizeof *key);
    unsigned char *ok = mem_alloc(&al, n);
    if (!idx || !tmpi || !key || !ok) {
        mem_free(&al, idx);
        mem_free(&al, tmpi);
        mem_free(&al, key);
        mem_free(&al, ok);
        return error_set(BNN_E_NOMEM, "%s: cannot sort %zu records", fn, n);
    }

    /* key: higher means more certain (scores of the entropy rules are
     * negated, exactly, so one descending sort serves every rule). */
    const unsigned char *base = (const unsigned char *)records;
    for (size_t i = 0; i < n; i++) {
        bnn_prediction r;
        refusal_record_load(base + i * record_size, record_size, &r);
        float score;
        switch (rule) {
        case BNN_REFUSE_MEDIAN: score = r.max_median; break;
        case BNN_REFUSE_MAX_PROB: score = r.prob; break;
        case BNN_REFUSE_ENTROPY: score = r.entropy; break;
        default: score = r.mutual_info; break;
        }
        int bad = median_rule || rule == BNN_REFUSE_MAX_PROB
                      ? !(score >= 0.0f && score <= 1.0f)
                      : !(score >= 0.0f && isfinite(score));
        if (bad || labels[i] < 0) {
            mem_free(&al, idx);
            mem_free(&al, tmpi);
            mem_free(&al, key);
            mem_free(&al, ok);
            return bad ? error_set(BNN_E_INVALID,
                                   "%s: record %zu has score %g out of "
                                   "range for this rule",
                                   fn, i, (double)score)
                       : error_set(BNN_E_INVALID,
                                   "%s: labels[%zu] = %d is negative", fn, i,
                                   (int)labels[i]);
        }
        key[i] = median_rule || rule == BNN_REFUSE_MAX_PROB ? score : -score;
        ok[i] = (median_rule ? r.label : r.mean_label) == labels[i];
        idx[i] = i;
    }
    eval_sort_desc(idx, tmpi, n, key);

    /* Accepting exactly the k most certain inputs needs a cut between
     * distinct scores (ties are accepted or refused together), and for the
     * median rule (accept when > t, t >= 0) a k-th score above 0.
     * Candidates are scanned in increasing k. */
    size_t best_k = 0, best_ok = 0, first_k = 0, first_ok = 0;
    size_t last_k = 0, last_ok = 0, correct = 0;
    int found = 0;
    for (size_t k = 1; k <= n; k++) {
        correct += ok[idx[k - 1]];
        float sk = key[idx[k - 1]];
        int cut = k == n || sk > key[idx[k]];
        if (median_rule && !(sk > 0.0f))
            cut = 0;
        if (!cut)
            continue;
        if (!first_k) {
            first_k = k;
            first_ok = correct;
        }
        last_k = k;
        last_ok = correct;
        if (target == BNN_CALIBRATE_ACCURACY) {
            if ((double)correct / (double)k >= value) {
                best_k = k; /* keep going: the largest such k wins */
                best_ok = correct;
                found = 1;
            }
        } else if (!found && (double)k / (double)n >= value) {
            best_k = k;
            best_ok = correct;
            found = 1;
        }
    }
    if (!found) {
        /* Accuracy: the strictest cut; coverage (median rule with zero
         * scores only): the widest reachable one. */
        best_k = target == BNN_CALIBRATE_ACCURACY ? first_k : last_k;
        best_ok = target == BNN_CALIBRATE_ACCURACY ? first_ok : last_ok;
    }

    float t;
    if (best_k == 0) {
        /* Median rule, every max_median is 0: nothing can be accepted. */
        t = 0.0f;
    } else if (median_rule) {
        /* accept when > t: the next score down, or 0 to accept all */
        t = best_k < n ? key[idx[best_k]] : 0.0f;
    } else if (rule == BNN_REFUSE_MAX_PROB) {
        t = key[idx[best_k - 1]]; /* accept when >= t */
    } else {
        t = -key[idx[best_k - 1]]; /* accept when <= t */
    }

    mem_free(&al, idx);
    mem_free(&al, tmpi);
    mem_free(&al, key);
    mem_free(&al, ok);
    *threshold = t;
    if (coverage)
        *coverage = (double)best_k / (double)n;
    if (accuracy)
        *accuracy = best_k ? (double)best_ok / (double)best_k : 0.0;
    return BNN_OK;
}

/* The object-first names and the original ones: one implementation, the
 * messages name the function the caller used. */
BNN_API bnn_status bnn_refusal_apply(bnn_prediction *records, size_t record_size, size_t n,
                                     bnn_refusal_rule rule, float threshold)
{
    API_ENTRY();
    return apply_refusal("bnn_refusal_apply", records, record_size, n, rule, threshold);
}

BNN_API bnn_status bnn_apply_refusal(bnn_prediction *records, size_t record_size, size_t n,
                                     bnn_refusal_rule rule, float threshold)
{
    API_ENTRY();
    return apply_refusal("bnn_apply_refusal", records, record_size, n, rule, threshold);
}

BNN_API bnn_status bnn_refusal_calibrate(const bnn_prediction *records, size_t record_size,
                                         const int32_t *labels, size_t n, bnn_refusal_rule rule,
                                         bnn_calibration_target target, double value,
                                         float *threshold, double *coverage, double *accuracy)
{
    API_ENTRY();
    return calibrate("bnn_refusal_calibrate", records, record_size, labels, n, rule, target,
                     value, threshold, coverage, accuracy);
}

BNN_API bnn_status bnn_calibrate_threshold(const bnn_prediction *records, size_t record_size,
                                           const int32_t *labels, size_t n,
                                           bnn_refusal_rule rule, bnn_calibration_target target,
                                           double value, float *threshold, double *coverage,
                                           double *accuracy)
{
    API_ENTRY();
    return calibrate("bnn_calibrate_threshold", records, record_size, labels, n, rule, target,
                     value, threshold, coverage, accuracy);
}
