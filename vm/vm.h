/* One VM service (DESIGN.md, "vm"): a struct vm is the machine, its
 * control socket with the server side of every request (status, pause,
 * resume, quit, save, migrate, protect, checkpoint, failover), and its
 * replication role. It owns the lifecycle: build the machine (boot a
 * Linux VM from its configuration, load a bare-metal ELF, restore a save
 * file, receive a migration, or wait as a COLO secondary), run it, rebuild
 * it after a guest reboot, and say how the run ended (an exit status).
 *
 * `colo run` and its siblings are vm_create + vm_run + vm_destroy. */
#ifndef COLO_VM_VM_H
#define COLO_VM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* What builds the VM's first machine. */
enum vm_start {
    VM_START_BOOT,      /* a Linux VM from config_path */
    VM_START_ELF,       /* a bare-metal program (elf_path) */
    VM_START_RESTORE,   /* a save file (load_path; config_path optional) */
    VM_START_RECEIVE,   /* an incoming live migration (listen_address, config_path) */
    VM_START_SECONDARY, /* a COLO secondary (listen_address, config_path) */
};

struct vm_options {
    enum vm_start start;
    const char *config_path; /* VM.cfg */
    const char *elf_path;
    const char *load_path;
    const char *listen_address;
    bool copy_disks;            /* receive: the disks come with the migration */
    const char *name;           /* NULL: the configuration's, else the file's base name */
    const char *control_socket; /* NULL: $COLO_RUN_DIR/NAME.sock */
    bool start_paused;
    uint64_t memory_mib; /* without a VM.cfg or save file (checked: 0 is an error) */
    bool deterministic;
    uint64_t instructions_per_tick; /* with deterministic time; at least 1 */
    uint64_t max_instructions;      /* 0: no limit */
    int heartbeat_timeout_ms;       /* secondary */
    bool cluster;                   /* takeovers follow Corosync (--cluster corosync) */
    bool print_state;               /* pc, instret and hashes on stderr at the end */
    const char *save_on_exit;       /* save the machine here when the run ends */
};

/* Exit statuses of vm_run (and of vm_create's failures). */
enum {
    VM_EXIT_OK = 0,
    VM_EXIT_RUNTIME_ERROR = 1,
    VM_EXIT_USAGE = 2,      /* a configuration or option that cannot work */
    VM_EXIT_STOOD_DOWN = 3, /* the other copy owns the VM (the cluster's verdict): this one stopped */
    /* `colo secondary`: its primary's guest rebooted, so the pair ended
     * (no takeover); the primary runs on unprotected: start a secondary
     * and protect again. */
    VM_EXIT_PRIMARY_REBOOTED = 4,
    VM_EXIT_INTERRUPTED = 130, /* Ctrl-C, SIGTERM */
};

struct vm;

/* Reads the configuration or save file, checks the memory size, opens the
 * control socket and registers every command. On failure returns the exit
 * status it deserves (VM_EXIT_USAGE or VM_EXIT_RUNTIME_ERROR) with err set;
 * else 0. */
int vm_create(struct vm **vm, const struct vm_options *options, struct error *err);
/* Builds and runs the machine until the VM ends (a guest reboot builds a
 * new one); prints what ended it on stderr; returns the exit status (the
 * program's own for a bare-metal exit code). */
int vm_run(struct vm *vm);
/* From any thread (a signal handler's thread): stop at the next instruction
 * boundary, as an interruption (exit status 130), not a quit. */
void vm_interrupt(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Letters, digits, '-', '_' and '.', 1..63 characters: what a VM name may
 * be (it names a file in the run directory). */
bool vm_name_is_valid(const char *name);
/* A VM's default name from a file: its base name without the extension
 * ("tests/ticker.elf" -> "ticker"). */
int vm_name_from_path(const char *path, char *name, size_t size, struct error *err);

#endif
