/* What the program prints: the configuration, the BLAS in use, the
 * evaluation figures on the console, and the same figures as JSON. */
#define _GNU_SOURCE /* strcasecmp */

#include "mnist.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>

void blas_print(const blas_info *info)
{
    if (!info->core[0]) {
        printf("BLAS: %s\n", info->name);
        return;
    }
    printf("BLAS: %s; kernel %s, %d thread%s\n", info->name, info->core,
           info->threads, info->threads == 1 ? "" : "s");
    /* OpenBLAS falls back to generic SSE3 kernels on CPUs newer than it
     * knows; naming a core type that the CPU supports is several times
     * faster and gives the same results. */
    int generic = !strcasecmp(info->core, "Prescott") || !strcasecmp(info->core, "Core2") ||
                  !strcasecmp(info->core, "Katmai") || !strcasecmp(info->core, "Nehalem") ||
                  !strcasecmp(info->core, "Atom") || !strcasecmp(info->core, "Barcelona") ||
                  !strcasecmp(info->core, "generic");
    if (generic) {
        const char *better = "SkylakeX (on AVX-512 CPUs) or Haswell (on AVX2 CPUs)";
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f"))
            better = "SkylakeX";
        else if (__builtin_cpu_supports("avx2"))
            better = "Haswell";
        else
            better = NULL;
#endif
        if (better)
            printf("hint: OpenBLAS runs its generic %s kernel here; "
                   "OPENBLAS_CORETYPE=%s is much faster on this CPU\n",
                   info->core, better);
    }
}

void print_config(const options *o, size_t n_train)
{
    if (o->cnn)
        printf("Model 28x28 conv5x5x%zu pool conv5x5x%zu pool", o->conv[0], o->conv[1]);
    else
        printf("Model 784");
    for (size_t k = 0; k < o->n_hidden; k++)
        printf("-%zu", o->hidden[k]);
    printf("-10 ReLU, ");
    if (o->prior == BNN_PRIOR_NORMAL)
        printf("prior N(0, %g^2)", (double)o->prior_sigma);
    else
        printf("prior %g N(0,%g^2) + %g N(0,%g^2)", (double)o->prior_pi, (double)o->prior_s1,
               1.0 - (double)o->prior_pi, (double)o->prior_s2);
    printf(", init %s\n", o->init == BNN_INIT_PYRO ? "pyro (mu, rho ~ N(0,1))" : "default");
    static const char *decay[] = {"constant", "linear", "cosine"};
    printf("Training (%s configuration): %zu images, %zu epochs, batch %zu, %s lr %g (%s",
           o->pyro ? "pyro" : "default", n_train, o->epochs, o->batch,
           o->optimizer == BNN_OPT_IVON ? "IVON" : "Adam", (double)o->lr,
           decay[o->lr_decay]);
    if (o->lr_decay != BNN_LR_CONSTANT)
        printf(" to %g", (double)o->lr_end);
    printf("), %s estimator", estimator_name(o->estimator));
    if (o->optimizer == BNN_OPT_IVON)
        printf(", ess %g x N, beta2 %g, h0 %g, clip %g", o->ivon_ess_factor,
               (double)o->ivon_beta2, (double)o->ivon_hess_init, (double)o->ivon_clip);
    else
        printf(", %s KL x %g", o->kl == BNN_KL_ANALYTIC ? "analytic" : "Monte Carlo",
               (double)o->kl_weight);
    if (o->kl_warmup)
        printf(", KL warm-up %zu epochs", o->kl_warmup);
    printf("\n");
}

void print_report(const options *o, const eval_report *r)
{
    printf("\nTest set: %zu images; validation slice: %zu images; %s sampling\n", r->n_test,
           r->n_val, sampling_name(o->sampling));
    printf("Original program's figures:\n");
    printf("  forced accuracy (%zu samples)           %6.2f%%\n", o->forced_samples,
           100 * r->forced_accuracy);
    printf("  refused (median rule, %zu samples, t=%.2g) %6.2f%%  (%zu of %zu)\n",
           o->refuse_samples, (double)o->refuse_threshold, 100 * r->median.refused_fraction,
           r->median.refused, r->median.n);
    printf("  accuracy on the accepted                %6.2f%%\n",
           100 * r->median.accepted_accuracy);
    printf("Mean prediction of %zu samples:\n", o->refuse_samples);
    printf("  accuracy %.2f%%  NLL %.4f  Brier %.4f  ECE(%d bins) %.2f%%  AURC %.4f\n",
           100 * r->metrics.accuracy, r->metrics.nll, r->metrics.brier, ECE_BINS,
           100 * r->metrics.ece, r->aurc);
    if (!r->calibrated) {
        const rule_result *c = &r->rules[r->chosen];
        printf("Refusal policy: not calibrated (--val-fraction 0: no validation slice);\n"
               "  the original median rule (t=%.2g) stands in: answers %.2f%% of the test set "
               "with %.2f%% accuracy\n",
               (double)c->threshold, 100 * c->test_coverage, 100 * c->test_accuracy);
        printf("Evaluation took %.1f s\n", r->seconds);
        return;
    }
    printf("Refusal policy for %.2f%% accuracy (thresholds from the validation slice):\n",
           100 * o->target_accuracy);
    printf("  %-12s %10s %14s %14s %14s %14s\n", "rule", "threshold", "val coverage",
           "val accuracy", "test coverage", "test accuracy");
    for (size_t k = 0; k < N_RULES; k++) {
        const rule_result *rr = &r->rules[k];
        printf("%s %-12s %10.4g %13.2f%% %13.2f%% %13.2f%% %13.2f%%\n",
               k == r->chosen ? "*" : " ", RULES[k].name, (double)rr->threshold,
               100 * rr->val_coverage, 100 * rr->val_accuracy, 100 * rr->test_coverage,
               100 * rr->test_accuracy);
    }
    const rule_result *c = &r->rules[r->chosen];
    printf("  chosen: %s (threshold %.4g): answers %.2f%% of the test set with %.2f%% accuracy%s\n",
           RULES[r->chosen].name, (double)c->threshold, 100 * c->test_coverage,
           100 * c->test_accuracy,
           r->reached ? "" : "\n  (no rule reached the target on the validation slice)");
    printf("Evaluation took %.1f s\n", r->seconds);
}

void print_ood(const options *o, const ood_report *ood)
{
    if (!ood->n)
        return;
    printf("Out-of-distribution and shifted inputs (%s; in-distribution: the %zu test images):\n",
           o->ood_limit ? "at most --ood-limit images per set" : "every image", ood->test_n);
    printf("  %-14s %7s %9s %9s %9s   refused by the %s policy (t=%.4g)\n", "set", "images",
           "accuracy", "entropy", "mut.info", ood->rule_name, (double)ood->threshold);
    printf("  %-14s %7zu %9s %9.4f %9.3g   %6.2f%%\n", "test", ood->test_n, "",
           ood->test_mean_entropy, ood->test_mean_mi, 100 * ood->test_refused);
    for (size_t k = 0; k < ood->n; k++) {
        const ood_set *s = &ood->set[k];
        char acc[16] = "-";
        if (s->labelled)
            snprintf(acc, sizeof acc, "%.2f%%", 100 * s->accuracy);
        printf("  %-14s %7zu %9s %9.4f %9.3g   %6.2f%%\n", s->name, s->s.n, acc, s->mean_entropy,
               s->mean_mi, 100 * s->refused);
    }
    printf("  AUROC / FPR95 against the test images, by score:\n");
    printf("  %-14s", "set");
    for (size_t j = 0; j < N_OOD_SCORES; j++)
        printf(" %17s", OOD_SCORES[j].name);
    printf("\n");
    for (size_t k = 0; k < ood->n; k++) {
        const ood_set *s = &ood->set[k];
        printf("  %-14s", s->name);
        for (size_t j = 0; j < N_OOD_SCORES; j++)
            printf("   %.4f / %5.1f%%", s->score[j].auroc, 100 * s->score[j].fpr95);
        printf("\n");
    }
    printf("Out-of-distribution evaluation took %.1f s\n", ood->seconds);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

const char *sampling_name(bnn_sampling s)
{
    switch (s) {
    case BNN_SAMPLING_NETWORKS: return "networks";
    case BNN_SAMPLING_MEAN: return "mean";
    default: return "marginal";
    }
}

/* What a sample is: a network with convolutions is drawn as whole networks
 * in the marginal mode too (the marginal rule is exact for dense layers
 * only), so "sampling" alone would misdescribe it. */
static const char *draws_name(bnn_sampling s, const bnn_model_config *mc)
{
    int has_conv = 0;
    for (size_t k = 0; k < mc->n_layers; k++)
        has_conv |= mc->layers[k].kind == BNN_LAYER_CONV2D;
    switch (s) {
    case BNN_SAMPLING_NETWORKS: return "whole networks";
    case BNN_SAMPLING_MEAN: return "mean network";
    default: return has_conv ? "whole networks" : "per-input pre-activations";
    }
}

const char *estimator_name(bnn_estimator e)
{
    return e == BNN_EST_LOCAL_REPARAM ? "lrt" : e == BNN_EST_WEIGHT_SAMPLING ? "weight" : "flipout";
}

/* A number, or null for NaN (JSON has no NaN). */
static void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

static void write_ood(FILE *f, const options *o, const ood_report *ood)
{
    fprintf(f, "    \"ood\": {\"limit\": %zu, \"policy\": {\"rule\": \"%s\", \"threshold\": %.9g},\n",
            o->ood_limit, ood->rule_name, (double)ood->threshold);
    fprintf(f, "      \"test\": {\"images\": %zu, \"mean_entropy\": %.9g, "
               "\"mean_mutual_info\": %.9g, \"refused_fraction\": %.9g},\n",
            ood->test_n, ood->test_mean_entropy, ood->test_mean_mi, ood->test_refused);
    fprintf(f, "      \"sets\": [\n");
    for (size_t k = 0; k < ood->n; k++) {
        const ood_set *s = &ood->set[k];
        fprintf(f, "        {\"name\": ");
        json_string(f, s->name);
        fprintf(f, ", \"source\": ");
        json_string(f, s->source);
        fprintf(f, ", \"images\": %zu, \"accuracy\": ", s->s.n);
        json_number(f, s->accuracy);
        fprintf(f, ", \"mean_entropy\": %.9g, \"mean_mutual_info\": %.9g, "
                   "\"refused_fraction\": %.9g,\n         \"scores\": {",
                s->mean_entropy, s->mean_mi, s->refused);
        for (size_t j = 0; j < N_OOD_SCORES; j++) {
            const bnn_ood_report *q = &s->score[j];
            fprintf(f, "%s\"%s\": {\"auroc\": %.9g, \"aupr_out\": %.9g, \"aupr_in\": %.9g, "
                       "\"fpr95\": %.9g, \"tpr95\": %.9g, \"threshold95\": %.9g}",
                    j ? ",\n                    " : "", OOD_SCORES[j].key, q->auroc, q->aupr_out,
                    q->aupr_in, q->fpr95, q->tpr95, (double)q->threshold95);
        }
        fprintf(f, "}}%s\n", k + 1 < ood->n ? "," : "");
    }
    fprintf(f, "      ]}\n");
}

/* The "evaluation" object depends only on the saved parameters and the
 * evaluation options, so training and a later evaluate --load of the same
 * file write it identically. */
void write_report(const options *o, const char *path, const blas_info *bi,
                  const bnn_model *model, const train_stats *ts,
                  const bnn_optimizer *opt, const eval_report *r, const ood_report *ood)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("%s: %s", path, strerror(errno));
    bnn_model_config mc = {.struct_size = sizeof mc};
    CHECK(bnn_model_get_config(model, &mc));
    fprintf(f, "{\n  \"libbnn\": ");
    json_string(f, bnn_version_string());
    fprintf(f, ",\n  \"data\": ");
    json_string(f, o->data);
    fprintf(f, ",\n  \"blas\": {\"config\": ");
    json_string(f, bi->name);
    fprintf(f, ", \"kernel\": ");
    json_string(f, bi->core);
    fprintf(f, ", \"threads\": %d},\n", bi->threads);
    fprintf(f, "  \"model\": {\"arch\": \"%s\", \"layers\": [", mc.n_layers ? "cnn" : "mlp");
    for (size_t k = 0; k < mc.n_sizes; k++)
        fprintf(f, "%s%zu", k ? ", " : "", mc.layer_sizes[k]);
    fprintf(f, "], \"activation\": \"%s\", \"prior\": ",
            mc.activation == BNN_ACT_RELU ? "relu" : "tanh");
    if (mc.prior == BNN_PRIOR_NORMAL)
        fprintf(f, "{\"normal\": %.9g}", (double)mc.prior_sigma);
    else
        fprintf(f, "{\"mixture\": [%.9g, %.9g, %.9g]}", (double)mc.prior_pi,
                (double)mc.prior_sigma1, (double)mc.prior_sigma2);
    fprintf(f, ", \"parameters\": %zu},\n", bnn_model_param_count(model));
    if (ts && opt) {
        bnn_optimizer_config oc = {.struct_size = sizeof oc};
        bnn_svi_config sc = {.struct_size = sizeof sc};
        CHECK(bnn_optimizer_get_config(opt, &oc, &sc));
        fprintf(f,
                "  \"training\": {\"config\": \"%s\", \"images\": %zu, \"epochs\": %zu, "
                "\"batch\": %zu, \"lr\": %.9g, \"estimator\": \"%s\", \"kl\": \"%s\", "
                "\"kl_weight\": %.9g, \"init\": \"%s\", \"particles\": %zu, \"seed\": %llu, "
                "\"steps\": %zu, \"seconds\": %.3f, \"images_per_second\": %.1f, "
                "\"final_loss_per_image\": %.9g, \"final_nll_per_image\": %.9g, "
                "\"final_kl\": %.9g, \"optimizer\": \"%s\", \"lr_schedule\": %d, "
                "\"lr_end\": %.9g, \"ivon_ess\": %.9g, \"ivon_beta2\": %.9g, "
                "\"ivon_hess_init\": %.9g, \"ivon_clip_radius\": %.9g, "
                "\"kl_warmup_epochs\": %zu},\n",
                o->pyro ? "pyro" : "default", sc.dataset_size, o->epochs, o->batch,
                (double)oc.lr, estimator_name(sc.estimator),
                sc.kl_mode == BNN_KL_ANALYTIC ? "analytic" : "mc", (double)sc.kl_weight,
                o->init == BNN_INIT_PYRO ? "pyro" : "default", sc.num_particles,
                (unsigned long long)o->seed, ts->steps, ts->seconds,
                ts->images_per_second, ts->final_loss, ts->final_nll, ts->final_kl,
                oc.kind == BNN_OPT_IVON ? "ivon" : "adam", (int)o->lr_decay, (double)o->lr_end,
                (double)oc.ivon_ess, (double)oc.ivon_beta2, (double)oc.ivon_hess_init,
                (double)oc.ivon_clip_radius, o->kl_warmup);
    }
    fprintf(f, "  \"evaluation\": {\n");
    fprintf(f,
            "    \"test_images\": %zu, \"validation_images\": %zu, \"predict_seed\": %llu, "
            "\"sampling\": \"%s\", \"draws\": \"%s\",\n",
            r->n_test, r->n_val, (unsigned long long)o->predict_seed, sampling_name(o->sampling),
            draws_name(o->sampling, &mc));
    fprintf(f, "    \"forced\": {\"samples\": %zu, \"accuracy\": %.9g},\n", o->forced_samples,
            r->forced_accuracy);
    fprintf(f,
            "    \"median_rule\": {\"samples\": %zu, \"threshold\": %.9g, \"refused\": %zu, "
            "\"refused_fraction\": %.9g, \"accepted_accuracy\": %.9g},\n",
            o->refuse_samples, (double)o->refuse_threshold, r->median.refused,
            r->median.refused_fraction, r->median.accepted_accuracy);
    fprintf(f,
            "    \"metrics\": {\"samples\": %zu, \"accuracy\": %.9g, \"nll\": %.9g, "
            "\"brier\": %.9g, \"ece\": %.9g, \"ece_bins\": %d, \"aurc\": %.9g},\n",
            o->refuse_samples, r->metrics.accuracy, r->metrics.nll, r->metrics.brier,
            r->metrics.ece, ECE_BINS, r->aurc);
    fprintf(f, "    \"policy\": {\"calibrated\": %s, \"target_accuracy\": %.9g, \"rules\": [\n",
            r->calibrated ? "true" : "false", o->target_accuracy);
    for (size_t k = 0; k < N_RULES && r->calibrated; k++) {
        const rule_result *rr = &r->rules[k];
        fprintf(f,
                "      {\"rule\": \"%s\", \"threshold\": %.9g, \"val_coverage\": %.9g, "
                "\"val_accuracy\": %.9g, \"test_coverage\": %.9g, \"test_accuracy\": %.9g}%s\n",
                RULES[k].name, (double)rr->threshold, rr->val_coverage, rr->val_accuracy,
                rr->test_coverage, rr->test_accuracy, k + 1 < N_RULES ? "," : "");
    }
    const rule_result *c = &r->rules[r->chosen];
    fprintf(f,
            "    ], \"chosen\": \"%s\", \"reached_target\": %s, \"threshold\": %.9g, "
            "\"test_coverage\": %.9g, \"test_accuracy\": %.9g}%s\n",
            RULES[r->chosen].name, r->reached ? "true" : "false", (double)c->threshold,
            c->test_coverage, c->test_accuracy, ood && ood->n ? "," : "");
    if (ood && ood->n)
        write_ood(f, o, ood);
    fprintf(f, "  },\n  \"evaluation_seconds\": %.3f\n}\n", r->seconds);
    if (fclose(f) != 0)
        die("%s: write failed", path);
}
