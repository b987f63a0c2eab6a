/* The checkpoint numbering and the images' histories of a protected VM's
 * disks (disk/disk_replication.h), on a test machine with a real image
 * file: a secondary that folded one checkpoint and is told the primary
 * ended records "checkpoint 1 of P" with its base as that checkpoint left
 * it; one that fails over instead puts a tracker over its disk from that
 * same history, marked with the overlay blocks it folded and then every
 * write. A primary records after its checkpoint only when no disk was
 * written since, and never before its initial copy completed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk_history.h"
#include "disk_replication.h"
#include "disk_runs.h"
#include "disk_tracker.h"
#include "stream.h"
#include "virtio_blk.h"

#include "test_check.h"
#include "test_image_file.h"
#include "test_machine.h"

enum { IMAGE = 1 << 20, BLOCK = 4096 };

static char directory[] = "/tmp/colo-disk-replication-history-test.XXXXXX";
static char image[300];

static const uint8_t protection[DISK_HISTORY_PROTECTION_SIZE] = { 7, 7, 7, 1 };

static struct machine *machine_on_image(void)
{
    uint8_t *zeros = calloc(1, IMAGE);
    test_image_file_create(image, zeros, IMAGE);
    free(zeros);
    struct test_machine_options options = { .disk_image = image };
    return test_machine_create(&options);
}

/* A DISK_WRITE body: one block of `byte` at `offset` of disk 0. */
static void disk_write_body(uint8_t *body, uint64_t offset, uint8_t byte)
{
    memset(body, 0, STREAM_DISK_WRITE_PREFIX);
    for (int i = 0; i < 8; i++)
        body[8 + i] = (uint8_t)(offset >> (8 * i));
    memset(body + STREAM_DISK_WRITE_PREFIX, byte, BLOCK);
}

/* The secondary through its initial copy (the plan's protection id) and
 * one checkpoint that writes block 3. */
static void secondary_with_one_checkpoint(struct disk_replication_secondary *replication, struct machine *machine)
{
    struct error err;
    disk_replication_secondary_init(replication, machine, NULL);
    memcpy(replication->sync.protection, protection, sizeof protection);
    replication->sync.protection_known = true;
    const struct colo_checkpoint_device_ops *ops = &disk_replication_secondary_device;
    CHECK(ops->setup(replication) == 0, "setup: %s", replication->setup_error.message);
    uint8_t body[STREAM_DISK_WRITE_PREFIX + BLOCK];
    disk_write_body(body, 3 * BLOCK, 0x33);
    CHECK(ops->receive(replication, body, sizeof body, &err) == 0, "receive: %s", err.message);
    struct stream_reader reader;
    CHECK(stream_reader_init(&reader, -1, &err) == 0, "reader: %s", err.message);
    CHECK(ops->load(replication, &reader, &err) == 0, "load: %s", err.message);
    stream_reader_destroy(&reader);
    CHECK(ops->preresume(replication) == 0, "preresume: %s", replication->commit_error.message);
    CHECK(replication->checkpoints_committed == 1, "%llu checkpoints committed, expected 1",
          (unsigned long long)replication->checkpoints_committed);
}

static void test_secondary_records(void)
{
    struct machine *machine = machine_on_image();
    struct disk_replication_secondary replication;
    secondary_with_one_checkpoint(&replication, machine);
    /* The SVM's own write stays in its overlay: not in the base. */
    uint8_t block[BLOCK];
    memset(block, 0x55, sizeof block);
    struct block_backend *disk = virtio_blk_backend(machine_disk(machine, 0));
    CHECK(block_backend_write(disk, 5 * BLOCK, block, sizeof block) == 0, "the SVM's write");
    struct error err;
    CHECK(disk_replication_secondary_record_history(&replication, &err) == 0, "record: %s", err.message);
    struct disk_history history;
    char why[600];
    CHECK(disk_history_read(image, &history, why, sizeof why), "read: %s", why);
    CHECK(history.checkpoint == 1 && memcmp(history.protection, protection, sizeof protection) == 0 &&
              history.disk_size == IMAGE,
          "the history says checkpoint %llu", (unsigned long long)history.checkpoint);
    FILE *file = fopen(image, "rb");
    uint8_t bytes[6 * BLOCK];
    CHECK(file && fread(bytes, 1, sizeof bytes, file) == sizeof bytes, "cannot read the image");
    if (file)
        fclose(file);
    CHECK(bytes[3 * BLOCK] == 0x33 && bytes[5 * BLOCK] == 0, "the base is not checkpoint 1's (0x%02x, 0x%02x)",
          bytes[3 * BLOCK], bytes[5 * BLOCK]);
    test_machine_destroy(machine);
    disk_replication_secondary_destroy(&replication);
    disk_history_invalidate(image, &err);
}

static void test_secondary_failover_tracks(void)
{
    struct machine *machine = machine_on_image();
    struct disk_replication_secondary replication;
    secondary_with_one_checkpoint(&replication, machine);
    uint8_t block[BLOCK];
    memset(block, 0x55, sizeof block);
    CHECK(block_backend_write(virtio_blk_backend(machine_disk(machine, 0)), 5 * BLOCK, block, sizeof block) == 0,
          "the SVM's write");
    struct error err;
    CHECK(disk_replication_secondary_device.failover(&replication, &err) == 0, "failover: %s", err.message);
    struct block_backend *disk = virtio_blk_backend(machine_disk(machine, 0));
    struct disk_tracker *tracker = disk_tracker_of(disk);
    CHECK(tracker != NULL, "no tracker over the disk after the failover");
    if (tracker) {
        struct disk_history history;
        CHECK(disk_tracker_history(tracker, &history) && history.checkpoint == 1 &&
                  memcmp(history.protection, protection, sizeof protection) == 0,
              "the tracker's history is not checkpoint 1 of the protection");
        CHECK(block_backend_write(disk, 9 * BLOCK + 512, block, 512) == 0, "the survivor's write");
        uint64_t bitmap[IMAGE / BLOCK / 64] = { 0 };
        CHECK(disk_tracker_read(tracker, bitmap) == 2 && disk_bit_test(bitmap, 5) && disk_bit_test(bitmap, 9),
              "tracked 0x%llx, expected blocks 5 (the folded overlay) and 9", (unsigned long long)bitmap[0]);
    }
    CHECK(disk_replication_secondary_record_history(&replication, &err) < 0,
          "a secondary that failed over recorded a history");
    test_machine_destroy(machine);
    disk_replication_secondary_destroy(&replication);
}

static void test_primary_records(void)
{
    struct machine *machine = machine_on_image();
    struct disk_replication_primary replication;
    struct error err;
    CHECK(disk_replication_primary_init(&replication, machine, NULL, &err) == 0, "primary init: %s", err.message);
    char why[300] = "";
    CHECK(disk_replication_primary_record_history(&replication, why, sizeof why, &err) == 0 &&
              strstr(why, "initial copy did not complete"),
          "before the initial copy: '%s'", why);
    atomic_store(&replication.sync.done, true); /* as the sync's stop-and-copy leaves it */
    struct block_backend *disk = virtio_blk_backend(machine_disk(machine, 0));
    uint8_t block[BLOCK];
    memset(block, 0x44, sizeof block);
    CHECK(block_backend_write(disk, 2 * BLOCK, block, sizeof block) == 0, "the PVM's write");
    FILE *sink = fopen("/dev/null", "w");
    struct stream_writer writer;
    CHECK(sink && stream_writer_init(&writer, fileno(sink), &err) == 0, "writer");
    CHECK(disk_replication_primary_device.save(&replication, &writer, &err) == 0, "save: %s", err.message);
    CHECK(disk_replication_primary_record_history(&replication, why, sizeof why, &err) == 1, "record: %s / %s", why,
          err.message);
    struct disk_history history;
    char reason[600];
    CHECK(disk_history_read(image, &history, reason, sizeof reason) && history.checkpoint == 1 &&
              memcmp(history.protection, replication.sync.protection, DISK_HISTORY_PROTECTION_SIZE) == 0,
          "the primary's history: %s", reason);
    CHECK(block_backend_write(disk, 4 * BLOCK, block, 512) == 0, "the PVM's write after the checkpoint");
    why[0] = '\0';
    disk_history_invalidate(image, &err);
    CHECK(disk_replication_primary_record_history(&replication, why, sizeof why, &err) == 0 &&
              strstr(why, "written after checkpoint 1"),
          "after a write since the checkpoint: '%s'", why);
    CHECK(access(image, F_OK) == 0 && !disk_history_read(image, &history, reason, sizeof reason),
          "a history was recorded after a write since the checkpoint");
    stream_writer_destroy(&writer);
    fclose(sink);
    disk_replication_primary_destroy(&replication);
    test_machine_destroy(machine);
}

int main(void)
{
    if (!mkdtemp(directory)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(image, sizeof image, "%s/disk.img", directory);
    test_secondary_records();
    test_secondary_failover_tracks();
    test_primary_records();
    char command[300];
    snprintf(command, sizeof command, "rm -rf %s", directory);
    if (system(command) != 0)
        fprintf(stderr, "cannot remove %s\n", directory);
    return test_check_finish("disk_replication_history_test");
}
