/* An application that knows libbnn only through its installed header and
 * pkg-config: built once against the shared and once against the static
 * library.  Trains a tiny classifier and checks its predictions. */
#include <bnn.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                          \
    do {                                                                     \
        bnn_status st_ = (call);                                             \
        if (st_ != BNN_OK) {                                                 \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__,      \
                    #call, bnn_status_string(st_), bnn_last_error());        \
            return 1;                                                        \
        }                                                                    \
    } while (0)

enum { N = 64, STEPS = 200, SAMPLES = 20 };

/* Two well separated classes on the line x0 = 0, from a fixed LCG so the
 * program needs nothing but libbnn. */
static void make_data(float *x, int32_t *y)
{
    uint32_t s = 12345u;
    for (int i = 0; i < N; i++) {
        float v[2];
        for (int k = 0; k < 2; k++) {
            s = s * 1664525u + 1013904223u;
            v[k] = (float)(s >> 8) / 16777216.0f * 2.0f - 1.0f;
        }
        y[i] = i % 2;
        /* |x0| >= 0.3 on the side of the class, x1 is noise. */
        v[0] = (y[i] ? 1.0f : -1.0f) * (0.3f + 0.7f * fabsf(v[0]));
        x[2 * i] = v[0];
        x[2 * i + 1] = v[1];
    }
}

static int train_and_predict(void)
{
    float x[2 * N], probs[2 * N];
    int32_t y[N];
    make_data(x, y);

    const size_t sizes[] = {2, 16, 2};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 3;
    mc.layer_sizes = sizes;
    bnn_model *model = NULL;
    CHECK(bnn_model_create(&mc, &model));

    bnn_guide *guide = NULL;
    CHECK(bnn_guide_create(model, NULL, &guide));

    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.lr = 0.03f;
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    sc.dataset_size = N;
    sc.max_batch = N;
    sc.kl_weight = 0.1f;
    bnn_optimizer *opt = NULL;
    CHECK(bnn_optimizer_create(guide, &oc, &sc, &opt));

    double first = 0.0, last = 0.0;
    for (int step = 0; step < STEPS; step++) {
        bnn_svi_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        CHECK(bnn_svi_step(opt, x, y, NULL, N, &st));
        if (!isfinite(st.loss)) {
            fprintf(stderr, "loss %g at step %d\n", st.loss, step);
            return 1;
        }
        if (step < 10)
            first += st.loss / 10;
        if (step >= STEPS - 10)
            last += st.loss / 10;
    }
    if ((int)bnn_optimizer_step_count(opt) != STEPS || !(last < first)) {
        fprintf(stderr, "steps %d, loss %g -> %g\n",
                (int)bnn_optimizer_step_count(opt), first, last);
        return 1;
    }

    CHECK(bnn_predict(guide, x, N, SAMPLES, 7, probs));
    int correct = 0;
    for (int i = 0; i < N; i++) {
        float p0 = probs[2 * i], p1 = probs[2 * i + 1];
        if (!(p0 >= 0.0f && p1 >= 0.0f && fabsf(p0 + p1 - 1.0f) < 1e-4f)) {
            fprintf(stderr, "input %d: probabilities %g %g\n", i, p0, p1);
            return 1;
        }
        correct += (p1 > p0) == (y[i] == 1);
    }
    printf("loss %.3f -> %.3f, training accuracy %d/%d\n", first, last,
           correct, N);
    if (correct < N * 9 / 10)
        return 1;

    bnn_optimizer_free(opt);
    bnn_guide_free(guide);
    bnn_model_free(model);
    return 0;
}

int main(void)
{
    printf("libbnn %s (header %s)\n", bnn_version_string(),
           BNN_VERSION_STRING);
    if (strcmp(bnn_version_string(), BNN_VERSION_STRING) != 0 ||
        bnn_version_number() != BNN_VERSION_NUMBER)
        return 1;
    return train_and_predict();
}
