/* Helpers shared by the stream's writer, reader and receiver. */
#ifndef COLO_STREAM_STREAM_INTERNAL_H
#define COLO_STREAM_STREAM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "stream.h"

#define STREAM_PAGE_SIZE 4096u
/* Per page in a PAGE_DATA body: its u64 index and its 4096 bytes. */
#define STREAM_BYTES_PER_PAGE (8u + STREAM_PAGE_SIZE)
/* PAGE_DATA body before the indices: u32 count, u32 zero. */
#define STREAM_PAGE_DATA_PREFIX 8u
/* The section id of a hart in the machine state ("HART"). */
#define STREAM_HART_SECTION_ID 0x48415254u
/* A machine-state section header: u32 id, u32 version, u32 body length. */
#define STREAM_SECTION_HEADER_LENGTH 12u

static inline void stream_put_u32(uint8_t *p, uint32_t value)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(value >> (8 * i));
}

static inline void stream_put_u64(uint8_t *p, uint64_t value)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(value >> (8 * i));
}

static inline uint32_t stream_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t stream_get_u64(const uint8_t *p)
{
    return (uint64_t)stream_get_u32(p) | (uint64_t)stream_get_u32(p + 4) << 32;
}

/* Record bodies are padded with zeros to a multiple of 8 bytes. */
static inline size_t stream_padded_length(size_t length)
{
    return (length + 7) & ~(size_t)7;
}

/* Frees a reader's page staging (stream_receive.c); NULL is fine. */
void stream_page_staging_free(struct stream_page_staging *staging);

/* "PAGE_DATA", ..., or NULL for a type this version does not know. */
const char *stream_record_type_name(uint32_t type);

#endif
