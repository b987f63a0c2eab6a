/* The COLO secondary's three-part disk (secondary_disk.h). */
#include "secondary_disk.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block_map.h"
#include "clock.h"
#include "disk_runs.h"

enum {
    /* The largest write a fold hands the base: adjacent blocks are staged
     * into one buffer of this size. */
    FOLD_STAGING_BYTES = 64 * SECONDARY_DISK_BLOCK_SIZE,
    ALL_SECTORS = (1u << DISK_SECTORS_PER_BLOCK) - 1,
    /* Freed blocks a pool keeps for the next epoch: 64 MiB. */
    SECONDARY_DISK_POOL_BLOCKS = 16384,
};
_Static_assert((int)SECONDARY_DISK_BLOCK_SIZE == (int)DISK_BLOCK_SIZE &&
                   (int)SECONDARY_DISK_SECTOR_SIZE == (int)DISK_SECTOR_SIZE,
               "the secondary's disk uses disk_runs.h's blocks");

struct secondary_disk {
    struct block_backend backend; /* first: the backend pointer is the disk's */
    struct block_backend *base;   /* owned */
    uint64_t buffer_limit_bytes;
    /* The SVM's writes: every slot's block is whole (all sectors); data
     * NULL means the SVM discarded the whole block and reads zeros. */
    struct block_map overlay;
    /* The PVM's writes of this epoch: data is a block, or NULL for a
     * block in the spill file (`spilled`, at spill_offset); `sectors`
     * says which of its sectors were written (only those are folded, so a
     * partial write needs no read of the base). */
    struct block_map buffer;
    /* The spill file (-1: none), unlinked from the start: spilled block n
     * has the block-sized slot at n * SECONDARY_DISK_BLOCK_SIZE. Only
     * emptied all at once with the buffer, so appending needs no index of
     * free slots. */
    int spill_fd;
    char *spill_directory;     /* for messages */
    uint64_t spilled_blocks;   /* slots in use */
    uint64_t spill_file_bytes; /* the file's length: the end of its furthest write */
    /* A PVM write failed part way (out of memory, the spill file): the
     * buffer lacks part of the epoch, so only an abort may end it. */
    bool epoch_incomplete;
    uint8_t *staging; /* FOLD_STAGING_BYTES */
    /* Freed blocks kept for the next epoch, one pool per map: the buffer
     * is filled on the replication loop's thread, the overlay on the
     * machine's. */
    struct block_pool buffer_pool, overlay_pool;
    uint64_t checkpoints_committed;
    uint64_t checkpoints_aborted;
    uint64_t folded_blocks_total;
    uint64_t folded_bytes_total;
    bool broken;
    bool failed_over;
};

static const struct block_backend_ops secondary_disk_ops;

static const uint8_t zero_block[SECONDARY_DISK_BLOCK_SIZE];

struct secondary_disk *secondary_disk_of(struct block_backend *backend)
{
    return backend && backend->ops == &secondary_disk_ops ? (struct secondary_disk *)backend : NULL;
}

struct block_backend *secondary_disk_backend(struct secondary_disk *disk)
{
    return &disk->backend;
}

bool secondary_disk_broken(const struct secondary_disk *disk)
{
    return disk->broken;
}

/* Bytes of block `index` inside the image: the last block may be short. */
static size_t block_length(const struct secondary_disk *disk, uint64_t index)
{
    return disk_block_length(disk->backend.size, index);
}

static bool request_valid(const struct secondary_disk *disk, uint64_t offset, uint64_t length)
{
    return disk_request_valid(disk->backend.size, offset, length);
}

/* The part of block `index` a request [offset, offset + length) covers. */
struct block_part {
    uint64_t index;
    size_t start;  /* inside the block */
    size_t length; /* inside the block */
};

static struct block_part first_part(const struct secondary_disk *disk, uint64_t offset, uint64_t length)
{
    uint64_t index = offset / SECONDARY_DISK_BLOCK_SIZE;
    size_t start = (size_t)(offset % SECONDARY_DISK_BLOCK_SIZE);
    size_t room = block_length(disk, index) - start;
    return (struct block_part){ .index = index, .start = start, .length = length < room ? (size_t)length : room };
}

/* The SVM's read: the overlay's blocks, the base's bytes between them (one
 * base read per run of blocks the overlay does not have). */
static int disk_read(struct block_backend *backend, uint64_t offset, void *buffer, size_t length)
{
    struct secondary_disk *disk = (struct secondary_disk *)backend;
    if (disk->broken)
        return -EIO;
    if (!request_valid(disk, offset, length))
        return -EINVAL;
    uint8_t *out = buffer;
    uint64_t base_run_offset = offset;
    size_t base_run_length = 0;
    while (length > 0) {
        struct block_part part = first_part(disk, offset, length);
        const struct block_map_slot *slot = block_map_find(&disk->overlay, part.index);
        if (slot) {
            if (base_run_length > 0) {
                int result = block_backend_read(disk->base, base_run_offset, out - base_run_length, base_run_length);
                if (result < 0)
                    return result;
                base_run_length = 0;
            }
            memcpy(out, slot->data ? slot->data + part.start : zero_block, part.length);
        } else {
            if (base_run_length == 0)
                base_run_offset = offset;
            base_run_length += part.length;
        }
        out += part.length;
        offset += part.length;
        length -= part.length;
    }
    if (base_run_length > 0)
        return block_backend_read(disk->base, base_run_offset, out - base_run_length, base_run_length);
    return 0;
}

/* The overlay's block `index` with its bytes: a new block holds the base's
 * bytes first unless the caller will overwrite all of it; a discarded one
 * holds zeros. The bytes are ready before the slot is made, so a failure
 * (NULL, *result set) leaves the overlay as it was. */
static struct block_map_slot *overlay_block(struct secondary_disk *disk, uint64_t index, bool whole, int *result)
{
    struct block_map_slot *slot = block_map_find(&disk->overlay, index);
    if (slot && slot->data)
        return slot;
    uint8_t *data = block_pool_get(&disk->overlay_pool);
    if (!data) {
        *result = -ENOMEM;
        return NULL;
    }
    size_t length = block_length(disk, index);
    if (slot)
        memset(data, 0, length);
    else if (!whole) {
        int read_result = block_backend_read(disk->base, index * SECONDARY_DISK_BLOCK_SIZE, data, length);
        if (read_result < 0) {
            block_pool_put(&disk->overlay_pool, data);
            *result = read_result;
            return NULL;
        }
    }
    slot = block_map_insert(&disk->overlay, index);
    if (!slot) {
        block_pool_put(&disk->overlay_pool, data);
        *result = -ENOMEM;
        return NULL;
    }
    slot->data = data;
    slot->sectors = ALL_SECTORS;
    return slot;
}

/* The SVM's write: into the overlay only. The base is the PVM's disk and
 * is written only by folds. */
static int disk_write(struct block_backend *backend, uint64_t offset, const void *buffer, size_t length)
{
    struct secondary_disk *disk = (struct secondary_disk *)backend;
    if (disk->broken)
        return -EIO;
    if (disk->failed_over)
        return block_backend_write(disk->base, offset, buffer, length);
    if (!request_valid(disk, offset, length))
        return -EINVAL;
    const uint8_t *in = buffer;
    while (length > 0) {
        struct block_part part = first_part(disk, offset, length);
        int result = 0;
        struct block_map_slot *slot = overlay_block(
            disk, part.index, part.start == 0 && part.length == block_length(disk, part.index), &result);
        if (!slot)
            return result; /* the blocks before this one are written: a failed write may do part of it */
        memcpy(slot->data + part.start, in, part.length);
        in += part.length;
        offset += part.length;
        length -= part.length;
    }
    return 0;
}

/* The SVM's flush succeeds without touching the base: its writes live in
 * the overlay and are thrown away at the next checkpoint (the SVM's memory
 * is replaced then too), so there is nothing durable to promise. At
 * failover they become the disk, and the failover flushes the base; after
 * it a flush is the base's. */
static int disk_flush(struct block_backend *backend)
{
    struct secondary_disk *disk = (struct secondary_disk *)backend;
    if (disk->broken)
        return -EIO;
    if (disk->failed_over)
        return block_backend_flush(disk->base);
    return 0;
}

/* The SVM's discard: the range reads as zeros afterwards (whole blocks
 * hold no memory). */
static int disk_discard(struct block_backend *backend, uint64_t offset, uint64_t length)
{
    struct secondary_disk *disk = (struct secondary_disk *)backend;
    if (disk->broken)
        return -EIO;
    if (disk->failed_over)
        return block_backend_discard(disk->base, offset, length);
    if (!request_valid(disk, offset, length))
        return -EINVAL;
    while (length > 0) {
        struct block_part part = first_part(disk, offset, length);
        int result = 0;
        if (part.start == 0 && part.length == block_length(disk, part.index)) {
            struct block_map_slot *slot = block_map_insert(&disk->overlay, part.index);
            if (!slot)
                return -ENOMEM;
            block_pool_put(&disk->overlay_pool, slot->data);
            slot->data = NULL;
            slot->sectors = ALL_SECTORS;
        } else {
            struct block_map_slot *slot = overlay_block(disk, part.index, false, &result);
            if (!slot)
                return result;
            memset(slot->data + part.start, 0, part.length);
        }
        offset += part.length;
        length -= part.length;
    }
    return 0;
}

static void disk_destroy(struct block_backend *backend)
{
    struct secondary_disk *disk = (struct secondary_disk *)backend;
    block_map_clear(&disk->overlay);
    block_map_clear(&disk->buffer);
    block_pool_destroy(&disk->buffer_pool);
    block_pool_destroy(&disk->overlay_pool);
    block_backend_destroy(disk->base);
    if (disk->spill_fd >= 0)
        close(disk->spill_fd);
    free(disk->spill_directory);
    free(disk->staging);
    free(disk);
}

static const struct block_backend_ops secondary_disk_ops = {
    .kind = "secondary disk",
    .read = disk_read,
    .write = disk_write,
    .flush = disk_flush,
    .discard = disk_discard,
    .destroy = disk_destroy,
};

/* An unnamed file in `directory`: O_TMPFILE, or where the filesystem
 * cannot make one, a name unlinked at once. Either way nothing is left
 * behind when the process ends, crash or not. */
static int spill_file_create(const char *directory, const char *image, struct error *err)
{
    int fd = open(directory, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    if (errno == EOPNOTSUPP || errno == EISDIR) {
        char name[4096];
        if (snprintf(name, sizeof name, "%s/colo-spill-XXXXXX", directory) >= (int)sizeof name) {
            errno = ENAMETOOLONG;
        } else {
            fd = mkostemp(name, O_CLOEXEC);
            if (fd >= 0) {
                unlink(name);
                return fd;
            }
        }
    }
    return error_set(err, "cannot make the spill file of image %s in %s: %s", image, directory, strerror(errno));
}

struct secondary_disk *secondary_disk_create(struct block_backend *base, const struct secondary_disk_options *options,
                                             struct error *err)
{
    if (base->read_only) {
        error_set(err, "the secondary's image %s is read-only: checkpoints write to it", base->name);
        return NULL;
    }
    const char *spill_directory = options ? options->spill_directory : NULL;
    struct secondary_disk *disk = calloc(1, sizeof *disk);
    uint8_t *staging = malloc(FOLD_STAGING_BYTES);
    char *directory_copy = spill_directory ? strdup(spill_directory) : NULL;
    if (!disk || !staging || (spill_directory && !directory_copy)) {
        free(disk);
        free(staging);
        free(directory_copy);
        error_set(err, "out of memory for the secondary disk of image %s", base->name);
        return NULL;
    }
    disk->spill_fd = -1;
    if (spill_directory) {
        disk->spill_fd = spill_file_create(spill_directory, base->name, err);
        if (disk->spill_fd < 0) {
            free(disk);
            free(staging);
            free(directory_copy);
            return NULL;
        }
    }
    disk->spill_directory = directory_copy;
    disk->backend = (struct block_backend){
        .ops = &secondary_disk_ops,
        .name = base->name,
        .size = base->size,
        .read_only = false,
    };
    disk->base = base;
    disk->buffer_limit_bytes = options ? options->buffer_limit_bytes : 0;
    disk->staging = staging;
    /* As much as the buffer may hold in memory (64 MiB without a bound). */
    size_t pool_blocks = disk->buffer_limit_bytes ? (size_t)(disk->buffer_limit_bytes / SECONDARY_DISK_BLOCK_SIZE)
                                                  : SECONDARY_DISK_POOL_BLOCKS;
    block_pool_init(&disk->buffer_pool, SECONDARY_DISK_BLOCK_SIZE, pool_blocks);
    block_pool_init(&disk->overlay_pool, SECONDARY_DISK_BLOCK_SIZE, SECONDARY_DISK_POOL_BLOCKS);
    return disk;
}

/* Writes all of [data, data + length) at `offset` of the spill file. */
static int spill_write(struct secondary_disk *disk, uint64_t offset, const uint8_t *data, size_t length,
                       struct error *err)
{
    for (size_t done = 0; done < length;) {
        ssize_t written = pwrite(disk->spill_fd, data + done, length - done, (off_t)(offset + done));
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return error_set(
                err, "cannot write %zu bytes at offset %" PRIu64 " of the spill file in %s of image %s: %s", length,
                offset, disk->spill_directory, disk->backend.name, written < 0 ? strerror(errno) : "no room");
        done += (size_t)written;
    }
    if (offset + length > disk->spill_file_bytes)
        disk->spill_file_bytes = offset + length;
    return 0;
}

/* Reads [offset, offset + length) of the spill file into `data`. */
static int spill_read(const struct secondary_disk *disk, uint64_t offset, uint8_t *data, size_t length,
                      struct error *err)
{
    for (size_t done = 0; done < length;) {
        ssize_t got = pread(disk->spill_fd, data + done, length - done, (off_t)(offset + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return error_set(err, "cannot read %zu bytes at offset %" PRIu64 " of the spill file in %s of image %s: %s",
                             length, offset, disk->spill_directory, disk->backend.name,
                             got < 0 ? strerror(errno) : "it is shorter");
        done += (size_t)got;
    }
    return 0;
}

/* Drops the buffer, the spill file's blocks with it. */
static void buffer_clear(struct secondary_disk *disk)
{
    block_map_clear_into(&disk->buffer, &disk->buffer_pool);
    /* A truncate that fails only keeps the space: the next epoch's blocks
     * start again at offset 0 and write over it, and only the sectors
     * they wrote are ever read back. */
    if (disk->spill_fd >= 0 && (disk->spilled_blocks > 0 || disk->spill_file_bytes > 0) &&
        ftruncate(disk->spill_fd, 0) == 0)
        disk->spill_file_bytes = 0;
    disk->spilled_blocks = 0;
    disk->epoch_incomplete = false;
}

static int refuse_if_done(const struct secondary_disk *disk, struct error *err, const char *what)
{
    if (disk->broken)
        return error_set(err, "%s on image %s: the disk is broken (an earlier fold into it failed)", what,
                         disk->backend.name);
    if (disk->failed_over)
        return error_set(err, "%s on image %s: the disk has failed over", what, disk->backend.name);
    return 0;
}

/* A new buffer block for block `index`: in memory while the buffer is
 * under its bound (or has no spill file), else the next slot of the spill
 * file (its bytes are written by the caller). NULL when out of memory. */
static struct block_map_slot *buffer_block_add(struct secondary_disk *disk, uint64_t index, struct error *err)
{
    uint64_t in_memory = disk->buffer.count - disk->spilled_blocks;
    bool spill = disk->spill_fd >= 0 && disk->buffer_limit_bytes &&
                 (in_memory + 1) * SECONDARY_DISK_BLOCK_SIZE > disk->buffer_limit_bytes;
    uint8_t *block = spill ? NULL : block_pool_get(&disk->buffer_pool);
    struct block_map_slot *slot = spill || block ? block_map_insert(&disk->buffer, index) : NULL;
    if (!slot) {
        block_pool_put(&disk->buffer_pool, block);
        error_set(err, "out of memory for the buffer of the primary's writes for image %s", disk->backend.name);
        return NULL;
    }
    if (spill) {
        slot->spilled = true;
        slot->spill_offset = disk->spilled_blocks * SECONDARY_DISK_BLOCK_SIZE;
        disk->spilled_blocks++;
    } else {
        slot->data = block;
    }
    return slot;
}

int secondary_disk_buffer_write(struct secondary_disk *disk, uint64_t offset, const void *data, size_t length,
                                struct error *err)
{
    if (refuse_if_done(disk, err, "a primary write") < 0)
        return -1;
    if (!request_valid(disk, offset, length))
        return error_set(err,
                         "a primary write of %zu bytes at offset %" PRIu64
                         " is not whole sectors inside image %s (%" PRIu64 " bytes)",
                         length, offset, disk->backend.name, disk->backend.size);
    if (disk->spill_fd < 0) {
        /* Count the new blocks first: a write that would pass the bound
         * changes nothing. */
        uint64_t new_blocks = 0;
        for (uint64_t index = offset / SECONDARY_DISK_BLOCK_SIZE;
             length > 0 && index <= (offset + length - 1) / SECONDARY_DISK_BLOCK_SIZE; index++)
            new_blocks += block_map_find(&disk->buffer, index) == NULL;
        uint64_t held = (disk->buffer.count + new_blocks) * SECONDARY_DISK_BLOCK_SIZE;
        if (disk->buffer_limit_bytes && held > disk->buffer_limit_bytes)
            return error_set(err,
                             "the buffer of the primary's writes for image %s would hold %" PRIu64
                             " bytes, over its bound of %" PRIu64 " (and there is no spill directory)",
                             disk->backend.name, held, disk->buffer_limit_bytes);
    }
    const uint8_t *in = data;
    while (length > 0) {
        struct block_part part = first_part(disk, offset, length);
        struct block_map_slot *slot = block_map_find(&disk->buffer, part.index);
        if (!slot && !(slot = buffer_block_add(disk, part.index, err))) {
            /* The blocks before this one hold their part: the epoch's
             * buffer is incomplete, and its checkpoint must not commit. */
            disk->epoch_incomplete = true;
            return -1;
        }
        if (slot->data) {
            memcpy(slot->data + part.start, in, part.length);
        } else if (spill_write(disk, slot->spill_offset + part.start, in, part.length, err) < 0) {
            /* The sectors of this part may hold some of it: they are not
             * marked, and the epoch is incomplete anyway. */
            disk->epoch_incomplete = true;
            return error_prefix(err, "the primary's write not buffered: ");
        }
        slot->sectors |= disk_part_sectors(part.start, part.length);
        in += part.length;
        offset += part.length;
        length -= part.length;
    }
    return 0;
}

/* A fold in progress: runs of bytes go through a stager, each written to
 * the base as one request. */
struct fold {
    struct secondary_disk *disk;
    struct secondary_disk_fold_report *report;
    struct disk_run_stager stager;
};

static int fold_write(void *opaque, uint64_t offset, const uint8_t *data, size_t length, struct error *err)
{
    struct fold *fold = opaque;
    struct secondary_disk *disk = fold->disk;
    int result = block_backend_write(disk->base, offset, data, length);
    if (result < 0) {
        disk->broken = true;
        return error_set(err, "cannot write %zu bytes at offset %" PRIu64 " of image %s: %s", length, offset,
                         disk->backend.name, strerror(-result));
    }
    fold->report->writes++;
    fold->report->bytes += length;
    return 0;
}

/* Adds [offset, offset + length) with these bytes (NULL: zeros). */
static int fold_add(struct fold *fold, uint64_t offset, const uint8_t *bytes, size_t length, struct error *err)
{
    int result;
    uint8_t *into = disk_run_stager_reserve(&fold->stager, offset, length, &result, err);
    if (!into)
        return -1;
    memcpy(into, bytes ? bytes : zero_block, length);
    return 0;
}

/* Adds [offset, offset + length) with the bytes at spill_offset of the
 * spill file. A failed read after a write to the base leaves a mix of two
 * checkpoints there: the disk is broken as after a failed base write. */
static int fold_add_spilled(struct fold *fold, uint64_t offset, uint64_t spill_offset, size_t length, struct error *err)
{
    int result;
    uint8_t *into = disk_run_stager_reserve(&fold->stager, offset, length, &result, err);
    if (!into)
        return -1;
    if (spill_read(fold->disk, spill_offset, into, length, err) < 0) {
        if (fold->report->writes > 0)
            fold->disk->broken = true;
        return -1;
    }
    return 0;
}

/* Writes a map's blocks into the base in offset order: the written
 * sectors of each (runs of them), discarded blocks as zeros. */
static int fold_map(struct secondary_disk *disk, const struct block_map *map, struct secondary_disk_fold_report *report,
                    struct error *err)
{
    size_t count;
    struct block_map_slot **sorted = block_map_sorted(map, &count);
    if (!sorted && map->count > 0)
        return error_set(err, "out of memory to fold into image %s", disk->backend.name);
    struct fold fold = { .disk = disk, .report = report };
    fold.stager = (struct disk_run_stager){
        .buffer = disk->staging, .capacity = FOLD_STAGING_BYTES, .hand_over = fold_write, .opaque = &fold
    };
    int result = 0;
    for (size_t at = 0; at < count && result == 0; at++) {
        const struct block_map_slot *slot = sorted[at];
        uint64_t start = slot->index * SECONDARY_DISK_BLOCK_SIZE;
        size_t length = block_length(disk, slot->index);
        report->blocks++;
        size_t sector = 0, run_start, run_end;
        while (result == 0 && disk_next_sector_run(slot->sectors, length, &sector, &run_start, &run_end))
            result = slot->spilled ? fold_add_spilled(&fold, start + run_start, slot->spill_offset + run_start,
                                                      run_end - run_start, err)
                                   : fold_add(&fold, start + run_start, slot->data ? slot->data + run_start : NULL,
                                              run_end - run_start, err);
    }
    if (result == 0)
        result = disk_run_stager_flush(&fold.stager, err) < 0 ? -1 : 0;
    free(sorted);
    return result;
}

int secondary_disk_checkpoint_commit(struct secondary_disk *disk, struct secondary_disk_fold_report *report,
                                     struct error *err)
{
    struct secondary_disk_fold_report ignored;
    report = report ? report : &ignored;
    *report = (struct secondary_disk_fold_report){ 0 };
    if (refuse_if_done(disk, err, "a checkpoint") < 0)
        return -1;
    if (disk->epoch_incomplete)
        return error_set(err,
                         "a checkpoint on image %s: a primary write of its epoch was not buffered whole, the "
                         "checkpoint must be aborted",
                         disk->backend.name);
    uint64_t started = clock_monotonic_ns();
    if (fold_map(disk, &disk->buffer, report, err) < 0)
        return error_prefix(err, "checkpoint not applied to the disk: ");
    buffer_clear(disk);
    block_map_clear_into(&disk->overlay, &disk->overlay_pool);
    report->duration_ns = clock_monotonic_ns() - started;
    disk->checkpoints_committed++;
    disk->folded_blocks_total += report->blocks;
    disk->folded_bytes_total += report->bytes;
    return 0;
}

void secondary_disk_checkpoint_abort(struct secondary_disk *disk)
{
    if (disk->broken || disk->failed_over)
        return; /* a broken disk keeps its buffer (secondary_disk.h); after failover it has none */
    buffer_clear(disk);
    disk->checkpoints_aborted++;
}

int secondary_disk_failover(struct secondary_disk *disk, struct secondary_disk_fold_report *report, struct error *err)
{
    struct secondary_disk_fold_report ignored;
    report = report ? report : &ignored;
    *report = (struct secondary_disk_fold_report){ 0 };
    if (refuse_if_done(disk, err, "a failover") < 0)
        return -1;
    uint64_t started = clock_monotonic_ns();
    if (fold_map(disk, &disk->overlay, report, err) < 0)
        return error_prefix(err, "failover: ");
    buffer_clear(disk);
    block_map_clear(&disk->overlay);
    int result = block_backend_flush(disk->base);
    if (result < 0) {
        disk->broken = true;
        return error_set(err, "failover: cannot flush image %s: %s", disk->backend.name, strerror(-result));
    }
    disk->failed_over = true;
    report->duration_ns = clock_monotonic_ns() - started;
    disk->folded_blocks_total += report->blocks;
    disk->folded_bytes_total += report->bytes;
    return 0;
}

void secondary_disk_mark_overlay(const struct secondary_disk *disk, uint64_t *bitmap)
{
    for (size_t at = 0; at < disk->overlay.capacity; at++)
        if (disk->overlay.slots[at].used)
            disk_bit_set(bitmap, disk->overlay.slots[at].index);
}

int secondary_disk_flush_base(struct secondary_disk *disk, struct error *err)
{
    if (refuse_if_done(disk, err, "recording the base's history") < 0)
        return -1;
    int result = block_backend_flush(disk->base);
    if (result < 0)
        return error_set(err, "cannot flush image %s: %s", disk->backend.name, strerror(-result));
    return 0;
}

static void count_map(const struct secondary_disk *disk, const struct block_map *map, uint64_t *blocks, uint64_t *bytes,
                      uint64_t *memory)
{
    *blocks = map->count;
    *bytes = 0;
    for (size_t at = 0; at < map->capacity; at++) {
        const struct block_map_slot *slot = &map->slots[at];
        if (!slot->used)
            continue;
        size_t length = block_length(disk, slot->index);
        for (size_t sector = 0; sector < DISK_SECTORS_PER_BLOCK; sector++) {
            size_t start = sector * SECONDARY_DISK_SECTOR_SIZE;
            if ((slot->sectors & (1u << sector)) && start < length)
                *bytes += length - start < SECONDARY_DISK_SECTOR_SIZE ? length - start : SECONDARY_DISK_SECTOR_SIZE;
        }
        if (slot->data)
            *memory += SECONDARY_DISK_BLOCK_SIZE;
    }
}

void secondary_disk_get_stats(const struct secondary_disk *disk, struct secondary_disk_stats *stats)
{
    *stats = (struct secondary_disk_stats){
        .checkpoints_committed = disk->checkpoints_committed,
        .checkpoints_aborted = disk->checkpoints_aborted,
        .folded_blocks_total = disk->folded_blocks_total,
        .folded_bytes_total = disk->folded_bytes_total,
        .spilled_blocks = disk->spilled_blocks,
        .spill_file_bytes = disk->spill_file_bytes,
        .broken = disk->broken,
        .failed_over = disk->failed_over,
    };
    count_map(disk, &disk->buffer, &stats->buffered_blocks, &stats->buffered_bytes, &stats->memory_bytes);
    count_map(disk, &disk->overlay, &stats->overlay_blocks, &stats->overlay_bytes, &stats->memory_bytes);
}
