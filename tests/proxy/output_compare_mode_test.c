/* The primary's output buffer in compare mode (proxy/output_buffer.h,
 * docs/proxy.md) without a guest or a network: a recording net backend
 * stands for the TAP, the transmit hook is called as the PVM's NIC would
 * call it, and the SVM's frames and boundaries are handed in as the mirror
 * sender's watch thread would. A real colo_primary (never run) records
 * what the buffer asks of the loop: a checkpoint now, or an output
 * deadline; the test plays the loop's part at each pause (it clears both,
 * then the devices' postsuspend and, once the SVM is ready, release).
 *
 * Cases: the SVM's frames count only once its boundary for the PVM's epoch
 * came; a twin, whichever side comes first, lets the PVM frame out at
 * once; the oldest unmatched frame sets the deadline; a difference asks
 * for a checkpoint and holds the frame until it; a frame the PVM sent
 * after a pause waits for that checkpoint's own frames; a timeout counts
 * as a difference; a storm falls back to buffered and back, but not
 * while most frames still match; buffered mode;
 * the release gate; a pure ACK leaves without a twin. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "colo_primary.h"
#include "frame_builder.h"
#include "machine_devices.h"
#include "net_backend.h"
#include "output_buffer.h"
#include "test_check.h"
#include "test_machine.h"
#include "virtio_net_device.h"

#define MAX_RECORDED 16
#define PAYLOAD_OFFSET (14 + 20 + 20) /* Ethernet, IPv4, TCP without options */
#define ISN 1000000u
#define OUTPUT_DELAY_MS 250u

/* A backend that keeps every frame's TCP sequence number and first payload byte. */
struct recorder {
    struct test_wire wire; /* first */
    unsigned count;
    uint32_t sequence[MAX_RECORDED];
    uint8_t first_payload_byte[MAX_RECORDED];
};

static void record_frame(struct test_wire *wire, const struct virtio_net_header *header, const uint8_t *frame,
                         size_t length)
{
    (void)header;
    struct recorder *recorder = (struct recorder *)wire;
    if (recorder->count < MAX_RECORDED && length > PAYLOAD_OFFSET) {
        recorder->sequence[recorder->count] = (uint32_t)frame[38] << 24 | (uint32_t)frame[39] << 16 |
                                              (uint32_t)frame[40] << 8 | frame[41];
        recorder->first_payload_byte[recorder->count] = frame[PAYLOAD_OFFSET];
    }
    recorder->count++;
}

/* One protected PVM: its machine, wire, output buffer and loop. */
struct rig {
    struct recorder wire;
    struct machine *pvm;
    struct output_buffer buffer;
    struct colo_primary primary;
    int fds[2];
};

static struct rig *rig_create_with(const struct output_compare_options *options)
{
    struct rig *rig = calloc(1, sizeof *rig);
    if (!rig)
        abort();
    rig->pvm = test_machine_create(&(struct test_machine_options){ .nic = true });
    test_wire_attach(rig->pvm, &rig->wire.wire, record_frame);
    struct error err = { 0 };
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, rig->fds) < 0 ||
        colo_primary_init(&rig->primary, rig->pvm, rig->fds[0], NULL, &err) < 0) {
        fprintf(stderr, "FAIL: rig: %s\n", err.message);
        exit(1);
    }
    output_buffer_init(&rig->buffer, rig->pvm, false);
    output_buffer_set_primary(&rig->buffer, &rig->primary, OUTPUT_DELAY_MS);
    if (output_buffer_set_compare(&rig->buffer, options, &err) < 0) {
        fprintf(stderr, "FAIL: set_compare: %s\n", err.message);
        exit(1);
    }
    if (output_buffer_primary_device.setup(&rig->buffer) != 0) {
        fprintf(stderr, "FAIL: setup\n");
        exit(1);
    }
    return rig;
}

static struct rig *rig_create(void)
{
    struct output_compare_options options;
    output_compare_options_defaults(&options);
    return rig_create_with(&options);
}

static void rig_destroy(struct rig *rig)
{
    output_buffer_destroy(&rig->buffer);
    colo_primary_destroy(&rig->primary);
    close(rig->fds[0]);
    close(rig->fds[1]);
    test_machine_destroy(rig->pvm);
    free(rig);
}

/* A TCP segment from the guest's server (10.0.0.2:80) to its client. */
static size_t tcp_frame(uint8_t *frame, uint32_t sequence, uint8_t flags, const char *payload)
{
    struct frame_spec spec = { .ip_version = 4,
                               .source_ip = { 10, 0, 0, 2 },
                               .destination_ip = { 10, 0, 0, 1 },
                               .protocol = 6,
                               .source_port = 80,
                               .destination_port = 40000,
                               .sequence = sequence,
                               .acknowledgment = 555,
                               .tcp_flags = flags,
                               .window = 65535 };
    return frame_build(frame, &spec, (const uint8_t *)payload, strlen(payload));
}

/* What the PVM's NIC does with a data segment it sends: call the hook. */
static void pvm_sends(struct rig *rig, uint32_t sequence, const char *payload)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    size_t length = tcp_frame(frame, sequence, PACKET_TCP_ACK | PACKET_TCP_PSH, payload);
    struct virtio_net_header header = { 0 };
    struct virtio_net *net = machine_nic(rig->pvm, 0);
    net->transmit_hook(net->transmit_hook_opaque, net, &header, frame, length);
}

/* The same segment as the SVM sent it, back on the mirror connection. */
static void svm_sends(struct rig *rig, uint32_t sequence, const char *payload)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    size_t length = tcp_frame(frame, sequence, PACKET_TCP_ACK | PACKET_TCP_PSH, payload);
    struct virtio_net_header header = { 0 };
    output_buffer_secondary_frame(&rig->buffer, 0, &header, frame, length);
}

/* The loop's part at a checkpoint's pause: a trigger served, the deadline
 * met, then the devices' postsuspend. */
/* The loop's trigger: it decides on a checkpoint (then the pre-copy
 * runs, the PVM still running, before the pause); by_output: held
 * output's deadline decided it. */
static void decide_checkpoint_by(struct rig *rig, bool by_output)
{
    pthread_mutex_lock(&rig->primary.lock);
    rig->primary.checkpoint_decided_us = clock_monotonic_us();
    rig->primary.checkpoint_decided_by_output = by_output;
    pthread_mutex_unlock(&rig->primary.lock);
}

static void decide_checkpoint(struct rig *rig)
{
    decide_checkpoint_by(rig, false);
}

/* The PVM's pause, for a checkpoint decided earlier. */
static void pause_decided_checkpoint(struct rig *rig)
{
    pthread_mutex_lock(&rig->primary.lock);
    rig->primary.checkpoint_requested = false;
    rig->primary.output_deadline_us = 0;
    pthread_mutex_unlock(&rig->primary.lock);
    CHECK(output_buffer_primary_device.postsuspend(&rig->buffer) == 0, "postsuspend");
}

static void pause_for_checkpoint(struct rig *rig)
{
    decide_checkpoint(rig);
    pause_decided_checkpoint(rig);
}

static bool checkpoint_requested(struct rig *rig)
{
    pthread_mutex_lock(&rig->primary.lock);
    bool requested = rig->primary.checkpoint_requested;
    pthread_mutex_unlock(&rig->primary.lock);
    return requested;
}

static uint64_t output_deadline_us(struct rig *rig)
{
    pthread_mutex_lock(&rig->primary.lock);
    uint64_t deadline_us = rig->primary.output_deadline_us;
    pthread_mutex_unlock(&rig->primary.lock);
    return deadline_us;
}

static struct output_buffer_stats stats_of(struct rig *rig)
{
    struct output_buffer_stats stats;
    output_buffer_get_stats(&rig->buffer, &stats);
    return stats;
}

static struct output_compare_counters counters_of(struct rig *rig)
{
    struct output_compare_counters counters;
    output_buffer_get_compare_counters(&rig->buffer, &counters);
    return counters;
}

/* The wire got exactly these segments (first payload bytes), in order. */
static void check_wire(const struct rig *rig, const char *what, const char *first_bytes, int line)
{
    unsigned count = (unsigned)strlen(first_bytes);
    CHECK_AT(line, rig->wire.count == count, "%s: %u frames sent, expected %u", what, rig->wire.count, count);
    for (unsigned i = 0; i < count && i < rig->wire.count; i++)
        CHECK_AT(line, rig->wire.first_payload_byte[i] == (uint8_t)first_bytes[i],
                 "%s: frame %u starts with '%c', expected '%c'", what, i, rig->wire.first_payload_byte[i],
                 first_bytes[i]);
}

#define CHECK_WIRE(rig, what, first_bytes) check_wire(rig, what, first_bytes, __LINE__)

/* 1. Before the SVM's first boundary its frames are not the PVM's epoch's. */
static void test_boundary_gating(void)
{
    struct rig *rig = rig_create();
    pvm_sends(rig, ISN, "hello");
    svm_sends(rig, ISN, "hello");
    struct output_buffer_stats stats = stats_of(rig);
    CHECK(stats.secondary_frames_stale == 1 && stats.secondary_frames_compared == 0,
          "before the boundary: %llu stale, %llu compared, expected 1 and 0",
          (unsigned long long)stats.secondary_frames_stale, (unsigned long long)stats.secondary_frames_compared);
    CHECK(stats.held_now == 1 && stats.released_matched == 0, "before the boundary: %llu held, %llu released",
          (unsigned long long)stats.held_now, (unsigned long long)stats.released_matched);
    CHECK_WIRE(rig, "an SVM frame before its boundary", "");

    output_buffer_secondary_boundary(&rig->buffer);
    clock_sleep_ms(30); /* the SVM is slow: its wait is counted */
    svm_sends(rig, ISN, "hello");
    CHECK_WIRE(rig, "the twin after the boundary", "h");
    stats = stats_of(rig);
    CHECK(stats.match_wait_p50_us >= 30000 && stats.match_wait_p50_us < 5000000 &&
              stats.match_wait_p99_us == stats.match_wait_p50_us,
          "the frame waited 30 ms and more for its twin; p50 %llu us, p99 %llu us",
          (unsigned long long)stats.match_wait_p50_us, (unsigned long long)stats.match_wait_p99_us);
    CHECK(stats.released_matched == 1 && stats.held_now == 0 && stats.secondary_frames_compared == 1,
          "after the twin: %llu released matched, %llu held, %llu compared, expected 1, 0, 1",
          (unsigned long long)stats.released_matched, (unsigned long long)stats.held_now,
          (unsigned long long)stats.secondary_frames_compared);
    CHECK(!checkpoint_requested(rig), "a match asked for a checkpoint");
    rig_destroy(rig);
}

/* 2. The SVM was quicker: the PVM's frame leaves in its own transmit. */
static void test_secondary_first(void)
{
    struct rig *rig = rig_create();
    output_buffer_secondary_boundary(&rig->buffer);
    svm_sends(rig, ISN, "hello");
    CHECK_WIRE(rig, "the SVM's frame alone", "");
    pvm_sends(rig, ISN, "hello");
    CHECK_WIRE(rig, "the PVM's frame after its twin", "h");
    struct output_buffer_stats stats = stats_of(rig);
    CHECK(stats.held_now == 0 && stats.released_matched == 1, "%llu held, %llu released matched",
          (unsigned long long)stats.held_now, (unsigned long long)stats.released_matched);
    CHECK(stats.match_wait_p99_us < 30000, "a frame whose twin was there waited %llu us",
          (unsigned long long)stats.match_wait_p99_us);
    CHECK(output_deadline_us(rig) == 0 && !checkpoint_requested(rig), "a matched frame left a deadline or request");
    rig_destroy(rig);
}

/* 3. The oldest frame without its twin sets the loop's output deadline. */
static void test_deadline(void)
{
    struct output_compare_options options;
    output_compare_options_defaults(&options);
    options.compare_timeout_ms = 40;
    struct rig *rig = rig_create_with(&options);
    output_buffer_secondary_boundary(&rig->buffer);
    uint64_t before_us = clock_monotonic_us();
    pvm_sends(rig, ISN, "hello");
    uint64_t after_us = clock_monotonic_us(), deadline_us = output_deadline_us(rig);
    CHECK(deadline_us >= before_us + 40000 && deadline_us <= after_us + 40000,
          "deadline %llu, expected within [%llu, %llu] (the frame's time + compare_timeout_ms)",
          (unsigned long long)deadline_us, (unsigned long long)(before_us + 40000),
          (unsigned long long)(after_us + 40000));
    CHECK(!checkpoint_requested(rig), "a frame without its twin yet asked for a checkpoint now");
    /* A second frame does not move the oldest one's deadline. */
    pvm_sends(rig, ISN + 5, "world");
    CHECK(output_deadline_us(rig) == deadline_us, "a younger frame moved the deadline");
    /* The oldest matched: the younger one's deadline. */
    svm_sends(rig, ISN, "hello");
    uint64_t second_us = output_deadline_us(rig);
    CHECK(second_us >= deadline_us && second_us <= clock_monotonic_us() + 40000,
          "after the oldest matched: deadline %llu, expected the younger frame's", (unsigned long long)second_us);
    svm_sends(rig, ISN + 5, "world");
    CHECK(output_deadline_us(rig) == 0, "everything matched: deadline %llu, expected 0",
          (unsigned long long)output_deadline_us(rig));
    CHECK_WIRE(rig, "both matched", "hw");
    /* A frame sent before the SVM runs the latest checkpoint (the PVM
     * resumed before SVM_READY) has no deadline until the SVM's boundary
     * says it runs; then its time starts. */
    pause_for_checkpoint(rig);
    output_buffer_primary_device.release(&rig->buffer);
    pvm_sends(rig, ISN + 10, "early");
    CHECK(output_deadline_us(rig) == 0, "a deadline %llu while the SVM had not resumed",
          (unsigned long long)output_deadline_us(rig));
    uint64_t boundary_us = clock_monotonic_us();
    output_buffer_secondary_boundary(&rig->buffer);
    deadline_us = output_deadline_us(rig);
    CHECK(deadline_us >= boundary_us + 40000 && deadline_us <= clock_monotonic_us() + 40000,
          "after the boundary: deadline %llu, expected the boundary's time + compare_timeout_ms",
          (unsigned long long)deadline_us);
    rig_destroy(rig);
}

/* 4. A difference asks for a checkpoint; the frame waits for it. */
static void test_difference(void)
{
    struct rig *rig = rig_create();
    output_buffer_secondary_boundary(&rig->buffer);
    pvm_sends(rig, ISN, "hello");
    CHECK(!checkpoint_requested(rig), "a frame without its twin asked for a checkpoint");
    svm_sends(rig, ISN, "jello");
    CHECK(checkpoint_requested(rig), "a difference did not ask for a checkpoint");
    CHECK_WIRE(rig, "a frame that differs", "");
    CHECK(stats_of(rig).held_now == 1, "the frame that differs is not held");
    pause_for_checkpoint(rig);
    CHECK_WIRE(rig, "at the pause", "");
    output_buffer_primary_device.release(&rig->buffer);
    CHECK_WIRE(rig, "the checkpoint's release", "h");
    struct output_buffer_stats stats = stats_of(rig);
    CHECK(stats.checkpoints_by_difference == 1 && stats.released_matched == 0 && stats.held_now == 0,
          "%llu checkpoints by difference, %llu released matched, %llu held; expected 1, 0, 0",
          (unsigned long long)stats.checkpoints_by_difference, (unsigned long long)stats.released_matched,
          (unsigned long long)stats.held_now);
    struct output_compare_counters counters = counters_of(rig);
    CHECK(counters.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD] == 1 &&
              counters.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT] == 0,
          "%llu payload differences, %llu timeouts; expected 1, 0",
          (unsigned long long)counters.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD],
          (unsigned long long)counters.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT]);
    rig_destroy(rig);
}

/* 5. The SVM's frames after a pause are of the old epoch until its next
 * boundary; a PVM frame sent after the pause that matched waits for the
 * checkpoint's own frames. */
static void test_epochs(void)
{
    struct rig *rig = rig_create();
    output_buffer_secondary_boundary(&rig->buffer);
    pvm_sends(rig, ISN, "aaaaa"); /* no twin: this checkpoint lets it out */
    pause_for_checkpoint(rig);
    /* The SVM's late output of the epoch just checkpointed. */
    svm_sends(rig, ISN, "aaaaa");
    struct output_buffer_stats stats = stats_of(rig);
    CHECK(stats.secondary_frames_stale == 1 && stats.secondary_frames_compared == 0,
          "after the pause: %llu stale, %llu compared; expected 1, 0", (unsigned long long)stats.secondary_frames_stale,
          (unsigned long long)stats.secondary_frames_compared);
    CHECK_WIRE(rig, "an old epoch's twin", "");

    /* The PVM resumed before the SVM was ready; the SVM, rebuilt, says so
     * and sends the same. */
    pvm_sends(rig, ISN + 5, "bbbbb");
    output_buffer_secondary_boundary(&rig->buffer);
    svm_sends(rig, ISN + 5, "bbbbb");
    stats = stats_of(rig);
    CHECK(stats.secondary_frames_compared == 1, "%llu SVM frames compared after the boundary, expected 1",
          (unsigned long long)stats.secondary_frames_compared);
    CHECK_WIRE(rig, "a matched frame before the checkpoint's release", "");
    CHECK(stats.held_now == 2, "%llu held before the release, expected 2", (unsigned long long)stats.held_now);

    output_buffer_primary_device.release(&rig->buffer);
    CHECK_WIRE(rig, "the release: the checkpoint's frame, then the matched one", "ab");
    stats = stats_of(rig);
    CHECK(stats.held_now == 0 && stats.released_matched == 1, "after the release: %llu held, %llu released matched",
          (unsigned long long)stats.held_now, (unsigned long long)stats.released_matched);
    CHECK(!checkpoint_requested(rig) && stats.checkpoints_by_difference == 0, "an epoch change counted a difference");
    rig_destroy(rig);
}

/* 6. A frame that never got its twin in time: a timeout difference. */
static void test_timeout_counted(void)
{
    struct output_compare_options options;
    output_compare_options_defaults(&options);
    options.compare_timeout_ms = 0;
    struct rig *rig = rig_create_with(&options);
    output_buffer_secondary_boundary(&rig->buffer);
    pvm_sends(rig, ISN, "hello");
    CHECK(output_deadline_us(rig) != 0, "a frame without its twin set no deadline");
    pause_for_checkpoint(rig);
    struct output_compare_counters counters = counters_of(rig);
    CHECK(counters.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT] == 1, "%llu timeouts at the pause, expected 1",
          (unsigned long long)counters.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT]);
    CHECK(stats_of(rig).checkpoints_by_difference == 1, "%llu checkpoints by difference, expected 1",
          (unsigned long long)stats_of(rig).checkpoints_by_difference);
    output_buffer_primary_device.release(&rig->buffer);
    CHECK_WIRE(rig, "released by the checkpoint", "h");
    /* A matched epoch counts nothing. */
    output_buffer_secondary_boundary(&rig->buffer);
    pvm_sends(rig, ISN + 5, "world");
    svm_sends(rig, ISN + 5, "world");
    pause_for_checkpoint(rig);
    output_buffer_primary_device.release(&rig->buffer);
    CHECK(counters_of(rig).differences[OUTPUT_COMPARE_CAUSE_TIMEOUT] == 1 &&
              stats_of(rig).checkpoints_by_difference == 1,
          "an epoch without a waiting frame counted a timeout");
    CHECK_WIRE(rig, "both", "hw");
    /* A frame sent after the loop decided on a checkpoint (the pre-copy:
     * the SVM suspended, no twin can come) did not ask for it: its time
     * running out by the pause is no timeout. */
    output_buffer_secondary_boundary(&rig->buffer);
    decide_checkpoint(rig);
    clock_sleep_ms(2);
    pvm_sends(rig, ISN + 10, "late!");
    clock_sleep_ms(2);
    pause_decided_checkpoint(rig);
    output_buffer_primary_device.release(&rig->buffer);
    CHECK(counters_of(rig).differences[OUTPUT_COMPARE_CAUSE_TIMEOUT] == 1 &&
              stats_of(rig).checkpoints_by_difference == 1,
          "a frame held during the pre-copy counted a timeout: %llu timeouts, %llu checkpoints by difference "
          "(expected 1, 1)",
          (unsigned long long)counters_of(rig).differences[OUTPUT_COMPARE_CAUSE_TIMEOUT],
          (unsigned long long)stats_of(rig).checkpoints_by_difference);
    CHECK_WIRE(rig, "released by the checkpoint", "hwl");
    /* A checkpoint the output deadline decided is the timeout's, even if
     * the twin came in the pre-copy (the SVM had not read CHECKPOINT_NEW
     * yet): it left by the match, and the checkpoint still happened. */
    output_buffer_secondary_boundary(&rig->buffer);
    pvm_sends(rig, ISN + 15, "again");
    decide_checkpoint_by(rig, true);
    svm_sends(rig, ISN + 15, "again");
    CHECK_WIRE(rig, "the late twin's match", "hwla");
    pause_decided_checkpoint(rig);
    output_buffer_primary_device.release(&rig->buffer);
    CHECK(counters_of(rig).differences[OUTPUT_COMPARE_CAUSE_TIMEOUT] == 2 &&
              stats_of(rig).checkpoints_by_difference == 2,
          "a checkpoint decided by the output deadline: %llu timeouts, %llu checkpoints by difference (expected 2, 2)",
          (unsigned long long)counters_of(rig).differences[OUTPUT_COMPARE_CAUSE_TIMEOUT],
          (unsigned long long)stats_of(rig).checkpoints_by_difference);
    rig_destroy(rig);
}

/* One epoch whose frame differs, then its checkpoint. */
static void epoch_with_difference(struct rig *rig, uint32_t sequence)
{
    output_buffer_secondary_boundary(&rig->buffer);
    pvm_sends(rig, sequence, "hello");
    svm_sends(rig, sequence, "jello");
    CHECK(checkpoint_requested(rig), "a difference did not ask for a checkpoint");
    pause_for_checkpoint(rig);
    output_buffer_primary_device.release(&rig->buffer);
}

/* 7. A storm of checkpoints by difference falls back to buffered output,
 * and compares again once fallback_ms passed. */
static void test_storm(unsigned fallback_ms)
{
    struct output_compare_options options;
    output_compare_options_defaults(&options);
    options.storm_checkpoints = 3;
    options.storm_window_ms = 60000;
    options.fallback_ms = fallback_ms;
    struct rig *rig = rig_create_with(&options);
    enum output_mode mode;
    char reason[160];

    epoch_with_difference(rig, ISN);
    epoch_with_difference(rig, ISN + 5);
    struct output_buffer_stats stats = stats_of(rig);
    CHECK(stats.mode_now == OUTPUT_MODE_COMPARE && stats.storms == 0, "fallback %u: a storm after 2 checkpoints",
          fallback_ms);
    CHECK(!output_buffer_take_mode_change(&rig->buffer, &mode, reason, sizeof reason),
          "fallback %u: a mode change before the storm", fallback_ms);
    epoch_with_difference(rig, ISN + 10);
    stats = stats_of(rig);
    CHECK(stats.checkpoints_by_difference == 3 && stats.storms == 1 && stats.mode_now == OUTPUT_MODE_BUFFERED,
          "fallback %u: %llu checkpoints by difference, %llu storms, mode %s; expected 3, 1, buffered", fallback_ms,
          (unsigned long long)stats.checkpoints_by_difference, (unsigned long long)stats.storms,
          output_mode_name(stats.mode_now));
    bool changed = output_buffer_take_mode_change(&rig->buffer, &mode, reason, sizeof reason);
    CHECK(changed && mode == OUTPUT_MODE_BUFFERED && strstr(reason, "storm"),
          "fallback %u: mode change %d to %s (\"%s\"), expected buffered for a storm", fallback_ms, changed,
          output_mode_name(mode), reason);
    CHECK(!output_buffer_take_mode_change(&rig->buffer, &mode, reason, sizeof reason),
          "fallback %u: the storm's mode change taken twice", fallback_ms);
    CHECK_WIRE(rig, "the three checkpoints' releases", "hhh");

    /* Fallen back: held until the checkpoint, which it asks for within
     * output_delay_ms; the SVM's twin changes nothing. */
    output_buffer_secondary_boundary(&rig->buffer);
    uint64_t before_us = clock_monotonic_us();
    pvm_sends(rig, ISN + 15, "fresh");
    uint64_t after_us = clock_monotonic_us(), deadline_us = output_deadline_us(rig);
    CHECK(deadline_us >= before_us + OUTPUT_DELAY_MS * 1000 && deadline_us <= after_us + OUTPUT_DELAY_MS * 1000,
          "fallback %u: deadline %llu, expected output_delay_ms after the frame", fallback_ms,
          (unsigned long long)deadline_us);
    uint64_t compared = stats_of(rig).secondary_frames_compared;
    svm_sends(rig, ISN + 15, "fresh");
    stats = stats_of(rig);
    CHECK(stats.secondary_frames_compared == compared && stats.held_now == 1 && stats.released_matched == 0,
          "fallback %u: an SVM frame was compared (%llu -> %llu) or let the frame out (%llu held)", fallback_ms,
          (unsigned long long)compared, (unsigned long long)stats.secondary_frames_compared,
          (unsigned long long)stats.held_now);
    CHECK_WIRE(rig, "fallen back, before the checkpoint", "hhh");
    CHECK(!checkpoint_requested(rig), "fallback %u: buffered output asked for a checkpoint now", fallback_ms);

    /* The fallback's time passes: the next pause compares again. */
    if (fallback_ms > 0) {
        uint64_t until_us = clock_monotonic_us() + (uint64_t)fallback_ms * 1000u;
        while (clock_monotonic_us() <= until_us) {
        }
    }
    pause_for_checkpoint(rig);
    output_buffer_primary_device.release(&rig->buffer);
    CHECK_WIRE(rig, "fallen back, the checkpoint", "hhhf");
    changed = output_buffer_take_mode_change(&rig->buffer, &mode, reason, sizeof reason);
    CHECK(changed && mode == OUTPUT_MODE_COMPARE && stats_of(rig).mode_now == OUTPUT_MODE_COMPARE,
          "fallback %u: after the fallback: change %d to %s (\"%s\"), expected compare", fallback_ms, changed,
          output_mode_name(mode), reason);
    output_buffer_secondary_boundary(&rig->buffer);
    pvm_sends(rig, ISN + 20, "again");
    svm_sends(rig, ISN + 20, "again");
    CHECK_WIRE(rig, "comparing again", "hhhfa");
    CHECK(stats_of(rig).released_matched == 1, "fallback %u: comparing again did not release the match", fallback_ms);
    rig_destroy(rig);
}

/* 7b. Checkpoints forced as fast, but between them most frames match (a
 * bulk transfer whose timing differs now and then): no storm, comparing
 * goes on; at three times the storm's count it storms all the same. */
static void test_no_storm_while_most_match(void)
{
    struct output_compare_options options;
    output_compare_options_defaults(&options);
    options.storm_checkpoints = 3;
    options.storm_window_ms = 60000;
    struct rig *rig = rig_create_with(&options);
    uint32_t sequence = ISN;
    for (int epoch = 0; epoch < 8; epoch++) {
        output_buffer_secondary_boundary(&rig->buffer);
        for (int frame = 0; frame < 3; frame++, sequence += 5) {
            pvm_sends(rig, sequence, "hello");
            svm_sends(rig, sequence, "hello");
        }
        pvm_sends(rig, sequence, "hello");
        svm_sends(rig, sequence, "jello");
        sequence += 5;
        CHECK(checkpoint_requested(rig), "epoch %d: the difference did not ask for a checkpoint", epoch);
        pause_for_checkpoint(rig);
        output_buffer_primary_device.release(&rig->buffer);
    }
    struct output_buffer_stats stats = stats_of(rig);
    CHECK(stats.checkpoints_by_difference == 8 && stats.storms == 0 && stats.mode_now == OUTPUT_MODE_COMPARE &&
              stats.released_matched == 24,
          "%llu checkpoints by difference, %llu storms, mode %s, %llu matched; expected 8, 0, compare, 24",
          (unsigned long long)stats.checkpoints_by_difference, (unsigned long long)stats.storms,
          output_mode_name(stats.mode_now), (unsigned long long)stats.released_matched);
    /* The ninth, three times the storm's count: a storm. */
    output_buffer_secondary_boundary(&rig->buffer);
    pvm_sends(rig, sequence, "hello");
    svm_sends(rig, sequence, "jello");
    pause_for_checkpoint(rig);
    output_buffer_primary_device.release(&rig->buffer);
    stats = stats_of(rig);
    CHECK(stats.checkpoints_by_difference == 9 && stats.storms == 1 && stats.mode_now == OUTPUT_MODE_BUFFERED,
          "at 9 checkpoints by difference: %llu storms, mode %s; expected 1, buffered",
          (unsigned long long)stats.storms, output_mode_name(stats.mode_now));
    rig_destroy(rig);
}

/* 8. Buffered mode: only checkpoints let frames out. */
static void test_buffered_mode(void)
{
    struct output_compare_options options;
    output_compare_options_defaults(&options);
    options.mode = OUTPUT_MODE_BUFFERED;
    struct rig *rig = rig_create_with(&options);
    CHECK(stats_of(rig).mode_now == OUTPUT_MODE_BUFFERED, "mode %s, expected buffered",
          output_mode_name(stats_of(rig).mode_now));
    output_buffer_secondary_boundary(&rig->buffer);
    pvm_sends(rig, ISN, "hello");
    CHECK(output_deadline_us(rig) != 0, "a held frame set no deadline");
    svm_sends(rig, ISN, "hello");
    svm_sends(rig, ISN + 5, "other");
    struct output_buffer_stats stats = stats_of(rig);
    CHECK(stats.secondary_frames_compared == 0 && stats.secondary_frames_stale == 0 && stats.held_now == 1 &&
              stats.released_matched == 0 && !checkpoint_requested(rig),
          "buffered: the SVM's frames changed something (%llu compared, %llu held)",
          (unsigned long long)stats.secondary_frames_compared, (unsigned long long)stats.held_now);
    CHECK_WIRE(rig, "buffered, before the checkpoint", "");
    pause_for_checkpoint(rig);
    CHECK_WIRE(rig, "buffered, at the pause", "");
    output_buffer_primary_device.release(&rig->buffer);
    CHECK_WIRE(rig, "buffered, the release", "h");
    struct output_compare_counters counters = counters_of(rig);
    CHECK(counters.primary_frames == 0 && counters.secondary_frames == 0, "buffered mode used the comparator");
    rig_destroy(rig);
}

static bool gate_open;

static bool gate(void *opaque)
{
    (void)opaque;
    return gate_open;
}

/* 9. A matched frame stays held while the release gate says no. */
static void test_release_gate(void)
{
    struct rig *rig = rig_create();
    gate_open = false;
    output_buffer_set_release_gate(&rig->buffer, gate, NULL);
    output_buffer_secondary_boundary(&rig->buffer);
    pvm_sends(rig, ISN, "hello");
    svm_sends(rig, ISN, "hello");
    struct output_buffer_stats stats = stats_of(rig);
    CHECK(stats.releases_refused == 1 && stats.held_now == 1 && stats.released_matched == 0,
          "gate closed: %llu refused, %llu held, %llu released matched; expected 1, 1, 0",
          (unsigned long long)stats.releases_refused, (unsigned long long)stats.held_now,
          (unsigned long long)stats.released_matched);
    CHECK_WIRE(rig, "gate closed", "");
    /* Once it agrees, the checkpoint lets the frame out. */
    gate_open = true;
    pause_for_checkpoint(rig);
    output_buffer_primary_device.release(&rig->buffer);
    CHECK_WIRE(rig, "gate open, the checkpoint", "h");
    CHECK(stats_of(rig).held_now == 0, "held after the release");
    rig_destroy(rig);
}

/* 10. A pure ACK has no payload to compare, but it acknowledges the
 * client's bytes: it leaves once the SVM acknowledged as much. */
static void svm_acks(struct rig *rig, uint32_t sequence)
{
    uint8_t frame[FRAME_BUILDER_MAX];
    size_t length = tcp_frame(frame, sequence, PACKET_TCP_ACK, "");
    struct virtio_net_header header = { 0 };
    output_buffer_secondary_frame(&rig->buffer, 0, &header, frame, length);
}

static void test_pure_ack(void)
{
    struct rig *rig = rig_create();
    output_buffer_secondary_boundary(&rig->buffer);
    uint8_t frame[FRAME_BUILDER_MAX];
    size_t length = tcp_frame(frame, ISN, PACKET_TCP_ACK, "");
    struct virtio_net_header header = { 0 };
    struct virtio_net *net = machine_nic(rig->pvm, 0);
    net->transmit_hook(net->transmit_hook_opaque, net, &header, frame, length);
    CHECK(rig->wire.count == 0 && stats_of(rig).held_now == 1 && output_deadline_us(rig) != 0,
          "a pure ACK before the SVM's: %u frames sent, expected 0", rig->wire.count);
    svm_acks(rig, ISN);
    CHECK(rig->wire.count == 1 && rig->wire.sequence[0] == ISN, "after the SVM's ACK: %u frames sent, expected 1",
          rig->wire.count);
    struct output_buffer_stats stats = stats_of(rig);
    CHECK(stats.held_now == 0 && output_deadline_us(rig) == 0 && !checkpoint_requested(rig),
          "a pure ACK: %llu held, deadline %llu", (unsigned long long)stats.held_now,
          (unsigned long long)output_deadline_us(rig));
    CHECK(stats.released_matched == 1, "released matched: %llu, expected 1",
          (unsigned long long)stats.released_matched);
    /* The next one the SVM already covered leaves at once. */
    net->transmit_hook(net->transmit_hook_opaque, net, &header, frame, length);
    CHECK(rig->wire.count == 2, "a pure ACK the SVM already covered: %u frames sent, expected 2", rig->wire.count);
    /* A data segment still waits for its twin. */
    pvm_sends(rig, ISN, "hello");
    CHECK(rig->wire.count == 2 && stats_of(rig).held_now == 1, "a data segment left without its twin");
    rig_destroy(rig);
}

int main(void)
{
    test_boundary_gating();
    test_secondary_first();
    test_deadline();
    test_difference();
    test_epochs();
    test_timeout_counted();
    test_storm(5);
    test_storm(0);
    test_no_storm_while_most_match();
    test_buffered_mode();
    test_release_gate();
    test_pure_ack();
    return test_check_finish("output_compare_mode_test");
}
