#include "colo_secondary.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "colo_protocol.h"
#include "live_migration.h"
#include "machine.h"

const char *colo_secondary_state_name(enum colo_secondary_state state)
{
    switch (state) {
    case COLO_SECONDARY_SETUPED:
        return "SETUPED";
    case COLO_SECONDARY_RESUMED:
        return "RESUMED";
    case COLO_SECONDARY_SUSPENDED:
        return "SUSPENDED";
    }
    return "?";
}

void colo_secondary_options_defaults(struct colo_secondary_options *options)
{
    memset(options, 0, sizeof *options);
    options->message_timeout_ms = 5000;
    options->new_checkpoint_timeout_ms = -1;
}

int colo_secondary_init(struct colo_secondary *secondary, struct machine *svm, int fd,
                        const struct colo_secondary_options *options, struct error *err)
{
    memset(secondary, 0, sizeof *secondary);
    secondary->svm = svm;
    secondary->fd = fd;
    if (options)
        secondary->options = *options;
    else
        colo_secondary_options_defaults(&secondary->options);
    atomic_init(&secondary->state, COLO_SECONDARY_SETUPED);
    atomic_init(&secondary->primary_ended, false);
    atomic_init(&secondary->switchover_requested, false);
    secondary->svm_paused = true; /* the caller's pause */
    secondary->svm_consistent = true;
    if (stream_reader_init(&secondary->reader, fd, err) < 0)
        return -1;
    if (stream_writer_init(&secondary->writer, fd, err) < 0) {
        stream_reader_destroy(&secondary->reader);
        return -1;
    }
    pthread_mutex_init(&secondary->stats_lock, NULL);
    return 0;
}

void colo_secondary_destroy(struct colo_secondary *secondary)
{
    if (secondary->thread_started)
        colo_secondary_join(secondary, NULL);
    colo_checkpoint_devices_teardown(&secondary->devices);
    stream_reader_destroy(&secondary->reader);
    stream_writer_destroy(&secondary->writer);
    pthread_mutex_destroy(&secondary->stats_lock);
}

int colo_secondary_add_device(struct colo_secondary *secondary, const char *name,
                              const struct colo_checkpoint_device_ops *ops, void *opaque, struct error *err)
{
    return colo_checkpoint_devices_add(&secondary->devices, name, ops, opaque, err);
}

enum colo_secondary_state colo_secondary_state(struct colo_secondary *secondary)
{
    return (enum colo_secondary_state)atomic_load(&secondary->state);
}

void colo_secondary_get_stats(struct colo_secondary *secondary, struct colo_secondary_stats *stats)
{
    pthread_mutex_lock(&secondary->stats_lock);
    *stats = secondary->stats;
    pthread_mutex_unlock(&secondary->stats_lock);
}

static void set_state(struct colo_secondary *secondary, enum colo_secondary_state state)
{
    atomic_store(&secondary->state, state);
}

/* Every error of the loop starts with who and in which state it was, then
 * the step: "secondary (SUSPENDED), checkpoint 3, receiving the checkpoint:
 * ...". */
static int fail(struct colo_secondary *secondary, struct error *err, const char *step, const struct error *cause)
{
    return error_set(err, "secondary (%s), checkpoint %llu, %s: %s",
                     colo_secondary_state_name(colo_secondary_state(secondary)),
                     (unsigned long long)secondary->checkpoint_number, step, cause->message);
}

static void resume_svm(struct colo_secondary *secondary)
{
    secondary->instret_at_resume = machine_instructions_retired(secondary->svm);
    machine_resume(secondary->svm);
    secondary->svm_paused = false;
}

static void suspend_svm(struct colo_secondary *secondary)
{
    machine_pause(secondary->svm);
    secondary->svm_paused = true;
    uint64_t ran = machine_instructions_retired(secondary->svm) - secondary->instret_at_resume;
    pthread_mutex_lock(&secondary->stats_lock);
    secondary->stats.last_interval_instructions = ran;
    secondary->stats.interval_instructions_total += ran;
    pthread_mutex_unlock(&secondary->stats_lock);
}

static int send_message(struct colo_secondary *secondary, enum colo_message message, struct error *err)
{
    struct error cause;
    if (colo_send_message(&secondary->writer, message, &cause) < 0)
        return fail(secondary, err, "sending to the primary", &cause);
    return 0;
}

/* The loop's end when the primary ends the VM on purpose: 1, no takeover. */
static int primary_ended(struct colo_secondary *secondary, enum colo_ending_reason reason, struct error *err)
{
    secondary->ending_reason = reason;
    atomic_store(&secondary->primary_ended, true);
    error_set(err, "secondary (%s), checkpoint %llu: the primary ended the VM on purpose (%s)",
              colo_secondary_state_name(colo_secondary_state(secondary)),
              (unsigned long long)secondary->checkpoint_number, colo_ending_reason_name(reason));
    return 1;
}

/* Between checkpoints (the one wait where the primary's messages other
 * than the checkpoint's come): CHECKPOINT_NEW (0), the primary's end of
 * the VM (1), a switchover this side takes (2), or a failure
 * (-1). A switchover it refuses is answered and the wait goes on. */
static int wait_new_checkpoint(struct colo_secondary *secondary, struct error *err)
{
    static const enum colo_message accepted[] = {
        COLO_CHECKPOINT_NEW,        COLO_SWITCHOVER, COLO_PRIMARY_ENDING_POWEROFF, COLO_PRIMARY_ENDING_QUIT,
        COLO_PRIMARY_ENDING_REBOOT,
    };
    for (;;) {
        char context[96];
        snprintf(context, sizeof context, "secondary (%s), checkpoint %llu",
                 colo_secondary_state_name(colo_secondary_state(secondary)),
                 (unsigned long long)secondary->checkpoint_number);
        enum colo_message got;
        if (colo_wait_message_of(&secondary->reader, accepted, sizeof accepted / sizeof accepted[0],
                                 secondary->options.new_checkpoint_timeout_ms, context, &got, err) < 0)
            return -1;
        if (got == COLO_CHECKPOINT_NEW)
            return 0;
        enum colo_ending_reason reason;
        if (colo_message_is_ending(got, &reason)) {
            /* The primary waits for this before it lets go of anything; a
             * primary already gone is no reason to take over either. */
            struct error ignored;
            (void)colo_send_message(&secondary->writer, COLO_SVM_ENDED, &ignored);
            return primary_ended(secondary, reason, err);
        }
        char why[256] = "";
        if (secondary->options.may_switch_over &&
            !secondary->options.may_switch_over(secondary->options.switch_over_opaque, why, sizeof why)) {
            pthread_mutex_lock(&secondary->stats_lock);
            secondary->stats.switchovers_refused++;
            pthread_mutex_unlock(&secondary->stats_lock);
            if (send_message(secondary, COLO_SVM_SWITCHOVER_REFUSED, err) < 0)
                return -1;
            continue;
        }
        atomic_store(&secondary->switchover_requested, true);
        error_set(err, "secondary (%s), checkpoint %llu: the primary asked for a switchover",
                  colo_secondary_state_name(colo_secondary_state(secondary)),
                  (unsigned long long)secondary->checkpoint_number);
        return 2;
    }
}

/* A checkpoint that did not arrive whole, and a PRIMARY_ENDING among its
 * records: the primary gave up the checkpoint to end the VM on purpose
 * (stream_receive notes the messages of a run and goes on). */
static bool ending_in_run(const struct stream_reader *reader, enum colo_ending_reason *reason)
{
    uint64_t count = reader->checkpoint_states_received;
    if (count > STREAM_RECENT_CHECKPOINT_STATES)
        count = STREAM_RECENT_CHECKPOINT_STATES;
    for (uint64_t i = 0; i < count; i++)
        if (colo_message_is_ending(reader->recent_checkpoint_states[i], reason))
            return true;
    return false;
}

/* Called by stream_receive once the checkpoint has arrived whole, just
 * before it applies it: undo what the SVM wrote since the last checkpoint,
 * so the PVM's dirty pages land on the RAM they were dirtied from. */
static bool checkpoint_overwrites(void *opaque, uint64_t page)
{
    struct colo_secondary *secondary = opaque;
    return stream_receive_writes_page(&secondary->reader, page);
}

static int roll_back_svm(void *opaque, struct machine *svm, struct error *err)
{
    struct colo_secondary *secondary = opaque;
    /* Pages the checkpoint brings are left as they are (it overwrites
     * them), and the writes of the apply are not captured: the reset after
     * it starts the next interval. */
    size_t captured = machine_preimage_count(svm);
    int64_t restored = machine_preimages_rollback_before_load(svm, checkpoint_overwrites, secondary);
    if (restored < 0)
        return error_set(err, "the SVM's pre-images are incomplete (memory ran out while capturing "
                              "them): it cannot be rolled back, nothing applied");
    /* From here until the apply finishes, the SVM's RAM is the last
     * checkpoint's but its harts are its own: a failure now leaves it
     * unusable (only a bad state record in a CRC-checked stream can do that). */
    secondary->svm_consistent = false;
    pthread_mutex_lock(&secondary->stats_lock);
    secondary->stats.last_preimages_restored = restored;
    secondary->stats.preimages_restored_total += (uint64_t)restored;
    secondary->stats.preimages_overwritten_total += captured - (uint64_t)restored;
    if (captured > 0)
        secondary->stats.checkpoints_with_rollback++;
    pthread_mutex_unlock(&secondary->stats_lock);
    return 0;
}

/* A message inside a checkpoint's run, as it arrives: the primary waits
 * for the answer to PRECOPY_SENT with the PVM running and pauses it only
 * then (colo_primary.c). Others are only noted by the reader. */
static int answer_in_run(void *opaque, uint32_t id, struct error *err)
{
    struct colo_secondary *secondary = opaque;
    if (id != COLO_PRECOPY_SENT)
        return 0;
    return colo_send_message(&secondary->writer, COLO_SVM_PRECOPY_RECEIVED, err);
}

/* Receives one checkpoint (PVM pages, state, CHECKPOINT_END) and applies it. */
static int receive_checkpoint(struct colo_secondary *secondary, struct error *err)
{
    struct error cause;
    int readable = colo_wait_readable(secondary->fd, secondary->options.message_timeout_ms);
    if (readable <= 0) {
        if (readable == 0)
            error_set(&cause, "timed out after %d ms", secondary->options.message_timeout_ms);
        else
            error_set_errno(&cause, "poll");
        return fail(secondary, err, "waiting for the checkpoint", &cause);
    }
    uint64_t pages_before = secondary->reader.pages_read;
    uint32_t terminator = 0;
    bool consistent_before = secondary->svm_consistent;
    if (stream_receive_with_hook(&secondary->reader, secondary->svm, &terminator, roll_back_svm, secondary, &cause) <
        0) {
        enum colo_ending_reason reason;
        if (ending_in_run(&secondary->reader, &reason))
            return primary_ended(secondary, reason, err);
        return fail(secondary, err,
                    secondary->svm_consistent ? "receiving the checkpoint (nothing of it applied)"
                                              : "applying the checkpoint after the rollback (the SVM is "
                                                "now inconsistent)",
                    &cause);
    }
    if (terminator != STREAM_RECORD_CHECKPOINT_END) {
        /* END: the primary ended replication. It was applied whole, so the
         * SVM is consistent; report it as the end of the stream. */
        secondary->svm_consistent = consistent_before;
        error_set(&cause, "the primary ended the stream (END) instead of a checkpoint");
        machine_preimages_reset(secondary->svm);
        return fail(secondary, err, "receiving the checkpoint", &cause);
    }
    secondary->svm_consistent = true;
    /* The applied pages went through the dirty log (not captured: see
     * roll_back_svm): start the interval clean, so the next rollback
     * returns to exactly this checkpoint. */
    machine_preimages_reset(secondary->svm);
    pthread_mutex_lock(&secondary->stats_lock);
    secondary->stats.checkpoints++;
    secondary->stats.last_pages_received = secondary->reader.pages_read - pages_before;
    pthread_mutex_unlock(&secondary->stats_lock);
    return 0;
}

static int call_devices(struct colo_secondary *secondary, enum colo_device_phase phase, struct error *err)
{
    struct error cause;
    if (colo_checkpoint_devices_call(&secondary->devices, phase, &cause) < 0)
        return fail(secondary, err, "checkpoint devices", &cause);
    return 0;
}

int colo_secondary_run(struct colo_secondary *secondary, struct error *err)
{
    struct machine *svm = secondary->svm;
    struct error cause;
    set_state(secondary, COLO_SECONDARY_SETUPED);
    secondary->checkpoint_number = 1;

    /* The initial copy: a live migration of the PVM into the SVM, on the
     * same reader we keep for the checkpoints (the reader takes no byte
     * beyond the migration's END). */
    if (migration_receive_between(svm, &secondary->reader, secondary->options.initial_copy_companion, "secondary",
                                  "primary", &cause) < 0)
        return fail(secondary, err, "receiving the initial copy", &cause);
    /* The records the devices sent with the VM's state (the reader keeps
     * the last run's until the next one). */
    if (colo_checkpoint_devices_initial_load(&secondary->devices, &secondary->reader, &cause) < 0)
        return fail(secondary, err, "the initial copy", &cause);

    /* Log from here: the SVM is now the PVM as of the migration's end,
     * which is the first checkpoint to roll back to. */
    machine_dirty_log_enable(svm, true);
    machine_preimages_enable(svm, true);
    secondary->replicating = true;
    /* From now on a checkpoint's disk writes go to the devices as they
     * arrive, not after the run: their buffering overlaps the transfer. */
    secondary->reader.disk_write_sink = colo_checkpoint_devices_receive;
    secondary->reader.disk_write_sink_opaque = &secondary->devices;
    secondary->reader.message_sink = answer_in_run;
    secondary->reader.message_sink_opaque = secondary;
    if (call_devices(secondary, COLO_DEVICE_SETUP, err) < 0 ||
        send_message(secondary, COLO_CHECKPOINT_SVM_READY, err) < 0)
        return -1;
    resume_svm(secondary);
    set_state(secondary, COLO_SECONDARY_RESUMED);
    if (send_message(secondary, COLO_CHECKPOINT_SVM_RESUMED, err) < 0)
        return -1;

    for (;;) {
        secondary->checkpoint_number = secondary->stats.checkpoints + 1;
        /* The state the SVM runs from is now the committed one. */
        if (call_devices(secondary, COLO_DEVICE_COMMIT, err) < 0)
            return -1;
        int waited = wait_new_checkpoint(secondary, err);
        if (waited != 0)
            return waited;

        suspend_svm(secondary);
        if (call_devices(secondary, COLO_DEVICE_POSTSUSPEND, err) < 0)
            return -1;
        set_state(secondary, COLO_SECONDARY_SUSPENDED);
        if (secondary->options.on_suspended)
            secondary->options.on_suspended(secondary->options.hook_opaque, svm);
        if (send_message(secondary, COLO_CHECKPOINT_SVM_SUSPENDED, err) < 0)
            return -1;
        int received = receive_checkpoint(secondary, err);
        if (received != 0)
            return received;
        if (colo_checkpoint_devices_load(&secondary->devices, &secondary->reader, &cause) < 0) {
            /* The SVM's memory is this checkpoint's, a device's part (a
             * disk) is not: no VM to take over with. */
            secondary->svm_consistent = false;
            return fail(secondary, err, "loading the devices' part of the checkpoint", &cause);
        }
        if (secondary->options.on_checkpoint_applied)
            secondary->options.on_checkpoint_applied(secondary->options.hook_opaque, svm);

        /* The SVM is the PVM at this checkpoint: the primary may release
         * the output it held back for it. */
        if (send_message(secondary, COLO_CHECKPOINT_SVM_READY, err) < 0)
            return -1;
        if (call_devices(secondary, COLO_DEVICE_PRERESUME, err) < 0) {
            /* A device did not finish taking the checkpoint in (a disk's
             * fold): the SVM's memory is ahead of it. */
            secondary->svm_consistent = false;
            return -1;
        }
        resume_svm(secondary);
        set_state(secondary, COLO_SECONDARY_RESUMED);
        if (send_message(secondary, COLO_CHECKPOINT_SVM_RESUMED, err) < 0)
            return -1;
    }
}

static void *secondary_thread(void *opaque)
{
    pthread_setname_np(pthread_self(), "secondary");
    struct colo_secondary *secondary = opaque;
    secondary->result = colo_secondary_run(secondary, &secondary->error);
    return NULL;
}

int colo_secondary_start(struct colo_secondary *secondary, struct error *err)
{
    int failed = pthread_create(&secondary->thread, NULL, secondary_thread, secondary);
    if (failed)
        return error_set(err, "cannot start the secondary's thread: %s", strerror(failed));
    secondary->thread_started = true;
    return 0;
}

int colo_secondary_join(struct colo_secondary *secondary, struct error *err)
{
    if (!secondary->thread_started)
        return error_set(err, "the secondary's thread was not started");
    pthread_join(secondary->thread, NULL);
    secondary->thread_started = false;
    if (secondary->result != 0 && err)
        *err = secondary->error;
    return secondary->result;
}

int colo_secondary_failover(struct colo_secondary *secondary, struct error *err)
{
    enum colo_secondary_state state = colo_secondary_state(secondary);
    if (state == COLO_SECONDARY_SETUPED)
        return error_set(err, "secondary (SETUPED): cannot take over: the initial copy of the primary "
                              "never completed, so the SVM is not a VM");
    if (!secondary->svm_consistent)
        return error_set(err,
                         "secondary (%s): cannot take over: a checkpoint failed part way (after the SVM "
                         "was rolled back, or while its devices, such as a disk, loaded it)",
                         colo_secondary_state_name(state));
    /* SUSPENDED: whatever part of a checkpoint had arrived was only staged,
     * and is gone with stream_receive's failure; the SVM's RAM, harts and
     * devices are its own, consistent state. A rollback here would undo
     * its writes but not its harts: wrong. RESUMED: it runs on. */
    if (secondary->replicating) {
        machine_preimages_enable(secondary->svm, false);
        machine_dirty_log_enable(secondary->svm, false);
        secondary->replicating = false;
    }
    if (secondary->svm_paused)
        resume_svm(secondary);
    set_state(secondary, COLO_SECONDARY_RESUMED);
    return 0;
}
