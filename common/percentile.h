/* Percentiles of a short history of durations (checkpoint downtimes, the
 * comparing proxy's waits), as status and metrics report them. */
#ifndef COLO_COMMON_PERCENTILE_H
#define COLO_COMMON_PERCENTILE_H

#include <stddef.h>
#include <stdint.h>

/* The nearest-rank percentile of values[0..count): the smallest value with
 * at least percent % of them at or below it. Sorts values in place; 0 for
 * no values. */
uint64_t percentile_nearest_rank(uint64_t *values, size_t count, double percent);

#endif
