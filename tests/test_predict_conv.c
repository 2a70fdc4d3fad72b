/* Prediction of networks described as layer sequences: convolutions,
 * pooling and per-layer activations, through every public predictor,
 * against a direct double-precision implementation (six nested loops per
 * convolution) of the mean network and of the whole networks the
 * predictor draws. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "predict.h"
#include "rng.h"
#include "testutil.h"

#define MAXA 1024 /* activations per input in the reference */

typedef struct cnet {
    size_t n;
    bnn_layer_spec s[8];
    size_t h, w, c; /* input shape */
    bnn_activation act;
    bnn_likelihood lik;
    float noise;
    bnn_model *m;
    bnn_guide *g;
} cnet;

/* 9 x 8 x 2 input; conv 3x3 -> 4 (pad 1, the model's ReLU); max pool ->
 * 4 x 4 x 4; conv 3x2 -> 3 (stride 2 x 1, pad 1 x 0, tanh) -> 2 x 3 x 3;
 * average pool -> 1 x 1 x 3 (the odd column dropped); flatten; dense 5
 * (identity); dense `out`. */
static void cnn_specs(cnet *t, size_t out)
{
    t->n = 7;
    for (size_t i = 0; i < t->n; i++)
        bnn_layer_spec_init(&t->s[i]);
    t->s[0].kind = BNN_LAYER_CONV2D, t->s[0].units = 4, t->s[0].pad_h = t->s[0].pad_w = 1;
    t->s[1].kind = BNN_LAYER_MAXPOOL2;
    t->s[2].kind = BNN_LAYER_CONV2D, t->s[2].units = 3, t->s[2].kernel_w = 2;
    t->s[2].stride_h = 2, t->s[2].pad_h = 1, t->s[2].activation = BNN_ACT_TANH;
    t->s[3].kind = BNN_LAYER_AVGPOOL2;
    t->s[4].kind = BNN_LAYER_FLATTEN;
    t->s[5].units = 5, t->s[5].activation = BNN_ACT_IDENTITY;
    t->s[6].units = out;
    t->h = 9, t->w = 8, t->c = 2;
}

/* Dense layers only, each hidden layer with its own activation: 6 ->
 * 5 (identity) -> 7 (tanh) -> 4 (ReLU, the model's being tanh) -> out.
 * Layer 0 is not ReLU, so the marginal path's fused ReLU is not taken. */
static void mlp_specs(cnet *t, size_t out)
{
    t->n = 4;
    for (size_t i = 0; i < t->n; i++)
        bnn_layer_spec_init(&t->s[i]);
    t->s[0].units = 5, t->s[0].activation = BNN_ACT_IDENTITY;
    t->s[1].units = 7, t->s[1].activation = BNN_ACT_TANH;
    t->s[2].units = 4, t->s[2].activation = BNN_ACT_RELU;
    t->s[3].units = out;
    t->h = 1, t->w = 2, t->c = 3;
}

/* Model and guide: mu uniform in [-1, 1], every sigma = sigma. */
static void cnet_make(cnet *t, bnn_activation act, bnn_likelihood lik, float sigma, uint64_t seed)
{
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_layers = t->n;
    mc.layers = t->s;
    mc.input_height = t->h, mc.input_width = t->w, mc.input_channels = t->c;
    mc.activation = act;
    mc.likelihood = lik;
    mc.noise_sigma = t->noise = 0.5f;
    t->act = act;
    t->lik = lik;
    ck_assert_int_eq(bnn_model_create(&mc, &t->m), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(t->m, NULL, &t->g), BNN_OK);
    size_t n;
    float *p = bnn_guide_params(t->g, &n);
    n /= 2;
    tu_rng r = {seed};
    tu_fill_uniform(&r, p, n, -1.0f, 1.0f);
    /* rho = softplus^-1(sigma) */
    float rho = sigma < 1e-6f ? -40.0f : (float)log(expm1((double)sigma));
    for (size_t i = 0; i < n; i++)
        p[n + i] = rho;
}

static void cnet_free(cnet *t)
{
    bnn_guide_free(t->g);
    bnn_model_free(t->m);
}

static double act_of(bnn_activation a, double v)
{
    return a == BNN_ACT_TANH ? tanh(v) : a == BNN_ACT_RELU ? (v > 0 ? v : 0) : v;
}

/* The network with parameters `net` (the guide's layout: per weight layer
 * its weights, row-major out x in with a convolution's in ordered
 * [ky][kx][c], then its biases) on input x, in double, shapes worked out
 * here from the sequence.  Gives log-probabilities (categorical) or the
 * outputs (Gaussian); returns the output count. */
static size_t ref_forward(const cnet *t, const float *net, const float *x, double *y)
{
    static double a[MAXA], b[MAXA];
    size_t h = t->h, w = t->w, c = t->c, off = 0;
    for (size_t k = 0; k < h * w * c; k++)
        a[k] = x[k];
    for (size_t i = 0; i < t->n; i++) {
        const bnn_layer_spec *s = &t->s[i];
        int last = i + 1 == t->n;
        bnn_activation act = last ? BNN_ACT_IDENTITY
                             : s->activation == BNN_ACT_INHERIT ? t->act
                                                                : s->activation;
        if (s->kind == BNN_LAYER_CONV2D) {
            size_t oh = (h + 2 * s->pad_h - s->kernel_h) / s->stride_h + 1;
            size_t ow = (w + 2 * s->pad_w - s->kernel_w) / s->stride_w + 1, co = s->units;
            size_t K = s->kernel_h * s->kernel_w * c;
            const float *W = net + off, *B = net + off + co * K;
            ck_assert_uint_le(oh * ow * co, MAXA);
            for (size_t o = 0; o < co; o++)
                for (size_t oy = 0; oy < oh; oy++)
                    for (size_t ox = 0; ox < ow; ox++) {
                        double sum = B[o];
                        for (size_t ky = 0; ky < s->kernel_h; ky++)
                            for (size_t kx = 0; kx < s->kernel_w; kx++)
                                for (size_t ci = 0; ci < c; ci++) {
                                    long iy = (long)(oy * s->stride_h + ky) - (long)s->pad_h;
                                    long ix = (long)(ox * s->stride_w + kx) - (long)s->pad_w;
                                    if (iy < 0 || ix < 0 || iy >= (long)h || ix >= (long)w)
                                        continue;
                                    sum += (double)W[((o * s->kernel_h + ky) * s->kernel_w + kx) *
                                                         c + ci] *
                                           a[((size_t)iy * w + (size_t)ix) * c + ci];
                                }
                        b[(oy * ow + ox) * co + o] = act_of(act, sum);
                    }
            off += co * K + co;
            h = oh, w = ow, c = co;
            memcpy(a, b, h * w * c * sizeof *a);
        } else if (s->kind == BNN_LAYER_MAXPOOL2 || s->kind == BNN_LAYER_AVGPOOL2) {
            size_t ph = h / 2, pw = w / 2;
            for (size_t py = 0; py < ph; py++)
                for (size_t px = 0; px < pw; px++)
                    for (size_t ci = 0; ci < c; ci++) {
                        double v[4];
                        for (int q = 0; q < 4; q++)
                            v[q] = a[((2 * py + (size_t)(q / 2)) * w + 2 * px + (size_t)(q % 2)) *
                                         c + ci];
                        double r = 0;
                        if (s->kind == BNN_LAYER_AVGPOOL2) {
                            r = (v[0] + v[1] + v[2] + v[3]) / 4;
                        } else {
                            r = v[0];
                            for (int q = 1; q < 4; q++)
                                r = v[q] > r ? v[q] : r;
                        }
                        b[(py * pw + px) * c + ci] = r;
                    }
            h = ph, w = pw;
            memcpy(a, b, h * w * c * sizeof *a);
        } else if (s->kind == BNN_LAYER_DENSE) {
            size_t in = h * w * c, out = s->units;
            const float *W = net + off, *B = net + off + out * in;
            for (size_t j = 0; j < out; j++) {
                double sum = B[j];
                for (size_t k = 0; k < in; k++)
                    sum += (double)W[j * in + k] * a[k];
                b[j] = act_of(act, sum);
            }
            off += out * in + out;
            h = w = 1, c = out;
            memcpy(a, b, c * sizeof *a);
        }
    }
    ck_assert_uint_eq(off, bnn_model_param_count(t->m));
    if (t->lik == BNN_LIK_GAUSSIAN) {
        memcpy(y, a, c * sizeof *y);
        return c;
    }
    double mx = a[0], z = 0;
    for (size_t j = 1; j < c; j++)
        mx = a[j] > mx ? a[j] : mx;
    for (size_t j = 0; j < c; j++)
        z += exp(a[j] - mx);
    for (size_t j = 0; j < c; j++)
        y[j] = a[j] - mx - log(z);
    return c;
}

static const float *mu_of(const cnet *t)
{
    size_t n;
    return bnn_guide_params(t->g, &n);
}

static bnn_predictor *pmake(const bnn_guide *g, bnn_sampling mode, size_t S, uint64_t seed,
                            size_t threads, size_t max_batch, size_t chunk)
{
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.sampling = mode;
    cfg.num_samples = S;
    cfg.seed = seed;
    cfg.num_threads = threads;
    bnn_predictor *p = NULL;
    ck_assert_int_eq(predictor_create_chunked(g, &cfg, max_batch, chunk, 0,
                                              chunk & 1 ? PREDICTOR_ONE_SHOT : 0, "test", &p),
                     BNN_OK);
    return p;
}

static const bnn_sampling modes[3] = {BNN_SAMPLING_MARGINAL, BNN_SAMPLING_NETWORKS,
                                      BNN_SAMPLING_MEAN};

/* sigma ~ 0: every sample of every mode is the mean network. */
static void check_mean_network(cnet *t)
{
    enum { N = 6, S = 3 };
    size_t in = t->h * t->w * t->c, C = t->s[t->n - 1].units;
    float x[N * 144], probs[N * 4], logp[S * N * 4], mean[N * 4], var[N * 4];
    ck_assert_uint_le(in, 144);
    ck_assert_uint_le(C, 4);
    tu_rng r = {3};
    tu_fill_uniform(&r, x, N * in, -1.0f, 1.0f);
    double ref[N][4];
    for (size_t i = 0; i < N; i++)
        ref_forward(t, mu_of(t), x + i * in, ref[i]);
    if (t->lik == BNN_LIK_GAUSSIAN) {
        ck_assert_int_eq(bnn_predict_regression(t->g, x, N, S, 5, mean, var), BNN_OK);
        for (size_t i = 0; i < N; i++)
            for (size_t c = 0; c < C; c++) {
                tu_assert_close(mean[i * C + c], ref[i][c], 1e-5, 1e-5);
                tu_assert_close(var[i * C + c], 0.25, 1e-5, 1e-5);
            }
        return;
    }
    ck_assert_int_eq(bnn_predict(t->g, x, N, S, 5, probs), BNN_OK);
    for (size_t i = 0; i < N; i++)
        for (size_t c = 0; c < C; c++)
            tu_assert_close(probs[i * C + c], exp(ref[i][c]), 1e-6, 1e-5);
    for (int k = 0; k < 3; k++) {
        /* max_batch 4 and 64 take the transposed layer 0 where it applies */
        for (size_t mb = 4; mb <= 64; mb *= 16) {
            bnn_predictor *p = pmake(t->g, modes[k], S, 5, 1, mb, 0);
            for (size_t i0 = 0; i0 < N; i0 += 4) {
                size_t n = N - i0 < 4 ? N - i0 : 4;
                ck_assert_int_eq(bnn_predictor_samples(p, x + i0 * in, n, logp), BNN_OK);
                size_t Sk = S; /* MEAN repeats its one sample */
                for (size_t s = 0; s < Sk; s++)
                    for (size_t i = 0; i < n; i++)
                        for (size_t c = 0; c < C; c++)
                            tu_assert_close(logp[(s * n + i) * C + c], ref[i0 + i][c], 1e-5,
                                            1e-5);
            }
            bnn_predictor_free(p);
        }
    }
}

START_TEST(test_mean_network)
{
    cnet t;
    cnn_specs(&t, 4);
    cnet_make(&t, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.0f, 11);
    check_mean_network(&t);
    cnet_free(&t);
    cnn_specs(&t, 3);
    cnet_make(&t, BNN_ACT_TANH, BNN_LIK_GAUSSIAN, 0.0f, 12);
    check_mean_network(&t);
    cnet_free(&t);
    mlp_specs(&t, 4);
    cnet_make(&t, BNN_ACT_TANH, BNN_LIK_CATEGORICAL, 0.0f, 13);
    check_mean_network(&t);
    cnet_free(&t);
    mlp_specs(&t, 2);
    cnet_make(&t, BNN_ACT_RELU, BNN_LIK_GAUSSIAN, 0.0f, 14);
    check_mean_network(&t);
    cnet_free(&t);
}
END_TEST

/* Sample s of a convolutional network is the whole network drawn on the
 * stream (seed, s) of RNG_PREDICT, shared by every input, in both sampling
 * modes (MARGINAL, the default, draws whole networks for them). */
START_TEST(test_whole_network_draws)
{
    enum { N = 5, S = 7, C = 4 };
    cnet t;
    cnn_specs(&t, C);
    cnet_make(&t, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.3f, 21);
    size_t in = 9 * 8 * 2, P = bnn_model_param_count(t.m);
    float *x = malloc(N * in * sizeof *x), *net = malloc(P * sizeof *net);
    float logp[S * N * C], logp2[S * N * C];
    tu_rng r = {22};
    tu_fill_uniform(&r, x, N * in, -1.0f, 1.0f);
    ck_assert_int_eq(bnn_predict_samples(t.g, x, N, S, 9, logp), BNN_OK);
    bnn_predictor *p = pmake(t.g, BNN_SAMPLING_NETWORKS, S, 9, 1, N, 0);
    ck_assert_int_eq(bnn_predictor_samples(p, x, N, logp2), BNN_OK);
    bnn_predictor_free(p);
    ck_assert(memcmp(logp, logp2, sizeof logp) == 0);
    double spread = 0;
    for (size_t s = 0; s < S; s++) {
        guide_sample_network(t.g, 9, rng_stream_id(s, 0, 0, RNG_PREDICT), net);
        for (size_t i = 0; i < N; i++) {
            double ref[C];
            ref_forward(&t, net, x + i * in, ref);
            for (size_t c = 0; c < C; c++) {
                tu_assert_close(logp[(s * N + i) * C + c], ref[c], 2e-5, 2e-5);
                spread += fabs(ref[c] - logp[i * C + c]);
            }
        }
    }
    ck_assert_msg(spread > 1.0, "samples barely differ: %g", spread);
    free(net);
    free(x);
    cnet_free(&t);
}
END_TEST

/* Records, medians and the regression variance from the same draws, in
 * double. */
START_TEST(test_uncertainty_outputs)
{
    enum { N = 4, S = 9, C = 4 };
    cnet t, tg;
    cnn_specs(&t, C);
    cnet_make(&t, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.4f, 31);
    cnn_specs(&tg, 2);
    cnet_make(&tg, BNN_ACT_TANH, BNN_LIK_GAUSSIAN, 0.2f, 32);
    size_t in = 9 * 8 * 2, P = bnn_model_param_count(t.m);
    float *x = malloc(N * in * sizeof *x), *net = malloc(P * sizeof *net);
    tu_rng r = {33};
    tu_fill_uniform(&r, x, N * in, -1.0f, 1.0f);
    bnn_predict_config cfg;
    bnn_predict_config_init(&cfg);
    cfg.num_samples = S;
    cfg.seed = 4;
    bnn_prediction rec[N];
    float med[N * C], mean[N * 2], var[N * 2];
    ck_assert_int_eq(bnn_predict_with_uncertainty(t.g, &cfg, x, N, rec, sizeof rec[0], med, NULL),
                     BNN_OK);
    ck_assert_int_eq(bnn_predict_regression(tg.g, x, N, S, 4, mean, var), BNN_OK);
    double pr[N][S][C], ym[N][2] = {{0}}, y2[N][2] = {{0}};
    for (size_t s = 0; s < S; s++) {
        guide_sample_network(t.g, 4, rng_stream_id(s, 0, 0, RNG_PREDICT), net);
        for (size_t i = 0; i < N; i++) {
            double lp[C];
            ref_forward(&t, net, x + i * in, lp);
            for (size_t c = 0; c < C; c++)
                pr[i][s][c] = exp(lp[c]);
        }
        guide_sample_network(tg.g, 4, rng_stream_id(s, 0, 0, RNG_PREDICT), net);
        for (size_t i = 0; i < N; i++) {
            double y[2];
            ref_forward(&tg, net, x + i * in, y);
            for (size_t c = 0; c < 2; c++) {
                ym[i][c] += y[c] / S;
                y2[i][c] += y[c] * y[c] / S;
            }
        }
    }
    double total_mi = 0;
    for (size_t i = 0; i < N; i++) {
        double mp[C] = {0}, eh = 0, h = 0;
        for (size_t s = 0; s < S; s++) {
            for (size_t c = 0; c < C; c++) {
                mp[c] += pr[i][s][c] / S;
                eh -= pr[i][s][c] * log(pr[i][s][c]) / S;
            }
        }
        size_t best = 0;
        double best_med = -1;
        for (size_t c = 0; c < C; c++) {
            h -= mp[c] * log(mp[c]);
            if (mp[c] > mp[best])
                best = c;
            /* the median of 9 sorted samples is the 5th */
            double v[S];
            for (size_t s = 0; s < S; s++)
                v[s] = pr[i][s][c];
            for (size_t a = 0; a < S; a++)
                for (size_t b = a + 1; b < S; b++)
                    if (v[b] < v[a]) {
                        double tmp = v[a];
                        v[a] = v[b], v[b] = tmp;
                    }
            tu_assert_close(med[i * C + c], v[S / 2], 1e-5, 1e-4);
            best_med = v[S / 2] > best_med ? v[S / 2] : best_med;
        }
        ck_assert_int_eq(rec[i].mean_label, (int32_t)best);
        tu_assert_close(rec[i].entropy, h, 1e-5, 1e-4);
        tu_assert_close(rec[i].expected_entropy, eh, 1e-5, 1e-4);
        tu_assert_close(rec[i].mutual_info, h - eh, 2e-5, 1e-3);
        tu_assert_close(rec[i].max_median, best_med, 1e-5, 1e-4);
        total_mi += h - eh;
        for (size_t c = 0; c < 2; c++) {
            tu_assert_close(mean[i * 2 + c], ym[i][c], 1e-5, 1e-5);
            tu_assert_close(var[i * 2 + c], y2[i][c] - ym[i][c] * ym[i][c] + 0.25, 1e-5, 1e-4);
        }
    }
    ck_assert_msg(total_mi > 1e-3, "no epistemic part: %g", total_mi);
    free(net);
    free(x);
    cnet_free(&t);
    cnet_free(&tg);
}
END_TEST

/* Results do not depend on how the inputs are batched, chunked or shared
 * among threads: bit-identical in every mode. */
START_TEST(test_batch_and_thread_invariance)
{
    enum { N = 21, S = 5, C = 4, IN = 9 * 8 * 2 };
    cnet t;
    cnn_specs(&t, C);
    cnet_make(&t, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.3f, 41);
    static float x[N * IN], l0[S * N * C], l[S * N * C], mp0[N * C], mp[N * C];
    static bnn_prediction rec0[N], rec[N];
    tu_rng r = {42};
    tu_fill_uniform(&r, x, N * IN, -1.0f, 1.0f);
    const size_t threads[] = {1, 2, 3}, chunks[] = {0, 1, 4, 5};
    for (int k = 0; k < 3; k++) {
        bnn_predictor *q = pmake(t.g, modes[k], S, 6, 1, N, 0);
        ck_assert_int_eq(bnn_predictor_samples(q, x, N, l0), BNN_OK);
        ck_assert_int_eq(bnn_predictor_run(q, x, N, rec0, sizeof rec0[0], NULL, NULL, mp0),
                         BNN_OK);
        bnn_predictor_free(q);
        size_t Sk = S; /* MEAN repeats its one sample */
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 4; b++) {
                q = pmake(t.g, modes[k], S, 6, threads[a], N, chunks[b]);
                /* inputs [0, 7) then [7, N); sample-major output per call */
                ck_assert_int_eq(bnn_predictor_samples(q, x, 7, l), BNN_OK);
                for (size_t s = 0; s < Sk; s++)
                    ck_assert_msg(memcmp(l + s * 7 * C, l0 + s * N * C, 7 * C * sizeof *l) == 0,
                                  "mode %d threads %zu chunk %zu", k, threads[a], chunks[b]);
                ck_assert_int_eq(bnn_predictor_samples(q, x + 7 * IN, N - 7, l), BNN_OK);
                for (size_t s = 0; s < Sk; s++)
                    ck_assert(memcmp(l + s * (N - 7) * C, l0 + s * N * C + 7 * C,
                                     (N - 7) * C * sizeof *l) == 0);
                ck_assert_int_eq(bnn_predictor_run(q, x, N, rec, sizeof rec[0], NULL, NULL, mp),
                                 BNN_OK);
                ck_assert(memcmp(rec, rec0, sizeof rec) == 0);
                ck_assert(memcmp(mp, mp0, sizeof mp) == 0);
                bnn_predictor_free(q);
            }
    }
    /* the one-shot functions: the default mode, one batch */
    float p[N * C];
    ck_assert_int_eq(bnn_predict(t.g, x, N, S, 6, p), BNN_OK);

    {
        bnn_predictor *q = pmake(t.g, BNN_SAMPLING_NETWORKS, S, 6, 2, N, 0);
        ck_assert_int_eq(bnn_predictor_probs(q, x, N, mp), BNN_OK);
        bnn_predictor_free(q);
        ck_assert(memcmp(p, mp, sizeof p) == 0);
    }
    cnet_free(&t);
}
END_TEST

/* The predictor reads the guide at creation and at refresh. */
START_TEST(test_refresh)
{
    enum { N = 3, C = 4, IN = 9 * 8 * 2 };
    cnet t;
    cnn_specs(&t, C);
    cnet_make(&t, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 0.0f, 51);
    float x[N * IN], probs[N * C];
    tu_rng r = {52};
    tu_fill_uniform(&r, x, N * IN, -1.0f, 1.0f);
    bnn_predictor *p = pmake(t.g, BNN_SAMPLING_MARGINAL, 2, 1, 1, N, 0);
    size_t n;
    float *mu = bnn_guide_params(t.g, &n);
    for (size_t i = 0; i < n / 2; i++)
        mu[i] = -mu[i];
    double ref[C];
    ck_assert_int_eq(bnn_predictor_refresh(p), BNN_OK);
    ck_assert_int_eq(bnn_predictor_probs(p, x, N, probs), BNN_OK);
    for (size_t i = 0; i < N; i++) {
        ref_forward(&t, mu, x + i * IN, ref);
        for (size_t c = 0; c < C; c++)
            tu_assert_close(probs[i * C + c], exp(ref[c]), 1e-6, 1e-5);
    }
    bnn_predictor_free(p);
    cnet_free(&t);
}
END_TEST

/* MARGINAL on dense layers with their own activations: sample s of input
 * x is, layer by layer, a_j = m_j + sqrt(v_j) eps[s, l, j] (m = W_mu h +
 * b_mu, v = W_sigma^2 h^2 + b_sigma^2, eps on the stream (seed, s,
 * particle 1, layer l)), then that layer's activation; in double. */
START_TEST(test_marginal_layer_activations)
{
    enum { N = 4, S = 6, C = 3 };
    const float sig = 0.3f;
    for (int variant = 0; variant < 2; variant++) {
        cnet t;
        mlp_specs(&t, C);
        if (variant) /* layer 0 ReLU: the fused first layer, then identity */
            t.s[0].activation = BNN_ACT_RELU, t.s[1].activation = BNN_ACT_IDENTITY;
        cnet_make(&t, BNN_ACT_TANH, BNN_LIK_CATEGORICAL, sig, 61 + (uint64_t)variant);
        float x[N * 6], logp[S * N * C];
        tu_rng r = {62};
        tu_fill_uniform(&r, x, N * 6, -2.0f, 2.0f);
        bnn_predictor *p = pmake(t.g, BNN_SAMPLING_MARGINAL, S, 5, 1, N, 0);
        ck_assert_int_eq(bnn_predictor_samples(p, x, N, logp), BNN_OK);
        bnn_predictor_free(p);
        const float *mu = mu_of(&t);
        double s2 = (double)sig * sig, spread = 0;
        for (size_t s = 0; s < S; s++)
            for (size_t i = 0; i < N; i++) {
                double h[8], a[8];
                size_t in = 6, off = 0;
                for (size_t k = 0; k < in; k++)
                    h[k] = x[i * 6 + k];
                for (size_t l = 0; l < t.n; l++) {
                    size_t out = t.s[l].units;
                    float eps[8];
                    rng_normal_fill(5, rng_stream_id(s, 1, (unsigned)l, RNG_PREDICT), 0, out,
                                    eps);
                    for (size_t j = 0; j < out; j++) {
                        double m = mu[off + out * in + j], v = s2;
                        for (size_t k = 0; k < in; k++) {
                            m += (double)mu[off + j * in + k] * h[k];
                            v += s2 * h[k] * h[k];
                        }
                        a[j] = m + sqrt(v) * eps[j];
                    }
                    bnn_activation act = l + 1 == t.n ? BNN_ACT_IDENTITY : t.s[l].activation;
                    for (size_t j = 0; j < out; j++)
                        h[j] = act_of(act, a[j]);
                    off += out * in + out;
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
        ck_assert_msg(spread > 0.1, "samples barely differ: %g", spread);
        cnet_free(&t);
    }
}
END_TEST

/* Creating a predictor for a convolutional network fails cleanly at every
 * allocation (its im2col buffer included); a run then allocates nothing. */
START_TEST(test_allocations)
{
    enum { N = 3, C = 4, IN = 9 * 8 * 2 };
    tu_alloc a = {0};
    bnn_allocator al = tu_allocator(&a);
    cnet t;
    cnn_specs(&t, C);
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_layers = t.n;
    mc.layers = t.s;
    mc.input_height = t.h, mc.input_width = t.w, mc.input_channels = t.c;
    mc.allocator = &al;
    ck_assert_int_eq(bnn_model_create(&mc, &t.m), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(t.m, NULL, &t.g), BNN_OK);
    float x[N * IN], probs[N * C];
    tu_rng r = {71};
    tu_fill_uniform(&r, x, N * IN, -1.0f, 1.0f);
    for (int k = 0; k < 3; k++) {
        bnn_predict_config cfg;
        bnn_predict_config_init(&cfg);
        cfg.sampling = modes[k];
        cfg.num_samples = 4;
        cfg.num_threads = 2;
        size_t fail;
        for (fail = 1;; fail++) {
            tu_alloc_arm(&a, fail, 0);
            bnn_predictor *p = (bnn_predictor *)0x1;
            bnn_status st = bnn_predictor_create(t.g, &cfg, N, &p);
            if (st == BNN_OK) {
                tu_alloc_arm(&a, 1, 1);
                ck_assert_int_eq(bnn_predictor_probs(p, x, N, probs), BNN_OK);
                ck_assert_uint_eq(a.failed, 0);
                bnn_predictor_free(p);
                break;
            }
            ck_assert_int_eq(st, BNN_E_NOMEM);
            ck_assert_ptr_eq(p, (bnn_predictor *)0x1);
        }
        ck_assert_uint_gt(fail, 3);
        tu_alloc_arm(&a, 0, 0);
    }
    cnet_free(&t);
    ck_assert_uint_eq(a.live, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("predict_conv");
    TCase *tc = tcase_create("conv");
    tcase_add_test(tc, test_mean_network);
    tcase_add_test(tc, test_whole_network_draws);
    tcase_add_test(tc, test_uncertainty_outputs);
    tcase_add_test(tc, test_batch_and_thread_invariance);
    tcase_add_test(tc, test_refresh);
    tcase_add_test(tc, test_marginal_layer_activations);
    tcase_add_test(tc, test_allocations);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
