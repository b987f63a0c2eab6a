/* The disks' initial sync rate (disk/disk_sync.h): a live migration with
 * the sync as its companion, between two machines in this process over
 * TCP on 127.0.0.1, each with one image of BENCH_DISK_SYNC_MIB (default
 * 2048) MiB in DIRECTORY. Three cases, each run REPEATS times (default 3),
 * the median printed:
 *
 *   sparse       the source holds 64 MiB of data in 16 places, the rest a
 *                hole; the destination is an empty sparse file: the
 *                chunks with data go over, the holes stay holes
 *   full         the source is written whole (random bytes); the
 *                destination is an empty sparse file: all of it goes over
 *   provisioned  both are the same fully written image (a pre-provisioned
 *                copy): both sides read and hash it, nothing goes over
 *
 * "rate" is image bytes per second of the migration's whole time (the
 * destination's hashing included), "wire" the DISK_WRITE bytes sent. The
 * machines have 16 MiB of RAM and do not run, so the time is the disks'.
 * The page cache is not dropped between runs: the images are read from
 * memory, as a host that has just written them would; see
 * docs/benchmarks.md.
 *
 * Usage: disk_sync_bench DIRECTORY [REPEATS] */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "disk_sync.h"
#include "live_migration.h"
#include "machine.h"
#include "socket.h"
#include "stream.h"

struct sender {
    struct machine *machine;
    int fd;
    struct disk_sync_progress progress;
    int result;
    struct error err;
};

static struct machine *machine_with_disk(const char *path)
{
    struct machine_config config;
    machine_config_defaults(&config);
    config.ram_size = 16u << 20;
    config.disk_count = 1;
    snprintf(config.disks[0].path, sizeof config.disks[0].path, "%s", path);
    struct error err;
    struct machine *machine = machine_create(&config, &err);
    if (!machine) {
        fprintf(stderr, "disk_sync_bench: %s\n", err.message);
        exit(1);
    }
    return machine;
}

static void *send_thread(void *opaque)
{
    struct sender *sender = opaque;
    struct disk_sync_source sync;
    if (disk_sync_source_init(&sync, sender->machine, NULL, &sender->err) < 0) {
        sender->result = -1;
        return NULL;
    }
    struct migration_options options;
    migration_options_defaults(&options);
    options.companion = disk_sync_source_companion(&sync);
    struct migration_result result;
    sender->result = migration_send(sender->machine, sender->fd, &options, &result, &sender->err);
    disk_sync_source_get_progress(&sync, &sender->progress);
    disk_sync_source_destroy(&sync);
    return NULL;
}

/* One migration; returns its seconds, the bytes sent in *wire. */
static double sync_once(const char *source, const char *destination, uint64_t *wire)
{
    struct error err;
    int listener = socket_listen("127.0.0.1:0", &err);
    if (listener < 0) {
        fprintf(stderr, "disk_sync_bench: %s\n", err.message);
        exit(1);
    }
    struct sockaddr_in bound;
    socklen_t bound_length = sizeof bound;
    if (getsockname(listener, (struct sockaddr *)&bound, &bound_length) < 0) {
        perror("getsockname");
        exit(1);
    }
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%u", ntohs(bound.sin_port));
    struct sender sender = { .machine = machine_with_disk(source) };
    struct machine *target = machine_with_disk(destination);
    double started = clock_monotonic_seconds();
    sender.fd = socket_connect(address, &err);
    int fd = socket_accept(listener, &err);
    close(listener);
    if (sender.fd < 0 || fd < 0) {
        fprintf(stderr, "disk_sync_bench: %s\n", err.message);
        exit(1);
    }
    pthread_t thread;
    pthread_create(&thread, NULL, send_thread, &sender);
    struct disk_sync_destination sync;
    disk_sync_destination_init(&sync, target);
    struct stream_reader reader;
    int received = stream_reader_init(&reader, fd, &err);
    if (received == 0)
        received = migration_receive_with_companion(target, &reader, disk_sync_destination_companion(&sync), &err);
    stream_reader_destroy(&reader);
    pthread_join(thread, NULL);
    double seconds = clock_monotonic_seconds() - started;
    if (received < 0 || sender.result < 0) {
        fprintf(stderr, "disk_sync_bench: %s / %s\n", received < 0 ? err.message : "",
                sender.result < 0 ? sender.err.message : "");
        exit(1);
    }
    *wire = sender.progress.bytes_sent;
    close(fd);
    close(sender.fd);
    machine_destroy(sender.machine);
    machine_destroy(target);
    return seconds;
}

static void make_sparse(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        perror(path);
        exit(1);
    }
    close(fd);
}

/* Writes `length` random bytes at each of `count` evenly spread places. */
static void fill(const char *path, uint64_t size, unsigned count, uint64_t length)
{
    int fd = open(path, O_RDWR);
    uint8_t *buffer = malloc(1 << 20);
    uint64_t state = 0x2545f4914f6cdd1dull;
    for (unsigned place = 0; place < count; place++) {
        uint64_t offset = size / count * place;
        for (uint64_t done = 0; done < length; done += 1 << 20) {
            for (size_t i = 0; i < (1 << 20) / 8; i++) {
                state ^= state << 13, state ^= state >> 7, state ^= state << 17;
                memcpy(buffer + 8 * i, &state, 8);
            }
            if (pwrite(fd, buffer, 1 << 20, (off_t)(offset + done)) != 1 << 20) {
                perror(path);
                exit(1);
            }
        }
    }
    free(buffer);
    fsync(fd);
    close(fd);
}

static uint64_t allocated_mib(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 >> 20 : 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run_case(const char *name, const char *source, const char *destination, uint64_t size, int repeats,
                     bool fresh_destination)
{
    double seconds[16];
    uint64_t wire = 0;
    for (int i = 0; i < repeats; i++) {
        if (fresh_destination)
            make_sparse(destination, size);
        seconds[i] = sync_once(source, destination, &wire);
    }
    qsort(seconds, (size_t)repeats, sizeof seconds[0], compare_doubles);
    double median = seconds[repeats / 2];
    printf("%-12s %8.2f s %10.0f MB/s   wire %6llu MiB   destination allocated %6llu MiB   (runs:", name, median,
           (double)size / median / 1e6, (unsigned long long)(wire >> 20),
           (unsigned long long)allocated_mib(destination));
    for (int i = 0; i < repeats; i++)
        printf(" %.2f", seconds[i]);
    printf(")\n");
    printf("{\"case\": \"%s\", \"seconds\": %.3f, \"megabytes_per_second\": %.0f, \"wire_bytes\": %llu}\n", name,
           median, (double)size / median / 1e6, (unsigned long long)wire);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: disk_sync_bench DIRECTORY [REPEATS]\n");
        return 2;
    }
    int repeats = argc > 2 ? atoi(argv[2]) : 3;
    if (repeats < 1 || repeats > 16)
        repeats = 3;
    const char *mib = getenv("BENCH_DISK_SYNC_MIB");
    uint64_t size = (uint64_t)(mib ? atoll(mib) : 2048) << 20;
    char source[4200], destination[4200];
    snprintf(source, sizeof source, "%s/source.img", argv[1]);
    snprintf(destination, sizeof destination, "%s/destination.img", argv[1]);
    printf("disk sync of a %llu MiB image over TCP on 127.0.0.1, median of %d\n", (unsigned long long)(size >> 20),
           repeats);

    make_sparse(source, size);
    fill(source, size, 16, 4u << 20);
    run_case("sparse", source, destination, size, repeats, true);

    if (getenv("BENCH_DISK_SYNC_SPARSE_ONLY")) {
        unlink(source);
        unlink(destination);
        return 0;
    }
    fill(source, size, 1, size);
    run_case("full", source, destination, size, repeats, true);
    /* The destination now holds the source's bytes: a pre-provisioned copy. */
    run_case("provisioned", source, destination, size, repeats, false);
    unlink(source);
    unlink(destination);
    return 0;
}
