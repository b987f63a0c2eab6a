/* A VM's status reply as Prometheus text exposition format 0.0.4 (see
 * colo_metrics.h). */
#include "colo_metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_INFO };

/* One row of the table. Rows with the same name are one family: they sit
 * together, and the first row's type and HELP stand for all of them.
 *
 * A path is keys joined by dots, below the status object
 * ("replication.cluster.epoch"). One step may be an array, named with the
 * label its index becomes: "disks[disk].read_requests" gives one sample
 * per disk, labelled disk="0", disk="1", ... */
struct metric_definition {
    const char *name;
    enum metric_type type;
    /* Counter and gauge: the number (or true/false: 1/0). Info: the
     * object whose strings become labels. */
    const char *path;
    /* Counter and gauge: a fixed label, `name="value"`, or NULL. Info: the
     * keys of the strings, joined by commas; each is its label's name. */
    const char *labels;
    /* The JSON's unit to the metric's (milliseconds to seconds); 0: as is. */
    double scale;
    const char *help;
};

#define COUNTER(name, path, help)                 \
    {                                             \
        name, METRIC_COUNTER, path, NULL, 0, help \
    }
#define COUNTER_LABELED(name, label, path, help)   \
    {                                              \
        name, METRIC_COUNTER, path, label, 0, help \
    }
#define GAUGE(name, path, help)                 \
    {                                           \
        name, METRIC_GAUGE, path, NULL, 0, help \
    }
#define GAUGE_SCALED(name, path, scale, help)       \
    {                                               \
        name, METRIC_GAUGE, path, NULL, scale, help \
    }
#define GAUGE_LABELED(name, label, path, scale, help) \
    {                                                 \
        name, METRIC_GAUGE, path, label, scale, help  \
    }
#define INFO(name, path, keys, help)           \
    {                                          \
        name, METRIC_INFO, path, keys, 0, help \
    }

#define MILLISECONDS 0.001
#define MEBIBYTES 1048576.0
#define PERCENT 0.01

/* clang-format off */
static const struct metric_definition metrics[] = {
    /* The VM (vm/vm_control.c). */
    INFO("colo_vm_state", "", "state", "The VM's run state (running, paused, migrating, ...), as a label"),
    GAUGE("colo_uptime_seconds", "uptime_seconds", "Seconds since this colo process created the VM"),
    GAUGE_SCALED("colo_memory_bytes", "memory_mib", MEBIBYTES, "The VM's RAM"),
    COUNTER("colo_instructions_total", "instructions", "Instructions retired by hart 0"),
    GAUGE("colo_dirty_log_enabled", "dirty_log", "1 while the RAM's dirty log is on (migration, replication)"),
    INFO("colo_disk_info", "disks[disk]", "path", "A virtio disk's image"),
    GAUGE("colo_disk_read_only", "disks[disk].read_only", "1 for a read-only disk"),
    COUNTER("colo_disk_read_requests_total", "disks[disk].read_requests", "Read requests of the disk"),
    COUNTER("colo_disk_write_requests_total", "disks[disk].write_requests", "Write requests of the disk"),
    COUNTER("colo_disk_flush_requests_total", "disks[disk].flush_requests", "Flush requests of the disk"),
    COUNTER("colo_disk_failed_requests_total", "disks[disk].failed_requests", "Requests of the disk that failed"),
    INFO("colo_nic_info", "nics[nic]", "tap,mac", "A virtio NIC's TAP device and MAC address"),
    COUNTER("colo_nic_received_frames_total", "nics[nic].received_frames", "Frames the NIC gave the guest"),
    COUNTER("colo_nic_transmitted_frames_total", "nics[nic].transmitted_frames", "Frames the guest sent"),
    COUNTER_LABELED("colo_nic_dropped_frames_total", "reason=\"no_buffers\"", "nics[nic].dropped_no_buffers",
                    "Received frames dropped, by reason"),
    COUNTER_LABELED("colo_nic_dropped_frames_total", "reason=\"too_large\"", "nics[nic].dropped_too_large", NULL),
    COUNTER("colo_nic_transmit_errors_total", "nics[nic].transmit_errors", "Frames the backend failed to send"),
    COUNTER("colo_control_rejected_requests_total", "control_socket.rejected_requests",
            "Requests and clients the control socket refused (protocol mistakes, too many clients)"),

    /* COLO replication (vm/vm_replication*.c): absent while unprotected. */
    INFO("colo_replication_role", "replication", "role", "The VM's replication role (primary, secondary)"),
    INFO("colo_replication_info", "replication", "state,ended",
         "The replication's state and, once it has ended, why"),
    COUNTER("colo_checkpoints_total", "replication.checkpoints", "Checkpoints taken (primary) or applied (secondary)"),
    COUNTER_LABELED("colo_checkpoints_triggered_total", "trigger=\"output\"", "replication.checkpoints_by_output",
                    "Checkpoints taken early, by what asked for them"),
    COUNTER_LABELED("colo_checkpoints_triggered_total", "trigger=\"request\"", "replication.checkpoints_by_request",
                    NULL),
    GAUGE_LABELED("colo_checkpoint_downtime_seconds", "quantile=\"0.5\"", "replication.downtime_p50_ms",
                  MILLISECONDS, "How long checkpoints paused the primary's VM, percentiles of the last 1024"),
    GAUGE_LABELED("colo_checkpoint_downtime_seconds", "quantile=\"0.99\"", "replication.downtime_p99_ms",
                  MILLISECONDS, NULL),
    GAUGE_SCALED("colo_checkpoint_downtime_max_seconds", "replication.downtime_max_ms", MILLISECONDS,
                 "The longest pause of a checkpoint so far"),
    GAUGE_SCALED("colo_checkpoint_interval_seconds", "replication.interval_ms", MILLISECONDS,
                 "The longest time between checkpoints (--interval)"),
    GAUGE_SCALED("colo_output_delay_seconds", "replication.output_delay_ms", MILLISECONDS,
                 "At most this long after output is held, a checkpoint is taken (--output-delay)"),
    GAUGE("colo_initial_copy_started", "replication.initial_copy_started",
          "1 once the primary's initial copy to the secondary has started"),
    INFO("colo_last_checkpoint_info", "replication.last_checkpoint", "trigger", "What started the last checkpoint"),
    GAUGE("colo_last_checkpoint_number", "replication.last_checkpoint.number", "The last checkpoint's number"),
    GAUGE("colo_last_checkpoint_dirty_pages", "replication.last_checkpoint.dirty_pages",
          "Pages the last checkpoint sent, its pre-copy included"),
    GAUGE("colo_last_checkpoint_precopy_pages", "replication.last_checkpoint.precopy_pages",
          "Of those, the pages sent before the pause (pre-copy)"),
    GAUGE("colo_last_checkpoint_precopy_rounds", "replication.last_checkpoint.precopy_rounds",
          "Rounds of pages the last checkpoint sent before the pause"),
    GAUGE("colo_last_checkpoint_precopy_confirmed", "replication.last_checkpoint.precopy_confirmed",
          "1 if the secondary had (most of) the last pre-copy before the pause"),
    GAUGE("colo_last_checkpoint_resumed_before_ready", "replication.last_checkpoint.resumed_before_ready",
          "1 if the primary's VM ran on while the secondary applied the last checkpoint"),
    GAUGE("colo_last_checkpoint_bytes", "replication.last_checkpoint.bytes", "Bytes the last checkpoint sent"),
    GAUGE_SCALED("colo_last_checkpoint_downtime_seconds", "replication.last_checkpoint.downtime_ms", MILLISECONDS,
                 "How long the last checkpoint paused the primary's VM"),
    GAUGE_LABELED("colo_last_checkpoint_phase_seconds", "phase=\"suspend\"", "replication.last_checkpoint.suspend_ms",
                  MILLISECONDS, "How long each phase of the last checkpoint took"),
    GAUGE_LABELED("colo_last_checkpoint_phase_seconds", "phase=\"pause\"", "replication.last_checkpoint.pause_ms",
                  MILLISECONDS, NULL),
    GAUGE_LABELED("colo_last_checkpoint_phase_seconds", "phase=\"send\"", "replication.last_checkpoint.send_ms",
                  MILLISECONDS, NULL),
    GAUGE_LABELED("colo_last_checkpoint_phase_seconds", "phase=\"apply\"", "replication.last_checkpoint.apply_ms",
                  MILLISECONDS, NULL),
    GAUGE_LABELED("colo_last_checkpoint_phase_seconds", "phase=\"resume\"", "replication.last_checkpoint.resume_ms",
                  MILLISECONDS, NULL),
    GAUGE_LABELED("colo_last_checkpoint_phase_seconds", "phase=\"confirm\"", "replication.last_checkpoint.confirm_ms",
                  MILLISECONDS, NULL),
    GAUGE_LABELED("colo_last_checkpoint_phase_seconds", "phase=\"output\"", "replication.last_checkpoint.output_ms",
                  MILLISECONDS, NULL),
    GAUGE("colo_last_checkpoint_disk_blocks", "replication.last_checkpoint_disk_blocks",
          "Disk blocks the last checkpoint sent"),
    GAUGE("colo_last_checkpoint_disk_bytes", "replication.last_checkpoint_disk_bytes",
          "Disk bytes the last checkpoint sent"),

    /* Held output and the input mirror (proxy/). */
    GAUGE("colo_output_frames_held", "replication.held_frames", "Output frames held until the next checkpoint"),
    COUNTER("colo_output_frames_buffered_total", "replication.held_total", "Output frames the buffer has held"),
    COUNTER("colo_output_frames_released_total", "replication.released_total",
            "Held output frames released after their checkpoint"),
    COUNTER_LABELED("colo_output_frames_dropped_total", "reason=\"buffer_full\"", "replication.held_dropped",
                    "Output frames dropped, by reason"),
    COUNTER_LABELED("colo_output_frames_dropped_total", "reason=\"checkpoint\"", "replication.dropped_transmits",
                    NULL),
    COUNTER("colo_output_releases_refused_total", "replication.releases_refused",
            "Releases of held output the takeover guard refused"),
    GAUGE("colo_output_frames_released_at_failover", "replication.released_at_failover",
          "The secondary's held output frames sent at its failover"),
    GAUGE("colo_output_frames_skipped_at_failover", "replication.skipped_at_failover",
          "The secondary's held frames its failover left out (newer ones of their flow went)"),
    GAUGE("colo_committed_output_frames_sent_at_failover", "replication.primary_output_sent_at_failover",
          "The primary's committed output frames the secondary sent at its failover"),
    COUNTER("colo_mirror_frames_sent_total", "replication.mirrored_frames",
            "Client frames the primary mirrored to the secondary"),
    COUNTER("colo_mirror_frames_received_total", "replication.mirrored_frames_received",
            "Mirrored client frames the secondary received"),
    COUNTER("colo_mirror_frames_delivered_total", "replication.mirrored_frames_delivered",
            "Mirrored client frames the secondary gave its VM"),
    COUNTER("colo_mirror_frames_dropped_total", "replication.mirror_dropped", "Mirrored client frames dropped"),
    COUNTER("colo_mirror_frames_dropped_total", "replication.mirrored_frames_dropped", NULL),
    COUNTER("colo_mirror_frames_already_in_checkpoint_total", "replication.mirrored_frames_already_in_checkpoint",
            "Mirrored client frames the secondary did not give its VM: a checkpoint it holds has them"),
    /* The comparing proxy (proxy/output_buffer.c, issue 14): the primary's
     * compare, the secondary's return path and sequence shift. */
    INFO("colo_output_mode", "replication", "output_mode", "How the primary releases output: compare or buffered"),
    INFO("colo_compare_mode", "replication.compare", "mode_now,reason",
         "What the compare does now (buffered after a checkpoint storm) and why"),
    COUNTER("colo_compare_released_matched_total", "replication.compare.released_matched",
            "Output frames released because the secondary's VM sent the same"),
    GAUGE_LABELED("colo_compare_match_wait_seconds", "quantile=\"0.5\"", "replication.compare.match_wait_p50_ms",
                  MILLISECONDS, "How long output released by a match waited for the secondary's twin, percentiles of "
                                "the last 1024"),
    GAUGE_LABELED("colo_compare_match_wait_seconds", "quantile=\"0.99\"", "replication.compare.match_wait_p99_ms",
                  MILLISECONDS, NULL),
    COUNTER("colo_compare_released_at_once_total", "replication.compare.released_at_once",
            "Output frames released without a twin (pure TCP acknowledgements)"),
    COUNTER("colo_compare_matched_bytes_total", "replication.compare.matched_bytes", "TCP payload bytes matched"),
    COUNTER("colo_compare_secondary_frames_total", "replication.compare.secondary_frames",
            "The secondary VM's frames compared"),
    COUNTER("colo_compare_secondary_frames_stale_total", "replication.compare.secondary_frames_stale",
            "The secondary VM's frames of an epoch already checkpointed (ignored)"),
    COUNTER("colo_compare_checkpoints_total", "replication.compare.checkpoints_by_difference",
            "Checkpoints a difference or a timeout asked for"),
    COUNTER("colo_compare_storms_total", "replication.compare.storms",
            "Checkpoint storms: falls back to releasing output per checkpoint"),
    COUNTER_LABELED("colo_compare_differences_total", "cause=\"payload\"", "replication.compare.differences.payload",
                    "Output differences between the two VMs, by cause"),
    COUNTER_LABELED("colo_compare_differences_total", "cause=\"tcp_event\"", "replication.compare.differences.tcp_event",
                    NULL),
    COUNTER_LABELED("colo_compare_differences_total", "cause=\"timeout\"", "replication.compare.differences.timeout",
                    NULL),
    COUNTER_LABELED("colo_compare_differences_total", "cause=\"protocol\"", "replication.compare.differences.protocol",
                    NULL),
    COUNTER_LABELED("colo_compare_differences_total", "cause=\"parse_error\"",
                    "replication.compare.differences.parse_error", NULL),
    COUNTER_LABELED("colo_compare_differences_total", "cause=\"overflow\"", "replication.compare.differences.overflow",
                    NULL),
    COUNTER_LABELED("colo_compare_timeouts_total", "waiting_for=\"data\"", "replication.compare.timeouts_waiting_for.data",
                    "Output frames without their twin in time, by what they waited for of the secondary's VM"),
    COUNTER_LABELED("colo_compare_timeouts_total", "waiting_for=\"ack\"", "replication.compare.timeouts_waiting_for.ack",
                    NULL),
    COUNTER_LABELED("colo_compare_timeouts_total", "waiting_for=\"tcp_event\"",
                    "replication.compare.timeouts_waiting_for.tcp_event", NULL),
    COUNTER_LABELED("colo_compare_timeouts_total", "waiting_for=\"other\"",
                    "replication.compare.timeouts_waiting_for.other", NULL),
    COUNTER_LABELED("colo_compare_dropped_total", "reason=\"held_full\"", "replication.compare.dropped.held_full",
                    "Frames the compare could not track or buffer, by reason"),
    COUNTER_LABELED("colo_compare_dropped_total", "reason=\"flow_table_full\"",
                    "replication.compare.dropped.flow_table_full", NULL),
    COUNTER_LABELED("colo_compare_dropped_total", "reason=\"buffer_full\"", "replication.compare.dropped.buffer_full",
                    NULL),
    COUNTER_LABELED("colo_compare_dropped_total", "reason=\"out_of_order\"", "replication.compare.dropped.out_of_order",
                    NULL),
    COUNTER("colo_compare_returned_frames_total", "replication.returned_frames",
            "The secondary VM's frames sent back to the primary for the compare"),
    COUNTER("colo_compare_returned_frames_dropped_total", "replication.returned_frames_dropped",
            "The secondary VM's frames not sent back (the connection was full)"),
    COUNTER("colo_tcp_sequence_shift_connections_total", "replication.tcp_sequence_shift.connections",
            "TCP connections the secondary's VM opened since a checkpoint"),
    COUNTER("colo_tcp_sequence_shift_offsets_total", "replication.tcp_sequence_shift.offsets_learned",
            "Sequence offsets the secondary learned (connections shifted)"),
    GAUGE("colo_tcp_sequence_shift_carried_connections", "replication.compare.shifted_connections_carried",
          "A primary that took over: its shifted connections the last checkpoint carried to the secondary"),
    GAUGE("colo_tcp_sequence_shift_carried_connections", "replication.tcp_sequence_shift.carried_by_checkpoint",
          NULL),
    /* A survivor's VM that came by a migration or a save file: in no
     * replication role, its host shifts what the VM brought. */
    GAUGE("colo_tcp_sequence_shift_carried_connections", "tcp_sequence_shift.carried_by_checkpoint", NULL),

    /* Heartbeats, switchover, failover. */
    GAUGE_SCALED("colo_heartbeat_timeout_seconds", "replication.heartbeat_timeout_ms", MILLISECONDS,
                 "Silence after which the peer counts as dead"),
    COUNTER("colo_switchovers_refused_total", "replication.switchovers_refused",
            "Switchovers the secondary refused"),
    GAUGE("colo_switched_over", "replication.switched_over",
          "After a takeover: 1 if it was a planned switchover, 0 for a failover"),
    INFO("colo_switchover_info", "replication.switchover", "outcome,error", "How the last switchover went"),
    GAUGE_SCALED("colo_switchover_gap_seconds", "replication.switchover.gap_ms", MILLISECONDS,
                 "How long the last switchover left the VM running nowhere"),

    /* Disks: the initial sync (primary), the buffers and folds (secondary). */
    GAUGE("colo_disk_sync_done", "replication.disk_sync.done", "1 once the disks' initial sync is done"),
    GAUGE("colo_disk_sync_total_bytes", "replication.disk_sync.bytes_total", "Bytes of the disks to sync"),
    GAUGE("colo_disk_sync_compared_bytes", "replication.disk_sync.bytes_compared", "Bytes compared by hash so far"),
    GAUGE("colo_disk_sync_sent_bytes", "replication.disk_sync.bytes_sent", "Disk bytes the sync has sent"),
    GAUGE("colo_disk_sync_planned_bytes", "replication.disk_sync.bytes_planned", "Bytes the sync's plan covers"),
    GAUGE("colo_disk_sync_done_bytes", "replication.disk_sync.bytes_done", "Bytes of the plan done"),
    GAUGE_SCALED("colo_disk_sync_progress_ratio", "replication.disk_sync.percent", PERCENT,
                 "The sync's progress, 0 to 1"),
    GAUGE("colo_disk_sync_chunks_differing", "replication.disk_sync.chunks_differing",
          "Chunks whose hashes differed"),
    GAUGE("colo_disk_sync_dirty_rounds", "replication.disk_sync.dirty_rounds", "Rounds of blocks written meanwhile"),
    GAUGE("colo_disk_sync_final_blocks", "replication.disk_sync.final_blocks", "Blocks sent in the stop-and-copy"),
    GAUGE("colo_disk_sync_tracked_blocks_sent", "replication.disk_sync.tracked_blocks_sent",
          "Blocks an incremental sync sent from the images' histories"),
    GAUGE("colo_replicated_disks", "replication.disks.replicated_disks", "Disks the secondary replicates"),
    GAUGE("colo_disk_last_fold_blocks", "replication.disks.last_fold_blocks",
          "Blocks the last checkpoint folded into the images"),
    GAUGE("colo_disk_last_fold_bytes", "replication.disks.last_fold_bytes",
          "Bytes the last checkpoint folded into the images"),
    GAUGE_SCALED("colo_disk_last_fold_seconds", "replication.disks.last_fold_ms", MILLISECONDS,
                 "How long the last fold took"),
    GAUGE("colo_disk_buffer_memory_bytes", "replication.disks.memory_bytes",
          "Memory the secondary's disk buffers use"),
    GAUGE("colo_disk_failover_fold_blocks", "replication.disks.failover_fold_blocks",
          "Blocks folded at the failover"),
    GAUGE("colo_disk_failover_fold_bytes", "replication.disks.failover_fold_bytes", "Bytes folded at the failover"),
    GAUGE_SCALED("colo_disk_failover_fold_seconds", "replication.disks.failover_fold_ms", MILLISECONDS,
                 "How long the failover's fold took"),

    /* Who may own the VM (cluster/, docs/cluster.md). */
    INFO("colo_cluster_info", "replication.cluster", "mode,decision,reason",
         "The cluster mode and the takeover guard's decision"),
    GAUGE("colo_cluster_connected", "replication.cluster.connected", "1 while connected to Corosync"),
    GAUGE("colo_cluster_node_id", "replication.cluster.node", "This host's Corosync node id"),
    GAUGE("colo_cluster_peer_node_id", "replication.cluster.peer_node", "The peer's Corosync node id"),
    GAUGE("colo_cluster_peer_present", "replication.cluster.peer_present", "1 while the peer is in the group"),
    GAUGE("colo_cluster_ring_id", "replication.cluster.ring", "The current ring's id"),
    GAUGE("colo_cluster_ring_members", "replication.cluster.ring_members", "Nodes in the current ring"),
    GAUGE("colo_cluster_quorate", "replication.cluster.quorate", "1 while this node's partition has quorum"),
    GAUGE("colo_cluster_quorum_ring_id", "replication.cluster.quorum_ring", "The ring of the last quorum report"),
    GAUGE("colo_cluster_epoch", "replication.cluster.epoch", "The ownership epoch"),
    GAUGE("colo_cluster_frozen", "replication.cluster.frozen", "1 after waking from a freeze, unconfirmed"),
    COUNTER("colo_cluster_messages_rejected_total", "replication.cluster.messages_rejected",
            "Malformed cluster messages ignored"),

    /* The replication peer and who was turned away (docs/security.md). */
    INFO("colo_peer_info", "replication.peer", "transport,peer,last_refusal",
         "The replication connection's transport, its peer and the last refusal"),
    GAUGE("colo_peer_authenticated", "replication.peer.authenticated", "1 if the peer was authenticated"),
    COUNTER_LABELED("colo_peer_refused_total", "reason=\"authentication\"", "replication.peer.refused_authentication",
                    "Connections refused, by reason"),
    COUNTER_LABELED("colo_peer_refused_total", "reason=\"hello\"", "replication.peer.refused_hello", NULL),
    COUNTER_LABELED("colo_peer_refused_total", "reason=\"unpaired\"", "replication.peer.refused_unpaired", NULL),
    COUNTER_LABELED("colo_peer_refused_total", "reason=\"during_run\"", "replication.peer.refused_during_run", NULL),
};
/* clang-format on */

#define METRIC_COUNT (sizeof metrics / sizeof metrics[0])

/* The value at a dotted PATH (LENGTH bytes) below OBJECT; "" is OBJECT. */
static const json_t *lookup(const json_t *object, const char *path, size_t length)
{
    const char *end = path + length;
    while (object && path < end) {
        const char *dot = memchr(path, '.', (size_t)(end - path));
        size_t segment = (size_t)((dot ? dot : end) - path);
        char key[64];
        if (segment >= sizeof key)
            return NULL;
        memcpy(key, path, segment);
        key[segment] = '\0';
        object = json_object_get(object, key);
        path = dot ? dot + 1 : end;
    }
    return object;
}

static void write_escaped(FILE *out, const char *text, bool quotes)
{
    for (; *text; text++) {
        if (*text == '\\')
            fputs("\\\\", out);
        else if (*text == '\n')
            fputs("\\n", out);
        else if (*text == '"' && quotes)
            fputs("\\\"", out);
        else
            fputc(*text, out);
    }
}

static void write_label(FILE *out, const char *name, const char *value)
{
    fprintf(out, ",%s=\"", name);
    write_escaped(out, value, true);
    fputc('"', out);
}

/* A sample's value: integers exactly, reals and scaled figures as the
 * shortest text that reads back the same at double precision. */
static bool write_value(FILE *out, const json_t *value, double scale)
{
    double number;
    if (json_is_boolean(value)) {
        number = json_is_true(value) ? 1 : 0;
    } else if (json_is_integer(value) && scale == 0) {
        fprintf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        return true;
    } else if (json_is_number(value)) {
        number = json_number_value(value) * (scale == 0 ? 1 : scale);
    } else {
        return false;
    }
    if (isnan(number))
        fputs("NaN", out);
    else if (isinf(number))
        fputs(number > 0 ? "+Inf" : "-Inf", out);
    else
        fprintf(out, "%.15g", number);
    return true;
}

/* One sample of DEFINITION from VALUE (an array element's when INDEX_LABEL
 * is set), if VALUE has what it needs. False when out of memory. */
static bool write_sample(FILE *out, const struct metric_definition *definition, const char *vm_name,
                         const json_t *value, const char *index_label, size_t index)
{
    char *text = NULL;
    size_t size = 0;
    FILE *sample = open_memstream(&text, &size);
    if (!sample)
        return false;
    fprintf(sample, "%s{vm=\"", definition->name);
    write_escaped(sample, vm_name, true);
    fputc('"', sample);
    if (index_label)
        fprintf(sample, ",%s=\"%zu\"", index_label, index);
    bool complete;
    if (definition->type == METRIC_INFO) {
        int strings = 0;
        for (const char *key = definition->labels; *key;) {
            const char *comma = strchr(key, ',');
            size_t length = comma ? (size_t)(comma - key) : strlen(key);
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)length, key);
            const char *string = json_string_value(json_object_get(value, name));
            if (string) {
                write_label(sample, name, string);
                strings++;
            }
            key += length + (comma ? 1 : 0);
        }
        fputs("} 1\n", sample);
        complete = strings > 0;
    } else {
        if (definition->labels)
            fprintf(sample, ",%s", definition->labels);
        fputs("} ", sample);
        complete = write_value(sample, value, definition->scale);
        fputc('\n', sample);
    }
    bool written = fclose(sample) == 0;
    if (written && complete)
        fputs(text, out);
    free(text);
    return written;
}

/* Every sample of DEFINITION in STATUS. False when out of memory. */
static bool write_samples(FILE *out, const struct metric_definition *definition, const char *vm_name,
                          const json_t *status)
{
    const char *path = definition->path;
    const char *bracket = strchr(path, '[');
    if (!bracket) {
        const json_t *value = lookup(status, path, strlen(path));
        return !value || write_sample(out, definition, vm_name, value, NULL, 0);
    }
    /* "disks[disk].read_requests": the array, the index's label, the rest. */
    const char *close = strchr(bracket, ']');
    if (!close)
        abort(); /* a row of the table is malformed */
    char index_label[32];
    snprintf(index_label, sizeof index_label, "%.*s", (int)(close - bracket - 1), bracket + 1);
    const char *rest = close[1] == '.' ? close + 2 : close + 1;
    const json_t *array = lookup(status, path, (size_t)(bracket - path));
    size_t index;
    const json_t *element;
    json_array_foreach(array, index, element)
    {
        const json_t *value = lookup(element, rest, strlen(rest));
        if (value && !write_sample(out, definition, vm_name, value, index_label, index))
            return false;
    }
    return true;
}

char *colo_metrics_format(const char *vm_name, const json_t *status)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out)
        return NULL;
    for (size_t first = 0; first < METRIC_COUNT; first++) {
        const struct metric_definition *family = &metrics[first];
        bool seen = false;
        for (size_t earlier = 0; earlier < first && !seen; earlier++)
            seen = strcmp(metrics[earlier].name, family->name) == 0;
        if (seen)
            continue;
        /* The family's samples first: no HELP and TYPE for an empty one. */
        char *samples = NULL;
        size_t samples_size = 0;
        FILE *samples_out = open_memstream(&samples, &samples_size);
        if (!samples_out) {
            fclose(out);
            free(text);
            return NULL;
        }
        bool written = true;
        for (size_t row = first; row < METRIC_COUNT && written; row++)
            if (strcmp(metrics[row].name, family->name) == 0)
                written = write_samples(samples_out, &metrics[row], vm_name, status);
        if (fclose(samples_out) != 0 || !written) {
            free(samples);
            fclose(out);
            free(text);
            return NULL;
        }
        if (samples_size > 0) {
            fprintf(out, "# HELP %s ", family->name);
            write_escaped(out, family->help ? family->help : "", false);
            fprintf(out, "\n# TYPE %s %s\n%s", family->name, family->type == METRIC_COUNTER ? "counter" : "gauge",
                    samples);
        }
        free(samples);
    }
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
