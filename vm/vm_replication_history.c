/* COLO for one VM: the images' histories (docs/replication.md,
 * "Reprotect and the image's history"). A VM that starts on an image
 * whose history is valid tracks its writes from there (and removes the
 * history: the image changes now); a secondary tells its images'
 * histories to the primary's sync; either side that ends on purpose with
 * its images exactly at a checkpoint records it; and the initial sync's
 * progress is shown and posted (mode per disk, bytes). */
#include "vm_replication_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "disk_tracker.h"
#include "machine.h"
#include "virtio_blk.h"

/* The first bytes of a protection id, enough to tell them apart in a log. */
static void protection_text(const uint8_t protection[DISK_HISTORY_PROTECTION_SIZE], char text[17])
{
    for (int i = 0; i < 8; i++)
        snprintf(text + 2 * i, 3, "%02x", protection[i]);
}

void vm_replication_start_disks(struct vm_replication *replication, struct machine *machine, bool track)
{
    for (unsigned i = 0; i < machine_disk_count(machine); i++) {
        struct virtio_blk *device = machine_disk(machine, i);
        struct block_backend *image = virtio_blk_backend(device);
        if (image->read_only)
            continue;
        struct disk_history history;
        char why[700];
        struct error err;
        bool known = disk_history_read(image->name, &history, why, sizeof why);
        if (known && track) {
            struct disk_tracker *tracker = disk_tracker_create(image, &history, &err);
            if (tracker && virtio_blk_replace_backend(device, disk_tracker_backend(tracker)) == image) {
                char protection[17];
                protection_text(history.protection, protection);
                fprintf(stderr,
                        "colo: %s: disk %u (%s) is checkpoint %" PRIu64 " of protection %s: its writes are "
                        "tracked from there (a reprotect sends only those)\n",
                        replication->name, i, image->name, history.checkpoint, protection);
            } else if (!tracker) {
                fprintf(stderr, "colo: %s: disk %u: its writes are not tracked: %s\n", replication->name, i,
                        err.message);
            }
        } else if (!known && !strstr(why, "none (")) {
            fprintf(stderr, "colo: %s: disk %u: history unknown: %s\n", replication->name, i, why);
        }
        /* The image changes from now on: its history goes first. */
        if (disk_history_invalidate(image->name, &err) < 0)
            fprintf(stderr, "colo: %s: disk %u: %s\n", replication->name, i, err.message);
    }
}

static void log_unknown_history(void *opaque, unsigned disk, const char *reason)
{
    struct vm_replication *replication = opaque;
    vm_replication_log(replication, "disk %u: history unknown (%s): the primary compares hashes", disk, reason);
}

void vm_replication_read_secondary_histories(struct vm_replication *replication)
{
    struct disk_sync_destination *sync = &replication->secondary_disks.sync;
    disk_sync_destination_read_histories(sync, log_unknown_history, replication);
    for (unsigned i = 0; i < MACHINE_MAX_DISKS; i++)
        if (sync->history_known[i]) {
            char protection[17];
            protection_text(sync->history[i].protection, protection);
            vm_replication_log(replication, "disk %u is checkpoint %" PRIu64 " of protection %s", i,
                               sync->history[i].checkpoint, protection);
        }
}

int vm_replication_record_disk_history(struct vm_replication *replication)
{
    pthread_mutex_lock(&replication->lock);
    enum vm_replication_role role = replication->role;
    bool primary = role == ROLE_PRIMARY && replication->primary_disks_initialized;
    bool secondary = role == ROLE_SECONDARY && replication->secondary_disks_initialized && !replication->failover_done;
    pthread_mutex_unlock(&replication->lock);
    struct error err;
    char why[300] = "";
    int status = 0;
    uint64_t checkpoint = 0;
    const uint8_t *id = NULL;
    if (primary) {
        status = disk_replication_primary_record_history(&replication->primary_disks, why, sizeof why, &err);
        checkpoint = replication->primary_disks.checkpoints;
        id = replication->primary_disks.sync.protection;
    } else if (secondary) {
        status = disk_replication_secondary_record_history(&replication->secondary_disks, &err) == 0 ? 1 : -1;
        checkpoint = replication->secondary_disks.checkpoints_committed;
        id = replication->secondary_disks.sync.protection;
    } else {
        return 0;
    }
    char detail[600];
    if (status == 1) {
        char protection[17];
        protection_text(id, protection);
        snprintf(detail, sizeof detail, "checkpoint %" PRIu64 " of protection %s", checkpoint, protection);
        vm_replication_log(replication, "the disks are %s: history recorded (a reprotect can be incremental)", detail);
        vm_replication_post_event(replication, "disk history recorded", detail);
    } else {
        snprintf(detail, sizeof detail, "%s", status == 0 ? why : err.message);
        vm_replication_log(replication, "the disks' history is not recorded: %s", detail);
        vm_replication_post_event(replication, "disk history unknown", detail);
    }
    return status;
}

json_t *vm_replication_disk_sync_json(const struct disk_sync_progress *progress)
{
    json_t *modes = json_array();
    for (unsigned i = 0; i < progress->disk_count && i < MACHINE_MAX_DISKS; i++)
        json_array_append_new(modes, json_string(disk_sync_mode_name(progress->modes[i])));
    double percent = progress->done ? 100.0
                     : progress->bytes_planned == 0
                         ? 0.0
                         : 100.0 * (double)progress->bytes_done / (double)progress->bytes_planned;
    if (percent > 100.0)
        percent = 100.0;
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o, s:I, s:I, s:I, s:f}", "bytes_total",
        (json_int_t)progress->bytes_total, "bytes_compared", (json_int_t)progress->bytes_compared, "chunks_differing",
        (json_int_t)progress->chunks_differing, "bytes_sent", (json_int_t)progress->bytes_sent, "dirty_rounds",
        (json_int_t)progress->dirty_rounds, "final_blocks", (json_int_t)progress->final_blocks, "done", progress->done,
        "modes", modes, "tracked_blocks_sent", (json_int_t)progress->tracked_blocks_sent, "bytes_planned",
        (json_int_t)progress->bytes_planned, "bytes_done", (json_int_t)progress->bytes_done, "percent", percent);
}

void vm_replication_describe_disk_sync(const struct disk_sync_progress *progress, char *text, size_t size)
{
    size_t used = 0;
    text[0] = '\0';
    for (unsigned i = 0; i < progress->disk_count && i < MACHINE_MAX_DISKS && used < size; i++)
        used += (size_t)snprintf(text + used, size - used, "%sdisk %u %s", i ? ", " : "", i,
                                 disk_sync_mode_name(progress->modes[i]));
    if (used < size)
        snprintf(text + used, size - used,
                 "; %" PRIu64 " tracked blocks sent, %" PRIu64 " bytes compared, %" PRIu64 " bytes sent in all",
                 progress->tracked_blocks_sent, progress->bytes_compared, progress->bytes_sent);
}
