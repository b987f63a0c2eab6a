/* A block backend: the storage behind a virtio-blk disk (after kvmtool's
 * disk_image_operations). A raw image file is one (block_file.h); disk
 * replication wraps one in another (a backend that forwards each request
 * to the one below, and to the secondary), and virtio_blk never knows.
 *
 * Requests are whole and synchronous: an offset and a length in bytes
 * (the device only asks for whole 512-byte sectors inside `size`), done
 * completely or failed. Each returns 0 or a negative errno. The buffer is
 * the device's bounce buffer, not guest memory: what reaches guest RAM
 * goes through the machine's dirty log.
 *
 * Everything here runs on the machine's thread, or with the machine
 * paused, like the device that owns the backend. */
#ifndef COLO_MACHINE_BLOCK_BACKEND_H
#define COLO_MACHINE_BLOCK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct block_backend;

struct block_backend_ops {
    const char *kind; /* for messages: "file" */
    int (*read)(struct block_backend *backend, uint64_t offset, void *buffer, size_t length);
    /* Refused (-EROFS) by a read-only backend. */
    int (*write)(struct block_backend *backend, uint64_t offset, const void *buffer, size_t length);
    /* Everything written so far is on stable storage once it returns 0. */
    int (*flush)(struct block_backend *backend);
    /* The range's contents are no longer needed: they may read as zeros
     * or as what they were. Refused (-EROFS) by a read-only backend. */
    int (*discard)(struct block_backend *backend, uint64_t offset, uint64_t length);
    /* Optional: the first offset at or after `offset` that may hold data
     * (bytes before it, from `offset` on, read as zeros: a hole), or the
     * size when none does. Lets a reader skip holes instead of reading
     * zeros (the disks' sync hashes a 2 GiB mostly empty image). Without
     * it, every byte may hold data. */
    uint64_t (*next_data)(struct block_backend *backend, uint64_t offset);
    /* Releases everything, the backend itself included. */
    void (*destroy)(struct block_backend *backend);
};

struct block_backend {
    const struct block_backend_ops *ops;
    const char *name; /* the image's path, for messages, status and the disk id */
    uint64_t size;    /* bytes */
    bool read_only;
};

static inline int block_backend_read(struct block_backend *backend, uint64_t offset, void *buffer, size_t length)
{
    return backend->ops->read(backend, offset, buffer, length);
}

static inline int block_backend_write(struct block_backend *backend, uint64_t offset, const void *buffer, size_t length)
{
    return backend->ops->write(backend, offset, buffer, length);
}

static inline int block_backend_flush(struct block_backend *backend)
{
    return backend->ops->flush(backend);
}

static inline int block_backend_discard(struct block_backend *backend, uint64_t offset, uint64_t length)
{
    return backend->ops->discard(backend, offset, length);
}

static inline uint64_t block_backend_next_data(struct block_backend *backend, uint64_t offset)
{
    return backend->ops->next_data ? backend->ops->next_data(backend, offset) : offset;
}

static inline void block_backend_destroy(struct block_backend *backend)
{
    if (backend)
        backend->ops->destroy(backend);
}

#endif
