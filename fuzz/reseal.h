/* Making an edited model file pass the loader's outer checks again: the
 * total-length field (bytes 16..23) and the trailing CRC32 (docs/format.md).
 * Shared by the corpus generator and the fuzz target; deliberately a plain
 * bitwise CRC, independent of the library's table-driven one. */
#ifndef BNN_FUZZ_RESEAL_H
#define BNN_FUZZ_RESEAL_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t reseal_crc32(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

static inline void reseal_set_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Fix the length field and the CRC of the n-byte file b (n >= 28). */
static inline void reseal(unsigned char *b, size_t n)
{
    reseal_set_le(b + 16, n, 8);
    reseal_set_le(b + n - 4, reseal_crc32(b, n - 4), 4);
}

#endif
