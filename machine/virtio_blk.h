/* virtio-blk over a block backend (block_backend.h: a raw image file, or
 * whatever wraps one): read, write, flush, get-id; read-only when the
 * backend is (VIRTIO_BLK_F_RO). Requests are served synchronously when the
 * driver notifies the queue, so a completed write is on the host's disk
 * whenever the guest asked for a flush. A bad request (short header,
 * unknown type, sector out of range, write to a read-only disk) completes
 * with VIRTIO_BLK_S_IOERR or UNSUPP and is counted; it never crashes.
 * DISCARD is not offered to the guest (the backend could do it). */
#ifndef COLO_MACHINE_VIRTIO_BLK_H
#define COLO_MACHINE_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "block_backend.h"
#include "error.h"
#include "virtio_mmio.h"

/* What a disk says about itself, for status and metrics. */
struct virtio_blk_stats {
    const char *path;                 /* the backend's name (the image's path); lives with the disk */
    bool read_only;
    uint64_t read_requests, write_requests, flush_requests, failed_requests;
};

struct virtio_blk {
    struct virtio_mmio transport;     /* all guest-visible state is here */
    struct block_backend *backend;    /* owned; NULL before init and after destroy */
    uint64_t capacity_sectors;        /* 512-byte sectors, from the backend's size */
    /* host-side counters, for status and metrics */
    uint64_t read_requests, write_requests, flush_requests, failed_requests;
};

/* Sets up the device in virtio-mmio slot `slot` over `backend`, whose size
 * must be a multiple of 512 bytes and not zero. On success the disk owns
 * the backend (destroyed with it); on failure the caller still does. */
int virtio_blk_init(struct virtio_blk *disk, struct machine *machine, unsigned slot,
                    struct block_backend *backend, struct error *err);
void virtio_blk_destroy(struct virtio_blk *disk);
/* The disk's image and counters. The counters change on the machine's
 * thread: read them there or with the machine paused. */
void virtio_blk_get_stats(const struct virtio_blk *disk, struct virtio_blk_stats *stats);
/* The transport's state plus a section with the disk's size and read-only
 * flag; a load fails (and changes nothing) when they differ from this
 * image's. */
void virtio_blk_save(const struct virtio_blk *disk, struct state_writer *writer);
void virtio_blk_load(struct virtio_blk *disk, struct state_reader *reader);

#endif
