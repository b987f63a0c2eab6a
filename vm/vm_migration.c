/* Live migration of one VM: the server side of the "migrate" command (the
 * source) and the receiving side of `colo receive` (the destination). The
 * stream and the rounds are stream/live_migration.c's; with "copy_disks"
 * the disks go along, as the migration's companion (disk/disk_sync.h). */
#include "vm_migration.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "disk_sync.h"
#include "live_migration.h"
#include "machine.h"
#include "socket.h"
#include "stream.h"
#include "vm_replication.h"

/* ---- the source: the "migrate" command ---- */

struct migration_job {
    struct vm_control *control;
    struct vm_replication *replication;
    char destination[300];
    bool copy_disks;
    struct migration_options options;
    double last_event; /* progress events at most every 0.1 s */
    /* With copy_disks, from disk_sync_source_init until after the
     * migration: the RAM's progress events carry its progress, and the
     * sync's own progress calls post it before the RAM moves (the full
     * compare and the first dirty rounds). */
    struct disk_sync_source *disk_sync;
};

/* The disk sync's part of a progress event. */
static void add_disk_progress(struct migration_job *job, json_t *event)
{
    if (!job->disk_sync)
        return;
    struct disk_sync_progress progress;
    disk_sync_source_get_progress(job->disk_sync, &progress);
    json_object_set_new(event, "disk_bytes_total", json_integer((json_int_t)progress.bytes_total));
    json_object_set_new(event, "disk_bytes_compared", json_integer((json_int_t)progress.bytes_compared));
    json_object_set_new(event, "disk_bytes_sent", json_integer((json_int_t)progress.bytes_sent));
    json_object_set_new(event, "disk_compared", json_boolean(progress.compared));
}

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
        add_disk_progress(job, event);
        vm_control_post_event(job->control, event);
        json_decref(event);
    }
}

/* The disks' full compare and first dirty rounds run before the RAM's
 * first page, so no RAM progress comes meanwhile: the sync reports its
 * own (disk_sync_source.on_progress, on the migrating thread), posted at
 * most every 0.1 s and when the compare is done. */
static void post_disk_progress(void *opaque)
{
    struct migration_job *job = opaque;
    double now = clock_monotonic_seconds();
    struct disk_sync_progress progress;
    disk_sync_source_get_progress(job->disk_sync, &progress);
    if (!progress.compared && now - job->last_event < 0.1)
        return;
    job->last_event = now;
    json_t *event = json_pack("{s:s, s:s}", "event", "migration", "phase", "disks");
    if (event) {
        add_disk_progress(job, event);
        vm_control_post_event(job->control, event);
        json_decref(event);
    }
}

/* Takes the disks' wrappers out again; the machine is paused around it
 * (it already is after a migration that succeeded). */
static void destroy_disk_sync(struct migration_job *job, struct machine *machine)
{
    machine_pause(machine);
    disk_sync_source_destroy(job->disk_sync);
    machine_resume(machine);
    free(job->disk_sync);
    job->disk_sync = NULL;
}

static int run_migration(void *opaque, struct machine *machine, json_t *reply, bool *stop_vm, struct error *err)
{
    struct migration_job *job = opaque;
    int fd = socket_connect(job->destination, err);
    if (fd < 0)
        return -1;
    job->options.progress = post_progress;
    job->options.progress_opaque = job;
    job->options.stop_and_copy_records = vm_replication_save_shifted_connections;
    job->options.stop_and_copy_opaque = job->replication;
    if (job->copy_disks) {
        job->disk_sync = calloc(1, sizeof *job->disk_sync);
        if (!job->disk_sync) {
            close(fd);
            return error_set(err, "out of memory");
        }
        /* The wrappers go in with the VM paused, so no write slips past
         * the dirty log. */
        machine_pause(machine);
        int status = disk_sync_source_init(job->disk_sync, machine, NULL, err);
        machine_resume(machine);
        if (status < 0) {
            free(job->disk_sync);
            job->disk_sync = NULL;
            close(fd);
            error_prefix(err, "migration to %s failed: ", job->destination);
            return error_append(err, "; the VM keeps running here");
        }
        job->options.companion = disk_sync_source_companion(job->disk_sync);
        job->disk_sync->on_progress = post_disk_progress;
        job->disk_sync->on_progress_opaque = job;
    }
    struct migration_result result;
    int status = migration_send(machine, fd, &job->options, &result, err);
    close(fd);
    struct disk_sync_progress disks = { 0 };
    if (job->disk_sync) {
        disk_sync_source_get_progress(job->disk_sync, &disks);
        destroy_disk_sync(job, machine);
    }
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
    char disk_summary[200] = "";
    if (job->copy_disks) {
        json_object_set_new(reply, "disk_bytes_total", json_integer((json_int_t)disks.bytes_total));
        json_object_set_new(reply, "disk_bytes_compared", json_integer((json_int_t)disks.bytes_compared));
        json_object_set_new(reply, "disk_chunks_differing", json_integer((json_int_t)disks.chunks_differing));
        json_object_set_new(reply, "disk_bytes_sent", json_integer((json_int_t)disks.bytes_sent));
        json_object_set_new(reply, "disk_dirty_rounds", json_integer((json_int_t)disks.dirty_rounds));
        json_object_set_new(reply, "disk_final_blocks", json_integer((json_int_t)disks.final_blocks));
        snprintf(disk_summary, sizeof disk_summary,
                 "; disks: %" PRIu64 " of %" PRIu64 " bytes compared, %" PRIu64 " bytes sent", disks.bytes_compared,
                 disks.bytes_total, disks.bytes_sent);
    }
    fprintf(stderr,
            "colo run: migrated to %s in %.2f s, downtime %.2f ms (%.2f ms to the last byte sent; %u rounds, %" PRIu64
            " pages, %" PRIu64 " in the last)%s\n",
            job->destination, result.total_seconds, result.downtime_seconds * 1000, result.downtime_sent_seconds * 1000,
            result.rounds, result.pages_sent, result.final_pages, disk_summary);
    *stop_vm = true; /* the VM runs at the destination now */
    return 0;
}

static int handle_migrate(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)reply;
    struct vm_migration_source *source = opaque;
    struct vm_control *control = source->control;
    const char *destination = json_string_value(json_object_get(request, "destination"));
    if (!destination || !*destination)
        return error_set(err, "migrate needs \"destination\": \"HOST:PORT\"");
    struct migration_job *job = calloc(1, sizeof *job);
    if (!job)
        return error_set(err, "out of memory");
    job->control = control;
    job->replication = source->replication;
    json_t *copy_disks = json_object_get(request, "copy_disks");
    if (copy_disks && !json_is_boolean(copy_disks)) {
        free(job);
        return error_set(err, "\"copy_disks\" must be true or false");
    }
    job->copy_disks = json_is_true(copy_disks);
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

int vm_migration_register(struct vm_migration_source *source, struct error *err)
{
    return control_server_register(vm_control_server(source->control), "migrate", handle_migrate, source, err);
}

/* ---- the destination ---- */

/* The migration itself, on the accepted connection: with copy_disks a
 * reader of our own, so the disks' sync can be its companion. */
static int receive_migration(struct machine *machine, int fd, bool copy_disks, struct disk_sync_destination *disks,
                             struct vm_replication *replication, int *shifted, struct error *err)
{
    const struct migration_companion *companion = NULL;
    if (copy_disks) {
        disk_sync_destination_init(disks, machine);
        companion = disk_sync_destination_companion(disks);
    }
    struct stream_reader reader;
    if (stream_reader_init(&reader, fd, err) < 0)
        return -1;
    int status = migration_receive_with_companion(machine, &reader, companion, err);
    if (status == 0) {
        /* The source stops its VM on our acknowledgement: a table we
         * cannot take costs those connections, never the VM. */
        struct error cause = { "" };
        *shifted = vm_replication_take_shifted_connections(replication, machine, &reader, &cause);
        if (*shifted < 0)
            fprintf(stderr, "colo receive: the survivor's shifted TCP connections were not taken (%s): they break\n",
                    cause.message);
    }
    stream_reader_destroy(&reader);
    return status;
}

int vm_migration_receive(struct machine *machine, const char *address, const char *name, bool copy_disks,
                         struct vm_replication *replication, struct error *err)
{
    int listener = socket_listen(address, err);
    if (listener < 0)
        return -1;
    fprintf(stderr, "colo receive: %s: waiting for a migration%s on %s\n", name, copy_disks ? " with its disks" : "",
            address);
    int fd = socket_accept(listener, err);
    close(listener);
    if (fd < 0)
        return -1;
    double started = clock_monotonic_seconds();
    struct disk_sync_destination disks = { 0 };
    int shifted = 0;
    int status = receive_migration(machine, fd, copy_disks, &disks, replication, &shifted, err);
    close(fd);
    if (status < 0) {
        error_prefix(err, "incoming migration failed: ");
        return error_append(err, " (the source VM keeps running there)");
    }
    for (unsigned i = 0; i < machine_nic_count(machine); i++)
        virtio_net_announce(machine_nic(machine, i));
    char disk_summary[200] = "";
    if (copy_disks)
        snprintf(disk_summary, sizeof disk_summary,
                 " (disks: %" PRIu64 " bytes hashed, %" PRIu64 " bytes written in %" PRIu64 " writes)",
                 disks.bytes_hashed, disks.bytes_written, disks.writes);
    char shift_summary[120] = "";
    if (shifted > 0)
        snprintf(shift_summary, sizeof shift_summary,
                 "; %d TCP connection(s) shifted as on the source (since its failover)", shifted);
    fprintf(stderr, "colo receive: %s: received in %.2f s%s; running here now%s\n", name,
            clock_monotonic_seconds() - started, disk_summary, shift_summary);
    return 0;
}
