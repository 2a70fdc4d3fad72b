/* The image shifts of the out-of-distribution evaluation against exact
 * expectations: the identity, quarter turns (exact permutations), linear
 * images (which bilinear interpolation reproduces exactly), zero fill, and
 * the noise's range and mean. */
#include "image.h"
#include "idx.h"
#include "check_main.h"

#include <math.h>
#include <string.h>

static void random_image(float *x, uint64_t seed)
{
    image_noise(x, IDX_PIXELS, &seed);
}

START_TEST(rotate_zero_is_identity)
{
    float in[IDX_PIXELS], out[IDX_PIXELS];
    random_image(in, 1);
    image_rotate(in, out, 0.0);
    ck_assert(memcmp(in, out, sizeof in) == 0);
}
END_TEST

START_TEST(rotate_quarter_turns)
{
    float in[IDX_PIXELS], out[IDX_PIXELS], back[IDX_PIXELS];
    random_image(in, 2);
    image_rotate(in, out, 90.0);
    for (int r = 0; r < 28; r++)
        for (int q = 0; q < 28; q++)
            ck_assert_float_eq_tol(out[r * 28 + q], in[(27 - q) * 28 + r], 1e-6);
    image_rotate(in, out, 180.0);
    for (int r = 0; r < 28; r++)
        for (int q = 0; q < 28; q++)
            ck_assert_float_eq_tol(out[r * 28 + q], in[(27 - r) * 28 + 27 - q], 1e-6);
    image_rotate(in, out, 90.0);
    image_rotate(out, back, -90.0);
    for (int i = 0; i < IDX_PIXELS; i++)
        ck_assert_float_eq_tol(back[i], in[i], 1e-6);
}
END_TEST

/* f(column, row) = 1 + 0.03 column + 0.01 row is linear, so bilinear
 * interpolation returns f at the exact source point wherever all four
 * neighbours lie inside; outside the image, zero. */
START_TEST(rotate_linear_image_exactly)
{
    float in[IDX_PIXELS], out[IDX_PIXELS];
    for (int r = 0; r < 28; r++)
        for (int q = 0; q < 28; q++)
            in[r * 28 + q] = (float)(1 + 0.03 * q + 0.01 * r);
    const double degs[3] = {30, 60, -45};
    for (int k = 0; k < 3; k++) {
        double a = degs[k] * 3.14159265358979323846 / 180, cs = cos(a), sn = sin(a);
        image_rotate(in, out, degs[k]);
        size_t inside = 0, outside = 0;
        for (int r = 0; r < 28; r++)
            for (int q = 0; q < 28; q++) {
                double dx = q - 13.5, dy = r - 13.5;
                double sx = 13.5 + cs * dx + sn * dy, sy = 13.5 - sn * dx + cs * dy;
                if (sx >= 0 && sx <= 27 && sy >= 0 && sy <= 27) {
                    ck_assert_double_eq_tol(out[r * 28 + q], 1 + 0.03 * sx + 0.01 * sy, 1e-5);
                    inside++;
                } else if (sx <= -1 || sx >= 28 || sy <= -1 || sy >= 28) {
                    ck_assert_float_eq(out[r * 28 + q], 0.0f);
                    outside++;
                }
            }
        ck_assert_uint_gt(inside, 500);
        ck_assert_uint_gt(outside, 10); /* the corners of a turned square */
    }
}
END_TEST

START_TEST(noise_range_and_mean)
{
    enum { N = 100000 };
    static float x[N], y[N];
    uint64_t s1 = 7, s2 = 7;
    image_noise(x, N, &s1);
    image_noise(y, N, &s2);
    ck_assert(memcmp(x, y, sizeof x) == 0); /* deterministic */
    ck_assert(s1 == s2 && s1 != 7);
    double sum = 0;
    for (int i = 0; i < N; i++) {
        ck_assert(x[i] >= 0.0f && x[i] < 1.0f);
        sum += x[i];
    }
    /* standard error of the mean: sqrt(1/12 / N) = 0.0009 */
    ck_assert_double_eq_tol(sum / N, 0.5, 0.005);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("shifts");
    tcase_add_test(tc, rotate_zero_is_identity);
    tcase_add_test(tc, rotate_quarter_turns);
    tcase_add_test(tc, rotate_linear_image_exactly);
    tcase_add_test(tc, noise_range_and_mean);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return ex_run(suite()); }
