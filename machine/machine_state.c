/* Whole-machine state: the machine section, every hart, every device, in
 * one versioned format (docs/machine-state.md). Loading checks everything
 * into scratch copies first and changes the machine only when all of it
 * was valid. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "machine_devices.h"

#define MACHINE_SECTION_ID 0x4d414348u /* "MACH" */
/* Version 2: the RTC's section and the entropy device's follow the NICs'.
 * Version 1 (machines before those devices) still loads; see
 * machine_load_state. */
#define MACHINE_SECTION_VERSION 2
#define NANOSECONDS_PER_TICK (1000000000ull / MACHINE_TIMEBASE_HZ)
/* The largest mtime a real-time state may carry. Loading turns it into a
 * signed nanosecond offset from the host's monotonic clock, and every
 * machine_mtime() later subtracts that offset from the clock again: a
 * quarter of int64_t (73 years of guest uptime) keeps both within range
 * whatever the host clock reads. */
#define REAL_TIME_MTIME_MAX ((uint64_t)INT64_MAX / 4 / NANOSECONDS_PER_TICK)

void machine_save_state(struct machine *machine, struct state_writer *writer)
{
    state_section_begin(writer, MACHINE_SECTION_ID, MACHINE_SECTION_VERSION);
    state_put_u64(writer, machine->config.ram_size);
    state_put_u32(writer, machine->config.hart_count);
    state_put_u8(writer, machine->config.deterministic_time);
    state_put_u64(writer, machine->config.instructions_per_tick);
    state_put_u64(writer, machine->guest_clock);
    state_put_u64(writer, machine_mtime(machine));
    state_put_u64(writer, machine->tohost_address);
    state_section_end(writer);
    for (unsigned i = 0; i < machine->config.hart_count; i++)
        hart_save(&machine->harts[i], writer);
    clint_save(&machine->clint, writer);
    plic_save(&machine->plic, writer);
    uart_ns16550a_save(&machine->uart, writer);
    for (unsigned i = 0; i < machine->config.disk_count; i++)
        virtio_blk_save(machine->disks[i], writer);
    for (unsigned i = 0; i < machine->config.nic_count; i++)
        virtio_net_save(machine->nics[i], writer);
    rtc_goldfish_save(&machine->rtc, writer);
    if (machine->rng)
        virtio_rng_save(machine->rng, writer);
}

/* TLB entries were made under the old hart state (satp, privilege), so they
 * go. Decoded code stays: it depends only on RAM contents, and every path
 * that changes RAM (machine_ram_write, machine_ram_clear_pages, the
 * pre-image rollbacks, the harts' stores) drops the decoded code of the
 * pages it changes. Dropping all of it here cost a COLO secondary over a
 * millisecond per checkpoint, and the SVM re-decoding its whole kernel. */
static void forget_derived_state(struct machine *machine)
{
    for (unsigned i = 0; i < machine->config.hart_count; i++)
        hart_tlb_flush_all(&machine->harts[i]);
}

int machine_load_state(struct machine *machine, const void *data, size_t length, struct error *err)
{
    struct state_reader reader;
    state_reader_init(&reader, data, length);
    uint32_t version = state_section_open(&reader, MACHINE_SECTION_ID, MACHINE_SECTION_VERSION, "machine");
    uint64_t ram_size = state_get_u64(&reader);
    uint32_t hart_count = state_get_u32(&reader);
    uint8_t deterministic = state_get_u8(&reader);
    uint64_t per_tick = state_get_u64(&reader);
    uint64_t guest_clock = state_get_u64(&reader);
    uint64_t mtime = state_get_u64(&reader);
    uint64_t tohost = state_get_u64(&reader);
    state_section_close(&reader, "machine");
    if (!reader.failed) {
        if (ram_size != machine->config.ram_size)
            state_reader_fail(&reader, "saved machine has %llu MiB of RAM, this one %llu MiB",
                              (unsigned long long)(ram_size >> 20),
                              (unsigned long long)(machine->config.ram_size >> 20));
        else if (hart_count != machine->config.hart_count)
            state_reader_fail(&reader, "saved machine has %u harts, this one %u", hart_count,
                              machine->config.hart_count);
        else if (deterministic > 1 || per_tick == 0)
            state_reader_fail(&reader, "machine section has an invalid time mode");
        /* Deterministic time: mtime is derived from the guest clock, so a
         * saved one that differs says the section is corrupt. */
        else if (deterministic && mtime != guest_clock / per_tick)
            state_reader_fail(&reader, "mtime %llu does not match guest clock %llu at %llu instructions per tick",
                              (unsigned long long)mtime, (unsigned long long)guest_clock, (unsigned long long)per_tick);
        else if (!deterministic && mtime > REAL_TIME_MTIME_MAX)
            state_reader_fail(&reader, "mtime %llu is beyond real-time range (at most %llu)", (unsigned long long)mtime,
                              (unsigned long long)REAL_TIME_MTIME_MAX);
        else if (tohost && !guest_ram_contains(&machine->ram, tohost, 8))
            state_reader_fail(&reader, "tohost address 0x%llx is outside RAM", (unsigned long long)tohost);
    }

    /* Scratch copies: the machine is untouched unless everything loads. */
    /* Sized by this machine, never by the input: hart_count is only
     * trusted once it matched. */
    struct hart_state *harts = calloc(machine->config.hart_count, sizeof *harts);
    struct clint clint = machine->clint;
    struct plic plic = machine->plic;
    struct uart_ns16550a uart = machine->uart;
    struct rtc_goldfish rtc = machine->rtc;
    /* Shares the device's host side, as the disk and NIC copies do. */
    struct virtio_rng rng;
    memset(&rng, 0, sizeof rng);
    if (machine->rng)
        rng = *machine->rng;
    /* Device scratch copies: their host resources (fds, buffers) are
     * shared with the originals and untouched by loading. */
    struct virtio_blk *disks = calloc(MACHINE_MAX_DISKS, sizeof *disks);
    struct virtio_net *nics = calloc(MACHINE_MAX_NICS, sizeof *nics);
    if (!harts || !disks || !nics) {
        free(harts);
        free(disks);
        free(nics);
        return error_set(err, "out of memory loading machine state");
    }
    for (unsigned i = 0; i < machine->config.hart_count && !reader.failed; i++)
        hart_state_load(&harts[i], &reader);
    clint_load(&clint, &reader);
    plic_load(&plic, &reader);
    uart_ns16550a_load(&uart, &reader);
    for (unsigned i = 0; i < machine->config.disk_count; i++) {
        disks[i] = *machine->disks[i];
        virtio_blk_load(&disks[i], &reader);
    }
    for (unsigned i = 0; i < machine->config.nic_count; i++) {
        nics[i] = *machine->nics[i];
        virtio_net_load(&nics[i], &reader);
    }
    /* A version 1 state comes from a machine that had neither device: its
     * guest never saw them, and they start as on a new machine (below). */
    bool has_new_devices = version >= 2;
    if (has_new_devices) {
        rtc_goldfish_load(&rtc, &reader);
        if (machine->rng)
            virtio_rng_load(&rng, &reader);
    }
    if (!reader.failed && reader.position != reader.length)
        state_reader_fail(&reader, "%zu bytes of unknown data after the last section", reader.length - reader.position);
    if (reader.failed) {
        free(harts);
        free(disks);
        free(nics);
        return error_set(err, "machine state: %s", reader.error);
    }

    for (unsigned i = 0; i < machine->config.hart_count; i++)
        hart_set_state(&machine->harts[i], &harts[i]);
    free(harts);
    machine->clint = clint;
    machine->plic = plic;
    machine->uart = uart;
    if (has_new_devices) {
        machine->rtc.state = rtc.state;
        if (machine->rng) {
            machine->rng->transport.state = rng.transport.state;
            machine->rng->state = rng.state;
        }
    } else if (machine->rng) {
        virtio_rng_init(&rng, machine, MACHINE_RNG_SLOT);
        machine->rng->transport.state = rng.transport.state;
        machine->rng->state = rng.state;
    }
    for (unsigned i = 0; i < machine->config.disk_count; i++)
        machine->disks[i]->transport.state = disks[i].transport.state;
    for (unsigned i = 0; i < machine->config.nic_count; i++) {
        machine->nics[i]->transport.state = nics[i].transport.state;
        machine->nics[i]->state = nics[i].state;
        virtio_net_after_load(machine->nics[i]);
    }
    free(disks);
    free(nics);
    for (unsigned context = 0; context < PLIC_CONTEXT_COUNT; context++)
        machine_set_external_interrupt(machine, context, plic_context_interrupting(&machine->plic, context));
    machine->config.deterministic_time = deterministic;
    machine->config.instructions_per_tick = per_tick;
    machine->guest_clock = guest_clock;
    /* Real-time mode: time continues from the saved mtime. Deterministic
     * mode reads time from guest_clock alone (its mtime may legitimately
     * be far beyond the real-time range, after a WFI to a distant timer). */
    if (!deterministic)
        machine->time_offset_ns = (int64_t)clock_monotonic_ns() - (int64_t)(mtime * NANOSECONDS_PER_TICK);
    /* Once guest time is set: the RTC of a version 1 state starts where a
     * new machine's would, at the loaded guest time. */
    if (!has_new_devices)
        rtc_goldfish_init(&machine->rtc, machine, &machine->plic, MACHINE_RTC_IRQ,
                          deterministic ? RTC_GOLDFISH_DETERMINISTIC_EPOCH_NS : clock_realtime_ns());
    /* The PLIC's saved line agrees with a consistent state; this only
     * matters for one that does not. */
    rtc_goldfish_update_line(&machine->rtc);
    machine->tohost_address = tohost;
    machine->ram.watched_page = tohost ? (tohost - machine->ram.base) >> GUEST_PAGE_SHIFT : UINT64_MAX;
    forget_derived_state(machine);
    machine_update_timer_interrupts(machine);
    return 0;
}
