/* The mirror connection's framing (proxy/mirror_framing.h): what the
 * primary encodes, the secondary parses back; heartbeats, split messages,
 * and every malformed word is MIRROR_PARSE_MALFORMED, never a crash. */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* The secondary's checkpoint boundary: a bare word, whatever the NICs. */
static void test_boundary(void)
{
    uint8_t word[MIRROR_WORD_SIZE];
    mirror_encode_word(word, MIRROR_BOUNDARY_NIC, 0);
    struct mirror_message message;
    for (unsigned nics = 0; nics < 3; nics++) {
        long size = mirror_parse(word, sizeof word, nics, &message);
        CHECK(size == MIRROR_WORD_SIZE && message.boundary && !message.heartbeat, "boundary parsed with %u NICs", nics);
    }
    mirror_encode_word(word, 0, 0);
    CHECK(mirror_parse(word, sizeof word, 1, &message) == MIRROR_WORD_SIZE && !message.boundary && message.heartbeat,
          "a heartbeat is not a boundary");
    mirror_encode_word(word, MIRROR_NO_RETURN_NIC, 0);
    for (unsigned nics = 0; nics < 3; nics++) {
        long size = mirror_parse(word, sizeof word, nics, &message);
        CHECK(size == MIRROR_WORD_SIZE && message.no_return && !message.boundary && !message.heartbeat,
              "\"keep the SVM's frames\" parsed with %u NICs", nics);
    }
    mirror_encode_word(word, MIRROR_NO_RETURN_NIC - 1, 0);
    CHECK(mirror_parse(word, sizeof word, 1, &message) == MIRROR_PARSE_MALFORMED, "0xfd without a frame");
}

/* mirror_send_message writes a whole message the other end parses. */
static void test_send(void)
{
    int fds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair");
    uint8_t frame[1500];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = (uint8_t)(i * 13);
    uint8_t word[MIRROR_WORD_SIZE], header_bytes[VIRTIO_NET_HEADER_SIZE], boundary[MIRROR_WORD_SIZE];
    struct virtio_net_header header = { .flags = 0, .gso_type = 0, .header_length = 0 };
    mirror_encode_word(word, 1, sizeof frame);
    virtio_net_header_encode(&header, header_bytes);
    mirror_encode_word(boundary, MIRROR_BOUNDARY_NIC, 0);
    struct iovec parts[3] = { { word, sizeof word }, { frame, sizeof frame }, { header_bytes, sizeof header_bytes } };
    struct iovec boundary_part = { boundary, sizeof boundary };
    CHECK(mirror_send_message(fds[0], &boundary_part, 1) == MIRROR_SENT, "boundary sent");
    CHECK(mirror_send_message(fds[0], parts, 3) == MIRROR_SENT, "frame sent");
    static uint8_t received[MIRROR_MESSAGE_MAX];
    size_t got = 0, want = MIRROR_WORD_SIZE * 2 + sizeof frame + VIRTIO_NET_HEADER_SIZE;
    while (got < want) {
        ssize_t n = read(fds[1], received + got, sizeof received - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    CHECK(got == want, "read %zu of %zu bytes", got, want);
    struct mirror_message message;
    long size = mirror_parse(received, got, 2, &message);
    CHECK(size == MIRROR_WORD_SIZE && message.boundary, "the boundary first");
    size = mirror_parse(received + MIRROR_WORD_SIZE, got - MIRROR_WORD_SIZE, 2, &message);
    CHECK(size == (long)(want - MIRROR_WORD_SIZE) && message.nic == 1 && message.length == sizeof frame &&
              memcmp(message.frame, frame, sizeof frame) == 0,
          "then the frame, whole");
    close(fds[1]);
    CHECK(mirror_send_message(fds[0], &boundary_part, 1) == MIRROR_BROKEN, "a closed peer breaks the connection");
    close(fds[0]);
}

int main(void)
{
    test_round_trip();
    test_malformed();
    test_boundary();
    test_send();
    return test_check_finish("mirror_framing_test");
}
