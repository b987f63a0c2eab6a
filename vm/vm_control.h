/* The control socket of `colo run` (docs/control.md): the VM's state as
 * clients see it, the built-in commands (status, pause, resume, quit, save),
 * and the calls `colo run` makes around each machine_run.
 *
 * The machine runs on the main thread; the commands run on the control
 * server's thread and reach the machine only through its thread-safe API
 * (machine_pause, machine_resume, machine_request_stop). A mutex and the
 * starting/stopped calls make sure no command touches a machine that is
 * being created or destroyed.
 *
 * More commands (migrate) register with
 *     control_server_register(vm_control_server(control), "migrate", handler, opaque, &err);
 * one that has the machine to itself for a while (the VM showing
 * "migrating") runs as a vm_operation on its own thread, as save does, or
 * brackets its work with vm_control_begin_operation/end_operation. */
#ifndef COLO_VM_VM_CONTROL_H
#define COLO_VM_VM_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include "control_server.h"
#include "error.h"
#include "machine.h"
#include "vm.h"
#include "vm_config.h"
#include "vm_save_file.h"

enum vm_state {
    VM_STATE_STARTING, /* loading or booting, or rebooting */
    VM_STATE_RUNNING,
    VM_STATE_PAUSED,
    VM_STATE_SAVING,
    VM_STATE_MIGRATING,
    VM_STATE_PROTECTED, /* colo protect: replicated to a secondary (runs on) */
    VM_STATE_STOPPING,  /* quit (or a save that ends the VM): the run is ending */
    VM_STATE_STOPPED,
};

const char *vm_state_name(enum vm_state state);

struct vm_control;

struct vm_control_options {
    const char *name;
    const char *socket_path;        /* NULL: $COLO_RUN_DIR/NAME.sock (the directory is created) */
    bool start_paused;              /* the VM waits for a resume before its first instruction */
    const struct vm_config *config; /* saved with the VM (NULL: a bare-metal program); kept, not copied */
};

/* Opens the control socket, registers the built-in commands and starts
 * serving. A VM with this name already running is an error: "a VM named
 * NAME is already running (control socket PATH)". */
int vm_control_create(struct vm_control **control, const struct vm_control_options *options, struct error *err);
struct control_server *vm_control_server(struct vm_control *control);

/* `colo run`, on the main thread, around each machine_run of a machine
 * (a guest reboot makes a new machine: restarting = true). */
void vm_control_machine_starting(struct vm_control *control, struct machine *machine);
void vm_control_machine_stopped(struct vm_control *control, bool restarting);

/* Stops the running machine, if any, at its next instruction boundary, as
 * an interruption (not a quit: the run ends "stopped"). Any thread. */
void vm_control_interrupt(struct vm_control *control);

/* Whether the VM was told to end (quit, or a save without keep_running):
 * then a MACHINE_EXIT_STOPPED is a clean end, not an interrupt. */
bool vm_control_quit_requested(struct vm_control *control);

/* For a command that has the machine to itself for a while (save,
 * migrate): shows `state` (VM_STATE_SAVING, VM_STATE_MIGRATING), pauses
 * the machine if pause_machine (else the operation pauses it when it needs
 * to, with machine_pause/machine_resume), and keeps the machine from being
 * destroyed until vm_control_end_operation. Returns the machine, or NULL
 * with err set when the VM is not running or is busy with another
 * operation. Any thread. */
struct machine *vm_control_begin_operation(struct vm_control *control, enum vm_state state, bool pause_machine,
                                           struct error *err);
/* Ends it: the VM carries on (running, or paused if a pause came
 * meanwhile), or with stop_vm it ends like after a quit. */
void vm_control_end_operation(struct vm_control *control, bool stop_vm);

/* A long operation run on its own thread, so the control socket keeps
 * serving meanwhile (status shows `state`). */
struct vm_operation {
    enum vm_state state;
    bool pause_machine; /* as for vm_control_begin_operation */
    /* Does the work on the operation's thread: fills `reply` with result
     * fields and returns 0, or returns -1 with err set. Setting *stop_vm
     * ends the VM afterwards (a save without keep_running, a migration
     * that handed the VM over). */
    int (*run)(void *opaque, struct machine *machine, json_t *reply, bool *stop_vm, struct error *err);
    void (*done)(void *opaque); /* then, e.g. to free opaque; may be NULL */
    void *opaque;
};

/* From a command handler: begins the operation, starts its thread, and
 * defers the handler's reply until `run` has returned. Returns 0 (the
 * handler then returns 0), or -1 with err set when the VM is not running or
 * is busy (nothing was started and `done` is not called). */
int vm_control_start_operation(struct vm_control *control, const struct vm_operation *operation, struct error *err);

/* Adds fields to every status reply (e.g. "replication"); called on the
 * control server's thread with the control's lock held, so it must not
 * call back into vm_control. One hook; NULL removes it. */
void vm_control_set_status_hook(struct vm_control *control, void (*hook)(void *opaque, json_t *reply), void *opaque);

/* Asked before an operation of vm_control_start_operation (save, migrate)
 * begins: -1 with err set refuses it (a COLO secondary's VM is a copy of
 * the primary's: saved or moved, it would run as a second copy). One gate;
 * NULL removes it. Called without the control's lock. */
void vm_control_set_operation_gate(struct vm_control *control,
                                   int (*gate)(void *opaque, enum vm_state state, struct error *err), void *opaque);

/* What `colo save` writes beyond the machine (vm_save_file.h); the
 * replication sets it (a survivor's shifted TCP connections). NULL: none.
 * Copied. */
void vm_control_set_save_records(struct vm_control *control, const struct vm_save_file_records *records);

/* Posts an event to the subscribed clients, e.g. migration progress. */
void vm_control_post_event(struct vm_control *control, json_t *event);

/* After the last run: waits for running commands, answers pending quits,
 * closes the socket and removes it. */
void vm_control_destroy(struct vm_control *control);

#endif
