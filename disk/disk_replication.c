/* A protected VM's disks (disk_replication.h). */
#include "disk_replication.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk_history.h"
#include "disk_tracker.h"
#include "stream.h"
#include "virtio_blk.h"

/* ---- primary ---- */

int disk_replication_primary_init(struct disk_replication_primary *replication, struct machine *machine,
                                  const struct primary_disk_options *options, struct error *err)
{
    memset(replication, 0, sizeof *replication);
    if (disk_sync_source_init(&replication->sync, machine, options, err) < 0)
        return -1;
    pthread_mutex_init(&replication->lock, NULL);
    replication->disk_count = machine_disk_count(machine);
    for (unsigned i = 0; i < replication->disk_count; i++)
        primary_disk_device_init(&replication->devices[i], disk_sync_source_primary_disk(&replication->sync, i), i);
    return 0;
}

void disk_replication_primary_destroy(struct disk_replication_primary *replication)
{
    disk_sync_source_destroy(&replication->sync);
    replication->disk_count = 0;
    pthread_mutex_destroy(&replication->lock);
}

void disk_replication_primary_last_report(struct disk_replication_primary *replication,
                                          struct primary_disk_checkpoint_report *report)
{
    memset(report, 0, sizeof *report);
    pthread_mutex_lock(&replication->lock);
    for (unsigned i = 0; i < replication->disk_count; i++) {
        report->blocks += replication->devices[i].last.blocks;
        report->bytes += replication->devices[i].last.bytes;
        report->records += replication->devices[i].last.records;
        report->precopy_bytes += replication->devices[i].last.precopy_bytes;
    }
    pthread_mutex_unlock(&replication->lock);
}

static int primary_save(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct disk_replication_primary *replication = opaque;
    int status = 0;
    pthread_mutex_lock(&replication->lock);
    for (unsigned i = 0; i < replication->disk_count && status == 0; i++)
        if (replication->devices[i].disk &&
            primary_disk_checkpoint_device.save(&replication->devices[i], writer, err) < 0)
            status = -1;
    /* A save that succeeded is the checkpoint's: one that then fails to
     * reach the secondary ends the protection, and nothing is recorded. */
    if (status == 0)
        replication->checkpoints++;
    pthread_mutex_unlock(&replication->lock);
    return status;
}

int disk_replication_primary_record_history(struct disk_replication_primary *replication, char *why, size_t why_size,
                                            struct error *err)
{
    pthread_mutex_lock(&replication->lock);
    uint64_t checkpoint = replication->checkpoints;
    int status = 1;
    if (!atomic_load(&replication->sync.done)) {
        snprintf(why, why_size, "the initial copy did not complete");
        status = 0;
    }
    for (unsigned i = 0; i < replication->disk_count && status == 1; i++) {
        struct primary_disk_device *device = &replication->devices[i];
        if (!device->disk)
            continue;
        struct primary_disk_stats stats;
        primary_disk_get_stats(device->disk, &stats);
        if (stats.epoch_blocks || device->precopied.blocks) {
            snprintf(why, why_size, "disk %u was written after checkpoint %llu", i, (unsigned long long)checkpoint);
            status = 0;
        }
    }
    for (unsigned i = 0; i < replication->disk_count && status == 1; i++) {
        struct primary_disk_device *device = &replication->devices[i];
        if (!device->disk)
            continue;
        struct block_backend *image = primary_disk_backend(device->disk);
        struct disk_history history = { .checkpoint = checkpoint, .disk_size = image->size };
        memcpy(history.protection, replication->sync.protection, sizeof history.protection);
        int result = block_backend_flush(image);
        if (result < 0) {
            error_set(err, "disk %u: cannot flush image %s: %s", i, image->name, strerror(-result));
            status = -1;
        } else if (disk_history_write(image->name, &history, err) < 0) {
            error_prefix(err, "disk %u: ", i);
            status = -1;
        }
    }
    pthread_mutex_unlock(&replication->lock);
    return status;
}

void disk_replication_primary_tell_writes(struct disk_replication_primary *replication,
                                          void (*stream_wanted)(void *opaque), void *opaque)
{
    replication->stream_wanted = stream_wanted;
    replication->stream_wanted_opaque = opaque;
}

/* An epoch's first write asks for the stream phase: an idle disk costs the
 * loop no wake-up. */
static void primary_written(void *opaque)
{
    struct disk_replication_primary *replication = opaque;
    replication->stream_wanted(replication->stream_wanted_opaque);
}

/* VM paused, before it first runs replicated. A write the epoch already
 * has (since the initial copy) flipped no flag now: ask for it here. */
static int primary_setup(void *opaque)
{
    struct disk_replication_primary *replication = opaque;
    if (!replication->stream_wanted)
        return 0;
    bool written = false;
    for (unsigned i = 0; i < replication->disk_count; i++) {
        struct primary_disk *disk = replication->devices[i].disk;
        if (!disk)
            continue;
        primary_disk_set_written_hook(disk, primary_written, replication);
        written |= primary_disk_epoch_written(disk);
    }
    if (written)
        replication->stream_wanted(replication->stream_wanted_opaque);
    return 0;
}

/* The VM may run: each disk's lock makes sure no hook is under way after. */
static void primary_teardown(void *opaque)
{
    struct disk_replication_primary *replication = opaque;
    for (unsigned i = 0; i < replication->disk_count; i++)
        if (replication->devices[i].disk)
            primary_disk_set_written_hook(replication->devices[i].disk, NULL, NULL);
}

/* VM running: the epoch's writes so far go now, the pause sends only
 * those since. Each disk swaps its logs under its own lock: no pause of
 * the VM, which would hold up a request in flight (this runs every few
 * milliseconds while the guest writes). */
static int primary_precopy(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct disk_replication_primary *replication = opaque;
    bool written = false;
    for (unsigned i = 0; i < replication->disk_count; i++)
        written |= replication->devices[i].disk && primary_disk_epoch_written(replication->devices[i].disk);
    if (!written)
        return 0;
    for (unsigned i = 0; i < replication->disk_count; i++)
        if (replication->devices[i].disk)
            replication->devices[i].precopied.blocks += primary_disk_precopy_begin(replication->devices[i].disk);
    int status = 0;
    pthread_mutex_lock(&replication->lock);
    for (unsigned i = 0; i < replication->disk_count; i++) {
        if (!replication->devices[i].disk)
            continue;
        if (status == 0)
            status = primary_disk_device_precopy(&replication->devices[i], writer, err);
        else
            primary_disk_precopy_finish(replication->devices[i].disk); /* the loop ends on the error */
    }
    pthread_mutex_unlock(&replication->lock);
    return status;
}

/* Between checkpoints, the PVM running: the same as the pre-copy, so an
 * epoch's writes cross the wire as the guest makes them (every few
 * milliseconds while it writes, asked for by its first write) rather than
 * all at its end. */
const struct colo_checkpoint_device_ops disk_replication_primary_device = {
    .setup = primary_setup,
    .teardown = primary_teardown,
    .stream = primary_precopy,
    .precopy = primary_precopy,
    .save = primary_save,
};

/* ---- secondary ---- */

void disk_replication_secondary_init(struct disk_replication_secondary *replication, struct machine *machine,
                                     const struct secondary_disk_options *options)
{
    memset(replication, 0, sizeof *replication);
    replication->machine = machine;
    if (options)
        replication->options = *options;
    disk_sync_destination_init(&replication->sync, machine);
    pthread_mutex_init(&replication->lock, NULL);
}

void disk_replication_secondary_destroy(struct disk_replication_secondary *replication)
{
    pthread_mutex_destroy(&replication->lock);
}

/* After the initial copy, before the SVM first runs: from now on the SVM
 * writes to its overlays and the primary's writes wait in the buffers. */
static int secondary_setup(void *opaque)
{
    struct disk_replication_secondary *replication = opaque;
    struct machine *machine = replication->machine;
    unsigned count = machine_disk_count(machine);
    pthread_mutex_lock(&replication->lock);
    for (unsigned i = 0; i < count; i++) {
        struct virtio_blk *device = machine_disk(machine, i);
        struct block_backend *image = virtio_blk_backend(device);
        secondary_disk_device_init(&replication->devices[i], NULL, i);
        replication->disk_count = i;
        if (image->read_only)
            continue;
        /* Spilling goes beside the image unless told otherwise: that
         * filesystem is the one meant to hold this disk's bytes. */
        struct secondary_disk_options options = replication->options;
        char directory[4096];
        if (!options.spill_directory && options.buffer_limit_bytes) {
            const char *slash = strrchr(image->name, '/');
            if (slash)
                snprintf(directory, sizeof directory, "%.*s", (int)(slash - image->name), image->name);
            else
                snprintf(directory, sizeof directory, ".");
            options.spill_directory = directory[0] ? directory : "/";
        }
        struct secondary_disk *disk = secondary_disk_create(image, &options, &replication->setup_error);
        if (!disk) {
            pthread_mutex_unlock(&replication->lock);
            return -1;
        }
        if (!virtio_blk_replace_backend(device, secondary_disk_backend(disk)))
            abort(); /* same size and flag by construction */
        replication->devices[i].disk = disk;
    }
    replication->disk_count = count;
    pthread_mutex_unlock(&replication->lock);
    return 0;
}

/* A write for a disk this side does not replicate (read-only here) is an
 * error, never ignored: 0, or -1 with err set. */
static int refuse_read_only(const struct disk_replication_secondary *replication, uint32_t disk, struct error *err)
{
    if (disk >= replication->disk_count || !replication->devices[disk].disk)
        return error_set(err, "the checkpoint writes disk %u, which is read-only here", disk);
    return 0;
}

/* A disk write of the coming checkpoint as it arrives, streamed between
 * checkpoints (the SVM running: it never reads the buffer) or inside one
 * (the SVM paused): into its disk's buffer now, so the buffering overlaps
 * the transfer. If the checkpoint never arrives whole, load never comes
 * and failover drops the buffer. */
static int secondary_receive(void *opaque, const uint8_t *body, size_t length, struct error *err)
{
    struct disk_replication_secondary *replication = opaque;
    struct stream_disk_write write;
    stream_disk_write_fields(body, length, &write);
    pthread_mutex_lock(&replication->lock);
    int status = refuse_read_only(replication, write.disk, err);
    if (status == 0)
        status = secondary_disk_device_buffer_write(&replication->devices[write.disk], &write, err);
    pthread_mutex_unlock(&replication->lock);
    return status;
}

/* The checkpoint arrived whole and the SVM holds its memory: its disk
 * writes into the buffers (those the reader staged; with the loop's sink,
 * receive took them already). The fold into the bases waits for
 * preresume, after SVM_READY: the primary's pause does not wait for it. */
static int secondary_load(void *opaque, const struct stream_reader *reader, struct error *err)
{
    struct disk_replication_secondary *replication = opaque;
    size_t cursor = 0, length;
    const uint8_t *body;
    while (stream_received_disk_write_next(reader, &cursor, &body, &length)) {
        struct stream_disk_write write;
        stream_disk_write_fields(body, length, &write);
        if (refuse_read_only(replication, write.disk, err) < 0)
            return -1;
    }
    int status = 0;
    pthread_mutex_lock(&replication->lock);
    for (unsigned i = 0; i < replication->disk_count && status == 0; i++)
        if (replication->devices[i].disk && secondary_disk_device_buffer(&replication->devices[i], reader, err) < 0)
            status = -1;
    replication->loaded = status == 0;
    pthread_mutex_unlock(&replication->lock);
    return status;
}

/* Lock held: folds every disk's buffer of a loaded checkpoint. */
static int commit_loaded(struct disk_replication_secondary *replication, struct error *err)
{
    if (!replication->loaded)
        return 0;
    replication->loaded = false;
    for (unsigned i = 0; i < replication->disk_count; i++)
        if (replication->devices[i].disk && secondary_disk_device_commit(&replication->devices[i], err) < 0)
            return -1;
    replication->checkpoints_committed++;
    return 0;
}

/* After SVM_READY, before the SVM resumes. A failed fold leaves a broken
 * disk: the loop ends and the secondary refuses to take over. */
static int secondary_preresume(void *opaque)
{
    struct disk_replication_secondary *replication = opaque;
    pthread_mutex_lock(&replication->lock);
    int status = commit_loaded(replication, &replication->commit_error);
    pthread_mutex_unlock(&replication->lock);
    return status;
}

static void track_survivor(struct disk_replication_secondary *replication, unsigned i, const uint64_t *folded);

/* Every disk, even after one failed: the VM runs here now whatever
 * happens (colo_checkpoint_devices_failover); the first error. A
 * checkpoint that was loaded but not yet folded (the loop ended between
 * SVM_READY and preresume) is the SVM's memory already: folded first. */
static int secondary_failover(void *opaque, struct error *err)
{
    struct disk_replication_secondary *replication = opaque;
    int status = 0;
    pthread_mutex_lock(&replication->lock);
    if (commit_loaded(replication, err) < 0)
        status = -1;
    for (unsigned i = 0; i < replication->disk_count; i++) {
        struct error cause;
        if (!replication->devices[i].disk)
            continue;
        /* The overlay's blocks are the first the survivor wrote since its
         * last checkpoint: marked before the fold empties it. */
        uint64_t *folded = NULL;
        if (status == 0 && replication->sync.protection_known)
            folded = calloc(
                (secondary_disk_backend(replication->devices[i].disk)->size / SECONDARY_DISK_BLOCK_SIZE) / 64 + 2,
                sizeof *folded);
        if (folded)
            secondary_disk_mark_overlay(replication->devices[i].disk, folded);
        if (secondary_disk_checkpoint_device.failover(&replication->devices[i], &cause) < 0) {
            if (status == 0)
                *err = cause;
            status = -1;
        } else if (folded && status == 0) {
            track_survivor(replication, i, folded);
        }
        free(folded);
    }
    pthread_mutex_unlock(&replication->lock);
    return status;
}

/* Lock held, the SVM paused: the survivor's writes to disk i since its
 * last checkpoint (the folded overlay, then every request) are tracked,
 * for the next protection's sync. Without memory it is not: that sync
 * compares hashes. */
static void track_survivor(struct disk_replication_secondary *replication, unsigned i, const uint64_t *folded)
{
    struct virtio_blk *device = machine_disk(replication->machine, i);
    struct block_backend *backend = virtio_blk_backend(device);
    struct disk_history history = { .checkpoint = replication->checkpoints_committed, .disk_size = backend->size };
    memcpy(history.protection, replication->sync.protection, sizeof history.protection);
    struct error ignored;
    struct disk_tracker *tracker = disk_tracker_create(backend, &history, &ignored);
    if (!tracker)
        return;
    disk_tracker_mark_bitmap(tracker, folded);
    if (virtio_blk_replace_backend(device, disk_tracker_backend(tracker)) != backend)
        abort(); /* same size and flag by construction */
    replication->trackers[i] = tracker;
}

int disk_replication_secondary_record_history(struct disk_replication_secondary *replication, struct error *err)
{
    if (!replication->sync.protection_known)
        return error_set(err, "the primary sent no protection id (an older version): the images' history is "
                              "unknown");
    int status = 0;
    pthread_mutex_lock(&replication->lock);
    /* The setup wraps the disks after the initial copy: before, the
     * images are a mix of both sides (disk_sync.h). */
    if (replication->disk_count != machine_disk_count(replication->machine))
        status = error_set(err, "the initial copy did not complete");
    for (unsigned i = 0; i < replication->disk_count && status == 0; i++) {
        struct secondary_disk *disk = replication->devices[i].disk;
        if (!disk)
            continue;
        struct block_backend *image = secondary_disk_backend(disk);
        struct disk_history history = { .checkpoint = replication->checkpoints_committed, .disk_size = image->size };
        memcpy(history.protection, replication->sync.protection, sizeof history.protection);
        if (secondary_disk_flush_base(disk, err) < 0 || disk_history_write(image->name, &history, err) < 0)
            status = error_prefix(err, "disk %u: ", i);
    }
    pthread_mutex_unlock(&replication->lock);
    return status;
}

void disk_replication_secondary_get_stats(struct disk_replication_secondary *replication,
                                          struct disk_replication_secondary_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    pthread_mutex_lock(&replication->lock);
    for (unsigned i = 0; i < replication->disk_count; i++) {
        const struct secondary_disk_device *device = &replication->devices[i];
        if (!device->disk)
            continue;
        stats->replicated_disks++;
        stats->last_commit.blocks += device->last_commit.blocks;
        stats->last_commit.bytes += device->last_commit.bytes;
        stats->last_commit.writes += device->last_commit.writes;
        stats->last_commit.duration_ns += device->last_commit.duration_ns;
        stats->failover.blocks += device->failover.blocks;
        stats->failover.bytes += device->failover.bytes;
        stats->failover.writes += device->failover.writes;
        stats->failover.duration_ns += device->failover.duration_ns;
        stats->checkpoints_loaded = device->checkpoints_loaded;
        struct secondary_disk_stats disk;
        secondary_disk_get_stats(device->disk, &disk);
        stats->memory_bytes += disk.memory_bytes;
    }
    pthread_mutex_unlock(&replication->lock);
}

const struct colo_checkpoint_device_ops disk_replication_secondary_device = {
    .setup = secondary_setup,
    .receive = secondary_receive,
    .load = secondary_load,
    .preresume = secondary_preresume,
    .failover = secondary_failover,
};
