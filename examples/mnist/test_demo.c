/* End-to-end test of the bnn_mnist program (its path is argv[1]) on a tiny
 * synthetic IDX data set: it must train for an epoch, save the model, learn
 * something, and evaluating the saved file must reproduce the figures it
 * printed after training. */
#define _POSIX_C_SOURCE 200809L

#include "idx.h"
#include "check_main.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static const char *program; /* set once by main from argv[1] */

#define N_TRAIN 400
#define N_TEST 100

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void write_file(const char *path, const unsigned char *buf, size_t len, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, buf, (unsigned)len), (int)len);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
        ck_assert_int_eq(fclose(f), 0);
    }
}

/* Class c is a bright 6x6 square at its own place on a noisy background:
 * easy enough that one epoch of a small network learns it. */
static void write_split_as(const char *dir, const char *prefix, size_t n, uint64_t seed,
                           int gz, int inverted)
{
    uint64_t r = seed;
    unsigned char *img = calloc(16 + n * IDX_PIXELS, 1);
    unsigned char *lab = calloc(8 + n, 1);
    ck_assert_ptr_nonnull(img);
    ck_assert_ptr_nonnull(lab);
    put32(img, 0x803);
    put32(img + 4, (uint32_t)n);
    put32(img + 8, 28);
    put32(img + 12, 28);
    put32(lab, 0x801);
    put32(lab + 4, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned)(ex_next(&r) % 10);
        unsigned char *p = img + 16 + i * IDX_PIXELS;
        for (size_t q = 0; q < IDX_PIXELS; q++)
            p[q] = (unsigned char)(ex_next(&r) % 60);
        size_t r0 = 3 + (c / 5) * 13, c0 = 1 + (c % 5) * 5;
        for (size_t y = r0; y < r0 + 6; y++)
            for (size_t x = c0; x < c0 + 6; x++)
                p[y * 28 + x] = (unsigned char)(200 + ex_next(&r) % 56);
        if (inverted) /* another data set: dark squares on a bright ground */
            for (size_t q = 0; q < IDX_PIXELS; q++)
                p[q] = (unsigned char)(255 - p[q]);
        lab[8 + i] = (unsigned char)c;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "");
    write_file(path, img, 16 + n * IDX_PIXELS, gz);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "");
    write_file(path, lab, 8 + n, gz);
    free(img);
    free(lab);
}

static void write_split(const char *dir, const char *prefix, size_t n, uint64_t seed,
                        int gz)
{
    write_split_as(dir, prefix, n, seed, gz, 0);
}

/* Run the program with args (NULL-terminated after argv[0]), output into
 * log; returns its exit status, or -1 if it did not exit normally. */
static int run(const char *log, const char *const *args)
{
    char *argv[64];
    size_t k = 0;
    argv[k++] = (char *)program;
    for (; args[k - 1] && k < 63; k++)
        argv[k] = (char *)args[k - 1];
    argv[k] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(program, argv);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *buf = malloc(1 << 20);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The "evaluation" object of a JSON report, as text (malloc'd). */
static char *evaluation_section(const char *path)
{
    char *text = slurp(path);
    char *a = strstr(text, "\"evaluation\":");
    char *b = a ? strstr(a, "\"evaluation_seconds\"") : NULL;
    ck_assert_msg(a && b, "%s has no evaluation section", path);
    *b = '\0';
    char *out = strdup(a);
    free(text);
    return out;
}

static double json_number_after(const char *text, const char *key1, const char *key2)
{
    const char *p = strstr(text, key1);
    ck_assert_msg(p != NULL, "no %s", key1);
    p = strstr(p, key2);
    ck_assert_msg(p != NULL, "no %s after %s", key2, key1);
    return strtod(p + strlen(key2), NULL);
}

/* Strict JSON (RFC 8259) syntax: 1 if p starts with one value, skipping
 * the text it spans; NaN or Inf written as bare words are not JSON. */
static void json_ws(const char **p)
{
    while (**p == ' ' || **p == '\n' || **p == '\t' || **p == '\r')
        (*p)++;
}

static int json_value(const char **p, int depth)
{
    json_ws(p);
    const char *s = *p;
    if (depth > 64)
        return 0;
    if (*s == '{' || *s == '[') {
        char close = *s == '{' ? '}' : ']';
        *p = s + 1;
        json_ws(p);
        if (**p == close)
            return (*p)++, 1;
        for (;;) {
            if (close == '}') {
                json_ws(p);
                if (**p != '"' || !json_value(p, depth + 1))
                    return 0;
                json_ws(p);
                if (*(*p)++ != ':')
                    return 0;
            }
            if (!json_value(p, depth + 1))
                return 0;
            json_ws(p);
            char c = *(*p)++;
            if (c == close)
                return 1;
            if (c != ',')
                return 0;
        }
    }
    if (*s == '"') {
        for (s++; *s != '"'; s++) {
            if ((unsigned char)*s < 0x20)
                return 0;
            if (*s == '\\' && !*++s)
                return 0;
        }
        *p = s + 1;
        return 1;
    }
    static const char *const words[3] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++)
        if (!strncmp(s, words[k], strlen(words[k])))
            return *p = s + strlen(words[k]), 1;
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return 0;
    if (*s == '.') {
        if (!(*++s >= '0' && *s <= '9'))
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!(*s >= '0' && *s <= '9'))
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    *p = s;
    return 1;
}

static void assert_json(const char *path)
{
    char *text = slurp(path);
    const char *p = text;
    int ok = json_value(&p, 0);
    json_ws(&p);
    ck_assert_msg(ok && !*p, "%s is not valid JSON from byte %zu:\n%.80s", path,
                  (size_t)(p - text), p);
    free(text);
}

/* The out-of-distribution rows of an evaluation section: the two
 * rotations (with an accuracy), the noise and the --ood folder (without),
 * each of --ood-limit images and every figure a share. */
static void check_ood_section(const char *e)
{
    const char *ood = strstr(e, "\"ood\": {\"limit\": 30");
    ck_assert_msg(ood != NULL, "no ood section in\n%s", e);
    static const char *const sets[] = {"rotated-30", "rotated-60", "noise", "inverted"};
    static const char *const scores[] = {"entropy", "mutual_info", "max_prob", "max_median"};
    for (size_t k = 0; k < 4; k++) {
        char key[64];
        snprintf(key, sizeof key, "{\"name\": \"%s\"", sets[k]);
        const char *row = strstr(ood, key);
        ck_assert_msg(row != NULL, "no %s row", sets[k]);
        const char *end = strstr(row + 1, "{\"name\"");
        size_t len = end ? (size_t)(end - row) : strlen(row);
        char *r = strndup(row, len);
        ck_assert_ptr_nonnull(r);
        ck_assert_double_eq(json_number_after(r, "\"images\"", ": "), 30);
        const char *acc = strstr(r, "\"accuracy\": ");
        ck_assert_ptr_nonnull(acc);
        if (k < 2) {
            double a = strtod(acc + 12, NULL);
            ck_assert_msg(a >= 0 && a <= 1, "%s accuracy %g", sets[k], a);
        } else {
            ck_assert_msg(!strncmp(acc + 12, "null", 4), "%s has an accuracy", sets[k]);
        }
        double ref = json_number_after(r, "\"refused_fraction\"", ": ");
        ck_assert_msg(ref >= 0 && ref <= 1, "%s refused %g", sets[k], ref);
        for (size_t j = 0; j < 4; j++) {
            char sk[32];
            snprintf(sk, sizeof sk, "\"%s\": {", scores[j]);
            double auroc = json_number_after(r, sk, "\"auroc\": ");
            double fpr = json_number_after(r, sk, "\"fpr95\": ");
            double tpr = json_number_after(r, sk, "\"tpr95\": ");
            ck_assert_msg(auroc >= 0 && auroc <= 1, "%s %s AUROC %g", sets[k], scores[j], auroc);
            ck_assert_msg(fpr >= 0 && fpr <= 1, "%s %s FPR95 %g", sets[k], scores[j], fpr);
            ck_assert_msg(tpr >= 0.95 && tpr <= 1, "%s %s TPR95 %g", sets[k], scores[j], tpr);
        }
        fprintf(stderr, "test_demo: %s AUROC by mutual information %.3f\n", sets[k],
                json_number_after(r, "\"mutual_info\": {", "\"auroc\": "));
        free(r);
    }
}

static void show_log(const char *log)
{
    char *t = slurp(log);
    fprintf(stderr, "---- %s ----\n%s\n", log, t);
    free(t);
}

static int has_png(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        unsigned char sig[8] = {0};
        if (f) {
            found = fread(sig, 1, 8, f) == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8);
            fclose(f);
        }
    }
    closedir(d);
    return found;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void make_tmp(char *dir, size_t len)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, len, "%s/bnn-demo-XXXXXX", base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

START_TEST(train_then_evaluate)
{
    char dir[256], model[320], rep1[320], rep2[320], log1[320], log2[320], plots[320];
    char other[320];
    make_tmp(dir, sizeof dir);
    /* An out-of-distribution folder: its t10k images only are read. */
    snprintf(other, sizeof other, "%s/inverted", dir);
    ck_assert_int_eq(mkdir(other, 0755), 0);
    write_split_as(other, "t10k", 40, 33, 0, 1);
    /* Compressed training files and plain test files: both paths of the
     * reader. */
    write_split(dir, "train", N_TRAIN, 11, 1);
    write_split(dir, "t10k", N_TEST, 22, 0);
    snprintf(model, sizeof model, "%s/model.bnn", dir);
    snprintf(rep1, sizeof rep1, "%s/train.json", dir);
    snprintf(rep2, sizeof rep2, "%s/eval.json", dir);
    snprintf(log1, sizeof log1, "%s/train.log", dir);
    snprintf(log2, sizeof log2, "%s/eval.log", dir);
    snprintf(plots, sizeof plots, "%s/plots", dir);

    const char *train_args[] = {"train", "--data", dir, "--hidden", "32", "--epochs", "1",
                                "--batch", "32", "--seed", "3",
                                "--out", model, "--report", rep1, "--refuse-samples", "30",
                                "--forced-samples", "5", "--target-accuracy", "0.95",
                                "--ood", other, "--ood-limit", "30", "--kl-warmup", "2",
                                NULL};
    int rc = run(log1, train_args);
    if (rc != 0)
        show_log(log1);
    ck_assert_int_eq(rc, 0);
    struct stat st;
    ck_assert_int_eq(stat(model, &st), 0);
    ck_assert_int_gt(st.st_size, 0);

    const char *eval_args[] = {"evaluate", "--data", dir, "--load", model, "--report", rep2,
                               "--refuse-samples", "30", "--forced-samples", "5",
                               "--target-accuracy", "0.95", "--plots", plots,
                               "--plot-count", "2", "--ood", other, "--ood-limit", "30",
                               NULL};
    rc = run(log2, eval_args);
    if (rc != 0)
        show_log(log2);
    ck_assert_int_eq(rc, 0);

    assert_json(rep1);
    assert_json(rep2);
    /* A warm-up over 2 epochs stops halfway after one: the weight of its
     * last step is half the configured 1. */
    char *r1 = slurp(rep1);
    ck_assert(json_number_after(r1, "\"training\"", "\"kl_warmup_epochs\": ") == 2);
    ck_assert(json_number_after(r1, "\"training\"", "\"kl_weight\": ") == 0.5);
    ck_assert_msg(strstr(r1, "\"draws\": \"per-input pre-activations\"") != NULL, "%s", r1);
    free(r1);
    char *e1 = evaluation_section(rep1), *e2 = evaluation_section(rep2);
    ck_assert_msg(strcmp(e1, e2) == 0, "evaluate --load differs from training:\n%s\n%s", e1,
                  e2);
    /* A dozen steps on an easy task: far above chance (0.1). */
    double forced = json_number_after(e1, "\"forced\"", "\"accuracy\": ");
    double acc = json_number_after(e1, "\"metrics\"", "\"accuracy\": ");
    double refused = json_number_after(e1, "\"median_rule\"", "\"refused_fraction\": ");
    fprintf(stderr, "test_demo: forced accuracy %.3f, accuracy %.3f, refused %.3f\n", forced,
            acc, refused);
    ck_assert_msg(forced > 0.6 && acc > 0.6, "forced accuracy %g, accuracy %g", forced, acc);
    ck_assert(refused >= 0 && refused <= 1);
    check_ood_section(e1);
    free(e1);
    free(e2);

    /* --ood none: no section at all. */
    const char *none_args[] = {"evaluate", "--data", dir, "--load", model, "--report", rep2,
                               "--refuse-samples", "5", "--forced-samples", "2",
                               "--ood", "none", NULL};
    rc = run(log1, none_args);
    if (rc != 0)
        show_log(log1);
    ck_assert_int_eq(rc, 0);
    char *e3 = evaluation_section(rep2);
    ck_assert_msg(strstr(e3, "\"ood\"") == NULL, "%s", e3);
    free(e3);

    char *log = slurp(log2);
    if (strstr(log, "plots are unavailable")) {
        fprintf(stderr, "test_demo: built without cairo, figures not checked\n");
    } else {
        ck_assert(has_png(plots, "reliability.png"));
        ck_assert(has_png(plots, "risk-coverage.png"));
        ck_assert(has_png(plots, "confident-01-"));
        ck_assert(has_png(plots, "answers.png"));
        ck_assert(has_png(plots, "ood-hist-entropy.png"));
        ck_assert(has_png(plots, "ood-hist-mutual-info.png"));
        ck_assert(has_png(plots, "ood-roc-mutual_info.png"));
        ck_assert(has_png(plots, "ood-roc-max_prob.png"));
    }
    free(log);
    remove_tree(dir);
}
END_TEST

/* --val-fraction: the share held out, and 0 for none, where the report
 * says the policy is not calibrated. */
START_TEST(val_fraction)
{
    char dir[256], log[320], rep[320], want[128];
    make_tmp(dir, sizeof dir);
    snprintf(log, sizeof log, "%s/out.log", dir);
    snprintf(rep, sizeof rep, "%s/r.json", dir);
    write_split(dir, "train", 80, 7, 0);
    write_split(dir, "t10k", 20, 8, 0);

    const char *none[] = {"train", "--data", dir, "--hidden", "8", "--epochs", "1",
                          "--val-fraction", "0", "--ood", "none", "--refuse-samples", "5",
                          "--forced-samples", "2", "--report", rep, NULL};
    ck_assert_int_eq(run(log, none), 0);
    char *t = slurp(log);
    ck_assert_msg(strstr(t, "80 training, 0 validation") != NULL, "%s", t);
    ck_assert_msg(strstr(t, "not calibrated (--val-fraction 0") != NULL, "%s", t);
    free(t);
    assert_json(rep); /* the rules' NaN figures are not written */
    char *e = evaluation_section(rep);
    ck_assert_msg(strstr(e, "\"calibrated\": false") != NULL, "%s", e);
    ck_assert_msg(strstr(e, "\"chosen\": \"MEDIAN\"") != NULL, "%s", e);
    free(e);

    const char *quarter[] = {"train", "--data", dir, "--hidden", "8", "--epochs", "1",
                             "--val-fraction", "0.25", "--ood", "none", "--refuse-samples", "5",
                             "--forced-samples", "2", "--report", rep, NULL};
    ck_assert_int_eq(run(log, quarter), 0);
    t = slurp(log);
    snprintf(want, sizeof want, "%d training, %d validation", 60, 20);
    ck_assert_msg(strstr(t, want) != NULL, "%s", t);
    free(t);
    e = evaluation_section(rep);
    ck_assert_msg(strstr(e, "\"calibrated\": true") != NULL, "%s", e);
    free(e);

    const char *bad[] = {"train", "--data", dir, "--val-fraction", "0.7", NULL};
    ck_assert_int_eq(run(log, bad), 1);
    t = slurp(log);
    ck_assert_msg(strstr(t, "not in [0, 0.5]") != NULL, "%s", t);
    free(t);
    remove_tree(dir);
}
END_TEST

/* --arch cnn: a (tiny) convolutional network trains, saves, reports its
 * architecture, and evaluates again from the file. */
START_TEST(cnn_arch)
{
    char dir[256], log[320], rep[320], model[320];
    make_tmp(dir, sizeof dir);
    snprintf(log, sizeof log, "%s/out.log", dir);
    snprintf(rep, sizeof rep, "%s/r.json", dir);
    snprintf(model, sizeof model, "%s/cnn.bnn", dir);
    write_split(dir, "train", 40, 7, 0);
    write_split(dir, "t10k", 12, 8, 0);
    const char *args[] = {"train", "--data", dir, "--arch", "cnn", "--conv", "2,3",
                          "--hidden", "6", "--epochs", "1", "--batch", "16", "--ood", "none",
                          "--refuse-samples", "3", "--forced-samples", "2", "--out", model,
                          "--report", rep, NULL};
    ck_assert_int_eq(run(log, args), 0);
    char *t = slurp(log);
    ck_assert_msg(strstr(t, "conv5x5x2 pool conv5x5x3 pool-6-10") != NULL, "%s", t);
    ck_assert_msg(strstr(t, "marginal sampling draws whole networks") != NULL, "%s", t);
    free(t);
    assert_json(rep);
    t = slurp(rep);
    /* 784, 14x14x2 and 7x7x3 after pooling, 6, 10 */
    ck_assert_msg(strstr(t, "\"arch\": \"cnn\", \"layers\": [784, 392, 147, 6, 10]") != NULL,
                  "%s", t);
    ck_assert_msg(strstr(t, "\"sampling\": \"marginal\", \"draws\": \"whole networks\"") !=
                      NULL,
                  "%s", t);
    free(t);
    const char *eval[] = {"evaluate", "--data", dir, "--load", model, "--ood", "none",
                          "--refuse-samples", "3", "--forced-samples", "2", NULL};
    ck_assert_int_eq(run(log, eval), 0);
    t = slurp(log);
    ck_assert_msg(strstr(t, "Model loaded from") != NULL, "%s", t);
    ck_assert_msg(strstr(t, "marginal sampling draws whole networks") != NULL, "%s", t);
    free(t);
    const char *bad[] = {"train", "--data", dir, "--arch", "resnet", NULL};
    ck_assert_int_ne(run(log, bad), 0);
    t = slurp(log);
    ck_assert_msg(strstr(t, "not mlp or cnn") != NULL, "%s", t);
    free(t);
}
END_TEST

/* Without --ood, the other data set beside --data is scored: fashion
 * beside a mnist* folder, however the folder is spelled. */
START_TEST(default_ood_partner)
{
    char dir[256], data[320], fashion[320], log[320], rep[320];
    make_tmp(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/mnist-tiny", dir);
    snprintf(fashion, sizeof fashion, "%s/fashion", dir);
    snprintf(log, sizeof log, "%s/out.log", dir);
    snprintf(rep, sizeof rep, "%s/r.json", dir);
    ck_assert_int_eq(mkdir(data, 0755), 0);
    ck_assert_int_eq(mkdir(fashion, 0755), 0);
    write_split(data, "train", 80, 7, 0);
    write_split(data, "t10k", 20, 8, 0);
    write_split_as(fashion, "t10k", 20, 9, 0, 1);

    char slashed[330];
    snprintf(slashed, sizeof slashed, "%s/", data);
    const char *const spellings[2] = {data, slashed};
    for (int k = 0; k < 2; k++) {
        const char *args[] = {"train", "--data", spellings[k], "--hidden", "8", "--epochs", "1",
                              "--refuse-samples", "5", "--forced-samples", "2",
                              "--ood-limit", "10", "--report", rep, NULL};
        int rc = run(log, args);
        if (rc != 0)
            show_log(log);
        ck_assert_int_eq(rc, 0);
        assert_json(rep);
        char *e = evaluation_section(rep);
        ck_assert_msg(strstr(e, "{\"name\": \"fashion\"") != NULL, "--data %s:\n%s",
                      spellings[k], e);
        free(e);
    }
    remove_tree(dir);
}
END_TEST

START_TEST(bad_inputs_fail_cleanly)
{
    char dir[256], log[320], path[320], model[320];
    make_tmp(dir, sizeof dir);
    snprintf(log, sizeof log, "%s/out.log", dir);
    snprintf(model, sizeof model, "%s/missing.bnn", dir);

    write_split(dir, "train", 50, 5, 0);
    write_split(dir, "t10k", 20, 6, 0);
    const char *eval_args[] = {"evaluate", "--data", dir, "--load", model, NULL};
    ck_assert_int_eq(run(log, eval_args), 1);

    /* Cut the test images short: the reader must say so, not crash. */
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    ck_assert_int_eq(truncate(path, 16 + 19 * IDX_PIXELS), 0);
    const char *train_args[] = {"train", "--data", dir, "--hidden", "4", "--epochs", "1",
                                "--out", model, NULL};
    ck_assert_int_eq(run(log, train_args), 1);
    char *t = slurp(log);
    ck_assert_msg(strstr(t, "truncated") != NULL, "%s", t);
    free(t);

    /* An --ood folder without test images fails before any training. */
    const char *bad_ood[] = {"train", "--data", dir, "--ood", model, NULL};
    ck_assert_int_eq(run(log, bad_ood), 1);
    t = slurp(log);
    ck_assert_msg(strstr(t, "--ood:") != NULL && strstr(t, "Training") == NULL, "%s", t);
    free(t);

    const char *bad_opt[] = {"train", "--estimator", "bogus", NULL};
    ck_assert_int_eq(run(log, bad_opt), 1);
    remove_tree(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("demo");
    TCase *tc = tcase_create("bnn_mnist");
    tcase_set_timeout(tc, 200);
    tcase_add_test(tc, train_then_evaluate);
    tcase_add_test(tc, val_fraction);
    tcase_add_test(tc, default_ood_partner);
    tcase_add_test(tc, bad_inputs_fail_cleanly);
    tcase_add_test(tc, cnn_arch);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_demo PATH/TO/bnn_mnist\n");
        return 2;
    }
    program = argv[1];
    return ex_run(suite());
}
