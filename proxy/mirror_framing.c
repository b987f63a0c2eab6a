/* The mirror connection's framing (mirror_framing.h). */
#include "mirror_framing.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "peer_connection.h"

long mirror_parse(const uint8_t *buffer, size_t length, unsigned nic_count, struct mirror_message *message)
{
    if (length < MIRROR_WORD_SIZE)
        return MIRROR_PARSE_INCOMPLETE;
    uint32_t word = (uint32_t)buffer[0] | (uint32_t)buffer[1] << 8 | (uint32_t)buffer[2] << 16 |
                    (uint32_t)buffer[3] << 24;
    size_t frame_length = word & MIRROR_LENGTH_MASK;
    unsigned nic = word >> 24;
    if (frame_length == 0) {
        /* A heartbeat is the word 0, a boundary 0xff000000, "keep the
         * SVM's frames" 0xfe000000: any other NIC index without a frame
         * is not a message. */
        if (nic == MIRROR_BOUNDARY_NIC) {
            *message = (struct mirror_message){ .boundary = true };
            return MIRROR_WORD_SIZE;
        }
        if (nic == MIRROR_NO_RETURN_NIC) {
            *message = (struct mirror_message){ .no_return = true };
            return MIRROR_WORD_SIZE;
        }
        if (nic != 0)
            return MIRROR_PARSE_MALFORMED;
        *message = (struct mirror_message){ .heartbeat = true };
        return MIRROR_WORD_SIZE;
    }
    if (frame_length > VIRTIO_NET_MAX_FRAME || nic >= nic_count)
        return MIRROR_PARSE_MALFORMED;
    size_t size = MIRROR_WORD_SIZE + frame_length + VIRTIO_NET_HEADER_SIZE;
    if (length < size)
        return MIRROR_PARSE_INCOMPLETE;
    *message = (struct mirror_message){
        .nic = nic,
        .frame = buffer + MIRROR_WORD_SIZE,
        .length = frame_length,
    };
    virtio_net_header_decode(buffer + MIRROR_WORD_SIZE + frame_length, &message->header);
    return (long)size;
}

bool mirror_take_messages(uint8_t *buffer, size_t *buffered, unsigned nic_count,
                          bool (*on_message)(void *opaque, const struct mirror_message *message), void *opaque)
{
    size_t offset = 0;
    bool ok = true;
    for (;;) {
        struct mirror_message message;
        long size = mirror_parse(buffer + offset, *buffered - offset, nic_count, &message);
        if (size == MIRROR_PARSE_MALFORMED)
            ok = false;
        if (size <= 0)
            break;
        offset += (size_t)size;
        if (!on_message(opaque, &message)) {
            ok = false;
            break;
        }
    }
    memmove(buffer, buffer + offset, *buffered - offset);
    *buffered -= offset;
    return ok;
}

void mirror_encode_word(uint8_t word[MIRROR_WORD_SIZE], unsigned nic, size_t length)
{
    uint32_t value = (uint32_t)length | (uint32_t)nic << 24;
    word[0] = (uint8_t)value;
    word[1] = (uint8_t)(value >> 8);
    word[2] = (uint8_t)(value >> 16);
    word[3] = (uint8_t)(value >> 24);
}

enum mirror_send_result mirror_send_message(int fd, const struct iovec *parts, int part_count)
{
    size_t total = 0;
    for (int i = 0; i < part_count; i++)
        total += parts[i].iov_len;
    struct msghdr message = { .msg_iov = (struct iovec *)parts, .msg_iovlen = (size_t)part_count };
    ssize_t sent = sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? MIRROR_WOULD_BLOCK : MIRROR_BROKEN;
    /* Partly sent: the rest must follow, or the framing is lost. */
    size_t done = (size_t)sent, offset = 0;
    for (int i = 0; i < part_count && done < total; i++) {
        size_t part_end = offset + parts[i].iov_len;
        while (done < part_end) {
            const uint8_t *bytes = (const uint8_t *)parts[i].iov_base + (done - offset);
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            if (poll(&p, 1, 1000) <= 0)
                return MIRROR_BROKEN;
            ssize_t n = send(fd, bytes, part_end - done, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return MIRROR_BROKEN;
            if (n > 0)
                done += (size_t)n;
        }
        offset = part_end;
    }
    return MIRROR_SENT;
}

struct mirror_channel mirror_channel_of_fd(int fd)
{
    return (struct mirror_channel){ .fd = fd, .session = NULL };
}

struct mirror_channel mirror_channel_of_connection(struct peer_connection *connection)
{
    return (struct mirror_channel){
        .fd = peer_connection_fd(connection),
        .session = peer_connection_is_direct(connection) ? connection : NULL,
    };
}

enum mirror_send_result mirror_channel_send(struct mirror_channel *channel, const struct iovec *parts, int part_count)
{
    if (!channel->session)
        return mirror_send_message(channel->fd, parts, part_count);
    switch (peer_connection_send_message(channel->session, parts, part_count)) {
    case PEER_SENT:
        return MIRROR_SENT;
    case PEER_SEND_WOULD_BLOCK:
        return MIRROR_WOULD_BLOCK;
    case PEER_SEND_BROKEN:
        break;
    }
    return MIRROR_BROKEN;
}

ssize_t mirror_channel_receive(struct mirror_channel *channel, void *data, size_t size)
{
    if (!channel->session)
        return recv(channel->fd, data, size, MSG_DONTWAIT);
    ssize_t got = peer_connection_receive_now(channel->session, data, size);
    channel->may_have_more = got > 0;
    return got;
}

int mirror_channel_wait_readable(struct mirror_channel *channel, int timeout_ms)
{
    /* A TLS read takes one record at a time and may leave whole ones in
     * the session: poll only once it said EAGAIN. */
    if (channel->session && (channel->may_have_more || peer_connection_receive_buffered(channel->session)))
        return 1;
    struct pollfd p = { .fd = channel->fd, .events = POLLIN };
    return poll(&p, 1, timeout_ms);
}
