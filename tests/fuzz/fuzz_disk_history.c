/* libFuzzer target: an image's history sidecar (disk/disk_history.h,
 * disk_history_parse), whatever a crash, a full disk or another program
 * left in IMAGE.colo-history. Anything is either refused with a reason
 * (the history is then unknown and the sync compares hashes), or a
 * history that encodes back to exactly the bytes read: never a crash,
 * never a history the parser made up. */
#include <stdlib.h>
#include <string.h>

#include "disk_history.h"
#include "fuzz_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct disk_history history;
    struct disk_history_stamp stamp;
    char why[200];
    why[0] = '\0';
    if (!disk_history_parse(data, size, &history, &stamp, why, sizeof why)) {
        if (!why[0])
            abort(); /* a refusal says why */
        return 0;
    }
    uint8_t encoded[DISK_HISTORY_FILE_LENGTH];
    disk_history_encode(&history, &stamp, encoded);
    if (size != sizeof encoded || memcmp(encoded, data, size) != 0)
        abort();
    return 0;
}
