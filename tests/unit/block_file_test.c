/* The raw image file block backend on its own: whole reads and writes at
 * any offset inside the image, flush, discard (a punched hole reads as
 * zeros, the file keeps its size), requests outside the image, a
 * read-only image, and the checks at open.
 * Prints "FAIL: ..." for each failed check and exits 1 if any failed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block_file.h"

#include "test_check.h"

#define IMAGE_SIZE (256u * 1024u)

static char directory[64];

static void make_image(const char *path, size_t length)
{
    static uint8_t bytes[IMAGE_SIZE];
    for (size_t i = 0; i < length; i++)
        bytes[i] = (uint8_t)(i * 13 + 5);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, bytes, length) != (ssize_t)length || close(fd) < 0) {
        printf("FAIL: cannot create %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static bool all_bytes(const uint8_t *data, size_t length, uint8_t value)
{
    for (size_t i = 0; i < length; i++)
        if (data[i] != value)
            return false;
    return true;
}

static void test_read_write_flush(const char *path)
{
    struct error err;
    struct block_backend *image = block_file_open(path, false, &err);
    if (!image) {
        CHECK(0, "open: %s", err.message);
        return;
    }
    CHECK(image->size == IMAGE_SIZE && !image->read_only && strcmp(image->name, path) == 0,
          "size %llu, read-only %d, name %s", (unsigned long long)image->size, image->read_only, image->name);
    CHECK(block_file_of(image) != NULL, "block_file_of does not know its own backend");

    static uint8_t data[8192];
    CHECK(block_backend_read(image, 1000, data, 3000) == 0, "read inside the image failed");
    bool same = true;
    for (size_t i = 0; i < 3000; i++)
        same = same && data[i] == (uint8_t)((1000 + i) * 13 + 5);
    CHECK(same, "read returned other bytes than the image's");

    memset(data, 0xa5, sizeof data);
    CHECK(block_backend_write(image, IMAGE_SIZE - sizeof data, data, sizeof data) == 0,
          "write of the last 8 KiB failed");
    CHECK(block_backend_flush(image) == 0, "flush failed");
    memset(data, 0, sizeof data);
    CHECK(block_backend_read(image, IMAGE_SIZE - sizeof data, data, sizeof data) == 0 &&
              all_bytes(data, sizeof data, 0xa5),
          "written bytes did not read back");

    /* Outside the image: refused, and the file does not grow. */
    CHECK(block_backend_read(image, IMAGE_SIZE - 512, data, 1024) == -EINVAL, "read past the end accepted");
    CHECK(block_backend_write(image, IMAGE_SIZE, data, 512) == -EINVAL, "write past the end accepted");
    CHECK(block_backend_discard(image, IMAGE_SIZE - 4096, 8192) == -EINVAL, "discard past the end accepted");
    struct stat info;
    CHECK(stat(path, &info) == 0 && info.st_size == IMAGE_SIZE, "the image changed size");

    /* Discard: the range reads as zeros, its neighbours are untouched. */
    int result = block_backend_discard(image, 64 * 1024, 64 * 1024);
    if (result == -EOPNOTSUPP) {
        printf("SKIP: discard: the file system cannot punch holes\n");
    } else {
        CHECK(result == 0, "discard failed: %s", strerror(-result));
        CHECK(block_backend_read(image, 64 * 1024, data, sizeof data) == 0 && all_bytes(data, sizeof data, 0),
              "a discarded range does not read as zeros");
        CHECK(block_backend_read(image, 64 * 1024 - 1, data, 1) == 0 && data[0] == (uint8_t)((64 * 1024 - 1) * 13 + 5),
              "discard touched the byte before");
        CHECK(block_backend_read(image, 128 * 1024, data, 1) == 0 && data[0] == (uint8_t)(128 * 1024 * 13 + 5),
              "discard touched the byte after");
        CHECK(stat(path, &info) == 0 && info.st_size == IMAGE_SIZE, "discard changed the image's size");
    }
    block_backend_destroy(image);
}

static void test_read_only(const char *path)
{
    struct error err;
    struct block_backend *image = block_file_open(path, true, &err);
    if (!image) {
        CHECK(0, "read-only open: %s", err.message);
        return;
    }
    uint8_t data[512];
    CHECK(image->read_only, "not read-only");
    CHECK(block_backend_read(image, 0, data, sizeof data) == 0, "read from a read-only image failed");
    CHECK(block_backend_write(image, 0, data, sizeof data) == -EROFS, "write to a read-only image accepted");
    CHECK(block_backend_discard(image, 0, 4096) == -EROFS, "discard on a read-only image accepted");
    block_backend_destroy(image);
}

static void test_open_errors(void)
{
    struct error err;
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.img", directory);
    CHECK(block_file_open(missing, false, &err) == NULL, "missing image opened");
    CHECK(strstr(err.message, missing) != NULL, "error does not name the image: %s", err.message);
    CHECK(block_file_open(directory, true, &err) == NULL, "a directory opened as an image");
    CHECK(strstr(err.message, "not a regular file") != NULL, "unclear error: %s", err.message);
}

int main(void)
{
    snprintf(directory, sizeof directory, "/tmp/block_file_test.XXXXXX");
    if (!mkdtemp(directory)) {
        printf("FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/image.img", directory);
    make_image(path, IMAGE_SIZE);
    test_read_write_flush(path);
    test_read_only(path);
    test_open_errors();
    unlink(path);
    rmdir(directory);
    return test_check_finish("block_file_test");
}
