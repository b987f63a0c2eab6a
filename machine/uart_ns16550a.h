/* ns16550a UART at 0x10000000 (registers one byte apart). Polled output to
 * a host file descriptor; input and interrupts come with the Linux guest. */
#ifndef COLO_MACHINE_UART_NS16550A_H
#define COLO_MACHINE_UART_NS16550A_H

#include <stdbool.h>
#include <stdint.h>

#include "state_buffer.h"

#define UART_RX_FIFO_SIZE 16

struct uart_ns16550a_state {
    uint8_t interrupt_enable;     /* IER */
    uint8_t fifo_control;         /* FCR as last written */
    uint8_t line_control;         /* LCR (bit 7: divisor latch access) */
    uint8_t modem_control;        /* MCR */
    uint8_t scratch;              /* SCR */
    uint8_t divisor_low, divisor_high;
    uint8_t rx_fifo[UART_RX_FIFO_SIZE];
    uint8_t rx_head, rx_count;
};

struct uart_ns16550a {
    struct uart_ns16550a_state state;
    int output_fd;                /* host side: -1 discards output */
};

void uart_ns16550a_init(struct uart_ns16550a *uart, int output_fd);
bool uart_ns16550a_read(struct uart_ns16550a *uart, uint64_t offset, unsigned size, uint64_t *value);
bool uart_ns16550a_write(struct uart_ns16550a *uart, uint64_t offset, unsigned size, uint64_t value);
void uart_ns16550a_save(const struct uart_ns16550a *uart, struct state_writer *writer);
void uart_ns16550a_load(struct uart_ns16550a *uart, struct state_reader *reader);
/* Host side: queues a received byte in the receive FIFO. Returns false,
 * dropping nothing, when the FIFO is full: the caller keeps the byte and
 * retries after the guest has read some. */
bool uart_ns16550a_receive(struct uart_ns16550a *uart, uint8_t byte);

#endif
