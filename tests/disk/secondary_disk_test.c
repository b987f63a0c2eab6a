/* The COLO secondary's three-part disk (disk/secondary_disk.h): the SVM
 * reads its overlay over the base and never sees the PVM's buffered
 * writes; its writes never reach the base; a commit folds the buffer into
 * the base and empties the overlay; an abort changes nothing but the
 * buffer; a failover folds the overlay and drops the buffer; a failing
 * base write breaks the disk; the buffer's bound; the spill file past
 * the bound (rewrites of spilled blocks, a directory that is not there, a
 * full filesystem); and randomized runs against a byte-array model of the
 * three parts, in memory and spilling. Over a real image file and over an
 * in-memory backend that can fail on demand. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block_file.h"
#include "secondary_disk.h"

#include "memory_block_backend.h"
#include "test_check.h"
#include "test_image_file.h"

enum { BLOCK = SECONDARY_DISK_BLOCK_SIZE, SECTOR = SECONDARY_DISK_SECTOR_SIZE };

static struct secondary_disk *make_spilling_disk(struct block_backend *base, uint64_t buffer_limit,
                                                 const char *spill_directory)
{
    struct error err;
    struct secondary_disk_options options = { .buffer_limit_bytes = buffer_limit, .spill_directory = spill_directory };
    struct secondary_disk *disk = secondary_disk_create(base, &options, &err);
    if (!disk) {
        printf("FAIL: secondary_disk_create: %s\n", err.message);
        exit(1);
    }
    return disk;
}

static struct secondary_disk *make_disk(struct block_backend *base, uint64_t buffer_limit)
{
    return make_spilling_disk(base, buffer_limit, NULL);
}

static void fill(uint8_t *data, size_t length, uint8_t value)
{
    memset(data, value, length);
}

/* ---- over a real image file ---- */

#define FILE_IMAGE_SIZE (64u * 1024u)

static void test_over_file(const char *path)
{
    static uint8_t initial[FILE_IMAGE_SIZE];
    for (size_t i = 0; i < sizeof initial; i++)
        initial[i] = (uint8_t)(i * 13 + 5);
    test_image_file_create(path, initial, sizeof initial);
    struct error err;
    struct block_backend *base = block_file_open(path, false, &err);
    if (!base) {
        printf("FAIL: open: %s\n", err.message);
        exit(1);
    }
    struct secondary_disk *disk = make_disk(base, 0);
    struct block_backend *svm = secondary_disk_backend(disk);
    CHECK(secondary_disk_of(svm) == disk && secondary_disk_of(base) == NULL, "secondary_disk_of");
    CHECK(svm->size == FILE_IMAGE_SIZE && strcmp(svm->name, path) == 0, "size or name not the base's");

    static uint8_t data[3 * BLOCK], file[FILE_IMAGE_SIZE];
    /* With nothing written, the SVM reads the base. */
    CHECK(block_backend_read(svm, 0, data, sizeof data) == 0 && memcmp(data, initial, sizeof data) == 0,
          "the SVM does not read the base");

    /* The SVM's write: it reads it back, the file never sees it, even
     * after its flush. */
    fill(data, 2 * SECTOR, 0x11);
    CHECK(block_backend_write(svm, BLOCK + 512, data, 2 * SECTOR) == 0, "SVM write failed");
    CHECK(block_backend_flush(svm) == 0, "SVM flush failed");
    test_image_file_read(path, 0, file, sizeof file);
    CHECK(memcmp(file, initial, sizeof file) == 0, "the SVM's write reached the image file");
    CHECK(block_backend_read(svm, BLOCK, data, BLOCK) == 0 && memcmp(data, initial + BLOCK, 512) == 0 &&
              test_bytes_all(data + 512, 1024, 0x11) && memcmp(data + 1536, initial + BLOCK + 1536, BLOCK - 1536) == 0,
          "the SVM's partial block does not read as its write over the base");

    /* The PVM's write: buffered, unseen by the SVM, not in the file. */
    fill(data, BLOCK, 0x22);
    CHECK(secondary_disk_buffer_write(disk, 8 * BLOCK, data, BLOCK, &err) == 0, "buffer write: %s", err.message);
    CHECK(block_backend_read(svm, 8 * BLOCK, data, BLOCK) == 0 && memcmp(data, initial + 8 * BLOCK, BLOCK) == 0,
          "the SVM sees the PVM's buffered write");
    test_image_file_read(path, 0, file, sizeof file);
    CHECK(memcmp(file, initial, sizeof file) == 0, "the buffered write reached the image before the commit");

    struct secondary_disk_stats stats;
    secondary_disk_get_stats(disk, &stats);
    CHECK(stats.buffered_blocks == 1 && stats.buffered_bytes == BLOCK && stats.overlay_blocks == 1 &&
              stats.overlay_bytes == BLOCK,
          "stats before commit: buffered %llu/%llu overlay %llu/%llu", (unsigned long long)stats.buffered_blocks,
          (unsigned long long)stats.buffered_bytes, (unsigned long long)stats.overlay_blocks,
          (unsigned long long)stats.overlay_bytes);

    /* Commit: the file has the PVM's write, the overlay is gone. */
    struct secondary_disk_fold_report report;
    CHECK(secondary_disk_checkpoint_commit(disk, &report, &err) == 0, "commit: %s", err.message);
    CHECK(report.blocks == 1 && report.bytes == BLOCK && report.writes == 1, "commit report %llu blocks %llu bytes",
          (unsigned long long)report.blocks, (unsigned long long)report.bytes);
    test_image_file_read(path, 0, file, sizeof file);
    CHECK(test_bytes_all(file + 8 * BLOCK, BLOCK, 0x22), "the commit did not write the PVM's block");
    CHECK(memcmp(file, initial, 8 * BLOCK) == 0 &&
              memcmp(file + 9 * BLOCK, initial + 9 * BLOCK, FILE_IMAGE_SIZE - 9 * BLOCK) == 0,
          "the commit wrote more than the PVM's block");
    CHECK(block_backend_read(svm, 0, data, 3 * BLOCK) == 0 && memcmp(data, file, 3 * BLOCK) == 0,
          "after the commit the SVM still reads its overlay");
    CHECK(block_backend_read(svm, 8 * BLOCK, data, BLOCK) == 0 && test_bytes_all(data, BLOCK, 0x22),
          "after the commit the SVM does not read the PVM's write");
    secondary_disk_get_stats(disk, &stats);
    CHECK(stats.buffered_blocks == 0 && stats.overlay_blocks == 0 && stats.memory_bytes == 0 &&
              stats.checkpoints_committed == 1 && stats.folded_blocks_total == 1,
          "stats after commit");

    /* Abort: the buffer goes, the overlay and the file stay. */
    fill(data, BLOCK, 0x33);
    CHECK(secondary_disk_buffer_write(disk, 2 * BLOCK, data, BLOCK, &err) == 0, "buffer write: %s", err.message);
    fill(data, SECTOR, 0x44);
    CHECK(block_backend_write(svm, 4 * BLOCK, data, SECTOR) == 0, "SVM write failed");
    secondary_disk_checkpoint_abort(disk);
    CHECK(secondary_disk_checkpoint_commit(disk, &report, &err) == 0 && report.blocks == 0, "empty commit");
    test_image_file_read(path, 0, file, sizeof file);
    CHECK(memcmp(file + 2 * BLOCK, initial + 2 * BLOCK, BLOCK) == 0, "the aborted buffer reached the image");

    /* Failover: the overlay's write lands in the file, the buffer does not. */
    fill(data, SECTOR, 0x55);
    CHECK(block_backend_write(svm, 5 * BLOCK + 7 * SECTOR, data, SECTOR) == 0, "SVM write failed");
    fill(data, BLOCK, 0x66);
    CHECK(secondary_disk_buffer_write(disk, 6 * BLOCK, data, BLOCK, &err) == 0, "buffer write: %s", err.message);
    CHECK(secondary_disk_failover(disk, &report, &err) == 0, "failover: %s", err.message);
    CHECK(report.blocks == 1 && report.bytes == BLOCK, "failover report");
    test_image_file_read(path, 0, file, sizeof file);
    CHECK(test_bytes_all(file + 5 * BLOCK + 7 * SECTOR, SECTOR, 0x55) &&
              memcmp(file + 5 * BLOCK, initial + 5 * BLOCK, 7 * SECTOR) == 0,
          "failover did not fold the overlay's block into the image");
    CHECK(memcmp(file + 6 * BLOCK, initial + 6 * BLOCK, BLOCK) == 0, "failover folded the dropped buffer");

    /* After failover the SVM writes the image itself. */
    fill(data, SECTOR, 0x77);
    CHECK(block_backend_write(svm, 0, data, SECTOR) == 0 && block_backend_flush(svm) == 0, "write after failover");
    test_image_file_read(path, 0, file, SECTOR);
    CHECK(test_bytes_all(file, SECTOR, 0x77), "a write after failover did not reach the image");
    CHECK(secondary_disk_buffer_write(disk, 0, data, SECTOR, &err) < 0, "a PVM write accepted after failover");
    CHECK(secondary_disk_checkpoint_commit(disk, NULL, &err) < 0, "a commit accepted after failover");
    block_backend_destroy(svm);
}

/* ---- over the in-memory backend ---- */

/* Sub-block writes at block edges, discards, and the tail block of an
 * image whose size is not a multiple of the block. */
static void test_edges(void)
{
    const uint64_t size = 4 * BLOCK + 3 * SECTOR;
    struct memory_backend *memory = memory_backend_create(size);
    uint8_t *initial = malloc(size);
    memcpy(initial, memory->bytes, size);
    struct secondary_disk *disk = make_disk(&memory->backend, 0);
    struct block_backend *svm = secondary_disk_backend(disk);
    uint8_t *data = malloc(size);
    uint8_t *expected = malloc(size);
    memcpy(expected, initial, size);

    /* Two sectors across the edge of blocks 0 and 1; the last sector of
     * block 1; the image's last sector (in the short block). */
    fill(data, 2 * SECTOR, 0xa1);
    CHECK(block_backend_write(svm, BLOCK - SECTOR, data, 2 * SECTOR) == 0, "edge write");
    memset(expected + BLOCK - SECTOR, 0xa1, 2 * SECTOR);
    fill(data, SECTOR, 0xa2);
    CHECK(block_backend_write(svm, 2 * BLOCK - SECTOR, data, SECTOR) == 0, "last sector of block 1");
    memset(expected + 2 * BLOCK - SECTOR, 0xa2, SECTOR);
    fill(data, SECTOR, 0xa3);
    CHECK(block_backend_write(svm, size - SECTOR, data, SECTOR) == 0, "last sector of the image");
    memset(expected + size - SECTOR, 0xa3, SECTOR);
    /* Discard: a whole block and a partial one. */
    CHECK(block_backend_discard(svm, 2 * BLOCK, BLOCK + SECTOR) == 0, "discard");
    memset(expected + 2 * BLOCK, 0, BLOCK + SECTOR);
    CHECK(block_backend_read(svm, 0, data, size) == 0 && memcmp(data, expected, size) == 0,
          "reads do not see the overlay's edges over the base");
    CHECK(memcmp(memory->bytes, initial, size) == 0 && memory->writes == 0, "the SVM's writes reached the base");
    /* Requests outside the image or not whole sectors. */
    CHECK(block_backend_read(svm, size - SECTOR, data, 2 * SECTOR) == -EINVAL, "read past the end");
    CHECK(block_backend_write(svm, 100, data, SECTOR) == -EINVAL, "unaligned write");
    struct error err;
    CHECK(secondary_disk_buffer_write(disk, size, data, SECTOR, &err) < 0, "PVM write past the end accepted");

    /* PVM sectors at the edges fold as exactly those sectors, adjacent
     * ones as one write. */
    uint8_t *pending = malloc(size);
    memcpy(pending, initial, size);
    fill(data, 3 * SECTOR, 0xb1);
    CHECK(secondary_disk_buffer_write(disk, BLOCK - 2 * SECTOR, data, 3 * SECTOR, &err) == 0, "PVM edge write");
    memset(pending + BLOCK - 2 * SECTOR, 0xb1, 3 * SECTOR);
    fill(data, 2 * SECTOR, 0xb2);
    CHECK(secondary_disk_buffer_write(disk, size - 2 * SECTOR, data, 2 * SECTOR, &err) == 0, "PVM tail write");
    memset(pending + size - 2 * SECTOR, 0xb2, 2 * SECTOR);
    struct secondary_disk_fold_report report;
    CHECK(secondary_disk_checkpoint_commit(disk, &report, &err) == 0, "commit: %s", err.message);
    CHECK(memcmp(memory->bytes, pending, size) == 0, "the base after the commit is not the PVM's disk");
    CHECK(report.blocks == 3 && report.bytes == 5 * SECTOR && report.writes == 2,
          "fold report: %llu blocks, %llu bytes, %llu writes", (unsigned long long)report.blocks,
          (unsigned long long)report.bytes, (unsigned long long)report.writes);
    CHECK(block_backend_read(svm, 0, data, size) == 0 && memcmp(data, pending, size) == 0,
          "after the commit the SVM does not read the base");

    /* Adjacent whole blocks merge into one write. */
    unsigned writes_before = memory->writes;
    for (int block = 0; block < 4; block++) {
        fill(data, BLOCK, (uint8_t)(0xc0 + block));
        CHECK(secondary_disk_buffer_write(disk, (uint64_t)(3 - block) * BLOCK, data, BLOCK, &err) == 0, "write");
    }
    CHECK(secondary_disk_checkpoint_commit(disk, &report, &err) == 0 && report.writes == 1 &&
              memory->writes == writes_before + 1,
          "four adjacent blocks took %llu writes", (unsigned long long)report.writes);
    CHECK(test_bytes_all(memory->bytes, BLOCK, 0xc3) && test_bytes_all(memory->bytes + 3 * BLOCK, BLOCK, 0xc0),
          "merged blocks out of order");

    free(pending);
    free(initial);
    free(data);
    free(expected);
    block_backend_destroy(svm);
}

/* A base write that fails in the middle of a commit breaks the disk. */
static void test_failing_commit(void)
{
    struct memory_backend *memory = memory_backend_create(16 * BLOCK);
    struct secondary_disk *disk = make_disk(&memory->backend, 0);
    struct block_backend *svm = secondary_disk_backend(disk);
    struct error err;
    uint8_t data[BLOCK];
    fill(data, BLOCK, 0xd1);
    /* Two runs apart: two writes, the second fails. */
    CHECK(secondary_disk_buffer_write(disk, 0, data, BLOCK, &err) == 0, "write");
    CHECK(secondary_disk_buffer_write(disk, 8 * BLOCK, data, BLOCK, &err) == 0, "write");
    memory->fail_write = memory->writes + 2;
    err.message[0] = 0;
    CHECK(secondary_disk_checkpoint_commit(disk, NULL, &err) < 0, "a commit with a failing base succeeded");
    CHECK(strstr(err.message, "memory.img") != NULL, "the message does not name the image: %s", err.message);
    CHECK(secondary_disk_broken(disk), "the disk is not broken after a failed fold");
    /* What remains, as secondary_disk.h says: the epoch's writes below the
     * failed write, the last checkpoint's bytes above it. */
    CHECK(test_bytes_all(memory->bytes, BLOCK, 0xd1), "the write before the failed one is not in the base");
    CHECK(memory->bytes[9 * BLOCK] == (uint8_t)(9 * BLOCK * 7 + 3), "the base changed above the failed write");
    secondary_disk_checkpoint_abort(disk);
    CHECK(block_backend_read(svm, 0, data, BLOCK) == -EIO, "a broken disk still serves reads");
    CHECK(block_backend_write(svm, 0, data, BLOCK) == -EIO, "a broken disk still takes writes");
    CHECK(secondary_disk_checkpoint_commit(disk, NULL, &err) < 0, "a broken disk commits again");
    CHECK(secondary_disk_failover(disk, NULL, &err) < 0, "a broken disk fails over");
    struct secondary_disk_stats stats;
    secondary_disk_get_stats(disk, &stats);
    CHECK(stats.broken && stats.buffered_blocks == 2, "stats of a broken disk");
    block_backend_destroy(svm);

    /* A failing flush at failover breaks it too. */
    memory = memory_backend_create(16 * BLOCK);
    disk = make_disk(&memory->backend, 0);
    memory->fail_flush = true;
    CHECK(secondary_disk_failover(disk, NULL, &err) < 0 && secondary_disk_broken(disk),
          "a failover whose flush failed succeeded");
    block_backend_destroy(secondary_disk_backend(disk));

    /* A read-only base is refused, and stays the caller's. */
    memory = memory_backend_create(BLOCK);
    memory->backend.read_only = true;
    CHECK(secondary_disk_create(&memory->backend, NULL, &err) == NULL && strstr(err.message, "memory.img"),
          "a read-only base accepted");
    block_backend_destroy(&memory->backend);
}

static void test_buffer_bound(void)
{
    struct memory_backend *memory = memory_backend_create(16 * BLOCK);
    struct secondary_disk *disk = make_disk(&memory->backend, 2 * BLOCK);
    struct error err;
    uint8_t data[3 * BLOCK];
    fill(data, sizeof data, 0xe1);
    CHECK(secondary_disk_buffer_write(disk, 0, data, SECTOR, &err) == 0, "first sector");
    CHECK(secondary_disk_buffer_write(disk, BLOCK, data, BLOCK, &err) == 0, "second block");
    CHECK(secondary_disk_buffer_write(disk, 7 * SECTOR, data, SECTOR, &err) == 0, "the same block again");
    err.message[0] = 0;
    CHECK(secondary_disk_buffer_write(disk, BLOCK + SECTOR, data, 2 * BLOCK, &err) < 0,
          "a write past the buffer's bound accepted");
    CHECK(strstr(err.message, "memory.img") && strstr(err.message, "bound"), "bound message: %s", err.message);
    struct secondary_disk_stats stats;
    secondary_disk_get_stats(disk, &stats);
    CHECK(stats.buffered_blocks == 2 && stats.buffered_bytes == BLOCK + 2 * SECTOR,
          "a refused write changed the buffer: %llu blocks %llu bytes", (unsigned long long)stats.buffered_blocks,
          (unsigned long long)stats.buffered_bytes);
    secondary_disk_checkpoint_abort(disk);
    CHECK(secondary_disk_buffer_write(disk, BLOCK + SECTOR, data, BLOCK, &err) == 0, "after abort the bound is free");
    block_backend_destroy(secondary_disk_backend(disk));
}

/* ---- the randomized model check ---- */

static uint64_t random_state = 0x5eed1234abcdull;

static uint64_t random_next(void)
{
    random_state ^= random_state << 13;
    random_state ^= random_state >> 7;
    random_state ^= random_state << 17;
    return random_state;
}

/* The model: `base` is the image as of the last checkpoint, `svm` what
 * the SVM reads (its overlay over the base), `pvm` the base with the
 * epoch's buffer applied (what the commit makes the base). With a bound
 * of a few blocks and a spill directory most of the buffer is in the
 * spill file, and most PVM writes rewrite a block already there; the
 * buffer's memory must stay within the bound. */
static void test_model(uint64_t buffer_limit, const char *spill_directory)
{
    const uint64_t size = 24 * BLOCK + 5 * SECTOR;
    const uint64_t sectors = size / SECTOR;
    struct memory_backend *memory = memory_backend_create(size);
    uint8_t *base = malloc(size), *svm_view = malloc(size), *pvm = malloc(size), *data = malloc(size);
    memcpy(base, memory->bytes, size);
    memcpy(svm_view, base, size);
    memcpy(pvm, base, size);
    struct secondary_disk *disk = make_spilling_disk(&memory->backend, buffer_limit, spill_directory);
    struct block_backend *svm = secondary_disk_backend(disk);
    struct error err;
    int failures_before = test_check_failures;
    uint64_t most_spilled = 0, spilled_commits = 0;
    for (int step = 0; step < 4000 && test_check_failures == failures_before; step++) {
        uint64_t first = random_next() % sectors;
        uint64_t count = 1 + random_next() % 20;
        if (first + count > sectors)
            count = sectors - first;
        uint64_t offset = first * SECTOR, length = count * SECTOR;
        uint8_t value = (uint8_t)random_next();
        unsigned operation = (unsigned)(random_next() % 100);
        if (operation < 30) {
            fill(data, length, value);
            CHECK(block_backend_write(svm, offset, data, length) == 0, "step %d: SVM write", step);
            memset(svm_view + offset, value, length);
        } else if (operation < 35) {
            CHECK(block_backend_discard(svm, offset, length) == 0, "step %d: SVM discard", step);
            memset(svm_view + offset, 0, length);
        } else if (operation < 60) {
            fill(data, length, value);
            CHECK(secondary_disk_buffer_write(disk, offset, data, length, &err) == 0, "step %d: PVM write", step);
            memset(pvm + offset, value, length);
        } else if (operation < 85) {
            CHECK(block_backend_read(svm, offset, data, length) == 0 && memcmp(data, svm_view + offset, length) == 0,
                  "step %d: SVM read of %llu bytes at %llu differs from the model", step, (unsigned long long)length,
                  (unsigned long long)offset);
        } else if (operation < 95) {
            struct secondary_disk_stats stats;
            secondary_disk_get_stats(disk, &stats);
            spilled_commits += stats.spilled_blocks > 0;
            CHECK(secondary_disk_checkpoint_commit(disk, NULL, &err) == 0, "step %d: commit: %s", step, err.message);
            memcpy(base, pvm, size);
            memcpy(svm_view, base, size);
        } else {
            secondary_disk_checkpoint_abort(disk);
            memcpy(pvm, base, size);
        }
        CHECK(memcmp(memory->bytes, base, size) == 0, "step %d: the base differs from the model", step);
        struct secondary_disk_stats stats;
        secondary_disk_get_stats(disk, &stats);
        if (stats.spilled_blocks > most_spilled)
            most_spilled = stats.spilled_blocks;
        CHECK(!buffer_limit || (stats.buffered_blocks - stats.spilled_blocks) * BLOCK <= buffer_limit,
              "step %d: %llu of the buffer's blocks in memory, over the bound", step,
              (unsigned long long)(stats.buffered_blocks - stats.spilled_blocks));
        CHECK(stats.spill_file_bytes <= stats.spilled_blocks * BLOCK &&
                  (stats.spilled_blocks == 0) == (stats.spill_file_bytes == 0),
              "step %d: a spill file of %llu bytes for %llu spilled blocks", step,
              (unsigned long long)stats.spill_file_bytes, (unsigned long long)stats.spilled_blocks);
    }
    if (spill_directory)
        CHECK(most_spilled >= 10 && spilled_commits >= 10,
              "the buffer hardly spilled: at most %llu blocks, %llu commits with spilled blocks",
              (unsigned long long)most_spilled, (unsigned long long)spilled_commits);
    else
        CHECK(most_spilled == 0, "a disk without a spill directory spilled");
    CHECK(block_backend_read(svm, 0, data, size) == 0 && memcmp(data, svm_view, size) == 0,
          "the SVM's whole disk differs from the model");
    CHECK(secondary_disk_failover(disk, NULL, &err) == 0, "failover: %s", err.message);
    CHECK(memcmp(memory->bytes, svm_view, size) == 0, "after failover the base is not the SVM's view");
    free(base);
    free(svm_view);
    free(pvm);
    free(data);
    block_backend_destroy(svm);
}

/* ---- the spill file ---- */

/* True when `directory` holds no entry: the spill file has no name. */
static bool directory_empty(const char *directory)
{
    DIR *listing = opendir(directory);
    if (!listing)
        return false;
    bool empty = true;
    for (struct dirent *entry; (entry = readdir(listing));)
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, ".."))
            empty = false;
    closedir(listing);
    return empty;
}

/* The length of the open file in `directory` (the spill file, which has
 * no name there: found through /proc/self/fd); -1 when there is none. */
static long long spill_file_length(const char *directory)
{
    DIR *listing = opendir("/proc/self/fd");
    if (!listing)
        return -1;
    long long length = -1;
    size_t prefix = strlen(directory);
    for (struct dirent *entry; (entry = readdir(listing));) {
        char link[300], target[512];
        snprintf(link, sizeof link, "/proc/self/fd/%s", entry->d_name);
        ssize_t got = readlink(link, target, sizeof target - 1);
        if (got <= (ssize_t)prefix || strncmp(target, directory, prefix) != 0 || target[prefix] != '/')
            continue;
        struct stat status;
        if (stat(link, &status) == 0)
            length = (long long)status.st_size;
    }
    closedir(listing);
    return length;
}

/* Blocks past the bound go to the spill file; a rewrite of a spilled block
 * (whole or a few sectors) keeps the last bytes; the commit folds exactly
 * the written sectors of memory and spilled blocks alike; an abort drops
 * the spilled blocks; the file has no name in the directory. */
static void test_spill_rewrites(const char *directory)
{
    struct memory_backend *memory = memory_backend_create(16 * BLOCK);
    uint8_t *initial = malloc(16 * BLOCK), *expected = malloc(16 * BLOCK);
    memcpy(initial, memory->bytes, 16 * BLOCK);
    memcpy(expected, initial, 16 * BLOCK);
    struct secondary_disk *disk = make_spilling_disk(&memory->backend, BLOCK, directory);
    struct block_backend *svm = secondary_disk_backend(disk);
    CHECK(directory_empty(directory), "the spill file has a name in %s", directory);
    struct error err;
    uint8_t data[2 * BLOCK];
    /* Block 3 in memory (the bound is one block), 9 and 10 spilled. */
    fill(data, BLOCK, 0x31);
    CHECK(secondary_disk_buffer_write(disk, 3 * BLOCK, data, BLOCK, &err) == 0, "write: %s", err.message);
    memset(expected + 3 * BLOCK, 0x31, BLOCK);
    fill(data, 2 * BLOCK, 0x91);
    CHECK(secondary_disk_buffer_write(disk, 9 * BLOCK, data, 2 * BLOCK, &err) == 0, "write: %s", err.message);
    memset(expected + 9 * BLOCK, 0x91, 2 * BLOCK);
    struct secondary_disk_stats stats;
    secondary_disk_get_stats(disk, &stats);
    CHECK(stats.buffered_blocks == 3 && stats.spilled_blocks == 2 && stats.spill_file_bytes == 2 * BLOCK &&
              stats.memory_bytes == BLOCK,
          "stats after spilling: %llu buffered, %llu spilled, %llu file bytes, %llu memory bytes",
          (unsigned long long)stats.buffered_blocks, (unsigned long long)stats.spilled_blocks,
          (unsigned long long)stats.spill_file_bytes, (unsigned long long)stats.memory_bytes);
    CHECK(spill_file_length(directory) == 2 * BLOCK, "the spill file holds %lld bytes, not two blocks",
          spill_file_length(directory));
    /* Rewrites: two sectors inside block 9, then all of block 10, then
     * one sector of it again; a partial new block 12 (its other sectors
     * must stay the base's). */
    fill(data, 2 * SECTOR, 0x92);
    CHECK(secondary_disk_buffer_write(disk, 9 * BLOCK + 3 * SECTOR, data, 2 * SECTOR, &err) == 0, "rewrite");
    memset(expected + 9 * BLOCK + 3 * SECTOR, 0x92, 2 * SECTOR);
    fill(data, BLOCK, 0xa1);
    CHECK(secondary_disk_buffer_write(disk, 10 * BLOCK, data, BLOCK, &err) == 0, "rewrite");
    fill(data, SECTOR, 0xa2);
    CHECK(secondary_disk_buffer_write(disk, 10 * BLOCK + 7 * SECTOR, data, SECTOR, &err) == 0, "rewrite");
    memset(expected + 10 * BLOCK, 0xa1, BLOCK);
    memset(expected + 10 * BLOCK + 7 * SECTOR, 0xa2, SECTOR);
    fill(data, SECTOR, 0xc1);
    CHECK(secondary_disk_buffer_write(disk, 12 * BLOCK + 2 * SECTOR, data, SECTOR, &err) == 0, "partial");
    memset(expected + 12 * BLOCK + 2 * SECTOR, 0xc1, SECTOR);
    secondary_disk_get_stats(disk, &stats);
    CHECK(stats.buffered_blocks == 4 && stats.spilled_blocks == 3 && stats.buffered_bytes == 3 * BLOCK + SECTOR,
          "stats after the rewrites: %llu buffered, %llu spilled, %llu bytes",
          (unsigned long long)stats.buffered_blocks, (unsigned long long)stats.spilled_blocks,
          (unsigned long long)stats.buffered_bytes);
    /* The SVM reads the base, none of it. */
    uint8_t *read_back = malloc(16 * BLOCK);
    CHECK(block_backend_read(svm, 0, read_back, 16 * BLOCK) == 0 && memcmp(read_back, initial, 16 * BLOCK) == 0,
          "the SVM sees the buffer");
    CHECK(memcmp(memory->bytes, initial, 16 * BLOCK) == 0, "the buffer reached the base before the commit");

    struct secondary_disk_fold_report report;
    CHECK(secondary_disk_checkpoint_commit(disk, &report, &err) == 0, "commit: %s", err.message);
    CHECK(memcmp(memory->bytes, expected, 16 * BLOCK) == 0, "the base after the commit is not the PVM's writes");
    CHECK(report.blocks == 4 && report.bytes == 3 * BLOCK + SECTOR && report.writes == 3,
          "fold report: %llu blocks, %llu bytes, %llu writes", (unsigned long long)report.blocks,
          (unsigned long long)report.bytes, (unsigned long long)report.writes);
    secondary_disk_get_stats(disk, &stats);
    CHECK(stats.buffered_blocks == 0 && stats.spilled_blocks == 0 && stats.spill_file_bytes == 0,
          "the commit left the spill file with %llu blocks, %llu bytes", (unsigned long long)stats.spilled_blocks,
          (unsigned long long)stats.spill_file_bytes);
    CHECK(spill_file_length(directory) == 0, "the commit left %lld bytes in the spill file",
          spill_file_length(directory));

    /* Spilled blocks of an aborted epoch never reach the base, and the
     * next epoch's spilled blocks are its own (the file starts over). */
    fill(data, 2 * BLOCK, 0xd1);
    CHECK(secondary_disk_buffer_write(disk, 0, data, 2 * BLOCK, &err) == 0 &&
              secondary_disk_buffer_write(disk, 5 * BLOCK, data, BLOCK, &err) == 0,
          "write: %s", err.message);
    secondary_disk_checkpoint_abort(disk);
    secondary_disk_get_stats(disk, &stats);
    CHECK(stats.spilled_blocks == 0 && stats.spill_file_bytes == 0 && stats.checkpoints_aborted == 1,
          "the abort left the spill file");
    CHECK(spill_file_length(directory) == 0, "the abort left %lld bytes in the spill file",
          spill_file_length(directory));
    CHECK(memcmp(memory->bytes, expected, 16 * BLOCK) == 0, "an aborted epoch changed the base");
    fill(data, SECTOR, 0xe1);
    CHECK(secondary_disk_buffer_write(disk, 14 * BLOCK, data, SECTOR, &err) == 0 &&
              secondary_disk_buffer_write(disk, 15 * BLOCK + SECTOR, data, SECTOR, &err) == 0,
          "write: %s", err.message);
    memset(expected + 14 * BLOCK, 0xe1, SECTOR);
    memset(expected + 15 * BLOCK + SECTOR, 0xe1, SECTOR);
    CHECK(secondary_disk_checkpoint_commit(disk, NULL, &err) == 0, "commit: %s", err.message);
    CHECK(memcmp(memory->bytes, expected, 16 * BLOCK) == 0, "the epoch after an abort folded the aborted bytes");
    CHECK(directory_empty(directory), "the spill file has a name in %s", directory);
    free(read_back);
    free(initial);
    free(expected);
    block_backend_destroy(svm);
    CHECK(directory_empty(directory), "the disk left a file in %s", directory);
}

/* A spill directory that is not there: the create fails naming it and the
 * image, and the base stays the caller's. */
static void test_spill_directory_missing(const char *directory)
{
    char missing[256];
    snprintf(missing, sizeof missing, "%s/not-there", directory);
    struct memory_backend *memory = memory_backend_create(4 * BLOCK);
    struct error err;
    err.message[0] = 0;
    struct secondary_disk_options options = { .buffer_limit_bytes = BLOCK, .spill_directory = missing };
    CHECK(secondary_disk_create(&memory->backend, &options, &err) == NULL, "a missing spill directory accepted");
    CHECK(strstr(err.message, missing) && strstr(err.message, "memory.img") && strstr(err.message, "spill file"),
          "the message does not name the spill directory and the image: %s", err.message);
    block_backend_destroy(&memory->backend);
}

/* A spill directory on a filesystem of 16 KiB: a small tmpfs in this
 * process's own mount namespace (root, or a user namespace); where
 * neither can be had, a file size limit makes the spill file's write fail
 * the same way. Returns the mount point, or NULL with the limit set. */
static const char *full_filesystem(char *mount_point, size_t size, bool *mounted)
{
    snprintf(mount_point, size, "/tmp/secondary_disk_spill.XXXXXX");
    if (!mkdtemp(mount_point)) {
        printf("FAIL: mkdtemp: %s\n", strerror(errno));
        exit(1);
    }
    *mounted = unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
               mount("tmpfs", mount_point, "tmpfs", 0, "size=16k") == 0;
    if (!*mounted) {
        fprintf(stderr, "no tmpfs of our own (%s): a file size limit of 16 KiB instead\n", strerror(errno));
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit limit = { .rlim_cur = 16 * 1024, .rlim_max = RLIM_INFINITY };
        if (setrlimit(RLIMIT_FSIZE, &limit) < 0) {
            printf("FAIL: setrlimit: %s\n", strerror(errno));
            exit(1);
        }
    }
    return mount_point;
}

/* The spill file's write fails (the filesystem is full): the PVM write
 * fails naming the spill file, the epoch cannot be committed, an abort
 * leaves the base as it was and frees the file, and the next epoch
 * spills and commits again. */
static void test_spill_full(void)
{
    char mount_point[64];
    bool mounted;
    full_filesystem(mount_point, sizeof mount_point, &mounted);
    const uint64_t size = 32 * BLOCK;
    struct memory_backend *memory = memory_backend_create(size);
    uint8_t *initial = malloc(size);
    memcpy(initial, memory->bytes, size);
    struct secondary_disk *disk = make_spilling_disk(&memory->backend, 2 * BLOCK, mount_point);
    struct error err;
    uint8_t data[BLOCK];
    fill(data, BLOCK, 0x5a);
    int result = 0;
    unsigned written = 0;
    for (; written < 32 && result == 0; written++)
        result = secondary_disk_buffer_write(disk, written * BLOCK, data, BLOCK, &err);
    CHECK(result < 0, "%u blocks buffered on a 16 KiB filesystem", written);
    CHECK(written > 2 && written <= 2 + 5, "the spill file filled after %u blocks", written);
    CHECK(strstr(err.message, "spill file") && strstr(err.message, mount_point) && strstr(err.message, "memory.img") &&
              strstr(err.message, strerror(mounted ? ENOSPC : EFBIG)),
          "the message does not name the spill file and the failure: %s", err.message);
    struct secondary_disk_stats stats;
    secondary_disk_get_stats(disk, &stats);
    CHECK(stats.spilled_blocks > 0, "nothing spilled before the failure");
    err.message[0] = 0;
    CHECK(secondary_disk_checkpoint_commit(disk, NULL, &err) < 0 && strstr(err.message, "aborted"),
          "an incomplete epoch committed: %s", err.message);
    CHECK(memcmp(memory->bytes, initial, size) == 0 && memory->writes == 0, "the refused commit changed the base");
    CHECK(!secondary_disk_broken(disk), "a spill failure broke the disk");
    secondary_disk_checkpoint_abort(disk);
    CHECK(memcmp(memory->bytes, initial, size) == 0, "the abort changed the base");
    secondary_disk_get_stats(disk, &stats);
    CHECK(stats.buffered_blocks == 0 && stats.spill_file_bytes == 0 && stats.checkpoints_aborted == 1 &&
              stats.checkpoints_committed == 0,
          "after the abort: %llu blocks, %llu file bytes", (unsigned long long)stats.buffered_blocks,
          (unsigned long long)stats.spill_file_bytes);
    CHECK(spill_file_length(mount_point) == 0, "the abort left %lld bytes in the spill file",
          spill_file_length(mount_point));
    /* The abort gave the room back: an epoch that fits spills and commits. */
    for (unsigned block = 0; block < 4; block++)
        CHECK(secondary_disk_buffer_write(disk, (20 + block) * BLOCK, data, BLOCK, &err) == 0,
              "after the abort, block %u: %s", block, err.message);
    CHECK(secondary_disk_checkpoint_commit(disk, NULL, &err) == 0, "commit after the abort: %s", err.message);
    CHECK(test_bytes_all(memory->bytes + 20 * BLOCK, 4 * BLOCK, 0x5a) &&
              memcmp(memory->bytes, initial, 20 * BLOCK) == 0,
          "the commit after the abort");
    block_backend_destroy(secondary_disk_backend(disk));
    free(initial);
    if (mounted) {
        umount(mount_point);
    } else {
        struct rlimit limit = { .rlim_cur = RLIM_INFINITY, .rlim_max = RLIM_INFINITY };
        setrlimit(RLIMIT_FSIZE, &limit);
    }
    rmdir(mount_point);
}

int main(void)
{
    char directory[64], path[96];
    snprintf(directory, sizeof directory, "/tmp/secondary_disk_test.XXXXXX");
    if (!mkdtemp(directory)) {
        printf("FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/base.img", directory);
    test_over_file(path);
    unlink(path);
    test_edges();
    test_failing_commit();
    test_buffer_bound();
    test_model(0, NULL);
    test_model(3 * BLOCK, directory);
    test_spill_rewrites(directory);
    test_spill_directory_missing(directory);
    rmdir(directory);
    test_spill_full();
    return test_check_finish("secondary_disk_test");
}
