/* Float approximations of exp, log, log1p, expm1, sin and cos written as
 * straight-line arithmetic, so that loops calling them vectorize under
 * -O2 -ftree-vectorize without -ffast-math (libm calls block the
 * vectorizer).  Internal.
 *
 * Every function is pure float arithmetic plus bit casts: no branches, no
 * float-to-int conversions, NaN in gives NaN out.  Polynomials are truncated
 * Taylor series on a reduced interval, where the truncation error is far
 * below float rounding; what remains is the rounding of the float
 * evaluation.  Worst relative errors against double libm, as bounded by
 * tests/test_rng.c on dense grids (measured maxima in parentheses):
 *
 *   vmath_exp_nonpos   x in [-87, 0]               1.5e-7  (1.0e-7)
 *   vmath_expm1_nonpos x in [-30, 0]               2.0e-7  (1.6e-7)
 *   vmath_log          x normal, positive, finite  2.0e-7  (1.7e-7)
 *   vmath_log1p        x in [0, 1]                 2.0e-7  (1.7e-7)
 *   vmath_sin_red      x in [-pi/4, pi/4]          1.0e-7  (6.7e-8)
 *   vmath_cos_red      x in [-pi/4, pi/4]          1.5e-7  (9.3e-8)
 *
 * (Below exp's normal range, -87.3, results are subnormal and have the
 * absolute accuracy of the subnormal grid instead.) */
#ifndef BNN_VMATH_H
#define BNN_VMATH_H

#include <stdint.h>
#include <string.h>

static inline uint32_t vmath_f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float vmath_u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* c ? a : b by bit masks.  A plain ?: lets the compiler move each arm's
 * arithmetic into a branch of its own (or fold it against a constant
 * arm), which the vectorizer then cannot undo. */
static inline float vmath_select(int c, float a, float b)
{
    uint32_t m = 0u - (uint32_t)(c != 0);
    return vmath_u2f((vmath_f2u(a) & m) | (vmath_f2u(b) & ~m));
}

/* ln 2 split so that n * VMATH_LN2_HI is exact for |n| < 2^15. */
#define VMATH_LN2_HI 0.693359375f
#define VMATH_LN2_LO (-2.12194440e-4f)
#define VMATH_LOG2E 1.44269504f
/* Adding 1.5 * 2^23 rounds a float of magnitude < 2^22 to an integer and
 * leaves that integer in the low mantissa bits. */
#define VMATH_ROUND_MAGIC 12582912.0f
#define VMATH_ROUND_MAGIC_BITS 0x4B400000

/* e^x for x <= 0 (positive x is outside the contract).  x = n ln2 + r with
 * |r| <= ln2/2; e^r by its degree-7 Taylor polynomial (truncation < 6e-9);
 * 2^n applied as two factors so results down to the subnormal range need
 * no special case. */
static inline float vmath_exp_nonpos(float x)
{
    x = vmath_select(x < -104.0f, -104.0f, x); /* e^-104 rounds to 0 */
    float t = x * VMATH_LOG2E + VMATH_ROUND_MAGIC;
    int32_t n = (int32_t)vmath_f2u(t) - VMATH_ROUND_MAGIC_BITS;
    float nf = t - VMATH_ROUND_MAGIC;
    float r = x - nf * VMATH_LN2_HI;
    r = r - nf * VMATH_LN2_LO;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t n1 = n / 2, n2 = n - n1; /* each >= -76: normal powers of 2 */
    float s1 = vmath_u2f((uint32_t)(n1 + 127) << 23);
    float s2 = vmath_u2f((uint32_t)(n2 + 127) << 23);
    return p * s1 * s2;
}

/* e^x - 1 for x <= 0, accurate relative to the result near 0 where
 * e^x - 1 would cancel: Taylor degree 8 for x > -ln2/2 (truncation
 * < 2e-10 relative), plain e^x - 1 below, where the result is < -0.29. */
static inline float vmath_expm1_nonpos(float x)
{
    float p = 1.0f / 40320.0f;
    p = p * x + 1.0f / 5040.0f;
    p = p * x + 1.0f / 720.0f;
    p = p * x + 1.0f / 120.0f;
    p = p * x + 1.0f / 24.0f;
    p = p * x + 1.0f / 6.0f;
    p = p * x + 0.5f;
    p = p * x * x + x;
    float e = vmath_exp_nonpos(x) - 1.0f;
    return vmath_select(x > -0.3466f, p, e);
}

/* ln(1 + y) for y in [0, 1] as 2 atanh(s), s = y / (2 + y) <= 1/3: the
 * odd series in s through s^15 truncates below 2e-9 relative, and no
 * 1 + y is ever rounded, so tiny y keep full relative accuracy. */
static inline float vmath_log1p(float y)
{
    float s = y / (2.0f + y);
    float z = s * s;
    float p = 1.0f / 15.0f;
    p = p * z + 1.0f / 13.0f;
    p = p * z + 1.0f / 11.0f;
    p = p * z + 1.0f / 9.0f;
    p = p * z + 1.0f / 7.0f;
    p = p * z + 1.0f / 5.0f;
    p = p * z + 1.0f / 3.0f;
    return 2.0f * s + 2.0f * s * z * p;
}

/* ln x for positive, normal, finite x.  x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)); ln m = 2 atanh((m-1)/(m+1)) whose argument is
 * <= 0.172, so the series through s^9 truncates below 1e-9. */
static inline float vmath_log(float x)
{
    /* Offsetting the bits by 1 - sqrt(1/2) makes the exponent field step
     * at sqrt(1/2) instead of at 1. */
    uint32_t b = vmath_f2u(x) + (0x3f800000u - 0x3f3504f3u);
    float e = (float)((int32_t)(b >> 23) - 127);
    float m = vmath_u2f((b & 0x007fffffu) + 0x3f3504f3u);
    float f = m - 1.0f; /* exact */
    float s = f / (2.0f + f);
    float z = s * s;
    float p = 1.0f / 9.0f;
    p = p * z + 1.0f / 7.0f;
    p = p * z + 1.0f / 5.0f;
    p = p * z + 1.0f / 3.0f;
    float lnm = 2.0f * s + 2.0f * s * z * p;
    return e * VMATH_LN2_HI + (lnm + e * VMATH_LN2_LO);
}

/* sin x and cos x for |x| <= pi/4: Taylor through x^9 and x^10
 * (truncation < 2e-9 and < 1.2e-10). */
static inline float vmath_sin_red(float x)
{
    float z = x * x;
    float p = 1.0f / 362880.0f;
    p = p * z - 1.0f / 5040.0f;
    p = p * z + 1.0f / 120.0f;
    p = p * z - 1.0f / 6.0f;
    return x + x * z * p;
}

static inline float vmath_cos_red(float x)
{
    float z = x * x;
    float p = -1.0f / 3628800.0f;
    p = p * z + 1.0f / 40320.0f;
    p = p * z - 1.0f / 720.0f;
    p = p * z + 1.0f / 24.0f;
    p = p * z - 0.5f;
    return 1.0f + z * p;
}

#endif
