/* Training (one SVI step per minibatch, the program's own shuffling) and the
 * prediction helpers that put the library's threads to use. */
#define _GNU_SOURCE /* isatty */

#include "mnist.h"

#include <math.h>
#include <pthread.h>
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

/* bnn_predict_with_uncertainty shares the networks among threads of its
 * own (bnn_predict_config.num_threads). */
void predict_uncertainty(const options *o, const bnn_guide *g, const bnn_predict_config *pc,
                         const slice *s, bnn_prediction *rec)
{
    bnn_predict_config c = *pc;
    c.num_threads = lib_threads(o);
    bnn_status st = bnn_predict_with_uncertainty(g, &c, s->x, s->n, rec, sizeof *rec, NULL, NULL);
    if (st != BNN_OK)
        die("bnn_predict_with_uncertainty: %s (%s)", bnn_last_error(), bnn_status_string(st));
}

/* bnn_predict has no thread setting, so its inputs are split by rows
 * across threads of this program: the predictors take a const guide and
 * may run concurrently, and what they return does not depend on how the
 * inputs are batched, so the split changes the speed and never a figure. */
typedef struct pred_part {
    const bnn_guide *g;
    size_t samples;
    uint64_t seed;
    const float *x;
    size_t n;
    float *probs;
    bnn_status st;
    char err[256];
} pred_part;

static void *pred_part_run(void *arg)
{
    pred_part *p = arg;
    p->st = bnn_predict(p->g, p->x, p->n, p->samples, p->seed, p->probs);
    if (p->st != BNN_OK) /* the message is per thread */
        snprintf(p->err, sizeof p->err, "%s", bnn_last_error());
    return NULL;
}

static void predict_mean_parallel(const options *o, const bnn_guide *g, size_t samples,
                                  uint64_t seed, const slice *s, float *probs)
{
    enum { MAX_PARTS = 64 };
    size_t T = lib_threads(o);
    if (T > MAX_PARTS)
        T = MAX_PARTS;
    if (T > s->n)
        T = s->n ? s->n : 1;
    pred_part part[MAX_PARTS];
    pthread_t tid[MAX_PARTS];
    int started[MAX_PARTS] = {0};
    for (size_t t = 0; t < T; t++) {
        size_t i0 = s->n * t / T, i1 = s->n * (t + 1) / T;
        pred_part *p = &part[t];
        memset(p, 0, sizeof *p);
        p->g = g;
        p->samples = samples;
        p->seed = seed;
        p->x = s->x + i0 * IDX_PIXELS;
        p->n = i1 - i0;
        p->probs = probs + i0 * CLASSES;
        /* part 0, and any part whose thread cannot start, runs here */
        started[t] = t > 0 && pthread_create(&tid[t], NULL, pred_part_run, p) == 0;
    }
    for (size_t t = 0; t < T; t++)
        if (!started[t])
            pred_part_run(&part[t]);
    for (size_t t = 0; t < T; t++)
        if (started[t])
            pthread_join(tid[t], NULL);
    for (size_t t = 0; t < T; t++)
        if (part[t].st != BNN_OK)
            die("bnn_predict: %s (%s)", part[t].err, bnn_status_string(part[t].st));
}

/* Accuracy of the mean prediction of a few networks: a cheap progress
 * signal, not part of the report. */
static double quick_accuracy(const options *o, const bnn_guide *g, const slice *s,
                             size_t samples)
{
    if (s->n == 0)
        return NAN;
    float *p = xmalloc(s->n, CLASSES * sizeof *p);
    predict_mean_parallel(o, g, samples, 12345, s, p);
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
    const size_t batches = (n + B - 1) / B;
    double t_start = now(), busy = 0;

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
                memcpy(xb + k * IDX_PIXELS, d->train.x + j * IDX_PIXELS,
                       IDX_PIXELS * sizeof *xb);
                yb[k] = d->train.y[j];
            }
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
