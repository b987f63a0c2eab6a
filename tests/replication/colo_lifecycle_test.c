/* The lifecycle of a protected VM at the replication layer: a primary that
 * ends the VM on purpose (colo_primary_end: a guest poweroff or reboot,
 * `colo quit`) tells its secondary (PRIMARY_ENDING), and the secondary's
 * failover monitor then does not take over (COLO_FAILOVER_PEER_ENDED): no
 * device's failover phase runs and the SVM is not made a plain VM.
 *
 *   1. the real pair over a socketpair, both guests running, ended on
 *      purpose after a few checkpoints: the primary's loop returns 0, the
 *      secondary's monitor says PEER_ENDED with the reason;
 *   2. the same pair stopped without a reason (colo_primary_stop, what a
 *      lost primary looks like to the secondary): the monitor takes over,
 *      so the check above can tell the two apart;
 *   3. the real secondary against a scripted primary that sends
 *      PRIMARY_ENDING in the middle of a checkpoint's pages and hangs up:
 *      PEER_ENDED from SUSPENDED, nothing of the checkpoint applied;
 *   4. the real primary against a scripted secondary that never confirms
 *      (no SVM_ENDED): the primary's loop fails, saying so. */
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

/* Counts the failover phase: a takeover calls it, an end on purpose not. */
static int failovers_called;
static int count_failover(void *opaque, struct error *err)
{
    (void)opaque, (void)err;
    failovers_called++;
    return 0;
}

static const struct colo_checkpoint_device_ops failover_counter = { .failover = count_failover };

/* ---- 1 and 2: the real pair ---- */

static void run_pair(bool on_purpose)
{
    const char *name = on_purpose ? "pair, ended on purpose (reboot)" : "pair, stopped without a reason";
    failovers_called = 0;
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
    options.max_interval_ms = 20;
    struct error err;
    if (colo_secondary_init(&secondary, svm, fds[1], NULL, &err) < 0 ||
        colo_primary_init(&primary, pvm, fds[0], &options, &err) < 0 ||
        colo_secondary_add_device(&secondary, "counter", &failover_counter, NULL, &err) < 0 ||
        colo_secondary_start(&secondary, &err) < 0 || colo_primary_start(&primary, &err) < 0 ||
        colo_failover_start(&failover, &secondary, NULL, NULL, NULL, &err) < 0) {
        fprintf(stderr, "FAIL: %s: cannot start: %s\n", name, err.message);
        exit(1);
    }
    struct colo_primary_stats stats = { 0 };
    for (int waited_ms = 0; waited_ms < 30000 && stats.checkpoints < 3; waited_ms += 5) {
        clock_sleep_ms(5);
        colo_primary_get_stats(&primary, &stats);
    }
    CHECK(stats.checkpoints >= 3, "%s: only %llu checkpoints", name, (unsigned long long)stats.checkpoints);
    if (on_purpose)
        colo_primary_end(&primary, COLO_ENDING_REBOOT);
    else
        colo_primary_stop(&primary);
    int primary_result = colo_primary_join(&primary, &err);
    CHECK(primary_result == 0, "%s: the primary's loop failed: %s", name, err.message);
    /* The primary's host lets go of the connection, as a process ends. */
    close(fds[0]);

    struct colo_failover_result result;
    enum colo_failover_outcome outcome = colo_failover_wait(&failover, 10000, &result);
    printf("%s: outcome %d: %s\n", name, (int)outcome, result.replication_ended);
    if (on_purpose) {
        CHECK(outcome == COLO_FAILOVER_PEER_ENDED, "%s: the secondary's outcome is %d, not PEER_ENDED (%s)", name,
              (int)outcome, result.replication_ended);
        CHECK(result.ending_reason == COLO_ENDING_REBOOT, "%s: the reason is %s", name,
              colo_ending_reason_name(result.ending_reason));
        CHECK(strstr(result.replication_ended, "the primary ended the VM on purpose (reboot)") != NULL,
              "%s: the loop's end does not say why: %s", name, result.replication_ended);
        CHECK(failovers_called == 0, "%s: the devices' failover ran (%d)", name, failovers_called);
        CHECK(svm->ram.dirty_log_enabled, "%s: the SVM was made a plain VM (dirty log off)", name);
    } else {
        CHECK(outcome == COLO_FAILOVER_DONE, "%s: the secondary did not take over (outcome %d)", name, (int)outcome);
        CHECK(failovers_called == 1, "%s: the devices' failover ran %d times", name, failovers_called);
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

/* ---- 3: a scripted primary ends in the middle of a checkpoint ---- */

static int expect(struct stream_reader *reader, enum colo_message message)
{
    struct error err;
    if (colo_wait_message(reader, message, 5000, "script", &err) < 0) {
        CHECK(false, "script: %s", err.message);
        return -1;
    }
    return 0;
}

static void send_or_complain(struct stream_writer *writer, enum colo_message message)
{
    struct error err;
    if (colo_send_message(writer, message, &err) < 0)
        fprintf(stderr, "script: %s\n", err.message);
}

static uint64_t svm_hash_at_suspend;
static void on_suspended(void *opaque, struct machine *svm)
{
    (void)opaque;
    svm_hash_at_suspend = machine_ram_hash(svm);
}

static void run_mid_checkpoint(void)
{
    const char *name = "PRIMARY_ENDING in the middle of a checkpoint";
    failovers_called = 0;
    /* Not running: RAM changes only by what the protocol does. */
    struct machine *pvm = create(), *svm = create();
    machine_pause(svm);
    int fds[2];
    open_pair(fds);
    int script_fd = fds[0];
    struct colo_secondary_options options;
    colo_secondary_options_defaults(&options);
    options.on_suspended = on_suspended;
    static struct colo_secondary secondary;
    static struct colo_failover failover;
    struct error err;
    if (colo_secondary_init(&secondary, svm, fds[1], &options, &err) < 0 ||
        colo_secondary_add_device(&secondary, "counter", &failover_counter, NULL, &err) < 0 ||
        colo_secondary_start(&secondary, &err) < 0 ||
        colo_failover_start(&failover, &secondary, NULL, NULL, NULL, &err) < 0) {
        fprintf(stderr, "FAIL: %s: %s\n", name, err.message);
        exit(1);
    }
    struct stream_writer writer;
    struct stream_reader reader;
    stream_writer_init(&writer, script_fd, &err);
    stream_reader_init(&reader, script_fd, &err);
    struct migration_options migration;
    migration_options_defaults(&migration);
    migration.keep_dirty_log = true;
    struct migration_result migrated;
    if (migration_send(pvm, script_fd, &migration, &migrated, &err) < 0)
        CHECK(false, "%s: the initial copy failed: %s", name, err.message);
    else if (expect(&reader, COLO_CHECKPOINT_SVM_READY) == 0 && expect(&reader, COLO_CHECKPOINT_SVM_RESUMED) == 0) {
        send_or_complain(&writer, COLO_CHECKPOINT_NEW);
        if (expect(&reader, COLO_CHECKPOINT_SVM_SUSPENDED) == 0) {
            static uint8_t page[GUEST_PAGE_SIZE];
            uint64_t pages[20];
            for (unsigned p = 0; p < 20; p++) {
                memset(page, 0xa0 + p, sizeof page);
                pages[p] = 512 + p * 3;
                machine_ram_write(pvm, MACHINE_RAM_BASE + (pages[p] << GUEST_PAGE_SHIFT), page, sizeof page);
            }
            if (stream_write_pages(&writer, pvm, pages, 20, &err) < 0 || stream_flush(&writer, &err) < 0)
                fprintf(stderr, "script: %s\n", err.message);
            send_or_complain(&writer, COLO_PRIMARY_ENDING_QUIT);
        }
    }
    close(script_fd);

    struct colo_failover_result result;
    enum colo_failover_outcome outcome = colo_failover_wait(&failover, 10000, &result);
    printf("%s: outcome %d from %s: %s\n", name, (int)outcome, colo_secondary_state_name(result.from_state),
           result.replication_ended);
    CHECK(outcome == COLO_FAILOVER_PEER_ENDED, "%s: outcome %d, not PEER_ENDED (%s)", name, (int)outcome,
          result.replication_ended);
    CHECK(result.ending_reason == COLO_ENDING_QUIT, "%s: the reason is %s", name,
          colo_ending_reason_name(result.ending_reason));
    CHECK(result.from_state == COLO_SECONDARY_SUSPENDED, "%s: ended in %s", name,
          colo_secondary_state_name(result.from_state));
    CHECK(failovers_called == 0, "%s: the devices' failover ran (%d)", name, failovers_called);
    CHECK(svm->pause_depth > 0, "%s: the SVM was resumed (taken over)", name);
    CHECK(machine_ram_hash(svm) == svm_hash_at_suspend, "%s: a part of the checkpoint reached the SVM", name);
    colo_failover_destroy(&failover);
    colo_secondary_destroy(&secondary);
    stream_writer_destroy(&writer);
    stream_reader_destroy(&reader);
    close(fds[1]);
    test_machine_destroy(pvm);
    test_machine_destroy(svm);
}

/* ---- 4: a scripted secondary that hears PRIMARY_ENDING and says nothing ---- */

static void run_unconfirmed(void)
{
    const char *name = "PRIMARY_ENDING never confirmed";
    struct machine *pvm = create(), *svm = create();
    int fds[2];
    open_pair(fds);
    int script_fd = fds[1];
    struct colo_primary_options options;
    colo_primary_options_defaults(&options);
    options.max_interval_ms = 60000; /* no checkpoint: only the end */
    options.message_timeout_ms = 300;
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
        colo_primary_end(&primary, COLO_ENDING_POWEROFF);
        enum colo_ending_reason reason = COLO_ENDING_QUIT;
        int got = colo_wait_message_or_ending(&reader, COLO_CHECKPOINT_NEW, 5000, "script", &reason, &err);
        CHECK(got == 1 && reason == COLO_ENDING_POWEROFF, "%s: the script did not get PRIMARY_ENDING(poweroff): %d %s",
              name, got, got < 0 ? err.message : colo_ending_reason_name(reason));
    }
    int result = colo_primary_join(&primary, &err);
    printf("%s: %d: %s\n", name, result, result < 0 ? err.message : "");
    CHECK(result < 0 && strstr(err.message, "SVM_ENDED") != NULL,
          "%s: the primary did not fail for want of SVM_ENDED (%d: %s)", name, result, err.message);
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
    CHECK(strcmp(colo_message_name(COLO_PRIMARY_ENDING_POWEROFF), "PRIMARY_ENDING(poweroff)") == 0 &&
              strcmp(colo_message_name(COLO_SVM_ENDED), "SVM_ENDED") == 0,
          "colo_message_name does not know the lifecycle messages");
    run_pair(true);
    run_pair(false);
    run_mid_checkpoint();
    run_unconfirmed();
    if (test_check_failures) {
        fprintf(stderr, "%d test_check_failures\n", test_check_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
