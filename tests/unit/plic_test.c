/* Unit tests for the PLIC: register decoding, priorities, thresholds,
 * claim/complete with level-triggered gateways, two contexts driving hart
 * 0's MEIP and SEIP, and save/load (round trip, rejection of impossible
 * states, failed loads that leave the device alone).
 * Prints "FAIL: ..." for each failed check and exits 1 if any failed. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

/* Its hart 0 receives the PLIC's outputs (context 0: MEIP, context 1: SEIP). */
static struct machine *machine;

#define PRIORITY(source) (0x000000u + 4u * (source))
#define PENDING(word) (0x001000u + 4u * (word))
#define ENABLE(context) (0x002000u + 0x80u * (context))
#define THRESHOLD(context) (0x200000u + 0x1000u * (context))
#define CLAIM(context) (0x200004u + 0x1000u * (context))
#define M_CONTEXT 0
#define S_CONTEXT 1

static uint32_t get(struct plic *plic, uint64_t offset)
{
    uint64_t value = 0xdeadbeefdeadbeefull;
    CHECK(plic_read(plic, offset, 4, &value), "read at 0x%llx refused", (unsigned long long)offset);
    CHECK(value <= UINT32_MAX, "read at 0x%llx returned more than 32 bits", (unsigned long long)offset);
    return (uint32_t)value;
}

static void put(struct plic *plic, uint64_t offset, uint32_t value)
{
    CHECK(plic_write(plic, offset, 4, value), "write at 0x%llx refused", (unsigned long long)offset);
}

static bool meip(void)
{
    return machine->harts[0].state.mip & MIP_MEIP;
}

static bool seip(void)
{
    return machine->harts[0].state.mip & MIP_SEIP;
}

static void fresh(struct plic *plic)
{
    plic_init(plic, machine);
    machine->harts[0].state.mip &= ~(MIP_MEIP | MIP_SEIP);
}

static void test_decoding(void)
{
    struct plic plic;
    fresh(&plic);
    uint64_t value;

    /* Every register of the map is there and reads 0 at reset. */
    for (unsigned source = 0; source < PLIC_SOURCE_COUNT; source++)
        CHECK(get(&plic, PRIORITY(source)) == 0, "priority %u at reset", source);
    for (unsigned word = 0; word < PLIC_WORDS; word++) {
        CHECK(get(&plic, PENDING(word)) == 0, "pending word %u at reset", word);
        CHECK(get(&plic, ENABLE(M_CONTEXT) + 4 * word) == 0, "M enable word %u at reset", word);
        CHECK(get(&plic, ENABLE(S_CONTEXT) + 4 * word) == 0, "S enable word %u at reset", word);
    }
    CHECK(get(&plic, THRESHOLD(M_CONTEXT)) == 0 && get(&plic, THRESHOLD(S_CONTEXT)) == 0, "thresholds at reset");
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 0 && get(&plic, CLAIM(S_CONTEXT)) == 0, "claim at reset");

    /* Offsets that are not registers, and accesses that are not 32-bit. */
    static const uint64_t unknown[] = {
        PRIORITY(PLIC_SOURCE_COUNT),
        0x0ffc,
        PENDING(PLIC_WORDS),
        0x1ffc,
        ENABLE(M_CONTEXT) + 4 * PLIC_WORDS,
        ENABLE(S_CONTEXT) + 4 * PLIC_WORDS,
        ENABLE(PLIC_CONTEXT_COUNT),
        0x1ffffc,
        THRESHOLD(0) + 8,
        THRESHOLD(0) + 0xffc,
        THRESHOLD(PLIC_CONTEXT_COUNT),
        CLAIM(PLIC_CONTEXT_COUNT),
        PLIC_SIZE - 4,
        PLIC_SIZE,
        0xffffffffffffff00ull,
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECK(!plic_read(&plic, unknown[i], 4, &value), "read of unknown offset 0x%llx accepted",
              (unsigned long long)unknown[i]);
        CHECK(!plic_write(&plic, unknown[i], 4, 1), "write of unknown offset 0x%llx accepted",
              (unsigned long long)unknown[i]);
    }
    CHECK(!plic_read(&plic, PRIORITY(1), 8, &value), "8-byte read accepted");
    CHECK(!plic_read(&plic, PRIORITY(1), 1, &value), "1-byte read accepted");
    CHECK(!plic_write(&plic, PRIORITY(1) + 2, 4, 1), "misaligned write accepted");
    CHECK(!plic_write(&plic, CLAIM(0), 2, 1), "2-byte claim write accepted");

    /* Priorities and thresholds hold 3 bits; source 0 has none. */
    put(&plic, PRIORITY(1), 0xffffffffu);
    CHECK(get(&plic, PRIORITY(1)) == 7, "priority kept more than 3 bits: %u", get(&plic, PRIORITY(1)));
    put(&plic, PRIORITY(95), 5);
    CHECK(get(&plic, PRIORITY(95)) == 5, "priority of source 95");
    put(&plic, PRIORITY(0), 3);
    CHECK(get(&plic, PRIORITY(0)) == 0, "source 0 took a priority");
    put(&plic, THRESHOLD(S_CONTEXT), 0x1f);
    CHECK(get(&plic, THRESHOLD(S_CONTEXT)) == 7, "threshold kept more than 3 bits");
    CHECK(get(&plic, THRESHOLD(M_CONTEXT)) == 0, "threshold write hit the other context");

    /* Enables: source 0's bit is hardwired to 0; contexts are separate. */
    put(&plic, ENABLE(M_CONTEXT), 0xffffffffu);
    CHECK(get(&plic, ENABLE(M_CONTEXT)) == 0xfffffffeu, "source 0 enable bit is writable");
    put(&plic, ENABLE(S_CONTEXT) + 8, 0x80000001u);
    CHECK(get(&plic, ENABLE(S_CONTEXT) + 8) == 0x80000001u, "enable word 2 of S");
    CHECK(get(&plic, ENABLE(M_CONTEXT) + 8) == 0, "enable write hit the other context");

    /* Pending is read-only. */
    put(&plic, PENDING(0), 0xffffffffu);
    CHECK(get(&plic, PENDING(0)) == 0, "pending bits are writable");
    CHECK(!meip() && !seip(), "an interrupt with nothing pending");

    /* Out-of-range lines and contexts are ignored. */
    plic_set_line(&plic, 0, true);
    plic_set_line(&plic, PLIC_SOURCE_COUNT, true);
    plic_set_line(&plic, 100000, true);
    CHECK(get(&plic, PENDING(0)) == 0, "source 0 became pending");
    CHECK(!plic_context_interrupting(&plic, PLIC_CONTEXT_COUNT), "a context that does not exist interrupts");
}

static void test_priority_and_threshold(void)
{
    struct plic plic;
    fresh(&plic);

    put(&plic, ENABLE(M_CONTEXT), 1u << 5);
    plic_set_line(&plic, 5, true);
    CHECK(get(&plic, PENDING(0)) == 1u << 5, "a high line did not make source 5 pending");
    /* Priority 0 never interrupts and cannot be claimed. */
    CHECK(!meip() && !plic_context_interrupting(&plic, M_CONTEXT), "priority 0 interrupts");
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 0, "priority 0 was claimed");
    CHECK(get(&plic, PENDING(0)) == 1u << 5, "an empty claim cleared pending");

    put(&plic, PRIORITY(5), 1);
    CHECK(meip() && plic_context_interrupting(&plic, M_CONTEXT), "priority 1 over threshold 0 does not interrupt");
    CHECK(!seip(), "a source enabled only for M raised SEIP");
    put(&plic, THRESHOLD(M_CONTEXT), 1);
    CHECK(!meip(), "priority 1 interrupts at threshold 1");
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 0, "claimed below the threshold");
    put(&plic, PRIORITY(5), 2);
    CHECK(meip(), "priority 2 does not interrupt at threshold 1");
    put(&plic, THRESHOLD(M_CONTEXT), 7);
    CHECK(!meip(), "threshold 7 lets something through");
    put(&plic, THRESHOLD(M_CONTEXT), 0);
    put(&plic, ENABLE(M_CONTEXT), 0);
    CHECK(!meip(), "disabled source interrupts");
    put(&plic, ENABLE(M_CONTEXT), 1u << 5);
    CHECK(meip(), "re-enabled source does not interrupt");

    /* A request withdrawn before it was claimed (level gateway). */
    plic_set_line(&plic, 5, false);
    CHECK(get(&plic, PENDING(0)) == 0 && !meip(), "a low line left source 5 pending");

    /* Highest priority first; equal priorities by lowest source number. */
    put(&plic, ENABLE(M_CONTEXT), (1u << 3) | (1u << 7) | (1u << 9));
    put(&plic, ENABLE(M_CONTEXT) + 4, 1u << (40 - 32));
    put(&plic, PRIORITY(3), 2);
    put(&plic, PRIORITY(7), 2);
    put(&plic, PRIORITY(9), 1);
    put(&plic, PRIORITY(40), 6);
    plic_set_line(&plic, 9, true);
    plic_set_line(&plic, 7, true);
    plic_set_line(&plic, 3, true);
    plic_set_line(&plic, 40, true);
    CHECK(get(&plic, PENDING(1)) == 1u << 8, "source 40 not pending in word 1");
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 40, "highest priority (40) not claimed first");
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 3, "tie between 3 and 7 not won by 3");
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 7, "7 not claimed third");
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 9, "9 not claimed last");
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 0 && !meip(), "something left after four claims");
    CHECK(get(&plic, PENDING(0)) == 0 && get(&plic, PENDING(1)) == 0, "claims did not clear pending");
    CHECK(plic.state.in_service[0] == ((1u << 3) | (1u << 7) | (1u << 9)) && plic.state.in_service[1] == 1u << 8,
          "in-service bits after claims");
}

static void test_claim_complete(void)
{
    struct plic plic;
    fresh(&plic);
    put(&plic, PRIORITY(10), 1);
    put(&plic, ENABLE(M_CONTEXT), 1u << 10);

    plic_set_line(&plic, 10, true);
    CHECK(meip(), "source 10 does not interrupt");
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 10, "claim of 10");
    CHECK(!meip(), "MEIP stays up while the only source is in service");
    /* While in service, the gateway forwards nothing: toggling the line
     * makes nothing pending. */
    plic_set_line(&plic, 10, false);
    plic_set_line(&plic, 10, true);
    CHECK(get(&plic, PENDING(0)) == 0 && !meip(), "a source in service became pending");

    /* Completions of ids not in service are ignored. */
    put(&plic, CLAIM(M_CONTEXT), 11);
    put(&plic, CLAIM(M_CONTEXT), 0);
    put(&plic, CLAIM(M_CONTEXT), 4000);
    CHECK(plic.state.in_service[0] == 1u << 10, "a stray completion ended the service of 10");

    /* Completing with the line still high re-pends. */
    put(&plic, CLAIM(M_CONTEXT), 10);
    CHECK(plic.state.in_service[0] == 0, "completion did not end the service");
    CHECK(get(&plic, PENDING(0)) == 1u << 10 && meip(), "completion with the line high did not re-pend");

    /* Completing after the line dropped does not. */
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 10, "second claim of 10");
    plic_set_line(&plic, 10, false);
    put(&plic, CLAIM(M_CONTEXT), 10);
    CHECK(get(&plic, PENDING(0)) == 0 && !meip(), "completion re-pended a low line");
    /* A second completion of the same id is ignored. */
    put(&plic, CLAIM(M_CONTEXT), 10);
    CHECK(get(&plic, PENDING(0)) == 0 && plic.state.in_service[0] == 0, "double completion");

    /* A line that goes high again later interrupts again. */
    plic_set_line(&plic, 10, true);
    CHECK(meip(), "a new request after completion does not interrupt");
    plic_set_line(&plic, 10, false);
}

static void test_two_contexts(void)
{
    struct plic plic;
    fresh(&plic);
    put(&plic, PRIORITY(1), 3);
    put(&plic, PRIORITY(2), 3);
    put(&plic, ENABLE(M_CONTEXT), 1u << 1);
    put(&plic, ENABLE(S_CONTEXT), (1u << 1) | (1u << 2));

    plic_set_line(&plic, 2, true);
    CHECK(seip() && !meip(), "source 2 (S only) gave MEIP %d SEIP %d", meip(), seip());
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 0, "M claimed a source it does not enable");
    CHECK(get(&plic, CLAIM(S_CONTEXT)) == 2, "S could not claim source 2");
    CHECK(!seip(), "SEIP after S claimed its only source");

    /* A source enabled in both: whoever claims first gets it. */
    plic_set_line(&plic, 1, true);
    CHECK(meip() && seip(), "source 1 (both) did not reach both contexts");
    put(&plic, THRESHOLD(S_CONTEXT), 3);
    CHECK(meip() && !seip(), "S threshold 3 did not mask priority 3");
    put(&plic, THRESHOLD(S_CONTEXT), 2);
    CHECK(get(&plic, CLAIM(M_CONTEXT)) == 1, "M claim of source 1");
    CHECK(!meip() && !seip(), "a claimed source still interrupts a context");
    CHECK(get(&plic, CLAIM(S_CONTEXT)) == 0, "S claimed a source M holds");

    /* Either context may complete (the id is what counts). */
    put(&plic, CLAIM(S_CONTEXT), 1);
    CHECK(meip() && seip(), "completion by the other context did not re-pend source 1");
    put(&plic, CLAIM(S_CONTEXT), 2);
    CHECK(get(&plic, CLAIM(S_CONTEXT)) == 1, "S sees 1 (priority 3) before the re-pended 2 (priority 3)");
    plic_set_line(&plic, 1, false);
    put(&plic, CLAIM(S_CONTEXT), 1);
    CHECK(get(&plic, CLAIM(S_CONTEXT)) == 2, "S claim of the re-pended source 2");
    put(&plic, CLAIM(S_CONTEXT), 2);
    plic_set_line(&plic, 2, false);
    put(&plic, CLAIM(S_CONTEXT), 2);
    CHECK(!meip() && !seip(), "interrupts left over");
}

/* Section layout: a 12-byte header, then u32 priority[96], pending[3],
 * in_service[3], line_level[3], enable[2][3], threshold[2]. */
#define BODY 12u
#define AT_PRIORITY(source) (BODY + 4u * (source))
#define AT_PENDING(word) (BODY + 4u * (PLIC_SOURCE_COUNT + (word)))
#define AT_IN_SERVICE(word) (BODY + 4u * (PLIC_SOURCE_COUNT + PLIC_WORDS + (word)))
#define AT_LINE(word) (BODY + 4u * (PLIC_SOURCE_COUNT + 2 * PLIC_WORDS + (word)))
#define AT_ENABLE(c, word) (BODY + 4u * (PLIC_SOURCE_COUNT + 3 * PLIC_WORDS + (c)*PLIC_WORDS + (word)))
#define AT_THRESHOLD(c) (BODY + 4u * (PLIC_SOURCE_COUNT + 5 * PLIC_WORDS + (c)))
#define SECTION_LENGTH AT_THRESHOLD(PLIC_CONTEXT_COUNT)

static void put_le32(uint8_t *bytes, uint32_t value)
{
    for (unsigned i = 0; i < 4; i++)
        bytes[i] = (uint8_t)(value >> (8 * i));
}

/* Loads data with one u32 replaced and expects a failure that leaves the
 * target unchanged. */
static void expect_rejected(const struct state_writer *writer, size_t at, uint32_t value, const char *what)
{
    uint8_t copy[SECTION_LENGTH];
    memcpy(copy, writer->data, sizeof copy);
    put_le32(copy + at, value);

    struct plic target;
    fresh(&target);
    put(&target, PRIORITY(4), 4);
    put(&target, ENABLE(S_CONTEXT), 1u << 4);
    plic_set_line(&target, 4, true);
    struct plic_state before = target.state;
    uint64_t mip_before = machine->harts[0].state.mip;

    struct state_reader reader;
    state_reader_init(&reader, copy, sizeof copy);
    plic_load(&target, &reader);
    CHECK(reader.failed, "plic load accepted %s", what);
    CHECK(strstr(reader.error, "plic") != NULL, "error for %s does not name the plic: %s", what, reader.error);
    CHECK(memcmp(&before, &target.state, sizeof before) == 0, "failed load (%s) changed the plic", what);
    CHECK(machine->harts[0].state.mip == mip_before, "failed load (%s) changed mip", what);
    plic_set_line(&target, 4, false);
}

static void test_save_load(void)
{
    struct plic original;
    fresh(&original);
    for (unsigned source = 1; source < PLIC_SOURCE_COUNT; source++)
        put(&original, PRIORITY(source), source % 8);
    put(&original, ENABLE(M_CONTEXT), 0x0000f0f0u);
    put(&original, ENABLE(M_CONTEXT) + 8, 0x80000000u);
    put(&original, ENABLE(S_CONTEXT) + 4, 0x12345678u);
    put(&original, THRESHOLD(M_CONTEXT), 2);
    put(&original, THRESHOLD(S_CONTEXT), 5);
    plic_set_line(&original, 5, true);  /* priority 5, enabled in M: claimed below */
    plic_set_line(&original, 6, true);  /* pending */
    plic_set_line(&original, 95, true); /* priority 7, enabled in M */
    plic_set_line(&original, 36, true); /* in word 1 */
    CHECK(get(&original, CLAIM(M_CONTEXT)) == 95, "setup claim 95");
    CHECK(get(&original, CLAIM(M_CONTEXT)) == 6, "setup claim 6");
    plic_set_line(&original, 6, false); /* in service with its line low */

    struct state_writer writer;
    state_writer_init(&writer);
    plic_save(&original, &writer);
    CHECK(!writer.out_of_memory, "plic save ran out of memory");
    CHECK(writer.length == SECTION_LENGTH, "plic section is %zu bytes, expected %u", writer.length, SECTION_LENGTH);

    struct plic restored;
    fresh(&restored);
    struct state_reader reader;
    state_reader_init(&reader, writer.data, writer.length);
    plic_load(&restored, &reader);
    CHECK(!reader.failed, "plic load failed: %s", reader.error);
    CHECK(reader.position == writer.length, "plic load left bytes unread");
    CHECK(memcmp(&restored.state, &original.state, sizeof original.state) == 0, "plic state differs after load");
    CHECK(restored.machine == machine, "load changed the machine pointer");
    /* The restored PLIC behaves like the original. */
    CHECK(get(&restored, CLAIM(M_CONTEXT)) == 5, "restored claim");
    put(&restored, CLAIM(M_CONTEXT), 95);
    CHECK(get(&restored, PENDING(2)) == 1u << 31, "restored completion of 95 (line high) did not re-pend");
    put(&restored, CLAIM(M_CONTEXT), 6);
    CHECK(get(&restored, PENDING(0)) == 0, "restored completion of 6 (line low) re-pended");

    /* States the PLIC can never be in. */
    expect_rejected(&writer, AT_PRIORITY(7), 8, "priority 8");
    expect_rejected(&writer, AT_PRIORITY(0), 1, "a priority for source 0");
    expect_rejected(&writer, AT_THRESHOLD(1), 8, "threshold 8");
    expect_rejected(&writer, AT_ENABLE(0, 0), 1, "source 0 enabled");
    expect_rejected(&writer, AT_LINE(0), 1u | (1u << 5), "source 0 line high");
    expect_rejected(&writer, AT_PENDING(0), (1u << 5) | (1u << 7), "source 7 pending with its line low");
    expect_rejected(&writer, AT_IN_SERVICE(0), (1u << 5) | (1u << 6), "source 5 pending and in service");

    /* Truncated, and another device's section. */
    uint64_t value;
    struct plic target;
    fresh(&target);
    put(&target, PRIORITY(3), 3);
    struct plic_state before = target.state;
    state_reader_init(&reader, writer.data, writer.length - 1);
    plic_load(&target, &reader);
    CHECK(reader.failed, "plic load accepted a truncated section");
    CHECK(memcmp(&before, &target.state, sizeof before) == 0, "truncated load changed the plic");

    struct state_writer other;
    state_writer_init(&other);
    clint_save(&machine->clint, &other);
    state_reader_init(&reader, other.data, other.length);
    plic_load(&target, &reader);
    CHECK(reader.failed && strstr(reader.error, "plic"), "plic load of a clint section: %s", reader.error);
    CHECK(memcmp(&before, &target.state, sizeof before) == 0, "wrong-section load changed the plic");
    CHECK(plic_read(&target, PRIORITY(3), 4, &value) && value == 3, "plic unusable after failed loads");
    state_writer_free(&other);

    state_writer_free(&writer);
}

int main(void)
{
    machine = test_machine_create(&(struct test_machine_options){ .ram_size = 1u << 20, .deterministic_time = true });

    test_decoding();
    test_priority_and_threshold();
    test_claim_complete();
    test_two_contexts();
    test_save_load();

    test_machine_destroy(machine);
    if (test_check_failures) {
        printf("%d check(s) failed\n", test_check_failures);
        return 1;
    }
    printf("plic_test: all checks passed\n");
    return 0;
}
