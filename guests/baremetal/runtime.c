#include "runtime.h"

#define UART_BASE ((volatile uint8_t *)0x10000000ul)
#define UART_THR 0
#define UART_LSR 5
#define UART_LSR_THRE 0x20
#define SIFIVE_TEST ((volatile uint32_t *)0x100000ul)

void guest_putc(char c)
{
    while (!(UART_BASE[UART_LSR] & UART_LSR_THRE))
        ;
    UART_BASE[UART_THR] = (uint8_t)c;
}

void guest_puts(const char *s)
{
    while (*s)
        guest_putc(*s++);
}

void guest_put_hex(uint64_t value)
{
    for (int shift = 60; shift >= 0; shift -= 4)
        guest_putc("0123456789abcdef"[(value >> shift) & 15]);
}

void guest_put_decimal(uint64_t value)
{
    char digits[21];
    int count = 0;
    do {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    while (count)
        guest_putc(digits[--count]);
}

void guest_put_signed(int64_t value)
{
    if (value < 0) {
        guest_putc('-');
        guest_put_decimal(-(uint64_t)value);
    } else {
        guest_put_decimal((uint64_t)value);
    }
}

void guest_exit(int code)
{
    if (code == 0)
        *SIFIVE_TEST = 0x5555;
    else
        *SIFIVE_TEST = ((uint32_t)code << 16) | 0x3333;
    for (;;)
        __asm__ volatile("wfi");
}

/* The compiler may emit calls to these even in freestanding code. */
void *memcpy(void *destination, const void *source, unsigned long length);
void *memset(void *destination, int byte, unsigned long length);

void *memcpy(void *destination, const void *source, unsigned long length)
{
    uint8_t *d = destination;
    const uint8_t *s = source;
    while (length--)
        *d++ = *s++;
    return destination;
}

void *memset(void *destination, int byte, unsigned long length)
{
    uint8_t *d = destination;
    while (length--)
        *d++ = (uint8_t)byte;
    return destination;
}
