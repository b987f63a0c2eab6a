/* libFuzzer target: the takeover messages a colo process receives from
 * its Corosync group (cluster/corosync_engine.h), whatever another member
 * of the group sends. Anything is either rejected or a claim or sync that
 * re-encodes to the very same bytes: never a crash, never a message
 * accepted with bytes the encoder would not write. */
#include <stdlib.h>
#include <string.h>

#include "corosync_engine.h"
#include "fuzz_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly the input's length, so ASan sees any overread. */
    uint8_t *buffer = malloc(size ? size : 1);
    if (!buffer)
        return 0;
    memcpy(buffer, data, size);
    enum corosync_message_kind kind;
    uint64_t epoch;
    if (corosync_message_decode(buffer, size, &kind, &epoch) == 0) {
        if (kind != COROSYNC_MESSAGE_CLAIM && kind != COROSYNC_MESSAGE_SYNC)
            abort();
        uint8_t again[COROSYNC_MESSAGE_SIZE];
        corosync_message_encode(again, kind, epoch);
        if (size != COROSYNC_MESSAGE_SIZE || memcmp(again, buffer, size) != 0)
            abort(); /* accepted something the encoder would not write */
    }
    free(buffer);
    return 0;
}
