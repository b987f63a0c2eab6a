/* The Goldfish RTC of the QEMU virt machine (0x101000, PLIC source 11,
 * "google,goldfish-rtc"): a 64-bit count of nanoseconds since the Unix
 * epoch and one alarm. 32-bit registers:
 *
 *   0x00 TIME_LOW        read: low half of the time, latches the high half
 *                        write: sets the low half of the time
 *   0x04 TIME_HIGH       read: the half latched by the last TIME_LOW read
 *                        write: sets the high half of the time
 *   0x08 ALARM_LOW       write: low half of the alarm, and arms it
 *   0x0c ALARM_HIGH      write: high half of the alarm
 *   0x10 IRQ_ENABLED     bit 0: the alarm interrupt reaches the PLIC
 *   0x14 CLEAR_ALARM     write: disarms the alarm
 *   0x18 ALARM_STATUS    read: 1 while an alarm is armed
 *   0x1c CLEAR_INTERRUPT write: drops the interrupt
 *
 * When the time reaches an armed alarm, the alarm disarms and the
 * interrupt becomes pending; the line is high while it is pending and
 * enabled (level, until CLEAR_INTERRUPT).
 *
 * The time is kept as an offset from the machine's guest time (mtime in
 * nanoseconds), so it advances with guest time, stops when the machine
 * does, and carries on across save/load, migration and checkpoints with
 * the offset as its state. */
#ifndef COLO_MACHINE_RTC_GOLDFISH_H
#define COLO_MACHINE_RTC_GOLDFISH_H

#include <stdbool.h>
#include <stdint.h>

#include "state_buffer.h"

#define RTC_GOLDFISH_TIME_LOW 0x00
#define RTC_GOLDFISH_TIME_HIGH 0x04
#define RTC_GOLDFISH_ALARM_LOW 0x08
#define RTC_GOLDFISH_ALARM_HIGH 0x0c
#define RTC_GOLDFISH_IRQ_ENABLED 0x10
#define RTC_GOLDFISH_CLEAR_ALARM 0x14
#define RTC_GOLDFISH_ALARM_STATUS 0x18
#define RTC_GOLDFISH_CLEAR_INTERRUPT 0x1c

/* Where a deterministic machine's RTC starts: 2026-01-01T00:00:00Z. */
#define RTC_GOLDFISH_DETERMINISTIC_EPOCH_NS (1767225600ull * 1000000000ull)

struct rtc_goldfish_state {
    uint64_t offset_ns;        /* time = guest time in ns + offset_ns (mod 2^64) */
    uint64_t alarm_ns;         /* the alarm, in the RTC's time */
    uint32_t time_high_latch;  /* what TIME_HIGH reads */
    uint8_t alarm_armed;       /* ALARM_STATUS */
    uint8_t irq_enabled;       /* IRQ_ENABLED */
    uint8_t interrupt_pending; /* the alarm fired and was not cleared */
};

struct machine;
struct plic;

struct rtc_goldfish {
    struct rtc_goldfish_state state;
    /* Host side: the guest time it counts from and its interrupt line. */
    struct machine *machine;
    struct plic *plic;
    unsigned irq;
};

/* The RTC reads `start_ns` now (at the machine's current guest time). */
void rtc_goldfish_init(struct rtc_goldfish *rtc, struct machine *machine, struct plic *plic, unsigned irq,
                       uint64_t start_ns);
/* The time the guest reads now, in nanoseconds since the epoch. */
uint64_t rtc_goldfish_now_ns(struct rtc_goldfish *rtc);
bool rtc_goldfish_read(struct rtc_goldfish *rtc, uint64_t offset, unsigned size, uint64_t *value);
bool rtc_goldfish_write(struct rtc_goldfish *rtc, uint64_t offset, unsigned size, uint64_t value);
/* Fires an armed alarm whose time has come. Cheap when none is armed. */
void rtc_goldfish_check_alarm(struct rtc_goldfish *rtc);
/* The mtime tick at which the armed alarm fires, or UINT64_MAX if none is
 * armed (or it lies beyond what mtime can reach). */
uint64_t rtc_goldfish_alarm_deadline(struct rtc_goldfish *rtc);
/* Drives the interrupt line from the state (after a load). */
void rtc_goldfish_update_line(struct rtc_goldfish *rtc);

void rtc_goldfish_save(const struct rtc_goldfish *rtc, struct state_writer *writer);
void rtc_goldfish_load(struct rtc_goldfish *rtc, struct state_reader *reader);

#endif
