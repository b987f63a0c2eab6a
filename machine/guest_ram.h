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

/* Copies of pages as they were before their first write since the last
 * reset (see guest_ram_before_write): what a COLO secondary needs to undo
 * its own VM's writes at a checkpoint without keeping a second copy of RAM. */
struct guest_ram_preimages {
    uint64_t *page_indices;
    uint8_t *data; /* count pages of 4 KiB, in capture order */
    size_t count, capacity;
};

struct guest_ram {
    uint64_t base; /* guest-physical address of the first byte */
    uint64_t size; /* bytes, a multiple of GUEST_PAGE_SIZE */
    uint8_t *host; /* the mapping */
    uint64_t page_count;
    bool dirty_log_enabled;
    uint8_t *dirty; /* one byte per page: stores need no read-modify-write */
    /* One byte per page: the page holds decoded instructions, so stores to it
     * must go through the slow path that invalidates them. */
    uint8_t *has_decoded_code;
    /* A page to watch for stores on the slow path (the HTIF tohost word). */
    uint64_t watched_page; /* page index, or UINT64_MAX */
    /* With pre-images on (which needs the dirty log on), the first write to
     * a page since the last reset copies the page first: the dirty byte
     * doubles as "already captured". */
    bool preimages_enabled;
    bool preimages_failed; /* out of memory: a rollback is impossible */
    /* After a rollback before a load: writes are logged but not captured
     * until the next reset (see guest_ram_preimages_rollback). */
    bool preimages_capture_paused;
    struct guest_ram_preimages preimages;
};

int guest_ram_init(struct guest_ram *ram, uint64_t base, uint64_t size, struct error *err);
void guest_ram_destroy(struct guest_ram *ram);

static inline bool guest_ram_contains(const struct guest_ram *ram, uint64_t address, uint64_t length)
{
    return address >= ram->base && address - ram->base < ram->size && length <= ram->size - (address - ram->base);
}

/* Every write into guest RAM calls this first, for the pages of
 * [address, address + length): they go into the dirty log, and with
 * pre-images on, a page written for the first time since the last reset is
 * copied before it changes. Not on the harts' fast path: a write TLB entry
 * only exists for a page whose dirty byte is already set. */
void guest_ram_before_write(struct guest_ram *ram, uint64_t address, uint64_t length);

/* Pre-images (the caller makes sure no hart runs). Enabling needs the dirty
 * log on and starts an empty set; rollback writes every pre-image back
 * (the RAM is as it was at the last reset) and returns how many pages it
 * restored, or -1 if capturing had failed; reset forgets them and clears
 * the dirty log, starting the next interval. */
void guest_ram_preimages_enable(struct guest_ram *ram, bool enable);
int64_t guest_ram_preimages_rollback(struct guest_ram *ram);
/* The rollback before a checkpoint is loaded over the RAM: pages for which
 * overwritten(opaque, page) is true are not restored (the checkpoint
 * brings their new contents, so restoring them would be a wasted copy),
 * and nothing is captured until the next reset (what is written next is
 * the new base, not something to undo). */
int64_t guest_ram_preimages_rollback_before_load(struct guest_ram *ram, bool (*overwritten)(void *, uint64_t),
                                                 void *opaque);
void guest_ram_preimages_reset(struct guest_ram *ram);

/* True when all GUEST_PAGE_SIZE bytes at `page` are zero. A page that
 * starts with a non-zero word (the common case for data) is decided by it. */
bool guest_ram_page_is_zero(const uint8_t *page);

/* The set bits of a dirty bitmap of `words` words as page indices, in
 * order, into `pages` (room for 64 x words); returns how many. */
size_t guest_ram_bitmap_to_pages(const uint64_t *bitmap, size_t words, uint64_t *pages);

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
