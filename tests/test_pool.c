/* The thread pool of the per-parameter passes: every task runs exactly
 * once per run, over many runs, on more than one thread, and a pool of
 * one thread is no pool. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bnn.h"
#include "internal.h"
#include "pool.h"
#include "testutil.h"

enum { MAX_TASKS = 64 };

typedef struct count_ctx {
    atomic_int hits[MAX_TASKS];
    int sleep_us;
    pthread_t who[MAX_TASKS];
} count_ctx;

static void count_task(void *vc, size_t i)
{
    count_ctx *c = vc;
    atomic_fetch_add(&c->hits[i], 1);
    c->who[i] = pthread_self();
    if (c->sleep_us) {
        struct timespec ts = {0, (long)c->sleep_us * 1000L};
        nanosleep(&ts, NULL);
    }
}

START_TEST(test_single_thread_is_no_pool)
{
    bnn_allocator a = mem_default_allocator();
    pool *p = (pool *)&a; /* overwritten */
    ck_assert_int_eq(pool_create(&a, 1, &p), BNN_OK);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(pool_create(&a, 0, &p), BNN_OK);
    ck_assert_ptr_null(p);
    static count_ctx c;
    memset(&c, 0, sizeof c);
    pool_run(NULL, count_task, &c, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(atomic_load(&c.hits[i]), 1);
    pool_free(NULL);
}
END_TEST

/* Runs of every size, back to back: no task lost or run twice, and the
 * run returns only when all are done. */
START_TEST(test_every_task_once)
{
    static const size_t threads[] = {2, 3, 8};
    bnn_allocator a = mem_default_allocator();
    pool *p;
    ck_assert_int_eq(pool_create(&a, threads[_i], &p), BNN_OK);
    ck_assert_ptr_nonnull(p);
    static count_ctx c;
    for (int run = 0; run < 400; run++) {
        size_t n = (size_t)(run * 7) % (MAX_TASKS + 1);
        memset(&c, 0, sizeof c);
        pool_run(p, count_task, &c, n);
        for (size_t i = 0; i < MAX_TASKS; i++)
            ck_assert_msg(atomic_load(&c.hits[i]) == (i < n ? 1 : 0),
                          "run %d, %zu tasks: task %zu ran %d times", run, n, i,
                          atomic_load(&c.hits[i]));
    }
    pool_free(p);
}
END_TEST

/* Tasks that sleep leave the others to the workers: with 4 threads and 16
 * tasks of 2 ms, more than one thread must have taken some. */
START_TEST(test_work_is_shared)
{
    bnn_allocator a = mem_default_allocator();
    pool *p;
    ck_assert_int_eq(pool_create(&a, 4, &p), BNN_OK);
    static count_ctx c;
    memset(&c, 0, sizeof c);
    c.sleep_us = 2000;
    pool_run(p, count_task, &c, 16);
    int distinct = 0;
    for (int i = 0; i < 16; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= pthread_equal(c.who[i], c.who[j]);
        distinct += !seen;
    }
    ck_assert_int_ge(distinct, 2);
    pool_free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_single_thread_is_no_pool);
    tcase_add_loop_test(tc, test_every_task_once, 0, 3);
    tcase_add_test(tc, test_work_is_shared);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
