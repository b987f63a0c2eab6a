#include "colo_protocol.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "stream.h"
#include "stream_internal.h"

const char *colo_message_name(uint32_t id)
{
    switch (id) {
    case COLO_CHECKPOINT_NEW:
        return "CHECKPOINT_NEW";
    case COLO_CHECKPOINT_SVM_SUSPENDED:
        return "CHECKPOINT_SVM_SUSPENDED";
    case COLO_CHECKPOINT_SVM_READY:
        return "CHECKPOINT_SVM_READY";
    case COLO_CHECKPOINT_SVM_RESUMED:
        return "CHECKPOINT_SVM_RESUMED";
    case COLO_CHECKPOINT_HEARTBEAT:
        return "CHECKPOINT_HEARTBEAT";
    case COLO_PRIMARY_ENDING_POWEROFF:
        return "PRIMARY_ENDING(poweroff)";
    case COLO_PRIMARY_ENDING_QUIT:
        return "PRIMARY_ENDING(quit)";
    case COLO_PRIMARY_ENDING_REBOOT:
        return "PRIMARY_ENDING(reboot)";
    case COLO_SVM_ENDED:
        return "SVM_ENDED";
    case COLO_SWITCHOVER:
        return "SWITCHOVER";
    case COLO_SVM_TOOK_OVER:
        return "SVM_TOOK_OVER";
    case COLO_SVM_SWITCHOVER_REFUSED:
        return "SVM_SWITCHOVER_REFUSED";
    case COLO_PRECOPY_SENT:
        return "PRECOPY_SENT";
    case COLO_SVM_PRECOPY_RECEIVED:
        return "SVM_PRECOPY_RECEIVED";
    default:
        return NULL;
    }
}

const char *colo_ending_reason_name(enum colo_ending_reason reason)
{
    switch (reason) {
    case COLO_ENDING_POWEROFF:
        return "poweroff";
    case COLO_ENDING_QUIT:
        return "quit";
    case COLO_ENDING_REBOOT:
        return "reboot";
    }
    return "?";
}

enum colo_message colo_ending_message(enum colo_ending_reason reason)
{
    switch (reason) {
    case COLO_ENDING_POWEROFF:
        return COLO_PRIMARY_ENDING_POWEROFF;
    case COLO_ENDING_QUIT:
        return COLO_PRIMARY_ENDING_QUIT;
    case COLO_ENDING_REBOOT:
        return COLO_PRIMARY_ENDING_REBOOT;
    }
    abort(); /* not a reason */
}

bool colo_message_is_ending(uint32_t id, enum colo_ending_reason *reason)
{
    enum colo_ending_reason found;
    switch (id) {
    case COLO_PRIMARY_ENDING_POWEROFF:
        found = COLO_ENDING_POWEROFF;
        break;
    case COLO_PRIMARY_ENDING_QUIT:
        found = COLO_ENDING_QUIT;
        break;
    case COLO_PRIMARY_ENDING_REBOOT:
        found = COLO_ENDING_REBOOT;
        break;
    default:
        return false;
    }
    if (reason)
        *reason = found;
    return true;
}

int colo_send_message(struct stream_writer *writer, enum colo_message message, struct error *err)
{
    if (stream_write_checkpoint_state(writer, (uint32_t)message, err) < 0 || stream_flush(writer, err) < 0)
        return error_prefix(err, "cannot send %s: ", colo_message_name(message));
    return 0;
}

int colo_wait_readable(int fd, int timeout_ms)
{
    /* poll may be interrupted by signals: keep the deadline. */
    long long deadline = timeout_ms < 0 ? 0 : (long long)clock_monotonic_ms() + timeout_ms;
    for (;;) {
        int wait = -1;
        if (timeout_ms >= 0) {
            long long left = deadline - (long long)clock_monotonic_ms();
            wait = left > 0 ? (int)left : 0;
        }
        struct pollfd poll_fd = { .fd = fd, .events = POLLIN };
        int ready = poll(&poll_fd, 1, wait);
        if (ready > 0)
            return 1; /* POLLIN, POLLHUP or POLLERR: the read will tell */
        if (ready == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

int colo_wait_message(struct stream_reader *reader, enum colo_message expected, int timeout_ms, const char *context,
                      struct error *err)
{
    return colo_wait_message_or_ending(reader, expected, timeout_ms, context, NULL, err);
}

/* Reads the next message (after the disk writes streamed ahead of it):
 * 0 with its id, or -1 with an error naming what was awaited. */
static int read_message(struct stream_reader *reader, int timeout_ms, const char *context, const char *expected_name,
                        uint32_t *id, struct error *err)
{
    /* The timeout covers the wait for each record's first byte. The rest
     * of a 16-byte message follows at once; a peer that stalls inside one
     * is for the heartbeat to detect. Disk writes the primary streams
     * ahead of its next checkpoint go to the reader's sink, and the wait
     * goes on. */
    struct stream_record record;
    for (;;) {
        int readable = colo_wait_readable(reader->fd, timeout_ms);
        if (readable < 0)
            return error_set_errno(err, "%s: waiting for %s", context, expected_name);
        if (readable == 0)
            return error_set(err, "%s: timed out after %d ms waiting for %s", context, timeout_ms, expected_name);
        int got = stream_read_record(reader, &record, err);
        if (got < 0)
            return error_prefix(err, "%s: waiting for %s: ", context, expected_name);
        if (got == 0)
            return error_set(err, "%s: the peer closed the connection while we waited for %s", context, expected_name);
        if (record.type != STREAM_RECORD_DISK_WRITE || !reader->disk_write_sink)
            break;
        if (reader->disk_write_sink(reader->disk_write_sink_opaque, record.body, record.length, err) < 0)
            return error_prefix(err, "%s: a disk write streamed ahead of %s: ", context, expected_name);
    }
    if (record.type != STREAM_RECORD_CHECKPOINT_STATE)
        return error_set(err, "%s: waiting for %s, got a %s record", context, expected_name,
                         stream_record_type_name(record.type));
    *id = stream_get_u32(record.body);
    return 0;
}

static int unexpected_message(uint32_t id, const char *context, const char *expected_name, struct error *err)
{
    const char *name = colo_message_name(id);
    if (name)
        return error_set(err, "%s: waiting for %s, got %s", context, expected_name, name);
    return error_set(err, "%s: waiting for %s, got unknown message id %u", context, expected_name, id);
}

int colo_wait_message_or_ending(struct stream_reader *reader, enum colo_message expected, int timeout_ms,
                                const char *context, enum colo_ending_reason *reason, struct error *err)
{
    const char *expected_name = colo_message_name(expected);
    uint32_t id;
    if (read_message(reader, timeout_ms, context, expected_name, &id, err) < 0)
        return -1;
    if (id != (uint32_t)expected && reason && colo_message_is_ending(id, reason))
        return 1;
    if (id != (uint32_t)expected)
        return unexpected_message(id, context, expected_name, err);
    return 0;
}

int colo_wait_message_of(struct stream_reader *reader, const enum colo_message *accepted, size_t count, int timeout_ms,
                         const char *context, enum colo_message *got, struct error *err)
{
    const char *expected_name = colo_message_name(accepted[0]);
    uint32_t id;
    if (read_message(reader, timeout_ms, context, expected_name, &id, err) < 0)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (id == (uint32_t)accepted[i]) {
            *got = accepted[i];
            return 0;
        }
    }
    return unexpected_message(id, context, expected_name, err);
}
