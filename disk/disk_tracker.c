/* The survivor's record of what it wrote (disk_tracker.h). */
#include "disk_tracker.h"

#include <stdlib.h>
#include <string.h>

#include "disk_runs.h"

struct disk_tracker {
    struct block_backend backend; /* first: the backend's address is the tracker's */
    struct block_backend *base;
    struct disk_history history;
    uint64_t *bitmap; /* NULL once stopped */
    uint64_t block_count;
};

static const struct block_backend_ops tracker_ops;

struct disk_tracker *disk_tracker_of(struct block_backend *backend)
{
    return backend && backend->ops == &tracker_ops ? (struct disk_tracker *)backend : NULL;
}

void disk_tracker_mark(struct disk_tracker *tracker, uint64_t offset, uint64_t length)
{
    if (!tracker->bitmap || length == 0 || offset >= tracker->base->size)
        return;
    uint64_t end = offset + length < tracker->base->size ? offset + length : tracker->base->size;
    for (uint64_t block = offset / DISK_TRACKER_BLOCK_SIZE; block * DISK_TRACKER_BLOCK_SIZE < end; block++)
        disk_bit_set(tracker->bitmap, block);
}

void disk_tracker_mark_bitmap(struct disk_tracker *tracker, const uint64_t *bitmap)
{
    if (!tracker->bitmap)
        return;
    for (size_t i = 0; i < disk_tracker_bitmap_words(tracker); i++)
        tracker->bitmap[i] |= bitmap[i];
}

/* A request the base failed may have done part of its range: marked too. */
static int tracker_write(struct block_backend *backend, uint64_t offset, const void *buffer, size_t length)
{
    struct disk_tracker *tracker = (struct disk_tracker *)backend;
    int result = block_backend_write(tracker->base, offset, buffer, length);
    disk_tracker_mark(tracker, offset, length);
    return result;
}

static int tracker_discard(struct block_backend *backend, uint64_t offset, uint64_t length)
{
    struct disk_tracker *tracker = (struct disk_tracker *)backend;
    int result = block_backend_discard(tracker->base, offset, length);
    disk_tracker_mark(tracker, offset, length);
    return result;
}

static int tracker_read(struct block_backend *backend, uint64_t offset, void *buffer, size_t length)
{
    return block_backend_read(((struct disk_tracker *)backend)->base, offset, buffer, length);
}

static int tracker_flush(struct block_backend *backend)
{
    return block_backend_flush(((struct disk_tracker *)backend)->base);
}

static uint64_t tracker_next_data(struct block_backend *backend, uint64_t offset)
{
    return block_backend_next_data(((struct disk_tracker *)backend)->base, offset);
}

static void tracker_destroy(struct block_backend *backend)
{
    struct disk_tracker *tracker = (struct disk_tracker *)backend;
    block_backend_destroy(tracker->base);
    free(tracker->bitmap);
    free(tracker);
}

static const struct block_backend_ops tracker_ops = {
    .kind = "tracked",
    .read = tracker_read,
    .write = tracker_write,
    .flush = tracker_flush,
    .discard = tracker_discard,
    .next_data = tracker_next_data,
    .destroy = tracker_destroy,
};

struct disk_tracker *disk_tracker_create(struct block_backend *base, const struct disk_history *history,
                                         struct error *err)
{
    struct disk_tracker *tracker = calloc(1, sizeof *tracker);
    uint64_t blocks = (base->size + DISK_TRACKER_BLOCK_SIZE - 1) / DISK_TRACKER_BLOCK_SIZE;
    size_t words = (size_t)((blocks + 63) / 64);
    uint64_t *bitmap = calloc(words ? words : 1, sizeof *bitmap);
    if (!tracker || !bitmap) {
        free(tracker);
        free(bitmap);
        error_set(err, "out of memory to track the writes to image %s", base->name);
        return NULL;
    }
    tracker->backend = (struct block_backend){
        .ops = &tracker_ops, .name = base->name, .size = base->size, .read_only = base->read_only
    };
    tracker->base = base;
    tracker->history = *history;
    tracker->bitmap = bitmap;
    tracker->block_count = blocks;
    return tracker;
}

struct block_backend *disk_tracker_backend(struct disk_tracker *tracker)
{
    return &tracker->backend;
}

bool disk_tracker_history(const struct disk_tracker *tracker, struct disk_history *history)
{
    if (!tracker->bitmap)
        return false;
    *history = tracker->history;
    return true;
}

size_t disk_tracker_bitmap_words(const struct disk_tracker *tracker)
{
    return (size_t)((tracker->block_count + 63) / 64);
}

uint64_t disk_tracker_block_count(const struct disk_tracker *tracker)
{
    return tracker->block_count;
}

uint64_t disk_tracker_read(const struct disk_tracker *tracker, uint64_t *bitmap)
{
    uint64_t count = 0;
    if (!tracker->bitmap)
        return 0;
    for (size_t i = 0; i < disk_tracker_bitmap_words(tracker); i++) {
        bitmap[i] |= tracker->bitmap[i];
        count += (uint64_t)__builtin_popcountll(tracker->bitmap[i]);
    }
    return count;
}

void disk_tracker_stop(struct disk_tracker *tracker)
{
    free(tracker->bitmap);
    tracker->bitmap = NULL;
}
