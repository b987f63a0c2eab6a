/* Shared helpers for the ISA test programs in tests/isa (the .S files).
 *
 * Every test is a bare-metal program (guests/baremetal) whose `main` runs in
 * M-mode. It prints one line per check over the UART,
 *
 *     <name>: <16 hex digits of the computed value>
 *
 * followed by " FAIL expected <hex>" when the value is not the one the
 * specification requires, and returns 0 when all checks passed, else the
 * number of the first failing check (capped at 255) as its exit status.
 * The output is compared byte for byte with QEMU's by the differential
 * tests, so it must only contain values that the specification fixes (or
 * that colo and `qemu-system-riscv64 -M virt` agree on by design).
 *
 * Include this file once, at the top of a test. It defines:
 *   TEST_BEGIN name / TEST_END     main's prologue and epilogue
 *   CHECK name, reg, expected      compare a register with a constant
 *   CHECK_QUIET name, reg, exp     the same, printing only a failure
 *   CHECK_REG name, reg, expreg    compare two registers
 *   CHECK_MEM name, symbol, exp    compare a doubleword in memory
 *   PRINT name, reg                print a value without checking it
 *   SAY "text"                     print a line of text
 *   TRAP_RESET                     forget the recorded traps (M and S)
 *   CHECK_TRAP name, cause         the last M-mode trap had this cause
 *   SET_RESUME label, mode         where the next M-mode trap continues
 *   SET_SRESUME[_ON] label[, cause] where the next S-mode trap continues
 *   MRET_TO mode, label            mret into privilege mode at label
 *   ECALL_TO_M label               from any mode: back to M-mode at label
 *   DETECT_QEMU reg                reg = 1 on QEMU (for its known deviations)
 * an M-mode trap handler (mtrap_handler, installed by TEST_BEGIN) and an
 * S-mode one (strap_handler, installed by the tests that delegate), which
 * record what they see in trap_* and strap_* variables.
 *
 * Where QEMU 7.2, the differential reference, is known to deviate from the
 * spec, a test detects QEMU (DETECT_QEMU) and accepts its behaviour there,
 * using CHECK_QUIET so that colo and QEMU print the same lines when each
 * passes; on any other hart (colo) the spec's behaviour is required.
 *
 * CHECK, CHECK_QUIET, CHECK_REG, PRINT and SAY preserve every register;
 * CHECK_MEM, CHECK_TRAP and TRAP_RESET too. SET_RESUME, SET_SRESUME and
 * MRET_TO use t0 and t1; ECALL_TO_M uses a6 and a7.
 */

#define PRV_U 0
#define PRV_S 1
#define PRV_M 3

#define CAUSE_FETCH_MISALIGNED 0
#define CAUSE_FETCH_ACCESS 1
#define CAUSE_ILLEGAL 2
#define CAUSE_BREAKPOINT 3
#define CAUSE_LOAD_MISALIGNED 4
#define CAUSE_LOAD_ACCESS 5
#define CAUSE_STORE_MISALIGNED 6
#define CAUSE_STORE_ACCESS 7
#define CAUSE_ECALL_U 8
#define CAUSE_ECALL_S 9
#define CAUSE_ECALL_M 11
#define CAUSE_FETCH_PAGE_FAULT 12
#define CAUSE_LOAD_PAGE_FAULT 13
#define CAUSE_STORE_PAGE_FAULT 15
#define CAUSE_NO_TRAP 0xdead

/* The magic value in a7 that makes ecall return to M-mode at a6. */
#define ECALL_TO_M_MAGIC 0x7e57

/* ------------------------------------------------------------------ */
/* Checks and printing                                                 */

.macro CHECK name, reg, expected
    CHECK_WITH_MODE "\name", \reg, \expected, 0
.endm

/* Like CHECK, but prints a line only when the check fails: for values that
 * the spec fixes but on which QEMU (the differential reference) is known
 * to differ, so that the lines printed stay the same on both. */
.macro CHECK_QUIET name, reg, expected
    CHECK_WITH_MODE "\name", \reg, \expected, 1
.endm

.macro CHECK_WITH_MODE name, reg, expected, quiet
    addi    sp, sp, -48
    sd      a0, 0(sp)
    sd      a1, 8(sp)
    sd      a2, 16(sp)
    sd      a3, 32(sp)
    sd      ra, 24(sp)
    mv      a0, \reg
    li      a1, \expected
    .pushsection .rodata.test_names, "a"
.Lcheck_name\@:
    .asciz  "\name"
    .popsection
    la      a2, .Lcheck_name\@
    li      a3, \quiet
    call    test_check
    ld      a0, 0(sp)
    ld      a1, 8(sp)
    ld      a2, 16(sp)
    ld      a3, 32(sp)
    ld      ra, 24(sp)
    addi    sp, sp, 48
.endm

/* Compares two registers (neither may be sp; expreg may not be a0). */
.macro CHECK_REG name, reg, expreg
    addi    sp, sp, -48
    sd      a0, 0(sp)
    sd      a1, 8(sp)
    sd      a2, 16(sp)
    sd      ra, 24(sp)
    sd      \expreg, 32(sp)
    sd      a3, 40(sp)
    mv      a0, \reg
    ld      a1, 32(sp)
    li      a3, 0
    .pushsection .rodata.test_names, "a"
.Lcheck_name\@:
    .asciz  "\name"
    .popsection
    la      a2, .Lcheck_name\@
    call    test_check
    ld      a0, 0(sp)
    ld      a1, 8(sp)
    ld      a2, 16(sp)
    ld      a3, 40(sp)
    ld      ra, 24(sp)
    addi    sp, sp, 48
.endm

/* Compares the doubleword at symbol with a constant. */
.macro CHECK_MEM name, symbol, expected
    addi    sp, sp, -16
    sd      t0, 0(sp)
    la      t0, \symbol
    ld      t0, 0(t0)
    CHECK   "\name", t0, \expected
    ld      t0, 0(sp)
    addi    sp, sp, 16
.endm

.macro PRINT name, reg
    addi    sp, sp, -48
    sd      a0, 0(sp)
    sd      a1, 8(sp)
    sd      a2, 16(sp)
    sd      ra, 24(sp)
    mv      a0, \reg
    .pushsection .rodata.test_names, "a"
.Lprint_name\@:
    .asciz  "\name"
    .popsection
    la      a2, .Lprint_name\@
    call    test_print
    ld      a0, 0(sp)
    ld      a1, 8(sp)
    ld      a2, 16(sp)
    ld      ra, 24(sp)
    addi    sp, sp, 48
.endm

.macro SAY text
    addi    sp, sp, -16
    sd      a0, 0(sp)
    sd      ra, 8(sp)
    .pushsection .rodata.test_names, "a"
.Lsay_text\@:
    .asciz  "\text\n"
    .popsection
    la      a0, .Lsay_text\@
    call    test_puts
    ld      a0, 0(sp)
    ld      ra, 8(sp)
    addi    sp, sp, 16
.endm

/* ------------------------------------------------------------------ */
/* Test prologue and epilogue                                          */

.macro TEST_BEGIN name
    .text
    .globl  main
    .align  2
main:
    addi    sp, sp, -112
    sd      ra, 0(sp)
    sd      s0, 8(sp)
    sd      s1, 16(sp)
    sd      s2, 24(sp)
    sd      s3, 32(sp)
    sd      s4, 40(sp)
    sd      s5, 48(sp)
    sd      s6, 56(sp)
    sd      s7, 64(sp)
    sd      s8, 72(sp)
    sd      s9, 80(sp)
    sd      s10, 88(sp)
    sd      s11, 96(sp)
    la      t0, test_name
    la      t1, .Ltest_name_text
    sd      t1, 0(t0)
    .pushsection .rodata.test_names, "a"
.Ltest_name_text:
    .asciz  "\name"
    .popsection
    la      t0, mtrap_handler
    csrw    mtvec, t0
    /* Let S- and U-mode reach all of memory: one NAPOT PMP region covering
     * the whole address space with RWX. Without a PMP entry, QEMU (and the
     * spec) deny every S/U access. */
    li      t0, -1
    csrw    pmpaddr0, t0
    li      t0, 0x1f
    csrw    pmpcfg0, t0
    call    test_announce
.endm

.macro TEST_END
    call    test_summary          /* a0 = exit status */
    ld      ra, 0(sp)
    ld      s0, 8(sp)
    ld      s1, 16(sp)
    ld      s2, 24(sp)
    ld      s3, 32(sp)
    ld      s4, 40(sp)
    ld      s5, 48(sp)
    ld      s6, 56(sp)
    ld      s7, 64(sp)
    ld      s8, 72(sp)
    ld      s9, 80(sp)
    ld      s10, 88(sp)
    ld      s11, 96(sp)
    addi    sp, sp, 112
    ret
.endm

/* ------------------------------------------------------------------ */
/* Traps                                                               */

.macro TRAP_RESET
    addi    sp, sp, -16
    sd      t0, 0(sp)
    sd      t1, 8(sp)
    la      t0, trap_count
    sd      zero, 0(t0)
    la      t0, trap_log_count
    sd      zero, 0(t0)
    li      t1, CAUSE_NO_TRAP
    la      t0, trap_cause
    sd      t1, 0(t0)
    la      t0, trap_tval
    sd      t1, 0(t0)
    la      t0, trap_epc
    sd      t1, 0(t0)
    la      t0, strap_count
    sd      zero, 0(t0)
    la      t0, strap_cause
    sd      t1, 0(t0)
    la      t0, strap_tval
    sd      t1, 0(t0)
    la      t0, strap_epc
    sd      t1, 0(t0)
    la      t0, strap_first_cause
    sd      t1, 0(t0)
    la      t0, strap_first_tval
    sd      t1, 0(t0)
    ld      t0, 0(sp)
    ld      t1, 8(sp)
    addi    sp, sp, 16
.endm

.macro CHECK_TRAP name, cause
    CHECK_MEM "\name", trap_cause, \cause
.endm

/* The next trap taken into M-mode resumes at label (instead of after the
 * trapping instruction), in privilege mode `mode` (PRV_M, PRV_S, PRV_U), or
 * in the mode it came from when mode is -1. Uses t0, t1. */
.macro SET_RESUME label, mode
    la      t0, trap_resume
    la      t1, \label
    sd      t1, 0(t0)
    la      t0, trap_resume_mode
    li      t1, \mode
    sd      t1, 0(t0)
.endm

/* The next trap taken into S-mode resumes at label, in S-mode. Uses t0,
 * t1. */
.macro SET_SRESUME label
    SET_SRESUME_ON \label, -1
.endm

/* The same, but only for a trap with this scause (earlier traps with other
 * causes continue after the trapping instruction). */
.macro SET_SRESUME_ON label, cause
    la      t0, strap_resume
    la      t1, \label
    sd      t1, 0(t0)
    la      t0, strap_resume_cause
    li      t1, \cause
    sd      t1, 0(t0)
.endm

/* From M-mode: sets mstatus.MPP = mode and mepc = label, and mrets. */
.macro MRET_TO mode, label
    li      t0, 3 << 11
    csrc    mstatus, t0
    li      t0, (\mode) << 11
    csrs    mstatus, t0
    la      t0, \label
    csrw    mepc, t0
    mret
.endm

/* From any mode (code identity mapped): continue in M-mode at label. The
 * ecall is recorded as a trap like any other. Uses a6, a7. */
.macro ECALL_TO_M label
    la      a6, \label
    li      a7, ECALL_TO_M_MAGIC
    ecall
.endm

/* reg = 1 when running on QEMU, else 0 (uses t0). QEMU's harts report
 * mvendorid 0 and marchid = mimpid = its version (major << 16 | minor << 8
 * | micro). Used only to tolerate documented QEMU deviations from the spec,
 * with checks that print nothing either way (CHECK_QUIET). */
.macro DETECT_QEMU reg
    li      \reg, 0
    li      t0, 0
    csrr    t0, marchid
    beqz    t0, .Ldetect_done\@
    csrr    \reg, mimpid
    bne     \reg, t0, .Ldetect_no\@
    csrr    \reg, mvendorid
    bnez    \reg, .Ldetect_no\@
    srli    t0, t0, 16
    beqz    t0, .Ldetect_no\@
    li      \reg, 1
    j       .Ldetect_done\@
.Ldetect_no\@:
    li      \reg, 0
.Ldetect_done\@:
.endm

/* ------------------------------------------------------------------ */
/* Runtime: the helpers behind the macros, and the trap handlers        */

    .section .data.test_state, "aw"
    .align  3
test_name:          .dword 0
test_check_count:   .dword 0
test_fail_count:    .dword 0
test_first_fail:    .dword 0
    .globl trap_count, trap_cause, trap_tval, trap_epc, trap_mpp, trap_mstatus
trap_count:         .dword 0
trap_cause:         .dword CAUSE_NO_TRAP
trap_tval:          .dword CAUSE_NO_TRAP
trap_epc:           .dword CAUSE_NO_TRAP
trap_mpp:           .dword CAUSE_NO_TRAP
trap_mstatus:       .dword CAUSE_NO_TRAP
trap_log_count:     .dword 0
trap_first_strap_count: .dword 0    /* S-mode traps before the first M one */
trap_log:           .dword 0, 0, 0, 0, 0, 0, 0, 0   /* mcause of the first 8 traps */
trap_resume:        .dword 0
trap_resume_mode:   .dword -1
strap_count:        .dword 0
strap_cause:        .dword CAUSE_NO_TRAP
strap_tval:         .dword CAUSE_NO_TRAP
strap_epc:          .dword CAUSE_NO_TRAP
strap_spp:          .dword CAUSE_NO_TRAP
strap_resume:       .dword 0
strap_resume_cause: .dword -1
strap_first_cause:  .dword CAUSE_NO_TRAP
strap_first_tval:   .dword CAUSE_NO_TRAP

    .section .rodata.test_strings, "a"
.Ltext_separator:   .asciz ": "
.Ltext_fail:        .asciz " FAIL expected "
.Ltext_begin:       .asciz "== "
.Ltext_begin_end:   .asciz " ==\n"
.Ltext_checks:      .asciz " checks, "
.Ltext_failed:      .asciz " failed\n"
.Ltext_first:       .asciz "first failing check: "

    .text
    .align  2
/* Saves/restores every caller-saved register around the runtime calls so
 * that the macros can be used anywhere in a test. */
.macro TEST_SAVE_CALLER_SAVED
    addi    sp, sp, -144
    sd      ra, 0(sp)
    sd      t0, 8(sp)
    sd      t1, 16(sp)
    sd      t2, 24(sp)
    sd      t3, 32(sp)
    sd      t4, 40(sp)
    sd      t5, 48(sp)
    sd      t6, 56(sp)
    sd      a0, 64(sp)
    sd      a1, 72(sp)
    sd      a2, 80(sp)
    sd      a3, 88(sp)
    sd      a4, 96(sp)
    sd      a5, 104(sp)
    sd      a6, 112(sp)
    sd      a7, 120(sp)
    sd      s0, 128(sp)
    sd      s1, 136(sp)
.endm
.macro TEST_RESTORE_CALLER_SAVED
    ld      ra, 0(sp)
    ld      t0, 8(sp)
    ld      t1, 16(sp)
    ld      t2, 24(sp)
    ld      t3, 32(sp)
    ld      t4, 40(sp)
    ld      t5, 48(sp)
    ld      t6, 56(sp)
    ld      a0, 64(sp)
    ld      a1, 72(sp)
    ld      a2, 80(sp)
    ld      a3, 88(sp)
    ld      a4, 96(sp)
    ld      a5, 104(sp)
    ld      a6, 112(sp)
    ld      a7, 120(sp)
    ld      s0, 128(sp)
    ld      s1, 136(sp)
    addi    sp, sp, 144
.endm

/* a0 = value, a1 = expected, a2 = name, a3 = quiet (print only a
 * failure). Preserves all registers. */
test_check:
    TEST_SAVE_CALLER_SAVED
    mv      s0, a0
    mv      s1, a1
    la      t0, test_check_count
    ld      t1, 0(t0)
    addi    t1, t1, 1
    sd      t1, 0(t0)
    beqz    a3, 3f
    beq     s0, s1, 4f
3:  mv      a0, a2
    call    guest_puts
    la      a0, .Ltext_separator
    call    guest_puts
    mv      a0, s0
    call    guest_put_hex
    beq     s0, s1, 2f
    la      a0, .Ltext_fail
    call    guest_puts
    mv      a0, s1
    call    guest_put_hex
    la      t0, test_fail_count
    ld      t1, 0(t0)
    addi    t1, t1, 1
    sd      t1, 0(t0)
    la      t0, test_first_fail
    ld      t1, 0(t0)
    bnez    t1, 2f
    la      t1, test_check_count
    ld      t1, 0(t1)
    li      t2, 255
    bleu    t1, t2, 1f
    mv      t1, t2
1:  sd      t1, 0(t0)
2:  li      a0, '\n'
    call    guest_putc
4:  TEST_RESTORE_CALLER_SAVED
    ret

/* a0 = value, a2 = name. Preserves all registers. */
test_print:
    TEST_SAVE_CALLER_SAVED
    mv      s0, a0
    mv      a0, a2
    call    guest_puts
    la      a0, .Ltext_separator
    call    guest_puts
    mv      a0, s0
    call    guest_put_hex
    li      a0, '\n'
    call    guest_putc
    TEST_RESTORE_CALLER_SAVED
    ret

/* a0 = text. Preserves all registers. */
test_puts:
    TEST_SAVE_CALLER_SAVED
    call    guest_puts
    TEST_RESTORE_CALLER_SAVED
    ret

test_announce:
    TEST_SAVE_CALLER_SAVED
    la      a0, .Ltext_begin
    call    guest_puts
    la      a0, test_name
    ld      a0, 0(a0)
    call    guest_puts
    la      a0, .Ltext_begin_end
    call    guest_puts
    TEST_RESTORE_CALLER_SAVED
    ret

/* Prints "<name>: N checks, F failed" and returns the exit status in a0. */
test_summary:
    addi    sp, sp, -16
    sd      ra, 0(sp)
    la      a0, test_name
    ld      a0, 0(a0)
    call    guest_puts
    la      a0, .Ltext_separator
    call    guest_puts
    la      a0, test_check_count
    ld      a0, 0(a0)
    call    guest_put_decimal
    la      a0, .Ltext_checks
    call    guest_puts
    la      a0, test_fail_count
    ld      a0, 0(a0)
    call    guest_put_decimal
    la      a0, .Ltext_failed
    call    guest_puts
    la      a0, test_first_fail
    ld      a0, 0(a0)
    beqz    a0, 1f
    la      a0, .Ltext_first
    call    guest_puts
    la      a0, test_first_fail
    ld      a0, 0(a0)
    call    guest_put_decimal
    li      a0, '\n'
    call    guest_putc
    /* A test that ran no check at all has failed too. */
1:  la      a0, test_check_count
    ld      a0, 0(a0)
    li      t0, 255
    beqz    a0, 2f
    la      a0, test_first_fail
    ld      a0, 0(a0)
    ld      ra, 0(sp)
    addi    sp, sp, 16
    ret
2:  mv      a0, t0
    ld      ra, 0(sp)
    addi    sp, sp, 16
    ret

/* The M-mode trap handler. Records the trap (trap_count, trap_cause,
 * trap_tval, trap_epc, trap_mpp, and mstatus as the trap left it in
 * trap_mstatus; the causes of the first 8 traps since TRAP_RESET in
 * trap_log), then:
 *  - interrupts: disables the interrupt in mie and returns;
 *  - ecall with a7 = ECALL_TO_M_MAGIC: continues in M-mode at a6, with
 *    mstatus.MIE clear;
 *  - trap_resume set (SET_RESUME): continues there (one shot);
 *  - otherwise: continues after the trapping instruction (2 or 4 bytes).
 * Uses the interrupted stack (sp must be valid at identity addresses). */
    .align  2
    .globl  mtrap_handler
mtrap_handler:
    addi    sp, sp, -32
    sd      t0, 0(sp)
    sd      t1, 8(sp)
    sd      t2, 16(sp)
    la      t0, trap_count
    ld      t1, 0(t0)
    addi    t1, t1, 1
    sd      t1, 0(t0)
    csrr    t1, mcause
    la      t0, trap_cause
    sd      t1, 0(t0)
    la      t0, trap_log_count      /* log the first 8 causes */
    ld      t2, 0(t0)
    addi    t1, t2, 1
    sd      t1, 0(t0)
    bnez    t2, 2f                  /* first trap: how many S traps before */
    la      t0, strap_count
    ld      t1, 0(t0)
    la      t0, trap_first_strap_count
    sd      t1, 0(t0)
2:
    li      t1, 8
    bgeu    t2, t1, 1f
    slli    t2, t2, 3
    la      t0, trap_log
    add     t0, t0, t2
    csrr    t1, mcause
    sd      t1, 0(t0)
1:
    csrr    t1, mtval
    la      t0, trap_tval
    sd      t1, 0(t0)
    csrr    t1, mepc
    la      t0, trap_epc
    sd      t1, 0(t0)
    csrr    t1, mstatus
    la      t0, trap_mstatus
    sd      t1, 0(t0)
    srli    t1, t1, 11
    andi    t1, t1, 3
    la      t0, trap_mpp
    sd      t1, 0(t0)
    csrr    t1, mcause
    bltz    t1, .Lmtrap_interrupt
    /* ecall (causes 8, 9, 11) with the magic value: back to M at a6 */
    addi    t2, t1, -8
    li      t0, 3
    bgeu    t2, t0, .Lmtrap_not_magic
    li      t0, ECALL_TO_M_MAGIC
    bne     a7, t0, .Lmtrap_not_magic
    csrw    mepc, a6
    li      t0, 3 << 11             /* MPP = M */
    csrs    mstatus, t0
    li      t0, 1 << 7              /* MPIE = 0: M-mode continues with MIE = 0 */
    csrc    mstatus, t0
    j       .Lmtrap_out
.Lmtrap_not_magic:
    la      t0, trap_resume
    ld      t1, 0(t0)
    beqz    t1, .Lmtrap_skip
    sd      zero, 0(t0)
    csrw    mepc, t1
    la      t0, trap_resume_mode
    ld      t1, 0(t0)
    bltz    t1, .Lmtrap_out
    li      t2, -1
    sd      t2, 0(t0)
    li      t2, 3 << 11
    csrc    mstatus, t2
    slli    t1, t1, 11
    csrs    mstatus, t1
    j       .Lmtrap_out
.Lmtrap_skip:
    csrr    t1, mepc
    lhu     t2, 0(t1)
    andi    t2, t2, 3
    addi    t1, t1, 2
    li      t0, 3
    bne     t2, t0, 1f
    addi    t1, t1, 2
1:  csrw    mepc, t1
    j       .Lmtrap_out
.Lmtrap_interrupt:
    slli    t1, t1, 1
    srli    t1, t1, 1
    li      t2, 1
    sll     t2, t2, t1
    csrc    mie, t2
.Lmtrap_out:
    ld      t0, 0(sp)
    ld      t1, 8(sp)
    ld      t2, 16(sp)
    addi    sp, sp, 32
    mret

/* The S-mode trap handler (for delegated traps). Records strap_count,
 * strap_cause, strap_tval, strap_epc, strap_spp, then:
 *  - interrupts: disables the interrupt in sie, clears sip.SSIP, returns;
 *  - ecall with a7 = ECALL_TO_M_MAGIC: passes it on with an ecall from S;
 *  - strap_resume set (SET_SRESUME): continues there in S-mode (one shot);
 *  - otherwise: continues after the trapping instruction.
 * The first trap since TRAP_RESET is also kept in strap_first_cause and
 * strap_first_tval. */
    .align  2
    .globl  strap_handler
strap_handler:
    addi    sp, sp, -32
    sd      t0, 0(sp)
    sd      t1, 8(sp)
    sd      t2, 16(sp)
    la      t0, strap_count
    ld      t1, 0(t0)
    addi    t1, t1, 1
    sd      t1, 0(t0)
    csrr    t1, scause
    la      t0, strap_cause
    sd      t1, 0(t0)
    csrr    t1, stval
    la      t0, strap_tval
    sd      t1, 0(t0)
    la      t0, strap_first_cause   /* the first trap since TRAP_RESET */
    ld      t1, 0(t0)
    li      t2, CAUSE_NO_TRAP
    bne     t1, t2, 1f
    csrr    t1, scause
    sd      t1, 0(t0)
    csrr    t1, stval
    la      t0, strap_first_tval
    sd      t1, 0(t0)
1:
    csrr    t1, sepc
    la      t0, strap_epc
    sd      t1, 0(t0)
    csrr    t1, sstatus
    srli    t1, t1, 8
    andi    t1, t1, 1
    la      t0, strap_spp
    sd      t1, 0(t0)
    csrr    t1, scause
    bltz    t1, .Lstrap_interrupt
    addi    t2, t1, -8
    li      t0, 3
    bgeu    t2, t0, .Lstrap_not_magic
    li      t0, ECALL_TO_M_MAGIC
    bne     a7, t0, .Lstrap_not_magic
    ld      t0, 0(sp)
    ld      t1, 8(sp)
    ld      t2, 16(sp)
    addi    sp, sp, 32
    ecall                           /* M-mode continues at a6 */
.Lstrap_not_magic:
    la      t0, strap_resume_cause
    ld      t1, 0(t0)
    bltz    t1, 1f
    csrr    t2, scause
    bne     t1, t2, .Lstrap_skip
1:  la      t0, strap_resume
    ld      t1, 0(t0)
    beqz    t1, .Lstrap_skip
    sd      zero, 0(t0)
    csrw    sepc, t1
    li      t1, 1 << 8              /* SPP = S: resume in S-mode */
    csrs    sstatus, t1
    j       .Lstrap_out
.Lstrap_skip:
    csrr    t1, sepc
    lhu     t2, 0(t1)
    andi    t2, t2, 3
    addi    t1, t1, 2
    li      t0, 3
    bne     t2, t0, 1f
    addi    t1, t1, 2
1:  csrw    sepc, t1
    j       .Lstrap_out
.Lstrap_interrupt:
    slli    t1, t1, 1
    srli    t1, t1, 1
    li      t2, 1
    sll     t2, t2, t1
    csrc    sie, t2
    li      t2, 2
    csrc    sip, t2
.Lstrap_out:
    ld      t0, 0(sp)
    ld      t1, 8(sp)
    ld      t2, 16(sp)
    addi    sp, sp, 32
    sret
