/* The comparing proxy's table of flows (proxy/flow_table.h), against a
 * model: random inserts and removals, and after each, every key there is
 * found at its entry and every key not there is not; the bound holds. */
#include <stdlib.h>
#include <string.h>

#include "flow_table.h"
#include "test_check.h"

#define KEYS 200
#define CAPACITY 50

static uint32_t random_state = 7;

static uint32_t random_below(uint32_t bound)
{
    random_state = random_state * 1103515245u + 12345u;
    return (random_state >> 8) % bound;
}

static void make_key(unsigned number, uint8_t key[FLOW_KEY_SIZE])
{
    memset(key, 0, FLOW_KEY_SIZE);
    key[9] = (uint8_t)(number >> 8);
    key[10] = (uint8_t)number;
    key[47] = (uint8_t)(number * 31);
}

int main(void)
{
    struct flow_table table;
    struct error error;
    CHECK(flow_table_init(&table, 0, &error) != 0, "a table of no entries is refused");
    if (flow_table_init(&table, CAPACITY, &error) != 0) {
        fprintf(stderr, "%s\n", error.message);
        return 1;
    }
    uint32_t entry_of[KEYS]; /* the model: FLOW_TABLE_NONE when absent */
    for (unsigned i = 0; i < KEYS; i++)
        entry_of[i] = FLOW_TABLE_NONE;
    unsigned present = 0;
    uint8_t key[FLOW_KEY_SIZE];
    for (unsigned step = 0; step < 20000; step++) {
        unsigned number = random_below(KEYS);
        make_key(number, key);
        if (entry_of[number] == FLOW_TABLE_NONE) {
            uint32_t entry = flow_table_insert(&table, key);
            if (present == CAPACITY) {
                CHECK(entry == FLOW_TABLE_NONE, "step %u: an insert into a full table", step);
            } else {
                CHECK(entry < CAPACITY, "step %u: inserted at %u", step, entry);
                for (unsigned other = 0; other < KEYS; other++)
                    CHECK(entry_of[other] != entry, "step %u: entry %u given twice", step, entry);
                entry_of[number] = entry;
                present++;
            }
        } else if (random_below(3) != 0) {
            flow_table_remove(&table, entry_of[number]);
            entry_of[number] = FLOW_TABLE_NONE;
            present--;
        }
        CHECK(flow_table_free_count(&table) == CAPACITY - present, "step %u: free count", step);
        for (unsigned other = 0; other < KEYS; other++) {
            make_key(other, key);
            uint32_t found = flow_table_find(&table, key);
            if (found != entry_of[other]) {
                CHECK(false, "step %u: key %u found at %u, expected %u", step, other, found, entry_of[other]);
                break;
            }
        }
        /* Iterating gives each present entry once, and nothing else. */
        bool seen[CAPACITY] = { false };
        uint32_t position = 0, entry, iterated = 0;
        while ((entry = flow_table_next(&table, &position)) != FLOW_TABLE_NONE) {
            CHECK(entry < CAPACITY && !seen[entry], "step %u: iteration gave entry %u twice or out of range", step,
                  entry);
            if (entry < CAPACITY)
                seen[entry] = true;
            iterated++;
        }
        CHECK(iterated == present, "step %u: iteration gave %u entries, %u present", step, iterated, present);
        if (test_check_failures > 10)
            break;
    }
    flow_table_clear(&table);
    uint32_t position = 0;
    CHECK(flow_table_next(&table, &position) == FLOW_TABLE_NONE, "a cleared table iterates nothing");
    make_key(0, key);
    CHECK(flow_table_free_count(&table) == CAPACITY && flow_table_find(&table, key) == FLOW_TABLE_NONE,
          "clear empties the table");
    flow_table_destroy(&table);
    return test_check_finish("flow_table_test");
}
