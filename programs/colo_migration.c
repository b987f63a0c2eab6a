#include "colo_migration.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "control_client.h"
#include "live_migration.h"

/* ---- the source: the "migrate" command ---- */

struct migration_job {
    struct vm_control *control;
    char destination[300];
    struct migration_options options;
    double last_event;                  /* progress events at most every 0.1 s */
};

static double monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void post_progress(void *opaque, const struct migration_progress *progress)
{
    struct migration_job *job = opaque;
    double now = monotonic_seconds();
    bool finished_round = progress->pages_remaining == 0;
    if (!finished_round && !progress->stop_and_copy && now - job->last_event < 0.1)
        return;
    job->last_event = now;
    json_t *event = json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:f, s:b}",
                              "event", "migration",
                              "round", (int)progress->round,
                              "pages_total", (json_int_t)progress->pages_total,
                              "pages_sent", (json_int_t)progress->pages_sent,
                              "pages_remaining", (json_int_t)progress->pages_remaining,
                              "bytes_sent", (json_int_t)progress->bytes_sent,
                              "megabytes_per_second", progress->megabytes_per_second,
                              "stop_and_copy", progress->stop_and_copy);
    if (event) {
        vm_control_post_event(job->control, event);
        json_decref(event);
    }
}

static int run_migration(void *opaque, struct machine *machine, json_t *reply, bool *stop_vm, struct error *err)
{
    struct migration_job *job = opaque;
    int fd = migration_connect(job->destination, err);
    if (fd < 0)
        return -1;
    job->options.progress = post_progress;
    job->options.progress_opaque = job;
    struct migration_result result;
    int status = migration_send(machine, fd, &job->options, &result, err);
    close(fd);
    if (status < 0) {
        char message[sizeof err->message];
        snprintf(message, sizeof message, "%s", err->message);
        return error_set(err, "migration to %s failed: %s; the VM keeps running here",
                         job->destination, message);
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
    fprintf(stderr, "colo run: migrated to %s in %.2f s, downtime %.2f ms (%.2f ms to the last byte sent; %u rounds, %"
            PRIu64 " pages, %" PRIu64 " in the last)\n", job->destination, result.total_seconds,
            result.downtime_seconds * 1000, result.downtime_sent_seconds * 1000, result.rounds, result.pages_sent,
            result.final_pages);
    *stop_vm = true;                /* the VM runs at the destination now */
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
        .state = VM_STATE_MIGRATING, .pause_machine = false,
        .run = run_migration, .done = free, .opaque = job,
    };
    if (vm_control_start_operation(control, &operation, err) < 0) {
        free(job);
        return -1;
    }
    return 0;
}

int colo_migration_register(struct vm_control *control, struct error *err)
{
    return control_server_register(vm_control_server(control), "migrate", handle_migrate, control, err);
}

/* ---- the client: colo migrate ---- */

static void print_progress(const json_t *event)
{
    json_int_t total = json_integer_value(json_object_get(event, "pages_total"));
    json_int_t remaining = json_integer_value(json_object_get(event, "pages_remaining"));
    json_int_t sent = json_integer_value(json_object_get(event, "pages_sent"));
    int round = (int)json_integer_value(json_object_get(event, "round"));
    double rate = json_number_value(json_object_get(event, "megabytes_per_second"));
    bool stop = json_is_true(json_object_get(event, "stop_and_copy"));
    int width = 30;
    int filled = total > 0 ? (int)((double)(total - (remaining < total ? remaining : total)) / (double)total * width) : 0;
    if (round > 0)
        filled = width;
    fprintf(stderr, "\r[%-*.*s] round %d%s  %" JSON_INTEGER_FORMAT " pages sent, %" JSON_INTEGER_FORMAT
            " remaining  %.1f MB/s   ", width, filled, "##############################", round,
            stop ? " (stop-and-copy)" : "", sent, remaining, rate);
}

int colo_migrate_main(int argc, char **argv)
{
    double max_downtime_ms = 0;
    long max_rounds = -1;
    const char *name = NULL, *destination = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--max-downtime") == 0 && i + 1 < argc) {
            char *end;
            max_downtime_ms = strtod(argv[++i], &end);
            if (*end || max_downtime_ms <= 0) {
                fprintf(stderr, "colo migrate: --max-downtime needs milliseconds, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--max-rounds") == 0 && i + 1 < argc) {
            char *end;
            max_rounds = strtol(argv[++i], &end, 10);
            if (*end || max_rounds < 0 || max_rounds > 1000) {
                fprintf(stderr, "colo migrate: --max-rounds needs 0..1000, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "colo migrate: unknown option '%s'\n"
                    "usage: colo migrate NAME HOST:PORT [--max-downtime MS] [--max-rounds N]\n", argv[i]);
            return 2;
        } else if (!name) {
            name = argv[i];
        } else if (!destination) {
            destination = argv[i];
        } else {
            fprintf(stderr, "colo migrate: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!name || !destination) {
        fprintf(stderr, "usage: colo migrate NAME HOST:PORT [--max-downtime MS] [--max-rounds N]\n");
        return 2;
    }
    char socket_path[4096];
    struct error err;
    if (control_socket_path(name, socket_path, sizeof socket_path, &err) < 0) {
        fprintf(stderr, "colo migrate: %s\n", err.message);
        return 2;
    }
    struct control_client events, requests;
    if (control_client_connect(&events, socket_path, 5000, &err) < 0) {
        fprintf(stderr, "colo migrate: no VM named %s is running: %s\n", name, err.message);
        return 1;
    }
    json_t *subscribe = json_pack("{s:s}", "command", "subscribe"), *reply = NULL;
    int status = control_client_call(&events, subscribe, &reply, 5000, &err);
    json_decref(subscribe);
    json_decref(reply);
    if (status != CONTROL_CLIENT_OK || control_client_connect(&requests, socket_path, 5000, &err) < 0) {
        fprintf(stderr, "colo migrate: cannot talk to %s: %s\n", name, err.message);
        control_client_close(&events);
        return 1;
    }
    json_t *request = json_pack("{s:s, s:s}", "command", "migrate", "destination", destination);
    if (max_downtime_ms > 0)
        json_object_set_new(request, "max_downtime_ms", json_real(max_downtime_ms));
    if (max_rounds >= 0)
        json_object_set_new(request, "max_rounds", json_integer(max_rounds));
    status = control_client_send(&requests, request, 5000, &err);
    json_decref(request);
    int exit_status = 1;
    if (status != CONTROL_CLIENT_OK) {
        fprintf(stderr, "colo migrate: %s\n", err.message);
        goto done;
    }
    /* Show progress events until the reply to migrate arrives. */
    for (;;) {
        json_t *message = NULL;
        status = control_client_receive(&requests, &message, 100, &err);
        if (status == CONTROL_CLIENT_OK) {
            fputc('\n', stderr);
            if (json_is_true(json_object_get(message, "ok"))) {
                printf("migrated %s to %s in %.2f s: downtime %.2f ms (%.2f ms to the last byte sent), %"
                       JSON_INTEGER_FORMAT " rounds, %" JSON_INTEGER_FORMAT " pages (%" JSON_INTEGER_FORMAT
                       " while paused), %.1f MiB\n", name, destination,
                       json_number_value(json_object_get(message, "total_seconds")),
                       json_number_value(json_object_get(message, "downtime_ms")),
                       json_number_value(json_object_get(message, "downtime_sent_ms")),
                       json_integer_value(json_object_get(message, "rounds")),
                       json_integer_value(json_object_get(message, "pages_sent")),
                       json_integer_value(json_object_get(message, "final_pages")),
                       (double)json_integer_value(json_object_get(message, "bytes_sent")) / 1048576.0);
                exit_status = 0;
            } else {
                fprintf(stderr, "colo migrate: %s\n", json_string_value(json_object_get(message, "error")));
            }
            json_decref(message);
            break;
        }
        if (status != CONTROL_CLIENT_TIMEOUT) {
            fprintf(stderr, "\ncolo migrate: lost the connection to %s%s%s\n", name,
                    status == CONTROL_CLIENT_ERROR ? ": " : "", status == CONTROL_CLIENT_ERROR ? err.message : "");
            break;
        }
        while (control_client_receive(&events, &message, 0, &err) == CONTROL_CLIENT_OK) {
            const char *kind = json_string_value(json_object_get(message, "event"));
            if (kind && strcmp(kind, "migration") == 0)
                print_progress(message);
            json_decref(message);
        }
    }
done:
    control_client_close(&requests);
    control_client_close(&events);
    return exit_status;
}

/* ---- the destination ---- */

int colo_migration_receive(struct machine *machine, const char *address, const char *name, struct error *err)
{
    int listener = migration_listen(address, err);
    if (listener < 0)
        return -1;
    fprintf(stderr, "colo receive: %s: waiting for a migration on %s\n", name, address);
    int fd = migration_accept(listener, err);
    close(listener);
    if (fd < 0)
        return -1;
    double started = monotonic_seconds();
    int status = migration_receive(machine, fd, err);
    close(fd);
    if (status < 0) {
        char message[sizeof err->message];
        snprintf(message, sizeof message, "%s", err->message);
        return error_set(err, "incoming migration failed: %s (the source VM keeps running there)", message);
    }
    for (unsigned i = 0; i < machine_nic_count(machine); i++)
        virtio_net_announce(machine_nic(machine, i));
    fprintf(stderr, "colo receive: %s: received in %.2f s; running here now\n", name, monotonic_seconds() - started);
    return 0;
}
