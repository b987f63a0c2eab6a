/* The COLO secondary: receives the initial copy of the PVM into the SVM,
 * then takes checkpoints from the primary for as long as the connection
 * lasts (docs/replication.md has the message sequence).
 *
 * The loop runs on its own thread and is plain sequential code; its state
 * says what the SVM is doing, which is what failover needs to know:
 *
 *   SETUPED    the initial copy is not complete: the SVM is not a VM yet
 *   RESUMED    the SVM runs (between checkpoints)
 *   SUSPENDED  the SVM is paused for a checkpoint (which may be arriving)
 *
 * The SVM runs on a run thread the caller owns (machine_run), and is
 * handed over paused once (machine_pause before the loop starts): the loop
 * resumes it after the initial copy, and pauses and resumes it around each
 * checkpoint.
 *
 * Memory: the SVM's dirty log with pre-images (machine_preimages_*) keeps
 * the old contents of every page the SVM writes between checkpoints. A
 * checkpoint, once it has arrived whole, rolls the SVM back to the last
 * checkpoint and then applies the PVM's dirty pages and state on top: the
 * SVM is then exactly the PVM at this checkpoint. Nothing goes back to the
 * primary but the protocol messages (Xen sends the SVM's dirty pages back
 * in SVM_SUSPENDED; we do not need to). */
#ifndef COLO_REPLICATION_COLO_SECONDARY_H
#define COLO_REPLICATION_COLO_SECONDARY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint_device.h"
#include "colo_protocol.h"
#include "error.h"
#include "live_migration.h"
#include "stream.h"

struct machine;

enum colo_secondary_state {
    COLO_SECONDARY_SETUPED,
    COLO_SECONDARY_RESUMED,
    COLO_SECONDARY_SUSPENDED,
};

const char *colo_secondary_state_name(enum colo_secondary_state state);

struct colo_secondary_options {
    /* Waits inside a checkpoint (for the checkpoint's first byte). */
    int message_timeout_ms; /* default 5000 */
    /* The wait for CHECKPOINT_NEW; negative waits forever (the default:
     * the primary's interval is its own business, and a dead primary is
     * for the heartbeat to detect, once there is one). */
    int new_checkpoint_timeout_ms;
    /* Test hooks (may be NULL), called on the secondary's thread with the
     * SVM paused: after it paused for a checkpoint, and after a checkpoint
     * was applied (before SVM_READY is sent). */
    void (*on_suspended)(void *opaque, struct machine *svm);
    void (*on_checkpoint_applied)(void *opaque, struct machine *svm);
    void *hook_opaque;
    /* What moves with the initial copy besides RAM (the disks' sync,
     * disk/disk_sync.h); NULL: nothing. */
    const struct migration_companion *initial_copy_companion;
    /* Asked on the loop's thread when the primary asks for a switchover
     * (SWITCHOVER): false refuses it (SVM_SWITCHOVER_REFUSED; the hook
     * says why to whom it concerns, and the loop goes on); NULL: always. */
    bool (*may_switch_over)(void *opaque, char *why, size_t size);
    void *switch_over_opaque;
};

void colo_secondary_options_defaults(struct colo_secondary_options *options);

struct colo_secondary_stats {
    uint64_t checkpoints; /* applied */
    uint64_t last_pages_received;
    int64_t last_preimages_restored;      /* pages the last rollback restored */
    uint64_t preimages_overwritten_total; /* captured, not restored: the checkpoint brought them */
    uint64_t preimages_restored_total;
    uint64_t checkpoints_with_rollback; /* the SVM had written pages: pre-images existed */
    /* Instructions the SVM retired between its last resume and suspend
     * (that it really ran between checkpoints). */
    uint64_t last_interval_instructions;
    uint64_t interval_instructions_total;
    uint64_t switchovers_refused; /* SWITCHOVER answered SVM_SWITCHOVER_REFUSED by may_switch_over */
};

struct colo_secondary {
    struct machine *svm;
    int fd; /* the replication connection */
    struct colo_secondary_options options;
    struct colo_checkpoint_devices devices;
    struct stream_reader reader; /* one for the whole connection */
    struct stream_writer writer;
    atomic_int state; /* enum colo_secondary_state */
    bool svm_paused;  /* by us: the caller's pause, or a checkpoint's */
    bool replicating; /* dirty log and pre-images on */
    /* False once a checkpoint failed between rollback and the end of its
     * apply: the SVM is then neither its old self nor the PVM. */
    bool svm_consistent;
    uint64_t instret_at_resume;
    uint64_t checkpoint_number; /* the one in progress or awaited, for errors */
    pthread_mutex_t stats_lock;
    struct colo_secondary_stats stats;

    /* The primary ended the VM on purpose (PRIMARY_ENDING): no takeover. */
    atomic_bool primary_ended;
    enum colo_ending_reason ending_reason; /* when primary_ended */
    /* The primary asked for a planned switchover (SWITCHOVER, between
     * checkpoints): the loop ended with 2 for the SVM to take over; the
     * primary waits for SVM_TOOK_OVER or SVM_SWITCHOVER_REFUSED. */
    atomic_bool switchover_requested;

    pthread_t thread;
    bool thread_started;
    int result;
    struct error error;
};

/* svm: created with the PVM's configuration, paused once by the caller
 * (its run thread may already be running). fd: the connection. */
int colo_secondary_init(struct colo_secondary *secondary, struct machine *svm, int fd,
                        const struct colo_secondary_options *options, struct error *err);
/* Joins the thread if needed; tears the checkpoint devices down. Does not
 * close fd. */
void colo_secondary_destroy(struct colo_secondary *secondary);

/* Before starting: adds a checkpoint device (set up after the initial copy). */
int colo_secondary_add_device(struct colo_secondary *secondary, const char *name,
                              const struct colo_checkpoint_device_ops *ops, void *opaque, struct error *err);

/* Runs the loop on the calling thread. It ends on a failure (the stream
 * broke, timed out or carried something unexpected; a device failed): -1,
 * with an error naming the step and the state, and the state left as it
 * was (colo_secondary_state). It does nothing about the failure: that is
 * colo_secondary_failover's job. Or it ends because the primary ended the
 * VM on purpose (PRIMARY_ENDING, between checkpoints or in place of one):
 * 1, with err saying so, primary_ended set and the reason in
 * ending_reason; the SVM is left as it is, for its owner to stop (no
 * takeover). Or it ends because the primary asked for a switchover
 * (SWITCHOVER, between checkpoints): 2, with err saying so and
 * switchover_requested set; the SVM runs on, for the failover to make it
 * the VM (colo_failover.h), which answers the primary. */
int colo_secondary_run(struct colo_secondary *secondary, struct error *err);

/* The same on a thread of its own; join returns its result and error. */
int colo_secondary_start(struct colo_secondary *secondary, struct error *err);
int colo_secondary_join(struct colo_secondary *secondary, struct error *err);

enum colo_secondary_state colo_secondary_state(struct colo_secondary *secondary);
void colo_secondary_get_stats(struct colo_secondary *secondary, struct colo_secondary_stats *stats);

/* After the loop ended: makes the SVM a plain running VM, as far as memory
 * and the VM go (the NIC, the disk overlay and the announce are for the
 * layers that own them):
 *   SETUPED    refused (-1): the SVM was never a whole copy of the PVM.
 *   SUSPENDED  the partial checkpoint is dropped (nothing of it was
 *              applied: stream_receive applies only whole checkpoints), and
 *              the SVM resumes from its own state, which is intact: no
 *              rollback (its RAM matches its harts and devices).
 *   RESUMED    the SVM keeps running.
 * In both latter cases the dirty log and pre-images go off. Refused too if
 * a checkpoint failed halfway through its apply (see svm_consistent). */
int colo_secondary_failover(struct colo_secondary *secondary, struct error *err);

#endif
