/* Monte Carlo predictor, uncertainty statistics, refusal and threshold
 * calibration. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "dense.h"
#include "predict.h"
#include "refusal.h"
#include "rng.h"
#include "uncertainty.h"
#include "testutil.h"

/* ======================================================================== */
/* Reference statistics in double                                           */
/* ======================================================================== */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Type 7 quantile of sorted v[0..n) (numpy's default 'linear'). */
static double ref_quantile_sorted(const double *v, size_t n, double q)
{
    double h = (double)(n - 1) * q;
    size_t lo = (size_t)floor(h);
    if (lo >= n - 1)
        return v[n - 1];
    return v[lo] + (h - (double)lo) * (v[lo + 1] - v[lo]);
}

typedef struct ref_stats {
    double pbar[8], med[8], h, eh, mi;
} ref_stats;

/* p[s * C + c], S <= 64, C <= 8 */
static void ref_compute(const float *p, size_t S, size_t C, ref_stats *r)
{
    double col[64];
    r->h = r->eh = 0;
    for (size_t s = 0; s < S; s++)
        for (size_t c = 0; c < C; c++) {
            double v = p[s * C + c];
            if (v > 0)
                r->eh -= v * log(v) / (double)S;
        }
    for (size_t c = 0; c < C; c++) {
        double sum = 0;
        for (size_t s = 0; s < S; s++) {
            col[s] = p[s * C + c];
            sum += col[s];
        }
        r->pbar[c] = sum / (double)S;
        if (r->pbar[c] > 0)
            r->h -= r->pbar[c] * log(r->pbar[c]);
        qsort(col, S, sizeof col[0], cmp_double);
        r->med[c] = ref_quantile_sorted(col, S, 0.5);
    }
    r->mi = r->h - r->eh;
}

static bnn_prediction stats_of(const float *p, size_t S, size_t C,
                               bnn_refusal_rule rule, float t, float *med)
{
    float scratch[64], medians[8];
    bnn_prediction rec;
    memset(&rec, 0xee, sizeof rec);
    uncertainty_stats(p, S, C, C, rule, t, NULL, 0, &rec, med ? med : medians,
                  NULL, NULL, scratch);
    return rec;
}

/* ======================================================================== */
/* Statistics of crafted sample sets                                        */
/* ======================================================================== */

/* Two samples, each certain of a different class:
 *   p̄ = (.5, .5), H[p̄] = ln 2, E H[p_s] = 0, MI = ln 2;
 *   each class's samples are {1, 0}: median .5 (even S), tie -> class 0. */
START_TEST(test_stats_disagreeing_samples)
{
    const float p[4] = {1, 0, 0, 1};
    float med[2];
    bnn_prediction r = stats_of(p, 2, 2, BNN_REFUSE_MEDIAN, 0.2f, med);
    tu_assert_close(r.entropy, log(2.0), 1e-7, 0);
    tu_assert_close(r.expected_entropy, 0.0, 0, 0);
    tu_assert_close(r.mutual_info, log(2.0), 1e-7, 0);
    tu_assert_close(med[0], 0.5, 0, 0);
    tu_assert_close(med[1], 0.5, 0, 0);
    tu_assert_close(r.max_median, 0.5, 0, 0);
    ck_assert_int_eq(r.label, 0);
    ck_assert_int_eq(r.mean_label, 0);
    tu_assert_close(r.prob, 0.5, 0, 0);
    ck_assert_int_eq(r.refused, 0); /* .5 > .2 */
}
END_TEST

/* Identical samples carry no epistemic uncertainty: MI is exactly 0 (the
 * rounding residue is clamped), H = E H = ln 2 for (.5, .5, 0). */
START_TEST(test_stats_identical_samples)
{
    const float p[9] = {0.5f, 0.5f, 0, 0.5f, 0.5f, 0, 0.5f, 0.5f, 0};
    bnn_prediction r = stats_of(p, 3, 3, BNN_REFUSE_ENTROPY, 1.0f, NULL);
    tu_assert_close(r.entropy, log(2.0), 1e-7, 0);
    tu_assert_close(r.expected_entropy, log(2.0), 1e-7, 0);
    ck_assert(r.mutual_info == 0.0f);
    ck_assert_int_eq(r.refused, 0); /* ln 2 <= 1 */
    r = stats_of(p, 3, 3, BNN_REFUSE_ENTROPY, 0.5f, NULL);
    ck_assert_int_eq(r.refused, 1); /* ln 2 > .5 */

    /* Random identical samples: H and E H agree up to rounding, which may
     * fall either way; MI must still never be negative. */
    tu_rng g = {17};
    int exact_zero = 0;
    for (int trial = 0; trial < 300; trial++) {
        size_t S = 2 + tu_next(&g) % 30, C = 5;
        float q[32 * 5], row[5];
        double z = 0;
        for (size_t c = 0; c < C; c++)
            z += row[c] = (float)(0.05 + tu_uniform(&g));
        for (size_t c = 0; c < C; c++)
            row[c] = (float)(row[c] / z);
        for (size_t s2 = 0; s2 < S; s2++)
            memcpy(q + s2 * C, row, sizeof row);
        bnn_prediction rr = stats_of(q, S, C, BNN_REFUSE_NONE, 0, NULL);
        ck_assert_msg(rr.mutual_info >= 0.0f, "MI %g", (double)rr.mutual_info);
        ck_assert(rr.mutual_info < 1e-6f);
        exact_zero += rr.mutual_info == 0.0f;
    }
    ck_assert(exact_zero > 0);
}
END_TEST

/* p1 = (.5, .25, .25), p2 = (1, 0, 0), p3 = (.5, .5, 0):
 *   H(p1) = .5 ln 2 + 2 * .25 ln 4 = 1.5 ln 2, H(p2) = 0, H(p3) = ln 2
 *   E H = 2.5 ln 2 / 3
 *   p̄ = (2/3, 1/4, 1/12): H = 2/3 ln 3/2 + 1/4 ln 4 + 1/12 ln 12
 *   medians: {.5, 1, .5} -> .5, {.25, 0, .5} -> .25, {.25, 0, 0} -> 0 */
START_TEST(test_stats_hand_example)
{
    const float p[9] = {0.5f, 0.25f, 0.25f, 1, 0, 0, 0.5f, 0.5f, 0};
    float med[3];
    bnn_prediction r = stats_of(p, 3, 3, BNN_REFUSE_MEDIAN, 0.5f, med);
    double eh = 2.5 * log(2.0) / 3.0;
    double h = 2.0 / 3.0 * log(1.5) + 0.25 * log(4.0) + log(12.0) / 12.0;
    tu_assert_close(r.entropy, h, 1e-6, 0);
    tu_assert_close(r.expected_entropy, eh, 1e-6, 0);
    tu_assert_close(r.mutual_info, h - eh, 1e-6, 0);
    tu_assert_close(r.mutual_info, 0.2463366, 1e-6, 0);
    tu_assert_close(med[0], 0.5, 0, 0);
    tu_assert_close(med[1], 0.25, 0, 0);
    tu_assert_close(med[2], 0.0, 0, 0);
    ck_assert_int_eq(r.label, 0);
    tu_assert_close(r.prob, 2.0 / 3.0, 1e-7, 0);
    /* max median .5 is exactly the threshold: refused (accept only > t) */
    ck_assert_int_eq(r.refused, 1);
    r = stats_of(p, 3, 3, BNN_REFUSE_MEDIAN, nextafterf(0.5f, 0.0f), NULL);
    ck_assert_int_eq(r.refused, 0);
}
END_TEST

/* Random sample sets: every field against the double reference; MI >= 0
 * and MI = H - E H. */
START_TEST(test_stats_random_reference)
{
    tu_rng g = {11};
    for (int trial = 0; trial < 200; trial++) {
        size_t S = 1 + tu_next(&g) % 40, C = 2 + tu_next(&g) % 6;
        float p[64 * 8], med[8];
        for (size_t s = 0; s < S; s++) {
            double sum = 0, e[8];
            double temp = 0.2 + 3.0 * tu_uniform(&g);
            for (size_t c = 0; c < C; c++) {
                e[c] = exp(temp * tu_normal(&g));
                sum += e[c];
            }
            for (size_t c = 0; c < C; c++)
                p[s * C + c] = (float)(e[c] / sum);
        }
        ref_stats ref;
        ref_compute(p, S, C, &ref);
        bnn_prediction r = stats_of(p, S, C, BNN_REFUSE_MAX_PROB, 0.5f, med);
        tu_assert_close(r.entropy, ref.h, 1e-6, 1e-6);
        tu_assert_close(r.expected_entropy, ref.eh, 1e-6, 1e-6);
        ck_assert(r.mutual_info >= 0.0f);
        tu_assert_close(r.mutual_info, ref.mi > 0 ? ref.mi : 0, 2e-6, 0);
        tu_assert_close(r.mutual_info, (double)r.entropy - r.expected_entropy,
                        2e-6, 0);
        size_t best = 0, mbest = 0;
        for (size_t c = 0; c < C; c++) {
            tu_assert_close(med[c], ref.med[c], 1e-7, 1e-7);
            if (ref.pbar[c] > ref.pbar[best])
                best = c;
            if (med[c] > med[mbest])
                mbest = c;
        }
        ck_assert_int_eq(r.mean_label, (int)best);
        ck_assert_int_eq(r.label, (int)best); /* MAX_PROB answers mean_label */
        tu_assert_close(r.prob, ref.pbar[best], 1e-7, 1e-6);
        tu_assert_close(r.max_median, med[mbest], 0, 0);
        ck_assert_int_eq(r.refused, r.prob < 0.5f);
    }
}
END_TEST

/* Medians tie between classes 0 and 1 while the mean prefers class 1:
 *   class 0 {.4, .4, .1}: median .4, mean .3
 *   class 1 {.4, .4, .8}: median .4, mean 1.6/3
 *   class 2 {.2, .2, .1}: median .2
 * MEDIAN answers 0 (lowest index on ties) with prob p̄[0] = .3. */
START_TEST(test_median_rule_ties)
{
    const float p[9] = {0.4f, 0.4f, 0.2f, 0.4f, 0.4f, 0.2f,
                        0.1f, 0.8f, 0.1f};
    bnn_prediction r = stats_of(p, 3, 3, BNN_REFUSE_MEDIAN, 0.39f, NULL);
    ck_assert_int_eq(r.label, 0);
    ck_assert_int_eq(r.mean_label, 1);
    tu_assert_close(r.prob, 0.3, 1e-7, 0);
    tu_assert_close(r.max_median, 0.4f, 0, 0);
    ck_assert_int_eq(r.refused, 0);
    /* exactly at the threshold */
    r = stats_of(p, 3, 3, BNN_REFUSE_MEDIAN, 0.4f, NULL);
    ck_assert_int_eq(r.refused, 1);
    /* Every other rule answers with the mean. */
    r = stats_of(p, 3, 3, BNN_REFUSE_NONE, 0.0f, NULL);
    ck_assert_int_eq(r.label, 1);
    tu_assert_close(r.prob, 1.6 / 3.0, 1e-7, 0);
    ck_assert_int_eq(r.refused, 0);
}
END_TEST

/* Two classes above the threshold: the highest median answers.
 *   class 0 {.5, .5, .1} median .5; class 1 {.45, .45, .8} median .45;
 *   class 2 {.05, .05, .1} median .05.  t = .3 accepts with label 0. */
START_TEST(test_median_rule_several_above)
{
    const float p[9] = {0.5f, 0.45f, 0.05f, 0.5f, 0.45f, 0.05f,
                        0.1f, 0.8f, 0.1f};
    bnn_prediction r = stats_of(p, 3, 3, BNN_REFUSE_MEDIAN, 0.3f, NULL);
    ck_assert_int_eq(r.label, 0);
    ck_assert_int_eq(r.refused, 0);
    tu_assert_close(r.max_median, 0.5, 0, 0);
    ck_assert_int_eq(r.mean_label, 1);
    /* t = .5: no median is above -> refused, answer unchanged */
    r = stats_of(p, 3, 3, BNN_REFUSE_MEDIAN, 0.5f, NULL);
    ck_assert_int_eq(r.label, 0);
    ck_assert_int_eq(r.refused, 1);
}
END_TEST

/* Even S: the median is the mean of the two middle samples.
 *   class 0 {.25, .625, .375, .75} -> (.375 + .625)/2 = .5 exactly
 *   class 1 = 1 - class 0 -> .5 as well; tie -> class 0. */
START_TEST(test_median_even_samples)
{
    const float p[8] = {0.25f, 0.75f, 0.625f, 0.375f,
                        0.375f, 0.625f, 0.75f, 0.25f};
    float med[2];
    bnn_prediction r = stats_of(p, 4, 2, BNN_REFUSE_MEDIAN, 0.5f, med);
    ck_assert(med[0] == 0.5f && med[1] == 0.5f);
    ck_assert_int_eq(r.label, 0);
    ck_assert_int_eq(r.refused, 1);
    r = stats_of(p, 4, 2, BNN_REFUSE_MEDIAN, 0.49f, NULL);
    ck_assert_int_eq(r.refused, 0);

    /* Skewed: class 0 {.1, .3, .5, .9} median .4, class 1 median .6 */
    const float q[8] = {0.1f, 0.9f, 0.3f, 0.7f, 0.5f, 0.5f, 0.9f, 0.1f};
    r = stats_of(q, 4, 2, BNN_REFUSE_MEDIAN, 0.2f, med);
    tu_assert_close(med[0], 0.4, 1e-7, 0);
    tu_assert_close(med[1], 0.6, 1e-7, 0);
    ck_assert_int_eq(r.label, 1);
    /* S = 1 and S = 2 */
    r = stats_of(q, 1, 2, BNN_REFUSE_MEDIAN, 0.2f, med);
    ck_assert(med[0] == 0.1f && med[1] == 0.9f);
    r = stats_of(q, 2, 2, BNN_REFUSE_MEDIAN, 0.2f, med);
    tu_assert_close(med[0], 0.2, 1e-7, 0);
}
END_TEST

/* The other rules at and around their thresholds. */
START_TEST(test_rules_at_threshold)
{
    /* class 0 {.5, .75} -> p̄ = .625 exactly */
    const float p[4] = {0.5f, 0.5f, 0.75f, 0.25f};
    bnn_prediction r = stats_of(p, 2, 2, BNN_REFUSE_MAX_PROB, 0.625f, NULL);
    ck_assert(r.prob == 0.625f);
    ck_assert_int_eq(r.refused, 0); /* refuse only below t */
    r = stats_of(p, 2, 2, BNN_REFUSE_MAX_PROB, nextafterf(0.625f, 1), NULL);
    ck_assert_int_eq(r.refused, 1);

    r = stats_of(p, 2, 2, BNN_REFUSE_ENTROPY, 0.0f, NULL);
    float h = r.entropy, mi = r.mutual_info;
    ck_assert(h > 0 && mi > 0);
    ck_assert_int_eq(r.refused, 1);
    r = stats_of(p, 2, 2, BNN_REFUSE_ENTROPY, h, NULL);
    ck_assert_int_eq(r.refused, 0);
    r = stats_of(p, 2, 2, BNN_REFUSE_ENTROPY, nextafterf(h, 0), NULL);
    ck_assert_int_eq(r.refused, 1);
    r = stats_of(p, 2, 2, BNN_REFUSE_MUTUAL_INFO, mi, NULL);
    ck_assert_int_eq(r.refused, 0);
    r = stats_of(p, 2, 2, BNN_REFUSE_MUTUAL_INFO, nextafterf(mi, 0), NULL);
    ck_assert_int_eq(r.refused, 1);
    r = stats_of(p, 2, 2, BNN_REFUSE_NONE, 0.0f, NULL);
    ck_assert_int_eq(r.refused, 0);
}
END_TEST

/* Quantiles: numpy.quantile([.1, .2, .4, .8], [0, .1, .5, .9, 1])
 * = [.1, .13, .3, .68, .8], then random sets against the sorted
 * reference. */
START_TEST(test_quantiles)
{
    const float p[8] = {0.4f, 0.6f, 0.1f, 0.9f, 0.8f, 0.2f, 0.2f, 0.8f};
    const float lv[5] = {0.0f, 0.1f, 0.5f, 0.9f, 1.0f};
    const double want[5] = {0.1, 0.13, 0.3, 0.68, 0.8};
    float scratch[4], med[2], q[2 * 5];
    bnn_prediction rec;
    uncertainty_stats(p, 4, 2, 2, BNN_REFUSE_MEDIAN, 0.2f, lv, 5, &rec, med, q,
                  NULL, scratch);
    for (int j = 0; j < 5; j++) {
        tu_assert_close(q[j], want[j], 1e-7, 0);
        /* class 1 = 1 - class 0 */
        tu_assert_close(q[5 + j], 1.0 - want[4 - j], 1e-7, 0);
    }
    ck_assert(q[2] == med[0] && q[7] == med[1]);

    tu_rng g = {5};
    for (int trial = 0; trial < 100; trial++) {
        size_t S = 1 + tu_next(&g) % 50, C = 3;
        float v[50 * 3], levels[7], out[3 * 7], sc[50];
        for (size_t i = 0; i < S * C; i++)
            /* coarse values: plenty of duplicates */
            v[i] = (float)(tu_next(&g) % 11) / 10.0f;
        for (int j = 0; j < 7; j++)
            levels[j] = (float)tu_uniform(&g);
        levels[0] = 0.0f;
        levels[6] = 1.0f;
        uncertainty_stats(v, S, C, C, BNN_REFUSE_NONE, 0.0f, levels, 7, &rec,
                      NULL, out, NULL, sc);
        for (size_t c = 0; c < C; c++) {
            double col[50];
            for (size_t s = 0; s < S; s++)
                col[s] = v[s * C + c];
            qsort(col, S, sizeof col[0], cmp_double);
            for (int j = 0; j < 7; j++)
                tu_assert_close(out[c * 7 + j],
                                ref_quantile_sorted(col, S, levels[j]), 1e-7,
                                1e-6);
        }
    }
}
END_TEST

/* A strided sample layout (stride > C) gives the same summary. */
START_TEST(test_stats_stride)
{
    const float p[9] = {0.5f, 0.25f, 0.25f, 1, 0, 0, 0.5f, 0.5f, 0};
    float wide[3 * 5], scratch[3], m1[3], m2[3], mean1[3], mean2[3];
    for (size_t s = 0; s < 3; s++)
        for (size_t c = 0; c < 5; c++)
            wide[s * 5 + c] = c < 3 ? p[s * 3 + c] : NAN;
    bnn_prediction a, b;
    uncertainty_stats(p, 3, 3, 3, BNN_REFUSE_MEDIAN, 0.2f, NULL, 0, &a, m1, NULL,
                  mean1, scratch);
    uncertainty_stats(wide, 3, 3, 5, BNN_REFUSE_MEDIAN, 0.2f, NULL, 0, &b, m2,
                  NULL, mean2, scratch);
    ck_assert(memcmp(&a, &b, sizeof a) == 0);
    ck_assert(memcmp(mean1, mean2, sizeof mean1) == 0);
    ck_assert(memcmp(m1, m2, sizeof m1) == 0);
}
END_TEST

/* ======================================================================== */
/* bnn_apply_refusal                                                        */
/* ======================================================================== */

static bnn_prediction mkrec(int32_t label, int32_t mean_label, float prob,
                            float h, float mi, float maxmed)
{
    bnn_prediction r;
    memset(&r, 0, sizeof r);
    r.label = label;
    r.mean_label = mean_label;
    r.prob = prob;
    r.entropy = h;
    r.mutual_info = mi;
    r.max_median = maxmed;
    r.expected_entropy = h - mi;
    return r;
}

START_TEST(test_apply_refusal)
{
    bnn_prediction rec[4] = {
        mkrec(0, 0, 0.9f, 0.2f, 0.01f, 0.8f),
        mkrec(1, 1, 0.5f, 0.7f, 0.30f, 0.4f),
        mkrec(2, 2, 0.6f, 0.6f, 0.05f, 0.5f),
        mkrec(1, 0, 0.3f, 1.0f, 0.50f, 0.2f),
    };
    const struct {
        bnn_refusal_rule rule;
        float t;
        int32_t want[4];
    } cases[] = {
        {BNN_REFUSE_NONE, 0.0f, {0, 0, 0, 0}},
        {BNN_REFUSE_MEDIAN, 0.4f, {0, 1, 0, 1}},  /* > .4 accepted */
        {BNN_REFUSE_MEDIAN, 0.0f, {0, 0, 0, 0}},
        {BNN_REFUSE_MAX_PROB, 0.6f, {0, 1, 0, 1}}, /* >= .6 accepted */
        {BNN_REFUSE_MAX_PROB, 1.0f, {1, 1, 1, 1}},
        {BNN_REFUSE_ENTROPY, 0.6f, {0, 1, 0, 1}},  /* <= .6 accepted */
        {BNN_REFUSE_MUTUAL_INFO, 0.05f, {0, 1, 0, 1}},
        {BNN_REFUSE_MUTUAL_INFO, 10.0f, {0, 0, 0, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        for (int i = 0; i < 4; i++)
            rec[i].refused = 7;
        ck_assert_int_eq(bnn_apply_refusal(rec, sizeof rec[0], 4,
                                           cases[k].rule, cases[k].t),
                         BNN_OK);
        for (int i = 0; i < 4; i++) {
            ck_assert_int_eq(rec[i].refused, cases[k].want[i]);
            ck_assert_int_eq(rec[i].label, i == 0 ? 0 : i == 2 ? 2 : 1);
        }
    }
}
END_TEST

START_TEST(test_apply_refusal_record_sizes)
{
    /* An unaligned stride: records at 37-byte steps. */
    const size_t rs = sizeof(bnn_prediction) + 5;
    unsigned char *buf = malloc(3 * rs);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 0xab, 3 * rs);
    const float mm[3] = {0.9f, 0.1f, 0.5f};
    for (int i = 0; i < 3; i++) {
        bnn_prediction r = mkrec(i, i, 0.5f, 0.1f, 0.0f, mm[i]);
        memcpy(buf + i * rs, &r, sizeof r);
    }
    ck_assert_int_eq(bnn_apply_refusal((bnn_prediction *)buf, rs, 3,
                                       BNN_REFUSE_MEDIAN, 0.3f),
                     BNN_OK);
    for (int i = 0; i < 3; i++) {
        bnn_prediction r;
        memcpy(&r, buf + i * rs, sizeof r);
        ck_assert_int_eq(r.refused, i == 1);
        for (size_t b = sizeof r; b < rs; b++)
            ck_assert_uint_eq(buf[i * rs + b], 0xab); /* padding untouched */
    }
    /* Records too short for the field the rule reads. */
    size_t short_rs = offsetof(bnn_prediction, max_median);
    ck_assert_int_eq(bnn_apply_refusal((bnn_prediction *)buf, short_rs, 3,
                                       BNN_REFUSE_MEDIAN, 0.3f),
                     BNN_E_INVALID);
    /* ...but enough for the entropy rule, which reads only up to entropy. */
    ck_assert_int_eq(bnn_apply_refusal((bnn_prediction *)buf,
                                       offsetof(bnn_prediction,
                                                expected_entropy),
                                       3, BNN_REFUSE_ENTROPY, 0.3f),
                     BNN_OK);
    free(buf);
}
END_TEST

START_TEST(test_apply_refusal_invalid)
{
    bnn_prediction rec[2] = {mkrec(0, 0, 0.5f, 0.1f, 0.1f, 0.5f),
                             mkrec(1, 1, 0.5f, 0.1f, 0.1f, 0.5f)};
    rec[0].refused = rec[1].refused = 9;
    bnn_prediction before[2];
    memcpy(before, rec, sizeof rec);
    const size_t rs = sizeof rec[0];
    const struct {
        bnn_prediction *r;
        size_t rs, n;
        bnn_refusal_rule rule;
        float t;
        bnn_status want;
    } cases[] = {
        {NULL, rs, 2, BNN_REFUSE_MEDIAN, 0.2f, BNN_E_INVALID},
        {rec, rs, 0, BNN_REFUSE_MEDIAN, 0.2f, BNN_E_INVALID},
        {rec, rs, 2, BNN_REFUSE_MEDIAN, 1.5f, BNN_E_INVALID},
        {rec, rs, 2, BNN_REFUSE_MEDIAN, -0.1f, BNN_E_INVALID},
        {rec, rs, 2, BNN_REFUSE_MAX_PROB, NAN, BNN_E_INVALID},
        {rec, rs, 2, BNN_REFUSE_ENTROPY, -1.0f, BNN_E_INVALID},
        {rec, rs, 2, BNN_REFUSE_MUTUAL_INFO, INFINITY, BNN_E_INVALID},
        {rec, rs, 2, (bnn_refusal_rule)99, 0.2f, BNN_E_INVALID},
        {rec, 7, 2, BNN_REFUSE_NONE, 0.2f, BNN_E_INVALID},
        {rec, SIZE_MAX / 2, 4, BNN_REFUSE_NONE, 0.2f, BNN_E_SHAPE},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ck_assert_int_eq(bnn_apply_refusal(cases[k].r, cases[k].rs,
                                           cases[k].n, cases[k].rule,
                                           cases[k].t),
                         cases[k].want);
        ck_assert_str_ne(bnn_last_error(), "");
        ck_assert(memcmp(rec, before, sizeof rec) == 0);
    }
}
END_TEST

/* ======================================================================== */
/* bnn_calibrate_threshold                                                  */
/* ======================================================================== */

/* MAX_PROB, probs sorted with a tie and the correctness of mean_label:
 *   prob  .95  .9   .9   .8   .7   .6
 *   ok    yes  yes  no   yes  no   yes
 * Cuts (ties cannot be split): k = 1 (acc 1), 3 (2/3), 4 (3/4), 5 (3/5),
 * 6 (4/6).  Accuracy .75 -> k = 4, t = .8; accuracy .9 -> k = 1, t = .95;
 * coverage .3 -> k = 3 (k = 2 would split the tie), t = .9. */
START_TEST(test_calibrate_max_prob)
{
    const float pr[6] = {0.9f, 0.6f, 0.95f, 0.8f, 0.9f, 0.7f};
    const int ok[6] = {0, 1, 1, 1, 1, 0};
    bnn_prediction rec[6];
    int32_t y[6];
    for (int i = 0; i < 6; i++) {
        /* label differs from mean_label to show which one is judged */
        rec[i] = mkrec(5, 2, pr[i], 0.1f, 0.0f, 0.5f);
        y[i] = ok[i] ? 2 : 3;
    }
    const struct {
        bnn_calibration_target tg;
        double v;
        float t;
        double cov, acc;
    } cases[] = {
        {BNN_CALIBRATE_ACCURACY, 0.75, 0.8f, 4.0 / 6, 0.75},
        {BNN_CALIBRATE_ACCURACY, 0.9, 0.95f, 1.0 / 6, 1.0},
        {BNN_CALIBRATE_ACCURACY, 0.6, 0.6f, 1.0, 4.0 / 6},
        {BNN_CALIBRATE_COVERAGE, 0.3, 0.9f, 3.0 / 6, 2.0 / 3},
        {BNN_CALIBRATE_COVERAGE, 0.5, 0.9f, 3.0 / 6, 2.0 / 3},
        {BNN_CALIBRATE_COVERAGE, 0.51, 0.8f, 4.0 / 6, 0.75},
        {BNN_CALIBRATE_COVERAGE, 1.0, 0.6f, 1.0, 4.0 / 6},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float t = -1;
        double cov = -1, acc = -1;
        ck_assert_int_eq(bnn_calibrate_threshold(rec, sizeof rec[0], y, 6,
                                                 BNN_REFUSE_MAX_PROB,
                                                 cases[k].tg, cases[k].v, &t,
                                                 &cov, &acc),
                         BNN_OK);
        ck_assert_msg(t == cases[k].t, "case %zu: t = %g", k, (double)t);
        tu_assert_close(cov, cases[k].cov, 1e-15, 0);
        tu_assert_close(acc, cases[k].acc, 1e-15, 0);
        /* The threshold reproduces the accepted set. */
        ck_assert_int_eq(bnn_apply_refusal(rec, sizeof rec[0], 6,
                                           BNN_REFUSE_MAX_PROB, t),
                         BNN_OK);
        int accepted = 0;
        for (int i = 0; i < 6; i++)
            accepted += !rec[i].refused;
        tu_assert_close(accepted / 6.0, cov, 1e-15, 0);
    }
}
END_TEST

/* MEDIAN (accept when > t; answer = label):
 *   max_median .9  .7  .7  .5  0
 *   ok         no  yes yes yes yes
 * Cuts: k = 1 (0), 3 (2/3), 4 (3/4); k = 5 is unreachable (a median of 0
 * is never > t >= 0).  The threshold is the next score down: k = 4 -> 0,
 * k = 3 -> .5, k = 1 -> .7.  Accuracy 1.0 is never reached: the strictest cut
 * (k = 1) comes back with its accuracy 0.  Coverage 1.0: the widest
 * reachable cut, k = 4, t = 0. */
START_TEST(test_calibrate_median)
{
    const float mm[5] = {0.7f, 0.9f, 0.0f, 0.5f, 0.7f};
    const int ok[5] = {1, 0, 1, 1, 1};
    bnn_prediction rec[5];
    int32_t y[5];
    for (int i = 0; i < 5; i++) {
        rec[i] = mkrec(1, 4, 0.5f, 0.1f, 0.0f, mm[i]);
        y[i] = ok[i] ? 1 : 0;
    }
    const struct {
        bnn_calibration_target tg;
        double v;
        float t;
        double cov, acc;
    } cases[] = {
        {BNN_CALIBRATE_ACCURACY, 0.7, 0.0f, 4.0 / 5, 0.75},
        {BNN_CALIBRATE_ACCURACY, 0.6, 0.0f, 4.0 / 5, 0.75},
        {BNN_CALIBRATE_ACCURACY, 1.0, 0.7f, 1.0 / 5, 0.0},
        {BNN_CALIBRATE_COVERAGE, 0.4, 0.5f, 3.0 / 5, 2.0 / 3},
        {BNN_CALIBRATE_COVERAGE, 1.0, 0.0f, 4.0 / 5, 0.75},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float t = -1;
        double cov = -1, acc = -1;
        ck_assert_int_eq(bnn_calibrate_threshold(rec, sizeof rec[0], y, 5,
                                                 BNN_REFUSE_MEDIAN,
                                                 cases[k].tg, cases[k].v, &t,
                                                 &cov, &acc),
                         BNN_OK);
        ck_assert_msg(t == cases[k].t, "case %zu: t = %g", k, (double)t);
        tu_assert_close(cov, cases[k].cov, 1e-15, 0);
        tu_assert_close(acc, cases[k].acc, 1e-15, 0);
    }
}
END_TEST

/* ENTROPY (accept when <= t; answer = mean_label):
 *   entropy .1  .3  .3  .6  .9
 *   ok      yes no  yes yes no
 * Cuts: k = 1 (1), 3 (2/3), 4 (3/4), 5 (3/5).  Accuracy .7 -> k = 4,
 * t = .6. */
START_TEST(test_calibrate_entropy)
{
    const float h[5] = {0.3f, 0.9f, 0.1f, 0.6f, 0.3f};
    const int ok[5] = {0, 0, 1, 1, 1};
    bnn_prediction rec[5];
    int32_t y[5];
    for (int i = 0; i < 5; i++) {
        rec[i] = mkrec(0, 1, 0.5f, h[i], h[i] / 2, 0.5f);
        y[i] = ok[i] ? 1 : 0;
    }
    float t;
    double cov, acc;
    ck_assert_int_eq(bnn_calibrate_threshold(rec, sizeof rec[0], y, 5,
                                             BNN_REFUSE_ENTROPY,
                                             BNN_CALIBRATE_ACCURACY, 0.7, &t,
                                             &cov, &acc),
                     BNN_OK);
    ck_assert(t == 0.6f);
    tu_assert_close(cov, 0.8, 1e-15, 0);
    tu_assert_close(acc, 0.75, 1e-15, 0);
    ck_assert_int_eq(bnn_calibrate_threshold(rec, sizeof rec[0], y, 5,
                                             BNN_REFUSE_MUTUAL_INFO,
                                             BNN_CALIBRATE_COVERAGE, 0.4, &t,
                                             NULL, NULL),
                     BNN_OK);
    ck_assert(t == 0.3f / 2); /* k = 3 */
}
END_TEST

/* Random records with heavy ties: for every rule and target the result
 * matches a brute force over all thresholds, and applying the threshold
 * accepts exactly the reported set. */
START_TEST(test_calibrate_brute_force)
{
    tu_rng g = {2024};
    const bnn_refusal_rule rules[4] = {BNN_REFUSE_MEDIAN, BNN_REFUSE_MAX_PROB,
                                       BNN_REFUSE_ENTROPY,
                                       BNN_REFUSE_MUTUAL_INFO};
    const double values[5] = {0.2, 0.5, 0.75, 0.9, 1.0};
    for (int trial = 0; trial < 60; trial++) {
        size_t n = 1 + tu_next(&g) % 30;
        bnn_prediction rec[30], work[30];
        int32_t y[30];
        for (size_t i = 0; i < n; i++) {
            rec[i] = mkrec((int32_t)(tu_next(&g) % 3),
                           (int32_t)(tu_next(&g) % 3),
                           (float)(tu_next(&g) % 6) / 5.0f,
                           (float)(tu_next(&g) % 5) / 4.0f,
                           (float)(tu_next(&g) % 4) / 8.0f,
                           (float)(tu_next(&g) % 6) / 5.0f);
            y[i] = (int32_t)(tu_next(&g) % 3);
        }
        for (int ri = 0; ri < 4; ri++) {
            bnn_refusal_rule rule = rules[ri];
            /* every achievable accepted set: thresholds at each score
             * (and 0 for the median rule) */
            size_t set_k[32], set_ok[32], ns = 0;
            for (size_t c = 0; c <= n; c++) {
                float t;
                if (c == n)
                    t = 0.0f;
                else
                    t = rule == BNN_REFUSE_MEDIAN ? rec[c].max_median
                        : rule == BNN_REFUSE_MAX_PROB ? rec[c].prob
                        : rule == BNN_REFUSE_ENTROPY ? rec[c].entropy
                                                     : rec[c].mutual_info;
                size_t k = 0, okc = 0;
                for (size_t i = 0; i < n; i++)
                    if (!refusal_refuses(&rec[i], rule, t)) {
                        k++;
                        okc += (rule == BNN_REFUSE_MEDIAN ? rec[i].label
                                                          : rec[i].mean_label)
                               == y[i];
                    }
                if (k) {
                    set_k[ns] = k;
                    set_ok[ns++] = okc;
                }
            }
            for (int tg = 0; tg < 2; tg++)
                for (int vi = 0; vi < 5; vi++) {
                    double v = values[vi];
                    /* brute-force choice of k */
                    size_t want = 0, minsz = SIZE_MAX, maxsz = 0;
                    int found = 0;
                    for (size_t j = 0; j < ns; j++) {
                        size_t k = set_k[j];
                        minsz = k < minsz ? k : minsz;
                        maxsz = k > maxsz ? k : maxsz;
                        int good = tg == 0 ? (double)set_ok[j] / k >= v
                                           : (double)k / n >= v;
                        if (good && (!found || (tg == 0 ? k > want
                                                        : k < want))) {
                            want = k;
                            found = 1;
                        }
                    }
                    if (!found)
                        want = ns ? (tg == 0 ? minsz : maxsz) : 0;

                    float t;
                    double cov, acc;
                    ck_assert_int_eq(
                        bnn_calibrate_threshold(rec, sizeof rec[0], y, n,
                                                rule,
                                                (bnn_calibration_target)tg, v,
                                                &t, &cov, &acc),
                        BNN_OK);
                    tu_assert_close(cov * n, (double)want, 1e-9, 0);
                    memcpy(work, rec, n * sizeof rec[0]);
                    ck_assert_int_eq(bnn_apply_refusal(work, sizeof rec[0],
                                                       n, rule, t),
                                     BNN_OK);
                    size_t k = 0, okc = 0;
                    for (size_t i = 0; i < n; i++)
                        if (!work[i].refused) {
                            k++;
                            okc += (rule == BNN_REFUSE_MEDIAN
                                        ? rec[i].label
                                        : rec[i].mean_label) == y[i];
                        }
                    ck_assert_uint_eq(k, want);
                    tu_assert_close(acc, k ? (double)okc / k : 0.0, 1e-12,
                                    0);
                }
        }
    }
}
END_TEST

START_TEST(test_calibrate_invalid)
{
    bnn_prediction rec[2] = {mkrec(0, 0, 0.5f, 0.1f, 0.1f, 0.5f),
                             mkrec(1, 1, 0.7f, 0.1f, 0.1f, 0.5f)};
    const int32_t y[2] = {0, 1}, yneg[2] = {0, -1};
    const size_t rs = sizeof rec[0];
    float t = -5;
    double cov = -5, acc = -5;
    ck_assert_int_eq(bnn_calibrate_threshold(NULL, rs, y, 2,
                                             BNN_REFUSE_MAX_PROB,
                                             BNN_CALIBRATE_ACCURACY, 0.9, &t,
                                             &cov, &acc),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_calibrate_threshold(rec, rs, NULL, 2,
                                             BNN_REFUSE_MAX_PROB,
                                             BNN_CALIBRATE_ACCURACY, 0.9, &t,
                                             &cov, &acc),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_calibrate_threshold(rec, rs, y, 2,
                                             BNN_REFUSE_MAX_PROB,
                                             BNN_CALIBRATE_ACCURACY, 0.9,
                                             NULL, &cov, &acc),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_calibrate_threshold(rec, rs, y, 0,
                                             BNN_REFUSE_MAX_PROB,
                                             BNN_CALIBRATE_ACCURACY, 0.9, &t,
                                             &cov, &acc),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_calibrate_threshold(rec, rs, y, 2, BNN_REFUSE_NONE,
                                             BNN_CALIBRATE_ACCURACY, 0.9, &t,
                                             &cov, &acc),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_calibrate_threshold(rec, rs, y, 2,
                                             (bnn_refusal_rule)17,
                                             BNN_CALIBRATE_ACCURACY, 0.9, &t,
                                             &cov, &acc),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_calibrate_threshold(rec, rs, y, 2,
                                             BNN_REFUSE_MAX_PROB,
                                             (bnn_calibration_target)3, 0.9,
                                             &t, &cov, &acc),
                     BNN_E_INVALID);
    const double badv[4] = {0.0, -0.5, 1.0000001, NAN};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(bnn_calibrate_threshold(rec, rs, y, 2,
                                                 BNN_REFUSE_MAX_PROB,
                                                 BNN_CALIBRATE_COVERAGE,
                                                 badv[i], &t, &cov, &acc),
                         BNN_E_INVALID);
    ck_assert_int_eq(bnn_calibrate_threshold(rec, rs, yneg, 2,
                                             BNN_REFUSE_MAX_PROB,
                                             BNN_CALIBRATE_ACCURACY, 0.9, &t,
                                             &cov, &acc),
                     BNN_E_INVALID);
    /* mean_label is needed by the non-median rules */
    ck_assert_int_eq(bnn_calibrate_threshold(rec, rs - 4, y, 2,
                                             BNN_REFUSE_MAX_PROB,
                                             BNN_CALIBRATE_ACCURACY, 0.9, &t,
                                             &cov, &acc),
                     BNN_E_INVALID);
    bnn_prediction bad[2] = {rec[0], rec[1]};
    bad[1].entropy = NAN;
    ck_assert_int_eq(bnn_calibrate_threshold(bad, rs, y, 2,
                                             BNN_REFUSE_ENTROPY,
                                             BNN_CALIBRATE_ACCURACY, 0.9, &t,
                                             &cov, &acc),
                     BNN_E_INVALID);
    bad[1].entropy = 0.1f;
    bad[0].prob = 1.5f;
    ck_assert_int_eq(bnn_calibrate_threshold(bad, rs, y, 2,
                                             BNN_REFUSE_MAX_PROB,
                                             BNN_CALIBRATE_ACCURACY, 0.9, &t,
                                             &cov, &acc),
                     BNN_E_INVALID);
    ck_assert(t == -5 && cov == -5 && acc == -5);
}
END_TEST

/* ======================================================================== */
/* Networks                                                                 */
/* ======================================================================== */

typedef struct tnet {
    size_t ns, sizes[4];
    bnn_activation act;
    bnn_likelihood lik;
    float noise;
    float w[3][1024], b[3][64];
    bnn_model *m;
    bnn_guide *g;
} tnet;

static void tnet_make(tnet *t, const size_t *sizes, size_t ns,
                      bnn_activation act, bnn_likelihood lik, float sigma,
                      uint64_t seed, const bnn_allocator *al)
{
    memset(t, 0, sizeof *t);
    t->ns = ns;
    memcpy(t->sizes, sizes, ns * sizeof *sizes);
    t->act = act;
    t->lik = lik;
    t->noise = 0.75f;
    t->m = tu_model(sizes, ns, act, lik, t->noise, al);
    ck_assert_int_eq(bnn_guide_create(t->m, NULL, &t->g), BNN_OK);
    tu_rng r = {seed};
    for (size_t l = 0; l + 1 < ns; l++) {
        size_t in = sizes[l], out = sizes[l + 1];
        float ws[1024], bs[64];
        ck_assert(in * out <= 1024 && out <= 64);
        tu_fill_uniform(&r, t->w[l], in * out, -1.5f, 1.5f);
        tu_fill_uniform(&r, t->b[l], out, -0.5f, 0.5f);
        for (size_t i = 0; i < 1024; i++)
            ws[i] = sigma;
        for (size_t i = 0; i < 64; i++)
            bs[i] = sigma;
        ck_assert_int_eq(bnn_guide_set_layer(t->g, l, t->w[l], ws, t->b[l],
                                             bs),
                         BNN_OK);
    }
}

static void tnet_free(tnet *t)
{
    bnn_guide_free(t->g);
    bnn_model_free(t->m);
}

/* The mean network in double: softmax probabilities or raw outputs. */
static void ref_forward(const tnet *t, const float *x, double *y)
{
    double h[64], a[64];
    size_t in = t->sizes[0];
    for (size_t k = 0; k < in; k++)
        h[k] = x[k];
    for (size_t l = 0; l + 1 < t->ns; l++) {
        size_t out = t->sizes[l + 1];
        for (size_t j = 0; j < out; j++) {
            double s = t->b[l][j];
            for (size_t k = 0; k < in; k++)
                s += (double)t->w[l][j * in + k] * h[k];
            a[j] = s;
        }
        int last = l + 2 == t->ns;
        for (size_t j = 0; j < out; j++)
            h[j] = last ? a[j]
                   : t->act == BNN_ACT_TANH ? tanh(a[j])
                                            : (a[j] > 0 ? a[j] : 0);
        in = out;
    }
    if (t->lik == BNN_LIK_GAUSSIAN) {
        for (size_t j = 0; j < in; j++)
            y[j] = h[j];
        return;
    }
    double mx = h[0], z = 0;
    for (size_t j = 1; j < in; j++)
        mx = h[j] > mx ? h[j] : mx;
    for (size_t j = 0; j < in; j++)
        z += exp(h[j] - mx);
    for (size_t j = 0; j < in; j++)
        y[j] = exp(h[j] - mx) / z;
}

#define TINY 1e-20f

/* With sigma ~ 0 every sample is the mean network: the prediction equals
 * the double-precision forward pass of the set weights. */
static void check_deterministic(const size_t *sizes, size_t ns,
                                bnn_activation act, uint64_t seed)
{
    enum { N = 6 };
    tnet t;
    tnet_make(&t, sizes, ns, act, BNN_LIK_CATEGORICAL, TINY, seed, NULL);
    size_t in = sizes[0], C = sizes[ns - 1];
    float x[N * 8], probs[N * 8], logp[3 * N * 8], med[N * 8];
    tu_rng r = {seed + 100};
    tu_fill_uniform(&r, x, N * in, -2.0f, 2.0f);
    ck_assert_int_eq(bnn_predict(t.g, x, N, 3, 9, probs), BNN_OK);
    ck_assert_int_eq(bnn_predict_samples(t.g, x, N, 3, 9, logp), BNN_OK);
    bnn_prediction rec[N];
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.num_samples = 4;
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x, N, rec,
                                                  sizeof rec[0], med, NULL),
                     BNN_OK);
    for (size_t i = 0; i < N; i++) {
        double y[8], h = 0;
        size_t best = 0;
        ref_forward(&t, x + i * in, y);
        for (size_t c = 0; c < C; c++) {
            tu_assert_close(probs[i * C + c], y[c], 1e-6, 1e-5);
            tu_assert_close(med[i * C + c], y[c], 1e-6, 1e-5);
            for (size_t s = 0; s < 3; s++)
                tu_assert_close(logp[(s * N + i) * C + c], log(y[c]), 1e-5,
                                1e-5);
            h -= y[c] * log(y[c]);
            if (y[c] > y[best])
                best = c;
        }
        ck_assert_int_eq(rec[i].label, (int)best);
        ck_assert_int_eq(rec[i].mean_label, (int)best);
        tu_assert_close(rec[i].prob, y[best], 1e-6, 1e-5);
        tu_assert_close(rec[i].max_median, y[best], 1e-6, 1e-5);
        tu_assert_close(rec[i].entropy, h, 1e-5, 1e-5);
        tu_assert_close(rec[i].expected_entropy, h, 1e-5, 1e-5);
        tu_assert_close(rec[i].mutual_info, 0.0, 1e-6, 0);
        ck_assert_int_eq(rec[i].refused, !(rec[i].max_median > 0.2f));
    }
    tnet_free(&t);
}

START_TEST(test_deterministic_relu)
{
    const size_t sizes[3] = {3, 4, 2};
    check_deterministic(sizes, 3, BNN_ACT_RELU, 1);
}
END_TEST

START_TEST(test_deterministic_tanh)
{
    const size_t sizes[4] = {3, 5, 4, 3};
    check_deterministic(sizes, 4, BNN_ACT_TANH, 2);
}
END_TEST

START_TEST(test_deterministic_no_hidden)
{
    const size_t sizes[2] = {2, 3};
    check_deterministic(sizes, 2, BNN_ACT_RELU, 3);
}
END_TEST

START_TEST(test_deterministic_regression)
{
    enum { N = 5 };
    const size_t sizes[3] = {3, 4, 2};
    tnet t;
    tnet_make(&t, sizes, 3, BNN_ACT_TANH, BNN_LIK_GAUSSIAN, TINY, 4, NULL);
    float x[N * 3], mean[N * 2], var[N * 2], mean2[N * 2];
    tu_rng r = {77};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    ck_assert_int_eq(bnn_predict_regression(t.g, x, N, 5, 3, mean, var),
                     BNN_OK);
    for (size_t i = 0; i < N; i++) {
        double y[2];
        ref_forward(&t, x + i * 3, y);
        for (size_t c = 0; c < 2; c++) {
            tu_assert_close(mean[i * 2 + c], y[c], 1e-6, 1e-5);
            /* no epistemic spread: only the noise */
            tu_assert_close(var[i * 2 + c], 0.75 * 0.75, 1e-7, 0);
        }
    }
    /* var may be NULL */
    ck_assert_int_eq(bnn_predict_regression(t.g, x, N, 5, 3, mean2, NULL),
                     BNN_OK);
    ck_assert(memcmp(mean, mean2, sizeof mean) == 0);
    tnet_free(&t);
}
END_TEST

/* One sampled network (flat layout of the guide) in double. */
static void ref_forward_flat(const bnn_model *m, const float *net,
                             const float *x, double *y)
{
    double h[64], a[64];
    size_t in = m->sizes[0], L = m->n_sizes - 1;
    for (size_t k = 0; k < in; k++)
        h[k] = x[k];
    for (size_t l = 0; l < L; l++) {
        size_t out = m->sizes[l + 1];
        const float *w = net + m->w_off[l], *b = net + m->b_off[l];
        for (size_t j = 0; j < out; j++) {
            double s = b[j];
            for (size_t k = 0; k < in; k++)
                s += (double)w[j * in + k] * h[k];
            a[j] = s;
        }
        for (size_t j = 0; j < out; j++)
            h[j] = l + 1 == L ? a[j]
                   : m->activation == BNN_ACT_TANH ? tanh(a[j])
                                                   : (a[j] > 0 ? a[j] : 0);
        in = out;
    }
    if (m->likelihood == BNN_LIK_GAUSSIAN) {
        memcpy(y, h, in * sizeof *y);
        return;
    }
    double mx = h[0], z = 0;
    for (size_t j = 1; j < in; j++)
        mx = h[j] > mx ? h[j] : mx;
    for (size_t j = 0; j < in; j++)
        z += exp(h[j] - mx);
    for (size_t j = 0; j < in; j++)
        y[j] = exp(h[j] - mx) / z;
}

/* NETWORKS: sample s is the network drawn on stream (seed, s) of RNG_PREDICT: the
 * predictive mean / variance equal the double-precision average over those
 * networks. */
START_TEST(test_matches_sampled_networks)
{
    enum { N = 4, S = 25 };
    const size_t cs[3] = {3, 5, 4}, gs[3] = {3, 4, 2};
    tnet t, tg;
    tnet_make(&t, cs, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 101, NULL);
    tnet_make(&tg, gs, 3, BNN_ACT_TANH, BNN_LIK_GAUSSIAN, 0.4f, 102, NULL);
    float x[N * 3], probs[N * 4], mean[N * 2], var[N * 2];
    tu_rng r = {15};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.sampling = BNN_SAMPLING_NETWORKS;
    cfg.num_samples = S;
    cfg.seed = 77;
    bnn_predictor *p;
    ck_assert_int_eq(bnn_predictor_create(t.g, &cfg, N, &p), BNN_OK);
    ck_assert_int_eq(bnn_predictor_probs(p, x, N, probs), BNN_OK);
    bnn_predictor_free(p);
    cfg.seed = 78;
    ck_assert_int_eq(bnn_predictor_create(tg.g, &cfg, N, &p), BNN_OK);
    ck_assert_int_eq(bnn_predictor_regression(p, x, N, mean, var), BNN_OK);
    bnn_predictor_free(p);

    float net[64];
    double pm[N * 4] = {0}, ym[N * 2] = {0}, y2[N * 2] = {0};
    ck_assert_uint_le(bnn_model_param_count(t.m), 64);
    for (size_t s = 0; s < S; s++) {
        guide_sample_network(t.g, 77, rng_stream_id(s, 0, 0, RNG_PREDICT),
                             net);
        for (size_t i = 0; i < N; i++) {
            double y[4];
            ref_forward_flat(t.m, net, x + i * 3, y);
            for (size_t c = 0; c < 4; c++)
                pm[i * 4 + c] += y[c] / S;
        }
        guide_sample_network(tg.g, 78, rng_stream_id(s, 0, 0, RNG_PREDICT),
                             net);
        for (size_t i = 0; i < N; i++) {
            double y[2];
            ref_forward_flat(tg.m, net, x + i * 3, y);
            for (size_t c = 0; c < 2; c++) {
                ym[i * 2 + c] += y[c] / S;
                y2[i * 2 + c] += y[c] * y[c] / S;
            }
        }
    }
    for (size_t j = 0; j < N * 4; j++)
        tu_assert_close(probs[j], pm[j], 1e-6, 1e-5);
    double min_epi = 1e9;
    for (size_t j = 0; j < N * 2; j++) {
        double epi = y2[j] - ym[j] * ym[j];
        min_epi = epi < min_epi ? epi : min_epi;
        tu_assert_close(mean[j], ym[j], 1e-5, 1e-5);
        tu_assert_close(var[j], epi + 0.75 * 0.75, 1e-5, 1e-5);
    }
    ck_assert_msg(min_epi > 1e-3, "posterior too narrow: %g", min_epi);
    tnet_free(&t);
    tnet_free(&tg);
}
END_TEST

/* A non-degenerate posterior for the Monte Carlo tests. */
static const size_t mc_sizes[3] = {3, 5, 4};

START_TEST(test_mean_equals_samples)
{
    enum { N = 9, S = 37, C = 4 };
    tnet t;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 21,
              NULL);
    float x[N * 3], probs[N * C], logp[S * N * C];
    tu_rng r = {3};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    ck_assert_int_eq(bnn_predict(t.g, x, N, S, 5, probs), BNN_OK);
    ck_assert_int_eq(bnn_predict_samples(t.g, x, N, S, 5, logp), BNN_OK);
    double spread = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t c = 0; c < C; c++) {
            double sum = 0, lo = 1, hi = 0;
            for (size_t s = 0; s < S; s++) {
                double p = exp((double)logp[(s * N + i) * C + c]);
                sum += p;
                lo = p < lo ? p : lo;
                hi = p > hi ? p : hi;
            }
            tu_assert_close(probs[i * C + c], sum / S, 1e-6, 1e-6);
            spread += hi - lo;
        }
    /* the samples really differ */
    ck_assert(spread / (N * C) > 0.05);
    for (size_t s = 0; s < S; s++)
        for (size_t i = 0; i < N; i++) {
            double z = 0;
            for (size_t c = 0; c < C; c++)
                z += exp((double)logp[(s * N + i) * C + c]);
            tu_assert_close(z, 1.0, 1e-5, 0);
        }

    /* The uncertainty summary of the same draws, from the raw samples. */
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.num_samples = S;
    cfg.seed = 5;
    cfg.rule = BNN_REFUSE_MAX_PROB;
    cfg.threshold = 0.6f;
    const float lv[3] = {0.1f, 0.5f, 0.95f};
    cfg.n_quantiles = 3;
    cfg.quantiles = lv;
    bnn_prediction rec[N];
    float med[N * C], q[N * C * 3];
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x, N, rec,
                                                  sizeof rec[0], med, q),
                     BNN_OK);
    for (size_t i = 0; i < N; i++) {
        float ps[S * C];
        for (size_t s = 0; s < S; s++)
            for (size_t c = 0; c < C; c++)
                ps[s * C + c] = expf(logp[(s * N + i) * C + c]);
        ref_stats ref;
        ref_compute(ps, S, C, &ref);
        tu_assert_close(rec[i].entropy, ref.h, 1e-5, 1e-5);
        tu_assert_close(rec[i].expected_entropy, ref.eh, 1e-5, 1e-5);
        tu_assert_close(rec[i].mutual_info, ref.mi, 2e-5, 0);
        tu_assert_close(rec[i].prob, probs[i * C + rec[i].label], 1e-7, 0);
        ck_assert_int_eq(rec[i].refused, rec[i].prob < 0.6f);
        for (size_t c = 0; c < C; c++) {
            tu_assert_close(med[i * C + c], ref.med[c], 1e-6, 1e-5);
            double col[S];
            for (size_t s = 0; s < S; s++)
                col[s] = ps[s * C + c];
            qsort(col, S, sizeof col[0], cmp_double);
            for (int j = 0; j < 3; j++)
                tu_assert_close(q[(i * C + c) * 3 + j],
                                ref_quantile_sorted(col, S, lv[j]), 1e-6,
                                1e-5);
            ck_assert(med[i * C + c] == q[(i * C + c) * 3 + 1]);
        }
    }
    tnet_free(&t);
}
END_TEST

/* The Monte Carlo mean converges: against a 20000-sample reference, the
 * 2000-sample estimate is within 5 standard errors and the one-sample
 * estimate is much further off. */
START_TEST(test_monte_carlo_convergence)
{
    enum { N = 4, C = 4, SREF = 20000, SMID = 2000, SV = 400 };
    tnet t;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 31,
              NULL);
    float x[N * 3], ref[N * C], mid[N * C], one[N * C];
    static float logp[SV * N * C];
    tu_rng r = {4};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    ck_assert_int_eq(bnn_predict(t.g, x, N, SREF, 1000, ref), BNN_OK);
    ck_assert_int_eq(bnn_predict(t.g, x, N, SMID, 2000, mid), BNN_OK);
    ck_assert_int_eq(bnn_predict(t.g, x, N, 1, 3000, one), BNN_OK);
    /* per-(input, class) spread of one sample's probability */
    ck_assert_int_eq(bnn_predict_samples(t.g, x, N, SV, 4000, logp), BNN_OK);
    double err_mid = 0, err_one = 0;
    for (size_t j = 0; j < N * C; j++) {
        double m = 0, v = 0;
        for (size_t s = 0; s < SV; s++)
            m += exp((double)logp[s * N * C + j]) / SV;
        for (size_t s = 0; s < SV; s++) {
            double d = exp((double)logp[s * N * C + j]) - m;
            v += d * d / (SV - 1);
        }
        double se = sqrt(v / SMID + v / SREF);
        ck_assert_msg(fabs(mid[j] - ref[j]) <= 5 * se + 1e-6,
                      "entry %zu: %g vs %g (se %g)", j, (double)mid[j],
                      (double)ref[j], se);
        err_mid += fabs(mid[j] - ref[j]);
        err_one += fabs(one[j] - ref[j]);
    }
    ck_assert_msg(err_one > 5 * err_mid, "S=1 error %g, S=2000 error %g",
                  err_one, err_mid);
    tnet_free(&t);
}
END_TEST

/* Seeds: the same seed gives the same bits, another seed other values. */
START_TEST(test_seeds)
{
    enum { N = 5, C = 4 };
    tnet t;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 41,
              NULL);
    float x[N * 3], a[N * C], b[N * C], c[N * C];
    tu_rng r = {6};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    ck_assert_int_eq(bnn_predict(t.g, x, N, 10, 1, a), BNN_OK);
    ck_assert_int_eq(bnn_predict(t.g, x, N, 10, 1, b), BNN_OK);
    ck_assert_int_eq(bnn_predict(t.g, x, N, 10, 2, c), BNN_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    /* sample s does not depend on num_samples: the first 10 of 20 */
    float l10[10 * N * C], l20[20 * N * C];
    ck_assert_int_eq(bnn_predict_samples(t.g, x, N, 10, 7, l10), BNN_OK);
    ck_assert_int_eq(bnn_predict_samples(t.g, x, N, 20, 7, l20), BNN_OK);
    ck_assert(memcmp(l10, l20, sizeof l10) == 0);
    /* nor on n: input 2 alone equals row 2 of the batch */
    float l1[10 * C];
    ck_assert_int_eq(bnn_predict_samples(t.g, x + 2 * 3, 1, 10, 7, l1),
                     BNN_OK);
    for (size_t s = 0; s < 10; s++)
        ck_assert(memcmp(l1 + s * C, l10 + (s * N + 2) * C,
                         C * sizeof(float)) == 0);
    tnet_free(&t);
}
END_TEST

/* Wide enough that the summation order matters in float: a BLAS gemm
 * gives different last bits here for different row counts. */
static const size_t wide_sizes[3] = {24, 40, 4};
static const size_t wide_reg_sizes[3] = {24, 32, 2};

/* Chunk sizes 1, 3, 16, 17, n and the automatic one give identical bits,
 * and every input alone gives the bits it gets in the batch. */
START_TEST(test_chunking_bit_identical)
{
    enum { N = 37, IN = 24, C = 4, S = 7, NQ = 2, NCH = 6 };
    tnet t, tg;
    tnet_make(&t, wide_sizes, 3, BNN_ACT_TANH, BNN_LIK_CATEGORICAL, 0.3f, 51,
              NULL);
    tnet_make(&tg, wide_reg_sizes, 3, BNN_ACT_RELU, BNN_LIK_GAUSSIAN, 0.3f,
              52, NULL);
    static float x[N * IN];
    tu_rng r = {8};
    tu_fill_uniform(&r, x, N * IN, -2.0f, 2.0f);
    const float lv[NQ] = {0.25f, 0.8f};
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.num_samples = S;
    cfg.n_quantiles = NQ;
    cfg.quantiles = lv;

    const size_t chunks[NCH] = {N, 1, 3, 16, 17, 0};
    static bnn_prediction rec0[N], rec[N];
    static float med0[N * C], med[N * C], q0[N * C * NQ], q[N * C * NQ];
    static float p0[N * C], p[N * C], l0[S * N * C], l[S * N * C];
    static float m0[N * 2], m[N * 2], v0[N * 2], v[N * 2];
    static float mp0[N * C], mp[N * C];
    for (int k = 0; k < NCH; k++) {
        int first = k == 0;
        cfg.mean_probs = first ? mp0 : mp;
        ck_assert_int_eq(predict_with_chunk(t.g, &cfg, x, N,
                                            first ? rec0 : rec,
                                            sizeof rec[0], first ? med0 : med,
                                            first ? q0 : q, chunks[k]),
                         BNN_OK);
        ck_assert_int_eq(predict_mean_with_chunk(t.g, x, N, S, 1,
                                                 first ? p0 : p, chunks[k]),
                         BNN_OK);
        ck_assert_int_eq(predict_samples_with_chunk(t.g, x, N, S, 1,
                                                    first ? l0 : l,
                                                    chunks[k]),
                         BNN_OK);
        ck_assert_int_eq(predict_regression_with_chunk(
                             tg.g, x, N, S, 1, first ? m0 : m,
                             first ? v0 : v, chunks[k]),
                         BNN_OK);
        if (first)
            continue;
        ck_assert_msg(memcmp(rec0, rec, sizeof rec) == 0, "chunk %zu",
                      chunks[k]);
        ck_assert(memcmp(med0, med, sizeof med) == 0);
        ck_assert(memcmp(q0, q, sizeof q) == 0);
        ck_assert(memcmp(p0, p, sizeof p) == 0);
        ck_assert(memcmp(mp0, mp, sizeof mp) == 0);
        ck_assert(memcmp(l0, l, sizeof l) == 0);
        ck_assert(memcmp(m0, m, sizeof m) == 0);
        ck_assert(memcmp(v0, v, sizeof v) == 0);
    }
    /* The mean of the summary, and its optional mean_probs output, are
     * bnn_predict's mean bit for bit. */
    for (size_t i = 0; i < N; i++)
        ck_assert(rec0[i].prob == p0[i * C + rec0[i].label]);
    ck_assert(memcmp(mp0, p0, sizeof p0) == 0);
    cfg.mean_probs = NULL;
    /* Batching: inputs 5 and 36 on their own, and 20..36 as a batch. */
    const size_t alone[2] = {5, 36};
    for (int a = 0; a < 2; a++) {
        size_t i = alone[a];
        bnn_prediction r1;
        float pm[C], mm[2], vv[2];
        ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x + i * IN,
                                                      1, &r1, sizeof r1, NULL,
                                                      NULL),
                         BNN_OK);
        ck_assert(memcmp(&r1, &rec0[i], sizeof r1) == 0);
        ck_assert_int_eq(bnn_predict(t.g, x + i * IN, 1, S, 1, pm), BNN_OK);
        ck_assert(memcmp(pm, p0 + i * C, sizeof pm) == 0);
        ck_assert_int_eq(bnn_predict_regression(tg.g, x + i * IN, 1, S, 1,
                                                mm, vv),
                         BNN_OK);
        ck_assert(memcmp(mm, m0 + i * 2, sizeof mm) == 0);
        ck_assert(memcmp(vv, v0 + i * 2, sizeof vv) == 0);
    }
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x + 20 * IN,
                                                  N - 20, rec, sizeof rec[0],
                                                  NULL, NULL),
                     BNN_OK);
    ck_assert(memcmp(rec, rec0 + 20, (N - 20) * sizeof rec[0]) == 0);
    tnet_free(&t);
    tnet_free(&tg);
}
END_TEST

/* bnn_predict_config.num_threads shares each chunk's networks and records
 * among threads: any count (more than the samples included) and any chunk
 * give the same bits; above BNN_MAX_THREADS is refused. */
START_TEST(test_call_threads_bit_identical)
{
    enum { N = 37, IN = 24, C = 4, S = 7, NQ = 2 };
    tnet t;
    tnet_make(&t, wide_sizes, 3, BNN_ACT_TANH, BNN_LIK_CATEGORICAL, 0.3f, 53, NULL);
    static float x[N * IN];
    tu_rng r = {9};
    tu_fill_uniform(&r, x, N * IN, -2.0f, 2.0f);
    const float lv[NQ] = {0.1f, 0.5f};
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    ck_assert_uint_eq(cfg.num_threads, 1);
    cfg.num_samples = S;
    cfg.n_quantiles = NQ;
    cfg.quantiles = lv;
    cfg.rule = BNN_REFUSE_MUTUAL_INFO;
    cfg.threshold = 0.05f;
    static bnn_prediction rec0[N], rec[N];
    static float med0[N * C], med[N * C], q0[N * C * NQ], q[N * C * NQ];
    static float mp0[N * C], mp[N * C];
    cfg.mean_probs = mp0;
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x, N, rec0, sizeof rec0[0], med0,
                                                  q0),
                     BNN_OK);
    const size_t threads[] = {0, 2, 3, 8, 64};
    const size_t chunks[] = {N, 3, 16, 0};
    for (size_t a = 0; a < sizeof threads / sizeof threads[0]; a++)
        for (size_t b = 0; b < sizeof chunks / sizeof chunks[0]; b++) {
            cfg.num_threads = threads[a];
            cfg.mean_probs = mp;
            memset(rec, 0, sizeof rec);
            ck_assert_int_eq(predict_with_chunk(t.g, &cfg, x, N, rec, sizeof rec[0], med, q,
                                                chunks[b]),
                             BNN_OK);
            ck_assert_msg(memcmp(rec, rec0, sizeof rec) == 0, "threads %zu, chunk %zu",
                          threads[a], chunks[b]);
            ck_assert(memcmp(med, med0, sizeof med) == 0);
            ck_assert(memcmp(q, q0, sizeof q) == 0);
            ck_assert(memcmp(mp, mp0, sizeof mp) == 0);
        }
    cfg.num_threads = BNN_MAX_THREADS + 1;
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x, N, rec, sizeof rec[0], NULL,
                                                  NULL),
                     BNN_E_INVALID);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "num_threads must be in [0, 256], got 257"));
    tnet_free(&t);
}
END_TEST

/* The automatic chunk: whole panels, as many as the budget holds. */
START_TEST(test_auto_chunk)
{
    const size_t sizes[4] = {784, 1024, 300, 10};
    bnn_model_config c;
    bnn_model_config_init(&c);
    c.n_sizes = 4;
    c.layer_sizes = sizes;
    bnn_model *m = NULL;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_OK);
    /* per input: 784 + 2 * 1024 + 10 floats, plus 100 samples x 10 classes */
    size_t row = 4 * (784 + 2 * 1024 + 10) + 100 * 10 * 4;
    size_t k = predict_auto_chunk(m, 1000000, 100 * 10 * 4);
    ck_assert_uint_eq(k % DENSE_PANEL, 0);
    ck_assert_uint_le(k * row, PREDICT_WORKSPACE_BYTES);
    ck_assert_uint_gt((k + DENSE_PANEL) * row, PREDICT_WORKSPACE_BYTES);
    /* n below that: one chunk of n */
    ck_assert_uint_eq(predict_auto_chunk(m, 37, 100 * 10 * 4), 37);
    ck_assert_uint_eq(predict_auto_chunk(m, 1, 0), 1);
    /* one input's samples alone exceed the budget: one panel */
    ck_assert_uint_eq(predict_auto_chunk(m, 1000, (size_t)1 << 26),
                      DENSE_PANEL);
    /* overflowing per-row size */
    ck_assert_uint_eq(predict_auto_chunk(m, 1000, SIZE_MAX - 10), 0);
    bnn_model_free(m);
}
END_TEST

/* The dense kernel: every code path gives the same bits, whatever the
 * number of panels, and matches a double-precision product. */
START_TEST(test_dense_kernel_paths)
{
    tu_rng r = {19};
    const size_t shapes[5][2] = {{1, 1}, {7, 3}, {33, 10}, {5, 9}, {64, 17}};
    for (int sh = 0; sh < 5; sh++) {
        size_t in = shapes[sh][0], out = shapes[sh][1], npan = 3;
        size_t P = DENSE_PANEL;
        float *W = malloc(in * out * sizeof *W), *b = malloc(out * sizeof *b);
        float *h = malloc(npan * in * P * sizeof *h);
        float *y[4], *y1 = malloc(out * P * sizeof *y1);
        ck_assert_ptr_nonnull(W);
        ck_assert_ptr_nonnull(b);
        ck_assert_ptr_nonnull(h);
        ck_assert_ptr_nonnull(y1);
        tu_fill_uniform(&r, W, in * out, -1.0f, 1.0f);
        tu_fill_uniform(&r, b, out, -1.0f, 1.0f);
        tu_fill_uniform(&r, h, npan * in * P, -3.0f, 3.0f);
        int paths = 0;
        for (int path = 0; path < 4; path++) {
            y[path] = malloc(npan * out * P * sizeof(float));
            ck_assert_ptr_nonnull(y[path]);
            dense_panels(W, b, out, in, h, y[path], npan, path);
            if (dense_path_available(path)) {
                paths++;
                ck_assert_msg(memcmp(y[path], y[0],
                                     npan * out * P * sizeof(float)) == 0,
                              "path %d differs (in %zu, out %zu)", path, in,
                              out);
            }
        }
        ck_assert_int_ge(paths, 2); /* at least AUTO and SCALAR */
        for (size_t p = 0; p < npan; p++)
            for (size_t j = 0; j < out; j++)
                for (size_t q = 0; q < P; q++) {
                    double s = b[j];
                    for (size_t k = 0; k < in; k++)
                        s += (double)W[j * in + k] * h[(p * in + k) * P + q];
                    tu_assert_close(y[0][(p * out + j) * P + q], s, 1e-5,
                                    1e-5);
                }
        /* one panel on its own: the last panel's bits */
        dense_panels(W, b, out, in, h + 2 * in * P, y1, 1, DENSE_PATH_AUTO);
        ck_assert(memcmp(y1, y[0] + 2 * out * P, out * P * sizeof *y1) == 0);
        for (int path = 0; path < 4; path++)
            free(y[path]);
        free(W);
        free(b);
        free(h);
        free(y1);
    }
}
END_TEST

/* Records of the caller's size: the smallest one gets label and refused
 * only; a longer stride leaves the bytes past the struct alone. */
START_TEST(test_record_sizes)
{
    enum { N = 4 };
    tnet t;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 61,
              NULL);
    float x[N * 3];
    tu_rng r = {9};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.num_samples = 20;
    bnn_prediction full[N];
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x, N, full,
                                                  sizeof full[0], NULL, NULL),
                     BNN_OK);
    const size_t sizes[3] = {offsetof(bnn_prediction, prob),
                             offsetof(bnn_prediction, entropy) + 2,
                             sizeof(bnn_prediction) + 9};
    for (int k = 0; k < 3; k++) {
        size_t rs = sizes[k];
        unsigned char *buf = malloc(N * rs);
        ck_assert_ptr_nonnull(buf);
        memset(buf, 0xcd, N * rs);
        ck_assert_int_eq(bnn_predict_with_uncertainty(
                             t.g, &cfg, x, N, (bnn_prediction *)buf, rs,
                             NULL, NULL),
                         BNN_OK);
        for (size_t i = 0; i < N; i++) {
            unsigned char *p = buf + i * rs;
            size_t written = k == 2 ? sizeof(bnn_prediction)
                             : k == 1 ? offsetof(bnn_prediction, entropy)
                                      : offsetof(bnn_prediction, prob);
            ck_assert(memcmp(p, &full[i], written) == 0);
            for (size_t b = written; b < rs; b++)
                ck_assert_uint_eq(p[b], 0xcd);
        }
        free(buf);
    }
    tnet_free(&t);
}
END_TEST

/* A config from an older caller (shorter struct) gets defaults for the
 * fields it does not know; NULL means all defaults. */
START_TEST(test_config_struct_size)
{
    enum { N = 3 };
    tnet t;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 71,
              NULL);
    float x[N * 3];
    tu_rng r = {10};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    bnn_predict_config def, old;
    bnn_predict_config_init(&def);
    ck_assert_uint_eq(def.num_samples, 100);
    ck_assert(def.seed == 1 && def.rule == BNN_REFUSE_MEDIAN);
    ck_assert(def.threshold == 0.2f && def.n_quantiles == 0);
    ck_assert_ptr_null(def.quantiles);
    ck_assert_ptr_null(def.mean_probs);
    /* A caller built before mean_probs existed: the field is not read. */
    float mp[N * 4], mp0[N * 4];
    memset(mp, 0x3c, sizeof mp);
    memcpy(mp0, mp, sizeof mp);
    bnn_predict_config pre;
    bnn_predict_config_init(&pre);
    pre.struct_size = offsetof(bnn_predict_config, mean_probs);
    pre.mean_probs = mp;
    bnn_prediction d[N];
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &pre, x, N, d,
                                                  sizeof d[0], NULL, NULL),
                     BNN_OK);
    ck_assert(memcmp(mp, mp0, sizeof mp) == 0);
    bnn_predict_config_init(&old);
    old.struct_size = offsetof(bnn_predict_config, rule);
    old.rule = BNN_REFUSE_ENTROPY; /* not covered: ignored */
    old.threshold = 5.0f;          /* invalid for MEDIAN, but ignored */
    bnn_prediction a[N], b[N], c[N];
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &def, x, N, a,
                                                  sizeof a[0], NULL, NULL),
                     BNN_OK);
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &old, x, N, b,
                                                  sizeof b[0], NULL, NULL),
                     BNN_OK);
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, NULL, x, N, c,
                                                  sizeof c[0], NULL, NULL),
                     BNN_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) == 0);
    ck_assert(memcmp(a, d, sizeof a) == 0);
    tnet_free(&t);
}
END_TEST

/* ---- concurrency ------------------------------------------------------- */

typedef struct job {
    const bnn_guide *g;
    const float *x;
    size_t n;
    bnn_prediction rec[40];
    float med[40 * 4];
    float probs[40 * 4];
    bnn_status st1, st2;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.num_samples = 50;
    cfg.seed = 99;
    j->st1 = bnn_predict_with_uncertainty(j->g, &cfg, j->x, j->n, j->rec,
                                          sizeof j->rec[0], j->med, NULL);
    j->st2 = bnn_predict(j->g, j->x, j->n, 50, 99, j->probs);
    return NULL;
}

START_TEST(test_threads_bit_identical)
{
    enum { N = 40, T = 4 };
    tnet t;
    tnet_make(&t, wide_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.3f, 81,
              NULL);
    static float x[N * 24];
    tu_rng r = {11};
    tu_fill_uniform(&r, x, N * 24, -2.0f, 2.0f);
    size_t count;
    float *params = bnn_guide_params(t.g, &count);
    float *copy = malloc(count * sizeof *copy);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, params, count * sizeof *copy);

    static job ref, jobs[T];
    ref.g = t.g;
    ref.x = x;
    ref.n = N;
    run_job(&ref);
    ck_assert_int_eq(ref.st1, BNN_OK);
    ck_assert_int_eq(ref.st2, BNN_OK);
    pthread_t th[T];
    for (int k = 0; k < T; k++) {
        jobs[k].g = t.g;
        jobs[k].x = x;
        jobs[k].n = N;
        ck_assert_int_eq(pthread_create(&th[k], NULL, run_job, &jobs[k]), 0);
    }
    for (int k = 0; k < T; k++)
        ck_assert_int_eq(pthread_join(th[k], NULL), 0);
    for (int k = 0; k < T; k++) {
        ck_assert_int_eq(jobs[k].st1, BNN_OK);
        ck_assert_int_eq(jobs[k].st2, BNN_OK);
        ck_assert(memcmp(jobs[k].rec, ref.rec, sizeof ref.rec) == 0);
        ck_assert(memcmp(jobs[k].med, ref.med, sizeof ref.med) == 0);
        ck_assert(memcmp(jobs[k].probs, ref.probs, sizeof ref.probs) == 0);
    }
    /* prediction does not write to the guide */
    ck_assert(memcmp(copy, params, count * sizeof *copy) == 0);
    free(copy);
    tnet_free(&t);
}
END_TEST

/* ---- invalid arguments -------------------------------------------------- */

START_TEST(test_invalid_uncertainty)
{
    enum { N = 3, C = 4 };
    tnet t, tg;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 91,
              NULL);
    const size_t gs[3] = {3, 4, 2};
    tnet_make(&tg, gs, 3, BNN_ACT_RELU, BNN_LIK_GAUSSIAN, 0.5f, 92, NULL);
    float x[N * 3], xnan[N * 3], xinf[N * 3];
    tu_rng r = {12};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    memcpy(xnan, x, sizeof x);
    memcpy(xinf, x, sizeof x);
    xnan[4] = NAN;
    xinf[8] = -INFINITY;
    const float lv_bad[2] = {0.5f, 1.5f};
    const float lv_nan[1] = {NAN};

    bnn_prediction rec[N];
    float med[N * C], q[N * C * 2];
    memset(rec, 0x5e, sizeof rec);
    memset(med, 0x5e, sizeof med);
    memset(q, 0x5e, sizeof q);
    bnn_prediction rec0[N];
    float med0[N * C], q0[N * C * 2];
    memcpy(rec0, rec, sizeof rec);
    memcpy(med0, med, sizeof med);
    memcpy(q0, q, sizeof q);

    for (int k = 0; k < 22; k++) {
        bnn_predict_config cfg;
        bnn_predict_config_init(&cfg);
        cfg.num_samples = 5;
        cfg.n_quantiles = 2;
        const float lv[2] = {0.1f, 0.9f};
        cfg.quantiles = lv;
        const bnn_guide *g = t.g;
        const float *xx = x;
        size_t n = N, rs = sizeof rec[0];
        bnn_prediction *out = rec;
        bnn_status want = BNN_E_INVALID;
        switch (k) {
        case 0: g = NULL; break;
        case 1: xx = NULL; break;
        case 2: out = NULL; break;
        case 3: n = 0; break;
        case 4: cfg.num_samples = 0; break;
        case 5: xx = xnan; break;
        case 6: xx = xinf; break;
        case 7: cfg.threshold = 1.5f; break;
        case 8: cfg.threshold = -0.01f; break;
        case 9: cfg.threshold = NAN; break;
        case 10: cfg.rule = BNN_REFUSE_ENTROPY; cfg.threshold = -1; break;
        case 11:
            cfg.rule = BNN_REFUSE_MUTUAL_INFO;
            cfg.threshold = INFINITY;
            break;
        case 12: cfg.rule = (bnn_refusal_rule)42; break;
        case 13: cfg.rule = (bnn_refusal_rule)-1; break;
        case 14: rs = offsetof(bnn_prediction, prob) - 1; break;
        case 15: cfg.struct_size = 0; break;
        case 16: cfg.quantiles = NULL; break;
        case 17: cfg.quantiles = lv_bad; break;
        case 18: cfg.quantiles = lv_nan; cfg.n_quantiles = 1; break;
        case 19: g = tg.g; want = BNN_E_UNSUPPORTED; break;
        case 20: n = SIZE_MAX / 2; want = BNN_E_SHAPE; break;
        case 21:
            cfg.num_samples = (size_t)1 << 41;
            break;
        }
        ck_assert_msg(bnn_predict_with_uncertainty(g, &cfg, xx, n, out, rs,
                                                   med, q) == want,
                      "case %d", k);
        ck_assert_str_ne(bnn_last_error(), "");
        ck_assert(memcmp(rec, rec0, sizeof rec) == 0);
        ck_assert(memcmp(med, med0, sizeof med) == 0);
        ck_assert(memcmp(q, q0, sizeof q) == 0);
    }
    tnet_free(&t);
    tnet_free(&tg);
}
END_TEST

START_TEST(test_invalid_predict_family)
{
    enum { N = 3, C = 4 };
    tnet t, tg;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 93,
              NULL);
    const size_t gs[3] = {3, 4, 2};
    tnet_make(&tg, gs, 3, BNN_ACT_RELU, BNN_LIK_GAUSSIAN, 0.5f, 94, NULL);
    float x[N * 3], xnan[N * 3];
    tu_rng r = {13};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    memcpy(xnan, x, sizeof x);
    xnan[0] = NAN;
    float out[4 * N * C], out0[4 * N * C], var[N * 2], var0[N * 2];
    memset(out, 0x7a, sizeof out);
    memset(var, 0x7a, sizeof var);
    memcpy(out0, out, sizeof out);
    memcpy(var0, var, sizeof var);
#define UNTOUCHED()                                                        \
    do {                                                                   \
        ck_assert_str_ne(bnn_last_error(), "");                            \
        ck_assert(memcmp(out, out0, sizeof out) == 0);                     \
        ck_assert(memcmp(var, var0, sizeof var) == 0);                     \
    } while (0)
    /* bnn_predict */
    ck_assert_int_eq(bnn_predict(NULL, x, N, 4, 1, out), BNN_E_INVALID);
    UNTOUCHED();
    ck_assert_int_eq(bnn_predict(t.g, NULL, N, 4, 1, out), BNN_E_INVALID);
    ck_assert_int_eq(bnn_predict(t.g, x, N, 4, 1, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_predict(t.g, x, 0, 4, 1, out), BNN_E_INVALID);
    UNTOUCHED();
    ck_assert_int_eq(bnn_predict(t.g, x, N, 0, 1, out), BNN_E_INVALID);
    UNTOUCHED();
    ck_assert_int_eq(bnn_predict(t.g, xnan, N, 4, 1, out), BNN_E_INVALID);
    UNTOUCHED();
    ck_assert_int_eq(bnn_predict(tg.g, x, N, 4, 1, out), BNN_E_UNSUPPORTED);
    UNTOUCHED();
    ck_assert_int_eq(bnn_predict(t.g, x, SIZE_MAX / 2, 4, 1, out),
                     BNN_E_SHAPE);
    UNTOUCHED();
    /* bnn_predict_samples */
    ck_assert_int_eq(bnn_predict_samples(t.g, x, N, 0, 1, out),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_predict_samples(t.g, xnan, N, 4, 1, out),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_predict_samples(t.g, x, N, 4, 1, NULL),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_predict_samples(tg.g, x, N, 4, 1, out),
                     BNN_E_UNSUPPORTED);
    ck_assert_int_eq(bnn_predict_samples(t.g, x, N, SIZE_MAX / 8, 1, out),
                     BNN_E_INVALID); /* more than 2^40 samples */
    /* S * n * classes overflows; x is not read past its end */
    ck_assert_int_eq(bnn_predict_samples(t.g, x, (size_t)1 << 40,
                                         (size_t)1 << 30, 1, out),
                     BNN_E_SHAPE);
    UNTOUCHED();
    /* bnn_predict_regression */
    ck_assert_int_eq(bnn_predict_regression(t.g, x, N, 4, 1, out, var),
                     BNN_E_UNSUPPORTED);
    ck_assert_int_eq(bnn_predict_regression(tg.g, x, N, 4, 1, NULL, var),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_predict_regression(tg.g, xnan, N, 4, 1, out, var),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_predict_regression(tg.g, x, N, 0, 1, out, var),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_predict_regression(tg.g, x, 0, 4, 1, out, var),
                     BNN_E_INVALID);
    UNTOUCHED();
    /* A guide whose parameters went non-finite (written through
     * bnn_guide_params here; a diverged run in practice) is refused by every
     * predictor, each naming the cause, and nothing is written. */
    const float bad[2] = {NAN, INFINITY};
    for (int b = 0; b < 2; b++) {
        size_t cnt = 0;
        float *pc = bnn_guide_params(t.g, &cnt), *pg = bnn_guide_params(tg.g, &cnt);
        size_t ci = cnt - 1; /* the last rho of the Gaussian net */
        float keep_c = pc[3], keep_g = pg[ci];
        pc[3] = bad[b];
        pg[ci] = bad[b];
        bnn_prediction rec[N];
        memset(rec, 0x5c, sizeof rec);
        bnn_prediction rec0[N];
        memcpy(rec0, rec, sizeof rec);
        ck_assert_int_eq(bnn_predict(t.g, x, N, 4, 1, out), BNN_E_NUMERIC);
        ck_assert_ptr_nonnull(strstr(bnn_last_error(), "NaN or Inf"));
        ck_assert_int_eq(bnn_predict_samples(t.g, x, N, 4, 1, out), BNN_E_NUMERIC);
        ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, NULL, x, N, rec, sizeof *rec, NULL, NULL),
                         BNN_E_NUMERIC);
        ck_assert(memcmp(rec, rec0, sizeof rec) == 0);
        ck_assert_int_eq(bnn_predict_regression(tg.g, x, N, 4, 1, out, var), BNN_E_NUMERIC);
        UNTOUCHED();
        pc[3] = keep_c;
        pg[ci] = keep_g;
        ck_assert_int_eq(bnn_predict(t.g, x, N, 4, 1, out), BNN_OK);
        memcpy(out, out0, sizeof out);
    }
#undef UNTOUCHED
    tnet_free(&t);
    tnet_free(&tg);
}
END_TEST

/* ---- allocation failures ------------------------------------------------ */

START_TEST(test_allocation_failures)
{
    enum { N = 5, C = 4 };
    tu_alloc f = {0};
    bnn_allocator al = tu_allocator(&f);
    tnet t, tg;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 95,
              &al);
    const size_t gs[3] = {3, 4, 2};
    tnet_make(&tg, gs, 3, BNN_ACT_TANH, BNN_LIK_GAUSSIAN, 0.5f, 96, &al);
    float x[N * 3];
    tu_rng r = {14};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    size_t base = f.live;
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.num_samples = 7;

    for (int fn = 0; fn < 5; fn++) {
        int succeeded = 0;
        cfg.num_threads = fn == 4 ? 3 : 1; /* three workspaces and a pool */
        for (long k = 0; k < 40 && !succeeded; k++) {
            bnn_prediction rec[N];
            float a[7 * N * C], b[N * 2];
            memset(rec, 0x11, sizeof rec);
            memset(a, 0x11, sizeof a);
            memset(b, 0x11, sizeof b);
            unsigned char ra = ((unsigned char *)rec)[0];
            tu_alloc_arm(&f, (size_t)k + 1, 1); /* k allocations succeed */
            bnn_status st;
            switch (fn) {
            case 0:
            case 4:
                st = bnn_predict_with_uncertainty(t.g, &cfg, x, N, rec,
                                                  sizeof rec[0], a, NULL);
                break;
            case 1: st = bnn_predict(t.g, x, N, 7, 1, a); break;
            case 2: st = bnn_predict_samples(t.g, x, N, 7, 1, a); break;
            default:
                st = bnn_predict_regression(tg.g, x, N, 7, 1, a, b);
                break;
            }
            tu_alloc_arm(&f, 0, 0);
            ck_assert_int_eq(f.live, base); /* nothing leaked */
            if (st == BNN_OK) {
                ck_assert_msg(k > 0, "function %d needs no allocation?", fn);
                succeeded = 1;
                continue;
            }
            ck_assert_int_eq(st, BNN_E_NOMEM);
            ck_assert_uint_eq(((unsigned char *)rec)[0], ra);
            for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
                ck_assert(((unsigned char *)a)[4 * i] == 0x11);
            for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
                ck_assert(((unsigned char *)b)[4 * i] == 0x11);
        }
        ck_assert_msg(succeeded, "function %d never succeeded", fn);
    }
    tnet_free(&t);
    tnet_free(&tg);
    ck_assert_int_eq(f.live, 0);
}
END_TEST

/* ======================================================================== */
/* Sampling modes and the predictor handle                                  */
/* ======================================================================== */

static bnn_predictor *pred_make(const bnn_guide *g, bnn_sampling mode,
                                size_t S, uint64_t seed, size_t threads,
                                size_t max_batch, size_t chunk, size_t rows)
{
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.sampling = mode;
    cfg.num_samples = S;
    cfg.seed = seed;
    cfg.num_threads = threads;
    bnn_predictor *p = NULL;
    /* an odd number of rows also turns the noise cache off, and an
     * odd chunk the transposed layer 0 */
    ck_assert_int_eq(predictor_create_chunked(g, &cfg, max_batch, chunk,
                                              rows & ~(size_t)1,
                                              (rows & 1 ? PREDICTOR_NO_NOISE_CACHE : 0) |
                                                  (chunk & 1 ? PREDICTOR_ONE_SHOT : 0),
                                              "test", &p),
                     BNN_OK);
    return p;
}

/* MARGINAL: sample s of input x is, layer by layer, a_j = m_j + sqrt(v_j)
 * eps[s, l, j] with m = W_mu h + b_mu, v = W_sigma^2 h^2 + b_sigma^2 and
 * eps from the stream (seed, s, particle 1, layer l): checked against that
 * rule computed in double from the set weights. */
static void check_marginal_rule(bnn_activation act)
{
    enum { N = 4, S = 6, C = 3 };
    const size_t sizes[4] = {3, 5, 4, 3};
    const float sig = 0.4f;
    tnet t;
    tnet_make(&t, sizes, 4, act, BNN_LIK_CATEGORICAL, sig, 31, NULL);
    float x[N * 3], logp[S * N * C];
    tu_rng r = {31};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    bnn_predictor *p = pred_make(t.g, BNN_SAMPLING_MARGINAL, S, 5, 1, N, 0, 0);
    ck_assert_int_eq(bnn_predictor_samples(p, x, N, logp), BNN_OK);
    bnn_predictor_free(p);
    double s2 = (double)sig * sig, spread = 0;
    for (size_t s = 0; s < S; s++)
        for (size_t i = 0; i < N; i++) {
            double h[8], a[8];
            size_t in = 3;
            for (size_t k = 0; k < in; k++)
                h[k] = x[i * 3 + k];
            for (size_t l = 0; l < 3; l++) {
                size_t out = sizes[l + 1];
                float eps[8];
                rng_normal_fill(5, rng_stream_id(s, 1, (unsigned)l, RNG_PREDICT),
                                0, out, eps);
                for (size_t j = 0; j < out; j++) {
                    double m = t.b[l][j], v = s2;
                    for (size_t k = 0; k < in; k++) {
                        m += (double)t.w[l][j * in + k] * h[k];
                        v += s2 * h[k] * h[k];
                    }
                    a[j] = m + sqrt(v) * eps[j];
                }
                for (size_t j = 0; j < out; j++)
                    h[j] = l == 2                 ? a[j]
                           : act == BNN_ACT_TANH ? tanh(a[j])
                                                 : (a[j] > 0 ? a[j] : 0);
                in = out;
            }
            double mx = h[0], z = 0;
            for (size_t c = 1; c < C; c++)
                mx = h[c] > mx ? h[c] : mx;
            for (size_t c = 0; c < C; c++)
                z += exp(h[c] - mx);
            for (size_t c = 0; c < C; c++) {
                double ref = h[c] - mx - log(z);
                tu_assert_close(logp[(s * N + i) * C + c], ref, 2e-5, 2e-5);
                spread += fabs(ref - logp[i * C + c]);
            }
        }
    ck_assert_msg(spread > 1.0, "samples barely differ: %g", spread);
    tnet_free(&t);
}

START_TEST(test_marginal_matches_rule)
{
    check_marginal_rule(BNN_ACT_TANH);
    check_marginal_rule(BNN_ACT_RELU);
}
END_TEST

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Two-sample Kolmogorov-Smirnov statistic; a and b are sorted. */
static double ks_stat(const double *a, size_t na, const double *b, size_t nb)
{
    size_t i = 0, j = 0;
    double d = 0;
    while (i < na && j < nb) {
        double v = a[i] < b[j] ? a[i] : b[j];
        while (i < na && a[i] == v)
            i++;
        while (j < nb && b[j] == v)
            j++;
        double e = fabs((double)i / na - (double)j / nb);
        d = e > d ? e : d;
    }
    return d;
}

/* Both modes draw exact samples from each input's predictive distribution:
 * per input and class, the sampled probabilities pass a two-sample KS test
 * at alpha = 1e-3 (critical D = 1.949 sqrt(2 / S)), and the means agree
 * within 4.5 Monte Carlo standard errors.  The same test tells two
 * different inputs apart, so it has the power to fail. */
START_TEST(test_modes_same_distribution)
{
    enum { N = 3, S = 4000, C = 4 };
    tnet t;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 41,
              NULL);
    float x[N * 3];
    tu_rng r = {41};
    tu_fill_uniform(&r, x, N * 3, -1.5f, 1.5f);
    static float la[S * N * C], lb[S * N * C];
    static double a[N * C][S], b[N * C][S];
    bnn_predictor *p = pred_make(t.g, BNN_SAMPLING_MARGINAL, S, 3, 1, N, 0, 0);
    ck_assert_int_eq(bnn_predictor_samples(p, x, N, la), BNN_OK);
    bnn_predictor_free(p);
    p = pred_make(t.g, BNN_SAMPLING_NETWORKS, S, 4, 1, N, 0, 0);
    ck_assert_int_eq(bnn_predictor_samples(p, x, N, lb), BNN_OK);
    bnn_predictor_free(p);
    double crit = 1.949 * sqrt(2.0 / S), dmax = 0, dmin = 1;
    for (size_t i = 0; i < N; i++)
        for (size_t c = 0; c < C; c++) {
            double ma = 0, mb = 0, va = 0, vb = 0;
            for (size_t s = 0; s < S; s++) {
                a[i * C + c][s] = exp((double)la[(s * N + i) * C + c]);
                b[i * C + c][s] = exp((double)lb[(s * N + i) * C + c]);
                ma += a[i * C + c][s] / S;
                mb += b[i * C + c][s] / S;
            }
            for (size_t s = 0; s < S; s++) {
                va += (a[i * C + c][s] - ma) * (a[i * C + c][s] - ma) / S;
                vb += (b[i * C + c][s] - mb) * (b[i * C + c][s] - mb) / S;
            }
            ck_assert_msg(va > 1e-4, "input %zu class %zu: no spread", i, c);
            ck_assert_msg(fabs(ma - mb) <= 4.5 * sqrt((va + vb) / S),
                          "means %g vs %g", ma, mb);
            qsort(a[i * C + c], S, sizeof(double), cmp_dbl);
            qsort(b[i * C + c], S, sizeof(double), cmp_dbl);
            double d = ks_stat(a[i * C + c], S, b[i * C + c], S);
            dmax = d > dmax ? d : dmax;
            ck_assert_msg(d < crit, "input %zu class %zu: KS D = %g >= %g", i,
                          c, d, crit);
        }
    /* power: input 0 against input 1, same class */
    for (size_t c = 0; c < C; c++) {
        double d = ks_stat(a[c], S, b[C + c], S);
        dmin = d < dmin ? d : dmin;
    }
    ck_assert_msg(dmin > crit, "different inputs look alike: D = %g", dmin);
    tnet_free(&t);
}
END_TEST

/* sigma = 0 exactly (rho = -1000): every mode computes the mean network
 * with the same products, so they agree bit for bit. */
START_TEST(test_modes_exact_without_noise)
{
    enum { N = 5, S = 3, C = 3 };
    const size_t sizes[4] = {3, 5, 4, 3};
    tnet t;
    tnet_make(&t, sizes, 4, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.3f, 43, NULL);
    size_t count;
    float *params = bnn_guide_params(t.g, &count);
    for (size_t k = count / 2; k < count; k++)
        params[k] = -1000.0f;
    float x[N * 3];
    static float l[3][S * N * C];
    tu_rng r = {43};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    const bnn_sampling modes[3] = {BNN_SAMPLING_MARGINAL,
                                   BNN_SAMPLING_NETWORKS, BNN_SAMPLING_MEAN};
    for (int k = 0; k < 3; k++) {
        bnn_predictor *p = pred_make(t.g, modes[k], S, 9, 1, N, 0, 0);
        ck_assert_int_eq(bnn_predictor_samples(p, x, N, l[k]), BNN_OK);
        bnn_predictor_free(p);
    }
    ck_assert(memcmp(l[0], l[1], sizeof l[0]) == 0);
    ck_assert(memcmp(l[0], l[2], sizeof l[0]) == 0);
    for (size_t i = 0; i < N; i++) {
        double y[3];
        ref_forward(&t, x + i * 3, y);
        for (size_t c = 0; c < C; c++)
            tu_assert_close(l[0][i * C + c], log(y[c]), 1e-5, 1e-5);
    }
    tnet_free(&t);
}
END_TEST

/* The median rule accepts or refuses the same inputs in both modes when
 * the whole-network samples put the decision far from the threshold: some
 * class's 0.4-quantile above it (accept), or every class's 0.6-quantile
 * below it (refuse).  A sample median's level is within 0.5 / sqrt(S) =
 * 0.016 of 0.5 (one sd), so 0.1 is six of them.  There are enough inputs
 * of each kind for the test to mean something. */
START_TEST(test_modes_refusal_agrees)
{
    enum { N = 300, S = 1000, IN = 3, C = 4 };
    tnet t;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.6f, 45,
              NULL);
    static float x[N * IN], q[N * C * 2];
    static bnn_prediction ra[N], rb[N];
    const float lv[2] = {0.4f, 0.6f};
    tu_rng r = {45};
    tu_fill_uniform(&r, x, N * IN, -2.0f, 2.0f);
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.num_samples = S;
    cfg.threshold = 0.5f;
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x, N, ra,
                                                  sizeof ra[0], NULL, NULL),
                     BNN_OK);
    cfg.sampling = BNN_SAMPLING_NETWORKS;
    cfg.seed = 2;
    cfg.n_quantiles = 2;
    cfg.quantiles = lv;
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x, N, rb,
                                                  sizeof rb[0], NULL, q),
                     BNN_OK);
    int acc = 0, ref = 0;
    for (size_t i = 0; i < N; i++) {
        int accept = 0, refuse = 1;
        for (size_t c = 0; c < C; c++) {
            accept |= q[(i * C + c) * 2] > 0.5f;
            refuse &= q[(i * C + c) * 2 + 1] < 0.5f;
        }
        if (!accept && !refuse)
            continue;
        ck_assert_int_eq(rb[i].refused, refuse);
        ck_assert_msg(ra[i].refused == refuse, "input %zu: max median %g vs %g",
                      i, (double)ra[i].max_median, (double)rb[i].max_median);
        if (accept) {
            acc++;
            ck_assert_int_eq(ra[i].label, rb[i].label);
        } else {
            ref++;
        }
    }
    ck_assert_msg(acc >= 20 && ref >= 20, "far inputs: %d accepted, %d refused",
                  acc, ref);
    tnet_free(&t);
}
END_TEST

/* MEAN: the network of posterior means; no epistemic part. */
START_TEST(test_mean_mode)
{
    enum { N = 6, S = 5, C = 4 };
    tnet t;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 47,
              NULL);
    float x[N * 3], probs[N * C], med[N * C], logp[S * N * C];
    bnn_prediction rec[N];
    tu_rng r = {47};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    bnn_predictor *p = pred_make(t.g, BNN_SAMPLING_MEAN, S, 1, 2, N, 0, 0);
    ck_assert_int_eq(bnn_predictor_probs(p, x, N, probs), BNN_OK);
    ck_assert_int_eq(bnn_predictor_run(p, x, N, rec, sizeof rec[0], med, NULL,
                                       NULL),
                     BNN_OK);
    ck_assert_int_eq(bnn_predictor_samples(p, x, N, logp), BNN_OK);
    bnn_predictor_free(p);
    for (size_t i = 0; i < N; i++) {
        double y[C];
        ref_forward(&t, x + i * 3, y);
        for (size_t c = 0; c < C; c++) {
            tu_assert_close(probs[i * C + c], y[c], 1e-6, 1e-5);
            ck_assert(med[i * C + c] == probs[i * C + c]);
            for (size_t s = 1; s < S; s++)
                ck_assert(logp[(s * N + i) * C + c] == logp[i * C + c]);
        }
        ck_assert(rec[i].mutual_info == 0.0f);
        ck_assert(rec[i].entropy == rec[i].expected_entropy);
    }
    tnet_free(&t);
    /* no hidden layer, one input at a time and all together */
    const size_t ns[2] = {3, 4};
    tnet_make(&t, ns, 2, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 48, NULL);
    float one[N * C];
    p = pred_make(t.g, BNN_SAMPLING_MEAN, S, 1, 1, 1, 0, 0);
    for (size_t i = 0; i < N; i++)
        ck_assert_int_eq(bnn_predictor_probs(p, x + i * 3, 1, one + i * C),
                         BNN_OK);
    bnn_predictor_free(p);
    p = pred_make(t.g, BNN_SAMPLING_MEAN, S, 1, 1, N, 0, 0);
    ck_assert_int_eq(bnn_predictor_probs(p, x, N, probs), BNN_OK);
    bnn_predictor_free(p);
    ck_assert(memcmp(one, probs, sizeof one) == 0);
    for (size_t i = 0; i < N; i++) {
        double y[C];
        ref_forward(&t, x + i * 3, y);
        for (size_t c = 0; c < C; c++)
            tu_assert_close(probs[i * C + c], y[c], 1e-6, 1e-5);
    }
    tnet_free(&t);
}
END_TEST

/* Every mode: the handle with any chunk, block of rows and thread count,
 * and any split of the inputs into runs, gives the one-shot call's bits. */
START_TEST(test_modes_invariance)
{
    enum { N = 23, IN = 24, C = 4, S = 9 };
    tnet t, tg;
    tnet_make(&t, wide_sizes, 3, BNN_ACT_TANH, BNN_LIK_CATEGORICAL, 0.3f, 49,
              NULL);
    tnet_make(&tg, wide_reg_sizes, 3, BNN_ACT_RELU, BNN_LIK_GAUSSIAN, 0.3f,
              50, NULL);
    static float x[N * IN];
    tu_rng r = {49};
    tu_fill_uniform(&r, x, N * IN, -2.0f, 2.0f);
    const bnn_sampling modes[3] = {BNN_SAMPLING_MARGINAL,
                                   BNN_SAMPLING_NETWORKS, BNN_SAMPLING_MEAN};
    static bnn_prediction rec0[N], rec[N];
    static float med0[N * C], med[N * C], mp0[N * C], mp[N * C];
    static float p[N * C], l0[S * N * C], l[S * N * C];
    static float m0[N * 2], m[N * 2], v0[N * 2], v[N * 2];
    const size_t threads[] = {1, 2, 3}, chunks[] = {0, 1, 4, 5}, rows[] = {0, 17, 48};
    for (int k = 0; k < 3; k++) {
        bnn_predict_config cfg;
        bnn_predict_config_init(&cfg);
        cfg.sampling = modes[k];
        cfg.num_samples = S;
        cfg.seed = 11;
        cfg.mean_probs = mp0;
        ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x, N, rec0,
                                                      sizeof rec0[0], med0,
                                                      NULL),
                         BNN_OK);
        bnn_predictor *q = pred_make(t.g, modes[k], S, 11, 1, N, 0, 0);
        ck_assert_int_eq(bnn_predictor_samples(q, x, N, l0), BNN_OK);
        bnn_predictor_free(q);
        q = pred_make(tg.g, modes[k], S, 11, 1, N, 0, 0);
        ck_assert_int_eq(bnn_predictor_regression(q, x, N, m0, v0), BNN_OK);
        bnn_predictor_free(q);
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 4; b++)
                for (size_t c = 0; c < 3; c++) {
                    q = pred_make(t.g, modes[k], S, 11, threads[a], N,
                                  chunks[b], rows[c]);
                    /* two runs: inputs [0, 7) then [7, N) */
                    ck_assert_int_eq(bnn_predictor_run(q, x, 7, rec,
                                                       sizeof rec[0], med,
                                                       NULL, mp),
                                     BNN_OK);
                    ck_assert_int_eq(bnn_predictor_run(q, x + 7 * IN, N - 7,
                                                       rec + 7, sizeof rec[0],
                                                       med + 7 * C, NULL,
                                                       mp + 7 * C),
                                     BNN_OK);
                    ck_assert_msg(memcmp(rec, rec0, sizeof rec) == 0,
                                  "mode %d threads %zu chunk %zu rows %zu", k,
                                  threads[a], chunks[b], rows[c]);
                    ck_assert(memcmp(med, med0, sizeof med) == 0);
                    ck_assert(memcmp(mp, mp0, sizeof mp) == 0);
                    ck_assert_int_eq(bnn_predictor_probs(q, x, N, p), BNN_OK);
                    ck_assert(memcmp(p, mp0, sizeof p) == 0);
                    ck_assert_int_eq(bnn_predictor_samples(q, x, N, l),
                                     BNN_OK);
                    ck_assert(memcmp(l, l0, sizeof l) == 0);
                    bnn_predictor_free(q);
                    q = pred_make(tg.g, modes[k], S, 11, threads[a], N,
                                  chunks[b], rows[c]);
                    ck_assert_int_eq(bnn_predictor_regression(q, x, N, m, v),
                                     BNN_OK);
                    ck_assert(memcmp(m, m0, sizeof m) == 0);
                    ck_assert(memcmp(v, v0, sizeof v) == 0);
                    bnn_predictor_free(q);
                }
        if (modes[k] == BNN_SAMPLING_MARGINAL) {
            /* the one-shot functions use this mode */
            ck_assert_int_eq(bnn_predict(t.g, x, N, S, 11, p), BNN_OK);
            ck_assert(memcmp(p, mp0, sizeof p) == 0);
            ck_assert_int_eq(bnn_predict_samples(t.g, x, N, S, 11, l), BNN_OK);
            ck_assert(memcmp(l, l0, sizeof l) == 0);
            ck_assert_int_eq(bnn_predict_regression(tg.g, x, N, S, 11, m, v),
                             BNN_OK);
            ck_assert(memcmp(m, m0, sizeof m) == 0);
            ck_assert(memcmp(v, v0, sizeof v) == 0);
        }
    }
    tnet_free(&t);
    tnet_free(&tg);
}
END_TEST

/* A predictor allocates only when created: with an allocator that fails
 * every request, runs of every kind still succeed.  Creation fails cleanly
 * at every allocation, leaving *out untouched. */
START_TEST(test_predictor_allocations)
{
    enum { N = 40, C = 4, S = 7 };
    tu_alloc f = {0};
    bnn_allocator al = tu_allocator(&f);
    tnet t, tg;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 97,
              &al);
    const size_t gs[3] = {3, 4, 2};
    tnet_make(&tg, gs, 3, BNN_ACT_TANH, BNN_LIK_GAUSSIAN, 0.5f, 98, &al);
    float x[N * 3];
    tu_rng r = {97};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    size_t base = f.live;
    const float lv[2] = {0.1f, 0.9f};
    static bnn_prediction rec[N];
    static float a[S * N * C], b[N * C], q[N * C * 2];
    for (int mode = 0; mode < 3; mode++)
        for (size_t th = 1; th <= 3; th += 2) {
            bnn_predict_config cfg;
            bnn_predict_config_init(&cfg);
            cfg.sampling = (bnn_sampling)mode;
            cfg.num_samples = S;
            cfg.num_threads = th;
            cfg.n_quantiles = 2;
            cfg.quantiles = lv;
            int made = 0;
            for (long k = 0; k < 60 && !made; k++) {
                bnn_predictor *p = (bnn_predictor *)&f, *pg = NULL;
                tu_alloc_arm(&f, (size_t)k + 1, 1); /* k allocations succeed */
                bnn_status st = bnn_predictor_create(t.g, &cfg, 16, &p);
                tu_alloc_arm(&f, 0, 0);
                if (st != BNN_OK) {
                    ck_assert_int_eq(st, BNN_E_NOMEM);
                    ck_assert_ptr_eq(p, (bnn_predictor *)&f);
                    ck_assert_int_eq(f.live, base);
                    continue;
                }
                made = 1;
                ck_assert_int_eq(bnn_predictor_create(tg.g, &cfg, 16, &pg),
                                 BNN_OK);
                tu_alloc_arm(&f, 1, 1); /* any allocation now fails */
                for (int rep = 0; rep < 2; rep++) {
                    ck_assert_int_eq(bnn_predictor_run(p, x, N, rec,
                                                       sizeof rec[0], b, q,
                                                       NULL),
                                     BNN_OK);
                    ck_assert_int_eq(bnn_predictor_probs(p, x, N, b), BNN_OK);
                    ck_assert_int_eq(bnn_predictor_samples(p, x, N, a),
                                     BNN_OK);
                    ck_assert_int_eq(bnn_predictor_regression(pg, x, N, a, b),
                                     BNN_OK);
                    ck_assert_int_eq(bnn_predictor_refresh(p), BNN_OK);
                }
                tu_alloc_arm(&f, 0, 0);
                bnn_predictor_free(p);
                bnn_predictor_free(pg);
                ck_assert_int_eq(f.live, base);
            }
            ck_assert_msg(made, "mode %d never created", mode);
        }
    tnet_free(&t);
    tnet_free(&tg);
    ck_assert_int_eq(f.live, 0);
}
END_TEST

/* A predictor reads sigma at creation and refresh: after the guide
 * changes, a refreshed predictor matches a new one; non-finite parameters
 * are refused. */
START_TEST(test_predictor_refresh)
{
    enum { N = 4, C = 4, S = 8 };
    tnet t;
    tnet_make(&t, mc_sizes, 3, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.5f, 99,
              NULL);
    float x[N * 3], p0[N * C], p1[N * C], p2[N * C];
    tu_rng r = {99};
    tu_fill_uniform(&r, x, N * 3, -2.0f, 2.0f);
    bnn_predictor *p = pred_make(t.g, BNN_SAMPLING_MARGINAL, S, 1, 1, N, 0, 0);
    ck_assert_int_eq(bnn_predictor_probs(p, x, N, p0), BNN_OK);
    size_t count;
    float *params = bnn_guide_params(t.g, &count);
    for (size_t k = count / 2; k < count; k++)
        params[k] += 1.0f; /* wider posterior */
    ck_assert_int_eq(bnn_predictor_refresh(p), BNN_OK);
    ck_assert_int_eq(bnn_predictor_probs(p, x, N, p1), BNN_OK);
    ck_assert(memcmp(p0, p1, sizeof p0) != 0);
    bnn_predictor *q = pred_make(t.g, BNN_SAMPLING_MARGINAL, S, 1, 1, N, 0, 0);
    ck_assert_int_eq(bnn_predictor_probs(q, x, N, p2), BNN_OK);
    ck_assert(memcmp(p1, p2, sizeof p1) == 0);
    params[count - 1] = NAN;
    ck_assert_int_eq(bnn_predictor_refresh(p), BNN_E_NUMERIC);
    ck_assert_int_eq(bnn_predictor_refresh(NULL), BNN_E_INVALID);
    bnn_predictor_free(p);
    bnn_predictor_free(q);
    tnet_free(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("predict");
    TCase *tc = tcase_create("stats");
    tcase_add_test(tc, test_stats_disagreeing_samples);
    tcase_add_test(tc, test_stats_identical_samples);
    tcase_add_test(tc, test_stats_hand_example);
    tcase_add_test(tc, test_stats_random_reference);
    tcase_add_test(tc, test_median_rule_ties);
    tcase_add_test(tc, test_median_rule_several_above);
    tcase_add_test(tc, test_median_even_samples);
    tcase_add_test(tc, test_rules_at_threshold);
    tcase_add_test(tc, test_quantiles);
    tcase_add_test(tc, test_stats_stride);
    suite_add_tcase(s, tc);

    tc = tcase_create("refusal");
    tcase_add_test(tc, test_apply_refusal);
    tcase_add_test(tc, test_apply_refusal_record_sizes);
    tcase_add_test(tc, test_apply_refusal_invalid);
    tcase_add_test(tc, test_calibrate_max_prob);
    tcase_add_test(tc, test_calibrate_median);
    tcase_add_test(tc, test_calibrate_entropy);
    tcase_add_test(tc, test_calibrate_brute_force);
    tcase_add_test(tc, test_calibrate_invalid);
    suite_add_tcase(s, tc);

    tc = tcase_create("network");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_deterministic_relu);
    tcase_add_test(tc, test_deterministic_tanh);
    tcase_add_test(tc, test_deterministic_no_hidden);
    tcase_add_test(tc, test_deterministic_regression);
    tcase_add_test(tc, test_matches_sampled_networks);
    tcase_add_test(tc, test_mean_equals_samples);
    tcase_add_test(tc, test_monte_carlo_convergence);
    tcase_add_test(tc, test_seeds);
    tcase_add_test(tc, test_chunking_bit_identical);
    tcase_add_test(tc, test_call_threads_bit_identical);
    tcase_add_test(tc, test_dense_kernel_paths);
    tcase_add_test(tc, test_auto_chunk);
    tcase_add_test(tc, test_record_sizes);
    tcase_add_test(tc, test_config_struct_size);
    tcase_add_test(tc, test_threads_bit_identical);
    tcase_add_test(tc, test_invalid_uncertainty);
    tcase_add_test(tc, test_invalid_predict_family);
    tcase_add_test(tc, test_allocation_failures);
    suite_add_tcase(s, tc);

    tc = tcase_create("modes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_marginal_matches_rule);
    tcase_add_test(tc, test_modes_same_distribution);
    tcase_add_test(tc, test_modes_exact_without_noise);
    tcase_add_test(tc, test_modes_refusal_agrees);
    tcase_add_test(tc, test_mean_mode);
    tcase_add_test(tc, test_modes_invariance);
    tcase_add_test(tc, test_predictor_allocations);
    tcase_add_test(tc, test_predictor_refresh);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
