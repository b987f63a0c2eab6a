/* The client side of COLO: `colo protect`, `colo checkpoint` and `colo
 * failover` send their command to the VM's control socket. */
#include "colo_replication_commands.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "control_client.h"
#include "vm_replication.h"

/* ---- the clients ---- */

static int call_vm_within(const char *program, const char *name, json_t *request, json_t **reply, int timeout_ms);

static int call_vm(const char *program, const char *name, json_t *request, json_t **reply)
{
    return call_vm_within(program, name, request, reply, 15000);
}

static int call_vm_within(const char *program, const char *name, json_t *request, json_t **reply, int timeout_ms)
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
    int status = control_client_call(&client, request, reply, timeout_ms, &err);
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

static const char protect_usage[] =
    "usage: colo protect NAME HOST:PORT [--mode compare|buffered] [--compare-timeout MS] [--interval MS]\n"
    "                    [--output-delay MS] [--heartbeat-timeout MS] [--connect-timeout MS]\n"
    "                    [--wait-timeout MS | --no-wait] [--follow]\n";

static const char protect_help[] = "\n"
                                   "Makes the running VM NAME the COLO primary of the `colo secondary` waiting\n"
                                   "at HOST:PORT, and waits until the initial copy has started: the secondary\n"
                                   "took the connection and accepted the machine (same RAM, devices, disk\n"
                                   "sizes, NIC MACs). The copy and the checkpoints then go on in the VM's\n"
                                   "process; `colo status NAME` and `colo events NAME` follow them.\n"
                                   "\n"
                                   "  --mode compare          (default) a reply leaves as soon as the secondary's\n"
                                   "                          VM sent the same; a difference asks for a checkpoint\n"
                                   "  --mode buffered         every reply waits for the next checkpoint\n"
                                   "  --compare-timeout MS    compare: a reply without its twin after MS asks for a\n"
                                   "                          checkpoint (default 5)\n"
                                   "  --interval MS           a checkpoint at least every MS (default 1000 in\n"
                                   "                          compare mode, 100 in buffered mode)\n"
                                   "  --output-delay MS       buffered: held output asks for a checkpoint within MS\n"
                                   "                          (default 0)\n"
                                   "  --heartbeat-timeout MS  how long the primary waits for a silent secondary\n"
                                   "                          (default 200; 5000 without a cluster)\n"
                                   "  --connect-timeout MS    each connection to the secondary within MS (default\n"
                                   "                          10000): a host that drops packets is \"timed out\"\n"
                                   "  --wait-timeout MS       wait at most MS for the initial copy to start (default\n"
                                   "                          30000; 0: for ever)\n"
                                   "  --no-wait               return once the VM took the request, as before\n"
                                   "  --follow                then show the disks' sync as a progress bar (plain\n"
                                   "                          lines when not on a terminal) until protected\n"
                                   "\n"
                                   "exit status:\n"
                                   "  0  the initial copy has started (with --no-wait: the request was taken)\n"
                                   "  1  protection failed, and why is printed: the connection was refused,\n"
                                   "     the host is unreachable, the connection timed out, the secondary\n"
                                   "     refused the machine (it names the difference: RAM, disk, NIC, ...),\n"
                                   "     the request was refused, or no VM NAME runs; the VM runs on unprotected\n"
                                   "  2  usage error\n"
                                   "  3  the initial copy had not started within --wait-timeout; the VM goes on\n"
                                   "     trying (`colo status NAME`)\n";

/* A whole number of milliseconds from min to max, or -1 (after saying so). */
static long parse_milliseconds(const char *option, const char *text, long min, long max)
{
    char *end;
    long value = strtol(text, &end, 10);
    if (*end || !*text || value < min || value > max) {
        fprintf(stderr, "colo protect: %s needs %ld..%ld ms, got '%s'\n", option, min, max, text);
        return -1;
    }
    return value;
}

static const char *replication_text(const json_t *replication, const char *field)
{
    const char *text = json_string_value(json_object_get(replication, field));
    return text ? text : "";
}

/* Polls the VM's status until the primary says the initial copy started
 * (0), or that the protection ended (1, the reason printed), or wait_ms
 * passed (3). The VM's control thread never waits for the connection:
 * this client does, so status keeps answering meanwhile. */
static int wait_for_initial_copy(const char *name, const char *destination, long wait_ms)
{
    char socket_path[4096];
    struct error err;
    struct control_client client;
    if (control_socket_path(name, socket_path, sizeof socket_path, &err) < 0 ||
        control_client_connect(&client, socket_path, 5000, &err) < 0) {
        fprintf(stderr, "colo protect: %s: cannot follow the protection: %s\n", name, err.message);
        return 1;
    }
    json_t *request = json_pack("{s:s}", "command", "status");
    uint64_t started = clock_monotonic_ms();
    char state[64] = "connecting";
    int result = -1, unexplained_ends = 0;
    while (result < 0) {
        json_t *reply = NULL;
        int called = control_client_call(&client, request, &reply, 5000, &err);
        if (called != CONTROL_CLIENT_OK) {
            fprintf(stderr, "colo protect: %s: %s while waiting for the initial copy to %s\n", name,
                    called == CONTROL_CLIENT_ERROR ? err.message : "the VM stopped answering", destination);
            result = 1;
            break;
        }
        const json_t *replication = json_object_get(reply, "replication");
        snprintf(state, sizeof state, "%s", replication_text(replication, "state"));
        const char *ended = replication_text(replication, "ended");
        const char *vm_state = json_string_value(json_object_get(reply, "state"));
        if (json_is_true(json_object_get(replication, "initial_copy_started")) || strcmp(state, "RUNNING") == 0 ||
            strcmp(state, "CHECKPOINTING") == 0) {
            result = 0;
        } else if (strcmp(state, "unprotected") == 0 || strcmp(state, "stood down") == 0) {
            /* The reason follows the state by a moment. */
            if (*ended || ++unexplained_ends > 20) {
                fprintf(stderr, "colo protect: %s: protection with %s failed: %s\n", name, destination,
                        *ended ? ended : state);
                result = 1;
            }
        } else if (vm_state && (strcmp(vm_state, "stopped") == 0 || strcmp(vm_state, "stopping") == 0)) {
            fprintf(stderr, "colo protect: %s: the VM ended before the initial copy to %s started\n", name,
                    destination);
            result = 1;
        } else if (wait_ms > 0 && clock_monotonic_ms() - started >= (uint64_t)wait_ms) {
            fprintf(stderr,
                    "colo protect: %s: the initial copy to %s has not started within %.1f s (state %s); the VM "
                    "goes on trying: see `colo status %s`\n",
                    name, destination, (double)wait_ms / 1000, state, name);
            result = 3;
        }
        json_decref(reply);
        if (result < 0)
            clock_sleep_ms(50);
    }
    json_decref(request);
    control_client_close(&client);
    return result;
}

/* One progress line: "[#########...........]  45%  7.2 of 16.0 MiB (disk 0 hashes)". */
static void print_disk_sync(const json_t *sync, bool terminal)
{
    double percent = json_number_value(json_object_get(sync, "percent"));
    double planned = (double)json_integer_value(json_object_get(sync, "bytes_planned")) / (1 << 20);
    double done = (double)json_integer_value(json_object_get(sync, "bytes_done")) / (1 << 20);
    char bar[21];
    int filled = (int)(percent / 5);
    for (int i = 0; i < 20; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[20] = '\0';
    printf("%s[%s] %3.0f%%  %.1f of %.1f MiB (", terminal ? "\r" : "", bar, percent, done, planned);
    const json_t *modes = json_object_get(sync, "modes");
    for (size_t i = 0; i < json_array_size(modes); i++)
        printf("%sdisk %zu %s", i ? ", " : "", i, json_string_value(json_array_get(modes, i)));
    printf(")%s", terminal ? "" : "\n");
    fflush(stdout);
}

/* --follow: the disks' sync until the loop runs (0) or the protection
 * ended (1). Every 0.2 s on a terminal; otherwise a line per 10 %. */
static int follow_protection(const char *name)
{
    char socket_path[4096];
    struct error err;
    struct control_client client;
    if (control_socket_path(name, socket_path, sizeof socket_path, &err) < 0 ||
        control_client_connect(&client, socket_path, 5000, &err) < 0) {
        fprintf(stderr, "colo protect: %s: cannot follow the protection: %s\n", name, err.message);
        return 1;
    }
    bool terminal = isatty(STDOUT_FILENO);
    json_t *request = json_pack("{s:s}", "command", "status");
    int result = -1, last_tenth = -1;
    while (result < 0) {
        json_t *reply = NULL;
        if (control_client_call(&client, request, &reply, 5000, &err) != CONTROL_CLIENT_OK) {
            fprintf(stderr, "%scolo protect: %s: the VM stopped answering\n", terminal ? "\n" : "", name);
            result = 1;
            break;
        }
        const json_t *replication = json_object_get(reply, "replication");
        const char *state = replication_text(replication, "state");
        const json_t *sync = json_object_get(replication, "disk_sync");
        if (sync) {
            int tenth = (int)(json_number_value(json_object_get(sync, "percent")) / 10);
            if (terminal || tenth != last_tenth)
                print_disk_sync(sync, terminal);
            last_tenth = tenth;
        }
        if (strcmp(state, "RUNNING") == 0 || strcmp(state, "CHECKPOINTING") == 0) {
            printf("%sprotected: the initial copy is done, checkpoints run\n", terminal ? "\n" : "");
            result = 0;
        } else if (strcmp(state, "unprotected") == 0 || strcmp(state, "stood down") == 0) {
            fprintf(stderr, "%scolo protect: %s: the protection ended: %s\n", terminal ? "\n" : "", name,
                    replication_text(replication, "ended"));
            result = 1;
        }
        json_decref(reply);
        if (result < 0)
            clock_sleep_ms(200);
    }
    json_decref(request);
    control_client_close(&client);
    return result;
}

int colo_protect_main(int argc, char **argv)
{
    const char *name = NULL, *destination = NULL;
    long interval_ms = -1, output_delay_ms = -1, heartbeat_timeout_ms = -1, connect_timeout_ms = -1;
    long wait_timeout_ms = 30000, compare_timeout_ms = -1;
    const char *mode = NULL;
    bool wait = true, follow = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s%s", protect_usage, protect_help);
            return 0;
        } else if (strcmp(argv[i], "--no-wait") == 0) {
            wait = false;
        } else if (strcmp(argv[i], "--follow") == 0) {
            follow = true;
        } else if (strcmp(argv[i], "--heartbeat-timeout") == 0 && i + 1 < argc) {
            if ((heartbeat_timeout_ms = parse_milliseconds(argv[i], argv[i + 1], 0, 3600000)) < 0)
                return 2;
            i++;
        } else if (strcmp(argv[i], "--connect-timeout") == 0 && i + 1 < argc) {
            if ((connect_timeout_ms = parse_milliseconds(argv[i], argv[i + 1], 1, 600000)) < 0)
                return 2;
            i++;
        } else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            mode = argv[++i];
            if (strcmp(mode, "compare") != 0 && strcmp(mode, "buffered") != 0) {
                fprintf(stderr, "colo protect: --mode must be compare or buffered, not '%s'\n%s", mode, protect_usage);
                return 2;
            }
        } else if (strcmp(argv[i], "--compare-timeout") == 0 && i + 1 < argc) {
            if ((compare_timeout_ms = parse_milliseconds(argv[i], argv[i + 1], 0, 600000)) < 0)
                return 2;
            i++;
        } else if (strcmp(argv[i], "--wait-timeout") == 0 && i + 1 < argc) {
            if ((wait_timeout_ms = parse_milliseconds(argv[i], argv[i + 1], 0, 3600000)) < 0)
                return 2;
            i++;
        } else if ((strcmp(argv[i], "--interval") == 0 || strcmp(argv[i], "--output-delay") == 0) && i + 1 < argc) {
            bool interval = strcmp(argv[i], "--interval") == 0;
            long value = parse_milliseconds(argv[i], argv[i + 1], interval ? 1 : 0, 600000);
            if (value < 0)
                return 2;
            *(interval ? &interval_ms : &output_delay_ms) = value;
            i++;
        } else if (argv[i][0] == '-' || (name && destination)) {
            fprintf(stderr, "colo protect: unexpected '%s'\n%s", argv[i], protect_usage);
            return 2;
        } else if (!name) {
            name = argv[i];
        } else {
            destination = argv[i];
        }
    }
    if (!name || !destination) {
        fputs(protect_usage, stderr);
        return 2;
    }
    json_t *request = json_pack("{s:s, s:s}", "command", "protect", "destination", destination), *reply = NULL;
    if (interval_ms > 0)
        json_object_set_new(request, "interval_ms", json_integer(interval_ms));
    if (output_delay_ms >= 0)
        json_object_set_new(request, "output_delay_ms", json_integer(output_delay_ms));
    if (heartbeat_timeout_ms >= 0)
        json_object_set_new(request, "heartbeat_timeout_ms", json_integer(heartbeat_timeout_ms));
    if (mode)
        json_object_set_new(request, "mode", json_string(mode));
    if (compare_timeout_ms >= 0)
        json_object_set_new(request, "compare_timeout_ms", json_integer(compare_timeout_ms));
    if (connect_timeout_ms > 0)
        json_object_set_new(request, "connect_timeout_ms", json_integer(connect_timeout_ms));
    int status = call_vm("colo protect", name, request, &reply);
    json_decref(request);
    if (status == 0 && wait)
        status = wait_for_initial_copy(name, destination, wait_timeout_ms);
    if (status == 0) {
        const char *mode_used = json_string_value(json_object_get(reply, "mode"));
        bool comparing = mode_used && strcmp(mode_used, "compare") == 0;
        printf("protecting %s with the secondary at %s (checkpoint at least every %" JSON_INTEGER_FORMAT " ms; ", name,
               destination, json_integer_value(json_object_get(reply, "interval_ms")));
        if (comparing)
            printf("a reply leaves once the secondary's VM sent the same; without its twin, a checkpoint within "
                   "%" JSON_INTEGER_FORMAT " ms)",
                   json_integer_value(json_object_get(reply, "compare_timeout_ms")));
        else
            printf("buffered: held output asks for a checkpoint within %" JSON_INTEGER_FORMAT " ms)",
                   json_integer_value(json_object_get(reply, "output_delay_ms")));
        printf("%s; `colo status %s` shows the replication\n", wait ? ": the initial copy has started" : "", name);
    }
    if (status == 0 && follow)
        status = follow_protection(name);
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

static const char switchover_usage[] = "usage: colo switchover NAME [--timeout S]   (on the primary's host)\n";

static const char switchover_help[] = "\n"
                                      "Moves the protected VM NAME to its secondary on purpose, so that this host\n"
                                      "can be drained: a final checkpoint with the VM paused here, the output it\n"
                                      "covers released, then the secondary takes over (its disks, its network\n"
                                      "announce) and the VM runs there; this copy stops and its colo exits 0.\n"
                                      "No acknowledged write is lost; the service gap is printed (the VM paused\n"
                                      "here until the secondary's answer came). Protect the VM again from the\n"
                                      "new host to a `colo secondary` here to move it back.\n"
                                      "\n"
                                      "  --timeout S   wait at most S seconds (1..60, default 10) for the\n"
                                      "                secondary's answer once the final checkpoint is done\n"
                                      "\n"
                                      "exit status:\n"
                                      "  0  switched over: the VM runs on the secondary\n"
                                      "  1  refused, and why is printed: not a protected primary (a secondary, an\n"
                                      "     unprotected VM), the initial copy still in progress, the secondary\n"
                                      "     refused (the VM runs on here, protected), or no answer came (the VM\n"
                                      "     stays paused here unless the cluster says the secondary did not take\n"
                                      "     over: see `colo status NAME`)\n"
                                      "  2  usage error\n";

int colo_switchover_main(int argc, char **argv)
{
    const char *name = NULL;
    long timeout_s = 10;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s%s", switchover_usage, switchover_help);
            return 0;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            timeout_s = strtol(argv[i + 1], &end, 10);
            if (*end || !argv[i + 1][0] || timeout_s < 1 || timeout_s > 60) {
                fprintf(stderr, "colo switchover: --timeout needs 1..60 s, got '%s'\n", argv[i + 1]);
                return 2;
            }
            i++;
        } else if (argv[i][0] == '-' || name) {
            fprintf(stderr, "colo switchover: unexpected '%s'\n%s", argv[i], switchover_usage);
            return 2;
        } else {
            name = argv[i];
        }
    }
    if (!name) {
        fputs(switchover_usage, stderr);
        return 2;
    }
    json_t *request = json_pack("{s:s, s:I}", "command", "switchover", "timeout_ms", (json_int_t)timeout_s * 1000);
    json_t *reply = NULL;
    /* The VM answers within the final checkpoint's waits and --timeout. */
    int status = call_vm_within("colo switchover", name, request, &reply, (int)timeout_s * 1000 + 20000);
    json_decref(request);
    if (status == 0)
        printf("%s switched over: the VM runs on %s now (service gap %.1f ms); this copy stopped\n", name,
               json_string_value(json_object_get(reply, "peer")), json_number_value(json_object_get(reply, "gap_ms")));
    json_decref(reply);
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
