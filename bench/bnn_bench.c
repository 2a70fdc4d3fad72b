/* bnn_bench: where the time of an SVI step and of Monte Carlo prediction
 * goes, next to the BLAS work those calls cannot avoid.
 *
 * For every training case the step is timed together, interleaved
 * iteration by iteration (so machine load hits both alike), with:
 *   gemm  the exact sequence of cblas_sgemm calls the step made (recorded
 *         by the interposer below during one step, then replayed with the
 *         same shapes, transposes, leading dimensions and beta),
 *   rng   the rng_*_fill calls of the step, same distributions and sizes,
 *   opt   bnn_optimizer_step alone,
 *   2-call  the same step as bnn_svi_grad + bnn_optimizer_step (the
 *         route of data-parallel hosts; the optimizer then makes its own
 *         pass over the gradient for the finiteness check and the norm),
 * and elementwise = step - gemm - rng - opt.  "ratio" is step / gemm;
 * "MB/st" the megabytes the per-parameter passes move per step (a count
 * from the code: est_def.bytes_per_param).  The ivon case is followed by
 * its step time over the Adam weight-sampling (ws) step of the same run.
 * --batch N changes the batch of the training cases: the per-parameter
 * work of a step does not grow with the batch, the products do.
 *
 * Linked to the static library so that it can call internal functions;
 * cblas_sgemm defined here takes precedence over the BLAS library's, which
 * it forwards to (found with dlsym(RTLD_NEXT)).  The definition assumes the
 * LP64 CBLAS ABI (int dimensions, enums passed as int), which is what
 * Debian's OpenBLAS and netlib CBLAS use.
 *
 * One line per case, and the same figures as one JSON object per line
 * prefixed by "JSON " (grep '^JSON ' | cut -c6-).
 *
 *   bnn_bench [--quick] [--profile] [--threads 1,2] [--cases ...] [--batch N]
 *             [--lib-threads N]
 *
 * --cases takes comma-separated parts of case names, whole components
 * between '/': "train", "784-1024-10", "lrt", "train/784-1024-10/lrt",
 * "predict", "S100", "modes", "rng", "rss", "cnn".
 *
 * train/cnn/<ws|flipout|ivon> is the MNIST demo's default CNN (28x28x1,
 * conv 5x5x16 pad 2, max pool, conv 5x5x32 pad 2, max pool, dense 128,
 * dense 10); its reference is its own GEMMs plus the im2col work a step
 * does: per convolution two im2col (forward, and again in the backward;
 * flipout: four, with the signed input) and, for all but the first, one
 * col2im (flipout: two), timed on the same shapes.  rss/cnn is the peak
 * RSS of 20 such steps (IVON) on 60000 MNIST-sized images. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bnn.h"
#include "conv.h"
#include "internal.h"
#include "predict.h"
#include "rng.h"

/* ---- CBLAS constants (identical in every CBLAS) -------------------------- */

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k,
                         float alpha, const float *a, int lda, const float *b,
                         int ldb, float beta, float *c, int ldc);

void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc);
/* Called once so that the BLAS library is linked in: the interposer alone
 * satisfies every reference the static library makes. */
float cblas_sdot(int n, const float *x, int incx, const float *y, int incy);

/* ---- clocks -------------------------------------------------------------- */

static double wall_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what)
{
    fprintf(stderr, "bnn_bench: %s\n", what);
    exit(2);
}

static void check(bnn_status st, const char *what)
{
    if (st != BNN_OK) {
        fprintf(stderr, "bnn_bench: %s: %s (%s)\n", what, bnn_status_string(st),
                bnn_last_error());
        exit(2);
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* ---- BLAS: the interposer, kernel name, threads --------------------------- */

typedef struct gemm_call {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float beta;
} gemm_call;

static struct {
    sgemm_fn real;
    int recording;
    gemm_call *calls;
    size_t n_calls, cap;
    double in_gemm; /* seconds spent inside cblas_sgemm */
} tap;

static sgemm_fn real_sgemm(void)
{
    if (!tap.real) {
        void *p = dlsym(RTLD_NEXT, "cblas_sgemm");
        if (!p)
            die("cblas_sgemm not found in the loaded libraries");
        memcpy(&tap.real, &p, sizeof p);
    }
    return tap.real;
}

void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc)
{
    sgemm_fn f = real_sgemm();
    if (tap.recording) {
        if (order != ROW_MAJOR)
            die("the library called a column-major sgemm");
        if (tap.n_calls == tap.cap) {
            tap.cap = tap.cap ? 2 * tap.cap : 64;
            tap.calls = realloc(tap.calls, tap.cap * sizeof *tap.calls);
            if (!tap.calls)
                die("out of memory");
        }
        gemm_call g = {ta == TRANS, tb == TRANS, m, n, k, lda, ldb, ldc, beta};
        tap.calls[tap.n_calls++] = g;
    }
    double t0 = wall_now();
    f(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    tap.in_gemm += wall_now() - t0;
}

static void *blas_sym(const char *name)
{
    return dlsym(RTLD_DEFAULT, name);
}

static const char *blas_string(const char *fn)
{
    void *p = blas_sym(fn);
    if (!p)
        return NULL;
    char *(*get)(void);
    memcpy(&get, &p, sizeof p);
    return get();
}

/* 1 if the thread count could be set. */
static int set_threads(int t)
{
    void *p = blas_sym("openblas_set_num_threads");
    if (!p)
        return 0;
    void (*set)(int);
    memcpy(&set, &p, sizeof p);
    set(t);
    return 1;
}

static double flops_of(const gemm_call *c, size_t n)
{
    double f = 0.0;
    for (size_t i = 0; i < n; i++)
        f += 2.0 * c[i].m * (double)c[i].n * c[i].k;
    return f;
}

/* Operand buffers for replaying recorded calls: each call gets its own, as
 * each call of a step works on its own matrices. */
typedef struct replay {
    gemm_call *calls;
    size_t n;
    float **a, **b, **c;
} replay;

static void fill_small(float *x, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(*s >> 40) / 16777216.0 - 0.5) * 0.1f;
    }
}

static void replay_init(replay *r, const gemm_call *calls, size_t n)
{
    uint64_t s = 12345;
    r->n = n;
    r->calls = xmalloc(n * sizeof *calls);
    memcpy(r->calls, calls, n * sizeof *calls);
    r->a = xmalloc(n * sizeof *r->a);
    r->b = xmalloc(n * sizeof *r->b);
    r->c = xmalloc(n * sizeof *r->c);
    for (size_t i = 0; i < n; i++) {
        const gemm_call *g = &calls[i];
        size_t ra = g->ta ? (size_t)g->k : (size_t)g->m;
        size_t rb = g->tb ? (size_t)g->n : (size_t)g->k;
        size_t na = ra * (size_t)g->lda, nb = rb * (size_t)g->ldb;
        size_t nc = (size_t)g->m * (size_t)g->ldc;
        r->a[i] = xmalloc(na * sizeof(float));
        r->b[i] = xmalloc(nb * sizeof(float));
        r->c[i] = xmalloc(nc * sizeof(float));
        fill_small(r->a[i], na, &s);
        fill_small(r->b[i], nb, &s);
        fill_small(r->c[i], nc, &s);
    }
}

static void replay_run(const replay *r)
{
    sgemm_fn f = real_sgemm();
    for (size_t i = 0; i < r->n; i++) {
        const gemm_call *g = &r->calls[i];
        f(ROW_MAJOR, g->ta ? TRANS : NO_TRANS, g->tb ? TRANS : NO_TRANS, g->m,
          g->n, g->k, 1.0f, r->a[i], g->lda, r->b[i], g->ldb, g->beta, r->c[i],
          g->ldc);
    }
}

static void replay_free(replay *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->a[i]);
        free(r->b[i]);
        free(r->c[i]);
    }
    free(r->a);
    free(r->b);
    free(r->c);
    free(r->calls);
}

/* ---- counting allocator --------------------------------------------------- */

typedef struct counter {
    size_t allocs, frees;
} counter;

static void *count_alloc(void *ctx, size_t size)
{
    ((counter *)ctx)->allocs++;
    return malloc(size);
}

static void count_free(void *ctx, void *p)
{
    if (p)
        ((counter *)ctx)->frees++;
    free(p);
}

/* ---- cases ---------------------------------------------------------------- */

typedef struct net_def {
    const char *name;
    size_t n_sizes;
    size_t sizes[4];
} net_def;

static const net_def nets[] = {
    {"784-1024-10", 3, {784, 1024, 10, 0}},
    {"784-1200-1200-10", 4, {784, 1200, 1200, 10}},
};

typedef struct est_def {
    const char *name;
    bnn_estimator est;
    bnn_kl_mode kl;
    bnn_init init;
    bnn_optimizer_kind opt;
    /* Bytes per parameter that the per-parameter passes of one step move
     * to or from memory (a count from the code, not a measurement; GEMM
     * operands excluded, the GEMM-written raw gradient included):
     *   ws, pyro  draw: read mu rho, write eps w gmu grho (24); backward:
     *             read gw eps gmu grho, write gmu grho (24); Adam: read
     *             p g m v, write p m v on 2P (56); gw (4): 108
     *   lrt, flipout  the same with a backward that leaves gmu to the
     *             GEMM (16): 100
     *   ivon      draw: read mu h, write eps w (16); update with the
     *             gradient finish fused in (bnn_svi_step): read gw eps g
     *             h mu, write g h mu rho (36); gw (4): 56 */
    double bytes_per_param;
} est_def;

/* "pyro" is the original program: one weight draw per step, Monte Carlo
 * KL, N(0,1) initialisation of mu and rho.  "ivon" is weight sampling
 * trained by IVON (lr 0.1) instead of Adam. */
static const est_def ests[] = {
    {"ws", BNN_EST_WEIGHT_SAMPLING, BNN_KL_ANALYTIC, BNN_INIT_DEFAULT, BNN_OPT_ADAM, 108},
    {"lrt", BNN_EST_LOCAL_REPARAM, BNN_KL_ANALYTIC, BNN_INIT_DEFAULT, BNN_OPT_ADAM, 100},
    {"flipout", BNN_EST_FLIPOUT, BNN_KL_ANALYTIC, BNN_INIT_DEFAULT, BNN_OPT_ADAM, 100},
    {"pyro", BNN_EST_WEIGHT_SAMPLING, BNN_KL_MONTE_CARLO, BNN_INIT_PYRO, BNN_OPT_ADAM, 108},
    {"ivon", BNN_EST_WEIGHT_SAMPLING, BNN_KL_ANALYTIC, BNN_INIT_DEFAULT, BNN_OPT_IVON, 56},
};
#define N_ESTS (sizeof ests / sizeof ests[0])

enum { BATCH = 128, DATASET = 60000 };

typedef struct options {
    int quick;
    int profile; /* steps only, for perf record */
    int threads[8];
    size_t n_threads;
    char cases[512];
    size_t batch; /* training cases */
    int lib_threads; /* bnn_svi_config.num_threads; 0: the BLAS thread count */
} options;

/* A filter selects the cases that contain it as whole '/'-separated
 * components: "S10" selects predict/.../S10 but not .../S100. */
static int component_match(const char *name, const char *tok)
{
    size_t n = strlen(tok);
    if (!n)
        return 0;
    for (const char *p = strstr(name, tok); p; p = strstr(p + 1, tok)) {
        int start = p == name || p[-1] == '/' || tok[0] == '/';
        int end = p[n] == 0 || p[n] == '/' || tok[n - 1] == '/';
        if (start && end)
            return 1;
    }
    return 0;
}

static int selected(const options *o, const char *name)
{
    if (!o->cases[0])
        return 1;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", o->cases);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save))
        if (component_match(name, t))
            return 1;
    return 0;
}

static const char *kernel_name(void)
{
    const char *k = blas_string("openblas_get_corename");
    return k ? k : "unknown";
}

/* Random inputs in [0, 1) and labels, deterministic. */
static void make_data(float *x, int32_t *y, size_t n, size_t in, size_t classes)
{
    uint64_t s = 2024;
    for (size_t i = 0; i < n * in; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / 16777216.0);
    }
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        y[i] = (int32_t)((s >> 33) % classes);
    }
}

typedef struct trainer {
    counter cnt;
    bnn_allocator alloc;
    bnn_model *m;
    bnn_guide *g;
    bnn_optimizer *o;
} trainer;

/* The training configuration every trainer uses, on t's guide. */
static void trainer_optimizer(trainer *t, const est_def *e, size_t batch, int threads,
                              const char *what)
{
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    sc.dataset_size = DATASET;
    sc.estimator = e->est;
    sc.kl_mode = e->kl;
    sc.max_batch = batch;
    sc.num_threads = (size_t)threads;
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.kind = e->opt;
    if (e->opt == BNN_OPT_IVON)
        oc.lr = 0.1f;
    check(bnn_optimizer_create(t->g, &oc, &sc, &t->o), what);
}

static void trainer_make(trainer *t, const net_def *nd, const est_def *e, size_t batch,
                         int threads)
{
    memset(t, 0, sizeof *t);
    t->alloc.alloc = count_alloc;
    t->alloc.free = count_free;
    t->alloc.ctx = &t->cnt;
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = nd->n_sizes;
    mc.layer_sizes = nd->sizes;
    mc.allocator = &t->alloc;
    check(bnn_model_create(&mc, &t->m), "bnn_model_create");
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.init = e->init;
    check(bnn_guide_create(t->m, &gc, &t->g), "bnn_guide_create");
    trainer_optimizer(t, e, batch, threads, "bnn_optimizer_create");
}

static void trainer_free(trainer *t)
{
    bnn_optimizer_free(t->o);
    bnn_guide_free(t->g);
    bnn_model_free(t->m);
}

/* The RNG fills of one step (svi.c and layer.c): what is drawn, how many. */
typedef struct rng_call {
    enum rng_dist dist;
    size_t n;
} rng_call;

static size_t rng_calls_of(const net_def *nd, const est_def *e, size_t n,
                           rng_call *out)
{
    size_t P = 0, k = 0, L = nd->n_sizes - 1;
    for (size_t l = 0; l < L; l++)
        P += nd->sizes[l] * nd->sizes[l + 1] + nd->sizes[l + 1];
    switch (e->est) {
    case BNN_EST_WEIGHT_SAMPLING:
        out[k++] = (rng_call){RNG_DIST_NORMAL, P};
        break;
    case BNN_EST_LOCAL_REPARAM:
        if (e->kl == BNN_KL_MONTE_CARLO)
            out[k++] = (rng_call){RNG_DIST_NORMAL, P};
        for (size_t l = 0; l < L; l++)
            out[k++] = (rng_call){RNG_DIST_NORMAL, n * nd->sizes[l + 1]};
        break;
    case BNN_EST_FLIPOUT:
        out[k++] = (rng_call){RNG_DIST_NORMAL, P};
        for (size_t l = 0; l < L; l++) {
            out[k++] = (rng_call){RNG_DIST_SIGN, n * nd->sizes[l]};
            out[k++] = (rng_call){RNG_DIST_SIGN, n * nd->sizes[l + 1]};
        }
        break;
    }
    return k;
}

static void json_str(const char *key, const char *v, int *first)
{
    printf("%s\"%s\":\"%s\"", *first ? "" : ",", key, v);
    *first = 0;
}

static void json_num(const char *key, double v, int *first)
{
    printf("%s\"%s\":%.6g", *first ? "" : ",", key, v);
    *first = 0;
}

static void run_train(const options *op, const net_def *nd, const est_def *e,
                      int threads, int *failures)
{
    trainer t;
    const size_t batch = op->batch;
    trainer_make(&t, nd, e, batch, op->lib_threads ? op->lib_threads : threads);
    size_t in = nd->sizes[0], C = nd->sizes[nd->n_sizes - 1];
    enum { NB = 8 };
    float *x = xmalloc((size_t)NB * batch * in * sizeof(float));
    int32_t *y = xmalloc((size_t)NB * batch * sizeof(int32_t));
    make_data(x, y, (size_t)NB * batch, in, C);
    int big = nd->n_sizes > 3;
    size_t warm = op->quick ? 2 : 5;
    size_t iters = op->quick ? (big ? 6 : 12) : (big ? 30 : 60);

    size_t b = 0;
#define STEP()                                                                \
    check(bnn_svi_step(t.o, x + (b % NB) * batch * in, y + (b % NB) * batch,  \
                       NULL, batch, NULL),                                    \
          "bnn_svi_step");                                                    \
    b++
    for (size_t i = 0; i < warm; i++) {
        STEP();
    }
    if (op->profile) {
        size_t steps = op->quick ? 50 : 200;
        for (size_t i = 0; i < steps; i++) {
            STEP();
        }
        printf("%s %s: %zu steps\n", nd->name, e->name, steps);
        free(x);
        free(y);
        trainer_free(&t);
        return;
    }
    /* One step recorded: the GEMM sequence to replay. */
    tap.n_calls = 0;
    tap.recording = 1;
    STEP();
    tap.recording = 0;
    replay rp;
    replay_init(&rp, tap.calls, tap.n_calls);
    rng_call rc[2 * BNN_MAX_LAYERS + 2];
    size_t n_rc = rng_calls_of(nd, e, batch, rc);
    size_t rmax = 0;
    for (size_t i = 0; i < n_rc; i++)
        rmax = rc[i].n > rmax ? rc[i].n : rmax;
    float *rbuf = xmalloc(rmax * sizeof(float));

    double *ts = xmalloc(iters * sizeof(double)), *tsc = xmalloc(iters * sizeof(double));
    double *tg = xmalloc(iters * sizeof(double)), *tgc = xmalloc(iters * sizeof(double));
    double *tr = xmalloc(iters * sizeof(double)), *to = xmalloc(iters * sizeof(double));
    double *tin = xmalloc(iters * sizeof(double)), *t2 = xmalloc(iters * sizeof(double));
    size_t allocs = 0;
    for (size_t i = 0; i < iters; i++) {
        size_t a0 = t.cnt.allocs;
        tap.in_gemm = 0.0;
        double w0 = wall_now(), c0 = cpu_now();
        STEP();
        ts[i] = wall_now() - w0;
        tsc[i] = cpu_now() - c0;
        tin[i] = tap.in_gemm;
        allocs += t.cnt.allocs - a0;

        w0 = wall_now();
        c0 = cpu_now();
        replay_run(&rp);
        tg[i] = wall_now() - w0;
        tgc[i] = cpu_now() - c0;

        w0 = wall_now();
        for (size_t j = 0; j < n_rc; j++)
            rng_fill_impl(RNG_IMPL_AUTO, rc[j].dist, 1, rng_stream_id(i, 0, 0, RNG_LOCAL), 0,
                          rc[j].n, rbuf);
        tr[i] = wall_now() - w0;

        /* The same step as two calls (the route of data-parallel hosts):
         * the gradient written whole, then bnn_optimizer_step. */
        a0 = t.cnt.allocs;
        w0 = wall_now();
        check(bnn_svi_grad(t.o, x + (b % NB) * batch * in, y + (b % NB) * batch, NULL, batch,
                           NULL),
              "bnn_svi_grad");
        double w1 = wall_now();
        check(bnn_optimizer_step(t.o), "bnn_optimizer_step");
        double w2 = wall_now();
        b++;
        to[i] = w2 - w1;
        t2[i] = w2 - w0;
        allocs += t.cnt.allocs - a0;
    }
#undef STEP
    double step = median(ts, iters), step_cpu = median(tsc, iters);
    double gemm = median(tg, iters), gemm_cpu = median(tgc, iters);
    double rng = median(tr, iters), opt = median(to, iters), gin = median(tin, iters);
    double two = median(t2, iters);
    double elem = step - gemm - rng - opt;
    double gfl = flops_of(rp.calls, rp.n);
    double allocs_per_step = (double)allocs / (double)iters;
    if (allocs)
        (*failures)++;

    char name[128];
    snprintf(name, sizeof name, "train/%s/%s", nd->name, e->name);
    double mb = e->bytes_per_param * (double)bnn_model_param_count(t.m) * 1e-6;
    /* IVON against the Adam weight-sampling step of the same net and
     * threads in this run (the row just before it when both are run). */
    static char ws_key[160];
    static double ws_step, ws_ratio;
    char key[160];
    snprintf(key, sizeof key, "%s/%d/%zu", nd->name, threads, batch);
    if (!strcmp(e->name, "ws")) {
        snprintf(ws_key, sizeof ws_key, "%s", key);
        ws_step = step;
        ws_ratio = step / gemm;
    }
    /* Also as a ratio of the two steps' ratios to their own GEMMs: the
     * GEMMs are the same shapes, so this cancels load that changed between
     * the two cases on a shared machine. */
    int vs = e->opt == BNN_OPT_IVON && !strcmp(key, ws_key);
    double vs_ws = vs ? step / ws_step : 0.0, vs_ws_norm = vs ? (step / gemm) / ws_ratio : 0.0;
    printf("%-30s %2d %8.2f %8.0f %8.2f %8.2f %7.2f %7.2f %8.2f %6.2f %6.2f %6.1f %4.0f %8.2f %6.2f "
           "%6.1f%s%s\n",
           name, threads, step * 1e3, batch / step, gemm * 1e3, gin * 1e3, rng * 1e3, opt * 1e3,
           elem * 1e3, step / gemm, step_cpu / gemm_cpu, gfl / gemm * 1e-9, allocs_per_step,
           two * 1e3, two / gemm, mb, allocs ? "  FAIL: the step allocates" : "", "");
    if (vs_ws > 0.0)
        printf("%-30s    IVON step / Adam weight-sampling step: %.2f (per GEMM time: %.2f)\n", "",
               vs_ws, vs_ws_norm);
    printf("JSON {");
    int first = 1;
    json_str("case", name, &first);
    json_str("kind", "train", &first);
    json_str("net", nd->name, &first);
    json_str("estimator", e->name, &first);
    json_str("kl", e->kl == BNN_KL_ANALYTIC ? "analytic" : "monte_carlo", &first);
    json_str("kernel", kernel_name(), &first);
    json_num("threads", threads, &first);
    json_num("lib_threads", op->lib_threads ? op->lib_threads : threads, &first);
    json_num("batch", batch, &first);
    json_num("iters", (double)iters, &first);
    json_num("params", (double)bnn_model_param_count(t.m), &first);
    json_num("step_ms", step * 1e3, &first);
    json_num("step_cpu_ms", step_cpu * 1e3, &first);
    json_num("images_per_s", batch / step, &first);
    json_num("gemm_ms", gemm * 1e3, &first);
    json_num("gemm_cpu_ms", gemm_cpu * 1e3, &first);
    json_num("gemm_in_step_ms", gin * 1e3, &first);
    json_num("gemm_calls", (double)rp.n, &first);
    json_num("gemm_gflop", gfl * 1e-9, &first);
    json_num("gemm_gflops", gfl / gemm * 1e-9, &first);
    json_num("rng_ms", rng * 1e3, &first);
    json_num("opt_ms", opt * 1e3, &first);
    json_num("elementwise_ms", elem * 1e3, &first);
    json_num("ratio_step_gemm", step / gemm, &first);
    json_num("ratio_step_gemm_cpu", step_cpu / gemm_cpu, &first);
    json_num("allocs_per_step", allocs_per_step, &first);
    json_num("two_call_ms", two * 1e3, &first);
    json_num("ratio_two_call_gemm", two / gemm, &first);
    json_num("bytes_per_param_model", e->bytes_per_param, &first);
    json_num("mb_per_step_model", mb, &first);
    if (vs_ws > 0.0)
        json_num("ratio_step_vs_ws", vs_ws, &first), json_num("ratio_step_vs_ws_per_gemm", vs_ws_norm, &first);
    json_str("optimizer", e->opt == BNN_OPT_IVON ? "ivon" : "adam", &first);
    printf("}\n");
    fflush(stdout);

    free(ts);
    free(tsc);
    free(tg);
    free(tgc);
    free(tr);
    free(to);
    free(tin);
    free(t2);
    free(rbuf);
    replay_free(&rp);
    free(x);
    free(y);
    trainer_free(&t);
}

/* ---- prediction ----------------------------------------------------------- */

/* Rows per call of the BLAS comparison: about what bnn_predict's 16 MiB
 * workspace holds for these widths.  GEMM speed is flat in the row count
 * at this size, so the exact split does not matter. */
enum { PRED_ROWS = 2048 };

static void run_predict(const options *op, const net_def *nd, size_t S, int threads)
{
    enum { N = 10000 };
    trainer t;
    trainer_make(&t, nd, &ests[1], BATCH, 1);
    size_t in = nd->sizes[0], C = nd->sizes[nd->n_sizes - 1], L = nd->n_sizes - 1;
    float *x = xmalloc((size_t)N * in * sizeof(float));
    int32_t *y = xmalloc(N * sizeof(int32_t));
    float *probs = xmalloc((size_t)N * C * sizeof(float));
    make_data(x, y, N, in, C);
    /* a few steps so that sigma is not uniform */
    for (int i = 0; i < 3; i++)
        check(bnn_svi_step(t.o, x + (size_t)i * BATCH * in, y + i * BATCH, NULL, BATCH,
                           NULL),
              "bnn_svi_step");

    check(bnn_predict(t.g, x, 64, 1, 1, probs), "bnn_predict"); /* warm-up */
    size_t reps = S > 10 || op->quick ? 1 : 3;
    double *tw = xmalloc(reps * sizeof(double)), *tc = xmalloc(reps * sizeof(double));
    size_t a0 = t.cnt.allocs;
    tap.n_calls = 0;
    tap.recording = 1;
    for (size_t r = 0; r < reps; r++) {
        double w0 = wall_now(), c0 = cpu_now();
        check(bnn_predict(t.g, x, N, S, 7, probs), "bnn_predict");
        tw[r] = wall_now() - w0;
        tc[r] = cpu_now() - c0;
        if (r == 0)
            tap.recording = 0;
    }
    tap.recording = 0;
    size_t allocs = (t.cnt.allocs - a0) / reps;
    double pred = median(tw, reps), pred_cpu = median(tc, reps);

    /* BLAS reference: per sample, per chunk of rows, per layer
     * a = h W^T.  One sample's calls are timed and scaled by S. */
    int recorded = tap.n_calls > 0;
    gemm_call calls[2 * BNN_MAX_LAYERS];
    size_t nc = 0;
    size_t full = N / PRED_ROWS, rest = N % PRED_ROWS;
    for (int part = 0; part < 2; part++) {
        size_t rows = part ? rest : PRED_ROWS;
        if (!rows || (!part && !full))
            continue;
        for (size_t l = 0; l < L; l++) {
            int k = (int)nd->sizes[l], n = (int)nd->sizes[l + 1];
            calls[nc++] = (gemm_call){0, 1, (int)rows, n, k, k, k, n, 0.0f};
        }
    }
    replay rp;
    replay_init(&rp, calls, nc);
    size_t greps = op->quick ? 2 : 5;
    double *tg = xmalloc(greps * sizeof(double)), *tgc = xmalloc(greps * sizeof(double));
    replay_run(&rp);
    for (size_t r = 0; r < greps; r++) {
        double w0 = wall_now(), c0 = cpu_now();
        for (size_t i = 0; i < full; i++)
            for (size_t l = 0; l < L; l++) {
                replay one = {rp.calls + l, 1, rp.a + l, rp.b + l, rp.c + l};
                replay_run(&one);
            }
        if (rest) {
            size_t o = full ? L : 0;
            replay tail = {rp.calls + o, L, rp.a + o, rp.b + o, rp.c + o};
            replay_run(&tail);
        }
        tg[r] = (wall_now() - w0) * (double)S;
        tgc[r] = (cpu_now() - c0) * (double)S;
    }
    double gemm = median(tg, greps), gemm_cpu = median(tgc, greps);
    double gfl = 2.0 * N * (double)S * (double)(bnn_model_param_count(t.m));

    /* The share of drawing networks: one draw timed, times the draws a
     * call makes (S per chunk of inputs). */
    size_t P = bnn_model_param_count(t.m);
    float *net = xmalloc(P * sizeof(float));
    double w0 = wall_now();
    for (int i = 0; i < 5; i++)
        guide_sample_network(t.g, 7, rng_stream_id((uint64_t)i, 0, 0, RNG_PREDICT), net);
    double draw = (wall_now() - w0) / 5;
    free(net);

    /* bnn_predict_with_uncertainty on threads of its own, as many as the
     * BLAS has in this run, over the first inputs. */
    enum { NU = 2000 };
    size_t nu = (size_t)N < (size_t)NU ? (size_t)N : (size_t)NU;
    bnn_prediction *rec = xmalloc(nu * sizeof *rec);
    bnn_predict_config pc;
    bnn_predict_config_init(&pc);
    pc.num_samples = S;
    pc.seed = 7;
    pc.num_threads = (size_t)threads;
    w0 = wall_now();
    check(bnn_predict_with_uncertainty(t.g, &pc, x, nu, rec, sizeof *rec, NULL, NULL),
          "bnn_predict_with_uncertainty");
    double unc = wall_now() - w0;
    free(rec);

    char name[128];
    snprintf(name, sizeof name, "predict/%s/S%zu", nd->name, S);
    printf("%-30s %2d %9.3f %9.3f %6.2f %6.2f %8.2f %8.0f %6zu %9.0f%s\n", name, threads, pred,
           gemm, pred / gemm, pred_cpu / gemm_cpu, draw * 1e3, N / pred, allocs,
           (double)nu / unc, recorded ? "  (the predictor calls sgemm)" : "");
    printf("JSON {");
    int first = 1;
    json_str("case", name, &first);
    json_str("kind", "predict", &first);
    json_str("net", nd->name, &first);
    json_str("kernel", kernel_name(), &first);
    json_num("threads", threads, &first);
    json_num("inputs", N, &first);
    json_num("samples", (double)S, &first);
    json_num("predict_s", pred, &first);
    json_num("predict_cpu_s", pred_cpu, &first);
    json_num("gemm_s", gemm, &first);
    json_num("gemm_cpu_s", gemm_cpu, &first);
    json_num("gemm_gflop", gfl * 1e-9, &first);
    json_num("ratio_predict_gemm", pred / gemm, &first);
    json_num("ratio_predict_gemm_cpu", pred_cpu / gemm_cpu, &first);
    json_num("draw_ms", draw * 1e3, &first);
    json_num("inputs_per_s", N / pred, &first);
    json_num("allocs_per_call", (double)allocs, &first);
    json_num("predictor_calls_sgemm", recorded, &first);
    json_num("uncertainty_inputs", (double)nu, &first);
    json_num("uncertainty_threads", threads, &first);
    json_num("uncertainty_inputs_per_s", (double)nu / unc, &first);
    printf("}\n");
    fflush(stdout);

    replay_free(&rp);
    free(tg);
    free(tgc);
    free(tw);
    free(tc);
    free(x);
    free(y);
    free(probs);
    trainer_free(&t);
}

/* ---- RNG ------------------------------------------------------------------ */

static void run_rng(const options *op, int threads)
{
    size_t big = (size_t)1 << 23, small = 800000;
    float *buf = xmalloc(big * sizeof(float));
    size_t reps = op->quick ? 3 : 9;
    double *t1 = xmalloc(reps * sizeof(double)), *t2 = xmalloc(reps * sizeof(double));
    double *t3 = xmalloc(reps * sizeof(double));
    gemm_call g = {0, 1, 128, 1024, 784, 784, 784, 1024, 0.0f};
    replay rp;
    replay_init(&rp, &g, 1);
    replay_run(&rp);
    enum rng_impl impl = rng_fill_impl(RNG_IMPL_AUTO, RNG_DIST_NORMAL, 1, 1, 0, 0, NULL);
    for (size_t r = 0; r < reps; r++) {
        double w0 = wall_now();
        rng_normal_fill(1, r, 0, big, buf);
        t1[r] = wall_now() - w0;
        w0 = wall_now();
        rng_normal_fill(1, r, 0, small, buf);
        t2[r] = wall_now() - w0;
        w0 = wall_now();
        replay_run(&rp);
        t3[r] = wall_now() - w0;
    }
    double nps = (double)big / median(t1, reps);
    double fill = median(t2, reps), gemm = median(t3, reps);
    printf("%-30s %2d %8.1f %12.3f %12.3f %8.2f  (%s)\n", "rng", threads, nps * 1e-6, fill * 1e3,
           gemm * 1e3, fill / gemm, rng_impl_name(impl));
    printf("JSON {");
    int first = 1;
    json_str("case", "rng", &first);
    json_str("kind", "rng", &first);
    json_str("rng_path", rng_impl_name(impl), &first);
    json_str("kernel", kernel_name(), &first);
    json_num("threads", threads, &first);
    json_num("normals_per_s", nps, &first);
    json_num("fill_800k_ms", fill * 1e3, &first);
    json_num("sgemm_128x784x1024_ms", gemm * 1e3, &first);
    json_num("ratio_fill_sgemm", fill / gemm, &first);
    printf("}\n");
    fflush(stdout);
    replay_free(&rp);
    free(t1);
    free(t2);
    free(t3);
    free(buf);
}

/* ---- peak memory: a fresh process per estimator ---------------------------- */

/* ru_maxrss survives execve (the kernel carries the old image's high-water
 * mark over), so the children are started before the bench has allocated
 * anything; /proc's VmHWM, the new image's own high-water mark, is
 * reported beside it. */
/* ---- sampling modes: single-input latency and throughput ------------------ */

void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float *a, int lda,
                 const float *x, int incx, float beta, float *y, int incy);

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* q-quantile of v[0..n) (sorts v). */
static double pct(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_dbl);
    size_t k = (size_t)(q * (double)(n - 1) + 0.5);
    return v[k];
}

static bnn_predictor *make_predictor(const trainer *t, bnn_sampling mode, size_t S,
                                     size_t max_batch, int threads)
{
    bnn_predict_config pc;
    bnn_predict_config_init(&pc);
    pc.num_samples = S;
    pc.seed = 7;
    pc.sampling = mode;
    pc.num_threads = (size_t)threads;
    bnn_predictor *p = NULL;
    check(bnn_predictor_create(t->g, &pc, max_batch, &p), "bnn_predictor_create");
    return p;
}

/* One input at a time through a predictor (bnn_predictor_run, S samples):
 * `reps` latencies after one warm-up run, and the allocations they made. */
static void latency(trainer *t, bnn_sampling mode, size_t S, int threads, const float *x,
                    size_t in, size_t reps, double *lat, size_t *allocs)
{
    bnn_predictor *p = make_predictor(t, mode, S, 1, threads);
    bnn_prediction rec;
    check(bnn_predictor_run(p, x, 1, &rec, sizeof rec, NULL, NULL, NULL), "bnn_predictor_run");
    size_t a0 = t->cnt.allocs;
    for (size_t r = 0; r < reps; r++) {
        double w0 = wall_now();
        check(bnn_predictor_run(p, x + (r % 64) * in, 1, &rec, sizeof rec, NULL, NULL, NULL),
              "bnn_predictor_run");
        lat[r] = wall_now() - w0;
    }
    *allocs = t->cnt.allocs - a0;
    bnn_predictor_free(p);
}

static double throughput(trainer *t, bnn_sampling mode, size_t S, int threads,
                         const float *x, size_t n)
{
    bnn_predictor *p = make_predictor(t, mode, S, n, threads);
    bnn_prediction *rec = xmalloc(n * sizeof *rec);
    double w0 = wall_now();
    check(bnn_predictor_run(p, x, n, rec, sizeof *rec, NULL, NULL, NULL), "bnn_predictor_run");
    double s = wall_now() - w0;
    free(rec);
    bnn_predictor_free(p);
    return (double)n / s;
}

/* modes/<net>: p50 and p99 of one input with 100 samples in each mode
 * (one predictor, one thread), against one cblas_sgemv of the first
 * layer's shape; then inputs per second of a 10,000-input run (MARGINAL,
 * MEAN) and of a 1,000-input run (NETWORKS: about 20 s for 10,000 on
 * 784-1024-10; its time is linear in n above one chunk). */
static void run_modes(const options *op, const net_def *nd, int threads)
{
    enum { N = 10000, NNET = 1000, S = 100 };
    trainer t;
    trainer_make(&t, nd, &ests[1], BATCH, 1);
    size_t in = nd->sizes[0], C = nd->sizes[nd->n_sizes - 1], h = nd->sizes[1];
    float *x = xmalloc((size_t)N * in * sizeof(float));
    int32_t *y = xmalloc(N * sizeof(int32_t));
    make_data(x, y, N, in, C);
    for (int i = 0; i < 3; i++)
        check(bnn_svi_step(t.o, x + (size_t)i * BATCH * in, y + i * BATCH, NULL, BATCH, NULL),
              "bnn_svi_step");

    /* cblas_sgemv of the first layer: W (h x in) times one input */
    float *w = xmalloc(h * in * sizeof(float)), *out = xmalloc(h * sizeof(float));
    for (size_t i = 0; i < h * in; i++)
        w[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    enum { GV = 400 };
    double gv[GV];
    for (size_t r = 0; r < GV; r++) {
        double w0 = wall_now();
        cblas_sgemv(ROW_MAJOR, NO_TRANS, (int)h, (int)in, 1.0f, w, (int)in, x + (r % 64) * in, 1,
                    0.0f, out, 1);
        gv[r] = wall_now() - w0;
    }
    double sgemv = pct(gv, GV, 0.5);
    free(w);
    free(out);

    size_t reps_m = op->quick ? 50 : 400, reps_n = op->quick ? 2 : 5;
    double *lm = xmalloc(reps_m * sizeof(double)), *le = xmalloc(reps_m * sizeof(double));
    double ln[8];
    size_t am, ae, an;
    latency(&t, BNN_SAMPLING_MARGINAL, S, 1, x, in, reps_m, lm, &am);
    latency(&t, BNN_SAMPLING_MEAN, S, 1, x, in, reps_m, le, &ae);
    latency(&t, BNN_SAMPLING_NETWORKS, S, 1, x, in, reps_n, ln, &an);
    double m50 = pct(lm, reps_m, 0.5), m99 = pct(lm, reps_m, 0.99);
    double e50 = pct(le, reps_m, 0.5), n50 = pct(ln, reps_n, 0.5);

    double tm = throughput(&t, BNN_SAMPLING_MARGINAL, S, threads, x, op->quick ? N / 10 : N);
    double tn = throughput(&t, BNN_SAMPLING_NETWORKS, S, threads, x, op->quick ? NNET / 10 : NNET);

    char name[128];
    snprintf(name, sizeof name, "modes/%s", nd->name);
    printf("%-24s %2d %8.3f %8.3f %8.3f %7.1f %9.3f %7.1f %8.1f %8.0f %8.0f %6.1f %5zu\n", name,
           threads, sgemv * 1e3, m50 * 1e3, m99 * 1e3, m50 / sgemv, n50 * 1e3, n50 / m50,
           e50 * 1e6, tm, tn, tm / tn, am + ae + an);
    printf("JSON {");
    int first = 1;
    json_str("case", name, &first);
    json_str("kind", "modes", &first);
    json_str("net", nd->name, &first);
    json_num("threads", threads, &first);
    json_num("samples", S, &first);
    json_num("sgemv_ms", sgemv * 1e3, &first);
    json_num("marginal_p50_ms", m50 * 1e3, &first);
    json_num("marginal_p99_ms", m99 * 1e3, &first);
    json_num("ratio_marginal_sgemv", m50 / sgemv, &first);
    json_num("networks_p50_ms", n50 * 1e3, &first);
    json_num("ratio_networks_marginal", n50 / m50, &first);
    json_num("mean_p50_us", e50 * 1e6, &first);
    json_num("marginal_inputs_per_s", tm, &first);
    json_num("networks_inputs_per_s", tn, &first);
    json_num("ratio_throughput", tm / tn, &first);
    json_num("allocs_steady_state", (double)(am + ae + an), &first);
    printf("}\n");
    fflush(stdout);
    free(lm);
    free(le);
    free(x);
    free(y);
    trainer_free(&t);
}

/* ---- the demo's CNN ------------------------------------------------------------ */

static const size_t cnn_ch[2] = {16, 32};

static void cnn_make(trainer *t, const est_def *e, size_t batch, int threads)
{
    memset(t, 0, sizeof *t);
    t->alloc.alloc = count_alloc;
    t->alloc.free = count_free;
    t->alloc.ctx = &t->cnt;
    bnn_layer_spec ls[6];
    size_t n = 0;
    for (int k = 0; k < 2; k++) {
        bnn_layer_spec_init(&ls[n]);
        ls[n].kind = BNN_LAYER_CONV2D, ls[n].units = cnn_ch[k];
        ls[n].kernel_h = ls[n].kernel_w = 5, ls[n].pad_h = ls[n].pad_w = 2;
        n++;
        bnn_layer_spec_init(&ls[n]);
        ls[n++].kind = BNN_LAYER_MAXPOOL2;
    }
    bnn_layer_spec_init(&ls[n]);
    ls[n++].units = 128;
    bnn_layer_spec_init(&ls[n]);
    ls[n++].units = 10;
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_layers = n;
    mc.layers = ls;
    mc.input_height = mc.input_width = 28, mc.input_channels = 1;
    mc.allocator = &t->alloc;
    check(bnn_model_create(&mc, &t->m), "bnn_model_create (cnn)");
    check(bnn_guide_create(t->m, NULL, &t->g), "bnn_guide_create");
    trainer_optimizer(t, e, batch, threads, "bnn_optimizer_create (cnn)");
}

static void run_cnn(const options *op, const est_def *e, int threads, int *failures)
{
    trainer t;
    const size_t batch = op->batch, in = 784;
    cnn_make(&t, e, batch, op->lib_threads ? op->lib_threads : threads);
    const bnn_model *m = t.m;
    enum { NB = 4 };
    float *x = xmalloc((size_t)NB * batch * in * sizeof(float));
    int32_t *y = xmalloc((size_t)NB * batch * sizeof(int32_t));
    make_data(x, y, (size_t)NB * batch, in, 10);
    size_t warm = op->quick ? 1 : 3, iters = op->quick ? 4 : 12, b = 0;
#define CSTEP()                                                                 \
    check(bnn_svi_step(t.o, x + (b % NB) * batch * in, y + (b % NB) * batch, NULL, \
                       batch, NULL),                                              \
          "bnn_svi_step (cnn)");                                                  \
    b++
    for (size_t i = 0; i < warm; i++) {
        CSTEP();
    }
    tap.n_calls = 0;
    tap.recording = 1;
    CSTEP();
    tap.recording = 0;
    replay rp;
    replay_init(&rp, tap.calls, tap.n_calls);
    /* im2col and col2im buffers of the convolutions' shapes */
    size_t L = model_n_layers(m), colmax = 0, actmax = 0;
    for (size_t l = 0; l < L; l++)
        if (m->layer[l].conv) {
            size_t c = batch * conv_positions(&m->layer[l]) * model_layer_in(m, l);
            colmax = c > colmax ? c : colmax;
            size_t a = batch * model_act_in(m, l);
            actmax = a > actmax ? a : actmax;
        }
    float *col = xmalloc(colmax * sizeof(float)), *act = xmalloc(actmax * sizeof(float));
    uint64_t seed = 5;
    fill_small(act, actmax, &seed);
    int flip = e->est == BNN_EST_FLIPOUT;
    double *ts = xmalloc(iters * sizeof(double)), *tg = xmalloc(iters * sizeof(double));
    double *tc = xmalloc(iters * sizeof(double));
    size_t allocs = 0;
    for (size_t i = 0; i < iters; i++) {
        size_t a0 = t.cnt.allocs;
        double w0 = wall_now();
        CSTEP();
        ts[i] = wall_now() - w0;
        allocs += t.cnt.allocs - a0;
        w0 = wall_now();
        replay_run(&rp);
        tg[i] = wall_now() - w0;
        w0 = wall_now();
        for (size_t l = 0; l < L; l++) {
            const struct model_layer *ly = &m->layer[l];
            if (!ly->conv)
                continue;
            for (int k = 0; k < (flip ? 4 : 2); k++)
                conv_im2col(ly, batch, act, col);
            for (int k = 0; l > 0 && k < (flip ? 2 : 1); k++)
                conv_col2im(ly, batch, col, act);
        }
        tc[i] = wall_now() - w0;
    }
#undef CSTEP
    double step = median(ts, iters), gemm = median(tg, iters), cols = median(tc, iters);
    double gfl = flops_of(rp.calls, rp.n);
    if (allocs)
        (*failures)++;
    char name[128];
    snprintf(name, sizeof name, "train/cnn/%s", e->name);
    printf("%-30s %2d %8.2f %8.0f %8.2f %8.2f %8.2f %6.2f %6.2f %6.1f %4.0f%s\n", name, threads,
           step * 1e3, batch / step, gemm * 1e3, cols * 1e3, (step - gemm - cols) * 1e3,
           step / (gemm + cols), step / gemm, gfl / gemm * 1e-9,
           (double)allocs / (double)iters, allocs ? "  FAIL: the step allocates" : "");
    printf("JSON {");
    int first = 1;
    json_str("case", name, &first);
    json_str("kind", "train_cnn", &first);
    json_str("estimator", e->name, &first);
    json_str("kernel", kernel_name(), &first);
    json_num("threads", threads, &first);
    json_num("batch", batch, &first);
    json_num("iters", (double)iters, &first);
    json_num("params", (double)bnn_model_param_count(m), &first);
    json_num("step_ms", step * 1e3, &first);
    json_num("images_per_s", batch / step, &first);
    json_num("gemm_ms", gemm * 1e3, &first);
    json_num("im2col_ms", cols * 1e3, &first);
    json_num("gemm_gflop", gfl * 1e-9, &first);
    json_num("ratio_step_gemm_im2col", step / (gemm + cols), &first);
    json_num("ratio_step_gemm", step / gemm, &first);
    json_num("allocs_per_step", (double)allocs / (double)iters, &first);
    json_str("optimizer", e->opt == BNN_OPT_IVON ? "ivon" : "adam", &first);
    printf("}\n");
    fflush(stdout);
    free(ts);
    free(tg);
    free(tc);
    free(col);
    free(act);
    replay_free(&rp);
    free(x);
    free(y);
    trainer_free(&t);
}

static double maxrss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

static double vmhwm_mb(void)
{
    double kb = -1024.0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1.0;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            kb = strtod(line + 6, NULL);
    fclose(f);
    return kb / 1024.0;
}

/* Child: MNIST-sized random data, a model, 20 steps over it. */
static int rss_child(size_t est, int threads)
{
    set_threads(threads);
    const net_def *nd = &nets[0];
    int cnn = est >= N_ESTS; /* the demo's CNN with IVON */
    size_t in = nd->sizes[0], n = DATASET;
    double before_data = maxrss_mb();
    float *x = xmalloc(n * in * sizeof(float));
    int32_t *y = xmalloc(n * sizeof(int32_t));
    make_data(x, y, n, in, nd->sizes[2]);
    double data_mb = (double)(n * in * sizeof(float) + n * sizeof(int32_t)) / (1024.0 * 1024.0);
    trainer t;
    if (cnn)
        cnn_make(&t, &ests[N_ESTS - 1], BATCH, threads);
    else
        trainer_make(&t, nd, &ests[est], BATCH, threads);
    for (size_t i = 0; i < 20; i++)
        check(bnn_svi_step(t.o, x + (i * BATCH % n) * in, y + (i * BATCH % n), NULL, BATCH, NULL),
              "bnn_svi_step");
    double peak = maxrss_mb(), hwm = vmhwm_mb();
    trainer_free(&t);
    printf("%.3f %.3f %.3f %.3f\n", peak, data_mb, before_data, hwm);
    free(x);
    free(y);
    return 0;
}

static void run_rss(const char *self, int threads, int with_cnn, int *failures)
{
    for (size_t e = 0; e < N_ESTS + (with_cnn ? 1 : 0); e++) {
        int fd[2];
        if (pipe(fd) != 0)
            die("pipe");
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            char es[16], ts[16];
            snprintf(es, sizeof es, "%zu", e);
            snprintf(ts, sizeof ts, "%d", threads);
            dup2(fd[1], 1);
            close(fd[0]);
            close(fd[1]);
            execl(self, self, "--rss-child", es, ts, (char *)NULL);
            _exit(127);
        }
        close(fd[1]);
        char buf[256] = {0};
        size_t got = 0;
        ssize_t r;
        while (got + 1 < sizeof buf && (r = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0)
            got += (size_t)r;
        close(fd[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        double peak = 0, data = 0, base = 0, hwm = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
            sscanf(buf, "%lf %lf %lf %lf", &peak, &data, &base, &hwm) != 4) {
            fprintf(stderr, "bnn_bench: the memory child for %s failed\n",
                    e < N_ESTS ? ests[e].name : "cnn");
            (*failures)++;
            continue;
        }
        char name[128];
        if (e < N_ESTS)
            snprintf(name, sizeof name, "rss/%s/%s", nets[0].name, ests[e].name);
        else
            snprintf(name, sizeof name, "rss/cnn/ivon");
        /* A flag for a change worth a look, not a limit: beyond the data the
         * MLP rows stay under 64 MB; the CNN's im2col matrices and
         * pre-pooling activations at batch 128 take about 100 MB. */
        double bound = e < N_ESTS ? 64.0 : 128.0;
        int over = peak - data >= bound;
        printf("%-30s %2d %10.1f %10.1f %10.1f %10.1f %10.1f", name, threads, peak, data,
               peak - data, base, hwm - data);
        if (over)
            printf("  (over %.0f MB)", bound);
        printf("\n");
        printf("JSON {");
        int first = 1;
        json_str("case", name, &first);
        json_str("kind", "rss", &first);
        json_str("estimator", e < N_ESTS ? ests[e].name : "ivon", &first);
        json_str("kernel", kernel_name(), &first);
        json_num("threads", threads, &first);
        json_num("peak_rss_mb", peak, &first);
        json_num("data_mb", data, &first);
        json_num("peak_minus_data_mb", peak - data, &first);
        json_num("rss_at_start_mb", base, &first);
        json_num("vmhwm_minus_data_mb", hwm - data, &first);
        printf("}\n");
        fflush(stdout);
    }
}

/* ---- main ------------------------------------------------------------------ */

static void usage(void)
{
    puts("usage: bnn_bench [--quick] [--profile] [--threads LIST] [--cases LIST] [--batch N]\n"
         "                 [--lib-threads N]\n"
         "  --quick         fewer iterations\n"
         "  --batch N       batch size of the training cases (default 128, 1..8192)\n"
         "  --lib-threads N threads of the per-parameter passes (bnn_svi_config.num_threads;\n"
         "                  default: the BLAS thread count of the run)\n"
         "  --profile       training cases only, steps without the comparisons\n"
         "                  (for perf record)\n"
         "  --threads 1,2   BLAS thread counts to run (openblas_set_num_threads)\n"
         "  --cases a,b     only cases whose name contains one of these:\n"
         "                  train/<net>/<ws|lrt|flipout|pyro>, predict/<net>/S<n>, modes/<net>, rng, rss\n"
         "                  nets: 784-1024-10, 784-1200-1200-10");
}

static void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && c) {
            c += 2;
            c[strcspn(c, "\n")] = 0;
            snprintf(out, cap, "%s", c);
            break;
        }
    }
    fclose(f);
}

static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

int main(int argc, char **argv)
{
    options op;
    memset(&op, 0, sizeof op);
    op.batch = BATCH;
    op.threads[0] = 1;
    op.threads[1] = 2;
    op.n_threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rss-child") && i + 2 < argc)
            return rss_child((size_t)atoi(argv[i + 1]), atoi(argv[i + 2]));
        if (!strcmp(argv[i], "--quick")) {
            op.quick = 1;
        } else if (!strcmp(argv[i], "--profile")) {
            op.profile = 1;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            op.n_threads = 0;
            char buf[128];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && op.n_threads < 8;
                 t = strtok_r(NULL, ",", &save)) {
                int v = atoi(t);
                if (v < 1)
                    die("--threads takes positive counts");
                op.threads[op.n_threads++] = v;
            }
        } else if (!strcmp(argv[i], "--lib-threads") && i + 1 < argc) {
            long v = atol(argv[++i]);
            if (v < 1 || v > BNN_MAX_THREADS) {
                usage();
                return 2;
            }
            op.lib_threads = (int)v;
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            long v = atol(argv[++i]);
            if (v < 1 || v > 8192) {
                usage();
                return 2;
            }
            op.batch = (size_t)v;
        } else if (!strcmp(argv[i], "--cases") && i + 1 < argc) {
            snprintf(op.cases, sizeof op.cases, "%s", argv[++i]);
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
        snprintf(self, sizeof self, "%s", argv[0]);
    else
        self[sl] = 0;

    const float ones[4] = {1, 1, 1, 1};
    if (cblas_sdot(4, ones, 1, ones, 1) != 4.0f)
        die("the BLAS library does not compute");
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    const char *cfg = blas_string("openblas_get_config");
    const char *ct = getenv("OPENBLAS_CORETYPE");
    const char *tt = getenv("OPENBLAS_THREAD_TIMEOUT");
    int can_thread = blas_sym("openblas_set_num_threads") != NULL;
    printf("libbnn %s bench; CPU: %s; load average %.2f\n", bnn_version_string(), cpu, loadavg());
    printf("BLAS: %s; kernel: %s; OPENBLAS_CORETYPE=%s; OPENBLAS_THREAD_TIMEOUT=%s%s\n",
           cfg ? cfg : "not OpenBLAS", kernel_name(), ct ? ct : "(unset)", tt ? tt : "(unset)",
           can_thread ? "" : "; thread count not settable (runs with the BLAS default)");
    printf("RNG path: %s\n",
           rng_impl_name(rng_fill_impl(RNG_IMPL_AUTO, RNG_DIST_NORMAL, 1, 1, 0, 0, NULL)));
    printf("JSON {\"case\":\"env\",\"kind\":\"env\",\"cpu\":\"%s\",\"blas\":\"%s\",\"kernel\":\"%s\","
           "\"coretype_env\":\"%s\",\"thread_timeout_env\":\"%s\",\"quick\":%d,"
           "\"load_start\":%.2f}\n",
           cpu, cfg ? cfg : "", kernel_name(), ct ? ct : "", tt ? tt : "", op.quick, loadavg());
    if (!can_thread)
        op.n_threads = 1;

    int failures = 0;
    if (selected(&op, "rss") && !op.profile) {
        printf("\n%-30s %2s %10s %10s %10s %10s %10s\n", "peak RSS (MiB, 20 steps)", "th",
               "ru_maxrss", "data", "max-data", "at start", "VmHWM-data");
        for (size_t ti = 0; ti < op.n_threads; ti++)
            run_rss(self, op.threads[ti], selected(&op, "rss/cnn"), &failures);
    }
    for (size_t ti = 0; ti < op.n_threads; ti++) {
        int th = op.threads[ti];
        if (can_thread)
            set_threads(th);
        printf("\n== threads %d ==\n", th);
        char head[64];
        snprintf(head, sizeof head, "training (batch %zu)", op.batch);
        printf("%-30s %2s %8s %8s %8s %8s %7s %7s %8s %6s %6s %6s %4s %8s %6s %6s\n", head, "th",
               "step ms", "img/s", "gemm ms", "in-step", "rng ms", "opt ms", "elem ms", "ratio",
               "cpu r.", "GF/s", "allc", "2-call", "ratio", "MB/st");
        for (size_t ni = 0; ni < sizeof nets / sizeof nets[0]; ni++)
            for (size_t e = 0; e < N_ESTS; e++) {
                char name[128];
                snprintf(name, sizeof name, "train/%s/%s", nets[ni].name, ests[e].name);
                if (selected(&op, name))
                    run_train(&op, &nets[ni], &ests[e], th, &failures);
            }
        if (selected(&op, "train/cnn")) {
            snprintf(head, sizeof head, "training cnn (batch %zu)", op.batch);
            printf("%-30s %2s %8s %8s %8s %8s %8s %6s %6s %6s %4s\n", head, "th", "step ms",
                   "img/s", "gemm ms", "im2col", "rest ms", "ratio", "/gemm", "GF/s", "allc");
            static const size_t ce[] = {0, 2, 4}; /* ws, flipout, ivon */
            for (size_t k = 0; k < 3; k++) {
                char name[128];
                snprintf(name, sizeof name, "train/cnn/%s", ests[ce[k]].name);
                if (selected(&op, name))
                    run_cnn(&op, &ests[ce[k]], th, &failures);
            }
        }
        if (op.profile)
            continue;
        printf("%-30s %2s %9s %9s %6s %6s %8s %8s %6s %9s\n", "prediction (10000 inputs)", "th",
               "seconds", "gemm s", "ratio", "cpu r.", "draw ms", "inputs/s", "allocs",
               "unc in/s");
        static const struct {
            size_t net, S;
        } pc[] = {{0, 10}, {0, 100}, {1, 10}};
        for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++) {
            char name[128];
            snprintf(name, sizeof name, "predict/%s/S%zu", nets[pc[i].net].name, pc[i].S);
            if (selected(&op, name))
                run_predict(&op, &nets[pc[i].net], pc[i].S, th);
        }
        printf("%-24s %2s %8s %8s %8s %7s %9s %7s %8s %8s %8s %6s %5s\n",
               "modes (S=100; ms, us)", "th", "sgemv", "marg p50", "marg p99", "/sgemv",
               "nets p50", "/marg", "mean us", "marg in/s", "nets in/s", "ratio", "allc");
        for (size_t ni = 0; ni < sizeof nets / sizeof nets[0]; ni++) {
            char name[128];
            snprintf(name, sizeof name, "modes/%s", nets[ni].name);
            if (selected(&op, name))
                run_modes(&op, &nets[ni], th);
        }
        if (selected(&op, "rng")) {
            printf("%-30s %2s %8s %12s %12s %8s\n", "rng", "th", "Mnorm/s", "800k fill ms",
                   "1 sgemm ms", "ratio");
            run_rng(&op, th);
        }
    }
    printf("\nload average at the end %.2f\n", loadavg());
    free(tap.calls);
    if (failures)
        printf("%d check(s) failed (allocations in steady-state steps or a failed child)\n",
               failures);
    return failures ? 1 : 0;
}
