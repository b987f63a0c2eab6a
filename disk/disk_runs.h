/* What the primary's and the secondary's disks share: the image cut into
 * blocks (the last one may be short), requests in whole sectors, the runs
 * of written sectors in a block, and a stager that gathers adjacent runs
 * into one request (a checkpoint's records, a fold's writes to the base). */
#ifndef COLO_DISK_DISK_RUNS_H
#define COLO_DISK_DISK_RUNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum {
    DISK_BLOCK_SIZE = 4096,
    DISK_SECTOR_SIZE = 512,
    DISK_SECTORS_PER_BLOCK = DISK_BLOCK_SIZE / DISK_SECTOR_SIZE,
};
_Static_assert(DISK_SECTORS_PER_BLOCK <= 8, "a block's sectors must fit block_map_slot.sectors");

/* Bitmaps of blocks (the primary disk's logs, the sync's rounds): bit i
 * of word i / 64 is block i. */
static inline bool disk_bit_test(const uint64_t *bitmap, uint64_t index)
{
    return (bitmap[index / 64] >> (index % 64)) & 1;
}

static inline void disk_bit_set(uint64_t *bitmap, uint64_t index)
{
    bitmap[index / 64] |= 1ull << (index % 64);
}

/* The first set bit at or after `from`, or `limit` when none is. */
static inline uint64_t disk_bit_next(const uint64_t *bitmap, uint64_t from, uint64_t limit)
{
    while (from < limit) {
        uint64_t word = bitmap[from / 64] >> (from % 64);
        if (word)
            return from + (uint64_t)__builtin_ctzll(word) < limit ? from + (uint64_t)__builtin_ctzll(word) : limit;
        from = (from / 64 + 1) * 64;
    }
    return limit;
}

/* Bytes of block `index` inside an image of image_size bytes. */
static inline size_t disk_block_length(uint64_t image_size, uint64_t index)
{
    uint64_t rest = image_size - index * DISK_BLOCK_SIZE;
    return rest < DISK_BLOCK_SIZE ? (size_t)rest : DISK_BLOCK_SIZE;
}

/* Whole sectors inside the image; virtio-blk never asks for anything
 * else, and the disks' maps and bitmaps must stay inside the image. */
static inline bool disk_request_valid(uint64_t image_size, uint64_t offset, uint64_t length)
{
    return offset % DISK_SECTOR_SIZE == 0 && length % DISK_SECTOR_SIZE == 0 && offset <= image_size &&
           length <= image_size - offset;
}

/* Which sectors of a block the part [start, start + length) covers. */
static inline uint8_t disk_part_sectors(size_t start, size_t length)
{
    size_t first = start / DISK_SECTOR_SIZE;
    size_t count = (length + DISK_SECTOR_SIZE - 1) / DISK_SECTOR_SIZE;
    return (uint8_t)(((1u << count) - 1) << first);
}

/* The next run of sectors set in `sectors` from *sector on, as bytes
 * [*run_start, *run_end) of a block of block_length bytes; *sector moves
 * past it. False when there is none. */
static inline bool disk_next_sector_run(uint8_t sectors, size_t block_length, size_t *sector, size_t *run_start,
                                        size_t *run_end)
{
    while (*sector < DISK_SECTORS_PER_BLOCK) {
        if (!(sectors & (1u << *sector))) {
            (*sector)++;
            continue;
        }
        size_t end = *sector;
        while (end < DISK_SECTORS_PER_BLOCK && (sectors & (1u << end)))
            end++;
        *run_start = *sector * DISK_SECTOR_SIZE;
        *run_end = end * DISK_SECTOR_SIZE < block_length ? end * DISK_SECTOR_SIZE : block_length;
        *sector = end;
        if (*run_start < *run_end)
            return true;
    }
    return false;
}

/* Gathers bytes that follow on into one run in `buffer`, and hands the run
 * over when the next bytes do not follow on or do not fit. */
typedef int (*disk_run_hand_over)(void *opaque, uint64_t offset, const uint8_t *data, size_t length, struct error *err);
struct disk_run_stager {
    uint8_t *buffer;
    size_t capacity;
    disk_run_hand_over hand_over;
    void *opaque;
    uint64_t offset; /* of the staged run */
    size_t length;   /* staged so far */
};

/* Room for [offset, offset + length) at the end of the staged run, which
 * the caller fills; the staged run is handed over first if these bytes do
 * not follow on or do not fit. NULL when that hand-over failed (its
 * negative result in *result). length is at most the capacity. */
uint8_t *disk_run_stager_reserve(struct disk_run_stager *stager, uint64_t offset, size_t length, int *result,
                                 struct error *err);
/* Hands over what is staged (nothing: 0). */
int disk_run_stager_flush(struct disk_run_stager *stager, struct error *err);

#endif
