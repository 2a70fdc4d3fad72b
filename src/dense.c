/* Dense layers for prediction whose results do not depend on batching.
 *
 * BLAS sgemm does not promise that one row of a product comes out the same
 * whatever the other rows are: OpenBLAS picks edge kernels and splits the
 * work between threads by the matrix shape, which changes the rounding
 * (measured: rows of a 784 -> 1024 product differ in their last bits
 * between n = 13 and n = 64, and with the row's position in a fixed-shape
 * call).  The predictor promises bit-identical results whatever the
 * chunking and batching of inputs, so it uses this kernel instead: every
 * output is the running sum over k = 0, 1, ... of the rounded products
 * W[j,k] h[k], starting from 0, followed by + b[j].  Vector lanes do
 * exactly those operations, so all code paths below give the same bits.
 *
 * Activations are packed in panels of DENSE_PANEL inputs: element k of
 * input r of panel p is at h[(p * width + k) * DENSE_PANEL + r], so the
 * inner loop reads DENSE_PANEL contiguous floats per k. */
#include <string.h>

#include "dense.h"

/* Separate multiply and add statements: an ISO C compiler may not fuse
 * them into one FMA across statements, which would change the rounding. */

#if defined(__GNUC__)

typedef float vf4 __attribute__((vector_size(16)));

/* Baseline SSE2 / NEON: 2 outputs x 16 inputs = 8 accumulators. */
static void dense_v4(const float *W, const float *b, size_t out, size_t in,
                     const float *h, float *y, size_t npan)
{
    for (size_t p = 0; p < npan; p++) {
        const float *hp = h + p * in * DENSE_PANEL;
        float *yp = y + p * out * DENSE_PANEL;
        size_t j = 0;
        for (; j + 2 <= out; j += 2) {
            const float *w0 = W + j * in, *w1 = w0 + in;
            vf4 a[8];
            memset(a, 0, sizeof a);
            for (size_t k = 0; k < in; k++) {
                vf4 x[4], s0, s1, t;
                memcpy(x, hp + k * DENSE_PANEL, sizeof x);
                s0 = (vf4){w0[k], w0[k], w0[k], w0[k]};
                s1 = (vf4){w1[k], w1[k], w1[k], w1[k]};
                t = s0 * x[0]; a[0] += t;
                t = s0 * x[1]; a[1] += t;
                t = s0 * x[2]; a[2] += t;
                t = s0 * x[3]; a[3] += t;
                t = s1 * x[0]; a[4] += t;
                t = s1 * x[1]; a[5] += t;
                t = s1 * x[2]; a[6] += t;
                t = s1 * x[3]; a[7] += t;
            }
            for (int q = 0; q < 8; q++) {
                float bj = b[j + q / 4];
                vf4 bb = {bj, bj, bj, bj};
                a[q] += bb;
            }
            memcpy(yp + j * DENSE_PANEL, a, sizeof a);
        }
        for (; j < out; j++) {
            const float *w0 = W + j * in;
            vf4 a[4];
            memset(a, 0, sizeof a);
            for (size_t k = 0; k < in; k++) {
                vf4 x[4], s0, t;
                memcpy(x, hp + k * DENSE_PANEL, sizeof x);
                s0 = (vf4){w0[k], w0[k], w0[k], w0[k]};
                t = s0 * x[0]; a[0] += t;
                t = s0 * x[1]; a[1] += t;
                t = s0 * x[2]; a[2] += t;
                t = s0 * x[3]; a[3] += t;
            }
            vf4 bb = {b[j], b[j], b[j], b[j]};
            for (int q = 0; q < 4; q++)
                a[q] += bb;
            memcpy(yp + j * DENSE_PANEL, a, sizeof a);
        }
    }
}

#if defined(__x86_64__) || defined(__i386__)
#define HAVE_AVX2_PATH 1

typedef float vf8 __attribute__((vector_size(32)));

/* AVX2 without FMA: the same operations 8 lanes at a time, 4 outputs x 16
 * inputs = 8 accumulators.  Chosen at run time, so the library still runs
 * on any x86-64. */
__attribute__((target("avx2"))) static void
dense_v8(const float *W, const float *b, size_t out, size_t in,
         const float *h, float *y, size_t npan)
{
    for (size_t p = 0; p < npan; p++) {
        const float *hp = h + p * in * DENSE_PANEL;
        float *yp = y + p * out * DENSE_PANEL;
        size_t j = 0;
        for (; j + 4 <= out; j += 4) {
            const float *w0 = W + j * in, *w1 = w0 + in, *w2 = w1 + in,
                        *w3 = w2 + in;
            vf8 a[8];
            memset(a, 0, sizeof a);
            for (size_t k = 0; k < in; k++) {
                vf8 x[2], s, t;
                memcpy(x, hp + k * DENSE_PANEL, sizeof x);
                s = (vf8){w0[k], w0[k], w0[k], w0[k],
                          w0[k], w0[k], w0[k], w0[k]};
                t = s * x[0]; a[0] += t;
                t = s * x[1]; a[1] += t;
                s = (vf8){w1[k], w1[k], w1[k], w1[k],
                          w1[k], w1[k], w1[k], w1[k]};
                t = s * x[0]; a[2] += t;
                t = s * x[1]; a[3] += t;
                s = (vf8){w2[k], w2[k], w2[k], w2[k],
                          w2[k], w2[k], w2[k], w2[k]};
                t = s * x[0]; a[4] += t;
                t = s * x[1]; a[5] += t;
                s = (vf8){w3[k], w3[k], w3[k], w3[k],
                          w3[k], w3[k], w3[k], w3[k]};
                t = s * x[0]; a[6] += t;
                t = s * x[1]; a[7] += t;
            }
            for (int q = 0; q < 8; q++) {
                float bj = b[j + q / 2];
                vf8 bb = {bj, bj, bj, bj, bj, bj, bj, bj};
                a[q] += bb;
            }
            memcpy(yp + j * DENSE_PANEL, a, sizeof a);
        }
        for (; j < out; j++) {
            const float *w0 = W + j * in;
            vf8 a[2];
            memset(a, 0, sizeof a);
            for (size_t k = 0; k < in; k++) {
                vf8 x[2], s, t;
                memcpy(x, hp + k * DENSE_PANEL, sizeof x);
                s = (vf8){w0[k], w0[k], w0[k], w0[k],
                          w0[k], w0[k], w0[k], w0[k]};
                t = s * x[0]; a[0] += t;
                t = s * x[1]; a[1] += t;
            }
            float bj = b[j];
            vf8 bb = {bj, bj, bj, bj, bj, bj, bj, bj};
            a[0] += bb;
            a[1] += bb;
            memcpy(yp + j * DENSE_PANEL, a, sizeof a);
        }
    }
}
#endif

#endif /* __GNUC__ */

/* Portable reference of the same operations. */
static void dense_scalar(const float *W, const float *b, size_t out,
                         size_t in, const float *h, float *y, size_t npan)
{
    for (size_t p = 0; p < npan; p++) {
        const float *hp = h + p * in * DENSE_PANEL;
        float *yp = y + p * out * DENSE_PANEL;
        for (size_t j = 0; j < out; j++) {
            const float *w = W + j * in;
            float a[DENSE_PANEL] = {0};
            for (size_t k = 0; k < in; k++)
                for (size_t r = 0; r < DENSE_PANEL; r++) {
                    float t = w[k] * hp[k * DENSE_PANEL + r];
                    a[r] += t;
                }
            for (size_t r = 0; r < DENSE_PANEL; r++)
                yp[j * DENSE_PANEL + r] = a[r] + b[j];
        }
    }
}

int dense_path_available(int path)
{
    switch (path) {
    case DENSE_PATH_AUTO:
    case DENSE_PATH_SCALAR: return 1;
#if defined(__GNUC__)
    case DENSE_PATH_VECTOR: return 1;
#endif
#if defined(HAVE_AVX2_PATH)
    case DENSE_PATH_AVX2: return __builtin_cpu_supports("avx2") != 0;
#endif
    default: return 0;
    }
}

void dense_panels(const float *W, const float *b, size_t out, size_t in,
                  const float *h, float *y, size_t npan, int path)
{
    if (path == DENSE_PATH_AUTO || !dense_path_available(path)) {
#if defined(HAVE_AVX2_PATH)
        path = __builtin_cpu_supports("avx2") ? DENSE_PATH_AVX2
                                              : DENSE_PATH_VECTOR;
#elif defined(__GNUC__)
        path = DENSE_PATH_VECTOR;
#else
        path = DENSE_PATH_SCALAR;
#endif
    }
#if defined(HAVE_AVX2_PATH)
    if (path == DENSE_PATH_AVX2) {
        dense_v8(W, b, out, in, h, y, npan);
        return;
    }
#endif
#if defined(__GNUC__)
    if (path == DENSE_PATH_VECTOR) {
        dense_v4(W, b, out, in, h, y, npan);
        return;
    }
#endif
    dense_scalar(W, b, out, in, h, y, npan);
}
