// Stream service on TCP 7002, for throughput tests. On one connection the
// client sends commands, one per line:
//   SEND n   the server sends n bytes (a repeating pattern), nothing else;
//   RECV n   the client then sends n bytes, the server reads them all and
//            replies "OK\n".
// Errors reply "ERR reason\n" and close. One process per connection.
#include "guest.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

// Largest transfer one command may ask for: 1 TiB, i.e. no practical limit.
#define STREAM_MAX_BYTES (UINT64_C(1) << 40)

// Bytes received on the connection and not yet consumed: a RECV payload may
// arrive in the same segment as its command line.
struct connection_input {
    int fd;
    char buffer[64 * 1024];
    size_t start, end;
};

static bool fill(struct connection_input *input) {
    if (input->start == input->end)
        input->start = input->end = 0;
    for (;;) {
        ssize_t received = read(input->fd, input->buffer + input->end,
                                sizeof input->buffer - input->end);
        if (received < 0 && errno == EINTR)
            continue;
        if (received <= 0)
            return false;
        input->end += (size_t)received;
        return true;
    }
}

// Reads one line (without its "\n", and without "\r" before it) into line.
// False at end of stream or if the line does not fit.
static bool read_line(struct connection_input *input, char *line, size_t capacity) {
    size_t length = 0;
    for (;;) {
        while (input->start < input->end) {
            char c = input->buffer[input->start++];
            if (c == '\n') {
                if (length > 0 && line[length - 1] == '\r')
                    length--;
                line[length] = '\0';
                return true;
            }
            if (length + 1 >= capacity)
                return false;
            line[length++] = c;
        }
        if (!fill(input))
            return false;
    }
}

static bool send_bytes(int fd, uint64_t count) {
    static char pattern[64 * 1024];
    if (pattern[1] == 0)
        for (size_t i = 0; i < sizeof pattern; i++)
            pattern[i] = (char)('a' + i % 26);
    while (count > 0) {
        size_t chunk = count < sizeof pattern ? (size_t)count : sizeof pattern;
        if (!write_all(fd, pattern, chunk))
            return false;
        count -= chunk;
    }
    return true;
}

static bool receive_bytes(struct connection_input *input, uint64_t count) {
    while (count > 0) {
        if (input->start == input->end && !fill(input))
            return false;
        size_t available = input->end - input->start;
        size_t taken = count < available ? (size_t)count : available;
        input->start += taken;
        count -= taken;
    }
    return true;
}

static void reply_error(int fd, const char *reason) {
    char line[128];
    size_t length = (size_t)snprintf(line, sizeof line, "ERR %s\n", reason);
    write_all(fd, line, length);
}

static void stream_connection(int fd) {
    static struct connection_input input;
    input.fd = fd;
    input.start = input.end = 0;
    char line[128];
    for (;;) {
        if (!read_line(&input, line, sizeof line))
            return;
        bool is_send = strncmp(line, "SEND ", 5) == 0;
        bool is_receive = strncmp(line, "RECV ", 5) == 0;
        uint64_t count;
        if (!is_send && !is_receive) {
            reply_error(fd, "expected SEND n or RECV n");
            return;
        }
        if (!parse_u64(line + 5, strlen(line + 5), STREAM_MAX_BYTES, &count)) {
            reply_error(fd, "bad byte count");
            return;
        }
        if (is_send && !send_bytes(fd, count))
            return;
        if (is_receive && (!receive_bytes(&input, count) || !write_all(fd, "OK\n", 3)))
            return;
    }
}

void stream_main(int ready_fd) {
    prctl(PR_SET_NAME, "colo-stream");
    signal(SIGCHLD, SIG_IGN);  // the kernel reaps the connection processes
    int listener = listen_tcp("stream", STREAM_PORT);
    signal_ready(ready_fd);
    for (;;) {
        int connection = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (connection < 0) {
            if (errno != EINTR)
                guest_log("stream", "accept: %s", strerror(errno));
            continue;
        }
        pid_t child = fork();
        if (child == 0) {
            close(listener);
            stream_connection(connection);
            _exit(0);
        }
        if (child < 0)
            guest_log("stream", "fork: %s", strerror(errno));
        close(connection);
    }
}
