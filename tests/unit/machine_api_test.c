/* What the layers above see of a machine: the accessors of machine.h and
 * the devices' stats, on a machine whose disk (over an image file) and NIC
 * (without a backend) come from its configuration, as `colo run` makes
 * them.
 * Prints "FAIL: ..." for each failed check and exits 1 if any failed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine.h"
#include "virtio_blk.h"
#include "virtio_net.h"

#include "test_check.h"
#include "test_machine.h"

#define RAM_SIZE (4u << 20)

static void make_image(const char *path, size_t length)
{
    FILE *file = fopen(path, "wb");
    if (!file || fseek(file, (long)length - 1, SEEK_SET) != 0 || fputc(0, file) == EOF || fclose(file) != 0) {
        printf("FAIL: cannot create %s\n", path);
        exit(1);
    }
}

static void test_ram(struct machine *machine)
{
    CHECK(machine_ram_size(machine) == RAM_SIZE, "RAM size %llu", (unsigned long long)machine_ram_size(machine));
    CHECK(machine_get_config(machine)->ram_size == RAM_SIZE, "configured RAM size differs");
    uint64_t pages = machine_ram_page_count(machine);
    CHECK(pages == RAM_SIZE / GUEST_PAGE_SIZE, "%llu pages", (unsigned long long)pages);
    CHECK(machine_dirty_bitmap_words(machine) == (pages + 63) / 64, "%zu bitmap words",
          machine_dirty_bitmap_words(machine));
    CHECK(machine_ram_page(machine, pages - 1) != NULL && machine_ram_page(machine, pages) == NULL,
          "pages inside and just outside RAM");
    static const uint8_t data[4] = { 1, 2, 3, 4 };
    CHECK(machine_ram_write(machine, MACHINE_RAM_BASE + 5 * GUEST_PAGE_SIZE + 8, data, sizeof data) == 0,
          "RAM write failed");
    CHECK(memcmp(machine_ram_page(machine, 5) + 8, data, sizeof data) == 0, "a write does not show in its page");

    CHECK(!machine_dirty_log_enabled(machine), "dirty log on in a fresh machine");
    machine_dirty_log_enable(machine, true);
    CHECK(machine_dirty_log_enabled(machine), "dirty log not on after enabling it");
    machine_preimages_enable(machine, true);
    CHECK(machine_ram_write(machine, MACHINE_RAM_BASE, data, sizeof data) == 0 && machine_preimage_count(machine) == 1,
          "%zu pre-images after writing one page", machine_preimage_count(machine));
    machine_dirty_log_enable(machine, false);
}

static void test_harts(struct machine *machine)
{
    CHECK(machine_instructions_retired(machine) == 0, "a machine that never ran retired %llu instructions",
          (unsigned long long)machine_instructions_retired(machine));
    CHECK(machine_exit_code(machine) == 0, "exit code %u before any exit", machine_exit_code(machine));
    CHECK(machine_hart_hash(machine) == machine_hart_hash(machine), "the hart hash changes by itself");
}

static void test_devices(struct machine *machine, struct machine *other, const char *image)
{
    CHECK(machine_disk_count(machine) == 1 && machine_nic_count(machine) == 1, "%u disks, %u NICs",
          machine_disk_count(machine), machine_nic_count(machine));
    CHECK(machine_disk(machine, 0) != NULL && machine_disk(machine, 1) == NULL, "disk accessors");
    struct virtio_net *nic = machine_nic(machine, 0);
    CHECK(nic != NULL && machine_nic(machine, 1) == NULL, "NIC accessors");
    CHECK(machine_nic_index(machine, nic) == 0, "the NIC's index is %d", machine_nic_index(machine, nic));
    CHECK(machine_nic_index(machine, machine_nic(other, 0)) == -1, "another machine's NIC has an index here");

    struct virtio_blk_stats disk;
    virtio_blk_get_stats(machine_disk(machine, 0), &disk);
    CHECK(disk.path && strcmp(disk.path, image) == 0 && !disk.read_only, "disk stats: %s, read-only %d",
          disk.path ? disk.path : "(none)", disk.read_only);
    CHECK(disk.read_requests == 0 && disk.write_requests == 0 && disk.flush_requests == 0 && disk.failed_requests == 0,
          "a fresh disk has counted requests");

    /* No backend: frames go nowhere, and that is not an error. */
    virtio_net_announce(nic);
    struct virtio_net_stats stats;
    virtio_net_get_stats(nic, &stats);
    static const uint8_t mac[6] = TEST_MACHINE_MAC;
    CHECK(memcmp(stats.mac, mac, sizeof mac) == 0, "NIC stats: another MAC");
    CHECK(stats.backend[0] == 0, "NIC stats: backend '%s' without one", stats.backend);
    CHECK(stats.transmit_errors == 0 && stats.received_frames == 0 && stats.transmitted_frames == 0,
          "NIC stats: counters %llu/%llu/%llu", (unsigned long long)stats.transmit_errors,
          (unsigned long long)stats.received_frames, (unsigned long long)stats.transmitted_frames);
}

int main(void)
{
    char directory[] = "/tmp/machine_api_test.XXXXXX";
    if (!mkdtemp(directory)) {
        printf("FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char image[64];
    snprintf(image, sizeof image, "%s/disk.img", directory);
    make_image(image, 64 * 512);

    struct machine *machine = test_machine_create(&(struct test_machine_options){
        .ram_size = RAM_SIZE, .deterministic_time = true, .disk_image = image, .nic = true });
    /* The same image again, read-only, and a NIC of its own. */
    struct machine *other = test_machine_create(&(struct test_machine_options){
        .ram_size = RAM_SIZE, .disk_image = image, .disk_read_only = true, .nic = true });
    test_ram(machine);
    test_harts(machine);
    test_devices(machine, other, image);
    struct virtio_blk_stats disk;
    virtio_blk_get_stats(machine_disk(other, 0), &disk);
    CHECK(disk.read_only, "a read-only disk's stats say read-write");
    test_machine_destroy(other);
    test_machine_destroy(machine);

    unlink(image);
    rmdir(directory);
    return test_check_finish("machine_api_test");
}
