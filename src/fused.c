/* Fused per-parameter passes (see fused.h).
 *
 * Every pass walks its arrays in blocks of FUSED_BLOCK elements: the
 * arithmetic of a block is one branch-free loop that vectorizes, and the
 * block's sums (KL terms, squares) are then added from L1 into eight
 * double lanes in a fixed order, so the totals do not depend on the code
 * path.  The entry points get an AVX2 clone (cpu.h). */
#include "fused.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu.h"
#include "vmath.h"

#if defined(__GNUC__) || defined(__clang__)
#define FUSED_INLINE static inline __attribute__((always_inline))
#else
#define FUSED_INLINE static inline
#endif

/* A multiple of FUSED_LANES, so element i always lands in lane i % 8. */
#define FUSED_BLOCK 256
#define FUSED_LANES 8

/* Below this rho, e^rho < 2.1e-9, so sigmoid(r) / softplus(r) = 1 - e^r/2
 * + ... rounds to 1 and log softplus(r) = r + log1p(-e^r/2 + ...) rounds to
 * r in float; the direct forms would divide by, and take the log of, a
 * sigma that becomes subnormal and then 0. */
#define FUSED_SERIES_BELOW (-20.0f)

/* ---- short-latency exp, log1p and log ---------------------------------------
 *
 * The same reductions and truncated series as vmath_exp_nonpos,
 * vmath_log1p and vmath_log, with the polynomials evaluated in Estrin's
 * scheme instead of Horner's: a pass here chains exp -> log1p -> log, and
 * with Horner's rule the latency of that chain, not the arithmetic, bounds
 * the loop.  Rounding differs from vmath.h by an ulp or so (the accuracy
 * is checked against libm in tests/test_fused.c). */

/* e^x, x <= 0: x = n ln2 + r, e^r by Taylor to r^7, 2^n in two factors. */
FUSED_INLINE float exp_nonpos(float x)
{
    x = vmath_select(x < -104.0f, -104.0f, x);
    float t = x * VMATH_LOG2E + VMATH_ROUND_MAGIC;
    int32_t n = (int32_t)vmath_f2u(t) - VMATH_ROUND_MAGIC_BITS;
    float nf = t - VMATH_ROUND_MAGIC;
    float r = x - nf * VMATH_LN2_HI;
    r = r - nf * VMATH_LN2_LO;
    float r2 = r * r, r4 = r2 * r2;
    float p01 = 1.0f + r;
    float p23 = 0.5f + r * (1.0f / 6.0f);
    float p45 = 1.0f / 24.0f + r * (1.0f / 120.0f);
    float p67 = 1.0f / 720.0f + r * (1.0f / 5040.0f);
    float p = (p01 + r2 * p23) + r4 * (p45 + r2 * p67);
    int32_t n1 = n / 2, n2 = n - n1;
    float s1 = vmath_u2f((uint32_t)(n1 + 127) << 23);
    float s2 = vmath_u2f((uint32_t)(n2 + 127) << 23);
    return p * s1 * s2;
}

/* 2 atanh(u) = ln((1 + u) / (1 - u)) for |u| <= 1/3, odd series to u^15. */
FUSED_INLINE float atanh2(float u)
{
    float z = u * u, z2 = z * z, z4 = z2 * z2;
    float q01 = 1.0f / 3.0f + z * (1.0f / 5.0f);
    float q23 = 1.0f / 7.0f + z * (1.0f / 9.0f);
    float q45 = 1.0f / 11.0f + z * (1.0f / 13.0f);
    float q = (q01 + z2 * q23) + z4 * (q45 + z2 * (1.0f / 15.0f));
    return 2.0f * u + 2.0f * u * z * q;
}

/* ln(1 + y), y in [0, 1]: 2 atanh(y / (2 + y)). */
FUSED_INLINE float log1p_unit(float y)
{
    return atanh2(y / (2.0f + y));
}

/* ln x for positive, normal, finite x: x = 2^e m, m in [sqrt(1/2),
 * sqrt(2)), ln m = 2 atanh((m - 1) / (m + 1)) to the 9th power. */
FUSED_INLINE float log_pos(float x)
{
    uint32_t b = vmath_f2u(x) + (0x3f800000u - 0x3f3504f3u);
    float e = (float)((int32_t)(b >> 23) - 127);
    float m = vmath_u2f((b & 0x007fffffu) + 0x3f3504f3u);
    float f = m - 1.0f;
    float u = f / (2.0f + f);
    float z = u * u, z2 = z * z;
    float q = (1.0f / 3.0f + z * (1.0f / 5.0f)) + z2 * (1.0f / 7.0f + z * (1.0f / 9.0f));
    float lnm = 2.0f * u + 2.0f * u * z * q;
    return e * VMATH_LN2_HI + (lnm + e * VMATH_LN2_LO);
}

typedef struct sp_terms {
    float s;     /* softplus(r) */
    float g;     /* sigmoid(r) */
    float ratio; /* g / s */
    float log_s; /* log s */
} sp_terms;

/* softplus(r) = max(r, 0) + log1p(e^-|r|) and sigmoid(r) from the same
 * exponential; unused members cost nothing once inlined. */
FUSED_INLINE sp_terms softplus_terms(float r)
{
    sp_terms o;
    float t = exp_nonpos(-fabsf(r));
    o.s = vmath_select(r > 0.0f, r, 0.0f) + log1p_unit(t);
    o.g = vmath_select(r >= 0.0f, 1.0f, t) / (1.0f + t);
    int tiny = r < FUSED_SERIES_BELOW;
    o.ratio = vmath_select(tiny, 1.0f, o.g / o.s);
    o.log_s = vmath_select(tiny, r, log_pos(o.s));
    return o;
}

FUSED_INLINE void lanes_add(double *restrict lane, const float *restrict v, size_t len)
{
    size_t j = 0;
    for (; j + FUSED_LANES <= len; j += FUSED_LANES)
        for (size_t k = 0; k < FUSED_LANES; k++)
            lane[k] += (double)v[j + k];
    for (size_t k = 0; j + k < len; k++)
        lane[k] += (double)v[j + k];
}

FUSED_INLINE void lanes_add_sq(double *restrict lane, const float *restrict v, size_t len)
{
    size_t j = 0;
    for (; j + FUSED_LANES <= len; j += FUSED_LANES)
        for (size_t k = 0; k < FUSED_LANES; k++)
            lane[k] += (double)v[j + k] * (double)v[j + k];
    for (size_t k = 0; j + k < len; k++)
        lane[k] += (double)v[j + k] * (double)v[j + k];
}

/* max(m, |v| over v[0..len)) as the bits of a non-negative float: integer
 * order is float order for them, and NaNs (above +inf) win. */
FUSED_INLINE uint32_t max_abs_bits(uint32_t m, const float *restrict v, size_t len)
{
    for (size_t j = 0; j < len; j++) {
        uint32_t u;
        memcpy(&u, v + j, sizeof u);
        u &= 0x7fffffffu;
        m = u > m ? u : m;
    }
    return m;
}

static double lanes_total(const double *lane)
{
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
           ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* ---- KL terms of one parameter --------------------------------------------- */

/* Constants of a KL pass, hoisted out of the loops. */
typedef struct kl_const {
    float scale, a;    /* a = scale / p^2 */
    float inv_p2, log_p, c0; /* c0 = log p - 1/2 */
    float c1, c2, h1, h2;
    int acc;
} kl_const;

static kl_const kl_constants(const fused_kl *k)
{
    kl_const c = {0};
    c.scale = k->scale;
    c.inv_p2 = k->inv_p2;
    c.a = k->scale * k->inv_p2;
    c.log_p = k->log_p;
    c.c0 = k->log_p - 0.5f;
    c.c1 = k->mix_c1;
    c.c2 = k->mix_c2;
    c.h1 = k->mix_h1;
    c.h2 = k->mix_h2;
    c.acc = k->accumulate != 0;
    return c;
}

/* KL term and its scaled gradient (mu, rho) for one parameter.  mode is a
 * constant after inlining.  Analytic:
 *   KL = log p - log s + (s^2 + m^2) / (2 p^2) - 1/2,
 *   dKL/dm = m / p^2, dKL/dr = (s / p^2 - 1 / s) g.
 * Monte Carlo at w = m + s e (Pyro's Trace_ELBO: the gradient flows through
 * w and through log q's own parameters):
 *   KL = log q(w) - log p(w) = -log s - e^2/2 - log p~(w)   (2 pi cancels)
 *   dKL/dm = -p'(w)/p(w), dKL/dr = (-1/s - e p'(w)/p(w)) g. */
FUSED_INLINE float kl_term(const int mode, const kl_const *c, float m, float e, sp_terms t,
                           float *gm, float *gr)
{
    if (mode == FUSED_KL_ANALYTIC) {
        *gm = c->a * m;
        *gr = c->a * t.s * t.g - c->scale * t.ratio;
        return c->c0 - t.log_s + 0.5f * (t.s * t.s + m * m) * c->inv_p2;
    }
    float w = m + t.s * e;
    float w2 = w * w;
    float nlp, k; /* -log p~(w) and -p'(w) / (w p(w)) */
    if (mode == FUSED_KL_MC_NORMAL) {
        nlp = c->log_p + 0.5f * w2 * c->inv_p2;
        k = c->inv_p2;
    } else {
        /* log-sum-exp of the two weighted components, and their
         * responsibilities from one stable sigmoid of the difference */
        float q1 = c->c1 - w2 * c->h1, q2 = c->c2 - w2 * c->h2;
        float d = q1 - q2;
        float z = exp_nonpos(-fabsf(d));
        float inv = 1.0f / (1.0f + z);
        float r1 = vmath_select(d >= 0.0f, 1.0f, z) * inv;
        float r2 = vmath_select(d >= 0.0f, z, 1.0f) * inv;
        nlp = -(vmath_select(d >= 0.0f, q1, q2) + log1p_unit(z));
        k = 2.0f * (r1 * c->h1 + r2 * c->h2);
    }
    float sk = c->scale * k * w;
    *gm = sk;
    *gr = sk * e * t.g - c->scale * t.ratio;
    return -t.log_s - 0.5f * e * e + nlp;
}

/* acc is a constant after inlining: overwriting does not read the old
 * value (a whole pass of memory traffic). */
FUSED_INLINE void store_grad(const int acc, float *restrict g, float v)
{
    if (acc)
        g[0] += v;
    else
        g[0] = v;
}

/* ---- local reparameterization ----------------------------------------------- */

FUSED_INLINE void lrt_block(const int mode, size_t len, const float *restrict mu,
                            const float *restrict rho, float *restrict sig2,
                            float *restrict dsig, const kl_const *c, float *restrict gmu,
                            float *restrict grho, float *restrict klv)
{
    for (size_t j = 0; j < len; j++) {
        sp_terms t = softplus_terms(rho[j]);
        sig2[j] = t.s * t.s;
        dsig[j] = (t.s + t.s) * t.g;
        if (mode != FUSED_KL_NONE) {
            float gm, gr;
            klv[j] = kl_term(mode, c, mu[j], 0.0f, t, &gm, &gr);
            store_grad(0, gmu + j, gm);
            store_grad(0, grho + j, gr);
        }
    }
}

CPU_CLONES
double fused_lrt_prepare(size_t n, const float *mu, const float *rho, float *sig2, float *dsig,
                         const fused_kl *kl)
{
    int mode = kl ? (int)kl->mode : FUSED_KL_NONE;
    kl_const c = kl ? kl_constants(kl) : (kl_const){0};
    double lane[FUSED_LANES] = {0};
    float klv[FUSED_BLOCK];
    for (size_t i = 0; i < n; i += FUSED_BLOCK) {
        size_t len = n - i < FUSED_BLOCK ? n - i : FUSED_BLOCK;
        if (mode == FUSED_KL_ANALYTIC) {
            lrt_block(FUSED_KL_ANALYTIC, len, mu + i, rho + i, sig2 + i, dsig + i, &c,
                      kl->gmu + i, kl->grho + i, klv);
            lanes_add(lane, klv, len);
        } else {
            lrt_block(FUSED_KL_NONE, len, mu + i, rho + i, sig2 + i, dsig + i, &c, NULL, NULL,
                      NULL);
        }
    }
    return lanes_total(lane);
}

/* ---- network draws ------------------------------------------------------------ */

FUSED_INLINE void draw_block(const int has_w, const int mode, const int acc, size_t len,
                             const float *restrict mu, const float *restrict rho,
                             float *restrict eps, float *restrict w, int add_mu,
                             const kl_const *c, float *restrict gmu, float *restrict grho,
                             float *restrict klv)
{
    for (size_t j = 0; j < len; j++) {
        float m = mu[j], e = eps[j];
        sp_terms t = softplus_terms(rho[j]);
        if (has_w) {
            float se = t.s * e;
            w[j] = vmath_select(add_mu, m + se, se);
            eps[j] = e * t.g;
        }
        if (mode != FUSED_KL_NONE) {
            float gm, gr;
            klv[j] = kl_term(mode, c, m, e, t, &gm, &gr);
            store_grad(acc, gmu + j, gm);
            store_grad(acc, grho + j, gr);
        }
    }
}

#define DRAW_CASE(hw, md, acc)                                                        \
    draw_block(hw, md, acc, len, mu + i, rho + i, eps + i, hw ? w + i : NULL, add_mu, &c, \
               md != FUSED_KL_NONE ? kl->gmu + i : NULL,                                \
               md != FUSED_KL_NONE ? kl->grho + i : NULL, klv)

CPU_CLONES
double fused_draw(size_t n, const float *mu, const float *rho, float *eps, float *w, int add_mu,
                  const fused_kl *kl)
{
    int mode = kl ? (int)kl->mode : FUSED_KL_NONE;
    kl_const c = kl ? kl_constants(kl) : (kl_const){0};
    double lane[FUSED_LANES] = {0};
    float klv[FUSED_BLOCK];
    add_mu = add_mu != 0;
    /* Each combination that svi.c uses is its own loop, specialised at
     * compile time: (KL mode, accumulate, whether w is drawn). */
    int key = (mode * 2 + c.acc) * 2 + (w != NULL);
    for (size_t i = 0; i < n; i += FUSED_BLOCK) {
        size_t len = n - i < FUSED_BLOCK ? n - i : FUSED_BLOCK;
#define KEY(md, acc, hw) (((md) * 2 + (acc)) * 2 + (hw))
        switch (key) {
        case KEY(FUSED_KL_NONE, 0, 1): DRAW_CASE(1, FUSED_KL_NONE, 0); break;
        case KEY(FUSED_KL_ANALYTIC, 0, 1): DRAW_CASE(1, FUSED_KL_ANALYTIC, 0); break;
        case KEY(FUSED_KL_MC_NORMAL, 0, 1): DRAW_CASE(1, FUSED_KL_MC_NORMAL, 0); break;
        case KEY(FUSED_KL_MC_NORMAL, 1, 1): DRAW_CASE(1, FUSED_KL_MC_NORMAL, 1); break;
        case KEY(FUSED_KL_MC_NORMAL, 0, 0): DRAW_CASE(0, FUSED_KL_MC_NORMAL, 0); break;
        case KEY(FUSED_KL_MC_NORMAL, 1, 0): DRAW_CASE(0, FUSED_KL_MC_NORMAL, 1); break;
        case KEY(FUSED_KL_MC_MIXTURE, 0, 1): DRAW_CASE(1, FUSED_KL_MC_MIXTURE, 0); break;
        case KEY(FUSED_KL_MC_MIXTURE, 1, 1): DRAW_CASE(1, FUSED_KL_MC_MIXTURE, 1); break;
        case KEY(FUSED_KL_MC_MIXTURE, 0, 0): DRAW_CASE(0, FUSED_KL_MC_MIXTURE, 0); break;
        case KEY(FUSED_KL_MC_MIXTURE, 1, 0): DRAW_CASE(0, FUSED_KL_MC_MIXTURE, 1); break;
        default: break; /* not used by svi.c: nothing to do */
        }
#undef KEY
        if (mode != FUSED_KL_NONE)
            lanes_add(lane, klv, len);
    }
    return lanes_total(lane);
}

#undef DRAW_CASE

CPU_CLONES
void fused_sample_network(size_t n, const float *mu, const float *rho, float *w)
{
    const float *restrict m = mu, *restrict r = rho;
    float *restrict o = w;
    for (size_t i = 0; i < n; i++) {
        sp_terms t = softplus_terms(r[i]);
        o[i] = m[i] + t.s * o[i];
    }
}

/* ---- backward, norm, optimizer ----------------------------------------------- */

FUSED_INLINE void backward_block(const int add, size_t len, const float *restrict gw,
                                 const float *restrict f, float *restrict gmu,
                                 float *restrict grho)
{
    for (size_t j = 0; j < len; j++) {
        float g = gw[j];
        grho[j] += f[j] * g;
        if (add)
            gmu[j] += g;
    }
}

CPU_CLONES
void fused_backward(size_t n, const float *gw, const float *factor, float *gmu, int gmu_add,
                    float *grho, double *ss)
{
    double lane[FUSED_LANES] = {0};
    for (size_t i = 0; i < n; i += FUSED_BLOCK) {
        size_t len = n - i < FUSED_BLOCK ? n - i : FUSED_BLOCK;
        if (gmu_add)
            backward_block(1, len, gw + i, factor + i, gmu + i, grho + i);
        else
            backward_block(0, len, gw + i, factor + i, gmu + i, grho + i);
        if (ss) {
            lanes_add_sq(lane, gmu + i, len);
            lanes_add_sq(lane, grho + i, len);
        }
    }
    if (ss)
        *ss += lanes_total(lane);
}

CPU_CLONES
double fused_sum_sq(size_t n, const float *x)
{
    double lane[FUSED_LANES] = {0};
    for (size_t i = 0; i < n; i += FUSED_BLOCK) {
        size_t len = n - i < FUSED_BLOCK ? n - i : FUSED_BLOCK;
        lanes_add_sq(lane, x + i, len);
    }
    return lanes_total(lane);
}

CPU_CLONES
void fused_adam(size_t n, float *p, const float *g, float *m, float *v, const fused_adam_args *a)
{
    float *restrict pp = p, *restrict mm = m, *restrict vv = v;
    const float *restrict gg = g;
    const float gscale = a->gscale, b1 = a->b1, b2 = a->b2, step = a->step_size;
    const float ibc2 = a->inv_sqrt_bc2, eps = a->eps;
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    for (size_t i = 0; i < n; i++) {
        float gi = gg[i] * gscale;
        float mi = b1 * mm[i] + c1 * gi;
        float vi = b2 * vv[i] + c2 * gi * gi;
        mm[i] = mi;
        vv[i] = vi;
        pp[i] -= step * mi / (sqrtf(vi) * ibc2 + eps);
    }
}

/* ---- IVON ----------------------------------------------------------------------- */

FUSED_INLINE void ivon_draw_block(const int kl, size_t len, const float *restrict mu,
                                  const float *restrict h, float *restrict eps,
                                  float *restrict w, float lam, float delta, float inv_p2,
                                  float c0, float *restrict klv, uint32_t *restrict fmax)
{
    for (size_t j = 0; j < len; j++) {
        float prec = lam * (h[j] + delta); /* 1 / s^2 */
        float r = sqrtf(prec), s = 1.0f / r, m = mu[j], e = eps[j];
        w[j] = m + s * e;
        eps[j] = e * r;
        /* KL = log p - log s + (s^2 + m^2) / (2 p^2) - 1/2, log s = -log(prec) / 2 */
        if (kl)
            klv[j] = c0 + 0.5f * log_pos(prec) + 0.5f * (s * s + m * m) * inv_p2;
    }
    *fmax = max_abs_bits(*fmax, eps, len);
}

CPU_CLONES
double fused_ivon_draw(size_t n, const float *mu, const float *h, float *eps, float *w, float lam,
                       float delta, float kl_inv_p2, float kl_log_p, float *fmax)
{
    double lane[FUSED_LANES] = {0};
    float klv[FUSED_BLOCK];
    uint32_t fm = 0;
    float c0 = kl_log_p - 0.5f;
    for (size_t i = 0; i < n; i += FUSED_BLOCK) {
        size_t len = n - i < FUSED_BLOCK ? n - i : FUSED_BLOCK;
        if (kl_inv_p2 > 0.0f) {
            ivon_draw_block(1, len, mu + i, h + i, eps + i, w + i, lam, delta, kl_inv_p2, c0,
                            klv, &fm);
            lanes_add(lane, klv, len);
        } else {
            ivon_draw_block(0, len, mu + i, h + i, eps + i, w + i, lam, delta, 0.0f, 0.0f, NULL,
                            &fm);
        }
    }
    float m;
    memcpy(&m, &fm, sizeof m);
    *fmax = fm > 0x7f800000u ? INFINITY : m;
    return lanes_total(lane);
}

FUSED_INLINE void ivon_backward_block(const int acc, size_t len, const float *restrict gw,
                                      const float *restrict f, float *restrict ghat,
                                      float *restrict hhat)
{
    for (size_t j = 0; j < len; j++) {
        float g = gw[j];
        store_grad(acc, ghat + j, g);
        store_grad(acc, hhat + j, f[j] * g);
    }
}

CPU_CLONES
void fused_ivon_backward(size_t n, const float *gw, const float *factor, float *ghat,
                         float *hhat, int acc, double *ss)
{
    double lane[FUSED_LANES] = {0};
    for (size_t i = 0; i < n; i += FUSED_BLOCK) {
        size_t len = n - i < FUSED_BLOCK ? n - i : FUSED_BLOCK;
        if (acc)
            ivon_backward_block(1, len, gw + i, factor + i, ghat + i, hhat + i);
        else
            ivon_backward_block(0, len, gw + i, factor + i, ghat + i, hhat + i);
        if (ss) {
            lanes_add_sq(lane, ghat + i, len);
            lanes_add_sq(lane, hhat + i, len);
        }
    }
    if (ss)
        *ss += lanes_total(lane);
}

/* softplus^-1(s) = log(e^s - 1) = s + log(1 - e^-s), with 1 - e^-s from
 * expm1 so that small s keep full relative accuracy.  Any s > 0. */
FUSED_INLINE float softplus_inv(float s)
{
    return s + log_pos(-vmath_expm1_nonpos(-s));
}

/* The same for s <= IVON_SMALL_S with one log and no exp: e^s - 1 = s t,
 * t = sum_k s^k / (k+1)! through s^9 (truncation < 3e-8 relative at s = 1). */
#define IVON_SMALL_S 1.0f
FUSED_INLINE float softplus_inv_small(float s)
{
    float s2 = s * s, s4 = s2 * s2;
    float p01 = 1.0f + s * (1.0f / 2.0f), p23 = 1.0f / 6.0f + s * (1.0f / 24.0f);
    float p45 = 1.0f / 120.0f + s * (1.0f / 720.0f);
    float p67 = 1.0f / 5040.0f + s * (1.0f / 40320.0f);
    float p89 = 1.0f / 362880.0f + s * (1.0f / 3628800.0f);
    float t = (p01 + s2 * p23) + s4 * ((p45 + s2 * p67) + s4 * p89);
    return log_pos(s * t);
}

/* Restrict-qualified parameters, not locals: with six arrays GCC would
 * otherwise need more run-time alias checks than it allows and leave the
 * loop scalar (measured 60 ms instead of about 1 for 814,090 parameters).
 * The update proper, then rho: every element takes the cheap form when its
 * sigma is small, the general one otherwise, the latter only computed in
 * blocks that have such a sigma (rare: weights near their prior width), so
 * each rho depends on its own sigma alone. */
FUSED_INLINE void ivon_update_block(size_t len, float *restrict mu, float *restrict rho,
                                    float *restrict g, float *restrict h,
                                    const float *restrict ghat, const float *restrict hhat,
                                    const fused_ivon_args *a)
{
    const float b1 = a->b1, b2 = a->b2, c1 = 1.0f - b1, c2 = 1.0f - b2;
    const float half_c2sq = 0.5f * c2 * c2, inv_bc1 = a->inv_bc1, step = a->step;
    const float delta = a->delta, lam = a->lam, clip = a->clip;
    int big = 0;
    for (size_t i = 0; i < len; i++) {
        float gi = b1 * g[i] + c1 * ghat[i];
        float hi = h[i], d = hi - hhat[i], hd = hi + delta;
        float hn = b2 * hi + c2 * hhat[i] + half_c2sq * d * d / hd;
        float hnd = hn + delta;
        float m = mu[i];
        float u = (gi * inv_bc1 + delta * m) / hnd;
        u = vmath_select(u > clip, clip, u);
        u = vmath_select(u < -clip, -clip, u);
        g[i] = gi;
        h[i] = hn;
        mu[i] = m - step * u;
        float s = 1.0f / sqrtf(lam * hnd);
        rho[i] = s; /* sigma, until the loop below */
        big |= !(s <= IVON_SMALL_S);
    }
    if (!big) {
        for (size_t i = 0; i < len; i++)
            rho[i] = softplus_inv_small(rho[i]);
    } else {
        for (size_t i = 0; i < len; i++) {
            float s = rho[i];
            rho[i] = vmath_select(s <= IVON_SMALL_S, softplus_inv_small(s), softplus_inv(s));
        }
    }
}

CPU_CLONES
void fused_ivon_update(size_t n, float *mu, float *rho, float *g, float *h, const float *ghat,
                       const float *hhat, const fused_ivon_args *a)
{
    for (size_t i = 0; i < n; i += FUSED_BLOCK) {
        size_t len = n - i < FUSED_BLOCK ? n - i : FUSED_BLOCK;
        ivon_update_block(len, mu + i, rho + i, g + i, h + i, ghat + i, hhat + i, a);
    }
}

/* The backward of fused_ivon_backward and the update in one pass, block by
 * block through L1: [ghat | hhat] is never written (nor read back), and
 * every value, the sum of squares included, is the same float operation on
 * the same operands as the two passes. */
CPU_CLONES
void fused_ivon_update_grad(size_t n, float *mu, float *rho, float *g, float *h, const float *gw,
                            const float *factor, const float *ghat0, const float *hhat0,
                            const fused_ivon_args *a, double *ss)
{
    double lane[FUSED_LANES] = {0};
    float gh[FUSED_BLOCK], hh[FUSED_BLOCK];
    for (size_t i = 0; i < n; i += FUSED_BLOCK) {
        size_t len = n - i < FUSED_BLOCK ? n - i : FUSED_BLOCK;
        if (ghat0) {
            for (size_t j = 0; j < len; j++)
                gh[j] = ghat0[i + j];
            for (size_t j = 0; j < len; j++)
                hh[j] = hhat0[i + j];
            ivon_backward_block(1, len, gw + i, factor + i, gh, hh);
        } else {
            ivon_backward_block(0, len, gw + i, factor + i, gh, hh);
        }
        lanes_add_sq(lane, gh, len);
        lanes_add_sq(lane, hh, len);
        ivon_update_block(len, mu + i, rho + i, g + i, h + i, gh, hh, a);
    }
    *ss = lanes_total(lane);
}
