/* An authenticated connection to the peer: the TLS handshake, the hello's
 * exchange through the session, and the relay that gives the layers above
 * a plain descriptor. */
#include "peer_connection.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "clock.h"
#include "peer_credentials_internal.h"
#include "socket.h"

/* AES-128-GCM first: the fastest on hosts with AES instructions (3 GB/s
 * here), and what checkpoints pay for. TLS 1.3 only. */
#define PRIORITY_CERTIFICATE "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"
#define PRIORITY_PSK PRIORITY_CERTIFICATE ":-KX-ALL:+ECDHE-PSK:+DHE-PSK"
#define BINDING_LABEL "EXPORTER-colo-replication-binding"
#define RELAY_BUFFER 65536

struct peer_connection {
    const struct peer_credentials *credentials;
    gnutls_session_t session; /* NULL for plain TCP */
    int tcp_fd;
    int app_fd;   /* what the layers above use: tcp_fd, or our end of the socketpair */
    int relay_fd; /* the relay's end of the socketpair, or -1 */
    pthread_t to_app, to_peer;
    bool relay_running;
    bool direct;
    /* After the handshake the socket is non-blocking and every GnuTLS call
     * on the session is made under this lock, never waiting inside it:
     * GnuTLS lets one thread read while another writes, but not through a
     * key update (TLS 1.3 KeyUpdate, which GnuTLS sends by itself after
     * 2^24 records): the session broke within 250 messages when the test
     * renewed keys while both ends read and wrote. */
    pthread_mutex_t session_lock;
#ifdef COLO_TEST_HOOKS
    _Atomic uint64_t test_update_every; /* bytes; 0: never */
    atomic_uint test_key_updates;
#endif
    unsigned char *send_buffer; /* direct: one message, gathered into as few records as it takes */
    size_t send_buffer_size;
    uint8_t binding[PEER_BINDING_SIZE];
    char address[64]; /* HOST:PORT of the peer */
    char peer[400];   /* the address, and who the peer proved to be */
    unsigned char to_app_buffer[RELAY_BUFFER];
    unsigned char to_peer_buffer[RELAY_BUFFER];
};

/* What a failed handshake means, in an operator's words. */
static int handshake_error(struct peer_connection *connection, int status, struct error *err)
{
    const struct peer_credentials *credentials = connection->credentials;
    const char *hint = "";
    char verify_text[256] = "";
    if (status == GNUTLS_E_TIMEDOUT) {
        hint = " (the peer sent nothing in time: an idle connection, or a peer that is not colo)";
    } else if (status == GNUTLS_E_PREMATURE_TERMINATION || status == GNUTLS_E_PUSH_ERROR ||
               status == GNUTLS_E_PULL_ERROR) {
        hint = " (the peer closed the connection: it refused our credentials, or it expects plain TCP)";
    } else if (status == GNUTLS_E_UNEXPECTED_PACKET_LENGTH || status == GNUTLS_E_UNSUPPORTED_VERSION_PACKET ||
               status == GNUTLS_E_UNEXPECTED_PACKET) {
        hint = " (the peer does not speak TLS: plain TCP, replication_auth = \"none\" on its side, or not colo)";
    } else if (status == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || status == GNUTLS_E_CERTIFICATE_ERROR) {
        unsigned verify = gnutls_session_get_verify_cert_status(connection->session);
        gnutls_datum_t printed = { 0 };
        if (verify && gnutls_certificate_verification_status_print(verify, GNUTLS_CRT_X509, &printed, 0) == 0) {
            snprintf(verify_text, sizeof verify_text, " (the peer's certificate: %s)", (const char *)printed.data);
            gnutls_free(printed.data);
            hint = verify_text;
        } else {
            hint = " (the peer's certificate is not one of the pair's CA)";
        }
    } else if (status == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        gnutls_alert_description_t alert = gnutls_alert_get(connection->session);
        snprintf(verify_text, sizeof verify_text, " (the peer's alert: %s%s)", gnutls_alert_get_name(alert),
                 credentials->auth == PEER_AUTH_PSK ? "; do both hosts hold the same key file?"
                                                    : "; is our certificate one of the peer's CA?");
        hint = verify_text;
    } else if (status == GNUTLS_E_CERTIFICATE_REQUIRED || status == GNUTLS_E_NO_CERTIFICATE_FOUND) {
        /* A client sends only a certificate of a CA the server names. */
        hint = " (the peer presented no certificate: it holds none of the pair's CA)";
    } else if (credentials->auth == PEER_AUTH_PSK &&
               (status == GNUTLS_E_DECRYPTION_FAILED || status == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER ||
                status == GNUTLS_E_ERROR_IN_FINISHED_PACKET || status == GNUTLS_E_INSUFFICIENT_CREDENTIALS ||
                status == GNUTLS_E_NO_CIPHER_SUITES || status == GNUTLS_E_KEYFILE_ERROR)) {
        /* GNUTLS_E_KEYFILE_ERROR: our key callback knows no such identity. */
        hint = " (wrong pre-shared key or identity: do both hosts hold the same key file?)";
    }
    return error_set(err, "authentication of %s failed: %s%s", connection->peer, gnutls_strerror(status), hint);
}

/* The alert that tells the peer why its handshake failed: for a
 * certificate or a PSK identity, the precise reason (GnuTLS's own choice
 * is "bad certificate" for every certificate, "internal error" for an
 * unknown identity). */
static void send_refusal_alert(gnutls_session_t session, int status)
{
    if (status == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        unsigned verify = gnutls_session_get_verify_cert_status(session);
        if (verify & GNUTLS_CERT_EXPIRED) {
            (void)gnutls_alert_send(session, GNUTLS_AL_FATAL, GNUTLS_A_CERTIFICATE_EXPIRED);
            return;
        }
        if (verify & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA)) {
            (void)gnutls_alert_send(session, GNUTLS_AL_FATAL, GNUTLS_A_UNKNOWN_CA);
            return;
        }
    }
    if (status == GNUTLS_E_KEYFILE_ERROR) {
        /* Our key callback knows no such identity (GnuTLS would say
         * "internal error"); identities are not secret. */
        (void)gnutls_alert_send(session, GNUTLS_AL_FATAL, GNUTLS_A_UNKNOWN_PSK_IDENTITY);
        return;
    }
    (void)gnutls_alert_send_appropriate(session, status);
}

static void describe_certificate_peer(struct peer_connection *connection)
{
    unsigned count = 0;
    const gnutls_datum_t *certificates = gnutls_certificate_get_peers(connection->session, &count);
    gnutls_x509_crt_t certificate;
    if (!certificates || count == 0 || gnutls_x509_crt_init(&certificate) < 0)
        return;
    char subject[256];
    size_t length = sizeof subject;
    if (gnutls_x509_crt_import(certificate, &certificates[0], GNUTLS_X509_FMT_DER) == 0 &&
        gnutls_x509_crt_get_dn(certificate, subject, &length) == 0) {
        snprintf(connection->peer, sizeof connection->peer, "%s (%s)", connection->address, subject);
    }
    gnutls_x509_crt_deinit(certificate);
}

static int open_session(struct peer_connection *connection, enum peer_side side, int timeout_ms, struct error *err)
{
    const struct peer_credentials *credentials = connection->credentials;
    unsigned flags = (side == PEER_SIDE_SERVER ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_TICKETS | GNUTLS_NO_SIGNAL;
    int status = gnutls_init(&connection->session, flags);
    if (status < 0) {
        connection->session = NULL;
        return error_set(err, "GnuTLS: %s", gnutls_strerror(status));
    }
    gnutls_session_t session = connection->session;
    const char *error_position = NULL;
    bool psk = credentials->auth == PEER_AUTH_PSK;
    status = gnutls_priority_set_direct(session, psk ? PRIORITY_PSK : PRIORITY_CERTIFICATE, &error_position);
    if (status < 0)
        return error_set(err, "GnuTLS priority at '%s': %s", error_position ? error_position : "?",
                         gnutls_strerror(status));
    if (psk) {
        /* The server's key callback finds the pair's key through this. */
        gnutls_session_set_ptr(session, (void *)credentials);
        status = side == PEER_SIDE_SERVER ? gnutls_credentials_set(session, GNUTLS_CRD_PSK, credentials->psk_server)
                                          : gnutls_credentials_set(session, GNUTLS_CRD_PSK, credentials->psk_client);
    } else {
        status = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, credentials->certificate);
        if (side == PEER_SIDE_SERVER)
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
        /* The chain to the pair's CA, no host name: the CA is the pair's own. */
        gnutls_session_set_verify_cert(session, NULL, 0);
    }
    if (status < 0)
        return error_set(err, "GnuTLS: %s", gnutls_strerror(status));
    gnutls_transport_set_int(session, connection->tcp_fd);
    gnutls_handshake_set_timeout(session, timeout_ms > 0 ? (unsigned)timeout_ms : GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
    do {
        status = gnutls_handshake(session);
    } while (status < 0 && status != GNUTLS_E_TIMEDOUT && !gnutls_error_is_fatal(status));
    if (status < 0) {
        /* Tell the peer why (a TLS alert), so its operator reads "illegal
         * parameter" or "unknown CA" rather than a closed connection. Not
         * when the peer is gone or sent its own alert. */
        if (status != GNUTLS_E_TIMEDOUT && status != GNUTLS_E_PREMATURE_TERMINATION && status != GNUTLS_E_PUSH_ERROR &&
            status != GNUTLS_E_PULL_ERROR && status != GNUTLS_E_FATAL_ALERT_RECEIVED)
            send_refusal_alert(session, status);
        return handshake_error(connection, status, err);
    }
    status = gnutls_prf_rfc5705(session, strlen(BINDING_LABEL), BINDING_LABEL, 0, NULL, PEER_BINDING_SIZE,
                                (char *)connection->binding);
    if (status < 0)
        return error_set(err, "GnuTLS exporter: %s", gnutls_strerror(status));
    if (psk) {
        gnutls_datum_t identity = { 0 };
        if (side == PEER_SIDE_SERVER && gnutls_psk_server_get_username2(session, &identity) == 0 && identity.data)
            snprintf(connection->peer, sizeof connection->peer, "%s (identity %.*s)", connection->address,
                     (int)identity.size, (const char *)identity.data);
        else
            snprintf(connection->peer, sizeof connection->peer, "%s (identity %s)", connection->address,
                     credentials->psk.identity);
    } else {
        describe_certificate_peer(connection);
    }
    return 0;
}

int peer_connection_open(struct peer_connection **result, const struct peer_credentials *credentials, int tcp_fd,
                         enum peer_side side, int timeout_ms, struct error *err)
{
    *result = NULL;
    struct peer_connection *connection = calloc(1, sizeof *connection);
    if (!connection) {
        close(tcp_fd);
        return error_set(err, "out of memory");
    }
    connection->credentials = credentials;
    pthread_mutex_init(&connection->session_lock, NULL);
    connection->tcp_fd = connection->app_fd = tcp_fd;
    connection->relay_fd = -1;
    socket_peer_address(tcp_fd, connection->address, sizeof connection->address);
    snprintf(connection->peer, sizeof connection->peer, "%s", connection->address);
    if (credentials->auth != PEER_AUTH_NONE && open_session(connection, side, timeout_ms, err) < 0) {
        peer_connection_close(connection);
        return -1;
    }
    *result = connection;
    return 0;
}

/* With TLS 1.3 a client's handshake ends before the server has checked
 * its certificate: a refusal comes as an alert after it. */
static int refused_with_alert(struct peer_connection *connection, struct error *err)
{
    return error_set(
        err, "%s refused us after the handshake, with the alert \"%s\"%s", connection->peer,
        gnutls_alert_get_name(gnutls_alert_get(connection->session)),
        connection->credentials->auth == PEER_AUTH_CERTIFICATE ? ": is our certificate one of the peer's CA?" : "");
}

int peer_connection_send(struct peer_connection *connection, const void *data, size_t size, struct error *err)
{
    const unsigned char *bytes = data;
    while (size > 0) {
        ssize_t sent = connection->session ? gnutls_record_send(connection->session, bytes, size)
                                           : send(connection->tcp_fd, bytes, size, MSG_NOSIGNAL);
        if (sent == GNUTLS_E_AGAIN || sent == GNUTLS_E_INTERRUPTED ||
            (sent < 0 && errno == EINTR && !connection->session))
            continue;
        if (sent < 0 && connection->session) {
            /* The peer may have refused us with an alert we did not read
             * yet (TLS 1.3: after our side of the handshake): say that. */
            unsigned char ignored;
            gnutls_record_set_timeout(connection->session, 200);
            ssize_t alert = gnutls_record_recv(connection->session, &ignored, 1);
            if (alert == GNUTLS_E_FATAL_ALERT_RECEIVED)
                return refused_with_alert(connection, err);
            return error_set(err, "sending to %s: %s", connection->peer, gnutls_strerror((int)sent));
        }
        if (sent < 0)
            return error_set_errno(err, "sending to %s", connection->peer);
        bytes += sent;
        size -= (size_t)sent;
    }
    return 0;
}

int peer_connection_receive(struct peer_connection *connection, void *data, size_t size, int timeout_ms,
                            struct error *err)
{
    unsigned char *bytes = data;
    double deadline = clock_monotonic_seconds() + timeout_ms / 1000.0;
    while (size > 0) {
        int left_ms = (int)((deadline - clock_monotonic_seconds()) * 1000.0);
        if (left_ms <= 0)
            return error_set(err, "%s sent nothing for %d ms", connection->peer, timeout_ms);
        ssize_t got;
        if (connection->session) {
            gnutls_record_set_timeout(connection->session, (unsigned)left_ms);
            got = gnutls_record_recv(connection->session, bytes, size);
            if (got == GNUTLS_E_AGAIN || got == GNUTLS_E_INTERRUPTED)
                continue;
            if (got == GNUTLS_E_TIMEDOUT)
                return error_set(err, "%s sent nothing for %d ms", connection->peer, timeout_ms);
            /* With TLS 1.3 a client's handshake ends before the server
             * has checked its certificate: a refusal comes here. */
            if (got == GNUTLS_E_FATAL_ALERT_RECEIVED)
                return refused_with_alert(connection, err);
            if (got < 0)
                return error_set(err, "receiving from %s: %s", connection->peer, gnutls_strerror((int)got));
        } else {
            struct pollfd readable = { .fd = connection->tcp_fd, .events = POLLIN };
            int ready = poll(&readable, 1, left_ms);
            if (ready < 0 && errno == EINTR)
                continue;
            if (ready < 0)
                return error_set_errno(err, "waiting for %s", connection->peer);
            if (ready == 0)
                continue;
            got = recv(connection->tcp_fd, bytes, size, 0);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0)
                return error_set_errno(err, "receiving from %s", connection->peer);
        }
        if (got == 0)
            return error_set(err, "%s closed the connection", connection->peer);
        bytes += got;
        size -= (size_t)got;
    }
    return 0;
}

void peer_connection_binding(const struct peer_connection *connection, uint8_t binding[PEER_BINDING_SIZE])
{
    memcpy(binding, connection->binding, PEER_BINDING_SIZE);
}

const char *peer_connection_peer(const struct peer_connection *connection)
{
    return connection->peer;
}

int peer_connection_fd(const struct peer_connection *connection)
{
    return connection->app_fd;
}

/* Either direction ending ends both: the other thread's blocking call
 * returns, and the layers above read end of file or get EPIPE. */
static void relay_end(struct peer_connection *connection)
{
    shutdown(connection->tcp_fd, SHUT_RDWR);
    shutdown(connection->relay_fd, SHUT_RDWR);
}

/* The relay runs as SCHED_BATCH: it does not preempt on wake-up the
 * threads whose latency makes the checkpoint's pause (a vCPU parking, the
 * replication loop resuming it); it still gets the CPU as soon as one is
 * free. Best effort: without it it runs as before. */
static void relay_thread_yields_on_wakeup(void)
{
    struct sched_param parameters = { .sched_priority = 0 };
    (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &parameters);
}

static int make_non_blocking(struct peer_connection *connection, struct error *err)
{
    int flags = fcntl(connection->tcp_fd, F_GETFL);
    if (flags < 0 || fcntl(connection->tcp_fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return error_set_errno(err, "making the peer connection non-blocking");
    gnutls_record_set_timeout(connection->session, 0);
    return 0;
}

/* Waits for the socket to be ready for EVENTS until deadline_ms (0: no
 * deadline). False when time ran out or poll failed. */
static bool wait_socket(const struct peer_connection *connection, short events, uint64_t deadline_ms)
{
    int timeout = -1;
    if (deadline_ms) {
        int64_t left = (int64_t)(deadline_ms - clock_monotonic_ms());
        if (left <= 0)
            return false;
        timeout = (int)left;
    }
    struct pollfd p = { .fd = connection->tcp_fd, .events = events };
    return poll(&p, 1, timeout) >= 0 || errno == EINTR;
}

/* Sends size bytes whole, as records of the session, waiting for room
 * outside the lock until deadline_ms (0: as long as it takes). After
 * GNUTLS_E_AGAIN the same call again: the record is sealed and partly
 * pushed; it finishes or the connection is lost. */
static bool session_send_all(struct peer_connection *connection, const unsigned char *data, size_t size,
                             uint64_t deadline_ms)
{
    size_t sent = 0;
    while (sent < size) {
        pthread_mutex_lock(&connection->session_lock);
        ssize_t n = gnutls_record_send(connection->session, data + sent, size - sent);
        pthread_mutex_unlock(&connection->session_lock);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
            if (!wait_socket(connection, POLLOUT, deadline_ms))
                return false;
            continue;
        }
        if (n < 0)
            return false;
        sent += (size_t)n;
    }
    return true;
}

static void *relay_to_app(void *opaque)
{
    pthread_setname_np(pthread_self(), "relay-to-app");
    struct peer_connection *connection = opaque;
    relay_thread_yields_on_wakeup();
    for (;;) {
        ssize_t got = peer_connection_receive_now(connection, connection->to_app_buffer, RELAY_BUFFER);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!peer_connection_receive_buffered(connection))
                wait_socket(connection, POLLIN, 0);
            continue;
        }
        /* 0: the peer closed; below 0: gone, or a record that does not
         * authenticate (tampered with): the connection is over either way. */
        if (got <= 0)
            break;
        size_t written = 0;
        while (written < (size_t)got) {
            ssize_t n = send(connection->relay_fd, connection->to_app_buffer + written, (size_t)got - written,
                             MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                goto end;
            written += (size_t)n;
        }
    }
end:
    relay_end(connection);
    return NULL;
}

static void *relay_to_peer(void *opaque)
{
    pthread_setname_np(pthread_self(), "relay-to-peer");
    struct peer_connection *connection = opaque;
    relay_thread_yields_on_wakeup();
#ifdef COLO_TEST_HOOKS
    uint64_t sent_total = 0;
#endif
    for (;;) {
        ssize_t got = read(connection->relay_fd, connection->to_peer_buffer, RELAY_BUFFER);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (!session_send_all(connection, connection->to_peer_buffer, (size_t)got, 0))
            break;
#ifdef COLO_TEST_HOOKS
        uint64_t every = atomic_load(&connection->test_update_every);
        if (every && (sent_total + (uint64_t)got) / every != sent_total / every) {
            if (peer_connection_update_keys(connection) < 0)
                break;
            atomic_fetch_add(&connection->test_key_updates, 1);
        }
        sent_total += (uint64_t)got;
#endif
    }
    relay_end(connection);
    return NULL;
}

int peer_connection_start_relay(struct peer_connection *connection, struct error *err)
{
    if (!connection->session)
        return 0; /* plain TCP: the socket itself */
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
        return error_set_errno(err, "socketpair for the TLS relay");
    connection->app_fd = pair[0];
    connection->relay_fd = pair[1];
    /* The relay waits in poll, outside the session's lock. */
    if (make_non_blocking(connection, err) < 0)
        return -1;
    int status = pthread_create(&connection->to_app, NULL, relay_to_app, connection);
    if (status == 0) {
        status = pthread_create(&connection->to_peer, NULL, relay_to_peer, connection);
        if (status != 0) {
            relay_end(connection);
            pthread_join(connection->to_app, NULL);
        }
    }
    if (status != 0) {
        errno = status;
        return error_set_errno(err, "starting the TLS relay");
    }
    connection->relay_running = true;
    return 0;
}

int peer_connection_start_direct(struct peer_connection *connection, struct error *err)
{
    if (!connection->session)
        return 0; /* plain TCP: the socket itself */
    if (make_non_blocking(connection, err) < 0)
        return -1;
    connection->direct = true;
    return 0;
}

bool peer_connection_is_direct(const struct peer_connection *connection)
{
    return connection->direct;
}

ssize_t peer_connection_receive_now(struct peer_connection *connection, void *data, size_t size)
{
    pthread_mutex_lock(&connection->session_lock);
    ssize_t got = gnutls_record_recv(connection->session, data, size);
    pthread_mutex_unlock(&connection->session_lock);
    if (got >= 0)
        return got;
    if (got == GNUTLS_E_AGAIN) {
        errno = EAGAIN;
    } else if (got == GNUTLS_E_INTERRUPTED) {
        errno = EINTR;
    } else if (got == GNUTLS_E_PREMATURE_TERMINATION) {
        return 0; /* the peer's socket closed without a close_notify: a dead peer */
    } else {
        errno = EPROTO;
    }
    return -1;
}

bool peer_connection_receive_buffered(struct peer_connection *connection)
{
    pthread_mutex_lock(&connection->session_lock);
    bool buffered = gnutls_record_check_pending(connection->session) > 0;
    pthread_mutex_unlock(&connection->session_lock);
    return buffered;
}

int peer_connection_update_keys(struct peer_connection *connection)
{
    uint64_t deadline = clock_monotonic_ms() + 1000;
    for (;;) {
        pthread_mutex_lock(&connection->session_lock);
        int status = gnutls_session_key_update(connection->session, 0);
        pthread_mutex_unlock(&connection->session_lock);
        if (status == 0)
            return 0;
        if ((status != GNUTLS_E_AGAIN && status != GNUTLS_E_INTERRUPTED) || !wait_socket(connection, POLLOUT, deadline))
            return -1;
    }
}

#ifdef COLO_TEST_HOOKS
void peer_connection_test_update_keys_every(struct peer_connection *connection, uint64_t bytes)
{
    atomic_store(&connection->test_update_every, bytes);
}

unsigned peer_connection_test_key_updates(const struct peer_connection *connection)
{
    return atomic_load(&connection->test_key_updates);
}
#endif

/* Room in the socket for BYTES more, from what it holds unacknowledged
 * (SIOCOUTQ) against its buffer. An estimate (the kernel counts buffer
 * overhead too): when it errs, the send waits for room, bounded. An empty
 * socket always has room: its buffer may be smaller than twice a message
 * (a new connection on a real network: the kernel sizes it from the
 * congestion window, tens of KB), and the message must still go. */
static bool send_room_for(const struct peer_connection *connection, size_t bytes)
{
    int queued = 0, buffer = 0;
    socklen_t length = sizeof buffer;
    if (ioctl(connection->tcp_fd, SIOCOUTQ, &queued) < 0 ||
        getsockopt(connection->tcp_fd, SOL_SOCKET, SO_SNDBUF, &buffer, &length) < 0)
        return true; /* cannot tell: try, and let the send say */
    return queued == 0 || (size_t)queued + bytes <= (size_t)buffer / 2;
}

enum peer_send_result peer_connection_send_message(struct peer_connection *connection, const struct iovec *parts,
                                                   int part_count)
{
    size_t total = 0;
    for (int i = 0; i < part_count; i++)
        total += parts[i].iov_len;
    /* A record's header, tag and content type: 22 bytes; 64 is ample. */
    size_t records = total / 16384 + 1;
    if (!send_room_for(connection, total + records * 64))
        return PEER_SEND_WOULD_BLOCK;
    if (total > connection->send_buffer_size) {
        unsigned char *bigger = realloc(connection->send_buffer, total);
        if (!bigger)
            return PEER_SEND_WOULD_BLOCK;
        connection->send_buffer = bigger;
        connection->send_buffer_size = total;
    }
    size_t offset = 0;
    for (int i = 0; i < part_count; i++) {
        if (parts[i].iov_len)
            memcpy(connection->send_buffer + offset, parts[i].iov_base, parts[i].iov_len);
        offset += parts[i].iov_len;
    }
    return session_send_all(connection, connection->send_buffer, total, clock_monotonic_ms() + 1000) ? PEER_SENT
                                                                                                     : PEER_SEND_BROKEN;
}

void peer_connection_close(struct peer_connection *connection)
{
    if (!connection)
        return;
    if (connection->relay_running) {
        relay_end(connection);
        pthread_join(connection->to_app, NULL);
        pthread_join(connection->to_peer, NULL);
    }
    if (connection->session)
        gnutls_deinit(connection->session);
    free(connection->send_buffer);
    pthread_mutex_destroy(&connection->session_lock);
    if (connection->relay_fd >= 0)
        close(connection->relay_fd);
    if (connection->app_fd >= 0 && connection->app_fd != connection->tcp_fd)
        close(connection->app_fd);
    if (connection->tcp_fd >= 0)
        close(connection->tcp_fd);
    free(connection);
}
