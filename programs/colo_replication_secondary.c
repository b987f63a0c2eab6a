/* COLO in the colo program, the secondary's side: `colo secondary`, the
 * mirror reader and heartbeat watch, the SVM's network device, and the
 * failover (by itself or by `colo failover`). */
#include "colo_replication_internal.h"

/* ---- the secondary ---- */

/* The mirror's framing word and the OUTPUT record's NIC field. */
static uint32_t get_u32_le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static double monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1000 + (double)now.tv_nsec / 1e6;
}

/* The primary is gone (or must be taken for gone): shutting the
 * replication connection down ends the secondary loop at once, wherever it
 * waits, and the monitor thread fails over. */
static void declare_primary_lost(struct replication *r, const char *why)
{
    replication_log("%s", why);
    shutdown(r->replication_fd, SHUT_RDWR);
}

/* Parses whole messages in mirror_buffer: heartbeats are only heard,
 * frames are queued for the SVM once it exists. Returns false on a
 * message that is not our framing. */
static bool take_mirror_messages(struct replication *r)
{
    size_t offset = 0;
    bool queued_any = false, ok = true;
    while (r->mirror_buffered - offset >= MIRROR_WORD_SIZE) {
        const uint8_t *m = r->mirror_buffer + offset;
        uint32_t word = get_u32_le(m);
        size_t length = word & MIRROR_LENGTH_MASK;
        unsigned index = word >> 24;
        if (length > VIRTIO_NET_MAX_FRAME || index >= machine_nic_count(r->machine)) {
            ok = false;
            break;
        }
        size_t size = length == 0 ? MIRROR_WORD_SIZE : MIRROR_WORD_SIZE + length + VIRTIO_NET_HEADER_SIZE;
        if (r->mirror_buffered - offset < size)
            break;
        offset += size;
        if (length == 0) {
            r->heartbeats_received++;
            continue;
        }
        pthread_mutex_lock(&r->lock);
        r->mirror_received++;
        uint8_t *copy = atomic_load(&r->svm_built) && r->queued < MIRROR_QUEUE_MAX ? malloc(length) : NULL;
        if (copy) {
            memcpy(copy, m + MIRROR_WORD_SIZE, length);
            struct mirrored_frame *f = &r->queue[r->queued++];
            f->nic = index;
            f->length = length;
            f->data = copy;
            virtio_net_header_decode(m + MIRROR_WORD_SIZE + length, &f->header);
            queued_any = true;
        } else {
            r->mirror_queue_dropped++;
        }
        pthread_mutex_unlock(&r->lock);
    }
    memmove(r->mirror_buffer, r->mirror_buffer + offset, r->mirror_buffered - offset);
    r->mirror_buffered -= offset;
    if (queued_any) {
        uint64_t one = 1;
        ssize_t ignored = write(r->frames_ready, &one, sizeof one);
        (void)ignored;
    }
    return ok;
}

/* Its own thread: reads the mirror connection, so heartbeats are heard
 * even while the SVM is paused for a checkpoint. Ends on silence longer
 * than the heartbeat timeout, on the end of the connection, or at
 * failover (reader_stop). */
static void *mirror_reader_thread(void *opaque)
{
    struct replication *r = opaque;
    double last_heard = monotonic_ms();
    while (!atomic_load(&r->reader_stop)) {
        struct pollfd p = { .fd = r->mirror_fd, .events = POLLIN };
        int ready = poll(&p, 1, HEARTBEAT_INTERVAL_MS);
        double now = monotonic_ms();
        if (ready < 0 && errno != EINTR) {
            declare_primary_lost(r, "cannot poll the mirror connection; taking the primary for lost");
            return NULL;
        }
        if (ready <= 0) {
            if (r->heartbeat_timeout_ms > 0 && now - last_heard > r->heartbeat_timeout_ms) {
                char why[160];
                snprintf(why, sizeof why, "no heartbeat from the primary for %.0f ms (timeout %d ms)",
                         now - last_heard, r->heartbeat_timeout_ms);
                declare_primary_lost(r, why);
                return NULL;
            }
            continue;
        }
        ssize_t got = recv(r->mirror_fd, r->mirror_buffer + r->mirror_buffered,
                           MIRROR_MESSAGE_MAX - r->mirror_buffered, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (got <= 0) {
            if (!atomic_load(&r->reader_stop))
                declare_primary_lost(r, got == 0 ? "the primary closed the mirror connection"
                                                 : "the mirror connection broke");
            return NULL;
        }
        last_heard = now;
        r->mirror_buffered += (size_t)got;
        if (!take_mirror_messages(r)) {
            declare_primary_lost(r, "the mirror connection carried something that is not a frame");
            return NULL;
        }
    }
    return NULL;
}

/* Machine thread: delivers the queued mirrored frames to the SVM. */
static void on_frames_ready(void *opaque)
{
    struct replication *r = opaque;
    uint64_t count;
    ssize_t ignored = read(r->frames_ready, &count, sizeof count);
    (void)ignored;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->queued; i++) {
        struct mirrored_frame *f = &r->queue[i];
        if (virtio_net_receive_with_header(machine_nic(r->machine, f->nic), &f->header, f->data, f->length))
            r->mirror_delivered++;
        free(f->data);
    }
    r->queued = 0;
    pthread_mutex_unlock(&r->lock);
}

/* The secondary's network device: its setup runs with the SVM paused and
 * built, so mirrored frames go in only once there is a VM. */
static int secondary_network_setup(void *opaque)
{
    struct replication *r = opaque;
    r->frames_watch = machine_watch_fd(r->machine, r->frames_ready, on_frames_ready, r);
    if (r->frames_watch < 0)
        return -1;
    atomic_store(&r->svm_built, true);
    return 0;
}

static void drop_committed_locked(struct replication *r)
{
    for (size_t i = 0; i < r->committed_count; i++)
        free(r->committed[i].data);
    r->committed_count = 0;
}

/* Secondary thread, after a checkpoint was applied: the primary's output
 * behind it (its OUTPUT records) replaces the previous checkpoint's. */
static void keep_checkpoint_output(void *opaque, const struct stream_reader *reader)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    drop_committed_locked(r);
    size_t cursor = 0, length;
    const uint8_t *body;
    while (stream_received_output_next(reader, &cursor, &body, &length) && r->committed_count < HELD_FRAMES_MAX) {
        uint32_t nic = get_u32_le(body);
        size_t frame_length = length - STREAM_OUTPUT_PREFIX;
        uint8_t *copy = nic < machine_nic_count(r->machine) ? malloc(frame_length) : NULL;
        if (!copy)
            continue;   /* a NIC this VM does not have (cannot happen: same configuration), or no memory */
        memcpy(copy, body + STREAM_OUTPUT_PREFIX, frame_length);
        struct held_frame *f = &r->committed[r->committed_count++];
        f->net = machine_nic(r->machine, nic);
        virtio_net_header_decode(body + 8, &f->header);
        f->length = frame_length;
        f->data = copy;
    }
    pthread_mutex_unlock(&r->lock);
}

/* CHECKPOINT_NEW arrived: the primary released the output behind the last
 * checkpoint before it resumed the PVM, so our copy is not needed. */
static int secondary_network_postsuspend(void *opaque)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    drop_committed_locked(r);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

/* The checkpoint has been applied: what the SVM sent before it belongs to
 * a timeline that is gone. (The SVM is paused: nothing transmits now.) */
static int secondary_network_preresume(void *opaque)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->held_count; i++)
        free(r->held[i].data);
    r->dropped_secondary += r->held_count;
    r->held_count = 0;
    r->held_bytes = 0;
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static const struct colo_checkpoint_device_ops secondary_network_ops = {
    .setup = secondary_network_setup, .postsuspend = secondary_network_postsuspend,
    .preresume = secondary_network_preresume,
};

/* Makes the SVM's NICs the VM's own: its TAP, its output, and an announce
 * so the network learns where its MAC lives now. */
/* After the reader stopped: what is left in the mirror socket. A primary
 * that died closed its connections, but the replication loop may notice
 * before the reader has read everything the primary mirrored; those
 * frames reached the PVM, and the client would otherwise wait for its
 * TCP retransmission (200 ms or more) to get them to the SVM. */
static void drain_mirror(struct replication *r)
{
    for (int reads = 0; reads < 4096 && r->mirror_buffered < MIRROR_MESSAGE_MAX; reads++) {
        ssize_t got = recv(r->mirror_fd, r->mirror_buffer + r->mirror_buffered,
                           MIRROR_MESSAGE_MAX - r->mirror_buffered, MSG_DONTWAIT);
        if (got <= 0)
            break;   /* end of the connection, nothing more now, or an error */
        r->mirror_buffered += (size_t)got;
        if (!take_mirror_messages(r))
            break;
    }
}

static void switch_network_to_local(struct replication *r)
{
    struct machine *machine = r->machine;
    atomic_store(&r->reader_stop, true);
    pthread_join(r->mirror_reader, NULL);
    drain_mirror(r);
    machine_pause(machine);
    /* Mirrored frames still queued go to the SVM: the frames watch stays,
     * and the machine thread delivers them when it runs again (the reader
     * is stopped, so nothing new is queued). */
    for (unsigned i = 0; i < machine_nic_count(machine); i++) {
        virtio_net_set_backend_receive(machine_nic(machine, i), true);
        virtio_net_announce(machine_nic(machine, i));
    }
    /* The primary's output behind the SVM's last checkpoint, if no
     * CHECKPOINT_NEW since showed that the primary released it (it may have
     * sent some of it before dying: a receiver's TCP drops duplicates),
     * then what the SVM said since that checkpoint (see NIC_HOLD), after
     * the announce and before anything newer. */
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->committed_count; i++) {
        struct held_frame *f = &r->committed[i];
        virtio_net_transmit_to_backend(NULL, f->net, &f->header, f->data, f->length);
    }
    r->pvm_output_released = r->committed_count;
    drop_committed_locked(r);
    r->svm_output_released = r->held_count;
    replication_release_held_locked(r);
    r->nic_mode = NIC_PASS;
    pthread_mutex_unlock(&r->lock);
    machine_resume(machine);
}

/* Runs the failover when the loop ends: by itself (the primary died or the
 * stream broke) or because of `colo failover`, which shuts the connection
 * down so that both take this one path. */
static void *monitor_thread(void *opaque)
{
    struct replication *r = opaque;
    struct error err;
    colo_secondary_join(&r->secondary, &err);
    enum colo_secondary_state state = colo_secondary_state(&r->secondary);
    replication_log("replication ended in state %s: %s", colo_secondary_state_name(state), err.message);
    struct error failover_err;
    if (colo_secondary_failover(&r->secondary, &failover_err) < 0) {
        replication_log("failover refused: %s; stopping", failover_err.message);
        pthread_mutex_lock(&r->lock);
        r->failover_refused = true;
        r->phase = "failover refused";
        snprintf(r->end_reason, sizeof r->end_reason, "%s", failover_err.message);
        pthread_cond_broadcast(&r->failover_finished);
        pthread_mutex_unlock(&r->lock);
        replication_post_event("failover refused", failover_err.message);
        machine_request_stop(r->machine);
        return NULL;
    }
    switch_network_to_local(r);
    pthread_mutex_lock(&r->lock);
    r->failover_done = true;
    r->phase = "failed over";
    snprintf(r->end_reason, sizeof r->end_reason, "%s", err.message);
    pthread_cond_broadcast(&r->failover_finished);
    pthread_mutex_unlock(&r->lock);
    replication_log("failed over: the VM runs here now (from state %s; sent %" PRIu64 " frames the primary held "
             "behind the last checkpoint and %" PRIu64 " the SVM sent since)", colo_secondary_state_name(state),
             r->pvm_output_released, r->svm_output_released);
    replication_post_event("failed over", err.message);
    return NULL;
}

int colo_replication_start_secondary(struct vm_control *control, struct machine *machine,
                                     const char *address, const char *name, int heartbeat_timeout_ms,
                                     struct error *err)
{
    struct replication *r = &the_replication;
    (void)control;
    r->heartbeat_timeout_ms = heartbeat_timeout_ms;
    r->frames_ready = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->frames_ready < 0)
        return error_set_errno(err, "cannot create an eventfd");
    r->role = ROLE_SECONDARY;
    r->phase = "waiting";
    r->machine = machine;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->mirror_buffer = malloc(MIRROR_MESSAGE_MAX);
    if (!r->mirror_buffer)
        return error_set(err, "out of memory");
    /* Mute the NICs before anything runs: no frame out, no TAP read. */
    replication_install_transmit_hooks(r, machine);
    r->nic_mode = NIC_HOLD;
    for (unsigned i = 0; i < machine_nic_count(machine); i++)
        virtio_net_set_backend_receive(machine_nic(machine, i), false);

    int listener = migration_listen(address, err);
    if (listener < 0)
        return -1;
    replication_log("waiting for the primary on %s", address);
    /* The primary connects twice, in this order: replication, mirror. */
    r->replication_fd = migration_accept(listener, err);
    replication_limit_in_flight(r->replication_fd, SO_RCVBUF);
    if (r->replication_fd >= 0)
        r->mirror_fd = migration_accept(listener, err);
    close(listener);
    if (r->replication_fd < 0 || r->mirror_fd < 0)
        return -1;
    machine_pause(machine);            /* handed to the loop paused, once */
    struct colo_secondary_options options;
    colo_secondary_options_defaults(&options);
    options.on_checkpoint_output = keep_checkpoint_output;
    options.output_opaque = r;
    if (colo_secondary_init(&r->secondary, machine, r->replication_fd, &options, err) < 0)
        return -1;
    r->secondary_initialized = true;
    if (colo_secondary_add_device(&r->secondary, "network", &secondary_network_ops, r, err) < 0 ||
        colo_secondary_start(&r->secondary, err) < 0)
        return -1;
    pthread_mutex_lock(&r->lock);
    r->phase = NULL;
    pthread_mutex_unlock(&r->lock);
    if (pthread_create(&r->mirror_reader, NULL, mirror_reader_thread, r) != 0)
        return error_set(err, "cannot start the mirror reader thread");
    if (pthread_create(&r->monitor_thread, NULL, monitor_thread, r) != 0)
        return error_set(err, "cannot start the secondary's monitor thread");
    r->monitor_joinable = true;
    replication_log("the primary connected; receiving the initial copy");
    return 0;
}

bool colo_replication_failover_refused(void)
{
    pthread_mutex_lock(&the_replication.lock);
    bool refused = the_replication.failover_refused;
    pthread_mutex_unlock(&the_replication.lock);
    return refused;
}

int replication_handle_failover(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request;
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    if (r->role != ROLE_SECONDARY || r->phase) {
        const char *phase = r->phase;
        bool secondary = r->role == ROLE_SECONDARY;
        pthread_mutex_unlock(&r->lock);
        if (!secondary)
            return error_set(err, "this VM is not a COLO secondary");
        return error_set(err, "nothing to fail over: the secondary is %s", phase);
    }
    pthread_mutex_unlock(&r->lock);
    /* End the loop the way a dead primary would: the monitor thread then
     * fails over. */
    shutdown(r->replication_fd, SHUT_RDWR);
    pthread_mutex_lock(&r->lock);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    int waited = 0;
    while (!r->failover_done && !r->failover_refused && waited == 0)
        waited = pthread_cond_timedwait(&r->failover_finished, &r->lock, &deadline);
    bool done = r->failover_done;
    char reason[sizeof r->end_reason];
    snprintf(reason, sizeof reason, "%s", r->failover_refused ? r->end_reason : "no answer within 10 s");
    pthread_mutex_unlock(&r->lock);
    if (!done)
        return error_set(err, "failover failed: %s", reason);
    json_object_set_new(reply, "failed_over", json_true());
    return 0;
}
