/* The mirror connection's framing. Primary -> secondary: one message per
 * frame the PVM read from its network backend; secondary -> primary: one
 * per frame the SVM sent (for the comparing proxy). Both directions:
 *
 *   u32 little-endian word: bits 0..23 the frame's length, bits 24..31 the
 *       NIC's index (a frame is at most VIRTIO_NET_MAX_FRAME < 2^24 bytes)
 *   the frame
 *   the 12-byte virtio-net header the backend gave with it (wire form)
 *
 * A word of 0 (no frame, no header) is a heartbeat (cluster/heartbeat.h).
 * The word 0xff000000 (secondary -> primary only) is a checkpoint
 * boundary: the SVM was just rebuilt from a checkpoint (or first built),
 * so what follows is output of the next epoch. The word 0xfe000000
 * (primary -> secondary only) says the primary releases output per
 * checkpoint (--mode buffered) and compares nothing: the secondary keeps
 * the SVM's frames to itself.
 * docs/replication.md has the whole; mirror_parse has a fuzz target. */
#ifndef COLO_PROXY_MIRROR_FRAMING_H
#define COLO_PROXY_MIRROR_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "virtio_net.h"

#define MIRROR_WORD_SIZE 4
#define MIRROR_LENGTH_MASK 0xffffffu
#define MIRROR_MESSAGE_MAX (MIRROR_WORD_SIZE + VIRTIO_NET_MAX_FRAME + VIRTIO_NET_HEADER_SIZE)

#define MIRROR_BOUNDARY_NIC 0xffu
#define MIRROR_NO_RETURN_NIC 0xfeu

struct mirror_message {
    bool heartbeat;       /* then nothing below is set */
    bool boundary;        /* likewise */
    bool no_return;       /* likewise */
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

/* Takes every whole message out of the first *buffered bytes of buffer,
 * in order, and gives each to on_message; what is left (the start of a
 * message) moves to the front. Returns false when the buffer holds
 * something that is not a message, or on_message returned false: the
 * framing is lost, the connection must be given up. */
bool mirror_take_messages(uint8_t *buffer, size_t *buffered, unsigned nic_count,
                          bool (*on_message)(void *opaque, const struct mirror_message *message), void *opaque);

/* The word for a frame of `length` bytes from NIC `nic` (0, 0: a heartbeat;
 * MIRROR_BOUNDARY_NIC, 0: a checkpoint boundary; MIRROR_NO_RETURN_NIC, 0:
 * keep the SVM's frames). */
void mirror_encode_word(uint8_t word[MIRROR_WORD_SIZE], unsigned nic, size_t length);

enum mirror_send_result { MIRROR_SENT, MIRROR_WOULD_BLOCK, MIRROR_BROKEN };

/* Writes one whole message to a non-blocking-safe stream socket; the
 * caller serializes the writers. Never blocks long: a full socket before
 * the first byte is MIRROR_WOULD_BLOCK (nothing sent: the message may be
 * dropped), and a partial write is finished within a bounded wait or the
 * connection is MIRROR_BROKEN (its framing would be lost). */
enum mirror_send_result mirror_send_message(int fd, const struct iovec *parts, int part_count);

/* The mirror's connection as its threads use it: the socket, or over TLS
 * the session itself, read and written by these threads without a relay
 * (cluster/peer_connection.h, direct). */
struct peer_connection;
struct mirror_channel {
    int fd;                          /* to poll; the stream itself when session is NULL */
    struct peer_connection *session; /* a direct TLS session, or NULL */
    bool may_have_more;              /* the reader's: the last TLS read returned data */
};

/* A channel on a plain socket, or on a connection (its session when it is
 * direct, else its descriptor). */
struct mirror_channel mirror_channel_of_fd(int fd);
struct mirror_channel mirror_channel_of_connection(struct peer_connection *connection);
/* mirror_send_message on the channel. */
enum mirror_send_result mirror_channel_send(struct mirror_channel *channel, const struct iovec *parts, int part_count);
/* What has arrived, without waiting, as recv(MSG_DONTWAIT) says it. */
ssize_t mirror_channel_receive(struct mirror_channel *channel, void *data, size_t size);
/* Waits at most timeout_ms for something to read: poll's result. Over TLS
 * bytes already decrypted count, and after a read that returned data it
 * does not wait (more may sit in the session's buffer). */
int mirror_channel_wait_readable(struct mirror_channel *channel, int timeout_ms);

#endif
