/* Size-versioned structs (internal.h): the one reader and writer. */
#include <string.h>

#include "internal.h"

bnn_status sized_check(const void *user, size_t min_size, const char *what)
{
    size_t size;
    memcpy(&size, user, sizeof size);
    if (size < min_size)
        return error_set(BNN_E_INVALID, "%s.struct_size %zu is too small (at least %zu): set it to sizeof(%s)",
                         what, size, min_size, what);
    return BNN_OK;
}

bnn_status sized_read(void *dst, size_t dst_size, const void *user,
                      size_t min_size, const char *what)
{
    bnn_status st = sized_check(user, min_size, what);
    if (st != BNN_OK)
        return st;
    size_t size;
    memcpy(&size, user, sizeof size);
    memcpy(dst, user, size < dst_size ? size : dst_size);
    memcpy(dst, &dst_size, sizeof dst_size);
    return BNN_OK;
}

void sized_write(void *user, const void *src, size_t src_size)
{
    size_t size;
    memcpy(&size, user, sizeof size);
    memcpy(user, src, size < src_size ? size : src_size);
    memcpy(user, &size, sizeof size);
}
