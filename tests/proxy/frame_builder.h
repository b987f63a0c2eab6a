/* Synthetic Ethernet frames for the comparing proxy's tests: TCP, UDP,
 * ICMP over IPv4 or IPv6, with VLAN tags, real checksums and the minimum
 * frame padding; ARP; fragments cut from a whole frame. Header-only: the
 * unit tests and the corpus generator share it. */
#ifndef COLO_TESTS_PROXY_FRAME_BUILDER_H
#define COLO_TESTS_PROXY_FRAME_BUILDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FRAME_BUILDER_MAX 2048

struct frame_spec {
    unsigned vlan_count;
    uint16_t vlan_tpid[2], vlan_tci[2];
    unsigned ip_version; /* 4 or 6 */
    uint8_t source_ip[16], destination_ip[16];
    uint8_t protocol;
    uint16_t source_port, destination_port;
    uint32_t sequence, acknowledgment;
    uint8_t tcp_flags;
    uint16_t window;
    const uint8_t *tcp_options;
    size_t tcp_options_length; /* a multiple of 4 */
    uint8_t icmp_type, icmp_code;
    uint16_t ip_id;
};

static inline void frame_put_16(uint8_t *bytes, unsigned value)
{
    bytes[0] = (uint8_t)(value >> 8);
    bytes[1] = (uint8_t)value;
}

static inline void frame_put_32(uint8_t *bytes, uint32_t value)
{
    frame_put_16(bytes, value >> 16);
    frame_put_16(bytes + 2, value & 0xffff);
}

/* The one's complement sum of 16-bit words (RFC 1071), not folded. */
static inline uint32_t frame_sum(const uint8_t *bytes, size_t length, uint32_t sum)
{
    for (size_t i = 0; i + 1 < length; i += 2)
        sum += (uint32_t)(bytes[i] << 8 | bytes[i + 1]);
    if (length & 1)
        sum += (uint32_t)bytes[length - 1] << 8;
    return sum;
}

static inline uint16_t frame_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* The pseudo-header sum of a transport segment of `length` bytes. */
static inline uint32_t frame_pseudo_sum(const struct frame_spec *spec, uint8_t protocol, size_t length)
{
    size_t address_length = spec->ip_version == 4 ? 4 : 16;
    uint32_t sum = frame_sum(spec->source_ip, address_length, 0);
    sum = frame_sum(spec->destination_ip, address_length, sum);
    return sum + protocol + (uint32_t)length;
}

static inline size_t frame_ethernet(uint8_t *out, const struct frame_spec *spec, uint16_t ethertype)
{
    static const uint8_t destination[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x02 };
    static const uint8_t source[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x01 };
    memcpy(out, destination, 6);
    memcpy(out + 6, source, 6);
    size_t offset = 12;
    for (unsigned i = 0; i < spec->vlan_count; i++) {
        frame_put_16(out + offset, spec->vlan_tpid[i] ? spec->vlan_tpid[i] : 0x8100);
        frame_put_16(out + offset + 2, spec->vlan_tci[i]);
        offset += 4;
    }
    frame_put_16(out + offset, ethertype);
    return offset + 2;
}

static inline size_t frame_pad(uint8_t *out, size_t length)
{
    while (length < 60)
        out[length++] = 0;
    return length;
}

/* A whole frame; for ICMP, payload is the body after type, code, checksum. */
static inline size_t frame_build(uint8_t *out, const struct frame_spec *spec, const uint8_t *payload,
                                 size_t payload_length)
{
    size_t offset = frame_ethernet(out, spec, spec->ip_version == 4 ? 0x0800 : 0x86dd);
    uint8_t *ip = out + offset;
    size_t ip_header_length = spec->ip_version == 4 ? 20 : 40;
    uint8_t *segment = ip + ip_header_length;
    size_t header_length;
    switch (spec->protocol) {
    case 6:
        header_length = 20 + spec->tcp_options_length;
        break;
    case 17:
        header_length = 8;
        break;
    default:
        header_length = 4;
        break;
    }
    size_t segment_length = header_length + payload_length;
    memset(segment, 0, header_length);
    if (payload_length)
        memcpy(segment + header_length, payload, payload_length);
    if (spec->protocol == 6) {
        frame_put_16(segment, spec->source_port);
        frame_put_16(segment + 2, spec->destination_port);
        frame_put_32(segment + 4, spec->sequence);
        frame_put_32(segment + 8, spec->acknowledgment);
        segment[12] = (uint8_t)(header_length / 4 << 4);
        segment[13] = spec->tcp_flags;
        frame_put_16(segment + 14, spec->window ? spec->window : 65535);
        if (spec->tcp_options_length)
            memcpy(segment + 20, spec->tcp_options, spec->tcp_options_length);
    } else if (spec->protocol == 17) {
        frame_put_16(segment, spec->source_port);
        frame_put_16(segment + 2, spec->destination_port);
        frame_put_16(segment + 4, (unsigned)segment_length);
    } else {
        segment[0] = spec->icmp_type;
        segment[1] = spec->icmp_code;
    }
    /* ICMPv4 has no pseudo-header; the others do. */
    uint32_t sum = spec->protocol == 1 ? 0 : frame_pseudo_sum(spec, spec->protocol, segment_length);
    uint16_t checksum = frame_fold(frame_sum(segment, segment_length, sum));
    if (spec->protocol == 17 && checksum == 0)
        checksum = 0xffff;
    size_t checksum_offset = spec->protocol == 6 ? 16 : spec->protocol == 17 ? 6 : 2;
    frame_put_16(segment + checksum_offset, checksum);

    if (spec->ip_version == 4) {
        memset(ip, 0, 20);
        ip[0] = 0x45;
        frame_put_16(ip + 2, (unsigned)(20 + segment_length));
        frame_put_16(ip + 4, spec->ip_id);
        ip[8] = 64;
        ip[9] = spec->protocol;
        memcpy(ip + 12, spec->source_ip, 4);
        memcpy(ip + 16, spec->destination_ip, 4);
        frame_put_16(ip + 10, frame_fold(frame_sum(ip, 20, 0)));
    } else {
        memset(ip, 0, 40);
        ip[0] = 0x60;
        frame_put_16(ip + 4, (unsigned)segment_length);
        ip[6] = spec->protocol;
        ip[7] = 64;
        memcpy(ip + 8, spec->source_ip, 16);
        memcpy(ip + 24, spec->destination_ip, 16);
    }
    return frame_pad(out, offset + ip_header_length + segment_length);
}

/* An ARP request or reply for IPv4 over Ethernet. */
static inline size_t frame_build_arp(uint8_t *out, const struct frame_spec *spec, unsigned operation)
{
    size_t offset = frame_ethernet(out, spec, 0x0806);
    uint8_t *arp = out + offset;
    frame_put_16(arp, 1);
    frame_put_16(arp + 2, 0x0800);
    arp[4] = 6;
    arp[5] = 4;
    frame_put_16(arp + 6, operation);
    memcpy(arp + 8, out + 6, 6);
    memcpy(arp + 14, spec->source_ip, 4);
    memset(arp + 18, 0, 6);
    memcpy(arp + 24, spec->destination_ip, 4);
    return frame_pad(out, offset + 28);
}

/* A fragment of the datagram in `whole` (a frame_build frame of spec):
 * `length` bytes of its IP payload from `offset` (a multiple of 8). */
static inline size_t frame_fragment(uint8_t *out, const struct frame_spec *spec, const uint8_t *whole, size_t offset,
                                    size_t length, bool more, uint32_t id)
{
    size_t ethernet_length = 14 + 4 * spec->vlan_count;
    memcpy(out, whole, ethernet_length);
    const uint8_t *ip = whole + ethernet_length;
    uint8_t *fragment = out + ethernet_length;
    if (spec->ip_version == 4) {
        memcpy(fragment, ip, 20);
        frame_put_16(fragment + 2, (unsigned)(20 + length));
        frame_put_16(fragment + 4, id);
        frame_put_16(fragment + 6, (unsigned)(offset / 8) | (more ? 0x2000 : 0));
        frame_put_16(fragment + 10, 0);
        frame_put_16(fragment + 10, frame_fold(frame_sum(fragment, 20, 0)));
        memcpy(fragment + 20, ip + 20 + offset, length);
        return frame_pad(out, ethernet_length + 20 + length);
    }
    memcpy(fragment, ip, 40);
    fragment[6] = 44;
    frame_put_16(fragment + 4, (unsigned)(8 + length));
    uint8_t *header = fragment + 40;
    header[0] = ip[6];
    header[1] = 0;
    frame_put_16(header + 2, (unsigned)offset | (more ? 1 : 0));
    frame_put_32(header + 4, id);
    memcpy(header + 8, ip + 40 + offset, length);
    return frame_pad(out, ethernet_length + 48 + length);
}

/* Whether the frame's IPv4 header and TCP or UDP checksum are right. */
static inline bool frame_checksums_valid(const uint8_t *frame, const struct frame_spec *spec)
{
    size_t offset = 14 + 4 * spec->vlan_count;
    const uint8_t *ip = frame + offset;
    size_t header_length, segment_length;
    if (spec->ip_version == 4) {
        if (frame_fold(frame_sum(ip, 20, 0)) != 0)
            return false;
        header_length = 20;
        segment_length = (size_t)(ip[2] << 8 | ip[3]) - 20;
    } else {
        header_length = 40;
        segment_length = (size_t)(ip[4] << 8 | ip[5]);
    }
    uint8_t protocol = spec->ip_version == 4 ? ip[9] : ip[6];
    uint32_t sum = frame_pseudo_sum(spec, protocol, segment_length);
    return frame_fold(frame_sum(ip + header_length, segment_length, sum)) == 0;
}

#endif
