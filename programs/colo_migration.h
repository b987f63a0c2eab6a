/* Live migration in the `colo` program: the "migrate" control command of a
 * running VM (the source), `colo migrate NAME HOST:PORT` (the client that
 * starts it and shows its progress), and the receiving side used by
 * `colo receive --listen ADDR:PORT VM.cfg`. */
#ifndef COLO_PROGRAMS_COLO_MIGRATION_H
#define COLO_PROGRAMS_COLO_MIGRATION_H

#include "colo_vm_control.h"
#include "error.h"
#include "machine.h"

/* Registers "migrate" on the VM's control socket. */
int colo_migration_register(struct vm_control *control, struct error *err);

/* `colo migrate NAME HOST:PORT [--max-downtime MS] [--max-rounds N]`. */
int colo_migrate_main(int argc, char **argv);

/* Waits for one incoming migration on `address` and loads it into
 * `machine` (not running), then announces its MACs. Prints what it does on
 * stderr with `name` as the prefix. */
int colo_migration_receive(struct machine *machine, const char *address, const char *name, struct error *err);

#endif
