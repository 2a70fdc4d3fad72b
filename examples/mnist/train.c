/* Training (one SVI step per minibatch, the program's own shuffling) and the
 * prediction helpers that put the library's threads to use. */
#define _GNU_SOURCE /* isatty */

#include "mnist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* splitmix64: the program's own shuffling stream, separate from the
 * library's noise so changing the batching never changes the noise seed. */
static uint64_t mix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void shuffle(size_t *idx, size_t n, uint64_t *state)
{
    for (size_t i = n; i > 1; i--) {
        /* Multiply-shift keeps the bias below 2^-32 for any n we see. */
        size_t j = (size_t)(((mix64(state) >> 32) * (uint64_t)i) >> 32);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

/* img shifted by (dx, dy) pixels into out, zeros where nothing moves in:
 * the same digit a few pixels off, which the test set has too. */
static void shift_image(const float *img, float *out, int dx, int dy)
{
    for (int r = 0; r < IDX_ROWS; r++)
        for (int q = 0; q < IDX_COLS; q++) {
            int sr = r - dy, sq = q - dx;
            out[r * IDX_COLS + q] = sr >= 0 && sr < IDX_ROWS && sq >= 0 && sq < IDX_COLS
                                        ? img[sr * IDX_COLS + sq]
                                        : 0.0f;
        }
}

/* The learning rate of step t of total: a linear warm-up over the first
 * `warm` steps, then the decay over the rest. */
static float step_lr(const options *o, uint64_t t, uint64_t total, uint64_t warm)
{
    float lr;
    if (t < warm)
        return o->lr * (float)(t + 1) / (float)warm;
    CHECK(bnn_lr_schedule(o->lr_decay, o->lr, o->lr_end, t - warm, total - warm, &lr));
    return lr;
}

static void fmt_duration(char *buf, size_t len, double s)
{
    if (s < 0 || !isfinite(s))
        s = 0;
    unsigned long t = (unsigned long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%lu:%02lu", t / 60, t % 60);
}

/* The library's own threads, for training passes and prediction: as many
 * as the BLAS was given (prediction does not use the BLAS at all). */
size_t lib_threads(const options *o)
{
    return o->blas_threads < 1 ? 1 : (size_t)o->blas_threads;
}

/* A predictor with the program's sampling mode and threads: the library
 * shares each chunk of inputs among its threads, so the program splits
 * nothing itself. */
static bnn_predictor *make_predictor(const options *o, const bnn_guide *g,
                                     const bnn_predict_config *pc, size_t n)
{
    bnn_predict_config c = *pc;
    c.num_threads = lib_threads(o);
    c.sampling = o->sampling;
    bnn_predictor *p = NULL;
    bnn_status st = bnn_predictor_create(g, &c, n ? n : 1, &p);
    if (st != BNN_OK)
        die("bnn_predictor_create: %s (%s)", bnn_last_error(), bnn_status_string(st));
    return p;
}

void predict_uncertainty(const options *o, const bnn_guide *g, const bnn_predict_config *pc,
                         const slice *s, bnn_prediction *rec)
{
    bnn_predictor *p = make_predictor(o, g, pc, s->n);
    CHECK(bnn_predictor_run(p, s->x, s->n, rec, sizeof *rec, NULL, NULL, pc->mean_probs));
    bnn_predictor_free(p);
}

void predict_samples(const options *o, const bnn_guide *g, const float *x, size_t n, size_t S,
                     uint64_t seed, float *logp)
{
    bnn_predict_config pc;
    bnn_predict_config_init(&pc);
    pc.num_samples = S;
    pc.seed = seed;
    bnn_predictor *p = make_predictor(o, g, &pc, n);
    CHECK(bnn_predictor_samples(p, x, n, logp));
    bnn_predictor_free(p);
}

static void predict_mean(const options *o, const bnn_guide *g, size_t samples, uint64_t seed,
                         const slice *s, float *probs)
{
    bnn_predict_config pc;
    bnn_predict_config_init(&pc);
    pc.num_samples = samples;
    pc.seed = seed;
    bnn_predictor *p = make_predictor(o, g, &pc, s->n);
    CHECK(bnn_predictor_probs(p, s->x, s->n, probs));
    bnn_predictor_free(p);
}

/* Accuracy of the mean prediction of a few networks: a cheap progress
 * signal, not part of the report. */
static double quick_accuracy(const options *o, const bnn_guide *g, const slice *s,
                             size_t samples)
{
    if (s->n == 0)
        return NAN;
    float *p = xmalloc(s->n, CLASSES * sizeof *p);
    predict_mean(o, g, samples, 12345, s, p);
    size_t ok = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t best = 0;
        for (size_t c = 1; c < CLASSES; c++)
            if (p[i * CLASSES + c] > p[i * CLASSES + best])
                best = c;
        ok += (int32_t)best == s->y[i];
    }
    free(p);
    return (double)ok / (double)s->n;
}

void train(const options *o, const dataset *d, bnn_guide *g,
           bnn_optimizer *opt, train_stats *ts)
{
    const size_t n = d->train.n, B = o->batch;
    const int live = !o->quiet && isatty(STDOUT_FILENO);
    size_t *order = xmalloc(n, sizeof *order);
    float *xb = xmalloc(B, IDX_PIXELS * sizeof *xb);
    int32_t *yb = xmalloc(B, sizeof *yb);
    uint64_t rng = o->seed ^ 0x53485546464c45ull; /* "SHUFFLE" */
    uint64_t shift_rng = o->seed ^ 0x5348494654ull; /* "SHIFT": its own stream */
    const size_t batches = (n + B - 1) / B;
    const uint64_t total = (uint64_t)(o->epochs * batches);
    uint64_t warm = (uint64_t)(o->warmup * (double)batches + 0.5);
    if (warm >= total)
        die("--warmup %g: not shorter than the run (%zu epochs)", o->warmup, o->epochs);
    double t_start = now(), busy = 0;
    /* KL warm-up: the weight set at creation, reached linearly over the
     * first kl_warmup epochs.  Step t of T uses (t + 1) / T of it, never
     * 0, which IVON refuses (its prior precision would vanish). */
    float kl_full;
    CHECK(bnn_optimizer_get_kl_weight(opt, &kl_full));
    const uint64_t kl_warm = (uint64_t)(o->kl_warmup * batches);

    for (size_t i = 0; i < n; i++)
        order[i] = i;
    memset(ts, 0, sizeof *ts);

    for (size_t epoch = 0; epoch < o->epochs; epoch++) {
        shuffle(order, n, &rng);
        double loss = 0, nll = 0, kl = 0, t_epoch = now(), t_print = 0;
        size_t seen = 0;
        for (size_t b = 0; b < batches; b++) {
            size_t m = b + 1 < batches ? B : n - b * B;
            for (size_t k = 0; k < m; k++) {
                size_t j = order[b * B + k];
                if (o->shift) {
                    uint64_t z = mix64(&shift_rng), span = 2 * o->shift + 1;
                    int dx = (int)((z & 0xffffffffu) * span >> 32) - (int)o->shift;
                    int dy = (int)((z >> 32) * span >> 32) - (int)o->shift;
                    shift_image(d->train.x + j * IDX_PIXELS, xb + k * IDX_PIXELS, dx, dy);
                } else {
                    memcpy(xb + k * IDX_PIXELS, d->train.x + j * IDX_PIXELS,
                           IDX_PIXELS * sizeof *xb);
                }
                yb[k] = d->train.y[j];
            }
            CHECK(bnn_optimizer_set_lr(opt, step_lr(o, ts->steps, total, warm)));
            if (ts->steps < kl_warm)
                CHECK(bnn_optimizer_set_kl_weight(
                    opt, (float)((double)kl_full * (double)(ts->steps + 1) / (double)kl_warm)));
            bnn_svi_stats st = {.struct_size = sizeof st};
            bnn_status rc = bnn_svi_step(opt, xb, yb, NULL, m, &st);
            if (rc != BNN_OK)
                die("epoch %zu step %zu: %s (%s)%s", epoch + 1, b + 1, bnn_last_error(),
                    bnn_status_string(rc),
                    rc == BNN_E_NUMERIC ? "; try a smaller --lr" : "");
            loss += st.loss;
            nll += st.nll;
            kl = st.kl;
            seen += m;
            ts->steps++;
            double t = now();
            if (live && (t - t_print > 0.1 || b + 1 == batches)) {
                t_print = t;
                double el = t - t_epoch, rate = (double)seen / (el > 1e-9 ? el : 1e-9);
                char eta[32];
                fmt_duration(eta, sizeof eta, (double)(n - seen) / rate);
                /* Kept under 80 columns: a wrapped line breaks \r updates. */
                int fill = (int)(12.0 * (double)seen / (double)n);
                printf("\repoch %zu/%zu [%.*s%*s] loss %.4g nll %.3f kl %.3g %.0f img/s ETA %s ",
                       epoch + 1, o->epochs, fill, "############", 12 - fill, "",
                       loss / (double)seen, nll / (double)seen, kl, rate, eta);
                fflush(stdout);
            }
        }
        double el = now() - t_epoch;
        busy += el;
        ts->final_loss = loss / (double)n;
        ts->final_nll = nll / (double)n;
        ts->final_kl = kl;
        if (!o->quiet) {
            double vacc = quick_accuracy(o, g, &d->val, 10);
            char tbuf[32], vbuf[48] = "";
            fmt_duration(tbuf, sizeof tbuf, now() - t_start);
            if (!isnan(vacc))
                snprintf(vbuf, sizeof vbuf, "val acc %.2f%% (10 samples) ", 100 * vacc);
            printf("%sepoch %zu/%zu loss/img %.4g nll/img %.4f kl %.4g %.0f img/s "
                   "%selapsed %s\n",
                   live ? "\r\033[K" : "", epoch + 1, o->epochs, loss / (double)n,
                   nll / (double)n, kl, (double)n / el, vbuf, tbuf);
            fflush(stdout);
        }
    }
    ts->seconds = now() - t_start;
    ts->images_per_second = (double)n * (double)o->epochs / (busy > 0 ? busy : 1e-9);
    free(order);
    free(xb);
    free(yb);
}
