/* The secondary's TCP sequence shift (proxy/tcp_sequence_shift.h): a
 * connection opened since the checkpoint, by the client or by the VM, gets
 * the SVM's seq shifted out and the client's ack and SACK blocks shifted
 * in, with checksums that a full recomputation agrees with; a checkpoint
 * ends it; and through the shift the comparator matches the SVM's stream
 * with the PVM's. */
#include <stdlib.h>
#include <string.h>

#include "frame_builder.h"
#include "output_compare.h"
#include "packet_parse.h"
#include "stream.h"
#include "tcp_sequence_shift.h"
#include "test_check.h"

static const uint8_t vm4[4] = { 10, 0, 0, 2 }, client4[4] = { 10, 0, 0, 1 };
static const uint8_t vm6[16] = { 0xfd, [15] = 2 }, client6[16] = { 0xfd, [15] = 1 };

#define SVM_ISN 0xfffffff0u /* wraps within the first bytes */
#define PVM_ISN 0x00010000u
#define CLIENT_ISN 5000u

/* A segment from the VM (outbound) or from the client (inbound). */
static struct frame_spec segment(unsigned ip_version, bool outbound, uint32_t sequence, uint32_t acknowledgment,
                                 uint8_t flags)
{
    struct frame_spec spec = { .ip_version = ip_version,
                               .protocol = 6,
                               .source_port = outbound ? 443 : 50000,
                               .destination_port = outbound ? 50000 : 443,
                               .sequence = sequence,
                               .acknowledgment = acknowledgment,
                               .tcp_flags = flags };
    size_t address_length = ip_version == 4 ? 4 : 16;
    const uint8_t *vm = ip_version == 4 ? vm4 : vm6, *client = ip_version == 4 ? client4 : client6;
    memcpy(spec.source_ip, outbound ? vm : client, address_length);
    memcpy(spec.destination_ip, outbound ? client : vm, address_length);
    return spec;
}

static struct packet_view parse(const uint8_t *frame, size_t length)
{
    struct packet_view view;
    if (packet_parse(frame, length, &view) != PACKET_PARSE_OK)
        abort();
    return view;
}

static void test_checksum_update(void)
{
    /* RFC 1624 section 4's example: HC 0xDD2F, m 0x5555 -> m' 0x3285. */
    uint8_t checksum[2] = { 0xdd, 0x2f };
    tcp_sequence_shift_update_checksum_16(checksum, 0x5555, 0x3285);
    CHECK(checksum[0] == 0 && checksum[1] == 0, "RFC 1624 example: %02x%02x", checksum[0], checksum[1]);
}

static void test_client_opens(void)
{
    struct tcp_sequence_shift shift;
    struct error error;
    CHECK(tcp_sequence_shift_init(&shift, 8, &error) == 0, "init");
    uint8_t frame[FRAME_BUILDER_MAX];

    struct frame_spec spec = segment(4, false, CLIENT_ISN, 0, PACKET_TCP_SYN);
    size_t length = frame_build(frame, &spec, NULL, 0);
    CHECK(!tcp_sequence_shift_inbound(&shift, frame, length, false), "the client's SYN passes as it is");

    spec = segment(4, true, SVM_ISN, CLIENT_ISN + 1, PACKET_TCP_SYN | PACKET_TCP_ACK);
    length = frame_build(frame, &spec, NULL, 0);
    CHECK(!tcp_sequence_shift_outbound(&shift, frame, length, false), "the SVM's SYN-ACK: no offset yet");
    CHECK(shift.counters.connections == 1, "a connection");

    /* The client's ACK acks the PVM's SYN-ACK: the offset. */
    spec = segment(4, false, CLIENT_ISN + 1, PVM_ISN + 1, PACKET_TCP_ACK);
    length = frame_build(frame, &spec, NULL, 0);
    CHECK(tcp_sequence_shift_inbound(&shift, frame, length, false), "the handshake ACK is shifted");
    struct packet_view view = parse(frame, length);
    CHECK(view.tcp_acknowledgment == SVM_ISN + 1, "ack in the SVM's space: %x", view.tcp_acknowledgment);
    CHECK(frame_checksums_valid(frame, &spec), "inbound checksum right");

    /* The SVM's data, across the wrap of its sequence space. */
    spec = segment(4, true, SVM_ISN + 1, CLIENT_ISN + 1, PACKET_TCP_ACK | PACKET_TCP_PSH);
    length = frame_build(frame, &spec, (const uint8_t *)"response", 8);
    CHECK(tcp_sequence_shift_outbound(&shift, frame, length, false), "SVM data shifted");
    view = parse(frame, length);
    CHECK(view.tcp_sequence == PVM_ISN + 1, "seq in the PVM's space: %x", view.tcp_sequence);
    CHECK(frame_checksums_valid(frame, &spec), "outbound checksum right");
    spec = segment(4, true, SVM_ISN + 40, CLIENT_ISN + 1, PACKET_TCP_ACK);
    length = frame_build(frame, &spec, (const uint8_t *)"x", 1);
    tcp_sequence_shift_outbound(&shift, frame, length, false);
    view = parse(frame, length);
    CHECK(view.tcp_sequence == PVM_ISN + 40 && frame_checksums_valid(frame, &spec), "past the wrap");

    /* SACK blocks name the VM's bytes: shifted, after two NOPs. */
    static const uint8_t sack_template[12] = { 1, 1, 5, 10 };
    uint8_t sack[12];
    memcpy(sack, sack_template, sizeof sack);
    frame_put_32(sack + 4, PVM_ISN + 100);
    frame_put_32(sack + 8, PVM_ISN + 200);
    spec = segment(4, false, CLIENT_ISN + 1, PVM_ISN + 9, PACKET_TCP_ACK);
    spec.tcp_options = sack;
    spec.tcp_options_length = sizeof sack;
    length = frame_build(frame, &spec, NULL, 0);
    CHECK(tcp_sequence_shift_inbound(&shift, frame, length, false), "a SACK shifted");
    view = parse(frame, length);
    CHECK(packet_read_32(view.transport_header + 24) == SVM_ISN + 100 &&
              packet_read_32(view.transport_header + 28) == SVM_ISN + 200 && view.tcp_acknowledgment == SVM_ISN + 9,
          "SACK edges and ack in the SVM's space");
    CHECK(frame_checksums_valid(frame, &spec), "SACK checksum right");
    CHECK(shift.counters.sack_blocks_rewritten == 1, "one block counted");

    /* A checksum the device finishes is left as it is. */
    spec = segment(4, true, SVM_ISN + 9, CLIENT_ISN + 1, PACKET_TCP_ACK);
    length = frame_build(frame, &spec, (const uint8_t *)"y", 1);
    uint8_t checksum[2];
    memcpy(checksum, frame + 14 + 20 + 16, 2);
    CHECK(tcp_sequence_shift_outbound(&shift, frame, length, true), "partial: shifted");
    CHECK(memcmp(checksum, frame + 14 + 20 + 16, 2) == 0, "partial: checksum field untouched");

    /* A checkpoint: the SVM is the PVM again. */
    tcp_sequence_shift_reset(&shift);
    spec = segment(4, true, PVM_ISN + 50, CLIENT_ISN + 1, PACKET_TCP_ACK);
    length = frame_build(frame, &spec, (const uint8_t *)"z", 1);
    CHECK(!tcp_sequence_shift_outbound(&shift, frame, length, false), "after the checkpoint: nothing shifted");
    tcp_sequence_shift_destroy(&shift);
}

static void test_vm_opens_ipv6_vlan(void)
{
    struct tcp_sequence_shift shift;
    tcp_sequence_shift_init(&shift, 1, NULL);
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = segment(6, true, SVM_ISN, 0, PACKET_TCP_SYN);
    spec.vlan_count = 1;
    spec.vlan_tci[0] = 42;
    size_t length = frame_build(frame, &spec, NULL, 0);
    CHECK(!tcp_sequence_shift_outbound(&shift, frame, length, false), "the SVM's SYN");
    /* The client's SYN-ACK: its ack is the PVM's ISN + 1. */
    spec = segment(6, false, CLIENT_ISN, PVM_ISN + 1, PACKET_TCP_SYN | PACKET_TCP_ACK);
    spec.vlan_count = 1;
    spec.vlan_tci[0] = 42;
    length = frame_build(frame, &spec, NULL, 0);
    CHECK(tcp_sequence_shift_inbound(&shift, frame, length, false), "SYN-ACK shifted");
    struct packet_view view = parse(frame, length);
    CHECK(view.tcp_acknowledgment == SVM_ISN + 1 && frame_checksums_valid(frame, &spec), "IPv6 ack and checksum");
    spec = segment(6, true, SVM_ISN + 1, CLIENT_ISN + 1, PACKET_TCP_ACK);
    spec.vlan_count = 1;
    spec.vlan_tci[0] = 42;
    length = frame_build(frame, &spec, (const uint8_t *)"GET /", 5);
    CHECK(tcp_sequence_shift_outbound(&shift, frame, length, false), "data shifted");
    view = parse(frame, length);
    CHECK(view.tcp_sequence == PVM_ISN + 1 && frame_checksums_valid(frame, &spec), "IPv6 seq and checksum");
    /* The same ports on another VLAN are another connection: no room. */
    spec = segment(6, true, 1, 0, PACKET_TCP_SYN);
    spec.vlan_count = 1;
    spec.vlan_tci[0] = 43;
    length = frame_build(frame, &spec, NULL, 0);
    CHECK(!tcp_sequence_shift_outbound(&shift, frame, length, false) && shift.counters.dropped_table_full == 1,
          "a second connection in a table of one is counted");
    tcp_sequence_shift_destroy(&shift);
}

/* The whole path: the PVM's and the SVM's frames of a connection opened
 * since the checkpoint; the SVM's through the shift; the comparator. */
static void test_through_the_comparator(void)
{
    struct tcp_sequence_shift shift;
    tcp_sequence_shift_init(&shift, 8, NULL);
    struct output_compare compare;
    struct output_compare_limits limits = {
        .flows_max = 8,
        .held_frames_max = 16,
        .buffered_bytes_max = 1 << 16,
        .fragments = { .datagrams_max = 1, .total_bytes_max = 1 << 16, .expiry_us = 1000 },
    };
    CHECK(output_compare_init(&compare, &limits, NULL) == 0, "comparator");
    uint8_t frame[FRAME_BUILDER_MAX];
    uint64_t handle, syn_handle, data_handle, now = 0, taken;

    struct frame_spec spec = segment(4, true, PVM_ISN, CLIENT_ISN + 1, PACKET_TCP_SYN | PACKET_TCP_ACK);
    size_t length = frame_build(frame, &spec, NULL, 0);
    output_compare_add_primary(&compare, frame, length, ++now, &syn_handle);
    spec = segment(4, true, SVM_ISN, CLIENT_ISN + 1, PACKET_TCP_SYN | PACKET_TCP_ACK);
    length = frame_build(frame, &spec, NULL, 0);
    tcp_sequence_shift_outbound(&shift, frame, length, false);
    struct output_compare_result result = output_compare_add_secondary(&compare, frame, length, ++now);
    CHECK(!result.difference && output_compare_take_releasable(&compare, &taken) && taken == syn_handle,
          "the SYN-ACKs matched");
    spec = segment(4, false, CLIENT_ISN + 1, PVM_ISN + 1, PACKET_TCP_ACK);
    length = frame_build(frame, &spec, NULL, 0);
    tcp_sequence_shift_inbound(&shift, frame, length, false); /* what the SVM gets */

    spec = segment(4, true, PVM_ISN + 1, CLIENT_ISN + 1, PACKET_TCP_ACK);
    length = frame_build(frame, &spec, (const uint8_t *)"HTTP/1.1 200 OK", 15);
    output_compare_add_primary(&compare, frame, length, ++now, &data_handle);
    spec = segment(4, true, SVM_ISN + 1, CLIENT_ISN + 1, PACKET_TCP_ACK);
    length = frame_build(frame, &spec, (const uint8_t *)"HTTP/1.1", 8);
    uint8_t unshifted[FRAME_BUILDER_MAX];
    memcpy(unshifted, frame, length);
    tcp_sequence_shift_outbound(&shift, frame, length, false);
    output_compare_add_secondary(&compare, frame, length, ++now);
    spec = segment(4, true, SVM_ISN + 9, CLIENT_ISN + 1, PACKET_TCP_ACK | PACKET_TCP_FIN);
    length = frame_build(frame, &spec, (const uint8_t *)" 200 OK", 7);
    tcp_sequence_shift_outbound(&shift, frame, length, false);
    result = output_compare_add_secondary(&compare, frame, length, ++now);
    CHECK(!result.difference && output_compare_take_releasable(&compare, &taken) && taken == data_handle,
          "the SVM's shifted stream matched the PVM's");
    spec = segment(4, true, PVM_ISN + 16, CLIENT_ISN + 1, PACKET_TCP_ACK | PACKET_TCP_FIN);
    length = frame_build(frame, &spec, NULL, 0);
    output_compare_add_primary(&compare, frame, length, ++now, &handle);
    CHECK(output_compare_take_releasable(&compare, &taken) && taken == handle, "the PVM's FIN alone matched");

    /* Without the shift the SVM's bytes are elsewhere in the stream: they
     * match nothing. */
    output_compare_reset(&compare);
    spec = segment(4, true, PVM_ISN, CLIENT_ISN + 1, PACKET_TCP_SYN | PACKET_TCP_ACK);
    spec.source_port = 444;
    length = frame_build(frame, &spec, NULL, 0);
    output_compare_add_primary(&compare, frame, length, ++now, &syn_handle);
    spec = segment(4, true, SVM_ISN, CLIENT_ISN + 1, PACKET_TCP_SYN | PACKET_TCP_ACK);
    spec.source_port = 444;
    length = frame_build(frame, &spec, NULL, 0);
    output_compare_add_secondary(&compare, frame, length, ++now);
    spec = segment(4, true, PVM_ISN + 1, CLIENT_ISN + 1, PACKET_TCP_ACK);
    spec.source_port = 444;
    length = frame_build(frame, &spec, (const uint8_t *)"HTTP/1.1", 8);
    output_compare_add_primary(&compare, frame, length, ++now, &handle);
    unshifted[14 + 20 + 1] = 444 & 0xff; /* the same port as these PVM frames; checksums do not matter here */
    unshifted[14 + 20] = 444 >> 8;
    output_compare_add_secondary(&compare, unshifted, length, ++now);
    CHECK(output_compare_take_releasable(&compare, &taken) && taken == syn_handle, "the SYN-ACKs matched");
    CHECK(!output_compare_take_releasable(&compare, &taken), "unshifted SVM data releases nothing");
    output_compare_destroy(&compare);
    tcp_sequence_shift_destroy(&shift);
}

/* The client's port of a connection: segment()'s, moved. */
static struct frame_spec on_port(struct frame_spec spec, bool outbound, uint16_t client_port)
{
    if (outbound)
        spec.destination_port = client_port;
    else
        spec.source_port = client_port;
    return spec;
}

/* Opens a connection on client_port the SVM answers with svm_isn and the
 * client acks at acked (the PVM's ISN + 1; 0: no ACK yet). */
static void open_connection(struct tcp_sequence_shift *shift, uint16_t client_port, uint32_t svm_isn, uint32_t acked)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = on_port(segment(4, true, svm_isn, CLIENT_ISN + 1, PACKET_TCP_SYN | PACKET_TCP_ACK), true,
                                     client_port);
    tcp_sequence_shift_outbound(shift, frame, frame_build(frame, &spec, NULL, 0), false);
    if (acked) {
        spec = on_port(segment(4, false, CLIENT_ISN + 1, acked, PACKET_TCP_ACK), false, client_port);
        tcp_sequence_shift_inbound(shift, frame, frame_build(frame, &spec, NULL, 0), false);
    }
}

/* What the table does with the client's ack (inbound) on client_port. */
static uint32_t ack_shifted_in(struct tcp_sequence_shift *shift, uint16_t client_port, uint32_t ack)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = on_port(segment(4, false, CLIENT_ISN + 1, ack, PACKET_TCP_ACK), false, client_port);
    size_t length = frame_build(frame, &spec, (const uint8_t *)"q", 1);
    tcp_sequence_shift_inbound(shift, frame, length, false);
    CHECK(frame_checksums_valid(frame, &spec), "inbound checksum after the shift");
    return parse(frame, length).tcp_acknowledgment;
}

/* What the table does with the VM's seq (outbound) on client_port. */
static uint32_t seq_shifted_out(struct tcp_sequence_shift *shift, uint16_t client_port, uint32_t sequence)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = on_port(segment(4, true, sequence, CLIENT_ISN + 2, PACKET_TCP_ACK), true, client_port);
    size_t length = frame_build(frame, &spec, (const uint8_t *)"r", 1);
    tcp_sequence_shift_outbound(shift, frame, length, false);
    return parse(frame, length).tcp_sequence;
}

/* A survivor's table goes with each checkpoint to the new secondary
 * (tcp_sequence_shift_save, _restore): its shifted connections shift there
 * the same way; one that shifts nothing is not carried; one whose offset
 * is not known yet learns it there; a restore forgets what was before. */
static void test_carried_by_checkpoint(void)
{
    struct tcp_sequence_shift survivor, secondary;
    struct error error;
    CHECK(tcp_sequence_shift_init(&survivor, 8, &error) == 0 && tcp_sequence_shift_init(&secondary, 8, &error) == 0,
          "init");
    open_connection(&survivor, 50000, SVM_ISN, PVM_ISN + 1);     /* opened before the failover: shifted */
    open_connection(&survivor, 50001, 0x7000, 0x7001);           /* opened after it: offset 0 */
    open_connection(&survivor, 50002, 0x9000, 0);                /* the client's ACK still to come */
    open_connection(&secondary, 50003, 0x1234, 0x1234 + 77 + 1); /* the new SVM's own, of the last epoch */
    CHECK(flow_table_free_count(&survivor.table) == 8 - 2,
          "%u entries free: the offset-0 connection's should have gone", flow_table_free_count(&survivor.table));
    uint8_t entries[8 * STREAM_TCP_SHIFT_ENTRY_LENGTH];
    size_t count = tcp_sequence_shift_save(&survivor, entries, 8);
    CHECK(count == 2, "carried %zu connections, expected 2 (the offset-0 one stays)", count);
    CHECK(tcp_sequence_shift_restore(&secondary, entries, count, &error) == 0, "restore: %s", error.message);
    CHECK(secondary.counters.restored == 2, "restored %llu", (unsigned long long)secondary.counters.restored);
    CHECK(ack_shifted_in(&secondary, 50000, PVM_ISN + 9) == SVM_ISN + 9, "the carried connection's ack is shifted in");
    CHECK(seq_shifted_out(&secondary, 50000, SVM_ISN + 5) == PVM_ISN + 5, "... and its seq out");
    CHECK(ack_shifted_in(&secondary, 50001, 0x7005) == 0x7005, "the offset-0 connection passes");
    CHECK(ack_shifted_in(&secondary, 50003, 0x1234 + 78 + 4) == 0x1234 + 78 + 4,
          "the last epoch's own connection is forgotten");
    /* The pending one learns from the client's ACK, as on the survivor. */
    CHECK(ack_shifted_in(&secondary, 50002, 0x5001) == 0x9001, "the pending connection learned its offset");
    CHECK(seq_shifted_out(&secondary, 50002, 0x9001) == 0x5001, "... and shifts out by it");

    /* The next checkpoint carries nothing: nothing is shifted. */
    CHECK(tcp_sequence_shift_restore(&secondary, entries, 0, &error) == 0 && secondary.counters.restored == 0,
          "an empty restore");
    CHECK(ack_shifted_in(&secondary, 50000, PVM_ISN + 9) == PVM_ISN + 9, "after an empty restore nothing shifts");

    /* Entries no survivor could have sent: refused, the table left empty. */
    uint8_t bad[3 * STREAM_TCP_SHIFT_ENTRY_LENGTH];
    memcpy(bad, entries, STREAM_TCP_SHIFT_ENTRY_LENGTH);
    memcpy(bad + STREAM_TCP_SHIFT_ENTRY_LENGTH, entries, STREAM_TCP_SHIFT_ENTRY_LENGTH);
    CHECK(tcp_sequence_shift_restore(&secondary, bad, 2, &error) < 0 && strstr(error.message, "connection 2 of 2") &&
              strstr(error.message, "already given"),
          "a connection twice: %s", error.message);
    CHECK(ack_shifted_in(&secondary, 50000, PVM_ISN + 9) == PVM_ISN + 9 && secondary.counters.restored == 0,
          "a refused restore leaves nothing");
    memcpy(bad, entries, STREAM_TCP_SHIFT_ENTRY_LENGTH);
    bad[0] = 3; /* three VLAN tags */
    CHECK(tcp_sequence_shift_restore(&secondary, bad, 1, &error) < 0 &&
              strstr(error.message, "a key no TCP connection"),
          "three VLAN tags: %s", error.message);
    memcpy(bad, entries, STREAM_TCP_SHIFT_ENTRY_LENGTH);
    bad[47] = 1; /* past the addresses */
    CHECK(tcp_sequence_shift_restore(&secondary, bad, 1, &error) < 0, "a byte past the addresses was taken");
    memcpy(bad, entries, STREAM_TCP_SHIFT_ENTRY_LENGTH);
    bad[3] = 7; /* the second VLAN slot of a key without VLANs */
    CHECK(tcp_sequence_shift_restore(&secondary, bad, 1, &error) < 0, "an unused VLAN slot that is not zero was taken");
    struct tcp_sequence_shift small;
    CHECK(tcp_sequence_shift_init(&small, 1, &error) == 0, "init");
    CHECK(tcp_sequence_shift_restore(&small, entries, 2, &error) < 0 &&
              strstr(error.message, "more connections than the table holds"),
          "two connections into a table of one: %s", error.message);
    tcp_sequence_shift_destroy(&small);
    tcp_sequence_shift_destroy(&survivor);
    tcp_sequence_shift_destroy(&secondary);
}

/* A segment with the timestamps option (two NOPs, kind 8). */
static size_t build_with_timestamps(uint8_t *frame, struct frame_spec *spec, uint8_t options[12], uint32_t tsval,
                                    uint32_t tsecr, const char *payload)
{
    static const uint8_t template[12] = { 1, 1, 8, 10 };
    memcpy(options, template, sizeof template);
    frame_put_32(options + 4, tsval);
    frame_put_32(options + 8, tsecr);
    spec->tcp_options = options;
    spec->tcp_options_length = 12;
    return frame_build(frame, spec, (const uint8_t *)payload, payload ? strlen(payload) : 0);
}

static uint32_t timestamp_field(const uint8_t *frame, size_t length, unsigned which)
{
    return packet_read_32(parse(frame, length).transport_header + 20 + 4 + 4 * which);
}

/* TCP timestamps: two far-apart clocks (the guest drew its timestamp
 * secret since the checkpoint) are shifted both ways, 50 ms ahead; two
 * clocks a few ms apart (the SVM answered later) are left alone, and a
 * table carries the timestamp offset to a new secondary. */
static void test_timestamps(void)
{
    struct tcp_sequence_shift shift;
    struct error error;
    CHECK(tcp_sequence_shift_init(&shift, 8, &error) == 0, "init");
    uint8_t frame[FRAME_BUILDER_MAX], options[12];
    const uint32_t svm_clock = 1000, pvm_clock = 3000000000u;

    struct frame_spec spec = segment(4, true, SVM_ISN, CLIENT_ISN + 1, PACKET_TCP_SYN | PACKET_TCP_ACK);
    size_t length = build_with_timestamps(frame, &spec, options, svm_clock, 77, NULL);
    CHECK(!tcp_sequence_shift_outbound(&shift, frame, length, false), "the SVM's SYN-ACK: nothing known yet");
    spec = segment(4, false, CLIENT_ISN + 1, PVM_ISN + 1, PACKET_TCP_ACK);
    length = build_with_timestamps(frame, &spec, options, 80, pvm_clock, NULL);
    CHECK(tcp_sequence_shift_inbound(&shift, frame, length, false), "the handshake ACK is shifted");
    CHECK(timestamp_field(frame, length, 1) == svm_clock - TCP_SHIFT_TIMESTAMP_MARGIN_MS &&
              frame_checksums_valid(frame, &spec),
          "the echo in the SVM's clock (50 ms behind its own: the margin): %u", timestamp_field(frame, length, 1));
    CHECK(shift.counters.timestamp_offsets_learned == 1, "a timestamp offset learned");
    spec = segment(4, true, SVM_ISN + 1, CLIENT_ISN + 1, PACKET_TCP_ACK | PACKET_TCP_PSH);
    length = build_with_timestamps(frame, &spec, options, svm_clock + 5, 80, "reply");
    CHECK(tcp_sequence_shift_outbound(&shift, frame, length, false), "SVM data shifted");
    CHECK(timestamp_field(frame, length, 0) == pvm_clock + 5 + TCP_SHIFT_TIMESTAMP_MARGIN_MS &&
              timestamp_field(frame, length, 1) == 80 && frame_checksums_valid(frame, &spec),
          "TSval in the PVM's clock, 50 ms ahead: %u", timestamp_field(frame, length, 0));
    spec = segment(4, false, CLIENT_ISN + 1, PVM_ISN + 6, PACKET_TCP_ACK);
    length = build_with_timestamps(frame, &spec, options, 90, pvm_clock + 5 + TCP_SHIFT_TIMESTAMP_MARGIN_MS, NULL);
    tcp_sequence_shift_inbound(&shift, frame, length, false);
    CHECK(timestamp_field(frame, length, 1) == svm_clock + 5 && frame_checksums_valid(frame, &spec),
          "the echo of the SVM's own TSval comes back as it sent it: %u", timestamp_field(frame, length, 1));
    spec = segment(4, false, CLIENT_ISN + 1, PVM_ISN + 6, PACKET_TCP_ACK);
    length = build_with_timestamps(frame, &spec, options, 91, 0, NULL);
    tcp_sequence_shift_inbound(&shift, frame, length, false);
    CHECK(timestamp_field(frame, length, 1) == 0, "an echo of 0 (none) stays 0");

    /* Carried to a new secondary with the rest. */
    uint8_t entries[8 * STREAM_TCP_SHIFT_ENTRY_LENGTH];
    struct tcp_sequence_shift carried;
    CHECK(tcp_sequence_shift_init(&carried, 8, &error) == 0, "init");
    size_t count = tcp_sequence_shift_save(&shift, entries, 8);
    CHECK(count == 1 && tcp_sequence_shift_restore(&carried, entries, count, &error) == 0, "carried");
    spec = segment(4, true, SVM_ISN + 6, CLIENT_ISN + 1, PACKET_TCP_ACK | PACKET_TCP_PSH);
    length = build_with_timestamps(frame, &spec, options, svm_clock + 9, 91, "more");
    tcp_sequence_shift_outbound(&carried, frame, length, false);
    CHECK(timestamp_field(frame, length, 0) == pvm_clock + 9 + TCP_SHIFT_TIMESTAMP_MARGIN_MS,
          "the carried connection's TSval is shifted on the new secondary");
    tcp_sequence_shift_destroy(&carried);

    /* Clocks 3 ms apart on another connection: one clock, left alone. */
    spec = on_port(segment(4, true, 0x4000, CLIENT_ISN + 1, PACKET_TCP_SYN | PACKET_TCP_ACK), true, 50010);
    length = build_with_timestamps(frame, &spec, options, svm_clock, 77, NULL);
    tcp_sequence_shift_outbound(&shift, frame, length, false);
    spec = on_port(segment(4, false, CLIENT_ISN + 1, 0x9000 + 1, PACKET_TCP_ACK), false, 50010);
    length = build_with_timestamps(frame, &spec, options, 80, svm_clock - 3, NULL);
    tcp_sequence_shift_inbound(&shift, frame, length, false);
    CHECK(timestamp_field(frame, length, 1) == svm_clock - 3, "near clocks: the echo is left alone");
    CHECK(shift.counters.timestamp_offsets_learned == 1, "near clocks: no timestamp offset");
    spec = on_port(segment(4, true, 0x4001, CLIENT_ISN + 1, PACKET_TCP_ACK), true, 50010);
    length = build_with_timestamps(frame, &spec, options, svm_clock + 1, 80, "x");
    tcp_sequence_shift_outbound(&shift, frame, length, false);
    CHECK(timestamp_field(frame, length, 0) == svm_clock + 1, "near clocks: TSval left alone");
    tcp_sequence_shift_destroy(&shift);
}

int main(void)
{
    test_checksum_update();
    test_client_opens();
    test_vm_opens_ipv6_vlan();
    test_through_the_comparator();
    test_carried_by_checkpoint();
    test_timestamps();
    return test_check_finish("tcp_sequence_shift_test");
}
