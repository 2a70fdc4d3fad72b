/* Bayesian dense and convolution layers, forward and hand-derived backward
 * per estimator.
 *
 * Notation for layer l with input h (n x in): mu, sigma = softplus(rho) are
 * out x in (weights) and out (biases); a (n x out) is the pre-activation.
 * A convolution is the same layer applied to the R = n out_h out_w rows of
 * im2col(h) (conv.h), so every formula below holds with h replaced by those
 * rows and n by R; dLoss/dh is then col2im of dLoss/d(rows).
 *
 * Flipout of a convolution draws its signs per example and channel: the
 * example's kernel is mu + delta o (s_out s_in^T) over (output, input)
 * channels, the same at every position, so each example sees one proper
 * draw of the whole kernel (TensorFlow Probability's Convolution2DFlipout
 * does the same).  Signs per position would give each position its own
 * kernel.  In im2col form the input signs multiply h before im2col and the
 * output signs are repeated over the positions. */
#include <math.h>
#include <string.h>

#include "conv.h"
#include "fused.h"
#include "layer.h"
#include "pass.h"
#include "rng.h"

static tensor wview(float *base, const bnn_model *m, size_t l)
{
    return tensor_mat(base + m->w_off[l], model_layer_out(m, l), model_layer_in(m, l));
}

/* max |v|, +inf if v holds a NaN: on the bits, where integer order is the
 * order of non-negative floats and NaNs rank above +inf (vectorizes). */
static double max_abs(const float *v, size_t n)
{
    int32_t m = 0; /* signed: SSE2 has no unsigned compare */
    for (size_t i = 0; i < n; i++) {
        int32_t u;
        memcpy(&u, v + i, sizeof u);
        u &= 0x7fffffff;
        m = u > m ? u : m;
    }
    float f;
    memcpy(&f, &m, sizeof f);
    return m > 0x7f800000 ? INFINITY : (double)f;
}

/* The rows the layer's products see: h itself (dense) or im2col(h) in
 * ws->col (convolution).  h is contiguous, n x model_act_in. */
static tensor in_rows(struct svi_ws *ws, const bnn_model *m, size_t l, const tensor *h)
{
    const struct model_layer *y = &m->layer[l];
    if (!y->conv)
        return *h;
    conv_im2col(y, h->rows, h->data, ws->col);
    return tensor_mat(ws->col, h->rows * conv_positions(y), model_layer_in(m, l));
}

/* dst (n x model_act_in) = dLoss/dh for dLoss/d(rows) = d w (d: R x out,
 * w: out x in). */
static void to_input(struct svi_ws *ws, const bnn_model *m, size_t l, size_t n, const tensor *d,
                     const tensor *w, float *dst)
{
    const struct model_layer *y = &m->layer[l];
    tensor t = tensor_mat(y->conv ? ws->col : dst, d->rows, model_layer_in(m, l));
    tensor_gemm(0, 0, 1.0f, d, w, 0.0f, &t);
    if (y->conv)
        conv_col2im(y, n, ws->col, dst);
}

/* Per-example random signs over the channels of a width-`width` activation
 * with c channels, repeated over its width / c positions. */
static void channel_signs(const layer_noise *nz, size_t l, enum rng_purpose what, size_t n,
                          size_t width, size_t c, float *out)
{
    rng_sign_fill(nz->seed, rng_stream_id(nz->step, nz->particle, (unsigned)l, what),
                  (uint64_t)nz->offset * c, n * c, out);
    conv_expand_rows(out, n, width / c, c);
}

/* Layer l's activation of its pre-activation, then its pooling. */
static void activate(struct svi_ws *ws, const bnn_model *m, size_t l, size_t n)
{
    const struct model_layer *y = &m->layer[l];
    struct svi_layer_ws *lw = &ws->layer[l];
    size_t pre = model_act_pre(m, l);
    tensor a = tensor_mat(lw->pre, n, pre);
    tensor out = tensor_mat(y->pool ? lw->act : lw->post, n, pre);
    if (y->act == BNN_ACT_RELU)
        tensor_relu(&a, &out);
    else if (y->act == BNN_ACT_TANH)
        tensor_tanh(&a, &out);
    else
        tensor_copy(&a, &out);
    if (y->pool)
        conv_pool_forward(y->pool == MODEL_POOL_MAX, n, y->out_h, y->out_w, y->out_c, lw->act,
                          lw->post, lw->arg);
}

void layer_act_backward(struct svi_ws *ws, const bnn_model *m, size_t l, size_t n,
                        const float *dpost, float *dpre)
{
    const struct model_layer *y = &m->layer[l];
    struct svi_layer_ws *lw = &ws->layer[l];
    size_t pre = model_act_pre(m, l);
    if (y->pool) {
        conv_pool_backward(y->pool == MODEL_POOL_MAX, n, y->out_h, y->out_w, y->out_c, dpost,
                           lw->arg, dpre);
        dpost = dpre;
    }
    tensor d = tensor_mat((float *)dpost, n, pre), dp = tensor_mat(dpre, n, pre);
    if (y->act == BNN_ACT_RELU) {
        tensor a = tensor_mat(lw->pre, n, pre);
        tensor_relu_backward(&a, &d, &dp);
    } else if (y->act == BNN_ACT_TANH) {
        tensor t = tensor_mat(y->pool ? lw->act : lw->post, n, pre);
        tensor_tanh_backward(&t, &d, &dp);
    } else if (dpre != dpost) {
        tensor_copy(&d, &dp);
    }
}

void layer_forward(struct svi_ws *ws, const bnn_guide *g, size_t l, const tensor *h,
                   const layer_noise *nz)
{
    const bnn_model *m = g->model;
    const struct model_layer *y = &m->layer[l];
    struct svi_layer_ws *lw = &ws->layer[l];
    size_t n = h->rows, in = model_layer_in(m, l), out = model_layer_out(m, l);
    size_t R = n * conv_positions(y); /* rows of the products: n for a dense layer */
    tensor a = tensor_mat(lw->pre, R, out);
    const float *mu = guide_mu(g);
    tensor mu_w = wview((float *)mu, m, l);
    tensor x = in_rows(ws, m, l, h);

    switch (ws->estimator) {
    case BNN_EST_WEIGHT_SAMPLING: {
        /* a = h W^T + b with one network draw shared by the batch. */
        tensor w = wview(ws->wsamp, m, l);
        tensor_gemm(0, 1, 1.0f, &x, &w, 0.0f, &a);
        tensor_add_row(&a, ws->wsamp + m->b_off[l], &a);
        break;
    }
    case BNN_EST_LOCAL_REPARAM: {
        /* a = h mu^T + b_mu + sqrt((h*h) (sigma^2)^T + sigma_b^2) * eps,
         * the exact marginal of a for independent Gaussian weights (dense
         * layers only: bnn_optimizer_create refuses it for convolutions). */
        tensor_gemm(0, 1, 1.0f, h, &mu_w, 0.0f, &a);
        tensor_add_row(&a, mu + m->b_off[l], &a);
        tensor hsq = tensor_mat(ws->tmp_c, n, in);
        tensor_square(h, &hsq);
        tensor var = tensor_mat(lw->std, n, out);
        tensor s2 = wview(ws->sig2, m, l);
        tensor_gemm(0, 1, 1.0f, &hsq, &s2, 0.0f, &var);
        tensor_add_row(&var, ws->sig2 + m->b_off[l], &var);
        tensor_sqrt(&var, &var);
        rng_normal_fill(nz->seed, rng_stream_id(nz->step, nz->particle, (unsigned)l, RNG_LOCAL),
                        (uint64_t)nz->offset * out, n * out, lw->eps);
        float *pa = lw->pre, *ps = lw->std, *pe = lw->eps;
        for (size_t i = 0; i < n * out; i++)
            pa[i] += ps[i] * pe[i];
        break;
    }
    case BNN_EST_FLIPOUT: {
        /* a = h mu^T + b_mu + s_out * ((h * s_in) delta^T + delta_b), with
         * delta = sigma * E drawn once per step and random signs per
         * example decorrelating the perturbation across the batch. */
        tensor_gemm(0, 1, 1.0f, &x, &mu_w, 0.0f, &a);
        tensor_add_row(&a, mu + m->b_off[l], &a);
        size_t win = model_act_in(m, l);
        channel_signs(nz, l, RNG_FLIPOUT_SIGN_IN, n, win, y->in_c, lw->s_in);
        channel_signs(nz, l, RNG_FLIPOUT_SIGN_OUT, n, model_act_pre(m, l), out, lw->eps);
        tensor hs = tensor_mat(ws->tmp_c, n, win);
        tensor sin_t = tensor_mat(lw->s_in, n, win);
        tensor_mul(h, &sin_t, &hs);
        tensor xs = in_rows(ws, m, l, &hs); /* x is dead: im2col may reuse its buffer */
        tensor p = tensor_mat(lw->std, R, out); /* std slot holds the perturbation */
        tensor d = wview(ws->wsamp, m, l);
        tensor_gemm(0, 1, 1.0f, &xs, &d, 0.0f, &p);
        tensor_add_row(&p, ws->wsamp + m->b_off[l], &p);
        float *pa = lw->pre, *pp = lw->std, *pe = lw->eps;
        for (size_t i = 0; i < R * out; i++)
            pa[i] += pe[i] * pp[i];
        break;
    }
    }

    if (l + 1 < model_n_layers(m))
        activate(ws, m, l, n);
}

void layer_backward(struct svi_ws *ws, bnn_guide *g, size_t l, const tensor *h, tensor *dA,
                    tensor *dh, double *ss)
{
    const bnn_model *m = g->model;
    const struct model_layer *y = &m->layer[l];
    struct svi_layer_ws *lw = &ws->layer[l];
    size_t n = h->rows, in = model_layer_in(m, l), out = model_layer_out(m, l);
    size_t R = n * conv_positions(y), P = g->n_params, nw = in * out;
    float *gmu = g->grads, *grho = g->grads + P;
    tensor gmu_w = wview(gmu, m, l);
    tensor gw = wview(ws->gw, m, l);
    const float *mu = guide_mu(g);
    tensor mu_w = wview((float *)mu, m, l);
    tensor da = tensor_mat(dA->data, R, out); /* a convolution's rows are positions */

    switch (ws->estimator) {
    case BNN_EST_WEIGHT_SAMPLING: {
        /* dW = dA^T h; W = mu + sigma * eps gives dmu = dW and
         * drho = dW * eps * sigmoid(rho), the factor kept in ws->noise. */
        tensor x = in_rows(ws, m, l, h);
        tensor_gemm(1, 0, 1.0f, &da, &x, 0.0f, &gw);
        float *gb = ws->gw + m->b_off[l];
        tensor_sum_rows(&da, gb, 0);
        size_t w0 = m->w_off[l];
        if (ws->ivon && ws->ivon_fuse) {
            /* |dW| <= R max|dA| max|h|, |db| <= R max|dA|, whatever the
             * summation order (rounding adds a factor (1 + R u) at most);
             * im2col rows hold entries of h or zeros. */
            double b = (double)R * max_abs(da.data, R * out) *
                       fmax(1.0, max_abs(h->data, n * model_act_in(m, l)));
            ws->ivon_gmax = b > ws->ivon_gmax || b != b ? b : ws->ivon_gmax;
        }
        /* IVON: ghat = dW, hhat = dW eps / sigma (the factor in ws->noise),
         * unless the update makes this pass (optim_apply_ivon_fused). */
        if (ws->ivon && !ws->ivon_defer)
            pass_ivon_backward(ws, nw + out, ws->gw + w0, ws->noise + w0, gmu + w0, grho + w0,
                               ws->ivon_acc, ss);
        else if (!ws->ivon)
            pass_backward(ws, nw + out, ws->gw + w0, ws->noise + w0, gmu + w0, 1, grho + w0,
                          ss);
        if (dh) {
            tensor w = wview(ws->wsamp, m, l);
            to_input(ws, m, l, n, &da, &w, dh->data);
        }
        break;
    }
    case BNN_EST_LOCAL_REPARAM: {
        /* a = m + std * eps, std^2 = v: dm = dA, dv = dA * eps / (2 std). */
        float *dv = lw->eps; /* eps is dead after this: reuse it for dv */
        const float *sd = lw->std;
        for (size_t i = 0; i < n * out; i++)
            dv[i] = sd[i] > 0.0f ? dA->data[i] * dv[i] * 0.5f / sd[i] : 0.0f;
        tensor dvt = tensor_mat(dv, n, out);
        tensor_gemm(1, 0, 1.0f, dA, h, 1.0f, &gmu_w);
        tensor_sum_rows(dA, gmu + m->b_off[l], 1);
        /* d sigma^2 = dv^T (h*h); d rho = 2 sigma sigmoid(rho) d sigma^2,
         * the factor kept in ws->dsig. */
        tensor hsq = tensor_mat(ws->tmp_c, n, in);
        tensor_square(h, &hsq);
        tensor_gemm(1, 0, 1.0f, &dvt, &hsq, 0.0f, &gw);
        tensor_sum_rows(&dvt, ws->gw + m->b_off[l], 0);
        size_t w0 = m->w_off[l];
        pass_backward(ws, nw + out, ws->gw + w0, ws->dsig + w0, gmu + w0, 0, grho + w0, ss);
        if (dh) {
            /* dh = dA mu + 2 h * (dv sigma^2). */
            tensor s2 = wview(ws->sig2, m, l);
            tensor_gemm(0, 0, 1.0f, dA, &mu_w, 0.0f, dh);
            tensor t = tensor_mat(ws->tmp_c, n, in);
            tensor_gemm(0, 0, 1.0f, &dvt, &s2, 0.0f, &t);
            for (size_t r = 0; r < n; r++) {
                float *dr = dh->data + r * dh->ld;
                const float *hr = h->data + r * h->ld, *tr = t.data + r * in;
                for (size_t c = 0; c < in; c++)
                    dr[c] += 2.0f * hr[c] * tr[c];
            }
        }
        break;
    }
    case BNN_EST_FLIPOUT: {
        /* a = m + s_out * P, P = (h s_in) delta^T + delta_b, delta = sigma E. */
        tensor x = in_rows(ws, m, l, h);
        tensor_gemm(1, 0, 1.0f, &da, &x, 1.0f, &gmu_w);
        tensor_sum_rows(&da, gmu + m->b_off[l], 1);
        float *dp = lw->std; /* the perturbation is dead: reuse for dP */
        const float *so = lw->eps;
        for (size_t i = 0; i < R * out; i++)
            dp[i] = da.data[i] * so[i];
        tensor dpt = tensor_mat(dp, R, out);
        size_t win = model_act_in(m, l);
        tensor hs = tensor_mat(ws->tmp_c, n, win);
        tensor sin_t = tensor_mat(lw->s_in, n, win);
        tensor_mul(h, &sin_t, &hs);
        tensor xs = in_rows(ws, m, l, &hs);
        tensor_gemm(1, 0, 1.0f, &dpt, &xs, 0.0f, &gw);
        tensor_sum_rows(&dpt, ws->gw + m->b_off[l], 0);
        /* delta = sigma E: drho = dDelta * E * sigmoid(rho), the factor
         * kept in ws->noise. */
        size_t w0 = m->w_off[l];
        pass_backward(ws, nw + out, ws->gw + w0, ws->noise + w0, gmu + w0, 0, grho + w0, ss);
        if (dh) {
            /* dh = dA mu + s_in * (dP delta). */
            tensor d = wview(ws->wsamp, m, l);
            to_input(ws, m, l, n, &da, &mu_w, dh->data);
            to_input(ws, m, l, n, &dpt, &d, ws->tmp_c);
            float *dr = dh->data;
            const float *sr = lw->s_in, *tr = ws->tmp_c;
            for (size_t i = 0; i < n * win; i++)
                dr[i] += sr[i] * tr[i];
        }
        break;
    }
    }
}
