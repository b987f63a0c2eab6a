/* The virtio-blk device (virtio_blk.h says what it does): its state, for
 * the machine that makes it and for tests. */
#ifndef COLO_MACHINE_VIRTIO_BLK_DEVICE_H
#define COLO_MACHINE_VIRTIO_BLK_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "block_backend.h"
#include "error.h"
#include "state_buffer.h"
#include "virtio_blk.h"
#include "virtio_mmio.h"

struct virtio_blk {
    struct virtio_mmio transport;  /* all guest-visible state is here */
    struct block_backend *backend; /* owned; NULL before init and after destroy */
    uint64_t capacity_sectors;     /* 512-byte sectors, from the backend's size */
    /* host-side counters, for status and metrics */
    uint64_t read_requests, write_requests, flush_requests, failed_requests;
};

/* Sets up the device in virtio-mmio slot `slot` over `backend`, whose size
 * must be a multiple of 512 bytes and not zero. On success the disk owns
 * the backend (destroyed with it); on failure the caller still does. */
int virtio_blk_init(struct virtio_blk *disk, struct machine *machine, unsigned slot, struct block_backend *backend,
                    struct error *err);
void virtio_blk_destroy(struct virtio_blk *disk);
/* The transport's state plus a section with the disk's size and read-only
 * flag; a load fails (and changes nothing) when they differ from this
 * image's. */
void virtio_blk_save(const struct virtio_blk *disk, struct state_writer *writer);
void virtio_blk_load(struct virtio_blk *disk, struct state_reader *reader);

#endif
