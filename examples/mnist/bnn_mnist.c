/* bnn_mnist: train a Bayesian neural network on MNIST-style IDX data, then
 * report how often it is right, how well its probabilities are calibrated,
 * and how much it must refuse to answer to reach a target accuracy.
 *
 *   bnn_mnist train [options]             train, save, evaluate
 *   bnn_mnist evaluate --load FILE [...]  evaluate a saved model
 *
 * Run with --help for the options.  This file: main, the BLAS, the data and
 * the model; the other parts are listed in mnist.h. */
#define _GNU_SOURCE /* dlsym(RTLD_DEFAULT), clock_gettime */

#include "mnist.h"
#include "plot.h"

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bnn_mnist: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_FAILURE);
}

void *xmalloc(size_t n, size_t size)
{
    if (n && size > SIZE_MAX / n)
        die("allocation of %zu x %zu bytes overflows", n, size);
    void *p = malloc(n && size ? n * size : 1);
    if (!p)
        die("out of memory (%zu bytes)", n * size);
    return p;
}

double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* BLAS                                                                     */
/* ------------------------------------------------------------------------ */

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

/* ------------------------------------------------------------------------ */
/* Data                                                                     */
/* ------------------------------------------------------------------------ */

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

/* A share --val-fraction of the training images, evenly interleaved, is held
 * out for calibrating the refusal threshold: image i when floor((i + 1) f)
 * > floor(i f), in per-mille integers so that f = 0.1 holds out exactly
 * i % 10 == 9.  Interleaved rather than the last images, because some files
 * (mnist10k) are ordered by class.  --train-limit keeps an evenly spread
 * subset of the rest for the same reason. */
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

    size_t per_mille = (size_t)lround(o->val_fraction * 1000.0);
    size_t n_val = train.n * per_mille / 1000, n_rest = train.n - n_val;
    size_t n_train = o->train_limit && o->train_limit < n_rest ? o->train_limit : n_rest;
    slice_alloc(&d->val, n_val);
    slice_alloc(&d->train, n_train);
    size_t *rest = xmalloc(n_rest, sizeof *rest);
    size_t iv = 0, ir = 0;
    for (size_t i = 0; i < train.n; i++) {
        if ((i + 1) * per_mille / 1000 > i * per_mille / 1000 && iv < n_val)
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
/* Main                                                                     */
/* ------------------------------------------------------------------------ */

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

    ood_check(&o);
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
        /* LeNet-like: two 5x5 convolutions (padding keeps 28x28, then
         * 14x14), each followed by 2x2 max pooling, then dense layers. */
        bnn_layer_spec ls[4 + BNN_MAX_LAYERS];
        if (o.cnn) {
            size_t n = 0;
            for (int k = 0; k < 2; k++) {
                bnn_layer_spec_init(&ls[n]);
                ls[n].kind = BNN_LAYER_CONV2D;
                ls[n].units = o.conv[k];
                ls[n].kernel_h = ls[n].kernel_w = 5;
                ls[n].pad_h = ls[n].pad_w = 2;
                n++;
                bnn_layer_spec_init(&ls[n]);
                ls[n++].kind = BNN_LAYER_MAXPOOL2;
            }
            for (size_t k = 0; k <= o.n_hidden; k++) {
                bnn_layer_spec_init(&ls[n]);
                ls[n++].units = k < o.n_hidden ? o.hidden[k] : CLASSES;
            }
            mc.n_layers = n;
            mc.layers = ls;
            mc.input_height = mc.input_width = 28;
            mc.input_channels = 1;
        }
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
        oc.kind = o.optimizer;
        oc.lr = o.lr;
        oc.ivon_beta2 = o.ivon_beta2;
        oc.ivon_hess_init = o.ivon_hess_init;
        oc.ivon_clip_radius = o.ivon_clip;
        oc.ivon_ess = (float)(o.ivon_ess_factor * (double)d.train.n);
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

    /* The library samples a network with convolutions whole in the
     * marginal mode too (the marginal rule is exact for dense layers
     * only): say so where the figures say "marginal". */
    bnn_model_config got;
    bnn_model_config_init(&got);
    CHECK(bnn_model_get_config(model, &got));
    int has_conv = 0;
    for (size_t k = 0; k < got.n_layers; k++)
        has_conv |= got.layers[k].kind == BNN_LAYER_CONV2D;
    if (has_conv && o.sampling == BNN_SAMPLING_MARGINAL)
        printf("Convolutional network: marginal sampling draws whole networks\n");

    eval_report r;
    slice_pred tp;
    evaluate(&o, guide, &d, &r, &tp);
    print_report(&o, &r);
    ood_report ood;
    ood_evaluate(&o, guide, &d, &r, &tp, &ood);
    print_ood(&o, &ood);
    if (o.report) {
        write_report(&o, o.report, &bi, model, o.train ? &ts : NULL, opt, &r, &ood);
        printf("Report written to %s\n", o.report);
    }
    if (o.plots) {
        make_plots(&o, guide, &d, &r, &tp, &ood);
        plot_cleanup();
    }

    ood_free(&ood);
    slice_pred_free(&tp);
    bnn_optimizer_free(opt);
    bnn_guide_free(guide);
    bnn_model_free(model);
    slice_free(&d.train);
    slice_free(&d.val);
    slice_free(&d.test);
    return EXIT_SUCCESS;
}
