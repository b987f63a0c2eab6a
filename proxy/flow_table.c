/* The comparing proxy's table of flows by key (flow_table.h). */
#include <stdlib.h>
#include <string.h>

#include "flow_table.h"

int flow_table_init(struct flow_table *table, uint32_t capacity, struct error *error)
{
    memset(table, 0, sizeof *table);
    if (capacity == 0 || capacity > FLOW_TABLE_CAPACITY_MAX)
        return error_set(error, "flow table: %u entries (1 to %u)", capacity, FLOW_TABLE_CAPACITY_MAX);
    uint32_t slots = 2;
    while (slots < 2 * capacity)
        slots *= 2;
    table->capacity = capacity;
    table->slot_mask = slots - 1;
    table->keys = calloc(capacity, sizeof *table->keys);
    table->hashes = calloc(capacity, sizeof *table->hashes);
    table->slots = calloc(slots, sizeof *table->slots);
    table->free_entries = calloc(capacity, sizeof *table->free_entries);
    if (!table->keys || !table->hashes || !table->slots || !table->free_entries) {
        flow_table_destroy(table);
        return error_set(error, "flow table: out of memory");
    }
    flow_table_clear(table);
    return 0;
}

void flow_table_destroy(struct flow_table *table)
{
    free(table->keys);
    free(table->hashes);
    free(table->slots);
    free(table->free_entries);
    memset(table, 0, sizeof *table);
}

uint32_t flow_table_next(const struct flow_table *table, uint32_t *position)
{
    while (table->slots && *position <= table->slot_mask) {
        uint32_t slot = table->slots[(*position)++];
        if (slot)
            return slot - 1;
    }
    return FLOW_TABLE_NONE;
}

void flow_table_clear(struct flow_table *table)
{
    memset(table->slots, 0, ((size_t)table->slot_mask + 1) * sizeof *table->slots);
    table->free_count = 0;
    /* Lowest index on top: entries are handed out 0, 1, 2... */
    for (uint32_t entry = table->capacity; entry-- > 0;)
        table->free_entries[table->free_count++] = entry;
}

/* FNV-1a: the keys are addresses and ports a guest picks, but a bad
 * spread costs time, never correctness, and the table is bounded. */
static uint32_t key_hash(const uint8_t key[FLOW_KEY_SIZE])
{
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < FLOW_KEY_SIZE; i++)
        hash = (hash ^ key[i]) * 16777619u;
    return hash;
}

uint32_t flow_table_find(const struct flow_table *table, const uint8_t key[FLOW_KEY_SIZE])
{
    uint32_t hash = key_hash(key);
    for (uint32_t slot = hash & table->slot_mask;; slot = (slot + 1) & table->slot_mask) {
        uint32_t stored = table->slots[slot];
        if (!stored)
            return FLOW_TABLE_NONE;
        uint32_t entry = stored - 1;
        if (table->hashes[entry] == hash && memcmp(table->keys[entry], key, FLOW_KEY_SIZE) == 0)
            return entry;
    }
}

uint32_t flow_table_insert(struct flow_table *table, const uint8_t key[FLOW_KEY_SIZE])
{
    if (table->free_count == 0)
        return FLOW_TABLE_NONE;
    uint32_t entry = table->free_entries[--table->free_count];
    uint32_t hash = key_hash(key);
    memcpy(table->keys[entry], key, FLOW_KEY_SIZE);
    table->hashes[entry] = hash;
    uint32_t slot = hash & table->slot_mask;
    while (table->slots[slot])
        slot = (slot + 1) & table->slot_mask;
    table->slots[slot] = entry + 1;
    return entry;
}

void flow_table_remove(struct flow_table *table, uint32_t entry)
{
    uint32_t mask = table->slot_mask;
    uint32_t hole = table->hashes[entry] & mask;
    while (table->slots[hole] != entry + 1)
        hole = (hole + 1) & mask;
    for (uint32_t next = (hole + 1) & mask; table->slots[next]; next = (next + 1) & mask) {
        uint32_t home = table->hashes[table->slots[next] - 1] & mask;
        /* The entry at next may fill the hole unless its home lies in the
         * cyclic range (hole, next]: a lookup from there would not pass
         * the hole. */
        bool home_after_hole = hole <= next ? home > hole && home <= next : home > hole || home <= next;
        if (!home_after_hole) {
            table->slots[hole] = table->slots[next];
            hole = next;
        }
    }
    table->slots[hole] = 0;
    table->free_entries[table->free_count++] = entry;
}
