/* rng.c: Philox4x32-10 known answers, the documented word-to-value
 * mappings (bit-exact, rebuilt here from the scalar block function), the
 * equality of all code paths, chunking invariance, statistics of the
 * fills (moments, Kolmogorov-Smirnov), and the accuracy of the vmath.h
 * approximations the normal transform relies on. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "testutil.h"
#include "vmath.h"

#define PI 3.14159265358979323846

/* Asymptotic Kolmogorov-Smirnov critical value at alpha = 0.001:
 * sqrt(-ln(alpha / 2) / 2). */
#define KS_C_0001 1.94947

/* ---- known answers ------------------------------------------------------ */

START_TEST(test_philox_known_answers)
{
    /* Random123's kat_vectors, philox4x32 with 10 rounds */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822,
         0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int t = 0; t < 3; t++) {
        uint32_t out[4];
        rng_philox4x32_10(kat[t], kat[t] + 4, out);
        for (int l = 0; l < 4; l++)
            ck_assert_msg(out[l] == kat[t][6 + l],
                          "vector %d lane %d: %08x, expected %08x", t, l,
                          out[l], kat[t][6 + l]);
    }
}
END_TEST

/* ---- the documented mappings, rebuilt from single blocks ---------------- */

static uint32_t word_at(uint64_t seed, uint64_t stream, uint64_t i)
{
    uint64_t b = i / 4;
    uint32_t ctr[4] = {(uint32_t)b, (uint32_t)(b >> 32), (uint32_t)stream,
                       (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    rng_philox4x32_10(ctr, key, out);
    return out[i % 4];
}

static float uniform_map(uint32_t w)
{
    return (float)(w >> 9) * 0x1p-23f + 0x1p-24f;
}

/* Box-Muller radius and angle pieces as rng.c documents them. */
static float bm_v(uint32_t wr)
{
    return ((float)(int32_t)(wr >> 1) + 0.5f) * 0x1p-31f;
}
static float bm_x(uint32_t wa)
{
    const float cell = (float)(1.5707963267948966 / 8388608.0);
    return ((float)(int32_t)((wa >> 7) & 0x7fffffu) - 4194303.5f) * cell;
}

/* Element i of the normal stream, computed with the same float operations
 * the library documents (so bit-exact), and again in double with libm. */
static float normal_map(uint64_t seed, uint64_t stream, uint64_t i,
                        double *libm_value)
{
    uint64_t base = i & ~(uint64_t)1; /* lane pair (0,1) or (2,3) */
    uint32_t wr = word_at(seed, stream, base);
    uint32_t wa = word_at(seed, stream, base + 1);
    float v = bm_v(wr), x = bm_x(wa);
    unsigned q = wa >> 30;
    float r = sqrtf(-2.0f * vmath_log(v));
    float c = vmath_cos_red(x), s = vmath_sin_red(x);
    float cq[4] = {c, -s, -c, s}, sq[4] = {s, c, -s, -c};
    double theta = q * (PI / 2) + (double)x;
    double rd = sqrt(-2.0 * log((double)v));
    *libm_value = (i % 2 == 0 ? cos(theta) : sin(theta)) * rd;
    return r * (i % 2 == 0 ? cq[q] : sq[q]);
}

static const enum rng_impl all_impls[] = {RNG_IMPL_AUTO, RNG_IMPL_PORTABLE,
                                          RNG_IMPL_AVX2};

START_TEST(test_uniform_and_sign_mapping)
{
    /* offsets near 2^34 make the block index cross 2^32 (counter word 1) */
    static const uint64_t offs[] = {0, 3, 1000001, (1ull << 34) - 37,
                                    0xfffffffffff0ull};
    uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull;
    float u[300], sg[300];
    for (size_t o = 0; o < sizeof offs / sizeof offs[0]; o++)
        for (size_t p = 0; p < 3; p++) {
            rng_fill_impl(all_impls[p], RNG_DIST_UNIFORM, seed, stream,
                          offs[o], 300, u);
            rng_fill_impl(all_impls[p], RNG_DIST_SIGN, seed, stream, offs[o],
                          300, sg);
            size_t bad_u = 0, bad_s = 0;
            for (uint64_t k = 0; k < 300; k++) {
                uint32_t w = word_at(seed, stream, offs[o] + k);
                bad_u += u[k] != uniform_map(w);
                bad_s += sg[k] != ((w >> 31) ? -1.0f : 1.0f);
            }
            ck_assert_msg(bad_u == 0 && bad_s == 0,
                          "offset %llu path %zu: %zu uniforms, %zu signs "
                          "differ from the mapping",
                          (unsigned long long)offs[o], p, bad_u, bad_s);
        }
    /* the mapping's extremes stay strictly inside (0, 1) */
    ck_assert(uniform_map(0) == 0x1p-24f);
    ck_assert(uniform_map(0xffffffffu) == 1.0f - 0x1p-24f);
    ck_assert(uniform_map(0xffffffffu) < 1.0f);
}
END_TEST

START_TEST(test_normal_mapping)
{
    static const uint64_t offs[] = {0, 1, 2, 77, (1ull << 34) - 5};
    uint64_t seed = 987654321, stream = 0x500000003ull;
    float z[260];
    double worst = 0;
    for (size_t o = 0; o < sizeof offs / sizeof offs[0]; o++)
        for (size_t p = 0; p < 3; p++) {
            rng_fill_impl(all_impls[p], RNG_DIST_NORMAL, seed, stream,
                          offs[o], 260, z);
            size_t bad = 0;
            for (uint64_t k = 0; k < 260; k++) {
                double libm;
                float want = normal_map(seed, stream, offs[o] + k, &libm);
                bad += z[k] != want;
                double err = fabs(z[k] - libm) / (1 + fabs(libm));
                if (err > worst)
                    worst = err;
            }
            ck_assert_msg(bad == 0,
                          "offset %llu path %zu: %zu normals differ from the "
                          "mapping",
                          (unsigned long long)offs[o], p, bad);
        }
    /* the polynomial log/sin/cos cost no more than a few float ulps */
    ck_assert_msg(worst < 1e-6, "normal vs libm Box-Muller: %g", worst);
}
END_TEST

START_TEST(test_paths_identical)
{
    /* every path gives the same bits over a long range with odd ends */
    enum { N = 20011 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    for (int d = 0; d < 3; d++) {
        rng_fill_impl(RNG_IMPL_PORTABLE, (enum rng_dist)d, 42, 9, 13, N, a);
        enum rng_impl used =
            rng_fill_impl(RNG_IMPL_AVX2, (enum rng_dist)d, 42, 9, 13, N, b);
        ck_assert(used == RNG_IMPL_AVX2 || used == RNG_IMPL_PORTABLE);
        ck_assert(memcmp(a, b, N * sizeof *a) == 0);
    }
    ck_assert(rng_fill_impl(RNG_IMPL_PORTABLE, RNG_DIST_NORMAL, 1, 1, 0, 0,
                            NULL) == RNG_IMPL_PORTABLE);
    ck_assert_str_eq(rng_impl_name(RNG_IMPL_PORTABLE), "portable");
    ck_assert_str_eq(rng_impl_name(RNG_IMPL_AVX2), "avx2");
    free(a);
    free(b);
}
END_TEST

/* ---- chunking ----------------------------------------------------------- */

START_TEST(test_chunking_invariance)
{
    enum { N = 3001 };
    tu_rng r = {7};
    float *whole = malloc(N * sizeof *whole), *parts = malloc(N * sizeof *parts);
    static const uint64_t offs[] = {0, 1, 2, 3, 5, 1023, (1ull << 34) - 999};
    for (int d = 0; d < 3; d++)
        for (size_t o = 0; o < sizeof offs / sizeof offs[0]; o++) {
            rng_fill_impl(RNG_IMPL_AUTO, (enum rng_dist)d, 5, 6, offs[o], N,
                          whole);
            for (int rep = 0; rep < 4; rep++) {
                memset(parts, 0, N * sizeof *parts);
                size_t done = 0;
                while (done < N) {
                    /* pieces of 0..3 (partial blocks) or up to 700 */
                    size_t len = tu_next(&r) % 2 ? tu_next(&r) % 4
                                                 : tu_next(&r) % 700;
                    if (len > N - done)
                        len = N - done;
                    if (d == 0)
                        rng_uniform_fill(5, 6, offs[o] + done, len,
                                         parts + done);
                    else if (d == 1)
                        rng_normal_fill(5, 6, offs[o] + done, len,
                                        parts + done);
                    else
                        rng_sign_fill(5, 6, offs[o] + done, len,
                                      parts + done);
                    done += len;
                }
                ck_assert_msg(memcmp(whole, parts, N * sizeof *whole) == 0,
                              "dist %d offset %llu: split fill differs", d,
                              (unsigned long long)offs[o]);
            }
        }
    /* n == 0 writes nothing */
    float guard = 3.5f;
    rng_normal_fill(5, 6, 0, 0, &guard);
    ck_assert(guard == 3.5f);
    free(whole);
    free(parts);
}
END_TEST

/* ---- seeds and streams -------------------------------------------------- */

static size_t count_equal(const float *a, const float *b, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += a[i] == b[i];
    return c;
}

START_TEST(test_streams_and_seeds_differ)
{
    enum { N = 4096 };
    float *base = malloc(N * sizeof *base), *other = malloc(N * sizeof *other);
    rng_uniform_fill(1, 1, 0, N, base);
    /* each differs from (seed 1, stream 1) in one field, low or high word */
    const uint64_t variants[][2] = {
        {2, 1}, {1, 2}, {1 | (1ull << 32), 1}, {1, 1 | (1ull << 32)},
        {1, 1ull << 63}, {1ull << 63 | 1, 1}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        rng_uniform_fill(variants[v][0], variants[v][1], 0, N, other);
        /* 2^23 possible values: a handful of chance coincidences at most */
        ck_assert_msg(count_equal(base, other, N) < 8, "variant %zu", v);
    }
    /* different offsets of one stream do not repeat each other */
    rng_uniform_fill(1, 1, N, N, other);
    ck_assert(count_equal(base, other, N) < 8);
    free(base);
    free(other);
}
END_TEST

/* ---- statistics ----------------------------------------------------------- */

START_TEST(test_normal_moments)
{
    enum { N = 1000000 };
    float *z = malloc(N * sizeof *z);
    rng_normal_fill(2024, 11, 0, N, z);
    double m1 = 0;
    float zmax = 0;
    for (int i = 0; i < N; i++) {
        m1 += z[i];
        if (fabsf(z[i]) > zmax)
            zmax = fabsf(z[i]);
    }
    m1 /= N;
    double m2 = 0, m3 = 0, m4 = 0;
    for (int i = 0; i < N; i++) {
        double d = z[i] - m1, d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
    }
    m2 /= N;
    m3 /= N;
    m4 /= N;
    double skew = m3 / pow(m2, 1.5), kurt = m4 / (m2 * m2) - 3;
    /* five standard errors: sqrt(1/N), sqrt(2/N), sqrt(6/N), sqrt(24/N) */
    ck_assert_msg(fabs(m1) < 5 * sqrt(1.0 / N), "mean %g", m1);
    ck_assert_msg(fabs(m2 - 1) < 5 * sqrt(2.0 / N), "variance %g", m2);
    ck_assert_msg(fabs(skew) < 5 * sqrt(6.0 / N), "skewness %g", skew);
    ck_assert_msg(fabs(kurt) < 5 * sqrt(24.0 / N), "excess kurtosis %g", kurt);
    /* the largest radius the mapping can produce is sqrt(64 ln 2) */
    ck_assert(zmax <= 6.6605f && zmax > 4.0f);
    free(z);
}
END_TEST

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov statistic of sorted x against cdf. */
static double ks_stat(float *x, size_t n, double (*cdf)(double))
{
    qsort(x, n, sizeof *x, cmp_float);
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double f = cdf(x[i]);
        double lo = f - (double)i / n, hi = (double)(i + 1) / n - f;
        if (lo > d)
            d = lo;
        if (hi > d)
            d = hi;
    }
    return d;
}

static double normal_cdf(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

static double uniform_cdf(double x)
{
    return x < 0 ? 0 : x > 1 ? 1 : x;
}

START_TEST(test_ks_normal_and_uniform)
{
    enum { N = 100000 };
    float *x = malloc(N * sizeof *x);
    double crit = KS_C_0001 / sqrt((double)N);
    static const uint64_t seeds[] = {1, 99, 123456789};
    for (size_t s = 0; s < 3; s++) {
        rng_normal_fill(seeds[s], 3, 17, N, x);
        double d = ks_stat(x, N, normal_cdf);
        ck_assert_msg(d < crit, "normal seed %llu: D = %g >= %g",
                      (unsigned long long)seeds[s], d, crit);
        rng_uniform_fill(seeds[s], 4, 5, N, x);
        d = ks_stat(x, N, uniform_cdf);
        ck_assert_msg(d < crit, "uniform seed %llu: D = %g >= %g",
                      (unsigned long long)seeds[s], d, crit);
    }
    /* the test has power: a normal sample scaled by 1.05 is rejected */
    rng_normal_fill(1, 3, 17, N, x);
    for (int i = 0; i < N; i++)
        x[i] *= 1.05f;
    ck_assert(ks_stat(x, N, normal_cdf) > crit);
    free(x);
}
END_TEST

START_TEST(test_uniform_range_and_mean)
{
    enum { N = 1000000 };
    float *u = malloc(N * sizeof *u);
    rng_uniform_fill(77, 0, 0, N, u);
    double sum = 0;
    float lo = 1, hi = 0;
    size_t outside = 0;
    for (int i = 0; i < N; i++) {
        outside += !(u[i] > 0.0f && u[i] < 1.0f);
        lo = u[i] < lo ? u[i] : lo;
        hi = u[i] > hi ? u[i] : hi;
        sum += u[i];
    }
    ck_assert_msg(outside == 0, "%zu uniforms outside (0, 1)", outside);
    ck_assert(lo < 1e-5f && hi > 1.0f - 1e-5f);
    /* mean 1/2, standard error sqrt(1/12 / N) */
    ck_assert(fabs(sum / N - 0.5) < 5 * sqrt(1.0 / 12 / N));
    free(u);
}
END_TEST

START_TEST(test_signs_balanced)
{
    enum { N = 1000000 };
    float *s = malloc(N * sizeof *s);
    rng_sign_fill(31337, 5, 3, N, s);
    long plus = 0;
    size_t other = 0;
    for (int i = 0; i < N; i++) {
        other += !(s[i] == 1.0f || s[i] == -1.0f);
        plus += s[i] > 0;
    }
    ck_assert_msg(other == 0, "%zu values are not +-1", other);
    /* Binomial(N, 1/2): standard deviation sqrt(N)/2 */
    ck_assert_msg(labs(2 * plus - N) < 5 * (long)sqrt((double)N),
                  "%ld of %d positive", plus, N);
    /* neighbours are not correlated (lag-1 products average to 0) */
    double lag = 0;
    for (int i = 1; i < N; i++)
        lag += s[i] * s[i - 1];
    ck_assert(fabs(lag / (N - 1)) < 5 / sqrt((double)N));
    free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rng");
    TCase *tk = tcase_create("philox");
    tcase_set_timeout(tk, 60);
    tcase_add_test(tk, test_philox_known_answers);
    tcase_add_test(tk, test_uniform_and_sign_mapping);
    tcase_add_test(tk, test_normal_mapping);
    tcase_add_test(tk, test_paths_identical);
    tcase_add_test(tk, test_chunking_invariance);
    tcase_add_test(tk, test_streams_and_seeds_differ);
    suite_add_tcase(s, tk);
    TCase *ts = tcase_create("statistics");
    tcase_set_timeout(ts, 120);
    tcase_add_test(ts, test_normal_moments);
    tcase_add_test(ts, test_ks_normal_and_uniform);
    tcase_add_test(ts, test_uniform_range_and_mean);
    tcase_add_test(ts, test_signs_balanced);
    suite_add_tcase(s, ts);
    return tu_run(s);
}
