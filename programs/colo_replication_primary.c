/* COLO in the colo program, the primary's side: `colo protect` (the
 * control command), the loop's thread, the mirror of the PVM's input, the
 * heartbeat, held output and the checkpoint command. */
#include "colo_replication_internal.h"

/* Every checkpoint is an event ("colo events NAME" shows them): where each
 * pause went, for an operator asking why the service stutters, and for
 * bench/run_replication.sh. */
static void post_checkpoint_event(void *opaque, const struct colo_checkpoint_report *report)
{
    struct replication *r = opaque;
    json_t *event = json_pack("{s:s, s:s, s:o}", "event", "replication", "what", "checkpoint", "checkpoint",
                              replication_checkpoint_report_json(report));
    if (event) {
        vm_control_post_event(r->control, event);
        json_decref(event);
    }
}

/* ---- the primary ---- */

/* Writes one whole message to the mirror connection. Never blocks long: a
 * full socket drops a frame (the SVM misses it; after a failover TCP
 * retransmits it), and a partial write is finished within a bounded wait
 * or the connection is given up (the framing would be lost). Returns
 * false when the message was dropped. */
static bool mirror_send(struct replication *r, struct iovec *parts, int part_count, bool is_frame)
{
    if (atomic_load(&r->mirror_broken))
        return false;
    size_t total = 0;
    for (int i = 0; i < part_count; i++)
        total += parts[i].iov_len;
    pthread_mutex_lock(&r->mirror_lock);
    struct msghdr message = { .msg_iov = parts, .msg_iovlen = (size_t)part_count };
    ssize_t sent = sendmsg(r->mirror_fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    bool ok = sent == (ssize_t)total;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (is_frame)
            atomic_fetch_add(&r->mirror_dropped, 1);
    } else if (sent < 0) {
        atomic_store(&r->mirror_broken, true);
    } else if (!ok) {
        size_t done = (size_t)sent;
        for (int i = 0; i < part_count && done < total; i++) {
            size_t skip = done;
            for (int j = 0; j < i; j++)
                skip -= parts[j].iov_len;
            if (skip >= parts[i].iov_len)
                continue;
            const uint8_t *bytes = (const uint8_t *)parts[i].iov_base + skip;
            size_t left = parts[i].iov_len - skip;
            while (left > 0) {
                struct pollfd p = { .fd = r->mirror_fd, .events = POLLOUT };
                if (poll(&p, 1, 1000) <= 0)
                    break;
                ssize_t n = send(r->mirror_fd, bytes, left, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    break;
                if (n > 0) {
                    bytes += n;
                    left -= (size_t)n;
                    done += (size_t)n;
                }
            }
            if (left > 0)
                break;
        }
        ok = done == total;
        if (!ok)
            atomic_store(&r->mirror_broken, true);
    }
    pthread_mutex_unlock(&r->mirror_lock);
    return ok;
}

/* Machine thread: a frame the PVM read from its TAP goes to the SVM too. */
static void mirror_frame(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                         const uint8_t *frame, size_t length)
{
    struct replication *r = opaque;
    if (!atomic_load(&r->mirroring))
        return;
    int found = machine_nic_index(r->machine, net);
    unsigned index = found < 0 ? machine_nic_count(r->machine) : (unsigned)found;
    uint32_t word = (uint32_t)length | (uint32_t)index << 24;
    uint8_t word_bytes[MIRROR_WORD_SIZE] = { (uint8_t)word, (uint8_t)(word >> 8), (uint8_t)(word >> 16),
                                             (uint8_t)(word >> 24) };
    uint8_t header_bytes[VIRTIO_NET_HEADER_SIZE];
    virtio_net_header_encode(header, header_bytes);
    struct iovec parts[3] = {
        { word_bytes, sizeof word_bytes }, { (void *)frame, length }, { header_bytes, sizeof header_bytes },
    };
    if (mirror_send(r, parts, 3, true))
        atomic_fetch_add(&r->mirrored_frames, 1);
}

/* Its own thread, from the connection to the end of protection: the
 * heartbeat keeps its pace whatever the PVM and the loop are doing. */
static void *heartbeat_thread(void *opaque)
{
    struct replication *r = opaque;
    while (!atomic_load(&r->heartbeat_stop)) {
        uint8_t beat[MIRROR_WORD_SIZE] = { 0 };
        struct iovec part = { beat, sizeof beat };
        mirror_send(r, &part, 1, false);
        replication_sleep_ms(HEARTBEAT_INTERVAL_MS);
    }
    return NULL;
}

/* Called with the PVM paused, inside the checkpoint: a copy of what it
 * holds goes to the secondary with the checkpoint. */
static int write_held_output(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct replication *r = opaque;
    int result = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->held_count && result == 0; i++) {
        struct held_frame *f = &r->held[i];
        int found = machine_nic_index(r->machine, f->net);
        uint32_t nic = found < 0 ? machine_nic_count(r->machine) : (uint32_t)found;
        uint8_t header[VIRTIO_NET_HEADER_SIZE];
        virtio_net_header_encode(&f->header, header);
        result = stream_write_output(writer, nic, header, f->data, f->length, err);
    }
    pthread_mutex_unlock(&r->lock);
    return result;
}

/* Called with the PVM paused once the SVM has applied the checkpoint:
 * what the PVM sent before it may leave now (output commit). */
static void release_output(void *opaque)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    replication_release_held_locked(r);
    pthread_mutex_unlock(&r->lock);
}

/* The network as a checkpoint device of the primary: its setup runs after
 * the initial copy, with the PVM paused and the SVM built; from then on the
 * PVM's output is held and its input mirrored. */
static int primary_network_setup(void *opaque)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    r->nic_mode = NIC_HOLD;
    pthread_mutex_unlock(&r->lock);
    atomic_store(&r->mirroring, true);
    return 0;
}

static const struct colo_checkpoint_device_ops primary_network_ops = { .setup = primary_network_setup };

static void *primary_thread(void *opaque)
{
    struct replication *r = opaque;
    struct error err;
    int status = -1;
    struct colo_primary_options options;
    colo_primary_options_defaults(&options);
    options.max_interval_ms = r->interval_ms;
    options.release_output = release_output;
    options.release_output_opaque = r;
    options.on_checkpoint = post_checkpoint_event;
    options.on_checkpoint_opaque = r;
    options.write_held_output = write_held_output;
    options.write_held_output_opaque = r;

    r->replication_fd = migration_connect(r->destination, &err);
    replication_limit_in_flight(r->replication_fd, SO_SNDBUF);
    if (r->replication_fd >= 0) {
        r->mirror_fd = migration_connect(r->destination, &err);
    }
    atomic_store(&r->mirror_broken, false);
    atomic_store(&r->heartbeat_stop, false);
    bool heartbeating = r->mirror_fd >= 0 && pthread_create(&r->heartbeat_thread, NULL, heartbeat_thread, r) == 0;
    if (r->replication_fd >= 0 && r->mirror_fd >= 0 &&
        colo_primary_init(&r->primary, r->machine, r->replication_fd, &options, &err) == 0) {
        pthread_mutex_lock(&r->lock);
        r->primary_initialized = true;
        r->phase = NULL;
        pthread_mutex_unlock(&r->lock);
        if (colo_primary_add_device(&r->primary, "network", &primary_network_ops, r, &err) == 0) {
            replication_log("protecting with %s (checkpoint at least every %u ms, and within %u ms of held output)",
                     r->destination, r->interval_ms, r->output_delay_ms);
            replication_post_event("protecting", r->destination);
            status = colo_primary_run(&r->primary, &err);
        }
    }
    /* The loop left the PVM running with its dirty log off. Whatever it
     * holds goes out now: nothing else will ever release it. */
    atomic_store(&r->mirroring, false);
    atomic_store(&r->heartbeat_stop, true);
    if (heartbeating)
        pthread_join(r->heartbeat_thread, NULL);
    pthread_mutex_lock(&r->lock);
    replication_release_held_locked(r);
    r->nic_mode = NIC_PASS;
    r->phase = "unprotected";
    snprintf(r->end_reason, sizeof r->end_reason, "%s", status < 0 ? err.message : "stopped");
    pthread_mutex_unlock(&r->lock);
    replication_log("the secondary is lost (%s); running on unprotected", r->end_reason);
    replication_post_event("unprotected", r->end_reason);
    if (r->replication_fd >= 0)
        close(r->replication_fd);
    if (r->mirror_fd >= 0)
        close(r->mirror_fd);
    vm_control_end_operation(r->control, false);
    return NULL;
}

int replication_handle_protect(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    struct replication *r = opaque;
    const char *destination = json_string_value(json_object_get(request, "destination"));
    if (!destination || !*destination || strlen(destination) >= sizeof r->destination)
        return error_set(err, "protect needs \"destination\": \"HOST:PORT\"");
    unsigned interval_ms = 100;
    json_t *interval = json_object_get(request, "interval_ms");
    if (interval) {
        if (!json_is_integer(interval) || json_integer_value(interval) < 1 || json_integer_value(interval) > 600000)
            return error_set(err, "\"interval_ms\" must be a whole number from 1 to 600000");
        interval_ms = (unsigned)json_integer_value(interval);
    }
    unsigned output_delay_ms = COLO_DEFAULT_OUTPUT_DELAY_MS;
    json_t *output_delay = json_object_get(request, "output_delay_ms");
    if (output_delay) {
        if (!json_is_integer(output_delay) || json_integer_value(output_delay) < 0 ||
            json_integer_value(output_delay) > 600000)
            return error_set(err, "\"output_delay_ms\" must be a whole number from 0 to 600000");
        output_delay_ms = (unsigned)json_integer_value(output_delay);
    }
    pthread_mutex_lock(&r->lock);
    /* A secondary that failed over is a plain VM and may be protected in
     * turn; a primary whose secondary went away too. */
    bool busy = !(r->role == ROLE_NONE || (r->role == ROLE_SECONDARY && r->failover_done) ||
                  (r->role == ROLE_PRIMARY && r->phase && strcmp(r->phase, "unprotected") == 0));
    pthread_mutex_unlock(&r->lock);
    if (busy)
        return error_set(err, "this VM is already %s (protecting it again is not supported yet)",
                         r->role == ROLE_PRIMARY ? "a primary" : "a secondary");
    /* The operation keeps the machine alive while the loop uses it, and
     * the VM shows "protected". */
    struct machine *machine = vm_control_begin_operation(r->control, VM_STATE_PROTECTED, false, err);
    if (!machine)
        return -1;
    pthread_mutex_lock(&r->lock);
    if (r->primary_initialized)
        colo_primary_destroy(&r->primary);
    r->primary_initialized = false;
    r->role = ROLE_PRIMARY;
    r->phase = "connecting";
    r->end_reason[0] = 0;
    r->replication_fd = r->mirror_fd = -1;
    r->machine = machine;
    r->interval_ms = interval_ms;
    r->output_delay_ms = output_delay_ms;
    snprintf(r->destination, sizeof r->destination, "%s", destination);
    pthread_mutex_unlock(&r->lock);
    /* Hooks are installed with the PVM paused; they pass frames through
     * until the SVM exists (primary_network_setup). */
    machine_pause(machine);
    replication_install_transmit_hooks(r, machine);
    for (unsigned i = 0; i < machine_nic_count(machine); i++)
        virtio_net_set_backend_frame_observer(machine_nic(machine, i), mirror_frame, r);
    machine_resume(machine);
    if (pthread_create(&r->primary_thread, NULL, primary_thread, r) != 0) {
        vm_control_end_operation(r->control, false);
        return error_set(err, "cannot start the primary's thread");
    }
    pthread_detach(r->primary_thread);
    json_object_set_new(reply, "destination", json_string(destination));
    json_object_set_new(reply, "interval_ms", json_integer(interval_ms));
    json_object_set_new(reply, "output_delay_ms", json_integer(output_delay_ms));
    return 0;
}

/* A checkpoint on request (the control socket's trigger): answers once a
 * requested checkpoint has completed, with its report. */
int replication_handle_checkpoint(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request;
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    bool protecting = r->role == ROLE_PRIMARY && r->primary_initialized && !r->phase;
    pthread_mutex_unlock(&r->lock);
    if (!protecting)
        return error_set(err, "this VM is not a protected COLO primary (no checkpoint to take)");
    struct colo_primary_stats stats;
    colo_primary_get_stats(&r->primary, &stats);
    uint64_t before = stats.checkpoints;
    colo_primary_request_checkpoint(&r->primary);
    /* Checkpoints take milliseconds; a loop that stopped meanwhile (the
     * secondary went away) never serves the request. */
    for (int waited_ms = 0; waited_ms < 5000; waited_ms++) {
        colo_primary_get_stats(&r->primary, &stats);
        if (stats.checkpoints > before && stats.last.trigger == COLO_TRIGGER_REQUEST) {
            json_object_set_new(reply, "checkpoint", replication_checkpoint_report_json(&stats.last));
            return 0;
        }
        pthread_mutex_lock(&r->lock);
        const char *phase = r->phase;
        pthread_mutex_unlock(&r->lock);
        if (phase)
            return error_set(err, "the replication ended before the checkpoint (%s)", phase);
        replication_sleep_ms(1);
    }
    return error_set(err, "no checkpoint completed within 5 s of the request");
}
