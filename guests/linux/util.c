// Small helpers shared by the guest services; see guest.h.
#include "guest.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void guest_vlog(int fd, const char *tag, const char *format, va_list arguments) {
    char line[512];
    int used = tag ? snprintf(line, sizeof line, "colo-guest: %s: ", tag)
                   : snprintf(line, sizeof line, "colo-guest: ");
    int added = vsnprintf(line + used, sizeof line - (size_t)used - 1, format, arguments);
    size_t length = (size_t)used + (added < 0 ? 0 : (size_t)added);
    if (length > sizeof line - 2)
        length = sizeof line - 2;  // truncated message: still end the line
    line[length++] = '\n';
    (void)!write(fd, line, length);
}

void guest_log(const char *tag, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    guest_vlog(STDERR_FILENO, tag, format, arguments);
    va_end(arguments);
}

int listen_tcp(const char *tag, uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        guest_log(tag, "socket: %s", strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {
        .sin_family = AF_INET,
        .sin_port = htons(port),
        .sin_addr.s_addr = htonl(INADDR_ANY),
    };
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 128) != 0) {
        guest_log(tag, "cannot listen on TCP port %u: %s", port, strerror(errno));
        exit(1);
    }
    return fd;
}

bool write_all(int fd, const void *buffer, size_t length) {
    const char *next = buffer;
    while (length > 0) {
        ssize_t written = write(fd, next, length);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        next += written;
        length -= (size_t)written;
    }
    return true;
}

void signal_ready(int ready_fd) {
    if (ready_fd < 0)
        return;
    (void)!write(ready_fd, "r", 1);
    close(ready_fd);
}

bool parse_u64(const char *text, size_t length, uint64_t max, uint64_t *value) {
    if (length == 0 || length > 20)
        return false;
    uint64_t result = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        unsigned digit = (unsigned)(text[i] - '0');
        if (result > (max - digit) / 10)
            return false;
        result = result * 10 + digit;
    }
    *value = result;
    return true;
}
