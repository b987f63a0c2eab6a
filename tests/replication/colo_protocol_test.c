/* The COLO loops against scripted peers over a socketpair that break off,
 * go silent, send the wrong message or corrupt the stream at each step.
 * Each real side must return an error naming the step and its state; the
 * secondary's state must be right for failover (SETUPED before the initial
 * copy completed, SUSPENDED while a checkpoint was incoming, RESUMED
 * otherwise), and a checkpoint that never arrived whole must leave the
 * SVM exactly as it was when it paused. The machines do not run here (no
 * run threads): RAM changes only by what the protocol does to it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "colo_primary.h"
#include "colo_protocol.h"
#include "colo_secondary.h"
#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

static const char *guest_elf;

static struct machine *create(void)
{
    return test_machine_create(
        &(struct test_machine_options){ .ram_size = 8u << 20, .deterministic_time = true, .elf = guest_elf });
}

static void open_pair(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
        perror("socketpair");
        exit(1);
    }
}

/* Makes the PVM differ from what was copied: `pages` pages of a pattern. */
static void scribble(struct machine *pvm, unsigned pages, uint8_t seed)
{
    static uint8_t page[GUEST_PAGE_SIZE];
    for (unsigned p = 0; p < pages; p++) {
        memset(page, seed + p, sizeof page);
        machine_ram_write(pvm, MACHINE_RAM_BASE + ((512ull + p * 3) << GUEST_PAGE_SHIFT), page, sizeof page);
    }
}

/* Writes a record header whose CRC cannot match: a corrupt record. */
static void write_corrupt_record(int fd, uint32_t type, uint32_t length)
{
    uint8_t record[24] = { 0 };
    memcpy(record, &type, 4);
    memcpy(record + 4, &length, 4);
    record[8] = 0xde, record[9] = 0xad, record[10] = 0xbe, record[11] = 0xef;
    size_t total = 16 + ((length + 7) & ~7u);
    if (write(fd, record, total) != (ssize_t)total)
        perror("write corrupt record");
}

static void send_or_complain(struct stream_writer *writer, enum colo_message message)
{
    struct error err;
    if (colo_send_message(writer, message, &err) < 0)
        fprintf(stderr, "script: %s\n", err.message);
}

static int expect(struct stream_reader *reader, enum colo_message message)
{
    struct error err;
    if (colo_wait_message(reader, message, 5000, "script", &err) < 0) {
        fprintf(stderr, "FAIL: script: %s\n", err.message);
        test_check_failures++;
        return -1;
    }
    return 0;
}

/* ---- the real secondary against a scripted primary ---- */

enum primary_script {
    PRIMARY_DROPS_DURING_COPY,
    PRIMARY_DROPS_BEFORE_NEW,
    PRIMARY_SENDS_WRONG_MESSAGE,
    PRIMARY_GOES_SILENT,
    PRIMARY_DROPS_AFTER_NEW,
    PRIMARY_DROPS_MID_PAGES,
    PRIMARY_CORRUPTS_BEFORE_END,
    PRIMARY_DROPS_AFTER_SVM_READY,
};

struct primary_case {
    enum primary_script script;
    const char *name;
    enum colo_secondary_state expected_state;
    const char *expected_error; /* a part of the secondary's error */
};

static const struct primary_case primary_cases[] = {
    { PRIMARY_DROPS_DURING_COPY, "drops during the initial copy", COLO_SECONDARY_SETUPED,
      "receiving the initial copy" },
    { PRIMARY_DROPS_BEFORE_NEW, "drops before CHECKPOINT_NEW", COLO_SECONDARY_RESUMED,
      "closed the connection while we waited for CHECKPOINT_NEW" },
    { PRIMARY_SENDS_WRONG_MESSAGE, "sends SVM_READY instead of NEW", COLO_SECONDARY_RESUMED,
      "waiting for CHECKPOINT_NEW, got CHECKPOINT_SVM_READY" },
    { PRIMARY_GOES_SILENT, "goes silent", COLO_SECONDARY_RESUMED, "timed out after 200 ms waiting for CHECKPOINT_NEW" },
    { PRIMARY_DROPS_AFTER_NEW, "drops after CHECKPOINT_NEW", COLO_SECONDARY_SUSPENDED, "checkpoint 1, " },
    { PRIMARY_DROPS_MID_PAGES, "drops in the middle of the pages", COLO_SECONDARY_SUSPENDED,
      "receiving the checkpoint" },
    { PRIMARY_CORRUPTS_BEFORE_END, "corrupts the record before CHECKPOINT_END", COLO_SECONDARY_SUSPENDED,
      "CRC mismatch" },
    /* Either sending SVM_RESUMED (checkpoint 1) or waiting for the next NEW
     * (checkpoint 2) fails, whichever notices the hang-up first. */
    { PRIMARY_DROPS_AFTER_SVM_READY, "drops after SVM_READY", COLO_SECONDARY_RESUMED,
      "secondary (RESUMED), checkpoint " },
};

struct suspended_snapshot {
    bool taken;
    uint64_t ram_hash;
    struct state_writer state;
};

static void on_suspended(void *opaque, struct machine *svm)
{
    struct suspended_snapshot *snapshot = opaque;
    snapshot->taken = true;
    snapshot->ram_hash = machine_ram_hash(svm);
    state_writer_free(&snapshot->state);
    state_writer_init(&snapshot->state);
    machine_save_state(svm, &snapshot->state);
}

/* Sends one whole checkpoint of the (paused, not running) PVM. */
static void send_whole_checkpoint(struct stream_writer *writer, struct machine *pvm)
{
    size_t words = guest_ram_bitmap_words(&pvm->ram);
    uint64_t *bitmap = calloc(words, sizeof *bitmap);
    uint64_t *pages = calloc(pvm->ram.page_count, sizeof *pages);
    machine_dirty_log_read_and_clear(pvm, bitmap);
    size_t count = 0;
    for (uint64_t page = 0; page < pvm->ram.page_count; page++)
        if (bitmap[page / 64] >> (page % 64) & 1)
            pages[count++] = page;
    struct error err;
    if (stream_write_pages(writer, pvm, pages, count, &err) < 0 || stream_write_machine_state(writer, pvm, &err) < 0 ||
        stream_write_checkpoint_end(writer, &err) < 0 || stream_flush(writer, &err) < 0)
        fprintf(stderr, "script: %s\n", err.message);
    free(bitmap);
    free(pages);
}

static void run_primary_case(const struct primary_case *test)
{
    struct machine *pvm = create();
    struct machine *svm = create();
    machine_pause(svm);
    int fds[2];
    open_pair(fds);
    int script_fd = fds[0];

    struct suspended_snapshot snapshot = { 0 };
    state_writer_init(&snapshot.state);
    struct colo_secondary_options options;
    colo_secondary_options_defaults(&options);
    options.message_timeout_ms = 2000;
    if (test->script == PRIMARY_GOES_SILENT)
        options.new_checkpoint_timeout_ms = 200;
    options.on_suspended = on_suspended;
    options.hook_opaque = &snapshot;
    static struct colo_secondary secondary;
    struct error err;
    if (colo_secondary_init(&secondary, svm, fds[1], &options, &err) < 0 ||
        colo_secondary_start(&secondary, &err) < 0) {
        fprintf(stderr, "FAIL: %s\n", err.message);
        exit(1);
    }

    struct stream_writer writer;
    struct stream_reader reader;
    stream_writer_init(&writer, script_fd, &err);
    stream_reader_init(&reader, script_fd, &err);
    bool joined = false;
    int result = 0;
    uint64_t pvm_hash_at_checkpoint = 0;

    if (test->script == PRIMARY_DROPS_DURING_COPY) {
        struct stream_header header = { STREAM_VERSION, pvm->ram.size, machine_configuration_hash(pvm) };
        uint64_t pages[10] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
        if (stream_write_header(&writer, &header, &err) < 0 || stream_write_pages(&writer, pvm, pages, 10, &err) < 0 ||
            stream_flush(&writer, &err) < 0)
            fprintf(stderr, "script: %s\n", err.message);
        goto hang_up;
    }
    struct migration_options migration;
    migration_options_defaults(&migration);
    migration.keep_dirty_log = true;
    struct migration_result migrated;
    if (migration_send(pvm, script_fd, &migration, &migrated, &err) < 0) {
        CHECK(false, "%s: the initial copy failed: %s", test->name, err.message);
        goto hang_up;
    }
    if (expect(&reader, COLO_CHECKPOINT_SVM_READY) < 0 || expect(&reader, COLO_CHECKPOINT_SVM_RESUMED) < 0)
        goto hang_up;

    switch (test->script) {
    case PRIMARY_DROPS_BEFORE_NEW:
        goto hang_up;
    case PRIMARY_SENDS_WRONG_MESSAGE:
        send_or_complain(&writer, COLO_CHECKPOINT_SVM_READY);
        break;
    case PRIMARY_GOES_SILENT:
        break;
    case PRIMARY_DROPS_AFTER_NEW:
        send_or_complain(&writer, COLO_CHECKPOINT_NEW);
        goto hang_up;
    default:
        break;
    }
    if (test->script == PRIMARY_DROPS_MID_PAGES || test->script == PRIMARY_CORRUPTS_BEFORE_END ||
        test->script == PRIMARY_DROPS_AFTER_SVM_READY) {
        send_or_complain(&writer, COLO_CHECKPOINT_NEW);
        if (expect(&reader, COLO_CHECKPOINT_SVM_SUSPENDED) < 0)
            goto hang_up;
        scribble(pvm, 40, (uint8_t)test->script);
        if (test->script == PRIMARY_DROPS_MID_PAGES) {
            uint64_t pages[20];
            for (unsigned p = 0; p < 20; p++)
                pages[p] = 512 + p * 3;
            if (stream_write_pages(&writer, pvm, pages, 20, &err) < 0 || stream_flush(&writer, &err) < 0)
                fprintf(stderr, "script: %s\n", err.message);
            goto hang_up;
        }
        if (test->script == PRIMARY_CORRUPTS_BEFORE_END) {
            uint64_t pages[40];
            for (unsigned p = 0; p < 40; p++)
                pages[p] = 512 + p * 3;
            if (stream_write_pages(&writer, pvm, pages, 40, &err) < 0 ||
                stream_write_machine_state(&writer, pvm, &err) < 0 || stream_flush(&writer, &err) < 0)
                fprintf(stderr, "script: %s\n", err.message);
            write_corrupt_record(script_fd, STREAM_RECORD_CHECKPOINT_END, 0);
            goto wait_for_secondary;
        }
        send_whole_checkpoint(&writer, pvm);
        pvm_hash_at_checkpoint = machine_ram_hash(pvm);
        if (expect(&reader, COLO_CHECKPOINT_SVM_READY) < 0)
            goto hang_up;
        /* The secondary will resume and report SVM_RESUMED into the void. */
        goto hang_up;
    }
wait_for_secondary:
    /* Wrong message, silence, corruption: the secondary ends by itself. */
    result = colo_secondary_join(&secondary, &err);
    joined = true;
hang_up:
    close(script_fd);
    if (!joined)
        result = colo_secondary_join(&secondary, &err);

    enum colo_secondary_state state = colo_secondary_state(&secondary);
    printf("secondary, primary %s: %s: %s\n", test->name, colo_secondary_state_name(state), err.message);
    CHECK(result < 0, "%s: the secondary did not fail", test->name);
    CHECK(state == test->expected_state, "%s: secondary in state %s, expected %s", test->name,
          colo_secondary_state_name(state), colo_secondary_state_name(test->expected_state));
    CHECK(strstr(err.message, colo_secondary_state_name(test->expected_state)) != NULL,
          "%s: the error does not name the state: %s", test->name, err.message);
    CHECK(strstr(err.message, test->expected_error) != NULL, "%s: the error does not say '%s': %s", test->name,
          test->expected_error, err.message);

    if (state == COLO_SECONDARY_SUSPENDED) {
        /* Nothing of the broken checkpoint reached the SVM. */
        CHECK(snapshot.taken, "%s: the SVM never suspended", test->name);
        CHECK(machine_ram_hash(svm) == snapshot.ram_hash, "%s: the SVM's RAM changed in the failed checkpoint",
              test->name);
        struct state_writer now;
        state_writer_init(&now);
        machine_save_state(svm, &now);
        CHECK(now.length == snapshot.state.length && memcmp(now.data, snapshot.state.data, now.length) == 0,
              "%s: the SVM's machine state changed in the failed checkpoint", test->name);
        state_writer_free(&now);
    }
    if (test->script == PRIMARY_DROPS_AFTER_SVM_READY)
        CHECK(machine_ram_hash(svm) == pvm_hash_at_checkpoint, "%s: the applied checkpoint is not the PVM", test->name);

    struct error failover_error;
    int failover = colo_secondary_failover(&secondary, &failover_error);
    if (state == COLO_SECONDARY_SETUPED) {
        CHECK(failover < 0 && strstr(failover_error.message, "SETUPED"), "%s: failover in SETUPED was not refused",
              test->name);
    } else {
        CHECK(failover == 0, "%s: failover failed: %s", test->name, failover_error.message);
        CHECK(!svm->ram.dirty_log_enabled && !svm->ram.preimages_enabled, "%s: failover left the dirty log on",
              test->name);
        CHECK(svm->pause_depth == 0, "%s: the SVM is still paused after failover (depth %u)", test->name,
              svm->pause_depth);
        if (state == COLO_SECONDARY_SUSPENDED)
            CHECK(machine_ram_hash(svm) == snapshot.ram_hash, "%s: failover rolled the SVM back", test->name);
    }

    colo_secondary_destroy(&secondary);
    stream_writer_destroy(&writer);
    stream_reader_destroy(&reader);
    close(fds[1]);
    state_writer_free(&snapshot.state);
    test_machine_destroy(pvm);
    test_machine_destroy(svm);
}

/* ---- the real primary against a scripted secondary ---- */

enum secondary_script {
    SECONDARY_DROPS_DURING_COPY,
    SECONDARY_DROPS_BEFORE_FIRST_READY,
    SECONDARY_DROPS_AFTER_NEW,
    SECONDARY_SENDS_WRONG_REPLY,
    SECONDARY_DROPS_BEFORE_SVM_READY,
    SECONDARY_CORRUPTS_SVM_RESUMED,
};

struct secondary_case {
    enum secondary_script script;
    const char *name;
    enum colo_primary_state expected_state;
    const char *expected_error;
};

static const struct secondary_case secondary_cases[] = {
    { SECONDARY_DROPS_DURING_COPY, "drops during the initial copy", COLO_PRIMARY_MIGRATING, "the initial copy" },
    { SECONDARY_DROPS_BEFORE_FIRST_READY, "drops before the first SVM_READY", COLO_PRIMARY_MIGRATING,
      "closed the connection while we waited for CHECKPOINT_SVM_READY" },
    { SECONDARY_DROPS_AFTER_NEW, "drops after CHECKPOINT_NEW", COLO_PRIMARY_CHECKPOINTING,
      "waited for CHECKPOINT_SVM_SUSPENDED" },
    { SECONDARY_SENDS_WRONG_REPLY, "answers NEW with SVM_READY", COLO_PRIMARY_CHECKPOINTING,
      "waiting for CHECKPOINT_SVM_SUSPENDED, got CHECKPOINT_SVM_READY" },
    { SECONDARY_DROPS_BEFORE_SVM_READY, "drops before SVM_READY", COLO_PRIMARY_CHECKPOINTING,
      "waited for CHECKPOINT_SVM_READY" },
    { SECONDARY_CORRUPTS_SVM_RESUMED, "corrupts SVM_RESUMED", COLO_PRIMARY_CHECKPOINTING,
      "waiting for CHECKPOINT_SVM_RESUMED: record" },
};

static void run_secondary_case(const struct secondary_case *test)
{
    struct machine *pvm = create();
    struct machine *svm = create();
    int fds[2];
    open_pair(fds);
    int script_fd = fds[1];

    struct colo_primary_options options;
    colo_primary_options_defaults(&options);
    options.max_interval_ms = 10;
    options.message_timeout_ms = 2000;
    static struct colo_primary primary;
    struct error err;
    if (colo_primary_init(&primary, pvm, fds[0], &options, &err) < 0 || colo_primary_start(&primary, &err) < 0) {
        fprintf(stderr, "FAIL: %s\n", err.message);
        exit(1);
    }
    struct stream_writer writer;
    struct stream_reader reader;
    stream_writer_init(&writer, script_fd, &err);
    stream_reader_init(&reader, script_fd, &err);
    bool joined = false;
    int result = 0;

    if (test->script == SECONDARY_DROPS_DURING_COPY) {
        uint8_t some[4096];
        if (read(script_fd, some, sizeof some) <= 0)
            fprintf(stderr, "script: nothing from the primary\n");
        goto hang_up;
    }
    if (migration_receive_with_reader(svm, &reader, &err) < 0) {
        CHECK(false, "%s: the initial copy failed: %s", test->name, err.message);
        goto hang_up;
    }
    if (test->script == SECONDARY_DROPS_BEFORE_FIRST_READY)
        goto hang_up;
    send_or_complain(&writer, COLO_CHECKPOINT_SVM_READY);
    send_or_complain(&writer, COLO_CHECKPOINT_SVM_RESUMED);
    if (expect(&reader, COLO_CHECKPOINT_NEW) < 0 || test->script == SECONDARY_DROPS_AFTER_NEW)
        goto hang_up;
    if (test->script == SECONDARY_SENDS_WRONG_REPLY) {
        send_or_complain(&writer, COLO_CHECKPOINT_SVM_READY);
        result = colo_primary_join(&primary, &err);
        joined = true;
        goto hang_up;
    }
    send_or_complain(&writer, COLO_CHECKPOINT_SVM_SUSPENDED);
    uint32_t terminator = 0;
    if (stream_receive(&reader, svm, &terminator, &err) < 0) {
        CHECK(false, "%s: the checkpoint did not arrive: %s", test->name, err.message);
        goto hang_up;
    }
    if (test->script == SECONDARY_DROPS_BEFORE_SVM_READY)
        goto hang_up;
    send_or_complain(&writer, COLO_CHECKPOINT_SVM_READY);
    write_corrupt_record(script_fd, STREAM_RECORD_CHECKPOINT_STATE, 4);
    result = colo_primary_join(&primary, &err);
    joined = true;
hang_up:
    close(script_fd);
    if (!joined)
        result = colo_primary_join(&primary, &err);

    enum colo_primary_state state = colo_primary_state(&primary);
    printf("primary, secondary %s: %s: %s\n", test->name, colo_primary_state_name(state), err.message);
    CHECK(result < 0, "%s: the primary did not fail", test->name);
    CHECK(state == test->expected_state, "%s: primary in state %s, expected %s", test->name,
          colo_primary_state_name(state), colo_primary_state_name(test->expected_state));
    CHECK(strstr(err.message, colo_primary_state_name(test->expected_state)) != NULL,
          "%s: the error does not name the state: %s", test->name, err.message);
    CHECK(strstr(err.message, test->expected_error) != NULL, "%s: the error does not say '%s': %s", test->name,
          test->expected_error, err.message);
    /* The PVM runs on, unprotected. */
    CHECK(pvm->pause_depth == 0, "%s: the PVM is left paused (depth %u)", test->name, pvm->pause_depth);
    CHECK(!pvm->ram.dirty_log_enabled, "%s: the PVM's dirty log is left on", test->name);

    colo_primary_destroy(&primary);
    stream_writer_destroy(&writer);
    stream_reader_destroy(&reader);
    close(fds[0]);
    test_machine_destroy(pvm);
    test_machine_destroy(svm);
}

/* The switchover's messages: their names, and the wait for one of a few
 * (what the secondary waits with between checkpoints, and the primary for
 * the switchover's answer). */
static void run_message_names_and_choices(void)
{
    CHECK(strcmp(colo_message_name(COLO_SWITCHOVER), "SWITCHOVER") == 0 &&
              strcmp(colo_message_name(COLO_SVM_TOOK_OVER), "SVM_TOOK_OVER") == 0 &&
              strcmp(colo_message_name(COLO_SVM_SWITCHOVER_REFUSED), "SVM_SWITCHOVER_REFUSED") == 0,
          "colo_message_name does not know the switchover's messages");
    CHECK(COLO_SWITCHOVER == 9 && COLO_SVM_TOOK_OVER == 10 && COLO_SVM_SWITCHOVER_REFUSED == 11,
          "the switchover's message ids moved (they are on the wire)");
    CHECK(COLO_PRECOPY_SENT == 12 && COLO_SVM_PRECOPY_RECEIVED == 13 &&
              strcmp(colo_message_name(COLO_PRECOPY_SENT), "PRECOPY_SENT") == 0 &&
              strcmp(colo_message_name(COLO_SVM_PRECOPY_RECEIVED), "SVM_PRECOPY_RECEIVED") == 0,
          "the pre-copy's messages moved or lost their names");
    CHECK(colo_message_name(14) == NULL, "id 14 has a name");
    int fds[2];
    open_pair(fds);
    struct stream_writer writer;
    struct stream_reader reader;
    struct error err;
    stream_writer_init(&writer, fds[0], &err);
    stream_reader_init(&reader, fds[1], &err);
    static const enum colo_message answers[] = { COLO_SVM_TOOK_OVER, COLO_SVM_SWITCHOVER_REFUSED };
    enum colo_message got = COLO_CHECKPOINT_NEW;
    send_or_complain(&writer, COLO_SVM_SWITCHOVER_REFUSED);
    CHECK(colo_wait_message_of(&reader, answers, 2, 1000, "test", &got, &err) == 0 &&
              got == COLO_SVM_SWITCHOVER_REFUSED,
          "SVM_SWITCHOVER_REFUSED was not taken as an answer (%s)", err.message);
    send_or_complain(&writer, COLO_SVM_TOOK_OVER);
    CHECK(colo_wait_message_of(&reader, answers, 2, 1000, "test", &got, &err) == 0 && got == COLO_SVM_TOOK_OVER,
          "SVM_TOOK_OVER was not taken as an answer (%s)", err.message);
    send_or_complain(&writer, COLO_CHECKPOINT_SVM_RESUMED);
    CHECK(colo_wait_message_of(&reader, answers, 2, 1000, "test", &got, &err) < 0 &&
              strstr(err.message, "waiting for SVM_TOOK_OVER, got CHECKPOINT_SVM_RESUMED") != NULL,
          "another message was not refused as an answer: %s", err.message);
    CHECK(colo_wait_message_of(&reader, answers, 2, 50, "test", &got, &err) < 0 &&
              strstr(err.message, "timed out after 50 ms waiting for SVM_TOOK_OVER") != NULL,
          "no answer did not time out: %s", err.message);
    stream_writer_destroy(&writer);
    stream_reader_destroy(&reader);
    close(fds[0]);
    close(fds[1]);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s store_forever.elf\n", argv[0]);
        return 2;
    }
    guest_elf = argv[1];
    signal(SIGPIPE, SIG_IGN);
    run_message_names_and_choices();
    for (size_t i = 0; i < sizeof primary_cases / sizeof primary_cases[0]; i++)
        run_primary_case(&primary_cases[i]);
    for (size_t i = 0; i < sizeof secondary_cases / sizeof secondary_cases[0]; i++)
        run_secondary_case(&secondary_cases[i]);
    if (test_check_failures) {
        fprintf(stderr, "%d test_check_failures\n", test_check_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
