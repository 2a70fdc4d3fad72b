/* Evaluation helpers against hand-worked examples and brute-force
 * references. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "testutil.h"

/* Four inputs, three classes:
 *   i  probs              label argmax correct conf
 *   0  0.7  0.2  0.1      0     0      yes     0.7
 *   1  0.3  0.6  0.1      0     1      no      0.6
 *   2  0.25 0.25 0.5      2     2      yes     0.5
 *   3  0.4  0.4  0.2      1     0 (tie to lowest) no  0.4
 * accuracy = 2/4
 * NLL = -(ln .7 + ln .3 + ln .5 + ln .4) / 4
 * Brier: .09+.04+.01 = .14; .49+.36+.01 = .86; .0625+.0625+.25 = .375;
 *        .16+.36+.04 = .56; mean = 1.935 / 4 = .48375
 * ECE, 2 bins (0, .5] and (.5, 1]:
 *   bin 0: inputs 2 (conf .5 sits on the edge, so bin 0) and 3: acc .5,
 *          conf .45 -> 2/4 * .05 = .025
 *   bin 1: inputs 0 and 1: acc .5, conf .65 -> 2/4 * .15 = .075
 *   ECE = .1 */
static const float ex_probs[12] = {0.7f, 0.2f,  0.1f, 0.3f, 0.6f, 0.1f,
                                   0.25f, 0.25f, 0.5f, 0.4f, 0.4f, 0.2f};
static const int32_t ex_labels[4] = {0, 0, 2, 1};

START_TEST(test_metrics_hand_example)
{
    bnn_metrics m;
    bnn_metrics_init(&m);
    ck_assert_int_eq(bnn_eval_metrics(ex_probs, ex_labels, 4, 3, 2, &m),
                     BNN_OK);
    tu_assert_close(m.accuracy, 0.5, 0, 0);
    double nll = -(log((double)0.7f) + log((double)0.3f) +
                   log((double)0.5f) + log((double)0.4f)) / 4.0;
    tu_assert_close(m.nll, nll, 1e-12, 1e-12);
    tu_assert_close(m.brier, 0.48375, 1e-7, 0);
    tu_assert_close(m.ece, 0.1, 1e-7, 0);

    /* One bin: |acc - mean conf| = |.5 - .55| */
    ck_assert_int_eq(bnn_eval_metrics(ex_probs, ex_labels, 4, 3, 1, &m),
                     BNN_OK);
    tu_assert_close(m.ece, 0.05, 1e-7, 0);
}
END_TEST

START_TEST(test_metrics_bin_edges)
{
    /* A: [.5 .5] label 0 -> correct, conf .5; B: [.75 .25] label 1 ->
     * wrong, conf .75.  With 2 bins, .5 belongs to (0, .5]:
     * ECE = 1/2 |1 - .5| + 1/2 |0 - .75| = .625.  (Had .5 gone to the
     * upper bin: |.5 - .625| = .125.) */
    const float p[4] = {0.5f, 0.5f, 0.75f, 0.25f};
    const int32_t y[2] = {0, 1};
    bnn_metrics m;
    bnn_metrics_init(&m);
    ck_assert_int_eq(bnn_eval_metrics(p, y, 2, 2, 2, &m), BNN_OK);
    tu_assert_close(m.ece, 0.625, 1e-12, 0);
    tu_assert_close(m.accuracy, 0.5, 0, 0);

    /* Confidence 0 (all-zero row) goes to bin 0, confidence 1 to the last
     * bin.  Row 0: [0 0] label 1 -> argmax 0, wrong, conf 0 -> bin 0,
     * |0 - 0| = 0.  Row 1: [1 0] label 0 -> correct, conf 1, |1 - 1| = 0.
     * NLL clamps p(label) = 0 at 1e-12: (-ln 1e-12 - ln 1) / 2. */
    const float q[4] = {0.0f, 0.0f, 1.0f, 0.0f};
    const int32_t z[2] = {1, 0};
    ck_assert_int_eq(bnn_eval_metrics(q, z, 2, 2, 10, &m), BNN_OK);
    tu_assert_close(m.ece, 0.0, 1e-15, 0);
    tu_assert_close(m.nll, -log(1e-12) / 2.0, 1e-9, 0);
    /* Brier: row 0: 0 + 1, row 1: 0 + 0 -> 0.5 */
    tu_assert_close(m.brier, 0.5, 1e-15, 0);
}
END_TEST

/* Brute-force ECE against random data: bins found by comparing with the
 * exact edges b/B in long double. */
START_TEST(test_metrics_random_reference)
{
    enum { N = 200, C = 4, B = 7 };
    float p[N * C];
    int32_t y[N];
    tu_rng r = {42};
    for (size_t i = 0; i < N; i++) {
        double s = 0;
        for (size_t c = 0; c < C; c++) {
            p[i * C + c] = (float)(tu_uniform(&r) + 0.01);
            s += p[i * C + c];
        }
        for (size_t c = 0; c < C; c++)
            p[i * C + c] = (float)(p[i * C + c] / s);
        y[i] = (int32_t)(tu_next(&r) % C);
    }
    double cnt[B] = {0}, acc[B] = {0}, conf[B] = {0};
    double correct = 0, nll = 0, brier = 0;
    for (size_t i = 0; i < N; i++) {
        size_t best = 0;
        for (size_t c = 1; c < C; c++)
            if (p[i * C + c] > p[i * C + best])
                best = c;
        double cf = p[i * C + best];
        size_t b = 0;
        while (b + 1 < B && (long double)cf > (long double)(b + 1) / B)
            b++;
        int hit = (int32_t)best == y[i];
        cnt[b] += 1;
        acc[b] += hit;
        conf[b] += cf;
        correct += hit;
        nll -= log((double)p[i * C + y[i]]);
        for (size_t c = 0; c < C; c++) {
            double d = (double)p[i * C + c] - ((int32_t)c == y[i]);
            brier += d * d;
        }
    }
    double ece = 0;
    for (size_t b = 0; b < B; b++)
        if (cnt[b] > 0)
            ece += cnt[b] / N * fabs(acc[b] / cnt[b] - conf[b] / cnt[b]);
    bnn_metrics m;
    bnn_metrics_init(&m);
    ck_assert_int_eq(bnn_eval_metrics(p, y, N, C, B, &m), BNN_OK);
    tu_assert_close(m.accuracy, correct / N, 1e-15, 0);
    tu_assert_close(m.nll, nll / N, 1e-12, 1e-12);
    tu_assert_close(m.brier, brier / N, 1e-12, 1e-12);
    tu_assert_close(m.ece, ece, 1e-12, 1e-12);
}
END_TEST

START_TEST(test_metrics_struct_size)
{
    /* An older caller that knows only accuracy and nll: brier and ece must
     * not be written. */
    bnn_metrics m;
    memset(&m, 0x5a, sizeof m);
    m.struct_size = offsetof(bnn_metrics, nll) + sizeof m.nll;
    bnn_metrics before = m;
    ck_assert_int_eq(bnn_eval_metrics(ex_probs, ex_labels, 4, 3, 2, &m),
                     BNN_OK);
    tu_assert_close(m.accuracy, 0.5, 0, 0);
    ck_assert(memcmp(&m.brier, &before.brier, sizeof m.brier) == 0);
    ck_assert(memcmp(&m.ece, &before.ece, sizeof m.ece) == 0);
}
END_TEST

START_TEST(test_metrics_invalid)
{
    float nanp[12];
    memcpy(nanp, ex_probs, sizeof nanp);
    nanp[5] = NAN;
    const int32_t bad_hi[4] = {0, 0, 3, 1};
    const int32_t bad_neg[4] = {0, -1, 2, 1};
    bnn_metrics m, before;
    memset(&m, 0x33, sizeof m);
    m.struct_size = sizeof m;
    before = m;
    struct {
        const float *p;
        const int32_t *y;
        size_t n, c, b;
        bnn_metrics *out;
        bnn_status want;
    } cases[] = {
        {NULL, ex_labels, 4, 3, 2, &m, BNN_E_INVALID},
        {ex_probs, NULL, 4, 3, 2, &m, BNN_E_INVALID},
        {ex_probs, ex_labels, 4, 3, 2, NULL, BNN_E_INVALID},
        {ex_probs, ex_labels, 0, 3, 2, &m, BNN_E_INVALID},
        {ex_probs, ex_labels, 4, 0, 2, &m, BNN_E_INVALID},
        {ex_probs, ex_labels, 4, 3, 0, &m, BNN_E_INVALID},
        {nanp, ex_labels, 4, 3, 2, &m, BNN_E_INVALID},
        {ex_probs, bad_hi, 4, 3, 2, &m, BNN_E_INVALID},
        {ex_probs, bad_neg, 4, 3, 2, &m, BNN_E_INVALID},
        {ex_probs, ex_labels, SIZE_MAX / 2, 3, 2, &m, BNN_E_SHAPE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(bnn_eval_metrics(cases[i].p, cases[i].y, cases[i].n,
                                          cases[i].c, cases[i].b,
                                          cases[i].out),
                         cases[i].want);
        ck_assert_str_ne(bnn_last_error(), "");
        ck_assert(memcmp(&m, &before, sizeof m) == 0);
    }
    m.struct_size = 0;
    ck_assert_int_eq(bnn_eval_metrics(ex_probs, ex_labels, 4, 3, 2, &m),
                     BNN_E_INVALID);
}
END_TEST

/* Sorted by decreasing confidence, ties in input order:
 *   order 0 (.9 ok), 2 (.8 ok), 1 (.6 wrong), 3 (.6 ok), 4 (.3 wrong)
 *   risk = 0, 0, 1/3, 1/4, 2/5;  AURC = (1/3 + 1/4 + 2/5) / 5 = 59/300.
 * Breaking the tie the other way would give risk[2] = 0. */
START_TEST(test_risk_coverage_hand_example)
{
    const float conf[5] = {0.9f, 0.6f, 0.8f, 0.6f, 0.3f};
    const int32_t ok[5] = {1, 0, 1, 7, 0}; /* any nonzero is correct */
    double risk[5], cov[5], aurc;
    ck_assert_int_eq(bnn_eval_risk_coverage(conf, ok, 5, risk, cov, &aurc),
                     BNN_OK);
    const double want[5] = {0, 0, 1.0 / 3, 1.0 / 4, 2.0 / 5};
    for (int k = 0; k < 5; k++) {
        tu_assert_close(risk[k], want[k], 1e-15, 0);
        tu_assert_close(cov[k], (k + 1) / 5.0, 1e-15, 0);
    }
    tu_assert_close(aurc, 59.0 / 300.0, 1e-15, 0);
    /* Optional outputs. */
    double a2 = -1;
    ck_assert_int_eq(bnn_eval_risk_coverage(conf, ok, 5, NULL, NULL, &a2),
                     BNN_OK);
    ck_assert(a2 == aurc);
}
END_TEST

/* Many ties on a coarse grid against an O(n^2) stable selection. */
START_TEST(test_risk_coverage_random_ties)
{
    enum { N = 301 };
    float conf[N];
    int32_t ok[N];
    int used[N] = {0};
    tu_rng r = {7};
    for (size_t i = 0; i < N; i++) {
        conf[i] = (float)(tu_next(&r) % 9) / 8.0f;
        ok[i] = (int32_t)(tu_next(&r) % 3 != 0);
    }
    double risk[N], aurc, err = 0, sum = 0;
    ck_assert_int_eq(bnn_eval_risk_coverage(conf, ok, N, risk, NULL, &aurc),
                     BNN_OK);
    for (size_t k = 0; k < N; k++) {
        size_t pick = N;
        for (size_t i = 0; i < N; i++)
            if (!used[i] && (pick == N || conf[i] > conf[pick]))
                pick = i;
        used[pick] = 1;
        err += !ok[pick];
        double want = err / (double)(k + 1);
        sum += want;
        tu_assert_close(risk[k], want, 1e-15, 0);
    }
    tu_assert_close(aurc, sum / N, 1e-14, 0);
}
END_TEST

START_TEST(test_risk_coverage_invalid)
{
    const float conf[3] = {0.5f, NAN, 0.1f};
    const int32_t ok[3] = {1, 1, 0};
    double risk[3] = {-7, -7, -7}, aurc = -7;
    ck_assert_int_eq(bnn_eval_risk_coverage(conf, ok, 3, risk, NULL, &aurc),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_eval_risk_coverage(NULL, ok, 3, risk, NULL, &aurc),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_eval_risk_coverage(conf, NULL, 3, risk, NULL, &aurc),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_eval_risk_coverage(conf, ok, 0, risk, NULL, &aurc),
                     BNN_E_INVALID);
    for (int k = 0; k < 3; k++)
        ck_assert(risk[k] == -7);
    ck_assert(aurc == -7);
}
END_TEST

static void set_rec(unsigned char *base, size_t rs, size_t i, int32_t label,
                    int32_t refused)
{
    memcpy(base + i * rs + offsetof(bnn_prediction, label), &label,
           sizeof label);
    memcpy(base + i * rs + offsetof(bnn_prediction, refused), &refused,
           sizeof refused);
}

/* labels   2 1 0 1 1 0
 * answer   2 0 0 1 2 0
 * refused  0 1 0 1 1 0
 * forced accuracy 4/6 (inputs 0, 2, 3, 5); refused 3/6; accepted 0, 2, 5
 * all correct -> 1.  Run with the smallest record and with a padded,
 * unaligned stride. */
START_TEST(test_refusal_report)
{
    const int32_t y[6] = {2, 1, 0, 1, 1, 0};
    const int32_t ans[6] = {2, 0, 0, 1, 2, 0};
    const int32_t ref[6] = {0, 1, 0, 1, 1, 0};
    const size_t sizes[3] = {offsetof(bnn_prediction, prob),
                             sizeof(bnn_prediction),
                             sizeof(bnn_prediction) + 3};
    for (size_t t = 0; t < 3; t++) {
        size_t rs = sizes[t];
        unsigned char *buf = calloc(6, rs);
        ck_assert_ptr_nonnull(buf);
        for (size_t i = 0; i < 6; i++)
            set_rec(buf, rs, i, ans[i], ref[i]);
        bnn_refusal_report rep;
        bnn_refusal_report_init(&rep);
        ck_assert_int_eq(bnn_eval_refusal((const bnn_prediction *)buf, rs, y,
                                          6, &rep),
                         BNN_OK);
        ck_assert_uint_eq(rep.n, 6);
        ck_assert_uint_eq(rep.refused, 3);
        tu_assert_close(rep.forced_accuracy, 4.0 / 6.0, 1e-15, 0);
        tu_assert_close(rep.refused_fraction, 0.5, 1e-15, 0);
        tu_assert_close(rep.accepted_accuracy, 1.0, 1e-15, 0);

        /* Everything refused: accepted accuracy is 0 by definition. */
        for (size_t i = 0; i < 6; i++)
            set_rec(buf, rs, i, ans[i], 1);
        ck_assert_int_eq(bnn_eval_refusal((const bnn_prediction *)buf, rs, y,
                                          6, &rep),
                         BNN_OK);
        tu_assert_close(rep.refused_fraction, 1.0, 0, 0);
        tu_assert_close(rep.accepted_accuracy, 0.0, 0, 0);
        tu_assert_close(rep.forced_accuracy, 4.0 / 6.0, 1e-15, 0);
        free(buf);
    }
}
END_TEST

START_TEST(test_refusal_report_invalid)
{
    bnn_prediction recs[2] = {{0}};
    const int32_t y[2] = {0, 1};
    const int32_t yneg[2] = {0, -1};
    bnn_refusal_report rep, before;
    memset(&rep, 0x44, sizeof rep);
    bnn_refusal_report_init(&rep);
    before = rep;
    const size_t rs = sizeof(bnn_prediction);
    ck_assert_int_eq(bnn_eval_refusal(NULL, rs, y, 2, &rep), BNN_E_INVALID);
    ck_assert_int_eq(bnn_eval_refusal(recs, rs, NULL, 2, &rep), BNN_E_INVALID);
    ck_assert_int_eq(bnn_eval_refusal(recs, rs, y, 2, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_eval_refusal(recs, rs, y, 0, &rep), BNN_E_INVALID);
    ck_assert_int_eq(bnn_eval_refusal(recs, 7, y, 2, &rep), BNN_E_INVALID);
    ck_assert_int_eq(bnn_eval_refusal(recs, rs, yneg, 2, &rep),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_eval_refusal(recs, SIZE_MAX / 2, y, 4, &rep),
                     BNN_E_SHAPE);
    ck_assert(memcmp(&rep, &before, sizeof rep) == 0);
}
END_TEST

/* The output structs' init functions: every field zero, struct_size set;
 * NULL ignored. */
START_TEST(test_output_struct_init)
{
    bnn_metrics m;
    bnn_refusal_report r;
    bnn_ood_report o;
    bnn_svi_stats st;
    memset(&m, 0xff, sizeof m);
    memset(&r, 0xff, sizeof r);
    memset(&o, 0xff, sizeof o);
    memset(&st, 0xff, sizeof st);
    bnn_metrics_init(&m);
    bnn_refusal_report_init(&r);
    bnn_ood_report_init(&o);
    bnn_svi_stats_init(&st);
    ck_assert_uint_eq(m.struct_size, sizeof m);
    ck_assert_uint_eq(r.struct_size, sizeof r);
    ck_assert_uint_eq(o.struct_size, sizeof o);
    ck_assert_uint_eq(st.struct_size, sizeof st);
    ck_assert(m.accuracy == 0 && m.ece == 0 && r.n == 0 && r.accepted_accuracy == 0);
    ck_assert(o.auroc == 0 && o.threshold95 == 0 && st.loss == 0 && st.grad_norm == 0);
    bnn_metrics_init(NULL);
    bnn_refusal_report_init(NULL);
    bnn_ood_report_init(NULL);
    bnn_svi_stats_init(NULL);
}
END_TEST

/* The object-first names do what the original ones do, and their
 * messages name the function called. */
START_TEST(test_refusal_aliases)
{
    enum { N = 8 };
    bnn_prediction a[N], b[N];
    int32_t labels[N];
    tu_rng r = {77};
    for (int i = 0; i < N; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].label = a[i].mean_label = i % 3;
        a[i].prob = (float)(0.3 + 0.7 * tu_uniform(&r));
        a[i].entropy = (float)tu_uniform(&r);
        a[i].mutual_info = (float)(0.1 * tu_uniform(&r));
        a[i].max_median = a[i].prob;
        labels[i] = i % 4 == 0 ? 1 : i % 3;
    }
    memcpy(b, a, sizeof a);
    ck_assert_int_eq(bnn_apply_refusal(a, sizeof a[0], N, BNN_REFUSE_ENTROPY, 0.5f), BNN_OK);
    ck_assert_int_eq(bnn_refusal_apply(b, sizeof b[0], N, BNN_REFUSE_ENTROPY, 0.5f), BNN_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    int refused = 0;
    for (int i = 0; i < N; i++)
        refused += a[i].refused;
    ck_assert(refused > 0 && refused < N);
    float t1, t2;
    double c1, c2, acc1, acc2;
    ck_assert_int_eq(bnn_calibrate_threshold(a, sizeof a[0], labels, N, BNN_REFUSE_MAX_PROB,
                                             BNN_CALIBRATE_COVERAGE, 0.5, &t1, &c1, &acc1),
                     BNN_OK);
    ck_assert_int_eq(bnn_refusal_calibrate(a, sizeof a[0], labels, N, BNN_REFUSE_MAX_PROB,
                                           BNN_CALIBRATE_COVERAGE, 0.5, &t2, &c2, &acc2),
                     BNN_OK);
    ck_assert(t1 == t2 && c1 == c2 && acc1 == acc2);
    ck_assert(c1 >= 0.5);
    ck_assert_int_eq(bnn_refusal_apply(NULL, sizeof a[0], N, BNN_REFUSE_ENTROPY, 0.5f),
                     BNN_E_INVALID);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "bnn_refusal_apply"));
    ck_assert_int_eq(bnn_refusal_calibrate(a, sizeof a[0], labels, 0, BNN_REFUSE_MAX_PROB,
                                           BNN_CALIBRATE_COVERAGE, 0.5, &t2, &c2, &acc2),
                     BNN_E_INVALID);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "bnn_refusal_calibrate"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, test_output_struct_init);
    tcase_add_test(tc, test_refusal_aliases);
    tcase_add_test(tc, test_metrics_hand_example);
    tcase_add_test(tc, test_metrics_bin_edges);
    tcase_add_test(tc, test_metrics_random_reference);
    tcase_add_test(tc, test_metrics_struct_size);
    tcase_add_test(tc, test_metrics_invalid);
    suite_add_tcase(s, tc);
    tc = tcase_create("risk_coverage");
    tcase_add_test(tc, test_risk_coverage_hand_example);
    tcase_add_test(tc, test_risk_coverage_random_ties);
    tcase_add_test(tc, test_risk_coverage_invalid);
    suite_add_tcase(s, tc);
    tc = tcase_create("refusal");
    tcase_add_test(tc, test_refusal_report);
    tcase_add_test(tc, test_refusal_report_invalid);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
