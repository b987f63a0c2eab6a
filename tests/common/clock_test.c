/* The clocks: the monotonic clock's units agree with each other and with
 * CLOCK_MONOTONIC, the wall clock is CLOCK_REALTIME, time never goes back,
 * and clock_sleep_ms sleeps at least as long as asked, even when signals
 * arrive meanwhile. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "clock.h"

#include "test_check.h"

static void on_signal(int signal_number)
{
    (void)signal_number;
}

struct interrupter {
    pthread_t target;
    atomic_bool stop;
};

/* Interrupts the sleeping thread every millisecond until told to stop. */
static void *interrupt_thread(void *argument)
{
    struct interrupter *interrupter = argument;
    struct timespec pause = { 0, 1000 * 1000 };
    while (!atomic_load(&interrupter->stop)) {
        pthread_kill(interrupter->target, SIGUSR1);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

int main(void)
{
    /* The units agree, read in ascending order of grain. */
    struct timespec before;
    clock_gettime(CLOCK_MONOTONIC, &before);
    uint64_t ns = clock_monotonic_ns();
    uint64_t us = clock_monotonic_us();
    uint64_t ms = clock_monotonic_ms();
    double seconds = clock_monotonic_seconds();
    uint64_t before_ns = (uint64_t)before.tv_sec * 1000000000u + (uint64_t)before.tv_nsec;
    CHECK(ns >= before_ns && ns - before_ns < 1000000000u, "clock_monotonic_ns %llu is not CLOCK_MONOTONIC (%llu)",
          (unsigned long long)ns, (unsigned long long)before_ns);
    CHECK(us >= ns / 1000 && us - ns / 1000 < 1000000, "clock_monotonic_us %llu vs ns %llu", (unsigned long long)us,
          (unsigned long long)ns);
    CHECK(ms >= us / 1000 && ms - us / 1000 < 1000, "clock_monotonic_ms %llu vs us %llu", (unsigned long long)ms,
          (unsigned long long)us);
    CHECK(seconds >= (double)ms / 1000 - 0.001 && seconds - (double)ms / 1000 < 1.0,
          "clock_monotonic_seconds %.6f vs ms %llu", seconds, (unsigned long long)ms);

    /* The wall clock is CLOCK_REALTIME in nanoseconds. */
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t wall_before = (uint64_t)wall.tv_sec * 1000000000u + (uint64_t)wall.tv_nsec;
    uint64_t realtime = clock_realtime_ns();
    CHECK(realtime >= wall_before && realtime - wall_before < 1000000000u,
          "clock_realtime_ns %llu is not CLOCK_REALTIME (%llu)", (unsigned long long)realtime,
          (unsigned long long)wall_before);

    /* Never backwards. */
    uint64_t last = clock_monotonic_ns();
    for (int i = 0; i < 100000; i++) {
        uint64_t now = clock_monotonic_ns();
        CHECK(now >= last, "the clock went back from %llu to %llu", (unsigned long long)last, (unsigned long long)now);
        if (now < last)
            break;
        last = now;
    }

    /* A sleep lasts at least as long as asked. */
    uint64_t start = clock_monotonic_ns();
    clock_sleep_ms(30);
    uint64_t slept = clock_monotonic_ns() - start;
    CHECK(slept >= 30000000u, "clock_sleep_ms(30) slept %llu ns", (unsigned long long)slept);
    start = clock_monotonic_ns();
    clock_sleep_ms(0);
    CHECK(clock_monotonic_ns() - start < 1000000000u, "clock_sleep_ms(0) took a second");

    /* ... also when signals keep cutting it short. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigaction(SIGUSR1, &action, NULL);
    struct interrupter interrupter = { .target = pthread_self() };
    atomic_init(&interrupter.stop, false);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, interrupt_thread, &interrupter) == 0, "cannot start a thread");
    start = clock_monotonic_ns();
    clock_sleep_ms(50);
    slept = clock_monotonic_ns() - start;
    atomic_store(&interrupter.stop, true);
    pthread_join(thread, NULL);
    CHECK(slept >= 50000000u, "clock_sleep_ms(50) under signals slept %llu ns", (unsigned long long)slept);

    return test_check_finish("clock_test");
}
