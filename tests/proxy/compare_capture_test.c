/* The comparator's recorder (proxy/compare_capture.h) against the tests'
 * reader (capture_reader.h): frames of both sides and epoch ends come back
 * in order with their interface, time, bytes and counters; the bound ends
 * the recording with a record that says so; a path that cannot be created
 * is an error naming it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_reader.h"
#include "test_check.h"

static char directory[] = "/tmp/colo-compare-capture-test.XXXXXX";

static void path_in_directory(char *path, size_t size, const char *name)
{
    snprintf(path, size, "%s/%s", directory, name);
}

static void test_round_trip(void)
{
    char path[128];
    path_in_directory(path, sizeof path, "round-trip.pcapng");
    struct compare_capture capture;
    struct error err;
    CHECK(compare_capture_open(&capture, path, &err) == 0, "open: %s", err.message);
    uint8_t frame[3000];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = (uint8_t)(i * 7);
    compare_capture_frame(&capture, OUTPUT_COMPARE_PRIMARY, 0x123456789aull, frame, 60);
    compare_capture_frame(&capture, OUTPUT_COMPARE_SECONDARY, 0x123456789bull, frame, 61);
    compare_capture_frame(&capture, OUTPUT_COMPARE_SECONDARY, 0x123456789cull, frame, sizeof frame);
    struct output_compare_counters counters = {
        .released_matched = 7, .released_at_once = 3, .primary_frames = 11, .secondary_frames = 13
    };
    counters.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT] = 2;
    counters.differences[OUTPUT_COMPARE_CAUSE_OVERFLOW] = 5;
    compare_capture_epoch_end(&capture, 0x123456789dull, true, &counters);
    compare_capture_close(&capture);

    struct capture read;
    CHECK(capture_load(&read, path), "the reader refused the file");
    CHECK(read.count == 4 && !read.full, "%zu records, full %d", read.count, read.full);
    if (read.count == 4) {
        const struct record *r = read.records;
        CHECK(r[0].interface == COMPARE_CAPTURE_PVM && r[0].time_us == 0x123456789aull && r[0].length == 60 &&
                  memcmp(r[0].data, frame, 60) == 0,
              "the PVM's frame");
        CHECK(r[1].interface == COMPARE_CAPTURE_SVM && r[1].length == 61 && memcmp(r[1].data, frame, 61) == 0,
              "the SVM's frame (a length not a multiple of 4)");
        CHECK(r[2].interface == COMPARE_CAPTURE_SVM && r[2].length == sizeof frame &&
                  memcmp(r[2].data, frame, sizeof frame) == 0,
              "a frame larger than the writer's stack buffer");
        struct epoch_end end;
        CHECK(r[3].interface == COMPARE_CAPTURE_EPOCH_END && parse_epoch_end(&r[3], &end), "the epoch end: '%s'",
              (const char *)r[3].data);
        CHECK(end.timeout == 1 && end.released_matched == 7 && end.released_at_once == 3 && end.primary_frames == 11 &&
                  end.secondary_frames == 13 && end.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT] == 2 &&
                  end.differences[OUTPUT_COMPARE_CAUSE_OVERFLOW] == 5 &&
                  end.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD] == 0,
              "the epoch end's counters: '%s'", (const char *)r[3].data);
    }
    capture_free(&read);
    unlink(path);
}

static void test_bound(void)
{
    char path[128];
    path_in_directory(path, sizeof path, "bound.pcapng");
    struct compare_capture capture;
    struct error err;
    CHECK(compare_capture_open(&capture, path, &err) == 0, "open: %s", err.message);
    capture.max_bytes = capture.bytes + 10 * 1024; /* room for about ten 1 KiB frames */
    uint8_t frame[1000] = { 0 };
    for (int i = 0; i < 100; i++)
        compare_capture_frame(&capture, OUTPUT_COMPARE_PRIMARY, (uint64_t)i, frame, sizeof frame);
    struct output_compare_counters counters = { 0 };
    compare_capture_epoch_end(&capture, 100, false, &counters);
    CHECK(capture.full && capture.bytes <= capture.max_bytes, "full %d, %llu bytes of at most %llu", capture.full,
          (unsigned long long)capture.bytes, (unsigned long long)capture.max_bytes);
    compare_capture_close(&capture);

    struct capture read;
    CHECK(capture_load(&read, path), "the reader refused the bounded file");
    CHECK(read.full && read.count >= 2 && read.count < 12, "%zu records, full %d", read.count, read.full);
    if (read.count >= 1) {
        const struct record *last = &read.records[read.count - 1];
        struct epoch_end end;
        CHECK(last->interface == COMPARE_CAPTURE_EPOCH_END && !parse_epoch_end(last, &end),
              "the last record says the capture is full: '%s'", (const char *)last->data);
    }
    capture_free(&read);
    unlink(path);
}

static void test_errors(void)
{
    char path[160];
    path_in_directory(path, sizeof path, "no/such/directory/capture.pcapng");
    struct compare_capture capture;
    struct error err;
    CHECK(compare_capture_open(&capture, path, &err) < 0 && strstr(err.message, path) && !capture.file,
          "a path that cannot be created: '%s'", err.message);
    compare_capture_close(&capture);                                                     /* no-op */
    compare_capture_frame(&capture, OUTPUT_COMPARE_PRIMARY, 0, (const uint8_t *)"x", 1); /* no-op */

    /* The reader refuses what is not such a file. */
    path_in_directory(path, sizeof path, "not-a-capture");
    FILE *file = fopen(path, "wb");
    CHECK(file != NULL, "cannot create %s", path);
    if (file) {
        fputs("this is not pcapng at all", file);
        fclose(file);
        struct capture read;
        CHECK(!capture_load(&read, path), "the reader took a text file");
        capture_free(&read);
        unlink(path);
    }
}

int main(void)
{
    if (!mkdtemp(directory)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_bound();
    test_errors();
    rmdir(directory);
    return test_check_finish("compare_capture_test");
}
