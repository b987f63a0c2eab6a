/* The disks' checkpoint devices (../shared/DESIGN.md, "Disk replication";
 * replication/checkpoint_device.h): one per replicated disk on each side.
 *
 *   primary    save: the epoch's writes of its primary_disk (sorted runs)
 *              as DISK_WRITE records of the checkpoint, then the epoch is
 *              cleared.
 *   secondary  load: the checkpoint's DISK_WRITE records for its disk into
 *              the secondary_disk's buffer, then the commit folds them
 *              into the base; failover folds the SVM's overlay.
 *
 * A device names its disk by the index in the machine's configuration, the
 * same on both sides (the stream checks it is one of the machine's disks).
 * The disks themselves are owned by the virtio-blk devices that use their
 * backends: a device only borrows one, and teardown frees nothing. Like the
 * disks, the phases run with the machine paused. */
#ifndef COLO_DISK_DISK_CHECKPOINT_DEVICE_H
#define COLO_DISK_DISK_CHECKPOINT_DEVICE_H

#include <stdint.h>

#include "checkpoint_device.h"
#include "primary_disk.h"
#include "secondary_disk.h"
#include "stream.h"

/* What one checkpoint's save sent for a disk, for the checkpoint report. */
struct primary_disk_checkpoint_report {
    uint64_t blocks;        /* blocks the epoch wrote or discarded */
    uint64_t bytes;         /* data bytes in the DISK_WRITE records */
    uint64_t records;       /* runs handed to the writer (a run past
                               STREAM_MAX_DISK_WRITE is split by the writer) */
    uint64_t precopy_bytes; /* of bytes, sent by the pre-copy (VM running) */
};

/* The opaque of primary_disk_checkpoint_device. */
struct primary_disk_device {
    struct primary_disk *disk;
    uint32_t index;
    struct primary_disk_checkpoint_report last;      /* the last save that succeeded */
    struct primary_disk_checkpoint_report precopied; /* the current checkpoint's pre-copy so far */
    uint64_t checkpoints_saved;
};

extern const struct colo_checkpoint_device_ops primary_disk_checkpoint_device;

void primary_disk_device_init(struct primary_disk_device *device, struct primary_disk *disk, uint32_t index);
/* The checkpoint's pre-copy (VM running, after primary_disk_precopy_begin
 * on the device's disk with the VM paused, whose count the caller adds to
 * precopied.blocks): the moved-aside writes as DISK_WRITE records, then
 * freed. The save's report adds them to its own (a block written before
 * and after the pre-copy counts twice: it is sent twice). */
int primary_disk_device_precopy(struct primary_disk_device *device, struct stream_writer *writer, struct error *err);
/* The last checkpoint's counters (all zero before the first save). */
void primary_disk_device_last_report(const struct primary_disk_device *device,
                                     struct primary_disk_checkpoint_report *report);

/* The opaque of secondary_disk_checkpoint_device. */
struct secondary_disk_device {
    struct secondary_disk *disk;
    uint32_t index;
    struct secondary_disk_fold_report last_commit; /* the last load's fold */
    struct secondary_disk_fold_report failover;    /* the failover's fold */
    uint64_t last_records;                         /* DISK_WRITE records the last commit folded */
    uint64_t pending_records;                      /* buffered since the last commit */
    uint64_t checkpoints_loaded;
};

extern const struct colo_checkpoint_device_ops secondary_disk_checkpoint_device;

void secondary_disk_device_init(struct secondary_disk_device *device, struct secondary_disk *disk, uint32_t index);

/* The parts of the device's load, for a caller that buffers and commits
 * at different moments (disk_replication.h folds after SVM_READY, and
 * buffers writes streamed ahead of the checkpoint): buffer one write, or
 * the run's writes for this disk; a refused write aborts the epoch (the
 * buffer is dropped) and fails. Commit folds the buffer into the base. */
int secondary_disk_device_buffer_write(struct secondary_disk_device *device, const struct stream_disk_write *write,
                                       struct error *err);
int secondary_disk_device_buffer(struct secondary_disk_device *device, const struct stream_reader *reader,
                                 struct error *err);
int secondary_disk_device_commit(struct secondary_disk_device *device, struct error *err);
/* The fold of the last checkpoint that loaded (all zero before the first). */
void secondary_disk_device_last_commit(const struct secondary_disk_device *device,
                                       struct secondary_disk_fold_report *report);
/* The failover's fold of the overlay (all zero before a failover). */
void secondary_disk_device_failover_report(const struct secondary_disk_device *device,
                                           struct secondary_disk_fold_report *report);

#endif
