/* The MNIST demo's pieces: options.c (command line), bnn_mnist.c (main:
 * BLAS, data, model), train.c (training and the prediction helpers),
 * evaluate.c (accuracy, calibration, refusal policy), ood.c
 * (out-of-distribution and shifted inputs; image.c makes the shifts),
 * report.c (console and JSON), figures.c (PNG figures, drawn by plot.c).
 * Every failure ends the program through die(): this is a program, not a
 * library. */
#ifndef BNN_EXAMPLE_MNIST_H
#define BNN_EXAMPLE_MNIST_H

#include "idx.h"

#include <bnn.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLASSES IDX_CLASSES
#define ECE_BINS 15

typedef struct options {
    int train;                 /* 1: train, 0: evaluate */
    const char *data;
    const char *out;           /* train: where to save */
    const char *load;          /* evaluate: what to load */
    const char *report;
    const char *plots;
    size_t plot_count;
    int pyro;                  /* --pyro-config */
    size_t hidden[BNN_MAX_LAYERS];
    size_t n_hidden;
    int hidden_set;            /* --hidden given */
    int cnn;                   /* --arch cnn */
    size_t conv[2];            /* --conv: the cnn's channels */
    size_t epochs, batch, particles;
    bnn_optimizer_kind optimizer;  /* adam or ivon */
    float lr;                  /* NaN: the optimizer's default */
    bnn_lr_decay lr_decay;     /* schedule over the whole run */
    int lr_decay_set, estimator_set; /* else the optimizer's defaults */
    float lr_end;              /* NaN: lr / 1000 */
    double warmup;             /* epochs of linear learning-rate warm-up */
    size_t shift;              /* training images shifted by up to +-shift pixels */
    float ivon_beta2, ivon_hess_init, ivon_clip;
    double ivon_ess_factor;    /* lambda = factor x training images */
    bnn_estimator estimator;
    bnn_prior prior;
    float prior_sigma, prior_pi, prior_s1, prior_s2;
    int kl_set;
    bnn_kl_mode kl;
    float kl_weight;           /* NaN: the configuration's default */
    size_t kl_warmup;          /* epochs of linear KL warm-up; 0: none */
    bnn_init init;
    float init_sigma;
    uint64_t seed;
    int threads;
    int blas_threads;          /* the BLAS's thread count, found at start */
    size_t train_limit;
    double val_fraction;       /* share held out for calibration; 0: none */
    size_t forced_samples;     /* original program: 10 */
    size_t refuse_samples;     /* original program: 100 */
    float refuse_threshold;    /* original program: 0.2 */
    uint64_t predict_seed;
    bnn_sampling sampling;     /* --sampling */
    double target_accuracy;
    int quiet;
    const char *ood;           /* --ood: NULL for the default, "none" */
    size_t ood_limit;          /* images per OOD set, 0: all */
} options;

/* options.c: fills o from the command line, or exits (usage, bad value). */
void parse_args(int argc, char **argv, options *o);

/* ---- helpers (bnn_mnist.c) ---------------------------------------------- */

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Abort the program with the library's message when a call fails. */
#define CHECK(call)                                                            \
    do {                                                                       \
        bnn_status st_ = (call);                                               \
        if (st_ != BNN_OK)                                                     \
            die("%s: %s (%s)", #call, bnn_last_error(),                        \
                bnn_status_string(st_));                                       \
    } while (0)

void *xmalloc(size_t n, size_t size);
double now(void); /* monotonic seconds */

typedef struct blas_info {
    char name[160];
    char core[64];
    int threads;
} blas_info;

/* ---- data ---------------------------------------------------------------- */

typedef struct slice {
    size_t n;
    float *x;     /* n x 784 */
    int32_t *y;
} slice;

typedef struct dataset {
    slice train, val, test;
} dataset;

/* ---- training and prediction (train.c) ----------------------------------- */

typedef struct train_stats {
    double seconds;
    double images_per_second;
    size_t steps;
    double final_loss, final_nll, final_kl;
    double val_accuracy;
} train_stats;

void train(const options *o, const dataset *d, bnn_guide *g, bnn_optimizer *opt,
           train_stats *ts);

/* The library's own threads, for training passes and prediction. */
size_t lib_threads(const options *o);

/* Records (and pc->mean_probs) of a slice through a predictor with the
 * program's sampling mode and threads. */
void predict_uncertainty(const options *o, const bnn_guide *g, const bnn_predict_config *pc,
                         const slice *s, bnn_prediction *rec);

/* S sampled log-probabilities of n inputs (S x n x classes), likewise. */
void predict_samples(const options *o, const bnn_guide *g, const float *x, size_t n, size_t S,
                     uint64_t seed, float *logp);

/* "marginal", "networks" or "mean". */
const char *sampling_name(bnn_sampling s);

/* ---- evaluation (evaluate.c) --------------------------------------------- */

typedef struct rule_name {
    bnn_refusal_rule rule;
    const char *name;
} rule_name;

#define N_RULES 4
extern const rule_name RULES[N_RULES];

typedef struct rule_result {
    float threshold;
    double val_coverage, val_accuracy;
    double test_coverage, test_accuracy;
} rule_result;

typedef struct eval_report {
    size_t n_test, n_val;
    double forced_accuracy;          /* original: mean log-prob of 10 nets */
    bnn_refusal_report median;       /* original: median rule */
    bnn_metrics metrics;             /* mean probabilities of refuse_samples */
    double aurc;
    rule_result rules[N_RULES];
    size_t chosen;
    int reached;                     /* chosen rule reaches the target */
    int calibrated;                  /* 0: no validation slice, so the
                                        median rule at --threshold stands in */
    double seconds;
} eval_report;

/* What a slice's predictions are needed for: records under the median rule
 * (label = highest median) and the same records under the mean-probability
 * rules (label = highest mean probability). */
typedef struct slice_pred {
    bnn_prediction *rec_median;
    bnn_prediction *rec_mean;
    float *probs; /* n x classes, mean over refuse_samples networks */
} slice_pred;

void predict_slice(const options *o, const bnn_guide *g, const slice *s, slice_pred *sp);
void slice_pred_free(slice_pred *sp);
bnn_prediction *records_for(const slice_pred *sp, bnn_refusal_rule rule);

void evaluate(const options *o, const bnn_guide *g, const dataset *d, eval_report *r,
              slice_pred *test_pred);

/* ---- out-of-distribution and shifted inputs (ood.c) ----------------------- */

#define N_OOD_SCORES 4
typedef struct ood_score_name {
    bnn_ood_score score;
    const char *name; /* console */
    const char *key;  /* JSON and file names */
} ood_score_name;
extern const ood_score_name OOD_SCORES[N_OOD_SCORES];

typedef struct ood_set {
    char name[64];         /* "rotated-30", "noise", a folder's name */
    char source[512];      /* the folder, or what the images were made from */
    int labelled;          /* shifted test images keep their labels */
    slice s;
    slice_pred pred;
    double accuracy;       /* mean prediction; labelled sets only */
    double mean_entropy, mean_mi;
    double refused;        /* share the chosen refusal policy refuses */
    bnn_ood_report score[N_OOD_SCORES];
} ood_set;

typedef struct ood_report {
    size_t n;              /* 0: no out-of-distribution section */
    ood_set *set;
    bnn_refusal_rule rule; /* the chosen policy */
    float threshold;
    const char *rule_name;
    size_t test_n;
    double test_refused, test_mean_entropy, test_mean_mi;
    double seconds;
} ood_report;

/* Dies unless every --ood folder has test images: checked before training. */
void ood_check(const options *o);

/* Builds the sets (--ood, --ood-limit) and scores each against the test
 * set's records tp under the policy chosen in r. */
void ood_evaluate(const options *o, const bnn_guide *g, const dataset *d, const eval_report *r,
                  const slice_pred *tp, ood_report *out);
void ood_free(ood_report *rep);

/* The score of a record as an uncertainty (higher: more likely OOD), and
 * the records a score reads: the mean-probability ones for MAX_PROB. */
double ood_uncertainty(const bnn_prediction *rec, bnn_ood_score s);
const bnn_prediction *ood_records(const slice_pred *sp, bnn_ood_score s);

/* ---- report (report.c) and figures (figures.c) ---------------------------- */

const char *estimator_name(bnn_estimator e);
void blas_print(const blas_info *info);
void print_config(const options *o, size_t n_train);
void print_report(const options *o, const eval_report *r);
void print_ood(const options *o, const ood_report *ood);

/* ts and opt are NULL when the model was loaded rather than trained. */
void write_report(const options *o, const char *path, const blas_info *bi,
                  const bnn_model *model, const train_stats *ts, const bnn_optimizer *opt,
                  const eval_report *r, const ood_report *ood);

void make_plots(const options *o, const bnn_guide *g, const dataset *d, const eval_report *r,
                const slice_pred *tp, const ood_report *ood);

#endif
