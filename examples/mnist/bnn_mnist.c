/* bnn_mnist: train a Bayesian neural network on MNIST-style IDX data, then
 * report how often it is right, how well its probabilities are calibrated,
 * and how much it must refuse to answer to reach a target accuracy.
 *
 *   bnn_mnist train [options]             train, save, evaluate
 *   bnn_mnist evaluate --load FILE [...]  evaluate a saved model
 *
 * Run with --help for the options. */
#define _GNU_SOURCE /* dlsym(RTLD_DEFAULT), isatty, clock_gettime */

#include "idx.h"
#include "plot.h"

#include <bnn.h>

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CLASSES IDX_CLASSES
#define ECE_BINS 15

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

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
    size_t epochs, batch, particles;
    float lr;
    bnn_estimator estimator;
    bnn_prior prior;
    float prior_sigma, prior_pi, prior_s1, prior_s2;
    int kl_set;
    bnn_kl_mode kl;
    float kl_weight;           /* NaN: the configuration's default */
    bnn_init init;
    float init_sigma;
    uint64_t seed;
    int threads;
    int blas_threads;          /* the BLAS's thread count, found at start */
    size_t train_limit;
    size_t forced_samples;     /* original program: 10 */
    size_t refuse_samples;     /* original program: 100 */
    float refuse_threshold;    /* original program: 0.2 */
    uint64_t predict_seed;
    double target_accuracy;
    int quiet;
} options;

static void usage(FILE *f)
{
    fputs(
        "usage: bnn_mnist train [options]\n"
        "       bnn_mnist evaluate --load FILE [options]\n"
        "\n"
        "data and output:\n"
        "  --data DIR             IDX files (train-*, t10k-*, plain or .gz) [data/mnist10k]\n"
        "  --out FILE             train: save the model here [model.bnn]\n"
        "  --load FILE            evaluate: the model to load\n"
        "  --report FILE          also write the figures as JSON\n"
        "  --plots DIR            write PNG figures into DIR\n"
        "  --plot-count N         most uncertain and most confident examples to draw [5]\n"
        "  --train-limit N        train on N evenly spread training images\n"
        "\n"
        "model and training (train):\n"
        "  --pyro-config          the original Pyro program's settings (see README)\n"
        "  --hidden L[,L...]      hidden layer sizes [1024]\n"
        "  --epochs N  --batch N  --lr X\n"
        "  --estimator lrt|weight|flipout        gradient estimator [lrt]\n"
        "  --prior normal:S|mixture:PI,S1,S2     prior [normal:1]\n"
        "  --kl analytic|mc       KL term [analytic; mc for the mixture prior]\n"
        "  --kl-weight X          KL scale (1 = one full KL per epoch)\n"
        "  --init default|pyro    posterior initialisation [default]\n"
        "  --init-sigma X         initial posterior sigma for --init default\n"
        "  --particles N          Monte Carlo particles per step [1]\n"
        "  --seed N               initialisation, noise and shuffling seed [1]\n"
        "\n"
        "evaluation:\n"
        "  --target-accuracy X    accuracy the refusal policy must reach [0.99]\n"
        "  --forced-samples N     networks for the forced answer [10]\n"
        "  --refuse-samples N     networks for uncertainty and refusal [100]\n"
        "  --threshold X          median rule threshold [0.2]\n"
        "  --predict-seed N       prediction seed [1]\n"
        "\n"
        "  --threads N            OpenBLAS threads, and threads for the library's\n"
        "                         training passes and for prediction\n"
        "                         (default: OpenBLAS's choice)\n"
        "  --quiet                no per-epoch progress\n",
        f);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bnn_mnist: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_FAILURE);
}

/* Abort the program with the library's message when a call fails. */
#define CHECK(call)                                                            \
    do {                                                                       \
        bnn_status st_ = (call);                                               \
        if (st_ != BNN_OK)                                                     \
            die("%s: %s (%s)", #call, bnn_last_error(),                        \
                bnn_status_string(st_));                                       \
    } while (0)

static void *xmalloc(size_t n, size_t size)
{
    if (n && size > SIZE_MAX / n)
        die("allocation of %zu x %zu bytes overflows", n, size);
    void *p = malloc(n && size ? n * size : 1);
    if (!p)
        die("out of memory (%zu bytes)", n * size);
    return p;
}

static double parse_double(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        die("%s: '%s' is not a number", opt, s);
    return v;
}

static size_t parse_size(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        die("%s: '%s' is not a non-negative integer", opt, s);
    return (size_t)v;
}

/* Comma-separated floats into v (at most max); returns the count. */
static size_t parse_list(const char *opt, const char *s, double *v, size_t max)
{
    size_t n = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf)
        die("%s: value too long", opt);
    strcpy(buf, s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max)
            die("%s: more than %zu values", opt, max);
        v[n++] = parse_double(opt, tok);
    }
    return n;
}

static void set_defaults(options *o)
{
    memset(o, 0, sizeof *o);
    o->data = "data/mnist10k";
    o->out = "model.bnn";
    o->plot_count = 5;
    o->hidden[0] = 1024;
    o->n_hidden = 1;
    o->epochs = 10;
    o->batch = 128;
    o->particles = 1;
    o->lr = 1e-3f;
    o->estimator = BNN_EST_LOCAL_REPARAM;
    o->prior = BNN_PRIOR_NORMAL;
    o->prior_sigma = 1.0f;
    o->prior_pi = 0.5f;
    o->prior_s1 = 1.0f;
    o->prior_s2 = expf(-6.0f);
    o->kl = BNN_KL_ANALYTIC;
    o->kl_weight = NAN;
    o->init = BNN_INIT_DEFAULT;
    o->init_sigma = NAN;
    o->seed = 1;
    o->threads = 0;
    o->forced_samples = 10;
    o->refuse_samples = 100;
    o->refuse_threshold = 0.2f;
    o->predict_seed = 1;
    o->target_accuracy = 0.99;
}

/* The original program: 784-1024-10 ReLU, N(0,1) priors, mu and rho drawn
 * from N(0,1), one weight draw per step, Monte Carlo KL with the whole KL
 * added to every minibatch, Adam 0.01, batch 128, 5 epochs. */
static void apply_pyro(options *o)
{
    o->hidden[0] = 1024;
    o->n_hidden = 1;
    o->epochs = 5;
    o->batch = 128;
    o->lr = 0.01f;
    o->estimator = BNN_EST_WEIGHT_SAMPLING;
    o->prior = BNN_PRIOR_NORMAL;
    o->prior_sigma = 1.0f;
    o->kl = BNN_KL_MONTE_CARLO;
    o->kl_set = 1;
    o->init = BNN_INIT_PYRO;
    o->particles = 1;
}

static void parse_args(int argc, char **argv, options *o)
{
    set_defaults(o);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        exit(argc < 2 ? EXIT_FAILURE : EXIT_SUCCESS);
    }
    if (!strcmp(argv[1], "train"))
        o->train = 1;
    else if (!strcmp(argv[1], "evaluate"))
        o->train = 0;
    else
        die("unknown command '%s' (train or evaluate; --help for usage)", argv[1]);

    /* --pyro-config first, so explicit options given with it still win. */
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--pyro-config"))
            o->pyro = 1, apply_pyro(o);

    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--pyro-config"))
            continue;
        if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(EXIT_SUCCESS);
        }
        if (i + 1 >= argc)
            die("%s: missing value (--help for usage)", a);
        const char *v = argv[++i];
        double list[BNN_MAX_LAYERS];
        if (!strcmp(a, "--data"))
            o->data = v;
        else if (!strcmp(a, "--out"))
            o->out = v;
        else if (!strcmp(a, "--load"))
            o->load = v;
        else if (!strcmp(a, "--report"))
            o->report = v;
        else if (!strcmp(a, "--plots"))
            o->plots = v;
        else if (!strcmp(a, "--plot-count"))
            o->plot_count = parse_size(a, v);
        else if (!strcmp(a, "--train-limit"))
            o->train_limit = parse_size(a, v);
        else if (!strcmp(a, "--hidden")) {
            size_t n = parse_list(a, v, list, BNN_MAX_LAYERS - 2);
            for (size_t k = 0; k < n; k++) {
                if (list[k] < 1 || list[k] != floor(list[k]) || list[k] > 1e6)
                    die("--hidden: '%s' is not a list of layer sizes", v);
                o->hidden[k] = (size_t)list[k];
            }
            o->n_hidden = n;
        } else if (!strcmp(a, "--epochs"))
            o->epochs = parse_size(a, v);
        else if (!strcmp(a, "--batch"))
            o->batch = parse_size(a, v);
        else if (!strcmp(a, "--particles"))
            o->particles = parse_size(a, v);
        else if (!strcmp(a, "--lr"))
            o->lr = (float)parse_double(a, v);
        else if (!strcmp(a, "--estimator")) {
            if (!strcmp(v, "lrt"))
                o->estimator = BNN_EST_LOCAL_REPARAM;
            else if (!strcmp(v, "weight"))
                o->estimator = BNN_EST_WEIGHT_SAMPLING;
            else if (!strcmp(v, "flipout"))
                o->estimator = BNN_EST_FLIPOUT;
            else
                die("--estimator: '%s' is not lrt, weight or flipout", v);
        } else if (!strcmp(a, "--prior")) {
            if (!strncmp(v, "normal:", 7)) {
                o->prior = BNN_PRIOR_NORMAL;
                o->prior_sigma = (float)parse_double(a, v + 7);
            } else if (!strncmp(v, "mixture:", 8)) {
                if (parse_list(a, v + 8, list, 3) != 3)
                    die("--prior mixture:PI,S1,S2 needs three values");
                o->prior = BNN_PRIOR_SCALE_MIXTURE;
                o->prior_pi = (float)list[0];
                o->prior_s1 = (float)list[1];
                o->prior_s2 = (float)list[2];
            } else
                die("--prior: '%s' is not normal:S or mixture:PI,S1,S2", v);
        } else if (!strcmp(a, "--kl")) {
            if (!strcmp(v, "analytic"))
                o->kl = BNN_KL_ANALYTIC;
            else if (!strcmp(v, "mc"))
                o->kl = BNN_KL_MONTE_CARLO;
            else
                die("--kl: '%s' is not analytic or mc", v);
            o->kl_set = 1;
        } else if (!strcmp(a, "--kl-weight"))
            o->kl_weight = (float)parse_double(a, v);
        else if (!strcmp(a, "--init")) {
            if (!strcmp(v, "default"))
                o->init = BNN_INIT_DEFAULT;
            else if (!strcmp(v, "pyro"))
                o->init = BNN_INIT_PYRO;
            else
                die("--init: '%s' is not default or pyro", v);
        } else if (!strcmp(a, "--init-sigma"))
            o->init_sigma = (float)parse_double(a, v);
        else if (!strcmp(a, "--seed"))
            o->seed = parse_size(a, v);
        else if (!strcmp(a, "--threads"))
            o->threads = (int)parse_size(a, v);
        else if (!strcmp(a, "--target-accuracy"))
            o->target_accuracy = parse_double(a, v);
        else if (!strcmp(a, "--forced-samples"))
            o->forced_samples = parse_size(a, v);
        else if (!strcmp(a, "--refuse-samples"))
            o->refuse_samples = parse_size(a, v);
        else if (!strcmp(a, "--threshold"))
            o->refuse_threshold = (float)parse_double(a, v);
        else if (!strcmp(a, "--predict-seed"))
            o->predict_seed = parse_size(a, v);
        else
            die("unknown option '%s' (--help for usage)", a);
    }

    if (!isnan(o->kl_weight) && !(o->kl_weight >= 0))
        die("--kl-weight must be >= 0");
    if (o->prior == BNN_PRIOR_SCALE_MIXTURE && !o->kl_set)
        o->kl = BNN_KL_MONTE_CARLO; /* no closed form for the mixture */
    if (isnan(o->kl_weight))
        o->kl_weight = o->pyro ? (float)-1 : 1.0f; /* pyro: set from N later */
    if (!o->train && !o->load)
        die("evaluate needs --load FILE");
    if (o->epochs == 0 || o->batch == 0 || o->particles == 0)
        die("--epochs, --batch and --particles must be at least 1");
    if (o->forced_samples == 0 || o->refuse_samples == 0)
        die("--forced-samples and --refuse-samples must be at least 1");
    if (!(o->target_accuracy > 0 && o->target_accuracy <= 1))
        die("--target-accuracy must be in (0, 1]");
}

/* ------------------------------------------------------------------------ */
/* BLAS                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct blas_info {
    char name[160];
    char core[64];
    int threads;
} blas_info;

/* A function of the running process by name, or NULL.  ISO C has no cast
 * from an object pointer to a function pointer: copy the bits, as POSIX
 * guarantees they have the same representation. */
#define LOOKUP(fn, name)                                                       \
    do {                                                                       \
        void *sym_ = dlsym(RTLD_DEFAULT, name);                                \
        memcpy(&(fn), &sym_, sizeof(fn));                                      \
    } while (0)

/* OpenBLAS is found by its symbols in the running process; the library
 * itself never touches BLAS threading, so the program sets it. */
static void blas_setup(int threads, blas_info *info)
{
    void (*set_threads)(int);
    int (*get_threads)(void);
    char *(*corename)(void);
    char *(*config)(void);
    LOOKUP(set_threads, "openblas_set_num_threads");
    LOOKUP(get_threads, "openblas_get_num_threads");
    LOOKUP(corename, "openblas_get_corename");
    LOOKUP(config, "openblas_get_config");

    if (threads > 0) {
        if (set_threads)
            set_threads(threads);
        else
            fprintf(stderr, "bnn_mnist: --threads ignored: the BLAS in use is not OpenBLAS\n");
    }
    info->threads = get_threads ? get_threads() : 1;
    if (corename && config) {
        snprintf(info->name, sizeof info->name, "%s", config());
        snprintf(info->core, sizeof info->core, "%s", corename());
    } else {
        snprintf(info->name, sizeof info->name, "reference CBLAS");
        info->core[0] = '\0';
    }
}

static void blas_print(const blas_info *info)
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

/* ------------------------------------------------------------------------ */
/* Data                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct slice {
    size_t n;
    float *x;     /* n x 784 */
    int32_t *y;
} slice;

typedef struct dataset {
    slice train, val, test;
} dataset;

static void slice_alloc(slice *s, size_t n)
{
    s->n = n;
    s->x = xmalloc(n ? n : 1, IDX_PIXELS * sizeof(float));
    s->y = xmalloc(n ? n : 1, sizeof(int32_t));
}

static void slice_copy_row(slice *dst, size_t i, const idx_set *src, size_t j)
{
    memcpy(dst->x + i * IDX_PIXELS, src->images + j * IDX_PIXELS,
           IDX_PIXELS * sizeof(float));
    dst->y[i] = src->labels[j];
}

static void slice_free(slice *s)
{
    free(s->x);
    free(s->y);
}

/* Every tenth training image (i % 10 == 9) is held out for calibrating the
 * refusal threshold.  An interleaved slice rather than the last 10%, because
 * some files (mnist10k) are ordered by class.  --train-limit keeps an evenly
 * spread subset of the rest for the same reason. */
static void load_data(const options *o, dataset *d)
{
    idx_set train, test;
    char err[1024];
    if (idx_load(o->data, "train", &train, err, sizeof err))
        die("%s", err);
    if (idx_load(o->data, "t10k", &test, err, sizeof err))
        die("%s", err);
    if (train.n < 10)
        die("%s: only %zu training images (need at least 10)", o->data, train.n);

    size_t n_val = train.n / 10, n_rest = train.n - n_val;
    size_t n_train = o->train_limit && o->train_limit < n_rest ? o->train_limit : n_rest;
    slice_alloc(&d->val, n_val);
    slice_alloc(&d->train, n_train);
    size_t *rest = xmalloc(n_rest, sizeof *rest);
    size_t iv = 0, ir = 0;
    for (size_t i = 0; i < train.n; i++) {
        if (i % 10 == 9 && iv < n_val)
            slice_copy_row(&d->val, iv++, &train, i);
        else
            rest[ir++] = i;
    }
    for (size_t k = 0; k < n_train; k++)
        slice_copy_row(&d->train, k, &train, rest[(size_t)((double)k * (double)n_rest / (double)n_train)]);
    free(rest);

    d->test.n = test.n;
    d->test.x = test.images;
    d->test.y = test.labels;
    idx_free(&train);
}

/* ------------------------------------------------------------------------ */
/* Training                                                                 */
/* ------------------------------------------------------------------------ */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

typedef struct train_stats {
    double seconds;
    double images_per_second;
    size_t steps;
    double final_loss, final_nll, final_kl;
    double val_accuracy;
} train_stats;

/* The library's own threads, for training passes and prediction: as many
 * as the BLAS was given (prediction does not use the BLAS at all). */
static size_t lib_threads(const options *o)
{
    return o->blas_threads < 1 ? 1 : (size_t)o->blas_threads;
}

/* bnn_predict_with_uncertainty shares the networks among threads of its
 * own (bnn_predict_config.num_threads). */
static void predict_uncertainty(const options *o, const bnn_guide *g, const bnn_predict_config *pc,
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

static void train(const options *o, const dataset *d, bnn_guide *g,
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
            char tbuf[32];
            fmt_duration(tbuf, sizeof tbuf, now() - t_start);
            printf("%sepoch %zu/%zu loss/img %.4g nll/img %.4f kl %.4g %.0f img/s "
                   "val acc %.2f%% (10 samples) elapsed %s\n",
                   live ? "\r\033[K" : "", epoch + 1, o->epochs, loss / (double)n,
                   nll / (double)n, kl, (double)n / el, 100 * vacc, tbuf);
            fflush(stdout);
        }
    }
    ts->seconds = now() - t_start;
    ts->images_per_second = (double)n * (double)o->epochs / (busy > 0 ? busy : 1e-9);
    free(order);
    free(xb);
    free(yb);
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                               */
/* ------------------------------------------------------------------------ */

static const struct {
    bnn_refusal_rule rule;
    const char *name;
} RULES[] = {
    {BNN_REFUSE_MAX_PROB, "MAX_PROB"},
    {BNN_REFUSE_ENTROPY, "ENTROPY"},
    {BNN_REFUSE_MUTUAL_INFO, "MUTUAL_INFO"},
    {BNN_REFUSE_MEDIAN, "MEDIAN"},
};
#define N_RULES (sizeof RULES / sizeof RULES[0])

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

static void predict_slice(const options *o, const bnn_guide *g, const slice *s,
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

static void slice_pred_free(slice_pred *sp)
{
    free(sp->rec_median);
    free(sp->rec_mean);
    free(sp->probs);
}

static bnn_prediction *records_for(const slice_pred *sp, bnn_refusal_rule rule)
{
    return rule == BNN_REFUSE_MEDIAN ? sp->rec_median : sp->rec_mean;
}

static void evaluate(const options *o, const bnn_guide *g, const dataset *d,
                     eval_report *r, slice_pred *test_pred)
{
    const slice *t = &d->test;
    double t0 = now();
    memset(r, 0, sizeof *r);
    r->n_test = t->n;
    r->n_val = d->val.n;

    /* The original program's forced answer: argmax of the mean sampled
     * log-probability over 10 networks. */
    size_t S = o->forced_samples;
    float *logp = xmalloc(S * t->n, CLASSES * sizeof *logp);
    CHECK(bnn_predict_samples(g, t->x, t->n, S, o->predict_seed, logp));
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
    r->median.struct_size = sizeof r->median;
    CHECK(bnn_eval_refusal(test_pred->rec_median, sizeof(bnn_prediction), t->y, t->n,
                           &r->median));
    r->metrics.struct_size = sizeof r->metrics;
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

    /* Refusal policy: each rule's threshold from the validation slice, the
     * rule that answers most often at the target accuracy, judged on the
     * test set. */
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
        bnn_refusal_report rep = {.struct_size = sizeof rep};
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

static void print_report(const options *o, const eval_report *r)
{
    printf("\nTest set: %zu images; validation slice: %zu images\n", r->n_test, r->n_val);
    printf("Original program's figures:\n");
    printf("  forced accuracy (%zu networks)          %6.2f%%\n", o->forced_samples,
           100 * r->forced_accuracy);
    printf("  refused (median rule, %zu nets, t=%.2g)  %6.2f%%  (%zu of %zu)\n",
           o->refuse_samples, (double)o->refuse_threshold, 100 * r->median.refused_fraction,
           r->median.refused, r->median.n);
    printf("  accuracy on the accepted                %6.2f%%\n",
           100 * r->median.accepted_accuracy);
    printf("Mean prediction of %zu networks:\n", o->refuse_samples);
    printf("  accuracy %.2f%%  NLL %.4f  Brier %.4f  ECE(%d bins) %.2f%%  AURC %.4f\n",
           100 * r->metrics.accuracy, r->metrics.nll, r->metrics.brier, ECE_BINS,
           100 * r->metrics.ece, r->aurc);
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

/* ------------------------------------------------------------------------ */
/* JSON report                                                              */
/* ------------------------------------------------------------------------ */

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

static const char *estimator_name(bnn_estimator e)
{
    return e == BNN_EST_LOCAL_REPARAM ? "lrt" : e == BNN_EST_WEIGHT_SAMPLING ? "weight" : "flipout";
}

/* The "evaluation" object depends only on the saved parameters and the
 * evaluation options, so training and a later evaluate --load of the same
 * file write it identically. */
static void write_report(const options *o, const char *path, const blas_info *bi,
                         const bnn_model *model, const train_stats *ts,
                         const bnn_optimizer *opt, const eval_report *r)
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
    fprintf(f, "  \"model\": {\"layers\": [");
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
                "\"final_kl\": %.9g},\n",
                o->pyro ? "pyro" : "default", sc.dataset_size, o->epochs, o->batch,
                (double)oc.lr, estimator_name(sc.estimator),
                sc.kl_mode == BNN_KL_ANALYTIC ? "analytic" : "mc", (double)sc.kl_weight,
                o->init == BNN_INIT_PYRO ? "pyro" : "default", sc.num_particles,
                (unsigned long long)o->seed, ts->steps, ts->seconds,
                ts->images_per_second, ts->final_loss, ts->final_nll, ts->final_kl);
    }
    fprintf(f, "  \"evaluation\": {\n");
    fprintf(f, "    \"test_images\": %zu, \"validation_images\": %zu, \"predict_seed\": %llu,\n",
            r->n_test, r->n_val, (unsigned long long)o->predict_seed);
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
    fprintf(f, "    \"policy\": {\"target_accuracy\": %.9g, \"rules\": [\n", o->target_accuracy);
    for (size_t k = 0; k < N_RULES; k++) {
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
            "\"test_coverage\": %.9g, \"test_accuracy\": %.9g}\n",
            RULES[r->chosen].name, r->reached ? "true" : "false", (double)c->threshold,
            c->test_coverage, c->test_accuracy);
    fprintf(f, "  },\n  \"evaluation_seconds\": %.3f\n}\n", r->seconds);
    if (fclose(f) != 0)
        die("%s: write failed", path);
}

/* ------------------------------------------------------------------------ */
/* Plots                                                                    */
/* ------------------------------------------------------------------------ */

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

static void make_plots(const options *o, const bnn_guide *g, const dataset *d,
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

/* ------------------------------------------------------------------------ */
/* Main                                                                     */
/* ------------------------------------------------------------------------ */

static void print_config(const options *o, size_t n_train)
{
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
    printf("Training (%s configuration): %zu images, %zu epochs, batch %zu, Adam lr %g, "
           "%s estimator, %s KL x %g\n",
           o->pyro ? "pyro" : "default", n_train, o->epochs, o->batch, (double)o->lr,
           estimator_name(o->estimator), o->kl == BNN_KL_ANALYTIC ? "analytic" : "Monte Carlo",
           (double)o->kl_weight);
}

int main(int argc, char **argv)
{
    options o;
    parse_args(argc, argv, &o);
    setvbuf(stdout, NULL, _IOLBF, 0);

    blas_info bi;
    blas_setup(o.threads, &bi);
    o.blas_threads = bi.threads;
    printf("libbnn %s\n", bnn_version_string());
    blas_print(&bi);

    dataset d;
    load_data(&o, &d);
    printf("Data %s: %zu training, %zu validation, %zu test images\n", o.data, d.train.n,
           d.val.n, d.test.n);

    bnn_model *model = NULL;
    bnn_guide *guide = NULL;
    bnn_optimizer *opt = NULL;
    train_stats ts;
    if (o.train) {
        size_t sizes[BNN_MAX_LAYERS];
        sizes[0] = IDX_PIXELS;
        for (size_t k = 0; k < o.n_hidden; k++)
            sizes[k + 1] = o.hidden[k];
        sizes[o.n_hidden + 1] = CLASSES;
        bnn_model_config mc;
        bnn_model_config_init(&mc);
        mc.n_sizes = o.n_hidden + 2;
        mc.layer_sizes = sizes;
        mc.activation = BNN_ACT_RELU;
        mc.likelihood = BNN_LIK_CATEGORICAL;
        mc.prior = o.prior;
        mc.prior_sigma = o.prior_sigma;
        mc.prior_pi = o.prior_pi;
        mc.prior_sigma1 = o.prior_s1;
        mc.prior_sigma2 = o.prior_s2;
        CHECK(bnn_model_create(&mc, &model));

        bnn_guide_config gc;
        bnn_guide_config_init(&gc);
        gc.init = o.init;
        if (!isnan(o.init_sigma))
            gc.init_sigma = o.init_sigma;
        gc.seed = o.seed;
        CHECK(bnn_guide_create(model, &gc, &guide));

        /* Pyro's Trace_ELBO adds the whole KL to every minibatch; the
         * library scales it by B/N, so undo that. */
        if (o.kl_weight < 0)
            o.kl_weight = (float)((double)d.train.n / (double)o.batch);
        bnn_optimizer_config oc;
        bnn_optimizer_config_init(&oc);
        oc.kind = BNN_OPT_ADAM;
        oc.lr = o.lr;
        bnn_svi_config sc;
        bnn_svi_config_init(&sc);
        sc.dataset_size = d.train.n;
        sc.kl_weight = o.kl_weight;
        sc.estimator = o.estimator;
        sc.kl_mode = o.kl;
        sc.num_particles = o.particles;
        sc.max_batch = o.batch;
        sc.seed = o.seed * 0x9e3779b97f4a7c15ull + 0x4e4f495345ull; /* "NOISE" */
        /* The per-parameter passes on as many threads as the products:
         * the same results, a shorter step. */
        sc.num_threads = lib_threads(&o);
        CHECK(bnn_optimizer_create(guide, &oc, &sc, &opt));

        print_config(&o, d.train.n);
        train(&o, &d, guide, opt, &ts);
        printf("Trained %zu steps in %.1f s (%.0f images/s)\n", ts.steps, ts.seconds,
               ts.images_per_second);
        CHECK(bnn_save(o.out, guide, opt));
        printf("Model saved to %s\n", o.out);
    } else {
        CHECK(bnn_load(o.load, NULL, &model, &guide, NULL));
        if (bnn_model_input_size(model) != IDX_PIXELS ||
            bnn_model_output_size(model) != CLASSES)
            die("%s: the model maps %zu inputs to %zu outputs, not 784 to 10", o.load,
                bnn_model_input_size(model), bnn_model_output_size(model));
        printf("Model loaded from %s (%zu parameters)\n", o.load, bnn_model_param_count(model));
    }

    eval_report r;
    slice_pred tp;
    evaluate(&o, guide, &d, &r, &tp);
    print_report(&o, &r);
    if (o.report) {
        write_report(&o, o.report, &bi, model, o.train ? &ts : NULL, opt, &r);
        printf("Report written to %s\n", o.report);
    }
    if (o.plots) {
        make_plots(&o, guide, &d, &r, &tp);
        plot_cleanup();
    }

    slice_pred_free(&tp);
    bnn_optimizer_free(opt);
    bnn_guide_free(guide);
    bnn_model_free(model);
    slice_free(&d.train);
    slice_free(&d.val);
    slice_free(&d.test);
    return EXIT_SUCCESS;
}
