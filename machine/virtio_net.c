/* virtio-net (virtio 1.1 section 5.1) with a TAP backend.
 *
 * Receive: every frame goes through virtio_net_receive (or, from the TAP,
 * its parking variant) and lands in ONE receive chain: a zeroed 12-byte
 * virtio_net_hdr_v1 with num_buffers = 1, then the frame. No offloads and
 * no mergeable buffers are offered, so a chain is always one frame.
 *
 * Transmit: on a notification of the transmit queue every chain is popped,
 * its header skipped, the frame gathered and handed to transmit_hook.
 *
 * TAP flow control keeps one invariant: the TAP is polled exactly when no
 * frame is parked. A frame read while the guest has no receive buffers is
 * parked and polling stops (the kernel keeps queueing, and drops at its own
 * limit); when the guest adds buffers the parked frame goes first and
 * polling resumes. Reset, DRIVER_OK and a state load all drop or deliver
 * the parked frame and resume polling, so "not polling" can never outlive
 * the situation that caused it. */
#include "virtio_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "machine.h"

#define VIRTIO_NET_SECTION_ID 0x564e4554u      /* "VNET" */
#define VIRTIO_NET_SECTION_VERSION 1

#define VIRTIO_NET_QUEUE_SIZE_MAX 256

/* Feature bits (section 5.1.3). */
#define VIRTIO_NET_F_MAC (1ull << 5)
#define VIRTIO_NET_F_STATUS (1ull << 16)
#define VIRTIO_NET_S_LINK_UP 1u

/* struct virtio_net_hdr_v1: flags u8, gso_type u8, hdr_len, gso_size,
 * csum_start, csum_offset, num_buffers (u16 each, little-endian). */
#define VIRTIO_NET_HEADER_SIZE 12u
#define VIRTIO_NET_HEADER_NUM_BUFFERS 10u

/* Configuration space: mac[6] at 0, status u16 at 6. */
#define CONFIG_MAC 0
#define CONFIG_STATUS 6
#define CONFIG_SIZE 8

/* Frames read from the TAP per call of the readable handler, so a flood
 * cannot keep the machine thread from running the guest. */
#define TAP_FRAMES_PER_POLL 64

enum receive_result {
    RECEIVE_DELIVERED,
    RECEIVE_NO_BUFFERS,       /* no receive chain (or the queue is broken) */
    RECEIVE_TOO_LARGE,        /* a chain was used up, the frame dropped */
};

/* Puts one frame into one receive chain, without counting drops for lack
 * of buffers (the caller decides whether that is a drop or a park) and
 * without the interrupt: callers notify once per batch (see
 * notify_received). */
static enum receive_result deliver_frame(struct virtio_net *net, const uint8_t *frame,
                                         size_t length)
{
    struct virtio_chain chain;
    if (virtio_queue_pop(&net->transport, VIRTIO_NET_RECEIVE_QUEUE, &chain) != 1)
        return RECEIVE_NO_BUFFERS;
    if (length > VIRTIO_NET_MAX_FRAME ||
        chain.writable_length < VIRTIO_NET_HEADER_SIZE + (uint64_t)length) {
        /* The chain was popped and cannot be put back: return it empty
         * (the driver counts a zero-length receive as a length error). */
        net->dropped_too_large++;
        virtio_queue_push(&net->transport, VIRTIO_NET_RECEIVE_QUEUE, &chain, 0);
        return RECEIVE_TOO_LARGE;
    }
    uint8_t header[VIRTIO_NET_HEADER_SIZE] = { 0 };
    header[VIRTIO_NET_HEADER_NUM_BUFFERS] = 1;
    size_t written = virtio_chain_write(&net->transport, &chain, 0, header, sizeof header);
    written += virtio_chain_write(&net->transport, &chain, sizeof header, frame, length);
    virtio_queue_push(&net->transport, VIRTIO_NET_RECEIVE_QUEUE, &chain, (uint32_t)written);
    net->received_frames++;
    return RECEIVE_DELIVERED;
}

static void notify_received(struct virtio_net *net)
{
    virtio_queue_notify(&net->transport, VIRTIO_NET_RECEIVE_QUEUE);
}

/* A frame too large for the chain counts as "could not deliver" too; only
 * a lack of buffers is counted as dropped_no_buffers. */
bool virtio_net_receive(struct virtio_net *net, const uint8_t *frame, size_t length)
{
    enum receive_result result = deliver_frame(net, frame, length);
    if (result == RECEIVE_NO_BUFFERS)
        net->dropped_no_buffers++;
    else
        notify_received(net);
    return result == RECEIVE_DELIVERED;
}

static void set_polling(struct virtio_net *net, bool enabled)
{
    if (net->watch >= 0)
        machine_watch_enable(net->transport.machine, net->watch, enabled);
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
        if (deliver_frame(net, net->parked_frame, net->parked_length) == RECEIVE_NO_BUFFERS)
            return;
        notify_received(net);
    }
    net->parked_length = 0;
    set_polling(net, true);
}

/* Reads frames straight into parked_frame: if the guest takes one, the
 * buffer is free again; if it has no buffers, the frame is already parked. */
void virtio_net_poll_tap(struct virtio_net *net)
{
    if (net->tap_fd < 0 || net->parked_length > 0)
        return;
    unsigned used_chains = 0;
    for (unsigned i = 0; i < TAP_FRAMES_PER_POLL; i++) {
        ssize_t length = read(net->tap_fd, net->parked_frame, VIRTIO_NET_MAX_FRAME);
        if (length < 0 && errno == EINTR)
            continue;
        if (length < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            /* Not a frame and not "empty" (e.g. the TAP went away): stop
             * polling so a persistent error does not spin the machine
             * thread. The next receive-queue notification retries. */
            set_polling(net, false);
        }
        if (length <= 0)
            break;
        if (deliver_frame(net, net->parked_frame, (size_t)length) == RECEIVE_NO_BUFFERS) {
            net->parked_length = (size_t)length;
            set_polling(net, false);
            break;
        }
        used_chains++;
    }
    if (used_chains > 0)
        notify_received(net);
}

static void on_tap_readable(void *opaque)
{
    virtio_net_poll_tap(opaque);
}

void virtio_net_transmit_to_tap(void *opaque, struct virtio_net *net,
                                const uint8_t *frame, size_t length)
{
    (void)opaque;
    if (net->tap_fd < 0)
        return;     /* no backend: like an unplugged cable */
    ssize_t done;
    do
        done = write(net->tap_fd, frame, length);
    while (done < 0 && errno == EINTR);
    /* The TAP is non-blocking: a full queue (EAGAIN, ENOBUFS) or any
     * other failure drops the frame, as a real NIC would; never wait. */
    if (done != (ssize_t)length)
        net->transmit_errors++;
}

static void transmit_all(struct virtio_net *net)
{
    /* 64 KiB on the machine thread's stack (the default 8 MiB), like the
     * block device's bounce buffer. */
    uint8_t frame[VIRTIO_NET_MAX_FRAME];
    struct virtio_chain chain;
    unsigned served = 0;
    while (virtio_queue_pop(&net->transport, VIRTIO_NET_TRANSMIT_QUEUE, &chain) == 1) {
        served++;
        uint64_t readable = chain.readable_length;
        if (readable < VIRTIO_NET_HEADER_SIZE ||
            readable - VIRTIO_NET_HEADER_SIZE > VIRTIO_NET_MAX_FRAME) {
            net->transmit_errors++;
        } else {
            size_t length = (size_t)(readable - VIRTIO_NET_HEADER_SIZE);
            size_t copied = virtio_chain_read(&net->transport, &chain, VIRTIO_NET_HEADER_SIZE,
                                              frame, length);
            if (copied != length) {
                net->transmit_errors++;
            } else {
                net->transmitted_frames++;
                net->transmit_hook(net->transmit_hook_opaque, net, frame, length);
            }
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

static void net_reset(void *device)
{
    struct virtio_net *net = device;
    drop_parked_frame(net);
    set_polling(net, true);
}

static void net_driver_ready(void *device)
{
    retry_parked_frame(device);
}

static const struct virtio_device_ops net_ops = {
    .device_id = VIRTIO_ID_NET,
    .features = VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS,
    .queue_count = 2,
    .queue_size_max = VIRTIO_NET_QUEUE_SIZE_MAX,
    .config_read = net_config_read,
    .config_write = net_config_write,
    .queue_notify = net_queue_notify,
    .reset = net_reset,
    .driver_ready = net_driver_ready,
};

/* ---- lifetime -------------------------------------------------------------- */

int virtio_net_init(struct virtio_net *net, struct machine *machine, unsigned slot,
                    const uint8_t mac[6], struct error *err)
{
    memset(net, 0, sizeof *net);
    net->tap_fd = -1;
    net->watch = -1;
    memcpy(net->state.mac, mac, sizeof net->state.mac);
    net->transmit_hook = virtio_net_transmit_to_tap;
    net->transmit_hook_opaque = NULL;
    net->parked_frame = malloc(VIRTIO_NET_MAX_FRAME);
    if (!net->parked_frame)
        return error_set(err, "virtio-net: out of memory for the receive buffer");
    virtio_mmio_init(&net->transport, machine, slot, &net_ops, net);
    return 0;
}

int virtio_net_attach_tap(struct virtio_net *net, const char *name, struct error *err)
{
    if (net->tap_fd >= 0)
        return error_set(err, "virtio-net: already attached to TAP %s", net->tap_name);
    struct ifreq request;
    memset(&request, 0, sizeof request);
    if (strlen(name) >= sizeof request.ifr_name || strlen(name) >= sizeof net->tap_name)
        return error_set(err, "virtio-net: TAP name '%s' is longer than %zu characters",
                         name, sizeof request.ifr_name - 1);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "virtio-net: cannot open /dev/net/tun for TAP %s", name);
    strcpy(request.ifr_name, name);
    request.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ioctl(fd, TUNSETIFF, &request) < 0) {
        error_set_errno(err, "virtio-net: cannot attach to TAP %s", name);
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
    net->watch = watch;
    net->parked_length = 0;
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
    free(net->parked_frame);
    net->parked_frame = NULL;
    net->parked_length = 0;
}

/* ---- state ----------------------------------------------------------------- */

void virtio_net_after_load(struct virtio_net *net)
{
    drop_parked_frame(net);
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
