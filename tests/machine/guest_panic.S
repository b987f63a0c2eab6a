/* Guest for the pvpanic tests: reads the events pvpanic-mmio supports
 * (exits with code 3 if they are not PANICKED|CRASH_LOADED), writes
 * CRASH_LOADED alone (must not end the run), then PANICKED, which must end
 * it; were the run still going, it exits with code 4. So only a working
 * pvpanic gives `colo run` its guest-panic end. */
    .section .text.start, "ax"
    .globl _start
_start:
    li      t0, 0x102000        /* pvpanic-mmio */
    li      t3, 0x100000        /* sifive_test */
    lbu     t1, 0(t0)
    li      t2, 3
    bne     t1, t2, wrong_events
    li      t1, 2               /* CRASH_LOADED: the guest carries on */
    sb      t1, 0(t0)
    li      t1, 1               /* PANICKED */
    sb      t1, 0(t0)
    li      t1, (4 << 16) | 0x3333
    sw      t1, 0(t3)
1:  j       1b
wrong_events:
    li      t1, (3 << 16) | 0x3333
    sw      t1, 0(t3)
2:  j       2b
