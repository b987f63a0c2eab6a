/* The comparing proxy's frame parser (packet_parse.h). Written from the
 * specifications: IEEE 802.1Q, RFC 826 (ARP), RFC 791 (IPv4), RFC 8200
 * (IPv6 and its extension headers), RFC 9293 (TCP), RFC 768 (UDP),
 * RFC 792 and RFC 4443 (ICMP), RFC 4861 (neighbour discovery). */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "packet_parse.h"

#define IPV4_HEADER_MIN 20
#define IPV6_HEADER_SIZE 40
#define IPV6_EXTENSION_HEADERS_MAX 8 /* more is not a real stack's output */
#define IPV6_HOP_BY_HOP 0
#define IPV6_ROUTING 43
#define IPV6_FRAGMENT 44
#define IPV6_DESTINATION 60
#define IPV6_FRAGMENT_HEADER_SIZE 8
#define TCP_HEADER_MIN 20
#define UDP_HEADER_SIZE 8
#define ICMP_HEADER_MIN 4
#define ARP_FIXED_SIZE 8
#define IP_DATAGRAM_MAX 65535u

static void clear_network(struct packet_view *view)
{
    view->network = PACKET_NETWORK_OTHER;
    view->network_header = NULL;
    view->network_length = 0;
    view->source_address = view->destination_address = NULL;
    view->address_length = 0;
    view->protocol = 0;
    view->ip_header_length = 0;
    view->ip_payload = NULL;
    view->ip_payload_length = 0;
    view->fragment = view->more_fragments = false;
    view->fragment_id = view->fragment_offset = 0;
    view->ipv6_fragment_next_header_offset = 0;
    view->transport = PACKET_TRANSPORT_NONE;
    view->transport_header = NULL;
    view->transport_header_length = 0;
    view->source_port = view->destination_port = 0;
    view->tcp_sequence = view->tcp_acknowledgment = 0;
    view->tcp_flags = 0;
    view->tcp_window = 0;
    view->icmp_type = view->icmp_code = 0;
    view->neighbor_discovery = false;
    view->payload = NULL;
    view->payload_length = 0;
}

static enum packet_parse_result parse_transport(struct packet_view *view)
{
    const uint8_t *segment = view->ip_payload;
    size_t length = view->ip_payload_length;
    switch (view->protocol) {
    case PACKET_PROTOCOL_TCP: {
        if (length < TCP_HEADER_MIN)
            return PACKET_PARSE_TRUNCATED_TCP;
        size_t header_length = (size_t)(segment[12] >> 4) * 4;
        if (header_length < TCP_HEADER_MIN || header_length > length)
            return PACKET_PARSE_BAD_TCP_DATA_OFFSET;
        view->transport = PACKET_TRANSPORT_TCP;
        view->source_port = packet_read_16(segment);
        view->destination_port = packet_read_16(segment + 2);
        view->tcp_sequence = packet_read_32(segment + 4);
        view->tcp_acknowledgment = packet_read_32(segment + 8);
        view->tcp_flags = segment[13];
        view->tcp_window = packet_read_16(segment + 14);
        view->transport_header = segment;
        view->transport_header_length = header_length;
        view->payload = segment + header_length;
        view->payload_length = length - header_length;
        return PACKET_PARSE_OK;
    }
    case PACKET_PROTOCOL_UDP: {
        if (length < UDP_HEADER_SIZE)
            return PACKET_PARSE_TRUNCATED_UDP;
        size_t udp_length = packet_read_16(segment + 4);
        if (udp_length < UDP_HEADER_SIZE || udp_length > length)
            return PACKET_PARSE_BAD_UDP_LENGTH;
        view->transport = PACKET_TRANSPORT_UDP;
        view->source_port = packet_read_16(segment);
        view->destination_port = packet_read_16(segment + 2);
        view->transport_header = segment;
        view->transport_header_length = UDP_HEADER_SIZE;
        view->payload = segment + UDP_HEADER_SIZE;
        view->payload_length = udp_length - UDP_HEADER_SIZE;
        return PACKET_PARSE_OK;
    }
    case PACKET_PROTOCOL_ICMP:
    case PACKET_PROTOCOL_ICMPV6: {
        /* ICMP over IPv6 or ICMPv6 over IPv4 is odd but not malformed: the
         * message is read the same way either way. */
        if (length < ICMP_HEADER_MIN)
            return PACKET_PARSE_TRUNCATED_ICMP;
        bool version6 = view->protocol == PACKET_PROTOCOL_ICMPV6;
        view->transport = version6 ? PACKET_TRANSPORT_ICMPV6 : PACKET_TRANSPORT_ICMP;
        view->icmp_type = segment[0];
        view->icmp_code = segment[1];
        /* Router solicitation 133 to redirect 137 (RFC 4861). */
        view->neighbor_discovery = version6 && segment[0] >= 133 && segment[0] <= 137;
        view->transport_header = segment;
        view->transport_header_length = ICMP_HEADER_MIN;
        view->payload = segment;
        view->payload_length = length;
        return PACKET_PARSE_OK;
    }
    default:
        return PACKET_PARSE_OK; /* an opaque protocol: its payload is ip_payload */
    }
}

static enum packet_parse_result parse_ipv4(const uint8_t *packet, size_t length, struct packet_view *view)
{
    if (length < IPV4_HEADER_MIN)
        return PACKET_PARSE_TRUNCATED_IPV4;
    if (packet[0] >> 4 != 4)
        return PACKET_PARSE_BAD_IPV4_VERSION;
    size_t header_length = (size_t)(packet[0] & 0x0f) * 4;
    if (header_length < IPV4_HEADER_MIN || header_length > length)
        return PACKET_PARSE_BAD_IPV4_HEADER_LENGTH;
    size_t total_length = packet_read_16(packet + 2);
    /* Less than the frame is Ethernet padding; more is a lie. */
    if (total_length < header_length || total_length > length)
        return PACKET_PARSE_BAD_IPV4_TOTAL_LENGTH;
    view->network = PACKET_NETWORK_IPV4;
    view->network_header = packet;
    view->network_length = total_length;
    view->source_address = packet + 12;
    view->destination_address = packet + 16;
    view->address_length = 4;
    view->protocol = packet[9];
    view->ip_header_length = header_length;
    view->ip_payload = packet + header_length;
    view->ip_payload_length = total_length - header_length;
    uint16_t flags_offset = packet_read_16(packet + 6);
    view->more_fragments = (flags_offset & 0x2000) != 0;
    view->fragment_offset = (uint32_t)(flags_offset & 0x1fff) * 8;
    view->fragment = view->more_fragments || view->fragment_offset != 0;
    if (view->fragment) {
        view->fragment_id = packet_read_16(packet + 4);
        if (view->more_fragments && (view->ip_payload_length == 0 || view->ip_payload_length % 8 != 0))
            return PACKET_PARSE_BAD_IPV4_FRAGMENT;
        if (view->fragment_offset + view->ip_payload_length + header_length > IP_DATAGRAM_MAX)
            return PACKET_PARSE_BAD_IPV4_FRAGMENT;
        return PACKET_PARSE_OK;
    }
    return parse_transport(view);
}

static enum packet_parse_result parse_ipv6(const uint8_t *packet, size_t length, struct packet_view *view)
{
    if (length < IPV6_HEADER_SIZE)
        return PACKET_PARSE_TRUNCATED_IPV6;
    if (packet[0] >> 4 != 6)
        return PACKET_PARSE_BAD_IPV6_VERSION;
    size_t payload_length = packet_read_16(packet + 4);
    /* A payload length of 0 means a jumbogram (RFC 2675): not on Ethernet. */
    if (payload_length > length - IPV6_HEADER_SIZE)
        return PACKET_PARSE_BAD_IPV6_PAYLOAD_LENGTH;
    size_t end = IPV6_HEADER_SIZE + payload_length;
    view->network = PACKET_NETWORK_IPV6;
    view->network_header = packet;
    view->network_length = end;
    view->source_address = packet + 8;
    view->destination_address = packet + 24;
    view->address_length = 16;

    size_t next_header_offset = 6, offset = IPV6_HEADER_SIZE;
    uint8_t next_header = packet[6];
    for (unsigned count = 0;; count++) {
        if (next_header != IPV6_HOP_BY_HOP && next_header != IPV6_ROUTING && next_header != IPV6_DESTINATION &&
            next_header != IPV6_FRAGMENT)
            break;
        if (count == IPV6_EXTENSION_HEADERS_MAX)
            return PACKET_PARSE_BAD_IPV6_EXTENSION;
        /* Hop-by-hop options only right after the fixed header. */
        if (next_header == IPV6_HOP_BY_HOP && count != 0)
            return PACKET_PARSE_BAD_IPV6_EXTENSION;
        if (end - offset < 8)
            return next_header == IPV6_FRAGMENT ? PACKET_PARSE_BAD_IPV6_FRAGMENT : PACKET_PARSE_BAD_IPV6_EXTENSION;
        if (next_header == IPV6_FRAGMENT) {
            const uint8_t *fragment = packet + offset;
            uint16_t offset_flags = packet_read_16(fragment + 2);
            view->protocol = fragment[0];
            view->ip_header_length = offset;
            view->ipv6_fragment_next_header_offset = next_header_offset;
            view->ip_payload = fragment + IPV6_FRAGMENT_HEADER_SIZE;
            view->ip_payload_length = end - offset - IPV6_FRAGMENT_HEADER_SIZE;
            view->fragment = true;
            view->more_fragments = (offset_flags & 1) != 0;
            view->fragment_offset = (uint32_t)(offset_flags >> 3) * 8;
            view->fragment_id = packet_read_32(fragment + 4);
            if (view->more_fragments && (view->ip_payload_length == 0 || view->ip_payload_length % 8 != 0))
                return PACKET_PARSE_BAD_IPV6_FRAGMENT;
            /* The reassembled payload (after the fixed header) must fit its
             * 16-bit length. */
            if (view->fragment_offset + view->ip_payload_length + offset - IPV6_HEADER_SIZE > IP_DATAGRAM_MAX)
                return PACKET_PARSE_BAD_IPV6_FRAGMENT;
            /* An atomic fragment (offset 0, no more: RFC 6946) is a whole
             * datagram: read on past the fragment header as if it were not
             * there. */
            if (view->more_fragments || view->fragment_offset != 0)
                return PACKET_PARSE_OK;
            view->fragment = false;
            next_header_offset = offset;
            next_header = fragment[0];
            offset += IPV6_FRAGMENT_HEADER_SIZE;
            continue;
        }
        size_t header_length = ((size_t)packet[offset + 1] + 1) * 8;
        if (header_length > end - offset)
            return PACKET_PARSE_BAD_IPV6_EXTENSION;
        next_header_offset = offset;
        next_header = packet[offset];
        offset += header_length;
    }
    view->protocol = next_header;
    view->ip_header_length = offset;
    view->ip_payload = packet + offset;
    view->ip_payload_length = end - offset;
    return parse_transport(view);
}

enum packet_parse_result packet_parse_network(uint16_t ethertype, const uint8_t *packet, size_t length,
                                              struct packet_view *view)
{
    clear_network(view);
    view->ethertype = ethertype;
    switch (ethertype) {
    case PACKET_ETHERTYPE_IPV4:
        return parse_ipv4(packet, length, view);
    case PACKET_ETHERTYPE_IPV6:
        return parse_ipv6(packet, length, view);
    case PACKET_ETHERTYPE_ARP: {
        if (length < ARP_FIXED_SIZE)
            return PACKET_PARSE_TRUNCATED_ARP;
        size_t arp_length = ARP_FIXED_SIZE + 2 * ((size_t)packet[4] + packet[5]);
        if (arp_length > length)
            return PACKET_PARSE_TRUNCATED_ARP;
        view->network = PACKET_NETWORK_ARP;
        view->network_header = packet;
        view->network_length = arp_length; /* without the padding */
        return PACKET_PARSE_OK;
    }
    default:
        view->network_header = packet;
        view->network_length = length;
        return PACKET_PARSE_OK;
    }
}

enum packet_parse_result packet_parse(const uint8_t *frame, size_t length, struct packet_view *view)
{
    memset(view, 0, sizeof *view);
    view->frame = frame;
    view->frame_length = length;
    if (length < PACKET_ETHERNET_HEADER_SIZE)
        return PACKET_PARSE_TRUNCATED_ETHERNET;
    view->destination_mac = frame;
    view->source_mac = frame + 6;
    size_t offset = 12;
    uint16_t ethertype = packet_read_16(frame + offset);
    while (ethertype == PACKET_ETHERTYPE_VLAN || ethertype == PACKET_ETHERTYPE_VLAN_QINQ) {
        if (view->vlan_count == PACKET_VLAN_TAGS_MAX)
            return PACKET_PARSE_TOO_MANY_VLAN_TAGS;
        /* The tag's TPID is at offset; its TCI and the next type follow. */
        if (length - offset < 6)
            return PACKET_PARSE_TRUNCATED_VLAN;
        view->vlan_tpid[view->vlan_count] = ethertype;
        view->vlan_tci[view->vlan_count] = packet_read_16(frame + offset + 2);
        view->vlan_count++;
        offset += 4;
        ethertype = packet_read_16(frame + offset);
    }
    offset += 2;
    return packet_parse_network(ethertype, frame + offset, length - offset, view);
}

const char *packet_parse_result_name(enum packet_parse_result result)
{
    static const char *const names[PACKET_PARSE_RESULT_COUNT] = {
        [PACKET_PARSE_OK] = "ok",
        [PACKET_PARSE_TRUNCATED_ETHERNET] = "truncated Ethernet header",
        [PACKET_PARSE_TRUNCATED_VLAN] = "truncated VLAN tag",
        [PACKET_PARSE_TOO_MANY_VLAN_TAGS] = "more than two VLAN tags",
        [PACKET_PARSE_TRUNCATED_ARP] = "truncated ARP message",
        [PACKET_PARSE_TRUNCATED_IPV4] = "truncated IPv4 header",
        [PACKET_PARSE_BAD_IPV4_VERSION] = "IPv4 ethertype with another IP version",
        [PACKET_PARSE_BAD_IPV4_HEADER_LENGTH] = "bad IPv4 header length",
        [PACKET_PARSE_BAD_IPV4_TOTAL_LENGTH] = "bad IPv4 total length",
        [PACKET_PARSE_BAD_IPV4_FRAGMENT] = "bad IPv4 fragment",
        [PACKET_PARSE_TRUNCATED_IPV6] = "truncated IPv6 header",
        [PACKET_PARSE_BAD_IPV6_VERSION] = "IPv6 ethertype with another IP version",
        [PACKET_PARSE_BAD_IPV6_PAYLOAD_LENGTH] = "bad IPv6 payload length",
        [PACKET_PARSE_BAD_IPV6_EXTENSION] = "bad IPv6 extension header",
        [PACKET_PARSE_BAD_IPV6_FRAGMENT] = "bad IPv6 fragment",
        [PACKET_PARSE_TRUNCATED_TCP] = "truncated TCP header",
        [PACKET_PARSE_BAD_TCP_DATA_OFFSET] = "bad TCP data offset",
        [PACKET_PARSE_TRUNCATED_UDP] = "truncated UDP header",
        [PACKET_PARSE_BAD_UDP_LENGTH] = "bad UDP length",
        [PACKET_PARSE_TRUNCATED_ICMP] = "truncated ICMP header",
    };
    if ((unsigned)result >= PACKET_PARSE_RESULT_COUNT)
        return "unknown";
    return names[result];
}

/* An address as text: [v6] when a port follows, so the colon reads right. */
static void describe_address(const struct packet_view *view, const uint8_t *address, bool with_port, char *out,
                             size_t size)
{
    char text[INET6_ADDRSTRLEN] = "?";
    inet_ntop(view->address_length == 16 ? AF_INET6 : AF_INET, address, text, sizeof text);
    snprintf(out, size, view->address_length == 16 && with_port ? "[%s]" : "%s", text);
}

void packet_describe(const struct packet_view *view, char *out, size_t size)
{
    size_t used = 0;
    out[0] = 0;
    for (unsigned i = 0; i < view->vlan_count && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "vlan %u ", view->vlan_tci[i] & 0xfffu);
    if (used >= size)
        return;
    if (view->network == PACKET_NETWORK_ARP) {
        snprintf(out + used, size - used, "arp");
        return;
    }
    if (view->network != PACKET_NETWORK_IPV4 && view->network != PACKET_NETWORK_IPV6) {
        snprintf(out + used, size - used, "ethertype 0x%04x", view->ethertype);
        return;
    }
    bool ports = view->transport == PACKET_TRANSPORT_TCP || view->transport == PACKET_TRANSPORT_UDP;
    char source[INET6_ADDRSTRLEN + 2], destination[INET6_ADDRSTRLEN + 2];
    describe_address(view, view->source_address, ports, source, sizeof source);
    describe_address(view, view->destination_address, ports, destination, sizeof destination);
    static const char *const transports[] = {
        [PACKET_TRANSPORT_TCP] = "tcp",
        [PACKET_TRANSPORT_UDP] = "udp",
        [PACKET_TRANSPORT_ICMP] = "icmp",
        [PACKET_TRANSPORT_ICMPV6] = "icmpv6",
    };
    if (ports)
        snprintf(out + used, size - used, "%s %s:%u > %s:%u", transports[view->transport], source, view->source_port,
                 destination, view->destination_port);
    else if (view->transport != PACKET_TRANSPORT_NONE)
        snprintf(out + used, size - used, "%s %s > %s", transports[view->transport], source, destination);
    else
        snprintf(out + used, size - used, "ip protocol %u %s > %s%s", view->protocol, source, destination,
                 view->fragment ? " (fragment)" : "");
}
