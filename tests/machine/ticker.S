/* Guest for the determinism test: a machine timer interrupt every 97 ticks
 * (its handler counts, re-arms, and prints a dot every 64 interrupts) while
 * the main loop scatters pseudo-random stores over 256 KiB, multiplies and
 * divides. Never exits: the test stops it with --max-instructions. */
    .section .text.start, "ax"
    .globl _start
_start:
    la      sp, stack_top
    la      t0, trap_handler
    csrw    mtvec, t0
    call    arm_timer
    li      t0, 0x80            /* MTIE */
    csrs    mie, t0
    csrsi   mstatus, 8          /* MIE */
    la      s0, scratch
    li      s1, 0x9e3779b97f4a7c15
    li      s2, 1
main_loop:
    mul     s2, s2, s1
    addi    s2, s2, 7
    srli    t0, s2, 49          /* 15 random bits: a doubleword in 256 KiB */
    slli    t0, t0, 3
    add     t0, t0, s0
    ld      t1, 0(t0)
    xor     t1, t1, s2
    sd      t1, 0(t0)
    li      t2, 12345
    divu    t3, s2, t2
    add     s3, s3, t3
    j       main_loop

arm_timer:
    li      t0, 0x0200bff8
    ld      t1, 0(t0)           /* mtime */
    addi    t1, t1, 97
    li      t0, 0x02004000
    sd      t1, 0(t0)           /* mtimecmp */
    ret

    .align 4
trap_handler:
    addi    sp, sp, -32
    sd      ra, 0(sp)
    sd      t0, 8(sp)
    sd      t1, 16(sp)
    sd      t2, 24(sp)
    call    arm_timer
    la      t0, interrupt_count
    ld      t1, 0(t0)
    addi    t1, t1, 1
    sd      t1, 0(t0)
    andi    t1, t1, 63
    bnez    t1, 1f
    li      t0, 0x10000000
    li      t2, '.'
    sb      t2, 0(t0)
1:  ld      ra, 0(sp)
    ld      t0, 8(sp)
    ld      t1, 16(sp)
    ld      t2, 24(sp)
    addi    sp, sp, 32
    mret

    .data
    .align 3
interrupt_count: .dword 0
    .bss
    .align 12
scratch: .space 0x40000
    .space 4096
stack_top:
