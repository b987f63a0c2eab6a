/* A secondary's mirror reader with an SVM for the proxy's tests: a test
 * machine whose NIC a test driver set up (tests/unit/virtio_test_driver.h,
 * no receive buffers yet), a socketpair whose far end plays the primary,
 * the reader's device set up and its thread started. Frames are
 * recognisable by a number (byte 20). */
#ifndef COLO_TESTS_PROXY_MIRROR_READER_RIG_H
#define COLO_TESTS_PROXY_MIRROR_READER_RIG_H

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

#define RIG_RX_QUEUE 0x10000ull
#define RIG_TX_QUEUE 0x18000ull
#define RIG_RX_BUFFERS 0x100000ull /* 4 KiB apart */
#define RIG_FRAME_BYTES 200u

struct mirror_reader_rig {
    struct machine *svm;
    struct virtio_net *net;
    struct test_queue rx, tx;
    int fds[2]; /* fds[0]: the primary's end */
    struct failure_detector detector;
    struct mirror_reader reader; /* large: keep the rig static */
};

static void rig_on_dead(void *opaque, const char *reason)
{
    (void)opaque, (void)reason;
}

/* filter: the reader's inbound filter, or NULL. */
static void mirror_reader_rig_start(struct mirror_reader_rig *rig, virtio_net_receive_filter filter)
{
    rig->svm = test_machine_create(&(struct test_machine_options){ .nic = true });
    rig->net = machine_nic(rig->svm, 0);
    /* Only VERSION_1: plain frames, no offloads, no mergeable buffers. */
    CHECK(test_driver_negotiate(&rig->net->transport, VIRTIO_F_VERSION_1), "FEATURES_OK");
    CHECK(test_queue_setup(&rig->net->transport, &rig->rx, 0, 16, MACHINE_RAM_BASE + RIG_RX_QUEUE), "receive queue");
    CHECK(test_queue_setup(&rig->net->transport, &rig->tx, 1, 16, MACHINE_RAM_BASE + RIG_TX_QUEUE), "transmit queue");
    test_driver_ok(&rig->net->transport);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, rig->fds) == 0, "socketpair");
    failure_detector_init(&rig->detector, 0, rig_on_dead, NULL);
    struct error err = { 0 };
    CHECK(mirror_reader_init(&rig->reader, rig->svm, mirror_channel_of_fd(rig->fds[1]), &rig->detector, &err) == 0,
          "reader: %s", err.message);
    if (filter)
        mirror_reader_set_inbound_filter(&rig->reader, filter, NULL);
    CHECK(mirror_reader_device.setup(&rig->reader) == 0, "the device's setup");
    CHECK(mirror_reader_start(&rig->reader, &err) == 0, "reader thread: %s", err.message);
}

static void mirror_reader_rig_finish(struct mirror_reader_rig *rig)
{
    mirror_reader_stop(&rig->reader);
    mirror_reader_destroy(&rig->reader);
    failure_detector_destroy(&rig->detector);
    close(rig->fds[0]);
    close(rig->fds[1]);
    test_machine_destroy(rig->svm);
}

static void mirror_reader_rig_make_frame(uint8_t *frame, unsigned number)
{
    memset(frame, 0, RIG_FRAME_BYTES);
    static const uint8_t mac[6] = TEST_MACHINE_MAC;
    memcpy(frame, mac, sizeof mac);
    frame[12] = 0x88, frame[13] = 0xb5; /* IEEE "local experimental" */
    frame[20] = (uint8_t)number;
    for (unsigned i = 21; i < RIG_FRAME_BYTES; i++)
        frame[i] = (uint8_t)(number * 31 + i);
}

/* The primary mirrors frames first .. first + count - 1. */
static void mirror_reader_rig_mirror(struct mirror_reader_rig *rig, unsigned first, unsigned count)
{
    for (unsigned i = first; i < first + count; i++) {
        uint8_t frame[RIG_FRAME_BYTES], word[MIRROR_WORD_SIZE], header[VIRTIO_NET_HEADER_SIZE] = { 0 };
        mirror_reader_rig_make_frame(frame, i);
        mirror_encode_word(word, 0, RIG_FRAME_BYTES);
        struct iovec parts[3] = { { word, sizeof word }, { frame, RIG_FRAME_BYTES }, { header, sizeof header } };
        CHECK(mirror_send_message(rig->fds[0], parts, 3) == MIRROR_SENT, "frame %u sent", i);
    }
}

/* Waits (5 s at most) until the reader took `received` frames in all. */
static struct mirror_reader_stats mirror_reader_rig_wait_received(struct mirror_reader_rig *rig, uint64_t received)
{
    struct mirror_reader_stats stats;
    for (int waited = 0; waited < 5000; waited++) {
        mirror_reader_get_stats(&rig->reader, &stats);
        if (stats.received == received)
            break;
        clock_sleep_ms(1);
    }
    CHECK(stats.received == received, "the reader took %llu of %llu frames", (unsigned long long)stats.received,
          (unsigned long long)received);
    return stats;
}

/* A receive buffer of the guest's, the index'th 4 KiB slot; its head. */
static uint16_t mirror_reader_rig_add_buffer(struct mirror_reader_rig *rig, unsigned index)
{
    return test_queue_add(rig->svm, &rig->rx,
                          &(struct test_buffer){ MACHINE_RAM_BASE + RIG_RX_BUFFERS + 0x1000ull * index, 2048, true },
                          1);
}

#endif
