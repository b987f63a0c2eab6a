/* Bounded reassembly of IPv4 and IPv6 fragments for the comparing proxy:
 * the comparator compares whole datagrams, so two VMs that cut the same
 * datagram differently still match.
 *
 * A datagram in progress is keyed by (IP version, source, destination,
 * identification, protocol). Bounded three ways: at most datagrams_max in
 * progress, at most 65535 bytes each (what the IP length fields can say),
 * at most total_bytes_max of fragment data over all of them; and a
 * datagram older than expiry_us (by the caller's clock: no clock here) is
 * dropped. Overlapping fragments, a second "last" fragment that disagrees,
 * or data past the last fragment's end are errors: the datagram is dropped
 * and the error counted. Single-threaded: the caller serializes. */
#ifndef COLO_PROXY_FRAGMENT_REASSEMBLY_H
#define COLO_PROXY_FRAGMENT_REASSEMBLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "packet_parse.h"

#define FRAGMENT_DATAGRAM_BYTES_MAX 65535u
/* Room for the header of the first fragment: IPv4's 60, or IPv6's fixed
 * header with the extension headers before the fragment header. */
#define FRAGMENT_HEADER_ROOM 512u

struct fragment_reassembly_limits {
    unsigned datagrams_max;
    size_t total_bytes_max;
    uint64_t expiry_us;
};

enum fragment_result {
    FRAGMENT_INCOMPLETE,      /* kept; more to come */
    FRAGMENT_COMPLETE,        /* the datagram is whole: see the out parameters */
    FRAGMENT_OVERLAP,         /* overlaps a fragment already there: datagram dropped */
    FRAGMENT_INCONSISTENT,    /* data past the end, or a second end elsewhere: dropped */
    FRAGMENT_TOO_LONG,        /* the datagram would pass 65535 bytes: dropped */
    FRAGMENT_HEADER_TOO_LONG, /* an unfragmentable part over FRAGMENT_HEADER_ROOM: dropped */
    FRAGMENT_FULL,            /* no room (datagrams or bytes): this fragment dropped */
    FRAGMENT_RESULT_COUNT
};

struct fragment_reassembly_counters {
    uint64_t fragments, datagrams_completed;
    uint64_t overlapping, inconsistent, too_long, header_too_long, dropped_full, expired;
};

struct fragment_datagram {
    bool in_use;
    uint8_t version, protocol;
    uint32_t id;
    uint8_t source[16], destination[16];
    uint64_t first_seen_us;
    uint64_t serial;
    size_t header_length;      /* 0 until the first fragment (offset 0) arrived */
    size_t next_header_offset; /* IPv6: the byte naming the fragment header */
    size_t data_length;        /* known once the last fragment arrived; 0 before */
    size_t received_bytes;
    uint8_t *buffer;          /* FRAGMENT_HEADER_ROOM + FRAGMENT_DATAGRAM_BYTES_MAX */
    uint8_t *received_blocks; /* a bit per 8-byte block of data */
};

struct fragment_reassembly {
    struct fragment_reassembly_limits limits;
    struct fragment_datagram *datagrams;
    size_t total_bytes;
    uint64_t next_serial;
    struct fragment_reassembly_counters counters;
};

/* Allocates everything it will use (datagrams_max buffers of 64 KiB). */
int fragment_reassembly_init(struct fragment_reassembly *reassembly, const struct fragment_reassembly_limits *limits,
                             struct error *error);
void fragment_reassembly_destroy(struct fragment_reassembly *reassembly);

/* Adds the fragment `view` (packet_parse said view->fragment). On
 * FRAGMENT_COMPLETE, *datagram and *length are the whole IP datagram (its
 * header's lengths rewritten, IPv4 flags and offset cleared, IPv6's
 * fragment header taken out), valid until the next call; parse it with
 * packet_parse_network. *serial names the datagram the fragment went to
 * (on INCOMPLETE and COMPLETE; unique until destroy), so a caller can tell
 * its fragments apart. Expires old datagrams first. */
enum fragment_result fragment_reassembly_add(struct fragment_reassembly *reassembly, const struct packet_view *view,
                                             uint64_t now_us, const uint8_t **datagram, size_t *length,
                                             uint64_t *serial);

/* Drops the datagrams older than expiry_us; returns how many. */
unsigned fragment_reassembly_expire(struct fragment_reassembly *reassembly, uint64_t now_us);

/* Drops every datagram in progress (a checkpoint); counters stay. */
void fragment_reassembly_reset(struct fragment_reassembly *reassembly);

unsigned fragment_reassembly_in_progress(const struct fragment_reassembly *reassembly);

#endif
