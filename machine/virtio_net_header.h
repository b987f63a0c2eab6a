/* The virtio-net header (virtio_net_hdr_v1, virtio 1.1 section 5.1.6) that
 * travels with every frame: between the guest and the device, between the
 * device and its network backend, and through the hooks of the layers
 * above. It says how the receiver must finish the frame (a checksum still
 * to be done, a TCP super-segment still to be cut). */
#ifndef COLO_MACHINE_VIRTIO_NET_HEADER_H
#define COLO_MACHINE_VIRTIO_NET_HEADER_H

#include <stdint.h>

/* The header's wire form: 12 little-endian bytes, as in guest memory and
 * on a TAP with IFF_VNET_HDR. */
#define VIRTIO_NET_HEADER_SIZE 12
/* The largest frame (without the header) the device moves: a 64 KiB GSO
 * packet (an IP datagram is at most 65,535 bytes, an IPv6 header comes on
 * top) plus the Ethernet and VLAN headers, rounded up. */
#define VIRTIO_NET_MAX_FRAME (65536 + 128)

/* virtio_net_hdr_v1 in host byte order. */
struct virtio_net_header {
    uint8_t flags;            /* VIRTIO_NET_HDR_F_* */
    uint8_t gso_type;         /* VIRTIO_NET_HDR_GSO_*, maybe | _ECN */
    uint16_t header_length;   /* hdr_len: bytes of headers before the payload */
    uint16_t gso_size;        /* payload bytes per segment */
    uint16_t checksum_start;  /* csum_start: where checksumming starts */
    uint16_t checksum_offset; /* csum_offset: where the sum goes, from start */
    uint16_t buffer_count;    /* num_buffers: receive only, the device's */
};

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1 /* the checksum is still to be done */
#define VIRTIO_NET_HDR_F_DATA_VALID 2 /* the checksum was already checked */
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_UDP 3
#define VIRTIO_NET_HDR_GSO_TCPV6 4
#define VIRTIO_NET_HDR_GSO_ECN 0x80

/* Between the struct and the wire form. */
void virtio_net_header_encode(const struct virtio_net_header *header, uint8_t bytes[VIRTIO_NET_HEADER_SIZE]);
void virtio_net_header_decode(const uint8_t bytes[VIRTIO_NET_HEADER_SIZE], struct virtio_net_header *header);

#endif
