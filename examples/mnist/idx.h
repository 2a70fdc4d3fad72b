/* Strict reader for MNIST-style IDX files (plain or gzip-compressed). */
#ifndef BNN_EXAMPLE_IDX_H
#define BNN_EXAMPLE_IDX_H

#include <stddef.h>
#include <stdint.h>

#define IDX_ROWS 28
#define IDX_COLS 28
#define IDX_PIXELS (IDX_ROWS * IDX_COLS)
#define IDX_CLASSES 10

typedef struct idx_set {
    size_t n;        /* images */
    float *images;   /* n x 784, pixel / 255 */
    int32_t *labels; /* n, each in [0, 10) */
} idx_set;

/* Load `prefix`-images-idx3-ubyte and `prefix`-labels-idx1-ubyte from dir
 * (prefix is "train" or "t10k"); each file may also be named with a .gz
 * suffix.  Checks magic numbers, 28x28 images, equal counts, that each file
 * holds exactly what its header announces, and that labels are < 10.
 * Returns 0, or -1 with a message in err (errlen bytes) and *out untouched. */
int idx_load(const char *dir, const char *prefix, idx_set *out, char *err,
             size_t errlen);

/* Read one file, plain or gzip (gzread passes plain files through): an
 * image file (magic 0x00000803, n x 28 x 28) when want_images is nonzero,
 * else a label file (magic 0x00000801, n).  On success *data holds the raw
 * bytes after the header (malloc'd; n x 784 or n) and *count is n. */
int idx_read_file(const char *path, int want_images, size_t *count,
                  uint8_t **data, char *err, size_t errlen);

void idx_free(idx_set *set);

#endif
