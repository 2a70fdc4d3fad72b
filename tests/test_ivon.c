/* IVON (bnn.h "IVON"): three steps against an independent double-precision
 * implementation of the update, the exact mean-field posterior of Bayesian
 * linear regression as its fixed point (full batch and minibatches), the
 * data-parallel buffer, thread-count and route bit-identity, save/load in
 * the middle of training, refusals and the learning-rate schedule. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "internal.h"
#include "rng.h"
#include "testutil.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

typedef struct net {
    bnn_model *m;
    bnn_guide *g;
    bnn_optimizer *o;
} net;

/* A ReLU categorical net (or a Gaussian one) trained by IVON. */
static void net_make(net *t, const size_t *sizes, size_t ns, bnn_likelihood lik,
                     const bnn_optimizer_config *oc, const bnn_svi_config *sc)
{
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = ns;
    mc.layer_sizes = sizes;
    mc.likelihood = lik;
    mc.noise_sigma = 0.5f;
    mc.prior_sigma = 0.8f;
    ck_assert_int_eq(bnn_model_create(&mc, &t->m), BNN_OK);
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.seed = 5;
    ck_assert_int_eq(bnn_guide_create(t->m, &gc, &t->g), BNN_OK);
    ck_assert_int_eq(bnn_optimizer_create(t->g, oc, sc, &t->o), BNN_OK);
}

static void net_free(net *t)
{
    bnn_optimizer_free(t->o);
    bnn_guide_free(t->g);
    bnn_model_free(t->m);
}

static bnn_optimizer_config ivon_cfg(float lr)
{
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.kind = BNN_OPT_IVON;
    oc.lr = lr;
    return oc;
}

static bnn_svi_config ivon_svi(size_t dataset, size_t max_batch, size_t particles)
{
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    sc.estimator = BNN_EST_WEIGHT_SAMPLING;
    sc.dataset_size = dataset;
    sc.max_batch = max_batch;
    sc.num_particles = particles;
    sc.seed = 21;
    return sc;
}

static double softplus(double r)
{
    return r > 0 ? r + log1p(exp(-r)) : log1p(exp(r));
}

/* ---- an independent double implementation of three steps ------------------ */

enum { RI = 3, RH = 4, RO = 3, RB = 5 };
#define RP (RH * RI + RH + RO * RH + RO)

/* Mean over the batch of -log softmax(y) of the 3-4-3 ReLU net with
 * parameters w (layout of bnn_guide_params' mu half), and its gradient. */
static void ref_grad(const double *w, const float *x, const int32_t *y, int n, double *grad)
{
    const double *W1 = w, *b1 = w + RH * RI, *W2 = b1 + RH, *b2 = W2 + RO * RH;
    memset(grad, 0, RP * sizeof *grad);
    double *gW1 = grad, *gb1 = grad + RH * RI, *gW2 = gb1 + RH, *gb2 = gW2 + RO * RH;
    for (int i = 0; i < n; i++) {
        double a1[RH], h[RH], a2[RO], mx = -INFINITY, z = 0, p[RO], da2[RO], dh[RH];
        for (int j = 0; j < RH; j++) {
            a1[j] = b1[j];
            for (int k = 0; k < RI; k++)
                a1[j] += W1[j * RI + k] * x[i * RI + k];
            h[j] = a1[j] > 0 ? a1[j] : 0;
        }
        for (int c = 0; c < RO; c++) {
            a2[c] = b2[c];
            for (int j = 0; j < RH; j++)
                a2[c] += W2[c * RH + j] * h[j];
            mx = a2[c] > mx ? a2[c] : mx;
        }
        for (int c = 0; c < RO; c++)
            z += exp(a2[c] - mx);
        for (int c = 0; c < RO; c++) {
            p[c] = exp(a2[c] - mx) / z;
            da2[c] = (p[c] - (c == y[i])) / n;
            gb2[c] += da2[c];
            for (int j = 0; j < RH; j++)
                gW2[c * RH + j] += da2[c] * h[j];
        }
        for (int j = 0; j < RH; j++) {
            dh[j] = 0;
            for (int c = 0; c < RO; c++)
                dh[j] += da2[c] * W2[c * RH + j];
            double da1 = a1[j] > 0 ? dh[j] : 0;
            gb1[j] += da1;
            for (int k = 0; k < RI; k++)
                gW1[j * RI + k] += da1 * x[i * RI + k];
        }
    }
}

/* Three steps, the first and third by bnn_svi_step and the second by the
 * two calls, against the formulas of bnn.h in double: every state vector
 * (mu, sigma from rho, momentum, Hessian) after each step.  Loop index:
 * 0 plain, 1 two particles and a tempered ess, 2 clipping active. */
START_TEST(test_reference_three_steps)
{
    const size_t sizes[] = {RI, RH, RO};
    enum { N = 50 };
    bnn_optimizer_config oc = ivon_cfg(0.3f);
    oc.ivon_beta2 = 0.9f; /* the correction term matters at this beta2 */
    oc.ivon_hess_init = 0.5f;
    size_t K = 1;
    if (_i == 1) {
        K = 2;
        oc.ivon_ess = 4.0f * N;
    }
    if (_i == 2)
        oc.ivon_clip_radius = 0.05f;
    bnn_svi_config sc = ivon_svi(N, RB, K);
    sc.kl_weight = 0.7f;
    net t;
    net_make(&t, sizes, 3, BNN_LIK_CATEGORICAL, &oc, &sc);
    ck_assert_uint_eq(t.g->n_params, RP);

    float x[RB * RI];
    int32_t y[RB];
    tu_rng r = {17};
    tu_fill_uniform(&r, x, RB * RI, -2, 2);
    for (int i = 0; i < RB; i++)
        y[i] = (int32_t)(tu_next(&r) % RO);

    /* Reference state: mu from the guide, sigma from h0. */
    double mu[RP], g[RP] = {0}, h[RP];
    const double lam = _i == 1 ? 4.0 * N : N, p = 0.8, delta = 0.7 / (p * p * lam);
    const double b1 = oc.beta1, b2 = oc.ivon_beta2, h0 = oc.ivon_hess_init;
    for (int i = 0; i < RP; i++) {
        mu[i] = t.g->params[i];
        h[i] = h0;
    }
    for (int s = 0; s < 3; s++) {
        double gh[RP] = {0}, hh[RP] = {0};
        for (size_t k = 0; k < K; k++) {
            float e[RP];
            rng_normal_fill(sc.seed, rng_stream_id((uint64_t)s, (unsigned)k, 0, RNG_WEIGHTS), 0,
                            RP, e);
            double w[RP], gr[RP];
            for (int i = 0; i < RP; i++)
                w[i] = mu[i] + e[i] / sqrt(lam * (h[i] + delta));
            ref_grad(w, x, y, RB, gr);
            for (int i = 0; i < RP; i++) {
                gh[i] += gr[i] / K;
                hh[i] += gr[i] * e[i] * sqrt(lam * (h[i] + delta)) / K;
            }
        }
        for (int i = 0; i < RP; i++) {
            g[i] = b1 * g[i] + (1 - b1) * gh[i];
            double d = h[i] - hh[i];
            h[i] = b2 * h[i] + (1 - b2) * hh[i] + 0.5 * (1 - b2) * (1 - b2) * d * d / (h[i] + delta);
            double u = (g[i] / (1 - pow(b1, s + 1)) + delta * mu[i]) / (h[i] + delta);
            if (_i == 2)
                u = fmax(-0.05, fmin(0.05, u));
            mu[i] -= oc.lr * (h0 + delta) * u;
        }
        bnn_svi_stats st = {.struct_size = sizeof st};
        if (s == 1) {
            ck_assert_int_eq(bnn_svi_grad(t.o, x, y, NULL, RB, &st), BNN_OK);
            /* The buffer holds [ghat | hhat] (float rounding only). */
            for (int i = 0; i < RP; i++) {
                tu_assert_close(t.g->grads[i], gh[i], 1e-6, 1e-4);
                tu_assert_close(t.g->grads[RP + i], hh[i], 1e-5, 1e-4);
            }
            ck_assert_int_eq(bnn_optimizer_step(t.o), BNN_OK);
        } else {
            ck_assert_int_eq(bnn_svi_step(t.o, x, y, NULL, RB, &st), BNN_OK);
        }
        ck_assert(isfinite(st.loss) && st.kl > 0);
        int clipped = 0;
        for (int i = 0; i < RP; i++) {
            double sigma = 1.0 / sqrt(lam * (h[i] + delta));
            tu_assert_close(t.g->params[i], mu[i], 1e-6, 2e-4);
            tu_assert_close(softplus(t.g->params[RP + i]), sigma, 0, 2e-5);
            tu_assert_close(t.o->m[i], g[i], 1e-7, 2e-4);
            tu_assert_close(t.o->m[RP + i], h[i], 1e-6, 2e-4);
            clipped += fabs(mu[i]) > 0; /* keep the compiler honest */
        }
        ck_assert_int_gt(clipped, 0);
    }
    ck_assert_uint_eq(bnn_optimizer_step_count(t.o), 3);
    net_free(&t);
}
END_TEST

/* ---- Bayesian linear regression ---------------------------------------------- */

enum { LN = 40, LD = 2, LK = LD + 1 };

/* y = [x 1] w + noise; the exact posterior mean and the mean-field
 * variances 1 / Lambda_ii for noise s and prior N(0, p^2). */
static void blr_data(float *x, float *y, double *mean, double *sd, double s, double p)
{
    tu_rng r = {3};
    const double w_true[LK] = {1.5, -0.8, 0.3};
    double A[LN][LK], L[LK][LK + 1];
    for (int i = 0; i < LN; i++) {
        double f = w_true[LD];
        for (int j = 0; j < LD; j++) {
            x[i * LD + j] = (float)(2.0 * tu_uniform(&r) - 1.0);
            A[i][j] = x[i * LD + j];
            f += w_true[j] * x[i * LD + j];
        }
        A[i][LD] = 1.0;
        y[i] = (float)(f + s * tu_normal(&r));
    }
    for (int a = 0; a < LK; a++) {
        for (int b = 0; b < LK; b++) {
            double acc = a == b ? 1.0 / (p * p) : 0.0;
            for (int i = 0; i < LN; i++)
                acc += A[i][a] * A[i][b] / (s * s);
            L[a][b] = acc;
        }
        L[a][LK] = 0.0;
        for (int i = 0; i < LN; i++)
            L[a][LK] += A[i][a] * y[i] / (s * s);
        sd[a] = sqrt(1.0 / L[a][a]);
    }
    for (int c = 0; c < LK; c++)
        for (int rr = 0; rr < LK; rr++) {
            if (rr == c)
                continue;
            double f = L[rr][c] / L[c][c];
            for (int k = c; k <= LK; k++)
                L[rr][k] -= f * L[c][k];
        }
    for (int a = 0; a < LK; a++)
        mean[a] = L[a][LK] / L[a][a];
}

/* IVON's fixed point is the exact mean-field posterior: train with a
 * cosine-decayed learning rate, then compare mu and sigma (averaged over
 * the last quarter) with the closed form: means within 0.02 posterior sd,
 * sigmas within 1% (the Adam-trained test allows 0.05 sd and 5%).  Loop:
 * 0 full batch, 1 minibatches of 8, 2 full batch with the prior N(0,
 * 0.3^2) set on the layer (bnn_layer_spec) and the model's N(0, 4^2)
 * unused: the posterior is the one for the layer's prior. */
START_TEST(test_exact_posterior)
{
    const double s = 0.5, p = _i == 2 ? 0.3 : 1.0;
    float x[LN * LD], y[LN];
    double mean[LK], sd[LK];
    blr_data(x, y, mean, sd, s, p);

    const size_t sizes[] = {LD, 1};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 2;
    mc.layer_sizes = sizes;
    mc.likelihood = BNN_LIK_GAUSSIAN;
    mc.noise_sigma = (float)s;
    mc.prior_sigma = (float)p;
    bnn_layer_spec layer;
    if (_i == 2) {
        bnn_layer_spec_init(&layer);
        layer.units = 1;
        layer.prior = BNN_PRIOR_NORMAL;
        layer.prior_sigma = (float)p;
        mc.n_layers = 1;
        mc.layers = &layer;
        mc.input_height = mc.input_width = 1;
        mc.input_channels = LD;
        mc.prior_sigma = 4.0f;
    }
    net t;
    ck_assert_int_eq(bnn_model_create(&mc, &t.m), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(t.m, NULL, &t.g), BNN_OK);
    const size_t B = _i == 1 ? 8 : LN;
    bnn_optimizer_config oc = ivon_cfg(0.5f);
    oc.ivon_beta2 = 0.999f;
    oc.ivon_hess_init = 1.0f;
    bnn_svi_config sc = ivon_svi(LN, B, 8);
    ck_assert_int_eq(bnn_optimizer_create(t.g, &oc, &sc, &t.o), BNN_OK);

    const int steps = 16000, tail = 4000;
    const float lr_end = 0.002f;
    double avg_mu[LK] = {0}, avg_sd[LK] = {0};
    for (int it = 0; it < steps; it++) {
        float lr;
        ck_assert_int_eq(bnn_lr_schedule(BNN_LR_COSINE, 0.5f, lr_end, (uint64_t)it,
                                         (uint64_t)steps, &lr),
                         BNN_OK);
        ck_assert_int_eq(bnn_optimizer_set_lr(t.o, lr), BNN_OK);
        size_t off = _i == 1 ? ((size_t)it * B) % LN : 0;
        ck_assert_int_eq(bnn_svi_step(t.o, x + off * LD, NULL, y + off, B, NULL), BNN_OK);
        if (it >= steps - tail) {
            float wm[LD], ws[LD], bm, bs;
            ck_assert_int_eq(bnn_guide_get_layer(t.g, 0, wm, ws, &bm, &bs), BNN_OK);
            for (int j = 0; j < LD; j++) {
                avg_mu[j] += wm[j] / tail;
                avg_sd[j] += 1.0 / ((double)ws[j] * ws[j] * tail);
            }
            avg_mu[LD] += bm / tail;
            avg_sd[LD] += 1.0 / ((double)bs * bs * tail);
        }
    }
    /* The precision 1 / sigma^2 = lambda (h + delta) is linear in IVON's
     * state: its average, not sigma's, is unbiased. */
    for (int a = 0; a < LK; a++)
        avg_sd[a] = 1.0 / sqrt(avg_sd[a]);
    for (int a = 0; a < LK; a++) {
        ck_assert_msg(fabs(avg_mu[a] - mean[a]) < 0.02 * sd[a],
                      "mean[%d] = %.5f, exact %.5f (sd %.4f)", a, avg_mu[a], mean[a], sd[a]);
        ck_assert_msg(fabs(avg_sd[a] / sd[a] - 1.0) < 0.01, "sigma[%d] = %.5f, exact %.5f", a,
                      avg_sd[a], sd[a]);
    }
    net_free(&t);
}
END_TEST

/* ---- the training routes, threads, files -------------------------------------- */

enum { TB = 8, TIN = 256 };
static const size_t tsizes[] = {TIN, 384, 10}; /* 102,538 parameters: two chunks */

typedef struct run {
    float *p, *m;
    double loss[6], norm[6];
} run;

static void batch(float *x, int32_t *y, uint64_t seed)
{
    tu_rng r = {seed};
    tu_fill_uniform(&r, x, TB * TIN, -1, 1);
    for (int i = 0; i < TB; i++)
        y[i] = (int32_t)(tu_next(&r) % 10);
}

static void keep(const net *t, run *out)
{
    size_t n2 = 2 * t->g->n_params;
    out->p = malloc(n2 * sizeof(float));
    out->m = malloc(n2 * sizeof(float));
    ck_assert(out->p && out->m);
    memcpy(out->p, t->g->params, n2 * sizeof(float));
    memcpy(out->m, t->o->m, n2 * sizeof(float));
}

static void same_run(const run *a, const run *b, size_t n2, int steps)
{
    for (int s = 0; s < steps; s++)
        ck_assert_msg(a->loss[s] == b->loss[s] && a->norm[s] == b->norm[s],
                      "step %d: loss %.17g vs %.17g", s, a->loss[s], b->loss[s]);
    ck_assert_int_eq(memcmp(a->p, b->p, n2 * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(a->m, b->m, n2 * sizeof(float)), 0);
    free(b->p);
    free(b->m);
}

/* Six steps with `threads` threads, `later` from step 2 on; route 0 uses
 * bnn_svi_step, 1 the two calls, 2 alternates. */
static void train(size_t threads, size_t later, int route, run *out)
{
    bnn_optimizer_config oc = ivon_cfg(0.2f);
    oc.ivon_clip_radius = 1.0f;
    bnn_svi_config sc = ivon_svi(1000, TB, 2);
    sc.num_threads = threads;
    net t;
    net_make(&t, tsizes, 3, BNN_LIK_CATEGORICAL, &oc, &sc);
    static float x[TB * TIN];
    int32_t y[TB];
    for (int s = 0; s < 6; s++) {
        batch(x, y, 91 + (uint64_t)s);
        if (s == 2)
            ck_assert_int_eq(bnn_optimizer_set_threads(t.o, later), BNN_OK);
        bnn_svi_stats st = {.struct_size = sizeof st};
        if (route == 1 || (route == 2 && s % 2)) {
            ck_assert_int_eq(bnn_svi_grad(t.o, x, y, NULL, TB, &st), BNN_OK);
            ck_assert_int_eq(bnn_optimizer_step(t.o), BNN_OK);
        } else {
            ck_assert_int_eq(bnn_svi_step(t.o, x, y, NULL, TB, &st), BNN_OK);
        }
        out->loss[s] = st.loss;
        out->norm[s] = st.grad_norm;
    }
    keep(&t, out);
    net_free(&t);
}

/* 1, 2 and 3 threads, switches between steps, and both routes give the same
 * bits: parameters, momentum, Hessian, losses and buffer norms. */
START_TEST(test_threads_and_routes_same_bits)
{
    const size_t n2 = 2 * (TIN * 384 + 384 + 384 * 10 + 10);
    static const size_t plan[][3] = {{2, 2, 0}, {3, 3, 2}, {1, 3, 1}, {2, 1, 2}, {1, 1, 1}};
    run ref, r;
    train(1, 1, 0, &ref);
    for (size_t k = 0; k < sizeof plan / sizeof plan[0]; k++) {
        train(plan[k][0], plan[k][1], (int)plan[k][2], &r);
        same_run(&ref, &r, n2, 6);
    }
    free(ref.p);
    free(ref.m);
}
END_TEST

/* Saved after three steps and loaded, the optimizer continues with the same
 * bits as the one that never stopped; the file is version 2 and carries
 * IVON's settings. */
START_TEST(test_save_load_continues)
{
    bnn_optimizer_config oc = ivon_cfg(0.2f);
    oc.ivon_beta2 = 0.95f;
    oc.ivon_hess_init = 0.3f;
    oc.ivon_ess = 2500.0f;
    oc.ivon_clip_radius = 2.0f;
    bnn_svi_config sc = ivon_svi(1000, TB, 1);
    net a, b;
    net_make(&a, tsizes, 3, BNN_LIK_CATEGORICAL, &oc, &sc);
    static float x[TB * TIN];
    int32_t y[TB];
    for (int s = 0; s < 3; s++) {
        batch(x, y, 7 + (uint64_t)s);
        ck_assert_int_eq(bnn_svi_step(a.o, x, y, NULL, TB, NULL), BNN_OK);
    }
    size_t size, written;
    ck_assert_int_eq(bnn_save_size(a.g, a.o, &size), BNN_OK);
    unsigned char *buf = malloc(size);
    ck_assert(buf);
    ck_assert_int_eq(bnn_save_to_memory(a.g, a.o, buf, size, &written), BNN_OK);
    ck_assert_uint_eq(written, size);
    ck_assert_uint_eq(buf[8], 2); /* version */
    ck_assert_int_eq(bnn_load_from_memory(buf, size, NULL, &b.m, &b.g, &b.o), BNN_OK);
    free(buf);
    bnn_optimizer_config got;
    got.struct_size = sizeof got;
    ck_assert_int_eq(bnn_optimizer_get_config(b.o, &got, NULL), BNN_OK);
    ck_assert_int_eq(got.kind, BNN_OPT_IVON);
    ck_assert(got.ivon_beta2 == oc.ivon_beta2 && got.ivon_hess_init == oc.ivon_hess_init &&
              got.ivon_ess == oc.ivon_ess && got.ivon_clip_radius == oc.ivon_clip_radius);
    ck_assert_uint_eq(bnn_optimizer_step_count(b.o), 3);
    for (int s = 3; s < 6; s++) {
        batch(x, y, 7 + (uint64_t)s);
        ck_assert_int_eq(bnn_svi_step(a.o, x, y, NULL, TB, NULL), BNN_OK);
        ck_assert_int_eq(bnn_svi_step(b.o, x, y, NULL, TB, NULL), BNN_OK);
    }
    run ra = {0}, rb = {0};
    keep(&a, &ra);
    keep(&b, &rb);
    same_run(&ra, &rb, 2 * a.g->n_params, 0);
    free(ra.p);
    free(ra.m);
    net_free(&a);
    net_free(&b);
}
END_TEST

/* Data-parallel route: the buffers of bnn_svi_grad_part over a split batch
 * sum to the whole batch's [ghat | hhat]. */
START_TEST(test_grad_parts_sum)
{
    const size_t sizes[] = {RI, RH, RO};
    bnn_optimizer_config oc = ivon_cfg(0.1f);
    bnn_svi_config sc = ivon_svi(50, RB, 2);
    net t;
    net_make(&t, sizes, 3, BNN_LIK_CATEGORICAL, &oc, &sc);
    float x[RB * RI];
    int32_t y[RB];
    tu_rng r = {5};
    tu_fill_uniform(&r, x, RB * RI, -2, 2);
    for (int i = 0; i < RB; i++)
        y[i] = (int32_t)(tu_next(&r) % RO);
    float whole[2 * RP], sum[2 * RP] = {0};
    ck_assert_int_eq(bnn_svi_grad(t.o, x, y, NULL, RB, NULL), BNN_OK);
    memcpy(whole, t.g->grads, sizeof whole);
    const size_t cut[] = {0, 2, 3, RB};
    for (int k = 0; k < 3; k++) {
        size_t off = cut[k], n = cut[k + 1] - cut[k];
        ck_assert_int_eq(bnn_svi_grad_part(t.o, x + off * RI, y + off, NULL, n, off, RB, NULL),
                         BNN_OK);
        for (int i = 0; i < 2 * RP; i++)
            sum[i] += t.g->grads[i];
    }
    for (int i = 0; i < 2 * RP; i++)
        tu_assert_close(sum[i], whole[i], 1e-6, 1e-5);
    net_free(&t);
}
END_TEST

/* A Hessian estimate that overflows leaves the guide and IVON's state
 * untouched on both routes: inputs of 1e23 give hidden units of 1e23 and
 * finite logits (output weights 1e-3), a finite gradient near 1e22, and
 * with 1 / sigma = 4e16 (h0 = 1e32) an hhat past FLT_MAX. */
START_TEST(test_numeric_failure_untouched)
{
    const size_t sizes[] = {2, 2, 2};
    enum { N = 16 };
    float x[N * 2];
    int32_t y[N];
    for (int i = 0; i < N; i++) {
        x[2 * i] = x[2 * i + 1] = 1e23f;
        y[i] = 0;
    }
    bnn_optimizer_config oc = ivon_cfg(0.1f);
    oc.ivon_hess_init = 1e32f;
    bnn_svi_config sc = ivon_svi(N, N, 1);
    net t;
    net_make(&t, sizes, 3, BNN_LIK_CATEGORICAL, &oc, &sc);
    size_t P = t.g->n_params;
    for (size_t i = 0; i < P; i++)
        t.g->params[i] = i < 6 ? 0.5f : 1e-3f;
    float p0[2 * 12], m0[2 * 12];
    ck_assert_uint_eq(P, 12);
    memcpy(p0, t.g->params, sizeof p0);
    memcpy(m0, t.o->m, sizeof m0);
    ck_assert_int_eq(bnn_svi_step(t.o, x, y, NULL, N, NULL), BNN_E_NUMERIC);
    ck_assert_int_eq(memcmp(p0, t.g->params, sizeof p0), 0);
    ck_assert_int_eq(memcmp(m0, t.o->m, sizeof m0), 0);
    /* The two-call route: a host-made non-finite buffer. */
    t.g->grads[3] = INFINITY;
    ck_assert_int_eq(bnn_optimizer_step(t.o), BNN_E_NUMERIC);
    ck_assert_int_eq(memcmp(p0, t.g->params, sizeof p0), 0);
    ck_assert_int_eq(memcmp(m0, t.o->m, sizeof m0), 0);
    ck_assert_uint_eq(bnn_optimizer_step_count(t.o), 0);
    net_free(&t);
}
END_TEST

/* bnn_svi_step fuses the gradient into the update when the GEMM operands
 * bound it finite, and otherwise makes the two passes: either way the same
 * bits as bnn_svi_grad + bnn_optimizer_step (guide, state, loss, norm).
 * Loop 0: ordinary inputs, the fused step (the buffer is not written).
 * Loop 1: one input of 1e23 among zeros and 1 / sigma = 4e15 (h0 = 1e30):
 * the bound n max|dA| max|h| max|eps / sigma| is past FLT_MAX / 2 while
 * the gradient (one example's term, near 6e21) and hhat (near 2.5e37
 * |eps|) are finite, so the step takes the two-pass route. */
START_TEST(test_fused_step_same_bits)
{
    const size_t sizes[] = {2, 2, 2};
    enum { N = 16 };
    float x[N * 2];
    int32_t y[N];
    tu_rng r = {33};
    tu_fill_uniform(&r, x, N * 2, -1, 1);
    for (int i = 0; i < N; i++)
        y[i] = i % 2;
    bnn_optimizer_config oc = ivon_cfg(0.1f);
    if (_i == 1) {
        for (int i = 0; i < N * 2; i++)
            x[i] = i < 2 ? 1e23f : 0.0f;
        oc.ivon_hess_init = 1e30f;
    }
    bnn_svi_config sc = ivon_svi(N, N, 1);
    net a, b;
    net_make(&a, sizes, 3, BNN_LIK_CATEGORICAL, &oc, &sc);
    net_make(&b, sizes, 3, BNN_LIK_CATEGORICAL, &oc, &sc);
    size_t P = a.g->n_params;
    ck_assert_uint_eq(P, 12);
    if (_i == 1)
        for (size_t i = 0; i < P; i++)
            a.g->params[i] = b.g->params[i] = i < 6 ? 0.5f : 1e-3f;
    /* Loop 1's step overflows h (d^2 in the update): one step. */
    for (int s = 0; s < (_i == 0 ? 3 : 1); s++) {
        for (size_t i = 0; i < 2 * P; i++)
            a.g->grads[i] = 7.0f;
        bnn_svi_stats sa = {.struct_size = sizeof sa}, sb = {.struct_size = sizeof sb};
        bnn_status st = bnn_svi_step(a.o, x, y, NULL, N, &sa);
        ck_assert_msg(st == BNN_OK, "step %d: %s", s, bnn_last_error());
        ck_assert_int_eq(bnn_svi_grad(b.o, x, y, NULL, N, &sb), BNN_OK);
        ck_assert_int_eq(bnn_optimizer_step(b.o), BNN_OK);
        ck_assert_msg(sa.loss == sb.loss && sa.grad_norm == sb.grad_norm,
                      "step %d: loss %.17g vs %.17g, norm %.17g vs %.17g", s, sa.loss, sb.loss,
                      sa.grad_norm, sb.grad_norm);
        ck_assert(isfinite(sa.grad_norm) && sa.grad_norm > 0);
        ck_assert_int_eq(memcmp(a.g->params, b.g->params, 2 * P * sizeof(float)), 0);
        ck_assert_int_eq(memcmp(a.o->m, b.o->m, 2 * P * sizeof(float)), 0);
        if (_i == 0)
            for (size_t i = 0; i < 2 * P; i++)
                ck_assert_float_eq(a.g->grads[i], 7.0f);
        else
            ck_assert_int_eq(memcmp(a.g->grads, b.g->grads, 2 * P * sizeof(float)), 0);
    }
    net_free(&a);
    net_free(&b);
}
END_TEST

/* What IVON refuses, and why. */
START_TEST(test_refusals)
{
    const size_t sizes[] = {RI, RH, RO};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 3;
    mc.layer_sizes = sizes;
    bnn_model *m, *mm;
    bnn_guide *g, *gm;
    ck_assert_int_eq(bnn_model_create(&mc, &m), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    mc.prior = BNN_PRIOR_SCALE_MIXTURE;
    ck_assert_int_eq(bnn_model_create(&mc, &mm), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(mm, NULL, &gm), BNN_OK);
    bnn_optimizer *o = (bnn_optimizer *)&o;
    bnn_optimizer_config oc = ivon_cfg(0.1f);
    bnn_svi_config sc = ivon_svi(10, 4, 1);
    sc.estimator = BNN_EST_LOCAL_REPARAM;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "WEIGHT_SAMPLING"));
    sc.estimator = BNN_EST_FLIPOUT;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_UNSUPPORTED);
    sc.estimator = BNN_EST_WEIGHT_SAMPLING;
    sc.kl_mode = BNN_KL_MONTE_CARLO;
    ck_assert_int_eq(bnn_optimizer_create(gm, &oc, &sc, &o), BNN_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "Normal prior"));
    sc.kl_weight = 0.0f;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_INVALID);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "kl_weight"));
    sc.kl_weight = 1.0f;
    oc.clip_norm = 1.0f;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_INVALID);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "clip_norm"));
    ck_assert_ptr_eq(o, (bnn_optimizer *)&o);
    /* kl_mode is not used: Monte Carlo is accepted with the Normal prior. */
    oc.clip_norm = 0.0f;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_OK);
    bnn_optimizer_free(o);
    bnn_guide_free(gm);
    bnn_model_free(mm);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

START_TEST(test_lr_schedule)
{
    float lr = -1.0f;
    ck_assert_int_eq(bnn_lr_schedule(BNN_LR_COSINE, 0.2f, 0.01f, 0, 100, &lr), BNN_OK);
    tu_assert_close(lr, 0.2, 0, 1e-7);
    ck_assert_int_eq(bnn_lr_schedule(BNN_LR_COSINE, 0.2f, 0.01f, 25, 100, &lr), BNN_OK);
    tu_assert_close(lr, 0.01 + 0.19 * 0.5 * (1 + cos(M_PI / 4)), 0, 1e-6);
    ck_assert_int_eq(bnn_lr_schedule(BNN_LR_COSINE, 0.2f, 0.01f, 100, 100, &lr), BNN_OK);
    tu_assert_close(lr, 0.01, 0, 1e-6);
    ck_assert_int_eq(bnn_lr_schedule(BNN_LR_LINEAR, 0.2f, 0.01f, 30, 100, &lr), BNN_OK);
    tu_assert_close(lr, 0.2 - 0.19 * 0.3, 0, 1e-6);
    ck_assert_int_eq(bnn_lr_schedule(BNN_LR_LINEAR, 0.2f, 0.01f, 500, 100, &lr), BNN_OK);
    tu_assert_close(lr, 0.01, 0, 1e-6);
    ck_assert_int_eq(bnn_lr_schedule(BNN_LR_CONSTANT, 0.2f, 0.01f, 500, 100, &lr), BNN_OK);
    tu_assert_close(lr, 0.2, 0, 1e-7);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ivon");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_reference_three_steps, 0, 3);
    tcase_add_loop_test(tc, test_exact_posterior, 0, 3);
    tcase_add_test(tc, test_grad_parts_sum);
    tcase_add_test(tc, test_lr_schedule);
    suite_add_tcase(s, tc);
    TCase *tt = tcase_create("training");
    tcase_set_timeout(tt, 60);
    tcase_add_test(tt, test_threads_and_routes_same_bits);
    tcase_add_test(tt, test_save_load_continues);
    tcase_add_test(tt, test_numeric_failure_untouched);
    tcase_add_loop_test(tt, test_fused_step_same_bits, 0, 2);
    tcase_add_test(tt, test_refusals);
    suite_add_tcase(s, tt);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
