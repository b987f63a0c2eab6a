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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

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
 * descriptor peer_connection_fd returns is used. The relay threads run as
 * SCHED_BATCH: the relay carries the checkpoint stream, in bulk, and must
 * not preempt on wake-up the threads whose latency makes a checkpoint's
 * pause. */
int peer_connection_start_relay(struct peer_connection *connection, struct error *err);
int peer_connection_fd(const struct peer_connection *connection);

/* Or no relay (the mirror: small messages, each one waited for): the
 * layers above read and write the session themselves, through the three
 * calls below, which saves the relay's two thread hand-offs each way.
 * One reader thread and one writer at a time (the writers' own lock), as
 * GnuTLS allows. The TCP socket becomes non-blocking; peer_connection_fd
 * returns it, to poll. Plain TCP: nothing changes, and the layers above
 * use the socket as it is (peer_connection_is_direct says false). */
int peer_connection_start_direct(struct peer_connection *connection, struct error *err);
bool peer_connection_is_direct(const struct peer_connection *connection);

/* Direct: what has arrived, without waiting. Returns the bytes read, 0
 * when the peer closed, or -1 with errno EAGAIN (nothing now: poll the
 * descriptor for POLLIN, unless peer_connection_receive_buffered), EINTR,
 * or EPROTO (a record that does not authenticate, or a broken session). */
ssize_t peer_connection_receive_now(struct peer_connection *connection, void *data, size_t size);
/* Decrypted bytes wait in the session: read them before polling. */
bool peer_connection_receive_buffered(struct peer_connection *connection);

/* Direct: renews this end's sending keys now (a TLS 1.3 KeyUpdate), as
 * GnuTLS does by itself after 2^24 records; the mirror sends one record
 * per message, so a long protection gets there. The writer's call. The
 * peer's reader takes the update while its own writer writes (the tests
 * call this to show it). Returns 0, or -1 when the session broke. */
int peer_connection_update_keys(struct peer_connection *connection);

#ifdef COLO_TEST_HOOKS
/* Tests only: the relay's writer renews its sending keys after every
 * `bytes` it sent (0: never), as GnuTLS does by itself after 2^24
 * records, which no test can wait for; and how many it made. */
void peer_connection_test_update_keys_every(struct peer_connection *connection, uint64_t bytes);
unsigned peer_connection_test_key_updates(const struct peer_connection *connection);
#endif

enum peer_send_result { PEER_SENT, PEER_SEND_WOULD_BLOCK, PEER_SEND_BROKEN };
/* Direct: one message, whole or not at all. WOULD_BLOCK when the socket
 * has no room for it (nothing was sent: the caller may drop it); once
 * begun it is finished within a second or the connection is BROKEN (a
 * record cut in the middle would break the session). */
enum peer_send_result peer_connection_send_message(struct peer_connection *connection, const struct iovec *parts,
                                                   int part_count);

/* Ends it (shuts both ways down, joins the relay) and frees it. */
void peer_connection_close(struct peer_connection *connection);

#endif
