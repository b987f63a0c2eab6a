/* When the primary's loop wakes.
 *
 * The output deadline (colo_primary_set_output_deadline), as the comparing
 * proxy moves it: set when a PVM frame waits for its twin, cleared when
 * the twin comes, with nearly every frame.
 *
 *   1. a stream of moves (set, then cleared a millisecond later) does
 *      not wake the loop per move: it wakes about once per lead while
 *      deadlines keep moving;
 *   2. a deadline that is left to pass still triggers its checkpoint, not
 *      before the deadline and not long after, although the interval is a
 *      minute away;
 *   3. the first deadline after a quiet spell (the loop asleep for the
 *      interval) wakes it in time too.
 *
 * The stream phase (colo_primary_stream_wanted), with a device that has a
 * stream function, as a replicated disk has:
 *
 *   4. nobody asks (an idle disk): no phase runs and the loop sleeps,
 *      where it used to wake every stream interval (500 times a second),
 *      also after a clear of the output deadline (which used to start
 *      the wake-ups every lead again after each checkpoint);
 *   5. one ask: one phase, soon, and none after it;
 *   6. a device that asks again in each phase (a disk the guest keeps
 *      writing): the phases keep the stream interval's cadence, no
 *      faster. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "colo_primary.h"
#include "colo_secondary.h"
#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

#define TIMEOUT_MS 20u
/* The moves' deadlines: far enough ahead that a loaded host's sleep of a
 * millisecond between set and clear never lets one pass. */
#define MOVE_LEAD_MS 1000u
/* What the slowest sanitizer build on a loaded host may add to a wake-up. */
#define LATE_ALLOWED_MS 400u
/* Longer than the loop's quiet time after the last deadline move (100 ms)
 * and than a stream interval. */
#define STREAM_QUIET_MS 150u
#define IDLE_MS 300u

static const char *guest_elf;

/* A device with a stream phase that sends nothing: it counts the phases
 * and asks for `asks_left` more, one from each. */
struct asking_device {
    struct colo_primary *primary;
    atomic_uint phases, asks_left;
};

static int asking_stream(void *opaque, struct stream_writer *writer, struct error *err)
{
    (void)writer, (void)err;
    struct asking_device *device = opaque;
    atomic_fetch_add(&device->phases, 1);
    unsigned left = atomic_load(&device->asks_left);
    if (left > 0) {
        atomic_store(&device->asks_left, left - 1);
        colo_primary_stream_wanted(device->primary);
    }
    return 0;
}

static const struct colo_checkpoint_device_ops asking_ops = { .stream = asking_stream };

static struct machine *create(void)
{
    struct machine *machine = test_machine_create(
        &(struct test_machine_options){ .ram_size = 8u << 20, .deterministic_time = true, .elf = guest_elf });
    machine->harts[0].state.x[10] = 64; /* store_forever: pages stored to */
    machine->harts[0].state.x[11] = MACHINE_RAM_BASE + (256ull << GUEST_PAGE_SHIFT);
    return machine;
}

static struct colo_primary_stats stats_of(struct colo_primary *primary)
{
    struct colo_primary_stats stats;
    colo_primary_get_stats(primary, &stats);
    return stats;
}

/* Sets a deadline TIMEOUT_MS ahead and waits until its checkpoint has
 * been taken: not before the deadline, nor long after. */
static void checkpoint_after_deadline(struct colo_primary *primary, const char *name)
{
    uint64_t before = stats_of(primary).output_checkpoints;
    uint64_t deadline_us = clock_monotonic_us() + TIMEOUT_MS * 1000u;
    colo_primary_set_output_deadline(primary, deadline_us);
    while (stats_of(primary).output_checkpoints == before && clock_monotonic_us() < deadline_us + 30000000u)
        clock_sleep_ms(1);
    uint64_t taken_us = clock_monotonic_us();
    CHECK(stats_of(primary).output_checkpoints == before + 1, "%s: no checkpoint for the deadline", name);
    long late_ms = (long)((int64_t)(taken_us - deadline_us) / 1000);
    /* The checkpoint's start is what the deadline triggers; it ends
     * after the deadline, never a whole timeout before it. */
    CHECK(late_ms >= 0, "%s: checkpoint done %ld ms before the deadline", name, -late_ms);
    CHECK(late_ms <= (long)LATE_ALLOWED_MS, "%s: checkpoint %ld ms after the deadline", name, late_ms);
    printf("%s: the checkpoint was done %ld ms after the deadline\n", name, late_ms);
}

int main(int argc, char **argv)
{
    guest_elf = argc == 2 ? argv[1] : NULL;
    if (!guest_elf) {
        fprintf(stderr, "usage: %s store_forever.elf\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct machine *pvm = create(), *svm = create();
    machine_pause(svm); /* the secondary is handed its SVM paused */
    pthread_t pvm_thread = test_machine_start(pvm), svm_thread = test_machine_start(svm);
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
        perror("socketpair");
        return 1;
    }
    static struct colo_primary primary;
    static struct colo_secondary secondary;
    struct colo_primary_options options;
    colo_primary_options_defaults(&options);
    options.max_interval_ms = 60000;
    struct error err;
    static struct asking_device asker = { .primary = &primary };
    if (colo_secondary_init(&secondary, svm, fds[1], NULL, &err) < 0 ||
        colo_primary_init(&primary, pvm, fds[0], &options, &err) < 0 ||
        colo_primary_add_device(&primary, "asker", &asking_ops, &asker, &err) < 0 ||
        colo_secondary_start(&secondary, &err) < 0 || colo_primary_start(&primary, &err) < 0) {
        fprintf(stderr, "FAIL: cannot start: %s\n", err.message);
        return 1;
    }
    while (colo_primary_state(&primary) != COLO_PRIMARY_RUNNING)
        clock_sleep_ms(1);

    /* 3 first: the loop has been asleep since the initial copy. */
    checkpoint_after_deadline(&primary, "first deadline after a quiet spell");

    /* 1: 500 moves, each deadline cleared about a millisecond after it was set. */
    unsigned moves = 500;
    uint64_t wakeups_before = stats_of(&primary).trigger_wakeups, checkpoints_before = stats_of(&primary).checkpoints;
    uint64_t started_us = clock_monotonic_us();
    for (unsigned i = 0; i < moves; i++) {
        colo_primary_set_output_deadline(&primary, clock_monotonic_us() + MOVE_LEAD_MS * 1000u);
        nanosleep(&(struct timespec){ 0, 1000000l }, NULL);
        colo_primary_set_output_deadline(&primary, 0);
    }
    uint64_t elapsed_ms = (clock_monotonic_us() - started_us) / 1000u;
    struct colo_primary_stats after = stats_of(&primary);
    uint64_t wakeups = after.trigger_wakeups - wakeups_before;
    /* About once per lead, and a few more for the start and end; far
     * below once per move. */
    uint64_t allowed = elapsed_ms * 3 / (2 * MOVE_LEAD_MS) + 10;
    printf("%u deadline moves in %llu ms woke the loop %llu times (at most %llu allowed)\n", moves,
           (unsigned long long)elapsed_ms, (unsigned long long)wakeups, (unsigned long long)allowed);
    CHECK(after.checkpoints == checkpoints_before, "a cleared deadline caused %llu checkpoints",
          (unsigned long long)(after.checkpoints - checkpoints_before));
    CHECK(wakeups <= allowed, "the loop woke %llu times for %u deadline moves", (unsigned long long)wakeups, moves);

    /* 2: right after the moves, the loop asleep a lead (1 s) away: this
     * sooner deadline must wake it. */
    checkpoint_after_deadline(&primary, "deadline left to pass while deadlines move");

    /* 4: nobody asked for the stream phase since the start. Past the
     * deadlines' quiet time the loop sleeps until the interval; a clear
     * of the deadline (as the release after a checkpoint does) must not
     * wake it every lead again. */
    clock_sleep_ms(2 * STREAM_QUIET_MS);
    uint64_t checkpoints = stats_of(&primary).checkpoints;
    colo_primary_set_output_deadline(&primary, 0);
    colo_primary_request_checkpoint(&primary);
    while (stats_of(&primary).checkpoints == checkpoints)
        clock_sleep_ms(1);
    wakeups_before = stats_of(&primary).trigger_wakeups;
    clock_sleep_ms(IDLE_MS);
    wakeups = stats_of(&primary).trigger_wakeups - wakeups_before;
    printf("idle for %u ms after a checkpoint: the loop woke %llu times, %u stream phases since the start\n", IDLE_MS,
           (unsigned long long)wakeups, atomic_load(&asker.phases));
    CHECK(atomic_load(&asker.phases) == 0, "%u stream phases ran that nobody asked for", atomic_load(&asker.phases));
    CHECK(wakeups <= 2, "an idle loop woke %llu times in %u ms", (unsigned long long)wakeups, IDLE_MS);

    /* 5: one ask, one phase. */
    uint64_t asked_us = clock_monotonic_us();
    colo_primary_stream_wanted(&primary);
    while (atomic_load(&asker.phases) == 0 && clock_monotonic_us() < asked_us + 30000000u)
        clock_sleep_ms(1);
    long waited_ms = (long)((clock_monotonic_us() - asked_us) / 1000u);
    CHECK(atomic_load(&asker.phases) == 1, "no stream phase after an ask");
    CHECK(waited_ms <= (long)(options.stream_interval_ms + LATE_ALLOWED_MS), "the phase came %ld ms after the ask",
          waited_ms);
    clock_sleep_ms(STREAM_QUIET_MS);
    CHECK(atomic_load(&asker.phases) == 1, "%u stream phases for one ask", atomic_load(&asker.phases));
    printf("one ask: its phase within %ld ms, no other\n", waited_ms);

    /* 6: a device that asks from each phase. */
    unsigned more = 20;
    atomic_store(&asker.asks_left, more);
    started_us = clock_monotonic_us();
    colo_primary_stream_wanted(&primary);
    while (atomic_load(&asker.phases) < 2 + more && clock_monotonic_us() < started_us + 30000000u)
        clock_sleep_ms(1);
    elapsed_ms = (clock_monotonic_us() - started_us) / 1000u;
    clock_sleep_ms(STREAM_QUIET_MS);
    printf("%u asks from the phases: %u phases in %llu ms\n", more, atomic_load(&asker.phases) - 1,
           (unsigned long long)elapsed_ms);
    CHECK(atomic_load(&asker.phases) == 2 + more, "%u phases for %u asks", atomic_load(&asker.phases) - 1, more + 1);
    /* The first phase runs at once (the last was long ago); each of the
     * others a stream interval after the one before. */
    CHECK(elapsed_ms + 1 >= (uint64_t)more * options.stream_interval_ms,
          "%u phases in %llu ms: faster than one per %u ms", more + 1, (unsigned long long)elapsed_ms,
          options.stream_interval_ms);

    colo_primary_stop(&primary);
    CHECK(colo_primary_join(&primary, &err) == 0, "the primary ended with an error: %s", err.message);
    shutdown(fds[0], SHUT_RDWR);
    colo_secondary_join(&secondary, &err); /* it saw the primary go */
    test_machine_stop(pvm, pvm_thread);
    test_machine_stop(svm, svm_thread);
    colo_primary_destroy(&primary);
    colo_secondary_destroy(&secondary);
    close(fds[0]);
    close(fds[1]);
    test_machine_destroy(pvm);
    test_machine_destroy(svm);
    return test_check_finish("colo-loop-wakeups");
}
