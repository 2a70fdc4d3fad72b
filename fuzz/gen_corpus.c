/* Writes the fuzzing seed corpus: small valid files covering every section
 * and enum value, plus truncated, corrupted and forged variants that start
 * the fuzzer next to each check of the loader.
 *   gen_corpus <output directory> */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "reseal.h"

static const char *out_dir;

static void die(const char *what)
{
    fprintf(stderr, "gen_corpus: %s: %s\n", what, bnn_last_error());
    exit(EXIT_FAILURE);
}

static void put(const char *name, const unsigned char *b, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0)
        die(path);
}

typedef struct spec {
    const char *name;
    size_t n_sizes;
    size_t sizes[4];
    bnn_activation act;
    bnn_likelihood lik;
    bnn_prior prior;
    int opt; /* 0 none, 1 Adam, 2 SGD with momentum, 3 IVON (version 2 file) */
    bnn_estimator est;
} spec;

static unsigned char *make(const spec *s, size_t *size)
{
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = s->n_sizes;
    mc.layer_sizes = s->sizes;
    mc.activation = s->act;
    mc.likelihood = s->lik;
    mc.prior = s->prior;
    mc.noise_sigma = 0.5f;
    bnn_model *m;
    bnn_guide *g;
    bnn_optimizer *o = NULL;
    if (bnn_model_create(&mc, &m) != BNN_OK)
        die("model");
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.init = BNN_INIT_PYRO;
    if (bnn_guide_create(m, &gc, &g) != BNN_OK)
        die("guide");
    if (s->opt) {
        bnn_optimizer_config oc;
        bnn_optimizer_config_init(&oc);
        oc.kind = s->opt == 1 ? BNN_OPT_ADAM : s->opt == 2 ? BNN_OPT_SGD : BNN_OPT_IVON;
        oc.momentum = 0.9f;
        bnn_svi_config sc;
        bnn_svi_config_init(&sc);
        sc.dataset_size = 100;
        sc.max_batch = 8;
        sc.estimator = s->est;
        sc.kl_mode = s->prior == BNN_PRIOR_NORMAL ? BNN_KL_ANALYTIC
                                                  : BNN_KL_MONTE_CARLO;
        if (bnn_optimizer_create(g, &oc, &sc, &o) != BNN_OK)
            die("optimizer");
        size_t n;
        float *gr = bnn_guide_grads(g, &n);
        for (int step = 0; step < 2; step++) {
            for (size_t i = 0; i < n; i++)
                gr[i] = (float)((int)((i * 7 + (size_t)step) % 11) - 5) / 4;
            if (bnn_optimizer_step(o) != BNN_OK)
                die("step");
        }
    }
    if (bnn_save_size(g, o, size) != BNN_OK)
        die("size");
    unsigned char *b = malloc(*size);
    if (!b || bnn_save_to_memory(g, o, b, *size, size) != BNN_OK)
        die("save");
    bnn_optimizer_free(o);
    bnn_guide_free(g);
    bnn_model_free(m);
    return b;
}

/* Version 4 files: a small convolutional network (stride, padding, both
 * poolings, per-layer activations and priors) without optimizer (kind 0)
 * and with Adam state (3, flipout), a dense sequence with IVON state (1),
 * and one with learned noise (2). */
static unsigned char *make_sequence(int kind, size_t *size)
{
    int dense = kind == 1 || kind == 2;
    bnn_layer_spec s[7];
    for (int i = 0; i < 7; i++)
        bnn_layer_spec_init(&s[i]);
    size_t n = 3;
    if (dense) {
        s[0].kind = BNN_LAYER_FLATTEN;
        s[1].units = 3;
        s[2].units = 2;
    } else {
        s[0].kind = BNN_LAYER_CONV2D, s[0].units = 2, s[0].stride_h = 2;
        s[0].pad_h = s[0].pad_w = 1, s[0].activation = BNN_ACT_TANH;
        s[0].prior = BNN_PRIOR_SCALE_MIXTURE;
        s[1].kind = BNN_LAYER_MAXPOOL2;
        s[2].kind = BNN_LAYER_CONV2D, s[2].units = 2, s[2].kernel_h = 1, s[2].kernel_w = 2;
        s[2].activation = BNN_ACT_IDENTITY, s[2].prior = BNN_PRIOR_NORMAL;
        s[2].prior_sigma = 0.5f;
        s[3].kind = BNN_LAYER_AVGPOOL2;
        if (kind == 3) /* the model's prior: analytic KL for Adam */
            s[0].prior = s[2].prior = BNN_PRIOR_INHERIT;
        s[4].kind = BNN_LAYER_FLATTEN;
        s[5].units = 3;
        s[6].units = 2;
        n = 7;
    }
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_layers = n;
    mc.layers = s;
    mc.input_height = dense ? 2 : 7;
    mc.input_width = dense ? 1 : 6;
    mc.input_channels = 2;
    if (kind == 2)
        mc.likelihood = BNN_LIK_GAUSSIAN_LEARNED;
    bnn_model *m;
    bnn_guide *g;
    bnn_optimizer *o = NULL;
    if (bnn_model_create(&mc, &m) != BNN_OK)
        die("sequence model");
    if (bnn_guide_create(m, NULL, &g) != BNN_OK)
        die("guide");
    if (kind == 1 || kind == 3) {
        bnn_optimizer_config oc;
        bnn_optimizer_config_init(&oc);
        oc.kind = kind == 1 ? BNN_OPT_IVON : BNN_OPT_ADAM;
        bnn_svi_config sc;
        bnn_svi_config_init(&sc);
        sc.dataset_size = 100;
        sc.max_batch = 8;
        sc.estimator = kind == 1 ? BNN_EST_WEIGHT_SAMPLING : BNN_EST_FLIPOUT;
        if (bnn_optimizer_create(g, &oc, &sc, &o) != BNN_OK)
            die("optimizer");
        size_t np;
        float *gr = bnn_guide_grads(g, &np);
        for (size_t i = 0; i < np; i++)
            gr[i] = (float)((int)(i * 5 % 7) - 3) / 4;
        if (bnn_optimizer_step(o) != BNN_OK)
            die("step");
    }
    if (bnn_save_size(g, o, size) != BNN_OK)
        die("size");
    unsigned char *b = malloc(*size);
    if (!b || bnn_save_to_memory(g, o, b, *size, size) != BNN_OK)
        die("save");
    bnn_optimizer_free(o);
    bnn_guide_free(g);
    bnn_model_free(m);
    return b;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus <output directory>\n");
        return EXIT_FAILURE;
    }
    out_dir = argv[1];
    static const spec specs[] = {
        {"valid_relu_categorical.bnn", 2, {2, 2}, BNN_ACT_RELU,
         BNN_LIK_CATEGORICAL, BNN_PRIOR_NORMAL, 0, BNN_EST_LOCAL_REPARAM},
        {"valid_tanh_gaussian_mixture.bnn", 3, {2, 3, 1}, BNN_ACT_TANH,
         BNN_LIK_GAUSSIAN, BNN_PRIOR_SCALE_MIXTURE, 0, BNN_EST_LOCAL_REPARAM},
        {"valid_adam.bnn", 3, {2, 2, 2}, BNN_ACT_RELU, BNN_LIK_CATEGORICAL,
         BNN_PRIOR_NORMAL, 1, BNN_EST_LOCAL_REPARAM},
        {"valid_sgd_flipout_mixture.bnn", 2, {1, 2}, BNN_ACT_TANH,
         BNN_LIK_GAUSSIAN, BNN_PRIOR_SCALE_MIXTURE, 2, BNN_EST_FLIPOUT},
        {"valid_deep_weight_sampling.bnn", 4, {1, 1, 1, 2}, BNN_ACT_RELU,
         BNN_LIK_CATEGORICAL, BNN_PRIOR_NORMAL, 1,
         BNN_EST_WEIGHT_SAMPLING},
        {"valid_ivon.bnn", 3, {2, 3, 2}, BNN_ACT_RELU, BNN_LIK_CATEGORICAL,
         BNN_PRIOR_NORMAL, 3, BNN_EST_WEIGHT_SAMPLING},
        /* version 3: the noise section, and the optimizer's noise moments */
        {"valid_learned_noise.bnn", 2, {2, 2}, BNN_ACT_RELU,
         BNN_LIK_GAUSSIAN_LEARNED, BNN_PRIOR_NORMAL, 0, BNN_EST_LOCAL_REPARAM},
        {"valid_learned_noise_adam.bnn", 3, {2, 3, 2}, BNN_ACT_TANH,
         BNN_LIK_GAUSSIAN_LEARNED, BNN_PRIOR_NORMAL, 1, BNN_EST_LOCAL_REPARAM},
        {"valid_learned_noise_ivon.bnn", 3, {1, 2, 1}, BNN_ACT_RELU,
         BNN_LIK_GAUSSIAN_LEARNED, BNN_PRIOR_NORMAL, 3, BNN_EST_WEIGHT_SAMPLING},
        {"valid_hetero_sgd.bnn", 3, {1, 3, 2}, BNN_ACT_RELU,
         BNN_LIK_GAUSSIAN_HETERO, BNN_PRIOR_NORMAL, 2, BNN_EST_FLIPOUT},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        size_t n;
        unsigned char *b = make(&specs[i], &n);
        put(specs[i].name, b, n);
        free(b);
    }

    size_t n;
    unsigned char *b = make(&specs[2], &n);
    unsigned char *c = malloc(n);
    if (!c)
        die("malloc");
    put("truncated_header.bnn", b, 20);
    put("truncated_half.bnn", b, n / 2);
    put("truncated_crc.bnn", b, n - 1);
    put("empty.bnn", b, 0);
    put("magic_only.bnn", b, 8);

    memcpy(c, b, n);
    c[n / 2] ^= 0x10;
    put("corrupt_bit_flip.bnn", c, n);

    memcpy(c, b, n);
    reseal_set_le(c + 8, 5, 4);
    put("newer_version.bnn", c, n);

    memcpy(c, b, n);
    reseal_set_le(c + 24 + 36 + 3 * 8, (uint64_t)1 << 62, 8); /* parameter count */
    reseal(c, n);
    put("forged_param_count.bnn", c, n);

    memcpy(c, b, n);
    reseal_set_le(c + 28, (uint64_t)1 << 40, 8); /* first layer size */
    reseal(c, n);
    put("forged_layer_size.bnn", c, n);

    memcpy(c, b, n);
    reseal_set_le(c + 52, 7, 4); /* activation */
    reseal(c, n);
    put("forged_activation.bnn", c, n);

    free(b);
    free(c);

    /* The learned noise's count (after the guide's 2P floats) forged. */
    b = make(&specs[7], &n);
    c = malloc(n);
    if (!c)
        die("malloc");
    size_t p = 3 * 3 + 2 * 4, off = 24 + 4 + 3 * 8 + 32 + 8 + 8 * p;
    memcpy(c, b, n);
    reseal_set_le(c + off, 3, 8);
    reseal(c, n);
    put("forged_noise_count.bnn", c, n);
    memcpy(c, b, n);
    reseal_set_le(c + 8, 2, 4); /* a version 2 file knows no learned noise */
    reseal(c, n);
    put("learned_noise_as_version2.bnn", c, n);
    free(b);
    free(c);

    b = make_sequence(0, &n);
    put("valid_sequence_conv.bnn", b, n);
    c = malloc(n);
    if (!c)
        die("malloc");
    /* entry 0 (at 84 = 24 + 32 + 28): kernel_h at +12 */
    memcpy(c, b, n);
    reseal_set_le(c + 84 + 12, 9, 8);
    reseal(c, n);
    put("forged_sequence_kernel.bnn", c, n);
    memcpy(c, b, n);
    reseal_set_le(c + 80, 6, 4); /* entry count */
    reseal(c, n);
    put("forged_sequence_count.bnn", c, n);
    free(b);
    free(c);
    b = make_sequence(1, &n);
    put("valid_sequence_ivon.bnn", b, n);
    free(b);
    b = make_sequence(2, &n);
    put("valid_sequence_learned_noise.bnn", b, n);
    free(b);
    b = make_sequence(3, &n);
    put("valid_sequence_conv_adam.bnn", b, n);
    free(b);
    return EXIT_SUCCESS;
}
