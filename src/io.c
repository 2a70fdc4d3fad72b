/* bnn_save / bnn_load: the version 1, 2 and 3 file format described in
 * docs/format.md.  Every field is written byte by byte in little-endian
 * order, so files move between machines and compilers unchanged; loading
 * trusts nothing in the file until it has been checked against the bytes
 * that are actually there. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"

/* Floats are stored as their IEEE-754 binary32 bit patterns. */
_Static_assert(sizeof(float) == 4 && FLT_RADIX == 2 && FLT_MANT_DIG == 24 &&
                   FLT_MAX_EXP == 128,
               "libbnn files need IEEE-754 binary32 floats");

#define IO_VERSION 4u
/* Version 2 adds the IVON optimizer section; files without IVON state are
 * written as version 1, which every reader since 0.1 loads. */
#define IO_VERSION_IVON 2u
/* Version 3: the learned-noise and heteroscedastic likelihoods, with the
 * noise section; written exactly for those models. */
#define IO_VERSION_NOISE 3u
/* Version 4: the layer sequence in the model section (everything of
 * version 3 kept); written exactly for models made from a sequence.  A
 * file is written with the lowest version that holds it, which every
 * reader since that version loads. */
#define IO_VERSION_SEQ 4u
#define IO_FLAG_OPTIMIZER 1u
#define IO_KNOWN_FLAGS IO_FLAG_OPTIMIZER

/* PNG-style signature: the high byte catches 7-bit transports, CR LF and
 * the lone LF catch newline conversion, ^Z stops DOS `type`. */
static const unsigned char io_magic[8] = {0x89, 'B', 'N', 'N',
                                          '\r', '\n', 0x1a, '\n'};

/* Section sizes in bytes (see docs/format.md). */
#define IO_HEADER_BYTES 24u      /* magic, version, flags, file length */
#define IO_MODEL_FIXED_BYTES 36u /* n_sizes + 8 four-byte fields */
#define IO_MODEL_FIELDS_BYTES 32u /* the 8 four-byte fields alone */
#define IO_SEQ_FIXED_BYTES 28u   /* input shape (3 x u64), entry count */
#define IO_SPEC_BYTES 84u        /* one bnn_layer_spec */
#define IO_GUIDE_FIXED_BYTES 8u  /* parameter count */
#define IO_OPT_FIXED_BYTES 88u   /* configs, step, state count */
#define IO_IVON_BYTES 16u        /* IVON's four settings */
#define IO_CRC_BYTES 4u
#define IO_MIN_FILE_BYTES                                                    \
    (IO_HEADER_BYTES + IO_MODEL_FIXED_BYTES + 2 * 8u + IO_GUIDE_FIXED_BYTES + \
     IO_CRC_BYTES)

/* Size of the staging buffer between the serializer and stdio. */
#define IO_STAGE_BYTES ((size_t)1 << 16)

/* ---- CRC-32 ------------------------------------------------------------- */

uint32_t io_crc32(uint32_t crc, const void *data, size_t n)
{
    /* The 1 KiB table is rebuilt per call (2048 shifts) instead of living
     * in a global: callers pass large blocks, so it costs nothing. */
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        table[i] = c;
    }
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

/* ---- little-endian primitives ------------------------------------------- */

static uint32_t le_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t le_u64(const unsigned char *p)
{
    return (uint64_t)le_u32(p) | (uint64_t)le_u32(p + 4) << 32;
}

static void set_le_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Tested on the bit pattern so the answer does not depend on the floating
 * point environment: exponent all ones is Inf or NaN. */
static int bits_finite(uint32_t u)
{
    return (u & 0x7f800000u) != 0x7f800000u;
}

/* ---- output sink: caller's buffer, or a staging buffer in front of a FILE */

typedef struct io_sink {
    unsigned char *buf; /* output (memory) or staging (file) */
    size_t cap;
    size_t pos;
    FILE *f;      /* NULL when writing to memory */
    uint32_t crc; /* file mode: CRC of everything flushed so far */
    int err;      /* errno of the first failure; -1 for an internal one */
} io_sink;

static int sink_flush(io_sink *s)
{
    if (s->err)
        return -1;
    if (s->f && s->pos) {
        s->crc = io_crc32(s->crc, s->buf, s->pos);
        errno = 0;
        if (fwrite(s->buf, 1, s->pos, s->f) != s->pos) {
            s->err = errno ? errno : EIO;
            return -1;
        }
        s->pos = 0;
    }
    return 0;
}

/* Room for n (<= 8) bytes, or NULL once anything has failed. */
static unsigned char *sink_reserve(io_sink *s, size_t n)
{
    if (s->err)
        return NULL;
    if (s->cap - s->pos < n) {
        /* In memory mode the capacity was checked against the exact size
         * beforehand, so running out is a size computation bug. */
        if (!s->f) {
            s->err = -1;
            return NULL;
        }
        if (sink_flush(s) != 0)
            return NULL;
    }
    unsigned char *p = s->buf + s->pos;
    s->pos += n;
    return p;
}

static void put_bytes(io_sink *s, const unsigned char *b, size_t n)
{
    unsigned char *p = sink_reserve(s, n);
    if (p)
        memcpy(p, b, n);
}

static void put_u32(io_sink *s, uint32_t v)
{
    unsigned char *p = sink_reserve(s, 4);
    if (p)
        set_le_u32(p, v);
}

static void put_u64(io_sink *s, uint64_t v)
{
    unsigned char *p = sink_reserve(s, 8);
    if (p) {
        set_le_u32(p, (uint32_t)v);
        set_le_u32(p + 4, (uint32_t)(v >> 32));
    }
}

static void put_f32(io_sink *s, float f)
{
    put_u32(s, f32_to_bits(f));
}

static void put_f32_array(io_sink *s, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = sink_reserve(s, 4);
        if (!p)
            return;
        set_le_u32(p, f32_to_bits(x[i]));
    }
}

/* ---- what a file holds -------------------------------------------------- */

/* Bytes of the file for this guide and optimizer; 0 if that overflows. */
static size_t io_file_size(const bnn_guide *g, const bnn_optimizer *o)
{
    const bnn_model *m = g->model;
    size_t model = m->n_specs ? IO_MODEL_FIELDS_BYTES + IO_SEQ_FIXED_BYTES +
                                    IO_SPEC_BYTES * m->n_specs
                              : IO_MODEL_FIXED_BYTES + 8 * m->n_sizes;
    size_t p8, total = IO_HEADER_BYTES + model + IO_GUIDE_FIXED_BYTES + IO_CRC_BYTES;
    /* The guide holds 2P floats; the optimizer's m and v 2P each (IVON:
     * its settings and m = [g | h]). */
    if (mem_mul_overflow(g->n_params, 8, &p8) || p8 > SIZE_MAX - total)
        return 0;
    total += p8;
    /* The learned noise: its count and D floats; the optimizer's noise
     * moments 2D more.  D <= P, so none of this can overflow. */
    if (g->n_noise)
        total += 8 + 4 * g->n_noise + (o ? 8 * g->n_noise : 0);
    if (o && o->ocfg.kind == BNN_OPT_IVON) {
        if (p8 > SIZE_MAX - total - IO_OPT_FIXED_BYTES - IO_IVON_BYTES)
            return 0;
        total += IO_OPT_FIXED_BYTES + IO_IVON_BYTES + p8;
    } else if (o) {
        if (p8 > (SIZE_MAX - total - IO_OPT_FIXED_BYTES) / 2)
            return 0;
        total += IO_OPT_FIXED_BYTES + 2 * p8;
    }
    return total;
}

/* A float the model ignores, which was never validated, as the loader
 * accepts it: finite, else its default. */
static void put_f32_or(io_sink *s, float f, float dflt)
{
    put_f32(s, isfinite(f) ? f : dflt);
}

/* An enum field the model ignores: in [0, max], else its default. */
static void put_enum_or(io_sink *s, int v, uint32_t max, uint32_t dflt)
{
    put_u32(s, v >= 0 && (uint32_t)v <= max ? (uint32_t)v : dflt);
}

/* The sequence as configured (bnn_model_get_config's layers), so a loaded
 * model describes itself as the saved one did; the model re-resolves it. */
static void put_sequence(io_sink *s, const bnn_model *m)
{
    bnn_layer_spec d;
    bnn_layer_spec_init(&d);
    for (int k = 0; k < 3; k++)
        put_u64(s, (uint64_t)m->input_shape[k]);
    put_u32(s, (uint32_t)m->n_specs);
    for (size_t i = 0; i < m->n_specs; i++) {
        const bnn_layer_spec *y = &m->specs[i];
        put_u32(s, (uint32_t)y->kind); /* validated by bnn_model_create */
        put_u64(s, (uint64_t)y->units);
        put_u64(s, (uint64_t)y->kernel_h);
        put_u64(s, (uint64_t)y->kernel_w);
        put_u64(s, (uint64_t)y->stride_h);
        put_u64(s, (uint64_t)y->stride_w);
        put_u64(s, (uint64_t)y->pad_h);
        put_u64(s, (uint64_t)y->pad_w);
        /* Pooling and flatten entries ignore these, so they may hold
         * anything; weight layers' were validated. */
        put_enum_or(s, (int)y->activation, BNN_ACT_INHERIT, (uint32_t)d.activation);
        put_enum_or(s, (int)y->prior, BNN_PRIOR_INHERIT, (uint32_t)d.prior);
        put_f32_or(s, y->prior_sigma, d.prior_sigma);
        put_f32_or(s, y->prior_pi, d.prior_pi);
        put_f32_or(s, y->prior_sigma1, d.prior_sigma1);
        put_f32_or(s, y->prior_sigma2, d.prior_sigma2);
    }
}

static void put_model(io_sink *s, const bnn_model *m)
{
    /* Fields the model ignores (the noise of a categorical model, the
     * parameters of the prior not in use) were never validated and may be
     * NaN; the loader accepts only finite values, so those are written as
     * their defaults. */
    bnn_model_config d;
    bnn_model_config_init(&d);
    /* A sequence's widths follow from it (version 3 stores it instead). */
    if (!m->n_specs) {
        put_u32(s, (uint32_t)m->n_sizes);
        for (size_t i = 0; i < m->n_sizes; i++)
            put_u64(s, (uint64_t)m->sizes[i]);
    }
    put_u32(s, (uint32_t)m->activation);
    put_u32(s, (uint32_t)m->likelihood);
    put_f32(s, isfinite(m->noise_sigma) ? m->noise_sigma : d.noise_sigma);
    put_u32(s, (uint32_t)m->prior);
    put_f32(s, isfinite(m->prior_sigma) ? m->prior_sigma : d.prior_sigma);
    put_f32(s, isfinite(m->prior_pi) ? m->prior_pi : d.prior_pi);
    put_f32(s, isfinite(m->prior_sigma1) ? m->prior_sigma1 : d.prior_sigma1);
    put_f32(s, isfinite(m->prior_sigma2) ? m->prior_sigma2 : d.prior_sigma2);
    if (m->n_specs)
        put_sequence(s, m);
}

static void put_optimizer(io_sink *s, const bnn_optimizer *o, size_t n_state)
{
    const bnn_optimizer_config *c = &o->ocfg;
    const bnn_svi_config *v = &o->svi;
    put_u32(s, (uint32_t)c->kind);
    put_f32(s, c->lr);
    put_f32(s, c->beta1);
    put_f32(s, c->beta2);
    put_f32(s, c->eps);
    put_f32(s, c->momentum);
    put_f32(s, c->clip_norm);
    put_u64(s, (uint64_t)v->dataset_size);
    put_f32(s, v->kl_weight);
    put_u32(s, (uint32_t)v->estimator);
    put_u32(s, (uint32_t)v->kl_mode);
    put_u64(s, (uint64_t)v->num_particles);
    put_u64(s, (uint64_t)v->max_batch);
    put_u64(s, v->seed);
    put_u64(s, o->step);
    put_u64(s, (uint64_t)n_state);
    if (c->kind == BNN_OPT_IVON) {
        put_f32(s, c->ivon_beta2);
        put_f32(s, c->ivon_hess_init);
        put_f32(s, c->ivon_ess);
        put_f32(s, c->ivon_clip_radius);
        put_f32_array(s, o->m, n_state);
    } else {
        put_f32_array(s, o->m, n_state);
        put_f32_array(s, o->v, n_state);
    }
    put_f32_array(s, o->noise_m, o->guide->n_noise);
    put_f32_array(s, o->noise_v, o->guide->n_noise);
}

static uint32_t file_version(const bnn_guide *g, const bnn_optimizer *o)
{
    bnn_likelihood lik = g->model->likelihood;
    if (g->model->n_specs)
        return IO_VERSION_SEQ;
    if (lik == BNN_LIK_GAUSSIAN_LEARNED || lik == BNN_LIK_GAUSSIAN_HETERO)
        return IO_VERSION_NOISE;
    return o && o->ocfg.kind == BNN_OPT_IVON ? IO_VERSION_IVON : 1u;
}

/* Everything but the CRC. */
static void put_file(io_sink *s, const bnn_guide *g, const bnn_optimizer *o,
                     size_t file_size)
{
    put_bytes(s, io_magic, sizeof io_magic);
    put_u32(s, file_version(g, o));
    put_u32(s, o ? IO_FLAG_OPTIMIZER : 0u);
    put_u64(s, (uint64_t)file_size);
    put_model(s, g->model);
    put_u64(s, (uint64_t)g->n_params);
    put_f32_array(s, g->params, 2 * g->n_params);
    if (g->n_noise) {
        put_u64(s, (uint64_t)g->n_noise);
        put_f32_array(s, g->params + 2 * g->n_params, g->n_noise);
    }
    if (o)
        put_optimizer(s, o, 2 * g->n_params);
}

/* Floats per example of the training workspace's widest buffer: the
 * widest activation (pre-activations included) or a convolution's im2col
 * rows (positions x kernel_h x kernel_w x input channels); UINT64_MAX if
 * that overflows.  The format bounds max_batch times it. */
static uint64_t train_width(const bnn_model *m)
{
    uint64_t w = m->max_width;
    for (size_t l = 0; l + 1 < m->n_sizes; l++) {
        const struct model_layer *y = &m->layer[l];
        size_t pos, k;
        if (!y->conv)
            continue;
        if (mem_mul_overflow(y->out_h, y->out_w, &pos) ||
            mem_mul_overflow(pos, model_layer_in(m, l), &k))
            return UINT64_MAX;
        w = k > w ? k : w;
    }
    return w;
}

/* What the loader accepts: finite values, and no negative ones where
 * nonneg is set (-0 compares equal to 0 and passes). */
static int bits_ok(uint32_t u, int nonneg)
{
    return bits_finite(u) &&
           !(nonneg && (u & 0x80000000u) && (u & 0x7fffffffu));
}

static int floats_ok(const float *x, size_t n, int nonneg)
{
    for (size_t i = 0; i < n; i++)
        if (!bits_ok(f32_to_bits(x[i]), nonneg))
            return 0;
    return 1;
}

/* The checks bnn_save shares with bnn_save_to_memory: everything written
 * must be loadable again. */
static bnn_status check_savable(const bnn_guide *g, const bnn_optimizer *o,
                                const char *fn)
{
    if (!g)
        return error_set(BNN_E_INVALID, "%s: guide is NULL", fn);
    if (!floats_ok(g->params, 2 * g->n_params + g->n_noise, 0))
        return error_set(BNN_E_INVALID,
                         "%s: the guide's parameters hold NaN or Inf", fn);
    if (o) {
        if (o->guide != g)
            return error_set(BNN_E_INVALID,
                             "%s: the optimizer belongs to another guide", fn);
        uint64_t tw = train_width(g->model);
        if (o->svi.max_batch > IO_MAX_BATCH_X_WIDTH / tw)
            return error_set(BNN_E_INVALID,
                             "%s: max_batch %zu x layer width %zu exceeds "
                             "the file format's limit of %llu",
                             fn, o->svi.max_batch, (size_t)tw,
                             (unsigned long long)IO_MAX_BATCH_X_WIDTH);
        size_t n = 2 * g->n_params;
        if (!floats_ok(o->m, n, 0) || (o->v && !floats_ok(o->v, n, 1)) ||
            !floats_ok(o->noise_m, g->n_noise, 0) || !floats_ok(o->noise_v, g->n_noise, 1))
            return error_set(BNN_E_INVALID,
                             "%s: the optimizer state holds NaN, Inf or a "
                             "negative second moment", fn);
    }
    if (io_file_size(g, o) == 0)
        return error_set(BNN_E_SHAPE, "%s: the file size overflows", fn);
    return BNN_OK;
}

BNN_API bnn_status bnn_save_size(const bnn_guide *guide,
                                 const bnn_optimizer *opt, size_t *size)
{
    API_ENTRY();
    if (!size)
        return error_set(BNN_E_INVALID, "bnn_save_size: size is NULL");
    bnn_status st = check_savable(guide, opt, "bnn_save_size");
    if (st != BNN_OK)
        return st;
    *size = io_file_size(guide, opt);
    return BNN_OK;
}

BNN_API bnn_status bnn_save_to_memory(const bnn_guide *guide,
                                      const bnn_optimizer *opt, void *buf,
                                      size_t cap, size_t *written)
{
    API_ENTRY();
    if (!buf || !written)
        return error_set(BNN_E_INVALID,
                         "bnn_save_to_memory: buf and written must not be NULL");
    bnn_status st = check_savable(guide, opt, "bnn_save_to_memory");
    if (st != BNN_OK)
        return st;
    size_t size = io_file_size(guide, opt);
    if (cap < size)
        return error_set(BNN_E_SHAPE,
                         "bnn_save_to_memory: %zu bytes needed, capacity %zu",
                         size, cap);
    io_sink s = {buf, size, 0, NULL, 0, 0};
    put_file(&s, guide, opt, size);
    if (s.err || s.pos != size - IO_CRC_BYTES)
        return error_set(BNN_E_INTERNAL,
                         "bnn_save_to_memory: wrote %zu of %zu bytes", s.pos,
                         size - IO_CRC_BYTES);
    put_u32(&s, io_crc32(0, buf, size - IO_CRC_BYTES));
    *written = size;
    return BNN_OK;
}

/* Write the whole file to f; returns 0, or an errno value (-1 internal). */
static int write_stream(FILE *f, unsigned char *stage, const bnn_guide *g,
                        const bnn_optimizer *o, size_t size)
{
    io_sink s = {stage, IO_STAGE_BYTES, 0, f, 0, 0};
    put_file(&s, g, o, size);
    if (sink_flush(&s) != 0)
        return s.err;
    unsigned char crc[4];
    set_le_u32(crc, s.crc);
    put_bytes(&s, crc, sizeof crc);
    if (sink_flush(&s) != 0)
        return s.err;
    return 0;
}

/* Push a finished rename to disk.  Best effort: the new file is already in
 * place, and some file systems cannot open or sync a directory at all. */
static void sync_parent_dir(char *scratch, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(scratch, ".");
    } else if (slash == path) {
        strcpy(scratch, "/");
    } else {
        memcpy(scratch, path, (size_t)(slash - path));
        scratch[slash - path] = '\0';
    }
    int dfd = open(scratch, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        (void)close(dfd);
    }
}

BNN_API bnn_status bnn_save(const char *path, const bnn_guide *guide,
                            const bnn_optimizer *opt)
{
    API_ENTRY();
    if (!path || !*path)
        return error_set(BNN_E_INVALID, "bnn_save: path is NULL or empty");
    bnn_status st = check_savable(guide, opt, "bnn_save");
    if (st != BNN_OK)
        return st;
    /* Only a regular file (or a symbolic link, which rename replaces) may
     * be replaced: renaming over a device, FIFO or socket would swap a
     * system file for a model. */
    struct stat target;
    if (lstat(path, &target) == 0 && !S_ISREG(target.st_mode) && !S_ISLNK(target.st_mode))
        return error_set(BNN_E_IO, "bnn_save: %s exists and is not a regular file (%s)", path,
                         S_ISDIR(target.st_mode)    ? "a directory"
                         : S_ISCHR(target.st_mode)  ? "a character device"
                         : S_ISBLK(target.st_mode)  ? "a block device"
                         : S_ISFIFO(target.st_mode) ? "a FIFO"
                         : S_ISSOCK(target.st_mode) ? "a socket"
                                                    : "not a file");
    const bnn_allocator *a = &guide->model->alloc;
    size_t size = io_file_size(guide, opt);
    static const char suffix[] = ".tmpXXXXXX";
    size_t plen = strlen(path);
    if (plen > SIZE_MAX - sizeof suffix)
        return error_set(BNN_E_INVALID, "bnn_save: path too long");

    char *tmp = mem_alloc(a, plen + sizeof suffix);
    unsigned char *stage = mem_alloc(a, IO_STAGE_BYTES);
    if (!tmp || !stage) {
        mem_free(a, tmp);
        mem_free(a, stage);
        return error_set(BNN_E_NOMEM, "bnn_save: out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, suffix, sizeof suffix);

    /* The temporary file sits beside the target so that rename() is atomic
     * (same file system) and a crash never leaves a half-written target. */
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = error_set(BNN_E_IO, "bnn_save: cannot create a temporary file "
                       "for %s: %s", path, strerror(errno));
        goto out;
    }
    /* Replacing a file keeps its permission bits (a link's: its target's);
     * new files stay owner-only as mkstemp made them. */
    struct stat old;
    if (stat(path, &old) == 0 && S_ISREG(old.st_mode) &&
        fchmod(fd, old.st_mode & 07777) != 0) {
        st = error_set(BNN_E_IO, "bnn_save: cannot set the mode of %s: %s",
                       tmp, strerror(errno));
        (void)close(fd);
        goto fail_unlink;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        st = error_set(BNN_E_IO, "bnn_save: fdopen %s: %s", tmp,
                       strerror(errno));
        (void)close(fd);
        goto fail_unlink;
    }
    int err = write_stream(f, stage, guide, opt, size);
    if (err == 0 && fflush(f) != 0)
        err = errno ? errno : EIO;
    if (err == 0 && fsync(fileno(f)) != 0)
        err = errno ? errno : EIO;
    /* fclose releases the descriptor even when it fails. */
    if (fclose(f) != 0 && err == 0)
        err = errno ? errno : EIO;
    if (err != 0) {
        st = error_set(BNN_E_IO, "bnn_save: writing %s: %s", tmp,
                       err > 0 ? strerror(err) : "internal size mismatch");
        goto fail_unlink;
    }
    if (rename(tmp, path) != 0) {
        st = error_set(BNN_E_IO, "bnn_save: cannot rename %s to %s: %s", tmp,
                       path, strerror(errno));
        goto fail_unlink;
    }
    sync_parent_dir(tmp, path);
    st = BNN_OK;
    goto out;

fail_unlink:
    (void)unlink(tmp);
out:
    mem_free(a, tmp);
    mem_free(a, stage);
    return st;
}

/* ---- loading -------------------------------------------------------------- */

typedef struct io_reader {
    const unsigned char *p;
    size_t len; /* bytes before the CRC */
    size_t pos;
} io_reader;

static size_t rd_left(const io_reader *r)
{
    return r->len - r->pos;
}

static const unsigned char *rd_take(io_reader *r, size_t n)
{
    if (rd_left(r) < n)
        return NULL;
    const unsigned char *p = r->p + r->pos;
    r->pos += n;
    return p;
}

/* Each reader fails (returns 0) on a short read, so a field can never be
 * taken from past the end. */
static int rd_u32(io_reader *r, uint32_t *v)
{
    const unsigned char *p = rd_take(r, 4);
    if (!p)
        return 0;
    *v = le_u32(p);
    return 1;
}

static int rd_u64(io_reader *r, uint64_t *v)
{
    const unsigned char *p = rd_take(r, 8);
    if (!p)
        return 0;
    *v = le_u64(p);
    return 1;
}

/* A finite float, else 0. */
static int rd_f32(io_reader *r, float *v)
{
    uint32_t u;
    if (!rd_u32(r, &u) || !bits_finite(u))
        return 0;
    *v = bits_to_f32(u);
    return 1;
}

/* Everything the file says, checked; float arrays stay in the buffer. */
typedef struct io_contents {
    bnn_model_config mcfg;
    size_t sizes[BNN_MAX_LAYERS];
    bnn_layer_spec specs[MODEL_MAX_SPECS]; /* version 3: mcfg.layers */
    struct bnn_model desc;                 /* mcfg laid out, unallocated */
    size_t n_params;
    const unsigned char *params; /* 2 * n_params LE floats */
    int has_opt;
    bnn_optimizer_config ocfg;
    bnn_svi_config svi;
    uint64_t step;
    const unsigned char *m, *v; /* 2 * n_params LE floats each; v NULL for IVON */
    size_t n_noise;              /* learned noise: one per output, else 0 */
    const unsigned char *noise;  /* n_noise LE floats: log sigma */
    const unsigned char *noise_m, *noise_v; /* the optimizer's, n_noise each */
    uint32_t version;
} io_contents;

/* n LE floats that all pass bits_ok. */
static int check_f32_block(const unsigned char *p, size_t n, int nonneg)
{
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= bits_ok(le_u32(p + 4 * i), nonneg);
    return ok;
}

#define FORMAT_ERR(...) error_set(BNN_E_FORMAT, __VA_ARGS__)

static bnn_status parse_header(const unsigned char *b, size_t size,
                               uint32_t *flags, uint32_t *version_out)
{
    if (size < sizeof io_magic)
        return FORMAT_ERR("not a libbnn file: %zu bytes is too short", size);
    if (memcmp(b, io_magic, sizeof io_magic) != 0)
        return FORMAT_ERR("not a libbnn file (bad magic)");
    if (size < 12)
        return FORMAT_ERR("truncated libbnn file (%zu bytes)", size);
    uint32_t version = le_u32(b + 8);
    if (version == 0)
        return FORMAT_ERR("invalid format version 0");
    if (version > IO_VERSION)
        return error_set(BNN_E_VERSION,
                         "file format version %u is newer than this "
                         "library supports (%u)",
                         (unsigned)version, IO_VERSION);
    if (size < IO_MIN_FILE_BYTES)
        return FORMAT_ERR("truncated libbnn file (%zu bytes)", size);
    *flags = le_u32(b + 12);
    *version_out = version;
    uint64_t length = le_u64(b + 16);
    if (length != (uint64_t)size)
        return FORMAT_ERR("the file should be %llu bytes long but is %zu "
                          "(truncated or padded)",
                          (unsigned long long)length, size);
    uint32_t stored = le_u32(b + size - IO_CRC_BYTES);
    uint32_t crc = io_crc32(0, b, size - IO_CRC_BYTES);
    if (stored != crc)
        return FORMAT_ERR("CRC mismatch (stored %08x, computed %08x): the "
                          "file is corrupt",
                          (unsigned)stored, (unsigned)crc);
    if (*flags & ~(uint32_t)IO_KNOWN_FLAGS)
        return FORMAT_ERR("unknown flags %08x", (unsigned)*flags);
    return BNN_OK;
}

/* A create function rejected values that passed the format checks (say a
 * negative prior sigma): the file is still what is wrong. */
static bnn_status as_format_error(bnn_status st, const char *what)
{
    if (st != BNN_E_INVALID && st != BNN_E_SHAPE && st != BNN_E_UNSUPPORTED)
        return st;
    char msg[256];
    const char *e = bnn_last_error(), *colon = strstr(e, ": ");
    /* without the public function's name, which FORMAT_ERR adds again */
    snprintf(msg, sizeof msg, "%s", strncmp(e, "bnn_", 4) == 0 && colon ? colon + 2 : e);
    return FORMAT_ERR("invalid %s in file: %s", what, msg);
}

/* Version 1 and 2: N layer sizes; P follows from them, checked against the
 * bytes left before anything is multiplied out. */
static bnn_status parse_sizes(io_reader *r, io_contents *c, uint64_t *p_out)
{
    uint32_t n_sizes;
    if (!rd_u32(r, &n_sizes))
        return FORMAT_ERR("truncated model section");
    if (n_sizes < 2 || n_sizes > BNN_MAX_LAYERS)
        return FORMAT_ERR("layer count %u out of range [2, %d]",
                          (unsigned)n_sizes, BNN_MAX_LAYERS);
    /* P, the network's parameter count, must fit the bytes that follow as
     * 2P floats, which bounds every product below. */
    const uint64_t budget = rd_left(r) / 8;
    uint64_t sizes[BNN_MAX_LAYERS], p = 0;
    for (uint32_t i = 0; i < n_sizes; i++) {
        if (!rd_u64(r, &sizes[i]))
            return FORMAT_ERR("truncated layer sizes");
        if (sizes[i] == 0 || sizes[i] > budget)
            return FORMAT_ERR("layer size %llu out of range",
                              (unsigned long long)sizes[i]);
    }
    for (uint32_t l = 0; l + 1 < n_sizes; l++) {
        uint64_t in = sizes[l], out = sizes[l + 1];
        /* in, out <= budget < 2^61, so in + 1 cannot overflow */
        if (out > (budget - p) / (in + 1))
            return FORMAT_ERR("the architecture has more parameters than "
                              "the file holds");
        p += out * (in + 1);
    }
    for (uint32_t i = 0; i < n_sizes; i++)
        c->sizes[i] = (size_t)sizes[i];
    c->mcfg.n_sizes = n_sizes;
    c->mcfg.layer_sizes = c->sizes;
    *p_out = p;
    return BNN_OK;
}

/* A u64 that fits size_t, else 0. */
static int rd_size(io_reader *r, size_t *v)
{
    uint64_t u;
    if (!rd_u64(r, &u) || u > SIZE_MAX)
        return 0;
    *v = (size_t)u;
    return 1;
}

/* Version 3: the input shape and the layer sequence, each field read into
 * a full bnn_layer_spec and range-checked here; what the entries mean
 * together (shapes, order, priors) is bnn_model_create's validation, run
 * by parse_model before anything is allocated. */
static bnn_status parse_sequence(io_reader *r, io_contents *c)
{
    bnn_model_config *m = &c->mcfg;
    uint32_t n;
    if (!rd_size(r, &m->input_height) || !rd_size(r, &m->input_width) ||
        !rd_size(r, &m->input_channels))
        return FORMAT_ERR("truncated layer sequence or input dimension above SIZE_MAX");
    if (!rd_u32(r, &n))
        return FORMAT_ERR("truncated layer sequence");
    if (n == 0 || n > MODEL_MAX_SPECS)
        return FORMAT_ERR("layer sequence of %u entries out of range [1, %d]", (unsigned)n,
                          MODEL_MAX_SPECS);
    if (rd_left(r) / IO_SPEC_BYTES < n)
        return FORMAT_ERR("truncated layer sequence (%u entries)", (unsigned)n);
    for (uint32_t i = 0; i < n; i++) {
        bnn_layer_spec *y = &c->specs[i];
        bnn_layer_spec_init(y);
        uint32_t kind, act, prior;
        if (!rd_u32(r, &kind) || !rd_size(r, &y->units) || !rd_size(r, &y->kernel_h) ||
            !rd_size(r, &y->kernel_w) || !rd_size(r, &y->stride_h) ||
            !rd_size(r, &y->stride_w) || !rd_size(r, &y->pad_h) || !rd_size(r, &y->pad_w))
            return FORMAT_ERR("layers[%u]: a size above SIZE_MAX", (unsigned)i);
        if (!rd_u32(r, &act) || !rd_u32(r, &prior) || !rd_f32(r, &y->prior_sigma) ||
            !rd_f32(r, &y->prior_pi) || !rd_f32(r, &y->prior_sigma1) ||
            !rd_f32(r, &y->prior_sigma2))
            return FORMAT_ERR("layers[%u]: non-finite prior parameter", (unsigned)i);
        if (kind > BNN_LAYER_FLATTEN || act > BNN_ACT_INHERIT || prior > BNN_PRIOR_INHERIT)
            return FORMAT_ERR("layers[%u]: unknown kind %u, activation %u or prior %u",
                              (unsigned)i, (unsigned)kind, (unsigned)act, (unsigned)prior);
        y->kind = (bnn_layer_kind)kind;
        y->activation = (bnn_activation)act;
        y->prior = (bnn_prior)prior;
    }
    m->n_layers = n;
    m->layers = c->specs;
    return BNN_OK;
}

static bnn_status parse_model(io_reader *r, io_contents *c)
{
    uint32_t act, lik, prior;
    bnn_model_config *m = &c->mcfg;
    bnn_model_config_init(m);
    uint64_t p = 0;
    bnn_status st;
    int seq = c->version >= IO_VERSION_SEQ;
    if (!seq && (st = parse_sizes(r, c, &p)) != BNN_OK)
        return st;
    if (!rd_u32(r, &act) || !rd_u32(r, &lik) || !rd_f32(r, &m->noise_sigma) ||
        !rd_u32(r, &prior) || !rd_f32(r, &m->prior_sigma) ||
        !rd_f32(r, &m->prior_pi) || !rd_f32(r, &m->prior_sigma1) ||
        !rd_f32(r, &m->prior_sigma2))
        return FORMAT_ERR("truncated model section or non-finite model "
                          "parameter");
    uint32_t max_lik = c->version >= IO_VERSION_NOISE ? BNN_LIK_GAUSSIAN_HETERO
                                                      : BNN_LIK_GAUSSIAN;
    if (act > BNN_ACT_TANH || lik > max_lik || prior > BNN_PRIOR_SCALE_MIXTURE)
        return FORMAT_ERR("unknown activation %u, likelihood %u or prior %u",
                          (unsigned)act, (unsigned)lik, (unsigned)prior);
    m->activation = (bnn_activation)act;
    m->likelihood = (bnn_likelihood)lik;
    m->prior = (bnn_prior)prior;
    if (seq && (st = parse_sequence(r, c)) != BNN_OK)
        return st;
    /* Everything bnn_model_create will check, checked now, without
     * allocating: the model the file describes exists, and its sizes are
     * known before they size anything. */
    if ((st = model_describe(m, &c->desc)) != BNN_OK)
        return as_format_error(st, "model");
    if (seq)
        p = c->desc.n_params;
    else if (c->desc.n_params != p)
        return error_set(BNN_E_INTERNAL, "the model computes %zu parameters, the file %llu",
                         c->desc.n_params, (unsigned long long)p);

    uint64_t stored_p;
    if (!rd_u64(r, &stored_p))
        return FORMAT_ERR("truncated guide section");
    if (stored_p != p)
        return FORMAT_ERR("parameter count %llu does not match the "
                          "architecture (%llu)",
                          (unsigned long long)stored_p,
                          (unsigned long long)p);
    if (p > rd_left(r) / 8)
        return FORMAT_ERR("parameter count %llu exceeds the data in the "
                          "file",
                          (unsigned long long)p);
    c->n_params = (size_t)p;
    c->params = rd_take(r, 8 * c->n_params);
    if (!check_f32_block(c->params, 2 * c->n_params, 0))
        return FORMAT_ERR("the guide's parameters hold NaN or Inf");
    if (lik != BNN_LIK_GAUSSIAN_LEARNED)
        return BNN_OK;
    /* The noise section: one log sigma per output. */
    uint64_t d, outs = c->desc.sizes[c->desc.n_sizes - 1];
    if (!rd_u64(r, &d))
        return FORMAT_ERR("truncated noise section");
    if (d != outs)
        return FORMAT_ERR("noise count %llu does not match the %llu outputs",
                          (unsigned long long)d, (unsigned long long)outs);
    /* d is a layer size (<= P, which fits the file), so 4d cannot overflow */
    if (!(c->noise = rd_take(r, 4 * (size_t)d)))
        return FORMAT_ERR("truncated noise section");
    c->n_noise = (size_t)d;
    if (!check_f32_block(c->noise, c->n_noise, 0))
        return FORMAT_ERR("the learned noise holds NaN or Inf");
    return BNN_OK;
}

/* The optimizer's moments of the learned noise, after its own state. */
static bnn_status parse_noise_state(io_reader *r, io_contents *c)
{
    if (!c->n_noise)
        return BNN_OK;
    c->noise_m = rd_take(r, 4 * c->n_noise);
    c->noise_v = rd_take(r, 4 * c->n_noise);
    if (!c->noise_m || !c->noise_v)
        return FORMAT_ERR("truncated noise optimizer state");
    if (!check_f32_block(c->noise_m, c->n_noise, 0) ||
        !check_f32_block(c->noise_v, c->n_noise, 1))
        return FORMAT_ERR("the noise optimizer state holds NaN, Inf or a "
                          "negative second moment");
    return BNN_OK;
}

static bnn_status parse_optimizer(io_reader *r, io_contents *c)
{
    bnn_optimizer_config *o = &c->ocfg;
    bnn_svi_config *s = &c->svi;
    bnn_optimizer_config_init(o);
    bnn_svi_config_init(s);
    uint32_t kind, est, klm;
    uint64_t dataset, particles, batch, n_state;
    if (!rd_u32(r, &kind) || !rd_f32(r, &o->lr) || !rd_f32(r, &o->beta1) ||
        !rd_f32(r, &o->beta2) || !rd_f32(r, &o->eps) ||
        !rd_f32(r, &o->momentum) || !rd_f32(r, &o->clip_norm) ||
        !rd_u64(r, &dataset) || !rd_f32(r, &s->kl_weight) ||
        !rd_u32(r, &est) || !rd_u32(r, &klm) || !rd_u64(r, &particles) ||
        !rd_u64(r, &batch) || !rd_u64(r, &s->seed) || !rd_u64(r, &c->step) ||
        !rd_u64(r, &n_state))
        return FORMAT_ERR("truncated optimizer section or non-finite "
                          "optimizer setting");
    uint32_t max_kind = c->version >= IO_VERSION_IVON ? BNN_OPT_IVON : BNN_OPT_SGD;
    if (kind > max_kind || est > BNN_EST_FLIPOUT || klm > BNN_KL_MONTE_CARLO)
        return FORMAT_ERR("unknown optimizer %u, estimator %u or KL mode %u",
                          (unsigned)kind, (unsigned)est, (unsigned)klm);
    if (dataset == 0 || dataset > SIZE_MAX || particles == 0 ||
        particles > SIZE_MAX)
        return FORMAT_ERR("dataset size %llu or particle count %llu out of "
                          "range",
                          (unsigned long long)dataset,
                          (unsigned long long)particles);
    /* The training workspace is sized from max_batch, not from anything in
     * the file, hence an explicit limit. */
    uint64_t width = train_width(&c->desc); /* pre-activations and im2col rows */
    if (batch == 0 || batch > IO_MAX_BATCH_X_WIDTH / width)
        return FORMAT_ERR("max_batch %llu out of range (max_batch x layer "
                          "width must be <= %llu)",
                          (unsigned long long)batch,
                          (unsigned long long)IO_MAX_BATCH_X_WIDTH);
    if (n_state != 2 * (uint64_t)c->n_params)
        return FORMAT_ERR("optimizer state count %llu does not match the "
                          "guide (%llu)",
                          (unsigned long long)n_state,
                          2 * (unsigned long long)c->n_params);
    int ivon = kind == BNN_OPT_IVON;
    if (ivon && (!rd_f32(r, &o->ivon_beta2) || !rd_f32(r, &o->ivon_hess_init) ||
                 !rd_f32(r, &o->ivon_ess) || !rd_f32(r, &o->ivon_clip_radius)))
        return FORMAT_ERR("truncated IVON settings or non-finite IVON setting");
    if (n_state > rd_left(r) / (ivon ? 4 : 8))
        return FORMAT_ERR("optimizer state exceeds the data in the file");
    o->kind = (bnn_optimizer_kind)kind;
    s->estimator = (bnn_estimator)est;
    s->kl_mode = (bnn_kl_mode)klm;
    s->dataset_size = (size_t)dataset;
    s->num_particles = (size_t)particles;
    s->max_batch = (size_t)batch;
    c->m = rd_take(r, 4 * (size_t)n_state);
    if (ivon) {
        /* [g | h]: every h + delta > 0, as the update keeps it. */
        if (!check_f32_block(c->m, (size_t)n_state, 0))
            return FORMAT_ERR("the IVON state holds NaN or Inf");
        float lam = o->ivon_ess > 0.0f ? o->ivon_ess : (float)s->dataset_size;
        size_t P = c->n_params;
        for (size_t i = 0; i < P; i++)
            if (!(bits_to_f32(le_u32(c->m + 4 * (P + i))) +
                      optim_ivon_delta_at(&c->desc, i, s->kl_weight, lam) > 0.0f))
                return FORMAT_ERR("IVON Hessian estimate %zu is not above -delta", i);
        return parse_noise_state(r, c);
    }
    c->v = rd_take(r, 4 * (size_t)n_state);
    /* Adam's second moment is a running mean of squares. */
    if (!check_f32_block(c->m, (size_t)n_state, 0) ||
        !check_f32_block(c->v, (size_t)n_state, 1))
        return FORMAT_ERR("the optimizer state holds NaN, Inf or a "
                          "negative second moment");
    return parse_noise_state(r, c);
}

static bnn_status parse(const unsigned char *b, size_t size, io_contents *c)
{
    uint32_t flags = 0;
    bnn_status st = parse_header(b, size, &flags, &c->version);
    if (st != BNN_OK)
        return st;
    io_reader r = {b, size - IO_CRC_BYTES, IO_HEADER_BYTES};
    if ((st = parse_model(&r, c)) != BNN_OK)
        return st;
    c->has_opt = (flags & IO_FLAG_OPTIMIZER) != 0;
    if (c->has_opt && (st = parse_optimizer(&r, c)) != BNN_OK)
        return st;
    /* A writer marks version 4 exactly when the model is a layer sequence,
     * else 3 exactly for the learned-noise likelihoods, else 2 exactly
     * when it stores IVON state, so every file has one encoding and loads
     * back to the bytes it came from. */
    if (c->version == IO_VERSION_IVON && !(c->has_opt && c->ocfg.kind == BNN_OPT_IVON))
        return FORMAT_ERR("a version %u file must hold IVON optimizer state, this one does not",
                          (unsigned)c->version);
    bnn_likelihood lik = c->mcfg.likelihood;
    if (c->version == IO_VERSION_NOISE && lik != BNN_LIK_GAUSSIAN_LEARNED &&
        lik != BNN_LIK_GAUSSIAN_HETERO)
        return FORMAT_ERR("a version %u file must hold a learned-noise or heteroscedastic "
                          "model, this one does not", (unsigned)c->version);
    if (rd_left(&r) != 0)
        return FORMAT_ERR("%zu unexpected bytes after the last section",
                          rd_left(&r));
    return BNN_OK;
}

static void decode_f32(const unsigned char *p, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = bits_to_f32(le_u32(p + 4 * i));
}

BNN_API bnn_status bnn_load_from_memory(const void *buf, size_t size,
                                        const bnn_allocator *alloc,
                                        bnn_model **model_out,
                                        bnn_guide **guide_out,
                                        bnn_optimizer **opt_out)
{
    API_ENTRY();
    if (!buf || !model_out || !guide_out)
        return error_set(BNN_E_INVALID, "bnn_load_from_memory: buf, "
                         "model_out and guide_out must not be NULL");
    if (alloc && (!alloc->alloc || !alloc->free))
        return error_set(BNN_E_INVALID,
                         "bnn_load_from_memory: allocator without alloc/free");
    io_contents c;
    memset(&c, 0, sizeof c);
    bnn_status st = parse(buf, size, &c);
    if (st != BNN_OK)
        return st;

    bnn_model *m = NULL;
    bnn_guide *g = NULL;
    bnn_optimizer *o = NULL;
    c.mcfg.allocator = alloc;
    if ((st = bnn_model_create(&c.mcfg, &m)) != BNN_OK) {
        st = as_format_error(st, "model");
        goto fail;
    }
    if ((st = bnn_guide_create(m, NULL, &g)) != BNN_OK)
        goto fail;
    if (g->n_params != c.n_params) {
        st = error_set(BNN_E_INTERNAL, "the model computes %zu parameters, "
                       "the file has %zu", g->n_params, c.n_params);
        goto fail;
    }
    decode_f32(c.params, 2 * c.n_params, g->params);
    if (g->n_noise != c.n_noise) {
        st = error_set(BNN_E_INTERNAL, "the model has %zu noise parameters, "
                       "the file %zu", g->n_noise, c.n_noise);
        goto fail;
    }
    decode_f32(c.noise, c.n_noise, g->params + 2 * c.n_params);
    if (c.has_opt && opt_out) {
        st = bnn_optimizer_create(g, &c.ocfg, &c.svi, &o);
        if (st != BNN_OK) {
            st = as_format_error(st, "optimizer settings");
            goto fail;
        }
        o->step = c.step;
        decode_f32(c.m, 2 * c.n_params, o->m);
        if (o->v)
            decode_f32(c.v, 2 * c.n_params, o->v);
        decode_f32(c.noise_m, c.n_noise, o->noise_m);
        decode_f32(c.noise_v, c.n_noise, o->noise_v);
    }
    *model_out = m;
    *guide_out = g;
    if (opt_out)
        *opt_out = o;
    return BNN_OK;

fail:
    bnn_optimizer_free(o);
    bnn_guide_free(g);
    bnn_model_free(m);
    return st;
}

BNN_API bnn_status bnn_load(const char *path, const bnn_allocator *alloc,
                            bnn_model **model_out, bnn_guide **guide_out,
                            bnn_optimizer **opt_out)
{
    API_ENTRY();
    if (!path || !model_out || !guide_out)
        return error_set(BNN_E_INVALID, "bnn_load: path, model_out and "
                         "guide_out must not be NULL");
    if (alloc && (!alloc->alloc || !alloc->free))
        return error_set(BNN_E_INVALID, "bnn_load: allocator without "
                         "alloc/free");
    bnn_allocator a = alloc ? *alloc : mem_default_allocator();
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set(BNN_E_IO, "bnn_load: cannot open %s: %s", path,
                         strerror(errno));
    bnn_status st;
    unsigned char *buf = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        st = error_set(BNN_E_IO, "bnn_load: stat %s: %s", path,
                       strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = error_set(BNN_E_IO, "bnn_load: %s is not a regular file", path);
        goto out;
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > SIZE_MAX) {
        st = error_set(BNN_E_IO, "bnn_load: %s is too large", path);
        goto out;
    }
    size_t size = (size_t)sb.st_size;
    buf = mem_alloc(&a, size);
    if (!buf) {
        st = error_set(BNN_E_NOMEM, "bnn_load: out of memory reading %zu "
                       "bytes", size);
        goto out;
    }
    errno = 0;
    if (fread(buf, 1, size, f) != size) {
        st = error_set(BNN_E_IO, "bnn_load: reading %s: %s", path,
                       ferror(f) && errno ? strerror(errno)
                                          : "the file shrank while reading");
        goto out;
    }
    if (fgetc(f) != EOF) {
        st = error_set(BNN_E_IO, "bnn_load: %s grew while reading", path);
        goto out;
    }
    st = bnn_load_from_memory(buf, size, alloc, model_out, guide_out,
                              opt_out);
out:
    mem_free(&a, buf);
    /* A read-only stream has nothing left to lose at close. */
    (void)fclose(f);
    return st;
}
