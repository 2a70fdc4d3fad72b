/* The IDX reader against small files written here: valid plain and gzip
 * sets, and each kind of damage it must name (truncation, trailing bytes,
 * wrong magic, wrong dimensions, count mismatch, bad labels, corrupt gzip). */
#define _POSIX_C_SOURCE 200809L

#include "idx.h"
#include "check_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define N_IMG 3

typedef struct tdir {
    char path[256];
} tdir;

static void tdir_make(tdir *d)
{
    const char *base = getenv("TMPDIR");
    snprintf(d->path, sizeof d->path, "%s/bnn-idx-XXXXXX", base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(d->path));
}

static void tdir_remove(tdir *d)
{
    static const char *names[] = {
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"};
    char p[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", d->path, names[i]);
        unlink(p);
    }
    rmdir(d->path);
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void write_bytes(const char *path, const void *buf, size_t len, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, buf, (unsigned)len), (int)len);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
        ck_assert_int_eq(fclose(f), 0);
    }
}

/* Pixel p of image i: a pattern that makes every position distinct enough
 * to catch an offset error. */
static unsigned char pixel(size_t i, size_t p)
{
    return (unsigned char)((i * 37 + p * 11) % 256);
}

typedef struct spec {
    int gz;
    uint32_t img_magic, lab_magic;
    uint32_t n_img, n_lab;    /* header counts */
    uint32_t rows, cols;
    long img_delta;           /* bytes removed (<0) or appended (>0) */
    int bad_label;            /* store 10 as the last label */
} spec;

static spec spec_valid(int gz)
{
    spec s = {gz, 0x803, 0x801, N_IMG, N_IMG, 28, 28, 0, 0};
    return s;
}

static void write_set(const tdir *d, const spec *s)
{
    char p[512];
    size_t payload = (size_t)N_IMG * IDX_PIXELS;
    size_t len = 16 + payload + (s->img_delta > 0 ? (size_t)s->img_delta : 0);
    unsigned char *buf = calloc(len, 1);
    ck_assert_ptr_nonnull(buf);
    put32(buf, s->img_magic);
    put32(buf + 4, s->n_img);
    put32(buf + 8, s->rows);
    put32(buf + 12, s->cols);
    for (size_t i = 0; i < N_IMG; i++)
        for (size_t q = 0; q < IDX_PIXELS; q++)
            buf[16 + i * IDX_PIXELS + q] = pixel(i, q);
    if (s->img_delta < 0)
        len -= (size_t)(-s->img_delta);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte%s", d->path, s->gz ? ".gz" : "");
    write_bytes(p, buf, len, s->gz);
    free(buf);

    unsigned char lab[8 + N_IMG];
    put32(lab, s->lab_magic);
    put32(lab + 4, s->n_lab);
    for (size_t i = 0; i < N_IMG; i++)
        lab[8 + i] = (unsigned char)(i * 4 + 1); /* 1, 5, 9 */
    if (s->bad_label)
        lab[8 + N_IMG - 1] = 10;
    size_t llen = 8 + (s->n_lab < N_IMG ? s->n_lab : N_IMG);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte%s", d->path, s->gz ? ".gz" : "");
    write_bytes(p, lab, llen, s->gz);
}

/* Load the set and expect failure with `needle` in the message, with the
 * output left untouched. */
static void expect_error(const spec *s, const char *needle)
{
    tdir d;
    tdir_make(&d);
    write_set(&d, s);
    char err[512] = "";
    idx_set set = {42, (float *)&set, NULL};
    ck_assert_int_eq(idx_load(d.path, "train", &set, err, sizeof err), -1);
    ck_assert_msg(strstr(err, needle) != NULL, "message \"%s\" lacks \"%s\"", err,
                  needle);
    ck_assert_uint_eq(set.n, 42);
    ck_assert_ptr_eq(set.images, (float *)&set);
    ck_assert_ptr_null(set.labels);
    tdir_remove(&d);
}

static void check_valid(int gz)
{
    tdir d;
    tdir_make(&d);
    spec s = spec_valid(gz);
    write_set(&d, &s);
    char err[512] = "";
    idx_set set;
    ck_assert_msg(idx_load(d.path, "train", &set, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(set.n, N_IMG);
    for (size_t i = 0; i < N_IMG; i++) {
        ck_assert_int_eq(set.labels[i], (int)(i * 4 + 1));
        for (size_t q = 0; q < IDX_PIXELS; q++) {
            float want = (float)pixel(i, q) / 255.0f;
            ck_assert_msg(set.images[i * IDX_PIXELS + q] == want,
                          "image %zu pixel %zu: %g != %g", i, q,
                          (double)set.images[i * IDX_PIXELS + q], (double)want);
        }
    }
    /* The extreme pixel values map exactly onto [0, 1]. */
    ck_assert(set.images[0] == 0.0f);
    idx_free(&set);
    ck_assert_ptr_null(set.images);
    tdir_remove(&d);
}

START_TEST(valid_plain) { check_valid(0); }
END_TEST

START_TEST(valid_gzip) { check_valid(1); }
END_TEST

START_TEST(plain_preferred_over_gzip)
{
    /* With both names present the plain file wins: make the .gz unusable. */
    tdir d;
    tdir_make(&d);
    spec s = spec_valid(0);
    write_set(&d, &s);
    char p[512];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", d.path);
    write_bytes(p, "junk", 4, 0);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", d.path);
    write_bytes(p, "junk", 4, 0);
    char err[512] = "";
    idx_set set;
    ck_assert_msg(idx_load(d.path, "train", &set, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(set.n, N_IMG);
    idx_free(&set);
    tdir_remove(&d);
}
END_TEST

START_TEST(truncated)
{
    for (int gz = 0; gz <= 1; gz++) {
        spec s = spec_valid(gz);
        s.img_delta = -100;
        expect_error(&s, "truncated");
        /* A header that claims more images than the file holds. */
        s = spec_valid(gz);
        s.n_img = s.n_lab = N_IMG + 1;
        expect_error(&s, "truncated");
        /* Cut inside the header. */
        s = spec_valid(gz);
        s.img_delta = -(long)(N_IMG * IDX_PIXELS + 6);
        expect_error(&s, "truncated header");
    }
}
END_TEST

START_TEST(trailing)
{
    for (int gz = 0; gz <= 1; gz++) {
        spec s = spec_valid(gz);
        s.img_delta = 5;
        expect_error(&s, "trailing data");
    }
}
END_TEST

START_TEST(bad_magic)
{
    for (int gz = 0; gz <= 1; gz++) {
        spec s = spec_valid(gz);
        s.img_magic = 0x00000903; /* signed bytes: not what we read */
        expect_error(&s, "magic 0x00000903");
        s = spec_valid(gz);
        s.img_magic = 0x801;
        expect_error(&s, "is an IDX label file");
        s = spec_valid(gz);
        s.lab_magic = 0x803;
        expect_error(&s, "is an IDX image file");
    }
}
END_TEST

START_TEST(bad_dims)
{
    spec s = spec_valid(0);
    s.rows = 27;
    expect_error(&s, "27x28");
    s = spec_valid(1);
    s.cols = 32;
    expect_error(&s, "28x32");
}
END_TEST

START_TEST(count_mismatch)
{
    spec s = spec_valid(0);
    s.n_lab = N_IMG - 1;
    expect_error(&s, "holds 3 images but");
}
END_TEST

START_TEST(bad_label)
{
    spec s = spec_valid(1);
    s.bad_label = 1;
    expect_error(&s, "label 2 is 10");
}
END_TEST

START_TEST(missing)
{
    tdir d;
    tdir_make(&d);
    char err[512] = "";
    idx_set set;
    ck_assert_int_eq(idx_load(d.path, "train", &set, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "neither") != NULL, "%s", err);
    tdir_remove(&d);
}
END_TEST

/* Damage the compressed bytes of a valid gzip image file. */
static void damage_gzip(int cut_trailer)
{
    tdir d;
    tdir_make(&d);
    spec s = spec_valid(1);
    write_set(&d, &s);
    char p[512];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", d.path);
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char buf[8192];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_gt(len, 40);
    ck_assert_uint_lt(len, sizeof buf);
    if (cut_trailer)
        len -= 4; /* drop ISIZE: the data is whole, the stream is not */
    else
        buf[len - 6] ^= 0xff; /* inside the CRC-32 of the trailer */
    write_bytes(p, buf, len, 0);
    char err[512] = "";
    idx_set set;
    ck_assert_int_eq(idx_load(d.path, "train", &set, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "train-images-idx3-ubyte.gz") != NULL, "%s", err);
    tdir_remove(&d);
}

START_TEST(corrupt_gzip_crc) { damage_gzip(0); }
END_TEST

START_TEST(cut_gzip_trailer) { damage_gzip(1); }
END_TEST

START_TEST(read_file_direct)
{
    tdir d;
    tdir_make(&d);
    spec s = spec_valid(0);
    write_set(&d, &s);
    char p[512], err[256];
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", d.path);
    size_t n = 0;
    uint8_t *raw = NULL;
    ck_assert_int_eq(idx_read_file(p, 0, &n, &raw, err, sizeof err), 0);
    ck_assert_uint_eq(n, N_IMG);
    ck_assert_uint_eq(raw[0], 1);
    ck_assert_uint_eq(raw[2], 9);
    free(raw);
    tdir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("reader");
    tcase_add_test(tc, valid_plain);
    tcase_add_test(tc, valid_gzip);
    tcase_add_test(tc, plain_preferred_over_gzip);
    tcase_add_test(tc, truncated);
    tcase_add_test(tc, trailing);
    tcase_add_test(tc, bad_magic);
    tcase_add_test(tc, bad_dims);
    tcase_add_test(tc, count_mismatch);
    tcase_add_test(tc, bad_label);
    tcase_add_test(tc, missing);
    tcase_add_test(tc, corrupt_gzip_crc);
    tcase_add_test(tc, cut_gzip_trailer);
    tcase_add_test(tc, read_file_direct);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return ex_run(suite()); }
