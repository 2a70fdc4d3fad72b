/* Does the model know what it does not know?  The test images of other IDX
 * folders (--ood), the test images rotated by 30 and 60 degrees, and
 * uniform noise, each scored against the test set by the library's
 * bnn_eval_ood, and the share of each that the chosen refusal policy
 * refuses. */
#define _GNU_SOURCE /* strtok_r */

#include "image.h"
#include "mnist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const ood_score_name OOD_SCORES[N_OOD_SCORES] = {
    {BNN_OOD_ENTROPY, "entropy", "entropy"},
    {BNN_OOD_MUTUAL_INFO, "mutual info", "mutual_info"},
    {BNN_OOD_MAX_PROB, "max prob", "max_prob"},
    {BNN_OOD_MAX_MEDIAN, "max median", "max_median"},
};

double ood_uncertainty(const bnn_prediction *rec, bnn_ood_score s)
{
    switch (s) {
    case BNN_OOD_ENTROPY: return rec->entropy;
    case BNN_OOD_MUTUAL_INFO: return rec->mutual_info;
    case BNN_OOD_EXPECTED_ENTROPY: return rec->expected_entropy;
    case BNN_OOD_MAX_PROB: return -(double)rec->prob;
    case BNN_OOD_MAX_MEDIAN: return -(double)rec->max_median;
    }
    return NAN;
}

/* prob is the highest mean probability only in the mean-rule records. */
const bnn_prediction *ood_records(const slice_pred *sp, bnn_ood_score s)
{
    return s == BNN_OOD_MAX_PROB ? sp->rec_mean : sp->rec_median;
}

static int has_test_images(const char *dir)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    if (stat(path, &st) == 0)
        return 1;
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
    return stat(path, &st) == 0;
}

void ood_check(const options *o)
{
    if (!o->ood || !strcmp(o->ood, "none"))
        return;
    char *copy = strdup(o->ood), *save = NULL;
    if (!copy)
        die("out of memory");
    for (char *dir = strtok_r(copy, ",", &save); dir; dir = strtok_r(NULL, ",", &save))
        if (!has_test_images(dir))
            die("--ood: %s has no t10k-images-idx3-ubyte (or .gz)", dir);
    free(copy);
}

/* The other data set beside --data: fashion for digits, mnist10k for
 * fashion; "" when there is none.  Trailing slashes name the same folder. */
static void default_partner(const char *data, char *out, size_t len)
{
    size_t end = strlen(data);
    while (end > 1 && data[end - 1] == '/')
        end--;
    size_t start = end; /* the folder's own name is data[start, end) */
    while (start > 0 && data[start - 1] != '/')
        start--;
    const char *base = data + start;
    size_t n = end - start;
    const char *partner = n >= 5 && !strncmp(base, "mnist", 5)    ? "fashion"
                          : n == 7 && !strncmp(base, "fashion", 7) ? "mnist10k"
                                                                   : NULL;
    out[0] = '\0';
    if (!partner)
        return;
    snprintf(out, len, "%.*s%s", (int)start, data, partner); /* start keeps the '/' */
    if (!has_test_images(out))
        out[0] = '\0';
}

/* The n rows of src at evenly spread places (all of them when limit is 0
 * or not below src->n). */
static void take_spread(slice *dst, const float *x, const int32_t *y, size_t n, size_t limit)
{
    size_t m = limit && limit < n ? limit : n;
    dst->n = m;
    dst->x = xmalloc(m ? m : 1, IDX_PIXELS * sizeof(float));
    dst->y = xmalloc(m ? m : 1, sizeof(int32_t));
    for (size_t k = 0; k < m; k++) {
        size_t j = (size_t)((double)k * (double)n / (double)m);
        memcpy(dst->x + k * IDX_PIXELS, x + j * IDX_PIXELS, IDX_PIXELS * sizeof(float));
        dst->y[k] = y ? y[j] : 0;
    }
}

static ood_set *add_set(ood_report *rep, const char *name, const char *source, int labelled)
{
    rep->set = realloc(rep->set, (rep->n + 1) * sizeof *rep->set);
    if (!rep->set)
        die("out of memory");
    ood_set *s = &rep->set[rep->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->source, sizeof s->source, "%s", source);
    s->labelled = labelled;
    return s;
}

static void make_sets(const options *o, const dataset *d, ood_report *rep)
{
    const slice *t = &d->test;
    static const int degrees[2] = {30, 60};
    for (int k = 0; k < 2; k++) {
        char name[32], source[64];
        snprintf(name, sizeof name, "rotated-%d", degrees[k]);
        snprintf(source, sizeof source, "test images rotated by %d degrees", degrees[k]);
        ood_set *s = add_set(rep, name, source, 1);
        take_spread(&s->s, t->x, t->y, t->n, o->ood_limit);
        float tmp[IDX_PIXELS];
        for (size_t i = 0; i < s->s.n; i++) {
            memcpy(tmp, s->s.x + i * IDX_PIXELS, sizeof tmp);
            image_rotate(tmp, s->s.x + i * IDX_PIXELS, degrees[k]);
        }
    }

    /* Uniform noise, as many images as the test set gives the others;
     * the program's own stream (splitmix64), seeded by --predict-seed. */
    ood_set *s = add_set(rep, "noise", "uniform noise in [0, 1)", 0);
    size_t m = o->ood_limit && o->ood_limit < t->n ? o->ood_limit : t->n;
    s->s.n = m;
    s->s.x = xmalloc(m ? m : 1, IDX_PIXELS * sizeof(float));
    s->s.y = xmalloc(m ? m : 1, sizeof(int32_t));
    uint64_t st = o->predict_seed ^ 0x4e4f495345ull; /* "NOISE" */
    image_noise(s->s.x, m * IDX_PIXELS, &st);
    memset(s->s.y, 0, m * sizeof(int32_t));

    /* Other folders: --ood, else the partner data set when it exists. */
    char partner[1024];
    const char *list = o->ood;
    if (!list) {
        default_partner(o->data, partner, sizeof partner);
        list = partner;
    }
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        die("out of memory");
    for (char *dir = strtok_r(copy, ",", &save); dir; dir = strtok_r(NULL, ",", &save)) {
        idx_set set;
        char err[1024];
        if (idx_load(dir, "t10k", &set, err, sizeof err))
            die("--ood: %s", err);
        size_t len = strlen(dir);
        while (len > 1 && dir[len - 1] == '/')
            dir[--len] = '\0';
        const char *slash = strrchr(dir, '/');
        s = add_set(rep, slash ? slash + 1 : dir, dir, 0);
        take_spread(&s->s, set.images, NULL, set.n, o->ood_limit);
        idx_free(&set);
    }
    free(copy);
}

static void mean_uncertainty(const bnn_prediction *rec, size_t n, double *ent, double *mi)
{
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        e += rec[i].entropy;
        m += rec[i].mutual_info;
    }
    *ent = n ? e / (double)n : NAN;
    *mi = n ? m / (double)n : NAN;
}

void ood_evaluate(const options *o, const bnn_guide *g, const dataset *d, const eval_report *r,
                  const slice_pred *tp, ood_report *rep)
{
    memset(rep, 0, sizeof *rep);
    if (o->ood && !strcmp(o->ood, "none"))
        return;
    const slice *t = &d->test;
    double t0 = now();
    rep->test_n = t->n;
    rep->rule = RULES[r->chosen].rule;
    rep->rule_name = RULES[r->chosen].name;
    rep->threshold = r->rules[r->chosen].threshold;
    CHECK(bnn_eval_refused_fraction(records_for(tp, rep->rule), sizeof(bnn_prediction), t->n,
                                    rep->rule, rep->threshold, &rep->test_refused));
    mean_uncertainty(tp->rec_median, t->n, &rep->test_mean_entropy, &rep->test_mean_mi);

    make_sets(o, d, rep);
    for (size_t k = 0; k < rep->n; k++) {
        ood_set *s = &rep->set[k];
        if (s->s.n == 0)
            die("%s: no images", s->source);
        predict_slice(o, g, &s->s, &s->pred);
        size_t ok = 0;
        for (size_t i = 0; i < s->s.n; i++)
            ok += s->pred.rec_mean[i].label == s->s.y[i];
        s->accuracy = s->labelled ? (double)ok / (double)s->s.n : NAN;
        mean_uncertainty(s->pred.rec_median, s->s.n, &s->mean_entropy, &s->mean_mi);
        CHECK(bnn_eval_refused_fraction(records_for(&s->pred, rep->rule), sizeof(bnn_prediction),
                                        s->s.n, rep->rule, rep->threshold, &s->refused));
        for (size_t j = 0; j < N_OOD_SCORES; j++) {
            bnn_ood_score sc = OOD_SCORES[j].score;
            bnn_ood_report_init(&s->score[j]);
            CHECK(bnn_eval_ood(ood_records(tp, sc), t->n, ood_records(&s->pred, sc), s->s.n,
                               sizeof(bnn_prediction), sc, NULL, &s->score[j]));
        }
    }
    rep->seconds = now() - t0;
}

void ood_free(ood_report *rep)
{
    for (size_t k = 0; k < rep->n; k++) {
        free(rep->set[k].s.x);
        free(rep->set[k].s.y);
        slice_pred_free(&rep->set[k].pred);
    }
    free(rep->set);
    memset(rep, 0, sizeof *rep);
}
