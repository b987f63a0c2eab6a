/* `colo metrics NAME`: a VM's status reply (the JSON object `colo status
 * --json` prints) as Prometheus text exposition format 0.0.4, for a
 * scraper (node_exporter's textfile collector, a cron job with curl).
 *
 * colo_metrics.c holds one table that maps a path in the status JSON to a
 * metric family: its name (units in the name: _seconds, _bytes; counters
 * end in _total), its type (counter for totals that only grow, gauge
 * otherwise), an optional fixed label (quantile="0.5", cause="payload")
 * and its HELP text. A new figure in the status JSON is one line there
 * (docs/control.md, "Metrics"). Pure: no I/O beyond the returned text. */
#ifndef COLO_PROGRAMS_COLO_METRICS_H
#define COLO_PROGRAMS_COLO_METRICS_H

#include <jansson.h>

/* The metrics of one VM: every sample carries vm="VM_NAME". A figure that
 * is missing from the status (an unprotected VM has no "replication") is
 * left out, and so is a family with no samples. Strings become the labels
 * of an info-style gauge of value 1. Returns a malloc'd text of complete
 * lines, or NULL when out of memory. */
char *colo_metrics_format(const char *vm_name, const json_t *status);

#endif
