/* 1-D Bayesian regression with a Gaussian likelihood.
 *
 * Data y = sin(3x) + noise, observed only on [-1, 0.2] and [0.6, 1].  After
 * training, the predictive mean and a 95% band, mean +- 1.96 sqrt(var), are
 * printed over a grid on [-2, 2]; var holds the spread of the sampled
 * networks (epistemic) plus noise_sigma^2.  Beyond the data the band opens
 * up quickly: with ReLU units the pre-activations, and with them the spread
 * of the sampled networks, grow with |x|.  In the gap (0.2, 0.6) it hardly
 * widens at all: a mean-field Gaussian posterior is known to underestimate
 * uncertainty between clusters of data ("in-between" uncertainty, Foong et
 * al. 2019), and the printed table shows it.  Built with cairo, the program
 * also draws the figure as a PNG.
 *
 *   regression [figure.png]     (default regression.png)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include <bnn.h>

#ifdef BNN_HAVE_CAIRO
#include <cairo.h>
#ifdef BNN_HAVE_FONTCONFIG
#include <fontconfig/fontconfig.h>
#endif
#endif

#define N_DATA 160
#define BATCH 32
#define EPOCHS 800
#define NOISE 0.1f
#define GRID 81 /* [-2, 2] in steps of 0.05 */
#define PRED_SAMPLES 400

typedef struct host_rng {
    uint64_t s;
} host_rng;

/* splitmix64 */
static uint64_t rng_next(host_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double rng_uniform(host_rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_normal(host_rng *r)
{
    double u = 1.0 - rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

#define TRY(call)                                                             \
    do {                                                                      \
        bnn_status st_ = (call);                                              \
        if (st_ != BNN_OK) {                                                  \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, \
                    bnn_status_string(st_), bnn_last_error());                \
            goto done;                                                        \
        }                                                                     \
    } while (0)

#ifdef BNN_HAVE_CAIRO
/* Data as dots, the band as a shaded area, the mean as a line. */
static int draw_png(const char *path, const float *xd, const float *yd,
                    size_t nd, const float *xg, const float *mean,
                    const float *half, size_t ng)
{
    const int W = 800, H = 480, M = 40;
    const double x0 = -2.0, x1 = 2.0, y0 = -3.0, y1 = 3.0;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(s);
#define PX(x) (M + ((x) - x0) / (x1 - x0) * (W - 2 * M))
#define PY(y) (H - M - ((y) - y0) / (y1 - y0) * (H - 2 * M))
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_rectangle(cr, M, M, W - 2 * M, H - 2 * M);
    cairo_clip(cr);

    cairo_set_source_rgb(cr, 0.75, 0.85, 1.0);
    cairo_move_to(cr, PX(xg[0]), PY(mean[0] + half[0]));
    for (size_t i = 1; i < ng; i++)
        cairo_line_to(cr, PX(xg[i]), PY(mean[i] + half[i]));
    for (size_t i = ng; i-- > 0;)
        cairo_line_to(cr, PX(xg[i]), PY(mean[i] - half[i]));
    cairo_close_path(cr);
    cairo_fill(cr);

    cairo_set_source_rgb(cr, 0.1, 0.2, 0.7);
    cairo_set_line_width(cr, 2.0);
    cairo_move_to(cr, PX(xg[0]), PY(mean[0]));
    for (size_t i = 1; i < ng; i++)
        cairo_line_to(cr, PX(xg[i]), PY(mean[i]));
    cairo_stroke(cr);

    cairo_set_source_rgb(cr, 0, 0, 0);
    for (size_t i = 0; i < nd; i++) {
        cairo_arc(cr, PX(xd[i]), PY(yd[i]), 2.0, 0, 6.283185307179586);
        cairo_fill(cr);
    }

    cairo_reset_clip(cr);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, M, M, W - 2 * M, H - 2 * M);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 12);
    for (int t = -3; t <= 3; t++) {
        char lab[12];
        snprintf(lab, sizeof lab, "%d", t);
        if (t >= -2 && t <= 2) {
            cairo_move_to(cr, PX(t) - 4, H - M + 16);
            cairo_show_text(cr, lab);
        }
        cairo_move_to(cr, M - 20, PY(t) + 4);
        cairo_show_text(cr, lab);
    }
    cairo_move_to(cr, M, M - 12);
    cairo_show_text(cr, "y = sin(3x) + noise: data, predictive mean, 95% band");
#undef PX
#undef PY
    cairo_destroy(cr);
    cairo_status_t cs = cairo_surface_write_to_png(s, path);
    cairo_surface_destroy(s);
    /* Release the font caches that cairo's text functions filled, so leak
     * checkers see a clean exit. */
    cairo_debug_reset_static_data();
#ifdef BNN_HAVE_FONTCONFIG
    FcFini();
#endif
    if (cs != CAIRO_STATUS_SUCCESS) {
        fprintf(stderr, "%s: %s\n", path, cairo_status_to_string(cs));
        return -1;
    }
    return 0;
}
#endif

int main(int argc, char **argv)
{
    const char *png = argc > 1 ? argv[1] : "regression.png";
    int rc = 1;
    float xd[N_DATA], yd[N_DATA], xb[BATCH], yb[BATCH];
    float xg[GRID], mean[GRID], var[GRID], half[GRID];
    size_t order[N_DATA];
    bnn_model *model = NULL;
    bnn_guide *guide = NULL;
    bnn_optimizer *opt = NULL;

    /* x uniform on the two intervals (lengths 1.2 and 0.4). */
    host_rng rng = {42};
    for (size_t i = 0; i < N_DATA; i++) {
        double u = rng_uniform(&rng) * 1.6;
        double x = u < 1.2 ? -1.0 + u : 0.6 + (u - 1.2);
        xd[i] = (float)x;
        yd[i] = (float)(sin(3.0 * x) + NOISE * rng_normal(&rng));
        order[i] = i;
    }

    const size_t sizes[] = {1, 50, 50, 1};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 4;
    mc.layer_sizes = sizes;
    mc.activation = BNN_ACT_RELU;
    mc.likelihood = BNN_LIK_GAUSSIAN;
    mc.noise_sigma = NOISE; /* known observation noise */
    TRY(bnn_model_create(&mc, &model));

    TRY(bnn_guide_create(model, NULL, &guide)); /* default initialisation */

    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.lr = 0.01f;
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    sc.dataset_size = N_DATA;
    sc.max_batch = BATCH;
    TRY(bnn_optimizer_create(guide, &oc, &sc, &opt));

    for (int epoch = 1; epoch <= EPOCHS; epoch++) {
        for (size_t i = N_DATA - 1; i > 0; i--) {
            size_t j = (size_t)(rng_next(&rng) % (i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double loss = 0.0, nll = 0.0, klt = 0.0;
        for (size_t b0 = 0; b0 < N_DATA; b0 += BATCH) {
            size_t n = N_DATA - b0 < BATCH ? N_DATA - b0 : BATCH;
            for (size_t i = 0; i < n; i++) {
                xb[i] = xd[order[b0 + i]];
                yb[i] = yd[order[b0 + i]];
            }
            bnn_svi_stats st;
            st.struct_size = sizeof st;
            /* Gaussian models take float targets and no labels. */
            TRY(bnn_svi_step(opt, xb, NULL, yb, n, &st));
            loss += st.loss;
            nll += st.nll;
            klt += st.kl_term;
        }
        if (epoch % 100 == 0)
            printf("epoch %4d  -ELBO/N %8.4f  NLL/N %8.4f  KL-term/N %8.4f\n",
                   epoch, loss / N_DATA, nll / N_DATA, klt / N_DATA);
    }

    for (size_t i = 0; i < GRID; i++)
        xg[i] = -2.0f + 4.0f * (float)i / (float)(GRID - 1);
    TRY(bnn_predict_regression(guide, xg, GRID, PRED_SAMPLES, 3, mean, var));
    printf("     x      mean     lower     upper     width\n");
    for (size_t i = 0; i < GRID; i++) {
        half[i] = 1.96f * sqrtf(var[i]);
        printf("%6.2f  %8.4f  %8.4f  %8.4f  %8.4f\n", (double)xg[i],
               (double)mean[i], (double)(mean[i] - half[i]),
               (double)(mean[i] + half[i]), (double)(2.0f * half[i]));
    }

#ifdef BNN_HAVE_CAIRO
    if (draw_png(png, xd, yd, N_DATA, xg, mean, half, GRID) != 0)
        goto done;
    printf("figure written to %s\n", png);
#else
    (void)png;
    printf("figure not drawn (built without cairo)\n");
#endif
    rc = 0;

done:
    bnn_optimizer_free(opt);
    bnn_guide_free(guide);
    bnn_model_free(model);
    return rc;
}
