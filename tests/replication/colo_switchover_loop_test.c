/* A planned switchover at the replication layer (colo_primary_switch_over;
 * docs/replication.md, "Switchover"): the primary's last checkpoint leaves
 * the PVM paused for good, SWITCHOVER goes out, and the secondary's
 * failover monitor takes over and answers SVM_TOOK_OVER.
 *
 *   1. the real pair over a socketpair, both guests running: the primary's
 *      loop returns 0 (DONE, a measured gap), the PVM stays paused and runs
 *      no instruction more, the monitor says DONE with `switchover` set,
 *      the devices' failover ran once, the committed output was forgotten
 *      (primary_released_output), the input was looked after while the
 *      primary waited (while_switching_over), the SVM runs;
 *   2. the secondary refuses on its loop's thread (may_switch_over): the
 *      primary hears SVM_SWITCHOVER_REFUSED, resumes the PVM and goes on
 *      checkpointing; the secondary goes on too;
 *   3. the failover gate refuses (the cluster said stand down): the primary
 *      hears SVM_SWITCHOVER_REFUSED and its PVM runs on;
 *   4. a scripted secondary that never answers SWITCHOVER: the primary's
 *      loop fails (UNKNOWN) and leaves the PVM paused (never two copies). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "colo_failover.h"
#include "colo_primary.h"
#include "colo_protocol.h"
#include "colo_secondary.h"
#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

#define GUEST_PAGES 200

static const char *guest_elf;

static struct machine *create(void)
{
    struct machine *machine = test_machine_create(
        &(struct test_machine_options){ .ram_size = 8u << 20, .deterministic_time = true, .elf = guest_elf });
    /* store_forever: stores to GUEST_PAGES pages from 1 MiB into RAM. */
    machine->harts[0].state.x[10] = GUEST_PAGES;
    machine->harts[0].state.x[11] = MACHINE_RAM_BASE + (256ull << GUEST_PAGE_SHIFT);
    return machine;
}

static void open_pair(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
        perror("socketpair");
        exit(1);
    }
}

static int failovers_called, released_called, switching_calls;
static int count_failover(void *opaque, struct error *err)
{
    (void)opaque, (void)err;
    failovers_called++;
    return 0;
}

static const struct colo_checkpoint_device_ops failover_counter = { .failover = count_failover };

static void count_released(void *opaque)
{
    (void)opaque;
    released_called++;
}

static void count_switching(void *opaque)
{
    (void)opaque;
    switching_calls++;
}

static bool refuse_in_loop(void *opaque, char *why, size_t size)
{
    (void)opaque;
    snprintf(why, size, "test: not now");
    return false;
}

static bool refuse_at_gate(void *opaque, char *why, size_t size)
{
    (void)opaque;
    snprintf(why, size, "test: stood down");
    return false;
}

static void wait_checkpoints(struct colo_primary *primary, uint64_t wanted, const char *name)
{
    struct colo_primary_stats stats = { 0 };
    for (int waited_ms = 0; waited_ms < 30000 && stats.checkpoints < wanted; waited_ms += 5) {
        clock_sleep_ms(5);
        colo_primary_get_stats(primary, &stats);
    }
    CHECK(stats.checkpoints >= wanted, "%s: only %llu checkpoints (wanted %llu)", name,
          (unsigned long long)stats.checkpoints, (unsigned long long)wanted);
    /* Between checkpoints, so that the count read next is not about to
     * grow by one already under way (a slow checkpoint, under TSan). */
    for (int waited_ms = 0; waited_ms < 30000 && colo_primary_state(primary) != COLO_PRIMARY_RUNNING; waited_ms++)
        clock_sleep_ms(1);
}

static struct colo_switchover_status wait_switchover(struct colo_primary *primary)
{
    struct colo_switchover_status status;
    for (int waited_ms = 0; waited_ms < 20000; waited_ms++) {
        colo_primary_switchover_status(primary, &status);
        if (status.outcome != COLO_SWITCHOVER_PENDING)
            break;
        clock_sleep_ms(1);
    }
    return status;
}

enum pair_case { PAIR_DONE, PAIR_REFUSED_IN_LOOP, PAIR_REFUSED_AT_GATE };

/* ---- 1, 2 and 3: the real pair ---- */

static void run_pair(enum pair_case which)
{
    const char *name = which == PAIR_DONE              ? "switchover"
                       : which == PAIR_REFUSED_IN_LOOP ? "switchover refused by the secondary's loop"
                                                       : "switchover refused by the failover gate";
    failovers_called = released_called = switching_calls = 0;
    struct machine *pvm = create(), *svm = create();
    machine_pause(svm);
    pthread_t pvm_thread = test_machine_start(pvm), svm_thread = test_machine_start(svm);
    int fds[2];
    open_pair(fds);

    static struct colo_primary primary;
    static struct colo_secondary secondary;
    static struct colo_failover failover;
    struct colo_primary_options options;
    colo_primary_options_defaults(&options);
    options.max_interval_ms = 50;
    options.while_switching_over = count_switching;
    struct colo_secondary_options secondary_options;
    colo_secondary_options_defaults(&secondary_options);
    if (which == PAIR_REFUSED_IN_LOOP)
        secondary_options.may_switch_over = refuse_in_loop;
    struct colo_failover_gate gate = { .primary_released_output = count_released };
    if (which == PAIR_REFUSED_AT_GATE)
        gate.may_take_over = refuse_at_gate;
    struct error err;
    if (colo_secondary_init(&secondary, svm, fds[1], &secondary_options, &err) < 0 ||
        colo_primary_init(&primary, pvm, fds[0], &options, &err) < 0 ||
        colo_secondary_add_device(&secondary, "counter", &failover_counter, NULL, &err) < 0 ||
        colo_secondary_start(&secondary, &err) < 0 || colo_primary_start(&primary, &err) < 0 ||
        colo_failover_start(&failover, &secondary, &gate, NULL, NULL, &err) < 0) {
        fprintf(stderr, "FAIL: %s: cannot start: %s\n", name, err.message);
        exit(1);
    }
    wait_checkpoints(&primary, 3, name);
    struct colo_primary_stats before;
    colo_primary_get_stats(&primary, &before);
    colo_primary_switch_over(&primary, 5000);
    struct colo_switchover_status status = wait_switchover(&primary);
    printf("%s: %s, gap %.2f ms %s\n", name, colo_switchover_outcome_name(status.outcome), (double)status.gap_us / 1000,
           status.error);

    if (which == PAIR_DONE) {
        int primary_result = colo_primary_join(&primary, &err);
        CHECK(primary_result == 0, "%s: the primary's loop failed: %s", name, err.message);
        CHECK(status.outcome == COLO_SWITCHOVER_DONE, "%s: outcome %s", name,
              colo_switchover_outcome_name(status.outcome));
        CHECK(status.gap_us > 0 && status.gap_us < 5000000, "%s: gap %llu us", name, (unsigned long long)status.gap_us);
        struct colo_primary_stats after;
        colo_primary_get_stats(&primary, &after);
        CHECK(after.checkpoints == before.checkpoints + 1, "%s: %llu checkpoints before, %llu after", name,
              (unsigned long long)before.checkpoints, (unsigned long long)after.checkpoints);
        /* The PVM never runs again. */
        CHECK(machine_pause_depth(pvm) > 0, "%s: the PVM was resumed", name);
        uint64_t instret = machine_instructions_retired(pvm);
        clock_sleep_ms(50);
        CHECK(machine_instructions_retired(pvm) == instret, "%s: the PVM still runs", name);
        struct colo_failover_result result;
        enum colo_failover_outcome outcome = colo_failover_wait(&failover, 10000, &result);
        CHECK(outcome == COLO_FAILOVER_DONE && result.switchover,
              "%s: the secondary's outcome is %d (switchover %d): %s", name, (int)outcome, (int)result.switchover,
              result.replication_ended);
        CHECK(failovers_called == 1, "%s: the devices' failover ran %d times", name, failovers_called);
        CHECK(released_called == 1, "%s: the committed output was not forgotten (%d)", name, released_called);
        CHECK(switching_calls >= 1, "%s: the input was not looked after while waiting for the answer", name);
        CHECK(machine_pause_depth(svm) == 0 && !svm->ram.dirty_log_enabled, "%s: the SVM is not a plain running VM",
              name);
        /* Read with the SVM paused: its counters belong to its vCPU thread. */
        machine_pause(svm);
        instret = machine_instructions_retired(svm);
        machine_resume(svm);
        clock_sleep_ms(50);
        machine_pause(svm);
        uint64_t instret_later = machine_instructions_retired(svm);
        machine_resume(svm);
        CHECK(instret_later > instret, "%s: the SVM does not run", name);
        close(fds[0]);
    } else {
        CHECK(status.outcome == COLO_SWITCHOVER_REFUSED, "%s: outcome %s", name,
              colo_switchover_outcome_name(status.outcome));
        CHECK(machine_pause_depth(pvm) == 0, "%s: the PVM was left paused", name);
        if (which == PAIR_REFUSED_IN_LOOP) {
            /* Both go on: more checkpoints. */
            wait_checkpoints(&primary, before.checkpoints + 4, name);
            CHECK(colo_failover_wait(&failover, 0, NULL) == COLO_FAILOVER_PENDING, "%s: the secondary's loop ended",
                  name);
            struct colo_secondary_stats secondary_stats;
            colo_secondary_get_stats(&secondary, &secondary_stats);
            CHECK(secondary_stats.switchovers_refused == 1, "%s: %llu refusals counted", name,
                  (unsigned long long)secondary_stats.switchovers_refused);
            colo_primary_stop(&primary);
        }
        if (which == PAIR_REFUSED_AT_GATE) {
            /* The secondary stood down and stops; the primary runs on
             * (here its next checkpoint fails: nobody reads). */
            struct colo_failover_result result;
            enum colo_failover_outcome outcome = colo_failover_wait(&failover, 10000, &result);
            CHECK(outcome == COLO_FAILOVER_REFUSED && result.switchover && failovers_called == 0,
                  "%s: the secondary's outcome is %d (switchover %d), %d failovers", name, (int)outcome,
                  (int)result.switchover, failovers_called);
            shutdown(fds[1], SHUT_RDWR);
        }
        int primary_result = colo_primary_join(&primary, &err);
        if (which == PAIR_REFUSED_IN_LOOP)
            CHECK(primary_result == 0, "%s: the primary's loop failed: %s", name, err.message);
        close(fds[0]);
        colo_failover_wait(&failover, 10000, NULL);
    }
    colo_failover_destroy(&failover);
    test_machine_stop(pvm, pvm_thread);
    test_machine_stop(svm, svm_thread);
    colo_primary_destroy(&primary);
    colo_secondary_destroy(&secondary);
    close(fds[1]);
    test_machine_destroy(pvm);
    test_machine_destroy(svm);
}

/* ---- 4: a scripted secondary that never answers SWITCHOVER ---- */

static void send_or_complain(struct stream_writer *writer, enum colo_message message)
{
    struct error err;
    if (colo_send_message(writer, message, &err) < 0)
        fprintf(stderr, "script: %s\n", err.message);
}

static void run_unanswered(void)
{
    const char *name = "switchover never answered";
    struct machine *pvm = create(), *svm = create();
    pthread_t pvm_thread = test_machine_start(pvm);
    int fds[2];
    open_pair(fds);
    int script_fd = fds[1];
    struct colo_primary_options options;
    colo_primary_options_defaults(&options);
    options.max_interval_ms = 60000; /* only the switchover's checkpoint */
    options.precopy = false;
    static struct colo_primary primary;
    struct error err;
    if (colo_primary_init(&primary, pvm, fds[0], &options, &err) < 0 || colo_primary_start(&primary, &err) < 0) {
        fprintf(stderr, "FAIL: %s: %s\n", name, err.message);
        exit(1);
    }
    struct stream_reader reader;
    struct stream_writer writer;
    stream_reader_init(&reader, script_fd, &err);
    stream_writer_init(&writer, script_fd, &err);
    if (migration_receive_with_reader(svm, &reader, &err) < 0) {
        CHECK(false, "%s: the initial copy did not arrive: %s", name, err.message);
    } else {
        send_or_complain(&writer, COLO_CHECKPOINT_SVM_READY);
        send_or_complain(&writer, COLO_CHECKPOINT_SVM_RESUMED);
        while (colo_primary_state(&primary) != COLO_PRIMARY_RUNNING)
            clock_sleep_ms(1);
        colo_primary_switch_over(&primary, 300);
        if (colo_wait_message(&reader, COLO_CHECKPOINT_NEW, 5000, "script", &err) < 0) {
            CHECK(false, "%s: %s", name, err.message);
        } else {
            send_or_complain(&writer, COLO_CHECKPOINT_SVM_SUSPENDED);
            uint32_t terminator = 0;
            if (stream_receive(&reader, svm, &terminator, &err) < 0)
                CHECK(false, "%s: the checkpoint did not arrive: %s", name, err.message);
            send_or_complain(&writer, COLO_CHECKPOINT_SVM_READY);
            send_or_complain(&writer, COLO_CHECKPOINT_SVM_RESUMED);
            CHECK(colo_wait_message(&reader, COLO_SWITCHOVER, 5000, "script", &err) == 0, "%s: no SWITCHOVER: %s", name,
                  err.message);
            /* ... and no answer, the connection open. */
        }
    }
    int result = colo_primary_join(&primary, &err);
    struct colo_switchover_status status;
    colo_primary_switchover_status(&primary, &status);
    printf("%s: %d, %s: %s\n", name, result, colo_switchover_outcome_name(status.outcome), status.error);
    CHECK(result < 0 && status.outcome == COLO_SWITCHOVER_UNKNOWN, "%s: the primary's loop gave %d, %s", name, result,
          colo_switchover_outcome_name(status.outcome));
    CHECK(strstr(status.error, "no answer to SWITCHOVER within 300 ms") != NULL,
          "%s: the error does not say no answer came: %s", name, status.error);
    CHECK(machine_pause_depth(pvm) > 0, "%s: the PVM was resumed without an answer", name);
    test_machine_stop(pvm, pvm_thread);
    colo_primary_destroy(&primary);
    stream_reader_destroy(&reader);
    stream_writer_destroy(&writer);
    close(fds[0]);
    close(fds[1]);
    test_machine_destroy(pvm);
    test_machine_destroy(svm);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s store_forever.elf\n", argv[0]);
        return 2;
    }
    guest_elf = argv[1];
    signal(SIGPIPE, SIG_IGN);
    run_pair(PAIR_DONE);
    run_pair(PAIR_REFUSED_IN_LOOP);
    run_pair(PAIR_REFUSED_AT_GATE);
    run_unanswered();
    if (test_check_failures) {
        fprintf(stderr, "%d test_check_failures\n", test_check_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
