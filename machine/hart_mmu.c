/* Address translation (Sv39), the software TLBs, and the slow paths of
 * loads, stores and instruction fetch.
 *
 * TLB entries map a virtual page straight to host memory, so a hit costs a
 * compare and an add. Entries are only made for RAM. A write entry is only
 * made when a store there needs no bookkeeping: the page is already marked
 * in the dirty log (or logging is off), it holds no decoded instructions,
 * and it is not watched for HTIF. Everything else takes the slow path. */
#include <stdlib.h>
#include <string.h>

#include "hart.h"
#include "hart_decode.h"
#include "machine_devices.h"

enum access_kind { ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH };

#define PTE_V (1u << 0)
#define PTE_R (1u << 1)
#define PTE_W (1u << 2)
#define PTE_X (1u << 3)
#define PTE_U (1u << 4)
#define PTE_A (1u << 6)
#define PTE_D (1u << 7)
#define SATP_MODE_SV39 8ull

static const int32_t page_fault_cause[3] = { EXCEPTION_LOAD_PAGE_FAULT, EXCEPTION_STORE_PAGE_FAULT,
                                             EXCEPTION_FETCH_PAGE_FAULT };
static const int32_t access_fault_cause[3] = { EXCEPTION_LOAD_ACCESS, EXCEPTION_STORE_ACCESS, EXCEPTION_FETCH_ACCESS };

static void tlb_set_clear(struct hart_tlb_set *set)
{
    for (unsigned i = 0; i < HART_TLB_ENTRIES; i++) {
        set->read[i].page_address = UINT64_MAX;
        set->write[i].page_address = UINT64_MAX;
        set->fetch[i].page = UINT64_MAX;
    }
}

void hart_tlb_flush_all(struct hart *hart)
{
    for (unsigned p = 0; p < 4; p++)
        tlb_set_clear(&hart->tlb[p]);
}

void hart_tlb_flush_writes_to_host_page(struct hart *hart, const uint8_t *host_page)
{
    for (unsigned p = 0; p < 4; p++) {
        struct hart_tlb_entry *entries = hart->tlb[p].write;
        for (unsigned i = 0; i < HART_TLB_ENTRIES; i++) {
            if (entries[i].page_address != UINT64_MAX &&
                (uintptr_t)entries[i].page_address + entries[i].addend == (uintptr_t)host_page)
                entries[i].page_address = UINT64_MAX;
        }
    }
}

static unsigned data_privilege(const struct hart *hart)
{
    const struct hart_state *s = &hart->state;
    if (s->privilege == PRIVILEGE_MACHINE && (s->mstatus & MSTATUS_MPRV))
        return (unsigned)((s->mstatus & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT);
    return s->privilege;
}

void hart_update_data_tlb(struct hart *hart)
{
    hart->data_tlb = &hart->tlb[data_privilege(hart)];
}

/* Reads or updates a page-table entry in RAM (never MMIO). */
static uint64_t *page_table_entry(struct hart *hart, uint64_t physical)
{
    struct guest_ram *ram = &hart->machine->ram;
    if ((physical & 7) || !guest_ram_contains(ram, physical, 8))
        return NULL;
    return (uint64_t *)(ram->host + (physical - ram->base));
}

/* Translates a virtual address for one kind of access. A TLB entry may be
 * made from any success: read entries never serve stores, and a write
 * translation has already set the D bit. */
static struct hart_fault translate(struct hart *hart, uint64_t address, enum access_kind kind, unsigned privilege,
                                   uint64_t *physical)
{
    const struct hart_state *s = &hart->state;
    if (privilege == PRIVILEGE_MACHINE || (s->satp >> 60) != SATP_MODE_SV39) {
        *physical = address;
        return hart_no_fault();
    }
    /* Sv39: bits 63..39 must all equal bit 38. */
    if ((uint64_t)((int64_t)(address << 25) >> 25) != address)
        return hart_fault_make(page_fault_cause[kind], address);

    uint64_t table = (s->satp & ((1ull << 44) - 1)) << GUEST_PAGE_SHIFT;
    for (int level = 2; level >= 0; level--) {
        uint64_t index = (address >> (GUEST_PAGE_SHIFT + 9 * level)) & 511;
        uint64_t entry_address = table + index * 8;
        uint64_t *entry_pointer = page_table_entry(hart, entry_address);
        if (!entry_pointer)
            return hart_fault_make(access_fault_cause[kind], address);
        uint64_t pte = *entry_pointer;
        if (!(pte & PTE_V) || (!(pte & PTE_R) && (pte & PTE_W)) || (pte >> 54) != 0)
            return hart_fault_make(page_fault_cause[kind], address);
        uint64_t ppn = (pte >> 10) & ((1ull << 44) - 1);
        if (!(pte & (PTE_R | PTE_X))) { /* pointer to the next level */
            table = ppn << GUEST_PAGE_SHIFT;
            continue;
        }
        /* A leaf: check permissions. */
        bool allowed;
        if (kind == ACCESS_FETCH)
            allowed = pte & PTE_X;
        else if (kind == ACCESS_WRITE)
            allowed = pte & PTE_W;
        else
            allowed = (pte & PTE_R) || ((s->mstatus & MSTATUS_MXR) && (pte & PTE_X));
        if (privilege == PRIVILEGE_USER && !(pte & PTE_U))
            allowed = false;
        if (privilege == PRIVILEGE_SUPERVISOR && (pte & PTE_U) && (kind == ACCESS_FETCH || !(s->mstatus & MSTATUS_SUM)))
            allowed = false;
        if (!allowed)
            return hart_fault_make(page_fault_cause[kind], address);
        uint64_t superpage_mask = (1ull << (9 * level)) - 1;
        if (ppn & superpage_mask) /* misaligned superpage */
            return hart_fault_make(page_fault_cause[kind], address);
        /* Hardware A/D update, as QEMU does. The PTE write is a store into
         * guest RAM like any other: it goes into the dirty log. */
        uint64_t updated = pte | PTE_A | (kind == ACCESS_WRITE ? PTE_D : 0);
        if (updated != pte) {
            guest_ram_before_write(&hart->machine->ram, entry_address, 8);
            *entry_pointer = updated;
            machine_ram_write_done(hart->machine, entry_address, 8);
        }
        uint64_t page_offset_mask = (1ull << (GUEST_PAGE_SHIFT + 9 * level)) - 1;
        *physical = ((ppn << GUEST_PAGE_SHIFT) & ~page_offset_mask) | (address & page_offset_mask);
        return hart_no_fault();
    }
    return hart_fault_make(page_fault_cause[kind], address);
}

/* May a store to this RAM page be mapped in a write TLB? */
static bool ram_page_write_cacheable(const struct guest_ram *ram, uint64_t page_index)
{
    if (ram->has_decoded_code[page_index] || page_index == ram->watched_page)
        return false;
    return !ram->dirty_log_enabled || ram->dirty[page_index];
}

static struct hart_fault access_one(struct hart *hart, uint64_t address, unsigned size, enum access_kind kind,
                                    uint64_t *value)
{
    struct machine *machine = hart->machine;
    struct guest_ram *ram = &machine->ram;
    unsigned privilege = kind == ACCESS_FETCH ? hart->state.privilege : data_privilege(hart);
    uint64_t physical = 0;
    struct hart_fault fault = translate(hart, address, kind, privilege, &physical);
    if (fault.cause != HART_NO_FAULT)
        return fault;

    if (!guest_ram_contains(ram, physical, size)) {
        bool ok = kind == ACCESS_WRITE ? machine_mmio_write(machine, physical, size, *value)
                                       : machine_mmio_read(machine, physical, size, value);
        return ok ? hart_no_fault() : hart_fault_make(access_fault_cause[kind], address);
    }

    uint64_t page_index = (physical - ram->base) >> GUEST_PAGE_SHIFT;
    uint8_t *host = ram->host + (physical - ram->base);
    uint8_t *host_page = host - (physical & (GUEST_PAGE_SIZE - 1));
    uint64_t virtual_page = address >> GUEST_PAGE_SHIFT;
    struct hart_tlb_set *set = &hart->tlb[privilege];
    unsigned slot = virtual_page & (HART_TLB_ENTRIES - 1);
    uintptr_t addend = (uintptr_t)host_page - (uintptr_t)(virtual_page << GUEST_PAGE_SHIFT);

    if (kind == ACCESS_WRITE) {
        if (ram->has_decoded_code[page_index])
            machine_drop_decoded_page(machine, page_index);
        guest_ram_before_write(ram, physical, size);
        memcpy(host, value, size); /* little-endian host */
        if (page_index == ram->watched_page)
            machine_note_ram_store(machine, hart, physical, size, *value);
        if (ram_page_write_cacheable(ram, page_index)) {
            set->write[slot].page_address = virtual_page << GUEST_PAGE_SHIFT;
            set->write[slot].addend = addend;
        }
    } else {
        *value = 0;
        memcpy(value, host, size);
        if (kind == ACCESS_READ) {
            set->read[slot].page_address = virtual_page << GUEST_PAGE_SHIFT;
            set->read[slot].addend = addend;
        }
    }
    return hart_no_fault();
}

static struct hart_fault access_data(struct hart *hart, uint64_t address, unsigned size, enum access_kind kind,
                                     uint64_t *value)
{
    /* Misaligned accesses that stay inside one page are carried out in one
     * piece; those that cross a page go byte by byte, so each byte gets its
     * own translation and fault. */
    if (((address & (GUEST_PAGE_SIZE - 1)) + size) <= GUEST_PAGE_SIZE)
        return access_one(hart, address, size, kind, value);
    uint64_t result = 0;
    for (unsigned i = 0; i < size; i++) {
        uint64_t byte = kind == ACCESS_WRITE ? (*value >> (8 * i)) & 0xff : 0;
        struct hart_fault fault = access_one(hart, address + i, 1, kind, &byte);
        if (fault.cause != HART_NO_FAULT) {
            fault.value = address + i;
            return fault;
        }
        result |= (byte & 0xff) << (8 * i);
    }
    if (kind == ACCESS_READ)
        *value = result;
    return hart_no_fault();
}

struct hart_fault hart_load(struct hart *hart, uint64_t address, unsigned size, uint64_t *value)
{
    return access_data(hart, address, size, ACCESS_READ, value);
}

struct hart_fault hart_store(struct hart *hart, uint64_t address, unsigned size, uint64_t value)
{
    return access_data(hart, address, size, ACCESS_WRITE, &value);
}

/* Physical address of a store target, for AMOs: translated for writing, in
 * RAM, and with all of a store's bookkeeping done. */
struct hart_fault hart_translate_for_atomic(struct hart *hart, uint64_t address, unsigned size, uint8_t **host)
{
    struct machine *machine = hart->machine;
    struct guest_ram *ram = &machine->ram;
    uint64_t physical = 0;
    struct hart_fault fault = translate(hart, address, ACCESS_WRITE, data_privilege(hart), &physical);
    if (fault.cause != HART_NO_FAULT)
        return fault;
    if (!guest_ram_contains(ram, physical, size))
        return hart_fault_make(EXCEPTION_STORE_ACCESS, address);
    uint64_t page_index = (physical - ram->base) >> GUEST_PAGE_SHIFT;
    if (ram->has_decoded_code[page_index])
        machine_drop_decoded_page(machine, page_index);
    guest_ram_before_write(ram, physical, size);
    *host = ram->host + (physical - ram->base);
    return hart_no_fault();
}

struct hart_fault hart_fetch_translate(struct hart *hart, uint64_t address, struct hart_fetch_tlb_entry **entry_out)
{
    struct machine *machine = hart->machine;
    struct guest_ram *ram = &machine->ram;
    uint64_t physical = 0;
    struct hart_fault fault = translate(hart, address, ACCESS_FETCH, hart->state.privilege, &physical);
    if (fault.cause != HART_NO_FAULT)
        return fault;
    if (!guest_ram_contains(ram, physical, 2))
        return hart_fault_make(EXCEPTION_FETCH_ACCESS, address);
    uint64_t page_index = (physical - ram->base) >> GUEST_PAGE_SHIFT;
    struct decoded_page *page = machine_decoded_page(machine, page_index);
    if (!page)
        return hart_fault_make(EXCEPTION_FETCH_ACCESS, address);
    uint64_t virtual_page = address >> GUEST_PAGE_SHIFT;
    struct hart_fetch_tlb_entry *entry = &hart->tlb[hart->state.privilege].fetch[virtual_page & (HART_TLB_ENTRIES - 1)];
    entry->page = virtual_page;
    entry->physical_page_index = page_index;
    entry->decoded = page;
    *entry_out = entry;
    return hart_no_fault();
}

struct hart_fault hart_fetch_parcel(struct hart *hart, uint64_t address, uint16_t *parcel)
{
    struct hart_fetch_tlb_entry *entry;
    struct hart_fault fault = hart_fetch_translate(hart, address, &entry);
    if (fault.cause != HART_NO_FAULT)
        return fault;
    const uint8_t *host = hart->machine->ram.host + (entry->physical_page_index << GUEST_PAGE_SHIFT) +
                          (address & (GUEST_PAGE_SIZE - 1));
    memcpy(parcel, host, 2);
    return hart_no_fault();
}
