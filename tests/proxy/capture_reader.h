/* Reads the pcapng files proxy/compare_capture.c writes, for the tests:
 * checked as it writes them (a section header in this host's byte order,
 * the three interfaces by name, enhanced packets), each record copied
 * out with its interface and time; an epoch end's text parsed. */
#ifndef COLO_TESTS_PROXY_CAPTURE_READER_H
#define COLO_TESTS_PROXY_CAPTURE_READER_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare_capture.h"

struct record {
    enum compare_capture_interface interface;
    uint64_t time_us;
    uint8_t *data;
    uint32_t length;
};

/* An epoch end's text, parsed. */
struct epoch_end {
    int timeout;
    uint64_t released_matched, released_at_once, primary_frames, secondary_frames;
    uint64_t differences[OUTPUT_COMPARE_CAUSE_COUNT];
};

struct capture {
    const char *path;
    struct record *records;
    size_t count;
    bool full; /* the recording stopped at its bound: the last epoch is cut */
};

static uint32_t read32(const uint8_t *bytes)
{
    uint32_t value;
    memcpy(&value, bytes, 4);
    return value;
}

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    if (!file)
        return NULL;
    uint8_t *bytes = NULL;
    size_t used = 0, capacity = 0;
    for (;;) {
        if (used == capacity) {
            capacity = capacity ? capacity * 2 : 1u << 20;
            uint8_t *grown = realloc(bytes, capacity);
            if (!grown) {
                free(bytes);
                fclose(file);
                return NULL;
            }
            bytes = grown;
        }
        size_t got = fread(bytes + used, 1, capacity - used, file);
        used += got;
        if (got == 0)
            break;
    }
    fclose(file);
    *size = used;
    return bytes;
}

/* The pcapng blocks compare_capture.c writes, checked as it writes them:
 * a section header in this host's byte order, the three interfaces by
 * name, enhanced packets. Returns false with a message on anything else. */
static bool capture_load(struct capture *capture, const char *path)
{
    memset(capture, 0, sizeof *capture);
    capture->path = path;
    size_t size;
    uint8_t *bytes = read_file(path, &size);
    if (!bytes) {
        fprintf(stderr, "%s: cannot read it\n", path);
        return false;
    }
    bool ok = true;
    unsigned interfaces = 0;
    size_t at = 0, capacity = 0;
    while (ok && at < size) {
        if (size - at < 12) {
            fprintf(stderr, "%s: %zu stray bytes at its end\n", path, size - at);
            ok = false;
            break;
        }
        uint32_t type = read32(bytes + at), total = read32(bytes + at + 4);
        if (total < 12 || total % 4 || total > size - at || read32(bytes + at + total - 4) != total) {
            fprintf(stderr, "%s: a block at %zu has a bad length\n", path, at);
            ok = false;
            break;
        }
        const uint8_t *body = bytes + at + 8;
        size_t body_length = total - 12;
        if (type == COMPARE_CAPTURE_BLOCK_SECTION) {
            ok = at == 0 && body_length >= 4 && read32(body) == COMPARE_CAPTURE_BYTE_ORDER_MAGIC;
            if (!ok)
                fprintf(stderr, "%s: not a pcapng section in this host's byte order\n", path);
        } else if (type == COMPARE_CAPTURE_BLOCK_INTERFACE) {
            /* The name option comes first: its code, its length, the name. */
            uint16_t option[2] = { 0, 0 };
            if (body_length >= 12)
                memcpy(option, body + 8, 4);
            const char *want = compare_capture_interface_name(interfaces);
            ok = option[0] == COMPARE_CAPTURE_OPTION_NAME && option[1] == strlen(want) &&
                 body_length >= 12u + option[1] && memcmp(body + 12, want, option[1]) == 0;
            if (!ok)
                fprintf(stderr, "%s: interface %u is not \"%s\"\n", path, interfaces, want);
            interfaces++;
        } else if (type == COMPARE_CAPTURE_BLOCK_PACKET) {
            uint32_t interface = body_length >= 20 ? read32(body) : COMPARE_CAPTURE_INTERFACE_COUNT;
            uint32_t length = body_length >= 20 ? read32(body + 12) : 0;
            if (interface >= interfaces || interface >= COMPARE_CAPTURE_INTERFACE_COUNT || length > body_length - 20) {
                fprintf(stderr, "%s: a packet at %zu does not add up\n", path, at);
                ok = false;
                break;
            }
            if (capture->count == capacity) {
                capacity = capacity ? capacity * 2 : 4096;
                struct record *grown = realloc(capture->records, capacity * sizeof *grown);
                if (!grown)
                    abort();
                capture->records = grown;
            }
            struct record *record = &capture->records[capture->count++];
            record->interface = interface;
            record->time_us = (uint64_t)read32(body + 4) << 32 | read32(body + 8);
            record->length = length;
            record->data = malloc(length + 1u);
            if (!record->data)
                abort();
            memcpy(record->data, body + 20, length);
            record->data[length] = 0; /* an epoch end's text is a string */
            if (interface == COMPARE_CAPTURE_EPOCH_END && strncmp((char *)record->data, "capture full", 12) == 0)
                capture->full = true;
        }
        at += total;
    }
    free(bytes);
    if (ok && interfaces != COMPARE_CAPTURE_INTERFACE_COUNT) {
        fprintf(stderr, "%s: %u interfaces, not %d\n", path, interfaces, COMPARE_CAPTURE_INTERFACE_COUNT);
        ok = false;
    }
    return ok;
}

static void capture_free(struct capture *capture)
{
    for (size_t i = 0; i < capture->count; i++)
        free(capture->records[i].data);
    free(capture->records);
}

/* False for the bound's last record ("capture full: ..."). */
static bool parse_epoch_end(const struct record *record, struct epoch_end *end)
{
    uint64_t *d = end->differences;
    _Static_assert(OUTPUT_COMPARE_CAUSE_COUNT == 6, "the text lists six causes");
    return sscanf((const char *)record->data,
                  "epoch end: timeout=%d released_matched=%" SCNu64 " released_at_once=%" SCNu64 " differences=%" SCNu64
                  ",%" SCNu64 ",%" SCNu64 ",%" SCNu64 ",%" SCNu64 ",%" SCNu64 " primary_frames=%" SCNu64
                  " secondary_frames=%" SCNu64,
                  &end->timeout, &end->released_matched, &end->released_at_once, &d[0], &d[1], &d[2], &d[3], &d[4],
                  &d[5], &end->primary_frames, &end->secondary_frames) == 11;
}

#endif
