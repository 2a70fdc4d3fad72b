/* The single allocation path of the library. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void *default_alloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}

static void default_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

bnn_allocator mem_default_allocator(void)
{
    bnn_allocator a = {default_alloc, default_free, NULL};
    return a;
}

int mem_mul_overflow(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 1;
    *out = a * b;
    return 0;
}

void *mem_alloc(const bnn_allocator *a, size_t size)
{
    /* Zero-byte requests get one byte so that NULL always means failure. */
    return a->alloc(a->ctx, size ? size : 1);
}

void *mem_alloc_array(const bnn_allocator *a, size_t count, size_t size)
{
    size_t total;
    if (mem_mul_overflow(count, size, &total))
        return NULL;
    return mem_alloc(a, total);
}

void *mem_calloc_array(const bnn_allocator *a, size_t count, size_t size)
{
    size_t total;
    if (mem_mul_overflow(count, size, &total))
        return NULL;
    void *p = mem_alloc(a, total);
    if (p)
        memset(p, 0, total);
    return p;
}

void mem_free(const bnn_allocator *a, void *ptr)
{
    if (ptr)
        a->free(a->ctx, ptr);
}
