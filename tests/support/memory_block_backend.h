/* An in-memory block backend for the tests of block backends that wrap
 * another (the disk layer): an image of `size` bytes filled with a known
 * pattern (byte i is i * 7 + 3), that counts writes and flushes and fails
 * when told to. Every field may be read and set by the test. */
#ifndef COLO_TESTS_MEMORY_BLOCK_BACKEND_H
#define COLO_TESTS_MEMORY_BLOCK_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "block_backend.h"

struct memory_backend {
    struct block_backend backend; /* first: the backend is the struct */
    uint8_t *bytes;
    unsigned writes;     /* write requests so far, failed ones included */
    unsigned fail_write; /* fail every write from this one on (1: the first); 0: never */
    bool fail_read;      /* every read answers -EIO */
    unsigned flushes;
    bool fail_flush; /* every flush answers -EIO */
};

/* A failed write answers -ENOSPC after doing the first half of its range,
 * as a write cut short by a full disk may. Exits the test when out of
 * memory. Destroyed with block_backend_destroy. */
struct memory_backend *memory_backend_create(uint64_t size);

#endif
