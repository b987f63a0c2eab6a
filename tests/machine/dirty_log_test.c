/* Dirty log: N stored pages give exactly N bits; a second read gives none;
 * device writes are logged; read-and-clear and pause work while the hart
 * runs on another thread, with a bounded wait. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

static uint64_t count_bits(const uint64_t *bitmap, size_t words)
{
    uint64_t count = 0;
    for (size_t i = 0; i < words; i++)
        count += (uint64_t)__builtin_popcountll(bitmap[i]);
    return count;
}

static bool bit_set(const uint64_t *bitmap, uint64_t page)
{
    return (bitmap[page / 64] >> (page % 64)) & 1;
}

static struct machine *create(const char *elf)
{
    return test_machine_create(
        &(struct test_machine_options){ .ram_size = 16u << 20, .deterministic_time = true, .elf = elf });
}

static void test_exact_pages(const char *elf)
{
    static const uint64_t counts[] = { 1, 37, 300 };
    for (unsigned c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        struct machine *machine = create(elf);
        uint64_t first_page = 256; /* 1 MiB into RAM */
        machine->harts[0].state.x[10] = counts[c];
        machine->harts[0].state.x[11] = MACHINE_RAM_BASE + (first_page << GUEST_PAGE_SHIFT);
        size_t words = guest_ram_bitmap_words(&machine->ram);
        uint64_t *bitmap = calloc(words, sizeof *bitmap);

        machine_dirty_log_enable(machine, true);
        enum machine_exit_reason reason = machine_run(machine, 10000000);
        CHECK(reason == MACHINE_EXIT_POWEROFF, "guest did not finish (reason %d)", reason);
        uint64_t dirty = machine_dirty_log_read_and_clear(machine, bitmap);
        CHECK(dirty == counts[c], "stored to %llu pages, log says %llu", (unsigned long long)counts[c],
              (unsigned long long)dirty);
        CHECK(count_bits(bitmap, words) == counts[c], "bitmap has %llu bits, want %llu",
              (unsigned long long)count_bits(bitmap, words), (unsigned long long)counts[c]);
        for (uint64_t p = 0; p < counts[c]; p++)
            CHECK(bit_set(bitmap, first_page + p), "page %llu not marked", (unsigned long long)(first_page + p));

        dirty = machine_dirty_log_read_and_clear(machine, bitmap);
        CHECK(dirty == 0 && count_bits(bitmap, words) == 0, "second read gave %llu pages", (unsigned long long)dirty);

        /* Device (DMA) writes go into the log too: 3 pages, one straddled. */
        uint8_t data[2 * GUEST_PAGE_SIZE + 16];
        memset(data, 0xab, sizeof data);
        CHECK(machine_ram_write(machine, MACHINE_RAM_BASE + 0x10000 - 8, data, sizeof data) == 0,
              "device write failed");
        dirty = machine_dirty_log_read_and_clear(machine, bitmap);
        CHECK(dirty == 4, "device write of 2 pages + 24 bytes straddling 4 pages logged %llu",
              (unsigned long long)dirty);

        /* Logging off: nothing is recorded. */
        machine_dirty_log_enable(machine, false);
        CHECK(machine_ram_write(machine, MACHINE_RAM_BASE, data, 16) == 0, "device write failed");
        dirty = machine_dirty_log_read_and_clear(machine, bitmap);
        CHECK(dirty == 0, "log off still recorded %llu pages", (unsigned long long)dirty);
        free(bitmap);
        test_machine_destroy(machine);
    }
}

static void *run_thread(void *argument)
{
    machine_run(argument, 0);
    return NULL;
}

static void test_concurrent(const char *elf)
{
    struct machine *machine = create(elf);
    const uint64_t pages = 50, first_page = 512;
    machine->harts[0].state.x[10] = pages;
    machine->harts[0].state.x[11] = MACHINE_RAM_BASE + (first_page << GUEST_PAGE_SHIFT);
    size_t words = guest_ram_bitmap_words(&machine->ram);
    uint64_t *bitmap = calloc(words, sizeof *bitmap);
    machine_dirty_log_enable(machine, true);

    pthread_t thread;
    pthread_create(&thread, NULL, run_thread, machine);
    clock_sleep_ms(20);

    for (int round = 0; round < 20; round++) {
        uint64_t dirty = machine_dirty_log_read_and_clear(machine, bitmap);
        CHECK(dirty <= pages, "round %d: %llu dirty pages, the guest only writes %llu", round,
              (unsigned long long)dirty, (unsigned long long)pages);
        for (uint64_t p = 0; p < machine->ram.page_count; p++)
            if (bit_set(bitmap, p))
                CHECK(p >= first_page && p < first_page + pages, "page %llu dirty but never written",
                      (unsigned long long)p);
        clock_sleep_ms(20);
    }
    /* After a pause, everything the guest stored shows up: a full sweep
     * over the pages takes far less than the 20 ms slept. */
    uint64_t dirty = machine_dirty_log_read_and_clear(machine, bitmap);
    CHECK(dirty == pages, "a running guest sweeping %llu pages shows %llu dirty", (unsigned long long)pages,
          (unsigned long long)dirty);

    /* Pause is bounded: it returns within one slice, far below 100 ms. */
    double start = clock_monotonic_seconds();
    machine_pause(machine);
    double paused_after = clock_monotonic_seconds() - start;
    CHECK(paused_after < 0.1, "pause took %.3f s", paused_after);
    uint64_t instret = machine->harts[0].state.instret;
    clock_sleep_ms(20);
    CHECK(machine->harts[0].state.instret == instret, "the hart ran while paused");
    machine_resume(machine);
    clock_sleep_ms(20);
    machine_pause(machine);
    CHECK(machine->harts[0].state.instret > instret, "the hart did not run after resume");
    machine_resume(machine);

    machine_request_stop(machine);
    pthread_join(thread, NULL);
    CHECK(machine->exit_reason == MACHINE_EXIT_STOPPED, "stop request gave exit reason %d", machine->exit_reason);
    printf("pause latency: %.1f us\n", paused_after * 1e6);
    free(bitmap);
    test_machine_destroy(machine);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s dirty_pages.elf store_forever.elf\n", argv[0]);
        return 2;
    }
    test_exact_pages(argv[1]);
    test_concurrent(argv[2]);
    return test_check_finish("dirty log");
}
