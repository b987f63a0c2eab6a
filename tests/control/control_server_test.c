/* The control socket server, over a real UNIX socket, with a fake set of
 * handlers: good requests, every kind of bad request (each gets an error
 * reply and the server carries on), several clients at once, a deferred
 * reply, subscribed events, stale and busy socket paths. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_client.h"
#include "control_server.h"

#define TIMEOUT_MS 5000

static int failures;
static char socket_path[256];

static void check(bool condition, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void check(bool condition, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    printf(condition ? "ok   " : "FAIL ");
    vprintf(format, args);
    printf("\n");
    va_end(args);
    if (!condition)
        failures++;
}

/* ---- the fake handlers ---- */

/* echo: replies {"value": <the request's value>}. */
static int handle_echo(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)opaque;
    json_t *value = json_object_get(request, "value");
    if (!value)
        return error_set(err, "echo needs a \"value\"");
    json_object_set(reply, "value", value);
    return 0;
}

static int handle_fail(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)opaque, (void)request, (void)reply;
    return error_set(err, "it failed on purpose");
}

/* slow: replies {"slept": true} from another thread, 200 ms later. */
struct slow_job {
    struct control_server *server;
    struct control_pending_reply *pending;
};

static void *slow_thread(void *argument)
{
    struct slow_job *job = argument;
    usleep(200 * 1000);
    json_t *fields = json_pack("{s:b}", "slept", 1);
    control_server_complete_reply(job->server, job->pending, fields, NULL);
    json_decref(fields);
    free(job);
    return NULL;
}

static pthread_t slow_threads[16];
static int slow_thread_count;

static int handle_slow(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request, (void)reply;
    struct slow_job *job = malloc(sizeof *job);
    job->server = opaque;
    job->pending = control_server_defer_reply(job->server);
    if (!job->pending || slow_thread_count == 16) {
        free(job);
        return error_set(err, "cannot defer");
    }
    pthread_create(&slow_threads[slow_thread_count++], NULL, slow_thread, job);
    return 0;
}

/* post: posts {"event": "test", "n": <n>} and replies. */
static int handle_post(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)reply, (void)err;
    json_t *event = json_pack("{s:s, s:O}", "event", "test", "n", json_object_get(request, "n"));
    control_server_post_event(opaque, event);
    json_decref(event);
    return 0;
}

/* ---- helpers ---- */

static void connect_client(struct control_client *client)
{
    struct error err;
    if (control_client_connect(client, socket_path, TIMEOUT_MS, &err) != CONTROL_CLIENT_OK) {
        printf("FAIL cannot connect: %s\n", err.message);
        exit(1);
    }
}

static void send_raw(struct control_client *client, const char *text, size_t length)
{
    size_t sent = 0;
    while (sent < length) {
        ssize_t n = send(client->fd, text + sent, length - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            usleep(1000);
        } else {
            return; /* the server hung up: the caller reads why */
        }
    }
}

/* The next message, or NULL (and a failure) when none comes. */
static json_t *receive(struct control_client *client, const char *what)
{
    struct error err = { "" };
    json_t *message;
    int result = control_client_receive(client, &message, TIMEOUT_MS, &err);
    if (result != CONTROL_CLIENT_OK) {
        check(false, "%s: no message (status %d) %s", what, result, err.message);
        return NULL;
    }
    return message;
}

/* A string field, or "" when there is none. */
static const char *string_field(const json_t *object, const char *key)
{
    const char *value = object ? json_string_value(json_object_get(object, key)) : NULL;
    return value ? value : "";
}

static bool reply_is_ok(const json_t *reply)
{
    return reply && json_is_true(json_object_get(reply, "ok"));
}

static const char *reply_error(const json_t *reply)
{
    return string_field(reply, "error");
}

/* Sends a raw line and expects an error reply containing `expected`. */
static void expect_rejected(struct control_client *client, const char *line, const char *expected)
{
    send_raw(client, line, strlen(line));
    json_t *reply = receive(client, line);
    check(reply && !reply_is_ok(reply) && strstr(reply_error(reply), expected), "%-40.*s -> %s",
          (int)strcspn(line, "\n"), line, reply_error(reply));
    json_decref(reply);
}

static json_t *call(struct control_client *client, const char *line)
{
    json_t *request = json_loads(line, 0, NULL);
    json_t *reply = NULL;
    struct error err = { "" };
    if (control_client_call(client, request, &reply, TIMEOUT_MS, &err) != CONTROL_CLIENT_OK)
        check(false, "%s: %s", line, err.message);
    json_decref(request);
    return reply;
}

/* ---- the tests ---- */

static void test_good_requests(void)
{
    struct control_client client;
    connect_client(&client);
    json_t *reply = call(&client, "{\"command\": \"echo\", \"value\": [1, \"two\", {\"three\": 3}], \"id\": 42}");
    check(reply_is_ok(reply) && json_integer_value(json_object_get(reply, "id")) == 42 &&
              json_array_size(json_object_get(reply, "value")) == 3,
          "echo: a good request gets its result, with its id");
    json_decref(reply);

    reply = call(&client, "{\"command\": \"fail\"}");
    check(reply && !reply_is_ok(reply) && strcmp(reply_error(reply), "it failed on purpose") == 0,
          "a handler's error becomes {\"ok\": false, \"error\": ...}");
    json_decref(reply);

    /* Several requests in one write, with a blank line and CRLF. */
    const char *batch = "{\"command\":\"echo\",\"value\":1}\n\n  \n{\"command\":\"echo\",\"value\":2}\r\n"
                        "{\"command\":\"echo\",\"value\":3}\n";
    send_raw(&client, batch, strlen(batch));
    bool in_order = true;
    for (int i = 1; i <= 3; i++) {
        json_t *message = receive(&client, "batch");
        in_order = in_order && reply_is_ok(message) && json_integer_value(json_object_get(message, "value")) == i;
        json_decref(message);
    }
    check(in_order, "three requests in one write: three replies in order (blank lines ignored)");
    control_client_close(&client);
}

static void test_bad_requests(struct control_server *server)
{
    uint64_t rejected_before = control_server_rejected_requests(server);
    struct control_client client;
    connect_client(&client);
    expect_rejected(&client, "{\"command\": \"echo\", \n", "invalid JSON");
    expect_rejected(&client, "not json at all\n", "invalid JSON");
    expect_rejected(&client, "{\"command\": \"echo\", \"command\": \"fail\"}\n", "invalid JSON");
    expect_rejected(&client, "[\"command\", \"echo\"]\n", "must be a JSON object");
    expect_rejected(&client, "\"status\"\n", "must be a JSON object");
    expect_rejected(&client, "{}\n", "missing \"command\"");
    expect_rejected(&client, "{\"value\": 1}\n", "missing \"command\"");
    expect_rejected(&client, "{\"command\": 7}\n", "\"command\" must be a string");
    expect_rejected(&client, "{\"command\": \"fly\"}\n", "unknown command 'fly'");
    expect_rejected(&client, "{\"command\": \"fly\"}\n", "known: echo, fail, post, slow, subscribe, unsubscribe");
    expect_rejected(&client, "{\"command\": \"\\u00e9t\\u00e9\"}\n", "unknown command '\xc3\xa9t\xc3\xa9'");
    expect_rejected(&client, "\xff\xfe{}\n", "invalid JSON");
    /* The same connection still works after all of that. */
    json_t *reply = call(&client, "{\"command\": \"echo\", \"value\": \"still here\"}");
    check(reply_is_ok(reply), "the client is still served after its bad requests");
    json_decref(reply);
    uint64_t rejected = control_server_rejected_requests(server) - rejected_before;
    check(rejected == 12, "every bad request was counted (%llu)", (unsigned long long)rejected);
    control_client_close(&client);
}

static void test_too_long_line(struct control_server *server)
{
    uint64_t rejected_before = control_server_rejected_requests(server);
    struct control_client client;
    connect_client(&client);
    /* A line of exactly CONTROL_MAX_LINE bytes is fine. */
    size_t padding = CONTROL_MAX_LINE - strlen("{\"command\":\"echo\",\"value\":\"\"}");
    char *line = malloc(CONTROL_MAX_LINE + 2);
    int length = sprintf(line, "{\"command\":\"echo\",\"value\":\"%*s\"}", (int)padding, "");
    check(length == CONTROL_MAX_LINE, "a line of %d bytes", length);
    line[length] = '\n';
    send_raw(&client, line, (size_t)length + 1);
    json_t *reply = receive(&client, "longest line");
    check(reply_is_ok(reply), "a request of exactly %d bytes is served", CONTROL_MAX_LINE);
    json_decref(reply);

    /* One byte more, and the client is dropped after its error reply. */
    char *long_line = malloc(200000);
    memset(long_line, ' ', 200000);
    send_raw(&client, long_line, 200000);
    reply = receive(&client, "too long line");
    check(reply && !reply_is_ok(reply) && strstr(reply_error(reply), "longer than 65536 bytes"),
          "a line over %d bytes: %s", CONTROL_MAX_LINE, reply_error(reply));
    json_decref(reply);
    json_t *message = NULL;
    struct error err;
    int result = control_client_receive(&client, &message, TIMEOUT_MS, &err);
    check(result == CONTROL_CLIENT_CLOSED, "then the server closes the connection");
    json_decref(message);
    check(control_server_rejected_requests(server) == rejected_before + 1, "the too-long line was counted");
    control_client_close(&client);
    free(line);
    free(long_line);
}

static void test_several_clients(void)
{
    enum { CLIENTS = 20, ROUNDS = 5 };
    struct control_client clients[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        connect_client(&clients[i]);
    bool all_right = true;
    for (int round = 0; round < ROUNDS; round++) {
        /* Everyone sends, then everyone reads: the requests are in flight together. */
        for (int i = 0; i < CLIENTS; i++) {
            char line[128];
            int length = snprintf(line, sizeof line, "{\"command\":\"echo\",\"value\":%d}\n", i * 100 + round);
            send_raw(&clients[i], line, (size_t)length);
        }
        for (int i = 0; i < CLIENTS; i++) {
            json_t *reply = receive(&clients[i], "several clients");
            all_right = all_right && reply_is_ok(reply) &&
                        json_integer_value(json_object_get(reply, "value")) == i * 100 + round;
            json_decref(reply);
        }
    }
    check(all_right, "%d clients at once, %d rounds: each gets its own replies", CLIENTS, ROUNDS);
    /* Half of them leave in the middle of a request. */
    for (int i = 0; i < CLIENTS; i += 2) {
        send_raw(&clients[i], "{\"command\":\"ec", 14);
        control_client_close(&clients[i]);
    }
    for (int i = 1; i < CLIENTS; i += 2) {
        json_t *reply = call(&clients[i], "{\"command\":\"echo\",\"value\":0}");
        all_right = all_right && reply_is_ok(reply);
        json_decref(reply);
        control_client_close(&clients[i]);
    }
    check(all_right, "clients that leave mid-request do not disturb the others");
}

static void test_deferred_reply(void)
{
    struct control_client slow, other;
    connect_client(&slow);
    connect_client(&other);
    /* slow, then echo on the same connection in one write: the echo must
     * wait for the slow reply, so the replies stay in order. */
    const char *lines = "{\"command\":\"slow\",\"id\":\"a\"}\n{\"command\":\"echo\",\"value\":\"after\"}\n";
    send_raw(&slow, lines, strlen(lines));
    usleep(20 * 1000);
    /* Meanwhile another client is served at once. */
    json_t *reply = call(&other, "{\"command\":\"echo\",\"value\":\"meanwhile\"}");
    check(reply_is_ok(reply), "another client is served while a deferred reply is pending");
    json_decref(reply);
    reply = receive(&slow, "deferred reply");
    check(reply_is_ok(reply) && json_is_true(json_object_get(reply, "slept")) &&
              strcmp(string_field(reply, "id"), "a") == 0,
          "the deferred reply arrives, with the request's id");
    json_decref(reply);
    reply = receive(&slow, "request after the deferred one");
    check(reply_is_ok(reply) && strcmp(string_field(reply, "value"), "after") == 0,
          "the request behind it is answered after it");
    json_decref(reply);

    /* A client that leaves before its deferred reply: the reply is dropped. */
    send_raw(&other, "{\"command\":\"slow\"}\n", 19);
    control_client_close(&other);
    usleep(300 * 1000);
    reply = call(&slow, "{\"command\":\"echo\",\"value\":1}");
    check(reply_is_ok(reply), "a deferred reply to a client that left is dropped harmlessly");
    json_decref(reply);
    control_client_close(&slow);
}

static void test_last_line_without_newline(void)
{
    struct control_client client;
    connect_client(&client);
    send_raw(&client, "{\"command\":\"echo\",\"value\":\"eof\"}", 32);
    shutdown(client.fd, SHUT_WR);
    json_t *reply = receive(&client, "last line");
    check(reply_is_ok(reply), "a last request without a newline, then end of input: still answered");
    json_decref(reply);
    json_t *message = NULL;
    struct error err;
    check(control_client_receive(&client, &message, TIMEOUT_MS, &err) == CONTROL_CLIENT_CLOSED,
          "then the server closes");
    control_client_close(&client);
}

static void test_events(struct control_server *server)
{
    struct control_client subscriber, bystander;
    connect_client(&subscriber);
    connect_client(&bystander);
    json_t *reply = call(&subscriber, "{\"command\":\"subscribe\"}");
    check(reply_is_ok(reply), "subscribe");
    json_decref(reply);

    json_t *event = json_pack("{s:s, s:s}", "event", "state", "state", "paused");
    control_server_post_event(server, event);
    json_decref(event);
    json_t *message = receive(&subscriber, "event");
    check(message && strcmp(string_field(message, "event"), "state") == 0 &&
              strcmp(string_field(message, "state"), "paused") == 0 &&
              json_is_number(json_object_get(message, "time")) &&
              json_number_value(json_object_get(message, "time")) > 1.5e9,
          "a subscriber receives a posted event, with its time");
    json_decref(message);

    /* An event posted by a handler, from the bystander's request: the
     * bystander only gets its reply. */
    reply = call(&bystander, "{\"command\":\"post\",\"n\":7}");
    json_decref(reply);
    message = receive(&subscriber, "event from a handler");
    check(message && json_integer_value(json_object_get(message, "n")) == 7, "an event posted by a handler");
    json_decref(message);
    send_raw(&bystander, "{\"command\":\"echo\",\"value\":1}\n", 29);
    message = receive(&bystander, "bystander");
    check(reply_is_ok(message), "a client that did not subscribe gets no events");
    json_decref(message);

    /* Many events from other threads arrive whole and in order. */
    bool in_order = true;
    for (int i = 0; i < 500; i++) {
        event = json_pack("{s:s, s:i}", "event", "tick", "n", i);
        control_server_post_event(server, event);
        json_decref(event);
    }
    for (int i = 0; i < 500 && in_order; i++) {
        message = receive(&subscriber, "tick");
        in_order = message && json_integer_value(json_object_get(message, "n")) == i;
        json_decref(message);
    }
    check(in_order, "500 events arrive in order");

    reply = call(&subscriber, "{\"command\":\"unsubscribe\"}");
    json_decref(reply);
    event = json_pack("{s:s}", "event", "unseen");
    control_server_post_event(server, event);
    json_decref(event);
    reply = call(&subscriber, "{\"command\":\"echo\",\"value\":2}");
    message = NULL;
    struct error err;
    int result = control_client_receive(&subscriber, &message, 200, &err);
    check(reply_is_ok(reply) && result == CONTROL_CLIENT_TIMEOUT, "after unsubscribe, no more events");
    json_decref(reply);
    json_decref(message);
    control_client_close(&subscriber);
    control_client_close(&bystander);
}

/* A subscriber that never reads must not make the server hold ever more
 * memory: past CONTROL_MAX_PENDING_OUTPUT it is disconnected. */
static void test_subscriber_that_does_not_read(struct control_server *server)
{
    struct control_client sleeper, reader;
    connect_client(&sleeper);
    connect_client(&reader);
    json_t *reply = call(&sleeper, "{\"command\":\"subscribe\"}");
    json_decref(reply);
    char padding[1001];
    memset(padding, 'x', 1000);
    padding[1000] = '\0';
    json_t *event = json_pack("{s:s, s:s}", "event", "bulk", "padding", padding);
    size_t events = 2 * CONTROL_MAX_PENDING_OUTPUT / 1000;
    for (size_t i = 0; i < events; i++)
        control_server_post_event(server, event);
    json_decref(event);
    reply = call(&reader, "{\"command\":\"echo\",\"value\":1}");
    check(reply_is_ok(reply), "other clients are served while a subscriber does not read");
    json_decref(reply);
    /* The sleeper finds the events the socket held, then the end. */
    size_t received = 0;
    int result;
    for (;;) {
        json_t *message = NULL;
        struct error err;
        result = control_client_receive(&sleeper, &message, TIMEOUT_MS, &err);
        json_decref(message);
        if (result != CONTROL_CLIENT_OK)
            break;
        received++;
    }
    check(result == CONTROL_CLIENT_CLOSED && received < events,
          "a subscriber that does not read is disconnected (it got %zu of %zu events)", received, events);
    control_client_close(&sleeper);
    control_client_close(&reader);
}

static void test_socket_paths(const char *directory)
{
    struct error err;
    struct control_server *second = NULL;
    int result = control_server_create(&second, socket_path, NULL, &err);
    check(result == CONTROL_SERVER_IN_USE && !second, "a second server on a live socket: in use (%s)", err.message);

    /* A stale socket: bound, then its process "died" without removing it. */
    char stale_path[300];
    snprintf(stale_path, sizeof stale_path, "%s/stale.sock", directory);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    strcpy(address.sun_path, stale_path);
    bind(fd, (struct sockaddr *)&address, sizeof address);
    close(fd);
    struct control_server *server = NULL;
    result = control_server_create(&server, stale_path, NULL, &err);
    check(result == 0, "a stale socket is replaced%s%s", result ? ": " : "", result ? err.message : "");
    struct stat status;
    check(stat(stale_path, &status) == 0 && (status.st_mode & 0777) == 0600, "the socket is mode 0600");
    control_server_destroy(server);
    check(stat(stale_path, &status) < 0 && errno == ENOENT, "destroy removes the socket");

    char file_path[300];
    snprintf(file_path, sizeof file_path, "%s/file.sock", directory);
    FILE *file = fopen(file_path, "w");
    fclose(file);
    result = control_server_create(&server, file_path, NULL, &err);
    check(result == -1 && strstr(err.message, "not a socket"), "a path that is not a socket: %s", err.message);
    unlink(file_path);

    char long_path[200];
    memset(long_path, 'x', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    result = control_server_create(&server, long_path, NULL, &err);
    check(result == -1 && strstr(err.message, "bytes long"), "a path too long: %s", err.message);

    struct control_client client;
    result = control_client_connect(&client, stale_path, TIMEOUT_MS, &err);
    check(result == CONTROL_CLIENT_ERROR && strstr(err.message, "No such file"), "connecting to no server: %s",
          err.message);
}

int main(void)
{
    char directory[] = "/tmp/control_server_test.XXXXXX";
    if (!mkdtemp(directory)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(socket_path, sizeof socket_path, "%s/test.sock", directory);
    struct control_server *server;
    struct error err;
    if (control_server_create(&server, socket_path, "control_server_test", &err) < 0) {
        printf("FAIL create: %s\n", err.message);
        return 1;
    }
    bool registered = control_server_register(server, "echo", handle_echo, NULL, &err) == 0 &&
                      control_server_register(server, "fail", handle_fail, NULL, &err) == 0 &&
                      control_server_register(server, "slow", handle_slow, server, &err) == 0 &&
                      control_server_register(server, "post", handle_post, server, &err) == 0;
    check(registered, "register the fake handlers");
    check(control_server_register(server, "subscribe", handle_echo, NULL, &err) < 0,
          "the server's own commands cannot be registered: %s", err.message);
    if (control_server_start(server, &err) < 0) {
        printf("FAIL start: %s\n", err.message);
        return 1;
    }

    test_good_requests();
    test_bad_requests(server);
    test_too_long_line(server);
    test_several_clients();
    test_deferred_reply();
    test_last_line_without_newline();
    test_events(server);
    test_subscriber_that_does_not_read(server);
    test_socket_paths(directory);

    /* After all of that the server still serves. */
    struct control_client client;
    connect_client(&client);
    json_t *reply = call(&client, "{\"command\":\"echo\",\"value\":\"the end\"}");
    check(reply_is_ok(reply), "the server survived everything");
    json_decref(reply);
    control_client_close(&client);

    for (int i = 0; i < slow_thread_count; i++)
        pthread_join(slow_threads[i], NULL);
    control_server_destroy(server);
    struct stat status;
    check(stat(socket_path, &status) < 0, "the socket is gone after destroy");
    rmdir(directory);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
