/* Internal to vm_replication*.c: the replication role of one VM. */
#ifndef COLO_VM_VM_REPLICATION_INTERNAL_H
#define COLO_VM_VM_REPLICATION_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "colo_failover.h"
#include "colo_primary.h"
#include "colo_secondary.h"
#include "committed_output.h"
#include "disk_replication.h"
#include "heartbeat.h"
#include "mirror_reader.h"
#include "mirror_sender.h"
#include "output_buffer.h"
#include "peer_pairing.h"
#include "takeover_guard.h"
#include "vm_replication.h"

/* protect's --interval by mode (vm_replication_handle_protect says why). */
#define VM_REPLICATION_DEFAULT_COMPARE_INTERVAL_MS 1000
#define VM_REPLICATION_DEFAULT_BUFFERED_INTERVAL_MS 100
/* Without the comparing proxy every frame of the PVM waits for the next
 * checkpoint; a held frame asks for one within this (protect
 * --output-delay). 0, at once, measured best for both latency and
 * throughput (docs/benchmarks.md). */
#define VM_REPLICATION_DEFAULT_OUTPUT_DELAY_MS 0
/* How long protect's connections to the secondary may take (protect's
 * connect_timeout_ms): a host that drops packets is named within this,
 * not after the kernel's two minutes of SYN retries. */
#define VM_REPLICATION_DEFAULT_CONNECT_TIMEOUT_MS 10000

/* The most block data a primary's checkpoint epoch copies in memory;
 * blocks beyond are read back from the image at the checkpoint
 * (primary_disk.h). */
#define VM_REPLICATION_DISK_EPOCH_MEMORY (64u << 20)
/* The most of an epoch's writes a secondary's disk buffers in memory; the
 * rest spills to a file beside the image (secondary_disk.h). */
#define VM_REPLICATION_DISK_BUFFER_MEMORY (64u << 20)

/* The heartbeat timeout of a secondary during the initial copy (the
 * configured one applies after it, when a takeover becomes possible). */
#define VM_REPLICATION_INITIAL_COPY_HEARTBEAT_TIMEOUT_MS 10000

/* The longest a side waits for the cluster's verdict once the peer seems
 * gone (with Corosync it comes within a few seconds; none means the peer
 * may own the VM, so the side stands down). */
#define VM_REPLICATION_VERDICT_TIMEOUT_MS 30000
/* Without a cluster the primary acts alone on a silent secondary, and the
 * secondary on a silent primary: the primary is patient (as its message
 * timeout was) so that a scheduling gap does not split the pair. */
#define VM_REPLICATION_NO_CLUSTER_SECONDARY_TIMEOUT_MS 5000

enum vm_replication_role { ROLE_NONE, ROLE_PRIMARY, ROLE_SECONDARY };

struct vm_replication {
    struct vm_control *control;
    char name[64];
    pthread_mutex_t lock; /* guards role, phase, end_reason and the flags below */
    enum vm_replication_role role;
    const char *phase; /* what status says beside the loop's state; NULL: the loop's state */
    char end_reason[512];
    struct machine *machine;
    struct output_buffer output; /* both roles: the transmit hook */
    bool output_initialized;
    /* Who may own the VM (vm_replication_cluster.c): one guard per
     * protection, on both roles. */
    bool cluster; /* --cluster corosync */
    struct takeover_guard guard;
    bool guard_started;
    char decision[300]; /* the last final verdict and why, for status */
    bool stood_down;    /* another copy owns the VM: this one stopped */

    /* Primary. */
    char destination[300];
    unsigned interval_ms;
    unsigned output_delay_ms;
    struct output_compare_options compare_options; /* protect's mode and compare_timeout_ms */
    int connect_timeout_ms;
    /* The secondary took the machine (MIGRATION_MACHINE_ACCEPTED): what
     * `colo protect` waits for. */
    bool initial_copy_started;
    struct colo_primary primary;
    bool primary_initialized;
    int replication_fd, mirror_fd;
    struct mirror_sender mirror;
    bool mirror_initialized;
    struct heartbeat_sender heartbeat;
    /* The secondary's beats, heard on the mirror connection: a hung
     * secondary is suspected within this timeout (protect's
     * heartbeat_timeout_ms) after the initial copy. */
    int secondary_timeout_ms;
    struct failure_detector secondary_detector;
    bool secondary_detector_initialized;
    bool initial_copy_done;
    /* `colo switchover` (vm_replication_primary.c): under way, the
     * secondary's silence and its claim are the handover, not a contest,
     * and the replication connection carries the answer: nothing cuts it
     * (on both roles: the secondary sets it when it takes the switchover);
     * done, this copy stopped for good (the VM runs on the peer). */
    bool switching_over;
    bool switched_over;
    struct disk_replication_primary primary_disks;
    bool primary_disks_initialized;
    /* The last checkpoint's disk part (blocks, bytes), for status. */
    struct primary_disk_checkpoint_report last_disk_report;
    double last_progress_event;  /* the disk sync's, on the primary thread */
    bool disk_sync_start_posted; /* its "disk sync started" event (the plan), on the primary thread */
    pthread_t primary_thread;
    bool primary_thread_joinable;
#ifdef COLO_TEST_HOOKS
    struct colo_primary_kill_hook kill_hook;
#endif

    /* Secondary. */
    int heartbeat_timeout_ms;
    struct failure_detector detector;
    bool detector_initialized;
    struct colo_secondary secondary;
    bool secondary_initialized;
    struct mirror_reader mirror_reader;
    bool mirror_reader_initialized;
    struct heartbeat_sender beats_to_primary;
    struct committed_output committed;
    bool committed_initialized;
    struct disk_replication_secondary secondary_disks;
    bool secondary_disks_initialized;
    struct colo_failover failover;
    bool failover_started;
    bool failover_done, failover_refused;
    bool took_over_by_switchover; /* the failover was the primary's switchover */
    /* The SVM's machine is being stopped here (quit, Ctrl-C): its end is
     * no sign of the primary's death and claims nothing. */
    bool secondary_stopping;

    /* The peer (vm_replication_peer.c): who it must be, the pair of
     * connections, the strangers refused. The strings and counters under
     * lock; credentials, pair and listener are the role's thread's. */
    struct peer_auth_config auth_config;
    struct peer_credentials *credentials; /* loaded at each protect and colo secondary */
    struct peer_pair pair;
    char transport[320]; /* what the credentials are, for status */
    bool authenticated;
    char peer_description[400]; /* who the peer proved to be */
    uint64_t refused[PEER_REFUSAL_KINDS];
    uint64_t refused_during_run;
    char last_refusal[700];
    int listener, listener_stop; /* the secondary's, after the pairing; -1: none */
    pthread_t late_connections;
    bool late_connections_running;

    /* The lifecycle (vm_replication_lifecycle.c). Under lock. */
    bool ending; /* vm_replication_vm_ending: the VM ends on purpose */
    enum colo_ending_reason ending_reason;
    bool primary_ended; /* secondary: the primary ended the VM (no takeover) */
    enum colo_ending_reason primary_ending_reason;
    atomic_bool stop_waiting; /* secondary: asked to end before a primary came */
    bool stopped_waiting;     /* ... and it did */
};

/* Sets one of the flags above under the lock: the control server's thread
 * reads them for status while the other threads set them up. */
void vm_replication_mark(struct vm_replication *replication, bool *flag);
/* A line on stderr: "colo protect|secondary: NAME: ...". */
void vm_replication_log(struct vm_replication *replication, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* An event {"event": "replication", "what": WHAT, "detail": DETAIL}. */
void vm_replication_post_event(struct vm_replication *replication, const char *what, const char *detail);
/* The checkpoint's pre-copy is sent while the PVM runs; the PVM pauses
 * once the primary's flush returns. Whatever still sits in socket buffers
 * then is read by the secondary during the downtime, and loopback TCP
 * buffers grow to megabytes. Small buffers on the replication connection
 * (SO_SNDBUF on the primary, SO_RCVBUF on the secondary) keep that backlog
 * to a few hundred KiB (throughput on a LAN or loopback does not need
 * more). */
#define REPLICATION_SOCKET_BUFFER (256 << 10)
json_t *vm_replication_checkpoint_report_json(const struct colo_checkpoint_report *report);

/* The images' histories (vm_replication_history.c). A secondary, before
 * its initial copy: reads its images' histories for the sync (and logs
 * the unknown ones, with why). */
void vm_replication_read_secondary_histories(struct vm_replication *replication);
/* The disk sync's progress for status (modes, bytes, percent), and one
 * line for the log. */
json_t *vm_replication_disk_sync_json(const struct disk_sync_progress *progress);
void vm_replication_describe_disk_sync(const struct disk_sync_progress *progress, char *text, size_t size);

/* The takeover guard (vm_replication_cluster.c). Starts a new guard for a
 * new protection (stopping the last); logs loudly without a cluster. */
int vm_replication_guard_start(struct vm_replication *replication, struct error *err);
void vm_replication_guard_stop(struct vm_replication *replication);
/* Reports cause (the link lost, the peer silent) and waits for the final
 * verdict; no verdict in time counts as standing down. */
enum takeover_verdict vm_replication_verdict(struct vm_replication *replication, enum takeover_event_kind cause,
                                             char *reason, size_t size);
/* The secondary's failover gate (colo_failover_gate). */
bool vm_replication_may_take_over(void *opaque, char *why, size_t size);
/* The "cluster" status object, lock held. */
void vm_replication_cluster_status(struct vm_replication *replication, json_t *fields);

/* The control commands (vm_replication_primary.c, _secondary.c). */
int vm_replication_handle_protect(void *opaque, const json_t *request, json_t *reply, struct error *err);
int vm_replication_handle_checkpoint(void *opaque, const json_t *request, json_t *reply, struct error *err);
int vm_replication_handle_failover(void *opaque, const json_t *request, json_t *reply, struct error *err);
int vm_replication_handle_switchover(void *opaque, const json_t *request, json_t *reply, struct error *err);
/* The status fields of each role, lock held. */
void vm_replication_primary_status(struct vm_replication *replication, json_t *fields);
void vm_replication_secondary_status(struct vm_replication *replication, json_t *fields);
/* The "tcp_sequence_shift" object of the status (NULL: out of memory). */
json_t *vm_replication_shift_json(const struct tcp_sequence_shift_counters *counters);
/* The lifecycle (vm_replication_lifecycle.c): the primary's stop, on
 * purpose or not (vm_replication_vm_ending); the end_reason and log line
 * of a primary whose loop ended; the secondary's outcome when the primary
 * ended the VM, and its wait for that word when its own guest powered off
 * or rebooted first (the SVM runs the same guest); a waiting secondary's accept that quit and SIGTERM end
 * (-1 with err, or 0 and *fd = -1 when asked to stop). */
void vm_replication_stop_primary_loop(struct vm_replication *replication);
void vm_replication_primary_loop_ended(struct vm_replication *replication, int status, const struct error *err);
void vm_replication_secondary_primary_ended(struct vm_replication *replication,
                                            const struct colo_failover_result *result);
void vm_replication_secondary_await_primary(struct vm_replication *replication);
bool vm_replication_waiting_stopped(struct vm_replication *replication);
/* The peer (vm_replication_peer.c). The primary's two connections to
 * replication->destination; the secondary's wait on address for its
 * primary (0 with replication_fd -1 when asked to stop); closing both
 * (and the secondary's listener); freeing the credentials too; the "peer"
 * status object, lock held. */
int vm_replication_connect_peer(struct vm_replication *replication, struct error *err);
int vm_replication_accept_peer(struct vm_replication *replication, const char *address, struct error *err);
void vm_replication_close_peer(struct vm_replication *replication);
void vm_replication_destroy_peer(struct vm_replication *replication);
void vm_replication_peer_status(struct vm_replication *replication, json_t *fields);
/* Ends the primary's or the secondary's threads (vm_replication_machine_stopped). */
void vm_replication_primary_machine_stopped(struct vm_replication *replication);
void vm_replication_secondary_machine_stopped(struct vm_replication *replication);
/* A secondary's threads end (heartbeat, mirror reader, failover monitor)
 * and its pair closes; safe to call again. */
void vm_replication_secondary_retire(struct vm_replication *replication);

#endif
