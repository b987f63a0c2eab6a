/* The comparing proxy's comparator (output_compare.h).
 *
 * Each flow keeps, per side, how far that side got ("end": a sequence
 * number for TCP, a message count otherwise); both sides matched up to the
 * smaller end. What the side that is ahead sent beyond it waits in the
 * flow's pending buffer until the other side catches up and is compared
 * with it then; so only one side's surplus is ever stored. PVM frames wait
 * in a ring of held records, each linked into its flow's queue with what it
 * needs (a position, a number of events) before it may leave. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output_compare.h"

#define KEY_SIZE FLOW_KEY_SIZE
#define EVENTS_MAX 3 /* SYN, FIN, RST: each at most once per side */
#define MESSAGE_PREFIX 4

enum tcp_event { EVENT_SYN = 1, EVENT_FIN, EVENT_RST };

struct compare_flow {
    bool tcp, diverged;
    bool base_known; /* TCP: where the stream starts is known */
    uint32_t end[2]; /* by side */
    uint8_t event_type[2][EVENTS_MAX];
    uint32_t event_position[2][EVENTS_MAX]; /* FIN: the sequence number it takes */
    uint8_t event_count[2], events_matched;
    /* TCP: the highest ack the SVM sent. A PVM segment acknowledges what
     * the client sent; it may leave only once the SVM acknowledged as
     * much, or the client could take data for delivered that the SVM,
     * after a failover, never had. */
    bool secondary_ack_known;
    uint32_t secondary_ack;
    /* The surplus of the side ahead: TCP bytes, or messages each after a
     * 32-bit length. */
    uint8_t *pending;
    size_t pending_start, pending_length, pending_capacity;
    uint64_t held_head, held_tail; /* handles; 0: none */
};

enum held_state { HELD_FREE, HELD_WAITING, HELD_READY };

struct compare_held {
    uint8_t state;
    bool needs_position, needs_ack;
    uint8_t events_needed;
    uint32_t position_needed, ack_needed;
    uint32_t flow; /* index + 1; 0: not linked (fragments, or only the checkpoint releases it) */
    uint64_t handle, added_us;
    uint64_t fragment_serial; /* nonzero: waits for that datagram to be whole */
    uint64_t next_in_flow;
};

/* What a PVM frame needs before it may leave. */
struct requirement {
    enum { REQUIRE_CHECKPOINT, REQUIRE_NOTHING, REQUIRE_FLOW } kind;
    uint32_t flow;
    bool needs_position, needs_ack;
    uint32_t position, ack;
    uint8_t events;
};

/* a - b in sequence space: positive when a is after b. */
static int32_t sequence_difference(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b);
}

static struct compare_held *held_at(const struct output_compare *compare, uint64_t handle)
{
    return &compare->held[handle % compare->limits.held_frames_max];
}

int output_compare_init(struct output_compare *compare, const struct output_compare_limits *limits, struct error *error)
{
    memset(compare, 0, sizeof *compare);
    if (limits->held_frames_max == 0)
        return error_set(error, "output compare: held_frames_max must be positive");
    if (flow_table_init(&compare->flow_table, limits->flows_max, error) != 0)
        return error_prefix(error, "output compare: ");
    compare->limits = *limits;
    compare->flows = calloc(limits->flows_max, sizeof *compare->flows);
    compare->held = calloc(limits->held_frames_max, sizeof *compare->held);
    compare->ready = calloc(limits->held_frames_max, sizeof *compare->ready);
    if (!compare->flows || !compare->held || !compare->ready) {
        output_compare_destroy(compare);
        return error_set(error, "output compare: out of memory");
    }
    for (int side = 0; side < 2; side++) {
        if (fragment_reassembly_init(&compare->reassembly[side], &limits->fragments, error) != 0) {
            output_compare_destroy(compare);
            return error_prefix(error, "output compare: ");
        }
    }
    compare->next_handle = compare->oldest_handle = 1;
    return 0;
}

void output_compare_destroy(struct output_compare *compare)
{
    if (compare->flows) {
        for (unsigned i = 0; i < compare->limits.flows_max; i++)
            free(compare->flows[i].pending);
    }
    free(compare->flows);
    flow_table_destroy(&compare->flow_table);
    free(compare->held);
    free(compare->ready);
    compare->flows = NULL;
    compare->held = NULL;
    compare->ready = NULL;
    for (int side = 0; side < 2; side++)
        fragment_reassembly_destroy(&compare->reassembly[side]);
}

static void note_difference(struct output_compare *compare, struct output_compare_result *result,
                            enum output_compare_cause cause)
{
    compare->counters.differences[cause]++;
    if (!result->difference) {
        result->difference = true;
        result->cause = cause;
    }
}

static void diverge(struct output_compare *compare, struct compare_flow *flow, struct output_compare_result *result,
                    enum output_compare_cause cause)
{
    flow->diverged = true;
    note_difference(compare, result, cause);
}

void output_compare_flow_key(const struct packet_view *view, uint8_t key[FLOW_KEY_SIZE])
{
    memset(key, 0, KEY_SIZE);
    key[0] = (uint8_t)view->network;
    key[1] = view->protocol;
    packet_write_16(key + 2, view->ethertype);
    key[4] = (uint8_t)view->vlan_count;
    for (unsigned i = 0; i < view->vlan_count; i++)
        packet_write_16(key + 5 + 2 * i, view->vlan_tci[i] & 0x0fff); /* the VLAN id, not the priority */
    if (view->network == PACKET_NETWORK_IPV4 || view->network == PACKET_NETWORK_IPV6) {
        memcpy(key + 13, view->source_address, view->address_length);
        memcpy(key + 29, view->destination_address, view->address_length);
        switch (view->transport) {
        case PACKET_TRANSPORT_TCP:
        case PACKET_TRANSPORT_UDP:
            packet_write_16(key + 9, view->source_port);
            packet_write_16(key + 11, view->destination_port);
            break;
        case PACKET_TRANSPORT_ICMP:
        case PACKET_TRANSPORT_ICMPV6: {
            /* Echo requests and replies per identifier (ICMP 8/0, ICMPv6
             * 128/129); neighbour discovery apart from the rest, as its
             * timing is the stack's, not the application's. */
            uint8_t type = view->icmp_type;
            bool echo = view->transport == PACKET_TRANSPORT_ICMP ? type == 0 || type == 8 : type == 128 || type == 129;
            if (echo && view->payload_length >= 8)
                memcpy(key + 9, view->payload + 4, 2);
            key[45] = view->neighbor_discovery;
            break;
        }
        default:
            break;
        }
    } else if (view->frame) {
        memcpy(key + 13, view->source_mac, 6);
        memcpy(key + 29, view->destination_mac, 6);
    }
}

/* The flow of key, made if new: NULL when the table is full. Flows live
 * from one checkpoint to the next; datagram flows leave the table once
 * nothing of theirs waits. */
static struct compare_flow *find_flow(struct output_compare *compare, const uint8_t key[KEY_SIZE], bool tcp)
{
    uint32_t entry = flow_table_find(&compare->flow_table, key);
    if (entry != FLOW_TABLE_NONE)
        return &compare->flows[entry];
    entry = flow_table_insert(&compare->flow_table, key);
    if (entry == FLOW_TABLE_NONE)
        return NULL;
    struct compare_flow *flow = &compare->flows[entry];
    uint8_t *pending = flow->pending;
    size_t capacity = flow->pending_capacity;
    memset(flow, 0, sizeof *flow);
    flow->pending = pending; /* its buffer is kept for the next flow */
    flow->pending_capacity = capacity;
    flow->tcp = tcp;
    flow->base_known = !tcp; /* message counts start at 0 */
    return flow;
}

static uint32_t flow_index(const struct output_compare *compare, const struct compare_flow *flow)
{
    return (uint32_t)(flow - compare->flows);
}

/* ---- The pending surplus, under the byte budget. The budget bounds the
 * memory allocated for it (the buffers' capacity), not only the bytes in
 * them; an emptied buffer of more than PENDING_KEPT bytes is freed, so
 * one flow's burst does not hold memory the others need. ---- */

#define PENDING_KEPT 2048

static void pending_free(struct output_compare *compare, struct compare_flow *flow)
{
    compare->buffered_capacity -= flow->pending_capacity;
    free(flow->pending);
    flow->pending = NULL;
    flow->pending_capacity = 0;
}

static bool pending_append(struct output_compare *compare, struct compare_flow *flow, const uint8_t *first,
                           size_t first_length, const uint8_t *second, size_t second_length)
{
    size_t length = first_length + second_length;
    if (compare->buffered_bytes + length > compare->limits.buffered_bytes_max)
        return false;
    if (flow->pending_start + flow->pending_length + length > flow->pending_capacity) {
        if (flow->pending_length)
            memmove(flow->pending, flow->pending + flow->pending_start, flow->pending_length);
        flow->pending_start = 0;
        size_t needed = flow->pending_length + length;
        if (needed > flow->pending_capacity) {
            size_t capacity = flow->pending_capacity > PENDING_KEPT ? flow->pending_capacity : PENDING_KEPT;
            while (capacity < needed)
                capacity *= 2;
            size_t others = compare->buffered_capacity - flow->pending_capacity;
            size_t budget = compare->limits.buffered_bytes_max;
            if (others + capacity > budget)
                capacity = needed; /* no room to double: exactly what is needed */
            if (others + capacity > budget)
                return false;
            uint8_t *grown = realloc(flow->pending, capacity);
            if (!grown)
                return false;
            flow->pending = grown;
            flow->pending_capacity = capacity;
            compare->buffered_capacity = others + capacity;
        }
    }
    uint8_t *tail = flow->pending + flow->pending_start + flow->pending_length;
    if (first_length)
        memcpy(tail, first, first_length);
    if (second_length)
        memcpy(tail + first_length, second, second_length);
    flow->pending_length += length;
    compare->buffered_bytes += length;
    return true;
}

static void pending_consume(struct output_compare *compare, struct compare_flow *flow, size_t length)
{
    flow->pending_start += length;
    flow->pending_length -= length;
    compare->buffered_bytes -= length;
    if (flow->pending_length == 0) {
        flow->pending_start = 0;
        if (flow->pending_capacity > PENDING_KEPT)
            pending_free(compare, flow);
    }
}

static void overflow(struct output_compare *compare, struct compare_flow *flow, struct output_compare_result *result)
{
    compare->counters.dropped_buffer_full++;
    diverge(compare, flow, result, OUTPUT_COMPARE_CAUSE_OVERFLOW);
}

/* ---- TCP ---- */

/* The bytes [sequence, sequence + length) of one side's stream. */
static void add_stream(struct output_compare *compare, struct compare_flow *flow, int side, uint32_t sequence,
                       const uint8_t *data, size_t length, struct output_compare_result *result)
{
    int other = 1 - side;
    uint32_t end = sequence + (uint32_t)length;
    if (sequence_difference(sequence, flow->end[side]) > 0) {
        /* A gap: the bytes before it never came (not to the proxy). Not
         * compared; a retransmission fills it, or the timeout fires. */
        compare->counters.dropped_out_of_order++;
        return;
    }
    if (sequence_difference(end, flow->end[side]) <= 0)
        return; /* a retransmission of what this side sent: TCP resends the same bytes */
    data += flow->end[side] - sequence;
    size_t fresh = end - flow->end[side];
    int32_t other_ahead = sequence_difference(flow->end[other], flow->end[side]);
    if (other_ahead > 0) {
        size_t compared = fresh < (size_t)other_ahead ? fresh : (size_t)other_ahead;
        if (memcmp(flow->pending + flow->pending_start, data, compared) != 0) {
            diverge(compare, flow, result, OUTPUT_COMPARE_CAUSE_PAYLOAD);
            return;
        }
        pending_consume(compare, flow, compared);
        compare->counters.matched_bytes += compared;
        flow->end[side] += (uint32_t)compared;
        data += compared;
        fresh -= compared;
    }
    if (fresh == 0)
        return;
    if (!pending_append(compare, flow, data, fresh, NULL, 0)) {
        overflow(compare, flow, result);
        return;
    }
    flow->end[side] += (uint32_t)fresh;
}

/* Returns how many of the side's events must match for this one to have
 * (its place in the side's list, plus one). */
static uint8_t add_event(struct output_compare *compare, struct compare_flow *flow, int side, uint8_t type,
                         uint32_t position, struct output_compare_result *result)
{
    for (uint8_t i = 0; i < flow->event_count[side]; i++)
        if (flow->event_type[side][i] == type)
            return (uint8_t)(i + 1); /* a retransmitted SYN or FIN, or a second RST */
    uint8_t index = flow->event_count[side]++;
    flow->event_type[side][index] = type;
    flow->event_position[side][index] = position;
    int other = 1 - side;
    if (index < flow->event_count[other]) {
        if (flow->event_type[other][index] != type ||
            (type == EVENT_FIN && flow->event_position[other][index] != position)) {
            diverge(compare, flow, result, OUTPUT_COMPARE_CAUSE_TCP_EVENT);
            return (uint8_t)(index + 1);
        }
        flow->events_matched = (uint8_t)(index + 1);
    }
    return (uint8_t)(index + 1);
}

/* Whether a SYN from this side starts a new connection on the same
 * ports: after this side's FIN or RST, or (the PVM's, all in one sequence
 * space) a SYN with another ISN. The SVM's SYN numbers are not compared:
 * its first SYN is unshifted, a late retransmission may be shifted. */
static bool new_connection(const struct compare_flow *flow, int side, uint32_t sequence)
{
    for (uint8_t i = 0; i < flow->event_count[side]; i++) {
        uint8_t type = flow->event_type[side][i];
        if (type == EVENT_FIN || type == EVENT_RST)
            return true;
        if (type == EVENT_SYN && side == OUTPUT_COMPARE_PRIMARY && flow->event_position[side][i] != sequence)
            return true;
    }
    return false;
}

/* All of the old connection matched and left: it can start over. */
static bool flow_quiet(const struct compare_flow *flow)
{
    return flow->pending_length == 0 && !flow->held_head && flow->event_count[0] == flow->events_matched &&
           flow->event_count[1] == flow->events_matched;
}

static void restart_flow(struct compare_flow *flow)
{
    flow->base_known = false;
    flow->end[0] = flow->end[1] = 0;
    flow->event_count[0] = flow->event_count[1] = flow->events_matched = 0;
    flow->pending_start = 0;
    flow->secondary_ack_known = false;
}

static void add_tcp(struct output_compare *compare, struct compare_flow *flow, int side, const struct packet_view *view,
                    struct requirement *requirement, struct output_compare_result *result)
{
    uint8_t flags = view->tcp_flags;
    bool syn = flags & PACKET_TCP_SYN, fin = flags & PACKET_TCP_FIN, rst = flags & PACKET_TCP_RST;
    uint32_t data_start = view->tcp_sequence + (syn ? 1 : 0);
    requirement->kind = REQUIRE_FLOW;
    requirement->flow = flow_index(compare, flow) + 1;
    requirement->needs_position = false;
    requirement->needs_ack = false;
    requirement->events = 0;
    if (syn && new_connection(flow, side, view->tcp_sequence)) {
        /* Without this, the new connection's bytes would be placed in the
         * old one's stream, where they could pass for retransmissions. */
        if (!flow_quiet(flow)) {
            compare->counters.tcp_restarts_refused++;
            diverge(compare, flow, result, OUTPUT_COMPARE_CAUSE_PROTOCOL);
            return;
        }
        restart_flow(flow);
        compare->counters.tcp_restarts++;
    }
    if (flags & PACKET_TCP_ACK) {
        if (side == OUTPUT_COMPARE_PRIMARY) {
            requirement->needs_ack = true;
            requirement->ack = view->tcp_acknowledgment;
        } else if (!flow->secondary_ack_known ||
                   sequence_difference(view->tcp_acknowledgment, flow->secondary_ack) > 0) {
            flow->secondary_ack_known = true;
            flow->secondary_ack = view->tcp_acknowledgment;
        }
    }
    if (!flow->base_known && (!syn || side == OUTPUT_COMPARE_PRIMARY)) {
        /* The SVM's SYN is in its own sequence space (sent before the
         * secondary knew the shift): it cannot say where the stream starts. */
        flow->base_known = true;
        flow->end[0] = flow->end[1] = data_start;
    }
    if (!syn && !fin && !rst && view->payload_length == 0) {
        /* A pure ACK or window update: nothing to compare, but what it
         * acknowledges must be the SVM's too. */
        if (!requirement->needs_ack && side == OUTPUT_COMPARE_PRIMARY)
            requirement->kind = REQUIRE_NOTHING;
        return;
    }
    if (syn)
        requirement->events = add_event(compare, flow, side, EVENT_SYN, view->tcp_sequence, result);
    if (view->payload_length && !flow->diverged) {
        if (flow->base_known) {
            add_stream(compare, flow, side, data_start, view->payload, view->payload_length, result);
        } else {
            compare->counters.dropped_out_of_order++; /* data on the SVM's SYN, before the PVM's */
        }
        requirement->needs_position = true;
        requirement->position = data_start + (uint32_t)view->payload_length;
    }
    if (fin && !flow->diverged)
        requirement->events = add_event(compare, flow, side, EVENT_FIN, data_start + (uint32_t)view->payload_length,
                                        result);
    if (rst && !flow->diverged)
        requirement->events = add_event(compare, flow, side, EVENT_RST, 0, result);
}

/* ---- Datagrams and other messages ---- */

static void add_message(struct output_compare *compare, struct compare_flow *flow, int side, const uint8_t *head,
                        size_t head_length, const uint8_t *body, size_t body_length, struct requirement *requirement,
                        struct output_compare_result *result)
{
    int other = 1 - side;
    size_t length = head_length + body_length;
    if (sequence_difference(flow->end[other], flow->end[side]) > 0) {
        const uint8_t *oldest = flow->pending + flow->pending_start;
        size_t oldest_length = packet_read_32(oldest);
        if (oldest_length != length || memcmp(oldest + MESSAGE_PREFIX, head, head_length) != 0 ||
            memcmp(oldest + MESSAGE_PREFIX + head_length, body, body_length) != 0) {
            diverge(compare, flow, result, OUTPUT_COMPARE_CAUSE_PAYLOAD);
            return;
        }
        pending_consume(compare, flow, MESSAGE_PREFIX + length);
        compare->counters.matched_messages++;
    } else {
        uint8_t prefix[MESSAGE_PREFIX + 2];
        packet_write_32(prefix, (uint32_t)length);
        memcpy(prefix + MESSAGE_PREFIX, head, head_length); /* at most 2 bytes */
        if (!pending_append(compare, flow, prefix, MESSAGE_PREFIX + head_length, body, body_length)) {
            overflow(compare, flow, result);
            return;
        }
    }
    flow->end[side]++;
    requirement->kind = REQUIRE_FLOW;
    requirement->flow = flow_index(compare, flow) + 1;
    requirement->needs_position = true;
    requirement->position = flow->end[side];
    requirement->events = 0;
}

/* A whole packet (a frame, or a reassembled datagram) of one side. */
static void add_packet(struct output_compare *compare, int side, const struct packet_view *view,
                       struct requirement *requirement, struct output_compare_result *result)
{
    requirement->kind = REQUIRE_CHECKPOINT;
    uint8_t key[KEY_SIZE];
    output_compare_flow_key(view, key);
    bool tcp = view->transport == PACKET_TRANSPORT_TCP;
    struct compare_flow *flow = find_flow(compare, key, tcp);
    if (!flow) {
        compare->counters.dropped_flow_table_full++;
        note_difference(compare, result, OUTPUT_COMPARE_CAUSE_OVERFLOW);
        return;
    }
    if (flow->diverged) {
        /* Compared no more: its PVM frames wait for the checkpoint. */
        requirement->kind = REQUIRE_FLOW;
        requirement->flow = flow_index(compare, flow) + 1;
        return;
    }
    if (tcp) {
        add_tcp(compare, flow, side, view, requirement, result);
        return;
    }
    static const uint8_t none[1];
    switch (view->transport) {
    case PACKET_TRANSPORT_UDP:
        add_message(compare, flow, side, none, 0, view->payload, view->payload_length, requirement, result);
        break;
    case PACKET_TRANSPORT_ICMP:
    case PACKET_TRANSPORT_ICMPV6:
        /* Type and code, then the message after its checksum. */
        add_message(compare, flow, side, view->payload, 2, view->payload + 4, view->payload_length - 4, requirement,
                    result);
        break;
    default:
        if (view->network == PACKET_NETWORK_IPV4 || view->network == PACKET_NETWORK_IPV6)
            add_message(compare, flow, side, none, 0, view->ip_payload, view->ip_payload_length, requirement, result);
        else if (view->network == PACKET_NETWORK_ARP)
            add_message(compare, flow, side, none, 0, view->network_header, view->network_length, requirement, result);
        else
            add_message(compare, flow, side, none, 0, view->frame, view->frame_length, requirement, result);
        break;
    }
}

/* ---- Held PVM frames ---- */

static void make_ready(struct output_compare *compare, struct compare_held *held)
{
    held->state = HELD_READY;
    unsigned capacity = compare->limits.held_frames_max;
    compare->ready[(compare->ready_head + compare->ready_count) % capacity] = held->handle;
    compare->ready_count++;
}

/* Where the two sides' streams agree up to. */
static uint32_t matched_end(const struct compare_flow *flow)
{
    return sequence_difference(flow->end[0], flow->end[1]) <= 0 ? flow->end[0] : flow->end[1];
}

/* Whether a held frame of this flow (not diverged; `matched` its
 * matched_end) still needs something of the SVM before it may leave; if
 * so, *waiting says what, and *behind by how many TCP bytes the SVM is
 * behind (0 when not counted in bytes). */
static bool still_needs(const struct compare_flow *flow, uint32_t matched, const struct compare_held *held,
                        enum output_compare_waiting *waiting, uint32_t *behind)
{
    *behind = 0;
    if (held->needs_position && sequence_difference(held->position_needed, matched) > 0) {
        if (flow->tcp)
            *behind = (uint32_t)sequence_difference(held->position_needed, matched);
        *waiting = OUTPUT_COMPARE_WAITING_DATA;
        return true;
    }
    if (held->events_needed > flow->events_matched) {
        *waiting = OUTPUT_COMPARE_WAITING_EVENT;
        return true;
    }
    if (held->needs_ack &&
        (!flow->secondary_ack_known || sequence_difference(held->ack_needed, flow->secondary_ack) > 0)) {
        if (flow->secondary_ack_known)
            *behind = (uint32_t)sequence_difference(held->ack_needed, flow->secondary_ack);
        *waiting = OUTPUT_COMPARE_WAITING_ACK;
        return true;
    }
    return false;
}

static void release_ready(struct output_compare *compare, struct compare_flow *flow)
{
    if (flow->diverged)
        return;
    uint32_t matched = matched_end(flow);
    while (flow->held_head) {
        struct compare_held *held = held_at(compare, flow->held_head);
        enum output_compare_waiting waiting;
        uint32_t behind;
        if (still_needs(flow, matched, held, &waiting, &behind))
            break;
        make_ready(compare, held);
        compare->counters.released_matched++;
        flow->held_head = held->next_in_flow;
    }
    if (!flow->held_head)
        flow->held_tail = 0;
}

static void apply_requirement(struct output_compare *compare, struct compare_held *held,
                              const struct requirement *requirement)
{
    switch (requirement->kind) {
    case REQUIRE_CHECKPOINT:
        return;
    case REQUIRE_NOTHING:
        make_ready(compare, held);
        compare->counters.released_at_once++;
        return;
    case REQUIRE_FLOW: {
        struct compare_flow *flow = &compare->flows[requirement->flow - 1];
        held->flow = requirement->flow;
        held->needs_position = requirement->needs_position;
        held->position_needed = requirement->position;
        held->needs_ack = requirement->needs_ack;
        held->ack_needed = requirement->ack;
        held->events_needed = requirement->events;
        held->next_in_flow = 0;
        if (flow->held_tail)
            held_at(compare, flow->held_tail)->next_in_flow = held->handle;
        else
            flow->held_head = held->handle;
        flow->held_tail = held->handle;
        return;
    }
    }
}

/* After a packet of a flow: what of it may leave, and whether a datagram
 * flow with nothing left waiting can leave the table. */
static void settle_flow(struct output_compare *compare, const struct requirement *requirement)
{
    if (requirement->kind != REQUIRE_FLOW)
        return;
    struct compare_flow *flow = &compare->flows[requirement->flow - 1];
    release_ready(compare, flow);
    if (!flow->tcp && !flow->diverged && !flow->held_head && flow->pending_length == 0)
        flow_table_remove(&compare->flow_table, flow_index(compare, flow));
}

static uint64_t differences_total(const struct output_compare *compare)
{
    uint64_t total = 0;
    for (int cause = 0; cause < OUTPUT_COMPARE_CAUSE_COUNT; cause++)
        total += compare->counters.differences[cause];
    return total;
}

/* What the operator sees of the last difference (status, "last_difference"). */
static void remember_difference(struct output_compare *compare, enum output_compare_cause cause, bool by_primary,
                                uint64_t now_us, const struct packet_view *view, const char *otherwise)
{
    struct output_compare_difference *last = &compare->counters.last_difference;
    last->count = differences_total(compare);
    last->cause = cause;
    last->by_primary = by_primary;
    last->at_us = now_us;
    last->waited_for = OUTPUT_COMPARE_WAITING_OTHER;
    last->waited_bytes = 0;
    if (view)
        packet_describe(view, last->flow, sizeof last->flow);
    else
        snprintf(last->flow, sizeof last->flow, "%s", otherwise);
}

static struct output_compare_result add_frame(struct output_compare *compare, int side, const uint8_t *frame,
                                              size_t length, uint64_t now_us, uint64_t *handle)
{
    struct output_compare_result result = { .difference = false };
    const struct packet_view *described = NULL; /* the packet that names the flow */
    const char *undescribed = "a frame the comparator had no room for";
    struct compare_held *held = NULL;
    if (side == OUTPUT_COMPARE_PRIMARY) {
        compare->counters.primary_frames++;
        *handle = OUTPUT_COMPARE_HANDLE_NONE;
        if (compare->next_handle - compare->oldest_handle >= compare->limits.held_frames_max) {
            compare->counters.dropped_held_full++;
            note_difference(compare, &result, OUTPUT_COMPARE_CAUSE_OVERFLOW);
            remember_difference(compare, result.cause, true, now_us, NULL, "a PVM frame beyond the held limit");
            result.releasable = compare->ready_count;
            return result;
        }
        *handle = compare->next_handle++;
        held = held_at(compare, *handle);
        memset(held, 0, sizeof *held);
        held->state = HELD_WAITING;
        held->handle = *handle;
        held->added_us = now_us;
    } else {
        compare->counters.secondary_frames++;
    }

    struct packet_view view;
    struct requirement requirement = { .kind = REQUIRE_CHECKPOINT };
    enum packet_parse_result parsed = packet_parse(frame, length, &view);
    struct packet_view whole;
    if (parsed != PACKET_PARSE_OK) {
        compare->counters.parse_errors[parsed]++;
        note_difference(compare, &result, OUTPUT_COMPARE_CAUSE_PARSE_ERROR);
        undescribed = packet_parse_result_name(parsed);
    } else if (!view.fragment) {
        described = &view;
        add_packet(compare, side, &view, &requirement, &result);
        if (held)
            apply_requirement(compare, held, &requirement);
        settle_flow(compare, &requirement);
    } else {
        const uint8_t *datagram;
        size_t datagram_length;
        uint64_t serial;
        enum fragment_result reassembled = fragment_reassembly_add(&compare->reassembly[side], &view, now_us, &datagram,
                                                                   &datagram_length, &serial);
        if (held)
            held->fragment_serial = serial;
        described = &view;
        if (reassembled == FRAGMENT_COMPLETE) {
            whole = view; /* the Ethernet fields of the last fragment */
            parsed = packet_parse_network(view.ethertype, datagram, datagram_length, &whole);
            if (parsed != PACKET_PARSE_OK) {
                compare->counters.parse_errors[parsed]++;
                note_difference(compare, &result, OUTPUT_COMPARE_CAUSE_PARSE_ERROR);
            } else {
                described = &whole;
                add_packet(compare, side, &whole, &requirement, &result);
                /* Every PVM fragment of the datagram, oldest first. */
                for (uint64_t other = compare->oldest_handle; held && other < compare->next_handle; other++) {
                    struct compare_held *fragment = held_at(compare, other);
                    if (fragment->state == HELD_WAITING && fragment->fragment_serial == serial && !fragment->flow)
                        apply_requirement(compare, fragment, &requirement);
                }
                settle_flow(compare, &requirement);
            }
        } else if (reassembled == FRAGMENT_FULL) {
            note_difference(compare, &result, OUTPUT_COMPARE_CAUSE_OVERFLOW);
        } else if (reassembled != FRAGMENT_INCOMPLETE) {
            note_difference(compare, &result, OUTPUT_COMPARE_CAUSE_PROTOCOL);
        }
    }
    if (result.difference) /* every difference goes through note_difference */
        remember_difference(compare, result.cause, side == OUTPUT_COMPARE_PRIMARY, now_us, described, undescribed);
    result.releasable = compare->ready_count;
    return result;
}

struct output_compare_result output_compare_add_primary(struct output_compare *compare, const uint8_t *frame,
                                                        size_t length, uint64_t now_us, uint64_t *handle)
{
    return add_frame(compare, OUTPUT_COMPARE_PRIMARY, frame, length, now_us, handle);
}

struct output_compare_result output_compare_add_secondary(struct output_compare *compare, const uint8_t *frame,
                                                          size_t length, uint64_t now_us)
{
    uint64_t unused;
    return add_frame(compare, OUTPUT_COMPARE_SECONDARY, frame, length, now_us, &unused);
}

bool output_compare_take_releasable(struct output_compare *compare, uint64_t *handle)
{
    if (compare->ready_count == 0)
        return false;
    *handle = compare->ready[compare->ready_head];
    compare->ready_head = (compare->ready_head + 1) % compare->limits.held_frames_max;
    compare->ready_count--;
    held_at(compare, *handle)->state = HELD_FREE;
    while (compare->oldest_handle < compare->next_handle &&
           held_at(compare, compare->oldest_handle)->state == HELD_FREE)
        compare->oldest_handle++;
    return true;
}

/* The oldest PVM frame still waiting for its twin, or NULL. */
static const struct compare_held *oldest_waiting(const struct output_compare *compare)
{
    for (uint64_t handle = compare->oldest_handle; handle < compare->next_handle; handle++) {
        const struct compare_held *held = held_at(compare, handle);
        if (held->state == HELD_WAITING)
            return held;
    }
    return NULL;
}

bool output_compare_oldest_unmatched_us(const struct output_compare *compare, uint64_t *added_us)
{
    const struct compare_held *held = oldest_waiting(compare);
    if (held)
        *added_us = held->added_us;
    return held != NULL;
}

/* What packet_describe needs of a flow, from its key (the inverse of
 * output_compare_flow_key, for what a description shows). */
static void view_of_flow_key(const uint8_t key[KEY_SIZE], struct packet_view *view)
{
    memset(view, 0, sizeof *view);
    view->network = (enum packet_network)key[0];
    view->protocol = key[1];
    view->ethertype = packet_read_16(key + 2);
    view->vlan_count = key[4] <= PACKET_VLAN_TAGS_MAX ? key[4] : PACKET_VLAN_TAGS_MAX;
    for (unsigned i = 0; i < view->vlan_count; i++)
        view->vlan_tci[i] = packet_read_16(key + 5 + 2 * i);
    if (view->network != PACKET_NETWORK_IPV4 && view->network != PACKET_NETWORK_IPV6)
        return;
    view->address_length = view->network == PACKET_NETWORK_IPV4 ? 4 : 16;
    view->source_address = key + 13;
    view->destination_address = key + 29;
    if (view->protocol == PACKET_PROTOCOL_TCP || view->protocol == PACKET_PROTOCOL_UDP) {
        view->transport = view->protocol == PACKET_PROTOCOL_TCP ? PACKET_TRANSPORT_TCP : PACKET_TRANSPORT_UDP;
        view->source_port = packet_read_16(key + 9);
        view->destination_port = packet_read_16(key + 11);
    } else if (view->protocol == PACKET_PROTOCOL_ICMP || view->protocol == PACKET_PROTOCOL_ICMPV6) {
        view->transport = view->protocol == PACKET_PROTOCOL_ICMP ? PACKET_TRANSPORT_ICMP : PACKET_TRANSPORT_ICMPV6;
    }
}

/* What the held frame still needs of the SVM (still_needs), and for TCP
 * by how many bytes the SVM is behind. */
static enum output_compare_waiting waiting_for(const struct output_compare *compare, const struct compare_held *held,
                                               uint32_t *behind)
{
    *behind = 0;
    if (!held || !held->flow || held->fragment_serial)
        return OUTPUT_COMPARE_WAITING_OTHER;
    const struct compare_flow *flow = &compare->flows[held->flow - 1];
    enum output_compare_waiting waiting;
    if (flow->diverged || !still_needs(flow, matched_end(flow), held, &waiting, behind))
        return OUTPUT_COMPARE_WAITING_OTHER;
    return waiting;
}

const char *output_compare_waiting_name(enum output_compare_waiting waiting)
{
    static const char *const names[OUTPUT_COMPARE_WAITING_COUNT] = {
        [OUTPUT_COMPARE_WAITING_DATA] = "data",
        [OUTPUT_COMPARE_WAITING_ACK] = "ack",
        [OUTPUT_COMPARE_WAITING_EVENT] = "tcp_event",
        [OUTPUT_COMPARE_WAITING_OTHER] = "other",
    };
    return waiting < OUTPUT_COMPARE_WAITING_COUNT ? names[waiting] : "unknown";
}

/* The timeout names the flow of the oldest PVM frame still waiting for its
 * twin, the one whose deadline passed (timeouts are the usual cause of
 * forced checkpoints, and "timeout" alone does not say which service the
 * SVM was slow to answer for); nothing when it belongs to no flow. */
void output_compare_note_timeout(struct output_compare *compare, uint64_t now_us)
{
    compare->counters.differences[OUTPUT_COMPARE_CAUSE_TIMEOUT]++;
    const struct compare_held *held = oldest_waiting(compare);
    struct packet_view view;
    if (held && held->flow)
        view_of_flow_key(compare->flow_table.keys[held->flow - 1], &view);
    uint32_t behind;
    enum output_compare_waiting waiting = waiting_for(compare, held, &behind);
    compare->counters.timeouts_waiting[waiting]++;
    remember_difference(compare, OUTPUT_COMPARE_CAUSE_TIMEOUT, true, now_us, held && held->flow ? &view : NULL, "");
    compare->counters.last_difference.waited_for = waiting;
    compare->counters.last_difference.waited_bytes = behind;
}

void output_compare_reset(struct output_compare *compare)
{
    for (unsigned i = 0; i < compare->limits.flows_max; i++) {
        struct compare_flow *flow = &compare->flows[i];
        flow->pending_start = flow->pending_length = 0;
        if (flow->pending_capacity > PENDING_KEPT)
            pending_free(compare, flow);
    }
    flow_table_clear(&compare->flow_table);
    for (unsigned i = 0; i < compare->limits.held_frames_max; i++)
        compare->held[i].state = HELD_FREE;
    compare->oldest_handle = compare->next_handle;
    compare->ready_head = compare->ready_count = 0;
    compare->buffered_bytes = 0;
    for (int side = 0; side < 2; side++)
        fragment_reassembly_reset(&compare->reassembly[side]);
    compare->counters.checkpoints++;
}

void output_compare_get_counters(const struct output_compare *compare, struct output_compare_counters *counters,
                                 struct fragment_reassembly_counters *primary_fragments,
                                 struct fragment_reassembly_counters *secondary_fragments)
{
    *counters = compare->counters;
    if (primary_fragments)
        *primary_fragments = compare->reassembly[OUTPUT_COMPARE_PRIMARY].counters;
    if (secondary_fragments)
        *secondary_fragments = compare->reassembly[OUTPUT_COMPARE_SECONDARY].counters;
}

const char *output_compare_cause_name(enum output_compare_cause cause)
{
    static const char *const names[OUTPUT_COMPARE_CAUSE_COUNT] = {
        [OUTPUT_COMPARE_CAUSE_PAYLOAD] = "payload",         [OUTPUT_COMPARE_CAUSE_TCP_EVENT] = "tcp_event",
        [OUTPUT_COMPARE_CAUSE_TIMEOUT] = "timeout",         [OUTPUT_COMPARE_CAUSE_PROTOCOL] = "protocol",
        [OUTPUT_COMPARE_CAUSE_PARSE_ERROR] = "parse_error", [OUTPUT_COMPARE_CAUSE_OVERFLOW] = "overflow",
    };
    if ((unsigned)cause >= OUTPUT_COMPARE_CAUSE_COUNT)
        return "unknown";
    return names[cause];
}
