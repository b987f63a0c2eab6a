/* Pre-images: after enabling them (and the dirty log), whatever the guest
 * and the devices write can be undone exactly: a rollback restores RAM to
 * its state at the last reset, byte for byte, and restores each written
 * page once, however often it was written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

/* Pages 345..349 stand for what a checkpoint brings. */
static bool overwritten_by_checkpoint(void *opaque, uint64_t page)
{
    (void)opaque;
    return page >= 345 && page < 350;
}

static void run_guest(struct machine *machine, uint64_t pages, uint64_t first_page, uint64_t entry)
{
    hart_reset(&machine->harts[0], entry);
    machine->harts[0].state.x[10] = pages;
    machine->harts[0].state.x[11] = MACHINE_RAM_BASE + (first_page << GUEST_PAGE_SHIFT);
    machine->exit_reason = MACHINE_RUNNING;
    enum machine_exit_reason reason = machine_run(machine, 10000000);
    CHECK(reason == MACHINE_EXIT_POWEROFF, "guest did not finish (reason %d)", reason);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s dirty_pages.elf\n", argv[0]);
        return 2;
    }
    struct machine *machine = test_machine_create(
        &(struct test_machine_options){ .ram_size = 16u << 20, .deterministic_time = true, .elf = argv[1] });
    uint64_t entry = machine->harts[0].state.pc;
    /* Something other than zeros in the pages the guest overwrites. */
    static uint8_t pattern[64 * GUEST_PAGE_SIZE];
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)(i * 7 + 3);
    machine_ram_write(machine, MACHINE_RAM_BASE + (300ull << GUEST_PAGE_SHIFT), pattern, sizeof pattern);

    machine_dirty_log_enable(machine, true);
    machine_preimages_enable(machine, true);
    uint64_t before = machine_ram_hash(machine);

    /* The guest writes 37 pages (30 of them holding the pattern). */
    run_guest(machine, 37, 290, entry);
    CHECK(machine_ram_hash(machine) != before, "the guest's writes changed nothing");
    int64_t restored = machine_preimages_rollback(machine);
    CHECK(restored == 37, "rollback restored %lld pages, the guest wrote 37", (long long)restored);
    CHECK(machine_ram_hash(machine) == before, "RAM after rollback differs from RAM at the reset");

    /* Device writes, a page written twice, and a write straddling pages:
     * each page comes back as it was at the reset. */
    machine_preimages_reset(machine);
    before = machine_ram_hash(machine);
    uint8_t first[100], second[GUEST_PAGE_SIZE + 10];
    memset(first, 0x11, sizeof first);
    memset(second, 0x22, sizeof second);
    machine_ram_write(machine, MACHINE_RAM_BASE + (310ull << GUEST_PAGE_SHIFT) + 50, first, sizeof first);
    machine_ram_write(machine, MACHINE_RAM_BASE + (310ull << GUEST_PAGE_SHIFT) + 4000, second, sizeof second);
    restored = machine_preimages_rollback(machine);
    CHECK(restored == 2, "device writes over pages 310 and 311 restored %lld pages", (long long)restored);
    CHECK(machine_ram_hash(machine) == before, "RAM after rolling back device writes differs");

    /* After a reset the guest's new writes are the only ones undone: the
     * state at the reset (with the earlier writes) is what comes back. */
    machine_preimages_reset(machine);
    run_guest(machine, 5, 320, entry);
    before = machine_ram_hash(machine);
    machine_preimages_reset(machine);
    run_guest(machine, 3, 330, entry);
    restored = machine_preimages_rollback(machine);
    CHECK(restored == 3, "second interval restored %lld pages, expected 3", (long long)restored);
    CHECK(machine_ram_hash(machine) == before, "rollback went past the last reset");

    /* The rollback before a checkpoint is loaded: pages the checkpoint
     * overwrites are left alone, every other page comes back, and the
     * checkpoint's own writes are not captured (after the reset, a
     * rollback undoes nothing of them). */
    machine_preimages_reset(machine);
    uint8_t *at_reset = malloc(machine->ram.size);
    memcpy(at_reset, machine->ram.host, machine->ram.size);
    run_guest(machine, 10, 340, entry); /* pages 340..349 */
    uint8_t written_349[GUEST_PAGE_SIZE];
    memcpy(written_349, machine->ram.host + (349ull << GUEST_PAGE_SHIFT), GUEST_PAGE_SIZE);
    restored = machine_preimages_rollback_before_load(machine, overwritten_by_checkpoint, NULL);
    CHECK(restored == 5, "rollback before a load restored %lld pages, expected 5 (340..344)", (long long)restored);
    CHECK(memcmp(machine->ram.host + (340ull << GUEST_PAGE_SHIFT), at_reset + (340ull << GUEST_PAGE_SHIFT),
                 5 * GUEST_PAGE_SIZE) == 0,
          "pages 340..344 not restored");
    CHECK(memcmp(machine->ram.host + (349ull << GUEST_PAGE_SHIFT), written_349, GUEST_PAGE_SIZE) == 0,
          "page 349 (overwritten by the checkpoint) was restored anyway");
    uint8_t checkpoint_page[GUEST_PAGE_SIZE];
    memset(checkpoint_page, 0x5c, sizeof checkpoint_page);
    machine_ram_write(machine, MACHINE_RAM_BASE + (345ull << GUEST_PAGE_SHIFT), checkpoint_page,
                      sizeof checkpoint_page);
    CHECK(machine->ram.preimages.count == 10, "the checkpoint's write was captured (%zu pre-images)",
          machine->ram.preimages.count);
    machine_preimages_reset(machine);
    before = machine_ram_hash(machine);
    run_guest(machine, 2, 345, entry);
    restored = machine_preimages_rollback(machine);
    CHECK(restored == 2 && machine_ram_hash(machine) == before,
          "after the reset, capture did not resume (%lld restored)", (long long)restored);
    free(at_reset);

    /* Turning the dirty log off turns pre-images off: nothing to undo. */
    machine_dirty_log_enable(machine, false);
    CHECK(!machine->ram.preimages_enabled, "pre-images still on without the dirty log");

    test_machine_destroy(machine);
    return test_check_finish("pre-images");
}
