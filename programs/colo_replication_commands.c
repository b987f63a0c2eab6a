/* The client side of COLO: `colo protect`, `colo checkpoint` and `colo
 * failover` send their command to the VM's control socket. */
#include "colo_replication_commands.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control_client.h"
#include "vm_replication.h"

/* ---- the clients ---- */

static int call_vm(const char *program, const char *name, json_t *request, json_t **reply)
{
    char socket_path[4096];
    struct error err;
    if (control_socket_path(name, socket_path, sizeof socket_path, &err) < 0) {
        fprintf(stderr, "%s: %s\n", program, err.message);
        return 2;
    }
    struct control_client client;
    if (control_client_connect(&client, socket_path, 5000, &err) < 0) {
        fprintf(stderr, "%s: no VM named %s is running: %s\n", program, name, err.message);
        return 1;
    }
    int status = control_client_call(&client, request, reply, 15000, &err);
    control_client_close(&client);
    if (status != CONTROL_CLIENT_OK) {
        fprintf(stderr, "%s: %s\n", program, status == CONTROL_CLIENT_ERROR ? err.message : "no answer");
        return 1;
    }
    if (!json_is_true(json_object_get(*reply, "ok"))) {
        fprintf(stderr, "%s: %s\n", program, json_string_value(json_object_get(*reply, "error")));
        return 1;
    }
    return 0;
}

int colo_protect_main(int argc, char **argv)
{
    const char *name = NULL, *destination = NULL;
    long interval_ms = -1, output_delay_ms = -1, heartbeat_timeout_ms = -1;
    const char *usage = "usage: colo protect NAME HOST:PORT [--interval MS] [--output-delay MS] "
                        "[--heartbeat-timeout MS]\n";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--heartbeat-timeout") == 0 && i + 1 < argc) {
            char *end;
            heartbeat_timeout_ms = strtol(argv[++i], &end, 10);
            if (*end || !*argv[i] || heartbeat_timeout_ms < 0 || heartbeat_timeout_ms > 3600000) {
                fprintf(stderr, "colo protect: --heartbeat-timeout needs 0..3600000 ms, got '%s'\n", argv[i]);
                return 2;
            }
        } else if ((strcmp(argv[i], "--interval") == 0 || strcmp(argv[i], "--output-delay") == 0) && i + 1 < argc) {
            bool interval = strcmp(argv[i], "--interval") == 0;
            char *end;
            long value = strtol(argv[++i], &end, 10);
            if (*end || !*argv[i] || value < (interval ? 1 : 0) || value > 600000) {
                fprintf(stderr, "colo protect: %s needs %s..600000 ms, got '%s'\n", argv[i - 1], interval ? "1" : "0",
                        argv[i]);
                return 2;
            }
            *(interval ? &interval_ms : &output_delay_ms) = value;
        } else if (argv[i][0] == '-' || (name && destination)) {
            fprintf(stderr, "colo protect: unexpected '%s'\n%s", argv[i], usage);
            return 2;
        } else if (!name) {
            name = argv[i];
        } else {
            destination = argv[i];
        }
    }
    if (!name || !destination) {
        fputs(usage, stderr);
        return 2;
    }
    json_t *request = json_pack("{s:s, s:s}", "command", "protect", "destination", destination), *reply = NULL;
    if (interval_ms > 0)
        json_object_set_new(request, "interval_ms", json_integer(interval_ms));
    if (output_delay_ms >= 0)
        json_object_set_new(request, "output_delay_ms", json_integer(output_delay_ms));
    if (heartbeat_timeout_ms >= 0)
        json_object_set_new(request, "heartbeat_timeout_ms", json_integer(heartbeat_timeout_ms));
    int status = call_vm("colo protect", name, request, &reply);
    json_decref(request);
    if (status == 0)
        printf("protecting %s with the secondary at %s (checkpoint at least every %" JSON_INTEGER_FORMAT
               " ms, and within %" JSON_INTEGER_FORMAT " ms of held output); `colo status %s` shows the "
               "replication\n",
               name, destination, json_integer_value(json_object_get(reply, "interval_ms")),
               json_integer_value(json_object_get(reply, "output_delay_ms")), name);
    const char *cluster = status == 0 ? json_string_value(json_object_get(reply, "cluster")) : NULL;
    if (status == 0 && (!cluster || strcmp(cluster, "corosync") != 0))
        fprintf(stderr,
                "colo protect: WARNING: %s runs without a cluster (colo run/secondary --cluster corosync): "
                "if the replication link fails while both hosts live, both copies may serve (split brain)\n",
                name);
    json_decref(reply);
    return status;
}

int colo_checkpoint_main(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: colo checkpoint NAME   (on the primary's host)\n");
        return 2;
    }
    json_t *request = json_pack("{s:s}", "command", "checkpoint"), *reply = NULL;
    int status = call_vm("colo checkpoint", argv[0], request, &reply);
    json_decref(request);
    if (status == 0) {
        json_t *report = json_object_get(reply, "checkpoint");
        printf("checkpoint %" JSON_INTEGER_FORMAT " of %s: %" JSON_INTEGER_FORMAT " dirty pages, %.1f KiB, "
               "PVM paused %.2f ms (secondary suspending %.2f, sending %.2f, secondary applying %.2f, "
               "resuming %.2f)\n",
               json_integer_value(json_object_get(report, "number")), argv[0],
               json_integer_value(json_object_get(report, "dirty_pages")),
               (double)json_integer_value(json_object_get(report, "bytes")) / 1024,
               json_number_value(json_object_get(report, "downtime_ms")),
               json_number_value(json_object_get(report, "suspend_ms")),
               json_number_value(json_object_get(report, "send_ms")),
               json_number_value(json_object_get(report, "apply_ms")),
               json_number_value(json_object_get(report, "resume_ms")));
    }
    json_decref(reply);
    return status;
}

int colo_failover_main(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: colo failover NAME   (on the secondary's host)\n");
        return 2;
    }
    json_t *request = json_pack("{s:s}", "command", "failover"), *reply = NULL;
    int status = call_vm("colo failover", argv[0], request, &reply);
    json_decref(request);
    json_decref(reply);
    if (status == 0)
        printf("%s failed over: it runs here now\n", argv[0]);
    return status;
}

/* ---- the pair's credentials ---- */

int colo_keygen_main(int argc, char **argv)
{
    const char *usage = "usage: colo keygen psk FILE [--identity NAME]\n"
                        "Writes a new pre-shared key for a replication pair (mode 0600; an existing\n"
                        "file is never overwritten): IDENTITY:HEXKEY, the format of GnuTLS's psktool.\n"
                        "Copy it to both hosts and name it in both VM.cfg files:\n"
                        "    replication_auth = \"psk\"\n"
                        "    replication_psk = \"FILE\"\n"
                        "Certificates: see docs/security.md (GnuTLS's certtool).\n";
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[0], "psk") != 0) {
        fprintf(stderr, "colo keygen: expected 'psk FILE'\n%s", usage);
        return 2;
    }
    const char *path = argv[1], *identity = "colo";
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--identity") == 0 && i + 1 < argc) {
            identity = argv[++i];
        } else {
            fprintf(stderr, "colo keygen: unexpected '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    struct error err;
    if (vm_replication_generate_psk(path, identity, &err) < 0) {
        fprintf(stderr, "colo keygen: %s\n", err.message);
        return 1;
    }
    printf("wrote a pre-shared key of identity %s to %s\n", identity, path);
    return 0;
}
