/* virtio-blk over a raw image file: read, write, flush, get-id; read-only
 * on request (VIRTIO_BLK_F_RO). Requests are served synchronously when the
 * driver notifies the queue (pread/pwrite on the image; flush is
 * fdatasync), so a completed write is on the host's disk whenever the
 * guest asked for a flush. A bad request (short header, unknown type,
 * sector out of range, write to a read-only disk) completes with
 * VIRTIO_BLK_S_IOERR or UNSUPP and is counted; it never crashes. */
#ifndef COLO_MACHINE_VIRTIO_BLK_H
#define COLO_MACHINE_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "virtio_mmio.h"

struct virtio_blk {
    struct virtio_mmio transport;     /* all guest-visible state is here */
    int fd;                           /* host: the image */
    char path[4096];
    uint64_t capacity_sectors;        /* 512-byte sectors, from the image size */
    bool read_only;
    /* host-side counters, for status and metrics */
    uint64_t read_requests, write_requests, flush_requests, failed_requests;
};

/* Opens the image (O_RDWR, or O_RDONLY when read_only) and sets up the
 * device in virtio-mmio slot `slot`. The image size must be a multiple of
 * 512 bytes and not zero. */
int virtio_blk_init(struct virtio_blk *disk, struct machine *machine, unsigned slot,
                    const char *path, bool read_only, struct error *err);
void virtio_blk_destroy(struct virtio_blk *disk);
/* The transport's state plus a section with the disk's size and read-only
 * flag; a load fails (and changes nothing) when they differ from this
 * image's. */
void virtio_blk_save(const struct virtio_blk *disk, struct state_writer *writer);
void virtio_blk_load(struct virtio_blk *disk, struct state_reader *reader);

#endif
