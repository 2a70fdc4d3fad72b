/* Bayesian dense layer, forward and hand-derived backward per estimator.
 *
 * Notation for layer l with input h (n x in): mu, sigma = softplus(rho) are
 * out x in (weights) and out (biases); a (n x out) is the pre-activation. */
#include <math.h>
#include <string.h>

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

void layer_forward(struct svi_ws *ws, const bnn_guide *g, size_t l, const tensor *h,
                   const layer_noise *nz)
{
    const bnn_model *m = g->model;
    struct svi_layer_ws *lw = &ws->layer[l];
    size_t n = h->rows, in = model_layer_in(m, l), out = model_layer_out(m, l);
    tensor a = tensor_mat(lw->pre, n, out);
    const float *mu = guide_mu(g);
    tensor mu_w = wview((float *)mu, m, l);

    switch (ws->estimator) {
    case BNN_EST_WEIGHT_SAMPLING: {
        /* a = h W^T + b with one network draw shared by the batch. */
        tensor w = wview(ws->wsamp, m, l);
        tensor_gemm(0, 1, 1.0f, h, &w, 0.0f, &a);
        tensor_add_row(&a, ws->wsamp + m->b_off[l], &a);
        break;
    }
    case BNN_EST_LOCAL_REPARAM: {
        /* a = h mu^T + b_mu + sqrt((h*h) (sigma^2)^T + sigma_b^2) * eps,
         * the exact marginal of a for independent Gaussian weights. */
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
        tensor_gemm(0, 1, 1.0f, h, &mu_w, 0.0f, &a);
        tensor_add_row(&a, mu + m->b_off[l], &a);
        rng_sign_fill(nz->seed, rng_stream_id(nz->step, nz->particle, (unsigned)l, RNG_FLIPOUT_SIGN_IN),
                      (uint64_t)nz->offset * in, n * in, lw->s_in);
        rng_sign_fill(nz->seed, rng_stream_id(nz->step, nz->particle, (unsigned)l, RNG_FLIPOUT_SIGN_OUT),
                      (uint64_t)nz->offset * out, n * out, lw->eps);
        tensor hs = tensor_mat(ws->tmp_c, n, in);
        tensor sin_t = tensor_mat(lw->s_in, n, in);
        tensor_mul(h, &sin_t, &hs);
        tensor p = tensor_mat(lw->std, n, out); /* std slot holds the perturbation */
        tensor d = wview(ws->wsamp, m, l);
        tensor_gemm(0, 1, 1.0f, &hs, &d, 0.0f, &p);
        tensor_add_row(&p, ws->wsamp + m->b_off[l], &p);
        float *pa = lw->pre, *pp = lw->std, *pe = lw->eps;
        for (size_t i = 0; i < n * out; i++)
            pa[i] += pe[i] * pp[i];
        break;
    }
    }

    if (l + 1 < model_n_layers(m)) {
        tensor post = tensor_mat(lw->post, n, out);
        if (m->activation == BNN_ACT_RELU)
            tensor_relu(&a, &post);
        else
            tensor_tanh(&a, &post);
    }
}

void layer_backward(struct svi_ws *ws, bnn_guide *g, size_t l, const tensor *h, tensor *dA,
                    tensor *dh, double *ss)
{
    const bnn_model *m = g->model;
    struct svi_layer_ws *lw = &ws->layer[l];
    size_t n = h->rows, in = model_layer_in(m, l), out = model_layer_out(m, l);
    size_t P = g->n_params, nw = in * out;
    float *gmu = g->grads, *grho = g->grads + P;
    tensor gmu_w = wview(gmu, m, l);
    tensor gw = wview(ws->gw, m, l);
    const float *mu = guide_mu(g);
    tensor mu_w = wview((float *)mu, m, l);

    switch (ws->estimator) {
    case BNN_EST_WEIGHT_SAMPLING: {
        /* dW = dA^T h; W = mu + sigma * eps gives dmu = dW and
         * drho = dW * eps * sigmoid(rho), the factor kept in ws->noise. */
        tensor_gemm(1, 0, 1.0f, dA, h, 0.0f, &gw);
        float *gb = ws->gw + m->b_off[l];
        tensor_sum_rows(dA, gb, 0);
        size_t w0 = m->w_off[l];
        if (ws->ivon && ws->ivon_fuse) {
            /* |dW| <= n max|dA| max|h|, |db| <= n max|dA|, whatever the
             * summation order (rounding adds a factor (1 + n u) at most). */
            double b = (double)n * max_abs(dA->data, n * out) *
                       fmax(1.0, max_abs(h->data, n * in));
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
            tensor_gemm(0, 0, 1.0f, dA, &w, 0.0f, dh);
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
        tensor_gemm(1, 0, 1.0f, dA, h, 1.0f, &gmu_w);
        tensor_sum_rows(dA, gmu + m->b_off[l], 1);
        float *dp = lw->std; /* the perturbation is dead: reuse for dP */
        const float *so = lw->eps;
        for (size_t i = 0; i < n * out; i++)
            dp[i] = dA->data[i] * so[i];
        tensor dpt = tensor_mat(dp, n, out);
        tensor hs = tensor_mat(ws->tmp_c, n, in);
        tensor sin_t = tensor_mat(lw->s_in, n, in);
        tensor_mul(h, &sin_t, &hs);
        tensor_gemm(1, 0, 1.0f, &dpt, &hs, 0.0f, &gw);
        tensor_sum_rows(&dpt, ws->gw + m->b_off[l], 0);
        /* delta = sigma E: drho = dDelta * E * sigmoid(rho), the factor
         * kept in ws->noise. */
        size_t w0 = m->w_off[l];
        pass_backward(ws, nw + out, ws->gw + w0, ws->noise + w0, gmu + w0, 0, grho + w0, ss);
        if (dh) {
            /* dh = dA mu + s_in * (dP delta). */
            tensor d = wview(ws->wsamp, m, l);
            tensor_gemm(0, 0, 1.0f, dA, &mu_w, 0.0f, dh);
            tensor t = tensor_mat(ws->tmp_c, n, in);
            tensor_gemm(0, 0, 1.0f, &dpt, &d, 0.0f, &t);
            for (size_t r = 0; r < n; r++) {
                float *dr = dh->data + r * dh->ld;
                const float *sr = lw->s_in + r * in, *tr = t.data + r * in;
                for (size_t c = 0; c < in; c++)
                    dr[c] += sr[c] * tr[c];
            }
        }
        break;
    }
    }
}
