/* Authenticated replication connections (cluster/peer_credentials.h,
 * peer_connection.h, peer_pairing.h) over loopback TCP: a secondary thread
 * waits in peer_pairing_accept while strangers try it (wrong pre-shared
 * key or identity, a certificate of another CA, an expired one, plain TCP
 * against TLS and TLS against plain TCP, garbage, a cut hello, silence, a
 * mirror that names no stream, a stream whose mirror never comes); each is
 * refused with the right kind and a useful message, and the real primary
 * pairs after every one of them. Then, through a pair: 16 MiB each way at
 * once, byte for byte; a shutdown or a close on one side is end of file on
 * the other; a byte flipped on the wire ends the connection instead of
 * arriving. Also the key file's parser and maker and the hello's form. */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "peer_connection.h"
#include "peer_credentials.h"
#include "peer_pairing.h"
#include "socket.h"
#include "test_certificates.h"
#include "test_check.h"

/* For what should happen at once: generous, so a loaded host is no failure. */
#define WAIT_SECONDS 20.0
#define BULK_SIZE (16u << 20)
#define TAMPER_WRITE_SIZE (4u << 20)
#define TAMPER_AT (256u << 10)

/* ---- helpers -------------------------------------------------------- */

static void path_in(char *path, size_t size, const char *directory, const char *name)
{
    snprintf(path, size, "%s/%s", directory, name);
}

static struct peer_credentials *load_credentials(int line, enum peer_auth auth, const char *directory,
                                                 const char *psk_name, const char *certificate_name,
                                                 const char *key_name, const char *ca_name)
{
    struct peer_auth_config config = { .auth = auth };
    if (psk_name)
        path_in(config.psk_path, sizeof config.psk_path, directory, psk_name);
    if (certificate_name)
        path_in(config.certificate_path, sizeof config.certificate_path, directory, certificate_name);
    if (key_name)
        path_in(config.key_path, sizeof config.key_path, directory, key_name);
    if (ca_name)
        path_in(config.ca_path, sizeof config.ca_path, directory, ca_name);
    struct peer_credentials *credentials;
    struct error err;
    if (peer_credentials_load(&credentials, &config, &err) < 0) {
        CHECK_AT(line, false, "loading %s credentials: %s", peer_auth_name(auth), err.message);
        return NULL;
    }
    return credentials;
}

static int listen_on_loopback(char *address, size_t size)
{
    struct error err;
    int listener = socket_listen("127.0.0.1:0", &err);
    if (listener < 0) {
        CHECK(false, "listen: %s", err.message);
        return -1;
    }
    struct sockaddr_in bound;
    socklen_t length = sizeof bound;
    if (getsockname(listener, (struct sockaddr *)&bound, &length) < 0) {
        CHECK(false, "getsockname: %s", strerror(errno));
        close(listener);
        return -1;
    }
    snprintf(address, size, "127.0.0.1:%u", ntohs(bound.sin_port));
    return listener;
}

static int connect_to(const char *address)
{
    struct error err;
    int fd = socket_connect(address, &err);
    CHECK(fd >= 0, "connect: %s", err.message);
    return fd;
}

static bool send_all(int fd, const void *data, size_t size)
{
    const unsigned char *bytes = data;
    while (size > 0) {
        ssize_t sent = send(fd, bytes, size, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent <= 0)
            return false;
        bytes += sent;
        size -= (size_t)sent;
    }
    return true;
}

/* Reads exactly size bytes within seconds; false on end of file, error or time. */
static bool receive_all(int fd, void *data, size_t size, double seconds)
{
    unsigned char *bytes = data;
    double deadline = clock_monotonic_seconds() + seconds;
    while (size > 0) {
        int left_ms = (int)((deadline - clock_monotonic_seconds()) * 1000.0);
        if (left_ms <= 0)
            return false;
        struct pollfd readable = { .fd = fd, .events = POLLIN };
        if (poll(&readable, 1, left_ms) <= 0)
            continue;
        ssize_t got = read(fd, bytes, size);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        bytes += got;
        size -= (size_t)got;
    }
    return true;
}

/* Reads and drops until end of file (or an error, which is the same to a
 * reader); false if neither comes within seconds. */
static bool reads_end_within(int fd, double seconds)
{
    double deadline = clock_monotonic_seconds() + seconds;
    unsigned char buffer[4096];
    for (;;) {
        int left_ms = (int)((deadline - clock_monotonic_seconds()) * 1000.0);
        if (left_ms <= 0)
            return false;
        struct pollfd readable = { .fd = fd, .events = POLLIN };
        if (poll(&readable, 1, left_ms) <= 0)
            continue;
        ssize_t got = read(fd, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return true;
    }
}

/* The bytes of a test stream: a function of (seed, offset), so a reader
 * checks any slice of it without the writer's help. */
static void fill_pattern(uint64_t seed, size_t offset, unsigned char *bytes, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        uint64_t x = seed ^ ((offset + i) / 8 * 0x9e3779b97f4a7c15ull);
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        x ^= x >> 31;
        bytes[i] = (unsigned char)(x >> (8 * ((offset + i) % 8)));
    }
}

struct pump {
    int fd;
    uint64_t seed;
    size_t size;   /* to write, or at most to read */
    size_t done;   /* written, or read and checked */
    bool mismatch; /* a byte read that is not the pattern's */
    bool ended;    /* the reader saw end of file (or an error) */
    unsigned char buffer[65536], expected[65536];
};

static void *pump_write(void *opaque)
{
    struct pump *pump = opaque;
    while (pump->done < pump->size) {
        size_t chunk = pump->size - pump->done < sizeof pump->buffer ? pump->size - pump->done : sizeof pump->buffer;
        fill_pattern(pump->seed, pump->done, pump->buffer, chunk);
        if (!send_all(pump->fd, pump->buffer, chunk))
            break;
        pump->done += chunk;
    }
    return NULL;
}

static void *pump_read(void *opaque)
{
    struct pump *pump = opaque;
    while (pump->done < pump->size) {
        struct pollfd readable = { .fd = pump->fd, .events = POLLIN };
        int ready = poll(&readable, 1, (int)(WAIT_SECONDS * 1000));
        if (ready == 0)
            break; /* stalled: done stays short */
        if (ready < 0)
            continue;
        size_t want = pump->size - pump->done < sizeof pump->buffer ? pump->size - pump->done : sizeof pump->buffer;
        ssize_t got = read(pump->fd, pump->buffer, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            pump->ended = true;
            break;
        }
        fill_pattern(pump->seed, pump->done, pump->expected, (size_t)got);
        if (memcmp(pump->buffer, pump->expected, (size_t)got) != 0) {
            pump->mismatch = true;
            break;
        }
        pump->done += (size_t)got;
    }
    return NULL;
}

static struct pump *pump_new(int fd, uint64_t seed, size_t size)
{
    struct pump *pump = calloc(1, sizeof *pump);
    pump->fd = fd;
    pump->seed = seed;
    pump->size = size;
    return pump;
}

/* ---- the waiting secondary ----------------------------------------- */

#define REFUSALS_MAX 16

struct refusal {
    enum peer_refusal kind;
    char why[600];
};

struct secondary {
    int listener;
    char address[64];
    const struct peer_credentials *credentials;
    struct peer_pairing_options options;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct refusal refusals[REFUSALS_MAX];
    int refusal_count;
    atomic_bool stop;
    atomic_bool finished;
    int result;
    struct peer_pair pair;
    struct error err;
    pthread_t thread;
};

static bool secondary_should_stop(void *opaque)
{
    struct secondary *secondary = opaque;
    return atomic_load(&secondary->stop);
}

static void secondary_on_refused(void *opaque, enum peer_refusal kind, const char *why)
{
    struct secondary *secondary = opaque;
    pthread_mutex_lock(&secondary->lock);
    if (secondary->refusal_count < REFUSALS_MAX) {
        struct refusal *refusal = &secondary->refusals[secondary->refusal_count];
        refusal->kind = kind;
        snprintf(refusal->why, sizeof refusal->why, "%s", why);
    }
    secondary->refusal_count++;
    pthread_cond_broadcast(&secondary->changed);
    pthread_mutex_unlock(&secondary->lock);
}

static void *secondary_run(void *opaque)
{
    struct secondary *secondary = opaque;
    struct peer_pairing_waiter waiter = {
        .should_stop = secondary_should_stop,
        .on_refused = secondary_on_refused,
        .opaque = secondary,
    };
    secondary->result = peer_pairing_accept(secondary->listener, secondary->credentials, &secondary->options, &waiter,
                                            &secondary->pair, &secondary->err);
    atomic_store(&secondary->finished, true);
    return NULL;
}

static bool secondary_start(struct secondary *secondary, const struct peer_credentials *credentials,
                            const struct peer_pairing_options *options)
{
    memset(secondary, 0, sizeof *secondary);
    secondary->listener = listen_on_loopback(secondary->address, sizeof secondary->address);
    if (secondary->listener < 0)
        return false;
    secondary->credentials = credentials;
    secondary->options = *options;
    secondary->result = -2;
    pthread_mutex_init(&secondary->lock, NULL);
    pthread_cond_init(&secondary->changed, NULL);
    atomic_store(&secondary->stop, false);
    atomic_store(&secondary->finished, false);
    pthread_create(&secondary->thread, NULL, secondary_run, secondary);
    return true;
}

/* Waits until the secondary has refused count connections in all. */
static bool secondary_wait_refusals(struct secondary *secondary, int count)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)WAIT_SECONDS;
    pthread_mutex_lock(&secondary->lock);
    while (secondary->refusal_count < count &&
           pthread_cond_timedwait(&secondary->changed, &secondary->lock, &deadline) != ETIMEDOUT) {
    }
    bool reached = secondary->refusal_count >= count;
    pthread_mutex_unlock(&secondary->lock);
    return reached;
}

/* Ends the secondary's wait (if it still waits) and joins it; its pair, if
 * any, stays for the caller. */
static void secondary_join(struct secondary *secondary)
{
    atomic_store(&secondary->stop, true);
    pthread_join(secondary->thread, NULL);
    close(secondary->listener);
    pthread_mutex_destroy(&secondary->lock);
    pthread_cond_destroy(&secondary->changed);
}

/* ---- pairing -------------------------------------------------------- */

static void check_small_exchange(int line, int a, int b, const char *what)
{
    char sent[32], received[32];
    snprintf(sent, sizeof sent, "%-31s", what);
    CHECK_AT(line,
             send_all(a, sent, sizeof sent) && receive_all(b, received, sizeof received, WAIT_SECONDS) &&
                 memcmp(sent, received, sizeof sent) == 0,
             "%s: a message did not cross from the primary", what);
    CHECK_AT(line,
             send_all(b, sent, sizeof sent) && receive_all(a, received, sizeof received, WAIT_SECONDS) &&
                 memcmp(sent, received, sizeof sent) == 0,
             "%s: a message did not cross from the secondary", what);
}

/* The real primary pairs with the waiting secondary (and the secondary's
 * thread ends); both pairs are left to the caller, data checked to flow. */
static bool real_primary_pairs(int line, struct secondary *secondary, const char *address,
                               const struct peer_credentials *credentials, const struct peer_pairing_options *options,
                               struct peer_pair *primary)
{
    struct error err;
    int status = peer_pairing_connect(address, credentials, options, primary, &err);
    CHECK_AT(line, status == 0, "the real primary did not pair: %s", err.message);
    if (status < 0) {
        secondary_join(secondary);
        peer_pair_close(&secondary->pair);
        return false;
    }
    secondary_join(secondary);
    CHECK_AT(line, secondary->result == 0 && secondary->pair.stream && secondary->pair.mirror,
             "the secondary did not pair (%d): %s", secondary->result, secondary->err.message);
    if (!secondary->pair.stream || !secondary->pair.mirror) {
        peer_pair_close(primary);
        peer_pair_close(&secondary->pair);
        return false;
    }
    check_small_exchange(line, peer_connection_fd(primary->stream), peer_connection_fd(secondary->pair.stream),
                         "stream");
    check_small_exchange(line, peer_connection_fd(primary->mirror), peer_connection_fd(secondary->pair.mirror),
                         "mirror");
    return true;
}

/* Who knocks on the secondary's door before the real primary: what it
 * leaves open (closed after the primary paired), and whether its refusal
 * comes only while the primary waits in the backlog (silence). */
struct stranger_run {
    const char *address;
    int held[2];
    struct peer_connection *held_connection;
};

typedef void stranger_action(int line, struct stranger_run *run, const void *context);

static void hold(struct stranger_run *run, int fd)
{
    for (int i = 0; i < 2; i++) {
        if (run->held[i] < 0) {
            run->held[i] = fd;
            return;
        }
    }
    close(fd);
}

/* A secondary with server credentials; the stranger; its refusal, of kind
 * and saying needle; then the real primary pairs. */
static void check_stranger(int line, const char *name, const struct peer_credentials *server,
                           const struct peer_credentials *client, const struct peer_pairing_options *options,
                           stranger_action *act, const void *context, bool refused_while_primary_waits,
                           enum peer_refusal kind, const char *needle)
{
    struct secondary *secondary = calloc(1, sizeof *secondary);
    if (!secondary_start(secondary, server, options)) {
        free(secondary);
        return;
    }
    struct stranger_run run = { .address = secondary->address, .held = { -1, -1 } };
    act(line, &run, context);
    if (!refused_while_primary_waits)
        CHECK_AT(line, secondary_wait_refusals(secondary, 1), "%s: not refused", name);
    struct peer_pair primary = { 0 };
    bool paired = real_primary_pairs(line, secondary, secondary->address, client, options, &primary);
    CHECK_AT(line, paired, "%s: the real primary did not pair after it", name);
    CHECK_AT(line, secondary->refusal_count == 1, "%s: %d refusals, expected 1", name, secondary->refusal_count);
    if (secondary->refusal_count >= 1) {
        const struct refusal *refusal = &secondary->refusals[0];
        CHECK_AT(line, refusal->kind == kind && strstr(refusal->why, needle),
                 "%s: refused as %s: '%s', expected %s, '%s'", name, peer_refusal_name(refusal->kind), refusal->why,
                 peer_refusal_name(kind), needle);
        printf("%-40s refused (%s): %s\n", name, peer_refusal_name(refusal->kind), refusal->why);
    }
    if (paired) {
        peer_pair_close(&primary);
        peer_pair_close(&secondary->pair);
    }
    for (int i = 0; i < 2; i++) {
        if (run.held[i] >= 0)
            close(run.held[i]);
    }
    peer_connection_close(run.held_connection);
    free(secondary);
}

/* ---- strangers ------------------------------------------------------ */

/* A primary with other credentials: its own error must say so, mentioning
 * what context names (NULL for no check beyond "authentication"). */
struct wrong_client {
    const struct peer_credentials *credentials;
    const char *client_needle, *client_needle_too; /* the second may be NULL */
};

static void stranger_wrong_credentials(int line, struct stranger_run *run, const void *context)
{
    const struct wrong_client *wrong = context;
    struct peer_pairing_options options;
    peer_pairing_options_defaults(&options);
    struct peer_pair pair;
    struct error err;
    int status = peer_pairing_connect(run->address, wrong->credentials, &options, &pair, &err);
    CHECK_AT(line, status < 0, "a primary with the wrong credentials paired");
    if (status == 0) {
        peer_pair_close(&pair);
        return;
    }
    CHECK_AT(line,
             strstr(err.message, wrong->client_needle) &&
                 (!wrong->client_needle_too || strstr(err.message, wrong->client_needle_too)),
             "the refused primary's error: '%s', expected '%s' and '%s'", err.message, wrong->client_needle,
             wrong->client_needle_too ? wrong->client_needle_too : "");
    printf("%-40s its own error: %s\n", "  (the refused primary)", err.message);
}

static void stranger_garbage(int line, struct stranger_run *run, const void *context)
{
    (void)context;
    unsigned char garbage[200];
    CHECK_AT(line, getrandom(garbage, sizeof garbage, 0) == (ssize_t)sizeof garbage, "getrandom");
    garbage[0] = 0x47; /* never a TLS record's first byte, nor COLOPAIR's */
    int fd = connect_to(run->address);
    if (fd < 0)
        return;
    CHECK_AT(line, send_all(fd, garbage, sizeof garbage), "sending garbage");
    close(fd);
}

static void encode_hand_made_hello(uint8_t bytes[PEER_HELLO_SIZE], enum peer_channel channel)
{
    struct peer_hello hello = { .channel = channel };
    (void)getrandom(hello.binding, sizeof hello.binding, 0);
    peer_hello_encode(&hello, bytes);
}

static void stranger_cut_hello(int line, struct stranger_run *run, const void *context)
{
    (void)context;
    uint8_t bytes[PEER_HELLO_SIZE];
    encode_hand_made_hello(bytes, PEER_CHANNEL_STREAM);
    int fd = connect_to(run->address);
    if (fd < 0)
        return;
    CHECK_AT(line, send_all(fd, bytes, 20), "sending a cut hello");
    close(fd);
}

static void stranger_idle(int line, struct stranger_run *run, const void *context)
{
    (void)line;
    (void)context;
    int fd = connect_to(run->address);
    if (fd >= 0)
        hold(run, fd);
}

/* A plain-TCP hello (no TLS): channel from context; held open. */
static void stranger_plain_hello(int line, struct stranger_run *run, const void *context)
{
    const enum peer_channel *channel = context;
    uint8_t bytes[PEER_HELLO_SIZE];
    encode_hand_made_hello(bytes, *channel);
    int fd = connect_to(run->address);
    if (fd < 0)
        return;
    CHECK_AT(line, send_all(fd, bytes, sizeof bytes), "sending a hello");
    hold(run, fd);
}

/* An authenticated peer (the right key) whose hello does not belong: a
 * mirror naming no stream, or a stream whose binding is not its session's. */
struct tls_hello {
    const struct peer_credentials *credentials;
    enum peer_channel channel;
    bool wait_for_reply; /* a stream that is accepted, then never followed by its mirror */
    bool hold;           /* after the reply, keep it open and return */
};

static void stranger_tls_hello(int line, struct stranger_run *run, const void *context)
{
    const struct tls_hello *tls = context;
    int fd = connect_to(run->address);
    if (fd < 0)
        return;
    struct peer_connection *connection;
    struct error err;
    if (peer_connection_open(&connection, tls->credentials, fd, PEER_SIDE_CLIENT, 10000, &err) < 0) {
        CHECK_AT(line, false, "the handshake of a peer with the right key: %s", err.message);
        return;
    }
    struct peer_hello hello = { .channel = tls->channel };
    if (tls->wait_for_reply)
        peer_connection_binding(connection, hello.binding);
    else
        (void)getrandom(hello.binding, sizeof hello.binding, 0);
    uint8_t bytes[PEER_HELLO_SIZE], reply[PEER_HELLO_REPLY_SIZE];
    peer_hello_encode(&hello, bytes);
    CHECK_AT(line, peer_connection_send(connection, bytes, sizeof bytes, &err) == 0, "sending a hello: %s",
             err.message);
    if (tls->wait_for_reply)
        CHECK_AT(line, peer_connection_receive(connection, reply, sizeof reply, 10000, &err) == 0,
                 "a stream's hello not answered: %s", err.message);
    if (tls->hold) {
        run->held_connection = connection;
        return;
    }
    /* Read the refusal as end of file, so the refusal happened before we
     * close, then close. */
    uint8_t more;
    CHECK_AT(line, peer_connection_receive(connection, &more, 1, 20000, &err) < 0, "more after the hello");
    peer_connection_close(connection);
}

/* ---- the cases ------------------------------------------------------ */

static void short_options(struct peer_pairing_options *options)
{
    peer_pairing_options_defaults(options);
    options->handshake_timeout_ms = 3000;
    options->pair_timeout_ms = 10000;
}

static void test_psk_strangers(const char *directory)
{
    struct peer_credentials *server = load_credentials(__LINE__, PEER_AUTH_PSK, directory, "pair.psk", NULL, NULL,
                                                       NULL);
    struct peer_credentials *client = load_credentials(__LINE__, PEER_AUTH_PSK, directory, "pair.psk", NULL, NULL,
                                                       NULL);
    struct peer_credentials *wrong_key = load_credentials(__LINE__, PEER_AUTH_PSK, directory, "wrong-key.psk", NULL,
                                                          NULL, NULL);
    struct peer_credentials *other_identity = load_credentials(__LINE__, PEER_AUTH_PSK, directory, "other-identity.psk",
                                                               NULL, NULL, NULL);
    struct peer_credentials *plain = load_credentials(__LINE__, PEER_AUTH_NONE, directory, NULL, NULL, NULL, NULL);
    if (!server || !client || !wrong_key || !other_identity || !plain)
        goto done;
    struct peer_pairing_options options;
    short_options(&options);

    struct wrong_client wrong_key_client = { wrong_key, "same key file", "authentication of" };
    check_stranger(__LINE__, "psk: the same identity, another key", server, client, &options,
                   stranger_wrong_credentials, &wrong_key_client, false, PEER_REFUSED_AUTHENTICATION, "key");
    struct wrong_client other_identity_client = { other_identity, "same key file",
                                                  "PSK username is missing or not known" };
    check_stranger(__LINE__, "psk: another identity", server, client, &options, stranger_wrong_credentials,
                   &other_identity_client, false, PEER_REFUSED_AUTHENTICATION, "key");
    struct wrong_client plain_client = { plain, "the secondary at", "does the secondary use TLS" };
    check_stranger(__LINE__, "psk: a plain-TCP primary", server, client, &options, stranger_wrong_credentials,
                   &plain_client, false, PEER_REFUSED_AUTHENTICATION, "does not speak TLS");
    check_stranger(__LINE__, "psk: 200 bytes of garbage", server, client, &options, stranger_garbage, NULL, false,
                   PEER_REFUSED_AUTHENTICATION, "authentication of");
    struct tls_hello unbound_mirror = { client, PEER_CHANNEL_MIRROR, false, false };
    check_stranger(__LINE__, "psk: a mirror of no stream", server, client, &options, stranger_tls_hello,
                   &unbound_mirror, false, PEER_REFUSED_UNPAIRED, "belongs to no stream");
    struct tls_hello unbound_stream = { client, PEER_CHANNEL_STREAM, false, false };
    check_stranger(__LINE__, "psk: a stream of another session", server, client, &options, stranger_tls_hello,
                   &unbound_stream, false, PEER_REFUSED_HELLO, "binding is not this session's");

    struct peer_pairing_options quick = options;
    quick.handshake_timeout_ms = 400;
    check_stranger(__LINE__, "psk: an idle connection", server, client, &quick, stranger_idle, NULL, true,
                   PEER_REFUSED_AUTHENTICATION, "sent nothing");
    quick = options;
    quick.pair_timeout_ms = 500;
    struct tls_hello lonely_stream = { client, PEER_CHANNEL_STREAM, true, false };
    check_stranger(__LINE__, "psk: a stream without its mirror", server, client, &quick, stranger_tls_hello,
                   &lonely_stream, false, PEER_REFUSED_UNPAIRED, "no mirror within 500 ms");
    /* A primary that starts over (its protect failed half way): its new
     * stream replaces the old one, and the new mirror pairs with it. */
    struct tls_hello abandoned_stream = { client, PEER_CHANNEL_STREAM, true, true };
    check_stranger(__LINE__, "psk: a stream, then a newer one", server, client, &options, stranger_tls_hello,
                   &abandoned_stream, true, PEER_REFUSED_UNPAIRED, "replaced by a newer one");
done:
    peer_credentials_destroy(server);
    peer_credentials_destroy(client);
    peer_credentials_destroy(wrong_key);
    peer_credentials_destroy(other_identity);
    peer_credentials_destroy(plain);
}

static void test_plain_strangers(const char *directory)
{
    struct peer_credentials *plain = load_credentials(__LINE__, PEER_AUTH_NONE, directory, NULL, NULL, NULL, NULL);
    struct peer_credentials *psk = load_credentials(__LINE__, PEER_AUTH_PSK, directory, "pair.psk", NULL, NULL, NULL);
    if (!plain || !psk)
        goto done;
    struct peer_pairing_options options;
    short_options(&options);
    struct wrong_client tls_client = { psk, "expects plain TCP", "authentication of" };
    check_stranger(__LINE__, "plain: a TLS primary", plain, plain, &options, stranger_wrong_credentials, &tls_client,
                   false, PEER_REFUSED_HELLO, "the peer uses TLS");
    check_stranger(__LINE__, "plain: 200 bytes of garbage", plain, plain, &options, stranger_garbage, NULL, false,
                   PEER_REFUSED_HELLO, "COLOPAIR");
    check_stranger(__LINE__, "plain: 20 bytes of a hello", plain, plain, &options, stranger_cut_hello, NULL, false,
                   PEER_REFUSED_HELLO, "closed the connection");
    static const enum peer_channel mirror = PEER_CHANNEL_MIRROR, stream = PEER_CHANNEL_STREAM;
    check_stranger(__LINE__, "plain: a mirror of no stream", plain, plain, &options, stranger_plain_hello, &mirror,
                   false, PEER_REFUSED_UNPAIRED, "belongs to no stream");
    struct peer_pairing_options quick = options;
    quick.handshake_timeout_ms = 400;
    check_stranger(__LINE__, "plain: an idle connection", plain, plain, &quick, stranger_idle, NULL, true,
                   PEER_REFUSED_HELLO, "sent nothing");
    quick = options;
    quick.pair_timeout_ms = 500;
    check_stranger(__LINE__, "plain: a stream without its mirror", plain, plain, &quick, stranger_plain_hello, &stream,
                   false, PEER_REFUSED_UNPAIRED, "no mirror within 500 ms");
    check_stranger(__LINE__, "plain: a stream, then a newer one", plain, plain, &options, stranger_plain_hello, &stream,
                   true, PEER_REFUSED_UNPAIRED, "replaced by a newer one");
done:
    peer_credentials_destroy(plain);
    peer_credentials_destroy(psk);
}

/* The waiting secondary ends when asked to (nothing paired), and when its
 * listener fails (an error, not a stream of refusals). */
static void test_waiting_ends(void)
{
    struct peer_auth_config config = { .auth = PEER_AUTH_NONE };
    struct peer_credentials *plain;
    struct error err;
    if (peer_credentials_load(&plain, &config, &err) < 0) {
        CHECK(false, "plain credentials: %s", err.message);
        return;
    }
    struct peer_pairing_options options;
    short_options(&options);
    struct secondary *secondary = calloc(1, sizeof *secondary);
    if (secondary_start(secondary, plain, &options)) {
        secondary_join(secondary);
        CHECK(secondary->result == 0 && !secondary->pair.stream && !secondary->pair.mirror &&
                  secondary->refusal_count == 0,
              "asked to stop: result %d, %d refusals", secondary->result, secondary->refusal_count);
    }
    if (secondary_start(secondary, plain, &options)) {
        /* A listener that no longer listens: accept fails with EINVAL. */
        shutdown(secondary->listener, SHUT_RDWR);
        double deadline = clock_monotonic_seconds() + WAIT_SECONDS;
        while (!atomic_load(&secondary->finished) && clock_monotonic_seconds() < deadline)
            nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000000L }, NULL);
        bool finished = atomic_load(&secondary->finished);
        secondary_join(secondary);
        CHECK(finished && secondary->result < 0 && !secondary->pair.stream && secondary->refusal_count == 0,
              "a failed listener: %s, result %d, %d refusals ('%s')", finished ? "returned" : "still waiting",
              secondary->result, secondary->refusal_count, secondary->refusal_count ? secondary->refusals[0].why : "");
        CHECK(secondary->result == 0 || strstr(secondary->err.message, "accept"), "a failed listener: '%s'",
              secondary->err.message);
    }
    free(secondary);
    peer_credentials_destroy(plain);
}

/* ---- through a pair ------------------------------------------------- */

/* 16 MiB each way at once, byte for byte; then a shutdown on the primary's
 * stream is end of file at the secondary, and the secondary's mirror
 * closed is end of file at the primary. */
static void check_pair_carries(int line, const char *name, struct peer_pair *primary, struct peer_pair *secondary)
{
    struct pump *out = pump_new(peer_connection_fd(primary->stream), 0x1111, BULK_SIZE);
    struct pump *in = pump_new(peer_connection_fd(secondary->stream), 0x1111, BULK_SIZE);
    struct pump *back = pump_new(peer_connection_fd(secondary->stream), 0x2222, BULK_SIZE);
    struct pump *back_in = pump_new(peer_connection_fd(primary->stream), 0x2222, BULK_SIZE);
    pthread_t threads[4];
    double started = clock_monotonic_seconds();
    pthread_create(&threads[0], NULL, pump_write, out);
    pthread_create(&threads[1], NULL, pump_read, in);
    pthread_create(&threads[2], NULL, pump_write, back);
    pthread_create(&threads[3], NULL, pump_read, back_in);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    printf("%-40s 2 x 16 MiB in %.2f s\n", name, clock_monotonic_seconds() - started);
    CHECK_AT(line, in->done == BULK_SIZE && !in->mismatch, "%s: primary to secondary: %zu of %u bytes%s", name,
             in->done, BULK_SIZE, in->mismatch ? ", then a wrong byte" : "");
    CHECK_AT(line, back_in->done == BULK_SIZE && !back_in->mismatch, "%s: secondary to primary: %zu of %u bytes%s",
             name, back_in->done, BULK_SIZE, back_in->mismatch ? ", then a wrong byte" : "");
    free(out);
    free(in);
    free(back);
    free(back_in);

    shutdown(peer_connection_fd(primary->stream), SHUT_RDWR);
    double shut = clock_monotonic_seconds();
    CHECK_AT(line, reads_end_within(peer_connection_fd(secondary->stream), 1.0),
             "%s: the primary's stream shut down, the secondary read no end of file within 1 s", name);
    CHECK_AT(line, clock_monotonic_seconds() - shut < 1.0, "%s: the end of file took %.2f s", name,
             clock_monotonic_seconds() - shut);
    peer_connection_close(secondary->mirror);
    secondary->mirror = NULL;
    CHECK_AT(line, reads_end_within(peer_connection_fd(primary->mirror), 1.0),
             "%s: the secondary's mirror closed, the primary read no end of file within 1 s", name);
    peer_pair_close(primary);
    peer_pair_close(secondary);
}

static void check_pairs_and_carries(int line, const char *name, const struct peer_credentials *server,
                                    const struct peer_credentials *client, const char *peer_needle)
{
    struct peer_pairing_options options;
    short_options(&options);
    struct secondary *secondary = calloc(1, sizeof *secondary);
    if (!secondary_start(secondary, server, &options)) {
        free(secondary);
        return;
    }
    struct peer_pair primary = { 0 };
    if (real_primary_pairs(line, secondary, secondary->address, client, &options, &primary)) {
        CHECK_AT(line, secondary->refusal_count == 0, "%s: %d refusals", name, secondary->refusal_count);
        const char *peer = peer_connection_peer(secondary->pair.stream);
        CHECK_AT(line, strstr(peer, peer_needle), "%s: the secondary sees its peer as '%s', expected '%s'", name, peer,
                 peer_needle);
        printf("%-40s paired with %s\n", name, peer);
        check_pair_carries(line, name, &primary, &secondary->pair);
    }
    free(secondary);
}

/* A proxy between the primary and the secondary that flips one byte of
 * the primary's stream connection after TAMPER_AT bytes (well after the
 * handshake and the hello). */
struct proxy_link {
    int from, to;
    size_t flip_at; /* SIZE_MAX: never */
    size_t forwarded;
};

static void *proxy_forward(void *opaque)
{
    struct proxy_link *link = opaque;
    unsigned char buffer[16384];
    for (;;) {
        ssize_t got = read(link->from, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (link->flip_at >= link->forwarded && link->flip_at < link->forwarded + (size_t)got)
            buffer[link->flip_at - link->forwarded] ^= 0x20;
        link->forwarded += (size_t)got;
        if (!send_all(link->to, buffer, (size_t)got))
            break;
    }
    shutdown(link->to, SHUT_WR);
    shutdown(link->from, SHUT_RD);
    return NULL;
}

struct proxy {
    int listener;
    char address[64];
    const char *upstream;
    int fds[4];
    struct proxy_link links[4];
    pthread_t threads[4];
    int started;
    pthread_t acceptor;
};

static void *proxy_accept(void *opaque)
{
    struct proxy *proxy = opaque;
    for (int connection = 0; connection < 2; connection++) {
        struct error err;
        int client = socket_accept(proxy->listener, &err);
        if (client < 0)
            return NULL;
        int server = socket_connect(proxy->upstream, &err);
        if (server < 0) {
            close(client);
            return NULL;
        }
        proxy->fds[2 * connection] = client;
        proxy->fds[2 * connection + 1] = server;
        /* The first connection is the stream: tamper with what the primary sends. */
        proxy->links[2 * connection] = (struct proxy_link){ client, server, connection == 0 ? TAMPER_AT : SIZE_MAX, 0 };
        proxy->links[2 * connection + 1] = (struct proxy_link){ server, client, SIZE_MAX, 0 };
        for (int i = 0; i < 2; i++) {
            pthread_create(&proxy->threads[2 * connection + i], NULL, proxy_forward, &proxy->links[2 * connection + i]);
            proxy->started++;
        }
    }
    return NULL;
}

static void test_tampering(const char *directory)
{
    struct peer_credentials *server = load_credentials(__LINE__, PEER_AUTH_PSK, directory, "pair.psk", NULL, NULL,
                                                       NULL);
    struct peer_credentials *client = load_credentials(__LINE__, PEER_AUTH_PSK, directory, "pair.psk", NULL, NULL,
                                                       NULL);
    struct secondary *secondary = calloc(1, sizeof *secondary);
    struct proxy *proxy = calloc(1, sizeof *proxy);
    struct peer_pairing_options options;
    short_options(&options);
    if (!server || !client || !secondary_start(secondary, server, &options))
        goto done;
    for (int i = 0; i < 4; i++)
        proxy->fds[i] = -1;
    proxy->upstream = secondary->address;
    proxy->listener = listen_on_loopback(proxy->address, sizeof proxy->address);
    if (proxy->listener < 0) {
        secondary_join(secondary);
        goto done;
    }
    pthread_create(&proxy->acceptor, NULL, proxy_accept, proxy);
    struct peer_pair primary = { 0 };
    if (real_primary_pairs(__LINE__, secondary, proxy->address, client, &options, &primary)) {
        struct pump *out = pump_new(peer_connection_fd(primary.stream), 0x3333, TAMPER_WRITE_SIZE);
        struct pump *in = pump_new(peer_connection_fd(secondary->pair.stream), 0x3333, TAMPER_WRITE_SIZE);
        pthread_t threads[2];
        pthread_create(&threads[0], NULL, pump_write, out);
        pthread_create(&threads[1], NULL, pump_read, in);
        pthread_join(threads[1], NULL);
        CHECK(in->ended, "a flipped byte: the secondary read no end of file (%zu bytes%s)", in->done,
              in->mismatch ? ", then a wrong byte" : "");
        CHECK(!in->mismatch, "a flipped byte: the secondary read a corrupted byte after %zu good ones", in->done);
        CHECK(in->done > 0 && in->done < TAMPER_WRITE_SIZE, "a flipped byte: %zu bytes arrived", in->done);
        printf("%-40s end of file after %zu good bytes\n", "psk: one byte flipped on the wire", in->done);
        /* The connection is over for the primary too (its writer may
         * have put everything into socket buffers before that: loopback
         * TCP takes megabytes), and its writer ends. */
        CHECK(reads_end_within(peer_connection_fd(primary.stream), WAIT_SECONDS),
              "a flipped byte: the primary's stream did not end");
        pthread_join(threads[0], NULL);
        free(out);
        free(in);
        peer_pair_close(&primary);
        peer_pair_close(&secondary->pair);
    }
    pthread_join(proxy->acceptor, NULL);
    for (int i = 0; i < 4; i++) {
        if (proxy->fds[i] >= 0)
            shutdown(proxy->fds[i], SHUT_RDWR);
    }
    for (int i = 0; i < proxy->started; i++)
        pthread_join(proxy->threads[i], NULL);
    for (int i = 0; i < 4; i++) {
        if (proxy->fds[i] >= 0)
            close(proxy->fds[i]);
    }
    close(proxy->listener);
done:
    free(proxy);
    free(secondary);
    peer_credentials_destroy(server);
    peer_credentials_destroy(client);
}

/* ---- certificates --------------------------------------------------- */

static bool make_certificates(const char *directory, time_t *short_lived_expiration)
{
    struct test_certificate_authority authority, other_authority;
    struct error err;
    char path[PEER_PATH_MAX], key_path[PEER_PATH_MAX];
    time_t now = time(NULL);
    path_in(path, sizeof path, directory, "ca.pem");
    if (test_certificate_authority_create(&authority, "colo test CA", path, &err) < 0) {
        CHECK(false, "making the CA: %s", err.message);
        return false;
    }
    path_in(path, sizeof path, directory, "other-ca.pem");
    if (test_certificate_authority_create(&other_authority, "another CA", path, &err) < 0) {
        CHECK(false, "making the other CA: %s", err.message);
        test_certificate_authority_destroy(&authority);
        return false;
    }
    static const struct {
        const char *name;
        bool other;
        long activation, expiration;
    } certificates[] = {
        { "a", false, -3600, 86400 },       { "b", false, -3600, 86400 },    { "stranger", true, -3600, 86400 },
        { "expired", false, -7200, -3600 }, { "future", false, 3600, 7200 },
    };
    bool made = true;
    for (size_t i = 0; i < sizeof certificates / sizeof certificates[0] && made; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.pem", certificates[i].name);
        path_in(path, sizeof path, directory, name);
        snprintf(name, sizeof name, "%s.key", certificates[i].name);
        path_in(key_path, sizeof key_path, directory, name);
        snprintf(name, sizeof name, "node-%s", certificates[i].name);
        made = test_certificate_issue(certificates[i].other ? &other_authority : &authority, name,
                                      now + certificates[i].activation, now + certificates[i].expiration, path,
                                      key_path, &err) == 0;
        CHECK(made, "making certificate %s: %s", certificates[i].name, err.message);
    }
    /* Valid for a few seconds: loadable now, expired at the handshake. */
    *short_lived_expiration = time(NULL) + 2;
    path_in(path, sizeof path, directory, "short-lived.pem");
    path_in(key_path, sizeof key_path, directory, "short-lived.key");
    if (made && test_certificate_issue(&authority, "node-short-lived", now - 3600, *short_lived_expiration, path,
                                       key_path, &err) < 0) {
        CHECK(false, "making the short-lived certificate: %s", err.message);
        made = false;
    }
    path_in(path, sizeof path, directory, "stray.key");
    if (made && test_certificate_write_stray_key(path, &err) < 0) {
        CHECK(false, "making a stray key: %s", err.message);
        made = false;
    }
    /* A CA file that trusts both CAs: a stranger that accepts our
     * certificate, so the refusal is the secondary's own verification. */
    char both[PEER_PATH_MAX * 2 + 16];
    snprintf(both, sizeof both, "cat '%s/ca.pem' '%s/other-ca.pem' > '%s/both-ca.pem'", directory, directory,
             directory);
    if (made && system(both) != 0) {
        CHECK(false, "%s failed", both);
        made = false;
    }
    test_certificate_authority_destroy(&authority);
    test_certificate_authority_destroy(&other_authority);
    return made;
}

static void check_load_fails(int line, const char *directory, const char *certificate, const char *key, const char *ca,
                             const char *needle, const char *names_file)
{
    struct peer_auth_config config = { .auth = PEER_AUTH_CERTIFICATE };
    path_in(config.certificate_path, sizeof config.certificate_path, directory, certificate);
    path_in(config.key_path, sizeof config.key_path, directory, key);
    path_in(config.ca_path, sizeof config.ca_path, directory, ca);
    struct peer_credentials *credentials;
    struct error err;
    int status = peer_credentials_load(&credentials, &config, &err);
    CHECK_AT(line, status < 0 && !credentials, "%s with %s and %s loaded", certificate, key, ca);
    if (status == 0) {
        peer_credentials_destroy(credentials);
        return;
    }
    CHECK_AT(line, strstr(err.message, needle) && strstr(err.message, names_file),
             "loading %s: '%s', expected '%s' and the file %s", certificate, err.message, needle, names_file);
    printf("%-40s %s\n", "  (a load refused)", err.message);
}

static void test_certificates(const char *directory)
{
    time_t short_lived_expiration;
    if (!make_certificates(directory, &short_lived_expiration))
        return;
    /* Loadable now; a stranger once it is past its date. */
    struct peer_credentials *short_lived = load_credentials(__LINE__, PEER_AUTH_CERTIFICATE, directory, NULL,
                                                            "short-lived.pem", "short-lived.key", "ca.pem");
    struct peer_credentials *a = load_credentials(__LINE__, PEER_AUTH_CERTIFICATE, directory, NULL, "a.pem", "a.key",
                                                  "ca.pem");
    struct peer_credentials *b = load_credentials(__LINE__, PEER_AUTH_CERTIFICATE, directory, NULL, "b.pem", "b.key",
                                                  "ca.pem");
    struct peer_credentials *stranger = load_credentials(__LINE__, PEER_AUTH_CERTIFICATE, directory, NULL,
                                                         "stranger.pem", "stranger.key", "other-ca.pem");
    struct peer_credentials *trusting_stranger = load_credentials(__LINE__, PEER_AUTH_CERTIFICATE, directory, NULL,
                                                                  "stranger.pem", "stranger.key", "both-ca.pem");
    struct peer_credentials *psk = load_credentials(__LINE__, PEER_AUTH_PSK, directory, "pair.psk", NULL, NULL, NULL);
    check_load_fails(__LINE__, directory, "expired.pem", "expired.key", "ca.pem", "expired", "expired.pem");
    check_load_fails(__LINE__, directory, "future.pem", "future.key", "ca.pem", "not valid before", "future.pem");
    check_load_fails(__LINE__, directory, "a.pem", "stray.key", "ca.pem", "the key is not this certificate's",
                     "stray.key");
    check_load_fails(__LINE__, directory, "stranger.pem", "stranger.key", "ca.pem", "does not verify against the CA",
                     "stranger.pem");
    check_load_fails(__LINE__, directory, "a.pem", "a.key", "missing-ca.pem", "missing-ca.pem", "missing-ca.pem");
    if (!a || !b || !stranger || !trusting_stranger || !psk)
        goto done;
    CHECK(strstr(peer_credentials_describe(a), "CN=node-a"), "a describes itself as '%s'",
          peer_credentials_describe(a));

    struct peer_pairing_options options;
    short_options(&options);
    struct wrong_client other_ca = { stranger, "issuer is unknown", "authentication of" };
    check_stranger(__LINE__, "certificate: another CA's", a, b, &options, stranger_wrong_credentials, &other_ca, false,
                   PEER_REFUSED_AUTHENTICATION, "CA is unknown");
    struct wrong_client other_ca_trusting = { trusting_stranger, "refused us",
                                              "is our certificate one of the peer's CA" };
    check_stranger(__LINE__, "certificate: another CA's, trusting ours", a, b, &options, stranger_wrong_credentials,
                   &other_ca_trusting, false, PEER_REFUSED_AUTHENTICATION, "presented no certificate");
    struct wrong_client psk_client = { psk, "authentication of", NULL };
    check_stranger(__LINE__, "certificate: a pre-shared key primary", a, b, &options, stranger_wrong_credentials,
                   &psk_client, false, PEER_REFUSED_AUTHENTICATION, "authentication of");
    if (short_lived) {
        /* Wait for the date to pass (the verification counts whole seconds). */
        while (time(NULL) <= short_lived_expiration + 1)
            nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000000L }, NULL);
        struct wrong_client expired = { short_lived, "refused us", "Certificate is expired" };
        check_stranger(__LINE__, "certificate: expired since it was loaded", a, b, &options, stranger_wrong_credentials,
                       &expired, false, PEER_REFUSED_AUTHENTICATION, "expired");
    } else {
        printf("the short-lived certificate expired before it was loaded (a slow host): its handshake not tried\n");
    }
    check_pairs_and_carries(__LINE__, "certificate: a and b", a, b, "CN=node-b");
done:
    peer_credentials_destroy(short_lived);
    peer_credentials_destroy(a);
    peer_credentials_destroy(b);
    peer_credentials_destroy(stranger);
    peer_credentials_destroy(trusting_stranger);
    peer_credentials_destroy(psk);
}

static void test_carries(const char *directory)
{
    struct peer_credentials *server = load_credentials(__LINE__, PEER_AUTH_PSK, directory, "pair.psk", NULL, NULL,
                                                       NULL);
    struct peer_credentials *client = load_credentials(__LINE__, PEER_AUTH_PSK, directory, "pair.psk", NULL, NULL,
                                                       NULL);
    struct peer_credentials *plain = load_credentials(__LINE__, PEER_AUTH_NONE, directory, NULL, NULL, NULL, NULL);
    if (server && client)
        check_pairs_and_carries(__LINE__, "psk: a pair", server, client, "identity web");
    if (plain)
        check_pairs_and_carries(__LINE__, "plain: a pair", plain, plain, "127.0.0.1:");
    peer_credentials_destroy(server);
    peer_credentials_destroy(client);
    peer_credentials_destroy(plain);
}

/* ---- key files and hellos ------------------------------------------ */

static void check_psk_error(int line, const char *text, const char *needle)
{
    struct peer_psk psk;
    struct error err;
    int status = peer_psk_parse(text, strlen(text), "keys/pair.psk", &psk, &err);
    CHECK_AT(line, status < 0, "'%s' parsed", text);
    if (status == 0)
        return;
    CHECK_AT(line, strncmp(err.message, "keys/pair.psk:1: ", 17) == 0 && strstr(err.message, needle),
             "'%s': '%s', expected the file, its line and '%s'", text, err.message, needle);
}

static void test_psk_parse(void)
{
    static const char *const valid[] = {
        "web:00112233445566778899aabbccddeeff",
        "web:00112233445566778899aabbccddeeff\n",
        "web:00112233445566778899aabbccddeeff\r\n",
        "web:00112233445566778899AABBCCDDEEFF\n",
    };
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        struct peer_psk psk;
        struct error err;
        int status = peer_psk_parse(valid[i], strlen(valid[i]), "pair.psk", &psk, &err);
        CHECK(status == 0, "valid line %zu refused: %s", i, err.message);
        CHECK(status < 0 || (strcmp(psk.identity, "web") == 0 && psk.key_size == 16 && psk.key[0] == 0x00 &&
                             psk.key[1] == 0x11 && psk.key[15] == 0xff),
              "valid line %zu read back wrong", i);
    }
    char longest[200];
    snprintf(longest, sizeof longest, "%.*s:%.*s", PEER_PSK_IDENTITY_MAX,
             "a.b-c_d@e0123456789012345678901234567890123456789012345678901234567890123456789", 2 * PEER_PSK_KEY_MAX,
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    struct peer_psk psk;
    struct error err;
    CHECK(peer_psk_parse(longest, strlen(longest), "pair.psk", &psk, &err) == 0 && psk.key_size == PEER_PSK_KEY_MAX &&
              strlen(psk.identity) == PEER_PSK_IDENTITY_MAX,
          "the longest identity and key refused: %s", err.message);

    check_psk_error(__LINE__, "web00112233445566778899aabbccddeeff", "expected IDENTITY:HEXKEY");
    check_psk_error(__LINE__, "", "expected IDENTITY:HEXKEY");
    check_psk_error(__LINE__, ":00112233445566778899aabbccddeeff", "1 to 64 characters");
    char too_long_identity[200];
    snprintf(too_long_identity, sizeof too_long_identity, "%065d:00112233445566778899aabbccddeeff", 0);
    check_psk_error(__LINE__, too_long_identity, "1 to 64 characters");
    check_psk_error(__LINE__, "w b:00112233445566778899aabbccddeeff", "not byte 2");
    check_psk_error(__LINE__, "web:00112233445566778899aabbccddeef", "got 31 characters");
    check_psk_error(__LINE__, "web:00112233445566778899aabbccddee", "got 30 characters");
    char too_long_key[300];
    snprintf(too_long_key, sizeof too_long_key, "web:%0130d", 0);
    check_psk_error(__LINE__, too_long_key, "got 130 characters");
    check_psk_error(__LINE__, "web:0011223344556677x899aabbccddeeff", "not hex at column 21");
    check_psk_error(__LINE__, "web:00112233445566778899aabbccddeefg", "not hex at column 36");
    check_psk_error(__LINE__, "web:00112233445566778899aabbccddeeff\n\n", "got 33 characters");
    check_psk_error(__LINE__, "web:00112233445566778899aabbccddeeff \n", "characters");
    /* Only one line: a second one is not part of the key. */
    check_psk_error(__LINE__, "web:00112233445566778899aabbccddeeff\nweb:00112233445566778899aabbccddeeff\n",
                    "characters");
}

static void test_psk_generate(const char *directory)
{
    char path[PEER_PATH_MAX];
    path_in(path, sizeof path, directory, "generated.psk");
    struct error err;
    CHECK(peer_psk_generate_file(path, "node@example.org", &err) == 0, "generate: %s", err.message);
    struct stat status;
    CHECK(stat(path, &status) == 0 && (status.st_mode & 0777) == 0600, "the key file's mode is %o, expected 600",
          (unsigned)(status.st_mode & 0777));
    char text[512] = "";
    FILE *file = fopen(path, "r");
    size_t length = file ? fread(text, 1, sizeof text - 1, file) : 0;
    if (file)
        fclose(file);
    struct peer_psk psk;
    CHECK(peer_psk_parse(text, length, path, &psk, &err) == 0 && strcmp(psk.identity, "node@example.org") == 0 &&
              psk.key_size == 32,
          "the generated key does not read back: %s", err.message);
    CHECK(peer_psk_generate_file(path, "node@example.org", &err) < 0 && strstr(err.message, "never overwritten"),
          "an existing key file overwritten: '%s'", err.message);
    struct peer_psk again;
    FILE *reread = fopen(path, "r");
    length = reread ? fread(text, 1, sizeof text - 1, reread) : 0;
    if (reread)
        fclose(reread);
    CHECK(peer_psk_parse(text, length, path, &again, &err) == 0 && memcmp(again.key, psk.key, 32) == 0,
          "the refused overwrite changed the key");
    path_in(path, sizeof path, directory, "bad-identity.psk");
    CHECK(peer_psk_generate_file(path, "no spaces", &err) < 0 && access(path, F_OK) < 0,
          "a key file with a bad identity made");
    CHECK(peer_psk_generate_file(path, "", &err) < 0 && access(path, F_OK) < 0, "a key file with no identity made");
    path_in(path, sizeof path, directory, "second.psk");
    CHECK(peer_psk_generate_file(path, "node@example.org", &err) == 0, "generate: %s", err.message);
    file = fopen(path, "r");
    length = file ? fread(text, 1, sizeof text - 1, file) : 0;
    if (file)
        fclose(file);
    CHECK(peer_psk_parse(text, length, path, &again, &err) == 0 && memcmp(again.key, psk.key, 32) != 0,
          "two generated keys are the same");

    struct peer_auth_config config = { .auth = PEER_AUTH_UNSET };
    struct peer_credentials *credentials;
    CHECK(peer_credentials_load(&credentials, &config, &err) < 0 && strstr(err.message, "replication_auth"),
          "unset credentials: '%s'", err.message);
    config.auth = PEER_AUTH_PSK;
    CHECK(peer_credentials_load(&credentials, &config, &err) < 0 && strstr(err.message, "replication_psk"),
          "psk without a file: '%s'", err.message);
    path_in(config.psk_path, sizeof config.psk_path, directory, "missing.psk");
    CHECK(peer_credentials_load(&credentials, &config, &err) < 0 && strstr(err.message, config.psk_path),
          "a missing key file: '%s'", err.message);
    config.auth = PEER_AUTH_CERTIFICATE;
    CHECK(peer_credentials_load(&credentials, &config, &err) < 0 && strstr(err.message, "replication_certificate"),
          "certificate without files: '%s'", err.message);
}

static void check_hello_error(int line, const uint8_t *bytes, size_t size, const char *needle)
{
    struct peer_hello hello;
    struct error err;
    int status = peer_hello_parse(bytes, size, &hello, &err);
    CHECK_AT(line, status < 0, "a bad hello parsed");
    CHECK_AT(line, status == 0 || strstr(err.message, needle), "a bad hello: '%s', expected '%s'", err.message, needle);
}

static void test_hello(void)
{
    for (int channel = PEER_CHANNEL_STREAM; channel <= PEER_CHANNEL_MIRROR; channel++) {
        struct peer_hello hello = { .channel = (enum peer_channel)channel }, parsed;
        for (int i = 0; i < PEER_BINDING_SIZE; i++)
            hello.binding[i] = (uint8_t)(i * 7 + channel);
        uint8_t bytes[PEER_HELLO_SIZE];
        peer_hello_encode(&hello, bytes);
        struct error err;
        CHECK(memcmp(bytes, "COLOPAIR", 8) == 0 && bytes[8] == 1 && bytes[9] == channel && bytes[10] == 0 &&
                  bytes[11] == 0 && memcmp(bytes + 12, hello.binding, PEER_BINDING_SIZE) == 0,
              "the hello's wire form is not the documented one");
        CHECK(peer_hello_parse(bytes, sizeof bytes, &parsed, &err) == 0 && parsed.channel == hello.channel &&
                  memcmp(parsed.binding, hello.binding, PEER_BINDING_SIZE) == 0,
              "channel %d's hello does not read back: %s", channel, err.message);
    }
    uint8_t good[PEER_HELLO_SIZE], bad[PEER_HELLO_SIZE];
    peer_hello_encode(&(struct peer_hello){ .channel = PEER_CHANNEL_MIRROR }, good);
    check_hello_error(__LINE__, good, PEER_HELLO_SIZE - 1, "43 bytes");
    check_hello_error(__LINE__, good, 0, "0 bytes");
    memcpy(bad, good, sizeof bad);
    bad[3] = 'X';
    check_hello_error(__LINE__, bad, sizeof bad, "COLOPAIR");
    memcpy(bad, good, sizeof bad);
    bad[8] = 2;
    check_hello_error(__LINE__, bad, sizeof bad, "version 2");
    for (unsigned channel = 0; channel < 256; channel += 255) {
        memcpy(bad, good, sizeof bad);
        bad[9] = (uint8_t)channel;
        check_hello_error(__LINE__, bad, sizeof bad, "channel");
    }
    memcpy(bad, good, sizeof bad);
    bad[9] = 3;
    check_hello_error(__LINE__, bad, sizeof bad, "channel 3");
    for (int reserved = 10; reserved <= 11; reserved++) {
        memcpy(bad, good, sizeof bad);
        bad[reserved] = 1;
        check_hello_error(__LINE__, bad, sizeof bad, "reserved");
    }
    /* The start of a TLS ClientHello: a record of type handshake, 3.x. */
    static const uint8_t client_hello[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03 };
    memset(bad, 0, sizeof bad);
    memcpy(bad, client_hello, sizeof client_hello);
    check_hello_error(__LINE__, bad, sizeof bad, "TLS");
    check_hello_error(__LINE__, client_hello, sizeof client_hello, "TLS");
    CHECK(strcmp(peer_refusal_name(PEER_REFUSED_AUTHENTICATION), "authentication") == 0 &&
              strcmp(peer_refusal_name(PEER_REFUSED_HELLO), "hello") == 0 &&
              strcmp(peer_refusal_name(PEER_REFUSED_UNPAIRED), "unpaired") == 0,
          "refusal names");
}

/* ---- main ----------------------------------------------------------- */

static void remove_directory(const char *directory)
{
    DIR *listing = opendir(directory);
    if (listing) {
        struct dirent *entry;
        while ((entry = readdir(listing))) {
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
                continue;
            char path[PEER_PATH_MAX];
            path_in(path, sizeof path, directory, entry->d_name);
            unlink(path);
        }
        closedir(listing);
    }
    rmdir(directory);
}

int main(void)
{
    /* A peer gone while we write is an error return, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    char directory[] = "/tmp/colo-peer-tls-XXXXXX";
    if (!mkdtemp(directory)) {
        perror("mkdtemp");
        return 1;
    }
    test_psk_parse();
    test_psk_generate(directory);
    test_hello();
    struct error err;
    char path[PEER_PATH_MAX];
    static const char *const key_files[][2] = {
        { "pair.psk", "web" },
        { "wrong-key.psk", "web" },
        { "other-identity.psk", "mail" },
    };
    bool keys = true;
    for (size_t i = 0; i < sizeof key_files / sizeof key_files[0]; i++) {
        path_in(path, sizeof path, directory, key_files[i][0]);
        if (peer_psk_generate_file(path, key_files[i][1], &err) < 0) {
            CHECK(false, "making %s: %s", path, err.message);
            keys = false;
        }
    }
    if (keys) {
        test_waiting_ends();
        test_psk_strangers(directory);
        test_plain_strangers(directory);
        test_carries(directory);
        test_tampering(directory);
        test_certificates(directory);
    }
    remove_directory(directory);
    return test_check_finish("peer_tls_test");
}
