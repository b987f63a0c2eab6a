/* The takeover guard without a cluster (cluster/takeover_guard.h), with
 * several threads at once, as the replication's threads use it: many
 * reports, exactly one final verdict (take over, acting alone) announced
 * once; a wait without a report times out with no verdict; a wait after
 * the verdict returns it at once with its reason; releasing is always
 * allowed without a cluster. Also the CPG message's wire form. (The guard
 * on a real Corosync: tests/cluster/corosync_takeover_test.sh.) */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "clock.h"
#include "takeover_guard.h"
#include "test_check.h"

struct verdicts {
    atomic_int finals, claims;
    _Atomic enum takeover_verdict last;
};

static void on_final(void *opaque, enum takeover_verdict verdict, const char *reason)
{
    struct verdicts *verdicts = opaque;
    (void)reason;
    if (verdict == TAKEOVER_SEND_CLAIM) {
        atomic_fetch_add(&verdicts->claims, 1);
        return;
    }
    atomic_store(&verdicts->last, verdict);
    atomic_fetch_add(&verdicts->finals, 1);
}

struct reporter {
    struct takeover_guard *guard;
    enum takeover_event_kind kind;
    enum takeover_verdict seen;
};

static void *report_and_wait(void *opaque)
{
    struct reporter *reporter = opaque;
    takeover_guard_report(reporter->guard, reporter->kind);
    reporter->seen = takeover_guard_wait(reporter->guard, 5000, NULL, 0);
    return NULL;
}

static void test_no_cluster(void)
{
    struct takeover_guard guard;
    struct verdicts verdicts = { 0 };
    struct error err;
    CHECK(takeover_guard_start(&guard, NULL, on_final, &verdicts, &err) == 0, "start: %s", err.message);
    CHECK(takeover_guard_may_release(&guard), "no cluster: release refused");
    double started = clock_monotonic_seconds();
    CHECK(takeover_guard_wait(&guard, 50, NULL, 0) == TAKEOVER_NONE, "a verdict without any report");
    CHECK(clock_monotonic_seconds() - started >= 0.045, "the wait did not last its timeout");

    enum { REPORTERS = 8 };
    pthread_t threads[REPORTERS];
    struct reporter reporters[REPORTERS];
    for (int i = 0; i < REPORTERS; i++) {
        reporters[i] = (struct reporter){ &guard, i % 2 ? TAKEOVER_EVENT_LINK_LOST : TAKEOVER_EVENT_SUSPICION,
                                          TAKEOVER_NONE };
        pthread_create(&threads[i], NULL, report_and_wait, &reporters[i]);
    }
    for (int i = 0; i < REPORTERS; i++) {
        pthread_join(threads[i], NULL);
        CHECK(reporters[i].seen == TAKEOVER_TAKE_OVER, "reporter %d saw %s", i,
              takeover_verdict_name(reporters[i].seen));
    }
    CHECK(atomic_load(&verdicts.finals) == 1, "%d final verdicts announced", atomic_load(&verdicts.finals));
    CHECK(atomic_load(&verdicts.last) == TAKEOVER_TAKE_OVER, "announced %s", takeover_verdict_name(verdicts.last));
    CHECK(atomic_load(&verdicts.claims) == 0, "claims without a cluster");
    char reason[256];
    CHECK(takeover_guard_wait(&guard, 0, reason, sizeof reason) == TAKEOVER_TAKE_OVER &&
              strstr(reason, "split brain is possible"),
          "the verdict's reason: '%s'", reason);
    struct takeover_guard_status status;
    takeover_guard_get_status(&guard, &status);
    CHECK(!status.cluster && status.final == TAKEOVER_TAKE_OVER && status.decisions == 1,
          "status: cluster %d, final %s, %llu decisions", status.cluster, takeover_verdict_name(status.final),
          (unsigned long long)status.decisions);
    takeover_guard_stop(&guard);
}

static void test_message_wire_form(void)
{
    uint8_t bytes[COROSYNC_MESSAGE_SIZE];
    corosync_message_encode(bytes, COROSYNC_MESSAGE_CLAIM, 0x0102030405060708ull);
    enum corosync_message_kind kind;
    uint64_t epoch;
    CHECK(corosync_message_decode(bytes, sizeof bytes, &kind, &epoch) == 0 && kind == COROSYNC_MESSAGE_CLAIM &&
              epoch == 0x0102030405060708ull,
          "a claim does not read back");
    CHECK(memcmp(bytes, "COLO", 4) == 0 && bytes[4] == 1 && bytes[5] == 1 && bytes[8] == 0x08 && bytes[15] == 0x01,
          "the wire form is not the documented one");
    CHECK(corosync_message_decode(bytes, sizeof bytes - 1, &kind, &epoch) < 0, "a short message accepted");
    bytes[5] = 9;
    CHECK(corosync_message_decode(bytes, sizeof bytes, &kind, &epoch) < 0, "an unknown kind accepted");
}

int main(void)
{
    test_no_cluster();
    test_message_wire_form();
    return test_check_finish("takeover_guard_test");
}
