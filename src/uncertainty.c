/* Uncertainty statistics of one input from its sampled probability vectors:
 * mean probabilities, medians, quantiles, entropy of the mean, expected
 * entropy and their difference (the mutual information, the epistemic part).
 * Pure functions on arrays: no handle, no allocation. */
#include <math.h>
#include <stddef.h>

#include "internal.h"
#include "refusal.h"
#include "uncertainty.h"

/* ---- order statistics --------------------------------------------------- */

static void swapf(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

static float median3(float a, float b, float c)
{
    if (a > b)
        swapf(&a, &b);
    if (b > c)
        b = c;
    return a > b ? a : b;
}

/* k-th smallest (0-based) of v[0..n), in expected O(n).  Leaves v ordered so
 * that v[0..k) <= v[k] <= v[k+1..n).  The three-way partition always puts
 * the pivot in the middle group, so the range shrinks on every pass even
 * with duplicates or NaN (which land in the middle group of any pivot). */
static float select_kth(float *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        float piv = median3(v[lo], v[lo + (hi - lo) / 2], v[hi - 1]);
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (v[i] < piv)
                swapf(&v[lt++], &v[i++]);
            else if (v[i] > piv)
                swapf(&v[i], &v[--gt]);
            else
                i++;
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            break;
    }
    return v[k];
}

/* Smallest of v[0..n), n >= 1: after select_kth(k) this is order statistic
 * k+1 when called on v + k + 1. */
static float min_of(const float *v, size_t n)
{
    float m = v[0];
    for (size_t i = 1; i < n; i++)
        if (v[i] < m)
            m = v[i];
    return m;
}

static float median_of(float *v, size_t n)
{
    if (n % 2)
        return select_kth(v, n, n / 2);
    float a = select_kth(v, n, n / 2 - 1);
    float b = min_of(v + n / 2, n / 2);
    return (float)(((double)a + (double)b) * 0.5);
}

/* Quantile q of v[0..n) by linear interpolation between order statistics
 * (Hyndman-Fan type 7, numpy's default): position h = (n-1) q. */
static float quantile_of(float *v, size_t n, float q)
{
    double h = (double)(n - 1) * (double)q;
    double fl = floor(h);
    size_t lo = (size_t)fl;
    if (lo >= n - 1)
        return select_kth(v, n, n - 1);
    float a = select_kth(v, n, lo);
    double frac = h - fl;
    if (frac == 0.0)
        return a;
    float b = min_of(v + lo + 1, n - lo - 1);
    return (float)((double)a + ((double)b - (double)a) * frac);
}

/* ---- uncertainty summary of one input ------------------------------------ */

static double plogp(double p)
{
    return p > 0.0 ? -p * log(p) : 0.0;
}

void uncertainty_stats(const float *p, size_t num_samples, size_t classes,
                       size_t stride, bnn_refusal_rule rule, float threshold,
                       const float *levels, size_t n_levels,
                       bnn_prediction *rec, float *medians, float *quantiles,
                       float *means, float *scratch)
{
    const size_t S = num_samples;
    double h_mean = 0.0, h_samples = 0.0;
    size_t mean_best = 0, med_best = 0;
    float mean_best_p = 0.0f, med_best_v = 0.0f, med_best_p = 0.0f;

    /* One class at a time, so the only scratch is that class's S values. */
    for (size_t c = 0; c < classes; c++) {
        double sum = 0.0, h = 0.0;
        for (size_t s = 0; s < S; s++) {
            float v = p[s * stride + c];
            sum += (double)v;
            h += plogp((double)v);
            scratch[s] = v;
        }
        /* Same operations as bnn_predict, so the two agree bit for bit. */
        double mean = sum / (double)S;
        float meanf = (float)mean;
        if (means)
            means[c] = meanf;
        h_mean += plogp(mean);
        h_samples += h;

        float med = median_of(scratch, S);
        if (medians)
            medians[c] = med;
        if (quantiles)
            for (size_t j = 0; j < n_levels; j++)
                quantiles[c * n_levels + j] = quantile_of(scratch, S,
                                                          levels[j]);
        if (c == 0 || meanf > mean_best_p) {
            mean_best = c;
            mean_best_p = meanf;
        }
        if (c == 0 || med > med_best_v) {
            med_best = c;
            med_best_v = med;
            med_best_p = meanf;
        }
    }

    double expected = h_samples / (double)S;
    double mi = h_mean - expected;
    /* Jensen makes mi >= 0; rounding can leave a tiny negative. */
    if (!(mi > 0.0))
        mi = 0.0;
    int median_rule = rule == BNN_REFUSE_MEDIAN;
    rec->label = (int32_t)(median_rule ? med_best : mean_best);
    rec->prob = median_rule ? med_best_p : mean_best_p;
    rec->entropy = (float)h_mean;
    rec->expected_entropy = (float)expected;
    rec->mutual_info = (float)mi;
    rec->max_median = med_best_v;
    rec->mean_label = (int32_t)mean_best;
    rec->refused = refusal_refuses(rec, rule, threshold);
}
