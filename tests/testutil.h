/* Shared helpers for the Check suites. */
#ifndef BNN_TESTUTIL_H
#define BNN_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "bnn.h"

/* Run a suite in fork mode (a crash fails only its own test) and return the
 * process exit code. */
int tu_run(Suite *s);

/* Deterministic test data independent of the library's RNG (splitmix64). */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;
uint64_t tu_next(tu_rng *r);
double tu_uniform(tu_rng *r);            /* [0, 1) */
double tu_normal(tu_rng *r);             /* N(0, 1) */
void tu_fill_uniform(tu_rng *r, float *x, size_t n, float lo, float hi);

/* |a - b| <= atol + rtol * |b| */
int tu_close(double a, double b, double atol, double rtol);

#define tu_assert_close(a, b, atol, rtol)                                    \
    ck_assert_msg(tu_close((a), (b), (atol), (rtol)),                        \
                  "%s = %.9g, expected %s = %.9g", #a, (double)(a), #b,      \
                  (double)(b))

/* A counting allocator that can fail on request: pass tu_allocator(&c) as
 * a model's allocator (or to bnn_load) and every library allocation is
 * counted, and the chosen one fails. */
typedef struct tu_alloc {
    size_t calls;       /* alloc calls since the last tu_alloc_arm */
    size_t fail_at;     /* this call (1-based) returns NULL; 0: none does */
    int fail_rest;      /* 1: every call from fail_at on fails too */
    size_t cap;         /* larger requests return NULL; 0: no cap */
    size_t failed;      /* NULLs returned since the last tu_alloc_arm */
    size_t live;        /* blocks handed out and not yet freed */
    size_t max_request; /* largest request seen */
} tu_alloc;
bnn_allocator tu_allocator(tu_alloc *c);
/* Restart the counts; call fail_at (0: none) fails, and with fail_rest
 * every later one too. */
void tu_alloc_arm(tu_alloc *c, size_t fail_at, int fail_rest);

/* A model with these layer sizes, activation and likelihood (noise_sigma
 * for a Gaussian one), through allocator al (NULL: the default); fails the
 * test if it cannot be made. */
bnn_model *tu_model(const size_t *sizes, size_t n, bnn_activation act, bnn_likelihood lik,
                    float noise_sigma, const bnn_allocator *al);

/* bnn_svi_config defaults with dataset_size (which has none) set. */
bnn_svi_config tu_svi(size_t dataset_size);

/* 1 in a ThreadSanitizer build (gcc or clang). */
#if defined(__SANITIZE_THREAD__)
#define TU_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TU_UNDER_TSAN 1
#endif
#endif
#ifndef TU_UNDER_TSAN
#define TU_UNDER_TSAN 0
#endif

#endif
