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

#include "cpu.h"
#include "dense.h"

/* Separate multiply and add statements: an ISO C compiler may not fuse
 * them into one FMA across statements, which would change the rounding. */

#if defined(__GNUC__)

/* Unaligned, aliasing-safe vector views of float arrays: loads and stores
 * through them compile to single unaligned vector moves. */
typedef float vf4 __attribute__((vector_size(16), aligned(4), may_alias));

#define BC4(v) ((vf4){(v), (v), (v), (v)})

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
            vf4 a0 = BC4(0.0f), a1 = a0, a2 = a0, a3 = a0;
            vf4 c0 = a0, c1 = a0, c2 = a0, c3 = a0;
            for (size_t k = 0; k < in; k++) {
                const vf4 *x = (const vf4 *)(hp + k * DENSE_PANEL);
                vf4 x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
                vf4 s0 = BC4(w0[k]), s1 = BC4(w1[k]), t;
                t = s0 * x0; a0 += t;
                t = s0 * x1; a1 += t;
                t = s0 * x2; a2 += t;
                t = s0 * x3; a3 += t;
                t = s1 * x0; c0 += t;
                t = s1 * x1; c1 += t;
                t = s1 * x2; c2 += t;
                t = s1 * x3; c3 += t;
            }
            vf4 *o = (vf4 *)(yp + j * DENSE_PANEL);
            vf4 b0 = BC4(b[j]), b1 = BC4(b[j + 1]);
            o[0] = a0 + b0;
            o[1] = a1 + b0;
            o[2] = a2 + b0;
            o[3] = a3 + b0;
            o[4] = c0 + b1;
            o[5] = c1 + b1;
            o[6] = c2 + b1;
            o[7] = c3 + b1;
        }
        for (; j < out; j++) {
            const float *w0 = W + j * in;
            vf4 a0 = BC4(0.0f), a1 = a0, a2 = a0, a3 = a0;
            for (size_t k = 0; k < in; k++) {
                const vf4 *x = (const vf4 *)(hp + k * DENSE_PANEL);
                vf4 s0 = BC4(w0[k]), t;
                t = s0 * x[0]; a0 += t;
                t = s0 * x[1]; a1 += t;
                t = s0 * x[2]; a2 += t;
                t = s0 * x[3]; a3 += t;
            }
            vf4 *o = (vf4 *)(yp + j * DENSE_PANEL);
            vf4 b0 = BC4(b[j]);
            o[0] = a0 + b0;
            o[1] = a1 + b0;
            o[2] = a2 + b0;
            o[3] = a3 + b0;
        }
    }
}

#if CPU_HAVE_AVX2_PATH

typedef float vf8 __attribute__((vector_size(32), aligned(4), may_alias));

#define BC8(v) ((vf8){(v), (v), (v), (v), (v), (v), (v), (v)})

/* AVX2 without FMA: the same operations 8 lanes at a time, 4 outputs x 16
 * inputs = 8 accumulators.  Chosen at run time, so the library still runs
 * on any x86-64. */
CPU_TARGET_AVX2 static void
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
            vf8 a0 = BC8(0.0f), a1 = a0, a2 = a0, a3 = a0;
            vf8 c0 = a0, c1 = a0, c2 = a0, c3 = a0;
            for (size_t k = 0; k < in; k++) {
                const vf8 *x = (const vf8 *)(hp + k * DENSE_PANEL);
                vf8 lo = x[0], hi = x[1], s, t;
                s = BC8(w0[k]);
                t = s * lo; a0 += t;
                t = s * hi; c0 += t;
                s = BC8(w1[k]);
                t = s * lo; a1 += t;
                t = s * hi; c1 += t;
                s = BC8(w2[k]);
                t = s * lo; a2 += t;
                t = s * hi; c2 += t;
                s = BC8(w3[k]);
                t = s * lo; a3 += t;
                t = s * hi; c3 += t;
            }
            vf8 *o = (vf8 *)(yp + j * DENSE_PANEL);
            vf8 bb = BC8(b[j]);
            o[0] = a0 + bb;
            o[1] = c0 + bb;
            bb = BC8(b[j + 1]);
            o[2] = a1 + bb;
            o[3] = c1 + bb;
            bb = BC8(b[j + 2]);
            o[4] = a2 + bb;
            o[5] = c2 + bb;
            bb = BC8(b[j + 3]);
            o[6] = a3 + bb;
            o[7] = c3 + bb;
        }
        for (; j < out; j++) {
            const float *w0 = W + j * in;
            vf8 a0 = BC8(0.0f), c0 = a0;
            for (size_t k = 0; k < in; k++) {
                const vf8 *x = (const vf8 *)(hp + k * DENSE_PANEL);
                vf8 s = BC8(w0[k]), t;
                t = s * x[0]; a0 += t;
                t = s * x[1]; c0 += t;
            }
            vf8 *o = (vf8 *)(yp + j * DENSE_PANEL);
            vf8 bb = BC8(b[j]);
            o[0] = a0 + bb;
            o[1] = c0 + bb;
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
#if CPU_HAVE_AVX2_PATH
    case DENSE_PATH_AVX2: return cpu_has_avx2();
#endif
    default: return 0;
    }
}

void dense_panels(const float *W, const float *b, size_t out, size_t in,
                  const float *h, float *y, size_t npan, int path)
{
    if (path == DENSE_PATH_AUTO || !dense_path_available(path)) {
#if CPU_HAVE_AVX2_PATH
        path = cpu_has_avx2() ? DENSE_PATH_AVX2
                                              : DENSE_PATH_VECTOR;
#elif defined(__GNUC__)
        path = DENSE_PATH_VECTOR;
#else
        path = DENSE_PATH_SCALAR;
#endif
    }
#if CPU_HAVE_AVX2_PATH
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
