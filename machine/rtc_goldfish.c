/* The Goldfish RTC (rtc_goldfish.h). Written from the register list of
 * the Goldfish virtual platform and Linux's driver's use of it. */
#include "rtc_goldfish.h"

#include <string.h>

#include "machine_devices.h"

#define RTC_GOLDFISH_SECTION_ID 0x47525443u /* "GRTC" */
#define RTC_GOLDFISH_SECTION_VERSION 1
#define NANOSECONDS_PER_TICK (1000000000ull / MACHINE_TIMEBASE_HZ)
#define LOW_HALF 0xffffffffull
#define HIGH_HALF (LOW_HALF << 32)

/* Guest time in nanoseconds, modulo 2^64 like the RTC itself. */
static uint64_t guest_time_ns(struct rtc_goldfish *rtc)
{
    return machine_mtime(rtc->machine) * NANOSECONDS_PER_TICK;
}

uint64_t rtc_goldfish_now_ns(struct rtc_goldfish *rtc)
{
    return guest_time_ns(rtc) + rtc->state.offset_ns;
}

static void set_time(struct rtc_goldfish *rtc, uint64_t time_ns)
{
    rtc->state.offset_ns = time_ns - guest_time_ns(rtc);
}

void rtc_goldfish_update_line(struct rtc_goldfish *rtc)
{
    plic_set_line(rtc->plic, rtc->irq, rtc->state.interrupt_pending && rtc->state.irq_enabled);
}

void rtc_goldfish_init(struct rtc_goldfish *rtc, struct machine *machine, struct plic *plic, unsigned irq,
                       uint64_t start_ns)
{
    memset(rtc, 0, sizeof *rtc);
    rtc->machine = machine;
    rtc->plic = plic;
    rtc->irq = irq;
    set_time(rtc, start_ns);
}

void rtc_goldfish_check_alarm(struct rtc_goldfish *rtc)
{
    if (!rtc->state.alarm_armed || rtc_goldfish_now_ns(rtc) < rtc->state.alarm_ns)
        return;
    rtc->state.alarm_armed = 0;
    rtc->state.interrupt_pending = 1;
    rtc_goldfish_update_line(rtc);
}

uint64_t rtc_goldfish_alarm_deadline(struct rtc_goldfish *rtc)
{
    if (!rtc->state.alarm_armed)
        return UINT64_MAX;
    uint64_t mtime = machine_mtime(rtc->machine);
    uint64_t now = mtime * NANOSECONDS_PER_TICK + rtc->state.offset_ns;
    if (now >= rtc->state.alarm_ns)
        return mtime;
    uint64_t ticks = (rtc->state.alarm_ns - now + NANOSECONDS_PER_TICK - 1) / NANOSECONDS_PER_TICK;
    /* The RTC's count would wrap before it got there (year 2554): never. */
    if (ticks > (UINT64_MAX - now) / NANOSECONDS_PER_TICK || mtime > UINT64_MAX - ticks)
        return UINT64_MAX;
    return mtime + ticks;
}

bool rtc_goldfish_read(struct rtc_goldfish *rtc, uint64_t offset, unsigned size, uint64_t *value)
{
    if (size != 4 || offset % 4 != 0)
        return false;
    struct rtc_goldfish_state *state = &rtc->state;
    switch (offset) {
    case RTC_GOLDFISH_TIME_LOW: {
        uint64_t now = rtc_goldfish_now_ns(rtc);
        state->time_high_latch = (uint32_t)(now >> 32);
        *value = now & LOW_HALF;
        break;
    }
    case RTC_GOLDFISH_TIME_HIGH:
        *value = state->time_high_latch;
        break;
    case RTC_GOLDFISH_ALARM_LOW:
        *value = state->alarm_ns & LOW_HALF;
        break;
    case RTC_GOLDFISH_ALARM_HIGH:
        *value = state->alarm_ns >> 32;
        break;
    case RTC_GOLDFISH_IRQ_ENABLED:
        *value = state->irq_enabled;
        break;
    case RTC_GOLDFISH_ALARM_STATUS:
        *value = state->alarm_armed;
        break;
    default:
        *value = 0; /* the write-only registers and the rest of the page */
        break;
    }
    return true;
}

bool rtc_goldfish_write(struct rtc_goldfish *rtc, uint64_t offset, unsigned size, uint64_t value)
{
    if (size != 4 || offset % 4 != 0)
        return false;
    struct rtc_goldfish_state *state = &rtc->state;
    uint64_t word = value & LOW_HALF;
    switch (offset) {
    case RTC_GOLDFISH_TIME_LOW:
        /* Each half takes effect at once, so either order of the two
         * writes sets the time (Linux writes TIME_HIGH first). */
        set_time(rtc, (rtc_goldfish_now_ns(rtc) & HIGH_HALF) | word);
        break;
    case RTC_GOLDFISH_TIME_HIGH:
        set_time(rtc, word << 32 | (rtc_goldfish_now_ns(rtc) & LOW_HALF));
        break;
    case RTC_GOLDFISH_ALARM_LOW:
        state->alarm_ns = (state->alarm_ns & HIGH_HALF) | word;
        state->alarm_armed = 1;
        break;
    case RTC_GOLDFISH_ALARM_HIGH:
        state->alarm_ns = word << 32 | (state->alarm_ns & LOW_HALF);
        break;
    case RTC_GOLDFISH_IRQ_ENABLED:
        state->irq_enabled = word & 1;
        rtc_goldfish_update_line(rtc);
        break;
    case RTC_GOLDFISH_CLEAR_ALARM:
        state->alarm_armed = 0;
        break;
    case RTC_GOLDFISH_CLEAR_INTERRUPT:
        state->interrupt_pending = 0;
        rtc_goldfish_update_line(rtc);
        break;
    default:
        break; /* read-only or nothing there */
    }
    /* An alarm armed in the past, or a time set past the alarm, fires now
     * (the run loop checks again as guest time advances). Not after the
     * high halves: Linux writes them first, and the half-written value
     * must not fire an alarm. */
    if (offset == RTC_GOLDFISH_ALARM_LOW || offset == RTC_GOLDFISH_TIME_LOW)
        rtc_goldfish_check_alarm(rtc);
    return true;
}

void rtc_goldfish_save(const struct rtc_goldfish *rtc, struct state_writer *writer)
{
    const struct rtc_goldfish_state *state = &rtc->state;
    state_section_begin(writer, RTC_GOLDFISH_SECTION_ID, RTC_GOLDFISH_SECTION_VERSION);
    state_put_u64(writer, state->offset_ns);
    state_put_u64(writer, state->alarm_ns);
    state_put_u32(writer, state->time_high_latch);
    state_put_u8(writer, state->alarm_armed);
    state_put_u8(writer, state->irq_enabled);
    state_put_u8(writer, state->interrupt_pending);
    state_section_end(writer);
}

void rtc_goldfish_load(struct rtc_goldfish *rtc, struct state_reader *reader)
{
    struct rtc_goldfish_state loaded;
    memset(&loaded, 0, sizeof loaded);
    state_section_open(reader, RTC_GOLDFISH_SECTION_ID, RTC_GOLDFISH_SECTION_VERSION, "rtc");
    loaded.offset_ns = state_get_u64(reader);
    loaded.alarm_ns = state_get_u64(reader);
    loaded.time_high_latch = state_get_u32(reader);
    loaded.alarm_armed = state_get_u8(reader);
    loaded.irq_enabled = state_get_u8(reader);
    loaded.interrupt_pending = state_get_u8(reader);
    state_section_close(reader, "rtc");
    if (reader->failed)
        return;
    /* Every time and alarm is valid (the guest may set any); the flags
     * are single bits. */
    if (loaded.alarm_armed > 1 || loaded.irq_enabled > 1 || loaded.interrupt_pending > 1) {
        state_reader_fail(reader, "rtc: alarm armed %u, interrupt enabled %u, pending %u are not all 0 or 1",
                          loaded.alarm_armed, loaded.irq_enabled, loaded.interrupt_pending);
        return;
    }
    /* Only the guest-visible state; the caller re-drives the line once
     * the PLIC is loaded too (rtc_goldfish_update_line). */
    rtc->state = loaded;
}
