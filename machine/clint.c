/* SiFive CLINT: per-hart software-interrupt bits and timer compare values.
 *
 * Register map (offsets from MACHINE_CLINT_BASE), as on QEMU virt:
 *   0x0000 + 4 * hart   msip      32-bit, only bit 0 exists
 *   0x4000 + 8 * hart   mtimecmp  64-bit
 *   0xbff8              mtime     64-bit
 * The 64-bit registers can also be accessed as two 32-bit halves (low half
 * at +0, high half at +4), which is how RV32 software and some firmware
 * update them. */
#include "clint.h"

#include <string.h>

#include "machine_devices.h"

#define CLINT_MSIP_BASE 0x0000u
#define CLINT_MTIMECMP_BASE 0x4000u
#define CLINT_MTIME 0xbff8u

#define CLINT_SECTION_ID 0x434c4e54u /* "CLNT" */
#define CLINT_SECTION_VERSION 1u

void clint_init(struct clint *clint, struct machine *machine, unsigned hart_count)
{
    memset(clint, 0, sizeof *clint);
    clint->machine = machine;
    clint->hart_count = hart_count < CLINT_MAX_HARTS ? hart_count : CLINT_MAX_HARTS;
    /* No timer interrupt until software programs a compare value. */
    for (unsigned hart = 0; hart < CLINT_MAX_HARTS; hart++)
        clint->state.mtimecmp[hart] = UINT64_MAX;
}

/* Where a 64-bit register access lands: which hart's register (or mtime),
 * and which part of it. */
enum clint_access_width {
    CLINT_WHOLE,     /* 8-byte access at the register's address */
    CLINT_LOW_HALF,  /* 4-byte access at +0 */
    CLINT_HIGH_HALF, /* 4-byte access at +4 */
};

/* Classifies an access to a 64-bit register whose first byte is at
 * offset_in_register 0. Returns false for sizes and alignments the CLINT
 * does not decode (1- and 2-byte accesses, misaligned 8-byte ones). */
static bool classify_64bit_access(uint64_t offset_in_register, unsigned size, enum clint_access_width *width)
{
    if (size == 8 && offset_in_register == 0) {
        *width = CLINT_WHOLE;
        return true;
    }
    if (size == 4 && offset_in_register == 0) {
        *width = CLINT_LOW_HALF;
        return true;
    }
    if (size == 4 && offset_in_register == 4) {
        *width = CLINT_HIGH_HALF;
        return true;
    }
    return false;
}

static uint64_t read_part(uint64_t whole, enum clint_access_width width)
{
    switch (width) {
    case CLINT_LOW_HALF:
        return (uint32_t)whole;
    case CLINT_HIGH_HALF:
        return whole >> 32;
    case CLINT_WHOLE:
        break;
    }
    return whole;
}

static uint64_t merge_part(uint64_t old, enum clint_access_width width, uint64_t value)
{
    switch (width) {
    case CLINT_LOW_HALF:
        return (old & 0xffffffff00000000ull) | (uint32_t)value;
    case CLINT_HIGH_HALF:
        return (old & 0x00000000ffffffffull) | ((uint64_t)(uint32_t)value << 32);
    case CLINT_WHOLE:
        break;
    }
    return value;
}

/* The msip word of a hart, or -1 if offset is not an msip register. */
static int msip_hart(const struct clint *clint, uint64_t offset, unsigned size)
{
    if (size != 4 || offset % 4 != 0)
        return -1;
    uint64_t hart = (offset - CLINT_MSIP_BASE) / 4;
    return hart < clint->hart_count ? (int)hart : -1;
}

/* The hart whose mtimecmp the access touches, or -1. */
static int mtimecmp_hart(const struct clint *clint, uint64_t offset, unsigned size, enum clint_access_width *width)
{
    if (offset < CLINT_MTIMECMP_BASE)
        return -1;
    uint64_t hart = (offset - CLINT_MTIMECMP_BASE) / 8;
    if (hart >= clint->hart_count)
        return -1;
    if (!classify_64bit_access((offset - CLINT_MTIMECMP_BASE) % 8, size, width))
        return -1;
    return (int)hart;
}

static bool is_mtime(uint64_t offset, unsigned size, enum clint_access_width *width)
{
    if (offset < CLINT_MTIME || offset >= CLINT_MTIME + 8)
        return false;
    return classify_64bit_access(offset - CLINT_MTIME, size, width);
}

bool clint_read(struct clint *clint, uint64_t offset, unsigned size, uint64_t *value)
{
    enum clint_access_width width;
    int hart = msip_hart(clint, offset, size);
    if (hart >= 0) {
        *value = clint->state.msip[hart];
        return true;
    }
    hart = mtimecmp_hart(clint, offset, size, &width);
    if (hart >= 0) {
        *value = read_part(clint->state.mtimecmp[hart], width);
        return true;
    }
    if (is_mtime(offset, size, &width)) {
        /* Reading the two halves separately can tear across a carry out
         * of the low word; software that cares rereads the high half, as
         * on real hardware. */
        *value = read_part(machine_mtime(clint->machine), width);
        return true;
    }
    return false;
}

bool clint_write(struct clint *clint, uint64_t offset, unsigned size, uint64_t value)
{
    enum clint_access_width width;
    int hart = msip_hart(clint, offset, size);
    if (hart >= 0) {
        clint->state.msip[hart] = (uint32_t)value & 1u;
        machine_update_timer_interrupts(clint->machine);
        return true;
    }
    hart = mtimecmp_hart(clint, offset, size, &width);
    if (hart >= 0) {
        clint->state.mtimecmp[hart] = merge_part(clint->state.mtimecmp[hart], width, value);
        machine_update_timer_interrupts(clint->machine);
        return true;
    }
    if (is_mtime(offset, size, &width)) {
        /* Writes to mtime are accepted and ignored. The machine's clock
         * (machine_mtime) is the single source of guest time: it is derived
         * from retired instructions or from the host clock, it is what the
         * time CSR reads and what save/load keeps continuous. Letting the
         * CLINT hold a second, writable copy would let the two disagree.
         * Guests in practice never write mtime (Linux and OpenSBI only
         * read it). */
        return true;
    }
    return false;
}

uint64_t clint_next_deadline(const struct clint *clint)
{
    uint64_t earliest = UINT64_MAX;
    for (unsigned hart = 0; hart < clint->hart_count; hart++) {
        if (clint->state.mtimecmp[hart] < earliest)
            earliest = clint->state.mtimecmp[hart];
    }
    return earliest;
}

/* Layout (version 1): u32 hart_count, then per hart u32 msip, u64 mtimecmp. */
void clint_save(const struct clint *clint, struct state_writer *writer)
{
    state_section_begin(writer, CLINT_SECTION_ID, CLINT_SECTION_VERSION);
    state_put_u32(writer, clint->hart_count);
    for (unsigned hart = 0; hart < clint->hart_count; hart++) {
        state_put_u32(writer, clint->state.msip[hart]);
        state_put_u64(writer, clint->state.mtimecmp[hart]);
    }
    state_section_end(writer);
}

/* Does not recompute the harts' MTIP/MSIP: the hart state (mip) is loaded
 * separately, and the machine recomputes interrupts once everything is in
 * place. */
void clint_load(struct clint *clint, struct state_reader *reader)
{
    state_section_open(reader, CLINT_SECTION_ID, CLINT_SECTION_VERSION, "clint");
    uint32_t saved_hart_count = state_get_u32(reader);
    if (reader->failed)
        return;
    if (saved_hart_count != clint->hart_count) {
        state_reader_fail(reader, "clint: saved state has %u harts, this machine has %u", saved_hart_count,
                          clint->hart_count);
        return;
    }
    /* Read into a copy so that a failed load leaves the device untouched. */
    struct clint_state loaded = clint->state;
    for (unsigned hart = 0; hart < clint->hart_count; hart++) {
        loaded.msip[hart] = state_get_u32(reader);
        loaded.mtimecmp[hart] = state_get_u64(reader);
        if (!reader->failed && loaded.msip[hart] > 1u) {
            state_reader_fail(reader, "clint: msip of hart %u is 0x%x, only bit 0 exists", hart, loaded.msip[hart]);
        }
    }
    state_section_close(reader, "clint");
    if (!reader->failed)
        clint->state = loaded;
}
