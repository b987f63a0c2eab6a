/* The heartbeat and the failure detector: how a colo process learns that
 * its peer is gone, and the one place that decides it.
 *
 * The primary sends a beat every HEARTBEAT_INTERVAL_MS on a connection that
 * is never silent for long (the mirror connection: the replication one is
 * silent for a whole checkpoint interval, or busy for a whole checkpoint).
 * The secondary's failure detector hears every sign of life on it and
 * takes the peer for dead after its timeout without one, or when whoever
 * reads the peer's connections says so (closed, broken, garbage), or when
 * the operator says so (`colo failover`). Whatever the cause,
 * failure_detector_declare_peer_dead decides once: the first reason wins
 * and its action (on_peer_dead, e.g. ending the secondary's loop) runs
 * once. Later, membership and quorum (Corosync) will feed the same
 * decision. */
#ifndef COLO_CLUSTER_HEARTBEAT_H
#define COLO_CLUSTER_HEARTBEAT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define HEARTBEAT_INTERVAL_MS 20

/* ---- the sender (primary) ---- */

struct heartbeat_sender {
    unsigned interval_ms;
    /* Sends one beat; false when it could not (the caller's connection
     * notices its own loss: the sender just keeps its pace). */
    bool (*send_beat)(void *opaque);
    void *opaque;
    atomic_bool stop;
    pthread_t thread;
    bool started;
};

/* Starts the sender's thread: a beat at once, then every interval_ms,
 * whatever else the process is doing. */
int heartbeat_sender_start(struct heartbeat_sender *sender, unsigned interval_ms, bool (*send_beat)(void *opaque),
                           void *opaque, struct error *err);
/* Ends and joins the thread (nothing if it never started). */
void heartbeat_sender_stop(struct heartbeat_sender *sender);

/* ---- the failure detector (secondary) ---- */

struct failure_detector {
    atomic_int timeout_ms; /* silence that means "dead"; 0: only explicit declarations */
    void (*on_peer_dead)(void *opaque, const char *reason);
    void *opaque;
    _Atomic uint64_t last_heard_ns; /* monotonic */
    atomic_uint_fast64_t heartbeats;
    pthread_mutex_t lock;
    bool peer_dead; /* under lock, as is reason */
    char reason[256];
};

void failure_detector_init(struct failure_detector *detector, int timeout_ms,
                           void (*on_peer_dead)(void *opaque, const char *reason), void *opaque);
void failure_detector_destroy(struct failure_detector *detector);
/* Changes the timeout (any thread), the silence counting from now. A
 * secondary is patient during the initial copy, when there is nothing to
 * take over yet and a loaded host's scheduling gaps would only end the
 * protection, then strict. */
void failure_detector_set_timeout(struct failure_detector *detector, int timeout_ms);
/* Something arrived from the peer (heartbeat: it was a beat). Any thread. */
void failure_detector_heard(struct failure_detector *detector, bool heartbeat);
/* Called regularly (at least every interval) by whoever waits for the
 * peer: declares it dead when the silence has passed the timeout. Returns
 * whether the peer is dead (now or before). */
bool failure_detector_check(struct failure_detector *detector);
/* The decision. The first call wins: it records the reason and runs
 * on_peer_dead (on the calling thread, outside the detector's lock);
 * later calls change nothing. Returns true for the call that decided. */
bool failure_detector_declare_peer_dead(struct failure_detector *detector, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* Whether the peer was declared dead, and why (reason may be NULL). */
bool failure_detector_peer_dead(struct failure_detector *detector, char *reason, size_t size);
uint64_t failure_detector_heartbeats(struct failure_detector *detector);

#endif
