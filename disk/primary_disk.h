/* The COLO primary's disk (../shared/DESIGN.md, "Disk replication"): the
 * PVM's virtio-blk backend while protected. It owns the base (the image)
 * and passes every request to it: reads and flushes as they are, writes
 * and discards to the base first (the guest's request is done only when
 * the base has it, and fails with the base's errno as without
 * replication). A write or discard the base took is also recorded in the
 * current epoch's log (one it refused may have done part of its range:
 * its blocks are then sent as the base holds them), which the checkpoint device sends to the secondary
 * with the VM paused before the epoch's CHECKPOINT_END, then clears.
 *
 * The epoch's log is per block, not a list of requests: a block_map from
 * the block index to the block's latest bytes, with the sectors written.
 * The secondary only needs each sector's final content of the epoch, so a
 * sector written a hundred times costs one copy, the memory is bounded by
 * the blocks touched (not by the number of requests), and the iteration in
 * offset order is a sort of the touched blocks. A discard records zeros
 * for its range: the base must read zeros there afterwards, as the raw
 * file backend does (it punches a hole); the secondary's image then reads
 * the same.
 *
 * The log's memory has a bound (the options). A block that would pass it
 * is not copied but marked in the epoch's overflow bitmap; at send time its
 * bytes are read back from the base, which holds the epoch's final content
 * since the VM is paused. (A block already copied stays copied: its later
 * writes cost no new memory.) Running out of memory falls back the same
 * way, so recording never fails a guest write.
 *
 * Apart from the epoch, an optional dirty log over blocks of
 * PRIMARY_DISK_BLOCK_SIZE bytes (like the machine's RAM dirty log) serves
 * the initial sync: its rounds copy the blocks written since the last.
 *
 * Like every block backend the disk runs on the machine's thread or with
 * the machine paused; the calls below must be made the same way, but for
 * the pre-copy's, which run beside the machine (see there). Nothing here
 * talks to a network. */
#ifndef COLO_DISK_PRIMARY_DISK_H
#define COLO_DISK_PRIMARY_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block_backend.h"
#include "error.h"

enum {
    PRIMARY_DISK_BLOCK_SIZE = 4096,
    PRIMARY_DISK_SECTOR_SIZE = 512,
    /* The longest run the epoch's iteration hands its callback. */
    PRIMARY_DISK_RUN_MAXIMUM_BYTES = 1024 * 1024,
};

struct primary_disk;

struct primary_disk_options {
    /* The most block data the epoch's log may copy, in bytes (whole
     * blocks count). Blocks beyond it are only marked and read back from
     * the base at send time. 0: no bound. */
    uint64_t epoch_memory_limit_bytes;
};

struct primary_disk_stats {
    uint64_t epoch_blocks;          /* blocks written or discarded this epoch */
    uint64_t epoch_bytes;           /* bytes the iteration will send (whole blocks for overflow ones) */
    uint64_t epoch_overflow_blocks; /* of epoch_blocks, marked only: read from the base at send time */
    uint64_t epoch_memory_bytes;    /* block data the log holds */
    uint64_t epochs_cleared;
    uint64_t blocks_total; /* over every cleared epoch */
    uint64_t bytes_total;
    uint64_t overflow_blocks_total;
    bool dirty_log_enabled;
};

/* Wraps `base` (the primary's image, writable). On success the disk owns
 * the base: destroying the disk (block_backend_destroy on its backend)
 * destroys the base. On failure (NULL, err set naming the image) the
 * caller still owns the base. The epoch starts empty. */
struct primary_disk *primary_disk_create(struct block_backend *base, const struct primary_disk_options *options,
                                         struct error *err);

/* The backend the PVM's virtio-blk uses (it owns it then, and destroys the
 * disk with it). Same size and name as the base. */
struct block_backend *primary_disk_backend(struct primary_disk *disk);

/* Frees the disk (its epoch and logs) and gives the base back to the
 * caller, who owns it again: replication ended, the guest's disk goes back
 * to being the image alone. The disk's backend must no longer be in use
 * (virtio_blk_replace_backend first, machine paused). */
struct block_backend *primary_disk_unwrap(struct primary_disk *disk);

/* The disk behind a backend made by primary_disk_create; NULL otherwise. */
struct primary_disk *primary_disk_of(struct block_backend *backend);

/* Called once per run of the epoch's writes, in increasing offset order:
 * the bytes [offset, offset + length) of the base at the end of the
 * epoch, length a positive multiple of the sector size, at most
 * PRIMARY_DISK_RUN_MAXIMUM_BYTES. data is valid during the call only. A
 * negative return stops the iteration and is returned by it. */
typedef int (*primary_disk_run_function)(void *opaque, uint64_t offset, const void *data, size_t length);

/* Hands the epoch's writes to `run` (VM paused): the written sectors of
 * each copied block, whole blocks read from the base for overflow ones,
 * adjacent sectors merged into one run. Changes nothing: the epoch stays
 * until primary_disk_epoch_clear, so a failed send can be iterated again.
 * 0; a negative errno when a base read failed (err set naming the image
 * and offset), or -ENOMEM; run's own negative value (err untouched). */
int primary_disk_epoch_for_each(struct primary_disk *disk, primary_disk_run_function run, void *opaque,
                                struct error *err);

/* The epoch's checkpoint was sent: empties the log and adds it to the
 * totals. The next epoch begins. */
void primary_disk_epoch_clear(struct primary_disk *disk);

/* The checkpoint's pre-copy: most of an epoch's writes go to the
 * secondary while the VM still runs, so the pause sends only those since.
 *
 * _begin (the previous pre-copy finished; the VM may run: the guest's
 * writes wait for the swap) moves the epoch's log so far aside and starts
 * an empty one; it returns the blocks moved.
 * _for_each (VM running) hands their runs to `run` like
 * primary_disk_epoch_for_each; overflow blocks are read from the base
 * now, and a block the guest writes meanwhile is in the new epoch too, so
 * its later record (sent with the VM paused) wins at the secondary, which
 * applies a checkpoint's records in order. _finish frees what was moved
 * aside and adds it to the totals. */
uint64_t primary_disk_precopy_begin(struct primary_disk *disk);
/* Any thread, VM running: whether the epoch has a write since it began or
 * was last moved aside (a hint: a write a moment later is not seen). */
bool primary_disk_epoch_written(struct primary_disk *disk);
/* Any thread: `hook` (NULL: none) is called by the first write or discard
 * recorded into an empty epoch (a new one, or one just moved aside or
 * cleared), on the writing thread (the machine's) under the disk's epoch
 * lock: it must not wait, nor call into the disk. The replication loop
 * learns this way that its stream phase has something to send. Setting
 * takes the same lock: once it returns, the old hook is neither running
 * nor called again. */
void primary_disk_set_written_hook(struct primary_disk *disk, void (*hook)(void *opaque), void *opaque);
int primary_disk_precopy_for_each(struct primary_disk *disk, primary_disk_run_function run, void *opaque,
                                  struct error *err);
void primary_disk_precopy_finish(struct primary_disk *disk);

/* Words of a dirty bitmap for this disk (bit i: block i of
 * PRIMARY_DISK_BLOCK_SIZE bytes; the last block may be short). */
size_t primary_disk_bitmap_words(const struct primary_disk *disk);
uint64_t primary_disk_block_count(const struct primary_disk *disk);

/* Starts (clearing the log) or stops marking the blocks each write or
 * discard touches. A write the base failed is marked too: it may have
 * changed part of its range, and the sync must copy what the base holds. */
void primary_disk_dirty_log_enable(struct primary_disk *disk, bool enable);

/* Copies the dirty log into bitmap (primary_disk_bitmap_words words) and
 * clears it. Returns the number of dirty blocks. */
uint64_t primary_disk_dirty_log_read_and_clear(struct primary_disk *disk, uint64_t *bitmap);

/* Whether block `index` of the base reads as all zeros (the initial sync
 * leaves those as holes): 1 yes, 0 no, a negative errno when the read
 * failed or the block is outside the image. */
int primary_disk_block_is_zero(struct primary_disk *disk, uint64_t index);

void primary_disk_get_stats(const struct primary_disk *disk, struct primary_disk_stats *stats);

#endif
