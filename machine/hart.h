/* One RISC-V RV64GC hart: M, S and U modes, Sv39, and a decoded-instruction
 * cache that makes the interpreter fast.
 *
 * struct hart_state is everything guest-visible: plain fixed-width integers,
 * saved and loaded field by field (hart_save/hart_load). struct hart adds the
 * host resources: TLBs, the decode cache pointer, the owning machine. */
#ifndef COLO_MACHINE_HART_H
#define COLO_MACHINE_HART_H

#include <stdbool.h>
#include <stdint.h>

#include "decode_cache.h"
#include "state_buffer.h"

struct machine;
struct decoded_page;

enum hart_privilege {
    PRIVILEGE_USER = 0,
    PRIVILEGE_SUPERVISOR = 1,
    PRIVILEGE_MACHINE = 3,
};

/* Exception causes (mcause/scause with the interrupt bit clear). */
enum hart_exception {
    EXCEPTION_FETCH_MISALIGNED = 0,
    EXCEPTION_FETCH_ACCESS = 1,
    EXCEPTION_ILLEGAL_INSTRUCTION = 2,
    EXCEPTION_BREAKPOINT = 3,
    EXCEPTION_LOAD_MISALIGNED = 4,
    EXCEPTION_LOAD_ACCESS = 5,
    EXCEPTION_STORE_MISALIGNED = 6, /* also AMO */
    EXCEPTION_STORE_ACCESS = 7,     /* also AMO */
    EXCEPTION_ECALL_FROM_USER = 8,
    EXCEPTION_ECALL_FROM_SUPERVISOR = 9,
    EXCEPTION_ECALL_FROM_MACHINE = 11,
    EXCEPTION_FETCH_PAGE_FAULT = 12,
    EXCEPTION_LOAD_PAGE_FAULT = 13,
    EXCEPTION_STORE_PAGE_FAULT = 15, /* also AMO */
};

/* Interrupt numbers: bits of mip/mie, and the cause with the top bit set. */
enum hart_interrupt {
    INTERRUPT_SUPERVISOR_SOFTWARE = 1,
    INTERRUPT_MACHINE_SOFTWARE = 3,
    INTERRUPT_SUPERVISOR_TIMER = 5,
    INTERRUPT_MACHINE_TIMER = 7,
    INTERRUPT_SUPERVISOR_EXTERNAL = 9,
    INTERRUPT_MACHINE_EXTERNAL = 11,
};

#define MIP_SSIP (1ull << INTERRUPT_SUPERVISOR_SOFTWARE)
#define MIP_MSIP (1ull << INTERRUPT_MACHINE_SOFTWARE)
#define MIP_STIP (1ull << INTERRUPT_SUPERVISOR_TIMER)
#define MIP_MTIP (1ull << INTERRUPT_MACHINE_TIMER)
#define MIP_SEIP (1ull << INTERRUPT_SUPERVISOR_EXTERNAL)
#define MIP_MEIP (1ull << INTERRUPT_MACHINE_EXTERNAL)

/* mstatus fields */
#define MSTATUS_SIE (1ull << 1)
#define MSTATUS_MIE (1ull << 3)
#define MSTATUS_SPIE (1ull << 5)
#define MSTATUS_UBE (1ull << 6)
#define MSTATUS_MPIE (1ull << 7)
#define MSTATUS_SPP (1ull << 8)
#define MSTATUS_MPP_SHIFT 11
#define MSTATUS_MPP (3ull << MSTATUS_MPP_SHIFT)
#define MSTATUS_FS_SHIFT 13
#define MSTATUS_FS (3ull << MSTATUS_FS_SHIFT)
#define MSTATUS_FS_OFF (0ull << MSTATUS_FS_SHIFT)
#define MSTATUS_FS_DIRTY (3ull << MSTATUS_FS_SHIFT)
#define MSTATUS_XS (3ull << 15)
#define MSTATUS_MPRV (1ull << 17)
#define MSTATUS_SUM (1ull << 18)
#define MSTATUS_MXR (1ull << 19)
#define MSTATUS_TVM (1ull << 20)
#define MSTATUS_TW (1ull << 21)
#define MSTATUS_TSR (1ull << 22)
#define MSTATUS_UXL (3ull << 32)
#define MSTATUS_SXL (3ull << 34)
#define MSTATUS_SD (1ull << 63)

/* A guest-visible fault: a trap cause and its tval, or no fault. */
struct hart_fault {
    int32_t cause;  /* enum hart_exception, or HART_NO_FAULT */
    uint64_t value; /* what goes into mtval/stval */
};
#define HART_NO_FAULT (-1)
static inline struct hart_fault hart_no_fault(void)
{
    return (struct hart_fault){ HART_NO_FAULT, 0 };
}
static inline struct hart_fault hart_fault_make(int32_t cause, uint64_t value)
{
    return (struct hart_fault){ cause, value };
}

/* Everything guest-visible. Saved field by field, never as a blob. */
struct hart_state {
    uint64_t x[33]; /* x[0] reads 0; x[32] is the sink for writes to x0 */
    uint64_t f[32]; /* FP registers; singles are NaN-boxed */
    uint64_t pc;
    uint32_t fcsr;     /* frm << 5 | fflags */
    uint8_t privilege; /* enum hart_privilege */
    uint8_t waiting_for_interrupt;
    uint8_t reservation_valid;
    uint64_t reservation_address;
    uint64_t instret; /* retired instructions; cycle reads the same */
    uint64_t mhartid;
    uint64_t mstatus, misa, medeleg, mideleg, mie, mip, mtvec, mscratch;
    uint64_t mepc, mcause, mtval, mcounteren, menvcfg, mcountinhibit;
    uint64_t stvec, sscratch, sepc, scause, stval, satp, scounteren, senvcfg;
    uint64_t pmpcfg[2]; /* pmpcfg0 and pmpcfg2 on RV64 */
    uint64_t pmpaddr[16];
};

#define HART_TLB_ENTRIES 256

struct hart_tlb_entry {
    uint64_t page_address; /* virtual address of the page; UINT64_MAX when empty */
    uintptr_t addend;      /* host address = guest virtual address + addend */
};

struct hart_fetch_tlb_entry {
    uint64_t page;
    uint64_t physical_page_index; /* page index in guest RAM */
    struct decoded_page *decoded;
};

/* One set of TLBs per privilege level, so traps never flush. */
struct hart_tlb_set {
    struct hart_tlb_entry read[HART_TLB_ENTRIES];
    struct hart_tlb_entry write[HART_TLB_ENTRIES];
    struct hart_fetch_tlb_entry fetch[HART_TLB_ENTRIES];
};

struct hart {
    struct hart_state state;
    struct machine *machine;
    struct hart_tlb_set tlb[4];    /* indexed by privilege (2 unused) */
    struct hart_tlb_set *data_tlb; /* the set loads/stores use (MPRV aware) */
    /* Set by slow paths that need the run loop to stop: an MMIO write that
     * powers off, tohost, a store into the page being executed. */
    bool leave_run_loop;
    bool interrupt_check_needed;
    /* An instruction that straddles two pages runs from here, followed by
     * two HART_OP_PAGE_END sentinels. */
    struct decoded_instruction cross_page_scratch[3];
};

void hart_init(struct hart *hart, struct machine *machine, uint64_t hart_id);
/* Sets every slot of a decoded page to "decode me", sentinels included. */
void hart_decoded_page_reset(struct decoded_page *page);
void hart_reset(struct hart *hart, uint64_t start_pc);

/* Runs up to budget instructions; returns how many it used (retired
 * instructions plus traps taken; state.instret counts only the former). Returns early
 * on WFI, on anything that may unmask an interrupt, and when a slow path
 * sets leave_run_loop. Takes a pending enabled interrupt first. */
uint64_t hart_run(struct hart *hart, uint64_t budget);

/* Data access through translation, for instruction slow paths, the FPU and
 * debugging. size is 1, 2, 4 or 8. Misaligned accesses are carried out. */
struct hart_fault hart_load(struct hart *hart, uint64_t address, unsigned size, uint64_t *value);
struct hart_fault hart_store(struct hart *hart, uint64_t address, unsigned size, uint64_t value);

/* Traps: sets up mepc/sepc etc. and moves pc to the handler. The faulting
 * instruction's pc must be in state.pc. */
void hart_take_trap(struct hart *hart, uint64_t cause, bool interrupt, uint64_t value);
/* Takes the highest-priority pending enabled interrupt, if any. Returns
 * whether one was taken. Also clears waiting_for_interrupt when any
 * interrupt is pending (even if disabled), as WFI requires. */
bool hart_check_interrupts(struct hart *hart);

/* MRET and SRET: privilege, status stack and pc (checks are the caller's). */
void hart_return_from_machine(struct hart *hart);
void hart_return_from_supervisor(struct hart *hart);

/* CSRs (hart_csr.c). Return a fault (illegal instruction) when the CSR does
 * not exist or the privilege is too low. */
struct hart_fault hart_csr_read(struct hart *hart, uint32_t csr, uint64_t *value);
struct hart_fault hart_csr_write(struct hart *hart, uint32_t csr, uint64_t value);

/* Executes one F/D instruction (opcodes LOAD-FP, STORE-FP, FMADD, FMSUB,
 * FNMSUB, FNMADD, OP-FP) given in 32-bit form; pc is left to the caller. */
struct hart_fault hart_fpu_execute(struct hart *hart, uint32_t instruction);

/* TLB maintenance (hart_mmu.c). */
void hart_tlb_flush_all(struct hart *hart);
void hart_tlb_flush_writes_to_host_page(struct hart *hart, const uint8_t *host_page);
void hart_update_data_tlb(struct hart *hart);
/* Translates a store target for an AMO or SC: must be RAM; marks the dirty
 * log and drops decoded code like any store, and returns the host bytes. */
struct hart_fault hart_translate_for_atomic(struct hart *hart, uint64_t address, unsigned size, uint8_t **host);
/* Fetches 16 bits at a virtual address (for instructions crossing pages). */
struct hart_fault hart_fetch_parcel(struct hart *hart, uint64_t address, uint16_t *parcel);
/* Translates for a fetch and returns the decoded page (allocating it). */
struct hart_fault hart_fetch_translate(struct hart *hart, uint64_t address, struct hart_fetch_tlb_entry **entry);

void hart_save(const struct hart *hart, struct state_writer *writer);
/* Reads and checks one hart's saved state; *state is written only when the
 * section was valid. hart_set_state installs it (TLBs start empty). */
void hart_state_load(struct hart_state *state, struct state_reader *reader);
void hart_set_state(struct hart *hart, const struct hart_state *state);

#endif
