/* Live migration of one VM: the "migrate" control command of a running VM
 * (the source; progress as "migration" events) and the receiving side of
 * `colo receive --listen ADDR:PORT VM.cfg`. */
#ifndef COLO_VM_VM_MIGRATION_H
#define COLO_VM_VM_MIGRATION_H

#include "error.h"
#include "vm_control.h"

struct machine;

/* Registers "migrate" on the VM's control socket. */
int vm_migration_register(struct vm_control *control, struct error *err);

/* Waits for one incoming migration on `address` and loads it into
 * `machine` (not running), then announces its MACs. Prints what it does on
 * stderr with `name` as the prefix. */
int vm_migration_receive(struct machine *machine, const char *address, const char *name, struct error *err);

#endif
