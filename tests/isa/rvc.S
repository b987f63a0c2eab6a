/* RV64C: every compressed instruction, written with explicit c.* mnemonics
 * so that the assembler cannot pick the 32-bit forms: stack-pointer-based
 * loads and stores, C.ADDI4SPN/C.ADDI16SP, the register-register ALU ops
 * and their W forms, shifts, C.J/C.JR/C.JALR, C.BEQZ/C.BNEZ, C.EBREAK (via
 * the trap handler), the FP loads and stores, a 32-bit instruction at a
 * 2-mod-4 address and one that straddles a page boundary, and the all-zero
 * halfword, which is an illegal instruction. */
#include "test_macros.h"

    .section .data
    .align  3
rvc_data:
    .dword  0x8000000180000002      /* words: 0x80000002, 0x80000001 */
    .dword  0x0123456789abcdef
    .dword  0x400921fb54442d18      /* pi as a double */
    .dword  0
rvc_big:
    .skip   256

    .option rvc

    TEST_BEGIN "rvc"

    /* ---------------- C.LI, C.LUI, C.ADDI, C.ADDIW, C.NOP ---------------- */
    c.li    a0, 31
    CHECK   "c.li 31", a0, 31
    c.li    a0, -32
    CHECK   "c.li -32", a0, -32
    c.li    t3, 5                   /* full register range */
    CHECK   "c.li t3", t3, 5
    c.lui   a1, 1
    CHECK   "c.lui 1", a1, 0x1000
    c.lui   a1, 31
    CHECK   "c.lui 31", a1, 0x1f000
    c.lui   a1, 0xfffe0             /* -32 << 12 */
    CHECK   "c.lui -32", a1, 0xfffffffffffe0000
    c.lui   a1, 0xfffff
    CHECK   "c.lui -1", a1, 0xfffffffffffff000
    c.li    a0, 10
    c.addi  a0, -11
    CHECK   "c.addi -11", a0, -1
    c.addi  a0, 31
    CHECK   "c.addi 31", a0, 30
    c.nop
    CHECK   "c.nop", a0, 30
    li      a0, 0x7fffffff
    c.addiw a0, 1
    CHECK   "c.addiw overflow sext", a0, 0xffffffff80000000
    li      a0, 0x1234567887654321
    c.addiw a0, 0                   /* sext.w */
    CHECK   "c.addiw 0 (sext.w)", a0, 0xffffffff87654321
    li      a0, 0
    c.addiw a0, -1
    CHECK   "c.addiw -1", a0, -1

    /* ---------------- C.ADDI16SP, C.ADDI4SPN ---------------- */
    mv      s2, sp
    c.addi16sp sp, -512
    sub     t0, s2, sp
    CHECK   "c.addi16sp -512", t0, 512
    c.addi16sp sp, 496
    sub     t0, s2, sp
    CHECK   "c.addi16sp 496", t0, 16
    c.addi16sp sp, -16
    sub     t0, s2, sp
    CHECK   "c.addi16sp -16", t0, 32
    c.addi4spn a0, sp, 1020
    sub     t0, a0, sp
    CHECK   "c.addi4spn 1020", t0, 1020
    c.addi4spn a5, sp, 4
    sub     t0, a5, sp
    CHECK   "c.addi4spn 4", t0, 4
    mv      sp, s2

    /* ---------------- C.MV, C.ADD, register ALU ops ---------------- */
    li      t1, 0x1111
    c.mv    t2, t1
    CHECK   "c.mv", t2, 0x1111
    li      t2, 0x2222
    c.add   t2, t1
    CHECK   "c.add", t2, 0x3333
    li      a0, 0x0ff0
    li      a1, 0x00ff
    c.sub   a0, a1
    CHECK   "c.sub", a0, 0x0ef1
    li      a0, 0x0ff0
    c.xor   a0, a1
    CHECK   "c.xor", a0, 0x0f0f
    li      a0, 0x0ff0
    c.or    a0, a1
    CHECK   "c.or", a0, 0x0fff
    li      a0, 0x0ff0
    c.and   a0, a1
    CHECK   "c.and", a0, 0x00f0
    li      a0, 0x7fffffff
    li      a1, 1
    c.addw  a0, a1
    CHECK   "c.addw overflow sext", a0, 0xffffffff80000000
    li      a0, 0x100000000
    c.subw  a0, a1
    CHECK   "c.subw", a0, -1
    li      a0, 0x5555000000000003
    li      a1, 0x6666000000000005
    c.subw  a0, a1
    CHECK   "c.subw ignores high", a0, -2
    li      a0, 0x123456789abcdef0
    c.andi  a0, -16
    CHECK   "c.andi -16", a0, 0x123456789abcdef0
    c.andi  a0, 15
    CHECK   "c.andi 15", a0, 0
    li      a0, -1
    c.andi  a0, -32
    CHECK   "c.andi -32", a0, 0xffffffffffffffe0

    /* ---------------- shifts ---------------- */
    li      a0, 0x8000000000000001
    c.srli  a0, 63
    CHECK   "c.srli 63", a0, 1
    li      a0, 0x8000000000000001
    c.srli  a0, 31
    CHECK   "c.srli 31", a0, 0x100000000
    li      a0, 0x8000000000000001
    c.srli  a0, 1
    CHECK   "c.srli 1", a0, 0x4000000000000000
    li      a0, 0x8000000000000001
    c.srai  a0, 63
    CHECK   "c.srai 63", a0, -1
    li      a0, 0x8000000000000001
    c.srai  a0, 31
    CHECK   "c.srai 31", a0, 0xffffffff00000000
    li      a0, 0x4000000000000000
    c.srai  a0, 62
    CHECK   "c.srai positive", a0, 1
    li      t4, 0x8000000000000001
    c.slli  t4, 63
    CHECK   "c.slli 63", t4, 0x8000000000000000
    li      t4, 0x8000000000000001
    c.slli  t4, 31
    CHECK   "c.slli 31", t4, 0x80000000
    li      t4, 3
    c.slli  t4, 1
    CHECK   "c.slli 1", t4, 6

    /* ---------------- loads and stores ---------------- */
    la      a1, rvc_data
    c.lw    a0, 0(a1)
    CHECK   "c.lw sext", a0, 0xffffffff80000002
    c.lw    a0, 4(a1)
    CHECK   "c.lw +4", a0, 0xffffffff80000001
    c.ld    a0, 8(a1)
    CHECK   "c.ld", a0, 0x0123456789abcdef
    li      a2, 0x55667788
    c.sw    a2, 24(a1)
    li      a2, 0x11223344
    c.sw    a2, 28(a1)
    ld      a0, 24(a1)
    CHECK   "c.sw", a0, 0x1122334455667788
    li      a2, 0xfedcba9876543210
    c.sd    a2, 24(a1)
    ld      a0, 24(a1)
    CHECK   "c.sd", a0, 0xfedcba9876543210

    /* FP loads and stores (FS is on) */
    c.fld   fa0, 16(a1)
    fmv.x.d a0, fa0
    CHECK   "c.fld", a0, 0x400921fb54442d18
    li      a2, 0x3ff0000000000000  /* 1.0 */
    fmv.d.x fa1, a2
    c.fsd   fa1, 24(a1)
    ld      a0, 24(a1)
    CHECK   "c.fsd", a0, 0x3ff0000000000000

    /* stack-pointer-based forms */
    mv      s2, sp
    c.addi16sp sp, -64
    li      a2, 0x8000000000000007
    c.sdsp  a2, 8(sp)
    ld      a0, 8(sp)
    CHECK   "c.sdsp", a0, 0x8000000000000007
    c.ldsp  t5, 8(sp)
    CHECK   "c.ldsp", t5, 0x8000000000000007
    li      a2, 0x90000009
    c.swsp  a2, 20(sp)
    lwu     a0, 20(sp)
    CHECK   "c.swsp", a0, 0x90000009
    c.lwsp  t5, 20(sp)
    CHECK   "c.lwsp sext", t5, 0xffffffff90000009
    c.lwsp  t5, 8(sp)
    CHECK   "c.lwsp low word", t5, 7
    li      a2, 0x4000000000000000  /* 2.0 */
    fmv.d.x fa2, a2
    c.fsdsp fa2, 56(sp)
    ld      a0, 56(sp)
    CHECK   "c.fsdsp", a0, 0x4000000000000000
    c.fldsp fa3, 8(sp)
    fmv.x.d a0, fa3
    CHECK   "c.fldsp", a0, 0x8000000000000007
    c.ldsp  ra, 56(sp)              /* any rd but x0 */
    mv      a0, ra
    CHECK   "c.ldsp ra", a0, 0x4000000000000000
    mv      sp, s2

    /* immediates at their limits and with scattered bits */
    la      a1, rvc_big
    li      a2, 0x1111111122222222
    c.sd    a2, 248(a1)
    ld      a0, 248(a1)
    CHECK   "c.sd 248", a0, 0x1111111122222222
    li      a2, 0x3333333344444444
    c.sd    a2, 136(a1)
    c.ld    a0, 136(a1)
    CHECK   "c.ld 136", a0, 0x3333333344444444
    c.ld    a0, 248(a1)
    CHECK   "c.ld 248", a0, 0x1111111122222222
    li      a2, 0x85555555
    c.sw    a2, 124(a1)
    c.lw    a0, 124(a1)
    CHECK   "c.sw/c.lw 124", a0, 0xffffffff85555555
    li      a2, 0x16666666
    c.sw    a2, 68(a1)
    lwu     a0, 68(a1)
    CHECK   "c.sw 68", a0, 0x16666666
    c.lw    a0, 68(a1)
    CHECK   "c.lw 68", a0, 0x16666666
    c.fld   fa4, 248(a1)
    fmv.x.d a0, fa4
    CHECK   "c.fld 248", a0, 0x1111111122222222
    c.fsd   fa4, 160(a1)
    ld      a0, 160(a1)
    CHECK   "c.fsd 160", a0, 0x1111111122222222
    mv      s2, sp
    addi    sp, sp, -512
    li      a2, 0x7777777788888888
    c.sdsp  a2, 504(sp)
    ld      a0, 504(sp)
    CHECK   "c.sdsp 504", a0, 0x7777777788888888
    c.ldsp  t6, 504(sp)
    CHECK   "c.ldsp 504", t6, 0x7777777788888888
    li      a2, 0x99999999aaaaaaaa
    c.sdsp  a2, 264(sp)
    c.ldsp  t6, 264(sp)
    CHECK   "c.sdsp/c.ldsp 264", t6, 0x99999999aaaaaaaa
    li      a2, 0xbbbbbbbb
    c.swsp  a2, 252(sp)
    c.lwsp  t6, 252(sp)
    CHECK   "c.swsp/c.lwsp 252", t6, 0xffffffffbbbbbbbb
    li      a2, 0x0ccccccc
    c.swsp  a2, 196(sp)
    lwu     t6, 196(sp)
    CHECK   "c.swsp 196", t6, 0x0ccccccc
    c.lwsp  t6, 196(sp)
    CHECK   "c.lwsp 196", t6, 0x0ccccccc
    c.fldsp fa5, 264(sp)
    c.fsdsp fa5, 504(sp)
    ld      a0, 504(sp)
    CHECK   "c.fldsp 264 / c.fsdsp 504", a0, 0x99999999aaaaaaaa
    c.addi4spn a0, sp, 520
    sub     t0, a0, sp
    CHECK   "c.addi4spn 520", t0, 520
    c.addi4spn a0, sp, 340
    sub     t0, a0, sp
    CHECK   "c.addi4spn 340", t0, 340
    c.addi16sp sp, 304
    sub     t0, s2, sp
    CHECK   "c.addi16sp 304", t0, 512 - 304
    c.addi16sp sp, -336
    sub     t0, s2, sp
    CHECK   "c.addi16sp -336", t0, 512 - 304 + 336
    mv      sp, s2
    c.lui   a0, 0x10
    CHECK   "c.lui 0x10", a0, 0x10000
    c.lui   a0, 0xffff0
    CHECK   "c.lui 0xffff0", a0, 0xffffffffffff0000
    li      a0, 0x1234
    c.addi  a0, -32
    CHECK   "c.addi -32", a0, 0x1214
    li      a0, 0x8000000000000000
    c.srli  a0, 32
    CHECK   "c.srli 32", a0, 0x80000000
    li      a0, 0x8000000000000000
    c.srai  a0, 32
    CHECK   "c.srai 32", a0, 0xffffffff80000000
    li      a0, 0x00000000ffffffff
    c.slli  a0, 32
    CHECK   "c.slli 32", a0, 0xffffffff00000000
    li      a0, 0x5a
    c.andi  a0, 0x15
    CHECK   "c.andi 0x15", a0, 0x10
    li      a0, 0x7fffffff
    c.addiw a0, -32
    CHECK   "c.addiw -32", a0, 0x7fffffdf
    c.li    a0, 0x15
    CHECK   "c.li 0x15", a0, 0x15

    /* ---------------- jumps and branches ---------------- */
    /* far: each filler halfword is c.addi a0, 1, so landing short counts */
    li      a0, 0
    c.j     .Lcj_far
    .fill   1000, 2, 0x0505
.Lcj_far:
    CHECK   "c.j +2002", a0, 0
    li      a0, 0
    j       .Lcj_back_start
.Lcj_back_target:
    c.j     .Lcj_back_done
    .fill   1000, 2, 0x0505
.Lcj_back_start:
    c.j     .Lcj_back_target
.Lcj_back_done:
    CHECK   "c.j -2002", a0, 0
    li      a0, 0
    li      a1, 0
    c.beqz  a1, .Lcbeqz_far
    .fill   120, 2, 0x0505
.Lcbeqz_far:
    CHECK   "c.beqz +242", a0, 0
    li      a0, 0
    li      a1, 1
    j       .Lcbnez_back_start
.Lcbnez_back_target:
    c.j     .Lcbnez_back_done
    .fill   120, 2, 0x0505
.Lcbnez_back_start:
    c.bnez  a1, .Lcbnez_back_target
.Lcbnez_back_done:
    CHECK   "c.bnez -242", a0, 0
    li      a0, 0
    c.j     1f
    c.li    a0, 1                   /* skipped */
1:  CHECK   "c.j forward", a0, 0
    li      a0, 3
    li      a1, 0
    j       3f
2:  c.addi  a1, 2                   /* loop body */
    c.addi  a0, -1
3:  c.bnez  a0, 2b
    CHECK   "c.bnez loop", a1, 6
    li      a0, 0
    li      a1, 0
    c.beqz  a0, 1f
    c.li    a1, 1
1:  c.bnez  a0, 1f
    c.addi  a1, 2
1:  li      a0, 1
    c.beqz  a0, 1f
    c.addi  a1, 4
1:  CHECK   "c.beqz/c.bnez", a1, 6

    la      t0, .Lcjr_target
    li      a0, 0
    c.jr    t0
    c.li    a0, 1
.Lcjr_target:
    CHECK   "c.jr", a0, 0

    la      t0, .Lcjalr_target
    li      a0, 0
    c.jalr  t0
.Lcjalr_return:
    c.li    a0, 1
.Lcjalr_target:
    la      t1, .Lcjalr_return
    sub     t1, ra, t1
    CHECK   "c.jalr link", t1, 0
    CHECK   "c.jalr skipped", a0, 0
    /* c.jalr to a leaf function that returns with c.jr ra */
    la      t0, rvc_leaf
    li      a0, 20
    c.jalr  t0
    CHECK   "c.jalr call", a0, 42

    /* a 32-bit instruction at a 2-mod-4 address, then back to 4-aligned */
    .balign 4
    c.nop
    addi    a0, zero, 0x123         /* 32-bit: 0x123 does not fit c.li */
    .option push
    .option norvc
    addi    a0, a0, 0x111
    .option pop
    CHECK   "32-bit at 2 mod 4", a0, 0x234
    /* a 32-bit instruction straddling a page boundary */
    li      a0, 100
    call    rvc_straddle
    CHECK   "32-bit across a page", a0, 1100

    /* ---------------- C.EBREAK and the illegal all-zero halfword ---------------- */
    TRAP_RESET
.Lcebreak:
    c.ebreak
    CHECK_TRAP "c.ebreak cause", CAUSE_BREAKPOINT
    la      t0, trap_epc
    ld      t0, 0(t0)
    la      t1, .Lcebreak
    sub     t0, t0, t1
    CHECK   "c.ebreak mepc", t0, 0
    CHECK_MEM "c.ebreak count", trap_count, 1
    TRAP_RESET
.Lzero_insn:
    .half   0
    CHECK_TRAP "zero halfword cause", CAUSE_ILLEGAL
    la      t0, trap_epc
    ld      t0, 0(t0)
    la      t1, .Lzero_insn
    sub     t0, t0, t1
    CHECK   "zero halfword mepc", t0, 0

    /* A compressed instruction that is illegal in context (an FP load
     * with mstatus.FS = Off): mtval is 0 or the 16 instruction bits,
     * zero-extended (never the 32-bit expansion). */
    li      t0, 3 << 13
    csrc    mstatus, t0
    TRAP_RESET
    la      a1, rvc_data
.Lcfld_off:
    c.fld   fa0, 16(a1)
    li      t0, 3 << 13
    csrs    mstatus, t0
    CHECK_TRAP "c.fld with FS=Off: cause", CAUSE_ILLEGAL
    la      t0, trap_tval
    ld      t0, 0(t0)
    la      t1, .Lcfld_off
    lhu     t1, 0(t1)
    sub     t1, t0, t1
    seqz    t1, t1
    seqz    t0, t0
    or      t0, t0, t1
    CHECK   "c.fld with FS=Off: mtval is 0 or the 16 bits", t0, 1

    TEST_END

rvc_leaf:
    c.slli  a0, 1
    c.addi  a0, 2
    c.jr    ra

    /* rvc_straddle's first instruction is 32 bits at page offset 0xffe */
    .balign 4096
    .skip   4094 - 2, 0
    c.nop
rvc_straddle:
    .option push
    .option norvc
    addi    a0, a0, 1000
    .option pop
    c.jr    ra
