/* Sv39 virtual memory. M-mode builds page tables:
 *   root[0]  gigapage  VA 0x0         -> PA 0x0          RW   (devices: UART)
 *   root[2]  gigapage  VA 0x80000000  -> PA 0x80000000   RWX  (code, data, stack)
 *   root[4]  -> l1:
 *     l1[0] -> l0 (4 KiB pages at VA 0x1_0000_0000 + n * 0x1000):
 *       l0[0]  data_page   RW, A = D = 0 (hardware sets them)
 *       l0[1]  data_page   R
 *       l0[2]  invalid
 *       l0[3]  data_page   RW U
 *       l0[4]  data_page   X only
 *       l0[5]  exec_page   RX
 *       l0[6]  exec_page   R (not executable)
 *       l0[7]  data_page   RW (then data_page2, for sfence.vma)
 *       l0[8]  exec_page   RX U
 *       l0[9]  data_page   W without R (reserved: faults)
 *       l0[10] data_page2  RW U
 *       l0[11] data_page   RW with N (bit 63) set: faults without Svnapot
 *       l0[12] data_page   RW with PBMT = 1: faults without Svpbmt
 *       l0[13] a pointer (V only) at the last level: faults
 *       l0[14] data_page   RW with reserved bit 54 set: faults
 *       l0[15] exec_page   RX, A = 0 (a fetch sets A)
 *       l0[16], l0[17]  straddle_pages RX, RX
 *       l0[18], l0[19]  straddle_pages RX, R (the second half not executable)
 *   root2: like root, but its l0[7] maps data_page2 (switching satp)
 *     l1[1]  megapage  VA 0x1_0020_0000 -> PA 0x8040_0000  RW
 *     l1[2]  megapage  VA 0x1_0040_0000 -> PA 0x8040_1000  (misaligned: faults)
 * then checks satp's WARL behaviour, MPRV, and in S-mode (page faults
 * delegated to S): loads/stores/fetches through the mappings, page faults
 * with stval, SUM, MXR, the U bit from S and U, A/D updates, superpages,
 * non-canonical addresses, reserved PTE bits, sfence.vma after a PTE
 * change, and code patched through one mapping and run through another. */
#include "test_macros.h"

#define PTE_V (1 << 0)
#define PTE_R (1 << 1)
#define PTE_W (1 << 2)
#define PTE_X (1 << 3)
#define PTE_U (1 << 4)
#define PTE_G (1 << 5)
#define PTE_A (1 << 6)
#define PTE_D (1 << 7)
#define SATP_SV39 (8 << 60)
#define MSTATUS_SPP  (1 << 8)
#define MSTATUS_MPRV (1 << 17)
#define MSTATUS_SUM  (1 << 18)
#define MSTATUS_MXR  (1 << 19)

#define VA_BASE      0x100000000
#define VA_PAGE(n)   (VA_BASE + (n) * 0x1000)
#define VA_MEGA      0x100200000
#define VA_MEGA_BAD  0x100400000
#define PA_MEGA      0x80400000

#define DATA_0 0x1111222233334444
#define DATA2_0 0x5555666677778888

    .section .bss
    .balign 4096
root_table:     .skip 4096
l1_table:       .skip 4096
l0_table:       .skip 4096
sv48_root:      .skip 4096
sv57_root:      .skip 4096
data_page:      .skip 4096
data_page2:     .skip 4096
root2_table:    .skip 4096
l1_alt_table:   .skip 4096
l0_alt_table:   .skip 4096

/* Position-independent code, mapped at several virtual addresses. */
    .text
    .balign 4096
exec_page:
    li      a0, 0x42
    ret
/* Runs in U-mode at VA_PAGE(8) + (u_routine - exec_page). */
u_routine:
    li      t0, VA_PAGE(3)
    ld      s2, 0(t0)               /* U page: fine */
    li      t0, VA_PAGE(10)
    li      t1, 0x77
    sd      t1, 0(t0)               /* U page, writable: fine */
    li      t0, VA_PAGE(0)
    li      s3, 0x5a5a
    ld      s3, 0(t0)               /* S page: load page fault, skipped */
    ecall                           /* back to S */
    .balign 4096
/* Two pages; a 32-bit instruction straddles the boundary between them. */
straddle_pages:
    .skip   4094, 0
    .option push
    .option norvc
    addi    a0, zero, 0x77          /* bytes 4094..4097 */
    .option pop
    ret
    .balign 4096

/* t0 = PTE for the physical address in t1 with flags (uses t0 only). */
.macro MAKE_PTE flags
    srli    t0, t1, 12
    slli    t0, t0, 10
    ori     t0, t0, \flags
.endm

/* Stores into table[index] a PTE for symbol/address (t1) with flags. */
.macro SET_PTE table, index, flags
    MAKE_PTE \flags
    la      t2, \table
    sd      t0, (\index * 8)(t2)
.endm

/* In S-mode, with page faults delegated: runs `insn` (address in a0,
 * data register t2) and checks the trap's cause and stval. */
.macro EXPECT_FAULT name, cause, address, insn:vararg
    TRAP_RESET
    li      a0, \address
    li      t2, 0x5a5a
    \insn
    CHECK_MEM "\name: S traps", strap_count, 1
    CHECK_MEM "\name: scause", strap_cause, \cause
    CHECK_MEM "\name: stval", strap_tval, \address
.endm

/* In S-mode: jumps to address, which must fail with a fetch page fault. */
.macro EXPECT_FETCH_FAULT name, address
    TRAP_RESET
    SET_SRESUME .Lfetch_back\@
    li      t0, \address
    li      a0, 0
    jalr    t0
.Lfetch_back\@:
    CHECK   "\name: not executed", a0, 0
    CHECK_MEM "\name: scause", strap_cause, CAUSE_FETCH_PAGE_FAULT
    CHECK_MEM "\name: stval", strap_tval, \address
    CHECK_MEM "\name: sepc", strap_epc, \address
.endm

    TEST_BEGIN "sv39"
    csrw    satp, zero
    DETECT_QEMU s11

    /* ---------------- data pages ---------------- */
    la      t2, data_page
    li      t0, DATA_0
    sd      t0, 0(t2)
    la      t2, data_page2
    li      t0, DATA2_0
    sd      t0, 0(t2)

    /* ---------------- page tables ---------------- */
    li      t1, 0
    SET_PTE root_table, 0, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    li      t1, 0x80000000
    SET_PTE root_table, 2, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D
    la      t1, l1_table
    SET_PTE root_table, 4, PTE_V
    la      t1, l0_table
    SET_PTE l1_table, 0, PTE_V
    li      t1, PA_MEGA
    SET_PTE l1_table, 1, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    li      t1, PA_MEGA + 0x1000
    SET_PTE l1_table, 2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    la      t1, data_page
    SET_PTE l0_table, 0, PTE_V | PTE_R | PTE_W
    SET_PTE l0_table, 1, PTE_V | PTE_R | PTE_A
    SET_PTE l0_table, 3, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D
    SET_PTE l0_table, 4, PTE_V | PTE_X | PTE_A
    SET_PTE l0_table, 7, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    SET_PTE l0_table, 9, PTE_V | PTE_W | PTE_A | PTE_D
    la      t1, exec_page
    SET_PTE l0_table, 5, PTE_V | PTE_R | PTE_X | PTE_A
    SET_PTE l0_table, 6, PTE_V | PTE_R | PTE_A
    SET_PTE l0_table, 8, PTE_V | PTE_R | PTE_X | PTE_U | PTE_A
    la      t1, data_page2
    SET_PTE l0_table, 10, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D
    la      t1, data_page
    SET_PTE l0_table, 11, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    li      t1, 1 << 63             /* N */
    or      t0, t0, t1
    sd      t0, 11 * 8(t2)
    la      t1, data_page
    SET_PTE l0_table, 12, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    li      t1, 1 << 61             /* PBMT = NC */
    or      t0, t0, t1
    sd      t0, 12 * 8(t2)
    la      t1, data_page
    SET_PTE l0_table, 13, PTE_V
    SET_PTE l0_table, 14, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    li      t1, 1 << 54             /* reserved */
    or      t0, t0, t1
    sd      t0, 14 * 8(t2)
    la      t1, exec_page
    SET_PTE l0_table, 15, PTE_V | PTE_R | PTE_X
    la      t1, straddle_pages
    SET_PTE l0_table, 16, PTE_V | PTE_R | PTE_X | PTE_A
    SET_PTE l0_table, 18, PTE_V | PTE_R | PTE_X | PTE_A
    la      t1, straddle_pages + 4096
    SET_PTE l0_table, 17, PTE_V | PTE_R | PTE_X | PTE_A
    SET_PTE l0_table, 19, PTE_V | PTE_R | PTE_A
    /* a second set of tables: the same but for l0[7] */
    li      t1, 0
    SET_PTE root2_table, 0, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    li      t1, 0x80000000
    SET_PTE root2_table, 2, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D
    la      t1, l1_alt_table
    SET_PTE root2_table, 4, PTE_V
    la      t1, l0_alt_table
    SET_PTE l1_alt_table, 0, PTE_V
    la      t1, data_page2
    SET_PTE l0_alt_table, 7, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    /* Sv48 and Sv57 roots that lead to the same Sv39 tables */
    la      t1, root_table
    SET_PTE sv48_root, 0, PTE_V
    la      t1, sv48_root
    SET_PTE sv57_root, 0, PTE_V

    /* ---------------- satp (in M-mode, where it does not translate) ---------------- */
    la      t0, root_table
    srli    s4, t0, 12
    li      t0, SATP_SV39
    or      s4, s4, t0              /* s4 = the Sv39 satp value */
    csrw    satp, s4
    csrr    t1, satp
    xor     t1, t1, s4
    CHECK   "satp Sv39 written", t1, 0
    /* unsupported/reserved modes: the whole write is ignored */
    la      t0, root_table
    srli    t0, t0, 12
    li      t1, 1 << 60
    or      t0, t0, t1
    csrw    satp, t0
    csrr    t1, satp
    xor     t1, t1, s4
    CHECK   "satp mode 1 (reserved) ignored", t1, 0
    li      t1, (11 << 60) | 0x123
    csrw    satp, t1
    csrr    t1, satp
    xor     t1, t1, s4
    CHECK   "satp mode 11 (Sv64) ignored", t1, 0
    li      t1, (15 << 60) | 0x456
    csrw    satp, t1
    csrr    t1, satp
    xor     t1, t1, s4
    CHECK   "satp mode 15 ignored", t1, 0
    /* Sv48/Sv57: colo implements Sv39 only, so it must ignore the write.
     * QEMU 7.2 implements both; there a kept write must translate with
     * the new mode (same mappings through the extra levels). */
    la      t0, sv48_root
    srli    t0, t0, 12
    li      t1, 9 << 60
    or      a0, t0, t1
    call    check_satp_mode
    beqz    s11, 1f
    srli    t0, a0, 1               /* QEMU: 2 (kept and working) counts as 1 */
    or      a0, a0, t0
    andi    a0, a0, 1
1:  CHECK   "satp mode 9 (Sv48) ignored", a0, 1
    la      t0, sv57_root
    srli    t0, t0, 12
    li      t1, 10 << 60
    or      a0, t0, t1
    call    check_satp_mode
    beqz    s11, 1f
    srli    t0, a0, 1
    or      a0, a0, t0
    andi    a0, a0, 1
1:  CHECK   "satp mode 10 (Sv57) ignored", a0, 1
    csrw    satp, s4
    sfence.vma

    /* ---------------- MPRV: M-mode loads translated as S ---------------- */
    TRAP_RESET
    li      a0, VA_PAGE(7)
    call    mprv_load_as_s
    CHECK   "MPRV load through l0[7]", a0, DATA_0
    CHECK_MEM "MPRV load traps", trap_count, 0
    li      a0, VA_MEGA + 0x10
    li      a1, 0xabcdef
    call    mprv_store_as_s
    li      t0, PA_MEGA + 0x10
    ld      t1, 0(t0)
    CHECK   "MPRV store through the megapage", t1, 0xabcdef

    /* ---------------- into S-mode ---------------- */
    la      t0, strap_handler
    csrw    stvec, t0
    li      t0, (1 << CAUSE_FETCH_PAGE_FAULT) | (1 << CAUSE_LOAD_PAGE_FAULT) | (1 << CAUSE_STORE_PAGE_FAULT) | (1 << CAUSE_ECALL_U)
    csrw    medeleg, t0
    li      t0, MSTATUS_SUM | MSTATUS_MXR | MSTATUS_MPRV
    csrc    mstatus, t0
    sfence.vma
    /* more MPRV: U permissions, SUM, MXR; faults stay in M (never
     * delegated from M-mode), with mtval = the virtual address */
    TRAP_RESET
    li      a0, VA_PAGE(3)
    li      a1, PRV_U
    call    mprv_load
    CHECK   "MPRV as U: U page", a0, DATA_0
    CHECK_MEM "MPRV as U: U page traps", trap_count, 0
    li      a0, VA_PAGE(7)
    li      a1, PRV_U
    call    mprv_load
    CHECK   "MPRV as U: S page not loaded", a0, VA_PAGE(7)
    CHECK_MEM "MPRV as U: S page traps (in M)", trap_count, 1
    CHECK_TRAP "MPRV as U: S page mcause", CAUSE_LOAD_PAGE_FAULT
    CHECK_MEM "MPRV as U: S page mtval", trap_tval, VA_PAGE(7)
    CHECK_MEM "MPRV as U: S traps", strap_count, 0
    TRAP_RESET
    li      a0, VA_PAGE(3)
    call    mprv_load_as_s
    CHECK_TRAP "MPRV as S, SUM=0: U page mcause", CAUSE_LOAD_PAGE_FAULT
    li      t0, MSTATUS_SUM
    csrs    mstatus, t0
    TRAP_RESET
    li      a0, VA_PAGE(3)
    call    mprv_load_as_s
    CHECK   "MPRV as S, SUM=1: U page", a0, DATA_0
    CHECK_MEM "MPRV as S, SUM=1: traps", trap_count, 0
    li      t0, MSTATUS_SUM
    csrc    mstatus, t0
    TRAP_RESET
    li      a0, VA_PAGE(4)
    call    mprv_load_as_s
    CHECK_TRAP "MPRV as S, MXR=0: X-only page mcause", CAUSE_LOAD_PAGE_FAULT
    li      t0, MSTATUS_MXR
    csrs    mstatus, t0
    TRAP_RESET
    li      a0, VA_PAGE(4)
    call    mprv_load_as_s
    CHECK   "MPRV as S, MXR=1: X-only page", a0, DATA_0
    li      t0, MSTATUS_MXR
    csrc    mstatus, t0

    TRAP_RESET
    MRET_TO PRV_S, s_mode_tests
s_mode_tests:
    SAY     "in S-mode with Sv39"
    /* execution through a 4 KiB mapping at another address */
    li      t0, VA_PAGE(5)
    li      a0, 0
    jalr    t0
    CHECK   "fetch through l0[5]", a0, 0x42
    li      t0, VA_PAGE(7)
    ld      t1, 0(t0)
    CHECK   "load through l0[7]", t1, DATA_0

    /* ---------------- A and D ---------------- */
    la      s5, l0_table
    ld      t1, 0(s5)
    andi    t1, t1, 0x3ff
    CHECK   "l0[0] flags before", t1, PTE_V | PTE_R | PTE_W
    li      t0, VA_PAGE(0)
    ld      t2, 0(t0)
    CHECK   "load through l0[0]", t2, DATA_0
    ld      t1, 0(s5)
    andi    t1, t1, 0x3ff
    CHECK   "l0[0] flags after load (A)", t1, PTE_V | PTE_R | PTE_W | PTE_A
    li      t0, VA_PAGE(0) + 8
    li      t2, 0x1234
    sd      t2, 0(t0)
    ld      t1, 0(s5)
    andi    t1, t1, 0x3ff
    CHECK   "l0[0] flags after store (A D)", t1, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    ld      t1, 0(s5)
    srli    t1, t1, 10
    la      t0, data_page
    srli    t0, t0, 12
    sub     t1, t1, t0
    CHECK   "l0[0] PPN unchanged", t1, 0
    la      t0, data_page
    ld      t1, 8(t0)
    CHECK   "store through l0[0] reached data_page", t1, 0x1234
    /* TRAP_RESET above; no fault so far */
    CHECK_MEM "no traps so far", strap_count, 0

    /* ---------------- permission faults ---------------- */
    EXPECT_FAULT "store to read-only", CAUSE_STORE_PAGE_FAULT, VA_PAGE(1) + 16, sd t2, 0(a0)
    la      t0, data_page
    ld      t1, 16(t0)
    CHECK   "store to read-only wrote nothing", t1, 0
    EXPECT_FAULT "amoadd to read-only", CAUSE_STORE_PAGE_FAULT, VA_PAGE(1) + 16, amoadd.d t2, t2, (a0)
    CHECK   "amoadd to read-only: rd unchanged", t2, 0x5a5a
    TRAP_RESET
    li      t0, VA_PAGE(1)
    ld      t1, 0(t0)
    CHECK   "load from read-only", t1, DATA_0
    EXPECT_FAULT "load from invalid", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(2) + 0x10, ld t2, 0(a0)
    CHECK   "load from invalid: rd unchanged", t2, 0x5a5a
    EXPECT_FAULT "store to invalid", CAUSE_STORE_PAGE_FAULT, VA_PAGE(2) + 0x18, sw t2, 0(a0)
    EXPECT_FAULT "load from W-only (reserved)", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(9), ld t2, 0(a0)
    EXPECT_FAULT "store to W-only (reserved)", CAUSE_STORE_PAGE_FAULT, VA_PAGE(9), sd t2, 0(a0)
    EXPECT_FAULT "non-canonical address", CAUSE_LOAD_PAGE_FAULT, 0x0000004000000000, ld t2, 0(a0)
    EXPECT_FAULT "non-canonical address (high)", CAUSE_STORE_PAGE_FAULT, 0xffff000080000000, sd t2, 0(a0)
    EXPECT_FAULT "unmapped gigapage", CAUSE_LOAD_PAGE_FAULT, 0x40000000, lw t2, 0(a0)

    /* ---------------- reserved PTE encodings ---------------- */
    EXPECT_FAULT "PTE with N (no Svnapot)", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(11), ld t2, 0(a0)
    EXPECT_FAULT "PTE with PBMT (no Svpbmt)", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(12) + 8, ld t2, 0(a0)
    EXPECT_FAULT "pointer PTE at level 0", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(13), ld t2, 0(a0)
    EXPECT_FAULT "PTE with reserved bit 54", CAUSE_STORE_PAGE_FAULT, VA_PAGE(14), sd t2, 0(a0)

    /* ---------------- fetch faults ---------------- */
    EXPECT_FETCH_FAULT "fetch from non-executable", VA_PAGE(6)
    EXPECT_FETCH_FAULT "fetch from invalid", VA_PAGE(2)
    EXPECT_FETCH_FAULT "fetch from data gigapage 0", 0x10000000

    /* A fetch sets A */
    li      t0, VA_PAGE(15)
    li      a0, 0
    jalr    t0
    CHECK   "fetch through l0[15]", a0, 0x42
    la      t0, l0_table
    ld      t1, 15 * 8(t0)
    andi    t1, t1, 0x3ff
    CHECK   "l0[15] flags after fetch (A)", t1, PTE_V | PTE_R | PTE_X | PTE_A

    /* code patched through the identity mapping, run through l0[5] */
    la      s6, exec_page
    lw      s7, 0(s6)               /* addi a0, zero, 0x42 */
    li      t0, 0x05500513          /* addi a0, zero, 0x55 */
    sw      t0, 0(s6)
    fence.i
    li      t0, VA_PAGE(5)
    li      a0, 0
    jalr    t0
    CHECK   "patched code through an alias", a0, 0x55
    sw      s7, 0(s6)
    fence.i
    li      t0, VA_PAGE(5)
    li      a0, 0
    jalr    t0
    CHECK   "restored code through an alias", a0, 0x42

    /* ---------------- SUM and the U bit ---------------- */
    EXPECT_FAULT "S load from U page, SUM=0", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(3), ld t2, 0(a0)
    EXPECT_FAULT "S store to U page, SUM=0", CAUSE_STORE_PAGE_FAULT, VA_PAGE(3) + 24, sd t2, 0(a0)
    li      t0, MSTATUS_SUM
    csrs    sstatus, t0
    TRAP_RESET
    li      t0, VA_PAGE(3)
    ld      t1, 0(t0)
    CHECK   "S load from U page, SUM=1", t1, DATA_0
    li      t2, 0x2424
    sd      t2, 24(t0)
    la      t0, data_page
    ld      t1, 24(t0)
    CHECK   "S store to U page, SUM=1", t1, 0x2424
    CHECK_MEM "SUM=1: traps", strap_count, 0
    /* S never executes from a U page, whatever SUM says */
    EXPECT_FETCH_FAULT "S fetch from U page, SUM=1", VA_PAGE(8)
    li      t0, MSTATUS_SUM
    csrc    sstatus, t0

    /* ---------------- MXR ---------------- */
    EXPECT_FAULT "load from X-only, MXR=0", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(4), ld t2, 0(a0)
    li      t0, MSTATUS_MXR
    csrs    sstatus, t0
    TRAP_RESET
    li      t0, VA_PAGE(4)
    ld      t1, 0(t0)
    CHECK   "load from X-only, MXR=1", t1, DATA_0
    CHECK_MEM "MXR=1: traps", strap_count, 0
    EXPECT_FAULT "store to X-only, MXR=1", CAUSE_STORE_PAGE_FAULT, VA_PAGE(4), sd t2, 0(a0)
    li      t0, MSTATUS_MXR
    csrc    sstatus, t0

    /* ---------------- superpages ---------------- */
    TRAP_RESET
    li      t0, VA_MEGA + 0x1238
    li      t1, 0x0badf00d
    sd      t1, 0(t0)
    li      t0, PA_MEGA + 0x1238
    ld      t1, 0(t0)
    CHECK   "megapage store seen at PA", t1, 0x0badf00d
    li      t0, PA_MEGA + 0x1ffff8
    li      t1, 0x77665544
    sd      t1, 0(t0)
    li      t0, VA_MEGA + 0x1ffff8
    ld      t1, 0(t0)
    CHECK   "megapage last doubleword", t1, 0x77665544
    CHECK_MEM "megapage: traps", strap_count, 0
    EXPECT_FAULT "misaligned megapage", CAUSE_LOAD_PAGE_FAULT, VA_MEGA_BAD + 0x20, ld t2, 0(a0)
    li      t0, 0x80000000 + 0x3ffffff0     /* far end of the code gigapage */
    li      t1, 0x80000000 + 0x3ffffff0
    sub     t1, t1, t0
    CHECK   "gigapage identity", t1, 0

    /* ---------------- sfence.vma after changing a PTE ---------------- */
    li      t0, VA_PAGE(7)
    ld      t1, 0(t0)
    CHECK   "l0[7] before the change", t1, DATA_0
    la      t1, data_page2
    SET_PTE l0_table, 7, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    li      t0, VA_PAGE(7)
    sfence.vma t0, zero
    ld      t1, 0(t0)
    CHECK   "l0[7] after the change + sfence.vma va", t1, DATA2_0
    la      t1, data_page
    SET_PTE l0_table, 7, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    sfence.vma
    li      t0, VA_PAGE(7)
    ld      t1, 0(t0)
    CHECK   "l0[7] changed back + sfence.vma", t1, DATA_0
    /* invalidating a PTE makes the page fault after sfence.vma */
    la      t2, l0_table
    sd      zero, 7 * 8(t2)
    sfence.vma
    EXPECT_FAULT "l0[7] invalidated", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(7), ld t2, 0(a0)

    /* ---------------- switching satp ---------------- */
    la      t1, data_page
    SET_PTE l0_table, 7, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
    sfence.vma
    li      t0, VA_PAGE(7)
    ld      t1, 0(t0)
    CHECK   "l0[7] restored", t1, DATA_0
    csrr    s8, satp
    la      t0, root2_table
    srli    t0, t0, 12
    li      t1, SATP_SV39
    or      t0, t0, t1
    csrw    satp, t0
    sfence.vma
    li      t0, VA_PAGE(7)
    ld      t1, 0(t0)
    CHECK   "other root: l0[7]", t1, DATA2_0
    EXPECT_FAULT "other root: l0[3] unmapped", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(3), ld t2, 0(a0)
    csrw    satp, s8
    sfence.vma
    li      t0, VA_PAGE(7)
    ld      t1, 0(t0)
    CHECK   "first root again: l0[7]", t1, DATA_0

    /* ---------------- an instruction across two pages ---------------- */
    TRAP_RESET
    li      t0, VA_PAGE(16) + 4094
    li      a0, 0
    jalr    t0
    CHECK   "32-bit instruction across executable pages", a0, 0x77
    CHECK_MEM "across executable pages: traps", strap_count, 0
    TRAP_RESET
    SET_SRESUME 1f
    li      t0, VA_PAGE(18) + 4094
    li      a0, 0
    jalr    t0
1:  CHECK   "into a non-executable page: not executed", a0, 0
    CHECK_MEM "into a non-executable page: scause", strap_cause, CAUSE_FETCH_PAGE_FAULT
    CHECK_MEM "into a non-executable page: sepc (instruction start)", strap_epc, VA_PAGE(18) + 4094
    CHECK_MEM "into a non-executable page: stval (the faulting half)", strap_tval, VA_PAGE(19)

    /* ---------------- U-mode ---------------- */
    li      t0, MSTATUS_SUM         /* lets the S handler read U code */
    csrs    sstatus, t0
    TRAP_RESET
    li      s2, 0
    li      s3, 0
    li      t0, VA_PAGE(8)
    la      t1, u_routine
    la      t2, exec_page
    sub     t1, t1, t2
    add     t0, t0, t1
    csrw    sepc, t0
    li      t0, MSTATUS_SPP
    csrc    sstatus, t0
    SET_SRESUME_ON 1f, CAUSE_ECALL_U
    sret
1:  CHECK   "U: load from U page", s2, DATA_0
    CHECK   "U: load from S page left rd alone", s3, 0x5a5a
    CHECK_MEM "U: first scause", strap_first_cause, CAUSE_LOAD_PAGE_FAULT
    CHECK_MEM "U: first stval", strap_first_tval, VA_PAGE(0)
    CHECK_MEM "U: last scause (ecall)", strap_cause, CAUSE_ECALL_U
    CHECK_MEM "U: S traps", strap_count, 2
    la      t0, data_page2
    ld      t1, 0(t0)
    CHECK   "U: store to U page", t1, 0x77
    li      t0, MSTATUS_SUM
    csrc    sstatus, t0

    ECALL_TO_M 2f
2:  csrw    satp, zero
    sfence.vma
    csrw    medeleg, zero
    CHECK_TRAP "back in M", CAUSE_ECALL_S
    TEST_END

/* a0 = *(a0) loaded in M-mode with MPRV = 1, MPP = S (translated). */
mprv_load_as_s:
    li      a1, PRV_S
/* a0 = *(a0) loaded in M-mode with MPRV = 1, MPP = a1. */
mprv_load:
    li      t0, 3 << 11
    csrc    mstatus, t0
    slli    t0, a1, 11
    csrs    mstatus, t0
    li      t0, MSTATUS_MPRV
    csrs    mstatus, t0
    ld      a0, 0(a0)
    li      t0, MSTATUS_MPRV
    csrc    mstatus, t0
    ret

/* *(a0) = a1 in M-mode with MPRV = 1, MPP = S. */
mprv_store_as_s:
    li      t0, 3 << 11
    csrc    mstatus, t0
    li      t0, (1 << 11) | MSTATUS_MPRV
    csrs    mstatus, t0
    sd      a1, 0(a0)
    li      t0, MSTATUS_MPRV
    csrc    mstatus, t0
    ret

/* Writes a0 to satp (from the Sv39 value in s4). Returns a0 = 1 if the
 * write was ignored (satp still s4), 2 if satp now reads back exactly a0
 * and an MPRV load through it sees the same mapping as Sv39, else 0.
 * Leaves satp = s4. */
check_satp_mode:
    addi    sp, sp, -16
    sd      ra, 0(sp)
    sd      s0, 8(sp)
    mv      s0, a0
    csrw    satp, s0
    csrr    t1, satp
    beq     t1, s4, .Lsatp_ignored
    bne     t1, s0, .Lsatp_bad
    sfence.vma
    TRAP_RESET
    li      a0, VA_PAGE(7)
    call    mprv_load_as_s
    li      t0, DATA_0
    bne     a0, t0, .Lsatp_bad
    la      t0, trap_count
    ld      t0, 0(t0)
    bnez    t0, .Lsatp_bad
    li      a0, 2
    j       .Lsatp_out
.Lsatp_ignored:
    li      a0, 1
    j       .Lsatp_out
.Lsatp_bad:
    li      a0, 0
.Lsatp_out:
    csrw    satp, s4
    sfence.vma
    ld      ra, 0(sp)
    ld      s0, 8(sp)
    addi    sp, sp, 16
    ret
