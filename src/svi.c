/* bnn_svi_grad / bnn_svi_step: the negative ELBO of a minibatch,
 *   loss = sum_i -log p(y_i | x_i, w) + kl_weight * KL(q || p) * n / N,
 * averaged over particles, and its gradient w.r.t. every mu and rho. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "fused.h"
#include "internal.h"
#include "layer.h"
#include "pass.h"
#include "pool.h"
#include "rng.h"
#include "tensor.h"

#define LOG_2PI 1.8378770664093453

bnn_status svi_ws_alloc(struct svi_ws *ws, const bnn_model *m, const bnn_svi_config *cfg)
{
    const bnn_allocator *a = &m->alloc;
    size_t P = m->n_params, B = cfg->max_batch, bw;
    ws->estimator = cfg->estimator;
    ws->seed = cfg->seed;
    if (mem_mul_overflow(B, m->max_width, &bw) || bw > SIZE_MAX / 8)
        return error_set(BNN_E_SHAPE, "max_batch %zu is too large", B);
    size_t col = 0; /* floats of the widest im2col matrix */
    for (size_t l = 0; l < model_n_layers(m); l++) {
        const struct model_layer *y = &m->layer[l];
        size_t rows, k = model_layer_in(m, l);
        if (!y->conv)
            continue;
        /* cblas_sgemm takes int sizes: rows and columns of the im2col
         * matrix and of the products. */
        if (mem_mul_overflow(B, y->out_h * y->out_w, &rows) || rows > INT_MAX || k > INT_MAX ||
            mem_mul_overflow(rows, k, &k) || k > SIZE_MAX / 8)
            return error_set(BNN_E_SHAPE, "max_batch %zu is too large for layer %zu's im2col "
                             "matrix (max_batch x %zu x %zu rows, at most INT_MAX)", B, l,
                             y->out_h, y->out_w);
        if (k > col)
            col = k;
    }
    /* Only the per-parameter buffers this estimator uses: they dominate
     * the training footprint. */
    int lrt = cfg->estimator == BNN_EST_LOCAL_REPARAM;
    int noise = !lrt || cfg->kl_mode == BNN_KL_MONTE_CARLO;
    ws->dsig = lrt ? mem_alloc_array(a, P, sizeof(float)) : NULL;
    ws->sig2 = lrt ? mem_alloc_array(a, P, sizeof(float)) : NULL;
    ws->noise = noise ? mem_alloc_array(a, P, sizeof(float)) : NULL;
    ws->wsamp = lrt ? NULL : mem_alloc_array(a, P, sizeof(float));
    ws->gw = mem_alloc_array(a, P, sizeof(float));
    ws->logp = mem_alloc_array(a, bw, sizeof(float));
    ws->tmp_a = mem_alloc_array(a, bw, sizeof(float));
    ws->tmp_b = mem_alloc_array(a, bw, sizeof(float));
    ws->tmp_c = mem_alloc_array(a, bw, sizeof(float));
    /* Per-chunk sums, then per-chunk maxima (pass_ivon_draw). */
    ws->partial = mem_alloc_array(a, 2 * pool_chunks(2 * P), sizeof(double));
    if ((lrt && (!ws->dsig || !ws->sig2)) || (noise && !ws->noise) || (!lrt && !ws->wsamp) ||
        !ws->gw || !ws->logp || !ws->tmp_a || !ws->tmp_b || !ws->tmp_c || !ws->partial)
        return error_set(BNN_E_NOMEM, "out of memory allocating the training workspace");
    int flip = cfg->estimator == BNN_EST_FLIPOUT;
    for (size_t l = 0; l < model_n_layers(m); l++) {
        const struct model_layer *y = &m->layer[l];
        struct svi_layer_ws *w = &ws->layer[l];
        /* Each width is at most max_width, so B times it does not wrap. */
        size_t nin = B * model_act_in(m, l), npre = B * model_act_pre(m, l);
        size_t nout = B * model_act_out(m, l);
        w->pre = mem_alloc_array(a, npre, sizeof(float));
        w->post = mem_alloc_array(a, nout, sizeof(float));
        w->act = y->pool ? mem_alloc_array(a, npre, sizeof(float)) : NULL;
        w->arg = y->pool == MODEL_POOL_MAX ? mem_alloc_array(a, nout, 1) : NULL;
        w->std = lrt || flip ? mem_alloc_array(a, npre, sizeof(float)) : NULL;
        w->eps = lrt || flip ? mem_alloc_array(a, npre, sizeof(float)) : NULL;
        w->s_in = flip ? mem_alloc_array(a, nin, sizeof(float)) : NULL;
        if (!w->pre || !w->post || ((lrt || flip) && (!w->std || !w->eps)) ||
            (flip && !w->s_in) || (y->pool && !w->act) ||
            (y->pool == MODEL_POOL_MAX && !w->arg))
            return error_set(BNN_E_NOMEM, "out of memory allocating the training workspace");
    }
    if (col && !(ws->col = mem_alloc_array(a, col, sizeof(float))))
        return error_set(BNN_E_NOMEM, "out of memory allocating the training workspace");
    return pool_create(a, cfg->num_threads, &ws->pool);
}

void svi_ws_free(struct svi_ws *ws, const bnn_allocator *a)
{
    pool_free(ws->pool);
    mem_free(a, ws->partial);
    float **bufs[] = {&ws->dsig, &ws->sig2, &ws->noise, &ws->wsamp, &ws->gw,
                      &ws->logp, &ws->tmp_a, &ws->tmp_b, &ws->tmp_c, &ws->col};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        mem_free(a, *bufs[i]);
    for (size_t l = 0; l < BNN_MAX_LAYERS; l++) {
        struct svi_layer_ws *w = &ws->layer[l];
        mem_free(a, w->pre);
        mem_free(a, w->post);
        mem_free(a, w->std);
        mem_free(a, w->eps);
        mem_free(a, w->s_in);
        mem_free(a, w->act);
        mem_free(a, w->arg);
    }
}

static bnn_status check_batch(const bnn_optimizer *o, const float *x, const int32_t *labels,
                              const float *targets, size_t n, size_t offset, size_t total)
{
    if (!o || !x)
        return error_set(BNN_E_INVALID, "bnn_svi_grad: optimizer and x must not be NULL");
    const bnn_model *m = o->guide->model;
    if (n == 0 || n > o->svi.max_batch)
        return error_set(BNN_E_SHAPE, "batch size %zu must be in [1, max_batch = %zu]", n,
                         o->svi.max_batch);
    if (total < n || offset > total - n)
        return error_set(BNN_E_SHAPE, "part [%zu, %zu) does not fit in a batch of %zu", offset,
                         offset + n, total);
    size_t in = m->sizes[0], out = model_n_targets(m);
    if (!tensor_all_finite(x, n * in))
        return error_set(BNN_E_INVALID, "x holds NaN or Inf");
    if (m->likelihood == BNN_LIK_CATEGORICAL) {
        if (!labels || targets)
            return error_set(BNN_E_INVALID, "a categorical model takes labels (and NULL targets)");
        for (size_t i = 0; i < n; i++)
            if (labels[i] < 0 || (size_t)labels[i] >= out)
                return error_set(BNN_E_INVALID, "label[%zu] = %d is outside [0, %zu)", i,
                                 (int)labels[i], out);
    } else {
        if (!targets || labels)
            return error_set(BNN_E_INVALID, "a Gaussian model takes targets (and NULL labels)");
        if (!tensor_all_finite(targets, n * out))
            return error_set(BNN_E_INVALID, "targets hold NaN or Inf");
    }
    return BNN_OK;
}

/* The KL part of a fused pass: one setting per prior segment (each
 * weight layer's KL is against its own prior), into k[o->n_seg]. */
static void kl_setup(const bnn_optimizer *o, double scale, int accumulate, fused_kl *k)
{
    const bnn_guide *g = o->guide;
    const bnn_model *m = g->model;
    for (size_t s = 0; s < o->n_seg; s++) {
        const struct model_layer *y = &m->layer[o->seg_layer[s]];
        fused_kl *c = &k[s];
        memset(c, 0, sizeof *c);
        c->scale = (float)scale;
        c->accumulate = accumulate;
        c->gmu = g->grads;
        c->grho = g->grads + g->n_params;
        if (o->svi.kl_mode == BNN_KL_ANALYTIC)
            c->mode = FUSED_KL_ANALYTIC;
        else
            c->mode = y->prior == BNN_PRIOR_NORMAL ? FUSED_KL_MC_NORMAL : FUSED_KL_MC_MIXTURE;
        double p = y->prior_sigma, s1 = y->prior_sigma1, s2 = y->prior_sigma2, pi = y->prior_pi;
        if (y->prior == BNN_PRIOR_NORMAL) {
            c->inv_p2 = (float)(1.0 / (p * p));
            c->log_p = (float)log(p);
        } else {
            c->mix_c1 = (float)(log(pi) - log(s1));
            c->mix_c2 = (float)(log1p(-pi) - log(s2));
            c->mix_h1 = (float)(0.5 / (s1 * s1));
            c->mix_h2 = (float)(0.5 / (s2 * s2));
        }
    }
}

/* Everything of particle k that depends on the parameters only, in one
 * pass: the network draw (weight sampling: w = mu + sigma eps; flipout:
 * delta = sigma eps; local reparameterization: sigma^2, done once per
 * step), the KL term and its gradient, which initialise the gradient
 * buffer at k = 0.  Returns the KL contribution to the loss before
 * kl_scale (analytic: the KL, once; Monte Carlo: this draw's estimate over
 * K). */
static double prepare_particle(bnn_optimizer *o, unsigned k, double kl_scale, int want_kl)
{
    bnn_guide *g = o->guide;
    size_t P = g->n_params, K = o->svi.num_particles;
    const float *mu = guide_mu(g), *rho = guide_rho(g);
    int analytic = o->svi.kl_mode == BNN_KL_ANALYTIC;
    uint64_t step = o->step;
    pass_segs segs = {o->n_seg, o->seg_end};
    if (o->ocfg.kind == BNN_OPT_IVON) {
        /* One draw from sigma(h); the analytic KL of that posterior, once,
         * for the statistics only (the prior acts through delta), so only
         * when they are asked for: its log per parameter is a third of the
         * draw's time. */
        float inv_p2[BNN_MAX_LAYERS], log_p[BNN_MAX_LAYERS];
        for (size_t s = 0; s < o->n_seg; s++) {
            double p = g->model->layer[o->seg_layer[s]].prior_sigma;
            inv_p2[s] = (float)(1.0 / (p * p));
            log_p[s] = (float)log(p);
        }
        o->ws.ivon_acc = k > 0;
        return pass_ivon_draw(&o->ws, rng_stream_id(step, k, 0, RNG_WEIGHTS), P, mu,
                              o->m + P, o->ws.noise, o->ws.wsamp, o->ivon_lam, o->ivon_delta,
                              k == 0 && want_kl ? inv_p2 : NULL, log_p, &segs,
                              &o->ws.ivon_fmax);
    }
    fused_kl kl[BNN_MAX_LAYERS];
    kl_setup(o, analytic ? kl_scale : kl_scale / (double)K, k > 0, kl);
    double r = 0.0;
    switch (o->svi.estimator) {
    case BNN_EST_WEIGHT_SAMPLING:
    case BNN_EST_FLIPOUT: {
        int ws = o->svi.estimator == BNN_EST_WEIGHT_SAMPLING;
        r = pass_draw(&o->ws, 1, rng_stream_id(step, k, 0, ws ? RNG_WEIGHTS : RNG_FLIPOUT_EPS), P, mu,
                      rho, o->ws.noise, o->ws.wsamp, ws, analytic && k > 0 ? NULL : kl, &segs);
        break;
    }
    case BNN_EST_LOCAL_REPARAM:
        if (k == 0)
            r = pass_lrt_prepare(&o->ws, P, mu, rho, o->ws.sig2, o->ws.dsig, analytic ? kl : NULL,
                                 &segs);
        if (!analytic)
            r = pass_draw(&o->ws, 1, rng_stream_id(step, k, 0, RNG_KL), P, mu, rho, o->ws.noise, NULL, 0,
                          kl, &segs);
        break;
    }
    return analytic ? r : r / (double)K;
}

/* Forward the whole network, then the likelihood: returns the batch NLL and
 * leaves dLoss/da of the last layer, times `weight`, in o->ws.tmp_a. */
static double forward_loss(bnn_optimizer *o, const float *x, const int32_t *labels,
                           const float *targets, size_t n, const layer_noise *nz, float weight)
{
    const bnn_model *m = o->guide->model;
    size_t L = model_n_layers(m), out = m->sizes[L];
    tensor h = tensor_mat((float *)x, n, m->sizes[0]);
    for (size_t l = 0; l < L; l++) {
        layer_forward(&o->ws, o->guide, l, &h, nz);
        h = tensor_mat(o->ws.layer[l].post, n, model_act_out(m, l));
    }
    const float *a = o->ws.layer[L - 1].pre;
    float *da = o->ws.tmp_a;
    double nll = 0.0;
    if (m->likelihood == BNN_LIK_CATEGORICAL) {
        tensor at = tensor_mat((float *)a, n, out), lp = tensor_mat(o->ws.logp, n, out);
        tensor_log_softmax_rows(&at, &lp);
        /* d(-log softmax_y)/da = softmax - onehot(y). */
        for (size_t i = 0; i < n; i++) {
            const float *lr = o->ws.logp + i * out;
            float *dr = da + i * out;
            nll -= lr[labels[i]];
            for (size_t k = 0; k < out; k++)
                dr[k] = weight * expf(lr[k]);
            dr[labels[i]] -= weight;
        }
    } else if (m->likelihood == BNN_LIK_GAUSSIAN_HETERO) {
        /* Units [0, D) are means f, [D, 2D) log-variances v:
         * -log N(y | f, e^v) = (r^2 e^-v + v + log 2pi) / 2, r = f - y;
         * d/df = r e^-v, d/dv = (1 - r^2 e^-v) / 2. */
        size_t D = out / 2;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < D; k++) {
                double f = a[i * out + k], v = a[i * out + D + k];
                double r = f - (double)targets[i * D + k], p = exp(-v);
                nll += 0.5 * (r * r * p + v + LOG_2PI);
                da[i * out + k] = (float)(weight * r * p);
                da[i * out + D + k] = (float)(weight * 0.5 * (1.0 - r * r * p));
            }
    } else if (m->likelihood == BNN_LIK_GAUSSIAN_LEARNED) {
        /* s = log sigma per output, after [mu | rho] in the guide:
         * d/ds -log N(y | f, e^2s) = 1 - r^2 e^-2s, added to its gradient
         * (zeroed before the first particle). */
        const float *ls = o->guide->params + 2 * o->guide->n_params;
        float *gs = o->guide->grads + 2 * o->guide->n_params;
        for (size_t k = 0; k < out; k++) {
            double lsig = ls[k], inv_s2 = exp(-2.0 * lsig), gsum = 0.0;
            for (size_t i = 0; i < n; i++) {
                double r = (double)a[i * out + k] - targets[i * out + k];
                nll += 0.5 * r * r * inv_s2 + lsig + 0.5 * LOG_2PI;
                da[i * out + k] = (float)(weight * r * inv_s2);
                gsum += 1.0 - r * r * inv_s2;
            }
            gs[k] += (float)(weight * gsum);
        }
    } else {
        double s = m->noise_sigma, inv_s2 = 1.0 / (s * s);
        for (size_t i = 0; i < n * out; i++) {
            double r = (double)a[i] - targets[i];
            nll += 0.5 * r * r * inv_s2 + log(s) + 0.5 * LOG_2PI;
            da[i] = (float)(weight * r * inv_s2);
        }
    }
    return nll;
}

static void backward(bnn_optimizer *o, const float *x, size_t n, double *ss)
{
    const bnn_model *m = o->guide->model;
    size_t L = model_n_layers(m);
    float *da = o->ws.tmp_a, *dh = o->ws.tmp_b;
    for (size_t l = L; l-- > 0;) {
        size_t in = model_act_in(m, l);
        tensor h = l == 0 ? tensor_mat((float *)x, n, in) : tensor_mat(o->ws.layer[l - 1].post, n, in);
        tensor dat = tensor_mat(da, n, model_act_pre(m, l));
        if (l == 0) {
            layer_backward(&o->ws, o->guide, l, &h, &dat, NULL, ss);
            break;
        }
        tensor dht = tensor_mat(dh, n, in);
        layer_backward(&o->ws, o->guide, l, &h, &dat, &dht, ss);
        /* Through the pooling and activation of layer l-1 into its
         * pre-activation. */
        layer_act_backward(&o->ws, m, l - 1, n, dh, da);
    }
}

/* The IVON backward passes that a fused step deferred, layer by layer as
 * backward() makes them, for the gradient's sum of squares. */
static void finish_deferred(bnn_optimizer *o, double *ss)
{
    const bnn_model *m = o->guide->model;
    size_t P = o->guide->n_params;
    float *gr = o->guide->grads;
    for (size_t l = model_n_layers(m); l-- > 0;) {
        size_t w0 = m->w_off[l], len = model_layer_in(m, l) * model_layer_out(m, l) +
                                       model_layer_out(m, l);
        pass_ivon_backward(&o->ws, len, o->ws.gw + w0, o->ws.noise + w0, gr + w0,
                           gr + P + w0, o->ws.ivon_acc, ss);
    }
}

/* grad_ss, if not NULL, receives the gradient's sum of squares.  With
 * *fused set (bnn_svi_step, IVON) the last particle's per-parameter
 * backward is left to the update when the gradient is bounded finite;
 * *fused is cleared if it was not; if it was, the statistics but the norm
 * go to *pending instead of stats. */
static bnn_status svi_grad(bnn_optimizer *o, const float *x, const int32_t *labels,
                           const float *targets, size_t n, size_t offset, size_t total,
                           bnn_svi_stats *stats, double *grad_ss, int *fused,
                           bnn_svi_stats *pending)
{
    bnn_status st = check_batch(o, x, labels, targets, n, offset, total);
    if (st != BNN_OK)
        return st;
    if (stats) {
        st = sized_check(stats, offsetof(bnn_svi_stats, kl), "bnn_svi_stats");
        if (st != BNN_OK)
            return st;
    }
    size_t K = o->svi.num_particles;
    /* IVON takes the gradient of the batch's mean NLL (bnn.h). */
    int ivon = o->ocfg.kind == BNN_OPT_IVON;
    float inv_k = ivon ? (float)(1.0 / ((double)K * (double)total)) : 1.0f / (float)K;
    double kl_scale = (double)o->svi.kl_weight * (double)n / (double)o->svi.dataset_size;

    /* Particle 0's parameter pass writes the whole gradient buffer (its KL
     * part); every backward adds to it, and the last one also sums the
     * squares of the finished gradient. */
    double nll = 0.0, kl = 0.0, ss = 0.0;
    /* Bounds on |ghat| and |hhat| summed over the particles. */
    double gbound = 0.0, hbound = 0.0;
    int fuse = ivon && fused && *fused;
    o->ws.ivon_fuse = fuse;
    memset(o->guide->grads + 2 * o->guide->n_params, 0, o->guide->n_noise * sizeof(float));
    for (size_t k = 0; k < K; k++) {
        layer_noise nz = {o->svi.seed, o->step, (unsigned)k, offset};
        o->ws.ivon_defer = fuse && k + 1 == K;
        o->ws.ivon_gmax = 0.0;
        kl += prepare_particle(o, (unsigned)k, kl_scale, stats != NULL);
        nll += forward_loss(o, x, labels, targets, n, &nz, inv_k) / (double)K;
        backward(o, x, n, k + 1 == K ? &ss : NULL);
        gbound += o->ws.ivon_gmax;
        hbound += o->ws.ivon_gmax * (double)o->ws.ivon_fmax;
    }
    o->ws.ivon_fuse = o->ws.ivon_defer = 0;
    /* The learned noise's gradient is complete: not part of the deferral
     * (optim_apply_ivon_fused adds its squares and steps it). */
    double noise_ss = optim_noise_grad_ss(o->guide);

    double loss = nll + kl_scale * kl;
    if (fuse && isfinite(loss) && isfinite(noise_ss)) {
        /* Twice the bound below the float range: every ghat and hhat, and
         * so the update's input, is finite. */
        if (2.0 * gbound < (double)FLT_MAX && 2.0 * hbound < (double)FLT_MAX) {
            *pending = (bnn_svi_stats){sizeof *pending, loss, nll, kl, kl_scale * kl, 0.0};
            return BNN_OK;
        }
        *fused = 0;
        finish_deferred(o, &ss);
    } else if (fused) {
        *fused = 0;
    }
    ss += noise_ss;
    if (!isfinite(loss) || !isfinite(ss))
        return error_set(BNN_E_NUMERIC, "non-finite loss (%g) or gradient: lower the learning "
                         "rate or check the inputs", loss);
    if (stats) {
        bnn_svi_stats s = {sizeof s, loss, nll, kl, kl_scale * kl, sqrt(ss)};
        sized_write(stats, &s, sizeof s);
    }
    if (grad_ss)
        *grad_ss = ss;
    return BNN_OK;
}

BNN_API void bnn_svi_stats_init(bnn_svi_stats *stats)
{
    if (stats)
        *stats = (bnn_svi_stats){.struct_size = sizeof *stats};
}

BNN_API bnn_status bnn_svi_grad(bnn_optimizer *o, const float *x, const int32_t *labels,
                                const float *targets, size_t n, bnn_svi_stats *stats)
{
    API_ENTRY();
    return svi_grad(o, x, labels, targets, n, 0, n, stats, NULL, NULL, NULL);
}

BNN_API bnn_status bnn_svi_grad_part(bnn_optimizer *o, const float *x, const int32_t *labels,
                                     const float *targets, size_t n, size_t offset, size_t total,
                                     bnn_svi_stats *stats)
{
    API_ENTRY();
    return svi_grad(o, x, labels, targets, n, offset, total, stats, NULL, NULL, NULL);
}

BNN_API bnn_status bnn_svi_step(bnn_optimizer *o, const float *x, const int32_t *labels,
                                const float *targets, size_t n, bnn_svi_stats *stats)
{
    API_ENTRY();
    double ss = 0.0;
    int fused = 1;
    bnn_svi_stats s;
    bnn_status st = svi_grad(o, x, labels, targets, n, 0, n, stats, &ss, &fused, &s);
    if (st != BNN_OK)
        return st;
    if (fused) {
        /* The gradient is bounded finite; its norm comes with the update. */
        optim_apply_ivon_fused(o, &ss);
        s.grad_norm = sqrt(ss);
        if (stats)
            sized_write(stats, &s, sizeof s);
        return BNN_OK;
    }
    /* The gradient was just checked and its norm computed. */
    return optim_apply(o, ss);
}
