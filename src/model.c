/* bnn_model: architecture, prior and likelihood ("model()" in Pyro). */
#include <math.h>
#include <string.h>

#include "internal.h"

BNN_API void bnn_model_config_init(bnn_model_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    cfg->activation = BNN_ACT_RELU;
    cfg->likelihood = BNN_LIK_CATEGORICAL;
    cfg->noise_sigma = 1.0f;
    cfg->prior = BNN_PRIOR_NORMAL;
    cfg->prior_sigma = 1.0f;
    cfg->prior_pi = 0.5f;
    cfg->prior_sigma1 = 1.0f;
    cfg->prior_sigma2 = expf(-6.0f);
}

static int positive_finite(float v)
{
    return isfinite(v) && v > 0.0f;
}

/* Copy the fields the caller's struct_size covers over the defaults, so
 * binaries built against an older, shorter struct keep working. */
static bnn_status read_config(const bnn_model_config *user, bnn_model_config *cfg)
{
    bnn_model_config_init(cfg);
    return sized_read(cfg, sizeof *cfg, user, offsetof(bnn_model_config, activation),
                      "bnn_model_config");
}

static bnn_status validate(const bnn_model_config *c)
{
    if (c->n_sizes < 2)
        return error_set(BNN_E_INVALID, "a model needs at least 2 layer sizes, got %zu", c->n_sizes);
    if (c->n_sizes > BNN_MAX_LAYERS)
        return error_set(BNN_E_SHAPE, "at most %d layer sizes are supported, got %zu",
                         BNN_MAX_LAYERS, c->n_sizes);
    if (!c->layer_sizes)
        return error_set(BNN_E_INVALID, "layer_sizes is NULL");
    for (size_t i = 0; i < c->n_sizes; i++)
        if (c->layer_sizes[i] == 0)
            return error_set(BNN_E_SHAPE, "layer size %zu is 0", i);
    if (c->activation != BNN_ACT_RELU && c->activation != BNN_ACT_TANH)
        return error_set(BNN_E_INVALID, "unknown activation %d", (int)c->activation);
    if (c->likelihood != BNN_LIK_CATEGORICAL && c->likelihood != BNN_LIK_GAUSSIAN)
        return error_set(BNN_E_INVALID, "unknown likelihood %d", (int)c->likelihood);
    if (c->likelihood == BNN_LIK_CATEGORICAL && c->layer_sizes[c->n_sizes - 1] < 2)
        return error_set(BNN_E_SHAPE, "a categorical model needs at least 2 classes");
    if (c->likelihood == BNN_LIK_CATEGORICAL && c->layer_sizes[c->n_sizes - 1] > INT32_MAX)
        return error_set(BNN_E_SHAPE, "too many classes for int32 labels");
    if (c->likelihood == BNN_LIK_GAUSSIAN && !positive_finite(c->noise_sigma))
        return error_set(BNN_E_INVALID, "noise_sigma must be finite and > 0, got %g",
                         (double)c->noise_sigma);
    if (c->prior == BNN_PRIOR_NORMAL) {
        if (!positive_finite(c->prior_sigma))
            return error_set(BNN_E_INVALID, "prior_sigma must be finite and > 0, got %g",
                             (double)c->prior_sigma);
    } else if (c->prior == BNN_PRIOR_SCALE_MIXTURE) {
        if (!(c->prior_pi > 0.0f && c->prior_pi < 1.0f))
            return error_set(BNN_E_INVALID, "prior_pi must be in (0,1), got %g",
                             (double)c->prior_pi);
        if (!positive_finite(c->prior_sigma1) || !positive_finite(c->prior_sigma2))
            return error_set(BNN_E_INVALID, "mixture prior sigmas must be finite and > 0");
    } else {
        return error_set(BNN_E_INVALID, "unknown prior %d", (int)c->prior);
    }
    if (c->allocator && (!c->allocator->alloc || !c->allocator->free))
        return error_set(BNN_E_INVALID, "allocator must provide alloc and free");
    return BNN_OK;
}

BNN_API bnn_status bnn_model_create(const bnn_model_config *user, bnn_model **out)
{
    API_ENTRY();
    if (!user || !out)
        return error_set(BNN_E_INVALID, "bnn_model_create: cfg and out must not be NULL");
    bnn_model_config c;
    bnn_status st = read_config(user, &c);
    if (st != BNN_OK)
        return st;
    if ((st = validate(&c)) != BNN_OK)
        return st;

    /* Offsets and total parameter count, overflow-checked: the guide will
     * hold 2 * n_params floats for parameters and as many for gradients. */
    size_t w_off[BNN_MAX_LAYERS], b_off[BNN_MAX_LAYERS];
    size_t total = 0, max_width = 0;
    for (size_t l = 0; l + 1 < c.n_sizes; l++) {
        size_t in = c.layer_sizes[l], outw = c.layer_sizes[l + 1], w;
        /* w + outw itself can wrap (3 x 2^62 weights + 2^62 biases = 2^64),
         * which would turn SIZE_MAX - w - outw into a huge bound. */
        if (mem_mul_overflow(in, outw, &w) || w > SIZE_MAX - outw ||
            total > SIZE_MAX - w - outw)
            return error_set(BNN_E_SHAPE, "parameter count overflows");
        w_off[l] = total;
        b_off[l] = total + w;
        total += w + outw;
    }
    for (size_t i = 0; i < c.n_sizes; i++)
        if (c.layer_sizes[i] > max_width)
            max_width = c.layer_sizes[i];
    size_t bytes;
    if (mem_mul_overflow(total, 4 * sizeof(float), &bytes) || total > (size_t)INT64_MAX / 8)
        return error_set(BNN_E_SHAPE, "parameter count %zu is too large", total);

    bnn_allocator alloc = c.allocator ? *c.allocator : mem_default_allocator();
    bnn_model *m = mem_alloc(&alloc, sizeof *m);
    if (!m)
        return error_set(BNN_E_NOMEM, "out of memory allocating the model");
    memset(m, 0, sizeof *m);
    m->alloc = alloc;
    m->n_sizes = c.n_sizes;
    for (size_t i = 0; i < c.n_sizes; i++)
        m->sizes[i] = c.layer_sizes[i];
    memcpy(m->w_off, w_off, sizeof w_off);
    memcpy(m->b_off, b_off, sizeof b_off);
    m->activation = c.activation;
    m->likelihood = c.likelihood;
    m->noise_sigma = c.noise_sigma;
    m->prior = c.prior;
    m->prior_sigma = c.prior_sigma;
    m->prior_pi = c.prior_pi;
    m->prior_sigma1 = c.prior_sigma1;
    m->prior_sigma2 = c.prior_sigma2;
    m->n_params = total;
    m->max_width = max_width;
    *out = m;
    return BNN_OK;
}

BNN_API void bnn_model_free(bnn_model *m)
{
    if (!m)
        return;
    bnn_allocator a = m->alloc;
    mem_free(&a, m);
}

BNN_API size_t bnn_model_input_size(const bnn_model *m)
{
    return m ? m->sizes[0] : 0;
}

BNN_API size_t bnn_model_output_size(const bnn_model *m)
{
    return m ? m->sizes[m->n_sizes - 1] : 0;
}

BNN_API size_t bnn_model_layer_count(const bnn_model *m)
{
    return m ? m->n_sizes - 1 : 0;
}

BNN_API bnn_status bnn_model_layer_shape(const bnn_model *m, size_t layer, size_t *in,
                                         size_t *out)
{
    API_ENTRY();
    if (!m || !in || !out)
        return error_set(BNN_E_INVALID, "bnn_model_layer_shape: model, in and out must not be "
                         "NULL");
    if (layer >= model_n_layers(m))
        return error_set(BNN_E_INVALID, "bnn_model_layer_shape: layer %zu out of range (model "
                         "has %zu)", layer, model_n_layers(m));
    *in = model_layer_in(m, layer);
    *out = model_layer_out(m, layer);
    return BNN_OK;
}

BNN_API size_t bnn_model_param_count(const bnn_model *m)
{
    return m ? m->n_params : 0;
}

BNN_API bnn_status bnn_model_get_config(const bnn_model *m, bnn_model_config *cfg)
{
    API_ENTRY();
    if (!m || !cfg)
        return error_set(BNN_E_INVALID, "bnn_model_get_config: NULL argument");
    bnn_status st = sized_check(cfg, offsetof(bnn_model_config, activation), "bnn_model_config");
    if (st != BNN_OK)
        return st;
    bnn_model_config c;
    bnn_model_config_init(&c);
    c.n_sizes = m->n_sizes;
    c.layer_sizes = m->sizes;
    c.activation = m->activation;
    c.likelihood = m->likelihood;
    c.noise_sigma = m->noise_sigma;
    c.prior = m->prior;
    c.prior_sigma = m->prior_sigma;
    c.prior_pi = m->prior_pi;
    c.prior_sigma1 = m->prior_sigma1;
    c.prior_sigma2 = m->prior_sigma2;
    c.allocator = NULL;
    sized_write(cfg, &c, sizeof c);
    return BNN_OK;
}
