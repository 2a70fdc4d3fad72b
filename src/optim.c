/* bnn_optimizer: Adam, SGD and IVON on the guide's flat buffers.  It owns an SVI
 * workspace (svi.c) so that steady-state steps never allocate. */
#include <math.h>
#include <string.h>

#include "fused.h"
#include "internal.h"
#include "pass.h"
#include "pool.h"

BNN_API void bnn_optimizer_config_init(bnn_optimizer_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    cfg->kind = BNN_OPT_ADAM;
    cfg->lr = 1e-3f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
    cfg->momentum = 0.0f;
    cfg->clip_norm = 0.0f;
    cfg->ivon_beta2 = 0.99f;
    cfg->ivon_hess_init = 0.1f;
    cfg->ivon_ess = 0.0f;
    cfg->ivon_clip_radius = 0.0f;
}

BNN_API void bnn_svi_config_init(bnn_svi_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    cfg->dataset_size = 0; /* no default can be right: the caller must say */
    cfg->kl_weight = 1.0f;
    cfg->estimator = BNN_EST_LOCAL_REPARAM;
    cfg->kl_mode = BNN_KL_ANALYTIC;
    cfg->num_particles = 1;
    cfg->max_batch = 128;
    cfg->seed = 1;
    cfg->num_threads = 1;
}

static bnn_status validate_ocfg(const bnn_optimizer_config *c)
{
    if (c->kind != BNN_OPT_ADAM && c->kind != BNN_OPT_SGD && c->kind != BNN_OPT_IVON)
        return error_set(BNN_E_INVALID, "unknown optimizer kind %d", (int)c->kind);
    if (!(isfinite(c->lr) && c->lr > 0.0f))
        return error_set(BNN_E_INVALID, "learning rate must be finite and > 0, got %g", (double)c->lr);
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f))
        return error_set(BNN_E_INVALID, "Adam betas must be in [0,1)");
    if (!(isfinite(c->eps) && c->eps > 0.0f))
        return error_set(BNN_E_INVALID, "Adam eps must be finite and > 0");
    if (!(c->momentum >= 0.0f && c->momentum < 1.0f))
        return error_set(BNN_E_INVALID, "momentum must be in [0,1), got %g", (double)c->momentum);
    if (!(isfinite(c->clip_norm) && c->clip_norm >= 0.0f))
        return error_set(BNN_E_INVALID, "clip_norm must be finite and >= 0");
    if (c->kind != BNN_OPT_IVON)
        return BNN_OK;
    if (!(c->ivon_beta2 >= 0.0f && c->ivon_beta2 < 1.0f))
        return error_set(BNN_E_INVALID, "ivon_beta2 must be in [0,1), got %g",
                         (double)c->ivon_beta2);
    if (!(isfinite(c->ivon_hess_init) && c->ivon_hess_init > 0.0f))
        return error_set(BNN_E_INVALID, "ivon_hess_init must be finite and > 0, got %g",
                         (double)c->ivon_hess_init);
    if (!(isfinite(c->ivon_ess) && c->ivon_ess >= 0.0f))
        return error_set(BNN_E_INVALID, "ivon_ess must be finite and >= 0 (0: dataset_size)");
    if (!(isfinite(c->ivon_clip_radius) && c->ivon_clip_radius >= 0.0f))
        return error_set(BNN_E_INVALID, "ivon_clip_radius must be finite and >= 0 (0: off)");
    if (c->clip_norm != 0.0f)
        return error_set(BNN_E_INVALID, "IVON does not use clip_norm (it clips each update "
                         "with ivon_clip_radius): set clip_norm to 0");
    return BNN_OK;
}

float optim_ivon_delta(float kl_weight, float prior_sigma, float lam)
{
    double p = prior_sigma;
    return (float)((double)kl_weight / (p * p * (double)lam));
}

/* The weight layer whose weights or biases hold parameter i of a guide
 * half (layer l: [w_off[l], w_off[l + 1])). */
static size_t layer_of(const bnn_model *m, size_t i)
{
    size_t l = 0, L = model_n_layers(m);
    while (l + 1 < L && m->w_off[l + 1] <= i)
        l++;
    return l;
}

float optim_ivon_delta_at(const bnn_model *m, size_t i, float kl_weight, float lam)
{
    const struct model_layer *y = &m->layer[layer_of(m, i)];
    /* No delta without a Normal prior: IVON refuses such a model, so a
     * check h + delta > 0 leaves the refusal to bnn_optimizer_create. */
    if (y->prior != BNN_PRIOR_NORMAL)
        return INFINITY;
    return optim_ivon_delta(kl_weight, y->prior_sigma, lam);
}

static int same_prior(const struct model_layer *a, const struct model_layer *b)
{
    if (a->prior != b->prior)
        return 0;
    if (a->prior == BNN_PRIOR_NORMAL)
        return a->prior_sigma == b->prior_sigma;
    return a->prior_pi == b->prior_pi && a->prior_sigma1 == b->prior_sigma1 &&
           a->prior_sigma2 == b->prior_sigma2;
}

/* o's prior segments (internal.h): one per run of equal layer priors. */
static void prior_segments(bnn_optimizer *o, const bnn_model *m)
{
    size_t L = model_n_layers(m), n = 0;
    for (size_t l = 0; l < L; l++) {
        if (n == 0 || !same_prior(&m->layer[o->seg_layer[n - 1]], &m->layer[l]))
            o->seg_layer[n++] = l;
        o->seg_end[n - 1] = l + 1 < L ? m->w_off[l + 1] : m->n_params;
    }
    o->n_seg = n;
}

/* Every segment's delta for kl_weight. */
static void ivon_deltas(const bnn_optimizer *o, float kl_weight, float *delta)
{
    const bnn_model *m = o->guide->model;
    for (size_t s = 0; s < o->n_seg; s++)
        delta[s] = optim_ivon_delta(kl_weight, m->layer[o->seg_layer[s]].prior_sigma, o->ivon_lam);
}

/* The first weight layer whose prior is not Normal, or L if none. */
static size_t first_non_normal(const bnn_model *m)
{
    size_t l = 0;
    while (l < model_n_layers(m) && m->layer[l].prior == BNN_PRIOR_NORMAL)
        l++;
    return l;
}

/* IVON's demands on the model and the SVI settings (bnn.h "IVON"). */
static bnn_status validate_ivon(const bnn_svi_config *c, const bnn_model *m)
{
    if (c->estimator != BNN_EST_WEIGHT_SAMPLING)
        return error_set(BNN_E_UNSUPPORTED, "IVON needs BNN_EST_WEIGHT_SAMPLING: its Hessian "
                         "estimate (Price's theorem) uses the weight draw");
    size_t l = first_non_normal(m);
    if (l < model_n_layers(m))
        return error_set(BNN_E_UNSUPPORTED, "IVON needs the Normal prior on every layer (its "
                         "precision is IVON's weight decay); weight layer %zu has the "
                         "scale-mixture prior, which has no such form", l);
    if (!(c->kl_weight > 0.0f))
        return error_set(BNN_E_INVALID, "IVON needs kl_weight > 0 (it scales the prior "
                         "precision, which keeps the posterior proper)");
    return BNN_OK;
}

static bnn_status validate_svi(const bnn_svi_config *c, const bnn_model *m)
{
    if (c->dataset_size == 0)
        return error_set(BNN_E_INVALID, "bnn_svi_config.dataset_size is 0: set it to the number "
                         "of training examples (each batch adds KL * batch / dataset_size)");
    if (!(isfinite(c->kl_weight) && c->kl_weight >= 0.0f))
        return error_set(BNN_E_INVALID, "kl_weight must be finite and >= 0");
    if (c->estimator != BNN_EST_LOCAL_REPARAM && c->estimator != BNN_EST_WEIGHT_SAMPLING &&
        c->estimator != BNN_EST_FLIPOUT)
        return error_set(BNN_E_INVALID, "unknown estimator %d", (int)c->estimator);
    if (c->estimator == BNN_EST_LOCAL_REPARAM && m->has_conv)
        return error_set(BNN_E_UNSUPPORTED, "local reparameterization is not supported for "
                         "convolutional networks (the positions of an image share a kernel, so "
                         "their pre-activations are not independent): use BNN_EST_FLIPOUT or "
                         "BNN_EST_WEIGHT_SAMPLING");
    if (c->kl_mode != BNN_KL_ANALYTIC && c->kl_mode != BNN_KL_MONTE_CARLO)
        return error_set(BNN_E_INVALID, "unknown KL mode %d", (int)c->kl_mode);
    size_t l = first_non_normal(m);
    if (c->kl_mode == BNN_KL_ANALYTIC && l < model_n_layers(m))
        return error_set(BNN_E_INVALID, "the scale-mixture prior (weight layer %zu) has no "
                         "closed-form KL: use BNN_KL_MONTE_CARLO", l);
    if (c->num_particles < 1 || c->num_particles > 256)
        return error_set(BNN_E_INVALID, "num_particles must be in [1, 256], got %zu",
                         c->num_particles);
    if (c->max_batch < 1)
        return error_set(BNN_E_INVALID, "max_batch must be >= 1");
    if (c->num_threads > BNN_MAX_THREADS)
        return error_set(BNN_E_INVALID, "num_threads must be in [0, %d], got %zu",
                         BNN_MAX_THREADS, c->num_threads);
    return BNN_OK;
}

BNN_API bnn_status bnn_optimizer_create(bnn_guide *guide, const bnn_optimizer_config *ocfg,
                                        const bnn_svi_config *svi, bnn_optimizer **out)
{
    API_ENTRY();
    if (!guide || !out)
        return error_set(BNN_E_INVALID, "bnn_optimizer_create: guide and out must not be NULL");
    if (!svi)
        return error_set(BNN_E_INVALID, "bnn_optimizer_create: svi must not be NULL (its "
                         "dataset_size, the number of training examples, has no default)");
    if (guide->optimizer)
        return error_set(BNN_E_STATE, "bnn_optimizer_create: the guide already has an optimizer "
                         "(they would share its gradient buffer); free that one first");
    bnn_optimizer_config oc;
    bnn_svi_config sc;
    bnn_optimizer_config_init(&oc);
    bnn_svi_config_init(&sc);
    bnn_status st = BNN_OK;
    if (ocfg)
        st = sized_read(&oc, sizeof oc, ocfg, offsetof(bnn_optimizer_config, beta1),
                        "bnn_optimizer_config");
    if (st == BNN_OK && svi)
        st = sized_read(&sc, sizeof sc, svi, offsetof(bnn_svi_config, seed), "bnn_svi_config");
    if (st == BNN_OK)
        st = validate_ocfg(&oc);
    if (st == BNN_OK)
        st = validate_svi(&sc, guide->model);
    int ivon = oc.kind == BNN_OPT_IVON;
    if (st == BNN_OK && ivon)
        st = validate_ivon(&sc, guide->model);
    if (st != BNN_OK)
        return st;

    const bnn_allocator *a = &guide->model->alloc;
    bnn_optimizer *o = mem_alloc(a, sizeof *o);
    if (!o)
        return error_set(BNN_E_NOMEM, "out of memory allocating the optimizer");
    memset(o, 0, sizeof *o);
    o->guide = guide;
    o->ocfg = oc;
    o->svi = sc;
    size_t P = guide->n_params;
    o->m = mem_calloc_array(a, 2 * P, sizeof(float));
    /* v is saved with the state, even for SGD; IVON has none. */
    o->v = ivon ? NULL : mem_calloc_array(a, 2 * P, sizeof(float));
    if (guide->n_noise) {
        o->noise_m = mem_calloc_array(a, guide->n_noise, sizeof(float));
        o->noise_v = mem_calloc_array(a, guide->n_noise, sizeof(float));
    }
    if (!o->m || (!ivon && !o->v) || (guide->n_noise && (!o->noise_m || !o->noise_v)))
        st = error_set(BNN_E_NOMEM, "out of memory allocating the optimizer state");
    prior_segments(o, guide->model);
    if (st == BNN_OK && ivon) {
        double lam = oc.ivon_ess > 0.0f ? (double)oc.ivon_ess : (double)sc.dataset_size;
        o->ivon_lam = (float)lam;
        ivon_deltas(o, sc.kl_weight, o->ivon_delta);
        for (size_t i = 0; i < P; i++)
            o->m[P + i] = oc.ivon_hess_init;
        o->ws.ivon = 1;
    }
    if (st != BNN_OK || (st = svi_ws_alloc(&o->ws, guide->model, &sc)) != BNN_OK) {
        bnn_optimizer_free(o);
        return st;
    }
    guide->optimizer = o;
    *out = o;
    return BNN_OK;
}

BNN_API void bnn_optimizer_free(bnn_optimizer *o)
{
    if (!o)
        return;
    if (o->guide->optimizer == o)
        o->guide->optimizer = NULL;
    const bnn_allocator *a = &o->guide->model->alloc;
    svi_ws_free(&o->ws, a);
    mem_free(a, o->m);
    mem_free(a, o->v);
    mem_free(a, o->noise_m);
    mem_free(a, o->noise_v);
    mem_free(a, o);
}

BNN_API bnn_status bnn_optimizer_set_lr(bnn_optimizer *o, float lr)
{
    API_ENTRY();
    if (!o)
        return error_set(BNN_E_INVALID, "bnn_optimizer_set_lr: optimizer is NULL");
    if (!(isfinite(lr) && lr > 0.0f))
        return error_set(BNN_E_INVALID, "learning rate must be finite and > 0, got %g", (double)lr);
    o->ocfg.lr = lr;
    return BNN_OK;
}

BNN_API bnn_status bnn_optimizer_set_kl_weight(bnn_optimizer *o, float kl_weight)
{
    API_ENTRY();
    if (!o)
        return error_set(BNN_E_INVALID, "bnn_optimizer_set_kl_weight: optimizer is NULL");
    if (!(isfinite(kl_weight) && kl_weight >= 0.0f))
        return error_set(BNN_E_INVALID, "kl_weight must be finite and >= 0, got %g",
                         (double)kl_weight);
    if (o->ocfg.kind != BNN_OPT_IVON) {
        o->svi.kl_weight = kl_weight;
        return BNN_OK;
    }
    if (!(kl_weight > 0.0f))
        return error_set(BNN_E_INVALID, "IVON needs kl_weight > 0 (it scales the prior "
                         "precision, which keeps the posterior proper)");
    /* A smaller prior precision must keep every h + delta > 0, as the
     * update and the loader require: h may have gone below 0. */
    float delta[BNN_MAX_LAYERS];
    ivon_deltas(o, kl_weight, delta);
    const float *h = o->m + o->guide->n_params;
    for (size_t s = 0, i = 0; s < o->n_seg; s++)
        for (; i < o->seg_end[s]; i++)
            if (!(h[i] + delta[s] > 0.0f))
                return error_set(BNN_E_STATE, "bnn_optimizer_set_kl_weight: IVON's Hessian "
                                 "estimate %zu (%g) is not above -delta = %g for kl_weight %g: "
                                 "the posterior would be improper", i, (double)h[i],
                                 -(double)delta[s], (double)kl_weight);
    o->svi.kl_weight = kl_weight;
    memcpy(o->ivon_delta, delta, o->n_seg * sizeof delta[0]);
    return BNN_OK;
}

BNN_API bnn_status bnn_optimizer_get_kl_weight(const bnn_optimizer *o, float *kl_weight)
{
    API_ENTRY();
    if (!o || !kl_weight)
        return error_set(BNN_E_INVALID, "bnn_optimizer_get_kl_weight: optimizer and kl_weight "
                         "must not be NULL");
    *kl_weight = o->svi.kl_weight;
    return BNN_OK;
}

BNN_API bnn_status bnn_optimizer_set_threads(bnn_optimizer *o, size_t num_threads)
{
    API_ENTRY();
    if (!o)
        return error_set(BNN_E_INVALID, "bnn_optimizer_set_threads: optimizer is NULL");
    if (num_threads > BNN_MAX_THREADS)
        return error_set(BNN_E_INVALID, "num_threads must be in [0, %d], got %zu",
                         BNN_MAX_THREADS, num_threads);
    size_t want = num_threads > 1 ? num_threads : 1;
    size_t have = o->svi.num_threads > 1 ? o->svi.num_threads : 1;
    if (want == have) {
        o->svi.num_threads = num_threads;
        return BNN_OK;
    }
    /* The new pool first: on failure the optimizer keeps the old one. */
    pool *p;
    bnn_status st = pool_create(&o->guide->model->alloc, want, &p);
    if (st != BNN_OK)
        return st;
    pool_free(o->ws.pool);
    o->ws.pool = p;
    o->svi.num_threads = num_threads;
    return BNN_OK;
}

BNN_API uint64_t bnn_optimizer_step_count(const bnn_optimizer *o)
{
    return o ? o->step : 0;
}

BNN_API bnn_status bnn_optimizer_get_config(const bnn_optimizer *o, bnn_optimizer_config *ocfg,
                                            bnn_svi_config *svi)
{
    API_ENTRY();
    if (!o)
        return error_set(BNN_E_INVALID, "bnn_optimizer_get_config: optimizer is NULL");
    bnn_status st = BNN_OK;
    if (ocfg)
        st = sized_check(ocfg, offsetof(bnn_optimizer_config, beta1), "bnn_optimizer_config");
    if (st == BNN_OK && svi)
        st = sized_check(svi, offsetof(bnn_svi_config, seed), "bnn_svi_config");
    if (st != BNN_OK)
        return st;
    if (ocfg)
        sized_write(ocfg, &o->ocfg, sizeof o->ocfg);
    if (svi)
        sized_write(svi, &o->svi, sizeof o->svi);
    return BNN_OK;
}

double optim_noise_grad_ss(const bnn_guide *g)
{
    const float *gs = g->grads + 2 * g->n_params;
    double ss = 0.0;
    for (size_t k = 0; k < g->n_noise; k++)
        ss += (double)gs[k] * gs[k];
    return ss;
}

/* The learned noise log-sigmas, a point estimate: SGD's own step for SGD,
 * else Adam with the configuration's lr, beta1, beta2 and eps, for IVON
 * too (its Hessian estimate and posterior belong to the weights; the
 * noise has neither, and Adam's step, about lr in log sigma, is
 * scale-free).  `scale` is the clipping factor. */
static void noise_update(bnn_optimizer *o, float scale, uint64_t t)
{
    bnn_guide *g = o->guide;
    size_t D = g->n_noise;
    float *s = g->params + 2 * g->n_params, *gs = g->grads + 2 * g->n_params;
    float lr = o->ocfg.lr, *m = o->noise_m, *v = o->noise_v;
    if (o->ocfg.kind == BNN_OPT_SGD) {
        float keep = t == 1 ? 0.0f : o->ocfg.momentum;
        for (size_t k = 0; k < D; k++) {
            m[k] = keep * m[k] + gs[k] * scale;
            s[k] -= lr * m[k];
        }
        return;
    }
    double b1 = o->ocfg.beta1, b2 = o->ocfg.beta2;
    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    for (size_t k = 0; k < D; k++) {
        double gk = (double)gs[k] * scale;
        m[k] = (float)(b1 * m[k] + (1.0 - b1) * gk);
        v[k] = (float)(b2 * v[k] + (1.0 - b2) * gk * gk);
        s[k] -= (float)(lr / bc1 * m[k] / (sqrt(v[k] / bc2) + o->ocfg.eps));
    }
}

/* IVON's settings for step t (counted from 1) in prior segment s. */
static fused_ivon_args ivon_args(const bnn_optimizer *o, uint64_t t, size_t s)
{
    float b1 = o->ocfg.beta1, r = o->ocfg.ivon_clip_radius, d = o->ivon_delta[s];
    fused_ivon_args a = {b1, o->ocfg.ivon_beta2, (float)(1.0 / (1.0 - pow(b1, (double)t))),
                         (float)((double)o->ocfg.lr * ((double)o->ocfg.ivon_hess_init +
                                                       (double)d)),
                         d, o->ivon_lam, r > 0.0f ? r : INFINITY};
    return a;
}

void optim_apply_ivon_fused(bnn_optimizer *o, double *ss)
{
    bnn_guide *g = o->guide;
    const bnn_model *md = g->model;
    size_t P = g->n_params;
    float *p = g->params, *gr = g->grads, *m = o->m;
    uint64_t t = o->step + 1;
    fused_ivon_args a[BNN_MAX_LAYERS];
    for (size_t k = 0; k < o->n_seg; k++)
        a[k] = ivon_args(o, t, k);
    /* Layer by layer in backward()'s order, so that the sum of squares is
     * the one bnn_svi_grad computes; earlier particles' terms are in gr.
     * Each layer lies in one prior segment. */
    int acc = o->ws.ivon_acc;
    size_t s = o->n_seg - 1;
    for (size_t l = model_n_layers(md); l-- > 0;) {
        size_t w0 = md->w_off[l], len = model_layer_in(md, l) * model_layer_out(md, l) +
                                        model_layer_out(md, l);
        while (s > 0 && o->seg_end[s - 1] > w0)
            s--;
        pass_ivon_update_grad(&o->ws, len, p + w0, p + P + w0, m + w0, m + P + w0,
                              o->ws.gw + w0, o->ws.noise + w0, acc ? gr + w0 : NULL,
                              acc ? gr + P + w0 : NULL, &a[s], ss);
    }
    *ss += optim_noise_grad_ss(g);
    noise_update(o, 1.0f, t);
    o->step = t;
}

/* The update itself, for a gradient known to be finite with sum of
 * squares ss. */
static void apply(bnn_optimizer *o, double ss)
{
    bnn_guide *g = o->guide;
    size_t n = 2 * g->n_params;
    float *p = g->params, *gr = g->grads;

    float scale = 1.0f;
    if (o->ocfg.clip_norm > 0.0f) {
        double norm = sqrt(ss);
        if (norm > o->ocfg.clip_norm)
            scale = (float)(o->ocfg.clip_norm / (norm + 1e-6));
    }

    uint64_t t = o->step + 1;
    float lr = o->ocfg.lr;
    float *m = o->m;
    if (o->ocfg.kind == BNN_OPT_IVON) {
        size_t P = g->n_params;
        fused_ivon_args a[BNN_MAX_LAYERS];
        for (size_t k = 0; k < o->n_seg; k++)
            a[k] = ivon_args(o, t, k);
        pass_segs segs = {o->n_seg, o->seg_end};
        pass_ivon_update(&o->ws, P, p, p + P, m, m + P, gr, gr + P, a, &segs);
    } else if (o->ocfg.kind == BNN_OPT_ADAM) {
        /* PyTorch's Adam (which Pyro wraps): bias-corrected step size and
         * eps added to the corrected root of v. */
        float b1 = o->ocfg.beta1, b2 = o->ocfg.beta2;
        double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
        fused_adam_args a = {scale, b1, b2, (float)(lr / bc1), (float)(1.0 / sqrt(bc2)),
                             o->ocfg.eps};
        pass_adam(&o->ws, n, p, gr, m, o->v, &a);
    } else {
        float mom = o->ocfg.momentum;
        if (mom > 0.0f) {
            /* PyTorch SGD momentum: the buffer starts as the first gradient. */
            float keep = t == 1 ? 0.0f : mom;
            for (size_t i = 0; i < n; i++) {
                m[i] = keep * m[i] + gr[i] * scale;
                p[i] -= lr * m[i];
            }
        } else {
            for (size_t i = 0; i < n; i++)
                p[i] -= lr * gr[i] * scale;
        }
    }
    noise_update(o, scale, t);
    o->step = t;
}

bnn_status optim_apply(bnn_optimizer *o, double grad_ss)
{
    apply(o, grad_ss);
    return BNN_OK;
}

BNN_API bnn_status bnn_optimizer_step(bnn_optimizer *o)
{
    API_ENTRY();
    if (!o)
        return error_set(BNN_E_INVALID, "bnn_optimizer_step: optimizer is NULL");
    /* One pass gives both the finiteness check (NaN and Inf propagate into
     * the sum; finite floats cannot overflow it) and the clipping norm. */
    double ss = pass_sum_sq(&o->ws, 2 * o->guide->n_params, o->guide->grads) +
                optim_noise_grad_ss(o->guide);
    if (!isfinite(ss))
        return error_set(BNN_E_NUMERIC, "gradient holds NaN or Inf: parameters left unchanged");
    apply(o, ss);
    return BNN_OK;
}

BNN_API bnn_status bnn_lr_schedule(bnn_lr_decay kind, float lr0, float lr_end, uint64_t step,
                                   uint64_t total, float *lr)
{
    API_ENTRY();
    if (!lr)
        return error_set(BNN_E_INVALID, "bnn_lr_schedule: lr is NULL");
    if (kind != BNN_LR_CONSTANT && kind != BNN_LR_LINEAR && kind != BNN_LR_COSINE)
        return error_set(BNN_E_INVALID, "unknown learning-rate decay %d", (int)kind);
    if (!(isfinite(lr0) && lr0 > 0.0f) || !(isfinite(lr_end) && lr_end > 0.0f))
        return error_set(BNN_E_INVALID, "lr0 and lr_end must be finite and > 0");
    if (total == 0)
        return error_set(BNN_E_INVALID, "bnn_lr_schedule: total must be >= 1");
    double f = step >= total ? 1.0 : (double)step / (double)total, r = lr0;
    if (kind == BNN_LR_LINEAR)
        r = lr0 + ((double)lr_end - lr0) * f;
    else if (kind == BNN_LR_COSINE)
        r = lr_end + ((double)lr0 - lr_end) * 0.5 * (1.0 + cos(3.14159265358979323846 * f));
    *lr = (float)r;
    return BNN_OK;
}
