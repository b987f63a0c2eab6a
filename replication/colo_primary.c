#include "colo_primary.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "colo_protocol.h"
#include "machine.h"
#include "percentile.h"

const char *colo_primary_state_name(enum colo_primary_state state)
{
    switch (state) {
    case COLO_PRIMARY_MIGRATING:
        return "MIGRATING";
    case COLO_PRIMARY_RUNNING:
        return "RUNNING";
    case COLO_PRIMARY_CHECKPOINTING:
        return "CHECKPOINTING";
    }
    return "?";
}

const char *colo_checkpoint_trigger_name(enum colo_checkpoint_trigger trigger)
{
    switch (trigger) {
    case COLO_TRIGGER_INTERVAL:
        return "interval";
    case COLO_TRIGGER_REQUEST:
        return "request";
    case COLO_TRIGGER_OUTPUT:
        return "output";
    }
    return "?";
}

const char *colo_switchover_outcome_name(enum colo_switchover_outcome outcome)
{
    switch (outcome) {
    case COLO_SWITCHOVER_NONE:
        return "none";
    case COLO_SWITCHOVER_PENDING:
        return "pending";
    case COLO_SWITCHOVER_DONE:
        return "done";
    case COLO_SWITCHOVER_REFUSED:
        return "refused";
    case COLO_SWITCHOVER_UNKNOWN:
        return "unknown";
    case COLO_SWITCHOVER_FAILED:
        return "failed";
    }
    return "?";
}

void colo_primary_options_defaults(struct colo_primary_options *options)
{
    memset(options, 0, sizeof *options);
    migration_options_defaults(&options->migration);
    options->max_interval_ms = 1000;
    options->stream_interval_ms = 2;
    options->message_timeout_ms = 5000;
    options->precopy = true;
    options->precopy_confirm_bytes = 256 * 1024;
    options->resume_before_ready_bytes = 256 * 1024;
}

/* The initial copy's stop-and-copy, the PVM paused: what the devices send
 * with the VM's state (migration_options.stop_and_copy_records). */
static int save_initial_devices(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct colo_primary *primary = opaque;
    return colo_checkpoint_devices_initial_save(&primary->devices, writer, err);
}

int colo_primary_init(struct colo_primary *primary, struct machine *pvm, int fd,
                      const struct colo_primary_options *options, struct error *err)
{
    memset(primary, 0, sizeof *primary);
    primary->pvm = pvm;
    primary->fd = fd;
    if (options)
        primary->options = *options;
    else
        colo_primary_options_defaults(&primary->options);
    primary->options.migration.keep_dirty_log = true;
    primary->options.migration.stop_and_copy_records = save_initial_devices;
    primary->options.migration.stop_and_copy_opaque = primary;
    atomic_init(&primary->state, COLO_PRIMARY_MIGRATING);
    size_t words = machine_dirty_bitmap_words(pvm);
    primary->bitmap = calloc(words, sizeof *primary->bitmap);
    primary->pages = calloc(machine_ram_page_count(pvm), sizeof *primary->pages);
    if (!primary->bitmap || !primary->pages) {
        free(primary->bitmap);
        free(primary->pages);
        return error_set(err, "out of memory for the primary's dirty page lists");
    }
    if (stream_writer_init(&primary->writer, fd, err) < 0)
        goto fail_lists;
    if (stream_reader_init(&primary->reader, fd, err) < 0)
        goto fail_writer;
    pthread_mutex_init(&primary->lock, NULL);
    /* Interval deadlines are on the monotonic clock. */
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&primary->triggered, &attributes);
    pthread_condattr_destroy(&attributes);
    return 0;
fail_writer:
    stream_writer_destroy(&primary->writer);
fail_lists:
    free(primary->bitmap);
    free(primary->pages);
    return -1;
}

void colo_primary_destroy(struct colo_primary *primary)
{
    if (primary->thread_started)
        colo_primary_join(primary, NULL);
    colo_checkpoint_devices_teardown(&primary->devices);
    stream_writer_destroy(&primary->writer);
    stream_reader_destroy(&primary->reader);
    pthread_cond_destroy(&primary->triggered);
    pthread_mutex_destroy(&primary->lock);
    free(primary->bitmap);
    free(primary->pages);
}

int colo_primary_add_device(struct colo_primary *primary, const char *name,
                            const struct colo_checkpoint_device_ops *ops, void *opaque, struct error *err)
{
    return colo_checkpoint_devices_add(&primary->devices, name, ops, opaque, err);
}

enum colo_primary_state colo_primary_state(struct colo_primary *primary)
{
    return (enum colo_primary_state)atomic_load(&primary->state);
}

static void set_state(struct colo_primary *primary, enum colo_primary_state state)
{
    atomic_store(&primary->state, state);
}

uint64_t colo_primary_request_checkpoint(struct colo_primary *primary)
{
    pthread_mutex_lock(&primary->lock);
    primary->checkpoint_requested = true;
    uint64_t number = ++primary->requests_made;
    pthread_cond_broadcast(&primary->triggered);
    pthread_mutex_unlock(&primary->lock);
    return number;
}

void colo_primary_request_checkpoint_within(struct colo_primary *primary, unsigned milliseconds)
{
    uint64_t deadline_us = clock_monotonic_us() + (uint64_t)milliseconds * 1000u;
    pthread_mutex_lock(&primary->lock);
    if (primary->output_deadline_us == 0 || deadline_us < primary->output_deadline_us) {
        primary->output_deadline_us = deadline_us;
        pthread_cond_broadcast(&primary->triggered);
    }
    pthread_mutex_unlock(&primary->lock);
}

void colo_primary_set_output_deadline(struct colo_primary *primary, uint64_t deadline_us)
{
    uint64_t now_us = clock_monotonic_us();
    pthread_mutex_lock(&primary->lock);
    /* Only a set keeps the loop waking every lead: a clear alone (the
     * release after a checkpoint) must not keep an idle loop awake. */
    if (deadline_us)
        primary->output_deadline_moved_us = now_us;
    if (deadline_us > now_us)
        primary->output_deadline_lead_us = deadline_us - now_us;
    primary->output_deadline_us = deadline_us;
    if (deadline_us && deadline_us < primary->loop_wakes_at_us)
        pthread_cond_broadcast(&primary->triggered);
    pthread_mutex_unlock(&primary->lock);
}

uint64_t colo_primary_checkpoint_decided_us(struct colo_primary *primary, bool *by_output_deadline)
{
    pthread_mutex_lock(&primary->lock);
    uint64_t decided_us = primary->checkpoint_decided_us;
    *by_output_deadline = primary->checkpoint_decided_by_output;
    pthread_mutex_unlock(&primary->lock);
    return decided_us;
}

void colo_primary_stream_wanted(struct colo_primary *primary)
{
    pthread_mutex_lock(&primary->lock);
    if (!primary->stream_wanted) {
        primary->stream_wanted = true;
        /* Without the cadence the loop sleeps past the stream deadline. */
        if (!primary->stream_cadence && primary->loop_wakes_at_us)
            pthread_cond_broadcast(&primary->triggered);
    }
    pthread_mutex_unlock(&primary->lock);
}

void colo_primary_stop(struct colo_primary *primary)
{
    pthread_mutex_lock(&primary->lock);
    primary->stop_requested = true;
    pthread_cond_broadcast(&primary->triggered);
    pthread_mutex_unlock(&primary->lock);
}

void colo_primary_end(struct colo_primary *primary, enum colo_ending_reason reason)
{
    pthread_mutex_lock(&primary->lock);
    if (!primary->stop_requested) {
        primary->ending = true;
        primary->ending_reason = reason;
    }
    primary->stop_requested = true;
    pthread_cond_broadcast(&primary->triggered);
    pthread_mutex_unlock(&primary->lock);
}

void colo_primary_switch_over(struct colo_primary *primary, int timeout_ms)
{
    pthread_mutex_lock(&primary->lock);
    primary->switchover_requested = true;
    primary->switchover_timeout_ms = timeout_ms;
    primary->switchover = (struct colo_switchover_status){ .outcome = COLO_SWITCHOVER_PENDING };
    pthread_cond_broadcast(&primary->triggered);
    pthread_mutex_unlock(&primary->lock);
}

void colo_primary_switchover_status(struct colo_primary *primary, struct colo_switchover_status *status)
{
    pthread_mutex_lock(&primary->lock);
    *status = primary->switchover;
    pthread_mutex_unlock(&primary->lock);
}

static void set_switchover(struct colo_primary *primary, enum colo_switchover_outcome outcome, uint64_t gap_us,
                           const char *error)
{
    pthread_mutex_lock(&primary->lock);
    primary->switchover.outcome = outcome;
    primary->switchover.gap_us = gap_us;
    snprintf(primary->switchover.error, sizeof primary->switchover.error, "%s", error ? error : "");
    pthread_mutex_unlock(&primary->lock);
}

void colo_primary_get_stats(struct colo_primary *primary, struct colo_primary_stats *stats)
{
    pthread_mutex_lock(&primary->lock);
    *stats = primary->stats;
    pthread_mutex_unlock(&primary->lock);
}

uint64_t colo_primary_downtime_percentile(struct colo_primary *primary, double percent)
{
    static_assert(COLO_DOWNTIME_HISTORY > 0, "a history");
    uint64_t sorted[COLO_DOWNTIME_HISTORY];
    pthread_mutex_lock(&primary->lock);
    size_t count = primary->stats.checkpoints < COLO_DOWNTIME_HISTORY ? (size_t)primary->stats.checkpoints
                                                                      : COLO_DOWNTIME_HISTORY;
    memcpy(sorted, primary->downtimes_us, count * sizeof sorted[0]);
    pthread_mutex_unlock(&primary->lock);
    return percentile_nearest_rank(sorted, count, percent);
}

/* "primary (CHECKPOINTING), checkpoint 4, sending the checkpoint: ...". */
static int fail(struct colo_primary *primary, struct error *err, const char *step, const struct error *cause)
{
    return error_set(err, "primary (%s), checkpoint %llu, %s: %s", colo_primary_state_name(colo_primary_state(primary)),
                     (unsigned long long)primary->checkpoint_number, step, cause->message);
}

static int send_message(struct colo_primary *primary, enum colo_message message, struct error *err)
{
    struct error cause;
    if (colo_send_message(&primary->writer, message, &cause) < 0)
        return fail(primary, err, "sending to the secondary", &cause);
    return 0;
}

static int wait_message(struct colo_primary *primary, enum colo_message expected, struct error *err)
{
    char context[96];
    snprintf(context, sizeof context, "primary (%s), checkpoint %llu",
             colo_primary_state_name(colo_primary_state(primary)), (unsigned long long)primary->checkpoint_number);
    return colo_wait_message(&primary->reader, expected, primary->options.message_timeout_ms, context, err);
}

static int call_devices(struct colo_primary *primary, enum colo_device_phase phase, struct error *err)
{
    struct error cause;
    if (colo_checkpoint_devices_call(&primary->devices, phase, &cause) < 0)
        return fail(primary, err, "checkpoint devices", &cause);
    return 0;
}

static void resume_pvm(struct colo_primary *primary)
{
    machine_resume(primary->pvm);
    primary->pvm_paused = false;
}

/* After a checkpoint: the devices' preresume, then the PVM runs again;
 * when, in *resumed_at_us. */
static int resume_after_checkpoint(struct colo_primary *primary, uint64_t *resumed_at_us, struct error *err)
{
    if (call_devices(primary, COLO_DEVICE_PRERESUME, err) < 0)
        return -1;
    resume_pvm(primary);
    *resumed_at_us = clock_monotonic_us();
    return 0;
}

/* ---- the test-only kill hook (colo_primary.h), built with -Dtest_hooks=true ---- */
#ifdef COLO_TEST_HOOKS
static const char *const kill_step_names[] = {
    [COLO_KILL_BEFORE_NEW] = "before-new",       /* just before sending CHECKPOINT_NEW */
    [COLO_KILL_SVM_SUSPENDED] = "svm-suspended", /* PVM paused, SVM_SUSPENDED read, no paused page sent */
    [COLO_KILL_MID_PAGES] = "mid-pages",         /* about half the dirty pages sent and flushed */
    [COLO_KILL_AFTER_END] = "after-end",         /* CHECKPOINT_END flushed, SVM_READY not read */
    [COLO_KILL_AFTER_READY] = "after-ready",     /* SVM_READY read, held output not released */
};

int colo_primary_kill_hook_from_env(struct colo_primary_kill_hook *hook, struct error *err)
{
    *hook = (struct colo_primary_kill_hook){ COLO_KILL_NONE, 5 };
    const char *at = getenv("COLO_TEST_KILL_AT");
    if (!at || !*at)
        return 0;
    enum colo_kill_step step = COLO_KILL_NONE;
    for (size_t i = 1; i < sizeof kill_step_names / sizeof kill_step_names[0]; i++) {
        if (strcmp(at, kill_step_names[i]) == 0)
            step = (enum colo_kill_step)i;
    }
    if (step == COLO_KILL_NONE)
        return error_set(err,
                         "COLO_TEST_KILL_AT=%s: unknown step (before-new, svm-suspended, mid-pages, "
                         "after-end, after-ready)",
                         at);
    uint64_t after = 5;
    const char *after_text = getenv("COLO_TEST_KILL_AFTER");
    if (after_text && *after_text) {
        char *end;
        errno = 0;
        unsigned long long value = strtoull(after_text, &end, 10);
        if (errno || *end || after_text[0] == '-')
            return error_set(err, "COLO_TEST_KILL_AFTER=%s: not a whole number of checkpoints", after_text);
        after = value;
    }
    hook->after_checkpoints = after;
    hook->step = step;
    return 0;
}

static bool kill_due(const struct colo_primary *primary, enum colo_kill_step step)
{
    /* stats.checkpoints is only written by this (the loop's) thread. */
    return primary->options.kill_hook.step == step &&
           primary->stats.checkpoints >= primary->options.kill_hook.after_checkpoints;
}

/* Dies here if the hook names this step. The line goes out first (stderr
 * is unbuffered, but flush anyway) so the test can tell which step killed
 * the process; SIGKILL then skips every cleanup, as a dying host would. */
static void kill_point(const struct colo_primary *primary, enum colo_kill_step step)
{
    if (!kill_due(primary, step))
        return;
    fprintf(stderr, "colo: test hook: killing the primary at %s (checkpoint %llu)\n", kill_step_names[step],
            (unsigned long long)primary->checkpoint_number);
    fflush(stderr);
    raise(SIGKILL);
}
#else
static bool kill_due(const struct colo_primary *primary, enum colo_kill_step step)
{
    (void)primary, (void)step;
    return false;
}

static void kill_point(const struct colo_primary *primary, enum colo_kill_step step)
{
    (void)primary, (void)step;
}
#endif

/* Output deadlines that have not moved for this long: the loop stops
 * waking every lead and waits to be told of the next one. */
#define OUTPUT_DEADLINES_QUIET_US 100000u

/* TRIGGER_STREAM is no checkpoint: time for the devices' stream phase. */
enum trigger { TRIGGER_INTERVAL, TRIGGER_REQUEST, TRIGGER_OUTPUT, TRIGGER_STOP, TRIGGER_STREAM, TRIGGER_SWITCHOVER };

/* Waits until the interval since `since_us` has passed, a checkpoint is
 * requested, held output's deadline passes, or a stop. */
static enum trigger wait_for_trigger(struct colo_primary *primary, uint64_t since_us)
{
    uint64_t interval_deadline_us = since_us + (uint64_t)primary->options.max_interval_ms * 1000u;
    bool streaming = colo_checkpoint_devices_streaming(&primary->devices);
    enum trigger trigger = TRIGGER_INTERVAL;
    pthread_mutex_lock(&primary->lock);
    for (;;) {
        if (primary->stop_requested) {
            trigger = TRIGGER_STOP;
            break;
        }
        if (primary->switchover_requested) {
            primary->switchover_requested = false;
            trigger = TRIGGER_SWITCHOVER;
            break;
        }
        if (primary->checkpoint_requested) {
            trigger = TRIGGER_REQUEST;
            break;
        }
        uint64_t now_us = clock_monotonic_us();
        if (primary->output_deadline_us && primary->output_deadline_us <= now_us &&
            primary->output_deadline_us < interval_deadline_us) {
            trigger = TRIGGER_OUTPUT;
            break;
        }
        if (interval_deadline_us <= now_us) {
            trigger = TRIGGER_INTERVAL;
            break;
        }
        /* The stream phase keeps its cadence while devices ask, and stops
         * at the first deadline that finds nothing asked. A wish left
         * from before a checkpoint costs one phase that finds nothing;
         * clearing it at the resume could lose one made right after. */
        uint64_t stream_deadline_us = UINT64_MAX;
        if (streaming && (primary->stream_wanted || primary->stream_cadence))
            stream_deadline_us = primary->last_stream_us + (uint64_t)primary->options.stream_interval_ms * 1000u;
        if (stream_deadline_us <= now_us) {
            bool wanted = primary->stream_wanted;
            primary->stream_wanted = false;
            primary->stream_cadence = wanted;
            if (!wanted)
                continue;
            /* Not a checkpoint: the requests and the output deadline stay. */
            primary->stats.stream_phases++;
            pthread_mutex_unlock(&primary->lock);
            return TRIGGER_STREAM;
        }
        /* Re-read on every wake-up: the output deadline may have moved. */
        uint64_t deadline_us = interval_deadline_us;
        if (primary->output_deadline_us && primary->output_deadline_us < deadline_us)
            deadline_us = primary->output_deadline_us;
        if (stream_deadline_us < deadline_us)
            deadline_us = stream_deadline_us;
        /* A deadline set from now on is at least a lead away: waking
         * every lead meets it without the setter waking us per frame. */
        if (primary->output_deadline_lead_us &&
            now_us - primary->output_deadline_moved_us < OUTPUT_DEADLINES_QUIET_US &&
            now_us + primary->output_deadline_lead_us < deadline_us)
            deadline_us = now_us + primary->output_deadline_lead_us;
        struct timespec deadline = { (time_t)(deadline_us / 1000000u), (long)(deadline_us % 1000000u) * 1000 };
        primary->loop_wakes_at_us = deadline_us;
        pthread_cond_timedwait(&primary->triggered, &primary->lock, &deadline);
        primary->loop_wakes_at_us = 0;
        primary->stats.trigger_wakeups++;
    }
    /* Output held until now goes out after this checkpoint: its deadline
     * is met. A request is cleared at the PVM's pause, not here: one made
     * in between (a difference during the pre-copy) is served by this
     * checkpoint too. */
    primary->output_deadline_us = 0;
    if (trigger != TRIGGER_STOP) {
        primary->checkpoint_decided_us = clock_monotonic_us();
        primary->checkpoint_decided_by_output = trigger == TRIGGER_OUTPUT;
    }
    pthread_mutex_unlock(&primary->lock);
    return trigger;
}

/* The dirty log as a list of page indices in primary->pages; how many. */
static size_t read_dirty_pages(struct colo_primary *primary)
{
    struct machine *pvm = primary->pvm;
    machine_dirty_log_read_and_clear(pvm, primary->bitmap);
    return guest_ram_bitmap_to_pages(primary->bitmap, machine_dirty_bitmap_words(pvm), primary->pages);
}

/* The pre-copy, with the PVM running: what it dirtied so far goes out now.
 * The log is cleared first, so a page it writes after (or while) being
 * copied is in the log again and goes out once more with the PVM paused;
 * the secondary stages both copies in the same run and the later wins. */
static int send_precopy(struct colo_primary *primary, uint64_t *pages_sent, struct error *err)
{
    size_t count = read_dirty_pages(primary);
    struct error cause;
    /* Test hook (as in send_checkpoint): half the pre-copy out, then die. */
    if (count >= 2 && kill_due(primary, COLO_KILL_MID_PAGES)) {
        if (stream_write_pages(&primary->writer, primary->pvm, primary->pages, count / 2, &cause) < 0 ||
            stream_flush(&primary->writer, &cause) < 0)
            return fail(primary, err, "sending the checkpoint's pre-copy", &cause);
        kill_point(primary, COLO_KILL_MID_PAGES);
    }
    if ((count && stream_write_pages(&primary->writer, primary->pvm, primary->pages, count, &cause) < 0) ||
        colo_checkpoint_devices_precopy(&primary->devices, &primary->writer, &cause) < 0 ||
        stream_flush(&primary->writer, &cause) < 0)
        return fail(primary, err, "sending the checkpoint's pre-copy", &cause);
    *pages_sent += count;
    return 0;
}

/* The pre-copy, in rounds while the PVM runs. A large round is still on
 * its way when its flush returns (in socket buffers, in the relays, being
 * decrypted): the secondary confirms it (PRECOPY_SENT, then its
 * SVM_PRECOPY_RECEIVED; the first confirmation reads its SVM_SUSPENDED
 * first, so report->precopy_confirmed also says that one was read), and
 * what the PVM dirtied meanwhile goes in the next round, up to
 * COLO_PRECOPY_MAX_ROUNDS. So the pause sends and waits for little,
 * whatever the transport costs. */
static int precopy(struct colo_primary *primary, struct colo_checkpoint_report *report, struct error *err)
{
    uint64_t started_us = clock_monotonic_us();
    uint64_t round_started = primary->writer.bytes_written;
    if (send_precopy(primary, &report->precopy_pages, err) < 0)
        return -1;
    report->precopy_rounds = 1;
    while (primary->writer.bytes_written - round_started >= primary->options.precopy_confirm_bytes) {
        if (send_message(primary, COLO_PRECOPY_SENT, err) < 0 ||
            (!report->precopy_confirmed && wait_message(primary, COLO_CHECKPOINT_SVM_SUSPENDED, err) < 0) ||
            wait_message(primary, COLO_SVM_PRECOPY_RECEIVED, err) < 0)
            return -1;
        report->precopy_confirmed = true;
        if (report->precopy_rounds == COLO_PRECOPY_MAX_ROUNDS)
            break;
        round_started = primary->writer.bytes_written;
        if (send_precopy(primary, &report->precopy_pages, err) < 0)
            return -1;
        report->precopy_rounds++;
    }
    report->confirm_us = clock_monotonic_us() - started_us;
    return 0;
}

/* Sends what the PVM wrote since the last checkpoint (or since the
 * pre-copy) and its state. The PVM is paused. */
static int send_checkpoint(struct colo_primary *primary, uint64_t *dirty_pages, struct error *err)
{
    struct machine *pvm = primary->pvm;
    size_t count = read_dirty_pages(primary);
    *dirty_pages = count;
    struct error cause;
    size_t sent = 0;
    /* Test hook: half the pages out on the wire, then die; the secondary
     * holds a partial checkpoint. With fewer than two dirty pages there is
     * no middle: the hook waits for a later checkpoint. */
    if (count >= 2 && kill_due(primary, COLO_KILL_MID_PAGES)) {
        sent = count / 2;
        if (stream_write_pages(&primary->writer, pvm, primary->pages, sent, &cause) < 0 ||
            stream_flush(&primary->writer, &cause) < 0)
            return fail(primary, err, "sending the checkpoint", &cause);
        kill_point(primary, COLO_KILL_MID_PAGES);
    }
    if ((count > sent && stream_write_pages(&primary->writer, pvm, primary->pages + sent, count - sent, &cause) < 0) ||
        colo_checkpoint_devices_save(&primary->devices, &primary->writer, &cause) < 0 ||
        stream_write_machine_state(&primary->writer, pvm, &cause) < 0 ||
        stream_write_checkpoint_end(&primary->writer, &cause) < 0 || stream_flush(&primary->writer, &cause) < 0)
        return fail(primary, err, "sending the checkpoint", &cause);
    return 0;
}

static void record_checkpoint(struct colo_primary *primary, const struct colo_checkpoint_report *report)
{
    pthread_mutex_lock(&primary->lock);
    struct colo_primary_stats *stats = &primary->stats;
    primary->downtimes_us[stats->checkpoints % COLO_DOWNTIME_HISTORY] = report->downtime_us;
    stats->checkpoints++;
    if (report->trigger == COLO_TRIGGER_REQUEST)
        stats->requested_checkpoints++;
    if (report->trigger == COLO_TRIGGER_OUTPUT)
        stats->output_checkpoints++;
    stats->last_downtime_us = report->downtime_us;
    stats->last_dirty_pages = report->dirty_pages;
    stats->last_bytes = report->bytes;
    stats->total_dirty_pages += report->dirty_pages;
    stats->total_bytes += report->bytes;
    if (report->downtime_us > stats->max_downtime_us)
        stats->max_downtime_us = report->downtime_us;
    stats->last = *report;
    if (report->requests_served > stats->requests_served) {
        stats->requests_served = report->requests_served;
        stats->last_served_request = *report;
    }
    pthread_mutex_unlock(&primary->lock);
}

/* The stop, between checkpoints: nothing is held for an unfinished one.
 * Ending on purpose, the secondary hears it first and confirms, so that
 * nothing the primary then does (closing the connections) looks like its
 * death. */
static int end_replication(struct colo_primary *primary, struct error *err)
{
    pthread_mutex_lock(&primary->lock);
    bool ending = primary->ending;
    enum colo_ending_reason reason = primary->ending_reason;
    pthread_mutex_unlock(&primary->lock);
    if (!ending)
        return 0;
#ifdef COLO_TEST_HOOKS
    /* Test only (colo_primary.h): the SVM's guest then ends first. */
    const char *delay = getenv("COLO_TEST_ENDING_DELAY_MS");
    if (delay && *delay)
        clock_sleep_ms((unsigned)strtoul(delay, NULL, 10));
#endif
    if (send_message(primary, colo_ending_message(reason), err) < 0 || wait_message(primary, COLO_SVM_ENDED, err) < 0)
        return -1;
    return 0;
}

/* The final checkpoint is applied and its output released; the PVM is
 * paused since paused_at_us. Hands the VM over: 0 when the secondary took
 * over, 1 when it refused (its SVM_RESUMED read: the loop goes on), -1
 * when nobody knows (UNKNOWN). */
static int switch_over(struct colo_primary *primary, uint64_t paused_at_us, struct error *err)
{
    pthread_mutex_lock(&primary->lock);
    int timeout_ms = primary->switchover_timeout_ms;
    pthread_mutex_unlock(&primary->lock);
    /* From the first byte of SWITCHOVER on the secondary may take over:
     * this copy must not run again unless told it did not. */
    primary->keep_paused = true;
    char context[96];
    snprintf(context, sizeof context, "primary (switching over), checkpoint %llu",
             (unsigned long long)primary->checkpoint_number);
    static const enum colo_message answers[] = { COLO_SVM_TOOK_OVER, COLO_SVM_SWITCHOVER_REFUSED };
    enum colo_message answer;
    if (send_message(primary, COLO_SWITCHOVER, err) < 0 ||
        colo_wait_message(&primary->reader, COLO_CHECKPOINT_SVM_RESUMED, primary->options.message_timeout_ms, context,
                          err) < 0) {
        set_switchover(primary, COLO_SWITCHOVER_UNKNOWN, 0, err->message);
        return -1;
    }
    /* Until the answer: what comes in for the VM goes to the secondary. */
    uint64_t deadline_ms = clock_monotonic_ms() + (uint64_t)timeout_ms;
    bool readable = false;
    if (primary->options.while_switching_over) {
        do {
            primary->options.while_switching_over(primary->options.while_switching_over_opaque);
            readable = colo_wait_readable(primary->fd, 1) != 0;
        } while (!readable && clock_monotonic_ms() < deadline_ms);
    } else {
        readable = colo_wait_readable(primary->fd, timeout_ms) != 0;
    }
    if (!readable) {
        error_set(err, "%s: no answer to SWITCHOVER within %d ms", context, timeout_ms);
        set_switchover(primary, COLO_SWITCHOVER_UNKNOWN, 0, err->message);
        return -1;
    }
    if (colo_wait_message_of(&primary->reader, answers, 2, primary->options.message_timeout_ms, context, &answer, err) <
        0) {
        set_switchover(primary, COLO_SWITCHOVER_UNKNOWN, 0, err->message);
        return -1;
    }
    uint64_t gap_us = clock_monotonic_us() - paused_at_us;
    if (answer == COLO_SVM_SWITCHOVER_REFUSED) {
        primary->keep_paused = false;
        set_switchover(primary, COLO_SWITCHOVER_REFUSED, gap_us, "the secondary refused to take over");
        return 1;
    }
    set_switchover(primary, COLO_SWITCHOVER_DONE, gap_us, NULL);
    return 0;
}

static int primary_loop(struct colo_primary *primary, struct error *err)
{
    struct machine *pvm = primary->pvm;
    struct error cause;
    set_state(primary, COLO_PRIMARY_MIGRATING);
    primary->checkpoint_number = 1;

    /* The initial copy. On success the PVM is paused and its dirty log,
     * cleared at the pause, holds what it writes after the copied state. */
    struct migration_result migration;
    if (migration_send(pvm, primary->fd, &primary->options.migration, &migration, &cause) < 0)
        return fail(primary, err, "the initial copy", &cause);
    primary->pvm_paused = true;
    pthread_mutex_lock(&primary->lock);
    primary->stats.migration = migration;
    pthread_mutex_unlock(&primary->lock);
    if (call_devices(primary, COLO_DEVICE_SETUP, err) < 0 || wait_message(primary, COLO_CHECKPOINT_SVM_READY, err) < 0)
        return -1;
    resume_pvm(primary);
    if (wait_message(primary, COLO_CHECKPOINT_SVM_RESUMED, err) < 0)
        return -1;
    set_state(primary, COLO_PRIMARY_RUNNING);
    uint64_t interval_started_us = clock_monotonic_us();
    primary->last_stream_us = interval_started_us;

    for (;;) {
        primary->checkpoint_number = primary->stats.checkpoints + 1;
        if (call_devices(primary, COLO_DEVICE_COMMIT, err) < 0)
            return -1;
        enum trigger trigger;
        while ((trigger = wait_for_trigger(primary, interval_started_us)) == TRIGGER_STREAM) {
            if (colo_checkpoint_devices_stream(&primary->devices, &primary->writer, &cause) < 0 ||
                stream_flush(&primary->writer, &cause) < 0)
                return fail(primary, err, "streaming ahead of the checkpoint", &cause);
            primary->last_stream_us = clock_monotonic_us();
        }
        if (trigger == TRIGGER_STOP)
            return end_replication(primary, err);

        set_state(primary, COLO_PRIMARY_CHECKPOINTING);
        kill_point(primary, COLO_KILL_BEFORE_NEW);
        if (send_message(primary, COLO_CHECKPOINT_NEW, err) < 0)
            return -1;
        struct colo_checkpoint_report report = {
            .number = primary->checkpoint_number,
            .trigger = trigger == TRIGGER_REQUEST || trigger == TRIGGER_SWITCHOVER ? COLO_TRIGGER_REQUEST
                       : trigger == TRIGGER_OUTPUT                                 ? COLO_TRIGGER_OUTPUT
                                                                                   : COLO_TRIGGER_INTERVAL,
        };
        uint64_t bytes_before = primary->writer.bytes_written;
        if (primary->options.precopy && precopy(primary, &report, err) < 0)
            return -1;
        /* The SVM suspends as soon as it reads CHECKPOINT_NEW: wait for
         * that with the PVM still running, not in its downtime (a
         * confirmed pre-copy has read it already). */
        uint64_t suspend_wait_started_us = clock_monotonic_us();
        if (!report.precopy_confirmed && wait_message(primary, COLO_CHECKPOINT_SVM_SUSPENDED, err) < 0)
            return -1;
        report.suspend_us = clock_monotonic_us() - suspend_wait_started_us;
        uint64_t paused_at_us = clock_monotonic_us();
        machine_pause(pvm);
        primary->pvm_paused = true;
        /* Output held until this pause goes out with this checkpoint: a
         * deadline it set is met, and a request made until now is served
         * by it (requests from now on ask for the next one). What the PVM
         * holds after its resume asks anew (the output buffer's
         * postsuspend marks where this checkpoint's output ends). */
        pthread_mutex_lock(&primary->lock);
        if (primary->checkpoint_requested)
            report.requests_served = primary->requests_made;
        primary->checkpoint_requested = false;
        primary->output_deadline_us = 0;
        pthread_mutex_unlock(&primary->lock);
        if (call_devices(primary, COLO_DEVICE_POSTSUSPEND, err) < 0)
            return -1;
        uint64_t devices_paused_at_us = clock_monotonic_us();
        kill_point(primary, COLO_KILL_SVM_SUSPENDED);
        if (send_checkpoint(primary, &report.dirty_pages, err) < 0) /* COLO_KILL_MID_PAGES inside */
            return -1;
        uint64_t sent_at_us = clock_monotonic_us();
        if (primary->options.after_checkpoint_sent)
            primary->options.after_checkpoint_sent(primary->options.hook_opaque, pvm);
        kill_point(primary, COLO_KILL_AFTER_END);
        /* The checkpoint is on its way whole: a large one lets the PVM
         * run on while the secondary applies it (its cipher work too, over
         * TLS). What the PVM does from here belongs to the next
         * checkpoint, and its output stays held until that one is applied.
         * The final checkpoint of a switchover is the exception: that PVM
         * must not run again. */
        uint64_t resumed_at_us = 0;
        bool resumed_early = trigger != TRIGGER_SWITCHOVER &&
                             primary->writer.bytes_written - bytes_before >= primary->options.resume_before_ready_bytes;
        if (resumed_early && resume_after_checkpoint(primary, &resumed_at_us, err) < 0)
            return -1;
        if (wait_message(primary, COLO_CHECKPOINT_SVM_READY, err) < 0)
            return -1;
        uint64_t ready_at_us = clock_monotonic_us();
        kill_point(primary, COLO_KILL_AFTER_READY);

        /* The SVM holds this checkpoint: everything the PVM did up to its
         * pause is safe to show the world. */
        colo_checkpoint_devices_release(&primary->devices);
        uint64_t released_at_us = clock_monotonic_us();
        if (primary->options.after_svm_ready)
            primary->options.after_svm_ready(primary->options.hook_opaque, pvm);
        bool resumed_read = false;
        if (trigger == TRIGGER_SWITCHOVER) {
            int switched = switch_over(primary, paused_at_us, err);
            if (switched <= 0) {
                report.downtime_us = clock_monotonic_us() - paused_at_us;
                report.dirty_pages += report.precopy_pages;
                report.bytes = primary->writer.bytes_written - bytes_before;
                record_checkpoint(primary, &report);
                return switched;
            }
            resumed_read = true; /* refused: the SVM runs on as a secondary */
        }
        if (!resumed_early && resume_after_checkpoint(primary, &resumed_at_us, err) < 0)
            return -1;
        report.dirty_pages += report.precopy_pages;
        report.bytes = primary->writer.bytes_written - bytes_before;
        report.resumed_before_ready = resumed_early;
        report.downtime_us = resumed_at_us - paused_at_us;
        report.pause_us = devices_paused_at_us - paused_at_us;
        report.send_us = sent_at_us - devices_paused_at_us;
        report.apply_us = ready_at_us - sent_at_us;
        report.resume_us = resumed_early ? resumed_at_us - sent_at_us : resumed_at_us - ready_at_us;
        report.output_us = released_at_us - paused_at_us;
        record_checkpoint(primary, &report);
        if (primary->options.on_checkpoint)
            primary->options.on_checkpoint(primary->options.on_checkpoint_opaque, &report);
        interval_started_us = resumed_at_us;
        primary->last_stream_us = resumed_at_us;
        if (!resumed_read && wait_message(primary, COLO_CHECKPOINT_SVM_RESUMED, err) < 0)
            return -1;
        set_state(primary, COLO_PRIMARY_RUNNING);
    }
}

int colo_primary_run(struct colo_primary *primary, struct error *err)
{
    int result = primary_loop(primary, err);
    /* A switchover asked for and not even begun fails with the loop. */
    pthread_mutex_lock(&primary->lock);
    bool switchover_pending = primary->switchover.outcome == COLO_SWITCHOVER_PENDING;
    primary->switchover_requested = false;
    pthread_mutex_unlock(&primary->lock);
    if (switchover_pending)
        set_switchover(primary, COLO_SWITCHOVER_FAILED, 0,
                       result < 0 ? err->message : "the replication ended before the final checkpoint");
    /* Stopped or lost the secondary: the PVM runs on, unprotected (the
     * held output is for the proxy to release, once it exists). After a
     * SWITCHOVER went out it stays paused: the secondary may run the VM. */
    if (primary->pvm_paused && !primary->keep_paused)
        resume_pvm(primary);
    machine_dirty_log_enable(primary->pvm, false);
    return result;
}

static void *primary_thread(void *opaque)
{
    pthread_setname_np(pthread_self(), "primary");
    struct colo_primary *primary = opaque;
    primary->result = colo_primary_run(primary, &primary->error);
    return NULL;
}

int colo_primary_start(struct colo_primary *primary, struct error *err)
{
    int failed = pthread_create(&primary->thread, NULL, primary_thread, primary);
    if (failed)
        return error_set(err, "cannot start the primary's thread: %s", strerror(failed));
    primary->thread_started = true;
    return 0;
}

int colo_primary_join(struct colo_primary *primary, struct error *err)
{
    if (!primary->thread_started)
        return error_set(err, "the primary's thread was not started");
    pthread_join(primary->thread, NULL);
    primary->thread_started = false;
    if (primary->result < 0 && err)
        *err = primary->error;
    return primary->result;
}
