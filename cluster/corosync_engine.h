/* colo's link to Corosync for one protected VM: it joins the CPG group
 * "colo-NAME" (the two colo processes of the VM, one per host), follows
 * the ring's membership and votequorum's verdict (libquorum), and sends
 * and receives the takeover claims as totally ordered CPG messages. It
 * decides nothing: it turns what Corosync delivers into takeover events
 * (takeover_decision.h) for its owner, in delivery order, on its own
 * thread. ../shared/cluster-notes.md has the measured timings.
 *
 * The peer is the other member of the group (another node, or another
 * process). Its node id is learned when it joins; until then every ring
 * counts as "with the peer" (nothing to take over from a peer never
 * seen). */
#ifndef COLO_CLUSTER_COROSYNC_ENGINE_H
#define COLO_CLUSTER_COROSYNC_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "takeover_decision.h"

/* A CPG message between the two colo processes: 16 bytes, little-endian. */
enum corosync_message_kind {
    COROSYNC_MESSAGE_CLAIM = 1, /* "the VM is mine from this epoch on" */
    COROSYNC_MESSAGE_SYNC = 2,  /* to ourselves: everything before it was delivered */
};

struct corosync_engine_status {
    bool connected;
    uint32_t local_node;
    uint32_t peer_node; /* 0: never seen */
    bool peer_present;  /* the peer's process is in the group */
    uint64_t ring_id;   /* the ring's sequence number */
    uint32_t ring_members;
    bool quorate;
    uint64_t quorum_ring; /* the ring the last verdict was for */
    uint32_t quorum_members;
    uint64_t messages_sent, messages_delivered, messages_rejected;
};

struct corosync_engine {
    char group_name[128];
    /* Called on the engine's thread, in delivery order. */
    void (*on_event)(void *opaque, const struct takeover_event *event);
    void *opaque;
    uint64_t cpg_handle, quorum_handle;
    uint32_t local_node, local_pid;
    uint32_t token_timeout_ms; /* Corosync's; 0: unknown */
    int wake_fd;               /* an eventfd: stop, or a message to send */
    atomic_bool stop;
    /* Messages Corosync asked us to send again later (TRY_AGAIN, while it
     * forms a ring): the engine's thread retries them every pass, so no
     * caller ever blocks on Corosync. 0 / false: none. */
    _Atomic uint64_t pending_claim;
    atomic_bool pending_sync;
    /* The engine thread's last pass (monotonic ns): a process that was not
     * running (SIGSTOP, a stalled host) sees it old when it wakes. */
    _Atomic uint64_t last_pass_ns;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock; /* guards status */
    struct corosync_engine_status status;
};

/* Connects to the local Corosync (CPG and quorum), joins the group and
 * starts the thread. Fails with a message when Corosync is not running. */
int corosync_engine_start(struct corosync_engine *engine, const char *group_name,
                          void (*on_event)(void *opaque, const struct takeover_event *event), void *opaque,
                          struct error *err);
/* Sends a claim for EPOCH (any thread; never blocks: when Corosync says
 * try again, the engine's thread sends it as soon as Corosync takes it).
 * Fails only when Corosync is unusable. */
int corosync_engine_send_claim(struct corosync_engine *engine, uint64_t epoch, struct error *err);
/* Sends a sync message to the group, the same way (its delivery comes
 * back as a TAKEOVER_EVENT_SYNC event with the quorum verdict as it is
 * then). */
int corosync_engine_send_sync(struct corosync_engine *engine, struct error *err);
/* The engine's thread ran within the last max_age_ms. */
bool corosync_engine_alive_within(struct corosync_engine *engine, unsigned max_age_ms);
void corosync_engine_get_status(struct corosync_engine *engine, struct corosync_engine_status *status);
/* Leaves the group, ends the thread, disconnects. */
void corosync_engine_stop(struct corosync_engine *engine);

/* The wire form of a message (exposed for the tests and the fuzz target). */
#define COROSYNC_MESSAGE_SIZE 16
void corosync_message_encode(uint8_t out[COROSYNC_MESSAGE_SIZE], enum corosync_message_kind kind, uint64_t epoch);
/* Returns 0 and fills kind and epoch, or -1 for anything else. */
int corosync_message_decode(const void *data, size_t size, enum corosync_message_kind *kind, uint64_t *epoch);

#endif
