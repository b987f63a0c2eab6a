/* A small open-addressing hash map from a block index to that block's
 * bytes: the secondary disk's overlay and buffer (secondary_disk.c).
 * Entries are only added, or all dropped at once (a checkpoint empties a
 * whole map), so there are no tombstones. Linear probing at most half
 * full. Not thread-safe: its disk's caller serialises. */
#ifndef COLO_DISK_BLOCK_MAP_H
#define COLO_DISK_BLOCK_MAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct block_map_slot {
    uint64_t index; /* the block's index in the image */
    uint8_t *data;  /* the block's bytes (owned), or NULL: see the user */
    /* Where the bytes are instead when `spilled` is set (data is NULL
     * then): an offset in the user's spill file (secondary_disk.c). */
    uint64_t spill_offset;
    uint8_t sectors; /* which 512-byte sectors of the block hold data, bit n for sector n */
    bool spilled;
    bool used;
};

struct block_map {
    struct block_map_slot *slots;
    size_t capacity; /* a power of two, or 0 before the first insert */
    size_t count;
};

/* The slot of block `index`, or NULL if the map does not have it. */
struct block_map_slot *block_map_find(const struct block_map *map, uint64_t index);

/* The slot of block `index`, made (data NULL, sectors 0) if the map did
 * not have it; NULL when out of memory. Moves other slots: a pointer from
 * an earlier find or insert is stale afterwards. */
struct block_map_slot *block_map_insert(struct block_map *map, uint64_t index);

/* The used slots in increasing block order, in an array the caller frees;
 * NULL when out of memory (or the map is empty: *count is 0 then). */
struct block_map_slot **block_map_sorted(const struct block_map *map, size_t *count);

/* Drops every entry and frees their data and the table. */
void block_map_clear(struct block_map *map);

/* Blocks an epoch freed, kept for the next: a disk's maps are emptied at
 * every checkpoint and filled again right after, and handing the memory
 * back to the system only to fault it in again cost more than the copying
 * (docs/benchmarks.md, "Disk replication: checkpoint cost"). Up to
 * `limit` blocks are kept; beyond, they are freed. Thread-safe: a primary
 * disk's machine thread takes blocks while its loop gives the pre-copy's
 * back. */
struct block_pool {
    pthread_mutex_t lock;
    void **blocks;
    size_t count, limit, block_size;
};

void block_pool_init(struct block_pool *pool, size_t block_size, size_t limit);
void block_pool_destroy(struct block_pool *pool);
/* A block of block_size bytes (contents undefined); NULL when out of memory. */
void *block_pool_get(struct block_pool *pool);
/* Takes a block back (NULL is ignored). */
void block_pool_put(struct block_pool *pool, void *block);
/* block_map_clear, with the entries' data given to the pool. */
void block_map_clear_into(struct block_map *map, struct block_pool *pool);

#endif
