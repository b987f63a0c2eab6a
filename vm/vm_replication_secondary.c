/* COLO for one VM, the secondary's side: `colo secondary` (the SVM's
 * devices: mirror reader, committed output, output buffer; the failure
 * detector; the failover monitor) and the `failover` command. */
#include "vm_replication_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "machine.h"
#include "socket.h"

/* The failure detector's decision: shutting the replication connection
 * down ends the secondary loop at once, wherever it waits, and the
 * failover monitor takes over. Any thread. */
static void on_primary_dead(void *opaque, const char *reason)
{
    struct vm_replication *replication = opaque;
    vm_replication_log(replication, "%s", reason);
    pthread_mutex_lock(&replication->lock);
    bool stopping = replication->secondary_stopping;
    bool switching_over = replication->switching_over;
    pthread_mutex_unlock(&replication->lock);
    /* A switchover: the loop ended on the primary's word, and the answer
     * still has to go over the connection. */
    if (switching_over)
        return;
    /* The claim goes out before the connection is shut down: the primary
     * notices the shutdown at once and claims too, and the side that
     * suspected first must be first in the group's order. */
    if (!stopping && replication->guard_started)
        takeover_guard_report(&replication->guard, TAKEOVER_EVENT_SUSPICION);
    shutdown(replication->replication_fd, SHUT_RDWR);
}

/* The monitor's thread, once the outcome is known. */
static void on_failover_finished(void *opaque, const struct colo_failover_result *result)
{
    struct vm_replication *replication = opaque;
    const char *from = colo_secondary_state_name(result->from_state);
    vm_replication_log(replication, "replication ended in state %s: %s", from, result->replication_ended);
    if (result->outcome == COLO_FAILOVER_PEER_ENDED) {
        vm_replication_secondary_primary_ended(replication, result);
        return;
    }
    if (replication->secondary_disks.setup_error.message[0])
        vm_replication_log(replication, "the disks' setup failed: %s",
                           replication->secondary_disks.setup_error.message);
    if (replication->secondary_disks.commit_error.message[0])
        vm_replication_log(replication, "a disk's fold failed: %s", replication->secondary_disks.commit_error.message);
    if (result->outcome == COLO_FAILOVER_REFUSED) {
        vm_replication_log(replication, "failover refused: %s; stopping", result->refused);
        pthread_mutex_lock(&replication->lock);
        replication->failover_refused = true;
        replication->phase = replication->stood_down ? "stood down" : "failover refused";
        snprintf(replication->end_reason, sizeof replication->end_reason, "%s", result->refused);
        pthread_mutex_unlock(&replication->lock);
        vm_replication_post_event(replication, "failover refused", result->refused);
        return;
    }
    pthread_mutex_lock(&replication->lock);
    replication->failover_done = true;
    /* "failed over" either way: what runs the VM here (the OCF agent reads it). */
    replication->phase = "failed over";
    replication->took_over_by_switchover = result->switchover;
    if (result->switchover)
        snprintf(replication->end_reason, sizeof replication->end_reason, "switched over from %.400s",
                 replication->peer_description[0] ? replication->peer_description : "the primary");
    else
        snprintf(replication->end_reason, sizeof replication->end_reason, "%s", result->replication_ended);
    pthread_mutex_unlock(&replication->lock);
    struct output_buffer_stats output;
    output_buffer_get_stats(&replication->output, &output);
    if (result->switchover) {
        vm_replication_log(replication,
                           "%s: the VM runs here now (sent %" PRIu64 " frames the SVM held since the last "
                           "checkpoint; the primary released its own)",
                           replication->end_reason, output.released_at_failover);
        vm_replication_post_event(replication, "switched over", replication->end_reason);
        return;
    }
    vm_replication_log(replication,
                       "failed over: the VM runs here now (from state %s; sent %" PRIu64 " frames the "
                       "primary held behind the last checkpoint and %" PRIu64 " the SVM sent since, "
                       "leaving out %" PRIu64 " older frames of their flows)",
                       from, committed_output_sent_at_failover(&replication->committed), output.released_at_failover,
                       output.skipped_at_failover);
    vm_replication_post_event(replication, "failed over", result->replication_ended);
}

/* The primary's SWITCHOVER, on the loop's thread: refused only when this
 * VM is being stopped here. */
static bool may_switch_over(void *opaque, char *why, size_t size)
{
    struct vm_replication *replication = opaque;
    pthread_mutex_lock(&replication->lock);
    bool stopping = replication->secondary_stopping || replication->ending;
    if (!stopping)
        replication->switching_over = true;
    pthread_mutex_unlock(&replication->lock);
    if (stopping) {
        snprintf(why, size, "the VM is being stopped here");
        vm_replication_log(replication, "the primary asked for a switchover: refused (%s)", why);
        vm_replication_post_event(replication, "switchover refused", why);
        return false;
    }
    vm_replication_log(replication, "the primary asked for a switchover: taking the VM over");
    return true;
}

/* A switchover's failover: the primary released its held output itself. */
static void primary_released_output(void *opaque)
{
    struct vm_replication *replication = opaque;
    committed_output_forget(&replication->committed);
}

/* After the initial copy the SVM is a VM that can take over: from now on
 * the heartbeat's own timeout decides (the checkpoint device's setup). */
static int detector_setup(void *opaque)
{
    struct vm_replication *replication = opaque;
    failure_detector_set_timeout(&replication->detector, replication->heartbeat_timeout_ms);
    return 0;
}

static const struct colo_checkpoint_device_ops detector_device = {
    .setup = detector_setup,
};

int vm_replication_start_secondary(struct vm_replication *replication, struct machine *machine, const char *address,
                                   int heartbeat_timeout_ms, struct error *err)
{
    pthread_mutex_lock(&replication->lock);
    replication->heartbeat_timeout_ms = heartbeat_timeout_ms;
    replication->role = ROLE_SECONDARY;
    replication->phase = "waiting";
    replication->machine = machine;
    pthread_mutex_unlock(&replication->lock);
    if (vm_replication_guard_start(replication, err) < 0)
        return -1;
    /* Patient until the initial copy is done: nothing can be taken over
     * before (a takeover is refused), so a scheduling gap on a loaded host
     * would only end the protection; a primary that is really gone still
     * breaks the connection, or stays silent for this long. */
    int initial_copy_timeout_ms = heartbeat_timeout_ms;
    if (heartbeat_timeout_ms > 0 && heartbeat_timeout_ms < VM_REPLICATION_INITIAL_COPY_HEARTBEAT_TIMEOUT_MS)
        initial_copy_timeout_ms = VM_REPLICATION_INITIAL_COPY_HEARTBEAT_TIMEOUT_MS;
    failure_detector_init(&replication->detector, initial_copy_timeout_ms, on_primary_dead, replication);
    vm_replication_mark(replication, &replication->detector_initialized);
    /* Mute the NICs before anything runs: no frame out, no backend read. */
    output_buffer_init(&replication->output, machine, true);
    vm_replication_mark(replication, &replication->output_initialized);
    committed_output_init(&replication->committed, machine);
    vm_replication_mark(replication, &replication->committed_initialized);

    /* The primary's two connections, authenticated and paired; strangers
     * are refused meanwhile (vm_replication_peer.c). */
    if (vm_replication_accept_peer(replication, address, err) < 0)
        return -1;
    if (replication->replication_fd < 0)
        return 0; /* asked to stop while waiting: the machine stops as it starts */
    if (mirror_reader_init(&replication->mirror_reader, machine, mirror_channel_of_connection(replication->pair.mirror),
                           &replication->detector, err) < 0)
        return -1;
    vm_replication_mark(replication, &replication->mirror_reader_initialized);
    /* The SVM's output goes back to the primary for the compare. */
    if (output_buffer_set_secondary_return(&replication->output, &replication->mirror_reader, err) < 0)
        return -1;
    machine_pause(machine); /* handed to the loop paused, once */
    struct secondary_disk_options disk_options = { .buffer_limit_bytes = VM_REPLICATION_DISK_BUFFER_MEMORY };
    disk_replication_secondary_init(&replication->secondary_disks, machine, &disk_options);
    vm_replication_mark(replication, &replication->secondary_disks_initialized);
    vm_replication_read_secondary_histories(replication);
    struct colo_secondary_options options;
    colo_secondary_options_defaults(&options);
    options.initial_copy_companion = disk_sync_destination_companion(&replication->secondary_disks.sync);
    options.may_switch_over = may_switch_over;
    options.switch_over_opaque = replication;
    if (colo_secondary_init(&replication->secondary, machine, replication->replication_fd, &options, err) < 0)
        return -1;
    vm_replication_mark(replication, &replication->secondary_initialized);
    /* The order is the failover's: the disks become the SVM's view and are
     * flushed, then the NICs go to their own network and announce, then
     * the primary's output behind the last checkpoint, then the SVM's own
     * since (newer). */
    if (colo_secondary_add_device(&replication->secondary, "disks", &disk_replication_secondary_device,
                                  &replication->secondary_disks, err) < 0 ||
        colo_secondary_add_device(&replication->secondary, "mirror", &mirror_reader_device, &replication->mirror_reader,
                                  err) < 0 ||
        colo_secondary_add_device(&replication->secondary, "committed output", &committed_output_device,
                                  &replication->committed, err) < 0 ||
        colo_secondary_add_device(&replication->secondary, "output", &output_buffer_secondary_device,
                                  &replication->output, err) < 0 ||
        colo_secondary_add_device(&replication->secondary, "failure detector", &detector_device, replication, err) <
            0 ||
        colo_secondary_start(&replication->secondary, err) < 0)
        return -1;
    pthread_mutex_lock(&replication->lock);
    replication->phase = NULL;
    pthread_mutex_unlock(&replication->lock);
    /* The failover waits for the cluster's verdict first. */
    struct colo_failover_gate gate = { .may_take_over = vm_replication_may_take_over,
                                       .opaque = replication,
                                       .primary_released_output = primary_released_output };
    if (mirror_reader_start(&replication->mirror_reader, err) < 0 ||
        colo_failover_start(&replication->failover, &replication->secondary, &gate, on_failover_finished, replication,
                            err) < 0 ||
        heartbeat_sender_start(&replication->beats_to_primary, HEARTBEAT_INTERVAL_MS, mirror_reader_send_heartbeat,
                               &replication->mirror_reader, err) < 0)
        return -1;
    vm_replication_mark(replication, &replication->failover_started);
    vm_replication_log(replication, "the primary connected; receiving the initial copy");
    return 0;
}

bool vm_replication_failover_refused(struct vm_replication *replication)
{
    pthread_mutex_lock(&replication->lock);
    bool refused = replication->failover_refused;
    pthread_mutex_unlock(&replication->lock);
    return refused;
}

int vm_replication_handle_failover(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request;
    struct vm_replication *replication = opaque;
    pthread_mutex_lock(&replication->lock);
    bool secondary = replication->role == ROLE_SECONDARY;
    const char *phase = replication->phase;
    pthread_mutex_unlock(&replication->lock);
    if (!secondary)
        return error_set(err, "this VM is not a COLO secondary");
    if (phase)
        return error_set(err, "nothing to fail over: the secondary is %s", phase);
    /* The operator's word counts as the primary's death: the monitor then
     * fails over as for any other cause. */
    failure_detector_declare_peer_dead(&replication->detector, "failover requested by the operator");
    struct colo_failover_result result;
    enum colo_failover_outcome outcome = colo_failover_wait(&replication->failover, 10000, &result);
    if (outcome == COLO_FAILOVER_DONE) {
        json_object_set_new(reply, "failed_over", json_true());
        return 0;
    }
    return error_set(err, "failover failed: %s",
                     outcome == COLO_FAILOVER_REFUSED ? result.refused : "no answer within 10 s");
}

void vm_replication_secondary_status(struct vm_replication *replication, json_t *fields)
{
    const char *state = replication->phase;
    if (!state)
        state = colo_secondary_state_name(colo_secondary_state(&replication->secondary));
    if (replication->secondary_initialized) {
        struct colo_secondary_stats stats;
        colo_secondary_get_stats(&replication->secondary, &stats);
        json_object_set_new(fields, "checkpoints", json_integer((json_int_t)stats.checkpoints));
        json_object_set_new(fields, "switchovers_refused", json_integer((json_int_t)stats.switchovers_refused));
    } else {
        json_object_set_new(fields, "checkpoints", json_integer(0));
    }
    struct output_buffer_stats output = { 0 };
    if (replication->output_initialized)
        output_buffer_get_stats(&replication->output, &output);
    json_object_set_new(fields, "dropped_transmits", json_integer((json_int_t)output.dropped_by_checkpoint));
    json_object_set_new(fields, "held_frames", json_integer((json_int_t)output.held_now));
    if (replication->failover_done) {
        json_object_set_new(fields, "switched_over", json_boolean(replication->took_over_by_switchover));
        json_object_set_new(fields, "released_at_failover", json_integer((json_int_t)output.released_at_failover));
        json_object_set_new(fields, "skipped_at_failover", json_integer((json_int_t)output.skipped_at_failover));
        json_object_set_new(fields, "primary_output_sent_at_failover",
                            json_integer((json_int_t)committed_output_sent_at_failover(&replication->committed)));
    }
    struct mirror_reader_stats mirror = { 0 };
    if (replication->mirror_reader_initialized)
        mirror_reader_get_stats(&replication->mirror_reader, &mirror);
    json_object_set_new(fields, "mirrored_frames_received", json_integer((json_int_t)mirror.received));
    json_object_set_new(fields, "mirrored_frames_delivered", json_integer((json_int_t)mirror.delivered));
    json_object_set_new(fields, "mirrored_frames_dropped", json_integer((json_int_t)mirror.dropped));
    json_object_set_new(fields, "mirrored_frames_waited_for_room", json_integer((json_int_t)mirror.waited_for_room));
    json_object_set_new(fields, "mirrored_frames_already_in_checkpoint",
                        json_integer((json_int_t)mirror.already_in_checkpoint));
    json_object_set_new(fields, "returned_frames", json_integer((json_int_t)mirror.returned));
    json_object_set_new(fields, "returned_frames_dropped", json_integer((json_int_t)mirror.return_dropped));
    json_t *shift = vm_replication_shift_json(&output.shift);
    if (shift)
        json_object_set_new(fields, "tcp_sequence_shift", shift);
    if (replication->secondary_disks_initialized) {
        struct disk_replication_secondary_stats disks;
        disk_replication_secondary_get_stats(&replication->secondary_disks, &disks);
        json_t *disk = json_pack(
            "{s:i, s:I, s:I, s:f, s:I, s:I, s:I, s:f}", "replicated_disks", (int)disks.replicated_disks,
            "last_fold_blocks", (json_int_t)disks.last_commit.blocks, "last_fold_bytes",
            (json_int_t)disks.last_commit.bytes, "last_fold_ms", (double)disks.last_commit.duration_ns / 1e6,
            "memory_bytes", (json_int_t)disks.memory_bytes, "failover_fold_blocks", (json_int_t)disks.failover.blocks,
            "failover_fold_bytes", (json_int_t)disks.failover.bytes, "failover_fold_ms",
            (double)disks.failover.duration_ns / 1e6);
        if (disk)
            json_object_set_new(fields, "disks", disk);
    }
    json_object_set_new(fields, "heartbeat_timeout_ms", json_integer(replication->heartbeat_timeout_ms));
    json_object_set_new(fields, "state", json_string(state));
}

/* The secondary's threads end: its machine is about to go, or the VM that
 * failed over here is being protected in turn. The heartbeat to the old
 * primary writes to the old mirror connection's descriptor; once that is
 * closed its number may belong to the new pair's connections, so the
 * sender must be gone first. Idempotent. */
void vm_replication_secondary_retire(struct vm_replication *replication)
{
    if (!replication->failover_started)
        return;
    pthread_mutex_lock(&replication->lock);
    replication->secondary_stopping = true;
    pthread_mutex_unlock(&replication->lock);
    /* (The monitor's failover then acts on a machine that no longer runs.) */
    failure_detector_declare_peer_dead(&replication->detector, "the VM stopped here");
    colo_failover_join(&replication->failover);
    heartbeat_sender_stop(&replication->beats_to_primary);
    mirror_reader_stop(&replication->mirror_reader);
    vm_replication_close_peer(replication);
}

void vm_replication_secondary_machine_stopped(struct vm_replication *replication)
{
    /* The secondary's threads use the machine: end them before it goes. */
    vm_replication_secondary_retire(replication);
    /* Ended by the primary on purpose: the bases are its last checkpoint. */
    enum colo_ending_reason reason;
    if (vm_replication_primary_ended(replication, &reason))
        vm_replication_record_disk_history(replication);
}

json_t *vm_replication_shift_json(const struct tcp_sequence_shift_counters *counters)
{
    json_t *shift = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I}", "connections", (json_int_t)counters->connections, "offsets_learned",
        (json_int_t)counters->offsets_learned, "outbound_rewritten", (json_int_t)counters->outbound_rewritten,
        "inbound_rewritten", (json_int_t)counters->inbound_rewritten, "sack_blocks_rewritten",
        (json_int_t)counters->sack_blocks_rewritten, "dropped_table_full", (json_int_t)counters->dropped_table_full);
    if (shift) {
        /* The connections a survivor shifted, from the last checkpoint, the
         * initial copy or a migration (tcp_sequence_shift.h). */
        json_object_set_new(shift, "carried_by_checkpoint", json_integer((json_int_t)counters->restored));
        json_object_set_new(shift, "timestamp_offsets_learned",
                            json_integer((json_int_t)counters->timestamp_offsets_learned));
        json_object_set_new(shift, "timestamps_rewritten", json_integer((json_int_t)counters->timestamps_rewritten));
    }
    return shift;
}
