/* The mirror connection's framing (proxy/mirror_framing.h): what the
 * primary encodes, the secondary parses back; heartbeats, split messages,
 * and every malformed word is MIRROR_PARSE_MALFORMED, never a crash. */
#include <string.h>

#include "mirror_framing.h"
#include "test_check.h"

/* One frame message as the primary's sender lays it out. */
static size_t encode_frame(uint8_t *out, unsigned nic, const uint8_t *frame, size_t length,
                           const struct virtio_net_header *header)
{
    mirror_encode_word(out, nic, length);
    memcpy(out + MIRROR_WORD_SIZE, frame, length);
    virtio_net_header_encode(header, out + MIRROR_WORD_SIZE + length);
    return MIRROR_WORD_SIZE + length + VIRTIO_NET_HEADER_SIZE;
}

static void test_round_trip(void)
{
    static uint8_t buffer[2 * MIRROR_MESSAGE_MAX];
    uint8_t frame[60];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = (uint8_t)(i * 7);
    struct virtio_net_header header = { .flags = 1,
                                        .gso_type = 0,
                                        .header_length = 14,
                                        .gso_size = 0,
                                        .checksum_start = 34,
                                        .checksum_offset = 16,
                                        .buffer_count = 1 };
    size_t first = encode_frame(buffer, 2, frame, sizeof frame, &header);
    mirror_encode_word(buffer + first, 0, 0); /* a heartbeat */
    size_t total = first + MIRROR_WORD_SIZE;

    struct mirror_message message;
    /* Every cut before the whole first message is "incomplete". */
    for (size_t cut = 0; cut < first; cut++)
        CHECK(mirror_parse(buffer, cut, 4, &message) == MIRROR_PARSE_INCOMPLETE, "cut at %zu is incomplete", cut);
    long size = mirror_parse(buffer, total, 4, &message);
    CHECK(size == (long)first, "frame message size %ld, expected %zu", size, first);
    CHECK(!message.heartbeat && message.nic == 2 && message.length == sizeof frame, "frame message fields");
    CHECK(message.frame == buffer + MIRROR_WORD_SIZE && memcmp(message.frame, frame, sizeof frame) == 0,
          "frame bytes point into the buffer");
    CHECK(message.header.flags == 1 && message.header.header_length == 14 && message.header.checksum_start == 34 &&
              message.header.checksum_offset == 16 && message.header.buffer_count == 1,
          "header decoded");
    size = mirror_parse(buffer + first, total - first, 4, &message);
    CHECK(size == MIRROR_WORD_SIZE && message.heartbeat, "heartbeat parsed (%ld)", size);
}

static void test_malformed(void)
{
    uint8_t buffer[MIRROR_WORD_SIZE + 64] = { 0 };
    struct mirror_message message;
    mirror_encode_word(buffer, 4, 10); /* NIC 4 of a VM with 4 NICs (0..3) */
    CHECK(mirror_parse(buffer, sizeof buffer, 4, &message) == MIRROR_PARSE_MALFORMED, "NIC out of range");
    mirror_encode_word(buffer, 0, VIRTIO_NET_MAX_FRAME + 1);
    CHECK(mirror_parse(buffer, sizeof buffer, 4, &message) == MIRROR_PARSE_MALFORMED, "frame too long");
    mirror_encode_word(buffer, 1, 0); /* no frame but a NIC: not a heartbeat */
    CHECK(mirror_parse(buffer, sizeof buffer, 4, &message) == MIRROR_PARSE_MALFORMED, "empty frame with a NIC");
    mirror_encode_word(buffer, 0, 10);
    CHECK(mirror_parse(buffer, sizeof buffer, 0, &message) == MIRROR_PARSE_MALFORMED, "a frame for a VM without NICs");
    mirror_encode_word(buffer, 0, VIRTIO_NET_MAX_FRAME);
    CHECK(mirror_parse(buffer, sizeof buffer, 1, &message) == MIRROR_PARSE_INCOMPLETE,
          "the longest frame needs its bytes");
}

int main(void)
{
    test_round_trip();
    test_malformed();
    return test_check_finish("mirror_framing_test");
}
