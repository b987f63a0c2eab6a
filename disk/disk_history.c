/* An image's history sidecar (disk_history.h). */
#include "disk_history.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "crc32c.h"

#define MAGIC "COLOHIST"
/* The bytes the CRC covers: everything before it. */
#define CRC_OFFSET (DISK_HISTORY_FILE_LENGTH - 4)

bool disk_history_equal(const struct disk_history *a, const struct disk_history *b)
{
    return memcmp(a->protection, b->protection, DISK_HISTORY_PROTECTION_SIZE) == 0 && a->checkpoint == b->checkpoint &&
           a->disk_size == b->disk_size;
}

void disk_history_new_protection(uint8_t protection[DISK_HISTORY_PROTECTION_SIZE])
{
    if (getrandom(protection, DISK_HISTORY_PROTECTION_SIZE, 0) == DISK_HISTORY_PROTECTION_SIZE)
        return;
    uint64_t now = clock_monotonic_ns(), pid = (uint64_t)getpid();
    memcpy(protection, &now, 8);
    memcpy(protection + 8, &pid, 8);
}

static void put_u32(uint8_t *at, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        at[i] = (uint8_t)(value >> (8 * i));
}

static void put_u64(uint8_t *at, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        at[i] = (uint8_t)(value >> (8 * i));
}

static uint32_t get_u32(const uint8_t *at)
{
    uint32_t value = 0;
    for (int i = 3; i >= 0; i--)
        value = value << 8 | at[i];
    return value;
}

static uint64_t get_u64(const uint8_t *at)
{
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--)
        value = value << 8 | at[i];
    return value;
}

void disk_history_encode(const struct disk_history *history, const struct disk_history_stamp *stamp,
                         uint8_t bytes[DISK_HISTORY_FILE_LENGTH])
{
    memset(bytes, 0, DISK_HISTORY_FILE_LENGTH);
    memcpy(bytes, MAGIC, 8);
    put_u32(bytes + 8, DISK_HISTORY_VERSION);
    put_u32(bytes + 12, DISK_HISTORY_FILE_LENGTH);
    put_u64(bytes + 16, history->disk_size);
    memcpy(bytes + 24, history->protection, DISK_HISTORY_PROTECTION_SIZE);
    put_u64(bytes + 40, history->checkpoint);
    put_u64(bytes + 48, stamp->image_inode);
    put_u64(bytes + 56, stamp->image_mtime_ns);
    put_u32(bytes + CRC_OFFSET, crc32c_extend(0, bytes, CRC_OFFSET));
}

bool disk_history_parse(const uint8_t *bytes, size_t length, struct disk_history *history,
                        struct disk_history_stamp *stamp, char *why, size_t why_size)
{
    if (length < 16 || memcmp(bytes, MAGIC, 8) != 0) {
        snprintf(why, why_size, "not a history file");
        return false;
    }
    uint32_t version = get_u32(bytes + 8), declared = get_u32(bytes + 12);
    if (version != DISK_HISTORY_VERSION) {
        snprintf(why, why_size, "version %u (this reader reads %u)", version, (unsigned)DISK_HISTORY_VERSION);
        return false;
    }
    if (declared != DISK_HISTORY_FILE_LENGTH || length != DISK_HISTORY_FILE_LENGTH) {
        snprintf(why, why_size, "%zu bytes, saying %u (expected %u)", length, declared,
                 (unsigned)DISK_HISTORY_FILE_LENGTH);
        return false;
    }
    if (get_u32(bytes + CRC_OFFSET) != crc32c_extend(0, bytes, CRC_OFFSET)) {
        snprintf(why, why_size, "CRC mismatch");
        return false;
    }
    if (get_u32(bytes + 64) != 0) {
        snprintf(why, why_size, "a reserved field is not zero");
        return false;
    }
    history->disk_size = get_u64(bytes + 16);
    memcpy(history->protection, bytes + 24, DISK_HISTORY_PROTECTION_SIZE);
    history->checkpoint = get_u64(bytes + 40);
    stamp->image_inode = get_u64(bytes + 48);
    stamp->image_mtime_ns = get_u64(bytes + 56);
    return true;
}

static void sidecar_path(const char *image_path, char *path, size_t size)
{
    snprintf(path, size, "%s%s", image_path, DISK_HISTORY_SUFFIX);
}

/* The directory holding path, for its fsync. */
static int sync_directory_of(const char *path, struct error *err)
{
    char directory[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(directory, sizeof directory, ".");
    else if (slash == path)
        snprintf(directory, sizeof directory, "/");
    else
        snprintf(directory, sizeof directory, "%.*s", (int)(slash - path), path);
    int fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "cannot open directory %s to sync it", directory);
    int result = fsync(fd);
    close(fd);
    if (result < 0)
        return error_set_errno(err, "cannot sync directory %s", directory);
    return 0;
}

static int image_stamp(const char *image_path, struct disk_history_stamp *stamp, uint64_t *size)
{
    struct stat status;
    if (stat(image_path, &status) < 0)
        return -1;
    stamp->image_inode = (uint64_t)status.st_ino;
    stamp->image_mtime_ns = (uint64_t)status.st_mtim.tv_sec * 1000000000u + (uint64_t)status.st_mtim.tv_nsec;
    *size = (uint64_t)status.st_size;
    return 0;
}

int disk_history_write(const char *image_path, const struct disk_history *history, struct error *err)
{
    char path[4200], temporary[4300];
    sidecar_path(image_path, path, sizeof path);
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    struct disk_history_stamp stamp;
    uint64_t size;
    if (image_stamp(image_path, &stamp, &size) < 0)
        return error_set_errno(err, "cannot stat image %s for its history", image_path);
    uint8_t bytes[DISK_HISTORY_FILE_LENGTH];
    disk_history_encode(history, &stamp, bytes);
    int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return error_set_errno(err, "cannot create %s", temporary);
    ssize_t written = write(fd, bytes, sizeof bytes);
    int saved = written < 0 ? errno : EIO;
    if (written == (ssize_t)sizeof bytes && fsync(fd) < 0)
        saved = errno;
    else if (written == (ssize_t)sizeof bytes)
        saved = 0;
    if (saved) {
        close(fd);
        unlink(temporary);
        errno = saved;
        return error_set_errno(err, "cannot write %s", temporary);
    }
    close(fd);
    if (rename(temporary, path) < 0) {
        saved = errno;
        unlink(temporary);
        errno = saved;
        return error_set_errno(err, "cannot rename %s to %s", temporary, path);
    }
    return sync_directory_of(path, err);
}

bool disk_history_read(const char *image_path, struct disk_history *history, char *why, size_t why_size)
{
    char path[4200];
    sidecar_path(image_path, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_size, "%s: %s", path,
                 errno == ENOENT ? "none (the image's history is unknown)" : strerror(errno));
        return false;
    }
    uint8_t bytes[DISK_HISTORY_FILE_LENGTH + 1];
    ssize_t length = read(fd, bytes, sizeof bytes);
    int saved = errno;
    close(fd);
    if (length < 0) {
        snprintf(why, why_size, "%s: %s", path, strerror(saved));
        return false;
    }
    struct disk_history_stamp stamp, now;
    char reason[200];
    if (!disk_history_parse(bytes, (size_t)length, history, &stamp, reason, sizeof reason)) {
        snprintf(why, why_size, "%s: %s", path, reason);
        return false;
    }
    uint64_t size;
    if (image_stamp(image_path, &now, &size) < 0) {
        snprintf(why, why_size, "%s: cannot stat the image: %s", path, strerror(errno));
        return false;
    }
    if (now.image_inode != stamp.image_inode || now.image_mtime_ns != stamp.image_mtime_ns) {
        snprintf(why, why_size, "%s: the image was replaced or written since its history was recorded", path);
        return false;
    }
    if (size != history->disk_size) {
        snprintf(why, why_size, "%s: the image is %llu bytes, its history says %llu", path, (unsigned long long)size,
                 (unsigned long long)history->disk_size);
        return false;
    }
    return true;
}

int disk_history_invalidate(const char *image_path, struct error *err)
{
    char path[4200];
    sidecar_path(image_path, path, sizeof path);
    if (unlink(path) < 0) {
        if (errno == ENOENT)
            return 0;
        return error_set_errno(err, "cannot remove %s", path);
    }
    return sync_directory_of(path, err);
}
