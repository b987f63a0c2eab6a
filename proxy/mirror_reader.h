/* The secondary's side of the mirror: a thread reads the mirror connection
 * (frames and heartbeats, mirror_framing.h), so heartbeats are heard even
 * while the SVM is paused for a checkpoint; frames are queued and the SVM's
 * machine thread delivers them to its NICs (a machine fd watch on an
 * eventfd). What it hears feeds the failure detector, and anything wrong
 * with the connection (closed, broken, not a frame, silence past the
 * timeout) is declared there: the detector decides.
 *
 * A checkpoint device: setup (the SVM built) starts delivering; failover
 * stops the reader, delivers what the primary mirrored before it died, and
 * gives the NICs their own backends (reading, and an announce so the
 * network learns where the MAC lives now). */
#ifndef COLO_PROXY_MIRROR_READER_H
#define COLO_PROXY_MIRROR_READER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint_device.h"
#include "error.h"
#include "heartbeat.h"
#include "mirror_framing.h"
#include "virtio_net.h"

struct machine;

/* Mirrored frames waiting for the SVM's machine thread. */
#define MIRROR_QUEUE_MAX 1024

struct mirrored_frame {
    unsigned nic;
    struct virtio_net_header header;
    size_t length;
    uint8_t *data;
    bool filtered;     /* the inbound filter ran (once only: it rewrites in place) */
    uint64_t sequence; /* the primary's count of this frame: 1 for the first it mirrored */
};

struct mirror_reader_stats {
    uint64_t received, delivered, dropped, heartbeats;
    uint64_t waited_for_room;          /* frames the SVM had no receive buffers for at first: they waited */
    uint64_t already_in_checkpoint;    /* frames dropped: the PVM had them before a checkpoint the SVM holds */
    uint64_t returned, return_dropped; /* the SVM's frames sent back to the primary, or not (socket full) */
};

struct mirror_reader {
    struct machine *machine;
    struct mirror_channel channel; /* the reader thread reads it; the writers write it under write_lock */
    struct failure_detector *detector;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_bool svm_built;  /* after the initial copy: frames go in from now on */
    int frames_ready;       /* eventfd */
    int frames_watch;       /* machine fd watch of frames_ready, or -1 */
    uint8_t *buffer;        /* a partial message, MIRROR_MESSAGE_MAX */
    size_t buffered;        /* buffer is the reader thread's (or failover's, once it ended) */
    bool queued_since_wake; /* take_messages queued a frame: wake the machine thread */
    pthread_mutex_t lock;   /* guards the queue and the counters */
    struct mirrored_frame queue[MIRROR_QUEUE_MAX];
    size_t queued;
    uint64_t received, delivered, dropped;
    /* Frames the SVM had no receive buffers for wait in the queue, in
     * order per NIC, until the guest adds some: the PVM's NIC leaves such
     * frames in its TAP, so dropping them here would make the SVM miss
     * data the PVM got (and acknowledged), a difference for nothing. */
    uint64_t waited_for_room;
    /* Frames the primary mirrored before the latest checkpoint's pause
     * (its MIRRORED record): that checkpoint's state has them, so the SVM
     * must not get them again; counted in already_in_checkpoint. */
    uint64_t in_checkpoint_through;
    uint64_t already_in_checkpoint;
    /* The other direction: heartbeats, the SVM's frames and boundaries. */
    pthread_mutex_t write_lock; /* one writer at a time on the channel */
    atomic_bool write_broken;
    atomic_uint_fast64_t returned, return_dropped;
    atomic_bool returning; /* false once the primary said it compares nothing (--mode buffered) */
    /* Rewrites each mirrored frame before the SVM gets it (the TCP
     * sequence shift); NULL: none. Set before the machine runs. */
    virtio_net_receive_filter inbound_filter;
    void *inbound_filter_opaque;
};

extern const struct colo_checkpoint_device_ops mirror_reader_device;

/* Mutes the machine's NICs (no backend reads: their input comes from the
 * mirror) before it runs. */
int mirror_reader_init(struct mirror_reader *reader, struct machine *machine, struct mirror_channel channel,
                       struct failure_detector *detector, struct error *err);
int mirror_reader_start(struct mirror_reader *reader, struct error *err);
/* Ends and joins the thread (nothing if it is not running). */
void mirror_reader_stop(struct mirror_reader *reader);
/* After the machine is gone. */
void mirror_reader_destroy(struct mirror_reader *reader);
/* Sends one heartbeat back to the primary on the mirror connection (a
 * heartbeat_sender's send_beat; the primary's mirror_sender watch hears
 * it). Never blocks: a full socket skips the beat. */
bool mirror_reader_send_heartbeat(void *reader);
/* The comparing proxy's return path: a frame the SVM sent goes back to
 * the primary (never blocks: a full socket drops it, counted; the primary
 * then times out on its twin and checkpoints). */
void mirror_reader_return_frame(struct mirror_reader *reader, unsigned nic, const struct virtio_net_header *header,
                                const uint8_t *frame, size_t length);
/* The SVM was just built or rebuilt from a checkpoint (it is paused):
 * what it sends from now on belongs to the next epoch. Waits for room up
 * to a second; false: the connection is lost. */
bool mirror_reader_send_boundary(struct mirror_reader *reader);
void mirror_reader_set_inbound_filter(struct mirror_reader *reader, virtio_net_receive_filter filter, void *opaque);
/* Machine thread (or the machine paused): offers the queued frames to the
 * SVM, in order; a NIC without receive buffers keeps its frames queued
 * until the guest adds some. The frames-ready watch and each NIC's
 * receive-room hook (installed by the device's setup) call it. */
void mirror_reader_deliver(struct mirror_reader *reader);
void mirror_reader_get_stats(struct mirror_reader *reader, struct mirror_reader_stats *stats);

#endif
