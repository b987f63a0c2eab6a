/* COLO for one VM: who may own it when something goes wrong between the
 * two colo processes (../shared/DESIGN.md, "Never two copies"). Both roles
 * start a takeover guard (cluster/takeover_guard.h) per protection: with
 * `--cluster corosync` it joins the Corosync group "colo-NAME" and the
 * verdicts follow membership, quorum and ordered claims; without, a
 * suspicion acts alone, as before, and status says split brain is
 * possible. Here: starting it, its verdicts as actions and events, the
 * secondary's failover gate, the primary's release gate, and status. */
#include "vm_replication_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* The guard's verdict, once final, or a claim it sends, on whichever
 * thread fed it. */
static void on_final(void *opaque, enum takeover_verdict verdict, const char *reason)
{
    struct vm_replication *replication = opaque;
    if (verdict == TAKEOVER_SEND_CLAIM) {
        vm_replication_log(replication, "cluster: %s", reason);
        vm_replication_post_event(replication, "claim sent", reason);
        return;
    }
    pthread_mutex_lock(&replication->lock);
    enum vm_replication_role role = replication->role;
    int replication_fd = replication->replication_fd;
    bool switching_over = replication->switching_over;
    snprintf(replication->decision, sizeof replication->decision, "%s: %s", takeover_verdict_name(verdict), reason);
    pthread_mutex_unlock(&replication->lock);
    /* A switching primary's "stand down" is the secondary's claim taking
     * the VM, as asked: no standing down (its PVM stays paused anyway). */
    bool handed_over = role == ROLE_PRIMARY && switching_over && verdict == TAKEOVER_STAND_DOWN;
    vm_replication_log(replication, "cluster: %s: %s%s", takeover_verdict_name(verdict), reason,
                       handed_over ? " (the switchover's handover)" : "");
    vm_replication_post_event(replication,
                              verdict == TAKEOVER_TAKE_OVER ? "takeover decided"
                              : handed_over                 ? "switchover claimed by the peer"
                                                            : "stood down",
                              reason);
    if (verdict == TAKEOVER_STAND_DOWN && replication->output_initialized)
        output_buffer_mute(&replication->output); /* at once: another copy owns the VM */
    /* Either way the replication ends now, wherever it waits; what happens
     * next is the loops' end paths' (they ask the guard again). */
    if (role == ROLE_SECONDARY && replication->detector_initialized && !switching_over)
        failure_detector_declare_peer_dead(&replication->detector, "cluster: %s", reason);
    else if (role == ROLE_PRIMARY && replication_fd >= 0 && !switching_over)
        shutdown(replication_fd, SHUT_RDWR);
    /* During a switchover the secondary's claim is the handover itself
     * (the PVM is paused and released all it had): the secondary's loop
     * ended already and its answer goes over the connection, which the
     * primary's loop waits on (bounded): neither side cuts it. */
}

static bool may_release(void *opaque)
{
    struct vm_replication *replication = opaque;
    return takeover_guard_may_release(&replication->guard);
}

int vm_replication_guard_start(struct vm_replication *replication, struct error *err)
{
    if (replication->guard_started) {
        takeover_guard_stop(&replication->guard);
        replication->guard_started = false;
    }
    char group[96];
    snprintf(group, sizeof group, "colo-%s", replication->name);
    if (takeover_guard_start(&replication->guard, replication->cluster ? group : NULL, on_final, replication, err) < 0)
        return error_prefix(err, "--cluster corosync");
    vm_replication_mark(replication, &replication->guard_started);
    if (replication->output_initialized)
        output_buffer_set_release_gate(&replication->output, may_release, replication);
    if (replication->cluster) {
        /* The freeze rule's yardstick (corosync_engine.c), so an operator
         * can see which value this process judges by. */
        uint32_t token_ms = replication->guard.engine.token_timeout_ms;
        if (token_ms)
            vm_replication_log(replication,
                               "cluster: joined the Corosync group %s (token timeout %" PRIu32
                               " ms: a pause of this process shorter than that is not a stand-down)",
                               group, token_ms);
        else
            vm_replication_log(replication,
                               "cluster: joined the Corosync group %s (Corosync's token timeout is unreadable: "
                               "any pause of this process over 100 ms makes it stand down on a new ring)",
                               group);
    } else
        vm_replication_log(replication, "WARNING: no cluster configured (--cluster corosync): if the replication link "
                                        "fails while both hosts live, both copies may serve (split brain)");
    return 0;
}

enum takeover_verdict vm_replication_verdict(struct vm_replication *replication, enum takeover_event_kind cause,
                                             char *reason, size_t size)
{
    takeover_guard_report(&replication->guard, cause);
    enum takeover_verdict verdict = takeover_guard_wait(&replication->guard, VM_REPLICATION_VERDICT_TIMEOUT_MS, reason,
                                                        size);
    if (verdict == TAKEOVER_NONE) {
        snprintf(reason, size, "no cluster verdict within %d s (the peer may own the VM): standing down",
                 VM_REPLICATION_VERDICT_TIMEOUT_MS / 1000);
        verdict = TAKEOVER_STAND_DOWN;
    }
    return verdict;
}

bool vm_replication_may_take_over(void *opaque, char *why, size_t size)
{
    struct vm_replication *replication = opaque;
    pthread_mutex_lock(&replication->lock);
    bool stopping = replication->secondary_stopping;
    pthread_mutex_unlock(&replication->lock);
    if (stopping) {
        /* Our own VM is ending: nothing to take over, nothing to claim. */
        snprintf(why, size, "the VM is being stopped here");
        return false;
    }
    char reason[256];
    enum takeover_verdict verdict = vm_replication_verdict(replication, TAKEOVER_EVENT_SUSPICION, reason,
                                                           sizeof reason);
    if (verdict == TAKEOVER_TAKE_OVER)
        return true;
    pthread_mutex_lock(&replication->lock);
    replication->stood_down = true;
    pthread_mutex_unlock(&replication->lock);
    snprintf(why, size, "stood down: %s", reason);
    return false;
}

void vm_replication_cluster_status(struct vm_replication *replication, json_t *fields)
{
    if (!replication->guard_started) {
        json_object_set_new(fields, "cluster", json_pack("{s:s}", "mode", replication->cluster ? "corosync" : "none"));
        return;
    }
    struct takeover_guard_status status;
    takeover_guard_get_status(&replication->guard, &status);
    json_t *cluster;
    if (!status.cluster) {
        cluster = json_pack("{s:s, s:s}", "mode", "none", "warning",
                            "no cluster configured: split brain is possible if the replication link fails "
                            "while both hosts live");
    } else {
        cluster = json_pack("{s:s, s:b, s:i, s:i, s:b, s:I, s:i, s:b, s:I, s:I, s:b, s:I}", "mode", "corosync",
                            "connected", status.engine.connected, "node", (int)status.engine.local_node, "peer_node",
                            (int)status.engine.peer_node, "peer_present", status.engine.peer_present, "ring",
                            (json_int_t)status.engine.ring_id, "ring_members", (int)status.engine.ring_members,
                            "quorate", status.engine.quorate, "quorum_ring", (json_int_t)status.engine.quorum_ring,
                            "epoch", (json_int_t)status.epoch, "frozen", status.frozen, "messages_rejected",
                            (json_int_t)status.engine.messages_rejected);
    }
    if (cluster) {
        json_object_set_new(cluster, "decision", json_string(takeover_verdict_name(status.final)));
        json_object_set_new(cluster, "reason", json_string(status.reason));
        json_object_set_new(fields, "cluster", cluster);
    }
}

void vm_replication_guard_stop(struct vm_replication *replication)
{
    if (!replication->guard_started)
        return;
    takeover_guard_stop(&replication->guard);
    replication->guard_started = false;
}

bool vm_replication_stood_down(struct vm_replication *replication, char *reason, size_t size)
{
    pthread_mutex_lock(&replication->lock);
    bool stood_down = replication->stood_down;
    snprintf(reason, size, "%s", replication->decision);
    pthread_mutex_unlock(&replication->lock);
    return stood_down;
}
