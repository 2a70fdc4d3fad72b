/* Row-major float32 views: gemm through CBLAS, elementwise kernels as
 * per-row loops over contiguous memory.
 *
 * Each kernel's inner loop is straight-line float arithmetic (the
 * transcendental functions come from vmath.h, not libm) so that it
 * vectorizes under -O2 -ftree-vectorize without -ffast-math.  An output
 * may be the same view as an input: every inner loop reads element j
 * before writing element j and touches nothing else. */
#include "tensor.h"

#include <cblas.h>
#include <math.h>

#include "cpu.h"
#include "vmath.h"

/* The kernels built on vmath.h cost tens of operations per element, so
 * they get an AVX2 clone (cpu.h). */

static inline float *row(const tensor *t, size_t i)
{
    return t->data + i * t->ld;
}

void tensor_gemm(int trans_a, int trans_b, float alpha, const tensor *a,
                 const tensor *b, float beta, tensor *c)
{
    size_t m = c->rows, n = c->cols;
    size_t k = trans_a ? a->rows : a->cols;
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        /* BLAS would reject the leading dimensions of empty operands;
         * the product is empty, so C = beta C (beta == 0 overwrites, as in
         * BLAS, even NaN). */
        if (beta == 0.0f)
            tensor_fill(c, 0.0f);
        else if (beta != 1.0f)
            tensor_scale(beta, c);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
                alpha, a->data, (int)a->ld, b->data, (int)b->ld, beta,
                c->data, (int)c->ld);
}

void tensor_fill(tensor *out, float v)
{
    for (size_t i = 0; i < out->rows; i++) {
        float *o = row(out, i);
        for (size_t j = 0; j < out->cols; j++)
            o[j] = v;
    }
}

void tensor_copy(const tensor *x, tensor *out)
{
    for (size_t i = 0; i < out->rows; i++) {
        const float *xr = row(x, i);
        float *o = row(out, i);
        if (xr == o)
            continue;
        for (size_t j = 0; j < out->cols; j++)
            o[j] = xr[j];
    }
}

void tensor_axpy(float a, const tensor *x, tensor *y)
{
    for (size_t i = 0; i < y->rows; i++) {
        const float *xr = row(x, i);
        float *yr = row(y, i);
        for (size_t j = 0; j < y->cols; j++)
            yr[j] += a * xr[j];
    }
}

void tensor_scale(float a, tensor *x)
{
    for (size_t i = 0; i < x->rows; i++) {
        float *xr = row(x, i);
        for (size_t j = 0; j < x->cols; j++)
            xr[j] *= a;
    }
}

void tensor_mul(const tensor *x, const tensor *y, tensor *out)
{
    for (size_t i = 0; i < out->rows; i++) {
        const float *xr = row(x, i), *yr = row(y, i);
        float *o = row(out, i);
        for (size_t j = 0; j < out->cols; j++)
            o[j] = xr[j] * yr[j];
    }
}

void tensor_square(const tensor *x, tensor *out)
{
    for (size_t i = 0; i < out->rows; i++) {
        const float *xr = row(x, i);
        float *o = row(out, i);
        for (size_t j = 0; j < out->cols; j++)
            o[j] = xr[j] * xr[j];
    }
}

void tensor_sqrt(const tensor *x, tensor *out)
{
    for (size_t i = 0; i < out->rows; i++) {
        const float *xr = row(x, i);
        float *o = row(out, i);
        for (size_t j = 0; j < out->cols; j++)
            o[j] = sqrtf(xr[j]);
    }
}

/* softplus(x) = max(x, 0) + log(1 + e^-|x|): e^-|x| <= 1 never overflows
 * and log1p keeps e^x's relative accuracy for very negative x. */
CPU_CLONES void tensor_softplus(const tensor *x, tensor *out)
{
    for (size_t i = 0; i < out->rows; i++) {
        const float *xr = row(x, i);
        float *o = row(out, i);
        for (size_t j = 0; j < out->cols; j++) {
            float v = xr[j];
            float pos = v > 0.0f ? v : 0.0f;
            o[j] = pos + vmath_log1p(vmath_exp_nonpos(-fabsf(v)));
        }
    }
}

/* sigmoid(x) = 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) below, so the
 * exponential is always of -|x|. */
CPU_CLONES void tensor_sigmoid(const tensor *x, tensor *out)
{
    for (size_t i = 0; i < out->rows; i++) {
        const float *xr = row(x, i);
        float *o = row(out, i);
        for (size_t j = 0; j < out->cols; j++) {
            float v = xr[j];
            float z = vmath_exp_nonpos(-fabsf(v));
            /* one division, shared by both cases, keeps the loop free of
             * branches */
            o[j] = vmath_select(v >= 0.0f, 1.0f, z) / (1.0f + z);
        }
    }
}

/* relu(x) = max(x, 0); written so that NaN passes through. */
void tensor_relu(const tensor *x, tensor *out)
{
    for (size_t i = 0; i < out->rows; i++) {
        const float *xr = row(x, i);
        float *o = row(out, i);
        for (size_t j = 0; j < out->cols; j++)
            o[j] = xr[j] < 0.0f ? 0.0f : xr[j];
    }
}

void tensor_relu_backward(const tensor *x, const tensor *dy, tensor *dx)
{
    for (size_t i = 0; i < dx->rows; i++) {
        const float *xr = row(x, i), *g = row(dy, i);
        float *o = row(dx, i);
        for (size_t j = 0; j < dx->cols; j++) {
            float gj = g[j]; /* loaded unconditionally: no branch */
            o[j] = xr[j] > 0.0f ? gj : 0.0f;
        }
    }
}

/* tanh|x| = -m / (2 + m) with m = e^(-2|x|) - 1, which stays accurate for
 * small |x| where 1 - e^(-2|x|) would cancel. */
CPU_CLONES void tensor_tanh(const tensor *x, tensor *out)
{
    for (size_t i = 0; i < out->rows; i++) {
        const float *xr = row(x, i);
        float *o = row(out, i);
        for (size_t j = 0; j < out->cols; j++) {
            float v = xr[j];
            float m = vmath_expm1_nonpos(-2.0f * fabsf(v));
            o[j] = copysignf(-m / (2.0f + m), v);
        }
    }
}

void tensor_tanh_backward(const tensor *y, const tensor *dy, tensor *dx)
{
    for (size_t i = 0; i < dx->rows; i++) {
        const float *yr = row(y, i), *g = row(dy, i);
        float *o = row(dx, i);
        for (size_t j = 0; j < dx->cols; j++)
            o[j] = g[j] * (1.0f - yr[j] * yr[j]);
    }
}

void tensor_add_row(const tensor *x, const float *brow, tensor *out)
{
    for (size_t i = 0; i < out->rows; i++) {
        const float *xr = row(x, i);
        float *o = row(out, i);
        for (size_t j = 0; j < out->cols; j++)
            o[j] = xr[j] + brow[j];
    }
}

/* Column sums accumulate in double over a strip of columns at a time, so a
 * large batch costs no precision and no allocation. */
#define SUM_STRIP 256

void tensor_sum_rows(const tensor *x, float *out, int accumulate)
{
    double acc[SUM_STRIP];
    for (size_t j0 = 0; j0 < x->cols; j0 += SUM_STRIP) {
        size_t w = x->cols - j0 < SUM_STRIP ? x->cols - j0 : SUM_STRIP;
        for (size_t j = 0; j < w; j++)
            acc[j] = accumulate ? (double)out[j0 + j] : 0.0;
        for (size_t i = 0; i < x->rows; i++) {
            const float *xr = row(x, i) + j0;
            for (size_t j = 0; j < w; j++)
                acc[j] += (double)xr[j];
        }
        for (size_t j = 0; j < w; j++)
            out[j0 + j] = (float)acc[j];
    }
}

/* out = (x - max) - log(sum e^(x - max)): every exponent is <= 0 and the
 * sum is >= 1, so nothing overflows or reaches log(0), and subtracting
 * the max first keeps the small differences of huge logits exact. */
void tensor_log_softmax_rows(const tensor *x, tensor *out)
{
    for (size_t i = 0; i < out->rows; i++) {
        const float *xr = row(x, i);
        float *o = row(out, i);
        size_t n = out->cols;
        if (n == 0)
            continue;
        float mx = xr[0];
        for (size_t j = 1; j < n; j++)
            mx = xr[j] > mx ? xr[j] : mx;
        /* The exponentials go through `o` (vectorized); x is read again
         * below, so this is safe only when o is not x. */
        double sum = 0.0;
        if (o != xr) {
            for (size_t j = 0; j < n; j++)
                o[j] = vmath_exp_nonpos(xr[j] - mx);
            for (size_t j = 0; j < n; j++)
                sum += (double)o[j];
        } else {
            for (size_t j = 0; j < n; j++)
                sum += (double)vmath_exp_nonpos(xr[j] - mx);
        }
        float ls = (float)log(sum);
        for (size_t j = 0; j < n; j++)
            o[j] = (xr[j] - mx) - ls;
    }
}

double tensor_sum_sq(const tensor *x)
{
    /* Eight fixed partial sums: vectorizable, and the order of additions
     * (hence the result) does not depend on the build. */
    double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < x->rows; i++) {
        const float *xr = row(x, i);
        size_t n = x->cols, j = 0;
        for (; j + 8 <= n; j += 8)
            for (int k = 0; k < 8; k++)
                part[k] += (double)xr[j + k] * (double)xr[j + k];
        for (; j < n; j++)
            part[j % 8] += (double)xr[j] * (double)xr[j];
    }
    return ((part[0] + part[1]) + (part[2] + part[3])) +
           ((part[4] + part[5]) + (part[6] + part[7]));
}

int tensor_all_finite(const float *x, size_t n)
{
    /* Accumulating x*0 keeps the loop branch-free and vectorizable: the sum
     * is 0 unless some x is NaN or Inf. */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += x[i] * 0.0f;
    return acc == 0.0f;
}
