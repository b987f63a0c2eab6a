/* The stream: CRC-32C, a machine sent through a socketpair and rebuilt,
 * all-or-nothing on streams cut anywhere, every corrupted region rejected
 * with the right message, header mismatches, record shapes. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crc32c.h"
#include "machine_devices.h"
#include "stream.h"

#include "test_check.h"
#include "test_machine.h"

#define RAM_SIZE (2u << 20)
#define RAM_PAGES (RAM_SIZE / 4096u)
#define HART_ID 0x48415254u
#define UART_ID 0x55415254u

/* ---- helpers ---- */

static void die(const char *what, const struct error *err)
{
    fprintf(stderr, "FAIL: %s: %s\n", what, err ? err->message : strerror(errno));
    exit(1);
}

static struct machine *create_machine(void)
{
    return test_machine_create(&(struct test_machine_options){ .ram_size = RAM_SIZE, .deterministic_time = true });
}

static uint64_t random_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void)
{
    random_state ^= random_state << 13;
    random_state ^= random_state >> 7;
    random_state ^= random_state << 17;
    return random_state;
}

static void fill_random(void *data, size_t length)
{
    uint8_t *bytes = data;
    for (size_t i = 0; i < length; i++)
        bytes[i] = (uint8_t)next_random();
}

static void fill_page(struct machine *machine, uint64_t page)
{
    uint8_t data[4096];
    fill_random(data, sizeof data);
    if (machine_ram_write(machine, MACHINE_RAM_BASE + page * 4096, data, sizeof data) < 0)
        die("machine_ram_write", NULL);
}

/* Random RAM and a hart state that differs from a fresh machine's. */
static void make_interesting(struct machine *machine)
{
    for (uint64_t page = 0; page < RAM_PAGES; page++)
        fill_page(machine, page);
    struct hart_state *hart = &machine->harts[0].state;
    for (unsigned i = 1; i < 32; i++)
        hart->x[i] = next_random();
    hart->pc = MACHINE_RAM_BASE + 0x1230;
    hart->mscratch = 0x1122334455667788ull;
    machine->guest_clock = 123456789;
    machine->uart.state.scratch = 0x5a;
}

struct bytes {
    uint8_t *data;
    size_t length;
};

static struct bytes saved_state(struct machine *machine)
{
    struct state_writer writer;
    state_writer_init(&writer);
    machine_save_state(machine, &writer);
    if (writer.out_of_memory)
        die("machine_save_state", NULL);
    return (struct bytes){ writer.data, writer.length };
}

/* What a failed receive must not change. */
struct snapshot {
    uint64_t ram_hash;
    struct bytes state;
};

static struct snapshot take_snapshot(struct machine *machine)
{
    return (struct snapshot){ machine_ram_hash(machine), saved_state(machine) };
}

static bool snapshot_matches(struct machine *machine, const struct snapshot *snapshot)
{
    struct bytes now = saved_state(machine);
    bool same = machine_ram_hash(machine) == snapshot->ram_hash && now.length == snapshot->state.length &&
                memcmp(now.data, snapshot->state.data, now.length) == 0;
    free(now.data);
    return same;
}

static void append(struct bytes *stream, const void *data, size_t length)
{
    stream->data = realloc(stream->data, stream->length + length);
    if (!stream->data)
        die("realloc", NULL);
    if (length)
        memcpy(stream->data + stream->length, data, length);
    stream->length += length;
}

static void put_u32(uint8_t *p, uint32_t value)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(value >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t value)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(value >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A hand-made record (valid CRC, zero padding) for shapes the writer will
 * not produce. */
static void append_record(struct bytes *stream, uint32_t type, const void *body, uint32_t length)
{
    uint8_t header[16];
    put_u32(header, type);
    put_u32(header + 4, length);
    put_u32(header + 8, crc32c_extend(crc32c(header, 8), body, length));
    put_u32(header + 12, 0);
    append(stream, header, sizeof header);
    append(stream, body, length);
    static const uint8_t zeros[8];
    append(stream, zeros, (8 - length % 8) % 8);
}

static void append_header(struct bytes *stream, uint64_t ram_size, uint64_t configuration_hash)
{
    uint8_t header[32];
    memcpy(header, STREAM_MAGIC, 8);
    put_u32(header + 8, STREAM_VERSION);
    put_u32(header + 12, STREAM_HEADER_LENGTH);
    put_u64(header + 16, ram_size);
    put_u64(header + 24, configuration_hash);
    append(stream, header, sizeof header);
}

/* A descriptor to read these bytes from. */
static int fd_with(const uint8_t *data, size_t length)
{
    int fd = memfd_create("stream-test", MFD_CLOEXEC);
    if (fd < 0 || (length && write(fd, data, length) != (ssize_t)length) || lseek(fd, 0, SEEK_SET) != 0)
        die("memfd", NULL);
    return fd;
}

static struct bytes fd_contents(int fd)
{
    off_t size = lseek(fd, 0, SEEK_END);
    struct bytes contents = { malloc((size_t)size + 1), (size_t)size };
    if (size < 0 || pread(fd, contents.data, (size_t)size, 0) != size)
        die("reading back a memfd", NULL);
    return contents;
}

static struct stream_header header_for(const struct machine *machine)
{
    return (struct stream_header){ STREAM_VERSION, machine->ram.size, machine_configuration_hash(machine) };
}

/* Reads header + one stream_receive from the first `length` bytes. */
static int receive_prefix(const struct bytes *stream, size_t length, struct machine *target, uint32_t *terminator,
                          struct stream_reader *reader_out, struct error *err)
{
    int fd = fd_with(stream->data, length);
    struct stream_reader reader;
    if (stream_reader_init(&reader, fd, err) < 0)
        die("stream_reader_init", err);
    struct stream_header expected = header_for(target);
    int result = stream_read_header(&reader, &expected, err);
    if (result == 0)
        result = stream_receive(&reader, target, terminator, err);
    if (reader_out)
        *reader_out = reader;
    stream_reader_destroy(&reader);
    close(fd);
    return result;
}

static bool contains(const char *text, const char *part)
{
    return strstr(text, part) != NULL;
}

/* Offsets of the records of a well-formed stream (after the header). */
struct record_place {
    size_t offset;
    uint32_t type, length;
};

static size_t find_records(const struct bytes *stream, struct record_place *places, size_t max)
{
    size_t count = 0;
    for (size_t offset = STREAM_HEADER_LENGTH; offset < stream->length && count < max;) {
        uint32_t length = get_u32(stream->data + offset + 4);
        places[count++] = (struct record_place){ offset, get_u32(stream->data + offset), length };
        offset += 16 + ((length + 7u) & ~7u);
    }
    return count;
}

/* ---- CRC-32C ---- */

static void test_crc32c(void)
{
    CHECK(crc32c("123456789", 9) == 0xE3069283u, "CRC-32C(\"123456789\") = 0x%08x", crc32c("123456789", 9));
    CHECK(crc32c_extend_portable(0, "123456789", 9) == 0xE3069283u, "portable CRC of the test vector wrong");
    CHECK(crc32c("", 0) == 0, "CRC of nothing is not 0");
    /* RFC 3720 (iSCSI) B.4 vectors. */
    uint8_t block[32];
    memset(block, 0, sizeof block);
    CHECK(crc32c(block, 32) == 0x8A9136AAu, "32 zero bytes: 0x%08x", crc32c(block, 32));
    memset(block, 0xff, sizeof block);
    CHECK(crc32c(block, 32) == 0x62A8AB43u, "32 0xff bytes: 0x%08x", crc32c(block, 32));
    for (unsigned i = 0; i < 32; i++)
        block[i] = (uint8_t)i;
    CHECK(crc32c(block, 32) == 0x46DD794Eu, "bytes 0..31: 0x%08x", crc32c(block, 32));

    /* The fast path (lanes, joins, tails) against the tables, at every
     * alignment and around every lane boundary, and piecewise. */
    size_t size = 40000;
    uint8_t *data = malloc(size);
    fill_random(data, size);
    static const size_t lengths[] = { 0,    1,    7,    8,    9,    255,  256,  767,  768,  769,  1000,  4079, 4080,
                                      4081, 4096, 4104, 4112, 4847, 4848, 4849, 6144, 8160, 8928, 13000, 39000 };
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        for (size_t offset = 0; offset < 9; offset++) {
            uint32_t fast = crc32c(data + offset, lengths[l]);
            uint32_t tables = crc32c_extend_portable(0, data + offset, lengths[l]);
            CHECK(fast == tables, "length %zu offset %zu: %s gives 0x%08x, tables 0x%08x", lengths[l], offset,
                  crc32c_implementation(), fast, tables);
        }
    }
    for (unsigned trial = 0; trial < 200; trial++) {
        size_t length = next_random() % size;
        size_t split = length ? next_random() % length : 0;
        uint32_t whole = crc32c(data, length);
        uint32_t pieces = crc32c_extend(crc32c(data, split), data + split, length - split);
        uint32_t tables = crc32c_extend_portable(crc32c_extend_portable(0, data, split), data + split, length - split);
        CHECK(whole == pieces && whole == tables, "length %zu split %zu: 0x%08x 0x%08x 0x%08x", length, split, whole,
              pieces, tables);
    }
    free(data);
}

/* ---- a migration through a socketpair ---- */

struct migration {
    struct machine *source;
    int fd;
    uint64_t round_two_pages[40];
    uint64_t hash_after_round[2];
    int result;
    struct error err;
};

/* Sends: all pages + CHECKPOINT_END; 40 changed pages + CHECKPOINT_END;
 * 1500 pages (repeats, so split into records of 1024 and 476) with a
 * CHECKPOINT_STATE in between, the state, END. */
static void *send_migration(void *opaque)
{
    struct migration *migration = opaque;
    struct machine *source = migration->source;
    struct stream_writer writer;
    struct error *err = &migration->err;
    migration->result = -1;
    if (stream_writer_init(&writer, migration->fd, err) < 0)
        return NULL;
    uint64_t all[1500];
    for (size_t i = 0; i < 1500; i++)
        all[i] = (i * 7) % RAM_PAGES;
    struct stream_header header = header_for(source);
    if (stream_write_header(&writer, &header, err) < 0 ||
        stream_write_pages(&writer, source, all, RAM_PAGES, err) < 0 || stream_write_checkpoint_end(&writer, err) < 0 ||
        stream_flush(&writer, err) < 0)
        goto done;
    migration->hash_after_round[0] = machine_ram_hash(source);
    for (size_t i = 0; i < 40; i++) {
        migration->round_two_pages[i] = (i * 13) % RAM_PAGES;
        fill_page(source, migration->round_two_pages[i]);
    }
    migration->hash_after_round[1] = machine_ram_hash(source);
    if (stream_write_pages(&writer, source, migration->round_two_pages, 40, err) < 0 ||
        stream_write_checkpoint_end(&writer, err) < 0)
        goto done;
    for (size_t i = 0; i < 100; i++)
        fill_page(source, (i * 5) % RAM_PAGES);
    if (stream_write_pages(&writer, source, all, 700, err) < 0 || stream_write_checkpoint_state(&writer, 7, err) < 0 ||
        stream_write_pages(&writer, source, all + 700, 800, err) < 0 ||
        stream_write_machine_state(&writer, source, err) < 0 || stream_write_end(&writer, err) < 0 ||
        stream_flush(&writer, err) < 0)
        goto done;
    migration->result = 0;
done:
    stream_writer_destroy(&writer);
    shutdown(migration->fd, SHUT_WR);
    return NULL;
}

static void test_round_trip(void)
{
    struct machine *source = create_machine();
    struct machine *target = create_machine();
    make_interesting(source);
    struct bytes source_state = saved_state(source);
    struct bytes target_state_before = saved_state(target);
    CHECK(target_state_before.length != source_state.length ||
              memcmp(target_state_before.data, source_state.data, source_state.length) != 0,
          "the test machines start out equal");

    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
        die("socketpair", NULL);
    /* Both ends non-blocking: the writer and reader must wait, not fail. */
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    struct migration migration = { .source = source, .fd = fds[0] };
    pthread_t sender;
    pthread_create(&sender, NULL, send_migration, &migration);

    struct stream_reader reader;
    struct error err;
    if (stream_reader_init(&reader, fds[1], &err) < 0)
        die("stream_reader_init", &err);
    struct stream_header expected = header_for(target);
    CHECK(stream_read_header(&reader, &expected, &err) == 0, "header: %s", err.message);
    uint32_t terminator = 0;
    int result = stream_receive(&reader, target, &terminator, &err);
    CHECK(result == 0 && terminator == STREAM_RECORD_CHECKPOINT_END, "round 1: %d %u %s", result, terminator,
          result ? err.message : "");
    uint64_t round_one_hash = machine_ram_hash(target);
    struct bytes state_after_round_one = saved_state(target);
    CHECK(state_after_round_one.length == target_state_before.length &&
              memcmp(state_after_round_one.data, target_state_before.data, target_state_before.length) == 0,
          "a round of pages alone changed the machine state");
    result = stream_receive(&reader, target, &terminator, &err);
    CHECK(result == 0 && terminator == STREAM_RECORD_CHECKPOINT_END, "round 2: %s", result ? err.message : "");
    uint64_t round_two_hash = machine_ram_hash(target);
    result = stream_receive(&reader, target, &terminator, &err);
    CHECK(result == 0 && terminator == STREAM_RECORD_END, "last round: %s", result ? err.message : "");
    CHECK(reader.checkpoint_states_received == 1 && reader.recent_checkpoint_states[0] == 7,
          "CHECKPOINT_STATE inside the run not noted (%llu)", (unsigned long long)reader.checkpoint_states_received);
    struct stream_record record;
    CHECK(stream_read_record(&reader, &record, &err) == 0, "no clean end of file after END");
    pthread_join(sender, NULL);
    CHECK(migration.result == 0, "sender: %s", migration.err.message);
    CHECK(round_one_hash == migration.hash_after_round[0], "RAM after round 1 differs from the source's");
    CHECK(round_two_hash == migration.hash_after_round[1], "RAM after round 2 differs from the source's");
    CHECK(machine_ram_hash(target) == machine_ram_hash(source), "RAM differs after migration");
    struct bytes target_state = saved_state(target);
    CHECK(target_state.length == source_state.length &&
              memcmp(target_state.data, source_state.data, source_state.length) == 0,
          "machine state differs after migration");
    /* 512 + 40 + 1500 pages in 1 + 1 + (1 + 1 + 1) PAGE_DATA records. */
    CHECK(reader.pages_read == 2052, "pages_read %llu", (unsigned long long)reader.pages_read);
    CHECK(reader.rejected_records == 0, "rejected %llu", (unsigned long long)reader.rejected_records);
    stream_reader_destroy(&reader);
    close(fds[0]);
    close(fds[1]);
    free(source_state.data);
    free(target_state.data);
    free(target_state_before.data);
    free(state_after_round_one.data);
    test_machine_destroy(source);
    test_machine_destroy(target);
}

/* ---- the writer's record layout ---- */

static void test_writer_splits_pages(void)
{
    struct machine *machine = create_machine();
    make_interesting(machine);
    int fd = memfd_create("stream-test", MFD_CLOEXEC);
    struct stream_writer writer;
    struct error err;
    if (fd < 0 || stream_writer_init(&writer, fd, &err) < 0)
        die("writer", &err);
    uint64_t pages[2500];
    for (size_t i = 0; i < 2500; i++)
        pages[i] = (i * 3) % RAM_PAGES;
    struct stream_header header = header_for(machine);
    CHECK(stream_write_header(&writer, &header, &err) == 0 &&
              stream_write_pages(&writer, machine, pages, 2500, &err) == 0 && stream_write_end(&writer, &err) == 0 &&
              stream_flush(&writer, &err) == 0,
          "write: %s", err.message);
    CHECK(writer.pages_written == 2500, "pages_written %llu", (unsigned long long)writer.pages_written);
    uint64_t beyond = RAM_PAGES;
    CHECK(stream_write_pages(&writer, machine, &beyond, 1, &err) < 0 && contains(err.message, "outside RAM"),
          "the writer took a page index outside RAM");
    CHECK(writer.used == 0, "a refused page list left bytes in the buffer");
    uint64_t bytes_written = writer.bytes_written;
    stream_writer_destroy(&writer);
    CHECK(bytes_written == (uint64_t)lseek(fd, 0, SEEK_END), "bytes_written %llu, file has %lld",
          (unsigned long long)bytes_written, (long long)lseek(fd, 0, SEEK_END));

    lseek(fd, 0, SEEK_SET);
    struct stream_reader reader;
    if (stream_reader_init(&reader, fd, &err) < 0)
        die("reader", &err);
    CHECK(stream_read_header(&reader, &header, &err) == 0, "header: %s", err.message);
    static const uint32_t counts[] = { 1024, 1024, 452 };
    size_t first = 0;
    for (unsigned r = 0; r < 3; r++) {
        struct stream_record record;
        int got = stream_read_record(&reader, &record, &err);
        CHECK(got == 1 && record.type == STREAM_RECORD_PAGE_DATA && get_u32(record.body) == counts[r] &&
                  record.length == 8 + counts[r] * (8 + 4096),
              "record %u: got %d type %u length %u", r + 1, got, record.type, record.length);
        if (got != 1)
            break;
        for (uint32_t i = 0; i < counts[r]; i += 97) {
            uint64_t index = (uint64_t)get_u32(record.body + 8 + 8 * i) | (uint64_t)get_u32(record.body + 12 + 8 * i)
                                                                              << 32;
            CHECK(index == pages[first + i], "record %u page %u index %llu", r + 1, i, (unsigned long long)index);
            CHECK(memcmp(record.body + 8 + 8 * counts[r] + 4096 * (size_t)i, machine->ram.host + index * 4096, 4096) ==
                      0,
                  "record %u page %u contents", r + 1, i);
        }
        first += counts[r];
    }
    struct stream_record record;
    CHECK(stream_read_record(&reader, &record, &err) == 1 && record.type == STREAM_RECORD_END && record.length == 0,
          "END missing");
    CHECK(stream_read_record(&reader, &record, &err) == 0, "no clean end of file");
    CHECK(reader.bytes_read == bytes_written, "bytes_read %llu, written %llu", (unsigned long long)reader.bytes_read,
          (unsigned long long)bytes_written);
    stream_reader_destroy(&reader);
    close(fd);
    test_machine_destroy(machine);
}

/* Zero pages travel as PAGE_ZERO indices, the rest as PAGE_DATA; on the
 * target a PAGE_ZERO clears a page, and within a run the later copy of a
 * page wins whether it is zero or data. */
static void test_zero_pages(void)
{
    struct machine *source = create_machine();
    struct machine *target = create_machine();
    make_interesting(source);
    make_interesting(target);
    /* Every third page of the source is zero. */
    static const uint8_t zero_page[4096];
    for (uint64_t page = 0; page < RAM_PAGES; page += 3)
        machine_ram_write(source, MACHINE_RAM_BASE + page * 4096, zero_page, sizeof zero_page);
    int fd = memfd_create("stream-test", MFD_CLOEXEC);
    struct stream_writer writer;
    struct error err;
    if (fd < 0 || stream_writer_init(&writer, fd, &err) < 0)
        die("writer", &err);
    uint64_t pages[RAM_PAGES];
    for (uint64_t i = 0; i < RAM_PAGES; i++)
        pages[i] = i;
    struct stream_header header = header_for(target);
    CHECK(stream_write_header(&writer, &header, &err) == 0 &&
              stream_write_pages(&writer, source, pages, RAM_PAGES, &err) == 0 &&
              stream_write_checkpoint_end(&writer, &err) == 0,
          "write: %s", err.message);
    uint64_t zero_expected = (RAM_PAGES + 2) / 3;
    CHECK(writer.pages_written == RAM_PAGES && writer.zero_pages_written == zero_expected,
          "pages_written %llu, zero_pages_written %llu (expected %llu)", (unsigned long long)writer.pages_written,
          (unsigned long long)writer.zero_pages_written, (unsigned long long)zero_expected);

    /* A second run: page 1 data then zero, page 3 zero then data, page 4
     * data, zero, data (its first slot comes back). */
    uint64_t one = 1, three = 3, four = 4;
    uint8_t page_four[4096];
    CHECK(stream_write_pages(&writer, source, &one, 1, &err) == 0 &&
              stream_write_pages(&writer, source, &three, 1, &err) == 0 &&
              stream_write_pages(&writer, source, &four, 1, &err) == 0,
          "write: %s", err.message);
    machine_ram_write(source, MACHINE_RAM_BASE + 4096, zero_page, 4096);
    machine_ram_write(source, MACHINE_RAM_BASE + 4 * 4096, zero_page, 4096);
    CHECK(stream_write_pages(&writer, source, &one, 1, &err) == 0 &&
              stream_write_pages(&writer, source, &four, 1, &err) == 0,
          "write: %s", err.message);
    fill_page(source, 3);
    fill_page(source, 4);
    memcpy(page_four, source->ram.host + 4 * 4096, 4096);
    CHECK(stream_write_pages(&writer, source, &three, 1, &err) == 0 &&
              stream_write_pages(&writer, source, &four, 1, &err) == 0 &&
              stream_write_checkpoint_end(&writer, &err) == 0 && stream_flush(&writer, &err) == 0,
          "write: %s", err.message);
    stream_writer_destroy(&writer);
    struct bytes stream = fd_contents(fd);
    close(fd);

    /* The first run's records: PAGE_ZERO and PAGE_DATA windows of 512
     * pages (RAM_PAGES), zero indices exactly the multiples of 3. */
    struct record_place places[64];
    size_t record_count = find_records(&stream, places, 64);
    CHECK(record_count >= 3 && places[0].type == STREAM_RECORD_PAGE_ZERO && places[0].length == 8 + 8 * zero_expected &&
              places[1].type == STREAM_RECORD_PAGE_DATA && places[1].length == 8 + (RAM_PAGES - zero_expected) * 4104,
          "first run records: %zu, types %u %u", record_count, places[0].type, places[1].type);
    if (record_count >= 1 && places[0].type == STREAM_RECORD_PAGE_ZERO) {
        const uint8_t *body = stream.data + places[0].offset + 16;
        bool all_multiples = true;
        for (uint64_t i = 0; i < zero_expected; i++)
            all_multiples &= get_u32(body + 8 + 8 * i) == 3 * i;
        CHECK(all_multiples, "PAGE_ZERO indices are not the zero pages");
    }

    int in = fd_with(stream.data, stream.length);
    struct stream_reader reader;
    if (stream_reader_init(&reader, in, &err) < 0)
        die("reader", &err);
    uint32_t terminator = 0;
    CHECK(stream_read_header(&reader, &header, &err) == 0 && stream_receive(&reader, target, &terminator, &err) == 0,
          "first run: %s", err.message);
    CHECK(stream_receive(&reader, target, &terminator, &err) == 0 && terminator == STREAM_RECORD_CHECKPOINT_END,
          "second run: %s", err.message);
    CHECK(memcmp(target->ram.host + 4096, zero_page, 4096) == 0, "page 1: data then zero did not end zero");
    CHECK(memcmp(target->ram.host + 3 * 4096, source->ram.host + 3 * 4096, 4096) == 0,
          "page 3: zero then data did not end with the data");
    CHECK(memcmp(target->ram.host + 4 * 4096, page_four, 4096) == 0, "page 4: data, zero, data lost the last copy");
    CHECK(machine_ram_hash(target) == machine_ram_hash(source), "RAM differs after the zero-page runs");
    CHECK(reader.rejected_records == 0, "rejected %llu", (unsigned long long)reader.rejected_records);
    stream_reader_destroy(&reader);
    close(in);
    free(stream.data);
    test_machine_destroy(source);
    test_machine_destroy(target);
}

/* TCP_SHIFT records: what stream_write_tcp_shift writes, a run hands to
 * its caller whole (after a run that was applied, not after one that was
 * rejected); more entries than a record holds are refused. */
/* A writer on a new memory file; its descriptor. */
static int memory_writer(struct stream_writer *writer)
{
    struct error err;
    int fd = memfd_create("stream-test", MFD_CLOEXEC);
    if (fd < 0 || stream_writer_init(writer, fd, &err) < 0)
        die("writer", &err);
    return fd;
}

/* A reader of what the memory file holds, from its start. */
static void memory_reader(struct stream_reader *reader, int fd)
{
    struct error err;
    lseek(fd, 0, SEEK_SET);
    if (stream_reader_init(reader, fd, &err) < 0)
        die("reader", &err);
}

static void test_tcp_shift_records(void)
{
    struct machine *target = create_machine();
    struct stream_writer writer;
    struct error err;
    int fd = memory_writer(&writer);
    uint8_t entries[2 * STREAM_TCP_SHIFT_ENTRY_LENGTH];
    for (size_t i = 0; i < sizeof entries; i++)
        entries[i] = (uint8_t)(i * 7);
    put_u32(entries + STREAM_TCP_SHIFT_KEY_LENGTH, 3);
    put_u32(entries + STREAM_TCP_SHIFT_ENTRY_LENGTH + STREAM_TCP_SHIFT_KEY_LENGTH, 0);
    struct stream_header header = header_for(target);
    CHECK(stream_write_header(&writer, &header, &err) == 0 && stream_write_tcp_shift(&writer, entries, 2, &err) == 0 &&
              stream_write_checkpoint_end(&writer, &err) == 0 && stream_write_tcp_shift(&writer, entries, 0, &err) == 0,
          "write: %s", err.message);
    CHECK(stream_write_tcp_shift(&writer, entries, STREAM_MAX_TCP_SHIFT_ENTRIES + 1, &err) < 0 &&
              contains(err.message, "at most 4096"),
          "the writer took 4097 connections");
    /* The second run's flags are not a flag: rejected. */
    put_u32(entries + STREAM_TCP_SHIFT_KEY_LENGTH, 7);
    CHECK(stream_write_tcp_shift(&writer, entries, 1, &err) == 0 && stream_write_checkpoint_end(&writer, &err) == 0 &&
              stream_flush(&writer, &err) == 0,
          "write: %s", err.message);
    put_u32(entries + STREAM_TCP_SHIFT_KEY_LENGTH, 3);
    stream_writer_destroy(&writer);

    struct stream_reader reader;
    memory_reader(&reader, fd);
    uint32_t terminator = 0;
    CHECK(stream_read_header(&reader, &header, &err) == 0 && stream_receive(&reader, target, &terminator, &err) == 0,
          "run with a TCP shift: %s", err.message);
    size_t cursor = 0, length = 0;
    const uint8_t *got = NULL;
    CHECK(stream_received_tcp_shift_next(&reader, &cursor, &got, &length) && length == 8 + sizeof entries &&
              get_u32(got) == 2 && get_u32(got + 4) == 0 && memcmp(got + 8, entries, sizeof entries) == 0,
          "the TCP_SHIFT record came back different (length %zu)", length);
    CHECK(!stream_received_tcp_shift_next(&reader, &cursor, &got, &length), "a second TCP_SHIFT record appeared");
    CHECK(stream_receive(&reader, target, &terminator, &err) < 0 && contains(err.message, "unknown flags 0x00000007"),
          "a TCP shift with unknown flags was accepted: %s", err.message);
    cursor = 0;
    CHECK(!stream_received_tcp_shift_next(&reader, &cursor, &got, &length),
          "a rejected run's TCP shift was handed out");
    stream_reader_destroy(&reader);
    close(fd);
    test_machine_destroy(target);
}

/* MIRRORED: a run's count reaches its caller; a run without one says so;
 * a run that was rejected hands none out. */
static void test_mirrored_records(void)
{
    struct machine *target = create_machine();
    struct stream_writer writer;
    struct error err;
    int fd = memory_writer(&writer);
    struct stream_header header = header_for(target);
    CHECK(stream_write_header(&writer, &header, &err) == 0 &&
              stream_write_mirrored(&writer, 0x1234567890ull, &err) == 0 &&
              stream_write_checkpoint_end(&writer, &err) == 0 && stream_write_checkpoint_end(&writer, &err) == 0 &&
              stream_write_mirrored(&writer, 7, &err) == 0 && stream_write_checkpoint_state(&writer, 0, &err) == 0 &&
              stream_flush(&writer, &err) == 0,
          "write: %s", err.message);
    stream_writer_destroy(&writer);
    /* The third run ends without a terminator: cut off, rejected. */
    struct stream_reader reader;
    memory_reader(&reader, fd);
    uint32_t terminator = 0;
    CHECK(stream_read_header(&reader, &header, &err) == 0 && stream_receive(&reader, target, &terminator, &err) == 0,
          "run with MIRRORED: %s", err.message);
    CHECK(reader.mirrored_known && reader.mirrored_frames == 0x1234567890ull, "MIRRORED came back as %d, %llu",
          reader.mirrored_known, (unsigned long long)reader.mirrored_frames);
    CHECK(stream_receive(&reader, target, &terminator, &err) == 0 && !reader.mirrored_known,
          "a run without MIRRORED: %s, known %d", err.message, reader.mirrored_known);
    CHECK(stream_receive(&reader, target, &terminator, &err) < 0 && !reader.mirrored_known,
          "a run cut off after its MIRRORED handed it out");
    stream_reader_destroy(&reader);
    close(fd);
    test_machine_destroy(target);
}

/* OUTPUT records: the caller gets them, in order, after a run that was
 * applied, and not after one that was rejected. */
static void test_output_records(void)
{
    struct machine *target = create_machine();
    uint64_t hash = machine_configuration_hash(target);
    struct bytes stream = { 0 };
    append_header(&stream, RAM_SIZE, hash);
    uint8_t body[20 + 60];
    for (unsigned frame = 0; frame < 3; frame++) {
        memset(body, 0, sizeof body);
        put_u32(body, frame);                    /* nic */
        body[8] = (uint8_t)(0x10 + frame);       /* first header byte */
        memset(body + 20, 'a' + (int)frame, 60); /* the frame */
        append_record(&stream, STREAM_RECORD_OUTPUT, body, 20 + 10 * (frame + 1));
    }
    append_record(&stream, STREAM_RECORD_CHECKPOINT_END, NULL, 0);
    size_t first_run = stream.length;
    memset(body, 0, sizeof body);
    append_record(&stream, STREAM_RECORD_OUTPUT, body, 25);
    append_record(&stream, STREAM_RECORD_HART_STATE, body, 8); /* rejected: too short */

    int fd = fd_with(stream.data, stream.length);
    struct stream_reader reader;
    struct error err;
    if (stream_reader_init(&reader, fd, &err) < 0)
        die("reader", &err);
    struct stream_header expected = header_for(target);
    uint32_t terminator = 0;
    CHECK(stream_read_header(&reader, &expected, &err) == 0 && stream_receive(&reader, target, &terminator, &err) == 0,
          "run with output: %s", err.message);
    size_t cursor = 0, length = 0, count = 0;
    const uint8_t *got;
    while (stream_received_output_next(&reader, &cursor, &got, &length)) {
        CHECK(length == 20 + 10 * (count + 1) && get_u32(got) == count && got[8] == 0x10 + count &&
                  got[20] == 'a' + count && got[length - 1] == 'a' + count,
              "output record %zu differs", count);
        count++;
    }
    CHECK(count == 3, "%zu output records after the run, expected 3", count);
    CHECK(reader.bytes_read == first_run, "read %llu bytes, the first run has %zu",
          (unsigned long long)reader.bytes_read, first_run);
    CHECK(stream_receive(&reader, target, &terminator, &err) < 0, "a run with a bad record was accepted");
    cursor = 0;
    CHECK(!stream_received_output_next(&reader, &cursor, &got, &length), "a rejected run's output was handed out");
    stream_reader_destroy(&reader);
    close(fd);
    free(stream.data);
    test_machine_destroy(target);
}

/* ---- DISK_WRITE records ---- */

#define DISK_SIZE (4u << 20)

/* A machine with one disk over a sparse all-zero image; *image_fd is the
 * image, to check that nothing wrote it. */
static struct machine *create_machine_with_disk(int *image_fd)
{
    *image_fd = memfd_create("stream-test-disk", MFD_CLOEXEC);
    if (*image_fd < 0 || ftruncate(*image_fd, DISK_SIZE) < 0)
        die("disk image", NULL);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", *image_fd);
    return test_machine_create(
        &(struct test_machine_options){ .ram_size = RAM_SIZE, .deterministic_time = true, .disk_image = path });
}

static bool image_is_zero(int image_fd)
{
    static uint8_t image[DISK_SIZE];
    if (pread(image_fd, image, sizeof image, 0) != (ssize_t)sizeof image)
        die("reading the disk image", NULL);
    for (size_t i = 0; i < sizeof image; i++)
        if (image[i])
            return false;
    return true;
}

/* A disk-write sink that notes the offsets it was handed, and fails on
 * the record fail_at (1-based; 0: never). */
struct sink_log {
    uint64_t offsets[8];
    size_t count;
    size_t fail_at;
};

static int log_disk_write(void *opaque, const uint8_t *body, size_t length, struct error *err)
{
    struct sink_log *log = opaque;
    struct stream_disk_write write;
    stream_disk_write_fields(body, length, &write);
    if (++log->count == log->fail_at)
        return error_set(err, "the sink refuses record %zu", log->count);
    if (log->count <= 8)
        log->offsets[log->count - 1] = write.offset;
    return 0;
}

/* The DISK_WRITE records stream_received_disk_write_next hands out. */
static size_t received_disk_writes(const struct stream_reader *reader, struct stream_disk_write *writes, size_t max)
{
    size_t cursor = 0, length, count = 0;
    const uint8_t *body;
    while (stream_received_disk_write_next(reader, &cursor, &body, &length))
        if (count < max)
            stream_disk_write_fields(body, length, &writes[count++]);
        else
            count++;
    return count;
}

/* The writer refuses what cannot be a disk write, and buffers nothing. */
static void test_disk_write_writer_checks(void)
{
    struct stream_writer writer;
    struct error err;
    if (stream_writer_init(&writer, -1, &err) < 0)
        die("writer", &err);
    static uint8_t data[1024];
    struct {
        uint32_t disk;
        uint64_t offset;
        size_t length;
        const char *message;
    } cases[] = {
        { MACHINE_MAX_DISKS, 0, 512, "disk 4 cannot be written to the stream (a machine has at most 4 disks)" },
        { 0, 0, 0, "a disk write of 0 bytes is not a whole number of 512-byte sectors" },
        { 0, 0, 700, "a disk write of 700 bytes is not a whole number of 512-byte sectors" },
        { 0, 100, 512, "a disk write at offset 100 does not start on a 512-byte sector" },
        { 0, UINT64_MAX - 511, 1024,
          "a disk write of 1024 bytes at offset 18446744073709551104 runs past the end of any disk" },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int result = stream_write_disk_write(&writer, cases[c].disk, cases[c].offset, data, cases[c].length, &err);
        CHECK(result < 0 && strcmp(err.message, cases[c].message) == 0, "writer case %zu: \"%s\", expected \"%s\"", c,
              result < 0 ? err.message : "(accepted)", cases[c].message);
    }
    CHECK(writer.used == 0, "refused disk writes left %zu bytes buffered", writer.used);
    stream_writer_destroy(&writer);
}

/* Writer -> reader: the run's DISK_WRITE records come out in order, a long
 * write split into records of at most STREAM_MAX_DISK_WRITE, none of them
 * written to the machine's disk; a run cut off before its CHECKPOINT_END
 * (anywhere) hands out none; a disk the machine lacks is a bad record. */
static void test_disk_write_records(void)
{
    int image_fd;
    struct machine *target = create_machine_with_disk(&image_fd);
    static uint8_t small[512], large[STREAM_MAX_DISK_WRITE + 1024];
    memset(small, 'A', sizeof small);
    fill_random(large, sizeof large);

    int fd = memfd_create("stream-test", MFD_CLOEXEC);
    struct stream_writer writer;
    struct error err;
    if (fd < 0 || stream_writer_init(&writer, fd, &err) < 0)
        die("writer", &err);
    struct stream_header header = header_for(target);
    static const uint64_t pages[] = { 7 };
    fill_page(target, 7);
    CHECK(stream_write_header(&writer, &header, &err) == 0 &&
              stream_write_pages(&writer, target, pages, 1, &err) == 0 &&
              stream_write_disk_write(&writer, 0, 3 * 512, small, sizeof small, &err) == 0 &&
              stream_write_disk_write(&writer, 0, 1 << 20, large, sizeof large, &err) == 0 &&
              stream_write_checkpoint_end(&writer, &err) == 0 && stream_flush(&writer, &err) == 0,
          "writing disk writes: %s", err.message);
    size_t first_run_end = writer.bytes_written;
    CHECK(stream_write_disk_write(&writer, 0, 0, small, sizeof small, &err) == 0 &&
              stream_write_checkpoint_end(&writer, &err) == 0 && stream_flush(&writer, &err) == 0,
          "writing the second run: %s", err.message);
    stream_writer_destroy(&writer);
    struct bytes stream = fd_contents(fd);
    close(fd);
    test_machine_destroy(target);

    /* Whole: three records (the large write in two), in order. */
    target = create_machine_with_disk(&image_fd);
    struct snapshot before = take_snapshot(target);
    struct stream_reader reader;
    fd = fd_with(stream.data, stream.length);
    if (stream_reader_init(&reader, fd, &err) < 0)
        die("reader", &err);
    struct stream_header expected = header_for(target);
    uint32_t terminator = 0;
    CHECK(stream_read_header(&reader, &expected, &err) == 0 && stream_receive(&reader, target, &terminator, &err) == 0,
          "run with disk writes: %s", err.message);
    struct stream_disk_write writes[4];
    size_t count = received_disk_writes(&reader, writes, 4);
    CHECK(count == 3 && reader.disk_writes.count == 3, "%zu disk writes handed out, expected 3", count);
    if (count == 3) {
        CHECK(writes[0].disk == 0 && writes[0].offset == 3 * 512 && writes[0].length == 512 &&
                  memcmp(writes[0].data, small, 512) == 0,
              "first disk write differs (offset %llu, %zu bytes)", (unsigned long long)writes[0].offset,
              writes[0].length);
        CHECK(writes[1].offset == 1u << 20 && writes[1].length == STREAM_MAX_DISK_WRITE &&
                  memcmp(writes[1].data, large, STREAM_MAX_DISK_WRITE) == 0,
              "second disk write differs (offset %llu, %zu bytes)", (unsigned long long)writes[1].offset,
              writes[1].length);
        CHECK(writes[2].offset == (1u << 20) + STREAM_MAX_DISK_WRITE && writes[2].length == 1024 &&
                  memcmp(writes[2].data, large + STREAM_MAX_DISK_WRITE, 1024) == 0,
              "third disk write differs (offset %llu, %zu bytes)", (unsigned long long)writes[2].offset,
              writes[2].length);
    }
    CHECK(image_is_zero(image_fd), "stream_receive wrote a DISK_WRITE to the machine's disk");
    CHECK(!snapshot_matches(target, &before), "the run's page was not applied");
    CHECK(reader.bytes_read == first_run_end, "read %llu bytes, the first run ends at %zu",
          (unsigned long long)reader.bytes_read, first_run_end);
    stream_reader_destroy(&reader);
    close(fd);
    free(before.state.data);

    /* With a sink: each record is handed over as it is read, none staged;
     * a sink that fails ends the run with nothing applied. */
    for (int failing = 0; failing <= 1; failing++) {
        int sunk_image_fd;
        struct machine *sunk = create_machine_with_disk(&sunk_image_fd);
        struct snapshot untouched = take_snapshot(sunk);
        struct sink_log log = { .fail_at = failing ? 2 : 0 };
        fd = fd_with(stream.data, stream.length);
        if (stream_reader_init(&reader, fd, &err) < 0)
            die("reader", &err);
        reader.disk_write_sink = log_disk_write;
        reader.disk_write_sink_opaque = &log;
        int result = stream_read_header(&reader, &expected, &err) == 0
                         ? stream_receive(&reader, sunk, &terminator, &err)
                         : -1;
        if (!failing) {
            CHECK(result == 0 && log.count == 3 && log.offsets[0] == 3 * 512 && log.offsets[1] == 1u << 20 &&
                      log.offsets[2] == (1u << 20) + STREAM_MAX_DISK_WRITE,
                  "sink: %d, %zu records (%s)", result, log.count, result ? err.message : "");
            CHECK(received_disk_writes(&reader, writes, 4) == 0, "with a sink, disk writes were staged too");
        } else {
            CHECK(result < 0 && strstr(err.message, "the sink refuses record 2") && snapshot_matches(sunk, &untouched),
                  "a failing sink: %d \"%s\", the machine %s", result, result ? err.message : "",
                  snapshot_matches(sunk, &untouched) ? "untouched" : "changed");
        }
        stream_reader_destroy(&reader);
        close(fd);
        free(untouched.state.data);
        test_machine_destroy(sunk);
        close(sunk_image_fd);
    }

    /* Cut anywhere inside the second run (at and between records): that
     * run hands out nothing, and the first run's records are gone too. */
    for (size_t cut = first_run_end; cut < stream.length; cut += 8) {
        fd = fd_with(stream.data, cut);
        if (stream_reader_init(&reader, fd, &err) < 0)
            die("reader", &err);
        CHECK(stream_read_header(&reader, &expected, &err) == 0 &&
                  stream_receive(&reader, target, &terminator, &err) == 0,
              "first run: %s", err.message);
        CHECK(stream_receive(&reader, target, &terminator, &err) < 0, "run cut at byte %zu accepted", cut);
        CHECK(received_disk_writes(&reader, writes, 4) == 0 && reader.disk_writes.count == 0,
              "run cut at byte %zu hands out disk writes", cut);
        stream_reader_destroy(&reader);
        close(fd);
    }
    free(stream.data);

    /* A disk the machine does not have: a bad record, counted. */
    uint8_t body[16 + 512] = { 0 };
    put_u32(body, 1);
    stream = (struct bytes){ 0 };
    append_header(&stream, RAM_SIZE, machine_configuration_hash(target));
    append_record(&stream, STREAM_RECORD_DISK_WRITE, body, sizeof body);
    append_record(&stream, STREAM_RECORD_CHECKPOINT_END, NULL, 0);
    CHECK(receive_prefix(&stream, stream.length, target, &terminator, &reader, &err) < 0 &&
              strcmp(err.message, "record 1 (DISK_WRITE): disk 1 is outside the machine's 1 disks") == 0 &&
              reader.rejected_records == 1,
          "disk 1 of a one-disk machine: \"%s\"", err.message);
    /* stream_read_record alone (no machine yet) knows only the most any
     * machine has. */
    fd = fd_with(stream.data + STREAM_HEADER_LENGTH, stream.length - STREAM_HEADER_LENGTH);
    if (stream_reader_init(&reader, fd, &err) < 0)
        die("reader", &err);
    struct stream_record record;
    CHECK(stream_read_record(&reader, &record, &err) == 1 && record.type == STREAM_RECORD_DISK_WRITE,
          "disk 1 without a machine: %s", err.message);
    stream_reader_destroy(&reader);
    close(fd);
    free(stream.data);
    put_u32(body, MACHINE_MAX_DISKS);
    stream = (struct bytes){ 0 };
    append_record(&stream, STREAM_RECORD_DISK_WRITE, body, sizeof body);
    fd = fd_with(stream.data, stream.length);
    if (stream_reader_init(&reader, fd, &err) < 0)
        die("reader", &err);
    CHECK(stream_read_record(&reader, &record, &err) < 0 &&
              strcmp(err.message, "record 1 (DISK_WRITE): disk 4 is outside the machine's 4 disks") == 0 &&
              reader.rejected_records == 1,
          "disk 4 without a machine: \"%s\"", err.message);
    stream_reader_destroy(&reader);
    close(fd);
    free(stream.data);
    CHECK(image_is_zero(image_fd), "a rejected DISK_WRITE reached the machine's disk");
    test_machine_destroy(target);
    close(image_fd);
}

/* A small stream of every record type from an interesting machine. */
static struct bytes small_stream(struct machine *source, const struct machine *target)
{
    int fd = memfd_create("stream-test", MFD_CLOEXEC);
    struct stream_writer writer;
    struct error err;
    if (fd < 0 || stream_writer_init(&writer, fd, &err) < 0)
        die("writer", &err);
    static const uint64_t first_pages[] = { 3, 100, 511 }, more_pages[] = { 0, 100 };
    struct stream_header header = header_for(target);
    if (stream_write_header(&writer, &header, &err) < 0 ||
        stream_write_pages(&writer, source, first_pages, 3, &err) < 0 ||
        stream_write_checkpoint_state(&writer, 42, &err) < 0 ||
        stream_write_pages(&writer, source, more_pages, 2, &err) < 0 ||
        stream_write_machine_state(&writer, source, &err) < 0 || stream_write_end(&writer, &err) < 0 ||
        stream_flush(&writer, &err) < 0)
        die("writing the small stream", &err);
    stream_writer_destroy(&writer);
    struct bytes stream = fd_contents(fd);
    close(fd);
    return stream;
}

/* ---- all or nothing ---- */

static void test_cut_streams(void)
{
    struct machine *source = create_machine();
    struct machine *target = create_machine();
    make_interesting(source);
    struct bytes stream = small_stream(source, target);
    struct record_place places[64];
    size_t record_count = find_records(&stream, places, 64);
    CHECK(record_count >= 7 && places[record_count - 1].type == STREAM_RECORD_END, "small stream has %zu records",
          record_count);
    struct snapshot before = take_snapshot(target);

    /* Cut inside the header, at every record boundary, and inside every
     * part of every record. */
    size_t cuts[1024], cut_count = 0;
    for (size_t i = 0; i < STREAM_HEADER_LENGTH; i++)
        cuts[cut_count++] = i;
    for (size_t r = 0; r < record_count; r++) {
        size_t start = places[r].offset, padded = (places[r].length + 7u) & ~7u;
        cuts[cut_count++] = start; /* the boundary before it */
        static const size_t inside[] = { 1, 4, 8, 12, 15, 16, 17 };
        for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++)
            if (inside[i] < 16 + padded)
                cuts[cut_count++] = start + inside[i];
        if (padded) {
            cuts[cut_count++] = start + 16 + padded / 2;
            cuts[cut_count++] = start + 16 + places[r].length - 1;
            cuts[cut_count++] = start + 16 + padded - 1;
        }
    }
    size_t boundaries_checked = 0;
    for (size_t c = 0; c < cut_count; c++) {
        struct error err;
        uint32_t terminator;
        struct stream_reader reader;
        int result = receive_prefix(&stream, cuts[c], target, &terminator, &reader, &err);
        CHECK(result < 0, "stream cut at byte %zu accepted", cuts[c]);
        CHECK(snapshot_matches(target, &before), "stream cut at byte %zu changed the machine", cuts[c]);
        /* At a record boundary: the premature end is named as such. */
        for (size_t r = 0; r < record_count; r++) {
            if (cuts[c] == places[r].offset) {
                boundaries_checked++;
                char expected[100];
                snprintf(expected, sizeof expected, "stream ended before CHECKPOINT_END/END (after %zu records)", r);
                CHECK(strcmp(err.message, expected) == 0, "cut at record %zu: \"%s\"", r + 1, err.message);
            }
        }
    }

    CHECK(boundaries_checked == record_count, "cut at %zu of %zu record boundaries", boundaries_checked, record_count);

    /* The whole stream applies. */
    struct error err;
    uint32_t terminator = 0;
    CHECK(receive_prefix(&stream, stream.length, target, &terminator, NULL, &err) == 0 &&
              terminator == STREAM_RECORD_END,
          "whole small stream: %s", err.message);
    static const uint64_t sent[] = { 0, 3, 100, 511 };
    for (size_t i = 0; i < 4; i++)
        CHECK(memcmp(target->ram.host + sent[i] * 4096, source->ram.host + sent[i] * 4096, 4096) == 0,
              "page %llu not applied", (unsigned long long)sent[i]);
    CHECK(memcmp(target->ram.host + 4096, source->ram.host + 4096, 4096) != 0, "page 1 was not sent but matches");
    struct bytes source_state = saved_state(source), target_state = saved_state(target);
    CHECK(source_state.length == target_state.length &&
              memcmp(source_state.data, target_state.data, source_state.length) == 0,
          "state not applied");
    free(source_state.data);
    free(target_state.data);
    free(before.state.data);
    free(stream.data);
    test_machine_destroy(source);
    test_machine_destroy(target);
}

/* A later copy of a page in the same run wins; a pages-only checkpoint
 * applies; a bad state keeps the pages of its run out too. */
static void test_staging(void)
{
    struct machine *source = create_machine();
    struct machine *target = create_machine();
    make_interesting(source);
    int fd = memfd_create("stream-test", MFD_CLOEXEC);
    struct stream_writer writer;
    struct error err;
    if (fd < 0 || stream_writer_init(&writer, fd, &err) < 0)
        die("writer", &err);
    uint64_t page = 5;
    struct stream_header header = header_for(target);
    CHECK(stream_write_header(&writer, &header, &err) == 0 && stream_write_pages(&writer, source, &page, 1, &err) == 0,
          "write: %s", err.message);
    uint8_t first_copy[4096];
    memcpy(first_copy, source->ram.host + page * 4096, 4096);
    fill_page(source, page);
    CHECK(stream_write_pages(&writer, source, &page, 1, &err) == 0 && stream_write_checkpoint_end(&writer, &err) == 0 &&
              stream_flush(&writer, &err) == 0,
          "write: %s", err.message);
    stream_writer_destroy(&writer);
    struct bytes stream = fd_contents(fd);
    close(fd);
    uint32_t terminator = 0;
    CHECK(receive_prefix(&stream, stream.length, target, &terminator, NULL, &err) == 0 &&
              terminator == STREAM_RECORD_CHECKPOINT_END,
          "pages-only checkpoint: %s", err.message);
    CHECK(memcmp(target->ram.host + page * 4096, source->ram.host + page * 4096, 4096) == 0 &&
              memcmp(first_copy, source->ram.host + page * 4096, 4096) != 0,
          "the later copy of a page did not win");
    free(stream.data);

    /* pages + a state whose UART section has an unknown version + END */
    stream = small_stream(source, target);
    struct record_place places[64];
    size_t record_count = find_records(&stream, places, 64);
    bool corrupted = false;
    for (size_t r = 0; r < record_count; r++) {
        uint8_t *record = stream.data + places[r].offset;
        if (places[r].type == STREAM_RECORD_DEVICE_STATE && get_u32(record + 16) == UART_ID) {
            put_u32(record + 20, 99);
            put_u32(record + 8, crc32c_extend(crc32c(record, 8), record + 16, places[r].length));
            corrupted = true;
        }
    }
    CHECK(corrupted, "no UART record in the small stream");
    struct snapshot before = take_snapshot(target);
    CHECK(receive_prefix(&stream, stream.length, target, &terminator, NULL, &err) < 0 &&
              contains(err.message, "machine state in the stream was rejected"),
          "a state with a bad version: \"%s\"", err.message);
    CHECK(snapshot_matches(target, &before), "a rejected state let its pages through");
    free(before.state.data);
    free(stream.data);
    test_machine_destroy(source);
    test_machine_destroy(target);
}

/* ---- corruption: each region, each record ---- */

static void expect_rejected(const struct bytes *stream, struct machine *target, const struct snapshot *before,
                            const char *what, const char *expected_message, uint64_t expected_rejected)
{
    struct error err;
    uint32_t terminator;
    struct stream_reader reader;
    int result = receive_prefix(stream, stream->length, target, &terminator, &reader, &err);
    CHECK(result < 0, "%s: accepted", what);
    if (result < 0)
        CHECK(contains(err.message, expected_message), "%s: \"%s\", expected \"%s\"", what, err.message,
              expected_message);
    CHECK(reader.rejected_records == expected_rejected, "%s: rejected_records %llu", what,
          (unsigned long long)reader.rejected_records);
    CHECK(snapshot_matches(target, before), "%s: the machine changed", what);
}

static void test_corruption(void)
{
    struct machine *source = create_machine();
    struct machine *target = create_machine();
    make_interesting(source);
    struct bytes stream = small_stream(source, target);
    struct snapshot before = take_snapshot(target);
    char what[100], expected[160];

    /* The stream header: every byte. */
    for (size_t i = 0; i < STREAM_HEADER_LENGTH; i++) {
        stream.data[i] ^= 0x10;
        const char *message = i < 8    ? "not a colo stream"
                              : i < 12 ? "stream version"
                              : i < 16 ? "header length"
                              : i < 24 ? "stream is for a machine with"
                                       : "another machine configuration";
        snprintf(what, sizeof what, "header byte %zu", i);
        expect_rejected(&stream, target, &before, what, message, 0);
        stream.data[i] ^= 0x10;
    }

    struct record_place places[64];
    size_t record_count = find_records(&stream, places, 64);
    static const char *const names[] = {
        "", "PAGE_DATA", "HART_STATE", "DEVICE_STATE", "CHECKPOINT_STATE", "CHECKPOINT_END", "END"
    };
    for (size_t r = 0; r < record_count; r++) {
        uint8_t *record = stream.data + places[r].offset;
        uint32_t length = places[r].length, padded = (length + 7u) & ~7u;
        const char *name = names[places[r].type];
        struct flip_case {
            size_t offset;
            uint8_t flip;
            const char *region, *message;
        } cases[8];
        size_t case_count = 0;
        char unknown_type[40];
        snprintf(unknown_type, sizeof unknown_type, "(type %u): unknown record type", places[r].type | 0x80000000u);
        cases[case_count++] = (struct flip_case){ 3, 0x80, "type", unknown_type };
        cases[case_count++] = (struct flip_case){ 7, 0x80, "length", "is above the maximum" };
        cases[case_count++] = (struct flip_case){ 9, 0x01, "CRC", "CRC mismatch" };
        cases[case_count++] = (struct flip_case){ 14, 0x01, "reserved field", "reserved header field is 0x00010000" };
        if (length) {
            cases[case_count++] = (struct flip_case){ 16, 0x04, "first body byte", "CRC mismatch" };
            cases[case_count++] = (struct flip_case){ 16 + length / 2, 0x40, "middle body byte", "CRC mismatch" };
            cases[case_count++] = (struct flip_case){ 16 + length - 1, 0x01, "last body byte", "CRC mismatch" };
        }
        if (padded > length)
            cases[case_count++] = (struct flip_case){ 16 + padded - 1, 0x01, "padding", "padding byte" };
        for (size_t c = 0; c < case_count; c++) {
            record[cases[c].offset] ^= cases[c].flip;
            snprintf(what, sizeof what, "record %zu (%s) %s", r + 1, name, cases[c].region);
            if (cases[c].offset == 7)
                snprintf(expected, sizeof expected, "record %zu (%s): length %u is above the maximum %u", r + 1, name,
                         length ^ 0x80000000u, STREAM_MAX_RECORD_LENGTH);
            else if (cases[c].message == unknown_type)
                snprintf(expected, sizeof expected, "record %zu %s", r + 1, unknown_type);
            else
                snprintf(expected, sizeof expected, "record %zu (%s): %s", r + 1, name, cases[c].message);
            expect_rejected(&stream, target, &before, what, expected, 1);
            record[cases[c].offset] ^= cases[c].flip;
        }
    }
    /* Unchanged again, it still loads. */
    struct error err;
    uint32_t terminator;
    CHECK(receive_prefix(&stream, stream.length, target, &terminator, NULL, &err) == 0, "the restored stream: %s",
          err.message);
    free(before.state.data);
    free(stream.data);
    test_machine_destroy(source);
    test_machine_destroy(target);
}

/* ---- headers for another machine ---- */

static void expect_header_error(const struct bytes *stream, const struct stream_header *expected, const char *message)
{
    int fd = fd_with(stream->data, stream->length);
    struct stream_reader reader;
    struct error err;
    if (stream_reader_init(&reader, fd, &err) < 0)
        die("reader", &err);
    int result = stream_read_header(&reader, expected, &err);
    CHECK(result < 0 && strcmp(err.message, message) == 0, "header: \"%s\", expected \"%s\"",
          result < 0 ? err.message : "(accepted)", message);
    stream_reader_destroy(&reader);
    close(fd);
}

static void test_headers(void)
{
    struct stream_header ours = { STREAM_VERSION, 256ull << 20, 0x1234 };
    struct bytes stream = { 0 };
    append_header(&stream, 512ull << 20, 0x1234);
    expect_header_error(&stream, &ours, "stream is for a machine with 512 MiB of RAM, this one has 256 MiB");
    free(stream.data);

    stream = (struct bytes){ 0 };
    append_header(&stream, 256ull << 20, 0x1235);
    expect_header_error(&stream, &ours, "stream was made for another machine configuration (devices or MACs differ)");
    put_u32(stream.data + 8, 1);
    expect_header_error(&stream, &ours, "stream version 1 is not supported (this reader reads version 2)");
    put_u32(stream.data + 8, STREAM_VERSION);
    memcpy(stream.data, "COLOSAVE", 8);
    expect_header_error(&stream, &ours, "not a colo stream (it does not start with \"COLOSTRM\")");
    expect_header_error(&(struct bytes){ stream.data, 0 }, &ours, "the stream is empty (no header)");
    memcpy(stream.data, STREAM_MAGIC, 8);
    expect_header_error(&(struct bytes){ stream.data, 20 }, &ours,
                        "the stream ends inside its header (20 of 32 bytes)");
    free(stream.data);

    /* The writer's version field: 0 means the current version. */
    int fd = memfd_create("stream-test", MFD_CLOEXEC);
    struct stream_writer writer;
    struct error err;
    if (fd < 0 || stream_writer_init(&writer, fd, &err) < 0)
        die("writer", &err);
    struct stream_header zero_version = { 0, 256ull << 20, 0x1234 };
    CHECK(stream_write_header(&writer, &zero_version, &err) == 0 && stream_flush(&writer, &err) == 0, "write");
    stream_writer_destroy(&writer);
    stream = fd_contents(fd);
    close(fd);
    CHECK(stream.length == 32 && get_u32(stream.data + 8) == STREAM_VERSION, "version 0 not written as current");
    free(stream.data);
}

/* ---- records of the wrong shape (valid CRCs, so the shape check speaks) ---- */

static void page_one_index_outside(uint8_t *b)
{
    put_u32(b, 1);
    put_u64(b + 8, RAM_PAGES);
}

static void page_count_two(uint8_t *b)
{
    put_u32(b, 2);
}

static void page_count_one_reserved(uint8_t *b)
{
    put_u32(b, 1);
    put_u32(b + 4, 1);
}

static void uart_section(uint8_t *b)
{
    put_u32(b, UART_ID);
    put_u32(b + 4, 1);
    put_u32(b + 8, 4);
}

static void hart_section_short(uint8_t *b)
{
    put_u32(b, HART_ID);
    put_u32(b + 4, 1);
    put_u32(b + 8, 3);
}

static void disk_offset_unaligned(uint8_t *b)
{
    put_u64(b + 8, 100);
}

static void disk_offset_wraps(uint8_t *b)
{
    put_u64(b + 8, UINT64_MAX - 511);
}

static void machine_five_disks(uint8_t *b)
{
    put_u32(b + 12, 5);
}

static void machine_unused_nic_slot(uint8_t *b)
{
    b[88] = 0x52; /* a MAC in NIC slot 0 of a machine without NICs */
}

static void shift_field_reserved(uint8_t *b)
{
    put_u32(b, 1);
    put_u32(b + 4, 1);
}

static void shift_second_flags(uint8_t *b)
{
    put_u32(b, 2);
    put_u32(b + 8 + 68 + 48, 4);
}

static void refusal_text(uint8_t *b)
{
    memcpy(b, "no", 2);
}

static void test_record_shapes(void)
{
    struct machine *target = create_machine();
    struct snapshot before = take_snapshot(target);
    uint64_t hash = machine_configuration_hash(target);
    static uint8_t body[16 + STREAM_MAX_DISK_WRITE + 512 + 16]; /* the longest case: a DISK_WRITE too long */
    memset(body, 0, sizeof body);
    struct shape_case {
        uint32_t type;
        uint32_t length;
        void (*prepare)(uint8_t *);
        const char *message;
    } cases[48];
    size_t count = 0;
#define CASE(type_, length_, prepare_, message_) \
    cases[count++] = (struct shape_case){ type_, length_, prepare_, message_ }

    CASE(STREAM_RECORD_PAGE_DATA, 8 + 4104, page_one_index_outside,
         "record 1 (PAGE_DATA): page index 512 is outside RAM (512 pages)");
    CASE(STREAM_RECORD_PAGE_DATA, 8 + 4104, page_count_two,
         "record 1 (PAGE_DATA): page count 2 does not match the length 4112 (1 pages)");
    CASE(STREAM_RECORD_PAGE_DATA, 8 + 4104, page_count_one_reserved,
         "record 1 (PAGE_DATA): the field after the page count is 0x00000001, not zero");
    CASE(STREAM_RECORD_PAGE_DATA, 8 + 4104 + 1, NULL,
         "record 1 (PAGE_DATA): length 4113 is not 8 + count * 4104 for a count of 1 to 1024 pages");
    CASE(STREAM_RECORD_PAGE_DATA, 8, NULL,
         "record 1 (PAGE_DATA): length 8 is not 8 + count * 4104 for a count of 1 to 1024 pages");
    CASE(STREAM_RECORD_HART_STATE, 8, NULL, "record 1 (HART_STATE): length 8 is shorter than a section header (12)");
    CASE(STREAM_RECORD_HART_STATE, 16, uart_section,
         "record 1 (HART_STATE): section id 0x55415254 is not HART (0x48415254)");
    CASE(STREAM_RECORD_HART_STATE, 16, hart_section_short,
         "record 1 (HART_STATE): section length 3 does not match the record length 16 (12 + section)");
    CASE(STREAM_RECORD_DEVICE_STATE, 7, NULL,
         "record 1 (DEVICE_STATE): length 7 is shorter than a device id and version (8)");
    CASE(STREAM_RECORD_CHECKPOINT_STATE, 8, NULL, "record 1 (CHECKPOINT_STATE): length 8 is not 4");
    CASE(STREAM_RECORD_CHECKPOINT_END, 4, NULL, "record 1 (CHECKPOINT_END): length 4 is not 0");
    CASE(STREAM_RECORD_END, 1, NULL, "record 1 (END): length 1 is not 0");
    CASE(0, 0, NULL, "record 1 (type 0): unknown record type");
    CASE(16, 0, NULL, "record 1 (type 16): unknown record type");
    CASE(STREAM_RECORD_MIRRORED, 4, NULL, "record 1 (MIRRORED): length 4 is not 8");
    CASE(STREAM_RECORD_TCP_SHIFT, 7, NULL,
         "record 1 (TCP_SHIFT): length 7 is not 8 + count * 68 for a count of 0 to 4096 connections");
    CASE(STREAM_RECORD_TCP_SHIFT, 8 + 61, NULL,
         "record 1 (TCP_SHIFT): length 69 is not 8 + count * 68 for a count of 0 to 4096 connections");
    CASE(STREAM_RECORD_TCP_SHIFT, 8 + 68 * 4097, NULL,
         "record 1 (TCP_SHIFT): length 278604 is not 8 + count * 68 for a count of 0 to 4096 connections");
    CASE(STREAM_RECORD_TCP_SHIFT, 8 + 68, NULL,
         "record 1 (TCP_SHIFT): connection count 0 does not match the length 76");
    CASE(STREAM_RECORD_TCP_SHIFT, 8 + 68, shift_field_reserved,
         "record 1 (TCP_SHIFT): the field after the count is 0x00000001, not zero");
    CASE(STREAM_RECORD_TCP_SHIFT, 8 + 136, shift_second_flags,
         "record 1 (TCP_SHIFT): connection 1 has unknown flags 0x00000004");
    CASE(STREAM_RECORD_MACHINE, 0, NULL, "record 1 (MACHINE): length 0 is not 120");
    CASE(STREAM_RECORD_MACHINE, 120, machine_five_disks,
         "record 1 (MACHINE): 5 disks and 0 NICs, more than a machine has (4, 4)");
    CASE(STREAM_RECORD_MACHINE, 120, machine_unused_nic_slot,
         "record 1 (MACHINE): NIC slot 0 is not a MAC and 2 zero bytes");
    CASE(STREAM_RECORD_REFUSAL, 0, NULL, "record 1 (REFUSAL): length 0 is not 1 to 1024 bytes of text");
    CASE(STREAM_RECORD_REFUSAL, 1025, NULL, "record 1 (REFUSAL): length 1025 is not 1 to 1024 bytes of text");
    CASE(STREAM_RECORD_REFUSAL, 3, refusal_text, "record 1 (REFUSAL): the text has a NUL byte");
    CASE(STREAM_RECORD_REFUSAL, 2, refusal_text, "record 1 (REFUSAL): not allowed inside a run");
    CASE(STREAM_RECORD_DISK_HASHES, 24, NULL,
         "record 1 (DISK_HASHES): length 24 is not 24 + 16 * count bytes for a count of at least 1");
    CASE(STREAM_RECORD_DISK_HASHES, 24 + 20, NULL,
         "record 1 (DISK_HASHES): length 44 is not 24 + 16 * count bytes for a count of at least 1");
    CASE(STREAM_RECORD_DISK_HASHES, 24 + 16, NULL, "record 1 (DISK_HASHES): disk 0 is outside the machine's 0 disks");
    CASE(STREAM_RECORD_PAGE_ZERO, 16, page_one_index_outside,
         "record 1 (PAGE_ZERO): page index 512 is outside RAM (512 pages)");
    CASE(STREAM_RECORD_PAGE_ZERO, 16, page_count_two,
         "record 1 (PAGE_ZERO): page count 2 does not match the length 16 (1 pages)");
    CASE(STREAM_RECORD_PAGE_ZERO, 16, page_count_one_reserved,
         "record 1 (PAGE_ZERO): the field after the page count is 0x00000001, not zero");
    CASE(STREAM_RECORD_PAGE_ZERO, 8, NULL,
         "record 1 (PAGE_ZERO): length 8 is not 8 + count * 8 for a count of 1 to 1024 pages");
    CASE(STREAM_RECORD_PAGE_ZERO, 20, NULL,
         "record 1 (PAGE_ZERO): length 20 is not 8 + count * 8 for a count of 1 to 1024 pages");
    CASE(STREAM_RECORD_OUTPUT, 20, NULL, "record 1 (OUTPUT): length 20 is not 20 + a frame of 1 to 65664 bytes");
    CASE(STREAM_RECORD_OUTPUT, 20 + 65665, NULL,
         "record 1 (OUTPUT): length 65685 is not 20 + a frame of 1 to 65664 bytes");
    CASE(STREAM_RECORD_OUTPUT, 24, page_count_one_reserved,
         "record 1 (OUTPUT): the field after the NIC is 0x00000001, not zero");
    CASE(STREAM_RECORD_DISK_WRITE, 16, NULL,
         "record 1 (DISK_WRITE): length 16 is not 16 + 512 * count bytes of data for a count of 1 to 2048 sectors");
    CASE(STREAM_RECORD_DISK_WRITE, 16 + 700, NULL,
         "record 1 (DISK_WRITE): length 716 is not 16 + 512 * count bytes of data for a count of 1 to 2048 sectors");
    CASE(STREAM_RECORD_DISK_WRITE, 16 + STREAM_MAX_DISK_WRITE + 512, NULL,
         "record 1 (DISK_WRITE): length 1049104 is not 16 + 512 * count bytes of data for a count of 1 to 2048 "
         "sectors");
    CASE(STREAM_RECORD_DISK_WRITE, 16 + 512, page_count_one_reserved,
         "record 1 (DISK_WRITE): the field after the disk is 0x00000001, not zero");
    CASE(STREAM_RECORD_DISK_WRITE, 16 + 512, disk_offset_unaligned,
         "record 1 (DISK_WRITE): offset 100 is not a multiple of 512");
    CASE(STREAM_RECORD_DISK_WRITE, 16 + 1024, disk_offset_wraps,
         "record 1 (DISK_WRITE): offset 18446744073709551104 + 1024 bytes wraps around");
    CASE(STREAM_RECORD_DISK_WRITE, 16 + 512, NULL, "record 1 (DISK_WRITE): disk 0 is outside the machine's 0 disks");
    CASE(STREAM_RECORD_PAGE_ZERO, 8 + 8 * 1025, NULL,
         "record 1 (PAGE_ZERO): length 8208 is not 8 + count * 8 for a count of 1 to 1024 pages");
#undef CASE
    for (size_t c = 0; c < count; c++) {
        memset(body, 0, sizeof body);
        if (cases[c].prepare)
            cases[c].prepare(body);
        struct bytes stream = { 0 };
        append_header(&stream, RAM_SIZE, hash);
        append_record(&stream, cases[c].type, body, cases[c].length);
        append_record(&stream, STREAM_RECORD_END, NULL, 0);
        struct error err;
        uint32_t terminator;
        struct stream_reader reader;
        int result = receive_prefix(&stream, stream.length, target, &terminator, &reader, &err);
        CHECK(result < 0 && strcmp(err.message, cases[c].message) == 0, "case %zu: \"%s\", expected \"%s\"", c,
              result < 0 ? err.message : "(accepted)", cases[c].message);
        CHECK(reader.rejected_records == 1, "case %zu: rejected_records %llu", c,
              (unsigned long long)reader.rejected_records);
        CHECK(snapshot_matches(target, &before), "case %zu changed the machine", c);
        free(stream.data);
    }

    /* The last page of RAM is inside; a CHECKPOINT_STATE alone in a run is fine. */
    memset(body, 0, sizeof body);
    page_one_index_outside(body);
    put_u64(body + 8, RAM_PAGES - 1);
    memset(body + 16, 0xee, 4096);
    struct bytes stream = { 0 };
    append_header(&stream, RAM_SIZE, hash);
    append_record(&stream, STREAM_RECORD_PAGE_DATA, body, 8 + 4104);
    uint8_t id[4] = { 9, 0, 0, 0 };
    append_record(&stream, STREAM_RECORD_CHECKPOINT_STATE, id, 4);
    append_record(&stream, STREAM_RECORD_CHECKPOINT_END, NULL, 0);
    struct error err;
    uint32_t terminator = 0;
    struct stream_reader reader;
    CHECK(receive_prefix(&stream, stream.length, target, &terminator, &reader, &err) == 0 &&
              terminator == STREAM_RECORD_CHECKPOINT_END,
          "last page of RAM: %s", err.message);
    CHECK(target->ram.host[RAM_SIZE - 1] == 0xee, "last page not applied");
    CHECK(reader.checkpoint_states_received == 1 && reader.recent_checkpoint_states[0] == 9,
          "CHECKPOINT_STATE not noted");
    free(stream.data);
    free(before.state.data);
    test_machine_destroy(target);
}

/* MACHINE through a socket and back, field for field; the differences
 * between two descriptions in words, naming both sides. */
static void test_machine_descriptions(void)
{
    struct machine_description primary = {
        .ram_size = 512u << 20,
        .hart_count = 1,
        .disk_count = 2,
        .disk_sizes = { 1u << 30, 2147483648u },
        .disk_read_only = { false, true },
        .nic_count = 1,
        .nic_macs = { { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0x02 } },
        .has_rng = true,
    };
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
        die("socketpair", NULL);
    struct stream_writer writer;
    struct stream_reader reader;
    struct error err;
    if (stream_writer_init(&writer, fds[0], &err) < 0 || stream_reader_init(&reader, fds[1], &err) < 0)
        die("writer/reader", &err);
    CHECK(stream_write_machine(&writer, &primary, &err) == 0 && stream_write_refusal(&writer, "too small", &err) == 0 &&
              stream_flush(&writer, &err) == 0,
          "writing MACHINE and REFUSAL: %s", err.message);
    struct stream_record record;
    struct machine_description received;
    CHECK(stream_read_record(&reader, &record, &err) == 1 && record.type == STREAM_RECORD_MACHINE,
          "reading MACHINE: %s", err.message);
    stream_machine_fields(record.body, &received);
    CHECK(memcmp(&received, &primary, sizeof received) == 0, "MACHINE did not come back the same");
    char text[16];
    CHECK(stream_read_record(&reader, &record, &err) == 1 && record.type == STREAM_RECORD_REFUSAL,
          "reading REFUSAL: %s", err.message);
    stream_refusal_text(record.body, record.length, text, sizeof text);
    CHECK(strcmp(text, "too small") == 0, "REFUSAL text '%s'", text);
    stream_writer_destroy(&writer);
    stream_reader_destroy(&reader);
    close(fds[0]);
    close(fds[1]);

    char difference[1024];
    CHECK(!machine_description_difference(&primary, "secondary", &received, "primary", difference, sizeof difference) &&
              difference[0] == 0,
          "equal machines differ: '%s'", difference);
    struct machine_description secondary = primary;
    secondary.ram_size = 256u << 20;
    secondary.disk_sizes[1] = 1073741824u;
    secondary.disk_read_only[1] = false;
    secondary.nic_macs[0][5] = 0x03;
    secondary.has_rng = false;
    machine_description_difference(&secondary, "secondary", &primary, "primary", difference, sizeof difference);
    const char *expected = "the secondary's RAM is 256 MiB, the primary's 512 MiB; disk 1: the secondary's image is "
                           "1073741824 bytes, the primary's 2147483648; disk 1 is writable on the secondary, "
                           "read-only on the primary; nic 0: MAC 52:54:00:aa:bb:03 on the secondary, "
                           "52:54:00:aa:bb:02 on the primary; the secondary has no entropy device (virtio-rng), the "
                           "primary has one";
    CHECK(strcmp(difference, expected) == 0, "differences:\n  '%s'\nexpected\n  '%s'", difference, expected);
    secondary = primary;
    secondary.disk_count = 1;
    secondary.nic_count = 2;
    machine_description_difference(&secondary, "destination", &primary, "source", difference, sizeof difference);
    CHECK(strcmp(difference, "the destination has 1 disks, the source 2; the destination has 2 NICs, the source 1") ==
              0,
          "counts: '%s'", difference);
    /* A short buffer gets a cut sentence, never an overrun. */
    char small[20];
    machine_description_difference(&secondary, "destination", &primary, "source", small, sizeof small);
    CHECK(strlen(small) == sizeof small - 1, "cut short: '%s'", small);
}

/* A peer that went away is an error from stream_flush, not a SIGPIPE. */
static void test_peer_gone(void)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
        die("socketpair", NULL);
    close(fds[1]);
    struct stream_writer writer;
    struct error err;
    if (stream_writer_init(&writer, fds[0], &err) < 0)
        die("writer", &err);
    CHECK(stream_write_end(&writer, &err) == 0, "buffering a record failed");
    CHECK(stream_flush(&writer, &err) < 0 && contains(err.message, "cannot write the stream"),
          "writing to a closed socket: %s", err.message);
    CHECK(writer.used == 16, "the unsent record was dropped (%zu bytes left)", writer.used);
    stream_writer_destroy(&writer);
    close(fds[0]);
}

int main(void)
{
    test_crc32c();
    test_headers();
    test_record_shapes();
    test_writer_splits_pages();
    test_zero_pages();
    test_output_records();
    test_tcp_shift_records();
    test_mirrored_records();
    test_disk_write_writer_checks();
    test_disk_write_records();
    test_staging();
    test_cut_streams();
    test_corruption();
    test_round_trip();
    test_peer_gone();
    test_machine_descriptions();
    if (test_check_failures) {
        fprintf(stderr, "%d failure(s)\n", test_check_failures);
        return 1;
    }
    printf("stream: all tests passed (CRC-32C: %s)\n", crc32c_implementation());
    return 0;
}
