/* F/D conversions: FCVT between integers and both formats in every rounding
 * mode (ties at 0.5, 1.5, 2.5 and their negatives, including round to
 * nearest, ties to max magnitude), the saturation table for out-of-range
 * values, infinities and NaNs (with NV and without NX), unsigned
 * conversions of negative values, sign extension of 32-bit results, the
 * use of only the low 32 bits of W/WU sources, and FCVT.S.D / FCVT.D.S
 * with NaNs, overflow, underflow and ties.
 *
 * Every expected value below follows from IEEE 754 and the RISC-V
 * specification's conversion rules. */
#include "test_macros.h"
#include "fpu_test_macros.h"

#define NV FFLAGS_NV
#define OF FFLAGS_OF
#define UF FFLAGS_UF
#define NX FFLAGS_NX

/* Single-precision operands */
#define S_HALF          0x3f000000
#define S_ONE_AND_HALF  0x3fc00000
#define S_TWO_AND_HALF  0x40200000
#define S_MINUS_HALF    0xbf000000
#define S_MINUS_ONE_AND_HALF 0xbfc00000
#define S_MINUS_TWO_AND_HALF 0xc0200000
#define S_MINUS_ONE     0xbf800000
#define S_INFINITY      0x7f800000
#define S_MINUS_INFINITY 0xff800000
#define S_CANONICAL_NAN 0x7fc00000
#define S_SIGNALING_NAN 0x7f800001
#define S_MAXIMUM       0x7f7fffff

/* Double-precision operands */
#define D_HALF          0x3fe0000000000000
#define D_ONE_AND_HALF  0x3ff8000000000000
#define D_TWO_AND_HALF  0x4004000000000000
#define D_MINUS_HALF    0xbfe0000000000000
#define D_MINUS_ONE_AND_HALF 0xbff8000000000000
#define D_MINUS_TWO_AND_HALF 0xc004000000000000
#define D_MINUS_ONE     0xbff0000000000000
#define D_INFINITY      0x7ff0000000000000
#define D_MINUS_INFINITY 0xfff0000000000000
#define D_CANONICAL_NAN 0x7ff8000000000000
#define D_SIGNALING_NAN 0x7ff0000000000001
#define D_MAXIMUM       0x7fefffffffffffff

/* 32-bit results are sign-extended */
#define W_MAX           0x000000007fffffff
#define W_MIN           0xffffffff80000000
#define WU_MAX          0xffffffffffffffff
#define L_MAX           0x7fffffffffffffff
#define L_MIN           0x8000000000000000
#define LU_MAX          0xffffffffffffffff
#define MINUS_1         0xffffffffffffffff
#define MINUS_2         0xfffffffffffffffe
#define MINUS_3         0xfffffffffffffffd

/* One float-to-integer conversion in all five rounding modes. */
.macro TO_INTEGER_ALL_MODES fmt, op, a, rne, rtz, rdn, rup, rmm, flags
    FP_TO_INTEGER \fmt, \op, rne, \a, \rne, \flags
    FP_TO_INTEGER \fmt, \op, rtz, \a, \rtz, \flags
    FP_TO_INTEGER \fmt, \op, rdn, \a, \rdn, \flags
    FP_TO_INTEGER \fmt, \op, rup, \a, \rup, \flags
    FP_TO_INTEGER \fmt, \op, rmm, \a, \rmm, \flags
.endm

/* One integer-to-float conversion in all five rounding modes. */
.macro FROM_INTEGER_ALL_MODES result_fmt, op, x, rne, rtz, rdn, rup, rmm, flags
    FP_FROM_INTEGER \result_fmt, \op, rne, \x, \rne, \flags
    FP_FROM_INTEGER \result_fmt, \op, rtz, \x, \rtz, \flags
    FP_FROM_INTEGER \result_fmt, \op, rdn, \x, \rdn, \flags
    FP_FROM_INTEGER \result_fmt, \op, rup, \x, \rup, \flags
    FP_FROM_INTEGER \result_fmt, \op, rmm, \x, \rmm, \flags
.endm

TEST_BEGIN "fpu_convert"

/* ---- Rounding to an integer: ties at 0.5, 1.5, 2.5 and negatives.
 *          value:  rne  rtz  rdn  rup  rmm ---- */
    TO_INTEGER_ALL_MODES s, fcvt.w.s, S_HALF,          0, 0, 0, 1, 1, NX
    TO_INTEGER_ALL_MODES s, fcvt.w.s, S_ONE_AND_HALF,  2, 1, 1, 2, 2, NX
    TO_INTEGER_ALL_MODES s, fcvt.w.s, S_TWO_AND_HALF,  2, 2, 2, 3, 3, NX
    TO_INTEGER_ALL_MODES s, fcvt.w.s, S_MINUS_HALF,    0, 0, MINUS_1, 0, MINUS_1, NX
    TO_INTEGER_ALL_MODES s, fcvt.w.s, S_MINUS_ONE_AND_HALF, MINUS_2, MINUS_1, MINUS_2, MINUS_1, MINUS_2, NX
    TO_INTEGER_ALL_MODES s, fcvt.w.s, S_MINUS_TWO_AND_HALF, MINUS_2, MINUS_2, MINUS_3, MINUS_2, MINUS_3, NX
    TO_INTEGER_ALL_MODES d, fcvt.l.d, D_HALF,          0, 0, 0, 1, 1, NX
    TO_INTEGER_ALL_MODES d, fcvt.l.d, D_ONE_AND_HALF,  2, 1, 1, 2, 2, NX
    TO_INTEGER_ALL_MODES d, fcvt.l.d, D_TWO_AND_HALF,  2, 2, 2, 3, 3, NX
    TO_INTEGER_ALL_MODES d, fcvt.l.d, D_MINUS_HALF,    0, 0, MINUS_1, 0, MINUS_1, NX
    TO_INTEGER_ALL_MODES d, fcvt.l.d, D_MINUS_ONE_AND_HALF, MINUS_2, MINUS_1, MINUS_2, MINUS_1, MINUS_2, NX
    TO_INTEGER_ALL_MODES d, fcvt.l.d, D_MINUS_TWO_AND_HALF, MINUS_2, MINUS_2, MINUS_3, MINUS_2, MINUS_3, NX
    TO_INTEGER_ALL_MODES s, fcvt.l.s, S_TWO_AND_HALF,  2, 2, 2, 3, 3, NX
    TO_INTEGER_ALL_MODES d, fcvt.w.d, D_MINUS_TWO_AND_HALF, MINUS_2, MINUS_2, MINUS_3, MINUS_2, MINUS_3, NX
    /* Just above and below a tie (0x3fc00001 = 1.5 + 2^-23). */
    TO_INTEGER_ALL_MODES s, fcvt.w.s, 0x3fc00001, 2, 1, 1, 2, 2, NX
    TO_INTEGER_ALL_MODES s, fcvt.w.s, 0x3fbfffff, 1, 1, 1, 2, 1, NX
    /* Exact values raise nothing; -0 converts to 0. */
    FP_TO_INTEGER s, fcvt.w.s, rne, 0xc2f60000, 0xffffffffffffff85, 0   /* -123 */
    FP_TO_INTEGER s, fcvt.w.s, rne, 0x80000000, 0, 0
    FP_TO_INTEGER d, fcvt.lu.d, rne, 0x8000000000000000, 0, 0
    /* The dynamic rounding mode. */
    fsrmi   4
    FP_TO_INTEGER s, fcvt.w.s, dyn, S_HALF, 1, NX
    fsrmi   2
    FP_TO_INTEGER d, fcvt.l.d, dyn, D_MINUS_HALF, MINUS_1, NX
    fsrmi   0
    FP_TO_INTEGER s, fcvt.w.s, dyn, S_HALF, 0, NX

/* ---- Saturation: NaN and too large -> the largest value, too negative ->
 * the smallest; NV and no NX. ---- */
    /* FCVT.W.S */
    FP_TO_INTEGER s, fcvt.w.s, rtz, S_CANONICAL_NAN, W_MAX, NV
    FP_TO_INTEGER s, fcvt.w.s, rtz, S_SIGNALING_NAN, W_MAX, NV
    FP_TO_INTEGER s, fcvt.w.s, rtz, 0xffc00000, W_MAX, NV       /* negative NaN too */
    FP_TO_INTEGER s, fcvt.w.s, rtz, S_INFINITY, W_MAX, NV
    FP_TO_INTEGER s, fcvt.w.s, rtz, S_MINUS_INFINITY, W_MIN, NV
    FP_TO_INTEGER s, fcvt.w.s, rtz, 0x4f000000, W_MAX, NV       /* 2^31 */
    FP_TO_INTEGER s, fcvt.w.s, rtz, 0xcf000000, W_MIN, 0        /* -2^31 fits */
    FP_TO_INTEGER s, fcvt.w.s, rtz, 0xcf000001, W_MIN, NV       /* -2^31 - 256 */
    FP_TO_INTEGER s, fcvt.w.s, rtz, 0x4effffff, 0x7fffff80, 0   /* 2^31 - 128 */
    FP_TO_INTEGER s, fcvt.w.s, rtz, S_MAXIMUM, W_MAX, NV
    /* FCVT.W.D: 2147483647.5 and -2147483648.5 straddle the limits. */
    FP_TO_INTEGER d, fcvt.w.d, rtz, 0x41dfffffffc00000, W_MAX, 0  /* 2^31 - 1 */
    FP_TO_INTEGER d, fcvt.w.d, rne, 0x41dfffffffe00000, W_MAX, NV
    FP_TO_INTEGER d, fcvt.w.d, rtz, 0x41dfffffffe00000, W_MAX, NX
    FP_TO_INTEGER d, fcvt.w.d, rdn, 0x41dfffffffe00000, W_MAX, NX
    FP_TO_INTEGER d, fcvt.w.d, rup, 0x41dfffffffe00000, W_MAX, NV
    FP_TO_INTEGER d, fcvt.w.d, rmm, 0x41dfffffffe00000, W_MAX, NV
    FP_TO_INTEGER d, fcvt.w.d, rne, 0xc1e0000000100000, W_MIN, NX
    FP_TO_INTEGER d, fcvt.w.d, rtz, 0xc1e0000000100000, W_MIN, NX
    FP_TO_INTEGER d, fcvt.w.d, rdn, 0xc1e0000000100000, W_MIN, NV
    FP_TO_INTEGER d, fcvt.w.d, rup, 0xc1e0000000100000, W_MIN, NX
    FP_TO_INTEGER d, fcvt.w.d, rmm, 0xc1e0000000100000, W_MIN, NV
    FP_TO_INTEGER d, fcvt.w.d, rtz, 0xc1e0000000200000, W_MIN, NV /* -2^31 - 1 */
    FP_TO_INTEGER d, fcvt.w.d, rtz, D_CANONICAL_NAN, W_MAX, NV
    FP_TO_INTEGER d, fcvt.w.d, rtz, 0xfff0000000000001, W_MAX, NV
    FP_TO_INTEGER d, fcvt.w.d, rtz, D_MINUS_INFINITY, W_MIN, NV
    /* FCVT.WU: negative values give 0 with NV, unless they round to 0
     * (then only NX); results are sign-extended from 32 bits. */
    FP_TO_INTEGER s, fcvt.wu.s, rne, S_MINUS_HALF, 0, NX
    FP_TO_INTEGER s, fcvt.wu.s, rtz, S_MINUS_HALF, 0, NX
    FP_TO_INTEGER s, fcvt.wu.s, rdn, S_MINUS_HALF, 0, NV
    FP_TO_INTEGER s, fcvt.wu.s, rup, S_MINUS_HALF, 0, NX
    FP_TO_INTEGER s, fcvt.wu.s, rmm, S_MINUS_HALF, 0, NV
    FP_TO_INTEGER s, fcvt.wu.s, rtz, S_MINUS_ONE, 0, NV
    FP_TO_INTEGER s, fcvt.wu.s, rtz, 0x80000000, 0, 0
    FP_TO_INTEGER s, fcvt.wu.s, rtz, 0x4f32d05e, 0xffffffffb2d05e00, 0  /* 3e9 */
    FP_TO_INTEGER s, fcvt.wu.s, rtz, 0x4f800000, WU_MAX, NV     /* 2^32 */
    FP_TO_INTEGER s, fcvt.wu.s, rtz, S_CANONICAL_NAN, WU_MAX, NV
    FP_TO_INTEGER s, fcvt.wu.s, rtz, S_INFINITY, WU_MAX, NV
    FP_TO_INTEGER s, fcvt.wu.s, rtz, S_MINUS_INFINITY, 0, NV
    FP_TO_INTEGER s, fcvt.wu.s, rtz, S_ONE_AND_HALF, 1, NX
    FP_TO_INTEGER d, fcvt.wu.d, rtz, 0x41effffffff00000, WU_MAX, NX  /* 2^32 - 0.5 */
    FP_TO_INTEGER d, fcvt.wu.d, rne, 0x41effffffff00000, WU_MAX, NV
    FP_TO_INTEGER d, fcvt.wu.d, rtz, 0x41e0000000000000, 0xffffffff80000000, 0 /* 2^31 */
    FP_TO_INTEGER d, fcvt.wu.d, rtz, D_SIGNALING_NAN, WU_MAX, NV
    FP_TO_INTEGER d, fcvt.wu.d, rtz, D_MINUS_ONE, 0, NV
    /* FCVT.L and FCVT.LU */
    FP_TO_INTEGER s, fcvt.l.s, rtz, 0x5f000000, L_MAX, NV       /* 2^63 */
    FP_TO_INTEGER s, fcvt.l.s, rtz, 0xdf000000, L_MIN, 0        /* -2^63 */
    FP_TO_INTEGER s, fcvt.l.s, rtz, 0x5effffff, 0x7fffff8000000000, 0
    FP_TO_INTEGER s, fcvt.l.s, rtz, S_CANONICAL_NAN, L_MAX, NV
    FP_TO_INTEGER s, fcvt.l.s, rtz, S_MINUS_INFINITY, L_MIN, NV
    FP_TO_INTEGER s, fcvt.lu.s, rtz, S_MINUS_ONE, 0, NV
    FP_TO_INTEGER s, fcvt.lu.s, rtz, 0x5f800000, LU_MAX, NV     /* 2^64 */
    FP_TO_INTEGER s, fcvt.lu.s, rtz, 0x5f000000, 0x8000000000000000, 0
    FP_TO_INTEGER s, fcvt.lu.s, rtz, S_SIGNALING_NAN, LU_MAX, NV
    FP_TO_INTEGER s, fcvt.lu.s, rup, S_MINUS_HALF, 0, NX
    FP_TO_INTEGER d, fcvt.l.d, rtz, 0x43e0000000000000, L_MAX, NV
    FP_TO_INTEGER d, fcvt.l.d, rtz, 0xc3e0000000000000, L_MIN, 0
    FP_TO_INTEGER d, fcvt.l.d, rtz, 0x43dfffffffffffff, 0x7ffffffffffffc00, 0
    FP_TO_INTEGER d, fcvt.l.d, rtz, 0xc3e0000000000001, L_MIN, NV
    FP_TO_INTEGER d, fcvt.l.d, rtz, D_MAXIMUM, L_MAX, NV
    FP_TO_INTEGER d, fcvt.l.d, rtz, D_CANONICAL_NAN, L_MAX, NV
    FP_TO_INTEGER d, fcvt.l.d, rdn, 0x8000000000000001, MINUS_1, NX
    FP_TO_INTEGER d, fcvt.lu.d, rtz, 0x43f0000000000000, LU_MAX, NV
    FP_TO_INTEGER d, fcvt.lu.d, rtz, 0x43efffffffffffff, 0xfffffffffffff800, 0
    FP_TO_INTEGER d, fcvt.lu.d, rtz, D_MINUS_INFINITY, 0, NV
    FP_TO_INTEGER d, fcvt.lu.d, rtz, D_INFINITY, LU_MAX, NV
    FP_TO_INTEGER d, fcvt.lu.d, rup, 0x0000000000000001, 1, NX
    FP_TO_INTEGER d, fcvt.lu.d, rne, 0x0000000000000001, 0, NX
    FP_TO_INTEGER d, fcvt.lu.d, rdn, 0x8000000000000001, 0, NV
    FP_TO_INTEGER d, fcvt.lu.d, rup, 0x8000000000000001, 0, NX

/* ---- Integers to floats ---- */
    /* 2^24 + 1 is a tie between 2^24 and 2^24 + 2. */
    FROM_INTEGER_ALL_MODES s, fcvt.s.w, 16777217, 0x4b800000, 0x4b800000, 0x4b800000, 0x4b800001, 0x4b800001, NX
    FROM_INTEGER_ALL_MODES s, fcvt.s.w, -16777217, 0xcb800000, 0xcb800000, 0xcb800001, 0xcb800000, 0xcb800001, NX
    FROM_INTEGER_ALL_MODES s, fcvt.s.w, 16777219, 0x4b800002, 0x4b800001, 0x4b800001, 0x4b800002, 0x4b800002, NX
    FROM_INTEGER_ALL_MODES s, fcvt.s.w, 16777218, 0x4b800001, 0x4b800001, 0x4b800001, 0x4b800001, 0x4b800001, 0
    /* W and WU use only the low 32 bits of the source. */
    FP_FROM_INTEGER s, fcvt.s.w, rne, 0x1234567800000001, 0x3f800000, 0
    FP_FROM_INTEGER s, fcvt.s.w, rne, 0x0000000080000000, 0xcf000000, 0
    FP_FROM_INTEGER s, fcvt.s.w, rne, 0, 0x00000000, 0
    FP_FROM_INTEGER s, fcvt.s.wu, rne, 0xffffffff80000000, 0x4f000000, 0
    FROM_INTEGER_ALL_MODES s, fcvt.s.wu, 0xffffffff, 0x4f800000, 0x4f7fffff, 0x4f7fffff, 0x4f800000, 0x4f800000, NX
    FROM_INTEGER_ALL_MODES s, fcvt.s.l, 0x7fffffffffffffff, 0x5f000000, 0x5effffff, 0x5effffff, 0x5f000000, 0x5f000000, NX
    FP_FROM_INTEGER s, fcvt.s.l, rne, -1, 0xbf800000, 0
    FP_FROM_INTEGER s, fcvt.s.l, rne, 0x8000000000000000, 0xdf000000, 0
    /* 2^40 + 2^16 is a tie between 2^40 and its successor. */
    FROM_INTEGER_ALL_MODES s, fcvt.s.l, 0x0000010000010000, 0x53800000, 0x53800000, 0x53800000, 0x53800001, 0x53800001, NX
    FROM_INTEGER_ALL_MODES s, fcvt.s.l, 0xfffffeffffff0000, 0xd3800000, 0xd3800000, 0xd3800001, 0xd3800000, 0xd3800001, NX
    FROM_INTEGER_ALL_MODES s, fcvt.s.lu, 0xffffffffffffffff, 0x5f800000, 0x5f7fffff, 0x5f7fffff, 0x5f800000, 0x5f800000, NX
    FROM_INTEGER_ALL_MODES s, fcvt.s.lu, 0x8000008000000000, 0x5f000000, 0x5f000000, 0x5f000000, 0x5f000001, 0x5f000001, NX
    FP_FROM_INTEGER s, fcvt.s.lu, rne, 0x8000000000000000, 0x5f000000, 0
    /* Doubles hold every 32-bit integer exactly. */
    FP_FROM_INTEGER d, fcvt.d.w, exact, -1, 0xbff0000000000000, 0
    FP_FROM_INTEGER d, fcvt.d.w, exact, 0x000000007fffffff, 0x41dfffffffc00000, 0
    FP_FROM_INTEGER d, fcvt.d.w, exact, 0x00000001ffffffff, 0xbff0000000000000, 0
    FP_FROM_INTEGER d, fcvt.d.wu, exact, 0x00000000ffffffff, 0x41efffffffe00000, 0
    FP_FROM_INTEGER d, fcvt.d.wu, exact, 0xffffffff00000000, 0x0000000000000000, 0
    /* 2^53 + 1 is a tie between 2^53 and 2^53 + 2. */
    FROM_INTEGER_ALL_MODES d, fcvt.d.l, 0x0020000000000001, 0x4340000000000000, 0x4340000000000000, 0x4340000000000000, 0x4340000000000001, 0x4340000000000001, NX
    FROM_INTEGER_ALL_MODES d, fcvt.d.l, 0xffdfffffffffffff, 0xc340000000000000, 0xc340000000000000, 0xc340000000000001, 0xc340000000000000, 0xc340000000000001, NX
    FROM_INTEGER_ALL_MODES d, fcvt.d.l, 0x7fffffffffffffff, 0x43e0000000000000, 0x43dfffffffffffff, 0x43dfffffffffffff, 0x43e0000000000000, 0x43e0000000000000, NX
    FP_FROM_INTEGER d, fcvt.d.l, rne, 0x8000000000000000, 0xc3e0000000000000, 0
    FROM_INTEGER_ALL_MODES d, fcvt.d.lu, 0xffffffffffffffff, 0x43f0000000000000, 0x43efffffffffffff, 0x43efffffffffffff, 0x43f0000000000000, 0x43f0000000000000, NX
    /* 2^63 + 2^10 is a tie between 2^63 (even) and 2^63 + 2^11. */
    FROM_INTEGER_ALL_MODES d, fcvt.d.lu, 0x8000000000000400, 0x43e0000000000000, 0x43e0000000000000, 0x43e0000000000000, 0x43e0000000000001, 0x43e0000000000001, NX
    /* 2^64 - 2^10 is a tie between 2^64 - 2^11 (odd) and 2^64. */
    FROM_INTEGER_ALL_MODES d, fcvt.d.lu, 0xfffffffffffffc00, 0x43f0000000000000, 0x43efffffffffffff, 0x43efffffffffffff, 0x43f0000000000000, 0x43f0000000000000, NX
    fsrmi   4
    FP_FROM_INTEGER d, fcvt.d.l, dyn, 0x0020000000000001, 0x4340000000000001, NX
    fsrmi   0

/* ---- FCVT.S.D: rounding, overflow, underflow, NaNs ---- */
    /* 1 + 2^-24 is a tie between 1 and 1 + 2^-23. */
    FP_CONVERT d, s, fcvt.s.d, rne, 0x3ff0000010000000, 0x3f800000, NX
    FP_CONVERT d, s, fcvt.s.d, rtz, 0x3ff0000010000000, 0x3f800000, NX
    FP_CONVERT d, s, fcvt.s.d, rdn, 0x3ff0000010000000, 0x3f800000, NX
    FP_CONVERT d, s, fcvt.s.d, rup, 0x3ff0000010000000, 0x3f800001, NX
    FP_CONVERT d, s, fcvt.s.d, rmm, 0x3ff0000010000000, 0x3f800001, NX
    FP_CONVERT d, s, fcvt.s.d, rne, 0xbff0000010000000, 0xbf800000, NX
    FP_CONVERT d, s, fcvt.s.d, rdn, 0xbff0000010000000, 0xbf800001, NX
    FP_CONVERT d, s, fcvt.s.d, rup, 0xbff0000010000000, 0xbf800000, NX
    FP_CONVERT d, s, fcvt.s.d, rmm, 0xbff0000010000000, 0xbf800001, NX
    FP_CONVERT d, s, fcvt.s.d, rne, 0x3ff0000030000000, 0x3f800002, NX  /* tie, to even */
    FP_CONVERT d, s, fcvt.s.d, rmm, 0x3ff0000030000000, 0x3f800002, NX
    FP_CONVERT d, s, fcvt.s.d, rne, 0x3ff0000000000001, 0x3f800000, NX
    FP_CONVERT d, s, fcvt.s.d, rup, 0x3ff0000000000001, 0x3f800001, NX
    FP_CONVERT d, s, fcvt.s.d, rne, 0x400921fb54442d18, 0x40490fdb, NX  /* pi */
    FP_CONVERT d, s, fcvt.s.d, rtz, 0x400921fb54442d18, 0x40490fda, NX
    FP_CONVERT d, s, fcvt.s.d, rne, 0x47efffffe0000000, S_MAXIMUM, 0    /* exact */
    /* Overflow */
    FP_CONVERT d, s, fcvt.s.d, rne, D_MAXIMUM, S_INFINITY, OF | NX
    FP_CONVERT d, s, fcvt.s.d, rtz, D_MAXIMUM, S_MAXIMUM, OF | NX
    FP_CONVERT d, s, fcvt.s.d, rdn, D_MAXIMUM, S_MAXIMUM, OF | NX
    FP_CONVERT d, s, fcvt.s.d, rup, D_MAXIMUM, S_INFINITY, OF | NX
    FP_CONVERT d, s, fcvt.s.d, rmm, D_MAXIMUM, S_INFINITY, OF | NX
    FP_CONVERT d, s, fcvt.s.d, rdn, 0xffefffffffffffff, S_MINUS_INFINITY, OF | NX
    FP_CONVERT d, s, fcvt.s.d, rup, 0xffefffffffffffff, 0xff7fffff, OF | NX
    /* FLT_MAX + 2^103: a tie between FLT_MAX and 2^128. */
    FP_CONVERT d, s, fcvt.s.d, rne, 0x47effffff0000000, S_INFINITY, OF | NX
    FP_CONVERT d, s, fcvt.s.d, rmm, 0x47effffff0000000, S_INFINITY, OF | NX
    FP_CONVERT d, s, fcvt.s.d, rtz, 0x47effffff0000000, S_MAXIMUM, NX
    /* Underflow and subnormal results */
    FP_CONVERT d, s, fcvt.s.d, rne, 0x36a0000000000000, 0x00000001, 0      /* 2^-149 */
    FP_CONVERT d, s, fcvt.s.d, rne, 0x36a8000000000000, 0x00000002, UF | NX /* 1.5 * 2^-149 */
    FP_CONVERT d, s, fcvt.s.d, rtz, 0x36a8000000000000, 0x00000001, UF | NX
    FP_CONVERT d, s, fcvt.s.d, rmm, 0x36a8000000000000, 0x00000002, UF | NX
    FP_CONVERT d, s, fcvt.s.d, rne, 0x3690000000000000, 0x00000000, UF | NX /* 2^-150 */
    FP_CONVERT d, s, fcvt.s.d, rmm, 0x3690000000000000, 0x00000001, UF | NX
    FP_CONVERT d, s, fcvt.s.d, rmm, 0xb690000000000000, 0x80000001, UF | NX
    FP_CONVERT d, s, fcvt.s.d, rne, 0x01a56e1fc2f8f359, 0x00000000, UF | NX /* 1e-300 */
    FP_CONVERT d, s, fcvt.s.d, rup, 0x01a56e1fc2f8f359, 0x00000001, UF | NX
    FP_CONVERT d, s, fcvt.s.d, rdn, 0x81a56e1fc2f8f359, 0x80000001, UF | NX
    FP_CONVERT d, s, fcvt.s.d, rmm, 0x81a56e1fc2f8f359, 0x80000000, UF | NX
    /* 2^-126 - 2^-151 rounds to 2^-126 with an unbounded exponent: not
     * tiny after rounding, so NX only. */
    FP_CONVERT d, s, fcvt.s.d, rne, 0x380ffffff0000000, 0x00800000, NX
    FP_CONVERT d, s, fcvt.s.d, rtz, 0x380ffffff0000000, 0x007fffff, UF | NX
    /* NaNs and infinities */
    FP_CONVERT d, s, fcvt.s.d, rne, D_SIGNALING_NAN, S_CANONICAL_NAN, NV
    FP_CONVERT d, s, fcvt.s.d, rne, 0x7ff8000012345678, S_CANONICAL_NAN, 0
    FP_CONVERT d, s, fcvt.s.d, rne, 0xfff8000000000000, S_CANONICAL_NAN, 0
    FP_CONVERT d, s, fcvt.s.d, rne, D_MINUS_INFINITY, S_MINUS_INFINITY, 0
    FP_CONVERT d, s, fcvt.s.d, rne, 0x8000000000000000, 0x80000000, 0

/* ---- FCVT.D.S: always exact ---- */
    FP_CONVERT s, d, fcvt.d.s, exact, S_SIGNALING_NAN, D_CANONICAL_NAN, NV
    FP_CONVERT s, d, fcvt.d.s, exact, 0xffc12345, D_CANONICAL_NAN, 0
    FP_CONVERT u, d, fcvt.d.s, exact, 0x000000003f800000, D_CANONICAL_NAN, 0  /* unboxed */
    FP_CONVERT s, d, fcvt.d.s, exact, S_ONE_AND_HALF, D_ONE_AND_HALF, 0
    FP_CONVERT s, d, fcvt.d.s, exact, S_MINUS_INFINITY, D_MINUS_INFINITY, 0
    FP_CONVERT s, d, fcvt.d.s, exact, 0x00000001, 0x36a0000000000000, 0
    FP_CONVERT s, d, fcvt.d.s, exact, 0x80000000, 0x8000000000000000, 0
    FP_CONVERT s, d, fcvt.d.s, exact, S_MAXIMUM, 0x47efffffe0000000, 0
    FP_CONVERT s, d, fcvt.d.s, exact, 0x40490fdb, 0x400921fb60000000, 0

TEST_END
