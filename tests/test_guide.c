/* Layer access: bnn_model_layer_shape, the capacity-checked
 * bnn_guide_get_layer_v2 / bnn_guide_set_layer_v2, and
 * bnn_guide_set_layer_from_point (a guide from deterministic weights: MOPED
 * sigmas, and with the smallest sigma the point network's predictions,
 * against a double-precision forward pass written here). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "testutil.h"

static const size_t sizes[] = {5, 7, 6, 3};
#define NS 4
#define NL (NS - 1)

static bnn_model *model(bnn_activation act, bnn_likelihood lik)
{
    return tu_model(sizes, NS, act, lik, 0.3f, NULL);
}

START_TEST(test_layer_shape)
{
    bnn_model *m = model(BNN_ACT_RELU, BNN_LIK_CATEGORICAL);
    size_t total = 0;
    for (size_t l = 0; l < NL; l++) {
        size_t in = 0, out = 0;
        ck_assert_int_eq(bnn_model_layer_shape(m, l, &in, &out), BNN_OK);
        ck_assert_uint_eq(in, sizes[l]);
        ck_assert_uint_eq(out, sizes[l + 1]);
        total += out * in + out;
    }
    ck_assert_uint_eq(total, bnn_model_param_count(m));
    size_t in = 99, out = 99;
    ck_assert_int_eq(bnn_model_layer_shape(m, NL, &in, &out), BNN_E_INVALID);
    ck_assert_uint_eq(in, 99);
    ck_assert_uint_eq(out, 99);
    bnn_model_free(m);
}
END_TEST

/* set_v2 with exact counts then get_v2 into larger buffers: the values
 * come back, nothing past the layer's size is written, and get_v2 agrees
 * with bnn_guide_get_layer. */
START_TEST(test_v2_round_trip)
{
    bnn_model *m = model(BNN_ACT_TANH, BNN_LIK_CATEGORICAL);
    bnn_guide *g;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    const size_t l = 1, in = sizes[1], out = sizes[2], nw = in * out, extra = 5;
    float w[42], ws[42], b[6], bs[6];
    tu_rng r = {9};
    tu_fill_uniform(&r, w, nw, -2.0f, 2.0f);
    tu_fill_uniform(&r, ws, nw, 1e-3f, 0.5f);
    tu_fill_uniform(&r, b, out, -1.0f, 1.0f);
    tu_fill_uniform(&r, bs, out, 1e-2f, 2.0f);
    ck_assert_int_eq(bnn_guide_set_layer_v2(g, l, w, ws, nw, b, bs, out), BNN_OK);

    float gw[42 + 5], gws[42 + 5], gb[6 + 5], gbs[6 + 5];
    for (size_t i = 0; i < nw + extra; i++)
        gw[i] = gws[i] = -7.0f;
    for (size_t i = 0; i < out + extra; i++)
        gb[i] = gbs[i] = -7.0f;
    ck_assert_int_eq(bnn_guide_get_layer_v2(g, l, gw, gws, nw + extra, gb, gbs, out + extra),
                     BNN_OK);
    for (size_t i = 0; i < nw; i++) {
        ck_assert(gw[i] == w[i]);
        tu_assert_close(gws[i], ws[i], 0, 2e-6);
    }
    for (size_t i = 0; i < out; i++) {
        ck_assert(gb[i] == b[i]);
        tu_assert_close(gbs[i], bs[i], 0, 2e-6);
    }
    for (size_t i = 0; i < extra; i++)
        ck_assert(gw[nw + i] == -7.0f && gws[nw + i] == -7.0f && gb[out + i] == -7.0f &&
                  gbs[out + i] == -7.0f);
    float ow[42], ows[42], ob[6], obs[6];
    ck_assert_int_eq(bnn_guide_get_layer(g, l, ow, ows, ob, obs), BNN_OK);
    ck_assert(memcmp(ow, gw, nw * sizeof(float)) == 0 &&
              memcmp(ows, gws, nw * sizeof(float)) == 0 &&
              memcmp(ob, gb, out * sizeof(float)) == 0 &&
              memcmp(obs, gbs, out * sizeof(float)) == 0);

    /* Capacities are read only for buffers passed. */
    ck_assert_int_eq(bnn_guide_get_layer_v2(g, l, NULL, NULL, 0, gb, NULL, out), BNN_OK);
    ck_assert_int_eq(bnn_guide_set_layer_v2(g, l, NULL, NULL, 0, b, NULL, out), BNN_OK);
    /* One element short or over: nothing read or written. */
    size_t np;
    float *p = bnn_guide_params(g, &np);
    float *keep = malloc(np * sizeof(float));
    ck_assert_ptr_nonnull(keep);
    memcpy(keep, p, np * sizeof(float));
    ck_assert_int_eq(bnn_guide_set_layer_v2(g, l, w, NULL, nw + 1, NULL, NULL, 0), BNN_E_SHAPE);
    ck_assert_int_eq(bnn_guide_set_layer_v2(g, l, NULL, ws, nw, NULL, bs, out - 1),
                     BNN_E_SHAPE);
    ck_assert(memcmp(keep, p, np * sizeof(float)) == 0);
    gw[0] = -7.0f;
    ck_assert_int_eq(bnn_guide_get_layer_v2(g, l, gw, NULL, nw - 1, NULL, NULL, 0), BNN_E_SHAPE);
    ck_assert(gw[0] == -7.0f);
    free(keep);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

/* Point weights and biases per layer (biases nonzero), from a fixed seed;
 * every fourth weight exactly 0. */
typedef struct point_net {
    float *w[NL], *b[NL];
} point_net;

static void point_make(point_net *pn, uint64_t seed)
{
    tu_rng r = {seed};
    for (size_t l = 0; l < NL; l++) {
        size_t in = sizes[l], out = sizes[l + 1];
        pn->w[l] = malloc(in * out * sizeof(float));
        pn->b[l] = malloc(out * sizeof(float));
        ck_assert(pn->w[l] && pn->b[l]);
        for (size_t i = 0; i < in * out; i++)
            pn->w[l][i] = i % 4 == 3 ? 0.0f : (float)(tu_normal(&r) * 1.2 / sqrt((double)in));
        for (size_t i = 0; i < out; i++)
            pn->b[l][i] = (float)(0.3 * tu_normal(&r));
    }
}

static void point_free(point_net *pn)
{
    for (size_t l = 0; l < NL; l++) {
        free(pn->w[l]);
        free(pn->b[l]);
    }
}

/* The point network in double: hidden layers act, the last is linear;
 * softmax for a categorical model.  out gets sizes[NL] values. */
static void point_forward(const point_net *pn, bnn_activation act, int softmax, const float *x,
                          double *y)
{
    double h[16], a[16];
    for (size_t i = 0; i < sizes[0]; i++)
        h[i] = x[i];
    for (size_t l = 0; l < NL; l++) {
        size_t in = sizes[l], out = sizes[l + 1];
        for (size_t j = 0; j < out; j++) {
            double s = pn->b[l][j];
            for (size_t i = 0; i < in; i++)
                s += (double)pn->w[l][j * in + i] * h[i];
            a[j] = l + 1 < NL ? (act == BNN_ACT_RELU ? (s > 0 ? s : 0) : tanh(s)) : s;
        }
        memcpy(h, a, out * sizeof(double));
    }
    size_t k = sizes[NL];
    if (!softmax) {
        memcpy(y, h, k * sizeof(double));
        return;
    }
    double mx = h[0], z = 0.0;
    for (size_t c = 1; c < k; c++)
        mx = h[c] > mx ? h[c] : mx;
    for (size_t c = 0; c < k; c++)
        z += exp(h[c] - mx);
    for (size_t c = 0; c < k; c++)
        y[c] = exp(h[c] - mx) / z;
}

static bnn_guide *guide_from_point(bnn_model *m, const point_net *pn, bnn_point_sigma mode,
                                   float delta, float floor_)
{
    bnn_guide *g;
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.init_sigma = 0.5f; /* overwritten: a stale sigma would show */
    ck_assert_int_eq(bnn_guide_create(m, &gc, &g), BNN_OK);
    for (size_t l = 0; l < NL; l++) {
        size_t in, out;
        ck_assert_int_eq(bnn_model_layer_shape(m, l, &in, &out), BNN_OK);
        ck_assert_int_eq(bnn_guide_set_layer_from_point(g, l, pn->w[l], in * out, pn->b[l], out,
                                                        mode, delta, floor_),
                         BNN_OK);
    }
    return g;
}

/* With the smallest sigma, the sampled predictions are the point
 * network's, in every sampling mode, for both likelihoods and
 * activations. */
START_TEST(test_smallest_sigma_predicts_as_point_network)
{
    bnn_activation act = _i % 2 ? BNN_ACT_TANH : BNN_ACT_RELU;
    int gaussian = _i / 2;
    bnn_model *m = model(act, gaussian ? BNN_LIK_GAUSSIAN : BNN_LIK_CATEGORICAL);
    point_net pn;
    point_make(&pn, 21 + (uint64_t)_i);
    bnn_guide *g = guide_from_point(m, &pn, _i % 2 ? BNN_POINT_MOPED : BNN_POINT_CONSTANT, 0.0f,
                                    1e-30f);
    enum { N = 9 };
    float x[N * 5], got[N * 3], var[N * 3];
    tu_rng r = {77};
    tu_fill_uniform(&r, x, N * 5, -2.0f, 2.0f);
    const size_t K = sizes[NL];
    bnn_sampling modes[] = {BNN_SAMPLING_MARGINAL, BNN_SAMPLING_NETWORKS, BNN_SAMPLING_MEAN};
    for (size_t s = 0; s < 3; s++) {
        bnn_predict_config pc;
        bnn_predict_config_init(&pc);
        pc.num_samples = 8;
        pc.sampling = modes[s];
        bnn_predictor *p;
        ck_assert_int_eq(bnn_predictor_create(g, &pc, N, &p), BNN_OK);
        if (gaussian)
            ck_assert_int_eq(bnn_predictor_regression(p, x, N, got, var), BNN_OK);
        else
            ck_assert_int_eq(bnn_predictor_probs(p, x, N, got), BNN_OK);
        bnn_predictor_free(p);
        for (size_t i = 0; i < N; i++) {
            double ref[3];
            point_forward(&pn, act, !gaussian, x + i * 5, ref);
            for (size_t c = 0; c < K; c++) {
                ck_assert_msg(tu_close(got[i * K + c], ref[c], 2e-6, 2e-6),
                              "mode %zu input %zu output %zu: %.9g, point network %.9g", s, i,
                              c, (double)got[i * K + c], ref[c]);
                if (gaussian) /* the noise only: no epistemic part */
                    tu_assert_close(var[i * K + c], 0.3 * 0.3, 0, 1e-6);
            }
        }
    }
    bnn_guide_free(g);
    point_free(&pn);
    bnn_model_free(m);
}
END_TEST

/* MOPED: mu = w exactly, sigma = max(delta |w|, floor) through the
 * softplus round trip; NULL biases are 0 with the floor's sigma;
 * CONSTANT gives max(delta, floor) everywhere. */
START_TEST(test_moped_sigmas)
{
    bnn_model *m = model(BNN_ACT_RELU, BNN_LIK_CATEGORICAL);
    point_net pn;
    point_make(&pn, 5);
    const float delta = 0.1f, floor_ = 1e-4f;
    bnn_guide *g = guide_from_point(m, &pn, BNN_POINT_MOPED, delta, floor_);
    ck_assert_int_eq(bnn_guide_set_layer_from_point(g, 2, pn.w[2], 18, NULL, 12345,
                                                    BNN_POINT_MOPED, delta, floor_),
                     BNN_OK);
    size_t zeros = 0, floored = 0;
    for (size_t l = 0; l < NL; l++) {
        size_t in = sizes[l], out = sizes[l + 1];
        float w[42], ws[42], b[7], bs[7];
        ck_assert_int_eq(bnn_guide_get_layer_v2(g, l, w, ws, 42, b, bs, 7), BNN_OK);
        for (size_t i = 0; i < in * out; i++) {
            double v = pn.w[l][i], want = fmax(delta * fabs(v), floor_);
            ck_assert(w[i] == pn.w[l][i]);
            ck_assert_msg(tu_close(ws[i], want, 0, 1e-5), "layer %zu w %zu: sigma %.9g, "
                          "delta |w| %.9g", l, i, (double)ws[i], want);
            zeros += v == 0.0;
            floored += want == floor_;
        }
        for (size_t i = 0; i < out; i++) {
            double v = l == 2 ? 0.0 : pn.b[l][i], want = fmax(delta * fabs(v), floor_);
            ck_assert(b[i] == (float)v);
            tu_assert_close(bs[i], want, 0, 1e-5);
        }
    }
    ck_assert_uint_gt(zeros, 5);
    ck_assert_uint_ge(floored, zeros);

    ck_assert_int_eq(bnn_guide_set_layer_from_point(g, 0, pn.w[0], 35, pn.b[0], 7,
                                                    BNN_POINT_CONSTANT, 0.05f, floor_),
                     BNN_OK);
    float ws[35], bs[7];
    ck_assert_int_eq(bnn_guide_get_layer_v2(g, 0, NULL, ws, 35, NULL, bs, 7), BNN_OK);
    for (size_t i = 0; i < 35; i++)
        tu_assert_close(ws[i], 0.05, 0, 1e-5);
    for (size_t i = 0; i < 7; i++)
        tu_assert_close(bs[i], 0.05, 0, 1e-5);
    bnn_guide_free(g);
    point_free(&pn);
    bnn_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("guide");
    TCase *tc = tcase_create("layers");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_layer_shape);
    tcase_add_test(tc, test_v2_round_trip);
    tcase_add_loop_test(tc, test_smallest_sigma_predicts_as_point_network, 0, 4);
    tcase_add_test(tc, test_moped_sigmas);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
