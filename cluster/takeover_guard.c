/* The guard of one protected VM's output (takeover_guard.h). */
#include "takeover_guard.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"

/* A Corosync thread that has not passed for this long may be waking from
 * a freeze it has not noticed yet. */
#define TAKEOVER_GUARD_FRESH_MS 50

/* Feeds one event; sends a claim if the decision asks for one; announces a
 * final verdict once. Any thread. */
static void feed(struct takeover_guard *guard, const struct takeover_event *event)
{
    pthread_mutex_lock(&guard->lock);
    enum takeover_verdict verdict = takeover_decision_feed(&guard->decision, event);
    uint64_t claim_epoch = verdict == TAKEOVER_SEND_CLAIM ? guard->decision.claimed_epoch : 0;
    bool announce = false;
    char reason[sizeof guard->decision.reason];
    snprintf(reason, sizeof reason, "%s", guard->decision.reason);
    if (verdict != TAKEOVER_NONE && (verdict == TAKEOVER_SEND_CLAIM || !guard->final_announced))
        guard->decisions++;
    if ((verdict == TAKEOVER_TAKE_OVER || verdict == TAKEOVER_STAND_DOWN) && !guard->final_announced) {
        guard->final_announced = true;
        announce = true;
        pthread_cond_broadcast(&guard->decided);
    }
    pthread_mutex_unlock(&guard->lock);
    if (claim_epoch) {
        if (guard->on_final)
            guard->on_final(guard->opaque, TAKEOVER_SEND_CLAIM, reason);
        struct error err;
        if (corosync_engine_send_claim(&guard->engine, claim_epoch, &err) < 0) {
            /* A claim that cannot be sent cannot win: our Corosync is
             * unusable, which is what ENGINE_LOST says. */
            fprintf(stderr, "colo cluster: %s\n", err.message);
            feed(guard, &(struct takeover_event){ .kind = TAKEOVER_EVENT_ENGINE_LOST });
        }
    }
    if (announce) {
        if (guard->on_final) /* the owner logs it, with its name */
            guard->on_final(guard->opaque, verdict, reason);
    }
}

static void on_engine_event(void *opaque, const struct takeover_event *event)
{
    feed(opaque, event);
}

int takeover_guard_start(struct takeover_guard *guard, const char *group_name,
                         void (*on_final)(void *opaque, enum takeover_verdict verdict, const char *reason),
                         void *opaque, struct error *err)
{
    memset(guard, 0, sizeof *guard);
    guard->on_final = on_final;
    guard->opaque = opaque;
    guard->cluster = group_name != NULL;
    takeover_decision_init(&guard->decision);
    pthread_mutex_init(&guard->lock, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&guard->decided, &attributes);
    pthread_condattr_destroy(&attributes);
    if (group_name && corosync_engine_start(&guard->engine, group_name, on_engine_event, guard, err) < 0) {
        pthread_cond_destroy(&guard->decided);
        pthread_mutex_destroy(&guard->lock);
        return -1;
    }
    guard->started = true;
    return 0;
}

void takeover_guard_report(struct takeover_guard *guard, enum takeover_event_kind kind)
{
    if (!guard->cluster) {
        /* colo without a cluster: whoever suspects first acts. */
        pthread_mutex_lock(&guard->lock);
        bool announce = !guard->final_announced;
        if (announce) {
            guard->decision.final = TAKEOVER_TAKE_OVER;
            snprintf(guard->decision.reason, sizeof guard->decision.reason,
                     "%s and no cluster is configured: acting alone (split brain is possible)",
                     kind == TAKEOVER_EVENT_LINK_LOST ? "the replication link is lost"
                                                      : "the peer's heartbeat is silent");
            guard->final_announced = true;
            guard->decisions++;
            pthread_cond_broadcast(&guard->decided);
        }
        char reason[sizeof guard->decision.reason];
        snprintf(reason, sizeof reason, "%s", guard->decision.reason);
        pthread_mutex_unlock(&guard->lock);
        if (announce && guard->on_final)
            guard->on_final(guard->opaque, TAKEOVER_TAKE_OVER, reason);
        return;
    }
    feed(guard, &(struct takeover_event){ .kind = kind });
}

enum takeover_verdict takeover_guard_wait(struct takeover_guard *guard, int timeout_ms, char *reason, size_t size)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    uint64_t deadline_ns = (uint64_t)deadline.tv_sec * 1000000000u + (uint64_t)deadline.tv_nsec +
                           (uint64_t)timeout_ms * 1000000u;
    deadline.tv_sec = (time_t)(deadline_ns / 1000000000u);
    deadline.tv_nsec = (long)(deadline_ns % 1000000000u);
    pthread_mutex_lock(&guard->lock);
    int waited = 0;
    while (!guard->final_announced && waited == 0)
        waited = pthread_cond_timedwait(&guard->decided, &guard->lock, &deadline);
    enum takeover_verdict verdict = guard->final_announced ? guard->decision.final : TAKEOVER_NONE;
    if (reason)
        snprintf(reason, size, "%s", guard->decision.reason);
    pthread_mutex_unlock(&guard->lock);
    return verdict;
}

bool takeover_guard_may_release(struct takeover_guard *guard)
{
    if (!guard->cluster)
        return true;
    if (!corosync_engine_alive_within(&guard->engine, TAKEOVER_GUARD_FRESH_MS))
        return false;
    pthread_mutex_lock(&guard->lock);
    bool may = takeover_decision_may_release(&guard->decision);
    pthread_mutex_unlock(&guard->lock);
    return may;
}

void takeover_guard_get_status(struct takeover_guard *guard, struct takeover_guard_status *status)
{
    memset(status, 0, sizeof *status);
    status->cluster = guard->cluster;
    if (guard->cluster)
        corosync_engine_get_status(&guard->engine, &status->engine);
    pthread_mutex_lock(&guard->lock);
    status->epoch = guard->decision.epoch;
    status->frozen = guard->decision.frozen;
    status->final = guard->decision.final;
    snprintf(status->reason, sizeof status->reason, "%s", guard->decision.reason);
    status->decisions = guard->decisions;
    pthread_mutex_unlock(&guard->lock);
}

void takeover_guard_stop(struct takeover_guard *guard)
{
    if (!guard->started)
        return;
    if (guard->cluster)
        corosync_engine_stop(&guard->engine);
    pthread_cond_destroy(&guard->decided);
    pthread_mutex_destroy(&guard->lock);
    guard->started = false;
}
