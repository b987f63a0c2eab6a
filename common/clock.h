/* The host's clocks. The monotonic clock (CLOCK_MONOTONIC) is for
 * durations, deadlines, rates and the machine's real-time mtime: it never
 * jumps with the wall clock, so it must not be used for times shown as
 * dates. The realtime clock (CLOCK_REALTIME) is the wall clock, read once
 * where a date is needed (the guest's RTC at machine creation). */
#ifndef COLO_COMMON_CLOCK_H
#define COLO_COMMON_CLOCK_H

#include <stdint.h>

/* Time since an arbitrary fixed point (boot), in the unit of the name. */
uint64_t clock_monotonic_ns(void);
uint64_t clock_monotonic_us(void);
uint64_t clock_monotonic_ms(void);
/* The same in seconds, for rates and durations that are shown. */
double clock_monotonic_seconds(void);

/* The wall clock: nanoseconds since 1970-01-01T00:00:00Z (0 before it). */
uint64_t clock_realtime_ns(void);

/* Sleeps at least `milliseconds`: a signal does not cut the sleep short. */
void clock_sleep_ms(unsigned milliseconds);

#endif
