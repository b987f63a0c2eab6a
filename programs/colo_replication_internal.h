/* Internal to the colo program's COLO wiring (colo_replication*.c): the one
 * replication of this process, its constants and the helpers the primary,
 * the secondary and the common parts share. */
#ifndef COLO_PROGRAMS_COLO_REPLICATION_INTERNAL_H
#define COLO_PROGRAMS_COLO_REPLICATION_INTERNAL_H

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "colo_primary.h"
#include "colo_secondary.h"
#include "control_client.h"
#include "live_migration.h"
#include "socket.h"
#include "virtio_net.h"

#include "colo_replication.h"

/* ---- the mirror connection's framing -------------------------------------
 *
 * Primary -> secondary, one message per frame the PVM read from its TAP:
 *   u32 little-endian word: bits 0..23 the frame's length, bits 24..31 the
 *       NIC's index (a frame is at most VIRTIO_NET_MAX_FRAME < 2^24 bytes)
 *   the frame
 *   the 12-byte virtio-net header the TAP gave with it (wire form)
 * A word of 0 (no frame, no header) is a heartbeat: the primary sends one
 * every HEARTBEAT_INTERVAL_MS, whatever else it sends, and a secondary that
 * hears nothing for its heartbeat timeout takes the primary for dead. The
 * mirror connection carries it (not the replication connection) because
 * that one is silent for as long as a checkpoint interval or busy for as
 * long as a checkpoint, while a heartbeat must keep its pace. */
#define HEARTBEAT_INTERVAL_MS 20
#define MIRROR_WORD_SIZE 4
#define MIRROR_LENGTH_MASK 0xffffffu
#define MIRROR_MESSAGE_MAX (MIRROR_WORD_SIZE + VIRTIO_NET_MAX_FRAME + VIRTIO_NET_HEADER_SIZE)

/* The PVM's held output: bounded, so a secondary that stops answering
 * costs dropped frames (counted; TCP retransmits them), not host memory. */
#define HELD_FRAMES_MAX 8192
#define HELD_BYTES_MAX (64u << 20)
/* Without the comparing proxy every frame of the PVM waits for the next
 * checkpoint; a held frame asks for one within this (protect
 * --output-delay). 0, at once, measured best for both latency and
 * throughput (docs/benchmarks.md). */
#define COLO_DEFAULT_OUTPUT_DELAY_MS 0
/* Mirrored frames waiting for the SVM's machine thread. */
#define MIRROR_QUEUE_MAX 1024

struct mirrored_frame {
    unsigned nic;
    struct virtio_net_header header;
    size_t length;
    uint8_t *data;
};

/* What the transmit hook does with a frame the guest sent. */
enum nic_mode {
    NIC_PASS,                           /* to the TAP (no replication, or the primary lost its secondary) */
    /* Queue the frames. Primary: until the SVM has the checkpoint that
     * follows them (then released). Secondary: the SVM must not talk to
     * the network, but its output since the last checkpoint is what the
     * VM said in the timeline the SVM continues after a failover: dropped
     * when the next checkpoint replaces that timeline, sent when the SVM
     * takes over (so a client waiting for a reply the dead primary held
     * gets it at once, not at its next TCP retransmission). */
    NIC_HOLD,
};

struct held_frame {
    struct virtio_net *net;
    struct virtio_net_header header;
    size_t length;
    uint8_t *data;
};

enum role { ROLE_NONE, ROLE_PRIMARY, ROLE_SECONDARY };

/* One per process: a colo process runs one VM, which is at most one side
 * of one replication. */
struct replication {
    struct vm_control *control;
    char name[64];
    pthread_mutex_t lock;               /* guards everything below but the atomics */
    enum role role;
    const char *phase;                  /* what status says beside the loop's state */
    struct machine *machine;

    /* Both sides: the transmit hook. */
    enum nic_mode nic_mode;
    struct held_frame held[HELD_FRAMES_MAX];
    size_t held_count, held_bytes;
    uint64_t held_total, released_total, dropped_held;
    uint64_t dropped_secondary;         /* SVM frames a checkpoint made void */
    uint64_t svm_output_released;       /* SVM frames sent at the failover */
    /* Secondary: the output the primary held behind the last applied
     * checkpoint (its OUTPUT records). The primary releases it after
     * SVM_READY; if it dies first, the failover sends it. The next
     * CHECKPOINT_NEW proves it was released: then it is dropped. */
    struct held_frame committed[HELD_FRAMES_MAX];
    size_t committed_count;
    uint64_t pvm_output_released;       /* of those, sent at the failover */

    /* Primary. */
    char destination[300];
    unsigned interval_ms;
    unsigned output_delay_ms;           /* held output asks for a checkpoint within this */
    struct colo_primary primary;
    bool primary_initialized;
    int replication_fd, mirror_fd;
    pthread_mutex_t mirror_lock;        /* one writer at a time on mirror_fd: frames and heartbeats */
    atomic_bool mirroring;              /* the SVM exists: send it the PVM's input */
    atomic_bool mirror_broken;          /* a write failed: stop writing (the loop notices the loss) */
    atomic_uint_fast64_t mirrored_frames, mirror_dropped;
    pthread_t primary_thread;
    pthread_t heartbeat_thread;
    atomic_bool heartbeat_stop;

    /* Secondary. */
    struct colo_secondary secondary;
    bool secondary_initialized;
    int heartbeat_timeout_ms;
    /* The mirror reader thread reads mirror_fd (frames and heartbeats),
     * queues frames and wakes the SVM's machine thread through
     * frames_ready (a machine fd watch), which delivers them. */
    pthread_t mirror_reader;
    atomic_bool svm_built;              /* after the initial copy: frames go in from now on */
    atomic_bool reader_stop;
    int frames_ready;                   /* eventfd */
    int frames_watch;                   /* machine fd watch of frames_ready, or -1 */
    uint8_t *mirror_buffer;             /* a partial message, MIRROR_MESSAGE_MAX */
    size_t mirror_buffered;
    struct mirrored_frame queue[MIRROR_QUEUE_MAX];   /* under lock */
    size_t queued;
    uint64_t mirror_received, mirror_delivered, mirror_queue_dropped;   /* under lock */
    uint64_t heartbeats_received;
    bool failover_done, failover_refused;
    pthread_cond_t failover_finished;
    char end_reason[512];
    pthread_t monitor_thread;
    bool monitor_joinable;
};

/* The one replication of this process (colo_replication.c). */
extern struct replication the_replication;

/* A line on stderr: "colo protect|secondary: NAME: ...". */
void replication_log(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* An event {"event": "replication", "what": WHAT, "detail": DETAIL}. */
void replication_post_event(const char *what, const char *detail);
json_t *replication_checkpoint_report_json(const struct colo_checkpoint_report *report);
/* The transmit hook on every NIC of the machine (both roles). */
void replication_install_transmit_hooks(struct replication *r, struct machine *machine);
/* Sends the held frames to their TAPs in order (r->lock held). */
void replication_release_held_locked(struct replication *r);
/* Small socket buffers on the replication connection (SO_SNDBUF on the
 * primary, SO_RCVBUF on the secondary). */
void replication_limit_in_flight(int fd, int option);

/* Control commands: protect and checkpoint (colo_replication_primary.c),
 * failover (colo_replication_secondary.c). */
int replication_handle_protect(void *opaque, const json_t *request, json_t *reply, struct error *err);
int replication_handle_checkpoint(void *opaque, const json_t *request, json_t *reply, struct error *err);
int replication_handle_failover(void *opaque, const json_t *request, json_t *reply, struct error *err);

#endif
