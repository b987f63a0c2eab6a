/* `colo migrate` (colo_migration.h). */
#include "colo_migration.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control_client.h"

/* ---- the client: colo migrate ---- */

static double mebibytes(const json_t *event, const char *key)
{
    return (double)json_integer_value(json_object_get(event, key)) / 1048576.0;
}

static void print_progress(const json_t *event)
{
    /* With --copy-disks: the disks' full compare comes first (events of
     * the "disks" phase), then their bytes sent go on with the RAM's
     * rounds. */
    bool disks = json_object_get(event, "disk_bytes_total") != NULL;
    const char *phase = json_string_value(json_object_get(event, "phase"));
    if (disks && phase && strcmp(phase, "disks") == 0) {
        fprintf(stderr, "\rdisks: %.1f of %.1f MiB compared, %.1f MiB sent   ", mebibytes(event, "disk_bytes_compared"),
                mebibytes(event, "disk_bytes_total"), mebibytes(event, "disk_bytes_sent"));
        return;
    }
    json_int_t total = json_integer_value(json_object_get(event, "pages_total"));
    json_int_t remaining = json_integer_value(json_object_get(event, "pages_remaining"));
    json_int_t sent = json_integer_value(json_object_get(event, "pages_sent"));
    int round = (int)json_integer_value(json_object_get(event, "round"));
    double rate = json_number_value(json_object_get(event, "megabytes_per_second"));
    bool stop = json_is_true(json_object_get(event, "stop_and_copy"));
    int width = 30;
    int filled = total > 0 ? (int)((double)(total - (remaining < total ? remaining : total)) / (double)total * width)
                           : 0;
    if (round > 0)
        filled = width;
    fprintf(
        stderr,
        "\r[%-*.*s] round %d%s  %" JSON_INTEGER_FORMAT " pages sent, %" JSON_INTEGER_FORMAT " remaining  %.1f MB/s   ",
        width, filled, "##############################", round, stop ? " (stop-and-copy)" : "", sent, remaining, rate);
    if (disks)
        fprintf(stderr, "disks: %.1f MiB sent   ", mebibytes(event, "disk_bytes_sent"));
}

int colo_migrate_main(int argc, char **argv)
{
    double max_downtime_ms = 0;
    long max_rounds = -1;
    bool copy_disks = false;
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
        } else if (strcmp(argv[i], "--copy-disks") == 0) {
            copy_disks = true;
        } else if (argv[i][0] == '-') {
            fprintf(stderr,
                    "colo migrate: unknown option '%s'\n"
                    "usage: colo migrate NAME HOST:PORT [--max-downtime MS] [--max-rounds N] [--copy-disks]\n",
                    argv[i]);
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
        fprintf(stderr, "usage: colo migrate NAME HOST:PORT [--max-downtime MS] [--max-rounds N] [--copy-disks]\n");
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
    if (copy_disks)
        json_object_set_new(request, "copy_disks", json_true());
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
                printf("migrated %s to %s in %.2f s: downtime %.2f ms (%.2f ms to the last byte sent), "
                       "%" JSON_INTEGER_FORMAT " rounds, %" JSON_INTEGER_FORMAT " pages (%" JSON_INTEGER_FORMAT
                       " while paused), %.1f MiB\n",
                       name, destination, json_number_value(json_object_get(message, "total_seconds")),
                       json_number_value(json_object_get(message, "downtime_ms")),
                       json_number_value(json_object_get(message, "downtime_sent_ms")),
                       json_integer_value(json_object_get(message, "rounds")),
                       json_integer_value(json_object_get(message, "pages_sent")),
                       json_integer_value(json_object_get(message, "final_pages")),
                       (double)json_integer_value(json_object_get(message, "bytes_sent")) / 1048576.0);
                if (json_object_get(message, "disk_bytes_total"))
                    printf("disks of %s: %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT
                           " bytes compared (%" JSON_INTEGER_FORMAT " chunks differing), %" JSON_INTEGER_FORMAT
                           " bytes sent (%" JSON_INTEGER_FORMAT " dirty rounds, %" JSON_INTEGER_FORMAT
                           " blocks while paused)\n",
                           name, json_integer_value(json_object_get(message, "disk_bytes_compared")),
                           json_integer_value(json_object_get(message, "disk_bytes_total")),
                           json_integer_value(json_object_get(message, "disk_chunks_differing")),
                           json_integer_value(json_object_get(message, "disk_bytes_sent")),
                           json_integer_value(json_object_get(message, "disk_dirty_rounds")),
                           json_integer_value(json_object_get(message, "disk_final_blocks")));
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
