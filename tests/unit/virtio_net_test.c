/* virtio-net: registers and configuration, the receive and transmit queue
 * logic through a capturing transmit hook (no TAP), save/load, and then
 * the TAP backend for real: a persistent TAP in a network namespace of
 * this process's own (nothing touches the host's network), fed and read
 * through an AF_PACKET socket bound to it. The TAP part needs root; it is
 * skipped (with a SKIP line) when the namespace cannot be created.
 * Prints "FAIL: ..." for each failed check and exits 1 if any failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
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

#include "machine.h"
#include "virtio_net.h"
#include "virtio_test_driver.h"

static int failures;

static void check_at(int line, int condition, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void check_at(int line, int condition, const char *format, ...)
{
    if (condition)
        return;
    failures++;
    printf("FAIL: virtio_net_test.c:%d: ", line);
    va_list args;
    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    printf("\n");
}
#define CHECK(condition, ...) check_at(__LINE__, !!(condition), __VA_ARGS__)

#define VIRTIO_NET_F_MAC (1ull << 5)
#define VIRTIO_NET_F_STATUS (1ull << 16)
#define HEADER_SIZE 12u
#define TEST_ETHERTYPE 0x88b5u            /* IEEE "local experimental" */
#define TAP_NAME "colotest0"

/* Guest RAM layout (offsets from the RAM base): a region per device. */
#define RX_QUEUE_AREA 0x10000ull
#define TX_QUEUE_AREA 0x18000ull
#define RX_BUFFER_AREA 0x100000ull        /* receive buffers, 4 KiB apart */
#define TX_BUFFER_AREA 0x200000ull
#define DEVICE_AREA_STRIDE 0x400000ull    /* second device's region */

static struct machine machine;

static uint64_t ram(uint64_t offset)
{
    return MACHINE_RAM_BASE + offset;
}

/* ---- the guest's side ------------------------------------------------------ */

struct guest_nic {
    struct virtio_net *net;
    struct test_queue rx, tx;
    uint64_t area;                        /* this NIC's region in RAM */
    unsigned next_rx_buffer, next_tx_buffer;
};

static void guest_set_up(struct guest_nic *guest, struct virtio_net *net, uint64_t area)
{
    guest->net = net;
    guest->area = area;
    guest->next_rx_buffer = guest->next_tx_buffer = 0;
    CHECK(test_driver_negotiate(&net->transport,
                                VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS),
          "FEATURES_OK did not stick");
    CHECK(test_queue_setup(&net->transport, &guest->rx, 0, 256, ram(area + RX_QUEUE_AREA)),
          "receive queue setup");
    CHECK(test_queue_setup(&net->transport, &guest->tx, 1, 256, ram(area + TX_QUEUE_AREA)),
          "transmit queue setup");
    test_driver_ok(&net->transport);
}

/* Adds a receive chain of buffers with the given lengths (in one 4 KiB
 * slot). Returns the head; *address gets the slot's address. */
static uint16_t guest_add_rx(struct guest_nic *guest, const uint32_t *lengths, unsigned count,
                             uint64_t *address)
{
    uint64_t slot = ram(guest->area + RX_BUFFER_AREA + 0x1000ull * (guest->next_rx_buffer++ % 256));
    struct test_buffer buffers[8];
    uint64_t offset = 0;
    for (unsigned i = 0; i < count; i++) {
        buffers[i] = (struct test_buffer){ slot + offset, lengths[i], true };
        offset += lengths[i];
    }
    memset(test_guest_pointer(&machine, slot), 0xcc, offset);
    *address = slot;
    return test_queue_add(&machine, &guest->rx, buffers, count);
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
    uint8_t *bytes = test_guest_pointer(&machine, slot);
    memset(bytes, 0x77, HEADER_SIZE);       /* garbage the device must skip */
    memcpy(bytes + HEADER_SIZE, frame, length);
    struct test_buffer buffers[2] = {
        { slot, (uint32_t)(HEADER_SIZE + split), false },
        { slot + HEADER_SIZE + split, (uint32_t)(length - split), false },
    };
    return test_queue_add(&machine, &guest->tx, buffers, split < length ? 2 : 1);
}

/* Checks that the next used receive element is `head` holding `frame`
 * behind a zeroed header with num_buffers = 1. */
static void expect_received(struct guest_nic *guest, uint16_t head, uint64_t address,
                            const uint8_t *frame, size_t length, const char *what)
{
    uint32_t id = 0, written = 0;
    bool got = test_queue_take_used(&machine, &guest->rx, &id, &written);
    CHECK(got, "%s: nothing received", what);
    if (!got)
        return;
    CHECK(id == head, "%s: used id %u, expected %u", what, id, head);
    CHECK(written == HEADER_SIZE + length, "%s: used length %u, expected %zu", what, written,
          HEADER_SIZE + length);
    const uint8_t *bytes = test_guest_pointer(&machine, address);
    static const uint8_t header[HEADER_SIZE] = { [10] = 1 };
    CHECK(memcmp(bytes, header, HEADER_SIZE) == 0, "%s: header is not zero with num_buffers 1", what);
    CHECK(memcmp(bytes + HEADER_SIZE, frame, length) == 0, "%s: frame differs", what);
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

/* ---- a transmit hook that keeps what it is given --------------------------- */

struct captured {
    unsigned count;
    size_t lengths[8];
    uint8_t frames[8][2048];
};

static void capture_frame(void *opaque, struct virtio_net *net, const uint8_t *frame, size_t length)
{
    (void)net;
    struct captured *captured = opaque;
    if (captured->count < 8 && length <= sizeof captured->frames[0]) {
        memcpy(captured->frames[captured->count], frame, length);
        captured->lengths[captured->count] = length;
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
    CHECK(!(features & (1ull << 15)), "MRG_RXBUF offered");
    CHECK(!(features & 1ull), "CSUM offered");
    for (unsigned queue = 0; queue < 3; queue++) {
        test_mmio_write(transport, VIRTIO_MMIO_QUEUE_SEL, queue);
        uint32_t max = test_mmio_read(transport, VIRTIO_MMIO_QUEUE_NUM_MAX);
        CHECK(max == (queue < 2 ? 256u : 0u), "queue %u size max %u", queue, max);
    }
    uint64_t value = 0;
    for (unsigned i = 0; i < 6; i++)
        CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + i, 1, &value) && value == mac_a[i],
              "mac[%u] reads 0x%llx", i, (unsigned long long)value);
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + 6, 2, &value) && value == 1,
          "status is not LINK_UP");
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + 4, 4, &value) &&
          value == (uint64_t)(mac_a[4] | mac_a[5] << 8 | 1 << 16), "4-byte read across mac/status");
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG, 8, &value) &&
          value == (test_get_le(mac_a, 6) | 1ull << 48), "8-byte config read");
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
    CHECK(test_queue_take_used(&machine, &guest->rx, &id, &written) && id == head && written == 0,
          "the too-small chain was not returned empty (id %u, length %u)", id, written);
    CHECK(net->received_frames == 3, "received_frames is %llu", (unsigned long long)net->received_frames);
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
    heads[0] = guest_add_tx(guest, small, sizeof small, sizeof small);   /* one buffer */
    heads[1] = guest_add_tx(guest, large, sizeof large, 20);             /* header + 20, rest */
    /* Shorter than a header: an error, not a frame. */
    uint64_t runt = ram(guest->area + TX_BUFFER_AREA + 0x3f000);
    struct test_buffer runt_buffer = { runt, 8, false };
    heads[2] = test_queue_add(&machine, &guest->tx, &runt_buffer, 1);
    test_mmio_write(&net->transport, VIRTIO_MMIO_INTERRUPT_ACK, 3);
    test_queue_kick(&net->transport, &guest->tx);

    CHECK(captured.count == 2, "hook saw %u frames, expected 2", captured.count);
    CHECK(captured.lengths[0] == sizeof small && memcmp(captured.frames[0], small, sizeof small) == 0,
          "one-buffer frame differs (length %zu)", captured.lengths[0]);
    CHECK(captured.lengths[1] == sizeof large && memcmp(captured.frames[1], large, sizeof large) == 0,
          "two-buffer frame differs (length %zu)", captured.lengths[1]);
    CHECK(net->transmitted_frames == 2, "transmitted_frames is %llu",
          (unsigned long long)net->transmitted_frames);
    CHECK(net->transmit_errors == 1, "runt not counted as a transmit error");
    for (unsigned i = 0; i < 3; i++) {
        uint32_t id = 0, written = 99;
        CHECK(test_queue_take_used(&machine, &guest->tx, &id, &written) && id == heads[i] && written == 0,
              "transmit chain %u: used id %u length %u", i, id, written);
    }
    CHECK(test_mmio_read(&net->transport, VIRTIO_MMIO_INTERRUPT_STATUS) & 1, "no transmit interrupt");
    net->transmit_hook = virtio_net_transmit_to_tap;
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
    if (virtio_net_init(&other, &machine, 5, mac_b, &err) < 0) {
        CHECK(0, "init of a second NIC: %s", err.message);
    } else {
        struct virtio_mmio_state before = other.transport.state;
        state_reader_init(&reader, writer.data, writer.length);
        virtio_net_load(&other, &reader);
        CHECK(reader.failed, "load into a NIC with another MAC accepted");
        CHECK(strstr(reader.error, "MAC") && strstr(reader.error, "52:54:00:12:34:56") &&
              strstr(reader.error, "52:54:00:ab:cd:ef"), "unclear error: %s", reader.error);
        CHECK(memcmp(&before, &other.transport.state, sizeof before) == 0,
              "a refused load changed the transport");
        virtio_net_destroy(&other);
    }
    state_writer_free(&writer);
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
    request.ifr_flags = IFF_TAP | IFF_NO_PI;
    bool ok = ioctl(fd, TUNSETIFF, &request) == 0 && ioctl(fd, TUNSETPERSIST, 1) == 0;
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

/* The host's side of the wire: a packet socket on the TAP interface. */
static int open_packet_socket(void)
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
    if (bind(sock, (struct sockaddr *)&address, sizeof address) < 0) {
        CHECK(0, "bind packet socket to %s: %s", TAP_NAME, strerror(errno));
        close(sock);
        return -1;
    }
    return sock;
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
        ssize_t length = recvfrom(sock, frame, capacity, MSG_DONTWAIT, (struct sockaddr *)&from,
                                  &from_length);
        if (length < 0)
            return -1;
        if (from.sll_pkttype != PACKET_OUTGOING)
            return length;
    }
}

static bool wait_tap_readable(struct virtio_net *net)
{
    struct pollfd waiting = { .fd = net->tap_fd, .events = POLLIN };
    return poll(&waiting, 1, 2000) == 1;
}

static bool polling_enabled(const struct virtio_net *net)
{
    return net->watch >= 0 && machine.fd_watches[net->watch].enabled;
}

static void test_tap(void)
{
    if (!make_namespace_with_tap())
        return;
    static struct virtio_net net;
    struct error err;
    if (virtio_net_init(&net, &machine, 2, mac_a, &err) < 0 ||
        virtio_net_attach_tap(&net, TAP_NAME, &err) < 0) {
        CHECK(0, "TAP NIC: %s", err.message);
        return;
    }
    CHECK(net.tap_fd >= 0 && net.watch >= 0, "attach did not open and watch the TAP");
    CHECK(polling_enabled(&net), "TAP not polled after attach");
    struct error attach_twice;
    CHECK(virtio_net_attach_tap(&net, TAP_NAME, &attach_twice) < 0, "second attach accepted");
    if (!bring_tap_up())
        return;
    int sock = open_packet_socket();
    if (sock < 0)
        return;

    struct guest_nic guest;
    guest_set_up(&guest, &net, DEVICE_AREA_STRIDE);

    /* Host -> guest while the guest has no receive buffers: the first
     * frame is parked and the TAP is no longer polled. */
    static uint8_t first[200], second[300], third[1514], reply[1514], fourth[80], fifth[90];
    make_frame(first, sizeof first, mac_a, 10);
    make_frame(second, sizeof second, mac_a, 11);
    host_send(sock, first, sizeof first);
    CHECK(wait_tap_readable(&net), "the first frame did not reach the TAP");
    virtio_net_poll_tap(&net);
    CHECK(net.parked_length == sizeof first, "parked %zu bytes, expected %zu", net.parked_length,
          sizeof first);
    CHECK(!polling_enabled(&net), "TAP still polled with a frame parked");
    host_send(sock, second, sizeof second);
    CHECK(wait_tap_readable(&net), "the second frame did not reach the TAP");
    virtio_net_poll_tap(&net);      /* parked: must not read */
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
    virtio_net_poll_tap(&net);
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
    virtio_net_poll_tap(&net);
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
    virtio_net_poll_tap(&net);
    CHECK(net.parked_length == sizeof fifth, "frame not parked before reset");
    test_mmio_write(&net.transport, VIRTIO_MMIO_STATUS, 0);
    CHECK(net.parked_length == 0, "parked frame survived a reset");
    CHECK(polling_enabled(&net), "TAP not polled after a reset");

    close(sock);
    virtio_net_destroy(&net);
    CHECK(net.tap_fd == -1 && net.watch == -1, "destroy left the TAP open or watched");
}

int main(void)
{
    struct machine_config config;
    machine_config_defaults(&config);
    config.ram_size = 16ull << 20;
    config.console_output_fd = -1;
    struct error err;
    if (machine_create(&machine, &config, &err) < 0) {
        printf("FAIL: machine_create: %s\n", err.message);
        return 1;
    }
    static struct virtio_net net;
    if (virtio_net_init(&net, &machine, 1, mac_a, &err) < 0) {
        printf("FAIL: virtio_net_init: %s\n", err.message);
        return 1;
    }
    test_registers_and_config(&net);
    struct guest_nic guest;
    /* Before the driver is ready there are no receive buffers. */
    uint8_t frame[64];
    make_frame(frame, sizeof frame, mac_a, 0);
    CHECK(!virtio_net_receive(&net, frame, sizeof frame), "receive before DRIVER_OK succeeded");
    guest_set_up(&guest, &net, 0);
    test_receive(&guest);
    test_transmit(&guest);
    test_save_load(&net);
    virtio_net_destroy(&net);
    test_tap();
    machine_destroy(&machine);
    if (failures) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("virtio_net_test: all checks passed\n");
    return 0;
}
