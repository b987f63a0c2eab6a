#include "virtio_net_header.h"

static void put_u16(uint8_t *bytes, uint16_t value)
{
    bytes[0] = (uint8_t)value;
    bytes[1] = (uint8_t)(value >> 8);
}

static uint16_t get_u16(const uint8_t *bytes)
{
    return (uint16_t)(bytes[0] | bytes[1] << 8);
}

void virtio_net_header_encode(const struct virtio_net_header *header, uint8_t bytes[VIRTIO_NET_HEADER_SIZE])
{
    bytes[0] = header->flags;
    bytes[1] = header->gso_type;
    put_u16(bytes + 2, header->header_length);
    put_u16(bytes + 4, header->gso_size);
    put_u16(bytes + 6, header->checksum_start);
    put_u16(bytes + 8, header->checksum_offset);
    put_u16(bytes + 10, header->buffer_count);
}

void virtio_net_header_decode(const uint8_t bytes[VIRTIO_NET_HEADER_SIZE], struct virtio_net_header *header)
{
    header->flags = bytes[0];
    header->gso_type = bytes[1];
    header->header_length = get_u16(bytes + 2);
    header->gso_size = get_u16(bytes + 4);
    header->checksum_start = get_u16(bytes + 6);
    header->checksum_offset = get_u16(bytes + 8);
    header->buffer_count = get_u16(bytes + 10);
}
