#include "live_migration.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "machine.h"
#include "stream.h"
#include "stream_internal.h"

/* The destination's one-byte acknowledgements: a pre-copy round is applied
 * (so the source's rate and its choice of the last round reflect what the
 * destination really keeps up with, and the stop-and-copy never waits for a
 * backlog), and the final state is loaded (the VM can run there). */
#define MIGRATION_ROUND_APPLIED 'C'
#define MIGRATION_ACKNOWLEDGED 'R'
/* See the stop-and-copy decision in migration_send. */
#define MIGRATION_FIXED_STOP_SECONDS 0.001
#define MIGRATION_SMALL_FINAL_PAGES 32
/* How often a stop-and-copy that found a burst of new pages at the pause
 * may go back to pre-copy (see migration_send). */
#define MIGRATION_STOP_RETRIES 3
/* How many extra rounds may wait for a lull in a bursty guest's writes. */
#define MIGRATION_LULL_ROUNDS 5
/* Pages per write batch: progress granularity and flush size. */
#define MIGRATION_CHUNK_PAGES 256

void migration_options_defaults(struct migration_options *options)
{
    memset(options, 0, sizeof *options);
    options->max_downtime_microseconds = 5000;
    options->max_rounds = 30;
}

struct sender {
    struct machine *machine;
    struct stream_writer writer;
    const struct migration_options *options;
    struct migration_progress progress;
};

static void report(struct sender *sender)
{
    if (sender->options->progress)
        sender->options->progress(sender->options->progress_opaque, &sender->progress);
}

/* Sends pages in chunks, flushing each so progress and the transfer rate
 * are real. */
static int wait_for_acknowledgement(int fd, char expected, struct error *err)
{
    char acknowledgement = 0;
    ssize_t got;
    do {
        got = read(fd, &acknowledgement, 1);
    } while (got < 0 && errno == EINTR);
    if (got == 1 && acknowledgement == expected)
        return 0;
    if (got < 0)
        return error_set_errno(err, "no acknowledgement from the destination");
    return error_set(err, "the destination closed the connection instead of acknowledging "
                          "(it could not load the VM; see its log)");
}

static int send_pages(struct sender *sender, const uint64_t *pages, size_t count, struct error *err)
{
    sender->progress.pages_remaining = count;
    report(sender);
    for (size_t done = 0; done < count;) {
        size_t chunk = count - done < MIGRATION_CHUNK_PAGES ? count - done : MIGRATION_CHUNK_PAGES;
        if (stream_write_pages(&sender->writer, sender->machine, pages + done, chunk, err) < 0 ||
            stream_flush(&sender->writer, err) < 0)
            return -1;
        done += chunk;
        sender->progress.pages_sent += chunk;
        sender->progress.pages_remaining = count - done;
        sender->progress.bytes_sent = sender->writer.bytes_written;
        report(sender);
    }
    return 0;
}

int migration_end_round(struct stream_writer *writer, struct error *err)
{
    if (stream_write_checkpoint_end(writer, err) < 0 || stream_flush(writer, err) < 0)
        return -1;
    return wait_for_acknowledgement(writer->fd, MIGRATION_ROUND_APPLIED, err);
}

/* The destination's answer to the request run: it takes the machine, or
 * a REFUSAL that says why not. */
static int wait_for_machine_answer(int fd, struct error *err)
{
    struct stream_reader reader;
    if (stream_reader_init(&reader, fd, err) < 0)
        return -1;
    int status = -1;
    struct pollfd watch = { .fd = fd, .events = POLLIN };
    int ready;
    do {
        ready = poll(&watch, 1, MIGRATION_MACHINE_ANSWER_TIMEOUT_MS);
    } while (ready < 0 && errno == EINTR);
    struct stream_record record;
    int got = ready > 0 ? stream_read_record(&reader, &record, err) : -1;
    if (ready == 0) {
        error_set(err, "the destination did not answer within %d s whether it takes the machine",
                  MIGRATION_MACHINE_ANSWER_TIMEOUT_MS / 1000);
    } else if (ready < 0) {
        error_set_errno(err, "waiting for the destination's answer");
    } else if (got == 0) {
        error_set(err, "the destination closed the connection instead of answering (see its log)");
    } else if (got > 0 && record.type == STREAM_RECORD_REFUSAL) {
        char text[STREAM_MAX_REFUSAL + 1];
        stream_refusal_text(record.body, record.length, text, sizeof text);
        error_set(err, "refused: %s", text);
    } else if (got > 0 && (record.type != STREAM_RECORD_CHECKPOINT_STATE ||
                           stream_get_u32(record.body) != MIGRATION_MACHINE_ACCEPTED)) {
        error_set(err, "the destination answered with a %s record, not whether it takes the machine",
                  stream_record_type_name(record.type));
    } else if (got > 0) {
        status = 0;
    } else {
        error_prefix(err, "the destination's answer: ");
    }
    stream_reader_destroy(&reader);
    return status;
}

int migration_send(struct machine *machine, int fd, const struct migration_options *options,
                   struct migration_result *result, struct error *err)
{
    memset(result, 0, sizeof *result);
    struct sender sender = { .machine = machine, .options = options };
    uint64_t page_count = machine_ram_page_count(machine);
    size_t words = machine_dirty_bitmap_words(machine);
    uint64_t *bitmap = calloc(words, sizeof *bitmap);
    uint64_t *last_bitmap = calloc(words, sizeof *last_bitmap);
    uint64_t *pages = calloc(page_count, sizeof *pages);
    bool paused = false, logging = false;
    int status = -1;
    double started = clock_monotonic_seconds(), paused_at = 0;
    if (!bitmap || !last_bitmap || !pages) {
        error_set(err, "out of memory for the migration's page lists");
        goto done;
    }
    if (stream_writer_init(&sender.writer, fd, err) < 0)
        goto done;
    sender.progress.pages_total = page_count;

    struct stream_header header = { STREAM_VERSION, machine_ram_size(machine), machine_configuration_hash(machine) };
    if (stream_write_header(&sender.writer, &header, err) < 0)
        goto done;

    const struct migration_companion *companion = options->companion;
    /* With a companion the destination compares the machines first. */
    struct machine_description description;
    machine_describe(machine, &description);
    if (companion && (stream_write_machine(&sender.writer, &description, err) < 0 ||
                      stream_write_checkpoint_state(&sender.writer, MIGRATION_COMPANION_REQUEST, err) < 0 ||
                      stream_write_checkpoint_end(&sender.writer, err) < 0 || stream_flush(&sender.writer, err) < 0 ||
                      wait_for_machine_answer(fd, err) < 0))
        goto done;
    if (companion && options->machine_accepted)
        options->machine_accepted(options->progress_opaque);
    if (companion && companion->before_copy && companion->before_copy(companion->opaque, &sender.writer, err) < 0)
        goto done;

    /* Logging starts before the full copy, so every page written during it
     * is sent again in the next round. */
    machine_dirty_log_enable(machine, true);
    logging = true;
    for (uint64_t i = 0; i < page_count; i++)
        pages[i] = i;
    double round_started = clock_monotonic_seconds();
    uint64_t bytes_before = sender.writer.bytes_written;
    if (send_pages(&sender, pages, page_count, err) < 0 || stream_write_checkpoint_end(&sender.writer, err) < 0 ||
        stream_flush(&sender.writer, err) < 0 || wait_for_acknowledgement(fd, MIGRATION_ROUND_APPLIED, err) < 0)
        goto done;
    double rate = (double)(sender.writer.bytes_written - bytes_before) /
                  (clock_monotonic_seconds() - round_started + 1e-9);
    sender.progress.megabytes_per_second = rate / 1e6;
    result->rounds = 1;

    /* Pre-copy rounds while the set shrinks and is too big to send within
     * the downtime limit. */
    uint64_t previous_dirty = page_count;
    uint64_t smallest_dirty = page_count; /* over the rounds after the first */
    unsigned not_converging = 0, lull_rounds = 0;
    for (unsigned round = 1;; round++) {
        uint64_t dirty = machine_dirty_log_read_and_clear(machine, bitmap);
        /* The stop-and-copy costs the pages at the measured rate plus a
         * fixed part (pausing, the machine state, the target's load and
         * acknowledgement), about a millisecond here. */
        double estimated = (double)dirty * (4096.0 + 8.0) / rate + MIGRATION_FIXED_STOP_SECONDS;
        bool small_enough = estimated * 1e6 <= (double)options->max_downtime_microseconds;
        /* Under the limit, one more round is still worth it while it at
         * least halves the set: the downtime is what the guest feels, the
         * extra round costs it nothing. */
        bool still_shrinking = dirty > MIGRATION_SMALL_FINAL_PAGES && dirty * 2 <= previous_dirty;
        /* A guest that writes in bursts leaves sets that go up and down
         * from round to round: a few more rounds may catch it between two
         * bursts, at a set no bigger than twice the smallest seen. */
        bool above_lull = dirty > MIGRATION_SMALL_FINAL_PAGES && dirty > 2 * smallest_dirty &&
                          lull_rounds < MIGRATION_LULL_ROUNDS;
        if (round > 1 && dirty < smallest_dirty)
            smallest_dirty = dirty;
        not_converging = dirty >= previous_dirty ? not_converging + 1 : 0;
        bool stop = (small_enough && !still_shrinking) || round > options->max_rounds || not_converging >= 3;
        if (stop && above_lull && round <= options->max_rounds && not_converging < 3) {
            stop = false;
            lull_rounds++;
        }
        size_t count;
        if (stop) {
            /* This round's pages go in the stop-and-copy, together with
             * those dirtied until the pause: OR the two logs. */
            machine_pause(machine);
            paused = true;
            paused_at = clock_monotonic_seconds();
            machine_dirty_log_read_and_clear(machine, last_bitmap);
            for (size_t word = 0; word < words; word++)
                bitmap[word] |= last_bitmap[word];
            count = guest_ram_bitmap_to_pages(bitmap, words, pages);
            /* The guest wrote a burst between the decision and the pause
             * (far more pages than the decision counted): the pause has
             * cost microseconds so far, so resume and send them as one
             * more round instead of with the VM stopped. */
            bool burst = count > 2 * dirty + MIGRATION_SMALL_FINAL_PAGES;
            if (burst && result->stop_retries < MIGRATION_STOP_RETRIES && round <= options->max_rounds) {
                result->stop_retries++;
                machine_resume(machine);
                paused = false;
            } else {
                sender.progress.stop_and_copy = true;
                sender.progress.round = round;
                result->final_pages = count;
                /* While paused, no chunked flushes and no progress events
                 * (each is a JSON message to the subscribers): the pages,
                 * the state and END go out in as few sends as the buffer
                 * allows. */
                if (stream_write_pages(&sender.writer, machine, pages, count, err) < 0 ||
                    (companion && companion->stop_and_copy &&
                     companion->stop_and_copy(companion->opaque, &sender.writer, err) < 0) ||
                    (options->stop_and_copy_records &&
                     options->stop_and_copy_records(options->stop_and_copy_opaque, &sender.writer, err) < 0) ||
                    stream_write_machine_state(&sender.writer, machine, err) < 0 ||
                    stream_write_end(&sender.writer, err) < 0 || stream_flush(&sender.writer, err) < 0)
                    goto done;
                result->downtime_sent_seconds = clock_monotonic_seconds() - paused_at;
                sender.progress.pages_sent += count;
                sender.progress.pages_remaining = 0;
                sender.progress.bytes_sent = sender.writer.bytes_written;
                report(&sender);
                break;
            }
        } else {
            count = guest_ram_bitmap_to_pages(bitmap, words, pages);
        }
        sender.progress.round = round;
        round_started = clock_monotonic_seconds();
        bytes_before = sender.writer.bytes_written;
        if (send_pages(&sender, pages, count, err) < 0 ||
            (companion && companion->round && companion->round(companion->opaque, &sender.writer, err) < 0) ||
            stream_write_checkpoint_end(&sender.writer, err) < 0 || stream_flush(&sender.writer, err) < 0 ||
            wait_for_acknowledgement(fd, MIGRATION_ROUND_APPLIED, err) < 0)
            goto done;
        double elapsed = clock_monotonic_seconds() - round_started;
        if (count > 64 && elapsed > 0)
            rate = (double)(sender.writer.bytes_written - bytes_before) / elapsed;
        sender.progress.megabytes_per_second = rate / 1e6;
        previous_dirty = count;
        result->rounds++;
    }

    /* The destination acknowledges once it has loaded everything. */
    if (wait_for_acknowledgement(fd, MIGRATION_ACKNOWLEDGED, err) < 0)
        goto done;
    double ended = clock_monotonic_seconds();
    result->downtime_seconds = ended - paused_at;
    result->total_seconds = ended - started;
    result->pages_sent = sender.progress.pages_sent;
    result->bytes_sent = sender.writer.bytes_written;
    status = 0;
done:
    if (status < 0) {
        /* The VM goes on here, unprotected by the move that failed. */
        if (logging)
            machine_dirty_log_enable(machine, false);
        if (paused)
            machine_resume(machine);
    } else if (!options->keep_dirty_log) {
        machine_dirty_log_enable(machine, false);
    }
    stream_writer_destroy(&sender.writer);
    free(bitmap);
    free(last_bitmap);
    free(pages);
    return status;
}

int migration_receive(struct machine *machine, int fd, struct error *err)
{
    struct stream_reader reader;
    if (stream_reader_init(&reader, fd, err) < 0)
        return -1;
    int status = migration_receive_with_reader(machine, &reader, err);
    stream_reader_destroy(&reader);
    return status;
}

int migration_receive_with_reader(struct machine *machine, struct stream_reader *reader, struct error *err)
{
    return migration_receive_with_companion(machine, reader, NULL, err);
}

int migration_receive_with_companion(struct machine *machine, struct stream_reader *reader,
                                     const struct migration_companion *companion, struct error *err)
{
    return migration_receive_between(machine, reader, companion, "destination", "source", err);
}

/* Tells the source why (REFUSAL, which its companion reads instead of an
 * answer), then fails with the same words here. */
static int refuse(struct stream_reader *reader, const char *text, struct error *err)
{
    struct stream_writer writer;
    struct error ignored;
    if (stream_writer_init(&writer, reader->fd, &ignored) == 0) {
        if (stream_write_refusal(&writer, text, &ignored) == 0)
            (void)stream_flush(&writer, &ignored);
        stream_writer_destroy(&writer);
    }
    return error_set(err, "%s", text);
}

/* The first run of a migration with a companion: the source's MACHINE and
 * its request, nothing else. A machine that differs is refused, naming
 * each difference on both sides. */
static int receive_machine(struct machine *machine, struct stream_reader *reader, const char *here_name,
                           const char *there_name, struct error *err)
{
    struct machine_description ours, theirs;
    bool described = false, requested = false;
    for (;;) {
        struct stream_record record;
        int got = stream_read_record(reader, &record, err);
        if (got < 0)
            return -1;
        if (got == 0)
            return error_set(err, "the %s closed the connection before describing its machine", there_name);
        if (record.type == STREAM_RECORD_CHECKPOINT_END)
            break;
        if (record.type == STREAM_RECORD_MACHINE) {
            stream_machine_fields(record.body, &theirs);
            described = true;
        } else if (record.type == STREAM_RECORD_CHECKPOINT_STATE &&
                   stream_get_u32(record.body) == MIGRATION_COMPANION_REQUEST) {
            requested = true;
        } else {
            requested = false;
            break;
        }
    }
    if (!requested)
        return error_set(err, "this side copies the disks, but the source does not send them: "
                              "migrate with --copy-disks");
    if (!described) {
        char text[200];
        snprintf(text, sizeof text, "the %s did not describe its machine (MACHINE): it runs another colo version",
                 there_name);
        return refuse(reader, text, err);
    }
    machine_describe(machine, &ours);
    char difference[STREAM_MAX_REFUSAL - 64], text[STREAM_MAX_REFUSAL];
    if (machine_description_difference(&ours, here_name, &theirs, there_name, difference, sizeof difference)) {
        snprintf(text, sizeof text, "the machines differ: %s", difference);
        return refuse(reader, text, err);
    }
    /* The header must agree with what the source described. */
    if (reader->ram_size != ours.ram_size || reader->configuration_hash != machine_configuration_hash(machine))
        return refuse(reader,
                      "the machines differ: the stream header's RAM size or configuration hash is not the "
                      "described machine's",
                      err);
    return 0;
}

static int accept_machine(int fd, struct error *err)
{
    struct stream_writer writer;
    if (stream_writer_init(&writer, fd, err) < 0)
        return -1;
    int status = stream_write_checkpoint_state(&writer, MIGRATION_MACHINE_ACCEPTED, err) < 0 ||
                         stream_flush(&writer, err) < 0
                     ? -1
                     : 0;
    stream_writer_destroy(&writer);
    return status;
}

int migration_receive_between(struct machine *machine, struct stream_reader *reader,
                              const struct migration_companion *companion, const char *here_name,
                              const char *there_name, struct error *err)
{
    int fd = reader->fd;
    uint64_t configuration_hash = machine_configuration_hash(machine);
    /* With a companion the machines are compared field by field in the
     * first run (receive_machine), so a refusal names what differs. */
    struct stream_header expected = { STREAM_VERSION, companion ? 0 : machine_ram_size(machine),
                                      companion ? 0 : configuration_hash };
    if (stream_read_header(reader, &expected, err) < 0)
        return -1;
    if (companion) {
        if (receive_machine(machine, reader, here_name, there_name, err) < 0 || accept_machine(fd, err) < 0)
            return -1;
        /* The answer stands for the run's acknowledgement. */
        if (companion->receive_start && companion->receive_start(companion->opaque, fd, err) < 0)
            return -1;
    }
    for (;;) {
        uint32_t terminator = 0;
        if (stream_receive(reader, machine, &terminator, err) < 0)
            return -1;
        bool requested = false;
        for (uint64_t i = 0; i < reader->checkpoint_states_received && i < STREAM_RECENT_CHECKPOINT_STATES; i++)
            requested |= reader->recent_checkpoint_states[i] == MIGRATION_COMPANION_REQUEST;
        if (requested)
            return error_set(err, companion ? "the source asked twice to copy the disks"
                                            : "the source copies its disks: this side must receive with --copy-disks");
        bool final = terminator == STREAM_RECORD_END;
        if (companion && companion->run_received) {
            if (companion->run_received(companion->opaque, reader, final, err) < 0)
                return -1;
        } else {
            size_t cursor = 0, length;
            const uint8_t *body;
            if (stream_received_disk_write_next(reader, &cursor, &body, &length))
                return error_set(err, "the source sends its disks, but this destination does not copy disks "
                                      "(colo migrate --copy-disks)");
        }
        if (final)
            break;
        char applied = MIGRATION_ROUND_APPLIED;
        if (write(fd, &applied, 1) != 1)
            return error_set_errno(err, "cannot acknowledge a migration round to the source");
    }
    char acknowledgement = MIGRATION_ACKNOWLEDGED;
    if (write(fd, &acknowledgement, 1) != 1)
        return error_set_errno(err, "cannot acknowledge the migration to the source");
    return 0;
}
