/* COLO for one VM (docs/replication.md, "The colo commands"): the
 * replication role of a struct vm and the server side of its control
 * commands:
 *
 *   protect NAME HOST:PORT   a running VM becomes a primary: the initial
 *                            live copy, then the checkpoint loop
 *   checkpoint               one checkpoint now, answered with its report
 *   failover                 a secondary ends replication and runs the SVM
 *                            as a plain VM
 *
 * and `colo secondary`'s start (vm_replication_start_secondary). The
 * pieces come from the layers below: the loops and the takeover
 * (replication/), the output buffer, the committed output and the mirror
 * (proxy/, each a checkpoint device), the heartbeat and the failure
 * detector (cluster/). This file only wires them to one VM. */
#ifndef COLO_VM_VM_REPLICATION_H
#define COLO_VM_VM_REPLICATION_H

#include <stdbool.h>
#include <stddef.h>

#include "colo_protocol.h"
#include "error.h"
#include "vm_control.h"

struct machine;
struct peer_auth_config;
struct vm_replication;
struct stream_reader;
struct stream_writer;

/* Registers "protect", "checkpoint", "failover" and the "replication"
 * status fields. cluster: takeovers follow Corosync's membership and
 * quorum (the group "colo-NAME"; vm_replication_cluster.c); false: a
 * suspicion acts alone and split brain is possible. */
int vm_replication_create(struct vm_replication **replication, struct vm_control *control, const char *name,
                          bool cluster, struct error *err);
void vm_replication_destroy(struct vm_replication *replication);
/* How the replication peers authenticate (VM.cfg's replication_* keys;
 * NULL: not configured, so protect and `colo secondary` refuse). Loaded
 * from the files at each protect and `colo secondary`. */
void vm_replication_set_auth(struct vm_replication *replication, const struct peer_auth_config *auth);
/* `colo keygen psk`: a new key file for a pair (cluster/peer_credentials.h). */
int vm_replication_generate_psk(const char *path, const char *identity, struct error *err);

/* A survivor's VM that moves by a plain live migration (vm_migration.c)
 * or a save file: connections opened just before a failover keep the dead
 * primary's sequence numbers on the wire only because the survivor's host
 * shifts them (docs/proxy.md), so they go along. The source's
 * migration_options.stop_and_copy_records, or a save file's records'
 * write (opaque: the replication), VM paused: a TCP_SHIFT record if this
 * host shifts any. The destination (or the restore), its VM received but
 * not yet running: takes the record of the reader's last run, if any, and
 * shifts those connections from now on. Returns how many connections it
 * took, or -1 with err set. */
int vm_replication_save_shifted_connections(void *opaque, struct stream_writer *writer, struct error *err);
int vm_replication_take_shifted_connections(struct vm_replication *replication, struct machine *machine,
                                            const struct stream_reader *reader, struct error *err);
/* What a save file of this VM carries beyond the machine (the shifted
 * connections above): for `colo save` and for --save-on-exit alike. */
struct vm_save_file_records vm_replication_save_records(struct vm_replication *replication);

/* `colo secondary`, with `machine` created (its backends attached) but not
 * run yet: mutes its NICs, waits for the primary's two connections on
 * `address`, pauses the machine once and starts the secondary loop on its
 * own thread, plus the failover monitor. The caller then runs the machine.
 * heartbeat_timeout_ms: silence on the mirror connection (a heartbeat
 * every HEARTBEAT_INTERVAL_MS) after which the primary is taken for dead;
 * 0 relies on the connections breaking. */
int vm_replication_start_secondary(struct vm_replication *replication, struct machine *machine, const char *address,
                                   int heartbeat_timeout_ms, struct error *err);
/* After the machine's run: true when the secondary refused to fail over
 * (the run then ended by its stop request). */
bool vm_replication_failover_refused(struct vm_replication *replication);
/* After the machine's run: true when this copy stood down because the
 * other owns the VM (the cluster's verdict), with why. */
bool vm_replication_stood_down(struct vm_replication *replication, char *reason, size_t size);
/* Whether this primary handed the VM over (`colo switchover`) and stopped
 * for good, and the line that says so. */
bool vm_replication_switched_over(struct vm_replication *replication, char *line, size_t size);
/* Right after the machine's run returned, before
 * vm_replication_machine_stopped, when the VM ends on purpose (a guest
 * poweroff or reboot, `colo quit`): a primary's loop will tell its
 * secondary (PRIMARY_ENDING), which then ends without taking over. */
void vm_replication_vm_ending(struct vm_replication *replication, enum colo_ending_reason reason);
/* Right after the machine's run returned (quit, power off, reboot), before
 * vm_control_machine_stopped: a primary's loop is told to stop (the
 * secondary takes the VM over, unless vm_replication_vm_ending said the VM
 * ends on purpose), a secondary's threads are ended, so that nothing uses
 * the machine once it is destroyed. */
void vm_replication_machine_stopped(struct vm_replication *replication);
/* A guest reboot, after vm_control_machine_stopped (the loops have let go
 * of the machine) and before the machine is destroyed and a new one
 * built: the output buffer hooks this machine's NICs, so it goes with
 * them (with a survivor's shifted connections, which the reboot ended);
 * the next protect sets one up on the new machine. */
void vm_replication_machine_replaced(struct vm_replication *replication);
/* After a secondary's run: true when it ended because the primary ended
 * the VM on purpose (no takeover), the primary's reason in *reason. */
bool vm_replication_primary_ended(struct vm_replication *replication, enum colo_ending_reason *reason);
/* `colo secondary` was asked to end (quit, SIGTERM) before a primary
 * connected: wakes its wait (vm_replication_start_secondary then returns
 * with no loop started, and the machine stops as it starts). Any thread. */
void vm_replication_stop_waiting(struct vm_replication *replication);
/* After the run: true for a secondary that has no VM of its own to run
 * (it did not take over): a guest reset must not boot a fresh VM there. */
bool vm_replication_secondary_without_vm(struct vm_replication *replication);
/* A VM about to run on its images (colo run, a restore, a guest reboot):
 * each writable image whose history (disk/disk_history.h) is valid gets
 * its writes tracked from there when `track` (a later protect whose
 * secondary holds that same history sends only those), and every
 * history is removed, since the image changes from now on. The machine
 * is built, not running. A migration's destination passes track false. */
void vm_replication_start_disks(struct vm_replication *replication, struct machine *machine, bool track);
/* The images are now exactly the last checkpoint's: record it (each
 * image's IMAGE.colo-history). Called when the VM ends on purpose (the
 * primary after its loop ended with the PVM stopped, the secondary told
 * by PRIMARY_ENDING), and by a switchover on the old primary once its
 * PVM is paused after the final checkpoint. A primary whose disks were
 * written after the last checkpoint records nothing. 1: recorded; 0: not
 * (logged why); -1: a failure (logged). Posts "disk history recorded" or
 * "disk history unknown". */
int vm_replication_record_disk_history(struct vm_replication *replication);
/* After a secondary's run: true when it ended while waiting for a primary. */
bool vm_replication_stopped_waiting(struct vm_replication *replication);

#endif
