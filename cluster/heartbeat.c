/* The heartbeat and the failure detector (heartbeat.h). */
#include "heartbeat.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"

static void *sender_thread(void *opaque)
{
    pthread_setname_np(pthread_self(), "heartbeat");
    struct heartbeat_sender *sender = opaque;
    while (!atomic_load(&sender->stop)) {
        sender->send_beat(sender->opaque);
        clock_sleep_ms(sender->interval_ms);
    }
    return NULL;
}

int heartbeat_sender_start(struct heartbeat_sender *sender, unsigned interval_ms, bool (*send_beat)(void *opaque),
                           void *opaque, struct error *err)
{
    sender->interval_ms = interval_ms;
    sender->send_beat = send_beat;
    sender->opaque = opaque;
    atomic_init(&sender->stop, false);
    int failed = pthread_create(&sender->thread, NULL, sender_thread, sender);
    if (failed)
        return error_set(err, "cannot start the heartbeat thread: %s", strerror(failed));
    sender->started = true;
    return 0;
}

void heartbeat_sender_stop(struct heartbeat_sender *sender)
{
    if (!sender->started)
        return;
    atomic_store(&sender->stop, true);
    pthread_join(sender->thread, NULL);
    sender->started = false;
}

void failure_detector_init(struct failure_detector *detector, int timeout_ms,
                           void (*on_peer_dead)(void *opaque, const char *reason), void *opaque)
{
    memset(detector, 0, sizeof *detector);
    atomic_init(&detector->timeout_ms, timeout_ms);
    detector->on_peer_dead = on_peer_dead;
    detector->opaque = opaque;
    atomic_init(&detector->last_heard_ns, clock_monotonic_ns());
    atomic_init(&detector->heartbeats, 0);
    pthread_mutex_init(&detector->lock, NULL);
}

void failure_detector_destroy(struct failure_detector *detector)
{
    pthread_mutex_destroy(&detector->lock);
}

void failure_detector_heard(struct failure_detector *detector, bool heartbeat)
{
    atomic_store(&detector->last_heard_ns, clock_monotonic_ns());
    if (heartbeat)
        atomic_fetch_add(&detector->heartbeats, 1);
}

void failure_detector_set_timeout(struct failure_detector *detector, int timeout_ms)
{
    /* The silence so far counts from now: a longer wait ended by a
     * shorter timeout is not a death. */
    atomic_store(&detector->last_heard_ns, clock_monotonic_ns());
    atomic_store(&detector->timeout_ms, timeout_ms);
}

bool failure_detector_check(struct failure_detector *detector)
{
    int timeout_ms = atomic_load(&detector->timeout_ms);
    if (timeout_ms > 0) {
        uint64_t silent_ns = clock_monotonic_ns() - atomic_load(&detector->last_heard_ns);
        if (silent_ns > (uint64_t)timeout_ms * 1000000u)
            failure_detector_declare_peer_dead(detector, "no heartbeat from the peer for %.0f ms (timeout %d ms)",
                                               (double)silent_ns / 1e6, timeout_ms);
    }
    return failure_detector_peer_dead(detector, NULL, 0);
}

bool failure_detector_declare_peer_dead(struct failure_detector *detector, const char *format, ...)
{
    pthread_mutex_lock(&detector->lock);
    bool decided = !detector->peer_dead;
    if (decided) {
        detector->peer_dead = true;
        va_list arguments;
        va_start(arguments, format);
        vsnprintf(detector->reason, sizeof detector->reason, format, arguments);
        va_end(arguments);
    }
    char reason[sizeof detector->reason];
    memcpy(reason, detector->reason, sizeof reason);
    pthread_mutex_unlock(&detector->lock);
    if (decided && detector->on_peer_dead)
        detector->on_peer_dead(detector->opaque, reason);
    return decided;
}

bool failure_detector_peer_dead(struct failure_detector *detector, char *reason, size_t size)
{
    pthread_mutex_lock(&detector->lock);
    bool dead = detector->peer_dead;
    if (reason && size)
        snprintf(reason, size, "%s", detector->reason);
    pthread_mutex_unlock(&detector->lock);
    return dead;
}

uint64_t failure_detector_heartbeats(struct failure_detector *detector)
{
    return atomic_load(&detector->heartbeats);
}
