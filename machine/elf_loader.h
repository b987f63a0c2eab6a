/* Loads a bare-metal RISC-V ELF64 into guest RAM at its physical (LMA)
 * addresses. Checks everything it reads: a missing, truncated, non-ELF,
 * non-RISC-V or 32-bit file, or a segment outside RAM, is an error that
 * names the file and what was wrong. */
#ifndef COLO_MACHINE_ELF_LOADER_H
#define COLO_MACHINE_ELF_LOADER_H

#include <stdint.h>

#include "error.h"

struct machine;

struct elf_load_result {
    uint64_t entry;
    uint64_t tohost_address; /* 0 when there is no `tohost` symbol */
};

int elf_load(struct machine *machine, const char *path, struct elf_load_result *result, struct error *err);

#endif
