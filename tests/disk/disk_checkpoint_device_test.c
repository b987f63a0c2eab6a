/* The disks' checkpoint devices end to end without a network: a
 * primary_disk and a secondary_disk over two images that start identical,
 * the primary device's save into a stream over a file, the stream
 * received by a machine with two disks, the secondary device's load. The
 * secondary's base must equal the primary's image after each checkpoint,
 * whatever the SVM wrote in between; a checkpoint cut off before its
 * CHECKPOINT_END changes nothing; another disk's records are skipped; a
 * refused write aborts; failover folds the SVM's writes; a save whose
 * base read fails names the image and keeps the epoch. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block_file.h"
#include "disk_checkpoint_device.h"
#include "machine.h"
#include "stream.h"

#include "memory_block_backend.h"
#include "test_check.h"

#define IMAGE_SIZE (1024u * 1024u)
#define SECTOR 512u
#define RAM_SIZE (2u << 20)
#define DISK_INDEX 1u /* the machine's second disk, so disk 0's records must be skipped */

static void die(const char *what, const struct error *err)
{
    fprintf(stderr, "FAIL: %s: %s\n", what, err ? err->message : strerror(errno));
    exit(1);
}

static uint64_t random_state = 0x243f6a8885a308d3ull;
static uint64_t next_random(void)
{
    random_state ^= random_state << 13;
    random_state ^= random_state >> 7;
    random_state ^= random_state << 17;
    return random_state;
}

static void fill_random(uint8_t *data, size_t length)
{
    for (size_t i = 0; i < length; i++)
        data[i] = (uint8_t)next_random();
}

static int image_create(const char *name, const uint8_t *contents, char *path, size_t path_size)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || pwrite(fd, contents, IMAGE_SIZE, 0) != (ssize_t)IMAGE_SIZE)
        die("image", NULL);
    snprintf(path, path_size, "/proc/self/fd/%d", fd);
    return fd;
}

static void image_read(int fd, uint8_t *data)
{
    if (pread(fd, data, IMAGE_SIZE, 0) != (ssize_t)IMAGE_SIZE)
        die("reading an image", NULL);
}

/* The receiving machine: two disks (over scratch images nobody checks),
 * so that DISK_WRITE records for disks 0 and 1 are both valid. */
static struct machine *machine_with_two_disks(int scratch_fds[2])
{
    struct machine_config config;
    machine_config_defaults(&config);
    config.ram_size = RAM_SIZE;
    config.deterministic_time = true;
    config.console_output_fd = -1;
    config.console_input_fd = -1;
    for (unsigned i = 0; i < 2; i++) {
        scratch_fds[i] = memfd_create("scratch-disk", MFD_CLOEXEC);
        if (scratch_fds[i] < 0 || ftruncate(scratch_fds[i], IMAGE_SIZE) < 0)
            die("scratch disk", NULL);
        snprintf(config.disks[i].path, sizeof config.disks[i].path, "/proc/self/fd/%d", scratch_fds[i]);
    }
    config.disk_count = 2;
    struct error err;
    struct machine *machine = machine_create(&config, &err);
    if (!machine)
        die("machine_create", &err);
    return machine;
}

struct rig {
    int primary_image_fd, secondary_image_fd, scratch_fds[2];
    struct primary_disk *primary;
    struct secondary_disk *secondary;
    struct primary_disk_device primary_device;
    struct secondary_disk_device secondary_device;
    struct machine *machine;
    int stream_fd; /* the writer's end */
    struct stream_writer writer;
    struct stream_reader reader;
};

static void rig_create(struct rig *rig)
{
    static uint8_t initial[IMAGE_SIZE];
    fill_random(initial, sizeof initial);
    char path[64];
    struct error err;
    rig->primary_image_fd = image_create("primary-image", initial, path, sizeof path);
    struct block_backend *base = block_file_open(path, false, &err);
    if (!base || !(rig->primary = primary_disk_create(base, &(struct primary_disk_options){ 0 }, &err)))
        die("primary disk", &err);
    rig->secondary_image_fd = image_create("secondary-image", initial, path, sizeof path);
    base = block_file_open(path, false, &err);
    if (!base || !(rig->secondary = secondary_disk_create(base, &(struct secondary_disk_options){ 0 }, &err)))
        die("secondary disk", &err);
    primary_disk_device_init(&rig->primary_device, rig->primary, DISK_INDEX);
    secondary_disk_device_init(&rig->secondary_device, rig->secondary, DISK_INDEX);
    rig->machine = machine_with_two_disks(rig->scratch_fds);

    /* The stream goes through a file: the writer appends, the reader (its
     * own open file description, so its own offset) follows. */
    rig->stream_fd = memfd_create("stream", MFD_CLOEXEC);
    snprintf(path, sizeof path, "/proc/self/fd/%d", rig->stream_fd);
    int read_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (rig->stream_fd < 0 || read_fd < 0 || stream_writer_init(&rig->writer, rig->stream_fd, &err) < 0 ||
        stream_reader_init(&rig->reader, read_fd, &err) < 0)
        die("stream", &err);
    struct stream_header header = { STREAM_VERSION, RAM_SIZE, machine_configuration_hash(rig->machine) };
    if (stream_write_header(&rig->writer, &header, &err) < 0 || stream_flush(&rig->writer, &err) < 0 ||
        stream_read_header(&rig->reader, &header, &err) < 0)
        die("stream header", &err);
}

static void rig_destroy(struct rig *rig)
{
    int read_fd = rig->reader.fd;
    stream_reader_destroy(&rig->reader);
    stream_writer_destroy(&rig->writer);
    close(read_fd);
    close(rig->stream_fd);
    block_backend_destroy(primary_disk_backend(rig->primary));
    block_backend_destroy(secondary_disk_backend(rig->secondary));
    machine_destroy(rig->machine);
    close(rig->primary_image_fd);
    close(rig->secondary_image_fd);
    close(rig->scratch_fds[0]);
    close(rig->scratch_fds[1]);
}

/* The PVM writes `count` random runs of sectors; the SVM writes as many of
 * its own (they must never reach the secondary's base at a commit). */
static void guests_write(struct rig *rig, unsigned count)
{
    static uint8_t data[16 * SECTOR];
    for (unsigned i = 0; i < count; i++) {
        size_t sectors = 1 + next_random() % 16;
        uint64_t offset = (next_random() % (IMAGE_SIZE / SECTOR - sectors)) * SECTOR;
        fill_random(data, sectors * SECTOR);
        if (block_backend_write(primary_disk_backend(rig->primary), offset, data, sectors * SECTOR) < 0)
            die("PVM write", NULL);
        offset = (next_random() % (IMAGE_SIZE / SECTOR - sectors)) * SECTOR;
        fill_random(data, sectors * SECTOR);
        if (block_backend_write(secondary_disk_backend(rig->secondary), offset, data, sectors * SECTOR) < 0)
            die("SVM write", NULL);
    }
}

/* One checkpoint: another disk's record (must be skipped), the primary
 * device's save, CHECKPOINT_END, then the secondary receives and loads. */
static int checkpoint(struct rig *rig, struct error *err)
{
    static uint8_t other_disk[SECTOR];
    memset(other_disk, 0xee, sizeof other_disk);
    uint32_t terminator;
    if (stream_write_disk_write(&rig->writer, 0, 0, other_disk, sizeof other_disk, err) < 0 ||
        primary_disk_checkpoint_device.save(&rig->primary_device, &rig->writer, err) < 0 ||
        stream_write_checkpoint_end(&rig->writer, err) < 0 || stream_flush(&rig->writer, err) < 0 ||
        stream_receive(&rig->reader, rig->machine, &terminator, err) < 0)
        return -1;
    return secondary_disk_checkpoint_device.load(&rig->secondary_device, &rig->reader, err);
}

static bool images_equal(struct rig *rig)
{
    static uint8_t primary[IMAGE_SIZE], secondary[IMAGE_SIZE];
    image_read(rig->primary_image_fd, primary);
    image_read(rig->secondary_image_fd, secondary);
    return memcmp(primary, secondary, IMAGE_SIZE) == 0;
}

static void test_checkpoints(void)
{
    struct rig rig;
    rig_create(&rig);
    struct error err;
    for (unsigned epoch = 1; epoch <= 2; epoch++) {
        guests_write(&rig, 40);
        struct primary_disk_stats stats;
        primary_disk_get_stats(rig.primary, &stats);
        uint64_t epoch_blocks = stats.epoch_blocks, epoch_bytes = stats.epoch_bytes;
        CHECK(!images_equal(&rig), "epoch %u: the PVM's writes did not change its image", epoch);
        CHECK(checkpoint(&rig, &err) == 0, "epoch %u: checkpoint: %s", epoch, err.message);
        CHECK(images_equal(&rig), "epoch %u: the secondary's base differs from the primary's image", epoch);

        struct primary_disk_checkpoint_report sent;
        primary_disk_device_last_report(&rig.primary_device, &sent);
        CHECK(sent.blocks == epoch_blocks && sent.bytes == epoch_bytes && sent.records > 0,
              "epoch %u: report %llu blocks %llu bytes, the epoch had %llu blocks %llu bytes", epoch,
              (unsigned long long)sent.blocks, (unsigned long long)sent.bytes, (unsigned long long)epoch_blocks,
              (unsigned long long)epoch_bytes);
        primary_disk_get_stats(rig.primary, &stats);
        CHECK(stats.epoch_blocks == 0 && stats.epochs_cleared == epoch, "epoch %u: the epoch was not cleared", epoch);
        struct secondary_disk_fold_report folded;
        secondary_disk_device_last_commit(&rig.secondary_device, &folded);
        CHECK(folded.blocks == epoch_blocks && rig.secondary_device.last_records == sent.records,
              "epoch %u: folded %llu blocks from %llu records, sent %llu blocks in %llu records", epoch,
              (unsigned long long)folded.blocks, (unsigned long long)rig.secondary_device.last_records,
              (unsigned long long)epoch_blocks, (unsigned long long)sent.records);
        struct secondary_disk_stats secondary_stats;
        secondary_disk_get_stats(rig.secondary, &secondary_stats);
        CHECK(secondary_stats.overlay_blocks == 0 && secondary_stats.buffered_blocks == 0,
              "epoch %u: the commit left the overlay or the buffer", epoch);
    }

    /* A checkpoint cut off before its CHECKPOINT_END: the receive fails
     * (the loop would stop; load is never called), the base stays the
     * last checkpoint's. */
    static uint8_t before[IMAGE_SIZE], after[IMAGE_SIZE];
    image_read(rig.secondary_image_fd, before);
    guests_write(&rig, 10);
    uint32_t terminator;
    CHECK(primary_disk_checkpoint_device.save(&rig.primary_device, &rig.writer, &err) == 0 &&
              stream_flush(&rig.writer, &err) == 0,
          "cut-off checkpoint: save: %s", err.message);
    CHECK(stream_receive(&rig.reader, rig.machine, &terminator, &err) < 0, "a checkpoint without its end applied");
    image_read(rig.secondary_image_fd, after);
    CHECK(memcmp(before, after, IMAGE_SIZE) == 0, "a cut-off checkpoint changed the secondary's base");
    struct secondary_disk_stats secondary_stats;
    secondary_disk_get_stats(rig.secondary, &secondary_stats);
    CHECK(secondary_stats.buffered_blocks == 0 && secondary_stats.checkpoints_committed == 2,
          "a cut-off checkpoint reached the secondary's disk");

    /* Failover: the SVM's view (its writes over the last checkpoint's
     * base) becomes the base. */
    static uint8_t svm_view[IMAGE_SIZE];
    CHECK(secondary_stats.overlay_blocks > 0, "the SVM's writes are not in the overlay");
    if (block_backend_read(secondary_disk_backend(rig.secondary), 0, svm_view, IMAGE_SIZE) < 0)
        die("SVM read", NULL);
    CHECK(memcmp(svm_view, before, IMAGE_SIZE) != 0, "the SVM's view equals the base before failover");
    CHECK(secondary_disk_checkpoint_device.failover(&rig.secondary_device, &err) == 0, "failover: %s", err.message);
    image_read(rig.secondary_image_fd, after);
    CHECK(memcmp(svm_view, after, IMAGE_SIZE) == 0, "after failover the base is not the SVM's view");
    struct secondary_disk_fold_report folded;
    secondary_disk_device_failover_report(&rig.secondary_device, &folded);
    CHECK(folded.blocks == secondary_stats.overlay_blocks, "failover folded %llu blocks, the overlay had %llu",
          (unsigned long long)folded.blocks, (unsigned long long)secondary_stats.overlay_blocks);
    rig_destroy(&rig);
}

/* A record the secondary's buffer refuses (past the end of its image):
 * load aborts the epoch, fails naming the disk, and commits nothing. */
static void test_refused_write(void)
{
    struct rig rig;
    rig_create(&rig);
    struct error err;
    static uint8_t before[IMAGE_SIZE], after[IMAGE_SIZE], data[SECTOR];
    image_read(rig.secondary_image_fd, before);
    guests_write(&rig, 5);
    fill_random(data, sizeof data);
    uint32_t terminator;
    CHECK(primary_disk_checkpoint_device.save(&rig.primary_device, &rig.writer, &err) == 0 &&
              stream_write_disk_write(&rig.writer, DISK_INDEX, IMAGE_SIZE, data, sizeof data, &err) == 0 &&
              stream_write_checkpoint_end(&rig.writer, &err) == 0 && stream_flush(&rig.writer, &err) == 0 &&
              stream_receive(&rig.reader, rig.machine, &terminator, &err) == 0,
          "checkpoint with a write past the end: %s", err.message);
    int result = secondary_disk_checkpoint_device.load(&rig.secondary_device, &rig.reader, &err);
    CHECK(result < 0 && strstr(err.message, "disk 1 (/proc/self/fd/") != NULL, "a write past the image's end: %s",
          result < 0 ? err.message : "loaded");
    image_read(rig.secondary_image_fd, after);
    CHECK(memcmp(before, after, IMAGE_SIZE) == 0, "a refused checkpoint changed the secondary's base");
    struct secondary_disk_stats stats;
    secondary_disk_get_stats(rig.secondary, &stats);
    CHECK(stats.buffered_blocks == 0 && stats.checkpoints_aborted == 1 && stats.checkpoints_committed == 0,
          "a refused checkpoint: %llu blocks buffered, %llu aborted, %llu committed",
          (unsigned long long)stats.buffered_blocks, (unsigned long long)stats.checkpoints_aborted,
          (unsigned long long)stats.checkpoints_committed);
    rig_destroy(&rig);
}

/* A save whose base read fails: -1, the error names the disk and its
 * image, and the epoch is kept (nothing cleared, nothing counted). */
static void test_save_failure(void)
{
    /* With the epoch's memory bound at one byte every block is only marked
     * and read back from the base at save. */
    struct memory_backend *failing = memory_backend_create(IMAGE_SIZE);
    failing->backend.name = "failing.img";
    struct error err;
    struct primary_disk *disk = primary_disk_create(
        &failing->backend, &(struct primary_disk_options){ .epoch_memory_limit_bytes = 1 }, &err);
    if (!disk)
        die("primary disk", &err);
    struct primary_disk_device device;
    primary_disk_device_init(&device, disk, DISK_INDEX);
    static uint8_t data[2 * SECTOR];
    fill_random(data, sizeof data);
    if (block_backend_write(primary_disk_backend(disk), 8 * SECTOR, data, sizeof data) < 0)
        die("PVM write", NULL);
    struct stream_writer writer;
    if (stream_writer_init(&writer, -1, &err) < 0)
        die("writer", &err);
    failing->fail_read = true;
    int result = primary_disk_checkpoint_device.save(&device, &writer, &err);
    CHECK(result < 0 && strncmp(err.message, "disk 1 (failing.img): ", 22) == 0, "a failed base read at save: %s",
          result < 0 ? err.message : "saved");
    struct primary_disk_stats stats;
    primary_disk_get_stats(disk, &stats);
    CHECK(stats.epoch_blocks == 1 && stats.epochs_cleared == 0 && device.checkpoints_saved == 0,
          "a failed save cleared the epoch (%llu blocks left, %llu cleared)", (unsigned long long)stats.epoch_blocks,
          (unsigned long long)stats.epochs_cleared);
    failing->fail_read = false;
    CHECK(primary_disk_checkpoint_device.save(&device, &writer, &err) == 0, "save after the failure: %s", err.message);
    struct primary_disk_checkpoint_report sent;
    primary_disk_device_last_report(&device, &sent);
    CHECK(sent.blocks == 1 && sent.bytes == 4096 && sent.records == 1,
          "an overflow block sent as %llu blocks, %llu bytes, %llu records", (unsigned long long)sent.blocks,
          (unsigned long long)sent.bytes, (unsigned long long)sent.records);
    stream_writer_destroy(&writer);
    block_backend_destroy(primary_disk_backend(disk));
}

int main(void)
{
    test_save_failure();
    test_checkpoints();
    test_refused_write();
    return test_check_finish("disk_checkpoint_device_test");
}
