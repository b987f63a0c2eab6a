/* The replication peer of one VM: its credentials (VM.cfg's
 * replication_* keys), the primary's two authenticated connections, the
 * waiting secondary that refuses strangers, and, once paired, the
 * secondary's refusal of any later connection. cluster/peer_pairing.h
 * has the protocol; docs/security.md the whole. */
#include "vm_replication_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "socket.h"

void vm_replication_set_auth(struct vm_replication *replication, const struct peer_auth_config *auth)
{
    if (auth)
        replication->auth_config = *auth;
    else
        replication->auth_config.auth = PEER_AUTH_UNSET;
}

int vm_replication_generate_psk(const char *path, const char *identity, struct error *err)
{
    return peer_psk_generate_file(path, identity, err);
}

/* Read again at each protection: a replaced key file counts from the next. */
static int load_credentials(struct vm_replication *replication, struct error *err)
{
    peer_credentials_destroy(replication->credentials);
    replication->credentials = NULL;
    if (peer_credentials_load(&replication->credentials, &replication->auth_config, err) < 0)
        return -1;
    pthread_mutex_lock(&replication->lock);
    snprintf(replication->transport, sizeof replication->transport, "%s",
             peer_credentials_describe(replication->credentials));
    replication->authenticated = peer_credentials_auth(replication->credentials) != PEER_AUTH_NONE;
    replication->peer_description[0] = 0;
    pthread_mutex_unlock(&replication->lock);
    if (peer_credentials_auth(replication->credentials) == PEER_AUTH_NONE)
        vm_replication_log(replication, "WARNING: replication runs over plain TCP (replication_auth = \"none\"): "
                                        "anyone on the replication network can take this VM");
    return 0;
}

static void set_pair(struct vm_replication *replication, struct peer_pair *pair)
{
    pthread_mutex_lock(&replication->lock);
    replication->pair = *pair;
    replication->replication_fd = peer_connection_fd(pair->stream);
    replication->mirror_fd = peer_connection_fd(pair->mirror);
    snprintf(replication->peer_description, sizeof replication->peer_description, "%s",
             peer_connection_peer(pair->stream));
    pthread_mutex_unlock(&replication->lock);
}

int vm_replication_connect_peer(struct vm_replication *replication, struct error *err)
{
    /* A secondary that failed over and is protected in turn: its old pair
     * and listener go first. */
    vm_replication_close_peer(replication);
    if (load_credentials(replication, err) < 0)
        return -1;
    struct peer_pairing_options options;
    peer_pairing_options_defaults(&options);
    options.stream_socket_buffer = REPLICATION_SOCKET_BUFFER;
    options.connect_timeout_ms = replication->connect_timeout_ms;
    struct peer_pair pair;
    if (peer_pairing_connect(replication->destination, replication->credentials, &options, &pair, err) < 0)
        return -1;
    set_pair(replication, &pair);
    vm_replication_log(replication, "connected to the secondary %s (%s)", peer_connection_peer(pair.stream),
                       replication->transport);
    return 0;
}

/* A stranger refused: counted by kind, logged, an event; the secondary
 * keeps waiting for its primary. */
static void count_refusal(struct vm_replication *replication, const char *kind, uint64_t *counter, const char *why)
{
    pthread_mutex_lock(&replication->lock);
    (*counter)++;
    snprintf(replication->last_refusal, sizeof replication->last_refusal, "%s: %s", kind, why);
    pthread_mutex_unlock(&replication->lock);
    vm_replication_log(replication, "refused a connection (%s): %s", kind, why);
    vm_replication_post_event(replication, "connection refused", why);
}

static void on_refused(void *opaque, enum peer_refusal kind, const char *why)
{
    struct vm_replication *replication = opaque;
    count_refusal(replication, peer_refusal_name(kind), &replication->refused[kind], why);
}

static bool should_stop_waiting(void *opaque)
{
    return vm_replication_waiting_stopped(opaque);
}

/* After the pairing nobody else may join: a connection is accepted only to
 * be counted, logged and closed at once. */
static void *refuse_late_connections(void *opaque)
{
    pthread_setname_np(pthread_self(), "late-connects");
    struct vm_replication *replication = opaque;
    for (;;) {
        struct pollfd fds[2] = { { .fd = replication->listener, .events = POLLIN },
                                 { .fd = replication->listener_stop, .events = POLLIN } };
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents)
            break;
        if (!(fds[0].revents & POLLIN))
            continue;
        struct error err;
        int fd = socket_accept(replication->listener, &err);
        if (fd < 0)
            continue;
        char who[96];
        socket_peer_address(fd, who, sizeof who);
        close(fd);
        char why[160];
        snprintf(why, sizeof why, "%s connected while this secondary is paired with its primary", who);
        count_refusal(replication, "during the run", &replication->refused_during_run, why);
    }
    return NULL;
}

int vm_replication_accept_peer(struct vm_replication *replication, const char *address, struct error *err)
{
    if (load_credentials(replication, err) < 0)
        return -1;
    int listener = socket_listen(address, err);
    if (listener < 0)
        return -1;
    vm_replication_log(replication, "waiting for the primary on %s (%s)", address, replication->transport);
    struct peer_pairing_options options;
    peer_pairing_options_defaults(&options);
    options.stream_socket_buffer = REPLICATION_SOCKET_BUFFER;
    struct peer_pairing_waiter waiter = { .should_stop = should_stop_waiting,
                                          .on_refused = on_refused,
                                          .opaque = replication };
    struct peer_pair pair;
    if (peer_pairing_accept(listener, replication->credentials, &options, &waiter, &pair, err) < 0) {
        close(listener);
        return -1;
    }
    if (!pair.stream) {
        close(listener);
        return 0; /* asked to stop while waiting */
    }
    set_pair(replication, &pair);
    vm_replication_log(replication, "the primary %s connected", peer_connection_peer(pair.stream));
    replication->listener = listener;
    replication->listener_stop = eventfd(0, EFD_CLOEXEC);
    if (replication->listener_stop < 0 ||
        pthread_create(&replication->late_connections, NULL, refuse_late_connections, replication) != 0) {
        /* Not worth failing the pair for: the kernel refuses instead. */
        vm_replication_log(replication, "cannot watch for late connections; closing the listener");
        if (replication->listener_stop >= 0)
            close(replication->listener_stop);
        close(listener);
        replication->listener = replication->listener_stop = -1;
    } else {
        replication->late_connections_running = true;
    }
    return 0;
}

void vm_replication_close_peer(struct vm_replication *replication)
{
    if (replication->late_connections_running) {
        uint64_t one = 1;
        if (write(replication->listener_stop, &one, sizeof one) < 0)
            shutdown(replication->listener, SHUT_RDWR);
        pthread_join(replication->late_connections, NULL);
        replication->late_connections_running = false;
    }
    if (replication->listener >= 0)
        close(replication->listener);
    if (replication->listener_stop >= 0)
        close(replication->listener_stop);
    replication->listener = replication->listener_stop = -1;
    pthread_mutex_lock(&replication->lock);
    struct peer_pair pair = replication->pair;
    replication->pair.stream = replication->pair.mirror = NULL;
    replication->replication_fd = replication->mirror_fd = -1;
    pthread_mutex_unlock(&replication->lock);
    peer_pair_close(&pair);
}

void vm_replication_destroy_peer(struct vm_replication *replication)
{
    vm_replication_close_peer(replication);
    peer_credentials_destroy(replication->credentials);
    replication->credentials = NULL;
}

void vm_replication_peer_status(struct vm_replication *replication, json_t *fields)
{
    if (!replication->transport[0])
        return;
    json_t *peer = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I}", "transport", replication->transport, "authenticated",
                             replication->authenticated, "refused_authentication",
                             (json_int_t)replication->refused[PEER_REFUSED_AUTHENTICATION], "refused_hello",
                             (json_int_t)replication->refused[PEER_REFUSED_HELLO], "refused_unpaired",
                             (json_int_t)replication->refused[PEER_REFUSED_UNPAIRED], "refused_during_run",
                             (json_int_t)replication->refused_during_run);
    if (!peer)
        return;
    if (replication->peer_description[0])
        json_object_set_new(peer, "peer", json_string(replication->peer_description));
    if (replication->last_refusal[0])
        json_object_set_new(peer, "last_refusal", json_string(replication->last_refusal));
    json_object_set_new(fields, "peer", peer);
}
