/* The proxy's output devices (proxy/output_buffer.h, committed_output.h)
 * without a guest or a network: a recording net backend stands for the
 * TAP, and the transmit hook is called as the guest's NIC would call it.
 *
 * Primary: frames pass until setup, then are held; save writes them as
 * OUTPUT records; release sends them in order. Secondary: those records
 * load into the committed copy, which a failover sends (and a later
 * CHECKPOINT_NEW, postsuspend, drops); the SVM's own frames are held,
 * dropped by a checkpoint (preresume), sent at a failover, and pass after. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "committed_output.h"
#include "frame_builder.h"
#include "machine_devices.h"
#include "net_backend.h"
#include "output_buffer.h"
#include "packet_parse.h"
#include "stream.h"
#include "test_check.h"
#include "test_machine.h"
#include "virtio_net_device.h"

#define MAX_RECORDED 16

/* A backend that keeps the first byte, length and header of every frame sent. */
struct recorder {
    struct test_wire wire; /* first */
    unsigned count;
    uint8_t first_byte[MAX_RECORDED];
    size_t length[MAX_RECORDED];
    uint16_t header_length[MAX_RECORDED];
};

static void record_frame(struct test_wire *wire, const struct virtio_net_header *header, const uint8_t *frame,
                         size_t length)
{
    struct recorder *recorder = (struct recorder *)wire;
    if (recorder->count < MAX_RECORDED) {
        recorder->first_byte[recorder->count] = frame[0];
        recorder->length[recorder->count] = length;
        recorder->header_length[recorder->count] = header->header_length;
    }
    recorder->count++;
}

static struct machine *machine_with_recorder(struct recorder *recorder)
{
    struct machine *machine = test_machine_create(&(struct test_machine_options){ .nic = true });
    *recorder = (struct recorder){ .count = 0 };
    test_wire_attach(machine, &recorder->wire, record_frame);
    return machine;
}

/* What the guest's NIC does with a frame it sends: call the hook. */
static void guest_sends(struct machine *machine, uint8_t first_byte, size_t length)
{
    uint8_t frame[128];
    memset(frame, 0, sizeof frame);
    frame[0] = first_byte;
    struct virtio_net_header header = { .header_length = first_byte }; /* travels with the frame */
    struct virtio_net *net = machine_nic(machine, 0);
    net->transmit_hook(net->transmit_hook_opaque, net, &header, frame, length);
}

static void check_recorded(const struct recorder *recorder, const char *what, const uint8_t *bytes, unsigned count,
                           int line)
{
    CHECK_AT(line, recorder->count == count, "%s: %u frames sent, expected %u", what, recorder->count, count);
    for (unsigned i = 0; i < count && i < recorder->count; i++)
        CHECK_AT(line,
                 recorder->first_byte[i] == bytes[i] && recorder->length[i] == 60u + bytes[i] &&
                     recorder->header_length[i] == bytes[i],
                 "%s: frame %u is 0x%02x (%zu bytes), expected 0x%02x", what, i, recorder->first_byte[i],
                 recorder->length[i], bytes[i]);
}

/* A backend that keeps, for every frame sent, a label: a TCP segment's
 * sequence number, a datagram's source port and first byte, a fragment's
 * offset. Each frame of the failover test has its own. */
#define LABEL_FRAGMENT 0x1000000u
struct labeller {
    struct test_wire wire; /* first */
    unsigned count;
    uint32_t labels[64];
};

static void label_frame(struct test_wire *wire, const struct virtio_net_header *header, const uint8_t *frame,
                        size_t length)
{
    (void)header;
    struct labeller *labeller = (struct labeller *)wire;
    struct packet_view view;
    uint32_t label = 0;
    if (packet_parse(frame, length, &view) == PACKET_PARSE_OK) {
        if (view.fragment)
            label = LABEL_FRAGMENT + view.fragment_offset;
        else if (view.transport == PACKET_TRANSPORT_TCP)
            label = view.tcp_sequence;
        else if (view.transport == PACKET_TRANSPORT_UDP && view.payload_length > 0)
            label = (uint32_t)view.source_port << 8 | view.payload[0];
    }
    if (labeller->count < 64)
        labeller->labels[labeller->count] = label;
    labeller->count++;
}

static void svm_sends_tcp(struct machine *svm, uint16_t port, uint32_t sequence, uint8_t flags, size_t data_length)
{
    struct frame_spec spec = { .ip_version = 4,
                               .source_ip = { 10, 0, 0, 2 },
                               .destination_ip = { 10, 0, 0, 9 },
                               .protocol = 6,
                               .source_port = 7000,
                               .destination_port = port,
                               .sequence = sequence,
                               .acknowledgment = 1,
                               .tcp_flags = flags,
                               .window = 1000 };
    uint8_t frame[FRAME_BUILDER_MAX], data[64];
    memset(data, 'x', sizeof data);
    size_t length = frame_build(frame, &spec, data, data_length);
    struct virtio_net_header header = { 0 };
    struct virtio_net *net = machine_nic(svm, 0);
    net->transmit_hook(net->transmit_hook_opaque, net, &header, frame, length);
}

static void svm_sends(struct machine *svm, const uint8_t *frame, size_t length)
{
    struct virtio_net *net = machine_nic(svm, 0);
    net->transmit_hook(net->transmit_hook_opaque, net, &(struct virtio_net_header){ 0 }, frame, length);
}

/* The SVM's held output at a failover: of each flow the newest
 * OUTPUT_FAILOVER_FRAMES_PER_FLOW frames with data and the newest TCP
 * segment without go, in the SVM's order; SYN, FIN and fragments go
 * whatever their age. */
static void test_failover_leaves_out_older_segments(void)
{
    struct labeller wire = { .count = 0 };
    struct machine *svm = test_machine_create(&(struct test_machine_options){ .nic = true });
    test_wire_attach(svm, &wire.wire, label_frame);
    static struct output_buffer output;
    output_buffer_init(&output, svm, true);
    enum { ACK = PACKET_TCP_ACK, PSH_ACK = PACKET_TCP_PSH | PACKET_TCP_ACK };
    uint32_t expected[64];
    unsigned expected_count = 0, skipped = 0;

    svm_sends_tcp(svm, 40000, 100, PACKET_TCP_SYN | ACK, 0); /* kept: an event */
    expected[expected_count++] = 100;
    /* 12 data segments on one flow, a pure ACK after every fourth. */
    for (uint32_t segment = 0; segment < 12; segment++) {
        svm_sends_tcp(svm, 40000, 1000 + segment, PSH_ACK, 10);
        if (segment >= 12 - OUTPUT_FAILOVER_FRAMES_PER_FLOW)
            expected[expected_count++] = 1000 + segment;
        else
            skipped++;
        if (segment % 4 == 3) {
            svm_sends_tcp(svm, 40000, 2000 + segment, ACK, 0);
            if (segment == 11)
                expected[expected_count++] = 2000 + segment; /* the newest pure ACK only */
            else
                skipped++;
        }
    }
    /* Another TCP flow (another port): whole. */
    svm_sends_tcp(svm, 40001, 3000, PSH_ACK, 10);
    expected[expected_count++] = 3000;
    /* Datagrams: ten on one flow (the newest go), one on another. */
    struct frame_spec datagram = { .ip_version = 4,
                                   .source_ip = { 10, 0, 0, 2 },
                                   .destination_ip = { 10, 0, 0, 9 },
                                   .protocol = 17,
                                   .source_port = 5353,
                                   .destination_port = 5353 };
    uint8_t frame[FRAME_BUILDER_MAX], whole[FRAME_BUILDER_MAX], payload[100];
    for (uint8_t datagram_number = 0; datagram_number < 10; datagram_number++) {
        uint8_t first = (uint8_t)('a' + datagram_number);
        svm_sends(svm, frame, frame_build(frame, &datagram, &first, 1));
        if (datagram_number >= 10 - OUTPUT_FAILOVER_FRAMES_PER_FLOW)
            expected[expected_count++] = 5353u << 8 | first;
        else
            skipped++;
    }
    datagram.source_port = 5354;
    svm_sends(svm, frame, frame_build(frame, &datagram, (const uint8_t *)"z", 1));
    expected[expected_count++] = 5354u << 8 | 'z';
    /* A datagram in 14 fragments: every piece goes. */
    memset(payload, 'f', sizeof payload);
    frame_build(whole, &datagram, payload, sizeof payload);
    for (size_t offset = 0; offset < 8 + sizeof payload; offset += 8) {
        size_t piece = 8 + sizeof payload - offset < 8 ? 8 + sizeof payload - offset : 8;
        svm_sends(svm, frame,
                  frame_fragment(frame, &datagram, whole, offset, piece, offset + piece < 8 + sizeof payload, 77));
        expected[expected_count++] = LABEL_FRAGMENT + (uint32_t)offset;
    }
    svm_sends_tcp(svm, 40000, 1012, PACKET_TCP_FIN | ACK, 0); /* kept: an event */
    expected[expected_count++] = 1012;
    CHECK(wire.count == 0, "the SVM sent %u frames before its failover", wire.count);

    struct error err;
    CHECK(output_buffer_secondary_device.failover(&output, &err) == 0, "failover: %s", err.message);
    CHECK(wire.count == expected_count, "failover sent %u frames, expected %u", wire.count, expected_count);
    for (unsigned i = 0; i < expected_count && i < wire.count; i++)
        CHECK(wire.labels[i] == expected[i], "failover frame %u is %u, expected %u", i, wire.labels[i], expected[i]);
    struct output_buffer_stats stats;
    output_buffer_get_stats(&output, &stats);
    CHECK(stats.released_at_failover == expected_count && stats.skipped_at_failover == skipped && stats.held_now == 0,
          "released %llu, skipped %llu (expected %u and %u), %llu still held",
          (unsigned long long)stats.released_at_failover, (unsigned long long)stats.skipped_at_failover, expected_count,
          skipped, (unsigned long long)stats.held_now);
    /* After the failover the SVM's frames pass at once. */
    svm_sends_tcp(svm, 40000, 1013, PSH_ACK, 10);
    CHECK(wire.count == expected_count + 1 && wire.labels[expected_count] == 1013, "a frame after the failover");
    output_buffer_destroy(&output);
    test_machine_destroy(svm);
}

int main(void)
{
    test_failover_leaves_out_older_segments();

    /* ---- primary ---- */
    struct recorder primary_wire;
    struct machine *pvm = machine_with_recorder(&primary_wire);
    static struct output_buffer primary_output;
    output_buffer_init(&primary_output, pvm, false);
    guest_sends(pvm, 0x01, 61);
    check_recorded(&primary_wire, "before setup", (const uint8_t[]){ 0x01 }, 1, __LINE__);

    CHECK(output_buffer_primary_device.setup(&primary_output) == 0, "setup");
    guest_sends(pvm, 0x02, 62);
    guest_sends(pvm, 0x03, 63);
    check_recorded(&primary_wire, "held after setup", (const uint8_t[]){ 0x01 }, 1, __LINE__);
    struct output_buffer_stats stats;
    output_buffer_get_stats(&primary_output, &stats);
    CHECK(stats.held_now == 2 && stats.held_total == 2, "held %llu now, %llu in all",
          (unsigned long long)stats.held_now, (unsigned long long)stats.held_total);

    /* The checkpoint: the held frames as OUTPUT records, in a stream the
     * secondary reads back. */
    int fd = memfd_create("checkpoint", 0);
    struct stream_writer writer;
    struct error err;
    struct machine *svm_probe = test_machine_create(&(struct test_machine_options){ .nic = true });
    struct stream_header header = { STREAM_VERSION, machine_ram_size(svm_probe),
                                    machine_configuration_hash(svm_probe) };
    CHECK(output_buffer_primary_device.postsuspend(&primary_output) == 0, "postsuspend");
    CHECK(stream_writer_init(&writer, fd, &err) == 0 && stream_write_header(&writer, &header, &err) == 0 &&
              output_buffer_primary_device.save(&primary_output, &writer, &err) == 0 &&
              stream_write_checkpoint_end(&writer, &err) == 0 && stream_flush(&writer, &err) == 0,
          "writing the checkpoint: %s", err.message);
    stream_writer_destroy(&writer);
    test_machine_destroy(svm_probe);

    /* The PVM resumed once the checkpoint was sent, before SVM_READY: what
     * it sends now belongs to the next checkpoint and stays held. */
    guest_sends(pvm, 0x04, 64);
    output_buffer_primary_device.release(&primary_output);
    check_recorded(&primary_wire, "released", (const uint8_t[]){ 0x01, 0x02, 0x03 }, 3, __LINE__);
    output_buffer_get_stats(&primary_output, &stats);
    CHECK(stats.held_now == 1, "%llu frames held after the release, expected the one sent after the pause",
          (unsigned long long)stats.held_now);
    /* The next checkpoint lets it out. */
    CHECK(output_buffer_primary_device.postsuspend(&primary_output) == 0, "postsuspend");
    output_buffer_primary_device.release(&primary_output);
    check_recorded(&primary_wire, "released by the next checkpoint", (const uint8_t[]){ 0x01, 0x02, 0x03, 0x04 }, 4,
                   __LINE__);
    guest_sends(pvm, 0x05, 65);
    check_recorded(&primary_wire, "held again after the release", (const uint8_t[]){ 0x01, 0x02, 0x03, 0x04 }, 4,
                   __LINE__);
    output_buffer_release_and_pass(&primary_output);
    guest_sends(pvm, 0x06, 66);
    check_recorded(&primary_wire, "the end of protection sends and passes",
                   (const uint8_t[]){ 0x01, 0x02, 0x03, 0x04, 0x05, 0x06 }, 6, __LINE__);

    /* ---- secondary ---- */
    struct recorder secondary_wire;
    struct machine *svm = machine_with_recorder(&secondary_wire);
    static struct output_buffer secondary_output;
    static struct committed_output committed;
    output_buffer_init(&secondary_output, svm, true);
    committed_output_init(&committed, svm);

    lseek(fd, 0, SEEK_SET);
    struct stream_reader reader;
    uint32_t terminator = 0;
    CHECK(stream_reader_init(&reader, fd, &err) == 0 && stream_read_header(&reader, &header, &err) == 0 &&
              stream_receive(&reader, svm, &terminator, &err) == 0,
          "reading the checkpoint: %s", err.message);
    CHECK(committed_output_device.load(&committed, &reader, &err) == 0, "load: %s", err.message);

    guest_sends(svm, 0x11, 77); /* the SVM's own output: never on the wire before a failover */
    CHECK(output_buffer_secondary_device.preresume(&secondary_output) == 0, "preresume");
    output_buffer_get_stats(&secondary_output, &stats);
    CHECK(stats.dropped_by_checkpoint == 1, "a checkpoint dropped %llu SVM frames, expected 1",
          (unsigned long long)stats.dropped_by_checkpoint);
    guest_sends(svm, 0x12, 78);
    check_recorded(&secondary_wire, "the SVM is muted", NULL, 0, __LINE__);

    /* Failover, in the order the secondary adds the devices: the primary's
     * committed output (older), then the SVM's held output. */
    CHECK(committed_output_device.failover(&committed, &err) == 0 &&
              output_buffer_secondary_device.failover(&secondary_output, &err) == 0,
          "failover: %s", err.message);
    guest_sends(svm, 0x13, 79);
    check_recorded(&secondary_wire, "failover", (const uint8_t[]){ 0x02, 0x03, 0x12, 0x13 }, 4, __LINE__);
    CHECK(committed_output_sent_at_failover(&committed) == 2, "committed frames sent at failover: %llu",
          (unsigned long long)committed_output_sent_at_failover(&committed));

    /* A CHECKPOINT_NEW after the load proves the primary released: the
     * copy is dropped and a failover then sends none of it. */
    static struct committed_output second;
    committed_output_init(&second, svm);
    CHECK(committed_output_device.load(&second, &reader, &err) == 0, "second load: %s", err.message);
    CHECK(committed_output_device.postsuspend(&second) == 0, "postsuspend");
    unsigned before = secondary_wire.count;
    CHECK(committed_output_device.failover(&second, &err) == 0 && secondary_wire.count == before &&
              committed_output_sent_at_failover(&second) == 0,
          "a failover after CHECKPOINT_NEW sent %u of the released output", secondary_wire.count - before);

    stream_reader_destroy(&reader);
    close(fd);
    committed_output_destroy(&committed);
    committed_output_destroy(&second);
    output_buffer_destroy(&primary_output);
    output_buffer_destroy(&secondary_output);
    test_machine_destroy(pvm);
    test_machine_destroy(svm);
    return test_check_finish("output_devices_test");
}
