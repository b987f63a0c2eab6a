#include "machine_boot.h"

#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "entropy.h"
#include "machine_devices.h"

#define DEVICE_TREE_MAX_SIZE (64u << 10)
#define PHANDLE_CPU_INTERRUPT_CONTROLLER 1
#define PHANDLE_PLIC 2
#define PHANDLE_TEST_DEVICE 3
/* OpenSBI's fw_jump moves the device tree to RAM base + 0x2200000 before
 * jumping to Linux; nothing we load may overlap it. */
#define FIRMWARE_DEVICE_TREE_OFFSET 0x2200000ull
/* /chosen/rng-seed: Linux credits it at early boot, so its crng is ready
 * before any device is probed. 64 bytes is what the kernel's own boot
 * seeds carry. */
#define RNG_SEED_BYTES 64

/* ---- the device tree ---- */

struct tree_builder {
    void *blob;
    int status; /* first libfdt error, 0 if none */
};

static void check(struct tree_builder *tree, int status)
{
    if (status < 0 && tree->status == 0)
        tree->status = status;
}

static void begin(struct tree_builder *tree, const char *name)
{
    check(tree, fdt_begin_node(tree->blob, name));
}

static void end(struct tree_builder *tree)
{
    check(tree, fdt_end_node(tree->blob));
}

static void property_string(struct tree_builder *tree, const char *name, const char *value)
{
    check(tree, fdt_property_string(tree->blob, name, value));
}

static void property_u32(struct tree_builder *tree, const char *name, uint32_t value)
{
    check(tree, fdt_property_u32(tree->blob, name, value));
}

static void property_empty(struct tree_builder *tree, const char *name)
{
    check(tree, fdt_property(tree->blob, name, NULL, 0));
}

/* A property made of 32-bit cells. */
static void property_cells(struct tree_builder *tree, const char *name, const uint32_t *cells, unsigned count)
{
    fdt32_t encoded[16];
    for (unsigned i = 0; i < count && i < 16; i++)
        encoded[i] = cpu_to_fdt32(cells[i]);
    check(tree, fdt_property(tree->blob, name, encoded, (int)(count * sizeof(fdt32_t))));
}

/* "reg" with two address cells and two size cells. */
static void property_reg(struct tree_builder *tree, uint64_t address, uint64_t size)
{
    uint32_t cells[4] = { (uint32_t)(address >> 32), (uint32_t)address, (uint32_t)(size >> 32), (uint32_t)size };
    property_cells(tree, "reg", cells, 4);
}

/* A string list: "a\0b\0". */
static void property_strings(struct tree_builder *tree, const char *name, const char *joined, size_t length)
{
    check(tree, fdt_property(tree->blob, name, joined, (int)length));
}

int machine_build_device_tree(struct machine *machine, const char *cmdline, uint64_t initrd_start, uint64_t initrd_end,
                              void **blob_out, size_t *size_out, struct error *err)
{
    /* Deterministic time: the same seed every run (runs must be
     * identical); else the host's entropy. */
    uint8_t rng_seed[RNG_SEED_BYTES];
    uint64_t seed_state = ENTROPY_SEED_DEVICE_TREE;
    if (entropy_fill(machine->config.deterministic_time, &seed_state, rng_seed, sizeof rng_seed) != sizeof rng_seed)
        return error_set_errno(err, "cannot get %d bytes of host entropy for the device tree's rng-seed",
                               RNG_SEED_BYTES);
    struct tree_builder tree = { calloc(1, DEVICE_TREE_MAX_SIZE), 0 };
    if (!tree.blob)
        return error_set(err, "out of memory for the device tree");
    char name[64];
    check(&tree, fdt_create(tree.blob, DEVICE_TREE_MAX_SIZE));
    check(&tree, fdt_finish_reservemap(tree.blob));
    begin(&tree, "");
    property_u32(&tree, "#address-cells", 2);
    property_u32(&tree, "#size-cells", 2);
    property_string(&tree, "compatible", "riscv-virtio");
    property_string(&tree, "model", "riscv-virtio,colo");

    begin(&tree, "chosen");
    property_string(&tree, "bootargs", cmdline ? cmdline : "");
    snprintf(name, sizeof name, "/soc/serial@%llx", (unsigned long long)MACHINE_UART_BASE);
    property_string(&tree, "stdout-path", name);
    if (initrd_end > initrd_start) {
        check(&tree, fdt_property_u64(tree.blob, "linux,initrd-start", initrd_start));
        check(&tree, fdt_property_u64(tree.blob, "linux,initrd-end", initrd_end));
    }
    check(&tree, fdt_property(tree.blob, "rng-seed", rng_seed, sizeof rng_seed));
    end(&tree);

    snprintf(name, sizeof name, "memory@%llx", (unsigned long long)machine->ram.base);
    begin(&tree, name);
    property_string(&tree, "device_type", "memory");
    property_reg(&tree, machine->ram.base, machine->ram.size);
    end(&tree);

    begin(&tree, "cpus");
    property_u32(&tree, "#address-cells", 1);
    property_u32(&tree, "#size-cells", 0);
    property_u32(&tree, "timebase-frequency", (uint32_t)MACHINE_TIMEBASE_HZ);
    for (unsigned i = 0; i < machine->config.hart_count; i++) {
        snprintf(name, sizeof name, "cpu@%u", i);
        begin(&tree, name);
        property_string(&tree, "device_type", "cpu");
        property_u32(&tree, "reg", i);
        property_string(&tree, "status", "okay");
        property_string(&tree, "compatible", "riscv");
        property_string(&tree, "riscv,isa", "rv64imafdc_zicsr_zifencei");
        property_string(&tree, "mmu-type", "riscv,sv39");
        begin(&tree, "interrupt-controller");
        property_u32(&tree, "#interrupt-cells", 1);
        property_empty(&tree, "interrupt-controller");
        property_string(&tree, "compatible", "riscv,cpu-intc");
        property_u32(&tree, "phandle", PHANDLE_CPU_INTERRUPT_CONTROLLER + i * 16);
        end(&tree);
        end(&tree);
    }
    end(&tree);

    begin(&tree, "soc");
    property_u32(&tree, "#address-cells", 2);
    property_u32(&tree, "#size-cells", 2);
    property_string(&tree, "compatible", "simple-bus");
    property_empty(&tree, "ranges");

    snprintf(name, sizeof name, "clint@%llx", (unsigned long long)MACHINE_CLINT_BASE);
    begin(&tree, name);
    static const char clint_compatible[] = "sifive,clint0\0riscv,clint0";
    property_strings(&tree, "compatible", clint_compatible, sizeof clint_compatible);
    property_reg(&tree, MACHINE_CLINT_BASE, MACHINE_CLINT_SIZE);
    uint32_t clint_interrupts[4] = { PHANDLE_CPU_INTERRUPT_CONTROLLER, INTERRUPT_MACHINE_SOFTWARE,
                                     PHANDLE_CPU_INTERRUPT_CONTROLLER, INTERRUPT_MACHINE_TIMER };
    property_cells(&tree, "interrupts-extended", clint_interrupts, 4);
    end(&tree);

    snprintf(name, sizeof name, "plic@%llx", (unsigned long long)MACHINE_PLIC_BASE);
    begin(&tree, name);
    static const char plic_compatible[] = "sifive,plic-1.0.0\0riscv,plic0";
    property_strings(&tree, "compatible", plic_compatible, sizeof plic_compatible);
    property_u32(&tree, "#address-cells", 0);
    property_u32(&tree, "#interrupt-cells", 1);
    property_empty(&tree, "interrupt-controller");
    property_reg(&tree, MACHINE_PLIC_BASE, PLIC_SIZE);
    property_u32(&tree, "riscv,ndev", PLIC_SOURCE_COUNT - 1);
    uint32_t plic_interrupts[4] = { PHANDLE_CPU_INTERRUPT_CONTROLLER, INTERRUPT_MACHINE_EXTERNAL,
                                    PHANDLE_CPU_INTERRUPT_CONTROLLER, INTERRUPT_SUPERVISOR_EXTERNAL };
    property_cells(&tree, "interrupts-extended", plic_interrupts, 4);
    property_u32(&tree, "phandle", PHANDLE_PLIC);
    end(&tree);

    snprintf(name, sizeof name, "serial@%llx", (unsigned long long)MACHINE_UART_BASE);
    begin(&tree, name);
    property_string(&tree, "compatible", "ns16550a");
    property_reg(&tree, MACHINE_UART_BASE, MACHINE_UART_SIZE);
    property_u32(&tree, "clock-frequency", 3686400);
    property_u32(&tree, "interrupt-parent", PHANDLE_PLIC);
    property_u32(&tree, "interrupts", MACHINE_UART_IRQ);
    end(&tree);

    snprintf(name, sizeof name, "test@%llx", (unsigned long long)MACHINE_SIFIVE_TEST_BASE);
    begin(&tree, name);
    static const char test_compatible[] = "sifive,test1\0sifive,test0\0syscon";
    property_strings(&tree, "compatible", test_compatible, sizeof test_compatible);
    property_reg(&tree, MACHINE_SIFIVE_TEST_BASE, MACHINE_SIFIVE_TEST_SIZE);
    property_u32(&tree, "phandle", PHANDLE_TEST_DEVICE);
    end(&tree);

    snprintf(name, sizeof name, "pvpanic@%llx", (unsigned long long)MACHINE_PVPANIC_BASE);
    begin(&tree, name);
    property_string(&tree, "compatible", "qemu,pvpanic-mmio");
    property_reg(&tree, MACHINE_PVPANIC_BASE, MACHINE_PVPANIC_SIZE);
    end(&tree);

    snprintf(name, sizeof name, "rtc@%llx", (unsigned long long)MACHINE_RTC_BASE);
    begin(&tree, name);
    property_string(&tree, "compatible", "google,goldfish-rtc");
    property_reg(&tree, MACHINE_RTC_BASE, MACHINE_RTC_SIZE);
    property_u32(&tree, "interrupt-parent", PHANDLE_PLIC);
    property_u32(&tree, "interrupts", MACHINE_RTC_IRQ);
    end(&tree);

    /* Linux probes virtio-mmio nodes in tree order; list them in slot
     * order so the first disk is vda and the first NIC eth0. */
    for (unsigned slot = 0; slot < VIRTIO_MMIO_SLOTS; slot++) {
        if (!machine->virtio_slots[slot])
            continue;
        uint64_t base = VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_STRIDE;
        snprintf(name, sizeof name, "virtio_mmio@%llx", (unsigned long long)base);
        begin(&tree, name);
        property_string(&tree, "compatible", "virtio,mmio");
        property_reg(&tree, base, VIRTIO_MMIO_STRIDE);
        property_u32(&tree, "interrupt-parent", PHANDLE_PLIC);
        property_u32(&tree, "interrupts", VIRTIO_MMIO_FIRST_IRQ + slot);
        end(&tree);
    }
    end(&tree); /* soc */

    begin(&tree, "poweroff");
    property_string(&tree, "compatible", "syscon-poweroff");
    property_u32(&tree, "regmap", PHANDLE_TEST_DEVICE);
    property_u32(&tree, "offset", 0);
    property_u32(&tree, "value", 0x5555);
    end(&tree);
    begin(&tree, "reboot");
    property_string(&tree, "compatible", "syscon-reboot");
    property_u32(&tree, "regmap", PHANDLE_TEST_DEVICE);
    property_u32(&tree, "offset", 0);
    property_u32(&tree, "value", 0x7777);
    end(&tree);

    end(&tree); /* root */
    check(&tree, fdt_finish(tree.blob));
    if (tree.status < 0) {
        free(tree.blob);
        return error_set(err, "building the device tree failed: %s", fdt_strerror(tree.status));
    }
    *blob_out = tree.blob;
    *size_out = fdt_totalsize(tree.blob);
    return 0;
}

/* ---- loading ---- */

/* Reads a whole boot file, refusing one that is not a regular file, is
 * empty, or is larger than max_size (which `room` explains: where it would
 * have to fit) before reading any of it. */
static int read_whole_file(const char *path, const char *what, uint64_t max_size, const char *room, uint8_t **data,
                           size_t *size, struct error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "cannot open %s %s", what, path);
    struct stat info;
    if (fstat(fd, &info) < 0 || !S_ISREG(info.st_mode)) {
        close(fd);
        return error_set(err, "%s %s is not a regular file", what, path);
    }
    if (info.st_size == 0) {
        close(fd);
        return error_set(err, "%s %s is empty (0 bytes)", what, path);
    }
    if ((uint64_t)info.st_size > max_size) {
        close(fd);
        return error_set(err, "%s %s is too large: %llu MiB, and at most %llu MiB fit %s", what, path,
                         (unsigned long long)((uint64_t)info.st_size >> 20), (unsigned long long)(max_size >> 20),
                         room);
    }
    *size = (size_t)info.st_size;
    *data = malloc(*size);
    if (!*data) {
        close(fd);
        return error_set(err, "out of memory reading %s %s", what, path);
    }
    size_t done = 0;
    while (done < *size) {
        ssize_t got = read(fd, *data + done, *size - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            free(*data);
            *data = NULL;
            close(fd);
            if (got == 0)
                return error_set(err, "%s %s ended early (it shrank while being read)", what, path);
            return error_set_errno(err, "cannot read %s %s", what, path);
        }
        done += (size_t)got;
    }
    close(fd);
    return 0;
}

/* The RISC-V Linux Image header (Documentation/riscv/boot-image-header.rst):
 * 64 bytes, with magic2 "RSC\x05" at 56 (the older magic "RISCV" at 48 is
 * deprecated, so not required) and, at 16, the size the kernel needs in
 * memory from its load address (its BSS included). */
#define IMAGE_HEADER_SIZE 64
#define IMAGE_HEADER_SIZE_OFFSET 16
#define IMAGE_HEADER_MAGIC2_OFFSET 56

static int check_kernel_image(const char *path, const uint8_t *image, size_t size, uint64_t *memory_size,
                              struct error *err)
{
    /* The usual wrong files, named, so the fix is obvious. */
    if (size >= 4 && memcmp(image,
                            "\x7f"
                            "ELF",
                            4) == 0)
        return error_set(
            err, "kernel %s is an ELF file (vmlinux?), not a RISC-V Linux Image: give arch/riscv/boot/Image", path);
    if (size >= 2 && image[0] == 0x1f && image[1] == 0x8b)
        return error_set(err, "kernel %s is gzip-compressed (Image.gz?): give the uncompressed Image", path);
    if (size < IMAGE_HEADER_SIZE)
        return error_set(err, "kernel %s is not a RISC-V Linux Image: %zu bytes, shorter than the %d-byte Image header",
                         path, size, IMAGE_HEADER_SIZE);
    if (memcmp(image + IMAGE_HEADER_MAGIC2_OFFSET, "RSC\x05", 4) != 0)
        return error_set(err,
                         "kernel %s is not a RISC-V Linux Image (no \"RSC\\x05\" magic at offset %d of its header)",
                         path, IMAGE_HEADER_MAGIC2_OFFSET);
    uint64_t needed = 0;
    for (int i = 7; i >= 0; i--) /* little-endian whatever the host */
        needed = needed << 8 | image[IMAGE_HEADER_SIZE_OFFSET + i];
    *memory_size = needed > size ? needed : size;
    return 0;
}

int machine_boot_linux(struct machine *machine, const struct machine_boot_config *boot, struct error *err)
{
    struct guest_ram *ram = &machine->ram;
    uint64_t ram_end = ram->base + ram->size;
    if (ram->size < FIRMWARE_DEVICE_TREE_OFFSET + (16u << 20))
        return error_set(err, "%llu MiB of RAM is too little to boot Linux (at least %llu MiB)",
                         (unsigned long long)(ram->size >> 20),
                         (unsigned long long)((FIRMWARE_DEVICE_TREE_OFFSET >> 20) + 16));

    /* Every input is read and checked before any of it goes into RAM, so
     * a bad one is an error naming it, never a guest that hangs early. The
     * kernel runs where it is loaded and must end below where the firmware
     * puts the device tree; the device tree, then the initrd, go at the
     * top of RAM, above that. */
    uint8_t *kernel = NULL, *initrd = NULL;
    size_t kernel_size = 0, initrd_size = 0;
    uint64_t kernel_memory = 0;
    uint64_t kernel_room = ram->base + FIRMWARE_DEVICE_TREE_OFFSET - MACHINE_KERNEL_ADDRESS;
    uint64_t tree_address = (ram_end - DEVICE_TREE_MAX_SIZE) & ~0xfffull;
    uint64_t initrd_lowest = ram->base + FIRMWARE_DEVICE_TREE_OFFSET + DEVICE_TREE_MAX_SIZE;
    uint64_t initrd_room = (tree_address - initrd_lowest) & ~0xfffull;
    char initrd_room_text[96];
    snprintf(initrd_room_text, sizeof initrd_room_text, "in %llu MiB of RAM beside the kernel and device tree",
             (unsigned long long)(ram->size >> 20));
    int result = -1;
    if (read_whole_file(boot->kernel, "kernel", kernel_room, "below the firmware's device tree", &kernel, &kernel_size,
                        err) < 0 ||
        check_kernel_image(boot->kernel, kernel, kernel_size, &kernel_memory, err) < 0)
        goto done;
    if (kernel_memory > kernel_room) {
        error_set(err,
                  "kernel %s needs %llu MiB (its Image header's image_size), more than the %llu MiB that fit "
                  "below the firmware's device tree",
                  boot->kernel, (unsigned long long)(kernel_memory >> 20), (unsigned long long)(kernel_room >> 20));
        goto done;
    }
    if (boot->initrd &&
        read_whole_file(boot->initrd, "initrd", initrd_room, initrd_room_text, &initrd, &initrd_size, err) < 0)
        goto done;
    if (machine_load_elf(machine, boot->firmware, err) < 0) {
        error_prefix(err, "firmware: ");
        goto done;
    }

    machine_ram_write(machine, MACHINE_KERNEL_ADDRESS, kernel, kernel_size);
    uint64_t initrd_start = 0, initrd_end = 0;
    if (initrd) {
        initrd_start = (tree_address - initrd_size) & ~0xfffull;
        initrd_end = initrd_start + initrd_size;
        machine_ram_write(machine, initrd_start, initrd, initrd_size);
    }

    void *tree;
    size_t tree_size;
    if (machine_build_device_tree(machine, boot->cmdline, initrd_start, initrd_end, &tree, &tree_size, err) < 0)
        goto done;
    machine_ram_write(machine, tree_address, tree, tree_size);
    free(tree);

    for (unsigned i = 0; i < machine->config.hart_count; i++) {
        machine->harts[i].state.x[10] = i;            /* a0: hart id */
        machine->harts[i].state.x[11] = tree_address; /* a1: device tree */
    }
    result = 0;
done:
    free(kernel);
    free(initrd);
    return result;
}
