/* The comparator (proxy/output_compare.h) over captured flows: what a real
 * Linux guest's PVM and SVM sent, recorded on a primary as its comparator
 * got them (proxy/compare_capture.h; tests/proxy/capture_compare_flows.sh
 * made the files in tests/proxy/captured/). For each file:
 *   - the capture holds what it says: ARP, ICMP echo, IPv4 fragments, TCP
 *     (KV requests, an echo, a bulk stream both ways), UDP's ICMP errors,
 *     IPv6 neighbour discovery and ICMPv6 echo, IPv6 fragments;
 *   - replayed in the recorded order, the comparator gives at every epoch's
 *     end the live run's counters: the same frames released, the same
 *     differences by cause;
 *   - with each epoch's SVM frames first, the SVM a whole epoch ahead, it
 *     releases at least as much and finds no difference the live run did
 *     not;
 *   - with every SVM TCP segment cut in two, it gives the live verdicts:
 *     segmentation is not a difference on real traffic either;
 *   - with one byte of one SVM segment changed, it finds a payload
 *     difference in that epoch, one more than the live run.
 * Usage: output_compare_captured_test CAPTURE.pcapng... */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture_reader.h"
#include "output_buffer.h"
#include "output_compare.h"
#include "packet_parse.h"
#include "test_check.h"

/* ---- replaying it ---- */

enum replay_order { RECORDED_ORDER, SVM_EPOCH_FIRST };

#define SCRATCH_SIZE (1u << 17)

struct replay_options {
    enum replay_order order;
    bool cut_svm_segments;
    size_t change_record; /* an SVM record whose payload's first byte is changed; SIZE_MAX: none */
};

/* Per epoch, what the replay gave against what the live run recorded. */
struct epoch_outcome {
    struct epoch_end live;
    struct output_compare_counters replayed;
};

struct replay {
    struct epoch_outcome *epochs;
    size_t epoch_count;
};

/* A TCP segment with at least two bytes of payload, not a fragment, the
 * payload ending the datagram: where its payload starts, else 0. */
static size_t cuttable_payload_offset(const uint8_t *frame, size_t length, struct packet_view *view)
{
    if (packet_parse(frame, length, view) != PACKET_PARSE_OK || view->transport != PACKET_TRANSPORT_TCP ||
        view->fragment || view->payload_length < 2 ||
        view->payload + view->payload_length != view->network_header + view->network_length)
        return 0;
    return (size_t)(view->payload - frame);
}

static void put16(uint8_t *at, uint16_t value)
{
    at[0] = (uint8_t)(value >> 8);
    at[1] = (uint8_t)value;
}

static void put32(uint8_t *at, uint32_t value)
{
    put16(at, (uint16_t)(value >> 16));
    put16(at + 2, (uint16_t)value);
}

/* One half of a cut segment: the headers, then payload [from, from + size);
 * the IP length and the sequence number follow, SYN only on the first
 * half, FIN and PSH only on the second. */
static size_t cut_half(const uint8_t *frame, const struct packet_view *view, size_t payload_offset, size_t from,
                       size_t size, bool first, uint8_t *out)
{
    memcpy(out, frame, payload_offset);
    memcpy(out + payload_offset, frame + payload_offset + from, size);
    size_t network_offset = (size_t)(view->network_header - frame);
    size_t transport_offset = (size_t)(view->transport_header - frame);
    size_t datagram = payload_offset - network_offset + size;
    if (view->network == PACKET_NETWORK_IPV4)
        put16(out + network_offset + 2, (uint16_t)datagram);
    else
        put16(out + network_offset + 4, (uint16_t)(datagram - 40));
    put32(out + transport_offset + 4, view->tcp_sequence + (uint32_t)from);
    uint8_t *flags = out + transport_offset + 13;
    *flags = first ? (uint8_t)(*flags & ~(PACKET_TCP_FIN | PACKET_TCP_PSH)) : (uint8_t)(*flags & ~PACKET_TCP_SYN);
    return payload_offset + size;
}

static void take_all_releasable(struct output_compare *compare)
{
    uint64_t handle;
    while (output_compare_take_releasable(compare, &handle))
        ;
}

static void add_record(struct output_compare *compare, const struct capture *capture, size_t index,
                       const struct replay_options *options, uint8_t *scratch)
{
    const struct record *record = &capture->records[index];
    uint64_t handle;
    if (record->interface == COMPARE_CAPTURE_PVM) {
        output_compare_add_primary(compare, record->data, record->length, record->time_us, &handle);
        take_all_releasable(compare);
        return;
    }
    const uint8_t *frame = record->data;
    if (index == options->change_record) {
        if (record->length > SCRATCH_SIZE)
            abort(); /* larger than any frame a NIC sends */
        memcpy(scratch, record->data, record->length);
        struct packet_view view;
        size_t offset = cuttable_payload_offset(scratch, record->length, &view);
        if (offset == 0)
            abort(); /* the caller picked a record with a payload */
        scratch[offset] ^= 0x20;
        frame = scratch;
    }
    struct packet_view view;
    size_t offset = options->cut_svm_segments ? cuttable_payload_offset(frame, record->length, &view) : 0;
    if (offset == 0) {
        output_compare_add_secondary(compare, frame, record->length, record->time_us);
        take_all_releasable(compare);
        return;
    }
    uint8_t *half = malloc(record->length);
    if (!half)
        abort();
    size_t first = view.payload_length / 2;
    size_t length = cut_half(frame, &view, offset, 0, first, true, half);
    output_compare_add_secondary(compare, half, length, record->time_us);
    take_all_releasable(compare);
    length = cut_half(frame, &view, offset, first, view.payload_length - first, false, half);
    output_compare_add_secondary(compare, half, length, record->time_us);
    take_all_releasable(compare);
    free(half);
}

/* Replays the capture's epochs (not the cut last one of a full capture). */
static void replay(const struct capture *capture, const struct replay_options *options, struct replay *out)
{
    memset(out, 0, sizeof *out);
    struct output_compare compare;
    struct output_compare_limits limits = output_buffer_compare_limits();
    struct error err;
    if (output_compare_init(&compare, &limits, &err) < 0) {
        fprintf(stderr, "output_compare_init: %s\n", err.message);
        abort();
    }
    uint8_t *scratch = malloc(SCRATCH_SIZE);
    out->epochs = calloc(capture->count + 1, sizeof *out->epochs);
    if (!scratch || !out->epochs)
        abort();
    size_t epoch_start = 0;
    for (size_t i = 0; i < capture->count; i++) {
        const struct record *record = &capture->records[i];
        if (record->interface != COMPARE_CAPTURE_EPOCH_END)
            continue;
        struct epoch_outcome *outcome = &out->epochs[out->epoch_count];
        if (!parse_epoch_end(record, &outcome->live))
            break; /* the bound's record: what follows was not recorded */
        if (options->order == RECORDED_ORDER) {
            for (size_t j = epoch_start; j < i; j++)
                add_record(&compare, capture, j, options, scratch);
        } else {
            for (size_t j = epoch_start; j < i; j++)
                if (capture->records[j].interface == COMPARE_CAPTURE_SVM)
                    add_record(&compare, capture, j, options, scratch);
            for (size_t j = epoch_start; j < i; j++)
                if (capture->records[j].interface == COMPARE_CAPTURE_PVM)
                    add_record(&compare, capture, j, options, scratch);
        }
        if (outcome->live.timeout)
            output_compare_note_timeout(&compare, record->time_us);
        output_compare_get_counters(&compare, &outcome->replayed, NULL, NULL);
        output_compare_reset(&compare);
        out->epoch_count++;
        epoch_start = i + 1;
    }
    free(scratch);
    output_compare_destroy(&compare);
}

static uint64_t released(const struct output_compare_counters *counters)
{
    return counters->released_matched + counters->released_at_once;
}

static uint64_t live_released(const struct epoch_end *end)
{
    return end->released_matched + end->released_at_once;
}

static void print_counts(FILE *out, const char *what, uint64_t matched, uint64_t at_once, const uint64_t *differences)
{
    fprintf(out, " %s released %" PRIu64 " by a match and %" PRIu64 " at once, differences by cause", what, matched,
            at_once);
    for (int c = 0; c < OUTPUT_COMPARE_CAUSE_COUNT; c++)
        fprintf(out, "%s%" PRIu64, c ? "," : " ", differences[c]);
}

static void print_epoch(const char *what, size_t epoch, const struct epoch_outcome *outcome)
{
    fprintf(stderr, "  %s, epoch %zu:", what, epoch);
    print_counts(stderr, "live", outcome->live.released_matched, outcome->live.released_at_once,
                 outcome->live.differences);
    print_counts(stderr, "; replayed", outcome->replayed.released_matched, outcome->replayed.released_at_once,
                 outcome->replayed.differences);
    fprintf(stderr, "\n");
}

/* The epochs whose counters are not the live run's: how many (the first
 * few printed). Frames: the replay's frame counts are checked too when
 * the SVM's segments were not cut. */
static size_t epochs_unlike_live(const struct replay *replay, const char *what, bool frames)
{
    size_t unlike = 0;
    for (size_t e = 0; e < replay->epoch_count; e++) {
        const struct epoch_outcome *outcome = &replay->epochs[e];
        bool same = outcome->replayed.released_matched == outcome->live.released_matched &&
                    outcome->replayed.released_at_once == outcome->live.released_at_once;
        for (int c = 0; c < OUTPUT_COMPARE_CAUSE_COUNT; c++)
            same = same && outcome->replayed.differences[c] == outcome->live.differences[c];
        if (frames)
            same = same && outcome->replayed.primary_frames == outcome->live.primary_frames &&
                   outcome->replayed.secondary_frames == outcome->live.secondary_frames;
        if (!same && unlike++ < 3)
            print_epoch(what, e, outcome);
    }
    return unlike;
}

static uint64_t differences_but_timeouts(const uint64_t *differences)
{
    uint64_t sum = 0;
    for (int c = 0; c < OUTPUT_COMPARE_CAUSE_COUNT; c++)
        if (c != OUTPUT_COMPARE_CAUSE_TIMEOUT)
            sum += differences[c];
    return sum;
}

/* ---- the checks ---- */

enum kind {
    KIND_ARP,
    KIND_ICMP_ECHO,
    KIND_ICMP_ERROR,
    KIND_IPV4_FRAGMENT,
    KIND_TCP_SYN,
    KIND_TCP_FIN,
    KIND_TCP_DATA,
    KIND_NEIGHBOR_DISCOVERY,
    KIND_ICMPV6_ECHO,
    KIND_IPV6_FRAGMENT,
    KIND_COUNT
};

static const char *const kind_names[KIND_COUNT] = {
    "ARP",     "ICMP echo",   "ICMP error",          "IPv4 fragment", "TCP SYN",
    "TCP FIN", "TCP payload", "neighbour discovery", "ICMPv6 echo",   "IPv6 fragment",
};

static void check_contents(const struct capture *capture)
{
    unsigned counts[KIND_COUNT] = { 0 };
    unsigned pvm = 0, svm = 0, epochs = 0;
    for (size_t i = 0; i < capture->count; i++) {
        const struct record *record = &capture->records[i];
        pvm += record->interface == COMPARE_CAPTURE_PVM;
        svm += record->interface == COMPARE_CAPTURE_SVM;
        epochs += record->interface == COMPARE_CAPTURE_EPOCH_END;
        if (record->interface != COMPARE_CAPTURE_PVM)
            continue;
        struct packet_view view;
        if (packet_parse(record->data, record->length, &view) != PACKET_PARSE_OK)
            continue;
        if (view.network == PACKET_NETWORK_ARP)
            counts[KIND_ARP]++;
        if (view.fragment)
            counts[view.network == PACKET_NETWORK_IPV4 ? KIND_IPV4_FRAGMENT : KIND_IPV6_FRAGMENT]++;
        if (view.transport == PACKET_TRANSPORT_ICMP)
            counts[view.icmp_type == 0 ? KIND_ICMP_ECHO : KIND_ICMP_ERROR]++;
        if (view.transport == PACKET_TRANSPORT_ICMPV6 && view.neighbor_discovery)
            counts[KIND_NEIGHBOR_DISCOVERY]++;
        if (view.transport == PACKET_TRANSPORT_ICMPV6 && view.icmp_type == 129) /* echo reply */
            counts[KIND_ICMPV6_ECHO]++;
        if (view.transport == PACKET_TRANSPORT_TCP) {
            counts[KIND_TCP_SYN] += (view.tcp_flags & PACKET_TCP_SYN) != 0;
            counts[KIND_TCP_FIN] += (view.tcp_flags & PACKET_TCP_FIN) != 0;
            counts[KIND_TCP_DATA] += view.payload_length > 0;
        }
    }
    printf("%s: %u PVM frames, %u SVM frames, %u epochs;", capture->path, pvm, svm, epochs);
    for (int k = 0; k < KIND_COUNT; k++)
        printf(" %s %u%s", kind_names[k], counts[k], k + 1 < KIND_COUNT ? "," : "\n");
    for (int k = 0; k < KIND_COUNT; k++)
        CHECK(counts[k] > 0, "%s: the PVM sent no %s frame", capture->path, kind_names[k]);
    CHECK(epochs >= 2, "%s: %u epochs", capture->path, epochs);
}

static void check_recorded_order(const struct capture *capture)
{
    struct replay result;
    replay(capture, &(struct replay_options){ .order = RECORDED_ORDER, .change_record = SIZE_MAX }, &result);
    size_t unlike = epochs_unlike_live(&result, "recorded order", true);
    CHECK(unlike == 0, "%s: replayed in the recorded order, %zu of %zu epochs end unlike the live run", capture->path,
          unlike, result.epoch_count);
    const struct epoch_outcome *last = result.epoch_count ? &result.epochs[result.epoch_count - 1] : NULL;
    CHECK(last && live_released(&last->live) > 0, "%s: the live run released nothing by a match", capture->path);
    if (last && unlike == 0) {
        printf("%s: the recorded order gives the live verdicts in all %zu epochs:", capture->path, result.epoch_count);
        print_counts(stdout, "in all", last->live.released_matched, last->live.released_at_once,
                     last->live.differences);
        printf("\n");
    }
    free(result.epochs);
}

static void check_svm_ahead(const struct capture *capture)
{
    struct replay result;
    replay(capture, &(struct replay_options){ .order = SVM_EPOCH_FIRST, .change_record = SIZE_MAX }, &result);
    size_t fewer = 0, more_differences = 0;
    for (size_t e = 0; e < result.epoch_count; e++) {
        const struct epoch_outcome *outcome = &result.epochs[e];
        if (released(&outcome->replayed) < live_released(&outcome->live) && fewer++ < 3)
            print_epoch("SVM ahead, fewer released", e, outcome);
        if (differences_but_timeouts(outcome->replayed.differences) >
                differences_but_timeouts(outcome->live.differences) &&
            more_differences++ < 3)
            print_epoch("SVM ahead, more differences", e, outcome);
    }
    CHECK(fewer == 0, "%s: with the SVM an epoch ahead, %zu epochs released less than the live run", capture->path,
          fewer);
    CHECK(more_differences == 0, "%s: with the SVM an epoch ahead, %zu epochs found more differences", capture->path,
          more_differences);
    free(result.epochs);
}

static void check_cut_segments(const struct capture *capture)
{
    struct replay result;
    replay(capture, &(struct replay_options){ .cut_svm_segments = true, .change_record = SIZE_MAX }, &result);
    size_t unlike = epochs_unlike_live(&result, "SVM segments cut in two", false);
    CHECK(unlike == 0, "%s: with every SVM segment cut in two, %zu of %zu epochs end unlike the live run",
          capture->path, unlike, result.epoch_count);
    const struct epoch_outcome *last = result.epoch_count ? &result.epochs[result.epoch_count - 1] : NULL;
    CHECK(last && last->replayed.secondary_frames > last->live.secondary_frames, "%s: no SVM segment was cut",
          capture->path);
    free(result.epochs);
}

/* The first SVM segment with a payload, in an epoch the live run ended
 * without a difference of its own: one byte changed there. */
static void check_changed_byte(const struct capture *capture)
{
    size_t epoch = 0, chosen = SIZE_MAX, chosen_epoch = 0;
    size_t epoch_start = 0;
    uint64_t payload_before = 0;
    for (size_t i = 0; i < capture->count && chosen == SIZE_MAX; i++) {
        const struct record *record = &capture->records[i];
        if (record->interface != COMPARE_CAPTURE_EPOCH_END)
            continue;
        struct epoch_end end;
        if (!parse_epoch_end(record, &end))
            break;
        if (end.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD] == payload_before) {
            for (size_t j = epoch_start; j < i && chosen == SIZE_MAX; j++) {
                struct packet_view view;
                if (capture->records[j].interface == COMPARE_CAPTURE_SVM &&
                    cuttable_payload_offset(capture->records[j].data, capture->records[j].length, &view))
                    chosen = j, chosen_epoch = epoch;
            }
        }
        payload_before = end.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD];
        epoch++;
        epoch_start = i + 1;
    }
    CHECK(chosen != SIZE_MAX, "%s: no SVM segment with a payload in an epoch without a difference", capture->path);
    if (chosen == SIZE_MAX)
        return;
    struct replay result;
    replay(capture, &(struct replay_options){ .change_record = chosen }, &result);
    const struct epoch_outcome *outcome = &result.epochs[chosen_epoch];
    CHECK(outcome->replayed.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD] ==
              outcome->live.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD] + 1,
          "%s: a byte changed in record %zu (epoch %zu): %" PRIu64 " payload differences, the live run %" PRIu64,
          capture->path, chosen, chosen_epoch, outcome->replayed.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD],
          outcome->live.differences[OUTPUT_COMPARE_CAUSE_PAYLOAD]);
    CHECK(released(&outcome->replayed) < live_released(&outcome->live),
          "%s: a byte changed in epoch %zu, and every frame the live run released still left", capture->path,
          chosen_epoch);
    free(result.epochs);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2, "usage: %s CAPTURE.pcapng...", argv[0]);
    for (int i = 1; i < argc; i++) {
        struct capture capture;
        bool loaded = capture_load(&capture, argv[i]);
        CHECK(loaded, "%s: not a capture of compare_capture.c's", argv[i]);
        if (loaded) {
            check_contents(&capture);
            check_recorded_order(&capture);
            check_svm_ahead(&capture);
            check_cut_segments(&capture);
            check_changed_byte(&capture);
        }
        capture_free(&capture);
    }
    return test_check_finish("output_compare_captured_test");
}
