/* The demo guest: greets, then does a little of everything a program does
 * (arithmetic, memory, time) and reports what the machine saw. */
#include "runtime.h"

static uint32_t primes[2000];

int main(void)
{
    guest_puts("Hello from a RISC-V guest running on colo's machine.\n");
    uint64_t start_instret = guest_read_instret();
    uint64_t start_time = guest_read_mtime();

    unsigned found = 0;
    for (uint32_t candidate = 2; found < sizeof primes / sizeof primes[0]; candidate++) {
        int prime = 1;
        for (unsigned i = 0; i < found && primes[i] * primes[i] <= candidate; i++) {
            if (candidate % primes[i] == 0) {
                prime = 0;
                break;
            }
        }
        if (prime)
            primes[found++] = candidate;
        if (found % 500 == 0 && prime) {
            guest_puts("  found ");
            guest_put_decimal(found);
            guest_puts(" primes, the last is ");
            guest_put_decimal(candidate);
            guest_puts("\n");
        }
    }
    uint64_t instructions = guest_read_instret() - start_instret;
    uint64_t ticks = guest_read_mtime() - start_time;
    guest_puts("Done: ");
    guest_put_decimal(instructions);
    guest_puts(" instructions, ");
    guest_put_decimal(ticks / 10);
    guest_puts(" microseconds of guest time.\n");
    return 0;
}
