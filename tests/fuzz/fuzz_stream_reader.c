/* libFuzzer target: the stream reader (stream_read_header, then
 * stream_receive run after run) on arbitrary bytes. Any input may be
 * rejected, but never with a crash, and a run that is rejected must leave
 * the machine exactly as it was: same RAM, same saved state.
 *
 * The first byte of an input chooses how the rest is fed. Bit 0 clear: as
 * it is. Set: the harness first recomputes the CRC of every whole record
 * (walking them by their length fields), so that mutations get past the
 * CRC check to the checks behind it, the staging, and machine_load_state;
 * without that, nearly every mutation of a body would stop at "CRC
 * mismatch". Bit 1 chooses the machine: clear, one without disks; set,
 * one with a disk, so that DISK_WRITE records get past the disk index
 * check to the staging. Their receiver must then hand out only records
 * of the right shape, and never write them to the machine's disk.
 *
 * With COLO_FUZZ_WRITE_SEED=FILE in the environment, the first call writes
 * small valid streams to FILE (for the machine without disks) and
 * FILE-disk-writes (for the one with a disk, with DISK_WRITE records), and
 * two streams with DISK_WRITE records the receiver rejects:
 * FILE-disk-writes-cut (no CHECKPOINT_END) and FILE-disk-writes-no-disk
 * (for the machine without disks), then exits. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crc32c.h"
#include "fuzz_stream_support.h"
#include "fuzz_target.h"
#include "machine_devices.h"
#include "stream.h"
#include "tcp_sequence_shift.h"
#include "test_machine.h"

/* Small, so that comparing all of RAM after every run is cheap. */
#define FUZZ_RAM_SIZE (64u * 1024u)
/* Runs per input: enough to reach the later runs of a multi-round seed. */
#define FUZZ_MAX_RUNS 16

/* The image of the fuzzed disk: stays all zero (nothing writes it). */
#define FUZZ_DISK_SIZE (64u * 1024u)

/* The machine of the current input: one of the two below. */
static struct machine *machine;
static struct machine *machine_without_disks, *machine_with_disk;
static int disk_image_fd = -1;
static bool created;
static int input_fd = -1;
/* A freshly initialised reader on input_fd. Each input starts from a copy
 * of it (same buffer, zero counters) instead of stream_reader_init: the
 * 4 MiB record buffer costs little in a real run (it is mapped lazily) but
 * allocating and freeing it under ASan is most of the time of an input. */
static struct stream_reader fresh_reader;
static uint8_t ram_before[FUZZ_RAM_SIZE];
static uint8_t *fixed_input;
static size_t fixed_capacity;

static void save(struct state_writer *writer)
{
    state_writer_init(writer);
    machine_save_state(machine, writer);
    if (writer->out_of_memory)
        abort();
}

/* The state each machine was created with (deterministic time). */
static struct state_writer baseline_without_disks, baseline_with_disk;

static void load_baseline(void)
{
    struct error err;
    const struct state_writer *baseline = machine == machine_with_disk ? &baseline_with_disk : &baseline_without_disks;
    if (machine_load_state(machine, baseline->data, baseline->length, &err) < 0) {
        fprintf(stderr, "the baseline state does not load: %s\n", err.message);
        abort();
    }
}

/* Two runs with DISK_WRITE records for `target`: a checkpoint with a page
 * and two writes, and a last run with one write at the disk's end; `cut`
 * ends the stream before the first CHECKPOINT_END. On the machine without
 * disks the first DISK_WRITE is rejected (disk 0 is not there). */
static void write_disk_seed(const char *path, struct machine *target, bool cut)
{
    machine = target;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    /* CRCs fixed by the harness, and the machine to feed it to */
    const uint8_t mode = target == machine_with_disk ? 3 : 1;
    struct stream_writer writer;
    struct error err;
    if (fd < 0 || write(fd, &mode, 1) != 1 || stream_writer_init(&writer, fd, &err) < 0)
        abort();
    struct stream_header header = { STREAM_VERSION, machine->ram.size, machine_configuration_hash(machine) };
    uint8_t data[1024];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 13 + i / 512);
    static const uint64_t pages[] = { 1 };
    bool written = stream_write_header(&writer, &header, &err) == 0 &&
                   stream_write_pages(&writer, machine, pages, 1, &err) == 0 &&
                   stream_write_disk_write(&writer, 0, 4096, data, 1024, &err) == 0 &&
                   stream_write_disk_write(&writer, 0, 0, data, 512, &err) == 0;
    if (written && !cut)
        written = stream_write_checkpoint_end(&writer, &err) == 0 &&
                  stream_write_disk_write(&writer, 0, FUZZ_DISK_SIZE - 512, data, 512, &err) == 0 &&
                  stream_write_end(&writer, &err) == 0;
    if (!written || stream_flush(&writer, &err) < 0 || close(fd) < 0) {
        fprintf(stderr, "cannot write the disk seed: %s\n", err.message);
        abort();
    }
    stream_writer_destroy(&writer);
}

/* Two pre-copy rounds and a last one with the state. */
static void write_seed(const char *path)
{
    machine = machine_without_disks;
    for (unsigned i = 0; i < FUZZ_RAM_SIZE; i++)
        machine->ram.host[i] = (uint8_t)(i * 7 + i / 4096);
    memset(machine->ram.host + 7 * 4096, 0, 4096); /* a zero page: a PAGE_ZERO record */
    machine->harts[0].state.x[10] = 0x1234;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static const uint8_t mode = 1; /* CRCs fixed by the harness */
    struct stream_writer writer;
    struct error err;
    if (fd < 0 || write(fd, &mode, 1) != 1 || stream_writer_init(&writer, fd, &err) < 0)
        abort();
    struct stream_header header = { STREAM_VERSION, machine->ram.size, machine_configuration_hash(machine) };
    static const uint64_t first[] = { 0, 15 }, second[] = { 3, 7 }, last[] = { 15 };
    static const uint8_t output_header[12] = { 0 }, output_frame[60] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    /* A connection on port 7000 to 10.0.0.1:40000, shifted by 0x10000, its
     * timestamps by 0x2000000. */
    static const uint8_t shift_entry[STREAM_TCP_SHIFT_ENTRY_LENGTH] = {
        [5] = 0x1b, [6] = 0x58, [7] = 0x9c, [8] = 0x40,  [9] = 10, [12] = 2,
        [25] = 10,  [28] = 1,   [48] = 1,   [52] = 0x10, [58] = 1, [67] = 2,
    };
    if (stream_write_header(&writer, &header, &err) < 0 || stream_write_pages(&writer, machine, first, 2, &err) < 0 ||
        stream_write_checkpoint_end(&writer, &err) < 0 || stream_write_checkpoint_state(&writer, 3, &err) < 0 ||
        stream_write_pages(&writer, machine, second, 2, &err) < 0 ||
        stream_write_output(&writer, 0, output_header, output_frame, sizeof output_frame, &err) < 0 ||
        stream_write_tcp_shift(&writer, shift_entry, 1, &err) < 0 || stream_write_checkpoint_end(&writer, &err) < 0 ||
        stream_write_pages(&writer, machine, last, 1, &err) < 0 ||
        stream_write_machine_state(&writer, machine, &err) < 0 || stream_write_end(&writer, &err) < 0 ||
        stream_flush(&writer, &err) < 0 || close(fd) < 0) {
        fprintf(stderr, "cannot write the seed: %s\n", err.message);
        abort();
    }
    stream_writer_destroy(&writer);
}

/* After a run: its TCP_SHIFT records have the shape the reader promises,
 * and a secondary's shift takes each whole or not at all. */
static void check_tcp_shifts(const struct stream_reader *reader)
{
    static struct tcp_sequence_shift shift;
    static bool shift_ready;
    struct error err;
    if (!shift_ready && tcp_sequence_shift_init(&shift, STREAM_MAX_TCP_SHIFT_ENTRIES, &err) < 0)
        abort();
    shift_ready = true;
    size_t cursor = 0, length;
    const uint8_t *body;
    while (stream_received_tcp_shift_next(reader, &cursor, &body, &length)) {
        size_t count = (length - STREAM_TCP_SHIFT_PREFIX) / STREAM_TCP_SHIFT_ENTRY_LENGTH;
        if (length < STREAM_TCP_SHIFT_PREFIX || (length - STREAM_TCP_SHIFT_PREFIX) % STREAM_TCP_SHIFT_ENTRY_LENGTH ||
            count > STREAM_MAX_TCP_SHIFT_ENTRIES) {
            fprintf(stderr, "a staged TCP_SHIFT has a bad shape (%zu bytes)\n", length);
            abort();
        }
        int restored = tcp_sequence_shift_restore(&shift, body + STREAM_TCP_SHIFT_PREFIX, count, &err);
        if ((restored == 0) != (shift.counters.restored == count) || (restored < 0 && shift.counters.restored != 0)) {
            fprintf(stderr, "a TCP shift of %zu connections was taken in part (%llu)\n", count,
                    (unsigned long long)shift.counters.restored);
            abort();
        }
    }
}

/* After a run: its DISK_WRITE records have the shape the reader promises,
 * and the disk was not written. */
static void check_disk_writes(const struct stream_reader *reader)
{
    size_t cursor = 0, length, count = 0;
    const uint8_t *body;
    while (stream_received_disk_write_next(reader, &cursor, &body, &length)) {
        struct stream_disk_write fields;
        stream_disk_write_fields(body, length, &fields);
        if (fields.disk >= machine_disk_count(machine) || fields.length == 0 ||
            fields.length % STREAM_DISK_SECTOR_SIZE || fields.length > STREAM_MAX_DISK_WRITE ||
            fields.offset % STREAM_DISK_SECTOR_SIZE || fields.offset + fields.length < fields.offset) {
            fprintf(stderr, "a staged DISK_WRITE has a bad shape (disk %u, offset %llu, %zu bytes)\n", fields.disk,
                    (unsigned long long)fields.offset, fields.length);
            abort();
        }
        count++;
    }
    if (count != reader->disk_writes.count) {
        fprintf(stderr, "%zu DISK_WRITE records handed out, %zu staged\n", count, reader->disk_writes.count);
        abort();
    }
    if (machine == machine_with_disk) {
        static uint8_t image[FUZZ_DISK_SIZE];
        static const uint8_t zeros[FUZZ_DISK_SIZE];
        if (pread(disk_image_fd, image, sizeof image, 0) != (ssize_t)sizeof image ||
            memcmp(image, zeros, sizeof image) != 0) {
            fprintf(stderr, "stream_receive wrote to the disk\n");
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!created) {
        machine_without_disks = test_machine_create(&(struct test_machine_options){
            .ram_size = FUZZ_RAM_SIZE, .deterministic_time = true /* saved mtime must not drift */ });
        disk_image_fd = memfd_create("fuzz-stream-disk", MFD_CLOEXEC);
        if (disk_image_fd < 0 || ftruncate(disk_image_fd, FUZZ_DISK_SIZE) < 0)
            abort();
        char image_path[64];
        snprintf(image_path, sizeof image_path, "/proc/self/fd/%d", disk_image_fd);
        machine_with_disk = test_machine_create(&(struct test_machine_options){
            .ram_size = FUZZ_RAM_SIZE, .deterministic_time = true, .disk_image = image_path });
        struct error err;
        created = true;
        const char *seed = getenv("COLO_FUZZ_WRITE_SEED");
        if (seed) {
            char disk_seed[4096];
            write_seed(seed);
            snprintf(disk_seed, sizeof disk_seed, "%s-disk-writes", seed);
            write_disk_seed(disk_seed, machine_with_disk, false);
            snprintf(disk_seed, sizeof disk_seed, "%s-disk-writes-cut", seed);
            write_disk_seed(disk_seed, machine_with_disk, true);
            snprintf(disk_seed, sizeof disk_seed, "%s-disk-writes-no-disk", seed);
            write_disk_seed(disk_seed, machine_without_disks, false);
            exit(0);
        }
        machine = machine_without_disks;
        save(&baseline_without_disks);
        machine = machine_with_disk;
        save(&baseline_with_disk);
        input_fd = memfd_create("fuzz-stream", MFD_CLOEXEC);
        if (input_fd < 0 || stream_reader_init(&fresh_reader, input_fd, &err) < 0)
            abort();
    }
    if (size == 0)
        return 0;
    bool fix_crcs = data[0] & 1;
    machine = data[0] & 2 ? machine_with_disk : machine_without_disks;
    data++, size--;
    if (fix_crcs && size > 0)
        data = fuzz_stream_with_crcs_fixed(data, size, &fixed_input, &fixed_capacity);
    /* The input as a file the reader reads with read(), as from a socket. */
    if (ftruncate(input_fd, 0) < 0 || (size && pwrite(input_fd, data, size, 0) != (ssize_t)size) ||
        lseek(input_fd, 0, SEEK_SET) != 0)
        abort();

    /* Every input starts from the same machine state, so that an input
     * does the same whatever ran before it. */
    load_baseline();
    struct stream_reader reader = fresh_reader;
    struct error err;
    struct stream_header expected = { STREAM_VERSION, machine->ram.size, machine_configuration_hash(machine) };
    if (stream_read_header(&reader, &expected, &err) == 0) {
        for (unsigned run = 0; run < FUZZ_MAX_RUNS; run++) {
            struct state_writer before;
            save(&before);
            memcpy(ram_before, machine->ram.host, FUZZ_RAM_SIZE);
            uint32_t terminator = 0;
            int result = stream_receive(&reader, machine, &terminator, &err);
            /* A rejected run hands out nothing; an applied one only records
             * of the right shape, and wrote none of them to the disk. */
            check_disk_writes(&reader);
            check_tcp_shifts(&reader);
            if (result < 0 && reader.disk_writes.count != 0) {
                fprintf(stderr, "a rejected run left %zu DISK_WRITE records\n", reader.disk_writes.count);
                abort();
            }
            if (result < 0) {
                /* Rejected: nothing may have changed. */
                struct state_writer after;
                save(&after);
                if (after.length != before.length || memcmp(after.data, before.data, before.length) != 0) {
                    fprintf(stderr, "a rejected run changed the machine state: %s\n", err.message);
                    abort();
                }
                if (memcmp(ram_before, machine->ram.host, FUZZ_RAM_SIZE) != 0) {
                    fprintf(stderr, "a rejected run changed RAM: %s\n", err.message);
                    abort();
                }
                state_writer_free(&after);
            } else if (terminator != STREAM_RECORD_CHECKPOINT_END && terminator != STREAM_RECORD_END) {
                fprintf(stderr, "a run ended with record type %u\n", terminator);
                abort();
            } else if (!machine->config.deterministic_time) {
                /* The run loaded a state in real-time mode, where the saved
                 * mtime follows the host clock: two saves would differ with
                 * nothing changed. Back to deterministic time for the next
                 * run's comparison. */
                load_baseline();
            }
            state_writer_free(&before);
            if (result < 0 || terminator == STREAM_RECORD_END)
                break;
        }
    }
    fuzz_stream_keep_reader_memory(&fresh_reader, &reader);
    return 0;
}
