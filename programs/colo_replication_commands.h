/* COLO replication in the `colo` program (docs/replication.md,
 * "The colo commands"):
 *
 *   colo secondary --listen ADDR:PORT VM.cfg   builds the SVM and runs the
 *       secondary loop until the primary goes away, then fails over
 *   colo protect NAME HOST:PORT [--interval MS] the "protect" command of a
 *       running VM: initial live copy, then the checkpoint loop
 *   colo failover NAME                          the "failover" command of a
 *       secondary: ends replication now and runs the SVM as a plain VM
 *
 * The network part is the minimum that keeps the world consistent: the
 * PVM's output is held until the SVM has applied the next checkpoint, the
 * frames the PVM reads from its TAP are mirrored to the SVM over a second
 * connection, and the SVM's NIC neither sends nor reads its TAP until
 * failover. */
#ifndef COLO_PROGRAMS_COLO_REPLICATION_H
#define COLO_PROGRAMS_COLO_REPLICATION_H

#include "colo_vm_control.h"
#include "error.h"
#include "machine.h"

/* Registers "protect", "failover" and the "replication" status fields. */
int colo_replication_register(struct vm_control *control, const char *name, struct error *err);

/* `colo secondary`, on the main thread, with `machine` created (its TAPs
 * attached) but not run yet: mutes its NICs, waits for the primary's two
 * connections on `address`, pauses the machine once and starts the
 * secondary loop on its own thread, plus a monitor thread that fails over
 * when the loop ends. The caller then runs the machine. */
/* heartbeat_timeout_ms: silence on the mirror connection (which carries
 * a heartbeat every 20 ms) after which the primary is taken for dead; 0
 * relies on the connections breaking. */
int colo_replication_start_secondary(struct vm_control *control, struct machine *machine,
                                     const char *address, const char *name, int heartbeat_timeout_ms,
                                     struct error *err);
/* After the machine's run: true when the secondary refused to fail over
 * (the run then ended by our stop request, and colo exits non-zero). */
bool colo_replication_failover_refused(void);
/* Right after the machine's run returned (quit, power off, reboot), before
 * vm_control_machine_stopped: a primary's loop is told to stop (the
 * secondary then takes the VM over: replication does not yet tell it the
 * VM ended on purpose), a secondary's threads are ended, so that nothing
 * uses the machine once it is destroyed. */
void colo_replication_machine_stopped(void);

/* The clients: `colo protect ...`, `colo checkpoint ...` and `colo failover ...`. */
int colo_protect_main(int argc, char **argv);
int colo_checkpoint_main(int argc, char **argv);
int colo_failover_main(int argc, char **argv);

#endif
