/* Writes the seed corpus of tests/fuzz/fuzz_packet_parse.c:
 *
 *   packet_corpus_generator tests/fuzz/corpus/fuzz_packet_parse
 *
 * Each seed is a list of records in that target's format (op, 16-bit
 * length, frame): valid frames of every protocol the parser knows, flows
 * that match and flows that differ, fragments, truncations and bad
 * lengths. Built with the tests so it cannot rot; run by hand when the
 * format or the builder changes, then commit the files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame_builder.h"

#define SEED_MAX 16384
#define OP_PRIMARY 0
#define OP_SECONDARY 1
#define OP_INBOUND 2
#define OP_CHECKPOINT 3

struct seed {
    uint8_t bytes[SEED_MAX];
    size_t length;
};

static const char *directory;

static void record(struct seed *seed, uint8_t op, const uint8_t *frame, size_t length)
{
    if (seed->length + 3 + length > SEED_MAX)
        abort();
    seed->bytes[seed->length++] = op;
    if ((op & 3) == OP_CHECKPOINT)
        return;
    frame_put_16(seed->bytes + seed->length, (unsigned)length);
    memcpy(seed->bytes + seed->length + 2, frame, length);
    seed->length += 2 + length;
}

static void write_seed(const char *name, const struct seed *seed)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", directory, name);
    FILE *file = fopen(path, "wb");
    if (!file || fwrite(seed->bytes, 1, seed->length, file) != seed->length || fclose(file) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static const uint8_t vm4[4] = { 10, 0, 0, 2 }, client4[4] = { 10, 0, 0, 1 };
static const uint8_t vm6[16] = { 0xfd, [15] = 2 }, client6[16] = { 0xfd, [15] = 1 };

static struct frame_spec spec_of(unsigned ip_version, uint8_t protocol, bool outbound)
{
    struct frame_spec spec = { .ip_version = ip_version,
                               .protocol = protocol,
                               .source_port = outbound ? 80 : 40000,
                               .destination_port = outbound ? 40000 : 80,
                               .sequence = 1000,
                               .acknowledgment = 5001,
                               .tcp_flags = 0x10 }; /* ACK */
    size_t address_length = ip_version == 4 ? 4 : 16;
    const uint8_t *vm = ip_version == 4 ? vm4 : vm6, *client = ip_version == 4 ? client4 : client6;
    memcpy(spec.source_ip, outbound ? vm : client, address_length);
    memcpy(spec.destination_ip, outbound ? client : vm, address_length);
    return spec;
}

/* One frame of spec with payload, as one record. */
static void add(struct seed *seed, uint8_t op, const struct frame_spec *spec, const char *payload, size_t length)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    record(seed, op, frame, frame_build(frame, spec, (const uint8_t *)payload, length));
}

static void single(const char *name, const struct frame_spec *spec, const char *payload, size_t length)
{
    struct seed seed = { .length = 0 };
    add(&seed, OP_PRIMARY, spec, payload, length);
    add(&seed, OP_SECONDARY, spec, payload, length);
    write_seed(name, &seed);
}

static void tcp_seeds(void)
{
    struct seed seed = { .length = 0 };
    struct frame_spec spec = spec_of(4, 6, true);
    add(&seed, OP_PRIMARY, &spec, "hello, world", 12);
    add(&seed, OP_SECONDARY, &spec, "hello", 5);
    spec.sequence += 5;
    add(&seed, OP_SECONDARY, &spec, ", world", 7);
    write_seed("tcp-segmented-differently", &seed);

    seed.length = 0;
    spec = spec_of(4, 6, true);
    spec.tcp_flags |= 1; /* FIN */
    add(&seed, OP_PRIMARY, &spec, "bye", 3);
    spec.tcp_flags = 0x10;
    add(&seed, OP_SECONDARY, &spec, "bye", 3);
    spec.sequence += 3;
    spec.tcp_flags = 0x11;
    add(&seed, OP_SECONDARY, &spec, "", 0);
    write_seed("tcp-fin-piggybacked-and-alone", &seed);

    seed.length = 0;
    spec = spec_of(4, 6, true);
    add(&seed, OP_PRIMARY, &spec, "200 OK", 6);
    add(&seed, OP_SECONDARY, &spec, "500 no", 6);
    write_seed("tcp-payload-differs", &seed);

    seed.length = 0;
    spec = spec_of(4, 6, true);
    spec.tcp_flags = 0x11;
    add(&seed, OP_PRIMARY, &spec, "", 0);
    spec.tcp_flags = 0x04;
    add(&seed, OP_SECONDARY, &spec, "", 0);
    write_seed("tcp-fin-against-rst", &seed);

    /* A connection the client opens since the checkpoint, with the shift. */
    seed.length = 0;
    spec = spec_of(4, 6, false);
    spec.sequence = 5000;
    spec.acknowledgment = 0;
    spec.tcp_flags = 0x02;
    add(&seed, OP_INBOUND, &spec, "", 0);
    spec = spec_of(4, 6, true);
    spec.sequence = 70000;
    spec.tcp_flags = 0x12;
    add(&seed, OP_PRIMARY, &spec, "", 0);
    spec.sequence = 0xfffffff0u;
    add(&seed, OP_SECONDARY, &spec, "", 0);
    spec = spec_of(4, 6, false);
    spec.sequence = 5001;
    spec.acknowledgment = 70001;
    static const uint8_t sack[12] = { 1, 1, 5, 10, 0, 1, 0x11, 0x71, 0, 1, 0x11, 0x81 };
    spec.tcp_options = sack;
    spec.tcp_options_length = sizeof sack;
    add(&seed, OP_INBOUND, &spec, "", 0);
    spec = spec_of(4, 6, true);
    spec.sequence = 70001;
    add(&seed, OP_PRIMARY, &spec, "response", 8);
    spec.sequence = 0xfffffff1u;
    add(&seed, OP_SECONDARY, &spec, "response", 8);
    record(&seed, OP_CHECKPOINT, NULL, 0);
    spec.sequence = 70009;
    add(&seed, OP_PRIMARY, &spec, "after", 5);
    add(&seed, OP_SECONDARY, &spec, "after", 5);
    write_seed("tcp-shifted-connection-and-checkpoint", &seed);

    seed.length = 0;
    spec = spec_of(6, 6, true);
    spec.vlan_count = 1;
    spec.vlan_tci[0] = 7;
    add(&seed, OP_PRIMARY, &spec, "six", 3);
    add(&seed, OP_SECONDARY, &spec, "six", 3);
    spec.tcp_flags = 0x10;
    spec.sequence += 3;
    add(&seed, (uint8_t)(OP_PRIMARY | 8 << 2), &spec, "", 0); /* a pure ACK, 8 ms later */
    write_seed("tcp-ipv6-vlan", &seed);
}

static void datagram_seeds(void)
{
    struct frame_spec spec = spec_of(4, 17, true);
    single("udp-ipv4", &spec, "dns answer", 10);
    spec = spec_of(6, 17, true);
    single("udp-ipv6", &spec, "six", 3);
    spec.vlan_count = 2;
    spec.vlan_tpid[0] = 0x88a8;
    spec.vlan_tci[0] = 100;
    spec.vlan_tci[1] = 200;
    single("udp-qinq", &spec, "two tags", 8);
    spec = spec_of(4, 1, true);
    single("icmp-echo-reply", &spec, "\0\1\0\1ping", 8);
    spec = spec_of(6, 58, true);
    spec.icmp_type = 136;
    single("icmpv6-neighbour-advertisement", &spec, "\x60\0\0\0\xfd\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x02", 20);
    spec.icmp_type = 135;
    single("icmpv6-neighbour-solicitation", &spec, "\0\0\0\0\xfd\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 20);
    spec.icmp_type = 129;
    single("icmpv6-echo-reply", &spec, "\0\2\0\3data", 8);
    spec = spec_of(4, 47, true); /* GRE: an opaque IP protocol */
    single("ipv4-opaque-protocol", &spec, "opaque", 6);

    struct seed seed = { .length = 0 };
    spec = spec_of(4, 17, true);
    add(&seed, OP_PRIMARY, &spec, "one", 3);
    add(&seed, OP_PRIMARY, &spec, "two", 3);
    add(&seed, OP_SECONDARY, &spec, "one", 3);
    add(&seed, OP_SECONDARY, &spec, "TWO", 3);
    write_seed("udp-second-datagram-differs", &seed);

    uint8_t frame[FRAME_BUILDER_MAX];
    seed.length = 0;
    spec = spec_of(4, 0, true);
    size_t length = frame_build_arp(frame, &spec, 2);
    record(&seed, OP_PRIMARY, frame, length);
    record(&seed, OP_SECONDARY, frame, length);
    write_seed("arp-reply", &seed);
    frame[12] = 0x88;
    frame[13] = 0xb5;
    seed.length = 0;
    record(&seed, OP_PRIMARY, frame, length);
    record(&seed, OP_SECONDARY, frame, length);
    write_seed("other-ethertype", &seed);
}

static void fragment_seeds(void)
{
    char payload[1000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (char)('a' + i % 26);
    uint8_t whole[FRAME_BUILDER_MAX], fragment[FRAME_BUILDER_MAX];
    struct seed seed = { .length = 0 };
    struct frame_spec spec = spec_of(4, 17, true);
    size_t whole_length = frame_build(whole, &spec, (const uint8_t *)payload, sizeof payload);
    size_t cuts[4] = { 0, 400, 800, 1008 };
    for (int i = 2; i >= 0; i--) /* last first */
        record(&seed, OP_PRIMARY, fragment,
               frame_fragment(fragment, &spec, whole, cuts[i], cuts[i + 1] - cuts[i], i < 2, 42));
    record(&seed, OP_SECONDARY, whole, whole_length);
    write_seed("fragments-ipv4-udp", &seed);

    seed.length = 0;
    spec = spec_of(6, 6, true);
    whole_length = frame_build(whole, &spec, (const uint8_t *)payload, 600);
    record(&seed, OP_PRIMARY, whole, whole_length);
    record(&seed, OP_SECONDARY, fragment, frame_fragment(fragment, &spec, whole, 0, 312, true, 9));
    record(&seed, OP_SECONDARY, fragment, frame_fragment(fragment, &spec, whole, 312, 308, false, 9));
    write_seed("fragments-ipv6-tcp", &seed);

    seed.length = 0;
    spec = spec_of(4, 17, true);
    frame_build(whole, &spec, (const uint8_t *)payload, sizeof payload);
    record(&seed, OP_PRIMARY, fragment, frame_fragment(fragment, &spec, whole, 0, 400, true, 1));
    record(&seed, OP_PRIMARY, fragment, frame_fragment(fragment, &spec, whole, 392, 400, true, 1));
    write_seed("fragments-overlapping", &seed);

    seed.length = 0;
    record(&seed, OP_PRIMARY, fragment, frame_fragment(fragment, &spec, whole, 0, 400, true, 2));
    record(&seed, (uint8_t)(OP_PRIMARY | 20 << 2), fragment,
           frame_fragment(fragment, &spec, whole, 400, 608, false, 2));
    write_seed("fragments-expired", &seed);

    seed.length = 0;
    for (uint32_t id = 10; id < 14; id++)
        record(&seed, OP_SECONDARY, fragment, frame_fragment(fragment, &spec, whole, 0, 400, true, id));
    write_seed("fragments-too-many", &seed);
}

/* Frames cut short, and lengths that lie. */
static void malformed_seeds(void)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    struct frame_spec spec = spec_of(4, 6, true);
    size_t length = frame_build(frame, &spec, (const uint8_t *)"data", 4);
    size_t cuts[] = { 0, 13, 20, 40, 50 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        struct seed seed = { .length = 0 };
        record(&seed, OP_PRIMARY, frame, cuts[i]);
        char name[64];
        snprintf(name, sizeof name, "truncated-tcp-at-%zu", cuts[i]);
        write_seed(name, &seed);
    }
    struct {
        const char *name;
        size_t offset;
        uint8_t value;
    } edits[] = {
        { "bad-ipv4-ihl", 14, 0x43 },     { "bad-ipv4-total-length", 16, 0xff },   { "bad-tcp-data-offset", 46, 0xf0 },
        { "bad-ipv4-version", 14, 0x65 }, { "vlan-tag-over-ip-header", 12, 0x81 },
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        uint8_t copy[FRAME_BUILDER_MAX];
        memcpy(copy, frame, length);
        copy[edits[i].offset] = edits[i].value;
        struct seed seed = { .length = 0 };
        record(&seed, OP_PRIMARY, copy, length);
        record(&seed, OP_SECONDARY, frame, length);
        write_seed(edits[i].name, &seed);
    }
    spec = spec_of(6, 17, true);
    length = frame_build(frame, &spec, (const uint8_t *)"x", 1);
    frame[14 + 5] = 200; /* payload length past the frame */
    struct seed seed = { .length = 0 };
    record(&seed, OP_SECONDARY, frame, length);
    write_seed("bad-ipv6-payload-length", &seed);
    spec = spec_of(4, 17, true);
    length = frame_build(frame, &spec, (const uint8_t *)"x", 1);
    frame[14 + 20 + 5] = 99; /* UDP length past the segment */
    seed.length = 0;
    record(&seed, OP_PRIMARY, frame, length);
    write_seed("bad-udp-length", &seed);
}

/* Twin runs (a first byte of 0xff): the same frames from both VMs. */
static void twin_seeds(void)
{
    struct seed seed = { .bytes = { 0xff }, .length = 1 };
    struct frame_spec spec = spec_of(4, 6, true);
    spec.tcp_flags = 0x12;
    add(&seed, OP_PRIMARY, &spec, "", 0);
    spec.tcp_flags = 0x18;
    spec.sequence++;
    add(&seed, OP_PRIMARY, &spec, "twin data", 9);
    spec.sequence += 9;
    spec.tcp_flags = 0x11;
    add(&seed, OP_PRIMARY, &spec, "", 0);
    spec = spec_of(6, 17, true);
    add(&seed, OP_PRIMARY, &spec, "udp", 3);
    write_seed("twin-tcp-and-udp", &seed);

    char payload[600];
    memset(payload, 'f', sizeof payload);
    uint8_t whole[FRAME_BUILDER_MAX], fragment[FRAME_BUILDER_MAX];
    seed.length = 1;
    spec = spec_of(4, 17, true);
    frame_build(whole, &spec, (const uint8_t *)payload, sizeof payload);
    record(&seed, OP_PRIMARY, fragment, frame_fragment(fragment, &spec, whole, 304, 304, false, 5));
    record(&seed, OP_PRIMARY, fragment, frame_fragment(fragment, &spec, whole, 0, 304, true, 5));
    record(&seed, OP_CHECKPOINT, NULL, 0);
    record(&seed, OP_PRIMARY, fragment, frame_fragment(fragment, &spec, whole, 0, 304, true, 6));
    write_seed("twin-fragments", &seed);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
        return 2;
    }
    directory = argv[1];
    tcp_seeds();
    datagram_seeds();
    fragment_seeds();
    malformed_seeds();
    twin_seeds();
    return 0;
}
