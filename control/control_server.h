/* The control socket of a running VM: a UNIX stream socket that speaks
 * JSON lines (docs/control.md).
 *
 * Each request is one JSON object on one line, with a "command" and the
 * command's arguments; each reply is one JSON object on one line,
 * {"ok": true, ...} or {"ok": false, "error": "..."}, in the order of the
 * requests. A request's "id", if any, is echoed in its reply. A client that
 * sends {"command": "subscribe"} also receives every event posted with
 * control_server_post_event, as lines {"event": ..., "time": ...}.
 *
 * The server has its own thread, which polls the listening socket and every
 * client, so a slow or stuck client never blocks the VM or other clients.
 * Protocol mistakes (invalid JSON, a missing or unknown command, a line
 * over CONTROL_MAX_LINE bytes) get an error reply, are counted and logged;
 * a client whose line is too long is disconnected after its reply.
 *
 * Commands are whatever the program registers: the server itself only
 * knows "subscribe" and "unsubscribe". Handlers run on the server thread.
 * One that has a long job to do (a save, a migration) hands it to another
 * thread and replies later with control_server_defer_reply; meanwhile the
 * server keeps serving the other clients, and reads nothing more from that
 * client, so its replies stay in order. */
#ifndef COLO_CONTROL_CONTROL_SERVER_H
#define COLO_CONTROL_CONTROL_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* Longest request line, without its newline. */
#define CONTROL_MAX_LINE 65536
/* Clients served at once; more are told so and disconnected. */
#define CONTROL_MAX_CLIENTS 64
/* Replies and events waiting for a client that does not read: past this,
 * the client is disconnected rather than letting it hold memory. */
#define CONTROL_MAX_PENDING_OUTPUT (4u << 20)

/* control_server_create's result when another process answers on the
 * socket (a VM with that name is already running). */
#define CONTROL_SERVER_IN_USE (-2)

struct control_server;

/* A command handler. `request` is the whole request object (read it, do
 * not keep it); `reply` is the {"ok": true} object the handler adds its
 * result fields to. Returns 0, or -1 with `err` set: the client then gets
 * {"ok": false, "error": err->message}.
 *
 * A handler that calls control_server_defer_reply has its return value and
 * `reply` ignored: the reply is whatever control_server_complete_reply
 * sends later. */
typedef int (*control_handler)(void *opaque, const json_t *request, json_t *reply, struct error *err);

/* A reply a handler promised to send later. */
struct control_pending_reply;

/* Binds and listens on socket_path (mode 0600). If the path exists: when a
 * process answers on it, returns CONTROL_SERVER_IN_USE; when nobody does
 * (a stale socket left by a process that died), replaces it. Other failures
 * return -1. log_prefix starts every line the server logs on stderr (e.g.
 * "colo run: web"); NULL logs nothing. The server thread starts with
 * control_server_start. */
int control_server_create(struct control_server **server, const char *socket_path, const char *log_prefix,
                          struct error *err);

/* Registers (or replaces) a command's handler. Safe from any thread, before
 * or after start. Fails for the server's own commands and empty names. */
int control_server_register(struct control_server *server, const char *command, control_handler handler, void *opaque,
                            struct error *err);

/* Starts the server thread (with every signal blocked). */
int control_server_start(struct control_server *server, struct error *err);

/* Sends `event` (an object with an "event" field; neither taken over nor
 * changed) to every subscribed client, with "time" (seconds since the
 * epoch) added unless it has one. Any thread. */
void control_server_post_event(struct control_server *server, json_t *event);

/* Only from inside a handler: the reply to the request being handled will
 * be sent later, with control_server_complete_reply. */
struct control_pending_reply *control_server_defer_reply(struct control_server *server);

/* Sends a deferred reply and frees `pending`: {"ok": true} plus the fields
 * of `fields` (may be NULL; not taken over) when `error` is NULL, else
 * {"ok": false, "error": error->message}. Any thread; every pending reply
 * must be completed before control_server_destroy. If the client has gone,
 * the reply is dropped. */
void control_server_complete_reply(struct control_server *server, struct control_pending_reply *pending,
                                   const json_t *fields, const struct error *error);

/* Parses one request line (without its newline), as the server does for
 * every line a client sends. Returns 1 with *request set (a new reference
 * to an object whose "command" is a string), 0 for a blank line (nothing
 * to answer; *request is NULL), or -1 with err set for a protocol mistake:
 * then *request is the parsed object when the line was one (its "id"
 * belongs in the error reply), else NULL. The caller json_decref()s
 * *request in every case. */
int control_request_parse(const char *line, size_t length, json_t **request, struct error *err);

/* Requests refused for protocol mistakes since the server was created. */
uint64_t control_server_rejected_requests(struct control_server *server);

const char *control_server_socket_path(const struct control_server *server);

/* Stops the thread, sends what is still queued (replies, events) to the
 * clients that read it within a second, disconnects them, and removes the
 * socket if it is still ours. */
void control_server_destroy(struct control_server *server);

#endif
