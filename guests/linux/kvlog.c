// The KV store's append-only log on a raw block device; see kvlog.h for the
// format and the recovery rules.
#include "kvlog.h"

#include "guest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KV_LOG_MAGIC 0x31564b43u  // "CKV1" read as a little-endian u32
#define KV_LOG_HEADER_SIZE 20u

// --- CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) ---

static uint32_t crc_table[256];

static void init_crc_table(void) {
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 1) ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
        crc_table[byte] = crc;
    }
}

// Continues a CRC: start with crc = 0, feed the pieces in order.
static uint32_t crc32_update(uint32_t crc, const void *data, size_t length) {
    const unsigned char *bytes = data;
    crc = ~crc;
    for (size_t i = 0; i < length; i++)
        crc = crc_table[(crc ^ bytes[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

// --- Little-endian fields, independent of the host's byte order ---

static void put_u32(unsigned char *at, uint32_t value) {
    for (int i = 0; i < 4; i++)
        at[i] = (unsigned char)(value >> (8 * i));
}

static uint32_t get_u32(const unsigned char *at) {
    return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 | (uint32_t)at[3] << 24;
}

// Replay reads the log through a window of REPLAY_WINDOW bytes rather than
// with two small reads per record: thousands of system calls are what makes
// a restart slow on an emulated machine.
#define REPLAY_WINDOW (128u * 1024u)  // more than the largest record

struct replay_reader {
    int fd;
    unsigned char *window;
    uint64_t window_start;  // device offset of window[0]
    size_t window_length;   // valid bytes in window
};

// Returns the bytes [offset, offset + length) of the device, or NULL if they
// cannot be read. The pointer is valid until the next call.
static const unsigned char *replay_bytes(struct replay_reader *reader, uint64_t offset,
                                         size_t length) {
    if (offset < reader->window_start ||
        offset + length > reader->window_start + reader->window_length) {
        reader->window_start = offset;
        reader->window_length = 0;
        while (reader->window_length < length) {
            ssize_t got = pread(reader->fd, reader->window + reader->window_length,
                                REPLAY_WINDOW - reader->window_length,
                                (off_t)(offset + reader->window_length));
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                return NULL;
            reader->window_length += (size_t)got;
        }
    }
    return reader->window + (offset - reader->window_start);
}

bool kv_log_open(struct kv_log *log, const char *path, kv_log_apply_fn *apply, void *context) {
    init_crc_table();
    snprintf(log->path, sizeof log->path, "%s", path);
    log->end = 0;
    log->next_sequence = 1;
    // O_DSYNC: each write returns only after the data and a cache flush
    // reached the device, which is what an acknowledged SET promises.
    log->fd = open(path, O_RDWR | O_DSYNC | O_CLOEXEC);
    if (log->fd < 0) {
        guest_log("kvstore", "cannot open %s: %s; running without a disk", path, strerror(errno));
        return false;
    }
    off_t size = lseek(log->fd, 0, SEEK_END);
    log->device_size = size > 0 ? (uint64_t)size : 0;

    struct replay_reader reader = {.fd = log->fd, .window = malloc(REPLAY_WINDOW)};
    if (reader.window == NULL) {
        guest_log("kvstore", "out of memory for the replay");
        close(log->fd);
        log->fd = -1;
        return false;
    }
    uint64_t records = 0;
    const char *stop_reason = NULL;  // NULL: clean end of the log
    for (;;) {
        if (log->end + KV_LOG_HEADER_SIZE > log->device_size)
            break;
        const unsigned char *header = replay_bytes(&reader, log->end, KV_LOG_HEADER_SIZE);
        if (header == NULL)
            break;
        if (get_u32(header) != KV_LOG_MAGIC)
            break;
        uint32_t sequence = get_u32(header + 4);
        uint32_t key_length = get_u32(header + 8);
        uint32_t value_length = get_u32(header + 12);
        uint32_t stored_crc = get_u32(header + 16);
        if (sequence != log->next_sequence) {
            stop_reason = "out-of-sequence record";
            break;
        }
        if (key_length == 0 || key_length > KV_MAX_KEY_LENGTH ||
            value_length > KV_MAX_VALUE_LENGTH ||
            log->end + KV_LOG_HEADER_SIZE + key_length + value_length > log->device_size) {
            stop_reason = "record with impossible lengths";
            break;
        }
        size_t payload_length = key_length + value_length;
        // Read header and payload together: a refill would move the header.
        header = replay_bytes(&reader, log->end, KV_LOG_HEADER_SIZE + payload_length);
        if (header == NULL) {
            stop_reason = "unreadable record";
            break;
        }
        const unsigned char *payload = header + KV_LOG_HEADER_SIZE;
        uint32_t crc = crc32_update(0, header, 16);
        crc = crc32_update(crc, payload, payload_length);
        if (crc != stored_crc) {
            stop_reason = "record with a bad checksum";
            break;
        }
        apply(context, (const char *)payload, key_length, (const char *)payload + key_length,
              value_length);
        records++;
        log->next_sequence++;
        log->end += KV_LOG_HEADER_SIZE + payload_length;
    }
    free(reader.window);

    guest_log("kvstore", "%s: replayed %llu records, log is %llu of %llu bytes", path,
              (unsigned long long)records, (unsigned long long)log->end,
              (unsigned long long)log->device_size);
    if (stop_reason != NULL)
        guest_log("kvstore", "%s: ignored the log's tail at byte %llu (%s)", path,
                  (unsigned long long)log->end, stop_reason);
    return true;
}

int kv_log_append(struct kv_log *log, const char *key, size_t key_length, const char *value,
                  size_t value_length) {
    size_t record_length = KV_LOG_HEADER_SIZE + key_length + value_length;
    if (log->end + record_length > log->device_size)
        return ENOSPC;
    unsigned char *record = malloc(record_length);
    if (record == NULL)
        return ENOMEM;
    put_u32(record, KV_LOG_MAGIC);
    put_u32(record + 4, log->next_sequence);
    put_u32(record + 8, (uint32_t)key_length);
    put_u32(record + 12, (uint32_t)value_length);
    memcpy(record + KV_LOG_HEADER_SIZE, key, key_length);
    memcpy(record + KV_LOG_HEADER_SIZE + key_length, value, value_length);
    uint32_t crc = crc32_update(0, record, 16);
    crc = crc32_update(crc, record + KV_LOG_HEADER_SIZE, key_length + value_length);
    put_u32(record + 16, crc);

    int error = 0;
    size_t written = 0;
    while (written < record_length) {
        ssize_t result = pwrite(log->fd, record + written, record_length - written,
                                (off_t)(log->end + written));
        if (result < 0 && errno == EINTR)
            continue;
        if (result <= 0) {
            error = result < 0 ? errno : EIO;
            break;
        }
        written += (size_t)result;
    }
    free(record);
    // On failure the end does not move: the next record overwrites whatever
    // part of this one reached the disk, as replay would.
    if (error == 0) {
        log->end += record_length;
        log->next_sequence++;
    }
    return error;
}
