/* libFuzzer target: the DISK_WRITE records of the stream, from the reader
 * (stream_read_header, then stream_receive run after run) to the COLO
 * secondary's disks (disk/secondary_disk.h) through their checkpoint
 * device's load, which buffers a run's records and commits them. Any
 * input may be rejected, but never with a crash, and the disks must end
 * every run as a byte model of them says:
 *
 *   - a run whose records for a disk all lie inside it: the load succeeds
 *     and the disk's base is its bytes before with the records applied in
 *     order;
 *   - a run with one record outside its disk: the load fails and the
 *     base is as it was (the epoch aborted), the buffer empty;
 *   - either way the SVM never reads a buffered byte.
 *
 * Disk 0 is 64 KiB with no bound on its buffer; disk 1 is 40 KiB and
 * three sectors (a short last block) with a bound of two blocks and a
 * spill directory, so most of its buffer goes through the spill file.
 *
 * The first byte of an input chooses how the rest is fed. Bit 0: recompute
 * the CRC of every whole record first (as fuzz_stream_reader.c does, so
 * mutations get past the CRC check). Bit 1: the machine has both disks
 * (clear: disk 0 only). Bit 2: instead of the device's load, each disk's
 * records go into its buffer one by one, the SVM reads the whole disk,
 * and the epoch is aborted (a checkpoint that did not arrive whole): the
 * base must not change.
 *
 * With COLO_FUZZ_WRITE_SEED=DIRECTORY in the environment, the first call
 * writes the seed inputs of the corpus into DIRECTORY, then exits. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crc32c.h"
#include "disk_checkpoint_device.h"
#include "disk_runs.h"
#include "fuzz_stream_support.h"
#include "fuzz_target.h"
#include "machine.h"
#include "memory_block_backend.h"
#include "stream.h"

#define FUZZ_RAM_SIZE (64u * 1024u)
#define FUZZ_MAX_RUNS 8
#define DISK_COUNT 2

static const uint64_t disk_sizes[DISK_COUNT] = { 64u * 1024u, 40u * 1024u + 3u * 512u };
static const uint64_t buffer_limits[DISK_COUNT] = { 0, 2u * 4096u };

struct fuzz_disk {
    struct memory_backend *memory; /* the base, owned by the secondary disk */
    struct secondary_disk *disk;
    struct secondary_disk_device device;
    uint8_t *initial;  /* the base at the start of every input */
    uint8_t *expected; /* the model of the base */
    uint8_t *view;     /* what the SVM reads */
};

static struct fuzz_disk disks[DISK_COUNT];
/* The receiving machines: with disk 0, and with both (the stream checks a
 * record's disk index against the machine's disks). */
static struct machine *machine_one_disk, *machine_two_disks;
static bool created;
static int input_fd = -1;
/* Each input starts from a copy of this freshly initialised reader, as in
 * fuzz_stream_reader.c: allocating its record buffer per input under ASan
 * would be most of the time of an input. */
static struct stream_reader fresh_reader;
static uint8_t *fixed_input;
static size_t fixed_capacity;

static void give_up(const char *what, const struct error *err)
{
    fprintf(stderr, "fuzz_disk_records: %s%s%s\n", what, err ? ": " : "", err ? err->message : "");
    abort();
}

/* A machine with the first `count` disks, over scratch images nobody
 * reads (the records go to the secondary disks, never to these). */
static struct machine *machine_with_disks(unsigned count)
{
    struct machine_config config;
    machine_config_defaults(&config);
    config.ram_size = FUZZ_RAM_SIZE;
    config.deterministic_time = true;
    config.console_output_fd = -1;
    config.console_input_fd = -1;
    for (unsigned i = 0; i < count; i++) {
        int fd = memfd_create("fuzz-disk-records-scratch", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)disk_sizes[i]) < 0)
            give_up("scratch image", NULL);
        snprintf(config.disks[i].path, sizeof config.disks[i].path, "/proc/self/fd/%d", fd);
    }
    config.disk_count = count;
    struct error err;
    struct machine *machine = machine_create(&config, &err);
    if (!machine)
        give_up("machine_create", &err);
    return machine;
}

static void disks_create(void)
{
    const char *spill_directory = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    for (unsigned i = 0; i < DISK_COUNT; i++) {
        struct fuzz_disk *fuzz = &disks[i];
        fuzz->memory = memory_backend_create(disk_sizes[i]);
        fuzz->initial = malloc(disk_sizes[i]);
        fuzz->expected = malloc(disk_sizes[i]);
        fuzz->view = malloc(disk_sizes[i]);
        if (!fuzz->initial || !fuzz->expected || !fuzz->view)
            give_up("out of memory", NULL);
        memcpy(fuzz->initial, fuzz->memory->bytes, disk_sizes[i]);
        struct secondary_disk_options options = { .buffer_limit_bytes = buffer_limits[i],
                                                  .spill_directory = buffer_limits[i] ? spill_directory : NULL };
        struct error err;
        fuzz->disk = secondary_disk_create(&fuzz->memory->backend, &options, &err);
        if (!fuzz->disk)
            give_up("secondary_disk_create", &err);
        secondary_disk_device_init(&fuzz->device, fuzz->disk, i);
    }
}

/* The disk's model: its records of the run applied to the base as it is;
 * false when one of them lies outside the disk (the model is then not
 * used). */
static bool model_apply(struct fuzz_disk *fuzz, uint32_t index, const struct stream_reader *reader)
{
    memcpy(fuzz->expected, fuzz->memory->bytes, disk_sizes[index]);
    size_t cursor = 0, length;
    const uint8_t *body;
    bool inside = true;
    while (stream_received_disk_write_next(reader, &cursor, &body, &length)) {
        struct stream_disk_write write;
        stream_disk_write_fields(body, length, &write);
        if (write.disk != index)
            continue;
        if (!disk_request_valid(disk_sizes[index], write.offset, write.length))
            inside = false;
        else
            memcpy(fuzz->expected + write.offset, write.data, write.length);
    }
    return inside;
}

static void check_buffer_empty(struct fuzz_disk *fuzz, uint32_t index)
{
    struct secondary_disk_stats stats;
    secondary_disk_get_stats(fuzz->disk, &stats);
    if (stats.buffered_blocks || stats.spilled_blocks || stats.spill_file_bytes || stats.broken) {
        fprintf(stderr, "disk %u: after the run %llu blocks buffered, %llu spilled, %llu spill file bytes%s\n", index,
                (unsigned long long)stats.buffered_blocks, (unsigned long long)stats.spilled_blocks,
                (unsigned long long)stats.spill_file_bytes, stats.broken ? ", broken" : "");
        abort();
    }
}

/* The device's load: commits a run whose records are all inside the disk,
 * refuses (and aborts) any other, which leaves the base as it was. */
static void load_run(struct fuzz_disk *fuzz, uint32_t index, const struct stream_reader *reader)
{
    memcpy(fuzz->view, fuzz->memory->bytes, disk_sizes[index]); /* the base before */
    bool inside = model_apply(fuzz, index, reader);
    struct error err;
    int result = secondary_disk_checkpoint_device.load(&fuzz->device, reader, &err);
    if (inside && result < 0) {
        fprintf(stderr, "disk %u: a run inside the disk was refused: %s\n", index, err.message);
        abort();
    }
    if (!inside && result == 0) {
        fprintf(stderr, "disk %u: a run with a record outside the disk was committed\n", index);
        abort();
    }
    if (memcmp(fuzz->memory->bytes, inside ? fuzz->expected : fuzz->view, disk_sizes[index]) != 0) {
        fprintf(stderr, "disk %u: the base after the %s differs from the model\n", index,
                inside ? "commit" : "refused run");
        abort();
    }
    check_buffer_empty(fuzz, index);
}

/* The records into the buffer one by one (those outside the disk must be
 * refused, the others taken), then an abort: the base does not change,
 * and the SVM never reads the buffer. */
static void buffer_and_abort(struct fuzz_disk *fuzz, uint32_t index, const struct stream_reader *reader)
{
    memcpy(fuzz->expected, fuzz->memory->bytes, disk_sizes[index]);
    size_t cursor = 0, length;
    const uint8_t *body;
    while (stream_received_disk_write_next(reader, &cursor, &body, &length)) {
        struct stream_disk_write write;
        stream_disk_write_fields(body, length, &write);
        if (write.disk != index)
            continue;
        struct error err;
        int result = secondary_disk_buffer_write(fuzz->disk, write.offset, write.data, write.length, &err);
        if ((result == 0) != disk_request_valid(disk_sizes[index], write.offset, write.length)) {
            fprintf(stderr, "disk %u: a write of %zu bytes at %llu %s\n", index, write.length,
                    (unsigned long long)write.offset, result == 0 ? "outside the disk taken" : "refused");
            abort();
        }
    }
    struct block_backend *svm = secondary_disk_backend(fuzz->disk);
    if (block_backend_read(svm, 0, fuzz->view, disk_sizes[index]) < 0 ||
        memcmp(fuzz->view, fuzz->expected, disk_sizes[index]) != 0) {
        fprintf(stderr, "disk %u: the SVM reads the buffer\n", index);
        abort();
    }
    secondary_disk_checkpoint_abort(fuzz->disk);
    if (memcmp(fuzz->memory->bytes, fuzz->expected, disk_sizes[index]) != 0) {
        fprintf(stderr, "disk %u: an aborted epoch changed the base\n", index);
        abort();
    }
    check_buffer_empty(fuzz, index);
}

/* ---- the seeds ---- */

/* A seed's records: DISK_WRITE (disk, offset, sectors of made-up bytes), a
 * CHECKPOINT_END (disk UINT32_MAX) or nothing more (the list's end). */
struct seed_record {
    uint32_t disk;
    uint64_t offset;
    uint32_t sectors;
};
#define SEED_CHECKPOINT_END \
    {                       \
        UINT32_MAX, 0, 0    \
    }

static void write_seed(const char *directory, const char *name, uint8_t mode, const struct seed_record *records,
                       size_t count, bool end)
{
    struct machine *machine = mode & 2 ? machine_two_disks : machine_one_disk;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", directory, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    struct stream_writer writer;
    struct error err;
    if (fd < 0 || write(fd, &mode, 1) != 1 || stream_writer_init(&writer, fd, &err) < 0)
        give_up("cannot write a seed", NULL);
    struct stream_header header = { STREAM_VERSION, machine_ram_size(machine), machine_configuration_hash(machine) };
    static const uint64_t pages[] = { 1 };
    bool written = stream_write_header(&writer, &header, &err) == 0 &&
                   stream_write_pages(&writer, machine, pages, 1, &err) == 0;
    static uint8_t data[16 * 4096];
    for (size_t at = 0; at < count && written; at++) {
        if (records[at].disk == UINT32_MAX) {
            written = stream_write_checkpoint_end(&writer, &err) == 0;
            continue;
        }
        for (size_t i = 0; i < records[at].sectors * 512u; i++)
            data[i] = (uint8_t)(at * 31 + i / 512 + i * 7);
        written = stream_write_disk_write(&writer, records[at].disk, records[at].offset, data,
                                          records[at].sectors * 512u, &err) == 0;
    }
    if (written && end)
        written = stream_write_end(&writer, &err) == 0;
    if (!written || stream_flush(&writer, &err) < 0 || close(fd) < 0)
        give_up("cannot write a seed", &err);
    stream_writer_destroy(&writer);
}

static void write_seeds(const char *directory)
{
    /* Disk 0 only: a checkpoint of three writes (one across two blocks),
     * then a last run with the disk's last sector. */
    static const struct seed_record one_disk[] = {
        { 0, 4096, 2 }, { 0, 0, 1 }, { 0, 3 * 4096 + 7 * 512, 3 }, SEED_CHECKPOINT_END, { 0, 65536 - 512, 1 },
    };
    write_seed(directory, "one-disk", 1, one_disk, sizeof one_disk / sizeof one_disk[0], true);
    /* Both disks: disk 1's writes pass its bound of two blocks, rewrite
     * spilled blocks, and reach its short last block. */
    static const struct seed_record two_disks[] = {
        { 1, 0, 8 * 3 },
        { 0, 8192, 8 },
        { 1, 5 * 4096, 8 * 4 },
        { 1, 6 * 4096 + 512, 2 },
        { 1, 10 * 4096, 3 },
        SEED_CHECKPOINT_END,
        /* the next epoch: blocks 1 and 9 spill after partial writes */
        { 1, 8 * 4096, 8 },
        { 1, 0, 8 },
        { 1, 4096 + 1024, 1 },
        { 1, 9 * 4096 + 3 * 512, 2 },
        { 1, 4096 + 2048, 2 },
        { 0, 0, 16 },
        SEED_CHECKPOINT_END,
    };
    write_seed(directory, "two-disks-spilling", 3, two_disks, sizeof two_disks / sizeof two_disks[0], true);
    /* The same buffered and aborted. */
    write_seed(directory, "two-disks-aborted", 7, two_disks, sizeof two_disks / sizeof two_disks[0], true);
    /* A write that runs past disk 1's end (refused, the run aborted) after
     * spilled ones; then a good run. */
    static const struct seed_record past_end[] = {
        { 1, 0, 8 * 4 }, { 0, 512, 1 }, { 1, 40 * 1024, 4 }, SEED_CHECKPOINT_END, { 1, 4096, 8 }, SEED_CHECKPOINT_END,
    };
    write_seed(directory, "past-disk-end", 3, past_end, sizeof past_end / sizeof past_end[0], true);
    /* Disk 0's write past its end, on the one-disk machine. */
    static const struct seed_record past_end_one[] = { { 0, 60 * 1024, 16 }, SEED_CHECKPOINT_END };
    write_seed(directory, "one-disk-past-end", 1, past_end_one, sizeof past_end_one / sizeof past_end_one[0], true);
    /* A checkpoint cut off before its CHECKPOINT_END: never loaded. */
    static const struct seed_record cut[] = { { 1, 0, 8 * 5 }, { 0, 0, 8 } };
    write_seed(directory, "cut-off", 3, cut, sizeof cut / sizeof cut[0], false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!created) {
        created = true;
        machine_one_disk = machine_with_disks(1);
        machine_two_disks = machine_with_disks(2);
        const char *seed_directory = getenv("COLO_FUZZ_WRITE_SEED");
        if (seed_directory) {
            write_seeds(seed_directory);
            exit(0);
        }
        disks_create();
        struct error err;
        input_fd = memfd_create("fuzz-disk-records", MFD_CLOEXEC);
        if (input_fd < 0 || stream_reader_init(&fresh_reader, input_fd, &err) < 0)
            give_up("reader", &err);
    }
    if (size == 0)
        return 0;
    bool fix_crcs = data[0] & 1;
    struct machine *machine = data[0] & 2 ? machine_two_disks : machine_one_disk;
    unsigned disk_count = data[0] & 2 ? 2 : 1;
    bool abort_epochs = data[0] & 4;
    data++, size--;
    if (fix_crcs && size > 0)
        data = fuzz_stream_with_crcs_fixed(data, size, &fixed_input, &fixed_capacity);
    if (ftruncate(input_fd, 0) < 0 || (size && pwrite(input_fd, data, size, 0) != (ssize_t)size) ||
        lseek(input_fd, 0, SEEK_SET) != 0)
        abort();

    /* Every input starts from the same disks, so that it does the same
     * whatever ran before it. */
    for (unsigned i = 0; i < DISK_COUNT; i++) {
        memcpy(disks[i].memory->bytes, disks[i].initial, disk_sizes[i]);
        check_buffer_empty(&disks[i], i);
    }
    struct stream_reader reader = fresh_reader;
    struct error err;
    struct stream_header expected = { STREAM_VERSION, machine_ram_size(machine), machine_configuration_hash(machine) };
    if (stream_read_header(&reader, &expected, &err) == 0) {
        for (unsigned run = 0; run < FUZZ_MAX_RUNS; run++) {
            uint32_t terminator = 0;
            if (stream_receive(&reader, machine, &terminator, &err) < 0)
                break; /* a run that did not arrive whole is never loaded */
            for (uint32_t i = 0; i < disk_count; i++) {
                if (abort_epochs)
                    buffer_and_abort(&disks[i], i, &reader);
                else
                    load_run(&disks[i], i, &reader);
            }
            if (terminator == STREAM_RECORD_END)
                break;
        }
    }
    fuzz_stream_keep_reader_memory(&fresh_reader, &reader);
    return 0;
}
