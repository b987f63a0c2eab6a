/* The comparing proxy's comparator (proxy/output_compare.h) over synthetic
 * flows: one TCP byte stream cut differently by the two VMs matches, a FIN
 * alone or on the last data matches, different bytes or events do not;
 * UDP, ICMP, neighbour discovery, ARP, other ethertypes, VLAN tags and
 * fragments; parse errors; every bound; the timeout and the reset. */
#include <stdlib.h>
#include <string.h>

#include "frame_builder.h"
#include "output_compare.h"
#include "test_check.h"

static const uint8_t server4[4] = { 10, 0, 0, 2 }, client4[4] = { 10, 0, 0, 1 };
static const uint8_t server6[16] = { 0xfd, [15] = 2 }, client6[16] = { 0xfd, [15] = 1 };

#define ISN 1000000u

static struct frame_spec tcp_spec(uint32_t sequence, uint8_t flags)
{
    struct frame_spec spec = { .ip_version = 4,
                               .protocol = 6,
                               .source_port = 80,
                               .destination_port = 40000,
                               .sequence = sequence,
                               .acknowledgment = 555,
                               .tcp_flags = flags };
    memcpy(spec.source_ip, server4, 4);
    memcpy(spec.destination_ip, client4, 4);
    return spec;
}

static struct frame_spec datagram_spec(unsigned ip_version, uint8_t protocol)
{
    struct frame_spec spec = {
        .ip_version = ip_version, .protocol = protocol, .source_port = 53, .destination_port = 6000
    };
    memcpy(spec.source_ip, ip_version == 4 ? server4 : server6, ip_version == 4 ? 4 : 16);
    memcpy(spec.destination_ip, ip_version == 4 ? client4 : client6, ip_version == 4 ? 4 : 16);
    return spec;
}

static void init(struct output_compare *compare, unsigned flows, unsigned held, size_t bytes)
{
    struct output_compare_limits limits = {
        .flows_max = flows,
        .held_frames_max = held,
        .buffered_bytes_max = bytes,
        .fragments = { .datagrams_max = 4, .total_bytes_max = 1 << 20, .expiry_us = 1000000 },
    };
    struct error error;
    if (output_compare_init(compare, &limits, &error) != 0) {
        fprintf(stderr, "%s\n", error.message);
        abort();
    }
}

static uint64_t now_us;

/* A string literal's bytes, NULs included. */
#define BYTES(literal) (const uint8_t *)(literal), sizeof(literal) - 1

static uint64_t primary_bytes(struct output_compare *compare, const struct frame_spec *spec, const uint8_t *payload,
                              size_t payload_length, struct output_compare_result *result)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    size_t length = frame_build(frame, spec, payload, payload_length);
    uint64_t handle;
    struct output_compare_result local = output_compare_add_primary(compare, frame, length, ++now_us, &handle);
    if (result)
        *result = local;
    return handle;
}

static uint64_t primary(struct output_compare *compare, const struct frame_spec *spec, const char *payload,
                        struct output_compare_result *result)
{
    return primary_bytes(compare, spec, (const uint8_t *)payload, strlen(payload), result);
}

static struct output_compare_result secondary_bytes(struct output_compare *compare, const struct frame_spec *spec,
                                                    const uint8_t *payload, size_t payload_length)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    size_t length = frame_build(frame, spec, payload, payload_length);
    return output_compare_add_secondary(compare, frame, length, ++now_us);
}

static struct output_compare_result secondary(struct output_compare *compare, const struct frame_spec *spec,
                                              const char *payload)
{
    return secondary_bytes(compare, spec, (const uint8_t *)payload, strlen(payload));
}

/* Takes every releasable handle; returns how many, in `handles`. */
static unsigned take_all(struct output_compare *compare, uint64_t *handles, unsigned max)
{
    unsigned count = 0;
    uint64_t handle;
    while (output_compare_take_releasable(compare, &handle)) {
        if (count < max)
            handles[count] = handle;
        count++;
    }
    return count;
}

static void test_segmentation_does_not_matter(void)
{
    struct output_compare compare;
    init(&compare, 16, 64, 1 << 20);
    uint64_t taken[8];
    /* The PVM sends the stream in one segment, the SVM in three. */
    struct frame_spec spec = tcp_spec(ISN, PACKET_TCP_ACK | PACKET_TCP_PSH);
    uint64_t whole = primary(&compare, &spec, "hello, world", NULL);
    CHECK(take_all(&compare, taken, 8) == 0, "nothing to compare with yet");
    struct output_compare_result result = secondary(&compare, &spec, "hel");
    CHECK(!result.difference && take_all(&compare, taken, 8) == 0, "3 of 12 bytes matched: still held");
    spec.sequence = ISN + 3;
    secondary(&compare, &spec, "lo, w");
    CHECK(take_all(&compare, taken, 8) == 0, "8 of 12 bytes matched: still held");
    spec.sequence = ISN + 8;
    result = secondary(&compare, &spec, "orld");
    CHECK(!result.difference && result.releasable == 1, "all matched: one releasable");
    CHECK(take_all(&compare, taken, 8) == 1 && taken[0] == whole, "the PVM's segment leaves");

    /* Now the SVM first, in one piece, and the PVM in three: each PVM
     * segment may leave as it comes. */
    spec.sequence = ISN + 12;
    secondary(&compare, &spec, "second part!");
    uint64_t first = primary(&compare, &spec, "seco", &result);
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == first, "first piece leaves");
    spec.sequence = ISN + 16;
    primary(&compare, &spec, "nd p", NULL);
    spec.sequence = ISN + 20;
    primary(&compare, &spec, "art!", NULL);
    CHECK(take_all(&compare, taken, 8) == 2 && taken[0] < taken[1], "the other two leave, in order");

    /* A retransmission of matched bytes leaves at once; a pure ACK of what
     * the SVM acknowledged too. */
    spec.sequence = ISN + 16;
    uint64_t retransmitted = primary(&compare, &spec, "nd part!", NULL);
    CHECK(take_all(&compare, taken, 8) == 1 && taken[0] == retransmitted, "retransmission leaves");
    spec.sequence = ISN + 24;
    spec.tcp_flags = PACKET_TCP_ACK;
    uint64_t ack = primary(&compare, &spec, "", NULL);
    CHECK(take_all(&compare, taken, 8) == 1 && taken[0] == ack, "pure ACK of what the SVM acknowledged leaves");
    /* A PVM segment that acknowledges more of the client's bytes than the
     * SVM did waits, data or not: after a failover the SVM would not have
     * them, and the client would not send them again. */
    spec.acknowledgment += 100;
    uint64_t ahead = primary(&compare, &spec, "", NULL);
    CHECK(take_all(&compare, taken, 8) == 0, "a pure ACK ahead of the SVM's waits");
    secondary(&compare, &spec, "third");
    uint64_t data_ahead = primary(&compare, &spec, "third", NULL);
    CHECK(take_all(&compare, taken, 8) == 2 && taken[0] == ahead && taken[1] == data_ahead,
          "the SVM's segment acknowledging as much lets both out, in order");

    struct output_compare_counters counters;
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    CHECK(counters.matched_bytes == 29 && counters.released_at_once == 0 && counters.released_matched == 8,
          "counted: %llu bytes, %llu at once, %llu matched", (unsigned long long)counters.matched_bytes,
          (unsigned long long)counters.released_at_once, (unsigned long long)counters.released_matched);
    for (int cause = 0; cause < OUTPUT_COMPARE_CAUSE_COUNT; cause++)
        CHECK(counters.differences[cause] == 0, "no %s difference", output_compare_cause_name(cause));
    output_compare_destroy(&compare);
}

static void test_connection_events(void)
{
    struct output_compare compare;
    init(&compare, 16, 64, 1 << 20);
    uint64_t taken[8];
    /* A connection opened since the checkpoint: the SVM's SYN-ACK has its
     * own ISN (the secondary did not know the shift yet); its data after
     * that is in the PVM's sequence space. */
    struct frame_spec spec = tcp_spec(ISN, PACKET_TCP_SYN | PACKET_TCP_ACK);
    uint64_t syn = primary(&compare, &spec, "", NULL);
    CHECK(take_all(&compare, taken, 8) == 0, "a SYN waits for the SVM's");
    struct frame_spec svm = tcp_spec(777, PACKET_TCP_SYN | PACKET_TCP_ACK);
    struct output_compare_result result = secondary(&compare, &svm, "");
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == syn, "SYN matched SYN");

    /* Data and FIN in one PVM segment; data, then FIN alone, from the SVM. */
    spec = tcp_spec(ISN + 1, PACKET_TCP_ACK | PACKET_TCP_FIN);
    uint64_t last = primary(&compare, &spec, "bye", NULL);
    svm = tcp_spec(ISN + 1, PACKET_TCP_ACK);
    secondary(&compare, &svm, "bye");
    CHECK(take_all(&compare, taken, 8) == 0, "bytes matched, the FIN not yet");
    svm = tcp_spec(ISN + 4, PACKET_TCP_ACK | PACKET_TCP_FIN);
    result = secondary(&compare, &svm, "");
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == last, "piggy-backed FIN matched");
    /* A retransmitted FIN is the same event. */
    spec = tcp_spec(ISN + 4, PACKET_TCP_ACK | PACKET_TCP_FIN);
    primary(&compare, &spec, "", NULL);
    CHECK(take_all(&compare, taken, 8) == 1, "retransmitted FIN leaves");

    /* Another connection: the PVM closes, the SVM resets. */
    spec = tcp_spec(5000, PACKET_TCP_ACK | PACKET_TCP_FIN);
    spec.source_port = 81;
    uint64_t fin = primary(&compare, &spec, "", NULL);
    svm = tcp_spec(5000, PACKET_TCP_RST);
    svm.source_port = 81;
    result = secondary(&compare, &svm, "");
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_TCP_EVENT, "FIN against RST");
    CHECK(take_all(&compare, taken, 8) == 0, "the FIN waits for the checkpoint");
    /* A FIN at another place in the stream is a difference too. */
    spec = tcp_spec(9000, PACKET_TCP_ACK | PACKET_TCP_FIN);
    spec.source_port = 82;
    primary(&compare, &spec, "ab", NULL);
    svm = tcp_spec(9000, PACKET_TCP_ACK | PACKET_TCP_FIN);
    svm.source_port = 82;
    result = secondary(&compare, &svm, "a");
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_TCP_EVENT, "FIN one byte early");

    uint64_t oldest;
    CHECK(output_compare_oldest_unmatched_us(&compare, &oldest) && oldest == now_us - 3,
          "the oldest unmatched is the FIN of port 81 (%llu, now %llu)", (unsigned long long)oldest,
          (unsigned long long)now_us);
    (void)fin;
    output_compare_note_timeout(&compare, 0);
    output_compare_reset(&compare);
    CHECK(!output_compare_oldest_unmatched_us(&compare, &oldest) && take_all(&compare, taken, 8) == 0,
          "a checkpoint forgets everything held");
    struct output_compare_counters counters;
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    CHECK(counters.differences[OUTPUT_COMPARE_CAUSE_TCP_EVENT] == 2 &&
              counters.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT] == 1 && counters.checkpoints == 1,
          "differences counted by cause");
    /* After the reset the same connection compares afresh. */
    spec = tcp_spec(5000, PACKET_TCP_ACK);
    spec.source_port = 81;
    uint64_t fresh = primary(&compare, &spec, "again", NULL);
    svm = tcp_spec(5000, PACKET_TCP_ACK);
    svm.source_port = 81;
    result = secondary(&compare, &svm, "again");
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == fresh, "compares after reset");
    output_compare_destroy(&compare);
}

static void test_different_payload(void)
{
    struct output_compare compare;
    init(&compare, 16, 64, 1 << 20);
    uint64_t taken[8];
    struct frame_spec spec = tcp_spec(ISN, PACKET_TCP_ACK);
    primary(&compare, &spec, "HTTP/1.1 200 OK", NULL);
    struct output_compare_result result = secondary(&compare, &spec, "HTTP/1.1 ");
    CHECK(!result.difference, "the common prefix matches");
    spec.sequence = ISN + 9;
    result = secondary(&compare, &spec, "500 Oops");
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PAYLOAD, "different bytes");
    CHECK(take_all(&compare, taken, 8) == 0, "nothing leaves");
    struct output_compare_counters counters;
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    const struct output_compare_difference *last = &counters.last_difference;
    CHECK(last->count == 1 && last->cause == OUTPUT_COMPARE_CAUSE_PAYLOAD && !last->by_primary &&
              last->at_us == now_us && strcmp(last->flow, "tcp 10.0.0.2:80 > 10.0.0.1:40000") == 0,
          "the last difference: count %llu, cause %s, by the %s, flow '%s'", (unsigned long long)last->count,
          output_compare_cause_name(last->cause), last->by_primary ? "PVM" : "SVM", last->flow);
    /* The flow compares no more, and says so once. */
    spec.sequence = ISN + 15;
    result = secondary(&compare, &spec, "more");
    CHECK(!result.difference, "a diverged flow is not a second difference");

    /* UDP: same datagrams in order match; a different one does not. */
    struct frame_spec udp = datagram_spec(4, 17);
    uint64_t first = primary(&compare, &udp, "query one", NULL);
    primary(&compare, &udp, "query two", NULL);
    result = secondary(&compare, &udp, "query one");
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == first, "first datagram matched");
    result = secondary(&compare, &udp, "query 2");
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PAYLOAD, "different datagram");
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    CHECK(counters.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD] == 2, "two payload differences");
    CHECK(last->count == 2 && strcmp(last->flow, "udp 10.0.0.2:53 > 10.0.0.1:6000") == 0,
          "the last difference is the datagram's: '%s'", last->flow);
    output_compare_destroy(&compare);
}

static void test_datagram_protocols(void)
{
    struct output_compare compare;
    init(&compare, 16, 64, 1 << 20);
    uint64_t taken[8];
    struct output_compare_result result;

    /* UDP over IPv6 under a VLAN tag; another VLAN is another flow. */
    struct frame_spec udp = datagram_spec(6, 17);
    udp.vlan_count = 1;
    udp.vlan_tci[0] = 10;
    uint64_t tagged = primary(&compare, &udp, "on vlan 10", NULL);
    udp.vlan_tci[0] = 20;
    result = secondary(&compare, &udp, "on vlan 10");
    CHECK(!result.difference && take_all(&compare, taken, 8) == 0, "another VLAN is another flow");
    udp.vlan_tci[0] = 0x2000 | 10; /* priority bits are not the VLAN */
    result = secondary(&compare, &udp, "on vlan 10");
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == tagged, "same VLAN id matched");

    /* ICMP echo replies per identifier. */
    struct frame_spec icmp = datagram_spec(4, 1);
    uint64_t echo = primary_bytes(&compare, &icmp, BYTES("\0\1\0\1ping"), NULL);
    result = secondary_bytes(&compare, &icmp, BYTES("\0\1\0\1ping"));
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == echo, "echo reply matched");
    primary_bytes(&compare, &icmp, BYTES("\0\1\0\2ping"), NULL);
    result = secondary_bytes(&compare, &icmp, BYTES("\0\1\0\2pong"));
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PAYLOAD, "different echo body");

    /* Neighbour discovery is its own flow: an NA and an echo reply from the
     * same address, in different orders, still match. */
    struct frame_spec nd = datagram_spec(6, 58);
    nd.icmp_type = 136;
    struct frame_spec echo6 = datagram_spec(6, 58);
    echo6.icmp_type = 129;
    uint64_t advertisement = primary_bytes(&compare, &nd, BYTES("\x60\0\0\0target.........."), NULL);
    uint64_t reply = primary_bytes(&compare, &echo6, BYTES("\0\7\0\1data"), NULL);
    secondary_bytes(&compare, &echo6, BYTES("\0\7\0\1data"));
    CHECK(take_all(&compare, taken, 8) == 1 && taken[0] == reply, "echo reply first");
    result = secondary_bytes(&compare, &nd, BYTES("\x60\0\0\0target.........."));
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == advertisement, "then the NA");
    nd.icmp_code = 1;
    primary_bytes(&compare, &nd, BYTES("\x60\0\0\0target.........."), NULL);
    nd.icmp_code = 0;
    result = secondary_bytes(&compare, &nd, BYTES("\x60\0\0\0target.........."));
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PAYLOAD, "a different ICMP code");

    /* ARP replies as whole messages. */
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec arp = datagram_spec(4, 0);
    size_t length = frame_build_arp(frame, &arp, 2);
    uint64_t arp_handle;
    output_compare_add_primary(&compare, frame, length, ++now_us, &arp_handle);
    result = output_compare_add_secondary(&compare, frame, length, ++now_us);
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == arp_handle, "ARP matched");
    output_compare_add_primary(&compare, frame, length, ++now_us, &arp_handle);
    frame[14 + 7] = 1; /* a request, not a reply */
    result = output_compare_add_secondary(&compare, frame, length, ++now_us);
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PAYLOAD, "ARP request against reply");

    /* Another ethertype: the whole frame. */
    frame[12] = 0x88;
    frame[13] = 0xb5;
    uint64_t other;
    output_compare_add_primary(&compare, frame, length, ++now_us, &other);
    result = output_compare_add_secondary(&compare, frame, length, ++now_us);
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == other, "opaque frame matched");
    output_compare_add_primary(&compare, frame, length, ++now_us, &other);
    frame[length - 1] ^= 1;
    result = output_compare_add_secondary(&compare, frame, length, ++now_us);
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PAYLOAD, "opaque frame differs in its last byte");
    output_compare_destroy(&compare);
}

static void test_fragments(void)
{
    struct output_compare compare;
    init(&compare, 16, 64, 1 << 20);
    uint64_t taken[8];
    char payload[1001];
    for (size_t i = 0; i < 1000; i++)
        payload[i] = (char)('a' + i % 26);
    payload[1000] = 0;
    /* The PVM fragments a UDP datagram in three; the SVM sends it whole. */
    struct frame_spec udp = datagram_spec(4, 17);
    uint8_t whole[FRAME_BUILDER_MAX], fragment[FRAME_BUILDER_MAX];
    size_t whole_length = frame_build(whole, &udp, (const uint8_t *)payload, 1000);
    uint64_t handles[3];
    size_t cuts[4] = { 0, 400, 800, 1008 };
    for (int i = 0; i < 3; i++) {
        size_t length = frame_fragment(fragment, &udp, whole, cuts[i], cuts[i + 1] - cuts[i], i < 2, 42);
        output_compare_add_primary(&compare, fragment, length, ++now_us, &handles[i]);
    }
    CHECK(take_all(&compare, taken, 8) == 0, "fragments wait");
    struct output_compare_result result = output_compare_add_secondary(&compare, whole, whole_length, ++now_us);
    CHECK(!result.difference && take_all(&compare, taken, 8) == 3 && taken[0] == handles[0] && taken[2] == handles[2],
          "all three fragments leave, in order");

    /* IPv6 TCP fragmented by the SVM (in two), whole from the PVM. */
    struct frame_spec tcp = tcp_spec(ISN, PACKET_TCP_ACK);
    tcp.ip_version = 6;
    memcpy(tcp.source_ip, server6, 16);
    memcpy(tcp.destination_ip, client6, 16);
    whole_length = frame_build(whole, &tcp, (const uint8_t *)payload, 1000);
    uint64_t segment;
    output_compare_add_primary(&compare, whole, whole_length, ++now_us, &segment);
    size_t length = frame_fragment(fragment, &tcp, whole, 512, 508, false, 7);
    output_compare_add_secondary(&compare, fragment, length, ++now_us);
    length = frame_fragment(fragment, &tcp, whole, 0, 512, true, 7);
    result = output_compare_add_secondary(&compare, fragment, length, ++now_us);
    CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == segment, "IPv6 fragments matched");

    /* Overlapping fragments: a protocol difference, counted. */
    frame_build(whole, &udp, (const uint8_t *)payload, 1000);
    length = frame_fragment(fragment, &udp, whole, 0, 400, true, 43);
    output_compare_add_secondary(&compare, fragment, length, ++now_us);
    length = frame_fragment(fragment, &udp, whole, 392, 400, true, 43);
    result = output_compare_add_secondary(&compare, fragment, length, ++now_us);
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PROTOCOL, "overlap is a difference");
    struct fragment_reassembly_counters secondary_fragments;
    struct output_compare_counters counters;
    output_compare_get_counters(&compare, &counters, NULL, &secondary_fragments);
    CHECK(secondary_fragments.overlapping == 1 && counters.differences[OUTPUT_COMPARE_CAUSE_PROTOCOL] == 1,
          "overlap counted");

    /* A PVM datagram whose last fragment never comes: its first fragment
     * is what the caller's timeout sees, and the reset clears it. */
    output_compare_reset(&compare);
    take_all(&compare, taken, 8);
    length = frame_fragment(fragment, &udp, whole, 0, 400, true, 44);
    uint64_t lonely_us = ++now_us, lonely;
    output_compare_add_primary(&compare, fragment, length, lonely_us, &lonely);
    struct frame_spec other = datagram_spec(4, 17);
    other.source_port = 99;
    primary(&compare, &other, "later", NULL);
    uint64_t oldest;
    CHECK(output_compare_oldest_unmatched_us(&compare, &oldest) && oldest == lonely_us,
          "the lonely fragment is the oldest unmatched");
    CHECK(take_all(&compare, taken, 8) == 0, "and it does not leave");
    output_compare_reset(&compare);
    CHECK(!output_compare_oldest_unmatched_us(&compare, &oldest), "the checkpoint takes it");
    output_compare_destroy(&compare);
}

static void test_malformed_and_bounds(void)
{
    struct output_compare compare;
    init(&compare, 2, 4, 64);
    uint64_t taken[8];
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = tcp_spec(ISN, PACKET_TCP_ACK);
    size_t length = frame_build(frame, &spec, (const uint8_t *)"data", 4);
    uint64_t handle;
    struct output_compare_result result = output_compare_add_primary(&compare, frame, 30, ++now_us, &handle);
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PARSE_ERROR && handle != 0,
          "a truncated PVM frame is a difference, and held");
    frame[14 + 20 + 12] = 0x30; /* TCP data offset 3 */
    result = output_compare_add_secondary(&compare, frame, length, ++now_us);
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PARSE_ERROR, "a bad SVM frame too");
    struct output_compare_counters counters;
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    CHECK(counters.parse_errors[PACKET_PARSE_TRUNCATED_IPV4] == 1 &&
              counters.parse_errors[PACKET_PARSE_BAD_TCP_DATA_OFFSET] == 1 &&
              counters.differences[OUTPUT_COMPARE_CAUSE_PARSE_ERROR] == 2,
          "parse errors counted by what was malformed");
    CHECK(counters.last_difference.cause == OUTPUT_COMPARE_CAUSE_PARSE_ERROR && !counters.last_difference.by_primary &&
              strcmp(counters.last_difference.flow, packet_parse_result_name(PACKET_PARSE_BAD_TCP_DATA_OFFSET)) == 0,
          "the last difference names what was malformed: '%s'", counters.last_difference.flow);
    CHECK(take_all(&compare, taken, 8) == 0, "a parse error leaves only at the checkpoint");
    output_compare_reset(&compare);

    /* 64 buffered bytes at most. */
    char big[80];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    primary(&compare, &spec, big, &result);
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_OVERFLOW, "over the byte budget");
    output_compare_reset(&compare);

    /* Two flows at most. */
    struct frame_spec udp = datagram_spec(4, 17);
    primary(&compare, &udp, "one", &result);
    udp.source_port++;
    primary(&compare, &udp, "two", &result);
    CHECK(!result.difference, "two flows fit");
    udp.source_port++;
    primary(&compare, &udp, "three", &result);
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_OVERFLOW, "a third flow does not");
    /* Four held frames at most (three are held). */
    uint64_t fourth = primary(&compare, &udp, "four", &result);
    CHECK(fourth != OUTPUT_COMPARE_HANDLE_NONE, "the fourth is held");
    uint64_t fifth = primary(&compare, &udp, "five", &result);
    CHECK(fifth == OUTPUT_COMPARE_HANDLE_NONE && result.difference && result.cause == OUTPUT_COMPARE_CAUSE_OVERFLOW,
          "the fifth is not tracked");
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    CHECK(counters.dropped_buffer_full == 1 && counters.dropped_flow_table_full == 2 && counters.dropped_held_full == 1,
          "drops counted: buffer %llu, flows %llu, held %llu", (unsigned long long)counters.dropped_buffer_full,
          (unsigned long long)counters.dropped_flow_table_full, (unsigned long long)counters.dropped_held_full);
    output_compare_reset(&compare);

    /* Datagram flows leave the table once matched: many flows in a row fit
     * a table of two. */
    for (int i = 0; i < 10; i++) {
        udp.source_port = (uint16_t)(1000 + i);
        uint64_t matched = primary(&compare, &udp, "x", &result);
        secondary(&compare, &udp, "x");
        CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == matched, "flow %d", i);
    }
    output_compare_destroy(&compare);
}

/* The byte budget bounds the memory of the buffers, and an emptied
 * buffer gives its memory back. */
static void test_buffer_memory(void)
{
    struct output_compare compare;
    init(&compare, 8, 16, 4096);
    uint64_t taken[8];
    static char stream[1800];
    memset(stream, 's', sizeof stream);
    struct frame_spec tcp = tcp_spec(ISN, PACKET_TCP_ACK);
    struct output_compare_result result;
    uint64_t segment = primary_bytes(&compare, &tcp, (const uint8_t *)stream, 1400, &result);
    tcp.sequence += 1400;
    primary_bytes(&compare, &tcp, (const uint8_t *)stream, 1400, &result);
    CHECK(!result.difference && compare.buffered_bytes == 2800 && compare.buffered_capacity <= 4096,
          "2800 bytes buffered in at most 4096 (%zu)", compare.buffered_capacity);
    struct frame_spec udp = datagram_spec(4, 17);
    primary(&compare, &udp, "no room for this one's buffer", &result);
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_OVERFLOW, "the budget is on memory");
    tcp.sequence = ISN;
    secondary_bytes(&compare, &tcp, (const uint8_t *)stream, 1000);
    tcp.sequence += 1000;
    result = secondary_bytes(&compare, &tcp, (const uint8_t *)stream, 1800);
    CHECK(!result.difference && take_all(&compare, taken, 8) == 2 && taken[0] == segment, "the stream matched");
    CHECK(compare.buffered_bytes == 0 && compare.buffered_capacity <= 2048, "its buffer given back (%zu)",
          compare.buffered_capacity);
    udp.source_port++;
    primary(&compare, &udp, "room now", &result);
    CHECK(!result.difference, "another flow buffers again");
    output_compare_destroy(&compare);
}

/* Many flows in the table, matched (and so removed) in a scrambled
 * order: every lookup after a removal still finds its flow. */
static void test_many_flows(void)
{
    struct output_compare compare;
    init(&compare, 64, 128, 1 << 20);
    struct frame_spec udp = datagram_spec(4, 17);
    uint64_t handles[60], taken[8];
    for (int round = 0; round < 3; round++) {
        for (unsigned i = 0; i < 60; i++) {
            udp.source_port = (uint16_t)((i * 7919u + 13) % 65521u); /* spread: some share a home slot */
            handles[i] = primary(&compare, &udp, "datagram", NULL);
        }
        CHECK(flow_table_free_count(&compare.flow_table) == 4, "60 flows in a table of 64 (%u free)",
              flow_table_free_count(&compare.flow_table));
        for (unsigned step = 0; step < 60; step++) {
            unsigned i = (step * 37 + (unsigned)round * 11) % 60;
            udp.source_port = (uint16_t)((i * 7919u + 13) % 65521u);
            struct output_compare_result result = secondary(&compare, &udp, "datagram");
            CHECK(!result.difference && take_all(&compare, taken, 8) == 1 && taken[0] == handles[i],
                  "round %d: flow %u matched its own datagram", round, i);
        }
        CHECK(flow_table_free_count(&compare.flow_table) == 64, "every flow left the table (%u free)",
              flow_table_free_count(&compare.flow_table));
    }
    output_compare_destroy(&compare);
}

/* The same ports again after the connection closed: a new stream, whose
 * bytes must match the SVM's, not pass for retransmissions of the old. */
static void test_port_reuse(void)
{
    struct output_compare compare;
    init(&compare, 8, 32, 1 << 20);
    uint64_t taken[8];
    struct output_compare_result result;
    /* Old connection (from before the checkpoint): data and FIN, matched. */
    struct frame_spec spec = tcp_spec(ISN, PACKET_TCP_ACK | PACKET_TCP_FIN);
    primary(&compare, &spec, "old stream bytes", NULL);
    secondary(&compare, &spec, "old stream bytes");
    CHECK(take_all(&compare, taken, 8) == 1, "the old connection closed");
    /* A new connection: its ISN lies behind the old stream's end. */
    spec = tcp_spec(ISN - 5000, PACKET_TCP_SYN | PACKET_TCP_ACK);
    uint64_t syn = primary(&compare, &spec, "", &result);
    CHECK(!result.difference && take_all(&compare, taken, 8) == 0, "the new SYN waits for the SVM's");
    struct frame_spec svm = tcp_spec(123, PACKET_TCP_SYN | PACKET_TCP_ACK);
    secondary(&compare, &svm, "");
    CHECK(take_all(&compare, taken, 8) == 1 && taken[0] == syn, "the SYNs matched");
    spec = tcp_spec(ISN - 4999, PACKET_TCP_ACK);
    uint64_t data = primary(&compare, &spec, "new", NULL);
    CHECK(take_all(&compare, taken, 8) == 0, "new bytes wait for the SVM's");
    result = secondary(&compare, &spec, "NEW");
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PAYLOAD, "and are compared with them");
    (void)data;

    /* A new SYN while the old connection still has unmatched bytes. */
    spec = tcp_spec(7000, PACKET_TCP_ACK | PACKET_TCP_FIN);
    spec.source_port = 8080;
    primary(&compare, &spec, "x", NULL);
    secondary(&compare, &spec, "x");
    take_all(&compare, taken, 8);
    spec = tcp_spec(7001, PACKET_TCP_ACK);
    spec.source_port = 8080;
    svm = spec;
    secondary(&compare, &svm, "late"); /* the SVM's, unmatched: the flow is not quiet */
    spec = tcp_spec(90000, PACKET_TCP_SYN);
    spec.source_port = 8080;
    primary(&compare, &spec, "", &result);
    CHECK(result.difference && result.cause == OUTPUT_COMPARE_CAUSE_PROTOCOL, "reuse before the old one finished");
    struct output_compare_counters counters;
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    CHECK(counters.tcp_restarts == 1 && counters.tcp_restarts_refused == 1, "restarts counted");
    output_compare_destroy(&compare);
}

static uint32_t random_state = 12345;

static uint32_t random_below(uint32_t bound)
{
    random_state = random_state * 1103515245u + 12345u;
    return (random_state >> 8) % bound;
}

struct cut_segment {
    uint32_t start, length;
    bool fin;
};

/* The stream [0, length) cut at random, the FIN on the last piece or
 * alone; returns the number of segments. */
static unsigned cut_stream(uint32_t length, struct cut_segment *segments)
{
    unsigned count = 0;
    for (uint32_t start = 0; start < length;) {
        uint32_t piece = 1 + random_below(length - start < 600 ? length - start : 600);
        segments[count++] = (struct cut_segment){ .start = start, .length = piece };
        start += piece;
    }
    if (random_below(2))
        segments[count - 1].fin = true;
    else
        segments[count++] = (struct cut_segment){ .start = length, .length = 0, .fin = true };
    return count;
}

/* The claim itself: any two cuttings of one stream, interleaved in any
 * order, with retransmissions, match and release every PVM segment in
 * order; one byte changed anywhere is a payload difference. */
static void test_random_cuttings(void)
{
    static uint8_t stream[4000];
    static struct cut_segment cuts[2][4100];
    for (int trial = 0; trial < 120; trial++) {
        struct output_compare compare;
        init(&compare, 4, 8192, 1 << 20);
        uint32_t length = 1 + random_below(sizeof stream);
        for (uint32_t i = 0; i < length; i++)
            stream[i] = (uint8_t)random_below(256);
        bool corrupt = trial % 3 == 2;
        uint32_t corrupt_at = random_below(length);
        unsigned count[2], next[2] = { 0, 0 };
        for (int side = 0; side < 2; side++)
            count[side] = cut_stream(length, cuts[side]);
        if (trial % 2) {
            /* The edges of pieces are where comparisons start and stop. */
            const struct cut_segment *edge = &cuts[trial % 4 == 1][random_below(count[trial % 4 == 1])];
            if (edge->length)
                corrupt_at = edge->start + (random_below(2) ? edge->length - 1 : 0);
        }
        uint64_t last_taken = 0;
        unsigned released = 0, primary_segments = 0;
        bool differed = false, order_kept = true;
        while (next[0] < count[0] || next[1] < count[1]) {
            int side = next[0] == count[0] ? 1 : next[1] == count[1] ? 0 : (int)random_below(2);
            /* Now and then a retransmission of an earlier segment. */
            bool retransmit = next[side] > 0 && random_below(8) == 0;
            const struct cut_segment *cut = &cuts[side][retransmit ? random_below(next[side]) : next[side]++];
            struct frame_spec spec = tcp_spec(ISN + cut->start, PACKET_TCP_ACK | (cut->fin ? PACKET_TCP_FIN : 0));
            uint8_t bytes[600];
            memcpy(bytes, stream + cut->start, cut->length);
            if (corrupt && side == 1 && corrupt_at >= cut->start && corrupt_at < cut->start + cut->length)
                bytes[corrupt_at - cut->start] ^= 0x40;
            struct output_compare_result result;
            if (side == 0) {
                primary_bytes(&compare, &spec, bytes, cut->length, &result);
                primary_segments++;
            } else {
                result = secondary_bytes(&compare, &spec, bytes, cut->length);
            }
            if (result.difference) {
                CHECK(corrupt && result.cause == OUTPUT_COMPARE_CAUSE_PAYLOAD, "trial %d: a %s difference", trial,
                      output_compare_cause_name(result.cause));
                differed = true;
            }
            uint64_t handle;
            while (output_compare_take_releasable(&compare, &handle)) {
                order_kept = order_kept && handle > last_taken;
                last_taken = handle;
                released++;
            }
        }
        if (corrupt) {
            CHECK(differed && released < primary_segments, "trial %d: the changed byte at %u was found", trial,
                  corrupt_at);
        } else {
            CHECK(!differed && released == primary_segments && order_kept,
                  "trial %d: %u bytes, %u of %u PVM segments released in order", trial, length, released,
                  primary_segments);
        }
        output_compare_destroy(&compare);
    }
}

/* A timeout names the flow of the oldest PVM frame still without its
 * twin, the one the SVM was slow to answer for, and what that frame waited
 * for: the SVM's data, or its acknowledgement. */
static void test_timeout_names_its_flow(void)
{
    struct output_compare compare;
    init(&compare, 16, 64, 1 << 20);
    struct frame_spec spec = tcp_spec(ISN, PACKET_TCP_ACK);
    primary(&compare, &spec, "answered", NULL);
    secondary(&compare, &spec, "answered");
    struct frame_spec udp = datagram_spec(6, 17);
    primary(&compare, &udp, "no twin yet", NULL);
    spec.sequence = ISN + 8;
    spec.acknowledgment = 655;                        /* the client sent 100 bytes more */
    primary(&compare, &spec, "no twin either", NULL); /* newer: not the one named */
    output_compare_note_timeout(&compare, now_us);
    struct output_compare_counters counters;
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    const struct output_compare_difference *last = &counters.last_difference;
    CHECK(last->cause == OUTPUT_COMPARE_CAUSE_TIMEOUT && last->by_primary &&
              strcmp(last->flow, "udp [fd00::2]:53 > [fd00::1]:6000") == 0,
          "the timeout names '%s', expected the oldest waiting datagram's flow", last->flow);
    CHECK(last->waited_for == OUTPUT_COMPARE_WAITING_DATA && last->waited_bytes == 0,
          "the datagram waited for %s (%u bytes), expected the SVM's datagram",
          output_compare_waiting_name(last->waited_for), last->waited_bytes);
    /* Once that datagram's twin came, the TCP segment is the oldest: the
     * SVM is its 14 bytes behind. */
    secondary(&compare, &udp, "no twin yet");
    output_compare_note_timeout(&compare, now_us);
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    CHECK(strcmp(counters.last_difference.flow, "tcp 10.0.0.2:80 > 10.0.0.1:40000") == 0,
          "the second timeout names '%s'", counters.last_difference.flow);
    CHECK(counters.last_difference.waited_for == OUTPUT_COMPARE_WAITING_DATA &&
              counters.last_difference.waited_bytes == 14,
          "the segment waited for %s, %u bytes behind (expected data, 14)",
          output_compare_waiting_name(counters.last_difference.waited_for), counters.last_difference.waited_bytes);
    /* The SVM sent the bytes but acknowledged less than the PVM's segment
     * does (its delayed ACK): the frame waits for the SVM's ACK. */
    struct frame_spec svm = spec;
    svm.acknowledgment = 555;
    secondary(&compare, &svm, "no twin either");
    output_compare_note_timeout(&compare, now_us);
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    CHECK(counters.last_difference.waited_for == OUTPUT_COMPARE_WAITING_ACK &&
              counters.last_difference.waited_bytes == 100,
          "the segment waited for %s, %u bytes behind (expected ack, 100)",
          output_compare_waiting_name(counters.last_difference.waited_for), counters.last_difference.waited_bytes);
    CHECK(counters.timeouts_waiting[OUTPUT_COMPARE_WAITING_DATA] == 2 &&
              counters.timeouts_waiting[OUTPUT_COMPARE_WAITING_ACK] == 1 &&
              counters.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT] == 3,
          "timeouts by what they waited for: data %llu, ack %llu",
          (unsigned long long)counters.timeouts_waiting[OUTPUT_COMPARE_WAITING_DATA],
          (unsigned long long)counters.timeouts_waiting[OUTPUT_COMPARE_WAITING_ACK]);
    output_compare_destroy(&compare);
}

int main(void)
{
    test_timeout_names_its_flow();
    test_random_cuttings();
    test_port_reuse();
    test_many_flows();
    test_buffer_memory();
    test_segmentation_does_not_matter();
    test_connection_events();
    test_different_payload();
    test_datagram_protocols();
    test_fragments();
    test_malformed_and_bounds();
    return test_check_finish("output_compare_test");
}
