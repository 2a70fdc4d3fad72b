/* vmath.h: the branch-free float approximations the kernels vectorize
 * (log, exp, expm1, log1p, sin and cos on the reduced range), each against
 * libm in double over dense sweeps of its domain. */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "testutil.h"
#include "vmath.h"

#define PI 3.14159265358979323846

typedef struct worst {
    double rel;
    double at;
} worst;

/* A nonzero result where the exact one is 0 counts as an infinite
 * relative error. */
static void track(worst *w, double got, double want, double x)
{
    double e = want == 0 ? (got == 0 ? 0 : INFINITY)
                         : fabs(got - want) / fabs(want);
    if (e > w->rel) {
        w->rel = e;
        w->at = x;
    }
}

#define ASSERT_WORST(w, bound, name)                                         \
    ck_assert_msg((w).rel < (bound), "%s: relative error %.3g at %.9g",     \
                  name, (w).rel, (w).at)

START_TEST(test_vmath_log)
{
    worst w = {0, 0};
    /* every 499th float of [2^-32, 1], the normal transform's domain */
    for (uint32_t b = 0x2f800000u; b <= 0x3f800000u; b += 499)
        track(&w, vmath_log(vmath_u2f(b)), log((double)vmath_u2f(b)),
              vmath_u2f(b));
    /* and the whole normal range, sparser */
    for (uint32_t b = 0x00800000u; b < 0x7f800000u; b += 4093)
        track(&w, vmath_log(vmath_u2f(b)), log((double)vmath_u2f(b)),
              vmath_u2f(b));
    ASSERT_WORST(w, 2.0e-7, "log");
    ck_assert(vmath_log(1.0f) == 0.0f);
}
END_TEST

START_TEST(test_vmath_exp_expm1_log1p)
{
    enum { N = 1 << 18 };
    worst we = {0, 0}, wm = {0, 0}, wl = {0, 0};
    for (int i = 0; i <= N; i++) {
        float x = (float)(-87.0 * i / N);
        track(&we, vmath_exp_nonpos(x), exp((double)x), x);
        float y = (float)(-30.0 * i / N);
        track(&wm, vmath_expm1_nonpos(y), expm1((double)y), y);
        float z = (float)((double)i / N);
        track(&wl, vmath_log1p(z), log1p((double)z), z);
    }
    /* tiny arguments, where e^x - 1 and log(1 + x) would cancel */
    for (int e = -126; e < -1; e++)
        for (int k = 0; k < 64; k++) {
            float t = ldexpf(1.0f + k / 64.0f, e);
            track(&wm, vmath_expm1_nonpos(-t), expm1(-(double)t), -t);
            track(&wl, vmath_log1p(t), log1p((double)t), t);
        }
    ASSERT_WORST(we, 1.5e-7, "exp");
    ASSERT_WORST(wm, 2.0e-7, "expm1");
    ASSERT_WORST(wl, 2.0e-7, "log1p");
    /* below the normal range: subnormal results, absolute accuracy */
    double worst_abs = 0;
    for (int i = 0; i <= 1000; i++) {
        float x = (float)(-87.4 - 17.0 * i / 1000);
        double err = fabs(vmath_exp_nonpos(x) - exp((double)x));
        worst_abs = err > worst_abs ? err : worst_abs;
    }
    ck_assert(worst_abs <= 2 * FLT_TRUE_MIN);
    ck_assert(vmath_exp_nonpos(-INFINITY) == 0.0f);
    ck_assert(vmath_exp_nonpos(0.0f) == 1.0f);
    ck_assert(isnan(vmath_exp_nonpos(NAN)) && isnan(vmath_log1p(NAN)));
}
END_TEST

START_TEST(test_vmath_sincos)
{
    enum { N = 1 << 18 };
    worst ws = {0, 0}, wc = {0, 0};
    for (int i = 0; i <= N; i++) {
        float x = (float)(PI / 4 * (2.0 * i / N - 1));
        track(&ws, vmath_sin_red(x), sin((double)x), x);
        track(&wc, vmath_cos_red(x), cos((double)x), x);
    }
    ASSERT_WORST(ws, 1.0e-7, "sin");
    ASSERT_WORST(wc, 1.5e-7, "cos");
    ck_assert(vmath_sin_red(0.0f) == 0.0f && vmath_cos_red(0.0f) == 1.0f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vmath");
    TCase *tv = tcase_create("accuracy");
    tcase_set_timeout(tv, 120);
    tcase_add_test(tv, test_vmath_log);
    tcase_add_test(tv, test_vmath_exp_expm1_log1p);
    tcase_add_test(tv, test_vmath_sincos);
    suite_add_tcase(s, tv);
    return tu_run(s);
}
