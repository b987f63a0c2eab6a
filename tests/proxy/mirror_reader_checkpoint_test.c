/* Mirrored frames a checkpoint already holds are not delivered again
 * (mirror_reader.h, the device's load): the primary counts the frames it
 * mirrored before its VM paused (the checkpoint's MIRRORED record); the
 * SVM, rebuilt from that checkpoint, has what the PVM made of them, and
 * would answer them twice (a UDP request, an ICMP echo). A test driver
 * plays the SVM's guest (tests/unit/virtio_test_driver.h); the reader
 * thread takes the frames from a socket as from the primary.
 *
 *   1. five frames wait (no receive buffer); a checkpoint that had three:
 *      the first three go, two stay;
 *   2. a checkpoint that had seven, two of them not here yet: the two
 *      queued go, and of the next three to arrive the first two are
 *      dropped as they come, the third stays;
 *   3. a run without MIRRORED and one with a smaller count change nothing;
 *   4. buffers: the SVM gets exactly the one frame no checkpoint had. */
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
#include "stream.h"
#include "test_check.h"
#include "test_machine.h"

#define RX_QUEUE 0x10000ull
#define TX_QUEUE 0x18000ull
#define RX_BUFFERS 0x100000ull /* 4 KiB apart */
#define FRAME_BYTES 200u

static void on_dead(void *opaque, const char *reason)
{
    (void)opaque, (void)reason;
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

static void mirror_frames(int fd, unsigned first, unsigned count)
{
    for (unsigned i = first; i < first + count; i++) {
        uint8_t frame[FRAME_BYTES], word[MIRROR_WORD_SIZE], header[VIRTIO_NET_HEADER_SIZE] = { 0 };
        make_frame(frame, i);
        mirror_encode_word(word, 0, FRAME_BYTES);
        struct iovec parts[3] = { { word, sizeof word }, { frame, FRAME_BYTES }, { header, sizeof header } };
        CHECK(mirror_send_message(fd, parts, 3) == MIRROR_SENT, "frame %u sent", i);
    }
}

static struct mirror_reader_stats wait_received(struct mirror_reader *reader, uint64_t received)
{
    struct mirror_reader_stats stats;
    for (int waited = 0; waited < 5000; waited++) {
        mirror_reader_get_stats(reader, &stats);
        if (stats.received == received)
            break;
        clock_sleep_ms(1);
    }
    CHECK(stats.received == received, "the reader took %llu of %llu frames", (unsigned long long)stats.received,
          (unsigned long long)received);
    return stats;
}

/* The device's load, as the secondary's loop calls it once a checkpoint
 * was applied: known says whether the run had a MIRRORED record. */
static void load_checkpoint(struct mirror_reader *reader, bool known, uint64_t mirrored)
{
    struct stream_reader stream = { .mirrored_known = known, .mirrored_frames = mirrored };
    struct error err = { 0 };
    CHECK(mirror_reader_device.load(reader, &stream, &err) == 0, "load: %s", err.message);
}

static size_t queued(struct mirror_reader *reader)
{
    pthread_mutex_lock(&reader->lock);
    size_t count = reader->queued;
    pthread_mutex_unlock(&reader->lock);
    return count;
}

int main(void)
{
    struct machine *svm = test_machine_create(&(struct test_machine_options){ .nic = true });
    struct virtio_net *net = machine_nic(svm, 0);
    struct test_queue rx, tx;
    CHECK(test_driver_negotiate(&net->transport, VIRTIO_F_VERSION_1), "FEATURES_OK");
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
    CHECK(mirror_reader_device.setup(&reader) == 0, "the device's setup");
    CHECK(mirror_reader_start(&reader, &err) == 0, "reader thread: %s", err.message);

    /* 1 */
    mirror_frames(fds[0], 0, 5);
    wait_received(&reader, 5);
    load_checkpoint(&reader, true, 3);
    struct mirror_reader_stats stats;
    mirror_reader_get_stats(&reader, &stats);
    CHECK(queued(&reader) == 2 && stats.already_in_checkpoint == 3,
          "a checkpoint with 3 of 5: %zu queued, %llu dropped as in it (want 2, 3)", queued(&reader),
          (unsigned long long)stats.already_in_checkpoint);

    /* 2 */
    load_checkpoint(&reader, true, 7);
    CHECK(queued(&reader) == 0, "a checkpoint with 7: %zu still queued", queued(&reader));
    mirror_frames(fds[0], 5, 3);
    stats = wait_received(&reader, 8);
    CHECK(queued(&reader) == 1 && stats.already_in_checkpoint == 7 && stats.dropped == 0,
          "frames 6 to 8 after a checkpoint with 7: %zu queued, %llu in a checkpoint, %llu dropped (want 1, 7, 0)",
          queued(&reader), (unsigned long long)stats.already_in_checkpoint, (unsigned long long)stats.dropped);

    /* 3 */
    load_checkpoint(&reader, false, 0);
    load_checkpoint(&reader, true, 2);
    mirror_reader_get_stats(&reader, &stats);
    CHECK(queued(&reader) == 1 && stats.already_in_checkpoint == 7,
          "a run without MIRRORED, then an older count: %zu queued, %llu in a checkpoint (want 1, 7)", queued(&reader),
          (unsigned long long)stats.already_in_checkpoint);

    /* 4 */
    uint16_t head = test_queue_add(svm, &rx, &(struct test_buffer){ MACHINE_RAM_BASE + RX_BUFFERS, 2048, true }, 1);
    test_queue_add(svm, &rx, &(struct test_buffer){ MACHINE_RAM_BASE + RX_BUFFERS + 0x1000ull, 2048, true }, 1);
    test_queue_kick(&net->transport, &rx);
    mirror_reader_deliver(&reader);
    mirror_reader_get_stats(&reader, &stats);
    uint8_t last[FRAME_BYTES];
    make_frame(last, 7);
    uint32_t id = 0, written = 0;
    bool used = test_queue_take_used(svm, &rx, &id, &written);
    const uint8_t *bytes = test_guest_pointer(svm, MACHINE_RAM_BASE + RX_BUFFERS);
    CHECK(stats.delivered == 1 && used && id == head && written == VIRTIO_NET_HEADER_SIZE + FRAME_BYTES &&
              memcmp(bytes + VIRTIO_NET_HEADER_SIZE, last, FRAME_BYTES) == 0,
          "the SVM got %llu frames (want 1: the eighth)", (unsigned long long)stats.delivered);
    CHECK(!test_queue_take_used(svm, &rx, &id, &written), "a second frame reached the SVM");

    mirror_reader_stop(&reader);
    mirror_reader_destroy(&reader);
    failure_detector_destroy(&detector);
    close(fds[0]);
    close(fds[1]);
    test_machine_destroy(svm);
    return test_check_finish("mirror_reader_checkpoint_test");
}
