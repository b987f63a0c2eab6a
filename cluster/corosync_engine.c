/* colo's link to Corosync (corosync_engine.h). */
#include "corosync_engine.h"

#include <corosync/cmap.h>
#include <corosync/cpg.h>
#include <corosync/quorum.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"

/* How often the thread passes even when Corosync says nothing: the
 * freshness corosync_engine_alive_within measures. */
#define COROSYNC_ENGINE_PASS_MS 10

static const uint8_t message_magic[4] = { 'C', 'O', 'L', 'O' };
#define MESSAGE_VERSION 1

void corosync_message_encode(uint8_t out[COROSYNC_MESSAGE_SIZE], enum corosync_message_kind kind, uint64_t epoch)
{
    memset(out, 0, COROSYNC_MESSAGE_SIZE);
    memcpy(out, message_magic, sizeof message_magic);
    out[4] = MESSAGE_VERSION;
    out[5] = (uint8_t)kind;
    for (int i = 0; i < 8; i++)
        out[8 + i] = (uint8_t)(epoch >> (8 * i));
}

int corosync_message_decode(const void *data, size_t size, enum corosync_message_kind *kind, uint64_t *epoch)
{
    const uint8_t *bytes = data;
    if (size != COROSYNC_MESSAGE_SIZE || memcmp(bytes, message_magic, sizeof message_magic) != 0 ||
        bytes[4] != MESSAGE_VERSION || bytes[6] != 0 || bytes[7] != 0)
        return -1;
    if (bytes[5] != COROSYNC_MESSAGE_CLAIM && bytes[5] != COROSYNC_MESSAGE_SYNC)
        return -1;
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value |= (uint64_t)bytes[8 + i] << (8 * i);
    *kind = (enum corosync_message_kind)bytes[5];
    *epoch = value;
    return 0;
}

static void emit(struct corosync_engine *engine, struct takeover_event event)
{
    engine->on_event(engine->opaque, &event);
}

static struct corosync_engine *engine_of_cpg(cpg_handle_t handle)
{
    void *context = NULL;
    cpg_context_get(handle, &context);
    return context;
}

static struct corosync_engine *engine_of_quorum(quorum_handle_t handle)
{
    const void *context = NULL;
    quorum_context_get(handle, &context);
    return (struct corosync_engine *)context;
}

static bool is_local(const struct corosync_engine *engine, uint32_t nodeid, uint32_t pid)
{
    return nodeid == engine->local_node && pid == engine->local_pid;
}

static void on_deliver(cpg_handle_t handle, const struct cpg_name *group, uint32_t nodeid, uint32_t pid, void *message,
                       size_t size)
{
    (void)group;
    struct corosync_engine *engine = engine_of_cpg(handle);
    enum corosync_message_kind kind;
    uint64_t epoch;
    if (corosync_message_decode(message, size, &kind, &epoch) < 0) {
        pthread_mutex_lock(&engine->lock);
        engine->status.messages_rejected++;
        pthread_mutex_unlock(&engine->lock);
        fprintf(stderr, "colo cluster: %s: a malformed message of %zu bytes from node %u pid %u (ignored)\n",
                engine->group_name, size, nodeid, pid);
        return;
    }
    pthread_mutex_lock(&engine->lock);
    engine->status.messages_delivered++;
    bool quorate = engine->status.quorate;
    pthread_mutex_unlock(&engine->lock);
    bool ours = is_local(engine, nodeid, pid);
    if (kind == COROSYNC_MESSAGE_CLAIM)
        emit(engine, (struct takeover_event){ .kind = TAKEOVER_EVENT_CLAIM, .epoch = epoch, .from_us = ours });
    else if (ours)
        emit(engine, (struct takeover_event){ .kind = TAKEOVER_EVENT_SYNC, .quorate = quorate });
}

static void on_group_change(cpg_handle_t handle, const struct cpg_name *group, const struct cpg_address *members,
                            size_t member_count, const struct cpg_address *left, size_t left_count,
                            const struct cpg_address *joined, size_t joined_count)
{
    (void)group;
    (void)joined;
    (void)joined_count;
    struct corosync_engine *engine = engine_of_cpg(handle);
    pthread_mutex_lock(&engine->lock);
    uint32_t peer_node = engine->status.peer_node;
    bool peer_was_present = engine->status.peer_present;
    bool peer_present = false;
    for (size_t i = 0; i < member_count; i++) {
        if (is_local(engine, members[i].nodeid, members[i].pid))
            continue;
        peer_present = true;
        peer_node = members[i].nodeid;
    }
    engine->status.peer_node = peer_node;
    engine->status.peer_present = peer_present;
    pthread_mutex_unlock(&engine->lock);
    /* Only a process that left on its own or died counts here; a node that
     * went down is the ring's business (its verdict decides). */
    for (size_t i = 0; i < left_count; i++) {
        if (is_local(engine, left[i].nodeid, left[i].pid))
            continue;
        if (peer_was_present && !peer_present &&
            (left[i].reason == CPG_REASON_LEAVE || left[i].reason == CPG_REASON_PROCDOWN))
            emit(engine, (struct takeover_event){ .kind = TAKEOVER_EVENT_PEER_PROCESS_LEFT });
    }
}

static void on_quorum(quorum_handle_t handle, uint32_t quorate, struct quorum_ring_id ring_id, uint32_t member_count,
                      const uint32_t *members)
{
    (void)members;
    struct corosync_engine *engine = engine_of_quorum(handle);
    pthread_mutex_lock(&engine->lock);
    engine->status.quorate = quorate != 0;
    engine->status.quorum_ring = ring_id.seq;
    engine->status.quorum_members = member_count;
    pthread_mutex_unlock(&engine->lock);
    emit(engine, (struct takeover_event){ .kind = TAKEOVER_EVENT_QUORUM, .ring_id = ring_id.seq, .quorate = quorate });
}

/* The ring's membership comes from CPG, not from libquorum: CPG delivers it
 * in order with the claims (a claim delivered after the ring lost the
 * peer's node must not count), libquorum on another channel. */
static void on_ring_change(cpg_handle_t handle, struct cpg_ring_id ring_id, uint32_t member_count,
                           const uint32_t *members)
{
    struct corosync_engine *engine = engine_of_cpg(handle);
    pthread_mutex_lock(&engine->lock);
    uint32_t peer_node = engine->status.peer_node;
    engine->status.ring_id = ring_id.seq;
    engine->status.ring_members = member_count;
    pthread_mutex_unlock(&engine->lock);
    bool peer_in_ring = peer_node == 0;
    for (uint32_t i = 0; i < member_count; i++)
        if (members[i] == peer_node)
            peer_in_ring = true;
    emit(engine, (struct takeover_event){
                     .kind = TAKEOVER_EVENT_MEMBERSHIP, .ring_id = ring_id.seq, .peer_node_in_ring = peer_in_ring });
}

static void engine_lost(struct corosync_engine *engine, const char *what, cs_error_t result)
{
    fprintf(stderr, "colo cluster: %s: lost Corosync (%s: error %d)\n", engine->group_name, what, (int)result);
    pthread_mutex_lock(&engine->lock);
    engine->status.connected = false;
    pthread_mutex_unlock(&engine->lock);
    emit(engine, (struct takeover_event){ .kind = TAKEOVER_EVENT_ENGINE_LOST });
}

static int send_pending(struct corosync_engine *engine);

/* Corosync's token timeout (runtime.config.totem.token, in ms): the
 * shortest time in which the others can form a ring without this node. 0
 * if it cannot be read: then every freeze counts as that long. */
static uint32_t read_token_timeout(void)
{
    cmap_handle_t handle;
    uint32_t token = 0;
    if (cmap_initialize(&handle) != CS_OK)
        return 0;
    if (cmap_get_uint32(handle, "runtime.config.totem.token", &token) != CS_OK)
        token = 0;
    cmap_finalize(handle);
    return token;
}

static void *engine_thread(void *opaque)
{
    pthread_setname_np(pthread_self(), "corosync");
    struct corosync_engine *engine = opaque;
    int cpg_fd = -1, quorum_fd = -1;
    cpg_fd_get(engine->cpg_handle, &cpg_fd);
    quorum_fd_get(engine->quorum_handle, &quorum_fd);
    /* A pass more than this after the previous one: we were not running. */
    const uint64_t freeze_ns = 100u * 1000000u;
    uint64_t previous_ns = clock_monotonic_ns();
    while (!atomic_load(&engine->stop)) {
        struct pollfd fds[3] = {
            { .fd = cpg_fd, .events = POLLIN },
            { .fd = quorum_fd, .events = POLLIN },
            { .fd = engine->wake_fd, .events = POLLIN },
        };
        bool pending = atomic_load(&engine->pending_claim) || atomic_load(&engine->pending_sync);
        int ready = poll(fds, 3, pending ? 2 : COROSYNC_ENGINE_PASS_MS);
        if (ready < 0 && errno != EINTR)
            break;
        if (ready > 0 && fds[2].revents) {
            uint64_t count;
            if (read(engine->wake_fd, &count, sizeof count) < 0) {
                /* Nothing to read: another pass drained it. */
            }
        }
        uint64_t now_ns = clock_monotonic_ns();
        if (now_ns - previous_ns > freeze_ns) {
            /* First mark ourselves frozen, then send the sync that may
             * confirm us, and only then look fresh again. */
            emit(engine, (struct takeover_event){ .kind = TAKEOVER_EVENT_RESUMED_FROM_FREEZE,
                                                  .freeze_ms = (now_ns - previous_ns) / 1000000u,
                                                  .ring_exclusion_ms = engine->token_timeout_ms });
            struct error err;
            if (corosync_engine_send_sync(engine, &err) < 0)
                fprintf(stderr, "colo cluster: %s: %s\n", engine->group_name, err.message);
        }
        previous_ns = now_ns;
        atomic_store(&engine->last_pass_ns, now_ns);
        if (send_pending(engine) < 0) {
            engine_lost(engine, "CPG", CS_ERR_LIBRARY);
            break;
        }
        if (ready <= 0)
            continue;
        if (fds[0].revents) {
            cs_error_t result = cpg_dispatch(engine->cpg_handle, CS_DISPATCH_ALL);
            if (result != CS_OK && result != CS_ERR_TRY_AGAIN) {
                engine_lost(engine, "CPG", result);
                break;
            }
        }
        if (fds[1].revents) {
            cs_error_t result = quorum_dispatch(engine->quorum_handle, CS_DISPATCH_ALL);
            if (result != CS_OK && result != CS_ERR_TRY_AGAIN) {
                engine_lost(engine, "quorum", result);
                break;
            }
        }
    }
    return NULL;
}

static int set_group_name(struct cpg_name *name, const char *group_name)
{
    size_t length = strlen(group_name);
    if (length == 0 || length >= sizeof name->value)
        return -1;
    memcpy(name->value, group_name, length);
    name->length = (uint32_t)length;
    return 0;
}

int corosync_engine_start(struct corosync_engine *engine, const char *group_name,
                          void (*on_event)(void *opaque, const struct takeover_event *event), void *opaque,
                          struct error *err)
{
    memset(engine, 0, sizeof *engine);
    if (strlen(group_name) >= sizeof engine->group_name || strlen(group_name) >= CPG_MAX_NAME_LENGTH)
        return error_set(err, "the cluster group name '%s' is too long", group_name);
    snprintf(engine->group_name, sizeof engine->group_name, "%s", group_name);
    engine->on_event = on_event;
    engine->opaque = opaque;
    engine->wake_fd = -1;
    pthread_mutex_init(&engine->lock, NULL);
    engine->local_pid = (uint32_t)getpid();
    engine->token_timeout_ms = read_token_timeout();

    cpg_model_v1_data_t cpg_model = {
        .model = CPG_MODEL_V1,
        .cpg_deliver_fn = on_deliver,
        .cpg_confchg_fn = on_group_change,
        .cpg_totem_confchg_fn = on_ring_change,
        .flags = CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF,
    };
    cpg_handle_t cpg;
    cs_error_t result = cpg_model_initialize(&cpg, CPG_MODEL_V1, (cpg_model_data_t *)&cpg_model, engine);
    if (result != CS_OK) {
        pthread_mutex_destroy(&engine->lock);
        return error_set(err, "cannot reach Corosync's CPG service (error %d): is corosync running on this host?",
                         (int)result);
    }
    engine->cpg_handle = cpg;
    unsigned int local_node = 0;
    cpg_local_get(cpg, &local_node);
    engine->local_node = local_node;

    quorum_model_v1_data_t quorum_model = {
        .model = QUORUM_MODEL_V1,
        .quorum_notify_fn = on_quorum,
    };
    quorum_handle_t quorum;
    uint32_t quorum_type = 0;
    result = quorum_model_initialize(&quorum, QUORUM_MODEL_V1, (quorum_model_data_t *)&quorum_model, &quorum_type,
                                     engine);
    if (result != CS_OK) {
        cpg_finalize(cpg);
        pthread_mutex_destroy(&engine->lock);
        return error_set(err, "cannot reach Corosync's quorum service (error %d)", (int)result);
    }
    engine->quorum_handle = quorum;
    if (quorum_type != 1) {
        quorum_finalize(quorum);
        cpg_finalize(cpg);
        pthread_mutex_destroy(&engine->lock);
        return error_set(err, "Corosync has no quorum provider: set quorum { provider: corosync_votequorum } in "
                              "corosync.conf (colo acts only on a quorum verdict)");
    }
    struct cpg_name name;
    set_group_name(&name, group_name);
    do {
        result = cpg_join(cpg, &name);
    } while (result == CS_ERR_TRY_AGAIN && (clock_sleep_ms(10), true));
    if (result == CS_OK)
        result = quorum_trackstart(quorum, CS_TRACK_CHANGES | CS_TRACK_CURRENT);
    if (result != CS_OK) {
        quorum_finalize(quorum);
        cpg_finalize(cpg);
        pthread_mutex_destroy(&engine->lock);
        return error_set(err, "cannot join the cluster group %s (error %d)", group_name, (int)result);
    }
    engine->status.connected = true;
    engine->status.local_node = local_node;
    engine->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    atomic_init(&engine->stop, false);
    atomic_init(&engine->pending_claim, 0);
    atomic_init(&engine->pending_sync, false);
    atomic_init(&engine->last_pass_ns, clock_monotonic_ns());
    int failed = engine->wake_fd < 0 ? errno : pthread_create(&engine->thread, NULL, engine_thread, engine);
    if (failed) {
        if (engine->wake_fd >= 0)
            close(engine->wake_fd);
        cpg_leave(cpg, &name);
        quorum_finalize(quorum);
        cpg_finalize(cpg);
        pthread_mutex_destroy(&engine->lock);
        return error_set(err, "cannot start the Corosync thread: %s", strerror(failed));
    }
    engine->started = true;
    return 0;
}

/* One attempt: 0 sent, 1 Corosync said try again, -1 failed (err set). */
static int try_send(struct corosync_engine *engine, enum corosync_message_kind kind, uint64_t epoch, struct error *err)
{
    uint8_t message[COROSYNC_MESSAGE_SIZE];
    corosync_message_encode(message, kind, epoch);
    struct iovec iov = { .iov_base = message, .iov_len = sizeof message };
    cs_error_t result = cpg_mcast_joined(engine->cpg_handle, CPG_TYPE_AGREED, &iov, 1);
    if (result == CS_ERR_TRY_AGAIN)
        return 1;
    if (result != CS_OK)
        return error_set(err, "cannot send a %s to the cluster group (error %d)",
                         kind == COROSYNC_MESSAGE_CLAIM ? "claim" : "sync message", (int)result);
    pthread_mutex_lock(&engine->lock);
    engine->status.messages_sent++;
    pthread_mutex_unlock(&engine->lock);
    return 0;
}

static void wake(struct corosync_engine *engine)
{
    uint64_t one = 1;
    if (write(engine->wake_fd, &one, sizeof one) < 0) {
        /* The thread passes every few ms anyway. */
    }
}

int corosync_engine_send_claim(struct corosync_engine *engine, uint64_t epoch, struct error *err)
{
    int sent = try_send(engine, COROSYNC_MESSAGE_CLAIM, epoch, err);
    if (sent == 1) {
        atomic_store(&engine->pending_claim, epoch);
        wake(engine);
    }
    return sent < 0 ? -1 : 0;
}

int corosync_engine_send_sync(struct corosync_engine *engine, struct error *err)
{
    int sent = try_send(engine, COROSYNC_MESSAGE_SYNC, 0, err);
    if (sent == 1) {
        atomic_store(&engine->pending_sync, true);
        wake(engine);
    }
    return sent < 0 ? -1 : 0;
}

/* The engine's thread: what Corosync refused for now, once more. Returns
 * -1 when Corosync is unusable. */
static int send_pending(struct corosync_engine *engine)
{
    struct error err;
    uint64_t claim = atomic_load(&engine->pending_claim);
    if (claim) {
        int sent = try_send(engine, COROSYNC_MESSAGE_CLAIM, claim, &err);
        if (sent < 0) {
            fprintf(stderr, "colo cluster: %s: %s\n", engine->group_name, err.message);
            return -1;
        }
        if (sent == 0)
            atomic_compare_exchange_strong(&engine->pending_claim, &claim, 0);
    }
    if (atomic_load(&engine->pending_sync)) {
        int sent = try_send(engine, COROSYNC_MESSAGE_SYNC, 0, &err);
        if (sent < 0) {
            fprintf(stderr, "colo cluster: %s: %s\n", engine->group_name, err.message);
            return -1;
        }
        if (sent == 0)
            atomic_store(&engine->pending_sync, false);
    }
    return 0;
}

bool corosync_engine_alive_within(struct corosync_engine *engine, unsigned max_age_ms)
{
    return clock_monotonic_ns() - atomic_load(&engine->last_pass_ns) <= (uint64_t)max_age_ms * 1000000u;
}

void corosync_engine_get_status(struct corosync_engine *engine, struct corosync_engine_status *status)
{
    pthread_mutex_lock(&engine->lock);
    *status = engine->status;
    pthread_mutex_unlock(&engine->lock);
}

void corosync_engine_stop(struct corosync_engine *engine)
{
    if (!engine->started)
        return;
    atomic_store(&engine->stop, true);
    wake(engine);
    pthread_join(engine->thread, NULL);
    struct cpg_name name;
    set_group_name(&name, engine->group_name);
    cpg_leave(engine->cpg_handle, &name);
    quorum_trackstop(engine->quorum_handle);
    quorum_finalize(engine->quorum_handle);
    cpg_finalize(engine->cpg_handle);
    close(engine->wake_fd);
    pthread_mutex_destroy(&engine->lock);
    engine->started = false;
}
