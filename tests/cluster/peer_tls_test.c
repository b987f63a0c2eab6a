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
 * arriving. Over TLS the mirror is direct at both ends (no relay; the
 * stream keeps its relay; a plain-TCP mirror is its socket): through
 * send_message and receive_now, a few thousand messages of 1 byte to
 * 70 KB each way at once, every byte and the order checked, each end
 * renewing its keys four times meanwhile (and the stream's relays four
 * times during their 16 MiB each way); a record read
 * in part waits in the session (receive_buffered); a receiver that does
 * not read makes a send refused, whole or nothing (everything sent before
 * it arrives, nothing of it, and the next send arrives after the drain);
 * a 64 KB message still goes through a 64 KB socket buffer; the peer's close
 * is seen within 1 s; a byte flipped on the mirror is EPROTO, never
 * delivered. Also the key file's parser and maker and the hello's form. */
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

/* The pair's pre-shared key, "pair.psk": one end's credentials. */
static struct peer_credentials *load_psk(int line, const char *directory)
{
    return load_credentials(line, PEER_AUTH_PSK, directory, "pair.psk", NULL, NULL, NULL);
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

/* ---- the mirror: its session read and written directly -------------- */

/* A TLS pair's mirror has no relay (peer_connection.h, direct): its
 * threads call send_message and receive_now themselves; a plain-TCP
 * mirror is its socket. These speak to either. */

/* One message through a mirror: direct, send_message, a WOULD_BLOCK
 * retried once the socket may have room, for at most seconds (retries
 * counted); plain, the socket. */
static enum peer_send_result mirror_send(struct peer_connection *connection, const struct iovec *parts, int part_count,
                                         double seconds, unsigned long *retries)
{
    if (!peer_connection_is_direct(connection)) {
        for (int i = 0; i < part_count; i++) {
            if (!send_all(peer_connection_fd(connection), parts[i].iov_base, parts[i].iov_len))
                return PEER_SEND_BROKEN;
        }
        return PEER_SENT;
    }
    double deadline = clock_monotonic_seconds() + seconds;
    for (;;) {
        enum peer_send_result result = peer_connection_send_message(connection, parts, part_count);
        if (result != PEER_SEND_WOULD_BLOCK)
            return result;
        if (retries)
            (*retries)++;
        int left_ms = (int)((deadline - clock_monotonic_seconds()) * 1000.0);
        if (left_ms <= 0)
            return PEER_SEND_WOULD_BLOCK;
        struct pollfd writable = { .fd = peer_connection_fd(connection), .events = POLLOUT };
        if (poll(&writable, 1, left_ms < 10 ? left_ms : 10) > 0) {
            /* Writable, but not room enough for the whole message yet
             * (it counts what is unacknowledged): back off a little. */
            nanosleep(&(struct timespec){ .tv_nsec = 500 * 1000L }, NULL);
        }
    }
}

/* What has arrived on a direct mirror, as its header says to read it:
 * receive_now, and poll only after EAGAIN and when nothing waits in the
 * session. > 0 bytes, 0 closed, -1 with errno (ETIMEDOUT: nothing before
 * the deadline). */
static ssize_t direct_receive(struct peer_connection *connection, void *data, size_t size, double deadline)
{
    for (;;) {
        ssize_t got = peer_connection_receive_now(connection, data, size);
        if (got >= 0)
            return got;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        int left_ms = (int)((deadline - clock_monotonic_seconds()) * 1000.0);
        if (left_ms <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno == EINTR || peer_connection_receive_buffered(connection))
            continue;
        struct pollfd readable = { .fd = peer_connection_fd(connection), .events = POLLIN };
        (void)poll(&readable, 1, left_ms);
    }
}

static bool mirror_receive_all(struct peer_connection *connection, void *data, size_t size, double seconds)
{
    if (!peer_connection_is_direct(connection))
        return receive_all(peer_connection_fd(connection), data, size, seconds);
    unsigned char *bytes = data;
    double deadline = clock_monotonic_seconds() + seconds;
    while (size > 0) {
        ssize_t got = direct_receive(connection, bytes, size, deadline);
        if (got <= 0)
            return false;
        bytes += got;
        size -= (size_t)got;
    }
    return true;
}

/* Reads and drops until the peer's close shows: receive_now returns 0, or
 * fails other than EAGAIN (how, in *ending: 0 or the errno); false if it
 * does not within seconds. */
static bool mirror_reads_end_within(struct peer_connection *connection, double seconds, int *ending)
{
    if (!peer_connection_is_direct(connection))
        return reads_end_within(peer_connection_fd(connection), seconds);
    double deadline = clock_monotonic_seconds() + seconds;
    unsigned char buffer[4096];
    for (;;) {
        ssize_t got = direct_receive(connection, buffer, sizeof buffer, deadline);
        if (got == 0 || (got < 0 && errno != ETIMEDOUT)) {
            if (ending)
                *ending = got == 0 ? 0 : errno;
            return true;
        }
        if (got < 0)
            return false;
    }
}

/* A test message: its payload's length and its sequence number (32 bits
 * each, host order), then the payload: the pattern of (seed, sequence). */
#define MESSAGE_HEADER 8u
#define MESSAGE_MAX 70000u

static uint64_t mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t payload_seed(uint64_t seed, uint32_t sequence)
{
    return mix(seed + sequence);
}

/* Mostly small, one in eight longer than a TLS record (16 KiB), and the
 * edges: 1 byte, a record less one, a record, a record and one, the most. */
static size_t varied_payload_size(uint64_t seed, uint32_t sequence)
{
    static const size_t edges[] = { 1, 16383 - MESSAGE_HEADER, 16384 - MESSAGE_HEADER, 16385 - MESSAGE_HEADER,
                                    MESSAGE_MAX - MESSAGE_HEADER };
    if (sequence % 100 < sizeof edges / sizeof edges[0])
        return edges[sequence % 100];
    uint64_t h = mix(seed ^ (0x51ull << 40) ^ sequence);
    if (h % 8 == 0)
        return 16385 + (size_t)(h >> 8) % (MESSAGE_MAX - MESSAGE_HEADER - 16385);
    return 1 + (size_t)(h >> 8) % 3000;
}

static size_t stuffing_payload_size(uint64_t seed, uint32_t sequence)
{
    (void)seed;
    (void)sequence;
    return 65536 - MESSAGE_HEADER;
}

/* Fills header and payload (MESSAGE_MAX bytes at least); the parts to send. */
static void make_message(uint64_t seed, uint32_t sequence, size_t payload_size, unsigned char *header,
                         unsigned char *payload, struct iovec parts[2])
{
    uint32_t fields[2] = { (uint32_t)payload_size, sequence };
    memcpy(header, fields, MESSAGE_HEADER);
    fill_pattern(payload_seed(seed, sequence), 0, payload, payload_size);
    parts[0] = (struct iovec){ header, MESSAGE_HEADER };
    parts[1] = (struct iovec){ payload, payload_size };
}

/* Takes messages off a direct mirror and checks each: its length, its
 * sequence number (the next expected), every byte. */
struct message_reader {
    struct peer_connection *connection;
    uint64_t seed;
    size_t (*payload_size)(uint64_t seed, uint32_t sequence);
    uint32_t next;  /* the sequence number expected next */
    uint32_t until; /* read until next reaches it */
    unsigned long reads;
    bool failed; /* the reason in why */
    int error;   /* a read's: its errno, or -1 for end of file; 0 for a wrong message */
    char why[200];
    size_t buffered;
    unsigned char buffer[MESSAGE_MAX + 65536], expected[MESSAGE_MAX];
};

/* Checks the whole messages buffered (a header as soon as it is there),
 * and keeps what is left of the next. */
static void reader_take(struct message_reader *reader)
{
    size_t at = 0;
    while (!reader->failed && reader->buffered - at >= MESSAGE_HEADER) {
        uint32_t fields[2];
        memcpy(fields, reader->buffer + at, MESSAGE_HEADER);
        size_t expected_size = reader->payload_size(reader->seed, reader->next);
        if (fields[1] != reader->next || fields[0] != expected_size) {
            reader->failed = true;
            snprintf(reader->why, sizeof reader->why, "message %u of %u bytes came where %u of %zu was expected",
                     fields[1], fields[0], reader->next, expected_size);
            break;
        }
        if (reader->buffered - at < MESSAGE_HEADER + expected_size)
            break;
        fill_pattern(payload_seed(reader->seed, reader->next), 0, reader->expected, expected_size);
        if (memcmp(reader->buffer + at + MESSAGE_HEADER, reader->expected, expected_size) != 0) {
            reader->failed = true;
            snprintf(reader->why, sizeof reader->why, "message %u (%zu bytes) is not what was sent", reader->next,
                     expected_size);
            break;
        }
        at += MESSAGE_HEADER + expected_size;
        reader->next++;
    }
    memmove(reader->buffer, reader->buffer + at, reader->buffered - at);
    reader->buffered -= at;
}

/* Reads until message `until` - 1 is checked, or a failure, or nothing
 * for WAIT_SECONDS. Reads of varied sizes: some end inside a record. */
static void reader_run(struct message_reader *reader)
{
    while (!reader->failed && reader->next < reader->until) {
        size_t room = sizeof reader->buffer - reader->buffered;
        size_t want = reader->reads % 3 == 0 ? 1000 : room;
        if (want > room)
            want = room;
        ssize_t got = direct_receive(reader->connection, reader->buffer + reader->buffered, want,
                                     clock_monotonic_seconds() + WAIT_SECONDS);
        reader->reads++;
        if (got <= 0) {
            reader->failed = true;
            reader->error = got == 0 ? -1 : errno;
            snprintf(reader->why, sizeof reader->why, "%s after message %u, %zu bytes of the next",
                     got == 0 ? "end of file" : strerror(errno), reader->next, reader->buffered);
            break;
        }
        reader->buffered += (size_t)got;
        reader_take(reader);
    }
}

static void *reader_thread(void *opaque)
{
    reader_run(opaque);
    return NULL;
}

struct message_writer {
    struct peer_connection *connection;
    uint64_t seed;
    uint32_t count;
    uint32_t sent;
    unsigned long retries;
    uint32_t key_update_every; /* messages between two KeyUpdates of this end's keys; 0: none */
    unsigned key_updates, key_update_failures;
    enum peer_send_result last;
    unsigned char header[MESSAGE_HEADER], payload[MESSAGE_MAX];
};

static void *writer_thread(void *opaque)
{
    struct message_writer *writer = opaque;
    writer->last = PEER_SENT;
    while (writer->sent < writer->count) {
        struct iovec parts[2];
        make_message(writer->seed, writer->sent, varied_payload_size(writer->seed, writer->sent), writer->header,
                     writer->payload, parts);
        writer->last = mirror_send(writer->connection, parts, 2, WAIT_SECONDS, &writer->retries);
        if (writer->last != PEER_SENT)
            break;
        writer->sent++;
        if (writer->key_update_every && writer->sent % writer->key_update_every == 0) {
            if (peer_connection_update_keys(writer->connection) == 0)
                writer->key_updates++;
            else
                writer->key_update_failures++;
        }
    }
    return NULL;
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

/* The same through the mirrors, as their threads speak: over TLS the
 * session itself (a byte written to the socket would bypass it). */
static void check_mirror_exchange(int line, struct peer_connection *a, struct peer_connection *b)
{
    char sent[32], received[32];
    snprintf(sent, sizeof sent, "%-31s", "mirror");
    struct iovec part = { sent, sizeof sent };
    CHECK_AT(line,
             mirror_send(a, &part, 1, WAIT_SECONDS, NULL) == PEER_SENT &&
                 mirror_receive_all(b, received, sizeof received, WAIT_SECONDS) &&
                 memcmp(sent, received, sizeof sent) == 0,
             "mirror: a message did not cross from the primary");
    CHECK_AT(line,
             mirror_send(b, &part, 1, WAIT_SECONDS, NULL) == PEER_SENT &&
                 mirror_receive_all(a, received, sizeof received, WAIT_SECONDS) &&
                 memcmp(sent, received, sizeof sent) == 0,
             "mirror: a message did not cross from the secondary");
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
    /* Over TLS the mirror is direct at both ends, the stream relayed. */
    bool tls = peer_credentials_auth(credentials) != PEER_AUTH_NONE;
    CHECK_AT(line,
             peer_connection_is_direct(primary->mirror) == tls &&
                 peer_connection_is_direct(secondary->pair.mirror) == tls,
             "the mirror is direct at the primary: %d, at the secondary: %d; expected %d",
             peer_connection_is_direct(primary->mirror), peer_connection_is_direct(secondary->pair.mirror), tls);
    CHECK_AT(line, !peer_connection_is_direct(primary->stream) && !peer_connection_is_direct(secondary->pair.stream),
             "a stream is direct");
    check_mirror_exchange(line, primary->mirror, secondary->pair.mirror);
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
    struct peer_credentials *server = load_psk(__LINE__, directory), *client = load_psk(__LINE__, directory);
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
    struct peer_credentials *psk = load_psk(__LINE__, directory);
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
    /* Over TLS each relay renews its keys every 4 MiB meanwhile (what
     * GnuTLS does by itself after 2^24 records): four times each way,
     * within GnuTLS's limit of eight a second. A test hook: not in the
     * ThreadSanitizer build. */
#ifdef COLO_TEST_HOOKS
    bool tls = peer_connection_is_direct(primary->mirror);
    if (tls) {
        peer_connection_test_update_keys_every(primary->stream, BULK_SIZE / 4);
        peer_connection_test_update_keys_every(secondary->stream, BULK_SIZE / 4);
    }
#endif
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
#ifdef COLO_TEST_HOOKS
    if (tls)
        CHECK_AT(line,
                 peer_connection_test_key_updates(primary->stream) == 4 &&
                     peer_connection_test_key_updates(secondary->stream) == 4,
                 "%s: the stream's relays renewed their keys %u and %u times, not 4", name,
                 peer_connection_test_key_updates(primary->stream),
                 peer_connection_test_key_updates(secondary->stream));
#endif
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
    CHECK_AT(line, mirror_reads_end_within(primary->mirror, 1.0, NULL),
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

/* ---- the mirror, direct --------------------------------------------- */

#define DIRECT_MESSAGES 3000u
#define STUFFING_MAX 4096u

/* Both ways at once: on each side a writer sends DIRECT_MESSAGES of 1
 * byte to 70 KB while a reader takes the other side's; every byte and the
 * order checked. */
static void check_both_ways(struct peer_connection *primary, struct peer_connection *secondary)
{
    struct message_writer *writers[2];
    struct message_reader *readers[2];
    struct peer_connection *ends[2] = { primary, secondary };
    for (int i = 0; i < 2; i++) {
        writers[i] = calloc(1, sizeof *writers[i]);
        readers[i] = calloc(1, sizeof *readers[i]);
        writers[i]->connection = ends[i];
        writers[i]->seed = 0x7100 + (uint64_t)i;
        writers[i]->count = DIRECT_MESSAGES;
        /* What GnuTLS does by itself every 2^24 records: each end renews
         * its keys while the other end's reader and writer are busy. Four
         * times: GnuTLS refuses a peer's ninth update within a second. */
        writers[i]->key_update_every = DIRECT_MESSAGES / 4;
        readers[i]->connection = ends[1 - i];
        readers[i]->seed = writers[i]->seed;
        readers[i]->payload_size = varied_payload_size;
        readers[i]->until = DIRECT_MESSAGES;
    }
    pthread_t threads[4];
    double started = clock_monotonic_seconds();
    for (int i = 0; i < 2; i++) {
        pthread_create(&threads[2 * i], NULL, writer_thread, writers[i]);
        pthread_create(&threads[2 * i + 1], NULL, reader_thread, readers[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    static const char *const directions[] = { "primary to secondary", "secondary to primary" };
    for (int i = 0; i < 2; i++) {
        CHECK(writers[i]->sent == DIRECT_MESSAGES, "direct, %s: %u of %u messages sent, then %s", directions[i],
              writers[i]->sent, DIRECT_MESSAGES,
              writers[i]->last == PEER_SEND_BROKEN ? "a broken connection" : "no room for 20 s");
        CHECK(!readers[i]->failed && readers[i]->next == DIRECT_MESSAGES, "direct, %s: %u of %u messages read: %s",
              directions[i], readers[i]->next, DIRECT_MESSAGES, readers[i]->why);
        CHECK(writers[i]->key_updates == 4 && writers[i]->key_update_failures == 0,
              "direct, %s: %u key updates, %u failed", directions[i], writers[i]->key_updates,
              writers[i]->key_update_failures);
    }
    printf("%-40s 2 x %u messages in %.2f s, %lu + %lu retries of a full socket\n", "psk: direct mirror, both ways",
           DIRECT_MESSAGES, clock_monotonic_seconds() - started, writers[0]->retries, writers[1]->retries);
    for (int i = 0; i < 2; i++) {
        free(writers[i]);
        free(readers[i]);
    }
}

/* The secondary does not read: the primary's 64 KB messages are sent until
 * one is refused. Then everything sent arrives, whole and in order, and
 * nothing of the refused one: the next message after it does. */
static void check_whole_or_nothing(struct peer_connection *sender, struct peer_connection *receiver)
{
    struct message_writer *writer = calloc(1, sizeof *writer);
    struct message_reader *reader = calloc(1, sizeof *reader);
    const uint64_t seed = 0x5555;
    struct iovec parts[2];
    enum peer_send_result result = PEER_SENT;
    uint32_t sent = 0;
    double deadline = clock_monotonic_seconds() + WAIT_SECONDS;
    while (sent < STUFFING_MAX && clock_monotonic_seconds() < deadline) {
        make_message(seed, sent, stuffing_payload_size(seed, sent), writer->header, writer->payload, parts);
        result = peer_connection_send_message(sender, parts, 2);
        if (result != PEER_SENT)
            break;
        sent++;
    }
    CHECK(result == PEER_SEND_WOULD_BLOCK, "whole or nothing: after %u messages of 64 KB not read, %s", sent,
          result == PEER_SENT ? "still no refusal" : "a broken connection");
    CHECK(sent > 0, "whole or nothing: an idle connection refused a 64 KB message");
    reader->connection = receiver;
    reader->seed = seed;
    reader->payload_size = stuffing_payload_size;
    reader->until = sent;
    reader_run(reader);
    CHECK(!reader->failed && reader->next == sent, "whole or nothing: %u of the %u messages sent arrived: %s",
          reader->next, sent, reader->why);
    printf("%-40s %u messages of 64 KB sent before a refusal, %u arrived\n", "psk: direct mirror, whole or nothing",
           sent, reader->next);
    /* The next one (the refused one's number skipped) is sent once there
     * is room, and is the very next thing to arrive. */
    if (result == PEER_SEND_WOULD_BLOCK && !reader->failed) {
        make_message(seed, sent + 1, stuffing_payload_size(seed, sent + 1), writer->header, writer->payload, parts);
        result = mirror_send(sender, parts, 2, WAIT_SECONDS, NULL);
        CHECK(result == PEER_SENT, "whole or nothing: after the drain, no send for 20 s");
        reader->next = sent + 1;
        reader->until = sent + 2;
        reader_run(reader);
        CHECK(!reader->failed && reader->next == sent + 2,
              "whole or nothing: after the refused message, not the next one: %s", reader->why);
        CHECK(reader->buffered == 0 && !peer_connection_receive_buffered(receiver),
              "whole or nothing: %zu bytes more after the last message", reader->buffered);
    }
    free(writer);
    free(reader);
}

/* A record read in part leaves the rest decrypted in the session: the
 * reader must not poll for it (nothing more comes on the socket). */
static void check_receive_buffered(struct peer_connection *sender, struct peer_connection *receiver)
{
    struct message_writer *writer = calloc(1, sizeof *writer);
    struct iovec parts[2];
    size_t payload_size = 16384 - MESSAGE_HEADER; /* one whole record */
    make_message(0x6666, 0, payload_size, writer->header, writer->payload, parts);
    CHECK(mirror_send(sender, parts, 2, WAIT_SECONDS, NULL) == PEER_SENT, "buffered: the record not sent");
    unsigned char *received = malloc(16384);
    ssize_t got = direct_receive(receiver, received, 100, clock_monotonic_seconds() + WAIT_SECONDS);
    CHECK(got == 100, "buffered: reading 100 bytes of a record: %zd (%s)", got, got < 0 ? strerror(errno) : "");
    CHECK(peer_connection_receive_buffered(receiver), "buffered: the record read in part, its rest not buffered");
    ssize_t rest = peer_connection_receive_now(receiver, received + 100, 16384 - 100);
    CHECK(rest == 16384 - 100, "buffered: the rest of the record at once: %zd (%s)", rest,
          rest < 0 ? strerror(errno) : "");
    CHECK(!peer_connection_receive_buffered(receiver), "buffered: the whole record read, still buffered");
    CHECK(got == 100 && rest == 16384 - 100 && memcmp(received, writer->header, MESSAGE_HEADER) == 0 &&
              memcmp(received + MESSAGE_HEADER, writer->payload, payload_size) == 0,
          "buffered: the record's bytes are not what was sent");
    free(received);
    free(writer);
}

/* A mirror whose socket buffer is small (a real network's, at first: the
 * kernel sizes it from the congestion window) still sends its largest
 * message once the socket is empty. */
static void check_small_socket_buffer(struct peer_connection *sender, struct peer_connection *receiver)
{
    int size = 32768; /* the kernel doubles it */
    CHECK(setsockopt(peer_connection_fd(sender), SOL_SOCKET, SO_SNDBUF, &size, sizeof size) == 0, "SO_SNDBUF: %s",
          strerror(errno));
    struct message_writer *writer = calloc(1, sizeof *writer);
    struct message_reader *reader = calloc(1, sizeof *reader);
    struct iovec parts[2];
    const uint64_t seed = 0x7777;
    make_message(seed, 0, stuffing_payload_size(seed, 0), writer->header, writer->payload, parts);
    unsigned long retries = 0;
    enum peer_send_result result = mirror_send(sender, parts, 2, WAIT_SECONDS, &retries);
    CHECK(result == PEER_SENT, "a 64 KB socket buffer: a 64 KB message on an idle connection %s (%lu retries)",
          result == PEER_SEND_BROKEN ? "broke it" : "found no room in 20 s", retries);
    if (result == PEER_SENT) {
        reader->connection = receiver;
        reader->seed = seed;
        reader->payload_size = stuffing_payload_size;
        reader->until = 1;
        reader_run(reader);
        CHECK(!reader->failed && reader->next == 1, "a 64 KB socket buffer: the message did not arrive: %s",
              reader->why);
    }
    free(writer);
    free(reader);
}

static void test_direct_mirror(const char *directory)
{
    struct peer_credentials *server = load_psk(__LINE__, directory), *client = load_psk(__LINE__, directory);
    struct secondary *secondary = calloc(1, sizeof *secondary);
    struct peer_pairing_options options;
    short_options(&options);
    struct peer_pair primary = { 0 };
    if (server && client && secondary_start(secondary, server, &options) &&
        real_primary_pairs(__LINE__, secondary, secondary->address, client, &options, &primary)) {
        struct peer_connection *ours = primary.mirror, *theirs = secondary->pair.mirror;
        check_both_ways(ours, theirs);
        check_receive_buffered(ours, theirs);
        check_receive_buffered(theirs, ours);
        check_whole_or_nothing(ours, theirs);
        check_small_socket_buffer(ours, theirs);
        /* The primary's mirror closed: the secondary sees it. */
        peer_connection_close(primary.mirror);
        primary.mirror = NULL;
        double closed = clock_monotonic_seconds();
        int ending = -1;
        CHECK(mirror_reads_end_within(theirs, 1.0, &ending), "direct: the primary's mirror closed, no end within 1 s");
        /* Everything was read at both ends: a clean end, no reset. */
        CHECK(ending <= 0, "direct: the primary's mirror closed, read as %s, not end of file", strerror(ending));
        printf("%-40s the close seen in %.3f s: %s\n", "psk: direct mirror, closed", clock_monotonic_seconds() - closed,
               ending == 0 ? "end of file" : strerror(ending));
        peer_pair_close(&primary);
        peer_pair_close(&secondary->pair);
    }
    free(secondary);
    peer_credentials_destroy(server);
    peer_credentials_destroy(client);
}

/* A proxy between the primary and the secondary that flips one byte of
 * what the primary sends on one connection (the stream or the mirror)
 * after TAMPER_AT bytes (well after the handshake and the hello). */
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
    int tamper_connection; /* 0 the stream, 1 the mirror */
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
        /* The first connection is the stream, the second the mirror:
         * tamper with what the primary sends on one of them. */
        proxy->links[2 * connection] =
            (struct proxy_link){ client, server, connection == proxy->tamper_connection ? TAMPER_AT : SIZE_MAX, 0 };
        proxy->links[2 * connection + 1] = (struct proxy_link){ server, client, SIZE_MAX, 0 };
        for (int i = 0; i < 2; i++) {
            pthread_create(&proxy->threads[2 * connection + i], NULL, proxy_forward, &proxy->links[2 * connection + i]);
            proxy->started++;
        }
    }
    return NULL;
}

static void check_stream_tampered(struct peer_pair *primary, struct peer_pair *secondary)
{
    struct pump *out = pump_new(peer_connection_fd(primary->stream), 0x3333, TAMPER_WRITE_SIZE);
    struct pump *in = pump_new(peer_connection_fd(secondary->stream), 0x3333, TAMPER_WRITE_SIZE);
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
    CHECK(reads_end_within(peer_connection_fd(primary->stream), WAIT_SECONDS),
          "a flipped byte: the primary's stream did not end");
    pthread_join(threads[0], NULL);
    free(out);
    free(in);
}

/* On the direct mirror: the record with the flipped byte does not
 * authenticate, and receive_now says EPROTO instead of delivering it. */
#define TAMPER_MESSAGES 64u

static size_t record_payload_size(uint64_t seed, uint32_t sequence)
{
    (void)seed;
    (void)sequence;
    return 16384 - MESSAGE_HEADER;
}

static void check_mirror_tampered(struct peer_pair *primary, struct peer_pair *secondary)
{
    struct message_writer *writer = calloc(1, sizeof *writer);
    struct message_reader *reader = calloc(1, sizeof *reader);
    const uint64_t seed = 0x4444;
    /* 1 MiB, past the flip at 256 KiB: it all fits in loopback's buffers. */
    uint32_t sent = 0;
    for (; sent < TAMPER_MESSAGES; sent++) {
        struct iovec parts[2];
        make_message(seed, sent, record_payload_size(seed, sent), writer->header, writer->payload, parts);
        if (mirror_send(primary->mirror, parts, 2, WAIT_SECONDS, NULL) != PEER_SENT)
            break;
    }
    CHECK(sent == TAMPER_MESSAGES, "a flipped byte on the mirror: %u of %u messages sent", sent, TAMPER_MESSAGES);
    reader->connection = secondary->mirror;
    reader->seed = seed;
    reader->payload_size = record_payload_size;
    reader->until = sent;
    reader_run(reader);
    CHECK(reader->failed && reader->error == EPROTO, "a flipped byte on the mirror: %s, not EPROTO (%u good messages)",
          reader->failed ? reader->why : "every message arrived", reader->next);
    CHECK(reader->next > 0 && reader->next < TAMPER_MESSAGES, "a flipped byte on the mirror: %u good messages",
          reader->next);
    printf("%-40s %s after %u good messages\n", "psk: one byte flipped on the mirror",
           reader->failed ? strerror(reader->error > 0 ? reader->error : 0) : "nothing", reader->next);
    free(writer);
    free(reader);
}

/* Through a proxy that flips a byte the primary sends on one connection
 * (0 the stream, 1 the mirror). */
static void tamper_with(const struct peer_credentials *server, const struct peer_credentials *client, int connection)
{
    struct secondary *secondary = calloc(1, sizeof *secondary);
    struct proxy *proxy = calloc(1, sizeof *proxy);
    struct peer_pairing_options options;
    short_options(&options);
    if (!secondary_start(secondary, server, &options))
        goto done;
    for (int i = 0; i < 4; i++)
        proxy->fds[i] = -1;
    proxy->tamper_connection = connection;
    proxy->upstream = secondary->address;
    proxy->listener = listen_on_loopback(proxy->address, sizeof proxy->address);
    if (proxy->listener < 0) {
        secondary_join(secondary);
        goto done;
    }
    pthread_create(&proxy->acceptor, NULL, proxy_accept, proxy);
    struct peer_pair primary = { 0 };
    if (real_primary_pairs(__LINE__, secondary, proxy->address, client, &options, &primary)) {
        if (connection == 0)
            check_stream_tampered(&primary, &secondary->pair);
        else
            check_mirror_tampered(&primary, &secondary->pair);
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
}

static void test_tampering(const char *directory)
{
    struct peer_credentials *server = load_psk(__LINE__, directory), *client = load_psk(__LINE__, directory);
    if (server && client) {
        tamper_with(server, client, 0);
        tamper_with(server, client, 1);
    }
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
    struct peer_credentials *psk = load_psk(__LINE__, directory);
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
    struct peer_credentials *server = load_psk(__LINE__, directory), *client = load_psk(__LINE__, directory);
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
        test_direct_mirror(directory);
        test_tampering(directory);
        test_certificates(directory);
    }
    remove_directory(directory);
    return test_check_finish("peer_tls_test");
}
