#include "memory_block_backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool inside(const struct block_backend *backend, uint64_t offset, uint64_t length)
{
    return offset <= backend->size && length <= backend->size - offset;
}

static int memory_read(struct block_backend *backend, uint64_t offset, void *buffer, size_t length)
{
    struct memory_backend *memory = (struct memory_backend *)backend;
    if (!inside(backend, offset, length))
        return -EINVAL;
    if (memory->fail_read)
        return -EIO;
    memcpy(buffer, memory->bytes + offset, length);
    return 0;
}

static int memory_write(struct block_backend *backend, uint64_t offset, const void *buffer, size_t length)
{
    struct memory_backend *memory = (struct memory_backend *)backend;
    if (!inside(backend, offset, length))
        return -EINVAL;
    memory->writes++;
    if (memory->fail_write && memory->writes >= memory->fail_write) {
        memcpy(memory->bytes + offset, buffer, length / 2);
        return -ENOSPC;
    }
    memcpy(memory->bytes + offset, buffer, length);
    return 0;
}

static int memory_flush(struct block_backend *backend)
{
    struct memory_backend *memory = (struct memory_backend *)backend;
    memory->flushes++;
    return memory->fail_flush ? -EIO : 0;
}

static int memory_discard(struct block_backend *backend, uint64_t offset, uint64_t length)
{
    struct memory_backend *memory = (struct memory_backend *)backend;
    if (!inside(backend, offset, length))
        return -EINVAL;
    memset(memory->bytes + offset, 0, length);
    return 0;
}

static void memory_destroy(struct block_backend *backend)
{
    struct memory_backend *memory = (struct memory_backend *)backend;
    free(memory->bytes);
    free(memory);
}

static const struct block_backend_ops memory_ops = {
    .kind = "memory",
    .read = memory_read,
    .write = memory_write,
    .flush = memory_flush,
    .discard = memory_discard,
    .destroy = memory_destroy,
};

struct memory_backend *memory_backend_create(uint64_t size)
{
    struct memory_backend *memory = calloc(1, sizeof *memory);
    uint8_t *bytes = malloc(size ? size : 1);
    if (!memory || !bytes) {
        printf("FAIL: out of memory for a %llu-byte memory image\n", (unsigned long long)size);
        exit(1);
    }
    for (uint64_t i = 0; i < size; i++)
        bytes[i] = (uint8_t)(i * 7 + 3);
    memory->bytes = bytes;
    memory->backend = (struct block_backend){ .ops = &memory_ops, .name = "memory.img", .size = size };
    return memory;
}
