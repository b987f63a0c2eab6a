/* The COLO checkpoint protocol's messages (../../shared/DESIGN.md, "The
 * replication protocol"; docs/replication.md). Each message is one stream
 * CHECKPOINT_STATE record carrying a u32 id; the ids and their order are
 * the seed's (Xen's libxl COLO). Both directions of the one replication
 * connection carry records: primary -> secondary the live migration, the
 * messages and the checkpoints; secondary -> primary the messages only. */
#ifndef COLO_REPLICATION_COLO_PROTOCOL_H
#define COLO_REPLICATION_COLO_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct stream_reader;
struct stream_writer;

enum colo_message {
    COLO_CHECKPOINT_NEW = 0,           /* primary: a checkpoint starts */
    COLO_CHECKPOINT_SVM_SUSPENDED = 1, /* secondary: SVM paused, ready for the checkpoint */
    COLO_CHECKPOINT_SVM_READY = 2,     /* secondary: SVM built (first) or checkpoint applied */
    COLO_CHECKPOINT_SVM_RESUMED = 3,   /* secondary: SVM runs again */
    COLO_CHECKPOINT_HEARTBEAT = 4,     /* reserved for the cluster layer; not sent yet */
    /* primary: the VM ends on purpose, do not take over (PRIMARY_ENDING;
     * a message is one u32, so the reason is in the id). Sent between
     * checkpoints, after the last one completed. */
    COLO_PRIMARY_ENDING_POWEROFF = 5, /* the guest powered off (or ended by itself) */
    COLO_PRIMARY_ENDING_QUIT = 6,     /* `colo quit` on the primary */
    COLO_PRIMARY_ENDING_REBOOT = 7,   /* the guest rebooted; the primary runs on unprotected */
    COLO_SVM_ENDED = 8,               /* secondary: heard PRIMARY_ENDING; its SVM stops, no takeover */
    /* A planned switchover (`colo switchover`): the primary sends
     * SWITCHOVER right after a checkpoint's SVM_READY, with the PVM paused
     * for good and everything up to that checkpoint released by itself:
     * "take over now". The secondary reads it where it waits for the next
     * CHECKPOINT_NEW and answers SVM_TOOK_OVER once the SVM runs as the VM,
     * or SVM_SWITCHOVER_REFUSED (its log and status say why) and goes on as a
     * secondary. */
    COLO_SWITCHOVER = 9,
    COLO_SVM_TOOK_OVER = 10,
    COLO_SVM_SWITCHOVER_REFUSED = 11,
    /* A pre-copy that was large (colo_primary.c): the primary sends
     * PRECOPY_SENT inside the checkpoint's run right after the pre-copy,
     * and the secondary answers SVM_PRECOPY_RECEIVED once it has read and
     * staged everything before it. Only then does the primary pause the
     * PVM, so that the transfer of the pre-copy (and its cipher work over
     * TLS) happens while the PVM runs, not in its downtime. */
    COLO_PRECOPY_SENT = 12,
    COLO_SVM_PRECOPY_RECEIVED = 13,
};

/* Why a primary ends a protected VM on purpose (PRIMARY_ENDING). */
enum colo_ending_reason {
    COLO_ENDING_POWEROFF,
    COLO_ENDING_QUIT,
    COLO_ENDING_REBOOT,
};

/* "poweroff", "quit", "reboot". */
const char *colo_ending_reason_name(enum colo_ending_reason reason);
/* The PRIMARY_ENDING message that carries `reason`. */
enum colo_message colo_ending_message(enum colo_ending_reason reason);
/* True when id is a PRIMARY_ENDING message; its reason goes to *reason. */
bool colo_message_is_ending(uint32_t id, enum colo_ending_reason *reason);

/* "CHECKPOINT_NEW" etc., or NULL for an unknown id. */
const char *colo_message_name(uint32_t id);

/* Sends one message and flushes it (messages are small and someone waits
 * for each one: never leave them in the batch). */
int colo_send_message(struct stream_writer *writer, enum colo_message message, struct error *err);

/* Waits up to timeout_ms (negative: forever) for the next record, which
 * must be the CHECKPOINT_STATE `expected`; DISK_WRITE records before it
 * go to the reader's disk_write_sink when it has one (the primary streams
 * an epoch's disk writes ahead of its checkpoint), and the wait goes on. Anything else is an error that
 * names the expected message and `context` (the caller's state, e.g.
 * "secondary, RESUMED"): a timeout, end of stream, a corrupt record, a
 * record of another type, another message id. */
int colo_wait_message(struct stream_reader *reader, enum colo_message expected, int timeout_ms, const char *context,
                      struct error *err);
/* The same, but a PRIMARY_ENDING message instead of `expected` is no
 * error: 1, its reason in *reason (what a secondary waits with). */
int colo_wait_message_or_ending(struct stream_reader *reader, enum colo_message expected, int timeout_ms,
                                const char *context, enum colo_ending_reason *reason, struct error *err);
/* Waits like colo_wait_message for one message that must be one of the
 * `count` ids in `accepted`; the one that came goes to *got. Errors name
 * the first as the one awaited (the usual one: CHECKPOINT_NEW). */
int colo_wait_message_of(struct stream_reader *reader, const enum colo_message *accepted, size_t count, int timeout_ms,
                         const char *context, enum colo_message *got, struct error *err);

/* Waits up to timeout_ms (negative: forever) for fd to become readable (a
 * byte or end of file). 1: readable, 0: timed out, -1: poll failed. */
int colo_wait_readable(int fd, int timeout_ms);

#endif
