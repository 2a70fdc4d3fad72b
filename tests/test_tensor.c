/* tensor.c against double-precision reference loops: gemm in all
 * transpose combinations, every elementwise kernel on random shapes and
 * strided views (ld > cols, sub-blocks), in place where allowed, and at
 * extreme inputs.  Padding around each view is filled with a sentinel and
 * checked afterwards, so a kernel that writes outside its view fails. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor.h"
#include "testutil.h"

#define SENTINEL 12345.678f

/* A view inside a larger buffer: `pad_r` rows above, `pad_c` columns to
 * the left, and ld - cols - pad_c columns to the right of it. */
typedef struct view_buf {
    float *buf;
    size_t n; /* floats in buf */
    tensor t;
} view_buf;

static view_buf vb_make(tu_rng *r, size_t rows, size_t cols, int strided,
                        float lo, float hi)
{
    view_buf v;
    size_t pad_r = strided ? 1 + tu_next(r) % 2 : 0;
    size_t pad_c = strided ? tu_next(r) % 3 : 0;
    size_t ld = cols + pad_c + (strided ? 1 + tu_next(r) % 5 : 0);
    size_t total_rows = rows + 2 * pad_r;
    v.n = total_rows * ld;
    if (v.n == 0)
        v.n = 1;
    v.buf = malloc(v.n * sizeof *v.buf);
    ck_assert_ptr_nonnull(v.buf);
    for (size_t i = 0; i < v.n; i++)
        v.buf[i] = SENTINEL;
    v.t = tensor_view(v.buf + pad_r * ld + pad_c, rows, cols, ld);
    for (size_t i = 0; i < rows; i++)
        tu_fill_uniform(r, v.t.data + i * ld, cols, lo, hi);
    return v;
}

/* Every float of the buffer outside the view is still the sentinel. */
static void vb_check_padding(const view_buf *v)
{
    size_t off0 = (size_t)(v->t.data - v->buf), bad = 0, first = 0;
    for (size_t k = 0; k < v->n; k++) {
        int inside = 0;
        if (k >= off0 && v->t.rows > 0) {
            size_t rel = k - off0;
            size_t i = rel / v->t.ld, j = rel % v->t.ld;
            inside = i < v->t.rows && j < v->t.cols;
        }
        if (!inside && v->buf[k] != SENTINEL && bad++ == 0)
            first = k;
    }
    ck_assert_msg(bad == 0, "%zu writes outside the view, first at index %zu",
                  bad, first);
}

static float at(const tensor *t, size_t i, size_t j)
{
    return t->data[i * t->ld + j];
}

static size_t rand_dim(tu_rng *r)
{
    /* 1 often (1xN and Nx1 shapes), otherwise up to 37 (odd sizes leave
     * vector tails) */
    return tu_next(r) % 4 == 0 ? 1 : 1 + tu_next(r) % 37;
}

/* ---- gemm --------------------------------------------------------------- */

static void check_gemm_case(tu_rng *r, int ta, int tb, float alpha,
                            float beta, size_t m, size_t n, size_t k,
                            int strided)
{
    view_buf A = ta ? vb_make(r, k, m, strided, -1, 1)
                    : vb_make(r, m, k, strided, -1, 1);
    view_buf B = tb ? vb_make(r, n, k, strided, -1, 1)
                    : vb_make(r, k, n, strided, -1, 1);
    view_buf C = vb_make(r, m, n, strided, -1, 1);
    if (beta == 0.0f) /* BLAS semantics: C is not read when beta == 0 */
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                C.t.data[i * C.t.ld + j] = NAN;
    double *ref = malloc((m * n + 1) * sizeof *ref);
    double *mag = malloc((m * n + 1) * sizeof *mag);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0, sa = 0;
            for (size_t p = 0; p < k; p++) {
                double av = ta ? at(&A.t, p, i) : at(&A.t, i, p);
                double bv = tb ? at(&B.t, j, p) : at(&B.t, p, j);
                s += av * bv;
                sa += fabs(av * bv);
            }
            double c0 = beta == 0.0f ? 0.0 : (double)at(&C.t, i, j);
            ref[i * n + j] = alpha * s + beta * c0;
            mag[i * n + j] = fabs(alpha) * sa + fabs(beta * c0);
        }
    tensor_gemm(ta, tb, alpha, &A.t, &B.t, beta, &C.t);
    size_t bad = 0, bi = 0, bj = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double got = at(&C.t, i, j), want = ref[i * n + j];
            /* float accumulation: about k roundings of the partial sums */
            double tol = 1e-6 + (double)(k + 2) * 1.2e-7 * mag[i * n + j];
            if (!(fabs(got - want) <= tol) && bad++ == 0)
                bi = i, bj = j;
        }
    ck_assert_msg(bad == 0,
                  "gemm ta=%d tb=%d %zux%zux%zu alpha=%g beta=%g: %zu wrong, "
                  "first (%zu,%zu): %.9g vs %.9g",
                  ta, tb, m, n, k, alpha, beta, bad, bi, bj,
                  bad ? at(&C.t, bi, bj) : 0.0f, bad ? ref[bi * n + bj] : 0.0);
    vb_check_padding(&A);
    vb_check_padding(&B);
    vb_check_padding(&C);
    free(ref);
    free(mag);
    free(A.buf);
    free(B.buf);
    free(C.buf);
}

START_TEST(test_gemm_random)
{
    tu_rng r = {101};
    static const float ab[][2] = {{1, 0}, {1, 1}, {-0.5f, 2}, {2.5f, -1}};
    for (int rep = 0; rep < 24; rep++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                size_t m = rand_dim(&r), n = rand_dim(&r), k = rand_dim(&r);
                const float *p = ab[rep % 4];
                check_gemm_case(&r, ta, tb, p[0], p[1], m, n, k, rep % 2);
            }
}
END_TEST

START_TEST(test_gemm_shapes)
{
    tu_rng r = {102};
    /* vectors and degenerate sides in every transpose combination */
    static const size_t shapes[][3] = {
        {1, 1, 1}, {1, 17, 5}, {17, 1, 5}, {6, 7, 1}, {1, 1, 40}, {33, 2, 64},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int strided = 0; strided < 2; strided++)
                    check_gemm_case(&r, ta, tb, 0.75f, 0.5f, shapes[s][0],
                                    shapes[s][1], shapes[s][2], strided);
}
END_TEST

/* A sub-block of one matrix times a sub-block of another, written into a
 * sub-block of a third: all three views have ld far larger than cols. */
START_TEST(test_gemm_subblocks)
{
    tu_rng r = {103};
    float big_a[20 * 30], big_b[25 * 40], big_c[15 * 50];
    tu_fill_uniform(&r, big_a, 20 * 30, -1, 1);
    tu_fill_uniform(&r, big_b, 25 * 40, -1, 1);
    tu_fill_uniform(&r, big_c, 15 * 50, -1, 1);
    float c_orig[15 * 50];
    memcpy(c_orig, big_c, sizeof big_c);
    tensor a = tensor_sub(tensor_mat(big_a, 20, 30), 3, 4, 7, 9);  /* 7x9 */
    tensor b = tensor_sub(tensor_mat(big_b, 25, 40), 5, 2, 11, 9); /* 11x9 */
    tensor c = tensor_sub(tensor_mat(big_c, 15, 50), 2, 10, 7, 11);
    /* C = A B^T: (7x9)(9x11) */
    tensor_gemm(0, 1, 1.5f, &a, &b, -0.25f, &c);
    size_t bad = 0;
    for (size_t i = 0; i < 15; i++)
        for (size_t j = 0; j < 50; j++) {
            int inside = i >= 2 && i < 9 && j >= 10 && j < 21;
            double want = c_orig[i * 50 + j];
            if (inside) {
                double s = 0;
                for (size_t p = 0; p < 9; p++)
                    s += (double)at(&a, i - 2, p) * at(&b, j - 10, p);
                want = 1.5 * s - 0.25 * want;
                bad += !tu_close(big_c[i * 50 + j], want, 1e-5, 1e-5);
            } else {
                bad += big_c[i * 50 + j] != (float)want;
            }
        }
    ck_assert_msg(bad == 0, "%zu elements wrong", bad);
}
END_TEST

START_TEST(test_gemm_empty_inner)
{
    /* k == 0: the product is empty, so C = beta C */
    float a[1] = {7}, b[1] = {7}, c[6] = {1, 2, 3, 4, 5, 6};
    tensor A = tensor_view(a, 2, 0, 1), B = tensor_view(b, 0, 3, 3);
    tensor C = tensor_mat(c, 2, 3);
    tensor_gemm(0, 0, 1.0f, &A, &B, 0.5f, &C);
    for (int i = 0; i < 6; i++)
        ck_assert(c[i] == 0.5f * (float)(i + 1));
    c[2] = NAN;
    tensor_gemm(0, 0, 1.0f, &A, &B, 0.0f, &C);
    for (int i = 0; i < 6; i++)
        ck_assert(c[i] == 0.0f);
}
END_TEST

/* ---- elementwise kernels ------------------------------------------------ */

enum { K_FILL, K_COPY, K_AXPY, K_SCALE, K_MUL, K_SQUARE, K_SQRT, K_SOFTPLUS,
       K_SIGMOID, K_RELU, K_RELU_BW, K_TANH, K_TANH_BW, K_ADD_ROW, K_COUNT };

static const char *const kname[K_COUNT] = {
    "fill", "copy", "axpy", "scale", "mul", "square", "sqrt", "softplus",
    "sigmoid", "relu", "relu_backward", "tanh", "tanh_backward", "add_row"};

static double softplus_ref(double x)
{
    return (x > 0 ? x : 0) + log1p(exp(-fabs(x)));
}

static double sigmoid_ref(double x)
{
    return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
}

/* Reference value of element (x, y, old out) for kernel k. */
static double kernel_ref(int k, double x, double y, double o, double a,
                         double brow)
{
    switch (k) {
    case K_FILL: return a;
    case K_COPY: return x;
    case K_AXPY: return o + a * x;
    case K_SCALE: return a * o;
    case K_MUL: return x * y;
    case K_SQUARE: return x * x;
    case K_SQRT: return sqrt(x);
    case K_SOFTPLUS: return softplus_ref(x);
    case K_SIGMOID: return sigmoid_ref(x);
    case K_RELU: return x > 0 ? x : 0;
    case K_RELU_BW: return x > 0 ? y : 0;
    case K_TANH: return tanh(x);
    case K_TANH_BW: return y * (1 - x * x);
    case K_ADD_ROW: return x + brow;
    }
    return NAN;
}

static void kernel_run(int k, float a, const tensor *x, const tensor *y,
                       const float *brow, tensor *out)
{
    switch (k) {
    case K_FILL: tensor_fill(out, a); break;
    case K_COPY: tensor_copy(x, out); break;
    case K_AXPY: tensor_axpy(a, x, out); break;
    case K_SCALE: tensor_scale(a, out); break;
    case K_MUL: tensor_mul(x, y, out); break;
    case K_SQUARE: tensor_square(x, out); break;
    case K_SQRT: tensor_sqrt(x, out); break;
    case K_SOFTPLUS: tensor_softplus(x, out); break;
    case K_SIGMOID: tensor_sigmoid(x, out); break;
    case K_RELU: tensor_relu(x, out); break;
    case K_RELU_BW: tensor_relu_backward(x, y, out); break;
    case K_TANH: tensor_tanh(x, out); break;
    case K_TANH_BW: tensor_tanh_backward(x, y, out); break;
    case K_ADD_ROW: tensor_add_row(x, brow, out); break;
    }
}

/* Relative tolerance: exactly rounded operations are within half an ulp
 * (plus one rounding for the compound ones); the vmath-based ones within
 * a few ulp. */
static double kernel_rtol(int k)
{
    switch (k) {
    case K_SOFTPLUS: case K_SIGMOID: case K_TANH: return 2e-6;
    default: return 2.5e-7;
    }
}

/* Scale of the rounding errors: |result| for single operations, the sizes
 * of the terms for compound ones (where cancellation can make the result
 * far smaller than its inputs). */
static double kernel_scale(int k, double x, double y, double o, double a,
                           double brow, double want)
{
    switch (k) {
    case K_AXPY: return fabs(o) + fabs(a * x);
    case K_ADD_ROW: return fabs(x) + fabs(brow);
    case K_TANH_BW: return fabs(y) * (1 + x * x);
    default: return fabs(want);
    }
}

/* aliasing: 0 distinct output, 1 out == x, 2 out == y */
static void check_kernel(tu_rng *r, int k, size_t rows, size_t cols,
                         int strided, int alias)
{
    float lo = -6, hi = 6;
    if (k == K_SQRT)
        lo = 0;
    if (k == K_TANH_BW)
        lo = -1, hi = 1;
    view_buf X = vb_make(r, rows, cols, strided, lo, hi);
    view_buf Y = vb_make(r, rows, cols, strided, -3, 3);
    view_buf O = vb_make(r, rows, cols, strided, -3, 3);
    float a = (float)(tu_uniform(r) * 4 - 2);
    float *brow = malloc((cols + 1) * sizeof *brow);
    tu_fill_uniform(r, brow, cols, -2, 2);
    /* sprinkle exact zeros into x: relu's and sqrt's boundary */
    for (size_t i = 0; i < rows; i++)
        if (tu_next(r) % 3 == 0)
            X.t.data[i * X.t.ld + tu_next(r) % cols] = 0.0f;
    tensor *out = alias == 1 ? &X.t : alias == 2 ? &Y.t : &O.t;
    double *ref = malloc(rows * cols * sizeof *ref);
    double *scale = malloc(rows * cols * sizeof *scale);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            double xv = at(&X.t, i, j), yv = at(&Y.t, i, j),
                   ov = at(out, i, j);
            double want = kernel_ref(k, xv, yv, ov, a, brow[j]);
            ref[i * cols + j] = want;
            scale[i * cols + j] = kernel_scale(k, xv, yv, ov, a, brow[j], want);
        }
    kernel_run(k, a, &X.t, &Y.t, brow, out);
    size_t bad = 0, bi = 0, bj = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            double got = at(out, i, j), want = ref[i * cols + j];
            double tol = 1e-30 + kernel_rtol(k) * scale[i * cols + j];
            if (!(fabs(got - want) <= tol) && bad++ == 0)
                bi = i, bj = j;
        }
    ck_assert_msg(bad == 0,
                  "%s %zux%zu strided=%d alias=%d: %zu wrong, first (%zu,%zu): "
                  "%.9g vs %.9g",
                  kname[k], rows, cols, strided, alias, bad, bi, bj,
                  bad ? at(out, bi, bj) : 0.0f, bad ? ref[bi * cols + bj] : 0.0);
    vb_check_padding(&X);
    vb_check_padding(&Y);
    vb_check_padding(&O);
    free(ref);
    free(scale);
    free(brow);
    free(X.buf);
    free(Y.buf);
    free(O.buf);
}

START_TEST(test_elementwise_random)
{
    tu_rng r = {201};
    for (int k = 0; k < K_COUNT; k++)
        for (int rep = 0; rep < 12; rep++) {
            size_t rows = rand_dim(&r), cols = rand_dim(&r);
            check_kernel(&r, k, rows, cols, rep % 2, 0);
        }
}
END_TEST

START_TEST(test_elementwise_in_place)
{
    tu_rng r = {202};
    /* every kernel whose output may alias an input, with each input it
     * may alias */
    for (int k = 0; k < K_COUNT; k++) {
        if (k == K_FILL || k == K_AXPY || k == K_SCALE)
            continue; /* no separate output */
        for (int rep = 0; rep < 6; rep++) {
            size_t rows = rand_dim(&r), cols = rand_dim(&r);
            check_kernel(&r, k, rows, cols, rep % 2, 1);
            if (k == K_MUL || k == K_RELU_BW || k == K_TANH_BW)
                check_kernel(&r, k, rows, cols, rep % 2, 2);
        }
    }
}
END_TEST

START_TEST(test_elementwise_long_rows)
{
    /* rows long enough for the vector bodies, with odd tails */
    tu_rng r = {203};
    static const size_t cols[] = {63, 64, 65, 257};
    for (int k = 0; k < K_COUNT; k++)
        for (size_t c = 0; c < 4; c++)
            check_kernel(&r, k, 2, cols[c], (int)(c % 2), 0);
}
END_TEST

/* ---- extremes ----------------------------------------------------------- */

START_TEST(test_softplus_sigmoid_tanh_extremes)
{
    static const float xs[] = {-100.0f, -88.0f, -30.0f, -1e-30f, 0.0f,
                               1e-30f,  30.0f,  88.0f,  100.0f,  1e30f,
                               -1e30f};
    enum { N = sizeof xs / sizeof xs[0] };
    float x[N], sp[N], sg[N], th[N];
    memcpy(x, xs, sizeof x);
    tensor X = tensor_mat(x, 1, N);
    tensor SP = tensor_mat(sp, 1, N), SG = tensor_mat(sg, 1, N),
           TH = tensor_mat(th, 1, N);
    tensor_softplus(&X, &SP);
    tensor_sigmoid(&X, &SG);
    tensor_tanh(&X, &TH);
    for (int i = 0; i < N; i++) {
        double v = xs[i];
        ck_assert_msg(isfinite(sp[i]) && isfinite(sg[i]) && isfinite(th[i]),
                      "non-finite at x = %g", v);
        /* below the normal range only absolute accuracy is possible */
        tu_assert_close(sp[i], softplus_ref(v), 4 * FLT_TRUE_MIN, 2e-6);
        tu_assert_close(sg[i], sigmoid_ref(v), 4 * FLT_TRUE_MIN, 2e-6);
        tu_assert_close(th[i], tanh(v), 1e-45, 2e-6);
    }
    /* exact limits */
    ck_assert(sp[8] == 100.0f && sg[8] == 1.0f && th[8] == 1.0f);
    ck_assert(th[0] == -1.0f && sg[0] > 0.0f && sp[0] > 0.0f);
    ck_assert(sp[9] == 1e30f && sp[10] == 0.0f);
    /* tiny |x| keeps full relative accuracy (no 1 - e^-2x cancellation) */
    ck_assert(th[3] == -1e-30f && th[5] == 1e-30f);
    ck_assert(sg[4] == 0.5f && th[4] == 0.0f);
    tu_assert_close(sp[4], log(2.0), 0, 2.5e-7);

    /* infinities and NaN */
    float s[4] = {INFINITY, -INFINITY, NAN, -NAN}, o[4];
    tensor S = tensor_mat(s, 1, 4), O = tensor_mat(o, 1, 4);
    tensor_softplus(&S, &O);
    ck_assert(o[0] == INFINITY && o[1] == 0.0f && isnan(o[2]) && isnan(o[3]));
    tensor_sigmoid(&S, &O);
    ck_assert(o[0] == 1.0f && o[1] == 0.0f && isnan(o[2]) && isnan(o[3]));
    tensor_tanh(&S, &O);
    ck_assert(o[0] == 1.0f && o[1] == -1.0f && isnan(o[2]) && isnan(o[3]));
    tensor_relu(&S, &O);
    ck_assert(o[0] == INFINITY && o[1] == 0.0f && isnan(o[2]));
}
END_TEST

/* Dense sweep: relative accuracy of the three vmath-based kernels over
 * [-100, 100], where the results span from subnormal to 100. */
START_TEST(test_transcendental_sweep)
{
    enum { N = 200001 };
    float *x = malloc(N * sizeof *x), *o = malloc(N * sizeof *o);
    for (int i = 0; i < N; i++)
        x[i] = (float)(-100.0 + 200.0 * i / (N - 1));
    tensor X = tensor_mat(x, 1, N), O = tensor_mat(o, 1, N);
    double worst[3] = {0, 0, 0};
    for (int f = 0; f < 3; f++) {
        if (f == 0)
            tensor_softplus(&X, &O);
        else if (f == 1)
            tensor_sigmoid(&X, &O);
        else
            tensor_tanh(&X, &O);
        for (int i = 0; i < N; i++) {
            double want = f == 0   ? softplus_ref(x[i])
                          : f == 1 ? sigmoid_ref(x[i])
                                   : tanh((double)x[i]);
            /* subnormal results: absolute accuracy of their grid */
            double rel = fabs(want) < FLT_MIN
                             ? (fabs(o[i] - want) <= 4 * FLT_TRUE_MIN ? 0 : 1)
                             : fabs(o[i] - want) / fabs(want);
            if (rel > worst[f])
                worst[f] = rel;
        }
    }
    ck_assert_msg(worst[0] < 1e-6 && worst[1] < 1e-6 && worst[2] < 1e-6,
                  "worst relative errors: softplus %g sigmoid %g tanh %g",
                  worst[0], worst[1], worst[2]);
    free(x);
    free(o);
}
END_TEST

/* ---- reductions --------------------------------------------------------- */

static void check_log_softmax(const float *x, size_t rows, size_t cols,
                              size_t ld, int in_place)
{
    float *buf = malloc(rows * ld * sizeof *buf);
    float *src = malloc(rows * ld * sizeof *src);
    memcpy(src, x, rows * ld * sizeof *src);
    memcpy(buf, x, rows * ld * sizeof *buf);
    tensor X = tensor_view(src, rows, cols, ld);
    tensor O = tensor_view(in_place ? src : buf, rows, cols, ld);
    tensor_log_softmax_rows(&X, &O);
    for (size_t i = 0; i < rows; i++) {
        double mx = -INFINITY;
        for (size_t j = 0; j < cols; j++)
            mx = fmax(mx, x[i * ld + j]);
        double s = 0;
        for (size_t j = 0; j < cols; j++)
            s += exp(x[i * ld + j] - mx);
        double psum = 0;
        size_t bad = 0;
        for (size_t j = 0; j < cols; j++) {
            double want = x[i * ld + j] - mx - log(s);
            double got = O.data[i * ld + j];
            bad += !(fabs(got - want) <= 2e-6 * (1 + fabs(want)));
            psum += exp(got);
        }
        ck_assert_msg(bad == 0, "log_softmax row %zu of %zux%zu: %zu wrong", i,
                      rows, cols, bad);
        tu_assert_close(psum, 1.0, 1e-5, 0);
        for (size_t j = cols; j < ld; j++) /* padding untouched */
            bad += O.data[i * ld + j] != x[i * ld + j];
        ck_assert_msg(bad == 0, "log_softmax wrote into the padding");
    }
    free(buf);
    free(src);
}

START_TEST(test_log_softmax)
{
    tu_rng r = {301};
    for (int rep = 0; rep < 20; rep++) {
        size_t rows = rand_dim(&r), cols = rand_dim(&r);
        size_t ld = cols + (rep % 2) * (1 + tu_next(&r) % 4);
        float *x = malloc(rows * ld * sizeof *x);
        tu_fill_uniform(&r, x, rows * ld, -8, 8);
        check_log_softmax(x, rows, cols, ld, rep % 3 == 0);
        free(x);
    }
}
END_TEST

START_TEST(test_log_softmax_huge_logits)
{
    /* logits of 1e4: a naive exp overflows; the differences must survive */
    float x[3 * 4] = {1e4f,  1e4f - 1, 1e4f - 2, -1e4f,
                      -1e4f, -1e4f + 3, -1e4f,   -1e4f + 0.5f,
                      0,     1e4f,      -1e4f,   5e3f};
    for (int in_place = 0; in_place < 2; in_place++)
        check_log_softmax(x, 3, 4, 4, in_place);
    float o[12];
    tensor X = tensor_mat(x, 3, 4), O = tensor_mat(o, 3, 4);
    tensor_log_softmax_rows(&X, &O);
    /* exact expectations: log(1 + e^-1 + e^-2) for the first row */
    double l = log(1 + exp(-1.0) + exp(-2.0));
    tu_assert_close(o[0], -l, 1e-6, 0);
    tu_assert_close(o[1], -1 - l, 1e-6, 0);
    tu_assert_close(o[3], -2e4 - l, 0, 1e-7);
    tu_assert_close(o[9], 0.0, 1e-6, 0);
    tu_assert_close(o[8], -1e4, 0, 1e-7);
    /* a single column is log(1) = 0 whatever the value */
    float one[2] = {1e4f, -3e4f}, oo[2];
    tensor X1 = tensor_mat(one, 2, 1), O1 = tensor_mat(oo, 2, 1);
    tensor_log_softmax_rows(&X1, &O1);
    ck_assert(oo[0] == 0.0f && oo[1] == 0.0f);
}
END_TEST

START_TEST(test_sum_rows)
{
    tu_rng r = {401};
    for (int rep = 0; rep < 30; rep++) {
        size_t rows = rand_dim(&r), cols = rand_dim(&r);
        if (rep == 29)
            cols = 600; /* more than one strip of columns */
        view_buf X = vb_make(&r, rows, cols, rep % 2, -3, 3);
        float *out = malloc((cols + 1) * sizeof *out);
        float *init = malloc((cols + 1) * sizeof *init);
        tu_fill_uniform(&r, init, cols + 1, -1, 1);
        int acc = rep % 3 != 0;
        memcpy(out, init, (cols + 1) * sizeof *out);
        tensor_sum_rows(&X.t, out, acc);
        size_t bad = 0;
        for (size_t j = 0; j < cols; j++) {
            double s = acc ? init[j] : 0.0;
            for (size_t i = 0; i < rows; i++)
                s += at(&X.t, i, j);
            bad += !tu_close(out[j], s, 1e-6, 2e-7);
        }
        ck_assert_msg(bad == 0, "sum_rows %zux%zu: %zu wrong columns", rows,
                      cols, bad);
        ck_assert(out[cols] == init[cols]); /* nothing written past cols */
        vb_check_padding(&X);
        free(out);
        free(init);
        free(X.buf);
    }
}
END_TEST

START_TEST(test_sum_rows_many_rows)
{
    /* 10^4 rows of 0.1: accumulating in float would drift by ~1e-4
     * relative; the sum is correct to float rounding */
    enum { ROWS = 10000, COLS = 3 };
    float *x = malloc(ROWS * COLS * sizeof *x);
    for (int i = 0; i < ROWS * COLS; i++)
        x[i] = 0.1f;
    tensor X = tensor_mat(x, ROWS, COLS);
    float out[COLS];
    tensor_sum_rows(&X, out, 0);
    for (int j = 0; j < COLS; j++)
        tu_assert_close(out[j], ROWS * (double)0.1f, 0, 1e-7);
    free(x);
}
END_TEST

START_TEST(test_sum_sq)
{
    tu_rng r = {501};
    for (int rep = 0; rep < 30; rep++) {
        size_t rows = rand_dim(&r), cols = rand_dim(&r);
        view_buf X = vb_make(&r, rows, cols, rep % 2, -5, 5);
        double s = 0;
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++)
                s += (double)at(&X.t, i, j) * at(&X.t, i, j);
        tu_assert_close(tensor_sum_sq(&X.t), s, 0, 1e-13);
        free(X.buf);
    }
    /* squares of float values are exact in double: 3^2 + 4^2 */
    float v[2] = {3, 4};
    tensor V = tensor_mat(v, 1, 2);
    ck_assert(tensor_sum_sq(&V) == 25.0);
    /* values whose float squares would overflow */
    float big[2] = {3e30f, 4e30f};
    tensor B = tensor_mat(big, 2, 1);
    tu_assert_close(tensor_sum_sq(&B), 25e60, 0, 1e-6);
}
END_TEST

START_TEST(test_all_finite)
{
    enum { N = 37 };
    float x[N];
    for (int i = 0; i < N; i++)
        x[i] = (float)(i - 18) * 1e37f; /* large but finite */
    x[0] = -0.0f;
    x[1] = FLT_MAX;
    x[2] = -FLT_MAX;
    x[3] = FLT_TRUE_MIN;
    ck_assert_int_eq(tensor_all_finite(x, N), 1);
    ck_assert_int_eq(tensor_all_finite(x, 0), 1);
    static const float bad[] = {NAN, INFINITY, -INFINITY};
    /* one bad value anywhere, including the vector tail */
    for (int b = 0; b < 3; b++)
        for (int pos = 0; pos < N; pos += 6) {
            float saved = x[pos];
            x[pos] = bad[b];
            ck_assert_msg(tensor_all_finite(x, N) == 0, "bad %d at %d", b, pos);
            ck_assert_int_eq(tensor_all_finite(x, (size_t)pos), 1);
            x[pos] = saved;
        }
}
END_TEST

START_TEST(test_empty_views)
{
    /* zero rows or columns: nothing is read or written */
    float sentinel[4] = {1, 2, 3, 4};
    tensor e0 = tensor_view(sentinel, 0, 4, 4), e1 = tensor_view(sentinel, 2, 0, 2);
    tensor_fill(&e0, 9.0f);
    tensor_fill(&e1, 9.0f);
    tensor_softplus(&e0, &e0);
    tensor_log_softmax_rows(&e1, &e1);
    float out[4] = {5, 5, 5, 5};
    tensor_sum_rows(&e0, out, 1);
    ck_assert(out[0] == 5.0f);
    tensor_sum_rows(&e0, out, 0);
    ck_assert(out[0] == 0.0f && out[3] == 0.0f);
    ck_assert(tensor_sum_sq(&e1) == 0.0);
    for (int i = 0; i < 4; i++)
        ck_assert(sentinel[i] == (float)(i + 1));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tensor");
    TCase *tg = tcase_create("gemm");
    tcase_set_timeout(tg, 60);
    tcase_add_test(tg, test_gemm_random);
    tcase_add_test(tg, test_gemm_shapes);
    tcase_add_test(tg, test_gemm_subblocks);
    tcase_add_test(tg, test_gemm_empty_inner);
    suite_add_tcase(s, tg);
    TCase *te = tcase_create("elementwise");
    tcase_set_timeout(te, 60);
    tcase_add_test(te, test_elementwise_random);
    tcase_add_test(te, test_elementwise_in_place);
    tcase_add_test(te, test_elementwise_long_rows);
    tcase_add_test(te, test_softplus_sigmoid_tanh_extremes);
    tcase_add_test(te, test_transcendental_sweep);
    suite_add_tcase(s, te);
    TCase *tr = tcase_create("reductions");
    tcase_set_timeout(tr, 60);
    tcase_add_test(tr, test_log_softmax);
    tcase_add_test(tr, test_log_softmax_huge_logits);
    tcase_add_test(tr, test_sum_rows);
    tcase_add_test(tr, test_sum_rows_many_rows);
    tcase_add_test(tr, test_sum_sq);
    tcase_add_test(tr, test_all_finite);
    tcase_add_test(tr, test_empty_views);
    suite_add_tcase(s, tr);
    return tu_run(s);
}
