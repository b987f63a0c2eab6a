/* The mirror connection's framing (mirror_framing.h). */
#include "mirror_framing.h"

long mirror_parse(const uint8_t *buffer, size_t length, unsigned nic_count, struct mirror_message *message)
{
    if (length < MIRROR_WORD_SIZE)
        return MIRROR_PARSE_INCOMPLETE;
    uint32_t word = (uint32_t)buffer[0] | (uint32_t)buffer[1] << 8 | (uint32_t)buffer[2] << 16 |
                    (uint32_t)buffer[3] << 24;
    size_t frame_length = word & MIRROR_LENGTH_MASK;
    unsigned nic = word >> 24;
    if (frame_length == 0) {
        /* A heartbeat is the word 0: a NIC index without a frame is not. */
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

void mirror_encode_word(uint8_t word[MIRROR_WORD_SIZE], unsigned nic, size_t length)
{
    uint32_t value = (uint32_t)length | (uint32_t)nic << 24;
    word[0] = (uint8_t)value;
    word[1] = (uint8_t)(value >> 8);
    word[2] = (uint8_t)(value >> 16);
    word[3] = (uint8_t)(value >> 24);
}
