/* The control socket of `colo run`: state, built-in commands (see
 * colo_vm_control.h and docs/control.md). */
#include "vm_control.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "control_client.h"
#include "vm_save_file.h"

/* Quits waiting for the VM to stop; more are answered at once. */
#define MAX_PENDING_QUITS 16

struct vm_control {
    char name[64];
    struct control_server *server;
    const struct vm_config *config; /* written into save files */
    uint64_t created_ms;            /* clock_monotonic_ms, for the uptime */

    /* Everything below is guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t operation_ended;
    struct machine *machine; /* NULL while none is running */
    bool ended;              /* the VM has stopped for good */
    bool user_paused;        /* a pause command holds one machine_pause */
    bool quit_requested;
    bool operation_active; /* save or migrate: see vm_control_begin_operation */
    enum vm_state operation_state;
    bool operation_paused_machine;
    enum vm_state published_state; /* what the last state event said */
    struct control_pending_reply *pending_quits[MAX_PENDING_QUITS];
    size_t pending_quit_count;

    /* The thread of the last vm_control_start_operation: the next one
     * joins it, or destroy does. */
    pthread_t operation_thread;
    bool operation_thread_joinable;

    void (*status_hook)(void *opaque, json_t *reply);
    void *status_hook_opaque;
    struct vm_save_file_records save_records;
    int (*operation_gate)(void *opaque, enum vm_state state, struct error *err);
    void *operation_gate_opaque;
};

const char *vm_state_name(enum vm_state state)
{
    switch (state) {
    case VM_STATE_STARTING:
        return "starting";
    case VM_STATE_RUNNING:
        return "running";
    case VM_STATE_PAUSED:
        return "paused";
    case VM_STATE_SAVING:
        return "saving";
    case VM_STATE_MIGRATING:
        return "migrating";
    case VM_STATE_PROTECTED:
        return "protected";
    case VM_STATE_STOPPING:
        return "stopping";
    case VM_STATE_STOPPED:
        return "stopped";
    }
    return "unknown";
}

bool vm_name_is_valid(const char *name)
{
    size_t length = strlen(name);
    if (length == 0 || length >= sizeof((struct vm_control *)0)->name)
        return false;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
            return false;
    return true;
}

int vm_name_from_path(const char *path, char *name, size_t size, struct error *err)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t length = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (length >= size)
        return error_set(err, "cannot name the VM after '%s': the name would be too long; give --name NAME", path);
    memcpy(name, base, length);
    name[length] = '\0';
    if (!vm_name_is_valid(name))
        return error_set(err,
                         "cannot name the VM after '%s': a name may only hold letters, digits, '-', '_' "
                         "and '.'; give --name NAME",
                         path);
    return 0;
}

/* ---- state ---- */

static enum vm_state current_state(const struct vm_control *control)
{
    if (control->ended)
        return VM_STATE_STOPPED;
    if (control->quit_requested)
        return VM_STATE_STOPPING;
    if (control->operation_active)
        return control->operation_state;
    if (!control->machine)
        return VM_STATE_STARTING;
    return control->user_paused ? VM_STATE_PAUSED : VM_STATE_RUNNING;
}

/* Posts a state event if the state changed. Called with the lock held. */
static void publish_state(struct vm_control *control)
{
    enum vm_state state = current_state(control);
    if (state == control->published_state)
        return;
    control->published_state = state;
    json_t *event = json_pack("{s:s, s:s}", "event", "state", "state", vm_state_name(state));
    if (event)
        control_server_post_event(control->server, event);
    json_decref(event);
}

/* In whole milliseconds, so replies and events show 6.005, not 13 digits. */
static double seconds_since(uint64_t start_ms)
{
    return (double)(clock_monotonic_ms() - start_ms) / 1000.0;
}

/* Called with the lock held. */
static void answer_pending_quits(struct vm_control *control)
{
    for (size_t i = 0; i < control->pending_quit_count; i++) {
        json_t *fields = json_pack("{s:s}", "state", vm_state_name(current_state(control)));
        control_server_complete_reply(control->server, control->pending_quits[i], fields, NULL);
        json_decref(fields);
    }
    control->pending_quit_count = 0;
}

/* ---- status ---- */

static json_t *disk_status(const struct virtio_blk *disk)
{
    struct virtio_blk_stats stats;
    virtio_blk_get_stats(disk, &stats);
    return json_pack("{s:s?, s:b, s:I, s:I, s:I, s:I}", "path", stats.path, "read_only", stats.read_only,
                     "read_requests", (json_int_t)stats.read_requests, "write_requests",
                     (json_int_t)stats.write_requests, "flush_requests", (json_int_t)stats.flush_requests,
                     "failed_requests", (json_int_t)stats.failed_requests);
}

static json_t *nic_status(const struct virtio_net *nic)
{
    struct virtio_net_stats stats;
    virtio_net_get_stats(nic, &stats);
    char mac[18];
    const uint8_t *m = stats.mac;
    snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "tap", stats.backend, "mac", mac, "received_frames",
                     (json_int_t)stats.received_frames, "transmitted_frames", (json_int_t)stats.transmitted_frames,
                     "dropped_no_buffers", (json_int_t)stats.dropped_no_buffers, "dropped_too_large",
                     (json_int_t)stats.dropped_too_large, "transmit_errors", (json_int_t)stats.transmit_errors);
}

static int handle_status(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request, (void)err;
    struct vm_control *control = opaque;
    pthread_mutex_lock(&control->lock);
    json_object_set_new(reply, "name", json_string(control->name));
    json_object_set_new(reply, "state", json_string(vm_state_name(current_state(control))));
    json_object_set_new(reply, "uptime_seconds", json_real(seconds_since(control->created_ms)));
    struct machine *machine = control->machine;
    if (machine) {
        /* Counters change on the machine's thread: read them while it is
         * parked, so they agree with each other. */
        machine_pause(machine);
        json_object_set_new(reply, "memory_mib",
                            json_integer((json_int_t)(machine_get_config(machine)->ram_size >> 20)));
        json_object_set_new(reply, "instructions", json_integer((json_int_t)machine_instructions_retired(machine)));
        json_object_set_new(reply, "dirty_log", json_boolean(machine_dirty_log_enabled(machine)));
        json_t *disks = json_array();
        for (unsigned i = 0; i < machine_disk_count(machine); i++)
            json_array_append_new(disks, disk_status(machine_disk(machine, i)));
        json_t *nics = json_array();
        for (unsigned i = 0; i < machine_nic_count(machine); i++)
            json_array_append_new(nics, nic_status(machine_nic(machine, i)));
        machine_resume(machine);
        json_object_set_new(reply, "disks", disks);
        json_object_set_new(reply, "nics", nics);
    }
    json_object_set_new(reply, "control_socket",
                        json_pack("{s:s, s:I}", "path", control_server_socket_path(control->server),
                                  "rejected_requests", (json_int_t)control_server_rejected_requests(control->server)));
    if (control->status_hook)
        control->status_hook(control->status_hook_opaque, reply);
    pthread_mutex_unlock(&control->lock);
    return 0;
}

/* ---- pause, resume, quit ---- */

static int handle_pause(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request;
    struct vm_control *control = opaque;
    pthread_mutex_lock(&control->lock);
    if (control->ended || control->quit_requested) {
        pthread_mutex_unlock(&control->lock);
        return error_set(err, "cannot pause: the VM is %s", vm_state_name(current_state(control)));
    }
    if (!control->user_paused) {
        control->user_paused = true;
        /* With no machine yet, vm_control_machine_starting pauses it. */
        if (control->machine)
            machine_pause(control->machine);
        publish_state(control);
    }
    json_object_set_new(reply, "state", json_string(vm_state_name(current_state(control))));
    pthread_mutex_unlock(&control->lock);
    return 0;
}

static int handle_resume(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request;
    struct vm_control *control = opaque;
    pthread_mutex_lock(&control->lock);
    if (control->ended || control->quit_requested) {
        pthread_mutex_unlock(&control->lock);
        return error_set(err, "cannot resume: the VM is %s", vm_state_name(current_state(control)));
    }
    if (control->user_paused) {
        control->user_paused = false;
        if (control->machine)
            machine_resume(control->machine);
        publish_state(control);
    }
    json_object_set_new(reply, "state", json_string(vm_state_name(current_state(control))));
    pthread_mutex_unlock(&control->lock);
    return 0;
}

/* Replies once the machine has stopped, so that after `colo quit` the VM
 * has really ended. */
static int handle_quit(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request, (void)err;
    struct vm_control *control = opaque;
    pthread_mutex_lock(&control->lock);
    control->quit_requested = true;
    if (control->machine)
        machine_request_stop(control->machine);
    publish_state(control);
    struct control_pending_reply *pending = NULL;
    if (!control->ended && control->pending_quit_count < MAX_PENDING_QUITS)
        pending = control_server_defer_reply(control->server);
    if (pending)
        control->pending_quits[control->pending_quit_count++] = pending;
    else
        json_object_set_new(reply, "state", json_string(vm_state_name(current_state(control))));
    pthread_mutex_unlock(&control->lock);
    return 0;
}

/* ---- operations ---- */

struct machine *vm_control_begin_operation(struct vm_control *control, enum vm_state state, bool pause_machine,
                                           struct error *err)
{
    pthread_mutex_lock(&control->lock);
    struct machine *machine = control->machine;
    if (!machine || control->ended || control->quit_requested) {
        error_set(err, "the VM is not running (it is %s)", vm_state_name(current_state(control)));
        machine = NULL;
    } else if (control->operation_active) {
        error_set(err, "the VM is busy: it is %s", vm_state_name(control->operation_state));
        machine = NULL;
    } else {
        control->operation_active = true;
        control->operation_state = state;
        control->operation_paused_machine = pause_machine;
        if (pause_machine)
            machine_pause(machine);
        publish_state(control);
    }
    pthread_mutex_unlock(&control->lock);
    return machine;
}

void vm_control_end_operation(struct vm_control *control, bool stop_vm)
{
    pthread_mutex_lock(&control->lock);
    if (stop_vm) {
        /* Stop before resuming, so the VM runs no further instruction. */
        control->quit_requested = true;
        machine_request_stop(control->machine);
    }
    if (control->operation_paused_machine)
        machine_resume(control->machine);
    control->operation_active = false;
    pthread_cond_broadcast(&control->operation_ended);
    publish_state(control);
    pthread_mutex_unlock(&control->lock);
}

/* An operation on its thread: what vm_control_start_operation was given,
 * and the reply it owes. */
struct operation_job {
    struct vm_control *control;
    struct machine *machine;
    struct vm_operation operation;
    struct control_pending_reply *pending;
};

static void *operation_thread(void *argument)
{
    pthread_setname_np(pthread_self(), "operation");
    struct operation_job *job = argument;
    struct error err;
    bool stop_vm = false;
    json_t *fields = json_object();
    int result = fields ? job->operation.run(job->operation.opaque, job->machine, fields, &stop_vm, &err)
                        : error_set(&err, "out of memory");
    /* End the operation before replying, so that a client that asks right
     * after the reply sees the VM running (or stopping) again. The reply
     * still goes out when the VM ends: vm_control_destroy joins this thread
     * before it closes the server. */
    vm_control_end_operation(job->control, result == 0 && stop_vm);
    control_server_complete_reply(job->control->server, job->pending, fields, result == 0 ? NULL : &err);
    json_decref(fields);
    if (job->operation.done)
        job->operation.done(job->operation.opaque);
    free(job);
    return NULL;
}

int vm_control_start_operation(struct vm_control *control, const struct vm_operation *operation, struct error *err)
{
    pthread_mutex_lock(&control->lock);
    int (*gate)(void *, enum vm_state, struct error *) = control->operation_gate;
    void *gate_opaque = control->operation_gate_opaque;
    pthread_mutex_unlock(&control->lock);
    if (gate && gate(gate_opaque, operation->state, err) < 0)
        return -1;
    struct operation_job *job = calloc(1, sizeof *job);
    if (!job)
        return error_set(err, "out of memory");
    job->control = control;
    job->operation = *operation;
    job->machine = vm_control_begin_operation(control, operation->state, operation->pause_machine, err);
    if (!job->machine) {
        free(job);
        return -1;
    }
    job->pending = control_server_defer_reply(control->server);
    if (!job->pending) {
        vm_control_end_operation(control, false);
        free(job);
        return error_set(err, "out of memory");
    }
    pthread_mutex_lock(&control->lock);
    if (control->operation_thread_joinable) {
        /* The previous operation's thread: it has ended its operation, so
         * it is finishing or finished. */
        pthread_join(control->operation_thread, NULL);
        control->operation_thread_joinable = false;
    }
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous); /* signals are the main program's */
    int failed = pthread_create(&control->operation_thread, NULL, operation_thread, job);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    control->operation_thread_joinable = !failed;
    pthread_mutex_unlock(&control->lock);
    if (failed) {
        /* The reply is deferred already: send the error that way. */
        errno = failed;
        struct error thread_error;
        error_set_errno(&thread_error, "cannot start a thread");
        vm_control_end_operation(control, false);
        control_server_complete_reply(control->server, job->pending, NULL, &thread_error);
        if (operation->done)
            operation->done(operation->opaque);
        free(job);
    }
    return 0;
}

/* ---- save ---- */

/* The one place that writes a VM's whole state to a file. */
static int write_state_file(struct vm_control *control, struct machine *machine, const char *path, struct error *err)
{
    pthread_mutex_lock(&control->lock);
    struct vm_save_file_records records = control->save_records;
    pthread_mutex_unlock(&control->lock);
    return vm_save_file_write(path, machine, control->config, &records, err) < 0 ? -1 : 0;
}

struct save_request {
    struct vm_control *control;
    char *path;
    bool keep_running;
};

static int run_save(void *opaque, struct machine *machine, json_t *reply, bool *stop_vm, struct error *err)
{
    struct save_request *save = opaque;
    uint64_t started_ms = clock_monotonic_ms();
    if (write_state_file(save->control, machine, save->path, err) < 0)
        return -1;
    double seconds = seconds_since(started_ms);
    struct stat file_status;
    if (stat(save->path, &file_status) < 0)
        return error_set_errno(err, "cannot stat save file %s", save->path);
    json_object_set_new(reply, "file", json_string(save->path));
    json_object_set_new(reply, "bytes", json_integer((json_int_t)file_status.st_size));
    json_object_set_new(reply, "seconds", json_real(seconds));
    json_t *event = json_pack("{s:s, s:s, s:I, s:f}", "event", "saved", "file", save->path, "bytes",
                              (json_int_t)file_status.st_size, "seconds", seconds);
    if (event)
        control_server_post_event(save->control->server, event);
    json_decref(event);
    *stop_vm = !save->keep_running;
    return 0;
}

static void free_save_request(void *opaque)
{
    struct save_request *save = opaque;
    free(save->path);
    free(save);
}

static int handle_save(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)reply;
    struct vm_control *control = opaque;
    const char *path = json_string_value(json_object_get(request, "file"));
    if (!path || !path[0])
        return error_set(err, "save needs a \"file\": {\"command\": \"save\", \"file\": \"/path/vm.colo\"}");
    const json_t *keep_running = json_object_get(request, "keep_running");
    if (keep_running && !json_is_boolean(keep_running))
        return error_set(err, "\"keep_running\" must be true or false");

    struct save_request *save = calloc(1, sizeof *save);
    if (!save || !(save->path = strdup(path))) {
        free(save);
        return error_set(err, "out of memory");
    }
    save->control = control;
    save->keep_running = json_is_true(keep_running);
    /* The file is written on the operation's thread, so the control socket
     * keeps serving (status says "saving") however long it takes. */
    struct vm_operation operation = {
        .state = VM_STATE_SAVING,
        .pause_machine = true,
        .run = run_save,
        .done = free_save_request,
        .opaque = save,
    };
    if (vm_control_start_operation(control, &operation, err) < 0) {
        free_save_request(save);
        return -1;
    }
    return 0;
}

void vm_control_post_event(struct vm_control *control, json_t *event)
{
    control_server_post_event(control->server, event);
}

/* ---- life cycle ---- */

void vm_control_machine_starting(struct vm_control *control, struct machine *machine)
{
    pthread_mutex_lock(&control->lock);
    control->machine = machine;
    /* machine_pause and machine_request_stop before machine_run take effect
     * before its first instruction. */
    if (control->user_paused)
        machine_pause(machine);
    if (control->quit_requested)
        machine_request_stop(machine);
    publish_state(control);
    pthread_mutex_unlock(&control->lock);
}

void vm_control_machine_stopped(struct vm_control *control, bool restarting)
{
    pthread_mutex_lock(&control->lock);
    /* An operation (a save) may still be using the machine. */
    while (control->operation_active)
        pthread_cond_wait(&control->operation_ended, &control->lock);
    control->machine = NULL;
    if (!restarting) {
        control->ended = true;
        answer_pending_quits(control);
    }
    publish_state(control);
    pthread_mutex_unlock(&control->lock);
}

void vm_control_interrupt(struct vm_control *control)
{
    pthread_mutex_lock(&control->lock);
    if (control->machine)
        machine_request_stop(control->machine);
    pthread_mutex_unlock(&control->lock);
}

bool vm_control_quit_requested(struct vm_control *control)
{
    pthread_mutex_lock(&control->lock);
    bool quit = control->quit_requested;
    pthread_mutex_unlock(&control->lock);
    return quit;
}

struct control_server *vm_control_server(struct vm_control *control)
{
    return control->server;
}

static const struct {
    const char *name;
    control_handler handler;
} builtin_commands[] = {
    { "status", handle_status }, { "pause", handle_pause }, { "resume", handle_resume },
    { "quit", handle_quit },     { "save", handle_save },
};

int vm_control_create(struct vm_control **result, const struct vm_control_options *options, struct error *err)
{
    *result = NULL;
    if (!vm_name_is_valid(options->name))
        return error_set(err, "'%s' is not a VM name: 1..63 letters, digits, '-', '_' and '.'", options->name);
    char socket_path[4096];
    if (options->socket_path) {
        snprintf(socket_path, sizeof socket_path, "%s", options->socket_path);
    } else if (control_run_directory_create(err) < 0 ||
               control_socket_path(options->name, socket_path, sizeof socket_path, err) < 0) {
        return -1;
    }

    struct vm_control *control = calloc(1, sizeof *control);
    if (!control)
        return error_set(err, "out of memory");
    snprintf(control->name, sizeof control->name, "%s", options->name);
    control->created_ms = clock_monotonic_ms();
    pthread_mutex_init(&control->lock, NULL);
    pthread_cond_init(&control->operation_ended, NULL);
    control->user_paused = options->start_paused;
    control->config = options->config;
    control->published_state = VM_STATE_STARTING;

    char log_prefix[96];
    snprintf(log_prefix, sizeof log_prefix, "colo run: %s", control->name);
    int created = control_server_create(&control->server, socket_path, log_prefix, err);
    if (created == CONTROL_SERVER_IN_USE) {
        error_set(err, "a VM named %s is already running (control socket %s)", control->name, socket_path);
    } else if (created < 0 && !options->socket_path) {
        /* Most likely a run directory this user may not write to. */
        error_append(err, " (set COLO_RUN_DIR, or give --control-socket PATH)");
    }
    if (created < 0) {
        vm_control_destroy(control);
        return -1;
    }
    for (size_t i = 0; i < sizeof builtin_commands / sizeof builtin_commands[0]; i++) {
        if (control_server_register(control->server, builtin_commands[i].name, builtin_commands[i].handler, control,
                                    err) < 0) {
            vm_control_destroy(control);
            return -1;
        }
    }
    if (control_server_start(control->server, err) < 0) {
        vm_control_destroy(control);
        return -1;
    }
    *result = control;
    return 0;
}

void vm_control_destroy(struct vm_control *control)
{
    if (!control)
        return;
    pthread_mutex_lock(&control->lock);
    bool joinable = control->operation_thread_joinable;
    control->operation_thread_joinable = false;
    pthread_mutex_unlock(&control->lock);
    if (joinable)
        pthread_join(control->operation_thread, NULL);
    if (control->server) {
        pthread_mutex_lock(&control->lock);
        control->machine = NULL;
        control->ended = true;
        answer_pending_quits(control);
        publish_state(control);
        pthread_mutex_unlock(&control->lock);
        control_server_destroy(control->server);
    }
    pthread_cond_destroy(&control->operation_ended);
    pthread_mutex_destroy(&control->lock);
    free(control);
}

void vm_control_set_status_hook(struct vm_control *control, void (*hook)(void *opaque, json_t *reply), void *opaque)
{
    pthread_mutex_lock(&control->lock);
    control->status_hook = hook;
    control->status_hook_opaque = opaque;
    pthread_mutex_unlock(&control->lock);
}

void vm_control_set_save_records(struct vm_control *control, const struct vm_save_file_records *records)
{
    pthread_mutex_lock(&control->lock);
    control->save_records = records ? *records : (struct vm_save_file_records){ 0 };
    pthread_mutex_unlock(&control->lock);
}

void vm_control_set_operation_gate(struct vm_control *control,
                                   int (*gate)(void *opaque, enum vm_state state, struct error *err), void *opaque)
{
    pthread_mutex_lock(&control->lock);
    control->operation_gate = gate;
    control->operation_gate_opaque = opaque;
    pthread_mutex_unlock(&control->lock);
}
