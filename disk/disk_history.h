/* An image's history (docs/replication.md, "Reprotect and the image's
 * history"): a small sidecar file next to a replicated disk image,
 * IMAGE.colo-history, saying "this image is exactly the state of
 * checkpoint N of protection P". A later protection whose source tracked
 * the blocks it wrote since that same state (disk_tracker.h) then sends
 * only those (disk_sync.h), instead of both sides reading the whole image.
 *
 * It is written only when the image is known to be exactly that state (a
 * secondary or a primary that ended on purpose, the image flushed), and
 * removed before anything changes the image again (a destination's sync,
 * a VM started on it), so a crash never leaves a stale history that says
 * "valid". The file (72 bytes, little-endian):
 *
 *   "COLOHIST"  u32 version (1)  u32 length (72)  u64 disk_size
 *   u8 protection[16]  u64 checkpoint  u64 image_inode
 *   u64 image_mtime_ns  u32 zero  u32 crc32c of the 68 bytes before
 *
 * The image's inode and modification time are those after its last write:
 * an image replaced or written by anything else since no longer matches.
 * A missing, corrupt, foreign or stale file means "history unknown" (the
 * reader says why), never an error: the sync then compares hashes. */
#ifndef COLO_DISK_DISK_HISTORY_H
#define COLO_DISK_DISK_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define DISK_HISTORY_SUFFIX ".colo-history"
enum {
    DISK_HISTORY_VERSION = 1,
    DISK_HISTORY_FILE_LENGTH = 72,
    DISK_HISTORY_PROTECTION_SIZE = 16,
};

/* Which state an image holds: checkpoint `checkpoint` (0: the end of the
 * initial copy) of protection `protection` (random, drawn at each
 * protect), for an image of disk_size bytes. */
struct disk_history {
    uint8_t protection[DISK_HISTORY_PROTECTION_SIZE];
    uint64_t checkpoint;
    uint64_t disk_size;
};

/* The file's own fields beyond the history: which image file it is for. */
struct disk_history_stamp {
    uint64_t image_inode;
    uint64_t image_mtime_ns;
};

/* Two histories name the same state. */
bool disk_history_equal(const struct disk_history *a, const struct disk_history *b);

/* A fresh protection id (getrandom; falls back to the clock and the
 * process id, which is unique enough for matching one's own images). */
void disk_history_new_protection(uint8_t protection[DISK_HISTORY_PROTECTION_SIZE]);

/* The file's bytes for a history and stamp (exactly
 * DISK_HISTORY_FILE_LENGTH bytes into `bytes`). */
void disk_history_encode(const struct disk_history *history, const struct disk_history_stamp *stamp,
                         uint8_t bytes[DISK_HISTORY_FILE_LENGTH]);
/* Parses a file's bytes: true with the fields, or false with why (a
 * sentence fragment: "not a history file", "version 2 (this reader reads
 * 1)", "CRC mismatch", ...). */
bool disk_history_parse(const uint8_t *bytes, size_t length, struct disk_history *history,
                        struct disk_history_stamp *stamp, char *why, size_t why_size);

/* Writes IMAGE.colo-history atomically (a temporary file, fsync, rename,
 * fsync of the directory) for the image at image_path, as it is now: the
 * caller flushed it. -1 with err set (naming the file) on failure: the
 * image then has no history (nothing half-written is left). */
int disk_history_write(const char *image_path, const struct disk_history *history, struct error *err);

/* Reads the image's history: true when it is valid for the image as it is
 * now (same inode, modification time and size), false with why (missing,
 * corrupt, another version, another image, written since). */
bool disk_history_read(const char *image_path, struct disk_history *history, char *why, size_t why_size);

/* Removes the image's history (and fsyncs the directory) before anything
 * changes the image: 0 (also when there was none), -1 with err set. */
int disk_history_invalidate(const char *image_path, struct error *err);

#endif
