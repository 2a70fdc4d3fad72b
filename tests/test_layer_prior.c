/* Per-layer priors (bnn_layer_spec.prior) in training: the analytic KL and
 * its gradient against an independent double computation (one thread and
 * several, across pass chunks), the Monte Carlo KL at a known draw, whole
 * ELBO finite differences with a mixture prior on one layer and a Normal
 * one on another, the loss decomposition when one layer's prior changes,
 * IVON's delta per layer, and what is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "internal.h"
#include "rng.h"
#include "testutil.h"

#define NDATA 50
#define NB 4
#define MAXL 4

/* A layer's prior as the test sets it (kind INHERIT: the model's). */
typedef struct lprior {
    bnn_prior kind;
    double sigma, pi, s1, s2;
} lprior;

#define NORMAL(s) {BNN_PRIOR_NORMAL, (s), 0.5, 1.0, 0.1}
#define MIXTURE(pi, s1, s2) {BNN_PRIOR_SCALE_MIXTURE, 1.0, (pi), (s1), (s2)}
#define INHERIT {BNN_PRIOR_INHERIT, 1.0, 0.5, 1.0, 0.1}

typedef struct net {
    size_t nl, nin, nout;
    lprior model_prior, prior[MAXL]; /* prior[l]: resolved, never INHERIT */
    size_t end[MAXL];                /* layer l: parameters [end[l-1], end[l]) */
    size_t P;
    bnn_model *m;
    bnn_guide *g;
    bnn_optimizer *o;
} net;

/* A tanh network of dense layers `units` on nin inputs with these layer
 * priors and model prior; the guide with init_sigma 0.3 (seed 7). */
static void net_model(net *t, size_t nin, const size_t *units, size_t nl, const lprior *pr,
                      lprior mp)
{
    memset(t, 0, sizeof *t);
    bnn_layer_spec s[MAXL];
    for (size_t l = 0; l < nl; l++) {
        bnn_layer_spec_init(&s[l]);
        s[l].units = units[l];
        s[l].prior = pr[l].kind;
        s[l].prior_sigma = (float)pr[l].sigma;
        s[l].prior_pi = (float)pr[l].pi;
        s[l].prior_sigma1 = (float)pr[l].s1;
        s[l].prior_sigma2 = (float)pr[l].s2;
        t->prior[l] = pr[l].kind == BNN_PRIOR_INHERIT ? mp : pr[l];
    }
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_layers = nl;
    mc.layers = s;
    mc.input_height = mc.input_width = 1;
    mc.input_channels = nin;
    mc.activation = BNN_ACT_TANH;
    mc.prior = mp.kind;
    mc.prior_sigma = (float)mp.sigma;
    mc.prior_pi = (float)mp.pi;
    mc.prior_sigma1 = (float)mp.s1;
    mc.prior_sigma2 = (float)mp.s2;
    ck_assert_int_eq(bnn_model_create(&mc, &t->m), BNN_OK);
    t->nl = nl, t->nin = nin, t->nout = units[nl - 1], t->model_prior = mp;
    size_t off = 0;
    for (size_t l = 0; l < nl; l++) {
        size_t in = 0, out = 0;
        ck_assert_int_eq(bnn_model_layer_shape(t->m, l, &in, &out), BNN_OK);
        off += (in + 1) * out;
        t->end[l] = off;
    }
    t->P = off;
    ck_assert_uint_eq(bnn_model_param_count(t->m), off);
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.init_sigma = 0.3f;
    gc.seed = 7;
    ck_assert_int_eq(bnn_guide_create(t->m, &gc, &t->g), BNN_OK);
}

static void net_train(net *t, const bnn_optimizer_config *oc, bnn_estimator est, bnn_kl_mode kl)
{
    bnn_svi_config sc = tu_svi(NDATA);
    sc.estimator = est;
    sc.kl_mode = kl;
    sc.max_batch = NB;
    sc.seed = 11;
    ck_assert_int_eq(bnn_optimizer_create(t->g, oc, &sc, &t->o), BNN_OK);
}

static void net_free(net *t)
{
    bnn_optimizer_free(t->o);
    bnn_guide_free(t->g);
    bnn_model_free(t->m);
}

/* The prior of parameter i (an index into one guide half). */
static const lprior *prior_of(const net *t, size_t i)
{
    size_t l = 0;
    while (t->end[l] <= i)
        l++;
    return &t->prior[l];
}

static double softplus(double r)
{
    return r > 0 ? r + log1p(exp(-r)) : log1p(exp(r));
}

/* Closed-form KL(N(mu, softplus(rho)^2) || N(0, p^2)) per parameter with
 * its layer's p, summed, and its gradient w.r.t. mu and rho into dkl[2P]. */
static double kl_analytic_ref(const net *t, const float *params, double *dkl)
{
    size_t P = t->P;
    double kl = 0.0;
    for (size_t i = 0; i < P; i++) {
        double p = prior_of(t, i)->sigma, p2 = p * p;
        double mu = params[i], rho = params[P + i], s = softplus(rho);
        kl += log(p / s) + (s * s + mu * mu) / (2.0 * p2) - 0.5;
        dkl[i] = mu / p2;
        dkl[P + i] = (s / p2 - 1.0 / s) / (1.0 + exp(-rho));
    }
    return kl;
}

/* log p(w) of a prior, without the -log(2 pi) / 2 that log q(w) also has. */
static double log_prior(const lprior *q, double w)
{
    if (q->kind == BNN_PRIOR_NORMAL)
        return -log(q->sigma) - w * w / (2.0 * q->sigma * q->sigma);
    double a = log(q->pi) - log(q->s1) - w * w / (2.0 * q->s1 * q->s1);
    double b = log1p(-q->pi) - log(q->s2) - w * w / (2.0 * q->s2 * q->s2);
    double mx = a > b ? a : b;
    return mx + log(exp(a - mx) + exp(b - mx));
}

static void batch(const net *t, unsigned k, float *x, int32_t *y)
{
    tu_rng r = {100 + k};
    tu_fill_uniform(&r, x, NB * t->nin, -1.5f, 1.5f);
    for (size_t i = 0; i < NB; i++)
        y[i] = (int32_t)(tu_next(&r) % t->nout);
}

static bnn_svi_stats grad(net *t, const float *x, const int32_t *y, float *out)
{
    bnn_svi_stats s;
    bnn_svi_stats_init(&s);
    ck_assert_int_eq(bnn_svi_grad(t->o, x, y, NULL, NB, &s), BNN_OK);
    size_t n;
    const float *g = bnn_guide_grads(t->g, &n);
    if (out)
        memcpy(out, g, n * sizeof(float));
    return s;
}

/* ---- the analytic KL ------------------------------------------------------- */

/* A 4-6-5-3 net with N(0, 0.5) on the first two layers (one segment of
 * the passes) and the model's N(0, 1.5) on the last; and a 400-200-200-3
 * net (121,003 parameters: two pass chunks, the layer bounds inside them)
 * with N(0, 0.3), the model's N(0, 1.2) and N(0, 2): the KL and its
 * gradient (the gradient at weight 1 minus the one at weight 0) against
 * the double reference with each layer's sigma, by local
 * reparameterization and weight sampling, and with 3 threads the same
 * bits as with 1.  Loop: bit 0 the big net, bit 1 weight sampling. */
START_TEST(test_analytic_kl_per_layer)
{
    static const size_t small[] = {6, 5, 3}, big[] = {200, 200, 3};
    static const lprior small_pr[] = {NORMAL(0.5), NORMAL(0.5), INHERIT};
    static const lprior big_pr[] = {NORMAL(0.3), INHERIT, NORMAL(2.0)};
    int is_big = _i & 1;
    net t;
    net_model(&t, is_big ? 400 : 4, is_big ? big : small, 3, is_big ? big_pr : small_pr,
              (lprior)NORMAL(is_big ? 1.2 : 1.5));
    bnn_estimator est = (_i & 2) ? BNN_EST_WEIGHT_SAMPLING : BNN_EST_LOCAL_REPARAM;
    net_train(&t, NULL, est, BNN_KL_ANALYTIC);
    ck_assert_uint_eq(t.o->n_seg, is_big ? 3 : 2);
    size_t n, P = t.P;
    const float *params = bnn_guide_params(t.g, &n);
    ck_assert_uint_eq(n, 2 * P);
    float *x = malloc(NB * t.nin * sizeof *x), *g1 = malloc(n * sizeof *g1),
          *g0 = malloc(n * sizeof *g0), *g3 = malloc(n * sizeof *g3);
    double *dkl = malloc(n * sizeof *dkl);
    ck_assert(x && g1 && g0 && g3 && dkl);
    int32_t y[NB];
    batch(&t, 0, x, y);

    bnn_svi_stats s1 = grad(&t, x, y, g1);
    double kl = kl_analytic_ref(&t, params, dkl);
    tu_assert_close(s1.kl, kl, 1e-6, 2e-6);
    tu_assert_close(s1.kl_term, s1.kl * NB / NDATA, 1e-300, 1e-12);
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(t.o, 0.0f), BNN_OK);
    bnn_svi_stats s0 = grad(&t, x, y, g0);
    ck_assert(s0.nll == s1.nll);
    double scale = (double)NB / NDATA;
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(tu_close((double)g1[i] - g0[i], scale * dkl[i], 2e-6, 1e-4),
                      "%s %zu: KL gradient %.9g, reference %.9g", i < P ? "mu" : "rho", i % P,
                      (double)g1[i] - g0[i], scale * dkl[i]);

    /* Three threads: the same bits. */
    ck_assert_int_eq(bnn_optimizer_set_kl_weight(t.o, 1.0f), BNN_OK);
    ck_assert_int_eq(bnn_optimizer_set_threads(t.o, 3), BNN_OK);
    bnn_svi_stats s3 = grad(&t, x, y, g3);
    ck_assert(s3.loss == s1.loss && s3.kl == s1.kl);
    ck_assert(memcmp(g3, g1, n * sizeof *g1) == 0);

    free(x);
    free(g1);
    free(g0);
    free(g3);
    free(dkl);
    net_free(&t);
}
END_TEST

/* ---- the Monte Carlo KL ---------------------------------------------------- */

/* A mixture prior on the first layer, a Normal one on the second, the
 * model's (another Normal) on the third: the Monte Carlo KL of a weight
 * sampling step is log q(w) - log p(w) at the step's draw w = mu + sigma
 * eps, each weight under its layer's prior (eps regenerated from the
 * documented stream). */
START_TEST(test_mc_kl_at_draw)
{
    static const size_t units[] = {6, 5, 3};
    static const lprior pr[] = {MIXTURE(0.3, 1.5, 0.1), NORMAL(0.6), INHERIT};
    net t;
    net_model(&t, 4, units, 3, pr, (lprior)NORMAL(2.0));
    net_train(&t, NULL, BNN_EST_WEIGHT_SAMPLING, BNN_KL_MONTE_CARLO);
    size_t P = t.P;
    const float *params = bnn_guide_params(t.g, NULL);
    float x[NB * 4], *e = malloc(P * sizeof *e);
    ck_assert_ptr_nonnull(e);
    int32_t y[NB];
    batch(&t, 1, x, y);
    rng_normal_fill(11, rng_stream_id(0, 0, 0, RNG_WEIGHTS), 0, P, e);
    double kl = 0.0;
    for (size_t i = 0; i < P; i++) {
        double s = softplus(params[P + i]), w = params[i] + s * e[i];
        kl += -log(s) - 0.5 * (double)e[i] * e[i] - log_prior(prior_of(&t, i), w);
    }
    bnn_svi_stats st = grad(&t, x, y, NULL);
    tu_assert_close(st.kl, kl, 1e-4, 1e-5);
    free(e);
    net_free(&t);
}
END_TEST

/* ---- finite differences ------------------------------------------------------ */

static double loss_at(net *t, const float *x, const int32_t *y)
{
    bnn_svi_stats s;
    bnn_svi_stats_init(&s);
    ck_assert_int_eq(bnn_svi_grad(t->o, x, y, NULL, NB, &s), BNN_OK);
    return s.loss;
}

/* Every mu and rho of a 3-4-3 net: central differences (Richardson) of
 * the whole negative ELBO, noise held fixed, with a scale mixture on one
 * layer and a Normal prior on the other.  Loop: estimator (_i % 3); _i /
 * 3 = 0: the mixture is the first layer's own and the second layer
 * inherits the model's N(0, 0.6); 1: the first layer inherits the model's
 * mixture, the second has its own N(0, 0.6). */
START_TEST(test_grad_fd_mixed_priors)
{
    static const size_t units[] = {4, 3};
    const lprior mix = MIXTURE(0.3, 1.5, 0.1), nrm = NORMAL(0.6), inh = INHERIT;
    lprior pr[2], mp;
    if (_i / 3 == 0)
        pr[0] = mix, pr[1] = inh, mp = nrm;
    else
        pr[0] = inh, pr[1] = nrm, mp = mix;
    net t;
    net_model(&t, 3, units, 2, pr, mp);
    ck_assert_int_eq(t.prior[0].kind, BNN_PRIOR_SCALE_MIXTURE);
    ck_assert_int_eq(t.prior[1].kind, BNN_PRIOR_NORMAL);
    net_train(&t, NULL, (bnn_estimator)(_i % 3), BNN_KL_MONTE_CARLO);
    float x[NB * 3];
    int32_t y[NB];
    batch(&t, 2, x, y);
    size_t np;
    float *p = bnn_guide_params(t.g, &np);
    float *analytic = malloc(np * sizeof *analytic);
    ck_assert_ptr_nonnull(analytic);
    (void)loss_at(&t, x, y);
    memcpy(analytic, bnn_guide_grads(t.g, NULL), np * sizeof *analytic);
    for (size_t i = 0; i < np; i++) {
        float keep = p[i];
        double d[2];
        for (int k = 0; k < 2; k++) {
            float h = (k ? 4e-3f : 8e-3f) * fmaxf(1.0f, fabsf(keep));
            p[i] = keep + h;
            double lp = loss_at(&t, x, y);
            p[i] = keep - h;
            double lm = loss_at(&t, x, y);
            d[k] = (lp - lm) / (2.0 * (double)h);
        }
        p[i] = keep;
        double fd = (4.0 * d[1] - d[0]) / 3.0;
        ck_assert_msg(tu_close(analytic[i], fd, 2e-3, 2e-2),
                      "param %zu (%s): analytic %.6g vs finite difference %.6g (case %d)", i,
                      i < np / 2 ? "mu" : "rho", (double)analytic[i], fd, _i);
    }
    free(analytic);
    net_free(&t);
}
END_TEST

/* ---- one layer's prior changes ------------------------------------------------ */

/* Two nets, the same but for the middle layer's Normal sigma (0.8 and
 * 0.3), with the same parameters, seed and batch: the NLL is the same
 * bits, every gradient outside the middle layer too, and the KL, the KL
 * term and the middle layer's gradient move by exactly that layer's
 * change (analytic: log(p'/p) + (s^2 + mu^2) (1/p'^2 - 1/p^2) / 2 per
 * weight; Monte Carlo at the same draw w: log(p'/p) + w^2 (1/p'^2 -
 * 1/p^2) / 2).  Loop: 0 analytic KL (local reparameterization), 1 Monte
 * Carlo KL (weight sampling). */
START_TEST(test_decomposition_one_layer_changes)
{
    static const size_t units[] = {6, 5, 3};
    const double pa = 0.8, pb = 0.3;
    const lprior ra[] = {NORMAL(1.1), NORMAL(pa), INHERIT};
    const lprior rb[] = {NORMAL(1.1), NORMAL(pb), INHERIT};
    int mc = _i;
    bnn_estimator est = mc ? BNN_EST_WEIGHT_SAMPLING : BNN_EST_LOCAL_REPARAM;
    bnn_kl_mode klm = mc ? BNN_KL_MONTE_CARLO : BNN_KL_ANALYTIC;
    net a, b;
    net_model(&a, 4, units, 3, ra, (lprior)NORMAL(1.0));
    net_model(&b, 4, units, 3, rb, (lprior)NORMAL(1.0));
    net_train(&a, NULL, est, klm);
    net_train(&b, NULL, est, klm);
    size_t n, P = a.P;
    float *params = bnn_guide_params(a.g, &n);
    memcpy(bnn_guide_params(b.g, NULL), params, n * sizeof *params);
    float x[NB * 4], *ga = malloc(n * sizeof *ga), *gb = malloc(n * sizeof *gb),
          *e = malloc(P * sizeof *e);
    ck_assert(ga && gb && e);
    int32_t y[NB];
    batch(&a, 3, x, y);
    bnn_svi_stats sa = grad(&a, x, y, ga), sb = grad(&b, x, y, gb);
    ck_assert(sa.nll == sb.nll);

    rng_normal_fill(11, rng_stream_id(0, 0, 0, RNG_WEIGHTS), 0, P, e);
    double c = 1.0 / (pb * pb) - 1.0 / (pa * pa), scale = (double)NB / NDATA, dkl = 0.0;
    for (size_t i = 0; i < P; i++) {
        double mu = params[i], rho = params[P + i], s = softplus(rho);
        double dmu = 0.0, drho = 0.0;
        if (i >= a.end[0] && i < a.end[1]) {
            if (mc) {
                double w = mu + s * e[i];
                dkl += log(pb / pa) + 0.5 * w * w * c;
                dmu = w * c;
                drho = w * c * e[i] / (1.0 + exp(-rho));
            } else {
                dkl += log(pb / pa) + 0.5 * (s * s + mu * mu) * c;
                dmu = mu * c;
                drho = s * c / (1.0 + exp(-rho));
            }
            ck_assert_msg(tu_close((double)gb[i] - ga[i], scale * dmu, 2e-6, 1e-4),
                          "mu %zu moved by %.9g, expected %.9g", i, (double)gb[i] - ga[i],
                          scale * dmu);
            ck_assert_msg(tu_close((double)gb[P + i] - ga[P + i], scale * drho, 2e-6, 1e-4),
                          "rho %zu moved by %.9g, expected %.9g", i,
                          (double)gb[P + i] - ga[P + i], scale * drho);
        } else {
            ck_assert_msg(ga[i] == gb[i] && ga[P + i] == gb[P + i],
                          "parameter %zu outside the layer moved", i);
        }
    }
    tu_assert_close(sb.kl - sa.kl, dkl, 1e-4, 1e-4);
    tu_assert_close(sb.kl_term - sa.kl_term, scale * dkl, 1e-4, 1e-4);
    tu_assert_close(sb.loss - sa.loss, scale * dkl, 1e-4, 1e-4);
    free(ga);
    free(gb);
    free(e);
    net_free(&a);
    net_free(&b);
}
END_TEST

/* ---- IVON --------------------------------------------------------------------- */

/* Layers with N(0, 0.5) and N(0, 2): each layer's delta is kl_weight /
 * (p_l^2 lambda), every parameter's sigma after a step is 1 / sqrt(lambda
 * (h + delta_l)) with its layer's delta, the reported KL is the analytic
 * one with each layer's p, and bnn_optimizer_set_kl_weight scales every
 * delta. */
START_TEST(test_ivon_delta_per_layer)
{
    static const size_t units[] = {6, 3};
    static const lprior pr[] = {NORMAL(0.5), INHERIT};
    net t;
    net_model(&t, 4, units, 2, pr, (lprior)NORMAL(2.0));
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.kind = BNN_OPT_IVON;
    oc.lr = 0.1f;
    oc.ivon_hess_init = 0.05f; /* delta comparable to h */
    net_train(&t, &oc, BNN_EST_WEIGHT_SAMPLING, BNN_KL_ANALYTIC);
    const double lam = NDATA;
    ck_assert_uint_eq(t.o->n_seg, 2);
    tu_assert_close(t.o->ivon_delta[0], 1.0 / (0.25 * lam), 0, 1e-6);
    tu_assert_close(t.o->ivon_delta[1], 1.0 / (4.0 * lam), 0, 1e-6);
    for (size_t i = 0; i < t.P; i += 7)
        tu_assert_close(optim_ivon_delta_at(t.m, i, 0.5f, (float)lam),
                        0.5 / (prior_of(&t, i)->sigma * prior_of(&t, i)->sigma * lam), 0, 1e-6);

    float x[NB * 4];
    int32_t y[NB];
    size_t P = t.P;
    const float *params = bnn_guide_params(t.g, NULL);
    for (unsigned k = 0; k < 3; k++) {
        float w = k == 2 ? 0.5f : 1.0f;
        ck_assert_int_eq(bnn_optimizer_set_kl_weight(t.o, w), BNN_OK);
        /* The posterior this step starts from: sigma from h and delta_l. */
        const float *h = t.o->m + P;
        double kl = 0.0;
        for (size_t i = 0; i < P; i++) {
            double p = prior_of(&t, i)->sigma, d = w / (p * p * lam);
            double s2 = 1.0 / (lam * ((double)h[i] + d)), mu = params[i];
            kl += 0.5 * log(p * p / s2) + (s2 + mu * mu) / (2.0 * p * p) - 0.5;
        }
        batch(&t, 4 + k, x, y);
        bnn_svi_stats st;
        bnn_svi_stats_init(&st);
        ck_assert_int_eq(bnn_svi_step(t.o, x, y, NULL, NB, &st), BNN_OK);
        tu_assert_close(st.kl, kl, 1e-5, 1e-5);
        for (size_t i = 0; i < P; i++) {
            double p = prior_of(&t, i)->sigma, d = w / (p * p * lam);
            double sigma = 1.0 / sqrt(lam * ((double)h[i] + d));
            ck_assert_msg(tu_close(softplus(params[P + i]), sigma, 0, 2e-5),
                          "sigma %zu = %.7g, expected %.7g (h %.6g, delta %.6g)", i,
                          softplus(params[P + i]), sigma, (double)h[i], d);
        }
    }
    tu_assert_close(t.o->ivon_delta[0], 0.5 / (0.25 * lam), 0, 1e-6);
    tu_assert_close(t.o->ivon_delta[1], 0.5 / (4.0 * lam), 0, 1e-6);
    net_free(&t);
}
END_TEST

/* A file keeps each layer's prior: an IVON optimizer saved after two
 * steps loads with the same per-layer deltas and takes the same third
 * step, bit for bit.  The loader checks each Hessian estimate against its
 * own layer's delta: h = -delta_0 / 2 in the first layer (prior N(0,
 * 0.25^2), a large delta) loads although it is below the model prior's
 * -delta, and h = -1.5 delta_0 is refused. */
START_TEST(test_ivon_file_keeps_layer_priors)
{
    static const size_t units[] = {6, 3};
    static const lprior pr[] = {NORMAL(0.25), INHERIT};
    net t;
    net_model(&t, 4, units, 2, pr, (lprior)NORMAL(3.0));
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.kind = BNN_OPT_IVON;
    oc.lr = 0.1f;
    net_train(&t, &oc, BNN_EST_WEIGHT_SAMPLING, BNN_KL_ANALYTIC);
    float x[NB * 4];
    int32_t y[NB];
    for (unsigned k = 0; k < 2; k++) {
        batch(&t, 10 + k, x, y);
        ck_assert_int_eq(bnn_svi_step(t.o, x, y, NULL, NB, NULL), BNN_OK);
    }
    size_t P = t.P;
    float d0 = t.o->ivon_delta[0];
    ck_assert(d0 > 100.0f * t.o->ivon_delta[1]); /* (3 / 0.25)^2 = 144 */
    t.o->m[P + 2] = -0.5f * d0;
    size_t size = 0, wr = 0;
    ck_assert_int_eq(bnn_save_size(t.g, t.o, &size), BNN_OK);
    unsigned char *buf = malloc(size);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(bnn_save_to_memory(t.g, t.o, buf, size, &wr), BNN_OK);
    net u;
    memset(&u, 0, sizeof u);
    ck_assert_int_eq(bnn_load_from_memory(buf, size, NULL, &u.m, &u.g, &u.o), BNN_OK);
    ck_assert_uint_eq(u.o->n_seg, 2);
    ck_assert(u.o->ivon_delta[0] == t.o->ivon_delta[0]);
    ck_assert(u.o->ivon_delta[1] == t.o->ivon_delta[1]);
    batch(&t, 12, x, y);
    ck_assert_int_eq(bnn_svi_step(t.o, x, y, NULL, NB, NULL), BNN_OK);
    ck_assert_int_eq(bnn_svi_step(u.o, x, y, NULL, NB, NULL), BNN_OK);
    size_t n;
    const float *pt = bnn_guide_params(t.g, &n), *pu = bnn_guide_params(u.g, NULL);
    ck_assert(memcmp(pt, pu, n * sizeof *pt) == 0);
    ck_assert(memcmp(t.o->m, u.o->m, 2 * P * sizeof(float)) == 0);
    net_free(&u);

    t.o->m[P + 2] = -1.5f * t.o->ivon_delta[0];
    ck_assert_int_eq(bnn_save_to_memory(t.g, t.o, buf, size, &wr), BNN_OK);
    bnn_model *m = (bnn_model *)0x1;
    ck_assert_int_eq(bnn_load_from_memory(buf, size, NULL, &m, &u.g, &u.o), BNN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "Hessian estimate 2"));
    ck_assert_ptr_eq(m, (bnn_model *)0x1);
    free(buf);
    net_free(&t);
}
END_TEST

/* IVON refuses a scale mixture on any layer, naming it, and the analytic
 * KL likewise; a model-wide mixture that every layer overrides with a
 * Normal prior is accepted by both. */
START_TEST(test_refusals)
{
    static const size_t units[] = {5, 3};
    bnn_optimizer_config ivon;
    bnn_optimizer_config_init(&ivon);
    ivon.kind = BNN_OPT_IVON;
    bnn_svi_config sc = tu_svi(NDATA);
    sc.estimator = BNN_EST_WEIGHT_SAMPLING;
    const lprior mixed[] = {NORMAL(0.5), MIXTURE(0.5, 1.0, 0.05)};
    net t;
    net_model(&t, 4, units, 2, mixed, (lprior)NORMAL(1.0));
    bnn_optimizer *o = (bnn_optimizer *)0x1;
    ck_assert_int_eq(bnn_optimizer_create(t.g, NULL, &sc, &o), BNN_E_INVALID);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "weight layer 1"));
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "BNN_KL_MONTE_CARLO"));
    ck_assert_ptr_eq(o, (bnn_optimizer *)0x1);
    sc.kl_mode = BNN_KL_MONTE_CARLO;
    ck_assert_int_eq(bnn_optimizer_create(t.g, &ivon, &sc, &o), BNN_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "weight layer 1"));
    ck_assert_ptr_eq(o, (bnn_optimizer *)0x1);
    ck_assert(isinf(optim_ivon_delta_at(t.m, t.P - 1, 1.0f, 10.0f)));
    ck_assert_int_eq(bnn_optimizer_create(t.g, NULL, &sc, &o), BNN_OK);
    bnn_optimizer_free(o);
    net_free(&t);

    const lprior normal[] = {NORMAL(0.5), NORMAL(0.7)};
    net_model(&t, 4, units, 2, normal, (lprior)MIXTURE(0.5, 1.0, 0.05));
    sc.kl_mode = BNN_KL_ANALYTIC;
    ck_assert_int_eq(bnn_optimizer_create(t.g, &ivon, &sc, &o), BNN_OK);
    bnn_optimizer_free(o);
    ck_assert_int_eq(bnn_optimizer_create(t.g, NULL, &sc, &o), BNN_OK);
    bnn_optimizer_free(o);
    net_free(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("layer_prior");
    TCase *tc = tcase_create("layer_prior");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_analytic_kl_per_layer, 0, 4);
    tcase_add_test(tc, test_mc_kl_at_draw);
    tcase_add_loop_test(tc, test_grad_fd_mixed_priors, 0, 6);
    tcase_add_loop_test(tc, test_decomposition_one_layer_changes, 0, 2);
    tcase_add_test(tc, test_ivon_delta_per_layer);
    tcase_add_test(tc, test_ivon_file_keeps_layer_priors);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
