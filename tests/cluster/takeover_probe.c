/* A stand-in for one colo process in the Corosync lab: it runs a takeover
 * guard in a Corosync group and does on stdin's word what the replication
 * does (tests/cluster/corosync_takeover_test.sh).
 *
 * stdin, one word per line:
 *   link | suspect   report the link lost / the heartbeat silent
 *   status           print the guard's status
 *   release          print whether it may release output now
 *   quit             leave the group and exit
 * stdout: "ready node N pid P", "final VERDICT ms=T at=S: REASON" (T: milliseconds
 * since the last report, or since start; S: the wall clock, seconds),
 * "status ...", "release yes|no". */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "takeover_guard.h"

static double reported_at;

static void on_final(void *opaque, enum takeover_verdict verdict, const char *reason)
{
    (void)opaque;
    if (verdict == TAKEOVER_SEND_CLAIM) {
        printf("claim: %s\n", reason);
        return;
    }
    printf("final %s ms=%.0f at=%.3f: %s\n", verdict == TAKEOVER_TAKE_OVER ? "take-over" : "stand-down",
           (clock_monotonic_seconds() - reported_at) * 1000, (double)clock_realtime_ns() / 1e9, reason);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: takeover_probe GROUP\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    reported_at = clock_monotonic_seconds();
    struct takeover_guard guard;
    struct error err;
    if (takeover_guard_start(&guard, argv[1], on_final, NULL, &err) < 0) {
        printf("error %s\n", err.message);
        return 1;
    }
    struct takeover_guard_status status;
    takeover_guard_get_status(&guard, &status);
    printf("ready node %u pid %d\n", status.engine.local_node, (int)getpid());
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (strcmp(line, "link") == 0 || strcmp(line, "suspect") == 0) {
            reported_at = clock_monotonic_seconds();
            takeover_guard_report(&guard,
                                  strcmp(line, "link") == 0 ? TAKEOVER_EVENT_LINK_LOST : TAKEOVER_EVENT_SUSPICION);
        } else if (strcmp(line, "status") == 0) {
            takeover_guard_get_status(&guard, &status);
            printf("status node=%u peer=%u peer_present=%d ring=%llu members=%u quorate=%d quorum_ring=%llu "
                   "epoch=%llu frozen=%d final=%s sent=%llu delivered=%llu\n",
                   status.engine.local_node, status.engine.peer_node, status.engine.peer_present,
                   (unsigned long long)status.engine.ring_id, status.engine.ring_members, status.engine.quorate,
                   (unsigned long long)status.engine.quorum_ring, (unsigned long long)status.epoch, status.frozen,
                   takeover_verdict_name(status.final), (unsigned long long)status.engine.messages_sent,
                   (unsigned long long)status.engine.messages_delivered);
        } else if (strcmp(line, "release") == 0) {
            printf("release %s\n", takeover_guard_may_release(&guard) ? "yes" : "no");
        } else if (strcmp(line, "quit") == 0) {
            break;
        }
    }
    takeover_guard_stop(&guard);
    return 0;
}
