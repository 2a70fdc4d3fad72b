/* bnn_eval_ood and bnn_eval_refused_fraction against hand-worked cases and
 * brute-force references: a pairwise count for AUROC, a per-threshold
 * recount for average precision, a sorted order statistic for FPR95. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "testutil.h"

/* Records whose score field is v (the other fields hold junk that the
 * score must not read). */
static void fill(bnn_prediction *r, const float *v, size_t n, bnn_ood_score s)
{
    for (size_t i = 0; i < n; i++) {
        bnn_prediction x = {7, 1, 0.25f, 9.0f, 8.0f, 6.0f, 0.125f, 3};
        switch (s) {
        case BNN_OOD_ENTROPY: x.entropy = v[i]; break;
        case BNN_OOD_MUTUAL_INFO: x.mutual_info = v[i]; break;
        case BNN_OOD_EXPECTED_ENTROPY: x.expected_entropy = v[i]; break;
        case BNN_OOD_MAX_PROB: x.prob = v[i]; break;
        case BNN_OOD_MAX_MEDIAN: x.max_median = v[i]; break;
        }
        r[i] = x;
    }
}

static bnn_ood_report run(const float *in, size_t n_in, const float *out, size_t n_out,
                          bnn_ood_score s)
{
    bnn_prediction *a = malloc(n_in * sizeof *a), *b = malloc(n_out * sizeof *b);
    ck_assert(a && b);
    fill(a, in, n_in, s);
    fill(b, out, n_out, s);
    bnn_ood_report r;
    memset(&r, 0xcd, sizeof r);
    r.struct_size = sizeof r;
    ck_assert_int_eq(bnn_eval_ood(a, n_in, b, n_out, sizeof *a, s, NULL, &r), BNN_OK);
    ck_assert_uint_eq(r.struct_size, sizeof r);
    ck_assert_uint_eq(r.n_in, n_in);
    ck_assert_uint_eq(r.n_out, n_out);
    free(a);
    free(b);
    return r;
}

/* Entropies, OOD higher:
 *   in  0.1 0.2 0.2 0.5      out 0.2 0.5 0.9
 * pairs (out, in) with out > in: 0.2 > 0.1; 0.5 > 0.1, 0.2, 0.2; 0.9 > all
 * four: 8; ties: 0.2 with two, 0.5 with one: 3.  AUROC = (8 + 3/2) / 12.
 * AUPR-out, groups from the top: 0.9 (1 out): P 1/1; 0.5 (1 out, 1 in):
 * P 2/3; 0.2 (1 out, 2 in): P 3/6; each adds 1/3 of recall: 13/18.
 * AUPR-in, groups from the bottom: 0.1 (1 in): P 1; 0.2 (2 in, 1 out):
 * P 3/4; 0.5 (1 in, 1 out): P 4/6; recall 1/4, 2/4, 1/4: 19/24.
 * 95% of 4 in-distribution inputs is all 4: t* = 0.5, which accepts the
 * OOD 0.2 and 0.5: FPR95 = 2/3. */
static const float hand_in[4] = {0.1f, 0.2f, 0.2f, 0.5f};
static const float hand_out[3] = {0.2f, 0.5f, 0.9f};

START_TEST(test_hand_example)
{
    bnn_ood_report r = run(hand_in, 4, hand_out, 3, BNN_OOD_ENTROPY);
    ck_assert(r.auroc == 9.5 / 12.0);
    tu_assert_close(r.aupr_out, 13.0 / 18.0, 1e-15, 0);
    tu_assert_close(r.aupr_in, 19.0 / 24.0, 1e-15, 0);
    ck_assert(r.fpr95 == 2.0 / 3.0);
    ck_assert(r.tpr95 == 1.0);
    ck_assert(r.threshold95 == 0.5f);

    /* The same order read from every field: entropies as they are,
     * probabilities reversed (1 - v keeps every tie and every order). */
    float pin[4], pout[3];
    for (int i = 0; i < 4; i++)
        pin[i] = 1.0f - hand_in[i];
    for (int i = 0; i < 3; i++)
        pout[i] = 1.0f - hand_out[i];
    const bnn_ood_score ent[2] = {BNN_OOD_MUTUAL_INFO, BNN_OOD_EXPECTED_ENTROPY};
    const bnn_ood_score conf[2] = {BNN_OOD_MAX_PROB, BNN_OOD_MAX_MEDIAN};
    for (int k = 0; k < 2; k++) {
        bnn_ood_report e = run(hand_in, 4, hand_out, 3, ent[k]);
        bnn_ood_report c = run(pin, 4, pout, 3, conf[k]);
        ck_assert(e.auroc == r.auroc && c.auroc == r.auroc);
        ck_assert(e.aupr_out == r.aupr_out && c.aupr_out == r.aupr_out);
        ck_assert(e.aupr_in == r.aupr_in && c.aupr_in == r.aupr_in);
        ck_assert(e.fpr95 == r.fpr95 && c.fpr95 == r.fpr95);
        /* in the score's own units: accept when prob >= 1 - 0.5 */
        ck_assert(c.threshold95 == 1.0f - 0.5f);
    }

    /* Swapping the roles mirrors AUROC. */
    bnn_ood_report s = run(hand_out, 3, hand_in, 4, BNN_OOD_ENTROPY);
    ck_assert(s.auroc == 2.5 / 12.0);
}
END_TEST

START_TEST(test_extremes)
{
    const float lo[3] = {0.0f, 0.1f, 0.2f}, hi[2] = {0.3f, 2.0f};
    bnn_ood_report r = run(lo, 3, hi, 2, BNN_OOD_ENTROPY);
    ck_assert(r.auroc == 1.0 && r.aupr_out == 1.0 && r.aupr_in == 1.0);
    ck_assert(r.fpr95 == 0.0 && r.threshold95 == 0.2f);

    r = run(hi, 2, lo, 3, BNN_OOD_ENTROPY);
    ck_assert(r.auroc == 0.0 && r.fpr95 == 1.0);
    /* every OOD input ranks below every in-distribution one:
     * precision 1/3, 2/4, 3/5 as each is reached */
    tu_assert_close(r.aupr_out, (1.0 / 3 + 2.0 / 4 + 3.0 / 5) / 3, 1e-15, 0);

    /* All scores equal: one group, half credit for every pair, and every
     * OOD input is accepted with the in-distribution ones. */
    const float same[5] = {0.7f, 0.7f, 0.7f, 0.7f, 0.7f};
    r = run(same, 2, same, 3, BNN_OOD_MAX_PROB);
    ck_assert(r.auroc == 0.5 && r.fpr95 == 1.0 && r.tpr95 == 1.0);
    ck_assert(r.aupr_out == 3.0 / 5.0 && r.aupr_in == 2.0 / 5.0);
    ck_assert(r.threshold95 == 0.7f);

    /* One input each. */
    const float one_in = 0.4f, one_out = 0.4f;
    r = run(&one_in, 1, &one_out, 1, BNN_OOD_MUTUAL_INFO);
    ck_assert(r.auroc == 0.5 && r.fpr95 == 1.0);
}
END_TEST

/* The 95% point: the ceil(0.95 n)-th smallest in-distribution score,
 * OOD ties with it accepted, no interpolation. */
START_TEST(test_fpr95_edges)
{
    float in[21], out[2];
    /* n = 20: exactly 19 accepted at the 19th smallest (18/32). */
    for (int i = 0; i < 20; i++)
        in[i] = (float)i / 32.0f;
    out[0] = 18.0f / 32.0f; /* tied with t*: accepted */
    out[1] = 19.0f / 32.0f; /* refused */
    bnn_ood_report r = run(in, 20, out, 2, BNN_OOD_ENTROPY);
    ck_assert(r.threshold95 == 18.0f / 32.0f);
    ck_assert(r.tpr95 == 0.95 && r.fpr95 == 0.5);

    /* n = 21: 0.95 x 21 = 19.95, so 20 must be accepted. */
    for (int i = 0; i < 21; i++)
        in[i] = (float)(20 - i) / 32.0f; /* any input order */
    r = run(in, 21, out, 2, BNN_OOD_ENTROPY);
    ck_assert(r.threshold95 == 19.0f / 32.0f);
    ck_assert(r.tpr95 == 20.0 / 21.0 && r.fpr95 == 1.0);

    /* Ties straddling the point: 17 at 0.1 and 3 at 0.3 accept 17/20,
     * then 20/20 at once; the OOD 0.2 between them is accepted. */
    for (int i = 0; i < 20; i++)
        in[i] = i < 17 ? 0.1f : 0.3f;
    out[0] = 0.2f;
    out[1] = 0.4f;
    r = run(in, 20, out, 2, BNN_OOD_ENTROPY);
    ck_assert(r.threshold95 == 0.3f && r.tpr95 == 1.0 && r.fpr95 == 0.5);

    /* Confidence scores: accept when score >= threshold95. */
    for (int i = 0; i < 20; i++)
        in[i] = 1.0f - (float)i / 32.0f;
    out[0] = 1.0f - 18.0f / 32.0f;
    out[1] = 0.0f;
    r = run(in, 20, out, 2, BNN_OOD_MAX_MEDIAN);
    ck_assert(r.threshold95 == 1.0f - 18.0f / 32.0f);
    ck_assert(r.tpr95 == 0.95 && r.fpr95 == 0.5);

    /* n = 1: its own score. */
    r = run(in, 1, out, 2, BNN_OOD_MAX_MEDIAN);
    ck_assert(r.threshold95 == 1.0f && r.tpr95 == 1.0 && r.fpr95 == 0.0);
}
END_TEST

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Independent references on a coarse grid (many ties), OOD higher. */
static void reference(const float *in, size_t n_in, const float *out, size_t n_out,
                      double *auroc, double *ap_out, double *ap_in, double *fpr95,
                      double *tpr95, float *t95)
{
    /* AUROC: every pair. */
    unsigned long long twice = 0;
    for (size_t i = 0; i < n_out; i++)
        for (size_t j = 0; j < n_in; j++)
            twice += out[i] > in[j] ? 2 : out[i] == in[j] ? 1 : 0;
    *auroc = (double)twice / (2.0 * (double)n_in * (double)n_out);

    /* AP: at each distinct value v an OOD input holds, precision of
     * {u >= v} weighted by the OOD inputs at v; the mirror for AP-in. */
    *ap_out = 0.0;
    *ap_in = 0.0;
    for (size_t i = 0; i < n_out; i++) {
        size_t tp = 0, all = 0;
        for (size_t k = 0; k < n_out; k++)
            tp += out[k] >= out[i];
        all = tp;
        for (size_t k = 0; k < n_in; k++)
            all += in[k] >= out[i];
        *ap_out += (double)tp / (double)all / (double)n_out;
    }
    for (size_t j = 0; j < n_in; j++) {
        size_t tp = 0, all = 0;
        for (size_t k = 0; k < n_in; k++)
            tp += in[k] <= in[j];
        all = tp;
        for (size_t k = 0; k < n_out; k++)
            all += out[k] <= in[j];
        *ap_in += (double)tp / (double)all / (double)n_in;
    }

    /* FPR95: the order statistic. */
    float *s = malloc(n_in * sizeof *s);
    ck_assert_ptr_nonnull(s);
    memcpy(s, in, n_in * sizeof *s);
    qsort(s, n_in, sizeof *s, cmp_float);
    size_t k = (95 * n_in + 99) / 100; /* ceil(0.95 n) */
    *t95 = s[k - 1];
    size_t acc_out = 0, acc_in = 0;
    for (size_t i = 0; i < n_out; i++)
        acc_out += out[i] <= *t95;
    for (size_t i = 0; i < n_in; i++)
        acc_in += in[i] <= *t95;
    *fpr95 = (double)acc_out / (double)n_out;
    *tpr95 = (double)acc_in / (double)n_in;
    free(s);
}

START_TEST(test_random_ties_against_reference)
{
    enum { NI = 157, NO = 89 };
    float in[NI], out[NO];
    tu_rng g = {31};
    for (int trial = 0; trial < 20; trial++) {
        /* Grids of 5 to 40 levels: from nearly all ties to few; OOD shifted
         * up by a trial-dependent amount. */
        unsigned levels = 5 + (unsigned)trial * 2;
        for (size_t i = 0; i < NI; i++)
            in[i] = (float)(tu_next(&g) % levels) / 8.0f;
        for (size_t i = 0; i < NO; i++)
            out[i] = (float)(tu_next(&g) % levels + (unsigned)trial % 4) / 8.0f;
        bnn_ood_report r = run(in, NI, out, NO, BNN_OOD_ENTROPY);
        double auroc, ap_out, ap_in, fpr, tpr;
        float t;
        reference(in, NI, out, NO, &auroc, &ap_out, &ap_in, &fpr, &tpr, &t);
        ck_assert_msg(r.auroc == auroc, "trial %d: %.17g vs %.17g", trial, r.auroc, auroc);
        tu_assert_close(r.aupr_out, ap_out, 1e-13, 0);
        tu_assert_close(r.aupr_in, ap_in, 1e-13, 0);
        ck_assert(r.fpr95 == fpr && r.tpr95 == tpr && r.threshold95 == t);
    }
}
END_TEST

START_TEST(test_stride_and_struct_size)
{
    /* Records of a longer stride; record_size covering just the field. */
    typedef struct {
        bnn_prediction p;
        double extra[3];
    } wide;
    wide a[4], b[3];
    memset(a, 0xee, sizeof a);
    memset(b, 0xee, sizeof b);
    for (int i = 0; i < 4; i++)
        a[i].p.mutual_info = hand_in[i];
    for (int i = 0; i < 3; i++)
        b[i].p.mutual_info = hand_out[i];
    bnn_ood_report r;
    r.struct_size = sizeof r;
    ck_assert_int_eq(bnn_eval_ood(&a[0].p, 4, &b[0].p, 3, sizeof(wide), BNN_OOD_MUTUAL_INFO,
                                  NULL, &r),
                     BNN_OK);
    ck_assert(r.auroc == 9.5 / 12.0 && r.fpr95 == 2.0 / 3.0);

    /* Records of exactly the bytes up to the field (no alignment), and an
     * older caller's struct: only the fields its size covers. */
    enum { RS = offsetof(bnn_prediction, mutual_info) + sizeof(float) };
    unsigned char ra[4 * RS], rb[3 * RS];
    memset(ra, 0xee, sizeof ra);
    memset(rb, 0xee, sizeof rb);
    for (int i = 0; i < 4; i++)
        memcpy(ra + i * RS + offsetof(bnn_prediction, mutual_info), &hand_in[i], sizeof(float));
    for (int i = 0; i < 3; i++)
        memcpy(rb + i * RS + offsetof(bnn_prediction, mutual_info), &hand_out[i], sizeof(float));
    unsigned char buf[sizeof(bnn_ood_report)];
    memset(buf, 0x77, sizeof buf);
    size_t small = offsetof(bnn_ood_report, auroc) + sizeof(double);
    memcpy(buf, &small, sizeof small);
    ck_assert_int_eq(bnn_eval_ood((const bnn_prediction *)(void *)ra, 4,
                                  (const bnn_prediction *)(void *)rb, 3, RS,
                                  BNN_OOD_MUTUAL_INFO, NULL, (bnn_ood_report *)(void *)buf),
                     BNN_OK);
    double auroc;
    memcpy(&auroc, buf + offsetof(bnn_ood_report, auroc), sizeof auroc);
    ck_assert(auroc == 9.5 / 12.0);
    for (size_t i = small; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0x77);
}
END_TEST

START_TEST(test_refused_fraction)
{
    /* Each rule against bnn_apply_refusal on a copy, which must leave the
     * records given to bnn_eval_refused_fraction as they were. */
    enum { N = 64 };
    bnn_prediction rec[N], copy[N];
    tu_rng g = {5};
    for (size_t i = 0; i < N; i++) {
        bnn_prediction x = {0};
        x.prob = (float)(tu_next(&g) % 11) / 10.0f;
        x.max_median = (float)(tu_next(&g) % 11) / 10.0f;
        x.entropy = (float)(tu_next(&g) % 23) / 10.0f;
        x.mutual_info = (float)(tu_next(&g) % 7) / 10.0f;
        x.refused = 0;
        rec[i] = x;
    }
    rec[3].entropy = NAN; /* refused, as bnn_apply_refusal does */
    const struct {
        bnn_refusal_rule rule;
        float t;
    } cases[] = {{BNN_REFUSE_MEDIAN, 0.5f},      {BNN_REFUSE_MAX_PROB, 0.3f},
                 {BNN_REFUSE_ENTROPY, 1.0f},     {BNN_REFUSE_MUTUAL_INFO, 0.2f},
                 {BNN_REFUSE_MUTUAL_INFO, 0.0f}, {BNN_REFUSE_NONE, 0.0f}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(copy, rec, sizeof rec);
        ck_assert_int_eq(bnn_apply_refusal(copy, sizeof copy[0], N, cases[k].rule, cases[k].t),
                         BNN_OK);
        size_t refused = 0;
        for (size_t i = 0; i < N; i++)
            refused += copy[i].refused != 0;
        double f = -1.0;
        ck_assert_int_eq(bnn_eval_refused_fraction(rec, sizeof rec[0], N, cases[k].rule,
                                                   cases[k].t, &f),
                         BNN_OK);
        ck_assert_msg(f == (double)refused / N, "rule %d: %g vs %zu/64", (int)cases[k].rule, f,
                      refused);
        for (size_t i = 0; i < N; i++)
            ck_assert_int_eq(rec[i].refused, 0);
    }
    /* By hand: median rule refuses max_median <= t. */
    bnn_prediction h[4] = {{0}};
    const float med[4] = {0.1f, 0.2f, 0.3f, 0.9f};
    for (int i = 0; i < 4; i++)
        h[i].max_median = med[i];
    double f;
    ck_assert_int_eq(bnn_eval_refused_fraction(h, sizeof h[0], 4, BNN_REFUSE_MEDIAN, 0.2f, &f),
                     BNN_OK);
    ck_assert(f == 0.5);
    ck_assert_int_eq(bnn_eval_refused_fraction(h, sizeof h[0], 4, BNN_REFUSE_NONE, 0.0f, &f),
                     BNN_OK);
    ck_assert(f == 0.0);
}
END_TEST

/* Allocation through the caller's allocator: failure leaves the report
 * untouched and frees nothing it did not allocate. */
typedef struct {
    int calls, fail_at, live;
} counting;

static void *c_alloc(void *ctx, size_t n)
{
    counting *c = ctx;
    if (++c->calls == c->fail_at)
        return NULL;
    void *p = malloc(n);
    c->live += p != NULL;
    return p;
}

static void c_free(void *ctx, void *p)
{
    counting *c = ctx;
    c->live -= p != NULL;
    free(p);
}

START_TEST(test_allocator)
{
    bnn_prediction a[4], b[3];
    fill(a, hand_in, 4, BNN_OOD_ENTROPY);
    fill(b, hand_out, 3, BNN_OOD_ENTROPY);
    for (int k = 1;; k++) {
        counting c = {0, k, 0};
        bnn_allocator al = {c_alloc, c_free, &c};
        bnn_ood_report r, before;
        memset(&r, 0x3c, sizeof r);
        r.struct_size = sizeof r;
        before = r;
        bnn_status st = bnn_eval_ood(a, 4, b, 3, sizeof a[0], BNN_OOD_ENTROPY, &al, &r);
        ck_assert_int_eq(c.live, 0);
        if (c.calls < k) {
            ck_assert_int_eq(st, BNN_OK);
            ck_assert(r.auroc == 9.5 / 12.0);
            ck_assert_int_eq(k, 2); /* one allocation */
            break;
        }
        ck_assert_int_eq(st, BNN_E_NOMEM);
        ck_assert(memcmp(&r, &before, sizeof r) == 0);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ood");
    TCase *tc = tcase_create("ood");
    tcase_add_test(tc, test_hand_example);
    tcase_add_test(tc, test_extremes);
    tcase_add_test(tc, test_fpr95_edges);
    tcase_add_test(tc, test_random_ties_against_reference);
    tcase_add_test(tc, test_stride_and_struct_size);
    tcase_add_test(tc, test_refused_fraction);
    tcase_add_test(tc, test_allocator);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
