/* The guard of one protected VM's output: whether this colo process may
 * take over, carry on alone, or release output at all (DESIGN.md, "Never
 * two copies"). It owns the takeover decision (takeover_decision.h),
 * feeds it what the Corosync engine delivers (corosync_engine.h) and what
 * the replication reports (a silent heartbeat, a broken link), sends the
 * claims the decision asks for, and tells its owner once the decision is
 * final.
 *
 * Without a cluster (no Corosync configured: tests and labs) there is no
 * engine: a suspicion takes over at once, as colo did before Corosync,
 * and split brain is possible: the guard says so in its status.
 *
 * Threads: the engine's thread, the replication's threads and the control
 * thread all call in; the lock below is a leaf except that the owner's
 * on_final runs outside it. */
#ifndef COLO_CLUSTER_TAKEOVER_GUARD_H
#define COLO_CLUSTER_TAKEOVER_GUARD_H

#include <pthread.h>
#include <stdbool.h>

#include "corosync_engine.h"
#include "error.h"
#include "takeover_decision.h"

struct takeover_guard_status {
    bool cluster; /* false: no Corosync, split brain possible */
    struct corosync_engine_status engine;
    uint64_t epoch;
    bool frozen;
    enum takeover_verdict final;
    char reason[200];
    uint64_t decisions; /* verdicts other than "none" */
};

struct takeover_guard {
    bool cluster;
    struct corosync_engine engine;
    pthread_mutex_t lock;
    pthread_cond_t decided;
    struct takeover_decision decision; /* under lock */
    uint64_t decisions;
    /* Called outside the lock, on the thread that fed the event: once for
     * the final verdict (TAKE_OVER or STAND_DOWN), and for each claim sent
     * (SEND_CLAIM, before it goes out). */
    void (*on_final)(void *opaque, enum takeover_verdict verdict, const char *reason);
    void *opaque;
    bool final_announced;
    bool started;
};

/* Starts the guard; with group_name, joins that Corosync group (fails with
 * a message when Corosync cannot be reached); NULL: no cluster. */
int takeover_guard_start(struct takeover_guard *guard, const char *group_name,
                         void (*on_final)(void *opaque, enum takeover_verdict verdict, const char *reason),
                         void *opaque, struct error *err);
/* The replication's word: kind is TAKEOVER_EVENT_SUSPICION (the heartbeat
 * is silent) or TAKEOVER_EVENT_LINK_LOST. Any thread; returns at once. */
void takeover_guard_report(struct takeover_guard *guard, enum takeover_event_kind kind);
/* Waits up to timeout_ms for the final verdict (TAKE_OVER or STAND_DOWN;
 * NONE on timeout); its reason into reason. */
enum takeover_verdict takeover_guard_wait(struct takeover_guard *guard, int timeout_ms, char *reason, size_t size);
/* Whether this process may release the VM's output now: not stood down,
 * not woken from a freeze unconfirmed, and its Corosync thread ran within
 * the last 50 ms (a process that was stopped sees it old before anything
 * else). Always true without a cluster. Any thread, cheap. */
bool takeover_guard_may_release(struct takeover_guard *guard);
void takeover_guard_get_status(struct takeover_guard *guard, struct takeover_guard_status *status);
void takeover_guard_stop(struct takeover_guard *guard);

#endif
