#include "percentile.h"

#include <stdlib.h>

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t percentile_nearest_rank(uint64_t *values, size_t count, double percent)
{
    if (count == 0)
        return 0;
    qsort(values, count, sizeof values[0], compare_u64);
    double rank = percent / 100.0 * (double)count;
    size_t index = rank <= 1.0 ? 0 : (size_t)(rank + 0.999999) - 1;
    return values[index < count ? index : count - 1];
}
