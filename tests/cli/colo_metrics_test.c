/* colo_metrics_format (programs/colo_metrics.c): a fixed status reply of a
 * protected primary, of a secondary after a failover, and minimal ones
 * without replication or still connecting, turned into Prometheus text. Checks exact lines, label escaping, the
 * exposition format's grammar (version 0.0.4) line by line, one HELP and TYPE per family with its samples together, and
 * that counters end in _total. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colo_metrics.h"

static int failures;

#define CHECK(condition, ...)                                    \
    do {                                                         \
        if (!(condition)) {                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, "\n");                               \
            failures++;                                          \
        }                                                        \
    } while (0)

/* A primary's status, as vm/vm_control.c and vm/vm_replication*.c build it. */
static const char primary_status[] =
    "{\"ok\": true, \"name\": \"web\", \"state\": \"running\", \"uptime_seconds\": 3661.25,"
    " \"memory_mib\": 128, \"instructions\": 987654321, \"dirty_log\": true,"
    " \"disks\": [{\"path\": \"/var/lib/colo/root.img\", \"read_only\": false, \"read_requests\": 5,"
    "   \"write_requests\": 6, \"flush_requests\": 1, \"failed_requests\": 0},"
    "  {\"path\": \"/var/lib/colo/seed.img\", \"read_only\": true, \"read_requests\": 7,"
    "   \"write_requests\": 0, \"flush_requests\": 0, \"failed_requests\": 0}],"
    " \"nics\": [{\"tap\": \"tap0\", \"mac\": \"52:54:00:12:34:56\", \"received_frames\": 100,"
    "   \"transmitted_frames\": 90, \"dropped_no_buffers\": 1, \"dropped_too_large\": 2, \"transmit_errors\": 0}],"
    " \"control_socket\": {\"path\": \"/run/colo/web.sock\", \"rejected_requests\": 4},"
    " \"replication\": {\"role\": \"primary\", \"peer\": {\"transport\": \"TLS 1.3, pre-shared key\","
    "   \"authenticated\": true, \"refused_authentication\": 1, \"refused_hello\": 2, \"refused_unpaired\": 0,"
    "   \"refused_during_run\": 3, \"peer\": \"10.0.0.2:41000\", \"last_refusal\": \"bad \\\"key\\\"\"},"
    "  \"initial_copy_started\": true, \"checkpoints\": 1234, \"downtime_p50_ms\": 4.1,"
    "  \"downtime_p99_ms\": 9.75, \"downtime_max_ms\": 20.0, \"checkpoints_by_output\": 1000,"
    "  \"checkpoints_by_request\": 3, \"interval_ms\": 100, \"output_delay_ms\": 10,"
    "  \"last_checkpoint\": {\"number\": 1234, \"trigger\": \"output\", \"dirty_pages\": 42, \"precopy_pages\": 7,"
    "   \"precopy_rounds\": 1, \"bytes\": 200000, \"precopy_confirmed\": true, \"confirm_ms\": 0.5,"
    "   \"output_ms\": 0.25, \"resumed_before_ready\": false, \"downtime_ms\": 3.5, \"suspend_ms\": 0.125,"
    "   \"pause_ms\": 0.5, \"send_ms\": 2.0, \"apply_ms\": 0.75, \"resume_ms\": 0.125},"
    "  \"disk_sync\": {\"bytes_total\": 1048576, \"bytes_compared\": 524288, \"chunks_differing\": 3,"
    "   \"bytes_sent\": 4096, \"dirty_rounds\": 1, \"final_blocks\": 2, \"done\": false, \"modes\": [\"full\"],"
    "   \"tracked_blocks_sent\": 0, \"bytes_planned\": 1048576, \"bytes_done\": 524288, \"percent\": 50.0},"
    "  \"last_checkpoint_disk_blocks\": 8, \"last_checkpoint_disk_bytes\": 32768,"
    "  \"held_frames\": 3, \"held_total\": 5000, \"released_total\": 4997, \"held_dropped\": 0,"
    "  \"releases_refused\": 0, \"heartbeat_timeout_ms\": 200, \"mirrored_frames\": 600, \"mirror_dropped\": 1,"
    "  \"output_mode\": \"compare\", \"compare\": {\"mode_now\": \"buffered\", \"reason\": \"checkpoint storm\","
    "   \"timeout_ms\": 5, \"released_matched\": 4000, \"released_at_once\": 900, \"matched_bytes\": 123456,"
    "   \"matched_messages\": 12, \"primary_frames\": 4990, \"secondary_frames\": 4980,"
    "   \"secondary_frames_stale\": 7, \"checkpoints_by_difference\": 21, \"storms\": 1, \"tcp_restarts\": 0,"
    "   \"match_wait_p50_ms\": 0.08, \"match_wait_p99_ms\": 1.5, \"shifted_connections_carried\": 3,"
    "   \"differences\": {\"payload\": 11, \"tcp_event\": 1, \"timeout\": 9, \"protocol\": 0,"
    "    \"parse_error\": 0, \"overflow\": 0},"
    "   \"timeouts_waiting_for\": {\"data\": 6, \"ack\": 3, \"tcp_event\": 0, \"other\": 0},"
    "   \"dropped\": {\"held_full\": 0, \"flow_table_full\": 0, \"buffer_full\": 0, \"out_of_order\": 2}},"
    "  \"ended\": \"a \\\"quoted\\\" C:\\\\path\\nsecond line\","
    "  \"cluster\": {\"mode\": \"corosync\", \"connected\": true, \"node\": 1, \"peer_node\": 2,"
    "   \"peer_present\": true, \"ring\": 9, \"ring_members\": 2, \"quorate\": true, \"quorum_ring\": 9,"
    "   \"epoch\": 1, \"frozen\": false, \"messages_rejected\": 0, \"decision\": \"none\", \"reason\": \"\"},"
    "  \"state\": \"RUNNING\"}}";

/* ---- the exposition format's grammar ---- */

static bool is_name_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || isdigit((unsigned char)c);
}

/* A metric name (or, without colons, a label name) at *TEXT; its end. */
static const char *parse_name(const char *text, bool colons)
{
    if (!is_name_start(*text) || (!colons && *text == ':'))
        return NULL;
    while (is_name_char(*text) && (colons || *text != ':'))
        text++;
    return text;
}

static bool parse_value(const char *text)
{
    if (strcmp(text, "NaN") == 0 || strcmp(text, "+Inf") == 0 || strcmp(text, "-Inf") == 0)
        return true;
    char *end;
    strtod(text, &end);
    return end != text && *end == '\0';
}

/* `name{label="value",...} value`: its name in NAME, its name and labels
 * in SERIES (for duplicates). */
static bool parse_sample(const char *line, char *name, size_t name_size, char *series, size_t series_size)
{
    const char *end = parse_name(line, true);
    if (!end || (size_t)(end - line) >= name_size)
        return false;
    snprintf(name, name_size, "%.*s", (int)(end - line), line);
    const char *cursor = end;
    if (*cursor == '{') {
        cursor++;
        while (*cursor != '}') {
            const char *label_end = parse_name(cursor, false);
            if (!label_end || label_end[0] != '=' || label_end[1] != '"')
                return false;
            cursor = label_end + 2;
            while (*cursor != '"') {
                if (*cursor == '\0' || *cursor == '\n')
                    return false;
                if (*cursor == '\\') {
                    cursor++;
                    if (*cursor != '\\' && *cursor != '"' && *cursor != 'n')
                        return false;
                }
                cursor++;
            }
            cursor++;
            if (*cursor == ',')
                cursor++;
            else if (*cursor != '}')
                return false;
        }
        cursor++;
    }
    if ((size_t)(cursor - line) >= series_size)
        return false;
    snprintf(series, series_size, "%.*s", (int)(cursor - line), line);
    if (*cursor != ' ')
        return false;
    return parse_value(cursor + 1);
}

/* Checks TEXT line by line; returns how many samples it has. */
static int check_exposition(const char *text)
{
    enum { MAX_FAMILIES = 256, MAX_SAMPLES = 512 };
    static char families[MAX_FAMILIES][128];
    static char samples[MAX_SAMPLES][512];
    int family_count = 0, sample_count = 0;
    char current[128] = "";
    bool current_has_help = false, current_counter = false;
    CHECK(text[0] && text[strlen(text) - 1] == '\n', "the text does not end in a newline");
    char *copy = strdup(text);
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            bool help = line[2] == 'H';
            const char *name = line + 7;
            const char *end = parse_name(name, true);
            CHECK(end && *end == ' ', "bad comment line: %s", line);
            if (!end || *end != ' ')
                continue;
            char family[128];
            snprintf(family, sizeof family, "%.*s", (int)(end - name), name);
            const char *rest = end + 1;
            if (help) {
                /* A new family starts with its HELP (colo always writes one). */
                for (int i = 0; i < family_count; i++)
                    CHECK(strcmp(families[i], family) != 0, "family %s appears twice", family);
                CHECK(family_count < MAX_FAMILIES, "too many families");
                if (family_count < MAX_FAMILIES)
                    snprintf(families[family_count++], sizeof families[0], "%s", family);
                snprintf(current, sizeof current, "%s", family);
                current_has_help = true;
                for (const char *c = rest; *c; c++)
                    if (*c == '\\') {
                        c++;
                        CHECK(*c == '\\' || *c == 'n', "bad escape in HELP: %s", line);
                    }
            } else {
                CHECK(current_has_help && strcmp(family, current) == 0, "TYPE %s without its HELP first", family);
                CHECK(strcmp(rest, "counter") == 0 || strcmp(rest, "gauge") == 0, "bad TYPE: %s", line);
                current_counter = strcmp(rest, "counter") == 0;
                size_t length = strlen(family);
                if (current_counter)
                    CHECK(length > 6 && strcmp(family + length - 6, "_total") == 0, "counter %s does not end in _total",
                          family);
                else
                    CHECK(length <= 6 || strcmp(family + length - 6, "_total") != 0, "gauge %s ends in _total", family);
                current_has_help = false;
            }
            continue;
        }
        CHECK(line[0] != '#', "a comment that is neither HELP nor TYPE: %s", line);
        char name[128], series[512];
        bool parsed = parse_sample(line, name, sizeof name, series, sizeof series);
        CHECK(parsed, "not a sample line: %s", line);
        if (!parsed)
            continue;
        CHECK(strcmp(name, current) == 0, "sample %s outside its family (now %s)", name, current);
        CHECK(strncmp(strchr(line, '{') ? strchr(line, '{') : "", "{vm=\"", 5) == 0, "no vm label first: %s", line);
        for (int i = 0; i < sample_count; i++)
            CHECK(strcmp(samples[i], series) != 0, "sample %s twice", series);
        CHECK(sample_count < MAX_SAMPLES, "too many samples");
        if (sample_count < MAX_SAMPLES)
            snprintf(samples[sample_count++], sizeof samples[0], "%s", series);
    }
    free(copy);
    (void)current_counter;
    return sample_count;
}

static bool has_line(const char *text, const char *line)
{
    size_t length = strlen(line);
    for (const char *at = strstr(text, line); at; at = strstr(at + 1, line))
        if ((at == text || at[-1] == '\n') && at[length] == '\n')
            return true;
    return false;
}

static char *format(const char *vm_name, const char *status_text)
{
    json_error_t error;
    json_t *status = json_loads(status_text, 0, &error);
    if (!status) {
        fprintf(stderr, "bad test JSON: %s at %d\n", error.text, error.position);
        exit(1);
    }
    char *text = colo_metrics_format(vm_name, status);
    json_decref(status);
    if (!text) {
        fprintf(stderr, "colo_metrics_format returned NULL\n");
        exit(1);
    }
    return text;
}

static void test_primary(void)
{
    char *text = format("web", primary_status);
    static const char *const expected[] = {
        "# HELP colo_checkpoints_total Checkpoints taken (primary) or applied (secondary)",
        "# TYPE colo_checkpoints_total counter",
        "colo_checkpoints_total{vm=\"web\"} 1234",
        "# TYPE colo_checkpoint_downtime_seconds gauge",
        "colo_checkpoint_downtime_seconds{vm=\"web\",quantile=\"0.5\"} 0.0041",
        "colo_checkpoint_downtime_seconds{vm=\"web\",quantile=\"0.99\"} 0.00975",
        "colo_checkpoint_downtime_max_seconds{vm=\"web\"} 0.02",
        "colo_output_frames_held{vm=\"web\"} 3",
        "colo_output_frames_released_total{vm=\"web\"} 4997",
        "colo_output_frames_dropped_total{vm=\"web\",reason=\"buffer_full\"} 0",
        "colo_replication_role{vm=\"web\",role=\"primary\"} 1",
        /* Escaped: backslash, double quote, newline. */
        "colo_replication_info{vm=\"web\",state=\"RUNNING\",ended=\"a \\\"quoted\\\" C:\\\\path\\nsecond line\"} 1",
        "colo_vm_state{vm=\"web\",state=\"running\"} 1",
        "colo_uptime_seconds{vm=\"web\"} 3661.25",
        "colo_memory_bytes{vm=\"web\"} 134217728",
        "colo_dirty_log_enabled{vm=\"web\"} 1",
        "colo_disk_info{vm=\"web\",disk=\"1\",path=\"/var/lib/colo/seed.img\"} 1",
        "colo_disk_read_only{vm=\"web\",disk=\"0\"} 0",
        "colo_disk_read_requests_total{vm=\"web\",disk=\"1\"} 7",
        "colo_nic_info{vm=\"web\",nic=\"0\",tap=\"tap0\",mac=\"52:54:00:12:34:56\"} 1",
        "colo_nic_dropped_frames_total{vm=\"web\",nic=\"0\",reason=\"too_large\"} 2",
        "colo_last_checkpoint_phase_seconds{vm=\"web\",phase=\"send\"} 0.002",
        "colo_last_checkpoint_precopy_confirmed{vm=\"web\"} 1",
        "colo_disk_sync_progress_ratio{vm=\"web\"} 0.5",
        "colo_mirror_frames_dropped_total{vm=\"web\"} 1",
        "colo_cluster_quorate{vm=\"web\"} 1",
        "colo_cluster_frozen{vm=\"web\"} 0",
        "colo_cluster_epoch{vm=\"web\"} 1",
        "colo_cluster_info{vm=\"web\",mode=\"corosync\",decision=\"none\",reason=\"\"} 1",
        "colo_peer_refused_total{vm=\"web\",reason=\"hello\"} 2",
        "colo_peer_info{vm=\"web\",transport=\"TLS 1.3, pre-shared key\",peer=\"10.0.0.2:41000\","
        "last_refusal=\"bad \\\"key\\\"\"} 1",
        "colo_heartbeat_timeout_seconds{vm=\"web\"} 0.2",
        "colo_output_mode{vm=\"web\",output_mode=\"compare\"} 1",
        "colo_compare_mode{vm=\"web\",mode_now=\"buffered\",reason=\"checkpoint storm\"} 1",
        "# TYPE colo_compare_released_matched_total counter",
        "colo_compare_released_matched_total{vm=\"web\"} 4000",
        "colo_compare_checkpoints_total{vm=\"web\"} 21",
        "colo_compare_storms_total{vm=\"web\"} 1",
        "colo_compare_match_wait_seconds{vm=\"web\",quantile=\"0.5\"} 8e-05",
        "colo_compare_match_wait_seconds{vm=\"web\",quantile=\"0.99\"} 0.0015",
        "# HELP colo_compare_differences_total Output differences between the two VMs, by cause",
        "colo_compare_differences_total{vm=\"web\",cause=\"payload\"} 11",
        "colo_compare_differences_total{vm=\"web\",cause=\"timeout\"} 9",
        "colo_compare_differences_total{vm=\"web\",cause=\"overflow\"} 0",
        "colo_compare_timeouts_total{vm=\"web\",waiting_for=\"data\"} 6",
        "colo_compare_timeouts_total{vm=\"web\",waiting_for=\"ack\"} 3",
        "colo_compare_dropped_total{vm=\"web\",reason=\"out_of_order\"} 2",
        "colo_tcp_sequence_shift_carried_connections{vm=\"web\"} 3",
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        CHECK(has_line(text, expected[i]), "primary: no line %s", expected[i]);
    /* The secondary's figures are not in a primary's status. */
    CHECK(!strstr(text, "colo_mirror_frames_received_total"), "primary: a secondary's figure");
    CHECK(!strstr(text, "colo_switchover_info"), "primary: a switchover that did not happen");
    int samples = check_exposition(text);
    CHECK(samples > 80, "primary: only %d samples", samples);
    if (failures)
        fprintf(stderr, "---- the primary's metrics ----\n%s", text);
    free(text);
}

static void test_without_replication(void)
{
    char *text = format("bare", "{\"ok\": true, \"name\": \"bare\", \"state\": \"paused\", \"uptime_seconds\": 2.5,"
                                " \"disks\": [], \"nics\": [],"
                                " \"control_socket\": {\"path\": \"/run/colo/bare.sock\", \"rejected_requests\": 0}}");
    static const char expected[] =
        "# HELP colo_vm_state The VM's run state (running, paused, migrating, ...), as a label\n"
        "# TYPE colo_vm_state gauge\n"
        "colo_vm_state{vm=\"bare\",state=\"paused\"} 1\n"
        "# HELP colo_uptime_seconds Seconds since this colo process created the VM\n"
        "# TYPE colo_uptime_seconds gauge\n"
        "colo_uptime_seconds{vm=\"bare\"} 2.5\n"
        "# HELP colo_control_rejected_requests_total Requests and clients the control socket refused "
        "(protocol mistakes, too many clients)\n"
        "# TYPE colo_control_rejected_requests_total counter\n"
        "colo_control_rejected_requests_total{vm=\"bare\"} 0\n";
    CHECK(strcmp(text, expected) == 0, "without replication:\n%s---- expected ----\n%s", text, expected);
    CHECK(check_exposition(text) == 3, "without replication: not 3 samples");
    free(text);

    /* A survivor's VM migrated here: no replication, but the connections
     * its host shifts. */
    text = format("moved", "{\"name\": \"moved\", \"state\": \"running\","
                           " \"tcp_sequence_shift\": {\"connections\": 0, \"carried_by_checkpoint\": 1}}");
    CHECK(has_line(text, "colo_tcp_sequence_shift_carried_connections{vm=\"moved\"} 1"),
          "migrated survivor: no carried connections");
    CHECK(!strstr(text, "colo_replication_role"), "migrated survivor: a replication role");
    check_exposition(text);
    free(text);

    /* A primary still connecting: "peer" is the destination, a string,
     * and there are no checkpoint figures yet beyond the count. */
    text = format("early", "{\"name\": \"early\", \"state\": \"running\", \"replication\": {\"role\": \"primary\","
                           " \"peer\": \"10.0.0.2:4700\", \"checkpoints\": 0, \"state\": \"connecting\"}}");
    CHECK(has_line(text, "colo_checkpoints_total{vm=\"early\"} 0"), "connecting: no checkpoint count");
    CHECK(has_line(text, "colo_replication_info{vm=\"early\",state=\"connecting\"} 1"), "connecting: no info");
    CHECK(!strstr(text, "colo_peer_"), "connecting: peer metrics from a string");
    CHECK(!strstr(text, "downtime"), "connecting: downtime without checkpoints");
    check_exposition(text);
    free(text);
}

/* A secondary after a failover: its own figures, in the families shared
 * with the primary's (dropped output, dropped mirror frames). */
static void test_secondary(void)
{
    char *text = format(
        "db", "{\"name\": \"db\", \"state\": \"running\", \"replication\": {\"role\": \"secondary\","
              " \"checkpoints\": 77, \"switchovers_refused\": 1, \"dropped_transmits\": 12, \"held_frames\": 0,"
              " \"switched_over\": false, \"released_at_failover\": 4, \"skipped_at_failover\": 3,"
              " \"primary_output_sent_at_failover\": 2, \"tcp_sequence_shift\": {\"carried_by_checkpoint\": 2},"
              " \"mirrored_frames_received\": 50, \"mirrored_frames_delivered\": 49, \"mirrored_frames_dropped\": 1,"
              " \"disks\": {\"replicated_disks\": 1, \"last_fold_blocks\": 3, \"last_fold_bytes\": 12288,"
              " \"last_fold_ms\": 0.25, \"memory_bytes\": 65536, \"failover_fold_blocks\": 9,"
              " \"failover_fold_bytes\": 36864, \"failover_fold_ms\": 1.5},"
              " \"heartbeat_timeout_ms\": 200, \"cluster\": {\"mode\": \"none\"}, \"state\": \"failed over\"}}");
    static const char *const expected[] = {
        "colo_replication_role{vm=\"db\",role=\"secondary\"} 1",
        "colo_replication_info{vm=\"db\",state=\"failed over\"} 1",
        "colo_checkpoints_total{vm=\"db\"} 77",
        "colo_output_frames_dropped_total{vm=\"db\",reason=\"checkpoint\"} 12",
        "colo_mirror_frames_dropped_total{vm=\"db\"} 1",
        "colo_mirror_frames_delivered_total{vm=\"db\"} 49",
        "colo_switched_over{vm=\"db\"} 0",
        "colo_output_frames_released_at_failover{vm=\"db\"} 4",
        "colo_output_frames_skipped_at_failover{vm=\"db\"} 3",
        "colo_tcp_sequence_shift_carried_connections{vm=\"db\"} 2",
        "colo_disk_failover_fold_seconds{vm=\"db\"} 0.0015",
        "colo_cluster_info{vm=\"db\",mode=\"none\"} 1",
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        CHECK(has_line(text, expected[i]), "secondary: no line %s", expected[i]);
    CHECK(!strstr(text, "reason=\"buffer_full\""), "secondary: the primary's buffer_full drops");
    CHECK(!strstr(text, "colo_mirror_frames_sent_total"), "secondary: the primary's mirrored frames");
    check_exposition(text);
    if (failures)
        fprintf(stderr, "---- the secondary's metrics ----\n%s", text);
    free(text);
}

int main(void)
{
    test_primary();
    test_secondary();
    test_without_replication();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("colo metrics: all checks passed\n");
    return 0;
}
