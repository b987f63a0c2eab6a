/* The COLO primary's disk (disk/primary_disk.h): writes go through to the
 * image; the epoch's writes iterate in offset order as merged runs with
 * each sector's latest bytes; a discard records zeros; past the memory
 * bound blocks are only marked and read back from the base; the dirty log
 * for the initial sync; zero-block detection; a failed base write records
 * nothing; and a randomized run checking that the runs of each epoch
 * applied to the previous epoch's image give the base, also with the
 * pre-copy's swap racing the guest's writes on another thread. Over a real
 * image file and over an in-memory backend that can fail on demand. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block_file.h"
#include "primary_disk.h"

#include "memory_block_backend.h"
#include "test_check.h"
#include "test_image_file.h"

enum { BLOCK = PRIMARY_DISK_BLOCK_SIZE, SECTOR = PRIMARY_DISK_SECTOR_SIZE, MAXIMUM_RUNS = 64 };

static struct primary_disk *make_disk(struct block_backend *base, uint64_t memory_limit)
{
    struct error err;
    struct primary_disk_options options = { .epoch_memory_limit_bytes = memory_limit };
    struct primary_disk *disk = primary_disk_create(base, &options, &err);
    if (!disk) {
        printf("FAIL: primary_disk_create: %s\n", err.message);
        exit(1);
    }
    return disk;
}

/* What an iteration handed over: the runs, checked for order, and
 * applied to `image` when there is one. */
struct run_log {
    uint8_t *image;
    uint64_t offsets[MAXIMUM_RUNS];
    size_t lengths[MAXIMUM_RUNS];
    size_t count;
    uint64_t end; /* of the last run */
    bool well_formed;
};

static int log_run(void *opaque, uint64_t offset, const void *data, size_t length)
{
    struct run_log *log = opaque;
    if (length == 0 || length % SECTOR || length > PRIMARY_DISK_RUN_MAXIMUM_BYTES || offset % SECTOR ||
        (log->count > 0 && offset < log->end))
        log->well_formed = false;
    if (log->count < MAXIMUM_RUNS) {
        log->offsets[log->count] = offset;
        log->lengths[log->count] = length;
    }
    log->count++;
    log->end = offset + length;
    if (log->image)
        memcpy(log->image + offset, data, length);
    return 0;
}

static struct run_log iterate(struct primary_disk *disk, uint8_t *image, int line)
{
    struct run_log log = { .image = image, .well_formed = true };
    struct error err;
    int result = primary_disk_epoch_for_each(disk, log_run, &log, &err);
    CHECK_AT(line, result == 0, "epoch_for_each: %d %s", result, result ? err.message : "");
    CHECK_AT(line, log.well_formed, "the runs are not sorted, whole-sector and bounded");
    return log;
}

/* ---- over a real image file ---- */

#define FILE_IMAGE_SIZE (64u * 1024u)

static void test_over_file(const char *path)
{
    static uint8_t initial[FILE_IMAGE_SIZE];
    for (size_t i = 0; i < sizeof initial; i++)
        initial[i] = (uint8_t)(i * 13 + 1);
    test_image_file_create(path, initial, sizeof initial);
    struct error err;
    struct block_backend *base = block_file_open(path, false, &err);
    CHECK(base, "block_file_open: %s", base ? "" : err.message);
    if (!base)
        return;
    struct primary_disk *disk = make_disk(base, 0);
    struct block_backend *backend = primary_disk_backend(disk);
    CHECK(primary_disk_of(backend) == disk && primary_disk_of(base) == NULL, "primary_disk_of");
    CHECK(backend->size == FILE_IMAGE_SIZE, "the disk's size is the image's");

    uint8_t data[2 * SECTOR], file_bytes[2 * SECTOR];
    memset(data, 0x5a, sizeof data);
    CHECK(block_backend_write(backend, BLOCK + SECTOR, data, sizeof data) == 0, "write");
    test_image_file_read(path, BLOCK + SECTOR, file_bytes, sizeof file_bytes);
    CHECK(test_bytes_all(file_bytes, sizeof file_bytes, 0x5a), "the write did not reach the image file");
    CHECK(block_backend_flush(backend) == 0, "flush");
    memset(data, 0, sizeof data);
    CHECK(block_backend_read(backend, BLOCK + SECTOR, data, sizeof data) == 0 &&
              test_bytes_all(data, sizeof data, 0x5a),
          "a read does not see the write");

    CHECK(block_backend_discard(backend, 8 * BLOCK, BLOCK) == 0, "discard");
    test_image_file_read(path, 8 * BLOCK, file_bytes, sizeof file_bytes);
    CHECK(test_bytes_all(file_bytes, sizeof file_bytes, 0), "the discarded range of the file does not read zeros");
    CHECK(primary_disk_block_is_zero(disk, 8) == 1, "the discarded block is not all zeros");
    CHECK(primary_disk_block_is_zero(disk, 1) == 0, "a written block is all zeros");

    static uint8_t copy[FILE_IMAGE_SIZE];
    memcpy(copy, initial, sizeof copy);
    struct run_log log = iterate(disk, copy, __LINE__);
    CHECK(log.count == 2 && log.offsets[0] == BLOCK + SECTOR && log.lengths[0] == 2 * SECTOR &&
              log.offsets[1] == 8 * BLOCK && log.lengths[1] == BLOCK,
          "the file's epoch: %zu runs", log.count);
    static uint8_t whole[FILE_IMAGE_SIZE];
    test_image_file_read(path, 0, whole, sizeof whole);
    CHECK(memcmp(copy, whole, sizeof whole) == 0, "the epoch applied to the old image is not the image file");
    block_backend_destroy(backend);
}

/* ---- over memory ---- */

static void test_runs_in_order(void)
{
    uint64_t size = 4 * 1024 * 1024;
    struct memory_backend *memory = memory_backend_create(size);
    uint8_t *previous = malloc(size);
    memcpy(previous, memory->bytes, size);
    struct primary_disk *disk = make_disk(&memory->backend, 0);
    struct block_backend *backend = primary_disk_backend(disk);
    uint8_t *data = malloc(2 * 1024 * 1024);

    /* Written out of order, some sectors twice: the runs come sorted,
     * adjacent sectors of different blocks merged, latest bytes only. */
    memset(data, 1, BLOCK);
    CHECK(block_backend_write(backend, 3 * BLOCK, data, SECTOR) == 0, "write");
    memset(data, 2, BLOCK);
    CHECK(block_backend_write(backend, BLOCK, data, BLOCK) == 0, "write");
    memset(data, 3, BLOCK);
    CHECK(block_backend_write(backend, 3 * BLOCK, data, SECTOR) == 0, "write");
    memset(data, 4, BLOCK);
    CHECK(block_backend_write(backend, BLOCK + SECTOR, data, SECTOR) == 0, "write");
    memset(data, 5, BLOCK);
    CHECK(block_backend_write(backend, 2 * BLOCK + 6 * SECTOR, data, 2 * SECTOR) == 0, "write");
    /* 2 MiB from 1 MiB: two runs of the maximum. */
    memset(data, 6, 2 * 1024 * 1024);
    CHECK(block_backend_write(backend, 1024 * 1024, data, 2 * 1024 * 1024) == 0, "write");

    struct run_log log = iterate(disk, previous, __LINE__);
    CHECK(log.count == 4, "%zu runs, not 4", log.count);
    CHECK(log.offsets[0] == BLOCK && log.lengths[0] == BLOCK, "run 0: %llu+%zu", (unsigned long long)log.offsets[0],
          log.lengths[0]);
    CHECK(log.offsets[1] == 2 * BLOCK + 6 * SECTOR && log.lengths[1] == 3 * SECTOR,
          "run 1 (two blocks merged): %llu+%zu", (unsigned long long)log.offsets[1], log.lengths[1]);
    CHECK(log.offsets[2] == 1024 * 1024 && log.lengths[2] == 1024 * 1024 && log.offsets[3] == 2 * 1024 * 1024 &&
              log.lengths[3] == 1024 * 1024,
          "the 2 MiB write is not two runs of 1 MiB");
    CHECK(memcmp(previous, memory->bytes, size) == 0, "the runs applied to the old image are not the base");
    CHECK(test_bytes_all(previous + 3 * BLOCK, SECTOR, 3) && test_bytes_all(previous + BLOCK + SECTOR, SECTOR, 4),
          "a sector written twice does not hold its latest bytes");

    struct primary_disk_stats stats;
    primary_disk_get_stats(disk, &stats);
    CHECK(stats.epoch_blocks == 3 + 512 && stats.epoch_bytes == BLOCK + 3 * SECTOR + 2 * 1024 * 1024 &&
              stats.epoch_overflow_blocks == 0,
          "epoch stats: %llu blocks %llu bytes", (unsigned long long)stats.epoch_blocks,
          (unsigned long long)stats.epoch_bytes);
    /* The iteration changes nothing: a failed send may go again. */
    log = iterate(disk, NULL, __LINE__);
    CHECK(log.count == 4, "a second iteration gave %zu runs", log.count);
    primary_disk_epoch_clear(disk);
    primary_disk_get_stats(disk, &stats);
    CHECK(stats.epoch_blocks == 0 && stats.epoch_bytes == 0 && stats.epochs_cleared == 1 &&
              stats.blocks_total == 3 + 512 && stats.bytes_total == BLOCK + 3 * SECTOR + 2 * 1024 * 1024,
          "stats after clear");
    log = iterate(disk, NULL, __LINE__);
    CHECK(log.count == 0, "a cleared epoch has %zu runs", log.count);
    free(data);
    free(previous);
    block_backend_destroy(backend);
}

static void test_discard_records_zeros(void)
{
    struct memory_backend *memory = memory_backend_create(16 * BLOCK);
    struct primary_disk *disk = make_disk(&memory->backend, 0);
    struct block_backend *backend = primary_disk_backend(disk);
    uint8_t data[BLOCK];
    memset(data, 0xaa, sizeof data);
    CHECK(block_backend_write(backend, 5 * BLOCK, data, BLOCK) == 0, "write");
    primary_disk_epoch_clear(disk);
    CHECK(block_backend_discard(backend, 5 * BLOCK + SECTOR, 2 * SECTOR) == 0, "discard");
    uint8_t previous[16 * BLOCK];
    memset(previous, 0xaa, sizeof previous);
    struct run_log log = iterate(disk, previous, __LINE__);
    CHECK(log.count == 1 && log.offsets[0] == 5 * BLOCK + SECTOR && log.lengths[0] == 2 * SECTOR,
          "the discard's run: %zu runs", log.count);
    CHECK(test_bytes_all(previous + 5 * BLOCK + SECTOR, 2 * SECTOR, 0), "the discard did not record zeros");
    CHECK(test_bytes_all(previous + 5 * BLOCK, SECTOR, 0xaa) &&
              test_bytes_all(previous + 5 * BLOCK + 3 * SECTOR, 5 * SECTOR, 0xaa),
          "the discard recorded more than its range");
    CHECK(block_backend_discard(backend, 15 * BLOCK, 2 * BLOCK) == -EINVAL, "a discard past the end is accepted");
    block_backend_destroy(backend);
}

static void test_memory_bound(void)
{
    struct memory_backend *memory = memory_backend_create(16 * BLOCK);
    struct primary_disk *disk = make_disk(&memory->backend, 2 * BLOCK);
    struct block_backend *backend = primary_disk_backend(disk);
    uint8_t data[BLOCK];
    for (uint8_t block = 0; block < 4; block++) {
        memset(data, 0x10 + block, sizeof data);
        CHECK(block_backend_write(backend, block * (uint64_t)BLOCK, data, BLOCK) == 0, "write");
    }
    /* A copied block written again costs nothing new; a sector of an
     * overflow block sends the whole block. */
    memset(data, 0x20, sizeof data);
    CHECK(block_backend_write(backend, 0, data, SECTOR) == 0, "write");
    CHECK(block_backend_write(backend, 6 * BLOCK + SECTOR, data, SECTOR) == 0, "write");
    struct primary_disk_stats stats;
    primary_disk_get_stats(disk, &stats);
    CHECK(stats.epoch_blocks == 5 && stats.epoch_overflow_blocks == 3 && stats.epoch_memory_bytes == 2 * BLOCK &&
              stats.epoch_bytes == 5 * BLOCK,
          "bound stats: %llu blocks, %llu overflow, %llu memory, %llu bytes", (unsigned long long)stats.epoch_blocks,
          (unsigned long long)stats.epoch_overflow_blocks, (unsigned long long)stats.epoch_memory_bytes,
          (unsigned long long)stats.epoch_bytes);
    /* The overflow blocks are read from the base at send time: change the
     * base behind the disk's back and the run carries the new bytes. */
    memset(memory->bytes + 3 * BLOCK, 0x77, BLOCK);
    uint8_t *previous = calloc(16, BLOCK);
    struct run_log log = iterate(disk, previous, __LINE__);
    CHECK(log.count == 2 && log.offsets[0] == 0 && log.lengths[0] == 4 * BLOCK && log.offsets[1] == 6 * BLOCK &&
              log.lengths[1] == BLOCK,
          "bound runs: %zu", log.count);
    CHECK(test_bytes_all(previous, SECTOR, 0x20) && test_bytes_all(previous + SECTOR, BLOCK - SECTOR, 0x10) &&
              test_bytes_all(previous + BLOCK, BLOCK, 0x11) && test_bytes_all(previous + 2 * BLOCK, BLOCK, 0x12),
          "the copied and overflow blocks' bytes");
    CHECK(test_bytes_all(previous + 3 * BLOCK, BLOCK, 0x77), "an overflow block was not read from the base");
    CHECK(memcmp(previous + 6 * BLOCK, memory->bytes + 6 * BLOCK, BLOCK) == 0, "the partly written overflow block");
    /* A failing base read fails the iteration with its errno. */
    memory->fail_read = true;
    struct error err;
    struct run_log failed = { .well_formed = true };
    CHECK(primary_disk_epoch_for_each(disk, log_run, &failed, &err) == -EIO && strstr(err.message, "memory.img"),
          "a failed base read does not fail the iteration");
    memory->fail_read = false;
    primary_disk_epoch_clear(disk);
    primary_disk_get_stats(disk, &stats);
    CHECK(stats.overflow_blocks_total == 3 && stats.epoch_overflow_blocks == 0 && stats.epoch_memory_bytes == 0,
          "overflow totals after clear");
    log = iterate(disk, NULL, __LINE__);
    CHECK(log.count == 0, "the cleared overflow still sends %zu runs", log.count);
    free(previous);
    block_backend_destroy(backend);
}

static void test_dirty_log(void)
{
    struct memory_backend *memory = memory_backend_create(130 * BLOCK);
    struct primary_disk *disk = make_disk(&memory->backend, 0);
    struct block_backend *backend = primary_disk_backend(disk);
    CHECK(primary_disk_block_count(disk) == 130 && primary_disk_bitmap_words(disk) == 3, "block count and words");
    uint64_t bitmap[3];
    uint8_t data[BLOCK] = { 0 };
    CHECK(block_backend_write(backend, 2 * BLOCK, data, SECTOR) == 0, "write");
    CHECK(primary_disk_dirty_log_read_and_clear(disk, bitmap) == 0, "a disabled dirty log marks");
    primary_disk_dirty_log_enable(disk, true);
    CHECK(block_backend_write(backend, BLOCK + 7 * SECTOR, data, 2 * SECTOR) == 0, "write");
    CHECK(block_backend_discard(backend, 128 * BLOCK, BLOCK + SECTOR) == 0, "discard");
    uint64_t dirty = primary_disk_dirty_log_read_and_clear(disk, bitmap);
    CHECK(dirty == 4 && bitmap[0] == ((1ull << 1) | (1ull << 2)) && bitmap[1] == 0 && bitmap[2] == 3,
          "dirty log: %llu blocks, %llx %llx %llx", (unsigned long long)dirty, (unsigned long long)bitmap[0],
          (unsigned long long)bitmap[1], (unsigned long long)bitmap[2]);
    CHECK(primary_disk_dirty_log_read_and_clear(disk, bitmap) == 0 && bitmap[0] == 0 && bitmap[2] == 0,
          "the dirty log was not cleared");
    /* A failed write may have changed its range: the sync copies it. */
    memory->fail_write = memory->writes + 1;
    CHECK(block_backend_write(backend, 70 * BLOCK, data, SECTOR) == -ENOSPC, "the failing write");
    memory->fail_write = 0;
    CHECK(primary_disk_dirty_log_read_and_clear(disk, bitmap) == 1 && bitmap[1] == 1ull << 6,
          "a failed write is not in the dirty log");
    primary_disk_dirty_log_enable(disk, false);
    CHECK(block_backend_write(backend, 0, data, SECTOR) == 0, "write");
    CHECK(primary_disk_dirty_log_read_and_clear(disk, bitmap) == 0, "a disabled dirty log marks");
    block_backend_destroy(backend);
}

static void test_zero_blocks(void)
{
    /* The last block is short (one sector). */
    struct memory_backend *memory = memory_backend_create(3 * BLOCK + SECTOR);
    struct primary_disk *disk = make_disk(&memory->backend, 0);
    CHECK(primary_disk_block_count(disk) == 4, "a short last block counts");
    memset(memory->bytes + BLOCK, 0, BLOCK);
    memset(memory->bytes + 3 * BLOCK, 0, SECTOR);
    CHECK(primary_disk_block_is_zero(disk, 0) == 0, "a pattern block reads as zeros");
    CHECK(primary_disk_block_is_zero(disk, 1) == 1, "a zero block does not read as zeros");
    memory->bytes[2 * BLOCK - 1] = 1;
    CHECK(primary_disk_block_is_zero(disk, 1) == 0, "a block with its last byte set reads as zeros");
    CHECK(primary_disk_block_is_zero(disk, 3) == 1, "the short zero block does not read as zeros");
    CHECK(primary_disk_block_is_zero(disk, 4) == -EINVAL, "a block past the end");
    memory->fail_read = true;
    CHECK(primary_disk_block_is_zero(disk, 1) == -EIO, "a failed read is not reported");
    block_backend_destroy(primary_disk_backend(disk));
}

/* A write the base refused may have done part of its range (the memory
 * image does half): the epoch sends those blocks as the base holds them,
 * both a block copied earlier in the epoch and one that was not, so the
 * runs applied to the previous image still give the base. */
static void count_call(void *opaque)
{
    (*(unsigned *)opaque)++;
}

/* The written hook (the loop's "stream phase wanted"): once per epoch, at
 * its first write, discard or failed write; again after the epoch was
 * moved aside or cleared; never once removed. */
static void test_written_hook(void)
{
    struct memory_backend *memory = memory_backend_create(16 * BLOCK);
    struct primary_disk *disk = make_disk(&memory->backend, 0);
    struct block_backend *backend = primary_disk_backend(disk);
    uint8_t data[BLOCK];
    memset(data, 0x31, sizeof data);
    unsigned calls = 0;
    primary_disk_set_written_hook(disk, count_call, &calls);
    CHECK(calls == 0, "the hook was called by its setting");
    CHECK(block_backend_write(backend, 0, data, SECTOR) == 0 && block_backend_write(backend, BLOCK, data, BLOCK) == 0,
          "writes");
    CHECK(calls == 1, "two writes of one epoch: %u calls (want 1)", calls);
    primary_disk_precopy_begin(disk);
    primary_disk_precopy_finish(disk);
    CHECK(block_backend_discard(backend, 2 * BLOCK, SECTOR) == 0, "discard");
    CHECK(calls == 2, "the first discard after a pre-copy's swap: %u calls (want 2)", calls);
    primary_disk_epoch_clear(disk);
    memory->fail_write = 1;
    CHECK(block_backend_write(backend, 3 * BLOCK, data, SECTOR) < 0, "a failing write");
    CHECK(calls == 3, "the first (failed) write after a checkpoint's clear: %u calls (want 3)", calls);
    memory->fail_write = 0;
    primary_disk_epoch_clear(disk);
    primary_disk_set_written_hook(disk, NULL, NULL);
    CHECK(block_backend_write(backend, 4 * BLOCK, data, SECTOR) == 0, "a write");
    CHECK(calls == 3, "a removed hook was called");
    block_backend_destroy(backend);
}

static void test_failed_write(void)
{
    struct memory_backend *memory = memory_backend_create(16 * BLOCK);
    struct primary_disk *disk = make_disk(&memory->backend, 0);
    struct block_backend *backend = primary_disk_backend(disk);
    uint8_t *previous = malloc(16 * BLOCK);
    memcpy(previous, memory->bytes, 16 * BLOCK);
    uint8_t data[2 * BLOCK];
    memset(data, 0x77, sizeof data);
    CHECK(block_backend_write(backend, 5 * BLOCK, data, SECTOR) == 0, "the first write");
    memset(data, 0x99, sizeof data);
    memory->fail_write = 2;
    CHECK(block_backend_write(backend, 4 * BLOCK, data, 2 * BLOCK) == -ENOSPC, "the base's errno is not returned");
    CHECK(memory->bytes[4 * BLOCK] == 0x99 && memory->bytes[5 * BLOCK] != 0x99,
          "the memory image did not do half of the failed write");
    struct primary_disk_stats stats;
    primary_disk_get_stats(disk, &stats);
    CHECK(stats.epoch_blocks == 2 && stats.epoch_overflow_blocks == 1,
          "a failed write's blocks: %llu in the epoch, %llu marked (expected 2 and 1)",
          (unsigned long long)stats.epoch_blocks, (unsigned long long)stats.epoch_overflow_blocks);
    struct run_log log = iterate(disk, previous, __LINE__);
    CHECK(memcmp(previous, memory->bytes, 16 * BLOCK) == 0,
          "after a failed write the epoch's runs applied to the previous image do not give the base");
    CHECK(block_backend_write(backend, 3, data, SECTOR) == -EINVAL, "a write not on a sector");
    (void)log;
    free(previous);
    block_backend_destroy(backend);
}

/* A fixed-seed run: random writes and discards, epochs of random length,
 * a small memory bound; after each epoch its runs applied to the previous
 * epoch's image must give the base exactly. */
static void test_model(void)
{
    uint64_t size = 48 * BLOCK + 3 * SECTOR; /* a short last block */
    struct memory_backend *memory = memory_backend_create(size);
    struct primary_disk *disk = make_disk(&memory->backend, 8 * BLOCK);
    struct block_backend *backend = primary_disk_backend(disk);
    uint8_t *previous = malloc(size);
    memcpy(previous, memory->bytes, size);
    uint8_t *data = malloc(size);
    uint64_t sectors = size / SECTOR;
    srand(11);
    uint64_t overflow_seen = 0, precopied = 0;
    for (int epoch = 0; epoch < 300; epoch++) {
        int requests = rand() % 24;
        /* Every other epoch has a checkpoint pre-copy halfway: what was
         * written so far is moved aside and sent first, the rest (and
         * what is written again) after; in that order they give the base. */
        bool precopy = epoch % 2 == 1;
        struct run_log precopy_log = { .image = previous, .well_formed = true };
        for (int request = 0; request < requests; request++) {
            if (precopy && request == requests / 2)
                precopied += primary_disk_precopy_begin(disk);
            uint64_t first = (uint64_t)rand() % sectors;
            uint64_t count = 1 + (uint64_t)rand() % 20;
            if (first + count > sectors)
                count = sectors - first;
            if (rand() % 6 == 0) {
                CHECK(block_backend_discard(backend, first * SECTOR, count * SECTOR) == 0, "epoch %d: discard", epoch);
            } else {
                memset(data, rand() & 0xff, count * SECTOR);
                data[0] = (uint8_t)request;
                CHECK(block_backend_write(backend, first * SECTOR, data, count * SECTOR) == 0, "epoch %d: write",
                      epoch);
            }
        }
        struct primary_disk_stats stats;
        primary_disk_get_stats(disk, &stats);
        overflow_seen += stats.epoch_overflow_blocks;
        if (precopy) {
            struct error err;
            CHECK(primary_disk_precopy_for_each(disk, log_run, &precopy_log, &err) == 0 && precopy_log.well_formed,
                  "epoch %d: the pre-copy's runs", epoch);
            primary_disk_precopy_finish(disk);
        }
        iterate(disk, previous, __LINE__);
        CHECK(memcmp(previous, memory->bytes, size) == 0, "epoch %d: the runs applied do not give the base", epoch);
        memcpy(previous, memory->bytes, size); /* one failure is reported once */
        primary_disk_epoch_clear(disk);
    }
    CHECK(overflow_seen > 0, "the model never passed the memory bound");
    CHECK(precopied > 0, "the model never pre-copied a block");
    free(previous);
    free(data);
    block_backend_destroy(backend);
}

/* The stream phase moves the epoch aside with the VM running (no pause):
 * a writer thread (the machine's) writes while this thread pre-copies again
 * and again. The pre-copies and the final epoch, applied in order to the
 * image as it was, must give the base: no write lost or torn by a swap. */
struct racing_writer {
    struct block_backend *backend;
    uint64_t sectors;
    unsigned writes;
    atomic_bool done;
    int failures;
    /* The pre-copy's swaps so far: the writer waits for one after every
     * WRITES_PER_SWAP writes, so that swaps come between writes however
     * the two threads are scheduled (a loaded host may run either alone
     * for a whole time slice). */
    atomic_uint swaps;
};

#define WRITES_PER_SWAP 64u

static void *write_while_precopying(void *opaque)
{
    struct racing_writer *writer = opaque;
    uint8_t data[8 * SECTOR];
    unsigned seed = 5;
    for (unsigned i = 0; i < writer->writes; i++) {
        uint64_t first = (uint64_t)rand_r(&seed) % writer->sectors;
        uint64_t count = 1 + (uint64_t)rand_r(&seed) % 8;
        if (first + count > writer->sectors)
            count = writer->sectors - first;
        memset(data, (int)(i & 0xff), sizeof data);
        memcpy(data, &i, sizeof i);
        if (block_backend_write(writer->backend, first * SECTOR, data, count * SECTOR) != 0)
            writer->failures++;
        if (i % WRITES_PER_SWAP == WRITES_PER_SWAP - 1) {
            unsigned seen = atomic_load(&writer->swaps);
            while (atomic_load(&writer->swaps) == seen)
                sched_yield();
        }
    }
    atomic_store(&writer->done, true);
    return NULL;
}

static void test_precopy_while_writing(void)
{
    uint64_t size = 64 * BLOCK;
    struct memory_backend *memory = memory_backend_create(size);
    struct primary_disk *disk = make_disk(&memory->backend, 0); /* no bound: the base is never read back */
    uint8_t *previous = malloc(size);
    memcpy(previous, memory->bytes, size);
    struct racing_writer writer = { .backend = primary_disk_backend(disk), .sectors = size / SECTOR, .writes = 40000 };
    atomic_init(&writer.done, false);
    atomic_init(&writer.swaps, 0);
    pthread_t thread;
    pthread_create(&thread, NULL, write_while_precopying, &writer);
    unsigned swaps = 0, swaps_with_blocks = 0;
    bool runs_well_formed = true;
    while (!atomic_load(&writer.done)) {
        if (primary_disk_precopy_begin(disk) > 0)
            swaps_with_blocks++;
        swaps++;
        struct run_log log = { .image = previous, .well_formed = true };
        struct error err;
        CHECK(primary_disk_precopy_for_each(disk, log_run, &log, &err) == 0, "a racing pre-copy's runs");
        runs_well_formed &= log.well_formed;
        primary_disk_precopy_finish(disk);
        atomic_fetch_add(&writer.swaps, 1);
    }
    pthread_join(thread, NULL);
    CHECK(writer.failures == 0, "%d writes failed", writer.failures);
    CHECK(runs_well_formed, "a racing pre-copy's runs were not sorted, whole-sector and bounded");
    iterate(disk, previous, __LINE__);
    CHECK(memcmp(previous, memory->bytes, size) == 0,
          "the pre-copies made while writing, then the epoch, do not give the base");
    /* Each wait of the writer's is followed by a swap of what it wrote. */
    CHECK(swaps_with_blocks >= writer.writes / WRITES_PER_SWAP, "only %u of %u swaps came between writes",
          swaps_with_blocks, swaps);
    printf("racing pre-copy: %u writes, %u swaps (%u with blocks)\n", writer.writes, swaps, swaps_with_blocks);
    free(previous);
    block_backend_destroy(primary_disk_backend(disk));
}

int main(void)
{
    char directory[64], path[96];
    snprintf(directory, sizeof directory, "/tmp/primary_disk_test.XXXXXX");
    if (!mkdtemp(directory)) {
        printf("FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/base.img", directory);
    test_over_file(path);
    unlink(path);
    rmdir(directory);
    test_runs_in_order();
    test_discard_records_zeros();
    test_memory_bound();
    test_dirty_log();
    test_zero_blocks();
    test_failed_write();
    test_written_hook();
    test_precopy_while_writing();
    test_model();
    return test_check_finish("primary_disk_test");
}
