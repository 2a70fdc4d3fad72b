/* The PNG figures: the original program's per-image histograms for the most
 * uncertain and most confident test images, the reliability diagram, the
 * risk-coverage curve, 100 test images answered or refused, and the
 * out-of-distribution histograms and ROC curves. */
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
    size_t S = o->refuse_samples;
    float *logp = xmalloc(S, CLASSES * sizeof *logp);
    float *all = xmalloc(S * (count ? count : 1), CLASSES * sizeof *all);
    float *xs = xmalloc(count ? count : 1, IDX_PIXELS * sizeof *xs);
    for (size_t k = 0; k < count; k++)
        memcpy(xs + k * IDX_PIXELS, t->x + pick[k].index * IDX_PIXELS, IDX_PIXELS * sizeof *xs);
    /* Same seed and mode as the evaluation, and an input's samples do not
     * depend on the batch: these are the very samples behind the records. */
    if (count)
        predict_samples(o, g, xs, count, S, o->predict_seed, all);
    for (size_t k = 0; k < count; k++) {
        size_t i = pick[k].index;
        const bnn_prediction *rec = &tp->rec_median[i];
        for (size_t s = 0; s < S; s++)
            memcpy(logp + s * CLASSES, all + (s * count + k) * CLASSES, CLASSES * sizeof *logp);
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
    free(all);
    free(xs);
    free(pick);
}

/* 100 test images drawn at random (--predict-seed), each answered or
 * refused by the chosen policy. */
static void plot_grid(const options *o, const slice *t, const eval_report *r,
                      const slice_pred *tp)
{
    enum { SHOW = 100 };
    size_t n = t->n < SHOW ? t->n : SHOW;
    size_t *perm = xmalloc(t->n, sizeof *perm);
    for (size_t i = 0; i < t->n; i++)
        perm[i] = i;
    uint64_t st = o->predict_seed ^ 0x47524944ull; /* "GRID" */
    for (size_t i = 0; i < n; i++) { /* the first n of a Fisher-Yates shuffle */
        uint64_t z = (st += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        size_t j = i + (size_t)(((z >> 32) * (uint64_t)(t->n - i)) >> 32);
        size_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    bnn_refusal_rule rule = RULES[r->chosen].rule;
    float threshold = r->rules[r->chosen].threshold;
    const bnn_prediction *all = records_for(tp, rule);
    bnn_prediction *rec = xmalloc(n, sizeof *rec);
    float *img = xmalloc(n, IDX_PIXELS * sizeof *img);
    int32_t *answer = xmalloc(n, sizeof *answer), *refused = xmalloc(n, sizeof *refused);
    int32_t *truth = xmalloc(n, sizeof *truth);
    for (size_t i = 0; i < n; i++) {
        rec[i] = all[perm[i]];
        memcpy(img + i * IDX_PIXELS, t->x + perm[i] * IDX_PIXELS, IDX_PIXELS * sizeof *img);
        truth[i] = t->y[perm[i]];
    }
    CHECK(bnn_apply_refusal(rec, sizeof *rec, n, rule, threshold));
    size_t n_ref = 0, wrong = 0;
    for (size_t i = 0; i < n; i++) {
        answer[i] = rec[i].label;
        refused[i] = rec[i].refused;
        n_ref += refused[i] != 0;
        wrong += !refused[i] && answer[i] != truth[i];
    }
    char path[4096], err[512], title[200];
    snprintf(path, sizeof path, "%s/answers.png", o->plots);
    snprintf(title, sizeof title, "%zu random test images, %s policy (t=%.4g): %zu answered "
             "(%zu wrong), %zu refused", n, RULES[r->chosen].name, (double)threshold, n - n_ref,
             wrong, n_ref);
    if (plot_answer_grid(path, img, answer, refused, truth, n, 10, title, err, sizeof err))
        die("%s", err);
    free(perm), free(rec), free(img), free(answer), free(refused), free(truth);
}

typedef struct scored {
    double u;
    int out;
} scored;

static int by_u_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    return (x->u < y->u) - (x->u > y->u);
}

/* ROC points from (0, 0) to (1, 1), one per distinct score, OOD positive:
 * (share of test images, share of the set) judged OOD at each cut. */
static size_t roc_curve(const bnn_prediction *in, size_t n_in, const bnn_prediction *out,
                        size_t n_out, bnn_ood_score sc, double *fpr, double *tpr)
{
    size_t n = n_in + n_out, np = 0, tp = 0, fp = 0;
    scored *v = xmalloc(n, sizeof *v);
    for (size_t i = 0; i < n_in; i++)
        v[i] = (scored){ood_uncertainty(&in[i], sc), 0};
    for (size_t i = 0; i < n_out; i++)
        v[n_in + i] = (scored){ood_uncertainty(&out[i], sc), 1};
    qsort(v, n, sizeof *v, by_u_desc);
    fpr[np] = 0, tpr[np++] = 0;
    for (size_t k = 0; k < n; k++) {
        if (v[k].out)
            tp++;
        else
            fp++;
        if (k + 1 == n || v[k + 1].u != v[k].u)
            fpr[np] = (double)fp / (double)n_in, tpr[np++] = (double)tp / (double)n_out;
    }
    free(v);
    return np;
}

static void plot_ood(const options *o, const slice *t, const slice_pred *tp,
                     const ood_report *ood)
{
    size_t ns = ood->n + 1;
    const float **val = xmalloc(ns, sizeof *val);
    size_t *cnt = xmalloc(ns, sizeof *cnt);
    const char **names = xmalloc(ns, sizeof *names);
    char path[4096], err[512], title[200];
    names[0] = "test";
    cnt[0] = t->n;
    for (size_t k = 0; k < ood->n; k++) {
        names[k + 1] = ood->set[k].name;
        cnt[k + 1] = ood->set[k].s.n;
    }
    for (int which = 0; which < 2; which++) {
        for (size_t k = 0; k < ns; k++) {
            const slice_pred *sp = k ? &ood->set[k - 1].pred : tp;
            float *x = xmalloc(cnt[k], sizeof *x);
            for (size_t i = 0; i < cnt[k]; i++)
                x[i] = which ? sp->rec_median[i].mutual_info : sp->rec_median[i].entropy;
            val[k] = x;
        }
        snprintf(path, sizeof path, "%s/ood-hist-%s.png", o->plots,
                 which ? "mutual-info" : "entropy");
        snprintf(title, sizeof title, "%s of the predictions: test images vs the others",
                 which ? "Mutual information" : "Predictive entropy");
        if (plot_score_histograms(path, val, cnt, names, ns, 40,
                                  which ? "mutual information (nats)" : "entropy (nats)",
                                  title, err, sizeof err))
            die("%s", err);
        for (size_t k = 0; k < ns; k++)
            free((void *)val[k]);
    }

    /* One ROC figure per score, a curve per set. */
    double **fpr = xmalloc(ood->n, sizeof *fpr), **tpr = xmalloc(ood->n, sizeof *tpr);
    size_t *np = xmalloc(ood->n, sizeof *np);
    char (*label)[96] = xmalloc(ood->n, sizeof *label);
    const char **labels = xmalloc(ood->n, sizeof *labels);
    for (size_t j = 0; j < N_OOD_SCORES; j++) {
        bnn_ood_score sc = OOD_SCORES[j].score;
        for (size_t k = 0; k < ood->n; k++) {
            const ood_set *s = &ood->set[k];
            fpr[k] = xmalloc(t->n + s->s.n + 1, sizeof **fpr);
            tpr[k] = xmalloc(t->n + s->s.n + 1, sizeof **tpr);
            np[k] = roc_curve(ood_records(tp, sc), t->n, ood_records(&s->pred, sc), s->s.n, sc,
                              fpr[k], tpr[k]);
            snprintf(label[k], sizeof label[k], "%s: AUROC %.3f, FPR95 %.1f%%", s->name,
                     s->score[j].auroc, 100 * s->score[j].fpr95);
            labels[k] = label[k];
        }
        snprintf(path, sizeof path, "%s/ood-roc-%s.png", o->plots, OOD_SCORES[j].key);
        snprintf(title, sizeof title, "ROC by %s: test images vs each other set",
                 OOD_SCORES[j].name);
        if (plot_roc(path, (const double *const *)fpr, (const double *const *)tpr, np, labels,
                     ood->n, title, err, sizeof err))
            die("%s", err);
        for (size_t k = 0; k < ood->n; k++)
            free(fpr[k]), free(tpr[k]);
    }
    free(fpr), free(tpr), free(np), free(label), free(labels);
    free(val), free(cnt), free(names);
}

void make_plots(const options *o, const bnn_guide *g, const dataset *d,
                const eval_report *r, const slice_pred *tp, const ood_report *ood)
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
    plot_grid(o, t, r, tp);
    if (ood->n)
        plot_ood(o, t, tp, ood);
    printf("Plots written to %s/ (uncertain-*, confident-*, reliability.png, risk-coverage.png, "
           "answers.png%s)\n",
           o->plots, ood->n ? ", ood-hist-*, ood-roc-*" : "");
}
