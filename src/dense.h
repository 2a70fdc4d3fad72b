/* Dense layer y = W h + b on panel-packed activations whose results do not
 * depend on batching (see dense.c).  Internal; used by prediction. */
#ifndef BNN_DENSE_H
#define BNN_DENSE_H

#include <stddef.h>

/* Inputs per panel of packed activations: element k of input r of panel p
 * sits at h[(p * width + k) * DENSE_PANEL + r]. */
#define DENSE_PANEL 16

/* Kernel variants, all giving identical bits; AUTO picks the fastest the
 * CPU runs.  The others exist for the tests. */
enum {
    DENSE_PATH_AUTO = 0,
    DENSE_PATH_SCALAR = 1,
    DENSE_PATH_VECTOR = 2, /* GNU vector extensions, 4 lanes */
    DENSE_PATH_AVX2 = 3    /* x86 AVX2 (without FMA), 8 lanes */
};

/* 1 if `path` runs on this build and CPU. */
int dense_path_available(int path);

/* y = W h + b for npan panels: W is out x in row-major, h holds in x
 * DENSE_PANEL values per panel, y gets out x DENSE_PANEL.  Each output is
 * the sum over k in increasing order of the rounded products, from 0, then
 * + b[j], so an input's result does not depend on the other inputs in its
 * panel or on the number of panels.  An unavailable path falls back to
 * AUTO. */
void dense_panels(const float *W, const float *b, size_t out, size_t in,
                  const float *h, float *y, size_t npan, int path);

#endif
