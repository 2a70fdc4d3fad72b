/* Networks described as a layer sequence (bnn_model_config.layers): shapes,
 * parameter layout, the stride of size-versioned entries, equivalence with
 * layer_sizes, and what the other modules accept. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "testutil.h"

/* 12 x 10 x 2 input; conv 3x3 -> 4 (pad 1) ; max pool; conv 3x2 -> 3
 * (stride 2, no padding); flatten; dense 7; dense 5. */
static size_t small_cnn(bnn_layer_spec *s)
{
    for (size_t i = 0; i < 6; i++)
        bnn_layer_spec_init(&s[i]);
    s[0].kind = BNN_LAYER_CONV2D, s[0].units = 4, s[0].pad_h = s[0].pad_w = 1;
    s[1].kind = BNN_LAYER_MAXPOOL2;
    s[2].kind = BNN_LAYER_CONV2D, s[2].units = 3, s[2].kernel_w = 2;
    s[2].stride_h = s[2].stride_w = 2;
    s[3].kind = BNN_LAYER_FLATTEN;
    s[4].units = 7;
    s[5].units = 5;
    return 6;
}

static bnn_model_config seq_config(const bnn_layer_spec *s, size_t n, size_t h, size_t w,
                                   size_t ch)
{
    bnn_model_config c;
    bnn_model_config_init(&c);
    c.n_layers = n;
    c.layers = s;
    c.input_height = h, c.input_width = w, c.input_channels = ch;
    return c;
}

START_TEST(test_cnn_shapes)
{
    bnn_layer_spec s[6];
    size_t n = small_cnn(s);
    bnn_model_config c = seq_config(s, n, 12, 10, 2);
    bnn_model *m = NULL;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_OK);
    ck_assert_uint_eq(bnn_model_input_size(m), 240);
    ck_assert_uint_eq(bnn_model_output_size(m), 5);
    ck_assert_uint_eq(bnn_model_layer_count(m), 4);
    /* conv1: 12x10x4 -> pool 6x5x4; conv2: (6-3)/2+1 = 2, (5-2)/2+1 = 2 */
    static const size_t want_in[] = {3 * 3 * 2, 3 * 2 * 4, 2 * 2 * 3, 7};
    static const size_t want_out[] = {4, 3, 7, 5};
    size_t params = 0;
    for (size_t l = 0; l < 4; l++) {
        size_t in = 0, out = 0;
        ck_assert_int_eq(bnn_model_layer_shape(m, l, &in, &out), BNN_OK);
        ck_assert_uint_eq(in, want_in[l]);
        ck_assert_uint_eq(out, want_out[l]);
        params += (in + 1) * out;
    }
    ck_assert_uint_eq(params, 282);
    ck_assert_uint_eq(bnn_model_param_count(m), 282);

    bnn_model_config back;
    bnn_model_config_init(&back);
    ck_assert_int_eq(bnn_model_get_config(m, &back), BNN_OK);
    ck_assert_uint_eq(back.n_layers, 6);
    ck_assert_uint_eq(back.input_height, 12);
    ck_assert_uint_eq(back.input_width, 10);
    ck_assert_uint_eq(back.input_channels, 2);
    static const size_t widths[] = {240, 6 * 5 * 4, 2 * 2 * 3, 7, 5};
    ck_assert_uint_eq(back.n_sizes, 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_uint_eq(back.layer_sizes[i], widths[i]);
    ck_assert_int_eq(back.layers[2].kind, BNN_LAYER_CONV2D);
    ck_assert_uint_eq(back.layers[2].kernel_w, 2);
    ck_assert_uint_eq(back.layers[2].stride_h, 2);

    /* The configuration read back makes the same model. */
    bnn_model *m2 = NULL;
    ck_assert_int_eq(bnn_model_create(&back, &m2), BNN_OK);
    ck_assert_uint_eq(bnn_model_param_count(m2), 282);
    bnn_model_free(m2);

    /* A guide lays the kernel out as [o][ky][kx][c] rows of the layer's
     * out x in matrix and initialises it with fan-in kernel_h kernel_w c. */
    bnn_guide *g = NULL;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    float wmu[24 * 3], bmu[3];
    ck_assert_int_eq(bnn_guide_get_layer_v2(g, 1, wmu, NULL, 24 * 3, bmu, NULL, 3), BNN_OK);
    ck_assert_int_eq(bnn_guide_get_layer_v2(g, 1, wmu, NULL, 24 * 3 - 1, NULL, NULL, 0),
                     BNN_E_SHAPE);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

/* A dense sequence is the layer_sizes MLP: same parameters, same guide. */
START_TEST(test_dense_sequence_is_mlp)
{
    const size_t sizes[] = {6, 5, 3};
    bnn_model *a = tu_model(sizes, 3, BNN_ACT_TANH, BNN_LIK_CATEGORICAL, 1.0f, NULL);
    bnn_layer_spec s[3];
    for (size_t i = 0; i < 3; i++)
        bnn_layer_spec_init(&s[i]);
    s[0].kind = BNN_LAYER_FLATTEN;
    s[1].units = 5;
    s[2].units = 3;
    bnn_model_config c = seq_config(s, 3, 2, 3, 1);
    c.activation = BNN_ACT_TANH;
    bnn_model *b = NULL;
    ck_assert_int_eq(bnn_model_create(&c, &b), BNN_OK);
    ck_assert_uint_eq(bnn_model_param_count(a), bnn_model_param_count(b));
    ck_assert_uint_eq(bnn_model_input_size(b), 6);
    bnn_guide *ga = NULL, *gb = NULL;
    ck_assert_int_eq(bnn_guide_create(a, NULL, &ga), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(b, NULL, &gb), BNN_OK);
    size_t na = 0, nb = 0;
    const float *pa = bnn_guide_params(ga, &na), *pb = bnn_guide_params(gb, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(pa, pb, na * sizeof *pa), 0);

    /* It trains and predicts as the MLP does. */
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    bnn_svi_config sc = tu_svi(4);
    bnn_optimizer *o = NULL;
    ck_assert_int_eq(bnn_optimizer_create(gb, &oc, &sc, &o), BNN_OK);
    const float x[4 * 6] = {0.5f, -1, 0.25f, 2, 0, 1, 1, 1, -1, 0, 0.5f, 0.5f,
                            0,    2,  -2,    1, 1, 0, 3, 0, 0,  1, -1,   0.5f};
    const int32_t y[4] = {0, 1, 2, 1};
    bnn_svi_stats st;
    bnn_svi_stats_init(&st);
    ck_assert_int_eq(bnn_svi_step(o, x, y, NULL, 4, &st), BNN_OK);
    ck_assert(isfinite(st.loss));
    float probs[4 * 3];
    ck_assert_int_eq(bnn_predict(gb, x, 4, 3, 1, probs), BNN_OK);
    bnn_optimizer_free(o);
    bnn_guide_free(ga);
    bnn_guide_free(gb);
    bnn_model_free(a);
    bnn_model_free(b);
}
END_TEST

/* An entry array built by a newer caller, with fields this library does
 * not know, is read at its own stride. */
struct newer_spec {
    bnn_layer_spec known;
    double future[3];
};

START_TEST(test_entry_stride)
{
    struct newer_spec s[3];
    memset(s, 0xff, sizeof s);
    for (size_t i = 0; i < 3; i++) {
        bnn_layer_spec_init(&s[i].known);
        s[i].known.struct_size = sizeof s[i];
    }
    s[0].known.kind = BNN_LAYER_CONV2D, s[0].known.units = 2;
    s[0].known.kernel_h = 2, s[0].known.kernel_w = 1;
    s[1].known.kind = BNN_LAYER_AVGPOOL2;
    s[2].known.units = 3;
    bnn_model_config c = seq_config(&s[0].known, 3, 5, 4, 3);
    bnn_model *m = NULL;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_OK);
    /* conv 2x1 on 5x4x3: 4x4x2, pooled 2x2x2 = 8 inputs to the dense layer */
    size_t in = 0, out = 0;
    ck_assert_int_eq(bnn_model_layer_shape(m, 0, &in, &out), BNN_OK);
    ck_assert_uint_eq(in, 2 * 1 * 3);
    ck_assert_uint_eq(out, 2);
    ck_assert_int_eq(bnn_model_layer_shape(m, 1, &in, &out), BNN_OK);
    ck_assert_uint_eq(in, 8);
    ck_assert_uint_eq(out, 3);
    bnn_model_free(m);

    /* An older caller's shorter entries (up to activation) read too. */
    const size_t old = offsetof(bnn_layer_spec, activation) + sizeof(bnn_activation);
    unsigned char raw[3 * sizeof(bnn_layer_spec)];
    memset(raw, 0, sizeof raw);
    for (size_t i = 0; i < 3; i++) {
        bnn_layer_spec e;
        bnn_layer_spec_init(&e);
        e.struct_size = old;
        e.kind = s[i].known.kind;
        e.units = s[i].known.units;
        e.kernel_h = s[i].known.kernel_h, e.kernel_w = s[i].known.kernel_w;
        memcpy(raw + i * old, &e, old);
    }
    c.layers = (const bnn_layer_spec *)(const void *)raw;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_OK);
    ck_assert_uint_eq(bnn_model_param_count(m), 2 * 6 + 2 + 3 * 8 + 3);
    bnn_model_free(m);
}
END_TEST

/* Per-layer priors train (tests/test_layer_prior.c checks the numbers in
 * depth): the first step's analytic KL is each layer's against its own
 * prior. */
START_TEST(test_layer_prior_trains)
{
    bnn_layer_spec s[2];
    for (size_t i = 0; i < 2; i++)
        bnn_layer_spec_init(&s[i]);
    s[0].units = 4;
    s[0].prior = BNN_PRIOR_NORMAL;
    s[0].prior_sigma = 0.25f;
    s[1].units = 3;
    bnn_model_config c = seq_config(s, 2, 1, 1, 5);
    c.prior_sigma = 3.0f;
    bnn_model *m = NULL;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_OK);
    bnn_guide *g = NULL;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    size_t n = 0;
    const float *p = bnn_guide_params(g, &n);
    size_t P = n / 2, first = 4 * 5 + 4;
    ck_assert_uint_eq(P, first + 3 * 4 + 3);
    double kl = 0.0;
    for (size_t i = 0; i < P; i++) {
        double ps = i < first ? 0.25 : 3.0, mu = p[i], r = p[P + i];
        double sg = r > 0 ? r + log1p(exp(-r)) : log1p(exp(r));
        kl += log(ps / sg) + (sg * sg + mu * mu) / (2.0 * ps * ps) - 0.5;
    }
    bnn_svi_config sc = tu_svi(10);
    bnn_optimizer *o = NULL;
    ck_assert_int_eq(bnn_optimizer_create(g, NULL, &sc, &o), BNN_OK);
    const float x[5] = {0.5f, -1.0f, 0.25f, 2.0f, 0.0f};
    const int32_t y[1] = {2};
    bnn_svi_stats st;
    bnn_svi_stats_init(&st);
    ck_assert_int_eq(bnn_svi_step(o, x, y, NULL, 1, &st), BNN_OK);
    tu_assert_close(st.kl, kl, 1e-6, 2e-6);
    bnn_optimizer_free(o);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

/* What is described but not yet handled is refused cleanly by the modules
 * that do not handle it; the model and guide themselves work. */
START_TEST(test_refused_where_unhandled)
{
    bnn_layer_spec s[6];
    size_t n = small_cnn(s);
    bnn_model_config c = seq_config(s, n, 12, 10, 2);
    bnn_model *m = NULL;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_OK);
    bnn_guide *g = NULL;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    bnn_svi_config sc = tu_svi(10);
    /* Training handles it (tests/test_conv.c checks the values), but not
     * with the default estimator, local reparameterization. */
    bnn_optimizer *o = (bnn_optimizer *)0x1;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_UNSUPPORTED);
    ck_assert_ptr_eq(o, (bnn_optimizer *)0x1);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "local reparameterization"));
    sc.estimator = BNN_EST_FLIPOUT;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_OK);
    float *x = calloc(240, sizeof *x), probs[5];
    ck_assert_ptr_nonnull(x);
    int32_t y = 3;
    bnn_svi_stats ss;
    bnn_svi_stats_init(&ss);
    ck_assert_int_eq(bnn_svi_step(o, x, &y, NULL, 1, &ss), BNN_OK);
    ck_assert(isfinite(ss.loss) && ss.loss > 0.0);
    ck_assert_uint_eq(bnn_optimizer_step_count(o), 1);
    bnn_optimizer_free(o);
    /* Prediction (test_predict_conv checks the values): probabilities. */
    ck_assert_int_eq(bnn_predict(g, x, 1, 2, 1, probs), BNN_OK);
    double sum = 0;
    for (int k = 0; k < 5; k++) {
        ck_assert(probs[k] > 0.0f && probs[k] < 1.0f);
        sum += probs[k];
    }
    ck_assert(fabs(sum - 1.0) < 1e-5);
    /* Saving: format version 4, the sequence stored (test_io checks the
     * bytes): 24 header + 32 model + 28 shape + 6 x 84 entries + 8 + 8 P + 4. */
    size_t size = 0;
    ck_assert_int_eq(bnn_save_size(g, NULL, &size), BNN_OK);
    ck_assert_uint_eq(size, 24 + 32 + 28 + 6 * 84 + 8 + 8 * 282 + 4);
    free(x);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("sequence");
    tcase_add_test(tc, test_cnn_shapes);
    tcase_add_test(tc, test_dense_sequence_is_mlp);
    tcase_add_test(tc, test_entry_stride);
    tcase_add_test(tc, test_layer_prior_trains);
    tcase_add_test(tc, test_refused_where_unhandled);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
