/* Start-up for bare-metal guest programs: M-mode, hart 0 only, FPU on,
 * a stack, zeroed .bss, then main(); its return value is the exit status. */
    .section .text.start, "ax"
    .globl _start
_start:
    csrr    t0, mhartid
    bnez    t0, park
    la      sp, __stack_top
    li      t0, (1 << 13)           /* mstatus.FS = initial */
    csrs    mstatus, t0
    csrwi   fcsr, 0
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  call    main
    call    guest_exit
park:
    wfi
    j       park
