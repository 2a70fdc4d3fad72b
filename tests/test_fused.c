/* The fused per-parameter passes against independent double-precision
 * computations: softplus and sigmoid over the whole range of rho, the
 * closed-form and Monte Carlo KL terms with their gradients, the backward
 * accumulation and its sum of squares, and Adam. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fused.h"
#include "testutil.h"

enum { N = 1031 }; /* several blocks and a ragged tail */

/* rho spread over [-110, 30]: tiny sigmas (subnormal and zero in float),
 * the usual range and large ones. */
static void fill_rho(float *rho, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rho[i] = -110.0f + 140.0f * (float)i / (float)(n - 1);
}

static double softplus_d(double r)
{
    return fmax(r, 0.0) + log1p(exp(-fabs(r)));
}

static double sigmoid_d(double r)
{
    double t = exp(-fabs(r));
    return r >= 0 ? 1.0 / (1.0 + t) : t / (1.0 + t);
}

/* log softplus(r) and sigmoid(r) / softplus(r), finite for any r. */
static double log_softplus_d(double r)
{
    return r < -30 ? r + log1p(-0.5 * exp(r)) : log(softplus_d(r));
}

static double ratio_d(double r)
{
    return r < -30 ? 1.0 - 0.5 * exp(r) : sigmoid_d(r) / softplus_d(r);
}

START_TEST(test_sample_network)
{
    float mu[N], rho[N], w[N];
    tu_rng g = {1};
    fill_rho(rho, N);
    tu_fill_uniform(&g, mu, N, -2.0f, 2.0f);
    for (size_t i = 0; i < N; i++)
        w[i] = (float)tu_normal(&g);
    float eps[N];
    memcpy(eps, w, sizeof eps);
    fused_sample_network(N, mu, rho, w);
    for (size_t i = 0; i < N; i++) {
        double s = softplus_d(rho[i]);
        double ref = mu[i] + s * eps[i];
        /* relative to the larger of the two terms: the sum may cancel */
        double scale = fabs(mu[i]) + fabs(s * eps[i]);
        ck_assert_msg(fabs(w[i] - ref) <= 4e-7 * scale + 1e-45, "rho %g: %.9g vs %.9g",
                      (double)rho[i], (double)w[i], ref);
    }
}
END_TEST

START_TEST(test_lrt_prepare_analytic)
{
    float mu[N], rho[N], sig2[N], dsig[N], gmu[N], grho[N];
    tu_rng g = {2};
    fill_rho(rho, N);
    tu_fill_uniform(&g, mu, N, -3.0f, 3.0f);
    const double p = 0.7, scale = 0.25;
    fused_kl k;
    memset(&k, 0, sizeof k);
    k.mode = FUSED_KL_ANALYTIC;
    k.scale = (float)scale;
    k.gmu = gmu;
    k.grho = grho;
    k.inv_p2 = (float)(1.0 / (p * p));
    k.log_p = (float)log(p);
    for (size_t i = 0; i < N; i++)
        gmu[i] = grho[i] = NAN; /* overwritten, never read */
    double kl = fused_lrt_prepare(N, mu, rho, sig2, dsig, &k);
    double ref = 0.0, mag = 0.0;
    for (size_t i = 0; i < N; i++) {
        double r = rho[i], m = mu[i], s = softplus_d(r), sg = sigmoid_d(r);
        tu_assert_close(sig2[i], s * s, 1e-44, 1e-6);
        tu_assert_close(dsig[i], 2 * s * sg, 1e-44, 1e-6);
        /* KL(N(m, s^2) || N(0, p^2)) = log p - log s + (s^2 + m^2)/(2p^2) - 1/2 */
        double t = log(p) - log_softplus_d(r) + 0.5 * (s * s + m * m) / (p * p) - 0.5;
        ref += t;
        mag += fabs(t);
        tu_assert_close(gmu[i], scale * m / (p * p), 1e-12, 1e-6);
        double gr = scale * (s * sg / (p * p) - ratio_d(r));
        ck_assert_msg(tu_close(grho[i], gr, 1e-7, 1e-5), "rho %g: %.9g vs %.9g",
                      (double)rho[i], (double)grho[i], gr);
    }
    ck_assert_msg(fabs(kl - ref) <= 1e-6 * mag, "kl %.12g vs %.12g", kl, ref);

    /* Without a KL only sigma^2 and its derivative factor. */
    float s2b[N], dsb[N];
    ck_assert(fused_lrt_prepare(N, mu, rho, s2b, dsb, NULL) == 0.0);
    ck_assert(memcmp(s2b, sig2, sizeof s2b) == 0 && memcmp(dsb, dsig, sizeof dsb) == 0);
}
END_TEST

/* Monte Carlo KL at w = mu + s eps for both priors, written then added. */
static void check_mc(enum fused_kl_mode mode, int with_w)
{
    float mu[N], rho[N], eps[N], eps0[N], w[N], gmu[N], grho[N];
    tu_rng g = {3 + (uint64_t)mode};
    fill_rho(rho, N);
    tu_fill_uniform(&g, mu, N, -1.0f, 1.0f);
    for (size_t i = 0; i < N; i++)
        eps0[i] = eps[i] = (float)tu_normal(&g);
    const double p = 1.3, pi = 0.3, s1 = 1.5, s2 = 0.1, scale = 0.5;
    fused_kl k;
    memset(&k, 0, sizeof k);
    k.mode = mode;
    k.scale = (float)scale;
    k.gmu = gmu;
    k.grho = grho;
    k.inv_p2 = (float)(1.0 / (p * p));
    k.log_p = (float)log(p);
    k.mix_c1 = (float)(log(pi) - log(s1));
    k.mix_c2 = (float)(log1p(-pi) - log(s2));
    k.mix_h1 = (float)(0.5 / (s1 * s1));
    k.mix_h2 = (float)(0.5 / (s2 * s2));
    double kl1 = fused_draw(N, mu, rho, eps, with_w ? w : NULL, 1, &k);
    float gm1[N], gr1[N];
    memcpy(gm1, gmu, sizeof gm1);
    memcpy(gr1, grho, sizeof gr1);
    /* the same draw again, accumulated: twice the gradient */
    k.accumulate = 1;
    float eps2[N];
    memcpy(eps2, eps0, sizeof eps2);
    double kl2 = fused_draw(N, mu, rho, eps2, NULL, 1, &k);
    ck_assert(kl1 == kl2);

    double ref = 0.0, mag = 0.0;
    for (size_t i = 0; i < N; i++) {
        double r = rho[i], m = mu[i], e = eps0[i], s = softplus_d(r), sg = sigmoid_d(r);
        double x = m + s * e, lp, dlp; /* log p(x) without 0.5 log 2pi, d/dx */
        if (mode == FUSED_KL_MC_NORMAL) {
            lp = -0.5 * x * x / (p * p) - log(p);
            dlp = -x / (p * p);
        } else {
            double a = log(pi / s1) - 0.5 * x * x / (s1 * s1);
            double b = log((1 - pi) / s2) - 0.5 * x * x / (s2 * s2);
            double hi = fmax(a, b);
            lp = hi + log(exp(a - hi) + exp(b - hi));
            double r1 = exp(a - lp), r2 = exp(b - lp);
            dlp = -x * (r1 / (s1 * s1) + r2 / (s2 * s2));
        }
        double t = -log_softplus_d(r) - 0.5 * e * e - lp;
        ref += t;
        mag += fabs(t);
        if (with_w) {
            double scale_w = fabs(m) + fabs(s * e);
            ck_assert(fabs(w[i] - x) <= 4e-7 * scale_w + 1e-45);
            tu_assert_close(eps[i], e * sg, 1e-44, 1e-6);
        } else {
            ck_assert(eps[i] == eps0[i]);
        }
        double gm = -scale * dlp, gr = scale * (-ratio_d(r) - dlp * e * sg);
        ck_assert_msg(tu_close(gm1[i], gm, 1e-6, 2e-5), "mu grad at rho %g: %.9g vs %.9g",
                      (double)r, (double)gm1[i], gm);
        ck_assert_msg(tu_close(gr1[i], gr, 1e-6, 2e-5), "rho grad at rho %g: %.9g vs %.9g",
                      (double)r, (double)gr1[i], gr);
        tu_assert_close(gmu[i], 2.0 * gm1[i], 0, 1e-6);
        tu_assert_close(grho[i], 2.0 * gr1[i], 0, 1e-6);
    }
    ck_assert_msg(fabs(kl1 - ref) <= 2e-6 * mag, "kl %.12g vs %.12g", kl1, ref);
}

START_TEST(test_mc_normal)
{
    check_mc(FUSED_KL_MC_NORMAL, _i);
}
END_TEST

START_TEST(test_mc_mixture)
{
    check_mc(FUSED_KL_MC_MIXTURE, _i);
}
END_TEST

START_TEST(test_draw_analytic_flipout)
{
    /* flipout: w = s eps (no mu), the KL as in the local reparameterization */
    float mu[N], rho[N], eps[N], e0[N], w[N], gmu[N], grho[N], gmu2[N], grho2[N], s2[N], ds[N];
    tu_rng g = {9};
    fill_rho(rho, N);
    tu_fill_uniform(&g, mu, N, -1.0f, 1.0f);
    for (size_t i = 0; i < N; i++)
        e0[i] = eps[i] = (float)tu_normal(&g);
    fused_kl k;
    memset(&k, 0, sizeof k);
    k.mode = FUSED_KL_ANALYTIC;
    k.scale = 0.125f;
    k.inv_p2 = 2.0f;
    k.log_p = (float)log(sqrt(0.5));
    k.gmu = gmu;
    k.grho = grho;
    double a = fused_draw(N, mu, rho, eps, w, 0, &k);
    k.gmu = gmu2;
    k.grho = grho2;
    double b = fused_lrt_prepare(N, mu, rho, s2, ds, &k);
    ck_assert(a == b);
    ck_assert(memcmp(gmu, gmu2, sizeof gmu) == 0 && memcmp(grho, grho2, sizeof grho) == 0);
    for (size_t i = 0; i < N; i++)
        tu_assert_close(w[i], softplus_d(rho[i]) * e0[i], 1e-44, 1e-6);
}
END_TEST

START_TEST(test_backward_and_norm)
{
    float gw[N], f[N], gmu[N], grho[N], gmu0[N], grho0[N];
    tu_rng g = {5};
    tu_fill_uniform(&g, gw, N, -1, 1);
    tu_fill_uniform(&g, f, N, -2, 2);
    tu_fill_uniform(&g, gmu0, N, -1, 1);
    tu_fill_uniform(&g, grho0, N, -1, 1);
    for (int add = 0; add < 2; add++) {
        memcpy(gmu, gmu0, sizeof gmu);
        memcpy(grho, grho0, sizeof grho);
        double ss = 1.0;
        fused_backward(N, gw, f, gmu, add, grho, &ss);
        double ref = 1.0;
        for (size_t i = 0; i < N; i++) {
            float em = add ? gmu0[i] + gw[i] : gmu0[i];
            float er = grho0[i] + f[i] * gw[i];
            ck_assert(gmu[i] == em && grho[i] == er);
            ref += (double)em * em + (double)er * er;
        }
        tu_assert_close(ss, ref, 0, 1e-12);
        tu_assert_close(fused_sum_sq(N, gmu) + fused_sum_sq(N, grho) + 1.0, ref, 0, 1e-12);
    }
    grho[N - 1] = INFINITY;
    ck_assert(!isfinite(fused_sum_sq(N, grho)));
    grho[3] = NAN;
    ck_assert(isnan(fused_sum_sq(N, grho)));
}
END_TEST

/* IVON's rho = softplus^-1(sigma) over sigma from 1e-4 to 30: both of its
 * forms (sigma <= 1 and above), blocks holding only small sigmas and blocks
 * mixing both, against log(expm1(sigma)) in double.  With beta2 = 0 and
 * h = hhat the update leaves h unchanged, so sigma = 1 / sqrt(lam (h +
 * delta)) is known exactly. */
START_TEST(test_ivon_softplus_inverse)
{
    enum { NS = 3000 };
    static float mu[NS], rho[NS], g[NS], h[NS], gh[NS], hh[NS];
    const float lam = 100.0f, delta = 0.0f;
    for (int i = 0; i < NS; i++) {
        /* the first 1024 elements (four blocks) all have sigma <= 1 */
        double s = i < 1024 ? pow(10.0, -4.0 + 4.0 * i / 1024.0)
                            : pow(10.0, -4.0 + 5.5 * (i - 1024) / (NS - 1024.0));
        h[i] = hh[i] = (float)(1.0 / (lam * s * s));
    }
    fused_ivon_args a = {0.9f, 0.0f, 1.0f, 0.1f, delta, lam, INFINITY};
    fused_ivon_update(NS, mu, rho, g, h, gh, hh, &a);
    for (int i = 0; i < NS; i++) {
        double s = 1.0 / sqrt((double)lam * ((double)h[i] + delta));
        double want = log(expm1((double)(float)s));
        ck_assert_msg(fabs(rho[i] - want) <= 4e-7 * (1.0 + fabs(want)) + 2e-7 * s,
                      "sigma %.9g: rho %.9g, want %.9g", s, (double)rho[i], want);
    }
}
END_TEST

START_TEST(test_adam)
{
    float p[N], gr[N], m[N], v[N], p2[N], m2[N], v2[N];
    tu_rng g = {6};
    tu_fill_uniform(&g, p, N, -1, 1);
    tu_fill_uniform(&g, gr, N, -1, 1);
    tu_fill_uniform(&g, m, N, -0.1f, 0.1f);
    tu_fill_uniform(&g, v, N, 0, 0.1f);
    memcpy(p2, p, sizeof p);
    memcpy(m2, m, sizeof m);
    memcpy(v2, v, sizeof v);
    fused_adam_args a = {0.5f, 0.9f, 0.999f, 1e-2f, 3.0f, 1e-8f};
    fused_adam(N, p, gr, m, v, &a);
    for (size_t i = 0; i < N; i++) {
        /* the float constants, exactly */
        double b1 = 0.9f, b2 = 0.999f, gi = 0.5 * gr[i];
        double mi = b1 * m2[i] + (1 - b1) * gi, vi = b2 * v2[i] + (1 - b2) * gi * gi;
        tu_assert_close(m[i], mi, 1e-8, 1e-6);
        tu_assert_close(v[i], vi, 1e-12, 1e-6);
        tu_assert_close(p[i], p2[i] - 1e-2 * mi / (sqrt(vi) * 3.0 + 1e-8), 1e-7, 1e-6);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fused");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sample_network);
    tcase_add_test(tc, test_lrt_prepare_analytic);
    tcase_add_loop_test(tc, test_mc_normal, 0, 2);
    tcase_add_loop_test(tc, test_mc_mixture, 0, 2);
    tcase_add_test(tc, test_draw_analytic_flipout);
    tcase_add_test(tc, test_backward_and_norm);
    tcase_add_test(tc, test_adam);
    tcase_add_test(tc, test_ivon_softplus_inverse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
