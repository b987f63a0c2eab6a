/* COLO end to end in one process: a PVM running a guest that keeps
 * writing pages, checkpointed into an SVM over a socketpair by the real
 * primary and secondary loops on their own threads, both machines on run
 * threads. At every checkpoint, while both VMs are paused in it, the SVM
 * must be byte-identical to the PVM (RAM hash and saved machine state); the
 * SVM must really run between checkpoints, and rollback must be used. A
 * request made before a checkpoint's pause is served by that checkpoint. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "colo_primary.h"
#include "colo_secondary.h"
#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

#define GUEST_PAGES 300
#define WANTED_CHECKPOINTS 30

/* ThreadSanitizer makes a checkpoint ten or more times slower, while the
 * two guests still run at full speed on their own threads: the interval,
 * the output deadlines and the pace of the requests stretch with it, or
 * the interval has run out before the primary is back in RUNNING and
 * neither a request nor a deadline can ever land. */
#if defined(__SANITIZE_THREAD__)
#define TIME_SCALE 10u
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TIME_SCALE 10u
#endif
#endif
#ifndef TIME_SCALE
#define TIME_SCALE 1u
#endif

static struct machine *create(const char *elf, const char *disk_image)
{
    struct machine *machine = test_machine_create(&(struct test_machine_options){
        .ram_size = 16u << 20, .deterministic_time = true, .elf = elf, .disk_image = disk_image });
    /* store_forever: stores to GUEST_PAGES pages from 1 MiB into RAM. */
    machine->harts[0].state.x[10] = GUEST_PAGES;
    machine->harts[0].state.x[11] = MACHINE_RAM_BASE + (256ull << GUEST_PAGE_SHIFT);
    return machine;
}

/* What the secondary saw right after applying a checkpoint, for the
 * primary's hook to compare with the PVM. */
struct snapshot_exchange {
    pthread_mutex_t lock;
    uint64_t applied; /* checkpoints applied so far */
    uint64_t ram_hash;
    struct state_writer state;
    /* The PVM as it was sent, taken with it paused (after_checkpoint_sent). */
    uint64_t pvm_hash;
    struct state_writer pvm_state;
    /* results */
    unsigned compared, ram_mismatches, state_mismatches, svm_ran_intervals, requests_made, output_deadlines_set;
    /* A request made while the primary waits for the SVM's suspension,
     * before its pause (what a difference found during the pre-copy does):
     * the checkpoint under way serves it. */
    bool late_request_made;
    uint64_t late_request_checkpoint, requested_before_late_request, late_request_number;
    struct colo_secondary *secondary;
    struct colo_primary *primary;
};

static void on_svm_checkpoint_applied(void *opaque, struct machine *svm)
{
    struct snapshot_exchange *exchange = opaque;
    pthread_mutex_lock(&exchange->lock);
    exchange->applied++;
    exchange->ram_hash = machine_ram_hash(svm);
    state_writer_free(&exchange->state);
    state_writer_init(&exchange->state);
    machine_save_state(svm, &exchange->state);
    /* Something only the SVM writes (as a device would), into the last
     * page of RAM, which the PVM's program never touches: the next
     * rollback must restore it, since no checkpoint brings that page. */
    uint8_t scribble[GUEST_PAGE_SIZE];
    memset(scribble, (int)(0x40 + exchange->applied % 64), sizeof scribble);
    machine_ram_write(svm, svm->ram.base + svm->ram.size - GUEST_PAGE_SIZE, scribble, sizeof scribble);
    pthread_mutex_unlock(&exchange->lock);
}

/* Checkpoints that carried dirty pages (the PVM writes all the time, but a
 * checkpoint requested during the one before it may start before the PVM
 * ran an instruction in between), and those whose pre-copy the secondary
 * confirmed before the pause (all of them: the threshold is 0 here). */
struct checkpoint_counts {
    unsigned with_pages, precopy_confirmed, precopy_rounds, resumed_before_ready;
};

static void count_checkpoint_pages(void *opaque, const struct colo_checkpoint_report *report)
{
    struct checkpoint_counts *counts = opaque; /* the primary's thread only */
    if (report->dirty_pages > 0)
        counts->with_pages++;
    if (report->precopy_confirmed)
        counts->precopy_confirmed++;
    counts->precopy_rounds += report->precopy_rounds;
    if (report->resumed_before_ready)
        counts->resumed_before_ready++;
}

static void on_svm_suspended(void *opaque, struct machine *svm)
{
    (void)svm;
    struct snapshot_exchange *exchange = opaque;
    struct colo_secondary_stats stats;
    colo_secondary_get_stats(exchange->secondary, &stats);
    pthread_mutex_lock(&exchange->lock);
    if (stats.last_interval_instructions > 0)
        exchange->svm_ran_intervals++;
    /* In the interval-only half (no other request pending). */
    if (!exchange->late_request_made && stats.checkpoints + 1 == WANTED_CHECKPOINTS * 3 / 4) {
        struct colo_primary_stats primary_stats;
        colo_primary_get_stats(exchange->primary, &primary_stats);
        exchange->requested_before_late_request = primary_stats.requested_checkpoints;
        exchange->late_request_checkpoint = stats.checkpoints + 1;
        exchange->late_request_number = colo_primary_request_checkpoint(exchange->primary);
        exchange->late_request_made = true;
    }
    pthread_mutex_unlock(&exchange->lock);
}

/* After SVM_READY: the PVM's snapshot was taken when the checkpoint was
 * sent, the SVM's before it sent SVM_READY. */
static void after_checkpoint_sent(void *opaque, struct machine *pvm)
{
    struct snapshot_exchange *exchange = opaque;
    /* The primary's thread alone writes these, and reads them in
     * after_svm_ready. */
    state_writer_free(&exchange->pvm_state);
    state_writer_init(&exchange->pvm_state);
    machine_save_state(pvm, &exchange->pvm_state);
    exchange->pvm_hash = machine_ram_hash(pvm);
}

static void after_svm_ready(void *opaque, struct machine *pvm)
{
    (void)pvm; /* it may run again already (resume_before_ready_bytes) */
    struct snapshot_exchange *exchange = opaque;
    const struct state_writer pvm_state = exchange->pvm_state;
    uint64_t pvm_hash = exchange->pvm_hash;
    pthread_mutex_lock(&exchange->lock);
    exchange->compared++;
    if (pvm_hash != exchange->ram_hash) {
        exchange->ram_mismatches++;
        fprintf(stderr, "checkpoint %u: RAM hash PVM %016llx SVM %016llx\n", exchange->compared,
                (unsigned long long)pvm_hash, (unsigned long long)exchange->ram_hash);
    }
    if (pvm_state.length != exchange->state.length ||
        memcmp(pvm_state.data, exchange->state.data, pvm_state.length) != 0) {
        exchange->state_mismatches++;
        fprintf(stderr, "checkpoint %u: machine state differs (%zu vs %zu bytes)\n", exchange->compared,
                pvm_state.length, exchange->state.length);
    }
    pthread_mutex_unlock(&exchange->lock);
}

/* A checkpoint device that only records the order of its calls, one
 * letter each: Setup, Commit, Postsuspend, pRe-resume, Teardown. */
struct recording_device {
    char calls[8192];
    size_t count;
};

static void record_call(struct recording_device *device, char call)
{
    if (device->count + 1 < sizeof device->calls)
        device->calls[device->count++] = call;
}

static int device_setup(void *opaque)
{
    record_call(opaque, 'S');
    return 0;
}
static int device_commit(void *opaque)
{
    record_call(opaque, 'C');
    return 0;
}
static int device_postsuspend(void *opaque)
{
    record_call(opaque, 'P');
    return 0;
}
static int device_preresume(void *opaque)
{
    record_call(opaque, 'R');
    return 0;
}
static void device_teardown(void *opaque)
{
    record_call(opaque, 'T');
}

static const struct colo_checkpoint_device_ops recording_ops = {
    .setup = device_setup,
    .postsuspend = device_postsuspend,
    .preresume = device_preresume,
    .commit = device_commit,
    .teardown = device_teardown,
};

/* Streaming between checkpoints (the stream phase on the primary, receive
 * on the secondary): the primary's device sends a numbered DISK_WRITE
 * record each time it is called, and always has another (it asks for the
 * next phase at setup and in each); the secondary's takes them in order. */
struct streaming_device {
    uint32_t sent;     /* primary: records sent */
    uint32_t received; /* secondary: records taken, in order */
    uint32_t out_of_order;
    uint64_t checkpoints_seen_at_first; /* primary: checkpoints before the first stream */
    struct colo_primary *primary;       /* the primary's device only */
    /* The initial copy: the primary's initial_save sends one TCP_SHIFT
     * entry, the secondary's initial_load must find it (before any
     * stream record). */
    uint32_t initial_saved, initial_loaded, initial_found;
};

#define INITIAL_ENTRY_ISN 0xc0105eedu

static int device_initial_save(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct streaming_device *device = opaque;
    uint8_t key[STREAM_TCP_SHIFT_KEY_LENGTH] = { 1, 2, 3 }, entry[STREAM_TCP_SHIFT_ENTRY_LENGTH];
    stream_tcp_shift_entry_put(entry, &(struct stream_tcp_shift_entry){ .key = key, .isn = INITIAL_ENTRY_ISN });
    device->initial_saved++;
    return stream_write_tcp_shift(writer, entry, 1, err);
}

static int device_initial_load(void *opaque, const struct stream_reader *reader, struct error *err)
{
    (void)err;
    struct streaming_device *device = opaque;
    size_t cursor = 0, length;
    const uint8_t *body;
    device->initial_loaded++;
    while (stream_received_tcp_shift_next(reader, &cursor, &body, &length)) {
        struct stream_tcp_shift_entry entry;
        stream_tcp_shift_entry_fields(body + STREAM_TCP_SHIFT_PREFIX, &entry);
        if (length == STREAM_TCP_SHIFT_PREFIX + STREAM_TCP_SHIFT_ENTRY_LENGTH && entry.isn == INITIAL_ENTRY_ISN &&
            entry.key[0] == 1 && entry.key[2] == 3 && device->received == 0)
            device->initial_found++;
    }
    return 0;
}

static int device_stream_setup(void *opaque)
{
    struct streaming_device *device = opaque;
    if (device->primary)
        colo_primary_stream_wanted(device->primary);
    return 0;
}

static int device_stream(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct streaming_device *device = opaque;
    uint8_t sector[512] = { 0 };
    colo_primary_stream_wanted(device->primary);
    device->sent++;
    memcpy(sector, &device->sent, sizeof device->sent);
    return stream_write_disk_write(writer, 0, (uint64_t)(device->sent % 16) * 512, sector, sizeof sector, err);
}

static int device_receive(void *opaque, const uint8_t *body, size_t length, struct error *err)
{
    (void)err;
    struct streaming_device *device = opaque;
    struct stream_disk_write write;
    stream_disk_write_fields(body, length, &write);
    uint32_t number;
    memcpy(&number, write.data, sizeof number);
    if (number != device->received + 1)
        device->out_of_order++;
    device->received = number;
    return 0;
}

static const struct colo_checkpoint_device_ops streaming_ops = {
    .setup = device_stream_setup,
    .stream = device_stream,
    .receive = device_receive,
    .initial_save = device_initial_save,
    .initial_load = device_initial_load,
};

/* Setup, the first commit, then postsuspend-preresume-commit for each of
 * `checkpoints`, then teardown. */
static bool calls_are_in_order(const struct recording_device *device, uint64_t checkpoints)
{
    char expected[sizeof device->calls];
    size_t length = 0;
    expected[length++] = 'S';
    expected[length++] = 'C';
    for (uint64_t i = 0; i < checkpoints && length + 4 < sizeof expected; i++) {
        expected[length++] = 'P';
        expected[length++] = 'R';
        expected[length++] = 'C';
    }
    expected[length++] = 'T';
    return device->count == length && memcmp(device->calls, expected, length) == 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s store_forever.elf\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
        perror("socketpair");
        return 1;
    }
    /* Each side its own (unused) disk: the streamed records name disk 0. */
    char pvm_disk[] = "/tmp/colo-checkpoint-test-pvm.XXXXXX", svm_disk[] = "/tmp/colo-checkpoint-test-svm.XXXXXX";
    int pvm_disk_fd = mkstemp(pvm_disk), svm_disk_fd = mkstemp(svm_disk);
    if (pvm_disk_fd < 0 || svm_disk_fd < 0 || ftruncate(pvm_disk_fd, 1 << 20) < 0 ||
        ftruncate(svm_disk_fd, 1 << 20) < 0) {
        perror("disk images");
        return 1;
    }
    close(pvm_disk_fd);
    close(svm_disk_fd);
    struct machine *pvm = create(argv[1], pvm_disk);
    struct machine *svm = create(argv[1], svm_disk);
    unlink(pvm_disk);
    unlink(svm_disk);
    /* The SVM is handed to the secondary paused. */
    machine_pause(svm);
    pthread_t pvm_thread = test_machine_start(pvm), svm_thread = test_machine_start(svm);

    static struct colo_primary primary;
    static struct colo_secondary secondary;
    struct snapshot_exchange exchange = { .secondary = &secondary, .primary = &primary };
    pthread_mutex_init(&exchange.lock, NULL);
    state_writer_init(&exchange.state);
    state_writer_init(&exchange.pvm_state);

    struct colo_secondary_options secondary_options;
    colo_secondary_options_defaults(&secondary_options);
    secondary_options.on_checkpoint_applied = on_svm_checkpoint_applied;
    secondary_options.on_suspended = on_svm_suspended;
    secondary_options.hook_opaque = &exchange;
    struct colo_primary_options primary_options;
    colo_primary_options_defaults(&primary_options);
    primary_options.max_interval_ms = 20 * TIME_SCALE;
    primary_options.after_checkpoint_sent = after_checkpoint_sent;
    primary_options.after_svm_ready = after_svm_ready;
    primary_options.hook_opaque = &exchange;
    primary_options.on_checkpoint = count_checkpoint_pages;
    struct checkpoint_counts counts = { 0 };
    primary_options.on_checkpoint_opaque = &counts;
    /* Every pre-copy confirmed before the pause: the SVM must still be the
     * PVM at each checkpoint with the round trip in between. */
    primary_options.precopy_confirm_bytes = 0;
    primary_options.resume_before_ready_bytes = 0;

    struct error err;
    static struct recording_device primary_device, secondary_device;
    static struct streaming_device primary_streamer, secondary_streamer;
    primary_streamer.primary = &primary;
    if (colo_secondary_init(&secondary, svm, fds[1], &secondary_options, &err) < 0 ||
        colo_primary_init(&primary, pvm, fds[0], &primary_options, &err) < 0 ||
        colo_secondary_add_device(&secondary, "recorder", &recording_ops, &secondary_device, &err) < 0 ||
        colo_primary_add_device(&primary, "recorder", &recording_ops, &primary_device, &err) < 0 ||
        colo_secondary_add_device(&secondary, "streamer", &streaming_ops, &secondary_streamer, &err) < 0 ||
        colo_primary_add_device(&primary, "streamer", &streaming_ops, &primary_streamer, &err) < 0 ||
        colo_secondary_start(&secondary, &err) < 0 || colo_primary_start(&primary, &err) < 0) {
        fprintf(stderr, "FAIL: cannot start: %s\n", err.message);
        return 1;
    }

    /* Requests and output deadlines for the first half of the checkpoints;
     * the second half is left to the interval alone, so every trigger
     * surely happens, however slow a checkpoint is (a loaded host, TSan):
     * with requests all along, a slow run saw no interval checkpoint. */
    struct colo_primary_stats stats = { 0 };
    /* A request falls due every 50 steps and is made at the first step
     * that finds the primary RUNNING: asked only at the due step, it met
     * CHECKPOINTING every time in a TSan run whose checkpoint cycle was a
     * divisor of the request period, and no request was ever made. */
    bool request_due = false;
    for (unsigned waited_ms = 0; waited_ms < 60000; waited_ms += 5) {
        colo_primary_get_stats(&primary, &stats);
        if (stats.checkpoints >= WANTED_CHECKPOINTS)
            break;
        if (stats.checkpoints >= WANTED_CHECKPOINTS / 2) {
            clock_sleep_ms(5 * TIME_SCALE);
            continue;
        }
        if (waited_ms % 50 == 0)
            request_due = true;
        if (request_due && colo_primary_state(&primary) == COLO_PRIMARY_RUNNING) {
            colo_primary_request_checkpoint(&primary);
            exchange.requests_made++;
            request_due = false;
        } else if (waited_ms % 50 == 25) {
            /* What held output does: a deadline well inside the interval. */
            colo_primary_request_checkpoint_within(&primary, 2 * TIME_SCALE);
            exchange.output_deadlines_set++;
        }
        clock_sleep_ms(5 * TIME_SCALE);
    }
    colo_primary_stop(&primary);
    int primary_result = colo_primary_join(&primary, &err);
    CHECK(primary_result == 0, "the primary ended with an error: %s", err.message);
    CHECK(colo_primary_state(&primary) == COLO_PRIMARY_RUNNING, "primary stopped in state %s",
          colo_primary_state_name(colo_primary_state(&primary)));
    colo_primary_get_stats(&primary, &stats);

    /* The primary is gone: the secondary sees the end of the stream while
     * the SVM runs, and may take over. */
    shutdown(fds[0], SHUT_RDWR);
    int secondary_result = colo_secondary_join(&secondary, &err);
    CHECK(secondary_result < 0, "the secondary did not notice the primary went away");
    CHECK(colo_secondary_state(&secondary) == COLO_SECONDARY_RESUMED, "secondary ended in state %s (%s)",
          colo_secondary_state_name(colo_secondary_state(&secondary)), err.message);
    printf("secondary ended: %s\n", err.message);
    CHECK(colo_secondary_failover(&secondary, &err) == 0, "failover refused: %s", err.message);
    CHECK(!svm->ram.dirty_log_enabled && !svm->ram.preimages_enabled, "failover left the dirty log on");
    machine_pause(svm);
    uint64_t instret_before = svm->harts[0].state.instret;
    machine_resume(svm);
    clock_sleep_ms(20 * TIME_SCALE);
    machine_pause(svm);
    CHECK(svm->harts[0].state.instret > instret_before, "the SVM does not run after failover");
    machine_resume(svm);

    struct colo_secondary_stats secondary_stats;
    colo_secondary_get_stats(&secondary, &secondary_stats);
    printf("checkpoints %llu (%llu requested, %u requests made, %llu by output deadlines), compared %u; downtime p50 "
           "%llu us, "
           "p99 %llu us, max %llu us; last %llu dirty pages, %llu bytes; initial copy %u rounds\n",
           (unsigned long long)stats.checkpoints, (unsigned long long)stats.requested_checkpoints,
           exchange.requests_made, (unsigned long long)stats.output_checkpoints, exchange.compared,
           (unsigned long long)colo_primary_downtime_percentile(&primary, 50),
           (unsigned long long)colo_primary_downtime_percentile(&primary, 99),
           (unsigned long long)stats.max_downtime_us, (unsigned long long)stats.last_dirty_pages,
           (unsigned long long)stats.last_bytes, stats.migration.rounds);
    printf("secondary: %llu applied, %llu with rollback, %llu pages restored, %llu left to the checkpoint, "
           "%u intervals where "
           "the SVM ran, %llu instructions in all\n",
           (unsigned long long)secondary_stats.checkpoints,
           (unsigned long long)secondary_stats.checkpoints_with_rollback,
           (unsigned long long)secondary_stats.preimages_restored_total,
           (unsigned long long)secondary_stats.preimages_overwritten_total, exchange.svm_ran_intervals,
           (unsigned long long)secondary_stats.interval_instructions_total);

    CHECK(stats.checkpoints >= WANTED_CHECKPOINTS, "only %llu checkpoints", (unsigned long long)stats.checkpoints);
    CHECK(exchange.compared >= 20 && exchange.compared == stats.checkpoints, "compared %u of %llu checkpoints",
          exchange.compared, (unsigned long long)stats.checkpoints);
    CHECK(exchange.ram_mismatches == 0, "%u checkpoints with different RAM", exchange.ram_mismatches);
    CHECK(exchange.state_mismatches == 0, "%u checkpoints with different machine state", exchange.state_mismatches);
    CHECK(secondary_stats.checkpoints == stats.checkpoints, "secondary applied %llu checkpoints",
          (unsigned long long)secondary_stats.checkpoints);
    CHECK(exchange.svm_ran_intervals >= 20, "the SVM ran in only %u intervals", exchange.svm_ran_intervals);
    CHECK(secondary_stats.checkpoints_with_rollback > 0 && secondary_stats.preimages_restored_total > 0,
          "rollback was never used");
    CHECK(secondary_stats.preimages_overwritten_total > 0,
          "no rollback left a page to the checkpoint that overwrites it");
    CHECK(stats.requested_checkpoints > 0, "no requested checkpoint happened");
    CHECK(exchange.late_request_made && stats.requested_checkpoints == exchange.requested_before_late_request,
          "a request made before checkpoint %llu's pause asked for another checkpoint after it (%llu requested "
          "checkpoints before, %llu at the end)",
          (unsigned long long)exchange.late_request_checkpoint,
          (unsigned long long)exchange.requested_before_late_request, (unsigned long long)stats.requested_checkpoints);
    /* colo checkpoint's answer: which checkpoint served it. */
    CHECK(stats.requests_served >= exchange.late_request_number &&
              stats.last_served_request.number == exchange.late_request_checkpoint,
          "request %llu served up to %llu, last by checkpoint %llu (expected %llu)",
          (unsigned long long)exchange.late_request_number, (unsigned long long)stats.requests_served,
          (unsigned long long)stats.last_served_request.number, (unsigned long long)exchange.late_request_checkpoint);
    /* The interval is 20 ms (scaled), the stream phase every 2 ms: many
     * streams, all taken in order by the secondary (the last may still be
     * in flight when the primary stopped). */
    printf("streamed %u records between checkpoints, the secondary took %u (%u out of order)\n", primary_streamer.sent,
           secondary_streamer.received, secondary_streamer.out_of_order);
    CHECK(primary_streamer.sent >= stats.checkpoints, "only %u streams in %llu checkpoints", primary_streamer.sent,
          (unsigned long long)stats.checkpoints);
    CHECK(primary_streamer.initial_saved == 1 && secondary_streamer.initial_loaded == 1 &&
              secondary_streamer.initial_found == 1 && primary_streamer.initial_loaded == 0,
          "initial copy: %u saves, %u loads, the entry found %u times (want 1 each)", primary_streamer.initial_saved,
          secondary_streamer.initial_loaded, secondary_streamer.initial_found);
    CHECK(secondary_streamer.received + 1 >= primary_streamer.sent && secondary_streamer.out_of_order == 0,
          "the secondary took %u of %u streamed records, %u out of order", secondary_streamer.received,
          primary_streamer.sent, secondary_streamer.out_of_order);
    CHECK(stats.output_checkpoints > 0, "none of %u output deadlines (%u ms, interval %u ms) triggered a checkpoint",
          exchange.output_deadlines_set, 2 * TIME_SCALE, 20 * TIME_SCALE);
    CHECK(stats.checkpoints > stats.requested_checkpoints + stats.output_checkpoints,
          "no checkpoint came from the interval");
    printf("%u of %llu checkpoints carried dirty pages, %u had their pre-copy confirmed\n", counts.with_pages,
           (unsigned long long)stats.checkpoints, counts.precopy_confirmed);
    CHECK(stats.total_dirty_pages > 0 && counts.with_pages >= stats.checkpoints / 2,
          "dirty pages were sent in only %u of %llu checkpoints", counts.with_pages,
          (unsigned long long)stats.checkpoints);
    CHECK(counts.precopy_confirmed == stats.checkpoints, "only %u of %llu pre-copies were confirmed before the pause",
          counts.precopy_confirmed, (unsigned long long)stats.checkpoints);
    CHECK(counts.precopy_rounds == COLO_PRECOPY_MAX_ROUNDS * stats.checkpoints,
          "%u pre-copy rounds in %llu checkpoints, expected %u each (every round is confirmed)", counts.precopy_rounds,
          (unsigned long long)stats.checkpoints, COLO_PRECOPY_MAX_ROUNDS);
    /* The PVM ran on while the SVM applied each checkpoint (threshold 0),
     * and the SVM still matched the PVM as sent (compared above). */
    CHECK(counts.resumed_before_ready == stats.checkpoints,
          "the PVM resumed before SVM_READY in %u of %llu checkpoints", counts.resumed_before_ready,
          (unsigned long long)stats.checkpoints);
    CHECK(colo_primary_downtime_percentile(&primary, 50) > 0, "no downtime recorded");

    test_machine_stop(pvm, pvm_thread);
    test_machine_stop(svm, svm_thread);
    colo_primary_destroy(&primary);
    colo_secondary_destroy(&secondary);
    CHECK(calls_are_in_order(&primary_device, stats.checkpoints), "the primary's device calls are out of order: %.*s",
          (int)primary_device.count, primary_device.calls);
    CHECK(calls_are_in_order(&secondary_device, stats.checkpoints),
          "the secondary's device calls are out of order: %.*s", (int)secondary_device.count, secondary_device.calls);
    close(fds[0]);
    close(fds[1]);
    state_writer_free(&exchange.state);
    state_writer_free(&exchange.pvm_state);
    test_machine_destroy(pvm);
    test_machine_destroy(svm);
    if (test_check_failures) {
        fprintf(stderr, "%d test_check_failures\n", test_check_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
