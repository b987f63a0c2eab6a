/* COLO for one VM: what both roles share (vm_replication.h). The
 * primary's side is in vm_replication_primary.c, the secondary's in
 * vm_replication_secondary.c; docs/replication.md has the whole. */
#include "vm_replication_internal.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control_server.h"
#include "stream.h"

void vm_replication_mark(struct vm_replication *replication, bool *flag)
{
    pthread_mutex_lock(&replication->lock);
    *flag = true;
    pthread_mutex_unlock(&replication->lock);
}

void vm_replication_log(struct vm_replication *replication, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    fprintf(stderr, "colo %s: %s: ", replication->role == ROLE_PRIMARY ? "protect" : "secondary", replication->name);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
}

void vm_replication_post_event(struct vm_replication *replication, const char *what, const char *detail)
{
    json_t *event = json_pack("{s:s, s:s, s:s}", "event", "replication", "what", what, "detail", detail ? detail : "");
    if (event) {
        vm_control_post_event(replication->control, event);
        json_decref(event);
    }
}

json_t *vm_replication_checkpoint_report_json(const struct colo_checkpoint_report *report)
{
    return json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:b, s:f, s:f, s:b, s:f, s:f, s:f, s:f, s:f, s:f}", "number",
                     (json_int_t)report->number, "trigger", colo_checkpoint_trigger_name(report->trigger),
                     "dirty_pages", (json_int_t)report->dirty_pages, "precopy_pages", (json_int_t)report->precopy_pages,
                     "precopy_rounds", (json_int_t)report->precopy_rounds, "bytes", (json_int_t)report->bytes,
                     "precopy_confirmed", report->precopy_confirmed, "confirm_ms", (double)report->confirm_us / 1000,
                     "output_ms", (double)report->output_us / 1000, "resumed_before_ready",
                     report->resumed_before_ready, "downtime_ms", (double)report->downtime_us / 1000, "suspend_ms",
                     (double)report->suspend_us / 1000, "pause_ms", (double)report->pause_us / 1000, "send_ms",
                     (double)report->send_us / 1000, "apply_ms", (double)report->apply_us / 1000, "resume_ms",
                     (double)report->resume_us / 1000);
}

void vm_replication_machine_stopped(struct vm_replication *replication)
{
    pthread_mutex_lock(&replication->lock);
    enum vm_replication_role role = replication->role;
    pthread_mutex_unlock(&replication->lock);
    if (role == ROLE_PRIMARY)
        vm_replication_primary_machine_stopped(replication);
    else if (role == ROLE_SECONDARY) {
        vm_replication_secondary_await_primary(replication);
        vm_replication_secondary_machine_stopped(replication);
    }
    /* vm_replication_vm_ending is for this stop only. */
    pthread_mutex_lock(&replication->lock);
    replication->ending = false;
    pthread_mutex_unlock(&replication->lock);
}

void vm_replication_machine_replaced(struct vm_replication *replication)
{
    /* Under the lock, as status reads the buffer under it. Before this, a
     * protect after a reboot found the old buffer, whose hook the new
     * NICs lacked: the PVM's output left unheld. */
    pthread_mutex_lock(&replication->lock);
    if (replication->output_initialized)
        output_buffer_destroy(&replication->output);
    replication->output_initialized = false;
    pthread_mutex_unlock(&replication->lock);
}

/* On the control server's thread, with the control's lock held. */
static void status_fields(void *opaque, json_t *reply)
{
    struct vm_replication *replication = opaque;
    pthread_mutex_lock(&replication->lock);
    if (replication->role == ROLE_NONE) {
        /* A VM that a survivor's host migrated here shifts the
         * connections it brought (vm_replication_take_shifted_connections). */
        struct output_buffer_stats output = { 0 };
        if (replication->output_initialized)
            output_buffer_get_stats(&replication->output, &output);
        pthread_mutex_unlock(&replication->lock);
        json_t *shift = output.shifting ? vm_replication_shift_json(&output.shift) : NULL;
        if (shift)
            json_object_set_new(reply, "tcp_sequence_shift", shift);
        return;
    }
    json_t *fields = json_object();
    json_object_set_new(fields, "role", json_string(replication->role == ROLE_PRIMARY ? "primary" : "secondary"));
    if (replication->role == ROLE_PRIMARY)
        vm_replication_primary_status(replication, fields);
    else
        vm_replication_secondary_status(replication, fields);
    if (replication->end_reason[0])
        json_object_set_new(fields, "ended", json_string(replication->end_reason));
    vm_replication_cluster_status(replication, fields);
    vm_replication_peer_status(replication, fields);
    pthread_mutex_unlock(&replication->lock);
    json_object_set_new(reply, "replication", fields);
}

/* A secondary's VM (until it takes over) is the primary's, a checkpoint
 * behind and running ahead of what the world saw: saved and restored, or
 * migrated, it would run as a second copy of the VM beside the primary. */
static int refuse_secondary_operation(void *opaque, enum vm_state state, struct error *err)
{
    struct vm_replication *replication = opaque;
    pthread_mutex_lock(&replication->lock);
    bool secondary = replication->role == ROLE_SECONDARY && !replication->failover_done;
    pthread_mutex_unlock(&replication->lock);
    if (!secondary)
        return 0;
    if (state == VM_STATE_MIGRATING)
        return error_set(err, "this VM is a COLO secondary: migrating it would start a second copy of the primary's "
                              "VM; migrate the VM on its primary, or start a colo secondary on the other host and "
                              "protect to it");
    return error_set(err, "this VM is a COLO secondary: its save file would be a second copy of the primary's VM; "
                          "save the VM on its primary");
}

int vm_replication_create(struct vm_replication **result, struct vm_control *control, const char *name, bool cluster,
                          struct error *err)
{
    *result = NULL;
    struct vm_replication *replication = calloc(1, sizeof *replication);
    if (!replication)
        return error_set(err, "out of memory");
    replication->control = control;
    snprintf(replication->name, sizeof replication->name, "%s", name);
    replication->cluster = cluster;
    pthread_mutex_init(&replication->lock, NULL);
    replication->replication_fd = replication->mirror_fd = -1;
    replication->listener = replication->listener_stop = -1;
#ifdef COLO_TEST_HOOKS
    if (colo_primary_kill_hook_from_env(&replication->kill_hook, err) < 0) {
        vm_replication_destroy(replication);
        return -1;
    }
#else
    const char *kill_at = getenv("COLO_TEST_KILL_AT");
    if (kill_at && *kill_at) {
        vm_replication_destroy(replication);
        return error_set(err, "COLO_TEST_KILL_AT is set, but this colo was built without the test hooks "
                              "(meson -Dtest_hooks=true)");
    }
#endif
    /* A peer that goes away must be an error, never a signal. */
    signal(SIGPIPE, SIG_IGN);
    struct control_server *server = vm_control_server(control);
    if (control_server_register(server, "protect", vm_replication_handle_protect, replication, err) < 0 ||
        control_server_register(server, "failover", vm_replication_handle_failover, replication, err) < 0 ||
        control_server_register(server, "switchover", vm_replication_handle_switchover, replication, err) < 0 ||
        control_server_register(server, "checkpoint", vm_replication_handle_checkpoint, replication, err) < 0) {
        vm_replication_destroy(replication);
        return -1;
    }
    vm_control_set_status_hook(control, status_fields, replication);
    struct vm_save_file_records records = vm_replication_save_records(replication);
    vm_control_set_save_records(control, &records);
    vm_control_set_operation_gate(control, refuse_secondary_operation, replication);
    *result = replication;
    return 0;
}

/* After the last machine is gone and the control server stopped. */
void vm_replication_destroy(struct vm_replication *replication)
{
    if (!replication)
        return;
    if (replication->primary_thread_joinable)
        pthread_join(replication->primary_thread, NULL);
    vm_replication_guard_stop(replication);
    /* A secondary that failed over and became a primary keeps no thread
     * of its first role past this point either. */
    vm_replication_secondary_retire(replication);
    if (replication->secondary_detector_initialized)
        failure_detector_destroy(&replication->secondary_detector);
    if (replication->primary_initialized)
        colo_primary_destroy(&replication->primary);
    if (replication->mirror_initialized)
        mirror_sender_destroy(&replication->mirror);
    if (replication->failover_started)
        colo_failover_destroy(&replication->failover);
    if (replication->secondary_initialized)
        colo_secondary_destroy(&replication->secondary);
    if (replication->mirror_reader_initialized)
        mirror_reader_destroy(&replication->mirror_reader);
    if (replication->committed_initialized)
        committed_output_destroy(&replication->committed);
    if (replication->secondary_disks_initialized)
        disk_replication_secondary_destroy(&replication->secondary_disks);
    if (replication->detector_initialized)
        failure_detector_destroy(&replication->detector);
    if (replication->output_initialized)
        output_buffer_destroy(&replication->output);
    vm_replication_destroy_peer(replication);
    pthread_mutex_destroy(&replication->lock);
    free(replication);
}

struct vm_save_file_records vm_replication_save_records(struct vm_replication *replication)
{
    return (struct vm_save_file_records){ .opaque = replication, .write = vm_replication_save_shifted_connections };
}

int vm_replication_save_shifted_connections(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct vm_replication *replication = opaque;
    pthread_mutex_lock(&replication->lock);
    bool output = replication->output_initialized;
    pthread_mutex_unlock(&replication->lock);
    int count = output ? output_buffer_save_shift(&replication->output, writer, err) : 0;
    if (count > 0)
        vm_replication_log(replication, "the VM's state carries %d TCP connection(s) this host shifts since a failover",
                           count);
    return count < 0 ? -1 : 0;
}

int vm_replication_take_shifted_connections(struct vm_replication *replication, struct machine *machine,
                                            const struct stream_reader *reader, struct error *err)
{
    size_t cursor = 0, length;
    const uint8_t *body;
    if (!stream_received_tcp_shift_next(reader, &cursor, &body, &length))
        return 0;
    pthread_mutex_lock(&replication->lock);
    bool output = replication->output_initialized;
    pthread_mutex_unlock(&replication->lock);
    if (!output) {
        /* Passing frames, as a failed-over secondary's does; a protect
         * later finds it and carries the table on (its initial copy). */
        output_buffer_init(&replication->output, machine, false);
        vm_replication_mark(replication, &replication->output_initialized);
    }
    return output_buffer_adopt_shift(&replication->output, reader, err);
}
