/* The comparing proxy's frame parser (proxy/packet_parse.h): each
 * protocol's fields, VLAN tags, IPv6 extension headers, fragments, and
 * every truncation or bad length is its named result, never a crash; and
 * each kind of packet described in an operator's words. */
#include <string.h>

#include "frame_builder.h"
#include "packet_parse.h"
#include "test_check.h"

static const uint8_t client4[4] = { 192, 0, 2, 1 }, server4[4] = { 192, 0, 2, 2 };
static const uint8_t client6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
static const uint8_t server6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 2 };

static struct frame_spec spec_of(unsigned ip_version, uint8_t protocol)
{
    struct frame_spec spec = { .ip_version = ip_version,
                               .protocol = protocol,
                               .source_port = 80,
                               .destination_port = 40000,
                               .sequence = 1000,
                               .acknowledgment = 2000,
                               .tcp_flags = PACKET_TCP_ACK | PACKET_TCP_PSH };
    memcpy(spec.source_ip, ip_version == 4 ? server4 : server6, ip_version == 4 ? 4 : 16);
    memcpy(spec.destination_ip, ip_version == 4 ? client4 : client6, ip_version == 4 ? 4 : 16);
    return spec;
}

/* Every cut of the frame before `header_end` is an error; every cut parses
 * without reading past the end (ASan watches a copy of exactly that size). */
static void check_truncations(const uint8_t *frame, size_t length, size_t header_end, const char *what)
{
    uint8_t copy[FRAME_BUILDER_MAX];
    for (size_t cut = 0; cut < length; cut++) {
        memcpy(copy, frame, cut);
        struct packet_view view;
        enum packet_parse_result result = packet_parse(copy, cut, &view);
        if (cut < header_end)
            CHECK(result != PACKET_PARSE_OK, "%s cut at %zu parses as ok", what, cut);
    }
}

static void test_tcp_ipv4(void)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = spec_of(4, 6);
    size_t length = frame_build(frame, &spec, (const uint8_t *)"hi", 2);
    CHECK(length == 60, "padded to 60, got %zu", length);
    struct packet_view view;
    enum packet_parse_result result = packet_parse(frame, length, &view);
    CHECK(result == PACKET_PARSE_OK, "tcp/ipv4: %s", packet_parse_result_name(result));
    CHECK(view.network == PACKET_NETWORK_IPV4 && view.transport == PACKET_TRANSPORT_TCP, "layers");
    CHECK(view.network_length == 42 && view.ip_header_length == 20, "IP lengths without the padding");
    CHECK(view.source_port == 80 && view.destination_port == 40000, "ports");
    CHECK(view.tcp_sequence == 1000 && view.tcp_acknowledgment == 2000, "seq and ack");
    CHECK(view.tcp_flags == (PACKET_TCP_ACK | PACKET_TCP_PSH), "flags");
    CHECK(view.payload_length == 2 && memcmp(view.payload, "hi", 2) == 0, "payload without the padding");
    CHECK(view.payload == frame + 54, "payload points into the frame");
    CHECK(!view.fragment && view.vlan_count == 0, "no fragment, no tag");
    check_truncations(frame, length, 56, "tcp/ipv4");

    /* With options: the data offset says where the payload starts. */
    static const uint8_t options[12] = { 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2 };
    spec.tcp_options = options;
    spec.tcp_options_length = sizeof options;
    length = frame_build(frame, &spec, (const uint8_t *)"data", 4);
    result = packet_parse(frame, length, &view);
    CHECK(result == PACKET_PARSE_OK && view.transport_header_length == 32 && view.payload_length == 4 &&
              memcmp(view.payload, "data", 4) == 0,
          "tcp options skipped");
}

static void test_malformed_ipv4(void)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = spec_of(4, 6);
    size_t length = frame_build(frame, &spec, (const uint8_t *)"hello", 5);
    struct packet_view view;
    uint8_t copy[FRAME_BUILDER_MAX];

    memcpy(copy, frame, length);
    copy[14] = 0x44; /* IHL 4 */
    CHECK(packet_parse(copy, length, &view) == PACKET_PARSE_BAD_IPV4_HEADER_LENGTH, "IHL below 5");
    memcpy(copy, frame, length);
    copy[14] = 0x46; /* 24 bytes of header: past the total length */
    copy[16] = 0;
    copy[17] = 20;
    CHECK(packet_parse(copy, length, &view) == PACKET_PARSE_BAD_IPV4_TOTAL_LENGTH, "total length below IHL");
    memcpy(copy, frame, length);
    copy[16] = 0x05; /* total length 0x05xx: past the frame */
    CHECK(packet_parse(copy, length, &view) == PACKET_PARSE_BAD_IPV4_TOTAL_LENGTH, "total length past the frame");
    memcpy(copy, frame, length);
    copy[14] = 0x55;
    CHECK(packet_parse(copy, length, &view) == PACKET_PARSE_BAD_IPV4_VERSION, "version 5 in an IPv4 ethertype");
    memcpy(copy, frame, length);
    copy[14 + 20 + 12] = 0x40; /* data offset 4 words */
    CHECK(packet_parse(copy, length, &view) == PACKET_PARSE_BAD_TCP_DATA_OFFSET, "TCP data offset 4");
    memcpy(copy, frame, length);
    copy[14 + 20 + 12] = 0xf0; /* 60 bytes of TCP header in a 25-byte segment */
    CHECK(packet_parse(copy, length, &view) == PACKET_PARSE_BAD_TCP_DATA_OFFSET, "TCP data offset past the end");
    memcpy(copy, frame, length);
    copy[16] = 0;
    copy[17] = 30; /* 10 bytes of TCP */
    CHECK(packet_parse(copy, length, &view) == PACKET_PARSE_TRUNCATED_TCP, "TCP header cut by total length");
}

static void test_vlan_tags(void)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = spec_of(4, 17);
    spec.vlan_count = 2;
    spec.vlan_tpid[0] = PACKET_ETHERTYPE_VLAN_QINQ;
    spec.vlan_tci[0] = 100;
    spec.vlan_tpid[1] = PACKET_ETHERTYPE_VLAN;
    spec.vlan_tci[1] = 0x2000 | 7;
    size_t length = frame_build(frame, &spec, (const uint8_t *)"udp", 3);
    struct packet_view view;
    enum packet_parse_result result = packet_parse(frame, length, &view);
    CHECK(result == PACKET_PARSE_OK, "two tags: %s", packet_parse_result_name(result));
    CHECK(view.vlan_count == 2 && view.vlan_tci[0] == 100 && view.vlan_tci[1] == (0x2000 | 7) &&
              view.vlan_tpid[0] == PACKET_ETHERTYPE_VLAN_QINQ,
          "tags read outermost first");
    CHECK(view.transport == PACKET_TRANSPORT_UDP && view.payload_length == 3 && memcmp(view.payload, "udp", 3) == 0,
          "udp under two tags");
    check_truncations(frame, length, 14 + 8 + 20 + 8, "udp/vlan");

    /* A third tag is not something a VM's NIC sends. */
    uint8_t three[FRAME_BUILDER_MAX];
    memcpy(three, frame, 12);
    memcpy(three + 12, frame + 12, 8);
    three[20] = 0x81;
    three[21] = 0x00;
    three[22] = 0;
    three[23] = 5;
    memcpy(three + 24, frame + 20, length - 20);
    CHECK(packet_parse(three, length + 4, &view) == PACKET_PARSE_TOO_MANY_VLAN_TAGS, "three tags");

    /* UDP length past the segment, and below the header. */
    uint8_t copy[FRAME_BUILDER_MAX];
    memcpy(copy, frame, length);
    copy[22 + 20 + 5] = 200;
    CHECK(packet_parse(copy, length, &view) == PACKET_PARSE_BAD_UDP_LENGTH, "UDP length past the segment");
    copy[22 + 20 + 5] = 7;
    CHECK(packet_parse(copy, length, &view) == PACKET_PARSE_BAD_UDP_LENGTH, "UDP length below 8");
}

static void test_ipv6(void)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = spec_of(6, 17);
    size_t length = frame_build(frame, &spec, (const uint8_t *)"six", 3);
    struct packet_view view;
    enum packet_parse_result result = packet_parse(frame, length, &view);
    CHECK(result == PACKET_PARSE_OK && view.network == PACKET_NETWORK_IPV6 && view.transport == PACKET_TRANSPORT_UDP,
          "udp/ipv6: %s", packet_parse_result_name(result));
    CHECK(view.address_length == 16 && memcmp(view.source_address, server6, 16) == 0, "IPv6 source");
    CHECK(view.payload_length == 3 && memcmp(view.payload, "six", 3) == 0, "udp/ipv6 payload");
    check_truncations(frame, length, 14 + 40 + 8, "udp/ipv6");

    /* Hop-by-hop (8 bytes) and destination options (16 bytes) before UDP. */
    uint8_t extended[FRAME_BUILDER_MAX];
    memcpy(extended, frame, 54);
    extended[14 + 6] = 0; /* next: hop-by-hop */
    extended[14 + 4] = 0; /* payload length: 24 + 11 */
    extended[14 + 5] = 35;
    uint8_t *hop = extended + 54;
    memset(hop, 0, 24);
    hop[0] = 60; /* then destination options */
    hop[1] = 0;
    hop[2] = 1; /* PadN */
    hop[3] = 4;
    hop[8] = 17; /* then UDP */
    hop[9] = 1;
    hop[10] = 1;
    hop[11] = 12;
    memcpy(extended + 78, frame + 54, 11);
    size_t extended_length = 89;
    result = packet_parse(extended, extended_length, &view);
    CHECK(result == PACKET_PARSE_OK && view.transport == PACKET_TRANSPORT_UDP && view.ip_header_length == 64 &&
              view.payload_length == 3 && memcmp(view.payload, "six", 3) == 0,
          "extension headers walked: %s", packet_parse_result_name(result));
    check_truncations(extended, extended_length, extended_length - 3, "ipv6 extensions");
    uint8_t copy[FRAME_BUILDER_MAX];
    memcpy(copy, extended, extended_length);
    copy[54 + 8 + 1] = 9; /* destination options of 80 bytes: past the payload */
    CHECK(packet_parse(copy, extended_length, &view) == PACKET_PARSE_BAD_IPV6_EXTENSION, "extension past the end");
    memcpy(copy, extended, extended_length);
    copy[54] = 0; /* a second hop-by-hop header */
    CHECK(packet_parse(copy, extended_length, &view) == PACKET_PARSE_BAD_IPV6_EXTENSION, "misplaced hop-by-hop");
    memcpy(copy, extended, extended_length);
    copy[14 + 5] = 200;
    CHECK(packet_parse(copy, extended_length, &view) == PACKET_PARSE_BAD_IPV6_PAYLOAD_LENGTH,
          "payload length past the frame");
    memcpy(copy, extended, extended_length);
    copy[14] = 0x40;
    CHECK(packet_parse(copy, extended_length, &view) == PACKET_PARSE_BAD_IPV6_VERSION, "version 4 in IPv6");
}

static void test_icmp_and_neighbor_discovery(void)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = spec_of(4, 1);
    spec.icmp_type = 0; /* echo reply */
    size_t length = frame_build(frame, &spec, (const uint8_t *)"\0\1\0\2ping", 8);
    struct packet_view view;
    CHECK(packet_parse(frame, length, &view) == PACKET_PARSE_OK && view.transport == PACKET_TRANSPORT_ICMP &&
              view.icmp_type == 0 && view.payload_length == 12 && !view.neighbor_discovery,
          "icmp echo reply");
    check_truncations(frame, length, 14 + 20 + 4, "icmp");

    spec = spec_of(6, 58);
    spec.icmp_type = 136; /* neighbour advertisement */
    uint8_t body[24] = { 0x60 };
    memcpy(body + 4, server6, 16);
    length = frame_build(frame, &spec, body, sizeof body);
    CHECK(packet_parse(frame, length, &view) == PACKET_PARSE_OK && view.transport == PACKET_TRANSPORT_ICMPV6 &&
              view.icmp_type == 136 && view.neighbor_discovery && view.payload_length == 28,
          "neighbour advertisement");
    spec.icmp_type = 129; /* echo reply */
    length = frame_build(frame, &spec, body, 8);
    CHECK(packet_parse(frame, length, &view) == PACKET_PARSE_OK && !view.neighbor_discovery, "icmpv6 echo is not ND");
    check_truncations(frame, length, 14 + 40 + 4, "icmpv6");
}

static void test_arp_and_other(void)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = spec_of(4, 0);
    size_t length = frame_build_arp(frame, &spec, 2);
    struct packet_view view;
    CHECK(packet_parse(frame, length, &view) == PACKET_PARSE_OK && view.network == PACKET_NETWORK_ARP &&
              view.network_length == 28,
          "arp reply without its padding");
    check_truncations(frame, length, 14 + 28, "arp");

    /* An ethertype the parser does not know is opaque, not an error. */
    frame[12] = 0x88;
    frame[13] = 0xb5;
    CHECK(packet_parse(frame, length, &view) == PACKET_PARSE_OK && view.network == PACKET_NETWORK_OTHER &&
              view.ethertype == 0x88b5 && view.network_length == length - 14,
          "opaque ethertype");
    CHECK(packet_parse(frame, 13, &view) == PACKET_PARSE_TRUNCATED_ETHERNET, "13 bytes");
}

static void test_fragments(void)
{
    uint8_t whole[FRAME_BUILDER_MAX], fragment[FRAME_BUILDER_MAX];
    uint8_t payload[100];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    struct frame_spec spec = spec_of(4, 17);
    frame_build(whole, &spec, payload, sizeof payload);
    struct packet_view view;
    size_t length = frame_fragment(fragment, &spec, whole, 0, 48, true, 77);
    CHECK(packet_parse(fragment, length, &view) == PACKET_PARSE_OK && view.fragment && view.more_fragments &&
              view.fragment_offset == 0 && view.fragment_id == 77 && view.transport == PACKET_TRANSPORT_NONE &&
              view.ip_payload_length == 48 && view.protocol == 17,
          "first IPv4 fragment: network layer only");
    length = frame_fragment(fragment, &spec, whole, 48, 60, false, 77);
    CHECK(packet_parse(fragment, length, &view) == PACKET_PARSE_OK && view.fragment && !view.more_fragments &&
              view.fragment_offset == 48 && view.ip_payload_length == 60,
          "last IPv4 fragment");
    length = frame_fragment(fragment, &spec, whole, 0, 44, true, 77);
    CHECK(packet_parse(fragment, length, &view) == PACKET_PARSE_BAD_IPV4_FRAGMENT, "middle piece not 8-aligned");
    length = frame_fragment(fragment, &spec, whole, 48, 60, false, 77);
    fragment[14 + 6] = 0x1f; /* offset 8191 * 8 */
    fragment[14 + 7] = 0xff;
    CHECK(packet_parse(fragment, length, &view) == PACKET_PARSE_BAD_IPV4_FRAGMENT, "fragment past 65535");

    spec = spec_of(6, 6);
    frame_build(whole, &spec, payload, sizeof payload);
    length = frame_fragment(fragment, &spec, whole, 64, 56, false, 0x12345678);
    CHECK(packet_parse(fragment, length, &view) == PACKET_PARSE_OK && view.fragment && !view.more_fragments &&
              view.fragment_offset == 64 && view.fragment_id == 0x12345678 && view.protocol == 6 &&
              view.ip_header_length == 40 && view.ipv6_fragment_next_header_offset == 6 && view.ip_payload_length == 56,
          "last IPv6 fragment");
    check_truncations(fragment, length, 14 + 48, "ipv6 fragment");
    length = frame_fragment(fragment, &spec, whole, 8, 20, true, 1);
    CHECK(packet_parse(fragment, length, &view) == PACKET_PARSE_BAD_IPV6_FRAGMENT, "IPv6 middle piece not aligned");
    /* An atomic fragment is a whole datagram. */
    length = frame_fragment(fragment, &spec, whole, 0, 120, false, 1);
    CHECK(packet_parse(fragment, length, &view) == PACKET_PARSE_OK && !view.fragment &&
              view.transport == PACKET_TRANSPORT_TCP && view.payload_length == 100,
          "atomic IPv6 fragment read through");
}

/* packet_describe: the flow in an operator's words. */
static void check_description(const uint8_t *frame, size_t length, const char *expected)
{
    struct packet_view view;
    char text[96];
    CHECK(packet_parse(frame, length, &view) == PACKET_PARSE_OK, "%s parses", expected);
    packet_describe(&view, text, sizeof text);
    CHECK(strcmp(text, expected) == 0, "described as '%s', expected '%s'", text, expected);
}

static void test_describe(void)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = spec_of(4, 6);
    check_description(frame, frame_build(frame, &spec, (const uint8_t *)"x", 1), "tcp 192.0.2.2:80 > 192.0.2.1:40000");
    spec = spec_of(6, 17);
    check_description(frame, frame_build(frame, &spec, (const uint8_t *)"x", 1),
                      "udp [2001:db8::2]:80 > [2001:db8::1]:40000");
    spec = spec_of(4, 1);
    spec.icmp_type = 8;
    check_description(frame, frame_build(frame, &spec, (const uint8_t *)"ping", 4), "icmp 192.0.2.2 > 192.0.2.1");
    spec = spec_of(4, 17);
    spec.vlan_count = 1;
    spec.vlan_tpid[0] = PACKET_ETHERTYPE_VLAN;
    spec.vlan_tci[0] = 0x2000 | 10;
    check_description(frame, frame_build(frame, &spec, (const uint8_t *)"x", 1),
                      "vlan 10 udp 192.0.2.2:80 > 192.0.2.1:40000");
    spec = spec_of(4, 0);
    size_t length = frame_build_arp(frame, &spec, 2);
    check_description(frame, length, "arp");
    frame[12] = 0x88;
    frame[13] = 0xcc;
    check_description(frame, length, "ethertype 0x88cc");
    /* A short buffer is cut, and still terminated. */
    spec = spec_of(6, 6);
    length = frame_build(frame, &spec, (const uint8_t *)"x", 1);
    struct packet_view view;
    char small[12];
    CHECK(packet_parse(frame, length, &view) == PACKET_PARSE_OK, "tcp/ipv6 parses");
    packet_describe(&view, small, sizeof small);
    CHECK(strcmp(small, "tcp [2001:d") == 0, "cut to its buffer: '%s'", small);
}

int main(void)
{
    test_describe();
    test_tcp_ipv4();
    test_malformed_ipv4();
    test_vlan_tags();
    test_ipv6();
    test_icmp_and_neighbor_discovery();
    test_arp_and_other();
    test_fragments();
    return test_check_finish("packet_parse_test");
}
