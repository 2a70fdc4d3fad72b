/* Which CBLAS the test binaries really run.  On Debian libblas.so.3 is an
 * alternative that points at OpenBLAS whenever it is installed, so a
 * "reference" build silently runs OpenBLAS unless the loader is steered to
 * the netlib copy.  BNN_EXPECT_BLAS (openblas | reference | any) names the
 * expected implementation; the check is on the files actually mapped.
 * BNN_EXPECT_CORENAME, when set, names the OpenBLAS kernel that must be
 * running (what OPENBLAS_CORETYPE asked for), so a CI phase that forces a
 * kernel knows it got it rather than a silent fallback. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <cblas.h>
#include <dlfcn.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { FOUND_OPENBLAS = 1, FOUND_REFERENCE = 2 };

/* Classify every mapped shared object whose name mentions BLAS.  OpenBLAS
 * installs its libblas.so.3 under an openblas-* folder; the reference
 * implementation lives in .../blas/libblas.so.3. */
static int mapped_blas(char *paths, size_t cap)
{
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_msg(f != NULL, "cannot read /proc/self/maps");
    char line[4096];
    int found = 0;
    paths[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        char *path = strchr(line, '/');
        if (!path || !strstr(path, "blas") || !strstr(path, ".so"))
            continue;
        path[strcspn(path, "\n")] = '\0';
        if (strstr(paths, path))
            continue;
        if (strlen(paths) + strlen(path) + 2 < cap) {
            strcat(paths, path);
            strcat(paths, " ");
        }
        if (strstr(path, "openblas"))
            found |= FOUND_OPENBLAS;
        else if (strstr(path, "/blas/libblas.so") ||
                 strstr(path, "/libblas.so"))
            found |= FOUND_REFERENCE;
    }
    fclose(f);
    return found;
}

START_TEST(test_expected_blas_is_mapped)
{
    /* A real call, so that the loader cannot have dropped the library and
     * so that the mapped library is known to compute. */
    float x[3] = {1.0f, 2.0f, 3.0f}, y[3] = {4.0f, -5.0f, 6.0f};
    ck_assert_float_eq(cblas_sdot(3, x, 1, y, 1), 12.0f);

    char paths[8192];
    int found = mapped_blas(paths, sizeof paths);
    const char *expect = getenv("BNN_EXPECT_BLAS");
    if (!expect || !*expect)
        expect = "any";
    printf("BLAS mapped: %s(expected: %s)\n", paths, expect);

    ck_assert_msg(found != 0, "no BLAS library mapped: %s", paths);
    ck_assert_msg(found != (FOUND_OPENBLAS | FOUND_REFERENCE),
                  "two BLAS implementations mapped: %s", paths);
    if (strcmp(expect, "openblas") == 0)
        ck_assert_msg(found == FOUND_OPENBLAS, "OpenBLAS expected, got %s",
                      paths);
    else if (strcmp(expect, "reference") == 0)
        ck_assert_msg(found == FOUND_REFERENCE,
                      "reference BLAS expected, got %s (set LD_LIBRARY_PATH "
                      "to the netlib folder)", paths);
    else
        ck_assert_msg(strcmp(expect, "any") == 0,
                      "BNN_EXPECT_BLAS must be openblas, reference or any");
}
END_TEST

START_TEST(test_expected_kernel_runs)
{
    const char *expect = getenv("BNN_EXPECT_CORENAME");
    char *(*corename)(void) = NULL;
    *(void **)&corename = dlsym(RTLD_DEFAULT, "openblas_get_corename");
    const char *got = corename ? corename() : NULL;
    printf("OpenBLAS kernel: %s (expected: %s)\n", got ? got : "none (not OpenBLAS)",
           expect && *expect ? expect : "any");
    if (!expect || !*expect)
        return;
    ck_assert_msg(got != NULL, "kernel %s expected, but no OpenBLAS is loaded", expect);
    ck_assert_msg(strcasecmp(got, expect) == 0, "OpenBLAS runs kernel %s, expected %s", got,
                  expect);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("blas_loaded");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_expected_blas_is_mapped);
    tcase_add_test(tc, test_expected_kernel_runs);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
