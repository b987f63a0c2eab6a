/* libFuzzer target: the stream reader (stream_read_header, then
 * stream_receive run after run) on arbitrary bytes. Any input may be
 * rejected, but never with a crash, and a run that is rejected must leave
 * the machine exactly as it was: same RAM, same saved state.
 *
 * The first byte of an input chooses how the rest is fed. Even: as it is.
 * Odd: the harness first recomputes the CRC of every whole record (walking
 * them by their length fields), so that mutations get past the CRC check
 * to the checks behind it, the staging, and machine_load_state; without
 * that, nearly every mutation of a body would stop at "CRC mismatch".
 *
 * With COLO_FUZZ_WRITE_SEED=FILE in the environment, the first call writes
 * a small valid stream to FILE (the seed corpus) and exits. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crc32c.h"
#include "fuzz_target.h"
#include "machine_devices.h"
#include "stream.h"
#include "test_machine.h"

/* Small, so that comparing all of RAM after every run is cheap. */
#define FUZZ_RAM_SIZE (64u * 1024u)
/* Runs per input: enough to reach the later runs of a multi-round seed. */
#define FUZZ_MAX_RUNS 16

static struct machine *machine;
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

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A copy of the input with the CRC of every whole record made right. */
static const uint8_t *with_crcs_fixed(const uint8_t *data, size_t size)
{
    if (size > fixed_capacity) {
        fixed_input = realloc(fixed_input, size);
        if (!fixed_input)
            abort();
        fixed_capacity = size;
    }
    memcpy(fixed_input, data, size);
    for (size_t offset = STREAM_HEADER_LENGTH; offset < size && size - offset >= STREAM_RECORD_HEADER_LENGTH;) {
        uint8_t *record = fixed_input + offset;
        size_t length = get_u32(record + 4);
        if (length > size - offset - STREAM_RECORD_HEADER_LENGTH)
            break;
        uint32_t crc = crc32c_extend(crc32c(record, 8), record + STREAM_RECORD_HEADER_LENGTH, length);
        for (unsigned i = 0; i < 4; i++)
            record[8 + i] = (uint8_t)(crc >> (8 * i));
        offset += STREAM_RECORD_HEADER_LENGTH + ((length + 7) & ~(size_t)7);
    }
    return fixed_input;
}

static void save(struct state_writer *writer)
{
    state_writer_init(writer);
    machine_save_state(machine, writer);
    if (writer->out_of_memory)
        abort();
}

/* The state the machine was created with (deterministic time). */
static struct state_writer baseline;

static void load_baseline(void)
{
    struct error err;
    if (machine_load_state(machine, baseline.data, baseline.length, &err) < 0) {
        fprintf(stderr, "the baseline state does not load: %s\n", err.message);
        abort();
    }
}

/* Two pre-copy rounds and a last one with the state. */
static void write_seed(const char *path)
{
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
    if (stream_write_header(&writer, &header, &err) < 0 || stream_write_pages(&writer, machine, first, 2, &err) < 0 ||
        stream_write_checkpoint_end(&writer, &err) < 0 || stream_write_checkpoint_state(&writer, 3, &err) < 0 ||
        stream_write_pages(&writer, machine, second, 2, &err) < 0 ||
        stream_write_output(&writer, 0, output_header, output_frame, sizeof output_frame, &err) < 0 ||
        stream_write_checkpoint_end(&writer, &err) < 0 || stream_write_pages(&writer, machine, last, 1, &err) < 0 ||
        stream_write_machine_state(&writer, machine, &err) < 0 || stream_write_end(&writer, &err) < 0 ||
        stream_flush(&writer, &err) < 0 || close(fd) < 0) {
        fprintf(stderr, "cannot write the seed: %s\n", err.message);
        abort();
    }
    stream_writer_destroy(&writer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!created) {
        machine = test_machine_create(&(struct test_machine_options){
            .ram_size = FUZZ_RAM_SIZE, .deterministic_time = true /* saved mtime must not drift */ });
        struct error err;
        created = true;
        const char *seed = getenv("COLO_FUZZ_WRITE_SEED");
        if (seed) {
            write_seed(seed);
            exit(0);
        }
        save(&baseline);
        input_fd = memfd_create("fuzz-stream", MFD_CLOEXEC);
        if (input_fd < 0 || stream_reader_init(&fresh_reader, input_fd, &err) < 0)
            abort();
    }
    if (size == 0)
        return 0;
    bool fix_crcs = data[0] & 1;
    data++, size--;
    if (fix_crcs && size > 0)
        data = with_crcs_fixed(data, size);
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
    /* What the reader allocates as it goes (its page staging and its
     * buffer of OUTPUT records, both kept from run to run) was made in
     * this copy of the reader: the next input's copy reuses it. */
    fresh_reader.staging = reader.staging;
    fresh_reader.output = reader.output;
    fresh_reader.output_capacity = reader.output_capacity;
    return 0;
}
