/* The disks' initial sync (../shared/DESIGN.md, "Disk replication"): makes
 * a migration destination's images identical to the source's while the VM
 * runs, as the companion of the RAM's live migration
 * (stream/live_migration.h). A COLO primary's initial copy uses it, so the
 * secondary's base starts as the PVM's disk; `colo migrate --copy-disks`
 * too.
 *
 *   destination  after the history exchange below: hashes every chunk
 *                of the images the source compares and sends them
 *                (DISK_HASHES records, then CHECKPOINT_END);
 *   source       compares: reads each chunk of its own image, with the VM
 *                running, and sends the chunks whose hashes differ as
 *                DISK_WRITE runs of at most DISK_SYNC_RUN_BYTES, each
 *                applied and acknowledged before the next; an identical
 *                pre-provisioned image costs one read of both and no copy,
 *                an empty sparse one gets only the chunks holding data
 *                (holes stay holes); then rounds of the blocks the guest
 *                wrote meanwhile (a dirty-block log, like the RAM's); in
 *                every RAM pre-copy round the blocks written since; in the
 *                stop-and-copy, VM paused, the rest.
 *   destination  writes each run's blocks straight into its images (its VM
 *                does not run yet), and flushes them before acknowledging
 *                the end.
 *
 * Before any hash, the two sides exchange what they know of the images'
 * histories (disk_history.h, DISK_HISTORY records, docs/stream.md):
 *
 *   destination  first, each disk's history (its sidecar, read by the
 *                caller), then CHECKPOINT_END;
 *   source       the plan: per disk, incremental when it tracks the
 *                writes since that same history (disk_tracker.h, its
 *                own image the same size), else hashes; with it the new
 *                protection's id; then CHECKPOINT_END;
 *   destination  removes its images' histories (they will change), then
 *                the hashes of the other disks only, then CHECKPOINT_END;
 *   source       an incremental disk gets only its tracked blocks
 *                (neither side reads the whole image), the others the
 *                compare above; the dirty rounds and the stop-and-copy
 *                go on as ever, and the trackers stop at the end.
 *
 * A destination of the version before (DISK_HASHES first) gets the
 * compare for every disk.
 *
 * So at the VM state the destination loads, its disks are the source's at
 * the same instant. A sync that fails part way leaves the destination's
 * images a mix: only a migration that completed makes them a disk (a COLO
 * secondary cannot fail over before its initial copy completed, and the
 * next protect compares the hashes again).
 *
 * The source wraps each writable disk in a primary_disk (its dirty log and
 * epoch log), from disk_sync_source_init until disk_sync_source_destroy; a
 * COLO primary keeps the wrappers for its checkpoints
 * (disk_replication.h). Reads of the images while the VM runs happen on
 * the migrating thread: the raw file backend reads with pread, and a block
 * the guest writes during such a read is in the dirty log (marked after
 * the image took the write) and goes again. */
#ifndef COLO_DISK_DISK_SYNC_H
#define COLO_DISK_DISK_SYNC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "disk_history.h"
#include "disk_tracker.h"
#include "error.h"
#include "live_migration.h"
#include "machine.h"
#include "primary_disk.h"

enum {
    /* The compare's unit: a hash per 64 KiB (a 2 GiB image: 32,768
     * hashes, 512 KiB on the wire). */
    DISK_SYNC_CHUNK_SIZE = 64 * 1024,
    /* Data per run of the full pass: the destination stages a run in
     * memory before applying it. */
    DISK_SYNC_RUN_BYTES = 32 * 1024 * 1024,
    /* Dirty rounds after the full pass stop below this many blocks (the
     * rest goes with the RAM's rounds and the stop-and-copy). */
    DISK_SYNC_SMALL_DIRTY_BLOCKS = 256,
    DISK_SYNC_MAX_DIRTY_ROUNDS = 8,
    /* How long the source waits for the destination's hashes. */
    DISK_SYNC_HASH_TIMEOUT_MS = 300 * 1000,
};

/* How a disk was synced: only the blocks written since a shared history,
 * the chunks whose hashes differ, or (a destination of an older version,
 * which sends hashes at once) the same compare, "hashes". */
enum disk_sync_mode {
    DISK_SYNC_MODE_UNDECIDED,
    DISK_SYNC_MODE_INCREMENTAL,
    DISK_SYNC_MODE_HASHES,
};
const char *disk_sync_mode_name(enum disk_sync_mode mode);

/* What a sync did so far; any thread may read it (disk_sync_source_get_progress). */
struct disk_sync_progress {
    uint64_t bytes_total;    /* the images' sizes, summed */
    uint64_t bytes_compared; /* of the full pass */
    uint64_t chunks_differing;
    uint64_t bytes_sent; /* DISK_WRITE data: the full pass and the rounds */
    uint64_t dirty_rounds;
    uint64_t dirty_blocks_sent;   /* by the rounds after the full pass */
    uint64_t final_blocks;        /* in the stop-and-copy */
    uint64_t tracked_blocks_sent; /* by the incremental disks' pass */
    /* The first pass's work: the hashed disks' sizes plus the incremental
     * disks' tracked bytes, and how much of it is done (for a percentage). */
    uint64_t bytes_planned, bytes_done;
    unsigned incremental_disks, hashed_disks;
    enum disk_sync_mode modes[MACHINE_MAX_DISKS];
    unsigned disk_count;
    bool planned;  /* the modes are decided */
    bool compared; /* the full pass is over */
    bool done;     /* the stop-and-copy sent the last blocks */
};

struct disk_sync_source_disk {
    struct virtio_blk *device;
    struct block_backend *image;  /* what the sync reads: the primary disk's base */
    struct primary_disk *primary; /* NULL for a read-only disk (nothing writes it) */
    uint64_t *bitmap;             /* dirty blocks of one round */
    struct disk_tracker *tracker; /* the writes since a history, or NULL */
    _Atomic int mode;             /* enum disk_sync_mode */
};

struct disk_sync_source {
    struct machine *machine;
    unsigned disk_count;
    struct disk_sync_source_disk disks[MACHINE_MAX_DISKS];
    uint8_t *buffer;    /* a chunk, or a run of blocks */
    uint64_t run_bytes; /* sent since the last run ended */
    struct migration_companion companion;
    /* The new protection's id, sent to the destination with the plan
     * (drawn at init; a caller may set its own before the sync). */
    uint8_t protection[DISK_HISTORY_PROTECTION_SIZE];
    /* Called on the migrating thread every 1 MiB of the full pass, at its
     * end and after each dirty round (may be NULL; set after init):
     * progress events. It limits its own rate. */
    void (*on_progress)(void *opaque);
    void *on_progress_opaque;
    /* Progress, shared with status readers. */
    _Atomic uint64_t bytes_total, bytes_compared, chunks_differing, bytes_sent, dirty_rounds, dirty_blocks_sent,
        final_blocks, tracked_blocks_sent, bytes_planned, bytes_done;
    atomic_bool planned, compared, done;
};

/* With the machine paused (machine_pause) or not yet running: wraps every
 * writable disk of the machine in a primary_disk (options may be NULL)
 * with its dirty log on, and keeps what the sync needs. -1 with err set
 * (naming the image) and nothing changed on failure. */
int disk_sync_source_init(struct disk_sync_source *sync, struct machine *machine,
                          const struct primary_disk_options *options, struct error *err);
/* With the machine paused or stopped: takes the wrappers out (the images
 * go back under the disks, the logs are freed). */
void disk_sync_source_destroy(struct disk_sync_source *sync);
/* For migration_options.companion. */
const struct migration_companion *disk_sync_source_companion(struct disk_sync_source *sync);
/* Disk `index`'s wrapper; NULL for a read-only disk. */
struct primary_disk *disk_sync_source_primary_disk(struct disk_sync_source *sync, unsigned index);
void disk_sync_source_get_progress(struct disk_sync_source *sync, struct disk_sync_progress *progress);

struct disk_sync_destination {
    struct machine *machine;
    struct migration_companion companion;
    /* Each image's history (disk_sync_destination_read_histories, or the
     * caller), told to the source first. */
    struct disk_history history[MACHINE_MAX_DISKS];
    bool history_known[MACHINE_MAX_DISKS];
    /* From the source's plan: how each disk is synced, and the
     * protection's id (protection_known: the source sent a plan). */
    enum disk_sync_mode modes[MACHINE_MAX_DISKS];
    uint8_t protection[DISK_HISTORY_PROTECTION_SIZE];
    bool protection_known;
    bool written[MACHINE_MAX_DISKS];
    uint64_t bytes_hashed, bytes_written, writes;
    double hash_seconds;
};

/* The destination's side, for migration_receive_with_companion: machine
 * is the one receiving (not running), whose disks are plain images. */
void disk_sync_destination_init(struct disk_sync_destination *sync, struct machine *machine);
const struct migration_companion *disk_sync_destination_companion(struct disk_sync_destination *sync);
/* Reads every writable image's history sidecar into sync->history; for
 * each one that is unknown, `why` (may be NULL) is called with the disk
 * and the reason (for the log). */
void disk_sync_destination_read_histories(struct disk_sync_destination *sync,
                                          void (*why)(void *opaque, unsigned disk, const char *reason), void *opaque);

/* The hash of a chunk as DISK_HASHES carries it (XXH3-128, canonical). */
void disk_sync_hash(const void *data, size_t length, uint8_t hash[16]);

#endif
