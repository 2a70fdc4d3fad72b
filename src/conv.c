/* im2col, col2im, 2 x 2 pooling and sign expansion (see conv.h). */
#include "conv.h"

#include <string.h>

void conv_im2col(const struct model_layer *y, size_t n, const float *x, float *col)
{
    size_t H = y->in_h, W = y->in_w, C = y->in_c, rowlen = y->kw * C;
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * H * W * C;
        for (size_t oy = 0; oy < y->out_h; oy++) {
            for (size_t ox = 0; ox < y->out_w; ox++) {
                for (size_t ky = 0; ky < y->kh; ky++, col += rowlen) {
                    /* input row iy = oy sh + ky - ph, in unsigned arithmetic */
                    size_t iy = oy * y->sh + ky;
                    if (iy < y->ph || iy - y->ph >= H) {
                        memset(col, 0, rowlen * sizeof *col);
                        continue;
                    }
                    iy -= y->ph;
                    size_t ix0 = ox * y->sw; /* ix = ix0 + kx - pw */
                    for (size_t kx = 0; kx < y->kw; kx++) {
                        size_t ix = ix0 + kx;
                        float *dst = col + kx * C;
                        if (ix < y->pw || ix - y->pw >= W)
                            memset(dst, 0, C * sizeof *dst);
                        else
                            memcpy(dst, xi + (iy * W + ix - y->pw) * C, C * sizeof *dst);
                    }
                }
            }
        }
    }
}

void conv_col2im(const struct model_layer *y, size_t n, const float *dcol, float *dx)
{
    size_t H = y->in_h, W = y->in_w, C = y->in_c, rowlen = y->kw * C;
    memset(dx, 0, n * H * W * C * sizeof *dx);
    for (size_t i = 0; i < n; i++) {
        float *di = dx + i * H * W * C;
        for (size_t oy = 0; oy < y->out_h; oy++) {
            for (size_t ox = 0; ox < y->out_w; ox++) {
                for (size_t ky = 0; ky < y->kh; ky++, dcol += rowlen) {
                    size_t iy = oy * y->sh + ky;
                    if (iy < y->ph || iy - y->ph >= H)
                        continue;
                    iy -= y->ph;
                    size_t ix0 = ox * y->sw;
                    for (size_t kx = 0; kx < y->kw; kx++) {
                        size_t ix = ix0 + kx;
                        if (ix < y->pw || ix - y->pw >= W)
                            continue;
                        float *d = di + (iy * W + ix - y->pw) * C;
                        const float *s = dcol + kx * C;
                        for (size_t c = 0; c < C; c++)
                            d[c] += s[c];
                    }
                }
            }
        }
    }
}

void conv_pool_forward(int max, size_t n, size_t h, size_t w, size_t c, const float *x,
                       float *out, uint8_t *arg)
{
    size_t oh = h / 2, ow = w / 2;
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * h * w * c;
        for (size_t oy = 0; oy < oh; oy++) {
            for (size_t ox = 0; ox < ow; ox++) {
                const float *p[4] = {xi + ((2 * oy) * w + 2 * ox) * c,
                                     xi + ((2 * oy) * w + 2 * ox + 1) * c,
                                     xi + ((2 * oy + 1) * w + 2 * ox) * c,
                                     xi + ((2 * oy + 1) * w + 2 * ox + 1) * c};
                if (max) {
                    for (size_t k = 0; k < c; k++) {
                        float best = p[0][k];
                        uint8_t at = 0;
                        for (uint8_t q = 1; q < 4; q++)
                            if (p[q][k] > best)
                                best = p[q][k], at = q;
                        out[k] = best;
                        arg[k] = at;
                    }
                    arg += c;
                } else {
                    for (size_t k = 0; k < c; k++)
                        out[k] = 0.25f * ((p[0][k] + p[1][k]) + (p[2][k] + p[3][k]));
                }
                out += c;
            }
        }
    }
}

void conv_pool_backward(int max, size_t n, size_t h, size_t w, size_t c, const float *dout,
                        const uint8_t *arg, float *dx)
{
    size_t oh = h / 2, ow = w / 2;
    memset(dx, 0, n * h * w * c * sizeof *dx);
    for (size_t i = 0; i < n; i++) {
        float *di = dx + i * h * w * c;
        for (size_t oy = 0; oy < oh; oy++) {
            for (size_t ox = 0; ox < ow; ox++) {
                float *p[4] = {di + ((2 * oy) * w + 2 * ox) * c, di + ((2 * oy) * w + 2 * ox + 1) * c,
                               di + ((2 * oy + 1) * w + 2 * ox) * c,
                               di + ((2 * oy + 1) * w + 2 * ox + 1) * c};
                if (max) {
                    for (size_t k = 0; k < c; k++)
                        p[arg[k]][k] = dout[k];
                    arg += c;
                } else {
                    for (size_t k = 0; k < c; k++) {
                        float g = 0.25f * dout[k];
                        p[0][k] = g, p[1][k] = g, p[2][k] = g, p[3][k] = g;
                    }
                }
                dout += c;
            }
        }
    }
}

void conv_expand_rows(float *v, size_t n, size_t reps, size_t c)
{
    if (reps == 1)
        return;
    /* Back to front: copy (i, r) lands at (i reps + r) c >= (i + 1) c for r
     * >= 1, above every compact row not yet read; copy (i, 0) may overlap
     * its own source only when i == 0, where it is that source. */
    for (size_t i = n; i-- > 0;) {
        const float *src = v + i * c;
        for (size_t r = reps; r-- > 1;)
            memcpy(v + (i * reps + r) * c, src, c * sizeof *v);
        if (i > 0)
            memcpy(v + i * reps * c, src, c * sizeof *v);
    }
}
