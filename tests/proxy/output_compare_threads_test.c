/* The output buffer in compare mode with its real threads
 * (proxy/output_buffer.h, docs/proxy.md "Wiring"), for ThreadSanitizer
 * (suite 'threads', scripts/test_tsan.sh) as much as for the counts.
 *
 * Primary: one PVM with a NIC whose backend records what leaves, a real
 * colo_primary that never runs, compare mode. A "machine" thread sends
 * TCP segments of a few connections through the NIC's transmit hook; a
 * "watch" thread sends the SVM's copies (some cut differently, one epoch
 * with a payload that differs, one segment per epoch missing) through
 * output_buffer_secondary_frame, with a boundary after each checkpoint; a
 * "loop" thread takes the checkpoints (clears the request and the
 * deadline, postsuspend, release once the SVM's boundary was sent). The
 * PVM runs on between a checkpoint's pause and its release, as it does
 * with resume_before_ready_bytes, so releases race with the next epoch's
 * frames and matches; the SVM's late pure ACKs race with each pause.
 * Epochs are in step (each thread finishes an
 * epoch's frames before its checkpoint), so which frame leaves by a match
 * and which by a checkpoint is the same every run: every segment leaves
 * exactly once, in its connection's order, and the counts are exact.
 *
 * Secondary: an SVM whose output buffer holds and returns its frames on
 * the mirror connection (a socketpair; the mirror reader's thread is not
 * started). Its "machine" thread transmits, a "heartbeat" thread sends
 * beats, the main thread runs the output device's preresume (a boundary
 * each), all writers of one fd. The socket is small, so a large frame is
 * written in parts, and a beat or a boundary written between them would
 * cut it (mirror_reader's write_lock is what prevents that). A thread at
 * the other end parses everything: each message whole, the frames
 * complete and in order, as many as were returned. */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "colo_primary.h"
#include "frame_builder.h"
#include "heartbeat.h"
#include "machine_devices.h"
#include "mirror_framing.h"
#include "mirror_reader.h"
#include "net_backend.h"
#include "output_buffer.h"
#include "test_check.h"
#include "test_machine.h"
#include "virtio_net_device.h"

#define PAYLOAD_OFFSET (14 + 20 + 20) /* Ethernet, IPv4, TCP without options */
#define ISN 1000000u
#define CLIENT_PORT 40000u

/* ---- the primary ---- */

#define CONNECTIONS 4u
#define SEGMENTS 4u /* per connection and epoch */
#define SEGMENT_BYTES 8u
#define EPOCHS 6u
#define FRAMES (CONNECTIONS * SEGMENTS * EPOCHS)
/* The SVM never sends this connection's last segment of an epoch: that
 * segment waits for the epoch's checkpoint. */
#define TAIL_MISSING_CONNECTION 3u
/* In this epoch the SVM's segment 1 of this connection differs: it and
 * the connection's later segments of the epoch wait for the checkpoint. */
#define DIFFERENCE_EPOCH 2u
#define DIFFERENCE_CONNECTION 1u
#define LATE_ACKS 3u /* per epoch, after its frames */
#define EXPECTED_BY_CHECKPOINT (EPOCHS + (SEGMENTS - 1))
#define EXPECTED_MATCHED (FRAMES - EXPECTED_BY_CHECKPOINT)

/* A backend that records each frame's connection and sequence number;
 * frames leave from the machine, the watch and the loop threads. */
struct recorder {
    struct test_wire wire; /* first */
    pthread_mutex_t lock;
    unsigned count, malformed;
    unsigned per_connection[CONNECTIONS];
    uint32_t sequence[CONNECTIONS][SEGMENTS * EPOCHS + 1];
};

static uint32_t get_32(const uint8_t *bytes)
{
    return (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 | (uint32_t)bytes[2] << 8 | bytes[3];
}

static void record_frame(struct test_wire *wire, const struct virtio_net_header *header, const uint8_t *frame,
                         size_t length)
{
    (void)header;
    struct recorder *recorder = (struct recorder *)wire;
    pthread_mutex_lock(&recorder->lock);
    recorder->count++;
    unsigned connection = length > PAYLOAD_OFFSET ? ((unsigned)frame[36] << 8 | frame[37]) - CLIENT_PORT : ~0u;
    if (connection < CONNECTIONS && recorder->per_connection[connection] < SEGMENTS * EPOCHS + 1)
        recorder->sequence[connection][recorder->per_connection[connection]++] = get_32(frame + 38);
    else
        recorder->malformed++;
    pthread_mutex_unlock(&recorder->lock);
}

/* A TCP segment from the guest's server (10.0.0.2:80) to a client port;
 * its payload says where it is in the stream, unless `differ`. */
static size_t tcp_frame(uint8_t *frame, unsigned connection, uint32_t offset, size_t bytes, bool differ)
{
    struct frame_spec spec = { .ip_version = 4,
                               .source_ip = { 10, 0, 0, 2 },
                               .destination_ip = { 10, 0, 0, 1 },
                               .protocol = 6,
                               .source_port = 80,
                               .destination_port = (uint16_t)(CLIENT_PORT + connection),
                               .sequence = ISN + offset,
                               .acknowledgment = 555,
                               .tcp_flags = PACKET_TCP_ACK | PACKET_TCP_PSH,
                               .window = 65535 };
    uint8_t payload[4 * SEGMENT_BYTES];
    for (size_t i = 0; i < bytes && i < sizeof payload; i++)
        payload[i] = (uint8_t)('a' + (connection * 7 + offset + i) % 26);
    if (differ)
        payload[0] ^= 0x20;
    return frame_build(frame, &spec, payload, bytes);
}

static uint32_t segment_offset(unsigned epoch, unsigned segment)
{
    return (epoch * SEGMENTS + segment) * SEGMENT_BYTES;
}

/* The threads' steps, in epochs: the machine and the watch thread send
 * epoch e's frames, the loop pauses for checkpoint e (the machine may go
 * on to e + 1), the watch thread sends the SVM's boundary (then its e + 1
 * frames), the loop releases checkpoint e. */
struct steps {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned machine_done, watch_done; /* epochs whose frames were sent */
    unsigned paused;                   /* checkpoints paused for */
    unsigned boundaries;               /* boundaries sent after a pause */
};

static void steps_wait(struct steps *steps, const unsigned *counter, unsigned at_least)
{
    pthread_mutex_lock(&steps->lock);
    while (*counter < at_least)
        pthread_cond_wait(&steps->changed, &steps->lock);
    pthread_mutex_unlock(&steps->lock);
}

static void steps_advance(struct steps *steps, unsigned *counter)
{
    pthread_mutex_lock(&steps->lock);
    (*counter)++;
    pthread_cond_broadcast(&steps->changed);
    pthread_mutex_unlock(&steps->lock);
}

struct primary_rig {
    struct recorder wire;
    struct machine *pvm;
    struct output_buffer buffer;
    struct colo_primary primary;
    int fds[2];
    struct steps steps;
    size_t checkpoint_frames[EPOCHS + 1]; /* what each checkpoint's pause covered */
    unsigned svm_frames_sent;
};

static void *machine_thread(void *opaque)
{
    struct primary_rig *rig = opaque;
    struct virtio_net *net = machine_nic(rig->pvm, 0);
    for (unsigned epoch = 0; epoch < EPOCHS; epoch++) {
        steps_wait(&rig->steps, &rig->steps.paused, epoch); /* the PVM resumed after the last pause */
        for (unsigned segment = 0; segment < SEGMENTS; segment++) {
            for (unsigned connection = 0; connection < CONNECTIONS; connection++) {
                uint8_t frame[FRAME_BUILDER_MAX];
                size_t length = tcp_frame(frame, connection, segment_offset(epoch, segment), SEGMENT_BYTES, false);
                struct virtio_net_header header = { 0 };
                net->transmit_hook(net->transmit_hook_opaque, net, &header, frame, length);
            }
        }
        steps_advance(&rig->steps, &rig->steps.machine_done);
    }
    return NULL;
}

static void svm_sends(struct primary_rig *rig, unsigned connection, unsigned epoch, unsigned segment, unsigned count,
                      bool differ)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    size_t length = tcp_frame(frame, connection, segment_offset(epoch, segment), count * SEGMENT_BYTES, differ);
    struct virtio_net_header header = { 0 };
    output_buffer_secondary_frame(&rig->buffer, 0, &header, frame, length);
    rig->svm_frames_sent++;
}

static void *watch_thread(void *opaque)
{
    struct primary_rig *rig = opaque;
    output_buffer_secondary_boundary(&rig->buffer); /* the SVM's setup */
    for (unsigned epoch = 0; epoch < EPOCHS; epoch++) {
        /* Connections in another order than the PVM's; the even ones cut
         * in two segments of two, the odd ones as the PVM. */
        for (unsigned c = CONNECTIONS; c-- > 0;) {
            if (c % 2 == 0) {
                svm_sends(rig, c, epoch, 0, 2, false);
                svm_sends(rig, c, epoch, 2, 2, false);
                continue;
            }
            for (unsigned segment = 0; segment < SEGMENTS; segment++) {
                if (c == TAIL_MISSING_CONNECTION && segment == SEGMENTS - 1)
                    continue;
                svm_sends(rig, c, epoch, segment, 1,
                          epoch == DIFFERENCE_EPOCH && c == DIFFERENCE_CONNECTION && segment == 1);
            }
        }
        steps_advance(&rig->steps, &rig->steps.watch_done);
        /* The SVM's late output, racing with the checkpoint's pause: pure
         * ACKs, compared (nothing to match) or stale, never a difference. */
        for (unsigned c = 0; c < LATE_ACKS; c++) {
            uint8_t frame[FRAME_BUILDER_MAX];
            size_t length = tcp_frame(frame, c, segment_offset(epoch + 1, 0), 0, false);
            struct virtio_net_header header = { 0 };
            output_buffer_secondary_frame(&rig->buffer, 0, &header, frame, length);
            rig->svm_frames_sent++;
        }
        /* The SVM applies checkpoint `epoch`: its boundary. */
        steps_wait(&rig->steps, &rig->steps.paused, epoch + 1);
        output_buffer_secondary_boundary(&rig->buffer);
        steps_advance(&rig->steps, &rig->steps.boundaries);
    }
    return NULL;
}

/* The loop's part at a checkpoint's pause (colo_primary's loop): the
 * trigger served, the deadline met, then the devices' postsuspend. */
static size_t pause_for_checkpoint(struct primary_rig *rig)
{
    pthread_mutex_lock(&rig->primary.lock);
    rig->primary.checkpoint_requested = false;
    rig->primary.output_deadline_us = 0;
    pthread_mutex_unlock(&rig->primary.lock);
    int result = output_buffer_primary_device.postsuspend(&rig->buffer);
    pthread_mutex_lock(&rig->buffer.lock);
    size_t frames = result == 0 ? rig->buffer.checkpoint_frames : (size_t)-1;
    pthread_mutex_unlock(&rig->buffer.lock);
    return frames;
}

static void *loop_thread(void *opaque)
{
    struct primary_rig *rig = opaque;
    for (unsigned epoch = 0; epoch < EPOCHS; epoch++) {
        steps_wait(&rig->steps, &rig->steps.machine_done, epoch + 1);
        steps_wait(&rig->steps, &rig->steps.watch_done, epoch + 1);
        rig->checkpoint_frames[epoch] = pause_for_checkpoint(rig);
        steps_advance(&rig->steps, &rig->steps.paused);
        /* SVM_READY: the SVM was rebuilt (its boundary is out). */
        steps_wait(&rig->steps, &rig->steps.boundaries, epoch + 1);
        output_buffer_primary_device.release(&rig->buffer);
    }
    return NULL;
}

static void start(pthread_t *thread, void *(*run)(void *), void *opaque)
{
    if (pthread_create(thread, NULL, run, opaque) != 0) {
        fprintf(stderr, "FAIL: cannot start a thread\n");
        exit(1);
    }
}

static void test_primary(void)
{
    struct primary_rig *rig = calloc(1, sizeof *rig);
    if (!rig)
        abort();
    pthread_mutex_init(&rig->steps.lock, NULL);
    pthread_cond_init(&rig->steps.changed, NULL);
    rig->pvm = test_machine_create(&(struct test_machine_options){ .nic = true });
    pthread_mutex_init(&rig->wire.lock, NULL);
    test_wire_attach(rig->pvm, &rig->wire.wire, record_frame);
    struct error err = { 0 };
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, rig->fds) < 0 ||
        colo_primary_init(&rig->primary, rig->pvm, rig->fds[0], NULL, &err) < 0) {
        fprintf(stderr, "FAIL: primary rig: %s\n", err.message);
        exit(1);
    }
    output_buffer_init(&rig->buffer, rig->pvm, false);
    output_buffer_set_primary(&rig->buffer, &rig->primary, 250);
    struct output_compare_options options;
    output_compare_options_defaults(&options);
    /* No frame times out however slow the threads run (ThreadSanitizer):
     * only the missing twins and the difference wait for checkpoints. */
    options.compare_timeout_ms = 600000;
    if (output_buffer_set_compare(&rig->buffer, &options, &err) < 0 ||
        output_buffer_primary_device.setup(&rig->buffer) != 0) {
        fprintf(stderr, "FAIL: compare mode: %s\n", err.message);
        exit(1);
    }

    pthread_t machine, watch, loop;
    start(&machine, machine_thread, rig);
    start(&watch, watch_thread, rig);
    start(&loop, loop_thread, rig);
    pthread_join(machine, NULL);
    pthread_join(watch, NULL);
    pthread_join(loop, NULL);
    /* Whatever is left (nothing, if all went well). */
    rig->checkpoint_frames[EPOCHS] = pause_for_checkpoint(rig);
    output_buffer_primary_device.release(&rig->buffer);

    size_t by_checkpoint = 0;
    for (unsigned i = 0; i <= EPOCHS; i++) {
        size_t expected = i == EPOCHS ? 0 : i == DIFFERENCE_EPOCH ? 1 + SEGMENTS - 1 : 1;
        CHECK(rig->checkpoint_frames[i] == expected, "checkpoint %u covered %zu frames, expected %zu", i,
              rig->checkpoint_frames[i], expected);
        by_checkpoint += rig->checkpoint_frames[i];
    }
    struct output_buffer_stats stats;
    output_buffer_get_stats(&rig->buffer, &stats);
    CHECK(rig->wire.count == FRAMES && rig->wire.malformed == 0, "%u frames left (%u not ours), expected %u",
          rig->wire.count, rig->wire.malformed, FRAMES);
    CHECK(stats.released_total == FRAMES && stats.held_now == 0, "%llu released, %llu held; expected %u, 0",
          (unsigned long long)stats.released_total, (unsigned long long)stats.held_now, FRAMES);
    CHECK(stats.released_matched + by_checkpoint == FRAMES,
          "%llu released by a match + %zu by checkpoints != %u frames sent", (unsigned long long)stats.released_matched,
          by_checkpoint, FRAMES);
    CHECK(stats.released_matched == EXPECTED_MATCHED, "%llu released by a match, expected %u",
          (unsigned long long)stats.released_matched, EXPECTED_MATCHED);
    /* The late ACKs are either; everything else is of its epoch. */
    CHECK(stats.secondary_frames_compared + stats.secondary_frames_stale == rig->svm_frames_sent &&
              stats.secondary_frames_stale <= LATE_ACKS * EPOCHS,
          "%llu SVM frames compared, %llu stale; expected %u in all, at most %u stale",
          (unsigned long long)stats.secondary_frames_compared, (unsigned long long)stats.secondary_frames_stale,
          rig->svm_frames_sent, LATE_ACKS * EPOCHS);
    CHECK(stats.checkpoints_by_difference == 1 && stats.storms == 0 && stats.mode_now == OUTPUT_MODE_COMPARE,
          "%llu checkpoints by difference, %llu storms, mode %s; expected 1, 0, compare",
          (unsigned long long)stats.checkpoints_by_difference, (unsigned long long)stats.storms,
          output_mode_name(stats.mode_now));
    struct output_compare_counters counters;
    output_buffer_get_compare_counters(&rig->buffer, &counters);
    CHECK(counters.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD] == 1 &&
              counters.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT] == 0,
          "%llu payload differences, %llu timeouts; expected 1, 0",
          (unsigned long long)counters.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD],
          (unsigned long long)counters.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT]);
    /* Each connection's segments left once each, in the order sent. */
    for (unsigned c = 0; c < CONNECTIONS; c++) {
        CHECK(rig->wire.per_connection[c] == SEGMENTS * EPOCHS, "connection %u: %u segments left, expected %u", c,
              rig->wire.per_connection[c], SEGMENTS * EPOCHS);
        for (unsigned i = 0; i < rig->wire.per_connection[c] && i < SEGMENTS * EPOCHS; i++) {
            if (rig->wire.sequence[c][i] != ISN + i * SEGMENT_BYTES) {
                CHECK(false, "connection %u: segment %u left with sequence %u, expected %u (lost, twice or reordered)",
                      c, i, rig->wire.sequence[c][i] - ISN, i * SEGMENT_BYTES);
                break;
            }
        }
    }

    output_buffer_destroy(&rig->buffer);
    colo_primary_destroy(&rig->primary);
    close(rig->fds[0]);
    close(rig->fds[1]);
    test_machine_destroy(rig->pvm);
    pthread_mutex_destroy(&rig->wire.lock);
    pthread_mutex_destroy(&rig->steps.lock);
    pthread_cond_destroy(&rig->steps.changed);
    free(rig);
}

/* ---- the secondary ---- */

#define SVM_FRAMES 120u
#define SVM_LARGE_PAYLOAD 30000u
#define PRERESUMES 5u

struct secondary_rig {
    struct machine *svm;
    struct output_buffer buffer;
    struct failure_detector detector;
    struct mirror_reader reader;
    int fds[2]; /* [0]: the reader's (the SVM's host), [1]: the primary's */
    atomic_uint frames_sent;
    atomic_bool machine_finished;
    unsigned beats_sent;
    /* The primary's end. */
    unsigned frames, boundaries, heartbeats, malformed, wrong_frames, leftover;
};

static void on_dead(void *opaque, const char *reason)
{
    (void)opaque;
    (void)reason;
}

/* Frame i: every third one large (a TSO segment), so that a write may
 * end part way (the socket is small) and must be finished before another
 * writer's message; its payload says i and where each byte is. */
static size_t svm_payload_length(unsigned i)
{
    return i % 3 == 0 ? SVM_LARGE_PAYLOAD : 4 * SEGMENT_BYTES;
}

static uint8_t svm_payload_byte(unsigned i, size_t at)
{
    return (uint8_t)(i * 31 + at);
}

static void *svm_machine_thread(void *opaque)
{
    struct secondary_rig *rig = opaque;
    struct virtio_net *net = machine_nic(rig->svm, 0);
    uint8_t *payload = malloc(SVM_LARGE_PAYLOAD), *frame = malloc(SVM_LARGE_PAYLOAD + 128);
    if (!payload || !frame)
        abort();
    uint32_t sequence = ISN;
    for (unsigned i = 0; i < SVM_FRAMES; i++) {
        size_t bytes = svm_payload_length(i);
        frame_put_32(payload, i);
        for (size_t at = 4; at < bytes; at++)
            payload[at] = svm_payload_byte(i, at);
        struct frame_spec spec = { .ip_version = 4,
                                   .source_ip = { 10, 0, 0, 2 },
                                   .destination_ip = { 10, 0, 0, 1 },
                                   .protocol = 6,
                                   .source_port = 80,
                                   .destination_port = CLIENT_PORT,
                                   .sequence = sequence,
                                   .acknowledgment = 555,
                                   .tcp_flags = PACKET_TCP_ACK | PACKET_TCP_PSH,
                                   .window = 65535 };
        size_t length = frame_build(frame, &spec, payload, bytes);
        sequence += (uint32_t)bytes;
        struct virtio_net_header header = { 0 };
        net->transmit_hook(net->transmit_hook_opaque, net, &header, frame, length);
        atomic_store_explicit(&rig->frames_sent, i + 1, memory_order_relaxed);
    }
    atomic_store_explicit(&rig->machine_finished, true, memory_order_relaxed);
    free(payload);
    free(frame);
    return NULL;
}

/* The primary's end: a frame whole, and later than the last one. */
static bool frame_intact(const struct mirror_message *message, long last)
{
    if (message->length <= PAYLOAD_OFFSET + 4)
        return false;
    const uint8_t *payload = message->frame + PAYLOAD_OFFSET;
    uint32_t i = get_32(payload);
    if ((long)i <= last || i >= SVM_FRAMES || message->length != PAYLOAD_OFFSET + svm_payload_length(i))
        return false;
    for (size_t at = 4; at < svm_payload_length(i); at++)
        if (payload[at] != svm_payload_byte(i, at))
            return false;
    return true;
}

/* Paced by the machine's progress through relaxed atomics only, so that
 * the test itself orders nothing between the writers. */
static void wait_for_progress(struct secondary_rig *rig, unsigned frames)
{
    while (atomic_load_explicit(&rig->frames_sent, memory_order_relaxed) < frames &&
           !atomic_load_explicit(&rig->machine_finished, memory_order_relaxed))
        sched_yield();
}

/* As often as it can while the machine sends (a beat that finds the
 * socket full is skipped), so beats fall between the parts of a frame if
 * anything lets them. */
static void *heartbeat_thread(void *opaque)
{
    struct secondary_rig *rig = opaque;
    do {
        if (mirror_reader_send_heartbeat(&rig->reader))
            rig->beats_sent++;
        sched_yield();
    } while (!atomic_load_explicit(&rig->machine_finished, memory_order_relaxed) || rig->beats_sent == 0);
    return NULL;
}

static void *primary_end_thread(void *opaque)
{
    struct secondary_rig *rig = opaque;
    static uint8_t buffer[2 * MIRROR_MESSAGE_MAX];
    size_t buffered = 0;
    long last = -1;
    for (;;) {
        ssize_t got = recv(rig->fds[1], buffer + buffered, sizeof buffer - buffered, 0);
        if (got <= 0)
            break;
        buffered += (size_t)got;
        size_t offset = 0;
        for (;;) {
            struct mirror_message message;
            long size = mirror_parse(buffer + offset, buffered - offset, 1, &message);
            if (size == MIRROR_PARSE_MALFORMED) {
                rig->malformed++;
                return NULL;
            }
            if (size == MIRROR_PARSE_INCOMPLETE)
                break;
            offset += (size_t)size;
            if (message.heartbeat) {
                rig->heartbeats++;
            } else if (message.boundary) {
                rig->boundaries++;
            } else {
                if (!frame_intact(&message, last))
                    rig->wrong_frames++;
                else
                    last = (long)get_32(message.frame + PAYLOAD_OFFSET);
                rig->frames++;
            }
        }
        memmove(buffer, buffer + offset, buffered - offset);
        buffered -= offset;
    }
    rig->leftover = (unsigned)buffered;
    return NULL;
}

static void test_secondary(void)
{
    struct secondary_rig *rig = calloc(1, sizeof *rig);
    if (!rig)
        abort();
    rig->svm = test_machine_create(&(struct test_machine_options){ .nic = true });
    failure_detector_init(&rig->detector, 0, on_dead, NULL);
    struct error err = { 0 };
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, rig->fds) < 0) {
        perror("FAIL: socketpair");
        exit(1);
    }
    /* Small: large frames are written in parts (a frame that finds the
     * socket full is dropped, by design, and counted). */
    int room = 8 << 10;
    setsockopt(rig->fds[0], SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    if (mirror_reader_init(&rig->reader, rig->svm, mirror_channel_of_fd(rig->fds[0]), &rig->detector, &err) < 0) {
        fprintf(stderr, "FAIL: mirror_reader_init: %s\n", err.message);
        exit(1);
    }
    output_buffer_init(&rig->buffer, rig->svm, true);
    if (output_buffer_set_secondary_return(&rig->buffer, &rig->reader, &err) < 0) {
        fprintf(stderr, "FAIL: set_secondary_return: %s\n", err.message);
        exit(1);
    }

    pthread_t machine, heartbeat, primary_end;
    start(&primary_end, primary_end_thread, rig);
    start(&machine, svm_machine_thread, rig);
    start(&heartbeat, heartbeat_thread, rig);
    /* The loop's thread: checkpoints applied while the SVM sends. */
    unsigned preresumes = 0;
    for (unsigned i = 1; i <= PRERESUMES; i++) {
        wait_for_progress(rig, i * SVM_FRAMES / (PRERESUMES + 1));
        if (output_buffer_secondary_device.preresume(&rig->buffer) == 0)
            preresumes++;
    }
    pthread_join(machine, NULL);
    pthread_join(heartbeat, NULL);
    shutdown(rig->fds[0], SHUT_WR);
    pthread_join(primary_end, NULL);

    struct mirror_reader_stats reader_stats;
    mirror_reader_get_stats(&rig->reader, &reader_stats);
    struct output_buffer_stats stats;
    output_buffer_get_stats(&rig->buffer, &stats);
    printf("secondary: %llu frames returned, %llu dropped (socket full), %u heartbeats, %u boundaries\n",
           (unsigned long long)reader_stats.returned, (unsigned long long)reader_stats.return_dropped, rig->heartbeats,
           rig->boundaries);
    CHECK(rig->malformed == 0 && rig->leftover == 0,
          "the mirror's other direction: %u malformed, %u bytes of a partial message at the end", rig->malformed,
          rig->leftover);
    CHECK(reader_stats.returned + reader_stats.return_dropped == SVM_FRAMES && reader_stats.returned > 0,
          "%llu SVM frames returned, %llu dropped; expected %u in all", (unsigned long long)reader_stats.returned,
          (unsigned long long)reader_stats.return_dropped, SVM_FRAMES);
    CHECK(rig->frames == reader_stats.returned && rig->wrong_frames == 0,
          "the primary's end: %u frames (%u cut, mixed or out of order), expected %llu", rig->frames, rig->wrong_frames,
          (unsigned long long)reader_stats.returned);
    CHECK(preresumes == PRERESUMES && rig->boundaries == PRERESUMES, "%u preresumes, %u boundaries; expected %u",
          preresumes, rig->boundaries, PRERESUMES);
    CHECK(rig->heartbeats > 0 && rig->heartbeats == rig->beats_sent, "%u heartbeats heard, %u sent", rig->heartbeats,
          rig->beats_sent);
    CHECK(stats.held_total == SVM_FRAMES && stats.held_now + stats.dropped_by_checkpoint == SVM_FRAMES,
          "the SVM's frames: %llu held in all, %llu held now + %llu dropped by checkpoints; expected %u",
          (unsigned long long)stats.held_total, (unsigned long long)stats.held_now,
          (unsigned long long)stats.dropped_by_checkpoint, SVM_FRAMES);

    output_buffer_destroy(&rig->buffer);
    test_machine_destroy(rig->svm);
    mirror_reader_destroy(&rig->reader);
    failure_detector_destroy(&rig->detector);
    close(rig->fds[0]);
    close(rig->fds[1]);
    free(rig);
}

int main(void)
{
    test_primary();
    test_secondary();
    return test_check_finish("output_compare_threads_test");
}
