/* The secondary's side of the mirror (mirror_reader.h). */
#include "mirror_reader.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "machine.h"
#include "mirror_framing.h"
#include "stream.h"

/* One message from the primary: a heartbeat is only heard, a frame is
 * queued for the SVM once it exists, "keep the SVM's frames" ends their
 * return; a boundary is the secondary's word, never the primary's. */
static bool take_message(void *opaque, const struct mirror_message *message)
{
    struct mirror_reader *reader = opaque;
    if (message->no_return) {
        atomic_store(&reader->returning, false);
        return true;
    }
    if (message->heartbeat) {
        failure_detector_heard(reader->detector, true);
        return true;
    }
    if (message->boundary)
        return false;
    pthread_mutex_lock(&reader->lock);
    reader->received++;
    if (reader->received <= reader->in_checkpoint_through) {
        reader->already_in_checkpoint++;
        pthread_mutex_unlock(&reader->lock);
        return true;
    }
    uint8_t *copy = atomic_load(&reader->svm_built) && reader->queued < MIRROR_QUEUE_MAX ? malloc(message->length)
                                                                                         : NULL;
    if (copy) {
        memcpy(copy, message->frame, message->length);
        reader->queue[reader->queued++] = (struct mirrored_frame){
            .nic = message->nic,
            .header = message->header,
            .length = message->length,
            .data = copy,
            .sequence = reader->received,
        };
        reader->queued_since_wake = true;
    } else {
        reader->dropped++;
    }
    pthread_mutex_unlock(&reader->lock);
    return true;
}

/* Takes the whole messages out of the buffer and wakes the machine
 * thread for the frames. Returns false when the buffer holds something
 * that is not a message. */
static bool take_messages(struct mirror_reader *reader)
{
    reader->queued_since_wake = false;
    bool ok = mirror_take_messages(reader->buffer, &reader->buffered, machine_nic_count(reader->machine), take_message,
                                   reader);
    if (reader->queued_since_wake) {
        uint64_t one = 1;
        ssize_t ignored = write(reader->frames_ready, &one, sizeof one);
        (void)ignored;
    }
    return ok;
}

/* Its own thread: ends on the peer's death (declared here or elsewhere),
 * or at stop. */
static void *reader_thread(void *opaque)
{
    pthread_setname_np(pthread_self(), "mirror-reader");
    struct mirror_reader *reader = opaque;
    struct failure_detector *detector = reader->detector;
    failure_detector_heard(detector, false);
    while (!atomic_load(&reader->stop)) {
        int ready = mirror_channel_wait_readable(&reader->channel, HEARTBEAT_INTERVAL_MS);
        if (ready < 0 && errno != EINTR) {
            failure_detector_declare_peer_dead(detector,
                                               "cannot poll the mirror connection; taking the primary for lost");
            return NULL;
        }
        if (ready <= 0) {
            if (failure_detector_check(detector))
                return NULL;
            continue;
        }
        ssize_t got = mirror_channel_receive(&reader->channel, reader->buffer + reader->buffered,
                                             MIRROR_MESSAGE_MAX - reader->buffered);
        if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (got <= 0) {
            if (!atomic_load(&reader->stop))
                failure_detector_declare_peer_dead(detector, got == 0 ? "the primary closed the mirror connection"
                                                                      : "the mirror connection broke");
            return NULL;
        }
        failure_detector_heard(detector, false);
        reader->buffered += (size_t)got;
        if (!take_messages(reader)) {
            failure_detector_declare_peer_dead(detector, "the mirror connection carried something that is not a frame");
            return NULL;
        }
    }
    return NULL;
}

_Static_assert(MACHINE_MAX_NICS <= 32, "mirror_reader_deliver keeps a bit per NIC");

/* Machine thread: offers the queued frames to the SVM, in order; a NIC
 * without receive buffers keeps its frames (and those after them) queued
 * until the guest adds some (on_room). */
void mirror_reader_deliver(struct mirror_reader *reader)
{
    pthread_mutex_lock(&reader->lock);
    unsigned full_nics = 0; /* bit per NIC that had no room */
    size_t kept = 0;
    for (size_t i = 0; i < reader->queued; i++) {
        struct mirrored_frame f = reader->queue[i];
        if (!(full_nics & (1u << f.nic))) {
            if (reader->inbound_filter && !f.filtered)
                reader->inbound_filter(reader->inbound_filter_opaque, &f.header, f.data, f.length);
            f.filtered = true;
            enum virtio_net_offer_result result = virtio_net_offer_frame(machine_nic(reader->machine, f.nic), &f.header,
                                                                         f.data, f.length);
            if (result != VIRTIO_NET_OFFER_NO_ROOM) {
                if (result == VIRTIO_NET_OFFER_DELIVERED)
                    reader->delivered++;
                free(f.data);
                continue;
            }
            full_nics |= 1u << f.nic;
            reader->waited_for_room++;
        }
        reader->queue[kept++] = f;
    }
    reader->queued = kept;
    pthread_mutex_unlock(&reader->lock);
}

static void on_frames_ready(void *opaque)
{
    struct mirror_reader *reader = opaque;
    uint64_t count;
    ssize_t ignored = read(reader->frames_ready, &count, sizeof count);
    (void)ignored;
    mirror_reader_deliver(reader);
}

/* Machine thread: the guest added receive buffers. */
static void on_room(void *opaque)
{
    mirror_reader_deliver(opaque);
}

int mirror_reader_init(struct mirror_reader *reader, struct machine *machine, struct mirror_channel channel,
                       struct failure_detector *detector, struct error *err)
{
    memset(reader, 0, sizeof *reader);
    reader->machine = machine;
    reader->channel = channel;
    reader->detector = detector;
    reader->frames_watch = -1;
    atomic_init(&reader->stop, false);
    atomic_init(&reader->svm_built, false);
    pthread_mutex_init(&reader->lock, NULL);
    pthread_mutex_init(&reader->write_lock, NULL);
    atomic_init(&reader->write_broken, false);
    atomic_init(&reader->returned, 0);
    atomic_init(&reader->return_dropped, 0);
    atomic_init(&reader->returning, true);
    reader->frames_ready = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (reader->frames_ready < 0)
        return error_set_errno(err, "cannot create an eventfd");
    reader->buffer = malloc(MIRROR_MESSAGE_MAX);
    if (!reader->buffer)
        return error_set(err, "out of memory");
    for (unsigned i = 0; i < machine_nic_count(machine); i++)
        virtio_net_set_backend_receive(machine_nic(machine, i), false);
    return 0;
}

int mirror_reader_start(struct mirror_reader *reader, struct error *err)
{
    int failed = pthread_create(&reader->thread, NULL, reader_thread, reader);
    if (failed)
        return error_set(err, "cannot start the mirror reader thread: %s", strerror(failed));
    reader->started = true;
    return 0;
}

void mirror_reader_stop(struct mirror_reader *reader)
{
    if (!reader->started)
        return;
    atomic_store(&reader->stop, true);
    pthread_join(reader->thread, NULL);
    reader->started = false;
}

void mirror_reader_destroy(struct mirror_reader *reader)
{
    mirror_reader_stop(reader);
    for (size_t i = 0; i < reader->queued; i++)
        free(reader->queue[i].data);
    reader->queued = 0;
    free(reader->buffer);
    reader->buffer = NULL;
    if (reader->frames_ready >= 0)
        close(reader->frames_ready);
    reader->frames_ready = -1;
    pthread_mutex_destroy(&reader->lock);
    pthread_mutex_destroy(&reader->write_lock);
}

void mirror_reader_get_stats(struct mirror_reader *reader, struct mirror_reader_stats *stats)
{
    pthread_mutex_lock(&reader->lock);
    *stats = (struct mirror_reader_stats){
        .received = reader->received,
        .delivered = reader->delivered,
        .dropped = reader->dropped,
        .waited_for_room = reader->waited_for_room,
        .already_in_checkpoint = reader->already_in_checkpoint,
        .heartbeats = failure_detector_heartbeats(reader->detector),
        .returned = atomic_load(&reader->returned),
        .return_dropped = atomic_load(&reader->return_dropped),
    };
    pthread_mutex_unlock(&reader->lock);
}

/* Setup runs with the SVM paused and built: mirrored frames go in only
 * once there is a VM. */
static int mirror_reader_setup(void *opaque)
{
    struct mirror_reader *reader = opaque;
    reader->frames_watch = machine_watch_fd(reader->machine, reader->frames_ready, on_frames_ready, reader);
    if (reader->frames_watch < 0)
        return -1;
    for (unsigned i = 0; i < machine_nic_count(reader->machine); i++)
        virtio_net_set_receive_room_hook(machine_nic(reader->machine, i), on_room, reader);
    atomic_store(&reader->svm_built, true);
    return 0;
}

/* After the reader stopped: what is left in the socket. A primary that died
 * closed its connections, but the replication loop may notice before the
 * reader has read everything the primary mirrored; those frames reached
 * the PVM, and the client would otherwise wait for its TCP retransmission
 * (200 ms or more) to get them to the SVM. */
static void drain(struct mirror_reader *reader)
{
    for (int reads = 0; reads < 4096 && reader->buffered < MIRROR_MESSAGE_MAX; reads++) {
        ssize_t got = mirror_channel_receive(&reader->channel, reader->buffer + reader->buffered,
                                             MIRROR_MESSAGE_MAX - reader->buffered);
        if (got <= 0)
            break; /* end of the connection, nothing more now, or an error */
        reader->buffered += (size_t)got;
        if (!take_messages(reader))
            break;
    }
}

/* The SVM takes over (the machine is paused by the failover). Mirrored
 * frames still queued go to the SVM: the frames watch stays, and the
 * machine thread delivers them when it runs again (the reader is stopped,
 * so nothing new is queued). Then the NICs read their own backends, and
 * announce their MACs. */
static int mirror_reader_failover(void *opaque, struct error *err)
{
    (void)err;
    struct mirror_reader *reader = opaque;
    mirror_reader_stop(reader);
    drain(reader);
    for (unsigned i = 0; i < machine_nic_count(reader->machine); i++) {
        virtio_net_set_backend_receive(machine_nic(reader->machine, i), true);
        virtio_net_announce(machine_nic(reader->machine, i));
    }
    return 0;
}

/* A checkpoint was applied whole, the SVM paused: the frames the primary
 * had mirrored before its VM paused are in the checkpoint's state already,
 * and the SVM would see them twice (a UDP request answered twice, an ICMP
 * echo too). Those still queued go now; those still on their way are
 * dropped as they come (take_message). */
static int mirror_reader_load(void *opaque, const struct stream_reader *stream, struct error *err)
{
    (void)err;
    struct mirror_reader *reader = opaque;
    if (!stream->mirrored_known)
        return 0;
    pthread_mutex_lock(&reader->lock);
    if (stream->mirrored_frames > reader->in_checkpoint_through)
        reader->in_checkpoint_through = stream->mirrored_frames;
    size_t kept = 0;
    for (size_t i = 0; i < reader->queued; i++) {
        if (reader->queue[i].sequence <= reader->in_checkpoint_through) {
            free(reader->queue[i].data);
            reader->already_in_checkpoint++;
        } else {
            reader->queue[kept++] = reader->queue[i];
        }
    }
    reader->queued = kept;
    pthread_mutex_unlock(&reader->lock);
    return 0;
}

const struct colo_checkpoint_device_ops mirror_reader_device = {
    .setup = mirror_reader_setup,
    .load = mirror_reader_load,
    .failover = mirror_reader_failover,
};

/* One writer at a time: heartbeats (their thread), the SVM's frames (the
 * machine thread) and boundaries (the loop's thread). */
static enum mirror_send_result write_message(struct mirror_reader *reader, const struct iovec *parts, int part_count)
{
    if (atomic_load(&reader->write_broken))
        return MIRROR_BROKEN;
    pthread_mutex_lock(&reader->write_lock);
    enum mirror_send_result result = mirror_channel_send(&reader->channel, parts, part_count);
    pthread_mutex_unlock(&reader->write_lock);
    if (result == MIRROR_BROKEN)
        atomic_store(&reader->write_broken, true); /* the reader or the loop notices the loss */
    return result;
}

bool mirror_reader_send_heartbeat(void *opaque)
{
    struct mirror_reader *reader = opaque;
    uint8_t beat[MIRROR_WORD_SIZE];
    mirror_encode_word(beat, 0, 0);
    struct iovec part = { beat, sizeof beat };
    return write_message(reader, &part, 1) == MIRROR_SENT;
}

void mirror_reader_return_frame(struct mirror_reader *reader, unsigned nic, const struct virtio_net_header *header,
                                const uint8_t *frame, size_t length)
{
    if (length == 0 || length > VIRTIO_NET_MAX_FRAME || !atomic_load(&reader->returning))
        return;
    uint8_t word[MIRROR_WORD_SIZE];
    mirror_encode_word(word, nic, length);
    uint8_t header_bytes[VIRTIO_NET_HEADER_SIZE];
    virtio_net_header_encode(header, header_bytes);
    struct iovec parts[3] = {
        { word, sizeof word },
        { (void *)frame, length },
        { header_bytes, sizeof header_bytes },
    };
    if (write_message(reader, parts, 3) == MIRROR_SENT)
        atomic_fetch_add(&reader->returned, 1);
    else
        atomic_fetch_add(&reader->return_dropped, 1);
}

bool mirror_reader_send_boundary(struct mirror_reader *reader)
{
    uint8_t word[MIRROR_WORD_SIZE];
    mirror_encode_word(word, MIRROR_BOUNDARY_NIC, 0);
    struct iovec part = { word, sizeof word };
    /* A boundary must not be lost (the primary would compare the next
     * epoch's output against this one's): a full socket waits for room,
     * a second at most. A millisecond per try, not poll: over TLS "no
     * room" is the session's estimate (peer_connection_send_message),
     * and the socket may poll writable meanwhile, which would spend the
     * thousand tries at once. */
    for (int tries = 0; tries < 1000; tries++) {
        enum mirror_send_result result = write_message(reader, &part, 1);
        if (result != MIRROR_WOULD_BLOCK)
            return result == MIRROR_SENT;
        clock_sleep_ms(1);
    }
    atomic_store(&reader->write_broken, true);
    return false;
}

void mirror_reader_set_inbound_filter(struct mirror_reader *reader, virtio_net_receive_filter filter, void *opaque)
{
    reader->inbound_filter = filter;
    reader->inbound_filter_opaque = opaque;
}
