/* virtio-blk over a block backend (block_backend.h: a raw image file, or
 * whatever wraps one): read, write, flush, get-id; read-only when the
 * backend is (VIRTIO_BLK_F_RO). Requests are served synchronously when the
 * driver notifies the queue, so a completed write is on the host's disk
 * whenever the guest asked for a flush. A bad request (short header,
 * unknown type, sector out of range, write to a read-only disk) completes
 * with VIRTIO_BLK_S_IOERR or UNSUPP and is counted; it never crashes.
 * DISCARD is not offered to the guest (the backend could do it).
 *
 * This is the disk's API for the layers above (struct virtio_blk is
 * opaque to them); the device itself, for the machine and tests, is
 * virtio_blk_device.h. */
#ifndef COLO_MACHINE_VIRTIO_BLK_H
#define COLO_MACHINE_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "block_backend.h"

struct virtio_blk;

/* What a disk says about itself, for status and metrics. */
struct virtio_blk_stats {
    const char *path; /* the backend's name (the image's path); lives with the disk */
    bool read_only;
    uint64_t read_requests, write_requests, flush_requests, failed_requests;
};

/* The disk's image and counters. The counters change on the machine's
 * thread: read them there or with the machine paused. */
void virtio_blk_get_stats(const struct virtio_blk *disk, struct virtio_blk_stats *stats);

/* The backend the disk uses now (it owns it). */
struct block_backend *virtio_blk_backend(struct virtio_blk *disk);

/* Puts `backend` under the disk instead of the current one, which is
 * returned to the caller (who owns it from then on): how disk replication
 * slips its wrapper between the device and the image, and takes it out
 * again. The new backend must have the same size and read-only flag (the
 * guest sees no change); otherwise NULL and nothing changes. Requests are
 * synchronous, so none is in flight: call it with the machine paused. */
struct block_backend *virtio_blk_replace_backend(struct virtio_blk *disk, struct block_backend *backend);

#endif
