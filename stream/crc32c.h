/* CRC-32C (Castagnoli), the checksum of every stream record.
 *
 * Polynomial 0x1EDC6F41, bit-reflected (0x82F63B78), register preset to
 * 0xffffffff, result inverted (xor 0xffffffff). CRC-32C("123456789") is
 * 0xE3069283. docs/stream.md gives the bit-level definition.
 *
 * crc32c_extend() continues a CRC over more bytes, so a CRC over pieces
 * equals the CRC over their concatenation:
 *     crc32c_extend(crc32c(a, n), b, m) == crc32c(a || b, n + m)
 */
#ifndef COLO_STREAM_CRC32C_H
#define COLO_STREAM_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The fastest implementation this CPU has (SSE4.2 crc32 on x86-64, else
 * slicing-by-8 tables). Pass 0 as crc to start. */
uint32_t crc32c_extend(uint32_t crc, const void *data, size_t length);

/* The table-driven implementation only, whatever the CPU: for tests that
 * compare both and for benchmarks. */
uint32_t crc32c_extend_portable(uint32_t crc, const void *data, size_t length);

/* Names the implementation crc32c_extend uses, for reports. */
const char *crc32c_implementation(void);

static inline uint32_t crc32c(const void *data, size_t length)
{
    return crc32c_extend(0, data, length);
}

#endif
