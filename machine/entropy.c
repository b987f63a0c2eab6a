/* Host entropy and the deterministic splitmix64 stream (entropy.h). */
#include "entropy.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

size_t entropy_host_fill(void *buffer, size_t length)
{
    uint8_t *bytes = buffer;
    size_t done = 0;
    while (done < length) {
        /* Blocks only until the host's pool is initialised (early boot);
         * requests above 256 bytes may be cut short by a signal. */
        ssize_t got = getrandom(bytes + done, length - done, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        done += (size_t)got;
    }
    return done;
}

/* splitmix64 (Steele, Lea, Flood 2014): a Weyl sequence through a mixer. */
static uint64_t splitmix64_next(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ull;
    uint64_t mixed = *state;
    mixed = (mixed ^ (mixed >> 30)) * 0xbf58476d1ce4e5b9ull;
    mixed = (mixed ^ (mixed >> 27)) * 0x94d049bb133111ebull;
    return mixed ^ (mixed >> 31);
}

void entropy_deterministic_fill(uint64_t *state, void *buffer, size_t length)
{
    uint8_t *bytes = buffer;
    while (length > 0) {
        uint64_t word = splitmix64_next(state);
        size_t chunk = length < 8 ? length : 8;
        /* Little-endian whatever the host is: the same bytes everywhere. */
        for (size_t i = 0; i < chunk; i++)
            bytes[i] = (uint8_t)(word >> (8 * i));
        bytes += chunk;
        length -= chunk;
    }
}

size_t entropy_fill(bool deterministic, uint64_t *state, void *buffer, size_t length)
{
    if (deterministic) {
        entropy_deterministic_fill(state, buffer, length);
        return length;
    }
    return entropy_host_fill(buffer, length);
}
