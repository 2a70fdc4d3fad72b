/* Internal definitions shared by the modules of libbnn.  Never installed. */
#ifndef BNN_INTERNAL_H
#define BNN_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "bnn.h"

/* ---- errors (error.c) -------------------------------------------------- */

/* Record a thread-local message for bnn_last_error() and return status, so
 * call sites read `return error_set(BNN_E_INVALID, "x is NULL");`. */
bnn_status error_set(bnn_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Every message starts with the name of the public function that failed:
 * API_ENTRY() as the first statement of each public function that returns
 * a bnn_status records its name for the thread until it returns (nested
 * public calls keep the outermost name); error_set then prefixes it unless
 * the message already starts with it. */
const char *error_enter(const char *fn);
void error_leave(const char *const *entered);
#if defined(__GNUC__) || defined(__clang__)
#define API_ENTRY()                                                                   \
    const char *const api_entered_ __attribute__((cleanup(error_leave), unused)) = \
        error_enter(__func__)
#else
#define API_ENTRY() ((void)0) /* no scope exit hook: messages go unprefixed */
#endif

/* ---- memory (mem.c) ----------------------------------------------------- */

/* Every allocation in the library goes through these, so a user allocator or
 * a failure-injecting one sees all of them.  `a` is never NULL inside the
 * library: bnn_model resolves the default allocator at creation. */
void *mem_alloc(const bnn_allocator *a, size_t size);
/* count * size with overflow detection; NULL on overflow or failure. */
void *mem_alloc_array(const bnn_allocator *a, size_t count, size_t size);
/* Zeroed array allocation (overflow checked). */
void *mem_calloc_array(const bnn_allocator *a, size_t count, size_t size);
void mem_free(const bnn_allocator *a, void *ptr);
/* The malloc/free allocator. */
bnn_allocator mem_default_allocator(void);
/* 1 if a * b overflows size_t, else stores the product and returns 0. */
int mem_mul_overflow(size_t a, size_t b, size_t *out);

/* ---- size-versioned structs ----------------------------------------------
 * Every public config and output struct starts with `size_t struct_size`:
 * the size the caller's binary was built with.  The library reads and
 * writes only the bytes it covers, so older binaries keep working when
 * fields are appended.  These three are the only way the library touches
 * one. */

/* The bytes of `type` up to the end of `field`. */
#define SIZED_END(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
/* 1 if a struct of `size` bytes holds all of `field`. */
#define SIZED_COVERS(size, type, field) ((size) >= SIZED_END(type, field))

/* Read the caller's struct `user` over `dst` (which holds the defaults,
 * dst_size bytes): copies the bytes user->struct_size covers, then sets
 * dst's struct_size to dst_size.  BNN_E_INVALID ("<what>.struct_size N is
 * too small (call <what>_init)") when user's size is below min_size, the
 * end of the fields every version has had; dst is then unchanged. */
bnn_status sized_read(void *dst, size_t dst_size, const void *user,
                      size_t min_size, const char *what);

/* The same check for an output struct the caller passes to be filled. */
bnn_status sized_check(const void *user, size_t min_size, const char *what);

/* Write the library's `src` (src_size bytes) into the caller's struct
 * `user`: only the bytes user->struct_size covers, and user's struct_size
 * is kept. */
void sized_write(void *user, const void *src, size_t src_size);

/* ---- model (model.c) ---------------------------------------------------- */

/* Pooling after a convolution's activation (2 x 2, stride 2, floor). */
enum model_pool { MODEL_POOL_NONE = 0, MODEL_POOL_MAX = 1, MODEL_POOL_AVG = 2 };

/* Most entries a layer sequence may have (weight layers, pools, flattens). */
#define MODEL_MAX_SPECS (3 * BNN_MAX_LAYERS)

/* Weight layer l, resolved from the config.  A dense layer is the 1 x 1
 * case of a convolution: in 1 x 1 x inputs, kernel 1 x 1, out 1 x 1 x
 * units.  Activations are NHWC, flattened in that order. */
struct model_layer {
    int conv;                   /* 1: BNN_LAYER_CONV2D, 0: dense */
    size_t in_h, in_w, in_c;    /* input shape */
    size_t kh, kw, sh, sw, ph, pw; /* kernel, stride, zero padding */
    size_t out_h, out_w, out_c; /* pre-activation shape */
    enum model_pool pool;       /* after the activation */
    bnn_activation act;         /* RELU, TANH or IDENTITY (the last layer) */
    int own_prior;              /* 0: the model's prior, copied below */
    bnn_prior prior;            /* NORMAL or SCALE_MIXTURE, resolved */
    float prior_sigma, prior_pi, prior_sigma1, prior_sigma2;
};

struct bnn_model {
    bnn_allocator alloc;
    size_t n_sizes;
    size_t sizes[BNN_MAX_LAYERS];
    bnn_activation activation;
    bnn_likelihood likelihood;
    float noise_sigma;
    bnn_prior prior;
    float prior_sigma;
    float prior_pi;
    float prior_sigma1;
    float prior_sigma2;
    size_t n_params; /* weights + biases of the network */
    /* Offsets of layer l's weights (out x in, row-major) and biases inside
     * one half (mu or rho) of the guide's parameter buffer. */
    size_t w_off[BNN_MAX_LAYERS];
    size_t b_off[BNN_MAX_LAYERS];
    size_t max_width; /* largest layer size, pre-activations included */
    /* Per weight layer; for an MLP from layer_sizes, dense layers with the
     * model's activation and prior.  sizes[l] is layer l's flattened input
     * width (after the previous layer's pooling) and sizes[L] the outputs. */
    struct model_layer layer[BNN_MAX_LAYERS];
    int has_conv; /* any layer[l].conv */
    /* The sequence as configured (n_specs 0 for layer_sizes models), kept
     * for bnn_model_get_config and the file format. */
    size_t n_specs;
    bnn_layer_spec specs[MODEL_MAX_SPECS];
    size_t input_shape[3]; /* height, width, channels */
};

/* Columns of weight layer l's out x in weight matrix: its inputs for a
 * dense layer, kernel_h x kernel_w x in_channels for a convolution. */
static inline size_t model_layer_in(const struct bnn_model *m, size_t l)
{
    const struct model_layer *y = &m->layer[l];
    return y->kh * y->kw * y->in_c;
}
/* Rows of weight layer l's weight matrix (units or output channels), which
 * is also its number of biases. */
static inline size_t model_layer_out(const struct bnn_model *m, size_t l)
{
    return m->layer[l].out_c;
}
/* Flattened width of layer l's input activation (per example). */
static inline size_t model_act_in(const struct bnn_model *m, size_t l)
{
    return m->sizes[l];
}
/* Flattened width of layer l's pre-activation (before pooling). */
static inline size_t model_act_pre(const struct bnn_model *m, size_t l)
{
    const struct model_layer *y = &m->layer[l];
    return y->out_h * y->out_w * y->out_c;
}
/* Flattened width of layer l's output after activation and pooling. */
static inline size_t model_act_out(const struct bnn_model *m, size_t l)
{
    return m->sizes[l + 1];
}
static inline size_t model_n_layers(const struct bnn_model *m)
{
    return m->n_sizes - 1;
}
/* Targets per example of a Gaussian model (the heteroscedastic one's last
 * layer holds a mean and a log-variance per target); classes otherwise. */
static inline size_t model_n_targets(const struct bnn_model *m)
{
    size_t last = m->sizes[m->n_sizes - 1];
    return m->likelihood == BNN_LIK_GAUSSIAN_HETERO ? last / 2 : last;
}
/* Learned log-sigmas the guide keeps after [mu | rho]: one per target for
 * BNN_LIK_GAUSSIAN_LEARNED, else none. */
static inline size_t model_n_noise(const struct bnn_model *m)
{
    return m->likelihood == BNN_LIK_GAUSSIAN_LEARNED ? m->sizes[m->n_sizes - 1] : 0;
}

/* Validate cfg as bnn_model_create does and lay the model out in *m
 * without allocating anything (m is not a model to free or use beyond its
 * sizes).  bnn_model_create's errors except BNN_E_NOMEM. */
bnn_status model_describe(const bnn_model_config *cfg, struct bnn_model *m);

/* ---- guide (guide.c) ---------------------------------------------------- */

struct bnn_guide {
    const struct bnn_model *model;
    size_t n_params; /* == model->n_params */
    /* == model_n_noise(model); the buffers hold 2 * n_params + n_noise */
    size_t n_noise;
    float *params;   /* [mu | rho | log noise sigma] */
    float *grads;    /* same layout */
    /* The one optimizer that writes grads and steps params, if any: a
     * second would share the gradient buffer with it. */
    const struct bnn_optimizer *optimizer;
};

static inline const float *guide_mu(const struct bnn_guide *g)
{
    return g->params;
}
static inline const float *guide_rho(const struct bnn_guide *g)
{
    return g->params + g->n_params;
}

/* Draw one whole network w = mu + softplus(rho) * eps, eps ~ N(0,1) from
 * the RNG stream (seed, stream), into `out` (n_params floats, same layout as
 * the mu half).  Used by weight-sampling training and by prediction. */
void guide_sample_network(const struct bnn_guide *g, uint64_t seed,
                          uint64_t stream, float *out);

/* ---- RNG stream ids --------------------------------------------------------
 * A stream is identified by 64 bits composed from what the noise is for, so
 * that every draw is a pure function of (seed, step, layer, purpose, index).
 * Prediction uses purpose RNG_PREDICT with `step` = sample index. */
enum rng_purpose {
    RNG_INIT = 1,          /* guide initialisation */
    RNG_WEIGHTS = 2,       /* weight-sampling network draw */
    RNG_LOCAL = 3,         /* local reparameterization pre-activation noise */
    RNG_FLIPOUT_EPS = 4,   /* flipout perturbation */
    RNG_FLIPOUT_SIGN_IN = 5,
    RNG_FLIPOUT_SIGN_OUT = 6,
    RNG_KL = 7,            /* Monte Carlo KL draw (local reparameterization) */
    RNG_PREDICT = 8
};

/* step: 40 bits, particle: 8 bits, layer: 8 bits, purpose: 8 bits. */
static inline uint64_t rng_stream_id(uint64_t step, unsigned particle,
                                     unsigned layer, enum rng_purpose purpose)
{
    return (step << 24) | ((uint64_t)(particle & 0xffu) << 16) |
           ((uint64_t)(layer & 0xffu) << 8) | (uint64_t)purpose;
}

/* ---- SVI workspace (svi.c; used by layer.c and pass.c) ------------------- */

/* Per-layer activations kept from the forward pass for the backward pass. */
struct svi_layer_ws {
    float *pre;   /* B x out: pre-activation */
    float *post;  /* B x out: activation output (hidden layers) */
    float *std;   /* B x out: local reparameterization sqrt(variance) */
    float *eps;   /* B x out: LRT pre-activation noise / flipout output signs */
    float *s_in;  /* B x in: flipout input signs */
    /* Convolutions (widths per example: pre = out_h out_w out_c, in = the
     * input activation's; the buffers above are sized by those). */
    float *act;   /* B x pre: activation before pooling (NULL: no pool) */
    uint8_t *arg; /* B x out: which window entry max pooling took */
};

struct pool;

/* What the engine needs for a step, apart from the guide: the estimator
 * and noise seed, buffers sized once for max_batch, the threads and their
 * per-chunk sums.  No optimizer state lives here, so layer.c and pass.c
 * never see the optimizer. */
struct svi_ws {
    bnn_estimator estimator;
    uint64_t seed;
    /* Weight sampling for IVON: the backward fills [ghat | hhat] (fused.h),
     * written by the first particle (ivon_acc == 0), added by later ones. */
    int ivon, ivon_acc;
    /* A fused IVON step (bnn_svi_step): layer_backward leaves the
     * per-parameter pass of the particle with ivon_defer to the update and
     * records in ivon_gmax a bound on |dW| and |db| (from the GEMM
     * operands); ivon_fmax is the draw's bound on |eps / sigma|. */
    int ivon_fuse, ivon_defer;
    double ivon_gmax;
    float ivon_fmax;
    /* The n_params buffers an estimator does not use are NULL. */
    float *dsig;  /* n_params: 2 sigma dsigma/drho (local reparameterization) */
    float *sig2;  /* n_params: sigma^2 (local reparameterization) */
    float *noise; /* n_params: eps of a whole-network draw, then eps dsigma/drho */
    float *wsamp; /* n_params: sampled weights, or flipout's delta */
    float *gw;    /* n_params: per-layer raw gradient scratch */
    float *logp;  /* B x outputs: log-softmax or Gaussian mean */
    float *tmp_a; /* B x max_width: gradient wrt pre-activations */
    float *tmp_b; /* B x max_width: gradient wrt layer input */
    float *tmp_c; /* B x max_width: scratch (h*h, h*s_in) */
    float *col;   /* im2col rows of the widest convolution; NULL if none */
    struct svi_layer_ws layer[BNN_MAX_LAYERS];
    struct pool *pool; /* NULL: the per-parameter passes run on the caller */
    double *partial;   /* per-chunk sums of a pass (pass.c) */
};

/* Allocate the buffers and threads of cfg for model m into a zeroed ws; on
 * failure the caller frees ws with svi_ws_free. */
bnn_status svi_ws_alloc(struct svi_ws *ws, const struct bnn_model *m,
                        const bnn_svi_config *cfg);
void svi_ws_free(struct svi_ws *ws, const bnn_allocator *a);

/* ---- optimizer (optim.c) ---------------------------------------------- */

/* The optimizer's state and settings; its workspace is the SVI engine's. */
struct bnn_optimizer {
    bnn_guide *guide;
    bnn_optimizer_config ocfg;
    bnn_svi_config svi;
    uint64_t step;
    /* Adam first moment / SGD momentum buffer, 2 * n_params; IVON's
     * [momentum g | Hessian estimate h] */
    float *m;
    float *v; /* Adam second moment, 2 * n_params; NULL for IVON */
    /* The learned noise's own first and second moments (n_noise each; NULL
     * without): a point estimate, stepped by Adam (SGD: momentum in
     * noise_m) whatever the optimizer. */
    float *noise_m, *noise_v;
    float ivon_lam; /* bnn.h "IVON": lambda */
    struct svi_ws ws;
    /* The parameters in runs of one prior: consecutive weight layers with
     * equal resolved priors share a segment (a model without per-layer
     * priors has one).  Segment s covers [seg_end[s-1], seg_end[s]) of a
     * guide half and has the prior of weight layer seg_layer[s]. */
    size_t n_seg;
    size_t seg_end[BNN_MAX_LAYERS], seg_layer[BNN_MAX_LAYERS];
    float ivon_delta[BNN_MAX_LAYERS]; /* IVON's delta, per segment */
};

/* IVON's delta = kl_weight / (prior_sigma^2 lambda), computed the same way
 * by the optimizer and by the loader's check of a saved Hessian. */
float optim_ivon_delta(float kl_weight, float prior_sigma, float lam);
/* The same with the prior of the weight layer that holds parameter i of
 * a guide half of model m (its Normal prior's sigma). */
float optim_ivon_delta_at(const struct bnn_model *m, size_t i, float kl_weight, float lam);

/* bnn_optimizer_step for a gradient whose sum of squares grad_ss is known
 * (finite): bnn_svi_step computes it with the gradient. */
bnn_status optim_apply(bnn_optimizer *o, double grad_ss);
/* The IVON update of bnn_svi_step with the last particle's backward fused
 * into it (the gradient in ws.gw and ws.noise, bounded finite): the
 * gradient's sum of squares, summed as bnn_svi_grad sums it, into *ss. */
void optim_apply_ivon_fused(bnn_optimizer *o, double *ss);

/* Sum of squares of the learned noise's gradient (0 without). */
double optim_noise_grad_ss(const struct bnn_guide *g);

/* ---- misc --------------------------------------------------------------- */

/* 1 if all n values are finite (tensor.c). */
int tensor_all_finite(const float *x, size_t n);

#endif
