/* The secondary's takeover: a monitor thread waits for the secondary's
 * loop to end, by itself (the primary died, the stream broke) or because
 * the peer was declared dead (cluster/heartbeat.h: the connection is shut
 * down, so every cause takes this one path). Then, by the state the loop
 * ended in (DESIGN.md, "Failover"): colo_secondary_failover brings the SVM
 * to a consistent running state, or refuses (SETUPED: there is no VM yet;
 * the machine is then asked to stop, once the owner heard); and every checkpoint device's
 * failover phase runs with the SVM paused (the mirror hands the NICs their
 * own network, the output buffers send what the SVM's timeline owes the
 * world), in the order they were added. A loop that ended because the
 * primary ended the VM on purpose (PRIMARY_ENDING: a guest poweroff, a
 * reboot, `colo quit`) is no failure: nothing is taken over, and the
 * machine is asked to stop (PEER_ENDED). A loop that ended on the
 * primary's SWITCHOVER (a planned switchover) takes the same path as a
 * failure, gate included, and answers the primary: SVM_TOOK_OVER once the
 * SVM runs as the VM, SVM_SWITCHOVER_REFUSED when it may not. */
#ifndef COLO_REPLICATION_COLO_FAILOVER_H
#define COLO_REPLICATION_COLO_FAILOVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "colo_secondary.h"
#include "error.h"

enum colo_failover_outcome {
    COLO_FAILOVER_PENDING, /* replication goes on */
    COLO_FAILOVER_DONE,    /* the SVM runs as the VM */
    COLO_FAILOVER_REFUSED, /* no consistent SVM: the machine was asked to stop */
    /* The primary ended the VM on purpose (PRIMARY_ENDING): no takeover,
     * the machine was asked to stop. */
    COLO_FAILOVER_PEER_ENDED,
};

struct colo_failover_result {
    enum colo_failover_outcome outcome;
    enum colo_secondary_state from_state;
    char replication_ended[512];           /* why the loop ended */
    char refused[512];                     /* REFUSED: why */
    enum colo_ending_reason ending_reason; /* PEER_ENDED: the primary's reason */
    /* The primary asked for it (SWITCHOVER): DONE answered SVM_TOOK_OVER,
     * REFUSED answered SVM_SWITCHOVER_REFUSED. */
    bool switchover;
};

/* Asked once the loop has ended, before anything is taken over: whether
 * this side may own the VM (the cluster's verdict, which may take a
 * while). false refuses the takeover with the reason written to why. */
struct colo_failover_gate {
    bool (*may_take_over)(void *opaque, char *why, size_t size);
    void *opaque;
    /* A planned switchover (the loop ended on SWITCHOVER): called first,
     * before the gate. The primary released all its output up to the last
     * checkpoint itself, so whatever copy of it the owner keeps for a
     * failover (committed output) must not go out again. May be NULL. */
    void (*primary_released_output)(void *opaque);
};

struct colo_failover {
    struct colo_secondary *secondary;
    struct colo_failover_gate gate;
    /* Called once on the monitor's thread when the outcome is known. */
    void (*on_finished)(void *opaque, const struct colo_failover_result *result);
    void *opaque;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t finished;
    struct colo_failover_result result; /* under lock */
};

/* Starts the monitor of a started secondary; gate may be NULL (always). */
int colo_failover_start(struct colo_failover *failover, struct colo_secondary *secondary,
                        const struct colo_failover_gate *gate,
                        void (*on_finished)(void *opaque, const struct colo_failover_result *result), void *opaque,
                        struct error *err);
/* Waits up to timeout_ms for the outcome (PENDING when it did not come). */
enum colo_failover_outcome colo_failover_wait(struct colo_failover *failover, int timeout_ms,
                                              struct colo_failover_result *result);
/* Joins the monitor (the loop must be ending: its connection shut down). */
void colo_failover_join(struct colo_failover *failover);
void colo_failover_destroy(struct colo_failover *failover);

#endif
