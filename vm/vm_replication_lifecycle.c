/* COLO for one VM: the lifecycle of a protected VM (docs/replication.md,
 * "Ending on purpose"). A guest poweroff, a guest reboot and `colo quit`
 * on the primary end both copies on purpose: the primary's loop tells the
 * secondary (PRIMARY_ENDING), which stops without taking over; after a
 * reboot the primary runs on unprotected and says so. And a secondary that
 * still waits for its primary ends on `colo quit` and SIGTERM. */
#include "vm_replication_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "socket.h"

/* How often a waiting secondary looks at its stop request. */

void vm_replication_vm_ending(struct vm_replication *replication, enum colo_ending_reason reason)
{
    pthread_mutex_lock(&replication->lock);
    replication->ending = true;
    replication->ending_reason = reason;
    pthread_mutex_unlock(&replication->lock);
}

void vm_replication_stop_primary_loop(struct vm_replication *replication)
{
    pthread_mutex_lock(&replication->lock);
    bool ending = replication->ending;
    enum colo_ending_reason reason = replication->ending_reason;
    pthread_mutex_unlock(&replication->lock);
    if (ending)
        colo_primary_end(&replication->primary, reason);
    else
        colo_primary_stop(&replication->primary);
}

void vm_replication_primary_loop_ended(struct vm_replication *replication, int status, const struct error *err)
{
    bool ending = false;
    enum colo_ending_reason reason = COLO_ENDING_QUIT;
    if (replication->primary_initialized) {
        pthread_mutex_lock(&replication->primary.lock);
        ending = replication->primary.ending;
        reason = replication->primary.ending_reason;
        pthread_mutex_unlock(&replication->primary.lock);
    }
    const char *what = "unprotected";
    pthread_mutex_lock(&replication->lock);
    if (ending && status == 0 && reason == COLO_ENDING_REBOOT) {
        snprintf(replication->end_reason, sizeof replication->end_reason,
                 "unprotected after a reboot: the guest rebooted, the secondary was told and ended without "
                 "taking over; protect the VM again");
    } else if (ending && status == 0) {
        snprintf(replication->end_reason, sizeof replication->end_reason,
                 "the VM ended on purpose (%s): the secondary was told and ends too, without taking over",
                 colo_ending_reason_name(reason));
        what = "ended";
    } else if (ending) {
        snprintf(replication->end_reason, sizeof replication->end_reason,
                 "the VM ends on purpose (%s), but the secondary did not confirm it (%.300s): it may take over",
                 colo_ending_reason_name(reason), err->message);
    } else {
        snprintf(replication->end_reason, sizeof replication->end_reason, "%s", status < 0 ? err->message : "stopped");
    }
    pthread_mutex_unlock(&replication->lock);
    if (ending && status == 0 && reason != COLO_ENDING_REBOOT)
        vm_replication_log(replication, "%s", replication->end_reason);
    else if (ending && status == 0)
        vm_replication_log(replication, "UNPROTECTED: %s", replication->end_reason);
    else if (ending)
        vm_replication_log(replication, "%s", replication->end_reason);
    else
        vm_replication_log(replication, "the secondary is lost (%s); running on unprotected", replication->end_reason);
    vm_replication_post_event(replication, what, replication->end_reason);
}

void vm_replication_secondary_primary_ended(struct vm_replication *replication,
                                            const struct colo_failover_result *result)
{
    const char *reason = colo_ending_reason_name(result->ending_reason);
    pthread_mutex_lock(&replication->lock);
    replication->primary_ended = true;
    replication->primary_ending_reason = result->ending_reason;
    replication->phase = "ended by the primary";
    snprintf(replication->end_reason, sizeof replication->end_reason,
             "the primary ended the VM on purpose (%s): no takeover", reason);
    pthread_mutex_unlock(&replication->lock);
    vm_replication_log(replication, "the primary ended the VM on purpose (%s): no takeover; stopping", reason);
    vm_replication_post_event(replication, "primary ended", reason);
}

bool vm_replication_primary_ended(struct vm_replication *replication, enum colo_ending_reason *reason)
{
    pthread_mutex_lock(&replication->lock);
    bool ended = replication->primary_ended;
    *reason = replication->primary_ending_reason;
    pthread_mutex_unlock(&replication->lock);
    return ended;
}

/* The SVM runs the same guest as the PVM: its own poweroff or reboot
 * usually comes just before or after the PVM's. Ending the secondary's
 * threads now would look like the primary's death (a takeover, an
 * announce from this host while the primary still runs); the primary's
 * PRIMARY_ENDING is the word to wait for (the loop goes on without the
 * SVM's run). A primary that does not follow is left to the usual path. */
#define AWAIT_PRIMARY_MS 10000

void vm_replication_secondary_await_primary(struct vm_replication *replication)
{
    pthread_mutex_lock(&replication->lock);
    bool guest_ended = replication->ending && replication->ending_reason != COLO_ENDING_QUIT;
    bool replicating = replication->failover_started && !replication->failover_done && !replication->failover_refused &&
                       !replication->primary_ended;
    enum colo_ending_reason reason = replication->ending_reason;
    pthread_mutex_unlock(&replication->lock);
    if (!guest_ended || !replicating)
        return;
    vm_replication_log(replication, "the SVM's guest ended by itself (%s); waiting up to %d s for the primary's word",
                       colo_ending_reason_name(reason), AWAIT_PRIMARY_MS / 1000);
    if (colo_failover_wait(&replication->failover, AWAIT_PRIMARY_MS, NULL) == COLO_FAILOVER_PENDING)
        vm_replication_log(replication, "the primary did not end the VM within %d s", AWAIT_PRIMARY_MS / 1000);
}

bool vm_replication_secondary_without_vm(struct vm_replication *replication)
{
    pthread_mutex_lock(&replication->lock);
    bool without = replication->role == ROLE_SECONDARY && !replication->failover_done;
    pthread_mutex_unlock(&replication->lock);
    return without;
}

void vm_replication_stop_waiting(struct vm_replication *replication)
{
    atomic_store(&replication->stop_waiting, true);
}

bool vm_replication_stopped_waiting(struct vm_replication *replication)
{
    pthread_mutex_lock(&replication->lock);
    bool stopped = replication->stopped_waiting;
    pthread_mutex_unlock(&replication->lock);
    return stopped;
}

/* Asked to stop before a primary came (a quit, a signal)? Then it says so
 * in status and the log. The pairing asks every 50 ms, far below what an
 * operator notices. */
bool vm_replication_waiting_stopped(struct vm_replication *replication)
{
    if (!atomic_load(&replication->stop_waiting) && !vm_control_quit_requested(replication->control))
        return false;
    pthread_mutex_lock(&replication->lock);
    replication->stopped_waiting = true;
    replication->phase = "stopped while waiting";
    snprintf(replication->end_reason, sizeof replication->end_reason, "asked to stop before a primary connected");
    pthread_mutex_unlock(&replication->lock);
    vm_replication_log(replication, "stopped while waiting for a primary (nothing to protect yet)");
    return true;
}
