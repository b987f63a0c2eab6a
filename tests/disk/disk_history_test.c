/* The image history sidecar (disk/disk_history.h) and the tracker
 * (disk/disk_tracker.h): a history written reads back the same; a missing,
 * corrupt, truncated, other-version or stale file (the image written or
 * replaced since) reads as unknown with a reason, never as a history; a
 * second write replaces the first whole and leaves no temporary file;
 * invalidate removes it (and is fine without one). The tracker marks the
 * blocks each write and discard touches, passes them through, and forgets
 * everything once stopped. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk_history.h"
#include "disk_tracker.h"
#include "memory_block_backend.h"

#include "test_check.h"

static char directory[] = "/tmp/colo-disk-history-test.XXXXXX";
static char image[300], sidecar[400];

static void write_bytes(const char *path, const void *data, size_t length)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, data, length) != (ssize_t)length) {
        perror(path);
        exit(1);
    }
    close(fd);
}

static size_t read_bytes(const char *path, uint8_t *data, size_t size)
{
    int fd = open(path, O_RDONLY);
    ssize_t got = fd < 0 ? -1 : read(fd, data, size);
    if (fd >= 0)
        close(fd);
    return got < 0 ? 0 : (size_t)got;
}

static void make_image(void)
{
    uint8_t data[8192];
    memset(data, 0x5a, sizeof data);
    write_bytes(image, data, sizeof data);
}

static const struct disk_history history = {
    .protection = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 },
    .checkpoint = 1234567,
    .disk_size = 8192,
};

/* Reads the history and checks it is unknown for a reason containing `expected`. */
static void check_unknown(int line, const char *expected)
{
    struct disk_history read;
    char why[600] = "";
    bool known = disk_history_read(image, &read, why, sizeof why);
    CHECK_AT(line, !known, "the history reads as valid, expected unknown (%s)", expected);
    CHECK_AT(line, strstr(why, expected) != NULL, "why: '%s', expected '%s'", why, expected);
}

static void test_round_trip(void)
{
    make_image();
    struct error err;
    CHECK(disk_history_write(image, &history, &err) == 0, "write: %s", err.message);
    struct disk_history read;
    char why[600] = "";
    CHECK(disk_history_read(image, &read, why, sizeof why), "read: %s", why);
    CHECK(disk_history_equal(&read, &history), "the history read back differs");
    struct stat status;
    char temporary[500];
    snprintf(temporary, sizeof temporary, "%s.tmp", sidecar);
    CHECK(stat(temporary, &status) < 0, "the temporary file was left behind");
    CHECK(stat(sidecar, &status) == 0 && status.st_size == DISK_HISTORY_FILE_LENGTH, "the file is not %d bytes",
          DISK_HISTORY_FILE_LENGTH);
}

/* A second write replaces the first whole (rename): the new history. */
static void test_atomic_replace(void)
{
    make_image();
    struct error err;
    struct disk_history second = history;
    second.checkpoint = 7;
    CHECK(disk_history_write(image, &history, &err) == 0 && disk_history_write(image, &second, &err) == 0, "write: %s",
          err.message);
    /* A stale temporary from a crash mid-write does not matter either. */
    char temporary[500];
    snprintf(temporary, sizeof temporary, "%s.tmp", sidecar);
    write_bytes(temporary, "half", 4);
    struct disk_history read;
    char why[600] = "";
    CHECK(disk_history_read(image, &read, why, sizeof why) && read.checkpoint == 7, "read after replace: %s", why);
    CHECK(disk_history_write(image, &history, &err) == 0, "write over a stale temporary: %s", err.message);
    CHECK(access(temporary, F_OK) != 0, "the stale temporary is still there");
}

static void test_unknown(void)
{
    struct error err;
    make_image();
    unlink(sidecar);
    check_unknown(__LINE__, "none");

    uint8_t bytes[DISK_HISTORY_FILE_LENGTH];
    CHECK(disk_history_write(image, &history, &err) == 0, "write: %s", err.message);
    CHECK(read_bytes(sidecar, bytes, sizeof bytes) == sizeof bytes, "cannot read the sidecar");

    uint8_t corrupt[DISK_HISTORY_FILE_LENGTH];
    memcpy(corrupt, bytes, sizeof corrupt);
    corrupt[45] ^= 1; /* the checkpoint */
    write_bytes(sidecar, corrupt, sizeof corrupt);
    check_unknown(__LINE__, "CRC mismatch");

    memcpy(corrupt, bytes, sizeof corrupt);
    corrupt[8] = 2; /* the version */
    write_bytes(sidecar, corrupt, sizeof corrupt);
    check_unknown(__LINE__, "version 2");

    write_bytes(sidecar, bytes, sizeof bytes - 1);
    check_unknown(__LINE__, "bytes");

    write_bytes(sidecar, "not a history at all, really, just some text here ...", 50);
    check_unknown(__LINE__, "not a history file");

    /* Valid bytes, but the image was written since. */
    CHECK(disk_history_write(image, &history, &err) == 0, "write: %s", err.message);
    usleep(20000);
    int fd = open(image, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "x", 1, 100) == 1, "cannot write the image");
    close(fd);
    check_unknown(__LINE__, "written since");

    /* Or replaced by another file (another inode). */
    CHECK(disk_history_write(image, &history, &err) == 0, "write: %s", err.message);
    char other[400];
    snprintf(other, sizeof other, "%s/other.img", directory);
    uint8_t data[8192] = { 0 };
    write_bytes(other, data, sizeof data);
    CHECK(rename(other, image) == 0, "cannot replace the image");
    check_unknown(__LINE__, "replaced");
}

static void test_invalidate(void)
{
    struct error err;
    make_image();
    CHECK(disk_history_write(image, &history, &err) == 0, "write: %s", err.message);
    CHECK(disk_history_invalidate(image, &err) == 0, "invalidate: %s", err.message);
    CHECK(access(sidecar, F_OK) != 0, "the sidecar is still there");
    CHECK(disk_history_invalidate(image, &err) == 0, "invalidate without a sidecar: %s", err.message);
    check_unknown(__LINE__, "none");
}

static void test_parse_rejects_other_lengths(void)
{
    uint8_t bytes[DISK_HISTORY_FILE_LENGTH + 8];
    struct disk_history_stamp stamp = { .image_inode = 5, .image_mtime_ns = 6 }, parsed_stamp;
    disk_history_encode(&history, &stamp, bytes);
    struct disk_history parsed;
    char why[200];
    CHECK(disk_history_parse(bytes, DISK_HISTORY_FILE_LENGTH, &parsed, &parsed_stamp, why, sizeof why) &&
              disk_history_equal(&parsed, &history) && parsed_stamp.image_inode == 5 &&
              parsed_stamp.image_mtime_ns == 6,
          "parse of encode: %s", why);
    CHECK(!disk_history_parse(bytes, DISK_HISTORY_FILE_LENGTH + 8, &parsed, &parsed_stamp, why, sizeof why),
          "a longer file parsed");
    CHECK(!disk_history_parse(bytes, 3, &parsed, &parsed_stamp, why, sizeof why), "3 bytes parsed");
}

static void test_tracker(void)
{
    struct error err;
    struct block_backend *memory = &memory_backend_create(10 * DISK_TRACKER_BLOCK_SIZE + 512)->backend;
    struct disk_tracker *tracker = disk_tracker_create(memory, &history, &err);
    CHECK(tracker != NULL, "create: %s", err.message);
    struct block_backend *backend = disk_tracker_backend(tracker);
    CHECK(disk_tracker_of(backend) == tracker && disk_tracker_of(memory) == NULL, "disk_tracker_of");
    CHECK(disk_tracker_block_count(tracker) == 11, "%llu blocks, expected 11",
          (unsigned long long)disk_tracker_block_count(tracker));
    uint8_t data[2 * DISK_TRACKER_BLOCK_SIZE];
    memset(data, 7, sizeof data);
    /* Blocks 1 and 2 (a write across their border), block 5 (a discard),
     * the short last block 10 (one sector), block 7 (marked by hand). */
    CHECK(block_backend_write(backend, DISK_TRACKER_BLOCK_SIZE + 3584, data, 1024) == 0, "write");
    CHECK(block_backend_discard(backend, 5 * DISK_TRACKER_BLOCK_SIZE, 512) == 0, "discard");
    CHECK(block_backend_write(backend, 10 * DISK_TRACKER_BLOCK_SIZE, data, 512) == 0, "last block");
    disk_tracker_mark(tracker, 7 * DISK_TRACKER_BLOCK_SIZE + 512, 512);
    uint64_t bitmap[1] = { 0 };
    CHECK(disk_tracker_read(tracker, bitmap) == 5 &&
              bitmap[0] == ((1u << 1) | (1u << 2) | (1u << 5) | (1u << 7) | (1u << 10)),
          "bitmap 0x%llx", (unsigned long long)bitmap[0]);
    uint8_t back[1024];
    CHECK(block_backend_read(memory, DISK_TRACKER_BLOCK_SIZE + 3584, back, sizeof back) == 0 &&
              memcmp(back, data, sizeof back) == 0,
          "the write did not reach the base");
    struct disk_history read;
    CHECK(disk_tracker_history(tracker, &read) && disk_history_equal(&read, &history), "history");
    disk_tracker_stop(tracker);
    CHECK(!disk_tracker_history(tracker, &read), "a stopped tracker still has a history");
    CHECK(block_backend_write(backend, 0, data, 512) == 0, "a stopped tracker refuses writes");
    bitmap[0] = 0;
    CHECK(disk_tracker_read(tracker, bitmap) == 0 && bitmap[0] == 0, "a stopped tracker marks");
    block_backend_destroy(backend);
}

int main(void)
{
    if (!mkdtemp(directory)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(image, sizeof image, "%s/disk.img", directory);
    snprintf(sidecar, sizeof sidecar, "%s%s", image, DISK_HISTORY_SUFFIX);
    test_round_trip();
    test_atomic_replace();
    test_unknown();
    test_invalidate();
    test_parse_rejects_other_lengths();
    test_tracker();
    char command[300];
    snprintf(command, sizeof command, "rm -rf %s", directory);
    if (system(command) != 0)
        fprintf(stderr, "cannot remove %s\n", directory);
    return test_check_finish("disk_history_test");
}
