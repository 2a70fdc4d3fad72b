/* bnn_model: architecture, prior and likelihood ("model()" in Pyro). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#if defined(__ELF__)
/* Defined under an internal name bound to bnn_model_config_init@@BNN_0.2,
 * the default that new links use (a static link sees it as the plain
 * name). */
BNN_API void model_config_init_v1(bnn_model_config *cfg);
__asm__(".symver model_config_init_v1, bnn_model_config_init@@BNN_0.2");
#define bnn_model_config_init model_config_init_v1
#endif
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

/* bnn_model_config_init writes every field it knows, sizeof(bnn_model_config)
 * bytes.  A binary built against the struct before n_layers was appended
 * has a shorter one: the version script gives it its own symbol version
 * (BNN_0), bound at link time, which writes only the fields it has. */
#define MODEL_CONFIG_SIZE_V0 offsetof(bnn_model_config, n_layers)
BNN_API void model_config_init_v0(bnn_model_config *cfg);
#if defined(__ELF__)
__asm__(".symver model_config_init_v0, bnn_model_config_init@BNN_0");
#endif
BNN_API void model_config_init_v0(bnn_model_config *cfg)
{
    if (!cfg)
        return;
    bnn_model_config c;
    bnn_model_config_init(&c);
    c.struct_size = MODEL_CONFIG_SIZE_V0;
    memcpy(cfg, &c, MODEL_CONFIG_SIZE_V0);
}

BNN_API void bnn_layer_spec_init(bnn_layer_spec *spec)
{
    if (!spec)
        return;
    memset(spec, 0, sizeof *spec);
    spec->struct_size = sizeof *spec;
    spec->kind = BNN_LAYER_DENSE;
    spec->kernel_h = spec->kernel_w = 3;
    spec->stride_h = spec->stride_w = 1;
    spec->activation = BNN_ACT_INHERIT;
    spec->prior = BNN_PRIOR_INHERIT;
    spec->prior_sigma = 1.0f;
    spec->prior_pi = 0.5f;
    spec->prior_sigma1 = 1.0f;
    spec->prior_sigma2 = expf(-6.0f);
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

/* A prior's settings (the model's or a layer's); `who` names it. */
static bnn_status validate_prior(bnn_prior prior, float sigma, float pi, float s1, float s2,
                                 const char *who)
{
    if (prior == BNN_PRIOR_NORMAL) {
        if (!positive_finite(sigma))
            return error_set(BNN_E_INVALID, "%sprior_sigma must be finite and > 0, got %g", who,
                             (double)sigma);
    } else if (prior == BNN_PRIOR_SCALE_MIXTURE) {
        if (!(pi > 0.0f && pi < 1.0f))
            return error_set(BNN_E_INVALID, "%sprior_pi must be in (0,1), got %g", who, (double)pi);
        if (!positive_finite(s1) || !positive_finite(s2))
            return error_set(BNN_E_INVALID, "%smixture prior sigmas must be finite and > 0", who);
    } else {
        return error_set(BNN_E_INVALID, "%sunknown prior %d", who, (int)prior);
    }
    return BNN_OK;
}

static bnn_status validate(const bnn_model_config *c)
{
    if (c->n_layers == 0) {
        if (c->n_sizes < 2)
            return error_set(BNN_E_INVALID, "a model needs at least 2 layer sizes, got %zu",
                             c->n_sizes);
        if (c->n_sizes > BNN_MAX_LAYERS)
            return error_set(BNN_E_SHAPE, "at most %d layer sizes are supported, got %zu",
                             BNN_MAX_LAYERS, c->n_sizes);
        if (!c->layer_sizes)
            return error_set(BNN_E_INVALID, "layer_sizes is NULL");
        for (size_t i = 0; i < c->n_sizes; i++)
            if (c->layer_sizes[i] == 0)
                return error_set(BNN_E_SHAPE, "layer size %zu is 0", i);
    }
    if (c->activation != BNN_ACT_RELU && c->activation != BNN_ACT_TANH)
        return error_set(BNN_E_INVALID, "unknown activation %d", (int)c->activation);
    if (c->likelihood != BNN_LIK_CATEGORICAL && c->likelihood != BNN_LIK_GAUSSIAN &&
        c->likelihood != BNN_LIK_GAUSSIAN_LEARNED && c->likelihood != BNN_LIK_GAUSSIAN_HETERO)
        return error_set(BNN_E_INVALID, "unknown likelihood %d", (int)c->likelihood);
    if ((c->likelihood == BNN_LIK_GAUSSIAN || c->likelihood == BNN_LIK_GAUSSIAN_LEARNED) &&
        !positive_finite(c->noise_sigma))
        return error_set(BNN_E_INVALID, "noise_sigma must be finite and > 0, got %g",
                         (double)c->noise_sigma);
    bnn_status st = validate_prior(c->prior, c->prior_sigma, c->prior_pi, c->prior_sigma1,
                                   c->prior_sigma2, "");
    if (st != BNN_OK)
        return st;
    if (c->allocator && (!c->allocator->alloc || !c->allocator->free))
        return error_set(BNN_E_INVALID, "allocator must provide alloc and free");
    return BNN_OK;
}

/* The model being built: weight layers resolved into layer[], the sequence
 * copied into specs[]; the rest is filled by build(). */
struct model_plan {
    size_t n_w; /* weight layers */
    struct model_layer *layer;
    size_t n_specs;
    bnn_layer_spec *specs;
};

static void dense_layer(struct model_layer *y, size_t in, size_t units)
{
    memset(y, 0, sizeof *y);
    y->in_h = y->in_w = 1;
    y->in_c = in;
    y->kh = y->kw = y->sh = y->sw = 1;
    y->out_h = y->out_w = 1;
    y->out_c = units;
}

static void resolve_prior(struct model_layer *y, const bnn_model_config *c,
                          const bnn_layer_spec *s)
{
    int own = s && s->prior != BNN_PRIOR_INHERIT;
    y->own_prior = own;
    y->prior = own ? s->prior : c->prior;
    y->prior_sigma = own ? s->prior_sigma : c->prior_sigma;
    y->prior_pi = own ? s->prior_pi : c->prior_pi;
    y->prior_sigma1 = own ? s->prior_sigma1 : c->prior_sigma1;
    y->prior_sigma2 = own ? s->prior_sigma2 : c->prior_sigma2;
}

/* Output extent of a convolution along one axis; 0 if the kernel does not
 * fit the padded input. */
static size_t conv_extent(size_t in, size_t k, size_t stride, size_t pad)
{
    if (in > SIZE_MAX / 4 || pad > SIZE_MAX / 4 || k > in + 2 * pad)
        return 0;
    return (in + 2 * pad - k) / stride + 1;
}

/* Read cfg->layers (stride: the first entry's struct_size) and resolve
 * them into weight layers. */
static bnn_status plan_sequence(const bnn_model_config *c, struct model_plan *p)
{
    if (c->n_layers > MODEL_MAX_SPECS)
        return error_set(BNN_E_SHAPE, "at most %d layers are supported, got %zu",
                         MODEL_MAX_SPECS, c->n_layers);
    if (!c->layers)
        return error_set(BNN_E_INVALID, "layers is NULL with n_layers %zu", c->n_layers);
    size_t stride;
    memcpy(&stride, c->layers, sizeof stride);
    const size_t min_spec = SIZED_END(bnn_layer_spec, activation);
    const unsigned char *base = (const unsigned char *)c->layers;
    for (size_t i = 0; i < c->n_layers; i++) {
        bnn_layer_spec_init(&p->specs[i]);
        bnn_status st = sized_read(&p->specs[i], sizeof p->specs[i], base + i * stride, min_spec,
                                   "bnn_layer_spec");
        if (st != BNN_OK)
            return st;
        size_t own;
        memcpy(&own, base + i * stride, sizeof own);
        if (own != stride)
            return error_set(BNN_E_INVALID, "layers[%zu].struct_size %zu differs from layers[0]'s "
                             "%zu (call bnn_layer_spec_init on every entry)", i, own, stride);
    }
    p->n_specs = c->n_layers;

    size_t h = c->input_height, w = c->input_width, ch = c->input_channels, tmp;
    if (h == 0 || w == 0 || ch == 0)
        return error_set(BNN_E_SHAPE, "input shape %zu x %zu x %zu has a zero", h, w, ch);
    if (mem_mul_overflow(h, w, &tmp) || mem_mul_overflow(tmp, ch, &tmp))
        return error_set(BNN_E_SHAPE, "input shape %zu x %zu x %zu overflows", h, w, ch);
    int flat = 0; /* a dense or flatten entry was seen: no convolution may follow */
    p->n_w = 0;
    for (size_t i = 0; i < p->n_specs; i++) {
        const bnn_layer_spec *s = &p->specs[i];
        switch (s->kind) {
        case BNN_LAYER_DENSE:
        case BNN_LAYER_CONV2D: {
            if (p->n_w + 1 >= BNN_MAX_LAYERS)
                return error_set(BNN_E_SHAPE, "at most %d weight layers are supported",
                                 BNN_MAX_LAYERS - 1);
            if (s->units == 0)
                return error_set(BNN_E_SHAPE, "layers[%zu] has 0 units", i);
            if (s->activation != BNN_ACT_RELU && s->activation != BNN_ACT_TANH &&
                s->activation != BNN_ACT_IDENTITY && s->activation != BNN_ACT_INHERIT)
                return error_set(BNN_E_INVALID, "layers[%zu]: unknown activation %d", i,
                                 (int)s->activation);
            if (s->prior != BNN_PRIOR_INHERIT) {
                char who[48];
                snprintf(who, sizeof who, "layers[%zu]: ", i);
                bnn_status st = validate_prior(s->prior, s->prior_sigma, s->prior_pi,
                                               s->prior_sigma1, s->prior_sigma2, who);
                if (st != BNN_OK)
                    return st;
            }
            struct model_layer *y = &p->layer[p->n_w];
            if (s->kind == BNN_LAYER_DENSE) {
                size_t in = h * w * ch;
                dense_layer(y, in, s->units);
                flat = 1;
            } else {
                if (flat)
                    return error_set(BNN_E_SHAPE, "layers[%zu]: a convolution cannot follow a "
                                     "dense or flatten layer", i);
                if (s->kernel_h == 0 || s->kernel_w == 0 || s->stride_h == 0 || s->stride_w == 0)
                    return error_set(BNN_E_SHAPE, "layers[%zu]: kernel %zu x %zu and stride %zu "
                                     "x %zu must be > 0", i, s->kernel_h, s->kernel_w,
                                     s->stride_h, s->stride_w);
                if (s->pad_h >= s->kernel_h || s->pad_w >= s->kernel_w)
                    return error_set(BNN_E_SHAPE, "layers[%zu]: padding %zu x %zu must be below "
                                     "the kernel %zu x %zu", i, s->pad_h, s->pad_w, s->kernel_h,
                                     s->kernel_w);
                size_t oh = conv_extent(h, s->kernel_h, s->stride_h, s->pad_h);
                size_t ow = conv_extent(w, s->kernel_w, s->stride_w, s->pad_w);
                if (oh == 0 || ow == 0)
                    return error_set(BNN_E_SHAPE, "layers[%zu]: kernel %zu x %zu is larger than "
                                     "its padded input %zu x %zu", i, s->kernel_h, s->kernel_w,
                                     h + 2 * s->pad_h, w + 2 * s->pad_w);
                memset(y, 0, sizeof *y);
                y->conv = 1;
                y->in_h = h, y->in_w = w, y->in_c = ch;
                y->kh = s->kernel_h, y->kw = s->kernel_w;
                y->sh = s->stride_h, y->sw = s->stride_w;
                y->ph = s->pad_h, y->pw = s->pad_w;
                y->out_h = oh, y->out_w = ow, y->out_c = s->units;
                if (mem_mul_overflow(oh, ow, &tmp) || mem_mul_overflow(tmp, s->units, &tmp) ||
                    mem_mul_overflow(s->kernel_h, s->kernel_w, &tmp) ||
                    mem_mul_overflow(tmp, ch, &tmp))
                    return error_set(BNN_E_SHAPE, "layers[%zu]: sizes overflow", i);
            }
            y->act = s->activation == BNN_ACT_INHERIT ? c->activation : s->activation;
            resolve_prior(y, c, s);
            h = y->out_h, w = y->out_w, ch = y->out_c;
            p->n_w++;
            break;
        }
        case BNN_LAYER_MAXPOOL2:
        case BNN_LAYER_AVGPOOL2: {
            struct model_layer *y = p->n_w ? &p->layer[p->n_w - 1] : NULL;
            if (!y || !y->conv || y->pool != MODEL_POOL_NONE || (i && p->specs[i - 1].kind !=
                                                                      BNN_LAYER_CONV2D))
                return error_set(BNN_E_SHAPE, "layers[%zu]: pooling must directly follow a "
                                 "convolution", i);
            if (h < 2 || w < 2)
                return error_set(BNN_E_SHAPE, "layers[%zu]: 2 x 2 pooling of a %zu x %zu input",
                                 i, h, w);
            y->pool = s->kind == BNN_LAYER_MAXPOOL2 ? MODEL_POOL_MAX : MODEL_POOL_AVG;
            h /= 2, w /= 2;
            break;
        }
        case BNN_LAYER_FLATTEN:
            flat = 1;
            break;
        default:
            return error_set(BNN_E_INVALID, "layers[%zu]: unknown kind %d", i, (int)s->kind);
        }
    }
    if (p->n_w == 0 || p->specs[p->n_specs - 1].kind != BNN_LAYER_DENSE)
        return error_set(BNN_E_SHAPE, "the last layer must be dense (the outputs)");
    struct model_layer *last = &p->layer[p->n_w - 1];
    const bnn_activation last_act = p->specs[p->n_specs - 1].activation;
    if (last_act != BNN_ACT_INHERIT && last_act != BNN_ACT_IDENTITY)
        return error_set(BNN_E_INVALID, "the output layer takes no activation (INHERIT or "
                         "IDENTITY), got %d", (int)last_act);
    last->act = BNN_ACT_IDENTITY;
    return BNN_OK;
}

/* The MLP of layer_sizes as weight layers. */
static void plan_sizes(const bnn_model_config *c, struct model_plan *p)
{
    p->n_w = c->n_sizes - 1;
    p->n_specs = 0;
    for (size_t l = 0; l < p->n_w; l++) {
        dense_layer(&p->layer[l], c->layer_sizes[l], c->layer_sizes[l + 1]);
        p->layer[l].act = l + 1 < p->n_w ? c->activation : BNN_ACT_IDENTITY;
        resolve_prior(&p->layer[l], c, NULL);
    }
}

/* Fill m from a validated config and its plan: sizes, offsets and the
 * parameter count, overflow-checked (the guide holds 2 * n_params floats
 * for parameters and as many for gradients). */
static bnn_status build(bnn_model *m, const bnn_model_config *c, const struct model_plan *p)
{
    const struct model_layer *last = &p->layer[p->n_w - 1];
    size_t classes = last->out_c;
    if (c->likelihood == BNN_LIK_CATEGORICAL && classes < 2)
        return error_set(BNN_E_SHAPE, "a categorical model needs at least 2 classes");
    if (c->likelihood == BNN_LIK_CATEGORICAL && classes > INT32_MAX)
        return error_set(BNN_E_SHAPE, "too many classes for int32 labels");
    if (c->likelihood == BNN_LIK_GAUSSIAN_HETERO && classes % 2)
        return error_set(BNN_E_SHAPE, "a heteroscedastic model's last layer holds a mean and a "
                         "log-variance per output: its size must be even, got %zu", classes);
    size_t total = 0, max_width = 0;
    m->n_sizes = p->n_w + 1;
    for (size_t l = 0; l < p->n_w; l++) {
        const struct model_layer *y = &p->layer[l];
        size_t in = y->kh * y->kw * y->in_c, outw = y->out_c, wcount, act_in, pre, post;
        /* w + outw itself can wrap (3 x 2^62 weights + 2^62 biases = 2^64),
         * which would turn SIZE_MAX - w - outw into a huge bound. */
        if (mem_mul_overflow(in, outw, &wcount) || wcount > SIZE_MAX - outw ||
            total > SIZE_MAX - wcount - outw)
            return error_set(BNN_E_SHAPE, "parameter count overflows");
        m->w_off[l] = total;
        m->b_off[l] = total + wcount;
        total += wcount + outw;
        if (mem_mul_overflow(y->in_h * y->in_w, y->in_c, &act_in) ||
            mem_mul_overflow(y->out_h * y->out_w, y->out_c, &pre))
            return error_set(BNN_E_SHAPE, "layer %zu's activations overflow", l);
        post = y->pool ? (y->out_h / 2) * (y->out_w / 2) * y->out_c : pre;
        m->sizes[l] = act_in;
        m->sizes[l + 1] = post;
        if (act_in > max_width)
            max_width = act_in;
        if (pre > max_width)
            max_width = pre;
        if (y->conv)
            m->has_conv = 1;
    }
    if (max_width > SIZE_MAX / 16)
        return error_set(BNN_E_SHAPE, "activation width %zu is too large", max_width);
    size_t bytes;
    if (mem_mul_overflow(total, 4 * sizeof(float), &bytes) || total > (size_t)INT64_MAX / 8)
        return error_set(BNN_E_SHAPE, "parameter count %zu is too large", total);
    m->activation = c->activation;
    m->likelihood = c->likelihood;
    m->noise_sigma = c->noise_sigma;
    m->prior = c->prior;
    m->prior_sigma = c->prior_sigma;
    m->prior_pi = c->prior_pi;
    m->prior_sigma1 = c->prior_sigma1;
    m->prior_sigma2 = c->prior_sigma2;
    m->n_params = total;
    m->max_width = max_width;
    m->n_specs = p->n_specs;
    if (p->n_specs) {
        m->input_shape[0] = c->input_height;
        m->input_shape[1] = c->input_width;
        m->input_shape[2] = c->input_channels;
    } else {
        m->input_shape[0] = m->input_shape[1] = 1;
        m->input_shape[2] = m->sizes[0];
    }
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
    bnn_allocator alloc = c.allocator ? *c.allocator : mem_default_allocator();
    /* The layout is planned in the model's own allocation (the copied
     * sequence is a few KiB), which is freed again if it is refused. */
    bnn_model *m = mem_alloc(&alloc, sizeof *m);
    if (!m)
        return error_set(BNN_E_NOMEM, "out of memory allocating the model");
    if ((st = model_describe(&c, m)) != BNN_OK) {
        mem_free(&alloc, m);
        return st;
    }
    *out = m;
    return BNN_OK;
}

/* bnn_model_create's checks and layout into caller memory, allocating
 * nothing: the loader runs a file's configuration through it before it
 * allocates anything, so a file is held to exactly what create accepts. */
bnn_status model_describe(const bnn_model_config *user, bnn_model *m)
{
    bnn_model_config c;
    bnn_status st = read_config(user, &c);
    if (st != BNN_OK || (st = validate(&c)) != BNN_OK)
        return st;
    memset(m, 0, sizeof *m);
    struct model_plan plan = {0, m->layer, 0, m->specs};
    if (c.n_layers)
        st = plan_sequence(&c, &plan);
    else
        plan_sizes(&c, &plan);
    if (st == BNN_OK)
        st = build(m, &c, &plan);
    m->alloc = c.allocator ? *c.allocator : mem_default_allocator();
    return st;
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
    return m ? model_n_targets(m) : 0;
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
    c.n_layers = m->n_specs;
    c.layers = m->n_specs ? m->specs : NULL;
    c.input_height = m->input_shape[0];
    c.input_width = m->input_shape[1];
    c.input_channels = m->input_shape[2];
    sized_write(cfg, &c, sizeof c);
    return BNN_OK;
}
