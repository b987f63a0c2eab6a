/* Who may release the VM's output (takeover_decision.h). */
#include "takeover_decision.h"

#include <stdio.h>
#include <string.h>

const char *takeover_verdict_name(enum takeover_verdict verdict)
{
    switch (verdict) {
    case TAKEOVER_NONE:
        return "none";
    case TAKEOVER_SEND_CLAIM:
        return "send claim";
    case TAKEOVER_TAKE_OVER:
        return "take over";
    case TAKEOVER_STAND_DOWN:
        return "stand down";
    }
    return "?";
}

void takeover_decision_init(struct takeover_decision *decision)
{
    memset(decision, 0, sizeof *decision);
    decision->epoch = 1;
    decision->peer_node_in_ring = true;
}

static enum takeover_verdict decide(struct takeover_decision *decision, enum takeover_verdict verdict,
                                    const char *reason)
{
    snprintf(decision->reason, sizeof decision->reason, "%s", reason);
    if (verdict == TAKEOVER_TAKE_OVER || verdict == TAKEOVER_STAND_DOWN)
        decision->final = verdict;
    return verdict;
}

/* The link or the heartbeat says the peer may be gone while its node is
 * still a member: the ordered claim decides (once). */
static enum takeover_verdict claim(struct takeover_decision *decision, const char *what)
{
    if (!decision->peer_node_in_ring)
        return TAKEOVER_NONE; /* the quorum verdict for that ring decides */
    if (decision->claimed_epoch)
        return TAKEOVER_NONE; /* already claimed: wait for its delivery */
    decision->claimed_epoch = decision->epoch + 1;
    char reason[200];
    snprintf(reason, sizeof reason, "%s while the peer's node is a member: claiming epoch %llu", what,
             (unsigned long long)decision->claimed_epoch);
    return decide(decision, TAKEOVER_SEND_CLAIM, reason);
}

enum takeover_verdict takeover_decision_feed(struct takeover_decision *decision, const struct takeover_event *event)
{
    /* A takeover decided while we were frozen (the quorum verdict of a ring
     * without the peer) releases once our sync confirms we run in order. */
    if (event->kind == TAKEOVER_EVENT_SYNC && decision->final == TAKEOVER_TAKE_OVER && decision->frozen &&
        event->quorate)
        decision->frozen = decision->frozen_long = false;
    if (decision->final != TAKEOVER_NONE)
        return decision->final;
    char reason[200];
    switch (event->kind) {
    case TAKEOVER_EVENT_PEER_PROCESS_LEFT:
        if (!decision->peer_node_in_ring)
            return TAKEOVER_NONE; /* its node is gone too: the ring's verdict decides */
        decision->peer_process_left = true;
        if (decision->frozen)
            return TAKEOVER_NONE; /* confirm first (our sync) */
        return decide(decision, TAKEOVER_TAKE_OVER, "the peer's colo process left while its node is a member");
    case TAKEOVER_EVENT_SUSPICION:
        return claim(decision, "the peer's heartbeat is silent");
    case TAKEOVER_EVENT_LINK_LOST:
        return claim(decision, "the replication link is lost");
    case TAKEOVER_EVENT_CLAIM:
        if (event->epoch <= decision->epoch)
            return TAKEOVER_NONE; /* an old claim, already decided */
        if (!decision->peer_node_in_ring)
            return TAKEOVER_NONE; /* delivered in a ring without the peer: its verdict decides */
        if (event->from_us && event->epoch == decision->claimed_epoch) {
            decision->epoch = event->epoch;
            if (decision->frozen)
                return TAKEOVER_NONE;
            snprintf(reason, sizeof reason, "our claim for epoch %llu was delivered first",
                     (unsigned long long)event->epoch);
            return decide(decision, TAKEOVER_TAKE_OVER, reason);
        }
        if (!event->from_us) {
            snprintf(reason, sizeof reason, "the peer's claim for epoch %llu was delivered first",
                     (unsigned long long)event->epoch);
            return decide(decision, TAKEOVER_STAND_DOWN, reason);
        }
        return TAKEOVER_NONE;
    case TAKEOVER_EVENT_MEMBERSHIP:
        if (event->ring_id <= decision->ring_id && decision->ring_id != 0)
            return TAKEOVER_NONE; /* not newer */
        if (decision->frozen_long && decision->ring_id != 0) {
            /* The cluster reconfigured while we were not running: the peer
             * may have taken over by a quorum verdict we never saw, and no
             * claim of its tells us. */
            snprintf(reason, sizeof reason,
                     "after a freeze of %llu ms, the ring changed (%llu to %llu) while we were not running: the "
                     "peer may own the VM",
                     (unsigned long long)decision->freeze_ms, (unsigned long long)decision->ring_id,
                     (unsigned long long)event->ring_id);
            decision->ring_id = event->ring_id;
            return decide(decision, TAKEOVER_STAND_DOWN, reason);
        }
        decision->ring_id = event->ring_id;
        decision->peer_node_in_ring = event->peer_node_in_ring;
        decision->waiting_ring = event->peer_node_in_ring ? 0 : event->ring_id;
        if (decision->waiting_ring && decision->quorum_ring == event->ring_id) {
            /* The verdict for this ring came first. */
            snprintf(reason, sizeof reason, "the peer's node left; ring %llu is %squorate",
                     (unsigned long long)event->ring_id, decision->quorum_quorate ? "" : "not ");
            return decide(decision, decision->quorum_quorate ? TAKEOVER_TAKE_OVER : TAKEOVER_STAND_DOWN, reason);
        }
        return TAKEOVER_NONE;
    case TAKEOVER_EVENT_QUORUM:
        if (event->ring_id < decision->ring_id)
            return TAKEOVER_NONE; /* stale: a verdict for an older ring */
        if (event->ring_id >= decision->quorum_ring) {
            decision->quorum_ring = event->ring_id;
            decision->quorum_quorate = event->quorate;
        }
        if (decision->frozen && !event->quorate) {
            snprintf(reason, sizeof reason, "after a freeze, ring %llu is not quorate",
                     (unsigned long long)event->ring_id);
            return decide(decision, TAKEOVER_STAND_DOWN, reason);
        }
        if (decision->waiting_ring && event->ring_id == decision->waiting_ring) {
            snprintf(reason, sizeof reason, "the peer's node left; ring %llu is %squorate",
                     (unsigned long long)event->ring_id, event->quorate ? "" : "not ");
            return decide(decision, event->quorate ? TAKEOVER_TAKE_OVER : TAKEOVER_STAND_DOWN, reason);
        }
        return TAKEOVER_NONE;
    case TAKEOVER_EVENT_ENGINE_LOST:
        return decide(decision, TAKEOVER_STAND_DOWN, "our own Corosync is gone: no verdict can come");
    case TAKEOVER_EVENT_RESUMED_FROM_FREEZE:
        decision->frozen = true;
        decision->freeze_ms = event->freeze_ms;
        if (event->ring_exclusion_ms == 0 || event->freeze_ms >= event->ring_exclusion_ms)
            decision->frozen_long = true;
        return TAKEOVER_NONE;
    case TAKEOVER_EVENT_SYNC:
        /* Every claim sent before our sync was delivered before it. */
        if (!decision->frozen || !event->quorate || decision->waiting_ring)
            return TAKEOVER_NONE;
        decision->frozen = decision->frozen_long = false;
        if (decision->claimed_epoch && decision->epoch == decision->claimed_epoch) {
            snprintf(reason, sizeof reason, "our claim for epoch %llu was delivered first (confirmed after a freeze)",
                     (unsigned long long)decision->epoch);
            return decide(decision, TAKEOVER_TAKE_OVER, reason);
        }
        if (decision->peer_process_left)
            return decide(decision, TAKEOVER_TAKE_OVER,
                          "the peer's colo process left while its node is a member (confirmed after a freeze)");
        snprintf(decision->reason, sizeof decision->reason,
                 "after a freeze: confirmed, no newer claim and the ring is quorate");
        return TAKEOVER_NONE;
    }
    return TAKEOVER_NONE;
}

bool takeover_decision_may_release(const struct takeover_decision *decision)
{
    return !decision->frozen && decision->final != TAKEOVER_STAND_DOWN;
}
