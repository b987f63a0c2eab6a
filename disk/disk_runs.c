#include "disk_runs.h"

int disk_run_stager_flush(struct disk_run_stager *stager, struct error *err)
{
    if (stager->length == 0)
        return 0;
    int result = stager->hand_over(stager->opaque, stager->offset, stager->buffer, stager->length, err);
    stager->length = 0;
    return result < 0 ? result : 0;
}

uint8_t *disk_run_stager_reserve(struct disk_run_stager *stager, uint64_t offset, size_t length, int *result,
                                 struct error *err)
{
    if (stager->length > 0 &&
        (stager->offset + stager->length != offset || stager->length + length > stager->capacity)) {
        *result = disk_run_stager_flush(stager, err);
        if (*result < 0)
            return NULL;
    }
    if (stager->length == 0)
        stager->offset = offset;
    uint8_t *room = stager->buffer + stager->length;
    stager->length += length;
    *result = 0;
    return room;
}
