/* The survivor's record of what it wrote (docs/replication.md, "Reprotect
 * and the image's history"): a block backend that passes every request to
 * the one below and marks, per block of DISK_TRACKER_BLOCK_SIZE bytes,
 * every block a write or discard touched since a known state of the image
 * (its history: checkpoint N of protection P, disk_history.h).
 *
 * A secondary that fails over puts one over each replicated disk (marked
 * first with the overlay blocks the failover folded), and so does a VM
 * started on an image whose history is valid. The next protection's sync
 * (disk_sync.h) finds it under its primary disk: when the destination's
 * image holds the same history, only the marked blocks are sent. Once a
 * sync has used it, the tracker stops (disk_tracker_stop): the new
 * protection has its own history.
 *
 * Like every block backend it runs on the machine's thread or with the
 * machine paused; so do the calls below. */
#ifndef COLO_DISK_DISK_TRACKER_H
#define COLO_DISK_DISK_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block_backend.h"
#include "disk_history.h"
#include "error.h"

enum { DISK_TRACKER_BLOCK_SIZE = 4096 };

struct disk_tracker;

/* Wraps `base` (writable) whose contents are exactly `history`'s state
 * plus nothing yet. On success the tracker owns the base (destroying its
 * backend destroys the base); NULL with err set on failure (out of
 * memory), the caller still owns the base. */
struct disk_tracker *disk_tracker_create(struct block_backend *base, const struct disk_history *history,
                                         struct error *err);
/* The backend to give the virtio-blk device (same size and name). */
struct block_backend *disk_tracker_backend(struct disk_tracker *tracker);
/* The tracker behind a backend made by disk_tracker_create; NULL otherwise. */
struct disk_tracker *disk_tracker_of(struct block_backend *backend);

/* Marks [offset, offset + length) as written (a failover's folded overlay). */
void disk_tracker_mark(struct disk_tracker *tracker, uint64_t offset, uint64_t length);
/* Marks the blocks set in `bitmap` (bit i: block i). */
void disk_tracker_mark_bitmap(struct disk_tracker *tracker, const uint64_t *bitmap);

/* Whether it still tracks, and from which history. */
bool disk_tracker_history(const struct disk_tracker *tracker, struct disk_history *history);
/* Words of its bitmap, and its blocks. */
size_t disk_tracker_bitmap_words(const struct disk_tracker *tracker);
uint64_t disk_tracker_block_count(const struct disk_tracker *tracker);
/* ORs the marked blocks into `bitmap` (disk_tracker_bitmap_words words)
 * and returns how many are marked. The marks stay: a sync that fails part
 * way can use them again. */
uint64_t disk_tracker_read(const struct disk_tracker *tracker, uint64_t *bitmap);
/* The history was used (or is void): from now on it only passes requests
 * through; its memory is freed. */
void disk_tracker_stop(struct disk_tracker *tracker);

#endif
