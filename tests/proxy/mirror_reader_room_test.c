/* Mirrored frames the SVM has no receive buffers for wait (mirror_reader.h,
 * mirror_reader_deliver): the primary's NIC leaves such frames in its TAP,
 * so the SVM must get them too, in order, once its guest adds buffers.
 * A test driver plays the SVM's guest (tests/unit/virtio_test_driver.h);
 * the reader thread takes the frames from a socket as from the primary
 * (mirror_reader_rig.h).
 *
 *   1. three frames, no receive buffer: none delivered, none dropped;
 *   2. two buffers added: the first two frames arrive, in order, and the
 *      third waits;
 *   3. one more buffer: the third arrives; the inbound filter ran once
 *      per frame although the frames were offered more than once. */
#include <stdio.h>

#include "mirror_reader_rig.h"

#define FRAMES 3

static unsigned filtered[FRAMES];

/* Counts the filter's runs per frame (its byte 20 says which). */
static void count_filter(void *opaque, const struct virtio_net_header *header, uint8_t *frame, size_t length)
{
    (void)opaque, (void)header;
    if (length > 20 && frame[20] < FRAMES)
        filtered[frame[20]]++;
}

int main(void)
{
    static struct mirror_reader_rig rig;
    mirror_reader_rig_start(&rig, count_filter);

    /* 1: the primary mirrors three frames; the guest has no buffer. */
    mirror_reader_rig_mirror(&rig, 0, FRAMES);
    struct mirror_reader_stats stats = mirror_reader_rig_wait_received(&rig, FRAMES);
    mirror_reader_deliver(&rig.reader); /* as the frames-ready watch would */
    mirror_reader_get_stats(&rig.reader, &stats);
    CHECK(stats.delivered == 0 && stats.dropped == 0 && stats.waited_for_room == 1,
          "no buffers: %llu delivered, %llu dropped, %llu waited (want 0, 0, 1)", (unsigned long long)stats.delivered,
          (unsigned long long)stats.dropped, (unsigned long long)stats.waited_for_room);

    /* 2: two buffers: the guest's notification lets the first two in. */
    uint16_t heads[FRAMES];
    for (unsigned i = 0; i < 2; i++)
        heads[i] = mirror_reader_rig_add_buffer(&rig, i);
    test_queue_kick(&rig.net->transport, &rig.rx);
    mirror_reader_get_stats(&rig.reader, &stats);
    CHECK(stats.delivered == 2 && stats.waited_for_room == 2, "two buffers: %llu delivered, %llu waited (want 2, 2)",
          (unsigned long long)stats.delivered, (unsigned long long)stats.waited_for_room);

    /* 3: the last buffer, the last frame. */
    heads[2] = mirror_reader_rig_add_buffer(&rig, 2);
    test_queue_kick(&rig.net->transport, &rig.rx);
    mirror_reader_get_stats(&rig.reader, &stats);
    CHECK(stats.delivered == FRAMES && stats.dropped == 0, "all buffers: %llu delivered, %llu dropped",
          (unsigned long long)stats.delivered, (unsigned long long)stats.dropped);
    /* In order: each buffer holds the header, then the frame it was given. */
    for (unsigned i = 0; i < FRAMES; i++) {
        uint8_t frame[RIG_FRAME_BYTES];
        mirror_reader_rig_make_frame(frame, i);
        uint32_t id = 0, written = 0;
        bool used = test_queue_take_used(rig.svm, &rig.rx, &id, &written);
        const uint8_t *bytes = test_guest_pointer(rig.svm, MACHINE_RAM_BASE + RIG_RX_BUFFERS + 0x1000ull * i);
        CHECK(used && id == heads[i] && written == VIRTIO_NET_HEADER_SIZE + RIG_FRAME_BYTES &&
                  memcmp(bytes + VIRTIO_NET_HEADER_SIZE, frame, RIG_FRAME_BYTES) == 0,
              "buffer %u: used %d, id %u, %u bytes: not frame %u", i, used, id, written, i);
        CHECK(filtered[i] == 1, "the inbound filter ran %u times on frame %u", filtered[i], i);
    }

    mirror_reader_rig_finish(&rig);
    return test_check_finish("mirror_reader_room_test");
}
