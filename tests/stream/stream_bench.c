/* Stream throughput: CRC-32C speed of each implementation, and pages sent
 * from one machine to another through a socketpair (writer on one thread,
 * reader on another), with and without staging and applying them.
 *
 *   stream_bench [RAM MiB (default 256)] [rounds (default 3)] [transfer-only] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "crc32c.h"
#include "machine_devices.h"
#include "stream.h"
#include "test_machine.h"

static void die(const char *what, const struct error *err)
{
    fprintf(stderr, "stream_bench: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

static volatile uint32_t crc_sink;

static void bench_crc(const char *name, uint32_t (*crc)(uint32_t, const void *, size_t), size_t block)
{
    /* Best of five passes over 256 MiB: the fastest pass is the one the
     * other processes on the host disturbed least. */
    size_t total = 256u << 20;
    uint8_t *data = malloc(block);
    for (size_t i = 0; i < block; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    uint32_t value = 0;
    double best = 1e9;
    for (unsigned pass = 0; pass < 5; pass++) {
        double start = clock_monotonic_seconds();
        for (size_t done = 0; done < total; done += block)
            value = crc(value, data, block);
        double seconds = clock_monotonic_seconds() - start;
        if (seconds < best)
            best = seconds;
    }
    crc_sink = value;
    printf("  CRC-32C %-28s %8zu-byte blocks: %7.2f GB/s\n", name, block, (double)total / best / 1e9);
    free(data);
}

struct sender {
    struct machine *source;
    int fd;
    unsigned rounds;
    uint64_t *pages;
};

static void *send_rounds(void *opaque)
{
    struct sender *sender = opaque;
    struct stream_writer writer;
    struct error err;
    if (stream_writer_init(&writer, sender->fd, &err) < 0)
        die("writer", &err);
    struct stream_header header = { STREAM_VERSION, sender->source->ram.size,
                                    machine_configuration_hash(sender->source) };
    if (stream_write_header(&writer, &header, &err) < 0)
        die("header", &err);
    for (unsigned round = 0; round < sender->rounds; round++) {
        if (stream_write_pages(&writer, sender->source, sender->pages, sender->source->ram.page_count, &err) < 0 ||
            stream_write_checkpoint_end(&writer, &err) < 0 || stream_flush(&writer, &err) < 0)
            die("writing pages", &err);
    }
    stream_writer_destroy(&writer);
    shutdown(sender->fd, SHUT_WR);
    return NULL;
}

/* Sends every page of RAM `rounds` times; the receiver either applies each
 * round (stream_receive) or only reads and checks the records. */
static void bench_transfer(struct machine *source, struct machine *target, unsigned rounds, bool apply)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
        die("socketpair", NULL);
    uint64_t *pages = malloc(source->ram.page_count * sizeof *pages);
    for (uint64_t i = 0; i < source->ram.page_count; i++)
        pages[i] = i;
    struct sender sender = { source, fds[0], rounds, pages };
    double start = clock_monotonic_seconds();
    pthread_t thread;
    pthread_create(&thread, NULL, send_rounds, &sender);

    struct stream_reader reader;
    struct error err;
    if (stream_reader_init(&reader, fds[1], &err) < 0)
        die("reader", &err);
    struct stream_header expected = { STREAM_VERSION, target->ram.size, machine_configuration_hash(target) };
    if (stream_read_header(&reader, &expected, &err) < 0)
        die("header", &err);
    for (unsigned round = 0; round < rounds; round++) {
        if (apply) {
            uint32_t terminator;
            if (stream_receive(&reader, target, &terminator, &err) < 0)
                die("receive", &err);
        } else {
            struct stream_record record;
            do {
                if (stream_read_record(&reader, &record, &err) <= 0)
                    die("read", &err);
            } while (record.type != STREAM_RECORD_CHECKPOINT_END);
        }
    }
    double seconds = clock_monotonic_seconds() - start;
    pthread_join(thread, NULL);
    double megabytes = (double)reader.bytes_read / 1e6;
    printf("  pages through a socketpair, %-30s %6.0f MB in %.3f s: %6.0f MB/s (%.0f pages/s)\n",
           apply ? "staged and applied (receive):" : "read and checked only:", megabytes, seconds, megabytes / seconds,
           (double)reader.pages_read / seconds);
    if (apply && machine_ram_hash(target) != machine_ram_hash(source))
        die("RAM differs after the transfer", NULL);
    stream_reader_destroy(&reader);
    close(fds[0]);
    close(fds[1]);
    free(pages);
}

int main(int argc, char **argv)
{
    uint64_t ram_mib = argc > 1 ? strtoull(argv[1], NULL, 0) : 256;
    unsigned rounds = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 3;
    bool transfer_only = argc > 3 && strcmp(argv[3], "transfer-only") == 0;
    printf("stream benchmark (CRC-32C implementation: %s)\n", crc32c_implementation());
    if (!transfer_only) {
        bench_crc(crc32c_implementation(), crc32c_extend, 4112);
        bench_crc(crc32c_implementation(), crc32c_extend, 4202504);
        bench_crc("slicing-by-8 tables", crc32c_extend_portable, 4112);
        bench_crc("slicing-by-8 tables", crc32c_extend_portable, 4202504);
    }

    const struct test_machine_options options = { .ram_size = ram_mib << 20, .deterministic_time = true };
    struct machine *source = test_machine_create(&options);
    struct machine *target = test_machine_create(&options);
    uint64_t value = 0x9e3779b97f4a7c15ull;
    uint64_t *words = (uint64_t *)source->ram.host;
    for (uint64_t i = 0; i < source->ram.size / 8; i++) {
        value ^= value << 13, value ^= value >> 7, value ^= value << 17;
        words[i] = value;
    }
    printf("  %llu MiB of RAM, %u rounds of all pages\n", (unsigned long long)ram_mib, rounds);
    bench_transfer(source, target, rounds, false);
    bench_transfer(source, target, rounds, true);
    test_machine_destroy(source);
    test_machine_destroy(target);
    return 0;
}
