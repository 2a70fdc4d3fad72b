/* Training Bayesian convolutional networks: the forward pass against a
 * direct double-precision convolution, whole-ELBO gradients against finite
 * differences, learning a small image task, determinism across thread
 * counts, and what creation refuses or survives. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "internal.h"
#include "testutil.h"

/* A layer of a test network, described once for the library and for the
 * reference below. */
typedef struct tlayer {
    int conv;
    size_t units, kh, kw, sh, sw, ph, pw;
    int pool; /* 0, 1 max, 2 average */
    bnn_activation act;
} tlayer;

typedef struct tnet {
    size_t h, w, c; /* input */
    size_t n;
    const tlayer *l;
} tnet;

/* 7 x 6 x 2 input; conv 3x3 -> 3 (pad 1, tanh), max pool -> 3 x 3 x 3
 * (floor drops a row); conv 2x3 -> 4 (stride 2, pad 1, tanh) -> 2 x 2 x 4,
 * average pool -> 1 x 1 x 4; dense 5 (identity); dense 3. */
static const tlayer small_layers[] = {
    {1, 3, 3, 3, 1, 1, 1, 1, 1, BNN_ACT_TANH},
    {1, 4, 2, 3, 2, 2, 1, 1, 2, BNN_ACT_TANH},
    {0, 5, 1, 1, 1, 1, 0, 0, 0, BNN_ACT_IDENTITY},
    {0, 3, 1, 1, 1, 1, 0, 0, 0, BNN_ACT_INHERIT},
};
static const tnet small_net = {7, 6, 2, 4, small_layers};

/* Shapes of layer l: input h x w x c, pre-activation oh x ow x units,
 * output after pooling ph x pw x units (dense: 1 x 1). */
typedef struct tshape {
    size_t ih, iw, ic, oh, ow, oc, qh, qw, k;
} tshape;

static void shapes(const tnet *t, tshape *s)
{
    size_t h = t->h, w = t->w, c = t->c;
    for (size_t l = 0; l < t->n; l++) {
        const tlayer *y = &t->l[l];
        tshape *q = &s[l];
        if (!y->conv) {
            c = h * w * c;
            h = w = 1;
        }
        q->ih = h, q->iw = w, q->ic = c;
        q->oh = y->conv ? (h + 2 * y->ph - y->kh) / y->sh + 1 : 1;
        q->ow = y->conv ? (w + 2 * y->pw - y->kw) / y->sw + 1 : 1;
        q->oc = y->units;
        q->qh = y->pool ? q->oh / 2 : q->oh;
        q->qw = y->pool ? q->ow / 2 : q->ow;
        q->k = y->kh * y->kw * c;
        h = q->qh, w = q->qw, c = q->oc;
    }
}

static bnn_model *make_model(const tnet *t, bnn_likelihood lik, bnn_prior prior,
                             bnn_activation dflt, const bnn_allocator *al)
{
    bnn_layer_spec s[16];
    size_t n = 0;
    for (size_t l = 0; l < t->n; l++) {
        const tlayer *y = &t->l[l];
        if (!y->conv && l > 0 && t->l[l - 1].conv) {
            bnn_layer_spec_init(&s[n]);
            s[n++].kind = BNN_LAYER_FLATTEN;
        }
        bnn_layer_spec_init(&s[n]);
        s[n].kind = y->conv ? BNN_LAYER_CONV2D : BNN_LAYER_DENSE;
        s[n].units = y->units;
        if (y->conv) {
            s[n].kernel_h = y->kh, s[n].kernel_w = y->kw;
            s[n].stride_h = y->sh, s[n].stride_w = y->sw;
            s[n].pad_h = y->ph, s[n].pad_w = y->pw;
        }
        s[n++].activation = y->act;
        if (y->pool) {
            bnn_layer_spec_init(&s[n]);
            s[n++].kind = y->pool == 1 ? BNN_LAYER_MAXPOOL2 : BNN_LAYER_AVGPOOL2;
        }
    }
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_layers = n;
    mc.layers = s;
    mc.input_height = t->h, mc.input_width = t->w, mc.input_channels = t->c;
    mc.activation = dflt;
    mc.likelihood = lik;
    mc.noise_sigma = 0.7f;
    mc.prior = prior;
    mc.prior_sigma = 0.8f;
    mc.prior_pi = 0.3f;
    mc.prior_sigma1 = 1.5f;
    mc.prior_sigma2 = 0.1f;
    mc.allocator = al;
    bnn_model *m = NULL;
    ck_assert_int_eq(bnn_model_create(&mc, &m), BNN_OK);
    return m;
}

typedef struct net {
    bnn_model *m;
    bnn_guide *g;
    bnn_optimizer *o;
} net;

static void net_make(net *t, const tnet *d, bnn_prior prior, bnn_estimator est, bnn_kl_mode kl,
                     bnn_optimizer_kind kind, size_t max_batch, size_t threads,
                     float init_sigma)
{
    t->m = make_model(d, BNN_LIK_CATEGORICAL, prior, BNN_ACT_RELU, NULL);
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.init_sigma = init_sigma;
    gc.seed = 7;
    ck_assert_int_eq(bnn_guide_create(t->m, &gc, &t->g), BNN_OK);
    bnn_svi_config sc = tu_svi(50);
    sc.estimator = est;
    sc.kl_mode = kl;
    sc.max_batch = max_batch;
    sc.num_threads = threads;
    sc.seed = 11;
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.kind = kind;
    ck_assert_int_eq(bnn_optimizer_create(t->g, &oc, &sc, &t->o), BNN_OK);
}

static void net_free(net *t)
{
    bnn_optimizer_free(t->o);
    bnn_guide_free(t->g);
    bnn_model_free(t->m);
}

/* ---- reference forward, double precision --------------------------------- */

static double act_apply(bnn_activation a, double v)
{
    if (a == BNN_ACT_RELU)
        return v > 0.0 ? v : 0.0;
    if (a == BNN_ACT_TANH)
        return tanh(v);
    return v;
}

/* Layer l of one example: pre = conv(x; w, b) by six nested loops over
 * output row, column and channel and kernel row, column and channel, then
 * the activation and pooling into post.  w is out x (kh kw c) [o][ky][kx][c]. */
static void ref_layer(const tlayer *y, const tshape *s, const double *w, const double *b,
                      const double *x, double *pre, double *post, bnn_activation act)
{
    size_t kh = y->conv ? y->kh : 1, kw = y->conv ? y->kw : 1;
    for (size_t oy = 0; oy < s->oh; oy++)
        for (size_t ox = 0; ox < s->ow; ox++)
            for (size_t o = 0; o < s->oc; o++) {
                double v = b[o];
                for (size_t ky = 0; ky < kh; ky++)
                    for (size_t kx = 0; kx < kw; kx++)
                        for (size_t c = 0; c < s->ic; c++) {
                            long iy = (long)(oy * y->sh + ky) - (long)y->ph;
                            long ix = (long)(ox * y->sw + kx) - (long)y->pw;
                            if (iy < 0 || ix < 0 || iy >= (long)s->ih || ix >= (long)s->iw)
                                continue;
                            v += w[((o * kh + ky) * kw + kx) * s->ic + c] *
                                 x[((size_t)iy * s->iw + (size_t)ix) * s->ic + c];
                        }
                pre[(oy * s->ow + ox) * s->oc + o] = v;
            }
    if (!post)
        return;
    for (size_t qy = 0; qy < s->qh; qy++)
        for (size_t qx = 0; qx < s->qw; qx++)
            for (size_t o = 0; o < s->oc; o++) {
                double r;
                if (!y->pool) {
                    r = act_apply(act, pre[(qy * s->ow + qx) * s->oc + o]);
                } else {
                    double e[4];
                    for (int d = 0; d < 4; d++)
                        e[d] = act_apply(act, pre[((2 * qy + (size_t)d / 2) * s->ow + 2 * qx +
                                                   (size_t)d % 2) * s->oc + o]);
                    r = y->pool == 1 ? fmax(fmax(e[0], e[1]), fmax(e[2], e[3]))
                                     : (e[0] + e[1] + e[2] + e[3]) / 4.0;
                }
                post[(qy * s->qw + qx) * s->oc + o] = r;
            }
}

/* The resolved activation of layer l of d (INHERIT: relu, the models'
 * default here; the last layer none). */
static bnn_activation resolved(const tnet *d, size_t l)
{
    if (l + 1 == d->n)
        return BNN_ACT_IDENTITY;
    return d->l[l].act == BNN_ACT_INHERIT ? BNN_ACT_RELU : d->l[l].act;
}

/* Forward of weight sampling (flip 0: the draw in ws.wsamp) or flipout
 * (flip 1: mu + delta o (s_out s_in^T) per example, signs read back from
 * position 0 of the workspace) against the reference, for every layer's
 * pre-activation and output. */
static void check_forward(bnn_estimator est)
{
    const tnet *d = &small_net;
    tshape s[4];
    shapes(d, s);
    net t;
    enum { N = 3 };
    net_make(&t, d, BNN_PRIOR_NORMAL, est, BNN_KL_ANALYTIC, BNN_OPT_ADAM, N, 1, 0.3f);
    size_t in = d->h * d->w * d->c;
    float x[N * 7 * 6 * 2];
    int32_t y[N] = {0, 2, 1};
    tu_rng r = {5};
    tu_fill_uniform(&r, x, N * in, -1.5f, 1.5f);
    bnn_svi_stats st;
    bnn_svi_stats_init(&st);
    ck_assert_int_eq(bnn_svi_grad(t.o, x, y, NULL, N, &st), BNN_OK);
    const struct svi_ws *ws = &t.o->ws;
    const float *mu = bnn_guide_params(t.g, NULL);
    double nll = 0.0;
    for (size_t i = 0; i < N; i++) {
        double a[2][512];
        for (size_t j = 0; j < in; j++)
            a[0][j] = x[i * in + j];
        size_t off = 0;
        for (size_t l = 0; l < d->n; l++) {
            size_t K = s[l].k, O = s[l].oc;
            size_t npre = s[l].oh * s[l].ow * O, nout = s[l].qh * s[l].qw * O;
            size_t win = s[l].ih * s[l].iw * s[l].ic;
            double *w = malloc((K + 1) * O * sizeof *w);
            for (size_t o = 0; o < O; o++)
                for (size_t k = 0; k <= K; k++) {
                    size_t p = k < K ? off + o * K + k : off + O * K + o;
                    if (est == BNN_EST_WEIGHT_SAMPLING) {
                        w[k < K ? o * K + k : O * K + o] = ws->wsamp[p];
                    } else {
                        double so = ws->layer[l].eps[i * npre + o];
                        double si = k < K ? ws->layer[l].s_in[i * win + k % s[l].ic] : 1.0;
                        w[k < K ? o * K + k : O * K + o] = mu[p] + ws->wsamp[p] * so * si;
                    }
                }
            off += (K + 1) * O;
            double pre[512], post[512];
            int last = l + 1 == d->n;
            ref_layer(&d->l[l], &s[l], w, w + O * K, a[0], pre, last ? NULL : post,
                      resolved(d, l));
            free(w);
            for (size_t j = 0; j < npre; j++)
                tu_assert_close(ws->layer[l].pre[i * npre + j], pre[j], 1e-5, 1e-5);
            if (last) {
                double mx = pre[0], z = 0.0;
                for (size_t j = 1; j < O; j++)
                    mx = fmax(mx, pre[j]);
                for (size_t j = 0; j < O; j++)
                    z += exp(pre[j] - mx);
                nll += mx + log(z) - pre[y[i]];
                break;
            }
            for (size_t j = 0; j < nout; j++)
                tu_assert_close(ws->layer[l].post[i * nout + j], post[j], 1e-5, 1e-5);
            memcpy(a[0], post, nout * sizeof post[0]);
        }
        ck_assert_uint_eq(off, bnn_model_param_count(t.m));
    }
    tu_assert_close(st.nll, nll, 1e-5, 1e-5);
    net_free(&t);
}

START_TEST(test_forward_reference)
{
    check_forward(_i ? BNN_EST_FLIPOUT : BNN_EST_WEIGHT_SAMPLING);
}
END_TEST

/* Flipout's signs are per example and channel: the same at every position. */
START_TEST(test_flipout_signs_per_channel)
{
    const tnet *d = &small_net;
    tshape s[4];
    shapes(d, s);
    net t;
    enum { N = 4 };
    net_make(&t, d, BNN_PRIOR_NORMAL, BNN_EST_FLIPOUT, BNN_KL_ANALYTIC, BNN_OPT_ADAM, N, 1, 0.3f);
    float x[N * 84];
    int32_t y[N] = {0, 1, 2, 0};
    tu_rng r = {9};
    tu_fill_uniform(&r, x, N * 84, -1, 1);
    ck_assert_int_eq(bnn_svi_grad(t.o, x, y, NULL, N, NULL), BNN_OK);
    for (size_t l = 0; l < 2; l++) {
        const struct svi_layer_ws *lw = &t.o->ws.layer[l];
        size_t win = s[l].ih * s[l].iw * s[l].ic, npre = s[l].oh * s[l].ow * s[l].oc;
        int differ = 0;
        for (size_t i = 0; i < N; i++) {
            for (size_t j = 0; j < win; j++) {
                float v = lw->s_in[i * win + j];
                ck_assert(v == 1.0f || v == -1.0f);
                ck_assert(v == lw->s_in[i * win + j % s[l].ic]);
            }
            for (size_t j = 0; j < npre; j++)
                ck_assert(lw->eps[i * npre + j] == lw->eps[i * npre + j % s[l].oc]);
            for (size_t c = 0; c < s[l].ic; c++)
                differ |= lw->s_in[i * win + c] != lw->s_in[c];
        }
        ck_assert(differ); /* examples get their own signs */
    }
    net_free(&t);
}
END_TEST

/* ---- gradients -------------------------------------------------------------- */

static double loss_at(net *t, const float *x, const int32_t *y, size_t n)
{
    bnn_svi_stats s = {.struct_size = sizeof s};
    ck_assert_int_eq(bnn_svi_grad(t->o, x, y, NULL, n, &s), BNN_OK);
    return s.loss;
}

/* Every mu and rho: Richardson-extrapolated central differences of the
 * whole negative ELBO, noise fixed (the step counter does not move). */
static void grad_check(bnn_estimator est, bnn_prior prior, bnn_kl_mode kl)
{
    net t;
    net_make(&t, &small_net, prior, est, kl, BNN_OPT_ADAM, 8, 1, 0.3f);
    enum { N = 4 };
    float x[N * 84];
    int32_t y[N] = {0, 2, 1, 1};
    tu_rng r = {42};
    tu_fill_uniform(&r, x, N * 84, -1.5f, 1.5f);
    size_t np;
    float *p = bnn_guide_params(t.g, &np);
    const float *gr = bnn_guide_grads(t.g, NULL);
    (void)loss_at(&t, x, y, N);
    float *analytic = malloc(np * sizeof *analytic);
    memcpy(analytic, gr, np * sizeof *analytic);
    for (size_t i = 0; i < np; i++) {
        float keep = p[i];
        double dd[2];
        for (int k = 0; k < 2; k++) {
            float h = (k ? 2e-3f : 4e-3f) * fmaxf(1.0f, fabsf(keep));
            p[i] = keep + h;
            double lp = loss_at(&t, x, y, N);
            p[i] = keep - h;
            double lm = loss_at(&t, x, y, N);
            dd[k] = (lp - lm) / (2.0 * (double)h);
        }
        p[i] = keep;
        double fd = (4.0 * dd[1] - dd[0]) / 3.0;
        ck_assert_msg(tu_close(analytic[i], fd, 2e-3, 2e-2),
                      "param %zu of %zu (%s): analytic %.6g vs finite difference %.6g "
                      "(est %d prior %d kl %d)",
                      i, np / 2, i < np / 2 ? "mu" : "rho", (double)analytic[i], fd, est, prior,
                      kl);
    }
    free(analytic);
    net_free(&t);
}

START_TEST(test_grad_finite_differences)
{
    static const struct {
        bnn_estimator est;
        bnn_prior prior;
        bnn_kl_mode kl;
    } c[] = {{BNN_EST_WEIGHT_SAMPLING, BNN_PRIOR_NORMAL, BNN_KL_ANALYTIC},
             {BNN_EST_WEIGHT_SAMPLING, BNN_PRIOR_SCALE_MIXTURE, BNN_KL_MONTE_CARLO},
             {BNN_EST_FLIPOUT, BNN_PRIOR_NORMAL, BNN_KL_ANALYTIC},
             {BNN_EST_FLIPOUT, BNN_PRIOR_SCALE_MIXTURE, BNN_KL_MONTE_CARLO}};
    grad_check(c[_i].est, c[_i].prior, c[_i].kl);
}
END_TEST

/* The gradients of two parts of a batch add up to the whole batch's: the
 * noise of an example depends on its index in the batch, not the part. */
START_TEST(test_grad_parts_sum)
{
    bnn_estimator est = _i ? BNN_EST_FLIPOUT : BNN_EST_WEIGHT_SAMPLING;
    net whole, part;
    net_make(&whole, &small_net, BNN_PRIOR_NORMAL, est, BNN_KL_ANALYTIC, BNN_OPT_ADAM, 6, 1,
             0.3f);
    net_make(&part, &small_net, BNN_PRIOR_NORMAL, est, BNN_KL_ANALYTIC, BNN_OPT_ADAM, 6, 1,
             0.3f);
    float x[6 * 84];
    int32_t y[6] = {0, 1, 2, 2, 1, 0};
    tu_rng r = {8};
    tu_fill_uniform(&r, x, 6 * 84, -1, 1);
    size_t np;
    bnn_svi_stats sw = {.struct_size = sizeof sw}, s1 = sw, s2 = sw;
    ck_assert_int_eq(bnn_svi_grad(whole.o, x, y, NULL, 6, &sw), BNN_OK);
    const float *gw = bnn_guide_grads(whole.g, &np);
    float *sum = calloc(np, sizeof *sum);
    ck_assert_int_eq(bnn_svi_grad_part(part.o, x, y, NULL, 2, 0, 6, &s1), BNN_OK);
    const float *gp = bnn_guide_grads(part.g, NULL);
    for (size_t i = 0; i < np; i++)
        sum[i] += gp[i];
    ck_assert_int_eq(bnn_svi_grad_part(part.o, x + 2 * 84, y + 2, NULL, 4, 2, 6, &s2), BNN_OK);
    for (size_t i = 0; i < np; i++)
        sum[i] += gp[i];
    for (size_t i = 0; i < np; i++)
        tu_assert_close(sum[i], gw[i], 1e-5, 1e-4);
    tu_assert_close(s1.loss + s2.loss, sw.loss, 1e-5, 1e-5);
    free(sum);
    net_free(&whole);
    net_free(&part);
}
END_TEST

/* ---- learning ----------------------------------------------------------------- */

/* 8 x 8 images: a horizontal bar (class 0), a vertical bar (1) or a 2 x 2
 * block (2) of brightness 1 at a random place, plus uniform noise in
 * [0, 0.5).  No pixel alone tells the classes apart. */
static void bars(tu_rng *r, size_t n, float *x, int32_t *y)
{
    for (size_t i = 0; i < n; i++) {
        float *im = x + i * 64;
        tu_fill_uniform(r, im, 64, 0.0f, 0.5f);
        int c = (int)(tu_next(r) % 3);
        size_t a = tu_next(r) % 5, b = tu_next(r) % 7;
        for (size_t k = 0; k < 4; k++) {
            if (c == 0)
                im[b * 8 + a + k] += 1.0f;
            else if (c == 1)
                im[(a + k) * 8 + b] += 1.0f;
            else
                im[(b / 2 + k / 2 + 1) * 8 + a + k % 2 + 1] += 1.0f;
        }
        y[i] = c;
    }
}

/* A small CNN learns the bars with Adam (weight sampling and flipout) and
 * IVON: on fresh images its mean NLL ends far below log 3, the uniform
 * prediction's (the best a model that cannot tell the classes apart can do
 * on balanced classes), and its accuracy under one weight draw above 90%. */
START_TEST(test_learns_bars)
{
    static const tlayer layers[] = {
        {1, 6, 3, 3, 1, 1, 1, 1, 1, BNN_ACT_RELU},
        {0, 3, 1, 1, 1, 1, 0, 0, 0, BNN_ACT_INHERIT},
    };
    static const tnet d = {8, 8, 1, 2, layers};
    enum { B = 32, STEPS = 300, NT = 300 };
    bnn_model *m = make_model(&d, BNN_LIK_CATEGORICAL, BNN_PRIOR_NORMAL, BNN_ACT_RELU, NULL);
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.seed = 3;
    bnn_guide *g = NULL;
    ck_assert_int_eq(bnn_guide_create(m, &gc, &g), BNN_OK);
    bnn_svi_config sc = tu_svi(B * STEPS);
    sc.estimator = _i == 1 ? BNN_EST_FLIPOUT : BNN_EST_WEIGHT_SAMPLING;
    sc.max_batch = NT;
    sc.seed = 4;
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.lr = 0.01f;
    if (_i == 2) {
        oc.kind = BNN_OPT_IVON;
        oc.lr = 0.2f;
    }
    bnn_optimizer *o = NULL;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_OK);
    static float x[NT * 64];
    int32_t y[NT];
    tu_rng r = {123};
    for (int s = 0; s < STEPS; s++) {
        bars(&r, B, x, y);
        ck_assert_int_eq(bnn_svi_step(o, x, y, NULL, B, NULL), BNN_OK);
    }
    bars(&r, NT, x, y);
    bnn_svi_stats st;
    bnn_svi_stats_init(&st);
    ck_assert_int_eq(bnn_svi_grad(o, x, y, NULL, NT, &st), BNN_OK);
    const float *logit = o->ws.layer[1].pre;
    size_t right = 0;
    for (size_t i = 0; i < NT; i++) {
        size_t best = 0;
        for (size_t k = 1; k < 3; k++)
            if (logit[i * 3 + k] > logit[i * 3 + best])
                best = k;
        right += (int32_t)best == y[i];
    }
    double mean_nll = st.nll / NT;
    ck_assert_msg(mean_nll < 0.35 * log(3.0) && right > NT * 9 / 10,
                  "optimizer case %d: mean NLL %.4f (uniform %.4f), accuracy %zu / %d", _i,
                  mean_nll, log(3.0), right, NT);
    bnn_optimizer_free(o);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

/* ---- determinism, threads -------------------------------------------------------- */

/* 8 x 8 x 2 -> conv 3x3 -> 8 (pad 1), max pool -> 4 x 4 x 8; dense 520;
 * dense 4: 67,212 parameters per half, more than one chunk of the
 * per-parameter passes. */
static const tlayer wide_layers[] = {
    {1, 8, 3, 3, 1, 1, 1, 1, 1, BNN_ACT_TANH},
    {0, 520, 1, 1, 1, 1, 0, 0, 0, BNN_ACT_RELU},
    {0, 4, 1, 1, 1, 1, 0, 0, 0, BNN_ACT_INHERIT},
};
static const tnet wide_net = {8, 8, 2, 3, wide_layers};

static float *train_wide(int c, size_t threads, size_t *np)
{
    static const struct {
        bnn_estimator est;
        bnn_kl_mode kl;
        bnn_optimizer_kind kind;
    } v[] = {{BNN_EST_WEIGHT_SAMPLING, BNN_KL_ANALYTIC, BNN_OPT_ADAM},
             {BNN_EST_FLIPOUT, BNN_KL_MONTE_CARLO, BNN_OPT_SGD},
             {BNN_EST_WEIGHT_SAMPLING, BNN_KL_ANALYTIC, BNN_OPT_IVON}};
    net t;
    enum { B = 6 };
    net_make(&t, &wide_net, BNN_PRIOR_NORMAL, v[c].est, v[c].kl, v[c].kind, B, threads, 0.1f);
    float x[B * 128];
    int32_t y[B];
    tu_rng r = {17};
    tu_fill_uniform(&r, x, B * 128, -1, 1);
    for (int i = 0; i < B; i++)
        y[i] = (int32_t)(tu_next(&r) % 4);
    for (int s = 0; s < 3; s++) {
        if (s % 2) {
            ck_assert_int_eq(bnn_svi_grad(t.o, x, y, NULL, B, NULL), BNN_OK);
            ck_assert_int_eq(bnn_optimizer_step(t.o), BNN_OK);
        } else {
            ck_assert_int_eq(bnn_svi_step(t.o, x, y, NULL, B, NULL), BNN_OK);
        }
    }
    const float *p = bnn_guide_params(t.g, np);
    ck_assert_uint_gt(*np / 2, 65536);
    float *out = malloc(*np * sizeof *out);
    memcpy(out, p, *np * sizeof *out);
    net_free(&t);
    return out;
}

/* The same bits with 1, 2 or 3 threads (so also run after run). */
START_TEST(test_threads_same_bits)
{
    size_t n0, n;
    float *ref = train_wide(_i, 1, &n0);
    static const size_t th[] = {2, 3};
    for (size_t k = 0; k < 2; k++) {
        float *p = train_wide(_i, th[k], &n);
        ck_assert_uint_eq(n, n0);
        ck_assert_msg(memcmp(p, ref, n * sizeof *p) == 0, "case %d, %zu threads", _i, th[k]);
        free(p);
    }
    free(ref);
}
END_TEST

/* bnn_svi_step and bnn_svi_grad + bnn_optimizer_step give the same bits
 * (for IVON the step fuses the gradient finish into the update). */
START_TEST(test_step_equals_two_calls)
{
    static const struct {
        bnn_estimator est;
        bnn_optimizer_kind kind;
    } v[] = {{BNN_EST_WEIGHT_SAMPLING, BNN_OPT_IVON},
             {BNN_EST_FLIPOUT, BNN_OPT_ADAM},
             {BNN_EST_WEIGHT_SAMPLING, BNN_OPT_SGD}};
    net a, b;
    net_make(&a, &small_net, BNN_PRIOR_NORMAL, v[_i].est, BNN_KL_ANALYTIC, v[_i].kind, 5, 1,
             0.2f);
    net_make(&b, &small_net, BNN_PRIOR_NORMAL, v[_i].est, BNN_KL_ANALYTIC, v[_i].kind, 5, 1,
             0.2f);
    float x[5 * 84];
    int32_t y[5] = {2, 0, 1, 1, 0};
    tu_rng r = {21};
    tu_fill_uniform(&r, x, 5 * 84, -1, 1);
    for (int s = 0; s < 4; s++) {
        bnn_svi_stats sa = {.struct_size = sizeof sa}, sb = {.struct_size = sizeof sb};
        ck_assert_int_eq(bnn_svi_step(a.o, x, y, NULL, 5, &sa), BNN_OK);
        ck_assert_int_eq(bnn_svi_grad(b.o, x, y, NULL, 5, &sb), BNN_OK);
        ck_assert_int_eq(bnn_optimizer_step(b.o), BNN_OK);
        ck_assert(sa.loss == sb.loss && sa.grad_norm == sb.grad_norm);
    }
    size_t np;
    const float *pa = bnn_guide_params(a.g, &np), *pb = bnn_guide_params(b.g, NULL);
    ck_assert_int_eq(memcmp(pa, pb, np * sizeof *pa), 0);
    ck_assert_int_eq(memcmp(a.o->m, b.o->m, np * sizeof *pa), 0);
    net_free(&a);
    net_free(&b);
}
END_TEST

/* ---- refusals and failures ------------------------------------------------------- */

START_TEST(test_refusals)
{
    bnn_model *m = make_model(&small_net, BNN_LIK_CATEGORICAL, BNN_PRIOR_NORMAL, BNN_ACT_RELU,
                              NULL);
    bnn_guide *g = NULL;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    bnn_svi_config sc = tu_svi(10);
    sc.estimator = BNN_EST_LOCAL_REPARAM;
    bnn_optimizer *o = (bnn_optimizer *)0x1;
    ck_assert_int_eq(bnn_optimizer_create(g, NULL, &sc, &o), BNN_E_UNSUPPORTED);
    ck_assert_ptr_eq(o, (bnn_optimizer *)0x1);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "bnn_optimizer_create: local "
                                                   "reparameterization is not supported for "
                                                   "convolutional networks"));
    /* A batch whose im2col matrix has more rows than CBLAS can take is
     * refused before anything is allocated. */
    sc.estimator = BNN_EST_WEIGHT_SAMPLING;
    sc.max_batch = 60000000; /* x 7 x 6 positions > INT_MAX */
    ck_assert_int_eq(bnn_optimizer_create(g, NULL, &sc, &o), BNN_E_SHAPE);
    ck_assert_ptr_eq(o, (bnn_optimizer *)0x1);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "im2col"));
    sc.max_batch = 16;
    /* The guide is free for another optimizer. */
    sc.estimator = BNN_EST_FLIPOUT;
    ck_assert_int_eq(bnn_optimizer_create(g, NULL, &sc, &o), BNN_OK);
    bnn_optimizer_free(o);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

/* A non-finite step changes nothing: parameters, optimizer state, count. */
START_TEST(test_numeric_failure_keeps_params)
{
    net t;
    net_make(&t, &small_net, BNN_PRIOR_NORMAL, _i ? BNN_EST_FLIPOUT : BNN_EST_WEIGHT_SAMPLING,
             BNN_KL_ANALYTIC, BNN_OPT_ADAM, 2, 1, 0.1f);
    float x[2 * 84];
    int32_t y[2] = {1, 2};
    tu_rng r = {6};
    tu_fill_uniform(&r, x, 2 * 84, -1, 1);
    ck_assert_int_eq(bnn_svi_step(t.o, x, y, NULL, 2, NULL), BNN_OK);
    size_t np;
    float *p = bnn_guide_params(t.g, &np);
    size_t P = np / 2, last = P - 3 - 5 * 3; /* the output layer's first weight */
    p[last] = INFINITY; /* an overflowed weight */
    float *before = malloc(np * sizeof *before), *m1 = malloc(np * sizeof *m1);
    memcpy(before, p, np * sizeof *before);
    memcpy(m1, t.o->m, np * sizeof *m1);
    ck_assert_int_eq(bnn_svi_step(t.o, x, y, NULL, 2, NULL), BNN_E_NUMERIC);
    ck_assert_int_eq(memcmp(before, p, np * sizeof *before), 0);
    ck_assert_int_eq(memcmp(m1, t.o->m, np * sizeof *m1), 0);
    ck_assert_uint_eq(bnn_optimizer_step_count(t.o), 1);
    free(before);
    free(m1);
    net_free(&t);
}
END_TEST

/* Optimizer creation for a conv model fails cleanly at every allocation:
 * BNN_E_NOMEM, out untouched, nothing leaked, and the guide takes an
 * optimizer afterwards. */
START_TEST(test_alloc_failures_create)
{
    static const struct {
        bnn_estimator est;
        bnn_optimizer_kind kind;
        size_t threads;
    } v[] = {{BNN_EST_WEIGHT_SAMPLING, BNN_OPT_ADAM, 1},
             {BNN_EST_FLIPOUT, BNN_OPT_SGD, 2},
             {BNN_EST_WEIGHT_SAMPLING, BNN_OPT_IVON, 1}};
    tu_alloc ca = {0};
    bnn_allocator al = tu_allocator(&ca);
    bnn_model *m = make_model(&small_net, BNN_LIK_CATEGORICAL, BNN_PRIOR_NORMAL, BNN_ACT_RELU, &al);
    bnn_guide *g = NULL;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    bnn_svi_config sc = tu_svi(10);
    sc.max_batch = 5;
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    size_t biggest = 0;
    for (size_t c = 0; c < sizeof v / sizeof v[0]; c++) {
        sc.estimator = v[c].est;
        sc.num_threads = v[c].threads;
        oc.kind = v[c].kind;
        for (size_t k = 1;; k++) {
            ck_assert_uint_lt(k, 1000);
            size_t live = ca.live;
            tu_alloc_arm(&ca, k, 0);
            bnn_optimizer *o = (bnn_optimizer *)0x1;
            bnn_status st = bnn_optimizer_create(g, &oc, &sc, &o);
            size_t failed = ca.failed;
            ca.fail_at = 0;
            if (!failed) {
                ck_assert_int_eq(st, BNN_OK);
                /* steps allocate nothing */
                float x[5 * 84] = {0};
                int32_t y[5] = {0, 1, 2, 0, 1};
                size_t calls = ca.calls;
                ck_assert_int_eq(bnn_svi_step(o, x, y, NULL, 5, NULL), BNN_OK);
                ck_assert_uint_eq(ca.calls, calls);
                bnn_optimizer_free(o);
                ck_assert_uint_eq(ca.live, live);
                if (k > biggest)
                    biggest = k;
                break;
            }
            ck_assert_int_eq(st, BNN_E_NOMEM);
            ck_assert_ptr_eq(o, (bnn_optimizer *)0x1);
            ck_assert_uint_eq(ca.live, live);
        }
    }
    ck_assert_uint_ge(biggest, 10); /* the conv buffers were among them */
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("forward");
    tcase_add_loop_test(tc, test_forward_reference, 0, 2);
    tcase_add_test(tc, test_flipout_signs_per_channel);
    suite_add_tcase(s, tc);
    tc = tcase_create("gradients");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_grad_finite_differences, 0, 4);
    tcase_add_loop_test(tc, test_grad_parts_sum, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("training");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_learns_bars, 0, 3);
    tcase_add_loop_test(tc, test_threads_same_bits, 0, 3);
    tcase_add_loop_test(tc, test_step_equals_two_calls, 0, 3);
    suite_add_tcase(s, tc);
    tc = tcase_create("failures");
    tcase_add_test(tc, test_refusals);
    tcase_add_loop_test(tc, test_numeric_failure_keeps_params, 0, 2);
    tcase_add_test(tc, test_alloc_failures_create);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
