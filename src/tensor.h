/* Row-major float32 matrices and views over CBLAS.  Internal. */
#ifndef BNN_TENSOR_H
#define BNN_TENSOR_H

#include <stddef.h>

/* A view: element (i, j) is data[i * ld + j]; ld >= cols.  A view never owns
 * its data. */
typedef struct tensor {
    float *data;
    size_t rows;
    size_t cols;
    size_t ld;
} tensor;

static inline tensor tensor_view(float *data, size_t rows, size_t cols,
                                 size_t ld)
{
    tensor t = {data, rows, cols, ld};
    return t;
}
/* Contiguous rows x cols matrix. */
static inline tensor tensor_mat(float *data, size_t rows, size_t cols)
{
    return tensor_view(data, rows, cols, cols);
}
/* Sub-block starting at (r0, c0). */
static inline tensor tensor_sub(tensor t, size_t r0, size_t c0, size_t rows,
                                size_t cols)
{
    return tensor_view(t.data + r0 * t.ld + c0, rows, cols, t.ld);
}

/* C = alpha * op(A) op(B) + beta * C with op = transpose when trans_* != 0.
 * Shapes must agree (checked by the caller; asserted nowhere). */
void tensor_gemm(int trans_a, int trans_b, float alpha, const tensor *a,
                 const tensor *b, float beta, tensor *c);

/* Elementwise kernels.  `out` may alias an input.  All views of one call have
 * the same rows x cols. */
void tensor_fill(tensor *out, float v);
void tensor_copy(const tensor *x, tensor *out);
void tensor_axpy(float a, const tensor *x, tensor *y);          /* y += a x */
void tensor_scale(float a, tensor *x);                          /* x *= a */
void tensor_mul(const tensor *x, const tensor *y, tensor *out); /* x * y */
void tensor_square(const tensor *x, tensor *out);
void tensor_sqrt(const tensor *x, tensor *out);
void tensor_softplus(const tensor *x, tensor *out); /* log(1 + e^x), stable */
void tensor_sigmoid(const tensor *x, tensor *out);  /* 1/(1+e^-x) = softplus' */
void tensor_relu(const tensor *x, tensor *out);
/* dx = dy * (x > 0), x the relu input. */
void tensor_relu_backward(const tensor *x, const tensor *dy, tensor *dx);
void tensor_tanh(const tensor *x, tensor *out);
/* dx = dy * (1 - y^2), y the tanh output. */
void tensor_tanh_backward(const tensor *y, const tensor *dy, tensor *dx);
/* out[i, :] = x[i, :] + row (broadcast of a cols-vector). */
void tensor_add_row(const tensor *x, const float *row, tensor *out);
/* out[j] (+)= sum_i x[i, j]; accumulate when accumulate != 0. */
void tensor_sum_rows(const tensor *x, float *out, int accumulate);
/* Row-wise log-softmax, stable for large |x|. */
void tensor_log_softmax_rows(const tensor *x, tensor *out);
/* 1 if all n values of a contiguous array are finite. */
int tensor_all_finite(const float *x, size_t n);
/* Sum of squares in double. */
double tensor_sum_sq(const tensor *x);

#endif
