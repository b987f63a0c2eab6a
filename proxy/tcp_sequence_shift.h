/* The secondary's side of the comparing proxy: for each TCP connection
 * opened since the last checkpoint, the SVM chose its own initial sequence
 * number (ISN), not the PVM's, while the client only ever sees the PVM's.
 * So the secondary shifts the SVM's sequence space onto the PVM's:
 *
 *   - outbound (SVM -> compare): seq += offset, where offset = ISN(PVM) -
 *     ISN(SVM); the SVM's own SYN goes out unshifted when the offset is not
 *     known yet (the comparator takes a SYN as an event only);
 *   - inbound (the mirrored client frames -> SVM): ack -= offset, and the
 *     edges of SACK blocks (RFC 2018), which name the VM's bytes too.
 *
 * The SVM's ISN comes from its outbound SYN (or SYN-ACK); the PVM's from
 * the first inbound segment with an ACK after it, the client's SYN-ACK or
 * handshake ACK, whose ack is ISN(PVM) + 1. Connections older than the
 * last checkpoint need nothing (the SVM is a copy of the PVM then), and a
 * checkpoint (tcp_sequence_shift_reset) forgets every offset.
 *
 * A secondary that took over keeps its offsets: its VM's connections stay
 * in its own sequence space, the clients' in the dead PVM's. When it then
 * protects itself to a new secondary, the new SVM is a copy of that VM,
 * so each checkpoint carries the offsets (tcp_sequence_shift_save, a
 * TCP_SHIFT record) and the new secondary starts every epoch from them
 * (tcp_sequence_shift_restore) instead of from none: the client's frames
 * the mirror passes on, and the SVM's the comparator gets, are then in
 * the same spaces as the primary's.
 *
 * Checksums are updated incrementally (RFC 1624). A frame whose checksum
 * the device will finish (virtio's NEEDS_CSUM: the field holds the
 * pseudo-header sum, which covers neither seq, ack nor options) keeps its
 * field as it is.
 *
 * TCP timestamps (RFC 7323) are each VM's own clock, which the comparator
 * does not compare. They are shifted only when the two clocks are far
 * apart (the guest drew its timestamp secret since the checkpoint): the
 * SVM's TSval out, the client's TSecr in, by the difference the client's
 * first ACK shows (learn_timestamp_offset in the .c). Otherwise, after a
 * failover, the client's PAWS check would drop the SVM's segments as old
 * about half the time, and the connection would hang.
 *
 * Not rewritten: IP fragments of TCP segments (TCP sets DF; a fragment
 * is passed as it is, and counted). Bounded: at most connections_max
 * connections at once; one more is counted and not shifted (the comparator
 * then sees a difference, and the checkpoint that follows starts over).
 * Single-threaded: the caller serializes. */
#ifndef COLO_PROXY_TCP_SEQUENCE_SHIFT_H
#define COLO_PROXY_TCP_SEQUENCE_SHIFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "flow_table.h"

struct tcp_shift_connection;

/* Timestamps: closer than this, the two VMs' TCP clocks are one clock
 * (the SVM answered later); farther, they are shifted, and the SVM's runs
 * this far ahead of the PVM's. In milliseconds, Linux's TCP clock. */
#define TCP_SHIFT_TIMESTAMP_SAME_CLOCK_MS 1000
#define TCP_SHIFT_TIMESTAMP_MARGIN_MS 50

struct tcp_sequence_shift_counters {
    uint64_t connections; /* opened by the SVM since a checkpoint, over all time */
    uint64_t offsets_learned;
    uint64_t outbound_rewritten, inbound_rewritten, sack_blocks_rewritten;
    uint64_t timestamp_offsets_learned; /* connections whose TCP timestamps are shifted */
    uint64_t timestamps_rewritten;      /* TSvals out and TSecrs in */
    uint64_t dropped_table_full;        /* connections not shifted: no room */
    uint64_t fragments_passed;          /* TCP in IP fragments: not shifted */
    uint64_t restored;                  /* connections carried in by the last checkpoint or the initial copy */
};

struct tcp_sequence_shift {
    unsigned connections_max;
    struct tcp_shift_connection *connections; /* by their entry in table */
    struct flow_table table;
    struct tcp_sequence_shift_counters counters;
};

int tcp_sequence_shift_init(struct tcp_sequence_shift *shift, unsigned connections_max, struct error *error);
void tcp_sequence_shift_destroy(struct tcp_sequence_shift *shift);

/* A frame the SVM sent: learns its ISN from a SYN, shifts seq. Returns
 * whether the frame changed. */
bool tcp_sequence_shift_outbound(struct tcp_sequence_shift *shift, uint8_t *frame, size_t length,
                                 bool checksum_partial);

/* A mirrored client frame on its way to the SVM: learns the offset, shifts
 * ack and SACK blocks. Returns whether the frame changed. */
bool tcp_sequence_shift_inbound(struct tcp_sequence_shift *shift, uint8_t *frame, size_t length, bool checksum_partial);

/* A checkpoint: the SVM is the PVM again; every offset is forgotten. */
void tcp_sequence_shift_reset(struct tcp_sequence_shift *shift);

/* The connections a checkpoint must carry (those that shift something, or
 * whose offset is not known yet), as TCP_SHIFT entries (stream.h) into
 * entries[capacity * STREAM_TCP_SHIFT_ENTRY_LENGTH]; returns how many
 * (at most capacity: the table holds no more than connections_max). */
size_t tcp_sequence_shift_save(const struct tcp_sequence_shift *shift, uint8_t *entries, size_t capacity);

/* The table becomes the `count` TCP_SHIFT entries: every offset before is
 * forgotten (a checkpoint's start). A key that cannot be one of ours, a
 * connection twice, or more than connections_max: -1 with the table
 * empty (a primary carrying nothing). */
int tcp_sequence_shift_restore(struct tcp_sequence_shift *shift, const uint8_t *entries, size_t count,
                               struct error *error);

/* RFC 1624 equation 3: the checksum field at `checksum` after a 16-bit
 * word it covers went from old_word to new_word. */
void tcp_sequence_shift_update_checksum_16(uint8_t *checksum, uint16_t old_word, uint16_t new_word);
void tcp_sequence_shift_update_checksum_32(uint8_t *checksum, uint32_t old_value, uint32_t new_value);

#endif
