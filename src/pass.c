/* Chunked, pooled per-parameter passes (see pass.h). */
#include "pass.h"

#include "internal.h"
#include "pool.h"
#include "rng.h"

enum pass_kind {
    PASS_DRAW, PASS_LRT, PASS_BACKWARD, PASS_SUM_SQ, PASS_ADAM,
    PASS_IVON_DRAW, PASS_IVON_BACKWARD, PASS_IVON_UPDATE, PASS_IVON_UPDATE_GRAD
};

typedef struct pass_ctx {
    enum pass_kind kind;
    size_t n;
    int draw, add_mu, gmu_add;
    uint64_t seed, stream;
    const float *mu, *rho, *gw, *factor, *x;
    float *eps, *w, *sig2, *dsig, *gmu, *grho, *p, *m, *v;
    const float *g;
    const fused_kl *kl;
    const fused_adam_args *adam;
    /* IVON */
    float *h, *rho_out;
    const float *hhat, *ghat0, *hhat0;
    float lam;
    const float *delta, *inv_p2, *log_p;
    int acc;
    const fused_ivon_args *ivon;
    pass_segs segs; /* kl, delta, inv_p2, log_p and ivon: one per segment */
    double *partial;
    double *partial_max; /* per-chunk maxima (IVON draw) */
} pass_ctx;

/* The KL part of a pass restricted to a chunk: its gradient outputs move
 * with it. */
static fused_kl kl_at(const fused_kl *kl, size_t off)
{
    fused_kl k = *kl;
    k.gmu = kl->gmu ? kl->gmu + off : NULL;
    k.grho = kl->grho ? kl->grho + off : NULL;
    return k;
}

/* Elements [off, off + len) of a pass, all in segment `seg`; an IVON
 * draw's largest factor into *fmax. */
static double pass_piece(const pass_ctx *x, size_t seg, size_t off, size_t len, float *fmax)
{
    double r = 0.0;
    fused_kl k = x->kl ? kl_at(&x->kl[seg], off) : (fused_kl){0};
    switch (x->kind) {
    case PASS_DRAW:
        r = fused_draw(len, x->mu + off, x->rho + off, x->eps + off, x->w ? x->w + off : NULL,
                       x->add_mu, x->kl ? &k : NULL);
        break;
    case PASS_LRT:
        r = fused_lrt_prepare(len, x->mu + off, x->rho + off, x->sig2 + off, x->dsig + off,
                              x->kl ? &k : NULL);
        break;
    case PASS_BACKWARD:
        fused_backward(len, x->gw + off, x->factor + off, x->gmu + off, x->gmu_add,
                       x->grho + off, x->partial ? &r : NULL);
        break;
    case PASS_SUM_SQ:
        r = fused_sum_sq(len, x->x + off);
        break;
    case PASS_ADAM:
        fused_adam(len, x->p + off, x->g + off, x->m + off, x->v + off, x->adam);
        break;
    case PASS_IVON_DRAW:
        r = fused_ivon_draw(len, x->mu + off, x->h + off, x->eps + off, x->w + off, x->lam,
                            x->delta[seg], x->inv_p2 ? x->inv_p2[seg] : 0.0f,
                            x->log_p ? x->log_p[seg] : 0.0f, fmax);
        break;
    case PASS_IVON_BACKWARD:
        fused_ivon_backward(len, x->gw + off, x->factor + off, x->gmu + off, x->grho + off,
                            x->acc, x->partial ? &r : NULL);
        break;
    case PASS_IVON_UPDATE:
        fused_ivon_update(len, x->p + off, x->rho_out + off, x->m + off, x->h + off,
                          x->g + off, x->hhat + off, &x->ivon[seg]);
        break;
    case PASS_IVON_UPDATE_GRAD:
        fused_ivon_update_grad(len, x->p + off, x->rho_out + off, x->m + off, x->h + off,
                               x->gw + off, x->factor + off, x->ghat0 ? x->ghat0 + off : NULL,
                               x->hhat0 ? x->hhat0 + off : NULL, x->ivon, &r);
        break;
    }
    return r;
}

static void pass_task(void *vc, size_t c)
{
    const pass_ctx *x = vc;
    size_t off = c * POOL_CHUNK, len = x->n - off < POOL_CHUNK ? x->n - off : POOL_CHUNK;
    if ((x->kind == PASS_DRAW && x->draw) || x->kind == PASS_IVON_DRAW)
        rng_normal_fill(x->seed, x->stream, off, len, x->eps + off);
    double r = 0.0;
    float fm = 0.0f;
    if (x->segs.n <= 1) {
        r = pass_piece(x, 0, off, len, &fm);
    } else {
        size_t s = 0, end = off + len;
        while (x->segs.end[s] <= off)
            s++;
        for (size_t a = off; a < end; s++) {
            size_t b = x->segs.end[s] < end ? x->segs.end[s] : end;
            float v = 0.0f;
            r += pass_piece(x, s, a, b - a, &v);
            fm = v > fm || v != v ? v : fm;
            a = b;
        }
    }
    if (x->kind == PASS_IVON_DRAW)
        x->partial_max[c] = fm;
    if (x->partial)
        x->partial[c] = r;
}

/* Run the chunks of x; returns the sum of their results in chunk order. */
static double run(struct svi_ws *ws, pass_ctx *x, int sum)
{
    size_t chunks = pool_chunks(x->n);
    x->partial = sum ? ws->partial : NULL;
    pool_run(ws->pool, pass_task, x, chunks);
    double total = 0.0;
    if (sum)
        for (size_t c = 0; c < chunks; c++)
            total += ws->partial[c];
    return total;
}

/* Unnamed members of the initialisers below are zero: NULL, 0. */

static pass_segs segs_or_one(const pass_segs *segs)
{
    return segs ? *segs : (pass_segs){1, NULL};
}

double pass_draw(struct svi_ws *ws, int draw, uint64_t stream, size_t n, const float *mu,
                 const float *rho, float *eps, float *w, int add_mu, const fused_kl *kl,
                 const pass_segs *segs)
{
    pass_ctx x = {.kind = PASS_DRAW, .n = n, .draw = draw, .seed = ws->seed,
                  .stream = stream, .mu = mu, .rho = rho, .eps = eps, .w = w,
                  .add_mu = add_mu, .kl = kl, .segs = segs_or_one(segs)};
    return run(ws, &x, 1);
}

double pass_lrt_prepare(struct svi_ws *ws, size_t n, const float *mu, const float *rho,
                        float *sig2, float *dsig, const fused_kl *kl, const pass_segs *segs)
{
    pass_ctx x = {.kind = PASS_LRT, .n = n, .mu = mu, .rho = rho, .sig2 = sig2, .dsig = dsig,
                  .kl = kl, .segs = segs_or_one(segs)};
    return run(ws, &x, 1);
}

void pass_backward(struct svi_ws *ws, size_t n, const float *gw, const float *factor,
                   float *gmu, int gmu_add, float *grho, double *ss)
{
    pass_ctx x = {.kind = PASS_BACKWARD, .n = n, .gw = gw, .factor = factor, .gmu = gmu,
                  .gmu_add = gmu_add, .grho = grho};
    double r = run(ws, &x, ss != NULL);
    if (ss)
        *ss += r;
}

double pass_sum_sq(struct svi_ws *ws, size_t n, const float *v)
{
    pass_ctx x = {.kind = PASS_SUM_SQ, .n = n, .x = v};
    return run(ws, &x, 1);
}

void pass_adam(struct svi_ws *ws, size_t n, float *p, const float *g, float *m, float *v,
               const fused_adam_args *a)
{
    pass_ctx x = {.kind = PASS_ADAM, .n = n, .p = p, .g = g, .m = m, .v = v, .adam = a};
    (void)run(ws, &x, 0);
}

double pass_ivon_draw(struct svi_ws *ws, uint64_t stream, size_t n, const float *mu,
                      const float *h, float *eps, float *w, float lam, const float *delta,
                      const float *kl_inv_p2, const float *kl_log_p, const pass_segs *segs,
                      float *fmax)
{
    size_t chunks = pool_chunks(n);
    pass_ctx x = {.kind = PASS_IVON_DRAW, .n = n, .seed = ws->seed, .stream = stream,
                  .mu = mu, .h = (float *)h, .eps = eps, .w = w, .lam = lam, .delta = delta,
                  .inv_p2 = kl_inv_p2, .log_p = kl_log_p, .segs = segs_or_one(segs),
                  .partial_max = ws->partial + pool_chunks(2 * n)};
    double r = run(ws, &x, kl_inv_p2 != NULL);
    float fm = 0.0f;
    for (size_t c = 0; c < chunks; c++) {
        float v = (float)x.partial_max[c];
        fm = v > fm || v != v ? v : fm;
    }
    *fmax = fm;
    return r;
}

void pass_ivon_backward(struct svi_ws *ws, size_t n, const float *gw, const float *factor,
                        float *ghat, float *hhat, int acc, double *ss)
{
    pass_ctx x = {.kind = PASS_IVON_BACKWARD, .n = n, .gw = gw, .factor = factor,
                  .gmu = ghat, .grho = hhat, .acc = acc};
    double r = run(ws, &x, ss != NULL);
    if (ss)
        *ss += r;
}

void pass_ivon_update(struct svi_ws *ws, size_t n, float *mu, float *rho, float *g, float *h,
                      const float *ghat, const float *hhat, const fused_ivon_args *a,
                      const pass_segs *segs)
{
    pass_ctx x = {.kind = PASS_IVON_UPDATE, .n = n, .p = mu, .rho_out = rho, .m = g, .h = h,
                  .g = ghat, .hhat = hhat, .ivon = a, .segs = segs_or_one(segs)};
    (void)run(ws, &x, 0);
}

void pass_ivon_update_grad(struct svi_ws *ws, size_t n, float *mu, float *rho, float *g,
                           float *h, const float *gw, const float *factor, const float *ghat0,
                           const float *hhat0, const fused_ivon_args *a, double *ss)
{
    pass_ctx x = {.kind = PASS_IVON_UPDATE_GRAD, .n = n, .p = mu, .rho_out = rho, .m = g,
                  .h = h, .gw = gw, .factor = factor, .ghat0 = ghat0, .hhat0 = hhat0,
                  .ivon = a};
    *ss += run(ws, &x, 1);
}
