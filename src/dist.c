/* Distribution maths for the ELBO: softplus, Normal densities, priors and
 * the closed-form KL term.  Everything is computed in double; callers feed
 * floats and store floats. */
#include <math.h>

#include "dist.h"

/* 0.5 * log(2 pi) */
#define HALF_LOG_2PI 0.91893853320467274178

/* Below this rho, e^rho < 2.1e-9 and the series forms of softplus and its
 * logarithm are exact to double precision, while the direct forms would lose
 * everything once e^rho underflows (rho < -745). */
#define SOFTPLUS_SERIES_BELOW (-20.0)

double dist_softplus(double x)
{
    /* log(1 + e^x) = max(x, 0) + log1p(e^-|x|): the exponent is never
     * positive, so nothing overflows and log1p keeps the small tail. */
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

double dist_softplus_inv(double y)
{
    /* log(e^y - 1) = y + log(1 - e^-y); expm1 keeps 1 - e^-y accurate when
     * y is tiny, and e^-y never overflows for y > 0.  y <= 0 has no inverse:
     * the result is -inf (y == 0) or NaN. */
    return y + log(-expm1(-y));
}

double dist_sigmoid(double x)
{
    /* Evaluate with e^-|x| so the exponential cannot overflow. */
    double t = exp(-fabs(x));
    return x >= 0.0 ? 1.0 / (1.0 + t) : t / (1.0 + t);
}

double dist_normal_log_prob(double x, double mu, double sigma)
{
    double z = (x - mu) / sigma;
    return -0.5 * z * z - log(sigma) - HALF_LOG_2PI;
}

double dist_gaussian_log_lik(double y, double mean, double sigma)
{
    return dist_normal_log_prob(y, mean, sigma);
}

double dist_scale_mixture_log_prob(double w, double pi, double s1, double s2,
                                   double *dlogp)
{
    /* log-sum-exp of the two weighted components: in the tails one of them
     * underflows to 0 long before the log of the mixture stops being finite
     * (w = 1e6 with s2 = e^-6 gives log N ~ -8e16). */
    double a = log(pi) + dist_normal_log_prob(w, 0.0, s1);
    double b = log1p(-pi) + dist_normal_log_prob(w, 0.0, s2);
    double hi = fmax(a, b), d = -fabs(a - b);
    double lp = hi + log1p(exp(d));
    if (dlogp) {
        /* d/dw log sum_k c_k N_k = sum_k r_k (-w / s_k^2) with the
         * responsibilities r_1 = sigmoid(a - b), r_2 = 1 - r_1; both come
         * from the same stable sigmoid so they never overflow. */
        double r1 = dist_sigmoid(a - b);
        double r2 = dist_sigmoid(b - a);
        *dlogp = -w * (r1 / (s1 * s1) + r2 / (s2 * s2));
    }
    return lp;
}

double dist_prior_log_prob(const dist_prior *p, double w, double *dlogp)
{
    switch (p->kind) {
    case 0:
        if (dlogp)
            *dlogp = -w / (p->sigma * p->sigma);
        return dist_normal_log_prob(w, 0.0, p->sigma);
    case 1:
        return dist_scale_mixture_log_prob(w, p->pi, p->sigma1, p->sigma2,
                                           dlogp);
    default:
        /* Unknown kinds are rejected at model creation; NaN makes a misuse
         * surface as BNN_E_NUMERIC instead of a plausible number. */
        if (dlogp)
            *dlogp = NAN;
        return NAN;
    }
}

double dist_kl_normal(double mu, double sigma, double p, double *dmu,
                      double *dsigma)
{
    /* KL(N(mu,s^2) || N(0,p^2)) = log(p/s) + (s^2 + mu^2) / (2 p^2) - 1/2.
     * The log is split so that s near the bottom of the double range does
     * not overflow p/s. */
    double inv_p2 = 1.0 / (p * p);
    if (dmu)
        *dmu = mu * inv_p2;
    if (dsigma)
        *dsigma = sigma * inv_p2 - 1.0 / sigma;
    return log(p) - log(sigma) + 0.5 * (sigma * sigma + mu * mu) * inv_p2 -
           0.5;
}

double dist_kl_normal_sum(size_t n, const float *mu, const float *rho,
                          double p, double scale, float *g_mu, float *g_rho)
{
    const double inv_p2 = 1.0 / (p * p);
    const double log_p = log(p);
    const int grads = g_mu != NULL && g_rho != NULL;
    double sum = 0.0;

    for (size_t i = 0; i < n; i++) {
        double m = mu[i], r = rho[i];
        double t = exp(-fabs(r));
        double s, log_s, ds_ratio; /* ds_ratio = sigmoid(r) / s */
        if (r > SOFTPLUS_SERIES_BELOW) {
            s = fmax(r, 0.0) + log1p(t);
            log_s = log(s);
            ds_ratio = (r >= 0.0 ? 1.0 / (1.0 + t) : t / (1.0 + t)) / s;
        } else {
            /* softplus(r) = t - t^2/2 + ..., so log s = r + log1p(-t/2) and
             * sigmoid(r)/s = 1 - t/2 + O(t^2): finite even when t == 0. */
            s = t * (1.0 - 0.5 * t);
            log_s = r + log1p(-0.5 * t);
            ds_ratio = 1.0 - 0.5 * t;
        }
        sum += log_p - log_s + 0.5 * (s * s + m * m) * inv_p2 - 0.5;
        if (grads) {
            /* dKL/drho = (s/p^2 - 1/s) * sigmoid(r)
             *          = s * sigmoid(r) / p^2 - sigmoid(r) / s */
            double sig = ds_ratio * s;
            g_mu[i] += (float)(scale * m * inv_p2);
            g_rho[i] += (float)(scale * (sig * s * inv_p2 - ds_ratio));
        }
    }
    return sum;
}
