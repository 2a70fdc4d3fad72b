/* bnn_guide: mean-field Normal posterior, one flat [mu | rho] buffer. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "dist.h"
#include "fused.h"
#include "internal.h"
#include "rng.h"
#include "tensor.h"

/* Below this sigma, softplus(rho) underflows in float arithmetic. */
#define GUIDE_MIN_SIGMA 1e-30

/* Parameters per block of a network draw: a multiple of the RNG's 256
 * values per batch, and small enough to stay in L1/L2. */
#define GUIDE_DRAW_BLOCK 4096

BNN_API void bnn_guide_config_init(bnn_guide_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    cfg->init = BNN_INIT_DEFAULT;
    cfg->init_sigma = 1e-3f;
    cfg->seed = 1;
}

static float rho_of_sigma(double sigma)
{
    if (sigma < GUIDE_MIN_SIGMA)
        sigma = GUIDE_MIN_SIGMA;
    return (float)dist_softplus_inv(sigma);
}

static void init_default(bnn_guide *g, const bnn_guide_config *c)
{
    const bnn_model *m = g->model;
    float *mu = g->params, *rho = g->params + g->n_params;
    /* He scaling keeps ReLU activations at unit variance through depth;
     * tanh prefers 1/fan_in. */
    double gain = m->activation == BNN_ACT_RELU ? 2.0 : 1.0;
    for (size_t l = 0; l < model_n_layers(m); l++) {
        size_t in = model_layer_in(m, l), out = model_layer_out(m, l);
        float *w = mu + m->w_off[l];
        rng_normal_fill(c->seed, rng_stream_id(0, 0, (unsigned)l, RNG_INIT), 0, in * out, w);
        float scale = (float)sqrt(gain / (double)in);
        for (size_t i = 0; i < in * out; i++)
            w[i] *= scale;
        memset(mu + m->b_off[l], 0, out * sizeof(float));
    }
    float r = rho_of_sigma(c->init_sigma);
    for (size_t i = 0; i < g->n_params; i++)
        rho[i] = r;
}

static void init_pyro(bnn_guide *g, const bnn_guide_config *c)
{
    /* The original program drew every mu and every rho from N(0, 1). */
    rng_normal_fill(c->seed, rng_stream_id(0, 0, 0, RNG_INIT), 0, 2 * g->n_params, g->params);
}

BNN_API bnn_status bnn_guide_create(const bnn_model *m, const bnn_guide_config *user,
                                    bnn_guide **out)
{
    API_ENTRY();
    if (!m || !out)
        return error_set(BNN_E_INVALID, "bnn_guide_create: model and out must not be NULL");
    bnn_guide_config c;
    bnn_guide_config_init(&c);
    if (user) {
        bnn_status st = sized_read(&c, sizeof c, user, offsetof(bnn_guide_config, init_sigma),
                                   "bnn_guide_config");
        if (st != BNN_OK)
            return st;
    }
    if (c.init != BNN_INIT_DEFAULT && c.init != BNN_INIT_PYRO)
        return error_set(BNN_E_INVALID, "unknown guide init %d", (int)c.init);
    if (!(isfinite(c.init_sigma) && c.init_sigma > 0.0f))
        return error_set(BNN_E_INVALID, "init_sigma must be finite and > 0, got %g",
                         (double)c.init_sigma);

    const bnn_allocator *a = &m->alloc;
    bnn_guide *g = mem_alloc(a, sizeof *g);
    if (!g)
        return error_set(BNN_E_NOMEM, "out of memory allocating the guide");
    g->model = m;
    g->optimizer = NULL;
    g->n_params = m->n_params;
    g->n_noise = model_n_noise(m);
    /* 2 P + D cannot overflow: the model bounds P by SIZE_MAX / 16. */
    size_t total = 2 * m->n_params + g->n_noise;
    g->params = mem_alloc_array(a, total, sizeof(float));
    g->grads = mem_calloc_array(a, total, sizeof(float));
    if (!g->params || !g->grads) {
        bnn_guide_free(g);
        return error_set(BNN_E_NOMEM, "out of memory allocating %zu guide parameters", total);
    }
    if (c.init == BNN_INIT_PYRO)
        init_pyro(g, &c);
    else
        init_default(g, &c);
    for (size_t k = 0; k < g->n_noise; k++)
        g->params[2 * g->n_params + k] = logf(m->noise_sigma);
    *out = g;
    return BNN_OK;
}

BNN_API void bnn_guide_free(bnn_guide *g)
{
    if (!g)
        return;
    const bnn_allocator *a = &g->model->alloc;
    mem_free(a, g->params);
    mem_free(a, g->grads);
    mem_free(a, g);
}

BNN_API const bnn_model *bnn_guide_model(const bnn_guide *g)
{
    return g ? g->model : NULL;
}

static bnn_status check_layer(const bnn_guide *g, size_t layer, const char *fn)
{
    if (!g)
        return error_set(BNN_E_INVALID, "%s: guide is NULL", fn);
    if (layer >= model_n_layers(g->model))
        return error_set(BNN_E_INVALID, "%s: layer %zu out of range (model has %zu)", fn,
                         layer, model_n_layers(g->model));
    return BNN_OK;
}

static void copy_sigma_out(const float *rho, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)dist_softplus(rho[i]);
}

BNN_API bnn_status bnn_guide_get_layer(const bnn_guide *g, size_t layer, float *w_mu,
                                       float *w_sigma, float *b_mu, float *b_sigma)
{
    API_ENTRY();
    bnn_status st = check_layer(g, layer, "bnn_guide_get_layer");
    if (st != BNN_OK)
        return st;
    const bnn_model *m = g->model;
    size_t in = model_layer_in(m, layer), out = model_layer_out(m, layer);
    const float *mu = guide_mu(g), *rho = guide_rho(g);
    if (w_mu)
        memcpy(w_mu, mu + m->w_off[layer], in * out * sizeof(float));
    if (w_sigma)
        copy_sigma_out(rho + m->w_off[layer], in * out, w_sigma);
    if (b_mu)
        memcpy(b_mu, mu + m->b_off[layer], out * sizeof(float));
    if (b_sigma)
        copy_sigma_out(rho + m->b_off[layer], out, b_sigma);
    return BNN_OK;
}

static bnn_status check_values(const float *v, size_t n, int sigma, const char *what)
{
    if (!v)
        return BNN_OK;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            return error_set(BNN_E_INVALID, "%s[%zu] is not finite", what, i);
        if (sigma && !(v[i] > 0.0f))
            return error_set(BNN_E_INVALID, "%s[%zu] = %g is not > 0", what,
                             i, (double)v[i]);
    }
    return BNN_OK;
}

BNN_API bnn_status bnn_guide_set_layer(bnn_guide *g, size_t layer, const float *w_mu,
                                       const float *w_sigma, const float *b_mu,
                                       const float *b_sigma)
{
    API_ENTRY();
    bnn_status st = check_layer(g, layer, "bnn_guide_set_layer");
    if (st != BNN_OK)
        return st;
    const bnn_model *m = g->model;
    size_t in = model_layer_in(m, layer), out = model_layer_out(m, layer);
    /* Validate everything first so a rejected call changes nothing. */
    if ((st = check_values(w_mu, in * out, 0, "w_mu")) != BNN_OK ||
        (st = check_values(w_sigma, in * out, 1, "w_sigma")) != BNN_OK ||
        (st = check_values(b_mu, out, 0, "b_mu")) != BNN_OK ||
        (st = check_values(b_sigma, out, 1, "b_sigma")) != BNN_OK)
        return st;
    float *mu = g->params, *rho = g->params + g->n_params;
    if (w_mu)
        memcpy(mu + m->w_off[layer], w_mu, in * out * sizeof(float));
    if (b_mu)
        memcpy(mu + m->b_off[layer], b_mu, out * sizeof(float));
    if (w_sigma)
        for (size_t i = 0; i < in * out; i++)
            rho[m->w_off[layer] + i] = rho_of_sigma(w_sigma[i]);
    if (b_sigma)
        for (size_t i = 0; i < out; i++)
            rho[m->b_off[layer] + i] = rho_of_sigma(b_sigma[i]);
    return BNN_OK;
}

/* A buffer of `have` elements where the layer needs `need`; NULL buffers
 * need nothing. */
static bnn_status check_count(const void *a, const void *b, size_t have, size_t need, int exact,
                              const char *what, const char *fn)
{
    if (!a && !b)
        return BNN_OK;
    if (exact ? have != need : have < need)
        return error_set(BNN_E_SHAPE, "%s: %s holds %zu elements, the layer %s %zu", fn, what,
                         have, exact ? "has" : "needs", need);
    return BNN_OK;
}

BNN_API bnn_status bnn_guide_get_layer_v2(const bnn_guide *g, size_t layer, float *w_mu,
                                          float *w_sigma, size_t w_cap, float *b_mu,
                                          float *b_sigma, size_t b_cap)
{
    API_ENTRY();
    const char *fn = "bnn_guide_get_layer_v2";
    bnn_status st = check_layer(g, layer, fn);
    if (st != BNN_OK)
        return st;
    size_t in = model_layer_in(g->model, layer), out = model_layer_out(g->model, layer);
    if ((st = check_count(w_mu, w_sigma, w_cap, in * out, 0, "w_cap", fn)) != BNN_OK ||
        (st = check_count(b_mu, b_sigma, b_cap, out, 0, "b_cap", fn)) != BNN_OK)
        return st;
    return bnn_guide_get_layer(g, layer, w_mu, w_sigma, b_mu, b_sigma);
}

BNN_API bnn_status bnn_guide_set_layer_v2(bnn_guide *g, size_t layer, const float *w_mu,
                                          const float *w_sigma, size_t w_count,
                                          const float *b_mu, const float *b_sigma,
                                          size_t b_count)
{
    API_ENTRY();
    const char *fn = "bnn_guide_set_layer_v2";
    bnn_status st = check_layer(g, layer, fn);
    if (st != BNN_OK)
        return st;
    size_t in = model_layer_in(g->model, layer), out = model_layer_out(g->model, layer);
    if ((st = check_count(w_mu, w_sigma, w_count, in * out, 1, "w_count", fn)) != BNN_OK ||
        (st = check_count(b_mu, b_sigma, b_count, out, 1, "b_count", fn)) != BNN_OK)
        return st;
    return bnn_guide_set_layer(g, layer, w_mu, w_sigma, b_mu, b_sigma);
}

/* MOPED (Krishnan et al. 2020): sigma = delta |w|, floored so that zero
 * weights keep a proper posterior. */
static double point_sigma(bnn_point_sigma mode, double delta, double floor_, double w)
{
    double s = mode == BNN_POINT_MOPED ? delta * fabs(w) : delta;
    return s > floor_ ? s : floor_;
}

static bnn_status check_point(const float *v, size_t n, bnn_point_sigma mode, float delta,
                              float floor_, const char *what)
{
    const char *fn = "bnn_guide_set_layer_from_point";
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            return error_set(BNN_E_INVALID, "%s: %s[%zu] is not finite", fn, what, i);
        if (point_sigma(mode, delta, floor_, v[i]) > FLT_MAX)
            return error_set(BNN_E_INVALID, "%s: sigma of %s[%zu] = %g x %g overflows a float",
                             fn, what, i, (double)delta, (double)v[i]);
    }
    return BNN_OK;
}

static void fill_point(float *mu, float *rho, const float *v, size_t n, bnn_point_sigma mode,
                       float delta, float floor_)
{
    for (size_t i = 0; i < n; i++) {
        float w = v ? v[i] : 0.0f;
        mu[i] = w;
        rho[i] = rho_of_sigma(point_sigma(mode, delta, floor_, w));
    }
}

BNN_API bnn_status bnn_guide_set_layer_from_point(bnn_guide *g, size_t layer, const float *w,
                                                  size_t w_count, const float *b,
                                                  size_t b_count, bnn_point_sigma mode,
                                                  float delta, float sigma_floor)
{
    API_ENTRY();
    const char *fn = "bnn_guide_set_layer_from_point";
    bnn_status st = check_layer(g, layer, fn);
    if (st != BNN_OK)
        return st;
    if (!w)
        return error_set(BNN_E_INVALID, "%s: w must not be NULL (b may be: zero biases)", fn);
    if (mode != BNN_POINT_MOPED && mode != BNN_POINT_CONSTANT)
        return error_set(BNN_E_INVALID, "%s: unknown sigma mode %d", fn, (int)mode);
    if (!(isfinite(delta) && delta >= 0.0f))
        return error_set(BNN_E_INVALID, "%s: delta must be finite and >= 0, got %g", fn,
                         (double)delta);
    if (!(isfinite(sigma_floor) && sigma_floor > 0.0f))
        return error_set(BNN_E_INVALID, "%s: sigma_floor must be finite and > 0, got %g", fn,
                         (double)sigma_floor);
    const bnn_model *m = g->model;
    size_t in = model_layer_in(m, layer), out = model_layer_out(m, layer);
    if ((st = check_count(w, NULL, w_count, in * out, 1, "w_count", fn)) != BNN_OK ||
        (st = check_count(b, NULL, b_count, out, 1, "b_count", fn)) != BNN_OK ||
        (st = check_point(w, in * out, mode, delta, sigma_floor, "w")) != BNN_OK ||
        (b && (st = check_point(b, out, mode, delta, sigma_floor, "b")) != BNN_OK))
        return st;
    float *mu = g->params, *rho = g->params + g->n_params;
    fill_point(mu + m->w_off[layer], rho + m->w_off[layer], w, in * out, mode, delta,
               sigma_floor);
    fill_point(mu + m->b_off[layer], rho + m->b_off[layer], b, out, mode, delta, sigma_floor);
    return BNN_OK;
}

BNN_API float *bnn_guide_params(bnn_guide *g, size_t *count)
{
    if (!g)
        return NULL;
    if (count)
        *count = 2 * g->n_params + g->n_noise;
    return g->params;
}

BNN_API float *bnn_guide_grads(bnn_guide *g, size_t *count)
{
    if (!g)
        return NULL;
    if (count)
        *count = 2 * g->n_params + g->n_noise;
    return g->grads;
}

/* The model's noise is one sigma per output only for the homoscedastic
 * likelihoods. */
static bnn_status check_noise(const bnn_guide *g, const void *buf, int learned_only,
                              const char *fn)
{
    if (!g || !buf)
        return error_set(BNN_E_INVALID, "%s: guide and sigma must not be NULL", fn);
    bnn_likelihood lik = g->model->likelihood;
    if (lik == BNN_LIK_GAUSSIAN_LEARNED || (!learned_only && lik == BNN_LIK_GAUSSIAN))
        return BNN_OK;
    return error_set(BNN_E_UNSUPPORTED, "%s: needs a %s model (this one's likelihood is %d)", fn,
                     learned_only ? "BNN_LIK_GAUSSIAN_LEARNED"
                                  : "BNN_LIK_GAUSSIAN or BNN_LIK_GAUSSIAN_LEARNED",
                     (int)lik);
}

BNN_API bnn_status bnn_guide_get_noise_sigma(const bnn_guide *g, float *sigma, size_t cap)
{
    API_ENTRY();
    bnn_status st = check_noise(g, sigma, 0, "bnn_guide_get_noise_sigma");
    if (st != BNN_OK)
        return st;
    size_t D = model_n_targets(g->model);
    if (cap < D)
        return error_set(BNN_E_SHAPE, "bnn_guide_get_noise_sigma: cap %zu is below the %zu "
                         "outputs", cap, D);
    const float *s = g->params + 2 * g->n_params;
    for (size_t k = 0; k < D; k++)
        sigma[k] = g->n_noise ? expf(s[k]) : g->model->noise_sigma;
    return BNN_OK;
}

BNN_API bnn_status bnn_guide_set_noise_sigma(bnn_guide *g, const float *sigma, size_t count)
{
    API_ENTRY();
    bnn_status st = check_noise(g, sigma, 1, "bnn_guide_set_noise_sigma");
    if (st != BNN_OK)
        return st;
    if (count != g->n_noise)
        return error_set(BNN_E_SHAPE, "bnn_guide_set_noise_sigma: count %zu is not the %zu "
                         "outputs", count, g->n_noise);
    for (size_t k = 0; k < count; k++)
        if (!(isfinite(sigma[k]) && sigma[k] > 0.0f))
            return error_set(BNN_E_INVALID, "bnn_guide_set_noise_sigma: sigma[%zu] = %g is not "
                             "finite and > 0", k, (double)sigma[k]);
    float *s = g->params + 2 * g->n_params;
    for (size_t k = 0; k < count; k++)
        s[k] = logf(sigma[k]);
    return BNN_OK;
}

void guide_sample_network(const bnn_guide *g, uint64_t seed, uint64_t stream, float *out)
{
    const float *mu = guide_mu(g), *rho = guide_rho(g);
    size_t n = g->n_params;
    /* Block by block, so that the normals are still in cache when
     * w = mu + softplus(rho) * eps reads them; a stream gives the same
     * numbers however its range is split. */
    for (size_t i = 0; i < n; i += GUIDE_DRAW_BLOCK) {
        size_t len = n - i < GUIDE_DRAW_BLOCK ? n - i : GUIDE_DRAW_BLOCK;
        rng_normal_fill(seed, stream, i, len, out + i);
        fused_sample_network(len, mu + i, rho + i, out + i);
    }
}
