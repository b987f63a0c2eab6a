/* The pairing of the primary's two connections (peer_pairing.h has the
 * hello's layout). */
#include "peer_pairing.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "socket.h"

static const uint8_t hello_magic[8] = { 'C', 'O', 'L', 'O', 'P', 'A', 'I', 'R' };
#define HELLO_VERSION 1
#define WAITING_POLL_MS 50

void peer_hello_encode(const struct peer_hello *hello, uint8_t bytes[PEER_HELLO_SIZE])
{
    memset(bytes, 0, PEER_HELLO_SIZE);
    memcpy(bytes, hello_magic, sizeof hello_magic);
    bytes[8] = HELLO_VERSION;
    bytes[9] = (uint8_t)hello->channel;
    memcpy(bytes + 12, hello->binding, PEER_BINDING_SIZE);
}

int peer_hello_parse(const uint8_t *bytes, size_t size, struct peer_hello *hello, struct error *err)
{
    memset(hello, 0, sizeof *hello);
    if (size >= 3 && bytes[0] == 0x16 && bytes[1] == 0x03)
        return error_set(err, "a TLS handshake where a plain-TCP hello belongs: the peer uses TLS, this side "
                              "replication_auth = \"none\"");
    if (size < PEER_HELLO_SIZE)
        return error_set(err, "a hello of %zu bytes, expected %d", size, PEER_HELLO_SIZE);
    if (memcmp(bytes, hello_magic, sizeof hello_magic) != 0)
        return error_set(err, "not a colo hello (it does not start with COLOPAIR)");
    if (bytes[8] != HELLO_VERSION)
        return error_set(err, "hello version %u, this colo speaks %d", bytes[8], HELLO_VERSION);
    if (bytes[9] != PEER_CHANNEL_STREAM && bytes[9] != PEER_CHANNEL_MIRROR)
        return error_set(err, "hello for channel %u, expected 1 (stream) or 2 (mirror)", bytes[9]);
    if (bytes[10] != 0 || bytes[11] != 0)
        return error_set(err, "hello with its reserved bytes set");
    hello->channel = (enum peer_channel)bytes[9];
    memcpy(hello->binding, bytes + 12, PEER_BINDING_SIZE);
    return 0;
}

static void encode_reply(enum peer_channel channel, uint8_t bytes[PEER_HELLO_REPLY_SIZE])
{
    memset(bytes, 0, PEER_HELLO_REPLY_SIZE);
    memcpy(bytes, hello_magic, sizeof hello_magic);
    bytes[8] = HELLO_VERSION;
    bytes[9] = (uint8_t)channel;
}

static const char *channel_name(enum peer_channel channel)
{
    return channel == PEER_CHANNEL_STREAM ? "stream" : "mirror";
}

void peer_pair_close(struct peer_pair *pair)
{
    peer_connection_close(pair->stream);
    peer_connection_close(pair->mirror);
    pair->stream = pair->mirror = NULL;
}

void peer_pairing_options_defaults(struct peer_pairing_options *options)
{
    options->connect_timeout_ms = 10000;
    options->handshake_timeout_ms = 2000;
    options->pair_timeout_ms = 10000;
    options->stream_socket_buffer = 0;
}

const char *peer_refusal_name(enum peer_refusal refusal)
{
    switch (refusal) {
    case PEER_REFUSED_AUTHENTICATION:
        return "authentication";
    case PEER_REFUSED_HELLO:
        return "hello";
    case PEER_REFUSED_UNPAIRED:
        return "unpaired";
    case PEER_REFUSAL_KINDS:
        break;
    }
    return "?";
}

/* One of the primary's connections: connect, authenticate, say which. */
static int connect_channel(const char *host_and_port, const struct peer_credentials *credentials,
                           const struct peer_pairing_options *options, const struct peer_hello *hello,
                           struct peer_connection **connection, struct error *err)
{
    const char *name = channel_name(hello->channel);
    int fd = socket_connect_within(host_and_port, options->connect_timeout_ms, err);
    if (fd < 0)
        return error_prefix(err, "the %s connection: ", name);
    if (hello->channel == PEER_CHANNEL_STREAM && options->stream_socket_buffer > 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &options->stream_socket_buffer,
                         sizeof options->stream_socket_buffer);
    /* The secondary may be busy refusing a stranger for its own handshake
     * timeout before it reads ours: wait for longer. */
    if (peer_connection_open(connection, credentials, fd, PEER_SIDE_CLIENT, 5 * options->handshake_timeout_ms, err) < 0)
        return error_prefix(err, "the %s connection to %s: ", name, host_and_port);
    struct peer_hello sent = *hello;
    if (peer_credentials_auth(credentials) != PEER_AUTH_NONE && hello->channel == PEER_CHANNEL_STREAM)
        peer_connection_binding(*connection, sent.binding);
    uint8_t bytes[PEER_HELLO_SIZE], reply[PEER_HELLO_REPLY_SIZE], expected[PEER_HELLO_REPLY_SIZE];
    peer_hello_encode(&sent, bytes);
    encode_reply(hello->channel, expected);
    bool plain = peer_credentials_auth(credentials) == PEER_AUTH_NONE;
    if (peer_connection_send(*connection, bytes, sizeof bytes, err) < 0 ||
        peer_connection_receive(*connection, reply, sizeof reply, 5 * options->handshake_timeout_ms, err) < 0) {
        if (plain)
            error_append(err, " (does the secondary use TLS? this side has replication_auth = \"none\")");
        return error_prefix(err, "the secondary at %s did not take the %s connection: ", host_and_port, name);
    }
    if (plain && reply[0] == 0x15 && reply[1] == 0x03)
        return error_set(err,
                         "the secondary at %s answered with a TLS alert: it uses TLS, this side has "
                         "replication_auth = \"none\"",
                         host_and_port);
    if (memcmp(reply, expected, sizeof reply) != 0)
        return error_set(err,
                         "the secondary at %s answered the %s connection's hello with something else: is it "
                         "colo, of this version?",
                         host_and_port, name);
    return 0;
}

int peer_pairing_connect(const char *host_and_port, const struct peer_credentials *credentials,
                         const struct peer_pairing_options *options, struct peer_pair *pair, struct error *err)
{
    pair->stream = pair->mirror = NULL;
    struct peer_hello hello = { .channel = PEER_CHANNEL_STREAM };
    if (peer_credentials_auth(credentials) == PEER_AUTH_NONE &&
        getrandom(hello.binding, sizeof hello.binding, 0) != (ssize_t)sizeof hello.binding)
        return error_set_errno(err, "getrandom");
    if (connect_channel(host_and_port, credentials, options, &hello, &pair->stream, err) < 0)
        goto fail;
    /* The mirror proves it is the stream's: with TLS by the stream
     * session's exporter, which only the two ends of it know. */
    if (peer_credentials_auth(credentials) != PEER_AUTH_NONE)
        peer_connection_binding(pair->stream, hello.binding);
    hello.channel = PEER_CHANNEL_MIRROR;
    if (connect_channel(host_and_port, credentials, options, &hello, &pair->mirror, err) < 0 ||
        peer_connection_start_relay(pair->stream, err) < 0 || peer_connection_start_direct(pair->mirror, err) < 0)
        goto fail;
    return 0;
fail:
    peer_pair_close(pair);
    return -1;
}

static void refuse(const struct peer_pairing_waiter *waiter, enum peer_refusal kind, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void refuse(const struct peer_pairing_waiter *waiter, enum peer_refusal kind, const char *format, ...)
{
    char why[600];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(why, sizeof why, format, arguments);
    va_end(arguments);
    if (waiter->on_refused)
        waiter->on_refused(waiter->opaque, kind, why);
}

/* One accepted connection, authenticated and its hello read, or NULL. */
static struct peer_connection *admit(int fd, const struct peer_credentials *credentials,
                                     const struct peer_pairing_options *options,
                                     const struct peer_pairing_waiter *waiter, struct peer_hello *hello)
{
    struct error err;
    struct peer_connection *connection;
    if (peer_connection_open(&connection, credentials, fd, PEER_SIDE_SERVER, options->handshake_timeout_ms, &err) < 0) {
        refuse(waiter, PEER_REFUSED_AUTHENTICATION, "%s", err.message);
        return NULL;
    }
    uint8_t bytes[PEER_HELLO_SIZE];
    if (peer_connection_receive(connection, bytes, sizeof bytes, options->handshake_timeout_ms, &err) < 0 ||
        peer_hello_parse(bytes, sizeof bytes, hello, &err) < 0) {
        refuse(waiter, PEER_REFUSED_HELLO, "%s: no colo hello: %s", peer_connection_peer(connection), err.message);
        peer_connection_close(connection);
        return NULL;
    }
    uint8_t own[PEER_BINDING_SIZE];
    peer_connection_binding(connection, own);
    if (peer_credentials_auth(credentials) != PEER_AUTH_NONE && hello->channel == PEER_CHANNEL_STREAM &&
        memcmp(own, hello->binding, sizeof own) != 0) {
        refuse(waiter, PEER_REFUSED_HELLO, "%s: a stream hello whose binding is not this session's",
               peer_connection_peer(connection));
        peer_connection_close(connection);
        return NULL;
    }
    return connection;
}

static int answer(struct peer_connection *connection, enum peer_channel channel,
                  const struct peer_pairing_waiter *waiter)
{
    struct error err;
    uint8_t reply[PEER_HELLO_REPLY_SIZE];
    encode_reply(channel, reply);
    if (peer_connection_send(connection, reply, sizeof reply, &err) < 0) {
        refuse(waiter, PEER_REFUSED_HELLO, "%s", err.message);
        return -1;
    }
    return 0;
}

int peer_pairing_accept(int listener, const struct peer_credentials *credentials,
                        const struct peer_pairing_options *options, const struct peer_pairing_waiter *waiter,
                        struct peer_pair *pair, struct error *err)
{
    pair->stream = pair->mirror = NULL;
    struct peer_connection *stream = NULL;
    struct peer_hello stream_hello = { 0 };
    double stream_deadline = 0;
    for (;;) {
        if (waiter->should_stop && waiter->should_stop(waiter->opaque)) {
            peer_connection_close(stream);
            return 0;
        }
        if (stream && clock_monotonic_seconds() > stream_deadline) {
            refuse(waiter, PEER_REFUSED_UNPAIRED, "%s: its stream connection had no mirror within %d ms",
                   peer_connection_peer(stream), options->pair_timeout_ms);
            peer_connection_close(stream);
            stream = NULL;
        }
        struct pollfd waiting = { .fd = listener, .events = POLLIN };
        int ready = poll(&waiting, 1, WAITING_POLL_MS);
        if (ready < 0 && errno != EINTR) {
            peer_connection_close(stream);
            return error_set_errno(err, "waiting for the primary");
        }
        if (ready <= 0)
            continue;
        struct error accept_err;
        int fd = socket_accept(listener, &accept_err);
        if (fd < 0) {
            /* The listener's own end (closed, no longer listening, not a
             * socket): no connection will ever come, so do not count
             * refusals forever. */
            if (errno == EBADF || errno == EINVAL || errno == ENOTSOCK || errno == EOPNOTSUPP) {
                peer_connection_close(stream);
                return error_set(err, "waiting for the primary: %s", accept_err.message);
            }
            /* A client that reset before we took it, or no descriptor left:
             * not the listener's end. */
            refuse(waiter, PEER_REFUSED_AUTHENTICATION, "%s", accept_err.message);
            nanosleep(&(struct timespec){ .tv_nsec = WAITING_POLL_MS * 1000000L }, NULL);
            continue;
        }
        struct peer_hello hello;
        struct peer_connection *connection = admit(fd, credentials, options, waiter, &hello);
        if (!connection)
            continue;
        if (hello.channel == PEER_CHANNEL_STREAM) {
            if (answer(connection, PEER_CHANNEL_STREAM, waiter) < 0) {
                peer_connection_close(connection);
                continue;
            }
            if (stream) {
                /* The primary started over (its protect failed half way):
                 * the newer stream is the one its mirror will name. */
                refuse(waiter, PEER_REFUSED_UNPAIRED, "%s: its stream connection is replaced by a newer one from %s",
                       peer_connection_peer(stream), peer_connection_peer(connection));
                peer_connection_close(stream);
            }
            if (options->stream_socket_buffer > 0)
                (void)setsockopt(peer_connection_fd(connection), SOL_SOCKET, SO_RCVBUF, &options->stream_socket_buffer,
                                 sizeof options->stream_socket_buffer);
            stream = connection;
            stream_hello = hello;
            stream_deadline = clock_monotonic_seconds() + options->pair_timeout_ms / 1000.0;
            continue;
        }
        if (!stream || memcmp(hello.binding, stream_hello.binding, PEER_BINDING_SIZE) != 0) {
            refuse(waiter, PEER_REFUSED_UNPAIRED, "%s: a mirror connection that belongs to no stream connection here",
                   peer_connection_peer(connection));
            peer_connection_close(connection);
            continue;
        }
        if (answer(connection, PEER_CHANNEL_MIRROR, waiter) < 0) {
            peer_connection_close(connection);
            continue;
        }
        pair->stream = stream;
        pair->mirror = connection;
        if (peer_connection_start_relay(pair->stream, err) < 0 || peer_connection_start_direct(pair->mirror, err) < 0) {
            peer_pair_close(pair);
            return -1;
        }
        return 0;
    }
}
