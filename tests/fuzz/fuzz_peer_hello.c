/* libFuzzer target: the pairing hello a secondary reads from whoever
 * connects (cluster/peer_pairing.h), before or after authentication.
 * Anything is either rejected with a message or a hello that re-encodes
 * to the very bytes read: never a crash, never a hello accepted with bytes
 * the encoder would not write. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "peer_pairing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly the input's length, so ASan sees any overread. */
    uint8_t *buffer = malloc(size ? size : 1);
    if (!buffer)
        return 0;
    memcpy(buffer, data, size);
    struct peer_hello hello;
    struct error err;
    err.message[0] = '\0';
    if (peer_hello_parse(buffer, size, &hello, &err) == 0) {
        if (hello.channel != PEER_CHANNEL_STREAM && hello.channel != PEER_CHANNEL_MIRROR)
            abort();
        uint8_t again[PEER_HELLO_SIZE];
        peer_hello_encode(&hello, again);
        /* The secondary reads exactly PEER_HELLO_SIZE bytes; a longer input
         * is judged by its first ones. */
        if (size < PEER_HELLO_SIZE || memcmp(again, buffer, PEER_HELLO_SIZE) != 0)
            abort();
    } else if (err.message[0] == '\0') {
        abort(); /* refused without saying why */
    }
    free(buffer);
    return 0;
}
