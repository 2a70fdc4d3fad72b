/* A fixed set of worker threads for the per-parameter passes of a step.
 * Internal.
 *
 * The passes are memory-bound loops over millions of parameters; with
 * the BLAS given several cores for the products, running them on one
 * core would leave the others idle for a third of the step.  A pool
 * belongs to one optimizer and is used by one thread at a time (the
 * optimizer's own rule).  Work is split into chunks whose boundaries do
 * not depend on the number of threads, and every sum over a pass is
 * made of per-chunk partial sums added in chunk order, so results are the
 * same bits for any thread count. */
#ifndef BNN_POOL_H
#define BNN_POOL_H

#include <stddef.h>

#include "bnn.h"

typedef struct pool pool;

/* Runs task(ctx, i) for i in [0, n_tasks); any thread may run any i. */
typedef void (*pool_task)(void *ctx, size_t i);

/* A pool of n_threads - 1 workers (the caller of pool_run is the last
 * one); n_threads <= 1 gives NULL, which pool_run accepts.  Errors:
 * BNN_E_NOMEM (memory, or the system refused a thread). */
bnn_status pool_create(const bnn_allocator *a, size_t n_threads, pool **out);
void pool_free(pool *p);

/* All tasks, on the workers and the calling thread; returns when every
 * task has finished. */
void pool_run(pool *p, pool_task task, void *ctx, size_t n_tasks);

/* Elements per chunk of a pass (a multiple of the fused passes' blocks). */
#define POOL_CHUNK ((size_t)65536)

static inline size_t pool_chunks(size_t n)
{
    return (n + POOL_CHUNK - 1) / POOL_CHUNK;
}

#endif
