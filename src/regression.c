/* Regression refusal: a rule on the width of one part's central predictive
 * interval, width = 2 z sqrt(variance part), z = Phi^-1((1 + level) / 2),
 * and its calibration on validation records with their targets. */
#include <math.h>
#include <string.h>

#include "eval.h"
#include "internal.h"

/* Phi^-1(p) for p in [0.5, 1): Acklam's rational approximation (relative
 * error 1.2e-9), then one Halley step on erfc, which leaves the double's
 * rounding. */
static double normal_quantile(double p)
{
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                               2.445134137142996e+00, 3.754408661907416e+00};
    double x;
    if (p <= 0.97575) {
        double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    } else {
        double q = sqrt(-2.0 * log(1.0 - p));
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    }
    /* e = Phi(x) - p = erfc(-x / sqrt 2) / 2 - p; Halley's step */
    double e = 0.5 * erfc(-x / 1.4142135623730951) - p;
    double u = e * 2.5066282746310002 * exp(0.5 * x * x);
    return x - u / (1.0 + 0.5 * x * u);
}

/* The one width both functions compute, so a calibrated threshold accepts
 * exactly the records it counted. */
static float interval_width(const bnn_regression_prediction *r, bnn_interval_part part,
                            double z)
{
    float v = part == BNN_INTERVAL_TOTAL       ? r->variance
              : part == BNN_INTERVAL_ALEATORIC ? r->aleatoric
                                               : r->epistemic;
    return (float)(2.0 * z * sqrt((double)v));
}

static bnn_status check_common(const char *fn, const void *records, size_t rs, size_t n,
                               size_t need, bnn_interval_part part, float level)
{
    size_t tmp;
    if (!records)
        return error_set(BNN_E_INVALID, "%s: records is NULL", fn);
    if (n == 0)
        return error_set(BNN_E_INVALID, "%s: n is 0", fn);
    if (rs < need)
        return error_set(BNN_E_INVALID, "%s: record_size %zu is below %zu", fn, rs, need);
    if (part != BNN_INTERVAL_TOTAL && part != BNN_INTERVAL_ALEATORIC &&
        part != BNN_INTERVAL_EPISTEMIC)
        return error_set(BNN_E_INVALID, "%s: unknown interval part %d", fn, (int)part);
    if (!(level > 0.0f && level < 1.0f))
        return error_set(BNN_E_INVALID, "%s: level %g is not in (0, 1)", fn, (double)level);
    if (mem_mul_overflow(n, rs, &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * record_size overflows", fn);
    return BNN_OK;
}

static void load(const unsigned char *src, bnn_regression_prediction *r)
{
    memcpy(r, src, SIZED_END(bnn_regression_prediction, epistemic));
}

BNN_API bnn_status bnn_regression_refusal_apply(bnn_regression_prediction *records,
                                                size_t record_size, size_t n,
                                                bnn_interval_part part, float level,
                                                float threshold)
{
    API_ENTRY();
    static const char fn[] = "bnn_regression_refusal_apply";
    bnn_status st = check_common(fn, records, record_size, n,
                                 SIZED_END(bnn_regression_prediction, refused), part, level);
    if (st != BNN_OK)
        return st;
    if (!(threshold >= 0.0f))
        return error_set(BNN_E_INVALID, "%s: threshold %g is NaN or negative", fn,
                         (double)threshold);
    double z = normal_quantile(0.5 + 0.5 * (double)level);
    unsigned char *base = (unsigned char *)records;
    for (size_t i = 0; i < n; i++) {
        bnn_regression_prediction r;
        load(base + i * record_size, &r);
        /* NaN fails the comparison: refused */
        int32_t refused = !(interval_width(&r, part, z) <= threshold);
        memcpy(base + i * record_size + offsetof(bnn_regression_prediction, refused), &refused,
               sizeof refused);
    }
    return BNN_OK;
}

BNN_API void bnn_regression_calibration_init(bnn_regression_calibration *c)
{
    if (c)
        *c = (bnn_regression_calibration){.struct_size = sizeof *c};
}

static int record_ok(const bnn_regression_prediction *r)
{
    return isfinite(r->mean) && r->variance >= 0.0f && r->aleatoric >= 0.0f &&
           r->epistemic >= 0.0f && isfinite(r->variance) && isfinite(r->aleatoric) &&
           isfinite(r->epistemic);
}

BNN_API bnn_status bnn_regression_refusal_calibrate(const bnn_regression_prediction *records,
                                                    size_t record_size, const float *targets,
                                                    size_t n, bnn_interval_part part,
                                                    float level, bnn_regression_target target,
                                                    double value,
                                                    bnn_regression_calibration *out)
{
    API_ENTRY();
    static const char fn[] = "bnn_regression_refusal_calibrate";
    bnn_status st = check_common(fn, records, record_size, n,
                                 SIZED_END(bnn_regression_prediction, epistemic), part, level);
    if (st != BNN_OK)
        return st;
    if (!targets || !out)
        return error_set(BNN_E_INVALID, "%s: targets and out must not be NULL", fn);
    if ((st = sized_check(out, SIZED_END(bnn_regression_calibration, coverage),
                          "bnn_regression_calibration")) != BNN_OK)
        return st;
    if (target == BNN_REGRESSION_CALIBRATE_COVERAGE) {
        if (!(value > 0.0 && value <= 1.0))
            return error_set(BNN_E_INVALID, "%s: coverage target %g is not in (0, 1]", fn,
                             value);
    } else if (target == BNN_REGRESSION_CALIBRATE_RMSE) {
        if (!(isfinite(value) && value > 0.0))
            return error_set(BNN_E_INVALID, "%s: RMSE target %g is not finite and > 0", fn,
                             value);
    } else {
        return error_set(BNN_E_INVALID, "%s: unknown target %d", fn, (int)target);
    }
    double z = normal_quantile(0.5 + 0.5 * (double)level);
    const unsigned char *base = (const unsigned char *)records;
    for (size_t i = 0; i < n; i++) {
        bnn_regression_prediction r;
        load(base + i * record_size, &r);
        if (!record_ok(&r))
            return error_set(BNN_E_INVALID, "%s: record %zu has a non-finite mean or a "
                             "variance that is not finite and >= 0", fn, i);
        if (!isfinite(targets[i]))
            return error_set(BNN_E_INVALID, "%s: targets[%zu] is not finite", fn, i);
    }

    bnn_allocator al = mem_default_allocator();
    size_t *idx = mem_alloc_array(&al, n, sizeof *idx);
    size_t *tmpi = mem_alloc_array(&al, n, sizeof *tmpi);
    float *key = mem_alloc_array(&al, n, sizeof *key);
    if (!idx || !tmpi || !key) {
        mem_free(&al, idx);
        mem_free(&al, tmpi);
        mem_free(&al, key);
        return error_set(BNN_E_NOMEM, "%s: cannot sort %zu records", fn, n);
    }
    /* narrowest first: sort by decreasing -width (negation is exact) */
    for (size_t i = 0; i < n; i++) {
        bnn_regression_prediction r;
        load(base + i * record_size, &r);
        key[i] = -interval_width(&r, part, z);
        idx[i] = i;
    }
    eval_sort_desc(idx, tmpi, n, key);

    /* Cuts between distinct widths, in increasing accepted count k. */
    size_t best_k = 0, first_k = 0;
    double se = 0.0, best_se = 0.0, first_se = 0.0;
    for (size_t k = 1; k <= n; k++) {
        bnn_regression_prediction r;
        size_t i = idx[k - 1];
        load(base + i * record_size, &r);
        double e = (double)r.mean - (double)targets[i];
        se += e * e;
        if (k < n && key[idx[k]] == key[i])
            continue;
        if (!first_k) {
            first_k = k;
            first_se = se;
        }
        if (target == BNN_REGRESSION_CALIBRATE_RMSE) {
            if (sqrt(se / (double)k) <= value) {
                best_k = k; /* the largest such k wins */
                best_se = se;
            }
        } else if (!best_k && (double)k / (double)n >= value) {
            best_k = k;
            best_se = se;
        }
    }
    if (!best_k) {
        /* only an RMSE target can be missed: the strictest cut */
        best_k = first_k;
        best_se = first_se;
    }
    size_t inside = 0;
    for (size_t k = 0; k < best_k; k++) {
        bnn_regression_prediction r;
        size_t i = idx[k];
        load(base + i * record_size, &r);
        double half = z * sqrt((double)r.variance);
        inside += fabs((double)targets[i] - (double)r.mean) <= half;
    }
    bnn_regression_calibration c = {sizeof c, -key[idx[best_k - 1]],
                                    (double)best_k / (double)n,
                                    sqrt(best_se / (double)best_k),
                                    (double)inside / (double)best_k};
    mem_free(&al, idx);
    mem_free(&al, tmpi);
    mem_free(&al, key);
    sized_write(out, &c, sizeof c);
    return BNN_OK;
}
