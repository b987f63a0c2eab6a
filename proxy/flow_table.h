/* A fixed-size table of flows by key for the comparing proxy: the
 * comparator's flows and the sequence shift's connections. Each entry is
 * an index below capacity, for the caller's own array of per-flow state;
 * the table keeps the keys. Open addressing with linear probing over at
 * least twice as many slots as entries, so a lookup is a few probes;
 * removal moves the rest of a probe run back rather than leaving
 * tombstones. Allocated at init; single-threaded. */
#ifndef COLO_PROXY_FLOW_TABLE_H
#define COLO_PROXY_FLOW_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define FLOW_KEY_SIZE 48
#define FLOW_TABLE_CAPACITY_MAX (1u << 24)
#define FLOW_TABLE_NONE UINT32_MAX

struct flow_table {
    uint32_t capacity;
    uint8_t (*keys)[FLOW_KEY_SIZE];
    uint32_t *hashes;
    uint32_t *slots; /* an entry's index + 1; 0: empty */
    uint32_t slot_mask;
    uint32_t *free_entries; /* a stack */
    uint32_t free_count;
};

int flow_table_init(struct flow_table *table, uint32_t capacity, struct error *error);
void flow_table_destroy(struct flow_table *table);

/* The entry of key, or FLOW_TABLE_NONE. */
uint32_t flow_table_find(const struct flow_table *table, const uint8_t key[FLOW_KEY_SIZE]);

/* A new entry for key (which must not be there): FLOW_TABLE_NONE when
 * the table is full. */
uint32_t flow_table_insert(struct flow_table *table, const uint8_t key[FLOW_KEY_SIZE]);

void flow_table_remove(struct flow_table *table, uint32_t entry);

/* The entries, each once, in no particular order: start with *position =
 * 0; FLOW_TABLE_NONE after the last. The table must not change between
 * calls. */
uint32_t flow_table_next(const struct flow_table *table, uint32_t *position);

/* Removes every entry. */
void flow_table_clear(struct flow_table *table);

static inline uint32_t flow_table_free_count(const struct flow_table *table)
{
    return table->free_count;
}

#endif
