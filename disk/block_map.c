/* The block map (block_map.h). */
#include "block_map.h"

#include <stdlib.h>

enum { BLOCK_MAP_MINIMUM_CAPACITY = 64 };

static size_t slot_of(uint64_t index, size_t capacity)
{
    /* Fibonacci hashing: neighbouring blocks (the usual write pattern)
     * land far apart, so linear probing does not build long runs. */
    return (size_t)((index * 0x9e3779b97f4a7c15ull) >> 32) & (capacity - 1);
}

struct block_map_slot *block_map_find(const struct block_map *map, uint64_t index)
{
    if (map->capacity == 0)
        return NULL;
    for (size_t at = slot_of(index, map->capacity);; at = (at + 1) & (map->capacity - 1)) {
        struct block_map_slot *slot = &map->slots[at];
        if (!slot->used)
            return NULL;
        if (slot->index == index)
            return slot;
    }
}

static bool grow(struct block_map *map)
{
    size_t capacity = map->capacity ? map->capacity * 2 : BLOCK_MAP_MINIMUM_CAPACITY;
    struct block_map_slot *slots = calloc(capacity, sizeof *slots);
    if (!slots)
        return false;
    for (size_t old = 0; old < map->capacity; old++) {
        if (!map->slots[old].used)
            continue;
        size_t at = slot_of(map->slots[old].index, capacity);
        while (slots[at].used)
            at = (at + 1) & (capacity - 1);
        slots[at] = map->slots[old];
    }
    free(map->slots);
    map->slots = slots;
    map->capacity = capacity;
    return true;
}

struct block_map_slot *block_map_insert(struct block_map *map, uint64_t index)
{
    struct block_map_slot *found = block_map_find(map, index);
    if (found)
        return found;
    if ((map->count + 1) * 2 > map->capacity && !grow(map))
        return NULL;
    size_t at = slot_of(index, map->capacity);
    while (map->slots[at].used)
        at = (at + 1) & (map->capacity - 1);
    map->slots[at] = (struct block_map_slot){ .index = index, .used = true };
    map->count++;
    return &map->slots[at];
}

static int compare_slots(const void *left, const void *right)
{
    uint64_t a = (*(struct block_map_slot *const *)left)->index;
    uint64_t b = (*(struct block_map_slot *const *)right)->index;
    return (a > b) - (a < b);
}

struct block_map_slot **block_map_sorted(const struct block_map *map, size_t *count)
{
    *count = 0;
    if (map->count == 0)
        return NULL;
    struct block_map_slot **sorted = malloc(map->count * sizeof *sorted);
    if (!sorted)
        return NULL;
    for (size_t at = 0; at < map->capacity; at++)
        if (map->slots[at].used)
            sorted[(*count)++] = &map->slots[at];
    qsort(sorted, *count, sizeof *sorted, compare_slots);
    return sorted;
}

void block_map_clear(struct block_map *map)
{
    for (size_t at = 0; at < map->capacity; at++)
        if (map->slots[at].used)
            free(map->slots[at].data);
    free(map->slots);
    *map = (struct block_map){ 0 };
}

void block_map_clear_into(struct block_map *map, struct block_pool *pool)
{
    for (size_t at = 0; at < map->capacity; at++)
        if (map->slots[at].used) {
            block_pool_put(pool, map->slots[at].data);
            map->slots[at].data = NULL;
        }
    block_map_clear(map);
}

void block_pool_init(struct block_pool *pool, size_t block_size, size_t limit)
{
    *pool = (struct block_pool){ .limit = limit, .block_size = block_size };
    pthread_mutex_init(&pool->lock, NULL);
}

void block_pool_destroy(struct block_pool *pool)
{
    for (size_t i = 0; i < pool->count; i++)
        free(pool->blocks[i]);
    free(pool->blocks);
    pool->blocks = NULL;
    pool->count = 0;
    pthread_mutex_destroy(&pool->lock);
}

void *block_pool_get(struct block_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    void *block = pool->count ? pool->blocks[--pool->count] : NULL;
    pthread_mutex_unlock(&pool->lock);
    return block ? block : malloc(pool->block_size);
}

void block_pool_put(struct block_pool *pool, void *block)
{
    if (!block)
        return;
    pthread_mutex_lock(&pool->lock);
    if (pool->count == pool->limit) {
        pthread_mutex_unlock(&pool->lock);
        free(block);
        return;
    }
    if (!pool->blocks) {
        pool->blocks = malloc(pool->limit * sizeof *pool->blocks);
        if (!pool->blocks) {
            pthread_mutex_unlock(&pool->lock);
            free(block);
            return;
        }
    }
    pool->blocks[pool->count++] = block;
    pthread_mutex_unlock(&pool->lock);
}
