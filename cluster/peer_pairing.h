/* Which two connections make one replication session. The primary opens
 * two, the stream (checkpoints) and the mirror (client frames, heartbeats),
 * each authenticated on its own (peer_connection.h); then, inside each, it
 * says which it is in a hello:
 *
 *     offset  size
 *     0       8     "COLOPAIR"
 *     8       1     version (1)
 *     9       1     channel: 1 stream, 2 mirror
 *     10      2     zero
 *     12      32    binding: the stream session's exporter (TLS), or, for
 *                   plain TCP, a random value the stream's hello chose and
 *                   the mirror's repeats
 *
 * and the secondary answers each accepted hello with "COLOPAIR", 1, the
 * channel, 0, 0 (12 bytes). A mirror pairs only with the stream whose
 * binding it carries, so it belongs to the same authenticated peer; with
 * TLS nobody without that session's keys can make one.
 *
 * The waiting secondary refuses whatever is not its primary (a failed
 * handshake, garbage, a cut or missing hello, an unpaired mirror), counts
 * and reports it, and keeps waiting: a stranger costs the real primary at
 * most the handshake timeout. */
#ifndef COLO_CLUSTER_PEER_PAIRING_H
#define COLO_CLUSTER_PEER_PAIRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "peer_connection.h"

#define PEER_HELLO_SIZE 44
#define PEER_HELLO_REPLY_SIZE 12

enum peer_channel {
    PEER_CHANNEL_STREAM = 1,
    PEER_CHANNEL_MIRROR = 2,
};

struct peer_hello {
    enum peer_channel channel;
    uint8_t binding[PEER_BINDING_SIZE];
};

void peer_hello_encode(const struct peer_hello *hello, uint8_t bytes[PEER_HELLO_SIZE]);
/* Checks every field; the error says which is wrong (and recognises a TLS
 * ClientHello sent to a plain-TCP secondary). */
int peer_hello_parse(const uint8_t *bytes, size_t size, struct peer_hello *hello, struct error *err);

struct peer_pair {
    struct peer_connection *stream;
    struct peer_connection *mirror;
};

void peer_pair_close(struct peer_pair *pair);

struct peer_pairing_options {
    int connect_timeout_ms;   /* the primary: per TCP connect (socket_connect_within) */
    int handshake_timeout_ms; /* per connection: handshake and hello */
    int pair_timeout_ms;      /* the secondary: from a stream to its mirror */
    /* The stream's TCP socket buffer (SO_SNDBUF on the client, SO_RCVBUF on
     * the server), 0 for the kernel's: it bounds what is in flight. */
    int stream_socket_buffer;
};

void peer_pairing_options_defaults(struct peer_pairing_options *options);

/* The primary: two connections to host_and_port, authenticated and paired,
 * ready for the layers above (relays started). */
int peer_pairing_connect(const char *host_and_port, const struct peer_credentials *credentials,
                         const struct peer_pairing_options *options, struct peer_pair *pair, struct error *err);

enum peer_refusal {
    PEER_REFUSED_AUTHENTICATION, /* the handshake failed: wrong key, certificate, plain TCP, silence */
    PEER_REFUSED_HELLO,          /* authenticated, but no valid hello in time */
    PEER_REFUSED_UNPAIRED,       /* a mirror without its stream, or a stream whose mirror never came */
    PEER_REFUSAL_KINDS,
};

const char *peer_refusal_name(enum peer_refusal refusal);

/* What the waiting secondary asks its owner. */
struct peer_pairing_waiter {
    bool (*should_stop)(void *opaque);                                         /* polled every 50 ms */
    void (*on_refused)(void *opaque, enum peer_refusal kind, const char *why); /* count, log */
    void *opaque;
};

/* The secondary: waits on listener for the primary's two connections,
 * refusing anything else. Returns 0 with pair filled, 0 with pair empty
 * when should_stop said so, -1 when the listener itself fails. */
int peer_pairing_accept(int listener, const struct peer_credentials *credentials,
                        const struct peer_pairing_options *options, const struct peer_pairing_waiter *waiter,
                        struct peer_pair *pair, struct error *err);

#endif
