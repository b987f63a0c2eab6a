/* CLINT (SiFive core-local interruptor) at 0x02000000: msip at +0 (one
 * 32-bit word per hart), mtimecmp at +0x4000 (64-bit per hart), mtime at
 * +0xbff8. mtime itself is the machine's clock (machine_mtime); the CLINT
 * holds only the compare values and software-interrupt bits. */
#ifndef COLO_MACHINE_CLINT_H
#define COLO_MACHINE_CLINT_H

#include <stdbool.h>
#include <stdint.h>

#include "state_buffer.h"

#define CLINT_MAX_HARTS 8

struct clint_state {
    uint32_t msip[CLINT_MAX_HARTS];
    uint64_t mtimecmp[CLINT_MAX_HARTS];
};

struct machine;

struct clint {
    struct clint_state state;
    unsigned hart_count;
    struct machine *machine; /* for machine_mtime and interrupt updates */
};

void clint_init(struct clint *clint, struct machine *machine, unsigned hart_count);
/* MMIO: 4- and 8-byte accesses (mtime/mtimecmp also as two 4-byte halves).
 * Return false for an offset that is not a register. */
bool clint_read(struct clint *clint, uint64_t offset, unsigned size, uint64_t *value);
bool clint_write(struct clint *clint, uint64_t offset, unsigned size, uint64_t value);
/* The earliest mtimecmp over all harts (UINT64_MAX if none armed). */
uint64_t clint_next_deadline(const struct clint *clint);
void clint_save(const struct clint *clint, struct state_writer *writer);
void clint_load(struct clint *clint, struct state_reader *reader);

#endif
