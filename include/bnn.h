/*
 * bnn.h - libbnn, Bayesian neural networks trained by stochastic variational
 * inference, with a Monte Carlo predictor that can refuse to answer.
 *
 * This header is the whole public API and its reference manual: if it is not
 * in this file, it is not part of the API.
 *
 * General contract
 * ----------------
 * - Every fallible function returns a bnn_status.  BNN_OK is 0.  On error a
 *   human-readable message is available from bnn_last_error() on the calling
 *   thread, and out-parameters are left untouched.  Every message starts
 *   with the name of the function that failed and a colon, e.g.
 *   "bnn_optimizer_create: bnn_svi_config.dataset_size is 0: ...".
 * - Handles are opaque.  Each *_free(NULL) is a no-op.
 * - Configuration structs start with `size_t struct_size`.  Fill them with the
 *   matching *_init() function and then change fields; the library reads only
 *   the fields covered by struct_size, so new fields can be appended in later
 *   versions without breaking existing binaries.
 * - Output structs the library fills (bnn_svi_stats, bnn_metrics,
 *   bnn_refusal_report, bnn_ood_report, and configs passed to a
 *   *_get_config call) start with `size_t struct_size` too: prepare them
 *   with their *_init() function (bnn_metrics_init(&m), ...; configs with
 *   their config's *_init).
 *   The library writes only the fields struct_size covers; each struct's
 *   documentation gives the smallest size accepted (BNN_E_INVALID below it).
 * - Output records written into caller arrays take an explicit record size
 *   (which is also the stride); the library writes only the fields that fit.
 * - Nothing in the library prints, aborts or exits.
 * - Threading: a model and a guide are read-only during prediction, so any
 *   number of threads may predict concurrently on the same model and guide.
 *   Training mutates the guide and optimizer: they belong to one thread at a
 *   time, and no prediction may run on that guide meanwhile.  The library
 *   starts threads only when asked: for an optimizer configured with
 *   num_threads > 1 (used inside that optimizer's calls, ended by
 *   bnn_optimizer_free), for one bnn_predict_with_uncertainty call
 *   whose config has num_threads > 1 (ended before it returns), and for a
 *   predictor handle created with num_threads > 1 (ended by
 *   bnn_predictor_free).
 * - Determinism: the same seed and inputs give bit-identical results for the
 *   same BLAS implementation and BLAS thread count (OpenBLAS rounds its
 *   products differently for different thread counts), whatever the
 *   batching of prediction inputs.  Prediction does not use the BLAS, so
 *   its results do not depend on the BLAS thread count either.
 */
#ifndef BNN_H
#define BNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BNN_BUILDING_LIBRARY) && defined(__GNUC__)
#define BNN_API __attribute__((visibility("default")))
#else
#define BNN_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

#define BNN_VERSION_MAJOR 0
#define BNN_VERSION_MINOR 1
#define BNN_VERSION_PATCH 0
#define BNN_VERSION_STRING "0.1.0"
/** MAJOR * 10000 + MINOR * 100 + PATCH. */
#define BNN_VERSION_NUMBER \
    (BNN_VERSION_MAJOR * 10000 + BNN_VERSION_MINOR * 100 + BNN_VERSION_PATCH)

/** Version number of the linked library (compare with BNN_VERSION_NUMBER). */
BNN_API unsigned bnn_version_number(void);
/** Version string of the linked library, static storage, e.g. "0.1.0". */
BNN_API const char *bnn_version_string(void);

/* ------------------------------------------------------------------------ */
/* Status codes (values are pinned; new codes are only ever appended)       */
/* ------------------------------------------------------------------------ */

typedef enum bnn_status {
    BNN_OK = 0,
    BNN_E_INVALID = 1,     /**< invalid argument (NULL, out of range, NaN) */
    BNN_E_NOMEM = 2,       /**< an allocation failed */
    BNN_E_SHAPE = 3,       /**< sizes do not match or overflow */
    BNN_E_IO = 4,          /**< a file could not be read or written */
    BNN_E_FORMAT = 5,      /**< data is corrupt or not a libbnn file */
    BNN_E_VERSION = 6,     /**< file format version not supported */
    BNN_E_NUMERIC = 7,     /**< a loss or gradient became NaN or infinite */
    BNN_E_STATE = 8,       /**< the call is not valid in the object's state */
    BNN_E_UNSUPPORTED = 9, /**< valid request this build/config cannot do */
    BNN_E_INTERNAL = 10    /**< a bug in libbnn */
} bnn_status;

/** Static, never-NULL name of a status ("BNN_OK", ...); unknown values give
 *  "BNN_E_UNKNOWN".  Thread-safe. */
BNN_API const char *bnn_status_string(bnn_status status);

/** Detail message of the last failing libbnn call on the calling thread
 *  (thread-local storage; valid until the next failing call on this thread).
 *  Returns "" if no call failed yet.  Never NULL. */
BNN_API const char *bnn_last_error(void);

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */
/* ------------------------------------------------------------------------ */

/** Optional user allocator.  alloc must return memory aligned for any type
 *  (like malloc) or NULL on failure; free accepts NULL.  Both may be called
 *  from any thread that uses objects created with this allocator. */
typedef struct bnn_allocator {
    void *(*alloc)(void *ctx, size_t size);
    void (*free)(void *ctx, void *ptr);
    void *ctx;
} bnn_allocator;

/* ------------------------------------------------------------------------ */
/* Model: architecture, prior, likelihood  ("model()" in Pyro)             */
/* ------------------------------------------------------------------------ */

typedef struct bnn_model bnn_model;

typedef enum bnn_activation {
    BNN_ACT_RELU = 0,
    BNN_ACT_TANH = 1,
    /** No activation (a linear layer); in bnn_layer_spec only. */
    BNN_ACT_IDENTITY = 2,
    /** The model config's activation; in bnn_layer_spec only (its default). */
    BNN_ACT_INHERIT = 3
} bnn_activation;

typedef enum bnn_likelihood {
    BNN_LIK_CATEGORICAL = 0, /**< int32 labels in [0, outputs) */
    BNN_LIK_GAUSSIAN = 1,    /**< float targets, N(y | f(x), noise_sigma^2) */
    /** Homoscedastic learned noise: N(y_k | f_k(x), sigma_k^2) with one
     *  sigma per output, learned with the weights and started at
     *  noise_sigma.  sigma_k = exp(s_k): the guide holds s = log sigma
     *  after [mu | rho] in bnn_guide_params (read it with
     *  bnn_guide_get_noise_sigma).  A point estimate (no prior) maximising
     *  the ELBO; log sigma because -log N(y | f, e^{2s}) has gradient 1 -
     *  r^2 e^{-2s} and constant Fisher information 2 in s, so a step means
     *  the same at every noise scale, where softplus's gradient vanishes
     *  for small sigma.  Every optimizer steps it with Adam (SGD: its own
     *  SGD step), see bnn_optimizer_create. */
    BNN_LIK_GAUSSIAN_LEARNED = 2,
    /** Heteroscedastic: the last layer has 2 D units for D outputs (its
     *  size must be even); unit k is the mean f_k(x) and unit D + k the
     *  log-variance g_k(x): N(y_k | f_k(x), exp(g_k(x))).  Targets are n x
     *  D; bnn_model_output_size is D.  noise_sigma is not used. */
    BNN_LIK_GAUSSIAN_HETERO = 3
} bnn_likelihood;

typedef enum bnn_prior {
    BNN_PRIOR_NORMAL = 0,       /**< N(0, prior_sigma^2) on every weight/bias */
    BNN_PRIOR_SCALE_MIXTURE = 1, /**< pi N(0,s1^2) + (1-pi) N(0,s2^2) */
    /** The model config's prior; in bnn_layer_spec only (its default). */
    BNN_PRIOR_INHERIT = 2
} bnn_prior;

/** What one entry of bnn_model_config.layers is.  A network is a sequence
 *  of convolution layers (each optionally followed by one pooling entry),
 *  then dense layers; the last entry is the dense output layer.
 *  Activations are NHWC (height, width, channels; channels vary fastest),
 *  so a host's row-major H x W x C image is the input as it is, a
 *  convolution is one GEMM of the im2col rows (one per output position,
 *  kernel_h x kernel_w x channels long) by the kernel, and flattening
 *  moves no data. */
typedef enum bnn_layer_kind {
    /** `units` outputs from the flattened input; weights units x inputs. */
    BNN_LAYER_DENSE = 0,
    /** 2-D convolution: `units` output channels, kernel_h x kernel_w,
     *  stride_h, stride_w, zero padding pad_h rows above and below and pad_w
     *  columns left and right.  Output height (H + 2 pad_h - kernel_h) /
     *  stride_h + 1 (rounded down), width likewise.  Weights are row-major
     *  units x (kernel_h x kernel_w x in_channels), i.e. [o][ky][kx][c]. */
    BNN_LAYER_CONV2D = 1,
    /** 2 x 2 max pooling, stride 2, after the previous convolution's
     *  activation; an odd last row or column is dropped (floor).  In
     *  training the gradient of each output goes to the first maximum of
     *  its window (row-major), the others get none. */
    BNN_LAYER_MAXPOOL2 = 2,
    /** 2 x 2 average pooling, stride 2; as BNN_LAYER_MAXPOOL2. */
    BNN_LAYER_AVGPOOL2 = 3,
    /** Marks the change from convolutions to dense layers; optional (NHWC
     *  flattening moves no data), accepted for readability. */
    BNN_LAYER_FLATTEN = 4
} bnn_layer_kind;

/** One layer of a network described as a sequence (bnn_model_config.layers).
 *  Size-versioned: set every entry up with bnn_layer_spec_init; the array's
 *  stride is its first entry's struct_size, which every entry must repeat.
 *  Fields a kind does not use are ignored. */
typedef struct bnn_layer_spec {
    size_t struct_size;
    bnn_layer_kind kind;       /**< default BNN_LAYER_DENSE */
    size_t units;              /**< dense outputs or conv output channels */
    size_t kernel_h, kernel_w; /**< conv kernel; default 3 x 3 */
    size_t stride_h, stride_w; /**< conv stride; default 1 */
    size_t pad_h, pad_w;       /**< conv zero padding per side, < kernel; default 0 */
    /** After this dense or conv layer (before a pooling entry); default
     *  BNN_ACT_INHERIT: the model's activation for hidden layers and none
     *  for the output layer, which takes only INHERIT or IDENTITY. */
    bnn_activation activation;
    /** This layer's prior on its weights and biases; default
     *  BNN_PRIOR_INHERIT (the model's).  The scales mean what the model
     *  config's fields of the same names mean and are read only when prior
     *  is not INHERIT.  Training uses each layer's prior: the KL term is
     *  the sum of every layer's KL against its own prior, and IVON's delta
     *  is per layer (see "IVON").  The analytic KL (BNN_KL_ANALYTIC) and
     *  IVON need the Normal prior on every layer, inherited or not;
     *  bnn_optimizer_create names the first layer that has the scale
     *  mixture. */
    bnn_prior prior;
    float prior_sigma;  /**< default 1 */
    float prior_pi;     /**< default 0.5 */
    float prior_sigma1; /**< default 1 */
    float prior_sigma2; /**< default exp(-6) */
} bnn_layer_spec;

/** Fill spec with defaults (a dense layer with 0 units, which the caller
 *  sets) and set struct_size.  NULL is ignored. */
BNN_API void bnn_layer_spec_init(bnn_layer_spec *spec);

/** Maximum number of layer sizes (input + hidden + output). */
#define BNN_MAX_LAYERS 16
/** Largest bnn_svi_config.num_threads. */
#define BNN_MAX_THREADS 256

typedef struct bnn_model_config {
    size_t struct_size;
    /** Number of entries in layer_sizes: input, hidden..., output (>= 2). */
    size_t n_sizes;
    /** e.g. {784, 1024, 10}.  Copied by bnn_model_create. */
    const size_t *layer_sizes;
    bnn_activation activation; /**< hidden layers; default ReLU */
    bnn_likelihood likelihood; /**< default categorical */
    /** Gaussian likelihood noise, > 0; default 1 (for
     *  BNN_LIK_GAUSSIAN_LEARNED the initial sigma of every output) */
    float noise_sigma;
    bnn_prior prior;           /**< default Normal; a layer spec may set its own */
    float prior_sigma;         /**< Normal prior scale, > 0; default 1 */
    float prior_pi;            /**< mixture weight in (0,1); default 0.5 */
    float prior_sigma1;        /**< mixture scale 1, > 0; default 1 */
    float prior_sigma2;        /**< mixture scale 2, > 0; default exp(-6) */
    /** Allocator for this model and every guide/optimizer/prediction
     *  workspace made from it; NULL means malloc/free.  The struct is copied;
     *  its ctx must outlive the model. */
    const bnn_allocator *allocator;
    /* ---- since 0.2: the network as a sequence of layers ---- */
    /** Number of entries in layers; 0 (the default) means the network is
     *  layer_sizes' dense MLP.  When > 0, layers and the input shape
     *  describe the network and n_sizes / layer_sizes are not read. */
    size_t n_layers;
    /** n_layers entries (see bnn_layer_spec); copied by bnn_model_create. */
    const bnn_layer_spec *layers;
    /** Input shape for layers: height, width, channels (NHWC; an input is
     *  height x width x channels floats).  For a dense-only network,
     *  1 x 1 x inputs. */
    size_t input_height, input_width, input_channels;
} bnn_model_config;

/** Fill cfg with defaults (no layer sizes: the caller must set n_sizes and
 *  layer_sizes).  Sets struct_size.  NULL is ignored. */
BNN_API void bnn_model_config_init(bnn_model_config *cfg);

/** Create a model.  On success *out owns a new model; free it with
 *  bnn_model_free after every guide made from it has been freed.
 *  With n_layers > 0 the network is the layer sequence: convolutions (each
 *  optionally followed by one pooling entry), an optional flatten, dense
 *  layers, ending with the dense output layer.  Every model can be saved
 *  and used for prediction; training refuses, with BNN_E_UNSUPPORTED, a
 *  network it does not handle (its errors say which).
 *  Errors: BNN_E_INVALID (NULL, struct_size too small, a layer entry's
 *  struct_size too small or unlike the first entry's, bad enum, an
 *  activation on the output layer, non-positive sigma, pi not in (0,1),
 *  fewer than 2 sizes, layers NULL with n_layers > 0, an allocator without
 *  alloc or free), BNN_E_SHAPE (a zero size, unit count, kernel, stride or
 *  input dimension; too many layers; padding not below the kernel; a
 *  kernel larger than its padded input; pooling not directly after a
 *  convolution or of an input under 2 x 2; a convolution after a dense or
 *  flatten entry; a last entry that is not dense; an odd last size for a
 *  heteroscedastic model; fewer than 2 classes for
 *  a categorical model; more classes than int32 labels can hold; sizes or a
 *  parameter count that overflow), BNN_E_NOMEM. */
BNN_API bnn_status bnn_model_create(const bnn_model_config *cfg,
                                    bnn_model **out);
/** Free a model.  NULL is a no-op. */
BNN_API void bnn_model_free(bnn_model *model);

/** Input width (first layer size; height x width x channels for a layer
 *  sequence); 0 for NULL. */
BNN_API size_t bnn_model_input_size(const bnn_model *model);
/** Output width (classes for categorical, targets for Gaussian: half the
 *  last layer's units for BNN_LIK_GAUSSIAN_HETERO); 0 for NULL. */
BNN_API size_t bnn_model_output_size(const bnn_model *model);
/** Number of weight layers (dense and convolution entries; n_sizes - 1 for
 *  layer_sizes); 0 for NULL. */
BNN_API size_t bnn_model_layer_count(const bnn_model *model);
/** The shape of weight layer `layer` (0-based): *in = layer_sizes[layer],
 *  *out = layer_sizes[layer + 1]; its weights are out x in (row-major) and
 *  it has out biases.  For a convolution *out is its output channels and
 *  *in kernel_h x kernel_w x input channels (the layout in
 *  BNN_LAYER_CONV2D).  Errors: BNN_E_INVALID (NULL model, in or out, layer
 *  out of range). */
BNN_API bnn_status bnn_model_layer_shape(const bnn_model *model, size_t layer,
                                         size_t *in, size_t *out);
/** Number of network parameters (weights + biases); 0 for NULL.  The guide
 *  holds two variational parameters (mu, rho) per network parameter. */
BNN_API size_t bnn_model_param_count(const bnn_model *model);
/** Copy the model's configuration into *cfg (fields covered by
 *  cfg->struct_size, which the caller sets).  layer_sizes points into the
 *  model and stays valid while it lives.  allocator is set to NULL.  For a
 *  model made from a layer sequence, n_layers and layers (also pointing
 *  into the model) give the sequence as configured, the input shape is
 *  set, and layer_sizes holds the flattened widths between weight layers
 *  (input, after each layer's activation and pooling, outputs); for a
 *  layer_sizes model n_layers is 0 and the input shape 1 x 1 x inputs.
 *  struct_size (bnn_model_config_init sets it) must cover at
 *  least n_sizes and layer_sizes.
 *  Errors: BNN_E_INVALID (NULL, struct_size not covering layer_sizes). */
BNN_API bnn_status bnn_model_get_config(const bnn_model *model,
                                        bnn_model_config *cfg);

/* ------------------------------------------------------------------------ */
/* Guide: mean-field Normal posterior q(w) = N(mu, softplus(rho)^2)         */
/* ------------------------------------------------------------------------ */

typedef struct bnn_guide bnn_guide;

typedef enum bnn_init {
    /** mu ~ N(0, g/fan_in) with g = 2 for ReLU (He) and 1 for tanh,
     *  sigma = init_sigma. */
    BNN_INIT_DEFAULT = 0,
    /** The original Pyro program: mu ~ N(0,1), rho ~ N(0,1). */
    BNN_INIT_PYRO = 1
} bnn_init;

typedef struct bnn_guide_config {
    size_t struct_size;
    bnn_init init;    /**< default BNN_INIT_DEFAULT */
    float init_sigma; /**< initial posterior sigma for DEFAULT; default 1e-3 */
    uint64_t seed;    /**< initialisation seed; default 1 */
} bnn_guide_config;

/** Fill cfg with defaults and set struct_size.  NULL is ignored. */
BNN_API void bnn_guide_config_init(bnn_guide_config *cfg);

/** Create a guide for a model.  cfg may be NULL (defaults).  The guide keeps
 *  a pointer to the model: the model must outlive the guide.
 *  Errors: BNN_E_INVALID, BNN_E_NOMEM. */
BNN_API bnn_status bnn_guide_create(const bnn_model *model,
                                    const bnn_guide_config *cfg,
                                    bnn_guide **out);
/** Free a guide.  NULL is a no-op. */
BNN_API void bnn_guide_free(bnn_guide *guide);
/** The model this guide belongs to; NULL for NULL. */
BNN_API const bnn_model *bnn_guide_model(const bnn_guide *guide);

/** Copy layer `layer` (0-based weight layer) out of the guide.  Weights are
 *  row-major out x in (out = layer_sizes[layer+1], in = layer_sizes[layer]),
 *  biases have `out` entries.  sigma = softplus(rho).  Any pointer may be
 *  NULL to skip it.  Errors: BNN_E_INVALID (NULL guide, layer out of range). */
BNN_API bnn_status bnn_guide_get_layer(const bnn_guide *guide, size_t layer,
                                       float *w_mu, float *w_sigma,
                                       float *b_mu, float *b_sigma);
/** Copy a layer into the guide (same layout as bnn_guide_get_layer); NULL
 *  pointers leave that part unchanged.  Every value must be finite and every
 *  sigma > 0 (BNN_E_INVALID otherwise; the guide is then unchanged).  Sigmas
 *  below ~1e-30 are stored as the smallest representable softplus. */
BNN_API bnn_status bnn_guide_set_layer(bnn_guide *guide, size_t layer,
                                       const float *w_mu, const float *w_sigma,
                                       const float *b_mu, const float *b_sigma);

/** bnn_guide_get_layer with the capacity (in floats) of the buffers:
 *  w_cap for each of w_mu and w_sigma, b_cap for each of b_mu and b_sigma.
 *  A capacity is checked only when one of its buffers is not NULL; larger
 *  buffers are fine (the first out x in, or out, elements are written).
 *  bnn_model_layer_shape gives the sizes.  Nothing is written on error.
 *  Errors: BNN_E_INVALID (NULL guide, layer out of range), BNN_E_SHAPE
 *  (w_cap below out x in, or b_cap below out, for a buffer passed). */
BNN_API bnn_status bnn_guide_get_layer_v2(const bnn_guide *guide, size_t layer,
                                          float *w_mu, float *w_sigma,
                                          size_t w_cap, float *b_mu,
                                          float *b_sigma, size_t b_cap);
/** bnn_guide_set_layer with the number of floats each buffer holds:
 *  w_count for each of w_mu and w_sigma, b_count for each of b_mu and
 *  b_sigma.  A count is checked only when one of its buffers is not NULL
 *  and must equal the layer's size exactly (out x in, or out): any other
 *  count means the data has another shape.  NULL buffers leave that part
 *  unchanged; the guide is unchanged on error.  Errors: BNN_E_INVALID (NULL
 *  guide, layer out of range, a value not finite, a sigma not > 0),
 *  BNN_E_SHAPE (a count other than the layer's size). */
BNN_API bnn_status bnn_guide_set_layer_v2(bnn_guide *guide, size_t layer,
                                          const float *w_mu,
                                          const float *w_sigma, size_t w_count,
                                          const float *b_mu,
                                          const float *b_sigma, size_t b_count);

/** How bnn_guide_set_layer_from_point chooses each sigma. */
typedef enum bnn_point_sigma {
    /** sigma = max(delta |w|, sigma_floor): MOPED (Krishnan et al. 2020;
     *  bayesian-torch's dnn_to_bnn with moped_enable); delta ~ 0.1. */
    BNN_POINT_MOPED = 0,
    /** sigma = max(delta, sigma_floor) for every parameter */
    BNN_POINT_CONSTANT = 1
} bnn_point_sigma;

/** Turn a trained deterministic layer into a Bayesian one: mu = w (out x
 *  in, row-major, as bnn_guide_get_layer) and mu = b for the biases, with
 *  each sigma chosen by `mode` from the parameter's own value.  The floor
 *  keeps sigma > 0 where w = 0 (MOPED) or delta = 0; e.g. 1e-6.  b may be
 *  NULL for a network without biases: they are then 0 with sigma as for a
 *  zero weight (b_count is not read).  w_count and b_count are the floats
 *  w and b hold and must equal out x in and out (bnn_model_layer_shape).
 *  Sigmas below ~1e-30 are stored as ~1e-30 (bnn_guide_set_layer), so with
 *  delta 0 and a floor of 1e-30 the guide predicts as the point network
 *  within float rounding.  Call it for every layer; an optimizer made
 *  afterwards starts from these values (IVON uses the means only: its sigma
 *  comes from its Hessian estimate).  The guide is unchanged on error.
 *  Errors: BNN_E_INVALID (NULL guide or w, layer out of range, unknown
 *  mode, delta NaN, infinite or negative, sigma_floor not finite and > 0, a
 *  w or b not finite, a sigma above the float range), BNN_E_SHAPE (w_count
 *  or, with b, b_count other than the layer's size). */
BNN_API bnn_status bnn_guide_set_layer_from_point(bnn_guide *guide,
                                                  size_t layer, const float *w,
                                                  size_t w_count,
                                                  const float *b,
                                                  size_t b_count,
                                                  bnn_point_sigma mode,
                                                  float delta,
                                                  float sigma_floor);

/** The flat variational parameter buffer [mu of all layers | rho of all
 *  layers]; within each half, layer by layer, weights (row-major out x in)
 *  then biases.  *count receives 2 * bnn_model_param_count(), plus, for a
 *  BNN_LIK_GAUSSIAN_LEARNED model, one log noise sigma per output after
 *  rho (2 P + D).  The pointer stays valid for the guide's lifetime;
 *  writes change the posterior.  NULL for a NULL guide (count
 *  untouched). */
BNN_API float *bnn_guide_params(bnn_guide *guide, size_t *count);
/** The flat gradient buffer, same layout as bnn_guide_params, filled by
 *  bnn_svi_grad (gradient of the negative ELBO; for an IVON optimizer the
 *  gradient and the Hessian estimate [ghat | hhat], see "IVON", and the
 *  learned noise's gradient of the batch's mean negative log-likelihood).
 *  A host may modify it (e.g. sum it across processes) before
 *  bnn_optimizer_step. */
BNN_API float *bnn_guide_grads(bnn_guide *guide, size_t *count);

/** The noise sigma of each of the D = bnn_model_output_size outputs into
 *  sigma[0..D): the learned sigma_k = exp(s_k) of a BNN_LIK_GAUSSIAN_LEARNED
 *  model, noise_sigma for every output of a BNN_LIK_GAUSSIAN one.  cap is
 *  the floats sigma holds (>= D).  Nothing is written on error.  Errors:
 *  BNN_E_INVALID (NULL guide or sigma), BNN_E_SHAPE (cap below D),
 *  BNN_E_UNSUPPORTED (a categorical model, or a heteroscedastic one, whose
 *  noise depends on the input: bnn_predict_regression_split gives it). */
BNN_API bnn_status bnn_guide_get_noise_sigma(const bnn_guide *guide,
                                             float *sigma, size_t cap);
/** Set the learned noise sigmas of a BNN_LIK_GAUSSIAN_LEARNED model (count
 *  = D values, each finite and > 0; stored as log sigma), e.g. to start
 *  from a known noise level.  An optimizer's moments of the noise are not
 *  reset.  The guide is unchanged on error.  Errors: BNN_E_INVALID (NULL
 *  guide or sigma, a value not finite and > 0), BNN_E_SHAPE (count other
 *  than D), BNN_E_UNSUPPORTED (another likelihood). */
BNN_API bnn_status bnn_guide_set_noise_sigma(bnn_guide *guide,
                                             const float *sigma, size_t count);

/* ------------------------------------------------------------------------ */
/* Optimizer and SVI  ("SVI(model, guide, optim, Trace_ELBO())")            */
/* ------------------------------------------------------------------------ */

typedef struct bnn_optimizer bnn_optimizer;

typedef enum bnn_optimizer_kind {
    BNN_OPT_ADAM = 0,
    BNN_OPT_SGD = 1, /**< with optional momentum */
    /** IVON, natural-gradient variational learning (Shen et al. 2024): see
     *  "IVON" below bnn_optimizer_create. */
    BNN_OPT_IVON = 2
} bnn_optimizer_kind;

typedef enum bnn_estimator {
    /** Local reparameterization (Kingma et al. 2015): noise on the
     *  pre-activations, independent per example.  Default.  Dense networks
     *  only: the positions of an image share a convolution's kernel, so
     *  their pre-activations are not independent, and bnn_optimizer_create
     *  refuses it for a network with a convolution (BNN_E_UNSUPPORTED). */
    BNN_EST_LOCAL_REPARAM = 0,
    /** One weight draw per step shared by the batch (Pyro random_module);
     *  for a convolution, one kernel draw per step and particle. */
    BNN_EST_WEIGHT_SAMPLING = 1,
    /** Flipout (Wen et al. 2018): one draw, decorrelated by random signs.
     *  A convolution's signs are per example and channel (input and
     *  output), the same at every position: each example sees one whole
     *  kernel mu + delta o (s_out s_in^T), as in TensorFlow Probability's
     *  Convolution2DFlipout. */
    BNN_EST_FLIPOUT = 2
} bnn_estimator;

typedef enum bnn_kl_mode {
    /** Closed-form KL(q || p); Normal prior only.  Default. */
    BNN_KL_ANALYTIC = 0,
    /** log q(w) - log p(w) at sampled weights, as Pyro's Trace_ELBO does.
     *  Required for the scale-mixture prior. */
    BNN_KL_MONTE_CARLO = 1
} bnn_kl_mode;

typedef struct bnn_optimizer_config {
    size_t struct_size;
    bnn_optimizer_kind kind; /**< default Adam */
    float lr;                /**< > 0; default 1e-3 */
    float beta1;             /**< Adam, [0,1); default 0.9 */
    float beta2;             /**< Adam, [0,1); default 0.999 */
    float eps;               /**< Adam, > 0; default 1e-8 */
    float momentum;          /**< SGD, [0,1); default 0 */
    float clip_norm;         /**< clip the global gradient norm; 0 = off */
    /* IVON's settings (read for BNN_OPT_IVON only; lr and beta1 are shared). */
    /** Decay of the Hessian estimate, [0,1); default 0.99.  The paper's
     *  0.99999 suits runs of 10^5 steps and more: in a few thousand the
     *  estimate hardly leaves ivon_hess_init. */
    float ivon_beta2;
    /** Initial Hessian estimate h0, finite and > 0; default 0.1.  Sets the
     *  first posterior sigma = 1 / sqrt(lambda (h0 + delta)) and the step
     *  scale: lr (h0 + delta) multiplies each update. */
    float ivon_hess_init;
    /** Effective sample size lambda, finite and >= 0; 0 (default) means
     *  bnn_svi_config.dataset_size.  lambda > N tempers the posterior (a
     *  likelihood raised to lambda / N, the prior unchanged). */
    float ivon_ess;
    /** Clip each coordinate of the update direction to [-r, r]; 0 (default)
     *  is off. */
    float ivon_clip_radius;
} bnn_optimizer_config;

/** Fill cfg with defaults (Adam, lr 1e-3; IVON's fields as documented) and
 *  set struct_size.  NULL is ignored. */
BNN_API void bnn_optimizer_config_init(bnn_optimizer_config *cfg);

typedef struct bnn_svi_config {
    size_t struct_size;
    /** N, the number of examples in the data set (>= 1; no default: 0 from
     *  bnn_svi_config_init is refused).  Each minibatch of size B adds
     *  kl_weight * KL * B / N, so a full pass sums to one ELBO. */
    size_t dataset_size;
    float kl_weight;         /**< >= 0; default 1 */
    bnn_estimator estimator; /**< default local reparameterization */
    bnn_kl_mode kl_mode;     /**< default analytic */
    size_t num_particles;    /**< MC particles per step, [1, 256]; default 1 */
    size_t max_batch;        /**< largest batch to be passed; default 128 */
    uint64_t seed;           /**< noise seed; default 1 */
    /** Threads for the per-parameter passes of a step (drawing the network
     *  and the KL term, finishing the gradient, the optimizer's update),
     *  counting the calling thread: 0 or 1 starts none; at most 256.  The
     *  products keep the BLAS's own threads, which the host sets; the BLAS
     *  thread count is a good value here.  Results are the same bits for
     *  any value.  Not saved by bnn_save (a property of the host, not of
     *  the training): see bnn_optimizer_set_threads.  After fork() the
     *  child has none of the threads, so it must neither use nor free an
     *  optimizer with num_threads > 1 created before the fork (save it in
     *  the parent, load it in the child).  Default 1. */
    size_t num_threads;
} bnn_svi_config;

/** Fill cfg with defaults and set struct_size; the caller must then set
 *  dataset_size (left 0, which bnn_optimizer_create refuses: a default of
 *  1 would apply the whole KL on every batch).  NULL is ignored. */
BNN_API void bnn_svi_config_init(bnn_svi_config *cfg);

/** Create an optimizer bound to `guide`, with its training workspace sized
 *  for svi->max_batch (allocated once: steady-state steps do not allocate)
 *  and svi->num_threads - 1 worker threads (started here, idle between
 *  calls; their stacks are the system's, not the model's allocator's).
 *  ocfg may be NULL for defaults; svi may not, and svi->dataset_size must
 *  be set (it has no default).  The guide (and its model) must outlive the
 *  optimizer.  A guide has at most one optimizer at a time (it owns the
 *  guide's gradient buffer); free it before creating another.  Errors:
 *  BNN_E_STATE (the guide already has an optimizer), BNN_E_INVALID (NULL
 *  guide, svi or out, dataset_size 0, bad values, analytic KL with the
 *  scale-mixture prior on any layer (the model's or a layer's own),
 *  num_threads above BNN_MAX_THREADS; for IVON, kl_weight 0 or clip_norm
 *  set), BNN_E_UNSUPPORTED (IVON with another estimator than weight
 *  sampling or with the scale-mixture prior on any layer; local
 *  reparameterization for a network with a convolution), BNN_E_SHAPE
 *  (max_batch so large that the workspace size overflows, or that a
 *  convolution's im2col matrix, max_batch x out_h x out_w rows, exceeds
 *  INT_MAX rows for CBLAS), BNN_E_NOMEM
 *  (also when the system refuses a thread). */
BNN_API bnn_status bnn_optimizer_create(bnn_guide *guide,
                                        const bnn_optimizer_config *ocfg,
                                        const bnn_svi_config *svi,
                                        bnn_optimizer **out);
/* Learned noise (BNN_LIK_GAUSSIAN_LEARNED): every optimizer keeps its own
 * moments of the D log-sigmas (saved with its state) and steps them as a
 * point estimate: SGD (and its momentum) with lr for BNN_OPT_SGD, Adam
 * with lr, beta1, beta2 and eps otherwise, IVON included (IVON's Hessian
 * estimate and posterior are the weights'; the noise has neither, and an
 * Adam step, about lr in log sigma, means the same at every noise scale;
 * for IVON too it reads beta2, default 0.999, not ivon_beta2).  clip_norm
 * counts the noise's gradient in the norm and scales it too. */

/* IVON (BNN_OPT_IVON).  A Gaussian posterior N(mu, sigma^2) per parameter
 * with sigma = 1 / sqrt(lambda (h + delta)): lambda = ivon_ess (or N =
 * dataset_size), delta = kl_weight / (prior_sigma^2 lambda), so that
 * lambda delta is the (weighted) prior precision; prior_sigma is that of
 * the parameter's layer (bnn_layer_spec.prior_sigma, or the model's), so
 * delta and the step scale below are per layer.  The optimizer keeps a
 * momentum g and a Hessian estimate h per parameter; mu is the guide's.  A
 * step draws, for each of num_particles particles, w = mu + sigma eps and
 * takes ghat = the gradient at w of the batch's mean negative
 * log-likelihood and hhat = ghat eps / sigma (Price's theorem), both
 * averaged over the particles; then, with b1 = beta1, b2 = ivon_beta2:
 *   g  = b1 g + (1 - b1) ghat
 *   h  = b2 h + (1 - b2) hhat + (1 - b2)^2 (h - hhat)^2 / (2 (h + delta))
 *   mu = mu - lr (h0 + delta) clip((g / (1 - b1^t) + delta mu) / (h + delta))
 * (h + delta stays positive).  After every step the guide's rho is
 * softplus^-1(sigma): the guide IS the posterior, so predictors, bnn_save
 * and bnn_guide_get_layer need not know how it was trained.  The guide's
 * rho before the first step is not used (sigma starts from h0).
 * Useful learning rates are about 0.05 to 0.5 (the first update is lr
 * times the gradient, as for SGD), usually decayed (bnn_lr_schedule).
 *
 * Requirements: BNN_EST_WEIGHT_SAMPLING and the Normal prior on every
 * layer (else BNN_E_UNSUPPORTED: the estimator's weight draw is what
 * Price's theorem needs, and the prior's precision is IVON's weight
 * decay), kl_weight > 0 and clip_norm = 0 (else BNN_E_INVALID).  kl_mode
 * is not used: the prior enters exactly, through delta.
 *
 * The gradient buffer (bnn_guide_grads) holds [ghat | hhat] instead of
 * [dLoss/dmu | dLoss/drho].  bnn_svi_grad_part fills each part's share
 * (examples weighted 1 / total; all processes draw the same w from the
 * shared seed and step), so data-parallel training sums the whole buffer
 * across processes, as for Adam, then calls bnn_optimizer_step.
 * bnn_svi_stats reports the usual negative ELBO (with the analytic KL of
 * the posterior the step started from); grad_norm is the norm of the
 * buffer.  State per parameter: g and h (Adam keeps four moments).
 * bnn_svi_step computes ghat and hhat within the update (the same bits as
 * bnn_svi_grad + bnn_optimizer_step) and may leave the buffer unwritten:
 * after it the buffer's contents are unspecified. */

/** Free an optimizer and its workspace, and end its threads (waits for
 *  them); free it before its guide.  NULL is a no-op. */
BNN_API void bnn_optimizer_free(bnn_optimizer *opt);
/** Change the learning rate between steps.  Errors: BNN_E_INVALID (NULL,
 *  lr not finite and > 0). */
BNN_API bnn_status bnn_optimizer_set_lr(bnn_optimizer *opt, float lr);
/** Change the KL weight (bnn_svi_config.kl_weight) between steps, e.g. for
 *  a KL warm-up: the next bnn_svi_grad or bnn_svi_step uses it, exactly as
 *  an optimizer created with it would (loss = nll + kl_weight * KL * n /
 *  N); bnn_optimizer_get_config and bnn_save report it.  Call it before
 *  bnn_svi_grad, not between bnn_svi_grad and bnn_optimizer_step: the
 *  gradient buffer keeps the weight it was computed with.  For IVON the
 *  weight scales the prior precision: delta = kl_weight / (prior_sigma^2
 *  lambda), each layer's with its own prior_sigma (see "IVON"), so the
 *  posterior sigma, the prior's pull in the update and the step scale
 *  lr (h0 + delta) follow it from the next step;
 *  0 is refused as bnn_optimizer_create refuses it.  The optimizer is
 *  unchanged on error.  Errors: BNN_E_INVALID (NULL optimizer, kl_weight
 *  NaN, infinite or negative; 0 for IVON), BNN_E_STATE (IVON: a Hessian
 *  estimate h with h + delta <= 0 for the new, smaller delta, which would
 *  make the posterior improper; h goes below 0 only where the loss is
 *  locally concave). */
BNN_API bnn_status bnn_optimizer_set_kl_weight(bnn_optimizer *opt,
                                               float kl_weight);
/** The optimizer's current KL weight into *kl_weight.  Errors:
 *  BNN_E_INVALID (NULL optimizer or kl_weight). */
BNN_API bnn_status bnn_optimizer_get_kl_weight(const bnn_optimizer *opt,
                                               float *kl_weight);
/** Change the number of threads for the per-parameter passes (see
 *  bnn_svi_config.num_threads), e.g. after bnn_load, which creates
 *  optimizers with one.  Not while another call uses the optimizer.
 *  Errors: BNN_E_INVALID (NULL, above BNN_MAX_THREADS), BNN_E_NOMEM (the
 *  threads could not be started; the optimizer keeps its former ones). */
BNN_API bnn_status bnn_optimizer_set_threads(bnn_optimizer *opt,
                                             size_t num_threads);
/** Number of optimizer steps taken so far (also the noise counter); 0 for
 *  NULL (no status: a NULL optimizer has taken no step). */
BNN_API uint64_t bnn_optimizer_step_count(const bnn_optimizer *opt);

typedef enum bnn_lr_decay {
    BNN_LR_CONSTANT = 0, /**< lr0 throughout */
    BNN_LR_LINEAR = 1,   /**< lr0 + (lr_end - lr0) step / total */
    /** lr_end + (lr0 - lr_end) (1 + cos(pi step / total)) / 2 */
    BNN_LR_COSINE = 2
} bnn_lr_decay;

/** The learning rate of a decay schedule at `step` of `total` into *lr,
 *  for bnn_optimizer_set_lr before each step (linear and cosine reach
 *  lr_end at total and stay there).  A pure function; any thread.  Errors: BNN_E_INVALID (NULL lr, unknown kind, lr0 or lr_end not
 *  finite and > 0, total 0). */
BNN_API bnn_status bnn_lr_schedule(bnn_lr_decay kind, float lr0, float lr_end,
                                   uint64_t step, uint64_t total, float *lr);

/** Per-step figures.  loss = nll + kl_term.  Prepare with
 *  bnn_svi_stats_init; struct_size must cover at least loss and nll
 *  (offsetof(bnn_svi_stats, kl)). */
typedef struct bnn_svi_stats {
    size_t struct_size;
    double loss;      /**< negative ELBO of the batch (averaged particles) */
    double nll;       /**< sum over the batch of -log p(y | x, w) */
    double kl;        /**< full KL(q || p) (or its MC estimate) */
    double kl_term;   /**< kl_weight * kl * batch / N, the part in loss */
    double grad_norm; /**< L2 norm of the gradient before clipping */
} bnn_svi_stats;

/** Zero *stats and set its struct_size.  NULL is ignored. */
BNN_API void bnn_svi_stats_init(bnn_svi_stats *stats);

/** Compute the negative ELBO of one minibatch and its gradient into the
 *  guide's gradient buffer (overwritten).  x is n x inputs row-major; for a
 *  categorical model `labels` holds n int32 classes and `targets` must be
 *  NULL; for a Gaussian model `targets` holds n x outputs floats
 *  (bnn_model_output_size) and `labels` must be NULL.  A learned noise
 *  (BNN_LIK_GAUSSIAN_LEARNED) has no prior: its gradient is that of the
 *  negative log-likelihood only.  1 <= n <= max_batch.  stats may be NULL; if not,
 *  its struct_size must be set.  The parameters are not changed.
 *  Errors: BNN_E_INVALID (NULL, NaN/Inf input, label out of range, labels
 *  and targets not as the likelihood needs, stats->struct_size below
 *  offsetof(bnn_svi_stats, kl)), BNN_E_SHAPE (n 0 or above max_batch,
 *  n x inputs overflows), BNN_E_NUMERIC (non-finite loss or gradient). */
BNN_API bnn_status bnn_svi_grad(bnn_optimizer *opt, const float *x,
                                const int32_t *labels, const float *targets,
                                size_t n, bnn_svi_stats *stats);

/** Like bnn_svi_grad for the part [offset, offset + n) of a global batch of
 *  `total` examples that is split across processes.  The noise for each
 *  example is keyed by its global index and the step, and the KL share is
 *  kl_weight * KL * n / N, so summing the gradients of all parts gives
 *  exactly the gradient of the whole batch (up to summation order).
 *  Errors: as bnn_svi_grad, and BNN_E_SHAPE if offset + n > total. */
BNN_API bnn_status bnn_svi_grad_part(bnn_optimizer *opt, const float *x,
                                     const int32_t *labels,
                                     const float *targets, size_t n,
                                     size_t offset, size_t total,
                                     bnn_svi_stats *stats);

/** Apply the gradient buffer to the parameters (clipping if configured) and
 *  advance the step counter.  Errors: BNN_E_INVALID (NULL),
 *  BNN_E_NUMERIC if the gradient holds a NaN/Inf (parameters untouched,
 *  step not advanced).  A finite gradient with an extreme learning rate
 *  (SGD) can still overflow parameters; the next bnn_svi_grad then reports
 *  BNN_E_NUMERIC, the predictors refuse such a guide with BNN_E_NUMERIC and
 *  bnn_save with BNN_E_INVALID. */
BNN_API bnn_status bnn_optimizer_step(bnn_optimizer *opt);

/** bnn_svi_grad then bnn_optimizer_step.  Errors: those of bnn_svi_grad
 *  (BNN_E_INVALID, BNN_E_SHAPE, BNN_E_NUMERIC) and of bnn_optimizer_step;
 *  on any error the parameters, the optimizer state and the step counter
 *  are untouched. */
BNN_API bnn_status bnn_svi_step(bnn_optimizer *opt, const float *x,
                                const int32_t *labels, const float *targets,
                                size_t n, bnn_svi_stats *stats);

/** Current configuration of an optimizer.  Either pointer may be NULL;
 *  each struct's struct_size must be set by the caller (its *_init),
 *  and only the fields it covers are written: at least kind and lr for
 *  ocfg (offsetof(bnn_optimizer_config, beta1)), dataset_size to max_batch
 *  for svi (offsetof(bnn_svi_config, seed)), as bnn_optimizer_create
 *  reads.  Errors: BNN_E_INVALID (NULL optimizer, a struct_size below
 *  those); nothing is written then. */
BNN_API bnn_status bnn_optimizer_get_config(const bnn_optimizer *opt,
                                            bnn_optimizer_config *ocfg,
                                            bnn_svi_config *svi);

/* ------------------------------------------------------------------------ */
/* Prediction                                                               */
/* ------------------------------------------------------------------------ */

/* Sampling (bnn_sampling, set in bnn_predict_config): every predictor
 * draws num_samples predictive samples per input.
 * - BNN_SAMPLING_MARGINAL (default): exact per-input samples at the cost of
 *   about one forward pass.  For a dense layer with input h, a mean-field
 *   Gaussian posterior makes the pre-activations exactly
 *   N(h.mu + b_mu, h^2.sigma^2 + b_sigma^2), independent across units
 *   (local reparameterization); they are drawn layer by layer: the first
 *   layer takes two products per input for all samples, later layers take
 *   the S sampled activations as rows.  The noise of sample s, layer l,
 *   unit j is a pure function of (seed, s, l, j), the same for every input.
 *   Every per-input figure (mean probabilities, entropies, mutual
 *   information, medians, quantiles, refusals) has exactly the
 *   distribution it has with whole networks; only the joint law of
 *   different inputs differs (two inputs' samples are not computed by one
 *   network).  Every layer is sampled this way (drawing a later layer's
 *   weights instead would pay only for large blocks of inputs, and the
 *   choice may not depend on the batch).  A network with convolutions is
 *   sampled as whole networks (exactly as BNN_SAMPLING_NETWORKS): a kernel
 *   is shared by every position of an image, so a convolution's outputs
 *   are not independent given its input and this rule would not be exact.
 * - BNN_SAMPLING_NETWORKS: sample s is one whole network drawn on the
 *   stream (seed, s) and shared by all inputs (the original program's
 *   semantics); it costs one network draw (a normal per weight) and one
 *   forward pass per sample, so S times the marginal mode's work or more.
 * - BNN_SAMPLING_MEAN: the network of posterior means, once: the fastest
 *   answer, but it has no epistemic part (mutual information 0, every
 *   sample equal, medians equal to the mean), so refusal rules see only
 *   the aleatoric uncertainty.
 * In every mode an input's results are a pure function of (seed, the
 * input, the sample index): they do not depend on n, batching, chunking,
 * threads, or on whether a predictor handle or a one-shot call ran them.
 * The one-shot functions below use the defaults of bnn_predict_config_init
 * with their num_samples and seed (so MARGINAL, one thread); a predictor
 * handle takes any configuration.  Workspace: one-shot calls make a
 * predictor for the call; its size is bounded independently of n.  Inputs
 * go through in chunks sized so that their samples (num_samples x classes
 * floats per input) and one thread's forward buffers fit in 16 MiB (at
 * least one panel of 16 inputs); each further thread adds its forward
 * buffers.  MARGINAL adds 4 bytes per parameter (sigma^2), the noise
 * (num_samples x units floats, kept when within 16 MiB), 5 MiB of row
 * blocks per thread and, for predictors of max_batch <= 64, layer 0
 * transposed (8 bytes per weight); NETWORKS one sampled network per
 * thread. */

/** Mean predictive class probabilities over num_samples samples: probs is
 *  n x classes, written only on success.  Thread-safe on a shared guide.
 *  Errors: BNN_E_INVALID (NULL, n 0, num_samples 0 or above 2^40, NaN/Inf
 *  in x), BNN_E_NUMERIC (the guide's parameters hold NaN or Inf, e.g. after a
 *  diverged training run), BNN_E_SHAPE (n x width overflows),
 *  BNN_E_UNSUPPORTED (Gaussian model), BNN_E_NOMEM. */
BNN_API bnn_status bnn_predict(const bnn_guide *guide, const float *x,
                               size_t n, size_t num_samples, uint64_t seed,
                               float *probs);

/** Gaussian models: predictive mean (n x outputs) and variance (n x
 *  outputs, epistemic variance of the sampled outputs + the noise
 *  variance: noise_sigma^2, the learned sigma_k^2, or the heteroscedastic
 *  mean of exp(log-variance); bnn_predict_regression_split gives the two
 *  parts apart).
 *  var may be NULL.  Errors: BNN_E_INVALID (NULL guide, x or mean, n 0,
 *  num_samples 0 or above 2^40, NaN/Inf in x), BNN_E_NUMERIC (non-finite
 *  guide parameters), BNN_E_SHAPE (n x width overflows),
 *  BNN_E_UNSUPPORTED (categorical model), BNN_E_NOMEM. */
BNN_API bnn_status bnn_predict_regression(const bnn_guide *guide,
                                          const float *x, size_t n,
                                          size_t num_samples, uint64_t seed,
                                          float *mean, float *var);

/** Raw per-sample log-probabilities: logp is num_samples x n x classes
 *  (sample-major).  Errors: BNN_E_INVALID (NULL guide, x or logp, n 0,
 *  num_samples 0 or above 2^40, NaN/Inf in x), BNN_E_NUMERIC (non-finite
 *  guide parameters), BNN_E_SHAPE (n x width or num_samples x n x classes
 *  overflows), BNN_E_UNSUPPORTED (Gaussian model), BNN_E_NOMEM. */
BNN_API bnn_status bnn_predict_samples(const bnn_guide *guide, const float *x,
                                       size_t n, size_t num_samples,
                                       uint64_t seed, float *logp);

typedef enum bnn_refusal_rule {
    BNN_REFUSE_NONE = 0,       /**< never refuse */
    /** Original program: accept when some class's median sampled probability
     *  is > threshold; the answer is the class with the highest median. */
    BNN_REFUSE_MEDIAN = 1,
    BNN_REFUSE_MAX_PROB = 2,   /**< refuse when max mean probability < t */
    BNN_REFUSE_ENTROPY = 3,    /**< refuse when predictive entropy > t */
    BNN_REFUSE_MUTUAL_INFO = 4 /**< refuse when mutual information > t */
} bnn_refusal_rule;

/** How predictive samples are drawn; see "Sampling" above. */
typedef enum bnn_sampling {
    BNN_SAMPLING_MARGINAL = 0, /**< per-input pre-activation sampling */
    BNN_SAMPLING_NETWORKS = 1, /**< whole networks shared by all inputs */
    BNN_SAMPLING_MEAN = 2      /**< posterior means only, no sampling */
} bnn_sampling;

typedef struct bnn_predict_config {
    size_t struct_size;
    size_t num_samples;    /**< 1 to 2^40; default 100 */
    uint64_t seed;         /**< default 1 */
    bnn_refusal_rule rule; /**< default BNN_REFUSE_MEDIAN */
    /** default 0.2; must be in [0,1] for MEDIAN/MAX_PROB and >= 0 (finite)
     *  for ENTROPY/MUTUAL_INFO (nats). */
    float threshold;
    size_t n_quantiles;      /**< extra quantiles per class; default 0 */
    /** The LEVELS: n_quantiles values in [0,1].  (The prediction calls'
     *  own `quantiles` argument is the output buffer for the values at
     *  these levels; passing one while n_quantiles is 0 is an error.) */
    const float *quantiles;
    /** Optional output, not a setting: when not NULL, receives n x classes
     *  mean predictive probabilities over the same samples, bit-identical
     *  to bnn_predictor_probs with this configuration (and to bnn_predict
     *  for the default mode), one pass instead of two.  Ignored by
     *  bnn_predictor_create.  Default NULL. */
    float *mean_probs;
    /** Threads, counting the calling one (0 or 1: none started; at most
     *  BNN_MAX_THREADS): each chunk of inputs is shared out among them (by
     *  sample for NETWORKS, else by input, or by sample when a chunk has
     *  fewer inputs than threads), then the inputs' results.  Started and
     *  ended by the call (bnn_predict_with_uncertainty) or owned by a
     *  predictor handle; each holds its own buffers, so the workspace grows
     *  by that much per thread.  Results are the same bits for any value.
     *  Default 1. */
    size_t num_threads;
    /** How samples are drawn (see "Sampling" above).  Default
     *  BNN_SAMPLING_MARGINAL; callers whose struct_size ends before this
     *  field get that default too. */
    bnn_sampling sampling;
} bnn_predict_config;

/** Fill cfg with defaults (100 samples, median rule, t = 0.2) and set
 *  struct_size.  NULL is ignored. */
BNN_API void bnn_predict_config_init(bnn_predict_config *cfg);

/** One answer.  Entropies are in nats. */
typedef struct bnn_prediction {
    int32_t label;     /**< answer: argmax median (MEDIAN rule) or argmax
                            mean probability (every other rule) */
    int32_t refused;   /**< 1 if the rule refuses this input, else 0 */
    float prob;        /**< mean predictive probability of label */
    float entropy;     /**< H[mean p], total predictive uncertainty */
    float expected_entropy; /**< E_s H[p_s], aleatoric part */
    float mutual_info; /**< entropy - expected_entropy (>= 0), epistemic */
    float max_median;  /**< highest per-class median sampled probability */
    int32_t mean_label; /**< argmax of the mean probabilities */
} bnn_prediction;

/** Predict with uncertainty for n inputs.  cfg may be NULL for the
 *  defaults.  out receives n records of record_size bytes each (the stride;
 *  at least offsetof(bnn_prediction, prob), i.e. label and refused; only
 *  the fields that fit entirely are written; pass sizeof(bnn_prediction)).  Optional outputs (may be NULL): medians, n x
 *  classes per-class median sampled probabilities; quantiles, n x classes x
 *  n_quantiles.  Medians are exact (the mean of the two middle samples for
 *  even S).  Ties in argmax go to the lowest class index.
 *  Errors: BNN_E_INVALID (NULL guide, x or out, n 0, cfg->struct_size
 *  below num_samples, num_samples 0 or above 2^40, an unknown rule or a
 *  threshold outside its rule's range, n_quantiles > 0 with NULL levels or
 *  a level outside [0, 1], a quantiles output with n_quantiles 0,
 *  record_size below label and refused, NaN/Inf in
 *  x, num_threads above BNN_MAX_THREADS), BNN_E_NUMERIC (non-finite guide
 *  parameters), BNN_E_SHAPE (n x record_size or the quantile output
 *  overflows), BNN_E_UNSUPPORTED (Gaussian model: use
 *  bnn_predict_regression_split and bnn_regression_refusal_apply),
 *  BNN_E_NOMEM. */
BNN_API bnn_status bnn_predict_with_uncertainty(const bnn_guide *guide,
                                                const bnn_predict_config *cfg,
                                                const float *x, size_t n,
                                                bnn_prediction *out,
                                                size_t record_size,
                                                float *medians,
                                                float *quantiles);

/** A reusable predictor, in the style of a compression context: it owns
 *  its workspace and threads, made once by bnn_predictor_create, so a run
 *  allocates nothing.  Its results are bit-identical to the one-shot
 *  functions' with the same configuration.  A predictor belongs to one
 *  thread at a time; several predictors may share a guide.  It reads the
 *  guide's parameters at creation and at bnn_predictor_refresh (their
 *  finiteness, and sigma^2 for MARGINAL); whole networks and means are read
 *  at each run.  The guide and model must outlive it, and after the
 *  guide changes (training, bnn_guide_set_layer, writes through
 *  bnn_guide_params) call bnn_predictor_refresh before the next run. */
typedef struct bnn_predictor bnn_predictor;

/** Create a predictor for guide with cfg (NULL: the defaults; the
 *  quantile levels are copied, cfg->mean_probs is ignored: runs take it as
 *  an argument).  max_batch (>= 1) is the largest n a run is expected to
 *  get: buffers are sized for min(max_batch, what fits in the workspace
 *  budget) inputs per chunk; larger n still works, in more chunks.
 *  Errors: BNN_E_INVALID (NULL guide or out, max_batch 0, any invalid cfg
 *  field as bnn_predict_with_uncertainty reports it, unknown sampling
 *  mode), BNN_E_NUMERIC (the guide's parameters hold NaN or Inf),
 *  BNN_E_SHAPE (num_samples x classes overflows), BNN_E_NOMEM (also when
 *  the system refuses a thread). */
BNN_API bnn_status bnn_predictor_create(const bnn_guide *guide,
                                        const bnn_predict_config *cfg,
                                        size_t max_batch,
                                        bnn_predictor **out);

/** Re-read the guide's parameters after they changed.  Errors:
 *  BNN_E_INVALID (NULL), BNN_E_NUMERIC (non-finite parameters: runs then
 *  give unspecified numbers until a successful refresh). */
BNN_API bnn_status bnn_predictor_refresh(bnn_predictor *p);

/** Ends the predictor's threads and frees it.  NULL is a no-op. */
BNN_API void bnn_predictor_free(bnn_predictor *p);

/** bnn_predict_with_uncertainty with the predictor's configuration:
 *  records, and optionally medians, quantiles (n x classes x n_quantiles)
 *  and mean_probs (n x classes), each may be NULL.  Errors: BNN_E_INVALID
 *  (NULL p, x or out, n 0, record_size below offsetof(bnn_prediction,
 *  prob), a quantiles output while n_quantiles is 0, NaN/Inf in x), BNN_E_SHAPE (n x width, n x record_size or
 *  n x classes x n_quantiles overflows), BNN_E_UNSUPPORTED (Gaussian
 *  model).  Outputs untouched on error. */
BNN_API bnn_status bnn_predictor_run(bnn_predictor *p, const float *x,
                                     size_t n, bnn_prediction *out,
                                     size_t record_size, float *medians,
                                     float *quantiles, float *mean_probs);

/** bnn_predict with the predictor's configuration (probs: n x classes).
 *  Errors: BNN_E_INVALID (NULL, n 0, NaN/Inf in x), BNN_E_SHAPE,
 *  BNN_E_UNSUPPORTED (Gaussian model). */
BNN_API bnn_status bnn_predictor_probs(bnn_predictor *p, const float *x,
                                       size_t n, float *probs);

/** bnn_predict_samples with the predictor's configuration (logp:
 *  num_samples x n x classes; MEAN repeats its one sample).  Errors:
 *  BNN_E_INVALID (NULL p, x or logp, n 0, NaN/Inf in x), BNN_E_SHAPE (n x
 *  width or num_samples x n x classes overflows), BNN_E_UNSUPPORTED
 *  (Gaussian model). */
BNN_API bnn_status bnn_predictor_samples(bnn_predictor *p, const float *x,
                                         size_t n, float *logp);

/** bnn_predict_regression with the predictor's configuration (var may be
 *  NULL).  Errors: BNN_E_INVALID (NULL p, x or mean, n 0, NaN/Inf in x),
 *  BNN_E_SHAPE (n x width overflows), BNN_E_UNSUPPORTED (categorical
 *  model). */
BNN_API bnn_status bnn_predictor_regression(bnn_predictor *p, const float *x,
                                            size_t n, float *mean,
                                            float *var);

/* Regression: aleatoric and epistemic uncertainty.  For input x and output
 * k, with S predictive samples s (network draws, see "Sampling"):
 *   mean      = mean_s f_k(x; w_s)
 *   epistemic = mean_s (f_k(x; w_s) - mean)^2   (spread of the network)
 *   aleatoric = noise_sigma^2 (BNN_LIK_GAUSSIAN), sigma_k^2 (LEARNED), or
 *               mean_s exp(g_k(x; w_s)) (HETERO: the sampled log-variance)
 *   variance  = aleatoric + epistemic, the predictive variance, as
 *               bnn_predict_regression's var.
 * A refusal rule reads one part's central interval at a level:
 *   width = 2 z sqrt(part), z = Phi^-1((1 + level) / 2)
 * (the Gaussian approximation of the predictive; level 0.95 gives z =
 * 1.95996), and refuses when width > threshold (a NaN width is refused):
 * an interval too wide to be useful, because the noise is large
 * (ALEATORIC: more data will not help) or the model does not know
 * (EPISTEMIC: far from the training data) or either (TOTAL). */

/** One (input, output) answer of a Gaussian model.  Written by
 *  bnn_predict_regression_split (records of record_size bytes each, the
 *  stride; at least through epistemic; only fields that fit entirely are
 *  written; refused is set to 0) and by bnn_regression_refusal_apply
 *  (refused). */
typedef struct bnn_regression_prediction {
    float mean;      /**< predictive mean */
    float variance;  /**< aleatoric + epistemic */
    float aleatoric; /**< expected noise variance */
    float epistemic; /**< variance of the sampled means */
    int32_t refused; /**< 1 if the rule refuses this record, else 0 */
} bnn_regression_prediction;

/** Per input and output, the predictive mean, aleatoric and epistemic
 *  variance of a Gaussian model (any of the three likelihoods): n x D
 *  records, input-major (record i D + k is input i, output k).  cfg may be
 *  NULL (defaults); it is read and checked as by
 *  bnn_predict_with_uncertainty, and its num_samples, seed, num_threads
 *  and sampling are used (its rule and quantiles are for categorical
 *  models: apply a regression rule with bnn_regression_refusal_apply).
 *  Thread-safe on a shared guide.  Errors: BNN_E_INVALID (NULL guide, x or
 *  out, n 0, any invalid cfg field, record_size not covering epistemic,
 *  NaN/Inf in x), BNN_E_NUMERIC (non-finite guide parameters), BNN_E_SHAPE
 *  (n x inputs or n x D x record_size overflows), BNN_E_UNSUPPORTED
 *  (categorical model), BNN_E_NOMEM. */
BNN_API bnn_status bnn_predict_regression_split(const bnn_guide *guide,
                                                const bnn_predict_config *cfg,
                                                const float *x, size_t n,
                                                bnn_regression_prediction *out,
                                                size_t record_size);
/** bnn_predict_regression_split with the predictor's configuration,
 *  bit-identical to it.  Errors: BNN_E_INVALID (NULL p, x or out, n 0,
 *  record_size not covering epistemic, NaN/Inf in x), BNN_E_SHAPE (n x
 *  inputs or n x D x record_size overflows), BNN_E_UNSUPPORTED
 *  (categorical model). */
BNN_API bnn_status bnn_predictor_regression_split(bnn_predictor *p,
                                                  const float *x, size_t n,
                                                  bnn_regression_prediction *out,
                                                  size_t record_size);

/** Which variance a regression refusal rule reads. */
typedef enum bnn_interval_part {
    BNN_INTERVAL_TOTAL = 0,     /**< variance */
    BNN_INTERVAL_ALEATORIC = 1, /**< aleatoric */
    BNN_INTERVAL_EPISTEMIC = 2  /**< epistemic */
} bnn_interval_part;

/** Set refused in n records (stride record_size, covering refused): 1 when
 *  the central interval of `part` at `level` is wider than threshold (see
 *  "Regression" above), else 0.  Errors: BNN_E_INVALID (NULL records, n 0,
 *  record_size not covering refused, unknown part, level not in (0, 1),
 *  threshold NaN or negative), BNN_E_SHAPE (n x record_size overflows). */
BNN_API bnn_status bnn_regression_refusal_apply(
    bnn_regression_prediction *records, size_t record_size, size_t n,
    bnn_interval_part part, float level, float threshold);

typedef enum bnn_regression_target {
    /** the threshold whose accepted set has a root-mean-square error of
     *  the mean at most the target, with the largest coverage */
    BNN_REGRESSION_CALIBRATE_RMSE = 0,
    /** the threshold that accepts at least the target fraction */
    BNN_REGRESSION_CALIBRATE_COVERAGE = 1
} bnn_regression_target;

/** What bnn_regression_refusal_calibrate chose and what it achieves on
 *  the validation records.  Prepare with bnn_regression_calibration_init;
 *  struct_size must cover at least coverage. */
typedef struct bnn_regression_calibration {
    size_t struct_size;
    float threshold;   /**< interval width (bnn_regression_refusal_apply) */
    double coverage;   /**< fraction of records accepted */
    double rmse;       /**< RMSE of the accepted means (0 if none) */
    /** fraction of accepted targets inside their total predictive
     *  interval, mean +- z sqrt(variance) at the level (0 if none): about
     *  the level when the variances are calibrated */
    double interval_coverage;
} bnn_regression_calibration;

/** Zero *c and set its struct_size.  NULL is ignored. */
BNN_API void bnn_regression_calibration_init(bnn_regression_calibration *c);

/** Choose a width threshold for `part` at `level` from validation records
 *  (stride record_size, covering epistemic) and their targets (n floats,
 *  target i for record i: for D outputs, the n x D targets in the records'
 *  order): accepting the narrowest intervals first, the largest accepted
 *  set whose RMSE is at most value (RMSE target; if none, the strictest
 *  threshold, which accepts the narrowest interval and its ties, and
 *  BNN_OK: out->rmse tells), or the smallest that accepts at least the
 *  fraction value (COVERAGE target, value in (0, 1]).  Records with equal
 *  widths are accepted or refused together; bnn_regression_refusal_apply
 *  with the threshold accepts exactly the set reported.  Writes the fields
 *  out->struct_size covers.  Uses malloc/free.  Errors: BNN_E_INVALID
 *  (NULL records, targets or out, n 0, record_size not covering epistemic,
 *  out->struct_size too small, unknown part or target, level not in (0,
 *  1), value not in (0, 1] for COVERAGE or not finite and > 0 for RMSE, a
 *  record's mean or variances not finite or negative, a target not
 *  finite), BNN_E_SHAPE (n x record_size overflows), BNN_E_NOMEM. */
BNN_API bnn_status bnn_regression_refusal_calibrate(
    const bnn_regression_prediction *records, size_t record_size,
    const float *targets, size_t n, bnn_interval_part part, float level,
    bnn_regression_target target, double value,
    bnn_regression_calibration *out);

/** Re-apply a rule and threshold to existing records (sets refused and, for
 *  the median rule, nothing else: label is set at prediction time).  The
 *  rule reads max_median (MEDIAN), prob (MAX_PROB: the max mean probability
 *  in records predicted under any rule but MEDIAN), entropy or
 *  mutual_info; record_size must cover that field.  Errors: BNN_E_INVALID
 *  (NULL records, n = 0, record_size not covering the field, unknown rule,
 *  threshold out of range), BNN_E_SHAPE (n x record_size overflows). */
BNN_API bnn_status bnn_apply_refusal(bnn_prediction *records,
                                     size_t record_size, size_t n,
                                     bnn_refusal_rule rule, float threshold);
/** bnn_apply_refusal under the object-first name (same contract and
 *  errors: BNN_E_INVALID, BNN_E_SHAPE; messages name bnn_refusal_apply). */
BNN_API bnn_status bnn_refusal_apply(bnn_prediction *records,
                                     size_t record_size, size_t n,
                                     bnn_refusal_rule rule, float threshold);

typedef enum bnn_calibration_target {
    /** the threshold whose accepted set reaches the target accuracy with
     *  the largest coverage */
    BNN_CALIBRATE_ACCURACY = 0,
    /** the threshold that accepts at least the target fraction of inputs */
    BNN_CALIBRATE_COVERAGE = 1
} bnn_calibration_target;

/** Choose a threshold for `rule` from validation records and their true
 *  labels.  Writes the threshold and, if not NULL, the coverage and accuracy
 *  it achieves on the validation set; bnn_apply_refusal with it accepts
 *  exactly that set of these records.  Inputs with equal scores are
 *  accepted or refused together.  An answer is correct when label (MEDIAN)
 *  or mean_label (other rules) equals the true label, so records must be
 *  full size for the other rules.  Under MEDIAN a max_median of 0 can never
 *  be accepted, so a coverage target may be missed (the coverage tells).  If no threshold reaches an accuracy
 *  target, returns the strictest one (accepting the most certain input and
 *  any tied with it) and BNN_OK; the achieved accuracy tells.  Uses
 *  malloc/free (there is no model allocator to use).  Errors: BNN_E_INVALID
 *  (NULL, n = 0, target out of (0,1], rule NONE, a negative label, a
 *  record score out of range for the rule, record_size too small),
 *  BNN_E_SHAPE (n x record_size overflows), BNN_E_NOMEM. */
BNN_API bnn_status bnn_calibrate_threshold(const bnn_prediction *records,
                                           size_t record_size,
                                           const int32_t *labels, size_t n,
                                           bnn_refusal_rule rule,
                                           bnn_calibration_target target,
                                           double value, float *threshold,
                                           double *coverage, double *accuracy);
/** bnn_calibrate_threshold under the object-first name (same contract and
 *  errors: BNN_E_INVALID, BNN_E_SHAPE, BNN_E_NOMEM; messages name
 *  bnn_refusal_calibrate). */
BNN_API bnn_status bnn_refusal_calibrate(const bnn_prediction *records,
                                         size_t record_size,
                                         const int32_t *labels, size_t n,
                                         bnn_refusal_rule rule,
                                         bnn_calibration_target target,
                                         double value, float *threshold,
                                         double *coverage, double *accuracy);

/* ------------------------------------------------------------------------ */
/* Evaluation helpers                                                       */
/* ------------------------------------------------------------------------ */

/** Prepare with bnn_metrics_init; struct_size must cover at least
 *  accuracy. */
typedef struct bnn_metrics {
    size_t struct_size;
    double accuracy; /**< fraction with argmax prob == label */
    double nll;      /**< mean -log p(label), probabilities clamped at 1e-12 */
    double brier;    /**< mean sum_c (p_c - [c == label])^2 */
    double ece;      /**< expected calibration error over equal-width bins
                          of max probability */
} bnn_metrics;

/** Zero *m and set its struct_size.  NULL is ignored. */
BNN_API void bnn_metrics_init(bnn_metrics *m);

/** Metrics of predictive probabilities (n x classes) against labels.
 *  ECE uses ece_bins (1 to 2^24) equal-width bins of the max probability,
 *  bin b holding (b/B, (b+1)/B] and 0 going to the first.  out->struct_size
 *  must be set; only the fields it covers are written.  Uses malloc/free
 *  for the bins.  Errors: BNN_E_INVALID (NULL, a zero size, ece_bins above
 *  2^24, struct_size too small, NaN/Inf probability, label out of range),
 *  BNN_E_SHAPE (classes above INT32_MAX, n x classes overflows),
 *  BNN_E_NOMEM. */
BNN_API bnn_status bnn_eval_metrics(const float *probs, const int32_t *labels,
                                    size_t n, size_t classes, size_t ece_bins,
                                    bnn_metrics *out);

/** Risk-coverage curve: inputs sorted by decreasing confidence (ties keep
 *  input order); coverage[k] = (k+1)/n and risk[k] = error rate of the k+1
 *  most confident.  risk/coverage may be NULL (n entries each); aurc gets
 *  the mean of risk over k.  correct[i] is nonzero when input i was
 *  answered correctly.  Uses malloc/free for the sort.  Errors:
 *  BNN_E_INVALID (NULL confidence or correct, n = 0, NaN/Inf confidence),
 *  BNN_E_NOMEM. */
BNN_API bnn_status bnn_eval_risk_coverage(const float *confidence,
                                          const int32_t *correct, size_t n,
                                          double *risk, double *coverage,
                                          double *aurc);

/** Prepare with bnn_refusal_report_init; struct_size must cover at least
 *  n. */
typedef struct bnn_refusal_report {
    size_t struct_size;
    size_t n;                  /**< inputs */
    size_t refused;            /**< inputs refused */
    double forced_accuracy;    /**< accuracy of label over all inputs */
    double refused_fraction;   /**< refused / n */
    double accepted_accuracy;  /**< accuracy on accepted (0 if none) */
} bnn_refusal_report;

/** Zero *r and set its struct_size.  NULL is ignored. */
BNN_API void bnn_refusal_report_init(bnn_refusal_report *r);

/** The original program's three figures from prediction records (label
 *  and refused of each).  out->struct_size must be set.  Errors:
 *  BNN_E_INVALID (NULL, n = 0, record_size below 8, struct_size too small,
 *  a negative label), BNN_E_SHAPE (n x record_size overflows). */
BNN_API bnn_status bnn_eval_refusal(const bnn_prediction *records,
                                    size_t record_size, const int32_t *labels,
                                    size_t n, bnn_refusal_report *out);

/** The record field that tells in-distribution inputs from
 *  out-of-distribution (OOD) ones, and its direction. */
typedef enum bnn_ood_score {
    BNN_OOD_ENTROPY = 0,          /**< entropy; higher means OOD */
    BNN_OOD_MUTUAL_INFO = 1,      /**< mutual_info; higher means OOD */
    BNN_OOD_EXPECTED_ENTROPY = 2, /**< expected_entropy; higher means OOD */
    /** prob; lower means OOD.  The max mean probability only in records
     *  predicted under a rule other than MEDIAN (under MEDIAN, prob is the
     *  mean probability of the highest-median class). */
    BNN_OOD_MAX_PROB = 3,
    BNN_OOD_MAX_MEDIAN = 4        /**< max_median; lower means OOD */
} bnn_ood_score;

/** How well one score separates in-distribution inputs from OOD ones.
 *  OOD is the positive class; "accepted" means judged in-distribution.
 *  All figures handle ties exactly: inputs with equal scores are accepted
 *  or refused together.  Prepare with bnn_ood_report_init; struct_size
 *  must cover at least auroc. */
typedef struct bnn_ood_report {
    size_t struct_size;
    size_t n_in, n_out;
    /** P(OOD input scores more OOD than an in-distribution one) + half
     *  P(equal): the Mann-Whitney U statistic / (n_in n_out), exact while
     *  n_in n_out < 2^52. */
    double auroc;
    /** Average precision with OOD positive, inputs ranked most-OOD first:
     *  sum over distinct score values v of (OOD inputs at v / n_out) x
     *  precision of all inputs at v or beyond (scikit-learn's
     *  average_precision_score; no interpolation). */
    double aupr_out;
    /** The same with in-distribution positive, ranked least-OOD first. */
    double aupr_in;
    /** Share of OOD inputs accepted at threshold95: the strictest threshold
     *  accepting at least 95% of in-distribution inputs, i.e. the
     *  ceil(0.95 n_in)-th least-OOD in-distribution score (no
     *  interpolation; OOD inputs tied with it count as accepted). */
    double fpr95;
    /** Share of in-distribution inputs accepted at threshold95: >= 0.95,
     *  above it when 0.95 n_in is not whole (1 for n_in < 20) or ties
     *  straddle the 95% point. */
    double tpr95;
    /** In the score's own units: accept when score <= threshold95 for the
     *  entropies, when score >= threshold95 for MAX_PROB and MAX_MEDIAN. */
    float threshold95;
} bnn_ood_report;

/** Zero *r and set its struct_size.  NULL is ignored. */
BNN_API void bnn_ood_report_init(bnn_ood_report *r);

/** Separate in-distribution records `in` (n_in) from OOD records `out`
 *  (n_out), both with stride record_size, by one field (see
 *  bnn_ood_score).  Scores must be in range: [0, 1] for MAX_PROB and
 *  MAX_MEDIAN, finite and >= 0 for the entropies.  report->struct_size must
 *  be set; only the fields it covers are written.  alloc may be NULL
 *  (malloc/free); one block of n_in + n_out times (4 + 2 sizeof(size_t))
 *  bytes is allocated and freed.  Reads its inputs only: safe to call
 *  concurrently.  Errors: BNN_E_INVALID (NULL in, out or report, n_in or
 *  n_out 0, unknown score, record_size not covering the field, an
 *  allocator without alloc or free, struct_size too small, a score out of
 *  range or NaN), BNN_E_SHAPE (n x record_size or n_in + n_out overflows),
 *  BNN_E_NOMEM. */
BNN_API bnn_status bnn_eval_ood(const bnn_prediction *in, size_t n_in,
                                const bnn_prediction *out, size_t n_out,
                                size_t record_size, bnn_ood_score score,
                                const bnn_allocator *alloc,
                                bnn_ood_report *report);

/** Share of n records (stride record_size) that `rule` at `threshold`
 *  refuses, as bnn_apply_refusal would decide (a NaN score is refused;
 *  NONE refuses nothing), without changing the records: e.g. what a
 *  policy calibrated on validation data does to OOD inputs.  Errors:
 *  BNN_E_INVALID (NULL records or fraction, n = 0, unknown rule, threshold
 *  out of range for the rule, record_size not covering the field it
 *  reads), BNN_E_SHAPE (n x record_size overflows). */
BNN_API bnn_status bnn_eval_refused_fraction(const bnn_prediction *records,
                                             size_t record_size, size_t n,
                                             bnn_refusal_rule rule,
                                             float threshold, double *fraction);

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

/** Save the model (architecture, prior, likelihood), the guide's parameters
 *  and, if opt is not NULL, the optimizer's configuration and state.  Any
 *  model bnn_model_create accepts can be saved; a layer sequence is stored
 *  as configured (bnn_model_get_config's layers; format version 4, see
 *  docs/format.md) and loads back to the same network.  The
 *  file is written to a temporary file in the same folder, flushed and
 *  renamed over `path`: a failed save leaves any previous file intact.
 *  A new file is created owner-only (0600); a replaced file keeps its mode.
 *  `path` must not name anything but a regular file or a symbolic link: a
 *  device, FIFO, socket or directory there is refused with BNN_E_IO before
 *  anything is created.  A symbolic link is replaced by the new file (its
 *  target is left as it was; the new file takes the target's mode when the
 *  target is a regular file), as rename(2) does.
 *  Errors: BNN_E_INVALID (NULL or empty path, an optimizer bound to
 *  another guide, NaN/Inf in the parameters or optimizer state or a
 *  negative Adam second moment, which could never load back, or an
 *  optimizer whose max_batch x widest layer exceeds 2^26 floats, the bound
 *  a loader accepts), BNN_E_SHAPE (the file size overflows), BNN_E_IO (with
 *  the system's reason in bnn_last_error), BNN_E_NOMEM. */
BNN_API bnn_status bnn_save(const char *path, const bnn_guide *guide,
                            const bnn_optimizer *opt);

/** Bytes that bnn_save_to_memory needs for this guide (and optimizer, may
 *  be NULL).  Runs bnn_save's checks, so errors are as bnn_save's without
 *  BNN_E_IO and BNN_E_NOMEM: BNN_E_INVALID (NULL guide or size, an optimizer
 *  bound to another guide, state that could not load back), BNN_E_SHAPE. */
BNN_API bnn_status bnn_save_size(const bnn_guide *guide,
                                 const bnn_optimizer *opt, size_t *size);
/** Serialize into buf (capacity cap).  *written gets the byte count.
 *  Errors: BNN_E_INVALID (as bnn_save_size, or NULL buf or written),
 *  BNN_E_SHAPE (cap too small), BNN_E_INTERNAL (the writer produced a
 *  size other than bnn_save_size's: a bug, never expected). */
BNN_API bnn_status bnn_save_to_memory(const bnn_guide *guide,
                                      const bnn_optimizer *opt, void *buf,
                                      size_t cap, size_t *written);

/** Load a file written by bnn_save.  Creates a model and a guide (free them
 *  with bnn_guide_free then bnn_model_free) and, if opt_out is not NULL and
 *  the file holds optimizer state, an optimizer (*opt_out = NULL if the
 *  file has none).  alloc may be NULL.  Every field is validated before
 *  use.  Errors: BNN_E_IO, BNN_E_FORMAT (corrupt, truncated, bad CRC),
 *  BNN_E_VERSION (newer format), BNN_E_NOMEM, BNN_E_INVALID. */
BNN_API bnn_status bnn_load(const char *path, const bnn_allocator *alloc,
                            bnn_model **model_out, bnn_guide **guide_out,
                            bnn_optimizer **opt_out);
/** bnn_load from a memory buffer of `size` bytes; buf is only read.
 *  Errors: BNN_E_INVALID (NULL buf, model_out or guide_out, an allocator
 *  without alloc or free), BNN_E_FORMAT (size 0, corrupt, truncated, bad
 *  CRC, fields that do not agree), BNN_E_VERSION (newer format),
 *  BNN_E_NOMEM; out-parameters are untouched on error. */
BNN_API bnn_status bnn_load_from_memory(const void *buf, size_t size,
                                        const bnn_allocator *alloc,
                                        bnn_model **model_out,
                                        bnn_guide **guide_out,
                                        bnn_optimizer **opt_out);

#ifdef __cplusplus
}
#endif

#endif /* BNN_H */
