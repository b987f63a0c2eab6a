/* Mirrored frames the SVM has no receive buffers for wait (mirror_reader.h,
 * mirror_reader_deliver): the primary's NIC leaves such frames in its TAP,
 * so the SVM must get them too, in order, once its guest adds buffers.
 * A test driver plays the SVM's guest (tests/unit/virtio_test_driver.h);
 * the reader thread takes the frames from a socket as from the primary.
 *
 *   1. three frames, no receive buffer: none delivered, none dropped;
 *   2. two buffers added: the first two frames arrive, in order, and the
 *      third waits;
 *   3. one more buffer: the third arrives; the inbound filter ran once
 *      per frame although the frames were offered more than once. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../unit/virtio_test_driver.h"
#include "clock.h"
#include "heartbeat.h"
#include "machine_devices.h"
#include "mirror_framing.h"
#include "mirror_reader.h"
#include "test_check.h"
#include "test_machine.h"

#define RX_QUEUE 0x10000ull
#define TX_QUEUE 0x18000ull
#define RX_BUFFERS 0x100000ull /* 4 KiB apart */
#define FRAMES 3
#define FRAME_BYTES 200u

static void on_dead(void *opaque, const char *reason)
{
    (void)opaque, (void)reason;
}

static unsigned filtered[FRAMES];

/* Counts the filter's runs per frame (its byte 20 says which). */
static void count_filter(void *opaque, const struct virtio_net_header *header, uint8_t *frame, size_t length)
{
    (void)opaque, (void)header;
    if (length > 20 && frame[20] < FRAMES)
        filtered[frame[20]]++;
}

static void make_frame(uint8_t *frame, unsigned number)
{
    memset(frame, 0, FRAME_BYTES);
    static const uint8_t mac[6] = TEST_MACHINE_MAC;
    memcpy(frame, mac, sizeof mac);
    frame[12] = 0x88, frame[13] = 0xb5; /* IEEE "local experimental" */
    frame[20] = (uint8_t)number;
    for (unsigned i = 21; i < FRAME_BYTES; i++)
        frame[i] = (uint8_t)(number * 31 + i);
}

int main(void)
{
    struct machine *svm = test_machine_create(&(struct test_machine_options){ .nic = true });
    struct virtio_net *net = machine_nic(svm, 0);
    struct test_queue rx, tx;
    /* Only VERSION_1: plain frames, no offloads, no mergeable buffers. */
    uint64_t features = VIRTIO_F_VERSION_1;
    CHECK(test_driver_negotiate(&net->transport, features), "FEATURES_OK");
    CHECK(test_queue_setup(&net->transport, &rx, 0, 16, MACHINE_RAM_BASE + RX_QUEUE), "receive queue");
    CHECK(test_queue_setup(&net->transport, &tx, 1, 16, MACHINE_RAM_BASE + TX_QUEUE), "transmit queue");
    test_driver_ok(&net->transport);

    int fds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair");
    struct failure_detector detector;
    failure_detector_init(&detector, 0, on_dead, NULL);
    static struct mirror_reader reader;
    struct error err = { 0 };
    CHECK(mirror_reader_init(&reader, svm, mirror_channel_of_fd(fds[1]), &detector, &err) == 0, "reader: %s",
          err.message);
    mirror_reader_set_inbound_filter(&reader, count_filter, NULL);
    CHECK(mirror_reader_device.setup(&reader) == 0, "the device's setup");
    CHECK(mirror_reader_start(&reader, &err) == 0, "reader thread: %s", err.message);

    /* 1: the primary mirrors three frames; the guest has no buffer. */
    uint8_t frames[FRAMES][FRAME_BYTES];
    for (unsigned i = 0; i < FRAMES; i++) {
        make_frame(frames[i], i);
        uint8_t word[MIRROR_WORD_SIZE], header[VIRTIO_NET_HEADER_SIZE] = { 0 };
        mirror_encode_word(word, 0, FRAME_BYTES);
        struct iovec parts[3] = { { word, sizeof word }, { frames[i], FRAME_BYTES }, { header, sizeof header } };
        CHECK(mirror_send_message(fds[0], parts, 3) == MIRROR_SENT, "frame %u sent", i);
    }
    struct mirror_reader_stats stats;
    for (int waited = 0; waited < 5000; waited++) {
        mirror_reader_get_stats(&reader, &stats);
        if (stats.received == FRAMES)
            break;
        clock_sleep_ms(1);
    }
    CHECK(stats.received == FRAMES, "the reader took %llu of %u frames", (unsigned long long)stats.received, FRAMES);
    mirror_reader_deliver(&reader); /* as the frames-ready watch would */
    mirror_reader_get_stats(&reader, &stats);
    CHECK(stats.delivered == 0 && stats.dropped == 0 && stats.waited_for_room == 1,
          "no buffers: %llu delivered, %llu dropped, %llu waited (want 0, 0, 1)", (unsigned long long)stats.delivered,
          (unsigned long long)stats.dropped, (unsigned long long)stats.waited_for_room);

    /* 2: two buffers: the guest's notification lets the first two in. */
    uint16_t heads[FRAMES];
    for (unsigned i = 0; i < 2; i++)
        heads[i] = test_queue_add(
            svm, &rx, &(struct test_buffer){ MACHINE_RAM_BASE + RX_BUFFERS + 0x1000ull * i, 2048, true }, 1);
    test_queue_kick(&net->transport, &rx);
    mirror_reader_get_stats(&reader, &stats);
    CHECK(stats.delivered == 2 && stats.waited_for_room == 2, "two buffers: %llu delivered, %llu waited (want 2, 2)",
          (unsigned long long)stats.delivered, (unsigned long long)stats.waited_for_room);

    /* 3: the last buffer, the last frame. */
    heads[2] = test_queue_add(svm, &rx, &(struct test_buffer){ MACHINE_RAM_BASE + RX_BUFFERS + 0x2000ull, 2048, true },
                              1);
    test_queue_kick(&net->transport, &rx);
    mirror_reader_get_stats(&reader, &stats);
    CHECK(stats.delivered == FRAMES && stats.dropped == 0, "all buffers: %llu delivered, %llu dropped",
          (unsigned long long)stats.delivered, (unsigned long long)stats.dropped);
    /* In order: each buffer holds the header, then the frame it was given. */
    for (unsigned i = 0; i < FRAMES; i++) {
        uint32_t id = 0, written = 0;
        bool used = test_queue_take_used(svm, &rx, &id, &written);
        const uint8_t *bytes = test_guest_pointer(svm, MACHINE_RAM_BASE + RX_BUFFERS + 0x1000ull * i);
        CHECK(used && id == heads[i] && written == VIRTIO_NET_HEADER_SIZE + FRAME_BYTES &&
                  memcmp(bytes + VIRTIO_NET_HEADER_SIZE, frames[i], FRAME_BYTES) == 0,
              "buffer %u: used %d, id %u, %u bytes: not frame %u", i, used, id, written, i);
        CHECK(filtered[i] == 1, "the inbound filter ran %u times on frame %u", filtered[i], i);
    }

    mirror_reader_stop(&reader);
    mirror_reader_destroy(&reader);
    failure_detector_destroy(&detector);
    close(fds[0]);
    close(fds[1]);
    test_machine_destroy(svm);
    return test_check_finish("mirror_reader_room_test");
}
