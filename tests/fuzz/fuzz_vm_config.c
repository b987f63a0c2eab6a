/* libFuzzer target: the VM config parser must turn any text into either a
 * config or an error that names the file and a line, never a crash. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "vm_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct vm_config config;
    struct error err = { "" };
    if (vm_config_parse_text((const char *)data, size, "fuzz.cfg", "/base", &config, &err) < 0) {
        if (strncmp(err.message, "fuzz.cfg", 8) != 0)
            abort(); /* every error starts with the file name */
    } else if (!config.name[0] || !config.kernel[0] || config.memory_mib < 64) {
        abort(); /* accepted configs have what a VM needs */
    }
    return 0;
}
