/* Decoded instructions, one array per guest RAM page that holds code.
 *
 * A decoded page has one slot per 2-byte parcel. A slot starts as
 * HART_OP_DECODE and is filled the first time it runs (hart_decoded_page_reset
 * in hart.c sets a page up). A page with decoded
 * code is marked in guest_ram.has_decoded_code, so harts never map it in
 * their write TLB: every store to it takes the slow path, which drops the
 * page's decoded instructions (self-modifying code, loaders, DMA). */
#ifndef COLO_MACHINE_DECODE_CACHE_H
#define COLO_MACHINE_DECODE_CACHE_H

#include <stdint.h>

#include "error.h"
#include "guest_ram.h"

/* 16 bytes. The handler is the address hart_run jumps to, so dispatch is
 * one load and an indirect jump. */
struct decoded_instruction {
    const void *handler;
    /* The immediate, or for system, CSR, atomic, floating-point and illegal
     * instructions the raw 32-bit instruction (RVC expanded; for an illegal
     * one, the original bits), which their slow paths decode further. */
    int32_t immediate;
    uint8_t rd, rs1, rs2; /* rd 32 is the sink for writes to x0 */
    /* Bytes from this slot to the next instruction's: 16 for a 2-byte
     * instruction, 32 for a 4-byte one (slots are 16 bytes, one per
     * 2-byte parcel), so stepping on is one add. */
    uint8_t advance;
};
_Static_assert(sizeof(struct decoded_instruction) == 16,
               "hart.c derives pc from a slot's address: slots must be 16 bytes");

#define DECODED_SLOTS_PER_PAGE (GUEST_PAGE_SIZE / 2)

/* Two extra slots past the end hold HART_OP_PAGE_END, so running off the
 * end of a page needs no check on the fast path: the sentinel re-fetches. */
#define DECODED_SENTINEL_SLOTS 2

struct decoded_page {
    struct decoded_instruction slots[DECODED_SLOTS_PER_PAGE + DECODED_SENTINEL_SLOTS];
};

struct decode_cache {
    struct decoded_page **pages; /* by RAM page index, allocated lazily */
    uint64_t page_count;
    uint64_t invalidations; /* statistics */
};

int decode_cache_init(struct decode_cache *cache, uint64_t page_count, struct error *err);
void decode_cache_destroy(struct decode_cache *cache);

#endif
