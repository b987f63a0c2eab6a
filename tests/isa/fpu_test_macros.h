/* Macros for the F/D tests (fpu_*.S), on top of test_macros.h (include that
 * first). Each macro runs one floating-point instruction on operands given
 * as bit patterns, then checks the result and the accrued flags with CHECK,
 * so every case prints two lines:
 *
 *     fadd.s rmm 0x3f800000 0x33800000: ffffffff3f800001
 *     fadd.s rmm 0x3f800000 0x33800000 fflags: 0000000000000001
 *
 * Floating-point results are printed as the whole 64-bit register, so the
 * NaN-boxing of single results is checked too. The expected values in the
 * tests come from the ISA specification (IEEE 754 rounding, the canonical
 * NaN, the conversion saturation table), not from running an emulator.
 *
 * Operand formats (the fmt argument):
 *   s   single: the 32-bit pattern is NaN-boxed into the register
 *   d   double: the 64-bit pattern as given
 *   u   single-precision instruction with raw 64-bit register contents,
 *       for NaN-boxing tests (results are still single, NaN-boxed)
 *
 * Registers: operands go to fa0, fa1, fa2 (float) or t3 (integer); the
 * result is taken from fa3 (float) or t4 (integer); flags go through t5.
 * t0 is used for loading. fflags is cleared before each instruction; frm is
 * left alone, so tests of the dynamic rounding mode set it with fsrmi. */

#define FFLAGS_NV 0x10
#define FFLAGS_DZ 0x08
#define FFLAGS_OF 0x04
#define FFLAGS_UF 0x02
#define FFLAGS_NX 0x01

#define SINGLE_BOX 0xffffffff00000000

/* Loads a bit pattern into a float register in the given operand format. */
.macro FPU_LOAD fmt, reg, value
    .ifc \fmt, s
    li      t0, (\value) | SINGLE_BOX
    .else
    li      t0, \value
    .endif
    fmv.d.x \reg, t0
.endm

/* Checks the float result register fa3 and fflags. result_fmt d expects a
 * double; s (and u) a NaN-boxed single. */
.macro FPU_CHECK_RESULT name, result_fmt, expected, flags
    fmv.x.d t4, fa3
    csrr    t5, fflags
    .ifc \result_fmt, d
    CHECK   "\name", t4, \expected
    .else
    CHECK   "\name", t4, (\expected) | SINGLE_BOX
    .endif
    CHECK   "\name fflags", t5, \flags
.endm

/* Checks the integer result register t4 and fflags. */
.macro FPU_CHECK_INTEGER_RESULT name, expected, flags
    csrr    t5, fflags
    CHECK   "\name", t4, \expected
    CHECK   "\name fflags", t5, \flags
.endm

/* op fa3, fa0, fa1, rm: FADD, FSUB, FMUL, FDIV. */
.macro FP_OP2 fmt, op, rm, a, b, expected, flags
    FPU_LOAD \fmt, fa0, \a
    FPU_LOAD \fmt, fa1, \b
    csrwi   fflags, 0
    \op     fa3, fa0, fa1, \rm
    FPU_CHECK_RESULT "\op \rm \a \b", \fmt, \expected, \flags
.endm

/* op fa3, fa0, fa1 without a rounding mode: FMIN, FMAX, FSGNJ, FSGNJN,
 * FSGNJX. */
.macro FP_OP2_EXACT fmt, op, a, b, expected, flags
    FPU_LOAD \fmt, fa0, \a
    FPU_LOAD \fmt, fa1, \b
    csrwi   fflags, 0
    \op     fa3, fa0, fa1
    FPU_CHECK_RESULT "\op \a \b", \fmt, \expected, \flags
.endm

/* op fa3, fa0, rm: FSQRT. */
.macro FP_OP1 fmt, op, rm, a, expected, flags
    FPU_LOAD \fmt, fa0, \a
    csrwi   fflags, 0
    \op     fa3, fa0, \rm
    FPU_CHECK_RESULT "\op \rm \a", \fmt, \expected, \flags
.endm

/* op fa3, fa0, fa1, fa2, rm: FMADD, FMSUB, FNMSUB, FNMADD. */
.macro FP_OP3 fmt, op, rm, a, b, c, expected, flags
    FPU_LOAD \fmt, fa0, \a
    FPU_LOAD \fmt, fa1, \b
    FPU_LOAD \fmt, fa2, \c
    csrwi   fflags, 0
    \op     fa3, fa0, fa1, fa2, \rm
    FPU_CHECK_RESULT "\op \rm \a \b \c", \fmt, \expected, \flags
.endm

/* op t4, fa0, fa1: FEQ, FLT, FLE. */
.macro FP_COMPARE fmt, op, a, b, expected, flags
    FPU_LOAD \fmt, fa0, \a
    FPU_LOAD \fmt, fa1, \b
    csrwi   fflags, 0
    \op     t4, fa0, fa1
    FPU_CHECK_INTEGER_RESULT "\op \a \b", \expected, \flags
.endm

/* op t4, fa0: FCLASS, FMV.X.W, FMV.X.D (no flags). */
.macro FP_TO_INTEGER_EXACT fmt, op, a, expected
    FPU_LOAD \fmt, fa0, \a
    csrwi   fflags, 0
    \op     t4, fa0
    FPU_CHECK_INTEGER_RESULT "\op \a", \expected, 0
.endm

/* op t4, fa0, rm: FCVT.W/WU/L/LU.S/D. */
.macro FP_TO_INTEGER fmt, op, rm, a, expected, flags
    FPU_LOAD \fmt, fa0, \a
    csrwi   fflags, 0
    \op     t4, fa0, \rm
    FPU_CHECK_INTEGER_RESULT "\op \rm \a", \expected, \flags
.endm

/* op fa3, t3, rm: FCVT.S/D.W/WU/L/LU; result_fmt is s or d. rm "exact"
 * leaves the rounding mode out, for the conversions that are always exact
 * (FCVT.D.W/WU), which the assembler accepts only without one. */
.macro FP_FROM_INTEGER result_fmt, op, rm, x, expected, flags
    li      t3, \x
    csrwi   fflags, 0
    .ifc \rm, exact
    \op     fa3, t3
    .else
    \op     fa3, t3, \rm
    .endif
    FPU_CHECK_RESULT "\op \rm \x", \result_fmt, \expected, \flags
.endm

/* op fa3, fa0, rm: FCVT.S.D and FCVT.D.S (rm "exact" as above). */
.macro FP_CONVERT fmt, result_fmt, op, rm, a, expected, flags
    FPU_LOAD \fmt, fa0, \a
    csrwi   fflags, 0
    .ifc \rm, exact
    \op     fa3, fa0
    .else
    \op     fa3, fa0, \rm
    .endif
    FPU_CHECK_RESULT "\op \rm \a", \result_fmt, \expected, \flags
.endm
