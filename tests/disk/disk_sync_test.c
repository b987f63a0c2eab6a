/* The disks' initial sync (disk/disk_sync.h) as the companion of a live
 * migration between two machines over a socketpair, with real image
 * files: a different image ends up byte-identical; an identical one costs
 * no data on the wire; an empty sparse one gets only the chunks holding
 * data (its holes stay holes); blocks written during the sync's rounds and
 * at the stop-and-copy arrive (the "guest" here is the test, writing
 * through the primary disk from the migrating thread's hooks, as the
 * machine's thread would between them); sizes that differ, read-only
 * disks whose images differ, and a companion on one side only are refused
 * with errors that say so. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk_sync.h"
#include "live_migration.h"
#include "stream.h"

#include "test_check.h"
#include "test_image_file.h"
#include "test_machine.h"

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
};

/* One migration from an image to another; the images are closed after. */
static struct outcome migrate(const char *source, const char *destination, bool read_only, bool source_copies,
                              bool destination_copies, bool guest)
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
    pthread_t thread;
    pthread_create(&thread, NULL, send_thread, &sender);

    struct outcome outcome = { 0 };
    struct disk_sync_destination sync;
    disk_sync_destination_init(&sync, target);
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
    test_machine_destroy(sender.machine);
    test_machine_destroy(target);
    close(fds[0]);
    close(fds[1]);
    return outcome;
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
    char command[300];
    snprintf(command, sizeof command, "rm -rf %s", directory);
    if (system(command) != 0)
        fprintf(stderr, "cannot remove %s\n", directory);
    return test_check_finish("disk_sync_test");
}
