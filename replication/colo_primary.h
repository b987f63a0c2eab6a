/* The COLO primary: copies the running PVM to the secondary (a live
 * migration that leaves the dirty log on), then checkpoints it into the
 * SVM at every trigger for as long as the connection lasts
 * (docs/replication.md has the message sequence).
 *
 * The loop runs on its own thread and is plain sequential code with an
 * explicit state:
 *
 *   MIGRATING      the initial copy, until the SVM first runs
 *   RUNNING        the PVM runs, protected; waiting for a trigger
 *   CHECKPOINTING  from CHECKPOINT_NEW until the SVM runs again
 *
 * The PVM runs on a run thread the caller owns (machine_run); the loop
 * pauses and resumes it around the migration's stop-and-copy and each
 * checkpoint. */
#ifndef COLO_REPLICATION_COLO_PRIMARY_H
#define COLO_REPLICATION_COLO_PRIMARY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint_device.h"
#include "colo_protocol.h"
#include "error.h"
#include "live_migration.h"
#include "stream.h"

struct machine;

enum colo_primary_state {
    COLO_PRIMARY_MIGRATING,
    COLO_PRIMARY_RUNNING,
    COLO_PRIMARY_CHECKPOINTING,
};

const char *colo_primary_state_name(enum colo_primary_state state);

/* What started a checkpoint. */
enum colo_checkpoint_trigger {
    COLO_TRIGGER_INTERVAL, /* max_interval_ms passed */
    COLO_TRIGGER_REQUEST,  /* colo_primary_request_checkpoint */
    COLO_TRIGGER_OUTPUT,   /* held output waited its longest (colo_primary_request_checkpoint_within) */
};

const char *colo_checkpoint_trigger_name(enum colo_checkpoint_trigger trigger);

/* One checkpoint, as the loop saw it: where the PVM's pause went. */
struct colo_checkpoint_report {
    uint64_t number; /* 1, 2, ... */
    enum colo_checkpoint_trigger trigger;
    uint64_t dirty_pages;      /* sent (zero pages included; a page sent in the
                                  pre-copy and again while paused counts twice) */
    uint64_t precopy_pages;    /* of those, sent before the pause */
    uint64_t bytes;            /* sent for it */
    unsigned precopy_rounds;   /* 0: no pre-copy; see colo_primary_options.precopy_confirm_bytes */
    bool precopy_confirmed;    /* the secondary had (most of) the pre-copy before the pause */
    uint64_t confirm_us;       /* PVM running: the pre-copy's rounds, sent and confirmed */
    bool resumed_before_ready; /* the PVM ran on while the secondary applied */
    uint64_t downtime_us;      /* PVM paused, pause to resume */
    uint64_t suspend_us;       /* PVM running, after the pre-copy: waiting for
                                  SVM_SUSPENDED (0 when a pre-copy round's
                                  confirmation waited for it) */
    uint64_t pause_us;         /* the PVM's pause and the devices' postsuspend */
    uint64_t send_us;          /* dirty log, pages, state, CHECKPOINT_END sent */
    uint64_t apply_us;         /* sent until SVM_READY: the secondary's rollback and
                                  apply (the PVM running when resumed_before_ready) */
    uint64_t resume_us;        /* devices and resume: after the send when
                                  resumed_before_ready, else after SVM_READY and
                                  the output release */
    uint64_t output_us;        /* pause until the checkpoint's output was released */
    uint64_t requests_served;  /* requests made before its pause: their numbers up to this (0: none) */
};

/* The test-only kill hook's steps (see colo_primary_kill_hook_from_env). */
enum colo_kill_step {
    COLO_KILL_NONE,
    COLO_KILL_BEFORE_NEW,
    COLO_KILL_SVM_SUSPENDED,
    COLO_KILL_MID_PAGES,
    COLO_KILL_AFTER_END,
    COLO_KILL_AFTER_READY,
};

struct colo_primary_kill_hook {
    enum colo_kill_step step;
    uint64_t after_checkpoints;
};

/* Where a planned switchover (colo_primary_switch_over) stands. */
enum colo_switchover_outcome {
    COLO_SWITCHOVER_NONE,    /* none asked for */
    COLO_SWITCHOVER_PENDING, /* asked for, the final checkpoint not over yet */
    COLO_SWITCHOVER_DONE,    /* SVM_TOOK_OVER: the VM runs on the secondary; the PVM stays paused */
    COLO_SWITCHOVER_REFUSED, /* SVM_SWITCHOVER_REFUSED: the PVM runs on, protected */
    /* SWITCHOVER was (or may have been) sent, and no answer came: the
     * secondary may have taken over. The PVM stays paused; the loop ended
     * (-1): whether it may ever run again is for the caller to find out. */
    COLO_SWITCHOVER_UNKNOWN,
    COLO_SWITCHOVER_FAILED, /* the loop failed before SWITCHOVER went out: the PVM runs on */
};

const char *colo_switchover_outcome_name(enum colo_switchover_outcome outcome);

struct colo_switchover_status {
    enum colo_switchover_outcome outcome;
    uint64_t gap_us; /* DONE: the PVM paused until SVM_TOOK_OVER arrived */
    char error[512]; /* UNKNOWN, FAILED: why */
};

/* Pre-copy rounds per checkpoint, at most (colo_primary_options). */
#define COLO_PRECOPY_MAX_ROUNDS 3u

struct colo_primary_options {
    struct migration_options migration; /* keep_dirty_log is forced on */
    /* The longest interval between checkpoints (from one resume of the
     * PVM to the next CHECKPOINT_NEW). */
    unsigned max_interval_ms; /* default 1000 */
    /* Send what the PVM dirtied so far right after CHECKPOINT_NEW, while it
     * still runs (and the SVM suspends), so that only what it dirties
     * meanwhile is sent with it paused. Default on. */
    bool precopy;
    /* A pre-copy round of at least this many bytes is confirmed before
     * the pause: the primary sends PRECOPY_SENT and waits, the PVM
     * running, for SVM_PRECOPY_RECEIVED, so that the secondary has read
     * (and over TLS, decrypted) it before the downtime starts rather than
     * in it; what the PVM dirtied meanwhile goes in another round, up to
     * COLO_PRECOPY_MAX_ROUNDS. A smaller round goes without the round
     * trip. Default 256 KiB; 0: every round is confirmed. */
    uint64_t precopy_confirm_bytes;
    /* A checkpoint that sent at least this many bytes (pre-copy
     * included) resumes the PVM once it is sent whole, before the
     * secondary has applied it (SVM_READY): the downtime is then the pause
     * and the send alone. What the PVM does after the resume belongs to
     * the next checkpoint; the output release still waits for SVM_READY
     * and lets out only what was held before the pause. Smaller ones keep
     * the PVM paused until SVM_READY: their apply is short, and on a
     * host shared with the secondary a running PVM slowed it (KV latency
     * over TLS +20-30 %, docs/benchmarks.md). Never for a switchover's
     * final checkpoint. Default 256 KiB; 0: always; UINT64_MAX: never. */
    uint64_t resume_before_ready_bytes;
    /* How often, at most, the devices' stream phase sends what they have
     * ahead of the next checkpoint while the PVM runs (a disk's writes);
     * it runs only when a device asked (colo_primary_stream_wanted). */
    unsigned stream_interval_ms; /* default 2 */
    /* Waits for each of the secondary's replies. */
    int message_timeout_ms; /* default 5000 */
    /* Called after each checkpoint, with the PVM running again (not in
     * the downtime), on the loop's thread. */
    void (*on_checkpoint)(void *opaque, const struct colo_checkpoint_report *report);
    void *on_checkpoint_opaque;
    /* Called about every millisecond on the loop's thread while the PVM
     * is paused for good and the loop waits for the secondary's answer to
     * SWITCHOVER: what still comes in for the VM (its NICs' backends) goes
     * to the secondary (the mirror) instead of waiting in a queue that
     * nobody reads again. May be NULL. */
    void (*while_switching_over)(void *opaque);
    void *while_switching_over_opaque;
    /* Test hook, the PVM paused and the checkpoint sent whole. */
    void (*after_checkpoint_sent)(void *opaque, struct machine *pvm);
    /* Test hook, after SVM_READY and the devices' release (the PVM may
     * be running: resume_before_ready_bytes). */
    void (*after_svm_ready)(void *opaque, struct machine *pvm);
    void *hook_opaque;
#ifdef COLO_TEST_HOOKS
    struct colo_primary_kill_hook kill_hook; /* default: off */
#endif
};

void colo_primary_options_defaults(struct colo_primary_options *options);

#define COLO_DOWNTIME_HISTORY 1024

struct colo_primary_stats {
    uint64_t checkpoints;           /* completed */
    uint64_t requested_checkpoints; /* of those, triggered by a request */
    uint64_t output_checkpoints;    /* of those, triggered by held output */
    uint64_t requests_served;       /* colo_primary_request_checkpoint's numbers, up to this, served */
    struct colo_checkpoint_report last_served_request; /* the last checkpoint that served a request */
    uint64_t last_downtime_us;                         /* PVM paused for the checkpoint */
    uint64_t last_dirty_pages;
    uint64_t last_bytes; /* sent for the checkpoint */
    uint64_t total_dirty_pages, total_bytes;
    uint64_t max_downtime_us;
    uint64_t trigger_wakeups;           /* the loop woke while waiting for a trigger */
    uint64_t stream_phases;             /* the devices' stream phase ran */
    struct colo_checkpoint_report last; /* the last checkpoint's report */
    struct migration_result migration;  /* the initial copy */
};

struct colo_primary {
    struct machine *pvm;
    int fd;
    struct colo_primary_options options;
    struct colo_checkpoint_devices devices;
    struct stream_writer writer;
    struct stream_reader reader; /* the secondary's messages */
    atomic_int state;            /* enum colo_primary_state */
    bool pvm_paused;             /* by us */
    uint64_t checkpoint_number;  /* the one in progress or awaited, for errors */
    uint64_t *bitmap, *pages;    /* the dirty log, as bits and as page indices */

    /* Triggers and statistics, shared with other threads. */
    pthread_mutex_t lock;
    pthread_cond_t triggered;
    bool checkpoint_requested, stop_requested;
    uint64_t requests_made; /* colo_primary_request_checkpoint's last number */
    bool ending;            /* colo_primary_end: the stop tells the secondary */
    enum colo_ending_reason ending_reason;
    uint64_t output_deadline_us; /* monotonic; 0: no output waiting */
    /* When the loop decided on the latest checkpoint (its trigger came);
     * 0 before the first. By output: held output's deadline was the
     * trigger. */
    uint64_t checkpoint_decided_us;
    bool checkpoint_decided_by_output;
    /* The comparing proxy moves the deadline with nearly every frame. So
     * that each move does not wake the loop, the loop wakes at least every
     * `output_deadline_lead_us` (how far ahead the last deadline was set)
     * while deadlines keep moving, and a setter wakes it only for a
     * deadline before `loop_wakes_at_us` (0: the loop is not waiting). */
    uint64_t output_deadline_lead_us, output_deadline_moved_us, loop_wakes_at_us;
    /* A planned switchover (colo_primary_switch_over). */
    bool switchover_requested;
    int switchover_timeout_ms;
    struct colo_switchover_status switchover;
    bool keep_paused;        /* SWITCHOVER went out: never resume the PVM by ourselves */
    uint64_t last_stream_us; /* the devices' last stream phase (loop thread only) */
    /* colo_primary_stream_wanted since the last stream phase; whether the
     * last phase had been asked for (then the loop keeps the phase's
     * cadence without being woken for each ask). */
    bool stream_wanted, stream_cadence;
    struct colo_primary_stats stats;
    uint64_t downtimes_us[COLO_DOWNTIME_HISTORY]; /* ring of the last downtimes */

    pthread_t thread;
    bool thread_started;
    int result;
    struct error error;
};

int colo_primary_init(struct colo_primary *primary, struct machine *pvm, int fd,
                      const struct colo_primary_options *options, struct error *err);
void colo_primary_destroy(struct colo_primary *primary);
int colo_primary_add_device(struct colo_primary *primary, const char *name,
                            const struct colo_checkpoint_device_ops *ops, void *opaque, struct error *err);

/* Runs the loop on the calling thread until colo_primary_stop (0, state
 * RUNNING), colo_primary_end (0 once the secondary confirmed) or a
 * failure (-1, with an error naming the step and the state, which stays
 * as it was). Either way the PVM is left running, with its dirty log off:
 * it runs on unprotected; except after a switchover's SWITCHOVER went out
 * (colo_primary_switch_over): then it is left paused. */
int colo_primary_run(struct colo_primary *primary, struct error *err);
int colo_primary_start(struct colo_primary *primary, struct error *err);
int colo_primary_join(struct colo_primary *primary, struct error *err);

/* From any thread: take a checkpoint of the PVM as it is from now on: the
 * one under way if the PVM is not paused yet (a request made before the
 * pause is served by it), else the next, at once. The comparing proxy's
 * "outputs differ" and `colo checkpoint` call it. Returns the request's
 * number: once stats.requests_served reaches it, a checkpoint paused the
 * PVM after the request (stats.last_served_request). */
uint64_t colo_primary_request_checkpoint(struct colo_primary *primary);
/* From any thread: take a checkpoint at the latest `milliseconds` from now
 * (earlier if another trigger comes first; an earlier deadline already set
 * stays). What a held packet calls: without the comparing proxy, every
 * packet of the PVM waits for the next checkpoint, and this bounds how
 * long; the proxy's "a packet waited too long for its twin" is the same
 * call. The deadline is forgotten when a checkpoint starts. */
void colo_primary_request_checkpoint_within(struct colo_primary *primary, unsigned milliseconds);
/* From any thread: end the loop at its next wait for a trigger. */
/* Sets the output deadline outright, later or sooner (clock_monotonic_us;
 * 0: none): the comparing proxy's oldest unmatched frame moves it, with
 * nearly every frame. It wakes the loop only for a deadline before the
 * loop's next wake-up; while deadlines keep moving, the loop wakes once
 * per lead (how far ahead the last one was set) to look, so it still
 * meets each deadline, and a frame that finds its twin costs no
 * context switch. */
void colo_primary_set_output_deadline(struct colo_primary *primary, uint64_t deadline_us);
/* When the loop decided on the checkpoint under way (clock_monotonic_us;
 * 0 before the first), and whether held output's deadline was what
 * decided it: the PVM runs on through the pre-copy, with the SVM
 * suspended, so output held after the decision waits for the checkpoint
 * without having asked for it. */
uint64_t colo_primary_checkpoint_decided_us(struct colo_primary *primary, bool *by_output_deadline);
void colo_primary_stop(struct colo_primary *primary);
/* From any thread (a device, e.g. a disk's first write of an epoch): a
 * device has something for the stream phase, which runs within
 * stream_interval_ms. An idle VM's loop then sleeps instead of waking
 * every stream interval to find nothing. Cheap when asked again before
 * the phase: it wakes the loop only when the loop is not already keeping
 * the phase's cadence. */
void colo_primary_stream_wanted(struct colo_primary *primary);
/* From any thread: the VM ends on purpose (a guest poweroff or reboot,
 * `colo quit`): the loop ends at its next wait for a trigger, once the
 * checkpoint in progress (if any) completed, and tells the secondary first
 * (PRIMARY_ENDING with the reason), so that it does not take over. It
 * waits up to message_timeout_ms for the secondary's SVM_ENDED: 0 when it
 * came, -1 with an error when not (the secondary may then take over). */
void colo_primary_end(struct colo_primary *primary, enum colo_ending_reason reason);

/* From any thread: a planned switchover. The loop's next checkpoint is
 * the last: the PVM pauses for it and is never resumed; once SVM_READY
 * came and the output it covers was released, SWITCHOVER goes out, and
 * the loop waits up to timeout_ms for the secondary's answer. SVM_TOOK_OVER:
 * the loop ends (0), the PVM paused for good (DONE). SVM_SWITCHOVER_REFUSED:
 * the PVM resumes and the loop goes on (REFUSED). No answer, or the
 * connection broke after SWITCHOVER went out: the loop ends (-1) with the
 * PVM paused (UNKNOWN). colo_primary_switchover_status follows it. */
void colo_primary_switch_over(struct colo_primary *primary, int timeout_ms);
void colo_primary_switchover_status(struct colo_primary *primary, struct colo_switchover_status *status);

enum colo_primary_state colo_primary_state(struct colo_primary *primary);
void colo_primary_get_stats(struct colo_primary *primary, struct colo_primary_stats *stats);
/* The downtime below which `percent` of the last (up to 1024) checkpoints
 * were, in microseconds; 0 before the first checkpoint. */
uint64_t colo_primary_downtime_percentile(struct colo_primary *primary, double percent);

/* Test only, built with `meson -Dtest_hooks=true` (the test builds): makes
 * the primary die like a host dying at one step of a checkpoint, so the
 * failover tests can hit each step on purpose instead of by luck.
 * colo_primary_kill_hook_from_env reads the environment:
 *
 *   COLO_TEST_KILL_AT     before-new | svm-suspended | mid-pages |
 *                         after-end | after-ready   (unset or empty: off)
 *   COLO_TEST_KILL_AFTER  N, default 5: the hook fires in the first
 *                         checkpoint that starts once N have completed
 *
 * and the hook goes into colo_primary_options.kill_hook. When it fires, the
 * loop prints "colo: test hook: killing the primary at STEP (checkpoint
 * K)" on stderr and raises SIGKILL: no cleanup, no release of held output,
 * nothing flushed but what the step says. Returns -1 for an unknown step or
 * a bad N, so a typo cannot make a test pass without the kill. */
/* Test only, too: COLO_TEST_ENDING_DELAY_MS=N makes colo_primary_end wait
 * N ms before it sends PRIMARY_ENDING, so that a secondary whose own
 * guest ends the same way (it runs the same guest) ends first. */
#ifdef COLO_TEST_HOOKS
int colo_primary_kill_hook_from_env(struct colo_primary_kill_hook *hook, struct error *err);
#endif

#endif
