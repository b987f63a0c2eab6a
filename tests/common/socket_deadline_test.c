/* socket_connect_within: a connection within the time, blocking and with
 * TCP_NODELAY once made; a closed port refused at once; and, in a network
 * namespace of its own, an address whose packets vanish (a tap nobody
 * reads, behind a permanent neighbour entry) timed out within the bound,
 * and an address with an "unreachable" route named as unreachable. Every
 * message names the address. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "socket.h"

#include "test_check.h"

static int port_of(int fd)
{
    struct sockaddr_in address;
    socklen_t length = sizeof address;
    if (getsockname(fd, (struct sockaddr *)&address, &length) < 0)
        return -1;
    return ntohs(address.sin_port);
}

/* Connects to address within timeout_ms; expects a failure whose message
 * has `wanted` in it, within [min_ms, max_ms]. */
static void expect_failure(int line, const char *address, int timeout_ms, const char *wanted, uint64_t min_ms,
                           uint64_t max_ms)
{
    struct error err;
    uint64_t started = clock_monotonic_ms();
    int fd = socket_connect_within(address, timeout_ms, &err);
    uint64_t took = clock_monotonic_ms() - started;
    CHECK_AT(line, fd == -1, "%s: connected", address);
    if (fd >= 0) {
        close(fd);
        return;
    }
    CHECK_AT(line, strstr(err.message, wanted) != NULL, "%s: '%s' does not say '%s'", address, err.message, wanted);
    CHECK_AT(line, strstr(err.message, address) != NULL, "%s: '%s' does not name the address", address, err.message);
    CHECK_AT(line, took >= min_ms && took <= max_ms, "%s: failed after %llu ms, not within %llu..%llu ms", address,
             (unsigned long long)took, (unsigned long long)min_ms, (unsigned long long)max_ms);
}

static int run(const char *command)
{
    int status = system(command);
    CHECK(status == 0, "'%s' exited with %d", command, status);
    return status == 0 ? 0 : -1;
}

int main(void)
{
    struct error err;
    int listener = socket_listen("127.0.0.1:0", &err);
    CHECK(listener >= 0, "socket_listen: %s", err.message);
    if (listener < 0)
        return test_check_finish("socket_deadline_test");
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", port_of(listener));

    int client = socket_connect_within(address, 2000, &err);
    CHECK(client >= 0, "socket_connect_within %s: %s", address, err.message);
    int server = socket_accept(listener, &err);
    CHECK(server >= 0, "socket_accept: %s", err.message);
    if (client >= 0) {
        int nodelay = 0;
        socklen_t length = sizeof nodelay;
        getsockopt(client, IPPROTO_TCP, TCP_NODELAY, &nodelay, &length);
        CHECK(nodelay, "no TCP_NODELAY");
        CHECK(!(fcntl(client, F_GETFL) & O_NONBLOCK), "the connected socket is still non-blocking");
        CHECK(fcntl(client, F_GETFD) & FD_CLOEXEC, "not close-on-exec");
        char byte = 'C';
        CHECK(write(client, &byte, 1) == 1 && server >= 0 && read(server, &byte, 1) == 1 && byte == 'C',
              "a byte through");
        close(client);
    }
    if (server >= 0)
        close(server);
    close(listener);

    /* Nobody listens there now: refused, at once. */
    expect_failure(__LINE__, address, 5000, "refused", 0, 1000);
    CHECK(socket_connect_within("no-port", 1000, &err) == -1 && strcmp(err.message, "'no-port' is not HOST:PORT") == 0,
          "no port: '%s'", err.message);
    CHECK(socket_connect_within(address, 0, &err) == -1 && strstr(err.message, "must be positive"),
          "a zero timeout: '%s'", err.message);

    /* A network of our own, gone with this process. */
    if (unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr,
                "socket_deadline_test: SKIPPED the timed-out and unreachable checks: no network namespace "
                "(%s; they need root)\n",
                strerror(errno));
        return test_check_finish("socket_deadline_test");
    }
    if (run("ip link set lo up") == 0 && run("ip tuntap add dev blackhole0 mode tap") == 0 &&
        run("ip link set blackhole0 up") == 0 && run("ip address add 192.0.2.2/24 dev blackhole0") == 0 &&
        run("ip neighbour add 192.0.2.1 lladdr 02:00:00:00:00:01 dev blackhole0 nud permanent") == 0 &&
        run("ip route add unreachable 198.51.100.0/24") == 0) {
        /* The SYNs go into a tap nobody reads: no answer, ever. */
        expect_failure(__LINE__, "192.0.2.1:47100", 300, "timed out after 300 ms", 290, 1500);
        expect_failure(__LINE__, "198.51.100.1:47100", 5000, "unreachable", 0, 1000);
        /* No route at all. */
        expect_failure(__LINE__, "203.0.113.1:47100", 5000, "unreachable", 0, 1000);
    }
    (void)system("ip tuntap del dev blackhole0 mode tap 2>/dev/null");
    return test_check_finish("socket_deadline_test");
}
