/* Monte Carlo predictive distribution: the sampled forward passes and the
 * predictors built on them.  The statistics of one input's samples are in
 * uncertainty.c, the refusal rules and calibration in refusal.c.
 *
 * Sample s is one whole network drawn from the guide on the RNG stream
 * (seed, s), shared by every input of a call.  Inputs are processed in
 * chunks of rows; each chunk redraws the networks it needs, which costs
 * some RNG work but keeps memory independent of n, and since a draw is a
 * pure function of (seed, s) the results do not depend on the chunking.
 * The layers run through dense.c rather than BLAS, whose results for one
 * row change with the other rows of the product: that is what makes an
 * input's prediction independent of the batch it came in. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "dense.h"
#include "pool.h"
#include "predict.h"
#include "refusal.h"
#include "tensor.h"
#include "uncertainty.h"
#include "vmath.h"

/* Stream steps are 40 bits wide (rng_stream_id). */
#define MAX_SAMPLES ((size_t)1 << 40)

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
}

/* ---- validation shared by the predictors --------------------------------- */

/* Checks common to every predictor but the finiteness of x (check_input);
 * `classes` receives the output width.  Everything is validated before any
 * output is written. */
static bnn_status check_call(const char *fn, const bnn_guide *g,
                             const float *x, size_t n, size_t num_samples,
                             int want_categorical, size_t *classes)
{
    size_t total;
    if (!g || !x)
        return error_set(BNN_E_INVALID, "%s: NULL guide or x", fn);
    if (!g->model)
        return error_set(BNN_E_INVALID, "%s: guide has no model", fn);
    if (n == 0)
        return error_set(BNN_E_INVALID, "%s: n is 0", fn);
    if (num_samples == 0)
        return error_set(BNN_E_INVALID, "%s: num_samples is 0", fn);
    if (num_samples > MAX_SAMPLES)
        return error_set(BNN_E_INVALID, "%s: num_samples %zu exceeds 2^40",
                         fn, num_samples);
    const bnn_model *m = g->model;
    if (want_categorical && m->likelihood != BNN_LIK_CATEGORICAL)
        return error_set(BNN_E_UNSUPPORTED,
                         "%s: needs a categorical model", fn);
    if (!want_categorical && m->likelihood != BNN_LIK_GAUSSIAN)
        return error_set(BNN_E_UNSUPPORTED, "%s: needs a Gaussian model",
                         fn);
    size_t in = m->sizes[0], out = m->sizes[m->n_sizes - 1];
    if (mem_mul_overflow(n, in, &total))
        return error_set(BNN_E_SHAPE, "%s: n * inputs overflows", fn);
    size_t tmp;
    if (mem_mul_overflow(n, out, &tmp) ||
        mem_mul_overflow(tmp, sizeof(float), &tmp))
        return error_set(BNN_E_SHAPE, "%s: n * outputs overflows", fn);
    *classes = out;
    return BNN_OK;
}

/* Last of the checks: it reads all of x, which is only safe once every
 * size has been validated. */
static bnn_status check_input(const char *fn, const bnn_guide *g,
                              const float *x, size_t n)
{
    if (!tensor_all_finite(x, n * g->model->sizes[0]))
        return error_set(BNN_E_INVALID, "%s: x holds NaN or Inf", fn);
    /* Reading the parameters once costs less than drawing one network, and
     * it turns a diverged guide (or a bad write through bnn_guide_params)
     * into an error instead of NaN probabilities that look like answers. */
    if (!tensor_all_finite(g->params, 2 * g->n_params))
        return error_set(BNN_E_NUMERIC,
                         "%s: the guide's parameters hold NaN or Inf", fn);
    return BNN_OK;
}

/* ---- workspace and forward pass ------------------------------------------ */

typedef struct pred_ws {
    const bnn_model *m;
    float *net;      /* one sampled network, n_params */
    float *xp;       /* the chunk's inputs, packed in panels */
    float *act;      /* two panel buffers for the hidden layers */
    float *yp;       /* the last layer's outputs, packed */
    size_t act_half; /* floats in one hidden buffer */
    size_t chunk;    /* rows per chunk */
} pred_ws;

static size_t hidden_width(const bnn_model *m)
{
    size_t w = 0;
    for (size_t l = 1; l + 1 < m->n_sizes; l++)
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
    /* Whole panels: a partial one is computed in full anyway.  Each chunk
     * draws the networks again, so fewer, larger chunks also save RNG
     * work. */
    size_t c = PREDICT_WORKSPACE_BYTES / row / DENSE_PANEL * DENSE_PANEL;
    if (c < DENSE_PANEL)
        c = DENSE_PANEL;
    return c < n ? c : n;
}

size_t predict_auto_chunk(const bnn_model *m, size_t n, size_t extra)
{
    return choose_chunk(m, n, extra, 0);
}

static bnn_status ws_init(pred_ws *w, const bnn_model *m, size_t chunk,
                          const char *fn)
{
    /* Rows are padded to whole panels.  Layer widths times 8 bytes cannot
     * overflow (the guide holds 8 bytes per parameter); rows times them is
     * checked by mem_alloc_array. */
    size_t rows = chunk / DENSE_PANEL * DENSE_PANEL;
    if (rows < chunk)
        rows += DENSE_PANEL;
    size_t in = m->sizes[0], out = m->sizes[m->n_sizes - 1];
    size_t hw = hidden_width(m);
    memset(w, 0, sizeof *w);
    w->m = m;
    w->chunk = chunk;
    w->net = mem_alloc_array(&m->alloc, m->n_params, sizeof(float));
    w->xp = mem_alloc_array(&m->alloc, rows, in * sizeof(float));
    w->yp = mem_alloc_array(&m->alloc, rows, out * sizeof(float));
    if (hw && !mem_mul_overflow(rows, hw, &w->act_half))
        w->act = mem_alloc_array(&m->alloc, w->act_half, 2 * sizeof(float));
    if (!w->net || !w->xp || !w->yp || (hw && !w->act)) {
        mem_free(&m->alloc, w->net);
        mem_free(&m->alloc, w->xp);
        mem_free(&m->alloc, w->yp);
        mem_free(&m->alloc, w->act);
        return error_set(BNN_E_NOMEM, "%s: cannot allocate the forward "
                         "workspace", fn);
    }
    return BNN_OK;
}

static void ws_free(pred_ws *w)
{
    mem_free(&w->m->alloc, w->net);
    mem_free(&w->m->alloc, w->xp);
    mem_free(&w->m->alloc, w->yp);
    mem_free(&w->m->alloc, w->act);
}

static void draw_network(const bnn_guide *g, uint64_t seed, size_t s,
                         float *net)
{
    guide_sample_network(g, seed,
                         rng_stream_id((uint64_t)s, 0, 0, RNG_PREDICT), net);
}

/* Pack rows x inputs of x into panels, padding the last panel with zero
 * inputs (they are computed and dropped). */
static void pack_inputs(pred_ws *w, const float *x, size_t rows)
{
    size_t in = w->m->sizes[0];
    size_t padded = (rows + DENSE_PANEL - 1) / DENSE_PANEL * DENSE_PANEL;
    for (size_t i = 0; i < padded; i++) {
        float *dst = w->xp + (i / DENSE_PANEL) * in * DENSE_PANEL +
                     i % DENSE_PANEL;
        if (i < rows)
            for (size_t k = 0; k < in; k++)
                dst[k * DENSE_PANEL] = x[i * in + k];
        else
            for (size_t k = 0; k < in; k++)
                dst[k * DENSE_PANEL] = 0.0f;
    }
}

/* The sampled network in w->net on the packed inputs (rows of them); the
 * last layer goes to y (rows x outputs, contiguous): log-softmax for a
 * categorical model, the raw outputs for a Gaussian one. */
static void forward(pred_ws *w, size_t rows, float *y)
{
    const bnn_model *m = w->m;
    size_t L = model_n_layers(m);
    size_t npan = (rows + DENSE_PANEL - 1) / DENSE_PANEL;
    const float *src = w->xp;
    for (size_t l = 0; l < L; l++) {
        size_t in = model_layer_in(m, l), out = model_layer_out(m, l);
        float *dst = l + 1 == L ? w->yp : w->act + (l % 2) * w->act_half;
        dense_panels(w->net + m->w_off[l], w->net + m->b_off[l], out, in,
                     src, dst, npan, DENSE_PATH_AUTO);
        if (l + 1 < L) {
            tensor a = tensor_mat(dst, 1, npan * out * DENSE_PANEL);
            if (m->activation == BNN_ACT_TANH)
                tensor_tanh(&a, &a);
            else
                tensor_relu(&a, &a);
        }
        src = dst;
    }
    size_t C = m->sizes[m->n_sizes - 1];
    for (size_t i = 0; i < rows; i++) {
        const float *col = w->yp + (i / DENSE_PANEL) * C * DENSE_PANEL +
                           i % DENSE_PANEL;
        for (size_t c = 0; c < C; c++)
            y[i * C + c] = col[c * DENSE_PANEL];
    }
    if (m->likelihood == BNN_LIK_CATEGORICAL) {
        tensor t = tensor_mat(y, rows, C);
        tensor_log_softmax_rows(&t, &t);
    }
}

/* ---- bnn_predict --------------------------------------------------------- */

bnn_status predict_mean_with_chunk(const bnn_guide *g, const float *x,
                                   size_t n, size_t S, uint64_t seed,
                                   float *probs, size_t chunk)
{
    static const char fn[] = "bnn_predict";
    size_t C;
    bnn_status st = check_call(fn, g, x, n, S, 1, &C);
    if (st)
        return st;
    if (!probs)
        return error_set(BNN_E_INVALID, "%s: NULL probs", fn);
    if ((st = check_input(fn, g, x, n)))
        return st;
    const bnn_model *m = g->model;
    size_t in = m->sizes[0];
    /* per row: one sample's log-probs (float) and the sum (double) */
    chunk = choose_chunk(m, n, C * (sizeof(float) + sizeof(double)), chunk);
    if (!chunk)
        return error_set(BNN_E_SHAPE, "%s: layer too wide", fn);

    pred_ws w;
    if ((st = ws_init(&w, m, chunk, fn)))
        return st;
    float *lp = mem_alloc_array(&m->alloc, chunk * C, sizeof(float));
    double *acc = mem_alloc_array(&m->alloc, chunk * C, sizeof(double));
    if (!lp || !acc) {
        mem_free(&m->alloc, lp);
        mem_free(&m->alloc, acc);
        ws_free(&w);
        return error_set(BNN_E_NOMEM, "%s: cannot allocate workspace", fn);
    }

    for (size_t i0 = 0; i0 < n; i0 += chunk) {
        size_t rows = n - i0 < chunk ? n - i0 : chunk, k = rows * C;
        memset(acc, 0, k * sizeof *acc);
        pack_inputs(&w, x + i0 * in, rows);
        for (size_t s = 0; s < S; s++) {
            draw_network(g, seed, s, w.net);
            forward(&w, rows, lp);
            for (size_t j = 0; j < k; j++)
                acc[j] += (double)vmath_exp_nonpos(lp[j]);
        }
        for (size_t j = 0; j < k; j++)
            probs[i0 * C + j] = (float)(acc[j] / (double)S);
    }

    mem_free(&m->alloc, lp);
    mem_free(&m->alloc, acc);
    ws_free(&w);
    return BNN_OK;
}

BNN_API bnn_status bnn_predict(const bnn_guide *guide, const float *x,
                               size_t n, size_t num_samples, uint64_t seed,
                               float *probs)
{
    return predict_mean_with_chunk(guide, x, n, num_samples, seed, probs, 0);
}

/* ---- bnn_predict_samples ------------------------------------------------- */

bnn_status predict_samples_with_chunk(const bnn_guide *g, const float *x,
                                      size_t n, size_t S, uint64_t seed,
                                      float *logp, size_t chunk)
{
    static const char fn[] = "bnn_predict_samples";
    size_t C, total;
    bnn_status st = check_call(fn, g, x, n, S, 1, &C);
    if (st)
        return st;
    if (!logp)
        return error_set(BNN_E_INVALID, "%s: NULL logp", fn);
    if (mem_mul_overflow(S, n * C, &total) ||
        mem_mul_overflow(total, sizeof(float), &total))
        return error_set(BNN_E_SHAPE,
                         "%s: num_samples * n * classes overflows", fn);
    if ((st = check_input(fn, g, x, n)))
        return st;
    const bnn_model *m = g->model;
    size_t in = m->sizes[0];
    chunk = choose_chunk(m, n, 0, chunk);
    if (!chunk)
        return error_set(BNN_E_SHAPE, "%s: layer too wide", fn);

    pred_ws w;
    if ((st = ws_init(&w, m, chunk, fn)))
        return st;
    /* The output holds every sample, so each network is drawn once and
     * the chunks only bound the activations. */
    for (size_t s = 0; s < S; s++) {
        draw_network(g, seed, s, w.net);
        for (size_t i0 = 0; i0 < n; i0 += chunk) {
            size_t rows = n - i0 < chunk ? n - i0 : chunk;
            pack_inputs(&w, x + i0 * in, rows);
            forward(&w, rows, logp + (s * n + i0) * C);
        }
    }
    ws_free(&w);
    return BNN_OK;
}

BNN_API bnn_status bnn_predict_samples(const bnn_guide *guide, const float *x,
                                       size_t n, size_t num_samples,
                                       uint64_t seed, float *logp)
{
    return predict_samples_with_chunk(guide, x, n, num_samples, seed, logp,
                                      0);
}

/* ---- bnn_predict_regression ---------------------------------------------- */

bnn_status predict_regression_with_chunk(const bnn_guide *g, const float *x,
                                         size_t n, size_t S, uint64_t seed,
                                         float *mean, float *var,
                                         size_t chunk)
{
    static const char fn[] = "bnn_predict_regression";
    size_t C;
    bnn_status st = check_call(fn, g, x, n, S, 0, &C);
    if (st)
        return st;
    if (!mean)
        return error_set(BNN_E_INVALID, "%s: NULL mean", fn);
    if ((st = check_input(fn, g, x, n)))
        return st;
    const bnn_model *m = g->model;
    size_t in = m->sizes[0];
    /* per row: one sample's outputs, running mean and sum of squares */
    chunk = choose_chunk(m, n, C * (sizeof(float) + 2 * sizeof(double)),
                         chunk);
    if (!chunk)
        return error_set(BNN_E_SHAPE, "%s: layer too wide", fn);

    pred_ws w;
    if ((st = ws_init(&w, m, chunk, fn)))
        return st;
    float *y = mem_alloc_array(&m->alloc, chunk * C, sizeof(float));
    double *mu = mem_alloc_array(&m->alloc, chunk * C, sizeof(double));
    double *m2 = mem_alloc_array(&m->alloc, chunk * C, sizeof(double));
    if (!y || !mu || !m2) {
        mem_free(&m->alloc, y);
        mem_free(&m->alloc, mu);
        mem_free(&m->alloc, m2);
        ws_free(&w);
        return error_set(BNN_E_NOMEM, "%s: cannot allocate workspace", fn);
    }

    double noise2 = (double)m->noise_sigma * (double)m->noise_sigma;
    for (size_t i0 = 0; i0 < n; i0 += chunk) {
        size_t rows = n - i0 < chunk ? n - i0 : chunk, k = rows * C;
        memset(mu, 0, k * sizeof *mu);
        memset(m2, 0, k * sizeof *m2);
        pack_inputs(&w, x + i0 * in, rows);
        for (size_t s = 0; s < S; s++) {
            draw_network(g, seed, s, w.net);
            forward(&w, rows, y);
            /* Welford: no cancellation when the spread is small next to
             * the mean. */
            double inv = 1.0 / (double)(s + 1);
            for (size_t j = 0; j < k; j++) {
                double v = (double)y[j], d = v - mu[j];
                mu[j] += d * inv;
                m2[j] += d * (v - mu[j]);
            }
        }
        for (size_t j = 0; j < k; j++) {
            mean[i0 * C + j] = (float)mu[j];
            if (var)
                var[i0 * C + j] = (float)(m2[j] / (double)S + noise2);
        }
    }

    mem_free(&m->alloc, y);
    mem_free(&m->alloc, mu);
    mem_free(&m->alloc, m2);
    ws_free(&w);
    return BNN_OK;
}

BNN_API bnn_status bnn_predict_regression(const bnn_guide *guide,
                                          const float *x, size_t n,
                                          size_t num_samples, uint64_t seed,
                                          float *mean, float *var)
{
    return predict_regression_with_chunk(guide, x, n, num_samples, seed,
                                         mean, var, 0);
}

/* ---- bnn_predict_with_uncertainty ---------------------------------------- */

/* The caller's config over the defaults: only fields its struct_size
 * covers are read. */
static bnn_status read_config(const bnn_predict_config *cfg,
                              bnn_predict_config *c, const char *fn)
{
    bnn_predict_config_init(c);
    if (!cfg)
        return BNN_OK;
    bnn_status st = sized_read(c, sizeof *c, cfg, SIZED_END(bnn_predict_config, num_samples),
                               "bnn_predict_config");
    if (st != BNN_OK)
        return st;
    if (c->num_threads > BNN_MAX_THREADS)
        return error_set(BNN_E_INVALID, "%s: num_threads must be in [0, %d], got %zu", fn,
                         BNN_MAX_THREADS, c->num_threads);
    if (c->num_threads == 0)
        c->num_threads = 1;
    return BNN_OK;
}

/* One chunk of bnn_predict_with_uncertainty, shared out among T threads:
 * thread t first runs the networks s = t, t + T, ... on all rows of the
 * chunk, each with its own workspace, into buf (sample-major); then the
 * records of its own slice of the rows.  Which thread does what changes
 * no value. */
typedef struct unc_job {
    const bnn_guide *g;
    const bnn_predict_config *cfg;
    size_t C, T;
    pred_ws *ws;
    float **scratch;
    float *buf;
    float *medians, *quantiles;
    unsigned char *base;
    size_t rs;
    const float *x; /* the chunk's first input */
    size_t i0, rows;
} unc_job;

static void unc_samples_task(void *vj, size_t t)
{
    const unc_job *j = vj;
    pred_ws *w = &j->ws[t];
    size_t k = j->rows * j->C;
    pack_inputs(w, j->x, j->rows);
    for (size_t s = t; s < j->cfg->num_samples; s += j->T) {
        float *ps = j->buf + s * k;
        draw_network(j->g, j->cfg->seed, s, w->net);
        forward(w, j->rows, ps);
        for (size_t e = 0; e < k; e++)
            ps[e] = vmath_exp_nonpos(ps[e]);
    }
}

static void unc_records_task(void *vj, size_t t)
{
    const unc_job *j = vj;
    const bnn_predict_config *cfg = j->cfg;
    size_t C = j->C, nq = cfg->n_quantiles, k = j->rows * C;
    size_t lo = j->rows * t / j->T, hi = j->rows * (t + 1) / j->T;
    for (size_t i = lo; i < hi; i++) {
        size_t r = j->i0 + i;
        bnn_prediction rec;
        uncertainty_stats(j->buf + i * C, cfg->num_samples, C, k, cfg->rule, cfg->threshold,
                      cfg->quantiles, nq, &rec, j->medians ? j->medians + r * C : NULL,
                      j->quantiles ? j->quantiles + r * C * nq : NULL,
                      cfg->mean_probs ? cfg->mean_probs + r * C : NULL, j->scratch[t]);
        refusal_record_store(j->base + r * j->rs, j->rs, &rec);
    }
}

bnn_status predict_with_chunk(const bnn_guide *g,
                              const bnn_predict_config *cfg_in,
                              const float *x, size_t n, bnn_prediction *out,
                              size_t rs, float *medians, float *quantiles,
                              size_t chunk)
{
    static const char fn[] = "bnn_predict_with_uncertainty";
    bnn_predict_config cfg;
    size_t C, tmp;
    bnn_status st = read_config(cfg_in, &cfg, fn);
    if (st)
        return st;
    const size_t S = cfg.num_samples, nq = cfg.n_quantiles;
    if ((st = check_call(fn, g, x, n, S, 1, &C)))
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
    if ((st = refusal_check_rule(fn, cfg.rule, cfg.threshold)))
        return st;
    if (nq && !cfg.quantiles)
        return error_set(BNN_E_INVALID, "%s: n_quantiles %zu but NULL "
                         "quantile levels", fn, nq);
    for (size_t j = 0; j < nq; j++)
        if (!(cfg.quantiles[j] >= 0.0f && cfg.quantiles[j] <= 1.0f))
            return error_set(BNN_E_INVALID,
                             "%s: quantile level %zu = %g not in [0, 1]", fn,
                             j, (double)cfg.quantiles[j]);
    if (quantiles && nq &&
        (mem_mul_overflow(n * C, nq, &tmp) ||
         mem_mul_overflow(tmp, sizeof(float), &tmp)))
        return error_set(BNN_E_SHAPE, "%s: n * classes * n_quantiles "
                         "overflows", fn);
    if (quantiles && !nq)
        quantiles = NULL;
    if ((st = check_input(fn, g, x, n)))
        return st;

    const bnn_model *m = g->model;
    size_t in = m->sizes[0], per_row;
    /* per row: every sample's probabilities, which medians need at once */
    if (mem_mul_overflow(S, C, &per_row) ||
        mem_mul_overflow(per_row, sizeof(float), &per_row) ||
        !(chunk = choose_chunk(m, n, per_row, chunk)))
        return error_set(BNN_E_SHAPE, "%s: num_samples * classes overflows",
                         fn);

    /* Everything is allocated before the first output is written, so a
     * failure leaves the outputs as they were. */
    size_t T = cfg.num_threads < S ? cfg.num_threads : S;
    unc_job job;
    memset(&job, 0, sizeof job);
    job.g = g;
    job.cfg = &cfg;
    job.C = C;
    job.T = T;
    job.medians = medians;
    job.quantiles = quantiles;
    job.base = (unsigned char *)out;
    job.rs = rs;
    job.ws = mem_alloc_array(&m->alloc, T, sizeof *job.ws);
    job.scratch = mem_alloc_array(&m->alloc, T, sizeof *job.scratch);
    job.buf = mem_alloc_array(&m->alloc, chunk, per_row);
    pool *workers = NULL;
    size_t ready = 0;
    if (job.ws && job.scratch) {
        for (; ready < T; ready++) {
            job.scratch[ready] = mem_alloc_array(&m->alloc, S, sizeof(float));
            if (!job.scratch[ready] || ws_init(&job.ws[ready], m, chunk, fn) != BNN_OK) {
                mem_free(&m->alloc, job.scratch[ready]);
                break;
            }
        }
    }
    if (!job.ws || !job.scratch || !job.buf || ready < T)
        st = error_set(BNN_E_NOMEM, "%s: cannot allocate workspace", fn);
    else
        st = pool_create(&m->alloc, T, &workers);

    if (st == BNN_OK) {
        for (size_t i0 = 0; i0 < n; i0 += chunk) {
            job.i0 = i0;
            job.rows = n - i0 < chunk ? n - i0 : chunk;
            job.x = x + i0 * in;
            pool_run(workers, unc_samples_task, &job, T);
            pool_run(workers, unc_records_task, &job, T);
        }
    }
    pool_free(workers);
    for (size_t t = 0; t < ready; t++) {
        mem_free(&m->alloc, job.scratch[t]);
        ws_free(&job.ws[t]);
    }
    mem_free(&m->alloc, job.buf);
    mem_free(&m->alloc, job.scratch);
    mem_free(&m->alloc, job.ws);
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
    return predict_with_chunk(guide, cfg, x, n, out, record_size, medians,
                              quantiles, 0);
}
