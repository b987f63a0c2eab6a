/* Control and status registers, traps and interrupts. */
#include "hart.h"
#include "machine_devices.h"

/* clang-format off */
enum {
    CSR_FFLAGS = 0x001, CSR_FRM = 0x002, CSR_FCSR = 0x003,
    CSR_CYCLE = 0xc00, CSR_TIME = 0xc01, CSR_INSTRET = 0xc02,
    CSR_HPMCOUNTER3 = 0xc03, CSR_HPMCOUNTER31 = 0xc1f,
    CSR_SSTATUS = 0x100, CSR_SIE = 0x104, CSR_STVEC = 0x105, CSR_SCOUNTEREN = 0x106,
    CSR_SENVCFG = 0x10a, CSR_SSCRATCH = 0x140, CSR_SEPC = 0x141, CSR_SCAUSE = 0x142,
    CSR_STVAL = 0x143, CSR_SIP = 0x144, CSR_SATP = 0x180,
    CSR_MSTATUS = 0x300, CSR_MISA = 0x301, CSR_MEDELEG = 0x302, CSR_MIDELEG = 0x303,
    CSR_MIE = 0x304, CSR_MTVEC = 0x305, CSR_MCOUNTEREN = 0x306, CSR_MENVCFG = 0x30a,
    CSR_MCOUNTINHIBIT = 0x320, CSR_MHPMEVENT3 = 0x323, CSR_MHPMEVENT31 = 0x33f,
    CSR_MSCRATCH = 0x340, CSR_MEPC = 0x341, CSR_MCAUSE = 0x342, CSR_MTVAL = 0x343, CSR_MIP = 0x344,
    CSR_PMPCFG0 = 0x3a0, CSR_PMPCFG15 = 0x3af, CSR_PMPADDR0 = 0x3b0, CSR_PMPADDR63 = 0x3ef,
    CSR_MCYCLE = 0xb00, CSR_MINSTRET = 0xb02, CSR_MHPMCOUNTER3 = 0xb03, CSR_MHPMCOUNTER31 = 0xb1f,
    CSR_MVENDORID = 0xf11, CSR_MARCHID = 0xf12, CSR_MIMPID = 0xf13, CSR_MHARTID = 0xf14,
    CSR_MCONFIGPTR = 0xf15,
};

#define MSTATUS_WRITABLE (MSTATUS_SIE | MSTATUS_MIE | MSTATUS_SPIE | MSTATUS_MPIE | MSTATUS_SPP | \
                          MSTATUS_MPP | MSTATUS_FS | MSTATUS_MPRV | MSTATUS_SUM | MSTATUS_MXR |   \
                          MSTATUS_TVM | MSTATUS_TW | MSTATUS_TSR)
#define SSTATUS_VISIBLE (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_UBE | MSTATUS_SPP | MSTATUS_FS | \
                         MSTATUS_XS | MSTATUS_SUM | MSTATUS_MXR | MSTATUS_UXL | MSTATUS_SD)
#define SSTATUS_WRITABLE (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_FS | MSTATUS_SUM | MSTATUS_MXR)
#define SUPERVISOR_INTERRUPTS (MIP_SSIP | MIP_STIP | MIP_SEIP)
#define ALL_INTERRUPTS (SUPERVISOR_INTERRUPTS | MIP_MSIP | MIP_MTIP | MIP_MEIP)
/* mip bits software may write: the M-mode timer and software bits come from
 * the CLINT. */
#define MIP_WRITABLE (MIP_SSIP | MIP_STIP | MIP_SEIP)
#define MEDELEG_WRITABLE 0xb3ffull    /* all but ecall from M (11) and reserved (10, 14) */
/* clang-format on */

static struct hart_fault illegal(void)
{
    return hart_fault_make(EXCEPTION_ILLEGAL_INSTRUCTION, 0);
}

static uint64_t mstatus_with_summary(uint64_t mstatus)
{
    mstatus &= ~MSTATUS_SD;
    if ((mstatus & MSTATUS_FS) == MSTATUS_FS_DIRTY)
        mstatus |= MSTATUS_SD;
    return mstatus;
}

static bool counter_allowed(const struct hart *hart, uint32_t csr)
{
    unsigned bit = csr & 31;
    const struct hart_state *s = &hart->state;
    if (s->privilege < PRIVILEGE_MACHINE && !((s->mcounteren >> bit) & 1))
        return false;
    if (s->privilege < PRIVILEGE_SUPERVISOR && !((s->scounteren >> bit) & 1))
        return false;
    return true;
}

static bool fpu_enabled(const struct hart *hart)
{
    return (hart->state.mstatus & MSTATUS_FS) != MSTATUS_FS_OFF;
}

/* clang-format off */
struct hart_fault hart_csr_read(struct hart *hart, uint32_t csr, uint64_t *value)
{
    struct hart_state *s = &hart->state;
    if (((csr >> 8) & 3) > s->privilege)
        return illegal();
    switch (csr) {
    case CSR_FFLAGS: if (!fpu_enabled(hart)) return illegal(); *value = s->fcsr & 0x1f; break;
    case CSR_FRM: if (!fpu_enabled(hart)) return illegal(); *value = (s->fcsr >> 5) & 7; break;
    case CSR_FCSR: if (!fpu_enabled(hart)) return illegal(); *value = s->fcsr & 0xff; break;
    case CSR_CYCLE: case CSR_INSTRET:
        if (!counter_allowed(hart, csr)) return illegal();
        *value = s->instret;
        break;
    case CSR_TIME:
        if (!counter_allowed(hart, csr)) return illegal();
        *value = machine_mtime(hart->machine);
        break;
    case CSR_SSTATUS: *value = mstatus_with_summary(s->mstatus) & SSTATUS_VISIBLE; break;
    case CSR_SIE: *value = s->mie & s->mideleg; break;
    case CSR_STVEC: *value = s->stvec; break;
    case CSR_SCOUNTEREN: *value = s->scounteren; break;
    case CSR_SENVCFG: *value = s->senvcfg; break;
    case CSR_SSCRATCH: *value = s->sscratch; break;
    case CSR_SEPC: *value = s->sepc; break;
    case CSR_SCAUSE: *value = s->scause; break;
    case CSR_STVAL: *value = s->stval; break;
    case CSR_SIP: *value = s->mip & s->mideleg; break;
    case CSR_SATP:
        if (s->privilege == PRIVILEGE_SUPERVISOR && (s->mstatus & MSTATUS_TVM)) return illegal();
        *value = s->satp;
        break;
    case CSR_MSTATUS: *value = mstatus_with_summary(s->mstatus); break;
    case CSR_MISA: *value = s->misa; break;
    case CSR_MEDELEG: *value = s->medeleg; break;
    case CSR_MIDELEG: *value = s->mideleg; break;
    case CSR_MIE: *value = s->mie; break;
    case CSR_MTVEC: *value = s->mtvec; break;
    case CSR_MCOUNTEREN: *value = s->mcounteren; break;
    case CSR_MENVCFG: *value = s->menvcfg; break;
    case CSR_MCOUNTINHIBIT: *value = s->mcountinhibit; break;
    case CSR_MSCRATCH: *value = s->mscratch; break;
    case CSR_MEPC: *value = s->mepc; break;
    case CSR_MCAUSE: *value = s->mcause; break;
    case CSR_MTVAL: *value = s->mtval; break;
    case CSR_MIP: *value = s->mip; break;
    case CSR_MCYCLE: case CSR_MINSTRET: *value = s->instret; break;
    case CSR_MVENDORID: case CSR_MARCHID: case CSR_MIMPID: case CSR_MCONFIGPTR: *value = 0; break;
    case CSR_MHARTID: *value = s->mhartid; break;
    default:
        if (csr >= CSR_HPMCOUNTER3 && csr <= CSR_HPMCOUNTER31) {
            if (!counter_allowed(hart, csr)) return illegal();
            *value = 0;
        } else if ((csr >= CSR_MHPMCOUNTER3 && csr <= CSR_MHPMCOUNTER31) ||
                   (csr >= CSR_MHPMEVENT3 && csr <= CSR_MHPMEVENT31)) {
            *value = 0;
        } else if (csr >= CSR_PMPCFG0 && csr <= CSR_PMPCFG15) {
            /* RV64 has only the even pmpcfg registers; we implement 16 entries */
            if (csr & 1) return illegal();
            unsigned index = (csr - CSR_PMPCFG0) / 2;
            *value = index < 2 ? s->pmpcfg[index] : 0;
        } else if (csr >= CSR_PMPADDR0 && csr <= CSR_PMPADDR63) {
            unsigned index = csr - CSR_PMPADDR0;
            *value = index < 16 ? s->pmpaddr[index] : 0;
        } else {
            return illegal();
        }
    }
    return hart_no_fault();
}
/* clang-format on */

static void set_fpu_dirty(struct hart *hart)
{
    hart->state.mstatus |= MSTATUS_FS_DIRTY;
}

static void write_mstatus(struct hart *hart, uint64_t value, uint64_t writable)
{
    struct hart_state *s = &hart->state;
    uint64_t old = s->mstatus;
    uint64_t updated = (old & ~writable) | (value & writable);
    /* MPP is WARL: the reserved value 2 is not kept. */
    if (((updated & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT) == 2)
        updated = (updated & ~MSTATUS_MPP) | (old & MSTATUS_MPP);
    s->mstatus = updated & ~MSTATUS_SD;
    uint64_t translation_bits = MSTATUS_MPRV | MSTATUS_SUM | MSTATUS_MXR | MSTATUS_MPP;
    if ((old ^ s->mstatus) & (MSTATUS_SUM | MSTATUS_MXR))
        hart_tlb_flush_all(hart);
    if ((old ^ s->mstatus) & translation_bits)
        hart_update_data_tlb(hart);
    hart->interrupt_check_needed = true;
}

/* clang-format off */
struct hart_fault hart_csr_write(struct hart *hart, uint32_t csr, uint64_t value)
{
    struct hart_state *s = &hart->state;
    if (((csr >> 8) & 3) > s->privilege || (csr >> 10) == 3)
        return illegal();
    switch (csr) {
    case CSR_FFLAGS:
        if (!fpu_enabled(hart)) return illegal();
        s->fcsr = (s->fcsr & ~0x1fu) | (value & 0x1f);
        set_fpu_dirty(hart);
        break;
    case CSR_FRM:
        if (!fpu_enabled(hart)) return illegal();
        s->fcsr = (s->fcsr & 0x1f) | (uint32_t)((value & 7) << 5);
        set_fpu_dirty(hart);
        break;
    case CSR_FCSR:
        if (!fpu_enabled(hart)) return illegal();
        s->fcsr = (uint32_t)(value & 0xff);
        set_fpu_dirty(hart);
        break;
    case CSR_SSTATUS: write_mstatus(hart, value, SSTATUS_WRITABLE); break;
    case CSR_SIE:
        s->mie = (s->mie & ~s->mideleg) | (value & s->mideleg & ALL_INTERRUPTS);
        hart->interrupt_check_needed = true;
        break;
    case CSR_STVEC: s->stvec = value & ~2ull; break;
    case CSR_SCOUNTEREN: s->scounteren = value & 0xffffffff; break;
    case CSR_SENVCFG: s->senvcfg = 0; break;    /* no optional features */
    case CSR_SSCRATCH: s->sscratch = value; break;
    case CSR_SEPC: s->sepc = value & ~1ull; break;
    case CSR_SCAUSE: s->scause = value; break;
    case CSR_STVAL: s->stval = value; break;
    case CSR_SIP: {
        /* Only SSIP is writable from S-mode (when delegated). */
        uint64_t mask = MIP_SSIP & s->mideleg;
        s->mip = (s->mip & ~mask) | (value & mask);
        hart->interrupt_check_needed = true;
        break;
    }
    case CSR_SATP: {
        if (s->privilege == PRIVILEGE_SUPERVISOR && (s->mstatus & MSTATUS_TVM)) return illegal();
        uint64_t mode = value >> 60;
        /* WARL: only Bare and Sv39 exist; writes of other modes are ignored. */
        if (mode != 0 && mode != 8)
            break;
        s->satp = value & (0xfull << 60 | 0xffffull << 44 | ((1ull << 44) - 1));
        s->satp &= ~(0xffffull << 44);     /* no ASIDs: ASIDLEN is 0 */
        hart_tlb_flush_all(hart);
        break;
    }
    case CSR_MSTATUS: write_mstatus(hart, value, MSTATUS_WRITABLE); break;
    case CSR_MISA: break;                   /* WARL, fixed */
    case CSR_MEDELEG: s->medeleg = value & MEDELEG_WRITABLE; break;
    case CSR_MIDELEG:
        s->mideleg = value & SUPERVISOR_INTERRUPTS;
        hart->interrupt_check_needed = true;
        break;
    case CSR_MIE:
        s->mie = value & ALL_INTERRUPTS;
        hart->interrupt_check_needed = true;
        break;
    case CSR_MTVEC: s->mtvec = value & ~2ull; break;
    case CSR_MCOUNTEREN: s->mcounteren = value & 0xffffffff; break;
    case CSR_MENVCFG: s->menvcfg = 0; break;
    case CSR_MCOUNTINHIBIT: s->mcountinhibit = value & 0xfffffffd; break;
    case CSR_MSCRATCH: s->mscratch = value; break;
    case CSR_MEPC: s->mepc = value & ~1ull; break;
    case CSR_MCAUSE: s->mcause = value; break;
    case CSR_MTVAL: s->mtval = value; break;
    case CSR_MIP:
        s->mip = (s->mip & ~MIP_WRITABLE) | (value & MIP_WRITABLE);
        hart->interrupt_check_needed = true;
        break;
    case CSR_MCYCLE: case CSR_MINSTRET:
        /* one counter serves both; the writing instruction does not count */
        s->instret = value - 1;
        break;
    default:
        if ((csr >= CSR_MHPMCOUNTER3 && csr <= CSR_MHPMCOUNTER31) ||
            (csr >= CSR_MHPMEVENT3 && csr <= CSR_MHPMEVENT31)) {
            break;
        } else if (csr >= CSR_PMPCFG0 && csr <= CSR_PMPCFG15) {
            if (csr & 1) return illegal();
            unsigned index = (csr - CSR_PMPCFG0) / 2;
            if (index < 2)
                s->pmpcfg[index] = value;
        } else if (csr >= CSR_PMPADDR0 && csr <= CSR_PMPADDR63) {
            unsigned index = csr - CSR_PMPADDR0;
            if (index < 16)
                s->pmpaddr[index] = value & ((1ull << 54) - 1);
        } else {
            return illegal();
        }
    }
    return hart_no_fault();
}
/* clang-format on */

void hart_take_trap(struct hart *hart, uint64_t cause, bool interrupt, uint64_t value)
{
    struct hart_state *s = &hart->state;
    uint64_t delegation = interrupt ? s->mideleg : s->medeleg;
    uint64_t cause_value = cause | (interrupt ? 1ull << 63 : 0);
    s->reservation_valid = 0;
    s->waiting_for_interrupt = 0;
    if (s->privilege <= PRIVILEGE_SUPERVISOR && ((delegation >> cause) & 1)) {
        s->scause = cause_value;
        s->sepc = s->pc;
        s->stval = value;
        uint64_t status = s->mstatus & ~(MSTATUS_SPIE | MSTATUS_SIE | MSTATUS_SPP);
        if (s->mstatus & MSTATUS_SIE)
            status |= MSTATUS_SPIE;
        if (s->privilege == PRIVILEGE_SUPERVISOR)
            status |= MSTATUS_SPP;
        s->mstatus = status;
        s->privilege = PRIVILEGE_SUPERVISOR;
        uint64_t base = s->stvec & ~3ull;
        s->pc = (interrupt && (s->stvec & 1)) ? base + 4 * cause : base;
    } else {
        s->mcause = cause_value;
        s->mepc = s->pc;
        s->mtval = value;
        uint64_t status = s->mstatus & ~(MSTATUS_MPIE | MSTATUS_MIE | MSTATUS_MPP);
        if (s->mstatus & MSTATUS_MIE)
            status |= MSTATUS_MPIE;
        status |= (uint64_t)s->privilege << MSTATUS_MPP_SHIFT;
        s->mstatus = status;
        s->privilege = PRIVILEGE_MACHINE;
        uint64_t base = s->mtvec & ~3ull;
        s->pc = (interrupt && (s->mtvec & 1)) ? base + 4 * cause : base;
    }
    hart_update_data_tlb(hart);
}

/* Interrupt priority order from the privileged spec. */
static const uint8_t interrupt_priority[] = {
    INTERRUPT_MACHINE_EXTERNAL,    INTERRUPT_MACHINE_SOFTWARE,    INTERRUPT_MACHINE_TIMER,
    INTERRUPT_SUPERVISOR_EXTERNAL, INTERRUPT_SUPERVISOR_SOFTWARE, INTERRUPT_SUPERVISOR_TIMER,
};

bool hart_check_interrupts(struct hart *hart)
{
    struct hart_state *s = &hart->state;
    hart->interrupt_check_needed = false;
    uint64_t pending = s->mip & s->mie;
    if (!pending)
        return false;
    s->waiting_for_interrupt = 0;
    bool machine_enabled = s->privilege < PRIVILEGE_MACHINE || (s->mstatus & MSTATUS_MIE);
    bool supervisor_enabled = s->privilege < PRIVILEGE_SUPERVISOR ||
                              (s->privilege == PRIVILEGE_SUPERVISOR && (s->mstatus & MSTATUS_SIE));
    uint64_t to_machine = machine_enabled ? pending & ~s->mideleg : 0;
    uint64_t to_supervisor = supervisor_enabled ? pending & s->mideleg : 0;
    /* An interrupt that traps into M beats any that traps into S; the
     * priority order only ranks interrupts with the same destination. */
    uint64_t takeable = to_machine ? to_machine : to_supervisor;
    if (!takeable)
        return false;
    for (unsigned i = 0; i < sizeof interrupt_priority; i++) {
        unsigned number = interrupt_priority[i];
        if ((takeable >> number) & 1) {
            hart_take_trap(hart, number, true, 0);
            return true;
        }
    }
    return false;
}

void hart_return_from_machine(struct hart *hart)
{
    struct hart_state *s = &hart->state;
    unsigned previous = (unsigned)((s->mstatus & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT);
    uint64_t status = s->mstatus & ~(MSTATUS_MIE | MSTATUS_MPP);
    if (s->mstatus & MSTATUS_MPIE)
        status |= MSTATUS_MIE;
    status |= MSTATUS_MPIE;
    if (previous != PRIVILEGE_MACHINE)
        status &= ~MSTATUS_MPRV;
    s->mstatus = status;
    s->privilege = (uint8_t)previous;
    s->pc = s->mepc;
    hart_update_data_tlb(hart);
}

void hart_return_from_supervisor(struct hart *hart)
{
    struct hart_state *s = &hart->state;
    unsigned previous = (s->mstatus & MSTATUS_SPP) ? PRIVILEGE_SUPERVISOR : PRIVILEGE_USER;
    uint64_t status = s->mstatus & ~(MSTATUS_SIE | MSTATUS_SPP | MSTATUS_MPRV);
    if (s->mstatus & MSTATUS_SPIE)
        status |= MSTATUS_SIE;
    status |= MSTATUS_SPIE;
    s->mstatus = status;
    s->privilege = (uint8_t)previous;
    s->pc = s->sepc;
    hart_update_data_tlb(hart);
}
