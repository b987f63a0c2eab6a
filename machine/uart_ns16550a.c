/* A 16550A UART, registers one byte apart, as on QEMU virt.
 *
 * Output is unbuffered: every byte written to THR goes straight to the host
 * file descriptor, so the transmitter is always idle and LSR always reports
 * THR empty and transmitter empty. Input arrives through
 * uart_ns16550a_receive into a 16-byte receive FIFO. The baud rate divisor
 * is stored only so that software reads back what it wrote.
 *
 * Interrupts (one output, to a PLIC source), by IIR priority:
 * - receiver line status: never raised (no parity, framing or overrun
 *   errors happen here, and the host never overruns the FIFO);
 * - received data available (ERBFI): while the receive FIFO is not empty.
 *   There is no trigger level or character timeout: any data interrupts at
 *   once, which is what a driver waiting for console input wants;
 * - transmitter holding register empty (ETBEI): a latch, set when THR
 *   becomes empty (at once after every write, output being unbuffered) and
 *   when ETBEI is newly enabled while THR is empty (always), and cleared by
 *   an IIR read that reports it or by a THR write;
 * - modem status: never raised (the modem lines never change, and the
 *   delta bits of MSR are not modelled).
 * The output is the highest enabled condition, so "IIR says pending" and
 * "the line is high" always agree. OUT2 does not gate the output, as on
 * QEMU virt (only PC boards wire OUT2 to the interrupt line). */
#include "uart_ns16550a.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "plic.h"

/* Register offsets. */
#define UART_RBR_THR_DLL 0 /* receive buffer / transmit holding / divisor low */
#define UART_IER_DLM 1     /* interrupt enable / divisor high */
#define UART_IIR_FCR 2     /* interrupt identification (read) / FIFO control (write) */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7
#define UART_REGISTER_COUNT 8

#define UART_IER_RX_DATA 0x01   /* ERBFI: received data available */
#define UART_IER_THR_EMPTY 0x02 /* ETBEI: transmitter holding register empty */
#define UART_IER_WRITABLE 0x0f  /* the four interrupt enables of a 16550A */

/* IIR interrupt identification (bits 0..3; bit 0 set means none pending). */
#define UART_IIR_NO_INTERRUPT 0x01
#define UART_IIR_THR_EMPTY 0x02
#define UART_IIR_RX_DATA 0x04
#define UART_IIR_FIFOS_ENABLED 0xc0

#define UART_FCR_ENABLE_FIFOS 0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04
/* The clear bits are actions, not state: they read back as zero. */
#define UART_FCR_SELF_CLEARING (UART_FCR_CLEAR_RX | UART_FCR_CLEAR_TX)

#define UART_LCR_DLAB 0x80

#define UART_MCR_DTR 0x01
#define UART_MCR_RTS 0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOPBACK 0x10
#define UART_MCR_WRITABLE 0x1f /* bits 5..7 do not exist on a 16550A */

#define UART_LSR_DATA_READY 0x01
#define UART_LSR_THR_EMPTY 0x20
#define UART_LSR_TX_EMPTY 0x40

#define UART_MSR_CTS 0x10
#define UART_MSR_DSR 0x20
#define UART_MSR_RI 0x40
#define UART_MSR_DCD 0x80

#define UART_SECTION_ID 0x55415254u /* "UART" */
#define UART_SECTION_VERSION 2u     /* 2 added the THR-empty interrupt latch */

void uart_ns16550a_init(struct uart_ns16550a *uart, int output_fd)
{
    memset(uart, 0, sizeof *uart);
    uart->output_fd = output_fd;
}

void uart_ns16550a_connect_interrupt(struct uart_ns16550a *uart, struct plic *plic, unsigned irq)
{
    uart->plic = plic;
    uart->irq = irq;
}

/* The interrupt IIR reports now (bits 0..3), highest priority first. */
static uint8_t current_interrupt(const struct uart_ns16550a_state *state)
{
    if ((state->interrupt_enable & UART_IER_RX_DATA) && state->rx_count > 0)
        return UART_IIR_RX_DATA;
    if ((state->interrupt_enable & UART_IER_THR_EMPTY) && state->thr_empty_interrupt)
        return UART_IIR_THR_EMPTY;
    return UART_IIR_NO_INTERRUPT;
}

void uart_ns16550a_update_interrupt(struct uart_ns16550a *uart)
{
    if (uart->plic)
        plic_set_line(uart->plic, uart->irq, current_interrupt(&uart->state) != UART_IIR_NO_INTERRUPT);
}

static void clear_rx_fifo(struct uart_ns16550a_state *state)
{
    state->rx_head = 0;
    state->rx_count = 0;
}

/* Queues a byte for the receiver; false when the FIFO is full. Does not
 * drive the interrupt line (callers do, once they are done). */
static bool push_rx_fifo(struct uart_ns16550a_state *state, uint8_t byte)
{
    if (state->rx_count >= UART_RX_FIFO_SIZE)
        return false;
    unsigned tail = (state->rx_head + state->rx_count) % UART_RX_FIFO_SIZE;
    state->rx_fifo[tail] = byte;
    state->rx_count++;
    return true;
}

size_t uart_ns16550a_receive_space(const struct uart_ns16550a *uart)
{
    if (uart->state.modem_control & UART_MCR_LOOPBACK)
        return 0;
    return UART_RX_FIFO_SIZE - uart->state.rx_count;
}

bool uart_ns16550a_receive(struct uart_ns16550a *uart, uint8_t byte)
{
    /* In loopback mode the serial input is disconnected from the
     * receiver: host input waits instead of disturbing the self-test. */
    if (uart_ns16550a_receive_space(uart) == 0)
        return false;
    push_rx_fifo(&uart->state, byte);
    uart_ns16550a_update_interrupt(uart);
    return true;
}

static uint8_t pop_rx_fifo(struct uart_ns16550a_state *state)
{
    if (state->rx_count == 0)
        return 0;
    uint8_t byte = state->rx_fifo[state->rx_head];
    state->rx_head = (uint8_t)((state->rx_head + 1) % UART_RX_FIFO_SIZE);
    state->rx_count--;
    return byte;
}

static void transmit(struct uart_ns16550a *uart, uint8_t byte)
{
    /* In loopback mode the transmitter feeds the receiver and nothing
     * leaves the chip; drivers use this to self-test the UART. A full
     * FIFO drops the byte, as an overrun would. */
    if (uart->state.modem_control & UART_MCR_LOOPBACK) {
        push_rx_fifo(&uart->state, byte);
        return;
    }
    if (uart->output_fd < 0)
        return;
    /* The console is best effort: a host-side write error (closed pipe,
     * full non-blocking terminal) must not stop the guest. */
    while (write(uart->output_fd, &byte, 1) < 0 && errno == EINTR) {
    }
}

static uint8_t modem_status(const struct uart_ns16550a_state *state)
{
    if (state->modem_control & UART_MCR_LOOPBACK) {
        /* Loopback wires the modem control outputs to the status inputs. */
        uint8_t status = 0;
        if (state->modem_control & UART_MCR_RTS)
            status |= UART_MSR_CTS;
        if (state->modem_control & UART_MCR_DTR)
            status |= UART_MSR_DSR;
        if (state->modem_control & UART_MCR_OUT1)
            status |= UART_MSR_RI;
        if (state->modem_control & UART_MCR_OUT2)
            status |= UART_MSR_DCD;
        return status;
    }
    /* A line that is always connected and always ready. */
    return UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
}

/* Wider accesses act on the byte at the offset: guests use byte accesses
 * (Linux with reg-io-width 1, OpenSBI), and this keeps a stray lw/sw from
 * faulting. */
bool uart_ns16550a_read(struct uart_ns16550a *uart, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)size;
    if (offset >= UART_REGISTER_COUNT)
        return false;
    struct uart_ns16550a_state *state = &uart->state;
    bool divisor_latch = state->line_control & UART_LCR_DLAB;
    uint8_t byte = 0;
    switch (offset) {
    case UART_RBR_THR_DLL:
        byte = divisor_latch ? state->divisor_low : pop_rx_fifo(state);
        break;
    case UART_IER_DLM:
        byte = divisor_latch ? state->divisor_high : state->interrupt_enable;
        break;
    case UART_IIR_FCR:
        byte = current_interrupt(state);
        /* Reporting the THR-empty interrupt acknowledges it. */
        if (byte == UART_IIR_THR_EMPTY)
            state->thr_empty_interrupt = 0;
        if (state->fifo_control & UART_FCR_ENABLE_FIFOS)
            byte |= UART_IIR_FIFOS_ENABLED;
        break;
    case UART_LCR:
        byte = state->line_control;
        break;
    case UART_MCR:
        byte = state->modem_control;
        break;
    case UART_LSR:
        byte = UART_LSR_THR_EMPTY | UART_LSR_TX_EMPTY;
        if (state->rx_count > 0)
            byte |= UART_LSR_DATA_READY;
        break;
    case UART_MSR:
        byte = modem_status(state);
        break;
    case UART_SCR:
        byte = state->scratch;
        break;
    }
    *value = byte;
    /* Reads of RBR and IIR can lower the line. */
    uart_ns16550a_update_interrupt(uart);
    return true;
}

bool uart_ns16550a_write(struct uart_ns16550a *uart, uint64_t offset, unsigned size, uint64_t value)
{
    (void)size;
    if (offset >= UART_REGISTER_COUNT)
        return false;
    struct uart_ns16550a_state *state = &uart->state;
    bool divisor_latch = state->line_control & UART_LCR_DLAB;
    uint8_t byte = (uint8_t)value;
    switch (offset) {
    case UART_RBR_THR_DLL:
        if (divisor_latch) {
            state->divisor_low = byte;
        } else {
            /* The write fills THR (clearing the interrupt) and the byte
             * leaves at once, emptying it again: net, the latch is set. */
            transmit(uart, byte);
            state->thr_empty_interrupt = 1;
        }
        break;
    case UART_IER_DLM:
        if (divisor_latch) {
            state->divisor_high = byte;
        } else {
            uint8_t newly_enabled = (uint8_t)(byte & ~state->interrupt_enable);
            state->interrupt_enable = byte & UART_IER_WRITABLE;
            /* THR is always empty, so enabling ETBEI interrupts at once;
             * Linux's 8250 driver relies on this to start transmitting and
             * tests for it at startup. */
            if (newly_enabled & UART_IER_THR_EMPTY)
                state->thr_empty_interrupt = 1;
        }
        break;
    case UART_IIR_FCR:
        /* Turning the FIFOs on or off empties them, as does the clear bit.
         * (The transmit FIFO is always empty here.) */
        if ((byte ^ state->fifo_control) & UART_FCR_ENABLE_FIFOS || byte & UART_FCR_CLEAR_RX)
            clear_rx_fifo(state);
        state->fifo_control = byte & (uint8_t)~UART_FCR_SELF_CLEARING;
        break;
    case UART_LCR:
        state->line_control = byte;
        break;
    case UART_MCR:
        state->modem_control = byte & UART_MCR_WRITABLE;
        break;
    case UART_LSR:
    case UART_MSR:
        /* Read-only status registers: writes have no effect. */
        break;
    case UART_SCR:
        state->scratch = byte;
        break;
    }
    uart_ns16550a_update_interrupt(uart);
    return true;
}

/* Layout (version 2): u8 IER, FCR, LCR, MCR, SCR, DLL, DLM, then the 16
 * receive FIFO bytes, u8 rx_head, u8 rx_count, u8 thr_empty_interrupt.
 * Version 1 (still loaded) ends before thr_empty_interrupt. output_fd and
 * the PLIC connection are host-side and not saved. */
void uart_ns16550a_save(const struct uart_ns16550a *uart, struct state_writer *writer)
{
    const struct uart_ns16550a_state *state = &uart->state;
    state_section_begin(writer, UART_SECTION_ID, UART_SECTION_VERSION);
    state_put_u8(writer, state->interrupt_enable);
    state_put_u8(writer, state->fifo_control);
    state_put_u8(writer, state->line_control);
    state_put_u8(writer, state->modem_control);
    state_put_u8(writer, state->scratch);
    state_put_u8(writer, state->divisor_low);
    state_put_u8(writer, state->divisor_high);
    state_put_bytes(writer, state->rx_fifo, sizeof state->rx_fifo);
    state_put_u8(writer, state->rx_head);
    state_put_u8(writer, state->rx_count);
    state_put_u8(writer, state->thr_empty_interrupt);
    state_section_end(writer);
}

void uart_ns16550a_load(struct uart_ns16550a *uart, struct state_reader *reader)
{
    /* Read into a copy so that a failed load leaves the device untouched. */
    struct uart_ns16550a_state loaded;
    memset(&loaded, 0, sizeof loaded);
    uint32_t version = state_section_open(reader, UART_SECTION_ID, UART_SECTION_VERSION, "uart");
    loaded.interrupt_enable = state_get_u8(reader);
    loaded.fifo_control = state_get_u8(reader);
    loaded.line_control = state_get_u8(reader);
    loaded.modem_control = state_get_u8(reader);
    loaded.scratch = state_get_u8(reader);
    loaded.divisor_low = state_get_u8(reader);
    loaded.divisor_high = state_get_u8(reader);
    state_get_bytes(reader, loaded.rx_fifo, sizeof loaded.rx_fifo);
    loaded.rx_head = state_get_u8(reader);
    loaded.rx_count = state_get_u8(reader);
    /* Version 1 had no interrupts, hence nothing latched. */
    if (version >= 2)
        loaded.thr_empty_interrupt = state_get_u8(reader);
    state_section_close(reader, "uart");
    if (reader->failed)
        return;
    /* rx_head indexes the FIFO and rx_count bounds the ring walk: a value
     * out of range would make later reads index past rx_fifo. */
    if (loaded.rx_head >= UART_RX_FIFO_SIZE || loaded.rx_count > UART_RX_FIFO_SIZE) {
        state_reader_fail(reader, "uart: receive FIFO head %u / count %u out of range (size %u)", loaded.rx_head,
                          loaded.rx_count, UART_RX_FIFO_SIZE);
        return;
    }
    if (loaded.thr_empty_interrupt > 1) {
        state_reader_fail(reader, "uart: THR-empty interrupt latch is %u, not 0 or 1", loaded.thr_empty_interrupt);
        return;
    }
    /* Only the guest-visible state: the host side (output, PLIC wiring)
     * stays, and the caller re-drives the line (update_interrupt). */
    uart->state = loaded;
}
