#include "test_image_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void test_image_file_create(const char *path, const uint8_t *data, size_t length)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, length) != (ssize_t)length || close(fd) < 0) {
        printf("FAIL: cannot make %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

void test_image_file_read(const char *path, uint64_t offset, uint8_t *data, size_t length)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0 || pread(fd, data, length, (off_t)offset) != (ssize_t)length) {
        printf("FAIL: cannot read %s: %s\n", path, strerror(errno));
        exit(1);
    }
    close(fd);
}

bool test_bytes_all(const uint8_t *data, size_t length, uint8_t value)
{
    for (size_t i = 0; i < length; i++)
        if (data[i] != value)
            return false;
    return true;
}
