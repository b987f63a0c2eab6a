/* Mirrored frames a checkpoint already holds are not delivered again
 * (mirror_reader.h, the device's load): the primary counts the frames it
 * mirrored before its VM paused (the checkpoint's MIRRORED record); the
 * SVM, rebuilt from that checkpoint, has what the PVM made of them, and
 * would answer them twice (a UDP request, an ICMP echo). A test driver
 * plays the SVM's guest (tests/unit/virtio_test_driver.h); the reader
 * thread takes the frames from a socket as from the primary
 * (mirror_reader_rig.h).
 *
 *   1. five frames wait (no receive buffer); a checkpoint that had three:
 *      the first three go, two stay;
 *   2. a checkpoint that had seven, two of them not here yet: the two
 *      queued go, and of the next three to arrive the first two are
 *      dropped as they come, the third stays;
 *   3. a run without MIRRORED and one with a smaller count change nothing;
 *   4. buffers: the SVM gets exactly the one frame no checkpoint had. */
#include <stdio.h>

#include "mirror_reader_rig.h"
#include "stream.h"

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
    static struct mirror_reader_rig rig;
    mirror_reader_rig_start(&rig, NULL);
    struct mirror_reader *reader = &rig.reader;

    /* 1 */
    mirror_reader_rig_mirror(&rig, 0, 5);
    mirror_reader_rig_wait_received(&rig, 5);
    load_checkpoint(reader, true, 3);
    struct mirror_reader_stats stats;
    mirror_reader_get_stats(reader, &stats);
    CHECK(queued(reader) == 2 && stats.already_in_checkpoint == 3,
          "a checkpoint with 3 of 5: %zu queued, %llu dropped as in it (want 2, 3)", queued(reader),
          (unsigned long long)stats.already_in_checkpoint);

    /* 2 */
    load_checkpoint(reader, true, 7);
    CHECK(queued(reader) == 0, "a checkpoint with 7: %zu still queued", queued(reader));
    mirror_reader_rig_mirror(&rig, 5, 3);
    stats = mirror_reader_rig_wait_received(&rig, 8);
    CHECK(queued(reader) == 1 && stats.already_in_checkpoint == 7 && stats.dropped == 0,
          "frames 6 to 8 after a checkpoint with 7: %zu queued, %llu in a checkpoint, %llu dropped (want 1, 7, 0)",
          queued(reader), (unsigned long long)stats.already_in_checkpoint, (unsigned long long)stats.dropped);

    /* 3 */
    load_checkpoint(reader, false, 0);
    load_checkpoint(reader, true, 2);
    mirror_reader_get_stats(reader, &stats);
    CHECK(queued(reader) == 1 && stats.already_in_checkpoint == 7,
          "a run without MIRRORED, then an older count: %zu queued, %llu in a checkpoint (want 1, 7)", queued(reader),
          (unsigned long long)stats.already_in_checkpoint);

    /* 4 */
    uint16_t head = mirror_reader_rig_add_buffer(&rig, 0);
    mirror_reader_rig_add_buffer(&rig, 1);
    test_queue_kick(&rig.net->transport, &rig.rx);
    mirror_reader_deliver(reader);
    mirror_reader_get_stats(reader, &stats);
    uint8_t last[RIG_FRAME_BYTES];
    mirror_reader_rig_make_frame(last, 7);
    uint32_t id = 0, written = 0;
    bool used = test_queue_take_used(rig.svm, &rig.rx, &id, &written);
    const uint8_t *bytes = test_guest_pointer(rig.svm, MACHINE_RAM_BASE + RIG_RX_BUFFERS);
    CHECK(stats.delivered == 1 && used && id == head && written == VIRTIO_NET_HEADER_SIZE + RIG_FRAME_BYTES &&
              memcmp(bytes + VIRTIO_NET_HEADER_SIZE, last, RIG_FRAME_BYTES) == 0,
          "the SVM got %llu frames (want 1: the eighth)", (unsigned long long)stats.delivered);
    CHECK(!test_queue_take_used(rig.svm, &rig.rx, &id, &written), "a second frame reached the SVM");

    mirror_reader_rig_finish(&rig);
    return test_check_finish("mirror_reader_checkpoint_test");
}
