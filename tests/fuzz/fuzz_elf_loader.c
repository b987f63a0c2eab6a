/* libFuzzer target: the ELF loader must reject any malformed file with an
 * error, never crash or read outside the file, and load only into RAM. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "machine.h"

static struct machine machine;
static int file_descriptor = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (file_descriptor < 0) {
        struct machine_config config;
        machine_config_defaults(&config);
        config.ram_size = 1u << 20;
        config.console_output_fd = -1;
        struct error err;
        if (machine_create(&machine, &config, &err) < 0)
            abort();
        /* An in-memory file: the loader reads by path, like `colo run`. */
        file_descriptor = memfd_create("fuzz-elf", 0);
        if (file_descriptor < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", file_descriptor);
    }
    if (ftruncate(file_descriptor, 0) < 0 || pwrite(file_descriptor, data, size, 0) != (ssize_t)size)
        abort();
    struct error err;
    (void)machine_load_elf(&machine, path, &err);
    return 0;
}
