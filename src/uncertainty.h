/* Uncertainty statistics of one input (uncertainty.c).  Internal. */
#ifndef BNN_UNCERTAINTY_H
#define BNN_UNCERTAINTY_H

#include <stddef.h>

#include "bnn.h"

/* Uncertainty summary of one input from its S sampled probability vectors
 * p[s * stride + c] (s < S, c < C).  Fills every field of *rec, deciding
 * `refused` by rule and threshold (assumed valid); medians (C values) and
 * quantiles (C x n_levels, type 7 at `levels`) and means (C mean
 * probabilities, as bnn_predict computes them) are written when not NULL.
 * scratch holds S floats. */
void uncertainty_stats(const float *p, size_t num_samples, size_t classes,
                       size_t stride, bnn_refusal_rule rule, float threshold,
                       const float *levels, size_t n_levels,
                       bnn_prediction *rec, float *medians, float *quantiles,
                       float *means, float *scratch);

#endif
