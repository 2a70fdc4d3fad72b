/* Save/load internals shared with the tests.  Internal. */
#ifndef BNN_IO_H
#define BNN_IO_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) over n
 * bytes.  Start with crc = 0; the return value of one call is the crc
 * argument of the next, so io_crc32(io_crc32(0, a, na), b, nb) is the CRC
 * of a followed by b. */
uint32_t io_crc32(uint32_t crc, const void *data, size_t n);

/* Limits of format version 1 that do not follow from the file length. */
/* The optimizer's training workspace holds several max_batch x max_width
 * float buffers that are not stored in the file, so a forged max_batch
 * could request any amount of memory; files beyond this are refused. */
#define IO_MAX_BATCH_X_WIDTH ((uint64_t)1 << 26)

#endif
