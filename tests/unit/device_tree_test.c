/* The device tree machine_build_device_tree makes, parsed with libfdt:
 * /chosen/rng-seed (64 bytes; the same every deterministic run, the
 * host's otherwise), the Goldfish RTC node, the entropy device's
 * virtio-mmio node in the last slot, and the slots of disks and NICs
 * staying where they were. Prints "FAIL ..." for each failed check. */
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "entropy.h"
#include "machine_boot.h"
#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

static void *build(struct machine *machine)
{
    void *blob = NULL;
    size_t size = 0;
    struct error err;
    CHECK(machine_build_device_tree(machine, "console=ttyS0", 0, 0, &blob, &size, &err) == 0, "build: %s", err.message);
    CHECK(blob && fdt_check_header(blob) == 0, "not a valid device tree");
    return blob;
}

/* The 64-byte rng-seed of a tree, or NULL. */
static const uint8_t *rng_seed(const void *blob)
{
    int chosen = fdt_path_offset(blob, "/chosen");
    int length = 0;
    const uint8_t *seed = chosen >= 0 ? fdt_getprop(blob, chosen, "rng-seed", &length) : NULL;
    CHECK(seed && length == 64, "/chosen/rng-seed is missing or %d bytes", length);
    return seed && length == 64 ? seed : NULL;
}

static uint32_t cell(const void *blob, const char *path, const char *name, int index)
{
    int node = fdt_path_offset(blob, path);
    int length = 0;
    const fdt32_t *cells = node >= 0 ? fdt_getprop(blob, node, name, &length) : NULL;
    if (!cells || length < (index + 1) * 4) {
        CHECK(0, "%s: no %s cell %d", path, name, index);
        return UINT32_MAX;
    }
    return fdt32_to_cpu(cells[index]);
}

static void test_rng_seed(void)
{
    struct machine *machine = test_machine_create(&(struct test_machine_options){ .deterministic_time = true });
    void *first = build(machine), *second = build(machine);
    const uint8_t *seed_first = rng_seed(first), *seed_second = rng_seed(second);
    uint8_t expected[64];
    uint64_t state = ENTROPY_SEED_DEVICE_TREE;
    entropy_deterministic_fill(&state, expected, sizeof expected);
    if (seed_first && seed_second) {
        CHECK(memcmp(seed_first, seed_second, 64) == 0, "deterministic seeds differ");
        CHECK(memcmp(seed_first, expected, 64) == 0, "deterministic seed is not the seeded stream");
    }
    free(first);
    free(second);
    test_machine_destroy(machine);

    machine = test_machine_create(&(struct test_machine_options){ 0 });
    first = build(machine);
    second = build(machine);
    seed_first = rng_seed(first);
    seed_second = rng_seed(second);
    if (seed_first && seed_second) {
        CHECK(memcmp(seed_first, seed_second, 64) != 0, "real-time seeds are equal");
        CHECK(memcmp(seed_first, expected, 64) != 0, "real-time seed is the deterministic one");
    }
    free(first);
    free(second);
    test_machine_destroy(machine);
}

static void test_nodes(void)
{
    struct machine *machine = test_machine_create(&(struct test_machine_options){ .nic = true });
    void *blob = build(machine);
    int rtc = fdt_path_offset(blob, "/soc/rtc@101000");
    CHECK(rtc >= 0, "no /soc/rtc@101000");
    CHECK(rtc >= 0 && fdt_node_check_compatible(blob, rtc, "google,goldfish-rtc") == 0, "RTC compatible");
    CHECK(cell(blob, "/soc/rtc@101000", "interrupts", 0) == 11, "RTC interrupt");
    CHECK(cell(blob, "/soc/rtc@101000", "reg", 1) == 0x101000 && cell(blob, "/soc/rtc@101000", "reg", 3) == 0x1000,
          "RTC reg");
    CHECK(cell(blob, "/soc/virtio_mmio@10008000", "interrupts", 0) == 8, "entropy device node (slot 7, irq 8)");
    /* The NIC keeps slot 0, as before the entropy device. */
    CHECK(cell(blob, "/soc/virtio_mmio@10001000", "interrupts", 0) == 1, "NIC node (slot 0, irq 1)");
    CHECK(machine->virtio_slots[0] == &machine_nic(machine, 0)->transport, "the NIC moved from slot 0");
    free(blob);
    test_machine_destroy(machine);

    struct machine_config config;
    machine_config_defaults(&config);
    config.ram_size = 16u << 20;
    config.console_output_fd = -1;
    config.rng = false;
    struct error err;
    machine = machine_create(&config, &err);
    if (!machine) {
        CHECK(0, "machine without rng: %s", err.message);
        return;
    }
    blob = build(machine);
    CHECK(fdt_path_offset(blob, "/soc/virtio_mmio@10008000") < 0, "entropy device node without the device");
    CHECK(fdt_path_offset(blob, "/soc/rtc@101000") >= 0, "no RTC node without the entropy device");
    free(blob);
    machine_destroy(machine);
}

/* Four disks and four NICs fill all eight slots: refused with the entropy
 * device (it takes the last), accepted without it. */
static void test_full_slots(void)
{
    char directory[] = "/tmp/device_tree_test.XXXXXX";
    if (!mkdtemp(directory)) {
        CHECK(0, "mkdtemp");
        return;
    }
    struct machine_config config;
    machine_config_defaults(&config);
    config.ram_size = 16u << 20;
    config.console_output_fd = -1;
    config.disk_count = 4;
    config.nic_count = 4;
    for (unsigned i = 0; i < 4; i++) {
        snprintf(config.disks[i].path, sizeof config.disks[i].path, "%s/disk%u.img", directory, i);
        FILE *file = fopen(config.disks[i].path, "wb");
        if (file) {
            fseek(file, 4095, SEEK_SET);
            fputc(0, file);
            fclose(file);
        }
        config.nics[i].mac[5] = (uint8_t)i;
    }
    struct error err;
    struct machine *machine = machine_create(&config, &err);
    CHECK(!machine && strstr(err.message, "entropy"), "8 devices and the entropy device: %s",
          machine ? "accepted" : err.message);
    machine_destroy(machine);
    config.rng = false;
    machine = machine_create(&config, &err);
    CHECK(machine != NULL, "8 devices without the entropy device: %s", machine ? "" : err.message);
    machine_destroy(machine);
    for (unsigned i = 0; i < 4; i++)
        unlink(config.disks[i].path);
    rmdir(directory);
}

int main(void)
{
    test_rng_seed();
    test_nodes();
    test_full_slots();
    return test_check_finish("device_tree_test");
}
