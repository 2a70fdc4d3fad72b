/* From a trained deterministic network to a Bayesian one.
 *
 * A plain 2-32-32-3 tanh network is trained here with a few lines of
 * minibatch SGD (no libbnn: any framework's weights would do) on three
 * interleaved spirals.  Its weights become the means of a libbnn guide with
 * MOPED sigmas (sigma = delta |w|, bnn_guide_set_layer_from_point), which
 * predicts as the point network did, and a few epochs of SVI then fit the
 * sigmas to the data.  Printed at each stage: test accuracy, and the mean
 * predictive entropy and mutual information on test points and on points
 * far from the data.
 *
 *   from_point
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bnn.h>

#define CLASSES 3
#define HIDDEN 32
#define N_TRAIN 3000
#define N_TEST 600
#define N_FAR 200
#define BATCH 32
#define POINT_EPOCHS 30
#define SVI_EPOCHS 5
#define SAMPLES 100
#define MOPED_DELTA 0.1f

static const size_t sizes[] = {2, HIDDEN, HIDDEN, CLASSES};
#define LAYERS 3

/* ---- random numbers and data (splitmix64; three spirals) ----------------- */

typedef struct host_rng {
    uint64_t s;
} host_rng;

static uint64_t rng_next(host_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double rng_uniform(host_rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_normal(host_rng *r)
{
    double u = 1.0 - rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Arm k at t in [0, 1]: the radius grows while the angle turns 4 radians. */
static void make_spirals(host_rng *r, size_t n, float *x, int32_t *y)
{
    for (size_t i = 0; i < n; i++) {
        int k = (int)(rng_next(r) % CLASSES);
        double t = rng_uniform(r), rad = 0.15 + 0.85 * t;
        double a = 2.0943951023931957 * k + 4.0 * t;
        x[2 * i] = (float)(rad * cos(a) + 0.05 * rng_normal(r));
        x[2 * i + 1] = (float)(rad * sin(a) + 0.05 * rng_normal(r));
        y[i] = k;
    }
}

/* ---- the deterministic network and its SGD ------------------------------- */

typedef struct point_net {
    float w[LAYERS][HIDDEN * HIDDEN], b[LAYERS][HIDDEN];
    float vw[LAYERS][HIDDEN * HIDDEN], vb[LAYERS][HIDDEN]; /* momentum */
} point_net;

/* Forward one input; act[l] keeps layer l's output (act[0] = x).  Returns
 * the softmax of the logits in p. */
static void point_forward(const point_net *pn, const float *x, float act[LAYERS + 1][HIDDEN],
                          float *p)
{
    memcpy(act[0], x, 2 * sizeof(float));
    for (size_t l = 0; l < LAYERS; l++) {
        size_t in = sizes[l], out = sizes[l + 1];
        for (size_t j = 0; j < out; j++) {
            float s = pn->b[l][j];
            for (size_t i = 0; i < in; i++)
                s += pn->w[l][j * in + i] * act[l][i];
            act[l + 1][j] = l + 1 < LAYERS ? tanhf(s) : s;
        }
    }
    float mx = act[LAYERS][0], z = 0.0f;
    for (size_t c = 1; c < CLASSES; c++)
        mx = fmaxf(mx, act[LAYERS][c]);
    for (size_t c = 0; c < CLASSES; c++)
        z += (p[c] = expf(act[LAYERS][c] - mx));
    for (size_t c = 0; c < CLASSES; c++)
        p[c] /= z;
}

/* One minibatch of cross-entropy SGD with momentum 0.9. */
static void point_step(point_net *pn, const float *x, const int32_t *y, const size_t *idx,
                       size_t n, float lr)
{
    static float gw[LAYERS][HIDDEN * HIDDEN], gb[LAYERS][HIDDEN];
    memset(gw, 0, sizeof gw);
    memset(gb, 0, sizeof gb);
    for (size_t k = 0; k < n; k++) {
        float act[LAYERS + 1][HIDDEN], p[CLASSES], d[HIDDEN], dprev[HIDDEN];
        size_t e = idx[k];
        point_forward(pn, x + 2 * e, act, p);
        for (size_t c = 0; c < CLASSES; c++)
            d[c] = p[c] - (c == (size_t)y[e]); /* d(-log p_y)/dlogits */
        for (size_t l = LAYERS; l-- > 0;) {
            size_t in = sizes[l], out = sizes[l + 1];
            memset(dprev, 0, in * sizeof(float));
            for (size_t j = 0; j < out; j++) {
                gb[l][j] += d[j];
                for (size_t i = 0; i < in; i++) {
                    gw[l][j * in + i] += d[j] * act[l][i];
                    dprev[i] += d[j] * pn->w[l][j * in + i];
                }
            }
            for (size_t i = 0; i < in; i++) /* through tanh: 1 - h^2 */
                d[i] = dprev[i] * (1.0f - act[l][i] * act[l][i]);
        }
    }
    for (size_t l = 0; l < LAYERS; l++) {
        size_t in = sizes[l], out = sizes[l + 1];
        for (size_t i = 0; i < in * out; i++) {
            pn->vw[l][i] = 0.9f * pn->vw[l][i] + gw[l][i] / (float)n;
            pn->w[l][i] -= lr * pn->vw[l][i];
        }
        for (size_t j = 0; j < out; j++) {
            pn->vb[l][j] = 0.9f * pn->vb[l][j] + gb[l][j] / (float)n;
            pn->b[l][j] -= lr * pn->vb[l][j];
        }
    }
}

static double point_accuracy(const point_net *pn, const float *x, const int32_t *y, size_t n)
{
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        float act[LAYERS + 1][HIDDEN], p[CLASSES];
        point_forward(pn, x + 2 * i, act, p);
        size_t best = 0;
        for (size_t c = 1; c < CLASSES; c++)
            best = p[c] > p[best] ? c : best;
        ok += best == (size_t)y[i];
    }
    return (double)ok / (double)n;
}

/* ---- libbnn --------------------------------------------------------------- */

#define TRY(call)                                                             \
    do {                                                                      \
        bnn_status st_ = (call);                                              \
        if (st_ != BNN_OK) {                                                  \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, \
                    bnn_status_string(st_), bnn_last_error());                \
            goto done;                                                        \
        }                                                                     \
    } while (0)

/* Accuracy on the test points (mean-label answers), and the mean entropy
 * and mutual information on test and far points. */
static bnn_status report(const char *stage, const bnn_guide *g, const float *xt,
                         const int32_t *yt, const float *xf)
{
    static bnn_prediction rt[N_TEST], rf[N_FAR];
    bnn_predict_config pc;
    bnn_predict_config_init(&pc);
    pc.num_samples = SAMPLES;
    pc.rule = BNN_REFUSE_NONE;
    bnn_status st = bnn_predict_with_uncertainty(g, &pc, xt, N_TEST, rt, sizeof rt[0], NULL,
                                                 NULL);
    if (st == BNN_OK)
        st = bnn_predict_with_uncertainty(g, &pc, xf, N_FAR, rf, sizeof rf[0], NULL, NULL);
    if (st != BNN_OK)
        return st;
    double ok = 0, h = 0, mi = 0, hf = 0, mif = 0;
    for (size_t i = 0; i < N_TEST; i++) {
        ok += rt[i].label == yt[i];
        h += rt[i].entropy;
        mi += rt[i].mutual_info;
    }
    for (size_t i = 0; i < N_FAR; i++) {
        hf += rf[i].entropy;
        mif += rf[i].mutual_info;
    }
    printf("%-10s accuracy %.4f entropy %.4f MI %.4f far_entropy %.4f far_MI %.4f\n", stage,
           ok / N_TEST, h / N_TEST, mi / N_TEST, hf / N_FAR, mif / N_FAR);
    return BNN_OK;
}

int main(void)
{
    static float x[N_TRAIN * 2], xt[N_TEST * 2], xf[N_FAR * 2];
    static int32_t y[N_TRAIN], yt[N_TEST];
    static size_t idx[N_TRAIN];
    static point_net pn;
    host_rng rng = {2024};
    make_spirals(&rng, N_TRAIN, x, y);
    make_spirals(&rng, N_TEST, xt, yt);
    for (size_t i = 0; i < N_FAR; i++) { /* radius 3 to 4; the data reach 1 */
        double a = 6.283185307179586 * rng_uniform(&rng), rad = 3.0 + rng_uniform(&rng);
        xf[2 * i] = (float)(rad * cos(a));
        xf[2 * i + 1] = (float)(rad * sin(a));
    }

    /* 1. The point network: Xavier init, SGD with momentum. */
    for (size_t l = 0; l < LAYERS; l++)
        for (size_t i = 0; i < sizes[l] * sizes[l + 1]; i++)
            pn.w[l][i] = (float)(rng_normal(&rng) / sqrt((double)sizes[l]));
    for (size_t i = 0; i < N_TRAIN; i++)
        idx[i] = i;
    for (int epoch = 0; epoch < POINT_EPOCHS; epoch++) {
        for (size_t i = N_TRAIN - 1; i > 0; i--) {
            size_t j = (size_t)(rng_next(&rng) % (i + 1)), t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        for (size_t b = 0; b < N_TRAIN; b += BATCH)
            point_step(&pn, x, y, idx + b, N_TRAIN - b < BATCH ? N_TRAIN - b : BATCH, 0.1f);
    }
    printf("point      accuracy %.4f\n", point_accuracy(&pn, xt, yt, N_TEST));

    int rc = 1;
    bnn_model *model = NULL;
    bnn_guide *guide = NULL;
    bnn_optimizer *opt = NULL;
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = LAYERS + 1;
    mc.layer_sizes = sizes;
    mc.activation = BNN_ACT_TANH;
    TRY(bnn_model_create(&mc, &model));
    TRY(bnn_guide_create(model, NULL, &guide));

    /* 2. Its weights as the posterior means, sigma = delta |w| (at least
     *    1e-6, for weights that are 0). */
    for (size_t l = 0; l < LAYERS; l++) {
        size_t in, out;
        TRY(bnn_model_layer_shape(model, l, &in, &out));
        TRY(bnn_guide_set_layer_from_point(guide, l, pn.w[l], in * out, pn.b[l], out,
                                           BNN_POINT_MOPED, MOPED_DELTA, 1e-6f));
    }
    TRY(report("converted", guide, xt, yt, xf));

    /* 3. A few epochs of SVI from there. */
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.lr = 2e-3f;
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    sc.dataset_size = N_TRAIN;
    sc.max_batch = BATCH;
    TRY(bnn_optimizer_create(guide, &oc, &sc, &opt));
    static float bx[BATCH * 2];
    static int32_t by[BATCH];
    for (int epoch = 0; epoch < SVI_EPOCHS; epoch++) {
        for (size_t b = 0; b + BATCH <= N_TRAIN; b += BATCH) {
            for (size_t k = 0; k < BATCH; k++) {
                memcpy(bx + 2 * k, x + 2 * idx[b + k], 2 * sizeof(float));
                by[k] = y[idx[b + k]];
            }
            TRY(bnn_svi_step(opt, bx, by, NULL, BATCH, NULL));
        }
    }
    TRY(report("finetuned", guide, xt, yt, xf));
    rc = 0;
done:
    bnn_optimizer_free(opt);
    bnn_guide_free(guide);
    bnn_model_free(model);
    return rc;
}
