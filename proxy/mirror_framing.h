/* The mirror connection's framing (primary -> secondary), one message per
 * frame the PVM read from its network backend:
 *
 *   u32 little-endian word: bits 0..23 the frame's length, bits 24..31 the
 *       NIC's index (a frame is at most VIRTIO_NET_MAX_FRAME < 2^24 bytes)
 *   the frame
 *   the 12-byte virtio-net header the backend gave with it (wire form)
 *
 * A word of 0 (no frame, no header) is a heartbeat (cluster/heartbeat.h).
 * docs/replication.md has the whole; mirror_parse has a fuzz target. */
#ifndef COLO_PROXY_MIRROR_FRAMING_H
#define COLO_PROXY_MIRROR_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio_net.h"

#define MIRROR_WORD_SIZE 4
#define MIRROR_LENGTH_MASK 0xffffffu
#define MIRROR_MESSAGE_MAX (MIRROR_WORD_SIZE + VIRTIO_NET_MAX_FRAME + VIRTIO_NET_HEADER_SIZE)

struct mirror_message {
    bool heartbeat;       /* then nothing below is set */
    unsigned nic;         /* < the nic_count given to mirror_parse */
    const uint8_t *frame; /* inside the parsed buffer */
    size_t length;
    struct virtio_net_header header;
};

enum { MIRROR_PARSE_INCOMPLETE = 0, MIRROR_PARSE_MALFORMED = -1 };

/* Parses the message at the start of `buffer` (`length` bytes buffered).
 * Returns its size (> 0) and fills `message`; MIRROR_PARSE_INCOMPLETE when
 * more bytes are needed; MIRROR_PARSE_MALFORMED when the word cannot start
 * a message for a VM with `nic_count` NICs (the framing is lost: the
 * connection must be given up). */
long mirror_parse(const uint8_t *buffer, size_t length, unsigned nic_count, struct mirror_message *message);

/* The word for a frame of `length` bytes from NIC `nic` (0, 0: a heartbeat). */
void mirror_encode_word(uint8_t word[MIRROR_WORD_SIZE], unsigned nic, size_t length);

#endif
