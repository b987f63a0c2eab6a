/* socket_listen, socket_connect and socket_accept over loopback: a byte
 * each way, TCP_NODELAY on both ends, close-on-exec, and the errors for a
 * bad address and a port nobody listens on. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "socket.h"

#include "test_check.h"

static int nodelay(int fd)
{
    int value = 0;
    socklen_t length = sizeof value;
    getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, &length);
    return value;
}

static int port_of(int fd)
{
    struct sockaddr_in address;
    socklen_t length = sizeof address;
    if (getsockname(fd, (struct sockaddr *)&address, &length) < 0)
        return -1;
    return ntohs(address.sin_port);
}

int main(void)
{
    struct error err;
    int listener = socket_listen("127.0.0.1:0", &err);
    CHECK(listener >= 0, "socket_listen: %s", err.message);
    if (listener < 0)
        return test_check_finish("socket_test");
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", port_of(listener));

    int client = socket_connect(address, &err);
    CHECK(client >= 0, "socket_connect %s: %s", address, err.message);
    int server = socket_accept(listener, &err);
    CHECK(server >= 0, "socket_accept: %s", err.message);
    if (client >= 0 && server >= 0) {
        CHECK(nodelay(client) && nodelay(server), "TCP_NODELAY: client %d, server %d", nodelay(client),
              nodelay(server));
        CHECK((fcntl(client, F_GETFD) & FD_CLOEXEC) && (fcntl(server, F_GETFD) & FD_CLOEXEC) &&
                  (fcntl(listener, F_GETFD) & FD_CLOEXEC),
              "not close-on-exec");
        char byte = 'C';
        CHECK(write(client, &byte, 1) == 1 && read(server, &byte, 1) == 1 && byte == 'C', "client to server");
        byte = 'R';
        CHECK(write(server, &byte, 1) == 1 && read(client, &byte, 1) == 1 && byte == 'R', "server to client");
    }
    if (client >= 0)
        close(client);
    if (server >= 0)
        close(server);
    close(listener);

    /* Nobody listens there any more. */
    CHECK(socket_connect(address, &err) == -1, "connected to a closed port");
    char expected[128];
    snprintf(expected, sizeof expected, "cannot connect to %s: Connection refused", address);
    CHECK(strcmp(err.message, expected) == 0, "refused: '%s'", err.message);

    CHECK(socket_connect("no-port", &err) == -1 && strcmp(err.message, "'no-port' is not HOST:PORT") == 0,
          "no port: '%s'", err.message);
    CHECK(socket_listen(":7000", &err) == -1 && strcmp(err.message, "':7000' is not HOST:PORT") == 0, "no host: '%s'",
          err.message);
    CHECK(socket_accept(-1, &err) == -1 && strncmp(err.message, "cannot accept", 13) == 0, "accept on no socket: '%s'",
          err.message);

    return test_check_finish("socket_test");
}
