#include "socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

static int split_host_and_port(const char *text, char *host, size_t host_size, char *port, size_t port_size,
                               struct error *err)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || !colon[1] || (size_t)(colon - text) >= host_size || strlen(colon + 1) >= port_size)
        return error_set(err, "'%s' is not HOST:PORT", text);
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static void set_socket_options(int fd)
{
    int one = 1;
    /* Small control messages must not wait for Nagle or delayed ACKs. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int socket_connect(const char *host_and_port, struct error *err)
{
    char host[256], port[32];
    if (split_host_and_port(host_and_port, host, sizeof host, port, sizeof port, err) < 0)
        return -1;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *addresses;
    int found = getaddrinfo(host, port, &hints, &addresses);
    if (found != 0)
        return error_set(err, "cannot resolve %s: %s", host_and_port, gai_strerror(found));
    int fd = -1;
    for (struct addrinfo *a = addresses; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        error_set_errno(err, "cannot connect to %s", host_and_port);
    freeaddrinfo(addresses);
    if (fd >= 0)
        set_socket_options(fd);
    return fd;
}

/* What happened to one address, in plain words. */
static const char *connect_failure(int error)
{
    switch (error) {
    case ECONNREFUSED:
        return "refused (nothing listens on that port)";
    case EHOSTUNREACH:
    case ENETUNREACH:
        return "unreachable (no route to the host)";
    case ETIMEDOUT:
        return "timed out";
    default:
        return strerror(error);
    }
}

/* One address within timeout_ms: the connected fd, or -1 with errno (ETIMEDOUT
 * when the time ran out). */
static int connect_address(const struct addrinfo *address, int timeout_ms)
{
    int fd = socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, address->ai_protocol);
    if (fd < 0)
        return -1;
    int error = 0;
    if (connect(fd, address->ai_addr, address->ai_addrlen) < 0) {
        error = errno;
        if (error == EINPROGRESS) {
            uint64_t deadline = clock_monotonic_ms() + (uint64_t)timeout_ms;
            struct pollfd watch = { .fd = fd, .events = POLLOUT };
            int ready;
            for (;;) {
                uint64_t now = clock_monotonic_ms();
                ready = now >= deadline ? 0 : poll(&watch, 1, (int)(deadline - now));
                if (ready >= 0 || errno != EINTR)
                    break;
            }
            if (ready < 0) {
                error = errno;
            } else if (ready == 0) {
                error = ETIMEDOUT;
            } else {
                socklen_t length = sizeof error;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0)
                    error = errno;
            }
        }
    }
    /* Connected, the socket blocks again like socket_connect's. */
    if (error == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
        error = errno;
    if (error != 0) {
        close(fd);
        errno = error;
        return -1;
    }
    return fd;
}

int socket_connect_within(const char *host_and_port, int timeout_ms, struct error *err)
{
    char host[256], port[32];
    if (split_host_and_port(host_and_port, host, sizeof host, port, sizeof port, err) < 0)
        return -1;
    if (timeout_ms <= 0)
        return error_set(err, "the connect timeout must be positive, not %d ms", timeout_ms);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *addresses;
    int found = getaddrinfo(host, port, &hints, &addresses);
    if (found != 0)
        return error_set(err, "cannot resolve %s: %s", host_and_port, gai_strerror(found));
    unsigned left = 0;
    for (struct addrinfo *a = addresses; a; a = a->ai_next)
        left++;
    uint64_t deadline = clock_monotonic_ms() + (uint64_t)timeout_ms;
    char reasons[400] = "";
    size_t used = 0;
    int fd = -1;
    for (struct addrinfo *a = addresses; a && fd < 0; a = a->ai_next, left--) {
        uint64_t now = clock_monotonic_ms();
        int share = now >= deadline ? 1 : (int)((deadline - now) / left);
        fd = connect_address(a, share > 0 ? share : 1);
        if (fd >= 0)
            break;
        int error = errno;
        char numeric[INET6_ADDRSTRLEN] = "?";
        const void *where = a->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr
                                                     : (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr;
        inet_ntop(a->ai_family, where, numeric, sizeof numeric);
        const char *what = connect_failure(error);
        char timed_out[64];
        if (error == ETIMEDOUT) {
            snprintf(timed_out, sizeof timed_out, "timed out after %d ms (no answer)", share);
            what = timed_out;
        }
        /* One address: the message names it already. */
        int wrote = addresses->ai_next
                        ? snprintf(reasons + used, sizeof reasons - used, "%s%s %s", used ? "; " : "", numeric, what)
                        : snprintf(reasons, sizeof reasons, "%s", what);
        if (wrote > 0)
            used = used + (size_t)wrote < sizeof reasons ? used + (size_t)wrote : sizeof reasons - 1;
    }
    freeaddrinfo(addresses);
    if (fd < 0)
        return error_set(err, "cannot connect to %s: %s", host_and_port, reasons);
    set_socket_options(fd);
    return fd;
}

int socket_accept(int listener, struct error *err)
{
    int fd;
    do {
        fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return error_set_errno(err, "cannot accept the migration connection");
    set_socket_options(fd);
    return fd;
}

int socket_listen(const char *host_and_port, struct error *err)
{
    char host[256], port[32];
    if (split_host_and_port(host_and_port, host, sizeof host, port, sizeof port, err) < 0)
        return -1;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *addresses;
    int found = getaddrinfo(host, port, &hints, &addresses);
    if (found != 0)
        return error_set(err, "cannot resolve %s: %s", host_and_port, gai_strerror(found));
    int fd = socket(addresses->ai_family, addresses->ai_socktype | SOCK_CLOEXEC, addresses->ai_protocol);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, addresses->ai_addr, addresses->ai_addrlen) < 0 || listen(fd, 8) < 0) {
        error_set_errno(err, "cannot listen on %s", host_and_port);
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(addresses);
    return fd;
}

void socket_peer_address(int fd, char *text, size_t size)
{
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "0";
    if (getpeername(fd, (struct sockaddr *)&address, &length) == 0)
        (void)getnameinfo((struct sockaddr *)&address, length, host, sizeof host, port, sizeof port,
                          NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(text, size, "%s:%s", host, port);
}
