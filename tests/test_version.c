/* Header, library and build agree on the version; status strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "testutil.h"

START_TEST(test_header_matches_library)
{
    ck_assert_uint_eq(bnn_version_number(), BNN_VERSION_NUMBER);
    ck_assert_str_eq(bnn_version_string(), BNN_VERSION_STRING);
    char buf[64];
    snprintf(buf, sizeof buf, "%d.%d.%d", BNN_VERSION_MAJOR, BNN_VERSION_MINOR,
             BNN_VERSION_PATCH);
    ck_assert_str_eq(buf, BNN_VERSION_STRING);
    ck_assert_uint_eq(BNN_VERSION_NUMBER, BNN_VERSION_MAJOR * 10000u +
                                              BNN_VERSION_MINOR * 100u +
                                              BNN_VERSION_PATCH);
}
END_TEST

START_TEST(test_matches_build_version)
{
    const char *v = getenv("BNN_PROJECT_VERSION");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(bnn_version_string(), v);
}
END_TEST

START_TEST(test_status_strings)
{
    static const struct {
        bnn_status s;
        int value;
        const char *name;
    } pinned[] = {
        {BNN_OK, 0, "BNN_OK"},
        {BNN_E_INVALID, 1, "BNN_E_INVALID"},
        {BNN_E_NOMEM, 2, "BNN_E_NOMEM"},
        {BNN_E_SHAPE, 3, "BNN_E_SHAPE"},
        {BNN_E_IO, 4, "BNN_E_IO"},
        {BNN_E_FORMAT, 5, "BNN_E_FORMAT"},
        {BNN_E_VERSION, 6, "BNN_E_VERSION"},
        {BNN_E_NUMERIC, 7, "BNN_E_NUMERIC"},
        {BNN_E_STATE, 8, "BNN_E_STATE"},
        {BNN_E_UNSUPPORTED, 9, "BNN_E_UNSUPPORTED"},
        {BNN_E_INTERNAL, 10, "BNN_E_INTERNAL"},
    };
    for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++) {
        ck_assert_int_eq((int)pinned[i].s, pinned[i].value);
        ck_assert_str_eq(bnn_status_string(pinned[i].s), pinned[i].name);
    }
    ck_assert_str_eq(bnn_status_string((bnn_status)99), "BNN_E_UNKNOWN");
    ck_assert_ptr_nonnull(bnn_last_error());
}
END_TEST

int main(void)
{
    Suite *s = suite_create("version");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_header_matches_library);
    tcase_add_test(tc, test_matches_build_version);
    tcase_add_test(tc, test_status_strings);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
