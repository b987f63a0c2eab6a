/* The disk's share of a COLO checkpoint, measured in one process
 * (docs/benchmarks.md, "Disk replication: checkpoint cost"; issue 11).
 *
 * Two sparse raw images (1 GiB unless --image-mib says otherwise) in a
 * temporary directory: the primary's, wrapped in a primary_disk, and the
 * secondary's, wrapped in a secondary_disk. The main thread plays the primary: between checkpoints it makes N random
 * guest writes through the primary disk's backend (the VM running, not
 * timed); then, with the clock running, it does what colo_primary does
 * with the VM paused once the pages are out: the primary disk device's
 * save into a stream_writer, CHECKPOINT_END, flush, and it waits for the
 * secondary's one-byte answer (SVM_READY's stand-in). A second thread
 * plays the secondary on the other end of a TCP loopback connection set up
 * as the replication connection is (TCP_NODELAY, 256 KiB socket buffers):
 * it reads records with stream_read_record (what stream_receive does)
 * and puts each DISK_WRITE into the buffer as it comes
 * (secondary_disk_buffer_write, as the loop's disk-write sink does), and
 * after its answer to CHECKPOINT_END folds them
 * (secondary_disk_checkpoint_commit, which also empties the overlay). Between checkpoints that thread also plays the
 * SVM: as many writes of the same size as the PVM's, into the overlay
 * (not timed).
 *
 * The sequence is the loops' (docs/replication.md, "Disks"): the
 * checkpoint's pre-copy first, with the VM still running (the primary
 * device's precopy: the epoch so far goes out; --no-precopy leaves it
 * out); then, with the clock running, the save of what was written since
 * (nothing here: the guest's writes all come before), CHECKPOINT_END and
 * the wait for the secondary's first answer, SVM_READY's stand-in, sent
 * once every record is buffered. The fold follows it (preresume), then a
 * second answer (SVM_RESUMED's stand-in) before the next epoch.
 *
 * Per checkpoint: added = SVM_READY received - save started: the disk's
 * part of the PVM's pause. CHECKPOINT_END's and the answer's trips are in
 * it, and the real loop pays them with or without disks, so the N = 0 row
 * is the floor. Also: the save alone, the send of what the save left in
 * the writer, the secondary's buffering (all its buffer_write calls, most
 * of them before the pause) and the fold (commit) alone, the stream bytes, the primary's
 * epoch_memory_bytes before the save and the secondary's memory_bytes with
 * the whole epoch buffered (its peak).
 *
 * Usage: disk_checkpoint [-n CHECKPOINTS] [--levels N,N,...]
 *        [--sizes BYTES,...] [--image-mib MIB] [--socketpair] [--no-precopy]
 *        [--stream-every N] [DIRECTORY]
 * --stream-every N: the loop's stream phase (disk writes sent between
 * checkpoints, every 2 ms in colo) after every N guest writes, not timed:
 * a guest that writes steadily rather than in one burst per epoch.
 * DIRECTORY defaults to $TMPDIR, then /tmp. The table goes to stdout, then
 * one JSON line starting with {"benchmark":"disk_checkpoint". At the end
 * the two images must be equal (exit status 1 otherwise). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block_file.h"
#include "clock.h"
#include "disk_checkpoint_device.h"
#include "primary_disk.h"
#include "secondary_disk.h"
#include "socket.h"
#include "stream.h"

enum {
    DEFAULT_IMAGE_MIB = 1024,
    WARMUP_CHECKPOINTS = 3,
    MAX_LEVELS = 8,
    MAX_SIZES = 4,
    /* vm_replication.c's REPLICATION_SOCKET_BUFFER: the replication
     * connection's send and receive buffers. */
    REPLICATION_SOCKET_BUFFER = 256 * 1024,
    ANSWER_BYTE = 'R',
};

struct options {
    const char *directory;
    unsigned checkpoints;
    unsigned levels[MAX_LEVELS];
    size_t level_count;
    unsigned sizes[MAX_SIZES]; /* bytes per guest write */
    size_t size_count;
    bool socketpair;
    bool no_precopy;
    unsigned stream_every;
    uint64_t image_bytes;
};

/* What the secondary measured for one checkpoint (clock_monotonic_ns). */
struct secondary_sample {
    uint64_t end_received;   /* CHECKPOINT_END read */
    uint64_t buffering;      /* the buffer_write calls, as the records came */
    uint64_t buffered;       /* every DISK_WRITE in the buffer */
    uint64_t stats_duration; /* the get_stats call, left out of "added" */
    uint64_t committed;      /* the fold done */
    uint64_t fold_duration;  /* secondary_disk_fold_report.duration_ns */
    uint64_t fold_writes;    /* writes to the base */
    uint64_t memory_bytes;   /* buffer + overlay with the epoch buffered */
    uint64_t disk_write_records;
};

struct secondary {
    int fd;
    struct secondary_disk *disk;
    pthread_mutex_t lock;
    struct secondary_sample last; /* under lock, read after the answer */
    /* The SVM's own writes per epoch (into the overlay), as many and as
     * large as the PVM's: under lock, set by the primary. */
    unsigned svm_writes, svm_write_bytes;
    uint64_t svm_random_state;
    uint8_t *svm_data;
    struct error err;
    int result;
};

/* xorshift64*: the guest's write offsets and bytes. */
static uint64_t next_random(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1DULL;
}

/* N guest writes of `size` bytes at random size-aligned offsets. */
static int guest_writes(struct block_backend *backend, unsigned count, unsigned size, uint64_t *random_state,
                        uint8_t *data, struct error *err)
{
    uint64_t slots = backend->size / size;
    for (unsigned i = 0; i < count; i++) {
        for (size_t word = 0; word < size / sizeof(uint64_t); word++) {
            uint64_t value = next_random(random_state);
            memcpy(data + word * sizeof value, &value, sizeof value);
        }
        uint64_t offset = next_random(random_state) % slots * size;
        int result = block_backend_write(backend, offset, data, size);
        if (result < 0)
            return error_set(err, "guest write at %" PRIu64 ": %s", offset, strerror(-result));
    }
    return 0;
}

/* One checkpoint on the secondary: 1 done, 0 the primary sent END, -1.
 * Each DISK_WRITE goes into the buffer as it is read, as the loop's sink
 * does (stream_reader.disk_write_sink, disk_replication.c's receive). */
static int secondary_checkpoint(struct secondary *secondary, struct stream_reader *reader, struct error *err)
{
    struct secondary_sample sample = { 0 };
    uint64_t buffering = 0;
    for (;;) {
        struct stream_record record;
        int got = stream_read_record(reader, &record, err);
        if (got < 0)
            return -1;
        if (got == 0 || record.type == STREAM_RECORD_END)
            return 0;
        if (record.type == STREAM_RECORD_CHECKPOINT_END)
            break;
        if (record.type != STREAM_RECORD_DISK_WRITE)
            return error_set(err, "unexpected record type %" PRIu32, record.type);
        uint64_t started = clock_monotonic_ns();
        struct stream_disk_write write;
        stream_disk_write_fields(record.body, record.length, &write);
        if (secondary_disk_buffer_write(secondary->disk, write.offset, write.data, write.length, err) < 0) {
            secondary_disk_checkpoint_abort(secondary->disk);
            return -1;
        }
        buffering += clock_monotonic_ns() - started;
        sample.disk_write_records++;
    }
    sample.end_received = clock_monotonic_ns();
    sample.buffering = buffering;
    sample.buffered = clock_monotonic_ns();
    /* SVM_READY: the checkpoint is buffered whole; the fold comes after
     * (disk_replication.c folds in preresume), out of the primary's
     * pause. */
    uint8_t ready = ANSWER_BYTE;
    if (write(secondary->fd, &ready, 1) != 1)
        return error_set_errno(err, "sending the answer");
    struct secondary_disk_stats stats;
    secondary_disk_get_stats(secondary->disk, &stats);
    sample.memory_bytes = stats.memory_bytes;
    uint64_t stats_done = clock_monotonic_ns();
    sample.stats_duration = stats_done - sample.buffered;
    struct secondary_disk_fold_report report;
    if (secondary_disk_checkpoint_commit(secondary->disk, &report, err) < 0)
        return -1;
    sample.committed = clock_monotonic_ns();
    sample.fold_duration = report.duration_ns;
    sample.fold_writes = report.writes;
    pthread_mutex_lock(&secondary->lock);
    secondary->last = sample;
    unsigned svm_writes = secondary->svm_writes, svm_write_bytes = secondary->svm_write_bytes;
    pthread_mutex_unlock(&secondary->lock);
    /* The SVM runs the next epoch: its writes fill the overlay, which the
     * next commit empties. Before the answer, so that the primary's next
     * checkpoint finds this thread waiting for records, as it would. */
    if (guest_writes(secondary_disk_backend(secondary->disk), svm_writes, svm_write_bytes, &secondary->svm_random_state,
                     secondary->svm_data, err) < 0)
        return error_prefix(err, "the SVM's ");
    /* SVM_RESUMED's stand-in: the primary's next checkpoint waits for
     * this checkpoint's fold and the SVM's writes, as the real loop waits
     * for SVM_RESUMED before its next CHECKPOINT_NEW. */
    uint8_t resumed = ANSWER_BYTE;
    if (write(secondary->fd, &resumed, 1) != 1)
        return error_set_errno(err, "sending the answer");
    return 1;
}

static void *secondary_thread(void *opaque)
{
    struct secondary *secondary = opaque;
    struct stream_reader reader;
    secondary->result = -1;
    if (stream_reader_init(&reader, secondary->fd, &secondary->err) < 0)
        return NULL;
    int result;
    while ((result = secondary_checkpoint(secondary, &reader, &secondary->err)) == 1)
        ;
    secondary->result = result;
    if (result < 0)
        shutdown(secondary->fd, SHUT_RDWR); /* the primary waiting for an answer sees the end */
    stream_reader_destroy(&reader);
    return NULL;
}

/* ---- the primary's side ---- */

struct checkpoint_sample {
    uint64_t added, save, send, buffer, fold;
    uint64_t stream_bytes, data_bytes, records, fold_writes;
    uint64_t primary_memory, secondary_memory, blocks;
};

struct run_result {
    unsigned level, size;
    size_t count;
    struct checkpoint_sample *samples;
};

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of `count` values taken at `offset` bytes into
 * each sample. */
static uint64_t percentile(const struct run_result *run, size_t offset, double fraction)
{
    uint64_t *values = malloc(run->count * sizeof *values);
    if (!values)
        abort();
    for (size_t i = 0; i < run->count; i++)
        memcpy(&values[i], (const uint8_t *)&run->samples[i] + offset, sizeof values[i]);
    qsort(values, run->count, sizeof *values, compare_u64);
    size_t rank = (size_t)(fraction * (double)run->count + 0.999999);
    uint64_t value = values[rank > 0 ? rank - 1 : 0];
    free(values);
    return value;
}

static uint64_t maximum(const struct run_result *run, size_t offset)
{
    return percentile(run, offset, 1.0);
}

#define P(run, field, fraction) percentile(run, offsetof(struct checkpoint_sample, field), fraction)
#define MAX(run, field) maximum(run, offsetof(struct checkpoint_sample, field))

struct rig {
    struct primary_disk *primary;
    struct primary_disk_device device;
    struct stream_writer writer;
    int fd;
    struct secondary secondary;
    bool secondary_silent; /* a checkpoint failed for want of an answer */
    bool precopy;          /* the checkpoint's pre-copy (default; --no-precopy: off) */
    unsigned stream_every; /* the stream phase after every N guest writes (0: none) */
};

static int one_checkpoint(struct rig *rig, struct checkpoint_sample *sample, struct error *err)
{
    struct primary_disk_stats stats;
    primary_disk_get_stats(rig->primary, &stats);
    sample->primary_memory = stats.epoch_memory_bytes;
    sample->blocks = stats.epoch_blocks;
    uint64_t bytes_before = rig->writer.bytes_written;

    /* The checkpoint's pre-copy, the VM still running (not in the pause):
     * the epoch's writes so far go now. */
    if (rig->precopy) {
        primary_disk_precopy_begin(rig->primary);
        if (primary_disk_device_precopy(&rig->device, &rig->writer, err) < 0 || stream_flush(&rig->writer, err) < 0)
            return -1;
    }
    uint64_t started = clock_monotonic_ns();
    if (primary_disk_checkpoint_device.save(&rig->device, &rig->writer, err) < 0)
        return -1;
    uint64_t saved = clock_monotonic_ns();
    if (stream_write_checkpoint_end(&rig->writer, err) < 0 || stream_flush(&rig->writer, err) < 0)
        return -1;
    uint64_t sent = clock_monotonic_ns();
    uint8_t answer;
    ssize_t got;
    do
        got = read(rig->fd, &answer, 1);
    while (got < 0 && errno == EINTR);
    if (got != 1 || answer != ANSWER_BYTE) {
        /* The secondary's own error, if it has one, is read after the
         * join (run_all): its thread may still be setting it. */
        rig->secondary_silent = true;
        return error_set(err, "the secondary did not answer");
    }

    uint64_t ready = clock_monotonic_ns();
    /* The second answer: the fold is done (not in the pause). */
    do
        got = read(rig->fd, &answer, 1);
    while (got < 0 && errno == EINTR);
    if (got != 1 || answer != ANSWER_BYTE) {
        rig->secondary_silent = true;
        return error_set(err, "the secondary did not answer after its fold");
    }
    pthread_mutex_lock(&rig->secondary.lock);
    struct secondary_sample secondary = rig->secondary.last;
    pthread_mutex_unlock(&rig->secondary.lock);
    sample->added = ready - started;
    sample->save = saved - started;
    sample->send = sent - saved;
    sample->buffer = secondary.buffering;
    sample->fold = secondary.committed - (secondary.buffered + secondary.stats_duration);
    sample->fold_writes = secondary.fold_writes;
    sample->secondary_memory = secondary.memory_bytes;
    sample->stream_bytes = rig->writer.bytes_written - bytes_before;
    sample->data_bytes = rig->device.last.bytes;
    sample->records = secondary.disk_write_records;
    return 0;
}

static int run_level(struct rig *rig, unsigned level, unsigned size, unsigned checkpoints, uint64_t *random_state,
                     uint8_t *data, struct run_result *run, struct error *err)
{
    run->level = level;
    run->size = size;
    run->count = 0;
    run->samples = calloc(checkpoints, sizeof *run->samples);
    if (!run->samples)
        return error_set(err, "out of memory");
    struct block_backend *backend = primary_disk_backend(rig->primary);
    pthread_mutex_lock(&rig->secondary.lock);
    rig->secondary.svm_writes = level;
    rig->secondary.svm_write_bytes = size;
    pthread_mutex_unlock(&rig->secondary.lock);
    for (unsigned i = 0; i < WARMUP_CHECKPOINTS + checkpoints; i++) {
        struct checkpoint_sample sample;
        /* The guest's writes of the epoch; with --stream-every N, the
         * loop's stream phase after every N of them (not timed). */
        unsigned chunk = rig->stream_every ? rig->stream_every : level;
        for (unsigned done = 0; done < level; done += chunk) {
            unsigned count = level - done < chunk ? level - done : chunk;
            if (guest_writes(backend, count, size, random_state, data, err) < 0)
                return -1;
            if (rig->stream_every && done + count < level) {
                primary_disk_precopy_begin(rig->primary);
                if (primary_disk_device_precopy(&rig->device, &rig->writer, err) < 0 ||
                    stream_flush(&rig->writer, err) < 0)
                    return -1;
            }
        }
        if (one_checkpoint(rig, &sample, err) < 0)
            return -1;
        if (i >= WARMUP_CHECKPOINTS)
            run->samples[run->count++] = sample;
    }
    return 0;
}

/* After the last commit the secondary's base must be the primary's image
 * (the SVM's last writes are in the overlay, not the base): a benchmark
 * of a replication that lost writes would measure nothing. */
static int check_images_equal(struct block_backend *primary_base, struct block_backend *secondary_base,
                              uint8_t *primary_bytes, uint8_t *secondary_bytes, size_t chunk, struct error *err)
{
    for (uint64_t offset = 0; offset < primary_base->size; offset += chunk) {
        size_t length = primary_base->size - offset < chunk ? (size_t)(primary_base->size - offset) : chunk;
        int result = block_backend_read(primary_base, offset, primary_bytes, length);
        if (result == 0)
            result = block_backend_read(secondary_base, offset, secondary_bytes, length);
        if (result < 0)
            return error_set(err, "reading the images at %" PRIu64 ": %s", offset, strerror(-result));
        if (memcmp(primary_bytes, secondary_bytes, length) != 0)
            return error_set(err,
                             "the secondary's image differs from the primary's in the MiB at %" PRIu64
                             " after the last checkpoint",
                             offset);
    }
    return 0;
}

/* ---- set-up ---- */

static struct block_backend *make_image(const char *directory, const char *name, uint64_t bytes, struct error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", directory, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        error_set_errno(err, "creating %s", path);
        return NULL;
    }
    int result = ftruncate(fd, (off_t)bytes);
    close(fd);
    if (result < 0) {
        error_set_errno(err, "sizing %s", path);
        return NULL;
    }
    return block_file_open(path, false, err);
}

static void limit_in_flight(int fd, int option)
{
    int size = REPLICATION_SOCKET_BUFFER;
    (void)setsockopt(fd, SOL_SOCKET, option, &size, sizeof size);
}

/* The two ends of the replication connection: [0] the primary's. */
static int connect_ends(bool use_socketpair, int ends[2], struct error *err)
{
    if (use_socketpair) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) < 0)
            return error_set_errno(err, "socketpair");
    } else {
        int listener = socket_listen("127.0.0.1:0", err);
        if (listener < 0)
            return -1;
        struct sockaddr_in address;
        socklen_t length = sizeof address;
        if (getsockname(listener, (struct sockaddr *)&address, &length) < 0) {
            close(listener);
            return error_set_errno(err, "getsockname");
        }
        char target[64];
        snprintf(target, sizeof target, "127.0.0.1:%u", (unsigned)ntohs(address.sin_port));
        ends[0] = socket_connect(target, err);
        ends[1] = ends[0] >= 0 ? socket_accept(listener, err) : -1;
        close(listener);
        if (ends[1] < 0) {
            if (ends[0] >= 0)
                close(ends[0]);
            return -1;
        }
    }
    limit_in_flight(ends[0], SO_SNDBUF);
    limit_in_flight(ends[1], SO_RCVBUF);
    return 0;
}

static int parse_list(const char *text, unsigned *values, size_t capacity, size_t *count)
{
    *count = 0;
    char *end;
    while (*text) {
        unsigned long value = strtoul(text, &end, 10);
        if (end == text || *count == capacity)
            return -1;
        values[(*count)++] = (unsigned)value;
        text = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return *count > 0 ? 0 : -1;
}

static int parse_options(int argc, char **argv, struct options *options)
{
    const char *temporary = getenv("TMPDIR");
    *options = (struct options){
        .directory = temporary && *temporary ? temporary : "/tmp",
        .checkpoints = 50,
        .levels = { 0, 100, 1000, 10000 },
        .level_count = 4,
        .sizes = { 4096, 512 },
        .size_count = 2,
        .image_bytes = (uint64_t)DEFAULT_IMAGE_MIB << 20,
    };
    for (int i = 1; i < argc; i++) {
        const char *argument = argv[i];
        if (strcmp(argument, "-n") == 0 && i + 1 < argc)
            options->checkpoints = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argument, "--levels") == 0 && i + 1 < argc) {
            if (parse_list(argv[++i], options->levels, MAX_LEVELS, &options->level_count) < 0)
                return -1;
        } else if (strcmp(argument, "--sizes") == 0 && i + 1 < argc) {
            if (parse_list(argv[++i], options->sizes, MAX_SIZES, &options->size_count) < 0)
                return -1;
            for (size_t s = 0; s < options->size_count; s++)
                if (options->sizes[s] == 0 || options->sizes[s] % 512 || options->sizes[s] > 1024 * 1024)
                    return -1;
        } else if (strcmp(argument, "--image-mib") == 0 && i + 1 < argc) {
            options->image_bytes = (uint64_t)strtoull(argv[++i], NULL, 10) << 20;
            if (options->image_bytes < 1u << 20)
                return -1;
        } else if (strcmp(argument, "--socketpair") == 0)
            options->socketpair = true;
        else if (strcmp(argument, "--no-precopy") == 0)
            options->no_precopy = true;
        else if (strcmp(argument, "--stream-every") == 0 && i + 1 < argc)
            options->stream_every = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (argument[0] != '-')
            options->directory = argument;
        else
            return -1;
    }
    return options->checkpoints > 0 ? 0 : -1;
}

/* ---- output ---- */

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static void print_table(const struct run_result *runs, size_t run_count, const struct options *options)
{
    printf("\n%u checkpoints per row (after %d warm-up), %s, %" PRIu64 " MiB sparse images in %s\n",
           options->checkpoints, WARMUP_CHECKPOINTS, options->socketpair ? "UNIX socketpair" : "TCP loopback",
           options->image_bytes >> 20, options->directory);
    printf("times in ms; added = save start to SVM_READY (the fold after it); MiB = stream bytes per checkpoint;\n"
           "memory = secondary buffer+overlay at its peak / primary epoch log, MiB\n\n");
    printf("%6s %5s | %7s %7s %7s | %7s %7s %7s %7s %7s | %8s %7s | %8s %8s\n", "writes", "size", "added50", "added99",
           "max", "save50", "send50", "buff50", "fold50", "fold99", "MiB", "records", "sec.mem", "pri.mem");
    for (size_t r = 0; r < run_count; r++) {
        const struct run_result *run = &runs[r];
        printf("%6u %5u | %7.3f %7.3f %7.3f | %7.3f %7.3f %7.3f %7.3f %7.3f | %8.2f %7" PRIu64 " | %8.2f %8.2f\n",
               run->level, run->size, ms(P(run, added, 0.5)), ms(P(run, added, 0.99)), ms(MAX(run, added)),
               ms(P(run, save, 0.5)), ms(P(run, send, 0.5)), ms(P(run, buffer, 0.5)), ms(P(run, fold, 0.5)),
               ms(P(run, fold, 0.99)), mib(P(run, stream_bytes, 0.5)), P(run, records, 0.5),
               mib(MAX(run, secondary_memory)), mib(MAX(run, primary_memory)));
    }
}

static void print_json(const struct run_result *runs, size_t run_count, const struct options *options)
{
    printf("{\"benchmark\":\"disk_checkpoint\",\"checkpoints\":%u,\"transport\":\"%s\",\"image_bytes\":%" PRIu64
           ",\"rows\":[",
           options->checkpoints, options->socketpair ? "socketpair" : "tcp", options->image_bytes);
    for (size_t r = 0; r < run_count; r++) {
        const struct run_result *run = &runs[r];
        printf("%s{\"writes\":%u,\"write_bytes\":%u,\"added_ms_p50\":%.4f,\"added_ms_p99\":%.4f,"
               "\"added_ms_max\":%.4f,\"save_ms_p50\":%.4f,\"save_ms_p99\":%.4f,\"send_ms_p50\":%.4f,"
               "\"buffer_ms_p50\":%.4f,\"fold_ms_p50\":%.4f,\"fold_ms_p99\":%.4f,\"blocks_p50\":%" PRIu64
               ",\"records_p50\":%" PRIu64 ",\"data_bytes_p50\":%" PRIu64 ",\"stream_bytes_p50\":%" PRIu64
               ",\"fold_writes_p50\":%" PRIu64 ",\"secondary_memory_bytes_max\":%" PRIu64
               ",\"primary_epoch_memory_bytes_max\":%" PRIu64 "}",
               r ? "," : "", run->level, run->size, ms(P(run, added, 0.5)), ms(P(run, added, 0.99)),
               ms(MAX(run, added)), ms(P(run, save, 0.5)), ms(P(run, save, 0.99)), ms(P(run, send, 0.5)),
               ms(P(run, buffer, 0.5)), ms(P(run, fold, 0.5)), ms(P(run, fold, 0.99)), P(run, blocks, 0.5),
               P(run, records, 0.5), P(run, data_bytes, 0.5), P(run, stream_bytes, 0.5), P(run, fold_writes, 0.5),
               MAX(run, secondary_memory), MAX(run, primary_memory));
    }
    printf("]}\n");
}

/* ---- main ---- */

static int run_all(const struct options *options, const char *directory, struct run_result *runs, size_t *run_count,
                   struct error *err)
{
    struct rig rig = { .fd = -1, .precopy = !options->no_precopy, .stream_every = options->stream_every };
    struct secondary_disk *secondary_disk = NULL;
    struct block_backend *primary_base = make_image(directory, "primary.img", options->image_bytes, err);
    if (!primary_base)
        return -1;
    rig.primary = primary_disk_create(primary_base, &(struct primary_disk_options){ 0 }, err);
    if (!rig.primary) {
        block_backend_destroy(primary_base);
        return -1;
    }
    struct block_backend *secondary_base = make_image(directory, "secondary.img", options->image_bytes, err);
    if (secondary_base) {
        secondary_disk = secondary_disk_create(secondary_base, &(struct secondary_disk_options){ 0 }, err);
        if (!secondary_disk)
            block_backend_destroy(secondary_base);
    }
    int ends[2];
    if (!secondary_disk || connect_ends(options->socketpair, ends, err) < 0) {
        block_backend_destroy(primary_disk_backend(rig.primary));
        if (secondary_disk)
            block_backend_destroy(secondary_disk_backend(secondary_disk));
        return -1;
    }
    rig.fd = ends[0];
    primary_disk_device_init(&rig.device, rig.primary, 0);
    uint8_t *data = malloc(1024 * 1024), *svm_data = malloc(1024 * 1024);
    rig.secondary = (struct secondary){
        .fd = ends[1], .disk = secondary_disk, .svm_random_state = 0x2545F4914F6CDD1DULL, .svm_data = svm_data
    };
    pthread_mutex_init(&rig.secondary.lock, NULL);
    pthread_t thread;
    int result = -1;
    bool thread_started = false;
    if (data && svm_data && stream_writer_init(&rig.writer, rig.fd, err) == 0) {
        thread_started = pthread_create(&thread, NULL, secondary_thread, &rig.secondary) == 0;
        result = thread_started ? 0 : error_set(err, "cannot start the secondary's thread");
        uint64_t random_state = 0x9E3779B97F4A7C15ULL;
        for (size_t s = 0; s < options->size_count && result == 0; s++)
            for (size_t l = 0; l < options->level_count && result == 0; l++) {
                fprintf(stderr, "disk_checkpoint: %u writes of %u bytes per checkpoint...\n", options->levels[l],
                        options->sizes[s]);
                result = run_level(&rig, options->levels[l], options->sizes[s], options->checkpoints, &random_state,
                                   data, &runs[*run_count], err);
                if (runs[*run_count].samples)
                    (*run_count)++;
            }
        if (thread_started) {
            struct error ignored;
            if (stream_write_end(&rig.writer, &ignored) < 0 || stream_flush(&rig.writer, &ignored) < 0)
                shutdown(rig.fd, SHUT_RDWR);
            pthread_join(thread, NULL);
            if ((result == 0 || rig.secondary_silent) && rig.secondary.result < 0) {
                *err = rig.secondary.err;
                result = -1;
            }
            if (result == 0)
                result = check_images_equal(primary_base, secondary_base, data, svm_data, 1024 * 1024, err);
        }
        stream_writer_destroy(&rig.writer);
    } else if (!data || !svm_data)
        error_set(err, "out of memory");
    free(data);
    free(svm_data);
    close(ends[0]);
    close(ends[1]);
    pthread_mutex_destroy(&rig.secondary.lock);
    block_backend_destroy(primary_disk_backend(rig.primary));
    block_backend_destroy(secondary_disk_backend(secondary_disk));
    return result;
}

int main(int argc, char **argv)
{
    struct options options;
    if (parse_options(argc, argv, &options) < 0) {
        fprintf(stderr, "usage: disk_checkpoint [-n CHECKPOINTS] [--levels N,N,...] [--sizes BYTES,...] "
                        "[--image-mib MIB] [--socketpair] [--no-precopy] [--stream-every N] [DIRECTORY]\n");
        return 2;
    }
    char directory[4096];
    snprintf(directory, sizeof directory, "%s/colo-disk-bench.XXXXXX", options.directory);
    if (!mkdtemp(directory)) {
        fprintf(stderr, "disk_checkpoint: cannot make a directory in %s: %s\n", options.directory, strerror(errno));
        return 2;
    }
    struct run_result runs[MAX_LEVELS * MAX_SIZES] = { 0 };
    size_t run_count = 0;
    struct error err = { { 0 } };
    int result = run_all(&options, directory, runs, &run_count, &err);
    char path[4096 + 32];
    snprintf(path, sizeof path, "%s/primary.img", directory);
    unlink(path);
    snprintf(path, sizeof path, "%s/secondary.img", directory);
    unlink(path);
    rmdir(directory);
    if (result < 0)
        fprintf(stderr, "disk_checkpoint: %s\n", err.message);
    else {
        print_table(runs, run_count, &options);
        print_json(runs, run_count, &options);
    }
    for (size_t r = 0; r < run_count; r++)
        free(runs[r].samples);
    return result < 0 ? 1 : 0;
}
