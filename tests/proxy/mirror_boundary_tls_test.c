/* A checkpoint boundary into a full mirror over direct TLS
 * (mirror_reader_send_boundary, docs/security.md "How the bytes flow").
 *
 * The secondary's SVM filled the mirror with returned frames that the
 * primary has not read yet. A boundary must not be lost, so it waits for
 * room, about a second at most. Over TLS "no room" is the session's own
 * estimate (peer_connection_send_message: SIOCOUTQ against the send
 * buffer), and the socket may poll writable while the estimate still says
 * full: a retry that waited for POLLOUT spent its thousand tries at once
 * and gave the mirror up (8a8fcf7). Two pairs over loopback TCP with a
 * pre-shared key, each end direct:
 *   1. the primary reads again 300 ms after the socket filled: the
 *      boundary waits for it and goes, and the primary then reads every
 *      returned frame whole and in order, and the boundary last;
 *   2. nobody reads: the boundary gives up after about a second, not at
 *      once, and the channel counts as broken. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "heartbeat.h"
#include "machine_devices.h"
#include "mirror_framing.h"
#include "mirror_reader.h"
#include "peer_connection.h"
#include "peer_credentials.h"
#include "test_check.h"
#include "test_machine.h"

#define FRAME_BYTES 1400u

/* ---- a direct TLS pair over loopback TCP ---- */

struct opening {
    const struct peer_credentials *credentials;
    int fd;
    struct peer_connection *connection;
    struct error err;
};

static void *open_server_side(void *opaque)
{
    struct opening *opening = opaque;
    if (peer_connection_open(&opening->connection, opening->credentials, opening->fd, PEER_SIDE_SERVER, 5000,
                             &opening->err) < 0)
        opening->connection = NULL;
    return NULL;
}

/* primary: the end that reads the SVM's frames; secondary: the end that
 * returns them. False (and a failure) when the pair cannot be made. */
static bool direct_pair(const struct peer_credentials *credentials, struct peer_connection **primary,
                        struct peer_connection **secondary)
{
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t size = sizeof address;
    int client = -1;
    bool made = listener >= 0 && bind(listener, (struct sockaddr *)&address, sizeof address) == 0 &&
                listen(listener, 1) == 0 && getsockname(listener, (struct sockaddr *)&address, &size) == 0 &&
                (client = socket(AF_INET, SOCK_STREAM, 0)) >= 0 &&
                connect(client, (struct sockaddr *)&address, sizeof address) == 0;
    struct opening server = { .credentials = credentials, .fd = made ? accept(listener, NULL, NULL) : -1 };
    if (listener >= 0)
        close(listener);
    if (!made || server.fd < 0) {
        CHECK(false, "no loopback TCP pair");
        if (client >= 0)
            close(client);
        if (server.fd >= 0)
            close(server.fd);
        return false;
    }
    pthread_t thread;
    pthread_create(&thread, NULL, open_server_side, &server);
    struct error err = { 0 };
    struct peer_connection *client_connection = NULL;
    if (peer_connection_open(&client_connection, credentials, client, PEER_SIDE_CLIENT, 5000, &err) < 0)
        client_connection = NULL;
    pthread_join(thread, NULL);
    CHECK(client_connection && server.connection, "TLS handshake: %s / %s", err.message, server.err.message);
    if (!client_connection || !server.connection || peer_connection_start_direct(client_connection, &err) < 0 ||
        peer_connection_start_direct(server.connection, &err) < 0) {
        CHECK(false, "direct mode: %s", err.message);
        if (client_connection)
            peer_connection_close(client_connection);
        if (server.connection)
            peer_connection_close(server.connection);
        return false;
    }
    *primary = client_connection;
    *secondary = server.connection;
    return true;
}

/* ---- the primary's end ---- */

struct primary_end {
    struct peer_connection *connection;
    int delay_ms; /* before it starts reading */
    atomic_bool stop;
    unsigned frames, boundaries, out_of_order;
    bool boundary_last, malformed;
    uint8_t buffer[2 * MIRROR_MESSAGE_MAX];
    size_t buffered;
};

static bool take_message(void *opaque, const struct mirror_message *message)
{
    struct primary_end *end = opaque;
    if (message->boundary) {
        end->boundaries++;
        end->boundary_last = true;
    } else if (!message->heartbeat && !message->no_return) {
        uint32_t number;
        memcpy(&number, message->frame + 16, sizeof number);
        if (message->length != FRAME_BYTES || number != end->frames)
            end->out_of_order++;
        end->frames++;
        end->boundary_last = false;
    }
    return true;
}

static void *primary_end_thread(void *opaque)
{
    struct primary_end *end = opaque;
    clock_sleep_ms((unsigned)end->delay_ms);
    struct mirror_channel channel = mirror_channel_of_connection(end->connection);
    while (!atomic_load(&end->stop)) {
        ssize_t got = mirror_channel_receive(&channel, end->buffer + end->buffered, sizeof end->buffer - end->buffered);
        if (got > 0) {
            end->buffered += (size_t)got;
            if (!mirror_take_messages(end->buffer, &end->buffered, 1, take_message, end)) {
                end->malformed = true;
                return NULL;
            }
        } else if (got == 0) {
            return NULL; /* the end of the connection */
        } else {
            mirror_channel_wait_readable(&channel, 20);
        }
    }
    return NULL;
}

/* ---- the secondary's end ---- */

static void on_dead(void *opaque, const char *why)
{
    (void)opaque;
    (void)why;
}

/* Returns numbered frames until one is dropped, then heartbeats until one
 * finds no room (a boundary is as small as a heartbeat), in rounds 50 ms
 * apart until three rounds in a row send nothing: the peer's kernel, which
 * takes what it has room for (and frees some by packing the small
 * records it holds), is full too, and the mirror stays full. How many
 * frames went; 0 if it never settled. */
static unsigned fill(struct mirror_reader *reader)
{
    uint8_t frame[FRAME_BYTES];
    memset(frame, 0xab, sizeof frame);
    struct virtio_net_header header = { 0 };
    struct mirror_reader_stats stats;
    int empty_rounds = 0;
    for (int round = 0; round < 500 && empty_rounds < 3; round++) {
        bool sent_any = false;
        for (;;) {
            mirror_reader_get_stats(reader, &stats);
            uint32_t number = (uint32_t)stats.returned;
            uint64_t dropped = stats.return_dropped;
            memcpy(frame + 16, &number, sizeof number);
            mirror_reader_return_frame(reader, 0, &header, frame, sizeof frame);
            mirror_reader_get_stats(reader, &stats);
            if (stats.return_dropped > dropped)
                break;
            sent_any = true;
        }
        while (mirror_reader_send_heartbeat(reader))
            sent_any = true;
        empty_rounds = sent_any ? 0 : empty_rounds + 1;
        clock_sleep_ms(50);
    }
    return empty_rounds == 3 ? (unsigned)stats.returned : 0;
}

/* One pair: the secondary fills the mirror, then sends a boundary while
 * the primary reads after delay_ms (or never, -1). */
static void boundary_into_full_mirror(const struct peer_credentials *credentials, int delay_ms)
{
    struct peer_connection *primary, *secondary;
    if (!direct_pair(credentials, &primary, &secondary))
        return;
    struct machine *svm = test_machine_create(&(struct test_machine_options){ .nic = true });
    struct failure_detector detector;
    failure_detector_init(&detector, 0, on_dead, NULL);
    struct mirror_reader reader;
    struct error err = { 0 };
    if (mirror_reader_init(&reader, svm, mirror_channel_of_connection(secondary), &detector, &err) < 0) {
        CHECK(false, "mirror_reader_init: %s", err.message);
        return;
    }
    unsigned returned = fill(&reader);
    CHECK(returned > 0, "the mirror never filled");

    struct primary_end *end = calloc(1, sizeof *end);
    if (!end)
        abort();
    end->connection = primary;
    end->delay_ms = delay_ms < 0 ? 0 : delay_ms;
    pthread_t thread;
    if (delay_ms >= 0)
        pthread_create(&thread, NULL, primary_end_thread, end);
    uint64_t started = clock_monotonic_ns();
    bool sent = mirror_reader_send_boundary(&reader);
    double took_ms = (double)(clock_monotonic_ns() - started) / 1e6;

    if (delay_ms >= 0) {
        CHECK(sent, "the boundary was not sent though the primary read again after %d ms", delay_ms);
        CHECK(took_ms >= delay_ms * 0.8, "the boundary went after %.0f ms, before the primary read (%d ms)", took_ms,
              delay_ms);
        /* Everything arrives: the returned frames whole and in order, then the boundary. */
        for (int waited = 0; waited < 5000 && (end->frames < returned || end->boundaries < 1); waited += 10)
            clock_sleep_ms(10);
        atomic_store(&end->stop, true);
        pthread_join(thread, NULL);
        CHECK(!end->malformed && end->frames == returned && end->out_of_order == 0 && end->boundaries == 1 &&
                  end->boundary_last,
              "the primary read %u of %u frames (%u out of order), %u boundaries (last: %d), malformed: %d",
              end->frames, returned, end->out_of_order, end->boundaries, end->boundary_last, end->malformed);
        printf("ok: %u frames filled the mirror; the boundary waited %.0f ms for the primary and went last\n", returned,
               took_ms);
    } else {
        CHECK(!sent, "a boundary was sent into a mirror nobody reads");
        CHECK(took_ms >= 900, "the boundary gave up after %.0f ms, expected about a second of waiting", took_ms);
        mirror_reader_return_frame(&reader, 0, &(struct virtio_net_header){ 0 }, (const uint8_t[60]){ 0 }, 60);
        struct mirror_reader_stats stats;
        mirror_reader_get_stats(&reader, &stats);
        CHECK(stats.returned == returned, "a frame went out after the boundary gave the mirror up (%llu of %u)",
              (unsigned long long)stats.returned, returned);
        printf("ok: nobody reading, the boundary gave up after %.0f ms\n", took_ms);
    }
    free(end);
    mirror_reader_destroy(&reader);
    failure_detector_destroy(&detector);
    test_machine_destroy(svm);
    peer_connection_close(primary);
    peer_connection_close(secondary);
}

int main(void)
{
    char directory[] = "/tmp/colo-mirror-boundary.XXXXXX";
    if (!mkdtemp(directory)) {
        perror("FAIL: mkdtemp");
        return 1;
    }
    struct peer_auth_config config = { .auth = PEER_AUTH_PSK };
    snprintf(config.psk_path, sizeof config.psk_path, "%s/pair.psk", directory);
    struct peer_credentials *credentials = NULL;
    struct error err = { 0 };
    if (peer_psk_generate_file(config.psk_path, "boundary", &err) < 0 ||
        peer_credentials_load(&credentials, &config, &err) < 0) {
        CHECK(false, "the pre-shared key: %s", err.message);
    } else {
        boundary_into_full_mirror(credentials, 300);
        boundary_into_full_mirror(credentials, -1);
        peer_credentials_destroy(credentials);
    }
    unlink(config.psk_path);
    rmdir(directory);
    return test_check_finish("mirror_boundary_tls_test");
}
