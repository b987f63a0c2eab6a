/* The disks' initial sync (disk/disk_sync.h) as the companion of a live
 * migration between two machines over a socketpair, with real image
 * files: a different image ends up byte-identical; an identical one costs
 * no data on the wire; an empty sparse one gets only the chunks holding
 * data (its holes stay holes); blocks written during the sync's rounds and
 * at the stop-and-copy arrive (the "guest" here is the test, writing
 * through the primary disk from the migrating thread's hooks, as the
 * machine's thread would between them); sizes that differ, read-only
 * disks whose images differ, and a companion on one side only are refused
 * with errors that say so. With image histories (disk_history.h): a
 * destination whose image holds the history the source tracked its writes
 * from gets only those blocks (no hashes, nothing compared), one with
 * another history gets the hash compare; either way the images end
 * byte-identical, the destination's history is removed, and the tracker
 * stops. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk_history.h"
#include "disk_sync.h"
#include "disk_tracker.h"
#include "live_migration.h"
#include "stream.h"

#include "test_check.h"
#include "test_image_file.h"
#include "test_machine.h"
#include "virtio_blk.h"

enum { IMAGE = 4 << 20, CHUNK = DISK_SYNC_CHUNK_SIZE };

static char directory[] = "/tmp/colo-disk-sync-test.XXXXXX";

static char *path_of(const char *name)
{
    static char paths[4][256];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", directory, name);
    return path;
}

/* The source's image: a pattern in chunks 0, 5 and the last, zeros (a
 * hole) elsewhere. */
static void make_source(const char *path, uint64_t size)
{
    uint8_t *data = calloc(1, size);
    for (uint64_t i = 0; i < CHUNK; i++) {
        data[i] = (uint8_t)(i * 7 + 1);
        data[5 * CHUNK + i] = (uint8_t)(i * 13 + 3);
        data[size - CHUNK + i] = (uint8_t)(i + 5);
    }
    test_image_file_create(path, data, size);
    free(data);
    /* Punch the zeros out again: test_image_file_create writes them. */
    int fd = open(path, O_RDWR);
    for (uint64_t chunk = 1; chunk < size / CHUNK - 1; chunk++)
        if (chunk != 5)
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(chunk * CHUNK), CHUNK);
    close(fd);
}

static void make_random(const char *path, uint64_t size)
{
    uint8_t *data = malloc(size);
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (uint64_t i = 0; i < size; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        data[i] = (uint8_t)(state >> 56);
    }
    test_image_file_create(path, data, size);
    free(data);
}

static void make_sparse(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        printf("FAIL: cannot make %s\n", path);
        exit(1);
    }
    close(fd);
}

static void copy_file(const char *from, const char *to)
{
    char command[600];
    snprintf(command, sizeof command, "cp --sparse=always %s %s", from, to);
    if (system(command) != 0) {
        printf("FAIL: %s\n", command);
        exit(1);
    }
}

static bool files_equal(const char *a, const char *b)
{
    char command[600];
    snprintf(command, sizeof command, "cmp -s %s %s", a, b);
    return system(command) == 0;
}

static uint64_t allocated_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

/* The "guest": writes through the primary disk while the sync runs. */
struct guest_writes {
    struct disk_sync_source *sync;
    const struct migration_companion *inner;
    unsigned rounds_seen;
    uint8_t byte;
};

static void guest_write(struct guest_writes *guest, uint64_t offset, size_t length)
{
    uint8_t data[2 * 4096];
    memset(data, ++guest->byte, sizeof data);
    struct block_backend *backend = primary_disk_backend(disk_sync_source_primary_disk(guest->sync, 0));
    CHECK(block_backend_write(backend, offset, data, length) == 0, "the guest's write at %llu failed",
          (unsigned long long)offset);
}

static int guest_before_copy(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct guest_writes *guest = opaque;
    guest_write(guest, 3 * CHUNK + 4096, 4096); /* before the compare: the pass or a round takes it */
    return guest->inner->before_copy(guest->inner->opaque, writer, err);
}

static int guest_round(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct guest_writes *guest = opaque;
    guest->rounds_seen++;
    guest_write(guest, 7 * CHUNK + 512 * guest->rounds_seen, 1024); /* sectors inside a block */
    return guest->inner->round(guest->inner->opaque, writer, err);
}

static int guest_stop_and_copy(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct guest_writes *guest = opaque;
    guest_write(guest, IMAGE - 2 * 4096, 2 * 4096); /* the last two blocks, "just before the pause" */
    return guest->inner->stop_and_copy(guest->inner->opaque, writer, err);
}

struct sender {
    struct machine *machine;
    struct disk_tracker *tracker; /* over the source's disk, or NULL */
    bool tracker_still_tracks;
    uint8_t protection[DISK_HISTORY_PROTECTION_SIZE];
    int fd;
    bool copy_disks, guest;
    struct disk_sync_source sync;
    struct guest_writes writes;
    struct migration_companion companion;
    int result;
    struct error err;
    struct disk_sync_progress progress;
    unsigned machine_accepted; /* calls of migration_options.machine_accepted */
};

static void count_machine_accepted(void *opaque)
{
    ((struct sender *)opaque)->machine_accepted++;
}

static void *send_thread(void *opaque)
{
    struct sender *sender = opaque;
    struct migration_options options;
    migration_options_defaults(&options);
    options.machine_accepted = count_machine_accepted;
    options.progress_opaque = sender;
    if (sender->copy_disks) {
        if (disk_sync_source_init(&sender->sync, sender->machine, NULL, &sender->err) < 0) {
            sender->result = -1;
            return NULL;
        }
        options.companion = disk_sync_source_companion(&sender->sync);
        if (sender->guest) {
            /* Rounds that never converge, so the round hook runs twice. */
            options.max_downtime_microseconds = 1;
            options.max_rounds = 2;
            sender->writes = (struct guest_writes){ .sync = &sender->sync, .inner = options.companion };
            sender->companion = (struct migration_companion){
                .opaque = &sender->writes,
                .before_copy = guest_before_copy,
                .round = guest_round,
                .stop_and_copy = guest_stop_and_copy,
            };
            options.companion = &sender->companion;
        }
    }
    struct migration_result result;
    sender->result = migration_send(sender->machine, sender->fd, &options, &result, &sender->err);
    if (sender->copy_disks) {
        disk_sync_source_get_progress(&sender->sync, &sender->progress);
        memcpy(sender->protection, sender->sync.protection, sizeof sender->protection);
        struct disk_history ignored;
        sender->tracker_still_tracks = sender->tracker && disk_tracker_history(sender->tracker, &ignored);
        disk_sync_source_destroy(&sender->sync);
    }
    shutdown(sender->fd, SHUT_RDWR);
    return NULL;
}

struct outcome {
    int sent, received;
    char send_error[512], receive_error[512];
    struct disk_sync_progress progress;
    unsigned rounds_seen;
    unsigned machine_accepted;
    /* The destination's side of the history exchange. */
    enum disk_sync_mode destination_mode;
    uint64_t bytes_hashed;
    bool protection_matches; /* the destination learned the source's protection id */
    bool tracker_still_tracks;
};

/* The blocks the "guest" wrote since the tracked history: 3 blocks, two
 * of them adjacent, one inside a run of zeros (a hole in the source). */
static const uint64_t tracked_offsets[] = { 8192, 12288, 40 * CHUNK + 4096 };
#define TRACKED_BLOCKS 3u

/* Puts a tracker with `history` over the source machine's disk and writes
 * the tracked blocks through it. */
static struct disk_tracker *track_source(struct machine *machine, const struct disk_history *history)
{
    struct virtio_blk *device = machine_disk(machine, 0);
    struct error err;
    struct disk_tracker *tracker = disk_tracker_create(virtio_blk_backend(device), history, &err);
    CHECK(tracker != NULL, "tracker: %s", err.message);
    if (!tracker)
        exit(1);
    virtio_blk_replace_backend(device, disk_tracker_backend(tracker));
    uint8_t block[DISK_TRACKER_BLOCK_SIZE];
    for (unsigned i = 0; i < TRACKED_BLOCKS; i++) {
        memset(block, 0xa0 + (int)i, sizeof block);
        CHECK(block_backend_write(disk_tracker_backend(tracker), tracked_offsets[i], block, sizeof block) == 0,
              "tracker: the write at %llu failed", (unsigned long long)tracked_offsets[i]);
    }
    return tracker;
}

/* One migration from an image to another; the images are closed after. */
static struct outcome migrate_tracked(const char *source, const char *destination, bool read_only, bool source_copies,
                                      bool destination_copies, bool guest, const struct disk_history *tracked)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
        perror("socketpair");
        exit(1);
    }
    struct test_machine_options source_options = { .disk_image = source, .disk_read_only = read_only };
    struct test_machine_options destination_options = { .disk_image = destination, .disk_read_only = read_only };
    struct sender sender = {
        .machine = test_machine_create(&source_options), .fd = fds[0], .copy_disks = source_copies, .guest = guest
    };
    struct machine *target = test_machine_create(&destination_options);
    if (tracked)
        sender.tracker = track_source(sender.machine, tracked);
    pthread_t thread;
    pthread_create(&thread, NULL, send_thread, &sender);

    struct outcome outcome = { 0 };
    struct disk_sync_destination sync;
    disk_sync_destination_init(&sync, target);
    disk_sync_destination_read_histories(&sync, NULL, NULL);
    struct stream_reader reader;
    struct error err = { 0 };
    outcome.received = stream_reader_init(&reader, fds[1], &err);
    if (outcome.received == 0)
        outcome.received = migration_receive_with_companion(
            target, &reader, destination_copies ? disk_sync_destination_companion(&sync) : NULL, &err);
    if (outcome.received < 0)
        snprintf(outcome.receive_error, sizeof outcome.receive_error, "%s", err.message);
    stream_reader_destroy(&reader);
    shutdown(fds[1], SHUT_RDWR);
    pthread_join(thread, NULL);
    outcome.sent = sender.result;
    if (sender.result < 0)
        snprintf(outcome.send_error, sizeof outcome.send_error, "%s", sender.err.message);
    outcome.progress = sender.progress;
    outcome.rounds_seen = sender.writes.rounds_seen;
    outcome.machine_accepted = sender.machine_accepted;
    outcome.destination_mode = sync.modes[0];
    outcome.bytes_hashed = sync.bytes_hashed;
    outcome.protection_matches = sync.protection_known &&
                                 memcmp(sync.protection, sender.protection, sizeof sender.protection) == 0;
    outcome.tracker_still_tracks = sender.tracker_still_tracks;
    test_machine_destroy(sender.machine);
    test_machine_destroy(target);
    close(fds[0]);
    close(fds[1]);
    return outcome;
}

static struct outcome migrate(const char *source, const char *destination, bool read_only, bool source_copies,
                              bool destination_copies, bool guest)
{
    return migrate_tracked(source, destination, read_only, source_copies, destination_copies, guest, NULL);
}

static bool history_file_exists(const char *image)
{
    char path[600];
    snprintf(path, sizeof path, "%s%s", image, DISK_HISTORY_SUFFIX);
    return access(path, F_OK) == 0;
}

/* The destination's image is the state the source tracked from: only the
 * tracked blocks cross, nothing is hashed or compared. */
static void test_incremental(void)
{
    make_source(path_of("a.img"), IMAGE);
    copy_file(path_of("a.img"), path_of("b.img"));
    struct disk_history history = { .protection = { 1, 2, 3 }, .checkpoint = 42, .disk_size = IMAGE };
    struct error err;
    CHECK(disk_history_write(path_of("b.img"), &history, &err) == 0, "incremental: %s", err.message);
    struct outcome outcome = migrate_tracked(path_of("a.img"), path_of("b.img"), false, true, true, false, &history);
    CHECK(outcome.sent == 0 && outcome.received == 0, "incremental: %s / %s", outcome.send_error,
          outcome.receive_error);
    CHECK(outcome.progress.modes[0] == DISK_SYNC_MODE_INCREMENTAL && outcome.progress.incremental_disks == 1 &&
              outcome.destination_mode == DISK_SYNC_MODE_INCREMENTAL,
          "incremental: the source chose %s, the destination heard %s", disk_sync_mode_name(outcome.progress.modes[0]),
          disk_sync_mode_name(outcome.destination_mode));
    CHECK(outcome.progress.tracked_blocks_sent == TRACKED_BLOCKS &&
              outcome.progress.bytes_sent == TRACKED_BLOCKS * DISK_TRACKER_BLOCK_SIZE,
          "incremental: %llu tracked blocks, %llu bytes sent, expected %u blocks",
          (unsigned long long)outcome.progress.tracked_blocks_sent, (unsigned long long)outcome.progress.bytes_sent,
          TRACKED_BLOCKS);
    CHECK(outcome.progress.bytes_compared == 0 && outcome.bytes_hashed == 0,
          "incremental: %llu bytes compared, %llu hashed: a whole image was read",
          (unsigned long long)outcome.progress.bytes_compared, (unsigned long long)outcome.bytes_hashed);
    CHECK(outcome.progress.bytes_planned == TRACKED_BLOCKS * DISK_TRACKER_BLOCK_SIZE &&
              outcome.progress.bytes_done == outcome.progress.bytes_planned,
          "incremental: %llu of %llu planned bytes done", (unsigned long long)outcome.progress.bytes_done,
          (unsigned long long)outcome.progress.bytes_planned);
    CHECK(files_equal(path_of("a.img"), path_of("b.img")), "incremental: the images differ after the sync");
    CHECK(!history_file_exists(path_of("b.img")), "incremental: the destination's history was not removed");
    CHECK(outcome.protection_matches, "incremental: the destination did not learn the protection id");
    CHECK(!outcome.tracker_still_tracks, "incremental: the tracker still tracks after the sync used it");
}

/* Another history there (checkpoint 41, not 42): the hash compare, and
 * still equal images. */
static void test_history_mismatch(void)
{
    make_source(path_of("a.img"), IMAGE);
    copy_file(path_of("a.img"), path_of("b.img"));
    struct disk_history tracked = { .protection = { 1, 2, 3 }, .checkpoint = 42, .disk_size = IMAGE };
    struct disk_history theirs = tracked;
    theirs.checkpoint = 41;
    struct error err;
    CHECK(disk_history_write(path_of("b.img"), &theirs, &err) == 0, "history mismatch: %s", err.message);
    struct outcome outcome = migrate_tracked(path_of("a.img"), path_of("b.img"), false, true, true, false, &tracked);
    CHECK(outcome.sent == 0 && outcome.received == 0, "history mismatch: %s / %s", outcome.send_error,
          outcome.receive_error);
    CHECK(outcome.progress.modes[0] == DISK_SYNC_MODE_HASHES && outcome.destination_mode == DISK_SYNC_MODE_HASHES,
          "history mismatch: the source chose %s", disk_sync_mode_name(outcome.progress.modes[0]));
    CHECK(outcome.progress.bytes_compared == IMAGE && outcome.bytes_hashed == IMAGE &&
              outcome.progress.chunks_differing == 2,
          "history mismatch: %llu compared, %llu hashed, %llu chunks differing (expected the whole image, 2)",
          (unsigned long long)outcome.progress.bytes_compared, (unsigned long long)outcome.bytes_hashed,
          (unsigned long long)outcome.progress.chunks_differing);
    CHECK(files_equal(path_of("a.img"), path_of("b.img")), "history mismatch: the images differ after the sync");
    CHECK(!history_file_exists(path_of("b.img")), "history mismatch: the destination's history was not removed");
    CHECK(!outcome.tracker_still_tracks, "history mismatch: the tracker still tracks after the sync");
}

/* A history but nothing tracked at the source (a plain VM): the compare. */
static void test_history_untracked_source(void)
{
    make_source(path_of("a.img"), IMAGE);
    make_random(path_of("b.img"), IMAGE);
    struct disk_history history = { .protection = { 9 }, .checkpoint = 1, .disk_size = IMAGE };
    struct error err;
    CHECK(disk_history_write(path_of("b.img"), &history, &err) == 0, "untracked source: %s", err.message);
    struct outcome outcome = migrate(path_of("a.img"), path_of("b.img"), false, true, true, false);
    CHECK(outcome.sent == 0 && outcome.received == 0 && outcome.progress.modes[0] == DISK_SYNC_MODE_HASHES,
          "untracked source: %s / %s, mode %s", outcome.send_error, outcome.receive_error,
          disk_sync_mode_name(outcome.progress.modes[0]));
    CHECK(files_equal(path_of("a.img"), path_of("b.img")), "untracked source: the images differ after the sync");
}

static void test_different_image(void)
{
    make_source(path_of("a.img"), IMAGE);
    make_random(path_of("b.img"), IMAGE);
    struct outcome outcome = migrate(path_of("a.img"), path_of("b.img"), false, true, true, false);
    CHECK(outcome.sent == 0 && outcome.received == 0, "different image: %s / %s", outcome.send_error,
          outcome.receive_error);
    CHECK(files_equal(path_of("a.img"), path_of("b.img")), "different image: the images differ after the sync");
    CHECK(outcome.machine_accepted == 1, "different image: the machine accepted %u times, expected once",
          outcome.machine_accepted);
    CHECK(outcome.progress.chunks_differing == IMAGE / CHUNK && outcome.progress.bytes_sent >= IMAGE &&
              outcome.progress.done,
          "different image: %llu chunks differing, %llu bytes sent",
          (unsigned long long)outcome.progress.chunks_differing, (unsigned long long)outcome.progress.bytes_sent);
}

static void test_identical_image(void)
{
    make_source(path_of("a.img"), IMAGE);
    copy_file(path_of("a.img"), path_of("b.img"));
    struct outcome outcome = migrate(path_of("a.img"), path_of("b.img"), false, true, true, false);
    CHECK(outcome.sent == 0 && outcome.received == 0, "identical image: %s / %s", outcome.send_error,
          outcome.receive_error);
    CHECK(outcome.progress.chunks_differing == 0 && outcome.progress.bytes_sent == 0 &&
              outcome.progress.bytes_compared == IMAGE,
          "identical image: %llu chunks differing, %llu bytes sent, %llu compared",
          (unsigned long long)outcome.progress.chunks_differing, (unsigned long long)outcome.progress.bytes_sent,
          (unsigned long long)outcome.progress.bytes_compared);
    CHECK(files_equal(path_of("a.img"), path_of("b.img")), "identical image: changed");
}

static void test_sparse_image_keeps_holes(void)
{
    make_source(path_of("a.img"), IMAGE);
    make_sparse(path_of("b.img"), IMAGE);
    struct outcome outcome = migrate(path_of("a.img"), path_of("b.img"), false, true, true, false);
    CHECK(outcome.sent == 0 && outcome.received == 0, "sparse image: %s / %s", outcome.send_error,
          outcome.receive_error);
    CHECK(files_equal(path_of("a.img"), path_of("b.img")), "sparse image: the images differ after the sync");
    CHECK(outcome.progress.chunks_differing == 3, "sparse image: %llu chunks sent, expected the 3 with data",
          (unsigned long long)outcome.progress.chunks_differing);
    uint64_t allocated = allocated_bytes(path_of("b.img"));
    CHECK(allocated <= 3 * CHUNK + 64 * 1024, "sparse image: %llu bytes allocated, the holes were filled",
          (unsigned long long)allocated);
}

static void test_writes_during_the_sync(void)
{
    make_source(path_of("a.img"), IMAGE);
    make_random(path_of("b.img"), IMAGE);
    struct outcome outcome = migrate(path_of("a.img"), path_of("b.img"), false, true, true, true);
    CHECK(outcome.sent == 0 && outcome.received == 0, "writes during the sync: %s / %s", outcome.send_error,
          outcome.receive_error);
    CHECK(outcome.rounds_seen == 2, "writes during the sync: %u RAM rounds, expected 2", outcome.rounds_seen);
    CHECK(outcome.progress.final_blocks == 2, "writes during the sync: %llu blocks in the stop-and-copy, expected 2",
          (unsigned long long)outcome.progress.final_blocks);
    CHECK(files_equal(path_of("a.img"), path_of("b.img")),
          "writes during the sync: the images differ (a write in a round or the stop-and-copy was lost)");
}

static void test_sizes_differ(void)
{
    make_source(path_of("a.img"), IMAGE);
    make_sparse(path_of("b.img"), IMAGE / 2);
    struct outcome outcome = migrate(path_of("a.img"), path_of("b.img"), false, true, true, false);
    /* The destination compares the machines and names the sizes; the source
     * hears its words. */
    const char *sizes = "the machines differ: disk 0: the destination's image is 2097152 bytes, the source's 4194304";
    CHECK(outcome.sent < 0 && strstr(outcome.send_error, sizes), "sizes differ: the source says '%s'",
          outcome.send_error);
    CHECK(outcome.received < 0 && strstr(outcome.receive_error, sizes), "sizes differ: the destination says '%s'",
          outcome.receive_error);
    CHECK(outcome.machine_accepted == 0, "sizes differ: the source heard the machine accepted");
}

/* A read-only disk on both sides (a machine's configuration says which):
 * nothing writes it, but the images must still be the same. */
static void test_read_only_destination(void)
{
    make_source(path_of("a.img"), IMAGE);
    make_sparse(path_of("b.img"), IMAGE);
    struct outcome outcome = migrate(path_of("a.img"), path_of("b.img"), true, true, true, false);
    CHECK(outcome.received < 0 && strstr(outcome.receive_error, "is read-only here, but differs"),
          "read-only destination: '%s'", outcome.receive_error);
    CHECK(outcome.sent < 0, "read-only destination: the source succeeded");
    CHECK(allocated_bytes(path_of("b.img")) == 0, "read-only destination: its image was written");
}

static void test_one_side_only(void)
{
    make_source(path_of("a.img"), IMAGE);
    make_sparse(path_of("b.img"), IMAGE);
    struct outcome outcome = migrate(path_of("a.img"), path_of("b.img"), false, true, false, false);
    CHECK(outcome.sent < 0 && outcome.received < 0 &&
              strstr(outcome.receive_error, "this side must receive with --copy-disks"),
          "source only: '%s' / '%s'", outcome.send_error, outcome.receive_error);
    outcome = migrate(path_of("a.img"), path_of("b.img"), false, false, true, false);
    CHECK(outcome.received < 0 && strstr(outcome.receive_error, "migrate with --copy-disks"), "destination only: '%s'",
          outcome.receive_error);
    CHECK(allocated_bytes(path_of("b.img")) == 0, "one side only: the destination's image was written");
}

int main(void)
{
    if (!mkdtemp(directory)) {
        perror("mkdtemp");
        return 1;
    }
    test_different_image();
    test_identical_image();
    test_sparse_image_keeps_holes();
    test_writes_during_the_sync();
    test_sizes_differ();
    test_read_only_destination();
    test_one_side_only();
    test_incremental();
    test_history_mismatch();
    test_history_untracked_source();
    char command[300];
    snprintf(command, sizeof command, "rm -rf %s", directory);
    if (system(command) != 0)
        fprintf(stderr, "cannot remove %s\n", directory);
    return test_check_finish("disk_sync_test");
}
