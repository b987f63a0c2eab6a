/* The takeover rules (cluster/takeover_decision.h) against scripted
 * membership, quorum, claim and heartbeat events: each script is what
 * Corosync and colo would report in one failure, and the verdicts must be
 * the design's. Both sides of a pair are run through the same delivered
 * claims, and no script may leave both taking over. */
#include <stdio.h>
#include <string.h>

#include "takeover_decision.h"

#include "test_check.h"

#define SUSPICION ((struct takeover_event){ .kind = TAKEOVER_EVENT_SUSPICION })
#define LINK_LOST ((struct takeover_event){ .kind = TAKEOVER_EVENT_LINK_LOST })
#define PROCESS_LEFT ((struct takeover_event){ .kind = TAKEOVER_EVENT_PEER_PROCESS_LEFT })
#define ENGINE_LOST ((struct takeover_event){ .kind = TAKEOVER_EVENT_ENGINE_LOST })
#define FROZE ((struct takeover_event){ .kind = TAKEOVER_EVENT_RESUMED_FROM_FREEZE })
#define FROZE_FOR(ms, token)  \
    ((struct takeover_event){ \
        .kind = TAKEOVER_EVENT_RESUMED_FROM_FREEZE, .freeze_ms = (ms), .ring_exclusion_ms = (token) })
#define RING(id, peer) \
    ((struct takeover_event){ .kind = TAKEOVER_EVENT_MEMBERSHIP, .ring_id = (id), .peer_node_in_ring = (peer) })
#define QUORUM(id, q) ((struct takeover_event){ .kind = TAKEOVER_EVENT_QUORUM, .ring_id = (id), .quorate = (q) })
#define SYNC(q) ((struct takeover_event){ .kind = TAKEOVER_EVENT_SYNC, .quorate = (q) })
#define CLAIM(e, ours) ((struct takeover_event){ .kind = TAKEOVER_EVENT_CLAIM, .epoch = (e), .from_us = (ours) })

static enum takeover_verdict feed(struct takeover_decision *decision, struct takeover_event event)
{
    return takeover_decision_feed(decision, &event);
}

static struct takeover_decision fresh(void)
{
    struct takeover_decision decision;
    takeover_decision_init(&decision);
    struct takeover_event ring = RING(10, true), quorum = QUORUM(10, true);
    takeover_decision_feed(&decision, &ring);
    takeover_decision_feed(&decision, &quorum);
    return decision;
}

static void test_peer_process_left(void)
{
    struct takeover_decision d = fresh();
    CHECK(feed(&d, PROCESS_LEFT) == TAKEOVER_TAKE_OVER, "process left: %s", d.reason);
    CHECK(feed(&d, QUORUM(11, false)) == TAKEOVER_TAKE_OVER, "a decision is final");
    CHECK(takeover_decision_may_release(&d), "the side that took over may release");
}

/* A cut replication link, both nodes members: both claim, the total order
 * delivers one claim first to both, exactly one side wins. */
static void test_link_cut_claims(void)
{
    for (int first = 0; first < 2; first++) {
        struct takeover_decision a = fresh(), b = fresh();
        CHECK(feed(&a, LINK_LOST) == TAKEOVER_SEND_CLAIM && a.claimed_epoch == 2, "a claims epoch 2");
        CHECK(feed(&b, SUSPICION) == TAKEOVER_SEND_CLAIM && b.claimed_epoch == 2, "b claims epoch 2");
        CHECK(feed(&a, LINK_LOST) == TAKEOVER_NONE, "a second loss does not claim again");
        /* Delivery order: a's claim first (first == 0) or b's. */
        enum takeover_verdict va, vb;
        if (first == 0) {
            va = feed(&a, CLAIM(2, true));
            vb = feed(&b, CLAIM(2, false));
            feed(&a, CLAIM(2, false));
            feed(&b, CLAIM(2, true));
        } else {
            vb = feed(&b, CLAIM(2, true));
            va = feed(&a, CLAIM(2, false));
            feed(&b, CLAIM(2, false));
            feed(&a, CLAIM(2, true));
        }
        CHECK((va == TAKEOVER_TAKE_OVER) != (vb == TAKEOVER_TAKE_OVER), "order %d: a %s, b %s", first,
              takeover_verdict_name(va), takeover_verdict_name(vb));
        CHECK((va == TAKEOVER_STAND_DOWN) != (vb == TAKEOVER_STAND_DOWN), "order %d: one stands down", first);
        CHECK(takeover_decision_may_release(&a) != takeover_decision_may_release(&b),
              "order %d: exactly one may release", first);
    }
}

/* The peer's node left the ring: the verdict for that ring decides; an
 * older "quorate" does not. */
static void test_peer_node_left(void)
{
    struct takeover_decision d = fresh();
    CHECK(feed(&d, SUSPICION) == TAKEOVER_SEND_CLAIM, "suspicion while a member claims");
    CHECK(feed(&d, RING(11, false)) == TAKEOVER_NONE, "a new ring alone decides nothing");
    CHECK(feed(&d, QUORUM(10, true)) == TAKEOVER_NONE, "a stale quorate for ring 10 counts: %s", d.reason);
    CHECK(feed(&d, QUORUM(11, true)) == TAKEOVER_TAKE_OVER, "quorate ring 11: %s", d.reason);

    struct takeover_decision isolated = fresh();
    CHECK(feed(&isolated, RING(11, false)) == TAKEOVER_NONE, "isolated: new ring");
    CHECK(feed(&isolated, QUORUM(10, true)) == TAKEOVER_NONE, "isolated: the stale verdict");
    CHECK(feed(&isolated, QUORUM(11, false)) == TAKEOVER_STAND_DOWN, "isolated: not quorate: %s", isolated.reason);
    CHECK(!takeover_decision_may_release(&isolated), "an isolated side may still release");

    /* A split ring: each side's own claim is delivered in its own new
     * ring, without the peer. Counting it would make two owners. */
    struct takeover_decision split = fresh();
    CHECK(feed(&split, LINK_LOST) == TAKEOVER_SEND_CLAIM, "split: the claim goes out");
    feed(&split, RING(15, false));
    CHECK(feed(&split, CLAIM(2, true)) == TAKEOVER_NONE, "a claim delivered without the peer wins: %s", split.reason);
    CHECK(feed(&split, QUORUM(15, false)) == TAKEOVER_STAND_DOWN, "split, not quorate: %s", split.reason);

    /* The peer's node left, then CPG reports its process gone too: only
     * the ring's verdict counts (a lost node must not look like a crash). */
    struct takeover_decision node_gone = fresh();
    feed(&node_gone, RING(16, false));
    CHECK(feed(&node_gone, PROCESS_LEFT) == TAKEOVER_NONE, "a process left with its node took over: %s",
          node_gone.reason);
    CHECK(feed(&node_gone, QUORUM(16, false)) == TAKEOVER_STAND_DOWN, "then not quorate: %s", node_gone.reason);

    /* The verdict for the ring may come before its membership. */
    struct takeover_decision early = fresh();
    CHECK(feed(&early, QUORUM(12, true)) == TAKEOVER_NONE, "early verdict alone");
    CHECK(feed(&early, RING(12, false)) == TAKEOVER_TAKE_OVER, "membership after its verdict: %s", early.reason);
}

static void test_engine_lost(void)
{
    struct takeover_decision d = fresh();
    CHECK(feed(&d, ENGINE_LOST) == TAKEOVER_STAND_DOWN, "engine lost: %s", d.reason);
    CHECK(!takeover_decision_may_release(&d), "without Corosync, still releasing");
}

/* A process frozen while the other side took over: on waking it releases
 * nothing until confirmed, and the peer's newer claim makes it stand
 * down. */
static void test_freeze(void)
{
    struct takeover_decision woke = fresh();
    CHECK(feed(&woke, FROZE) == TAKEOVER_NONE && !takeover_decision_may_release(&woke),
          "a woken process releases before it confirmed");
    CHECK(feed(&woke, PROCESS_LEFT) == TAKEOVER_NONE, "a woken process takes over unconfirmed");
    CHECK(feed(&woke, CLAIM(2, false)) == TAKEOVER_STAND_DOWN, "the peer's newer claim: %s", woke.reason);

    struct takeover_decision still_ours = fresh();
    feed(&still_ours, FROZE);
    CHECK(feed(&still_ours, QUORUM(9, true)) == TAKEOVER_NONE && !takeover_decision_may_release(&still_ours),
          "a verdict for an older ring confirms");
    CHECK(feed(&still_ours, QUORUM(9, true)) == TAKEOVER_NONE && !takeover_decision_may_release(&still_ours),
          "a quorum notification (unordered with the claims) confirms");
    CHECK(feed(&still_ours, SYNC(false)) == TAKEOVER_NONE && !takeover_decision_may_release(&still_ours),
          "our sync without quorum confirms");
    CHECK(feed(&still_ours, SYNC(true)) == TAKEOVER_NONE && takeover_decision_may_release(&still_ours),
          "our sync delivered, quorate, no newer claim does not confirm");

    struct takeover_decision won_asleep = fresh();
    feed(&won_asleep, LINK_LOST);
    feed(&won_asleep, FROZE);
    CHECK(feed(&won_asleep, CLAIM(2, true)) == TAKEOVER_NONE, "our claim acted on before the sync");
    CHECK(feed(&won_asleep, SYNC(true)) == TAKEOVER_TAKE_OVER, "our claim delivered first, confirmed: %s",
          won_asleep.reason);

    struct takeover_decision left_asleep = fresh();
    feed(&left_asleep, FROZE);
    feed(&left_asleep, PROCESS_LEFT);
    CHECK(feed(&left_asleep, SYNC(true)) == TAKEOVER_TAKE_OVER, "the peer left, confirmed: %s", left_asleep.reason);

    struct takeover_decision overtaken = fresh();
    feed(&overtaken, FROZE);
    CHECK(feed(&overtaken, CLAIM(2, false)) == TAKEOVER_STAND_DOWN, "a claim delivered before our sync: %s",
          overtaken.reason);
    CHECK(feed(&overtaken, SYNC(true)) == TAKEOVER_STAND_DOWN && !takeover_decision_may_release(&overtaken),
          "stood down, then released after the sync");

    struct takeover_decision alone = fresh();
    feed(&alone, RING(9, true));
    feed(&alone, FROZE);
    CHECK(feed(&alone, RING(14, false)) == TAKEOVER_STAND_DOWN, "woken into a new ring alone: %s", alone.reason);

    /* A whole host hung: the peer took over by the quorum verdict of a
     * ring we were not in; we wake into a merged ring with the peer and
     * then claim: that claim must not win. */
    struct takeover_decision hung = fresh();
    feed(&hung, RING(9, true));
    feed(&hung, FROZE);
    CHECK(feed(&hung, RING(17, true)) == TAKEOVER_STAND_DOWN && !takeover_decision_may_release(&hung),
          "woken into a merged ring, still may own: %s", hung.reason);
    CHECK(feed(&hung, LINK_LOST) == TAKEOVER_STAND_DOWN, "a hung host's claim after waking");
}

/* A scheduling gap shorter than Corosync's token timeout (a loaded host)
 * while the peer's host dies: no ring can have formed without us, so the
 * peer's node leaving is judged as ever. (Standing down here left nobody
 * serving in 1 of 50 host-dead trials.) The release still waits for our
 * sync. A freeze as long as the token timeout still stands down. */
static void test_short_freeze(void)
{
    struct takeover_decision ring_first = fresh();
    CHECK(feed(&ring_first, FROZE_FOR(150, 200)) == TAKEOVER_NONE && !takeover_decision_may_release(&ring_first),
          "a short freeze releases before it confirmed");
    CHECK(feed(&ring_first, RING(14, false)) == TAKEOVER_NONE, "a short freeze, the peer's node left: %s",
          ring_first.reason);
    CHECK(feed(&ring_first, QUORUM(14, true)) == TAKEOVER_TAKE_OVER, "the quorate verdict after a short freeze: %s",
          ring_first.reason);
    CHECK(!takeover_decision_may_release(&ring_first), "released before the sync");
    CHECK(feed(&ring_first, SYNC(true)) == TAKEOVER_TAKE_OVER && takeover_decision_may_release(&ring_first),
          "the sync did not let the takeover release");

    struct takeover_decision verdict_first = fresh();
    feed(&verdict_first, FROZE_FOR(150, 200));
    feed(&verdict_first, QUORUM(14, true));
    CHECK(feed(&verdict_first, RING(14, false)) == TAKEOVER_TAKE_OVER, "the verdict before the ring: %s",
          verdict_first.reason);

    struct takeover_decision minority = fresh();
    feed(&minority, FROZE_FOR(150, 200));
    feed(&minority, RING(14, false));
    CHECK(feed(&minority, QUORUM(14, false)) == TAKEOVER_STAND_DOWN, "not quorate after a short freeze: %s",
          minority.reason);

    struct takeover_decision long_freeze = fresh();
    feed(&long_freeze, FROZE_FOR(250, 200));
    CHECK(feed(&long_freeze, RING(14, false)) == TAKEOVER_STAND_DOWN, "a freeze longer than the token timeout: %s",
          long_freeze.reason);
    CHECK(strstr(long_freeze.reason, "250 ms") != NULL, "the reason names the freeze: %s", long_freeze.reason);
}

int main(void)
{
    test_peer_process_left();
    test_link_cut_claims();
    test_peer_node_left();
    test_engine_lost();
    test_freeze();
    test_short_freeze();
    return test_check_finish("takeover_decision_test");
}
