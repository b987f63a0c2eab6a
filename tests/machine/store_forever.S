/* Guest for the pause and dirty-log concurrency test: stores to a0 pages
 * starting at a1, round and round, forever. */
    .section .text.start, "ax"
    .globl _start
_start:
    li      t2, 4096
    mv      t3, a0
    mv      t4, a1
    li      t5, 0
1:  mv      a0, t3
    mv      a1, t4
2:  beqz    a0, 1b
    sd      t5, 0(a1)
    addi    t5, t5, 1
    add     a1, a1, t2
    addi    a0, a0, -1
    j       2b
