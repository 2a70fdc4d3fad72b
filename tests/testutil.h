/* Shared helpers for the Check suites. */
#ifndef BNN_TESTUTIL_H
#define BNN_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

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
