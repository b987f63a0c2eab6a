/* COLO for one VM, the primary's side: `protect` (the control command),
 * the loop's thread with its devices (output buffer, mirror sender), the
 * heartbeat, and the `checkpoint` command. */
#include "vm_replication_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "machine.h"
#include "socket.h"
#include "virtio_net.h"

/* Every checkpoint is an event ("colo events NAME" shows them): where each
 * pause went, for an operator asking why the service stutters, and for
 * bench/run_replication.sh. */
static void post_checkpoint_event(void *opaque, const struct colo_checkpoint_report *report)
{
    struct vm_replication *replication = opaque;
    struct primary_disk_checkpoint_report disk;
    disk_replication_primary_last_report(&replication->primary_disks, &disk);
    pthread_mutex_lock(&replication->lock);
    replication->last_disk_report = disk;
    pthread_mutex_unlock(&replication->lock);
    json_t *fields = vm_replication_checkpoint_report_json(report);
    json_object_set_new(fields, "disk_blocks", json_integer((json_int_t)disk.blocks));
    json_object_set_new(fields, "disk_bytes", json_integer((json_int_t)disk.bytes));
    json_object_set_new(fields, "disk_precopy_bytes", json_integer((json_int_t)disk.precopy_bytes));
    json_t *event = json_pack("{s:s, s:s, s:o}", "event", "replication", "what", "checkpoint", "checkpoint", fields);
    if (event) {
        vm_control_post_event(replication->control, event);
        json_decref(event);
    }
    /* The comparing proxy fell back after a storm, or compares again. */
    enum output_mode mode;
    char reason[160];
    if (output_buffer_take_mode_change(&replication->output, &mode, reason, sizeof reason)) {
        char detail[200];
        snprintf(detail, sizeof detail, "%s: %s", output_mode_name(mode), reason);
        vm_replication_log(replication, "output release mode %s", detail);
        vm_replication_post_event(replication, "output mode", detail);
    }
}

/* The comparing proxy's part of the primary's status. */
static json_t *compare_json(struct vm_replication *replication, const struct output_buffer_stats *output)
{
    struct output_compare_counters counters;
    output_buffer_get_compare_counters(&replication->output, &counters);
    json_t *differences = json_object();
    for (int cause = 0; cause < OUTPUT_COMPARE_CAUSE_COUNT; cause++)
        json_object_set_new(differences, output_compare_cause_name((enum output_compare_cause)cause),
                            json_integer((json_int_t)counters.differences[cause]));
    /* What the timed-out frames waited for: the SVM's bytes, its ACK, ... */
    json_t *timeouts = json_object();
    for (int waiting = 0; timeouts && waiting < OUTPUT_COMPARE_WAITING_COUNT; waiting++)
        json_object_set_new(timeouts, output_compare_waiting_name((enum output_compare_waiting)waiting),
                            json_integer((json_int_t)counters.timeouts_waiting[waiting]));
    json_t *dropped = json_pack("{s:I, s:I, s:I, s:I}", "held_full", (json_int_t)counters.dropped_held_full,
                                "flow_table_full", (json_int_t)counters.dropped_flow_table_full, "buffer_full",
                                (json_int_t)counters.dropped_buffer_full, "out_of_order",
                                (json_int_t)counters.dropped_out_of_order);
    json_t *object = json_pack(
        "{s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}", "mode_now",
        output_mode_name(output->mode_now), "reason", output->mode_reason, "timeout_ms",
        (int)replication->compare_options.compare_timeout_ms, "released_matched", (json_int_t)output->released_matched,
        "released_at_once", (json_int_t)counters.released_at_once, "matched_bytes", (json_int_t)counters.matched_bytes,
        "matched_messages", (json_int_t)counters.matched_messages, "primary_frames",
        (json_int_t)counters.primary_frames, "secondary_frames", (json_int_t)output->secondary_frames_compared,
        "secondary_frames_stale", (json_int_t)output->secondary_frames_stale, "checkpoints_by_difference",
        (json_int_t)output->checkpoints_by_difference, "storms", (json_int_t)output->storms, "tcp_restarts",
        (json_int_t)counters.tcp_restarts, "differences", differences ? differences : json_object(), "dropped",
        dropped ? dropped : json_object(), "timeouts_waiting_for", timeouts ? timeouts : json_object());
    /* A survivor's connections its checkpoints take to the new secondary
     * shifted (tcp_sequence_shift.h). */
    if (object)
        json_object_set_new(object, "shifted_connections_carried", json_integer((json_int_t)output->shift_carried));
    /* What comparing adds to a reply's latency: how long the frames a
     * match released waited for the SVM's twin. */
    if (object && output->released_matched) {
        json_object_set_new(object, "match_wait_p50_ms", json_real((double)output->match_wait_p50_us / 1000));
        json_object_set_new(object, "match_wait_p99_ms", json_real((double)output->match_wait_p99_us / 1000));
    }
    /* What and where the last difference was, for whoever wonders why
     * checkpoints are forced. */
    const struct output_compare_difference *last = &counters.last_difference;
    if (object && last->count) {
        uint64_t now_us = clock_monotonic_us();
        json_t *difference = json_pack("{s:s, s:s, s:f, s:I}", "cause", output_compare_cause_name(last->cause), "frame",
                                       last->by_primary ? "primary" : "secondary", "seconds_ago",
                                       now_us > last->at_us ? (double)(now_us - last->at_us) / 1e6 : 0.0, "number",
                                       (json_int_t)last->count);
        if (difference && last->flow[0])
            json_object_set_new(difference, "flow", json_string(last->flow));
        if (difference && last->cause == OUTPUT_COMPARE_CAUSE_TIMEOUT) {
            json_object_set_new(difference, "waited_for", json_string(output_compare_waiting_name(last->waited_for)));
            json_object_set_new(difference, "waited_bytes", json_integer((json_int_t)last->waited_bytes));
        }
        if (difference)
            json_object_set_new(object, "last_difference", difference);
    }
    return object ? object : json_object();
}

/* The disks' initial sync, as events (`colo events NAME`), at most every
 * 0.1 s: "protect" returns at once, and a 2 GiB image takes seconds. */
static void post_disk_sync_progress(void *opaque)
{
    struct vm_replication *replication = opaque;
    double now = clock_monotonic_seconds();
    struct disk_sync_progress progress;
    disk_sync_source_get_progress(&replication->primary_disks.sync, &progress);
    if (progress.planned && !replication->disk_sync_start_posted) {
        /* The copy's plan: how each disk goes, and how much. */
        replication->disk_sync_start_posted = true;
        json_t *started = json_pack("{s:s, s:s, s:o}", "event", "replication", "what", "disk sync started", "disk_sync",
                                    vm_replication_disk_sync_json(&progress));
        if (started) {
            vm_control_post_event(replication->control, started);
            json_decref(started);
        }
    }
    if (progress.done) {
        json_t *done = json_pack("{s:s, s:s, s:o}", "event", "replication", "what", "disk sync done", "disk_sync",
                                 vm_replication_disk_sync_json(&progress));
        if (done) {
            vm_control_post_event(replication->control, done);
            json_decref(done);
        }
        char text[400];
        vm_replication_describe_disk_sync(&progress, text, sizeof text);
        vm_replication_log(replication, "disk sync done: %s", text);
        return;
    }
    if (!progress.compared && now - replication->last_progress_event < 0.1)
        return;
    replication->last_progress_event = now;
    json_t *event = json_pack("{s:s, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:b}}", "event", "replication", "what",
                              "disk sync", "disk_sync", "bytes_total", (json_int_t)progress.bytes_total,
                              "bytes_compared", (json_int_t)progress.bytes_compared, "chunks_differing",
                              (json_int_t)progress.chunks_differing, "bytes_sent", (json_int_t)progress.bytes_sent,
                              "dirty_rounds", (json_int_t)progress.dirty_rounds, "compared", progress.compared);
    if (event) {
        vm_control_post_event(replication->control, event);
        json_decref(event);
    }
}

/* The secondary's beats went silent, or its mirror connection broke:
 * end the loop wherever it waits (a hung secondary must not hold the
 * clients' output longer than this); the end path asks the cluster. */
static void on_secondary_dead(void *opaque, const char *reason)
{
    struct vm_replication *replication = opaque;
    pthread_mutex_lock(&replication->lock);
    int replication_fd = replication->replication_fd;
    bool switching_over = replication->switching_over;
    pthread_mutex_unlock(&replication->lock);
    if (switching_over) {
        /* The secondary is taking the VM over on our word: its silence
         * now is no failure, and this side claims nothing (the switchover
         * has its own bounded wait for the answer). */
        vm_replication_log(replication, "the secondary seems gone during the switchover: %s (not contested)", reason);
        return;
    }
    vm_replication_log(replication, "the secondary seems gone: %s", reason);
    /* Claim first (see on_primary_dead on the secondary). */
    takeover_guard_report(&replication->guard, TAKEOVER_EVENT_SUSPICION);
    if (replication_fd >= 0)
        shutdown(replication_fd, SHUT_RDWR);
}

/* After the initial copy (the devices' setup, the SVM built): the
 * secondary's silence counts from now on, with its configured timeout,
 * and an end of the loop needs the cluster's verdict. */
static int watch_setup(void *opaque)
{
    struct vm_replication *replication = opaque;
    vm_replication_mark(replication, &replication->initial_copy_done);
    failure_detector_set_timeout(&replication->secondary_detector, replication->secondary_timeout_ms);
    return 0;
}

static const struct colo_checkpoint_device_ops watch_device = {
    .setup = watch_setup,
};

/* The secondary took the machine (same RAM, devices, disk sizes, MACs):
 * the initial copy starts, with its disks' hashes. */
static void note_machine_accepted(void *opaque)
{
    vm_replication_mark(opaque, &((struct vm_replication *)opaque)->initial_copy_started);
}

/* The loop ended because the VM ends on purpose (quit, poweroff, reboot). */
static bool primary_ended_on_purpose(struct vm_replication *replication)
{
    if (!replication->primary_initialized)
        return false;
    pthread_mutex_lock(&replication->primary.lock);
    bool ending = replication->primary.ending;
    pthread_mutex_unlock(&replication->primary.lock);
    return ending;
}

/* The switchover's wait (colo_primary_options.while_switching_over): the
 * PVM is paused for good, so nothing reads its NICs' backends any more;
 * what the clients send until the secondary's announce moves the VM's MACs
 * is mirrored to the SVM instead of being lost (the clients' TCP would
 * send it again only after its retransmission timeout, 200 ms or more). */
static void mirror_input_while_switching_over(void *opaque)
{
    struct vm_replication *replication = opaque;
    for (unsigned i = 0; i < machine_nic_count(replication->machine); i++)
        virtio_net_drain_backend_to_observer(machine_nic(replication->machine, i));
}

/* Test builds: COLO_TEST_COMPARE_CAPTURE=FILE records what the comparator
 * is given (proxy/compare_capture.h), for the tests' captured flows
 * (tests/proxy/capture_compare_flows.sh). */
static int capture_compare_from_env(struct vm_replication *replication, struct error *err)
{
#ifdef COLO_TEST_HOOKS
    const char *path = getenv("COLO_TEST_COMPARE_CAPTURE");
    if (path && *path && replication->compare_options.mode == OUTPUT_MODE_COMPARE)
        return output_buffer_capture_compare(&replication->output, path, err);
#else
    (void)replication;
    (void)err;
#endif
    return 0;
}

/* A disk's first write of an epoch (machine thread, under its epoch lock). */
static void ask_for_stream_phase(void *opaque)
{
    colo_primary_stream_wanted(opaque);
}

static void *primary_thread(void *opaque)
{
    pthread_setname_np(pthread_self(), "primary");
    struct vm_replication *replication = opaque;
    struct error err;
    int status = -1;
    struct colo_primary_options options;
    colo_primary_options_defaults(&options);
    options.max_interval_ms = replication->interval_ms;
    options.on_checkpoint = post_checkpoint_event;
    options.on_checkpoint_opaque = replication;
    options.while_switching_over = mirror_input_while_switching_over;
    options.while_switching_over_opaque = replication;
    options.migration.machine_accepted = note_machine_accepted;
    options.migration.progress_opaque = replication;
#ifdef COLO_TEST_HOOKS
    options.kill_hook = replication->kill_hook;
#endif

    int replication_fd = -1, mirror_fd = -1;
    if (vm_replication_connect_peer(replication, &err) == 0) {
        replication_fd = replication->replication_fd;
        mirror_fd = replication->mirror_fd;
    }
    bool heartbeating = false, disks_ready = false;
    if (mirror_fd >= 0) {
        /* The hooks and the disks' wrappers change with the PVM paused. */
        machine_pause(replication->machine);
        mirror_sender_init(&replication->mirror, replication->machine,
                           mirror_channel_of_connection(replication->pair.mirror));
        vm_replication_mark(replication, &replication->mirror_initialized);
        struct primary_disk_options disk_options = { .epoch_memory_limit_bytes = VM_REPLICATION_DISK_EPOCH_MEMORY };
        disks_ready = disk_replication_primary_init(&replication->primary_disks, replication->machine, &disk_options,
                                                    &err) == 0;
        if (disks_ready) {
            replication->disk_sync_start_posted = false;
            vm_replication_mark(replication, &replication->primary_disks_initialized);
            replication->primary_disks.sync.on_progress = post_disk_sync_progress;
            replication->primary_disks.sync.on_progress_opaque = replication;
        }
        machine_resume(replication->machine);
        options.migration.companion = disk_sync_source_companion(&replication->primary_disks.sync);
        /* The SVM's output comes back on the mirror, for the compare. */
        mirror_sender_set_secondary_output(&replication->mirror, output_buffer_secondary_frame,
                                           output_buffer_secondary_boundary, &replication->output);
        if (replication->compare_options.mode == OUTPUT_MODE_BUFFERED)
            mirror_sender_keep_secondary_output(&replication->mirror);
        heartbeating = disks_ready &&
                       heartbeat_sender_start(&replication->heartbeat, HEARTBEAT_INTERVAL_MS,
                                              mirror_sender_send_heartbeat, &replication->mirror, &err) == 0 &&
                       mirror_sender_watch_start(&replication->mirror, &replication->secondary_detector, &err) == 0;
    }
    if (heartbeating &&
        colo_primary_init(&replication->primary, replication->machine, replication_fd, &options, &err) == 0) {
        pthread_mutex_lock(&replication->lock);
        replication->primary_initialized = true;
        replication->phase = NULL;
        pthread_mutex_unlock(&replication->lock);
        output_buffer_set_primary(&replication->output, &replication->primary, replication->output_delay_ms);
        disk_replication_primary_tell_writes(&replication->primary_disks, ask_for_stream_phase, &replication->primary);
        if (output_buffer_set_compare(&replication->output, &replication->compare_options, &err) == 0 &&
            capture_compare_from_env(replication, &err) == 0 &&
            colo_primary_add_device(&replication->primary, "mirror", &mirror_sender_device, &replication->mirror,
                                    &err) == 0 &&
            colo_primary_add_device(&replication->primary, "output", &output_buffer_primary_device,
                                    &replication->output, &err) == 0 &&
            colo_primary_add_device(&replication->primary, "disks", &disk_replication_primary_device,
                                    &replication->primary_disks, &err) == 0 &&
            colo_primary_add_device(&replication->primary, "secondary watch", &watch_device, replication, &err) == 0) {
            if (replication->compare_options.mode == OUTPUT_MODE_COMPARE)
                vm_replication_log(replication,
                                   "protecting with %s (checkpoint at least every %u ms; output compared with "
                                   "the secondary's, a checkpoint within %u ms of a frame without its twin)",
                                   replication->destination, replication->interval_ms,
                                   replication->compare_options.compare_timeout_ms);
            else
                vm_replication_log(replication,
                                   "protecting with %s (checkpoint at least every %u ms, and within %u ms "
                                   "of held output)",
                                   replication->destination, replication->interval_ms, replication->output_delay_ms);
            vm_replication_post_event(replication, "protecting", replication->destination);
            status = colo_primary_run(&replication->primary, &err);
        }
    }
    /* The loop left the PVM running with its dirty log off, its output
     * still held. Ended on purpose (quit, poweroff), or before the
     * secondary had a VM, it is ours alone. Otherwise the secondary may
     * be taking over: the cluster decides, and until then nothing leaves.
     * After a switchover's SWITCHOVER went out the PVM was left paused:
     * switched over, it never runs again; without an answer, only the
     * cluster can say that the secondary did not take over. */
    struct colo_switchover_status switchover = { .outcome = COLO_SWITCHOVER_NONE };
    if (replication->primary_initialized)
        colo_primary_switchover_status(&replication->primary, &switchover);
    bool switched = switchover.outcome == COLO_SWITCHOVER_DONE;
    enum takeover_verdict verdict = TAKEOVER_TAKE_OVER;
    char verdict_reason[256] = "";
    if (switched) {
        verdict = TAKEOVER_STAND_DOWN;
        snprintf(verdict_reason, sizeof verdict_reason, "switched over: the VM runs on %.200s now",
                 replication->destination);
    } else if (switchover.outcome == COLO_SWITCHOVER_UNKNOWN && !replication->cluster) {
        verdict = TAKEOVER_STAND_DOWN;
        snprintf(verdict_reason, sizeof verdict_reason,
                 "no answer to the switchover (%.100s) and no cluster to ask: the secondary may run the VM, so "
                 "this copy stays stopped",
                 switchover.error);
    } else if (status < 0 && replication->initial_copy_done) {
        verdict = vm_replication_verdict(replication, TAKEOVER_EVENT_LINK_LOST, verdict_reason, sizeof verdict_reason);
        /* The cluster's word that the VM is still ours: the secondary did
         * not take over, so the PVM the switchover left paused runs on. */
        if (switchover.outcome == COLO_SWITCHOVER_UNKNOWN && verdict == TAKEOVER_TAKE_OVER) {
            vm_replication_log(replication, "the switchover got no answer, and the cluster says the VM is still "
                                            "ours: resuming it here");
            machine_resume(replication->machine);
        }
    }
    if (replication->mirror_initialized) {
        mirror_sender_watch_stop(&replication->mirror);
        mirror_sender_stop(&replication->mirror);
    }
    heartbeat_sender_stop(&replication->heartbeat);
    if (verdict == TAKEOVER_TAKE_OVER) {
        output_buffer_release_and_pass(&replication->output);
    } else {
        /* Another copy owns the VM: this one is never heard again. */
        output_buffer_mute(&replication->output);
        pthread_mutex_lock(&replication->lock);
        if (switched) {
            replication->switched_over = true;
        } else {
            replication->stood_down = true;
            if (!replication->decision[0] || switchover.outcome == COLO_SWITCHOVER_UNKNOWN)
                snprintf(replication->decision, sizeof replication->decision, "stand down: %s", verdict_reason);
        }
        pthread_mutex_unlock(&replication->lock);
    }
    /* Ended on purpose after a checkpoint, or switched over (the PVM left
     * paused after the final one): the images may be exactly that
     * checkpoint (the secondary's are), so the way back can be incremental. */
    if (replication->primary_disks_initialized && (switched || (status == 0 && primary_ended_on_purpose(replication))))
        vm_replication_record_disk_history(replication);
    /* Unprotected, the disks are the images alone again. */
    if (replication->primary_disks_initialized) {
        pthread_mutex_lock(&replication->lock);
        replication->primary_disks_initialized = false;
        pthread_mutex_unlock(&replication->lock);
        machine_pause(replication->machine);
        disk_replication_primary_destroy(&replication->primary_disks);
        machine_resume(replication->machine);
    }
    pthread_mutex_lock(&replication->lock);
    replication->phase = switched ? "switched over" : verdict == TAKEOVER_TAKE_OVER ? "unprotected" : "stood down";
    if (switched)
        snprintf(replication->end_reason, sizeof replication->end_reason,
                 "switched over: the VM runs on %.300s now; this copy stopped (service gap %.1f ms)",
                 replication->destination, (double)switchover.gap_us / 1000);
    else if (verdict != TAKEOVER_TAKE_OVER)
        snprintf(replication->end_reason, sizeof replication->end_reason, "stood down: %s", verdict_reason);
    replication->switching_over = false;
    pthread_mutex_unlock(&replication->lock);
    vm_replication_close_peer(replication);
    if (switched) {
        vm_replication_log(replication, "%s", replication->end_reason);
        vm_replication_post_event(replication, "switched over", replication->end_reason);
        vm_control_end_operation(replication->control, false);
        machine_request_stop(replication->machine);
    } else if (verdict == TAKEOVER_TAKE_OVER) {
        vm_replication_primary_loop_ended(replication, status, &err);
        vm_control_end_operation(replication->control, false);
    } else {
        vm_replication_log(replication, "standing down (%s): the other copy owns the VM; stopping this one",
                           verdict_reason);
        vm_replication_post_event(replication, "stood down", verdict_reason);
        vm_control_end_operation(replication->control, false);
        machine_request_stop(replication->machine);
    }
    return NULL;
}

/* With the VM running unprotected (or never protected): what a previous
 * protection left behind goes before a new one starts. */
static void forget_previous_protection(struct vm_replication *replication)
{
    if (replication->primary_thread_joinable) {
        pthread_join(replication->primary_thread, NULL);
        replication->primary_thread_joinable = false;
    }
    if (replication->primary_initialized)
        colo_primary_destroy(&replication->primary);
    replication->primary_initialized = false;
    if (replication->mirror_initialized)
        mirror_sender_destroy(&replication->mirror);
    replication->mirror_initialized = false;
    if (replication->secondary_detector_initialized)
        failure_detector_destroy(&replication->secondary_detector);
    replication->secondary_detector_initialized = false;
    replication->initial_copy_done = false;
    replication->initial_copy_started = false;
}

int vm_replication_handle_protect(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    struct vm_replication *replication = opaque;
    const char *destination = json_string_value(json_object_get(request, "destination"));
    if (!destination || !*destination || strlen(destination) >= sizeof replication->destination)
        return error_set(err, "protect needs \"destination\": \"HOST:PORT\"");
    int heartbeat_timeout_ms = 200;
    json_t *heartbeat_timeout = json_object_get(request, "heartbeat_timeout_ms");
    if (heartbeat_timeout) {
        if (!json_is_integer(heartbeat_timeout) || json_integer_value(heartbeat_timeout) < 0 ||
            json_integer_value(heartbeat_timeout) > 3600000)
            return error_set(err, "\"heartbeat_timeout_ms\" must be a whole number from 0 to 3600000");
        heartbeat_timeout_ms = (int)json_integer_value(heartbeat_timeout);
    }
    unsigned output_delay_ms = VM_REPLICATION_DEFAULT_OUTPUT_DELAY_MS;
    json_t *output_delay = json_object_get(request, "output_delay_ms");
    if (output_delay) {
        if (!json_is_integer(output_delay) || json_integer_value(output_delay) < 0 ||
            json_integer_value(output_delay) > 600000)
            return error_set(err, "\"output_delay_ms\" must be a whole number from 0 to 600000");
        output_delay_ms = (unsigned)json_integer_value(output_delay);
    }
    struct output_compare_options compare_options;
    output_compare_options_defaults(&compare_options);
    json_t *mode = json_object_get(request, "mode");
    if (mode) {
        const char *name = json_string_value(mode);
        if (name && strcmp(name, "compare") == 0)
            compare_options.mode = OUTPUT_MODE_COMPARE;
        else if (name && strcmp(name, "buffered") == 0)
            compare_options.mode = OUTPUT_MODE_BUFFERED;
        else
            return error_set(err, "\"mode\" must be \"compare\" or \"buffered\"");
    }
    /* Compare mode releases output without a checkpoint: the interval only
     * bounds how far the SVM drifts, and every checkpoint is a pause a
     * request may meet (KV SET p99 2.5x unprotected at 100 ms, 1.6-1.8x at
     * 1 s, docs/benchmarks.md). Buffered mode's output waits for it. */
    unsigned interval_ms = compare_options.mode == OUTPUT_MODE_COMPARE ? VM_REPLICATION_DEFAULT_COMPARE_INTERVAL_MS
                                                                       : VM_REPLICATION_DEFAULT_BUFFERED_INTERVAL_MS;
    json_t *interval = json_object_get(request, "interval_ms");
    if (interval) {
        if (!json_is_integer(interval) || json_integer_value(interval) < 1 || json_integer_value(interval) > 600000)
            return error_set(err, "\"interval_ms\" must be a whole number from 1 to 600000");
        interval_ms = (unsigned)json_integer_value(interval);
    }
    json_t *compare_timeout = json_object_get(request, "compare_timeout_ms");
    if (compare_timeout) {
        if (!json_is_integer(compare_timeout) || json_integer_value(compare_timeout) < 0 ||
            json_integer_value(compare_timeout) > 600000)
            return error_set(err, "\"compare_timeout_ms\" must be a whole number from 0 to 600000");
        compare_options.compare_timeout_ms = (unsigned)json_integer_value(compare_timeout);
    }
    int connect_timeout_ms = VM_REPLICATION_DEFAULT_CONNECT_TIMEOUT_MS;
    json_t *connect_timeout = json_object_get(request, "connect_timeout_ms");
    if (connect_timeout) {
        if (!json_is_integer(connect_timeout) || json_integer_value(connect_timeout) < 1 ||
            json_integer_value(connect_timeout) > 600000)
            return error_set(err, "\"connect_timeout_ms\" must be a whole number from 1 to 600000");
        connect_timeout_ms = (int)json_integer_value(connect_timeout);
    }
    pthread_mutex_lock(&replication->lock);
    /* A secondary that failed over is a plain VM and may be protected in
     * turn; a primary whose secondary went away too. */
    enum vm_replication_role role = replication->role;
    bool busy = !(role == ROLE_NONE || (role == ROLE_SECONDARY && replication->failover_done) ||
                  (role == ROLE_PRIMARY && replication->phase && strcmp(replication->phase, "unprotected") == 0));
    pthread_mutex_unlock(&replication->lock);
    if (busy)
        return error_set(err, "this VM is already %s (protecting it again is not supported yet)",
                         role == ROLE_PRIMARY ? "a primary" : "a secondary");
    /* The operation keeps the machine alive while the loop uses it, and
     * the VM shows "protected". */
    struct machine *machine = vm_control_begin_operation(replication->control, VM_STATE_PROTECTED, false, err);
    if (!machine)
        return -1;
    /* A secondary that failed over: its threads toward the old primary end
     * before the new pair's connections exist. */
    if (role == ROLE_SECONDARY)
        vm_replication_secondary_retire(replication);
    forget_previous_protection(replication);
    pthread_mutex_lock(&replication->lock);
    replication->role = ROLE_PRIMARY;
    replication->switching_over = false; /* a secondary that took a switchover over */
    replication->phase = "connecting";
    replication->end_reason[0] = 0;
    replication->machine = machine;
    replication->interval_ms = interval_ms;
    replication->output_delay_ms = output_delay_ms;
    replication->compare_options = compare_options;
    replication->connect_timeout_ms = connect_timeout_ms;
    snprintf(replication->destination, sizeof replication->destination, "%s", destination);
    pthread_mutex_unlock(&replication->lock);
    /* The hook is installed with the PVM paused; it passes frames through
     * until the SVM exists (the output device's setup). A secondary that
     * failed over has its hook installed already, passing. */
    machine_pause(machine);
    if (!replication->output_initialized) {
        output_buffer_init(&replication->output, machine, false);
        vm_replication_mark(replication, &replication->output_initialized);
    }
    machine_resume(machine);
    /* Who may own the VM, for this protection (it needs the output buffer:
     * its release gate). Corosync unreachable fails the protect here. */
    if (vm_replication_guard_start(replication, err) < 0) {
        pthread_mutex_lock(&replication->lock);
        replication->phase = "unprotected";
        snprintf(replication->end_reason, sizeof replication->end_reason, "%s", err->message);
        pthread_mutex_unlock(&replication->lock);
        vm_control_end_operation(replication->control, false);
        return -1;
    }
    replication->secondary_timeout_ms = heartbeat_timeout_ms > 0 ? heartbeat_timeout_ms
                                                                 : VM_REPLICATION_NO_CLUSTER_SECONDARY_TIMEOUT_MS;
    if (!replication->cluster && replication->secondary_timeout_ms < VM_REPLICATION_NO_CLUSTER_SECONDARY_TIMEOUT_MS)
        replication->secondary_timeout_ms = VM_REPLICATION_NO_CLUSTER_SECONDARY_TIMEOUT_MS;
    failure_detector_init(&replication->secondary_detector, VM_REPLICATION_INITIAL_COPY_HEARTBEAT_TIMEOUT_MS,
                          on_secondary_dead, replication);
    vm_replication_mark(replication, &replication->secondary_detector_initialized);
    if (pthread_create(&replication->primary_thread, NULL, primary_thread, replication) != 0) {
        vm_control_end_operation(replication->control, false);
        return error_set(err, "cannot start the primary's thread");
    }
    replication->primary_thread_joinable = true;
    json_object_set_new(reply, "destination", json_string(destination));
    json_object_set_new(reply, "interval_ms", json_integer(interval_ms));
    json_object_set_new(reply, "output_delay_ms", json_integer(output_delay_ms));
    json_object_set_new(reply, "mode", json_string(output_mode_name(compare_options.mode)));
    json_object_set_new(reply, "compare_timeout_ms", json_integer(compare_options.compare_timeout_ms));
    json_object_set_new(reply, "heartbeat_timeout_ms", json_integer(replication->secondary_timeout_ms));
    json_object_set_new(reply, "connect_timeout_ms", json_integer(connect_timeout_ms));
    json_object_set_new(reply, "cluster", json_string(replication->cluster ? "corosync" : "none"));
    return 0;
}

/* A checkpoint on request (the control socket's trigger): answers once a
 * requested checkpoint has completed, with its report. */
int vm_replication_handle_checkpoint(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request;
    struct vm_replication *replication = opaque;
    pthread_mutex_lock(&replication->lock);
    bool protecting = replication->role == ROLE_PRIMARY && replication->primary_initialized && !replication->phase;
    pthread_mutex_unlock(&replication->lock);
    if (!protecting)
        return error_set(err, "this VM is not a protected COLO primary (no checkpoint to take)");
    struct colo_primary_stats stats;
    uint64_t request_number = colo_primary_request_checkpoint(&replication->primary);
    /* Checkpoints take milliseconds; a loop that stopped meanwhile (the
     * secondary went away) never serves the request. The checkpoint that
     * serves it may have been under way already (triggered by held
     * output), if the PVM was not yet paused. */
    for (int waited_ms = 0; waited_ms < 5000; waited_ms++) {
        colo_primary_get_stats(&replication->primary, &stats);
        if (stats.requests_served >= request_number) {
            json_object_set_new(reply, "checkpoint", vm_replication_checkpoint_report_json(&stats.last_served_request));
            return 0;
        }
        pthread_mutex_lock(&replication->lock);
        const char *phase = replication->phase;
        pthread_mutex_unlock(&replication->lock);
        if (phase)
            return error_set(err, "the replication ended before the checkpoint (%s)", phase);
        clock_sleep_ms(1);
    }
    return error_set(err, "no checkpoint completed within 5 s of the request");
}

/* `colo switchover`: the secondary takes the VM over on purpose, with the
 * PVM paused for the final checkpoint and never resumed (docs/replication.md,
 * "Switchover"). Answers once the secondary took over, with the service
 * gap, or why not. */
int vm_replication_handle_switchover(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    struct vm_replication *replication = opaque;
    int timeout_ms = 10000;
    json_t *timeout = json_object_get(request, "timeout_ms");
    if (timeout) {
        if (!json_is_integer(timeout) || json_integer_value(timeout) < 1 || json_integer_value(timeout) > 60000)
            return error_set(err, "\"timeout_ms\" must be a whole number from 1 to 60000");
        timeout_ms = (int)json_integer_value(timeout);
    }
    pthread_mutex_lock(&replication->lock);
    enum vm_replication_role role = replication->role;
    bool looping = role == ROLE_PRIMARY && replication->primary_initialized && !replication->phase;
    /* The initial copy is over once the SVM runs (the loop's RUNNING). */
    bool copied = replication->initial_copy_done && replication->primary_initialized &&
                  colo_primary_state(&replication->primary) != COLO_PRIMARY_MIGRATING;
    bool busy = replication->switching_over;
    bool took_over = replication->failover_done;
    if (looping && copied && !busy)
        replication->switching_over = true;
    pthread_mutex_unlock(&replication->lock);
    if (role == ROLE_SECONDARY && !took_over)
        return error_set(err, "this VM is a COLO secondary: a switchover is asked of its primary "
                              "(colo switchover NAME on the primary's host)");
    if (!looping)
        return error_set(err, "this VM is not a protected COLO primary: there is no secondary to switch over to");
    if (!copied)
        return error_set(err, "the initial copy to the secondary is still in progress: switch over once it is "
                              "complete (colo status NAME)");
    if (busy)
        return error_set(err, "a switchover is already under way");
    vm_replication_log(replication, "switching over to %s", replication->destination);
    vm_replication_post_event(replication, "switchover", replication->destination);
    colo_primary_switch_over(&replication->primary, timeout_ms);
    /* The final checkpoint, SVM_RESUMED and the answer: within the loop's
     * own timeouts; a loop that ended meanwhile says so in the outcome. */
    struct colo_switchover_status switchover;
    uint64_t deadline_ms = clock_monotonic_ms() + (uint64_t)timeout_ms + 3u * 5000u;
    for (;;) {
        colo_primary_switchover_status(&replication->primary, &switchover);
        if (switchover.outcome != COLO_SWITCHOVER_PENDING || clock_monotonic_ms() > deadline_ms)
            break;
        clock_sleep_ms(1);
    }
    if (switchover.outcome == COLO_SWITCHOVER_DONE) {
        json_object_set_new(reply, "switched_over", json_true());
        json_object_set_new(reply, "peer", json_string(replication->destination));
        json_object_set_new(reply, "gap_ms", json_real((double)switchover.gap_us / 1000));
        return 0;
    }
    if (switchover.outcome != COLO_SWITCHOVER_UNKNOWN) {
        pthread_mutex_lock(&replication->lock);
        replication->switching_over = false;
        pthread_mutex_unlock(&replication->lock);
    }
    switch (switchover.outcome) {
    case COLO_SWITCHOVER_REFUSED:
        vm_replication_post_event(replication, "switchover refused", "by the secondary");
        return error_set(err, "the secondary refused to take over (its log and `colo status` say why); the VM "
                              "runs on here, protected");
    case COLO_SWITCHOVER_FAILED:
        return error_set(err, "the switchover failed before the handover (%s); the VM runs on here", switchover.error);
    case COLO_SWITCHOVER_UNKNOWN:
        return error_set(err,
                         "no answer from the secondary after SWITCHOVER (%s): it may run the VM, so this copy "
                         "stays paused %s (colo status NAME)",
                         switchover.error,
                         replication->cluster ? "until the cluster says the VM is still ours"
                                              : "for good (no cluster to ask)");
    default:
        return error_set(err, "the switchover did not complete in time (%s)",
                         colo_switchover_outcome_name(switchover.outcome));
    }
}

void vm_replication_primary_status(struct vm_replication *replication, json_t *fields)
{
    const char *state = replication->phase;
    if (!state)
        state = colo_primary_state_name(colo_primary_state(&replication->primary));
    json_object_set_new(fields, "peer", json_string(replication->destination));
    json_object_set_new(fields, "initial_copy_started", json_boolean(replication->initial_copy_started));
    if (replication->primary_initialized) {
        struct colo_primary *primary = &replication->primary;
        struct colo_primary_stats stats;
        colo_primary_get_stats(primary, &stats);
        json_object_set_new(fields, "checkpoints", json_integer((json_int_t)stats.checkpoints));
        json_object_set_new(fields, "downtime_p50_ms",
                            json_real((double)colo_primary_downtime_percentile(primary, 50) / 1000));
        json_object_set_new(fields, "downtime_p99_ms",
                            json_real((double)colo_primary_downtime_percentile(primary, 99) / 1000));
        json_object_set_new(fields, "downtime_max_ms", json_real((double)stats.max_downtime_us / 1000));
        json_object_set_new(fields, "checkpoints_by_output", json_integer((json_int_t)stats.output_checkpoints));
        json_object_set_new(fields, "checkpoints_by_request", json_integer((json_int_t)stats.requested_checkpoints));
        json_object_set_new(fields, "loop_wakeups", json_integer((json_int_t)stats.trigger_wakeups));
        json_object_set_new(fields, "stream_phases", json_integer((json_int_t)stats.stream_phases));
        json_object_set_new(fields, "interval_ms", json_integer(replication->interval_ms));
        json_object_set_new(fields, "output_delay_ms", json_integer(replication->output_delay_ms));
        if (stats.checkpoints)
            json_object_set_new(fields, "last_checkpoint", vm_replication_checkpoint_report_json(&stats.last));
    } else {
        json_object_set_new(fields, "checkpoints", json_integer(0));
    }
    if (replication->primary_disks_initialized) {
        struct disk_sync_progress sync;
        disk_sync_source_get_progress(&replication->primary_disks.sync, &sync);
        json_t *disks = vm_replication_disk_sync_json(&sync);
        if (disks)
            json_object_set_new(fields, "disk_sync", disks);
        json_object_set_new(fields, "last_checkpoint_disk_blocks",
                            json_integer((json_int_t)replication->last_disk_report.blocks));
        json_object_set_new(fields, "last_checkpoint_disk_bytes",
                            json_integer((json_int_t)replication->last_disk_report.bytes));
    }
    struct output_buffer_stats output;
    output_buffer_get_stats(&replication->output, &output);
    json_object_set_new(fields, "held_frames", json_integer((json_int_t)output.held_now));
    json_object_set_new(fields, "held_total", json_integer((json_int_t)output.held_total));
    json_object_set_new(fields, "released_total", json_integer((json_int_t)output.released_total));
    json_object_set_new(fields, "held_dropped", json_integer((json_int_t)output.dropped_full));
    uint64_t mirrored = 0, mirror_dropped = 0;
    if (replication->mirror_initialized) {
        mirrored = atomic_load(&replication->mirror.frames);
        mirror_dropped = atomic_load(&replication->mirror.dropped);
    }
    json_object_set_new(fields, "releases_refused", json_integer((json_int_t)output.releases_refused));
    json_object_set_new(fields, "output_mode", json_string(output_mode_name(replication->compare_options.mode)));
    if (replication->compare_options.mode == OUTPUT_MODE_COMPARE)
        json_object_set_new(fields, "compare", compare_json(replication, &output));
    json_object_set_new(fields, "heartbeat_timeout_ms", json_integer(replication->secondary_timeout_ms));
    json_object_set_new(fields, "mirrored_frames", json_integer((json_int_t)mirrored));
    json_object_set_new(fields, "mirror_dropped", json_integer((json_int_t)mirror_dropped));
    if (replication->primary_initialized) {
        struct colo_switchover_status switchover;
        colo_primary_switchover_status(&replication->primary, &switchover);
        if (switchover.outcome != COLO_SWITCHOVER_NONE) {
            json_t *object = json_pack("{s:s, s:f}", "outcome", colo_switchover_outcome_name(switchover.outcome),
                                       "gap_ms", (double)switchover.gap_us / 1000);
            if (object && switchover.error[0])
                json_object_set_new(object, "error", json_string(switchover.error));
            if (object)
                json_object_set_new(fields, "switchover", object);
        }
    }
    json_object_set_new(fields, "state", json_string(state));
}

void vm_replication_primary_machine_stopped(struct vm_replication *replication)
{
    pthread_mutex_lock(&replication->lock);
    bool looping = replication->primary_initialized && !replication->phase;
    pthread_mutex_unlock(&replication->lock);
    /* The loop ends at its next wait for a trigger (telling the secondary
     * when the VM ends on purpose) and ends its operation, which
     * vm_control_machine_stopped waits for. */
    if (looping)
        vm_replication_stop_primary_loop(replication);
}

bool vm_replication_switched_over(struct vm_replication *replication, char *line, size_t size)
{
    pthread_mutex_lock(&replication->lock);
    bool switched = replication->switched_over;
    snprintf(line, size, "%s", replication->end_reason);
    pthread_mutex_unlock(&replication->lock);
    return switched;
}
