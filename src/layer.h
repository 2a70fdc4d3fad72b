/* Bayesian dense and convolution layers: forward and backward for each
 * gradient estimator.  Internal; works on the SVI workspace (internal.h).
 * Activations are contiguous, one row of model_act_* floats per example. */
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

/* Forward layer l of guide g on input h (n x model_act_in): fills
 * ws->layer[l].pre (and std/eps/s_in) and, for hidden layers, its
 * activation and pooling (ws->layer[l].act, arg, post).  The
 * per-step buffers (ws->sig2 and ws->dsig for local reparameterization,
 * ws->wsamp and ws->noise for weight sampling and flipout) must be
 * prepared. */
void layer_forward(struct svi_ws *ws, const bnn_guide *g, size_t l,
                   const tensor *h, const layer_noise *nz);

/* Backward through layer l given dA = dLoss/dpre (n x model_act_pre, may be
 * modified).  Adds dLoss/dmu and dLoss/drho of the layer's weights and
 * biases to the gradient buffer, which must already hold this step's
 * earlier terms (the KL part is written first).  If ss is not NULL, the
 * squares of the layer's resulting gradients are added to *ss.  If dh is
 * not NULL it receives dLoss/dh (n x model_act_in, contiguous). */
void layer_backward(struct svi_ws *ws, bnn_guide *g, size_t l,
                    const tensor *h, tensor *dA, tensor *dh, double *ss);

/* dpre (n x model_act_pre) = dLoss/dpre of hidden layer l from dpost =
 * dLoss/d(its output) (n x model_act_out), through its pooling (max:
 * to the first maximum of each window) and activation.  dpre may be dpost
 * when the layer does not pool. */
void layer_act_backward(struct svi_ws *ws, const bnn_model *m, size_t l, size_t n,
                        const float *dpost, float *dpre);

#endif
