/* The host's monotonic clock (CLOCK_MONOTONIC): durations, deadlines,
 * rates and the machine's real-time mtime. It never jumps with the wall
 * clock, so it must not be used for times shown as dates. */
#ifndef COLO_COMMON_CLOCK_H
#define COLO_COMMON_CLOCK_H

#include <stdint.h>

/* Time since an arbitrary fixed point (boot), in the unit of the name. */
uint64_t clock_monotonic_ns(void);
uint64_t clock_monotonic_us(void);
uint64_t clock_monotonic_ms(void);
/* The same in seconds, for rates and durations that are shown. */
double clock_monotonic_seconds(void);

/* Sleeps at least `milliseconds`: a signal does not cut the sleep short. */
void clock_sleep_ms(unsigned milliseconds);

#endif
