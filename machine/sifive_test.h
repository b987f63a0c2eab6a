/* sifive_test at 0x100000: a 32-bit write of 0x5555 powers off, 0x7777
 * resets, code<<16 | 0x3333 exits with that code. */
#ifndef COLO_MACHINE_SIFIVE_TEST_H
#define COLO_MACHINE_SIFIVE_TEST_H

#include <stdbool.h>
#include <stdint.h>

struct machine;

struct sifive_test {
    struct machine *machine; /* no guest-visible state of its own */
};

void sifive_test_init(struct sifive_test *device, struct machine *machine);
bool sifive_test_read(struct sifive_test *device, uint64_t offset, unsigned size, uint64_t *value);
bool sifive_test_write(struct sifive_test *device, uint64_t offset, unsigned size, uint64_t value);

#endif
