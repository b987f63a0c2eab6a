/* The VM's network output while it is replicated: every frame its NICs
 * send passes the transmit hook, which passes it to the backend or holds
 * it.
 *
 * Primary: from the device's setup on, frames are held until the SVM has
 * the checkpoint that follows them (the release phase, after SVM_READY:
 * DESIGN.md's output commit). The PVM may run on while the secondary
 * applies a checkpoint (colo_primary_options.resume_before_ready_bytes), so the
 * checkpoint's pause (postsuspend) marks how many of the held frames are
 * its own, and the release lets out only those. The first frame held
 * after that mark asks the primary's loop for a checkpoint within
 * output_delay_ms; a copy of
 * what is held travels with each checkpoint as OUTPUT records (the save
 * phase), for the secondary to send if the primary dies before releasing.
 *
 * Secondary: the SVM must not talk to the network, but its output since the
 * last checkpoint is what the VM said in the timeline the SVM continues
 * after a failover: dropped when the next checkpoint replaces that timeline
 * (preresume), sent when the SVM takes over (failover; so a client waiting
 * for a reply the dead primary held gets it at once, not at its next TCP
 * retransmission).
 *
 * Bounded: a secondary that stops answering costs dropped frames (counted;
 * TCP retransmits them), not host memory. */
#ifndef COLO_PROXY_OUTPUT_BUFFER_H
#define COLO_PROXY_OUTPUT_BUFFER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint_device.h"
#include "virtio_net.h"

struct machine;
struct colo_primary;

#define OUTPUT_HELD_FRAMES_MAX 8192
#define OUTPUT_HELD_BYTES_MAX (64u << 20)

struct held_frame {
    struct virtio_net *net;
    struct virtio_net_header header;
    size_t length;
    uint8_t *data;
};

struct output_buffer_stats {
    uint64_t held_now, held_total, released_total, dropped_full;
    uint64_t dropped_by_checkpoint; /* secondary: SVM frames a checkpoint made void */
    uint64_t released_at_failover;  /* secondary: SVM frames sent at the failover */
    uint64_t releases_refused;      /* primary: releases the gate said no to */
    uint64_t dropped_muted;         /* frames dropped after output_buffer_mute */
};

struct output_buffer {
    struct machine *machine;
    pthread_mutex_t lock; /* guards everything below */
    bool holding;
    struct colo_primary *primary; /* primary: asked for checkpoints; NULL on a secondary */
    unsigned output_delay_ms;
    bool muted; /* stood down: nothing leaves, ever */
    /* Asked right before each release on a primary (the cluster's word:
     * takeover_guard_may_release); NULL: always. */
    bool (*may_release)(void *opaque);
    void *may_release_opaque;
    struct held_frame held[OUTPUT_HELD_FRAMES_MAX];
    size_t held_count, held_bytes;
    /* Primary: of the held frames, how many the checkpoint in progress
     * covers (set at its pause; the rest came after the PVM resumed). */
    size_t checkpoint_frames;
    struct output_buffer_stats stats;
};

/* The primary's device (setup: hold; postsuspend: mark; save: OUTPUT
 * records; release) and the
 * secondary's (preresume: drop; failover: send and pass). */
extern const struct colo_checkpoint_device_ops output_buffer_primary_device;
extern const struct colo_checkpoint_device_ops output_buffer_secondary_device;

/* Installs the transmit hook on every NIC (with the machine paused or not
 * yet running). holding: hold from now on (a secondary: at once); else
 * pass until the primary's device setup. */
void output_buffer_init(struct output_buffer *buffer, struct machine *machine, bool holding);
/* Primary: the loop asked for checkpoints by held output (before setup). */
void output_buffer_set_primary(struct output_buffer *buffer, struct colo_primary *primary, unsigned output_delay_ms);
/* Primary: a release whose gate says no keeps the frames held (they leave
 * with a later release once the gate agrees, or never). */
void output_buffer_set_release_gate(struct output_buffer *buffer, bool (*may_release)(void *opaque), void *opaque);
/* Sends what is held (in order) and passes frames from now on: the end of
 * protection on a primary. */
void output_buffer_release_and_pass(struct output_buffer *buffer);
/* Drops what is held and every frame from now on: a copy that stood down
 * (another one owns the VM) must never be heard again. */
void output_buffer_mute(struct output_buffer *buffer);
/* Frees what is held; the hooks stay installed and pass frames. */
void output_buffer_destroy(struct output_buffer *buffer);
void output_buffer_get_stats(struct output_buffer *buffer, struct output_buffer_stats *stats);

/* Sends frames to their NICs' backends, in order, and frees them. */
void held_frames_send_and_free(struct held_frame *frames, size_t count);

#endif
