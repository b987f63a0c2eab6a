/* sifive_test ("SiFive test finisher"): one 32-bit register at offset 0
 * (16-bit accesses reach its low half)
 * through which a guest ends the run. The low 16 bits select the action;
 * for an exit with a code, the code is in the high 16 bits. */
#include "sifive_test.h"

#include "machine_devices.h"

#define SIFIVE_TEST_EXIT_CODE 0x3333u /* exit with code = value >> 16 (QEMU calls it FAIL) */
#define SIFIVE_TEST_POWEROFF 0x5555u  /* QEMU calls it PASS */
#define SIFIVE_TEST_RESET 0x7777u

void sifive_test_init(struct sifive_test *device, struct machine *machine)
{
    device->machine = machine;
}

bool sifive_test_read(struct sifive_test *device, uint64_t offset, unsigned size, uint64_t *value)
{
    (void)device;
    if (offset != 0 || (size != 2 && size != 4))
        return false;
    *value = 0;
    return true;
}

bool sifive_test_write(struct sifive_test *device, uint64_t offset, unsigned size, uint64_t value)
{
    /* OpenSBI writes the command with a 16-bit store (writew); an exit code
     * needs the full 32 bits. */
    if (offset != 0 || (size != 2 && size != 4))
        return false;
    uint32_t command = (uint32_t)value;
    switch (command & 0xffffu) {
    case SIFIVE_TEST_POWEROFF:
        machine_guest_exit(device->machine, MACHINE_EXIT_POWEROFF, 0);
        break;
    case SIFIVE_TEST_RESET:
        machine_guest_exit(device->machine, MACHINE_EXIT_RESET, 0);
        break;
    case SIFIVE_TEST_EXIT_CODE:
        machine_guest_exit(device->machine, MACHINE_EXIT_CODE, command >> 16);
        break;
    default:
        /* Unknown commands do nothing, as on the real device; the write
         * itself still succeeds (it is a valid register). */
        break;
    }
    return true;
}
