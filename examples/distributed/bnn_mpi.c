/*
 * bnn_mpi: data-parallel SVI over MPI.
 *
 * Every rank holds the whole training set and an identical copy of the
 * guide and optimizer.  Each step, all ranks draw the same global minibatch
 * of B examples (the same seeded shuffle everywhere); rank r computes the
 * gradient of its shard [r*B/R, (r+1)*B/R) with bnn_svi_grad_part, the flat
 * gradients are summed with one MPI_Allreduce, and every rank applies the
 * same optimizer step.  bnn_svi_grad_part keys the noise of each example by
 * its index in the global batch and gives each shard the KL share n/N, so
 * the summed gradient is the single-process gradient of the whole batch up
 * to float summation order, whatever the number of ranks.
 *
 * The trailing N mod B examples of each epoch's shuffle are dropped: every
 * step then has the same global batch size, and since the shuffle changes
 * every epoch, a different few examples sit out each time.
 *
 * usage: mpirun -np R bnn_mpi [options] DATA_DIR   (see --help)
 */
#include <mpi.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bnn.h"
#include "idx.h"

typedef struct options {
    const char *data_dir;
    const char *save_path; /* NULL: do not save */
    size_t epochs;
    size_t batch; /* global batch B */
    size_t hidden[BNN_MAX_LAYERS];
    size_t n_hidden;
    float lr;
    uint64_t seed;
    size_t eval_samples;
    size_t check_every;
    size_t max_steps; /* 0: no limit */
    bnn_estimator estimator;
    int barrier; /* time waiting for slower ranks apart from the allreduce */
} options;

static void usage(FILE *f)
{
    fputs("usage: mpirun -np R bnn_mpi [options] DATA_DIR\n"
          "DATA_DIR holds train-{images-idx3,labels-idx1}-ubyte and t10k-... (optionally .gz);\n"
          "every rank reads it, so on a cluster it must exist at the same path on every node.\n"
          "  --epochs N        passes over the training set (default 5)\n"
          "  --batch B         global minibatch, split evenly over the R ranks; R must divide B\n"
          "                    (default 128)\n"
          "  --hidden H[,H..]  hidden layer sizes (default 1024)\n"
          "  --lr X            Adam learning rate (default 1e-3)\n"
          "  --seed S          initialisation, noise and shuffle seed (default 1)\n"
          "  --estimator E     lrt | flipout | weight (default lrt)\n"
          "  --samples S       networks drawn for the test accuracy (default 20)\n"
          "  --check-every K   steps between loss reports and parameter checksums (default 20)\n"
          "  --max-steps N     stop after N steps in total (default: no limit)\n"
          "  --save PATH       model file written by rank 0 after each epoch\n"
          "                    (default bnn_mpi.bnn; --save '' for none)\n"
          "  --no-barrier      no barrier before the allreduce: the allreduce time then\n"
          "                    includes waiting for the slowest rank\n",
          f);
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > SIZE_MAX)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_hidden(const char *s, options *o)
{
    o->n_hidden = 0;
    while (*s) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || v == 0 || v > 1u << 20 || o->n_hidden == BNN_MAX_LAYERS - 2 ||
            s[0] == '-')
            return -1;
        o->hidden[o->n_hidden++] = (size_t)v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        s = end;
    }
    return o->n_hidden ? 0 : -1;
}

/* Returns 0 to run, 1 when --help was given, -1 on a bad command line
 * (message in err). */
static int parse_args(int argc, char **argv, options *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->save_path = "bnn_mpi.bnn";
    o->epochs = 5;
    o->batch = 128;
    o->hidden[0] = 1024;
    o->n_hidden = 1;
    o->lr = 1e-3f;
    o->seed = 1;
    o->eval_samples = 20;
    o->check_every = 20;
    o->estimator = BNN_EST_LOCAL_REPARAM;
    o->barrier = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 1;
        if (!strcmp(a, "--no-barrier")) {
            o->barrier = 0;
            continue;
        }
        if (a[0] != '-' || !a[1]) {
            if (o->data_dir) {
                snprintf(err, errlen, "more than one data folder given ('%s', '%s')", o->data_dir,
                         a);
                return -1;
            }
            o->data_dir = a;
            continue;
        }
        if (i + 1 >= argc) {
            snprintf(err, errlen, "option %s needs a value", a);
            return -1;
        }
        const char *v = argv[++i];
        int bad = 0;
        size_t z = 0;
        if (!strcmp(a, "--epochs"))
            bad = parse_size(v, &o->epochs) || o->epochs == 0;
        else if (!strcmp(a, "--batch"))
            bad = parse_size(v, &o->batch) || o->batch == 0;
        else if (!strcmp(a, "--hidden"))
            bad = parse_hidden(v, o);
        else if (!strcmp(a, "--lr")) {
            char *end;
            double d = strtod(v, &end);
            bad = end == v || *end || !(d > 0.0 && d < 1e3);
            o->lr = (float)d;
        } else if (!strcmp(a, "--seed")) {
            bad = parse_size(v, &z);
            o->seed = z;
        } else if (!strcmp(a, "--estimator")) {
            if (!strcmp(v, "lrt"))
                o->estimator = BNN_EST_LOCAL_REPARAM;
            else if (!strcmp(v, "flipout"))
                o->estimator = BNN_EST_FLIPOUT;
            else if (!strcmp(v, "weight") || !strcmp(v, "weights"))
                o->estimator = BNN_EST_WEIGHT_SAMPLING;
            else
                bad = 1;
        } else if (!strcmp(a, "--samples"))
            bad = parse_size(v, &o->eval_samples) || o->eval_samples == 0;
        else if (!strcmp(a, "--check-every"))
            bad = parse_size(v, &o->check_every) || o->check_every == 0;
        else if (!strcmp(a, "--max-steps"))
            bad = parse_size(v, &o->max_steps);
        else if (!strcmp(a, "--save"))
            o->save_path = v[0] ? v : NULL;
        else {
            snprintf(err, errlen, "unknown option %s (try --help)", a);
            return -1;
        }
        if (bad) {
            snprintf(err, errlen, "bad value '%s' for %s", v, a);
            return -1;
        }
    }
    if (!o->data_dir) {
        snprintf(err, errlen, "no data folder given (try --help)");
        return -1;
    }
    return 0;
}

/* 64-bit FNV-1a: cheap, and any differing byte changes the hash with
 * overwhelming probability, which is all the replica check needs. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}
#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)

/* Whether every rank holds the same hash: one allreduce of (h, ~h) under
 * MIN yields both the minimum and (complemented) the maximum. */
static int same_on_all_ranks(uint64_t h)
{
    uint64_t v[2] = {h, ~h};
    MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    return v[0] == ~v[1];
}

/* Whether every rank passes `ok`; used so that all ranks leave together
 * (and cleanly) when any of them fails. */
static int all_ok(int ok)
{
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return ok;
}

/* A failing library call in the training loop leaves the other ranks inside
 * a collective, so only MPI_Abort can end the job. */
static void die(int rank, const char *what, bnn_status st)
{
    fprintf(stderr, "bnn_mpi: rank %d: %s failed: %s: %s\n", rank, what, bnn_status_string(st),
            bnn_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* splitmix64, for the shuffle: identical on every rank for a given seed. */
static uint64_t mix_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void shuffle(size_t *perm, size_t n, uint64_t seed, uint64_t epoch)
{
    uint64_t s = seed ^ (epoch * UINT64_C(0xd1342543de82ef95));
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        /* Modulo bias is below 2^-40 for any realistic n. */
        size_t j = (size_t)(mix_next(&s) % i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

/* Seconds this rank spent in each part of the training steps, and the
 * processor time it got meanwhile. */
typedef struct step_times {
    double compute; /* shard gather, bnn_svi_grad_part, bnn_optimizer_step */
    double wait;    /* barrier before the allreduce: waiting for slower ranks */
    double comm;    /* the allreduce itself */
    double cpu;     /* processor time (all threads) during the steps */
} step_times;

/* On rank 0, the minimum and maximum over ranks of each figure and of the
 * share of a core each rank got (cpu / wall; < 100 % means other processes
 * took turns on its core).  One MIN reduction of (x, -x) gives both. */
static void times_range(const step_times *t, step_times *lo, step_times *hi, double *use_lo,
                        double *use_hi)
{
    double wall = t->compute + t->wait + t->comm;
    double use = wall > 0.0 ? t->cpu / wall : 0.0;
    double v[10] = {t->compute, t->wait, t->comm, t->cpu, use,
                    -t->compute, -t->wait, -t->comm, -t->cpu, -use};
    double r[10];
    MPI_Reduce(v, r, 10, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
    *lo = (step_times){r[0], r[1], r[2], r[3]};
    *hi = (step_times){-r[5], -r[6], -r[7], -r[8]};
    *use_lo = r[4];
    *use_hi = -r[9];
}

static double test_accuracy(const bnn_guide *g, const idx_set *test, size_t samples,
                            uint64_t seed, float *probs)
{
    bnn_status st = bnn_predict(g, test->images, test->n, samples, seed, probs);
    if (st != BNN_OK)
        die(0, "bnn_predict", st);
    bnn_metrics m = {.struct_size = sizeof m};
    st = bnn_eval_metrics(probs, test->labels, test->n, IDX_CLASSES, 10, &m);
    if (st != BNN_OK)
        die(0, "bnn_eval_metrics", st);
    return m.accuracy;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, nranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    const size_t R = (size_t)nranks, r = (size_t)rank;
    int rc = 1;

    options opt;
    char err[512] = "";
    int pr = parse_args(argc, argv, &opt, err, sizeof err);
    if (pr != 0) {
        /* Every rank parses the same command line, so all leave here. */
        if (rank == 0) {
            if (pr > 0)
                usage(stdout);
            else
                fprintf(stderr, "bnn_mpi: %s\n", err);
        }
        MPI_Finalize();
        return pr > 0 ? 0 : 2;
    }
    if (opt.batch % R != 0) {
        if (rank == 0)
            fprintf(stderr,
                    "bnn_mpi: error: the global batch %zu is not divisible by the number of "
                    "ranks %zu; choose --batch as a multiple of %zu (e.g. %zu) or another -np\n",
                    opt.batch, R, R, opt.batch > R ? opt.batch / R * R : R);
        MPI_Finalize();
        return 2;
    }
    const size_t B = opt.batch, b = B / R, off = r * b;

    idx_set train = {0}, test = {0};
    bnn_model *model = NULL;
    bnn_guide *guide = NULL;
    bnn_optimizer *optim = NULL;
    size_t *perm = NULL;
    float *xb = NULL, *probs = NULL;
    int32_t *yb = NULL;

    /* ---- data: every rank loads all of it and checks it is the same ---- */
    int ok = idx_load(opt.data_dir, "train", &train, err, sizeof err) == 0 &&
             idx_load(opt.data_dir, "t10k", &test, err, sizeof err) == 0;
    if (!ok)
        fprintf(stderr, "bnn_mpi: rank %d: %s\n", rank, err);
    if (!all_ok(ok)) {
        if (rank == 0)
            fprintf(stderr, "bnn_mpi: error: some ranks could not read the data in %s\n",
                    opt.data_dir);
        goto out;
    }
    uint64_t dh = fnv1a(FNV_OFFSET, train.images, train.n * IDX_PIXELS * sizeof(float));
    dh = fnv1a(dh, train.labels, train.n * sizeof(int32_t));
    if (!same_on_all_ranks(dh)) {
        if (rank == 0)
            fprintf(stderr, "bnn_mpi: error: the ranks read different training data from %s "
                            "(every node needs an identical copy)\n", opt.data_dir);
        goto out;
    }
    if (train.n < B) {
        if (rank == 0)
            fprintf(stderr, "bnn_mpi: error: the batch %zu is larger than the training set (%zu)\n",
                    B, train.n);
        goto out;
    }

    /* ---- model, guide, optimizer: the same seeds on every rank ---- */
    size_t sizes[BNN_MAX_LAYERS];
    size_t n_sizes = 0;
    sizes[n_sizes++] = IDX_PIXELS;
    for (size_t i = 0; i < opt.n_hidden; i++)
        sizes[n_sizes++] = opt.hidden[i];
    sizes[n_sizes++] = IDX_CLASSES;
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = n_sizes;
    mc.layer_sizes = sizes;
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.seed = opt.seed;
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.lr = opt.lr;
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    sc.dataset_size = train.n;
    sc.max_batch = b;
    sc.estimator = opt.estimator;
    sc.seed = opt.seed;
    bnn_status st = bnn_model_create(&mc, &model);
    if (st == BNN_OK)
        st = bnn_guide_create(model, &gc, &guide);
    if (st == BNN_OK)
        st = bnn_optimizer_create(guide, &oc, &sc, &optim);
    perm = malloc(train.n * sizeof *perm);
    xb = malloc(b * IDX_PIXELS * sizeof *xb);
    yb = malloc(b * sizeof *yb);
    probs = rank == 0 ? malloc(test.n * IDX_CLASSES * sizeof *probs) : NULL;
    ok = st == BNN_OK && perm && xb && yb && (rank != 0 || probs);
    if (!ok)
        fprintf(stderr, "bnn_mpi: rank %d: setup failed: %s\n", rank,
                st != BNN_OK ? bnn_last_error() : "out of memory");
    if (!all_ok(ok))
        goto out;

    size_t n_params, n_grads;
    float *params = bnn_guide_params(guide, &n_params);
    float *grads = bnn_guide_grads(guide, &n_grads);
    if (n_grads > (size_t)INT32_MAX) {
        /* MPI counts are int; a model this large would need chunking. */
        if (rank == 0)
            fprintf(stderr, "bnn_mpi: error: %zu parameters exceed one MPI count\n", n_grads);
        goto out;
    }
    if (!same_on_all_ranks(fnv1a(FNV_OFFSET, params, n_params * sizeof(float)))) {
        if (rank == 0)
            fprintf(stderr, "bnn_mpi: error: the initial parameters differ between ranks "
                            "(different library builds?)\n");
        goto out;
    }

    const size_t steps_per_epoch = train.n / B;
    if (rank == 0) {
        printf("bnn_mpi: %d rank%s, global batch %zu (%zu per rank), %zu train / %zu test "
               "images, %zu steps per epoch (last %zu examples of each shuffle dropped)\n",
               nranks, nranks > 1 ? "s" : "", B, b, train.n, test.n, steps_per_epoch,
               train.n % B);
        printf("bnn_mpi: network");
        for (size_t i = 0; i < n_sizes; i++)
            printf("%s%zu", i ? "-" : " ", sizes[i]);
        printf(", %zu variational parameters (%.1f MB allreduced per step), "
               "OPENBLAS_NUM_THREADS=%s\n",
               n_grads, (double)n_grads * sizeof(float) / 1e6,
               getenv("OPENBLAS_NUM_THREADS") ? getenv("OPENBLAS_NUM_THREADS") : "(unset)");
        fflush(stdout);
    }

    /* ---- training ---- */
    step_times tot = {0}, ep = {0};
    double tot_train = 0.0;
    size_t tot_steps = 0;
    double win_loss = 0.0; /* this rank's share of the loss since the last report */
    size_t win_steps = 0;
    int stop = 0, save_failed = 0;
    for (size_t epoch = 0; epoch < opt.epochs && !stop; epoch++) {
        shuffle(perm, train.n, opt.seed, epoch);
        MPI_Barrier(MPI_COMM_WORLD);
        double ep_start = MPI_Wtime();
        memset(&ep, 0, sizeof ep);
        size_t ep_steps = 0;
        for (size_t s = 0; s < steps_per_epoch; s++) {
            clock_t c0 = clock();
            double t0 = MPI_Wtime();
            const size_t *idx = perm + s * B + off;
            for (size_t i = 0; i < b; i++) {
                memcpy(xb + i * IDX_PIXELS, train.images + idx[i] * IDX_PIXELS,
                       IDX_PIXELS * sizeof(float));
                yb[i] = train.labels[idx[i]];
            }
            bnn_svi_stats stats = {.struct_size = sizeof stats};
            st = bnn_svi_grad_part(optim, xb, yb, NULL, b, off, B, &stats);
            if (st != BNN_OK)
                die(rank, "bnn_svi_grad_part", st);
            double t1 = MPI_Wtime();
            if (opt.barrier)
                MPI_Barrier(MPI_COMM_WORLD);
            double t2 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, grads, (int)n_grads, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            double t3 = MPI_Wtime();
            st = bnn_optimizer_step(optim);
            if (st != BNN_OK)
                die(rank, "bnn_optimizer_step", st);
            ep.compute += (t1 - t0) + (MPI_Wtime() - t3);
            ep.wait += t2 - t1;
            ep.comm += t3 - t2;
            ep.cpu += (double)(clock() - c0) / CLOCKS_PER_SEC;
            win_loss += stats.loss;
            win_steps++;
            ep_steps++;
            tot_steps++;
            stop = opt.max_steps && tot_steps >= opt.max_steps;

            if (tot_steps % opt.check_every == 0 || stop || s + 1 == steps_per_epoch) {
                double loss = win_loss;
                MPI_Reduce(rank == 0 ? MPI_IN_PLACE : &loss, &loss, 1, MPI_DOUBLE, MPI_SUM, 0,
                           MPI_COMM_WORLD);
                if (!same_on_all_ranks(fnv1a(FNV_OFFSET, params, n_params * sizeof(float)))) {
                    if (rank == 0)
                        fprintf(stderr,
                                "bnn_mpi: error: parameters diverged between ranks by step %zu "
                                "(checksums differ); stopping\n", tot_steps);
                    goto out;
                }
                if (rank == 0) {
                    double el = MPI_Wtime() - ep_start, k = 1e3 / (double)ep_steps;
                    printf("epoch %zu step %4zu/%zu  loss/example %.4f  %7.0f images/s  "
                           "%6.2f ms/step (allreduce %.2f, wait %.2f)  replicas identical\n",
                           epoch + 1, s + 1, steps_per_epoch,
                           loss / (double)(win_steps * B), (double)(ep_steps * B) / el,
                           el * k, ep.comm * k, ep.wait * k);
                    fflush(stdout);
                }
                win_loss = 0.0;
                win_steps = 0;
            }
            if (stop)
                break;
        }
        double ep_time = MPI_Wtime() - ep_start;
        tot_train += ep_time;
        tot.compute += ep.compute;
        tot.wait += ep.wait;
        tot.comm += ep.comm;
        tot.cpu += ep.cpu;

        step_times lo, hi;
        double use_lo, use_hi;
        times_range(&ep, &lo, &hi, &use_lo, &use_hi);
        if (rank == 0) {
            double k = 1e3 / (double)ep_steps;
            double e0 = MPI_Wtime();
            double acc = test_accuracy(guide, &test, opt.eval_samples, opt.seed, probs);
            printf("epoch %zu done: %zu steps in %.2f s, %.0f images/s, %.2f ms/step = compute "
                   "%.2f..%.2f + wait %.2f..%.2f + allreduce %.2f..%.2f (ms, min..max over "
                   "ranks; core use %.0f..%.0f%%); test accuracy %.2f%% (%zu networks, "
                   "%.2f s)\n",
                   epoch + 1, ep_steps, ep_time, (double)(ep_steps * B) / ep_time,
                   ep_time * k, lo.compute * k, hi.compute * k, lo.wait * k, hi.wait * k,
                   lo.comm * k, hi.comm * k, 100.0 * use_lo, 100.0 * use_hi, 100.0 * acc,
                   opt.eval_samples, MPI_Wtime() - e0);
            if (opt.save_path) {
                st = bnn_save(opt.save_path, guide, optim);
                if (st != BNN_OK) {
                    fprintf(stderr, "bnn_mpi: could not save %s: %s\n", opt.save_path,
                            bnn_last_error());
                    save_failed = 1;
                }
            }
            fflush(stdout);
        }
    }

    step_times lo, hi;
    double use_lo, use_hi;
    times_range(&tot, &lo, &hi, &use_lo, &use_hi);
    if (rank == 0) {
        double k = 1e3 / (double)tot_steps;
        printf("summary: ranks=%d batch=%zu steps=%zu images/s=%.0f ms/step=%.2f "
               "compute_ms=%.2f..%.2f wait_ms=%.2f..%.2f allreduce_ms=%.2f..%.2f "
               "allreduce_share=%.0f%% core_use=%.0f..%.0f%%%s%s\n",
               nranks, B, tot_steps, (double)(tot_steps * B) / tot_train, tot_train * k,
               lo.compute * k, hi.compute * k, lo.wait * k, hi.wait * k, lo.comm * k,
               hi.comm * k, 100.0 * hi.comm / tot_train, 100.0 * use_lo, 100.0 * use_hi,
               opt.save_path ? " saved=" : "", opt.save_path ? opt.save_path : "");
        if (use_lo < 0.9 && getenv("OPENBLAS_NUM_THREADS") &&
            !strcmp(getenv("OPENBLAS_NUM_THREADS"), "1"))
            printf("note: some rank got only %.0f%% of a core: other processes competed for "
                   "the processors, so these timings understate what the ranks can do\n",
                   100.0 * use_lo);
    }
    rc = save_failed;

out:
    free(probs);
    free(yb);
    free(xb);
    free(perm);
    bnn_optimizer_free(optim);
    bnn_guide_free(guide);
    bnn_model_free(model);
    idx_free(&test);
    idx_free(&train);
    MPI_Finalize();
    return rc;
}
