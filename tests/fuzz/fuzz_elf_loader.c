/* libFuzzer target: the ELF loader must reject any malformed file with an
 * error, never crash or read outside the file, and load only into RAM. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_target.h"
#include "machine.h"
#include "test_machine.h"

static struct machine *machine;
static int file_descriptor = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (file_descriptor < 0) {
        machine = test_machine_create(&(struct test_machine_options){ .ram_size = 1u << 20 });
        /* An in-memory file: the loader reads by path, like `colo run`. */
        file_descriptor = memfd_create("fuzz-elf", 0);
        if (file_descriptor < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", file_descriptor);
    }
    if (ftruncate(file_descriptor, 0) < 0 || pwrite(file_descriptor, data, size, 0) != (ssize_t)size)
        abort();
    struct error err;
    (void)machine_load_elf(machine, path, &err);
    return 0;
}
