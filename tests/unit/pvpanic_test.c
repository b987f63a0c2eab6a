/* pvpanic-mmio: the register through the machine's memory map (what a
 * guest's load or store reaches), the exit reason a panic gives, and the
 * device tree node Linux's driver binds to. */
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine_boot.h"
#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

static struct machine *machine;

static void test_reads(void)
{
    uint64_t value = 0;
    CHECK(machine_mmio_read(machine, MACHINE_PVPANIC_BASE, 1, &value), "1-byte read at 0 refused");
    CHECK(value == (PVPANIC_PANICKED | PVPANIC_CRASH_LOADED), "supported events read as %llu, not 3",
          (unsigned long long)value);
    CHECK(!machine_mmio_read(machine, MACHINE_PVPANIC_BASE, 4, &value), "4-byte read accepted");
    CHECK(!machine_mmio_read(machine, MACHINE_PVPANIC_BASE + 1, 1, &value), "read at offset 1 accepted");
    CHECK(machine->exit_reason == MACHINE_RUNNING, "a read ended the run");
}

static void test_writes(void)
{
    /* Events other than PANICKED leave the guest running. */
    static const uint8_t ignored[] = { 0, PVPANIC_CRASH_LOADED, 0x80, 0xfe };
    for (size_t i = 0; i < sizeof ignored; i++) {
        CHECK(machine_mmio_write(machine, MACHINE_PVPANIC_BASE, 1, ignored[i]), "write of 0x%x refused", ignored[i]);
        CHECK(machine->exit_reason == MACHINE_RUNNING, "write of 0x%x ended the run (%d)", ignored[i],
              machine->exit_reason);
    }
    CHECK(!machine_mmio_write(machine, MACHINE_PVPANIC_BASE, 4, PVPANIC_PANICKED), "4-byte write accepted");
    CHECK(!machine_mmio_write(machine, MACHINE_PVPANIC_BASE + 8, 1, PVPANIC_PANICKED), "write at offset 8 accepted");
    CHECK(machine->exit_reason == MACHINE_RUNNING, "a refused write ended the run");

    CHECK(machine_mmio_write(machine, MACHINE_PVPANIC_BASE, 1, PVPANIC_PANICKED), "PANICKED refused");
    CHECK(machine->exit_reason == MACHINE_EXIT_GUEST_PANIC, "PANICKED gave exit reason %d", machine->exit_reason);
    machine->exit_reason = MACHINE_RUNNING;
    CHECK(machine_mmio_write(machine, MACHINE_PVPANIC_BASE, 1, PVPANIC_PANICKED | PVPANIC_CRASH_LOADED),
          "PANICKED|CRASH_LOADED refused");
    CHECK(machine->exit_reason == MACHINE_EXIT_GUEST_PANIC, "PANICKED|CRASH_LOADED gave exit reason %d",
          machine->exit_reason);
    machine->exit_reason = MACHINE_RUNNING;
}

static void test_device_tree(void)
{
    void *tree = NULL;
    size_t size = 0;
    struct error err;
    CHECK(machine_build_device_tree(machine, NULL, 0, 0, &tree, &size, &err) == 0, "device tree: %s", err.message);
    if (!tree)
        return;
    int node = fdt_path_offset(tree, "/soc/pvpanic@102000");
    CHECK(node >= 0, "no /soc/pvpanic@102000 node: %s", fdt_strerror(node));
    if (node >= 0) {
        CHECK(fdt_node_check_compatible(tree, node, "qemu,pvpanic-mmio") == 0, "not compatible qemu,pvpanic-mmio");
        int length = 0;
        const fdt32_t *reg = fdt_getprop(tree, node, "reg", &length);
        CHECK(reg && length == 16, "reg is %d bytes, not 16", length);
        if (reg && length == 16) {
            uint64_t base = (uint64_t)fdt32_to_cpu(reg[0]) << 32 | fdt32_to_cpu(reg[1]);
            uint64_t span = (uint64_t)fdt32_to_cpu(reg[2]) << 32 | fdt32_to_cpu(reg[3]);
            CHECK(base == 0x102000 && span == 0x1000, "reg is 0x%llx+0x%llx", (unsigned long long)base,
                  (unsigned long long)span);
        }
    }
    free(tree);
}

int main(void)
{
    machine = test_machine_create(&(struct test_machine_options){ .ram_size = 1u << 20, .deterministic_time = true });
    test_reads();
    test_writes();
    test_device_tree();
    test_machine_destroy(machine);
    return test_check_finish("pvpanic_test");
}
