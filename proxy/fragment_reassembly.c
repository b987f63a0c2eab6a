/* Bounded IP fragment reassembly (fragment_reassembly.h), from RFC 791
 * and RFC 8200 section 4.5. Each datagram in progress has a fixed buffer
 * for its data and a bit per 8-byte block received: fragments start on
 * 8-byte boundaries, so any overlap shows as a block received twice. */
#include <stdlib.h>
#include <string.h>

#include "fragment_reassembly.h"

#define BLOCKS_BYTES ((FRAGMENT_DATAGRAM_BYTES_MAX / 8 + 1 + 7) / 8)

int fragment_reassembly_init(struct fragment_reassembly *reassembly, const struct fragment_reassembly_limits *limits,
                             struct error *error)
{
    memset(reassembly, 0, sizeof *reassembly);
    if (limits->datagrams_max == 0 || limits->datagrams_max > 4096)
        return error_set(error, "fragment reassembly: %u datagrams in progress (1 to 4096)", limits->datagrams_max);
    reassembly->limits = *limits;
    reassembly->datagrams = calloc(limits->datagrams_max, sizeof *reassembly->datagrams);
    if (!reassembly->datagrams)
        return error_set(error, "fragment reassembly: out of memory");
    for (unsigned i = 0; i < limits->datagrams_max; i++) {
        struct fragment_datagram *datagram = &reassembly->datagrams[i];
        datagram->buffer = malloc(FRAGMENT_HEADER_ROOM + FRAGMENT_DATAGRAM_BYTES_MAX);
        datagram->received_blocks = malloc(BLOCKS_BYTES);
        if (!datagram->buffer || !datagram->received_blocks) {
            fragment_reassembly_destroy(reassembly);
            return error_set(error, "fragment reassembly: out of memory");
        }
    }
    reassembly->next_serial = 1;
    return 0;
}

void fragment_reassembly_destroy(struct fragment_reassembly *reassembly)
{
    if (reassembly->datagrams) {
        for (unsigned i = 0; i < reassembly->limits.datagrams_max; i++) {
            free(reassembly->datagrams[i].buffer);
            free(reassembly->datagrams[i].received_blocks);
        }
    }
    free(reassembly->datagrams);
    reassembly->datagrams = NULL;
}

static void release(struct fragment_reassembly *reassembly, struct fragment_datagram *datagram)
{
    reassembly->total_bytes -= datagram->received_bytes;
    datagram->in_use = false;
}

unsigned fragment_reassembly_expire(struct fragment_reassembly *reassembly, uint64_t now_us)
{
    unsigned expired = 0;
    for (unsigned i = 0; i < reassembly->limits.datagrams_max; i++) {
        struct fragment_datagram *datagram = &reassembly->datagrams[i];
        /* A clock that went backwards (the caller's) expires nothing. */
        if (datagram->in_use && now_us > datagram->first_seen_us &&
            now_us - datagram->first_seen_us > reassembly->limits.expiry_us) {
            release(reassembly, datagram);
            expired++;
        }
    }
    reassembly->counters.expired += expired;
    return expired;
}

void fragment_reassembly_reset(struct fragment_reassembly *reassembly)
{
    for (unsigned i = 0; i < reassembly->limits.datagrams_max; i++)
        reassembly->datagrams[i].in_use = false;
    reassembly->total_bytes = 0;
}

unsigned fragment_reassembly_in_progress(const struct fragment_reassembly *reassembly)
{
    unsigned count = 0;
    for (unsigned i = 0; i < reassembly->limits.datagrams_max; i++)
        count += reassembly->datagrams[i].in_use;
    return count;
}

static bool same_datagram(const struct fragment_datagram *datagram, const struct packet_view *view, uint8_t version)
{
    return datagram->in_use && datagram->version == version && datagram->id == view->fragment_id &&
           datagram->protocol == view->protocol &&
           memcmp(datagram->source, view->source_address, view->address_length) == 0 &&
           memcmp(datagram->destination, view->destination_address, view->address_length) == 0;
}

static bool block_received(const struct fragment_datagram *datagram, size_t block)
{
    return (datagram->received_blocks[block / 8] >> (block % 8)) & 1;
}

static enum fragment_result fail(struct fragment_reassembly *reassembly, struct fragment_datagram *datagram,
                                 enum fragment_result result)
{
    struct fragment_reassembly_counters *counters = &reassembly->counters;
    switch (result) {
    case FRAGMENT_OVERLAP:
        counters->overlapping++;
        break;
    case FRAGMENT_INCONSISTENT:
        counters->inconsistent++;
        break;
    case FRAGMENT_TOO_LONG:
        counters->too_long++;
        break;
    case FRAGMENT_HEADER_TOO_LONG:
        counters->header_too_long++;
        break;
    default:
        abort(); /* only the errors above drop a datagram */
    }
    release(reassembly, datagram);
    return result;
}

/* The whole datagram, its header rewritten to say so. */
static const uint8_t *assemble(struct fragment_datagram *datagram, size_t *length)
{
    uint8_t *header = datagram->buffer + FRAGMENT_HEADER_ROOM - datagram->header_length;
    if (datagram->version == 4) {
        packet_write_16(header + 2, (uint16_t)(datagram->header_length + datagram->data_length));
        /* Keep "don't fragment"; clear "more fragments" and the offset. */
        packet_write_16(header + 6, packet_read_16(header + 6) & 0x4000);
        packet_write_16(header + 10, 0);
        uint32_t sum = 0;
        for (size_t i = 0; i < datagram->header_length; i += 2)
            sum += packet_read_16(header + i);
        while (sum >> 16)
            sum = (sum & 0xffff) + (sum >> 16);
        packet_write_16(header + 10, (uint16_t)~sum);
    } else {
        packet_write_16(header + 4, (uint16_t)(datagram->header_length - 40 + datagram->data_length));
        header[datagram->next_header_offset] = datagram->protocol;
    }
    *length = datagram->header_length + datagram->data_length;
    return header;
}

enum fragment_result fragment_reassembly_add(struct fragment_reassembly *reassembly, const struct packet_view *view,
                                             uint64_t now_us, const uint8_t **datagram_out, size_t *length,
                                             uint64_t *serial)
{
    *datagram_out = NULL;
    *length = 0;
    *serial = 0;
    reassembly->counters.fragments++;
    fragment_reassembly_expire(reassembly, now_us);
    uint8_t version = view->network == PACKET_NETWORK_IPV4 ? 4 : 6;

    struct fragment_datagram *datagram = NULL, *free_slot = NULL;
    for (unsigned i = 0; i < reassembly->limits.datagrams_max && !datagram; i++) {
        struct fragment_datagram *candidate = &reassembly->datagrams[i];
        if (same_datagram(candidate, view, version))
            datagram = candidate;
        else if (!candidate->in_use && !free_slot)
            free_slot = candidate;
    }
    size_t offset = view->fragment_offset, data_length = view->ip_payload_length;
    if (reassembly->total_bytes + data_length > reassembly->limits.total_bytes_max || (!datagram && !free_slot)) {
        reassembly->counters.dropped_full++;
        return FRAGMENT_FULL;
    }
    if (!datagram) {
        datagram = free_slot;
        datagram->in_use = true;
        datagram->version = version;
        datagram->protocol = view->protocol;
        datagram->id = view->fragment_id;
        memset(datagram->source, 0, sizeof datagram->source);
        memset(datagram->destination, 0, sizeof datagram->destination);
        memcpy(datagram->source, view->source_address, view->address_length);
        memcpy(datagram->destination, view->destination_address, view->address_length);
        datagram->first_seen_us = now_us;
        datagram->serial = reassembly->next_serial++;
        datagram->header_length = datagram->next_header_offset = 0;
        datagram->data_length = datagram->received_bytes = 0;
        memset(datagram->received_blocks, 0, BLOCKS_BYTES);
    }
    *serial = datagram->serial;

    size_t end = offset + data_length;
    if (end > FRAGMENT_DATAGRAM_BYTES_MAX)
        return fail(reassembly, datagram, FRAGMENT_TOO_LONG);
    bool last = !view->more_fragments;
    size_t first_block = offset / 8, end_block = (end + 7) / 8;
    if (datagram->data_length && (end > datagram->data_length || (last && end != datagram->data_length)))
        return fail(reassembly, datagram, FRAGMENT_INCONSISTENT);
    if (last) {
        /* Nothing received may lie past the end this fragment sets. */
        for (size_t block = end_block; block <= FRAGMENT_DATAGRAM_BYTES_MAX / 8; block++)
            if (block_received(datagram, block))
                return fail(reassembly, datagram, FRAGMENT_INCONSISTENT);
    }
    for (size_t block = first_block; block < end_block; block++)
        if (block_received(datagram, block))
            return fail(reassembly, datagram, FRAGMENT_OVERLAP);
    if (offset == 0) {
        if (view->ip_header_length > FRAGMENT_HEADER_ROOM)
            return fail(reassembly, datagram, FRAGMENT_HEADER_TOO_LONG);
        datagram->header_length = view->ip_header_length;
        datagram->next_header_offset = view->ipv6_fragment_next_header_offset;
        memcpy(datagram->buffer + FRAGMENT_HEADER_ROOM - view->ip_header_length, view->network_header,
               view->ip_header_length);
    }
    if (last) {
        if (end == 0)
            return fail(reassembly, datagram, FRAGMENT_INCONSISTENT); /* a datagram of no data in pieces */
        datagram->data_length = end;
    }
    memcpy(datagram->buffer + FRAGMENT_HEADER_ROOM + offset, view->ip_payload, data_length);
    for (size_t block = first_block; block < end_block; block++)
        datagram->received_blocks[block / 8] |= (uint8_t)(1u << (block % 8));
    datagram->received_bytes += data_length;
    reassembly->total_bytes += data_length;

    if (!datagram->header_length || !datagram->data_length || datagram->received_bytes != datagram->data_length)
        return FRAGMENT_INCOMPLETE;
    /* Both length fields are 16 bits: IPv4's counts its header too. */
    size_t counted = datagram->version == 4 ? datagram->header_length : datagram->header_length - 40;
    if (counted + datagram->data_length > FRAGMENT_DATAGRAM_BYTES_MAX)
        return fail(reassembly, datagram, FRAGMENT_TOO_LONG);
    *datagram_out = assemble(datagram, length);
    reassembly->counters.datagrams_completed++;
    release(reassembly, datagram);
    return FRAGMENT_COMPLETE;
}
