/* The client side of a VM's control socket (docs/control.md), and where the
 * sockets live: $COLO_RUN_DIR/NAME.sock, COLO_RUN_DIR defaulting to
 * /run/colo. Every wait has a timeout, so a VM that does not answer cannot
 * hang the caller. */
#ifndef COLO_CONTROL_CONTROL_CLIENT_H
#define COLO_CONTROL_CONTROL_CLIENT_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"

#define CONTROL_DEFAULT_RUN_DIRECTORY "/run/colo"

/* $COLO_RUN_DIR, or /run/colo when it is unset or empty. */
const char *control_run_directory(void);
/* Creates the run directory (mode 0700) if it does not exist. */
int control_run_directory_create(struct error *err);
/* The control socket path of VM `name`: RUN_DIRECTORY/NAME.sock. */
int control_socket_path(const char *name, char *path, size_t size, struct error *err);

/* What a wait ended with, when it did not end with a message. */
enum control_client_status {
    CONTROL_CLIENT_OK = 0,
    CONTROL_CLIENT_ERROR = -1, /* err says what */
    CONTROL_CLIENT_TIMEOUT = -2,
    CONTROL_CLIENT_CLOSED = -3, /* the VM closed the connection */
};

struct control_client {
    int fd;
    char *input; /* bytes received, not yet a whole line */
    size_t input_length, input_capacity;
};

/* timeout_ms < 0 waits for ever, in every function below. */
int control_client_connect(struct control_client *client, const char *socket_path, int timeout_ms, struct error *err);
/* Sends one request line. */
int control_client_send(struct control_client *client, const json_t *request, int timeout_ms, struct error *err);
/* The next line from the VM, a reply or an event: a JSON object. */
int control_client_receive(struct control_client *client, json_t **message, int timeout_ms, struct error *err);
/* Sends `request` and waits for its reply (a message with "ok"; events that
 * arrive first are skipped). A reply {"ok": false} is still
 * CONTROL_CLIENT_OK: the caller reads its "error". */
int control_client_call(struct control_client *client, const json_t *request, json_t **reply, int timeout_ms,
                        struct error *err);
void control_client_close(struct control_client *client);

#endif
