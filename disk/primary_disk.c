/* The COLO primary's disk (primary_disk.h). */
#include "primary_disk.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "block_map.h"
#include "disk_runs.h"

_Static_assert((int)PRIMARY_DISK_BLOCK_SIZE == (int)DISK_BLOCK_SIZE &&
                   (int)PRIMARY_DISK_SECTOR_SIZE == (int)DISK_SECTOR_SIZE,
               "the primary's disk uses disk_runs.h's blocks");
_Static_assert(PRIMARY_DISK_RUN_MAXIMUM_BYTES % PRIMARY_DISK_BLOCK_SIZE == 0, "a run holds whole blocks");

/* Freed blocks kept for the next epoch: 64 MiB at most. */
enum { PRIMARY_DISK_POOL_BLOCKS = 16384 };

struct primary_disk {
    struct block_backend backend; /* first: the backend pointer is the disk's */
    struct block_backend *base;   /* owned */
    uint64_t epoch_memory_limit_bytes;
    uint64_t block_count;
    /* The epoch's copied blocks: data is always a whole block, `sectors`
     * says which of its sectors were written (only those are sent, so a
     * partial write needs no read of the base). */
    struct block_map epoch;
    /* The epoch's log (epoch, epoch_overflow, epoch_overflow_blocks)
     * between the guest's writes on the machine thread and
     * primary_disk_precopy_begin on the loop's, which then needs no pause
     * of the VM. */
    pthread_mutex_t epoch_lock;
    /* The epoch's blocks past the memory bound: marked only, never in
     * `epoch` (the two are disjoint). bitmap_words words. */
    uint64_t *epoch_overflow;
    uint64_t epoch_overflow_blocks;
    /* Set by every recorded write or discard, cleared when the epoch is
     * moved aside or cleared: the loop's stream phase reads it with the
     * VM running, to skip the phase when nothing was written. */
    atomic_bool epoch_written;
    /* Told when epoch_written flips to true (primary_disk_set_written_hook);
     * under epoch_lock. */
    void (*written_hook)(void *opaque);
    void *written_hook_opaque;
    /* The part of the epoch a checkpoint's pre-copy moved aside
     * (primary_disk_precopy_begin), same shape; empty otherwise. */
    struct block_map precopy;
    uint64_t *precopy_overflow;
    uint64_t precopy_overflow_blocks;
    uint64_t *dirty_log; /* bitmap_words words */
    bool dirty_log_enabled;
    struct block_pool pool; /* the logs' blocks, from epoch to epoch */
    uint8_t *staging;       /* PRIMARY_DISK_RUN_MAXIMUM_BYTES, for the iteration */
    uint64_t epochs_cleared;
    uint64_t blocks_total;
    uint64_t bytes_total;
    uint64_t overflow_blocks_total;
};

static const struct block_backend_ops primary_disk_ops;

struct primary_disk *primary_disk_of(struct block_backend *backend)
{
    return backend && backend->ops == &primary_disk_ops ? (struct primary_disk *)backend : NULL;
}

struct block_backend *primary_disk_backend(struct primary_disk *disk)
{
    return &disk->backend;
}

uint64_t primary_disk_block_count(const struct primary_disk *disk)
{
    return disk->block_count;
}

size_t primary_disk_bitmap_words(const struct primary_disk *disk)
{
    return (size_t)((disk->block_count + 63) / 64);
}

/* Bytes of block `index` inside the image: the last block may be short. */
static size_t block_length(const struct primary_disk *disk, uint64_t index)
{
    return disk_block_length(disk->backend.size, index);
}

static bool request_valid(const struct primary_disk *disk, uint64_t offset, uint64_t length)
{
    return disk_request_valid(disk->backend.size, offset, length);
}

static void dirty_log_mark(struct primary_disk *disk, uint64_t offset, uint64_t length)
{
    if (!disk->dirty_log_enabled || length == 0)
        return;
    for (uint64_t index = offset / PRIMARY_DISK_BLOCK_SIZE; index <= (offset + length - 1) / PRIMARY_DISK_BLOCK_SIZE;
         index++)
        disk_bit_set(disk->dirty_log, index);
}

/* Under epoch_lock: the epoch has a write; the first since it began or
 * was moved aside tells the hook. */
static void epoch_note_written(struct primary_disk *disk)
{
    if (!atomic_exchange_explicit(&disk->epoch_written, true, memory_order_relaxed) && disk->written_hook)
        disk->written_hook(disk->written_hook_opaque);
}

/* Records [offset, offset + length) of the epoch with these bytes (NULL:
 * zeros), after the base took them. Never fails: a block that cannot be
 * copied (the bound, or no memory) is marked as overflow instead. */
static void epoch_record(struct primary_disk *disk, uint64_t offset, const uint8_t *bytes, uint64_t length)
{
    epoch_note_written(disk);
    while (length > 0) {
        uint64_t index = offset / PRIMARY_DISK_BLOCK_SIZE;
        size_t start = (size_t)(offset % PRIMARY_DISK_BLOCK_SIZE);
        size_t room = block_length(disk, index) - start;
        size_t part = length < room ? (size_t)length : room;
        if (!disk_bit_test(disk->epoch_overflow, index)) {
            struct block_map_slot *slot = block_map_find(&disk->epoch, index);
            if (!slot) {
                uint64_t held = (disk->epoch.count + 1) * (uint64_t)PRIMARY_DISK_BLOCK_SIZE;
                bool within = disk->epoch_memory_limit_bytes == 0 || held <= disk->epoch_memory_limit_bytes;
                uint8_t *block = within ? block_pool_get(&disk->pool) : NULL;
                slot = block ? block_map_insert(&disk->epoch, index) : NULL;
                if (slot)
                    slot->data = block;
                else {
                    block_pool_put(&disk->pool, block);
                    disk_bit_set(disk->epoch_overflow, index);
                    disk->epoch_overflow_blocks++;
                }
            }
            if (slot) {
                if (bytes)
                    memcpy(slot->data + start, bytes, part);
                else
                    memset(slot->data + start, 0, part);
                slot->sectors |= disk_part_sectors(start, part);
            }
        }
        if (bytes)
            bytes += part;
        offset += part;
        length -= part;
    }
}

static int disk_read(struct block_backend *backend, uint64_t offset, void *buffer, size_t length)
{
    struct primary_disk *disk = (struct primary_disk *)backend;
    return block_backend_read(disk->base, offset, buffer, length);
}

/* A write or discard the base refused may have done part of its range:
 * the epoch sends those blocks as the base holds them, so the secondary's
 * image stays the primary's whatever the failure left. A copied block is
 * read back whole; any other is marked, and read at send time. */
static void epoch_record_failed(struct primary_disk *disk, uint64_t offset, uint64_t length)
{
    if (length == 0)
        return;
    epoch_note_written(disk);
    for (uint64_t index = offset / PRIMARY_DISK_BLOCK_SIZE; index <= (offset + length - 1) / PRIMARY_DISK_BLOCK_SIZE;
         index++) {
        if (disk_bit_test(disk->epoch_overflow, index))
            continue;
        struct block_map_slot *slot = block_map_find(&disk->epoch, index);
        size_t whole = block_length(disk, index);
        if (slot) {
            /* A base that cannot even be read back fails the next
             * checkpoint's own reads too; keep what was copied. */
            if (block_backend_read(disk->base, index * PRIMARY_DISK_BLOCK_SIZE, slot->data, whole) == 0)
                slot->sectors = disk_part_sectors(0, whole);
        } else {
            disk_bit_set(disk->epoch_overflow, index);
            disk->epoch_overflow_blocks++;
        }
    }
}

/* After the base took a write (bytes) or a discard (NULL), or refused it
 * (result < 0): the logs learn of it; returns the result. */
static int record_request(struct primary_disk *disk, uint64_t offset, const void *bytes, uint64_t length, int result)
{
    dirty_log_mark(disk, offset, length);
    pthread_mutex_lock(&disk->epoch_lock);
    if (result < 0)
        epoch_record_failed(disk, offset, length);
    else
        epoch_record(disk, offset, bytes, length);
    pthread_mutex_unlock(&disk->epoch_lock);
    return result < 0 ? result : 0;
}

/* The guest's write: the base first; what the base took is recorded (a
 * failed write returns the base's errno, its blocks sent as the base has
 * them). */
static int disk_write(struct block_backend *backend, uint64_t offset, const void *buffer, size_t length)
{
    struct primary_disk *disk = (struct primary_disk *)backend;
    if (!request_valid(disk, offset, length))
        return -EINVAL;
    return record_request(disk, offset, buffer, length, block_backend_write(disk->base, offset, buffer, length));
}

/* The guest's flush is the base's (fdatasync for a file), as without
 * replication: the secondary's copy is made durable by checkpoints. */
static int disk_flush(struct block_backend *backend)
{
    struct primary_disk *disk = (struct primary_disk *)backend;
    return block_backend_flush(disk->base);
}

static int disk_discard(struct block_backend *backend, uint64_t offset, uint64_t length)
{
    struct primary_disk *disk = (struct primary_disk *)backend;
    if (!request_valid(disk, offset, length))
        return -EINVAL;
    return record_request(disk, offset, NULL, length, block_backend_discard(disk->base, offset, length));
}

static void free_disk(struct primary_disk *disk)
{
    block_map_clear(&disk->epoch);
    block_map_clear(&disk->precopy);
    block_pool_destroy(&disk->pool);
    pthread_mutex_destroy(&disk->epoch_lock);
    free(disk->epoch_overflow);
    free(disk->precopy_overflow);
    free(disk->dirty_log);
    free(disk->staging);
    free(disk);
}

static void disk_destroy(struct block_backend *backend)
{
    struct primary_disk *disk = (struct primary_disk *)backend;
    block_backend_destroy(disk->base);
    free_disk(disk);
}

struct block_backend *primary_disk_unwrap(struct primary_disk *disk)
{
    struct block_backend *base = disk->base;
    free_disk(disk);
    return base;
}

static const struct block_backend_ops primary_disk_ops = {
    .kind = "primary disk",
    .read = disk_read,
    .write = disk_write,
    .flush = disk_flush,
    .discard = disk_discard,
    .destroy = disk_destroy,
};

struct primary_disk *primary_disk_create(struct block_backend *base, const struct primary_disk_options *options,
                                         struct error *err)
{
    if (base->read_only) {
        error_set(err, "the primary's image %s is read-only: a protected guest writes to it", base->name);
        return NULL;
    }
    struct primary_disk *disk = calloc(1, sizeof *disk);
    uint64_t block_count = (base->size + PRIMARY_DISK_BLOCK_SIZE - 1) / PRIMARY_DISK_BLOCK_SIZE;
    size_t words = (size_t)((block_count + 63) / 64);
    uint64_t *epoch_overflow = calloc(words ? words : 1, sizeof *epoch_overflow);
    uint64_t *precopy_overflow = calloc(words ? words : 1, sizeof *precopy_overflow);
    uint64_t *dirty_log = calloc(words ? words : 1, sizeof *dirty_log);
    uint8_t *staging = malloc(PRIMARY_DISK_RUN_MAXIMUM_BYTES);
    if (!disk || !epoch_overflow || !precopy_overflow || !dirty_log || !staging) {
        free(disk);
        free(epoch_overflow);
        free(precopy_overflow);
        free(dirty_log);
        free(staging);
        error_set(err, "out of memory for the primary disk of image %s", base->name);
        return NULL;
    }
    disk->backend = (struct block_backend){
        .ops = &primary_disk_ops,
        .name = base->name,
        .size = base->size,
        .read_only = false,
    };
    disk->base = base;
    disk->epoch_memory_limit_bytes = options ? options->epoch_memory_limit_bytes : 0;
    disk->block_count = block_count;
    disk->epoch_overflow = epoch_overflow;
    disk->precopy_overflow = precopy_overflow;
    block_pool_init(&disk->pool, PRIMARY_DISK_BLOCK_SIZE, PRIMARY_DISK_POOL_BLOCKS);
    pthread_mutex_init(&disk->epoch_lock, NULL);
    disk->dirty_log = dirty_log;
    disk->staging = staging;
    return disk;
}

/* An iteration in progress: the runs go through a stager to the caller's
 * function. */
struct sender {
    struct primary_disk *disk;
    primary_disk_run_function run;
    void *opaque;
    struct disk_run_stager stager;
};

static int sender_hand_over(void *opaque, uint64_t offset, const uint8_t *data, size_t length, struct error *err)
{
    (void)err; /* the run function's own negative value is returned as is */
    struct sender *sender = opaque;
    return sender->run(sender->opaque, offset, data, length);
}

/* Adds [offset, offset + length) (inside one block) with these bytes, or
 * the base's when bytes is NULL. */
static int sender_add(struct sender *sender, uint64_t offset, const uint8_t *bytes, size_t length, struct error *err)
{
    int result;
    uint8_t *into = disk_run_stager_reserve(&sender->stager, offset, length, &result, err);
    if (!into)
        return result;
    if (bytes) {
        memcpy(into, bytes, length);
        return 0;
    }
    result = block_backend_read(sender->disk->base, offset, into, length);
    if (result < 0)
        error_set(err, "cannot read %zu bytes at offset %" PRIu64 " of image %s for the checkpoint: %s", length, offset,
                  sender->disk->backend.name, strerror(-result));
    return result;
}

/* The written sectors of a copied block, one part per run of them. */
static int sender_add_slot(struct sender *sender, const struct block_map_slot *slot, struct error *err)
{
    uint64_t start = slot->index * PRIMARY_DISK_BLOCK_SIZE;
    size_t length = block_length(sender->disk, slot->index), sector = 0, run_start, run_end;
    while (disk_next_sector_run(slot->sectors, length, &sector, &run_start, &run_end)) {
        int result = sender_add(sender, start + run_start, slot->data + run_start, run_end - run_start, err);
        if (result < 0)
            return result;
    }
    return 0;
}

/* The runs of one log (the epoch's, or the part the pre-copy moved
 * aside): its copied blocks and its overflow ones, merged in offset
 * order. */
static int log_for_each(struct primary_disk *disk, const struct block_map *map, const uint64_t *overflow_bitmap,
                        primary_disk_run_function run, void *opaque, struct error *err)
{
    size_t count;
    struct block_map_slot **sorted = block_map_sorted(map, &count);
    if (!sorted && map->count > 0) {
        error_set(err, "out of memory to send the epoch's writes of image %s", disk->backend.name);
        return -ENOMEM;
    }
    struct sender sender = { .disk = disk, .run = run, .opaque = opaque };
    sender.stager = (struct disk_run_stager){ .buffer = disk->staging,
                                              .capacity = PRIMARY_DISK_RUN_MAXIMUM_BYTES,
                                              .hand_over = sender_hand_over,
                                              .opaque = &sender };
    int result = 0;
    /* Two disjoint sets in offset order: the copied blocks (sorted) and the
     * overflow ones (the bitmap), merged. */
    size_t at = 0;
    uint64_t overflow = disk_bit_next(overflow_bitmap, 0, disk->block_count);
    while (result == 0 && (at < count || overflow < disk->block_count)) {
        if (at < count && sorted[at]->index < overflow) {
            result = sender_add_slot(&sender, sorted[at], err);
            at++;
        } else {
            result = sender_add(&sender, overflow * PRIMARY_DISK_BLOCK_SIZE, NULL, block_length(disk, overflow), err);
            overflow = disk_bit_next(overflow_bitmap, overflow + 1, disk->block_count);
        }
    }
    if (result == 0)
        result = disk_run_stager_flush(&sender.stager, err);
    free(sorted);
    return result;
}

int primary_disk_epoch_for_each(struct primary_disk *disk, primary_disk_run_function run, void *opaque,
                                struct error *err)
{
    return log_for_each(disk, &disk->epoch, disk->epoch_overflow, run, opaque, err);
}

uint64_t primary_disk_precopy_begin(struct primary_disk *disk)
{
    if (disk->precopy.count || disk->precopy_overflow_blocks)
        abort(); /* the last pre-copy was not finished */
    pthread_mutex_lock(&disk->epoch_lock);
    struct block_map map = disk->precopy;
    disk->precopy = disk->epoch;
    disk->epoch = map;
    uint64_t *bitmap = disk->precopy_overflow;
    disk->precopy_overflow = disk->epoch_overflow;
    disk->epoch_overflow = bitmap;
    disk->precopy_overflow_blocks = disk->epoch_overflow_blocks;
    disk->epoch_overflow_blocks = 0;
    atomic_store_explicit(&disk->epoch_written, false, memory_order_relaxed);
    pthread_mutex_unlock(&disk->epoch_lock);
    return disk->precopy.count + disk->precopy_overflow_blocks;
}

int primary_disk_precopy_for_each(struct primary_disk *disk, primary_disk_run_function run, void *opaque,
                                  struct error *err)
{
    return log_for_each(disk, &disk->precopy, disk->precopy_overflow, run, opaque, err);
}

/* Bytes the iteration sends for the copied blocks. */
static uint64_t copied_bytes(const struct primary_disk *disk, const struct block_map *map)
{
    uint64_t bytes = 0;
    for (size_t at = 0; at < map->capacity; at++) {
        const struct block_map_slot *slot = &map->slots[at];
        if (!slot->used)
            continue;
        size_t length = block_length(disk, slot->index);
        for (size_t sector = 0; sector < DISK_SECTORS_PER_BLOCK; sector++) {
            size_t start = sector * PRIMARY_DISK_SECTOR_SIZE;
            if ((slot->sectors & (1u << sector)) && start < length)
                bytes += length - start < PRIMARY_DISK_SECTOR_SIZE ? length - start : PRIMARY_DISK_SECTOR_SIZE;
        }
    }
    return bytes;
}

static uint64_t overflow_bytes(const struct primary_disk *disk, const uint64_t *bitmap)
{
    uint64_t bytes = 0;
    for (uint64_t index = disk_bit_next(bitmap, 0, disk->block_count); index < disk->block_count;
         index = disk_bit_next(bitmap, index + 1, disk->block_count))
        bytes += block_length(disk, index);
    return bytes;
}

/* Adds a log to the totals and empties it. */
static void log_clear(struct primary_disk *disk, struct block_map *map, uint64_t *overflow_bitmap,
                      uint64_t *overflow_blocks)
{
    disk->blocks_total += map->count + *overflow_blocks;
    disk->bytes_total += copied_bytes(disk, map) + overflow_bytes(disk, overflow_bitmap);
    disk->overflow_blocks_total += *overflow_blocks;
    block_map_clear_into(map, &disk->pool);
    memset(overflow_bitmap, 0, primary_disk_bitmap_words(disk) * sizeof *overflow_bitmap);
    *overflow_blocks = 0;
}

void primary_disk_precopy_finish(struct primary_disk *disk)
{
    log_clear(disk, &disk->precopy, disk->precopy_overflow, &disk->precopy_overflow_blocks);
}

void primary_disk_set_written_hook(struct primary_disk *disk, void (*hook)(void *opaque), void *opaque)
{
    pthread_mutex_lock(&disk->epoch_lock);
    disk->written_hook = hook;
    disk->written_hook_opaque = opaque;
    pthread_mutex_unlock(&disk->epoch_lock);
}

bool primary_disk_epoch_written(struct primary_disk *disk)
{
    return atomic_load_explicit(&disk->epoch_written, memory_order_relaxed);
}

void primary_disk_epoch_clear(struct primary_disk *disk)
{
    log_clear(disk, &disk->epoch, disk->epoch_overflow, &disk->epoch_overflow_blocks);
    atomic_store_explicit(&disk->epoch_written, false, memory_order_relaxed);
    disk->epochs_cleared++;
}

void primary_disk_dirty_log_enable(struct primary_disk *disk, bool enable)
{
    memset(disk->dirty_log, 0, primary_disk_bitmap_words(disk) * sizeof *disk->dirty_log);
    disk->dirty_log_enabled = enable;
}

uint64_t primary_disk_dirty_log_read_and_clear(struct primary_disk *disk, uint64_t *bitmap)
{
    uint64_t dirty = 0;
    size_t words = primary_disk_bitmap_words(disk);
    for (size_t word = 0; word < words; word++) {
        bitmap[word] = disk->dirty_log[word];
        dirty += (uint64_t)__builtin_popcountll(bitmap[word]);
        disk->dirty_log[word] = 0;
    }
    return dirty;
}

int primary_disk_block_is_zero(struct primary_disk *disk, uint64_t index)
{
    if (index >= disk->block_count)
        return -EINVAL;
    uint64_t words[PRIMARY_DISK_BLOCK_SIZE / sizeof(uint64_t)];
    size_t length = block_length(disk, index);
    int result = block_backend_read(disk->base, index * PRIMARY_DISK_BLOCK_SIZE, words, length);
    if (result < 0)
        return result;
    uint64_t any = 0;
    for (size_t word = 0; word < length / sizeof(uint64_t); word++)
        any |= words[word];
    return any == 0;
}

void primary_disk_get_stats(const struct primary_disk *disk, struct primary_disk_stats *stats)
{
    *stats = (struct primary_disk_stats){
        .epoch_blocks = disk->epoch.count + disk->epoch_overflow_blocks,
        .epoch_bytes = copied_bytes(disk, &disk->epoch) + overflow_bytes(disk, disk->epoch_overflow),
        .epoch_overflow_blocks = disk->epoch_overflow_blocks,
        .epoch_memory_bytes = disk->epoch.count * (uint64_t)PRIMARY_DISK_BLOCK_SIZE,
        .epochs_cleared = disk->epochs_cleared,
        .blocks_total = disk->blocks_total,
        .bytes_total = disk->bytes_total,
        .overflow_blocks_total = disk->overflow_blocks_total,
        .dirty_log_enabled = disk->dirty_log_enabled,
    };
}
