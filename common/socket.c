#include "socket.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
