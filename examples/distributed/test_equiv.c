/*
 * Data-parallel SVI gives the single-process result.
 *
 * Run under mpirun with R ranks (R must divide the global batch of 16).
 * Every rank trains a small 20-16-4 network on synthetic data for a few
 * steps: gradient of its shard with bnn_svi_grad_part, MPI_Allreduce (sum),
 * bnn_optimizer_step.  Rank 0 also trains a second guide on the same global
 * batches in one process with bnn_svi_grad and compares, at every step, the
 * summed gradient with the whole-batch gradient and, at the end, the
 * parameters.  Float summation order is the only difference, so the
 * tolerances are a few ulps of the gradient's scale.  All ranks must end
 * with bit-identical parameters.
 *
 * A negative control shows the comparison can fail: shards whose noise is
 * keyed by their local rather than global index give a gradient far
 * outside the tolerance.
 *
 * Exits 0 when every check passes, 1 otherwise (on every rank).
 */
#include <mpi.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"

#define N_IN 20
#define N_HID 16
#define N_OUT 4
#define N_DATA 96 /* synthetic training set; 6 global batches per pass */
#define BATCH 16  /* global batch */
#define STEPS 15

/* |a - b| <= tol * scale + rtol * |b| for every element, where scale is
 * the largest |b|: elements that are tiny only through cancellation are
 * judged against the vector's scale, not their own. */
typedef struct cmp_result {
    double worst; /* max |a-b| / (tol*scale + rtol*|b|); <= 1 passes */
    size_t at;
    double a, b;
} cmp_result;

static cmp_result compare(const float *a, const float *b, size_t n, double tol, double rtol)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)b[i]));
    cmp_result r = {0.0, 0, 0.0, 0.0};
    for (size_t i = 0; i < n; i++) {
        double lim = tol * scale + rtol * fabs((double)b[i]);
        double d = fabs((double)a[i] - (double)b[i]);
        double q = lim > 0.0 ? d / lim : (d > 0.0 ? INFINITY : 0.0);
        if (!(q <= r.worst)) { /* also catches NaN */
            r.worst = q;
            r.at = i;
            r.a = a[i];
            r.b = b[i];
        }
    }
    return r;
}

static uint64_t mix_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s)
{
    return (double)(mix_next(s) >> 11) * 0x1p-53;
}

/* Inputs uniform in [-1, 1); label = argmax of a fixed random linear map,
 * so the task is learnable and the gradients do not vanish. */
static void make_data(float *x, int32_t *y)
{
    uint64_t s = 12345;
    float teacher[N_OUT][N_IN];
    for (int k = 0; k < N_OUT; k++)
        for (int j = 0; j < N_IN; j++)
            teacher[k][j] = (float)(2.0 * uniform(&s) - 1.0);
    for (int i = 0; i < N_DATA; i++) {
        float *xi = x + i * N_IN;
        for (int j = 0; j < N_IN; j++)
            xi[j] = (float)(2.0 * uniform(&s) - 1.0);
        int best = 0;
        float best_v = -INFINITY;
        for (int k = 0; k < N_OUT; k++) {
            float v = 0.0f;
            for (int j = 0; j < N_IN; j++)
                v += teacher[k][j] * xi[j];
            if (v > best_v) {
                best_v = v;
                best = k;
            }
        }
        y[i] = best;
    }
}

typedef struct trainer {
    bnn_model *model;
    bnn_guide *guide;
    bnn_optimizer *opt;
} trainer;

static int trainer_create(trainer *t, const bnn_model_config *mc, const bnn_optimizer_config *oc,
                          const bnn_svi_config *sc, size_t max_batch)
{
    memset(t, 0, sizeof *t);
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.seed = 7;
    gc.init_sigma = 0.05f; /* noisy enough that wrong noise keys show */
    bnn_svi_config s = *sc;
    s.max_batch = max_batch;
    bnn_status st = bnn_model_create(mc, &t->model);
    if (st == BNN_OK)
        st = bnn_guide_create(t->model, &gc, &t->guide);
    if (st == BNN_OK)
        st = bnn_optimizer_create(t->guide, oc, &s, &t->opt);
    if (st != BNN_OK) {
        fprintf(stderr, "test_equiv: setup failed: %s: %s\n", bnn_status_string(st),
                bnn_last_error());
        return -1;
    }
    return 0;
}

static void trainer_free(trainer *t)
{
    bnn_optimizer_free(t->opt);
    bnn_guide_free(t->guide);
    bnn_model_free(t->model);
}

static void fail_call(const char *what, bnn_status st)
{
    fprintf(stderr, "test_equiv: %s failed: %s: %s\n", what, bnn_status_string(st),
            bnn_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

typedef struct config {
    const char *name;
    bnn_estimator est;
    bnn_kl_mode kl;
    bnn_optimizer_kind kind;
    size_t particles;
} config;

/* Returns the number of failed checks on this rank. */
static int run_config(const config *c, const float *x, const int32_t *y, int rank, int nranks)
{
    const size_t R = (size_t)nranks, b = BATCH / R, off = (size_t)rank * b;
    const double grad_tol = 1e-5, grad_rtol = 1e-5; /* ~100 ulps of float */
    const double param_tol = 1e-5, param_rtol = 1e-5;
    int failures = 0;

    static const size_t sizes[] = {N_IN, N_HID, N_OUT};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 3;
    mc.layer_sizes = sizes;
    mc.activation = BNN_ACT_TANH; /* smooth: no kink for rounding to cross */
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.kind = c->kind;
    oc.lr = 1e-2f;
    oc.momentum = c->kind == BNN_OPT_SGD ? 0.9f : 0.0f;
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    sc.dataset_size = N_DATA;
    sc.estimator = c->est;
    sc.kl_mode = c->kl;
    sc.num_particles = c->particles;
    sc.seed = 99;

    trainer dist, single;
    int ok = trainer_create(&dist, &mc, &oc, &sc, b) == 0;
    if (ok && rank == 0)
        ok = trainer_create(&single, &mc, &oc, &sc, BATCH) == 0;
    if (!ok)
        MPI_Abort(MPI_COMM_WORLD, 1);

    size_t np, ng;
    float *p_dist = bnn_guide_params(dist.guide, &np);
    float *g_dist = bnn_guide_grads(dist.guide, &ng);
    float *p_single = rank == 0 ? bnn_guide_params(single.guide, &np) : NULL;
    float *g_single = rank == 0 ? bnn_guide_grads(single.guide, &ng) : NULL;
    double worst_grad = 0.0, sum_loss_err = 0.0;
    float *keep = malloc(ng * sizeof *keep);
    if (!keep)
        MPI_Abort(MPI_COMM_WORLD, 1);

    for (size_t step = 0; step < STEPS; step++) {
        /* Global batch `step`: rows [start, start + BATCH) of the data. */
        size_t start = (step * BATCH) % N_DATA;
        const float *xb = x + start * N_IN;
        const int32_t *yb = y + start;
        bnn_svi_stats sd = {.struct_size = sizeof sd};
        bnn_status st = bnn_svi_grad_part(dist.opt, xb + off * N_IN, yb + off, NULL, b, off,
                                          BATCH, &sd);
        if (st != BNN_OK)
            fail_call("bnn_svi_grad_part", st);
        MPI_Allreduce(MPI_IN_PLACE, g_dist, (int)ng, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double loss = sd.loss;
        MPI_Reduce(rank == 0 ? MPI_IN_PLACE : &loss, &loss, 1, MPI_DOUBLE, MPI_SUM, 0,
                   MPI_COMM_WORLD);

        if (rank == 0) {
            bnn_svi_stats ss = {.struct_size = sizeof ss};
            st = bnn_svi_grad(single.opt, xb, yb, NULL, BATCH, &ss);
            if (st != BNN_OK)
                fail_call("bnn_svi_grad", st);
            cmp_result cr = compare(g_dist, g_single, ng, grad_tol, grad_rtol);
            if (cr.worst > worst_grad)
                worst_grad = cr.worst;
            if (cr.worst > 1.0) {
                fprintf(stderr, "FAIL %s step %zu: gradient[%zu] = %.9g summed over %d ranks, "
                        "%.9g in one process\n", c->name, step, cr.at, cr.a, nranks, cr.b);
                failures++;
            }
            double le = fabs(loss - ss.loss) / fabs(ss.loss);
            if (le > sum_loss_err)
                sum_loss_err = le;
            if (!(le <= 1e-5)) {
                fprintf(stderr, "FAIL %s step %zu: summed loss %.9g, one process %.9g\n", c->name,
                        step, loss, ss.loss);
                failures++;
            }

            if (step == 0) {
                /* Negative control: the same shards with each one's noise
                 * keyed from 0 (as if every rank called bnn_svi_grad) must
                 * not pass.  The weight-sampling estimator shares one draw
                 * per step, so there the keying cannot matter. */
                memcpy(keep, g_single, ng * sizeof *keep);
                float *acc = malloc(ng * sizeof *acc);
                if (!acc)
                    MPI_Abort(MPI_COMM_WORLD, 1);
                memset(acc, 0, ng * sizeof *acc);
                for (size_t part = 0; part < R; part++) {
                    st = bnn_svi_grad_part(single.opt, xb + part * b * N_IN, yb + part * b, NULL,
                                           b, 0, BATCH, NULL);
                    if (st != BNN_OK)
                        fail_call("bnn_svi_grad_part", st);
                    for (size_t i = 0; i < ng; i++)
                        acc[i] += g_single[i];
                }
                cmp_result bad = compare(acc, keep, ng, grad_tol, grad_rtol);
                int expect_differ = R > 1 && c->est != BNN_EST_WEIGHT_SAMPLING;
                if (expect_differ && !(bad.worst > 100.0)) {
                    fprintf(stderr, "FAIL %s: wrongly keyed shards match the whole batch "
                            "(%.3g x tolerance): the comparison cannot detect errors\n",
                            c->name, bad.worst);
                    failures++;
                }
                if (!expect_differ && !(bad.worst <= 1.0)) {
                    fprintf(stderr, "FAIL %s: shared-draw shards differ from the whole batch "
                            "(%.3g x tolerance)\n", c->name, bad.worst);
                    failures++;
                }
                printf("  %-31s control: shards keyed from 0 give %.3g x tolerance\n",
                       c->name, bad.worst);
                free(acc);
                memcpy(g_single, keep, ng * sizeof *keep);
            }
            st = bnn_optimizer_step(single.opt);
            if (st != BNN_OK)
                fail_call("bnn_optimizer_step", st);
        }
        st = bnn_optimizer_step(dist.opt);
        if (st != BNN_OK)
            fail_call("bnn_optimizer_step", st);
    }

    /* Every rank's parameters, bit for bit, against rank 0's. */
    float *all = rank == 0 ? malloc(R * np * sizeof *all) : NULL;
    if (rank == 0 && !all)
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Gather(p_dist, (int)np, MPI_FLOAT, all, (int)np, MPI_FLOAT, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        for (size_t q = 1; q < R; q++)
            if (memcmp(all, all + q * np, np * sizeof *all) != 0) {
                fprintf(stderr, "FAIL %s: rank %zu's parameters differ from rank 0's\n", c->name,
                        q);
                failures++;
            }
        cmp_result cr = compare(p_dist, p_single, np, param_tol, param_rtol);
        /* Training must have moved the parameters, or the comparison of
         * trained parameters would test nothing. */
        trainer fresh;
        if (trainer_create(&fresh, &mc, &oc, &sc, BATCH) != 0)
            MPI_Abort(MPI_COMM_WORLD, 1);
        size_t n0;
        cmp_result moved = compare(bnn_guide_params(fresh.guide, &n0), p_single, np, param_tol,
                                   param_rtol);
        trainer_free(&fresh);
        if (!(moved.worst > 100.0)) {
            fprintf(stderr, "FAIL %s: training barely moved the parameters\n", c->name);
            failures++;
        }
        if (cr.worst > 1.0) {
            fprintf(stderr, "FAIL %s: after %d steps parameter[%zu] = %.9g over %d ranks, "
                    "%.9g in one process\n", c->name, STEPS, cr.at, cr.a, nranks, cr.b);
            failures++;
        }
        printf("  %-31s %s: worst error / tolerance: gradients %.3f, parameters %.3f; "
               "loss rel. error %.2g\n",
               c->name, failures ? "FAIL" : "ok", worst_grad, cr.worst, sum_loss_err);
        free(all);
        trainer_free(&single);
    }
    free(keep);
    trainer_free(&dist);
    return failures;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, nranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (BATCH % nranks != 0) {
        if (rank == 0)
            fprintf(stderr, "test_equiv: %d ranks do not divide the global batch %d\n", nranks,
                    BATCH);
        MPI_Finalize();
        return 1;
    }

    float *x = malloc(N_DATA * N_IN * sizeof *x);
    int32_t *y = malloc(N_DATA * sizeof *y);
    if (!x || !y)
        MPI_Abort(MPI_COMM_WORLD, 1);
    make_data(x, y);

    static const config configs[] = {
        {"local-reparam, analytic, Adam", BNN_EST_LOCAL_REPARAM, BNN_KL_ANALYTIC, BNN_OPT_ADAM, 1},
        {"flipout, MC KL, SGD+momentum", BNN_EST_FLIPOUT, BNN_KL_MONTE_CARLO, BNN_OPT_SGD, 2},
        {"weight sampling, analytic, SGD", BNN_EST_WEIGHT_SAMPLING, BNN_KL_ANALYTIC, BNN_OPT_SGD,
         1},
    };
    if (rank == 0)
        printf("test_equiv: %d rank%s, global batch %d, %d steps, network %d-%d-%d\n", nranks,
               nranks > 1 ? "s" : "", BATCH, STEPS, N_IN, N_HID, N_OUT);
    int failures = 0;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        failures += run_config(&configs[i], x, y, rank, nranks);

    /* Rank 0 did the comparisons; every rank exits with its verdict. */
    MPI_Bcast(&failures, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("test_equiv: %s\n", failures ? "FAILED" : "passed");
    free(y);
    free(x);
    MPI_Finalize();
    return failures ? 1 : 0;
}
