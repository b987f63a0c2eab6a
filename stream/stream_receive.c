/* stream_receive: stage a run of records up to CHECKPOINT_END or END, then
 * apply it to the machine in one step, or not at all.
 *
 * Pages go into a staging store; the hart and device records are put back
 * together into the machine-state byte format (docs/machine-state.md).
 * Only when the terminator has arrived is anything applied: the state
 * first, because machine_load_state checks all of it and changes nothing
 * when it is bad, then the pages, which can no longer fail (their indices
 * were checked against RAM as they arrived). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "machine.h"
#include "stream.h"
#include "stream_internal.h"

/* The machine state of a checkpoint is a few KiB; a run that stages more
 * than this is not a machine state but a stream trying to exhaust memory. */
#define STAGING_MAX_STATE_BYTES (16u << 20)
/* Staging past this offset may use transparent huge pages (see below). */
#define STAGING_SMALL_PAGES_BYTES (2u << 20)

/* The pages of one run. A page sent twice keeps its slot and takes the
 * later contents, so a run never stages more pages than RAM has, and every
 * array below is sized by RAM once:
 *  - slot_of_page, one u32 per RAM page (0.1% of RAM), is simpler and
 *    faster than a hash map;
 *  - data is address space for a copy of all of RAM, reserved without
 *    backing: only the pages actually staged take memory, so a COLO
 *    checkpoint of a few hundred pages costs a few hundred pages, and the
 *    first migration round (all of RAM) costs one copy of RAM.
 * A first round stages hundreds of MiB into fresh memory, where a page
 * fault per 4 KiB costs more than the copy; beyond its first 2 MiB the
 * data area asks for transparent huge pages (one fault per 2 MiB). The
 * first 2 MiB stay small pages so that a small checkpoint does not pay for
 * clearing a whole huge page. */
struct page_staging {
    uint32_t *slot_of_page;     /* RAM page -> 1 + slot; 0: not staged */
    uint64_t *page_of_slot;     /* slot -> RAM page, in order of arrival */
    uint8_t *data;              /* slot s at data + s * 4096 */
    size_t data_length;
    size_t slot_count;
};

static int staging_init(struct page_staging *staging, uint64_t ram_pages, struct error *err)
{
    memset(staging, 0, sizeof *staging);
    if (ram_pages == 0 || ram_pages > UINT32_MAX)
        return error_set(err, "RAM of %llu pages cannot be staged", (unsigned long long)ram_pages);
    staging->slot_of_page = calloc(ram_pages, sizeof *staging->slot_of_page);
    staging->page_of_slot = malloc(ram_pages * sizeof *staging->page_of_slot);
    if (!staging->slot_of_page || !staging->page_of_slot) {
        free(staging->slot_of_page);
        free(staging->page_of_slot);
        return error_set(err, "out of memory for the page staging index");
    }
    staging->data_length = ram_pages * STREAM_PAGE_SIZE;
    void *data = mmap(NULL, staging->data_length, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (data == MAP_FAILED) {
        free(staging->slot_of_page);
        free(staging->page_of_slot);
        return error_set_errno(err, "cannot reserve %zu MiB to stage pages", staging->data_length >> 20);
    }
    staging->data = data;
    if (staging->data_length > STAGING_SMALL_PAGES_BYTES) {
        /* Only a hint: without huge pages staging is slower, not wrong. */
        (void)madvise(staging->data + STAGING_SMALL_PAGES_BYTES,
                      staging->data_length - STAGING_SMALL_PAGES_BYTES, MADV_HUGEPAGE);
    }
    return 0;
}

static void staging_destroy(struct page_staging *staging)
{
    if (staging->data)
        munmap(staging->data, staging->data_length);
    free(staging->page_of_slot);
    free(staging->slot_of_page);
    memset(staging, 0, sizeof *staging);
}

static uint8_t *staging_slot_data(const struct page_staging *staging, size_t slot)
{
    return staging->data + slot * STREAM_PAGE_SIZE;
}

/* Stages the pages of a checked PAGE_DATA body. */
static void staging_add_pages(struct page_staging *staging, const uint8_t *body)
{
    uint32_t count = stream_get_u32(body);
    const uint8_t *indices = body + STREAM_PAGE_DATA_PREFIX;
    const uint8_t *pages = indices + 8 * (size_t)count;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t page = stream_get_u64(indices + 8 * (size_t)i);
        size_t slot;
        if (staging->slot_of_page[page]) {
            slot = staging->slot_of_page[page] - 1;
        } else {
            slot = staging->slot_count++;
            staging->slot_of_page[page] = (uint32_t)(slot + 1);
            staging->page_of_slot[slot] = page;
        }
        memcpy(staging_slot_data(staging, slot), pages + (size_t)i * STREAM_PAGE_SIZE, STREAM_PAGE_SIZE);
    }
}

/* Appends a checked HART_STATE or DEVICE_STATE body to the machine state
 * being put back together. */
static int stage_state_record(struct state_writer *state, const struct stream_record *record,
                              struct error *err)
{
    if (record->type == STREAM_RECORD_HART_STATE) {
        /* Already a whole section. */
        state_put_bytes(state, record->body, record->length);
    } else {
        /* {id, version, body} -> {id, version, body length, body} */
        state_put_bytes(state, record->body, 8);
        state_put_u32(state, record->length - 8);
        state_put_bytes(state, record->body + 8, record->length - 8);
    }
    if (state->out_of_memory)
        return error_set(err, "out of memory staging the machine state");
    if (state->length > STAGING_MAX_STATE_BYTES)
        return error_set(err, "the machine state in the stream is larger than %u MiB",
                         STAGING_MAX_STATE_BYTES >> 20);
    return 0;
}

static void note_checkpoint_state(struct stream_reader *reader, uint32_t id)
{
    const size_t kept = STREAM_RECENT_CHECKPOINT_STATES;
    if (reader->checkpoint_states_received < kept) {
        reader->recent_checkpoint_states[reader->checkpoint_states_received] = id;
    } else {
        memmove(reader->recent_checkpoint_states, reader->recent_checkpoint_states + 1,
                (kept - 1) * sizeof reader->recent_checkpoint_states[0]);
        reader->recent_checkpoint_states[kept - 1] = id;
    }
    reader->checkpoint_states_received++;
}

/* Applies a whole run: state (which may refuse), then pages. */
static int apply(struct machine *machine, const struct state_writer *state,
                 const struct page_staging *staging, struct error *err)
{
    if (state->length > 0) {
        struct error load_error;
        if (machine_load_state(machine, state->data, state->length, &load_error) < 0)
            return error_set(err, "nothing applied: the machine state in the stream was rejected: %s",
                             load_error.message);
    }
    for (size_t slot = 0; slot < staging->slot_count; slot++) {
        uint64_t page = staging->page_of_slot[slot];
        /* Cannot fail: every index was checked against this RAM size. */
        if (machine_ram_write(machine, machine->ram.base + page * STREAM_PAGE_SIZE,
                              staging_slot_data(staging, slot), STREAM_PAGE_SIZE) < 0)
            return error_set(err, "page %llu could not be written to RAM", (unsigned long long)page);
    }
    return 0;
}

int stream_receive(struct stream_reader *reader, struct machine *machine, uint32_t *terminator,
                   struct error *err)
{
    return stream_receive_with_hook(reader, machine, terminator, NULL, NULL, err);
}

int stream_receive_with_hook(struct stream_reader *reader, struct machine *machine, uint32_t *terminator,
                             stream_before_apply before_apply, void *opaque, struct error *err)
{
    reader->checkpoint_states_received = 0;
    if (reader->ram_size == 0)
        return error_set(err, "stream_receive before the stream header was read");
    if (reader->ram_size != machine->ram.size)
        return error_set(err, "the stream carries %llu bytes of RAM, the machine has %llu",
                         (unsigned long long)reader->ram_size, (unsigned long long)machine->ram.size);

    struct page_staging staging;
    if (staging_init(&staging, machine->ram.page_count, err) < 0)
        return -1;
    struct state_writer state;
    state_writer_init(&state);
    int result = -1;
    for (;;) {
        struct stream_record record;
        int got = stream_read_record(reader, &record, err);
        if (got < 0)
            break;
        if (got == 0) {
            error_set(err, "stream ended before CHECKPOINT_END/END (after %llu records)",
                      (unsigned long long)reader->records_read);
            break;
        }
        if (record.type == STREAM_RECORD_PAGE_DATA) {
            staging_add_pages(&staging, record.body);
        } else if (record.type == STREAM_RECORD_HART_STATE || record.type == STREAM_RECORD_DEVICE_STATE) {
            if (stage_state_record(&state, &record, err) < 0)
                break;
        } else if (record.type == STREAM_RECORD_CHECKPOINT_STATE) {
            /* A protocol message inside a run: noted for the caller. */
            note_checkpoint_state(reader, stream_get_u32(record.body));
        } else {
            /* CHECKPOINT_END or END: the run is whole. */
            if (before_apply && before_apply(opaque, machine, err) < 0)
                break;
            if (apply(machine, &state, &staging, err) == 0) {
                *terminator = record.type;
                result = 0;
            }
            break;
        }
    }
    state_writer_free(&state);
    staging_destroy(&staging);
    return result;
}
