/* RV64M: multiplication and division, including the high-half products,
 * the W forms (32-bit results sign-extended), division by zero and signed
 * overflow, whose results the spec defines (no trap). */
#include "test_macros.h"

#define INT64_MIN 0x8000000000000000
#define INT32_MIN_SEXT 0xffffffff80000000

    TEST_BEGIN "rv64m"

    /* ---------------- MUL ---------------- */
    li      t0, 0x123456789
    li      t1, 0x987654321
    mul     t2, t0, t1
    CHECK   "mul", t2, 0xd77d742cce1833a9
    li      t0, -7
    li      t1, 6
    mul     t2, t0, t1
    CHECK   "mul neg", t2, -42
    li      t0, INT64_MIN
    li      t1, -1
    mul     t2, t0, t1
    CHECK   "mul min*-1", t2, INT64_MIN
    li      t0, 0xffffffffffffffff
    mul     t2, t0, t0
    CHECK   "mul -1*-1", t2, 1

    /* ---------------- MULH / MULHSU / MULHU ---------------- */
    li      t0, 0x7fffffffffffffff
    li      t1, 0x7fffffffffffffff
    mulh    t2, t0, t1
    CHECK   "mulh max*max", t2, 0x3fffffffffffffff
    li      t0, -1
    li      t1, -1
    mulh    t2, t0, t1
    CHECK   "mulh -1*-1", t2, 0
    mulhu   t2, t0, t1
    CHECK   "mulhu max*max", t2, 0xfffffffffffffffe
    mulhsu  t2, t0, t1              /* -1 * (2^64-1) = -(2^64-1): high = -1 */
    CHECK   "mulhsu -1*umax", t2, -1
    li      t0, INT64_MIN
    li      t1, INT64_MIN
    mulh    t2, t0, t1              /* 2^126 */
    CHECK   "mulh min*min", t2, 0x4000000000000000
    mulhu   t2, t0, t1              /* 2^126 */
    CHECK   "mulhu 2^63*2^63", t2, 0x4000000000000000
    mulhsu  t2, t0, t1              /* -2^63 * 2^63 = -2^126 */
    CHECK   "mulhsu min*2^63", t2, 0xc000000000000000
    li      t0, -2
    li      t1, 3
    mulh    t2, t0, t1              /* -6: high = -1 */
    CHECK   "mulh -2*3", t2, -1
    mulhu   t2, t0, t1              /* (2^64-2)*3 = 2*2^64 + (2^64-6) */
    CHECK   "mulhu (2^64-2)*3", t2, 2
    mulhsu  t2, t1, t0              /* 3 * (2^64-2): high = 2 */
    CHECK   "mulhsu 3*(2^64-2)", t2, 2
    li      t0, 0x123456789abcdef0
    li      t1, 0x0fedcba987654321
    mulhu   t2, t0, t1
    CHECK   "mulhu pattern", t2, 0x0121fa00ad77d742
    mulh    t2, t0, t1
    CHECK   "mulh pattern", t2, 0x0121fa00ad77d742
    li      t0, -0x123456789abcdef0
    mulh    t2, t0, t1
    CHECK   "mulh neg pattern", t2, 0xfede05ff528828bd
    mulhsu  t2, t0, t1
    CHECK   "mulhsu neg pattern", t2, 0xfede05ff528828bd
    mulhu   t2, t0, t1
    CHECK   "mulhu neg pattern", t2, 0x0ecbd1a8d9ed6bde
    li      t1, -1
    mulhsu  t2, t1, t1              /* -1 * (2^64-1) */
    CHECK   "mulhsu rs1=rs2=-1", t2, -1
    li      t1, 5
    li      t0, -1
    mulhsu  t2, t1, t0              /* 5 * (2^64-1) = 4*2^64 + ... */
    CHECK   "mulhsu 5*umax", t2, 4

    /* ---------------- MULW ---------------- */
    li      t0, 0x10000
    li      t1, 0x10000
    mulw    t2, t0, t1              /* 2^32: low 32 bits zero */
    CHECK   "mulw 2^32", t2, 0
    li      t0, 0x8000
    li      t1, 0x10000
    mulw    t2, t0, t1              /* 2^31: sign-extended */
    CHECK   "mulw 2^31", t2, INT32_MIN_SEXT
    li      t0, 0xabcdef0100000003
    li      t1, 0x12345678fffffffd
    mulw    t2, t0, t1              /* 3 * -3 */
    CHECK   "mulw ignores high", t2, -9
    li      t0, 0x7fffffff
    mulw    t2, t0, t0              /* 0x3fffffff00000001 -> 1 */
    CHECK   "mulw max*max", t2, 1

    /* ---------------- DIV / DIVU / REM / REMU ---------------- */
    li      t0, 100
    li      t1, 7
    div     t2, t0, t1
    CHECK   "div 100/7", t2, 14
    rem     t2, t0, t1
    CHECK   "rem 100%7", t2, 2
    li      t0, -100
    div     t2, t0, t1
    CHECK   "div -100/7 (toward zero)", t2, -14
    rem     t2, t0, t1
    CHECK   "rem -100%7 (sign of dividend)", t2, -2
    li      t1, -7
    div     t2, t0, t1
    CHECK   "div -100/-7", t2, 14
    rem     t2, t0, t1
    CHECK   "rem -100%-7", t2, -2
    li      t0, 100
    div     t2, t0, t1
    CHECK   "div 100/-7", t2, -14
    rem     t2, t0, t1
    CHECK   "rem 100%-7", t2, 2
    li      t0, -100
    li      t1, 7
    divu    t2, t0, t1              /* (2^64-100)/7 */
    CHECK   "divu big/7", t2, 0x2492492492492484
    remu    t2, t0, t1
    CHECK   "remu big%7", t2, 0
    li      t0, 7
    li      t1, -1
    divu    t2, t0, t1
    CHECK   "divu 7/umax", t2, 0
    remu    t2, t0, t1
    CHECK   "remu 7%umax", t2, 7

    /* division by zero: quotient all ones, remainder the dividend */
    li      t0, 12345
    li      t1, 0
    div     t2, t0, t1
    CHECK   "div by zero", t2, -1
    divu    t2, t0, t1
    CHECK   "divu by zero", t2, -1
    rem     t2, t0, t1
    CHECK   "rem by zero", t2, 12345
    remu    t2, t0, t1
    CHECK   "remu by zero", t2, 12345
    li      t0, -12345
    div     t2, t0, t1
    CHECK   "div neg by zero", t2, -1
    rem     t2, t0, t1
    CHECK   "rem neg by zero", t2, -12345

    /* signed overflow: INT64_MIN / -1 = INT64_MIN, remainder 0 */
    li      t0, INT64_MIN
    li      t1, -1
    div     t2, t0, t1
    CHECK   "div overflow", t2, INT64_MIN
    rem     t2, t0, t1
    CHECK   "rem overflow", t2, 0
    divu    t2, t0, t1
    CHECK   "divu 2^63/umax", t2, 0
    remu    t2, t0, t1
    CHECK   "remu 2^63%umax", t2, INT64_MIN

    /* ---------------- DIVW / DIVUW / REMW / REMUW ---------------- */
    li      t0, 0xffffffff00000064  /* low word 100 */
    li      t1, 0x0000000700000007  /* low word 7 */
    divw    t2, t0, t1
    CHECK   "divw ignores high", t2, 14
    remw    t2, t0, t1
    CHECK   "remw ignores high", t2, 2
    li      t0, -100
    li      t1, 7
    divw    t2, t0, t1
    CHECK   "divw -100/7", t2, -14
    remw    t2, t0, t1
    CHECK   "remw -100%7", t2, -2
    divuw   t2, t0, t1              /* 0xffffff9c / 7 = 0x24924916 */
    CHECK   "divuw", t2, 0x24924916
    remuw   t2, t0, t1              /* 0xffffff9c % 7 = 2 */
    CHECK   "remuw", t2, 2
    li      t0, 0xfffffffe
    li      t1, 1
    divuw   t2, t0, t1              /* 0xfffffffe: sign-extended */
    CHECK   "divuw result sext", t2, 0xfffffffffffffffe
    li      t0, 0x80000005
    li      t1, 0x80000006
    remuw   t2, t0, t1              /* 0x80000005: sign-extended */
    CHECK   "remuw result sext", t2, 0xffffffff80000005

    /* W division by zero: all ones / the dividend's low word, extended */
    li      t0, 0x1234567880000000
    li      t1, 0xffffffff00000000  /* low word 0 */
    divw    t2, t0, t1
    CHECK   "divw by zero", t2, -1
    divuw   t2, t0, t1
    CHECK   "divuw by zero", t2, -1
    remw    t2, t0, t1
    CHECK   "remw by zero", t2, INT32_MIN_SEXT
    remuw   t2, t0, t1
    CHECK   "remuw by zero", t2, INT32_MIN_SEXT
    li      t0, 0x0000000500000009
    remw    t2, t0, t1
    CHECK   "remw by zero small", t2, 9

    /* W overflow: INT32_MIN / -1 */
    li      t0, 0x0000000080000000  /* low word INT32_MIN */
    li      t1, 0x00000000ffffffff  /* low word -1 */
    divw    t2, t0, t1
    CHECK   "divw overflow", t2, INT32_MIN_SEXT
    remw    t2, t0, t1
    CHECK   "remw overflow", t2, 0
    divuw   t2, t0, t1              /* 0x80000000 / 0xffffffff = 0 */
    CHECK   "divuw 2^31/umax32", t2, 0
    remuw   t2, t0, t1
    CHECK   "remuw 2^31%umax32", t2, INT32_MIN_SEXT

    /* rd = rs1 = rs2 and x0 destinations */
    li      t0, 9
    mul     t0, t0, t0
    CHECK   "mul rd=rs1=rs2", t0, 81
    div     t0, t0, t0
    CHECK   "div rd=rs1=rs2", t0, 1
    li      t0, 5
    li      t1, 0
    div     zero, t0, t1
    mv      t2, zero
    CHECK   "div x0 discarded", t2, 0

    /* a longer computation: 20! (fits in 64 bits) and back */
    li      t0, 1
    li      t1, 1
    li      t3, 21
1:  mul     t0, t0, t1
    addi    t1, t1, 1
    bne     t1, t3, 1b
    CHECK   "20!", t0, 2432902008176640000
    li      t1, 20
1:  divu    t0, t0, t1
    addi    t1, t1, -1
    bnez    t1, 1b
    CHECK   "20!/20!", t0, 1

    TEST_END
