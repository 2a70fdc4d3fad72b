/* bnn_optimizer_set_kl_weight: the next step uses the new weight exactly.
 * The loss decomposition and the analytic KL gradient against a
 * double-precision reference, bit identity with an optimizer created with
 * that weight (same parameters, seed and step), a warm-up schedule step by
 * step, and IVON, where the weight scales the prior precision. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "internal.h"
#include "testutil.h"

#define NIN 4
#define NOUT 3
#define NDATA 50
#define NB 8
#define PRIOR_SIGMA 0.8

static const size_t sizes[] = {NIN, 6, NOUT};

typedef struct net {
    bnn_model *m;
    bnn_guide *g;
    bnn_optimizer *o;
} net;

static void net_make(net *t, const bnn_optimizer_config *oc, bnn_estimator est,
                     bnn_kl_mode kl, float kl_weight)
{
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 3;
    mc.layer_sizes = sizes;
    mc.activation = BNN_ACT_TANH;
    mc.prior_sigma = (float)PRIOR_SIGMA;
    ck_assert_int_eq(bnn_model_create(&mc, &t->m), BNN_OK);
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.init_sigma = 0.2f;
    gc.seed = 3;
    ck_assert_int_eq(bnn_guide_create(t->m, &gc, &t->g), BNN_OK);
    bnn_svi_config sc = tu_svi(NDATA);
    sc.estimator = est;
    sc.kl_mode = kl;
    sc.kl_weight = kl_weight;
    sc.max_batch = NB;
    sc.seed = 17;
    ck_assert_int_eq(bnn_optimizer_create(t->g, oc, &sc, &t->o), BNN_OK);
}

static void net_free(net *t)
{
    bnn_optimizer_free(t->o);
    bnn_guide_free(t->g);
    bnn_model_free(t->m);
}

static void batch(unsigned k, float *x, int32_t *y)
{
    tu_rng r = {100 + k};
    tu_fill_uniform(&r, x, NB * NIN, -1.5f, 1.5f);
    for (size_t i = 0; i < NB; i++)
        y[i] = (int32_t)(tu_next(&r) % NOUT);
}

static bnn_svi_stats grad(net *t, const float *x, const int32_t *y, float *out)
{
    bnn_svi_stats s;
    bnn_svi_stats_init(&s);
    ck_assert_int_eq(bnn_svi_grad(t->o, x, y, NULL, NB, &s), BNN_OK);
    size_t n;
    const float *g = bnn_guide_grads(t->g, &n);
    memcpy(out, g, n * sizeof(float));
    return s;
}

/* The exact share a step adds: kl_weight * KL * n / N. */
static void check_decomposition(const bnn_svi_stats *s, float w)
{
    double scale = (double)w * (double)NB / (double)NDATA;
    tu_assert_close(s->kl_term, scale * s->kl, 1e-300, 1e-12);
    tu_assert_close(s->loss, s->nll + s->kl_term, 1e-12, 1e-12);
}

static double softplus(double r)
{
    return r > 0 ? r + log1p(exp(-r)) : log1p(exp(r));
}

/* KL(N(mu, softplus(rho)^2) || N(0, p^2)) summed, and its gradient. */
static double kl_ref(const float *params, size_t P, double *dkl)
{
    double p2 = PRIOR_SIGMA * PRIOR_SIGMA, kl = 0.0;
    for (size_t i = 0; i < P; i++) {
        double mu = params[i], rho = params[P + i], s = softplus(rho);
        kl += log(PRIOR_SIGMA / s) + (s * s + mu * mu) / (2.0 * p2) - 0.5;
        dkl[i] = mu / p2;
        dkl[P + i] = (s / p2 - 1.0 / s) / (1.0 + exp(-rho));
    }
    return kl;
}

/* Estimator x KL mode: after three steps with weight 1, the weight set to
 * 0.25 is the one the next gradient uses, and nothing else moves. */
START_TEST(test_next_step_uses_new_weight)
{
    bnn_estimator est = (bnn_estimator)(_i / 2);
    bnn_kl_mode klm = (bnn_kl_mode)(_i % 2);
    net a;
    net_make(&a, NULL, est, klm, 1.0f);
    float x[NB * NIN];
    int32_t y[NB];
    for (unsigned k = 0; k < 3; k++) {
        batch(k, x, y);
        ck_assert_int_eq(bnn_svi_step(a.o, x, y, NULL, NB, NULL), BNN_OK);
    }
    size_t n;
    float *params = bnn_guide_params(a.g, &n);
    size_t P = n / 2;
    float *g0 = malloc(n * sizeof(float)), *gw = malloc(n * sizeof(float)),
          *g1 = malloc(n * sizeof(float)), *gb = malloc(n * sizeof(float));
    double *dkl = malloc(n * sizeof(double));
    ck_assert(g0 && gw && g1 && gb && dkl);

    const float w = 0.25f;
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(a.o, w), BNN_OK);
    float got = -1.0f;
    ck_assert_int_eq(bnn_optimizer_get_kl_weight(a.o, &got), BNN_OK);
    ck_assert(got == w);
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    ck_assert_int_eq(bnn_optimizer_get_config(a.o, NULL, &sc), BNN_OK);
    ck_assert(sc.kl_weight == w);
    ck_assert_uint_eq(bnn_optimizer_step_count(a.o), 3);

    batch(3, x, y);
    bnn_svi_stats sw = grad(&a, x, y, gw);
    check_decomposition(&sw, w);
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(a.o, 0.0f), BNN_OK);
    bnn_svi_stats s0 = grad(&a, x, y, g0);
    check_decomposition(&s0, 0.0f);
    ck_assert(s0.kl_term == 0.0);
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(a.o, 1.0f), BNN_OK);
    bnn_svi_stats s1 = grad(&a, x, y, g1);
    check_decomposition(&s1, 1.0f);
    /* The same noise at every weight: the data term and the KL do not
     * move. */
    ck_assert(sw.nll == s0.nll && s1.nll == s0.nll);
    ck_assert(sw.kl == s0.kl && s1.kl == s0.kl);

    double scale = (double)w * NB / NDATA;
    if (klm == BNN_KL_ANALYTIC) {
        double kl = kl_ref(params, P, dkl);
        tu_assert_close(sw.kl, kl, 1e-6, 1e-5);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(tu_close((double)gw[i] - g0[i], scale * dkl[i], 2e-6, 1e-4),
                          "%s %zu: gradient moved by %.9g, KL share %.9g",
                          i < P ? "mu" : "rho", i % P, (double)gw[i] - g0[i],
                          scale * dkl[i]);
    } else {
        /* Monte Carlo: the KL share is linear in the weight. */
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(tu_close((double)gw[i] - g0[i], (double)w * ((double)g1[i] - g0[i]),
                                   2e-6, 1e-4),
                          "param %zu: %.9g vs %.9g", i, (double)gw[i] - g0[i],
                          (double)w * ((double)g1[i] - g0[i]));
    }

    /* An optimizer created with weight w, brought to the same step (plain
     * SGD has no other state) and the same parameters, computes the same
     * bits. */
    bnn_optimizer_config sgd;
    bnn_optimizer_config_init(&sgd);
    sgd.kind = BNN_OPT_SGD;
    net b;
    net_make(&b, &sgd, est, klm, w);
    for (unsigned k = 0; k < 3; k++) {
        batch(10 + k, x, y);
        ck_assert_int_eq(bnn_svi_step(b.o, x, y, NULL, NB, NULL), BNN_OK);
    }
    memcpy(bnn_guide_params(b.g, NULL), params, n * sizeof(float));
    batch(3, x, y);
    bnn_svi_stats sb = grad(&b, x, y, gb);
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(a.o, w), BNN_OK);
    sw = grad(&a, x, y, gw);
    ck_assert(memcmp(gb, gw, n * sizeof(float)) == 0);
    ck_assert(sb.loss == sw.loss && sb.kl_term == sw.kl_term);

    free(g0);
    free(gw);
    free(g1);
    free(gb);
    free(dkl);
    net_free(&b);
    net_free(&a);
}
END_TEST

/* A linear warm-up from 0: every bnn_svi_step adds the weight set just
 * before it times the KL of the parameters it starts from. */
START_TEST(test_warmup_schedule)
{
    net a;
    net_make(&a, NULL, BNN_EST_LOCAL_REPARAM, BNN_KL_ANALYTIC, 1.0f);
    float x[NB * NIN];
    int32_t y[NB];
    size_t n;
    const float *params = bnn_guide_params(a.g, &n);
    double *dkl = malloc(n * sizeof(double));
    ck_assert_ptr_nonnull(dkl);
    for (unsigned t = 0; t < 6; t++) {
        float w = (float)t / 5.0f;
        ck_assert_int_eq(bnn_optimizer_set_kl_weight(a.o, w), BNN_OK);
        double kl = kl_ref(params, n / 2, dkl);
        batch(t, x, y);
        bnn_svi_stats s;
        bnn_svi_stats_init(&s);
        ck_assert_int_eq(bnn_svi_step(a.o, x, y, NULL, NB, &s), BNN_OK);
        check_decomposition(&s, w);
        tu_assert_close(s.kl, kl, 1e-6, 1e-5);
    }
    free(dkl);
    net_free(&a);
}
END_TEST

static bnn_optimizer_config ivon_cfg(void)
{
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.kind = BNN_OPT_IVON;
    oc.lr = 0.1f;
    return oc;
}

/* IVON: delta follows the weight; the next step's draw (and so the KL the
 * stats report) uses the new posterior sigma = 1 / sqrt(lambda (h +
 * delta)); an IVON optimizer created with that weight and given the same
 * parameters, state and step takes the same step, bit for bit. */
START_TEST(test_ivon_weight_scales_prior_precision)
{
    bnn_optimizer_config oc = ivon_cfg();
    net a, b;
    net_make(&a, &oc, BNN_EST_WEIGHT_SAMPLING, BNN_KL_ANALYTIC, 1.0f);
    net_make(&b, &oc, BNN_EST_WEIGHT_SAMPLING, BNN_KL_ANALYTIC, 0.5f);
    float x[NB * NIN];
    int32_t y[NB];
    for (unsigned k = 0; k < 3; k++) {
        batch(k, x, y);
        ck_assert_int_eq(bnn_svi_step(a.o, x, y, NULL, NB, NULL), BNN_OK);
        ck_assert_int_eq(bnn_svi_step(b.o, x, y, NULL, NB, NULL), BNN_OK);
    }
    double lam = NDATA, p2 = PRIOR_SIGMA * PRIOR_SIGMA;
    tu_assert_close(a.o->ivon_delta[0], 1.0 / (p2 * lam), 0, 1e-6);
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(a.o, 0.5f), BNN_OK);
    tu_assert_close(a.o->ivon_delta[0], 0.5 / (p2 * lam), 0, 1e-6);
    ck_assert(a.o->ivon_delta[0] == b.o->ivon_delta[0]);

    size_t n;
    float *pa = bnn_guide_params(a.g, &n), *pb = bnn_guide_params(b.g, NULL);
    size_t P = n / 2;
    memcpy(pb, pa, n * sizeof(float));
    memcpy(b.o->m, a.o->m, 2 * P * sizeof(float));

    /* The KL of the posterior this step starts from, with the new delta. */
    double kl = 0.0, delta = a.o->ivon_delta[0];
    const float *h = a.o->m + P;
    for (size_t i = 0; i < P; i++) {
        double s2 = 1.0 / (lam * ((double)h[i] + delta)), mu = pa[i];
        kl += 0.5 * log(p2 / s2) + (s2 + mu * mu) / (2.0 * p2) - 0.5;
    }
    batch(3, x, y);
    bnn_svi_stats sa, sb;
    bnn_svi_stats_init(&sa);
    bnn_svi_stats_init(&sb);
    ck_assert_int_eq(bnn_svi_step(a.o, x, y, NULL, NB, &sa), BNN_OK);
    ck_assert_int_eq(bnn_svi_step(b.o, x, y, NULL, NB, &sb), BNN_OK);
    check_decomposition(&sa, 0.5f);
    tu_assert_close(sa.kl, kl, 1e-5, 1e-5);
    ck_assert(sa.loss == sb.loss && sa.kl == sb.kl);
    ck_assert(memcmp(pa, pb, n * sizeof(float)) == 0);
    ck_assert(memcmp(a.o->m, b.o->m, 2 * P * sizeof(float)) == 0);

    /* A file saved after the change loads with the new weight. */
    size_t size, wr;
    ck_assert_int_eq(bnn_save_size(a.g, a.o, &size), BNN_OK);
    void *buf = malloc(size);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(bnn_save_to_memory(a.g, a.o, buf, size, &wr), BNN_OK);
    net c;
    ck_assert_int_eq(bnn_load_from_memory(buf, size, NULL, &c.m, &c.g, &c.o), BNN_OK);
    float wc = 0.0f;
    ck_assert_int_eq(bnn_optimizer_get_kl_weight(c.o, &wc), BNN_OK);
    ck_assert(wc == 0.5f);
    ck_assert(c.o->ivon_delta[0] == a.o->ivon_delta[0]);
    free(buf);
    net_free(&c);
    net_free(&b);
    net_free(&a);
}
END_TEST

/* IVON refuses 0 (as create does) and a smaller delta that some Hessian
 * estimate would not stay above; a refused call changes nothing. */
START_TEST(test_ivon_refusals)
{
    bnn_optimizer_config oc = ivon_cfg();
    net a;
    net_make(&a, &oc, BNN_EST_WEIGHT_SAMPLING, BNN_KL_ANALYTIC, 1.0f);
    float delta = a.o->ivon_delta[0];
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(a.o, 0.0f), BNN_E_INVALID);
    ck_assert(strstr(bnn_last_error(), "kl_weight > 0") != NULL);
    size_t P = a.g->n_params;
    a.o->m[P + 5] = -0.6f * delta; /* h + delta > 0 now, not at delta / 2 */
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(a.o, 0.5f), BNN_E_STATE);
    ck_assert(strstr(bnn_last_error(), "Hessian estimate 5") != NULL);
    float w = 0.0f;
    ck_assert_int_eq(bnn_optimizer_get_kl_weight(a.o, &w), BNN_OK);
    ck_assert(w == 1.0f && a.o->ivon_delta[0] == delta);
    /* A larger weight keeps it proper. */
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(a.o, 0.7f), BNN_OK);
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(a.o, 2.0f), BNN_OK);
    ck_assert(a.o->ivon_delta[0] > delta);
    net_free(&a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kl_weight");
    TCase *tc = tcase_create("kl_weight");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_next_step_uses_new_weight, 0, 6);
    tcase_add_test(tc, test_warmup_schedule);
    tcase_add_test(tc, test_ivon_weight_scales_prior_precision);
    tcase_add_test(tc, test_ivon_refusals);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
