/* Guest RAM: one flat host mapping, plus the dirty log.
 *
 * The dirty log has one entry per 4 KiB guest page. While it is on, every
 * guest store and every device write into RAM marks its page. Harts never
 * pay for this on their store fast path: a hart's write TLB only maps a page
 * when logging is off or the page is already marked (see hart_mmu.c), so
 * the first store to a clean page takes the slow path, which marks it.
 *
 * The log is only touched from the thread that runs the harts; readers on
 * other threads go through machine_dirty_log_read_and_clear(), which stops
 * the harts at an instruction boundary for the exchange. */
#ifndef COLO_MACHINE_GUEST_RAM_H
#define COLO_MACHINE_GUEST_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define GUEST_PAGE_SHIFT 12
#define GUEST_PAGE_SIZE (1u << GUEST_PAGE_SHIFT)

struct guest_ram {
    uint64_t base;            /* guest-physical address of the first byte */
    uint64_t size;            /* bytes, a multiple of GUEST_PAGE_SIZE */
    uint8_t *host;            /* the mapping */
    uint64_t page_count;
    bool dirty_log_enabled;
    uint8_t *dirty;           /* one byte per page: stores need no read-modify-write */
    /* One byte per page: the page holds decoded instructions, so stores to it
     * must go through the slow path that invalidates them. */
    uint8_t *has_decoded_code;
    /* A page to watch for stores on the slow path (the HTIF tohost word). */
    uint64_t watched_page;    /* page index, or UINT64_MAX */
};

int guest_ram_init(struct guest_ram *ram, uint64_t base, uint64_t size, struct error *err);
void guest_ram_destroy(struct guest_ram *ram);

static inline bool guest_ram_contains(const struct guest_ram *ram, uint64_t address, uint64_t length)
{
    return address >= ram->base && address - ram->base < ram->size &&
           length <= ram->size - (address - ram->base);
}

static inline void guest_ram_mark_dirty(struct guest_ram *ram, uint64_t address)
{
    if (ram->dirty_log_enabled)
        ram->dirty[(address - ram->base) >> GUEST_PAGE_SHIFT] = 1;
}

/* Number of 64-bit words in a dirty bitmap for this RAM. */
static inline size_t guest_ram_bitmap_words(const struct guest_ram *ram)
{
    return (size_t)((ram->page_count + 63) / 64);
}

/* Copies the log into bitmap (bit i = page i, guest_ram_bitmap_words words)
 * and clears it. Returns the number of dirty pages. Caller makes sure no
 * hart runs (machine_dirty_log_read_and_clear does). */
uint64_t guest_ram_dirty_log_read_and_clear(struct guest_ram *ram, uint64_t *bitmap);

#endif
