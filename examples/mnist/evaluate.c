/* Evaluation on the test set: the original program's forced answer and
 * median rule, accuracy and calibration of the mean prediction, and the
 * refusal policy (each rule's threshold from the validation slice). */
#include "mnist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const rule_name RULES[N_RULES] = {
    {BNN_REFUSE_MAX_PROB, "MAX_PROB"},
    {BNN_REFUSE_ENTROPY, "ENTROPY"},
    {BNN_REFUSE_MUTUAL_INFO, "MUTUAL_INFO"},
    {BNN_REFUSE_MEDIAN, "MEDIAN"},
};

void predict_slice(const options *o, const bnn_guide *g, const slice *s,
                   slice_pred *sp)
{
    bnn_predict_config pc;
    bnn_predict_config_init(&pc);
    pc.num_samples = o->refuse_samples;
    pc.seed = o->predict_seed;
    pc.rule = BNN_REFUSE_MEDIAN;
    pc.threshold = o->refuse_threshold;
    sp->rec_median = xmalloc(s->n, sizeof(bnn_prediction));
    sp->rec_mean = xmalloc(s->n, sizeof(bnn_prediction));
    sp->probs = xmalloc(s->n, CLASSES * sizeof(float));
    /* One pass gives the records and the mean probabilities they
     * summarise (what bnn_predict would return for this seed). */
    pc.mean_probs = sp->probs;
    predict_uncertainty(o, g, &pc, s, sp->rec_median);
    for (size_t i = 0; i < s->n; i++) {
        bnn_prediction r = sp->rec_median[i];
        r.label = r.mean_label;
        r.prob = sp->probs[i * CLASSES + (size_t)r.mean_label];
        r.refused = 0;
        sp->rec_mean[i] = r;
    }
}

void slice_pred_free(slice_pred *sp)
{
    free(sp->rec_median);
    free(sp->rec_mean);
    free(sp->probs);
}

bnn_prediction *records_for(const slice_pred *sp, bnn_refusal_rule rule)
{
    return rule == BNN_REFUSE_MEDIAN ? sp->rec_median : sp->rec_mean;
}

/* Without a validation slice (--val-fraction 0) nothing can be calibrated:
 * the original program's median rule at --threshold stands in as the
 * policy, judged on the test set, and every report says so. */
static void uncalibrated_policy(const options *o, const slice *t, const slice_pred *tp,
                                eval_report *r)
{
    r->calibrated = 0;
    r->reached = 0;
    for (size_t k = 0; k < N_RULES; k++) {
        rule_result *rr = &r->rules[k];
        rr->threshold = NAN;
        rr->val_coverage = rr->val_accuracy = rr->test_coverage = rr->test_accuracy = NAN;
        if (RULES[k].rule != BNN_REFUSE_MEDIAN)
            continue;
        r->chosen = k;
        rr->threshold = o->refuse_threshold;
        bnn_prediction *tmp = xmalloc(t->n, sizeof *tmp);
        memcpy(tmp, records_for(tp, RULES[k].rule), t->n * sizeof *tmp);
        CHECK(bnn_refusal_apply(tmp, sizeof *tmp, t->n, RULES[k].rule, rr->threshold));
        bnn_refusal_report rep;
        bnn_refusal_report_init(&rep);
        CHECK(bnn_eval_refusal(tmp, sizeof *tmp, t->y, t->n, &rep));
        rr->test_coverage = 1.0 - rep.refused_fraction;
        rr->test_accuracy = rep.accepted_accuracy;
        free(tmp);
    }
}

void evaluate(const options *o, const bnn_guide *g, const dataset *d,
              eval_report *r, slice_pred *test_pred)
{
    const slice *t = &d->test;
    double t0 = now();
    memset(r, 0, sizeof *r);
    r->n_test = t->n;
    r->n_val = d->val.n;

    /* The original program's forced answer: argmax of the mean sampled
     * log-probability over --forced-samples (10) samples. */
    size_t S = o->forced_samples;
    float *logp = xmalloc(S * t->n, CLASSES * sizeof *logp);
    predict_samples(o, g, t->x, t->n, S, o->predict_seed, logp);
    size_t ok = 0;
    for (size_t i = 0; i < t->n; i++) {
        double mean[CLASSES] = {0};
        for (size_t s = 0; s < S; s++)
            for (size_t c = 0; c < CLASSES; c++)
                mean[c] += logp[(s * t->n + i) * CLASSES + c];
        size_t best = 0;
        for (size_t c = 1; c < CLASSES; c++)
            if (mean[c] > mean[best])
                best = c;
        ok += (int32_t)best == t->y[i];
    }
    free(logp);
    r->forced_accuracy = (double)ok / (double)t->n;

    predict_slice(o, g, t, test_pred);
    bnn_refusal_report_init(&r->median);
    CHECK(bnn_eval_refusal(test_pred->rec_median, sizeof(bnn_prediction), t->y, t->n,
                           &r->median));
    bnn_metrics_init(&r->metrics);
    CHECK(bnn_eval_metrics(test_pred->probs, t->y, t->n, CLASSES, ECE_BINS, &r->metrics));

    float *conf = xmalloc(t->n, sizeof *conf);
    int32_t *correct = xmalloc(t->n, sizeof *correct);
    for (size_t i = 0; i < t->n; i++) {
        conf[i] = test_pred->rec_mean[i].prob;
        correct[i] = test_pred->rec_mean[i].label == t->y[i];
    }
    CHECK(bnn_eval_risk_coverage(conf, correct, t->n, NULL, NULL, &r->aurc));
    free(conf);
    free(correct);

    if (d->val.n == 0) {
        uncalibrated_policy(o, t, test_pred, r);
        r->seconds = now() - t0;
        return;
    }
    /* Refusal policy: each rule's threshold from the validation slice, the
     * rule that answers most often at the target accuracy, judged on the
     * test set. */
    r->calibrated = 1;
    slice_pred vp;
    predict_slice(o, g, &d->val, &vp);
    bnn_prediction *tmp = xmalloc(t->n, sizeof *tmp);
    int any = 0;
    r->chosen = 0;
    for (size_t k = 0; k < N_RULES; k++) {
        rule_result *rr = &r->rules[k];
        CHECK(bnn_calibrate_threshold(records_for(&vp, RULES[k].rule), sizeof(bnn_prediction),
                                      d->val.y, d->val.n, RULES[k].rule,
                                      BNN_CALIBRATE_ACCURACY, o->target_accuracy,
                                      &rr->threshold, &rr->val_coverage, &rr->val_accuracy));
        memcpy(tmp, records_for(test_pred, RULES[k].rule), t->n * sizeof *tmp);
        CHECK(bnn_apply_refusal(tmp, sizeof *tmp, t->n, RULES[k].rule, rr->threshold));
        bnn_refusal_report rep;
        bnn_refusal_report_init(&rep);
        CHECK(bnn_eval_refusal(tmp, sizeof *tmp, t->y, t->n, &rep));
        rr->test_coverage = 1.0 - rep.refused_fraction;
        rr->test_accuracy = rep.accepted_accuracy;
        /* Ties in coverage keep the earlier (simpler) rule. */
        int reaches = rr->val_accuracy >= o->target_accuracy;
        const rule_result *cur = &r->rules[r->chosen];
        if (reaches && (!any || rr->val_coverage > cur->val_coverage))
            r->chosen = k, any = 1;
        else if (!any && k > 0 && rr->val_accuracy > cur->val_accuracy)
            r->chosen = k;
    }
    r->reached = any;
    free(tmp);
    slice_pred_free(&vp);
    r->seconds = now() - t0;
}
