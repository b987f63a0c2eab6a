/* A tiny runtime for bare-metal guest programs (tests and benchmarks):
 * UART output and exit through the virt machine's sifive_test device, which
 * colo and qemu-system-riscv64 -M virt -bios none both have. */
#ifndef COLO_GUEST_RUNTIME_H
#define COLO_GUEST_RUNTIME_H

#include <stdint.h>

void guest_putc(char c);
void guest_puts(const char *s);     /* no newline added */
void guest_put_hex(uint64_t value); /* 16 hex digits */
void guest_put_decimal(uint64_t value);
void guest_put_signed(int64_t value);
__attribute__((noreturn)) void guest_exit(int code);

static inline uint64_t guest_read_instret(void)
{
    uint64_t value;
    __asm__ volatile("csrr %0, minstret" : "=r"(value));
    return value;
}

static inline uint64_t guest_read_mtime(void)
{
    return *(volatile uint64_t *)0x0200bff8ul;
}

#endif
