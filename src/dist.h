/* Distribution maths.  Internal.  Scalars in double unless stated. */
#ifndef BNN_DIST_H
#define BNN_DIST_H

#include <stddef.h>

/* log(1 + e^x) without overflow or loss for large |x|. */
double dist_softplus(double x);
/* Inverse: log(e^y - 1) for y > 0, accurate for tiny and large y. */
double dist_softplus_inv(double y);
/* d softplus / dx = sigmoid(x). */
double dist_sigmoid(double x);

/* log N(x | mu, sigma^2). */
double dist_normal_log_prob(double x, double mu, double sigma);
/* log N(y | mean, sigma^2); same as above, named for the likelihood. */
double dist_gaussian_log_lik(double y, double mean, double sigma);

/* Prior over one weight. */
typedef struct dist_prior {
    int kind; /* 0 Normal(0, sigma), 1 scale mixture */
    double sigma;
    double pi, sigma1, sigma2;
} dist_prior;

/* log p(w); if dlogp is not NULL it gets d log p / dw. */
double dist_prior_log_prob(const dist_prior *p, double w, double *dlogp);
/* log(pi N(w|0,s1^2) + (1-pi) N(w|0,s2^2)), stable in the tails. */
double dist_scale_mixture_log_prob(double w, double pi, double s1, double s2,
                                   double *dlogp);

/* KL(N(mu, sigma^2) || N(0, p^2)) and its partial derivatives (may be
 * NULL). */
double dist_kl_normal(double mu, double sigma, double p, double *dmu,
                      double *dsigma);

/* Sum over i of KL(N(mu_i, softplus(rho_i)^2) || N(0, p^2)).  If g_mu and
 * g_rho are not NULL, adds scale * dKL/dmu_i and scale * dKL/drho_i. */
double dist_kl_normal_sum(size_t n, const float *mu, const float *rho,
                          double p, double scale, float *g_mu, float *g_rho);

/* log p(label) from a row of log-probabilities. */
static inline double dist_categorical_log_prob(const float *logp, int label)
{
    return (double)logp[label];
}

#endif
