/* Booting Linux the way QEMU virt does: OpenSBI (fw_jump) at the start of
 * RAM in M-mode, the kernel Image at 0x80200000, an initramfs and a device
 * tree near the top of RAM, a0 = hart id, a1 = device tree address. */
#ifndef COLO_MACHINE_MACHINE_BOOT_H
#define COLO_MACHINE_MACHINE_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct machine;

#define MACHINE_KERNEL_ADDRESS 0x80200000ull
#define MACHINE_DEFAULT_FIRMWARE_PATH "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf"

struct machine_boot_config {
    const char *firmware; /* OpenSBI fw_jump ELF */
    const char *kernel;   /* RISC-V Linux Image */
    const char *initrd;   /* may be NULL */
    const char *cmdline;  /* may be NULL */
};

/* Builds the device tree of the configured machine into a malloc'd blob
 * (caller frees). */
int machine_build_device_tree(struct machine *machine, const char *cmdline, uint64_t initrd_start, uint64_t initrd_end,
                              void **blob, size_t *size, struct error *err);

/* Loads firmware, kernel, initrd and device tree and points the hart at
 * the firmware. Errors name the file and what was wrong. */
int machine_boot_linux(struct machine *machine, const struct machine_boot_config *boot, struct error *err);

#endif
