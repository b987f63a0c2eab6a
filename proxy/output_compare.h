/* The comparing proxy's comparator (issue 14; DESIGN.md "The proxy"): the
 * frames the primary VM (PVM) sends are held by the caller; the frames the
 * secondary VM (SVM) sends come back and are compared with them. A PVM
 * frame may leave as soon as the SVM sent the same thing; a difference asks
 * for a checkpoint, after which everything held leaves anyway.
 *
 * What "the same" means:
 *   - TCP, per connection (the 4-tuple with the VLAN ids) and direction:
 *     the payload as a byte stream by sequence number, so different
 *     segmentation is not a difference; SYN, FIN and RST are events of the
 *     connection, compared in order (FIN also by its position in the
 *     stream). ACK numbers, windows, options, timestamps and checksums are
 *     not compared, but a PVM segment's ack must be covered: it may leave
 *     once all its bytes and events were matched and the SVM acknowledged
 *     at least as much of the client's stream (else a client could take
 *     bytes for delivered that the SVM never got, and never send them
 *     again after a failover). A pure ACK needs only the latter.
 *   - UDP, ICMP, ICMPv6 and other IP protocols, per flow (addresses,
 *     protocol, ports or ICMP echo id; neighbour discovery is a flow of its
 *     own): each datagram's payload (ICMP: the message but its checksum),
 *     in order.
 *   - ARP and other ethertypes, per flow (ethertype, MACs, VLAN ids): the
 *     ARP message; other ethertypes the whole frame; in order.
 *   - IP fragments are reassembled per side first (fragment_reassembly.h);
 *     the fragments of a PVM datagram leave when the datagram matched.
 *   - A frame the parser rejects is a difference (parse_error).
 *
 * Sequence numbers: the SVM's frames are expected in the PVM's sequence
 * space (the secondary shifts them: tcp_sequence_shift.h), except the
 * SVM's own SYN, sent before the shift was known; so a SYN only counts as
 * an event, and the stream starts after the PVM's SYN (or, for a
 * connection older than the last checkpoint, at the first segment seen).
 *
 * Pure: no threads, no I/O, no clock (times come from the caller, in
 * microseconds); everything is bounded by output_compare_limits: the
 * tables are allocated at init, the buffered surplus grows up to its byte
 * budget. After a difference the flow it was in compares
 * nothing more (its PVM frames wait for the checkpoint). Single-threaded:
 * the caller serializes. */
#ifndef COLO_PROXY_OUTPUT_COMPARE_H
#define COLO_PROXY_OUTPUT_COMPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "flow_table.h"
#include "fragment_reassembly.h"
#include "packet_parse.h"

enum output_compare_cause {
    OUTPUT_COMPARE_CAUSE_PAYLOAD,     /* different bytes */
    OUTPUT_COMPARE_CAUSE_TCP_EVENT,   /* different SYN/FIN/RST, or a FIN elsewhere */
    OUTPUT_COMPARE_CAUSE_TIMEOUT,     /* a PVM frame waited too long (the caller says so) */
    OUTPUT_COMPARE_CAUSE_PROTOCOL,    /* fragments that do not reassemble; a TCP port reused too early */
    OUTPUT_COMPARE_CAUSE_PARSE_ERROR, /* a frame the parser rejects */
    OUTPUT_COMPARE_CAUSE_OVERFLOW,    /* a bounded table or buffer was full */
    OUTPUT_COMPARE_CAUSE_COUNT
};

struct output_compare_limits {
    unsigned flows_max;                          /* TCP connections and other flows at once */
    unsigned held_frames_max;                    /* PVM frames tracked until released */
    size_t buffered_bytes_max;                   /* memory for what one side sent ahead of the other, over all flows */
    struct fragment_reassembly_limits fragments; /* for each side */
};

/* What a PVM frame whose timeout passed was waiting for: the SVM's data
 * up to its end (TCP bytes, or datagrams; the SVM is slow or says
 * less), the SVM's acknowledgement
 * of what it acknowledges (the SVM acknowledged later, e.g. a delayed
 * ACK), the SVM's SYN, FIN or RST, or something else (the rest of a
 * fragmented datagram, a diverged flow's checkpoint). */
enum output_compare_waiting {
    OUTPUT_COMPARE_WAITING_DATA,
    OUTPUT_COMPARE_WAITING_ACK,
    OUTPUT_COMPARE_WAITING_EVENT,
    OUTPUT_COMPARE_WAITING_OTHER,
    OUTPUT_COMPARE_WAITING_COUNT
};
const char *output_compare_waiting_name(enum output_compare_waiting waiting);

/* The last difference found, for an operator: what and where. */
struct output_compare_difference {
    uint64_t count; /* differences found so far; 0: none yet, nothing below is set */
    enum output_compare_cause cause;
    bool by_primary; /* the PVM's frame showed it (else the SVM's) */
    uint64_t at_us;  /* clock_monotonic_us */
    char flow[96];   /* packet_describe's words; "" when no packet names it (a timeout) */
    /* A timeout: what the oldest waiting PVM frame still needed of the
     * SVM (output_compare_waiting_name); else OUTPUT_COMPARE_WAITING_OTHER. */
    enum output_compare_waiting waited_for;
    uint32_t waited_bytes; /* TCP, WAITING_DATA or WAITING_ACK: how many bytes the SVM was behind */
};

struct output_compare_counters {
    uint64_t differences[OUTPUT_COMPARE_CAUSE_COUNT];
    uint64_t timeouts_waiting[OUTPUT_COMPARE_WAITING_COUNT]; /* the timeouts, by what they waited for */
    uint64_t parse_errors[PACKET_PARSE_RESULT_COUNT];        /* by what was malformed, both sides */
    uint64_t primary_frames, secondary_frames;
    uint64_t released_matched; /* PVM frames whose twin the SVM sent */
    uint64_t released_at_once; /* pure ACKs */
    uint64_t matched_bytes;    /* TCP payload */
    uint64_t matched_messages; /* datagrams, ARP, other frames */
    /* Drops, each also a difference (overflow) so a checkpoint clears it. */
    uint64_t dropped_held_full, dropped_flow_table_full, dropped_buffer_full;
    uint64_t dropped_out_of_order; /* a TCP segment past a gap in its side's stream: waits for a retransmission */
    uint64_t tcp_restarts;         /* a new connection on the ports of a finished one */
    uint64_t tcp_restarts_refused; /* ... of one not finished: a difference (protocol) */
    uint64_t checkpoints;          /* output_compare_reset calls */
    struct output_compare_difference last_difference;
};

enum output_compare_side { OUTPUT_COMPARE_PRIMARY, OUTPUT_COMPARE_SECONDARY };

struct output_compare_result {
    bool difference; /* found by this call (the first in its flow) */
    enum output_compare_cause cause;
    unsigned releasable; /* PVM frames output_compare_take_releasable now has, in all */
};

struct compare_flow;
struct compare_held;

struct output_compare {
    struct output_compare_limits limits;
    struct compare_flow *flows; /* by their entry in flow_table */
    struct flow_table flow_table;
    struct compare_held *held; /* a ring indexed by handle */
    uint64_t next_handle;      /* handles start at 1 */
    uint64_t oldest_handle;    /* the oldest not yet taken; next_handle if none */
    uint64_t *ready;           /* handles released and not yet taken: a ring */
    unsigned ready_head, ready_count;
    size_t buffered_bytes;                    /* in the flows' pending buffers */
    size_t buffered_capacity;                 /* those buffers' size: at most buffered_bytes_max */
    struct fragment_reassembly reassembly[2]; /* by side */
    struct output_compare_counters counters;
};

#define OUTPUT_COMPARE_HANDLE_NONE 0

int output_compare_init(struct output_compare *compare, const struct output_compare_limits *limits,
                        struct error *error);
void output_compare_destroy(struct output_compare *compare);

/* A frame the PVM sent, which the caller holds: *handle names it (never
 * OUTPUT_COMPARE_HANDLE_NONE) until output_compare_take_releasable gives
 * it back or a reset forgets it. A frame the comparator had no room to
 * track gets no handle (a difference, overflow): the caller holds it until
 * the checkpoint. The frame is not kept: the caller may reuse its memory. */
struct output_compare_result output_compare_add_primary(struct output_compare *compare, const uint8_t *frame,
                                                        size_t length, uint64_t now_us, uint64_t *handle);

/* A frame the SVM sent (after the secondary's sequence shift). */
struct output_compare_result output_compare_add_secondary(struct output_compare *compare, const uint8_t *frame,
                                                          size_t length, uint64_t now_us);

/* The next PVM frame that may leave: false when there is none. Frames of
 * one flow come in the order the PVM sent them. */
bool output_compare_take_releasable(struct output_compare *compare, uint64_t *handle);

/* When the oldest PVM frame still waiting for its twin was added: false if
 * none waits. The caller compares it with its timeout. */
bool output_compare_oldest_unmatched_us(const struct output_compare *compare, uint64_t *added_us);

/* The caller's timeout fired: counted as a difference (timeout). */
void output_compare_note_timeout(struct output_compare *compare, uint64_t now_us);

/* A checkpoint: everything held is released by it, so every handle, flow,
 * buffered byte and fragment is forgotten; counters stay. */
void output_compare_reset(struct output_compare *compare);

/* The counters, with the fragment reassembly's of each side. */
void output_compare_get_counters(const struct output_compare *compare, struct output_compare_counters *counters,
                                 struct fragment_reassembly_counters *primary_fragments,
                                 struct fragment_reassembly_counters *secondary_fragments);

const char *output_compare_cause_name(enum output_compare_cause cause);

/* The flow a parsed frame belongs to, as the comparator keys it (VLAN ids,
 * protocol, addresses and ports; a flow's two directions are two flows). */
void output_compare_flow_key(const struct packet_view *view, uint8_t key[FLOW_KEY_SIZE]);

#endif
