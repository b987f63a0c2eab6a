/* The D extension: double-precision arithmetic, the canonical NaN,
 * signalling and quiet NaNs, the five rounding modes (including ties to max
 * magnitude on exact ties), accrued flags, overflow, underflow with
 * tininess after rounding, subnormals, division by zero, square root, the
 * fused multiply-add forms, FMIN/FMAX, comparisons, FCLASS, sign
 * injection, FMV.X.D/FMV.D.X, and FLD/FSD in their 32-bit and compressed
 * forms.
 *
 * Every expected value below follows from IEEE 754 and the RISC-V
 * specification; the comments say why. */
#include "test_macros.h"
#include "fpu_test_macros.h"

#define ONE             0x3ff0000000000000
#define TWO             0x4000000000000000
#define THREE           0x4008000000000000
#define FOUR            0x4010000000000000
#define HALF            0x3fe0000000000000
#define ONE_AND_A_HALF  0x3ff8000000000000
#define MINUS_ONE       0xbff0000000000000
#define MINUS_TWO       0xc000000000000000
#define PLUS_ZERO       0x0000000000000000
#define MINUS_ZERO      0x8000000000000000
#define INFINITY        0x7ff0000000000000
#define MINUS_INFINITY  0xfff0000000000000
#define CANONICAL_NAN   0x7ff8000000000000
#define SIGNALING_NAN   0x7ff0000000000001
#define MAXIMUM         0x7fefffffffffffff  /* (2 - 2^-52) * 2^1023 */
#define MINUS_MAXIMUM   0xffefffffffffffff
#define MIN_NORMAL      0x0010000000000000  /* 2^-1022 */
#define MIN_SUBNORMAL   0x0000000000000001  /* 2^-1074 */
#define MAX_SUBNORMAL   0x000fffffffffffff
#define ONE_PLUS_ULP    0x3ff0000000000001  /* 1 + 2^-52 */
#define HALF_ULP_OF_ONE 0x3ca0000000000000  /* 2^-53 */
#define MINUS_HALF_ULP_OF_ONE 0xbca0000000000000

#define NV FFLAGS_NV
#define DZ FFLAGS_DZ
#define OF FFLAGS_OF
#define UF FFLAGS_UF
#define NX FFLAGS_NX

    .section .data
    .align  3
scratch:    .dword 0, 0, 0, 0

TEST_BEGIN "fpu_double"

/* ---- NaN results are the canonical NaN 0x7ff8000000000000 ---- */
    FP_OP2  d, fadd.d, rne, 0x7ff8000000000123, ONE, CANONICAL_NAN, 0
    FP_OP2  d, fadd.d, rne, 0xfff8000000000000, ONE, CANONICAL_NAN, 0
    FP_OP2  d, fmul.d, rne, ONE, 0xfff8000000000001, CANONICAL_NAN, 0
    FP_OP2  d, fadd.d, rne, SIGNALING_NAN, ONE, CANONICAL_NAN, NV
    FP_OP2  d, fsub.d, rne, ONE, 0xfff4000000000000, CANONICAL_NAN, NV
    FP_OP2  d, fadd.d, rne, SIGNALING_NAN, CANONICAL_NAN, CANONICAL_NAN, NV
    FP_OP2  d, fsub.d, rne, INFINITY, INFINITY, CANONICAL_NAN, NV
    FP_OP2  d, fadd.d, rne, MINUS_INFINITY, INFINITY, CANONICAL_NAN, NV
    FP_OP2  d, fadd.d, rne, MINUS_INFINITY, MINUS_INFINITY, MINUS_INFINITY, 0
    FP_OP2  d, fmul.d, rne, INFINITY, PLUS_ZERO, CANONICAL_NAN, NV
    FP_OP2  d, fdiv.d, rne, MINUS_ZERO, PLUS_ZERO, CANONICAL_NAN, NV
    FP_OP2  d, fdiv.d, rne, INFINITY, INFINITY, CANONICAL_NAN, NV
    /* A single-precision NaN pattern is just a normal double. */
    FP_OP2  d, fadd.d, rne, 0x000000007fc00000, PLUS_ZERO, 0x000000007fc00000, 0

/* ---- Square root ---- */
    FP_OP1  d, fsqrt.d, rne, MINUS_ONE, CANONICAL_NAN, NV
    FP_OP1  d, fsqrt.d, rne, 0x8000000000000001, CANONICAL_NAN, NV
    FP_OP1  d, fsqrt.d, rne, MINUS_ZERO, MINUS_ZERO, 0
    FP_OP1  d, fsqrt.d, rne, SIGNALING_NAN, CANONICAL_NAN, NV
    FP_OP1  d, fsqrt.d, rne, CANONICAL_NAN, CANONICAL_NAN, 0
    FP_OP1  d, fsqrt.d, rne, INFINITY, INFINITY, 0
    FP_OP1  d, fsqrt.d, rne, FOUR, TWO, 0
    /* sqrt(2^-1074) = 2^-537 exactly. */
    FP_OP1  d, fsqrt.d, rne, MIN_SUBNORMAL, 0x1e60000000000000, 0
    /* sqrt(2) = 1.41421356237309504..., between 0x3ff6a09e667f3bcc and
     * 0x3ff6a09e667f3bcd (1.41421356237309514...), nearer the second. */
    FP_OP1  d, fsqrt.d, rne, TWO, 0x3ff6a09e667f3bcd, NX
    FP_OP1  d, fsqrt.d, rtz, TWO, 0x3ff6a09e667f3bcc, NX
    FP_OP1  d, fsqrt.d, rdn, TWO, 0x3ff6a09e667f3bcc, NX
    FP_OP1  d, fsqrt.d, rup, TWO, 0x3ff6a09e667f3bcd, NX
    FP_OP1  d, fsqrt.d, rmm, TWO, 0x3ff6a09e667f3bcd, NX

/* ---- Rounding modes on exact ties and near ties ---- */
    /* 1 + 2^-53 is halfway between 1 (even) and 1 + 2^-52 (odd). */
    FP_OP2  d, fadd.d, rne, ONE, HALF_ULP_OF_ONE, ONE, NX
    FP_OP2  d, fadd.d, rtz, ONE, HALF_ULP_OF_ONE, ONE, NX
    FP_OP2  d, fadd.d, rdn, ONE, HALF_ULP_OF_ONE, ONE, NX
    FP_OP2  d, fadd.d, rup, ONE, HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    FP_OP2  d, fadd.d, rmm, ONE, HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    FP_OP2  d, fadd.d, rne, ONE_PLUS_ULP, HALF_ULP_OF_ONE, 0x3ff0000000000002, NX
    FP_OP2  d, fadd.d, rmm, ONE_PLUS_ULP, HALF_ULP_OF_ONE, 0x3ff0000000000002, NX
    FP_OP2  d, fadd.d, rtz, ONE_PLUS_ULP, HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    FP_OP2  d, fadd.d, rne, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, MINUS_ONE, NX
    FP_OP2  d, fadd.d, rtz, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, MINUS_ONE, NX
    FP_OP2  d, fadd.d, rdn, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, 0xbff0000000000001, NX
    FP_OP2  d, fadd.d, rup, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, MINUS_ONE, NX
    FP_OP2  d, fadd.d, rmm, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, 0xbff0000000000001, NX
    FP_OP2  d, fsub.d, rmm, ONE, MINUS_HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    /* 2^53 + 1 and 2^53 + 3 are ties among integers. */
    FP_OP2  d, fadd.d, rne, 0x4340000000000000, ONE, 0x4340000000000000, NX
    FP_OP2  d, fadd.d, rmm, 0x4340000000000000, ONE, 0x4340000000000001, NX
    FP_OP2  d, fadd.d, rne, 0x4340000000000000, THREE, 0x4340000000000002, NX
    FP_OP2  d, fadd.d, rmm, 0x4340000000000000, THREE, 0x4340000000000002, NX
    /* Not ties: 1 + 0.75 ulp and 1 + 0.25 ulp. */
    FP_OP2  d, fadd.d, rne, ONE, 0x3ca8000000000000, ONE_PLUS_ULP, NX
    FP_OP2  d, fadd.d, rtz, ONE, 0x3ca8000000000000, ONE, NX
    FP_OP2  d, fadd.d, rmm, ONE, 0x3c90000000000000, ONE, NX
    FP_OP2  d, fadd.d, rup, ONE, 0x3c90000000000000, ONE_PLUS_ULP, NX
    FP_OP2  d, fadd.d, rmm, ONE, 0x3cb0000000000000, ONE_PLUS_ULP, 0   /* exact */
    /* Exact zero results. */
    FP_OP2  d, fsub.d, rne, TWO, TWO, PLUS_ZERO, 0
    FP_OP2  d, fsub.d, rdn, TWO, TWO, MINUS_ZERO, 0
    FP_OP2  d, fadd.d, rup, MINUS_ZERO, MINUS_ZERO, MINUS_ZERO, 0
    FP_OP2  d, fmul.d, rne, MINUS_ZERO, MINUS_ONE, PLUS_ZERO, 0
    /* Products that are ties: (1 + 3 * 2^-52) * 1.5 = 1.5 + 4.5 * 2^-52,
     * between ...004 (even) and ...005; (1 + 2^-52) * 1.5 lies between
     * ...001 and ...002 (even). */
    FP_OP2  d, fmul.d, rne, 0x3ff0000000000003, ONE_AND_A_HALF, 0x3ff8000000000004, NX
    FP_OP2  d, fmul.d, rmm, 0x3ff0000000000003, ONE_AND_A_HALF, 0x3ff8000000000005, NX
    FP_OP2  d, fmul.d, rtz, 0x3ff0000000000003, ONE_AND_A_HALF, 0x3ff8000000000004, NX
    FP_OP2  d, fmul.d, rne, ONE_PLUS_ULP, ONE_AND_A_HALF, 0x3ff8000000000002, NX
    FP_OP2  d, fmul.d, rmm, ONE_PLUS_ULP, ONE_AND_A_HALF, 0x3ff8000000000002, NX
    FP_OP2  d, fmul.d, rdn, ONE_PLUS_ULP, ONE_AND_A_HALF, 0x3ff8000000000001, NX

/* ---- The dynamic rounding mode ---- */
    fsrmi   4
    FP_OP2  d, fadd.d, dyn, ONE, HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    fsrmi   2
    FP_OP2  d, fadd.d, dyn, MINUS_ONE, MINUS_HALF_ULP_OF_ONE, 0xbff0000000000001, NX
    FP_OP2  d, fsub.d, dyn, ONE, ONE, MINUS_ZERO, 0
    fsrmi   3
    FP_OP2  d, fdiv.d, dyn, ONE, THREE, 0x3fd5555555555556, NX
    fsrmi   0
    FP_OP2  d, fdiv.d, dyn, ONE, THREE, 0x3fd5555555555555, NX

/* ---- Overflow ---- */
    FP_OP2  d, fmul.d, rne, MAXIMUM, TWO, INFINITY, OF | NX
    FP_OP2  d, fmul.d, rtz, MAXIMUM, TWO, MAXIMUM, OF | NX
    FP_OP2  d, fmul.d, rdn, MAXIMUM, TWO, MAXIMUM, OF | NX
    FP_OP2  d, fmul.d, rup, MAXIMUM, TWO, INFINITY, OF | NX
    FP_OP2  d, fmul.d, rmm, MAXIMUM, TWO, INFINITY, OF | NX
    FP_OP2  d, fmul.d, rne, MINUS_MAXIMUM, TWO, MINUS_INFINITY, OF | NX
    FP_OP2  d, fmul.d, rtz, MINUS_MAXIMUM, TWO, MINUS_MAXIMUM, OF | NX
    FP_OP2  d, fmul.d, rdn, MINUS_MAXIMUM, TWO, MINUS_INFINITY, OF | NX
    FP_OP2  d, fmul.d, rup, MINUS_MAXIMUM, TWO, MINUS_MAXIMUM, OF | NX
    FP_OP2  d, fmul.d, rmm, MINUS_MAXIMUM, TWO, MINUS_INFINITY, OF | NX
    FP_OP2  d, fdiv.d, rne, MAXIMUM, HALF, INFINITY, OF | NX
    /* MAXIMUM + 2^970 (half an ulp of MAXIMUM) is a tie with 2^1024. */
    FP_OP2  d, fadd.d, rne, MAXIMUM, 0x7c90000000000000, INFINITY, OF | NX
    FP_OP2  d, fadd.d, rmm, MAXIMUM, 0x7c90000000000000, INFINITY, OF | NX
    FP_OP2  d, fadd.d, rtz, MAXIMUM, 0x7c90000000000000, MAXIMUM, NX

/* ---- Underflow and subnormals ---- */
    FP_OP2  d, fmul.d, rne, MIN_NORMAL, HALF, 0x0008000000000000, 0     /* exact */
    FP_OP2  d, fadd.d, rne, MAX_SUBNORMAL, MIN_SUBNORMAL, MIN_NORMAL, 0
    FP_OP2  d, fsub.d, rne, MIN_NORMAL, MIN_SUBNORMAL, MAX_SUBNORMAL, 0
    FP_OP2  d, fmul.d, rne, 0x0000000000000003, HALF, 0x0000000000000002, UF | NX
    FP_OP2  d, fmul.d, rtz, 0x0000000000000003, HALF, 0x0000000000000001, UF | NX
    FP_OP2  d, fmul.d, rmm, 0x0000000000000003, HALF, 0x0000000000000002, UF | NX
    FP_OP2  d, fmul.d, rne, MIN_SUBNORMAL, HALF, PLUS_ZERO, UF | NX
    FP_OP2  d, fmul.d, rmm, MIN_SUBNORMAL, HALF, MIN_SUBNORMAL, UF | NX
    FP_OP2  d, fmul.d, rup, MIN_SUBNORMAL, HALF, MIN_SUBNORMAL, UF | NX
    FP_OP2  d, fmul.d, rdn, MIN_SUBNORMAL, HALF, PLUS_ZERO, UF | NX
    FP_OP2  d, fmul.d, rmm, 0x8000000000000001, HALF, 0x8000000000000001, UF | NX
    FP_OP2  d, fmul.d, rne, 0x8000000000000001, HALF, MINUS_ZERO, UF | NX
    FP_OP2  d, fdiv.d, rmm, 0x0000000000000005, FOUR, 0x0000000000000001, UF | NX
    FP_OP2  d, fdiv.d, rmm, 0x0000000000000006, FOUR, 0x0000000000000002, UF | NX
    FP_OP2  d, fdiv.d, rne, 0x0000000000000006, FOUR, 0x0000000000000002, UF | NX
    FP_OP2  d, fdiv.d, rne, 0x000000000000000a, FOUR, 0x0000000000000002, UF | NX
    FP_OP2  d, fdiv.d, rmm, 0x000000000000000a, FOUR, 0x0000000000000003, UF | NX
    /* 2^-1022 * (1 - 2^-53): tiny after rounding (the unbounded result is
     * exact and below 2^-1022), rounds to 2^-1022 in the subnormal grid. */
    FP_OP2  d, fmul.d, rne, MIN_NORMAL, 0x3fefffffffffffff, MIN_NORMAL, UF | NX
    FP_OP2  d, fmul.d, rtz, MIN_NORMAL, 0x3fefffffffffffff, MAX_SUBNORMAL, UF | NX
    /* (2^27 - 1) * 2^-1040 * (2^27 + 1) * 2^-36 = 2^-1022 - 2^-1076: rounds
     * to 2^-1022 with 53 bits and an unbounded exponent, so not tiny: NX
     * only in the nearest modes and rounding up. */
    FP_OP2  d, fmul.d, rne, 0x009ffffffc000000, 0x3f60000002000000, MIN_NORMAL, NX
    FP_OP2  d, fmul.d, rmm, 0x009ffffffc000000, 0x3f60000002000000, MIN_NORMAL, NX
    FP_OP2  d, fmul.d, rup, 0x009ffffffc000000, 0x3f60000002000000, MIN_NORMAL, NX
    FP_OP2  d, fmul.d, rtz, 0x009ffffffc000000, 0x3f60000002000000, MAX_SUBNORMAL, UF | NX
    FP_OP2  d, fmul.d, rdn, 0x009ffffffc000000, 0x3f60000002000000, MAX_SUBNORMAL, UF | NX

/* ---- Division ---- */
    FP_OP2  d, fdiv.d, rne, ONE, PLUS_ZERO, INFINITY, DZ
    FP_OP2  d, fdiv.d, rne, ONE, MINUS_ZERO, MINUS_INFINITY, DZ
    FP_OP2  d, fdiv.d, rne, MINUS_INFINITY, PLUS_ZERO, MINUS_INFINITY, 0
    FP_OP2  d, fdiv.d, rne, MIN_SUBNORMAL, PLUS_ZERO, INFINITY, DZ
    FP_OP2  d, fdiv.d, rne, ONE, THREE, 0x3fd5555555555555, NX
    FP_OP2  d, fdiv.d, rtz, ONE, THREE, 0x3fd5555555555555, NX
    FP_OP2  d, fdiv.d, rup, ONE, THREE, 0x3fd5555555555556, NX
    FP_OP2  d, fdiv.d, rmm, ONE, THREE, 0x3fd5555555555555, NX
    FP_OP2  d, fdiv.d, rdn, MINUS_ONE, THREE, 0xbfd5555555555556, NX
    FP_OP2  d, fdiv.d, rup, TWO, THREE, 0x3fe5555555555556, NX

/* ---- FMIN/FMAX ---- */
    FP_OP2_EXACT d, fmin.d, MINUS_ZERO, PLUS_ZERO, MINUS_ZERO, 0
    FP_OP2_EXACT d, fmin.d, PLUS_ZERO, MINUS_ZERO, MINUS_ZERO, 0
    FP_OP2_EXACT d, fmax.d, MINUS_ZERO, PLUS_ZERO, PLUS_ZERO, 0
    FP_OP2_EXACT d, fmax.d, PLUS_ZERO, MINUS_ZERO, PLUS_ZERO, 0
    FP_OP2_EXACT d, fmin.d, ONE, ONE_PLUS_ULP, ONE, 0
    FP_OP2_EXACT d, fmax.d, ONE, ONE_PLUS_ULP, ONE_PLUS_ULP, 0
    FP_OP2_EXACT d, fmax.d, MINUS_INFINITY, MINUS_MAXIMUM, MINUS_MAXIMUM, 0
    FP_OP2_EXACT d, fmin.d, CANONICAL_NAN, MINUS_ONE, MINUS_ONE, 0
    FP_OP2_EXACT d, fmax.d, MINUS_ONE, 0xfff8000000000123, MINUS_ONE, 0
    FP_OP2_EXACT d, fmin.d, SIGNALING_NAN, TWO, TWO, NV
    FP_OP2_EXACT d, fmax.d, TWO, SIGNALING_NAN, TWO, NV
    FP_OP2_EXACT d, fmax.d, 0x7ff8000000000123, 0xfff8000000000456, CANONICAL_NAN, 0
    FP_OP2_EXACT d, fmin.d, CANONICAL_NAN, SIGNALING_NAN, CANONICAL_NAN, NV

/* ---- Comparisons ---- */
    FP_COMPARE d, feq.d, ONE, ONE, 1, 0
    FP_COMPARE d, feq.d, ONE, ONE_PLUS_ULP, 0, 0
    FP_COMPARE d, feq.d, PLUS_ZERO, MINUS_ZERO, 1, 0
    FP_COMPARE d, flt.d, MINUS_ZERO, PLUS_ZERO, 0, 0
    FP_COMPARE d, fle.d, PLUS_ZERO, MINUS_ZERO, 1, 0
    FP_COMPARE d, flt.d, ONE, ONE_PLUS_ULP, 1, 0
    FP_COMPARE d, fle.d, ONE_PLUS_ULP, ONE, 0, 0
    FP_COMPARE d, flt.d, MINUS_INFINITY, MINUS_MAXIMUM, 1, 0
    FP_COMPARE d, feq.d, CANONICAL_NAN, CANONICAL_NAN, 0, 0
    FP_COMPARE d, feq.d, SIGNALING_NAN, ONE, 0, NV
    FP_COMPARE d, flt.d, CANONICAL_NAN, ONE, 0, NV
    FP_COMPARE d, fle.d, ONE, CANONICAL_NAN, 0, NV
    FP_COMPARE d, fle.d, SIGNALING_NAN, SIGNALING_NAN, 0, NV

/* ---- FCLASS ---- */
    FP_TO_INTEGER_EXACT d, fclass.d, MINUS_INFINITY, 0x001
    FP_TO_INTEGER_EXACT d, fclass.d, MINUS_ONE, 0x002
    FP_TO_INTEGER_EXACT d, fclass.d, 0x8000000000000001, 0x004
    FP_TO_INTEGER_EXACT d, fclass.d, MINUS_ZERO, 0x008
    FP_TO_INTEGER_EXACT d, fclass.d, PLUS_ZERO, 0x010
    FP_TO_INTEGER_EXACT d, fclass.d, MAX_SUBNORMAL, 0x020
    FP_TO_INTEGER_EXACT d, fclass.d, MIN_NORMAL, 0x040
    FP_TO_INTEGER_EXACT d, fclass.d, INFINITY, 0x080
    FP_TO_INTEGER_EXACT d, fclass.d, SIGNALING_NAN, 0x100
    FP_TO_INTEGER_EXACT d, fclass.d, 0xfff7ffffffffffff, 0x100
    FP_TO_INTEGER_EXACT d, fclass.d, CANONICAL_NAN, 0x200
    FP_TO_INTEGER_EXACT d, fclass.d, 0xffffffffffffffff, 0x200
    /* A NaN-boxed single is a negative quiet NaN as a double. */
    FP_TO_INTEGER_EXACT d, fclass.d, 0xffffffff3f800000, 0x200

/* ---- Sign injection and moves: raw bits, no flags ---- */
    FP_OP2_EXACT d, fsgnj.d, ONE, MINUS_TWO, MINUS_ONE, 0
    FP_OP2_EXACT d, fsgnjn.d, ONE, MINUS_TWO, ONE, 0
    FP_OP2_EXACT d, fsgnjx.d, MINUS_ONE, MINUS_TWO, ONE, 0
    FP_OP2_EXACT d, fsgnjx.d, MINUS_ONE, TWO, MINUS_ONE, 0
    FP_OP2_EXACT d, fsgnj.d, SIGNALING_NAN, MINUS_ONE, 0xfff0000000000001, 0
    FP_OP2_EXACT d, fsgnjn.d, 0xfff8000000000123, ONE, 0xfff8000000000123, 0
    FP_TO_INTEGER_EXACT d, fmv.x.d, SIGNALING_NAN, SIGNALING_NAN
    FP_TO_INTEGER_EXACT d, fmv.x.d, 0xffffffff3f800000, 0xffffffff3f800000
    li      t3, 0x7ff0000000000001
    fmv.d.x fa3, t3
    FPU_CHECK_RESULT "fmv.d.x 0x7ff0000000000001", d, SIGNALING_NAN, 0

/* ---- Loads and stores, 32-bit and compressed forms (no conversion) ---- */
    la      s0, scratch
    li      t0, 0x400921fb54442d18
    sd      t0, 8(s0)
    fld     fa3, 8(s0)
    FPU_CHECK_RESULT "fld", d, 0x400921fb54442d18, 0
    fmv.d.x fa0, zero
    .option push
    .option rvc
    c.fld   fa0, 8(s0)                  /* f10, x8: compressible registers */
    .option pop
    fmv.d.x fa3, zero
    fsgnj.d fa3, fa0, fa0
    FPU_CHECK_RESULT "c.fld", d, 0x400921fb54442d18, 0
    li      t0, 0xfff0000000000005
    fmv.d.x fa1, t0
    .option push
    .option rvc
    c.fsd   fa1, 16(s0)
    .option pop
    ld      t4, 16(s0)
    CHECK   "c.fsd", t4, 0xfff0000000000005
    li      t0, 0x0123456789abcdef
    fmv.d.x fa2, t0
    fsd     fa2, 24(s0)
    ld      t4, 24(s0)
    CHECK   "fsd", t4, 0x0123456789abcdef
    addi    sp, sp, -16
    li      t0, 0x7ff0000000000002
    sd      t0, 8(sp)
    .option push
    .option rvc
    c.fldsp fa4, 8(sp)
    c.fsdsp fa4, 0(sp)
    .option pop
    ld      t4, 0(sp)
    addi    sp, sp, 16
    CHECK   "c.fldsp and c.fsdsp", t4, 0x7ff0000000000002
    /* A negative offset. */
    addi    t1, s0, 16
    fld     fa3, -8(t1)
    FPU_CHECK_RESULT "fld -8", d, 0x400921fb54442d18, 0

/* ---- Fused multiply-add ---- */
    FP_OP3  d, fmadd.d, rne, TWO, THREE, ONE, 0x401c000000000000, 0     /* 7 */
    FP_OP3  d, fmsub.d, rne, TWO, THREE, ONE, 0x4014000000000000, 0     /* 5 */
    FP_OP3  d, fnmsub.d, rne, TWO, THREE, ONE, 0xc014000000000000, 0    /* -5 */
    FP_OP3  d, fnmadd.d, rne, TWO, THREE, ONE, 0xc01c000000000000, 0    /* -7 */
    /* (1 + 2^-27)^2 - (1 + 2^-26) = 2^-54 exactly, only when fused. */
    FP_OP3  d, fmadd.d, rne, 0x3ff0000002000000, 0x3ff0000002000000, 0xbff0000004000000, 0x3c90000000000000, 0
    FP_OP3  d, fmadd.d, rne, MAXIMUM, TWO, MINUS_MAXIMUM, MAXIMUM, 0
    FP_OP3  d, fmsub.d, rne, MAXIMUM, TWO, MAXIMUM, MAXIMUM, 0
    FP_OP3  d, fmadd.d, rne, INFINITY, PLUS_ZERO, CANONICAL_NAN, CANONICAL_NAN, NV
    FP_OP3  d, fnmadd.d, rne, MINUS_ZERO, INFINITY, 0xfff8000000000001, CANONICAL_NAN, NV
    FP_OP3  d, fmadd.d, rne, ONE, ONE, SIGNALING_NAN, CANONICAL_NAN, NV
    FP_OP3  d, fmadd.d, rne, SIGNALING_NAN, ONE, CANONICAL_NAN, CANONICAL_NAN, NV
    FP_OP3  d, fmadd.d, rne, ONE, CANONICAL_NAN, ONE, CANONICAL_NAN, 0
    FP_OP3  d, fmsub.d, rne, INFINITY, ONE, INFINITY, CANONICAL_NAN, NV
    FP_OP3  d, fnmadd.d, rne, INFINITY, ONE, MINUS_INFINITY, CANONICAL_NAN, NV
    FP_OP3  d, fnmadd.d, rne, INFINITY, ONE, INFINITY, MINUS_INFINITY, 0
    FP_OP3  d, fmadd.d, rne, ONE, ONE, MINUS_ONE, PLUS_ZERO, 0
    FP_OP3  d, fmadd.d, rdn, ONE, ONE, MINUS_ONE, MINUS_ZERO, 0
    FP_OP3  d, fnmadd.d, rne, PLUS_ZERO, ONE, PLUS_ZERO, MINUS_ZERO, 0
    FP_OP3  d, fnmsub.d, rne, PLUS_ZERO, ONE, PLUS_ZERO, PLUS_ZERO, 0
    FP_OP3  d, fnmsub.d, rne, MINUS_ZERO, ONE, MINUS_ZERO, PLUS_ZERO, 0
    FP_OP3  d, fnmsub.d, rne, PLUS_ZERO, ONE, MINUS_ZERO, MINUS_ZERO, 0
    FP_OP3  d, fmadd.d, rne, ONE, ONE, HALF_ULP_OF_ONE, ONE, NX
    FP_OP3  d, fmadd.d, rmm, ONE, ONE, HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    FP_OP3  d, fnmsub.d, rmm, MINUS_ONE, ONE, HALF_ULP_OF_ONE, ONE_PLUS_ULP, NX
    FP_OP3  d, fnmadd.d, rmm, ONE, ONE, HALF_ULP_OF_ONE, 0xbff0000000000001, NX
    FP_OP3  d, fmadd.d, rne, 0x3ff0000000000003, ONE_AND_A_HALF, PLUS_ZERO, 0x3ff8000000000004, NX
    FP_OP3  d, fmadd.d, rmm, 0x3ff0000000000003, ONE_AND_A_HALF, PLUS_ZERO, 0x3ff8000000000005, NX
    /* A tie whose operands need the whole 106-bit product:
     * (1 + 2^-27)^2 + (2^-53 - 2^-26 - 2^-54) = 1 + 2^-53. */
    FP_OP3  d, fmadd.d, rne, 0x3ff0000002000000, 0x3ff0000002000000, 0xbe4ffffffe000000, ONE, NX
    FP_OP3  d, fmadd.d, rmm, 0x3ff0000002000000, 0x3ff0000002000000, 0xbe4ffffffe000000, ONE_PLUS_ULP, NX
    FP_OP3  d, fmadd.d, rne, MIN_SUBNORMAL, HALF, PLUS_ZERO, PLUS_ZERO, UF | NX
    FP_OP3  d, fmadd.d, rmm, MIN_SUBNORMAL, HALF, PLUS_ZERO, MIN_SUBNORMAL, UF | NX
    FP_OP3  d, fmadd.d, rne, MAXIMUM, MAXIMUM, MINUS_INFINITY, MINUS_INFINITY, 0

TEST_END
