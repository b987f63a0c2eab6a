/* The VM's network output while it is replicated (output_buffer.h). */
#include "output_buffer.h"

#include <stdlib.h>
#include <string.h>

#include "colo_primary.h"
#include "machine.h"
#include "stream.h"

void held_frames_send_and_free(struct held_frame *frames, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        virtio_net_transmit_to_backend(NULL, frames[i].net, &frames[i].header, frames[i].data, frames[i].length);
        free(frames[i].data);
    }
}

/* Machine thread: every frame the guest sends. */
static void transmit_frame(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                           const uint8_t *frame, size_t length)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    if (buffer->muted) {
        buffer->stats.dropped_muted++;
    } else if (!buffer->holding) {
        virtio_net_transmit_to_backend(NULL, net, header, frame, length);
    } else {
        uint8_t *copy = buffer->held_count < OUTPUT_HELD_FRAMES_MAX &&
                                buffer->held_bytes + length <= OUTPUT_HELD_BYTES_MAX
                            ? malloc(length)
                            : NULL;
        if (copy) {
            memcpy(copy, frame, length);
            buffer->held[buffer->held_count++] = (struct held_frame){ net, *header, length, copy };
            buffer->held_bytes += length;
            buffer->stats.held_total++;
            /* The first frame held since the last checkpoint's pause: it
             * may wait at most output_delay_ms for the checkpoint that lets
             * it out. */
            if (buffer->held_count == buffer->checkpoint_frames + 1 && buffer->primary)
                colo_primary_request_checkpoint_within(buffer->primary, buffer->output_delay_ms);
        } else {
            buffer->stats.dropped_full++;
        }
    }
    pthread_mutex_unlock(&buffer->lock);
}

/* Lock held: the first `count` held frames leave, the others move up. The
 * machine is paused, or its thread waits on the lock in the hook, so the
 * NICs are not used concurrently. */
static size_t release_first_locked(struct output_buffer *buffer, size_t count)
{
    size_t bytes = 0;
    for (size_t i = 0; i < count; i++)
        bytes += buffer->held[i].length;
    held_frames_send_and_free(buffer->held, count);
    memmove(buffer->held, buffer->held + count, (buffer->held_count - count) * sizeof buffer->held[0]);
    buffer->stats.released_total += count;
    buffer->held_count -= count;
    buffer->held_bytes -= bytes;
    buffer->checkpoint_frames = 0;
    return count;
}

static size_t release_locked(struct output_buffer *buffer)
{
    return release_first_locked(buffer, buffer->held_count);
}

void output_buffer_init(struct output_buffer *buffer, struct machine *machine, bool holding)
{
    buffer->machine = machine;
    pthread_mutex_init(&buffer->lock, NULL);
    buffer->holding = holding;
    buffer->primary = NULL;
    buffer->output_delay_ms = 0;
    buffer->muted = false;
    buffer->may_release = NULL;
    buffer->may_release_opaque = NULL;
    buffer->held_count = buffer->held_bytes = buffer->checkpoint_frames = 0;
    memset(&buffer->stats, 0, sizeof buffer->stats);
    /* takes_offloads: the hook forwards the guest's frames with their
     * headers to a vnet-header backend, so both sides offer what a plain
     * TAP would, and the PVM's and the SVM's negotiated features match. */
    for (unsigned i = 0; i < machine_nic_count(machine); i++)
        virtio_net_set_transmit_hook(machine_nic(machine, i), transmit_frame, buffer, true);
}

void output_buffer_set_primary(struct output_buffer *buffer, struct colo_primary *primary, unsigned output_delay_ms)
{
    pthread_mutex_lock(&buffer->lock);
    buffer->primary = primary;
    buffer->output_delay_ms = output_delay_ms;
    pthread_mutex_unlock(&buffer->lock);
}

void output_buffer_set_release_gate(struct output_buffer *buffer, bool (*may_release)(void *opaque), void *opaque)
{
    pthread_mutex_lock(&buffer->lock);
    buffer->may_release = may_release;
    buffer->may_release_opaque = opaque;
    pthread_mutex_unlock(&buffer->lock);
}

void output_buffer_mute(struct output_buffer *buffer)
{
    pthread_mutex_lock(&buffer->lock);
    buffer->stats.dropped_muted += buffer->held_count;
    for (size_t i = 0; i < buffer->held_count; i++)
        free(buffer->held[i].data);
    buffer->held_count = buffer->held_bytes = buffer->checkpoint_frames = 0;
    buffer->muted = true;
    buffer->primary = NULL;
    pthread_mutex_unlock(&buffer->lock);
}

void output_buffer_release_and_pass(struct output_buffer *buffer)
{
    pthread_mutex_lock(&buffer->lock);
    if (!buffer->muted)
        release_locked(buffer);
    buffer->holding = false;
    buffer->primary = NULL;
    pthread_mutex_unlock(&buffer->lock);
}

void output_buffer_destroy(struct output_buffer *buffer)
{
    pthread_mutex_lock(&buffer->lock);
    for (size_t i = 0; i < buffer->held_count; i++)
        free(buffer->held[i].data);
    buffer->held_count = buffer->held_bytes = buffer->checkpoint_frames = 0;
    buffer->holding = false;
    buffer->primary = NULL;
    pthread_mutex_unlock(&buffer->lock);
}

void output_buffer_get_stats(struct output_buffer *buffer, struct output_buffer_stats *stats)
{
    pthread_mutex_lock(&buffer->lock);
    *stats = buffer->stats;
    stats->held_now = buffer->held_count;
    pthread_mutex_unlock(&buffer->lock);
}

/* ---- the primary's device ---- */

/* After the initial copy, the PVM paused and the SVM built: hold from now. */
static int primary_setup(void *opaque)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    buffer->holding = true;
    pthread_mutex_unlock(&buffer->lock);
    return 0;
}

/* The PVM just paused for a checkpoint: what is held now is what this
 * checkpoint lets out (the PVM may resume before its release). */
static int primary_postsuspend(void *opaque)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    buffer->checkpoint_frames = buffer->held_count;
    pthread_mutex_unlock(&buffer->lock);
    return 0;
}

/* PVM paused, inside the checkpoint: a copy of what is held goes to the
 * secondary with it. */
static int primary_save(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct output_buffer *buffer = opaque;
    int result = 0;
    pthread_mutex_lock(&buffer->lock);
    for (size_t i = 0; i < buffer->held_count && result == 0; i++) {
        struct held_frame *f = &buffer->held[i];
        int nic = machine_nic_index(buffer->machine, f->net);
        uint8_t header[VIRTIO_NET_HEADER_SIZE];
        virtio_net_header_encode(&f->header, header);
        result = stream_write_output(writer, nic < 0 ? 0 : (uint32_t)nic, header, f->data, f->length, err);
    }
    pthread_mutex_unlock(&buffer->lock);
    return result;
}

/* The SVM has applied the checkpoint: what the PVM sent before its pause
 * may leave now (not what it sent since, if it runs again). */
static void primary_release(void *opaque)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    /* Asked at the last moment: a process that was stopped between the
     * SVM's READY and here may no longer own the VM. */
    if (buffer->muted || (buffer->may_release && !buffer->may_release(buffer->may_release_opaque)))
        buffer->stats.releases_refused++;
    else
        release_first_locked(buffer, buffer->checkpoint_frames);
    pthread_mutex_unlock(&buffer->lock);
}

const struct colo_checkpoint_device_ops output_buffer_primary_device = {
    .setup = primary_setup,
    .postsuspend = primary_postsuspend,
    .save = primary_save,
    .release = primary_release,
};

/* ---- the secondary's device ---- */

/* The checkpoint has been applied: what the SVM sent before it belongs to
 * a timeline that is gone. (The SVM is paused: nothing transmits now.) */
static int secondary_preresume(void *opaque)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    for (size_t i = 0; i < buffer->held_count; i++)
        free(buffer->held[i].data);
    buffer->stats.dropped_by_checkpoint += buffer->held_count;
    buffer->held_count = 0;
    buffer->held_bytes = 0;
    pthread_mutex_unlock(&buffer->lock);
    return 0;
}

/* The SVM takes over (machine paused; after the committed output of the
 * primary, which is older): what it said since the last checkpoint goes
 * out, and everything after it. */
static int secondary_failover(void *opaque, struct error *err)
{
    (void)err;
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    buffer->stats.released_at_failover = release_locked(buffer);
    buffer->holding = false;
    pthread_mutex_unlock(&buffer->lock);
    return 0;
}

const struct colo_checkpoint_device_ops output_buffer_secondary_device = {
    .preresume = secondary_preresume,
    .failover = secondary_failover,
};
