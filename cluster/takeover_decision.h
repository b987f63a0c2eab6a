/* Who may release the VM's output when something goes wrong between the
 * two colo processes of a protected VM (../shared/DESIGN.md, "Never two
 * copies"). A plain state machine: the caller feeds it what Corosync (CPG
 * membership, votequorum) and colo's own heartbeat report, in the order
 * they were delivered, and acts on its verdict; it talks to nothing
 * itself, so the rules are tested against scripted events
 * (tests/cluster/takeover_decision_test.c).
 *
 * The rules:
 *   - the peer's colo process left the CPG group while its node is still
 *     a member of the ring: take over (or carry on) at once;
 *   - only the replication link is lost (or the heartbeat is silent) and
 *     the peer's node is a member: claim the next epoch in a totally
 *     ordered CPG message; the first claim for that epoch delivered wins,
 *     the other side stands down;
 *   - the peer's node left the ring: wait for the quorum verdict for that
 *     ring (a verdict for an older ring does not count): quorate, take
 *     over; not quorate, stand down;
 *   - our own Corosync is gone: stand down (no verdict will ever come);
 *   - after a freeze (the caller saw its clock jump), release nothing until
 *     a message sent to the group after waking (a sync) is delivered back
 *     with the ring quorate: CPG's total order then guarantees that any
 *     claim the peer sent while we slept was delivered before it, so no
 *     claim of the peer's for a newer epoch means the VM is still ours.
 *     A quorum notification alone does not confirm: it comes on another
 *     channel, unordered with the claims. A new ring seen after a freeze
 *     at least as long as Corosync's token timeout means stand down: the
 *     cluster may have reconfigured without us while we slept, and the
 *     peer may have taken over by a quorum verdict we never saw (its
 *     claim, if any, went to a ring we were not in). After a shorter
 *     freeze (a scheduling gap on a loaded host) no ring can have formed
 *     without us, so a new ring is judged as any other; only the release
 *     waits for the sync.
 * "Stand down" means never release output again: a primary drops what it
 * holds and stops its VM, a secondary stays a secondary. */
#ifndef COLO_CLUSTER_TAKEOVER_DECISION_H
#define COLO_CLUSTER_TAKEOVER_DECISION_H

#include <stdbool.h>
#include <stdint.h>

enum takeover_event_kind {
    TAKEOVER_EVENT_SUSPICION,           /* our heartbeat: the peer is silent */
    TAKEOVER_EVENT_LINK_LOST,           /* the replication connection broke */
    TAKEOVER_EVENT_PEER_PROCESS_LEFT,   /* CPG: the peer's process left, its node still a member */
    TAKEOVER_EVENT_MEMBERSHIP,          /* a new ring: ring_id, peer_node_in_ring */
    TAKEOVER_EVENT_QUORUM,              /* votequorum's verdict for ring_id: quorate */
    TAKEOVER_EVENT_CLAIM,               /* a claim delivered in total order: epoch, from_us */
    TAKEOVER_EVENT_ENGINE_LOST,         /* our own Corosync is gone */
    TAKEOVER_EVENT_RESUMED_FROM_FREEZE, /* our clock jumped: we were not running */
    TAKEOVER_EVENT_SYNC,                /* our sync message came back: quorate (as it is now) */
};

struct takeover_event {
    enum takeover_event_kind kind;
    uint64_t ring_id;       /* MEMBERSHIP, QUORUM */
    bool peer_node_in_ring; /* MEMBERSHIP */
    bool quorate;           /* QUORUM, SYNC */
    uint64_t epoch;         /* CLAIM */
    bool from_us;           /* CLAIM */
    /* RESUMED_FROM_FREEZE: how long we were not running, and the shortest
     * time in which the cluster can form a ring without us (Corosync's
     * token timeout; 0: unknown, so every freeze counts as that long). */
    uint64_t freeze_ms;
    uint64_t ring_exclusion_ms;
};

enum takeover_verdict {
    TAKEOVER_NONE,       /* all is well, or not decided yet: go on as before */
    TAKEOVER_SEND_CLAIM, /* send a claim for takeover_decision.claimed_epoch over CPG */
    TAKEOVER_TAKE_OVER,  /* ours: the secondary fails over, the primary runs on alone */
    TAKEOVER_STAND_DOWN, /* never release output again */
};

const char *takeover_verdict_name(enum takeover_verdict verdict);

struct takeover_decision {
    uint64_t epoch;         /* the epoch this side owns the VM in (starts at 1) */
    uint64_t claimed_epoch; /* the epoch our pending claim is for; 0: none */
    uint64_t ring_id;       /* the newest ring seen */
    uint64_t waiting_ring;  /* a ring without the peer whose verdict decides; 0: none */
    bool peer_node_in_ring; /* in the newest ring */
    bool frozen;            /* resumed from a freeze, not confirmed yet */
    bool frozen_long;       /* ... long enough for a ring to form without us */
    uint64_t freeze_ms;     /* the last freeze, for the reasons */
    bool peer_process_left; /* CPG said so (while frozen: acted on once confirmed) */
    uint64_t quorum_ring;   /* the newest ring a quorum verdict came for (it may come
                               before that ring's membership) */
    bool quorum_quorate;
    enum takeover_verdict final; /* TAKE_OVER or STAND_DOWN once decided; NONE before */
    char reason[200];            /* why the last verdict (for status and events) */
};

void takeover_decision_init(struct takeover_decision *decision);

/* Feeds one event; returns what to do now. Once TAKE_OVER or STAND_DOWN
 * was returned, later events return it again (the decision is final for
 * this pair of processes). */
enum takeover_verdict takeover_decision_feed(struct takeover_decision *decision, const struct takeover_event *event);

/* Whether this side may release output now: not frozen-and-unconfirmed,
 * not stood down. */
bool takeover_decision_may_release(const struct takeover_decision *decision);

#endif
