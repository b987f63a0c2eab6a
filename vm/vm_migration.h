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

struct vm_replication;
struct stream_reader;

/* What the "migrate" command works with; its owner (struct vm) keeps it
 * for as long as the control socket runs. */
struct vm_migration_source {
    struct vm_control *control;
    /* A survivor's shifted TCP connections go along
     * (vm_replication_save_shifted_connections). */
    struct vm_replication *replication;
};

/* Registers "migrate" on the VM's control socket. */
int vm_migration_register(struct vm_migration_source *source, struct error *err);

/* Waits for one incoming migration on `address` and loads it into
 * `machine` (not running), then announces its MACs. With copy_disks the
 * source must send the disks too ("migrate" with "copy_disks"), written
 * into the machine's images; without, it must not (shared storage): a
 * mismatch fails on both sides. A survivor's shifted TCP connections that
 * came along are handed to `replication` (vm_replication_take_shifted_connections).
 * Prints what it does on stderr with `name` as the prefix. */
int vm_migration_receive(struct machine *machine, const char *address, const char *name, bool copy_disks,
                         struct vm_replication *replication, struct error *err);

#endif
