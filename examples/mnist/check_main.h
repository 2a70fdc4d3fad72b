/* What the example's Check suites share, kept here so that the example
 * builds and tests on its own, without the library's test tree. */
#ifndef BNN_EXAMPLE_CHECK_MAIN_H
#define BNN_EXAMPLE_CHECK_MAIN_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

/* Run a suite in fork mode (a crash fails only its own test) and return the
 * process exit code. */
static inline int ex_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* splitmix64: deterministic test data. */
static inline uint64_t ex_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
