/* virtio-net: registers and configuration, the receive and transmit queue
 * logic through a capturing transmit hook (no TAP), save/load; the feature
 * offer, headers in both directions and mergeable receive buffers (still
 * without a TAP, through a hook that takes offloads); and then the TAP
 * backend for real: a persistent TAP in a network namespace of this
 * process's own (nothing touches the host's network), fed and read
 * through AF_PACKET sockets bound to it, one of them with virtio-net
 * headers (PACKET_VNET_HDR) so that offloaded frames can be made and
 * checked. The TAP part needs root; it is skipped (with a SKIP line) when
 * the namespace cannot be created.
 * Prints "FAIL: ..." for each failed check and exits 1 if any failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "machine_devices.h"
#include "net_tap.h"
#include "virtio_net_device.h"
#include "virtio_test_driver.h"

#include "test_check.h"
#include "test_machine.h"

#define VIRTIO_NET_F_CSUM (1ull << 0)
#define VIRTIO_NET_F_GUEST_CSUM (1ull << 1)
#define VIRTIO_NET_F_MAC (1ull << 5)
#define VIRTIO_NET_F_GUEST_TSO4 (1ull << 7)
#define VIRTIO_NET_F_GUEST_TSO6 (1ull << 8)
#define VIRTIO_NET_F_GUEST_ECN (1ull << 9)
#define VIRTIO_NET_F_HOST_TSO4 (1ull << 11)
#define VIRTIO_NET_F_HOST_TSO6 (1ull << 12)
#define VIRTIO_NET_F_HOST_ECN (1ull << 13)
#define VIRTIO_NET_F_MRG_RXBUF (1ull << 15)
#define VIRTIO_NET_F_STATUS (1ull << 16)
#define HEADER_SIZE 12u
/* What a driver without offloads accepts, and everything the device
 * offers with them (what Linux accepts too). */
#define PLAIN_FEATURES (VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS)
#define OFFLOADS                                                                                        \
    (VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6 |  \
     VIRTIO_NET_F_GUEST_ECN | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6 | VIRTIO_NET_F_HOST_ECN | \
     VIRTIO_NET_F_MRG_RXBUF)
#define OFFLOAD_FEATURES (PLAIN_FEATURES | OFFLOADS)
#define TEST_ETHERTYPE 0x88b5u /* IEEE "local experimental" */
#define TAP_NAME "colotest0"

/* Guest RAM layout (offsets from the RAM base): a region per device. */
#define RX_QUEUE_AREA 0x10000ull
#define TX_QUEUE_AREA 0x18000ull
#define RX_BUFFER_AREA 0x100000ull /* receive buffers, 4 KiB apart */
#define TX_BUFFER_AREA 0x200000ull
#define TX_LARGE_AREA 0x300000ull      /* one transmitted frame of up to 64 KiB */
#define DEVICE_AREA_STRIDE 0x400000ull /* second device's region */

static struct machine *machine;

static uint64_t ram(uint64_t offset)
{
    return MACHINE_RAM_BASE + offset;
}

/* ---- the guest's side ------------------------------------------------------ */

struct guest_nic {
    struct virtio_net *net;
    struct test_queue rx, tx;
    uint64_t area; /* this NIC's region in RAM */
    unsigned next_rx_buffer, next_tx_buffer;
};

/* Resets the device, negotiates `features` and sets up both queues (the
 * receive queue with rx_size entries). */
static void guest_set_up_sized(struct guest_nic *guest, struct virtio_net *net, uint64_t area, uint64_t features,
                               uint16_t rx_size)
{
    guest->net = net;
    guest->area = area;
    guest->next_rx_buffer = guest->next_tx_buffer = 0;
    CHECK(test_driver_negotiate(&net->transport, features), "FEATURES_OK did not stick");
    CHECK(test_queue_setup(&net->transport, &guest->rx, 0, rx_size, ram(area + RX_QUEUE_AREA)), "receive queue setup");
    CHECK(test_queue_setup(&net->transport, &guest->tx, 1, 256, ram(area + TX_QUEUE_AREA)), "transmit queue setup");
    test_driver_ok(&net->transport);
}

static void guest_set_up(struct guest_nic *guest, struct virtio_net *net, uint64_t area, uint64_t features)
{
    guest_set_up_sized(guest, net, area, features, 256);
}

/* Adds a receive chain of buffers with the given lengths (in one 4 KiB
 * slot). Returns the head; *address gets the slot's address. */
static uint16_t guest_add_rx(struct guest_nic *guest, const uint32_t *lengths, unsigned count, uint64_t *address)
{
    uint64_t slot = ram(guest->area + RX_BUFFER_AREA + 0x1000ull * (guest->next_rx_buffer++ % 256));
    struct test_buffer buffers[8];
    uint64_t offset = 0;
    for (unsigned i = 0; i < count; i++) {
        buffers[i] = (struct test_buffer){ slot + offset, lengths[i], true };
        offset += lengths[i];
    }
    memset(test_guest_pointer(machine, slot), 0xcc, offset);
    *address = slot;
    return test_queue_add(machine, &guest->rx, buffers, count);
}

static uint16_t guest_add_rx_simple(struct guest_nic *guest, uint64_t *address)
{
    uint32_t length = 2048;
    return guest_add_rx(guest, &length, 1, address);
}

/* Puts header + frame into a transmit chain: the header and the first
 * `split` bytes of the frame in one buffer, the rest in a second. */
static uint16_t guest_add_tx(struct guest_nic *guest, const uint8_t *frame, size_t length, size_t split)
{
    uint64_t slot = ram(guest->area + TX_BUFFER_AREA + 0x4000ull * (guest->next_tx_buffer++ % 64));
    uint8_t *bytes = test_guest_pointer(machine, slot);
    memset(bytes, 0x77, HEADER_SIZE); /* garbage the device must skip */
    memcpy(bytes + HEADER_SIZE, frame, length);
    struct test_buffer buffers[2] = {
        { slot, (uint32_t)(HEADER_SIZE + split), false },
        { slot + HEADER_SIZE + split, (uint32_t)(length - split), false },
    };
    return test_queue_add(machine, &guest->tx, buffers, split < length ? 2 : 1);
}

/* A transmit chain for a frame with a chosen header, in up to three
 * buffers: the header alone, the first `split` bytes of the frame, the
 * rest (the way Linux lays out a TSO frame, minus the page fragments). */
static uint16_t guest_add_tx_with_header(struct guest_nic *guest, const struct virtio_net_header *header,
                                         const uint8_t *frame, size_t length, size_t split)
{
    uint64_t slot = ram(guest->area + TX_LARGE_AREA);
    uint8_t *bytes = test_guest_pointer(machine, slot);
    virtio_net_header_encode(header, bytes);
    memcpy(bytes + HEADER_SIZE, frame, length);
    struct test_buffer buffers[3] = {
        { slot, HEADER_SIZE, false },
        { slot + HEADER_SIZE, (uint32_t)split, false },
        { slot + HEADER_SIZE + split, (uint32_t)(length - split), false },
    };
    return test_queue_add(machine, &guest->tx, buffers, split < length ? 3 : 2);
}

static bool headers_equal(const struct virtio_net_header *a, const struct virtio_net_header *b)
{
    return a->flags == b->flags && a->gso_type == b->gso_type && a->header_length == b->header_length &&
           a->gso_size == b->gso_size && a->checksum_start == b->checksum_start &&
           a->checksum_offset == b->checksum_offset && a->buffer_count == b->buffer_count;
}

static void describe_header(const struct virtio_net_header *h, char *text, size_t size)
{
    snprintf(text, size, "{flags %u gso %u hdr_len %u gso_size %u csum %u+%u buffers %u}", h->flags, h->gso_type,
             h->header_length, h->gso_size, h->checksum_start, h->checksum_offset, h->buffer_count);
}

static void check_header(const struct virtio_net_header *got, const struct virtio_net_header *expected,
                         const char *what)
{
    char got_text[100], expected_text[100];
    describe_header(got, got_text, sizeof got_text);
    describe_header(expected, expected_text, sizeof expected_text);
    CHECK(headers_equal(got, expected), "%s: header %s, expected %s", what, got_text, expected_text);
}

/* Checks that the next used receive elements are the chains `heads` (with
 * buffers at `addresses`, each chain one buffer of `lengths`) holding
 * `frame` behind `header` (whose buffer_count must be `count`). */
static void expect_received_in_chains(struct guest_nic *guest, const uint16_t *heads, const uint64_t *addresses,
                                      const uint32_t *lengths, unsigned count, const struct virtio_net_header *header,
                                      const uint8_t *frame, size_t length, const char *what)
{
    size_t done = 0;
    for (unsigned i = 0; i < count; i++) {
        uint32_t id = 0, written = 0;
        bool got = test_queue_take_used(machine, &guest->rx, &id, &written);
        CHECK(got, "%s: chain %u of %u not used", what, i, count);
        if (!got)
            return;
        CHECK(id == heads[i], "%s: chain %u: used id %u, expected %u", what, i, id, heads[i]);
        const uint8_t *bytes = test_guest_pointer(machine, addresses[i]);
        size_t start = 0;
        if (i == 0) {
            struct virtio_net_header received;
            virtio_net_header_decode(bytes, &received);
            check_header(&received, header, what);
            start = HEADER_SIZE;
        }
        size_t expected = length - done < lengths[i] - start ? length - done : lengths[i] - start;
        CHECK(written == start + expected, "%s: chain %u: used length %u, expected %zu", what, i, written,
              start + expected);
        CHECK(memcmp(bytes + start, frame + done, expected) == 0, "%s: chain %u: frame bytes differ", what, i);
        done += expected;
    }
    CHECK(done == length, "%s: %zu of %zu bytes fit the chains", what, done, length);
}

/* One chain: `head` holding `frame` behind `header` with num_buffers 1. */
static void expect_received_with_header(struct guest_nic *guest, uint16_t head, uint64_t address,
                                        const struct virtio_net_header *header, const uint8_t *frame, size_t length,
                                        const char *what)
{
    struct virtio_net_header expected = *header;
    expected.buffer_count = 1;
    uint32_t room = (uint32_t)(HEADER_SIZE + length);
    expect_received_in_chains(guest, &head, &address, &room, 1, &expected, frame, length, what);
}

/* Checks that the next used receive element is `head` holding `frame`
 * behind a zeroed header with num_buffers = 1. */
static void expect_received(struct guest_nic *guest, uint16_t head, uint64_t address, const uint8_t *frame,
                            size_t length, const char *what)
{
    static const struct virtio_net_header plain;
    expect_received_with_header(guest, head, address, &plain, frame, length, what);
}

static bool nothing_received(struct guest_nic *guest)
{
    const uint8_t *used = test_guest_pointer(machine, guest->rx.used);
    return test_get_le(used + 2, 2) == guest->rx.used_seen;
}

static void make_frame(uint8_t *frame, size_t length, const uint8_t destination[6], unsigned seed)
{
    static const uint8_t source[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x99 };
    memcpy(frame, destination, 6);
    memcpy(frame + 6, source, 6);
    frame[12] = TEST_ETHERTYPE >> 8;
    frame[13] = TEST_ETHERTYPE & 0xff;
    for (size_t i = 14; i < length; i++)
        frame[i] = (uint8_t)(seed * 31 + i * 7);
}

/* A TCP/IPv4 frame of `length` bytes (Ethernet 14, IPv4 20, TCP 20, then
 * payload), well-formed enough for the kernel's checks of an offloaded
 * frame; the TCP checksum field is left as the payload pattern has it. */
static void make_tcp_frame(uint8_t *frame, size_t length, const uint8_t destination[6], unsigned seed)
{
    make_frame(frame, length, destination, seed);
    frame[12] = 0x08;
    frame[13] = 0x00;
    uint8_t *ip = frame + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    ip[2] = (uint8_t)((length - 14) >> 8);
    ip[3] = (uint8_t)(length - 14);
    ip[8] = 64;
    ip[9] = 6; /* TCP */
    memcpy(ip + 12, (const uint8_t[4]){ 10, 0, 0, 1 }, 4);
    memcpy(ip + 16, (const uint8_t[4]){ 10, 0, 0, 2 }, 4);
    uint8_t *tcp = ip + 20;
    memset(tcp, 0, 20);
    tcp[0] = 0x30;
    tcp[1] = 0x39; /* ports 12345 -> 7002 */
    tcp[2] = 0x1b;
    tcp[3] = 0x5a;
    tcp[12] = 5 << 4; /* 20-byte header */
    tcp[13] = 0x18;   /* PSH, ACK */
    tcp[14] = 0xff;
    tcp[15] = 0xff; /* window */
}

/* The header of a TSO frame made by make_tcp_frame. */
static const struct virtio_net_header tso_header = {
    .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
    .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
    .header_length = 54,
    .gso_size = 1448,
    .checksum_start = 34,
    .checksum_offset = 16,
};

/* ---- a transmit hook that keeps what it is given --------------------------- */

#define CAPTURED_FRAME_MAX 32768

struct captured {
    unsigned count;
    size_t lengths[8];
    struct virtio_net_header headers[8];
    uint8_t frames[8][CAPTURED_FRAME_MAX];
};

static void capture_frame(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                          const uint8_t *frame, size_t length)
{
    (void)net;
    struct captured *captured = opaque;
    if (captured->count < 8 && length <= sizeof captured->frames[0]) {
        memcpy(captured->frames[captured->count], frame, length);
        captured->lengths[captured->count] = length;
        captured->headers[captured->count] = *header;
    }
    captured->count++;
}

/* ---- registers, queues, hooks -------------------------------------------- */

static const uint8_t mac_a[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t mac_b[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };

static void test_registers_and_config(struct virtio_net *net)
{
    struct virtio_mmio *transport = &net->transport;
    CHECK(test_mmio_read(transport, VIRTIO_MMIO_DEVICE_ID) == 1, "device id is not 1 (network)");
    uint64_t features = test_device_features(transport);
    CHECK(features & VIRTIO_F_VERSION_1, "VERSION_1 not offered");
    CHECK(features & VIRTIO_NET_F_MAC, "MAC not offered");
    CHECK(features & VIRTIO_NET_F_STATUS, "STATUS not offered");
    /* No TAP: nothing could finish an offloaded frame. */
    CHECK(!(features & OFFLOADS), "offloads offered without a TAP: 0x%llx", (unsigned long long)(features & OFFLOADS));
    for (unsigned queue = 0; queue < 3; queue++) {
        test_mmio_write(transport, VIRTIO_MMIO_QUEUE_SEL, queue);
        uint32_t max = test_mmio_read(transport, VIRTIO_MMIO_QUEUE_NUM_MAX);
        CHECK(max == (queue < 2 ? 256u : 0u), "queue %u size max %u", queue, max);
    }
    uint64_t value = 0;
    for (unsigned i = 0; i < 6; i++)
        CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + i, 1, &value) && value == mac_a[i],
              "mac[%u] reads 0x%llx", i, (unsigned long long)value);
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + 6, 2, &value) && value == 1, "status is not LINK_UP");
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + 4, 4, &value) &&
              value == (uint64_t)(mac_a[4] | mac_a[5] << 8 | 1 << 16),
          "4-byte read across mac/status");
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG, 8, &value) && value == (test_get_le(mac_a, 6) | 1ull << 48),
          "8-byte config read");
    const struct virtio_device_ops *ops = transport->ops;
    CHECK(!ops->config_read(net, 8, 1, &value), "config read past the struct accepted");
    CHECK(!ops->config_read(net, 6, 4, &value), "config read straddling the end accepted");
}

static void test_receive(struct guest_nic *guest)
{
    struct virtio_net *net = guest->net;
    uint8_t frame[1600];
    uint64_t address;

    /* No buffers: dropped and counted. */
    make_frame(frame, 100, mac_a, 1);
    uint64_t dropped = net->dropped_no_buffers;
    CHECK(!virtio_net_receive(net, frame, 100), "receive without buffers succeeded");
    CHECK(net->dropped_no_buffers == dropped + 1, "drop without buffers not counted");

    /* One buffer for header and frame. */
    uint16_t head = guest_add_rx_simple(guest, &address);
    test_queue_kick(&net->transport, &guest->rx);
    test_mmio_write(&net->transport, VIRTIO_MMIO_INTERRUPT_ACK, 3);
    CHECK(virtio_net_receive(net, frame, 100), "receive into a 2 KiB buffer failed");
    expect_received(guest, head, address, frame, 100, "single-buffer receive");
    CHECK(test_mmio_read(&net->transport, VIRTIO_MMIO_INTERRUPT_STATUS) & 1, "no used-buffer interrupt");
    test_mmio_write(&net->transport, VIRTIO_MMIO_INTERRUPT_ACK, 1);

    /* Header alone, then the frame spread over three buffers. */
    make_frame(frame, 1514, mac_a, 2);
    const uint32_t scattered[4] = { HEADER_SIZE, 14, 1000, 500 };
    head = guest_add_rx(guest, scattered, 4, &address);
    CHECK(virtio_net_receive(net, frame, 1514), "scattered receive failed");
    expect_received(guest, head, address, frame, 1514, "scattered receive");

    /* Exactly enough room, then one byte too little. */
    make_frame(frame, 60, mac_a, 3);
    uint32_t exact = HEADER_SIZE + 60;
    head = guest_add_rx(guest, &exact, 1, &address);
    CHECK(virtio_net_receive(net, frame, 60), "receive into an exact-size buffer failed");
    expect_received(guest, head, address, frame, 60, "exact-size receive");
    uint32_t short_by_one = HEADER_SIZE + 59;
    head = guest_add_rx(guest, &short_by_one, 1, &address);
    uint64_t too_large = net->dropped_too_large;
    CHECK(!virtio_net_receive(net, frame, 60), "a frame larger than the chain was delivered");
    CHECK(net->dropped_too_large == too_large + 1, "too-large drop not counted");
    uint32_t id = 0, written = 99;
    CHECK(test_queue_take_used(machine, &guest->rx, &id, &written) && id == head && written == 0,
          "the too-small chain was not returned empty (id %u, length %u)", id, written);
    CHECK(net->received_frames == 3, "received_frames is %llu", (unsigned long long)net->received_frames);

    /* A guest without offloads: a frame whose checksum is still to be done
     * is refused (and takes no chain); DATA_VALID, a mere hint, is
     * dropped from the header instead. */
    make_frame(frame, 300, mac_a, 6);
    head = guest_add_rx_simple(guest, &address);
    struct virtio_net_header header = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                        .checksum_start = 34,
                                        .checksum_offset = 6 };
    uint64_t refused = net->dropped_offloads;
    CHECK(!virtio_net_receive_with_header(net, &header, frame, 300),
          "NEEDS_CSUM delivered to a guest without GUEST_CSUM");
    CHECK(net->dropped_offloads == refused + 1, "refused frame not counted");
    CHECK(nothing_received(guest), "a refused frame used a chain");
    header = (struct virtio_net_header){ .flags = VIRTIO_NET_HDR_F_DATA_VALID, .buffer_count = 9 };
    CHECK(virtio_net_receive_with_header(net, &header, frame, 300), "DATA_VALID frame not delivered");
    expect_received(guest, head, address, frame, 300, "DATA_VALID to a plain guest");
}

static void count_room(void *opaque)
{
    (*(unsigned *)opaque)++;
}

/* virtio_net_offer_frame: a frame without room is the caller's to keep
 * (not dropped, not counted); the room hook hears of new buffers; the
 * frame then goes in. */
static void test_offer_frame(struct guest_nic *guest)
{
    struct virtio_net *net = guest->net;
    uint8_t frame[200];
    make_frame(frame, sizeof frame, mac_a, 7);
    unsigned rooms = 0;
    virtio_net_set_receive_room_hook(net, count_room, &rooms);
    uint64_t dropped = net->dropped_no_buffers, received = net->received_frames;
    CHECK(virtio_net_offer_frame(net, NULL, frame, sizeof frame) == VIRTIO_NET_OFFER_NO_ROOM,
          "an offer without buffers was not left to the caller");
    CHECK(net->dropped_no_buffers == dropped && net->received_frames == received,
          "an offer without buffers was counted as a drop or a receive");
    uint64_t address;
    uint16_t head = guest_add_rx_simple(guest, &address);
    test_queue_kick(&net->transport, &guest->rx);
    CHECK(rooms == 1, "the room hook heard %u times of one receive notification", rooms);
    CHECK(virtio_net_offer_frame(net, NULL, frame, sizeof frame) == VIRTIO_NET_OFFER_DELIVERED,
          "the offer again after the guest added a buffer");
    expect_received(guest, head, address, frame, sizeof frame, "offered frame");
    test_mmio_write(&net->transport, VIRTIO_MMIO_INTERRUPT_ACK, 3);
    virtio_net_set_receive_room_hook(net, NULL, NULL);
}

static void test_transmit(struct guest_nic *guest)
{
    struct virtio_net *net = guest->net;
    static struct captured captured;
    memset(&captured, 0, sizeof captured);
    net->transmit_hook = capture_frame;
    net->transmit_hook_opaque = &captured;

    uint8_t small[60], large[1514];
    make_frame(small, sizeof small, mac_b, 4);
    make_frame(large, sizeof large, mac_b, 5);
    uint16_t heads[3];
    heads[0] = guest_add_tx(guest, small, sizeof small, sizeof small); /* one buffer */
    heads[1] = guest_add_tx(guest, large, sizeof large, 20);           /* header + 20, rest */
    /* Shorter than a header: an error, not a frame. */
    uint64_t runt = ram(guest->area + TX_BUFFER_AREA + 0x3f000);
    struct test_buffer runt_buffer = { runt, 8, false };
    heads[2] = test_queue_add(machine, &guest->tx, &runt_buffer, 1);
    test_mmio_write(&net->transport, VIRTIO_MMIO_INTERRUPT_ACK, 3);
    test_queue_kick(&net->transport, &guest->tx);

    CHECK(captured.count == 2, "hook saw %u frames, expected 2", captured.count);
    CHECK(captured.lengths[0] == sizeof small && memcmp(captured.frames[0], small, sizeof small) == 0,
          "one-buffer frame differs (length %zu)", captured.lengths[0]);
    CHECK(captured.lengths[1] == sizeof large && memcmp(captured.frames[1], large, sizeof large) == 0,
          "two-buffer frame differs (length %zu)", captured.lengths[1]);
    /* The driver wrote garbage headers: without CSUM they mean nothing. */
    static const struct virtio_net_header plain;
    check_header(&captured.headers[0], &plain, "transmit without offloads");
    check_header(&captured.headers[1], &plain, "transmit without offloads");
    CHECK(net->transmitted_frames == 2, "transmitted_frames is %llu", (unsigned long long)net->transmitted_frames);
    CHECK(net->transmit_errors == 1, "runt not counted as a transmit error");
    for (unsigned i = 0; i < 3; i++) {
        uint32_t id = 0, written = 99;
        CHECK(test_queue_take_used(machine, &guest->tx, &id, &written) && id == heads[i] && written == 0,
              "transmit chain %u: used id %u length %u", i, id, written);
    }
    CHECK(test_mmio_read(&net->transport, VIRTIO_MMIO_INTERRUPT_STATUS) & 1, "no transmit interrupt");

    /* The announcement after a migration: a broadcast RARP from our MAC,
     * through the same hook as the guest's frames. */
    captured.count = 0;
    virtio_net_announce(net);
    CHECK(captured.count == 1 && captured.lengths[0] == 60, "announce sent %u frames of %zu bytes", captured.count,
          captured.lengths[0]);
    static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    CHECK(memcmp(captured.frames[0], broadcast, 6) == 0, "announce is not broadcast");
    CHECK(memcmp(captured.frames[0] + 6, net->state.mac, 6) == 0, "announce source is not the VM's MAC");
    CHECK(captured.frames[0][12] == 0x80 && captured.frames[0][13] == 0x35, "announce is not RARP");
    CHECK(captured.frames[0][21] == 3 && memcmp(captured.frames[0] + 22, net->state.mac, 6) == 0,
          "RARP body is not a reverse request for the VM's MAC");
    net->transmit_hook = virtio_net_transmit_to_backend;
    net->transmit_hook_opaque = NULL;
}

static void test_save_load(struct virtio_net *net)
{
    struct state_writer writer;
    state_writer_init(&writer);
    virtio_net_save(net, &writer);
    CHECK(!writer.out_of_memory, "save ran out of memory");
    struct state_reader reader;
    state_reader_init(&reader, writer.data, writer.length);
    virtio_net_load(net, &reader);
    CHECK(!reader.failed, "load into the same NIC failed: %s", reader.error);
    CHECK(reader.position == reader.length, "load left %zu bytes", reader.length - reader.position);

    static struct virtio_net other;
    struct error err;
    if (virtio_net_init(&other, machine, 5, mac_b, &err) < 0) {
        CHECK(0, "init of a second NIC: %s", err.message);
    } else {
        struct virtio_mmio_state before = other.transport.state;
        state_reader_init(&reader, writer.data, writer.length);
        virtio_net_load(&other, &reader);
        CHECK(reader.failed, "load into a NIC with another MAC accepted");
        CHECK(strstr(reader.error, "MAC") && strstr(reader.error, "52:54:00:12:34:56") &&
                  strstr(reader.error, "52:54:00:ab:cd:ef"),
              "unclear error: %s", reader.error);
        CHECK(memcmp(&before, &other.transport.state, sizeof before) == 0, "a refused load changed the transport");
        virtio_net_destroy(&other);
    }
    state_writer_free(&writer);
}

/* ---- offloads without a TAP ------------------------------------------------ */

/* Offloads are offered for a hook that takes them, and the offer changes
 * only while the driver has not started. */
static void test_offer(struct guest_nic *guest, struct captured *captured)
{
    struct virtio_net *net = guest->net;
    virtio_net_set_transmit_hook(net, capture_frame, captured, true);
    CHECK(!(test_device_features(&net->transport) & OFFLOADS), "the offer changed under a started driver");
    test_mmio_write(&net->transport, VIRTIO_MMIO_STATUS, 0);
    uint64_t features = test_device_features(&net->transport);
    CHECK((features & OFFLOADS) == OFFLOADS, "offloads not offered for a hook that takes them: 0x%llx",
          (unsigned long long)features);
    virtio_net_set_transmit_hook(net, capture_frame, captured, false);
    CHECK(!(test_device_features(&net->transport) & OFFLOADS),
          "offloads still offered for a hook that does not take them");
    virtio_net_set_transmit_hook(net, capture_frame, captured, true);
}

/* With CSUM and HOST_TSO4 the guest's header reaches the hook as it was
 * written (but num_buffers), with a 20,000-byte frame. */
static void test_transmit_offloads(struct guest_nic *guest, struct captured *captured)
{
    struct virtio_net *net = guest->net;
    static uint8_t frame[20000];
    make_tcp_frame(frame, sizeof frame, mac_b, 20);
    struct virtio_net_header header = tso_header;
    header.gso_type |= VIRTIO_NET_HDR_GSO_ECN;
    header.buffer_count = 0x5555; /* receive-only: not passed on */
    memset(captured, 0, sizeof *captured);
    guest_add_tx_with_header(guest, &header, frame, sizeof frame, 54);
    test_queue_kick(&net->transport, &guest->tx);
    header.buffer_count = 0;
    CHECK(captured->count == 1, "hook saw %u frames, expected 1", captured->count);
    check_header(&captured->headers[0], &header, "transmitted TSO header");
    CHECK(captured->lengths[0] == sizeof frame && memcmp(captured->frames[0], frame, sizeof frame) == 0,
          "TSO frame differs (length %zu)", captured->lengths[0]);
    uint32_t id, written;
    CHECK(test_queue_take_used(machine, &guest->tx, &id, &written), "TSO chain not returned");
}

/* Offloads without MRG_RXBUF (and without TSO6 and ECN): headers the
 * guest accepted come through with num_buffers 1; the others are refused
 * without using a chain. */
static void test_receive_offloads(struct guest_nic *guest)
{
    struct virtio_net *net = guest->net;
    static uint8_t frame[1600];
    make_tcp_frame(frame, 1514, mac_a, 21);
    uint64_t address;
    uint16_t head = guest_add_rx_simple(guest, &address);
    struct virtio_net_header header = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID,
                                        .checksum_start = 34,
                                        .checksum_offset = 16,
                                        .buffer_count = 7 };
    CHECK(virtio_net_receive_with_header(net, &header, frame, 1514), "NEEDS_CSUM frame not delivered");
    header.buffer_count = 0;
    expect_received_with_header(guest, head, address, &header, frame, 1514, "NEEDS_CSUM receive");

    static const struct {
        uint8_t gso_type;
        const char *what;
    } refused[] = {
        { VIRTIO_NET_HDR_GSO_TCPV6, "TCPv6 segmentation without GUEST_TSO6" },
        { VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, "ECN without GUEST_ECN" },
        { VIRTIO_NET_HDR_GSO_UDP, "UDP fragmentation (never offered)" },
    };
    head = guest_add_rx_simple(guest, &address);
    for (unsigned i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        header = tso_header;
        header.gso_type = refused[i].gso_type;
        uint64_t dropped = net->dropped_offloads;
        CHECK(!virtio_net_receive_with_header(net, &header, frame, 1514), "%s: delivered", refused[i].what);
        CHECK(net->dropped_offloads == dropped + 1, "%s: not counted", refused[i].what);
    }
    CHECK(nothing_received(guest), "a refused frame used a chain");
    /* A GSO frame the guest accepted goes in the chain left over. */
    CHECK(virtio_net_receive_with_header(net, &tso_header, frame, 1514), "TSO4 frame not delivered");
    expect_received_with_header(guest, head, address, &tso_header, frame, 1514, "TSO4 receive");
}

/* Adds `count` receive chains of one buffer of `length` bytes each. */
static void add_rx_chains(struct guest_nic *guest, unsigned count, uint32_t length, uint16_t *heads,
                          uint64_t *addresses, uint32_t *lengths)
{
    for (unsigned i = 0; i < count; i++) {
        heads[i] = guest_add_rx(guest, &length, 1, &addresses[i]);
        lengths[i] = length;
    }
}

/* MRG_RXBUF: one large frame spread over as many chains as it takes, with
 * num_buffers saying how many; nothing taken while they are not all there
 * yet; and a frame that can never fit dropped rather than waited for. */
static void test_mergeable(struct guest_nic *guest)
{
    struct virtio_net *net = guest->net;
    static uint8_t frame[20000];
    make_tcp_frame(frame, sizeof frame, mac_a, 22);
    uint16_t heads[32];
    uint64_t addresses[32];
    uint32_t lengths[32];

    /* 20,012 bytes in 1,500-byte chains: 14 of them (13 full, 512 bytes in
     * the last); the 15th stays for the next frame. */
    add_rx_chains(guest, 15, 1500, heads, addresses, lengths);
    uint64_t received = net->received_frames;
    struct virtio_net_header expected = tso_header;
    expected.buffer_count = 14;
    CHECK(virtio_net_receive_with_header(net, &tso_header, frame, sizeof frame), "20,000-byte frame not delivered");
    expect_received_in_chains(guest, heads, addresses, lengths, 14, &expected, frame, sizeof frame,
                              "mergeable 20,000-byte frame");
    CHECK(net->received_frames == received + 1, "a frame in 14 chains counted as %llu",
          (unsigned long long)(net->received_frames - received));
    CHECK(virtio_net_receive(net, frame, 100), "small frame after the large one");
    expect_received(guest, heads[14], addresses[14], frame, 100, "the chain left over");

    /* Two chains are not enough for 5,012 bytes: nothing is taken, and the
     * same two chains are the first ones used when two more come. */
    add_rx_chains(guest, 2, 1500, heads, addresses, lengths);
    uint64_t dropped = net->dropped_no_buffers;
    CHECK(!virtio_net_receive_with_header(net, &tso_header, frame, 5000), "a frame was delivered into too few chains");
    CHECK(net->dropped_no_buffers == dropped + 1, "too few chains not counted as no buffers");
    CHECK(nothing_received(guest), "chains were used for a frame that did not fit");
    add_rx_chains(guest, 2, 1500, heads + 2, addresses + 2, lengths + 2);
    expected.buffer_count = 4;
    CHECK(virtio_net_receive_with_header(net, &tso_header, frame, 5000),
          "frame not delivered once enough chains were there");
    expect_received_in_chains(guest, heads, addresses, lengths, 4, &expected, frame, 5000,
                              "mergeable frame after more chains came");

    /* Exactly enough room: 12 + 2,988 bytes in two chains. */
    add_rx_chains(guest, 2, 1500, heads, addresses, lengths);
    expected.buffer_count = 2;
    CHECK(virtio_net_receive_with_header(net, &tso_header, frame, 2988), "exact fit not delivered");
    expect_received_in_chains(guest, heads, addresses, lengths, 2, &expected, frame, 2988, "exact fit");

    /* A first chain smaller than the header goes back empty. */
    add_rx_chains(guest, 1, 8, heads, addresses, lengths);
    add_rx_chains(guest, 1, 1500, heads + 1, addresses + 1, lengths + 1);
    uint64_t too_large = net->dropped_too_large;
    CHECK(!virtio_net_receive(net, frame, 100), "frame delivered behind an 8-byte chain");
    CHECK(net->dropped_too_large == too_large + 1, "8-byte chain not counted");
    uint32_t id = 0, written = 99;
    CHECK(test_queue_take_used(machine, &guest->rx, &id, &written) && id == heads[0] && written == 0,
          "the 8-byte chain was not returned empty (id %u, length %u)", id, written);
    CHECK(virtio_net_receive(net, frame, 100), "frame after the 8-byte chain");
    expect_received(guest, heads[1], addresses[1], frame, 100, "the chain behind the 8-byte one");
}

/* A receive queue of 4 with 4 chains of 100 bytes: the driver has given
 * all it can, so a 1,000-byte frame can never fit and is dropped (not
 * waited for); the chains are still there for a frame that fits. */
static void test_mergeable_never_fits(struct guest_nic *guest)
{
    struct virtio_net *net = guest->net;
    uint8_t frame[1000];
    make_frame(frame, sizeof frame, mac_a, 23);
    uint16_t heads[4];
    uint64_t addresses[4];
    uint32_t lengths[4];
    add_rx_chains(guest, 4, 100, heads, addresses, lengths);
    uint64_t too_large = net->dropped_too_large, no_buffers = net->dropped_no_buffers;
    CHECK(!virtio_net_receive(net, frame, sizeof frame), "a frame larger than the whole queue delivered");
    CHECK(net->dropped_too_large == too_large + 1 && net->dropped_no_buffers == no_buffers,
          "a frame that can never fit not counted as too large");
    CHECK(nothing_received(guest), "chains were used for a frame that can never fit");
    static const struct virtio_net_header plain_two = { .buffer_count = 2 };
    CHECK(virtio_net_receive(net, frame, 150), "150 bytes into the 4 x 100 bytes");
    expect_received_in_chains(guest, heads, addresses, lengths, 2, &plain_two, frame, 150,
                              "150 bytes in two 100-byte chains");
}

/* ---- the TAP backend -------------------------------------------------------- */

static bool write_sysctl(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return false;
    bool ok = write(fd, value, strlen(value)) == (ssize_t)strlen(value);
    close(fd);
    return ok;
}

/* A private network namespace with a persistent TAP in it (gone with the
 * namespace when the process exits). */
static bool make_namespace_with_tap(void)
{
    if (unshare(CLONE_NEWNET) < 0) {
        printf("SKIP: TAP tests: cannot create a network namespace: %s\n", strerror(errno));
        return false;
    }
    /* No IPv6 autoconfiguration chatter on the TAP: the test wants to see
     * only its own frames. (Fails harmlessly without IPv6.) */
    write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        printf("SKIP: TAP tests: cannot open /dev/net/tun: %s\n", strerror(errno));
        return false;
    }
    struct ifreq request;
    memset(&request, 0, sizeof request);
    snprintf(request.ifr_name, sizeof request.ifr_name, "%s", TAP_NAME);
    /* Made the way QEMU leaves a TAP it used: vnet headers and offloads
     * on. The offloads stay with the persistent device, and the NIC must
     * reset them, or a guest without offloads gets unfinished checksums. */
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    bool ok = ioctl(fd, TUNSETIFF, &request) == 0 && ioctl(fd, TUNSETPERSIST, 1) == 0 &&
              ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0;
    if (!ok)
        printf("SKIP: TAP tests: cannot create TAP %s: %s\n", TAP_NAME, strerror(errno));
    close(fd);
    return ok;
}

/* Up only once the NIC is attached: with a reader the TAP has carrier, so
 * bringing it up activates its queue at once. */
static bool bring_tap_up(void)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq request;
    memset(&request, 0, sizeof request);
    snprintf(request.ifr_name, sizeof request.ifr_name, "%s", TAP_NAME);
    bool ok = sock >= 0 && ioctl(sock, SIOCGIFFLAGS, &request) == 0;
    request.ifr_flags |= IFF_UP;
    ok = ok && ioctl(sock, SIOCSIFFLAGS, &request) == 0;
    CHECK(ok, "cannot bring %s up: %s", TAP_NAME, strerror(errno));
    if (sock >= 0)
        close(sock);
    return ok;
}

/* An offload of the TAP interface as the kernel has it (ETHTOOL_GTXCSUM,
 * ETHTOOL_GTSO), or -1. */
static int tap_kernel_offload(uint32_t command)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ethtool_value value = { .cmd = command };
    struct ifreq request;
    memset(&request, 0, sizeof request);
    snprintf(request.ifr_name, sizeof request.ifr_name, "%s", TAP_NAME);
    request.ifr_data = (char *)&value;
    bool ok = sock >= 0 && ioctl(sock, SIOCETHTOOL, &request) == 0;
    if (sock >= 0)
        close(sock);
    return ok ? (int)value.data : -1;
}

static bool set_tap_mtu(int mtu)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq request;
    memset(&request, 0, sizeof request);
    snprintf(request.ifr_name, sizeof request.ifr_name, "%s", TAP_NAME);
    request.ifr_mtu = mtu;
    bool ok = sock >= 0 && ioctl(sock, SIOCSIFMTU, &request) == 0;
    CHECK(ok, "cannot set the MTU of %s to %d: %s", TAP_NAME, mtu, strerror(errno));
    if (sock >= 0)
        close(sock);
    return ok;
}

/* The host's side of the wire: a packet socket on the TAP interface;
 * with vnet_header, every frame sent or received on it has a 10-byte
 * virtio_net_hdr (host byte order) in front. */
static int open_packet_socket_with(bool vnet_header)
{
    int sock = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (sock < 0) {
        CHECK(0, "packet socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_ll address;
    memset(&address, 0, sizeof address);
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(ETH_P_ALL);
    address.sll_ifindex = (int)if_nametoindex(TAP_NAME);
    int one = 1;
    if (vnet_header && setsockopt(sock, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) {
        CHECK(0, "PACKET_VNET_HDR: %s", strerror(errno));
        close(sock);
        return -1;
    }
    if (bind(sock, (struct sockaddr *)&address, sizeof address) < 0) {
        CHECK(0, "bind packet socket to %s: %s", TAP_NAME, strerror(errno));
        close(sock);
        return -1;
    }
    return sock;
}

static int open_packet_socket(void)
{
    return open_packet_socket_with(false);
}

static void host_send(int sock, const uint8_t *frame, size_t length)
{
    ssize_t sent = send(sock, frame, length, 0);
    CHECK(sent == (ssize_t)length, "packet socket send: %zd (%s)", sent, strerror(errno));
}

/* Waits for the next frame that came in on the TAP interface (frames we
 * sent ourselves show up as PACKET_OUTGOING and are skipped). */
static ssize_t host_receive(int sock, uint8_t *frame, size_t capacity)
{
    for (;;) {
        struct pollfd waiting = { .fd = sock, .events = POLLIN };
        if (poll(&waiting, 1, 2000) <= 0)
            return -1;
        struct sockaddr_ll from;
        socklen_t from_length = sizeof from;
        ssize_t length = recvfrom(sock, frame, capacity, MSG_DONTWAIT, (struct sockaddr *)&from, &from_length);
        if (length < 0)
            return -1;
        if (from.sll_pkttype != PACKET_OUTGOING)
            return length;
    }
}

/* The packet socket's virtio_net_hdr: the v1 header without num_buffers,
 * in host byte order. */
#define PACKET_VNET_HEADER_SIZE 10

static void host_send_with_header(int sock, const struct virtio_net_header *header, const uint8_t *frame, size_t length)
{
    static uint8_t packet[PACKET_VNET_HEADER_SIZE + 65536];
    uint16_t fields[4] = { header->header_length, header->gso_size, header->checksum_start, header->checksum_offset };
    packet[0] = header->flags;
    packet[1] = header->gso_type;
    memcpy(packet + 2, fields, sizeof fields);
    memcpy(packet + PACKET_VNET_HEADER_SIZE, frame, length);
    host_send(sock, packet, PACKET_VNET_HEADER_SIZE + length);
}

static ssize_t host_receive_with_header(int sock, struct virtio_net_header *header, uint8_t *frame, size_t capacity)
{
    static uint8_t packet[PACKET_VNET_HEADER_SIZE + 65536];
    ssize_t length = host_receive(sock, packet, sizeof packet);
    if (length < PACKET_VNET_HEADER_SIZE)
        return -1;
    uint16_t fields[4];
    memcpy(fields, packet + 2, sizeof fields);
    *header = (struct virtio_net_header){ .flags = packet[0],
                                          .gso_type = packet[1],
                                          .header_length = fields[0],
                                          .gso_size = fields[1],
                                          .checksum_start = fields[2],
                                          .checksum_offset = fields[3] };
    length -= PACKET_VNET_HEADER_SIZE;
    if ((size_t)length > capacity)
        return -1;
    memcpy(frame, packet + PACKET_VNET_HEADER_SIZE, (size_t)length);
    return length;
}

/* A UDP/IPv4 frame whose checksum is left to be done: the field is 0, and
 * the header says "sum from byte 34, store at 34 + 6". */
static void make_udp_frame(uint8_t *frame, size_t length, unsigned seed)
{
    make_tcp_frame(frame, length, mac_a, seed);
    frame[14 + 9] = 17; /* UDP */
    uint8_t *udp = frame + 34;
    udp[4] = (uint8_t)((length - 34) >> 8);
    udp[5] = (uint8_t)(length - 34);
    udp[6] = udp[7] = 0;
}

static const struct virtio_net_header udp_checksum_header = {
    .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
    .checksum_start = 34,
    .checksum_offset = 6,
};

/* What the kernel's software checksum stores for such a frame: the
 * complement of the one's-complement sum from byte 34 on (0 becomes
 * 0xffff). */
static uint16_t finished_checksum(const uint8_t *frame, size_t length)
{
    uint32_t sum = 0;
    for (size_t i = 34; i < length; i += 2)
        sum += (uint32_t)frame[i] << 8 | (i + 1 < length ? frame[i + 1] : 0);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    uint16_t checksum = (uint16_t)~sum;
    return checksum ? checksum : 0xffff;
}

static struct net_tap *tap_of(struct virtio_net *net)
{
    return net_tap_of(net->backend);
}

static bool wait_tap_readable(struct virtio_net *net)
{
    struct pollfd waiting = { .fd = net->backend->fd, .events = POLLIN };
    return poll(&waiting, 1, 2000) == 1;
}

static bool polling_enabled(const struct virtio_net *net)
{
    return net->watch >= 0 && machine->fd_watches[net->watch].enabled;
}

/* Offloads through the TAP, seen from the host through a vnet-header
 * packet socket. */
static void test_tap_offloads(struct virtio_net *net, int sock)
{
    int vnet_sock = open_packet_socket_with(true);
    if (vnet_sock < 0)
        return;
    struct guest_nic guest;
    static uint8_t udp[400], tcp[20000], reply[32768], big[3000];
    uint64_t addresses[2];
    uint16_t heads[2];
    uint32_t lengths[2];

    /* A guest without offloads on a TAP that had them (see
     * make_namespace_with_tap): the kernel finishes the checksum. */
    guest_set_up(&guest, net, DEVICE_AREA_STRIDE, PLAIN_FEATURES);
    make_udp_frame(udp, sizeof udp, 30);
    heads[0] = guest_add_rx_simple(&guest, &addresses[0]);
    test_queue_kick(&net->transport, &guest.rx);
    host_send_with_header(vnet_sock, &udp_checksum_header, udp, sizeof udp);
    CHECK(wait_tap_readable(net), "the UDP frame did not reach the TAP");
    virtio_net_poll_backend(net);
    static uint8_t finished[sizeof udp];
    memcpy(finished, udp, sizeof udp);
    uint16_t checksum = finished_checksum(udp, sizeof udp);
    finished[40] = (uint8_t)(checksum >> 8);
    finished[41] = (uint8_t)checksum;
    expect_received(&guest, heads[0], addresses[0], finished, sizeof finished,
                    "unfinished checksum to a guest without offloads");

    /* The guest takes every offload: so does the TAP now. */
    guest_set_up(&guest, net, DEVICE_AREA_STRIDE, OFFLOAD_FEATURES);
    unsigned all = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    CHECK(tap_of(net)->offloads == all, "TAP offloads 0x%x, expected 0x%x", tap_of(net)->offloads, all);
    CHECK(tap_kernel_offload(ETHTOOL_GTXCSUM) == 1 && tap_kernel_offload(ETHTOOL_GTSO) == 1,
          "the kernel has not the TAP's offloads (tx-csum %d, tso %d)", tap_kernel_offload(ETHTOOL_GTXCSUM),
          tap_kernel_offload(ETHTOOL_GTSO));

    /* Host -> guest: the checksum is left to the guest, as the header says. */
    heads[0] = guest_add_rx_simple(&guest, &addresses[0]);
    test_queue_kick(&net->transport, &guest.rx);
    host_send_with_header(vnet_sock, &udp_checksum_header, udp, sizeof udp);
    CHECK(wait_tap_readable(net), "the UDP frame did not reach the TAP");
    virtio_net_poll_backend(net);
    expect_received_with_header(&guest, heads[0], addresses[0], &udp_checksum_header, udp, sizeof udp,
                                "unfinished checksum to a guest with GUEST_CSUM");

    /* Guest -> host: a 20,000-byte TSO frame goes out whole, with its
     * header (the host's stack would segment it, if it had to). */
    make_tcp_frame(tcp, sizeof tcp, (const uint8_t[6]){ 0x02, 0, 0, 0, 0, 0x99 }, 31);
    guest_add_tx_with_header(&guest, &tso_header, tcp, sizeof tcp, 54);
    test_queue_kick(&net->transport, &guest.tx);
    struct virtio_net_header header = { 0 };
    ssize_t length = host_receive_with_header(vnet_sock, &header, reply, sizeof reply);
    CHECK(length == (ssize_t)sizeof tcp && memcmp(reply, tcp, sizeof tcp) == 0,
          "TSO frame from the guest arrived as %zd bytes (or differs)", length);
    CHECK(header.flags == VIRTIO_NET_HDR_F_NEEDS_CSUM && header.gso_type == VIRTIO_NET_HDR_GSO_TCPV4 &&
              header.gso_size == tso_header.gso_size && header.checksum_start == 34 && header.checksum_offset == 16,
          "TSO header lost on the way to the host");
    CHECK(net->transmit_errors == 0, "transmit errors: %llu", (unsigned long long)net->transmit_errors);

    /* A 3,000-byte frame and one 1,500-byte chain: parked, the chain
     * untouched; a second chain makes it fit, in two buffers. */
    if (set_tap_mtu(4000)) {
        make_frame(big, sizeof big, mac_a, 32);
        add_rx_chains(&guest, 1, 1500, heads, addresses, lengths);
        test_queue_kick(&net->transport, &guest.rx);
        host_send(sock, big, sizeof big);
        CHECK(wait_tap_readable(net), "the 3,000-byte frame did not reach the TAP");
        virtio_net_poll_backend(net);
        CHECK(net->parked_length == sizeof big, "parked %zu bytes, expected %zu", net->parked_length, sizeof big);
        CHECK(!polling_enabled(net), "TAP still polled with a frame parked");
        CHECK(nothing_received(&guest), "a chain was used for a frame that did not fit");
        add_rx_chains(&guest, 1, 2000, heads + 1, addresses + 1, lengths + 1);
        test_queue_kick(&net->transport, &guest.rx);
        CHECK(net->parked_length == 0 && polling_enabled(net), "parked frame not delivered");
        static const struct virtio_net_header plain_two = { .buffer_count = 2 };
        expect_received_in_chains(&guest, heads, addresses, lengths, 2, &plain_two, big, sizeof big,
                                  "parked 3,000-byte frame in two chains");
    }

    /* A state load sets the TAP's offloads from the loaded features; a
     * reset takes them away until the driver negotiates again. */
    tap_of(net)->offloads = 0;
    virtio_net_after_load(net);
    CHECK(tap_of(net)->offloads == all, "TAP offloads 0x%x after a load", tap_of(net)->offloads);
    test_mmio_write(&net->transport, VIRTIO_MMIO_STATUS, 0);
    CHECK(tap_of(net)->offloads == 0, "TAP offloads 0x%x after a reset", tap_of(net)->offloads);
    close(vnet_sock);
}

/* A backend that takes frames and has none: only to be refused. */
static int null_send(struct net_backend *backend, const struct virtio_net_header *header, const uint8_t *frame,
                     size_t length)
{
    (void)backend, (void)header, (void)frame, (void)length;
    return 0;
}

static void null_destroy(struct net_backend *backend)
{
    (void)backend;
}

static int attach_tap(struct virtio_net *net, const char *name, struct error *err)
{
    struct net_backend *tap = net_tap_open(name, err);
    if (!tap)
        return -1;
    if (virtio_net_attach_backend(net, tap, err) < 0) {
        net_backend_destroy(tap);
        return -1;
    }
    return 0;
}

static void test_tap(void)
{
    if (!make_namespace_with_tap())
        return;
    static struct virtio_net net;
    struct error err;
    if (virtio_net_init(&net, machine, 2, mac_a, &err) < 0 || attach_tap(&net, TAP_NAME, &err) < 0) {
        CHECK(0, "TAP NIC: %s", err.message);
        return;
    }
    CHECK(net.backend && net.backend->fd >= 0 && net.watch >= 0, "attach did not open and watch the TAP");
    CHECK(polling_enabled(&net), "TAP not polled after attach");
    CHECK(tap_of(&net)->vnet_header, "the TAP does not carry virtio-net headers");
    CHECK(tap_of(&net)->offloads == 0, "TAP offloads 0x%x before the driver started", tap_of(&net)->offloads);
    CHECK(tap_kernel_offload(ETHTOOL_GTXCSUM) == 0 && tap_kernel_offload(ETHTOOL_GTSO) == 0,
          "the offloads the TAP's previous user set survived the attach (tx-csum %d, tso %d)",
          tap_kernel_offload(ETHTOOL_GTXCSUM), tap_kernel_offload(ETHTOOL_GTSO));
    CHECK((test_device_features(&net.transport) & OFFLOADS) == OFFLOADS, "offloads not offered with a vnet-header TAP");
    static const struct net_backend_ops null_ops = { .kind = "null", .send = null_send, .destroy = null_destroy };
    struct net_backend spare = { .ops = &null_ops, .fd = -1 };
    struct error attach_twice;
    CHECK(virtio_net_attach_backend(&net, &spare, &attach_twice) < 0, "second attach accepted");
    if (!bring_tap_up())
        return;
    int sock = open_packet_socket();
    if (sock < 0)
        return;

    struct guest_nic guest;
    guest_set_up(&guest, &net, DEVICE_AREA_STRIDE, PLAIN_FEATURES);
    CHECK(tap_of(&net)->offloads == 0, "TAP offloads 0x%x for a guest without offloads", tap_of(&net)->offloads);

    /* Host -> guest while the guest has no receive buffers: the first
     * frame is parked and the TAP is no longer polled. */
    static uint8_t first[200], second[300], third[1514], reply[1514], fourth[80], fifth[90];
    make_frame(first, sizeof first, mac_a, 10);
    make_frame(second, sizeof second, mac_a, 11);
    host_send(sock, first, sizeof first);
    CHECK(wait_tap_readable(&net), "the first frame did not reach the TAP");
    virtio_net_poll_backend(&net);
    CHECK(net.parked_length == sizeof first, "parked %zu bytes, expected %zu", net.parked_length, sizeof first);
    CHECK(!polling_enabled(&net), "TAP still polled with a frame parked");
    host_send(sock, second, sizeof second);
    CHECK(wait_tap_readable(&net), "the second frame did not reach the TAP");
    virtio_net_poll_backend(&net); /* parked: must not read */
    CHECK(net.parked_length == sizeof first, "the parked frame changed");

    /* The guest adds buffers: the parked frame comes first, polling
     * resumes, and the next poll brings the second. */
    uint64_t addresses[4];
    uint16_t heads[4];
    for (unsigned i = 0; i < 3; i++)
        heads[i] = guest_add_rx_simple(&guest, &addresses[i]);
    test_queue_kick(&net.transport, &guest.rx);
    CHECK(net.parked_length == 0, "parked frame not delivered after the guest added buffers");
    CHECK(polling_enabled(&net), "TAP not polled again after the parked frame went in");
    expect_received(&guest, heads[0], addresses[0], first, sizeof first, "parked frame");
    virtio_net_poll_backend(&net);
    expect_received(&guest, heads[1], addresses[1], second, sizeof second, "frame behind the parked one");
    CHECK(net.received_frames == 2, "received_frames is %llu", (unsigned long long)net.received_frames);

    /* Guest -> host, byte-exact, small and full-size. */
    make_frame(third, sizeof third, (const uint8_t[6]){ 0x02, 0, 0, 0, 0, 0x99 }, 12);
    guest_add_tx(&guest, third, sizeof third, 100);
    guest_add_tx(&guest, third, 60, 60);
    test_queue_kick(&net.transport, &guest.tx);
    ssize_t length = host_receive(sock, reply, sizeof reply);
    CHECK(length == (ssize_t)sizeof third && memcmp(reply, third, sizeof third) == 0,
          "full-size frame from the guest arrived as %zd bytes (or differs)", length);
    length = host_receive(sock, reply, sizeof reply);
    CHECK(length == 60 && memcmp(reply, third, 60) == 0,
          "60-byte frame from the guest arrived as %zd bytes (or differs)", length);
    CHECK(net.transmitted_frames == 2 && net.transmit_errors == 0, "transmit counters %llu/%llu",
          (unsigned long long)net.transmitted_frames, (unsigned long long)net.transmit_errors);

    /* A state load never leaves the NIC deaf: the parked frame is dropped
     * and polling resumes. One buffer is left; the fifth frame parks. */
    make_frame(fourth, sizeof fourth, mac_a, 13);
    make_frame(fifth, sizeof fifth, mac_a, 14);
    host_send(sock, fourth, sizeof fourth);
    host_send(sock, fifth, sizeof fifth);
    CHECK(wait_tap_readable(&net), "frames did not reach the TAP");
    usleep(10000);
    virtio_net_poll_backend(&net);
    expect_received(&guest, heads[2], addresses[2], fourth, sizeof fourth, "last buffer");
    CHECK(net.parked_length == sizeof fifth, "fifth frame not parked (%zu)", net.parked_length);
    uint64_t dropped = net.dropped_no_buffers;
    virtio_net_after_load(&net);
    CHECK(net.parked_length == 0, "parked frame survived a load");
    CHECK(polling_enabled(&net), "TAP not polled after a load");
    CHECK(net.dropped_no_buffers == dropped + 1, "dropped parked frame not counted");

    /* Same after a device reset by the driver. */
    host_send(sock, fifth, sizeof fifth);
    CHECK(wait_tap_readable(&net), "frame did not reach the TAP");
    virtio_net_poll_backend(&net);
    CHECK(net.parked_length == sizeof fifth, "frame not parked before reset");
    test_mmio_write(&net.transport, VIRTIO_MMIO_STATUS, 0);
    CHECK(net.parked_length == 0, "parked frame survived a reset");
    CHECK(polling_enabled(&net), "TAP not polled after a reset");

    test_tap_offloads(&net, sock);
    close(sock);
    int tap_fd = net.backend->fd;
    virtio_net_destroy(&net);
    CHECK(fcntl(tap_fd, F_GETFD) < 0 && net.backend == NULL && net.watch == -1, "destroy left the TAP open or watched");
}

int main(void)
{
    machine = test_machine_create(&(struct test_machine_options){ .ram_size = 16ull << 20 });
    struct error err;
    static struct virtio_net net;
    if (virtio_net_init(&net, machine, 1, mac_a, &err) < 0) {
        printf("FAIL: virtio_net_init: %s\n", err.message);
        return 1;
    }
    test_registers_and_config(&net);
    struct guest_nic guest;
    /* Before the driver is ready there are no receive buffers. */
    uint8_t frame[64];
    make_frame(frame, sizeof frame, mac_a, 0);
    CHECK(!virtio_net_receive(&net, frame, sizeof frame), "receive before DRIVER_OK succeeded");
    guest_set_up(&guest, &net, 0, PLAIN_FEATURES);
    test_receive(&guest);
    test_offer_frame(&guest);
    test_transmit(&guest);
    test_save_load(&net);

    static struct captured captured;
    test_offer(&guest, &captured);
    guest_set_up(&guest, &net, 0,
                 PLAIN_FEATURES | VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 |
                     VIRTIO_NET_F_HOST_TSO4);
    test_transmit_offloads(&guest, &captured);
    test_receive_offloads(&guest);
    guest_set_up(&guest, &net, 0, OFFLOAD_FEATURES);
    test_mergeable(&guest);
    guest_set_up_sized(&guest, &net, 0, OFFLOAD_FEATURES, 4);
    test_mergeable_never_fits(&guest);
    virtio_net_destroy(&net);
    test_tap();
    test_machine_destroy(machine);
    if (test_check_failures) {
        printf("%d check(s) failed\n", test_check_failures);
        return 1;
    }
    printf("virtio_net_test: all checks passed\n");
    return 0;
}
