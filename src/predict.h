/* Monte Carlo prediction internals, exposed for the unit tests.  Internal. */
#ifndef BNN_PREDICT_H
#define BNN_PREDICT_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Per-call workspace budget for the per-input buffers of a prediction: the
 * inputs are processed in chunks of as many rows as fit in it (at least
 * one panel of DENSE_PANEL rows), so memory does not grow with n. */
#define PREDICT_WORKSPACE_BYTES ((size_t)16 << 20)

/* Rows per chunk the predictors use for n inputs when each input needs
 * `extra` bytes besides the forward pass's buffers (which take
 * 4 * (inputs + 2 * widest hidden layer + outputs) bytes per input): whole
 * panels of DENSE_PANEL rows within PREDICT_WORKSPACE_BYTES, at least one
 * panel, at most n; 0 if one row's size overflows. */
size_t predict_auto_chunk(const bnn_model *m, size_t n, size_t extra);

/* The public predictors with an explicit chunk of input rows; chunk 0 picks
 * it from PREDICT_WORKSPACE_BYTES as the public functions do.  Results do
 * not depend on the chunk. */
bnn_status predict_with_chunk(const bnn_guide *guide,
                              const bnn_predict_config *cfg, const float *x,
                              size_t n, bnn_prediction *out,
                              size_t record_size, float *medians,
                              float *quantiles, size_t chunk);
bnn_status predict_mean_with_chunk(const bnn_guide *guide, const float *x,
                                   size_t n, size_t num_samples,
                                   uint64_t seed, float *probs, size_t chunk);
bnn_status predict_regression_with_chunk(const bnn_guide *guide,
                                         const float *x, size_t n,
                                         size_t num_samples, uint64_t seed,
                                         float *mean, float *var,
                                         size_t chunk);
bnn_status predict_samples_with_chunk(const bnn_guide *guide, const float *x,
                                      size_t n, size_t num_samples,
                                      uint64_t seed, float *logp,
                                      size_t chunk);

/* Flags of predictor_create_chunked. */
enum {
    PREDICTOR_NO_NOISE_CACHE = 1, /* draw the noise at every run */
    PREDICTOR_ONE_SHOT = 2        /* one run: no transposed layer 0 */
};

/* bnn_predictor_create with an explicit chunk of inputs and rows per
 * block (MARGINAL) for the tests; 0 picks them as bnn_predictor_create
 * does.  Results depend on none of these nor on the flags.  fn names the
 * caller in messages. */
bnn_status predictor_create_chunked(const bnn_guide *guide,
                                    const bnn_predict_config *cfg,
                                    size_t max_batch, size_t chunk,
                                    size_t rows, unsigned flags,
                                    const char *fn, bnn_predictor **out);

#endif
