/* Guest for the dirty log test: stores one doubleword into each of a0
 * consecutive pages starting at a1, then powers off. Uses no stack, so the
 * only pages it dirties are the ones it is told to. */
    .section .text.start, "ax"
    .globl _start
_start:
    li      t2, 4096
1:  beqz    a0, 2f
    sd      a0, 0(a1)
    add     a1, a1, t2
    addi    a0, a0, -1
    j       1b
2:  li      t0, 0x100000
    li      t1, 0x5555
    sw      t1, 0(t0)
3:  j       3b
