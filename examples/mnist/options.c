/* bnn_mnist's command line: defaults, --pyro-config, and every option's
 * value checked before anything is loaded. */
#define _GNU_SOURCE /* getopt_long */

#include "mnist.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
        "  --arch mlp|cnn         network: dense layers, or conv 5x5xC1 pad 2, 2x2 max pool,\n"
        "                         conv 5x5xC2 pad 2, 2x2 max pool, then the dense layers [mlp]\n"
        "  --conv C1,C2           the cnn's channels [16,32]\n"
        "  --hidden L[,L...]      hidden dense layer sizes [mlp 1024, cnn 128]\n"
        "  --epochs N  --batch N\n"
        "  --optimizer ivon|adam  [ivon]; IVON needs --estimator weight and a normal prior\n"
        "  --lr X                 learning rate [ivon 0.1, adam 1e-3]\n"
        "  --lr-schedule constant|linear|cosine  decay over the run [ivon cosine, adam constant]\n"
        "  --lr-end X             learning rate at the end of a decay [lr / 1000]\n"
        "  --warmup E             linear learning-rate warm-up over E epochs, then the decay [0]\n"
        "  --shift N              shift each training image by a random -N..N pixels per axis [0]\n"
        "  --ivon-ess F           IVON's effective sample size, F x training images [30]\n"
        "  --ivon-beta2 X  --ivon-hess-init X  --ivon-clip R   IVON's settings [0.97, 0.1, off]\n"
        "  --estimator lrt|weight|flipout        gradient estimator [weight; adam: lrt]\n"
        "  --prior normal:S|mixture:PI,S1,S2     prior [normal:1]\n"
        "  --kl analytic|mc       KL term [analytic; mc for the mixture prior]\n"
        "  --kl-weight X          KL scale (1 = one full KL per epoch)\n"
        "  --kl-warmup N          raise the KL weight linearly from 0 to --kl-weight\n"
        "                         over the first N epochs, step by step [0: off]\n"
        "  --init default|pyro    posterior initialisation [default]\n"
        "  --init-sigma X         initial posterior sigma for --init default\n"
        "  --particles N          Monte Carlo particles per step [1]\n"
        "  --seed N               initialisation, noise and shuffling seed [1]\n"
        "\n"
        "evaluation:\n"
        "  --target-accuracy X    accuracy the refusal policy must reach [0.99]\n"
        "  --val-fraction X       share of the training images held out (evenly\n"
        "                         spread) to calibrate the refusal policy; 0: train\n"
        "                         on all of them, no calibrated policy (the median\n"
        "                         rule at --threshold stands in) [0.1]\n"
        "  --forced-samples N     networks for the forced answer [10]\n"
        "  --refuse-samples N     networks for uncertainty and refusal [100]\n"
        "  --threshold X          median rule threshold [0.2]\n"
        "  --predict-seed N       prediction seed [1]\n"
        "  --sampling marginal|networks|mean     how predictive samples are drawn:\n"
        "                         per input (exact, fast), whole networks (the\n"
        "                         original program), posterior means [marginal]\n"
        "  --ood DIR[,DIR...]     also score these folders' t10k images as\n"
        "                         out-of-distribution, beside the shifted test images\n"
        "                         (rotated 30 and 60 degrees, uniform noise); default:\n"
        "                         fashion for a mnist* --data, mnist10k for fashion,\n"
        "                         when that folder exists beside it; 'none': no\n"
        "                         out-of-distribution section\n"
        "  --ood-limit N          images per out-of-distribution set, evenly spread\n"
        "                         (0: all) [2000]\n"
        "\n"
        "  --threads N            OpenBLAS threads, and threads for the library's\n"
        "                         training passes and for prediction\n"
        "                         (default: OpenBLAS's choice)\n"
        "  --quiet                no per-epoch progress\n",
        f);
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
    o->optimizer = BNN_OPT_IVON;
    o->lr = NAN;
    o->lr_end = NAN;
    o->ivon_beta2 = 0.97f;
    o->ivon_hess_init = 0.1f;
    o->ivon_clip = 0.0f;
    o->ivon_ess_factor = 30.0;
    o->estimator = BNN_EST_WEIGHT_SAMPLING; /* Adam's default: lrt (parse_args) */
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
    o->sampling = BNN_SAMPLING_MARGINAL;
    o->target_accuracy = 0.99;
    o->ood_limit = 2000;
    o->conv[0] = 16;
    o->conv[1] = 32;
    o->val_fraction = 0.1;
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
    o->optimizer = BNN_OPT_ADAM;
    o->lr = 0.01f;
    o->lr_decay = BNN_LR_CONSTANT;
    o->lr_decay_set = 1;
    o->estimator = BNN_EST_WEIGHT_SAMPLING;
    o->estimator_set = 1;
    o->prior = BNN_PRIOR_NORMAL;
    o->prior_sigma = 1.0f;
    o->kl = BNN_KL_MONTE_CARLO;
    o->kl_set = 1;
    o->init = BNN_INIT_PYRO;
    o->particles = 1;
}

enum {
    OPT_DATA = 256, OPT_OUT, OPT_LOAD, OPT_REPORT, OPT_PLOTS, OPT_PLOT_COUNT, OPT_TRAIN_LIMIT,
    OPT_PYRO, OPT_HIDDEN, OPT_EPOCHS, OPT_BATCH, OPT_LR, OPT_ESTIMATOR, OPT_PRIOR, OPT_KL,
    OPT_KL_WEIGHT, OPT_INIT, OPT_INIT_SIGMA, OPT_PARTICLES, OPT_SEED, OPT_TARGET,
    OPT_FORCED, OPT_REFUSE, OPT_THRESHOLD, OPT_PREDICT_SEED, OPT_SAMPLING, OPT_THREADS, OPT_QUIET,
    OPT_OOD, OPT_OOD_LIMIT, OPT_VAL_FRACTION,
    OPT_OPTIMIZER, OPT_LR_SCHEDULE, OPT_LR_END, OPT_IVON_ESS, OPT_IVON_BETA2, OPT_IVON_HESS,
    OPT_IVON_CLIP, OPT_WARMUP, OPT_SHIFT, OPT_ARCH, OPT_CONV, OPT_KL_WARMUP
};

static const struct option LONG_OPTIONS[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"out", required_argument, NULL, OPT_OUT},
    {"load", required_argument, NULL, OPT_LOAD},
    {"report", required_argument, NULL, OPT_REPORT},
    {"plots", required_argument, NULL, OPT_PLOTS},
    {"plot-count", required_argument, NULL, OPT_PLOT_COUNT},
    {"train-limit", required_argument, NULL, OPT_TRAIN_LIMIT},
    {"pyro-config", no_argument, NULL, OPT_PYRO},
    {"hidden", required_argument, NULL, OPT_HIDDEN},
    {"epochs", required_argument, NULL, OPT_EPOCHS},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"lr", required_argument, NULL, OPT_LR},
    {"estimator", required_argument, NULL, OPT_ESTIMATOR},
    {"prior", required_argument, NULL, OPT_PRIOR},
    {"kl", required_argument, NULL, OPT_KL},
    {"kl-weight", required_argument, NULL, OPT_KL_WEIGHT},
    {"kl-warmup", required_argument, NULL, OPT_KL_WARMUP},
    {"init", required_argument, NULL, OPT_INIT},
    {"init-sigma", required_argument, NULL, OPT_INIT_SIGMA},
    {"particles", required_argument, NULL, OPT_PARTICLES},
    {"seed", required_argument, NULL, OPT_SEED},
    {"target-accuracy", required_argument, NULL, OPT_TARGET},
    {"forced-samples", required_argument, NULL, OPT_FORCED},
    {"refuse-samples", required_argument, NULL, OPT_REFUSE},
    {"threshold", required_argument, NULL, OPT_THRESHOLD},
    {"predict-seed", required_argument, NULL, OPT_PREDICT_SEED},
    {"sampling", required_argument, NULL, OPT_SAMPLING},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"ood", required_argument, NULL, OPT_OOD},
    {"ood-limit", required_argument, NULL, OPT_OOD_LIMIT},
    {"val-fraction", required_argument, NULL, OPT_VAL_FRACTION},
    {"optimizer", required_argument, NULL, OPT_OPTIMIZER},
    {"lr-schedule", required_argument, NULL, OPT_LR_SCHEDULE},
    {"lr-end", required_argument, NULL, OPT_LR_END},
    {"ivon-ess", required_argument, NULL, OPT_IVON_ESS},
    {"ivon-beta2", required_argument, NULL, OPT_IVON_BETA2},
    {"ivon-hess-init", required_argument, NULL, OPT_IVON_HESS},
    {"ivon-clip", required_argument, NULL, OPT_IVON_CLIP},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"shift", required_argument, NULL, OPT_SHIFT},
    {"arch", required_argument, NULL, OPT_ARCH},
    {"conv", required_argument, NULL, OPT_CONV},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* One option with its value v (NULL for flags); a is its spelling. */
static void apply_option(options *o, int id, const char *a, const char *v)
{
    double list[BNN_MAX_LAYERS];
    switch (id) {
    case OPT_DATA: o->data = v; break;
    case OPT_OUT: o->out = v; break;
    case OPT_LOAD: o->load = v; break;
    case OPT_REPORT: o->report = v; break;
    case OPT_PLOTS: o->plots = v; break;
    case OPT_PLOT_COUNT: o->plot_count = parse_size(a, v); break;
    case OPT_TRAIN_LIMIT: o->train_limit = parse_size(a, v); break;
    case OPT_PYRO: break; /* applied before every other option */
    case OPT_HIDDEN: {
        size_t n = parse_list(a, v, list, BNN_MAX_LAYERS - 2);
        for (size_t k = 0; k < n; k++) {
            if (list[k] < 1 || list[k] != floor(list[k]) || list[k] > 1e6)
                die("--hidden: '%s' is not a list of layer sizes", v);
            o->hidden[k] = (size_t)list[k];
        }
        o->n_hidden = n;
        o->hidden_set = 1;
        break;
    }
    case OPT_EPOCHS: o->epochs = parse_size(a, v); break;
    case OPT_BATCH: o->batch = parse_size(a, v); break;
    case OPT_PARTICLES: o->particles = parse_size(a, v); break;
    case OPT_LR: o->lr = (float)parse_double(a, v); break;
    case OPT_ESTIMATOR:
        if (!strcmp(v, "lrt"))
            o->estimator = BNN_EST_LOCAL_REPARAM;
        else if (!strcmp(v, "weight"))
            o->estimator = BNN_EST_WEIGHT_SAMPLING;
        else if (!strcmp(v, "flipout"))
            o->estimator = BNN_EST_FLIPOUT;
        else
            die("--estimator: '%s' is not lrt, weight or flipout", v);
        o->estimator_set = 1;
        break;
    case OPT_PRIOR:
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
        break;
    case OPT_KL:
        if (!strcmp(v, "analytic"))
            o->kl = BNN_KL_ANALYTIC;
        else if (!strcmp(v, "mc"))
            o->kl = BNN_KL_MONTE_CARLO;
        else
            die("--kl: '%s' is not analytic or mc", v);
        o->kl_set = 1;
        break;
    case OPT_KL_WEIGHT: o->kl_weight = (float)parse_double(a, v); break;
    case OPT_KL_WARMUP: o->kl_warmup = parse_size(a, v); break;
    case OPT_INIT:
        if (!strcmp(v, "default"))
            o->init = BNN_INIT_DEFAULT;
        else if (!strcmp(v, "pyro"))
            o->init = BNN_INIT_PYRO;
        else
            die("--init: '%s' is not default or pyro", v);
        break;
    case OPT_INIT_SIGMA: o->init_sigma = (float)parse_double(a, v); break;
    case OPT_SEED: o->seed = parse_size(a, v); break;
    case OPT_THREADS: o->threads = (int)parse_size(a, v); break;
    case OPT_TARGET: o->target_accuracy = parse_double(a, v); break;
    case OPT_FORCED: o->forced_samples = parse_size(a, v); break;
    case OPT_REFUSE: o->refuse_samples = parse_size(a, v); break;
    case OPT_THRESHOLD: o->refuse_threshold = (float)parse_double(a, v); break;
    case OPT_PREDICT_SEED: o->predict_seed = parse_size(a, v); break;
    case OPT_SAMPLING:
        if (!strcmp(v, "marginal"))
            o->sampling = BNN_SAMPLING_MARGINAL;
        else if (!strcmp(v, "networks"))
            o->sampling = BNN_SAMPLING_NETWORKS;
        else if (!strcmp(v, "mean"))
            o->sampling = BNN_SAMPLING_MEAN;
        else
            die("--sampling: '%s' is not marginal, networks or mean", v);
        break;
    case OPT_QUIET: o->quiet = 1; break;
    case OPT_OOD: o->ood = v; break;
    case OPT_OOD_LIMIT: o->ood_limit = parse_size(a, v); break;
    case OPT_VAL_FRACTION:
        o->val_fraction = parse_double(a, v);
        if (!(o->val_fraction >= 0.0 && o->val_fraction <= 0.5))
            die("%s: %s is not in [0, 0.5]", a, v);
        break;
    case OPT_OPTIMIZER:
        if (!strcmp(v, "ivon"))
            o->optimizer = BNN_OPT_IVON;
        else if (!strcmp(v, "adam"))
            o->optimizer = BNN_OPT_ADAM;
        else
            die("--optimizer: '%s' is not ivon or adam", v);
        break;
    case OPT_LR_SCHEDULE:
        if (!strcmp(v, "constant"))
            o->lr_decay = BNN_LR_CONSTANT;
        else if (!strcmp(v, "linear"))
            o->lr_decay = BNN_LR_LINEAR;
        else if (!strcmp(v, "cosine"))
            o->lr_decay = BNN_LR_COSINE;
        else
            die("--lr-schedule: '%s' is not constant, linear or cosine", v);
        o->lr_decay_set = 1;
        break;
    case OPT_LR_END: o->lr_end = (float)parse_double(a, v); break;
    case OPT_IVON_ESS: o->ivon_ess_factor = parse_double(a, v); break;
    case OPT_IVON_BETA2: o->ivon_beta2 = (float)parse_double(a, v); break;
    case OPT_IVON_HESS: o->ivon_hess_init = (float)parse_double(a, v); break;
    case OPT_IVON_CLIP: o->ivon_clip = (float)parse_double(a, v); break;
    case OPT_WARMUP:
        o->warmup = parse_double(a, v);
        if (!(o->warmup >= 0.0 && o->warmup < 1e6))
            die("%s: %s is not a number of epochs >= 0", a, v);
        break;
    case OPT_ARCH:
        if (!strcmp(v, "mlp"))
            o->cnn = 0;
        else if (!strcmp(v, "cnn"))
            o->cnn = 1;
        else
            die("%s: '%s' is not mlp or cnn", a, v);
        break;
    case OPT_CONV: {
        if (parse_list(a, v, list, 2) != 2)
            die("%s: '%s' is not two channel counts C1,C2", a, v);
        for (int k = 0; k < 2; k++) {
            if (list[k] < 1 || list[k] != floor(list[k]) || list[k] > 4096)
                die("%s: '%s' is not two channel counts C1,C2", a, v);
            o->conv[k] = (size_t)list[k];
        }
        break;
    }
    case OPT_SHIFT:
        o->shift = parse_size(a, v);
        if (o->shift > 8)
            die("%s: %s is above 8 pixels", a, v);
        break;
    default: die("unknown option '%s' (--help for usage)", a);
    }
}

void parse_args(int argc, char **argv, options *o)
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

    /* The command word stands in for the program name.  Two passes:
     * --pyro-config first, so explicit options given with it still win. */
    int ac = argc - 1;
    char **av = argv + 1;
    opterr = 0; /* our own messages */
    for (int pass = 0; pass < 2; pass++) {
        optind = 0; /* glibc: restart the scan */
        int id, li = -1;
        while ((id = getopt_long(ac, av, ":h", LONG_OPTIONS, &li)) != -1) {
            /* the option's spelling, for messages: "--name" */
            char name[64];
            const char *a = av[optind - 1];
            if (id >= OPT_DATA && li >= 0) {
                snprintf(name, sizeof name, "--%s", LONG_OPTIONS[li].name);
                a = name;
            }
            li = -1;
            if (pass == 0) {
                if (id == OPT_PYRO)
                    o->pyro = 1, apply_pyro(o);
                continue;
            }
            if (id == 'h') {
                usage(stdout);
                exit(EXIT_SUCCESS);
            }
            if (id == ':')
                die("%s: missing value (--help for usage)", a);
            if (id == '?')
                die("unknown option '%s' (--help for usage)", a);
            apply_option(o, id, a, optarg);
        }
    }
    if (optind < ac)
        die("unexpected argument '%s' (--help for usage)", av[optind]);

    int ivon = o->optimizer == BNN_OPT_IVON;
    if (isnan(o->lr))
        o->lr = ivon ? 0.1f : 1e-3f;
    if (!o->lr_decay_set)
        o->lr_decay = ivon ? BNN_LR_COSINE : BNN_LR_CONSTANT;
    if (isnan(o->lr_end))
        o->lr_end = o->lr / 1000;
    /* Local reparameterization is not exact for a kernel shared by the
     * positions of an image (training refuses it): flipout for Adam's cnn. */
    if (!o->estimator_set)
        o->estimator = ivon ? BNN_EST_WEIGHT_SAMPLING
                       : o->cnn ? BNN_EST_FLIPOUT
                                : BNN_EST_LOCAL_REPARAM;
    if (o->cnn && !o->hidden_set)
        o->hidden[0] = 128, o->n_hidden = 1;
    if (!(o->ivon_ess_factor > 0))
        die("--ivon-ess must be > 0");
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
