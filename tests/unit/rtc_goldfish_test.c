/* The Goldfish RTC through the machine's MMIO: the host's wall clock at
 * creation (real-time mode) or the fixed epoch (deterministic), TIME_LOW
 * latching the high half, setting the time, advancing with guest time, the
 * alarm raising and clearing its PLIC interrupt (also from a waiting hart
 * in deterministic mode), and save/load carrying the time on rather than
 * reading the host clock again. Prints "FAIL ..." for each failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

#define TICK_NS (1000000000ull / MACHINE_TIMEBASE_HZ)

static uint32_t rtc_read(struct machine *machine, uint64_t offset)
{
    uint64_t value = 0xdeadbeef;
    CHECK(machine_mmio_read(machine, MACHINE_RTC_BASE + offset, 4, &value), "read of RTC register 0x%llx refused",
          (unsigned long long)offset);
    return (uint32_t)value;
}

static void rtc_write(struct machine *machine, uint64_t offset, uint32_t value)
{
    CHECK(machine_mmio_write(machine, MACHINE_RTC_BASE + offset, 4, value), "write of RTC register 0x%llx refused",
          (unsigned long long)offset);
}

/* The time as Linux reads it: TIME_LOW, then the latched TIME_HIGH. */
static uint64_t rtc_time(struct machine *machine)
{
    uint64_t low = rtc_read(machine, RTC_GOLDFISH_TIME_LOW);
    return (uint64_t)rtc_read(machine, RTC_GOLDFISH_TIME_HIGH) << 32 | low;
}

/* As Linux sets it: TIME_HIGH, then TIME_LOW. */
static void rtc_set_time(struct machine *machine, uint64_t time_ns)
{
    rtc_write(machine, RTC_GOLDFISH_TIME_HIGH, (uint32_t)(time_ns >> 32));
    rtc_write(machine, RTC_GOLDFISH_TIME_LOW, (uint32_t)time_ns);
}

static void rtc_set_alarm(struct machine *machine, uint64_t alarm_ns)
{
    rtc_write(machine, RTC_GOLDFISH_ALARM_HIGH, (uint32_t)(alarm_ns >> 32));
    rtc_write(machine, RTC_GOLDFISH_ALARM_LOW, (uint32_t)alarm_ns);
}

static bool plic_line(struct machine *machine)
{
    return (machine->plic.state.line_level[MACHINE_RTC_IRQ / 32] >> (MACHINE_RTC_IRQ % 32)) & 1;
}

/* Guest time moves by `ticks` (deterministic mode: retired instructions). */
static void advance(struct machine *machine, uint64_t ticks)
{
    machine->guest_clock += ticks * machine->config.instructions_per_tick;
    machine_update_timer_interrupts(machine);
}

static struct machine *deterministic_machine(void)
{
    return test_machine_create(&(struct test_machine_options){ .deterministic_time = true });
}

static void test_host_time(void)
{
    struct machine *machine = test_machine_create(&(struct test_machine_options){ 0 });
    uint64_t host = clock_realtime_ns();
    uint64_t guest = rtc_time(machine);
    uint64_t difference = guest > host ? guest - host : host - guest;
    CHECK(difference < 1000000000ull, "real-time RTC reads %llu ns, host %llu ns", (unsigned long long)guest,
          (unsigned long long)host);
    test_machine_destroy(machine);

    machine = deterministic_machine();
    CHECK(rtc_time(machine) == RTC_GOLDFISH_DETERMINISTIC_EPOCH_NS, "deterministic RTC starts at %llu, not the epoch",
          (unsigned long long)rtc_time(machine));
    uint64_t value;
    CHECK(!machine_mmio_read(machine, MACHINE_RTC_BASE + 1, 4, &value), "misaligned read accepted");
    CHECK(!machine_mmio_read(machine, MACHINE_RTC_BASE, 8, &value), "8-byte read accepted");
    test_machine_destroy(machine);
}

static void test_latch_set_and_advance(void)
{
    struct machine *machine = deterministic_machine();
    uint64_t start = (5ull << 32) | 0xffffff00u;
    rtc_set_time(machine, start);
    CHECK(rtc_time(machine) == start, "time set to %llu reads %llu", (unsigned long long)start,
          (unsigned long long)rtc_time(machine));

    /* Read TIME_LOW, let the low half wrap, then read TIME_HIGH: it is the
     * half of the time TIME_LOW was read at. */
    CHECK(rtc_read(machine, RTC_GOLDFISH_TIME_LOW) == 0xffffff00u, "TIME_LOW");
    advance(machine, 100); /* 10 us: the low half wraps */
    CHECK(rtc_read(machine, RTC_GOLDFISH_TIME_HIGH) == 5, "TIME_HIGH did not stay latched");
    CHECK(rtc_time(machine) == start + 100 * TICK_NS, "time after 100 ticks is %llu, expected %llu",
          (unsigned long long)rtc_time(machine), (unsigned long long)(start + 100 * TICK_NS));
    CHECK(rtc_read(machine, RTC_GOLDFISH_TIME_HIGH) == 6, "a new TIME_LOW read did not latch the new high half");

    /* Either order of the halves sets the time. */
    rtc_write(machine, RTC_GOLDFISH_TIME_LOW, 1234);
    rtc_write(machine, RTC_GOLDFISH_TIME_HIGH, 77);
    CHECK(rtc_time(machine) == (77ull << 32 | 1234), "low-then-high set");
    advance(machine, 1000000); /* 0.1 s */
    CHECK(rtc_time(machine) == (77ull << 32 | 1234) + 100000000ull, "time did not advance with guest time");
    test_machine_destroy(machine);
}

/* PLIC source 11 enabled for hart 0's S-mode context. */
static void enable_in_plic(struct machine *machine)
{
    machine_mmio_write(machine, MACHINE_PLIC_BASE + 4 * MACHINE_RTC_IRQ, 4, 1);
    machine_mmio_write(machine, MACHINE_PLIC_BASE + 0x2080, 4, 1u << MACHINE_RTC_IRQ);
    machine_mmio_write(machine, MACHINE_PLIC_BASE + 0x201000, 4, 0);
}

static void test_alarm(void)
{
    struct machine *machine = deterministic_machine();
    enable_in_plic(machine);
    rtc_write(machine, RTC_GOLDFISH_IRQ_ENABLED, 1);
    CHECK(rtc_read(machine, RTC_GOLDFISH_IRQ_ENABLED) == 1, "IRQ_ENABLED does not read back");
    uint64_t now = rtc_time(machine);
    rtc_set_alarm(machine, now + 1000);
    CHECK(rtc_read(machine, RTC_GOLDFISH_ALARM_STATUS) == 1, "alarm not armed");
    CHECK(((uint64_t)rtc_read(machine, RTC_GOLDFISH_ALARM_HIGH) << 32 | rtc_read(machine, RTC_GOLDFISH_ALARM_LOW)) ==
              now + 1000,
          "alarm does not read back");
    CHECK(rtc_goldfish_alarm_deadline(&machine->rtc) == machine_mtime(machine) + 1000 / TICK_NS, "alarm deadline %llu",
          (unsigned long long)rtc_goldfish_alarm_deadline(&machine->rtc));
    advance(machine, 9);
    CHECK(!plic_line(machine) && rtc_read(machine, RTC_GOLDFISH_ALARM_STATUS) == 1, "alarm fired early");
    advance(machine, 1);
    CHECK(plic_line(machine), "alarm did not raise the PLIC line");
    CHECK(machine->harts[0].state.mip & MIP_SEIP, "alarm did not reach the hart (SEIP)");
    CHECK(rtc_read(machine, RTC_GOLDFISH_ALARM_STATUS) == 0, "fired alarm still armed");
    advance(machine, 100);
    CHECK(plic_line(machine), "the line is not level");
    rtc_write(machine, RTC_GOLDFISH_CLEAR_INTERRUPT, 1);
    CHECK(!plic_line(machine), "CLEAR_INTERRUPT did not drop the line");

    /* Disabled: the alarm fires (pending) but the line stays low until the
     * interrupt is enabled. */
    rtc_write(machine, RTC_GOLDFISH_IRQ_ENABLED, 0);
    rtc_set_alarm(machine, rtc_time(machine) + 500);
    advance(machine, 5);
    CHECK(rtc_read(machine, RTC_GOLDFISH_ALARM_STATUS) == 0, "disabled alarm did not fire");
    CHECK(!plic_line(machine), "disabled interrupt raised the line");
    rtc_write(machine, RTC_GOLDFISH_IRQ_ENABLED, 1);
    CHECK(plic_line(machine), "enabling a pending interrupt did not raise the line");
    rtc_write(machine, RTC_GOLDFISH_CLEAR_INTERRUPT, 1);

    /* An alarm in the past fires when armed; CLEAR_ALARM disarms. */
    rtc_set_alarm(machine, rtc_time(machine) - 1);
    CHECK(plic_line(machine), "alarm in the past did not fire at once");
    rtc_write(machine, RTC_GOLDFISH_CLEAR_INTERRUPT, 1);
    rtc_set_alarm(machine, rtc_time(machine) + 500);
    rtc_write(machine, RTC_GOLDFISH_CLEAR_ALARM, 1);
    CHECK(rtc_read(machine, RTC_GOLDFISH_ALARM_STATUS) == 0, "CLEAR_ALARM did not disarm");
    CHECK(rtc_goldfish_alarm_deadline(&machine->rtc) == UINT64_MAX, "disarmed alarm has a deadline");
    advance(machine, 10);
    CHECK(!plic_line(machine), "a cleared alarm fired");
    test_machine_destroy(machine);
}

/* A hart waiting (WFI) with only the RTC's alarm ahead: deterministic
 * mode skips guest time to the alarm instead of waiting forever. */
static void test_alarm_wakes_waiting_hart(void)
{
    struct machine *machine = deterministic_machine();
    enable_in_plic(machine);
    static const uint32_t program[] = { 0x10500073 /* wfi */, 0xffdff06f /* j .-4 */ };
    machine_ram_write(machine, MACHINE_RAM_BASE, program, sizeof program);
    hart_reset(&machine->harts[0], MACHINE_RAM_BASE);
    machine->harts[0].state.mie = MIP_SEIP; /* wakes WFI; mstatus.MIE off, so no trap */
    rtc_write(machine, RTC_GOLDFISH_IRQ_ENABLED, 1);
    uint64_t alarm = rtc_time(machine) + 1000000000ull; /* one second ahead */
    rtc_set_alarm(machine, alarm);
    enum machine_exit_reason reason = machine_run(machine, 1000);
    CHECK(reason == MACHINE_EXIT_INSTRUCTION_LIMIT, "run ended with %d", (int)reason);
    CHECK(plic_line(machine), "the alarm did not fire");
    CHECK(rtc_time(machine) >= alarm && rtc_time(machine) < alarm + 1000000, "time after the wait: %llu, alarm %llu",
          (unsigned long long)rtc_time(machine), (unsigned long long)alarm);
    test_machine_destroy(machine);
}

static void save(struct machine *machine, struct state_writer *writer)
{
    state_writer_init(writer);
    machine_save_state(machine, writer);
    CHECK(!writer->out_of_memory, "save ran out of memory");
}

static void test_save_load(void)
{
    /* Real time: the loaded RTC carries on from the saved time, far from
     * the host's clock. */
    struct machine *machine = test_machine_create(&(struct test_machine_options){ 0 });
    uint64_t set = 1000ull * 1000000000ull; /* 1970-01-01T00:16:40Z */
    rtc_set_time(machine, set);
    rtc_write(machine, RTC_GOLDFISH_IRQ_ENABLED, 1);
    rtc_set_alarm(machine, set + 3600ull * 1000000000ull);
    struct state_writer writer;
    save(machine, &writer);
    test_machine_destroy(machine);
    clock_sleep_ms(20);
    machine = test_machine_create(&(struct test_machine_options){ 0 });
    struct error err;
    CHECK(machine_load_state(machine, writer.data, writer.length, &err) == 0, "load: %s", err.message);
    uint64_t now = rtc_time(machine);
    CHECK(now >= set && now < set + 1000000000ull, "loaded real-time RTC reads %llu, saved about %llu",
          (unsigned long long)now, (unsigned long long)set);
    CHECK(rtc_read(machine, RTC_GOLDFISH_ALARM_STATUS) == 1 && rtc_read(machine, RTC_GOLDFISH_IRQ_ENABLED) == 1,
          "alarm state lost");
    test_machine_destroy(machine);
    state_writer_free(&writer);

    /* Deterministic: exactly the same time, and a pending interrupt comes
     * back with its line. */
    machine = deterministic_machine();
    enable_in_plic(machine);
    rtc_write(machine, RTC_GOLDFISH_IRQ_ENABLED, 1);
    advance(machine, 12345);
    rtc_set_alarm(machine, rtc_time(machine));
    uint64_t saved_time = rtc_time(machine);
    save(machine, &writer);
    test_machine_destroy(machine);
    machine = deterministic_machine();
    CHECK(machine_load_state(machine, writer.data, writer.length, &err) == 0, "load: %s", err.message);
    CHECK(rtc_time(machine) == saved_time, "loaded deterministic RTC reads %llu, saved %llu",
          (unsigned long long)rtc_time(machine), (unsigned long long)saved_time);
    CHECK(plic_line(machine) && machine->rtc.state.interrupt_pending, "pending interrupt lost");

    /* A corrupt RTC section: refused with a message, machine unchanged. */
    size_t flags_at = SIZE_MAX;
    for (size_t i = 0; i + 4 <= writer.length; i++)
        if (memcmp(writer.data + i, "CTRG", 4) == 0) /* "GRTC" little-endian */
            flags_at = i + 12 + 8 + 8 + 4;
    CHECK(flags_at != SIZE_MAX, "no RTC section in the state");
    if (flags_at != SIZE_MAX) {
        writer.data[flags_at] = 2; /* alarm_armed */
        struct rtc_goldfish_state before = machine->rtc.state;
        CHECK(machine_load_state(machine, writer.data, writer.length, &err) < 0, "alarm_armed 2 accepted");
        CHECK(strstr(err.message, "rtc") != NULL, "unclear error: %s", err.message);
        CHECK(memcmp(&before, &machine->rtc.state, sizeof before) == 0, "a refused load changed the RTC");
    }
    test_machine_destroy(machine);
    state_writer_free(&writer);
}

/* A version 1 state (machines before the RTC and the entropy device):
 * loads, with the RTC reading what a new machine's reads (here the
 * deterministic epoch) from the loaded guest time on. */
static void test_version_1_state(void)
{
    struct machine *machine = deterministic_machine();
    advance(machine, 5000);
    rtc_set_time(machine, 42);
    struct state_writer writer;
    save(machine, &writer);
    size_t rtc_section = SIZE_MAX;
    for (size_t i = 0; i + 4 <= writer.length; i++)
        if (memcmp(writer.data + i, "CTRG", 4) == 0)
            rtc_section = i;
    CHECK(rtc_section != SIZE_MAX && writer.data[4] == 2, "no RTC section, or the machine section is not version 2");
    if (rtc_section != SIZE_MAX) {
        writer.data[4] = 1; /* the machine section's version */
        struct error err;
        CHECK(machine_load_state(machine, writer.data, rtc_section, &err) == 0, "version 1 state refused: %s",
              err.message);
        CHECK(rtc_time(machine) == RTC_GOLDFISH_DETERMINISTIC_EPOCH_NS, "a version 1 state's RTC reads %llu",
              (unsigned long long)rtc_time(machine));
        /* Version 2 without the new sections: refused. */
        writer.data[4] = 2;
        CHECK(machine_load_state(machine, writer.data, rtc_section, &err) < 0,
              "version 2 state without the RTC loaded");
    }
    state_writer_free(&writer);
    test_machine_destroy(machine);
}

int main(void)
{
    test_host_time();
    test_latch_set_and_advance();
    test_alarm();
    test_alarm_wakes_waiting_hart();
    test_save_load();
    test_version_1_state();
    return test_check_finish("rtc_goldfish_test");
}
