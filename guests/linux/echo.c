// Echo service on TCP 7001: sends back every byte it receives, for latency
// and throughput tests. One process per connection (fork), with blocking
// I/O: the simplest code that serves many clients at once.
#include "guest.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void echo_connection(int connection) {
    char buffer[64 * 1024];
    for (;;) {
        ssize_t received = read(connection, buffer, sizeof buffer);
        if (received < 0 && errno == EINTR)
            continue;
        if (received <= 0)
            return;  // end of stream or reset
        if (!write_all(connection, buffer, (size_t)received))
            return;
    }
}

void echo_main(int ready_fd) {
    prctl(PR_SET_NAME, "colo-echo");
    // Connection processes are never waited for: let the kernel reap them.
    signal(SIGCHLD, SIG_IGN);
    int listener = listen_tcp("echo", ECHO_PORT);
    signal_ready(ready_fd);
    for (;;) {
        int connection = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (connection < 0) {
            if (errno != EINTR)
                guest_log("echo", "accept: %s", strerror(errno));
            continue;
        }
        pid_t child = fork();
        if (child == 0) {
            close(listener);
            echo_connection(connection);
            _exit(0);
        }
        if (child < 0)
            guest_log("echo", "fork: %s", strerror(errno));
        close(connection);
    }
}
