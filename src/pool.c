/* Worker threads (see pool.h): one condition variable wakes the workers
 * for a run, tasks are claimed with an atomic counter, and the last worker
 * to finish wakes the caller. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

struct pool {
    const bnn_allocator *alloc;
    size_t n_workers;
    size_t n_started;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a new run, or quit */
    pthread_cond_t idle; /* the workers of a run have finished */
    uint64_t run;        /* run number, under mu */
    int quit;
    size_t busy; /* workers still in the current run, under mu */
    pool_task task;
    void *ctx;
    size_t n_tasks;
    atomic_size_t next;
};

static void take_tasks(pool *p)
{
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n_tasks)
            return;
        p->task(p->ctx, i);
    }
}

static void *worker(void *arg)
{
    pool *p = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->run == seen)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit)
            break;
        seen = p->run;
        pthread_mutex_unlock(&p->mu);
        take_tasks(p);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void stop_workers(pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->n_started; i++)
        pthread_join(p->threads[i], NULL);
}

bnn_status pool_create(const bnn_allocator *a, size_t n_threads, pool **out)
{
    *out = NULL;
    if (n_threads <= 1)
        return BNN_OK;
    pool *p = mem_alloc(a, sizeof *p);
    if (!p)
        return error_set(BNN_E_NOMEM, "out of memory allocating the thread pool");
    memset(p, 0, sizeof *p);
    p->alloc = a;
    p->n_workers = n_threads - 1;
    p->threads = mem_alloc_array(a, p->n_workers, sizeof *p->threads);
    if (!p->threads) {
        mem_free(a, p);
        return error_set(BNN_E_NOMEM, "out of memory allocating the thread pool");
    }
    atomic_init(&p->next, 0);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        mem_free(a, p->threads);
        mem_free(a, p);
        return error_set(BNN_E_NOMEM, "cannot create a mutex for the thread pool");
    }
    int wake_ok = pthread_cond_init(&p->wake, NULL) == 0;
    int idle_ok = wake_ok && pthread_cond_init(&p->idle, NULL) == 0;
    if (!idle_ok) {
        if (wake_ok)
            pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->mu);
        mem_free(a, p->threads);
        mem_free(a, p);
        return error_set(BNN_E_NOMEM, "cannot create a condition variable for the thread pool");
    }
    for (; p->n_started < p->n_workers; p->n_started++) {
        if (pthread_create(&p->threads[p->n_started], NULL, worker, p) != 0) {
            pool_free(p);
            return error_set(BNN_E_NOMEM, "the system refused to start worker thread %zu of %zu",
                             p->n_started + 1, p->n_workers);
        }
    }
    *out = p;
    return BNN_OK;
}

void pool_free(pool *p)
{
    if (!p)
        return;
    stop_workers(p);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->mu);
    mem_free(p->alloc, p->threads);
    mem_free(p->alloc, p);
}

void pool_run(pool *p, pool_task task, void *ctx, size_t n_tasks)
{
    if (!p || n_tasks <= 1) {
        for (size_t i = 0; i < n_tasks; i++)
            task(ctx, i);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->task = task;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->busy = p->n_workers;
    p->run++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    take_tasks(p);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
