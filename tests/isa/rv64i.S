/* RV64I: every base instruction, including the W forms, shift amounts
 * 0/31/63, sign extension of loads, LUI/AUIPC, branches taken and not
 * taken, JAL/JALR (link values, odd targets), writes to x0, and misaligned
 * loads and stores. */
#include "test_macros.h"

    .section .data
    .align  3
data_bytes:
    .dword  0x8081828384858687
    .dword  0xfedcba9876543210
    .dword  0x7f7e7d7c7b7a7978
store_area:
    .dword  0
    .dword  0
    .dword  0
misaligned_area:
    .dword  0x0706050403020100
    .dword  0x0f0e0d0c0b0a0908
    .dword  0x9796959493929190
misaligned_initial:
    .dword  0x0706050403020100
    .dword  0x0f0e0d0c0b0a0908
    .dword  0x9796959493929190
    .align  12
page_cross:
    .skip   8192

/* A misaligned load at offset from s0 (uses t0-t5): either it is carried
 * out and yields expected, or it traps with cause 4 and tval = address and
 * leaves the destination alone. */
.macro MISALIGNED_LOAD insn, offset, expected
    TRAP_RESET
    li      t2, 0x5a5a
    \insn   t2, \offset(s0)
    la      t0, trap_count
    ld      t3, 0(t0)
    PRINT   "\insn +\offset", t2
    PRINT   "\insn +\offset traps", t3
    bnez    t3, 1f
    CHECK   "\insn +\offset value", t2, \expected
    j       2f
1:  CHECK   "\insn +\offset trap count", t3, 1
    CHECK_TRAP "\insn +\offset cause", CAUSE_LOAD_MISALIGNED
    la      t0, trap_tval
    ld      t4, 0(t0)
    addi    t5, s0, \offset
    sub     t4, t4, t5
    CHECK   "\insn +\offset tval - address", t4, 0
    CHECK   "\insn +\offset rd unchanged", t2, 0x5a5a
2:
.endm

/* A misaligned store of 0x1122334455667788 at offset from
 * misaligned_area (reset first): either carried out, leaving the three
 * expected doublewords, or a trap with cause 6 that leaves memory alone. */
.macro MISALIGNED_STORE insn, offset, expected0, expected1, expected2
    la      t0, misaligned_initial
    ld      t1, 0(t0)
    sd      t1, 0(s0)
    ld      t1, 8(t0)
    sd      t1, 8(s0)
    ld      t1, 16(t0)
    sd      t1, 16(s0)
    TRAP_RESET
    li      t0, 0x1122334455667788
    \insn   t0, \offset(s0)
    la      t0, trap_count
    ld      t3, 0(t0)
    PRINT   "\insn +\offset traps", t3
    ld      t4, 0(s0)
    PRINT   "\insn +\offset dword 0", t4
    ld      t5, 8(s0)
    PRINT   "\insn +\offset dword 1", t5
    ld      t6, 16(s0)
    PRINT   "\insn +\offset dword 2", t6
    bnez    t3, 1f
    CHECK   "\insn +\offset dword 0 value", t4, \expected0
    CHECK   "\insn +\offset dword 1 value", t5, \expected1
    CHECK   "\insn +\offset dword 2 value", t6, \expected2
    j       2f
1:  CHECK   "\insn +\offset trap count", t3, 1
    CHECK_TRAP "\insn +\offset cause", CAUSE_STORE_MISALIGNED
    la      t0, trap_tval
    ld      t1, 0(t0)
    addi    t2, s0, \offset
    sub     t1, t1, t2
    CHECK   "\insn +\offset tval - address", t1, 0
    la      t0, misaligned_initial
    ld      t1, 0(t0)
    CHECK_REG "\insn +\offset dword 0 unchanged", t4, t1
    ld      t1, 8(t0)
    CHECK_REG "\insn +\offset dword 1 unchanged", t5, t1
    ld      t1, 16(t0)
    CHECK_REG "\insn +\offset dword 2 unchanged", t6, t1
2:
.endm

    TEST_BEGIN "rv64i"

    /* ---------------- integer register-register ---------------- */
    li      t0, 0x123456789abcdef0
    li      t1, 0x0fedcba987654321
    add     t2, t0, t1
    CHECK   "add", t2, 0x2222222222222211
    li      t0, -1
    li      t1, 1
    add     t2, t0, t1
    CHECK   "add wrap", t2, 0
    li      t0, 5
    li      t1, 7
    sub     t2, t0, t1
    CHECK   "sub", t2, -2
    li      t0, 0x8000000000000000
    li      t1, 1
    sub     t2, t0, t1
    CHECK   "sub wrap", t2, 0x7fffffffffffffff

    li      t0, 0x7fffffff
    li      t1, 1
    addw    t2, t0, t1
    CHECK   "addw overflow sext", t2, 0xffffffff80000000
    li      t0, 0xffffffff00000005
    li      t1, 0x1234567800000003
    addw    t2, t0, t1
    CHECK   "addw ignores high", t2, 8
    li      t0, 0
    li      t1, 0x80000000
    subw    t2, t0, t1
    CHECK   "subw", t2, 0xffffffff80000000
    li      t0, 0x100000000
    li      t1, 1
    subw    t2, t0, t1
    CHECK   "subw -1", t2, -1

    li      t0, -5
    li      t1, 3
    slt     t2, t0, t1
    CHECK   "slt -5<3", t2, 1
    slt     t2, t1, t0
    CHECK   "slt 3<-5", t2, 0
    sltu    t2, t0, t1
    CHECK   "sltu big<3", t2, 0
    sltu    t2, t1, t0
    CHECK   "sltu 3<big", t2, 1
    slt     t2, t1, t1
    CHECK   "slt equal", t2, 0
    sltu    t2, zero, t1
    CHECK   "sltu snez", t2, 1

    li      t0, 0xff00ff00ff00ff00
    li      t1, 0x0ff00ff00ff00ff0
    and     t2, t0, t1
    CHECK   "and", t2, 0x0f000f000f000f00
    or      t2, t0, t1
    CHECK   "or", t2, 0xfff0fff0fff0fff0
    xor     t2, t0, t1
    CHECK   "xor", t2, 0xf0f0f0f0f0f0f0f0

    /* ---------------- immediates ---------------- */
    li      t0, 100
    addi    t2, t0, -2048
    CHECK   "addi -2048", t2, -1948
    addi    t2, t0, 2047
    CHECK   "addi 2047", t2, 2147
    li      t0, 0x7ffffffe
    addiw   t2, t0, 2
    CHECK   "addiw overflow sext", t2, 0xffffffff80000000
    li      t0, 0x123456789
    addiw   t2, t0, 0
    CHECK   "addiw 0 (sext.w)", t2, 0x23456789
    li      t0, 0xfffffffff0000000
    addiw   t2, t0, -1
    CHECK   "addiw -1", t2, 0xffffffffefffffff
    li      t0, 0xffffffff
    addiw   t2, t0, 0
    CHECK   "sext.w 0xffffffff", t2, -1

    li      t0, -1
    slti    t2, t0, 0
    CHECK   "slti -1<0", t2, 1
    slti    t2, t0, -2
    CHECK   "slti -1<-2", t2, 0
    li      t0, 5
    sltiu   t2, t0, -1
    CHECK   "sltiu 5<max", t2, 1
    sltiu   t2, t0, 5
    CHECK   "sltiu 5<5", t2, 0
    sltiu   t2, zero, 1
    CHECK   "sltiu seqz", t2, 1

    li      t0, 0x123456789abcdef0
    andi    t2, t0, -16
    CHECK   "andi -16", t2, 0x123456789abcdef0
    andi    t2, t0, 0x7ff
    CHECK   "andi 0x7ff", t2, 0x6f0
    ori     t2, t0, -2048
    CHECK   "ori -2048", t2, 0xfffffffffffffef0
    ori     t2, t0, 0x00f
    CHECK   "ori 0xf", t2, 0x123456789abcdeff
    xori    t2, t0, -1
    CHECK   "xori -1 (not)", t2, 0xedcba9876543210f
    xori    t2, t0, 0x555
    CHECK   "xori 0x555", t2, 0x123456789abcdba5

    /* ---------------- shifts ---------------- */
    li      t0, 0x8000000000000001
    slli    t2, t0, 0
    CHECK   "slli 0", t2, 0x8000000000000001
    slli    t2, t0, 31
    CHECK   "slli 31", t2, 0x0000000080000000
    slli    t2, t0, 63
    CHECK   "slli 63", t2, 0x8000000000000000
    srli    t2, t0, 0
    CHECK   "srli 0", t2, 0x8000000000000001
    srli    t2, t0, 31
    CHECK   "srli 31", t2, 0x0000000100000000
    srli    t2, t0, 63
    CHECK   "srli 63", t2, 1
    srai    t2, t0, 0
    CHECK   "srai 0", t2, 0x8000000000000001
    srai    t2, t0, 31
    CHECK   "srai 31", t2, 0xffffffff00000000
    srai    t2, t0, 63
    CHECK   "srai 63", t2, -1
    li      t3, 0x4000000000000000
    srai    t2, t3, 62
    CHECK   "srai positive", t2, 1

    li      t1, 0
    sll     t2, t0, t1
    CHECK   "sll 0", t2, 0x8000000000000001
    li      t1, 31
    sll     t2, t0, t1
    CHECK   "sll 31", t2, 0x0000000080000000
    li      t1, 63
    sll     t2, t0, t1
    CHECK   "sll 63", t2, 0x8000000000000000
    li      t1, 65                  /* only the low 6 bits count */
    sll     t2, t0, t1
    CHECK   "sll 65 (=1)", t2, 2
    li      t1, 31
    srl     t2, t0, t1
    CHECK   "srl 31", t2, 0x0000000100000000
    li      t1, 63
    srl     t2, t0, t1
    CHECK   "srl 63", t2, 1
    li      t1, -1                  /* = 63 */
    srl     t2, t0, t1
    CHECK   "srl -1 (=63)", t2, 1
    li      t1, 0
    srl     t2, t0, t1
    CHECK   "srl 0", t2, 0x8000000000000001
    li      t1, 0
    sra     t2, t0, t1
    CHECK   "sra 0", t2, 0x8000000000000001
    li      t1, 31
    sra     t2, t0, t1
    CHECK   "sra 31", t2, 0xffffffff00000000
    li      t1, 63
    sra     t2, t0, t1
    CHECK   "sra 63", t2, -1
    li      t1, 128 + 4
    sra     t2, t0, t1
    CHECK   "sra 132 (=4)", t2, 0xf800000000000000

    /* W shifts: 5-bit amounts, 32-bit results sign-extended */
    li      t0, 0xfedcba9880000001
    slliw   t2, t0, 0
    CHECK   "slliw 0", t2, 0xffffffff80000001
    slliw   t2, t0, 31
    CHECK   "slliw 31", t2, 0xffffffff80000000
    slliw   t2, t0, 1
    CHECK   "slliw 1", t2, 2
    srliw   t2, t0, 0
    CHECK   "srliw 0", t2, 0xffffffff80000001
    srliw   t2, t0, 31
    CHECK   "srliw 31", t2, 1
    srliw   t2, t0, 1
    CHECK   "srliw 1", t2, 0x40000000
    sraiw   t2, t0, 0
    CHECK   "sraiw 0", t2, 0xffffffff80000001
    sraiw   t2, t0, 31
    CHECK   "sraiw 31", t2, -1
    sraiw   t2, t0, 4
    CHECK   "sraiw 4", t2, 0xfffffffff8000000
    li      t1, 0
    sllw    t2, t0, t1
    CHECK   "sllw 0", t2, 0xffffffff80000001
    li      t1, 31
    sllw    t2, t0, t1
    CHECK   "sllw 31", t2, 0xffffffff80000000
    li      t1, 33                  /* only the low 5 bits count */
    sllw    t2, t0, t1
    CHECK   "sllw 33 (=1)", t2, 2
    li      t1, 31
    srlw    t2, t0, t1
    CHECK   "srlw 31", t2, 1
    li      t1, 0
    srlw    t2, t0, t1
    CHECK   "srlw 0", t2, 0xffffffff80000001
    li      t1, 63                  /* = 31 */
    srlw    t2, t0, t1
    CHECK   "srlw 63 (=31)", t2, 1
    li      t1, 31
    sraw    t2, t0, t1
    CHECK   "sraw 31", t2, -1
    li      t1, 0
    sraw    t2, t0, t1
    CHECK   "sraw 0", t2, 0xffffffff80000001
    li      t1, 36                  /* = 4 */
    sraw    t2, t0, t1
    CHECK   "sraw 36 (=4)", t2, 0xfffffffff8000000
    li      t0, 0x7fffffff00000000
    li      t1, 1
    sraw    t2, t0, t1
    CHECK   "sraw low zero", t2, 0

    /* ---------------- LUI / AUIPC ---------------- */
    lui     t2, 0x12345
    CHECK   "lui", t2, 0x12345000
    lui     t2, 0x80000
    CHECK   "lui sext", t2, 0xffffffff80000000
    lui     t2, 0xfffff
    CHECK   "lui 0xfffff", t2, 0xfffffffffffff000
.Lauipc_here:
    auipc   t2, 0
    la      t3, .Lauipc_here
    sub     t2, t2, t3
    CHECK   "auipc 0 - pc", t2, 0
.Lauipc_here2:
    auipc   t2, 0x12
    la      t3, .Lauipc_here2
    sub     t2, t2, t3
    CHECK   "auipc 0x12 - pc", t2, 0x12000
.Lauipc_here3:
    auipc   t2, 0xfffff
    la      t3, .Lauipc_here3
    sub     t2, t2, t3
    CHECK   "auipc -1 - pc", t2, -4096

    /* ---------------- loads ---------------- */
    la      s0, data_bytes
    lb      t2, 0(s0)
    CHECK   "lb 0x87", t2, 0xffffffffffffff87
    lbu     t2, 0(s0)
    CHECK   "lbu 0x87", t2, 0x87
    lb      t2, 16(s0)
    CHECK   "lb 0x78", t2, 0x78
    lh      t2, 0(s0)
    CHECK   "lh 0x8687", t2, 0xffffffffffff8687
    lhu     t2, 0(s0)
    CHECK   "lhu 0x8687", t2, 0x8687
    lh      t2, 22(s0)
    CHECK   "lh 0x7f7e", t2, 0x7f7e
    lw      t2, 4(s0)
    CHECK   "lw 0x80818283", t2, 0xffffffff80818283
    lwu     t2, 4(s0)
    CHECK   "lwu 0x80818283", t2, 0x80818283
    lw      t2, 0(s0)
    CHECK   "lw 0x84858687", t2, 0xffffffff84858687
    lw      t2, 8(s0)
    CHECK   "lw 0x76543210", t2, 0x76543210
    ld      t2, 8(s0)
    CHECK   "ld", t2, 0xfedcba9876543210
    addi    s1, s0, 16
    ld      t2, -8(s1)
    CHECK   "ld negative offset", t2, 0xfedcba9876543210
    lbu     t2, -1(s1)
    CHECK   "lbu negative offset", t2, 0xfe
    lb      t2, 7(s0)
    CHECK   "lb 0x80", t2, 0xffffffffffffff80
    lb      t2, 23(s0)
    CHECK   "lb 0x7f", t2, 0x7f

    /* ---------------- stores ---------------- */
    la      s1, store_area
    li      t0, -1
    sd      t0, 0(s1)
    sd      t0, 8(s1)
    li      t0, 0x1122334455667788
    sb      t0, 0(s1)
    ld      t2, 0(s1)
    CHECK   "sb", t2, 0xffffffffffffff88
    sh      t0, 2(s1)
    ld      t2, 0(s1)
    CHECK   "sh", t2, 0xffffffff7788ff88
    sw      t0, 4(s1)
    ld      t2, 0(s1)
    CHECK   "sw", t2, 0x556677887788ff88
    sd      t0, 8(s1)
    ld      t2, 8(s1)
    CHECK   "sd", t2, 0x1122334455667788
    addi    s2, s1, 24
    sb      zero, -1(s2)
    sh      zero, -4(s2)
    ld      t2, 16(s1)
    CHECK   "sb/sh negative offset", t2, 0x0000000000000000
    li      t0, 0xa5
    sb      t0, -2(s2)
    ld      t2, 16(s1)
    CHECK   "sb byte lane 6", t2, 0x00a5000000000000

    /* ---------------- branches ---------------- */
    /* Each not-taken branch sets a bit; taken ones skip theirs. */
    li      a0, -1
    li      a1, 1
    li      t2, 0
    beq     a0, a0, 1f
    ori     t2, t2, 0x1
1:  beq     a0, a1, 1f
    ori     t2, t2, 0x2
1:  bne     a0, a1, 1f
    ori     t2, t2, 0x4
1:  bne     a1, a1, 1f
    ori     t2, t2, 0x8
1:  blt     a0, a1, 1f
    ori     t2, t2, 0x10
1:  blt     a1, a0, 1f
    ori     t2, t2, 0x20
1:  blt     a1, a1, 1f
    ori     t2, t2, 0x40
1:  bge     a1, a0, 1f
    ori     t2, t2, 0x80
1:  bge     a0, a1, 1f
    ori     t2, t2, 0x100
1:  bge     a1, a1, 1f
    ori     t2, t2, 0x200
1:  CHECK   "beq/bne/blt/bge not taken", t2, 0x2 | 0x8 | 0x20 | 0x40 | 0x100
    li      t2, 0
    bltu    a1, a0, 1f
    ori     t2, t2, 0x1
1:  bltu    a0, a1, 1f
    ori     t2, t2, 0x2
1:  bltu    a0, a0, 1f
    ori     t2, t2, 0x4
1:  bgeu    a0, a1, 1f
    ori     t2, t2, 0x8
1:  bgeu    a1, a0, 1f
    ori     t2, t2, 0x10
1:  bgeu    a1, a1, 1f
    ori     t2, t2, 0x20
1:  CHECK   "bltu/bgeu not taken", t2, 0x2 | 0x4 | 0x10

    /* backward branches: a counted loop */
    li      t0, 10
    li      t2, 0
1:  addi    t2, t2, 3
    addi    t0, t0, -1
    bnez    t0, 1b
    CHECK   "backward bne loop", t2, 30
    /* a branch far forward (beyond +2 KiB) */
    li      t2, 0
    beqz    zero, .Lfar_target
    li      t2, 0xbad
    .skip   3000, 0
.Lfar_back:
    j       .Lfar_done
.Lfar_target:
    addi    t2, t2, 0x600
    beqz    zero, .Lfar_back
.Lfar_done:
    CHECK   "far branches", t2, 0x600

    /* ---------------- JAL / JALR ---------------- */
    jal     t0, .Ljal_target
.Ljal_return:
    li      t2, 0xbad
.Ljal_target:
    la      t1, .Ljal_return
    sub     t2, t0, t1
    CHECK   "jal link", t2, 0
    li      t2, 0
    jal     zero, 1f
    li      t2, 0xbad
1:  CHECK   "jal x0 (j)", t2, 0

    la      t1, .Ljalr_target
    jalr    t0, 0(t1)
.Ljalr_return:
    li      t3, 0xbad
.Ljalr_target:
    la      t1, .Ljalr_return
    sub     t2, t0, t1
    CHECK   "jalr link", t2, 0
    /* offset and an odd target: bit 0 of the sum is cleared */
    la      t1, .Ljalr_target2 - 7
    li      t2, 0
    jalr    t0, 8(t1)               /* target2 + 1: odd, becomes target2 */
    li      t2, 0xbad
.Ljalr_target2:
    CHECK   "jalr odd target", t2, 0
    la      t1, .Ljalr_target3 + 3
    li      t2, 0
    jalr    t0, -2(t1)              /* target3 + 1: odd, becomes target3 */
    li      t2, 0xbad
.Ljalr_target3:
    CHECK   "jalr negative offset", t2, 0
    /* rd == rs1: the target uses the old value */
    la      t0, .Ljalr_same
    jalr    t0, 0(t0)
.Ljalr_same_return:
    li      t2, 0xbad
.Ljalr_same:
    la      t1, .Ljalr_same_return
    sub     t2, t0, t1
    CHECK   "jalr rd==rs1", t2, 0
    /* call / ret through a real function */
    li      a0, 20
    call    rv64i_double_plus_one
    CHECK   "call/ret", a0, 41

    /* ---------------- x0 ---------------- */
    li      t2, 0
    addi    zero, zero, 5
    mv      t2, zero
    CHECK   "addi x0 discarded", t2, 0
    lui     zero, 0x12345
    add     t2, zero, zero
    CHECK   "lui x0 discarded", t2, 0
    la      t0, data_bytes
    ld      zero, 0(t0)
    or      t2, zero, zero
    CHECK   "ld x0 discarded", t2, 0
    jal     zero, 1f
1:  mv      t2, zero
    CHECK   "jal x0 discarded", t2, 0

    /* ---------------- fence, fence.i ---------------- */
    TRAP_RESET
    fence
    fence   rw, rw
    fence   r, w
    fence.i
    fence.tso
    CHECK_MEM "fences trap count", trap_count, 0
    /* fence.i makes a store to code visible to fetches */
    la      t0, .Lpatched
    li      t1, 0x00700393          /* addi t2, zero, 7 */
    sw      t1, 0(t0)
    fence.i
    li      t2, 0
    .option push
    .option norvc
.Lpatched:
    addi    t2, zero, 1
    .option pop
    CHECK   "fence.i self-modifying", t2, 7
    /* the same instruction patched and run again and again: each run must
     * see the latest store */
    li      s3, 0
    li      s4, 1
1:  la      t0, .Lpatched_loop
    slli    t1, s4, 20              /* immediate = s4 */
    li      t2, 0x000e0e13          /* addi t3, t3, 0 */
    or      t1, t1, t2
    sw      t1, 0(t0)
    fence.i
    li      t3, 100
    .option push
    .option norvc
.Lpatched_loop:
    addi    t3, t3, 0
    .option pop
    add     s3, s3, t3
    addi    s4, s4, 1
    li      t0, 6
    bne     s4, t0, 1b
    CHECK   "one instruction patched 5 times", s3, 515

    /* ---------------- misaligned loads and stores ---------------- */
    /* The spec lets a hart either carry them out or trap (address
     * misaligned, cause 4/6, tval = address). Check that one of the two
     * happened correctly; print the loaded value and trap count, which
     * colo and QEMU must agree on. */
    la      s0, misaligned_area
    MISALIGNED_LOAD lh, 1, 0x0201
    MISALIGNED_LOAD lh, 15, 0xffffffffffff900f
    MISALIGNED_LOAD lhu, 15, 0x900f
    MISALIGNED_LOAD lw, 3, 0x06050403
    MISALIGNED_LOAD lw, 14, 0xffffffff91900f0e
    MISALIGNED_LOAD lwu, 14, 0x91900f0e
    MISALIGNED_LOAD ld, 5, 0x0c0b0a0908070605
    MISALIGNED_LOAD ld, 12, 0x939291900f0e0d0c
    MISALIGNED_STORE sh, 17, 0x0706050403020100, 0x0f0e0d0c0b0a0908, 0x9796959493778890
    MISALIGNED_STORE sw, 13, 0x0706050403020100, 0x6677880c0b0a0908, 0x9796959493929155
    MISALIGNED_STORE sd, 3, 0x4455667788020100, 0x0f0e0d0c0b112233, 0x9796959493929190
    /* across a page boundary */
    la      s0, page_cross + 4096 - 16
    li      t0, 0x0706050403020100
    sd      t0, 8(s0)
    li      t0, 0x0f0e0d0c0b0a0908
    sd      t0, 16(s0)
    MISALIGNED_LOAD ld, 12, 0x0b0a090807060504
    MISALIGNED_LOAD lw, 14, 0x09080706
    TRAP_RESET
    li      t0, 0x1122334455667788
    sd      t0, 13(s0)
    la      t1, trap_count
    ld      t3, 0(t1)
    PRINT   "sd +13 across page traps", t3
    ld      t2, 8(s0)
    PRINT   "across page dword 0", t2
    ld      t4, 16(s0)
    PRINT   "across page dword 1", t4
    bnez    t3, 1f
    CHECK   "sd across page dword 0", t2, 0x6677880403020100
    CHECK   "sd across page dword 1", t4, 0x0f0e0d1122334455
1:

    TEST_END

/* a0 = 2 * a0 + 1, a plain leaf function */
rv64i_double_plus_one:
    slli    a0, a0, 1
    addi    a0, a0, 1
    ret
