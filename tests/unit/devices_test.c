/* Unit tests for the small devices: CLINT, ns16550a UART (registers and
 * interrupts through the PLIC), sifive_test and the decode cache's page
 * table, including save/load round trips.
 * Prints "FAIL: ..." for each failed check and exits 1 if any failed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

static struct machine *machine;

/* ---- CLINT ------------------------------------------------------------ */

#define CLINT_MSIP(hart) (0x0000u + 4u * (hart))
#define CLINT_MTIMECMP(hart) (0x4000u + 8u * (hart))
#define CLINT_MTIME 0xbff8u

static uint64_t clint_read_ok(struct clint *clint, uint64_t offset, unsigned size)
{
    uint64_t value = 0xdeadbeefdeadbeefull;
    CHECK(clint_read(clint, offset, size, &value), "clint read of %u bytes at 0x%llx refused", size,
          (unsigned long long)offset);
    return value;
}

static void clint_write_ok(struct clint *clint, uint64_t offset, unsigned size, uint64_t value)
{
    CHECK(clint_write(clint, offset, size, value), "clint write of %u bytes at 0x%llx refused", size,
          (unsigned long long)offset);
}

static void test_clint_registers(void)
{
    struct clint *clint = &machine->clint;
    uint64_t *mip = &machine->harts[0].state.mip;

    /* Reset values. */
    CHECK(clint_read_ok(clint, CLINT_MSIP(0), 4) == 0, "msip not 0 at reset");
    CHECK(clint_read_ok(clint, CLINT_MTIMECMP(0), 8) == UINT64_MAX, "mtimecmp not all ones at reset");
    CHECK(clint_read_ok(clint, CLINT_MTIMECMP(0), 4) == 0xffffffffu, "mtimecmp low half at reset");
    CHECK(clint_read_ok(clint, CLINT_MTIMECMP(0) + 4, 4) == 0xffffffffu, "mtimecmp high half at reset");
    CHECK(clint_next_deadline(clint) == UINT64_MAX, "a deadline is armed at reset");

    /* msip: only bit 0 exists; writing it raises/lowers MSIP. */
    clint_write_ok(clint, CLINT_MSIP(0), 4, 0xffffffffu);
    CHECK(clint_read_ok(clint, CLINT_MSIP(0), 4) == 1, "msip keeps bits other than bit 0");
    CHECK(*mip & MIP_MSIP, "msip=1 did not raise MSIP");
    clint_write_ok(clint, CLINT_MSIP(0), 4, 2);
    CHECK(clint_read_ok(clint, CLINT_MSIP(0), 4) == 0, "writing 2 to msip did not clear it");
    CHECK(!(*mip & MIP_MSIP), "msip=0 did not lower MSIP");

    /* mtimecmp: whole and halves. */
    clint_write_ok(clint, CLINT_MTIMECMP(0), 8, 0x1122334455667788ull);
    CHECK(clint_read_ok(clint, CLINT_MTIMECMP(0), 8) == 0x1122334455667788ull, "mtimecmp 64-bit");
    CHECK(clint_read_ok(clint, CLINT_MTIMECMP(0), 4) == 0x55667788u, "mtimecmp low half read");
    CHECK(clint_read_ok(clint, CLINT_MTIMECMP(0) + 4, 4) == 0x11223344u, "mtimecmp high half read");
    clint_write_ok(clint, CLINT_MTIMECMP(0), 4, 0xffffffffaabbccddull);
    CHECK(clint_read_ok(clint, CLINT_MTIMECMP(0), 8) == 0x11223344aabbccddull,
          "mtimecmp low-half write touched the high half");
    clint_write_ok(clint, CLINT_MTIMECMP(0) + 4, 4, 0x99887766u);
    CHECK(clint_read_ok(clint, CLINT_MTIMECMP(0), 8) == 0x99887766aabbccddull, "mtimecmp high-half write");
    CHECK(clint_next_deadline(clint) == 0x99887766aabbccddull, "deadline does not follow mtimecmp");

    /* The timer interrupt follows mtimecmp against mtime. */
    clint_write_ok(clint, CLINT_MTIMECMP(0), 8, 0);
    CHECK(*mip & MIP_MTIP, "mtimecmp=0 did not raise MTIP");
    clint_write_ok(clint, CLINT_MTIMECMP(0), 8, UINT64_MAX);
    CHECK(!(*mip & MIP_MTIP), "mtimecmp=max did not lower MTIP");

    /* mtime is the machine's clock, read-only through the CLINT. The test
     * machine does not run, so (deterministic) time stands still. */
    uint64_t now = machine_mtime(machine);
    CHECK(clint_read_ok(clint, CLINT_MTIME, 8) == now, "mtime differs from machine_mtime");
    CHECK(clint_read_ok(clint, CLINT_MTIME, 4) == (uint32_t)now, "mtime low half");
    CHECK(clint_read_ok(clint, CLINT_MTIME + 4, 4) == now >> 32, "mtime high half");
    clint_write_ok(clint, CLINT_MTIME, 8, now + 12345);
    clint_write_ok(clint, CLINT_MTIME + 4, 4, 0x7777);
    CHECK(machine_mtime(machine) == now, "a write to mtime changed the machine's clock");
    CHECK(clint_read_ok(clint, CLINT_MTIME, 8) == now, "a write to mtime changed mtime");

    /* Things that are not registers. */
    uint64_t value;
    CHECK(!clint_read(clint, CLINT_MTIMECMP(0) + 4, 8, &value), "misaligned 8-byte mtimecmp read accepted");
    CHECK(!clint_write(clint, CLINT_MTIMECMP(0) + 4, 8, 0), "misaligned 8-byte mtimecmp write accepted");
    CHECK(!clint_read(clint, CLINT_MTIME + 4, 8, &value), "misaligned 8-byte mtime read accepted");
    CHECK(!clint_read(clint, CLINT_MTIMECMP(0), 1, &value), "1-byte mtimecmp read accepted");
    CHECK(!clint_read(clint, CLINT_MTIMECMP(0), 2, &value), "2-byte mtimecmp read accepted");
    CHECK(!clint_read(clint, CLINT_MSIP(0), 1, &value), "1-byte msip read accepted");
    CHECK(!clint_read(clint, CLINT_MSIP(0) + 2, 4, &value), "misaligned msip read accepted");
    CHECK(!clint_read(clint, 0x8000, 4, &value), "read at 0x8000 accepted");
    CHECK(!clint_read(clint, 0xbff0, 8, &value), "read at 0xbff0 accepted");
    CHECK(!clint_read(clint, 0xfff8, 8, &value), "read at 0xfff8 accepted");
    if (clint->hart_count == 1) {
        CHECK(!clint_read(clint, CLINT_MSIP(1), 4, &value), "msip of a missing hart accepted");
        CHECK(!clint_write(clint, CLINT_MTIMECMP(1), 8, 0), "mtimecmp of a missing hart accepted");
    }
}

static void test_clint_several_harts(void)
{
    /* A detached CLINT with more harts than the machine: its writes still
     * call machine_update_timer_interrupts, which looks at machine->clint. */
    struct clint clint;
    clint_init(&clint, machine, 3);
    CHECK(clint.hart_count == 3, "hart_count not kept");
    clint_write_ok(&clint, CLINT_MTIMECMP(0), 8, 500);
    clint_write_ok(&clint, CLINT_MTIMECMP(1), 8, 200);
    clint_write_ok(&clint, CLINT_MTIMECMP(2) + 4, 4, 0); /* 0x00000000ffffffff */
    CHECK(clint_next_deadline(&clint) == 200, "deadline is not the minimum (got %llu)",
          (unsigned long long)clint_next_deadline(&clint));
    clint_write_ok(&clint, CLINT_MTIMECMP(2), 4, 7);
    CHECK(clint_next_deadline(&clint) == 7, "deadline ignores hart 2");
    clint_write_ok(&clint, CLINT_MSIP(2), 4, 1);
    CHECK(clint_read_ok(&clint, CLINT_MSIP(2), 4) == 1, "msip of hart 2");
    CHECK(clint_read_ok(&clint, CLINT_MSIP(1), 4) == 0, "msip of hart 1 touched");
    uint64_t value;
    CHECK(!clint_read(&clint, CLINT_MSIP(3), 4, &value), "msip of hart 3 of 3 accepted");
    CHECK(!clint_read(&clint, CLINT_MTIMECMP(3), 8, &value), "mtimecmp of hart 3 of 3 accepted");
}

static void test_clint_save_load(void)
{
    struct clint original;
    clint_init(&original, machine, 2);
    clint_write_ok(&original, CLINT_MSIP(1), 4, 1);
    clint_write_ok(&original, CLINT_MTIMECMP(0), 8, 0x0123456789abcdefull);
    clint_write_ok(&original, CLINT_MTIMECMP(1), 8, 42);

    struct state_writer writer;
    state_writer_init(&writer);
    clint_save(&original, &writer);
    CHECK(!writer.out_of_memory, "clint save ran out of memory");

    struct clint restored;
    clint_init(&restored, machine, 2);
    struct state_reader reader;
    state_reader_init(&reader, writer.data, writer.length);
    clint_load(&restored, &reader);
    CHECK(!reader.failed, "clint load failed: %s", reader.error);
    CHECK(reader.position == writer.length, "clint load left bytes unread");
    CHECK(memcmp(&restored.state, &original.state, sizeof original.state) == 0, "clint state differs after save/load");
    CHECK(clint_next_deadline(&restored) == 42, "restored deadline");

    /* A state saved with another hart count is refused, and the device
     * stays as it was. */
    struct clint other;
    clint_init(&other, machine, 1);
    state_reader_init(&reader, writer.data, writer.length);
    clint_load(&other, &reader);
    CHECK(reader.failed, "clint load accepted a different hart count");
    CHECK(strstr(reader.error, "hart") != NULL, "hart count error does not say so: %s", reader.error);
    CHECK(other.state.mtimecmp[0] == UINT64_MAX, "failed load changed the clint");

    /* Truncated. */
    state_reader_init(&reader, writer.data, writer.length - 1);
    clint_load(&restored, &reader);
    CHECK(reader.failed, "clint load accepted a truncated state");

    /* An msip value the device cannot hold. Body: u32 hart_count, then
     * u32 msip at body offset 4; the body starts after the 12-byte section
     * header. */
    writer.data[12 + 4] = 2;
    state_reader_init(&reader, writer.data, writer.length);
    clint_load(&restored, &reader);
    CHECK(reader.failed, "clint load accepted msip=2");

    /* A section of another device. */
    struct uart_ns16550a uart;
    uart_ns16550a_init(&uart, -1);
    struct state_writer uart_writer;
    state_writer_init(&uart_writer);
    uart_ns16550a_save(&uart, &uart_writer);
    state_reader_init(&reader, uart_writer.data, uart_writer.length);
    clint_load(&restored, &reader);
    CHECK(reader.failed, "clint load accepted a uart section");
    CHECK(strstr(reader.error, "clint") != NULL, "wrong-section error does not name clint: %s", reader.error);

    state_writer_free(&uart_writer);
    state_writer_free(&writer);
}

/* ---- UART ------------------------------------------------------------- */

enum { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

static uint8_t uart_get(struct uart_ns16550a *uart, unsigned offset)
{
    uint64_t value = 0xdeadbeef;
    CHECK(uart_ns16550a_read(uart, offset, 1, &value), "uart read at %u refused", offset);
    CHECK(value <= 0xff, "uart read at %u returned more than a byte: 0x%llx", offset, (unsigned long long)value);
    return (uint8_t)value;
}

static void uart_put(struct uart_ns16550a *uart, unsigned offset, uint8_t value)
{
    CHECK(uart_ns16550a_write(uart, offset, 1, value), "uart write at %u refused", offset);
}

/* Everything currently in the pipe (non-blocking read end). */
static size_t drain_pipe(int fd, char *buffer, size_t capacity)
{
    size_t total = 0;
    while (total < capacity) {
        ssize_t got = read(fd, buffer + total, capacity - total);
        if (got > 0) {
            total += (size_t)got;
            continue;
        }
        if (got < 0 && errno == EINTR)
            continue;
        break;
    }
    return total;
}

static void test_uart_registers(void)
{
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) {
        CHECK(0, "pipe: %s", strerror(errno));
        return;
    }
    fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
    struct uart_ns16550a uart;
    uart_ns16550a_init(&uart, pipe_fds[1]);
    char output[64];

    /* Reset state. */
    CHECK(uart_get(&uart, LSR) == 0x60, "LSR at reset is 0x%02x, expected 0x60", uart_get(&uart, LSR));
    CHECK(uart_get(&uart, IIR) == 0x01, "IIR without FIFOs is 0x%02x", uart_get(&uart, IIR));
    CHECK(uart_get(&uart, MSR) == 0xb0, "MSR is 0x%02x, expected DCD|DSR|CTS", uart_get(&uart, MSR));
    CHECK(uart_get(&uart, RBR) == 0, "RBR of an empty FIFO is not 0");

    /* Output goes straight to the descriptor. */
    uart_put(&uart, THR, 'h');
    uart_put(&uart, THR, 'i');
    CHECK(uart_ns16550a_write(&uart, THR, 4, 0x1234560a), "4-byte THR write refused");
    size_t length = drain_pipe(pipe_fds[0], output, sizeof output);
    CHECK(length == 3 && memcmp(output, "hi\n", 3) == 0, "pipe got %zu bytes, expected \"hi\\n\"", length);
    CHECK(uart_get(&uart, LSR) == 0x60, "LSR after output is 0x%02x", uart_get(&uart, LSR));

    /* Scratch. */
    uart_put(&uart, SCR, 0xa5);
    CHECK(uart_get(&uart, SCR) == 0xa5, "SCR did not keep its value");

    /* Divisor latch: DLL/DLM replace THR/IER while LCR.DLAB is set. */
    uart_put(&uart, IER, 0xff);
    CHECK(uart_get(&uart, IER) == 0x0f, "IER kept bits beyond the four enables: 0x%02x", uart_get(&uart, IER));
    uart_put(&uart, IER, 0x01);
    uart_put(&uart, LCR, 0x83);
    CHECK(uart_get(&uart, LCR) == 0x83, "LCR read back");
    uart_put(&uart, DLL, 0x0c);
    uart_put(&uart, DLM, 0x01);
    CHECK(uart_get(&uart, DLL) == 0x0c, "DLL read back");
    CHECK(uart_get(&uart, DLM) == 0x01, "DLM read back");
    CHECK(drain_pipe(pipe_fds[0], output, sizeof output) == 0, "a DLL write was transmitted");
    uart_put(&uart, LCR, 0x03);
    CHECK(uart_get(&uart, IER) == 0x01, "IER was overwritten by the DLM write");
    CHECK(uart.state.divisor_low == 0x0c && uart.state.divisor_high == 0x01, "divisor not stored");
    CHECK(uart_get(&uart, RBR) == 0, "RBR reads the divisor with DLAB clear");

    /* FIFO control. */
    uart_put(&uart, FCR, 0x07);
    CHECK(uart_get(&uart, IIR) == 0xc1, "IIR with FIFOs is 0x%02x, expected 0xc1", uart_get(&uart, IIR));
    CHECK((uart.state.fifo_control & 0x06) == 0, "FCR clear bits stuck");

    /* Receive FIFO. */
    for (unsigned i = 0; i < UART_RX_FIFO_SIZE; i++)
        CHECK(uart_ns16550a_receive(&uart, (uint8_t)('a' + i)), "receive %u refused", i);
    CHECK(!uart_ns16550a_receive(&uart, 'X'), "receive into a full FIFO accepted");
    CHECK(uart_get(&uart, LSR) == 0x61, "LSR with data is 0x%02x, expected 0x61", uart_get(&uart, LSR));
    for (unsigned i = 0; i < 10; i++)
        CHECK(uart_get(&uart, RBR) == 'a' + i, "RBR byte %u out of order", i);
    /* Wrap around the ring. */
    for (unsigned i = 0; i < 10; i++)
        CHECK(uart_ns16550a_receive(&uart, (uint8_t)('A' + i)), "receive after pops refused");
    CHECK(!uart_ns16550a_receive(&uart, 'X'), "receive into a full wrapped FIFO accepted");
    for (unsigned i = 10; i < UART_RX_FIFO_SIZE; i++)
        CHECK(uart_get(&uart, RBR) == 'a' + i, "RBR byte %u out of order", i);
    for (unsigned i = 0; i < 10; i++)
        CHECK(uart_get(&uart, RBR) == 'A' + i, "wrapped RBR byte %u out of order", i);
    CHECK(uart_get(&uart, LSR) == 0x60, "LSR after draining is 0x%02x", uart_get(&uart, LSR));
    CHECK(uart_get(&uart, RBR) == 0, "RBR of a drained FIFO is not 0");

    /* FCR bit 1 empties the receive FIFO. */
    uart_ns16550a_receive(&uart, 'q');
    uart_ns16550a_receive(&uart, 'r');
    uart_put(&uart, FCR, 0x03);
    CHECK(uart_get(&uart, LSR) == 0x60, "FCR receive-clear left data");
    CHECK(uart_get(&uart, IIR) == 0xc1, "FIFOs off after FCR=0x03");
    uart_put(&uart, FCR, 0x00);
    CHECK(uart_get(&uart, IIR) == 0x01, "FIFOs still on after FCR=0");

    /* Wider reads act on the byte at the offset. */
    uint64_t value;
    CHECK(uart_ns16550a_read(&uart, SCR, 4, &value) && value == 0xa5, "4-byte SCR read");
    CHECK(uart_ns16550a_read(&uart, LSR, 8, &value) && value == 0x60, "8-byte LSR read");
    /* Status registers ignore writes. */
    uart_put(&uart, LSR, 0x00);
    uart_put(&uart, MSR, 0x00);
    CHECK(uart_get(&uart, LSR) == 0x60 && uart_get(&uart, MSR) == 0xb0, "status registers were written");
    /* Beyond the eight registers. */
    CHECK(!uart_ns16550a_read(&uart, 8, 1, &value), "read at offset 8 accepted");
    CHECK(!uart_ns16550a_write(&uart, 0xff, 1, 0), "write at offset 0xff accepted");

    /* Loopback: the transmitter feeds the receiver, MCR drives MSR. */
    uart_put(&uart, MCR, 0xff);
    CHECK(uart_get(&uart, MCR) == 0x1f, "MCR kept nonexistent bits: 0x%02x", uart_get(&uart, MCR));
    CHECK(uart_get(&uart, MSR) == 0xf0, "loopback MSR is 0x%02x, expected 0xf0", uart_get(&uart, MSR));
    uart_put(&uart, MCR, 0x10 | 0x02);
    CHECK(uart_get(&uart, MSR) == 0x10, "loopback MSR with RTS only is 0x%02x", uart_get(&uart, MSR));
    uart_put(&uart, THR, 'L');
    CHECK(drain_pipe(pipe_fds[0], output, sizeof output) == 0, "loopback byte left the UART");
    CHECK(uart_get(&uart, LSR) == 0x61 && uart_get(&uart, RBR) == 'L', "loopback byte not received");
    uart_put(&uart, MCR, 0x03);
    uart_put(&uart, THR, 'o');
    CHECK(drain_pipe(pipe_fds[0], output, sizeof output) == 1 && output[0] == 'o', "output after loopback off");

    /* A closed reader must not stop the guest (EPIPE is ignored; SIGPIPE
     * is the host program's business, so ignore it here). */
    close(pipe_fds[0]);
    signal(SIGPIPE, SIG_IGN);
    uart_put(&uart, THR, 'z');
    close(pipe_fds[1]);

    /* Discarded output. */
    struct uart_ns16550a silent;
    uart_ns16550a_init(&silent, -1);
    uart_put(&silent, THR, 'x');
    CHECK(uart_get(&silent, LSR) == 0x60, "LSR of a discarding UART");
}

static void test_uart_save_load(void)
{
    struct uart_ns16550a original;
    uart_ns16550a_init(&original, -1);
    uart_put(&original, IER, 0x05);
    uart_put(&original, FCR, 0xc1);
    uart_put(&original, LCR, 0x80);
    uart_put(&original, DLL, 0x34);
    uart_put(&original, DLM, 0x12);
    uart_put(&original, LCR, 0x1b);
    uart_put(&original, MCR, 0x0b);
    uart_put(&original, SCR, 0x5a);
    /* Leave the FIFO wrapped: head in the middle, data across the end. */
    for (unsigned i = 0; i < 12; i++)
        uart_ns16550a_receive(&original, (uint8_t)i);
    for (unsigned i = 0; i < 12; i++)
        uart_get(&original, RBR);
    for (unsigned i = 0; i < 9; i++)
        uart_ns16550a_receive(&original, (uint8_t)(0x40 + i));

    struct state_writer writer;
    state_writer_init(&writer);
    uart_ns16550a_save(&original, &writer);
    CHECK(!writer.out_of_memory, "uart save ran out of memory");

    struct uart_ns16550a restored;
    uart_ns16550a_init(&restored, -1);
    struct state_reader reader;
    state_reader_init(&reader, writer.data, writer.length);
    uart_ns16550a_load(&restored, &reader);
    CHECK(!reader.failed, "uart load failed: %s", reader.error);
    CHECK(reader.position == writer.length, "uart load left bytes unread");
    CHECK(memcmp(&restored.state, &original.state, sizeof original.state) == 0, "uart state differs after save/load");
    CHECK(restored.output_fd == -1, "load touched the host file descriptor");
    for (unsigned i = 0; i < 9; i++)
        CHECK(uart_get(&restored, RBR) == 0x40 + i, "restored FIFO byte %u", i);

    /* Section body (version 2): 7 register bytes, 16 FIFO bytes, rx_head,
     * rx_count, the THR-empty latch; it starts after the 12-byte section
     * header {id, version, length}. */
    size_t head_at = 12 + 7 + UART_RX_FIFO_SIZE;
    size_t count_at = head_at + 1;
    size_t latch_at = count_at + 1;
    CHECK(writer.length == latch_at + 1, "uart section is %zu bytes, expected %zu", writer.length, latch_at + 1);
    CHECK(writer.data[4] == 2, "uart section version is %u, expected 2", writer.data[4]);

    struct uart_ns16550a untouched;
    uart_ns16550a_init(&untouched, -1);
    uint8_t saved_head = writer.data[head_at];
    writer.data[head_at] = UART_RX_FIFO_SIZE;
    state_reader_init(&reader, writer.data, writer.length);
    uart_ns16550a_load(&untouched, &reader);
    CHECK(reader.failed, "uart load accepted rx_head=16");
    CHECK(strstr(reader.error, "uart") != NULL, "rx_head error does not name uart: %s", reader.error);
    CHECK(untouched.state.scratch == 0, "failed uart load changed the device");
    writer.data[head_at] = saved_head;

    writer.data[count_at] = UART_RX_FIFO_SIZE + 1;
    state_reader_init(&reader, writer.data, writer.length);
    uart_ns16550a_load(&untouched, &reader);
    CHECK(reader.failed, "uart load accepted rx_count=17");

    writer.data[count_at] = UART_RX_FIFO_SIZE; /* full is fine */
    state_reader_init(&reader, writer.data, writer.length);
    uart_ns16550a_load(&untouched, &reader);
    CHECK(!reader.failed, "uart load refused a full FIFO: %s", reader.error);

    state_reader_init(&reader, writer.data, writer.length - 1);
    uart_ns16550a_load(&untouched, &reader);
    CHECK(reader.failed, "uart load accepted a truncated state");

    /* The THR-empty latch round-trips and holds only 0 or 1. (IER 0x05
     * has ETBEI clear, so the latch is whatever the last THR write left.) */
    CHECK(writer.data[latch_at] == original.state.thr_empty_interrupt, "latch byte not saved");
    uint8_t saved_latch = writer.data[latch_at];
    writer.data[latch_at] = 2;
    state_reader_init(&reader, writer.data, writer.length);
    uart_ns16550a_load(&untouched, &reader);
    CHECK(reader.failed, "uart load accepted a THR-empty latch of 2");
    writer.data[latch_at] = 1;
    state_reader_init(&reader, writer.data, writer.length);
    uart_ns16550a_load(&untouched, &reader);
    CHECK(!reader.failed && untouched.state.thr_empty_interrupt == 1, "latch=1 did not load: %s", reader.error);
    writer.data[latch_at] = saved_latch;

    /* A version 1 section (no latch byte) still loads, with the latch
     * clear. */
    writer.data[4] = 1;
    writer.data[8]--; /* body length, little-endian, < 256 */
    state_reader_init(&reader, writer.data, writer.length - 1);
    uart_ns16550a_load(&untouched, &reader);
    CHECK(!reader.failed, "uart load refused a version 1 section: %s", reader.error);
    CHECK(untouched.state.thr_empty_interrupt == 0, "version 1 load left the latch set");
    CHECK(untouched.state.scratch == 0x5a && untouched.state.rx_count == UART_RX_FIFO_SIZE,
          "version 1 load lost fields");
    writer.data[4] = 3;
    writer.data[8]++;
    state_reader_init(&reader, writer.data, writer.length);
    uart_ns16550a_load(&untouched, &reader);
    CHECK(reader.failed, "uart load accepted a version 3 section");

    state_writer_free(&writer);
}

/* UART interrupts through a PLIC source, as Linux's 8250 driver uses
 * them. The UART under test drives source UART_TEST_IRQ of the machine's
 * PLIC, enabled for the S-mode context (hart 0's SEIP). */
#define UART_TEST_IRQ 11
#define PLIC_PRIORITY(source) (4u * (source))
#define PLIC_ENABLE(context) (0x2000u + 0x80u * (context))
#define PLIC_THRESHOLD(context) (0x200000u + 0x1000u * (context))
#define PLIC_CLAIM(context) (0x200004u + 0x1000u * (context))
#define PLIC_S_CONTEXT 1

static bool uart_line_high(void)
{
    return (machine->plic.state.line_level[UART_TEST_IRQ / 32] >> (UART_TEST_IRQ % 32)) & 1;
}

static uint32_t plic_get(uint64_t offset)
{
    uint64_t value = 0xdeadbeef;
    CHECK(plic_read(&machine->plic, offset, 4, &value), "plic read at 0x%llx refused", (unsigned long long)offset);
    return (uint32_t)value;
}

static void plic_put(uint64_t offset, uint32_t value)
{
    CHECK(plic_write(&machine->plic, offset, 4, value), "plic write at 0x%llx refused", (unsigned long long)offset);
}

static void test_uart_interrupts(void)
{
    CHECK(machine->uart.plic == &machine->plic && machine->uart.irq == MACHINE_UART_IRQ,
          "the machine's UART is not wired to PLIC source %d", MACHINE_UART_IRQ);

    uint64_t *mip = &machine->harts[0].state.mip;
    plic_put(PLIC_PRIORITY(UART_TEST_IRQ), 1);
    plic_put(PLIC_ENABLE(PLIC_S_CONTEXT), 1u << UART_TEST_IRQ);
    plic_put(PLIC_THRESHOLD(PLIC_S_CONTEXT), 0);

    struct uart_ns16550a uart;
    uart_ns16550a_init(&uart, -1);
    uart_ns16550a_connect_interrupt(&uart, &machine->plic, UART_TEST_IRQ);
    CHECK(!uart_line_high(), "line high before anything happened");

    /* Output with interrupts off: the latch is set but nothing is
     * reported or signalled. */
    uart_put(&uart, THR, 'a');
    CHECK(uart_get(&uart, IIR) == 0x01 && !uart_line_high(), "interrupt with IER=0");

    /* Enabling ETBEI while THR is empty interrupts at once; reading IIR
     * reports and acknowledges it. */
    uart_put(&uart, IER, 0x02);
    CHECK(uart_line_high(), "enabling ETBEI did not raise the line");
    CHECK(*mip & MIP_SEIP, "line high, but hart 0 has no SEIP");
    CHECK(uart_get(&uart, IIR) == 0x02, "IIR after enabling ETBEI is not 0x02");
    CHECK(!uart_line_high(), "reading IIR did not clear the THRE interrupt");
    CHECK(!(*mip & MIP_SEIP), "SEIP still set with the line low");
    CHECK(uart_get(&uart, IIR) == 0x01, "THRE reported twice");

    /* Re-writing IER with ETBEI still set is not "newly enabled". */
    uart_put(&uart, IER, 0x02);
    CHECK(!uart_line_high(), "rewriting IER with ETBEI raised THRE again");
    /* Off and on again re-raises it (Linux's startup test for UARTs that
     * do not reassert THRE). */
    uart_put(&uart, IER, 0x00);
    uart_put(&uart, IER, 0x02);
    CHECK(uart_get(&uart, IIR) == 0x02, "ETBEI off/on did not reassert THRE");

    /* Every THR write empties THR again at once. */
    uart_put(&uart, THR, 'b');
    CHECK(uart_line_high(), "THR write did not raise THRE");
    uart_put(&uart, THR, 'c');
    CHECK(uart_line_high(), "second THR write lowered the line");
    CHECK(uart_get(&uart, IIR) == 0x02 && !uart_line_high(), "THRE after writes");

    /* With ETBEI off, a latched THRE stays hidden; enabling shows it. */
    uart_put(&uart, IER, 0x00);
    uart_put(&uart, THR, 'd');
    CHECK(!uart_line_high() && uart_get(&uart, IIR) == 0x01, "THRE shown with ETBEI off");

    /* Received data: reported while the FIFO is non-empty, above THRE. */
    uart_put(&uart, FCR, 0x01);
    CHECK(uart_get(&uart, IIR) == 0xc1, "IIR with FIFOs and nothing pending");
    uart_put(&uart, IER, 0x01);
    CHECK(!uart_line_high(), "ERBFI alone with an empty FIFO raised the line");
    CHECK(uart_ns16550a_receive_space(&uart) == UART_RX_FIFO_SIZE, "receive space of an empty FIFO");
    CHECK(uart_ns16550a_receive(&uart, 'x') && uart_ns16550a_receive(&uart, 'y'), "receive refused");
    CHECK(uart_ns16550a_receive_space(&uart) == UART_RX_FIFO_SIZE - 2, "receive space after two bytes");
    CHECK(uart_line_high(), "received data did not raise the line");
    uart_put(&uart, IER, 0x03); /* ETBEI newly enabled: THRE latched too */
    CHECK(uart_get(&uart, IIR) == 0xc4, "RX data does not win over THRE");
    CHECK(uart_get(&uart, IIR) == 0xc4, "reading IIR cleared RX data");
    CHECK(uart_get(&uart, RBR) == 'x', "first received byte");
    CHECK(uart_line_high() && uart_get(&uart, IIR) == 0xc4, "one byte left, RX still reported");
    CHECK(uart_get(&uart, RBR) == 'y', "second received byte");
    /* The THRE interrupt was never reported, so it is still there. */
    CHECK(uart_line_high(), "THRE lost while RX data was reported");
    CHECK(uart_get(&uart, IIR) == 0xc2, "THRE not reported after the FIFO drained");
    CHECK(!uart_line_high() && uart_get(&uart, IIR) == 0xc1, "nothing should be left");

    /* Data with ERBFI off: DR in LSR but no interrupt. */
    uart_put(&uart, IER, 0x00);
    uart_ns16550a_receive(&uart, 'z');
    CHECK(!uart_line_high() && (uart_get(&uart, LSR) & 0x01), "data with ERBFI off");
    uart_put(&uart, IER, 0x01);
    CHECK(uart_line_high(), "enabling ERBFI with data waiting did not raise the line");
    /* Clearing the receive FIFO withdraws the interrupt. */
    uart_put(&uart, FCR, 0x03);
    CHECK(!uart_line_high() && uart_get(&uart, IIR) == 0xc1, "FCR clear left the RX interrupt");

    /* Through the PLIC: claim, the line drops while in service, complete. */
    uart_ns16550a_receive(&uart, 'p');
    CHECK(plic_get(PLIC_CLAIM(PLIC_S_CONTEXT)) == UART_TEST_IRQ, "claim did not return the UART");
    CHECK(!(*mip & MIP_SEIP), "SEIP still set while the UART is in service");
    CHECK(plic_get(PLIC_CLAIM(PLIC_S_CONTEXT)) == 0, "second claim returned something");
    CHECK(uart_get(&uart, RBR) == 'p' && !uart_line_high(), "reading RBR did not lower the line");
    plic_put(PLIC_CLAIM(PLIC_S_CONTEXT), UART_TEST_IRQ);
    CHECK(!(*mip & MIP_SEIP), "completion re-pended a low line");
    /* ...and completing while the line is still high re-pends it. */
    uart_ns16550a_receive(&uart, 'q');
    CHECK(plic_get(PLIC_CLAIM(PLIC_S_CONTEXT)) == UART_TEST_IRQ, "second claim");
    plic_put(PLIC_CLAIM(PLIC_S_CONTEXT), UART_TEST_IRQ);
    CHECK(*mip & MIP_SEIP, "completion with the line high did not re-pend");
    uart_get(&uart, RBR);
    CHECK(!(*mip & MIP_SEIP), "a withdrawn request still interrupts");

    /* Loopback: host input waits, the transmitter feeds the receiver. */
    uart_put(&uart, MCR, 0x10);
    CHECK(uart_ns16550a_receive_space(&uart) == 0, "receive space in loopback");
    CHECK(!uart_ns16550a_receive(&uart, 'h'), "host input accepted in loopback");
    uart_put(&uart, THR, 'L');
    CHECK(uart_line_high() && uart_get(&uart, IIR) == 0xc4, "looped-back byte did not interrupt");
    CHECK(uart_get(&uart, RBR) == 'L' && !uart_line_high(), "looped-back byte");
    uart_put(&uart, MCR, 0x00);
    CHECK(uart_ns16550a_receive_space(&uart) == UART_RX_FIFO_SIZE, "receive space after loopback");

    /* update_interrupt re-drives the line from the state (after a load). */
    uart_ns16550a_receive(&uart, 'r');
    plic_set_line(&machine->plic, UART_TEST_IRQ, false);
    uart_ns16550a_update_interrupt(&uart);
    CHECK(uart_line_high(), "update_interrupt did not re-drive the line");
    uart_put(&uart, FCR, 0x03);
    uart_put(&uart, IER, 0x00);

    /* An unconnected UART works without a PLIC. */
    struct uart_ns16550a alone;
    uart_ns16550a_init(&alone, -1);
    uart_put(&alone, IER, 0x03);
    uart_ns16550a_receive(&alone, 'u');
    CHECK(uart_get(&alone, IIR) == 0x04, "IIR of an unconnected UART");

    plic_put(PLIC_ENABLE(PLIC_S_CONTEXT), 0);
    plic_put(PLIC_PRIORITY(UART_TEST_IRQ), 0);
    CHECK(!(*mip & MIP_SEIP), "SEIP left set");
}

/* ---- sifive_test ------------------------------------------------------ */

static void test_sifive_test(void)
{
    struct sifive_test *device = &machine->sifive_test;
    uint64_t value = 1;
    CHECK(sifive_test_read(device, 0, 4, &value) && value == 0, "read at 0");
    CHECK(!sifive_test_read(device, 4, 4, &value), "read at 4 accepted");
    CHECK(!sifive_test_read(device, 0, 8, &value), "8-byte read accepted");
    CHECK(!sifive_test_write(device, 0, 1, 0x55), "1-byte write accepted");
    CHECK(!sifive_test_write(device, 8, 4, 0x5555), "write at 8 accepted");
    CHECK(machine->exit_reason == MACHINE_RUNNING, "a refused write ended the run");
    /* OpenSBI powers off with a 16-bit store. */
    CHECK(sifive_test_write(device, 0, 2, 0x5555), "2-byte poweroff refused");
    CHECK(machine->exit_reason == MACHINE_EXIT_POWEROFF, "2-byte 0x5555 is not poweroff (%d)", machine->exit_reason);
    machine->exit_reason = MACHINE_RUNNING;

    CHECK(sifive_test_write(device, 0, 4, 0x1234), "unknown command refused");
    CHECK(machine->exit_reason == MACHINE_RUNNING, "unknown command ended the run");

    CHECK(sifive_test_write(device, 0, 4, 0x5555), "poweroff refused");
    CHECK(machine->exit_reason == MACHINE_EXIT_POWEROFF, "0x5555 is not poweroff (%d)", machine->exit_reason);
    machine->exit_reason = MACHINE_RUNNING;

    CHECK(sifive_test_write(device, 0, 4, 0x7777), "reset refused");
    CHECK(machine->exit_reason == MACHINE_EXIT_RESET, "0x7777 is not reset (%d)", machine->exit_reason);
    machine->exit_reason = MACHINE_RUNNING;

    CHECK(sifive_test_write(device, 0, 4, (42u << 16) | 0x3333), "exit code refused");
    CHECK(machine->exit_reason == MACHINE_EXIT_CODE && machine->exit_code == 42,
          "code<<16|0x3333 gave reason %d code %u", machine->exit_reason, machine->exit_code);
    machine->exit_reason = MACHINE_RUNNING;
    machine->exit_code = 0;
}

/* ---- decode cache ----------------------------------------------------- */

static void test_decode_cache(void)
{
    struct decode_cache cache;
    struct error err;
    CHECK(decode_cache_init(&cache, 5, &err) == 0, "decode_cache_init failed: %s", err.message);
    CHECK(cache.pages != NULL && cache.page_count == 5 && cache.invalidations == 0, "cache fields");
    for (unsigned i = 0; i < 5; i++)
        CHECK(cache.pages[i] == NULL, "page %u allocated at init", i);
    cache.pages[1] = calloc(1, sizeof(struct decoded_page));
    cache.pages[4] = calloc(1, sizeof(struct decoded_page));
    decode_cache_destroy(&cache); /* leak checkers see whether pages are freed */
    CHECK(cache.pages == NULL && cache.page_count == 0, "destroy left the cache set up");
    decode_cache_destroy(&cache); /* twice is harmless */

    CHECK(decode_cache_init(&cache, 0, &err) == 0, "decode_cache_init(0) failed: %s", err.message);
    decode_cache_destroy(&cache);

    CHECK(decode_cache_init(&cache, UINT64_MAX / 2, &err) != 0, "absurd page count accepted");
    CHECK(strstr(err.message, "decode cache") != NULL, "error does not say what failed: %s", err.message);
    decode_cache_destroy(&cache);
}

int main(void)
{
    machine = test_machine_create(&(struct test_machine_options){ .ram_size = 1u << 20, .deterministic_time = true });
    /* Move the (deterministic, stopped) clock far enough that both halves
     * of mtime are non-zero. */
    machine->guest_clock = 0x0123456789abcdefull;
    CHECK(machine_mtime(machine) >> 32 != 0, "mtime high half is zero: the test proves little");

    test_clint_registers();
    test_clint_several_harts();
    test_clint_save_load();
    test_uart_registers();
    test_uart_save_load();
    test_uart_interrupts();
    test_sifive_test();
    test_decode_cache();

    test_machine_destroy(machine);
    if (test_check_failures) {
        printf("%d check(s) failed\n", test_check_failures);
        return 1;
    }
    printf("devices_test: all checks passed\n");
    return 0;
}
