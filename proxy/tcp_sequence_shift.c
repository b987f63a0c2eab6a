/* The secondary's TCP sequence shift (tcp_sequence_shift.h). */
#include <stdlib.h>
#include <string.h>

#include "packet_parse.h"
#include "stream.h"
#include "tcp_sequence_shift.h"

#define KEY_SIZE FLOW_KEY_SIZE /* VLAN ids, the VM's port and the peer's, the VM's address and the peer's */
#define KEY_USED 41            /* connection_key's bytes; the rest are zero */
#define KEY_VLANS_MAX 2
_Static_assert(KEY_SIZE == STREAM_TCP_SHIFT_KEY_LENGTH, "a TCP_SHIFT entry carries a connection key whole");
#define TCP_OPTION_END 0
#define TCP_OPTION_NOP 1
#define TCP_OPTION_SACK 5
#define TCP_OPTION_TIMESTAMPS 8
#define TCP_OPTION_TIMESTAMPS_LENGTH 10

struct tcp_shift_connection {
    bool offset_known;
    uint32_t svm_isn;
    uint32_t offset;            /* ISN(PVM) - ISN(SVM), modulo 2^32 */
    bool syn_had_timestamp;     /* the SVM's SYN carried TCP timestamps */
    uint32_t svm_syn_timestamp; /* ... and this TSval */
    uint32_t timestamp_offset;  /* what the SVM's TSval adds (0: its clock is the PVM's) */
};

int tcp_sequence_shift_init(struct tcp_sequence_shift *shift, unsigned connections_max, struct error *error)
{
    memset(shift, 0, sizeof *shift);
    if (flow_table_init(&shift->table, connections_max, error) != 0)
        return error_prefix(error, "tcp sequence shift: ");
    shift->connections = calloc(connections_max, sizeof *shift->connections);
    if (!shift->connections) {
        flow_table_destroy(&shift->table);
        return error_set(error, "tcp sequence shift: out of memory");
    }
    shift->connections_max = connections_max;
    return 0;
}

void tcp_sequence_shift_destroy(struct tcp_sequence_shift *shift)
{
    free(shift->connections);
    shift->connections = NULL;
    flow_table_destroy(&shift->table);
}

void tcp_sequence_shift_reset(struct tcp_sequence_shift *shift)
{
    flow_table_clear(&shift->table);
    shift->counters.restored = 0;
}

size_t tcp_sequence_shift_save(const struct tcp_sequence_shift *shift, uint8_t *entries, size_t capacity)
{
    size_t count = 0;
    uint32_t position = 0, entry;
    while (count < capacity && (entry = flow_table_next(&shift->table, &position)) != FLOW_TABLE_NONE) {
        const struct tcp_shift_connection *connection = &shift->connections[entry];
        /* Known offsets of 0 shift nothing (a restored entry may say so):
         * the connection needs no entry. */
        if (connection->offset_known && connection->offset == 0 && connection->timestamp_offset == 0)
            continue;
        stream_tcp_shift_entry_put(entries + count++ * STREAM_TCP_SHIFT_ENTRY_LENGTH,
                                   &(struct stream_tcp_shift_entry){
                                       .key = shift->table.keys[entry],
                                       .flags = (connection->offset_known ? STREAM_TCP_SHIFT_OFFSET_KNOWN : 0) |
                                                (connection->syn_had_timestamp ? STREAM_TCP_SHIFT_SYN_TIMESTAMP : 0),
                                       .isn = connection->svm_isn,
                                       .offset = connection->offset,
                                       .syn_timestamp = connection->svm_syn_timestamp,
                                       .timestamp_offset = connection->timestamp_offset,
                                   });
    }
    return count;
}

/* Whether connection_key could have made this key. */
static bool key_is_possible(const uint8_t key[KEY_SIZE])
{
    if (key[0] > KEY_VLANS_MAX)
        return false;
    for (unsigned i = 0; i < KEY_VLANS_MAX; i++) {
        uint16_t vlan = packet_read_16(key + 1 + 2 * i);
        if (vlan > 0x0fff || (i >= key[0] && vlan != 0))
            return false;
    }
    for (size_t i = KEY_USED; i < KEY_SIZE; i++)
        if (key[i] != 0)
            return false;
    return true;
}

int tcp_sequence_shift_restore(struct tcp_sequence_shift *shift, const uint8_t *entries, size_t count,
                               struct error *error)
{
    tcp_sequence_shift_reset(shift);
    for (size_t i = 0; i < count; i++) {
        struct stream_tcp_shift_entry in;
        stream_tcp_shift_entry_fields(entries + i * STREAM_TCP_SHIFT_ENTRY_LENGTH, &in);
        const char *problem = NULL;
        uint32_t entry = FLOW_TABLE_NONE;
        if (!key_is_possible(in.key))
            problem = "a key no TCP connection has";
        else if (flow_table_find(&shift->table, in.key) != FLOW_TABLE_NONE)
            problem = "a connection that was already given";
        else if ((entry = flow_table_insert(&shift->table, in.key)) == FLOW_TABLE_NONE)
            problem = "more connections than the table holds";
        if (problem) {
            tcp_sequence_shift_reset(shift);
            return error_set(error, "tcp sequence shift: connection %zu of %zu: %s", i + 1, count, problem);
        }
        shift->connections[entry] = (struct tcp_shift_connection){
            .offset_known = in.flags & STREAM_TCP_SHIFT_OFFSET_KNOWN,
            .svm_isn = in.isn,
            .offset = in.offset,
            .syn_had_timestamp = in.flags & STREAM_TCP_SHIFT_SYN_TIMESTAMP,
            .svm_syn_timestamp = in.syn_timestamp,
            .timestamp_offset = in.timestamp_offset,
        };
        shift->counters.restored++;
    }
    return 0;
}

void tcp_sequence_shift_update_checksum_16(uint8_t *checksum, uint16_t old_word, uint16_t new_word)
{
    /* HC' = ~(~HC + ~m + m'), in one's complement arithmetic. */
    uint32_t sum = (uint16_t)~packet_read_16(checksum) + (uint32_t)(uint16_t)~old_word + new_word;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    packet_write_16(checksum, (uint16_t)~sum);
}

void tcp_sequence_shift_update_checksum_32(uint8_t *checksum, uint32_t old_value, uint32_t new_value)
{
    tcp_sequence_shift_update_checksum_16(checksum, (uint16_t)(old_value >> 16), (uint16_t)(new_value >> 16));
    tcp_sequence_shift_update_checksum_16(checksum, (uint16_t)old_value, (uint16_t)new_value);
}

/* The connection as the VM sees it: its own end first either way. */
static void connection_key(const struct packet_view *view, bool outbound, uint8_t key[KEY_SIZE])
{
    memset(key, 0, KEY_SIZE);
    key[0] = (uint8_t)view->vlan_count;
    for (unsigned i = 0; i < view->vlan_count; i++)
        packet_write_16(key + 1 + 2 * i, view->vlan_tci[i] & 0x0fff);
    const uint8_t *vm_address = outbound ? view->source_address : view->destination_address;
    const uint8_t *peer_address = outbound ? view->destination_address : view->source_address;
    packet_write_16(key + 5, outbound ? view->source_port : view->destination_port);
    packet_write_16(key + 7, outbound ? view->destination_port : view->source_port);
    memcpy(key + 9, vm_address, view->address_length);
    memcpy(key + 25, peer_address, view->address_length);
}

static struct tcp_shift_connection *find(struct tcp_sequence_shift *shift, const uint8_t key[KEY_SIZE])
{
    uint32_t entry = flow_table_find(&shift->table, key);
    return entry == FLOW_TABLE_NONE ? NULL : &shift->connections[entry];
}

/* Parses a TCP frame; false for anything else (left alone). */
static bool parse_tcp(struct tcp_sequence_shift *shift, const uint8_t *frame, size_t length, struct packet_view *view)
{
    if (packet_parse(frame, length, view) != PACKET_PARSE_OK)
        return false;
    if (view->fragment && view->protocol == PACKET_PROTOCOL_TCP)
        shift->counters.fragments_passed++;
    return view->transport == PACKET_TRANSPORT_TCP;
}

/* The TCP options one at a time: where the next one at or after *position
 * starts (*position moves past it, *option_length is its length), or 0 at
 * the end of the options or at a malformed one (the rest are left as they
 * are, for the SVM's stack to judge). Start with *position = 20. */
static size_t next_option(const uint8_t *tcp, size_t header_length, size_t *position, size_t *option_length)
{
    while (*position < header_length) {
        size_t at = *position;
        if (tcp[at] == TCP_OPTION_END)
            return 0;
        if (tcp[at] == TCP_OPTION_NOP) {
            (*position)++;
            continue;
        }
        if (header_length - at < 2)
            return 0;
        size_t length = tcp[at + 1];
        if (length < 2 || length > header_length - at)
            return 0;
        *position = at + length;
        *option_length = length;
        return at;
    }
    return 0;
}

/* Where the timestamps option (kind 8: TSval, TSecr) sits in the TCP
 * header, or 0 when it has none (or the options are malformed). */
static size_t find_timestamps(const uint8_t *tcp, size_t header_length)
{
    size_t position = 20, length, at;
    while ((at = next_option(tcp, header_length, &position, &length)) != 0)
        if (tcp[at] == TCP_OPTION_TIMESTAMPS)
            return length == TCP_OPTION_TIMESTAMPS_LENGTH ? at : 0;
    return 0;
}

/* Adds `add` (mod 2^32) to the 32-bit field at `field` of the TCP header
 * (seq, ack, a SACK edge, TSval or TSecr), fixing the checksum unless the
 * device finishes it. */
static void add_to_field(uint8_t *tcp, uint8_t *field, uint32_t add, bool checksum_partial)
{
    uint32_t old_value = packet_read_32(field), new_value = old_value + add;
    packet_write_32(field, new_value);
    if (!checksum_partial)
        tcp_sequence_shift_update_checksum_32(tcp + 16, old_value, new_value);
}

bool tcp_sequence_shift_outbound(struct tcp_sequence_shift *shift, uint8_t *frame, size_t length, bool checksum_partial)
{
    struct packet_view view;
    if (!parse_tcp(shift, frame, length, &view))
        return false;
    uint8_t key[KEY_SIZE];
    connection_key(&view, true, key);
    struct tcp_shift_connection *connection = find(shift, key);
    if (view.tcp_flags & PACKET_TCP_SYN) {
        /* A SYN with another ISN is a new connection on the same ports. */
        if (!connection || connection->svm_isn != view.tcp_sequence) {
            if (!connection) {
                uint32_t entry = flow_table_insert(&shift->table, key);
                if (entry == FLOW_TABLE_NONE) {
                    shift->counters.dropped_table_full++;
                    return false;
                }
                connection = &shift->connections[entry];
            }
            uint8_t *tcp = frame + (view.transport_header - frame);
            size_t timestamps = find_timestamps(tcp, view.transport_header_length);
            *connection = (struct tcp_shift_connection){
                .svm_isn = view.tcp_sequence,
                .syn_had_timestamp = timestamps != 0,
                .svm_syn_timestamp = timestamps ? packet_read_32(tcp + timestamps + 2) : 0,
            };
            shift->counters.connections++;
        }
    }
    if (!connection || !connection->offset_known || (connection->offset == 0 && connection->timestamp_offset == 0))
        return false;
    uint8_t *tcp = frame + (view.transport_header - frame);
    if (connection->offset != 0)
        add_to_field(tcp, tcp + 4, connection->offset, checksum_partial);
    size_t timestamps = connection->timestamp_offset ? find_timestamps(tcp, view.transport_header_length) : 0;
    if (timestamps) {
        add_to_field(tcp, tcp + timestamps + 2, connection->timestamp_offset, checksum_partial);
        shift->counters.timestamps_rewritten++;
    }
    shift->counters.outbound_rewritten++;
    return true;
}

/* Shifts the edges of each SACK block in the options by -offset. */
static void shift_sack_blocks(struct tcp_sequence_shift *shift, uint8_t *tcp, size_t header_length, uint32_t offset,
                              bool checksum_partial)
{
    size_t position = 20, length, at;
    while ((at = next_option(tcp, header_length, &position, &length)) != 0) {
        if (tcp[at] != TCP_OPTION_SACK || (length - 2) % 8 != 0)
            continue;
        for (size_t edge = at + 2; edge < at + length; edge += 4)
            add_to_field(tcp, tcp + edge, (uint32_t)-offset, checksum_partial);
        shift->counters.sack_blocks_rewritten += (length - 2) / 8;
    }
}

/* The client's first ACK echoes the PVM's SYN-ACK TSval (TSecr); the
 * SVM's own SYN-ACK had svm_syn_timestamp. Both VMs' TCP clocks are the
 * guest's milliseconds plus a per-connection offset from a secret the
 * guest draws once: when the secret predates the checkpoint, both VMs
 * have the same one and the difference is only how much later the SVM
 * answered (a few ms; shifting by it would make the SVM's clock run
 * late). When the secret was drawn since (a fresh guest's first
 * connections), the two clocks are far apart at random, and after a
 * failover the client would drop the SVM's segments as old (PAWS, RFC
 * 7323) about half the time: then the SVM's TSval is shifted onto the
 * PVM's, TCP_SHIFT_TIMESTAMP_MARGIN_MS ahead so that the SVM's lateness
 * at the handshake cannot put it behind. */
static void learn_timestamp_offset(struct tcp_sequence_shift *shift, struct tcp_shift_connection *connection,
                                   uint32_t echoed, bool has_timestamps)
{
    connection->timestamp_offset = 0;
    if (!has_timestamps || !connection->syn_had_timestamp || echoed == 0)
        return;
    int32_t difference = (int32_t)(echoed - connection->svm_syn_timestamp);
    if (difference > -TCP_SHIFT_TIMESTAMP_SAME_CLOCK_MS && difference < TCP_SHIFT_TIMESTAMP_SAME_CLOCK_MS)
        return;
    connection->timestamp_offset = (uint32_t)difference + TCP_SHIFT_TIMESTAMP_MARGIN_MS;
    shift->counters.timestamp_offsets_learned++;
}

bool tcp_sequence_shift_inbound(struct tcp_sequence_shift *shift, uint8_t *frame, size_t length, bool checksum_partial)
{
    struct packet_view view;
    if (!parse_tcp(shift, frame, length, &view) || !(view.tcp_flags & PACKET_TCP_ACK))
        return false;
    uint8_t key[KEY_SIZE];
    connection_key(&view, false, key);
    struct tcp_shift_connection *connection = find(shift, key);
    if (!connection)
        return false;
    uint8_t *tcp = frame + (view.transport_header - frame);
    /* Needed to learn the timestamp offset, then only to apply one. */
    size_t timestamps = !connection->offset_known || connection->timestamp_offset
                            ? find_timestamps(tcp, view.transport_header_length)
                            : 0;
    if (!connection->offset_known) {
        connection->offset = view.tcp_acknowledgment - 1 - connection->svm_isn;
        connection->offset_known = true;
        shift->counters.offsets_learned++;
        learn_timestamp_offset(shift, connection, timestamps ? packet_read_32(tcp + timestamps + 6) : 0,
                               timestamps != 0);
        /* Nothing to shift (both VMs chose the same ISN, or a survivor's
         * own new connection): the entry goes, so that a survivor that
         * serves for months does not fill its table with them. */
        if (connection->offset == 0 && connection->timestamp_offset == 0) {
            flow_table_remove(&shift->table, (uint32_t)(connection - shift->connections));
            return false;
        }
    }
    if (connection->offset == 0 && connection->timestamp_offset == 0)
        return false;
    if (connection->offset != 0) {
        add_to_field(tcp, tcp + 8, (uint32_t)-connection->offset, checksum_partial);
        shift_sack_blocks(shift, tcp, view.transport_header_length, connection->offset, checksum_partial);
    }
    /* The echo of a TSval (0 echoes nothing: RFC 7323 sends TSecr 0
     * until there is one). */
    if (timestamps && connection->timestamp_offset && packet_read_32(tcp + timestamps + 6) != 0) {
        add_to_field(tcp, tcp + timestamps + 6, (uint32_t)-connection->timestamp_offset, checksum_partial);
        shift->counters.timestamps_rewritten++;
    }
    shift->counters.inbound_rewritten++;
    return true;
}
