/* Bounded IP fragment reassembly (proxy/fragment_reassembly.h): IPv4 and
 * IPv6 datagrams come back whole in any fragment order; overlaps, a
 * second end, the limits and expiry drop what they must and count it. */
#include <stdlib.h>
#include <string.h>

#include "fragment_reassembly.h"
#include "frame_builder.h"
#include "test_check.h"

static const uint8_t server4[4] = { 10, 0, 0, 2 }, client4[4] = { 10, 0, 0, 1 };
static const uint8_t server6[16] = { 0xfd, [15] = 2 }, client6[16] = { 0xfd, [15] = 1 };

static struct frame_spec spec_of(unsigned ip_version, uint8_t protocol)
{
    struct frame_spec spec = {
        .ip_version = ip_version, .protocol = protocol, .source_port = 53, .destination_port = 5353, .sequence = 7
    };
    memcpy(spec.source_ip, ip_version == 4 ? server4 : server6, ip_version == 4 ? 4 : 16);
    memcpy(spec.destination_ip, ip_version == 4 ? client4 : client6, ip_version == 4 ? 4 : 16);
    return spec;
}

static void init(struct fragment_reassembly *reassembly, unsigned datagrams, size_t bytes)
{
    struct fragment_reassembly_limits limits = { .datagrams_max = datagrams,
                                                 .total_bytes_max = bytes,
                                                 .expiry_us = 1000000 };
    struct error error;
    if (fragment_reassembly_init(reassembly, &limits, &error) != 0) {
        fprintf(stderr, "%s\n", error.message);
        abort();
    }
}

/* Adds the fragment [offset, offset + length) of the datagram in whole. */
static enum fragment_result add(struct fragment_reassembly *reassembly, const struct frame_spec *spec,
                                const uint8_t *whole, size_t offset, size_t length, bool more, uint32_t id,
                                uint64_t now_us, const uint8_t **datagram, size_t *datagram_length)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    size_t frame_length = frame_fragment(frame, spec, whole, offset, length, more, id);
    struct packet_view view;
    enum packet_parse_result parsed = packet_parse(frame, frame_length, &view);
    if (parsed != PACKET_PARSE_OK || !view.fragment) {
        fprintf(stderr, "fragment does not parse: %s\n", packet_parse_result_name(parsed));
        abort();
    }
    uint64_t serial;
    return fragment_reassembly_add(reassembly, &view, now_us, datagram, datagram_length, &serial);
}

static void test_ipv4_out_of_order(void)
{
    struct fragment_reassembly reassembly;
    init(&reassembly, 4, 1 << 20);
    uint8_t payload[1000], whole[FRAME_BUILDER_MAX];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 13 + 1);
    struct frame_spec spec = spec_of(4, 17);
    spec.ip_id = 9;
    size_t whole_length = frame_build(whole, &spec, payload, sizeof payload); /* 1008 bytes of UDP */
    const uint8_t *datagram;
    size_t length;
    CHECK(add(&reassembly, &spec, whole, 800, 208, false, 9, 0, &datagram, &length) == FRAGMENT_INCOMPLETE, "last");
    CHECK(add(&reassembly, &spec, whole, 0, 400, true, 9, 10, &datagram, &length) == FRAGMENT_INCOMPLETE, "first");
    CHECK(fragment_reassembly_in_progress(&reassembly) == 1, "one in progress");
    enum fragment_result result = add(&reassembly, &spec, whole, 400, 400, true, 9, 20, &datagram, &length);
    CHECK(result == FRAGMENT_COMPLETE, "middle completes it (%d)", result);
    CHECK(length == whole_length - 14 && memcmp(datagram, whole + 14, length) == 0,
          "the datagram is the unfragmented one, header and checksum included");
    struct packet_view view;
    CHECK(packet_parse_network(PACKET_ETHERTYPE_IPV4, datagram, length, &view) == PACKET_PARSE_OK &&
              view.transport == PACKET_TRANSPORT_UDP && view.payload_length == sizeof payload &&
              memcmp(view.payload, payload, sizeof payload) == 0,
          "reassembled UDP parses");
    CHECK(fragment_reassembly_in_progress(&reassembly) == 0 && reassembly.total_bytes == 0, "nothing left");
    CHECK(reassembly.counters.datagrams_completed == 1 && reassembly.counters.fragments == 3, "counted");
    fragment_reassembly_destroy(&reassembly);
}

static void test_ipv6_interleaved(void)
{
    struct fragment_reassembly reassembly;
    init(&reassembly, 4, 1 << 20);
    uint8_t payload[300], whole_a[FRAME_BUILDER_MAX], whole_b[FRAME_BUILDER_MAX];
    memset(payload, 'a', sizeof payload);
    struct frame_spec spec = spec_of(6, 6);
    size_t length_a = frame_build(whole_a, &spec, payload, sizeof payload); /* 320 bytes of TCP */
    memset(payload, 'b', sizeof payload);
    frame_build(whole_b, &spec, payload, sizeof payload);
    const uint8_t *datagram;
    size_t length;
    CHECK(add(&reassembly, &spec, whole_a, 0, 160, true, 1, 0, &datagram, &length) == FRAGMENT_INCOMPLETE, "a0");
    CHECK(add(&reassembly, &spec, whole_b, 160, 160, false, 2, 0, &datagram, &length) == FRAGMENT_INCOMPLETE, "b1");
    CHECK(add(&reassembly, &spec, whole_a, 160, 160, false, 1, 0, &datagram, &length) == FRAGMENT_COMPLETE, "a1");
    CHECK(length == length_a - 14 && memcmp(datagram, whole_a + 14, length) == 0, "a is the unfragmented datagram");
    struct packet_view view;
    CHECK(packet_parse_network(PACKET_ETHERTYPE_IPV6, datagram, length, &view) == PACKET_PARSE_OK &&
              view.transport == PACKET_TRANSPORT_TCP && view.payload_length == 300 && view.payload[0] == 'a',
          "a parses as TCP");
    CHECK(add(&reassembly, &spec, whole_b, 0, 160, true, 2, 0, &datagram, &length) == FRAGMENT_COMPLETE, "b0");
    CHECK(packet_parse_network(PACKET_ETHERTYPE_IPV6, datagram, length, &view) == PACKET_PARSE_OK &&
              view.payload[299] == 'b',
          "b parses");
    fragment_reassembly_destroy(&reassembly);
}

static void test_errors(void)
{
    struct fragment_reassembly reassembly;
    init(&reassembly, 2, 4000);
    uint8_t payload[1000], whole[FRAME_BUILDER_MAX];
    memset(payload, 7, sizeof payload);
    struct frame_spec spec = spec_of(4, 17);
    frame_build(whole, &spec, payload, sizeof payload);
    const uint8_t *datagram;
    size_t length;

    add(&reassembly, &spec, whole, 0, 400, true, 1, 0, &datagram, &length);
    CHECK(add(&reassembly, &spec, whole, 392, 400, true, 1, 0, &datagram, &length) == FRAGMENT_OVERLAP, "overlap");
    CHECK(fragment_reassembly_in_progress(&reassembly) == 0 && reassembly.counters.overlapping == 1,
          "an overlap drops the datagram and is counted");

    add(&reassembly, &spec, whole, 0, 400, true, 2, 0, &datagram, &length);
    CHECK(add(&reassembly, &spec, whole, 800, 208, false, 2, 0, &datagram, &length) == FRAGMENT_INCOMPLETE, "end");
    CHECK(add(&reassembly, &spec, whole, 400, 208, false, 2, 0, &datagram, &length) == FRAGMENT_INCONSISTENT,
          "a second end elsewhere");
    add(&reassembly, &spec, whole, 400, 400, true, 3, 0, &datagram, &length);
    CHECK(add(&reassembly, &spec, whole, 200, 8, false, 3, 0, &datagram, &length) == FRAGMENT_INCONSISTENT,
          "an end before data already there");
    CHECK(reassembly.counters.inconsistent == 2 && fragment_reassembly_in_progress(&reassembly) == 0, "counted");

    /* Two datagrams at most. */
    add(&reassembly, &spec, whole, 0, 400, true, 4, 0, &datagram, &length);
    add(&reassembly, &spec, whole, 0, 400, true, 5, 0, &datagram, &length);
    CHECK(add(&reassembly, &spec, whole, 0, 400, true, 6, 0, &datagram, &length) == FRAGMENT_FULL, "a third");
    CHECK(add(&reassembly, &spec, whole, 400, 400, true, 4, 0, &datagram, &length) == FRAGMENT_INCOMPLETE, "fits");
    CHECK(reassembly.total_bytes == 1200, "bytes accounted (%zu)", reassembly.total_bytes);
    CHECK(reassembly.counters.dropped_full == 1, "full counted");

    /* Expiry by the caller's clock: one second. */
    CHECK(fragment_reassembly_expire(&reassembly, 1000000) == 0, "not yet");
    CHECK(add(&reassembly, &spec, whole, 800, 208, false, 4, 1000001, &datagram, &length) == FRAGMENT_INCOMPLETE,
          "datagram 4 expired before this fragment: it starts over");
    CHECK(reassembly.counters.expired == 2 && fragment_reassembly_in_progress(&reassembly) == 1, "both expired");
    fragment_reassembly_reset(&reassembly);
    CHECK(fragment_reassembly_in_progress(&reassembly) == 0 && reassembly.total_bytes == 0, "reset");
    fragment_reassembly_destroy(&reassembly);

    /* 1000 bytes in progress at most: 800 fit, 208 more do not. */
    init(&reassembly, 2, 1000);
    add(&reassembly, &spec, whole, 0, 400, true, 1, 0, &datagram, &length);
    add(&reassembly, &spec, whole, 400, 400, true, 1, 0, &datagram, &length);
    CHECK(add(&reassembly, &spec, whole, 800, 208, false, 1, 0, &datagram, &length) == FRAGMENT_FULL,
          "over the byte budget");
    CHECK(reassembly.total_bytes == 800 && reassembly.counters.dropped_full == 1, "the budget holds");
    fragment_reassembly_destroy(&reassembly);
}

/* An IPv6 fragment with a hop-by-hop header before its fragment header:
 * that header is part of the unfragmentable part, kept in the datagram,
 * and its next-header byte (not the fixed header's) names the upper layer
 * again. */
static size_t ipv6_fragment_after_hop_by_hop(uint8_t *out, const uint8_t *whole, size_t offset, size_t length,
                                             bool more)
{
    memcpy(out, whole, 14 + 40);
    uint8_t *ip = out + 14;
    ip[6] = 0; /* hop-by-hop */
    frame_put_16(ip + 4, (unsigned)(8 + 8 + length));
    uint8_t *hop = ip + 40;
    memset(hop, 0, 8);
    hop[0] = 44; /* then the fragment header */
    hop[2] = 1;  /* PadN of 4 */
    hop[3] = 4;
    uint8_t *fragment = hop + 8;
    fragment[0] = whole[14 + 6];
    fragment[1] = 0;
    frame_put_16(fragment + 2, (unsigned)offset | (more ? 1 : 0));
    frame_put_32(fragment + 4, 99);
    memcpy(fragment + 8, whole + 14 + 40 + offset, length);
    return 14 + 40 + 16 + length;
}

static void test_ipv6_extension_before_fragment(void)
{
    struct fragment_reassembly reassembly;
    init(&reassembly, 2, 1 << 20);
    uint8_t payload[200], whole[FRAME_BUILDER_MAX], frame[FRAME_BUILDER_MAX];
    memset(payload, 'h', sizeof payload);
    struct frame_spec spec = spec_of(6, 17);
    frame_build(whole, &spec, payload, sizeof payload); /* 208 bytes of UDP */
    const uint8_t *datagram = NULL;
    size_t length = 0;
    uint64_t serial;
    struct packet_view view;
    size_t frame_length = ipv6_fragment_after_hop_by_hop(frame, whole, 104, 104, false);
    CHECK(packet_parse(frame, frame_length, &view) == PACKET_PARSE_OK && view.fragment && view.ip_header_length == 48 &&
              view.ipv6_fragment_next_header_offset == 40,
          "fragment after hop-by-hop parses");
    fragment_reassembly_add(&reassembly, &view, 0, &datagram, &length, &serial);
    frame_length = ipv6_fragment_after_hop_by_hop(frame, whole, 0, 104, true);
    packet_parse(frame, frame_length, &view);
    CHECK(fragment_reassembly_add(&reassembly, &view, 0, &datagram, &length, &serial) == FRAGMENT_COMPLETE, "complete");
    CHECK(length == 40 + 8 + 208 && packet_read_16(datagram + 4) == 8 + 208 && datagram[6] == 0 && datagram[40] == 17,
          "hop-by-hop kept, its next header now UDP, payload length without the fragment header");
    struct packet_view whole_view;
    CHECK(packet_parse_network(PACKET_ETHERTYPE_IPV6, datagram, length, &whole_view) == PACKET_PARSE_OK &&
              whole_view.transport == PACKET_TRANSPORT_UDP && whole_view.payload_length == 200 &&
              memcmp(whole_view.payload, payload, 200) == 0,
          "the reassembled datagram parses as the UDP sent");
    fragment_reassembly_destroy(&reassembly);
}

int main(void)
{
    test_ipv6_extension_before_fragment();
    test_ipv4_out_of_order();
    test_ipv6_interleaved();
    test_errors();
    return test_check_finish("fragment_reassembly_test");
}
