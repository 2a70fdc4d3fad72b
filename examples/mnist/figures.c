/* The PNG figures: the original program's per-image histograms for the most
 * uncertain and most confident test images, the reliability diagram and the
 * risk-coverage curve. */
#include "mnist.h"
#include "plot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct ranked {
    float score;
    size_t index;
} ranked;

/* Increasing score, then increasing index: a total order, so the choice of
 * examples does not depend on qsort's implementation. */
static int by_score(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* The original program's figure for the `count` most uncertain test images
 * (lowest best median: the refused ones come first) when uncertain is set,
 * else for the most confident correctly answered ones. */
static void plot_examples(const options *o, const bnn_guide *g, const slice *t,
                          const slice_pred *tp, int uncertain)
{
    ranked *pick = xmalloc(t->n, sizeof *pick);
    size_t m = 0;
    for (size_t i = 0; i < t->n; i++) {
        const bnn_prediction *rec = &tp->rec_median[i];
        if (!uncertain && (rec->refused || rec->label != t->y[i]))
            continue;
        pick[m].score = uncertain ? rec->max_median : -rec->max_median;
        pick[m++].index = i;
    }
    qsort(pick, m, sizeof *pick, by_score);
    size_t count = m < o->plot_count ? m : o->plot_count;
    float *logp = xmalloc(o->refuse_samples, CLASSES * sizeof *logp);
    for (size_t k = 0; k < count; k++) {
        size_t i = pick[k].index;
        const bnn_prediction *rec = &tp->rec_median[i];
        /* Same seed as the evaluation, and sample s does not depend on n:
         * these are the very networks behind the record. */
        CHECK(bnn_predict_samples(g, t->x + i * IDX_PIXELS, 1, o->refuse_samples,
                                  o->predict_seed, logp));
        char path[4096], caption[160], err[512];
        snprintf(path, sizeof path, "%s/%s-%02zu-test%zu.png", o->plots,
                 uncertain ? "uncertain" : "confident", k + 1, i);
        if (rec->refused)
            snprintf(caption, sizeof caption,
                     "test #%zu: true %d, refused (best median p %.2f <= %.2g)", i,
                     (int)t->y[i], (double)rec->max_median, (double)o->refuse_threshold);
        else
            snprintf(caption, sizeof caption, "test #%zu: true %d, answered %d (median p %.2f)",
                     i, (int)t->y[i], (int)rec->label, (double)rec->max_median);
        if (plot_sample_histograms(path, t->x + i * IDX_PIXELS, logp, o->refuse_samples,
                                   CLASSES, caption, err, sizeof err))
            die("%s", err);
    }
    free(logp);
    free(pick);
}

void make_plots(const options *o, const bnn_guide *g, const dataset *d,
                const eval_report *r, const slice_pred *tp)
{
    if (!plot_available()) {
        printf("plots are unavailable: this build has no cairo (meson -Dplots=enabled "
               "with libcairo2-dev installed)\n");
        return;
    }
    if (mkdir(o->plots, 0777) != 0 && errno != EEXIST)
        die("%s: %s", o->plots, strerror(errno));
    const slice *t = &d->test;
    plot_examples(o, g, t, tp, 1);
    plot_examples(o, g, t, tp, 0);

    char path[4096], err[512], title[128], label[160];
    float *conf = xmalloc(t->n, sizeof *conf);
    int32_t *correct = xmalloc(t->n, sizeof *correct);
    double *risk = xmalloc(t->n, sizeof *risk), *cov = xmalloc(t->n, sizeof *cov);
    for (size_t i = 0; i < t->n; i++) {
        conf[i] = tp->rec_mean[i].prob;
        correct[i] = tp->rec_mean[i].label == t->y[i];
    }
    snprintf(path, sizeof path, "%s/reliability.png", o->plots);
    snprintf(title, sizeof title, "Reliability: %zu test images, %zu networks", t->n,
             o->refuse_samples);
    if (plot_reliability(path, conf, correct, t->n, ECE_BINS, r->metrics.ece, title, err,
                         sizeof err))
        die("%s", err);
    double aurc;
    CHECK(bnn_eval_risk_coverage(conf, correct, t->n, risk, cov, &aurc));
    const rule_result *c = &r->rules[r->chosen];
    snprintf(path, sizeof path, "%s/risk-coverage.png", o->plots);
    snprintf(label, sizeof label, "%s policy: %.1f%% answered, %.2f%% right",
             RULES[r->chosen].name, 100 * c->test_coverage, 100 * c->test_accuracy);
    snprintf(title, sizeof title, "Risk-coverage by mean probability, %zu test images", t->n);
    if (plot_risk_coverage(path, risk, cov, t->n, aurc, c->test_coverage,
                           1.0 - c->test_accuracy, label, title, err, sizeof err))
        die("%s", err);
    free(conf);
    free(correct);
    free(risk);
    free(cov);
    printf("Plots written to %s/ (uncertain-*, confident-*, reliability.png, risk-coverage.png)\n",
           o->plots);
}
