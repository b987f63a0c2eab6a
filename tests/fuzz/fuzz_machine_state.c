/* libFuzzer target: machine_load_state must reject any malformed state
 * with an error and leave the machine unchanged; a state it accepts,
 * saved again, must load and save to exactly the same bytes.
 *
 * With COLO_FUZZ_WRITE_SEED=FILE in the environment, the first call writes
 * a valid state to FILE (the seed corpus) and exits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "machine.h"
#include "test_machine.h"

static struct machine *machine;
static bool created;
/* The state the machine starts every input from. An accepted input may
 * switch it to real-time mode, where a saved mtime follows the host clock
 * and two saves differ with nothing wrong; every input starts again from
 * this deterministic baseline, and the round-trip check below only runs
 * for deterministic states. */
static struct state_writer baseline;

static void save(struct state_writer *writer)
{
    state_writer_init(writer);
    machine_save_state(machine, writer);
    if (writer->out_of_memory)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!created) {
        machine = test_machine_create(&(struct test_machine_options){
            .ram_size = 1u << 20, .deterministic_time = true /* saved mtime must not drift */ });
        created = true;
        save(&baseline);
        const char *seed = getenv("COLO_FUZZ_WRITE_SEED");
        if (seed) {
            struct state_writer writer;
            save(&writer);
            FILE *file = fopen(seed, "wb");
            if (!file || fwrite(writer.data, 1, writer.length, file) != writer.length || fclose(file))
                abort();
            exit(0);
        }
    }
    struct error err;
    if (machine_load_state(machine, baseline.data, baseline.length, &err) < 0)
        abort();
    struct state_writer before;
    save(&before);
    int result = machine_load_state(machine, data, size, &err);
    struct state_writer after;
    save(&after);
    if (result < 0) {
        /* Rejected: nothing may have changed. */
        if (before.length != after.length || memcmp(before.data, after.data, before.length) != 0)
            abort();
    } else {
        /* Accepted: loading may normalise derived fields (mip's timer bits
         * follow the CLINT, mtime follows the clock), but what it saves must
         * load again, and in deterministic mode save to exactly the same
         * bytes (in real-time mode mtime moves between two saves). */
        bool deterministic = machine_get_config(machine)->deterministic_time;
        if (machine_load_state(machine, after.data, after.length, &err) < 0) {
            fprintf(stderr, "a state saved after loading is rejected: %s\n", err.message);
            abort();
        }
        struct state_writer again;
        save(&again);
        if (deterministic && (again.length != after.length || memcmp(again.data, after.data, after.length) != 0)) {
            fprintf(stderr, "saved state does not round-trip\n");
            abort();
        }
        state_writer_free(&again);
    }
    state_writer_free(&before);
    state_writer_free(&after);
    return 0;
}
