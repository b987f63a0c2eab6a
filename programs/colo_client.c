/* colo status/metrics/pause/resume/save/quit/events: requests to a running VM's
 * control socket (see colo_client.h). */
#include "colo_client.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "colo_metrics.h"
#include "control_client.h"
#include "vm.h" /* vm_name_is_valid */

#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define DEFAULT_TIMEOUT_MS 5000

enum client_command {
    COMMAND_STATUS,
    COMMAND_METRICS,
    COMMAND_PAUSE,
    COMMAND_RESUME,
    COMMAND_SAVE,
    COMMAND_QUIT,
    COMMAND_EVENTS
};

static const struct {
    const char *name;
    enum client_command command;
    const char *arguments; /* for usage lines */
} commands[] = {
    { "status", COMMAND_STATUS, "[--json] NAME" },
    { "metrics", COMMAND_METRICS, "NAME" },
    { "pause", COMMAND_PAUSE, "NAME" },
    { "resume", COMMAND_RESUME, "NAME" },
    { "save", COMMAND_SAVE, "[--keep-running] NAME FILE" },
    { "quit", COMMAND_QUIT, "NAME" },
    { "events", COMMAND_EVENTS, "[--json] NAME" },
};

struct client_options {
    const char *command_name;
    enum client_command command;
    const char *vm_name; /* NULL with --control-socket and no NAME */
    const char *file;
    const char *socket_path; /* --control-socket */
    int timeout_ms;          /* -1: none */
    bool timeout_given;
    bool json;
    bool keep_running;
};

void colo_client_print_usage(FILE *out)
{
    fprintf(out, "\nA running VM answers on its control socket, $COLO_RUN_DIR/NAME.sock\n"
                 "(default /run/colo; see docs/control.md):\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "       colo %s %s\n", commands[i].name, commands[i].arguments);
    fprintf(out, "\n"
                 "status prints the VM's state and counters (--json: the raw reply); metrics\n"
                 "prints the same figures as Prometheus text (exposition format 0.0.4); pause\n"
                 "and resume stop and restart its harts; save writes its whole state to\n"
                 "FILE (for `colo run --load FILE`) and ends the VM, unless --keep-running;\n"
                 "quit ends it (colo run exits 0); events prints state changes and other\n"
                 "events until interrupted or the VM ends.\n"
                 "\n"
                 "client options:\n"
                 "  --timeout SEC             wait at most SEC seconds for the reply (default 5;\n"
                 "                            save: no limit; 0: no limit)\n"
                 "  --json                    print the VM's reply (or events) as JSON lines\n"
                 "  --control-socket PATH     talk to this socket instead of NAME's\n");
}

static int usage_error(const struct client_options *options, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const struct client_options *options, const char *format, ...)
{
    va_list args;
    fprintf(stderr, "colo %s: ", options->command_name);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fprintf(stderr, "\n(see `colo help`)\n");
    return EXIT_USAGE;
}

static bool parse_seconds(const char *text, int *milliseconds)
{
    if (!text || !*text)
        return false;
    char *end;
    errno = 0;
    double seconds = strtod(text, &end);
    if (errno || *end || !(seconds >= 0) || seconds > INT_MAX / 1000)
        return false;
    *milliseconds = seconds == 0 ? -1 : (int)(seconds * 1000 + 0.5);
    if (seconds > 0 && *milliseconds == 0)
        *milliseconds = 1;
    return true;
}

static int parse_arguments(struct client_options *options, int argc, char **argv)
{
    const char *positional[2];
    int positional_count = 0;
    int wanted = options->command == COMMAND_SAVE ? 2 : 1;
    for (int i = 0; i < argc; i++) {
        const char *argument = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argument, "--timeout") == 0) {
            if (!parse_seconds(next, &options->timeout_ms))
                return usage_error(options, "--timeout needs a number of seconds, got '%s'", next ? next : "nothing");
            options->timeout_given = true;
            i++;
        } else if (strcmp(argument, "--json") == 0 && options->command != COMMAND_METRICS) {
            options->json = true;
        } else if (strcmp(argument, "--keep-running") == 0 && options->command == COMMAND_SAVE) {
            options->keep_running = true;
        } else if (strcmp(argument, "--control-socket") == 0) {
            if (!next || !*next)
                return usage_error(options, "%s needs a path", argument);
            options->socket_path = next;
            i++;
        } else if (strcmp(argument, "--help") == 0 || strcmp(argument, "-h") == 0) {
            colo_client_print_usage(stdout);
            return -1;
        } else if (argument[0] == '-' && argument[1]) {
            return usage_error(options, "unknown option '%s'", argument);
        } else if (positional_count < wanted) {
            positional[positional_count++] = argument;
        } else {
            return usage_error(options, "unexpected argument '%s'", argument);
        }
    }
    /* With --control-socket the NAME may be left out. */
    if (options->socket_path && positional_count == wanted - 1) {
        for (int i = positional_count; i > 0; i--)
            positional[i] = positional[i - 1];
        positional[0] = NULL;
        positional_count++;
    }
    if (positional_count < wanted)
        return usage_error(options, "%s", wanted == 2 ? "needs the VM's NAME and a FILE" : "needs the VM's NAME");
    options->vm_name = positional[0];
    /* The name becomes a file name in the run directory. */
    if (options->vm_name && !vm_name_is_valid(options->vm_name))
        return usage_error(options, "'%s' is not a VM name (1..63 letters, digits, '-', '_' and '.')",
                           options->vm_name);
    if (wanted == 2)
        options->file = positional[1];
    return 0;
}

/* ---- talking to the VM ---- */

/* How the VM is named in messages. */
static const char *vm_label(const struct client_options *options)
{
    return options->vm_name ? options->vm_name : options->socket_path;
}

static int connect_to_vm(const struct client_options *options, struct control_client *client)
{
    char path[4096];
    struct error err;
    if (options->socket_path) {
        snprintf(path, sizeof path, "%s", options->socket_path);
    } else if (control_socket_path(options->vm_name, path, sizeof path, &err) < 0) {
        fprintf(stderr, "colo %s: %s\n", options->command_name, err.message);
        return -1;
    }
    if (control_client_connect(client, path, options->timeout_ms, &err) != CONTROL_CLIENT_OK) {
        if (options->vm_name)
            fprintf(stderr, "colo %s: no VM named %s is running: %s\n", options->command_name, options->vm_name,
                    err.message);
        else
            fprintf(stderr, "colo %s: no VM is running there: %s\n", options->command_name, err.message);
        return -1;
    }
    return 0;
}

static void report_failure(const struct client_options *options, int status, const struct error *err)
{
    const char *command = options->command_name;
    if (status == CONTROL_CLIENT_TIMEOUT)
        fprintf(stderr, "colo %s: %s did not answer within %g s (give a longer --timeout?)\n", command,
                vm_label(options), options->timeout_ms / 1000.0);
    else if (status == CONTROL_CLIENT_CLOSED)
        fprintf(stderr, "colo %s: %s closed the connection without answering (did it stop?)\n", command,
                vm_label(options));
    else
        fprintf(stderr, "colo %s: %s: %s\n", command, vm_label(options), err->message);
}

/* Sends the request, waits for the reply. Returns it, or NULL after
 * printing why there is none. */
static json_t *request_reply(const struct client_options *options, json_t *request)
{
    struct control_client client;
    if (connect_to_vm(options, &client) < 0)
        return NULL;
    json_t *reply = NULL;
    struct error err;
    int status = control_client_call(&client, request, &reply, options->timeout_ms, &err);
    control_client_close(&client);
    if (status != CONTROL_CLIENT_OK) {
        report_failure(options, status, &err);
        return NULL;
    }
    return reply;
}

static void print_json_line(const json_t *message)
{
    char *text = json_dumps(message, JSON_COMPACT | JSON_REAL_PRECISION(13));
    if (text)
        printf("%s\n", text);
    free(text);
    fflush(stdout);
}

/* ---- human-readable output ---- */

static json_int_t integer_field(const json_t *object, const char *key)
{
    return json_integer_value(json_object_get(object, key));
}

static const char *string_field(const json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value ? value : "?";
}

static void print_duration(double seconds)
{
    uint64_t whole = seconds > 0 ? (uint64_t)seconds : 0;
    if (whole >= 86400)
        printf("%" PRIu64 "d %02" PRIu64 "h %02" PRIu64 "m", whole / 86400, whole / 3600 % 24, whole / 60 % 60);
    else if (whole >= 3600)
        printf("%" PRIu64 "h %02" PRIu64 "m %02" PRIu64 "s", whole / 3600, whole / 60 % 60, whole % 60);
    else if (whole >= 60)
        printf("%" PRIu64 "m %02" PRIu64 "s", whole / 60, whole % 60);
    else
        printf("%.1f s", seconds);
}

static void print_status(const json_t *reply)
{
    printf("%s: %s, up ", string_field(reply, "name"), string_field(reply, "state"));
    print_duration(json_number_value(json_object_get(reply, "uptime_seconds")));
    printf("\n");
    if (json_object_get(reply, "instructions")) {
        printf("  memory        %" JSON_INTEGER_FORMAT " MiB\n", integer_field(reply, "memory_mib"));
        printf("  instructions  %" JSON_INTEGER_FORMAT " (hart 0)\n", integer_field(reply, "instructions"));
        printf("  dirty log     %s\n", json_is_true(json_object_get(reply, "dirty_log")) ? "on" : "off");
    }
    size_t index;
    json_t *disk;
    json_array_foreach(json_object_get(reply, "disks"), index, disk)
    {
        printf("  disk %zu        %s%s: %" JSON_INTEGER_FORMAT " reads, %" JSON_INTEGER_FORMAT
               " writes, %" JSON_INTEGER_FORMAT " flushes, %" JSON_INTEGER_FORMAT " failed\n",
               index, string_field(disk, "path"),
               json_is_true(json_object_get(disk, "read_only")) ? " (read-only)" : "",
               integer_field(disk, "read_requests"), integer_field(disk, "write_requests"),
               integer_field(disk, "flush_requests"), integer_field(disk, "failed_requests"));
    }
    json_t *nic;
    json_array_foreach(json_object_get(reply, "nics"), index, nic)
    {
        const char *tap = string_field(nic, "tap");
        printf("  nic %zu         %s on %s: %" JSON_INTEGER_FORMAT " frames in, %" JSON_INTEGER_FORMAT
               " out; dropped %" JSON_INTEGER_FORMAT " (no buffers) %" JSON_INTEGER_FORMAT
               " (too large); %" JSON_INTEGER_FORMAT " transmit errors\n",
               index, string_field(nic, "mac"), tap[0] ? tap : "no TAP", integer_field(nic, "received_frames"),
               integer_field(nic, "transmitted_frames"), integer_field(nic, "dropped_no_buffers"),
               integer_field(nic, "dropped_too_large"), integer_field(nic, "transmit_errors"));
    }
    /* COLO: "replication  primary, RUNNING: 123 checkpoints, downtime p50 4.1 ms, p99 9.8 ms" */
    const json_t *replication = json_object_get(reply, "replication");
    if (replication) {
        printf("  replication   %s, %s: %" JSON_INTEGER_FORMAT " checkpoints", string_field(replication, "role"),
               string_field(replication, "state"), integer_field(replication, "checkpoints"));
        if (json_object_get(replication, "downtime_p50_ms"))
            printf(", downtime p50 %.1f ms, p99 %.1f ms",
                   json_number_value(json_object_get(replication, "downtime_p50_ms")),
                   json_number_value(json_object_get(replication, "downtime_p99_ms")));
        if (json_object_get(replication, "ended"))
            printf(" (ended: %s)", string_field(replication, "ended"));
        printf("\n");
        /* The disks' part: the initial sync's progress, then each
         * checkpoint's writes (primary) or folds (secondary). */
        const json_t *sync = json_object_get(replication, "disk_sync");
        if (sync) {
            double total = (double)integer_field(sync, "bytes_total") / (1 << 20);
            double compared = (double)integer_field(sync, "bytes_compared") / (1 << 20);
            printf("  disk sync     %s: %.0f of %.0f MiB compared, %" JSON_INTEGER_FORMAT
                   " chunks differed, %.1f MiB sent",
                   json_is_true(json_object_get(sync, "done")) ? "done" : "in progress", compared, total,
                   integer_field(sync, "chunks_differing"), (double)integer_field(sync, "bytes_sent") / (1 << 20));
            /* How each disk went: "(disk 0 incremental: 12 blocks; 100%)". */
            const json_t *modes = json_object_get(sync, "modes");
            if (json_array_size(modes)) {
                printf(" (");
                for (size_t i = 0; i < json_array_size(modes); i++)
                    printf("%sdisk %zu %s", i ? ", " : "", i, json_string_value(json_array_get(modes, i)));
                printf(": %" JSON_INTEGER_FORMAT " tracked blocks; %.0f%%)", integer_field(sync, "tracked_blocks_sent"),
                       json_number_value(json_object_get(sync, "percent")));
            }
            if (json_object_get(replication, "last_checkpoint_disk_blocks"))
                printf("; last checkpoint %" JSON_INTEGER_FORMAT " blocks, %.1f KiB",
                       integer_field(replication, "last_checkpoint_disk_blocks"),
                       (double)integer_field(replication, "last_checkpoint_disk_bytes") / 1024);
            printf("\n");
        }
        /* The output's release: "output  compare: 4000 of 4100 frames
         * released by a match; differences: 3 timeout; 0 storms". */
        const json_t *compare = json_object_get(replication, "compare");
        if (compare) {
            bool fallen_back = strcmp(string_field(compare, "mode_now"), "compare") != 0;
            printf("  output        compare");
            if (fallen_back)
                printf(" (NOW BUFFERED: %s)", string_field(compare, "reason"));
            printf(": %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT
                   " frames released by a match; %" JSON_INTEGER_FORMAT " checkpoints forced; differences:",
                   integer_field(compare, "released_matched"), integer_field(replication, "released_total"),
                   integer_field(compare, "checkpoints_by_difference"));
            const json_t *differences = json_object_get(compare, "differences");
            const char *cause;
            const json_t *count;
            bool any = false;
            json_object_foreach((json_t *)differences, cause, count)
            {
                if (json_integer_value(count)) {
                    printf(" %" JSON_INTEGER_FORMAT " %s", json_integer_value(count), cause);
                    any = true;
                }
            }
            printf("%s; %" JSON_INTEGER_FORMAT " storms\n", any ? "" : " none", integer_field(compare, "storms"));
            /* "compare wait  p50 0.08 ms, p99 0.61 ms (a reply's wait for the SVM's twin)". */
            if (json_object_get(compare, "match_wait_p50_ms"))
                printf("  compare wait  p50 %.2f ms, p99 %.2f ms (a reply's wait for the SVM's twin)\n",
                       json_number_value(json_object_get(compare, "match_wait_p50_ms")),
                       json_number_value(json_object_get(compare, "match_wait_p99_ms")));
            /* "last difference  payload, tcp 10.0.0.2:7000 > 10.0.0.9:4242
             * (the SVM's frame showed it), 3.2 s ago". */
            const json_t *last = json_object_get(compare, "last_difference");
            if (last) {
                const char *flow = json_string_value(json_object_get(last, "flow"));
                bool timeout = strcmp(string_field(last, "cause"), "timeout") == 0;
                /* A timeout says what its frame waited for: "(the PVM's
                 * frame had no twin in time: it waited for the SVM's ack,
                 * 1448 bytes behind)". */
                char waited[96] = "";
                const char *waited_for = json_string_value(json_object_get(last, "waited_for"));
                if (timeout && waited_for) {
                    json_int_t bytes = integer_field(last, "waited_bytes");
                    if (bytes > 0)
                        snprintf(waited, sizeof waited,
                                 ": it waited for the SVM's %s, %" JSON_INTEGER_FORMAT " bytes behind", waited_for,
                                 bytes);
                    else
                        snprintf(waited, sizeof waited, ": it waited for the SVM's %s", waited_for);
                }
                printf("  last difference %s%s%s (the %s's frame %s%s), %.1f s ago\n", string_field(last, "cause"),
                       flow ? ", " : "", flow ? flow : "",
                       strcmp(string_field(last, "frame"), "primary") == 0 ? "PVM" : "SVM",
                       timeout ? "had no twin in time" : "showed it", waited,
                       json_number_value(json_object_get(last, "seconds_ago")));
            }
        } else if (strcmp(string_field(replication, "output_mode"), "buffered") == 0) {
            printf("  output        buffered: every frame waits for the next checkpoint\n");
        }
        const json_t *disks = json_object_get(replication, "disks");
        if (disks)
            printf("  disks         %" JSON_INTEGER_FORMAT " replicated; last fold %" JSON_INTEGER_FORMAT
                   " blocks in %.2f ms; %.1f MiB buffered\n",
                   integer_field(disks, "replicated_disks"), integer_field(disks, "last_fold_blocks"),
                   json_number_value(json_object_get(disks, "last_fold_ms")),
                   (double)integer_field(disks, "memory_bytes") / (1 << 20));
        /* Who may own the VM: "cluster  corosync, node 1, peer node 2 (in the
         * group), ring 9 of 2 nodes, quorate, epoch 1; decision: none". */
        const json_t *cluster = json_object_get(replication, "cluster");
        if (cluster && strcmp(string_field(cluster, "mode"), "corosync") == 0 &&
            json_object_get(cluster, "connected")) {
            printf("  cluster       corosync%s, node %" JSON_INTEGER_FORMAT ", peer node %" JSON_INTEGER_FORMAT
                   " (%s), ring %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT
                   " nodes, %s, epoch %" JSON_INTEGER_FORMAT "%s; decision: %s%s%s\n",
                   json_is_true(json_object_get(cluster, "connected")) ? "" : " (LOST)", integer_field(cluster, "node"),
                   integer_field(cluster, "peer_node"),
                   json_is_true(json_object_get(cluster, "peer_present")) ? "in the group" : "not in the group",
                   integer_field(cluster, "ring"), integer_field(cluster, "ring_members"),
                   json_is_true(json_object_get(cluster, "quorate")) ? "quorate" : "NOT QUORATE",
                   integer_field(cluster, "epoch"),
                   json_is_true(json_object_get(cluster, "frozen")) ? ", woken from a freeze (unconfirmed)" : "",
                   string_field(cluster, "decision"), *string_field(cluster, "reason") ? ": " : "",
                   string_field(cluster, "reason"));
        } else if (cluster && strcmp(string_field(cluster, "mode"), "none") == 0) {
            printf("  cluster       NONE: split brain is possible if the replication link fails while both "
                   "hosts live (--cluster corosync)\n");
        }
        /* Who the peer is and who was turned away: "peer  TLS 1.3, pre-shared
         * key of identity web; 10.0.0.2:41000 (identity web); refused 2 ...". */
        const json_t *peer = json_object_get(replication, "peer");
        if (peer) {
            json_int_t refused = integer_field(peer, "refused_authentication") + integer_field(peer, "refused_hello") +
                                 integer_field(peer, "refused_unpaired") + integer_field(peer, "refused_during_run");
            if (json_is_true(json_object_get(peer, "authenticated")))
                printf("  peer          %s", string_field(peer, "transport"));
            else
                printf("  peer          PLAIN TCP, unauthenticated: anyone on the replication network can take "
                       "this VM (replication_auth)");
            if (*string_field(peer, "peer"))
                printf("; %s", string_field(peer, "peer"));
            printf("; refused %" JSON_INTEGER_FORMAT, refused);
            if (refused)
                printf(" (authentication %" JSON_INTEGER_FORMAT ", hello %" JSON_INTEGER_FORMAT
                       ", unpaired %" JSON_INTEGER_FORMAT ", during the run %" JSON_INTEGER_FORMAT "; last: %s)",
                       integer_field(peer, "refused_authentication"), integer_field(peer, "refused_hello"),
                       integer_field(peer, "refused_unpaired"), integer_field(peer, "refused_during_run"),
                       string_field(peer, "last_refusal"));
            printf("\n");
        }
    }
    fflush(stdout);
}

/* The status as Prometheus text. The vm label is the name the VM gives
 * itself, which --control-socket without a NAME also has. */
static bool print_metrics(const struct client_options *options, const json_t *reply)
{
    const char *name = json_string_value(json_object_get(reply, "name"));
    char *text = colo_metrics_format(name ? name : vm_label(options), reply);
    if (!text) {
        fprintf(stderr, "colo metrics: out of memory\n");
        return false;
    }
    fputs(text, stdout);
    free(text);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "colo metrics: cannot write the metrics: %s\n", strerror(errno));
        return false;
    }
    return true;
}

/* "12:34:56.789 state: paused", or the event's other fields as JSON. */
static void print_event(const json_t *event)
{
    double time_value = json_number_value(json_object_get(event, "time"));
    time_t seconds = (time_t)time_value;
    struct tm local;
    char clock_text[16] = "--:--:--";
    if (localtime_r(&seconds, &local))
        strftime(clock_text, sizeof clock_text, "%H:%M:%S", &local);
    int milliseconds = (int)((time_value - (double)seconds) * 1000);
    const char *name = string_field(event, "event");
    json_t *checkpoint = json_object_get(event, "checkpoint");
    if (strcmp(name, "state") == 0) {
        printf("%s.%03d state: %s\n", clock_text, milliseconds, string_field(event, "state"));
    } else if (strcmp(name, "replication") == 0 && json_is_object(checkpoint)) {
        /* One line per checkpoint (there may be hundreds a second). */
        printf("%s.%03d checkpoint %" JSON_INTEGER_FORMAT " (%s): %" JSON_INTEGER_FORMAT " dirty pages, "
               "PVM paused %.2f ms\n",
               clock_text, milliseconds, json_integer_value(json_object_get(checkpoint, "number")),
               string_field(checkpoint, "trigger"), json_integer_value(json_object_get(checkpoint, "dirty_pages")),
               json_number_value(json_object_get(checkpoint, "downtime_ms")));
    } else {
        json_t *rest = json_copy((json_t *)event);
        json_object_del(rest, "event");
        json_object_del(rest, "time");
        char *text = json_dumps(rest, JSON_COMPACT | JSON_REAL_PRECISION(13));
        printf("%s.%03d %s: %s\n", clock_text, milliseconds, name, text ? text : "");
        free(text);
        json_decref(rest);
    }
    fflush(stdout);
}

/* ---- the commands ---- */

static int run_events(const struct client_options *options)
{
    struct control_client client;
    if (connect_to_vm(options, &client) < 0)
        return EXIT_ERROR;
    json_t *request = json_pack("{s:s}", "command", "subscribe");
    json_t *reply = NULL;
    struct error err;
    int status = control_client_call(&client, request, &reply, options->timeout_ms, &err);
    json_decref(request);
    if (status != CONTROL_CLIENT_OK || !json_is_true(json_object_get(reply, "ok"))) {
        if (status == CONTROL_CLIENT_OK)
            fprintf(stderr, "colo events: %s: %s\n", vm_label(options), string_field(reply, "error"));
        else
            report_failure(options, status, &err);
        json_decref(reply);
        control_client_close(&client);
        return EXIT_ERROR;
    }
    json_decref(reply);
    if (!options->json)
        fprintf(stderr, "colo events: watching %s (Ctrl-C to stop)\n", vm_label(options));
    for (;;) {
        json_t *message;
        status = control_client_receive(&client, &message, -1, &err);
        if (status != CONTROL_CLIENT_OK)
            break;
        if (json_object_get(message, "event")) {
            if (options->json)
                print_json_line(message);
            else
                print_event(message);
        }
        json_decref(message);
    }
    control_client_close(&client);
    if (status == CONTROL_CLIENT_CLOSED) {
        fprintf(stderr, "colo events: %s has ended (its control socket closed)\n", vm_label(options));
        return 0;
    }
    report_failure(options, status, &err);
    return EXIT_ERROR;
}

/* A relative FILE is relative to where the user is, not to where the VM
 * was started. */
static char *absolute_path(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char *directory = getcwd(NULL, 0);
    if (!directory)
        return NULL;
    size_t length = strlen(directory) + 1 + strlen(path) + 1;
    char *absolute = malloc(length);
    if (absolute)
        snprintf(absolute, length, "%s/%s", directory, path);
    free(directory);
    return absolute;
}

static void print_result(const struct client_options *options, const json_t *reply)
{
    const char *name = vm_label(options);
    switch (options->command) {
    case COMMAND_STATUS:
        print_status(reply);
        break;
    case COMMAND_METRICS:
        break;
    case COMMAND_PAUSE:
    case COMMAND_RESUME:
    case COMMAND_QUIT:
        printf("%s: %s\n", name, string_field(reply, "state"));
        break;
    case COMMAND_SAVE:
        printf("%s: saved to %s (%" JSON_INTEGER_FORMAT " bytes in %.2f s)%s\n", name, string_field(reply, "file"),
               integer_field(reply, "bytes"), json_number_value(json_object_get(reply, "seconds")),
               options->keep_running ? "" : "; the VM has ended");
        break;
    case COMMAND_EVENTS:
        break;
    }
}

int colo_client_main(const char *command_name, int argc, char **argv)
{
    struct client_options options = { .command_name = command_name, .timeout_ms = DEFAULT_TIMEOUT_MS };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, command_name) == 0)
            options.command = commands[i].command;
    int parsed = parse_arguments(&options, argc, argv);
    if (parsed != 0)
        return parsed < 0 ? 0 : parsed;
    /* Writing a big VM to disk may take longer than any fixed limit. */
    if (options.command == COMMAND_SAVE && !options.timeout_given)
        options.timeout_ms = -1;
    if (options.command == COMMAND_EVENTS)
        return run_events(&options);

    /* metrics asks for the status and prints it another way. */
    json_t *request = json_pack("{s:s}", "command", options.command == COMMAND_METRICS ? "status" : command_name);
    if (options.command == COMMAND_SAVE) {
        char *file = absolute_path(options.file);
        if (!file) {
            fprintf(stderr, "colo save: cannot make '%s' an absolute path: %s\n", options.file, strerror(errno));
            json_decref(request);
            return EXIT_ERROR;
        }
        json_t *file_string = json_string(file);
        free(file);
        if (!file_string) {
            fprintf(stderr, "colo save: the file name '%s' is not UTF-8 text\n", options.file);
            json_decref(request);
            return EXIT_ERROR;
        }
        json_object_set_new(request, "file", file_string);
        json_object_set_new(request, "keep_running", json_boolean(options.keep_running));
    }
    json_t *reply = request_reply(&options, request);
    json_decref(request);
    if (!reply)
        return EXIT_ERROR;
    bool ok = json_is_true(json_object_get(reply, "ok"));
    bool printed = true;
    if (ok && options.command == COMMAND_METRICS)
        printed = print_metrics(&options, reply);
    else if (options.json)
        print_json_line(reply);
    else if (ok)
        print_result(&options, reply);
    if (!ok)
        fprintf(stderr, "colo %s: %s: %s\n", command_name, vm_label(&options), string_field(reply, "error"));
    json_decref(reply);
    return ok && printed ? 0 : EXIT_ERROR;
}
