/* The interpreter: runs decoded instructions with threaded dispatch.
 *
 * Instructions are decoded once per RAM page into decode_cache slots (see
 * decode_cache.h) and dispatched with computed goto. The fast paths keep pc
 * and the position in the decoded page in locals; anything that can trap,
 * touch a device or change translation goes through a slow path that syncs
 * the architectural state first. */
#include "hart.h"

#include <string.h>

#include "hart_decode.h"
#include "machine_devices.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

void hart_reset(struct hart *hart, uint64_t start_pc)
{
    uint64_t hart_id = hart->state.mhartid;
    memset(&hart->state, 0, sizeof hart->state);
    struct hart_state *s = &hart->state;
    s->mhartid = hart_id;
    s->pc = start_pc;
    s->privilege = PRIVILEGE_MACHINE;
    /* RV64 (MXL=2) with A C D F I M S U */
    s->misa = (2ull << 62) | (1u << 0) | (1u << 2) | (1u << 3) | (1u << 5) | (1u << 8) | (1u << 12) | (1u << 18) |
              (1u << 20);
    s->mstatus = (2ull << 32) | (2ull << 34); /* UXL = SXL = 64 bits */
    hart_tlb_flush_all(hart);
    hart_update_data_tlb(hart);
    hart->leave_run_loop = false;
    hart->interrupt_check_needed = true;
}

/* The label addresses of hart_run's dispatch table, published by a call
 * hart_run(NULL, 0): decoded pages are set up outside hart_run. */
static const void *const *dispatch_table;

static const void *const *get_dispatch_table(void)
{
    if (!dispatch_table)
        hart_run(NULL, 0);
    return dispatch_table;
}

void hart_decoded_page_reset(struct decoded_page *page)
{
    const void *const *table = get_dispatch_table();
    for (unsigned i = 0; i < DECODED_SLOTS_PER_PAGE; i++)
        page->slots[i] = (struct decoded_instruction){ .handler = table[HART_OP_DECODE] };
    for (unsigned i = 0; i < DECODED_SENTINEL_SLOTS; i++)
        page->slots[DECODED_SLOTS_PER_PAGE + i] = (struct decoded_instruction){ .handler = table[HART_OP_PAGE_END] };
}

void hart_init(struct hart *hart, struct machine *machine, uint64_t hart_id)
{
    memset(hart, 0, sizeof *hart);
    hart->machine = machine;
    hart->state.mhartid = hart_id;
    const void *const *table = get_dispatch_table();
    for (unsigned i = 0; i < 3; i++)
        hart->cross_page_scratch[i].handler = table[HART_OP_PAGE_END];
    hart_reset(hart, MACHINE_RAM_BASE);
}

static void install_decoded(struct decoded_instruction *insn, const struct hart_decoded_fields *fields,
                            const void *const *table)
{
    insn->handler = table[fields->operation];
    insn->immediate = fields->immediate;
    insn->rd = fields->rd;
    insn->rs1 = fields->rs1;
    insn->rs2 = fields->rs2;
    insn->advance = (uint8_t)(fields->length * 8);
}

static struct hart_fault execute_atomic(struct hart *hart, const struct decoded_instruction *insn)
{
    struct hart_state *s = &hart->state;
    uint32_t raw = (uint32_t)insn->immediate;
    uint32_t funct5 = raw >> 27;
    unsigned size = ((raw >> 12) & 7) == 2 ? 4 : 8;
    uint64_t address = s->x[insn->rs1];
    uint64_t result;

    if (funct5 == 0x02) { /* LR */
        if (insn->rs2 != 0)
            return hart_fault_make(EXCEPTION_ILLEGAL_INSTRUCTION, raw);
        if (address & (size - 1))
            return hart_fault_make(EXCEPTION_LOAD_MISALIGNED, address);
        uint64_t value;
        struct hart_fault fault = hart_load(hart, address, size, &value);
        if (fault.cause != HART_NO_FAULT)
            return fault;
        s->reservation_valid = 1;
        s->reservation_address = address;
        s->x[insn->rd] = size == 4 ? (uint64_t)(int64_t)(int32_t)value : value;
        return hart_no_fault();
    }
    if (address & (size - 1))
        return hart_fault_make(EXCEPTION_STORE_MISALIGNED, address);
    if (funct5 == 0x03) { /* SC */
        bool reserved = s->reservation_valid && s->reservation_address == address;
        s->reservation_valid = 0;
        if (!reserved) {
            s->x[insn->rd] = 1;
            return hart_no_fault();
        }
        uint8_t *host;
        struct hart_fault fault = hart_translate_for_atomic(hart, address, size, &host);
        if (fault.cause != HART_NO_FAULT)
            return fault;
        memcpy(host, &s->x[insn->rs2], size);
        s->x[insn->rd] = 0;
        return hart_no_fault();
    }

    uint8_t *host;
    struct hart_fault fault = hart_translate_for_atomic(hart, address, size, &host);
    if (fault.cause != HART_NO_FAULT)
        return fault;
    uint64_t old = 0, operand = s->x[insn->rs2];
    memcpy(&old, host, size);
    if (size == 4) {
        old = (uint64_t)(int64_t)(int32_t)old;
        operand = (uint64_t)(int64_t)(int32_t)operand;
    }
    /* clang-format off */
    switch (funct5) {
    case 0x01: result = operand; break;                                    /* SWAP */
    case 0x00: result = old + operand; break;                              /* ADD */
    case 0x04: result = old ^ operand; break;                              /* XOR */
    case 0x0c: result = old & operand; break;                              /* AND */
    case 0x08: result = old | operand; break;                              /* OR */
    case 0x10: result = (int64_t)old < (int64_t)operand ? old : operand; break;   /* MIN */
    case 0x14: result = (int64_t)old > (int64_t)operand ? old : operand; break;   /* MAX */
    case 0x18: case 0x1c: {                                                /* MINU, MAXU */
        uint64_t a = size == 4 ? (uint32_t)old : old;
        uint64_t b = size == 4 ? (uint32_t)operand : operand;
        bool take_old = funct5 == 0x18 ? a < b : a > b;
        result = take_old ? old : operand;
        break;
    }
    default:
        return hart_fault_make(EXCEPTION_ILLEGAL_INSTRUCTION, raw);
    }
    /* clang-format on */
    memcpy(host, &result, size);
    s->x[insn->rd] = old;
    return hart_no_fault();
}

static uint64_t multiply_high_signed(int64_t a, int64_t b)
{
    return (uint64_t)(((__int128)a * (__int128)b) >> 64);
}

static uint64_t multiply_high_signed_unsigned(int64_t a, uint64_t b)
{
    return (uint64_t)(((__int128)a * (__int128)b) >> 64);
}

static uint64_t multiply_high_unsigned(uint64_t a, uint64_t b)
{
    return (uint64_t)(((unsigned __int128)a * (unsigned __int128)b) >> 64);
}

static uint64_t sign_extend_word(uint64_t value)
{
    return (uint64_t)(int64_t)(int32_t)(uint32_t)value;
}

uint64_t hart_run(struct hart *hart, uint64_t budget)
{
#define LABEL_ADDRESS(name) &&op_##name,
    static const void *const dispatch[HART_OPERATION_COUNT] = { HART_OPERATIONS(LABEL_ADDRESS) };
#undef LABEL_ADDRESS
    if (!hart) {
        dispatch_table = dispatch;
        return 0;
    }
    struct hart_state *s = &hart->state;
    uint64_t *const x = s->x;
    uint64_t remaining = budget;
    uint64_t trapped = 0;
    uint64_t instret_base = s->instret;
    struct decoded_instruction *insn;
    struct decoded_instruction *slots = NULL;
    const uint8_t *page_host = NULL;
    uint64_t page_base = 1; /* virtual address of the decoded page; 1 = none */
    struct hart_fault fault;
    /* The pc is not kept per instruction: it follows from the slot's
     * address, pc = (address of insn >> 3) + pc_bias, since each 16-byte
     * slot stands for 2 bytes of code. `pc` holds an explicit pc only on
     * the way to refetch or out of the loop. */
    uint64_t pc_bias = 0;
    uint64_t pc;
    /* Only traps, xRET and CSR writes change the data TLB set, and each of
     * them goes through refetch or leaves, where this is reloaded. */
    const struct hart_tlb_set *data_tlb = hart->data_tlb;

    hart->leave_run_loop = false;
    if (hart->interrupt_check_needed || (s->mip & s->mie))
        hart_check_interrupts(hart);
    if (s->waiting_for_interrupt || budget == 0)
        return 0;
    pc = s->pc;

/* clang-format off */
#define CONSUMED (budget - remaining)
#define PC() ((uint64_t)((uintptr_t)insn >> 3) + pc_bias)
#define LENGTH() (insn->advance >> 3)
#define SYNC() do { s->pc = PC(); s->instret = instret_base + CONSUMED - trapped; } while (0)
#define DISPATCH() goto *insn->handler
#define ADVANCE(bytes) (insn = (struct decoded_instruction *)((char *)insn + (bytes)))
#define NEXT() do {                                          \
        ADVANCE(insn->advance);                              \
        if (unlikely(--remaining == 0))                      \
            goto leave;                                      \
        DISPATCH();                                          \
    } while (0)
    /* After a slow path the decoded page may have been reset (a store hit
     * it), so the advance was saved before and leave_run_loop is checked
     * before dispatching again. */
#define NEXT_AFTER_SLOW_PATH(advance) do {                   \
        ADVANCE(advance);                                    \
        if (unlikely(--remaining == 0) || unlikely(hart->leave_run_loop)) \
            goto leave;                                      \
        DISPATCH();                                          \
    } while (0)
#define RETIRE_AND_LEAVE(advance) do { ADVANCE(advance); remaining--; goto leave; } while (0)
#define JUMP(target) do {                                    \
        uint64_t target_ = (target);                         \
        if (likely((target_ & ~(uint64_t)(GUEST_PAGE_SIZE - 1)) == page_base)) { \
            insn = slots + ((target_ & (GUEST_PAGE_SIZE - 1)) >> 1); \
            if (unlikely(--remaining == 0))                  \
                goto leave;                                  \
            DISPATCH();                                      \
        }                                                    \
        pc = target_;                                        \
        if (unlikely(--remaining == 0))                      \
            goto leave_at_pc;                                \
        goto refetch;                                        \
    } while (0)
#define BRANCH(condition) do {                               \
        if (condition)                                       \
            JUMP(PC() + (int64_t)insn->immediate);           \
        NEXT();                                              \
    } while (0)
#define RAISE(cause, value) do { fault = hart_fault_make((cause), (value)); goto take_fault; } while (0)
#define LOAD(type) do {                                                         \
        uint64_t address_ = x[insn->rs1] + (int64_t)insn->immediate;            \
        const struct hart_tlb_entry *entry_ =                                   \
            &data_tlb->read[(address_ >> GUEST_PAGE_SHIFT) & (HART_TLB_ENTRIES - 1)]; \
        /* One compare checks the page and the alignment: a misaligned     \
         * address keeps low bits the tag never has, and takes the slow path. */ \
        if (likely(entry_->page_address ==                                      \
                   (address_ & (~(uint64_t)(GUEST_PAGE_SIZE - 1) | (sizeof(type) - 1))))) { \
            type value_;                                                        \
            memcpy(&value_, (const void *)(uintptr_t)(address_ + entry_->addend), sizeof(type)); \
            x[insn->rd] = (uint64_t)(int64_t)value_;                            \
            NEXT();                                                             \
        }                                                                       \
        unsigned advance_ = insn->advance;                                      \
        uint64_t value_ = 0;                                                    \
        SYNC();                                                                 \
        fault = hart_load(hart, address_, sizeof(type), &value_);               \
        if (fault.cause != HART_NO_FAULT)                                       \
            goto take_fault;                                                    \
        x[insn->rd] = (uint64_t)(int64_t)(type)value_;                          \
        NEXT_AFTER_SLOW_PATH(advance_);                                         \
    } while (0)
#define STORE(type) do {                                                        \
        uint64_t address_ = x[insn->rs1] + (int64_t)insn->immediate;            \
        const struct hart_tlb_entry *entry_ =                                   \
            &data_tlb->write[(address_ >> GUEST_PAGE_SHIFT) & (HART_TLB_ENTRIES - 1)]; \
        if (likely(entry_->page_address ==                                      \
                   (address_ & (~(uint64_t)(GUEST_PAGE_SIZE - 1) | (sizeof(type) - 1))))) { \
            type value_ = (type)x[insn->rs2];                                   \
            memcpy((void *)(uintptr_t)(address_ + entry_->addend), &value_, sizeof(type)); \
            NEXT();                                                             \
        }                                                                       \
        unsigned advance_ = insn->advance;                                      \
        SYNC();                                                                 \
        fault = hart_store(hart, address_, sizeof(type), x[insn->rs2]);         \
        if (fault.cause != HART_NO_FAULT)                                       \
            goto take_fault;                                                    \
        NEXT_AFTER_SLOW_PATH(advance_);                                         \
    } while (0)

refetch: {
        data_tlb = hart->data_tlb;
        uint64_t virtual_page = pc >> GUEST_PAGE_SHIFT;
        struct hart_fetch_tlb_entry *entry =
            &hart->tlb[s->privilege].fetch[virtual_page & (HART_TLB_ENTRIES - 1)];
        if (unlikely(entry->page != virtual_page)) {
            s->pc = pc;
            s->instret = instret_base + CONSUMED - trapped;
            fault = hart_fetch_translate(hart, pc, &entry);
            if (fault.cause != HART_NO_FAULT)
                goto take_synced_fault;
        }
        slots = entry->decoded->slots;
        page_host = hart->machine->ram.host + (entry->physical_page_index << GUEST_PAGE_SHIFT);
        page_base = pc & ~(uint64_t)(GUEST_PAGE_SIZE - 1);
        insn = &slots[(pc & (GUEST_PAGE_SIZE - 1)) >> 1];
        pc_bias = page_base - ((uintptr_t)slots >> 3);
        DISPATCH();
    }

take_fault:
    SYNC();
take_synced_fault:
    hart_take_trap(hart, (uint64_t)fault.cause, false, fault.value);
    pc = s->pc;
    trapped++;
    if (--remaining == 0)
        goto leave_at_pc;
    goto refetch;

leave:
    SYNC();
    return CONSUMED;
leave_at_pc:
    s->pc = pc;
    s->instret = instret_base + CONSUMED - trapped;
    return CONSUMED;

op_DECODE: {
        uint64_t offset = PC() & (GUEST_PAGE_SIZE - 1);
        uint16_t low;
        memcpy(&low, page_host + offset, 2);
        struct hart_decoded_fields fields;
        if ((low & 3) != 3) {
            hart_decode(hart_expand_compressed(low), 2, low, &fields);
        } else if (offset == GUEST_PAGE_SIZE - 2) {
            /* The upper half lives on the next page, whose mapping may
             * change independently: fetch and decode it every time. */
            fields = (struct hart_decoded_fields){ .operation = HART_OP_CROSS_PAGE, .length = 4 };
        } else {
            uint32_t word;
            memcpy(&word, page_host + offset, 4);
            hart_decode(word, 4, word, &fields);
        }
        install_decoded(insn, &fields, dispatch);
        DISPATCH();
    }
op_PAGE_END:
    pc = PC();
    goto refetch;
op_CROSS_PAGE: {
        uint16_t low, high;
        uint64_t here = PC();
        memcpy(&low, page_host + (here & (GUEST_PAGE_SIZE - 1)), 2);
        SYNC();
        fault = hart_fetch_parcel(hart, here + 2, &high);
        if (fault.cause != HART_NO_FAULT)
            goto take_fault;
        uint32_t word = (uint32_t)low | (uint32_t)high << 16;
        struct hart_decoded_fields fields;
        hart_decode(word, 4, word, &fields);
        insn = &hart->cross_page_scratch[0];
        install_decoded(insn, &fields, dispatch);
        pc_bias = here - ((uintptr_t)insn >> 3);
        page_base = 1;            /* jumps from here always re-fetch */
        DISPATCH();
    }
op_ILLEGAL:
    RAISE(EXCEPTION_ILLEGAL_INSTRUCTION, (uint32_t)insn->immediate);

op_LUI: x[insn->rd] = (uint64_t)(int64_t)insn->immediate; NEXT();
op_AUIPC: x[insn->rd] = PC() + (int64_t)insn->immediate; NEXT();
op_JAL: {
        uint64_t link = PC() + LENGTH();
        uint64_t target = PC() + (int64_t)insn->immediate;
        x[insn->rd] = link;
        JUMP(target);
    }
op_JALR: {
        uint64_t target = (x[insn->rs1] + (int64_t)insn->immediate) & ~1ull;
        x[insn->rd] = PC() + LENGTH();
        JUMP(target);
    }
op_BEQ: BRANCH(x[insn->rs1] == x[insn->rs2]);
op_BNE: BRANCH(x[insn->rs1] != x[insn->rs2]);
op_BLT: BRANCH((int64_t)x[insn->rs1] < (int64_t)x[insn->rs2]);
op_BGE: BRANCH((int64_t)x[insn->rs1] >= (int64_t)x[insn->rs2]);
op_BLTU: BRANCH(x[insn->rs1] < x[insn->rs2]);
op_BGEU: BRANCH(x[insn->rs1] >= x[insn->rs2]);

op_LB: LOAD(int8_t);
op_LH: LOAD(int16_t);
op_LW: LOAD(int32_t);
op_LD: LOAD(uint64_t);
op_LBU: LOAD(uint8_t);
op_LHU: LOAD(uint16_t);
op_LWU: LOAD(uint32_t);
op_SB: STORE(uint8_t);
op_SH: STORE(uint16_t);
op_SW: STORE(uint32_t);
op_SD: STORE(uint64_t);

op_ADDI: x[insn->rd] = x[insn->rs1] + (int64_t)insn->immediate; NEXT();
op_SLTI: x[insn->rd] = (int64_t)x[insn->rs1] < (int64_t)insn->immediate; NEXT();
op_SLTIU: x[insn->rd] = x[insn->rs1] < (uint64_t)(int64_t)insn->immediate; NEXT();
op_XORI: x[insn->rd] = x[insn->rs1] ^ (uint64_t)(int64_t)insn->immediate; NEXT();
op_ORI: x[insn->rd] = x[insn->rs1] | (uint64_t)(int64_t)insn->immediate; NEXT();
op_ANDI: x[insn->rd] = x[insn->rs1] & (uint64_t)(int64_t)insn->immediate; NEXT();
op_SLLI: x[insn->rd] = x[insn->rs1] << insn->immediate; NEXT();
op_SRLI: x[insn->rd] = x[insn->rs1] >> insn->immediate; NEXT();
op_SRAI: x[insn->rd] = (uint64_t)((int64_t)x[insn->rs1] >> insn->immediate); NEXT();
op_ADDIW: x[insn->rd] = sign_extend_word(x[insn->rs1] + (int64_t)insn->immediate); NEXT();
op_SLLIW: x[insn->rd] = sign_extend_word((uint32_t)x[insn->rs1] << insn->immediate); NEXT();
op_SRLIW: x[insn->rd] = sign_extend_word((uint32_t)x[insn->rs1] >> insn->immediate); NEXT();
op_SRAIW: x[insn->rd] = (uint64_t)(int64_t)((int32_t)x[insn->rs1] >> insn->immediate); NEXT();

op_ADD: x[insn->rd] = x[insn->rs1] + x[insn->rs2]; NEXT();
op_SUB: x[insn->rd] = x[insn->rs1] - x[insn->rs2]; NEXT();
op_SLL: x[insn->rd] = x[insn->rs1] << (x[insn->rs2] & 63); NEXT();
op_SLT: x[insn->rd] = (int64_t)x[insn->rs1] < (int64_t)x[insn->rs2]; NEXT();
op_SLTU: x[insn->rd] = x[insn->rs1] < x[insn->rs2]; NEXT();
op_XOR: x[insn->rd] = x[insn->rs1] ^ x[insn->rs2]; NEXT();
op_SRL: x[insn->rd] = x[insn->rs1] >> (x[insn->rs2] & 63); NEXT();
op_SRA: x[insn->rd] = (uint64_t)((int64_t)x[insn->rs1] >> (x[insn->rs2] & 63)); NEXT();
op_OR: x[insn->rd] = x[insn->rs1] | x[insn->rs2]; NEXT();
op_AND: x[insn->rd] = x[insn->rs1] & x[insn->rs2]; NEXT();
op_ADDW: x[insn->rd] = sign_extend_word(x[insn->rs1] + x[insn->rs2]); NEXT();
op_SUBW: x[insn->rd] = sign_extend_word(x[insn->rs1] - x[insn->rs2]); NEXT();
op_SLLW: x[insn->rd] = sign_extend_word((uint32_t)x[insn->rs1] << (x[insn->rs2] & 31)); NEXT();
op_SRLW: x[insn->rd] = sign_extend_word((uint32_t)x[insn->rs1] >> (x[insn->rs2] & 31)); NEXT();
op_SRAW: x[insn->rd] = (uint64_t)(int64_t)((int32_t)x[insn->rs1] >> (x[insn->rs2] & 31)); NEXT();

op_MUL: x[insn->rd] = x[insn->rs1] * x[insn->rs2]; NEXT();
op_MULH: x[insn->rd] = multiply_high_signed((int64_t)x[insn->rs1], (int64_t)x[insn->rs2]); NEXT();
op_MULHSU: x[insn->rd] = multiply_high_signed_unsigned((int64_t)x[insn->rs1], x[insn->rs2]); NEXT();
op_MULHU: x[insn->rd] = multiply_high_unsigned(x[insn->rs1], x[insn->rs2]); NEXT();
op_DIV: {
        int64_t a = (int64_t)x[insn->rs1], b = (int64_t)x[insn->rs2];
        if (b == 0)
            x[insn->rd] = UINT64_MAX;
        else if (a == INT64_MIN && b == -1)
            x[insn->rd] = (uint64_t)a;
        else
            x[insn->rd] = (uint64_t)(a / b);
        NEXT();
    }
op_DIVU: {
        uint64_t a = x[insn->rs1], b = x[insn->rs2];
        x[insn->rd] = b == 0 ? UINT64_MAX : a / b;
        NEXT();
    }
op_REM: {
        int64_t a = (int64_t)x[insn->rs1], b = (int64_t)x[insn->rs2];
        if (b == 0)
            x[insn->rd] = (uint64_t)a;
        else if (a == INT64_MIN && b == -1)
            x[insn->rd] = 0;
        else
            x[insn->rd] = (uint64_t)(a % b);
        NEXT();
    }
op_REMU: {
        uint64_t a = x[insn->rs1], b = x[insn->rs2];
        x[insn->rd] = b == 0 ? a : a % b;
        NEXT();
    }
op_MULW: x[insn->rd] = sign_extend_word(x[insn->rs1] * x[insn->rs2]); NEXT();
op_DIVW: {
        int32_t a = (int32_t)x[insn->rs1], b = (int32_t)x[insn->rs2];
        int32_t result;
        if (b == 0)
            result = -1;
        else if (a == INT32_MIN && b == -1)
            result = a;
        else
            result = a / b;
        x[insn->rd] = (uint64_t)(int64_t)result;
        NEXT();
    }
op_DIVUW: {
        uint32_t a = (uint32_t)x[insn->rs1], b = (uint32_t)x[insn->rs2];
        x[insn->rd] = sign_extend_word(b == 0 ? UINT32_MAX : a / b);
        NEXT();
    }
op_REMW: {
        int32_t a = (int32_t)x[insn->rs1], b = (int32_t)x[insn->rs2];
        int32_t result;
        if (b == 0)
            result = a;
        else if (a == INT32_MIN && b == -1)
            result = 0;
        else
            result = a % b;
        x[insn->rd] = (uint64_t)(int64_t)result;
        NEXT();
    }
op_REMUW: {
        uint32_t a = (uint32_t)x[insn->rs1], b = (uint32_t)x[insn->rs2];
        x[insn->rd] = sign_extend_word(b == 0 ? a : a % b);
        NEXT();
    }

op_FENCE:
op_FENCE_I:           /* stores already dropped any stale decoded code */
    NEXT();

op_ECALL:
    RAISE(s->privilege == PRIVILEGE_USER ? EXCEPTION_ECALL_FROM_USER
          : s->privilege == PRIVILEGE_SUPERVISOR ? EXCEPTION_ECALL_FROM_SUPERVISOR
          : EXCEPTION_ECALL_FROM_MACHINE, 0);
op_EBREAK:
    RAISE(EXCEPTION_BREAKPOINT, PC());
op_MRET:
    if (s->privilege != PRIVILEGE_MACHINE)
        RAISE(EXCEPTION_ILLEGAL_INSTRUCTION, (uint32_t)insn->immediate);
    SYNC();
    hart_return_from_machine(hart);
    pc = s->pc;
    remaining--;
    goto leave_at_pc;               /* interrupts may now be enabled */
op_SRET:
    if (s->privilege < PRIVILEGE_SUPERVISOR ||
        (s->privilege == PRIVILEGE_SUPERVISOR && (s->mstatus & MSTATUS_TSR)))
        RAISE(EXCEPTION_ILLEGAL_INSTRUCTION, (uint32_t)insn->immediate);
    SYNC();
    hart_return_from_supervisor(hart);
    pc = s->pc;
    remaining--;
    goto leave_at_pc;
op_WFI:
    if (s->privilege == PRIVILEGE_USER ||
        (s->privilege == PRIVILEGE_SUPERVISOR && (s->mstatus & MSTATUS_TW)))
        RAISE(EXCEPTION_ILLEGAL_INSTRUCTION, (uint32_t)insn->immediate);
    if (!(s->mip & s->mie))
        s->waiting_for_interrupt = 1;
    RETIRE_AND_LEAVE(insn->advance);
op_SFENCE_VMA:
    if (s->privilege == PRIVILEGE_USER ||
        (s->privilege == PRIVILEGE_SUPERVISOR && (s->mstatus & MSTATUS_TVM)))
        RAISE(EXCEPTION_ILLEGAL_INSTRUCTION, (uint32_t)insn->immediate);
    hart_tlb_flush_all(hart);
    RETIRE_AND_LEAVE(insn->advance);

    {
        enum hart_operation operation;
op_CSRRW: operation = HART_OP_CSRRW; goto csr_access;
op_CSRRS: operation = HART_OP_CSRRS; goto csr_access;
op_CSRRC: operation = HART_OP_CSRRC; goto csr_access;
op_CSRRWI: operation = HART_OP_CSRRWI; goto csr_access;
op_CSRRSI: operation = HART_OP_CSRRSI; goto csr_access;
op_CSRRCI: operation = HART_OP_CSRRCI; goto csr_access;
csr_access:;
        bool immediate_form = operation >= HART_OP_CSRRWI;
        bool swap = operation == HART_OP_CSRRW || operation == HART_OP_CSRRWI;
        uint32_t csr = (uint32_t)insn->immediate >> 20;
        uint64_t source = immediate_form ? insn->rs1 : x[insn->rs1];
        /* CSRRW with rd=x0 must not read (no read side effects); CSRRS/C
         * with rs1=x0 must not write. */
        bool do_read = !(swap && insn->rd == 32);
        bool do_write = swap || insn->rs1 != 0;
        unsigned advance = insn->advance;
        uint64_t old = 0;
        SYNC();
        if (do_read) {
            fault = hart_csr_read(hart, csr, &old);
            if (fault.cause != HART_NO_FAULT)
                RAISE(EXCEPTION_ILLEGAL_INSTRUCTION, (uint32_t)insn->immediate);
        }
        if (do_write) {
            uint64_t updated = swap ? source
                : (operation == HART_OP_CSRRS || operation == HART_OP_CSRRSI) ? old | source
                : old & ~source;
            fault = hart_csr_write(hart, csr, updated);
            if (fault.cause != HART_NO_FAULT)
                RAISE(EXCEPTION_ILLEGAL_INSTRUCTION, (uint32_t)insn->immediate);
        }
        x[insn->rd] = old;
        if (do_write) {
            /* The write may have changed translation, interrupt enables or
             * the counters: pick everything up again from the top. */
            instret_base = s->instret - (CONSUMED - trapped);
            RETIRE_AND_LEAVE(advance);
        }
        NEXT_AFTER_SLOW_PATH(advance);
    }

op_ATOMIC: {
        unsigned advance = insn->advance;
        SYNC();
        fault = execute_atomic(hart, insn);
        if (fault.cause != HART_NO_FAULT)
            goto take_fault;
        NEXT_AFTER_SLOW_PATH(advance);
    }
op_FLOATING_POINT: {
        unsigned advance = insn->advance;
        SYNC();
        fault = hart_fpu_execute(hart, (uint32_t)insn->immediate);
        if (fault.cause != HART_NO_FAULT) {
            /* tval of an illegal compressed instruction is its own 16 bits,
             * not the expansion the FPU saw. */
            if (fault.cause == EXCEPTION_ILLEGAL_INSTRUCTION && advance == 16) {
                uint16_t parcel;
                memcpy(&parcel, page_host + (PC() & (GUEST_PAGE_SIZE - 1)), 2);
                fault.value = parcel;
            }
            goto take_fault;
        }
        NEXT_AFTER_SLOW_PATH(advance);
    }
    /* clang-format on */
}

void hart_save(const struct hart *hart, struct state_writer *writer)
{
    const struct hart_state *s = &hart->state;
    state_section_begin(writer, 0x48415254 /* "HART" */, 1);
    for (unsigned i = 0; i < 32; i++)
        state_put_u64(writer, s->x[i]);
    for (unsigned i = 0; i < 32; i++)
        state_put_u64(writer, s->f[i]);
    state_put_u64(writer, s->pc);
    state_put_u32(writer, s->fcsr);
    state_put_u8(writer, s->privilege);
    state_put_u8(writer, s->waiting_for_interrupt);
    state_put_u8(writer, s->reservation_valid);
    state_put_u64(writer, s->reservation_address);
    state_put_u64(writer, s->instret);
    state_put_u64(writer, s->mhartid);
    const uint64_t csrs[] = { s->mstatus, s->misa,          s->medeleg,    s->mideleg,  s->mie,       s->mip,
                              s->mtvec,   s->mscratch,      s->mepc,       s->mcause,   s->mtval,     s->mcounteren,
                              s->menvcfg, s->mcountinhibit, s->stvec,      s->sscratch, s->sepc,      s->scause,
                              s->stval,   s->satp,          s->scounteren, s->senvcfg,  s->pmpcfg[0], s->pmpcfg[1] };
    for (unsigned i = 0; i < sizeof csrs / sizeof csrs[0]; i++)
        state_put_u64(writer, csrs[i]);
    for (unsigned i = 0; i < 16; i++)
        state_put_u64(writer, s->pmpaddr[i]);
    state_section_end(writer);
}

void hart_state_load(struct hart_state *state, struct state_reader *reader)
{
    struct hart_state loaded;
    memset(&loaded, 0, sizeof loaded);
    struct hart_state *s = &loaded;
    state_section_open(reader, 0x48415254, 1, "hart");
    for (unsigned i = 0; i < 32; i++)
        s->x[i] = state_get_u64(reader);
    for (unsigned i = 0; i < 32; i++)
        s->f[i] = state_get_u64(reader);
    s->pc = state_get_u64(reader);
    s->fcsr = state_get_u32(reader);
    s->privilege = state_get_u8(reader);
    s->waiting_for_interrupt = state_get_u8(reader);
    s->reservation_valid = state_get_u8(reader);
    s->reservation_address = state_get_u64(reader);
    s->instret = state_get_u64(reader);
    s->mhartid = state_get_u64(reader);
    uint64_t *const csrs[] = { &s->mstatus,    &s->misa,       &s->medeleg,   &s->mideleg,       &s->mie,
                               &s->mip,        &s->mtvec,      &s->mscratch,  &s->mepc,          &s->mcause,
                               &s->mtval,      &s->mcounteren, &s->menvcfg,   &s->mcountinhibit, &s->stvec,
                               &s->sscratch,   &s->sepc,       &s->scause,    &s->stval,         &s->satp,
                               &s->scounteren, &s->senvcfg,    &s->pmpcfg[0], &s->pmpcfg[1] };
    for (unsigned i = 0; i < sizeof csrs / sizeof csrs[0]; i++)
        *csrs[i] = state_get_u64(reader);
    for (unsigned i = 0; i < 16; i++)
        s->pmpaddr[i] = state_get_u64(reader);
    state_section_close(reader, "hart");
    if (reader->failed)
        return;
    if (s->x[0] != 0 ||
        (s->privilege != PRIVILEGE_USER && s->privilege != PRIVILEGE_SUPERVISOR && s->privilege != PRIVILEGE_MACHINE) ||
        (s->pc & 1) || s->fcsr > 0xff || s->waiting_for_interrupt > 1 || s->reservation_valid > 1) {
        state_reader_fail(reader, "hart state is inconsistent (x0, privilege, pc or fcsr)");
        return;
    }
    *state = loaded;
}

void hart_set_state(struct hart *hart, const struct hart_state *state)
{
    hart->state = *state;
    hart_tlb_flush_all(hart);
    hart_update_data_tlb(hart);
    hart->interrupt_check_needed = true;
}
