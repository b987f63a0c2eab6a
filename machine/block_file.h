/* The raw image file block backend: a regular file or a block device,
 * byte for byte the disk the guest sees. read and write are pread and
 * pwrite, flush is fdatasync, discard punches a hole (the file keeps its
 * size; the range reads as zeros and holds no space). */
#ifndef COLO_MACHINE_BLOCK_FILE_H
#define COLO_MACHINE_BLOCK_FILE_H

#include <stdbool.h>

#include "block_backend.h"
#include "error.h"

struct block_file {
    struct block_backend backend; /* name: path */
    int fd;
    char path[4096];
};

/* Opens the image (O_RDWR, or O_RDONLY when read_only). Returns the
 * backend (hand it to virtio_blk_init), or NULL with err set, naming the
 * image. */
struct block_backend *block_file_open(const char *path, bool read_only, struct error *err);

/* The file behind a backend made by block_file_open; NULL for any other. */
struct block_file *block_file_of(struct block_backend *backend);

#endif
