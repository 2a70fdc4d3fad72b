/* Strict IDX reader.  The format: a big-endian magic 0x0000 08 D (unsigned
 * bytes, D dimensions), D big-endian uint32 sizes, then the bytes.  Real
 * files in the wild are often truncated downloads or mislabelled gzip files,
 * so every mismatch gets its own message naming the file. */
#include "idx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

/* Read up to len bytes; gzread takes an unsigned count, so go in chunks.
 * Returns the bytes read (short only at end of stream) or -1 on error. */
static long long read_some(gzFile f, void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done;
        if (chunk > (1u << 30))
            chunk = 1u << 30;
        int r = gzread(f, p + done, (unsigned)chunk);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (long long)done;
}

/* zlib's message, without the "path: " prefix it adds. */
static const char *gz_message(gzFile f, const char *path)
{
    int errnum = 0;
    const char *msg = gzerror(f, &errnum);
    if (errnum == Z_ERRNO)
        return strerror(errno);
    if (!msg || !*msg)
        return "read error";
    size_t len = strlen(path);
    if (strncmp(msg, path, len) == 0 && strncmp(msg + len, ": ", 2) == 0)
        msg += len + 2;
    return msg;
}

int idx_read_file(const char *path, int want_images, size_t *count,
                  uint8_t **data, char *err, size_t errlen)
{
    const uint32_t magic_want = want_images ? IDX_MAGIC_IMAGES : IDX_MAGIC_LABELS;
    const size_t header_len = want_images ? 16 : 8;
    const char *what = want_images ? "image" : "label";
    unsigned char hdr[16];
    struct stat st;

    if (stat(path, &st) != 0)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    gzFile f = gzopen(path, "rb");
    if (!f)
        return fail(err, errlen, "%s: cannot open: %s", path,
                    errno ? strerror(errno) : "out of memory");

    long long got = read_some(f, hdr, header_len);
    if (got < 0) {
        fail(err, errlen, "%s: %s", path, gz_message(f, path));
        gzclose(f);
        return -1;
    }
    if ((size_t)got < 4) {
        fail(err, errlen, "%s: too short for an IDX header (%lld bytes)", path, got);
        gzclose(f);
        return -1;
    }
    const uint32_t magic = be32(hdr);
    if (magic != magic_want) {
        if (magic == IDX_MAGIC_IMAGES || magic == IDX_MAGIC_LABELS)
            fail(err, errlen, "%s: is an IDX %s file, expected a %s file", path,
                 want_images ? "label" : "image", what);
        else
            fail(err, errlen,
                 "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)", path,
                 what, (unsigned)magic, (unsigned)magic_want);
        gzclose(f);
        return -1;
    }
    if ((size_t)got < header_len) {
        fail(err, errlen, "%s: truncated header (%lld of %zu bytes)", path, got,
             header_len);
        gzclose(f);
        return -1;
    }
    const int plain = gzdirect(f);
    size_t n = be32(hdr + 4);
    size_t item = 1;
    if (want_images) {
        uint32_t rows = be32(hdr + 8), cols = be32(hdr + 12);
        if (rows != IDX_ROWS || cols != IDX_COLS) {
            fail(err, errlen, "%s: images are %ux%u, expected %dx%d", path,
                 (unsigned)rows, (unsigned)cols, IDX_ROWS, IDX_COLS);
            gzclose(f);
            return -1;
        }
        item = IDX_PIXELS;
    }
    if (n == 0) {
        fail(err, errlen, "%s: holds no %ss", path, what);
        gzclose(f);
        return -1;
    }
    if (n > SIZE_MAX / item) {
        fail(err, errlen, "%s: count %zu overflows", path, n);
        gzclose(f);
        return -1;
    }
    const size_t want = n * item;

    /* A plain file's size is known up front, so a lying header is caught
     * before allocating anything from it. */
    if (plain) {
        unsigned long long expect = (unsigned long long)header_len + want;
        if ((unsigned long long)st.st_size != expect) {
            fail(err, errlen,
                 "%s: %s: the header announces %zu %ss (%llu bytes) but the "
                 "file has %llu bytes",
                 path, (unsigned long long)st.st_size < expect ? "truncated" : "trailing data",
                 n, what, expect, (unsigned long long)st.st_size);
            gzclose(f);
            return -1;
        }
    }

    /* For gzip the uncompressed size is only known by reading: grow the
     * buffer as data arrives so a corrupt count cannot force a huge
     * allocation. */
    size_t cap = want < ((size_t)16 << 20) ? want : ((size_t)16 << 20);
    uint8_t *buf = malloc(cap);
    if (!buf) {
        gzclose(f);
        return fail(err, errlen, "%s: out of memory", path);
    }
    size_t have = 0;
    for (;;) {
        got = read_some(f, buf + have, cap - have);
        if (got < 0) {
            fail(err, errlen, "%s: %s", path, gz_message(f, path));
            goto fail_free;
        }
        have += (size_t)got;
        if (have < cap || cap == want)
            break;
        size_t ncap = cap > want / 2 ? want : cap * 2;
        uint8_t *nb = realloc(buf, ncap);
        if (!nb) {
            fail(err, errlen, "%s: out of memory", path);
            goto fail_free;
        }
        buf = nb;
        cap = ncap;
    }
    if (have < want) {
        fail(err, errlen,
             "%s: truncated: the header announces %zu %ss but the data ends "
             "after %zu",
             path, n, what, have / item);
        goto fail_free;
    }
    unsigned char extra;
    got = read_some(f, &extra, 1);
    if (got < 0) {
        fail(err, errlen, "%s: %s", path, gz_message(f, path));
        goto fail_free;
    }
    if (got > 0) {
        fail(err, errlen, "%s: trailing data after the %zu %ss the header announces",
             path, n, what);
        goto fail_free;
    }
    /* All the data arrived but the gzip trailer may still be cut off. */
    int errnum = Z_OK;
    gzerror(f, &errnum);
    if (errnum != Z_OK) {
        fail(err, errlen, "%s: truncated or corrupt gzip stream (%s)", path,
             gz_message(f, path));
        goto fail_free;
    }
    gzclose(f);
    *count = n;
    *data = buf;
    return 0;

fail_free:
    free(buf);
    gzclose(f);
    return -1;
}

/* dir/name, or dir/name.gz when only that exists. */
static int find_file(const char *dir, const char *name, char *path, size_t len,
                     char *err, size_t errlen)
{
    struct stat st;
    int k = snprintf(path, len, "%s/%s", dir, name);
    if (k < 0 || (size_t)k + 3 >= len)
        return fail(err, errlen, "%s/%s: path too long", dir, name);
    if (stat(path, &st) == 0)
        return 0;
    strcat(path, ".gz");
    if (stat(path, &st) == 0)
        return 0;
    return fail(err, errlen, "neither %s/%s nor %s/%s.gz exists", dir, name, dir,
                name);
}

int idx_load(const char *dir, const char *prefix, idx_set *out, char *err,
             size_t errlen)
{
    char name[256], ipath[4096], lpath[4096];
    uint8_t *px = NULL, *lab = NULL;
    size_t ni = 0, nl = 0;

    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    if (find_file(dir, name, ipath, sizeof ipath, err, errlen))
        return -1;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    if (find_file(dir, name, lpath, sizeof lpath, err, errlen))
        return -1;
    if (idx_read_file(ipath, 1, &ni, &px, err, errlen))
        return -1;
    if (idx_read_file(lpath, 0, &nl, &lab, err, errlen)) {
        free(px);
        return -1;
    }
    if (ni != nl) {
        fail(err, errlen, "%s holds %zu images but %s holds %zu labels", ipath,
             ni, lpath, nl);
        goto fail_free;
    }
    for (size_t i = 0; i < nl; i++) {
        if (lab[i] >= IDX_CLASSES) {
            fail(err, errlen, "%s: label %zu is %u, expected 0..%d", lpath, i,
                 (unsigned)lab[i], IDX_CLASSES - 1);
            goto fail_free;
        }
    }
    float *images = malloc(ni * IDX_PIXELS * sizeof *images);
    int32_t *labels = malloc(ni * sizeof *labels);
    if (!images || !labels) {
        free(images);
        free(labels);
        fail(err, errlen, "out of memory for %zu images", ni);
        goto fail_free;
    }
    for (size_t i = 0; i < ni * IDX_PIXELS; i++)
        images[i] = (float)px[i] / 255.0f;
    for (size_t i = 0; i < ni; i++)
        labels[i] = lab[i];
    free(px);
    free(lab);
    out->n = ni;
    out->images = images;
    out->labels = labels;
    return 0;

fail_free:
    free(px);
    free(lab);
    return -1;
}

void idx_free(idx_set *set)
{
    if (!set)
        return;
    free(set->images);
    free(set->labels);
    set->images = NULL;
    set->labels = NULL;
    set->n = 0;
}
