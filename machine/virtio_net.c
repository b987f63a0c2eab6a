/* virtio-net (virtio 1.1 section 5.1) over a network backend.
 *
 * Headers and offloads. Every frame travels with a 12-byte
 * virtio_net_hdr_v1. When the backend takes offloads (a TAP speaking that
 * same header), the device offers them and simply carries headers across:
 * the guest's goes to the backend, which finishes checksums and segments;
 * the backend's goes to the guest, and set_offloads tells the backend what
 * the guest negotiated to accept, so it only hands us frames the guest can
 * take. This is what makes the guest cheap: one 64 KiB super-segment and
 * no checksum loop instead of 45 MTU-sized frames each summed by an
 * interpreted CPU. Without such a backend nothing is offered and headers
 * are zero, as the spec asks of a device without offloads.
 *
 * Receive: a frame goes into ONE receive chain, or with MRG_RXBUF into as
 * many as it needs (num_buffers says how many). All of them must be there
 * before the first byte is written: otherwise nothing is taken (the chains
 * popped so far are given back) and the frame is parked or dropped.
 *
 * Transmit: on a notification of the transmit queue every chain is popped,
 * its header read, the frame gathered and both handed to transmit_hook.
 *
 * Backend flow control keeps one invariant: the backend is polled exactly
 * when no frame is parked. A frame read while the guest has too few
 * receive buffers is parked and polling stops (a TAP's kernel queue keeps
 * filling, and drops at its own limit); when the guest adds buffers the
 * parked frame goes first and polling resumes. Reset, DRIVER_OK and a
 * state load all drop or deliver the parked frame and resume polling, so
 * "not polling" can never outlive the situation that caused it. */
#include "virtio_net_device.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine_devices.h"

#define VIRTIO_NET_SECTION_ID 0x564e4554u /* "VNET" */
#define VIRTIO_NET_SECTION_VERSION 1

#define VIRTIO_NET_QUEUE_SIZE_MAX 256

/* Feature bits (section 5.1.3). */
#define VIRTIO_NET_F_CSUM (1ull << 0)       /* we finish the guest's checksums */
#define VIRTIO_NET_F_GUEST_CSUM (1ull << 1) /* the guest takes partial checksums */
#define VIRTIO_NET_F_MAC (1ull << 5)
#define VIRTIO_NET_F_GUEST_TSO4 (1ull << 7) /* the guest takes TCP super-segments */
#define VIRTIO_NET_F_GUEST_TSO6 (1ull << 8)
#define VIRTIO_NET_F_GUEST_ECN (1ull << 9)
#define VIRTIO_NET_F_HOST_TSO4 (1ull << 11) /* we segment the guest's */
#define VIRTIO_NET_F_HOST_TSO6 (1ull << 12)
#define VIRTIO_NET_F_HOST_ECN (1ull << 13)
#define VIRTIO_NET_F_MRG_RXBUF (1ull << 15)
#define VIRTIO_NET_F_STATUS (1ull << 16)
#define VIRTIO_NET_S_LINK_UP 1u

#define PLAIN_FEATURES (VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS)
#define OFFLOAD_FEATURES                                                                                  \
    (PLAIN_FEATURES | VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 |             \
     VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_GUEST_ECN | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6 | \
     VIRTIO_NET_F_HOST_ECN | VIRTIO_NET_F_MRG_RXBUF)

/* A transmit chain's bytes: a header, then the largest frame. */
#define PACKET_BUFFER_SIZE (VIRTIO_NET_HEADER_SIZE + VIRTIO_NET_MAX_FRAME)

/* Configuration space: mac[6] at 0, status u16 at 6. */
#define CONFIG_MAC 0
#define CONFIG_STATUS 6
#define CONFIG_SIZE 8

/* Frames read from the backend per call of the readable handler, so a
 * flood cannot keep the machine thread from running the guest. */
#define BACKEND_FRAMES_PER_POLL 64

/* What the driver accepted; nothing until FEATURES_OK stuck, so a driver
 * that works its queues early gets the plain device. */
static uint64_t negotiated_features(const struct virtio_net *net)
{
    const struct virtio_mmio_state *state = &net->transport.state;
    return (state->status & VIRTIO_STATUS_FEATURES_OK) ? state->driver_features : 0;
}

/* The header the guest gets for a frame, or false when the frame needs an
 * offload the guest did not accept (finishing it here would mean a
 * software checksum and segmentation path for a case the backend,
 * configured from the same features, never produces). DATA_VALID is only a hint: it
 * is dropped rather than the frame. */
static bool header_for_guest(const struct virtio_net_header *given, uint64_t features, struct virtio_net_header *header)
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
        return false; /* UDP fragmentation offload is not offered */
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
#define NET_OPS(offered)                                                                                               \
    {                                                                                                                  \
        .device_id = VIRTIO_ID_NET, .features = (offered), .queue_count = 2,                                           \
        .queue_size_max = VIRTIO_NET_QUEUE_SIZE_MAX, .config_read = net_config_read, .config_write = net_config_write, \
        .queue_notify = net_queue_notify, .reset = net_reset, .driver_ready = net_driver_ready,                        \
    }
static const struct virtio_device_ops plain_ops = NET_OPS(PLAIN_FEATURES);
static const struct virtio_device_ops offload_ops = NET_OPS(OFFLOAD_FEATURES);

/* Offloads are offered when whatever takes transmitted frames can finish
 * them: a backend that takes offloads, or a hook that said so. */
static bool can_offer_offloads(const struct virtio_net *net)
{
    if (net->transmit_hook == virtio_net_transmit_to_backend)
        return net->backend && net->backend->takes_offloads;
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

/* The backend offloads for what the guest accepts to receive. A TAP's
 * kernel wants CSUM under TSO and TSO under ECN (it refuses the flags
 * otherwise), and so does the spec of the guest's features. */
static unsigned backend_offloads_for(uint64_t features)
{
    if (!(features & VIRTIO_NET_F_GUEST_CSUM))
        return 0;
    unsigned offloads = NET_BACKEND_OFFLOAD_CSUM;
    if (features & VIRTIO_NET_F_GUEST_TSO4)
        offloads |= NET_BACKEND_OFFLOAD_TSO4;
    if (features & VIRTIO_NET_F_GUEST_TSO6)
        offloads |= NET_BACKEND_OFFLOAD_TSO6;
    if ((offloads & (NET_BACKEND_OFFLOAD_TSO4 | NET_BACKEND_OFFLOAD_TSO6)) && (features & VIRTIO_NET_F_GUEST_ECN))
        offloads |= NET_BACKEND_OFFLOAD_TSO_ECN;
    return offloads;
}

/* Tells the backend which offloads the guest takes. */
static void set_backend_offloads(struct virtio_net *net, unsigned offloads)
{
    if (net->backend && net->backend->ops->set_offloads)
        net->backend->ops->set_offloads(net->backend, offloads);
}

/* ---- receive -------------------------------------------------------------- */

enum receive_result {
    RECEIVE_DELIVERED,
    RECEIVE_NO_BUFFERS, /* too few receive chains (or the queue is broken) */
    RECEIVE_TOO_LARGE,  /* can never fit; counted (a chain may have gone back empty) */
    RECEIVE_REFUSED,    /* needs an offload the guest did not accept; counted */
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
static unsigned take_chains(struct virtio_net *net, uint64_t needed, bool mergeable, enum receive_result *result)
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
        if ((chains == 1 && chain->writable_length < VIRTIO_NET_HEADER_SIZE) || (!mergeable && room < needed)) {
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
    unsigned chains = take_chains(net, VIRTIO_NET_HEADER_SIZE + (uint64_t)length, features & VIRTIO_NET_F_MRG_RXBUF,
                                  &result);
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
enum virtio_net_offer_result virtio_net_offer_frame(struct virtio_net *net, const struct virtio_net_header *header,
                                                    const uint8_t *frame, size_t length)
{
    enum receive_result result = deliver_frame(net, header, frame, length);
    if (result == RECEIVE_NO_BUFFERS)
        return VIRTIO_NET_OFFER_NO_ROOM;
    if (result != RECEIVE_REFUSED)
        notify_received(net);
    return result == RECEIVE_DELIVERED ? VIRTIO_NET_OFFER_DELIVERED : VIRTIO_NET_OFFER_DROPPED;
}

/* The offer, with a frame that found no room dropped and counted. */
bool virtio_net_receive_with_header(struct virtio_net *net, const struct virtio_net_header *header,
                                    const uint8_t *frame, size_t length)
{
    enum virtio_net_offer_result result = virtio_net_offer_frame(net, header, frame, length);
    if (result == VIRTIO_NET_OFFER_NO_ROOM)
        net->dropped_no_buffers++;
    return result == VIRTIO_NET_OFFER_DELIVERED;
}

void virtio_net_set_receive_room_hook(struct virtio_net *net, void (*hook)(void *opaque), void *opaque)
{
    net->receive_room_hook = hook;
    net->receive_room_hook_opaque = opaque;
}

bool virtio_net_receive(struct virtio_net *net, const uint8_t *frame, size_t length)
{
    return virtio_net_receive_with_header(net, NULL, frame, length);
}

static void set_polling(struct virtio_net *net, bool enabled)
{
    if (net->watch >= 0)
        machine_watch_enable(net->transport.machine, net->watch, enabled && net->backend_receive_enabled);
}

void virtio_net_set_backend_receive(struct virtio_net *net, bool enabled)
{
    net->backend_receive_enabled = enabled;
    /* A parked frame keeps polling off until the guest has room. */
    set_polling(net, enabled && net->parked_length == 0);
}

void virtio_net_set_backend_frame_observer(struct virtio_net *net, virtio_net_frame_hook observer, void *opaque)
{
    net->backend_frame_observer = observer;
    net->backend_frame_observer_opaque = opaque;
}

void virtio_net_set_backend_receive_filter(struct virtio_net *net, virtio_net_receive_filter filter, void *opaque)
{
    net->backend_receive_filter = filter;
    net->backend_receive_filter_opaque = opaque;
}

static void drop_parked_frame(struct virtio_net *net)
{
    if (net->parked_length > 0)
        net->dropped_no_buffers++;
    net->parked_length = 0;
}

/* Delivers the parked frame if the guest has room for it now; polling
 * resumes once nothing is parked. */
static void retry_parked_frame(struct virtio_net *net)
{
    if (net->parked_length > 0) {
        enum receive_result result = deliver_frame(net, &net->parked_header, net->parked_frame, net->parked_length);
        if (result == RECEIVE_NO_BUFFERS)
            return;
        if (result != RECEIVE_REFUSED)
            notify_received(net);
    }
    net->parked_length = 0;
    set_polling(net, true);
}

/* Reads frames straight into parked_frame: if the guest takes one, the
 * buffer is free again; if it has too few buffers, it is already parked. */
void virtio_net_poll_backend(struct virtio_net *net)
{
    struct net_backend *backend = net->backend;
    if (!backend || !backend->ops->receive || net->parked_length > 0)
        return;
    bool used_chains = false;
    for (unsigned i = 0; i < BACKEND_FRAMES_PER_POLL; i++) {
        ssize_t length = backend->ops->receive(backend, &net->parked_header, net->parked_frame, VIRTIO_NET_MAX_FRAME);
        if (length == -EAGAIN)
            break;
        if (length < 0) {
            /* Not a frame and not "empty" (e.g. the TAP went away): stop
             * polling so a persistent error does not spin the machine
             * thread. The next receive-queue notification retries. */
            set_polling(net, false);
            break;
        }
        if (length == 0)
            continue;
        net->parked_header.buffer_count = 0;
        if (net->backend_frame_observer)
            net->backend_frame_observer(net->backend_frame_observer_opaque, net, &net->parked_header, net->parked_frame,
                                        (size_t)length);
        if (net->backend_receive_filter)
            net->backend_receive_filter(net->backend_receive_filter_opaque, &net->parked_header, net->parked_frame,
                                        (size_t)length);
        enum receive_result result = deliver_frame(net, &net->parked_header, net->parked_frame, (size_t)length);
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

size_t virtio_net_drain_backend_to_observer(struct virtio_net *net)
{
    struct net_backend *backend = net->backend;
    if (!backend || !backend->ops->receive || !net->backend_frame_observer)
        return 0;
    uint8_t *frame = malloc(VIRTIO_NET_MAX_FRAME);
    if (!frame)
        return 0;
    size_t drained = 0;
    for (;;) {
        struct virtio_net_header header;
        ssize_t length = backend->ops->receive(backend, &header, frame, VIRTIO_NET_MAX_FRAME);
        if (length < 0)
            break; /* empty (EAGAIN), or the backend is gone */
        if (length == 0)
            continue;
        header.buffer_count = 0;
        net->backend_frame_observer(net->backend_frame_observer_opaque, net, &header, frame, (size_t)length);
        drained++;
    }
    free(frame);
    return drained;
}

static void on_backend_readable(void *opaque)
{
    virtio_net_poll_backend(opaque);
}

/* ---- transmit ------------------------------------------------------------- */

void virtio_net_transmit_to_backend(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                                    const uint8_t *frame, size_t length)
{
    (void)opaque;
    if (!net->backend)
        return; /* no backend: like an unplugged cable */
    if (net_backend_send(net->backend, header, frame, length) < 0)
        __atomic_fetch_add(&net->transmit_errors, 1, __ATOMIC_RELAXED);
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
            __atomic_fetch_add(&net->transmit_errors, 1, __ATOMIC_RELAXED);
        } else if (virtio_chain_read(&net->transport, &chain, 0, packet, (size_t)readable) != readable) {
            __atomic_fetch_add(&net->transmit_errors, 1, __ATOMIC_RELAXED);
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
            net->transmit_hook(net->transmit_hook_opaque, net, &header, packet + VIRTIO_NET_HEADER_SIZE,
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
    if (queue == VIRTIO_NET_RECEIVE_QUEUE) {
        retry_parked_frame(net); /* new receive buffers */
        if (net->receive_room_hook)
            net->receive_room_hook(net->receive_room_hook_opaque);
    } else if (queue == VIRTIO_NET_TRANSMIT_QUEUE)
        transmit_all(net);
}

static bool net_config_read(void *device, uint64_t offset, unsigned size, uint64_t *value)
{
    const struct virtio_net *net = device;
    if ((size != 1 && size != 2 && size != 4 && size != 8) || offset > CONFIG_SIZE || size > CONFIG_SIZE - offset)
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
    set_backend_offloads(net, 0);
    choose_offer(net);
    set_polling(net, true);
}

/* Features are final now (they cannot change after FEATURES_OK): from
 * here on the backend may hand us what the guest accepted. */
static void net_driver_ready(void *device)
{
    struct virtio_net *net = device;
    set_backend_offloads(net, backend_offloads_for(negotiated_features(net)));
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

int virtio_net_init(struct virtio_net *net, struct machine *machine, unsigned slot, const uint8_t mac[6],
                    struct error *err)
{
    memset(net, 0, sizeof *net);
    net->watch = -1;
    net->backend_receive_enabled = true;
    memcpy(net->state.mac, mac, sizeof net->state.mac);
    net->transmit_hook = virtio_net_transmit_to_backend;
    net->transmit_hook_opaque = NULL;
    /* Host-side buffers: 64 KiB frames and up to a queue's worth of chains
     * (about 270 KiB) are too much for the machine thread's stack. */
    net->parked_frame = malloc(VIRTIO_NET_MAX_FRAME);
    net->transmit_buffer = malloc(PACKET_BUFFER_SIZE);
    net->receive_chains = calloc(VIRTIO_NET_QUEUE_SIZE_MAX, sizeof *net->receive_chains);
    if (!net->parked_frame || !net->transmit_buffer || !net->receive_chains) {
        free_buffers(net);
        return error_set(err, "virtio-net: out of memory for the frame buffers");
    }
    virtio_mmio_init(&net->transport, machine, slot, &plain_ops, net);
    return 0;
}

void virtio_net_set_transmit_hook(struct virtio_net *net, virtio_net_frame_hook hook, void *opaque, bool takes_offloads)
{
    net->transmit_hook = hook;
    net->transmit_hook_opaque = opaque;
    net->transmit_hook_takes_offloads = takes_offloads;
    choose_offer(net);
}

int virtio_net_attach_backend(struct virtio_net *net, struct net_backend *backend, struct error *err)
{
    if (net->backend)
        return error_set(err, "virtio-net: already attached to %s %s", net->backend->ops->kind, net->backend->name);
    int watch = -1;
    if (backend->fd >= 0) {
        watch = machine_watch_fd(net->transport.machine, backend->fd, on_backend_readable, net);
        if (watch < 0)
            return error_set(err, "virtio-net: cannot poll %s %s: the machine's fd table is full", backend->ops->kind,
                             backend->name);
    }
    net->backend = backend;
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
    net_backend_destroy(net->backend);
    net->backend = NULL;
    free_buffers(net);
    net->parked_length = 0;
}

void virtio_net_get_stats(const struct virtio_net *net, struct virtio_net_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    memcpy(stats->mac, net->state.mac, sizeof stats->mac);
    if (net->backend)
        snprintf(stats->backend, sizeof stats->backend, "%s", net->backend->name);
    stats->received_frames = net->received_frames;
    stats->transmitted_frames = net->transmitted_frames;
    stats->dropped_no_buffers = net->dropped_no_buffers;
    stats->dropped_too_large = net->dropped_too_large;
    stats->dropped_offloads = net->dropped_offloads;
    stats->transmit_errors = __atomic_load_n(&net->transmit_errors, __ATOMIC_RELAXED);
}

/* ---- state ----------------------------------------------------------------- */

void virtio_net_after_load(struct virtio_net *net)
{
    drop_parked_frame(net);
    bool started = net->transport.state.status & VIRTIO_STATUS_DRIVER_OK;
    set_backend_offloads(net, started ? backend_offloads_for(negotiated_features(net)) : 0);
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
        state_reader_fail(reader,
                          "virtio-net: saved MAC %02x:%02x:%02x:%02x:%02x:%02x differs "
                          "from this device's %02x:%02x:%02x:%02x:%02x:%02x",
                          mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], own[0], own[1], own[2], own[3], own[4],
                          own[5]);
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
    memcpy(frame + 22, net->state.mac, 6); /* sender hardware address */
    memcpy(frame + 32, net->state.mac, 6); /* target hardware address */
    struct virtio_net_header header;
    memset(&header, 0, sizeof header);
    if (net->transmit_hook)
        net->transmit_hook(net->transmit_hook_opaque, net, &header, frame, sizeof frame);
}
