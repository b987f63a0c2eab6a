/* pvpanic-mmio: the guest's "I panicked" doorbell (pvpanic.h). */
#include "pvpanic.h"

#include "machine_devices.h"

void pvpanic_init(struct pvpanic *device, struct machine *machine)
{
    device->machine = machine;
}

bool pvpanic_read(struct pvpanic *device, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)device;
    if (offset != 0 || size != 1)
        return false;
    /* The guest's driver reads this at probe and only sends events that
     * are listed here. */
    *value = PVPANIC_SUPPORTED_EVENTS;
    return true;
}

bool pvpanic_write(struct pvpanic *device, uint64_t offset, unsigned size, uint64_t value)
{
    if (offset != 0 || size != 1)
        return false;
    /* A panicked kernel never gets further; with a crash kernel loaded
     * (CRASH_LOADED without PANICKED) the guest goes on to it, and we let
     * it. */
    if (value & PVPANIC_PANICKED)
        machine_guest_exit(device->machine, MACHINE_EXIT_GUEST_PANIC, 0);
    return true;
}
