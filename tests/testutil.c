#include "testutil.h"

#include <math.h>
#include <stdlib.h>

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

uint64_t tu_next(tu_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_uniform(tu_rng *r)
{
    return (double)(tu_next(r) >> 11) * 0x1.0p-53;
}

double tu_normal(tu_rng *r)
{
    double u1 = tu_uniform(r), u2 = tu_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void tu_fill_uniform(tu_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * tu_uniform(r));
}

int tu_close(double a, double b, double atol, double rtol)
{
    if (isnan(a) || isnan(b))
        return 0;
    return fabs(a - b) <= atol + rtol * fabs(b);
}

static void *tu_alloc_fn(void *ctx, size_t size)
{
    tu_alloc *c = ctx;
    c->calls++;
    if (size > c->max_request)
        c->max_request = size;
    int fail = c->fail_at && (c->calls == c->fail_at || (c->fail_rest && c->calls > c->fail_at));
    void *p = fail || (c->cap && size > c->cap) ? NULL : malloc(size);
    if (p)
        c->live++;
    else
        c->failed++;
    return p;
}

static void tu_free_fn(void *ctx, void *p)
{
    tu_alloc *c = ctx;
    if (!p)
        return;
    ck_assert_msg(c->live > 0, "free of a block this allocator never gave");
    c->live--;
    free(p);
}

bnn_allocator tu_allocator(tu_alloc *c)
{
    bnn_allocator a = {tu_alloc_fn, tu_free_fn, c};
    return a;
}

void tu_alloc_arm(tu_alloc *c, size_t fail_at, int fail_rest)
{
    c->calls = 0;
    c->failed = 0;
    c->fail_at = fail_at;
    c->fail_rest = fail_rest;
}

bnn_model *tu_model(const size_t *sizes, size_t n, bnn_activation act, bnn_likelihood lik,
                    float noise_sigma, const bnn_allocator *al)
{
    bnn_model_config c;
    bnn_model_config_init(&c);
    c.n_sizes = n;
    c.layer_sizes = sizes;
    c.activation = act;
    c.likelihood = lik;
    c.noise_sigma = noise_sigma;
    c.allocator = al;
    bnn_model *m = NULL;
    bnn_status st = bnn_model_create(&c, &m);
    ck_assert_msg(st == BNN_OK, "tu_model: %s", bnn_last_error());
    return m;
}

bnn_svi_config tu_svi(size_t dataset_size)
{
    bnn_svi_config c;
    bnn_svi_config_init(&c);
    c.dataset_size = dataset_size;
    return c;
}
