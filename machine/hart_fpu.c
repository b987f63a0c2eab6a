/* The F and D extensions: single- and double-precision IEEE 754 arithmetic.
 *
 * The arithmetic runs on the host FPU. For each instruction the guest's
 * rounding mode is installed on the host (through MXCSR on x86-64, through
 * <fenv.h> elsewhere), the host's exception flags are cleared before the
 * operation and read after it, and they are mapped into the guest's accrued
 * flags (fcsr.fflags). x86 SSE detects tininess after rounding, as RISC-V
 * requires, so the host's underflow flag is right.
 *
 * What the host cannot do for us is handled here:
 *  - Round to nearest, ties to max magnitude (RMM) has no host mode. It
 *    differs from round to nearest, ties to even (RNE) only when the exact
 *    result lies exactly halfway between two representable numbers. We
 *    compute in RNE and, if the result was inexact, recompute the operation
 *    in a wider format (long double). If that wider computation is exact we
 *    know the exact result and can see whether it was a tie; if it is
 *    inexact, the exact result has more significant bits than any tie can
 *    have (a tie needs at most precision + 1 bits), so RNE was already right.
 *    The flags of RNE and RMM agree in every case (see
 *    fpu_single_round_ties_away).
 *  - Every NaN result becomes the canonical NaN; x86 would produce a NaN
 *    with the sign bit set or propagate an input payload.
 *  - Conversions to integers saturate as the ISA's table says; they are done
 *    here in software because C's float-to-integer overflow is undefined.
 *  - Comparisons, minimum/maximum, sign injection, classification and moves
 *    work on the raw bits, so no host flag can leak into the result.
 *
 * The file is compiled with -frounding-math and -fsignaling-nans. In
 * addition, operands and results of host operations go through volatile
 * variables so the compiler cannot move the arithmetic across the code that
 * sets the rounding mode and reads the flags. */
#include <fenv.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "hart.h"

/* The wider format used to detect ties for RMM must hold every tie of a
 * double (54 significant bits) and every 64-bit integer exactly. */
_Static_assert(LDBL_MANT_DIG >= 64, "long double must have at least 64 significant bits");
_Static_assert(sizeof(float) == 4 && sizeof(double) == 8, "float and double must be IEEE 754 binary32 and binary64");

/* Major opcodes handled here. */
enum {
    FPU_OPCODE_LOAD = 0x07,
    FPU_OPCODE_STORE = 0x27,
    FPU_OPCODE_MULTIPLY_ADD = 0x43,
    FPU_OPCODE_MULTIPLY_SUBTRACT = 0x47,
    FPU_OPCODE_NEGATED_MULTIPLY_SUBTRACT = 0x4b,
    FPU_OPCODE_NEGATED_MULTIPLY_ADD = 0x4f,
    FPU_OPCODE_OP_FP = 0x53,
};

/* Operations of the OP-FP opcode, identified by funct7 with the two format
 * bits removed (funct7 >> 2). */
enum {
    FPU_OP_ADD = 0x00,
    FPU_OP_SUBTRACT = 0x01,
    FPU_OP_MULTIPLY = 0x02,
    FPU_OP_DIVIDE = 0x03,
    FPU_OP_SIGN_INJECT = 0x04,
    FPU_OP_MINIMUM_MAXIMUM = 0x05,
    FPU_OP_CONVERT_FLOAT_TO_FLOAT = 0x08,
    FPU_OP_SQUARE_ROOT = 0x0b,
    FPU_OP_COMPARE = 0x14,
    FPU_OP_CONVERT_FLOAT_TO_INTEGER = 0x18,
    FPU_OP_CONVERT_INTEGER_TO_FLOAT = 0x1a,
    FPU_OP_MOVE_TO_INTEGER_OR_CLASSIFY = 0x1c,
    FPU_OP_MOVE_FROM_INTEGER = 0x1e,
};

/* fcsr.fflags bits. */
enum {
    FPU_FLAG_INEXACT = 0x01,
    FPU_FLAG_UNDERFLOW = 0x02,
    FPU_FLAG_OVERFLOW = 0x04,
    FPU_FLAG_DIVIDE_BY_ZERO = 0x08,
    FPU_FLAG_INVALID = 0x10,
};

#define FPU_FCSR_FLAGS_MASK 0x1fu
#define FPU_FCSR_ROUNDING_SHIFT 5
#define FPU_NAN_BOX 0xffffffff00000000ull

/* The rm field / fcsr.frm encodings. */
enum fpu_rounding_mode {
    FPU_ROUND_NEAREST_EVEN = 0,
    FPU_ROUND_TOWARD_ZERO = 1,
    FPU_ROUND_DOWN = 2,
    FPU_ROUND_UP = 3,
    FPU_ROUND_NEAREST_MAX_MAGNITUDE = 4,
};
#define FPU_ROUNDING_DYNAMIC 7

/* The integer operand or result of a conversion, numbered as the rs2 field
 * of FCVT.int.fmt / FCVT.fmt.int numbers them. */
enum fpu_integer_kind {
    FPU_INTEGER_SIGNED_32 = 0,   /* W */
    FPU_INTEGER_UNSIGNED_32 = 1, /* WU */
    FPU_INTEGER_SIGNED_64 = 2,   /* L */
    FPU_INTEGER_UNSIGNED_64 = 3, /* LU */
};

enum fpu_operation {
    FPU_OPERATION_ADD,
    FPU_OPERATION_SUBTRACT,
    FPU_OPERATION_MULTIPLY,
    FPU_OPERATION_DIVIDE,
    FPU_OPERATION_SQUARE_ROOT,
    FPU_OPERATION_MULTIPLY_ADD, /* a * b + c; the other fused forms negate a and/or c */
};

/* The bit layout of one floating-point format, for the operations that work
 * on raw bits. Values of either format travel as uint64_t; singles use the
 * low 32 bits. */
struct fpu_format {
    bool is_double;
    uint64_t sign_mask;
    uint64_t exponent_mask;
    uint64_t fraction_mask;
    uint64_t quiet_bit; /* the most significant fraction bit */
    uint64_t canonical_nan;
};

static const struct fpu_format fpu_single_format = {
    .is_double = false,
    .sign_mask = 0x80000000u,
    .exponent_mask = 0x7f800000u,
    .fraction_mask = 0x007fffffu,
    .quiet_bit = 0x00400000u,
    .canonical_nan = 0x7fc00000u,
};

static const struct fpu_format fpu_double_format = {
    .is_double = true,
    .sign_mask = 0x8000000000000000ull,
    .exponent_mask = 0x7ff0000000000000ull,
    .fraction_mask = 0x000fffffffffffffull,
    .quiet_bit = 0x0008000000000000ull,
    .canonical_nan = 0x7ff8000000000000ull,
};

/* ---- Instruction fields ---- */

static unsigned fpu_field_rd(uint32_t instruction)
{
    return (instruction >> 7) & 31;
}
static unsigned fpu_field_funct3(uint32_t instruction)
{
    return (instruction >> 12) & 7;
}
static unsigned fpu_field_rs1(uint32_t instruction)
{
    return (instruction >> 15) & 31;
}
static unsigned fpu_field_rs2(uint32_t instruction)
{
    return (instruction >> 20) & 31;
}
static unsigned fpu_field_rs3(uint32_t instruction)
{
    return instruction >> 27;
}
static unsigned fpu_field_funct7(uint32_t instruction)
{
    return instruction >> 25;
}

/* The I-type immediate of loads, sign-extended. */
static int64_t fpu_load_offset(uint32_t instruction)
{
    return (int64_t)(int32_t)instruction >> 20;
}

/* The S-type immediate of stores: bits 31:25 and 11:7, sign-extended. */
static int64_t fpu_store_offset(uint32_t instruction)
{
    int64_t high = (int64_t)(int32_t)(instruction & 0xfe000000u) >> 20;
    return high | ((instruction >> 7) & 31);
}

static struct hart_fault fpu_illegal(uint32_t instruction)
{
    return hart_fault_make(EXCEPTION_ILLEGAL_INSTRUCTION, instruction);
}

/* ---- Raw-bit helpers ---- */

static float fpu_single_from_bits(uint32_t bits)
{
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static uint32_t fpu_single_to_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static double fpu_double_from_bits(uint64_t bits)
{
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static uint64_t fpu_double_to_bits(double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static bool fpu_is_nan(const struct fpu_format *format, uint64_t bits)
{
    return (bits & format->exponent_mask) == format->exponent_mask && (bits & format->fraction_mask) != 0;
}

static bool fpu_is_signaling_nan(const struct fpu_format *format, uint64_t bits)
{
    return fpu_is_nan(format, bits) && (bits & format->quiet_bit) == 0;
}

static bool fpu_is_infinity(const struct fpu_format *format, uint64_t bits)
{
    return (bits & ~format->sign_mask) == format->exponent_mask;
}

static bool fpu_is_zero(const struct fpu_format *format, uint64_t bits)
{
    return (bits & ~format->sign_mask) == 0;
}

/* Infinity or NaN: the exponent field is all ones. */
static bool fpu_is_infinity_or_nan(const struct fpu_format *format, uint64_t bits)
{
    return (bits & format->exponent_mask) == format->exponent_mask;
}

static bool fpu_is_negative(const struct fpu_format *format, uint64_t bits)
{
    return (bits & format->sign_mask) != 0;
}

/* The value as a host double. Exact for every value that is not a NaN, and
 * raises no host flag (singles widen exactly). Never call it with a NaN: a
 * signalling single NaN would raise invalid while widening. */
static double fpu_value_as_double(const struct fpu_format *format, uint64_t bits)
{
    if (format->is_double)
        return fpu_double_from_bits(bits);
    return (double)fpu_single_from_bits((uint32_t)bits);
}

/* ---- Register access and state updates ---- */

/* A single-precision operand: the low half of the register if it is
 * properly NaN-boxed, otherwise the canonical NaN, as the ISA requires. */
static uint32_t fpu_read_single(const struct hart *hart, unsigned reg)
{
    uint64_t value = hart->state.f[reg];
    if ((value & FPU_NAN_BOX) != FPU_NAN_BOX)
        return (uint32_t)fpu_single_format.canonical_nan;
    return (uint32_t)value;
}

static uint64_t fpu_read_operand(const struct hart *hart, const struct fpu_format *format, unsigned reg)
{
    if (format->is_double)
        return hart->state.f[reg];
    return fpu_read_single(hart, reg);
}

static uint64_t fpu_read_integer(const struct hart *hart, unsigned reg)
{
    return reg == 0 ? 0 : hart->state.x[reg];
}

static void fpu_mark_dirty(struct hart *hart)
{
    hart->state.mstatus = (hart->state.mstatus & ~MSTATUS_FS) | MSTATUS_FS_DIRTY;
}

/* Writing fflags (even with bits already set) modifies FP state, so FS
 * becomes Dirty whenever an instruction raises a flag. */
static void fpu_accrue_flags(struct hart *hart, uint32_t flags)
{
    if (flags == 0)
        return;
    hart->state.fcsr |= flags & FPU_FCSR_FLAGS_MASK;
    fpu_mark_dirty(hart);
}

/* Writes a result of the given format; singles are NaN-boxed. */
static void fpu_write_result(struct hart *hart, const struct fpu_format *format, unsigned rd, uint64_t bits)
{
    hart->state.f[rd] = format->is_double ? bits : (FPU_NAN_BOX | (uint32_t)bits);
    fpu_mark_dirty(hart);
}

static void fpu_write_integer(struct hart *hart, unsigned rd, uint64_t value)
{
    /* x[32] is the sink for writes to x0, so x[0] stays zero. */
    hart->state.x[rd == 0 ? 32 : rd] = value;
}

static uint64_t fpu_sign_extend_32(uint64_t value)
{
    return (uint64_t)(int64_t)(int32_t)(uint32_t)value;
}

/* Resolves the instruction's rm field (7 means fcsr.frm). Returns false for
 * the reserved encodings, which make the instruction illegal. */
static bool fpu_decode_rounding_mode(const struct hart *hart, unsigned rm_field, enum fpu_rounding_mode *mode)
{
    unsigned rm = rm_field;
    if (rm == FPU_ROUNDING_DYNAMIC)
        rm = (hart->state.fcsr >> FPU_FCSR_ROUNDING_SHIFT) & 7;
    if (rm > FPU_ROUND_NEAREST_MAX_MAGNITUDE)
        return false;
    *mode = (enum fpu_rounding_mode)rm;
    return true;
}

/* ---- The host FPU ---- */

#if defined(__x86_64__)
/* On x86-64, float and double arithmetic runs on SSE, whose rounding mode
 * and exception flags live in MXCSR alone. Setting and reading MXCSR
 * directly costs a few cycles, where feclearexcept and fesetround also
 * save and reload the whole x87 environment: this path is several times
 * faster per instruction. The x87 unit is only used by fpu_wide_evaluate,
 * which manages its flags through <fenv.h>.
 *
 * MXCSR: flags in bits 0-5 (invalid, denormal operand, divide by zero,
 * overflow, underflow, precision), exception masks in bits 7-12, rounding
 * control in bits 13-14, flush-to-zero in bit 15, denormals-are-zero in
 * bit 6. The value below is the standard one (all exceptions masked, no
 * flush-to-zero, no denormals-are-zero, no flags): IEEE semantics need it,
 * and each operation leaves the host in it, apart from the flags. */
#define FPU_MXCSR_STANDARD 0x1f80u
#define FPU_MXCSR_ROUNDING_SHIFT 13

static unsigned fpu_mxcsr_rounding(enum fpu_rounding_mode mode)
{
    switch (mode) {
    case FPU_ROUND_DOWN:
        return 1;
    case FPU_ROUND_UP:
        return 2;
    case FPU_ROUND_TOWARD_ZERO:
        return 3;
    case FPU_ROUND_NEAREST_EVEN:
    case FPU_ROUND_NEAREST_MAX_MAGNITUDE: /* RMM runs as RNE and is fixed up */
        break;
    }
    return 0;
}

/* Prepares the host for one guest operation: no pending flags, the guest's
 * rounding mode installed. */
static void fpu_host_begin(enum fpu_rounding_mode mode)
{
    _mm_setcsr(FPU_MXCSR_STANDARD | fpu_mxcsr_rounding(mode) << FPU_MXCSR_ROUNDING_SHIFT);
}

/* Collects the flags the operation raised, as fflags bits, and puts the
 * host back into round to nearest. */
static uint32_t fpu_host_end(enum fpu_rounding_mode mode)
{
    unsigned status = _mm_getcsr();
    if (fpu_mxcsr_rounding(mode) != 0)
        _mm_setcsr(FPU_MXCSR_STANDARD);
    uint32_t flags = 0;
    if (status & 0x01)
        flags |= FPU_FLAG_INVALID;
    if (status & 0x04)
        flags |= FPU_FLAG_DIVIDE_BY_ZERO;
    if (status & 0x08)
        flags |= FPU_FLAG_OVERFLOW;
    if (status & 0x10)
        flags |= FPU_FLAG_UNDERFLOW;
    if (status & 0x20)
        flags |= FPU_FLAG_INEXACT;
    return flags;
}

#else

/* Any other host: the same through <fenv.h>. */
static int fpu_host_rounding(enum fpu_rounding_mode mode)
{
    switch (mode) {
    case FPU_ROUND_TOWARD_ZERO:
        return FE_TOWARDZERO;
    case FPU_ROUND_DOWN:
        return FE_DOWNWARD;
    case FPU_ROUND_UP:
        return FE_UPWARD;
    case FPU_ROUND_NEAREST_EVEN:
    case FPU_ROUND_NEAREST_MAX_MAGNITUDE: /* RMM runs as RNE and is fixed up */
        break;
    }
    return FE_TONEAREST;
}

/* Prepares the host for one guest operation: no pending flags, the guest's
 * rounding mode installed. The host normally runs in round to nearest. */
static void fpu_host_begin(enum fpu_rounding_mode mode)
{
    feclearexcept(FE_ALL_EXCEPT);
    int host_mode = fpu_host_rounding(mode);
    if (host_mode != FE_TONEAREST)
        fesetround(host_mode);
}

/* Collects the flags the operation raised, as fflags bits, and puts the
 * host back into round to nearest. */
static uint32_t fpu_host_end(enum fpu_rounding_mode mode)
{
    int raised = fetestexcept(FE_ALL_EXCEPT);
    if (fpu_host_rounding(mode) != FE_TONEAREST)
        fesetround(FE_TONEAREST);
    uint32_t flags = 0;
    if (raised & FE_INVALID)
        flags |= FPU_FLAG_INVALID;
    if (raised & FE_DIVBYZERO)
        flags |= FPU_FLAG_DIVIDE_BY_ZERO;
    if (raised & FE_OVERFLOW)
        flags |= FPU_FLAG_OVERFLOW;
    if (raised & FE_UNDERFLOW)
        flags |= FPU_FLAG_UNDERFLOW;
    if (raised & FE_INEXACT)
        flags |= FPU_FLAG_INEXACT;
    return flags;
}

#endif

/* A result computed in long double, and whether that computation was exact
 * (then value is the exact result of the operation). */
struct fpu_wide_result {
    long double value;
    bool is_exact;
};

/* Evaluates the operation on the host in single precision, in whatever
 * rounding mode is installed. */
static float fpu_single_evaluate(enum fpu_operation operation, float a, float b, float c)
{
    volatile float left = a;
    volatile float right = b;
    volatile float addend = c;
    volatile float result = 0.0f;
    switch (operation) {
    case FPU_OPERATION_ADD:
        result = left + right;
        break;
    case FPU_OPERATION_SUBTRACT:
        result = left - right;
        break;
    case FPU_OPERATION_MULTIPLY:
        result = left * right;
        break;
    case FPU_OPERATION_DIVIDE:
        result = left / right;
        break;
    case FPU_OPERATION_SQUARE_ROOT:
        result = sqrtf(left);
        break;
    case FPU_OPERATION_MULTIPLY_ADD:
        result = fmaf(left, right, addend);
        break;
    }
    return result;
}

static double fpu_double_evaluate(enum fpu_operation operation, double a, double b, double c)
{
    volatile double left = a;
    volatile double right = b;
    volatile double addend = c;
    volatile double result = 0.0;
    switch (operation) {
    case FPU_OPERATION_ADD:
        result = left + right;
        break;
    case FPU_OPERATION_SUBTRACT:
        result = left - right;
        break;
    case FPU_OPERATION_MULTIPLY:
        result = left * right;
        break;
    case FPU_OPERATION_DIVIDE:
        result = left / right;
        break;
    case FPU_OPERATION_SQUARE_ROOT:
        result = sqrt(left);
        break;
    case FPU_OPERATION_MULTIPLY_ADD:
        result = fma(left, right, addend);
        break;
    }
    return result;
}

/* Evaluates the operation in long double (round to nearest) and reports
 * whether that was exact. Only called with finite operands. The product of
 * two singles (48 bits) is exact in long double, so the single fused
 * multiply-add needs only one rounding here, in the addition. */
static struct fpu_wide_result fpu_wide_evaluate(enum fpu_operation operation, bool is_double, long double a,
                                                long double b, long double c)
{
    feclearexcept(FE_ALL_EXCEPT);
    volatile long double left = a;
    volatile long double right = b;
    volatile long double addend = c;
    volatile long double result = 0.0L;
    switch (operation) {
    case FPU_OPERATION_ADD:
        result = left + right;
        break;
    case FPU_OPERATION_SUBTRACT:
        result = left - right;
        break;
    case FPU_OPERATION_MULTIPLY:
        result = left * right;
        break;
    case FPU_OPERATION_DIVIDE:
        result = left / right;
        break;
    case FPU_OPERATION_SQUARE_ROOT:
        result = sqrtl(left);
        break;
    case FPU_OPERATION_MULTIPLY_ADD:
        if (is_double) {
            result = fmal(left, right, addend);
        } else {
            volatile long double product = left * right;
            result = product + addend;
        }
        break;
    }
    /* The flags raised here are left behind: every guest operation starts
     * by clearing the host's flags. */
    bool is_exact = fetestexcept(FE_INEXACT) == 0;
    return (struct fpu_wide_result){ result, is_exact };
}

/* Turns the round-to-nearest-even result of an inexact operation into the
 * round-to-nearest-max-magnitude result, given the exact result.
 *
 * The two differ only when the exact value is a tie and RNE chose the
 * neighbour nearer to zero; then RMM takes the other neighbour, one unit in
 * the last place further from zero. The flags stay those of RNE: both modes
 * overflow to infinity, both are inexact, and tininess (judged after
 * rounding with an unbounded exponent) agrees, because the only tie whose
 * candidates lie on both sides of the smallest normal number has that
 * number as its even candidate, which RNE picks too. A tie can never push
 * RMM past the largest finite number while RNE stays finite, because the tie
 * above the largest finite number rounds to infinity (the even choice) in
 * RNE as well. */
static float fpu_single_round_ties_away(float nearest_even, long double exact)
{
    if (fabsl((long double)nearest_even) >= fabsl(exact))
        return nearest_even;
    uint32_t magnitude = fpu_single_to_bits(nearest_even) & 0x7fffffffu;
    uint32_t sign = signbit(exact) ? 0x80000000u : 0;
    float away = fpu_single_from_bits(sign | (magnitude + 1));
    /* The sum of two adjacent singles is exact in long double. */
    if (2.0L * exact == (long double)nearest_even + (long double)away)
        return away;
    return nearest_even;
}

static double fpu_double_round_ties_away(double nearest_even, long double exact)
{
    if (fabsl((long double)nearest_even) >= fabsl(exact))
        return nearest_even;
    uint64_t magnitude = fpu_double_to_bits(nearest_even) & 0x7fffffffffffffffull;
    uint64_t sign = signbit(exact) ? 0x8000000000000000ull : 0;
    double away = fpu_double_from_bits(sign | (magnitude + 1));
    /* The sum of two adjacent doubles has at most 54 significant bits, so
     * it is exact in long double. */
    if (2.0L * exact == (long double)nearest_even + (long double)away)
        return away;
    return nearest_even;
}

/* Replaces any NaN by the canonical NaN of the format. */
static uint64_t fpu_canonicalize(const struct fpu_format *format, uint64_t bits)
{
    return fpu_is_nan(format, bits) ? format->canonical_nan : bits;
}

/* The RISC-V fused multiply-add must raise invalid for infinity times zero
 * even when the addend is a quiet NaN; hosts need not. */
static bool fpu_is_infinity_times_zero(const struct fpu_format *format, uint64_t a, uint64_t b)
{
    return (fpu_is_infinity(format, a) && fpu_is_zero(format, b)) ||
           (fpu_is_zero(format, a) && fpu_is_infinity(format, b));
}

/* Add, subtract, multiply, divide, square root or fused multiply-add in the
 * given format and rounding mode. Returns the result's bits; the flags the
 * operation raised go to *flags. */
static uint64_t fpu_arithmetic(const struct fpu_format *format, enum fpu_operation operation,
                               enum fpu_rounding_mode mode, uint64_t a, uint64_t b, uint64_t c, uint32_t *flags)
{
    if (operation == FPU_OPERATION_MULTIPLY_ADD && fpu_is_infinity_times_zero(format, a, b)) {
        *flags = FPU_FLAG_INVALID;
        return format->canonical_nan;
    }

    uint64_t result;
    if (format->is_double) {
        double left = fpu_double_from_bits(a);
        double right = fpu_double_from_bits(b);
        double addend = fpu_double_from_bits(c);
        fpu_host_begin(mode);
        double value = fpu_double_evaluate(operation, left, right, addend);
        *flags = fpu_host_end(mode);
        result = fpu_double_to_bits(value);
        if (mode == FPU_ROUND_NEAREST_MAX_MAGNITUDE && (*flags & FPU_FLAG_INEXACT) &&
            !fpu_is_infinity_or_nan(format, result)) {
            struct fpu_wide_result wide = fpu_wide_evaluate(operation, true, left, right, addend);
            if (wide.is_exact)
                result = fpu_double_to_bits(fpu_double_round_ties_away(value, wide.value));
        }
    } else {
        float left = fpu_single_from_bits((uint32_t)a);
        float right = fpu_single_from_bits((uint32_t)b);
        float addend = fpu_single_from_bits((uint32_t)c);
        fpu_host_begin(mode);
        float value = fpu_single_evaluate(operation, left, right, addend);
        *flags = fpu_host_end(mode);
        result = fpu_single_to_bits(value);
        /* An inexact finite result means every operand was finite, so the
         * widening below raises nothing. */
        if (mode == FPU_ROUND_NEAREST_MAX_MAGNITUDE && (*flags & FPU_FLAG_INEXACT) &&
            !fpu_is_infinity_or_nan(format, result)) {
            struct fpu_wide_result wide = fpu_wide_evaluate(operation, false, left, right, addend);
            if (wide.is_exact)
                result = fpu_single_to_bits(fpu_single_round_ties_away(value, wide.value));
        }
    }
    return fpu_canonicalize(format, result);
}

/* ---- Conversions ---- */

/* FCVT.S.D: rounds a double to single. */
static uint32_t fpu_double_to_single(uint64_t bits, enum fpu_rounding_mode mode, uint32_t *flags)
{
    if (fpu_is_nan(&fpu_double_format, bits)) {
        *flags = fpu_is_signaling_nan(&fpu_double_format, bits) ? FPU_FLAG_INVALID : 0;
        return (uint32_t)fpu_single_format.canonical_nan;
    }
    fpu_host_begin(mode);
    volatile double source = fpu_double_from_bits(bits);
    volatile float narrowed = (float)source;
    float value = narrowed;
    *flags = fpu_host_end(mode);
    if (mode == FPU_ROUND_NEAREST_MAX_MAGNITUDE && (*flags & FPU_FLAG_INEXACT) &&
        !fpu_is_infinity_or_nan(&fpu_single_format, fpu_single_to_bits(value)))
        value = fpu_single_round_ties_away(value, (long double)fpu_double_from_bits(bits));
    return fpu_single_to_bits(value);
}

/* FCVT.D.S: widening is exact; only NaNs need care. */
static uint64_t fpu_single_to_double(uint32_t bits, uint32_t *flags)
{
    if (fpu_is_nan(&fpu_single_format, bits)) {
        *flags = fpu_is_signaling_nan(&fpu_single_format, bits) ? FPU_FLAG_INVALID : 0;
        return fpu_double_format.canonical_nan;
    }
    *flags = 0;
    return fpu_double_to_bits((double)fpu_single_from_bits(bits));
}

/* Rounds to an integral value in the given mode. The result is exact and
 * the host's flags are not looked at: the flags of conversions to integers
 * are computed by the ISA's rules in fpu_convert_to_integer. */
static double fpu_round_to_integral(double value, enum fpu_rounding_mode mode)
{
    switch (mode) {
    case FPU_ROUND_TOWARD_ZERO:
        return trunc(value);
    case FPU_ROUND_DOWN:
        return floor(value);
    case FPU_ROUND_UP:
        return ceil(value);
    case FPU_ROUND_NEAREST_MAX_MAGNITUDE:
        return round(value); /* C's round() breaks ties away from zero */
    case FPU_ROUND_NEAREST_EVEN:
        break;
    }
    double truncated = trunc(value);
    /* Exact: value and truncated share their high bits. A nonzero fraction
     * implies |value| < 2^52, so adding one below is exact too. */
    double fraction = fabs(value - truncated);
    if (fraction < 0.5)
        return truncated;
    double away = truncated + copysign(1.0, value);
    if (fraction > 0.5)
        return away;
    return fmod(truncated, 2.0) == 0.0 ? truncated : away;
}

/* FCVT.W/WU/L/LU from either format. Out-of-range values, infinities and
 * NaNs saturate and raise only invalid; 32-bit results are sign-extended. */
static uint64_t fpu_convert_to_integer(const struct fpu_format *format, uint64_t bits, enum fpu_integer_kind kind,
                                       enum fpu_rounding_mode mode, uint32_t *flags)
{
    /* The range is [minimum, limit): the limit is the first integer too
     * large, which unlike the largest valid one is exact in a double. */
    static const struct {
        double minimum;
        double limit;
        uint64_t below_minimum; /* result for -infinity and too negative */
        uint64_t above_maximum; /* result for +infinity, too large and NaN */
    } ranges[] = {
        [FPU_INTEGER_SIGNED_32] = { -0x1p31, 0x1p31, 0xffffffff80000000ull, 0x7fffffffull },
        [FPU_INTEGER_UNSIGNED_32] = { 0.0, 0x1p32, 0, 0xffffffffffffffffull },
        [FPU_INTEGER_SIGNED_64] = { -0x1p63, 0x1p63, 0x8000000000000000ull, 0x7fffffffffffffffull },
        [FPU_INTEGER_UNSIGNED_64] = { 0.0, 0x1p64, 0, 0xffffffffffffffffull },
    };

    if (fpu_is_nan(format, bits)) {
        *flags = FPU_FLAG_INVALID;
        return ranges[kind].above_maximum;
    }
    double value = fpu_value_as_double(format, bits);
    double rounded = fpu_round_to_integral(value, mode);
    if (rounded < ranges[kind].minimum) {
        *flags = FPU_FLAG_INVALID;
        return ranges[kind].below_minimum;
    }
    if (rounded >= ranges[kind].limit) {
        *flags = FPU_FLAG_INVALID;
        return ranges[kind].above_maximum;
    }
    *flags = rounded != value ? FPU_FLAG_INEXACT : 0;
    switch (kind) {
    case FPU_INTEGER_SIGNED_32:
        return fpu_sign_extend_32((uint64_t)(int64_t)(int32_t)rounded);
    case FPU_INTEGER_UNSIGNED_32:
        return fpu_sign_extend_32((uint32_t)rounded);
    case FPU_INTEGER_SIGNED_64:
        return (uint64_t)(int64_t)rounded;
    case FPU_INTEGER_UNSIGNED_64:
        break;
    }
    return (uint64_t)rounded;
}

/* The integer operand of FCVT.fmt.W/WU/L/LU as an exact long double. */
static long double fpu_integer_as_long_double(uint64_t value, enum fpu_integer_kind kind)
{
    switch (kind) {
    case FPU_INTEGER_SIGNED_32:
        return (long double)(int32_t)value;
    case FPU_INTEGER_UNSIGNED_32:
        return (long double)(uint32_t)value;
    case FPU_INTEGER_SIGNED_64:
        return (long double)(int64_t)value;
    case FPU_INTEGER_UNSIGNED_64:
        break;
    }
    return (long double)value;
}

/* FCVT.S/D.W/WU/L/LU. The host conversion rounds in the installed mode. */
static uint64_t fpu_convert_from_integer(const struct fpu_format *format, uint64_t value, enum fpu_integer_kind kind,
                                         enum fpu_rounding_mode mode, uint32_t *flags)
{
    volatile uint64_t source = value;
    uint64_t result;
    if (format->is_double) {
        volatile double converted = 0.0;
        fpu_host_begin(mode);
        switch (kind) {
        case FPU_INTEGER_SIGNED_32:
            converted = (double)(int32_t)source;
            break;
        case FPU_INTEGER_UNSIGNED_32:
            converted = (double)(uint32_t)source;
            break;
        case FPU_INTEGER_SIGNED_64:
            converted = (double)(int64_t)source;
            break;
        case FPU_INTEGER_UNSIGNED_64:
            converted = (double)source;
            break;
        }
        double rounded = converted;
        *flags = fpu_host_end(mode);
        if (mode == FPU_ROUND_NEAREST_MAX_MAGNITUDE && (*flags & FPU_FLAG_INEXACT))
            rounded = fpu_double_round_ties_away(rounded, fpu_integer_as_long_double(value, kind));
        result = fpu_double_to_bits(rounded);
    } else {
        volatile float converted = 0.0f;
        fpu_host_begin(mode);
        switch (kind) {
        case FPU_INTEGER_SIGNED_32:
            converted = (float)(int32_t)source;
            break;
        case FPU_INTEGER_UNSIGNED_32:
            converted = (float)(uint32_t)source;
            break;
        case FPU_INTEGER_SIGNED_64:
            converted = (float)(int64_t)source;
            break;
        case FPU_INTEGER_UNSIGNED_64:
            converted = (float)source;
            break;
        }
        float rounded = converted;
        *flags = fpu_host_end(mode);
        if (mode == FPU_ROUND_NEAREST_MAX_MAGNITUDE && (*flags & FPU_FLAG_INEXACT))
            rounded = fpu_single_round_ties_away(rounded, fpu_integer_as_long_double(value, kind));
        result = fpu_single_to_bits(rounded);
    }
    return result;
}

/* ---- Operations on raw bits ---- */

/* FSGNJ (funct3 0), FSGNJN (1), FSGNJX (2); returns false for other funct3. */
static bool fpu_sign_inject(const struct fpu_format *format, unsigned funct3, uint64_t a, uint64_t b, uint64_t *result)
{
    uint64_t sign;
    switch (funct3) {
    case 0:
        sign = b & format->sign_mask;
        break;
    case 1:
        sign = ~b & format->sign_mask;
        break;
    case 2:
        sign = (a ^ b) & format->sign_mask;
        break;
    default:
        return false;
    }
    *result = (a & ~format->sign_mask) | sign;
    return true;
}

/* FMIN/FMAX: -0 is below +0; a NaN operand yields the other operand; two
 * NaNs yield the canonical NaN; a signalling NaN raises invalid. */
static uint64_t fpu_minimum_maximum(const struct fpu_format *format, bool want_maximum, uint64_t a, uint64_t b,
                                    uint32_t *flags)
{
    bool a_is_nan = fpu_is_nan(format, a);
    bool b_is_nan = fpu_is_nan(format, b);
    *flags = fpu_is_signaling_nan(format, a) || fpu_is_signaling_nan(format, b) ? FPU_FLAG_INVALID : 0;
    if (a_is_nan && b_is_nan)
        return format->canonical_nan;
    if (a_is_nan)
        return b;
    if (b_is_nan)
        return a;
    double left = fpu_value_as_double(format, a);
    double right = fpu_value_as_double(format, b);
    if (left == right) {
        /* Equal values differ at most in the sign of a zero. */
        bool a_is_negative = fpu_is_negative(format, a);
        if (want_maximum)
            return a_is_negative ? b : a;
        return a_is_negative ? a : b;
    }
    bool a_is_less = left < right;
    return want_maximum == a_is_less ? b : a;
}

/* FLE (funct3 0), FLT (1), FEQ (2). FEQ is a quiet comparison (invalid only
 * for signalling NaNs); FLT and FLE signal invalid for any NaN. Returns
 * false for other funct3. */
static bool fpu_compare(const struct fpu_format *format, unsigned funct3, uint64_t a, uint64_t b, uint64_t *result,
                        uint32_t *flags)
{
    if (funct3 > 2)
        return false;
    *flags = 0;
    *result = 0;
    if (fpu_is_nan(format, a) || fpu_is_nan(format, b)) {
        bool is_quiet_comparison = funct3 == 2;
        if (!is_quiet_comparison || fpu_is_signaling_nan(format, a) || fpu_is_signaling_nan(format, b))
            *flags = FPU_FLAG_INVALID;
        return true;
    }
    double left = fpu_value_as_double(format, a);
    double right = fpu_value_as_double(format, b);
    switch (funct3) {
    case 0:
        *result = left <= right;
        break;
    case 1:
        *result = left < right;
        break;
    default:
        *result = left == right;
        break;
    }
    return true;
}

/* FCLASS: exactly one of ten bits. */
static uint64_t fpu_classify(const struct fpu_format *format, uint64_t bits)
{
    enum {
        CLASS_NEGATIVE_INFINITY = 1 << 0,
        CLASS_NEGATIVE_NORMAL = 1 << 1,
        CLASS_NEGATIVE_SUBNORMAL = 1 << 2,
        CLASS_NEGATIVE_ZERO = 1 << 3,
        CLASS_POSITIVE_ZERO = 1 << 4,
        CLASS_POSITIVE_SUBNORMAL = 1 << 5,
        CLASS_POSITIVE_NORMAL = 1 << 6,
        CLASS_POSITIVE_INFINITY = 1 << 7,
        CLASS_SIGNALING_NAN = 1 << 8,
        CLASS_QUIET_NAN = 1 << 9,
    };
    bool negative = fpu_is_negative(format, bits);
    uint64_t exponent = bits & format->exponent_mask;
    uint64_t fraction = bits & format->fraction_mask;
    if (exponent == format->exponent_mask) {
        if (fraction == 0)
            return negative ? CLASS_NEGATIVE_INFINITY : CLASS_POSITIVE_INFINITY;
        return (fraction & format->quiet_bit) ? CLASS_QUIET_NAN : CLASS_SIGNALING_NAN;
    }
    if (exponent == 0) {
        if (fraction == 0)
            return negative ? CLASS_NEGATIVE_ZERO : CLASS_POSITIVE_ZERO;
        return negative ? CLASS_NEGATIVE_SUBNORMAL : CLASS_POSITIVE_SUBNORMAL;
    }
    return negative ? CLASS_NEGATIVE_NORMAL : CLASS_POSITIVE_NORMAL;
}

/* ---- Instruction groups ---- */

/* FLW, FLD. */
static struct hart_fault fpu_execute_load(struct hart *hart, uint32_t instruction)
{
    unsigned size;
    switch (fpu_field_funct3(instruction)) {
    case 2:
        size = 4;
        break;
    case 3:
        size = 8;
        break;
    default:
        return fpu_illegal(instruction);
    }
    uint64_t address = fpu_read_integer(hart, fpu_field_rs1(instruction)) + (uint64_t)fpu_load_offset(instruction);
    uint64_t value;
    struct hart_fault fault = hart_load(hart, address, size, &value);
    if (fault.cause != HART_NO_FAULT)
        return fault;
    fpu_write_result(hart, size == 4 ? &fpu_single_format : &fpu_double_format, fpu_field_rd(instruction), value);
    return hart_no_fault();
}

/* FSW, FSD. FSW stores the low 32 bits whether or not they are NaN-boxed. */
static struct hart_fault fpu_execute_store(struct hart *hart, uint32_t instruction)
{
    unsigned size;
    switch (fpu_field_funct3(instruction)) {
    case 2:
        size = 4;
        break;
    case 3:
        size = 8;
        break;
    default:
        return fpu_illegal(instruction);
    }
    uint64_t address = fpu_read_integer(hart, fpu_field_rs1(instruction)) + (uint64_t)fpu_store_offset(instruction);
    uint64_t value = hart->state.f[fpu_field_rs2(instruction)];
    if (size == 4)
        value &= 0xffffffffu;
    return hart_store(hart, address, size, value);
}

/* The format field (bits 26:25) of OP-FP and the fused forms: only S and D. */
static const struct fpu_format *fpu_decode_format(uint32_t instruction)
{
    switch (fpu_field_funct7(instruction) & 3) {
    case 0:
        return &fpu_single_format;
    case 1:
        return &fpu_double_format;
    default:
        return NULL;
    }
}

/* FMADD, FMSUB, FNMSUB, FNMADD: one rounding of ±(a * b) ± c. Negating an
 * operand before the fused operation gives the same result, including the
 * sign of an exact zero, as the ISA's definitions. */
static struct hart_fault fpu_execute_fused(struct hart *hart, uint32_t instruction, unsigned opcode)
{
    const struct fpu_format *format = fpu_decode_format(instruction);
    enum fpu_rounding_mode mode;
    if (!format || !fpu_decode_rounding_mode(hart, fpu_field_funct3(instruction), &mode))
        return fpu_illegal(instruction);
    uint64_t a = fpu_read_operand(hart, format, fpu_field_rs1(instruction));
    uint64_t b = fpu_read_operand(hart, format, fpu_field_rs2(instruction));
    uint64_t c = fpu_read_operand(hart, format, fpu_field_rs3(instruction));
    bool negate_product = opcode == FPU_OPCODE_NEGATED_MULTIPLY_SUBTRACT || opcode == FPU_OPCODE_NEGATED_MULTIPLY_ADD;
    bool negate_addend = opcode == FPU_OPCODE_MULTIPLY_SUBTRACT || opcode == FPU_OPCODE_NEGATED_MULTIPLY_ADD;
    if (negate_product)
        a ^= format->sign_mask;
    if (negate_addend)
        c ^= format->sign_mask;
    uint32_t flags;
    uint64_t result = fpu_arithmetic(format, FPU_OPERATION_MULTIPLY_ADD, mode, a, b, c, &flags);
    fpu_write_result(hart, format, fpu_field_rd(instruction), result);
    fpu_accrue_flags(hart, flags);
    return hart_no_fault();
}

/* FADD, FSUB, FMUL, FDIV, FSQRT. */
static struct hart_fault fpu_execute_arithmetic(struct hart *hart, uint32_t instruction,
                                                const struct fpu_format *format, enum fpu_operation operation)
{
    enum fpu_rounding_mode mode;
    if (!fpu_decode_rounding_mode(hart, fpu_field_funct3(instruction), &mode))
        return fpu_illegal(instruction);
    uint64_t a = fpu_read_operand(hart, format, fpu_field_rs1(instruction));
    uint64_t b = 0;
    if (operation == FPU_OPERATION_SQUARE_ROOT) {
        if (fpu_field_rs2(instruction) != 0)
            return fpu_illegal(instruction);
    } else {
        b = fpu_read_operand(hart, format, fpu_field_rs2(instruction));
    }
    uint32_t flags;
    uint64_t result = fpu_arithmetic(format, operation, mode, a, b, 0, &flags);
    fpu_write_result(hart, format, fpu_field_rd(instruction), result);
    fpu_accrue_flags(hart, flags);
    return hart_no_fault();
}

/* FCVT.S.D (format S, rs2 1) and FCVT.D.S (format D, rs2 0). */
static struct hart_fault fpu_execute_convert_float(struct hart *hart, uint32_t instruction,
                                                   const struct fpu_format *format)
{
    unsigned source_format = fpu_field_rs2(instruction);
    unsigned rs1 = fpu_field_rs1(instruction);
    enum fpu_rounding_mode mode;
    if (!fpu_decode_rounding_mode(hart, fpu_field_funct3(instruction), &mode))
        return fpu_illegal(instruction);
    uint32_t flags;
    uint64_t result;
    if (!format->is_double && source_format == 1)
        result = fpu_double_to_single(hart->state.f[rs1], mode, &flags);
    else if (format->is_double && source_format == 0)
        result = fpu_single_to_double(fpu_read_single(hart, rs1), &flags);
    else
        return fpu_illegal(instruction);
    fpu_write_result(hart, format, fpu_field_rd(instruction), result);
    fpu_accrue_flags(hart, flags);
    return hart_no_fault();
}

/* OP-FP: everything except the loads, stores and fused forms. */
static struct hart_fault fpu_execute_op_fp(struct hart *hart, uint32_t instruction)
{
    const struct fpu_format *format = fpu_decode_format(instruction);
    if (!format)
        return fpu_illegal(instruction);
    unsigned rd = fpu_field_rd(instruction);
    unsigned rs1 = fpu_field_rs1(instruction);
    unsigned rs2 = fpu_field_rs2(instruction);
    unsigned funct3 = fpu_field_funct3(instruction);
    enum fpu_rounding_mode mode;
    uint64_t result;
    uint32_t flags;

    switch (fpu_field_funct7(instruction) >> 2) {
    case FPU_OP_ADD:
        return fpu_execute_arithmetic(hart, instruction, format, FPU_OPERATION_ADD);
    case FPU_OP_SUBTRACT:
        return fpu_execute_arithmetic(hart, instruction, format, FPU_OPERATION_SUBTRACT);
    case FPU_OP_MULTIPLY:
        return fpu_execute_arithmetic(hart, instruction, format, FPU_OPERATION_MULTIPLY);
    case FPU_OP_DIVIDE:
        return fpu_execute_arithmetic(hart, instruction, format, FPU_OPERATION_DIVIDE);
    case FPU_OP_SQUARE_ROOT:
        return fpu_execute_arithmetic(hart, instruction, format, FPU_OPERATION_SQUARE_ROOT);

    case FPU_OP_SIGN_INJECT:
        if (!fpu_sign_inject(format, funct3, fpu_read_operand(hart, format, rs1), fpu_read_operand(hart, format, rs2),
                             &result))
            return fpu_illegal(instruction);
        fpu_write_result(hart, format, rd, result);
        return hart_no_fault();

    case FPU_OP_MINIMUM_MAXIMUM:
        if (funct3 > 1)
            return fpu_illegal(instruction);
        result = fpu_minimum_maximum(format, funct3 == 1, fpu_read_operand(hart, format, rs1),
                                     fpu_read_operand(hart, format, rs2), &flags);
        fpu_write_result(hart, format, rd, result);
        fpu_accrue_flags(hart, flags);
        return hart_no_fault();

    case FPU_OP_CONVERT_FLOAT_TO_FLOAT:
        return fpu_execute_convert_float(hart, instruction, format);

    case FPU_OP_COMPARE:
        if (!fpu_compare(format, funct3, fpu_read_operand(hart, format, rs1), fpu_read_operand(hart, format, rs2),
                         &result, &flags))
            return fpu_illegal(instruction);
        fpu_write_integer(hart, rd, result);
        fpu_accrue_flags(hart, flags);
        return hart_no_fault();

    case FPU_OP_CONVERT_FLOAT_TO_INTEGER:
        if (rs2 > FPU_INTEGER_UNSIGNED_64 || !fpu_decode_rounding_mode(hart, funct3, &mode))
            return fpu_illegal(instruction);
        result = fpu_convert_to_integer(format, fpu_read_operand(hart, format, rs1), (enum fpu_integer_kind)rs2, mode,
                                        &flags);
        fpu_write_integer(hart, rd, result);
        fpu_accrue_flags(hart, flags);
        return hart_no_fault();

    case FPU_OP_CONVERT_INTEGER_TO_FLOAT:
        if (rs2 > FPU_INTEGER_UNSIGNED_64 || !fpu_decode_rounding_mode(hart, funct3, &mode))
            return fpu_illegal(instruction);
        result = fpu_convert_from_integer(format, fpu_read_integer(hart, rs1), (enum fpu_integer_kind)rs2, mode,
                                          &flags);
        fpu_write_result(hart, format, rd, result);
        fpu_accrue_flags(hart, flags);
        return hart_no_fault();

    case FPU_OP_MOVE_TO_INTEGER_OR_CLASSIFY:
        if (rs2 != 0)
            return fpu_illegal(instruction);
        if (funct3 == 0) {
            /* FMV.X.W takes the raw low half, boxed or not. */
            uint64_t raw = hart->state.f[rs1];
            fpu_write_integer(hart, rd, format->is_double ? raw : fpu_sign_extend_32(raw));
            return hart_no_fault();
        }
        if (funct3 == 1) {
            fpu_write_integer(hart, rd, fpu_classify(format, fpu_read_operand(hart, format, rs1)));
            return hart_no_fault();
        }
        return fpu_illegal(instruction);

    case FPU_OP_MOVE_FROM_INTEGER:
        if (rs2 != 0 || funct3 != 0)
            return fpu_illegal(instruction);
        fpu_write_result(hart, format, rd, fpu_read_integer(hart, rs1));
        return hart_no_fault();

    default:
        return fpu_illegal(instruction);
    }
}

struct hart_fault hart_fpu_execute(struct hart *hart, uint32_t instruction)
{
    if ((hart->state.mstatus & MSTATUS_FS) == MSTATUS_FS_OFF)
        return fpu_illegal(instruction);
    unsigned opcode = instruction & 0x7f;
    switch (opcode) {
    case FPU_OPCODE_LOAD:
        return fpu_execute_load(hart, instruction);
    case FPU_OPCODE_STORE:
        return fpu_execute_store(hart, instruction);
    case FPU_OPCODE_MULTIPLY_ADD:
    case FPU_OPCODE_MULTIPLY_SUBTRACT:
    case FPU_OPCODE_NEGATED_MULTIPLY_SUBTRACT:
    case FPU_OPCODE_NEGATED_MULTIPLY_ADD:
        return fpu_execute_fused(hart, instruction, opcode);
    case FPU_OPCODE_OP_FP:
        return fpu_execute_op_fp(hart, instruction);
    default:
        return fpu_illegal(instruction);
    }
}
