/* The comparing proxy's frame parser: an Ethernet frame a VM sent, read
 * into a view of pointers into the frame (nothing is copied). Up to two
 * VLAN tags (802.1Q, 802.1ad), ARP, IPv4 and IPv6 (with its extension
 * headers), and over IP: TCP, UDP, ICMP and ICMPv6. Other ethertypes and
 * other IP protocols are opaque, which is not an error.
 *
 * The frame comes from a guest, so every length is checked against the
 * bytes that are there; anything that does not add up is a result naming
 * what is malformed, never a read past the end. Fragments of an IP datagram
 * are parsed up to the network layer only: the transport header is in the
 * reassembled datagram (fragment_reassembly.h), which packet_parse_network
 * reads again. */
#ifndef COLO_PROXY_PACKET_PARSE_H
#define COLO_PROXY_PACKET_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PACKET_ETHERNET_HEADER_SIZE 14
#define PACKET_VLAN_TAGS_MAX 2

#define PACKET_ETHERTYPE_IPV4 0x0800
#define PACKET_ETHERTYPE_ARP 0x0806
#define PACKET_ETHERTYPE_VLAN 0x8100      /* 802.1Q customer tag */
#define PACKET_ETHERTYPE_VLAN_QINQ 0x88a8 /* 802.1ad service tag */
#define PACKET_ETHERTYPE_IPV6 0x86dd

#define PACKET_PROTOCOL_ICMP 1
#define PACKET_PROTOCOL_TCP 6
#define PACKET_PROTOCOL_UDP 17
#define PACKET_PROTOCOL_ICMPV6 58

#define PACKET_TCP_FIN 0x01
#define PACKET_TCP_SYN 0x02
#define PACKET_TCP_RST 0x04
#define PACKET_TCP_PSH 0x08
#define PACKET_TCP_ACK 0x10

enum packet_parse_result {
    PACKET_PARSE_OK,
    PACKET_PARSE_TRUNCATED_ETHERNET,
    PACKET_PARSE_TRUNCATED_VLAN,
    PACKET_PARSE_TOO_MANY_VLAN_TAGS,
    PACKET_PARSE_TRUNCATED_ARP,
    PACKET_PARSE_TRUNCATED_IPV4,
    PACKET_PARSE_BAD_IPV4_VERSION,
    PACKET_PARSE_BAD_IPV4_HEADER_LENGTH,
    PACKET_PARSE_BAD_IPV4_TOTAL_LENGTH,
    PACKET_PARSE_BAD_IPV4_FRAGMENT, /* a middle piece not a multiple of 8, or past 65535 */
    PACKET_PARSE_TRUNCATED_IPV6,
    PACKET_PARSE_BAD_IPV6_VERSION,
    PACKET_PARSE_BAD_IPV6_PAYLOAD_LENGTH,
    PACKET_PARSE_BAD_IPV6_EXTENSION, /* runs past the payload, or too many, or misplaced */
    PACKET_PARSE_BAD_IPV6_FRAGMENT,
    PACKET_PARSE_TRUNCATED_TCP,
    PACKET_PARSE_BAD_TCP_DATA_OFFSET,
    PACKET_PARSE_TRUNCATED_UDP,
    PACKET_PARSE_BAD_UDP_LENGTH,
    PACKET_PARSE_TRUNCATED_ICMP,
    PACKET_PARSE_RESULT_COUNT
};

enum packet_network { PACKET_NETWORK_OTHER, PACKET_NETWORK_ARP, PACKET_NETWORK_IPV4, PACKET_NETWORK_IPV6 };

enum packet_transport {
    PACKET_TRANSPORT_NONE, /* not IP, a fragment, or an opaque IP protocol */
    PACKET_TRANSPORT_TCP,
    PACKET_TRANSPORT_UDP,
    PACKET_TRANSPORT_ICMP,
    PACKET_TRANSPORT_ICMPV6
};

struct packet_view {
    const uint8_t *frame; /* NULL when only the network layer was parsed */
    size_t frame_length;
    const uint8_t *destination_mac, *source_mac;
    unsigned vlan_count;
    uint16_t vlan_tpid[PACKET_VLAN_TAGS_MAX];
    uint16_t vlan_tci[PACKET_VLAN_TAGS_MAX]; /* outermost first */
    uint16_t ethertype;                      /* the one after the tags */

    enum packet_network network;
    /* The network layer: for IP, exactly the datagram (its total or payload
     * length; the Ethernet padding after it is left out); otherwise the
     * rest of the frame after the tags. */
    const uint8_t *network_header;
    size_t network_length;
    /* IP only. */
    const uint8_t *source_address, *destination_address;
    unsigned address_length; /* 4 or 16 */
    uint8_t protocol;        /* the upper layer's: for IPv6 after the extension headers */
    /* The IP header with IPv6's extension headers: for an IPv6 fragment, the
     * unfragmentable part (before the fragment header). */
    size_t ip_header_length;
    const uint8_t *ip_payload; /* after ip_header_length (IPv6 fragment: after the fragment header) */
    size_t ip_payload_length;
    bool fragment;
    bool more_fragments;
    uint32_t fragment_id;
    uint32_t fragment_offset; /* in bytes */
    /* IPv6 fragment: where the next-header byte that names the fragment
     * header is, from network_header (6 when no extension header before it). */
    size_t ipv6_fragment_next_header_offset;

    enum packet_transport transport;
    const uint8_t *transport_header;
    size_t transport_header_length; /* TCP: with its options */
    uint16_t source_port, destination_port;
    uint32_t tcp_sequence, tcp_acknowledgment;
    uint8_t tcp_flags;
    uint16_t tcp_window;
    uint8_t icmp_type, icmp_code;
    bool neighbor_discovery; /* ICMPv6 router/neighbour solicitation, advertisement, redirect */
    /* TCP and UDP: the data after the header; ICMP: the whole message. */
    const uint8_t *payload;
    size_t payload_length;
};

/* Parses an Ethernet frame into *view. On an error, *view holds what was
 * parsed before it. */
enum packet_parse_result packet_parse(const uint8_t *frame, size_t length, struct packet_view *view);

/* Parses a network-layer packet of the given ethertype (a reassembled
 * datagram, say) into *view; the Ethernet fields of *view are left as they
 * are, so a caller may keep the ones of the frame the datagram came in. */
enum packet_parse_result packet_parse_network(uint16_t ethertype, const uint8_t *packet, size_t length,
                                              struct packet_view *view);

const char *packet_parse_result_name(enum packet_parse_result result);

/* A parsed packet's flow in an operator's words, into out (at most size
 * bytes, always terminated): "tcp 10.0.0.2:7000 > 10.0.0.9:41234",
 * "udp [fd00::2]:53 > [fd00::9]:5353", "icmp 10.0.0.2 > 10.0.0.9",
 * "arp", "ethertype 0x88cc"; VLAN tags first ("vlan 10 ..."). */
void packet_describe(const struct packet_view *view, char *out, size_t size);

/* Big-endian reads, for the parser and its users. */
static inline uint16_t packet_read_16(const uint8_t *bytes)
{
    return (uint16_t)(bytes[0] << 8 | bytes[1]);
}

static inline uint32_t packet_read_32(const uint8_t *bytes)
{
    return (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 | (uint32_t)bytes[2] << 8 | bytes[3];
}

static inline void packet_write_16(uint8_t *bytes, uint16_t value)
{
    bytes[0] = (uint8_t)(value >> 8);
    bytes[1] = (uint8_t)value;
}

static inline void packet_write_32(uint8_t *bytes, uint32_t value)
{
    packet_write_16(bytes, (uint16_t)(value >> 16));
    packet_write_16(bytes + 2, (uint16_t)value);
}

#endif
