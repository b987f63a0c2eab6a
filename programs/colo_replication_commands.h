/* The COLO clients of the `colo` program: `colo protect`, `colo
 * checkpoint` and `colo failover` send their command to the VM's control
 * socket (vm/vm_replication*.c serves them). */
#ifndef COLO_PROGRAMS_COLO_REPLICATION_COMMANDS_H
#define COLO_PROGRAMS_COLO_REPLICATION_COMMANDS_H

int colo_protect_main(int argc, char **argv);
int colo_checkpoint_main(int argc, char **argv);
int colo_failover_main(int argc, char **argv);
int colo_switchover_main(int argc, char **argv);
/* `colo keygen psk FILE`: a new pre-shared key for a pair. */
int colo_keygen_main(int argc, char **argv);

#endif
