/* The `colo` subcommands that talk to a running VM over its control socket:
 * status, metrics, pause, resume, save, quit, events (docs/control.md). */
#ifndef COLO_PROGRAMS_COLO_CLIENT_H
#define COLO_PROGRAMS_COLO_CLIENT_H

#include <stdbool.h>
#include <stdio.h>

/* Runs `colo COMMAND ARGS...` (argv holds the ARGS); returns the exit
 * status: 0, 1 for an error (no such VM, no answer, an error reply), 2 for
 * a usage error. */
int colo_client_main(const char *command, int argc, char **argv);
/* Their part of `colo help`. */
void colo_client_print_usage(FILE *out);

#endif
