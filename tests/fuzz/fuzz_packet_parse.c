/* libFuzzer target: the comparing proxy over any frames a guest could
 * send (proxy/packet_parse.h, fragment_reassembly.h, output_compare.h,
 * tcp_sequence_shift.h). The input is a list of records:
 *
 *   op (1 byte) | length (2 bytes, big-endian) | frame (length bytes)
 *
 * op & 3: 0 a PVM frame, 1 an SVM frame (shifted outbound first), 2 a
 * client frame shifted inbound (then given to the comparator as an SVM
 * frame too, for the coverage), 3 a checkpoint (no length, no frame);
 * op >> 2: microseconds the caller's clock moves first, times 1000. A
 * length past the end takes what is left. An input whose first byte is
 * 0xff is a twin run: every frame goes to the comparator from both sides,
 * PVM then SVM, unshifted; two VMs that send the same frames never differ
 * in payload or TCP events, whatever the frames. Each frame is copied into a
 * buffer of exactly its size, so ASan sees any read past it. Every parsed
 * view must point inside its frame, the comparator's handles must come
 * back at most once, and nothing may crash: bad frames are differences. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "output_compare.h"
#include "packet_parse.h"
#include "tcp_sequence_shift.h"

static void check_inside(const uint8_t *frame, size_t length, const uint8_t *pointer, size_t size)
{
    if (!pointer) {
        if (size)
            abort();
        return;
    }
    if (pointer < frame || pointer > frame + length || size > (size_t)(frame + length - pointer))
        abort();
}

static void check_view(const uint8_t *frame, size_t length)
{
    struct packet_view view;
    enum packet_parse_result result = packet_parse(frame, length, &view);
    if ((unsigned)result >= PACKET_PARSE_RESULT_COUNT)
        abort();
    if (result != PACKET_PARSE_OK)
        return;
    check_inside(frame, length, view.network_header, view.network_length);
    check_inside(frame, length, view.ip_payload, view.ip_payload_length);
    check_inside(frame, length, view.transport_header, view.transport_header_length);
    check_inside(frame, length, view.payload, view.payload_length);
    if (view.vlan_count > PACKET_VLAN_TAGS_MAX)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct output_compare compare;
    struct output_compare_limits limits = {
        .flows_max = 8,
        .held_frames_max = 16,
        .buffered_bytes_max = 4096,
        .fragments = { .datagrams_max = 2, .total_bytes_max = 8192, .expiry_us = 5000 },
    };
    struct tcp_sequence_shift shift;
    if (output_compare_init(&compare, &limits, NULL) != 0)
        abort();
    if (tcp_sequence_shift_init(&shift, 4, NULL) != 0)
        abort();
    uint64_t now_us = 0, outstanding = 0;
    size_t offset = 0;
    bool twin = size > 0 && data[0] == 0xff;
    if (twin)
        offset = 1;
    while (offset < size) {
        uint8_t op = data[offset++];
        now_us += (uint64_t)(op >> 2) * 1000;
        if ((op & 3) == 3) {
            output_compare_reset(&compare);
            tcp_sequence_shift_reset(&shift);
            outstanding = 0;
            continue;
        }
        size_t length = 0;
        if (size - offset >= 2) {
            length = (size_t)(data[offset] << 8 | data[offset + 1]);
            offset += 2;
        }
        if (length > size - offset)
            length = size - offset;
        uint8_t *frame = malloc(length ? length : 1);
        if (!frame)
            abort();
        memcpy(frame, data + offset, length);
        offset += length;
        check_view(frame, length);
        struct output_compare_result result;
        if (twin) {
            uint64_t handle;
            result = output_compare_add_primary(&compare, frame, length, now_us, &handle);
            if (handle != OUTPUT_COMPARE_HANDLE_NONE)
                outstanding++;
            struct output_compare_result second = output_compare_add_secondary(&compare, frame, length, now_us);
            if (second.difference &&
                (second.cause == OUTPUT_COMPARE_CAUSE_PAYLOAD || second.cause == OUTPUT_COMPARE_CAUSE_TCP_EVENT))
                abort(); /* the same frames differ */
        } else if ((op & 3) == 0) {
            uint64_t handle;
            result = output_compare_add_primary(&compare, frame, length, now_us, &handle);
            if (handle != OUTPUT_COMPARE_HANDLE_NONE)
                outstanding++;
        } else if ((op & 3) == 1) {
            tcp_sequence_shift_outbound(&shift, frame, length, false);
            check_view(frame, length);
            result = output_compare_add_secondary(&compare, frame, length, now_us);
        } else {
            tcp_sequence_shift_inbound(&shift, frame, length, op & 4);
            check_view(frame, length);
            result = output_compare_add_secondary(&compare, frame, length, now_us);
        }
        if (result.difference && (unsigned)result.cause >= OUTPUT_COMPARE_CAUSE_COUNT)
            abort();
        free(frame);
        uint64_t handle;
        while (output_compare_take_releasable(&compare, &handle)) {
            if (handle == OUTPUT_COMPARE_HANDLE_NONE || outstanding == 0)
                abort(); /* a handle never given, or given back twice */
            outstanding--;
        }
        uint64_t oldest;
        if (output_compare_oldest_unmatched_us(&compare, &oldest) && oldest > now_us)
            abort();
    }
    struct output_compare_counters counters;
    output_compare_get_counters(&compare, &counters, NULL, NULL);
    output_compare_destroy(&compare);
    tcp_sequence_shift_destroy(&shift);
    return 0;
}
