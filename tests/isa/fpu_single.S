/* The F extension: single-precision arithmetic, NaN-boxing and the
 * canonical NaN, signalling and quiet NaNs, the five rounding modes (static
 * and dynamic, including round to nearest, ties to max magnitude on exact
 * ties), the accrued exception flags of every operation, overflow and
 * underflow (tininess after rounding), subnormals, division by zero,
 * square root, the fused multiply-add forms, FMIN/FMAX, comparisons,
 * FCLASS, sign injection, moves, and FLW/FSW.
 *
 * Every expected value below follows from IEEE 754 and the RISC-V
 * specification; the comments say why. */
#include "test_macros.h"
#include "fpu_test_macros.h"

#define ONE             0x3f800000      /* 1.0 */
#define TWO             0x40000000
#define THREE           0x40400000
#define FOUR            0x40800000
#define HALF            0x3f000000
#define MINUS_ONE       0xbf800000
#define MINUS_TWO       0xc0000000
#define PLUS_ZERO       0x00000000
#define MINUS_ZERO      0x80000000
#define INFINITY        0x7f800000
#define MINUS_INFINITY  0xff800000
#define CANONICAL_NAN   0x7fc00000
#define SIGNALING_NAN   0x7f800001
#define MAXIMUM         0x7f7fffff      /* largest finite: (2 - 2^-23) * 2^127 */
#define MINUS_MAXIMUM   0xff7fffff
#define MIN_NORMAL      0x00800000      /* 2^-126 */
#define MIN_SUBNORMAL   0x00000001      /* 2^-149 */
#define MAX_SUBNORMAL   0x007fffff
#define ONE_PLUS_ULP    0x3f800001      /* 1 + 2^-23, the successor of 1 */
#define HALF_ULP_OF_ONE 0x33800000      /* 2^-24: 1 + this is a tie */
#define MINUS_HALF_ULP_OF_ONE 0xb3800000

#define NV FFLAGS_NV
#define DZ FFLAGS_DZ
#define OF FFLAGS_OF
#define UF FFLAGS_UF
#define NX FFLAGS_NX

    .section .data
    .align  3
scratch:    .dword 0, 0

TEST_BEGIN "fpu_single"

/* ---- NaN-boxing: a single operand whose upper 32 bits are not all ones
 * reads as the canonical NaN (a quiet NaN, so no invalid flag). ---- */
    FP_OP2  u, fadd.s, rne, 0x000000003f800000, 0xffffffff3f800000, CANONICAL_NAN, 0
    FP_OP2  u, fadd.s, rne, 0xfffffffe3f800000, 0xffffffff3f800000, CANONICAL_NAN, 0
    FP_OP2  u, fadd.s, rne, 0xffffffff3f800000, 0x7fffffff3f800000, CANONICAL_NAN, 0
    FP_OP2  u, fadd.s, rne, 0xffffffff3f800000, 0xffffffff3f800000, TWO, 0
    /* Sign injection reads unboxed operands as the canonical NaN too. */
    FP_OP2_EXACT u, fsgnj.s, 0x000000003f800000, 0xffffffffbf800000, 0xffc00000, 0
    FP_OP2_EXACT u, fsgnjn.s, 0xffffffff3f800000, 0x00000000bf800000, MINUS_ONE, 0
    FP_OP2_EXACT u, fsgnjx.s, 0xffffffffbf800000, 0x12345678bf800000, MINUS_ONE, 0
    FP_OP2_EXACT u, fmax.s, 0x0000000040000000, 0xffffffff3f800000, ONE, 0
    FP_COMPARE u, feq.s, 0x000000003f800000, 0x000000003f800000, 0, 0
    FP_COMPARE u, flt.s, 0x000000003f800000, 0xffffffff3f800000, 0, NV
    FP_TO_INTEGER_EXACT u, fclass.s, 0x00000000ff800000, 0x200
    FP_TO_INTEGER u, fcvt.w.s, rne, 0x0000000040000000, 0x7fffffff, NV
    /* FMV.X.W moves the raw low half, boxed or not, sign-extended. */
    FP_TO_INTEGER_EXACT u, fmv.x.w, 0x12345678cafef00d, 0xffffffffcafef00d
    FP_TO_INTEGER_EXACT u, fmv.x.w, 0xffffffff0badf00d, 0x000000000badf00d
    /* FMV.W.X NaN-boxes the low half of the integer register. */
    li      t3, 0x12345678cafef00d
    fmv.w.x fa3, t3
    FPU_CHECK_RESULT "fmv.w.x 0x12345678cafef00d", s, 0xcafef00d, 0
    /* FLW NaN-boxes; FSW stores the low half whether boxed or not, and
     * only four bytes. */
    la      t1, scratch
    li      t0, 0x1122334455667788
    sd      t0, 0(t1)
    li      t0, 0x40490fdb
    sw      t0, 0(t1)
    flw     fa3, 0(t1)
    FPU_CHECK_RESULT "flw 0x40490fdb", s, 0x40490fdb, 0
    li      t0, 0x0123456789abcdef
    fmv.d.x fa0, t0
    fsw     fa0, 0(t1)
    ld      t4, 0(t1)
    CHECK   "fsw of an unboxed register", t4, 0x1122334489abcdef
    li      t0, 0x7f800001
    sw      t0, 12(t1)
    flw     fa3, 12(t1)             /* loads move bits: no canonicalisation */
    FPU_CHECK_RESULT "flw signalling NaN", s, SIGNALING_NAN, 0

/* ---- NaN results are always the canonical NaN 0x7fc00000; signalling
 * NaN operands and invalid operations raise NV. ---- */
    FP_OP2  s, fadd.s, rne, 0x7fc00123, ONE, CANONICAL_NAN, 0
    FP_OP2  s, fadd.s, rne, 0xffc00000, ONE, CANONICAL_NAN, 0
    FP_OP2  s, fmul.s, rne, ONE, 0xffc00001, CANONICAL_NAN, 0
    FP_OP2  s, fadd.s, rne, SIGNALING_NAN, ONE, CANONICAL_NAN, NV
    FP_OP2  s, fsub.s, rne, ONE, 0xff800005, CANONICAL_NAN, NV
    FP_OP2  s, fadd.s, rne, SIGNALING_NAN, CANONICAL_NAN, CANONICAL_NAN, NV
    FP_OP2  s, fsub.s, rne, INFINITY, INFINITY, CANONICAL_NAN, NV
    FP_OP2  s, fadd.s, rne, INFINITY, MINUS_INFINITY, CANONICAL_NAN, NV
    FP_OP2  s, fadd.s, rne, INFINITY, INFINITY, INFINITY, 0
    FP_OP2  s, fmul.s, rne, PLUS_ZERO, INFINITY, CANONICAL_NAN, NV
    FP_OP2  s, fmul.s, rne, MINUS_INFINITY, MINUS_ZERO, CANONICAL_NAN, NV
    FP_OP2  s, fdiv.s, rne, PLUS_ZERO, PLUS_ZERO, CANONICAL_NAN, NV
    FP_OP2  s, fdiv.s, rne, INFINITY, MINUS_INFINITY, CANONICAL_NAN, NV
    FP_OP2  s, fdiv.s, rne, CANONICAL_NAN, PLUS_ZERO, CANONICAL_NAN, 0

/* ---- Square root ---- */
    FP_OP1  s, fsqrt.s, rne, MINUS_ONE, CANONICAL_NAN, NV
    FP_OP1  s, fsqrt.s, rne, MINUS_INFINITY, CANONICAL_NAN, NV
    FP_OP1  s, fsqrt.s, rne, MINUS_ZERO, MINUS_ZERO, 0          /* sqrt(-0) = -0 */
    FP_OP1  s, fsqrt.s, rne, SIGNALING_NAN, CANONICAL_NAN, NV
    FP_OP1  s, fsqrt.s, rne, 0xffc00000, CANONICAL_NAN, 0
    FP_OP1  s, fsqrt.s, rne, INFINITY, INFINITY, 0
    FP_OP1  s, fsqrt.s, rne, FOUR, TWO, 0
    /* sqrt(2) = 1.41421356..., between 0x3fb504f3 (1.41421353...) and
     * 0x3fb504f4 (1.41421365...), nearer the first. */
    FP_OP1  s, fsqrt.s, rne, TWO, 0x3fb504f3, NX
    FP_OP1  s, fsqrt.s, rtz, TWO, 0x3fb504f3, NX
    FP_OP1  s, fsqrt.s, rdn, TWO, 0x3fb504f3, NX
    FP_OP1  s, fsqrt.s, rup, TWO, 0x3fb504f4, NX
    FP_OP1  s, fsqrt.s, rmm, TWO, 0x3fb504f3, NX
    /* sqrt(2^-149) = sqrt(2) * 2^-75: a subnormal operand, normal result. */
    FP_OP1  s, fsqrt.s, rne, MIN_SUBNORMAL, 0x1a3504f3, NX

/* ---- Rounding modes on exact ties and near ties ---- */
    /* 1 + 2^-24 is halfway between 1 (even) and 1 + 2^-23 (odd). */
    FP_OP2  s, fadd.s, rne, ONE, HALF_ULP_OF_ONE, ONE, NX
    FP_OP2  s, fadd.s, rtz, ONE, HALF_ULP_OF_ONE, ONE, NX
    FP_OP2  s, fadd.s, rdn, ONE, HALF_ULP_OF_ONE, ONE, NX
    FP_OP2  s, fadd.s, rup, ONE, HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    FP_OP2  s, fadd.s, rmm, ONE, HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    /* (1 + 2^-23) + 2^-24 is halfway between 1 + 2^-23 (odd) and
     * 1 + 2^-22 (even): ties-to-even and ties-to-max-magnitude agree. */
    FP_OP2  s, fadd.s, rne, ONE_PLUS_ULP, HALF_ULP_OF_ONE, 0x3f800002, NX
    FP_OP2  s, fadd.s, rtz, ONE_PLUS_ULP, HALF_ULP_OF_ONE, 0x3f800001, NX
    FP_OP2  s, fadd.s, rdn, ONE_PLUS_ULP, HALF_ULP_OF_ONE, 0x3f800001, NX
    FP_OP2  s, fadd.s, rup, ONE_PLUS_ULP, HALF_ULP_OF_ONE, 0x3f800002, NX
    FP_OP2  s, fadd.s, rmm, ONE_PLUS_ULP, HALF_ULP_OF_ONE, 0x3f800002, NX
    /* Negative tie: -1 - 2^-24. Max magnitude means away from zero. */
    FP_OP2  s, fadd.s, rne, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, MINUS_ONE, NX
    FP_OP2  s, fadd.s, rtz, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, MINUS_ONE, NX
    FP_OP2  s, fadd.s, rdn, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, 0xbf800001, NX
    FP_OP2  s, fadd.s, rup, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, MINUS_ONE, NX
    FP_OP2  s, fadd.s, rmm, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, 0xbf800001, NX
    FP_OP2  s, fsub.s, rmm, ONE, MINUS_HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    FP_OP2  s, fsub.s, rmm, MINUS_ONE, HALF_ULP_OF_ONE, 0xbf800001, NX
    /* Ties among integers: 2^24 + 1 (between 2^24 and 2^24 + 2) and
     * 2^24 + 3 (between 2^24 + 2, odd, and 2^24 + 4, even). */
    FP_OP2  s, fadd.s, rne, 0x4b800000, ONE, 0x4b800000, NX
    FP_OP2  s, fadd.s, rmm, 0x4b800000, ONE, 0x4b800001, NX
    FP_OP2  s, fadd.s, rne, 0x4b800000, THREE, 0x4b800002, NX
    FP_OP2  s, fadd.s, rmm, 0x4b800000, THREE, 0x4b800002, NX
    FP_OP2  s, fadd.s, rtz, 0x4b800000, THREE, 0x4b800001, NX
    /* 1 + 0.75 ulp and 1 + 0.25 ulp are not ties. */
    FP_OP2  s, fadd.s, rne, ONE, 0x33c00000, ONE_PLUS_ULP, NX
    FP_OP2  s, fadd.s, rtz, ONE, 0x33c00000, ONE, NX
    FP_OP2  s, fadd.s, rmm, ONE, 0x33c00000, ONE_PLUS_ULP, NX
    FP_OP2  s, fadd.s, rne, ONE, 0x33000000, ONE, NX
    FP_OP2  s, fadd.s, rmm, ONE, 0x33000000, ONE, NX
    FP_OP2  s, fadd.s, rup, ONE, 0x33000000, ONE_PLUS_ULP, NX
    FP_OP2  s, fadd.s, rmm, ONE, 0x34000000, ONE_PLUS_ULP, 0     /* exact */
    /* An exact zero sum is +0, except -0 when rounding down; -0 + -0 = -0. */
    FP_OP2  s, fsub.s, rne, ONE, ONE, PLUS_ZERO, 0
    FP_OP2  s, fsub.s, rmm, ONE, ONE, PLUS_ZERO, 0
    FP_OP2  s, fsub.s, rdn, ONE, ONE, MINUS_ZERO, 0
    FP_OP2  s, fadd.s, rne, MINUS_ZERO, MINUS_ZERO, MINUS_ZERO, 0
    FP_OP2  s, fadd.s, rne, MINUS_ZERO, PLUS_ZERO, PLUS_ZERO, 0
    FP_OP2  s, fadd.s, rdn, MINUS_ZERO, PLUS_ZERO, MINUS_ZERO, 0
    FP_OP2  s, fmul.s, rne, MINUS_ONE, PLUS_ZERO, MINUS_ZERO, 0
    /* A product that is a tie: (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24. */
    FP_OP2  s, fmul.s, rne, 0x3f800800, 0x3f800800, 0x3f801000, NX
    FP_OP2  s, fmul.s, rmm, 0x3f800800, 0x3f800800, 0x3f801001, NX
    FP_OP2  s, fmul.s, rup, 0x3f800800, 0x3f800800, 0x3f801001, NX

/* ---- The dynamic rounding mode (rm = dyn reads fcsr.frm) ---- */
    fsrmi   4                                   /* RMM */
    FP_OP2  s, fadd.s, dyn, ONE, HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    FP_OP2  s, fadd.s, rne, ONE, HALF_ULP_OF_ONE, ONE, NX      /* static rm wins */
    fsrmi   3                                   /* RUP */
    FP_OP2  s, fadd.s, dyn, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, MINUS_ONE, NX
    fsrmi   2                                   /* RDN */
    FP_OP2  s, fadd.s, dyn, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, 0xbf800001, NX
    FP_OP2  s, fsub.s, dyn, ONE, ONE, MINUS_ZERO, 0
    fsrmi   1                                   /* RTZ */
    FP_OP2  s, fadd.s, dyn, ONE, 0x33c00000, ONE, NX
    fsrmi   0                                   /* RNE */
    FP_OP2  s, fadd.s, dyn, ONE, 0x33c00000, ONE_PLUS_ULP, NX

/* ---- Overflow: round to nearest gives infinity; the directed modes give
 * the largest finite number when rounding toward zero. ---- */
    FP_OP2  s, fmul.s, rne, MAXIMUM, TWO, INFINITY, OF | NX
    FP_OP2  s, fmul.s, rtz, MAXIMUM, TWO, MAXIMUM, OF | NX
    FP_OP2  s, fmul.s, rdn, MAXIMUM, TWO, MAXIMUM, OF | NX
    FP_OP2  s, fmul.s, rup, MAXIMUM, TWO, INFINITY, OF | NX
    FP_OP2  s, fmul.s, rmm, MAXIMUM, TWO, INFINITY, OF | NX
    FP_OP2  s, fmul.s, rne, MINUS_MAXIMUM, TWO, MINUS_INFINITY, OF | NX
    FP_OP2  s, fmul.s, rtz, MINUS_MAXIMUM, TWO, MINUS_MAXIMUM, OF | NX
    FP_OP2  s, fmul.s, rdn, MINUS_MAXIMUM, TWO, MINUS_INFINITY, OF | NX
    FP_OP2  s, fmul.s, rup, MINUS_MAXIMUM, TWO, MINUS_MAXIMUM, OF | NX
    FP_OP2  s, fmul.s, rmm, MINUS_MAXIMUM, TWO, MINUS_INFINITY, OF | NX
    FP_OP2  s, fadd.s, rne, MAXIMUM, MAXIMUM, INFINITY, OF | NX
    FP_OP2  s, fadd.s, rne, MAXIMUM, ONE, MAXIMUM, NX
    /* MAXIMUM + 2^103 is halfway between MAXIMUM (odd) and 2^128: nearest
     * modes overflow; rounding toward zero stays finite without OF. */
    FP_OP2  s, fadd.s, rne, MAXIMUM, 0x73000000, INFINITY, OF | NX
    FP_OP2  s, fadd.s, rmm, MAXIMUM, 0x73000000, INFINITY, OF | NX
    FP_OP2  s, fadd.s, rtz, MAXIMUM, 0x73000000, MAXIMUM, NX

/* ---- Underflow and subnormals. UF needs a tiny and inexact result;
 * tininess is detected after rounding. ---- */
    FP_OP2  s, fmul.s, rne, MIN_NORMAL, HALF, 0x00400000, 0      /* exact subnormal */
    FP_OP2  s, fadd.s, rne, MIN_SUBNORMAL, MIN_SUBNORMAL, 0x00000002, 0
    FP_OP2  s, fadd.s, rne, MAX_SUBNORMAL, MIN_SUBNORMAL, MIN_NORMAL, 0
    FP_OP2  s, fsub.s, rne, MIN_NORMAL, MIN_SUBNORMAL, MAX_SUBNORMAL, 0
    /* 3 * 2^-149 / 2 = 1.5 * 2^-149: a tie between 2^-149 and 2^-148. */
    FP_OP2  s, fmul.s, rne, 0x00000003, HALF, 0x00000002, UF | NX
    FP_OP2  s, fmul.s, rtz, 0x00000003, HALF, 0x00000001, UF | NX
    FP_OP2  s, fmul.s, rdn, 0x00000003, HALF, 0x00000001, UF | NX
    FP_OP2  s, fmul.s, rup, 0x00000003, HALF, 0x00000002, UF | NX
    FP_OP2  s, fmul.s, rmm, 0x00000003, HALF, 0x00000002, UF | NX
    /* 2^-150: a tie between 0 and 2^-149. */
    FP_OP2  s, fmul.s, rne, MIN_SUBNORMAL, HALF, PLUS_ZERO, UF | NX
    FP_OP2  s, fmul.s, rtz, MIN_SUBNORMAL, HALF, PLUS_ZERO, UF | NX
    FP_OP2  s, fmul.s, rup, MIN_SUBNORMAL, HALF, MIN_SUBNORMAL, UF | NX
    FP_OP2  s, fmul.s, rmm, MIN_SUBNORMAL, HALF, MIN_SUBNORMAL, UF | NX
    FP_OP2  s, fdiv.s, rmm, MIN_SUBNORMAL, TWO, MIN_SUBNORMAL, UF | NX
    FP_OP2  s, fdiv.s, rne, MIN_SUBNORMAL, TWO, PLUS_ZERO, UF | NX
    FP_OP2  s, fmul.s, rne, 0x80000001, HALF, MINUS_ZERO, UF | NX
    FP_OP2  s, fmul.s, rdn, 0x80000001, HALF, 0x80000001, UF | NX
    FP_OP2  s, fmul.s, rmm, 0x80000001, HALF, 0x80000001, UF | NX
    FP_OP2  s, fmul.s, rup, 0x80000001, HALF, MINUS_ZERO, UF | NX
    /* 2^-126 * (1 - 2^-24) = 2^-126 - 2^-150: with an unbounded exponent it
     * is exact and below 2^-126, so tiny; it rounds (a tie, to even) to
     * 2^-126 in the subnormal grid. Tiny and inexact: UF. */
    FP_OP2  s, fmul.s, rne, MIN_NORMAL, 0x3f7fffff, MIN_NORMAL, UF | NX
    FP_OP2  s, fmul.s, rmm, MIN_NORMAL, 0x3f7fffff, MIN_NORMAL, UF | NX
    FP_OP2  s, fmul.s, rtz, MIN_NORMAL, 0x3f7fffff, MAX_SUBNORMAL, UF | NX
    /* 18631 * 2^-140 * 1801 * 2^-11 = (2^25 - 1) * 2^-151 = 2^-126 - 2^-151:
     * rounding to 24 bits with an unbounded exponent gives 2^-126, which is
     * not tiny, so only NX. Tininess before rounding would have said UF. */
    FP_OP2  s, fmul.s, rne, 0x00918e00, 0x3f612000, MIN_NORMAL, NX
    FP_OP2  s, fmul.s, rmm, 0x00918e00, 0x3f612000, MIN_NORMAL, NX
    FP_OP2  s, fmul.s, rup, 0x00918e00, 0x3f612000, MIN_NORMAL, NX
    FP_OP2  s, fmul.s, rtz, 0x00918e00, 0x3f612000, MAX_SUBNORMAL, UF | NX
    FP_OP2  s, fmul.s, rdn, 0x00918e00, 0x3f612000, MAX_SUBNORMAL, UF | NX

/* ---- Division ---- */
    FP_OP2  s, fdiv.s, rne, ONE, PLUS_ZERO, INFINITY, DZ
    FP_OP2  s, fdiv.s, rne, MINUS_ONE, PLUS_ZERO, MINUS_INFINITY, DZ
    FP_OP2  s, fdiv.s, rne, ONE, MINUS_ZERO, MINUS_INFINITY, DZ
    FP_OP2  s, fdiv.s, rne, INFINITY, PLUS_ZERO, INFINITY, 0
    FP_OP2  s, fdiv.s, rne, ONE, INFINITY, PLUS_ZERO, 0
    /* 1/3 = 0x3eaaaaaa.aaa...: the discarded part is 2/3 of an ulp. */
    FP_OP2  s, fdiv.s, rne, ONE, THREE, 0x3eaaaaab, NX
    FP_OP2  s, fdiv.s, rtz, ONE, THREE, 0x3eaaaaaa, NX
    FP_OP2  s, fdiv.s, rdn, ONE, THREE, 0x3eaaaaaa, NX
    FP_OP2  s, fdiv.s, rup, ONE, THREE, 0x3eaaaaab, NX
    FP_OP2  s, fdiv.s, rmm, ONE, THREE, 0x3eaaaaab, NX
    FP_OP2  s, fdiv.s, rdn, MINUS_ONE, THREE, 0xbeaaaaab, NX
    FP_OP2  s, fdiv.s, rup, MINUS_ONE, THREE, 0xbeaaaaaa, NX
    FP_OP2  s, fdiv.s, rne, TWO, THREE, 0x3f2aaaab, NX
    FP_OP2  s, fdiv.s, rtz, TWO, THREE, 0x3f2aaaaa, NX

/* ---- Flags accrue until cleared ---- */
    csrwi   fflags, 0
    FPU_LOAD s, fa0, ONE
    FPU_LOAD s, fa1, PLUS_ZERO
    FPU_LOAD s, fa2, HALF_ULP_OF_ONE
    fdiv.s  fa3, fa0, fa1                       /* DZ */
    fadd.s  fa3, fa0, fa2                       /* NX */
    fsgnj.s fa3, fa0, fa2                       /* no flag, clears none */
    csrr    t5, fflags
    CHECK   "accrued fflags after fdiv 1/0, inexact fadd, fsgnj", t5, DZ | NX
    csrr    t5, fcsr
    CHECK   "fcsr with frm 0", t5, DZ | NX

/* ---- FMIN/FMAX: -0 < +0; a NaN operand gives the other operand; two
 * NaNs give the canonical NaN; a signalling NaN raises NV. ---- */
    FP_OP2_EXACT s, fmin.s, MINUS_ZERO, PLUS_ZERO, MINUS_ZERO, 0
    FP_OP2_EXACT s, fmin.s, PLUS_ZERO, MINUS_ZERO, MINUS_ZERO, 0
    FP_OP2_EXACT s, fmax.s, MINUS_ZERO, PLUS_ZERO, PLUS_ZERO, 0
    FP_OP2_EXACT s, fmax.s, PLUS_ZERO, MINUS_ZERO, PLUS_ZERO, 0
    FP_OP2_EXACT s, fmin.s, ONE, TWO, ONE, 0
    FP_OP2_EXACT s, fmax.s, ONE, TWO, TWO, 0
    FP_OP2_EXACT s, fmin.s, MINUS_ONE, MINUS_INFINITY, MINUS_INFINITY, 0
    FP_OP2_EXACT s, fmax.s, INFINITY, MAXIMUM, INFINITY, 0
    FP_OP2_EXACT s, fmin.s, MIN_SUBNORMAL, 0x80000001, 0x80000001, 0
    FP_OP2_EXACT s, fmin.s, CANONICAL_NAN, ONE, ONE, 0
    FP_OP2_EXACT s, fmin.s, ONE, CANONICAL_NAN, ONE, 0
    FP_OP2_EXACT s, fmax.s, 0xffc00123, MINUS_ONE, MINUS_ONE, 0
    FP_OP2_EXACT s, fmin.s, SIGNALING_NAN, ONE, ONE, NV
    FP_OP2_EXACT s, fmax.s, ONE, SIGNALING_NAN, ONE, NV
    FP_OP2_EXACT s, fmin.s, CANONICAL_NAN, CANONICAL_NAN, CANONICAL_NAN, 0
    FP_OP2_EXACT s, fmax.s, 0xffc00123, 0x7fc00456, CANONICAL_NAN, 0
    FP_OP2_EXACT s, fmin.s, SIGNALING_NAN, CANONICAL_NAN, CANONICAL_NAN, NV

/* ---- Comparisons: FEQ is quiet (NV only for signalling NaNs), FLT and
 * FLE signal NV for any NaN. ---- */
    FP_COMPARE s, feq.s, ONE, ONE, 1, 0
    FP_COMPARE s, feq.s, MINUS_ZERO, PLUS_ZERO, 1, 0
    FP_COMPARE s, flt.s, MINUS_ZERO, PLUS_ZERO, 0, 0
    FP_COMPARE s, fle.s, MINUS_ZERO, PLUS_ZERO, 1, 0
    FP_COMPARE s, flt.s, ONE, TWO, 1, 0
    FP_COMPARE s, flt.s, TWO, ONE, 0, 0
    FP_COMPARE s, fle.s, TWO, TWO, 1, 0
    FP_COMPARE s, flt.s, MINUS_INFINITY, INFINITY, 1, 0
    FP_COMPARE s, fle.s, INFINITY, INFINITY, 1, 0
    FP_COMPARE s, flt.s, 0x80000001, MIN_SUBNORMAL, 1, 0
    FP_COMPARE s, feq.s, CANONICAL_NAN, ONE, 0, 0
    FP_COMPARE s, feq.s, CANONICAL_NAN, CANONICAL_NAN, 0, 0
    FP_COMPARE s, feq.s, SIGNALING_NAN, ONE, 0, NV
    FP_COMPARE s, feq.s, ONE, SIGNALING_NAN, 0, NV
    FP_COMPARE s, flt.s, CANONICAL_NAN, ONE, 0, NV
    FP_COMPARE s, flt.s, ONE, CANONICAL_NAN, 0, NV
    FP_COMPARE s, fle.s, CANONICAL_NAN, CANONICAL_NAN, 0, NV
    FP_COMPARE s, fle.s, SIGNALING_NAN, ONE, 0, NV

/* ---- FCLASS: one bit per class ---- */
    FP_TO_INTEGER_EXACT s, fclass.s, MINUS_INFINITY, 0x001
    FP_TO_INTEGER_EXACT s, fclass.s, MINUS_ONE, 0x002
    FP_TO_INTEGER_EXACT s, fclass.s, MINUS_MAXIMUM, 0x002
    FP_TO_INTEGER_EXACT s, fclass.s, 0x80000001, 0x004
    FP_TO_INTEGER_EXACT s, fclass.s, 0x807fffff, 0x004
    FP_TO_INTEGER_EXACT s, fclass.s, MINUS_ZERO, 0x008
    FP_TO_INTEGER_EXACT s, fclass.s, PLUS_ZERO, 0x010
    FP_TO_INTEGER_EXACT s, fclass.s, MAX_SUBNORMAL, 0x020
    FP_TO_INTEGER_EXACT s, fclass.s, MIN_NORMAL, 0x040
    FP_TO_INTEGER_EXACT s, fclass.s, MAXIMUM, 0x040
    FP_TO_INTEGER_EXACT s, fclass.s, INFINITY, 0x080
    FP_TO_INTEGER_EXACT s, fclass.s, SIGNALING_NAN, 0x100
    FP_TO_INTEGER_EXACT s, fclass.s, 0xffbfffff, 0x100
    FP_TO_INTEGER_EXACT s, fclass.s, CANONICAL_NAN, 0x200
    FP_TO_INTEGER_EXACT s, fclass.s, 0xffffffff, 0x200

/* ---- Sign injection works on raw bits: NaN payloads are kept and no
 * flag is raised, even for signalling NaNs. ---- */
    FP_OP2_EXACT s, fsgnj.s, ONE, MINUS_TWO, MINUS_ONE, 0
    FP_OP2_EXACT s, fsgnjn.s, ONE, MINUS_TWO, ONE, 0
    FP_OP2_EXACT s, fsgnjn.s, ONE, ONE, MINUS_ONE, 0            /* fneg.s */
    FP_OP2_EXACT s, fsgnjx.s, MINUS_ONE, MINUS_TWO, ONE, 0
    FP_OP2_EXACT s, fsgnjx.s, MINUS_ONE, MINUS_ONE, ONE, 0      /* fabs.s */
    FP_OP2_EXACT s, fsgnjx.s, MINUS_ONE, TWO, MINUS_ONE, 0
    FP_OP2_EXACT s, fsgnj.s, SIGNALING_NAN, MINUS_ONE, 0xff800001, 0
    FP_OP2_EXACT s, fsgnjn.s, 0x7fc00123, 0x7fc00123, 0xffc00123, 0

/* ---- Fused multiply-add: one rounding of +-(a * b) +- c ---- */
    FP_OP3  s, fmadd.s, rne, TWO, THREE, ONE, 0x40e00000, 0     /* 7 */
    FP_OP3  s, fmsub.s, rne, TWO, THREE, ONE, 0x40a00000, 0     /* 5 */
    FP_OP3  s, fnmsub.s, rne, TWO, THREE, ONE, 0xc0a00000, 0    /* -5 */
    FP_OP3  s, fnmadd.s, rne, TWO, THREE, ONE, 0xc0e00000, 0    /* -7 */
    /* (1 + 2^-12)^2 - (1 + 2^-11) = 2^-24 exactly; a separate multiply
     * would have rounded the product to 1 + 2^-11 and given 0. */
    FP_OP3  s, fmadd.s, rne, 0x3f800800, 0x3f800800, 0xbf801000, HALF_ULP_OF_ONE, 0
    /* MAXIMUM * 2 - MAXIMUM: the product is not rounded, so no overflow. */
    FP_OP3  s, fmadd.s, rne, MAXIMUM, TWO, MINUS_MAXIMUM, MAXIMUM, 0
    FP_OP3  s, fmadd.s, rne, MAXIMUM, TWO, PLUS_ZERO, INFINITY, OF | NX
    /* Infinity times zero is invalid even when the addend is a quiet NaN. */
    FP_OP3  s, fmadd.s, rne, INFINITY, PLUS_ZERO, CANONICAL_NAN, CANONICAL_NAN, NV
    FP_OP3  s, fmadd.s, rne, PLUS_ZERO, MINUS_INFINITY, 0x7fc00001, CANONICAL_NAN, NV
    FP_OP3  s, fmadd.s, rne, PLUS_ZERO, INFINITY, ONE, CANONICAL_NAN, NV
    FP_OP3  s, fmadd.s, rne, ONE, ONE, SIGNALING_NAN, CANONICAL_NAN, NV
    FP_OP3  s, fmadd.s, rne, CANONICAL_NAN, ONE, ONE, CANONICAL_NAN, 0
    FP_OP3  s, fmadd.s, rne, INFINITY, ONE, MINUS_INFINITY, CANONICAL_NAN, NV
    FP_OP3  s, fmadd.s, rne, ONE, ONE, INFINITY, INFINITY, 0
    /* Signs of exact zero results. */
    FP_OP3  s, fmadd.s, rne, PLUS_ZERO, ONE, MINUS_ZERO, PLUS_ZERO, 0
    FP_OP3  s, fmadd.s, rne, MINUS_ZERO, ONE, MINUS_ZERO, MINUS_ZERO, 0
    FP_OP3  s, fmadd.s, rdn, PLUS_ZERO, ONE, MINUS_ZERO, MINUS_ZERO, 0
    FP_OP3  s, fmadd.s, rne, ONE, ONE, MINUS_ONE, PLUS_ZERO, 0
    FP_OP3  s, fmadd.s, rdn, ONE, ONE, MINUS_ONE, MINUS_ZERO, 0
    FP_OP3  s, fnmadd.s, rne, PLUS_ZERO, ONE, PLUS_ZERO, MINUS_ZERO, 0
    FP_OP3  s, fnmsub.s, rne, PLUS_ZERO, ONE, PLUS_ZERO, PLUS_ZERO, 0
    FP_OP3  s, fmsub.s, rne, PLUS_ZERO, ONE, PLUS_ZERO, PLUS_ZERO, 0
    FP_OP3  s, fmsub.s, rne, MINUS_ZERO, ONE, PLUS_ZERO, MINUS_ZERO, 0
    /* Ties inside the fused operation. */
    FP_OP3  s, fmadd.s, rne, ONE, ONE, HALF_ULP_OF_ONE, ONE, NX
    FP_OP3  s, fmadd.s, rmm, ONE, ONE, HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    FP_OP3  s, fnmadd.s, rne, ONE, ONE, HALF_ULP_OF_ONE, MINUS_ONE, NX
    FP_OP3  s, fnmadd.s, rmm, ONE, ONE, HALF_ULP_OF_ONE, 0xbf800001, NX
    FP_OP3  s, fmadd.s, rne, 0x3f800800, 0x3f800800, PLUS_ZERO, 0x3f801000, NX
    FP_OP3  s, fmadd.s, rmm, 0x3f800800, 0x3f800800, PLUS_ZERO, 0x3f801001, NX
    FP_OP3  s, fmsub.s, rmm, 0x3f800800, 0x3f800800, MINUS_ZERO, 0x3f801001, NX
    /* Underflow inside the fused operation. */
    FP_OP3  s, fmadd.s, rne, MIN_NORMAL, HALF, PLUS_ZERO, 0x00400000, 0
    FP_OP3  s, fmadd.s, rne, MIN_SUBNORMAL, HALF, PLUS_ZERO, PLUS_ZERO, UF | NX
    FP_OP3  s, fmadd.s, rmm, MIN_SUBNORMAL, HALF, PLUS_ZERO, MIN_SUBNORMAL, UF | NX

TEST_END
