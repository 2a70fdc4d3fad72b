/* PNG figures for the MNIST example (cairo).  Every function returns 0, or
 * -1 with a message in err; without cairo they all fail with a message
 * saying so, and plot_available() returns 0. */
#ifndef BNN_EXAMPLE_PLOT_H
#define BNN_EXAMPLE_PLOT_H

#include <stddef.h>
#include <stdint.h>

int plot_available(void);

/* Release the font and surface caches that cairo and fontconfig keep for
 * the life of the process, so leak checkers see a clean exit.  Call once,
 * after the last plot. */
void plot_cleanup(void);

/* The original program's figure for one input: the 28x28 image (pixels in
 * [0,1]) beside one histogram per class of the sampled log-probabilities
 * (logp: n_samples x classes, this input only), each titled with the class
 * index and marked at its median.  caption is printed above the image. */
int plot_sample_histograms(const char *path, const float *image,
                           const float *logp, size_t n_samples,
                           size_t classes, const char *caption, char *err,
                           size_t errlen);

/* Reliability diagram: inputs binned by confidence into `bins` equal-width
 * bins; bars show each bin's accuracy against the diagonal. */
int plot_reliability(const char *path, const float *confidence,
                     const int32_t *correct, size_t n, size_t bins,
                     double ece, const char *title, char *err, size_t errlen);

/* Risk-coverage curve (risk[k] at coverage[k], k < n), with an optional
 * operating point marked (pass a negative point_coverage to omit it). */
int plot_risk_coverage(const char *path, const double *risk,
                       const double *coverage, size_t n, double aurc,
                       double point_coverage, double point_risk,
                       const char *point_label, const char *title, char *err,
                       size_t errlen);

/* Overlaid histograms of one score, one outline per series (values[k]:
 * counts[k] values named names[k]), each normalised to fractions of its
 * series, over `bins` equal bins of [0, the 99.5th percentile of all the
 * values] (larger values count in the last bin). */
int plot_score_histograms(const char *path, const float *const *values, const size_t *counts,
                          const char *const *names, size_t n_series, size_t bins,
                          const char *xlabel, const char *title, char *err, size_t errlen);

/* ROC curves: series k has npts[k] points (fpr[k][i], tpr[k][i]) from
 * (0, 0) to (1, 1), labelled labels[k]. */
int plot_roc(const char *path, const double *const *fpr, const double *const *tpr,
             const size_t *npts, const char *const *labels, size_t n_series,
             const char *title, char *err, size_t errlen);

/* n images (pixels in [0,1]) in a grid of `cols` columns, each framed green
 * with its answer when answered, red when refused; truth[i] is printed
 * small beside the answer. */
int plot_answer_grid(const char *path, const float *images, const int32_t *answer,
                     const int32_t *refused, const int32_t *truth, size_t n, size_t cols,
                     const char *title, char *err, size_t errlen);

#endif
