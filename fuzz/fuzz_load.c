/* libFuzzer target for the model file loader, the one input libbnn takes
 * from untrusted sources.  Beyond "no crash", it checks what must hold for
 * every input: a failed load leaves the out-parameters alone and frees
 * everything it allocated; a successful load gives objects that save back
 * to exactly the input bytes and can predict. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "reseal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Counts live blocks and caps the total, so a forged size can cost at most
 * the budget (and shows up as BNN_E_NOMEM) rather than exhausting memory. */
typedef struct budget {
    size_t used, limit;
    long live;
} budget;

typedef struct block {
    size_t size;
    max_align_t align;
} block;

static void *budget_alloc(void *ctx, size_t n)
{
    budget *b = ctx;
    if (n > b->limit - b->used)
        return NULL;
    block *p = malloc(offsetof(block, align) + n);
    if (!p)
        return NULL;
    p->size = n;
    b->used += n;
    b->live++;
    return &p->align;
}

static void budget_free(void *ctx, void *ptr)
{
    budget *b = ctx;
    if (!ptr)
        return;
    block *p = (block *)((char *)ptr - offsetof(block, align));
    b->used -= p->size;
    b->live--;
    free(p);
}

static void check_loaded(const uint8_t *data, size_t size, bnn_guide *g,
                         bnn_optimizer *o)
{
    size_t n = 0, written = 0;
    if (bnn_save_size(g, o, &n) != BNN_OK || n != size)
        abort();
    unsigned char *copy = malloc(n);
    if (!copy)
        return;
    if (bnn_save_to_memory(g, o, copy, n, &written) != BNN_OK ||
        written != size || memcmp(copy, data, size) != 0)
        abort();
    free(copy);

    /* One input of zeros through two sampled networks. */
    const bnn_model *m = bnn_guide_model(g);
    size_t in = bnn_model_input_size(m), out = bnn_model_output_size(m);
    float *x = calloc(in, sizeof(float));
    float *y = calloc(out, sizeof(float));
    float *v = calloc(out, sizeof(float));
    if (x && y && v) {
        bnn_model_config cfg;
        cfg.struct_size = sizeof cfg;
        if (bnn_model_get_config(m, &cfg) != BNN_OK)
            abort();
        bnn_status st = cfg.likelihood == BNN_LIK_CATEGORICAL
                            ? bnn_predict(g, x, 1, 2, 1, y)
                            : bnn_predict_regression(g, x, 1, 2, 1, y, v);
        if (st != BNN_OK && st != BNN_E_NOMEM && st != BNN_E_NUMERIC)
            abort();
    }
    free(x);
    free(y);
    free(v);
}

static void load_once(const uint8_t *data, size_t size, int want_opt)
{
    budget b = {0, (size_t)64 << 20, 0};
    bnn_allocator a = {budget_alloc, budget_free, &b};
    bnn_model *m = NULL;
    bnn_guide *g = NULL;
    bnn_optimizer *o = NULL;
    bnn_status st = bnn_load_from_memory(data, size, &a, &m, &g,
                                         want_opt ? &o : NULL);
    if (st == BNN_OK) {
        if (!m || !g || bnn_guide_model(g) != m)
            abort();
        /* Without an optimizer the file is re-saved without its section
         * and so cannot match; the loaded guide is still checked. */
        if (want_opt)
            check_loaded(data, size, g, o);
        bnn_optimizer_free(o);
        bnn_guide_free(g);
        bnn_model_free(m);
    } else if (m || g || o) {
        abort();
    }
    if (b.live != 0 || b.used != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_once(data, size, 1);
    load_once(data, size, 0);
    /* Random mutations almost never carry a matching CRC, which would keep
     * the fuzzer in front of the CRC check; so the input is loaded a second
     * time with its length field and CRC made right, which sends the bytes
     * through every check behind it. */
    if (size >= 28) {
        unsigned char *c = malloc(size);
        if (!c)
            return 0;
        memcpy(c, data, size);
        reseal(c, size);
        load_once(c, size, 1);
        load_once(c, size, 0);
        free(c);
    }
    return 0;
}
