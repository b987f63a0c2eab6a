/* The primary's side of the mirror: every frame the PVM reads from its
 * network backend goes to the SVM too, over the mirror connection
 * (mirror_framing.h), and the heartbeat shares that connection. A checkpoint
 * device: its setup (after the initial copy, the SVM built) starts the
 * mirroring. */
#ifndef COLO_PROXY_MIRROR_SENDER_H
#define COLO_PROXY_MIRROR_SENDER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint_device.h"
#include "mirror_framing.h"

struct machine;

struct failure_detector;
struct virtio_net_header;

/* A frame the SVM sent, which the secondary returned on the mirror. */
typedef void (*mirror_secondary_frame_fn)(void *opaque, unsigned nic, const struct virtio_net_header *header,
                                          const uint8_t *frame, size_t length);

struct mirror_sender {
    struct machine *machine;
    struct mirror_channel channel; /* the watch thread reads it; the writers write it under lock */
    /* The watch: the secondary's beats coming back on the connection. */
    struct failure_detector *detector;
    atomic_bool watch_stop;
    pthread_t watch_thread;
    bool watching;
    atomic_uint_fast64_t beats_heard;
    atomic_uint_fast64_t boundaries_heard, secondary_frames;
    /* Where the SVM's frames and checkpoint boundaries go (the watch
     * thread calls them): the comparing proxy. NULL: dropped. */
    mirror_secondary_frame_fn secondary_frame;
    void (*secondary_boundary)(void *opaque);
    void *secondary_opaque;
    uint8_t *watch_buffer; /* a partial message, MIRROR_MESSAGE_MAX; the watch thread's */
    size_t watch_buffered;
    pthread_mutex_t lock;       /* one writer at a time on the channel: frames and heartbeats */
    atomic_bool mirroring;      /* the SVM exists: send it the PVM's input */
    atomic_bool broken;         /* a write failed: stop writing (the loop notices the loss) */
    bool keep_secondary_output; /* mirror_sender_keep_secondary_output was called */
    atomic_uint_fast64_t frames, dropped;
};

/* The device: setup starts the mirroring. */
extern const struct colo_checkpoint_device_ops mirror_sender_device;

/* Observes every NIC's backend input (machine paused by the caller or not
 * yet running); nothing is sent before the device's setup. */
void mirror_sender_init(struct mirror_sender *sender, struct machine *machine, struct mirror_channel channel);
void mirror_sender_destroy(struct mirror_sender *sender);
/* Sends one heartbeat (cluster/heartbeat.h's send_beat). */
bool mirror_sender_send_heartbeat(void *sender);
/* No more frames (the end of protection). */
void mirror_sender_stop(struct mirror_sender *sender);
/* The other direction: the secondary sends its own heartbeats back on the
 * mirror connection (mirror_reader_send_heartbeat), so the primary learns
 * of a hung secondary within the detector's timeout instead of blocking
 * in a checkpoint. Starts a thread that reads them, tells the detector
 * what it hears, checks it every few ms, and declares the secondary dead
 * when the connection closes or carries anything but messages. The SVM's
 * frames and boundaries that come back on it go to the functions set by
 * mirror_sender_set_secondary_output (before the watch starts). */
int mirror_sender_watch_start(struct mirror_sender *sender, struct failure_detector *detector, struct error *err);
void mirror_sender_watch_stop(struct mirror_sender *sender);
void mirror_sender_set_secondary_output(struct mirror_sender *sender, mirror_secondary_frame_fn frame,
                                        void (*boundary)(void *opaque), void *opaque);
/* Nothing will be compared (--mode buffered): the device's setup asks the
 * secondary to keep the SVM's frames (MIRROR_NO_RETURN_NIC), which saves
 * sending the SVM's whole output back. Before the setup. */
void mirror_sender_keep_secondary_output(struct mirror_sender *sender);

#endif
