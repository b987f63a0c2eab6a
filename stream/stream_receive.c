/* stream_receive: stage a run of records up to CHECKPOINT_END or END, then
 * apply it to the machine in one step, or not at all.
 *
 * Pages go into a staging store (zero pages as a mark only); the hart and
 * device records are put back together into the machine-state byte format
 * (docs/machine-state.md). Only when the terminator has arrived is
 * anything applied: the state first, because machine_load_state checks all
 * of it and changes nothing when it is bad, then the pages, which can no
 * longer fail (their indices were checked against RAM as they arrived). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "machine.h"
#include "stream.h"
#include "stream_internal.h"

/* The machine state of a checkpoint is a few KiB; a run that stages more
 * than this is not a machine state but a stream trying to exhaust memory. */
#define STAGING_MAX_STATE_BYTES (16u << 20)
/* OUTPUT records of one run: a COLO primary holds at most 64 MiB. */
#define STAGING_MAX_OUTPUT_BYTES (64u << 20)
/* A sender writes one TCP_SHIFT record per run; a few are allowed. */
#define STAGING_MAX_TCP_SHIFT_BYTES \
    (4u * (STREAM_TCP_SHIFT_PREFIX + STREAM_TCP_SHIFT_ENTRY_LENGTH * STREAM_MAX_TCP_SHIFT_ENTRIES))
/* DISK_WRITE records of one run: an epoch's guest disk writes. The
 * consumer (the secondary's disk) bounds its own buffer; this only stops
 * a stream from exhausting memory before the run is whole. */
#define STAGING_MAX_DISK_WRITE_BYTES (256u << 20)
/* Staging past this offset may use transparent huge pages (see below). */
#define STAGING_SMALL_PAGES_BYTES (2u << 20)
/* Staged data up to this size stays backed between runs (a COLO
 * checkpoint's thousands of pages would otherwise be faulted in again each
 * time, partly while the VM is paused); beyond it, memory goes back to the
 * kernel after the run (a migration's full copy). */
#define STAGING_KEPT_BYTES (32u << 20)

/* zero_flags of a page: its last copy in the run was a PAGE_ZERO; it is in
 * zero_pages (once, however often it was sent). */
#define STAGING_ZERO_LAST 1u
#define STAGING_ZERO_LISTED 2u

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
 * clearing a whole huge page.
 *
 * The staging belongs to the reader and lives from run to run: setting up
 * and tearing down these arrays and the reservation cost a few hundred
 * microseconds, which a COLO checkpoint or a migration's last round would
 * otherwise pay while the VM is paused. Between runs only the entries the
 * run used are cleared, and staged data past STAGING_KEPT_BYTES goes back
 * to the kernel. */
struct stream_page_staging {
    uint64_t ram_pages;
    uint32_t *slot_of_page; /* RAM page -> 1 + slot; 0: not staged */
    uint64_t *page_of_slot; /* slot -> RAM page, in order of arrival */
    uint8_t *zero_flags;    /* RAM page -> STAGING_ZERO_* bits */
    uint64_t *zero_pages;   /* pages sent as PAGE_ZERO, each once */
    size_t zero_count;
    uint8_t *data; /* slot s at data + s * 4096 */
    size_t data_length;
    size_t slot_count;
};

void stream_page_staging_free(struct stream_page_staging *staging)
{
    if (!staging)
        return;
    if (staging->data)
        munmap(staging->data, staging->data_length);
    free(staging->slot_of_page);
    free(staging->page_of_slot);
    free(staging->zero_flags);
    free(staging->zero_pages);
    free(staging);
}

static struct stream_page_staging *staging_create(uint64_t ram_pages, struct error *err)
{
    if (ram_pages == 0 || ram_pages > UINT32_MAX) {
        error_set(err, "RAM of %llu pages cannot be staged", (unsigned long long)ram_pages);
        return NULL;
    }
    struct stream_page_staging *staging = calloc(1, sizeof *staging);
    if (!staging) {
        error_set(err, "out of memory for the page staging");
        return NULL;
    }
    staging->ram_pages = ram_pages;
    staging->slot_of_page = calloc(ram_pages, sizeof *staging->slot_of_page);
    staging->page_of_slot = malloc(ram_pages * sizeof *staging->page_of_slot);
    staging->zero_flags = calloc(ram_pages, sizeof *staging->zero_flags);
    staging->zero_pages = malloc(ram_pages * sizeof *staging->zero_pages);
    if (!staging->slot_of_page || !staging->page_of_slot || !staging->zero_flags || !staging->zero_pages) {
        stream_page_staging_free(staging);
        error_set(err, "out of memory for the page staging index");
        return NULL;
    }
    staging->data_length = ram_pages * STREAM_PAGE_SIZE;
    void *data = mmap(NULL, staging->data_length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
    if (data == MAP_FAILED) {
        error_set_errno(err, "cannot reserve %zu MiB to stage pages", staging->data_length >> 20);
        stream_page_staging_free(staging);
        return NULL;
    }
    staging->data = data;
    if (staging->data_length > STAGING_SMALL_PAGES_BYTES) {
        /* Only a hint: without huge pages staging is slower, not wrong. */
        (void)madvise(staging->data + STAGING_SMALL_PAGES_BYTES, staging->data_length - STAGING_SMALL_PAGES_BYTES,
                      MADV_HUGEPAGE);
    }
    return staging;
}

/* Empties the staging for the next run: clears only what this run set. */
static void staging_reset(struct stream_page_staging *staging)
{
    for (size_t slot = 0; slot < staging->slot_count; slot++)
        staging->slot_of_page[staging->page_of_slot[slot]] = 0;
    for (size_t i = 0; i < staging->zero_count; i++)
        staging->zero_flags[staging->zero_pages[i]] = 0;
    size_t used = staging->slot_count * STREAM_PAGE_SIZE;
    if (used > STAGING_KEPT_BYTES)
        (void)madvise(staging->data + STAGING_KEPT_BYTES, used - STAGING_KEPT_BYTES, MADV_DONTNEED);
    staging->slot_count = 0;
    staging->zero_count = 0;
}

static uint8_t *staging_slot_data(const struct stream_page_staging *staging, size_t slot)
{
    return staging->data + slot * STREAM_PAGE_SIZE;
}

/* Stages the pages of a checked PAGE_DATA body. */
static void staging_add_pages(struct stream_page_staging *staging, const uint8_t *body)
{
    uint32_t count = stream_get_u32(body);
    const uint8_t *indices = body + STREAM_PAGE_DATA_PREFIX;
    const uint8_t *pages = indices + 8 * (size_t)count;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t page = stream_get_u64(indices + 8 * (size_t)i);
        size_t slot;
        staging->zero_flags[page] &= (uint8_t)~STAGING_ZERO_LAST;
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

/* Marks the pages of a checked PAGE_ZERO body. A slot the page has from
 * an earlier PAGE_DATA of the run stays (a later PAGE_DATA reuses it), but
 * apply skips it while the zero copy is the later one. */
static void staging_add_zero_pages(struct stream_page_staging *staging, const uint8_t *body)
{
    uint32_t count = stream_get_u32(body);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t page = stream_get_u64(body + STREAM_PAGE_DATA_PREFIX + 8 * (size_t)i);
        if (!(staging->zero_flags[page] & STAGING_ZERO_LISTED))
            staging->zero_pages[staging->zero_count++] = page;
        staging->zero_flags[page] = STAGING_ZERO_LAST | STAGING_ZERO_LISTED;
    }
}

/* Appends a checked HART_STATE or DEVICE_STATE body to the machine state
 * being put back together. */
static int stage_state_record(struct state_writer *state, const struct stream_record *record, struct error *err)
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
        return error_set(err, "the machine state in the stream is larger than %u MiB", STAGING_MAX_STATE_BYTES >> 20);
    return 0;
}

/* Keeps a checked body for the caller, within `limit` bytes for the run. */
static int stage_record(struct stream_staged_records *staged, size_t limit, const char *what,
                        const struct stream_record *record, struct error *err)
{
    size_t needed = staged->length + 4 + record->length;
    if (needed > limit)
        return error_set(err, "the run carries more than %zu MiB of %s", limit >> 20, what);
    if (needed > staged->capacity) {
        size_t capacity = staged->capacity ? staged->capacity : 64 * 1024;
        while (capacity < needed)
            capacity *= 2;
        uint8_t *data = realloc(staged->data, capacity);
        if (!data)
            return error_set(err, "out of memory staging the run's %s", what);
        staged->data = data;
        staged->capacity = capacity;
    }
    stream_put_u32(staged->data + staged->length, record->length);
    memcpy(staged->data + staged->length + 4, record->body, record->length);
    staged->length = needed;
    staged->count++;
    return 0;
}

/* Forgets the bodies (keeps the memory). */
static void staged_records_clear(struct stream_staged_records *staged)
{
    staged->length = 0;
    staged->count = 0;
}

static bool next_staged_record(const struct stream_staged_records *staged, size_t *cursor, const uint8_t **body,
                               size_t *length)
{
    if (*cursor + 4 > staged->length)
        return false;
    *length = stream_get_u32(staged->data + *cursor);
    *body = staged->data + *cursor + 4;
    *cursor += 4 + *length;
    return true;
}

bool stream_received_output_next(const struct stream_reader *reader, size_t *cursor, const uint8_t **body,
                                 size_t *length)
{
    return next_staged_record(&reader->output, cursor, body, length);
}

bool stream_received_disk_write_next(const struct stream_reader *reader, size_t *cursor, const uint8_t **body,
                                     size_t *length)
{
    return next_staged_record(&reader->disk_writes, cursor, body, length);
}

bool stream_received_tcp_shift_next(const struct stream_reader *reader, size_t *cursor, const uint8_t **body,
                                    size_t *length)
{
    return next_staged_record(&reader->tcp_shifts, cursor, body, length);
}

void stream_tcp_shift_entry_fields(const uint8_t *bytes, struct stream_tcp_shift_entry *entry)
{
    const uint8_t *fields = bytes + STREAM_TCP_SHIFT_KEY_LENGTH;
    *entry = (struct stream_tcp_shift_entry){
        .key = bytes,
        .flags = stream_get_u32(fields),
        .isn = stream_get_u32(fields + 4),
        .offset = stream_get_u32(fields + 8),
        .syn_timestamp = stream_get_u32(fields + 12),
        .timestamp_offset = stream_get_u32(fields + 16),
    };
}

void stream_disk_write_fields(const uint8_t *body, size_t length, struct stream_disk_write *fields)
{
    *fields = (struct stream_disk_write){
        .disk = stream_get_u32(body),
        .offset = stream_get_u64(body + 8),
        .data = body + STREAM_DISK_WRITE_PREFIX,
        .length = length - STREAM_DISK_WRITE_PREFIX,
    };
}

void stream_disk_hashes_fields(const uint8_t *body, size_t length, struct stream_disk_hashes *fields)
{
    *fields = (struct stream_disk_hashes){
        .disk = stream_get_u32(body),
        .chunk_size = stream_get_u32(body + 4),
        .disk_size = stream_get_u64(body + 8),
        .first_chunk = stream_get_u64(body + 16),
        .hashes = body + STREAM_DISK_HASHES_PREFIX,
        .count = (length - STREAM_DISK_HASHES_PREFIX) / STREAM_DISK_HASH_SIZE,
    };
}

void stream_disk_history_fields(const uint8_t *body, struct stream_disk_history *fields)
{
    fields->disk = stream_get_u32(body);
    fields->flags = stream_get_u32(body + 4);
    fields->disk_size = stream_get_u64(body + 8);
    memcpy(fields->protection, body + 16, 16);
    fields->checkpoint = stream_get_u64(body + 32);
}

void stream_machine_fields(const uint8_t *body, struct machine_description *description)
{
    memset(description, 0, sizeof *description);
    description->ram_size = stream_get_u64(body);
    description->hart_count = stream_get_u32(body + 8);
    description->disk_count = stream_get_u32(body + 12);
    description->nic_count = stream_get_u32(body + 16);
    description->has_rng = stream_get_u32(body + 20) & 1;
    for (unsigned i = 0; i < description->disk_count && i < MACHINE_MAX_DISKS; i++) {
        description->disk_sizes[i] = stream_get_u64(body + 24 + 16 * i);
        description->disk_read_only[i] = stream_get_u32(body + 32 + 16 * i) != 0;
    }
    for (unsigned i = 0; i < description->nic_count && i < MACHINE_MAX_NICS; i++)
        memcpy(description->nic_macs[i], body + 88 + 8 * i, 6);
}

void stream_refusal_text(const uint8_t *body, size_t length, char *text, size_t size)
{
    if (!size)
        return;
    size_t copied = length < size - 1 ? length : size - 1;
    memcpy(text, body, copied);
    text[copied] = '\0';
}

void stream_output_frame_fields(const uint8_t *body, size_t length, struct stream_output_frame *fields)
{
    *fields = (struct stream_output_frame){
        .nic = stream_get_u32(body),
        .header = body + 8,
        .frame = body + STREAM_OUTPUT_PREFIX,
        .length = length - STREAM_OUTPUT_PREFIX,
    };
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
static int apply(struct machine *machine, const struct state_writer *state, const struct stream_page_staging *staging,
                 struct error *err)
{
    if (state->length > 0) {
        if (machine_load_state(machine, state->data, state->length, err) < 0)
            return error_prefix(err, "nothing applied: the machine state in the stream was rejected: ");
    }
    for (size_t slot = 0; slot < staging->slot_count; slot++) {
        uint64_t page = staging->page_of_slot[slot];
        if (staging->zero_flags[page] & STAGING_ZERO_LAST)
            continue; /* a later PAGE_ZERO replaced this copy */
        /* Cannot fail: every index was checked against this RAM size. */
        if (machine_ram_write(machine, MACHINE_RAM_BASE + page * STREAM_PAGE_SIZE, staging_slot_data(staging, slot),
                              STREAM_PAGE_SIZE) < 0)
            return error_set(err, "page %llu could not be written to RAM", (unsigned long long)page);
    }
    /* Zero pages, in runs of consecutive indices (a first round sends
     * them in order, so most of RAM clears in a few calls). */
    for (size_t i = 0; i < staging->zero_count;) {
        uint64_t first = staging->zero_pages[i++];
        if (!(staging->zero_flags[first] & STAGING_ZERO_LAST))
            continue; /* sent again with data later in the run */
        uint64_t count = 1;
        while (i < staging->zero_count && staging->zero_pages[i] == first + count &&
               (staging->zero_flags[first + count] & STAGING_ZERO_LAST)) {
            count++;
            i++;
        }
        if (machine_ram_clear_pages(machine, first, count) < 0)
            return error_set(err, "pages %llu..%llu could not be cleared", (unsigned long long)first,
                             (unsigned long long)(first + count - 1));
    }
    return 0;
}

bool stream_receive_writes_page(const struct stream_reader *reader, uint64_t page)
{
    const struct stream_page_staging *staging = reader->staging;
    return staging && page < staging->ram_pages &&
           (staging->slot_of_page[page] || (staging->zero_flags[page] & STAGING_ZERO_LISTED));
}

int stream_receive(struct stream_reader *reader, struct machine *machine, uint32_t *terminator, struct error *err)
{
    return stream_receive_with_hook(reader, machine, terminator, NULL, NULL, err);
}

int stream_receive_with_hook(struct stream_reader *reader, struct machine *machine, uint32_t *terminator,
                             stream_before_apply before_apply, void *opaque, struct error *err)
{
    reader->checkpoint_states_received = 0;
    staged_records_clear(&reader->output);
    staged_records_clear(&reader->disk_writes);
    staged_records_clear(&reader->tcp_shifts);
    reader->mirrored_known = false;
    reader->disk_count = machine_disk_count(machine);
    if (reader->ram_size == 0)
        return error_set(err, "stream_receive before the stream header was read");
    if (reader->ram_size != machine_ram_size(machine))
        return error_set(err, "the stream carries %llu bytes of RAM, the machine has %llu",
                         (unsigned long long)reader->ram_size, (unsigned long long)machine_ram_size(machine));
    if (reader->staging && reader->staging->ram_pages != machine_ram_page_count(machine)) {
        stream_page_staging_free(reader->staging);
        reader->staging = NULL;
    }
    if (!reader->staging && !(reader->staging = staging_create(machine_ram_page_count(machine), err)))
        return -1;
    struct stream_page_staging *staging = reader->staging;

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
            staging_add_pages(staging, record.body);
        } else if (record.type == STREAM_RECORD_PAGE_ZERO) {
            staging_add_zero_pages(staging, record.body);
        } else if (record.type == STREAM_RECORD_HART_STATE || record.type == STREAM_RECORD_DEVICE_STATE) {
            if (stage_state_record(&state, &record, err) < 0)
                break;
        } else if (record.type == STREAM_RECORD_OUTPUT) {
            if (stage_record(&reader->output, STAGING_MAX_OUTPUT_BYTES, "output", &record, err) < 0)
                break;
        } else if (record.type == STREAM_RECORD_TCP_SHIFT) {
            if (stage_record(&reader->tcp_shifts, STAGING_MAX_TCP_SHIFT_BYTES, "tcp shift", &record, err) < 0)
                break;
        } else if (record.type == STREAM_RECORD_MIRRORED) {
            reader->mirrored_known = true;
            reader->mirrored_frames = stream_get_u64(record.body);
        } else if (record.type == STREAM_RECORD_DISK_WRITE) {
            /* Kept for the caller, or handed over now; nothing writes it
             * to the machine. */
            if (reader->disk_write_sink) {
                if (reader->disk_write_sink(reader->disk_write_sink_opaque, record.body, record.length, err) < 0)
                    break;
            } else if (stage_record(&reader->disk_writes, STAGING_MAX_DISK_WRITE_BYTES, "disk writes", &record, err) <
                       0) {
                break;
            }
        } else if (record.type == STREAM_RECORD_DISK_HASHES || record.type == STREAM_RECORD_REFUSAL ||
                   record.type == STREAM_RECORD_DISK_HISTORY) {
            /* Only ever sent the other way, outside any run. */
            reader->rejected_records++;
            error_set(err, "record %llu (%s): not allowed inside a run", (unsigned long long)reader->records_read,
                      stream_record_type_name(record.type));
            break;
        } else if (record.type == STREAM_RECORD_MACHINE) {
            /* For a receiver that compares machines before the copy
             * (migration_receive_with_companion); the header's hash is
             * what this one goes by. */
        } else if (record.type == STREAM_RECORD_CHECKPOINT_STATE) {
            /* A protocol message inside a run: noted for the caller. */
            uint32_t id = stream_get_u32(record.body);
            note_checkpoint_state(reader, id);
            if (reader->message_sink && reader->message_sink(reader->message_sink_opaque, id, err) < 0)
                break;
        } else {
            /* CHECKPOINT_END or END: the run is whole. */
            if (before_apply && before_apply(opaque, machine, err) < 0)
                break;
            if (apply(machine, &state, staging, err) == 0) {
                *terminator = record.type;
                result = 0;
            }
            break;
        }
    }
    state_writer_free(&state);
    staging_reset(staging);
    if (result < 0) {
        /* The output and disk writes of a run that was not applied are
         * not the caller's. */
        staged_records_clear(&reader->output);
        staged_records_clear(&reader->disk_writes);
        staged_records_clear(&reader->tcp_shifts);
        reader->mirrored_known = false;
    }
    return result;
}
