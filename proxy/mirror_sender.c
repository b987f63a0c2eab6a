/* The primary's side of the mirror (mirror_sender.h). */
#include "mirror_sender.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "heartbeat.h"
#include "machine.h"
#include "mirror_framing.h"
#include "stream.h"
#include "virtio_net.h"

/* Writes one whole message (mirror_send_message): a full socket drops a
 * frame (the SVM misses it; after a failover TCP retransmits it); a
 * partial write that cannot be finished gives the connection up. Returns
 * false when the message was dropped. */
static bool send_message(struct mirror_sender *sender, struct iovec *parts, int part_count, bool is_frame)
{
    if (atomic_load(&sender->broken))
        return false;
    pthread_mutex_lock(&sender->lock);
    enum mirror_send_result result = mirror_channel_send(&sender->channel, parts, part_count);
    pthread_mutex_unlock(&sender->lock);
    if (result == MIRROR_WOULD_BLOCK && is_frame)
        atomic_fetch_add(&sender->dropped, 1);
    else if (result == MIRROR_BROKEN)
        atomic_store(&sender->broken, true);
    return result == MIRROR_SENT;
}

/* Machine thread: a frame the PVM read from its backend goes to the SVM too. */
static void mirror_frame(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                         const uint8_t *frame, size_t length)
{
    struct mirror_sender *sender = opaque;
    if (!atomic_load(&sender->mirroring))
        return;
    int index = machine_nic_index(sender->machine, net);
    uint8_t word[MIRROR_WORD_SIZE];
    mirror_encode_word(word, index < 0 ? 0 : (unsigned)index, length);
    uint8_t header_bytes[VIRTIO_NET_HEADER_SIZE];
    virtio_net_header_encode(header, header_bytes);
    struct iovec parts[3] = {
        { word, sizeof word },
        { (void *)frame, length },
        { header_bytes, sizeof header_bytes },
    };
    if (send_message(sender, parts, 3, true))
        atomic_fetch_add(&sender->frames, 1);
}

bool mirror_sender_send_heartbeat(void *opaque)
{
    struct mirror_sender *sender = opaque;
    uint8_t beat[MIRROR_WORD_SIZE];
    mirror_encode_word(beat, 0, 0);
    struct iovec part = { beat, sizeof beat };
    return send_message(sender, &part, 1, false);
}

void mirror_sender_init(struct mirror_sender *sender, struct machine *machine, struct mirror_channel channel)
{
    sender->machine = machine;
    sender->channel = channel;
    pthread_mutex_init(&sender->lock, NULL);
    atomic_init(&sender->mirroring, false);
    atomic_init(&sender->broken, false);
    atomic_init(&sender->frames, 0);
    atomic_init(&sender->dropped, 0);
    atomic_init(&sender->beats_heard, 0);
    atomic_init(&sender->boundaries_heard, 0);
    atomic_init(&sender->secondary_frames, 0);
    sender->secondary_frame = NULL;
    sender->secondary_boundary = NULL;
    sender->secondary_opaque = NULL;
    sender->keep_secondary_output = false;
    sender->watch_buffer = malloc(MIRROR_MESSAGE_MAX);
    sender->watch_buffered = 0;
    atomic_init(&sender->watch_stop, false);
    sender->watching = false;
    sender->detector = NULL;
    for (unsigned i = 0; i < machine_nic_count(machine); i++)
        virtio_net_set_backend_frame_observer(machine_nic(machine, i), mirror_frame, sender);
}

void mirror_sender_stop(struct mirror_sender *sender)
{
    atomic_store(&sender->mirroring, false);
}

void mirror_sender_destroy(struct mirror_sender *sender)
{
    /* The observers stay installed and see mirroring off: removing them
     * would race with the machine thread, which may be inside one. */
    mirror_sender_stop(sender);
    free(sender->watch_buffer);
    sender->watch_buffer = NULL;
    pthread_mutex_destroy(&sender->lock);
}

/* The watch thread: what the secondary sent is heard, and its SVM frames
 * and boundaries go to the comparing proxy. */
static bool take_message(void *opaque, const struct mirror_message *message)
{
    struct mirror_sender *sender = opaque;
    if (message->no_return)
        return false; /* the primary's word, never the secondary's */
    if (message->heartbeat) {
        atomic_fetch_add(&sender->beats_heard, 1);
    } else if (message->boundary) {
        atomic_fetch_add(&sender->boundaries_heard, 1);
        if (sender->secondary_boundary)
            sender->secondary_boundary(sender->secondary_opaque);
    } else {
        atomic_fetch_add(&sender->secondary_frames, 1);
        if (sender->secondary_frame)
            sender->secondary_frame(sender->secondary_opaque, message->nic, &message->header, message->frame,
                                    message->length);
    }
    return true;
}

static void *watch_thread(void *opaque)
{
    pthread_setname_np(pthread_self(), "secondary-watch");
    struct mirror_sender *sender = opaque;
    while (!atomic_load(&sender->watch_stop)) {
        int ready = mirror_channel_wait_readable(&sender->channel, HEARTBEAT_INTERVAL_MS / 2);
        if (ready > 0) {
            ssize_t n = mirror_channel_receive(&sender->channel, sender->watch_buffer + sender->watch_buffered,
                                               MIRROR_MESSAGE_MAX - sender->watch_buffered);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                failure_detector_declare_peer_dead(sender->detector, "the mirror connection %s",
                                                   n == 0 ? "was closed by the secondary" : strerror(errno));
                break;
            }
            if (n > 0) {
                sender->watch_buffered += (size_t)n;
                if (!mirror_take_messages(sender->watch_buffer, &sender->watch_buffered,
                                          machine_nic_count(sender->machine), take_message, sender)) {
                    failure_detector_declare_peer_dead(sender->detector,
                                                       "the secondary sent something that is not a message on the "
                                                       "mirror connection");
                    break;
                }
                /* Anything whole from the secondary says it is alive. */
                failure_detector_heard(sender->detector, true);
            }
        }
        if (failure_detector_check(sender->detector))
            break;
    }
    return NULL;
}

void mirror_sender_set_secondary_output(struct mirror_sender *sender, mirror_secondary_frame_fn frame,
                                        void (*boundary)(void *opaque), void *opaque)
{
    sender->secondary_frame = frame;
    sender->secondary_boundary = boundary;
    sender->secondary_opaque = opaque;
}

int mirror_sender_watch_start(struct mirror_sender *sender, struct failure_detector *detector, struct error *err)
{
    if (!sender->watch_buffer)
        return error_set(err, "out of memory for the secondary's watch");
    sender->watch_buffered = 0;
    sender->detector = detector;
    atomic_store(&sender->watch_stop, false);
    int failed = pthread_create(&sender->watch_thread, NULL, watch_thread, sender);
    if (failed)
        return error_set(err, "cannot start the secondary's watch thread: %s", strerror(failed));
    sender->watching = true;
    return 0;
}

void mirror_sender_watch_stop(struct mirror_sender *sender)
{
    if (!sender->watching)
        return;
    atomic_store(&sender->watch_stop, true);
    pthread_join(sender->watch_thread, NULL);
    sender->watching = false;
}

void mirror_sender_keep_secondary_output(struct mirror_sender *sender)
{
    sender->keep_secondary_output = true;
}

static int mirror_sender_setup(void *opaque)
{
    struct mirror_sender *sender = opaque;
    if (sender->keep_secondary_output) {
        /* Before the first frame: the socket is empty, so a refusal means
         * the connection is gone (the loop notices). */
        uint8_t word[MIRROR_WORD_SIZE];
        mirror_encode_word(word, MIRROR_NO_RETURN_NIC, 0);
        struct iovec part = { word, sizeof word };
        send_message(sender, &part, 1, false);
    }
    atomic_store(&sender->mirroring, true);
    return 0;
}

/* VM paused: how many frames the mirror carried before this checkpoint's
 * pause (the machine thread, which mirrors, is paused with the VM). The
 * secondary drops those it has not delivered yet: the checkpoint's state
 * has them already. */
static int mirror_sender_save(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct mirror_sender *sender = opaque;
    return stream_write_mirrored(writer, atomic_load(&sender->frames), err);
}

const struct colo_checkpoint_device_ops mirror_sender_device = {
    .setup = mirror_sender_setup,
    .save = mirror_sender_save,
};
