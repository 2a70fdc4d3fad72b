/* The per-parameter passes of a step (fused.h) run over the optimizer's
 * thread pool (the SVI workspace's) in fixed chunks of POOL_CHUNK elements.  Internal.
 *
 * Each function is its fused_* namesake on [0, n), split into chunks that
 * run on any thread; sums are per-chunk totals added in chunk order, so
 * the result does not depend on the thread count (1 included). */
#ifndef BNN_PASS_H
#define BNN_PASS_H

#include <stddef.h>
#include <stdint.h>

#include "fused.h"

struct svi_ws;

/* Settings that differ between weight layers (the prior, so the KL and
 * IVON's delta) come one per segment: segment s covers [end[s-1], end[s])
 * of the pass (end[-1] = 0, end[n-1] = the pass's n).  A chunk that
 * spans segments runs as pieces, its sum adding theirs in order; chunk
 * bounds and the noise do not depend on the segments.  NULL: one segment,
 * the whole pass. */
typedef struct pass_segs {
    size_t n;
    const size_t *end;
} pass_segs;

/* fused_draw; with `draw`, eps is first filled with standard normals of
 * (seed, stream) at the same indices, chunk by chunk.  kl: NULL or one
 * setting per segment, with gmu and grho the whole pass's. */
double pass_draw(struct svi_ws *ws, int draw, uint64_t stream, size_t n,
                 const float *mu, const float *rho, float *eps, float *w,
                 int add_mu, const fused_kl *kl, const pass_segs *segs);
double pass_lrt_prepare(struct svi_ws *ws, size_t n, const float *mu,
                        const float *rho, float *sig2, float *dsig,
                        const fused_kl *kl, const pass_segs *segs);
void pass_backward(struct svi_ws *ws, size_t n, const float *gw,
                   const float *factor, float *gmu, int gmu_add, float *grho,
                   double *ss);
double pass_sum_sq(struct svi_ws *ws, size_t n, const float *x);
void pass_adam(struct svi_ws *ws, size_t n, float *p, const float *g,
               float *m, float *v, const fused_adam_args *a);
/* IVON (fused_ivon_*); the draw fills eps with standard normals of
 * (seed, stream) first, as pass_draw does.  delta, kl_inv_p2 and kl_log_p
 * hold one value per segment; kl_inv_p2 NULL: no KL (returns 0). */
double pass_ivon_draw(struct svi_ws *ws, uint64_t stream, size_t n,
                      const float *mu, const float *h, float *eps, float *w,
                      float lam, const float *delta, const float *kl_inv_p2,
                      const float *kl_log_p, const pass_segs *segs, float *fmax);
void pass_ivon_backward(struct svi_ws *ws, size_t n, const float *gw,
                        const float *factor, float *ghat, float *hhat, int acc,
                        double *ss);
/* a: one per segment. */
void pass_ivon_update(struct svi_ws *ws, size_t n, float *mu, float *rho,
                      float *g, float *h, const float *ghat, const float *hhat,
                      const fused_ivon_args *a, const pass_segs *segs);
/* fused_ivon_update_grad over one segment (a); the sum of squares is
 * added to *ss (one total per call, as pass_ivon_backward adds it). */
void pass_ivon_update_grad(struct svi_ws *ws, size_t n, float *mu, float *rho,
                           float *g, float *h, const float *gw,
                           const float *factor, const float *ghat0,
                           const float *hhat0, const fused_ivon_args *a,
                           double *ss);

#endif
