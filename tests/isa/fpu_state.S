/* F/D architectural state and traps: mstatus.FS (Off makes every FP
 * instruction and FP CSR access illegal, with no state change; writes to
 * f registers and fflags make it Dirty and set SD), reserved rounding
 * modes (static rm 5 and 6, dynamic with frm 5 to 7) and reserved
 * encodings raise illegal instruction, integer results written to x0 are
 * discarded, and FP loads and stores that fault change nothing. */
#include "test_macros.h"
#include "fpu_test_macros.h"

#define MSTATUS_FS_MASK  (3 << 13)
#define MSTATUS_FS_OFF   (0 << 13)
#define MSTATUS_FS_INITIAL (1 << 13)
#define MSTATUS_FS_CLEAN (2 << 13)
#define MSTATUS_FS_DIRTY (3 << 13)

#define UNMAPPED_ADDRESS 0x10000000000      /* 1 TiB: no RAM or device */

    .section .data
    .align  3
scratch:    .dword 0x3f800000, 0x4000000000000000

/* Sets mstatus.FS (uses t0). */
.macro SET_FS state
    li      t0, MSTATUS_FS_MASK
    csrc    mstatus, t0
    li      t0, \state
    csrs    mstatus, t0
.endm

/* Checks mstatus.FS (as 0..3) and mstatus.SD (uses t0). */
.macro CHECK_FS name, state, sd
    csrr    t0, mstatus
    srli    t0, t0, 13
    andi    t0, t0, 3
    CHECK   "\name: mstatus.FS", t0, \state
    csrr    t0, mstatus
    srli    t0, t0, 63
    CHECK   "\name: mstatus.SD", t0, \sd
.endm

/* Like CHECK_FS, for behaviour the specification fixes but QEMU 7.2 gets
 * wrong: it does not mark FS dirty when an instruction changes only
 * fflags. A quiet check (prints only on failure) that accepts anything on
 * QEMU, so both emulators print the same lines and count the same checks.
 * Uses t0, t1. */
.macro CHECK_FS_NOT_ON_QEMU name, state
    DETECT_QEMU t1
    csrr    t0, mstatus
    srli    t0, t0, 13
    andi    t0, t0, 3
    beqz    t1, .Lcheck\@
    li      t0, \state
.Lcheck\@:
    CHECK_QUIET "\name: mstatus.FS", t0, \state
.endm

/* Runs one instruction that must raise illegal instruction, and checks
 * the cause and that mtval holds the instruction's bits (read back from
 * memory, 16 or 32 bits). */
.macro EXPECT_ILLEGAL name, instruction:vararg
    TRAP_RESET
.Linstruction\@:
    \instruction
    CHECK_TRAP "\name", CAUSE_ILLEGAL
    la      t0, .Linstruction\@
    lhu     t1, 0(t0)
    andi    t2, t1, 3
    li      t3, 3
    bne     t2, t3, .Lcompressed\@
    lhu     t2, 2(t0)
    slli    t2, t2, 16
    or      t1, t1, t2
.Lcompressed\@:
    la      t0, trap_tval
    ld      t0, 0(t0)
    CHECK_REG "\name: mtval", t0, t1
.endm

/* Runs one instruction that must not trap. */
.macro EXPECT_NO_TRAP name, instruction:vararg
    TRAP_RESET
    \instruction
    CHECK_TRAP "\name", CAUSE_NO_TRAP
.endm

TEST_BEGIN "fpu_state"
    /* No automatic compression: the tests below name the compressed
     * instructions they want. */
    .option norvc
    la      s0, scratch

/* ---- mstatus.FS = Off: every FP instruction and FP CSR is illegal ---- */
    /* Known register and flag contents, to see that nothing changes. */
    li      t0, 0x1111111111111111
    fmv.d.x fa3, t0
    li      t0, 0x7f800001 | SINGLE_BOX   /* signalling NaN: would raise NV */
    fmv.d.x fa0, t0
    fmv.d.x fa1, t0
    li      t4, 0x2222222222222222
    li      t3, 0x3333333333333333
    csrwi   fcsr, 0
    SET_FS  MSTATUS_FS_OFF
    CHECK_FS "FS written Off", 0, 0
    EXPECT_ILLEGAL "FS=Off flw", flw fa3, 0(s0)
    EXPECT_ILLEGAL "FS=Off fld", fld fa3, 8(s0)
    EXPECT_ILLEGAL "FS=Off fsw", fsw fa0, 0(s0)
    EXPECT_ILLEGAL "FS=Off fsd", fsd fa0, 8(s0)
    EXPECT_ILLEGAL "FS=Off fadd.s", fadd.s fa3, fa0, fa1
    EXPECT_ILLEGAL "FS=Off fdiv.d", fdiv.d fa3, fa0, fa1
    EXPECT_ILLEGAL "FS=Off fmadd.d", fmadd.d fa3, fa0, fa1, fa2
    EXPECT_ILLEGAL "FS=Off fnmsub.s", fnmsub.s fa3, fa0, fa1, fa2
    EXPECT_ILLEGAL "FS=Off fsgnj.d", fsgnj.d fa3, fa0, fa1
    EXPECT_ILLEGAL "FS=Off fmin.s", fmin.s fa3, fa0, fa1
    EXPECT_ILLEGAL "FS=Off feq.s", feq.s t4, fa0, fa1
    EXPECT_ILLEGAL "FS=Off fclass.d", fclass.d t4, fa0
    EXPECT_ILLEGAL "FS=Off fmv.x.w", fmv.x.w t4, fa0
    EXPECT_ILLEGAL "FS=Off fmv.w.x", fmv.w.x fa3, t3
    EXPECT_ILLEGAL "FS=Off fmv.d.x", fmv.d.x fa3, t3
    EXPECT_ILLEGAL "FS=Off fcvt.w.s", fcvt.w.s t4, fa0, rtz
    EXPECT_ILLEGAL "FS=Off fcvt.d.l", fcvt.d.l fa3, t3
    EXPECT_ILLEGAL "FS=Off fcvt.s.d", fcvt.s.d fa3, fa0
    EXPECT_ILLEGAL "FS=Off fsqrt.d", fsqrt.d fa3, fa0
    EXPECT_ILLEGAL "FS=Off csrr fflags", csrr t4, fflags
    EXPECT_ILLEGAL "FS=Off csrr frm", csrr t4, frm
    EXPECT_ILLEGAL "FS=Off csrr fcsr", csrr t4, fcsr
    EXPECT_ILLEGAL "FS=Off csrw fcsr", csrw fcsr, t3
    /* The compressed loads and stores; mtval holds the 16-bit encoding. */
    .option push
    .option rvc
    EXPECT_ILLEGAL "FS=Off c.fld", c.fld fa3, 8(s0)
    EXPECT_ILLEGAL "FS=Off c.fsd", c.fsd fa0, 8(s0)
    EXPECT_ILLEGAL "FS=Off c.fldsp", c.fldsp fa3, 0(sp)
    EXPECT_ILLEGAL "FS=Off c.fsdsp", c.fsdsp fa0, 0(sp)
    .option pop
    CHECK_FS "FS still Off after the traps", 0, 0
    CHECK   "FS=Off: t4 unchanged", t4, 0x2222222222222222
    SET_FS  MSTATUS_FS_INITIAL
    fmv.x.d t5, fa3
    CHECK   "FS=Off: fa3 unchanged", t5, 0x1111111111111111
    csrr    t5, fcsr
    CHECK   "FS=Off: fcsr unchanged", t5, 0
    ld      t5, 8(s0)
    CHECK   "FS=Off: memory unchanged", t5, 0x4000000000000000

/* ---- FS becomes Dirty (and SD set) when f registers or fflags are
 * written; stores, moves to integer registers and quiet comparisons leave
 * it alone. ---- */
    SET_FS  MSTATUS_FS_CLEAN
    CHECK_FS "Clean", 2, 0
    fadd.s  fa3, fa0, fa0               /* writes fa3 (and NV) */
    CHECK_FS "Clean, then fadd.s", 3, 1
    SET_FS  MSTATUS_FS_INITIAL
    fmv.d.x fa3, zero
    CHECK_FS "Initial, then fmv.d.x", 3, 1
    SET_FS  MSTATUS_FS_CLEAN
    flw     fa3, 0(s0)
    CHECK_FS "Clean, then flw", 3, 1
    SET_FS  MSTATUS_FS_CLEAN
    fmv.w.x fa3, t3
    CHECK_FS "Clean, then fmv.w.x", 3, 1
    SET_FS  MSTATUS_FS_CLEAN
    fsgnj.d fa3, fa1, fa1
    CHECK_FS "Clean, then fsgnj.d", 3, 1
    SET_FS  MSTATUS_FS_CLEAN
    fcvt.d.w fa3, t3
    CHECK_FS "Clean, then fcvt.d.w", 3, 1
    SET_FS  MSTATUS_FS_CLEAN
    fsw     fa3, 0(s0)
    fsd     fa3, 8(s0)
    CHECK_FS "Clean, then fsw and fsd", 2, 0
    fmv.x.w t4, fa3
    fmv.x.d t4, fa3
    fclass.d t4, fa3
    CHECK_FS "Clean, then fmv.x.w, fmv.x.d, fclass.d", 2, 0
    csrwi   fflags, 0
    li      t1, 0x3f800000 | SINGLE_BOX
    fmv.d.x fa2, t1
    SET_FS  MSTATUS_FS_CLEAN
    feq.s   t4, fa2, fa2                /* quiet, raises nothing */
    flt.s   t4, fa2, fa2
    fcvt.w.s t4, fa2
    CHECK_FS "Clean, then feq/flt/fcvt.w.s raising nothing", 2, 0
    /* Raising a flag writes fflags, so FS must become Dirty. */
    SET_FS  MSTATUS_FS_CLEAN
    feq.s   t4, fa0, fa0                /* signalling NaN: NV */
    CHECK_FS_NOT_ON_QEMU "Clean, then feq.s raising NV", 3
    SET_FS  MSTATUS_FS_CLEAN
    li      t0, 0x3fc00000 | SINGLE_BOX
    fmv.d.x fa2, t0
    SET_FS  MSTATUS_FS_CLEAN
    fcvt.w.s t4, fa2, rtz               /* 1.5: NX */
    CHECK_FS_NOT_ON_QEMU "Clean, then fcvt.w.s raising NX", 3
    /* Nothing changes when an FP instruction traps. */
    SET_FS  MSTATUS_FS_CLEAN
    TRAP_RESET
    li      t1, UNMAPPED_ADDRESS
    flw     fa3, 0(t1)
    CHECK_TRAP "flw from unmapped memory", CAUSE_LOAD_ACCESS
    CHECK_MEM "flw from unmapped memory: mtval", trap_tval, UNMAPPED_ADDRESS
    CHECK_FS "Clean, then a faulting flw", 2, 0
    EXPECT_ILLEGAL "reserved rounding mode 5", .insn r OP_FP, 5, 0x00, fa3, fa0, fa1
    CHECK_FS "Clean, then an illegal fadd.s", 2, 0
    SET_FS  MSTATUS_FS_INITIAL

/* ---- Faulting loads and stores change nothing ---- */
    li      t0, 0x5555555555555555
    fmv.d.x fa3, t0
    li      t1, UNMAPPED_ADDRESS
    TRAP_RESET
    fld     fa3, 16(t1)
    CHECK_TRAP "fld from unmapped memory", CAUSE_LOAD_ACCESS
    CHECK_MEM "fld from unmapped memory: mtval", trap_tval, UNMAPPED_ADDRESS + 16
    fmv.x.d t5, fa3
    CHECK   "fld from unmapped memory: fa3 unchanged", t5, 0x5555555555555555
    TRAP_RESET
    fsw     fa3, 4(t1)
    CHECK_TRAP "fsw to unmapped memory", CAUSE_STORE_ACCESS
    CHECK_MEM "fsw to unmapped memory: mtval", trap_tval, UNMAPPED_ADDRESS + 4
    TRAP_RESET
    fsd     fa3, -8(t1)
    CHECK_TRAP "fsd to unmapped memory", CAUSE_STORE_ACCESS
    CHECK_MEM "fsd to unmapped memory: mtval", trap_tval, UNMAPPED_ADDRESS - 8

/* ---- Reserved rounding modes ---- */
    csrwi   fcsr, 0
    EXPECT_ILLEGAL "fadd.s rm=5", .insn r OP_FP, 5, 0x00, fa3, fa0, fa1
    EXPECT_ILLEGAL "fadd.s rm=6", .insn r OP_FP, 6, 0x00, fa3, fa0, fa1
    EXPECT_ILLEGAL "fmul.d rm=5", .insn r OP_FP, 5, 0x09, fa3, fa0, fa1
    EXPECT_ILLEGAL "fsqrt.d rm=6", .insn r OP_FP, 6, 0x2d, fa3, fa0, f0
    EXPECT_ILLEGAL "fmadd.s rm=5", .insn r4 MADD, 5, 0, fa3, fa0, fa1, fa2
    EXPECT_ILLEGAL "fnmadd.d rm=6", .insn r4 NMADD, 6, 1, fa3, fa0, fa1, fa2
    EXPECT_ILLEGAL "fcvt.w.s rm=5", .insn r OP_FP, 5, 0x60, t4, fa0, x0
    EXPECT_ILLEGAL "fcvt.s.l rm=6", .insn r OP_FP, 6, 0x68, fa3, t3, x2
    EXPECT_ILLEGAL "fcvt.d.w rm=5", .insn r OP_FP, 5, 0x69, fa3, t3, x0
    EXPECT_ILLEGAL "fcvt.s.d rm=5", .insn r OP_FP, 5, 0x20, fa3, fa0, f1
    EXPECT_ILLEGAL "fcvt.d.s rm=6", .insn r OP_FP, 6, 0x21, fa3, fa0, f0
    /* dyn with frm = 5, 6, 7 */
    fsrmi   5
    EXPECT_ILLEGAL "fadd.s dyn, frm=5", fadd.s fa3, fa0, fa1, dyn
    EXPECT_ILLEGAL "fcvt.d.w dyn, frm=5", .insn r OP_FP, 7, 0x69, fa3, t3, x0
    EXPECT_ILLEGAL "fcvt.d.s dyn, frm=5", .insn r OP_FP, 7, 0x21, fa3, fa0, f0
    fsrmi   6
    EXPECT_ILLEGAL "fmsub.d dyn, frm=6", fmsub.d fa3, fa0, fa1, fa2, dyn
    EXPECT_ILLEGAL "fcvt.lu.d dyn, frm=6", fcvt.lu.d t4, fa0, dyn
    fsrmi   7
    EXPECT_ILLEGAL "fsqrt.s dyn, frm=7", fsqrt.s fa3, fa0, dyn
    EXPECT_ILLEGAL "fcvt.s.wu dyn, frm=7", fcvt.s.wu fa3, t3, dyn
    /* Instructions without a rounding mode do not care about frm; a static
     * rounding mode does not either. */
    li      t0, 0x3f800000 | SINGLE_BOX
    fmv.d.x fa0, t0
    li      t0, 0xc0000000 | SINGLE_BOX
    fmv.d.x fa1, t0
    EXPECT_NO_TRAP "fsgnj.s with frm=7", fsgnj.s fa3, fa0, fa1
    fmv.x.d t4, fa3
    CHECK   "fsgnj.s with frm=7: result", t4, 0xffffffffbf800000
    EXPECT_NO_TRAP "fmin.s with frm=7", fmin.s fa3, fa0, fa1
    EXPECT_NO_TRAP "feq.s with frm=7", feq.s t4, fa0, fa1
    EXPECT_NO_TRAP "fclass.s with frm=7", fclass.s t4, fa0
    EXPECT_NO_TRAP "fmv.x.w with frm=7", fmv.x.w t4, fa0
    EXPECT_NO_TRAP "flw with frm=7", flw fa3, 0(s0)
    EXPECT_NO_TRAP "fadd.s rne with frm=7", fadd.s fa3, fa0, fa1, rne
    fmv.x.d t4, fa3
    CHECK   "fadd.s rne with frm=7: result", t4, 0xffffffffbf800000
    csrr    t4, frm
    CHECK   "frm reads back 7", t4, 7
    fsrmi   0

/* ---- Reserved encodings ---- */
    EXPECT_ILLEGAL "fadd.q (fmt 3)", .insn r OP_FP, 0, 0x03, fa3, fa0, fa1
    EXPECT_ILLEGAL "fmadd.q (fmt 3)", .insn r4 MADD, 0, 3, fa3, fa0, fa1, fa2
    EXPECT_ILLEGAL "flq", .insn i LOAD_FP, 4, fa3, 0(s0)
    EXPECT_ILLEGAL "fsq", .insn s STORE_FP, 4, fa0, 0(s0)
    EXPECT_ILLEGAL "LOAD-FP funct3 7", .insn i LOAD_FP, 7, fa3, 0(s0)
    EXPECT_ILLEGAL "fsqrt.s with rs2=1", .insn r OP_FP, 0, 0x2c, fa3, fa0, f1
    EXPECT_ILLEGAL "fcvt.w.s with rs2=4", .insn r OP_FP, 1, 0x60, t4, fa0, x4
    EXPECT_ILLEGAL "fcvt.s.w with rs2=5", .insn r OP_FP, 1, 0x68, fa3, t3, x5
    EXPECT_ILLEGAL "fcvt.s.s", .insn r OP_FP, 0, 0x20, fa3, fa0, f0
    EXPECT_ILLEGAL "fcvt.d.d", .insn r OP_FP, 0, 0x21, fa3, fa0, f1
    EXPECT_ILLEGAL "fsgnj.s funct3=3", .insn r OP_FP, 3, 0x10, fa3, fa0, fa1
    EXPECT_ILLEGAL "fmin.s funct3=3", .insn r OP_FP, 3, 0x14, fa3, fa0, fa1
    EXPECT_ILLEGAL "feq.d funct3=3", .insn r OP_FP, 3, 0x51, t4, fa0, fa1
    EXPECT_ILLEGAL "fmv.x.w funct3=2", .insn r OP_FP, 2, 0x70, t4, fa0, f0
    EXPECT_ILLEGAL "fclass.s with rs2=1", .insn r OP_FP, 1, 0x70, t4, fa0, f1
    EXPECT_ILLEGAL "fmv.w.x with rs2=1", .insn r OP_FP, 0, 0x78, fa3, t3, x1
    EXPECT_ILLEGAL "fmv.d.x funct3=1", .insn r OP_FP, 1, 0x79, fa3, t3, x0
    EXPECT_ILLEGAL "OP-FP funct7 0x7c", .insn r OP_FP, 0, 0x7c, fa3, fa0, fa1

/* ---- Integer results written to x0 are discarded; the flags are not ---- */
    li      t0, 0x7f800001 | SINGLE_BOX
    fmv.d.x fa0, t0
    csrwi   fflags, 0
    feq.s   x0, fa0, fa0
    csrr    t5, fflags
    CHECK   "feq.s x0 with a signalling NaN: x0", x0, 0
    CHECK   "feq.s x0 with a signalling NaN: fflags", t5, FFLAGS_NV
    csrwi   fflags, 0
    fcvt.w.s x0, fa0, rtz
    fclass.s x0, fa0
    fmv.x.w x0, fa0
    fmv.x.d x0, fa0
    fcvt.lu.d x0, fa0, rtz
    mv      t4, x0
    csrr    t5, fflags
    CHECK   "fcvt/fclass/fmv to x0: x0", t4, 0
    CHECK   "fcvt/fclass/fmv to x0: fflags", t5, FFLAGS_NV

/* ---- fcsr: frm and fflags fields ---- */
    li      t0, 0xff
    csrw    fcsr, t0
    csrr    t4, fflags
    CHECK   "fcsr 0xff: fflags", t4, 0x1f
    csrr    t4, frm
    CHECK   "fcsr 0xff: frm", t4, 7
    csrwi   fcsr, 0
    li      t0, 0x3f800000 | SINGLE_BOX
    fmv.d.x fa0, t0
    li      t0, 0x33800000 | SINGLE_BOX  /* 2^-24: 1 + 2^-24 is a tie */
    fmv.d.x fa1, t0
    fsrmi   4
    fadd.s  fa3, fa0, fa1               /* the default rm is dyn */
    csrr    t4, fcsr
    CHECK   "fadd.s with frm=RMM: fcsr", t4, (4 << 5) | FFLAGS_NX
    fmv.x.d t4, fa3
    CHECK   "fadd.s with frm=RMM: result", t4, 0xffffffff3f800001
    csrwi   fcsr, 0

TEST_END
