/* The disks' checkpoint devices (disk_checkpoint_device.h). */
#include "disk_checkpoint_device.h"

#include <string.h>

#include "stream.h"

/* ---- primary ---- */

void primary_disk_device_init(struct primary_disk_device *device, struct primary_disk *disk, uint32_t index)
{
    memset(device, 0, sizeof *device);
    device->disk = disk;
    device->index = index;
}

void primary_disk_device_last_report(const struct primary_disk_device *device,
                                     struct primary_disk_checkpoint_report *report)
{
    *report = device->last;
}

struct save_context {
    struct primary_disk_device *device;
    struct stream_writer *writer;
    struct error *err;
    struct primary_disk_checkpoint_report report;
};

static int save_run(void *opaque, uint64_t offset, const void *data, size_t length)
{
    struct save_context *context = opaque;
    if (stream_write_disk_write(context->writer, context->device->index, offset, data, length, context->err) < 0)
        return -1;
    context->report.records++;
    context->report.bytes += length;
    return 0;
}

/* VM paused: the epoch's runs in offset order (primary_disk_epoch_for_each
 * sorts them), so the secondary folds them in the same order.
 *
 * The epoch is cleared here, once every record is in the writer, rather
 * than in release after SVM_READY: if this checkpoint fails anywhere
 * after, replication ends and nothing would be resent either way (a new
 * protection starts with an initial sync), and the writer already holds a
 * copy of every byte, so clearing now frees the log's memory before the
 * send instead of holding it twice until the secondary answers. A save
 * that fails part way clears nothing: the loop stops on its error. */
static int primary_save(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct primary_disk_device *device = opaque;
    struct save_context context = { .device = device, .writer = writer, .err = err };
    struct primary_disk_stats stats;
    primary_disk_get_stats(device->disk, &stats);
    if (primary_disk_epoch_for_each(device->disk, save_run, &context, err) < 0)
        return error_prefix(err, "disk %u (%s): sending the epoch's writes: ", device->index,
                            primary_disk_backend(device->disk)->name);
    context.report.blocks = stats.epoch_blocks;
    primary_disk_epoch_clear(device->disk);
    /* With what the pre-copy sent of the same checkpoint. */
    device->last = (struct primary_disk_checkpoint_report){
        .blocks = context.report.blocks + device->precopied.blocks,
        .bytes = context.report.bytes + device->precopied.bytes,
        .records = context.report.records + device->precopied.records,
        .precopy_bytes = device->precopied.bytes,
    };
    device->precopied = (struct primary_disk_checkpoint_report){ 0 };
    device->checkpoints_saved++;
    return 0;
}

int primary_disk_device_precopy(struct primary_disk_device *device, struct stream_writer *writer, struct error *err)
{
    struct save_context context = { .device = device, .writer = writer, .err = err };
    int result = primary_disk_precopy_for_each(device->disk, save_run, &context, err);
    primary_disk_precopy_finish(device->disk);
    if (result < 0)
        return error_prefix(err, "disk %u (%s): sending the epoch's writes ahead of the pause: ", device->index,
                            primary_disk_backend(device->disk)->name);
    device->precopied.bytes += context.report.bytes;
    device->precopied.records += context.report.records;
    return 0;
}

const struct colo_checkpoint_device_ops primary_disk_checkpoint_device = {
    .save = primary_save,
};

/* ---- secondary ---- */

void secondary_disk_device_init(struct secondary_disk_device *device, struct secondary_disk *disk, uint32_t index)
{
    memset(device, 0, sizeof *device);
    device->disk = disk;
    device->index = index;
}

void secondary_disk_device_last_commit(const struct secondary_disk_device *device,
                                       struct secondary_disk_fold_report *report)
{
    *report = device->last_commit;
}

void secondary_disk_device_failover_report(const struct secondary_disk_device *device,
                                           struct secondary_disk_fold_report *report)
{
    *report = device->failover;
}

int secondary_disk_device_buffer_write(struct secondary_disk_device *device, const struct stream_disk_write *write,
                                       struct error *err)
{
    if (secondary_disk_buffer_write(device->disk, write->offset, write->data, write->length, err) < 0) {
        secondary_disk_checkpoint_abort(device->disk);
        return error_prefix(err, "disk %u (%s): buffering the primary's write: ", device->index,
                            secondary_disk_backend(device->disk)->name);
    }
    device->pending_records++;
    return 0;
}

int secondary_disk_device_buffer(struct secondary_disk_device *device, const struct stream_reader *reader,
                                 struct error *err)
{
    size_t cursor = 0, length;
    const uint8_t *body;
    while (stream_received_disk_write_next(reader, &cursor, &body, &length)) {
        struct stream_disk_write write;
        stream_disk_write_fields(body, length, &write);
        if (write.disk != device->index)
            continue; /* another disk's device takes it */
        if (secondary_disk_device_buffer_write(device, &write, err) < 0)
            return -1;
    }
    return 0;
}

int secondary_disk_device_commit(struct secondary_disk_device *device, struct error *err)
{
    struct secondary_disk_fold_report report;
    if (secondary_disk_checkpoint_commit(device->disk, &report, err) < 0)
        return error_prefix(err, "disk %u (%s): committing the checkpoint: ", device->index,
                            secondary_disk_backend(device->disk)->name);
    device->last_commit = report;
    device->last_records = device->pending_records;
    device->pending_records = 0;
    device->checkpoints_loaded++;
    return 0;
}

/* The checkpoint just received arrived whole and was applied: its writes
 * for this disk into the buffer, then into the base. The buffer is only
 * filled here, so a checkpoint cut off (load never called) leaves the disk
 * as it was. A write the buffer refuses (outside the image, past the
 * bound without a spill directory, out of memory, a failed write to the
 * spill file) aborts the epoch: a partial buffer must never be
 * committed; the loop stops on the error. */
static int secondary_load(void *opaque, const struct stream_reader *reader, struct error *err)
{
    struct secondary_disk_device *device = opaque;
    if (secondary_disk_device_buffer(device, reader, err) < 0)
        return -1;
    return secondary_disk_device_commit(device, err);
}

/* The SVM takes over: its own writes since the last checkpoint become the
 * disk. */
static int secondary_failover(void *opaque, struct error *err)
{
    struct secondary_disk_device *device = opaque;
    struct secondary_disk_fold_report report;
    if (secondary_disk_failover(device->disk, &report, err) < 0)
        return error_prefix(err, "disk %u (%s): failover: ", device->index, secondary_disk_backend(device->disk)->name);
    device->failover = report;
    return 0;
}

/* No teardown: the disk belongs to the SVM's virtio-blk, which keeps
 * using it after replication ends. */
const struct colo_checkpoint_device_ops secondary_disk_checkpoint_device = {
    .load = secondary_load,
    .failover = secondary_failover,
};
