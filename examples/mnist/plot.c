/* PNG figures drawn with cairo's own API (no plotting library): simple
 * boxes, bars and lines, with text from cairo's toy font interface. */
#include "plot.h"

#include <stdarg.h>
#include <stdio.h>

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

#ifndef BNN_HAVE_CAIRO

int plot_available(void) { return 0; }

void plot_cleanup(void) {}

int plot_sample_histograms(const char *path, const float *image,
                           const float *logp, size_t n_samples, size_t classes,
                           const char *caption, char *err, size_t errlen)
{
    (void)image, (void)logp, (void)n_samples, (void)classes, (void)caption;
    return fail(err, errlen, "%s: plots are unavailable (built without cairo)", path);
}

int plot_reliability(const char *path, const float *confidence,
                     const int32_t *correct, size_t n, size_t bins, double ece,
                     const char *title, char *err, size_t errlen)
{
    (void)confidence, (void)correct, (void)n, (void)bins, (void)ece, (void)title;
    return fail(err, errlen, "%s: plots are unavailable (built without cairo)", path);
}

int plot_risk_coverage(const char *path, const double *risk,
                       const double *coverage, size_t n, double aurc,
                       double point_coverage, double point_risk,
                       const char *point_label, const char *title, char *err,
                       size_t errlen)
{
    (void)risk, (void)coverage, (void)n, (void)aurc, (void)point_coverage;
    (void)point_risk, (void)point_label, (void)title;
    return fail(err, errlen, "%s: plots are unavailable (built without cairo)", path);
}

int plot_score_histograms(const char *path, const float *const *values, const size_t *counts,
                          const char *const *names, size_t n_series, size_t bins,
                          const char *xlabel, const char *title, char *err, size_t errlen)
{
    (void)values, (void)counts, (void)names, (void)n_series, (void)bins, (void)xlabel;
    (void)title;
    return fail(err, errlen, "%s: plots are unavailable (built without cairo)", path);
}

int plot_roc(const char *path, const double *const *fpr, const double *const *tpr,
             const size_t *npts, const char *const *labels, size_t n_series,
             const char *title, char *err, size_t errlen)
{
    (void)fpr, (void)tpr, (void)npts, (void)labels, (void)n_series, (void)title;
    return fail(err, errlen, "%s: plots are unavailable (built without cairo)", path);
}

int plot_answer_grid(const char *path, const float *images, const int32_t *answer,
                     const int32_t *refused, const int32_t *truth, size_t n, size_t cols,
                     const char *title, char *err, size_t errlen)
{
    (void)images, (void)answer, (void)refused, (void)truth, (void)n, (void)cols, (void)title;
    return fail(err, errlen, "%s: plots are unavailable (built without cairo)", path);
}

#else

#include <cairo.h>
#include <math.h>
#ifdef BNN_HAVE_FONTCONFIG
#include <fontconfig/fontconfig.h>
#endif
#include <stdlib.h>
#include <string.h>

int plot_available(void) { return 1; }

void plot_cleanup(void)
{
    cairo_debug_reset_static_data();
#ifdef BNN_HAVE_FONTCONFIG
    FcFini();
#endif
}

#define PLOT_PI 3.14159265358979323846

/* Log-probabilities below this share the leftmost histogram bin. */
#define LOGP_MIN (-10.0)
#define HIST_BINS 20

static void font(cairo_t *cr, double size, int bold)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* Text with its baseline at y, horizontally anchored at x: align 0 puts x
 * at the left edge, 0.5 at the centre, 1 at the right edge. */
static void text(cairo_t *cr, double x, double y, double align, const char *s)
{
    cairo_text_extents_t ext;
    cairo_text_extents(cr, s, &ext);
    cairo_move_to(cr, x - align * ext.x_advance, y);
    cairo_show_text(cr, s);
}

static void text_vertical(cairo_t *cr, double x, double y, const char *s)
{
    cairo_text_extents_t ext;
    cairo_text_extents(cr, s, &ext);
    cairo_save(cr);
    cairo_move_to(cr, x, y + ext.x_advance / 2);
    cairo_rotate(cr, -PLOT_PI / 2);
    cairo_show_text(cr, s);
    cairo_restore(cr);
}

static void rgb(cairo_t *cr, unsigned hex)
{
    cairo_set_source_rgb(cr, ((hex >> 16) & 255) / 255.0, ((hex >> 8) & 255) / 255.0,
                         (hex & 255) / 255.0);
}

static cairo_t *begin(cairo_surface_t **surf, int w, int h)
{
    *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    cairo_t *cr = cairo_create(*surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    return cr;
}

static int finish(cairo_t *cr, cairo_surface_t *surf, const char *path, char *err,
                  size_t errlen)
{
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS)
        st = cairo_surface_write_to_png(surf, path);
    cairo_surface_destroy(surf);
    if (st != CAIRO_STATUS_SUCCESS)
        return fail(err, errlen, "%s: %s", path, cairo_status_to_string(st));
    return 0;
}

/* A plot frame: maps data ranges onto a pixel box. */
typedef struct frame {
    double x, y, w, h;        /* pixel box, y downwards */
    double x0, x1, y0, y1;    /* data ranges */
} frame;

static double fx(const frame *f, double v) { return f->x + (v - f->x0) / (f->x1 - f->x0) * f->w; }
static double fy(const frame *f, double v) { return f->y + f->h - (v - f->y0) / (f->y1 - f->y0) * f->h; }

/* Box, ticks and tick labels every `xstep` / `ystep` data units, with
 * xdec / ydec decimals. */
static void axes(cairo_t *cr, const frame *f, double xstep, double ystep,
                 int xdec, int ydec, double size)
{
    char buf[32];
    cairo_set_line_width(cr, 1);
    font(cr, size, 0);
    if (xstep > 0) {
        for (double v = f->x0; v <= f->x1 + 1e-9 * xstep; v += xstep) {
            double px = fx(f, v);
            rgb(cr, 0xe6e6e6);
            cairo_move_to(cr, px, f->y);
            cairo_line_to(cr, px, f->y + f->h);
            cairo_stroke(cr);
            rgb(cr, 0x333333);
            snprintf(buf, sizeof buf, "%.*f", xdec, v);
            text(cr, px, f->y + f->h + size + 4, 0.5, buf);
        }
    }
    if (ystep > 0) {
        for (double v = f->y0; v <= f->y1 + 1e-9 * ystep; v += ystep) {
            double py = fy(f, v);
            rgb(cr, 0xe6e6e6);
            cairo_move_to(cr, f->x, py);
            cairo_line_to(cr, f->x + f->w, py);
            cairo_stroke(cr);
            rgb(cr, 0x333333);
            snprintf(buf, sizeof buf, "%.*f", ydec, v);
            text(cr, f->x - 5, py + size / 3, 1, buf);
        }
    }
    rgb(cr, 0x333333);
    cairo_rectangle(cr, f->x + 0.5, f->y + 0.5, f->w, f->h);
    cairo_stroke(cr);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int plot_sample_histograms(const char *path, const float *image,
                           const float *logp, size_t n_samples, size_t classes,
                           const char *caption, char *err, size_t errlen)
{
    enum { SCALE = 7, IMG = 28 * SCALE, TOP = 44, PANEL_W = 124, PLOT_H = 170 };
    if (n_samples == 0 || classes == 0 || classes > 100)
        return fail(err, errlen, "%s: nothing to plot", path);
    const int left = 20 + IMG + 40;
    const int width = left + (int)classes * PANEL_W + 10;
    const int height = TOP + PLOT_H + 62;

    /* Per-class histograms, shared vertical scale, and the medians (of the
     * probabilities: for an even count the mean of the two middle ones). */
    size_t *counts = calloc(classes * HIST_BINS, sizeof *counts);
    float *col = malloc(n_samples * sizeof *col);
    double *median = malloc(classes * sizeof *median);
    if (!counts || !col || !median) {
        free(counts), free(col), free(median);
        return fail(err, errlen, "%s: out of memory", path);
    }
    size_t peak = 1, best = 0;
    for (size_t c = 0; c < classes; c++) {
        for (size_t s = 0; s < n_samples; s++) {
            double v = logp[s * classes + c];
            col[s] = (float)v;
            int b = (int)floor((v - LOGP_MIN) / -LOGP_MIN * HIST_BINS);
            b = b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b;
            if (++counts[c * HIST_BINS + (size_t)b] > peak)
                peak = counts[c * HIST_BINS + (size_t)b];
        }
        qsort(col, n_samples, sizeof *col, cmp_float);
        size_t m = n_samples / 2;
        median[c] = n_samples % 2 ? exp(col[m]) : 0.5 * (exp(col[m - 1]) + exp(col[m]));
        if (median[c] > median[best])
            best = c;
    }

    cairo_surface_t *surf;
    cairo_t *cr = begin(&surf, width, height);

    /* The image, scaled up with crisp pixels (white background, dark ink). */
    rgb(cr, 0x111111);
    font(cr, 14, 1);
    text(cr, 20, 24, 0, caption ? caption : "");
    for (int r = 0; r < 28; r++) {
        for (int c = 0; c < 28; c++) {
            double v = image[r * 28 + c];
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            cairo_set_source_rgb(cr, 1 - v, 1 - v, 1 - v);
            cairo_rectangle(cr, 20 + c * SCALE, TOP + r * SCALE, SCALE, SCALE);
            cairo_fill(cr);
        }
    }
    rgb(cr, 0x999999);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, 19.5, TOP - 0.5, IMG + 1, IMG + 1);
    cairo_stroke(cr);

    char buf[160];
    for (size_t c = 0; c < classes; c++) {
        frame f = {left + (double)c * PANEL_W + 8, TOP, PANEL_W - 22, PLOT_H,
                   LOGP_MIN, 0, 0, (double)peak * 1.08};
        font(cr, 13, c == best);
        rgb(cr, c == best ? 0x1a7f37 : 0x111111);
        snprintf(buf, sizeof buf, "class %zu", c);
        text(cr, f.x + f.w / 2, TOP - 8, 0.5, buf);
        axes(cr, &f, 5, 0, 0, 0, 10);
        rgb(cr, 0x4878a8);
        for (int b = 0; b < HIST_BINS; b++) {
            size_t k = counts[c * HIST_BINS + (size_t)b];
            if (!k)
                continue;
            double v0 = LOGP_MIN + (double)b / HIST_BINS * -LOGP_MIN;
            double v1 = LOGP_MIN + (double)(b + 1) / HIST_BINS * -LOGP_MIN;
            double x0 = fx(&f, v0), x1 = fx(&f, v1), y = fy(&f, (double)k);
            cairo_rectangle(cr, x0 + 0.5, y, x1 - x0 - 1, f.y + f.h - y);
            cairo_fill(cr);
        }
        double lm = log(median[c] > 1e-300 ? median[c] : 1e-300);
        lm = lm < LOGP_MIN ? LOGP_MIN : lm;
        rgb(cr, 0xd62728);
        cairo_set_line_width(cr, 2);
        cairo_move_to(cr, fx(&f, lm), f.y);
        cairo_line_to(cr, fx(&f, lm), f.y + f.h);
        cairo_stroke(cr);
        font(cr, 11, 0);
        rgb(cr, 0x333333);
        snprintf(buf, sizeof buf, "median p %.2f", median[c]);
        text(cr, f.x + f.w / 2, f.y + f.h + 30, 0.5, buf);
    }
    font(cr, 11, 0);
    rgb(cr, 0x555555);
    snprintf(buf, sizeof buf,
             "histograms of log p(class) over %zu sampled networks (values below %g in "
             "the leftmost bar); red: median",
             n_samples, LOGP_MIN);
    text(cr, left + 8, height - 8, 0, buf);

    free(counts), free(col), free(median);
    return finish(cr, surf, path, err, errlen);
}

int plot_reliability(const char *path, const float *confidence,
                     const int32_t *correct, size_t n, size_t bins, double ece,
                     const char *title, char *err, size_t errlen)
{
    if (n == 0 || bins == 0 || bins > 1000)
        return fail(err, errlen, "%s: nothing to plot", path);
    size_t *cnt = calloc(bins, sizeof *cnt);
    double *acc = calloc(bins, sizeof *acc), *conf = calloc(bins, sizeof *conf);
    if (!cnt || !acc || !conf) {
        free(cnt), free(acc), free(conf);
        return fail(err, errlen, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++) {
        size_t b = (size_t)(confidence[i] * (double)bins);
        b = b >= bins ? bins - 1 : b;
        cnt[b]++;
        acc[b] += correct[i] != 0;
        conf[b] += confidence[i];
    }

    cairo_surface_t *surf;
    cairo_t *cr = begin(&surf, 600, 640);
    frame f = {80, 100, 480, 460, 0, 1, 0, 1};
    rgb(cr, 0x111111);
    font(cr, 16, 1);
    text(cr, f.x + f.w / 2, 28, 0.5, title ? title : "Reliability");
    char buf[96];
    font(cr, 13, 1);
    snprintf(buf, sizeof buf, "ECE %.2f%%  (%zu bins, %zu inputs)", 100 * ece, bins, n);
    text(cr, f.x + f.w / 2, 52, 0.5, buf);
    font(cr, 11, 0);
    rgb(cr, 0x4878a8);
    text(cr, f.x + f.w / 2 - 8, 74, 1, "bars: accuracy of the bin (inputs above)");
    rgb(cr, 0xd62728);
    text(cr, f.x + f.w / 2 + 8, 74, 0, "red: mean confidence of the bin");
    axes(cr, &f, 0.2, 0.2, 1, 1, 12);

    rgb(cr, 0x555555);
    cairo_set_line_width(cr, 1.5);
    double dash[] = {6, 4};
    cairo_set_dash(cr, dash, 2, 0);
    cairo_move_to(cr, fx(&f, 0), fy(&f, 0));
    cairo_line_to(cr, fx(&f, 1), fy(&f, 1));
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);

    for (size_t b = 0; b < bins; b++) {
        if (!cnt[b])
            continue;
        double a = acc[b] / (double)cnt[b], c = conf[b] / (double)cnt[b];
        double x0 = fx(&f, (double)b / (double)bins), x1 = fx(&f, (double)(b + 1) / (double)bins);
        double ya = fy(&f, a), yc = fy(&f, c);
        rgb(cr, 0x4878a8);
        cairo_rectangle(cr, x0 + 1, ya, x1 - x0 - 2, fy(&f, 0) - ya);
        cairo_fill(cr);
        /* A perfectly calibrated bin has its red mark on top of its bar. */
        rgb(cr, 0xd62728);
        cairo_set_line_width(cr, 3);
        cairo_move_to(cr, x0 + 1, yc);
        cairo_line_to(cr, x1 - 1, yc);
        cairo_stroke(cr);
        rgb(cr, 0x333333);
        font(cr, 9, 0);
        snprintf(buf, sizeof buf, "%zu", cnt[b]);
        text(cr, (x0 + x1) / 2, (ya < yc ? ya : yc) - 5, 0.5, buf);
    }

    rgb(cr, 0x111111);
    font(cr, 13, 0);
    text(cr, f.x + f.w / 2, f.y + f.h + 42, 0.5, "confidence (highest mean class probability)");
    text_vertical(cr, 28, f.y + f.h / 2, "accuracy");

    free(cnt), free(acc), free(conf);
    return finish(cr, surf, path, err, errlen);
}

int plot_risk_coverage(const char *path, const double *risk,
                       const double *coverage, size_t n, double aurc,
                       double point_coverage, double point_risk,
                       const char *point_label, const char *title, char *err,
                       size_t errlen)
{
    if (n == 0)
        return fail(err, errlen, "%s: nothing to plot", path);
    double top = 0.01;
    for (size_t k = 0; k < n; k++)
        top = risk[k] > top ? risk[k] : top;
    /* A round upper limit so the tick labels stay short. */
    double step = top <= 0.02 ? 0.005 : top <= 0.05 ? 0.01 : top <= 0.1 ? 0.02 : top <= 0.25 ? 0.05 : 0.1;
    top = ceil(top * 1.05 / step) * step;

    cairo_surface_t *surf;
    cairo_t *cr = begin(&surf, 700, 500);
    frame f = {80, 60, 580, 360, 0, 1, 0, top};
    rgb(cr, 0x111111);
    font(cr, 16, 1);
    text(cr, f.x + f.w / 2, 30, 0.5, title ? title : "Risk-coverage");
    axes(cr, &f, 0.1, step, 1, step < 0.01 ? 3 : 2, 12);

    rgb(cr, 0x4878a8);
    cairo_set_line_width(cr, 2);
    cairo_move_to(cr, fx(&f, coverage[0]), fy(&f, risk[0]));
    for (size_t k = 1; k < n; k++)
        cairo_line_to(cr, fx(&f, coverage[k]), fy(&f, risk[k]));
    cairo_stroke(cr);

    char buf[96];
    if (point_coverage >= 0) {
        /* The point's label goes in the legend: beside the point it would
         * cross the curve or leave the picture. */
        rgb(cr, 0xd62728);
        cairo_arc(cr, fx(&f, point_coverage), fy(&f, point_risk), 6, 0, 2 * PLOT_PI);
        cairo_fill(cr);
        if (point_label) {
            cairo_arc(cr, f.x + 18, f.y + 40, 5, 0, 2 * PLOT_PI);
            cairo_fill(cr);
            font(cr, 12, 1);
            text(cr, f.x + 28, f.y + 44, 0, point_label);
        }
    }
    rgb(cr, 0x111111);
    font(cr, 13, 0);
    text(cr, f.x + f.w / 2, f.y + f.h + 42, 0.5,
         "coverage (fraction answered, most confident first)");
    text_vertical(cr, 22, f.y + f.h / 2, "risk (error rate of the answered)");
    font(cr, 13, 1);
    snprintf(buf, sizeof buf, "AURC %.4f", aurc);
    text(cr, f.x + 12, f.y + 22, 0, buf);

    return finish(cr, surf, path, err, errlen);
}

/* Series colours, in order (the first is the in-distribution set). */
static const unsigned PALETTE[] = {0x1f77b4, 0xd62728, 0xff7f0e, 0x2ca02c, 0x9467bd,
                                   0x8c564b, 0xe377c2, 0x7f7f7f};
#define N_PALETTE (sizeof PALETTE / sizeof PALETTE[0])

static void legend(cairo_t *cr, double x, double y, const char *const *names, size_t n)
{
    font(cr, 12, 0);
    for (size_t k = 0; k < n; k++) {
        rgb(cr, PALETTE[k % N_PALETTE]);
        cairo_rectangle(cr, x, y + 18.0 * (double)k - 9, 18, 4);
        cairo_fill(cr);
        rgb(cr, 0x222222);
        text(cr, x + 24, y + 18.0 * (double)k - 4, 0, names[k]);
    }
}

int plot_score_histograms(const char *path, const float *const *values, const size_t *counts,
                          const char *const *names, size_t n_series, size_t bins,
                          const char *xlabel, const char *title, char *err, size_t errlen)
{
    if (n_series == 0 || bins == 0 || bins > 1000)
        return fail(err, errlen, "%s: nothing to plot", path);
    /* The axis ends at the 99.5th percentile of all values, so that a few
     * outliers do not squeeze the rest into the first bins; values beyond
     * it count in the last bin. */
    size_t total = 0;
    for (size_t k = 0; k < n_series; k++)
        total += counts[k];
    float *all = malloc((total ? total : 1) * sizeof *all);
    if (!all)
        return fail(err, errlen, "%s: out of memory", path);
    for (size_t k = 0, m = 0; k < n_series; k++)
        for (size_t i = 0; i < counts[k]; i++)
            all[m++] = values[k][i];
    qsort(all, total, sizeof *all, cmp_float);
    double top = total ? all[(size_t)(0.995 * (double)(total - 1))] : 1;
    free(all);
    if (!(top > 0))
        top = 1;
    double *frac = calloc(n_series * bins, sizeof *frac);
    if (!frac)
        return fail(err, errlen, "%s: out of memory", path);
    double ymax = 0;
    for (size_t k = 0; k < n_series; k++) {
        for (size_t i = 0; i < counts[k]; i++) {
            size_t b = (size_t)((double)values[k][i] / top * (double)bins);
            frac[k * bins + (b >= bins ? bins - 1 : b)] += 1.0 / (double)counts[k];
        }
        for (size_t b = 0; b < bins; b++)
            ymax = frac[k * bins + b] > ymax ? frac[k * bins + b] : ymax;
    }
    double step = ymax <= 0.1 ? 0.02 : ymax <= 0.25 ? 0.05 : ymax <= 0.5 ? 0.1 : 0.2;
    ymax = ceil(ymax * 1.05 / step) * step;
    double xstep = pow(10, floor(log10(top)));
    if (top / xstep < 2.5)
        xstep /= 5;
    else if (top / xstep < 5)
        xstep /= 2;

    cairo_surface_t *surf;
    cairo_t *cr = begin(&surf, 760, 500);
    frame f = {80, 60, 640, 360, 0, top, 0, ymax};
    rgb(cr, 0x111111);
    font(cr, 16, 1);
    text(cr, f.x + f.w / 2, 30, 0.5, title ? title : "Histogram");
    int xdec = (int)ceil(-log10(xstep) - 1e-9);
    axes(cr, &f, xstep, step, xdec > 0 ? xdec : 0, 2, 12);
    cairo_set_line_width(cr, 2);
    for (size_t k = 0; k < n_series; k++) {
        rgb(cr, PALETTE[k % N_PALETTE]);
        cairo_move_to(cr, fx(&f, 0), fy(&f, 0));
        for (size_t b = 0; b < bins; b++) {
            double y = fy(&f, frac[k * bins + b]);
            cairo_line_to(cr, fx(&f, top * (double)b / (double)bins), y);
            cairo_line_to(cr, fx(&f, top * (double)(b + 1) / (double)bins), y);
        }
        cairo_line_to(cr, fx(&f, top), fy(&f, 0));
        cairo_stroke(cr);
    }
    legend(cr, f.x + f.w - 170, f.y + 24, names, n_series);
    rgb(cr, 0x111111);
    font(cr, 13, 0);
    text(cr, f.x + f.w / 2, f.y + f.h + 42, 0.5, xlabel);
    text_vertical(cr, 22, f.y + f.h / 2, "fraction of the set");
    free(frac);
    return finish(cr, surf, path, err, errlen);
}

int plot_roc(const char *path, const double *const *fpr, const double *const *tpr,
             const size_t *npts, const char *const *labels, size_t n_series,
             const char *title, char *err, size_t errlen)
{
    if (n_series == 0)
        return fail(err, errlen, "%s: nothing to plot", path);
    cairo_surface_t *surf;
    cairo_t *cr = begin(&surf, 640, 640);
    frame f = {80, 60, 500, 500, 0, 1, 0, 1};
    rgb(cr, 0x111111);
    font(cr, 16, 1);
    text(cr, f.x + f.w / 2, 30, 0.5, title ? title : "ROC");
    axes(cr, &f, 0.2, 0.2, 1, 1, 12);
    rgb(cr, 0x999999);
    cairo_set_line_width(cr, 1);
    double dash[] = {6, 4};
    cairo_set_dash(cr, dash, 2, 0);
    cairo_move_to(cr, fx(&f, 0), fy(&f, 0));
    cairo_line_to(cr, fx(&f, 1), fy(&f, 1));
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_line_width(cr, 2);
    for (size_t k = 0; k < n_series; k++) {
        if (npts[k] == 0)
            continue;
        rgb(cr, PALETTE[(k + 1) % N_PALETTE]);
        cairo_move_to(cr, fx(&f, fpr[k][0]), fy(&f, tpr[k][0]));
        for (size_t i = 1; i < npts[k]; i++)
            cairo_line_to(cr, fx(&f, fpr[k][i]), fy(&f, tpr[k][i]));
        cairo_stroke(cr);
        rgb(cr, PALETTE[(k + 1) % N_PALETTE]);
        cairo_rectangle(cr, f.x + f.w - 230, f.y + f.h - 20 - 18.0 * (double)(n_series - k) - 4,
                        18, 4);
        cairo_fill(cr);
        rgb(cr, 0x222222);
        font(cr, 12, 0);
        text(cr, f.x + f.w - 206, f.y + f.h - 20 - 18.0 * (double)(n_series - k), 0, labels[k]);
    }
    rgb(cr, 0x111111);
    font(cr, 13, 0);
    text(cr, f.x + f.w / 2, f.y + f.h + 42, 0.5,
         "false positive rate (test images judged out-of-distribution)");
    text_vertical(cr, 22, f.y + f.h / 2, "true positive rate (other images judged so)");
    return finish(cr, surf, path, err, errlen);
}

int plot_answer_grid(const char *path, const float *images, const int32_t *answer,
                     const int32_t *refused, const int32_t *truth, size_t n, size_t cols,
                     const char *title, char *err, size_t errlen)
{
    if (n == 0 || cols == 0)
        return fail(err, errlen, "%s: nothing to plot", path);
    const int cell = 84, scale = 2, pad = 10, top = 56;
    size_t rows = (n + cols - 1) / cols;
    int w = (int)cols * cell + 2 * pad, h = top + (int)rows * cell + pad + 24;
    cairo_surface_t *surf;
    cairo_t *cr = begin(&surf, w, h);
    rgb(cr, 0x111111);
    font(cr, 15, 1);
    text(cr, w / 2.0, 24, 0.5, title ? title : "Answers");
    font(cr, 11, 0);
    rgb(cr, 0x2ca02c);
    text(cr, w / 2.0 - 8, 44, 1, "green: answered (big: answer, small: truth)");
    rgb(cr, 0xd62728);
    text(cr, w / 2.0 + 8, 44, 0, "red: refused");
    char buf[16];
    for (size_t i = 0; i < n; i++) {
        double x0 = pad + (double)(i % cols) * cell, y0 = top + (double)(i / cols) * cell;
        double ix = x0 + 6, iy = y0 + 6;
        const float *img = images + i * 784;
        for (int r = 0; r < 28; r++)
            for (int c = 0; c < 28; c++) {
                double v = img[r * 28 + c];
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                cairo_set_source_rgb(cr, 1 - v, 1 - v, 1 - v);
                cairo_rectangle(cr, ix + c * scale, iy + r * scale, scale, scale);
                cairo_fill(cr);
            }
        rgb(cr, refused[i] ? 0xd62728 : 0x2ca02c);
        cairo_set_line_width(cr, 3);
        cairo_rectangle(cr, ix - 2, iy - 2, 28 * scale + 4, 28 * scale + 4);
        cairo_stroke(cr);
        if (!refused[i]) {
            font(cr, 14, 1);
            snprintf(buf, sizeof buf, "%d", (int)answer[i]);
            text(cr, ix + 28 * scale + 4, iy + 16, 0, buf);
        } else {
            font(cr, 14, 1);
            text(cr, ix + 28 * scale + 4, iy + 16, 0, "?");
        }
        rgb(cr, 0x666666);
        font(cr, 9, 0);
        snprintf(buf, sizeof buf, "%d", (int)truth[i]);
        text(cr, ix + 28 * scale + 4, iy + 30, 0, buf);
    }
    return finish(cr, surf, path, err, errlen);
}

#endif
