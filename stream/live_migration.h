/* Live migration over the stream: the source sends all of RAM while the VM
 * runs, then rounds of the pages dirtied meanwhile (dirty log), and once
 * the remaining set is small enough to send within the downtime limit (or
 * the rounds stop converging) it pauses the VM for a short stop-and-copy of
 * the last pages and the machine state. The destination applies each round
 * whole (stream_receive), and acknowledges once the final state is loaded,
 * so the source knows the VM runs there before it goes away.
 *
 * A failure on either side leaves the source VM running: the source turns
 * its dirty log off and resumes the VM if it had paused it. */
#ifndef COLO_STREAM_LIVE_MIGRATION_H
#define COLO_STREAM_LIVE_MIGRATION_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct machine;

struct migration_progress {
    unsigned round;           /* 0: the full copy */
    uint64_t pages_total;     /* pages of guest RAM */
    uint64_t pages_sent;      /* so far, all rounds */
    uint64_t pages_remaining; /* in this round */
    uint64_t bytes_sent;
    double megabytes_per_second; /* over the last round */
    bool stop_and_copy;          /* the VM is paused for the last round */
};

struct stream_writer;
struct stream_reader;

/* The CHECKPOINT_STATE id of the companion's request ("DSYN"). */
#define MIGRATION_COMPANION_REQUEST 0x4453594eu
/* The destination's CHECKPOINT_STATE that it takes the source's machine
 * ("MACH" reversed: "HCAM"), sent before what its companion sends; a
 * REFUSAL instead says why not. */
#define MIGRATION_MACHINE_ACCEPTED 0x4843414du
/* How long a source waits for that answer. */
#define MIGRATION_MACHINE_ANSWER_TIMEOUT_MS (60 * 1000)

/* What moves with the RAM when storage is not shared: the disks
 * (disk/disk_sync.h). A source with a companion starts with a run that
 * asks for it (MACHINE, a CHECKPOINT_STATE MIGRATION_COMPANION_REQUEST,
 * then CHECKPOINT_END): a destination with a companion compares the
 * machines and answers MIGRATION_MACHINE_ACCEPTED (or a REFUSAL), then
 * what its receive_start sends, instead of the run's acknowledgement; one without
 * refuses the migration (the source's read then fails), and so does a
 * destination with a companion whose source sends no request: both sides
 * must agree to copy the disks. Its records travel in the migration's own runs, so
 * the destination applies them with the same all-or-nothing rule, and its
 * last part goes in the stop-and-copy, with the VM paused, so the
 * destination's disks are the source's at the moment of the VM state it
 * gets. Every hook may be NULL; each returns 0 or -1 with err set. */
struct migration_companion {
    void *opaque;
    /* Source, after the header and the request, before the RAM's full
     * copy, VM running: reads what receive_start sent (on writer->fd),
     * then may send runs of its own, each ended by migration_end_round. */
    int (*before_copy)(void *opaque, struct stream_writer *writer, struct error *err);
    /* Source, in each pre-copy round, VM running: records that go in the
     * round, after its pages. */
    int (*round)(void *opaque, struct stream_writer *writer, struct error *err);
    /* Source, the stop-and-copy, VM paused: the last records, before the
     * machine state. */
    int (*stop_and_copy)(void *opaque, struct stream_writer *writer, struct error *err);
    /* Destination, on the source's request: sends the source what it
     * needs (on fd, which before_copy reads). */
    int (*receive_start)(void *opaque, int fd, struct error *err);
    /* Destination, after each run arrived whole and was applied, before it
     * is acknowledged: the run's records (stream_received_disk_write_next);
     * final is true for the last run (END): what it keeps must be durable
     * when this returns, the source stops its VM on the acknowledgement. */
    int (*run_received)(void *opaque, const struct stream_reader *reader, bool final, struct error *err);
};

struct migration_options {
    uint64_t max_downtime_microseconds; /* stop-and-copy target; default 5000 */
    unsigned max_rounds;                /* pre-copy rounds after the full copy; default 30 */
    /* Called from the migrating thread after every chunk of pages. */
    void (*progress)(void *opaque, const struct migration_progress *progress);
    void *progress_opaque;
    /* With a companion: called once the destination took the machine
     * (MIGRATION_MACHINE_ACCEPTED), before the companion's before_copy;
     * a COLO primary's "the initial copy has started". May be NULL;
     * gets progress_opaque. */
    void (*machine_accepted)(void *opaque);
    /* For a COLO primary (replication/colo_primary.c): on success, leave the
     * dirty log on (cleared at the pause, so it holds exactly what the VM
     * writes after the state that was sent) instead of turning it off. The
     * VM is left paused either way; the caller resumes it. Off by default. */
    bool keep_dirty_log;
    /* NULL: RAM and machine state only (shared storage). */
    const struct migration_companion *companion;
    /* May be NULL. Source, the stop-and-copy, VM paused, after the
     * companion's: records for whoever receives, which reads them off its
     * reader once the receive returned (the last run's staged records stay
     * until the next stream_receive): a COLO primary's checkpoint devices
     * (replication/checkpoint_device.h, initial_save). A destination that
     * does not look at them ignores them. Gets stop_and_copy_opaque. */
    int (*stop_and_copy_records)(void *opaque, struct stream_writer *writer, struct error *err);
    void *stop_and_copy_opaque;
};

struct migration_result {
    unsigned rounds; /* pre-copy rounds, the full copy included */
    uint64_t pages_sent, bytes_sent;
    uint64_t final_pages;  /* sent while paused */
    unsigned stop_retries; /* stop-and-copies turned back into pre-copy rounds */
    double total_seconds;
    double downtime_seconds; /* pause until the destination's acknowledgement */
    /* pause until the last byte was handed to the socket: what QEMU calls
     * its downtime (the destination's load is not in it) */
    double downtime_sent_seconds;
};

void migration_options_defaults(struct migration_options *options);

/* Source side. fd is a connected stream socket. The machine runs on
 * another thread (machine_run); on success it is left paused: the caller
 * stops it, the VM now runs at the destination. */
int migration_send(struct machine *machine, int fd, const struct migration_options *options,
                   struct migration_result *result, struct error *err);

/* For a companion's before_copy: ends a run of its own (CHECKPOINT_END)
 * and waits until the destination has applied it, so runs never pile up
 * in the destination's memory. */
int migration_end_round(struct stream_writer *writer, struct error *err);

/* Destination side: receives into a machine that is not running, and
 * acknowledges once the whole final state is applied. The caller then runs
 * the machine. */
int migration_receive(struct machine *machine, int fd, struct error *err);

/* The same, on a reader the caller owns (its fd is the connection), so the
 * caller can go on reading what follows the migration on that connection
 * with the same reader: a COLO secondary reads checkpoints after it. The
 * reader's header state (RAM size) stays set on success. */
int migration_receive_with_reader(struct machine *machine, struct stream_reader *reader, struct error *err);
/* The same with a companion (NULL: none), for a destination that takes
 * the disks too. */
int migration_receive_with_companion(struct machine *machine, struct stream_reader *reader,
                                     const struct migration_companion *companion, struct error *err);
/* The same, calling the two sides here_name and there_name ("secondary",
 * "primary") where a machine that differs is refused: with a companion,
 * the source describes its machine first (MACHINE), and this side answers
 * a difference with a REFUSAL naming each one ("the secondary's RAM is
 * 256 MiB, the primary's 512 MiB"), which migration_send reads instead of
 * MIGRATION_MACHINE_ACCEPTED and fails with ("refused: ..."); err has the
 * same words. */
int migration_receive_between(struct machine *machine, struct stream_reader *reader,
                              const struct migration_companion *companion, const char *here_name,
                              const char *there_name, struct error *err);

#endif
