/* Fused per-parameter passes of an SVI step and of network draws.
 * Internal.
 *
 * A step touches every variational parameter a handful of times: sigma =
 * softplus(rho) and what the estimator derives from it, the weight draw,
 * the KL term and its gradient, the chain rule from sigma to rho, the
 * gradient norm and the optimizer.  Each function below does several of
 * those in one pass over memory, with the float approximations of vmath.h
 * so that the loops vectorize.  Results are deterministic and the same on
 * every code path: sums are kept in double in eight fixed lanes (element i
 * goes to lane i % 8).
 *
 * Notation per parameter: m = mu, r = rho, s = softplus(r), g = sigmoid(r)
 * = ds/dr.  Gradients of the rho half are always with respect to rho. */
#ifndef BNN_FUSED_H
#define BNN_FUSED_H

#include <stddef.h>

enum fused_kl_mode {
    FUSED_KL_NONE = 0,
    /* closed-form KL(N(m, s^2) || N(0, p^2)) */
    FUSED_KL_ANALYTIC = 1,
    /* log q(w) - log p(w) at the drawn w = m + s eps, Normal prior */
    FUSED_KL_MC_NORMAL = 2,
    /* the same for the scale-mixture prior */
    FUSED_KL_MC_MIXTURE = 3
};

/* The KL part of a pass: its value is returned (sum over the parameters,
 * not scaled) and scale * its gradient is written (accumulate == 0) or
 * added (accumulate != 0) to gmu and grho. */
typedef struct fused_kl {
    enum fused_kl_mode mode;
    float scale;
    int accumulate;
    float *gmu;
    float *grho;
    /* Normal prior N(0, p^2) */
    float inv_p2; /* 1 / p^2 */
    float log_p;  /* log p */
    /* mixture pi N(0, s1^2) + (1 - pi) N(0, s2^2) */
    float mix_c1, mix_c2; /* log(pi / s1), log((1 - pi) / s2) */
    float mix_h1, mix_h2; /* 1 / (2 s1^2), 1 / (2 s2^2) */
} fused_kl;

/* Local reparameterization, once per step: sig2 = s^2 and dsig = 2 s g
 * (d sigma^2 / d rho), plus the KL part (mode NONE or ANALYTIC, written,
 * never accumulated; kl may be NULL). */
double fused_lrt_prepare(size_t n, const float *mu, const float *rho,
                         float *sig2, float *dsig, const fused_kl *kl);

/* One network draw from standard normals eps: w = m + s eps (add_mu != 0)
 * or w = s eps (flipout's perturbation), and eps is replaced by eps * g,
 * the factor that turns dLoss/dw into dLoss/drho.  w may be NULL (a draw
 * used only by a Monte Carlo KL): eps is then left as it is.  Plus the KL
 * part at this draw (kl may be NULL; ANALYTIC needs w and no
 * accumulation, the combinations svi.c uses). */
double fused_draw(size_t n, const float *mu, const float *rho, float *eps,
                  float *w, int add_mu, const fused_kl *kl);

/* A whole sampled network in place: w = m + s w, w holding standard
 * normals on entry. */
void fused_sample_network(size_t n, const float *mu, const float *rho,
                          float *w);

/* Backward of one layer's parameters: grho += factor * gw and, if gmu_add
 * != 0, gmu += gw.  If ss is not NULL, the squares of the resulting gmu
 * and grho are added to *ss (NaN or Inf make it non-finite). */
void fused_backward(size_t n, const float *gw, const float *factor,
                    float *gmu, int gmu_add, float *grho, double *ss);

/* Sum of squares in double, in fixed lanes: non-finite iff some x is. */
double fused_sum_sq(size_t n, const float *x);

/* PyTorch's Adam on g * gscale: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2)
 * g^2, p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps). */
typedef struct fused_adam_args {
    float gscale, b1, b2, step_size, inv_sqrt_bc2, eps;
} fused_adam_args;
void fused_adam(size_t n, float *p, const float *g, float *m, float *v,
                const fused_adam_args *a);

/* ---- IVON (bnn.h, "IVON"): h is the Hessian estimate, lam the effective
 * sample size, delta the prior precision / lam. */

/* One draw with s = 1 / sqrt(lam (h + delta)) from standard normals eps:
 * w = m + s eps, and eps is replaced by eps / s, the factor that turns a
 * gradient at w into Price's Hessian estimate.  If kl_inv_p2 > 0, returns
 * the analytic KL(N(m, s^2) || N(0, p^2)) summed (kl_log_p = log p), else 0.
 * *fmax receives the largest |eps / s| (+inf for a NaN; the bound for the
 * finiteness check of a fused step). */
double fused_ivon_draw(size_t n, const float *mu, const float *h, float *eps,
                       float *w, float lam, float delta, float kl_inv_p2,
                       float kl_log_p, float *fmax);

/* Backward of one layer's parameters for IVON: ghat (=|+=) gw and hhat
 * (=|+=) factor * gw, written when acc == 0 (a particle's first term),
 * added otherwise.  If ss is not NULL the squares of the results are added
 * to *ss. */
void fused_ivon_backward(size_t n, const float *gw, const float *factor,
                         float *ghat, float *hhat, int acc, double *ss);

typedef struct fused_ivon_args {
    float b1, b2;   /* momentum and Hessian decays */
    float inv_bc1;  /* 1 / (1 - b1^t) */
    float step;     /* lr (h0 + delta) */
    float delta, lam;
    float clip;     /* > 0; +inf when off */
} fused_ivon_args;

/* The IVON update of bnn.h on ghat, hhat: g, h and mu in place, then
 * rho = softplus^-1(1 / sqrt(lam (h + delta))) (one log per parameter for
 * sigma <= 1, an exp and a log above; within 4e-7 (1 + |rho|) of the
 * exact value, tests/test_fused.c). */
void fused_ivon_update(size_t n, float *mu, float *rho, float *g, float *h,
                       const float *ghat, const float *hhat,
                       const fused_ivon_args *a);

/* fused_ivon_backward then fused_ivon_update in one pass, without storing
 * [ghat | hhat]: ghat = gw (+ ghat0), hhat = factor * gw (+ hhat0), the
 * accumulated terms of earlier particles read when ghat0 is not NULL.
 * *ss receives the sum of squares of ghat and hhat, summed exactly as
 * fused_ivon_backward sums them; mu, rho, g and h as fused_ivon_update
 * leaves them, bit for bit. */
void fused_ivon_update_grad(size_t n, float *mu, float *rho, float *g,
                            float *h, const float *gw, const float *factor,
                            const float *ghat0, const float *hhat0,
                            const fused_ivon_args *a, double *ss);

#endif
