/* A training loop owned by the host program.
 *
 * libbnn only computes one SVI step at a time; everything around it is the
 * caller's: this program makes its own data (three interleaved spirals in
 * 2-D), shuffles and batches it with its own RNG, reports the ELBO terms of
 * every epoch, measures the validation NLL with bnn_predict, stops early
 * when that has not improved for PATIENCE epochs, keeps the best model on
 * disk with bnn_save, reloads it with bnn_load and finally asks the
 * reloaded model about points on the spirals and points far from any data.
 *
 *   custom_loop [model_file]     (default custom_loop_best.bnn)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include <bnn.h>

#define CLASSES 3
#define N_TRAIN 3000
#define N_VAL 600
#define BATCH 64
#define MAX_EPOCHS 60
#define PATIENCE 5
#define VAL_SAMPLES 20    /* networks averaged for the validation NLL */
#define REPORT_SAMPLES 200 /* networks per input for the final records */

/* ---- the host's own random numbers (splitmix64) ------------------------- */

typedef struct host_rng {
    uint64_t s;
} host_rng;

static uint64_t rng_next(host_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double rng_uniform(host_rng *r) /* [0, 1) */
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_normal(host_rng *r)
{
    double u = 1.0 - rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- data: three spirals ------------------------------------------------ */

/* Arm k of the spiral at position t in [0, 1]: radius grows with t while the
 * angle turns by 6 radians, the arms 120 degrees apart. */
static void spiral_point(int k, double t, double *px, double *py)
{
    double r = 0.15 + 0.85 * t;
    double a = 2.0943951023931957 * k + 6.0 * t;
    *px = r * cos(a);
    *py = r * sin(a);
}

static void make_spirals(host_rng *r, size_t n, float *x, int32_t *y)
{
    for (size_t i = 0; i < n; i++) {
        int k = (int)(rng_next(r) % CLASSES);
        double px, py;
        spiral_point(k, rng_uniform(r), &px, &py);
        x[2 * i] = (float)(px + 0.06 * rng_normal(r));
        x[2 * i + 1] = (float)(py + 0.06 * rng_normal(r));
        y[i] = k;
    }
}

static void shuffle(host_rng *r, size_t *idx, size_t n)
{
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(rng_next(r) % (i + 1));
        size_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

/* ---- error handling ----------------------------------------------------- */

/* Every libbnn call returns a status; on failure bnn_last_error() holds the
 * detail for this thread. */
#define TRY(call)                                                             \
    do {                                                                      \
        bnn_status st_ = (call);                                              \
        if (st_ != BNN_OK) {                                                  \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, \
                    bnn_status_string(st_), bnn_last_error());                \
            goto done;                                                        \
        }                                                                     \
    } while (0)

static void print_record(const char *kind, const float *x, int truth,
                         const bnn_prediction *p)
{
    char t[12] = "-";
    if (truth >= 0)
        snprintf(t, sizeof t, "%d", truth);
    printf("%-4s x=(%6.2f,%6.2f) true %-2s label %d  prob %.3f  entropy %.4f  "
           "MI %.4f  refused %d\n",
           kind, (double)x[0], (double)x[1], t, (int)p->label, (double)p->prob,
           (double)p->entropy, (double)p->mutual_info, (int)p->refused);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "custom_loop_best.bnn";
    int rc = 1;
    static float x_train[N_TRAIN * 2], x_val[N_VAL * 2];
    static int32_t y_train[N_TRAIN], y_val[N_VAL];
    static float val_probs[N_VAL * CLASSES];
    static bnn_prediction val_rec[N_VAL];
    static size_t order[N_TRAIN];
    float xb[BATCH * 2];
    int32_t yb[BATCH];

    bnn_model *model = NULL, *best_model = NULL;
    bnn_guide *guide = NULL, *best_guide = NULL;
    bnn_optimizer *opt = NULL, *best_opt = NULL;

    host_rng rng = {20240601u};
    make_spirals(&rng, N_TRAIN, x_train, y_train);
    make_spirals(&rng, N_VAL, x_val, y_val);
    for (size_t i = 0; i < N_TRAIN; i++)
        order[i] = i;

    /* model(): 2 -> 64 -> 64 -> 3, ReLU, N(0, 1) prior, categorical. */
    const size_t sizes[] = {2, 64, 64, CLASSES};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = sizeof sizes / sizeof sizes[0];
    mc.layer_sizes = sizes;
    TRY(bnn_model_create(&mc, &model));

    /* guide(): mean-field Normal.  Starting at sigma = 0.1 rather than the
     * default 1e-3 puts the KL near its final size within a few epochs, so
     * early stopping on the validation NLL does not stop while the
     * posterior is still a near point estimate. */
    bnn_guide_config gc;
    bnn_guide_config_init(&gc);
    gc.init_sigma = 0.1f;
    TRY(bnn_guide_create(model, &gc, &guide));

    /* SVI with Adam; the KL of each batch is scaled by batch / N. */
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.lr = 0.01f;
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    sc.dataset_size = N_TRAIN;
    sc.max_batch = BATCH;
    TRY(bnn_optimizer_create(guide, &oc, &sc, &opt));

    printf("epoch  -ELBO/N     NLL/N    KL-term/N   val NLL  val acc\n");
    double best_nll = INFINITY;
    int best_epoch = -1, since_best = 0;
    for (int epoch = 1; epoch <= MAX_EPOCHS; epoch++) {
        shuffle(&rng, order, N_TRAIN);
        double loss = 0.0, nll = 0.0, kl_term = 0.0;
        for (size_t b0 = 0; b0 < N_TRAIN; b0 += BATCH) {
            size_t n = N_TRAIN - b0 < BATCH ? N_TRAIN - b0 : BATCH;
            for (size_t i = 0; i < n; i++) {
                size_t j = order[b0 + i];
                xb[2 * i] = x_train[2 * j];
                xb[2 * i + 1] = x_train[2 * j + 1];
                yb[i] = y_train[j];
            }
            bnn_svi_stats st;
            st.struct_size = sizeof st;
            TRY(bnn_svi_step(opt, xb, yb, NULL, n, &st));
            loss += st.loss;
            nll += st.nll;
            kl_term += st.kl_term;
        }

        bnn_metrics vm;
        vm.struct_size = sizeof vm;
        TRY(bnn_predict(guide, x_val, N_VAL, VAL_SAMPLES, 7, val_probs));
        TRY(bnn_eval_metrics(val_probs, y_val, N_VAL, CLASSES, 10, &vm));
        printf("%5d  %8.4f  %8.4f  %9.4f  %8.4f  %7.4f\n", epoch,
               loss / N_TRAIN, nll / N_TRAIN, kl_term / N_TRAIN, vm.nll,
               vm.accuracy);

        if (vm.nll < best_nll) {
            best_nll = vm.nll;
            best_epoch = epoch;
            since_best = 0;
            /* Atomic replace: a crash mid-save keeps the previous best. */
            TRY(bnn_save(path, guide, opt));
        } else if (++since_best >= PATIENCE) {
            printf("stopping: validation NLL has not improved for %d epochs\n",
                   PATIENCE);
            break;
        }
    }
    printf("best epoch %d, validation NLL %.4f, saved to %s\n", best_epoch,
           best_nll, path);

    /* The training objects are no longer needed: continue from the file. */
    bnn_optimizer_free(opt);
    opt = NULL;
    bnn_guide_free(guide);
    guide = NULL;
    bnn_model_free(model);
    model = NULL;
    TRY(bnn_load(path, NULL, &best_model, &best_guide, &best_opt));
    printf("reloaded %zu-layer model with %zu parameters (optimizer state: "
           "%s, %llu steps)\n",
           bnn_model_layer_count(best_model),
           bnn_model_param_count(best_model), best_opt ? "yes" : "no",
           (unsigned long long)bnn_optimizer_step_count(best_opt));

    bnn_metrics bm;
    bm.struct_size = sizeof bm;
    TRY(bnn_predict(best_guide, x_val, N_VAL, VAL_SAMPLES, 7, val_probs));
    TRY(bnn_eval_metrics(val_probs, y_val, N_VAL, CLASSES, 10, &bm));
    printf("validation accuracy: %.4f (NLL %.4f, ECE %.4f)\n", bm.accuracy,
           bm.nll, bm.ece);

    /* The default median rule (threshold 0.2) hardly ever refuses with three
     * classes.  Refuse on mutual information (disagreement between sampled
     * networks) instead, at the threshold that keeps 95% of the validation
     * inputs. */
    bnn_predict_config pc;
    bnn_predict_config_init(&pc);
    pc.num_samples = REPORT_SAMPLES;
    pc.rule = BNN_REFUSE_MUTUAL_INFO;
    pc.threshold = 0.0f;
    TRY(bnn_predict_with_uncertainty(best_guide, &pc, x_val, N_VAL, val_rec,
                                     sizeof val_rec[0], NULL, NULL));
    double cov = 0.0, acc = 0.0;
    TRY(bnn_calibrate_threshold(val_rec, sizeof val_rec[0], y_val, N_VAL,
                                BNN_REFUSE_MUTUAL_INFO, BNN_CALIBRATE_COVERAGE,
                                0.95, &pc.threshold, &cov, &acc));
    printf("mutual information threshold %.4f nats: validation coverage "
           "%.4f, accuracy on accepted %.4f\n",
           (double)pc.threshold, cov, acc);

    /* In-distribution: the middle and outer part of each arm.  Far: points
     * several radii away from the unit disc that holds all the data. */
    float xn[2 * 2 * CLASSES];
    int32_t tn[2 * CLASSES];
    for (int k = 0; k < CLASSES; k++)
        for (int j = 0; j < 2; j++) {
            double px, py;
            spiral_point(k, j ? 0.8 : 0.5, &px, &py);
            xn[2 * (2 * k + j)] = (float)px;
            xn[2 * (2 * k + j) + 1] = (float)py;
            tn[2 * k + j] = k;
        }
    const float xf[] = {4.0f, 4.0f, -6.0f, 1.0f, 0.5f, -8.0f, 10.0f, -3.0f,
                        -5.0f, -5.0f, 3.0f, 9.0f};
    const size_t n_near = 2 * CLASSES, n_far = sizeof xf / sizeof xf[0] / 2;
    bnn_prediction rn[2 * CLASSES], rf[sizeof xf / sizeof xf[0] / 2];
    TRY(bnn_predict_with_uncertainty(best_guide, &pc, xn, n_near, rn,
                                     sizeof rn[0], NULL, NULL));
    TRY(bnn_predict_with_uncertainty(best_guide, &pc, xf, n_far, rf,
                                     sizeof rf[0], NULL, NULL));
    double hn = 0.0, hf = 0.0, in_ = 0.0, if_ = 0.0;
    for (size_t i = 0; i < n_near; i++) {
        print_record("near", xn + 2 * i, tn[i], &rn[i]);
        hn += rn[i].entropy / (double)n_near;
        in_ += rn[i].mutual_info / (double)n_near;
    }
    for (size_t i = 0; i < n_far; i++) {
        print_record("far", xf + 2 * i, -1, &rf[i]);
        hf += rf[i].entropy / (double)n_far;
        if_ += rf[i].mutual_info / (double)n_far;
    }
    printf("mean entropy: near %.4f, far %.4f; mean MI: near %.4f, far %.4f\n",
           hn, hf, in_, if_);
    rc = 0;

done:
    bnn_optimizer_free(best_opt);
    bnn_guide_free(best_guide);
    bnn_model_free(best_model);
    bnn_optimizer_free(opt);
    bnn_guide_free(guide);
    bnn_model_free(model);
    return rc;
}
