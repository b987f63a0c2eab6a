/* virtio-net (virtio 1.1 section 5.1) with a TAP backend.
 *
 * Headers and offloads. Every frame travels with a 12-byte
 * virtio_net_hdr_v1. When the TAP speaks that same header (IFF_VNET_HDR,
 * TUNSETVNETHDRSZ 12, little-endian), the device offers the offloads and
 * simply carries headers across: the guest's goes to the TAP and the host
 * kernel finishes checksums and segments; the TAP's goes to the guest, and
 * TUNSETOFFLOAD tells the kernel what the guest negotiated to accept, so
 * it only hands us frames the guest can take (it finishes the rest
 * itself). This is what makes the guest cheap: one 64 KiB super-segment
 * and no checksum loop instead of 45 MTU-sized frames each summed by an
 * interpreted CPU. Without such a TAP nothing is offered and headers are
 * zero, as the spec asks of a device without offloads.
 *
 * Receive: a frame goes into ONE receive chain, or with MRG_RXBUF into as
 * many as it needs (num_buffers says how many). All of them must be there
 * before the first byte is written: otherwise nothing is taken (the chains
 * popped so far are given back) and the frame is parked or dropped.
 *
 * Transmit: on a notification of the transmit queue every chain is popped,
 * its header read, the frame gathered and both handed to transmit_hook.
 *
 * TAP flow control keeps one invariant: the TAP is polled exactly when no
 * frame is parked. A frame read while the guest has too few receive
 * buffers is parked and polling stops (the kernel keeps queueing, and
 * drops at its own limit); when the guest adds buffers the parked frame
 * goes first and polling resumes. Reset, DRIVER_OK and a state load all
 * drop or deliver the parked frame and resume polling, so "not polling"
 * can never outlive the situation that caused it. */
#include "virtio_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "machine.h"

#define VIRTIO_NET_SECTION_ID 0x564e4554u      /* "VNET" */
#define VIRTIO_NET_SECTION_VERSION 1

#define VIRTIO_NET_QUEUE_SIZE_MAX 256

/* Feature bits (section 5.1.3). */
#define VIRTIO_NET_F_CSUM (1ull << 0)            /* we finish the guest's checksums */
#define VIRTIO_NET_F_GUEST_CSUM (1ull << 1)      /* the guest takes partial checksums */
#define VIRTIO_NET_F_MAC (1ull << 5)
#define VIRTIO_NET_F_GUEST_TSO4 (1ull << 7)      /* the guest takes TCP super-segments */
#define VIRTIO_NET_F_GUEST_TSO6 (1ull << 8)
#define VIRTIO_NET_F_GUEST_ECN (1ull << 9)
#define VIRTIO_NET_F_HOST_TSO4 (1ull << 11)      /* we segment the guest's */
#define VIRTIO_NET_F_HOST_TSO6 (1ull << 12)
#define VIRTIO_NET_F_HOST_ECN (1ull << 13)
#define VIRTIO_NET_F_MRG_RXBUF (1ull << 15)
#define VIRTIO_NET_F_STATUS (1ull << 16)
#define VIRTIO_NET_S_LINK_UP 1u

#define PLAIN_FEATURES (VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS)
#define OFFLOAD_FEATURES                                                                   \
    (PLAIN_FEATURES | VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | \
     VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_GUEST_ECN | VIRTIO_NET_F_HOST_TSO4 |             \
     VIRTIO_NET_F_HOST_TSO6 | VIRTIO_NET_F_HOST_ECN | VIRTIO_NET_F_MRG_RXBUF)

/* The TAP read buffer: a header, then the largest frame. */
#define PACKET_BUFFER_SIZE (VIRTIO_NET_HEADER_SIZE + VIRTIO_NET_MAX_FRAME)

/* Configuration space: mac[6] at 0, status u16 at 6. */
#define CONFIG_MAC 0
#define CONFIG_STATUS 6
#define CONFIG_SIZE 8

/* Frames read from the TAP per call of the readable handler, so a flood
 * cannot keep the machine thread from running the guest. */
#define TAP_FRAMES_PER_POLL 64

/* ---- the header ---------------------------------------------------------- */

static void put_u16(uint8_t *bytes, uint16_t value)
{
    bytes[0] = (uint8_t)value;
    bytes[1] = (uint8_t)(value >> 8);
}

static uint16_t get_u16(const uint8_t *bytes)
{
    return (uint16_t)(bytes[0] | bytes[1] << 8);
}

void virtio_net_header_encode(const struct virtio_net_header *header,
                              uint8_t bytes[VIRTIO_NET_HEADER_SIZE])
{
    bytes[0] = header->flags;
    bytes[1] = header->gso_type;
    put_u16(bytes + 2, header->header_length);
    put_u16(bytes + 4, header->gso_size);
    put_u16(bytes + 6, header->checksum_start);
    put_u16(bytes + 8, header->checksum_offset);
    put_u16(bytes + 10, header->buffer_count);
}

void virtio_net_header_decode(const uint8_t bytes[VIRTIO_NET_HEADER_SIZE],
                              struct virtio_net_header *header)
{
    header->flags = bytes[0];
    header->gso_type = bytes[1];
    header->header_length = get_u16(bytes + 2);
    header->gso_size = get_u16(bytes + 4);
    header->checksum_start = get_u16(bytes + 6);
    header->checksum_offset = get_u16(bytes + 8);
    header->buffer_count = get_u16(bytes + 10);
}

/* What the driver accepted; nothing until FEATURES_OK stuck, so a driver
 * that works its queues early gets the plain device. */
static uint64_t negotiated_features(const struct virtio_net *net)
{
    const struct virtio_mmio_state *state = &net->transport.state;
    return (state->status & VIRTIO_STATUS_FEATURES_OK) ? state->driver_features : 0;
}

/* The header the guest gets for a frame, or false when the frame needs an
 * offload the guest did not accept (finishing it here would mean a
 * software checksum and segmentation path for a case the TAP, configured
 * from the same features, never produces). DATA_VALID is only a hint: it
 * is dropped rather than the frame. */
static bool header_for_guest(const struct virtio_net_header *given, uint64_t features,
                             struct virtio_net_header *header)
{
    static const struct virtio_net_header plain;
    *header = given ? *given : plain;
    header->buffer_count = 0;
    header->flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
    if (!(features & VIRTIO_NET_F_GUEST_CSUM)) {
        if (header->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
            return false;
        header->flags = 0;
    }
    if ((header->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !(features & VIRTIO_NET_F_GUEST_ECN))
        return false;
    switch (header->gso_type & ~VIRTIO_NET_HDR_GSO_ECN) {
    case VIRTIO_NET_HDR_GSO_NONE:
        return true;
    case VIRTIO_NET_HDR_GSO_TCPV4:
        return features & VIRTIO_NET_F_GUEST_TSO4;
    case VIRTIO_NET_HDR_GSO_TCPV6:
        return features & VIRTIO_NET_F_GUEST_TSO6;
    default:
        return false;       /* UDP fragmentation offload is not offered */
    }
}

/* ---- the feature offer ------------------------------------------------------ */

static void net_queue_notify(void *device, unsigned queue);
static bool net_config_read(void *device, uint64_t offset, unsigned size, uint64_t *value);
static bool net_config_write(void *device, uint64_t offset, unsigned size, uint64_t value);
static void net_reset(void *device);
static void net_driver_ready(void *device);

/* Two tables that differ only in the offer: the transport reads the offer
 * from its ops, and which one applies depends on the backend. */
#define NET_OPS(offered)                                \
    {                                                   \
        .device_id = VIRTIO_ID_NET,                     \
        .features = (offered),                          \
        .queue_count = 2,                               \
        .queue_size_max = VIRTIO_NET_QUEUE_SIZE_MAX,    \
        .config_read = net_config_read,                 \
        .config_write = net_config_write,               \
        .queue_notify = net_queue_notify,               \
        .reset = net_reset,                             \
        .driver_ready = net_driver_ready,               \
    }
static const struct virtio_device_ops plain_ops = NET_OPS(PLAIN_FEATURES);
static const struct virtio_device_ops offload_ops = NET_OPS(OFFLOAD_FEATURES);

/* Offloads are offered when whatever takes transmitted frames can finish
 * them: the TAP with vnet headers, or a hook that said so. */
static bool can_offer_offloads(const struct virtio_net *net)
{
    if (net->transmit_hook == virtio_net_transmit_to_tap)
        return net->tap_fd >= 0 && net->tap_vnet_header;
    return net->transmit_hook_takes_offloads;
}

/* Only while the driver has not started (status 0: after init or a reset):
 * a negotiation in progress, or a saved state, must keep seeing the offer
 * it was made against. */
static void choose_offer(struct virtio_net *net)
{
    if (net->transport.state.status == 0)
        net->transport.ops = can_offer_offloads(net) ? &offload_ops : &plain_ops;
}

/* The TUN_F_* offloads for what the guest accepts to receive. The kernel
 * wants CSUM under TSO and TSO under ECN (it refuses the flags otherwise),
 * and so does the spec of the guest's features. */
static unsigned tap_offloads_for(uint64_t features)
{
    if (!(features & VIRTIO_NET_F_GUEST_CSUM))
        return 0;
    unsigned offloads = TUN_F_CSUM;
    if (features & VIRTIO_NET_F_GUEST_TSO4)
        offloads |= TUN_F_TSO4;
    if (features & VIRTIO_NET_F_GUEST_TSO6)
        offloads |= TUN_F_TSO6;
    if ((offloads & (TUN_F_TSO4 | TUN_F_TSO6)) && (features & VIRTIO_NET_F_GUEST_ECN))
        offloads |= TUN_F_TSO_ECN;
    return offloads;
}

/* Tells the kernel which offloads the guest takes. A failure keeps the old
 * setting, which is never more than the guest took before a reset or 0;
 * frames that still do not suit the guest are dropped on delivery. */
static void set_tap_offloads(struct virtio_net *net, unsigned offloads)
{
    if (net->tap_fd < 0 || !net->tap_vnet_header)
        return;
    if (ioctl(net->tap_fd, TUNSETOFFLOAD, offloads) == 0)
        net->tap_offloads = offloads;
}

/* ---- receive -------------------------------------------------------------- */

enum receive_result {
    RECEIVE_DELIVERED,
    RECEIVE_NO_BUFFERS,       /* too few receive chains (or the queue is broken) */
    RECEIVE_TOO_LARGE,        /* can never fit; counted (a chain may have gone back empty) */
    RECEIVE_REFUSED,          /* needs an offload the guest did not accept; counted */
};

/* Undoes the last `count` pops of the receive queue. A pop only reads guest
 * memory and advances next_available, so rewinding that index gives the
 * chains back exactly as they were. */
static void give_back_chains(struct virtio_net *net, unsigned count)
{
    net->transport.state.queues[VIRTIO_NET_RECEIVE_QUEUE].next_available -= (uint16_t)count;
}

/* Pops receive chains until they hold `needed` bytes: one chain without
 * MRG_RXBUF, as many as it takes with it. Returns the number of chains
 * in net->receive_chains, or 0 with nothing taken (NO_BUFFERS or
 * TOO_LARGE in *result). */
static unsigned take_chains(struct virtio_net *net, uint64_t needed, bool mergeable,
                            enum receive_result *result)
{
    uint32_t queue_size = net->transport.state.queues[VIRTIO_NET_RECEIVE_QUEUE].size;
    uint64_t room = 0;
    unsigned chains = 0, descriptors = 0;
    while (room < needed) {
        struct virtio_chain *chain = &net->receive_chains[chains];
        if (chains == VIRTIO_NET_QUEUE_SIZE_MAX ||
            virtio_queue_pop(&net->transport, VIRTIO_NET_RECEIVE_QUEUE, chain) != 1) {
            give_back_chains(net, chains);
            /* When the driver has handed us its whole descriptor table it
             * cannot add more: waiting would park this frame for ever.
             * (Exact without indirect descriptors, which we do not offer.) */
            if (chains > 0 && descriptors >= queue_size) {
                net->dropped_too_large++;
                *result = RECEIVE_TOO_LARGE;
            } else {
                *result = RECEIVE_NO_BUFFERS;
            }
            return 0;
        }
        chains++;
        descriptors += chain->count;
        room += chain->writable_length;
        /* The header must fit the first chain (the spec makes every
         * mergeable buffer at least that large), and without MRG_RXBUF
         * the whole frame must. Such a chain goes back empty (the driver
         * counts a zero-length receive as a length error). */
        if ((chains == 1 && chain->writable_length < VIRTIO_NET_HEADER_SIZE) ||
            (!mergeable && room < needed)) {
            virtio_queue_push(&net->transport, VIRTIO_NET_RECEIVE_QUEUE, chain, 0);
            net->dropped_too_large++;
            *result = RECEIVE_TOO_LARGE;
            return 0;
        }
    }
    return chains;
}

/* Puts one frame into the guest's receive chains, without counting drops
 * for lack of buffers (the caller decides whether that is a drop or a
 * park) and without the interrupt: callers notify once per batch (see
 * notify_received). */
static enum receive_result deliver_frame(struct virtio_net *net, const struct virtio_net_header *given,
                                         const uint8_t *frame, size_t length)
{
    uint64_t features = negotiated_features(net);
    struct virtio_net_header header;
    if (!header_for_guest(given, features, &header)) {
        net->dropped_offloads++;
        return RECEIVE_REFUSED;
    }
    if (length > VIRTIO_NET_MAX_FRAME) {
        net->dropped_too_large++;
        return RECEIVE_TOO_LARGE;
    }
    enum receive_result result = RECEIVE_DELIVERED;
    unsigned chains = take_chains(net, VIRTIO_NET_HEADER_SIZE + (uint64_t)length,
                                  features & VIRTIO_NET_F_MRG_RXBUF, &result);
    if (chains == 0)
        return result;
    header.buffer_count = (uint16_t)chains;
    uint8_t header_bytes[VIRTIO_NET_HEADER_SIZE];
    virtio_net_header_encode(&header, header_bytes);
    size_t done = 0;
    for (unsigned i = 0; i < chains; i++) {
        const struct virtio_chain *chain = &net->receive_chains[i];
        uint64_t start = 0;
        size_t written = 0;
        if (i == 0) {
            written = virtio_chain_write(&net->transport, chain, 0, header_bytes, sizeof header_bytes);
            start = sizeof header_bytes;
        }
        uint64_t room = chain->writable_length - start;
        size_t piece = length - done < room ? length - done : (size_t)room;
        written += virtio_chain_write(&net->transport, chain, start, frame + done, piece);
        done += piece;
        virtio_queue_push(&net->transport, VIRTIO_NET_RECEIVE_QUEUE, chain, (uint32_t)written);
    }
    net->received_frames++;
    return RECEIVE_DELIVERED;
}

static void notify_received(struct virtio_net *net)
{
    virtio_queue_notify(&net->transport, VIRTIO_NET_RECEIVE_QUEUE);
}

/* Everything but a lack of buffers is counted by deliver_frame. */
bool virtio_net_receive_with_header(struct virtio_net *net, const struct virtio_net_header *header,
                                    const uint8_t *frame, size_t length)
{
    enum receive_result result = deliver_frame(net, header, frame, length);
    if (result == RECEIVE_NO_BUFFERS)
        net->dropped_no_buffers++;
    else if (result != RECEIVE_REFUSED)
        notify_received(net);
    return result == RECEIVE_DELIVERED;
}

bool virtio_net_receive(struct virtio_net *net, const uint8_t *frame, size_t length)
{
    return virtio_net_receive_with_header(net, NULL, frame, length);
}

static void set_polling(struct virtio_net *net, bool enabled)
{
    if (net->watch >= 0)
        machine_watch_enable(net->transport.machine, net->watch, enabled && net->tap_receive_enabled);
}

void virtio_net_set_tap_receive(struct virtio_net *net, bool enabled)
{
    net->tap_receive_enabled = enabled;
    /* A parked frame keeps polling off until the guest has room. */
    set_polling(net, enabled && net->parked_length == 0);
}

void virtio_net_set_tap_frame_observer(struct virtio_net *net, virtio_net_frame_hook observer, void *opaque)
{
    net->tap_frame_observer = observer;
    net->tap_frame_observer_opaque = opaque;
}

static void drop_parked_frame(struct virtio_net *net)
{
    if (net->parked_length > 0)
        net->dropped_no_buffers++;
    net->parked_length = 0;
}

/* A packet as the TAP buffer holds it: wire header, then the frame. */
static enum receive_result deliver_packet(struct virtio_net *net, const uint8_t *packet,
                                          size_t frame_length)
{
    struct virtio_net_header header;
    virtio_net_header_decode(packet, &header);
    return deliver_frame(net, &header, packet + VIRTIO_NET_HEADER_SIZE, frame_length);
}

/* Delivers the parked frame if the guest has room for it now; polling
 * resumes once nothing is parked. */
static void retry_parked_frame(struct virtio_net *net)
{
    if (net->parked_length > 0) {
        enum receive_result result = deliver_packet(net, net->parked_frame, net->parked_length);
        if (result == RECEIVE_NO_BUFFERS)
            return;
        if (result != RECEIVE_REFUSED)
            notify_received(net);
    }
    net->parked_length = 0;
    set_polling(net, true);
}

/* One packet from the TAP into parked_frame, laid out as header + frame
 * whether or not the TAP carries headers. Returns the frame's length, 0
 * for a packet to skip, -1 when there is nothing (more) to read. */
static ssize_t read_tap_packet(struct virtio_net *net)
{
    for (;;) {
        ssize_t got;
        if (net->tap_vnet_header) {
            got = read(net->tap_fd, net->parked_frame, PACKET_BUFFER_SIZE);
        } else {
            memset(net->parked_frame, 0, VIRTIO_NET_HEADER_SIZE);
            got = read(net->tap_fd, net->parked_frame + VIRTIO_NET_HEADER_SIZE, VIRTIO_NET_MAX_FRAME);
            if (got > 0)
                got += VIRTIO_NET_HEADER_SIZE;
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            /* Not a frame and not "empty" (e.g. the TAP went away): stop
             * polling so a persistent error does not spin the machine
             * thread. The next receive-queue notification retries. */
            set_polling(net, false);
        }
        if (got <= 0)
            return -1;
        /* The kernel always writes a whole header; anything less (or a
         * header alone) is no frame. */
        return got > VIRTIO_NET_HEADER_SIZE ? got - VIRTIO_NET_HEADER_SIZE : 0;
    }
}

/* Reads packets straight into parked_frame: if the guest takes one, the
 * buffer is free again; if it has too few buffers, it is already parked. */
void virtio_net_poll_tap(struct virtio_net *net)
{
    if (net->tap_fd < 0 || net->parked_length > 0)
        return;
    bool used_chains = false;
    for (unsigned i = 0; i < TAP_FRAMES_PER_POLL; i++) {
        ssize_t length = read_tap_packet(net);
        if (length < 0)
            break;
        if (length == 0)
            continue;
        if (net->tap_frame_observer) {
            struct virtio_net_header header;
            virtio_net_header_decode(net->parked_frame, &header);
            net->tap_frame_observer(net->tap_frame_observer_opaque, net, &header,
                                    net->parked_frame + VIRTIO_NET_HEADER_SIZE, (size_t)length);
        }
        enum receive_result result = deliver_packet(net, net->parked_frame, (size_t)length);
        if (result == RECEIVE_NO_BUFFERS) {
            net->parked_length = (size_t)length;
            set_polling(net, false);
            break;
        }
        if (result != RECEIVE_REFUSED)
            used_chains = true;
    }
    if (used_chains)
        notify_received(net);
}

static void on_tap_readable(void *opaque)
{
    virtio_net_poll_tap(opaque);
}

/* ---- transmit ------------------------------------------------------------- */

void virtio_net_transmit_to_tap(void *opaque, struct virtio_net *net,
                                const struct virtio_net_header *header,
                                const uint8_t *frame, size_t length)
{
    (void)opaque;
    if (net->tap_fd < 0)
        return;     /* no backend: like an unplugged cable */
    uint8_t header_bytes[VIRTIO_NET_HEADER_SIZE];
    struct iovec pieces[2];
    unsigned count = 0;
    if (net->tap_vnet_header) {
        virtio_net_header_encode(header, header_bytes);
        pieces[count++] = (struct iovec){ header_bytes, sizeof header_bytes };
    } else if (header->flags != 0 || header->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
        /* An unfinished frame (from a hook that takes offloads) and a TAP
         * that cannot finish it: sending it would put a bad checksum or
         * an oversized frame on the wire. */
        net->transmit_errors++;
        return;
    }
    pieces[count++] = (struct iovec){ (void *)frame, length };
    size_t expected = (count == 2 ? sizeof header_bytes : 0) + length;
    ssize_t done;
    do
        done = writev(net->tap_fd, pieces, (int)count);
    while (done < 0 && errno == EINTR);
    /* The TAP is non-blocking: a full queue (EAGAIN, ENOBUFS), a header
     * the kernel refuses (EINVAL) or any other failure drops the frame, as
     * a real NIC would; never wait. */
    if (done != (ssize_t)expected)
        net->transmit_errors++;
}

static void transmit_all(struct virtio_net *net)
{
    bool offloads = negotiated_features(net) & VIRTIO_NET_F_CSUM;
    uint8_t *packet = net->transmit_buffer;
    struct virtio_chain chain;
    unsigned served = 0;
    while (virtio_queue_pop(&net->transport, VIRTIO_NET_TRANSMIT_QUEUE, &chain) == 1) {
        served++;
        uint64_t readable = chain.readable_length;
        if (readable < VIRTIO_NET_HEADER_SIZE || readable > PACKET_BUFFER_SIZE) {
            net->transmit_errors++;
        } else if (virtio_chain_read(&net->transport, &chain, 0, packet, (size_t)readable) != readable) {
            net->transmit_errors++;
        } else {
            /* Without CSUM the driver must send zeros (and the unit test
             * sends garbage): the header only means something once the
             * offloads were negotiated. num_buffers is receive-only. */
            struct virtio_net_header header = { 0 };
            if (offloads) {
                virtio_net_header_decode(packet, &header);
                header.buffer_count = 0;
            }
            net->transmitted_frames++;
            net->transmit_hook(net->transmit_hook_opaque, net, &header,
                               packet + VIRTIO_NET_HEADER_SIZE,
                               (size_t)readable - VIRTIO_NET_HEADER_SIZE);
        }
        virtio_queue_push(&net->transport, VIRTIO_NET_TRANSMIT_QUEUE, &chain, 0);
    }
    if (served > 0)
        virtio_queue_notify(&net->transport, VIRTIO_NET_TRANSMIT_QUEUE);
}

/* ---- transport callbacks ---------------------------------------------- */

static void net_queue_notify(void *device, unsigned queue)
{
    struct virtio_net *net = device;
    if (queue == VIRTIO_NET_RECEIVE_QUEUE)
        retry_parked_frame(net);        /* new receive buffers */
    else if (queue == VIRTIO_NET_TRANSMIT_QUEUE)
        transmit_all(net);
}

static bool net_config_read(void *device, uint64_t offset, unsigned size, uint64_t *value)
{
    const struct virtio_net *net = device;
    if ((size != 1 && size != 2 && size != 4 && size != 8) || offset > CONFIG_SIZE ||
        size > CONFIG_SIZE - offset)
        return false;
    uint8_t config[CONFIG_SIZE];
    memcpy(config + CONFIG_MAC, net->state.mac, sizeof net->state.mac);
    config[CONFIG_STATUS] = (uint8_t)VIRTIO_NET_S_LINK_UP;
    config[CONFIG_STATUS + 1] = (uint8_t)(VIRTIO_NET_S_LINK_UP >> 8);
    uint64_t result = 0;
    for (unsigned i = 0; i < size; i++)
        result |= (uint64_t)config[offset + i] << (8 * i);
    *value = result;
    return true;
}

/* The MAC is writable only with VIRTIO_NET_F_CTRL_MAC_ADDR (legacy
 * drivers wrote it directly); we offer neither: writes are ignored. */
static bool net_config_write(void *device, uint64_t offset, unsigned size, uint64_t value)
{
    (void)device;
    (void)value;
    return offset <= CONFIG_SIZE && size <= CONFIG_SIZE - offset;
}

/* Until the driver negotiates again it accepts no offloads; the offer is
 * made afresh for the backend as it is now. */
static void net_reset(void *device)
{
    struct virtio_net *net = device;
    drop_parked_frame(net);
    set_tap_offloads(net, 0);
    choose_offer(net);
    set_polling(net, true);
}

/* Features are final now (they cannot change after FEATURES_OK): from
 * here on the kernel may hand us what the guest accepted. */
static void net_driver_ready(void *device)
{
    struct virtio_net *net = device;
    set_tap_offloads(net, tap_offloads_for(negotiated_features(net)));
    retry_parked_frame(net);
}

/* ---- lifetime -------------------------------------------------------------- */

static void free_buffers(struct virtio_net *net)
{
    free(net->parked_frame);
    free(net->transmit_buffer);
    free(net->receive_chains);
    net->parked_frame = NULL;
    net->transmit_buffer = NULL;
    net->receive_chains = NULL;
}

int virtio_net_init(struct virtio_net *net, struct machine *machine, unsigned slot,
                    const uint8_t mac[6], struct error *err)
{
    memset(net, 0, sizeof *net);
    net->tap_fd = -1;
    net->watch = -1;
    net->tap_receive_enabled = true;
    memcpy(net->state.mac, mac, sizeof net->state.mac);
    net->transmit_hook = virtio_net_transmit_to_tap;
    net->transmit_hook_opaque = NULL;
    /* Host-side buffers: 64 KiB frames and up to a queue's worth of chains
     * (about 270 KiB) are too much for the machine thread's stack. */
    net->parked_frame = malloc(PACKET_BUFFER_SIZE);
    net->transmit_buffer = malloc(PACKET_BUFFER_SIZE);
    net->receive_chains = calloc(VIRTIO_NET_QUEUE_SIZE_MAX, sizeof *net->receive_chains);
    if (!net->parked_frame || !net->transmit_buffer || !net->receive_chains) {
        free_buffers(net);
        return error_set(err, "virtio-net: out of memory for the frame buffers");
    }
    virtio_mmio_init(&net->transport, machine, slot, &plain_ops, net);
    return 0;
}

void virtio_net_set_transmit_hook(struct virtio_net *net, virtio_net_frame_hook hook,
                                  void *opaque, bool takes_offloads)
{
    net->transmit_hook = hook;
    net->transmit_hook_opaque = opaque;
    net->transmit_hook_takes_offloads = takes_offloads;
    choose_offer(net);
}

/* The 12-byte little-endian header on every packet, or false (the TAP
 * then has to be opened again without IFF_VNET_HDR). TUNSETVNETLE is only
 * needed on a big-endian host: the TAP's default is the host's order. */
static bool configure_vnet_header(int fd)
{
    int size = VIRTIO_NET_HEADER_SIZE;
    int little_endian = 1;
    const uint16_t probe = 1;
    bool host_is_little_endian = *(const uint8_t *)&probe == 1;
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0)
        return false;
    return ioctl(fd, TUNSETVNETLE, &little_endian) == 0 || host_is_little_endian;
}

/* Opens and attaches to the TAP, with vnet headers if asked and possible.
 * Returns the fd or -1 (err set). */
static int open_tap(const char *name, bool want_vnet_header, bool *vnet_header, struct error *err)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "virtio-net: cannot open /dev/net/tun for TAP %s", name);
    unsigned supported = 0;
    *vnet_header = want_vnet_header && ioctl(fd, TUNGETFEATURES, &supported) == 0 &&
                   (supported & IFF_VNET_HDR);
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strcpy(request.ifr_name, name);
    request.ifr_flags = (short)(IFF_TAP | IFF_NO_PI | (*vnet_header ? IFF_VNET_HDR : 0));
    if (ioctl(fd, TUNSETIFF, &request) < 0) {
        error_set_errno(err, "virtio-net: cannot attach to TAP %s", name);
        close(fd);
        return -1;
    }
    return fd;
}

int virtio_net_attach_tap(struct virtio_net *net, const char *name, struct error *err)
{
    if (net->tap_fd >= 0)
        return error_set(err, "virtio-net: already attached to TAP %s", net->tap_name);
    if (strlen(name) >= IFNAMSIZ || strlen(name) >= sizeof net->tap_name)
        return error_set(err, "virtio-net: TAP name '%s' is longer than %d characters",
                         name, IFNAMSIZ - 1);
    bool vnet_header;
    int fd = open_tap(name, true, &vnet_header, err);
    if (fd >= 0 && vnet_header && !configure_vnet_header(fd)) {
        close(fd);
        fd = open_tap(name, false, &vnet_header, err);
    }
    if (fd < 0)
        return -1;
    /* A persistent TAP keeps the offloads its last user set (QEMU sets
     * CSUM and TSO): the kernel would then hand us frames with unfinished
     * checksums, which a guest that did not ask for them drops, every TCP
     * segment of them. Start from none; DRIVER_OK sets what the guest
     * accepts. */
    if (ioctl(fd, TUNSETOFFLOAD, 0u) < 0) {
        error_set_errno(err, "virtio-net: cannot reset the offloads of TAP %s", name);
        close(fd);
        return -1;
    }
    int watch = machine_watch_fd(net->transport.machine, fd, on_tap_readable, net);
    if (watch < 0) {
        close(fd);
        return error_set(err, "virtio-net: cannot poll TAP %s: the machine's fd table is full",
                         name);
    }
    net->tap_fd = fd;
    strcpy(net->tap_name, name);
    net->tap_vnet_header = vnet_header;
    net->tap_offloads = 0;
    net->watch = watch;
    net->parked_length = 0;
    choose_offer(net);
    set_polling(net, true);
    return 0;
}

void virtio_net_destroy(struct virtio_net *net)
{
    if (net->watch >= 0)
        machine_unwatch_fd(net->transport.machine, net->watch);
    net->watch = -1;
    if (net->tap_fd >= 0)
        close(net->tap_fd);
    net->tap_fd = -1;
    net->tap_vnet_header = false;
    free_buffers(net);
    net->parked_length = 0;
}

/* ---- state ----------------------------------------------------------------- */

void virtio_net_after_load(struct virtio_net *net)
{
    drop_parked_frame(net);
    bool started = net->transport.state.status & VIRTIO_STATUS_DRIVER_OK;
    set_tap_offloads(net, started ? tap_offloads_for(negotiated_features(net)) : 0);
    set_polling(net, true);
}

void virtio_net_save(const struct virtio_net *net, struct state_writer *writer)
{
    virtio_mmio_save(&net->transport, writer);
    state_section_begin(writer, VIRTIO_NET_SECTION_ID, VIRTIO_NET_SECTION_VERSION);
    state_put_bytes(writer, net->state.mac, sizeof net->state.mac);
    state_section_end(writer);
}

/* The MAC is configuration, not state: it must match, because the guest
 * has it in its driver and its neighbours in their ARP caches. */
void virtio_net_load(struct virtio_net *net, struct state_reader *reader)
{
    /* Into a copy, so that a failed load leaves the device untouched. */
    struct virtio_mmio transport = net->transport;
    virtio_mmio_load(&transport, reader);
    state_section_open(reader, VIRTIO_NET_SECTION_ID, VIRTIO_NET_SECTION_VERSION, "virtio-net");
    uint8_t mac[6];
    state_get_bytes(reader, mac, sizeof mac);
    state_section_close(reader, "virtio-net");
    if (reader->failed)
        return;
    if (memcmp(mac, net->state.mac, sizeof mac) != 0) {
        const uint8_t *own = net->state.mac;
        state_reader_fail(reader, "virtio-net: saved MAC %02x:%02x:%02x:%02x:%02x:%02x differs "
                          "from this device's %02x:%02x:%02x:%02x:%02x:%02x",
                          mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
                          own[0], own[1], own[2], own[3], own[4], own[5]);
        return;
    }
    net->transport = transport;
}

void virtio_net_announce(struct virtio_net *net)
{
    /* Ethernet broadcast, EtherType RARP (0x8035); the RARP body is a
     * "reverse request" (3) naming the VM's MAC as sender and target. The
     * frame is padded to the 60-byte Ethernet minimum. */
    uint8_t frame[60];
    memset(frame, 0, sizeof frame);
    memset(frame, 0xff, 6);
    memcpy(frame + 6, net->state.mac, 6);
    frame[12] = 0x80;
    frame[13] = 0x35;
    static const uint8_t rarp_fixed[8] = { 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03 };
    memcpy(frame + 14, rarp_fixed, sizeof rarp_fixed);
    memcpy(frame + 22, net->state.mac, 6);      /* sender hardware address */
    memcpy(frame + 32, net->state.mac, 6);      /* target hardware address */
    struct virtio_net_header header;
    memset(&header, 0, sizeof header);
    if (net->transmit_hook)
        net->transmit_hook(net->transmit_hook_opaque, net, &header, frame, sizeof frame);
}
