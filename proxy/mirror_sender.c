/* The primary's side of the mirror (mirror_sender.h). */
#include "mirror_sender.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "heartbeat.h"
#include "machine.h"
#include "mirror_framing.h"
#include "virtio_net.h"

/* Writes one whole message. Never blocks long: a full socket drops a frame
 * (the SVM misses it; after a failover TCP retransmits it), and a partial
 * write is finished within a bounded wait or the connection is given up
 * (the framing would be lost). Returns false when the message was dropped. */
static bool send_message(struct mirror_sender *sender, struct iovec *parts, int part_count, bool is_frame)
{
    if (atomic_load(&sender->broken))
        return false;
    size_t total = 0;
    for (int i = 0; i < part_count; i++)
        total += parts[i].iov_len;
    pthread_mutex_lock(&sender->lock);
    struct msghdr message = { .msg_iov = parts, .msg_iovlen = (size_t)part_count };
    ssize_t sent = sendmsg(sender->fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    bool ok = sent == (ssize_t)total;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (is_frame)
            atomic_fetch_add(&sender->dropped, 1);
    } else if (sent < 0) {
        atomic_store(&sender->broken, true);
    } else if (!ok) {
        size_t done = (size_t)sent;
        for (int i = 0; i < part_count && done < total; i++) {
            size_t skip = done;
            for (int j = 0; j < i; j++)
                skip -= parts[j].iov_len;
            if (skip >= parts[i].iov_len)
                continue;
            const uint8_t *bytes = (const uint8_t *)parts[i].iov_base + skip;
            size_t left = parts[i].iov_len - skip;
            while (left > 0) {
                struct pollfd p = { .fd = sender->fd, .events = POLLOUT };
                if (poll(&p, 1, 1000) <= 0)
                    break;
                ssize_t n = send(sender->fd, bytes, left, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    break;
                if (n > 0) {
                    bytes += n;
                    left -= (size_t)n;
                    done += (size_t)n;
                }
            }
            if (left > 0)
                break;
        }
        ok = done == total;
        if (!ok)
            atomic_store(&sender->broken, true);
    }
    pthread_mutex_unlock(&sender->lock);
    return ok;
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

void mirror_sender_init(struct mirror_sender *sender, struct machine *machine, int fd)
{
    sender->machine = machine;
    sender->fd = fd;
    pthread_mutex_init(&sender->lock, NULL);
    atomic_init(&sender->mirroring, false);
    atomic_init(&sender->broken, false);
    atomic_init(&sender->frames, 0);
    atomic_init(&sender->dropped, 0);
    atomic_init(&sender->beats_heard, 0);
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
    pthread_mutex_destroy(&sender->lock);
}

static void *watch_thread(void *opaque)
{
    struct mirror_sender *sender = opaque;
    uint8_t bytes[256];
    while (!atomic_load(&sender->watch_stop)) {
        struct pollfd p = { .fd = sender->fd, .events = POLLIN };
        int ready = poll(&p, 1, HEARTBEAT_INTERVAL_MS / 2);
        if (ready > 0) {
            ssize_t n = recv(sender->fd, bytes, sizeof bytes, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                failure_detector_declare_peer_dead(sender->detector, "the mirror connection %s",
                                                   n == 0 ? "was closed by the secondary" : strerror(errno));
                break;
            }
            bool only_beats = true;
            for (ssize_t i = 0; i < n; i++)
                only_beats = only_beats && bytes[i] == 0;
            if (!only_beats) {
                failure_detector_declare_peer_dead(sender->detector,
                                                   "the secondary sent something other than heartbeats on the "
                                                   "mirror connection");
                break;
            }
            if (n > 0) {
                atomic_fetch_add(&sender->beats_heard, (uint64_t)n / MIRROR_WORD_SIZE);
                failure_detector_heard(sender->detector, true);
            }
        }
        if (failure_detector_check(sender->detector))
            break;
    }
    return NULL;
}

int mirror_sender_watch_start(struct mirror_sender *sender, struct failure_detector *detector, struct error *err)
{
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

static int mirror_sender_setup(void *opaque)
{
    struct mirror_sender *sender = opaque;
    atomic_store(&sender->mirroring, true);
    return 0;
}

const struct colo_checkpoint_device_ops mirror_sender_device = { .setup = mirror_sender_setup };
