/* The secondary's takeover (colo_failover.h). */
#include "colo_failover.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "machine.h"

/* The owner hears first, so whoever waits for the outcome finds the owner
 * up to date when it wakes. */
static void finish(struct colo_failover *failover, const struct colo_failover_result *result)
{
    if (failover->on_finished)
        failover->on_finished(failover->opaque, result);
    pthread_mutex_lock(&failover->lock);
    failover->result = *result;
    pthread_cond_broadcast(&failover->finished);
    pthread_mutex_unlock(&failover->lock);
}

/* No takeover: the machine is asked to stop, once the owner heard; a
 * primary waiting for a switchover's answer hears it too (it may then run
 * on: this side will not). */
static void refuse(struct colo_failover *failover, struct colo_failover_result *result, const char *why)
{
    result->outcome = COLO_FAILOVER_REFUSED;
    snprintf(result->refused, sizeof result->refused, "%s", why);
    if (result->switchover) {
        struct error ignored;
        (void)colo_send_message(&failover->secondary->writer, COLO_SVM_SWITCHOVER_REFUSED, &ignored);
    }
    finish(failover, result);
    machine_request_stop(failover->secondary->svm);
}

static void *monitor_thread(void *opaque)
{
    pthread_setname_np(pthread_self(), "failover");
    struct colo_failover *failover = opaque;
    struct colo_secondary *secondary = failover->secondary;
    struct colo_failover_result result = { .outcome = COLO_FAILOVER_DONE };
    struct error ended = { "" };
    int loop_result = colo_secondary_join(secondary, &ended);
    snprintf(result.replication_ended, sizeof result.replication_ended, "%s", ended.message);
    result.from_state = colo_secondary_state(secondary);
    if (loop_result > 0 && atomic_load(&secondary->primary_ended)) {
        /* Both copies end: the SVM never runs on its own, its devices keep
         * what they hold. */
        result.outcome = COLO_FAILOVER_PEER_ENDED;
        result.ending_reason = secondary->ending_reason;
        finish(failover, &result);
        machine_request_stop(secondary->svm);
        return NULL;
    }
    struct error err;
    result.switchover = loop_result == 2 && atomic_load(&secondary->switchover_requested);
    if (result.switchover && failover->gate.primary_released_output)
        failover->gate.primary_released_output(failover->gate.opaque);
    char why[sizeof result.refused] = "";
    if (failover->gate.may_take_over && !failover->gate.may_take_over(failover->gate.opaque, why, sizeof why)) {
        refuse(failover, &result, why);
        return NULL;
    }
    if (colo_secondary_failover(secondary, &err) < 0) {
        refuse(failover, &result, err.message);
        return NULL;
    }
    /* The devices act with the SVM paused: nothing it sends can overtake
     * what they send for it. */
    machine_pause(secondary->svm);
    if (colo_checkpoint_devices_failover(&secondary->devices, &err) < 0)
        fprintf(stderr, "colo secondary: failover: %s (the VM runs here all the same)\n", err.message);
    machine_resume(secondary->svm);
    /* The primary waits for this, its PVM paused: answer first. */
    if (result.switchover && colo_send_message(&secondary->writer, COLO_SVM_TOOK_OVER, &err) < 0)
        fprintf(stderr, "colo secondary: switchover: %s (the VM runs here all the same)\n", err.message);
    finish(failover, &result);
    return NULL;
}

int colo_failover_start(struct colo_failover *failover, struct colo_secondary *secondary,
                        const struct colo_failover_gate *gate,
                        void (*on_finished)(void *opaque, const struct colo_failover_result *result), void *opaque,
                        struct error *err)
{
    memset(failover, 0, sizeof *failover);
    failover->secondary = secondary;
    if (gate)
        failover->gate = *gate;
    failover->on_finished = on_finished;
    failover->opaque = opaque;
    pthread_mutex_init(&failover->lock, NULL);
    pthread_cond_init(&failover->finished, NULL);
    int failed = pthread_create(&failover->thread, NULL, monitor_thread, failover);
    if (failed)
        return error_set(err, "cannot start the secondary's monitor thread: %s", strerror(failed));
    failover->started = true;
    return 0;
}

enum colo_failover_outcome colo_failover_wait(struct colo_failover *failover, int timeout_ms,
                                              struct colo_failover_result *result)
{
    /* The condition variable has the default clock, the wall clock. */
    uint64_t deadline_ns = clock_realtime_ns() + (uint64_t)timeout_ms * 1000000u;
    struct timespec deadline = { .tv_sec = (time_t)(deadline_ns / 1000000000u),
                                 .tv_nsec = (long)(deadline_ns % 1000000000u) };
    pthread_mutex_lock(&failover->lock);
    int waited = 0;
    while (failover->result.outcome == COLO_FAILOVER_PENDING && waited == 0)
        waited = pthread_cond_timedwait(&failover->finished, &failover->lock, &deadline);
    if (result)
        *result = failover->result;
    enum colo_failover_outcome outcome = failover->result.outcome;
    pthread_mutex_unlock(&failover->lock);
    return outcome;
}

void colo_failover_join(struct colo_failover *failover)
{
    if (!failover->started)
        return;
    pthread_join(failover->thread, NULL);
    failover->started = false;
}

void colo_failover_destroy(struct colo_failover *failover)
{
    colo_failover_join(failover);
    pthread_cond_destroy(&failover->finished);
    pthread_mutex_destroy(&failover->lock);
}
