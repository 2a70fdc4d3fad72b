/* Bayesian dense layer: forward and backward for each gradient estimator.
 * Internal; works on the SVI workspace (internal.h). */
#ifndef BNN_LAYER_H
#define BNN_LAYER_H

#include "internal.h"
#include "tensor.h"

/* Noise identity of one forward pass. */
typedef struct layer_noise {
    uint64_t seed;
    uint64_t step;
    unsigned particle;
    size_t offset; /* global index of the first example of the batch */
} layer_noise;

/* Forward layer l of guide g on input h (n x in): fills ws->layer[l].pre
 * (and std/eps/s_in) and, for hidden layers, ws->layer[l].post.  The
 * per-step buffers (ws->sig2 and ws->dsig for local reparameterization,
 * ws->wsamp and ws->noise for weight sampling and flipout) must be
 * prepared. */
void layer_forward(struct svi_ws *ws, const bnn_guide *g, size_t l,
                   const tensor *h, const layer_noise *nz);

/* Backward through layer l given dA = dLoss/dpre (n x out, may be
 * modified).  Adds dLoss/dmu and dLoss/drho of the layer's weights and
 * biases to the gradient buffer, which must already hold this step's
 * earlier terms (the KL part is written first).  If ss is not NULL, the
 * squares of the layer's resulting gradients are added to *ss.  If dh is
 * not NULL it receives dLoss/dh (n x in). */
void layer_backward(struct svi_ws *ws, bnn_guide *g, size_t l,
                    const tensor *h, tensor *dA, tensor *dh, double *ss);

#endif
