/* The raw image file backend (block_file.h). */
#include "block_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct block_backend_ops file_ops;

struct block_file *block_file_of(struct block_backend *backend)
{
    return backend && backend->ops == &file_ops ? (struct block_file *)backend : NULL;
}

static bool in_range(const struct block_backend *backend, uint64_t offset, uint64_t length)
{
    return offset <= backend->size && length <= backend->size - offset;
}

/* Whole transfers only: retried on EINTR and continued after a short
 * transfer. End of file counts as an error (the image shrank under us). */
/* Moves all of [offset, offset + length) between the image and buffer:
 * pread and pwrite may do less than asked (and EINTR), a short image ends
 * with -EIO. */
static int transfer_whole(int fd, uint8_t *data, size_t length, uint64_t offset, bool write)
{
    while (length > 0) {
        ssize_t done = write ? pwrite(fd, data, length, (off_t)offset) : pread(fd, data, length, (off_t)offset);
        if (done < 0 && errno == EINTR)
            continue;
        if (done < 0)
            return -errno;
        if (done == 0)
            return -EIO;
        data += done;
        length -= (size_t)done;
        offset += (uint64_t)done;
    }
    return 0;
}

static int file_read(struct block_backend *backend, uint64_t offset, void *buffer, size_t length)
{
    struct block_file *file = (struct block_file *)backend;
    if (!in_range(backend, offset, length))
        return -EINVAL;
    return transfer_whole(file->fd, buffer, length, offset, false);
}

static int file_write(struct block_backend *backend, uint64_t offset, const void *buffer, size_t length)
{
    struct block_file *file = (struct block_file *)backend;
    if (backend->read_only)
        return -EROFS;
    if (!in_range(backend, offset, length))
        return -EINVAL;
    /* pwrite only reads the buffer; one loop serves both directions. */
    return transfer_whole(file->fd, (uint8_t *)(uintptr_t)buffer, length, offset, true);
}

static int file_flush(struct block_backend *backend)
{
    struct block_file *file = (struct block_file *)backend;
    int result;
    do
        result = fdatasync(file->fd);
    while (result < 0 && errno == EINTR);
    return result < 0 ? -errno : 0;
}

static int file_discard(struct block_backend *backend, uint64_t offset, uint64_t length)
{
    struct block_file *file = (struct block_file *)backend;
    if (backend->read_only)
        return -EROFS;
    if (!in_range(backend, offset, length))
        return -EINVAL;
    if (length == 0)
        return 0;
    int result;
    do
        result = fallocate(file->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
    while (result < 0 && errno == EINTR);
    return result < 0 ? -errno : 0;
}

/* lseek's SEEK_DATA: the filesystem knows its holes (and its unwritten
 * extents, with the page cache in view). Any failure but "no data after
 * this" counts as data, so nothing is ever skipped that might hold some. */
static uint64_t file_next_data(struct block_backend *backend, uint64_t offset)
{
    struct block_file *file = (struct block_file *)backend;
    if (offset >= backend->size)
        return backend->size;
    off_t data = lseek(file->fd, (off_t)offset, SEEK_DATA);
    if (data < 0)
        return errno == ENXIO ? backend->size : offset;
    return (uint64_t)data < backend->size ? (uint64_t)data : backend->size;
}

static void file_destroy(struct block_backend *backend)
{
    struct block_file *file = (struct block_file *)backend;
    if (file->fd >= 0)
        close(file->fd);
    free(file);
}

static const struct block_backend_ops file_ops = {
    .kind = "file",
    .read = file_read,
    .write = file_write,
    .flush = file_flush,
    .discard = file_discard,
    .next_data = file_next_data,
    .destroy = file_destroy,
};

struct block_backend *block_file_open(const char *path, bool read_only, struct error *err)
{
    struct block_file *file = calloc(1, sizeof *file);
    if (!file) {
        error_set(err, "out of memory for image %s", path);
        return NULL;
    }
    file->fd = -1;
    if (strlen(path) >= sizeof file->path) {
        error_set(err, "image path is too long (%zu bytes)", strlen(path));
        free(file);
        return NULL;
    }
    strcpy(file->path, path);
    int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        error_set_errno(err, "cannot open image %s%s", path, read_only ? " (read-only)" : " for reading and writing");
        free(file);
        return NULL;
    }
    file->fd = fd;
    struct stat info;
    if (fstat(fd, &info) < 0) {
        error_set_errno(err, "cannot stat image %s", path);
        file_destroy(&file->backend);
        return NULL;
    }
    if (!S_ISREG(info.st_mode) && !S_ISBLK(info.st_mode)) {
        error_set(err, "image %s is not a regular file or block device", path);
        file_destroy(&file->backend);
        return NULL;
    }
    /* lseek gives the size of block devices too, where st_size is 0. */
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0) {
        error_set_errno(err, "cannot find the size of image %s", path);
        file_destroy(&file->backend);
        return NULL;
    }
    file->backend = (struct block_backend){
        .ops = &file_ops,
        .name = file->path,
        .size = (uint64_t)size,
        .read_only = read_only,
    };
    return &file->backend;
}
