/* 1-D Bayesian regression with learned noise, and its uncertainty split
 * into the noise in the data (aleatoric) and the model's ignorance
 * (epistemic).
 *
 * Data y = sin(3x) + sd(x) eps with sd(x) = 0.05 + 0.075 (x + 1), growing
 * from 0.05 at x = -1 to 0.2 at x = 1, observed only on [-1, 0.2] and
 * [0.6, 1].  Two models learn the noise:
 * - BNN_LIK_GAUSSIAN_LEARNED, one sigma for all x: it settles near the
 *   root mean square of sd(x) over the data (plus the posterior's own
 *   spread on it, which the ELBO folds into sigma);
 * - BNN_LIK_GAUSSIAN_HETERO, a network with a mean and a log-variance
 *   output: its aleatoric sd follows sd(x).
 * bnn_predict_regression_split then gives, per x, the predictive mean, the
 * aleatoric variance and the epistemic variance.  The table over [-2, 2]
 * shows the aleatoric part following the true noise where there is data
 * and the epistemic part growing away from it (with ReLU units the
 * sampled networks fan out linearly).  In the gap (0.2, 0.6) the epistemic
 * part hardly grows: mean-field posteriors are known to underestimate
 * uncertainty between clusters of data (Foong et al. 2019).
 *
 * Held-out data from the same law check the 95% interval's coverage, and
 * an epistemic refusal threshold calibrated on it (accept 95%) refuses
 * most inputs far from the data.
 *
 * The figure (a PNG written by a minimal encoder below: stored deflate
 * blocks, CRC-32 and Adler-32, no library) shows the data (black), the
 * mean (dark blue), the aleatoric band mean +- 1.96 sd_aleatoric (orange)
 * and around it the rest of the total band mean +- 1.96 sd_total, the
 * epistemic part (light blue).
 *
 *   regression [figure.png]     (default regression.png)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bnn.h>

#define N_DATA 600
#define N_HELD 400
#define BATCH 32
#define EPOCHS 400
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

static double true_sd(double x)
{
    return 0.05 + 0.075 * (x + 1.0);
}

/* n points, x uniform on [-1, 0.2] U [0.6, 1] (lengths 1.2 and 0.4). */
static void make_data(host_rng *r, float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double u = rng_uniform(r) * 1.6;
        double xi = u < 1.2 ? -1.0 + u : 0.6 + (u - 1.2);
        x[i] = (float)xi;
        y[i] = (float)(sin(3.0 * xi) + true_sd(xi) * rng_normal(r));
    }
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

/* ---- a minimal PNG writer: 8-bit RGB, stored (uncompressed) deflate ---- */

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* length, type, data, CRC of type and data */
static int put_chunk(FILE *f, const char *type, const unsigned char *data, size_t n)
{
    unsigned char hdr[8], crc[4];
    be32(hdr, (uint32_t)n);
    memcpy(hdr + 4, type, 4);
    be32(crc, crc32_update(crc32_update(0, hdr + 4, 4), data, n));
    /* IEND has no data: fwrite's buffer must not be NULL even for 0 bytes */
    return fwrite(hdr, 1, 8, f) == 8 && (n == 0 || fwrite(data, 1, n, f) == n) &&
           fwrite(crc, 1, 4, f) == 4;
}

/* rgb: h rows of w pixels, 3 bytes each. */
static int write_png(const char *path, const unsigned char *rgb, uint32_t w, uint32_t h)
{
    /* zlib stream: header, stored blocks of at most 65535 bytes, Adler-32
     * of the raw data (each row a filter byte 0 then its pixels) */
    size_t row = 1 + 3 * (size_t)w, raw = row * h;
    size_t blocks = (raw + 65534) / 65535, zn = 2 + raw + 5 * blocks + 4;
    unsigned char *z = malloc(zn);
    if (!z)
        return -1;
    size_t o = 0, done = 0;
    uint32_t a = 1, b = 0;
    z[o++] = 0x78;
    z[o++] = 0x01;
    while (done < raw) {
        size_t len = raw - done < 65535 ? raw - done : 65535;
        z[o++] = done + len == raw; /* BFINAL, BTYPE 00 */
        z[o++] = (unsigned char)len;
        z[o++] = (unsigned char)(len >> 8);
        z[o++] = (unsigned char)~len;
        z[o++] = (unsigned char)(~len >> 8);
        for (size_t i = 0; i < len; i++, done++) {
            size_t r = done / row, c = done % row;
            unsigned char v = c == 0 ? 0 : rgb[r * 3 * w + c - 1];
            z[o++] = v;
            a = (a + v) % 65521;
            b = (b + a) % 65521;
        }
    }
    be32(z + o, b << 16 | a);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char ihdr[13] = {0};
    be32(ihdr, w);
    be32(ihdr + 4, h);
    ihdr[8] = 8; /* bits per channel */
    ihdr[9] = 2; /* RGB */
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(sig, 1, 8, f) == 8 && put_chunk(f, "IHDR", ihdr, 13) &&
             put_chunk(f, "IDAT", z, zn) && put_chunk(f, "IEND", NULL, 0);
    ok = f && fclose(f) == 0 && ok;
    free(z);
    return ok ? 0 : -1;
}

/* ---- the figure ------------------------------------------------------- */

enum { W = 800, H = 480, M = 30 };

static void fill_rect(unsigned char *img, int x0, int y0, int x1, int y1,
                      const unsigned char c[3])
{
    for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < H; y++)
        for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < W; x++)
            memcpy(img + 3 * ((size_t)y * W + (size_t)x), c, 3);
}

/* Pixel rows y0..y1 of column x, clipped to the plot's frame. */
static void column(unsigned char *img, int x, int y0, int y1, const unsigned char c[3])
{
    fill_rect(img, x, y0 < M ? M : y0, x, y1 > H - M ? H - M : y1, c);
}

static int px(double x)
{
    return (int)lround(M + (x + 2.0) / 4.0 * (W - 2 * M));
}

static int py(double y)
{
    return (int)lround(H - M - (y + 2.5) / 5.0 * (H - 2 * M));
}

/* Bands per pixel column, interpolated along the grid (g: GRID records
 * evenly spaced on [-2, 2]), then the mean and the data on top. */
static int draw(const char *path, const float *xd, const float *yd, size_t nd,
                const bnn_regression_prediction *g, size_t ng)
{
    static const unsigned char white[3] = {255, 255, 255}, grey[3] = {120, 120, 120},
                               epi[3] = {170, 200, 245}, ale[3] = {245, 170, 90},
                               mean[3] = {20, 40, 140}, dot[3] = {0, 0, 0};
    unsigned char *img = malloc(3 * (size_t)W * H);
    if (!img)
        return -1;
    fill_rect(img, 0, 0, W - 1, H - 1, white);
    int prev = -1;
    for (int x = M; x <= W - M; x++) {
        double t = (double)(x - M) / (W - 2 * M) * (double)(ng - 1);
        size_t i = (size_t)t < ng - 1 ? (size_t)t : ng - 2;
        double f = t - (double)i;
#define LERP(field) ((1 - f) * g[i].field + f * g[i + 1].field)
        double mu = LERP(mean), tot = 1.96 * sqrt(LERP(variance)),
               al = 1.96 * sqrt(LERP(aleatoric));
#undef LERP
        column(img, x, py(mu + tot), py(mu - tot), epi);
        column(img, x, py(mu + al), py(mu - al), ale);
        int y = py(mu);
        if (prev >= 0) /* join the mean's pixels vertically */
            column(img, x, y < prev ? y : prev, y < prev ? prev : y, mean);
        column(img, x, y - 1, y + 1, mean);
        prev = y;
    }
    for (size_t i = 0; i < nd; i++) /* all inside the frame: |y| < 2.5 */
        fill_rect(img, px(xd[i]) - 1, py(yd[i]) - 1, px(xd[i]) + 1, py(yd[i]) + 1, dot);
    fill_rect(img, M, M, W - M, M, grey);
    fill_rect(img, M, H - M, W - M, H - M, grey);
    fill_rect(img, M, M, M, H - M, grey);
    fill_rect(img, W - M, M, W - M, H - M, grey);
    for (int k = -2; k <= 2; k++) /* ticks at integer x and y */
        fill_rect(img, px(k), H - M, px(k), H - M + 6, grey);
    for (int k = -2; k <= 2; k++)
        fill_rect(img, M - 6, py(k), M, py(k), grey);
    int rc = write_png(path, img, W, H);
    free(img);
    return rc;
}

/* ---- training ------------------------------------------------------------ */

/* A ReLU 1-32-32-out network with the given likelihood, trained by Adam
 * (lr 0.01, cosine-decayed) on the data in shuffled minibatches. */
static bnn_status train(bnn_likelihood lik, const float *xd, const float *yd, host_rng *rng,
                        bnn_model **model, bnn_guide **guide)
{
    const size_t sizes[] = {1, 32, 32, lik == BNN_LIK_GAUSSIAN_HETERO ? 2 : 1};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 4;
    mc.layer_sizes = sizes;
    mc.activation = BNN_ACT_RELU;
    mc.likelihood = lik;
    mc.noise_sigma = 0.5f; /* LEARNED: the starting sigma */
    bnn_optimizer *opt = NULL;
    bnn_status st = bnn_model_create(&mc, model);
    if (st == BNN_OK)
        st = bnn_guide_create(*model, NULL, guide);
    bnn_optimizer_config oc;
    bnn_optimizer_config_init(&oc);
    oc.lr = 0.01f;
    bnn_svi_config sc;
    bnn_svi_config_init(&sc);
    sc.dataset_size = N_DATA;
    sc.max_batch = BATCH;
    if (st == BNN_OK)
        st = bnn_optimizer_create(*guide, &oc, &sc, &opt);
    size_t order[N_DATA];
    float xb[BATCH], yb[BATCH];
    for (size_t i = 0; i < N_DATA; i++)
        order[i] = i;
    for (int epoch = 1; st == BNN_OK && epoch <= EPOCHS; epoch++) {
        /* lr cosine-decayed to a hundredth: Adam's last iterates settle
         * instead of jumping about the optimum */
        float lr;
        st = bnn_lr_schedule(BNN_LR_COSINE, 0.01f, 1e-4f, (uint64_t)epoch - 1, EPOCHS, &lr);
        if (st == BNN_OK)
            st = bnn_optimizer_set_lr(opt, lr);
        for (size_t i = N_DATA - 1; i > 0; i--) {
            size_t j = (size_t)(rng_next(rng) % (i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double loss = 0.0;
        for (size_t b0 = 0; st == BNN_OK && b0 < N_DATA; b0 += BATCH) {
            size_t n = N_DATA - b0 < BATCH ? N_DATA - b0 : BATCH;
            for (size_t i = 0; i < n; i++) {
                xb[i] = xd[order[b0 + i]];
                yb[i] = yd[order[b0 + i]];
            }
            bnn_svi_stats s;
            bnn_svi_stats_init(&s);
            st = bnn_svi_step(opt, xb, NULL, yb, n, &s);
            loss += s.loss;
        }
        if (st == BNN_OK && epoch % 100 == 0)
            printf("%s epoch %4d  -ELBO/N %8.4f\n",
                   lik == BNN_LIK_GAUSSIAN_HETERO ? "heteroscedastic" : "learned sigma",
                   epoch, loss / N_DATA);
    }
    bnn_optimizer_free(opt);
    return st;
}

int main(int argc, char **argv)
{
    const char *png = argc > 1 ? argv[1] : "regression.png";
    int rc = 1;
    static float xd[N_DATA], yd[N_DATA], xh[N_HELD], yh[N_HELD], xg[GRID];
    static bnn_regression_prediction rg[GRID], rh[N_HELD];
    bnn_model *m1 = NULL, *m2 = NULL;
    bnn_guide *g1 = NULL, *g2 = NULL;
    host_rng rng = {42};
    make_data(&rng, xd, yd, N_DATA);
    make_data(&rng, xh, yh, N_HELD);

    /* One sigma for every x: compare with the noise's root mean square. */
    TRY(train(BNN_LIK_GAUSSIAN_LEARNED, xd, yd, &rng, &m1, &g1));
    float sigma;
    TRY(bnn_guide_get_noise_sigma(g1, &sigma, 1));
    double ms = 0.0;
    for (size_t i = 0; i < N_DATA; i++)
        ms += true_sd(xd[i]) * true_sd(xd[i]) / N_DATA;
    printf("learned sigma %.4f  true noise rms %.4f\n", (double)sigma, sqrt(ms));

    /* A noise level per x, and the split. */
    TRY(train(BNN_LIK_GAUSSIAN_HETERO, xd, yd, &rng, &m2, &g2));
    bnn_predict_config pc;
    bnn_predict_config_init(&pc);
    pc.num_samples = PRED_SAMPLES;
    pc.seed = 3;
    for (size_t i = 0; i < GRID; i++)
        xg[i] = -2.0f + 4.0f * (float)i / (float)(GRID - 1);
    TRY(bnn_predict_regression_split(g2, &pc, xg, GRID, rg, sizeof rg[0]));
    TRY(bnn_predict_regression_split(g2, &pc, xh, N_HELD, rh, sizeof rh[0]));

    /* The 95% interval on held-out data, and an epistemic refusal rule
     * calibrated there to accept 95% of the inputs. */
    bnn_regression_calibration cal;
    bnn_regression_calibration_init(&cal);
    TRY(bnn_regression_refusal_calibrate(rh, sizeof rh[0], yh, N_HELD, BNN_INTERVAL_TOTAL,
                                         0.95f, BNN_REGRESSION_CALIBRATE_COVERAGE, 1.0, &cal));
    printf("held-out: 95%% interval covers %.3f of %d points, RMSE %.4f\n",
           cal.interval_coverage, N_HELD, cal.rmse);
    TRY(bnn_regression_refusal_calibrate(rh, sizeof rh[0], yh, N_HELD,
                                         BNN_INTERVAL_EPISTEMIC, 0.95f,
                                         BNN_REGRESSION_CALIBRATE_COVERAGE, 0.95, &cal));
    TRY(bnn_regression_refusal_apply(rg, sizeof rg[0], GRID, BNN_INTERVAL_EPISTEMIC, 0.95f,
                                     cal.threshold));
    printf("epistemic refusal: 95%% interval width > %.4f (accepts %.3f of held-out)\n",
           (double)cal.threshold, cal.coverage);

    /* true_sd is known on [-1, 1] only; the aleatoric part is the model's
     * extrapolation beyond (a log-variance network extrapolates it too) */
    printf("     x      mean  sd_alea  true_sd  sd_epis   width95  refused\n");
    for (size_t i = 0; i < GRID; i++) {
        char t[16] = "      -";
        if (fabsf(xg[i]) <= 1.0f)
            snprintf(t, sizeof t, "%7.4f", true_sd(xg[i]));
        printf("%6.2f  %8.4f  %7.4f  %s  %7.4f  %8.4f  %7d\n", (double)xg[i],
               (double)rg[i].mean, sqrt(rg[i].aleatoric), t, sqrt(rg[i].epistemic),
               2.0 * 1.96 * sqrt(rg[i].variance), (int)rg[i].refused);
    }

    if (draw(png, xd, yd, N_DATA, rg, GRID) != 0) {
        fprintf(stderr, "%s: cannot write the figure\n", png);
        goto done;
    }
    printf("figure written to %s\n", png);
    rc = 0;

done:
    bnn_guide_free(g1);
    bnn_model_free(m1);
    bnn_guide_free(g2);
    bnn_model_free(m2);
    return rc;
}
