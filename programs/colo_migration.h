/* `colo migrate NAME HOST:PORT`: the client that asks a running VM to
 * migrate (vm/vm_migration.c does it) and shows its progress. */
#ifndef COLO_PROGRAMS_COLO_MIGRATION_H
#define COLO_PROGRAMS_COLO_MIGRATION_H

/* `colo migrate NAME HOST:PORT [--max-downtime MS] [--max-rounds N]
 * [--copy-disks]`. */
int colo_migrate_main(int argc, char **argv);

#endif
