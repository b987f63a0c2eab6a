/* The client side of the control socket (see control_client.h). */
#include "control_client.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "control_server.h" /* CONTROL_MAX_LINE */

/* Replies and events can be longer than requests (a status with many
 * devices), but not without bound. */
#define MAX_MESSAGE_LENGTH (4u * CONTROL_MAX_LINE)

const char *control_run_directory(void)
{
    const char *directory = getenv("COLO_RUN_DIR");
    return directory && directory[0] ? directory : CONTROL_DEFAULT_RUN_DIRECTORY;
}

int control_run_directory_create(struct error *err)
{
    const char *directory = control_run_directory();
    if (mkdir(directory, 0700) == 0 || errno == EEXIST) {
        struct stat status;
        if (stat(directory, &status) < 0)
            return error_set_errno(err, "cannot use run directory %s", directory);
        if (!S_ISDIR(status.st_mode))
            return error_set(err, "cannot use run directory %s: not a directory", directory);
        return 0;
    }
    error_set_errno(err, "cannot create run directory %s", directory);
    return error_append(err, " (set COLO_RUN_DIR, or give --control-socket PATH)");
}

int control_socket_path(const char *name, char *path, size_t size, struct error *err)
{
    int length = snprintf(path, size, "%s/%s.sock", control_run_directory(), name);
    if (length < 0 || (size_t)length >= size)
        return error_set(err, "control socket path for VM '%s' in %s is too long", name, control_run_directory());
    return 0;
}

/* ---- deadlines ---- */

/* -1: none. */
static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : (int64_t)clock_monotonic_ms() + timeout_ms;
}

/* Waits for `events` on the socket until the deadline. */
static int wait_for(struct control_client *client, short events, int64_t deadline, struct error *err)
{
    for (;;) {
        int wait_ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - (int64_t)clock_monotonic_ms();
            if (left <= 0)
                return CONTROL_CLIENT_TIMEOUT;
            wait_ms = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        struct pollfd fd = { .fd = client->fd, .events = events };
        int ready = poll(&fd, 1, wait_ms);
        if (ready > 0)
            return CONTROL_CLIENT_OK; /* readable, writable or hung up: the caller finds out which */
        if (ready < 0 && errno != EINTR)
            return error_set_errno(err, "poll on the control socket");
    }
}

/* ---- connection ---- */

int control_client_connect(struct control_client *client, const char *socket_path, int timeout_ms, struct error *err)
{
    *client = (struct control_client){ .fd = -1 };
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    if (strlen(socket_path) >= sizeof address.sun_path)
        return error_set(err, "cannot connect to %s: the path is too long for a UNIX socket", socket_path);
    strcpy(address.sun_path, socket_path);
    client->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (client->fd < 0)
        return error_set_errno(err, "cannot connect to %s", socket_path);
    int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        if (connect(client->fd, (const struct sockaddr *)&address, sizeof address) == 0)
            return CONTROL_CLIENT_OK;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            error_set_errno(err, "cannot connect to %s", socket_path);
            control_client_close(client);
            return CONTROL_CLIENT_ERROR;
        }
        /* The server's backlog is full: try again until the deadline. */
        if (deadline >= 0 && (int64_t)clock_monotonic_ms() >= deadline) {
            error_set(err, "cannot connect to %s: timed out", socket_path);
            control_client_close(client);
            return CONTROL_CLIENT_TIMEOUT;
        }
        clock_sleep_ms(10);
    }
}

static int send_line(struct control_client *client, const char *text, size_t length, int64_t deadline,
                     struct error *err)
{
    size_t sent = 0;
    while (sent < length) {
        ssize_t written = send(client->fd, text + sent, length - sent, MSG_NOSIGNAL);
        if (written > 0) {
            sent += (size_t)written;
            continue;
        }
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int waited = wait_for(client, POLLOUT, deadline, err);
            if (waited != CONTROL_CLIENT_OK)
                return waited;
            continue;
        }
        if (errno == EPIPE || errno == ECONNRESET)
            return CONTROL_CLIENT_CLOSED;
        return error_set_errno(err, "cannot send to the control socket");
    }
    return CONTROL_CLIENT_OK;
}

static int send_request(struct control_client *client, const json_t *request, int64_t deadline, struct error *err)
{
    char *text = json_dumps(request, JSON_COMPACT);
    if (!text)
        return error_set(err, "cannot encode the request");
    size_t length = strlen(text);
    text[length] = '\n'; /* the terminator is not sent */
    int result = send_line(client, text, length + 1, deadline, err);
    free(text);
    return result;
}

int control_client_send(struct control_client *client, const json_t *request, int timeout_ms, struct error *err)
{
    return send_request(client, request, deadline_after(timeout_ms), err);
}

/* Takes the first whole line out of the input buffer, if there is one. */
static int take_line(struct control_client *client, json_t **message, bool *found, struct error *err)
{
    *found = false;
    char *newline = client->input ? memchr(client->input, '\n', client->input_length) : NULL;
    if (!newline)
        return CONTROL_CLIENT_OK;
    size_t length = (size_t)(newline - client->input);
    json_error_t parse_error;
    json_t *parsed = json_loadb(client->input, length, 0, &parse_error);
    memmove(client->input, newline + 1, client->input_length - length - 1);
    client->input_length -= length + 1;
    if (!parsed)
        return error_set(err, "the VM sent a line that is not JSON: %s", parse_error.text);
    if (!json_is_object(parsed)) {
        json_decref(parsed);
        return error_set(err, "the VM sent a line that is not a JSON object");
    }
    *message = parsed;
    *found = true;
    return CONTROL_CLIENT_OK;
}

static int receive_message(struct control_client *client, json_t **message, int64_t deadline, struct error *err)
{
    *message = NULL;
    for (;;) {
        bool found;
        int taken = take_line(client, message, &found, err);
        if (taken != CONTROL_CLIENT_OK || found)
            return taken;
        if (client->input_length >= MAX_MESSAGE_LENGTH)
            return error_set(err, "the VM sent a line longer than %u bytes", MAX_MESSAGE_LENGTH);
        if (client->input_capacity - client->input_length < 4096) {
            size_t capacity = client->input_capacity ? client->input_capacity * 2 : 8192;
            char *grown = realloc(client->input, capacity);
            if (!grown)
                return error_set(err, "out of memory");
            client->input = grown;
            client->input_capacity = capacity;
        }
        ssize_t received = recv(client->fd, client->input + client->input_length,
                                client->input_capacity - client->input_length, 0);
        if (received > 0) {
            client->input_length += (size_t)received;
        } else if (received == 0) {
            return CONTROL_CLIENT_CLOSED;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int waited = wait_for(client, POLLIN, deadline, err);
            if (waited != CONTROL_CLIENT_OK)
                return waited;
        } else if (errno == ECONNRESET) {
            return CONTROL_CLIENT_CLOSED;
        } else if (errno != EINTR) {
            return error_set_errno(err, "cannot read from the control socket");
        }
    }
}

int control_client_receive(struct control_client *client, json_t **message, int timeout_ms, struct error *err)
{
    return receive_message(client, message, deadline_after(timeout_ms), err);
}

int control_client_call(struct control_client *client, const json_t *request, json_t **reply, int timeout_ms,
                        struct error *err)
{
    *reply = NULL;
    int64_t deadline = deadline_after(timeout_ms);
    int result = send_request(client, request, deadline, err);
    /* A server that refuses the request and hangs up (a line too long) has
     * still sent its reply: read it even if sending failed. */
    if (result != CONTROL_CLIENT_OK && result != CONTROL_CLIENT_CLOSED)
        return result;
    for (;;) {
        json_t *message;
        int received = receive_message(client, &message, deadline, err);
        if (received != CONTROL_CLIENT_OK)
            return received;
        if (json_is_boolean(json_object_get(message, "ok"))) {
            *reply = message;
            return CONTROL_CLIENT_OK;
        }
        json_decref(message); /* an event */
    }
}

void control_client_close(struct control_client *client)
{
    if (client->fd >= 0)
        close(client->fd);
    free(client->input);
    *client = (struct control_client){ .fd = -1 };
}
