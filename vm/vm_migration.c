/* Live migration of one VM: the server side of the "migrate" command (the
 * source) and the receiving side of `colo receive` (the destination). The
 * stream and the rounds are stream/live_migration.c's. */
#include "vm_migration.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "live_migration.h"
#include "machine.h"
#include "socket.h"

/* ---- the source: the "migrate" command ---- */

struct migration_job {
    struct vm_control *control;
    char destination[300];
    struct migration_options options;
    double last_event; /* progress events at most every 0.1 s */
};

static void post_progress(void *opaque, const struct migration_progress *progress)
{
    struct migration_job *job = opaque;
    double now = clock_monotonic_seconds();
    bool finished_round = progress->pages_remaining == 0;
    if (!finished_round && !progress->stop_and_copy && now - job->last_event < 0.1)
        return;
    job->last_event = now;
    json_t *event = json_pack(
        "{s:s, s:i, s:I, s:I, s:I, s:I, s:f, s:b}", "event", "migration", "round", (int)progress->round, "pages_total",
        (json_int_t)progress->pages_total, "pages_sent", (json_int_t)progress->pages_sent, "pages_remaining",
        (json_int_t)progress->pages_remaining, "bytes_sent", (json_int_t)progress->bytes_sent, "megabytes_per_second",
        progress->megabytes_per_second, "stop_and_copy", progress->stop_and_copy);
    if (event) {
        vm_control_post_event(job->control, event);
        json_decref(event);
    }
}

static int run_migration(void *opaque, struct machine *machine, json_t *reply, bool *stop_vm, struct error *err)
{
    struct migration_job *job = opaque;
    int fd = socket_connect(job->destination, err);
    if (fd < 0)
        return -1;
    job->options.progress = post_progress;
    job->options.progress_opaque = job;
    struct migration_result result;
    int status = migration_send(machine, fd, &job->options, &result, err);
    close(fd);
    if (status < 0) {
        error_prefix(err, "migration to %s failed: ", job->destination);
        return error_append(err, "; the VM keeps running here");
    }
    json_object_set_new(reply, "destination", json_string(job->destination));
    json_object_set_new(reply, "rounds", json_integer(result.rounds));
    json_object_set_new(reply, "pages_sent", json_integer((json_int_t)result.pages_sent));
    json_object_set_new(reply, "bytes_sent", json_integer((json_int_t)result.bytes_sent));
    json_object_set_new(reply, "final_pages", json_integer((json_int_t)result.final_pages));
    json_object_set_new(reply, "stop_retries", json_integer(result.stop_retries));
    json_object_set_new(reply, "total_seconds", json_real(result.total_seconds));
    json_object_set_new(reply, "downtime_ms", json_real(result.downtime_seconds * 1000));
    json_object_set_new(reply, "downtime_sent_ms", json_real(result.downtime_sent_seconds * 1000));
    fprintf(stderr,
            "colo run: migrated to %s in %.2f s, downtime %.2f ms (%.2f ms to the last byte sent; %u rounds, %" PRIu64
            " pages, %" PRIu64 " in the last)\n",
            job->destination, result.total_seconds, result.downtime_seconds * 1000, result.downtime_sent_seconds * 1000,
            result.rounds, result.pages_sent, result.final_pages);
    *stop_vm = true; /* the VM runs at the destination now */
    return 0;
}

static int handle_migrate(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)reply;
    struct vm_control *control = opaque;
    const char *destination = json_string_value(json_object_get(request, "destination"));
    if (!destination || !*destination)
        return error_set(err, "migrate needs \"destination\": \"HOST:PORT\"");
    struct migration_job *job = calloc(1, sizeof *job);
    if (!job)
        return error_set(err, "out of memory");
    job->control = control;
    snprintf(job->destination, sizeof job->destination, "%s", destination);
    migration_options_defaults(&job->options);
    json_t *downtime = json_object_get(request, "max_downtime_ms");
    if (downtime) {
        if (!json_is_number(downtime) || json_number_value(downtime) <= 0) {
            free(job);
            return error_set(err, "\"max_downtime_ms\" must be a positive number");
        }
        job->options.max_downtime_microseconds = (uint64_t)(json_number_value(downtime) * 1000);
    }
    json_t *rounds = json_object_get(request, "max_rounds");
    if (rounds) {
        if (!json_is_integer(rounds) || json_integer_value(rounds) < 0 || json_integer_value(rounds) > 1000) {
            free(job);
            return error_set(err, "\"max_rounds\" must be a whole number from 0 to 1000");
        }
        job->options.max_rounds = (unsigned)json_integer_value(rounds);
    }
    struct vm_operation operation = {
        .state = VM_STATE_MIGRATING,
        .pause_machine = false,
        .run = run_migration,
        .done = free,
        .opaque = job,
    };
    if (vm_control_start_operation(control, &operation, err) < 0) {
        free(job);
        return -1;
    }
    return 0;
}

int vm_migration_register(struct vm_control *control, struct error *err)
{
    return control_server_register(vm_control_server(control), "migrate", handle_migrate, control, err);
}

/* ---- the destination ---- */

int vm_migration_receive(struct machine *machine, const char *address, const char *name, struct error *err)
{
    int listener = socket_listen(address, err);
    if (listener < 0)
        return -1;
    fprintf(stderr, "colo receive: %s: waiting for a migration on %s\n", name, address);
    int fd = socket_accept(listener, err);
    close(listener);
    if (fd < 0)
        return -1;
    double started = clock_monotonic_seconds();
    int status = migration_receive(machine, fd, err);
    close(fd);
    if (status < 0) {
        error_prefix(err, "incoming migration failed: ");
        return error_append(err, " (the source VM keeps running there)");
    }
    for (unsigned i = 0; i < machine_nic_count(machine); i++)
        virtio_net_announce(machine_nic(machine, i));
    fprintf(stderr, "colo receive: %s: received in %.2f s; running here now\n", name,
            clock_monotonic_seconds() - started);
    return 0;
}
