/* Distribution maths against hand-derived values, 50-digit references and
 * finite differences.
 *
 * The "mp:" values were computed with mpmath at mp.dps = 50 from the
 * definitions (not from the library's formulas):
 *   softplus(x)     = log1p(exp(x))
 *   softplus_inv(y) = log(expm1(y))
 *   sigmoid(x)      = 1 / (1 + exp(-x))
 *   log N(x|m,s)    = -((x-m)/s)^2/2 - log(s) - log(2 pi)/2
 *   mixture(w)      = log(pi N(w|0,s1) + (1-pi) N(w|0,s2)), derivative
 *                     (pi N1 (-w/s1^2) + (1-pi) N2 (-w/s2^2)) / mixture
 *   KL(m,s,p)       = log(p/s) + (s^2 + m^2) / (2 p^2) - 1/2
 * and rounded to 20 significant digits. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "dist.h"
#include "testutil.h"

/* Relative tolerance for closed forms evaluated in double: a few ulps of
 * every intermediate. */
#define RT 1e-14

/* Central difference of a scalar function of one double. */
typedef double (*fn1)(double x, const void *ctx);
static double central_diff(fn1 f, double x, double h, const void *ctx)
{
    return (f(x + h, ctx) - f(x - h, ctx)) / (2.0 * h);
}

/* ---- softplus, its inverse, sigmoid ------------------------------------ */

START_TEST(test_softplus_reference)
{
    static const double ref[][2] = {
        {-700.0, 9.8596765437597708567e-305}, /* mp */
        {-100.0, 3.720075976020835963e-44},   /* mp */
        {-30.0, 9.3576229688397367794e-14},   /* mp */
        {-1.0, 0.31326168751822283405},       /* mp */
        {0.0, 0.69314718055994530942},        /* log 2 */
        {0.5, 0.97407698418010668087},        /* mp */
        {1.0, 1.313261687518222834},          /* mp */
        {30.0, 30.000000000000093576},        /* mp */
        {100.0, 100.0},                       /* mp: 100 + 3.7e-44 */
    };
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++)
        tu_assert_close(dist_softplus(ref[i][0]), ref[i][1], 0.0, RT);
    /* softplus(x) - softplus(-x) = x exactly in real arithmetic. */
    for (double x = -40.0; x <= 40.0; x += 0.375)
        tu_assert_close(dist_softplus(x) - dist_softplus(-x), x, 1e-14, RT);
    /* Far outside any float rho: no overflow, no NaN. */
    ck_assert(dist_softplus(1000.0) == 1000.0);
    ck_assert(dist_softplus(-1000.0) == 0.0);
    ck_assert(dist_softplus(DBL_MAX) == DBL_MAX);
}
END_TEST

START_TEST(test_softplus_inv_reference)
{
    static const double ref[][2] = {
        {1e-30, -69.077552789821370521}, /* mp; ~ log(y) for tiny y */
        {1e-10, -23.02585092989045684},  /* mp */
        {0.5, -0.43275212956718857189},  /* mp */
        {1.0, 0.54132485461291810898},   /* mp */
        {20.0, 19.999999997938846375},   /* mp */
        {100.0, 100.0},                  /* mp: 100 - 3.7e-44 */
    };
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++)
        tu_assert_close(dist_softplus_inv(ref[i][0]), ref[i][1], 0.0, RT);
    /* Hand: softplus(0) = log 2, so the inverse of log 2 is 0. */
    tu_assert_close(dist_softplus_inv(0.69314718055994530942), 0.0, 1e-15, 0);
    /* Round trips over the whole useful range of sigmas, 1e-30 .. 100. */
    for (double y = 1e-30; y <= 100.0; y *= 1.7) {
        double x = dist_softplus_inv(y);
        ck_assert(isfinite(x));
        tu_assert_close(dist_softplus(x), y, 0.0, 4 * RT);
    }
    for (double x = -60.0; x <= 30.0; x += 0.625)
        tu_assert_close(dist_softplus_inv(dist_softplus(x)), x, 1e-13, 1e-13);
    /* No inverse at or below 0. */
    ck_assert(isinf(dist_softplus_inv(0.0)) && dist_softplus_inv(0.0) < 0);
    ck_assert(isnan(dist_softplus_inv(-1.0)));
}
END_TEST

static double softplus_fn(double x, const void *ctx)
{
    (void)ctx;
    return dist_softplus(x);
}

START_TEST(test_sigmoid)
{
    static const double ref[][2] = {
        {-100.0, 3.720075976020835963e-44}, /* mp */
        {-1.0, 0.26894142136999512075},     /* mp */
        {0.0, 0.5},                         /* hand */
        {2.0, 0.88079707797788244406},      /* mp */
        {100.0, 1.0},                       /* mp: 1 - 3.7e-44 */
    };
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++)
        tu_assert_close(dist_sigmoid(ref[i][0]), ref[i][1], 0.0, RT);
    /* sigmoid(x) + sigmoid(-x) = 1. */
    for (double x = -30.0; x <= 30.0; x += 0.5)
        tu_assert_close(dist_sigmoid(x) + dist_sigmoid(-x), 1.0, 4.5e-16, 0);
    /* It is the derivative of softplus. */
    for (double x = -12.0; x <= 12.0; x += 0.75)
        tu_assert_close(dist_sigmoid(x), central_diff(softplus_fn, x, 1e-5, 0),
                        1e-9, 1e-8);
    ck_assert(dist_sigmoid(-1000.0) == 0.0);
    ck_assert(dist_sigmoid(1000.0) == 1.0);
}
END_TEST

/* ---- Normal and priors -------------------------------------------------- */

START_TEST(test_normal_log_prob)
{
    tu_assert_close(dist_normal_log_prob(0.3, -1.2, 0.7),
                    -2.8581819566128791384, 0, RT); /* mp */
    tu_assert_close(dist_normal_log_prob(5.0, 0.0, 1e-3),
                    -12499994.011183254223, 0, RT); /* mp */
    tu_assert_close(dist_normal_log_prob(-2.0, 1.0, 10.0),
                    -3.2665236261987184258, 0, RT); /* mp */
    /* Hand: at the mean of N(0,1) the density is 1/sqrt(2 pi). */
    tu_assert_close(dist_normal_log_prob(0.0, 0.0, 1.0),
                    -0.91893853320467274178, 0, RT);
    tu_assert_close(dist_gaussian_log_lik(0.3, -1.2, 0.7),
                    -2.8581819566128791384, 0, RT);
}
END_TEST

typedef struct mix_ctx {
    double pi, s1, s2;
} mix_ctx;

static double mix_fn(double w, const void *ctx)
{
    const mix_ctx *c = ctx;
    return dist_scale_mixture_log_prob(w, c->pi, c->s1, c->s2, NULL);
}

START_TEST(test_scale_mixture_reference)
{
    /* pi = 0.5, s1 = 1, s2 = exp(-6): the usual Blundell et al. prior. */
    static const double ref[][3] = {
        /* w, log p, d log p / dw   (mp) */
        {0.0, 4.3903899713731123983, 0.0},
        {0.003, 3.6606604076918009978, -485.75984638131383417},
        {0.01, -1.5006596448702136548, -171.69442099782006419},
        {0.3, -1.6570857137646180512, -0.3},
        {1.0, -2.1120857137646180512, -1.0},
        {-2.5, -4.7370857137646180512, 2.5},
        {1e6, -500000000001.61208571, -1000000.0},
    };
    const double s2 = exp(-6.0);
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        double d = NAN;
        double lp = dist_scale_mixture_log_prob(ref[i][0], 0.5, 1.0, s2, &d);
        tu_assert_close(lp, ref[i][1], 0, RT);
        tu_assert_close(d, ref[i][2], 1e-12, 1e-13);
    }
    /* Hand: at w = 0, log(0.5/sqrt(2 pi) * (1 + e^6)). */
    tu_assert_close(dist_scale_mixture_log_prob(0.0, 0.5, 1.0, s2, NULL),
                    log(0.5) - 0.91893853320467274178 + log1p(exp(6.0)), 0,
                    RT);
    /* Another mixture: pi = 0.25, s1 = 1.5, s2 = 0.1 at w = 0.01 (mp). */
    double d = NAN;
    tu_assert_close(dist_scale_mixture_log_prob(0.01, 0.25, 1.5, 0.1, &d),
                    1.1130518705094531112, 0, RT);
    tu_assert_close(d, -0.97825184702001354687, 0, 1e-13);
}
END_TEST

START_TEST(test_scale_mixture_tails)
{
    /* Far in the tails the narrow component underflows (exp(-8e16)); the
     * log-sum-exp must still give the wide component's value, and the
     * derivative must be the wide component's -w/s^2, whichever of the two
     * components is the wide one. */
    const double s_narrow = exp(-6.0);
    for (int sign = -1; sign <= 1; sign += 2) {
        double w = sign * 1e6, d1 = NAN, d2 = NAN;
        double a = dist_scale_mixture_log_prob(w, 0.3, 2.0, s_narrow, &d1);
        double b = dist_scale_mixture_log_prob(w, 0.7, s_narrow, 2.0, &d2);
        double want = log(0.3) + dist_normal_log_prob(w, 0.0, 2.0);
        ck_assert(isfinite(a) && isfinite(b));
        tu_assert_close(a, want, 0, RT);
        tu_assert_close(b, want, 0, RT);
        tu_assert_close(d1, -w / 4.0, 0, RT);
        tu_assert_close(d2, -w / 4.0, 0, RT);
    }
    /* A mixture of equal components is that component. */
    double d = NAN;
    tu_assert_close(dist_scale_mixture_log_prob(0.7, 0.2, 0.5, 0.5, &d),
                    dist_normal_log_prob(0.7, 0.0, 0.5), 0, RT);
    tu_assert_close(d, -0.7 / 0.25, 0, RT);
}
END_TEST

START_TEST(test_scale_mixture_derivative_fd)
{
    const mix_ctx cases[] = {
        {0.5, 1.0, 0.0024787521766663585}, /* s2 = e^-6 */
        {0.25, 1.5, 0.1},
        {0.9, 0.05, 3.0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const mix_ctx *m = &cases[c];
        double smin = fmin(m->s1, m->s2);
        for (double u = -6.0; u <= 6.0; u += 0.37) {
            double w = u * smin * 2.0, d = NAN;
            dist_scale_mixture_log_prob(w, m->pi, m->s1, m->s2, &d);
            double h = 1e-5 * smin;
            double fd = central_diff(mix_fn, w, h, m);
            tu_assert_close(d, fd, 1e-6 / smin, 1e-6);
        }
    }
}
END_TEST

static double prior_fn(double w, const void *ctx)
{
    return dist_prior_log_prob(ctx, w, NULL);
}

START_TEST(test_prior_dispatch)
{
    dist_prior normal = {0, 0.5, 0, 0, 0};
    dist_prior mix = {1, 0, 0.25, 1.5, 0.1};
    dist_prior bad = {7, 1.0, 0.5, 1.0, 1.0};
    for (double w = -2.0; w <= 2.0; w += 0.25) {
        double d = NAN;
        /* Hand: log N(w|0,0.5) = -2 w^2 - log 0.5 - log(2 pi)/2 and its
         * derivative -w / 0.25. */
        double lp = dist_prior_log_prob(&normal, w, &d);
        tu_assert_close(lp, -2.0 * w * w + log(2.0) - 0.91893853320467274178,
                        1e-15, RT);
        tu_assert_close(d, -4.0 * w, 1e-15, RT);
        tu_assert_close(d, central_diff(prior_fn, w, 1e-6, &normal), 1e-7,
                        1e-7);

        double dm = NAN, dref = NAN;
        double lm = dist_prior_log_prob(&mix, w, &dm);
        double lref = dist_scale_mixture_log_prob(w, 0.25, 1.5, 0.1, &dref);
        ck_assert(lm == lref && dm == dref);
        tu_assert_close(dm, central_diff(prior_fn, w, 1e-6, &mix), 1e-6,
                        1e-6);
    }
    /* NULL derivative pointer is allowed. */
    tu_assert_close(dist_prior_log_prob(&normal, 0.0, NULL),
                    log(2.0) - 0.91893853320467274178, 0, RT);
    double d = 0.0;
    ck_assert(isnan(dist_prior_log_prob(&bad, 0.1, &d)));
    ck_assert(isnan(d));
}
END_TEST

/* ---- KL ------------------------------------------------------------------- */

START_TEST(test_kl_reference)
{
    static const double ref[][4] = {
        /* mu, sigma, p, KL   (mp) */
        {0.5, 0.2, 1.0, 1.2544379124341003746},
        {-1.5, 2.0, 0.3, 32.32510223733634092},
        {0.0, 1e-30, 1.0, 68.577552789821370521},
        {3.0, 1.0, 1.0, 4.5}, /* hand: 0 + (1 + 9)/2 - 1/2 */
    };
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++)
        tu_assert_close(dist_kl_normal(ref[i][0], ref[i][1], ref[i][2], NULL,
                                       NULL),
                        ref[i][3], 0, RT);
    /* Hand partials at (3, 1, 1): dmu = mu/p^2 = 3, dsigma = s/p^2 - 1/s = 0. */
    double dmu = NAN, ds = NAN;
    dist_kl_normal(3.0, 1.0, 1.0, &dmu, &ds);
    tu_assert_close(dmu, 3.0, 0, RT);
    tu_assert_close(ds, 0.0, 1e-15, 0);
    /* Tiny sigma: finite value and the -1/s partial. */
    double kl = dist_kl_normal(0.1, 1e-300, 2.0, &dmu, &ds);
    ck_assert(isfinite(kl));
    tu_assert_close(kl, log(2.0) + 300.0 * log(10.0) + 0.01 / 8.0 - 0.5, 0,
                    RT);
    tu_assert_close(ds, -1e300, 0, RT);
}
END_TEST

typedef struct kl_ctx {
    double mu, s, p;
    int which; /* 0 vary mu, 1 vary sigma */
} kl_ctx;

static double kl_fn(double x, const void *ctx)
{
    const kl_ctx *c = ctx;
    return c->which == 0 ? dist_kl_normal(x, c->s, c->p, NULL, NULL)
                         : dist_kl_normal(c->mu, x, c->p, NULL, NULL);
}

START_TEST(test_kl_zero_nonneg_fd)
{
    tu_rng r = {42};
    for (int i = 0; i < 2000; i++) {
        double mu = 4.0 * (tu_uniform(&r) - 0.5);
        double s = exp(6.0 * (tu_uniform(&r) - 0.5));
        double p = exp(4.0 * (tu_uniform(&r) - 0.5));
        /* q == p */
        tu_assert_close(dist_kl_normal(0.0, p, p, NULL, NULL), 0.0, 1e-15, 0);
        /* KL >= 0, with equality only at q == p */
        ck_assert(dist_kl_normal(mu, s, p, NULL, NULL) >= 0.0);

        if (i % 20 == 0) {
            double dmu = NAN, ds = NAN;
            dist_kl_normal(mu, s, p, &dmu, &ds);
            kl_ctx c0 = {mu, s, p, 0}, c1 = {mu, s, p, 1};
            tu_assert_close(dmu, central_diff(kl_fn, mu, 1e-6, &c0), 1e-6,
                            1e-6);
            tu_assert_close(ds, central_diff(kl_fn, s, 1e-6 * s, &c1), 1e-6,
                            1e-6);
        }
    }
}
END_TEST

/* Independent reference for one term of the sum, in long double from the
 * definitions. */
static long double kl_term_ref(float mu, float rho, double p)
{
    long double s = log1pl(expl((long double)rho));
    long double pp = p;
    return logl(pp / s) + (s * s + (long double)mu * mu) / (2 * pp * pp) -
           0.5L;
}

START_TEST(test_kl_sum_reference)
{
    /* p = 1 (mp), each term from the float values of mu and rho. */
    static const struct {
        float mu, rho;
        double kl, g_rho;
    } ref[] = {
        {0.25f, -3.0f, 2.5568224029988716812, -0.97379074859452167561},
        {-1.0f, -100.0f, 100.0, -1.0},
        {2.0f, 100.0f, 4996.8948298140119086, 99.99},
        /* sigma = e^-800 underflows a double, yet KL = 800 - 1/2. */
        {0.0f, -800.0f, 799.5, -1.0},
    };
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        float gm = 0.5f, gr = -0.25f;
        double kl = dist_kl_normal_sum(1, &ref[i].mu, &ref[i].rho, 1.0, 1.0,
                                       &gm, &gr);
        tu_assert_close(kl, ref[i].kl, 0, RT);
        tu_assert_close(gm, 0.5f + ref[i].mu, 0, 1e-7);
        tu_assert_close(gr, (float)(-0.25 + ref[i].g_rho), 0, 1e-7);
    }

    /* A random vector against the long double reference and the scalar
     * function, and the gradient scaled and accumulated. */
    enum { N = 257 };
    float mu[N], rho[N], gm[N], gr[N];
    tu_rng r = {7};
    tu_fill_uniform(&r, mu, N, -2.0f, 2.0f);
    tu_fill_uniform(&r, rho, N, -12.0f, 4.0f);
    for (size_t i = 0; i < N; i++) {
        gm[i] = (float)i;
        gr[i] = -(float)i;
    }
    const double p = 0.7, scale = 0.125;
    long double want = 0;
    for (size_t i = 0; i < N; i++)
        want += kl_term_ref(mu[i], rho[i], p);
    double got = dist_kl_normal_sum(N, mu, rho, p, scale, gm, gr);
    tu_assert_close(got, (double)want, 0, 1e-13);
    for (size_t i = 0; i < N; i++) {
        double s = dist_softplus(rho[i]), dmu = NAN, ds = NAN;
        dist_kl_normal(mu[i], s, p, &dmu, &ds);
        tu_assert_close(gm[i], (double)i + scale * dmu, 1e-6, 1e-6);
        tu_assert_close(gr[i], -(double)i + scale * ds * dist_sigmoid(rho[i]),
                        1e-6, 1e-6);
    }
    /* Without gradient buffers only the value is computed. */
    tu_assert_close(dist_kl_normal_sum(N, mu, rho, p, scale, NULL, NULL),
                    (double)want, 0, 1e-13);
    ck_assert(dist_kl_normal_sum(0, mu, rho, p, scale, gm, gr) == 0.0);
}
END_TEST

START_TEST(test_kl_sum_zero_nonneg)
{
    /* q == p: p is the double softplus of the float rho. */
    float mu0 = 0.0f, rho_vals[] = {-25.0f, -5.0f, -0.5f, 0.0f, 3.0f, 40.0f};
    for (size_t i = 0; i < sizeof rho_vals / sizeof rho_vals[0]; i++) {
        double p = dist_softplus(rho_vals[i]);
        float gm = 0.0f, gr = 0.0f;
        double kl = dist_kl_normal_sum(1, &mu0, &rho_vals[i], p, 1.0, &gm,
                                       &gr);
        tu_assert_close(kl, 0.0, 1e-14, 0);
        /* a minimum: both partials vanish */
        tu_assert_close(gm, 0.0, 1e-7, 0);
        tu_assert_close(gr, 0.0, 1e-6, 0);
    }
    tu_rng r = {99};
    for (int i = 0; i < 1000; i++) {
        float mu = (float)(6.0 * (tu_uniform(&r) - 0.5));
        float rho = (float)(60.0 * (tu_uniform(&r) - 0.7));
        double p = exp(6.0 * (tu_uniform(&r) - 0.5));
        ck_assert(dist_kl_normal_sum(1, &mu, &rho, p, 1.0, NULL, NULL) >=
                  0.0);
    }
}
END_TEST

START_TEST(test_kl_sum_fd)
{
    /* Perturb float inputs by h = 2^-12, which is exact for these
     * dyadic values, so the difference sees the true change of the input. */
    static const float mus[] = {0.5f, -1.25f, 0.0f, 2.0f, -0.0625f};
    static const float rhos[] = {0.5f, -3.25f, -19.5f, -21.0f, 2.0f};
    const float h = 1.0f / 4096.0f;
    const double p = 0.3;
    for (size_t i = 0; i < sizeof mus / sizeof mus[0]; i++) {
        float gm = 0.0f, gr = 0.0f;
        dist_kl_normal_sum(1, &mus[i], &rhos[i], p, 1.0, &gm, &gr);
        float mp = mus[i] + h, mm = mus[i] - h;
        float rp = rhos[i] + h, rm = rhos[i] - h;
        double fd_mu = (dist_kl_normal_sum(1, &mp, &rhos[i], p, 1, 0, 0) -
                        dist_kl_normal_sum(1, &mm, &rhos[i], p, 1, 0, 0)) /
                       (2.0 * h);
        double fd_rho = (dist_kl_normal_sum(1, &mus[i], &rp, p, 1, 0, 0) -
                         dist_kl_normal_sum(1, &mus[i], &rm, p, 1, 0, 0)) /
                        (2.0 * h);
        tu_assert_close(gm, fd_mu, 1e-6, 1e-6);
        tu_assert_close(gr, fd_rho, 1e-6, 1e-6);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_softplus_reference);
    tcase_add_test(tc, test_softplus_inv_reference);
    tcase_add_test(tc, test_sigmoid);
    tcase_add_test(tc, test_normal_log_prob);
    tcase_add_test(tc, test_scale_mixture_reference);
    tcase_add_test(tc, test_scale_mixture_tails);
    tcase_add_test(tc, test_scale_mixture_derivative_fd);
    tcase_add_test(tc, test_prior_dispatch);
    tcase_add_test(tc, test_kl_reference);
    tcase_add_test(tc, test_kl_zero_nonneg_fd);
    tcase_add_test(tc, test_kl_sum_reference);
    tcase_add_test(tc, test_kl_sum_zero_nonneg);
    tcase_add_test(tc, test_kl_sum_fd);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
