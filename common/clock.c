#include "clock.h"

#include <errno.h>
#include <time.h>

#define NANOSECONDS_PER_SECOND 1000000000ull

uint64_t clock_monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * NANOSECONDS_PER_SECOND + (uint64_t)now.tv_nsec;
}

uint64_t clock_monotonic_us(void)
{
    return clock_monotonic_ns() / 1000u;
}

uint64_t clock_monotonic_ms(void)
{
    return clock_monotonic_ns() / 1000000u;
}

double clock_monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

uint64_t clock_realtime_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec < 0)
        return 0; /* a host clock set before 1970: the epoch is as early as we go */
    return (uint64_t)now.tv_sec * NANOSECONDS_PER_SECOND + (uint64_t)now.tv_nsec;
}

void clock_sleep_ms(unsigned milliseconds)
{
    int saved_errno = errno;
    struct timespec left = { .tv_sec = milliseconds / 1000, .tv_nsec = (long)(milliseconds % 1000) * 1000000 };
    while (nanosleep(&left, &left) < 0 && errno == EINTR) {
    }
    errno = saved_errno;
}
