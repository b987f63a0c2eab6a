/* Live migration of one VM: the "migrate" control command of a running VM
 * (the source; progress as "migration" events; "copy_disks": true moves
 * the disks too) and the receiving side of
 * `colo receive --listen ADDR:PORT VM.cfg [--copy-disks]`. */
#ifndef COLO_VM_VM_MIGRATION_H
#define COLO_VM_VM_MIGRATION_H

#include <stdbool.h>

#include "error.h"
#include "vm_control.h"

struct machine;

/* Registers "migrate" on the VM's control socket. */
int vm_migration_register(struct vm_control *control, struct error *err);

/* Waits for one incoming migration on `address` and loads it into
 * `machine` (not running), then announces its MACs. With copy_disks the
 * source must send the disks too ("migrate" with "copy_disks"), written
 * into the machine's images; without, it must not (shared storage): a
 * mismatch fails on both sides. Prints what it does on stderr with `name`
 * as the prefix. */
int vm_migration_receive(struct machine *machine, const char *address, const char *name, bool copy_disks,
                         struct error *err);

#endif
