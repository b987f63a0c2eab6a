/* For the fuzz targets that read streams (fuzz_stream_reader.c,
 * fuzz_disk_records.c).
 *
 * Most mutations break a record's CRC, and a stream with a bad CRC is
 * rejected before anything else is looked at: these targets also try each
 * input with every whole record's CRC made right, so the checks behind
 * the CRC get fuzzed too. */
#ifndef COLO_TESTS_FUZZ_STREAM_SUPPORT_H
#define COLO_TESTS_FUZZ_STREAM_SUPPORT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "stream.h"

/* The copy lives in *buffer (grown as needed, kept from input to input). */
static inline const uint8_t *fuzz_stream_with_crcs_fixed(const uint8_t *data, size_t size, uint8_t **buffer,
                                                         size_t *capacity)
{
    if (size > *capacity) {
        *buffer = realloc(*buffer, size);
        if (!*buffer)
            abort();
        *capacity = size;
    }
    uint8_t *fixed = *buffer;
    memcpy(fixed, data, size);
    for (size_t offset = STREAM_HEADER_LENGTH; offset < size && size - offset >= STREAM_RECORD_HEADER_LENGTH;) {
        uint8_t *record = fixed + offset;
        size_t length = (size_t)record[4] | (size_t)record[5] << 8 | (size_t)record[6] << 16 | (size_t)record[7] << 24;
        if (length > size - offset - STREAM_RECORD_HEADER_LENGTH)
            break;
        uint32_t crc = crc32c_extend(crc32c(record, 8), record + STREAM_RECORD_HEADER_LENGTH, length);
        for (unsigned i = 0; i < 4; i++)
            record[8 + i] = (uint8_t)(crc >> (8 * i));
        offset += STREAM_RECORD_HEADER_LENGTH + ((length + 7) & ~(size_t)7);
    }
    return fixed;
}

/* What a reader allocated as it went (its page staging and its buffers of
 * OUTPUT, DISK_WRITE and TCP_SHIFT records, kept from run to run) was made in the
 * copy `used`: the next input's copy, made from `fresh`, reuses it. */
static inline void fuzz_stream_keep_reader_memory(struct stream_reader *fresh, const struct stream_reader *used)
{
    fresh->staging = used->staging;
    fresh->output = (struct stream_staged_records){ .data = used->output.data, .capacity = used->output.capacity };
    fresh->disk_writes = (struct stream_staged_records){ .data = used->disk_writes.data,
                                                         .capacity = used->disk_writes.capacity };
    fresh->tcp_shifts = (struct stream_staged_records){ .data = used->tcp_shifts.data,
                                                        .capacity = used->tcp_shifts.capacity };
}

#endif
