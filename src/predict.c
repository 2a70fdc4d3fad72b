/* Monte Carlo predictive distribution: the predictor handle, its sampled
 * forward passes and the one-shot predictors built on it.  The statistics
 * of one input's samples are in uncertainty.c, the refusal rules and
 * calibration in refusal.c.
 *
 * Three ways to get sample s of input x (bnn_sampling):
 * - NETWORKS: one whole network W_s = mu + sigma * eps drawn on the RNG
 *   stream (seed, s) and shared by every input (the original program).
 * - MARGINAL: for a dense layer with input h the pre-activation is exactly
 *   N(h.mu + b_mu, h^2.sigma^2 + b_sigma^2), independent across units
 *   (local reparameterization), so it is drawn directly: a_j = m_j +
 *   sqrt(v_j) eps[s, l, j].  Layer 0 costs two products per input for all
 *   samples together; later layers take the S sampled activations of each
 *   input as rows.  eps[s, l, .] comes from the stream (seed, s, layer l)
 *   and is the same for every input, so an input's samples depend on
 *   (seed, x, s) only, as whole networks do.  Every per-input statistic has
 *   the distribution it has under NETWORKS; only the joint law of two
 *   inputs differs.  Every layer is marginal: sampling a later layer's
 *   weights instead costs one normal per weight and sample, which only
 *   pays for itself once a block holds more inputs than one normal costs
 *   multiply-adds (tens), and then saves at most half of that layer's
 *   products; the choice could not depend on the batch without making the
 *   results depend on it, and small batches are what this mode is for.
 *   The rule holds for dense layers only: a convolution's kernel is shared
 *   by every position of an image, so its outputs are correlated given
 *   the input; a network with convolutions is sampled as whole networks
 *   in this mode (NETWORKS' results exactly).  Drawing kernels per (input,
 *   sample) instead would cost a draw per kernel weight, input and sample
 *   for nothing but a different joint law across inputs.
 * - MEAN: the network of posterior means, once (no epistemic part).
 *
 * Convolutions run on the same panels: a panel's 16 inputs at one output
 * position form one panel of dense_panels' rows, gathered (im2col) from
 * the packed NHWC activations by copying whole 16-lane groups; pooling
 * and per-layer activations work in place on the packed layout.
 *
 * Every product runs through dense.c rather than BLAS, whose results for
 * one row change with the other rows of the product: with it an input's
 * samples are the same bits whatever batch, chunk or thread they come
 * from.  A predictor owns all its buffers and threads, so a run allocates
 * nothing; inputs go through it in chunks whose per-sample outputs are kept
 * in one buffer (chunk x S x classes) and reduced in sample order. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "cpu.h"
#include "dense.h"
#include "pool.h"
#include "predict.h"
#include "refusal.h"
#include "rng.h"
#include "tensor.h"
#include "uncertainty.h"
#include "vmath.h"

/* Stream steps are 40 bits wide (rng_stream_id). */
#define MAX_SAMPLES ((size_t)1 << 40)

/* The `particle` field of the RNG stream of marginal pre-activation noise
 * (whole networks use 0). */
#define MARGINAL_STREAM 1u

BNN_API void bnn_predict_config_init(bnn_predict_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    cfg->num_samples = 100;
    cfg->seed = 1;
    cfg->rule = BNN_REFUSE_MEDIAN;
    cfg->threshold = 0.2f;
    cfg->n_quantiles = 0;
    cfg->quantiles = NULL;
    cfg->mean_probs = NULL;
    cfg->num_threads = 1;
    cfg->sampling = BNN_SAMPLING_MARGINAL;
}

/* The caller's config over the defaults: only fields its struct_size
 * covers are read; every setting is validated. */
static bnn_status read_config(const bnn_predict_config *cfg,
                              bnn_predict_config *c, const char *fn)
{
    bnn_predict_config_init(c);
    if (!cfg)
        return BNN_OK;
    bnn_status st = sized_read(c, sizeof *c, cfg,
                               SIZED_END(bnn_predict_config, num_samples),
                               "bnn_predict_config");
    if (st != BNN_OK)
        return st;
    if (c->num_samples == 0)
        return error_set(BNN_E_INVALID, "%s: num_samples is 0", fn);
    if (c->num_samples > MAX_SAMPLES)
        return error_set(BNN_E_INVALID, "%s: num_samples %zu exceeds 2^40",
                         fn, c->num_samples);
    if (c->num_threads > BNN_MAX_THREADS)
        return error_set(BNN_E_INVALID,
                         "%s: num_threads must be in [0, %d], got %zu", fn,
                         BNN_MAX_THREADS, c->num_threads);
    if (c->num_threads == 0)
        c->num_threads = 1;
    if (c->sampling != BNN_SAMPLING_MARGINAL &&
        c->sampling != BNN_SAMPLING_NETWORKS &&
        c->sampling != BNN_SAMPLING_MEAN)
        return error_set(BNN_E_INVALID, "%s: unknown sampling mode %d", fn,
                         (int)c->sampling);
    if ((st = refusal_check_rule(fn, c->rule, c->threshold)))
        return st;
    if (c->n_quantiles && !c->quantiles)
        return error_set(BNN_E_INVALID,
                         "%s: n_quantiles %zu but NULL quantile levels", fn,
                         c->n_quantiles);
    for (size_t j = 0; j < c->n_quantiles; j++)
        if (!(c->quantiles[j] >= 0.0f && c->quantiles[j] <= 1.0f))
            return error_set(BNN_E_INVALID,
                             "%s: quantile level %zu = %g not in [0, 1]", fn,
                             j, (double)c->quantiles[j]);
    return BNN_OK;
}

/* ---- sizes ---------------------------------------------------------------- */

/* Widest hidden layer, before pooling (a convolution's pre-activations
 * are pooled in place). */
static size_t hidden_width(const bnn_model *m)
{
    size_t w = 0;
    for (size_t l = 0; l + 2 < m->n_sizes; l++)
        if (model_act_pre(m, l) > w)
            w = model_act_pre(m, l);
    return w;
}

/* Output positions of convolution l gathered per call of dense_panels:
 * col_floats(m) floats at most, one position at least. */
#define COL_FLOATS ((size_t)1 << 16)
static size_t conv_positions(const bnn_model *m, size_t l)
{
    const struct model_layer *y = &m->layer[l];
    size_t k = model_layer_in(m, l) * DENSE_PANEL, pos = y->out_h * y->out_w;
    size_t n = COL_FLOATS / k;
    n = n ? n : 1;
    return n < pos ? n : pos;
}

/* Floats of the im2col buffer (0 without convolutions). */
static size_t col_floats(const bnn_model *m)
{
    size_t f = 0;
    for (size_t l = 0; l + 1 < m->n_sizes; l++)
        if (m->layer[l].conv) {
            size_t n = conv_positions(m, l) * model_layer_in(m, l) * DENSE_PANEL;
            f = n > f ? n : f;
        }
    return f;
}

/* Widest layer output (hidden layers and the output layer). */
static size_t out_width(const bnn_model *m)
{
    size_t w = 0;
    for (size_t l = 1; l < m->n_sizes; l++)
        if (m->sizes[l] > w)
            w = m->sizes[l];
    return w;
}

/* Floats per input row of the forward buffers: packed input, two hidden
 * buffers and the packed output; 0 on overflow. */
static size_t forward_row_floats(const bnn_model *m)
{
    size_t hw2, in = m->sizes[0], out = m->sizes[m->n_sizes - 1];
    if (mem_mul_overflow(hidden_width(m), 2, &hw2) || hw2 > SIZE_MAX - in ||
        hw2 + in > SIZE_MAX - out)
        return 0;
    return hw2 + in + out;
}

/* Rows per chunk, given `extra` bytes of per-row buffers besides the
 * forward pass's: as many whole panels as fit in the budget, at least one;
 * 0 if a single row's size overflows.  A forced chunk (tests) is used as
 * is. */
static size_t choose_chunk(const bnn_model *m, size_t n, size_t extra,
                           size_t forced)
{
    size_t fl = forward_row_floats(m), row;
    if (!fl || mem_mul_overflow(fl, sizeof(float), &row) ||
        row > SIZE_MAX - extra)
        return 0;
    row += extra;
    if (forced)
        return forced < n ? forced : n;
    /* Whole panels: a partial one is computed in full anyway. */
    size_t c = PREDICT_WORKSPACE_BYTES / row / DENSE_PANEL * DENSE_PANEL;
    if (c < DENSE_PANEL)
        c = DENSE_PANEL;
    return c < n ? c : n;
}

size_t predict_auto_chunk(const bnn_model *m, size_t n, size_t extra)
{
    return choose_chunk(m, n, extra, 0);
}

static size_t pad_panel(size_t rows)
{
    return (rows + DENSE_PANEL - 1) / DENSE_PANEL * DENSE_PANEL;
}

/* Element j of row q in a panel-packed buffer of `width` columns. */
static size_t pk(size_t q, size_t j, size_t width)
{
    return ((q / DENSE_PANEL) * width + j) * DENSE_PANEL + q % DENSE_PANEL;
}

/* ---- per-thread workspace -------------------------------------------------- */

typedef struct pred_ws {
    float *net;     /* NETWORKS: one sampled network, n_params */
    float *xp, *xq; /* packed inputs (MARGINAL: and their squares) */
    float *m0, *v0; /* MARGINAL: layer 0's mean and variance per input */
    float *a, *b, *c, *d; /* packed activations (see the forward passes) */
    float *eps;     /* MARGINAL: noise of one block's samples, one layer */
    float *yp;      /* NETWORKS, MEAN: the last layer's outputs, packed */
    float *col;     /* convolutions: gathered input patches (im2col) */
} pred_ws;

#define WS_BUFS(w) {&(w)->net, &(w)->xp, &(w)->xq, &(w)->m0, &(w)->v0,    \
                    &(w)->a, &(w)->b, &(w)->c, &(w)->d, &(w)->eps, &(w)->yp, \
                    &(w)->col}

struct bnn_predictor {
    const bnn_guide *g;
    const bnn_model *m;
    bnn_predict_config cfg; /* quantiles point at `levels`; no mean_probs */
    float *levels;
    size_t S;      /* samples kept per input: 1 for MEAN */
    size_t C, in;
    size_t chunk;  /* inputs per chunk */
    size_t rows;   /* MARGINAL: (input, sample) rows per block, padded */
    size_t T;
    pool *workers;
    float *s2;     /* MARGINAL: sigma^2 of every parameter */
    float *w0t;    /* layer 0 transposed: mu, then sigma^2 (MARGINAL) */
    float *noise;  /* MARGINAL: every eps[s, l, j] when they fit, or NULL */
    size_t noise_off[BNN_MAX_LAYERS];
    float *buf;    /* chunk x S x C: each input's per-sample outputs */
    float **scratch; /* T x S floats for the order statistics */
    pred_ws *ws;   /* T */
};

static void ws_free(const bnn_model *m, pred_ws *w)
{
    float **bufs[] = WS_BUFS(w);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        mem_free(&m->alloc, *bufs[i]);
        *bufs[i] = NULL;
    }
}

/* Buffers for `chunk` inputs (NETWORKS, MEAN) or for blocks of `rows`
 * (input, sample) rows over up to `chunk` inputs (MARGINAL).  Sizes were
 * checked against overflow by the caller's choice of chunk and rows. */
static int ws_init(pred_ws *w, const bnn_predictor *p)
{
    const bnn_model *m = p->m;
    const bnn_allocator *al = &m->alloc;
    size_t ci = pad_panel(p->chunk), in = p->in, C = p->C;
    memset(w, 0, sizeof *w);
    int ok = 1;
#define GET(ptr, n, k)                                                     \
    do {                                                                   \
        if (ok && !((ptr) = mem_alloc_array(al, (n), (k) * sizeof(float)))) \
            ok = 0;                                                        \
    } while (0)
    if (p->cfg.sampling == BNN_SAMPLING_MARGINAL) {
        size_t ow = out_width(m), o0 = m->sizes[1], R = p->rows;
        GET(w->xp, ci, in);
        GET(w->xq, ci, in);
        GET(w->m0, ci, o0);
        GET(w->v0, ci, o0);
        GET(w->a, R, ow);
        GET(w->b, R, ow);
        GET(w->c, R, ow);
        GET(w->d, R, ow);
        /* the noise of a block, or one input's x^2, m and v rows */
        size_t ne = R * ow + ow > in + 2 * o0 ? R * ow + ow : in + 2 * o0;
        GET(w->eps, ne, 1);
    } else {
        size_t hw = hidden_width(m);
        if (p->cfg.sampling == BNN_SAMPLING_NETWORKS)
            GET(w->net, m->n_params, 1);
        GET(w->xp, ci, in);
        GET(w->yp, ci, C);
        /* MEAN: one row of layer 0 past the two hidden buffers */
        size_t na = 2 * hw + (p->cfg.sampling == BNN_SAMPLING_MEAN ? m->sizes[1] : 0);
        if (na)
            GET(w->a, ci, na);
        if (m->has_conv)
            GET(w->col, col_floats(m), 1);
    }
#undef GET
    if (!ok)
        ws_free(m, w);
    return ok;
}

/* ---- packing ------------------------------------------------------------- */

/* rows x in of x into panels, the last one padded with zero inputs (they
 * are computed and dropped); squares into xq when it is not NULL. */
static void pack_inputs(const float *x, size_t rows, size_t in, float *xp,
                        float *xq)
{
    size_t padded = pad_panel(rows);
    for (size_t i = 0; i < padded; i++) {
        size_t o = (i / DENSE_PANEL) * in * DENSE_PANEL + i % DENSE_PANEL;
        for (size_t k = 0; k < in; k++) {
            float v = i < rows ? x[i * in + k] : 0.0f;
            xp[o + k * DENSE_PANEL] = v;
            if (xq) {
                float sq = v * v;
                xq[o + k * DENSE_PANEL] = sq;
            }
        }
    }
}

/* A hidden layer's own activation (model_layer.act). */
static void activate(bnn_activation act, float *h, size_t n)
{
    tensor a = tensor_mat(h, 1, n);
    if (act == BNN_ACT_TANH)
        tensor_tanh(&a, &a);
    else if (act == BNN_ACT_RELU)
        tensor_relu(&a, &a);
}

/* ---- convolution and pooling on packed panels ------------------------------- */

/* Convolution y (weights W, biases b) on npan panels of packed inputs:
 * src holds in_h x in_w x in_c per input, dst gets out_h x out_w x out_c
 * pre-activations.  The rows dense_panels sees are (input, output
 * position) pairs, a panel being the 16 inputs of a panel at one position,
 * so gathering a patch (im2col) copies whole 16-lane groups, and the
 * panels of one call land in dst where the positions belong.  Each value
 * is dense_panels' sum of its own input's products in the order
 * [ky][kx][c] (padding contributes exact zeros), so it depends on nothing
 * but that input, whatever the batch. */
static void conv_panels(const bnn_model *m, size_t l, const float *W, const float *b,
                        const float *src, float *dst, size_t npan, float *col)
{
    const struct model_layer *y = &m->layer[l];
    size_t K = model_layer_in(m, l), P = y->out_h * y->out_w, npos = conv_positions(m, l);
    size_t win = model_act_in(m, l), wout = model_act_pre(m, l);
    size_t cb = y->in_c * DENSE_PANEL * sizeof(float);
    for (size_t pn = 0; pn < npan; pn++) {
        const float *sp = src + pn * win * DENSE_PANEL;
        float *dp = dst + pn * wout * DENSE_PANEL;
        for (size_t pos0 = 0; pos0 < P; pos0 += npos) {
            size_t n = P - pos0 < npos ? P - pos0 : npos;
            for (size_t t = 0; t < n; t++) {
                size_t oy = (pos0 + t) / y->out_w, ox = (pos0 + t) % y->out_w;
                float *ct = col + t * K * DENSE_PANEL;
                for (size_t ky = 0; ky < y->kh; ky++) {
                    /* padded coordinates: row iy + ph of the padded input */
                    size_t iy = oy * y->sh + ky;
                    int row_in = iy >= y->ph && iy - y->ph < y->in_h;
                    for (size_t kx = 0; kx < y->kw; kx++) {
                        size_t ix = ox * y->sw + kx;
                        float *cc = ct + (ky * y->kw + kx) * y->in_c * DENSE_PANEL;
                        if (row_in && ix >= y->pw && ix - y->pw < y->in_w)
                            memcpy(cc,
                                   sp + ((iy - y->ph) * y->in_w + (ix - y->pw)) * y->in_c *
                                            DENSE_PANEL,
                                   cb);
                        else
                            memset(cc, 0, cb);
                    }
                }
            }
            dense_panels(W, b, y->out_c, K, col, dp + pos0 * y->out_c * DENSE_PANEL, n,
                         DENSE_PATH_AUTO);
        }
    }
}

/* 2 x 2 pooling, stride 2 (an odd last row or column dropped), of layer
 * y's activations on npan packed panels, in place: an output never lies
 * after the first of its four inputs, nor after any input of a later
 * output, so walking upwards reads every input before it is overwritten.
 * Average: ((a + b) + c + d) / 4 in row-major order of the window. */
static void pool_panels(const struct model_layer *y, float *h, size_t npan)
{
    size_t H = y->out_h, Wd = y->out_w, C = y->out_c, ph = H / 2, pw = Wd / 2;
    size_t pre = H * Wd * C, post = ph * pw * C, L = DENSE_PANEL;
    int avg = y->pool == MODEL_POOL_AVG;
    for (size_t pn = 0; pn < npan; pn++) {
        const float *sp = h + pn * pre * L;
        float *dp = h + pn * post * L;
        for (size_t py = 0; py < ph; py++)
            for (size_t px = 0; px < pw; px++)
                for (size_t c = 0; c < C; c++) {
                    const float *a = sp + ((2 * py * Wd + 2 * px) * C + c) * L;
                    const float *b = a + C * L, *cc = a + Wd * C * L, *d = cc + C * L;
                    float v[DENSE_PANEL];
                    for (size_t r = 0; r < L; r++) {
                        if (avg) {
                            v[r] = (((a[r] + b[r]) + cc[r]) + d[r]) * 0.25f;
                        } else {
                            float u = a[r] > b[r] ? a[r] : b[r];
                            float t = cc[r] > d[r] ? cc[r] : d[r];
                            v[r] = u > t ? u : t;
                        }
                    }
                    memcpy(dp + ((py * pw + px) * C + c) * L, v, sizeof v);
                }
    }
}

/* Row q of a packed last layer into y (C floats), log-softmax for a
 * categorical model. */
static void unpack_row(const bnn_model *m, const float *z, size_t q,
                       size_t C, float *y)
{
    for (size_t c = 0; c < C; c++)
        y[c] = z[pk(q, c, C)];
    if (m->likelihood == BNN_LIK_CATEGORICAL) {
        tensor t = tensor_mat(y, 1, C);
        tensor_log_softmax_rows(&t, &t);
    }
}

/* ---- NETWORKS and MEAN: one network on packed inputs ----------------------- */

#define ROW_KERNEL_MAX 4
static void dense_row_t(const float *WT, const float *b, size_t out,
                        size_t in, const float *x, float *y);

/* The network `net` (the guide's layout) on `rows` inputs, packed in w->xp
 * or, when x is not NULL (MEAN, up to ROW_KERNEL_MAX rows), read from x
 * by layer 0's transposed means; row i of the last layer goes to
 * y + i * ystride. */
static void forward_net(const bnn_predictor *p, pred_ws *w, const float *net,
                        const float *x, size_t rows, float *y, size_t ystride)
{
    const bnn_model *m = p->m;
    size_t L = model_n_layers(m), hw = hidden_width(m);
    size_t npan = pad_panel(rows) / DENSE_PANEL, half = npan * DENSE_PANEL * hw;
    const float *src = w->xp;
    for (size_t l = 0; l < L; l++) {
        size_t in = model_layer_in(m, l), out = model_layer_out(m, l);
        float *dst = l + 1 == L ? w->yp : w->a + (l % 2) * half;
        if (m->layer[l].conv) {
            conv_panels(m, l, net + m->w_off[l], net + m->b_off[l], src, dst, npan, w->col);
        } else if (l == 0 && x) {
            float *row = w->a + half; /* free until layer 1 writes it */
            for (size_t i = 0; i < npan * DENSE_PANEL; i++) {
                if (i < rows)
                    dense_row_t(p->w0t, net + m->b_off[0], out, in,
                                x + i * in, row);
                for (size_t j = 0; j < out; j++)
                    dst[pk(i, j, out)] = i < rows ? row[j] : 0.0f;
            }
        } else {
            dense_panels(net + m->w_off[l], net + m->b_off[l], out, in, src,
                         dst, npan, DENSE_PATH_AUTO);
        }
        if (l + 1 < L) {
            activate(m->layer[l].act, dst, npan * model_act_pre(m, l) * DENSE_PANEL);
            if (m->layer[l].pool)
                pool_panels(&m->layer[l], dst, npan);
        }
        src = dst;
    }
    for (size_t i = 0; i < rows; i++)
        unpack_row(m, w->yp, i, p->C, y + i * ystride);
}

/* ---- MARGINAL ----------------------------------------------------------------- */

/* Standard normals of layer l for samples [s0, s0 + ns), unit-major:
 * eps[j * ld + s - s0], so that consecutive samples of a unit are
 * contiguous; tmp holds `out` floats. */
static void layer_noise(uint64_t seed, size_t l, size_t s0, size_t ns,
                        size_t out, float *eps, size_t ld, float *tmp)
{
    for (size_t s = 0; s < ns; s++) {
        rng_normal_fill(seed,
                        rng_stream_id((uint64_t)(s0 + s), MARGINAL_STREAM,
                                      (unsigned)l, RNG_PREDICT),
                        0, out, tmp);
        for (size_t j = 0; j < out; j++)
            eps[j * ld + s] = tmp[j];
    }
}

/* The noise of layer l for samples [s0, s0 + ns), unit-major with stride
 * *ld: from the predictor's cache (drawn once at creation: it does not
 * depend on the input), or drawn into the workspace. */
static const float *noise_of(const bnn_predictor *p, pred_ws *w, size_t l,
                             size_t s0, size_t ns, size_t out, size_t *ld)
{
    if (p->noise) {
        *ld = p->S;
        return p->noise + p->noise_off[l] + s0;
    }
    *ld = ns;
    layer_noise(p->cfg.seed, l, s0, ns, out, w->eps, ns, w->eps + ns * out);
    return w->eps;
}

/* 1 if the DENSE_PANEL rows from q0 are one input's consecutive samples
 * (row q is sample q % ns of input q / ns), so a unit's noise for the
 * panel is contiguous. */
static int panel_is_one_input(size_t q0, size_t rows, size_t ns)
{
    return q0 + DENSE_PANEL <= rows && q0 % ns + DENSE_PANEL <= ns;
}

#if defined(__GNUC__)
/* 8 floats / ints, unaligned and aliasing-safe (as in dense.c): loops of a
 * panel's 16 lanes written with them vectorize on every build, where the
 * plain loops were unrolled into scalar code. */
typedef float pv8 __attribute__((vector_size(32), aligned(4), may_alias));
typedef int32_t pi8 __attribute__((vector_size(32), aligned(4), may_alias));
#endif

/* Layer 0's sampled pre-activations z = m + sd eps of (input i, sample s)
 * rows q < rows of a packed block, padding rows zero; with relu_sq (a
 * ReLU hidden layer follows) z becomes the activation and h2 its square,
 * in the same pass.  m and sd: packed per input, the block's first input
 * at index i_off.  ReLU keeps -0 as tensor_relu does (x < 0 ? 0 : x). */
CPU_CLONES static void layer0_rows(float *z, float *h2, const float *m,
                                   const float *sd, size_t i_off,
                                   const float *eps, size_t ld, size_t rows,
                                   size_t rp, size_t ns, size_t out,
                                   int relu_sq)
{
    for (size_t q0 = 0; q0 < rp; q0 += DENSE_PANEL) {
        float *zp = z + q0 * out, *hp = h2 + q0 * out;
#if defined(__GNUC__)
        if (panel_is_one_input(q0, rows, ns)) {
            size_t o = pk(i_off + q0 / ns, 0, out), s = q0 % ns;
            const pv8 zero = {0};
            for (size_t j = 0; j < out; j++) {
                float mj = m[o + j * DENSE_PANEL], sj = sd[o + j * DENSE_PANEL];
                pv8 mv = zero + mj, sv = zero + sj;
                const pv8 *ej = (const pv8 *)(eps + j * ld + s);
                pv8 *zj = (pv8 *)(zp + j * DENSE_PANEL);
                pv8 *hj = (pv8 *)(hp + j * DENSE_PANEL);
                for (int h = 0; h < DENSE_PANEL / 8; h++) {
                    pv8 t = sv * ej[h];
                    pv8 v = mv + t;
                    if (relu_sq) {
                        pi8 keep = v >= zero;
                        v = (pv8)((pi8)v & keep);
                        pv8 v2 = v * v;
                        hj[h] = v2;
                    }
                    zj[h] = v;
                }
            }
            continue;
        }
#endif
        size_t off[DENSE_PANEL], smp[DENSE_PANEL];
        for (size_t r = 0; r < DENSE_PANEL; r++) {
            size_t q = q0 + r;
            off[r] = q < rows ? pk(i_off + q / ns, 0, out) : 0;
            smp[r] = q < rows ? q % ns : 0;
        }
        for (size_t j = 0; j < out; j++)
            for (size_t r = 0; r < DENSE_PANEL; r++) {
                float v = 0.0f;
                if (q0 + r < rows) {
                    float t = sd[off[r] + j * DENSE_PANEL] * eps[j * ld + smp[r]];
                    v = m[off[r] + j * DENSE_PANEL] + t;
                }
                if (relu_sq) {
                    v = v < 0.0f ? 0.0f : v;
                    float v2 = v * v;
                    hp[j * DENSE_PANEL + r] = v2;
                }
                zp[j * DENSE_PANEL + r] = v;
            }
    }
}

/* Up to ROW_KERNEL_MAX inputs per group, layer 0 runs row by row on the
 * transposed weights (a pass over them per input) rather than on a panel
 * of 16, whose padding rows cost as much as real ones. */

/* dense_panels' operations for one input on W transposed (in x out):
 * y[j] = sum over k in increasing order of the rounded WT[k, j] x[k],
 * from 0, then + b[j]; the same bits, and the loop over j vectorizes. */
CPU_CLONES static void dense_row_t(const float *WT, const float *b, size_t out,
                        size_t in, const float *x, float *y)
{
    for (size_t j = 0; j < out; j++)
        y[j] = 0.0f;
    for (size_t k = 0; k < in; k++) {
        const float *wk = WT + k * out;
        float xk = x[k];
        for (size_t j = 0; j < out; j++) {
            float t = wk[j] * xk;
            y[j] += t;
        }
    }
    for (size_t j = 0; j < out; j++)
        y[j] += b[j];
}

/* z = m + sqrt(v) eps for rows q < rows of a packed block (row q is sample
 * q % ns), in place in m; walked in packed order, panel by panel. */
CPU_CLONES static void add_noise(float *mz, const float *v, const float *eps,
                                 size_t ld, size_t rows, size_t ns, size_t out)
{
    for (size_t q0 = 0; q0 < rows; q0 += DENSE_PANEL) {
        float *zp = mz + q0 * out;
        const float *vp = v + q0 * out;
        if (panel_is_one_input(q0, rows, ns)) {
            size_t s = q0 % ns;
            for (size_t j = 0; j < out; j++) {
                const float *ej = eps + j * ld + s;
                for (size_t r = 0; r < DENSE_PANEL; r++) {
                    float sd = sqrtf(vp[j * DENSE_PANEL + r]);
                    float t = sd * ej[r];
                    zp[j * DENSE_PANEL + r] += t;
                }
            }
            continue;
        }
        size_t lanes = rows - q0 < DENSE_PANEL ? rows - q0 : DENSE_PANEL;
        for (size_t r = 0; r < lanes; r++) {
            size_t s = (q0 + r) % ns;
            for (size_t j = 0; j < out; j++) {
                float sd = sqrtf(vp[j * DENSE_PANEL + r]);
                float t = sd * eps[j * ld + s];
                zp[j * DENSE_PANEL + r] += t;
            }
        }
    }
}

/* Samples [s_lo, s_hi) of inputs x[0..ni): the last layer of (input i,
 * sample s) goes to y + (i * S + s) * C. */
static void marginal_run(const bnn_predictor *p, pred_ws *w, const float *x,
                         size_t ni, size_t s_lo, size_t s_hi, float *y)
{
    const bnn_model *m = p->m;
    const float *mu = guide_mu(p->g);
    size_t L = model_n_layers(m), in = p->in, o0 = m->sizes[1], C = p->C;
    size_t R = p->rows, S = p->S, G = p->chunk;
    /* a block: NB inputs x NS samples, at most R rows */
    size_t NS = s_hi - s_lo < R ? s_hi - s_lo : R;
    size_t NB = R / NS;
    int fused = L > 1 && m->layer[0].act == BNN_ACT_RELU;
    for (size_t i0 = 0; i0 < ni; i0 += G) {
        size_t gi = ni - i0 < G ? ni - i0 : G;
        size_t ipan = pad_panel(gi) / DENSE_PANEL;
        /* m = x.mu + b_mu, v = x^2.sigma^2 + b_sigma^2, for all samples */
        if (gi <= ROW_KERNEL_MAX && p->w0t) {
            float *xq = w->eps, *mr = xq + in, *vr = mr + o0;
            for (size_t i = 0; i < gi; i++) {
                const float *xi = x + (i0 + i) * in;
                for (size_t k = 0; k < in; k++) {
                    float sq = xi[k] * xi[k];
                    xq[k] = sq;
                }
                dense_row_t(p->w0t, mu + m->b_off[0], o0, in, xi, mr);
                dense_row_t(p->w0t + in * o0, p->s2 + m->b_off[0], o0, in, xq,
                            vr);
                for (size_t j = 0; j < o0; j++) {
                    w->m0[pk(i, j, o0)] = mr[j];
                    w->v0[pk(i, j, o0)] = vr[j];
                }
            }
            for (size_t i = gi; i < ipan * DENSE_PANEL; i++)
                for (size_t j = 0; j < o0; j++)
                    w->m0[pk(i, j, o0)] = w->v0[pk(i, j, o0)] = 0.0f;
        } else {
            pack_inputs(x + i0 * in, gi, in, w->xp, w->xq);
            dense_panels(mu + m->w_off[0], mu + m->b_off[0], o0, in, w->xp,
                         w->m0, ipan, DENSE_PATH_AUTO);
            dense_panels(p->s2 + m->w_off[0], p->s2 + m->b_off[0], o0, in,
                         w->xq, w->v0, ipan, DENSE_PATH_AUTO);
        }
        for (size_t e = 0; e < ipan * DENSE_PANEL * o0; e++)
            w->v0[e] = sqrtf(w->v0[e]); /* now the standard deviation */
        for (size_t s0 = s_lo; s0 < s_hi; s0 += NS) {
            size_t ns = s_hi - s0 < NS ? s_hi - s0 : NS;
            for (size_t ib = 0; ib < gi; ib += NB) {
                size_t nb = gi - ib < NB ? gi - ib : NB;
                size_t rows = nb * ns, rp = pad_panel(rows);
                size_t rpan = rp / DENSE_PANEL, ld;
                float *z = w->a, *h2 = w->b, *mm = w->c, *vv = w->d;
                const float *eps = noise_of(p, w, 0, s0, ns, o0, &ld);
                layer0_rows(z, h2, w->m0, w->v0, ib, eps, ld, rows, rp, ns, o0,
                            fused);
                for (size_t l = 1; l < L; l++) {
                    size_t lin = model_layer_in(m, l);
                    size_t out = model_layer_out(m, l), n_el = rp * lin;
                    if (l > 1 || !fused) {
                        activate(m->layer[l - 1].act, z, n_el);
                        for (size_t e = 0; e < n_el; e++) {
                            float t = z[e] * z[e];
                            h2[e] = t;
                        }
                    }
                    dense_panels(mu + m->w_off[l], mu + m->b_off[l], out, lin,
                                 z, mm, rpan, DENSE_PATH_AUTO);
                    dense_panels(p->s2 + m->w_off[l], p->s2 + m->b_off[l],
                                 out, lin, h2, vv, rpan, DENSE_PATH_AUTO);
                    eps = noise_of(p, w, l, s0, ns, out, &ld);
                    add_noise(mm, vv, eps, ld, rows, ns, out);
                    float *t = z;
                    z = mm;
                    mm = t;
                }
                for (size_t q = 0; q < rows; q++)
                    unpack_row(m, z, q, C,
                               y + ((i0 + ib + q / ns) * S + s0 + q % ns) * C);
            }
        }
    }
}

/* ---- one chunk, shared among threads --------------------------------------- */

typedef struct fill_job {
    const bnn_predictor *p;
    const float *x; /* the chunk's first input */
    size_t ni;
} fill_job;

/* Thread t's share of a chunk: whole networks by sample (each thread
 * draws its own), the other modes by input when there are enough, else
 * by sample.  Which thread does what changes no value. */
static void fill_task(void *vj, size_t t)
{
    const fill_job *j = vj;
    const bnn_predictor *p = j->p;
    pred_ws *w = &p->ws[t];
    size_t T = p->T, S = p->S, C = p->C, in = p->in, ni = j->ni;
    switch (p->cfg.sampling) {
    case BNN_SAMPLING_NETWORKS:
        pack_inputs(j->x, ni, in, w->xp, NULL);
        for (size_t s = t; s < S; s += T) {
            guide_sample_network(p->g, p->cfg.seed,
                                 rng_stream_id((uint64_t)s, 0, 0, RNG_PREDICT),
                                 w->net);
            forward_net(p, w, w->net, NULL, ni, p->buf + s * C, S * C);
        }
        break;
    case BNN_SAMPLING_MEAN: {
        size_t lo = ni * t / T, hi = ni * (t + 1) / T;
        if (lo == hi)
            break;
        const float *xr = NULL;
        if (hi - lo <= ROW_KERNEL_MAX && p->w0t)
            xr = j->x + lo * in;
        else
            pack_inputs(j->x + lo * in, hi - lo, in, w->xp, NULL);
        forward_net(p, w, guide_mu(p->g), xr, hi - lo, p->buf + lo * C, C);
        break;
    }
    default:
        if (ni >= T) {
            size_t lo = ni * t / T, hi = ni * (t + 1) / T;
            if (lo < hi)
                marginal_run(p, w, j->x + lo * in, hi - lo, 0, S,
                             p->buf + lo * S * C);
        } else {
            size_t lo = S * t / T, hi = S * (t + 1) / T;
            if (lo < hi)
                marginal_run(p, w, j->x, ni, lo, hi, p->buf);
        }
    }
}

static void fill_chunk(const bnn_predictor *p, const float *x, size_t ni)
{
    fill_job j = {p, x, ni};
    pool_run(p->workers, fill_task, &j, p->T);
}

/* ---- the handle ----------------------------------------------------------------- */

/* What a run checks before it reads x: handle, pointers, n, likelihood,
 * sizes, then (last, since it reads all of x) finiteness. */
static bnn_status check_run(const char *fn, const bnn_predictor *p,
                            const float *x, size_t n, int want_categorical)
{
    size_t tmp;
    if (!p || !x)
        return error_set(BNN_E_INVALID, "%s: NULL predictor or x", fn);
    if (n == 0)
        return error_set(BNN_E_INVALID, "%s: n is 0", fn);
    const bnn_model *m = p->m;
    if (want_categorical && m->likelihood != BNN_LIK_CATEGORICAL)
        return error_set(BNN_E_UNSUPPORTED,
                         "%s: needs a categorical model", fn);
    if (!want_categorical && m->likelihood == BNN_LIK_CATEGORICAL)
        return error_set(BNN_E_UNSUPPORTED, "%s: needs a Gaussian model",
                         fn);
    if (mem_mul_overflow(n, p->in, &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * inputs overflows", fn);
    if (mem_mul_overflow(n, p->C, &tmp) ||
        mem_mul_overflow(tmp, sizeof(float), &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * outputs overflows", fn);
    return BNN_OK;
}

/* Reads the guide: finiteness, and sigma^2 for MARGINAL. */
static bnn_status load_guide(bnn_predictor *p, const char *fn)
{
    const bnn_guide *g = p->g;
    /* Reading the parameters once costs less than drawing one network, and
     * it turns a diverged guide (or a bad write through bnn_guide_params)
     * into an error instead of NaN probabilities that look like answers. */
    if (!tensor_all_finite(g->params, 2 * g->n_params + g->n_noise))
        return error_set(BNN_E_NUMERIC,
                         "%s: the guide's parameters hold NaN or Inf", fn);
    const bnn_model *m = p->m;
    size_t in = m->sizes[0], o0 = m->sizes[1];
    if (p->s2) {
        tensor r = tensor_mat((float *)guide_rho(g), 1, g->n_params);
        tensor s = tensor_mat(p->s2, 1, g->n_params);
        tensor_softplus(&r, &s);
        tensor_square(&s, &s);
    }
    /* layer 0 transposed for dense_row_t: mu, then sigma^2 (MARGINAL) */
    const float *w[2] = {guide_mu(g) + m->w_off[0],
                         p->s2 ? p->s2 + m->w_off[0] : NULL};
    enum { TILE = 32 }; /* tiles keep both sides of the transpose in cache */
    for (int h = 0; p->w0t && h < 2 && w[h]; h++)
        for (size_t j0 = 0; j0 < o0; j0 += TILE)
            for (size_t k0 = 0; k0 < in; k0 += TILE)
                for (size_t j = j0; j < o0 && j < j0 + TILE; j++)
                    for (size_t k = k0; k < in && k < k0 + TILE; k++)
                        p->w0t[(h * in + k) * o0 + j] = w[h][j * in + k];
    return BNN_OK;
}

BNN_API void bnn_predictor_free(bnn_predictor *p)
{
    if (!p)
        return;
    const bnn_allocator *al = &p->m->alloc;
    pool_free(p->workers);
    if (p->ws)
        for (size_t t = 0; t < p->T; t++)
            ws_free(p->m, &p->ws[t]);
    if (p->scratch)
        for (size_t t = 0; t < p->T; t++)
            mem_free(al, p->scratch[t]);
    mem_free(al, p->ws);
    mem_free(al, p->scratch);
    mem_free(al, p->buf);
    mem_free(al, p->s2);
    mem_free(al, p->w0t);
    mem_free(al, p->noise);
    mem_free(al, p->levels);
    mem_free(al, p);
}

bnn_status predictor_create_chunked(const bnn_guide *g,
                                    const bnn_predict_config *cfg_in,
                                    size_t max_batch, size_t chunk,
                                    size_t rows, unsigned flags,
                                    const char *fn, bnn_predictor **out)
{
    bnn_predict_config cfg;
    bnn_status st;
    if (!g || !out)
        return error_set(BNN_E_INVALID, "%s: NULL guide or out", fn);
    if (!g->model)
        return error_set(BNN_E_INVALID, "%s: guide has no model", fn);
    if (max_batch == 0)
        return error_set(BNN_E_INVALID, "%s: max_batch is 0", fn);
    if ((st = read_config(cfg_in, &cfg, fn)))
        return st;
    const bnn_model *m = g->model;
    /* A kernel is shared by the positions of an image, so a convolution's
     * outputs are not independent given its input and the marginal draw
     * would be wrong: such networks are sampled whole. */
    if (m->has_conv && cfg.sampling == BNN_SAMPLING_MARGINAL)
        cfg.sampling = BNN_SAMPLING_NETWORKS;
    const bnn_allocator *al = &m->alloc;
    size_t S = cfg.sampling == BNN_SAMPLING_MEAN ? 1 : cfg.num_samples;
    size_t C = m->sizes[m->n_sizes - 1], in = m->sizes[0], per_row, tmp;
    /* per input: every sample's outputs, which medians need at once */
    if (mem_mul_overflow(S, C, &per_row) ||
        mem_mul_overflow(per_row, sizeof(float), &per_row) ||
        !(chunk = choose_chunk(m, max_batch, per_row, chunk)) ||
        mem_mul_overflow(chunk, per_row, &tmp))
        return error_set(BNN_E_SHAPE, "%s: num_samples * classes overflows",
                         fn);
    size_t T = cfg.num_threads;
    if (cfg.sampling == BNN_SAMPLING_NETWORKS && T > S)
        T = S; /* threads share the networks out */
    if (cfg.sampling != BNN_SAMPLING_NETWORKS && T > chunk * S)
        T = chunk * S;
    if (cfg.sampling == BNN_SAMPLING_MEAN && T > chunk)
        T = chunk;
    if (cfg.sampling == BNN_SAMPLING_MARGINAL) {
        /* Rows of one block (5 buffers of out_width floats per row): at
         * most what a thread's share of a chunk needs, whole panels. */
        size_t need, row_bytes;
        if (mem_mul_overflow(out_width(m), 5 * sizeof(float), &row_bytes))
            return error_set(BNN_E_SHAPE, "%s: layer too wide", fn);
        /* Blocks of rows small enough that a layer's buffers stay in
         * cache between the passes over them: 1 MiB of activations. */
        if (!rows) {
            rows = ((size_t)1 << 20) / (row_bytes / 5);
            if (rows < DENSE_PANEL)
                rows = DENSE_PANEL;
        }
        /* a thread's share of a chunk: its inputs, or its samples */
        if (mem_mul_overflow(chunk, (S + T - 1) / T, &need))
            need = SIZE_MAX;
        if (rows > need)
            rows = need;
        rows = pad_panel(rows);
    }

    /* Layer 0 transposed, for inputs few enough to run row by row: worth
     * its making (a transpose of the layer) for predictors that answer a
     * few inputs at a time, again and again. */
    int row_kernel = !(flags & PREDICTOR_ONE_SHOT) && max_batch <= 64 && !m->layer[0].conv;
    bnn_predictor *p = mem_alloc(al, sizeof *p);
    if (!p)
        return error_set(BNN_E_NOMEM, "%s: cannot allocate the predictor",
                         fn);
    memset(p, 0, sizeof *p);
    p->g = g;
    p->m = m;
    p->cfg = cfg;
    p->cfg.mean_probs = NULL;
    p->S = S;
    p->C = C;
    p->in = in;
    p->chunk = chunk;
    p->rows = rows;
    p->T = T;
    int ok = 1;
    if (cfg.n_quantiles) {
        p->levels = mem_alloc_array(al, cfg.n_quantiles, sizeof(float));
        if (p->levels)
            memcpy(p->levels, cfg.quantiles,
                   cfg.n_quantiles * sizeof(float));
        ok = p->levels != NULL;
    }
    p->cfg.quantiles = p->levels;
    if (ok && cfg.sampling == BNN_SAMPLING_MARGINAL) {
        size_t units = 0;
        for (size_t l = 0; l < model_n_layers(m); l++) {
            p->noise_off[l] = units * S;
            units += model_layer_out(m, l);
        }
        ok = (p->s2 = mem_alloc_array(al, g->n_params, sizeof(float))) != NULL;
        if (ok && row_kernel)
            ok = (p->w0t = mem_alloc_array(al, 2 * in, m->sizes[1] * sizeof(float))) != NULL;
        /* every sample's noise, when it fits in the budget (drawn below) */
        if (ok && !(flags & PREDICTOR_NO_NOISE_CACHE) && !mem_mul_overflow(units, S, &tmp) &&
            tmp <= PREDICT_WORKSPACE_BYTES / sizeof(float))
            ok = (p->noise = mem_alloc_array(al, tmp, sizeof(float))) != NULL;
    }
    if (ok && cfg.sampling == BNN_SAMPLING_MEAN && row_kernel)
        ok = (p->w0t = mem_alloc_array(al, in, m->sizes[1] * sizeof(float))) != NULL;
    if (ok)
        ok = (p->buf = mem_alloc_array(al, chunk, per_row)) != NULL;
    if (ok)
        ok = (p->ws = mem_calloc_array(al, T, sizeof *p->ws)) != NULL &&
             (p->scratch = mem_calloc_array(al, T, sizeof *p->scratch)) !=
                 NULL;
    for (size_t t = 0; ok && t < T; t++)
        ok = (p->scratch[t] = mem_alloc_array(al, S, sizeof(float))) != NULL &&
             ws_init(&p->ws[t], p);
    if (!ok) {
        bnn_predictor_free(p);
        return error_set(BNN_E_NOMEM, "%s: cannot allocate the workspace",
                         fn);
    }
    for (size_t l = 0; p->noise && l < model_n_layers(m); l++)
        layer_noise(cfg.seed, l, 0, S, model_layer_out(m, l),
                    p->noise + p->noise_off[l], S, p->ws[0].eps);
    if ((st = pool_create(al, T, &p->workers)) ||
        (st = load_guide(p, fn))) {
        bnn_predictor_free(p);
        return st;
    }
    *out = p;
    return BNN_OK;
}

BNN_API bnn_status bnn_predictor_create(const bnn_guide *guide,
                                        const bnn_predict_config *cfg,
                                        size_t max_batch,
                                        bnn_predictor **out)
{
    API_ENTRY();
    return predictor_create_chunked(guide, cfg, max_batch, 0, 0, 0,
                                    "bnn_predictor_create", out);
}

BNN_API bnn_status bnn_predictor_refresh(bnn_predictor *p)
{
    API_ENTRY();
    if (!p)
        return error_set(BNN_E_INVALID, "bnn_predictor_refresh: NULL");
    return load_guide(p, "bnn_predictor_refresh");
}

/* ---- runs ------------------------------------------------------------------------ */

typedef struct reduce_job {
    const bnn_predictor *p;
    size_t i0, ni, n; /* the chunk's first input, its inputs, all inputs */
    float *o1, *o2;   /* outputs (kind-specific) */
    unsigned char *rec;
    size_t rs;
    float *medians, *quantiles;
} reduce_job;

/* Mean probabilities: the same sum in the same order as the records'
 * means (uncertainty_stats), so the two agree bit for bit. */
static void probs_task(void *vj, size_t t)
{
    const reduce_job *j = vj;
    const bnn_predictor *p = j->p;
    size_t S = p->S, C = p->C;
    size_t lo = j->ni * t / p->T, hi = j->ni * (t + 1) / p->T;
    for (size_t i = lo; i < hi; i++)
        for (size_t c = 0; c < C; c++) {
            double sum = 0.0;
            for (size_t s = 0; s < S; s++)
                sum += (double)vmath_exp_nonpos(p->buf[(i * S + s) * C + c]);
            j->o1[(j->i0 + i) * C + c] = (float)(sum / (double)S);
        }
}

/* Output k of the chunk's input i over its samples: the mean and the
 * variance (epistemic) of the sampled means, Welford in sample order (no
 * cancellation when the spread is small next to the mean), and the noise
 * variance (aleatoric): fixed, learned exp(2 s_k), or heteroscedastic, the
 * mean of the sampled exp(log-variance). */
static void regression_moments(const bnn_predictor *p, size_t i, size_t k,
                               double *mean, double *epi, double *ale)
{
    const bnn_model *m = p->m;
    size_t S = p->S, C = p->C;
    double mu = 0.0, m2 = 0.0, a = 0.0;
    for (size_t s = 0; s < S; s++) {
        double v = (double)p->buf[(i * S + s) * C + k], d = v - mu;
        mu += d / (double)(s + 1);
        m2 += d * (v - mu);
    }
    if (m->likelihood == BNN_LIK_GAUSSIAN_HETERO) {
        for (size_t s = 0; s < S; s++)
            a += exp((double)p->buf[(i * S + s) * C + C / 2 + k]);
        a /= (double)S;
    } else if (m->likelihood == BNN_LIK_GAUSSIAN_LEARNED) {
        a = exp(2.0 * (double)p->g->params[2 * p->g->n_params + k]);
    } else {
        a = (double)m->noise_sigma * (double)m->noise_sigma;
    }
    *mean = mu;
    *epi = m2 / (double)S;
    *ale = a;
}

static void regression_task(void *vj, size_t t)
{
    const reduce_job *j = vj;
    const bnn_predictor *p = j->p;
    size_t D = model_n_targets(p->m);
    size_t lo = j->ni * t / p->T, hi = j->ni * (t + 1) / p->T;
    for (size_t i = lo; i < hi; i++)
        for (size_t c = 0; c < D; c++) {
            double mu, epi, ale;
            regression_moments(p, i, c, &mu, &epi, &ale);
            j->o1[(j->i0 + i) * D + c] = (float)mu;
            if (j->o2)
                j->o2[(j->i0 + i) * D + c] = (float)(epi + ale);
        }
}

/* One bnn_regression_prediction per (input, output); refused 0. */
static void split_task(void *vj, size_t t)
{
    const reduce_job *j = vj;
    const bnn_predictor *p = j->p;
    size_t D = model_n_targets(p->m);
    size_t lo = j->ni * t / p->T, hi = j->ni * (t + 1) / p->T;
    /* all fields are 4 bytes: those that fit entirely */
    size_t nb = j->rs < sizeof(bnn_regression_prediction) ? j->rs / 4 * 4
                                                           : sizeof(bnn_regression_prediction);
    for (size_t i = lo; i < hi; i++)
        for (size_t c = 0; c < D; c++) {
            double mu, epi, ale;
            regression_moments(p, i, c, &mu, &epi, &ale);
            bnn_regression_prediction r = {(float)mu, (float)(epi + ale), (float)ale,
                                           (float)epi, 0};
            memcpy(j->rec + ((j->i0 + i) * D + c) * j->rs, &r, nb);
        }
}

static void records_task(void *vj, size_t t)
{
    const reduce_job *j = vj;
    const bnn_predictor *p = j->p;
    const bnn_predict_config *cfg = &p->cfg;
    size_t S = p->S, C = p->C, nq = cfg->n_quantiles;
    size_t lo = j->ni * t / p->T, hi = j->ni * (t + 1) / p->T;
    for (size_t i = lo; i < hi; i++) {
        size_t r = j->i0 + i;
        float *ps = p->buf + i * S * C;
        for (size_t e = 0; e < S * C; e++)
            ps[e] = vmath_exp_nonpos(ps[e]);
        bnn_prediction rec;
        uncertainty_stats(ps, S, C, C, cfg->rule, cfg->threshold,
                          cfg->quantiles, nq, &rec,
                          j->medians ? j->medians + r * C : NULL,
                          j->quantiles ? j->quantiles + r * C * nq : NULL,
                          j->o1 ? j->o1 + r * C : NULL, p->scratch[t]);
        refusal_record_store(j->rec + r * j->rs, j->rs, &rec);
    }
}

/* The samples of the chunk, sample-major over all n inputs. */
static void samples_task(void *vj, size_t t)
{
    const reduce_job *j = vj;
    const bnn_predictor *p = j->p;
    size_t S = p->S, C = p->C, Sout = p->cfg.num_samples;
    size_t lo = j->ni * t / p->T, hi = j->ni * (t + 1) / p->T;
    for (size_t i = lo; i < hi; i++)
        for (size_t s = 0; s < Sout; s++)
            memcpy(j->o1 + (s * j->n + j->i0 + i) * C,
                   p->buf + (i * S + (S == 1 ? 0 : s)) * C,
                   C * sizeof(float));
}

/* The tail of every predictor call, once its other arguments are checked:
 * x's finiteness (read once, before any work), then the chunks, each
 * filled and reduced into job's outputs. */
static bnn_status run_chunks(const char *fn, const bnn_predictor *p, const float *x,
                             size_t n, pool_task reduce, reduce_job job)
{
    if (!tensor_all_finite(x, n * p->in))
        return error_set(BNN_E_INVALID, "%s: x holds NaN or Inf", fn);
    job.p = p;
    job.n = n;
    for (size_t i0 = 0; i0 < n; i0 += p->chunk) {
        size_t ni = n - i0 < p->chunk ? n - i0 : p->chunk;
        fill_chunk(p, x + i0 * p->in, ni);
        job.i0 = i0;
        job.ni = ni;
        pool_run(p->workers, reduce, &job, p->T);
    }
    return BNN_OK;
}

static bnn_status predictor_run_fn(bnn_predictor *p, const float *x, size_t n,
                            bnn_prediction *out, size_t rs, float *medians,
                            float *quantiles, float *mean_probs,
                            const char *fn)
{
    size_t tmp;
    bnn_status st = check_run(fn, p, x, n, 1);
    if (st)
        return st;
    if (!out)
        return error_set(BNN_E_INVALID, "%s: NULL out", fn);
    if (rs < offsetof(bnn_prediction, prob))
        return error_set(BNN_E_INVALID,
                         "%s: record_size %zu does not cover label and "
                         "refused",
                         fn, rs);
    if (mem_mul_overflow(n, rs, &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * record_size overflows", fn);
    size_t nq = p->cfg.n_quantiles;
    if (quantiles && nq == 0)
        return error_set(BNN_E_INVALID, "%s: a quantiles output was given but n_quantiles is "
                         "0 (set the config's n_quantiles and its quantiles levels)", fn);
    if (quantiles && nq &&
        (mem_mul_overflow(n * p->C, nq, &tmp) ||
         mem_mul_overflow(tmp, sizeof(float), &tmp)))
        return error_set(BNN_E_SHAPE,
                         "%s: n * classes * n_quantiles overflows", fn);
    return run_chunks(fn, p, x, n, records_task,
                      (reduce_job){.rec = (unsigned char *)out, .rs = rs, .medians = medians,
                                   .quantiles = nq ? quantiles : NULL, .o1 = mean_probs});
}

BNN_API bnn_status bnn_predictor_run(bnn_predictor *p, const float *x,
                                     size_t n, bnn_prediction *out,
                                     size_t record_size, float *medians,
                                     float *quantiles, float *mean_probs)
{
    API_ENTRY();
    return predictor_run_fn(p, x, n, out, record_size, medians, quantiles,
                            mean_probs, "bnn_predictor_run");
}

static bnn_status probs_fn(bnn_predictor *p, const float *x, size_t n,
                           float *probs, const char *fn)
{
    bnn_status st = check_run(fn, p, x, n, 1);
    if (st)
        return st;
    if (!probs)
        return error_set(BNN_E_INVALID, "%s: NULL probs", fn);
    return run_chunks(fn, p, x, n, probs_task, (reduce_job){.o1 = probs});
}

BNN_API bnn_status bnn_predictor_probs(bnn_predictor *p, const float *x,
                                       size_t n, float *probs)
{
    API_ENTRY();
    return probs_fn(p, x, n, probs, "bnn_predictor_probs");
}

static bnn_status samples_fn(bnn_predictor *p, const float *x, size_t n,
                             float *logp, const char *fn)
{
    size_t tmp;
    bnn_status st = check_run(fn, p, x, n, 1);
    if (st)
        return st;
    if (!logp)
        return error_set(BNN_E_INVALID, "%s: NULL logp", fn);
    if (mem_mul_overflow(p->cfg.num_samples, n * p->C, &tmp) ||
        mem_mul_overflow(tmp, sizeof(float), &tmp))
        return error_set(BNN_E_SHAPE,
                         "%s: num_samples * n * classes overflows", fn);
    return run_chunks(fn, p, x, n, samples_task, (reduce_job){.o1 = logp});
}

BNN_API bnn_status bnn_predictor_samples(bnn_predictor *p, const float *x,
                                         size_t n, float *logp)
{
    API_ENTRY();
    return samples_fn(p, x, n, logp, "bnn_predictor_samples");
}

static bnn_status regression_fn(bnn_predictor *p, const float *x, size_t n,
                                float *mean, float *var, const char *fn)
{
    bnn_status st = check_run(fn, p, x, n, 0);
    if (st)
        return st;
    if (!mean)
        return error_set(BNN_E_INVALID, "%s: NULL mean", fn);
    return run_chunks(fn, p, x, n, regression_task, (reduce_job){.o1 = mean, .o2 = var});
}

BNN_API bnn_status bnn_predictor_regression(bnn_predictor *p, const float *x,
                                            size_t n, float *mean, float *var)
{
    API_ENTRY();
    return regression_fn(p, x, n, mean, var, "bnn_predictor_regression");
}

static bnn_status split_fn(bnn_predictor *p, const float *x, size_t n,
                           bnn_regression_prediction *out, size_t rs,
                           const char *fn)
{
    size_t tmp;
    bnn_status st = check_run(fn, p, x, n, 0);
    if (st)
        return st;
    if (!out)
        return error_set(BNN_E_INVALID, "%s: NULL out", fn);
    if (rs < SIZED_END(bnn_regression_prediction, epistemic))
        return error_set(BNN_E_INVALID,
                         "%s: record_size %zu does not cover mean, variance, "
                         "aleatoric and epistemic", fn, rs);
    if (mem_mul_overflow(n, model_n_targets(p->m), &tmp) ||
        mem_mul_overflow(tmp, rs, &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * outputs * record_size "
                         "overflows", fn);
    return run_chunks(fn, p, x, n, split_task,
                      (reduce_job){.rec = (unsigned char *)out, .rs = rs});
}

BNN_API bnn_status bnn_predictor_regression_split(bnn_predictor *p,
                                                  const float *x, size_t n,
                                                  bnn_regression_prediction *out,
                                                  size_t record_size)
{
    API_ENTRY();
    return split_fn(p, x, n, out, record_size,
                    "bnn_predictor_regression_split");
}

/* ---- one-shot predictors: a predictor for the call ------------------------------- */

/* The checks that need no predictor come first, so that a bad call does
 * not allocate; then the predictor's own, x's finiteness last (the run's). */
static bnn_status precheck(const char *fn, const bnn_guide *g, const float *x,
                           size_t n, size_t S, int want_categorical)
{
    size_t tmp;
    if (!g || !x)
        return error_set(BNN_E_INVALID, "%s: NULL guide or x", fn);
    if (!g->model)
        return error_set(BNN_E_INVALID, "%s: guide has no model", fn);
    if (n == 0)
        return error_set(BNN_E_INVALID, "%s: n is 0", fn);
    if (S == 0)
        return error_set(BNN_E_INVALID, "%s: num_samples is 0", fn);
    if (S > MAX_SAMPLES)
        return error_set(BNN_E_INVALID, "%s: num_samples %zu exceeds 2^40",
                         fn, S);
    const bnn_model *m = g->model;
    if (want_categorical && m->likelihood != BNN_LIK_CATEGORICAL)
        return error_set(BNN_E_UNSUPPORTED,
                         "%s: needs a categorical model", fn);
    if (!want_categorical && m->likelihood == BNN_LIK_CATEGORICAL)
        return error_set(BNN_E_UNSUPPORTED, "%s: needs a Gaussian model",
                         fn);
    if (mem_mul_overflow(n, m->sizes[0], &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * inputs overflows", fn);
    if (mem_mul_overflow(n, m->sizes[m->n_sizes - 1], &tmp) ||
        mem_mul_overflow(tmp, sizeof(float), &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * outputs overflows", fn);
    return BNN_OK;
}

static bnn_predict_config default_cfg(size_t S, uint64_t seed)
{
    bnn_predict_config c;
    bnn_predict_config_init(&c);
    c.num_samples = S;
    c.seed = seed;
    return c;
}

bnn_status predict_mean_with_chunk(const bnn_guide *g, const float *x,
                                   size_t n, size_t S, uint64_t seed,
                                   float *probs, size_t chunk)
{
    static const char fn[] = "bnn_predict";
    bnn_predict_config cfg = default_cfg(S, seed);
    bnn_predictor *p;
    bnn_status st = precheck(fn, g, x, n, S, 1);
    if (!st && !probs)
        st = error_set(BNN_E_INVALID, "%s: NULL probs", fn);
    if (st || (st = predictor_create_chunked(g, &cfg, n, chunk, 0, PREDICTOR_ONE_SHOT, fn, &p)))
        return st;
    st = probs_fn(p, x, n, probs, fn);
    bnn_predictor_free(p);
    return st;
}

BNN_API bnn_status bnn_predict(const bnn_guide *guide, const float *x,
                               size_t n, size_t num_samples, uint64_t seed,
                               float *probs)
{
    API_ENTRY();
    return predict_mean_with_chunk(guide, x, n, num_samples, seed, probs, 0);
}

bnn_status predict_samples_with_chunk(const bnn_guide *g, const float *x,
                                      size_t n, size_t S, uint64_t seed,
                                      float *logp, size_t chunk)
{
    static const char fn[] = "bnn_predict_samples";
    bnn_predict_config cfg = default_cfg(S, seed);
    bnn_predictor *p;
    size_t tmp;
    bnn_status st = precheck(fn, g, x, n, S, 1);
    if (!st && !logp)
        st = error_set(BNN_E_INVALID, "%s: NULL logp", fn);
    if (!st && (mem_mul_overflow(S, n * g->model->sizes[g->model->n_sizes - 1],
                                 &tmp) ||
                mem_mul_overflow(tmp, sizeof(float), &tmp)))
        st = error_set(BNN_E_SHAPE,
                       "%s: num_samples * n * classes overflows", fn);
    if (st || (st = predictor_create_chunked(g, &cfg, n, chunk, 0, PREDICTOR_ONE_SHOT, fn, &p)))
        return st;
    st = samples_fn(p, x, n, logp, fn);
    bnn_predictor_free(p);
    return st;
}

BNN_API bnn_status bnn_predict_samples(const bnn_guide *guide, const float *x,
                                       size_t n, size_t num_samples,
                                       uint64_t seed, float *logp)
{
    API_ENTRY();
    return predict_samples_with_chunk(guide, x, n, num_samples, seed, logp,
                                      0);
}

bnn_status predict_regression_with_chunk(const bnn_guide *g, const float *x,
                                         size_t n, size_t S, uint64_t seed,
                                         float *mean, float *var,
                                         size_t chunk)
{
    static const char fn[] = "bnn_predict_regression";
    bnn_predict_config cfg = default_cfg(S, seed);
    bnn_predictor *p;
    bnn_status st = precheck(fn, g, x, n, S, 0);
    if (!st && !mean)
        st = error_set(BNN_E_INVALID, "%s: NULL mean", fn);
    if (st || (st = predictor_create_chunked(g, &cfg, n, chunk, 0, PREDICTOR_ONE_SHOT, fn, &p)))
        return st;
    st = regression_fn(p, x, n, mean, var, fn);
    bnn_predictor_free(p);
    return st;
}

BNN_API bnn_status bnn_predict_regression(const bnn_guide *guide,
                                          const float *x, size_t n,
                                          size_t num_samples, uint64_t seed,
                                          float *mean, float *var)
{
    API_ENTRY();
    return predict_regression_with_chunk(guide, x, n, num_samples, seed,
                                         mean, var, 0);
}

BNN_API bnn_status bnn_predict_regression_split(const bnn_guide *guide,
                                                const bnn_predict_config *cfg_in,
                                                const float *x, size_t n,
                                                bnn_regression_prediction *out,
                                                size_t record_size)
{
    API_ENTRY();
    static const char fn[] = "bnn_predict_regression_split";
    bnn_predict_config cfg;
    bnn_predictor *p;
    bnn_status st = read_config(cfg_in, &cfg, fn);
    if (st || (st = precheck(fn, guide, x, n, cfg.num_samples, 0)))
        return st;
    if (!out)
        return error_set(BNN_E_INVALID, "%s: NULL out", fn);
    if ((st = predictor_create_chunked(guide, &cfg, n, 0, 0, PREDICTOR_ONE_SHOT,
                                       fn, &p)))
        return st;
    st = split_fn(p, x, n, out, record_size, fn);
    bnn_predictor_free(p);
    return st;
}

bnn_status predict_with_chunk(const bnn_guide *g,
                              const bnn_predict_config *cfg_in,
                              const float *x, size_t n, bnn_prediction *out,
                              size_t rs, float *medians, float *quantiles,
                              size_t chunk)
{
    static const char fn[] = "bnn_predict_with_uncertainty";
    bnn_predict_config cfg;
    bnn_predictor *p;
    size_t tmp;
    bnn_status st = read_config(cfg_in, &cfg, fn);
    if (st || (st = precheck(fn, g, x, n, cfg.num_samples, 1)))
        return st;
    if (!out)
        return error_set(BNN_E_INVALID, "%s: NULL out", fn);
    if (rs < offsetof(bnn_prediction, prob))
        return error_set(BNN_E_INVALID,
                         "%s: record_size %zu does not cover label and "
                         "refused",
                         fn, rs);
    if (mem_mul_overflow(n, rs, &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * record_size overflows", fn);
    size_t C = g->model->sizes[g->model->n_sizes - 1], nq = cfg.n_quantiles;
    if (quantiles && nq &&
        (mem_mul_overflow(n * C, nq, &tmp) ||
         mem_mul_overflow(tmp, sizeof(float), &tmp)))
        return error_set(BNN_E_SHAPE,
                         "%s: n * classes * n_quantiles overflows", fn);
    if ((st = predictor_create_chunked(g, &cfg, n, chunk, 0, PREDICTOR_ONE_SHOT, fn, &p)))
        return st;
    st = predictor_run_fn(p, x, n, out, rs, medians, quantiles,
                          cfg.mean_probs, fn);
    bnn_predictor_free(p);
    return st;
}

BNN_API bnn_status bnn_predict_with_uncertainty(const bnn_guide *guide,
                                                const bnn_predict_config *cfg,
                                                const float *x, size_t n,
                                                bnn_prediction *out,
                                                size_t record_size,
                                                float *medians,
                                                float *quantiles)
{
    API_ENTRY();
    return predict_with_chunk(guide, cfg, x, n, out, record_size, medians,
                              quantiles, 0);
}
