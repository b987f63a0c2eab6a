/* A protected VM's disks, on each side (../shared/DESIGN.md, "Disk
 * replication"; docs/replication.md has the protocol): what vm/ puts
 * into the COLO loops, one checkpoint device for all of a machine's disks.
 *
 *   primary    disk_replication_primary_init wraps every writable disk
 *              in a primary_disk (disk_sync.h) before the initial copy;
 *              the initial copy carries the sync (companion); each
 *              checkpoint's save sends every disk's epoch (DISK_WRITE
 *              records); _destroy, once replication has ended, takes the
 *              wrappers out again.
 *   secondary  the initial copy writes the primary's blocks straight into
 *              the images (disk_sync_destination); setup, before the SVM
 *              first runs, wraps every writable disk in a secondary_disk;
 *              each checkpoint's records are buffered as they arrive
 *              (receive), its load marks them whole, and
 *              preresume (after SVM_READY: not in the primary's pause)
 *              folds them into the bases; failover folds a loaded
 *              checkpoint not yet folded, then the SVM's own writes. A record for
 *              a disk that is read-only here is an error, never ignored.
 *
 * The wrappers belong to the virtio-blk devices once in place (the
 * secondary's stay after failover: they pass every request through).
 *
 * Both sides number the checkpoints alike: 0 is the end of the initial
 * copy, each checkpoint the primary saved and the secondary folded counts
 * one. With the protection's id (drawn by the primary, told to the
 * secondary in the initial sync's plan) that names a state of the images
 * (disk_history.h): a side that ends on purpose with its images exactly
 * at a checkpoint records it (_record_history), and a secondary that
 * fails over tracks its writes since its last checkpoint (disk_tracker.h)
 * so that the next protection sends only those. */
#ifndef COLO_DISK_DISK_REPLICATION_H
#define COLO_DISK_DISK_REPLICATION_H

#include <pthread.h>
#include <stdbool.h>

#include "checkpoint_device.h"
#include "disk_checkpoint_device.h"
#include "disk_sync.h"

struct disk_replication_primary {
    struct disk_sync_source sync;
    unsigned disk_count;
    struct primary_disk_device devices[MACHINE_MAX_DISKS]; /* .disk NULL: read-only */
    uint64_t checkpoints;                                  /* saved; under lock */
    /* Guards the devices' reports: the loop saves, status reads. */
    pthread_mutex_t lock;
    /* Told of an epoch's first write on any disk, from the device's setup
     * to its teardown (disk_replication_primary_tell_writes). */
    void (*stream_wanted)(void *opaque);
    void *stream_wanted_opaque;
};

/* Machine paused: see disk_sync_source_init. */
int disk_replication_primary_init(struct disk_replication_primary *replication, struct machine *machine,
                                  const struct primary_disk_options *options, struct error *err);
/* Machine paused (or the loop over): the images go back under the disks. */
void disk_replication_primary_destroy(struct disk_replication_primary *replication);
/* The last checkpoint's disk part, summed over the disks. Any thread. */
void disk_replication_primary_last_report(struct disk_replication_primary *replication,
                                          struct primary_disk_checkpoint_report *report);

/* The PVM paused or stopped right after a checkpoint, the loop over or
 * waiting: when no disk was written since that checkpoint, flushes the
 * images and records each one's history (checkpoint `checkpoints` of the
 * sync's protection): 1. 0 with why set when a disk was written since
 * (nothing recorded: its history stays unknown); -1 with err set when a
 * flush or a write failed. */
int disk_replication_primary_record_history(struct disk_replication_primary *replication, char *why, size_t why_size,
                                            struct error *err);

/* Before the device is added to the loop: whom an epoch's first write
 * tells that the stream phase has something to send (the loop's
 * colo_primary_stream_wanted), on the machine thread under the disk's
 * epoch lock (primary_disk_set_written_hook). Without it the stream
 * phase never sends, and a checkpoint carries the whole epoch. */
void disk_replication_primary_tell_writes(struct disk_replication_primary *replication,
                                          void (*stream_wanted)(void *opaque), void *opaque);

/* Its opaque is a struct disk_replication_primary. */
extern const struct colo_checkpoint_device_ops disk_replication_primary_device;

struct disk_replication_secondary {
    struct machine *machine;
    struct disk_sync_destination sync;
    struct secondary_disk_options options;
    unsigned disk_count;
    struct secondary_disk_device devices[MACHINE_MAX_DISKS]; /* .disk NULL: read-only here */
    struct error setup_error;                                /* why setup failed (the phase has no error argument) */
    struct error commit_error;                               /* why preresume's fold failed (the same) */
    bool loaded;                                             /* a checkpoint's writes are buffered, not yet folded */
    uint64_t checkpoints_committed;                          /* folded into the bases since the initial copy */
    /* The trackers failover put over the disks (NULL: none). */
    struct disk_tracker *trackers[MACHINE_MAX_DISKS];
    /* Guards the devices and their disks' statistics: the loop loads,
     * status reads. */
    pthread_mutex_t lock;
};

/* Before the initial copy; options (may be NULL) for the secondary disks.
 * With a buffer bound and no spill directory, each disk spills beside its
 * image. */
void disk_replication_secondary_init(struct disk_replication_secondary *replication, struct machine *machine,
                                     const struct secondary_disk_options *options);
void disk_replication_secondary_destroy(struct disk_replication_secondary *replication);

/* What status shows: the last checkpoint's folds summed over the disks,
 * the memory the buffers and overlays hold, and the failover's fold. */
struct disk_replication_secondary_stats {
    struct secondary_disk_fold_report last_commit, failover;
    uint64_t memory_bytes, checkpoints_loaded;
    unsigned replicated_disks;
};
/* Any thread. */
void disk_replication_secondary_get_stats(struct disk_replication_secondary *replication,
                                          struct disk_replication_secondary_stats *stats);

/* The primary ended the VM on purpose: the bases are exactly the last
 * folded checkpoint. Flushes each and records its history: 0; -1 with
 * err set (the first failure) when one could not be (no protection id
 * came, a disk is broken, a flush or a write failed). */
int disk_replication_secondary_record_history(struct disk_replication_secondary *replication, struct error *err);

/* Its opaque is a struct disk_replication_secondary. */
extern const struct colo_checkpoint_device_ops disk_replication_secondary_device;

#endif
