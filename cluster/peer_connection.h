/* One connection to the replication peer, authenticated before anything
 * else crosses it: a TLS 1.3 session over a TCP socket (or, when the
 * credentials say "none", the socket as it is).
 *
 * After the handshake the layers above get a plain file descriptor (the
 * stream, the mirror, the heartbeats read and write it with read, send,
 * poll and shutdown as before): one end of a socketpair, whose other end
 * two relay threads join to the TLS session, one per direction, as kernel
 * TLS would do in the kernel (this kernel has no CONFIG_TLS; see
 * docs/security.md). Either direction ending (the peer gone, a record
 * that does not authenticate, shutdown() on the descriptor) ends both,
 * so a dead peer reads as end of file and a local shutdown reaches the
 * peer at once. */
#ifndef COLO_CLUSTER_PEER_CONNECTION_H
#define COLO_CLUSTER_PEER_CONNECTION_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "peer_credentials.h"

enum peer_side {
    PEER_SIDE_CLIENT, /* the primary: it connects */
    PEER_SIDE_SERVER, /* the secondary: it accepts */
};

#define PEER_BINDING_SIZE 32

struct peer_connection;

/* Authenticates the peer on tcp_fd, which it takes over (closed on
 * failure), within timeout_ms. The error says why in an operator's words
 * (wrong key, certificate not signed by the CA, expired, the peer speaks
 * plain TCP, ...). */
int peer_connection_open(struct peer_connection **connection, const struct peer_credentials *credentials, int tcp_fd,
                         enum peer_side side, int timeout_ms, struct error *err);

/* Before the relay: exactly size bytes each way, through the session
 * (the pairing's hello). receive waits at most timeout_ms. */
int peer_connection_send(struct peer_connection *connection, const void *data, size_t size, struct error *err);
int peer_connection_receive(struct peer_connection *connection, void *data, size_t size, int timeout_ms,
                            struct error *err);

/* A value both ends of this session compute alike and nobody else can
 * (a TLS exporter), so a second connection can prove it comes from the
 * same peer. All zero for plain TCP. */
void peer_connection_binding(const struct peer_connection *connection, uint8_t binding[PEER_BINDING_SIZE]);

/* Who the peer proved to be: "identity web", "CN=b,O=colo", or its address
 * for plain TCP. */
const char *peer_connection_peer(const struct peer_connection *connection);

/* Hands the connection to the layers above: from now on only the
 * descriptor peer_connection_fd returns is used. */
/* How the relay threads are scheduled: bulk ones (the checkpoint
 * stream) as SCHED_BATCH, which never preempt on wake-up the threads
 * whose latency makes a checkpoint's pause; interactive ones (the
 * mirror: client frames to the SVM, its replies back for the compare)
 * as ordinary threads, since every reply waits for them. */
enum peer_relay_kind { PEER_RELAY_BULK, PEER_RELAY_INTERACTIVE };

int peer_connection_start_relay(struct peer_connection *connection, enum peer_relay_kind kind, struct error *err);
int peer_connection_fd(const struct peer_connection *connection);

/* Ends it (shuts both ways down, joins the relay) and frees it. */
void peer_connection_close(struct peer_connection *connection);

#endif
