/* Save/load: exact byte layout, bit-identical round trips, and a loader
 * that survives truncation, bit flips, forged fields, failing allocations
 * and failing writes without crashing or leaking. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bnn.h"
#include "internal.h"
#include "io.h"
#include "testutil.h"

/* ---- independent encoders and CRC (bitwise, no table) ------------------- */

static uint32_t ref_crc32(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static size_t w32(unsigned char *p, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[at + i] = (unsigned char)(v >> (8 * i));
    return at + 4;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t w64(unsigned char *p, size_t at, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[at + i] = (unsigned char)(v >> (8 * i));
    return at + 8;
}

static size_t wf(unsigned char *p, size_t at, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return w32(p, at, u);
}

static uint64_t r64(const unsigned char *p, size_t at)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[at + (size_t)i];
    return v;
}

/* After editing a file: fix the length field and the CRC, so only the
 * edited field can be what the loader objects to. */
static void reseal(unsigned char *p, size_t size)
{
    w64(p, 16, size);
    w32(p, size - 4, ref_crc32(p, size - 4));
}

/* ---- fixtures ------------------------------------------------------------- */

typedef struct fixture {
    bnn_model *model;
    bnn_guide *guide;
    bnn_optimizer *opt; /* NULL unless asked for */
} fixture;

/* A small Gaussian model with the mixture prior (every model field away
 * from its default), random parameters including awkward values, and an
 * optimizer that has taken a few steps. */
static void make_fixture(fixture *f, int with_opt, bnn_optimizer_kind kind)
{
    static const size_t sizes[] = {3, 4, 2};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 3;
    mc.layer_sizes = sizes;
    mc.activation = BNN_ACT_TANH;
    mc.likelihood = BNN_LIK_GAUSSIAN;
    mc.noise_sigma = 0.25f;
    /* IVON needs the Normal prior */
    mc.prior = kind == BNN_OPT_IVON ? BNN_PRIOR_NORMAL : BNN_PRIOR_SCALE_MIXTURE;
    mc.prior_sigma = 2.5f;
    mc.prior_pi = 0.3f;
    mc.prior_sigma1 = 1.5f;
    mc.prior_sigma2 = 0.01f;
    ck_assert_int_eq(bnn_model_create(&mc, &f->model), BNN_OK);
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.seed = 17;
    ck_assert_int_eq(bnn_guide_create(f->model, &gc, &f->guide), BNN_OK);
    size_t n;
    float *p = bnn_guide_params(f->guide, &n);
    tu_rng r = {5};
    tu_fill_uniform(&r, p, n, -3.0f, 3.0f);
    p[0] = -0.0f;
    p[1] = 1e-40f; /* subnormal */
    p[2] = -3.4e38f;
    f->opt = NULL;
    if (!with_opt)
        return;
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.kind = kind;
    oc.lr = 0.0125f;
    oc.beta1 = 0.8f;
    oc.beta2 = 0.99f;
    oc.eps = 1e-6f;
    oc.momentum = 0.5f;
    oc.clip_norm = 7.5f;
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    sc.dataset_size = 1000;
    sc.kl_weight = 0.5f;
    sc.estimator = BNN_EST_FLIPOUT;
    sc.kl_mode = BNN_KL_MONTE_CARLO;
    sc.num_particles = 3;
    sc.max_batch = 16;
    sc.seed = 0x123456789abcdefull;
    if (kind == BNN_OPT_IVON) {
        oc.clip_norm = 0.0f;
        oc.ivon_beta2 = 0.75f;
        oc.ivon_hess_init = 0.375f;
        oc.ivon_ess = 3000.0f;
        oc.ivon_clip_radius = 0.625f;
        sc.estimator = BNN_EST_WEIGHT_SAMPLING;
    }
    ck_assert_int_eq(bnn_optimizer_create(f->guide, &oc, &sc, &f->opt),
                     BNN_OK);
    float *g = bnn_guide_grads(f->guide, &n);
    for (int step = 0; step < 3; step++) {
        tu_fill_uniform(&r, g, n, -1.0f, 1.0f);
        ck_assert_int_eq(bnn_optimizer_step(f->opt), BNN_OK);
    }
}

static void free_fixture(fixture *f)
{
    bnn_optimizer_free(f->opt);
    bnn_guide_free(f->guide);
    bnn_model_free(f->model);
}

static unsigned char *save_mem(const fixture *f, int with_opt, size_t *size)
{
    const bnn_optimizer *o = with_opt ? f->opt : NULL;
    ck_assert_int_eq(bnn_save_size(f->guide, o, size), BNN_OK);
    unsigned char *buf = malloc(*size);
    ck_assert_ptr_nonnull(buf);
    size_t written = 0;
    ck_assert_int_eq(bnn_save_to_memory(f->guide, o, buf, *size, &written),
                     BNN_OK);
    ck_assert_uint_eq(written, *size);
    return buf;
}

/* Sentinels show whether a failing load touched its out-parameters. */
#define SENTINEL_M ((bnn_model *)(uintptr_t)0x1111)
#define SENTINEL_G ((bnn_guide *)(uintptr_t)0x2222)
#define SENTINEL_O ((bnn_optimizer *)(uintptr_t)0x3333)

static bnn_status load_expect_fail(const void *buf, size_t size,
                                   const bnn_allocator *a)
{
    bnn_model *m = SENTINEL_M;
    bnn_guide *g = SENTINEL_G;
    bnn_optimizer *o = SENTINEL_O;
    bnn_status st = bnn_load_from_memory(buf, size, a, &m, &g, &o);
    if (st == BNN_OK) {
        bnn_optimizer_free(o);
        bnn_guide_free(g);
        bnn_model_free(m);
        return st;
    }
    ck_assert(m == SENTINEL_M && g == SENTINEL_G && o == SENTINEL_O);
    ck_assert_str_ne(bnn_last_error(), "");
    return st;
}

static void assert_same_state(const fixture *a, const fixture *b)
{
    size_t na, nb;
    const float *pa = bnn_guide_params(a->guide, &na);
    const float *pb = bnn_guide_params(b->guide, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert(memcmp(pa, pb, na * sizeof(float)) == 0);

    bnn_model_config ca, cb;
    ca.struct_size = cb.struct_size = sizeof ca;
    ck_assert_int_eq(bnn_model_get_config(a->model, &ca), BNN_OK);
    ck_assert_int_eq(bnn_model_get_config(b->model, &cb), BNN_OK);
    ck_assert_uint_eq(ca.n_sizes, cb.n_sizes);
    for (size_t i = 0; i < ca.n_sizes; i++)
        ck_assert_uint_eq(ca.layer_sizes[i], cb.layer_sizes[i]);
    ck_assert_int_eq(ca.activation, cb.activation);
    ck_assert_int_eq(ca.likelihood, cb.likelihood);
    ck_assert_int_eq(ca.prior, cb.prior);
    ck_assert(ca.noise_sigma == cb.noise_sigma);
    ck_assert(ca.prior_sigma == cb.prior_sigma);
    ck_assert(ca.prior_pi == cb.prior_pi);
    ck_assert(ca.prior_sigma1 == cb.prior_sigma1);
    ck_assert(ca.prior_sigma2 == cb.prior_sigma2);

    if (!a->opt) {
        ck_assert_ptr_null(b->opt);
        return;
    }
    ck_assert_ptr_nonnull(b->opt);
    bnn_optimizer_config oa, ob;
    bnn_svi_config sa, sb;
    bnn_optimizer_config_init(&oa);
    bnn_optimizer_config_init(&ob);
    bnn_svi_config_init(&sa);
    bnn_svi_config_init(&sb);
    ck_assert_int_eq(bnn_optimizer_get_config(a->opt, &oa, &sa), BNN_OK);
    ck_assert_int_eq(bnn_optimizer_get_config(b->opt, &ob, &sb), BNN_OK);
    ck_assert_int_eq(oa.kind, ob.kind);
    ck_assert(oa.lr == ob.lr && oa.beta1 == ob.beta1 && oa.beta2 == ob.beta2);
    ck_assert(oa.eps == ob.eps && oa.momentum == ob.momentum);
    ck_assert(oa.clip_norm == ob.clip_norm);
    ck_assert(oa.ivon_beta2 == ob.ivon_beta2 && oa.ivon_hess_init == ob.ivon_hess_init);
    ck_assert(oa.ivon_ess == ob.ivon_ess && oa.ivon_clip_radius == ob.ivon_clip_radius);
    ck_assert_uint_eq(sa.dataset_size, sb.dataset_size);
    ck_assert(sa.kl_weight == sb.kl_weight);
    ck_assert_int_eq(sa.estimator, sb.estimator);
    ck_assert_int_eq(sa.kl_mode, sb.kl_mode);
    ck_assert_uint_eq(sa.num_particles, sb.num_particles);
    ck_assert_uint_eq(sa.max_batch, sb.max_batch);
    ck_assert(sa.seed == sb.seed);
    ck_assert(bnn_optimizer_step_count(a->opt) ==
              bnn_optimizer_step_count(b->opt));
    ck_assert(memcmp(a->opt->m, b->opt->m, na * sizeof(float)) == 0);
    ck_assert((a->opt->v == NULL) == (b->opt->v == NULL));
    ck_assert(!a->opt->v || memcmp(a->opt->v, b->opt->v, na * sizeof(float)) == 0);
}

/* ---- format ------------------------------------------------------------- */

START_TEST(test_crc32)
{
    /* The standard check value of CRC-32/ISO-HDLC. */
    ck_assert_uint_eq(io_crc32(0, "123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(io_crc32(0, "", 0), 0u);
    unsigned char buf[1000];
    tu_rng r = {3};
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)tu_next(&r);
    ck_assert_uint_eq(io_crc32(0, buf, sizeof buf),
                      ref_crc32(buf, sizeof buf));
    /* Chaining equals one pass. */
    ck_assert_uint_eq(io_crc32(io_crc32(0, buf, 333), buf + 333, 667),
                      ref_crc32(buf, sizeof buf));
}
END_TEST

START_TEST(test_golden_bytes)
{
    /* A 1 -> 2 categorical network, P = 2 weights + 2 biases. */
    static const size_t sizes[] = {1, 2};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 2;
    mc.layer_sizes = sizes;
    bnn_model *m;
    bnn_guide *g;
    ck_assert_int_eq(bnn_model_create(&mc, &m), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(m, NULL, &g), BNN_OK);
    size_t n;
    float *p = bnn_guide_params(g, &n);
    ck_assert_uint_eq(n, 8);
    const float vals[8] = {1.0f, -2.0f, 0.5f, 0.0f, -3.0f, -4.5f, 0.25f, 8.0f};
    memcpy(p, vals, sizeof vals);

    unsigned char want[128];
    size_t at = 0;
    static const unsigned char magic[8] = {0x89, 0x42, 0x4e, 0x4e,
                                           0x0d, 0x0a, 0x1a, 0x0a};
    memcpy(want, magic, 8);
    at = 8;
    at = w32(want, at, 1);   /* version */
    at = w32(want, at, 0);   /* flags: no optimizer */
    at = w64(want, at, 120); /* 24 + 36 + 2*8 + 8 + 8*4 + 4 */
    at = w32(want, at, 2);
    at = w64(want, at, 1);
    at = w64(want, at, 2);
    at = w32(want, at, 0); /* ReLU */
    at = w32(want, at, 0); /* categorical */
    at = w32(want, at, 0x3f800000u); /* noise_sigma 1.0f */
    at = w32(want, at, 0);           /* Normal prior */
    at = w32(want, at, 0x3f800000u); /* prior_sigma 1.0f */
    at = w32(want, at, 0x3f000000u); /* pi 0.5f */
    at = w32(want, at, 0x3f800000u); /* sigma1 1.0f */
    at = wf(want, at, mc.prior_sigma2);
    at = w64(want, at, 4);
    /* -2.0f is 0xc0000000, 8.0f is 0x41000000 */
    static const uint32_t bits[8] = {0x3f800000u, 0xc0000000u, 0x3f000000u,
                                     0x00000000u, 0xc0400000u, 0xc0900000u,
                                     0x3e800000u, 0x41000000u};
    for (int i = 0; i < 8; i++)
        at = w32(want, at, bits[i]);
    at = w32(want, at, ref_crc32(want, at));
    ck_assert_uint_eq(at, 120);

    unsigned char got[128];
    size_t written = 0, size = 0;
    ck_assert_int_eq(bnn_save_size(g, NULL, &size), BNN_OK);
    ck_assert_uint_eq(size, 120);
    ck_assert_int_eq(bnn_save_to_memory(g, NULL, got, sizeof got, &written),
                     BNN_OK);
    ck_assert_uint_eq(written, 120);
    for (size_t i = 0; i < 120; i++)
        ck_assert_msg(got[i] == want[i], "byte %zu: %02x, expected %02x", i,
                      got[i], want[i]);
    bnn_guide_free(g);
    bnn_model_free(m);
}
END_TEST

START_TEST(test_save_size_and_capacity)
{
    fixture f;
    make_fixture(&f, 1, BNN_OPT_ADAM);
    size_t s0, s1, P = bnn_model_param_count(f.model);
    ck_assert_int_eq(bnn_save_size(f.guide, NULL, &s0), BNN_OK);
    ck_assert_int_eq(bnn_save_size(f.guide, f.opt, &s1), BNN_OK);
    ck_assert_uint_eq(s0, 24 + 36 + 3 * 8 + 8 + 8 * P + 4);
    ck_assert_uint_eq(s1, s0 + 88 + 16 * P);

    unsigned char *buf = malloc(s1);
    memset(buf, 0xa5, s1);
    size_t written = 12345;
    ck_assert_int_eq(bnn_save_to_memory(f.guide, f.opt, buf, s1 - 1, &written),
                     BNN_E_SHAPE);
    ck_assert_uint_eq(written, 12345);
    for (size_t i = 0; i < s1; i++)
        ck_assert_uint_eq(buf[i], 0xa5);
    ck_assert_int_eq(bnn_save_to_memory(NULL, NULL, buf, s1, &written),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_save_to_memory(f.guide, NULL, NULL, s1, &written),
                     BNN_E_INVALID);
    ck_assert_int_eq(bnn_save_size(f.guide, NULL, NULL), BNN_E_INVALID);

    /* An optimizer of another guide is refused. */
    fixture other;
    make_fixture(&other, 1, BNN_OPT_SGD);
    ck_assert_int_eq(bnn_save_size(f.guide, other.opt, &s0), BNN_E_INVALID);
    free_fixture(&other);

    /* Non-finite parameters cannot be saved (they could not be loaded). */
    size_t n;
    float *p = bnn_guide_params(f.guide, &n);
    p[n - 1] = NAN;
    ck_assert_int_eq(bnn_save_size(f.guide, NULL, &s0), BNN_E_INVALID);
    ck_assert_int_eq(bnn_save_to_memory(f.guide, NULL, buf, s1, &written),
                     BNN_E_INVALID);
    free(buf);
    free_fixture(&f);
}
END_TEST

/* ---- round trips ---------------------------------------------------------- */

static void round_trip_memory(int with_opt, bnn_optimizer_kind kind)
{
    fixture f, l;
    make_fixture(&f, with_opt, kind);
    size_t size;
    unsigned char *buf = save_mem(&f, with_opt, &size);
    l.opt = SENTINEL_O;
    ck_assert_int_eq(bnn_load_from_memory(buf, size, NULL, &l.model, &l.guide,
                                          &l.opt),
                     BNN_OK);
    assert_same_state(&f, &l);

    /* Saving the loaded objects reproduces the file byte for byte. */
    size_t size2;
    unsigned char *buf2 = save_mem(&l, with_opt, &size2);
    ck_assert_uint_eq(size, size2);
    ck_assert(memcmp(buf, buf2, size) == 0);

    if (with_opt) {
        /* The state is complete: one more identical step keeps the two
         * trainings bit-identical. */
        size_t n;
        float *ga = bnn_guide_grads(f.guide, &n);
        float *gb = bnn_guide_grads(l.guide, &n);
        tu_rng r = {77};
        tu_fill_uniform(&r, ga, n, -2.0f, 2.0f);
        memcpy(gb, ga, n * sizeof(float));
        ck_assert_int_eq(bnn_optimizer_step(f.opt), BNN_OK);
        ck_assert_int_eq(bnn_optimizer_step(l.opt), BNN_OK);
        assert_same_state(&f, &l);
    }
    free(buf);
    free(buf2);
    free_fixture(&l);
    free_fixture(&f);
}

START_TEST(test_round_trip_guide)
{
    round_trip_memory(0, BNN_OPT_ADAM);
}
END_TEST

START_TEST(test_round_trip_adam)
{
    round_trip_memory(1, BNN_OPT_ADAM);
}
END_TEST

START_TEST(test_round_trip_sgd)
{
    round_trip_memory(1, BNN_OPT_SGD);
}
END_TEST

/* Version 2: IVON's settings and [g | h]; every other file stays version 1. */
START_TEST(test_round_trip_ivon)
{
    round_trip_memory(1, BNN_OPT_IVON);
    fixture f;
    make_fixture(&f, 1, BNN_OPT_IVON);
    size_t size, P = f.guide->n_params;
    unsigned char *buf = save_mem(&f, 1, &size);
    ck_assert_uint_eq(le32(buf + 8), 2);
    size_t opt_at = 24 + 36 + 8 * 3 + 8 + 8 * P;
    ck_assert_uint_eq(size, opt_at + 88 + 16 + 8 * P + 4);
    ck_assert_uint_eq(le32(buf + opt_at), BNN_OPT_IVON);
    ck_assert_uint_eq(le32(buf + opt_at + 88), 0x3f400000u); /* ivon_beta2 0.75 */
    /* The same bytes marked version 1 are refused: kind 2 is unknown there. */
    w32(buf, 8, 1);
    reseal(buf, size);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "unknown optimizer 2"));
    /* A Hessian estimate at or below -delta cannot come from the update. */
    w32(buf, 8, 2);
    w32(buf, opt_at + 104 + 4 * (P + 3), 0xbf800000u); /* h[3] = -1 */
    reseal(buf, size);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "Hessian"));
    /* An IVON section whose settings IVON refuses (local reparameterization). */
    w32(buf, opt_at + 104 + 4 * (P + 3), 0x3f800000u);
    w32(buf, opt_at + 40, BNN_EST_LOCAL_REPARAM);
    reseal(buf, size);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_FORMAT);
    free(buf);
    /* Adam files keep version 1. */
    fixture a;
    make_fixture(&a, 1, BNN_OPT_ADAM);
    buf = save_mem(&a, 1, &size);
    ck_assert_uint_eq(le32(buf + 8), 1);
    free(buf);
    free_fixture(&a);
    free_fixture(&f);
}
END_TEST

START_TEST(test_load_without_opt_out)
{
    fixture f;
    make_fixture(&f, 1, BNN_OPT_ADAM);
    size_t size;
    unsigned char *buf = save_mem(&f, 1, &size);
    tu_alloc c = {0};
    bnn_allocator a = tu_allocator(&c);
    bnn_model *m;
    bnn_guide *g;
    /* The optimizer section is checked but not built. */
    ck_assert_int_eq(bnn_load_from_memory(buf, size, &a, &m, &g, NULL),
                     BNN_OK);
    size_t n, n2;
    const float *pl = bnn_guide_params(g, &n);
    const float *po = bnn_guide_params(f.guide, &n2);
    ck_assert_uint_eq(n, n2);
    ck_assert(memcmp(pl, po, n * sizeof(float)) == 0);
    bnn_guide_free(g);
    bnn_model_free(m);
    ck_assert_int_eq(c.live, 0);
    ck_assert_int_gt(c.calls, 0);
    free(buf);
    free_fixture(&f);
}
END_TEST

START_TEST(test_unused_nan_fields)
{
    /* A categorical model never validates noise_sigma; a NaN there must
     * not make an unloadable file. */
    static const size_t sizes[] = {2, 3};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 2;
    mc.layer_sizes = sizes;
    mc.noise_sigma = NAN;
    mc.prior_pi = NAN;
    fixture f = {0}, l;
    ck_assert_int_eq(bnn_model_create(&mc, &f.model), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(f.model, NULL, &f.guide), BNN_OK);
    size_t size;
    unsigned char *buf = save_mem(&f, 0, &size);
    ck_assert_int_eq(bnn_load_from_memory(buf, size, NULL, &l.model, &l.guide,
                                          NULL),
                     BNN_OK);
    bnn_model_config got;
    got.struct_size = sizeof got;
    ck_assert_int_eq(bnn_model_get_config(l.model, &got), BNN_OK);
    ck_assert(got.noise_sigma == 1.0f && got.prior_pi == 0.5f);
    l.opt = NULL;
    free_fixture(&l);
    free_fixture(&f);
    free(buf);
}
END_TEST

START_TEST(test_loaded_guide_predicts_identically)
{
    static const size_t sizes[] = {4, 5, 3};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 3;
    mc.layer_sizes = sizes;
    fixture f = {0}, l = {0};
    ck_assert_int_eq(bnn_model_create(&mc, &f.model), BNN_OK);
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.init = BNN_INIT_PYRO;
    ck_assert_int_eq(bnn_guide_create(f.model, &gc, &f.guide), BNN_OK);
    size_t size;
    unsigned char *buf = save_mem(&f, 0, &size);
    ck_assert_int_eq(bnn_load_from_memory(buf, size, NULL, &l.model, &l.guide,
                                          NULL),
                     BNN_OK);
    enum { N = 7, C = 3 };
    float x[N * 4], pa[N * C], pb[N * C];
    tu_rng r = {11};
    tu_fill_uniform(&r, x, N * 4, -1.0f, 1.0f);
    ck_assert_int_eq(bnn_predict(f.guide, x, N, 20, 99, pa), BNN_OK);
    ck_assert_int_eq(bnn_predict(l.guide, x, N, 20, 99, pb), BNN_OK);
    ck_assert(memcmp(pa, pb, sizeof pa) == 0);
    /* and the probabilities are real ones */
    for (int i = 0; i < N; i++)
        tu_assert_close(pa[i * C] + pa[i * C + 1] + pa[i * C + 2], 1.0, 1e-5,
                        0);
    free_fixture(&l);
    free_fixture(&f);
    free(buf);
}
END_TEST

/* ---- files ------------------------------------------------------------------ */

static char *temp_dir(void)
{
    char tmpl[] = "/tmp/bnn_io_XXXXXX";
    char *d = mkdtemp(tmpl);
    ck_assert_ptr_nonnull(d);
    return strdup(d);
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

static void write_all(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* Number of directory entries other than . and .. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = join(dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(p);
        else
            unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

START_TEST(test_file_round_trip)
{
    char *dir = temp_dir();
    char *path = join(dir, "model.bnn");
    fixture f, l;
    make_fixture(&f, 1, BNN_OPT_ADAM);
    ck_assert_int_eq(bnn_save(path, f.guide, f.opt), BNN_OK);
    ck_assert_int_eq(count_entries(dir), 1); /* no temporary left */
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 0777, 0600);

    /* The file holds exactly what bnn_save_to_memory produces. */
    size_t fsize, msize;
    unsigned char *fb = read_all(path, &fsize);
    unsigned char *mb = save_mem(&f, 1, &msize);
    ck_assert_uint_eq(fsize, msize);
    ck_assert(memcmp(fb, mb, fsize) == 0);

    tu_alloc c = {0};
    bnn_allocator a = tu_allocator(&c);
    ck_assert_int_eq(bnn_load(path, &a, &l.model, &l.guide, &l.opt), BNN_OK);
    assert_same_state(&f, &l);
    free_fixture(&l);
    ck_assert_int_eq(c.live, 0);

    /* Replacing keeps the permission bits of the old file. */
    ck_assert_int_eq(chmod(path, 0640), 0);
    ck_assert_int_eq(bnn_save(path, f.guide, NULL), BNN_OK);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 0777, 0640);
    l.opt = SENTINEL_O;
    ck_assert_int_eq(bnn_load(path, NULL, &l.model, &l.guide, &l.opt), BNN_OK);
    ck_assert_ptr_null(l.opt);
    free_fixture(&l);

    free(fb);
    free(mb);
    free_fixture(&f);
    remove_tree(dir);
    free(path);
    free(dir);
}
END_TEST

/* A symbolic link at the path is replaced by the new file, as rename(2)
 * does; what it pointed at is left alone, even a FIFO. */
START_TEST(test_save_replaces_symlink)
{
    char *dir = temp_dir();
    char *target = join(dir, "target.bnn");
    char *fifo = join(dir, "fifo");
    char *link = join(dir, "link.bnn");
    fixture f, l;
    make_fixture(&f, 1, BNN_OPT_ADAM);
    write_all(target, "old bytes", 9);
    ck_assert_int_eq(chmod(target, 0640), 0);
    ck_assert_int_eq(symlink("target.bnn", link), 0);
    ck_assert_int_eq(bnn_save(link, f.guide, f.opt), BNN_OK);
    struct stat sb;
    ck_assert_int_eq(lstat(link, &sb), 0);
    ck_assert(S_ISREG(sb.st_mode));
    ck_assert_uint_eq(sb.st_mode & 0777, 0640); /* the target's mode */
    size_t n;
    unsigned char *b = read_all(target, &n);
    ck_assert_uint_eq(n, 9);
    ck_assert(memcmp(b, "old bytes", 9) == 0);
    free(b);
    ck_assert_int_eq(bnn_load(link, NULL, &l.model, &l.guide, &l.opt), BNN_OK);
    assert_same_state(&f, &l);
    free_fixture(&l);

    ck_assert_int_eq(unlink(link), 0);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(symlink("fifo", link), 0);
    ck_assert_int_eq(bnn_save(link, f.guide, NULL), BNN_OK);
    ck_assert_int_eq(lstat(link, &sb), 0);
    ck_assert(S_ISREG(sb.st_mode));
    ck_assert_uint_eq(sb.st_mode & 0777, 0600); /* new: owner-only */
    ck_assert_int_eq(lstat(fifo, &sb), 0);
    ck_assert(S_ISFIFO(sb.st_mode));
    ck_assert_int_eq(count_entries(dir), 3); /* no temporary left */

    free_fixture(&f);
    remove_tree(dir);
    free(target);
    free(fifo);
    free(link);
    free(dir);
}
END_TEST

START_TEST(test_load_file_errors)
{
    char *dir = temp_dir();
    char *missing = join(dir, "missing.bnn");
    char *empty = join(dir, "empty.bnn");
    char *text = join(dir, "text.bnn");
    bnn_model *m = SENTINEL_M;
    bnn_guide *g = SENTINEL_G;
    ck_assert_int_eq(bnn_load(missing, NULL, &m, &g, NULL), BNN_E_IO);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), strerror(ENOENT)));
    ck_assert_int_eq(bnn_load(dir, NULL, &m, &g, NULL), BNN_E_IO);
    write_all(empty, "", 0);
    ck_assert_int_eq(bnn_load(empty, NULL, &m, &g, NULL), BNN_E_FORMAT);
    write_all(text, "hello, world\n", 13);
    ck_assert_int_eq(bnn_load(text, NULL, &m, &g, NULL), BNN_E_FORMAT);
    ck_assert(m == SENTINEL_M && g == SENTINEL_G);
    ck_assert_int_eq(bnn_load(NULL, NULL, &m, &g, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_load(text, NULL, NULL, &g, NULL), BNN_E_INVALID);
    bnn_allocator half = tu_allocator(&(tu_alloc){0});
    half.free = NULL;
    ck_assert_int_eq(bnn_load(text, &half, &m, &g, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_load_from_memory(NULL, 10, NULL, &m, &g, NULL),
                     BNN_E_INVALID);
    remove_tree(dir);
    free(missing);
    free(empty);
    free(text);
    free(dir);
}
END_TEST

START_TEST(test_failed_save_keeps_old_file)
{
    char *dir = temp_dir();
    char *path = join(dir, "model.bnn");
    static const char old[] = "previous contents";
    write_all(path, old, sizeof old);
    fixture f;
    make_fixture(&f, 1, BNN_OPT_ADAM);
    size_t n;

    /* Invalid arguments: nothing is touched. */
    ck_assert_int_eq(bnn_save(path, NULL, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_save(NULL, f.guide, NULL), BNN_E_INVALID);
    ck_assert_int_eq(bnn_save("", f.guide, NULL), BNN_E_INVALID);
    float *p = bnn_guide_params(f.guide, &n);
    float keep = p[3];
    p[3] = INFINITY;
    ck_assert_int_eq(bnn_save(path, f.guide, f.opt), BNN_E_INVALID);
    p[3] = keep;
    unsigned char *now = read_all(path, &n);
    ck_assert_uint_eq(n, sizeof old);
    ck_assert(memcmp(now, old, n) == 0);
    free(now);
    ck_assert_int_eq(count_entries(dir), 1);

    /* The folder does not exist: the temporary file cannot be made. */
    char *nodir = join(dir, "no/such/dir/model.bnn");
    ck_assert_int_eq(bnn_save(nodir, f.guide, NULL), BNN_E_IO);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), strerror(ENOENT)));

    /* The target is a directory: refused before anything is written; the
     * directory and its contents stay, no temporary file appears. */
    char *sub = join(dir, "sub");
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    char *inside = join(sub, "keep");
    write_all(inside, "x", 1);
    ck_assert_int_eq(bnn_save(sub, f.guide, f.opt), BNN_E_IO);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "not a regular file (a directory)"));
    ck_assert_int_eq(count_entries(dir), 2);
    ck_assert_int_eq(count_entries(sub), 1);

    now = read_all(path, &n);
    ck_assert_uint_eq(n, sizeof old);
    ck_assert(memcmp(now, old, n) == 0);
    free(now);
    free_fixture(&f);
    remove_tree(dir);
    free(inside);
    free(sub);
    free(nodir);
    free(path);
    free(dir);
}
END_TEST

START_TEST(test_failed_write_keeps_old_file)
{
    /* Make write(2) itself fail: a file size limit turns the write past it
     * into EFBIG (with SIGXFSZ ignored).  In a child so the limit cannot
     * leak into other tests. */
    char *dir = temp_dir();
    char *path = join(dir, "model.bnn");
    static const char old[] = "previous contents";
    write_all(path, old, sizeof old);
    fixture f;
    make_fixture(&f, 1, BNN_OPT_ADAM);
    size_t size;
    ck_assert_int_eq(bnn_save_size(f.guide, f.opt, &size), BNN_OK);
    ck_assert_uint_gt(size, 200);

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit rl = {100, 100};
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(10);
        bnn_status st = bnn_save(path, f.guide, f.opt);
        int code = st != BNN_E_IO ? 11
                   : !strstr(bnn_last_error(), strerror(EFBIG)) ? 12
                                                                : 0;
        /* Tidy, so a leak checker following the child stays quiet. */
        free_fixture(&f);
        free(path);
        free(dir);
        _exit(code);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);

    size_t n;
    unsigned char *now = read_all(path, &n);
    ck_assert_uint_eq(n, sizeof old);
    ck_assert(memcmp(now, old, n) == 0);
    ck_assert_int_eq(count_entries(dir), 1);
    free(now);
    free_fixture(&f);
    remove_tree(dir);
    free(path);
    free(dir);
}
END_TEST

START_TEST(test_save_allocation_failure)
{
    /* bnn_save allocates the temporary name and a staging buffer with the
     * model's allocator: each failing gives BNN_E_NOMEM, leaks nothing and
     * leaves the old file. */
    char *dir = temp_dir();
    char *path = join(dir, "model.bnn");
    static const char old[] = "previous contents";
    write_all(path, old, sizeof old);
    tu_alloc c = {0};
    bnn_allocator a = tu_allocator(&c);
    static const size_t sizes[] = {2, 3};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 2;
    mc.layer_sizes = sizes;
    mc.allocator = &a;
    fixture f = {0};
    ck_assert_int_eq(bnn_model_create(&mc, &f.model), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(f.model, NULL, &f.guide), BNN_OK);
    const size_t live = c.live;
    int failures = 0;
    for (size_t k = 1;; k++) {
        c.fail_at = c.calls + k;
        bnn_status st = bnn_save(path, f.guide, NULL);
        ck_assert_int_eq(c.live, live);
        if (st == BNN_OK)
            break;
        ck_assert_int_eq(st, BNN_E_NOMEM);
        failures++;
        size_t n;
        unsigned char *now = read_all(path, &n);
        ck_assert_uint_eq(n, sizeof old);
        ck_assert(memcmp(now, old, n) == 0);
        free(now);
        ck_assert_int_eq(count_entries(dir), 1);
    }
    ck_assert_int_eq(failures, 2);
    c.fail_at = 0;
    bnn_model *m;
    bnn_guide *g;
    ck_assert_int_eq(bnn_load(path, NULL, &m, &g, NULL), BNN_OK);
    bnn_guide_free(g);
    bnn_model_free(m);
    free_fixture(&f);
    ck_assert_int_eq(c.live, 0);
    remove_tree(dir);
    free(path);
    free(dir);
}
END_TEST

/* ---- hostile input ------------------------------------------------------------ */

START_TEST(test_truncation_every_byte)
{
    for (int with_opt = 0; with_opt <= 1; with_opt++) {
        fixture f;
        make_fixture(&f, with_opt, BNN_OPT_ADAM);
        size_t size;
        unsigned char *buf = save_mem(&f, with_opt, &size);
        for (size_t len = 0; len < size; len++) {
            /* A fresh copy of exactly len bytes, so ASan sees any read
             * past the end. */
            unsigned char *cut = malloc(len ? len : 1);
            memcpy(cut, buf, len);
            ck_assert_msg(load_expect_fail(cut, len, NULL) == BNN_E_FORMAT,
                          "length %zu of %zu: %s", len, size,
                          bnn_last_error());
            free(cut);
        }
        free(buf);
        free_fixture(&f);
    }
}
END_TEST

START_TEST(test_every_bit_flip)
{
    fixture f;
    make_fixture(&f, 1, BNN_OPT_SGD);
    size_t size;
    unsigned char *buf = save_mem(&f, 1, &size);
    tu_alloc c = {0};
    bnn_allocator a = tu_allocator(&c);
    for (size_t i = 0; i < size; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (unsigned char)(1u << bit);
            bnn_status st = load_expect_fail(buf, size, &a);
            buf[i] ^= (unsigned char)(1u << bit);
            /* The version field can turn into a newer version. */
            int version_byte = i >= 8 && i < 12;
            ck_assert_msg(st == BNN_E_FORMAT ||
                              (version_byte && st == BNN_E_VERSION),
                          "byte %zu bit %d: %s", i, bit,
                          bnn_status_string(st));
        }
    }
    /* Rejected before anything was allocated. */
    ck_assert_int_eq(c.calls, 0);
    free(buf);
    free_fixture(&f);
}
END_TEST

/* Offsets in the fixture's file (3 layer sizes). */
enum {
    OFF_VERSION = 8,
    OFF_FLAGS = 12,
    OFF_NSIZES = 24,
    OFF_SIZES = 28,
    OFF_ACT = 52,
    OFF_LIK = 56,
    OFF_NOISE = 60,
    OFF_PRIOR = 64,
    OFF_PRIOR_SIGMA = 68,
    OFF_PRIOR_SIGMA1 = 76,
    OFF_COUNT = 84,
    OFF_PARAMS = 92
};

typedef struct forgery {
    const char *what;
    size_t at;      /* offset from the start, or from the optimizer section */
    int in_opt;
    int width;      /* 4 or 8 */
    uint64_t value;
} forgery;

START_TEST(test_forged_fields)
{
    fixture f;
    make_fixture(&f, 1, BNN_OPT_ADAM);
    size_t size;
    unsigned char *orig = save_mem(&f, 1, &size);
    const size_t P = bnn_model_param_count(f.model);
    const size_t opt_at = OFF_PARAMS + 8 * P;
    const size_t v_at = opt_at + 88 + 8 * P;
    ck_assert_uint_eq(r64(orig, OFF_COUNT), P);
    ck_assert_uint_eq(r64(orig, opt_at + 80), 2 * P);
    uint32_t nan_bits = 0x7fc00000u, inf_bits = 0x7f800000u;
    uint32_t neg_bits = 0xbf800000u; /* -1.0f */

    const forgery cases[] = {
        {"huge parameter count", OFF_COUNT, 0, 8, (uint64_t)1 << 62},
        {"all-ones parameter count", OFF_COUNT, 0, 8, UINT64_MAX},
        {"parameter count + 1", OFF_COUNT, 0, 8, P + 1},
        {"parameter count - 1", OFF_COUNT, 0, 8, P - 1},
        {"huge layer size", OFF_SIZES + 8, 0, 8, (uint64_t)1 << 40},
        {"all-ones layer size", OFF_SIZES, 0, 8, UINT64_MAX},
        {"zero layer size", OFF_SIZES + 16, 0, 8, 0},
        {"other layer size", OFF_SIZES + 8, 0, 8, 5},
        /* each size fits the file, their product does not */
        {"hidden width 90", OFF_SIZES + 8, 0, 8, 90},
        {"layer count 1", OFF_NSIZES, 0, 4, 1},
        {"layer count 17", OFF_NSIZES, 0, 4, 17},
        {"layer count 2^32-1", OFF_NSIZES, 0, 4, UINT32_MAX},
        {"activation 2", OFF_ACT, 0, 4, 2},
        {"likelihood 2^31", OFF_LIK, 0, 4, 0x80000000u},
        {"prior 2", OFF_PRIOR, 0, 4, 2},
        {"NaN noise", OFF_NOISE, 0, 4, nan_bits},
        {"negative noise", OFF_NOISE, 0, 4, neg_bits},
        {"Inf unused prior sigma", OFF_PRIOR_SIGMA, 0, 4, inf_bits},
        {"negative mixture sigma", OFF_PRIOR_SIGMA1, 0, 4, neg_bits},
        {"NaN mu", OFF_PARAMS + 4, 0, 4, nan_bits},
        {"Inf rho", OFF_PARAMS + 4 * (2 * P - 1), 0, 4, inf_bits},
        {"unknown flag", OFF_FLAGS, 0, 4, 3},
        {"no optimizer flag", OFF_FLAGS, 0, 4, 0},
        {"optimizer kind 2", 0, 1, 4, 2},
        {"NaN lr", 4, 1, 4, nan_bits},
        {"negative lr", 4, 1, 4, neg_bits},
        {"dataset size 0", 28, 1, 8, 0},
        {"estimator 3", 40, 1, 4, 3},
        {"analytic KL with mixture prior", 44, 1, 4, 0},
        {"KL mode 2", 44, 1, 4, 2},
        {"particles 0", 48, 1, 8, 0},
        {"particles 2^63", 48, 1, 8, (uint64_t)1 << 63},
        {"max_batch 0", 56, 1, 8, 0},
        {"max_batch 2^40", 56, 1, 8, (uint64_t)1 << 40},
        {"max_batch all ones", 56, 1, 8, UINT64_MAX},
        {"huge state count", 80, 1, 8, (uint64_t)1 << 61},
        {"state count + 2", 80, 1, 8, 2 * P + 2},
        {"NaN in m", 88, 1, 4, nan_bits},
        {"negative v", v_at - opt_at, 1, 4, neg_bits},
        {"Inf in v", v_at - opt_at + 4, 1, 4, inf_bits},
    };
    unsigned char *buf = malloc(size + 64);
    tu_alloc c = {0};
    bnn_allocator a = tu_allocator(&c);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const forgery *fg = &cases[k];
        memcpy(buf, orig, size);
        size_t at = fg->at + (fg->in_opt ? opt_at : 0);
        if (fg->width == 8)
            w64(buf, at, fg->value);
        else
            w32(buf, at, (uint32_t)fg->value);
        reseal(buf, size);
        bnn_status st = load_expect_fail(buf, size, &a);
        ck_assert_msg(st == BNN_E_FORMAT, "%s: %s (%s)", fg->what,
                      bnn_status_string(st), bnn_last_error());
        ck_assert_int_eq(c.live, 0);
    }
    /* Trailing bytes that the length field admits. */
    memcpy(buf, orig, size);
    memmove(buf + size, buf + size - 4, 4);
    memset(buf + size - 4, 0, 4);
    reseal(buf, size + 4);
    ck_assert_int_eq(load_expect_fail(buf, size + 4, &a), BNN_E_FORMAT);
    /* Sealed files that end early: the optimizer state, then (without an
     * optimizer) the guide, lack their last float. */
    memcpy(buf, orig, size);
    memmove(buf + size - 8, buf + size - 4, 4);
    reseal(buf, size - 4);
    ck_assert_int_eq(load_expect_fail(buf, size - 4, &a), BNN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "optimizer state"));
    size_t gsize = opt_at + 4;
    memcpy(buf, orig, opt_at - 4);
    w32(buf, OFF_FLAGS, 0);
    reseal(buf, gsize - 8);
    ck_assert_int_eq(load_expect_fail(buf, gsize - 8, &a), BNN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "exceeds the data"));
    /* A length field that disagrees with the size. */
    memcpy(buf, orig, size);
    w64(buf, 16, size + 1);
    ck_assert_int_eq(load_expect_fail(buf, size, &a), BNN_E_FORMAT);
    /* Nothing forged ever made the loader ask for much memory. */
    ck_assert_uint_lt(c.max_request, 64 * 1024);
    ck_assert_int_eq(c.live, 0);

    /* The unmodified file still loads with the same allocator. */
    fixture l;
    ck_assert_int_eq(bnn_load_from_memory(orig, size, &a, &l.model, &l.guide,
                                          &l.opt),
                     BNN_OK);
    assert_same_state(&f, &l);
    free_fixture(&l);
    ck_assert_int_eq(c.live, 0);
    free(buf);
    free(orig);
    free_fixture(&f);
}
END_TEST

START_TEST(test_versions)
{
    fixture f;
    make_fixture(&f, 0, BNN_OPT_ADAM);
    size_t size;
    unsigned char *buf = save_mem(&f, 0, &size);
    w32(buf, OFF_VERSION, 5);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_VERSION);
    /* A newer version is recognised from its header alone, whatever
     * follows (its layout is unknown). */
    ck_assert_int_eq(load_expect_fail(buf, 12, NULL), BNN_E_VERSION);
    w32(buf, OFF_VERSION, UINT32_MAX);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_VERSION);
    w32(buf, OFF_VERSION, 0);
    reseal(buf, size);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_FORMAT);
    /* Version 2 is only ever written with IVON state: a version 2 file
     * without it (here: no optimizer, then Adam's) has no writer and would
     * not save back to its own bytes. */
    w32(buf, OFF_VERSION, 2);
    reseal(buf, size);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "must hold IVON optimizer state"));
    /* Version 3 is only ever written for the learned-noise and
     * heteroscedastic likelihoods. */
    w32(buf, OFF_VERSION, 3);
    reseal(buf, size);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "learned-noise or heteroscedastic"));
    free(buf);
    fixture fa;
    make_fixture(&fa, 1, BNN_OPT_ADAM);
    buf = save_mem(&fa, 1, &size);
    w32(buf, OFF_VERSION, 2);
    reseal(buf, size);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_FORMAT);
    free(buf);
    free_fixture(&fa);
    free_fixture(&f);
}
END_TEST

START_TEST(test_every_allocation_failure)
{
    fixture f;
    make_fixture(&f, 1, BNN_OPT_ADAM);
    size_t size;
    unsigned char *buf = save_mem(&f, 1, &size);
    char *dir = temp_dir();
    char *path = join(dir, "m.bnn");
    write_all(path, buf, size);

    for (int from_file = 0; from_file <= 1; from_file++) {
        size_t k;
        for (k = 1;; k++) {
            tu_alloc c = {0};
            c.fail_at = k;
            bnn_allocator a = tu_allocator(&c);
            bnn_model *m = SENTINEL_M;
            bnn_guide *g = SENTINEL_G;
            bnn_optimizer *o = SENTINEL_O;
            bnn_status st =
                from_file ? bnn_load(path, &a, &m, &g, &o)
                          : bnn_load_from_memory(buf, size, &a, &m, &g, &o);
            if (st == BNN_OK) {
                /* Allocation k was never made: every earlier one was
                 * failed once and recovered from. */
                ck_assert_int_lt(c.calls, k);
                fixture l = {m, g, o};
                assert_same_state(&f, &l);
                free_fixture(&l);
                ck_assert_int_eq(c.live, 0);
                break;
            }
            ck_assert_msg(st == BNN_E_NOMEM, "allocation %zu: %s", k,
                          bnn_status_string(st));
            ck_assert(m == SENTINEL_M && g == SENTINEL_G && o == SENTINEL_O);
            ck_assert_msg(c.live == 0, "allocation %zu: %zu leaked", k,
                          c.live);
        }
        /* model, guide (3), optimizer (1 + 11 + 5 per layer): far more
         * than a handful of failure points were exercised. */
        ck_assert_int_gt(k, 15);
    }
    free(buf);
    remove_tree(dir);
    free(path);
    free(dir);
    free_fixture(&f);
}
END_TEST

START_TEST(test_max_batch_limit)
{
    /* An optimizer whose workspace exceeds the format's limit is refused
     * at save time, so every file written can be read back. */
    static const size_t sizes[] = {1024, 2};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 2;
    mc.layer_sizes = sizes;
    fixture f = {0};
    ck_assert_int_eq(bnn_model_create(&mc, &f.model), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(f.model, NULL, &f.guide), BNN_OK);
    bnn_svi_config sc = tu_svi(100);
    sc.max_batch = 1;
    ck_assert_int_eq(bnn_optimizer_create(f.guide, NULL, &sc, &f.opt),
                     BNN_OK);
    /* Raise it without allocating the workspace it would need. */
    f.opt->svi.max_batch = (size_t)(IO_MAX_BATCH_X_WIDTH / 1024) + 1;
    size_t size;
    ck_assert_int_eq(bnn_save_size(f.guide, f.opt, &size), BNN_E_INVALID);
    f.opt->svi.max_batch = (size_t)(IO_MAX_BATCH_X_WIDTH / 1024);
    ck_assert_int_eq(bnn_save_size(f.guide, f.opt, &size), BNN_OK);
    unsigned char *buf = malloc(size);
    ck_assert_int_eq(bnn_save_to_memory(f.guide, f.opt, buf, size, &size),
                     BNN_OK);
    /* The loader's bound is the same: one more is refused. */
    const size_t opt_at = 24 + 36 + 2 * 8 + 8 + 8 * bnn_model_param_count(f.model);
    ck_assert_uint_eq(r64(buf, opt_at + 56), IO_MAX_BATCH_X_WIDTH / 1024);
    w64(buf, opt_at + 56, IO_MAX_BATCH_X_WIDTH / 1024 + 1);
    reseal(buf, size);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_FORMAT);
    f.opt->svi.max_batch = 1;
    free(buf);
    free_fixture(&f);
}
END_TEST

/* ---- version 4: layer sequences ------------------------------------------------ */

/* 7 x 6 x 2 input; conv 3x3 -> 3 (stride 2 x 1, pad 1, tanh, own mixture
 * prior); max pool (unused fields hold garbage); conv 1x2 -> 2 (identity,
 * own Normal prior); avg pool; flatten; dense 4 (ReLU, the model's being
 * tanh); dense 3.  P = 57 + 14 + 12 + 15 = 98. */
#define SEQ_N 7
#define SEQ_P 98
static void seq_specs(bnn_layer_spec *s)
{
    for (int i = 0; i < SEQ_N; i++)
        bnn_layer_spec_init(&s[i]);
    s[0].kind = BNN_LAYER_CONV2D, s[0].units = 3;
    s[0].stride_h = 2, s[0].pad_h = s[0].pad_w = 1;
    s[0].activation = BNN_ACT_TANH;
    s[0].prior = BNN_PRIOR_SCALE_MIXTURE;
    s[0].prior_pi = 0.25f, s[0].prior_sigma1 = 2.0f, s[0].prior_sigma2 = 0.05f;
    s[1].kind = BNN_LAYER_MAXPOOL2;
    s[1].activation = (bnn_activation)77;
    s[1].prior_sigma = NAN;
    s[2].kind = BNN_LAYER_CONV2D, s[2].units = 2, s[2].kernel_h = 1, s[2].kernel_w = 2;
    s[2].activation = BNN_ACT_IDENTITY;
    s[2].prior = BNN_PRIOR_NORMAL, s[2].prior_sigma = 0.5f, s[2].prior_pi = NAN;
    s[3].kind = BNN_LAYER_AVGPOOL2;
    s[4].kind = BNN_LAYER_FLATTEN;
    s[5].units = 4, s[5].activation = BNN_ACT_RELU;
    s[6].units = 3;
}

static void make_seq_fixture(fixture *f, const bnn_allocator *a)
{
    bnn_layer_spec s[SEQ_N];
    seq_specs(s);
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_layers = SEQ_N;
    mc.layers = s;
    mc.input_height = 7, mc.input_width = 6, mc.input_channels = 2;
    mc.activation = BNN_ACT_TANH;
    mc.prior_sigma = 1.5f;
    mc.allocator = a;
    ck_assert_int_eq(bnn_model_create(&mc, &f->model), BNN_OK);
    ck_assert_uint_eq(bnn_model_param_count(f->model), SEQ_P);
    ck_assert_int_eq(bnn_guide_create(f->model, NULL, &f->guide), BNN_OK);
    size_t n;
    float *p = bnn_guide_params(f->guide, &n);
    tu_rng r = {9};
    tu_fill_uniform(&r, p, n, -2.0f, 2.0f);
    f->opt = NULL;
}

/* Offsets in the sequence fixture's file. */
enum {
    SQ_ACT = 24,
    SQ_PRIOR_SIGMA = 40,
    SQ_SHAPE = 56,
    SQ_COUNT = 80,
    SQ_ENTRY = 84, /* entry i at SQ_ENTRY + 84 i */
    SQ_PCOUNT = SQ_ENTRY + 84 * SEQ_N,
    SQ_PARAMS = SQ_PCOUNT + 8
};
/* Field offsets within an entry. */
enum { E_KIND = 0, E_UNITS = 4, E_KH = 12, E_KW = 20, E_SH = 28, E_SW = 36, E_PH = 44,
       E_PW = 52, E_ACT = 60, E_PRIOR = 64, E_SIGMA = 68, E_PI = 72, E_S1 = 76, E_S2 = 80 };

static size_t seq_entry(unsigned char *p, size_t at, const bnn_layer_spec *y)
{
    at = w32(p, at, (uint32_t)y->kind);
    at = w64(p, at, y->units);
    at = w64(p, at, y->kernel_h);
    at = w64(p, at, y->kernel_w);
    at = w64(p, at, y->stride_h);
    at = w64(p, at, y->stride_w);
    at = w64(p, at, y->pad_h);
    at = w64(p, at, y->pad_w);
    at = w32(p, at, (uint32_t)y->activation);
    at = w32(p, at, (uint32_t)y->prior);
    at = wf(p, at, y->prior_sigma);
    at = wf(p, at, y->prior_pi);
    at = wf(p, at, y->prior_sigma1);
    return wf(p, at, y->prior_sigma2);
}

START_TEST(test_sequence_bytes_and_round_trip)
{
    fixture f, l;
    make_seq_fixture(&f, NULL);
    size_t size;
    unsigned char *buf = save_mem(&f, 0, &size);
    ck_assert_uint_eq(size, SQ_PARAMS + 8 * SEQ_P + 4);

    /* The layout, from an independent encoder; the garbage in the pool
     * entry's unused activation and the NaNs in unused prior fields are
     * written as bnn_layer_spec_init's defaults. */
    bnn_layer_spec s[SEQ_N], d;
    seq_specs(s);
    bnn_layer_spec_init(&d);
    s[1].activation = d.activation;
    s[1].prior_sigma = d.prior_sigma;
    s[2].prior_pi = d.prior_pi;
    unsigned char *want = malloc(SQ_PCOUNT);
    size_t at = w32(want, 0, 0);
    memcpy(want, buf, 8); /* magic, checked by test_golden_bytes */
    at = w32(want, 8, 4); /* version 4: a layer sequence */
    at = w32(want, at, 0);
    at = w64(want, at, size);
    at = w32(want, at, BNN_ACT_TANH);
    at = w32(want, at, BNN_LIK_CATEGORICAL);
    at = wf(want, at, 1.0f);
    at = w32(want, at, BNN_PRIOR_NORMAL);
    at = wf(want, at, 1.5f);
    at = wf(want, at, 0.5f);
    at = wf(want, at, 1.0f);
    at = wf(want, at, expf(-6.0f));
    ck_assert_uint_eq(at, SQ_SHAPE);
    at = w64(want, at, 7);
    at = w64(want, at, 6);
    at = w64(want, at, 2);
    at = w32(want, at, SEQ_N);
    for (int i = 0; i < SEQ_N; i++)
        at = seq_entry(want, at, &s[i]);
    ck_assert_uint_eq(at, SQ_PCOUNT);
    for (size_t i = 0; i < SQ_PCOUNT; i++)
        ck_assert_msg(buf[i] == want[i], "byte %zu: %02x, expected %02x", i, buf[i], want[i]);
    ck_assert_uint_eq(r64(buf, SQ_PCOUNT), SEQ_P);
    free(want);

    ck_assert_int_eq(bnn_load_from_memory(buf, size, NULL, &l.model, &l.guide, &l.opt), BNN_OK);
    ck_assert_ptr_null(l.opt);
    assert_same_state(&f, &l);
    /* The loaded model describes itself as the saved one, the sequence as
     * configured (INHERIT kept), and is laid out alike. */
    bnn_model_config cl;
    bnn_model_config_init(&cl);
    ck_assert_int_eq(bnn_model_get_config(l.model, &cl), BNN_OK);
    ck_assert_uint_eq(cl.n_layers, SEQ_N);
    ck_assert_uint_eq(cl.input_height, 7);
    ck_assert_uint_eq(cl.input_width, 6);
    ck_assert_uint_eq(cl.input_channels, 2);
    for (int i = 0; i < SEQ_N; i++) {
        const bnn_layer_spec *a = &s[i], *b = &cl.layers[i];
        ck_assert_int_eq(a->kind, b->kind);
        ck_assert_uint_eq(a->units, b->units);
        ck_assert(a->kernel_h == b->kernel_h && a->kernel_w == b->kernel_w);
        ck_assert(a->stride_h == b->stride_h && a->stride_w == b->stride_w);
        ck_assert(a->pad_h == b->pad_h && a->pad_w == b->pad_w);
        ck_assert_int_eq(a->activation, b->activation);
        ck_assert_int_eq(a->prior, b->prior);
        ck_assert(memcmp(&a->prior_sigma, &b->prior_sigma, 4 * sizeof(float)) == 0);
    }
    ck_assert_int_eq(cl.layers[6].activation, BNN_ACT_INHERIT);
    ck_assert_int_eq(cl.layers[5].prior, BNN_PRIOR_INHERIT);
    for (size_t k = 0; k < 4; k++) {
        size_t ia, oa, ib, ob;
        ck_assert_int_eq(bnn_model_layer_shape(f.model, k, &ia, &oa), BNN_OK);
        ck_assert_int_eq(bnn_model_layer_shape(l.model, k, &ib, &ob), BNN_OK);
        ck_assert(ia == ib && oa == ob);
    }
    ck_assert_uint_eq(bnn_model_input_size(l.model), 84);
    /* and predicts the same bits */
    float x[3 * 84], pa[3 * 3], pb[3 * 3];
    tu_rng r = {12};
    tu_fill_uniform(&r, x, 3 * 84, -1.0f, 1.0f);
    ck_assert_int_eq(bnn_predict(f.guide, x, 3, 5, 7, pa), BNN_OK);
    ck_assert_int_eq(bnn_predict(l.guide, x, 3, 5, 7, pb), BNN_OK);
    ck_assert(memcmp(pa, pb, sizeof pa) == 0);
    tu_assert_close(pa[0] + pa[1] + pa[2], 1.0, 1e-5, 0);

    size_t size2;
    unsigned char *buf2 = save_mem(&l, 0, &size2);
    ck_assert_uint_eq(size, size2);
    ck_assert(memcmp(buf, buf2, size) == 0);
    free(buf2);
    free(buf);
    free_fixture(&l);
    free_fixture(&f);
}
END_TEST

/* A sequence of dense layers that inherit everything trains like an MLP,
 * so it can carry optimizer state: Adam and IVON in a version 3 file. */
START_TEST(test_sequence_with_optimizers)
{
    bnn_layer_spec s[3];
    for (int i = 0; i < 3; i++)
        bnn_layer_spec_init(&s[i]);
    s[0].kind = BNN_LAYER_FLATTEN;
    s[1].units = 3;
    s[2].units = 2;
    for (int kind = 0; kind < 2; kind++) {
        fixture f = {0}, l;
        bnn_model_config mc;
        bnn_model_config_init(&mc);
        mc.n_layers = 3;
        mc.layers = s;
        mc.input_height = 2, mc.input_width = 1, mc.input_channels = 2;
        ck_assert_int_eq(bnn_model_create(&mc, &f.model), BNN_OK);
        ck_assert_int_eq(bnn_guide_create(f.model, NULL, &f.guide), BNN_OK);
        bnn_optimizer_config oc;
        bnn_optimizer_config_init(&oc);
        oc.kind = kind ? BNN_OPT_IVON : BNN_OPT_ADAM;
        bnn_svi_config sc = tu_svi(50);
        sc.max_batch = 4;
        if (kind)
            sc.estimator = BNN_EST_WEIGHT_SAMPLING;
        ck_assert_int_eq(bnn_optimizer_create(f.guide, &oc, &sc, &f.opt), BNN_OK);
        size_t n;
        float *g = bnn_guide_grads(f.guide, &n);
        tu_rng r = {31};
        for (int step = 0; step < 2; step++) {
            tu_fill_uniform(&r, g, n, -1.0f, 1.0f);
            ck_assert_int_eq(bnn_optimizer_step(f.opt), BNN_OK);
        }
        size_t size, size2;
        unsigned char *buf = save_mem(&f, 1, &size);
        ck_assert_uint_eq(le32(buf + 8), 4);
        ck_assert_int_eq(bnn_load_from_memory(buf, size, NULL, &l.model, &l.guide, &l.opt),
                         BNN_OK);
        assert_same_state(&f, &l);
        unsigned char *buf2 = save_mem(&l, 1, &size2);
        ck_assert(size == size2 && memcmp(buf, buf2, size) == 0);
        /* Version 4 means the sequence section: marked 1, 2 or 3 the
         * bytes are read as sizes and refused. */
        for (uint32_t v = 1; v <= 3; v++) {
            w32(buf, 8, v);
            reseal(buf, size);
            ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_FORMAT);
        }
        free(buf);
        free(buf2);
        free_fixture(&l);
        free_fixture(&f);
    }
}
END_TEST

START_TEST(test_sequence_truncation_and_bit_flips)
{
    fixture f;
    make_seq_fixture(&f, NULL);
    size_t size;
    unsigned char *buf = save_mem(&f, 0, &size);
    tu_alloc c = {0};
    bnn_allocator a = tu_allocator(&c);
    for (size_t len = 0; len < size; len++) {
        unsigned char *cut = malloc(len ? len : 1);
        memcpy(cut, buf, len);
        ck_assert_msg(load_expect_fail(cut, len, &a) == BNN_E_FORMAT, "length %zu of %zu: %s",
                      len, size, bnn_last_error());
        free(cut);
    }
    for (size_t i = 0; i < size; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (unsigned char)(1u << bit);
            bnn_status st = load_expect_fail(buf, size, &a);
            buf[i] ^= (unsigned char)(1u << bit);
            int version_byte = i >= 8 && i < 12;
            ck_assert_msg(st == BNN_E_FORMAT || (version_byte && st == BNN_E_VERSION),
                          "byte %zu bit %d: %s", i, bit, bnn_status_string(st));
        }
    }
    ck_assert_int_eq(c.calls, 0);
    free(buf);
    free_fixture(&f);
}
END_TEST

typedef struct seq_forgery {
    const char *what;
    int entry; /* -1: at is from the start of the file */
    size_t at;
    int width;
    uint64_t value;
} seq_forgery;

/* Every forged field is refused, before the loader allocates anything, as
 * BNN_E_FORMAT: the format's own ranges, and what bnn_model_create would
 * refuse (shapes, order, priors), checked the same way. */
START_TEST(test_sequence_forged_fields)
{
    fixture f;
    make_seq_fixture(&f, NULL);
    size_t size;
    unsigned char *orig = save_mem(&f, 0, &size);
    const uint32_t nan_bits = 0x7fc00000u, neg_bits = 0xbf800000u;
    const seq_forgery cases[] = {
        {"entry count 0", -1, SQ_COUNT, 4, 0},
        {"entry count 6", -1, SQ_COUNT, 4, 6},
        {"entry count 8", -1, SQ_COUNT, 4, 8},
        {"entry count 49", -1, SQ_COUNT, 4, 49},
        {"entry count 2^32-1", -1, SQ_COUNT, 4, UINT32_MAX},
        {"input height 0", -1, SQ_SHAPE, 8, 0},
        {"input channels 0", -1, SQ_SHAPE + 16, 8, 0},
        {"input height 2^62", -1, SQ_SHAPE, 8, (uint64_t)1 << 62},
        {"input width all ones", -1, SQ_SHAPE + 8, 8, UINT64_MAX},
        {"input width 10 (P changes)", -1, SQ_SHAPE + 8, 8, 10},
        {"model activation identity", -1, SQ_ACT, 4, BNN_ACT_IDENTITY},
        {"model prior sigma -1", -1, SQ_PRIOR_SIGMA, 4, neg_bits},
        {"kind 5", 0, E_KIND, 4, 5},
        {"conv becomes dense", 0, E_KIND, 4, BNN_LAYER_DENSE},
        {"pool becomes flatten", 1, E_KIND, 4, BNN_LAYER_FLATTEN},
        {"pool first", 0, E_KIND, 4, BNN_LAYER_MAXPOOL2},
        {"pool after pool", 2, E_KIND, 4, BNN_LAYER_AVGPOOL2},
        {"conv after dense", 5, E_KIND, 4, BNN_LAYER_CONV2D},
        {"last entry flatten", 6, E_KIND, 4, BNN_LAYER_FLATTEN},
        {"units 0", 2, E_UNITS, 8, 0},
        {"units 4 (P changes)", 0, E_UNITS, 8, 4},
        {"units 2^62", 0, E_UNITS, 8, (uint64_t)1 << 62},
        {"units all ones", 5, E_UNITS, 8, UINT64_MAX},
        {"one output class", 6, E_UNITS, 8, 1},
        {"kernel larger than the padded input", 0, E_KH, 8, 10},
        {"kernel 0", 0, E_KW, 8, 0},
        {"kernel 2^40", 2, E_KH, 8, (uint64_t)1 << 40},
        {"stride 0", 0, E_SH, 8, 0},
        {"padding at the kernel", 0, E_PH, 8, 3},
        {"padding all ones", 0, E_PW, 8, UINT64_MAX},
        {"activation 4", 0, E_ACT, 4, 4},
        {"unused activation 2^31", 1, E_ACT, 4, 0x80000000u},
        {"activation on the output", 6, E_ACT, 4, BNN_ACT_RELU},
        {"prior 3", 0, E_PRIOR, 4, 3},
        {"mixture pi 1", 0, E_PI, 4, 0x3f800000u},
        {"mixture sigma2 -1", 0, E_S2, 4, neg_bits},
        {"Normal sigma -1", 2, E_SIGMA, 4, neg_bits},
        {"NaN used prior sigma", 2, E_SIGMA, 4, nan_bits},
        {"NaN unused prior pi", 2, E_PI, 4, nan_bits},
        {"NaN in a pool entry", 3, E_S1, 4, nan_bits},
        {"parameter count + 1", -1, SQ_PCOUNT, 8, SEQ_P + 1},
        {"parameter count 2^62", -1, SQ_PCOUNT, 8, (uint64_t)1 << 62},
    };
    unsigned char *buf = malloc(size);
    tu_alloc c = {0};
    bnn_allocator a = tu_allocator(&c);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const seq_forgery *fg = &cases[k];
        memcpy(buf, orig, size);
        size_t at = fg->entry < 0 ? fg->at : SQ_ENTRY + 84 * (size_t)fg->entry + fg->at;
        if (fg->width == 8)
            w64(buf, at, fg->value);
        else
            w32(buf, at, (uint32_t)fg->value);
        reseal(buf, size);
        bnn_status st = load_expect_fail(buf, size, &a);
        ck_assert_msg(st == BNN_E_FORMAT, "%s: %s (%s)", fg->what, bnn_status_string(st),
                      bnn_last_error());
    }
    ck_assert_int_eq(c.calls, 0);
    /* What bnn_model_create says is in the message. */
    memcpy(buf, orig, size);
    w64(buf, SQ_ENTRY + E_PH, 3);
    reseal(buf, size);
    ck_assert_int_eq(load_expect_fail(buf, size, &a), BNN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "layers[0]: padding"));
    /* A version 1 file marked 4 is read as a sequence and refused. */
    fixture v1;
    make_fixture(&v1, 0, BNN_OPT_ADAM);
    size_t size1;
    unsigned char *b1 = save_mem(&v1, 0, &size1);
    w32(b1, 8, 4);
    reseal(b1, size1);
    ck_assert_int_eq(load_expect_fail(b1, size1, &a), BNN_E_FORMAT);
    free(b1);
    free_fixture(&v1);
    /* The unmodified file loads with the same allocator. */
    fixture l;
    ck_assert_int_eq(bnn_load_from_memory(orig, size, &a, &l.model, &l.guide, &l.opt), BNN_OK);
    assert_same_state(&f, &l);
    free_fixture(&l);
    ck_assert_int_eq(c.live, 0);
    free(buf);
    free(orig);
    free_fixture(&f);
}
END_TEST

START_TEST(test_sequence_allocation_failure)
{
    fixture f;
    make_seq_fixture(&f, NULL);
    size_t size;
    unsigned char *buf = save_mem(&f, 0, &size);
    size_t k;
    for (k = 1;; k++) {
        tu_alloc c = {0};
        c.fail_at = k;
        bnn_allocator a = tu_allocator(&c);
        bnn_model *m = SENTINEL_M;
        bnn_guide *g = SENTINEL_G;
        bnn_optimizer *o = SENTINEL_O;
        bnn_status st = bnn_load_from_memory(buf, size, &a, &m, &g, &o);
        if (st == BNN_OK) {
            ck_assert_int_lt(c.calls, k);
            fixture l = {m, g, o};
            assert_same_state(&f, &l);
            free_fixture(&l);
            ck_assert_int_eq(c.live, 0);
            break;
        }
        ck_assert_msg(st == BNN_E_NOMEM, "allocation %zu: %s", k, bnn_status_string(st));
        ck_assert(m == SENTINEL_M && g == SENTINEL_G && o == SENTINEL_O);
        ck_assert_int_eq(c.live, 0);
    }
    ck_assert_int_gt(k, 1);
    free(buf);
    free_fixture(&f);
}
END_TEST

/* Files written by earlier versions of the library (the fuzz seeds, kept
 * as committed) still load and save back to their own bytes. */
START_TEST(test_committed_files_load)
{
    static const struct {
        const char *name;
        uint32_t version;
    } files[] = {
        {"valid_relu_categorical.bnn", 1}, {"valid_tanh_gaussian_mixture.bnn", 1},
        {"valid_adam.bnn", 1},             {"valid_sgd_flipout_mixture.bnn", 1},
        {"valid_deep_weight_sampling.bnn", 1}, {"valid_ivon.bnn", 2},
        {"valid_learned_noise.bnn", 3},    {"valid_learned_noise_ivon.bnn", 3},
        {"valid_hetero_sgd.bnn", 3},       {"valid_sequence_conv.bnn", 4},
        {"valid_sequence_ivon.bnn", 4},    {"valid_sequence_learned_noise.bnn", 4},
        {"valid_sequence_conv_adam.bnn", 4},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *path = join(BNN_SOURCE_DIR "/fuzz/corpus", files[i].name);
        size_t size;
        unsigned char *buf = read_all(path, &size);
        ck_assert_uint_eq(le32(buf + 8), files[i].version);
        fixture l;
        ck_assert_msg(bnn_load_from_memory(buf, size, NULL, &l.model, &l.guide, &l.opt) ==
                          BNN_OK, "%s: %s", files[i].name, bnn_last_error());
        size_t size2;
        unsigned char *buf2 = save_mem(&l, l.opt != NULL, &size2);
        ck_assert_msg(size2 == size && memcmp(buf, buf2, size) == 0, "%s", files[i].name);
        free(buf2);
        free(buf);
        free(path);
        free_fixture(&l);
    }
}
END_TEST

/* A convolution's im2col matrix (max_batch x positions rows of kernel_h x
 * kernel_w x channels) is part of the training workspace the format's
 * max_batch limit bounds: here 13 x 13 positions x 4 x 4 x 4 = 10816
 * floats per example, over ten times the widest activation (1024). */
START_TEST(test_conv_max_batch_limit)
{
    bnn_layer_spec s[2];
    bnn_layer_spec_init(&s[0]);
    bnn_layer_spec_init(&s[1]);
    s[0].kind = BNN_LAYER_CONV2D, s[0].units = 1, s[0].kernel_h = s[0].kernel_w = 4;
    s[1].units = 2;
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_layers = 2;
    mc.layers = s;
    mc.input_height = mc.input_width = 16, mc.input_channels = 4;
    fixture f = {0};
    ck_assert_int_eq(bnn_model_create(&mc, &f.model), BNN_OK);
    ck_assert_int_eq(bnn_guide_create(f.model, NULL, &f.guide), BNN_OK);
    bnn_svi_config sc = tu_svi(100);
    sc.max_batch = 1;
    sc.estimator = BNN_EST_FLIPOUT;
    ck_assert_int_eq(bnn_optimizer_create(f.guide, NULL, &sc, &f.opt), BNN_OK);
    const size_t width = 13 * 13 * 4 * 4 * 4, lim = (size_t)(IO_MAX_BATCH_X_WIDTH / width);
    f.opt->svi.max_batch = lim + 1;
    size_t size;
    ck_assert_int_eq(bnn_save_size(f.guide, f.opt, &size), BNN_E_INVALID);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "10816"));
    f.opt->svi.max_batch = lim;
    ck_assert_int_eq(bnn_save_size(f.guide, f.opt, &size), BNN_OK);
    unsigned char *buf = malloc(size);
    ck_assert_int_eq(bnn_save_to_memory(f.guide, f.opt, buf, size, &size), BNN_OK);
    const size_t opt_at = 24 + 60 + 2 * 84 + 8 + 8 * bnn_model_param_count(f.model);
    ck_assert_uint_eq(r64(buf, opt_at + 56), lim);
    w64(buf, opt_at + 56, lim + 1);
    reseal(buf, size);
    ck_assert_int_eq(load_expect_fail(buf, size, NULL), BNN_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bnn_last_error(), "max_batch"));
    f.opt->svi.max_batch = 1;
    free(buf);
    free_fixture(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("io");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, test_crc32);
    tcase_add_test(tc, test_golden_bytes);
    tcase_add_test(tc, test_save_size_and_capacity);
    suite_add_tcase(s, tc);

    tc = tcase_create("round_trip");
    tcase_add_test(tc, test_round_trip_guide);
    tcase_add_test(tc, test_round_trip_adam);
    tcase_add_test(tc, test_round_trip_sgd);
    tcase_add_test(tc, test_round_trip_ivon);
    tcase_add_test(tc, test_sequence_bytes_and_round_trip);
    tcase_add_test(tc, test_sequence_with_optimizers);
    tcase_add_test(tc, test_committed_files_load);
    tcase_add_test(tc, test_load_without_opt_out);
    tcase_add_test(tc, test_unused_nan_fields);
    tcase_add_test(tc, test_loaded_guide_predicts_identically);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_add_test(tc, test_file_round_trip);
    tcase_add_test(tc, test_save_replaces_symlink);
    tcase_add_test(tc, test_load_file_errors);
    tcase_add_test(tc, test_failed_save_keeps_old_file);
    tcase_add_test(tc, test_failed_write_keeps_old_file);
    tcase_add_test(tc, test_save_allocation_failure);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile");
    /* Thousands of loads; generous under valgrind and reference BLAS. */
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_truncation_every_byte);
    tcase_add_test(tc, test_every_bit_flip);
    tcase_add_test(tc, test_forged_fields);
    tcase_add_test(tc, test_versions);
    tcase_add_test(tc, test_every_allocation_failure);
    tcase_add_test(tc, test_max_batch_limit);
    tcase_add_test(tc, test_conv_max_batch_limit);
    tcase_add_test(tc, test_sequence_truncation_and_bit_flips);
    tcase_add_test(tc, test_sequence_forged_fields);
    tcase_add_test(tc, test_sequence_allocation_failure);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
