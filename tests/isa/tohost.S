/* HTIF exit: a program with a `tohost` symbol ends by storing
 * (code << 1) | 1 there; `colo run` then exits with status code. This test
 * ends with code 7 when its checks pass (the meson test expects exactly 7),
 * and with 100 + the number of the first failing check otherwise. It never
 * uses sifive_test, except as a fallback if the tohost store is ignored
 * (exit status 99 then). Runs on colo only: QEMU's virt machine has no
 * HTIF. */
#include "test_macros.h"

#define EXIT_CODE 7

    .section .tohost, "aw", @progbits
    .align  6
    .globl  tohost
    .type   tohost, @object
    .size   tohost, 8
tohost:
    .dword  0
    .align  6
    .globl  fromhost
    .type   fromhost, @object
    .size   fromhost, 8
fromhost:
    .dword  0

    TEST_BEGIN "tohost"
    /* tohost starts out zero and is an ordinary, readable location */
    CHECK_MEM "tohost initially", tohost, 0
    CHECK_MEM "fromhost initially", fromhost, 0
    la      t0, tohost
    andi    t0, t0, 7
    CHECK   "tohost 8-byte aligned", t0, 0
    /* a little work before exiting */
    li      t0, 0
    li      t1, 1
1:  add     t0, t0, t1
    addi    t1, t1, 1
    li      t2, 101
    bne     t1, t2, 1b
    CHECK   "sum 1..100", t0, 5050

    call    test_summary            /* a0 = first failing check or 0 */
    li      t0, EXIT_CODE
    beqz    a0, 1f
    addi    t0, a0, 100
1:  slli    t0, t0, 1
    ori     t0, t0, 1
    la      t1, tohost
    SAY     "tohost: exiting through HTIF"
    fence
    sd      t0, 0(t1)
    /* the host should have stopped us; if not, fail after a while */
    li      t2, 10000000
2:  addi    t2, t2, -1
    bnez    t2, 2b
    SAY     "tohost: still running after the tohost store"
    li      a0, 99
    call    guest_exit
