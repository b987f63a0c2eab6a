/* ns16550a UART at 0x10000000 (registers one byte apart), PLIC source 10 on
 * virt. Unbuffered output to a host file descriptor; input fed by the host
 * into the receive FIFO; receive-data and transmitter-empty interrupts for
 * Linux's 8250 driver. */
#ifndef COLO_MACHINE_UART_NS16550A_H
#define COLO_MACHINE_UART_NS16550A_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state_buffer.h"

#define UART_RX_FIFO_SIZE 16

struct uart_ns16550a_state {
    uint8_t interrupt_enable; /* IER */
    uint8_t fifo_control;     /* FCR as last written */
    uint8_t line_control;     /* LCR (bit 7: divisor latch access) */
    uint8_t modem_control;    /* MCR */
    uint8_t scratch;          /* SCR */
    uint8_t divisor_low, divisor_high;
    uint8_t rx_fifo[UART_RX_FIFO_SIZE];
    uint8_t rx_head, rx_count;
    /* The transmitter-holding-register-empty interrupt is latched: THR
     * became empty (after a write) or ETBEI was newly enabled, and no IIR
     * read has reported it since. 0 or 1. */
    uint8_t thr_empty_interrupt;
};

struct plic;

struct uart_ns16550a {
    struct uart_ns16550a_state state;
    int output_fd;     /* host side: -1 discards output */
    struct plic *plic; /* host side: NULL until connected */
    unsigned irq;      /* PLIC source */
};

void uart_ns16550a_init(struct uart_ns16550a *uart, int output_fd);
bool uart_ns16550a_read(struct uart_ns16550a *uart, uint64_t offset, unsigned size, uint64_t *value);
bool uart_ns16550a_write(struct uart_ns16550a *uart, uint64_t offset, unsigned size, uint64_t value);
void uart_ns16550a_save(const struct uart_ns16550a *uart, struct state_writer *writer);
void uart_ns16550a_load(struct uart_ns16550a *uart, struct state_reader *reader);
/* Host side: queues a received byte in the receive FIFO. Returns false,
 * dropping nothing, when the FIFO is full (or the UART is in loopback
 * mode): the caller keeps the byte and retries after the guest has read
 * some (uart_ns16550a_receive_space says when). */
bool uart_ns16550a_receive(struct uart_ns16550a *uart, uint8_t byte);
/* Host side: how many bytes uart_ns16550a_receive would accept now. 0 while
 * the UART is in loopback mode, where the serial input is disconnected. */
size_t uart_ns16550a_receive_space(const struct uart_ns16550a *uart);
/* Wires the UART's interrupt output to a PLIC source (10 on virt). The
 * line starts low, so this may come before or after plic_init. */
void uart_ns16550a_connect_interrupt(struct uart_ns16550a *uart, struct plic *plic, unsigned irq);
/* Drives the PLIC line from the current state. Every register access does
 * this itself; the machine calls it after loading a state (the load itself
 * goes into a scratch copy and touches no other device). */
void uart_ns16550a_update_interrupt(struct uart_ns16550a *uart);

#endif
