/* The COLO secondary's disk, in three parts (../shared/DESIGN.md, "Disk
 * replication"):
 *
 *   - the base: the image, holding the PVM's disk as of the last
 *     checkpoint;
 *   - the buffer: the PVM's writes of the current epoch, kept apart until
 *     the checkpoint that ends the epoch has arrived whole;
 *   - the overlay: the SVM's own writes since the last checkpoint.
 *
 * The SVM's virtio-blk uses the disk as its block backend: it reads its
 * overlay over the base and never sees the buffer; its writes go to the
 * overlay, never to the base. A checkpoint folds the buffer into the base
 * and empties the overlay (the SVM's memory is replaced by the PVM's at the
 * same moment, so its own writes are gone too); a checkpoint that did not
 * arrive whole drops the buffer and changes nothing else. At failover the
 * SVM's view becomes the disk: the overlay is folded into the base, the
 * buffer dropped, the base flushed; from then on every request goes
 * straight to the base.
 *
 * Inside, the image is cut into blocks of SECONDARY_DISK_BLOCK_SIZE bytes
 * (the last one may be shorter); requests are whole 512-byte sectors, any
 * number of them at any sector, as block_backend.h says.
 *
 * The overlay is in memory. The buffer is in memory up to a byte bound
 * (the options); its blocks beyond the bound go to a spill file in the
 * directory the options name, an unnamed file (O_TMPFILE, or a name
 * unlinked at once) so that a crash leaves nothing behind: each spilled
 * block has a block-sized slot in it, in the order the blocks came, and
 * a commit or an abort empties it with the buffer. Without a spill
 * directory a PVM write that would pass the bound is refused.
 *
 * Like every block backend, the disk runs on the machine's thread or with
 * the machine paused; the replication side (buffer_write, commit, abort,
 * failover) must be called the same way, never concurrently with the
 * SVM's requests. */
#ifndef COLO_DISK_SECONDARY_DISK_H
#define COLO_DISK_SECONDARY_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block_backend.h"
#include "error.h"

enum { SECONDARY_DISK_BLOCK_SIZE = 4096, SECONDARY_DISK_SECTOR_SIZE = 512 };

struct secondary_disk;

struct secondary_disk_options {
    /* The most memory the buffer may hold, in bytes (whole blocks count:
     * one sector written in a block holds the block). 0: no bound. */
    uint64_t buffer_limit_bytes;
    /* Where the buffer's blocks beyond the bound go: a directory the
     * spill file is made in at secondary_disk_create (the disk keeps a
     * copy of the string). NULL: no spill, a write past the bound is
     * refused. Unused without a bound. */
    const char *spill_directory;
};

/* What one fold into the base did (a commit's buffer, a failover's
 * overlay), for the checkpoint report. */
struct secondary_disk_fold_report {
    uint64_t blocks;      /* blocks folded */
    uint64_t bytes;       /* bytes written to the base */
    uint64_t writes;      /* write requests to the base (adjacent blocks merge) */
    uint64_t duration_ns; /* the whole fold, flush included at failover */
};

struct secondary_disk_stats {
    uint64_t buffered_blocks;  /* the PVM's writes of this epoch */
    uint64_t buffered_bytes;   /* the sectors written in them */
    uint64_t overlay_blocks;   /* the SVM's writes since the last checkpoint */
    uint64_t overlay_bytes;    /* their bytes (a discarded block counts, holds none) */
    uint64_t memory_bytes;     /* block data held by the buffer and the overlay */
    uint64_t spilled_blocks;   /* of the buffered blocks, those in the spill file */
    uint64_t spill_file_bytes; /* the spill file's length (0 with nothing spilled) */
    uint64_t checkpoints_committed;
    uint64_t checkpoints_aborted;
    uint64_t folded_blocks_total; /* over every commit and the failover */
    uint64_t folded_bytes_total;
    bool broken;
    bool failed_over;
};

/* Wraps `base` (the secondary's image, writable, the PVM's disk as of the
 * last checkpoint), and makes the spill file when the options name a
 * directory. On success the disk owns the base: destroying the disk
 * (block_backend_destroy on its backend) destroys the base. On failure
 * (NULL, err set naming the image, and the spill directory when the spill
 * file cannot be made) the caller still owns the base. */
struct secondary_disk *secondary_disk_create(struct block_backend *base, const struct secondary_disk_options *options,
                                             struct error *err);

/* The backend the SVM's virtio-blk uses (it owns it then, and destroys the
 * disk with it). Same size and name as the base. */
struct block_backend *secondary_disk_backend(struct secondary_disk *disk);

/* The disk behind a backend made by secondary_disk_create; NULL for any
 * other backend. */
struct secondary_disk *secondary_disk_of(struct block_backend *backend);

/* A PVM write of the current epoch (offset and length in whole sectors,
 * inside the image): into the buffer, unseen by the SVM until the commit;
 * with a spill directory, blocks beyond the bound into the spill file (a
 * later write to a spilled block rewrites it there). -1 with err set, and
 * nothing buffered, when it is out of range, the buffer would pass its
 * bound without a spill directory, or the disk is broken or has failed
 * over. When memory runs out or a write to the spill file fails (err
 * names the spill file: a full disk, an I/O error), part of it may be
 * buffered: the epoch is then incomplete, and its checkpoint must be
 * aborted; the commit refuses it. */
int secondary_disk_buffer_write(struct secondary_disk *disk, uint64_t offset, const void *data, size_t length,
                                struct error *err);

/* The checkpoint that ends the epoch has arrived whole and is applied with
 * it: writes the buffer into the base (in offset order, adjacent blocks as
 * one write, spilled blocks read back from the spill file), then empties
 * the buffer (the spill file is truncated to nothing) and the overlay.
 * The base is not
 * flushed: until a failover only this disk reads it, and a host crash
 * loses the SVM anyway. report (may be NULL) says what the fold did.
 *
 * When a base write fails: -1, err names the image and the offset, and the
 * disk is broken (secondary_disk_broken) for good. What remains then: the
 * base holds this epoch's writes below the failed write's offset, the
 * failed write's range holds either, above it the last checkpoint's
 * bytes: neither checkpoint's disk. The buffer and the overlay are kept
 * as they were until the disk is destroyed; every SVM request answers
 * -EIO and every call here fails, so nothing reads that mix as a disk.
 * (Folding again would be safe, the fold is idempotent, but a retry is not
 * built.) A read of the spill file that fails (err names it) does the
 * same once the fold has written to the base. Other failures (the disk
 * already broken or failed over, an incomplete epoch, out of memory or a
 * failed spill file read before the first write) change nothing. */
int secondary_disk_checkpoint_commit(struct secondary_disk *disk, struct secondary_disk_fold_report *report,
                                     struct error *err);

/* The checkpoint that would end the epoch did not arrive whole, or its
 * epoch is incomplete: drops the buffer (and empties the spill file); the
 * base and the overlay are unchanged. Nothing on a broken or failed-over
 * disk. */
void secondary_disk_checkpoint_abort(struct secondary_disk *disk);

/* Failover: the SVM's view becomes the disk. Writes the overlay into the
 * base (discarded blocks as zeros, as the SVM read them), drops the buffer
 * (the epoch's checkpoint never arrived) and flushes the base. From then
 * on the backend passes every request to the base, flush included, and
 * the calls above fail. A failed write or flush: -1, err names the image,
 * and the disk is broken as after a failed commit (the base holds part of
 * the overlay, or all of it without the flush's promise). */
int secondary_disk_failover(struct secondary_disk *disk, struct secondary_disk_fold_report *report, struct error *err);

/* Before a failover: sets bit i of `bitmap` (a bit per block of
 * SECONDARY_DISK_BLOCK_SIZE bytes) for every block the overlay holds, the
 * blocks the failover will fold into the base (the survivor's tracker
 * counts them as written since the last checkpoint). */
void secondary_disk_mark_overlay(const struct secondary_disk *disk, uint64_t *bitmap);

/* The secondary ends on purpose with the base as the last checkpoint
 * left it: makes it durable (the commits do not flush), so its history
 * can be recorded. -1 with err set when the flush fails, the disk is
 * broken or it failed over (then the base is the SVM's, not a
 * checkpoint). */
int secondary_disk_flush_base(struct secondary_disk *disk, struct error *err);

/* True once a fold into the base failed: the base is no consistent disk. */
bool secondary_disk_broken(const struct secondary_disk *disk);

void secondary_disk_get_stats(const struct secondary_disk *disk, struct secondary_disk_stats *stats);

#endif
