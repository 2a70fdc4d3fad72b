/* Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers:
 * as easy as 1, 2, 3", SC 2011) and the uniform, normal and sign fills on
 * top of it.
 *
 * Speed comes from doing RNG_BATCH blocks at a time in structure-of-arrays
 * form: every round is then the same arithmetic on RNG_BATCH independent
 * lanes, and the Box-Muller transform uses the branch-free polynomial
 * log/sin/cos of vmath.h, so both vectorize.  Two code paths share that
 * structure: a portable one in plain C left to the auto-vectorizer, and on
 * x86-64 an AVX2 one chosen at run time.  The auto-vectorizer turns the
 * 32x32->64 bit multiplies of Philox into long shuffle sequences, so the
 * AVX2 path writes the rounds with intrinsics (even/odd lane multiplies
 * and blends); its float stages are the same C code compiled for AVX2.
 * Neither path enables fused multiply-add, and the build's ISO C mode
 * (-std=c11) turns off contraction, so both round identically and give
 * the same bits (the tests check this).
 *
 * Word-to-value mappings (w is one 32-bit Philox output word):
 *   uniform  u = (w >> 9) 2^-23 + 2^-24: the top 23 bits of the word,
 *            centred in their cell; 2^23 values in [2^-24, 1 - 2^-24], all
 *            exact in float (a 24-bit mapping would round its top value
 *            to 1).
 *   normal   radius from lane 0 (resp. 2): v = ((float)(w >> 1) + 1/2) 2^-31
 *            in [2^-32, 1] (rounding of the conversion can reach 1, giving
 *            radius 0), r = sqrt(-2 ln v) <= sqrt(64 ln 2) = 6.66; angle
 *            from lane 1 (resp. 3): the top 2 bits pick a quadrant q, the
 *            next 23 bits a point x centred in one of 2^23 cells of
 *            (-pi/4, pi/4), and theta = q pi/2 + x is uniform over a full
 *            turn; the pair is (r cos theta, r sin theta), with ln, sin and
 *            cos from vmath.h (the tests bound the difference from a libm
 *            double evaluation by 1e-6 (1 + |z|)).
 *   sign     the top bit of the word: set gives -1, clear gives +1. */
#include "rng.h"

#include <math.h>
#include <string.h>

#include "vmath.h"

#include "cpu.h"
#if CPU_HAVE_AVX2_PATH
#include <immintrin.h>
#endif

/* The shared stages are inlined into each code path so that each is
 * vectorized for that path's instruction set. */
#if defined(__GNUC__) || defined(__clang__)
#define RNG_INLINE static inline __attribute__((always_inline))
#else
#define RNG_INLINE static inline
#endif

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define PHILOX_ROUNDS 10

/* Blocks per batch: enough for the vector loops to amortize their setup,
 * small enough for the lane arrays to stay in L1. */
#define RNG_BATCH 64

void rng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                       uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* The four output words of RNG_BATCH consecutive blocks, lane-major:
 * w[l][j] is lane l of block block0 + j. */
typedef struct philox_lanes {
    uint32_t w[4][RNG_BATCH];
} philox_lanes;

/* Round keys: the key bumped by the Weyl constants between rounds. */
static void philox_round_keys(uint64_t seed, uint32_t ka[PHILOX_ROUNDS],
                              uint32_t kb[PHILOX_ROUNDS])
{
    ka[0] = (uint32_t)seed;
    kb[0] = (uint32_t)(seed >> 32);
    for (int r = 1; r < PHILOX_ROUNDS; r++) {
        ka[r] = ka[r - 1] + PHILOX_W0;
        kb[r] = kb[r - 1] + PHILOX_W1;
    }
}

/* One round on scalar lanes c0..c3 with round key (ka, kb). */
#define PHILOX_ROUND(ka, kb)                                                 \
    do {                                                                     \
        uint64_t p0_ = (uint64_t)PHILOX_M0 * c0;                             \
        uint64_t p1_ = (uint64_t)PHILOX_M1 * c2;                             \
        c0 = (uint32_t)(p1_ >> 32) ^ c1 ^ (ka);                              \
        c2 = (uint32_t)(p0_ >> 32) ^ c3 ^ (kb);                              \
        c1 = (uint32_t)p1_;                                                  \
        c3 = (uint32_t)p0_;                                                  \
    } while (0)

/* Portable path.  All ten rounds are written out so that each block's
 * state stays in registers and the loop over blocks is the one that
 * vectorizes. */
static void philox_batch_portable(uint64_t seed, uint64_t stream,
                                  uint64_t block0, philox_lanes *out)
{
    uint32_t ka[PHILOX_ROUNDS], kb[PHILOX_ROUNDS];
    philox_round_keys(seed, ka, kb);
    const uint32_t s0 = (uint32_t)stream, s1 = (uint32_t)(stream >> 32);
    for (int j = 0; j < RNG_BATCH; j++) {
        uint64_t b = block0 + (uint64_t)j;
        uint32_t c0 = (uint32_t)b, c1 = (uint32_t)(b >> 32), c2 = s0, c3 = s1;
        PHILOX_ROUND(ka[0], kb[0]);
        PHILOX_ROUND(ka[1], kb[1]);
        PHILOX_ROUND(ka[2], kb[2]);
        PHILOX_ROUND(ka[3], kb[3]);
        PHILOX_ROUND(ka[4], kb[4]);
        PHILOX_ROUND(ka[5], kb[5]);
        PHILOX_ROUND(ka[6], kb[6]);
        PHILOX_ROUND(ka[7], kb[7]);
        PHILOX_ROUND(ka[8], kb[8]);
        PHILOX_ROUND(ka[9], kb[9]);
        out->w[0][j] = c0;
        out->w[1][j] = c1;
        out->w[2][j] = c2;
        out->w[3][j] = c3;
    }
}

#if CPU_HAVE_AVX2_PATH
/* hi:lo = x * m on eight 32-bit lanes: vpmuludq multiplies the even lanes,
 * the odd ones are shifted down for a second multiply, and blends put the
 * halves back in lane order. */
#define AVX2_MULHILO(x, m, hi, lo)                                           \
    do {                                                                     \
        __m256i pe_ = _mm256_mul_epu32((x), (m));                            \
        __m256i po_ = _mm256_mul_epu32(_mm256_srli_epi64((x), 32), (m));     \
        (hi) = _mm256_blend_epi32(_mm256_srli_epi64(pe_, 32), po_, 0xAA);    \
        (lo) = _mm256_blend_epi32(pe_, _mm256_slli_epi64(po_, 32), 0xAA);    \
    } while (0)

#define AVX2_ROUND(c0, c1, c2, c3, ka, kb)                                   \
    do {                                                                     \
        __m256i h0_, l0_, h1_, l1_;                                          \
        AVX2_MULHILO(c0, m0, h0_, l0_);                                      \
        AVX2_MULHILO(c2, m1, h1_, l1_);                                      \
        c0 = _mm256_xor_si256(_mm256_xor_si256(h1_, c1), (ka));              \
        c2 = _mm256_xor_si256(_mm256_xor_si256(h0_, c3), (kb));              \
        c1 = l1_;                                                            \
        c3 = l0_;                                                            \
    } while (0)

/* Sixteen blocks per iteration in two independent groups of eight, so one
 * group's multiplies overlap the other's latency. */
CPU_TARGET_AVX2 static void philox_batch_avx2(uint64_t seed, uint64_t stream,
                                              uint64_t block0,
                                              philox_lanes *out)
{
    uint32_t ka[PHILOX_ROUNDS], kb[PHILOX_ROUNDS];
    philox_round_keys(seed, ka, kb);
    const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0);
    const __m256i m1 = _mm256_set1_epi32((int)PHILOX_M1);
    const __m256i s0 = _mm256_set1_epi32((int)(uint32_t)stream);
    const __m256i s1 = _mm256_set1_epi32((int)(uint32_t)(stream >> 32));
    for (int j = 0; j < RNG_BATCH; j += 16) {
        uint32_t lo[16], hi[16];
        for (int t = 0; t < 16; t++) {
            uint64_t b = block0 + (uint64_t)(j + t);
            lo[t] = (uint32_t)b;
            hi[t] = (uint32_t)(b >> 32);
        }
        __m256i a0 = _mm256_loadu_si256((const __m256i *)lo);
        __m256i a1 = _mm256_loadu_si256((const __m256i *)hi);
        __m256i a2 = s0, a3 = s1;
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(lo + 8));
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(hi + 8));
        __m256i b2 = s0, b3 = s1;
        for (int r = 0; r < PHILOX_ROUNDS; r++) {
            __m256i kav = _mm256_set1_epi32((int)ka[r]);
            __m256i kbv = _mm256_set1_epi32((int)kb[r]);
            AVX2_ROUND(a0, a1, a2, a3, kav, kbv);
            AVX2_ROUND(b0, b1, b2, b3, kav, kbv);
        }
        _mm256_storeu_si256((__m256i *)&out->w[0][j], a0);
        _mm256_storeu_si256((__m256i *)&out->w[1][j], a1);
        _mm256_storeu_si256((__m256i *)&out->w[2][j], a2);
        _mm256_storeu_si256((__m256i *)&out->w[3][j], a3);
        _mm256_storeu_si256((__m256i *)&out->w[0][j + 8], b0);
        _mm256_storeu_si256((__m256i *)&out->w[1][j + 8], b1);
        _mm256_storeu_si256((__m256i *)&out->w[2][j + 8], b2);
        _mm256_storeu_si256((__m256i *)&out->w[3][j + 8], b3);
    }
}
#endif

/* Box-Muller on one lane pair (radius word, angle word) for the batch. */
RNG_INLINE void box_muller(const uint32_t *restrict wr,
                           const uint32_t *restrict wa, float *restrict zc,
                           float *restrict zs)
{
    /* pi/2 divided into 2^23 cells */
    const float cell = (float)(1.5707963267948966 / 8388608.0);
    for (int j = 0; j < RNG_BATCH; j++) {
        float v = ((float)(int32_t)(wr[j] >> 1) + 0.5f) * 0x1p-31f;
        float r = sqrtf(-2.0f * vmath_log(v));
        uint32_t a = wa[j];
        float x =
            ((float)(int32_t)((a >> 7) & 0x7fffffu) - 4194303.5f) * cell;
        float c = vmath_cos_red(x), s = vmath_sin_red(x);
        /* rotate (cos x, sin x) by q quarter turns: odd q swaps the two,
         * and the sign bits follow the quadrant */
        uint32_t q = a >> 30;
        float u = (q & 1u) ? s : c;
        float w = (q & 1u) ? c : s;
        uint32_t neg_c = ((q + 1u) & 2u) << 30; /* q = 1, 2 */
        uint32_t neg_s = (q & 2u) << 30;        /* q = 2, 3 */
        zc[j] = r * vmath_u2f(vmath_f2u(u) ^ neg_c);
        zs[j] = r * vmath_u2f(vmath_f2u(w) ^ neg_s);
    }
}

RNG_INLINE float uniform_of(uint32_t w)
{
    return (float)(int32_t)(w >> 9) * 0x1p-23f + 0x1p-24f;
}

RNG_INLINE float sign_of(uint32_t w)
{
    return vmath_u2f(0x3f800000u | (w & 0x80000000u));
}

/* The values of a batch in stream order (4 per block).  The four lanes
 * are written out explicitly so that the interleaving store is one
 * vectorizable statement group. */
RNG_INLINE void batch_values(enum rng_dist dist, const philox_lanes *L,
                             float *restrict buf)
{
    const uint32_t *w0 = L->w[0], *w1 = L->w[1], *w2 = L->w[2],
                   *w3 = L->w[3];
    switch (dist) {
    case RNG_DIST_UNIFORM:
        for (int j = 0; j < RNG_BATCH; j++) {
            buf[4 * j + 0] = uniform_of(w0[j]);
            buf[4 * j + 1] = uniform_of(w1[j]);
            buf[4 * j + 2] = uniform_of(w2[j]);
            buf[4 * j + 3] = uniform_of(w3[j]);
        }
        break;
    case RNG_DIST_NORMAL: {
        float z0[RNG_BATCH], z1[RNG_BATCH], z2[RNG_BATCH], z3[RNG_BATCH];
        box_muller(w0, w1, z0, z1);
        box_muller(w2, w3, z2, z3);
        for (int j = 0; j < RNG_BATCH; j++) {
            buf[4 * j + 0] = z0[j];
            buf[4 * j + 1] = z1[j];
            buf[4 * j + 2] = z2[j];
            buf[4 * j + 3] = z3[j];
        }
        break;
    }
    case RNG_DIST_SIGN:
        for (int j = 0; j < RNG_BATCH; j++) {
            buf[4 * j + 0] = sign_of(w0[j]);
            buf[4 * j + 1] = sign_of(w1[j]);
            buf[4 * j + 2] = sign_of(w2[j]);
            buf[4 * j + 3] = sign_of(w3[j]);
        }
        break;
    }
}

static void fill_batch_portable(enum rng_dist dist, uint64_t seed,
                                uint64_t stream, uint64_t block0, float *buf)
{
    philox_lanes L;
    philox_batch_portable(seed, stream, block0, &L);
    batch_values(dist, &L, buf);
}

#if CPU_HAVE_AVX2_PATH
CPU_TARGET_AVX2 static void fill_batch_avx2(enum rng_dist dist, uint64_t seed,
                                            uint64_t stream, uint64_t block0,
                                            float *buf)
{
    philox_lanes L;
    philox_batch_avx2(seed, stream, block0, &L);
    batch_values(dist, &L, buf);
}
#endif

static enum rng_impl resolve_impl(enum rng_impl impl)
{
#if CPU_HAVE_AVX2_PATH
    if (impl != RNG_IMPL_PORTABLE && cpu_has_avx2())
        return RNG_IMPL_AVX2;
#endif
    (void)impl;
    return RNG_IMPL_PORTABLE;
}

enum rng_impl rng_fill_impl(enum rng_impl impl, enum rng_dist dist,
                            uint64_t seed, uint64_t stream, uint64_t offset,
                            size_t n, float *out)
{
    const uint64_t per_batch = 4 * (uint64_t)RNG_BATCH;
    float buf[4 * RNG_BATCH];
    impl = resolve_impl(impl);
    /* Whole batches go straight to `out`, partial ones at either end
     * through `buf`; each element is computed from its own block only,
     * so the split cannot change a value. */
    while (n > 0) {
        uint64_t block0 = offset / 4;
        size_t skip = (size_t)(offset % 4);
        size_t take = (size_t)per_batch - skip;
        if (take > n)
            take = n;
        float *dst = (skip == 0 && take == per_batch) ? out : buf;
#if CPU_HAVE_AVX2_PATH
        if (impl == RNG_IMPL_AVX2)
            fill_batch_avx2(dist, seed, stream, block0, dst);
        else
#endif
            fill_batch_portable(dist, seed, stream, block0, dst);
        if (dst == buf)
            memcpy(out, buf + skip, take * sizeof *out);
        out += take;
        offset += take;
        n -= take;
    }
    return impl;
}

const char *rng_impl_name(enum rng_impl impl)
{
    switch (impl) {
    case RNG_IMPL_AUTO: return "auto";
    case RNG_IMPL_PORTABLE: return "portable";
    case RNG_IMPL_AVX2: return "avx2";
    }
    return "unknown";
}

void rng_uniform_fill(uint64_t seed, uint64_t stream, uint64_t offset,
                      size_t n, float *out)
{
    rng_fill_impl(RNG_IMPL_AUTO, RNG_DIST_UNIFORM, seed, stream, offset, n,
                  out);
}

void rng_normal_fill(uint64_t seed, uint64_t stream, uint64_t offset,
                     size_t n, float *out)
{
    rng_fill_impl(RNG_IMPL_AUTO, RNG_DIST_NORMAL, seed, stream, offset, n,
                  out);
}

void rng_sign_fill(uint64_t seed, uint64_t stream, uint64_t offset, size_t n,
                   float *out)
{
    rng_fill_impl(RNG_IMPL_AUTO, RNG_DIST_SIGN, seed, stream, offset, n, out);
}
