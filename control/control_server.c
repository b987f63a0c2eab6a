/* The control socket server (see control_server.h). One thread polls the
 * listening socket, an eventfd other threads use to hand it events and
 * deferred replies, and every client. Each client has a bounded input
 * buffer (one request line at most) and an output buffer; all socket I/O is
 * non-blocking, so no client can stall the others. */
#include "control_server.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

/* How long destroy waits for clients to take what is still queued. */
#define FLUSH_ON_DESTROY_MS 1000
/* A client with this much unsent output gets no more requests read until
 * it takes its replies. */
#define OUTPUT_BACKPRESSURE_BYTES (64u << 10)
/* Reals (times, durations) with millisecond precision for UNIX times. */
#define OUTPUT_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(13))
/* How much of a command name an error message quotes. */
#define QUOTED_NAME_MAX 64

struct command_entry {
    char *name;
    control_handler handler;
    void *opaque;
};

/* A line handed to the server thread by another thread: an event for every
 * subscriber, or a deferred reply for one client. */
struct queued_line {
    struct queued_line *next;
    uint64_t client_id; /* 0: every subscriber */
    bool completes_deferred_reply;
    size_t length;
    char text[]; /* ends with '\n' */
};

struct control_pending_reply {
    uint64_t client_id;
    char *request_id; /* the request's "id" as JSON text, or NULL */
};

struct client {
    uint64_t id;
    int fd;
    char *input; /* CONTROL_MAX_LINE + 1 bytes */
    size_t input_length;
    char *output;
    size_t output_start, output_end, output_capacity;
    bool subscribed;
    bool awaiting_deferred_reply; /* read no more requests until it is sent */
    bool input_ended;             /* the client shut down its sending side */
    bool closing;                 /* close once the output is sent */
    bool dead;                    /* close now */
};

struct control_server {
    char socket_path[sizeof((struct sockaddr_un *)0)->sun_path];
    dev_t socket_device; /* to remove the socket only if it is ours */
    ino_t socket_inode;
    char *log_prefix;
    int listen_fd;
    int wakeup_fd;
    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;
    atomic_uint_fast64_t rejected_requests;

    pthread_mutex_t lock; /* guards commands and the queue */
    struct command_entry *commands;
    size_t command_count;
    struct queued_line *queue_head, *queue_tail;

    /* Server thread only (and destroy, after the thread has ended). */
    struct client *clients[CONTROL_MAX_CLIENTS];
    size_t client_count;
    uint64_t last_client_id;
    struct client *handling_client; /* set while a handler runs */
    const json_t *handling_request_id;
    bool handling_deferred;
};

static void server_log(struct control_server *server, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void server_log(struct control_server *server, const char *format, ...)
{
    if (!server->log_prefix)
        return;
    char message[768];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    fprintf(stderr, "%s: control socket: %s\n", server->log_prefix, message);
}

static double unix_time_seconds(void)
{
    return (double)(clock_realtime_ns() / 1000000) / 1000.0; /* milliseconds, as events carry them */
}

/* A JSON string for a message that may hold bytes that are not UTF-8 (a
 * file name, a message cut short in the middle of a character): those
 * become '?', since a JSON string must be UTF-8. */
static json_t *json_string_lossy(const char *text)
{
    json_t *string = json_string(text);
    if (string)
        return string;
    char *copy = strdup(text);
    if (!copy)
        return NULL;
    for (char *c = copy; *c; c++)
        if ((unsigned char)*c >= 0x80)
            *c = '?';
    string = json_string(copy);
    free(copy);
    return string;
}

static json_t *new_reply(bool ok, const json_t *request_id)
{
    json_t *reply = json_object();
    if (!reply)
        return NULL;
    json_object_set_new(reply, "ok", json_boolean(ok));
    if (request_id)
        json_object_set(reply, "id", (json_t *)request_id);
    return reply;
}

static json_t *new_error_reply(const json_t *request_id, const char *message)
{
    json_t *reply = new_reply(false, request_id);
    if (reply)
        json_object_set_new(reply, "error", json_string_lossy(message));
    return reply;
}

/* ---- client output ---- */

static void flush_output(struct client *client)
{
    while (client->output_start < client->output_end && !client->dead) {
        ssize_t sent = send(client->fd, client->output + client->output_start,
                            client->output_end - client->output_start, MSG_NOSIGNAL);
        if (sent > 0) {
            client->output_start += (size_t)sent;
        } else if (sent < 0 && errno == EINTR) {
            continue;
        } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            client->dead = true; /* the client has gone */
        }
    }
    if (client->output_start == client->output_end)
        client->output_start = client->output_end = 0;
}

static size_t pending_output(const struct client *client)
{
    return client->output_end - client->output_start;
}

static void append_output(struct control_server *server, struct client *client, const char *text, size_t length)
{
    if (client->dead)
        return;
    if (pending_output(client) + length > CONTROL_MAX_PENDING_OUTPUT) {
        server_log(server, "client %" PRIu64 " does not read what it is sent (%zu bytes waiting): disconnecting",
                   client->id, pending_output(client));
        client->dead = true;
        return;
    }
    if (client->output_end + length > client->output_capacity) {
        /* Move what is left to the front, then grow if that is not enough. */
        size_t waiting = pending_output(client);
        if (waiting)
            memmove(client->output, client->output + client->output_start, waiting);
        client->output_start = 0;
        client->output_end = waiting;
        if (waiting + length > client->output_capacity) {
            size_t capacity = client->output_capacity ? client->output_capacity : 4096;
            while (capacity < waiting + length)
                capacity *= 2;
            char *grown = realloc(client->output, capacity);
            if (!grown) {
                server_log(server, "out of memory for client %" PRIu64 ": disconnecting", client->id);
                client->dead = true;
                return;
            }
            client->output = grown;
            client->output_capacity = capacity;
        }
    }
    memcpy(client->output + client->output_end, text, length);
    client->output_end += length;
    flush_output(client);
}

static void send_json(struct control_server *server, struct client *client, const json_t *message)
{
    char *text = message ? json_dumps(message, OUTPUT_FLAGS) : NULL;
    if (!text) {
        /* Only when out of memory; the client still gets a line. */
        static const char fallback[] = "{\"ok\":false,\"error\":\"out of memory\"}\n";
        append_output(server, client, fallback, sizeof fallback - 1);
        return;
    }
    size_t length = strlen(text);
    text[length] = '\n'; /* replaces the terminator; length stays known */
    append_output(server, client, text, length + 1);
    free(text);
}

/* ---- requests ---- */

static void reject_request(struct control_server *server, struct client *client, const json_t *request_id,
                           const char *format, ...) __attribute__((format(printf, 4, 5)));

/* A protocol mistake: an error reply, counted and logged. */
static void reject_request(struct control_server *server, struct client *client, const json_t *request_id,
                           const char *format, ...)
{
    char message[512];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    uint64_t count = atomic_fetch_add(&server->rejected_requests, 1) + 1;
    server_log(server, "rejected a request from client %" PRIu64 " (%" PRIu64 " so far): %s", client->id, count,
               message);
    json_t *reply = new_error_reply(request_id, message);
    send_json(server, client, reply);
    json_decref(reply);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "a, b, c": the known commands, sorted, for an unknown-command reply. */
static void list_commands(struct control_server *server, char *list, size_t size)
{
    const char *names[64];
    size_t count = 0;
    names[count++] = "subscribe";
    names[count++] = "unsubscribe";
    pthread_mutex_lock(&server->lock);
    for (size_t i = 0; i < server->command_count && count < sizeof names / sizeof names[0]; i++)
        names[count++] = server->commands[i].name;
    qsort(names, count, sizeof names[0], compare_names);
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < count && used < size; i++) {
        int written = snprintf(list + used, size - used, "%s%s", i ? ", " : "", names[i]);
        if (written < 0)
            break;
        used += (size_t)written;
    }
    pthread_mutex_unlock(&server->lock);
}

static bool find_command(struct control_server *server, const char *name, struct command_entry *found)
{
    bool exists = false;
    pthread_mutex_lock(&server->lock);
    for (size_t i = 0; i < server->command_count; i++) {
        if (strcmp(server->commands[i].name, name) == 0) {
            *found = server->commands[i];
            exists = true;
            break;
        }
    }
    pthread_mutex_unlock(&server->lock);
    return exists;
}

static void run_handler(struct control_server *server, struct client *client, const struct command_entry *command,
                        const json_t *request, const json_t *request_id)
{
    json_t *reply = new_reply(true, request_id);
    if (!reply) {
        send_json(server, client, NULL);
        return;
    }
    struct error err;
    snprintf(err.message, sizeof err.message, "command '%s' failed", command->name);
    server->handling_client = client;
    server->handling_request_id = request_id;
    server->handling_deferred = false;
    int result = command->handler(command->opaque, request, reply, &err);
    server->handling_client = NULL;
    server->handling_request_id = NULL;
    if (!server->handling_deferred) {
        if (result < 0) {
            server_log(server, "%s: %s", command->name, err.message);
            json_decref(reply);
            reply = new_error_reply(request_id, err.message);
        } else {
            /* A handler fills fields; "ok" stays the server's to say. */
            json_object_set_new(reply, "ok", json_true());
        }
        send_json(server, client, reply);
    }
    json_decref(reply);
}

static bool is_blank(const char *text, size_t length)
{
    for (size_t i = 0; i < length; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r')
            return false;
    return true;
}

int control_request_parse(const char *line, size_t length, json_t **request, struct error *err)
{
    *request = NULL;
    if (is_blank(line, length))
        return 0;
    json_error_t parse_error;
    /* Any JSON value parses, so that one that is not an object gets the
     * clearer message below. */
    json_t *value = json_loadb(line, length, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &parse_error);
    if (!value)
        return error_set(err, "invalid JSON: %s (line 1, column %d)", parse_error.text, parse_error.column);
    if (!json_is_object(value)) {
        json_decref(value);
        return error_set(err, "a request must be a JSON object, like {\"command\": \"status\"}");
    }
    /* From here on the caller gets the object, to echo its "id". */
    *request = value;
    const json_t *command_value = json_object_get(value, "command");
    if (!command_value)
        return error_set(err, "missing \"command\": a request is like {\"command\": \"status\"}");
    if (!json_is_string(command_value))
        return error_set(err, "\"command\" must be a string, like {\"command\": \"status\"}");
    return 1;
}

static void handle_line(struct control_server *server, struct client *client, const char *line, size_t length)
{
    json_t *request;
    struct error err;
    int parsed = control_request_parse(line, length, &request, &err);
    if (parsed == 0)
        return;
    /* NULL when the line was not an object, or had no "id". */
    const json_t *request_id = json_object_get(request, "id");
    if (parsed < 0) {
        reject_request(server, client, request_id, "%s", err.message);
    } else {
        const char *name = json_string_value(json_object_get(request, "command"));
        struct command_entry command;
        if (strcmp(name, "subscribe") == 0 || strcmp(name, "unsubscribe") == 0) {
            client->subscribed = name[0] == 's';
            json_t *reply = new_reply(true, request_id);
            json_object_set_new(reply, "subscribed", json_boolean(client->subscribed));
            send_json(server, client, reply);
            json_decref(reply);
        } else if (find_command(server, name, &command)) {
            run_handler(server, client, &command, request, request_id);
        } else {
            char known[1024];
            list_commands(server, known, sizeof known);
            reject_request(server, client, request_id, "unknown command '%.*s'%s (known: %s)", QUOTED_NAME_MAX, name,
                           strlen(name) > QUOTED_NAME_MAX ? "..." : "", known);
        }
    }
    json_decref(request);
}

static bool wants_requests(const struct client *client)
{
    return !client->awaiting_deferred_reply && !client->input_ended && !client->closing && !client->dead &&
           pending_output(client) < OUTPUT_BACKPRESSURE_BYTES;
}

/* Handles the complete lines in the client's input, as long as it may make
 * requests (a deferred reply stops it until the reply is sent). */
static void handle_input(struct control_server *server, struct client *client)
{
    /* Once the server stops, requests still buffered are not handled. */
    if (atomic_load(&server->stopping))
        return;
    size_t start = 0;
    while (!client->awaiting_deferred_reply && !client->closing && !client->dead) {
        char *newline = memchr(client->input + start, '\n', client->input_length - start);
        if (!newline)
            break;
        size_t length = (size_t)(newline - (client->input + start));
        handle_line(server, client, client->input + start, length);
        start += length + 1;
    }
    memmove(client->input, client->input + start, client->input_length - start);
    client->input_length -= start;
    if (client->awaiting_deferred_reply || client->closing || client->dead)
        return;
    if (client->input_length > CONTROL_MAX_LINE) {
        reject_request(server, client, NULL, "request line longer than %d bytes; disconnecting", CONTROL_MAX_LINE);
        client->input_length = 0;
        client->closing = true;
        return;
    }
    if (client->input_ended) {
        /* A last request without its newline still counts. */
        if (client->input_length > 0) {
            size_t length = client->input_length;
            client->input_length = 0;
            handle_line(server, client, client->input, length);
        }
        if (!client->awaiting_deferred_reply)
            client->closing = true;
    }
}

static void read_requests(struct control_server *server, struct client *client)
{
    /* One read per poll round, so a client that floods us cannot starve the
     * others. The buffer always has room: handle_input never leaves it full. */
    ssize_t received = recv(client->fd, client->input + client->input_length,
                            CONTROL_MAX_LINE + 1 - client->input_length, 0);
    if (received > 0) {
        client->input_length += (size_t)received;
    } else if (received == 0) {
        client->input_ended = true;
    } else if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
        return;
    } else {
        client->dead = true;
        return;
    }
    handle_input(server, client);
}

/* ---- clients ---- */

static void free_client(struct client *client)
{
    if (client->fd >= 0)
        close(client->fd);
    free(client->input);
    free(client->output);
    free(client);
}

static struct client *find_client(struct control_server *server, uint64_t id)
{
    for (size_t i = 0; i < server->client_count; i++)
        if (server->clients[i]->id == id)
            return server->clients[i];
    return NULL;
}

static void accept_clients(struct control_server *server)
{
    for (;;) {
        int fd = accept4(server->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* Out of descriptors or memory: the listening socket stays
                 * readable, so wait a little rather than spin. */
                server_log(server, "cannot accept a client: %s", strerror(errno));
                clock_sleep_ms(100);
            }
            return;
        }
        if (server->client_count == CONTROL_MAX_CLIENTS) {
            static const char refusal[] = "{\"ok\":false,\"error\":\"too many clients\"}\n";
            ssize_t ignored = send(fd, refusal, sizeof refusal - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)ignored;
            close(fd);
            atomic_fetch_add(&server->rejected_requests, 1);
            server_log(server, "refused a client: already %d clients", CONTROL_MAX_CLIENTS);
            continue;
        }
        struct client *client = calloc(1, sizeof *client);
        char *input = malloc(CONTROL_MAX_LINE + 1);
        if (!client || !input) {
            free(client);
            free(input);
            close(fd);
            server_log(server, "out of memory for a new client");
            continue;
        }
        client->fd = fd;
        client->input = input;
        client->id = ++server->last_client_id;
        server->clients[server->client_count++] = client;
    }
}

/* Closes dead clients, and closing ones whose output has all gone. */
static void sweep_clients(struct control_server *server)
{
    for (size_t i = 0; i < server->client_count;) {
        struct client *client = server->clients[i];
        if (client->closing && !client->awaiting_deferred_reply && pending_output(client) == 0)
            client->dead = true;
        if (client->dead) {
            free_client(client);
            server->clients[i] = server->clients[--server->client_count];
        } else {
            i++;
        }
    }
}

/* ---- lines from other threads ---- */

static void wake_server(struct control_server *server)
{
    uint64_t one = 1;
    ssize_t ignored = write(server->wakeup_fd, &one, sizeof one);
    (void)ignored; /* a full counter already wakes it */
}

static void queue_json(struct control_server *server, uint64_t client_id, bool completes_deferred_reply,
                       const json_t *message)
{
    char *text = json_dumps(message, OUTPUT_FLAGS);
    size_t length = text ? strlen(text) : 0;
    struct queued_line *line = text ? malloc(sizeof *line + length + 1) : NULL;
    if (!line) {
        free(text);
        fprintf(stderr, "control socket: out of memory: a %s was dropped\n", client_id ? "reply" : "event");
        return;
    }
    line->next = NULL;
    line->client_id = client_id;
    line->completes_deferred_reply = completes_deferred_reply;
    line->length = length + 1;
    memcpy(line->text, text, length);
    line->text[length] = '\n';
    free(text);
    pthread_mutex_lock(&server->lock);
    if (server->queue_tail)
        server->queue_tail->next = line;
    else
        server->queue_head = line;
    server->queue_tail = line;
    pthread_mutex_unlock(&server->lock);
    wake_server(server);
}

static void deliver_queued_lines(struct control_server *server)
{
    pthread_mutex_lock(&server->lock);
    struct queued_line *line = server->queue_head;
    server->queue_head = server->queue_tail = NULL;
    pthread_mutex_unlock(&server->lock);
    while (line) {
        struct queued_line *next = line->next;
        if (line->client_id == 0) {
            for (size_t i = 0; i < server->client_count; i++)
                if (server->clients[i]->subscribed)
                    append_output(server, server->clients[i], line->text, line->length);
        } else {
            struct client *client = find_client(server, line->client_id);
            if (client) {
                append_output(server, client, line->text, line->length);
                if (line->completes_deferred_reply) {
                    client->awaiting_deferred_reply = false;
                    handle_input(server, client); /* requests that waited behind it */
                }
            }
        }
        free(line);
        line = next;
    }
}

/* ---- the thread ---- */

static void *server_thread(void *argument)
{
    pthread_setname_np(pthread_self(), "control");
    struct control_server *server = argument;
    struct pollfd fds[2 + CONTROL_MAX_CLIENTS];
    struct client *polled[CONTROL_MAX_CLIENTS];
    while (!atomic_load(&server->stopping)) {
        fds[0] = (struct pollfd){ .fd = server->wakeup_fd, .events = POLLIN };
        fds[1] = (struct pollfd){ .fd = server->listen_fd, .events = POLLIN };
        size_t polled_count = server->client_count;
        for (size_t i = 0; i < polled_count; i++) {
            struct client *client = server->clients[i];
            polled[i] = client;
            short events = 0;
            if (wants_requests(client))
                events |= POLLIN;
            if (pending_output(client))
                events |= POLLOUT;
            fds[2 + i] = (struct pollfd){ .fd = client->fd, .events = events };
        }
        if (poll(fds, 2 + polled_count, -1) < 0) {
            if (errno == EINTR)
                continue;
            server_log(server, "poll failed: %s; the control socket stops serving", strerror(errno));
            break;
        }
        if (fds[0].revents & POLLIN) {
            uint64_t count;
            ssize_t ignored = read(server->wakeup_fd, &count, sizeof count);
            (void)ignored;
            deliver_queued_lines(server);
        }
        if (fds[1].revents & POLLIN)
            accept_clients(server);
        /* `polled` stays valid: clients are only freed by sweep_clients. */
        for (size_t i = 0; i < polled_count; i++) {
            struct client *client = polled[i];
            short revents = fds[2 + i].revents;
            if (client->dead || !revents)
                continue;
            if (revents & POLLOUT)
                flush_output(client);
            if ((revents & POLLIN) && wants_requests(client))
                read_requests(server, client);
            else if (revents & (POLLHUP | POLLERR | POLLNVAL))
                client->dead = true;
        }
        sweep_clients(server);
    }
    return NULL;
}

/* Sends what clients still have queued, for at most `timeout_ms`. */
static void flush_all_clients(struct control_server *server, int timeout_ms)
{
    uint64_t start_ms = clock_monotonic_ms();
    for (;;) {
        struct pollfd fds[CONTROL_MAX_CLIENTS];
        struct client *waiting[CONTROL_MAX_CLIENTS];
        size_t count = 0;
        for (size_t i = 0; i < server->client_count; i++) {
            struct client *client = server->clients[i];
            if (!client->dead && pending_output(client)) {
                waiting[count] = client;
                fds[count++] = (struct pollfd){ .fd = client->fd, .events = POLLOUT };
            }
        }
        long elapsed_ms = (long)(clock_monotonic_ms() - start_ms);
        if (count == 0 || elapsed_ms >= timeout_ms)
            return;
        if (poll(fds, count, (int)(timeout_ms - elapsed_ms)) < 0 && errno != EINTR)
            return;
        for (size_t i = 0; i < count; i++) {
            if (fds[i].revents & POLLOUT)
                flush_output(waiting[i]);
            else if (fds[i].revents)
                waiting[i]->dead = true;
        }
    }
}

/* ---- creation ---- */

/* Binds `address`; a stale socket in the way (nobody accepts on it) is
 * replaced. Two processes replacing the same stale socket at the same moment
 * could both succeed; bind itself is atomic, so the common cases are not
 * racy. */
static int bind_replacing_stale(int fd, const struct sockaddr_un *address, struct error *err)
{
    const char *path = address->sun_path;
    if (bind(fd, (const struct sockaddr *)address, sizeof *address) == 0)
        return 0;
    if (errno != EADDRINUSE)
        return error_set_errno(err, "cannot create control socket %s", path);
    struct stat status;
    if (lstat(path, &status) == 0 && !S_ISSOCK(status.st_mode))
        return error_set(err, "cannot create control socket %s: the path exists and is not a socket", path);
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0)
        return error_set_errno(err, "cannot check control socket %s", path);
    int connected = connect(probe, (const struct sockaddr *)address, sizeof *address);
    int connect_errno = errno;
    close(probe);
    /* EAGAIN: someone listens but its backlog is full. */
    if (connected == 0 || connect_errno == EAGAIN || connect_errno == EINPROGRESS) {
        error_set(err, "another process is listening on control socket %s", path);
        return CONTROL_SERVER_IN_USE;
    }
    if (connect_errno != ECONNREFUSED && connect_errno != ENOENT) {
        errno = connect_errno;
        return error_set_errno(err, "cannot check control socket %s", path);
    }
    if (unlink(path) < 0 && errno != ENOENT)
        return error_set_errno(err, "cannot remove stale control socket %s", path);
    if (bind(fd, (const struct sockaddr *)address, sizeof *address) == 0)
        return 0;
    if (errno == EADDRINUSE) {
        error_set(err, "another process is listening on control socket %s", path);
        return CONTROL_SERVER_IN_USE;
    }
    return error_set_errno(err, "cannot create control socket %s", path);
}

int control_server_create(struct control_server **result, const char *socket_path, const char *log_prefix,
                          struct error *err)
{
    *result = NULL;
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    size_t path_length = strlen(socket_path);
    if (path_length == 0 || path_length >= sizeof address.sun_path)
        return error_set(err, "control socket path '%s' must be 1 to %zu bytes long", socket_path,
                         sizeof address.sun_path - 1);
    memcpy(address.sun_path, socket_path, path_length + 1);

    struct control_server *server = calloc(1, sizeof *server);
    if (!server)
        return error_set(err, "out of memory");
    memcpy(server->socket_path, address.sun_path, path_length + 1);
    server->listen_fd = -1;
    server->wakeup_fd = -1;
    pthread_mutex_init(&server->lock, NULL);
    atomic_init(&server->stopping, false);
    atomic_init(&server->rejected_requests, 0);
    if (log_prefix && !(server->log_prefix = strdup(log_prefix))) {
        control_server_destroy(server);
        return error_set(err, "out of memory");
    }

    int listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listen_fd < 0) {
        error_set_errno(err, "cannot create control socket %s", address.sun_path);
        control_server_destroy(server);
        return -1;
    }
    int bound = bind_replacing_stale(listen_fd, &address, err);
    if (bound < 0) {
        close(listen_fd);
        control_server_destroy(server);
        return bound;
    }
    server->listen_fd = listen_fd;
    struct stat status;
    /* Whoever connects can stop the VM: only the owner may. */
    if (chmod(address.sun_path, 0600) < 0 || stat(address.sun_path, &status) < 0 || listen(listen_fd, 16) < 0) {
        error_set_errno(err, "cannot set up control socket %s", address.sun_path);
        unlink(address.sun_path);
        control_server_destroy(server);
        return -1;
    }
    server->socket_device = status.st_dev;
    server->socket_inode = status.st_ino;
    server->wakeup_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (server->wakeup_fd < 0) {
        error_set_errno(err, "cannot create an eventfd for the control socket");
        control_server_destroy(server);
        return -1;
    }
    *result = server;
    return 0;
}

int control_server_register(struct control_server *server, const char *command, control_handler handler, void *opaque,
                            struct error *err)
{
    if (!command[0] || strcmp(command, "subscribe") == 0 || strcmp(command, "unsubscribe") == 0)
        return error_set(err, "cannot register control command '%s': the server handles it", command);
    pthread_mutex_lock(&server->lock);
    for (size_t i = 0; i < server->command_count; i++) {
        if (strcmp(server->commands[i].name, command) == 0) {
            server->commands[i].handler = handler;
            server->commands[i].opaque = opaque;
            pthread_mutex_unlock(&server->lock);
            return 0;
        }
    }
    struct command_entry *grown = realloc(server->commands, (server->command_count + 1) * sizeof *grown);
    char *name = strdup(command);
    if (!grown || !name) {
        if (grown)
            server->commands = grown;
        free(name);
        pthread_mutex_unlock(&server->lock);
        return error_set(err, "out of memory registering control command '%s'", command);
    }
    server->commands = grown;
    server->commands[server->command_count++] = (struct command_entry){ name, handler, opaque };
    pthread_mutex_unlock(&server->lock);
    return 0;
}

int control_server_start(struct control_server *server, struct error *err)
{
    /* Signals belong to the program's own threads, not to this one. */
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    int failed = pthread_create(&server->thread, NULL, server_thread, server);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (failed) {
        errno = failed;
        return error_set_errno(err, "cannot start the control socket thread");
    }
    server->thread_started = true;
    return 0;
}

void control_server_post_event(struct control_server *server, json_t *event)
{
    json_t *copy = json_copy(event); /* shallow: only to add "time" */
    if (!copy)
        return;
    if (!json_object_get(copy, "time"))
        json_object_set_new(copy, "time", json_real(unix_time_seconds()));
    queue_json(server, 0, false, copy);
    json_decref(copy);
}

struct control_pending_reply *control_server_defer_reply(struct control_server *server)
{
    if (!server->handling_client || server->handling_deferred) {
        fprintf(stderr, "control_server_defer_reply: called outside a handler or twice\n");
        abort();
    }
    struct control_pending_reply *pending = calloc(1, sizeof *pending);
    if (!pending)
        return NULL;
    if (server->handling_request_id) {
        pending->request_id = json_dumps(server->handling_request_id, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!pending->request_id) {
            free(pending);
            return NULL;
        }
    }
    pending->client_id = server->handling_client->id;
    server->handling_client->awaiting_deferred_reply = true;
    server->handling_deferred = true;
    return pending;
}

void control_server_complete_reply(struct control_server *server, struct control_pending_reply *pending,
                                   const json_t *fields, const struct error *error)
{
    json_t *request_id = pending->request_id ? json_loads(pending->request_id, JSON_DECODE_ANY, NULL) : NULL;
    json_t *reply = error ? new_error_reply(request_id, error->message) : new_reply(true, request_id);
    if (reply && fields && !error) {
        json_object_update(reply, (json_t *)fields);
        json_object_set_new(reply, "ok", json_true());
    }
    if (!reply)
        reply = new_error_reply(NULL, "out of memory");
    queue_json(server, pending->client_id, true, reply);
    json_decref(reply);
    json_decref(request_id);
    free(pending->request_id);
    free(pending);
}

uint64_t control_server_rejected_requests(struct control_server *server)
{
    return atomic_load(&server->rejected_requests);
}

const char *control_server_socket_path(const struct control_server *server)
{
    return server->socket_path;
}

void control_server_destroy(struct control_server *server)
{
    if (!server)
        return;
    if (server->thread_started) {
        atomic_store(&server->stopping, true);
        wake_server(server);
        pthread_join(server->thread, NULL);
    }
    if (server->listen_fd >= 0) {
        close(server->listen_fd);
        struct stat status;
        /* Another process may have replaced a socket it took for stale. */
        if (stat(server->socket_path, &status) == 0 && status.st_dev == server->socket_device &&
            status.st_ino == server->socket_inode)
            unlink(server->socket_path);
    }
    /* The thread has ended: this thread may touch the clients now. */
    deliver_queued_lines(server);
    flush_all_clients(server, FLUSH_ON_DESTROY_MS);
    for (size_t i = 0; i < server->client_count; i++)
        free_client(server->clients[i]);
    if (server->wakeup_fd >= 0)
        close(server->wakeup_fd);
    for (size_t i = 0; i < server->command_count; i++)
        free(server->commands[i].name);
    free(server->commands);
    free(server->log_prefix);
    pthread_mutex_destroy(&server->lock);
    free(server);
}
