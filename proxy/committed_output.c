/* The secondary's copy of the primary's held output (committed_output.h). */
#include "committed_output.h"

#include <stdlib.h>
#include <string.h>

#include "machine.h"
#include "stream.h"

static void drop_locked(struct committed_output *output)
{
    for (size_t i = 0; i < output->count; i++)
        free(output->frames[i].data);
    output->count = 0;
}

void committed_output_init(struct committed_output *output, struct machine *machine)
{
    output->machine = machine;
    pthread_mutex_init(&output->lock, NULL);
    output->count = 0;
    output->sent_at_failover = 0;
}

void committed_output_destroy(struct committed_output *output)
{
    pthread_mutex_lock(&output->lock);
    drop_locked(output);
    pthread_mutex_unlock(&output->lock);
    pthread_mutex_destroy(&output->lock);
}

uint64_t committed_output_sent_at_failover(struct committed_output *output)
{
    pthread_mutex_lock(&output->lock);
    uint64_t sent = output->sent_at_failover;
    pthread_mutex_unlock(&output->lock);
    return sent;
}

void committed_output_forget(struct committed_output *output)
{
    pthread_mutex_lock(&output->lock);
    drop_locked(output);
    pthread_mutex_unlock(&output->lock);
}

/* After a checkpoint was applied: the primary's output behind it replaces
 * the previous checkpoint's. The reader checked each record's shape. */
static int committed_load(void *opaque, const struct stream_reader *reader, struct error *err)
{
    (void)err;
    struct committed_output *output = opaque;
    pthread_mutex_lock(&output->lock);
    drop_locked(output);
    size_t cursor = 0, length;
    const uint8_t *body;
    unsigned nic_count = machine_nic_count(output->machine);
    while (stream_received_output_next(reader, &cursor, &body, &length) && output->count < OUTPUT_HELD_FRAMES_MAX) {
        struct stream_output_frame fields;
        stream_output_frame_fields(body, length, &fields);
        uint8_t *copy = fields.nic < nic_count ? malloc(fields.length) : NULL;
        if (!copy)
            continue; /* a NIC this VM does not have (cannot happen: same configuration), or no memory */
        memcpy(copy, fields.frame, fields.length);
        struct held_frame *f = &output->frames[output->count++];
        f->net = machine_nic(output->machine, fields.nic);
        virtio_net_header_decode(fields.header, &f->header);
        f->length = fields.length;
        f->data = copy;
    }
    pthread_mutex_unlock(&output->lock);
    return 0;
}

/* CHECKPOINT_NEW arrived: the primary released the output behind the last
 * checkpoint before it resumed the PVM, so the copy is not needed. */
static int committed_postsuspend(void *opaque)
{
    struct committed_output *output = opaque;
    pthread_mutex_lock(&output->lock);
    drop_locked(output);
    pthread_mutex_unlock(&output->lock);
    return 0;
}

/* The SVM takes over, machine paused, after the announce: the primary's
 * output behind the SVM's last checkpoint, if no CHECKPOINT_NEW since
 * showed that the primary released it (it may have sent some of it before
 * dying: a receiver's TCP drops duplicates). */
static int committed_failover(void *opaque, struct error *err)
{
    (void)err;
    struct committed_output *output = opaque;
    pthread_mutex_lock(&output->lock);
    held_frames_send_and_free(output->frames, output->count);
    output->sent_at_failover = output->count;
    output->count = 0;
    pthread_mutex_unlock(&output->lock);
    return 0;
}

const struct colo_checkpoint_device_ops committed_output_device = {
    .load = committed_load,
    .postsuspend = committed_postsuspend,
    .failover = committed_failover,
};
