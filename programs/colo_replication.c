/* COLO in the colo program: what both roles share (the replication's
 * state, the transmit hook, status, registration of the control commands).
 * The primary's side is in colo_replication_primary.c, the secondary's in
 * colo_replication_secondary.c, the client commands in
 * colo_replication_commands.c; docs/replication.md has the whole. */
#include "colo_replication_internal.h"

struct replication the_replication = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .mirror_lock = PTHREAD_MUTEX_INITIALIZER,
    .replication_fd = -1, .mirror_fd = -1, .frames_ready = -1, .frames_watch = -1,
};

void replication_log(const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    fprintf(stderr, "colo %s: %s: ", the_replication.role == ROLE_PRIMARY ? "protect" : "secondary",
            the_replication.name);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
}

void replication_post_event(const char *what, const char *detail)
{
    json_t *event = json_pack("{s:s, s:s, s:s}", "event", "replication", "what", what,
                              "detail", detail ? detail : "");
    if (event) {
        vm_control_post_event(the_replication.control, event);
        json_decref(event);
    }
}

json_t *replication_checkpoint_report_json(const struct colo_checkpoint_report *report)
{
    return json_pack("{s:I, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f}", "number", (json_int_t)report->number,
                     "trigger", colo_checkpoint_trigger_name(report->trigger),
                     "dirty_pages", (json_int_t)report->dirty_pages,
                     "precopy_pages", (json_int_t)report->precopy_pages,
                     "bytes", (json_int_t)report->bytes, "downtime_ms", (double)report->downtime_us / 1000,
                     "suspend_ms", (double)report->suspend_us / 1000, "send_ms", (double)report->send_us / 1000,
                     "apply_ms", (double)report->apply_us / 1000, "resume_ms", (double)report->resume_us / 1000);
}

/* ---- the transmit hook (machine thread) ---- */

static void transmit_frame(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                           const uint8_t *frame, size_t length)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    switch (r->nic_mode) {
    case NIC_PASS:
        virtio_net_transmit_to_backend(NULL, net, header, frame, length);
        break;
    case NIC_HOLD: {
        uint8_t *copy = r->held_count < HELD_FRAMES_MAX && r->held_bytes + length <= HELD_BYTES_MAX
                            ? malloc(length) : NULL;
        if (!copy) {
            r->dropped_held++;
            break;
        }
        memcpy(copy, frame, length);
        r->held[r->held_count++] = (struct held_frame){ net, *header, length, copy };
        r->held_bytes += length;
        r->held_total++;
        /* The first frame held since the last release: it may wait at
         * most output_delay_ms for the checkpoint that lets it out. */
        if (r->held_count == 1 && r->role == ROLE_PRIMARY && r->primary_initialized)
            colo_primary_request_checkpoint_within(&r->primary, r->output_delay_ms);
        break;
    }
    }
    pthread_mutex_unlock(&r->lock);
}

/* Sends what is held to the TAPs, in order. Lock held. The machine is
 * paused (release_output) or the hook is blocked on the lock, so the NIC
 * is not used concurrently. */
void replication_release_held_locked(struct replication *r)
{
    for (size_t i = 0; i < r->held_count; i++) {
        struct held_frame *f = &r->held[i];
        virtio_net_transmit_to_backend(NULL, f->net, &f->header, f->data, f->length);
        free(f->data);
    }
    r->released_total += r->held_count;
    r->held_count = 0;
    r->held_bytes = 0;
}

void replication_install_transmit_hooks(struct replication *r, struct machine *machine)
{
    /* takes_offloads: the hook forwards the guest's frames with their
     * headers to a vnet-header TAP, so both sides offer what a plain TAP
     * would, and the PVM's and the SVM's negotiated features match. */
    for (unsigned i = 0; i < machine_nic_count(machine); i++)
        virtio_net_set_transmit_hook(machine_nic(machine, i), transmit_frame, r, true);
}

/* The checkpoint's pre-copy is sent while the PVM runs; the PVM pauses
 * once the primary's flush returns. Whatever still sits in socket buffers
 * then is read by the secondary during the downtime, and loopback TCP
 * buffers grow to megabytes. Small buffers on the replication connection
 * keep that backlog to a few hundred KiB (throughput on a LAN or loopback
 * does not need more). */
#define REPLICATION_SOCKET_BUFFER (256 * 1024)
void replication_limit_in_flight(int fd, int option)
{
    int size = REPLICATION_SOCKET_BUFFER;
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, option, &size, sizeof size);
}

void replication_sleep_ms(unsigned ms)
{
    struct timespec pause = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
    nanosleep(&pause, NULL);
}

void colo_replication_machine_stopped(void)
{
    struct replication *r = &the_replication;
    pthread_mutex_lock(&r->lock);
    bool stop_primary = r->role == ROLE_PRIMARY && r->primary_initialized && !r->phase;
    bool end_secondary = r->role == ROLE_SECONDARY && r->monitor_joinable;
    pthread_mutex_unlock(&r->lock);
    /* The primary ends at its next wait for a trigger and ends its
     * operation, which vm_control_machine_stopped waits for. */
    if (stop_primary)
        colo_primary_stop(&r->primary);
    /* The secondary's threads use the machine: end them before it goes.
     * (The monitor's failover then acts on a machine that no longer runs.) */
    if (end_secondary) {
        shutdown(r->replication_fd, SHUT_RDWR);
        pthread_join(r->monitor_thread, NULL);
        r->monitor_joinable = false;
    }
}

/* ---- status ---- */

static void status_fields(void *opaque, json_t *reply)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    if (r->role == ROLE_NONE) {
        pthread_mutex_unlock(&r->lock);
        return;
    }
    json_t *replication = json_object();
    json_object_set_new(replication, "role", json_string(r->role == ROLE_PRIMARY ? "primary" : "secondary"));
    const char *state = r->phase;
    if (r->role == ROLE_PRIMARY) {
        if (!state)
            state = colo_primary_state_name(colo_primary_state(&r->primary));
        json_object_set_new(replication, "peer", json_string(r->destination));
        if (r->primary_initialized) {
            struct colo_primary_stats stats;
            colo_primary_get_stats(&r->primary, &stats);
            json_object_set_new(replication, "checkpoints", json_integer((json_int_t)stats.checkpoints));
            json_object_set_new(replication, "downtime_p50_ms",
                                json_real((double)colo_primary_downtime_percentile(&r->primary, 50) / 1000));
            json_object_set_new(replication, "downtime_p99_ms",
                                json_real((double)colo_primary_downtime_percentile(&r->primary, 99) / 1000));
            json_object_set_new(replication, "downtime_max_ms", json_real((double)stats.max_downtime_us / 1000));
            json_object_set_new(replication, "checkpoints_by_output", json_integer((json_int_t)stats.output_checkpoints));
            json_object_set_new(replication, "checkpoints_by_request",
                                json_integer((json_int_t)stats.requested_checkpoints));
            json_object_set_new(replication, "interval_ms", json_integer(r->interval_ms));
            json_object_set_new(replication, "output_delay_ms", json_integer(r->output_delay_ms));
            if (stats.checkpoints)
                json_object_set_new(replication, "last_checkpoint", replication_checkpoint_report_json(&stats.last));
        } else {
            json_object_set_new(replication, "checkpoints", json_integer(0));
        }
        json_object_set_new(replication, "held_frames", json_integer((json_int_t)r->held_count));
        json_object_set_new(replication, "held_total", json_integer((json_int_t)r->held_total));
        json_object_set_new(replication, "released_total", json_integer((json_int_t)r->released_total));
        json_object_set_new(replication, "held_dropped", json_integer((json_int_t)r->dropped_held));
        json_object_set_new(replication, "mirrored_frames",
                            json_integer((json_int_t)atomic_load(&r->mirrored_frames)));
        json_object_set_new(replication, "mirror_dropped", json_integer((json_int_t)atomic_load(&r->mirror_dropped)));
    } else {
        if (!state)
            state = colo_secondary_state_name(colo_secondary_state(&r->secondary));
        if (r->secondary_initialized) {
            struct colo_secondary_stats stats;
            colo_secondary_get_stats(&r->secondary, &stats);
            json_object_set_new(replication, "checkpoints", json_integer((json_int_t)stats.checkpoints));
        } else {
            json_object_set_new(replication, "checkpoints", json_integer(0));
        }
        json_object_set_new(replication, "dropped_transmits", json_integer((json_int_t)r->dropped_secondary));
        json_object_set_new(replication, "held_frames", json_integer((json_int_t)r->held_count));
        if (r->failover_done) {
            json_object_set_new(replication, "released_at_failover",
                                json_integer((json_int_t)r->svm_output_released));
            json_object_set_new(replication, "primary_output_sent_at_failover",
                                json_integer((json_int_t)r->pvm_output_released));
        }
        /* Machine-thread counters, read while status has the VM paused. */
        json_object_set_new(replication, "mirrored_frames_received", json_integer((json_int_t)r->mirror_received));
        json_object_set_new(replication, "mirrored_frames_delivered", json_integer((json_int_t)r->mirror_delivered));
        json_object_set_new(replication, "mirrored_frames_dropped", json_integer((json_int_t)r->mirror_queue_dropped));
        json_object_set_new(replication, "heartbeat_timeout_ms", json_integer(r->heartbeat_timeout_ms));
    }
    json_object_set_new(replication, "state", json_string(state));
    if (r->end_reason[0])
        json_object_set_new(replication, "ended", json_string(r->end_reason));
    pthread_mutex_unlock(&r->lock);
    json_object_set_new(reply, "replication", replication);
}

int colo_replication_register(struct vm_control *control, const char *name, struct error *err)
{
    struct replication *r = &the_replication;
    r->control = control;
    snprintf(r->name, sizeof r->name, "%s", name);
    pthread_cond_init(&r->failover_finished, NULL);
    /* A peer that goes away must be an error, never a signal. */
    signal(SIGPIPE, SIG_IGN);
    struct control_server *server = vm_control_server(control);
    if (control_server_register(server, "protect", replication_handle_protect, r, err) < 0 ||
        control_server_register(server, "failover", replication_handle_failover, r, err) < 0 ||
        control_server_register(server, "checkpoint", replication_handle_checkpoint, r, err) < 0)
        return -1;
    vm_control_set_status_hook(control, status_fields, r);
    return 0;
}
