/* pvpanic-mmio at 0x102000 (device tree compatible "qemu,pvpanic-mmio"):
 * how a guest kernel built with CONFIG_PVPANIC_MMIO tells the host it
 * panicked, so the VM ends with MACHINE_EXIT_GUEST_PANIC instead of
 * spinning in the kernel's panic loop. One 8-bit register at offset 0: a
 * read gives the events the device supports, a write reports events. */
#ifndef COLO_MACHINE_PVPANIC_H
#define COLO_MACHINE_PVPANIC_H

#include <stdbool.h>
#include <stdint.h>

#define PVPANIC_PANICKED 0x1u     /* the guest kernel panicked */
#define PVPANIC_CRASH_LOADED 0x2u /* it panicked and a kdump kernel takes over */
#define PVPANIC_SUPPORTED_EVENTS (PVPANIC_PANICKED | PVPANIC_CRASH_LOADED)

struct machine;

struct pvpanic {
    struct machine *machine; /* no guest-visible state of its own */
};

void pvpanic_init(struct pvpanic *device, struct machine *machine);
/* Only 1-byte accesses at offset 0 exist (Linux uses ioread8/iowrite8);
 * anything else is refused (false: an access fault). */
bool pvpanic_read(struct pvpanic *device, uint64_t offset, unsigned size, uint64_t *value);
/* PANICKED ends the run; CRASH_LOADED alone lets the guest carry on into
 * its crash kernel; other bits are ignored. */
bool pvpanic_write(struct pvpanic *device, uint64_t offset, unsigned size, uint64_t value);

#endif
