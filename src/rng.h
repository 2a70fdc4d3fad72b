/* Counter-based random numbers (Philox4x32-10).  Internal.
 *
 * Every value is a pure function of (seed, stream, index): element i of a
 * stream comes from Philox block i / 4, lane i % 4, with counter
 * {block_lo, block_hi, stream_lo, stream_hi} and key {seed_lo, seed_hi}.
 * So a fill of [offset, offset + n) gives the same numbers however the range
 * is split into calls, and any thread can produce any part of a stream. */
#ifndef BNN_RNG_H
#define BNN_RNG_H

#include <stddef.h>
#include <stdint.h>

/* One Philox4x32-10 block. */
void rng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                       uint32_t out[4]);

/* Uniforms in the open interval (0, 1). */
void rng_uniform_fill(uint64_t seed, uint64_t stream, uint64_t offset,
                      size_t n, float *out);
/* Standard normals (Box-Muller on the lane pairs (0,1) and (2,3) of each
 * block: element i still depends only on its block). */
void rng_normal_fill(uint64_t seed, uint64_t stream, uint64_t offset,
                     size_t n, float *out);
/* Random signs, +1.0f or -1.0f. */
void rng_sign_fill(uint64_t seed, uint64_t stream, uint64_t offset, size_t n,
                   float *out);

/* The fills above run on the fastest code path the CPU supports; every
 * path gives bit-identical numbers.  For tests and benchmarks the path can
 * be named explicitly. */
enum rng_dist { RNG_DIST_UNIFORM, RNG_DIST_NORMAL, RNG_DIST_SIGN };
enum rng_impl { RNG_IMPL_AUTO, RNG_IMPL_PORTABLE, RNG_IMPL_AVX2 };

/* Fill as rng_*_fill would, on path `impl` (RNG_IMPL_AUTO: the default
 * choice; a path this build or CPU lacks falls back to the portable one).
 * Returns the path actually taken, also for n == 0 (out may then be NULL). */
enum rng_impl rng_fill_impl(enum rng_impl impl, enum rng_dist dist,
                            uint64_t seed, uint64_t stream, uint64_t offset,
                            size_t n, float *out);
/* "portable", "avx2", ... */
const char *rng_impl_name(enum rng_impl impl);

#endif
