/* Model, guide and optimizer handles: configuration, validation, layout,
 * initialisation statistics, get/set of layers, old-struct compatibility. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "testutil.h"

static bnn_model *make(const size_t *sizes, size_t n)
{
    return tu_model(sizes, n, BNN_ACT_RELU, BNN_LIK_CATEGORICAL, 1.0f, NULL);
}

static bnn_model *make_gaussian_1x1(void)
{
    const size_t sizes[] = {1, 1};
    return tu_model(sizes, 2, BNN_ACT_RELU, BNN_LIK_GAUSSIAN, 1.0f, NULL);
}

START_TEST(test_model_queries)
{
    const size_t sizes[] = {784, 1024, 10};
    bnn_model *m = make(sizes, 3);
    ck_assert_uint_eq(bnn_model_input_size(m), 784);
    ck_assert_uint_eq(bnn_model_output_size(m), 10);
    ck_assert_uint_eq(bnn_model_layer_count(m), 2);
    ck_assert_uint_eq(bnn_model_param_count(m), 784 * 1024 + 1024 + 1024 * 10 + 10);
    bnn_model_config back = {.struct_size = sizeof back};
    ck_assert_int_eq(bnn_model_get_config(m, &back), BNN_OK);
    ck_assert_uint_eq(back.n_sizes, 3);
    ck_assert_uint_eq(back.layer_sizes[1], 1024);
    ck_assert_int_eq(back.activation, BNN_ACT_RELU);
    ck_assert(back.prior_sigma == 1.0f);
    bnn_model_free(m);
    bnn_model_free(NULL);
    ck_assert_uint_eq(bnn_model_input_size(NULL), 0);
    ck_assert_uint_eq(bnn_model_param_count(NULL), 0);
}
END_TEST

START_TEST(test_model_validation)
{
    const size_t good[] = {4, 3, 2}, zero[] = {4, 0, 2}, one_class[] = {4, 1};
    const size_t huge[] = {SIZE_MAX / 2, SIZE_MAX / 2, 2};
    bnn_model_config c;
    bnn_model *m = (bnn_model *)0x1;
    bnn_model_config_init(&c);
    c.layer_sizes = good;
    c.n_sizes = 1;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_INVALID);
    c.n_sizes = BNN_MAX_LAYERS + 1;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_SHAPE);
    c.n_sizes = 3;
    c.layer_sizes = NULL;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_INVALID);
    c.layer_sizes = zero;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_SHAPE);
    c.layer_sizes = huge;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_SHAPE);
    c.layer_sizes = one_class;
    c.n_sizes = 2;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_SHAPE);
    c.layer_sizes = good;
    c.n_sizes = 3;
    c.activation = (bnn_activation)7;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_INVALID);
    c.activation = BNN_ACT_TANH;
    c.prior_sigma = 0.0f;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_INVALID);
    c.prior_sigma = NAN;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_INVALID);
    c.prior_sigma = 1.0f;
    c.prior = BNN_PRIOR_SCALE_MIXTURE;
    c.prior_pi = 1.0f;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_INVALID);
    c.prior_pi = 0.25f;
    c.prior_sigma2 = -1.0f;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_INVALID);
    c.prior_sigma2 = 0.01f;
    c.likelihood = BNN_LIK_GAUSSIAN;
    c.noise_sigma = INFINITY;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_INVALID);
    c.noise_sigma = 0.5f;
    c.struct_size = 4;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_E_INVALID);
    ck_assert_ptr_eq(m, (bnn_model *)0x1); /* untouched on every error */
    ck_assert_int_eq(bnn_model_create(NULL, &m), BNN_E_INVALID);
    c.struct_size = sizeof c;
    ck_assert_int_eq(bnn_model_create(&c, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_OK);
    bnn_model_free(m);
}
END_TEST

/* A caller compiled against a shorter, older config struct: the fields it
 * does not know take their defaults. */
START_TEST(test_old_struct_size)
{
    const size_t sizes[] = {3, 2};
    bnn_model_config c;
    bnn_model_config_init(&c);
    c.n_sizes = 2;
    c.layer_sizes = sizes;
    c.prior_sigma = -5.0f; /* beyond the old size: must be ignored */
    c.struct_size = offsetof(bnn_model_config, prior_sigma);
    bnn_model *m;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_OK);
    bnn_model_config back = {.struct_size = sizeof back};
    ck_assert_int_eq(bnn_model_get_config(m, &back), BNN_OK);
    ck_assert(back.prior_sigma == 1.0f);
    bnn_model_free(m);
}
END_TEST

START_TEST(test_guide_layout_and_init)
{
    const size_t sizes[] = {200, 100, 10};
    bnn_model *m = make(sizes, 3);
    bnn_guide *g;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    ck_assert_ptr_eq(bnn_guide_model(g), m);
    size_t n, ng;
    float *p = bnn_guide_params(g, &n);
    ck_assert_ptr_nonnull(bnn_guide_grads(g, &ng));
    ck_assert_uint_eq(n, 2 * bnn_model_param_count(m));
    ck_assert_uint_eq(ng, n);
    /* Default init: weights ~ N(0, 2/fan_in), biases 0, sigma 1e-3. */
    float *wm = malloc(200 * 100 * sizeof *wm), *ws = malloc(200 * 100 * sizeof *ws);
    float bm[100], bs[100];
    ck_assert_int_eq(bnn_guide_get_layer(g, 0, wm, ws, bm, bs), BNN_OK);
    double s1 = 0, s2 = 0;
    for (int i = 0; i < 20000; i++) {
        s1 += wm[i];
        s2 += (double)wm[i] * wm[i];
        tu_assert_close(ws[i], 1e-3, 0, 1e-4);
    }
    double mean = s1 / 20000, var = s2 / 20000 - mean * mean;
    ck_assert_msg(fabs(mean) < 4 * sqrt(0.01 / 20000), "mean %g", mean);
    tu_assert_close(var, 2.0 / 200, 0, 0.05);
    for (int i = 0; i < 100; i++) {
        ck_assert(bm[i] == 0.0f);
        tu_assert_close(bs[i], 1e-3, 0, 1e-4);
    }
    /* Layer 0 weights are the first block of the mu half. */
    ck_assert_int_eq(memcmp(p, wm, 200 * 100 * sizeof *wm), 0);
    free(wm);
    free(ws);
    bnn_guide_free(g);

    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.init = BNN_INIT_PYRO;
    ck_assert_int_eq(bnn_guide_create(m, &gc, &g), BNN_OK);
    p = bnn_guide_params(g, &n);
    s1 = s2 = 0;
    for (size_t i = 0; i < n; i++) {
        s1 += p[i];
        s2 += (double)p[i] * p[i];
    }
    mean = s1 / (double)n;
    var = s2 / (double)n - mean * mean;
    ck_assert_msg(fabs(mean) < 4 / sqrt((double)n), "pyro init mean %g", mean);
    tu_assert_close(var, 1.0, 0, 0.02);
    bnn_guide_free(g);
    bnn_guide_free(NULL);
    bnn_model_free(m);
}
END_TEST

START_TEST(test_guide_set_get_roundtrip)
{
    const size_t sizes[] = {3, 2};
    bnn_model *m = make(sizes, 2);
    bnn_guide *g;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    const float wm[6] = {1, -2, 3, 0.5f, 0.25f, -0.125f}, ws[6] = {0.1f, 0.2f, 1, 2, 1e-5f, 30};
    const float bm[2] = {0.5f, -0.5f}, bs[2] = {0.01f, 4};
    ck_assert_int_eq(bnn_guide_set_layer(g, 0, wm, ws, bm, bs), BNN_OK);
    float wm2[6], ws2[6], bm2[2], bs2[2];
    ck_assert_int_eq(bnn_guide_get_layer(g, 0, wm2, ws2, bm2, bs2), BNN_OK);
    for (int i = 0; i < 6; i++) {
        ck_assert(wm2[i] == wm[i]);
        tu_assert_close(ws2[i], ws[i], 0, 1e-5);
    }
    for (int i = 0; i < 2; i++) {
        ck_assert(bm2[i] == bm[i]);
        tu_assert_close(bs2[i], bs[i], 0, 1e-5);
    }
    /* rho is softplus^-1(sigma): check one stored value directly. */
    const float *p = bnn_guide_params(g, NULL);
    tu_assert_close(p[8 + 2], log(expm1(1.0)), 1e-6, 1e-6);
    /* Invalid values change nothing. */
    float bad_s[6] = {1, 1, 1, 1, 1, 0};
    float nan_m[2] = {0, NAN};
    ck_assert_int_eq(bnn_guide_set_layer(g, 0, wm, bad_s, NULL, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_guide_set_layer(g, 0, NULL, NULL, nan_m, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_guide_set_layer(g, 1, wm, NULL, NULL, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_guide_set_layer(NULL, 0, wm, NULL, NULL, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_guide_get_layer(g, 0, wm2, ws2, bm2, bs2), BNN_OK);
    tu_assert_close(ws2[5], 30, 0, 1e-5);
    ck_assert(bm2[1] == -0.5f);
    /* Tiny sigma is kept positive and usable. */
    const float tiny[6] = {1e-38f, 1e-38f, 1e-38f, 1e-38f, 1e-38f, 1e-38f};
    ck_assert_int_eq(bnn_guide_set_layer(g, 0, NULL, tiny, NULL, NULL), BNN_OK);
    ck_assert_int_eq(bnn_guide_get_layer(g, 0, NULL, ws2, NULL, NULL), BNN_OK);
    for (int i = 0; i < 6; i++)
        ck_assert(ws2[i] > 0.0f && ws2[i] <= 1.01e-30f);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

START_TEST(test_optimizer_validation)
{
    const size_t sizes[] = {3, 2};
    bnn_model_config c;
    bnn_model_config_init(&c);
    c.n_sizes = 2;
    c.layer_sizes = sizes;
    c.prior = BNN_PRIOR_SCALE_MIXTURE;
    bnn_model *m;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_OK);
    bnn_guide *g;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    bnn_optimizer *o = (bnn_optimizer *)0x1;
    bnn_optimizer_config oc;
    bnn_svi_config sc;
    bnn_optimizer_config_init(&oc);
    bnn_svi_config_init(&sc);
    /* The mixture prior has no analytic KL. */
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_INVALID);
    sc.kl_mode = BNN_KL_MONTE_CARLO;
    oc.lr = 0.0f;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_INVALID);
    oc.lr = 1e-3f;
    oc.beta1 = 1.0f;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_INVALID);
    oc.beta1 = 0.9f;
    sc.dataset_size = 0;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_INVALID);
    sc.dataset_size = 10;
    sc.num_particles = 0;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_INVALID);
    sc.num_particles = 1;
    sc.estimator = (bnn_estimator)9;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_INVALID);
    sc.estimator = BNN_EST_FLIPOUT;
    sc.kl_weight = -1.0f;
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_E_INVALID);
    sc.kl_weight = 1.0f;
    ck_assert_ptr_eq(o, (bnn_optimizer *)0x1);
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_OK);
    ck_assert_int_eq(bnn_optimizer_set_lr(o, -1.0f), BNN_E_INVALID);
    ck_assert_int_eq(bnn_optimizer_set_lr(o, 0.5f), BNN_OK);
    bnn_optimizer_config oc2 = {.struct_size = sizeof oc2};
    bnn_svi_config sc2 = {.struct_size = sizeof sc2};
    ck_assert_int_eq(bnn_optimizer_get_config(o, &oc2, &sc2), BNN_OK);
    ck_assert(oc2.lr == 0.5f);
    ck_assert_int_eq(sc2.estimator, BNN_EST_FLIPOUT);
    ck_assert_uint_eq(sc2.dataset_size, 10);
    bnn_optimizer_free(o);
    bnn_optimizer_free(NULL);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

/* One SGD and two Adam steps on a hand-set gradient, against the update
 * rules written out here. */
START_TEST(test_optimizer_rules)
{
    bnn_model *m = make_gaussian_1x1();
    for (int kind = 0; kind < 3; kind++) {
        bnn_guide *g;
        ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
        bnn_optimizer_config oc;
        bnn_optimizer_config_init(&oc);
        oc.kind = kind == 0 ? BNN_OPT_ADAM : BNN_OPT_SGD;
        oc.lr = 0.1f;
        oc.momentum = kind == 2 ? 0.5f : 0.0f;
        bnn_optimizer *o;
        bnn_svi_config sc = tu_svi(100);
        ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_OK);
        size_t n;
        float *p = bnn_guide_params(g, &n), *gr = bnn_guide_grads(g, NULL);
        ck_assert_uint_eq(n, 4);
        double ref[4], mom[4] = {0}, v[4] = {0};
        for (size_t i = 0; i < 4; i++)
            ref[i] = p[i];
        const float grads[2][4] = {{0.5f, -2.0f, 1e-3f, 4.0f}, {-0.25f, 1.0f, 3.0f, 0.0f}};
        for (int t = 1; t <= 2; t++) {
            memcpy(gr, grads[t - 1], sizeof grads[0]);
            ck_assert_int_eq(bnn_optimizer_step(o), BNN_OK);
            for (size_t i = 0; i < 4; i++) {
                double gi = grads[t - 1][i];
                if (kind == 0) {
                    mom[i] = 0.9 * mom[i] + 0.1 * gi;
                    v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                    double mh = mom[i] / (1 - pow(0.9, t)), vh = v[i] / (1 - pow(0.999, t));
                    ref[i] -= 0.1 * mh / (sqrt(vh) + 1e-8);
                } else if (kind == 1) {
                    ref[i] -= 0.1 * gi;
                } else {
                    mom[i] = t == 1 ? gi : 0.5 * mom[i] + gi;
                    ref[i] -= 0.1 * mom[i];
                }
                tu_assert_close(p[i], ref[i], 1e-6, 1e-5);
            }
        }
        ck_assert_uint_eq(bnn_optimizer_step_count(o), 2);
        bnn_optimizer_free(o);
        bnn_guide_free(g);
    }
    bnn_model_free(m);
}
END_TEST

START_TEST(test_clip_norm)
{
    bnn_model *m = make_gaussian_1x1();
    bnn_guide *g;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.kind = BNN_OPT_SGD;
    oc.lr = 1.0f;
    oc.clip_norm = 1.0f;
    bnn_optimizer *o;
    bnn_svi_config sc = tu_svi(100);
    ck_assert_int_eq(bnn_optimizer_create(g, &oc, &sc, &o), BNN_OK);
    float *p = bnn_guide_params(g, NULL), *gr = bnn_guide_grads(g, NULL);
    float before[4];
    memcpy(before, p, sizeof before);
    const float grads[4] = {3, 0, 0, 4}; /* norm 5 -> scaled to 1 */
    memcpy(gr, grads, sizeof grads);
    ck_assert_int_eq(bnn_optimizer_step(o), BNN_OK);
    for (int i = 0; i < 4; i++)
        tu_assert_close(before[i] - p[i], grads[i] / 5.0, 1e-5, 1e-5);
    bnn_optimizer_free(o);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

/* Every allocation goes through the model's allocator, and all are freed. */
/* One optimizer per guide: a second is refused until the first is freed. */
START_TEST(test_one_optimizer_per_guide)
{
    const size_t sizes[] = {3, 4, 2};
    bnn_model *m = make(sizes, 3);
    bnn_guide *g;
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    bnn_optimizer *o1, *o2 = (bnn_optimizer *)&o1;
    bnn_svi_config sc = tu_svi(100);
    ck_assert_int_eq(bnn_optimizer_create(g, NULL, &sc, &o1), BNN_OK);
    ck_assert_int_eq(bnn_optimizer_create(g, NULL, &sc, &o2), BNN_E_STATE);
    ck_assert_ptr_eq(o2, (bnn_optimizer *)&o1);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "already has an optimizer"));
    bnn_optimizer_free(o1);
    ck_assert_int_eq(bnn_optimizer_create(g, NULL, &sc, &o2), BNN_OK);
    bnn_optimizer_free(o2);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

START_TEST(test_user_allocator)
{
    tu_alloc cnt = {0};
    bnn_allocator a = tu_allocator(&cnt);
    const size_t sizes[] = {5, 4, 3};
    bnn_model_config c;
    bnn_model_config_init(&c);
    c.n_sizes = 3;
    c.layer_sizes = sizes;
    c.allocator = &a;
    bnn_model *m;
    bnn_guide *g;
    bnn_optimizer *o;
    ck_assert_int_eq(bnn_model_create(&c, &m), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    bnn_svi_config sc = tu_svi(100);
    ck_assert_int_eq(bnn_optimizer_create(g, NULL, &sc, &o), BNN_OK);
    size_t after_create = cnt.calls;
    ck_assert(after_create > 3);
    float x[10] = {0};
    int32_t y[2] = {0, 2};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(bnn_svi_step(o, x, y, NULL, 2, NULL), BNN_OK);
    ck_assert_uint_eq(cnt.calls, after_create); /* steps never allocate */
    bnn_optimizer_free(o);
    bnn_guide_free(g);
    bnn_model_free(m);
    ck_assert_int_eq(cnt.live, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("handles");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_model_queries);
    tcase_add_test(tc, test_model_validation);
    tcase_add_test(tc, test_old_struct_size);
    tcase_add_test(tc, test_guide_layout_and_init);
    tcase_add_test(tc, test_guide_set_get_roundtrip);
    tcase_add_test(tc, test_optimizer_validation);
    tcase_add_test(tc, test_optimizer_rules);
    tcase_add_test(tc, test_clip_norm);
    tcase_add_test(tc, test_one_optimizer_per_guide);
    tcase_add_test(tc, test_user_allocator);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
