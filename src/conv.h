/* Kernels of a 2-D convolution layer on NHWC activations: im2col and its
 * adjoint, 2 x 2 pooling and its backward, and the per-channel expansion
 * of flipout's signs.  Internal; pointers and shapes only.
 *
 * A convolution is one GEMM of im2col rows by the kernel: row (i, oy, ox)
 * of the column matrix holds the kh x kw x cin input patch of output
 * position (oy, ox) of example i, ordered [ky][kx][c], zeros where the
 * window crosses the padding. */
#ifndef BNN_CONV_H
#define BNN_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Output positions of layer y (out_h * out_w); one im2col row each. */
static inline size_t conv_positions(const struct model_layer *y)
{
    return y->out_h * y->out_w;
}

/* col (n * out_h * out_w) x (kh * kw * in_c) = im2col of x, n examples of
 * in_h x in_w x in_c. */
void conv_im2col(const struct model_layer *y, size_t n, const float *x, float *col);

/* dx = col2im(dcol): the adjoint of conv_im2col, each patch entry added
 * back to the input element it was copied from (dx is overwritten). */
void conv_col2im(const struct model_layer *y, size_t n, const float *dcol, float *dx);

/* 2 x 2, stride 2 pooling (floor) of n examples of h x w x c into
 * n x (h/2) x (w/2) x c.  Max pooling records in arg which of the four
 * window entries (0..3, row-major) was the first maximum. */
void conv_pool_forward(int max, size_t n, size_t h, size_t w, size_t c, const float *x,
                       float *out, uint8_t *arg);

/* dx (n x h x w x c, overwritten) from dout: max pooling routes each
 * output's gradient to the entry recorded in arg (the first maximum of its
 * window), average pooling spreads a quarter to each; rows and columns
 * that the floor dropped get 0. */
void conv_pool_backward(int max, size_t n, size_t h, size_t w, size_t c, const float *dout,
                        const uint8_t *arg, float *dx);

/* v holds n rows of c values; repeat each row `reps` times in place, so
 * that it becomes n x (reps * c) (row i: reps copies of the old row i). */
void conv_expand_rows(float *v, size_t n, size_t reps, size_t c);

#endif
