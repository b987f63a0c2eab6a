/* The PLIC of the QEMU virt machine: 95 sources, two contexts for hart 0.
 *
 * Each source has a level-triggered gateway. While a source is not in
 * service its pending bit follows its line: a line going high makes it
 * pending, a line going low withdraws a request nobody has claimed yet (so
 * a driver is not sent to a device that has already dropped its interrupt,
 * e.g. a UART whose transmitter interrupt was cleared by a THR write).
 * Claiming moves a source from pending to in service; while it is in
 * service the gateway forwards nothing more. Completing it ends the
 * service and, if the line is still high, makes it pending again.
 *
 * Pending and in-service are global (any context may claim a source);
 * enables and thresholds are per context. */
#include "plic.h"

#include <string.h>

#include "machine_devices.h"

/* Register regions (offsets from the PLIC base). */
#define PLIC_PRIORITY_BASE 0x000000u
#define PLIC_PENDING_BASE 0x001000u
#define PLIC_ENABLE_BASE 0x002000u
#define PLIC_ENABLE_STRIDE 0x80u
#define PLIC_CONTEXT_BASE 0x200000u
#define PLIC_CONTEXT_STRIDE 0x1000u
#define PLIC_THRESHOLD_OFFSET 0x0u
#define PLIC_CLAIM_OFFSET 0x4u

#define PLIC_MAX_PRIORITY 7u /* priorities and thresholds are 3 bits */

/* Source 0 does not exist: its bit in every bitmap is hardwired to 0. */
#define PLIC_SOURCE_ZERO_BIT 1u

#define PLIC_SECTION_ID 0x504c4943u /* "PLIC" */
#define PLIC_SECTION_VERSION 1u

static bool bit_is_set(const uint32_t *words, unsigned source)
{
    return (words[source / 32] >> (source % 32)) & 1u;
}

static void set_bit(uint32_t *words, unsigned source, bool value)
{
    uint32_t mask = 1u << (source % 32);
    if (value)
        words[source / 32] |= mask;
    else
        words[source / 32] &= ~mask;
}

/* The source a claim by context would return: the highest-priority
 * pending, enabled source whose priority is above the context's threshold
 * (ties go to the lowest source number), or 0 if there is none. */
static unsigned best_source(const struct plic_state *state, unsigned context)
{
    unsigned best = 0;
    uint32_t best_priority = state->threshold[context];
    for (unsigned word = 0; word < PLIC_WORDS; word++) {
        uint32_t candidates = state->pending[word] & state->enable[context][word];
        while (candidates) {
            unsigned source = word * 32 + (unsigned)__builtin_ctz(candidates);
            candidates &= candidates - 1;
            /* Strictly greater: a priority of 0 never beats a threshold of
             * 0, and an equal priority keeps the lower-numbered source. */
            if (state->priority[source] > best_priority) {
                best = source;
                best_priority = state->priority[source];
            }
        }
    }
    return best;
}

bool plic_context_interrupting(const struct plic *plic, unsigned context)
{
    if (context >= PLIC_CONTEXT_COUNT)
        return false;
    return best_source(&plic->state, context) != 0;
}

/* Drives both outputs from the current state. Called after every change
 * that can move them; the machine ignores calls that change nothing. */
static void update_outputs(struct plic *plic)
{
    for (unsigned context = 0; context < PLIC_CONTEXT_COUNT; context++)
        machine_set_external_interrupt(plic->machine, context, plic_context_interrupting(plic, context));
}

void plic_init(struct plic *plic, struct machine *machine)
{
    memset(plic, 0, sizeof *plic);
    plic->machine = machine;
}

void plic_set_line(struct plic *plic, unsigned source, bool high)
{
    if (source == 0 || source >= PLIC_SOURCE_COUNT)
        return;
    struct plic_state *state = &plic->state;
    if (bit_is_set(state->line_level, source) == high)
        return;
    set_bit(state->line_level, source, high);
    if (!bit_is_set(state->in_service, source))
        set_bit(state->pending, source, high);
    update_outputs(plic);
}

static uint32_t claim(struct plic *plic, unsigned context)
{
    struct plic_state *state = &plic->state;
    unsigned source = best_source(state, context);
    if (source == 0)
        return 0;
    set_bit(state->pending, source, false);
    set_bit(state->in_service, source, true);
    update_outputs(plic);
    return source;
}

static void complete(struct plic *plic, uint32_t source)
{
    struct plic_state *state = &plic->state;
    /* An id that is not in service (never claimed, already completed, or
     * out of range) is ignored, as the PLIC specification requires. */
    if (source == 0 || source >= PLIC_SOURCE_COUNT || !bit_is_set(state->in_service, source))
        return;
    set_bit(state->in_service, source, false);
    if (bit_is_set(state->line_level, source))
        set_bit(state->pending, source, true);
    update_outputs(plic);
}

/* Where an access lands. */
enum plic_register_kind {
    PLIC_REGISTER_PRIORITY,
    PLIC_REGISTER_PENDING,
    PLIC_REGISTER_ENABLE,
    PLIC_REGISTER_THRESHOLD,
    PLIC_REGISTER_CLAIM,
};

struct plic_register {
    enum plic_register_kind kind;
    unsigned index;   /* source for PRIORITY, word for PENDING/ENABLE */
    unsigned context; /* for ENABLE, THRESHOLD, CLAIM */
};

/* Decodes an aligned 32-bit access; false for anything that is not one of
 * the registers of this PLIC. */
static bool decode(uint64_t offset, unsigned size, struct plic_register *reg)
{
    if (size != 4 || offset % 4 != 0)
        return false;
    if (offset < PLIC_PRIORITY_BASE + 4u * PLIC_SOURCE_COUNT) {
        *reg = (struct plic_register){ PLIC_REGISTER_PRIORITY, (unsigned)(offset / 4), 0 };
        return true;
    }
    if (offset >= PLIC_PENDING_BASE && offset < PLIC_PENDING_BASE + 4u * PLIC_WORDS) {
        *reg = (struct plic_register){ PLIC_REGISTER_PENDING, (unsigned)((offset - PLIC_PENDING_BASE) / 4), 0 };
        return true;
    }
    if (offset >= PLIC_ENABLE_BASE && offset < PLIC_ENABLE_BASE + (uint64_t)PLIC_ENABLE_STRIDE * PLIC_CONTEXT_COUNT) {
        uint64_t relative = offset - PLIC_ENABLE_BASE;
        unsigned word = (unsigned)(relative % PLIC_ENABLE_STRIDE / 4);
        if (word >= PLIC_WORDS)
            return false;
        *reg = (struct plic_register){ PLIC_REGISTER_ENABLE, word, (unsigned)(relative / PLIC_ENABLE_STRIDE) };
        return true;
    }
    if (offset >= PLIC_CONTEXT_BASE &&
        offset < PLIC_CONTEXT_BASE + (uint64_t)PLIC_CONTEXT_STRIDE * PLIC_CONTEXT_COUNT) {
        uint64_t relative = offset - PLIC_CONTEXT_BASE;
        unsigned context = (unsigned)(relative / PLIC_CONTEXT_STRIDE);
        switch (relative % PLIC_CONTEXT_STRIDE) {
        case PLIC_THRESHOLD_OFFSET:
            *reg = (struct plic_register){ PLIC_REGISTER_THRESHOLD, 0, context };
            return true;
        case PLIC_CLAIM_OFFSET:
            *reg = (struct plic_register){ PLIC_REGISTER_CLAIM, 0, context };
            return true;
        }
    }
    return false;
}

bool plic_read(struct plic *plic, uint64_t offset, unsigned size, uint64_t *value)
{
    struct plic_register reg;
    if (!decode(offset, size, &reg))
        return false;
    const struct plic_state *state = &plic->state;
    switch (reg.kind) {
    case PLIC_REGISTER_PRIORITY:
        *value = state->priority[reg.index];
        break;
    case PLIC_REGISTER_PENDING:
        *value = state->pending[reg.index];
        break;
    case PLIC_REGISTER_ENABLE:
        *value = state->enable[reg.context][reg.index];
        break;
    case PLIC_REGISTER_THRESHOLD:
        *value = state->threshold[reg.context];
        break;
    case PLIC_REGISTER_CLAIM:
        /* Reading claims: this read has a side effect. */
        *value = claim(plic, reg.context);
        break;
    }
    return true;
}

bool plic_write(struct plic *plic, uint64_t offset, unsigned size, uint64_t value)
{
    struct plic_register reg;
    if (!decode(offset, size, &reg))
        return false;
    struct plic_state *state = &plic->state;
    switch (reg.kind) {
    case PLIC_REGISTER_PRIORITY:
        /* Source 0 has no priority register worth the name: it reads 0. */
        if (reg.index != 0)
            state->priority[reg.index] = (uint32_t)value & PLIC_MAX_PRIORITY;
        break;
    case PLIC_REGISTER_PENDING:
        /* Pending bits are read-only; the gateways own them. */
        return true;
    case PLIC_REGISTER_ENABLE: {
        uint32_t word = (uint32_t)value;
        if (reg.index == 0)
            word &= ~PLIC_SOURCE_ZERO_BIT;
        state->enable[reg.context][reg.index] = word;
        break;
    }
    case PLIC_REGISTER_THRESHOLD:
        state->threshold[reg.context] = (uint32_t)value & PLIC_MAX_PRIORITY;
        break;
    case PLIC_REGISTER_CLAIM:
        complete(plic, (uint32_t)value);
        return true; /* complete() updated the outputs if it did anything */
    }
    update_outputs(plic);
    return true;
}

/* Layout (version 1): u32 priority[96], u32 pending[3], u32 in_service[3],
 * u32 line_level[3], u32 enable[context][3] for both contexts, u32
 * threshold[2]. The host-side machine pointer is not saved. */
void plic_save(const struct plic *plic, struct state_writer *writer)
{
    const struct plic_state *state = &plic->state;
    state_section_begin(writer, PLIC_SECTION_ID, PLIC_SECTION_VERSION);
    for (unsigned source = 0; source < PLIC_SOURCE_COUNT; source++)
        state_put_u32(writer, state->priority[source]);
    for (unsigned word = 0; word < PLIC_WORDS; word++)
        state_put_u32(writer, state->pending[word]);
    for (unsigned word = 0; word < PLIC_WORDS; word++)
        state_put_u32(writer, state->in_service[word]);
    for (unsigned word = 0; word < PLIC_WORDS; word++)
        state_put_u32(writer, state->line_level[word]);
    for (unsigned context = 0; context < PLIC_CONTEXT_COUNT; context++)
        for (unsigned word = 0; word < PLIC_WORDS; word++)
            state_put_u32(writer, state->enable[context][word]);
    for (unsigned context = 0; context < PLIC_CONTEXT_COUNT; context++)
        state_put_u32(writer, state->threshold[context]);
    state_section_end(writer);
}

/* Rejects states the PLIC can never reach, so that a loaded PLIC obeys the
 * same invariants as a running one. */
static void validate(const struct plic_state *state, struct state_reader *reader)
{
    if (state->priority[0] != 0)
        state_reader_fail(reader, "plic: source 0 has priority %u", state->priority[0]);
    for (unsigned source = 1; source < PLIC_SOURCE_COUNT; source++)
        if (state->priority[source] > PLIC_MAX_PRIORITY)
            state_reader_fail(reader, "plic: priority of source %u is %u (maximum %u)", source, state->priority[source],
                              PLIC_MAX_PRIORITY);
    for (unsigned context = 0; context < PLIC_CONTEXT_COUNT; context++) {
        if (state->threshold[context] > PLIC_MAX_PRIORITY)
            state_reader_fail(reader, "plic: threshold of context %u is %u (maximum %u)", context,
                              state->threshold[context], PLIC_MAX_PRIORITY);
        if (state->enable[context][0] & PLIC_SOURCE_ZERO_BIT)
            state_reader_fail(reader, "plic: context %u enables source 0", context);
    }
    if ((state->pending[0] | state->in_service[0] | state->line_level[0]) & PLIC_SOURCE_ZERO_BIT)
        state_reader_fail(reader, "plic: source 0 is pending, in service or has a line");
    for (unsigned word = 0; word < PLIC_WORDS; word++) {
        /* A gateway forwards nothing while its source is in service, and
         * withdraws the request when the line drops. */
        if (state->pending[word] & state->in_service[word])
            state_reader_fail(reader, "plic: sources 0x%08x (word %u) are both pending and in service",
                              state->pending[word] & state->in_service[word], word);
        if (state->pending[word] & ~state->line_level[word])
            state_reader_fail(reader, "plic: sources 0x%08x (word %u) are pending with their line low",
                              state->pending[word] & ~state->line_level[word], word);
    }
}

/* Does not drive the outputs: the machine loads into scratch copies and
 * recomputes the harts' external interrupts (plic_context_interrupting)
 * once everything is in place, as it does for the CLINT. */
void plic_load(struct plic *plic, struct state_reader *reader)
{
    /* Read into a copy so that a failed load leaves the device untouched. */
    struct plic_state loaded;
    memset(&loaded, 0, sizeof loaded);
    state_section_open(reader, PLIC_SECTION_ID, PLIC_SECTION_VERSION, "plic");
    for (unsigned source = 0; source < PLIC_SOURCE_COUNT; source++)
        loaded.priority[source] = state_get_u32(reader);
    for (unsigned word = 0; word < PLIC_WORDS; word++)
        loaded.pending[word] = state_get_u32(reader);
    for (unsigned word = 0; word < PLIC_WORDS; word++)
        loaded.in_service[word] = state_get_u32(reader);
    for (unsigned word = 0; word < PLIC_WORDS; word++)
        loaded.line_level[word] = state_get_u32(reader);
    for (unsigned context = 0; context < PLIC_CONTEXT_COUNT; context++)
        for (unsigned word = 0; word < PLIC_WORDS; word++)
            loaded.enable[context][word] = state_get_u32(reader);
    for (unsigned context = 0; context < PLIC_CONTEXT_COUNT; context++)
        loaded.threshold[context] = state_get_u32(reader);
    state_section_close(reader, "plic");
    if (reader->failed)
        return;
    validate(&loaded, reader);
    if (reader->failed)
        return;
    plic->state = loaded;
}
