/* The VM's network output while it is replicated (output_buffer.h). */
#include "output_buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "colo_primary.h"
#include "machine.h"
#include "mirror_reader.h"
#include "percentile.h"
#include "stream.h"

#define SHIFT_CONNECTIONS_MAX 4096

const char *output_mode_name(enum output_mode mode)
{
    return mode == OUTPUT_MODE_COMPARE ? "compare" : "buffered";
}

void output_compare_options_defaults(struct output_compare_options *options)
{
    *options = (struct output_compare_options){
        .mode = OUTPUT_MODE_COMPARE,
        .compare_timeout_ms = OUTPUT_COMPARE_DEFAULT_TIMEOUT_MS,
        .storm_checkpoints = OUTPUT_STORM_CHECKPOINTS,
        .storm_window_ms = OUTPUT_STORM_WINDOW_MS,
        .fallback_ms = OUTPUT_FALLBACK_MS,
    };
}

static bool checksum_partial(const struct virtio_net_header *header)
{
    return header->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;
}

void held_frames_send_and_free(struct held_frame *frames, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        virtio_net_transmit_to_backend(NULL, frames[i].net, &frames[i].header, frames[i].data, frames[i].length);
        free(frames[i].data);
    }
}

static void compare_primary_frame_locked(struct output_buffer *buffer, struct held_frame *frame);

/* Machine thread: every frame the guest sends. */
static void transmit_frame(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                           const uint8_t *frame, size_t length)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    if (buffer->muted) {
        buffer->stats.dropped_muted++;
    } else if (!buffer->holding) {
        /* A secondary that took over keeps its connections in the
         * client's sequence space. */
        if (buffer->shift && buffer->shift_scratch && length <= VIRTIO_NET_MAX_FRAME) {
            memcpy(buffer->shift_scratch, frame, length);
            tcp_sequence_shift_outbound(buffer->shift, buffer->shift_scratch, length, checksum_partial(header));
            frame = buffer->shift_scratch;
        }
        virtio_net_transmit_to_backend(NULL, net, header, frame, length);
    } else {
        uint8_t *copy = buffer->held_count < OUTPUT_HELD_FRAMES_MAX &&
                                buffer->held_bytes + length <= OUTPUT_HELD_BYTES_MAX
                            ? malloc(length)
                            : NULL;
        if (copy) {
            memcpy(copy, frame, length);
            if (buffer->shift)
                tcp_sequence_shift_outbound(buffer->shift, copy, length, checksum_partial(header));
            /* A secondary: the primary compares what the SVM said. */
            if (buffer->return_to) {
                int nic = machine_nic_index(buffer->machine, net);
                mirror_reader_return_frame(buffer->return_to, nic < 0 ? 0 : (unsigned)nic, header, copy, length);
            }
            struct held_frame *held = &buffer->held[buffer->held_count++];
            *held = (struct held_frame){ .net = net,
                                         .header = *header,
                                         .length = length,
                                         .data = copy,
                                         .handle = OUTPUT_COMPARE_HANDLE_NONE,
                                         .held_at_us = clock_monotonic_us() };
            buffer->held_bytes += length;
            buffer->stats.held_total++;
            if (buffer->primary && buffer->comparing) {
                compare_primary_frame_locked(buffer, held);
            } else if (buffer->held_count == buffer->checkpoint_frames + 1 && buffer->primary) {
                /* The first frame held since the last checkpoint's pause:
                 * it may wait at most output_delay_ms for the checkpoint
                 * that lets it out. */
                colo_primary_request_checkpoint_within(buffer->primary, buffer->output_delay_ms);
            }
        } else {
            buffer->stats.dropped_full++;
        }
    }
    pthread_mutex_unlock(&buffer->lock);
}

/* Lock held: the first `count` held frames leave, the others move up
 * (no gate: the end of protection, or a secondary's failover). Sends to
 * the backends are serialized by the lock (the machine thread's
 * hook takes it too); the TAP's send keeps no state, and the NIC's error
 * count is atomic, so the machine may run meanwhile. */
static size_t release_first_locked(struct output_buffer *buffer, size_t count)
{
    size_t bytes = 0;
    for (size_t i = 0; i < count; i++)
        bytes += buffer->held[i].length;
    held_frames_send_and_free(buffer->held, count);
    memmove(buffer->held, buffer->held + count, (buffer->held_count - count) * sizeof buffer->held[0]);
    buffer->stats.released_total += count;
    buffer->held_count -= count;
    buffer->held_bytes -= bytes;
    buffer->checkpoint_frames = 0;
    return count;
}

/* Lock held, a primary: whether the next frame may leave. Asked right
 * before each frame, not once per batch: a freeze of this process
 * (SIGSTOP, a hung host) between the question and the write would let
 * out frames the cluster has meanwhile given to the other copy, and a
 * batch's writes take long enough for a freeze to land among them. */
static bool may_release_now_locked(struct output_buffer *buffer)
{
    return !buffer->muted && (!buffer->may_release || buffer->may_release(buffer->may_release_opaque));
}

/* Lock held: the checkpoint's own frames leave, each as the gate allows;
 * at a refusal the rest stay held (they leave with a later release once
 * the gate agrees, or never). */
static void release_checkpoint_locked(struct output_buffer *buffer)
{
    size_t sent = 0, bytes = 0;
    while (sent < buffer->checkpoint_frames) {
        if (!may_release_now_locked(buffer)) {
            buffer->stats.releases_refused++;
            break;
        }
        bytes += buffer->held[sent].length;
        held_frames_send_and_free(&buffer->held[sent], 1);
        sent++;
    }
    memmove(buffer->held, buffer->held + sent, (buffer->held_count - sent) * sizeof buffer->held[0]);
    buffer->stats.released_total += sent;
    buffer->held_count -= sent;
    buffer->held_bytes -= bytes;
    buffer->checkpoint_frames -= sent;
}

/* ---- the primary's comparing (compare mode) ---- */

/* Lock held: the frames the comparator released are marked; they leave
 * now unless a checkpoint's own frames wait for its SVM_READY (those go
 * first: the order of one flow is kept) or the release gate says no
 * (they leave with a later release). */
static void release_matched_locked(struct output_buffer *buffer)
{
    uint64_t handle;
    while (output_compare_take_releasable(&buffer->compare, &handle)) {
        for (size_t i = buffer->checkpoint_frames; i < buffer->held_count; i++) {
            if (buffer->held[i].handle == handle) {
                buffer->held[i].matched = true;
                break;
            }
        }
    }
    if (buffer->checkpoint_frames > 0)
        return;
    bool any = false;
    for (size_t i = 0; i < buffer->held_count && !any; i++)
        any = buffer->held[i].matched;
    if (!any)
        return;
    size_t kept = 0;
    bool refused = false;
    for (size_t i = 0; i < buffer->held_count; i++) {
        struct held_frame *frame = &buffer->held[i];
        if (frame->matched && !refused && !may_release_now_locked(buffer)) {
            buffer->stats.releases_refused++;
            refused = true;
        }
        if (frame->matched && !refused) {
            uint64_t now_us = clock_monotonic_us();
            buffer->match_waits_us[buffer->match_waits++ % OUTPUT_MATCH_WAIT_HISTORY] = now_us > frame->held_at_us
                                                                                            ? now_us - frame->held_at_us
                                                                                            : 0;
            buffer->held_bytes -= frame->length;
            buffer->stats.released_total++;
            buffer->stats.released_matched++;
            held_frames_send_and_free(frame, 1);
        } else {
            buffer->held[kept++] = *frame;
        }
    }
    buffer->held_count = kept;
}

/* Lock held: the deadline of the oldest PVM frame without its twin. The
 * SVM cannot answer before it runs the latest checkpoint (its
 * boundary says so): a frame's time to find its twin starts then, or a
 * PVM that resumed before SVM_READY would time out on every reply of a
 * secondary still applying, and force checkpoint after checkpoint. Until
 * that boundary comes, no deadline: the interval bounds the wait. */
static bool compare_deadline_locked(struct output_buffer *buffer, uint64_t *deadline_us)
{
    uint64_t added_us;
    if (!buffer->comparing || buffer->boundaries_heard != buffer->epochs_expected ||
        !output_compare_oldest_unmatched_us(&buffer->compare, &added_us))
        return false;
    if (added_us < buffer->svm_epoch_started_us)
        added_us = buffer->svm_epoch_started_us;
    *deadline_us = added_us + (uint64_t)buffer->compare_options.compare_timeout_ms * 1000u;
    return true;
}

static void update_deadline_locked(struct output_buffer *buffer)
{
    uint64_t deadline_us = 0;
    compare_deadline_locked(buffer, &deadline_us);
    if (deadline_us != buffer->deadline_us) {
        buffer->deadline_us = deadline_us;
        colo_primary_set_output_deadline(buffer->primary, deadline_us);
    }
}

static void after_compare_locked(struct output_buffer *buffer, const struct output_compare_result *result)
{
    if (result->difference && !buffer->difference_seen) {
        buffer->difference_seen = true;
        colo_primary_request_checkpoint(buffer->primary);
    }
    if (result->releasable)
        release_matched_locked(buffer);
    update_deadline_locked(buffer);
}

static void compare_primary_frame_locked(struct output_buffer *buffer, struct held_frame *frame)
{
    uint64_t now_us = clock_monotonic_us();
    compare_capture_frame(&buffer->capture, OUTPUT_COMPARE_PRIMARY, now_us, frame->data, frame->length);
    struct output_compare_result result = output_compare_add_primary(&buffer->compare, frame->data, frame->length,
                                                                     now_us, &frame->handle);
    after_compare_locked(buffer, &result);
}

void output_buffer_secondary_frame(void *opaque, unsigned nic, const struct virtio_net_header *header,
                                   const uint8_t *frame, size_t length)
{
    (void)nic;
    (void)header;
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    if (buffer->primary && buffer->compare_ready && buffer->holding) {
        if (buffer->boundaries_heard != buffer->epochs_expected) {
            buffer->stats.secondary_frames_stale++;
        } else if (buffer->comparing) {
            buffer->stats.secondary_frames_compared++;
            uint64_t now_us = clock_monotonic_us();
            compare_capture_frame(&buffer->capture, OUTPUT_COMPARE_SECONDARY, now_us, frame, length);
            struct output_compare_result result = output_compare_add_secondary(&buffer->compare, frame, length, now_us);
            after_compare_locked(buffer, &result);
        }
    }
    pthread_mutex_unlock(&buffer->lock);
}

void output_buffer_secondary_boundary(void *opaque)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    buffer->boundaries_heard++;
    if (buffer->boundaries_heard == buffer->epochs_expected) {
        buffer->svm_epoch_started_us = clock_monotonic_us();
        if (buffer->primary && buffer->holding)
            update_deadline_locked(buffer);
    }
    pthread_mutex_unlock(&buffer->lock);
}

static void set_mode_locked(struct output_buffer *buffer, bool comparing, const char *reason)
{
    buffer->comparing = comparing;
    buffer->stats.mode_now = comparing ? OUTPUT_MODE_COMPARE : OUTPUT_MODE_BUFFERED;
    snprintf(buffer->mode_reason, sizeof buffer->mode_reason, "%s", reason);
    buffer->mode_changed = true;
}

/* A storm while most frames match needs this many times the checkpoints. */
#define STORM_MATCHING_FACTOR 3u

/* Lock held: whether the last `count` checkpoints forced by differences
 * (the newest just recorded) all fell within the storm window. */
static bool forced_within_window_locked(const struct output_buffer *buffer, unsigned count, uint64_t now_us)
{
    if (count == 0 || count > OUTPUT_STORM_RING || buffer->storm_next < count)
        return false;
    uint64_t oldest_us = buffer->storm_times_us[(buffer->storm_next - count) % OUTPUT_STORM_RING];
    return now_us - oldest_us <= (uint64_t)buffer->compare_options.storm_window_ms * 1000u;
}

/* Lock held, the PVM paused for a checkpoint (compare mode): the epoch
 * ends; a checkpoint a difference asked for counts toward a storm. A frame
 * that waited too long asked for it if the output deadline decided it
 * (even if the twin came during the pre-copy), or if its time ran out
 * before the loop decided on it. A frame whose time ran out after the
 * decision did not: from then on the PVM runs the pre-copy with the SVM
 * suspended, and no twin can come. */
static void end_epoch_locked(struct output_buffer *buffer)
{
    const struct output_compare_options *options = &buffer->compare_options;
    uint64_t now_us = clock_monotonic_us(), deadline_us;
    bool by_output = false;
    uint64_t decided_us = buffer->primary ? colo_primary_checkpoint_decided_us(buffer->primary, &by_output) : 0;
    if (decided_us == 0 || decided_us > now_us)
        decided_us = now_us;
    bool storm = false;
    if (buffer->comparing) {
        bool timeout = false;
        bool waited = compare_deadline_locked(buffer, &deadline_us) && deadline_us <= decided_us;
        if (!buffer->difference_seen && (by_output || waited)) {
            output_compare_note_timeout(&buffer->compare, now_us);
            buffer->difference_seen = timeout = true;
        }
        if (buffer->capture.file) {
            struct output_compare_counters counters;
            output_compare_get_counters(&buffer->compare, &counters, NULL, NULL);
            compare_capture_epoch_end(&buffer->capture, now_us, timeout, &counters);
        }
        output_compare_reset(&buffer->compare);
    }
    buffer->epochs_expected++;
    if (buffer->comparing) {
        for (size_t i = 0; i < buffer->held_count; i++) {
            buffer->held[i].handle = OUTPUT_COMPARE_HANDLE_NONE;
            buffer->held[i].matched = false; /* this checkpoint lets it out */
        }
    }
    /* The loop cleared its deadline at the pause; a frame matched since
     * (the watch thread) may have set one for a frame this checkpoint
     * releases anyway. */
    buffer->deadline_us = 0;
    if (buffer->primary)
        colo_primary_set_output_deadline(buffer->primary, 0);
    if (buffer->difference_seen) {
        buffer->stats.checkpoints_by_difference++;
        unsigned count = options->storm_checkpoints;
        unsigned at = buffer->storm_next++ % OUTPUT_STORM_RING;
        buffer->storm_times_us[at] = now_us;
        buffer->storm_released[at] = buffer->stats.released_total;
        buffer->storm_matched[at] = buffer->stats.released_matched;
        unsigned first = (buffer->storm_next - count) % OUTPUT_STORM_RING;
        uint64_t released = buffer->stats.released_total - buffer->storm_released[first];
        uint64_t matched = buffer->stats.released_matched - buffer->storm_matched[first];
        /* Most frames matching keeps comparing, but not at any rate: at
         * STORM_MATCHING_FACTOR times the bound the checkpoints cost more
         * than comparing saves. */
        bool too_many = (forced_within_window_locked(buffer, count, now_us) && 2 * matched < released) ||
                        forced_within_window_locked(buffer, STORM_MATCHING_FACTOR * count, now_us);
        if (buffer->comparing && too_many) {
            char reason[160];
            snprintf(reason, sizeof reason,
                     "checkpoint storm: %u forced in %u ms, %llu of %llu frames matched; output per checkpoint "
                     "for %u ms",
                     count, options->storm_window_ms, (unsigned long long)matched, (unsigned long long)released,
                     options->fallback_ms);
            set_mode_locked(buffer, false, reason);
            buffer->stats.storms++;
            buffer->fallback_until_us = now_us + (uint64_t)options->fallback_ms * 1000u;
            buffer->storm_next = 0;
            storm = true;
        }
    }
    buffer->difference_seen = false;
    /* Not at the storm's own pause (fallback_ms 0): the next checkpoint
     * is released buffered, and the storm's mode change is not overwritten
     * before the loop took it. */
    if (!storm && !buffer->comparing && options->mode == OUTPUT_MODE_COMPARE && now_us >= buffer->fallback_until_us) {
        char reason[160];
        snprintf(reason, sizeof reason, "comparing again after %u ms of releasing output per checkpoint",
                 options->fallback_ms);
        set_mode_locked(buffer, true, reason);
    }
}

struct output_compare_limits output_buffer_compare_limits(void)
{
    return (struct output_compare_limits){
        .flows_max = 4096,
        .held_frames_max = OUTPUT_HELD_FRAMES_MAX,
        .buffered_bytes_max = 16u << 20,
        .fragments = { .datagrams_max = 16, .total_bytes_max = 1u << 20, .expiry_us = 1000000 },
    };
}

int output_buffer_set_compare(struct output_buffer *buffer, const struct output_compare_options *options,
                              struct error *err)
{
    if (options->storm_checkpoints > OUTPUT_STORM_RING)
        return error_set(err, "a checkpoint storm is at most %u checkpoints", OUTPUT_STORM_RING);
    pthread_mutex_lock(&buffer->lock);
    if (buffer->compare_ready)
        output_compare_destroy(&buffer->compare);
    buffer->compare_ready = false;
    buffer->compare_options = *options;
    int result = 0;
    if (options->mode == OUTPUT_MODE_COMPARE) {
        struct output_compare_limits limits = output_buffer_compare_limits();
        result = output_compare_init(&buffer->compare, &limits, err);
        buffer->compare_ready = result == 0;
    }
    buffer->epochs_expected = 1; /* the SVM's first boundary comes at its setup */
    buffer->boundaries_heard = 0;
    buffer->svm_epoch_started_us = 0;
    buffer->difference_seen = false;
    buffer->deadline_us = 0;
    buffer->fallback_until_us = 0;
    buffer->storm_next = 0;
    buffer->mode_changed = false;
    buffer->comparing = buffer->compare_ready;
    buffer->stats.mode_now = buffer->comparing ? OUTPUT_MODE_COMPARE : OUTPUT_MODE_BUFFERED;
    snprintf(buffer->mode_reason, sizeof buffer->mode_reason, "%s",
             buffer->comparing ? "comparing the two VMs' output" : "asked for (--mode buffered)");
    for (size_t i = 0; i < buffer->held_count; i++)
        buffer->held[i].handle = OUTPUT_COMPARE_HANDLE_NONE;
    pthread_mutex_unlock(&buffer->lock);
    return result;
}

bool output_buffer_take_mode_change(struct output_buffer *buffer, enum output_mode *mode, char *reason, size_t size)
{
    pthread_mutex_lock(&buffer->lock);
    bool changed = buffer->mode_changed;
    buffer->mode_changed = false;
    *mode = buffer->stats.mode_now;
    snprintf(reason, size, "%s", buffer->mode_reason);
    pthread_mutex_unlock(&buffer->lock);
    return changed;
}

void output_buffer_get_compare_counters(struct output_buffer *buffer, struct output_compare_counters *counters)
{
    pthread_mutex_lock(&buffer->lock);
    if (buffer->compare_ready)
        output_compare_get_counters(&buffer->compare, counters, NULL, NULL);
    else
        memset(counters, 0, sizeof *counters);
    pthread_mutex_unlock(&buffer->lock);
}

/* ---- the secondary's return path and sequence shift ---- */

/* Machine thread: a frame on its way into the SVM (mirrored, or from the
 * NIC's own backend after a failover). */
static void shift_inbound(void *opaque, const struct virtio_net_header *header, uint8_t *frame, size_t length)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    if (buffer->shift)
        tcp_sequence_shift_inbound(buffer->shift, frame, length, checksum_partial(header));
    pthread_mutex_unlock(&buffer->lock);
}

/* A new, empty TCP sequence shift for the buffer's VM: outbound frames
 * through it when the buffer passes them, inbound ones from the NICs'
 * backends (and, on a secondary, the mirror's: its caller's part). */
static int install_shift(struct output_buffer *buffer, struct mirror_reader *reader, struct error *err)
{
    struct tcp_sequence_shift *shift = calloc(1, sizeof *shift);
    uint8_t *scratch = malloc(VIRTIO_NET_MAX_FRAME);
    if (!shift || !scratch) {
        free(shift);
        free(scratch);
        return error_set(err, "out of memory for the TCP sequence shift");
    }
    if (tcp_sequence_shift_init(shift, SHIFT_CONNECTIONS_MAX, err) < 0) {
        free(shift);
        free(scratch);
        return -1;
    }
    pthread_mutex_lock(&buffer->lock);
    if (buffer->shift) {
        tcp_sequence_shift_destroy(buffer->shift);
        free(buffer->shift);
    }
    free(buffer->shift_scratch);
    buffer->shift = shift;
    buffer->shift_scratch = scratch;
    buffer->return_to = reader;
    pthread_mutex_unlock(&buffer->lock);
    if (reader)
        mirror_reader_set_inbound_filter(reader, shift_inbound, buffer);
    for (unsigned i = 0; i < machine_nic_count(buffer->machine); i++)
        virtio_net_set_backend_receive_filter(machine_nic(buffer->machine, i), shift_inbound, buffer);
    return 0;
}

int output_buffer_set_secondary_return(struct output_buffer *buffer, struct mirror_reader *reader, struct error *err)
{
    return install_shift(buffer, reader, err);
}

/* The run's one TCP_SHIFT record, if it has one: its entries and their
 * count. */
static int carried_shift(const struct stream_reader *reader, const uint8_t **entries, size_t *count, struct error *err)
{
    size_t cursor = 0, length, more_length;
    const uint8_t *body = NULL, *more;
    *entries = NULL;
    *count = 0;
    if (!stream_received_tcp_shift_next(reader, &cursor, &body, &length))
        return 0;
    if (stream_received_tcp_shift_next(reader, &cursor, &more, &more_length))
        return error_set(err, "the run carries two TCP_SHIFT records");
    *entries = body + STREAM_TCP_SHIFT_PREFIX;
    *count = (length - STREAM_TCP_SHIFT_PREFIX) / STREAM_TCP_SHIFT_ENTRY_LENGTH;
    return 0;
}

int output_buffer_adopt_shift(struct output_buffer *buffer, const struct stream_reader *reader, struct error *err)
{
    const uint8_t *entries;
    size_t count;
    if (carried_shift(reader, &entries, &count, err) < 0)
        return -1;
    if (!entries)
        return 0;
    pthread_mutex_lock(&buffer->lock);
    bool has_shift = buffer->shift != NULL;
    pthread_mutex_unlock(&buffer->lock);
    if (!has_shift && install_shift(buffer, NULL, err) < 0)
        return -1;
    pthread_mutex_lock(&buffer->lock);
    int result = tcp_sequence_shift_restore(buffer->shift, entries, count, err);
    pthread_mutex_unlock(&buffer->lock);
    return result < 0 ? -1 : (int)count;
}

static size_t release_locked(struct output_buffer *buffer)
{
    return release_first_locked(buffer, buffer->held_count);
}

void output_buffer_init(struct output_buffer *buffer, struct machine *machine, bool holding)
{
    /* Everything else starts empty, off or NULL. */
    memset(buffer, 0, sizeof *buffer);
    buffer->machine = machine;
    pthread_mutex_init(&buffer->lock, NULL);
    buffer->holding = holding;
    output_compare_options_defaults(&buffer->compare_options);
    buffer->compare_options.mode = OUTPUT_MODE_BUFFERED;
    /* takes_offloads: the hook forwards the guest's frames with their
     * headers to a vnet-header backend, so both sides offer what a plain
     * TAP would, and the PVM's and the SVM's negotiated features match. */
    for (unsigned i = 0; i < machine_nic_count(machine); i++)
        virtio_net_set_transmit_hook(machine_nic(machine, i), transmit_frame, buffer, true);
}

void output_buffer_set_primary(struct output_buffer *buffer, struct colo_primary *primary, unsigned output_delay_ms)
{
    pthread_mutex_lock(&buffer->lock);
    buffer->primary = primary;
    buffer->output_delay_ms = output_delay_ms;
    pthread_mutex_unlock(&buffer->lock);
}

void output_buffer_set_release_gate(struct output_buffer *buffer, bool (*may_release)(void *opaque), void *opaque)
{
    pthread_mutex_lock(&buffer->lock);
    buffer->may_release = may_release;
    buffer->may_release_opaque = opaque;
    pthread_mutex_unlock(&buffer->lock);
}

void output_buffer_mute(struct output_buffer *buffer)
{
    pthread_mutex_lock(&buffer->lock);
    buffer->stats.dropped_muted += buffer->held_count;
    for (size_t i = 0; i < buffer->held_count; i++)
        free(buffer->held[i].data);
    buffer->held_count = buffer->held_bytes = buffer->checkpoint_frames = 0;
    buffer->muted = true;
    buffer->primary = NULL;
    buffer->comparing = false;
    pthread_mutex_unlock(&buffer->lock);
}

void output_buffer_release_and_pass(struct output_buffer *buffer)
{
    pthread_mutex_lock(&buffer->lock);
    if (!buffer->muted)
        release_locked(buffer);
    buffer->holding = false;
    buffer->primary = NULL;
    buffer->comparing = false;
    pthread_mutex_unlock(&buffer->lock);
}

int output_buffer_capture_compare(struct output_buffer *buffer, const char *path, struct error *err)
{
    pthread_mutex_lock(&buffer->lock);
    compare_capture_close(&buffer->capture);
    int status = compare_capture_open(&buffer->capture, path, err);
    pthread_mutex_unlock(&buffer->lock);
    return status;
}

void output_buffer_destroy(struct output_buffer *buffer)
{
    pthread_mutex_lock(&buffer->lock);
    for (size_t i = 0; i < buffer->held_count; i++)
        free(buffer->held[i].data);
    buffer->held_count = buffer->held_bytes = buffer->checkpoint_frames = 0;
    buffer->holding = false;
    buffer->primary = NULL;
    buffer->comparing = false;
    if (buffer->compare_ready)
        output_compare_destroy(&buffer->compare);
    buffer->compare_ready = false;
    compare_capture_close(&buffer->capture);
    if (buffer->shift) {
        tcp_sequence_shift_destroy(buffer->shift);
        free(buffer->shift);
    }
    buffer->shift = NULL;
    free(buffer->shift_scratch);
    buffer->shift_scratch = NULL;
    free(buffer->shift_entries);
    buffer->shift_entries = NULL;
    buffer->return_to = NULL;
    pthread_mutex_unlock(&buffer->lock);
}

void output_buffer_get_stats(struct output_buffer *buffer, struct output_buffer_stats *stats)
{
    uint64_t waits[OUTPUT_MATCH_WAIT_HISTORY];
    pthread_mutex_lock(&buffer->lock);
    *stats = buffer->stats;
    stats->held_now = buffer->held_count;
    snprintf(stats->mode_reason, sizeof stats->mode_reason, "%s", buffer->mode_reason);
    stats->shifting = buffer->shift != NULL;
    if (buffer->shift)
        stats->shift = buffer->shift->counters;
    size_t count = buffer->match_waits < OUTPUT_MATCH_WAIT_HISTORY ? (size_t)buffer->match_waits
                                                                   : OUTPUT_MATCH_WAIT_HISTORY;
    memcpy(waits, buffer->match_waits_us, count * sizeof waits[0]);
    pthread_mutex_unlock(&buffer->lock);
    stats->match_wait_p50_us = percentile_nearest_rank(waits, count, 50);
    stats->match_wait_p99_us = percentile_nearest_rank(waits, count, 99);
}

/* ---- the primary's device ---- */

/* Lock held: the survivor's connections a checkpoint must carry
 * (tcp_sequence_shift.h), as TCP_SHIFT entries in buffer->shift_entries;
 * how many. The buffer is allocated at the first call and kept: the save
 * runs with the PVM paused. */
static size_t shift_to_carry_locked(struct output_buffer *buffer)
{
    if (!buffer->shift)
        return 0;
    if (!buffer->shift_entries)
        buffer->shift_entries = malloc((size_t)buffer->shift->connections_max * STREAM_TCP_SHIFT_ENTRY_LENGTH);
    if (!buffer->shift_entries)
        return 0; /* the new secondary compares those connections as different, and is checkpointed again */
    return tcp_sequence_shift_save(buffer->shift, buffer->shift_entries, buffer->shift->connections_max);
}

/* After the initial copy, the PVM paused and the SVM built: hold from now. */
static int primary_setup(void *opaque)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    buffer->holding = true;
    pthread_mutex_unlock(&buffer->lock);
    return 0;
}

/* Lock held: a survivor's shifted connections as one TCP_SHIFT record
 * (none when there are none); how many, or -1. */
static int write_shift_to_carry_locked(struct output_buffer *buffer, struct stream_writer *writer, struct error *err)
{
    size_t count = shift_to_carry_locked(buffer);
    buffer->stats.shift_carried = count;
    if (count > 0 && stream_write_tcp_shift(writer, buffer->shift_entries, count, err) < 0)
        return -1;
    return (int)count;
}

/* The initial copy's stop-and-copy, the PVM paused: the new SVM, a copy
 * of this VM, must shift a survivor's connections from its first
 * instruction on, or a failover before the first checkpoint breaks them. */
static int primary_initial_save(void *opaque, struct stream_writer *writer, struct error *err)
{
    return output_buffer_save_shift(opaque, writer, err) < 0 ? -1 : 0;
}

int output_buffer_save_shift(struct output_buffer *buffer, struct stream_writer *writer, struct error *err)
{
    pthread_mutex_lock(&buffer->lock);
    int carried = write_shift_to_carry_locked(buffer, writer, err);
    pthread_mutex_unlock(&buffer->lock);
    return carried;
}

/* The PVM just paused for a checkpoint: what is held now is what this
 * checkpoint lets out (the PVM may resume before its release). */
static int primary_postsuspend(void *opaque)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    buffer->checkpoint_frames = buffer->held_count;
    if (buffer->compare_ready)
        end_epoch_locked(buffer);
    pthread_mutex_unlock(&buffer->lock);
    return 0;
}

/* PVM paused, inside the checkpoint: a copy of what is held goes to the
 * secondary with it. */
static int primary_save(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct output_buffer *buffer = opaque;
    int result = 0;
    pthread_mutex_lock(&buffer->lock);
    for (size_t i = 0; i < buffer->held_count && result == 0; i++) {
        struct held_frame *f = &buffer->held[i];
        int nic = machine_nic_index(buffer->machine, f->net);
        uint8_t header[VIRTIO_NET_HEADER_SIZE];
        virtio_net_header_encode(&f->header, header);
        result = stream_write_output(writer, nic < 0 ? 0 : (uint32_t)nic, header, f->data, f->length, err);
    }
    /* A survivor's connections stay shifted: the new SVM, a copy of this
     * VM, must shift them the same way (tcp_sequence_shift.h). */
    if (result == 0 && write_shift_to_carry_locked(buffer, writer, err) < 0)
        result = -1;
    pthread_mutex_unlock(&buffer->lock);
    return result;
}

/* The SVM has applied the checkpoint: what the PVM sent before its pause
 * may leave now (not what it sent since, if it runs again). */
static void primary_release(void *opaque)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    /* Asked at the last moment, before each frame: a process that was
     * stopped between the SVM's READY and here may no longer own the VM. */
    release_checkpoint_locked(buffer);
    /* Frames of the next epoch the SVM matched meanwhile. */
    if (buffer->comparing && buffer->checkpoint_frames == 0)
        release_matched_locked(buffer);
    pthread_mutex_unlock(&buffer->lock);
}

const struct colo_checkpoint_device_ops output_buffer_primary_device = {
    .initial_save = primary_initial_save,
    .setup = primary_setup,
    .postsuspend = primary_postsuspend,
    .save = primary_save,
    .release = primary_release,
};

/* ---- the secondary's device ---- */

/* The checkpoint has been applied: what the SVM sent before it belongs to
 * a timeline that is gone. (The SVM is paused: nothing transmits now.) */
static int secondary_preresume(void *opaque)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    for (size_t i = 0; i < buffer->held_count; i++)
        free(buffer->held[i].data);
    buffer->stats.dropped_by_checkpoint += buffer->held_count;
    buffer->held_count = 0;
    buffer->held_bytes = 0;
    struct mirror_reader *reader = buffer->return_to;
    pthread_mutex_unlock(&buffer->lock);
    /* What the SVM sends from here is the next epoch's. */
    if (reader)
        mirror_reader_send_boundary(reader);
    return 0;
}

/* The checkpoint (or the initial copy) was applied whole, the SVM paused:
 * the SVM is the PVM again, with no connection of its own; those the PVM's
 * host kept shifted from a failover of its own come with it (TCP_SHIFT).
 * Done here, not at preresume: a failover right after this runs this
 * checkpoint's VM. */
static int secondary_load(void *opaque, const struct stream_reader *reader, struct error *err)
{
    struct output_buffer *buffer = opaque;
    const uint8_t *entries;
    size_t count;
    if (carried_shift(reader, &entries, &count, err) < 0)
        return -1;
    int result = 0;
    pthread_mutex_lock(&buffer->lock);
    if (buffer->shift) {
        if (entries) {
            result = tcp_sequence_shift_restore(buffer->shift, entries, count, err);
        } else {
            tcp_sequence_shift_reset(buffer->shift);
        }
    }
    pthread_mutex_unlock(&buffer->lock);
    return result;
}

/* The SVM was built (paused): its first output starts the first epoch. */
static int secondary_setup(void *opaque)
{
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    struct mirror_reader *reader = buffer->return_to;
    pthread_mutex_unlock(&buffer->lock);
    if (reader)
        mirror_reader_send_boundary(reader);
    return 0;
}

/* What a failover does with one held frame of the SVM's. */
enum failover_kind {
    FAILOVER_ALWAYS,      /* TCP's SYN, FIN and RST, fragments, what does not parse */
    FAILOVER_NEWEST_FEW,  /* data: the flow's newest OUTPUT_FAILOVER_FRAMES_PER_FLOW */
    FAILOVER_NEWEST_ONLY, /* a TCP segment without data: the flow's newest */
};

static enum failover_kind failover_kind_of(const struct held_frame *frame, struct packet_view *view)
{
    if (packet_parse(frame->data, frame->length, view) != PACKET_PARSE_OK || view->fragment)
        return FAILOVER_ALWAYS; /* a fragment's datagram needs every piece */
    if (view->transport != PACKET_TRANSPORT_TCP)
        return FAILOVER_NEWEST_FEW;
    if (view->tcp_flags & (PACKET_TCP_SYN | PACKET_TCP_FIN | PACKET_TCP_RST))
        return FAILOVER_ALWAYS;
    return view->payload_length > 0 ? FAILOVER_NEWEST_FEW : FAILOVER_NEWEST_ONLY;
}

/* Lock held, a secondary taking over: marks in skip[] the held frames the
 * failover leaves out. The SVM's output since the last checkpoint goes
 * out because the dead primary may not have released its twins; but over
 * a whole interval (a second in compare mode) that was some 1,500 TCP
 * segments of one connection, which the client already had. Each drew a
 * duplicate ACK, those filled the TAP's queue before the SVM had read it,
 * and the client's next request was dropped there (a 200 ms
 * retransmission); the send alone held a kill trial's median gap at
 * 22 ms instead of 8. (UDP's were datagrams an application got twice.)
 * What a client can lack is a flow's newest frames: the primary released
 * the older ones when their twins matched.
 * Should it lack an older TCP segment, the newer one it gets shows the
 * hole in its SACK, and the SVM's stack resends it at once. So per flow
 * the newest frames with data go, and the newest TCP segment without;
 * the rest are skipped. False (nothing skipped) when there is no memory
 * to tell the flows apart. */
static bool choose_failover_frames_locked(struct output_buffer *buffer, bool *skip)
{
    size_t count = buffer->held_count;
    struct flow_table flows;
    struct error err;
    uint16_t *data_frames = calloc(count, sizeof *data_frames);
    bool *acknowledgment_sent = calloc(count, sizeof *acknowledgment_sent);
    if (!data_frames || !acknowledgment_sent || flow_table_init(&flows, (uint32_t)count, &err) < 0) {
        free(data_frames);
        free(acknowledgment_sent);
        return false;
    }
    size_t data_frames_in_all = 0;
    for (size_t i = count; i-- > 0;) {
        struct packet_view view;
        enum failover_kind kind = failover_kind_of(&buffer->held[i], &view);
        if (kind == FAILOVER_ALWAYS)
            continue;
        uint8_t key[FLOW_KEY_SIZE];
        output_compare_flow_key(&view, key);
        uint32_t flow = flow_table_find(&flows, key);
        if (flow == FLOW_TABLE_NONE)
            flow = flow_table_insert(&flows, key);
        if (flow == FLOW_TABLE_NONE)
            abort(); /* an entry per frame at most: never full */
        if (kind == FAILOVER_NEWEST_FEW) {
            skip[i] = data_frames[flow] >= OUTPUT_FAILOVER_FRAMES_PER_FLOW ||
                      data_frames_in_all >= OUTPUT_FAILOVER_FRAMES_MAX;
            if (!skip[i]) {
                data_frames[flow]++;
                data_frames_in_all++;
            }
        } else {
            skip[i] = acknowledgment_sent[flow];
            acknowledgment_sent[flow] = true;
        }
    }
    flow_table_destroy(&flows);
    free(data_frames);
    free(acknowledgment_sent);
    return true;
}

/* Lock held: the failover's send, in the order the SVM sent them. */
static void release_at_failover_locked(struct output_buffer *buffer)
{
    bool *skip = buffer->held_count > 0 ? calloc(buffer->held_count, sizeof *skip) : NULL;
    if (!skip || !choose_failover_frames_locked(buffer, skip)) {
        free(skip);
        buffer->stats.released_at_failover = release_locked(buffer);
        return;
    }
    for (size_t i = 0; i < buffer->held_count; i++) {
        if (skip[i]) {
            buffer->stats.skipped_at_failover++;
            free(buffer->held[i].data);
        } else {
            buffer->stats.released_at_failover++;
            held_frames_send_and_free(&buffer->held[i], 1);
        }
    }
    buffer->stats.released_total += buffer->stats.released_at_failover;
    buffer->held_count = buffer->held_bytes = buffer->checkpoint_frames = 0;
    free(skip);
}

/* The SVM takes over (machine paused; after the committed output of the
 * primary, which is older): what it said since the last checkpoint goes
 * out (but a flow's older frames), and everything after it. */
static int secondary_failover(void *opaque, struct error *err)
{
    (void)err;
    struct output_buffer *buffer = opaque;
    pthread_mutex_lock(&buffer->lock);
    release_at_failover_locked(buffer);
    buffer->holding = false;
    buffer->return_to = NULL; /* the mirror is gone; the shift stays for the SVM's connections */
    pthread_mutex_unlock(&buffer->lock);
    return 0;
}

const struct colo_checkpoint_device_ops output_buffer_secondary_device = {
    .setup = secondary_setup,
    .load = secondary_load,
    .initial_load = secondary_load,
    .preresume = secondary_preresume,
    .failover = secondary_failover,
};
