/* One VM service: its lifecycle (vm.h). */
#include "vm.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine.h"
#include "machine_boot.h"
#include "peer_credentials.h"
#include "vm_config.h"
#include "vm_control.h"
#include "vm_migration.h"
#include "vm_replication.h"
#include "vm_save_file.h"

struct vm {
    struct vm_options options;
    char name[64];
    struct vm_config *config; /* NULL: a bare-metal program */
    struct machine_config machine_config;
    struct vm_save_file save_file;
    struct vm_control *control;
    struct vm_replication *replication;
    struct vm_migration_source migration_source; /* the "migrate" command's */
    struct machine *machine;                     /* the current one, or NULL between runs */
    atomic_bool interrupted;                     /* see vm_interrupt */
};

/* The configuration: from VM.cfg, or the one a save file carries (a save
 * file rebuilds its VM: TAPs, disks, MACs). */
/* VM.cfg's replication_* keys, for the replication's peers. */
static void set_replication_auth(struct vm *vm)
{
    static const enum peer_auth kinds[] = {
        [VM_REPLICATION_AUTH_UNSET] = PEER_AUTH_UNSET,
        [VM_REPLICATION_AUTH_PSK] = PEER_AUTH_PSK,
        [VM_REPLICATION_AUTH_CERTIFICATE] = PEER_AUTH_CERTIFICATE,
        [VM_REPLICATION_AUTH_NONE] = PEER_AUTH_NONE,
    };
    struct peer_auth_config *auth = calloc(1, sizeof *auth);
    if (!auth)
        return; /* unset: protect says how to configure it */
    auth->auth = kinds[vm->config->replication_auth];
    snprintf(auth->psk_path, sizeof auth->psk_path, "%s", vm->config->replication_psk);
    snprintf(auth->certificate_path, sizeof auth->certificate_path, "%s", vm->config->replication_certificate);
    snprintf(auth->key_path, sizeof auth->key_path, "%s", vm->config->replication_key);
    snprintf(auth->ca_path, sizeof auth->ca_path, "%s", vm->config->replication_ca);
    vm_replication_set_auth(vm->replication, auth);
    free(auth);
}

static int read_configuration(struct vm *vm, struct error *err)
{
    bool from_save_file = !vm->options.config_path && vm->save_file.config_text && vm->save_file.config_text[0];
    if (!vm->options.config_path && !from_save_file)
        return 0;
    vm->config = malloc(sizeof *vm->config);
    if (!vm->config)
        return error_set(err, "out of memory");
    char source[4200];
    snprintf(source, sizeof source, "%s (the configuration saved in it)",
             vm->options.load_path ? vm->options.load_path : "");
    int parsed = from_save_file ? vm_config_parse_text(vm->save_file.config_text, strlen(vm->save_file.config_text),
                                                       source, "", vm->config, err)
                                : vm_config_parse_file(vm->options.config_path, vm->config, err);
    if (parsed < 0) {
        free(vm->config);
        vm->config = NULL;
        return -1;
    }
    struct machine_config *config = &vm->machine_config;
    config->disk_count = vm->config->disk_count;
    memcpy(config->disks, vm->config->disks, sizeof config->disks);
    config->nic_count = vm->config->nic_count;
    memcpy(config->nics, vm->config->nics, sizeof config->nics);
    if (vm->config->console == VM_CONSOLE_STDIO)
        config->console_input_fd = STDIN_FILENO;
    else
        config->console_output_fd = -1;
    return 0;
}

/* RAM sits at 0x80000000 and must end below 2^39 (the Sv39 physical reach
 * we support) and fit the host. */
static int check_memory(const struct vm *vm, uint64_t memory_mib, struct error *err)
{
    long host_pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    uint64_t host_mib = host_pages > 0 && page_size > 0 ? (uint64_t)host_pages * (uint64_t)page_size >> 20 : UINT64_MAX;
    uint64_t limit = UINT64_C(256) << 10;
    if (memory_mib >= 1 && memory_mib <= host_mib && memory_mib <= limit)
        return 0;
    return error_set(err,
                     "%s %" PRIu64 " MiB does not fit: it must be 1..%" PRIu64 " MiB (this host has %" PRIu64 " MiB)",
                     vm->config ? "memory" : "--memory", memory_mib, host_mib < limit ? host_mib : limit, host_mib);
}

int vm_create(struct vm **result, const struct vm_options *options, struct error *err)
{
    *result = NULL;
    struct vm *vm = calloc(1, sizeof *vm);
    if (!vm) {
        error_set(err, "out of memory");
        return VM_EXIT_RUNTIME_ERROR;
    }
    vm->options = *options;
    vm->save_file.fd = -1;
    atomic_init(&vm->interrupted, false);
    machine_config_defaults(&vm->machine_config);
    vm->machine_config.deterministic_time = options->deterministic;
    vm->machine_config.instructions_per_tick = options->instructions_per_tick;
    vm->machine_config.console_output_fd = STDOUT_FILENO;
    uint64_t memory_mib = options->memory_mib;

    int status = VM_EXIT_RUNTIME_ERROR;
    if (options->load_path) {
        if (vm_save_file_open(&vm->save_file, options->load_path, err) < 0)
            goto fail;
        memory_mib = vm->save_file.ram_size >> 20;
    }
    status = VM_EXIT_USAGE;
    if (read_configuration(vm, err) < 0)
        goto fail;
    if (vm->config)
        memory_mib = vm->config->memory_mib;
    if (check_memory(vm, memory_mib, err) < 0)
        goto fail;
    vm->machine_config.ram_size = memory_mib << 20;

    if (options->name || vm->config) {
        snprintf(vm->name, sizeof vm->name, "%s", options->name ? options->name : vm->config->name);
    } else if (vm_name_from_path(options->elf_path ? options->elf_path : options->load_path, vm->name, sizeof vm->name,
                                 err) < 0) {
        goto fail;
    }
    status = VM_EXIT_RUNTIME_ERROR;
    struct vm_control_options control_options = {
        .name = vm->name,
        .socket_path = options->control_socket,
        .start_paused = options->start_paused,
        .config = vm->config,
    };
    if (vm_control_create(&vm->control, &control_options, err) < 0 ||
        vm_replication_create(&vm->replication, vm->control, vm->name, vm->options.cluster, err) < 0)
        goto fail;
    vm->migration_source = (struct vm_migration_source){ vm->control, vm->replication };
    if (vm_migration_register(&vm->migration_source, err) < 0)
        goto fail;
    if (vm->config)
        set_replication_auth(vm);
    *result = vm;
    return 0;
fail:
    vm_destroy(vm);
    return status;
}

/* A save file's records, once its stream was applied: a survivor's shifted
 * TCP connections (vm_replication.h). A table that cannot be taken costs
 * those connections, never the VM. */
static int take_shifted_connections(void *opaque, struct machine *machine, const struct stream_reader *reader,
                                    struct error *err)
{
    (void)err;
    struct vm *vm = opaque;
    struct error cause = { "" };
    int count = vm_replication_take_shifted_connections(vm->replication, machine, reader, &cause);
    if (count < 0)
        fprintf(stderr, "colo run: %s: the save file's shifted TCP connections were not taken (%s): they break\n",
                vm->name, cause.message);
    else if (count > 0)
        fprintf(stderr, "colo run: %s: %d TCP connection(s) shifted as when saved (since a failover)\n", vm->name,
                count);
    return 0;
}

/* Builds this run's machine: the first run as the options say, a run after
 * a guest reboot boots afresh. */
static int build_machine(struct vm *vm, bool first_run, struct error *err)
{
    vm->machine = machine_create(&vm->machine_config, err);
    if (!vm->machine)
        return -1;
    const struct vm_options *options = &vm->options;
    enum vm_start start = first_run ? options->start : VM_START_BOOT;
    /* A secondary's images are the initial sync's (it reads their
     * histories for it); any other start changes them from here on. */
    if (start != VM_START_SECONDARY)
        vm_replication_start_disks(vm->replication, vm->machine, start != VM_START_RECEIVE);
    switch (start) {
    case VM_START_SECONDARY:
        /* The SVM: built here, filled and run by the secondary loop. */
        return vm_replication_start_secondary(vm->replication, vm->machine, options->listen_address,
                                              options->heartbeat_timeout_ms, err);
    case VM_START_RECEIVE:
        return vm_migration_receive(vm->machine, options->listen_address, vm->name, options->copy_disks,
                                    vm->replication, err);
    case VM_START_RESTORE: {
        struct vm_save_file_records records = { .opaque = vm, .loaded = take_shifted_connections };
        int loaded = vm_save_file_load(&vm->save_file, vm->machine, options->load_path, &records, err);
        vm_save_file_close(&vm->save_file);
        return loaded;
    }
    case VM_START_BOOT: {
        struct machine_boot_config boot = {
            .firmware = vm->config->firmware,
            .kernel = vm->config->kernel,
            .initrd = vm->config->initrd[0] ? vm->config->initrd : NULL,
            .cmdline = vm->config->cmdline,
        };
        return machine_boot_linux(vm->machine, &boot, err);
    }
    case VM_START_ELF:
        return machine_load_elf(vm->machine, options->elf_path, err);
    }
    abort();
}

static void destroy_machine(struct vm *vm)
{
    machine_destroy(vm->machine);
    vm->machine = NULL;
}

/* The command the operator ran, for messages. */
static const char *program_name(const struct vm *vm)
{
    return vm->options.start == VM_START_SECONDARY ? "colo secondary"
           : vm->options.start == VM_START_RECEIVE ? "colo receive"
                                                   : "colo run";
}

/* A guest kernel panic (pvpanic): one line that names the files an
 * operator should look at, a root disk that does not mount being the
 * usual cause. */
static void report_guest_panic(const struct vm *vm)
{
    const char *program = program_name(vm);
    if (!vm->config) {
        fprintf(stderr, "colo run: %s: the guest panicked (pvpanic); program %s\n", vm->name,
                vm->options.elf_path ? vm->options.elf_path : vm->options.load_path);
        return;
    }
    char disks[MACHINE_MAX_DISKS * 4100] = "none";
    size_t used = 0;
    for (unsigned i = 0; i < vm->config->disk_count; i++)
        used += (size_t)snprintf(disks + used, sizeof disks - used, "%s%s", i ? ", " : "", vm->config->disks[i].path);
    fprintf(stderr, "%s: %s: the guest's kernel panicked (%s); kernel %s, disks: %s\n", program, vm->name,
            vm->config->console == VM_CONSOLE_STDIO ? "see the console above" : "its console is off",
            vm->config->kernel, disks);
}

/* A `colo secondary` that ended without a VM to run: its primary ended the
 * VM on purpose, or it was asked to stop before a primary came. */
static bool secondary_end_on_purpose(struct vm *vm, int *status)
{
    enum colo_ending_reason reason;
    if (vm_replication_primary_ended(vm->replication, &reason)) {
        fprintf(stderr, "colo secondary: %s: the primary ended the VM on purpose (%s); no takeover%s\n", vm->name,
                colo_ending_reason_name(reason),
                reason == COLO_ENDING_REBOOT ? " (the primary runs on unprotected after its reboot: start a "
                                               "secondary and protect it again; exit status 4)"
                                             : "");
        *status = reason == COLO_ENDING_REBOOT ? VM_EXIT_PRIMARY_REBOOTED : VM_EXIT_OK;
        return true;
    }
    if (vm_replication_stopped_waiting(vm->replication)) {
        fprintf(stderr, "colo secondary: %s: stopped while waiting for a primary\n", vm->name);
        *status = VM_EXIT_OK;
        return true;
    }
    return false;
}

/* Whether the run's end is the VM's end on purpose (a protected primary's
 * secondary then ends too instead of taking over), and why. A panic or an
 * interruption (SIGTERM) is not: the secondary takes over as today. */
static bool ends_on_purpose(struct vm *vm, enum machine_exit_reason reason, bool reboot, enum colo_ending_reason *why)
{
    switch (reason) {
    case MACHINE_EXIT_RESET:
        *why = reboot ? COLO_ENDING_REBOOT : COLO_ENDING_POWEROFF;
        return true;
    case MACHINE_EXIT_POWEROFF:
    case MACHINE_EXIT_CODE:
    case MACHINE_EXIT_INSTRUCTION_LIMIT:
        *why = COLO_ENDING_POWEROFF;
        return true;
    case MACHINE_EXIT_STOPPED:
        *why = COLO_ENDING_QUIT;
        return vm_control_quit_requested(vm->control);
    case MACHINE_EXIT_GUEST_PANIC:
    case MACHINE_RUNNING:
        break;
    }
    return false;
}

/* What the run's end means for the program. */
static int exit_status(struct vm *vm, enum machine_exit_reason reason)
{
    int status;
    if (vm->options.start == VM_START_SECONDARY && reason != MACHINE_EXIT_GUEST_PANIC &&
        secondary_end_on_purpose(vm, &status))
        return status;
    switch (reason) {
    case MACHINE_EXIT_POWEROFF:
        return VM_EXIT_OK;
    case MACHINE_EXIT_RESET:
        fprintf(stderr, "colo run: the guest asked for a reset; stopping\n");
        return VM_EXIT_OK;
    case MACHINE_EXIT_CODE:
        return (int)(machine_exit_code(vm->machine) & 0xff);
    case MACHINE_EXIT_INSTRUCTION_LIMIT:
        return VM_EXIT_OK;
    case MACHINE_EXIT_STOPPED: {
        /* quit (or save) from the control socket ends the VM cleanly;
         * Ctrl-C or SIGTERM interrupts it. */
        char why[600];
        if (vm_replication_switched_over(vm->replication, why, sizeof why)) {
            fprintf(stderr, "%s: %s: %s\n", program_name(vm), vm->name, why);
            return VM_EXIT_OK;
        }
        if (vm_replication_stood_down(vm->replication, why, sizeof why)) {
            fprintf(stderr, "colo %s: %s: stopped: %s (the other copy owns the VM)\n",
                    vm->options.start == VM_START_SECONDARY ? "secondary" : "run", vm->name, why);
            return VM_EXIT_STOOD_DOWN;
        }
        if (vm->options.start == VM_START_SECONDARY && vm_replication_failover_refused(vm->replication)) {
            fprintf(stderr,
                    "colo secondary: %s: stopped: the primary went away before the initial copy was "
                    "complete, so there is no VM to fail over to\n",
                    vm->name);
            return VM_EXIT_RUNTIME_ERROR;
        }
        if (vm_control_quit_requested(vm->control)) {
            fprintf(stderr, "colo run: %s stopped by its control socket\n", vm->name);
            return VM_EXIT_OK;
        }
        fprintf(stderr, "colo run: stopped\n");
        return VM_EXIT_INTERRUPTED;
    }
    case MACHINE_EXIT_GUEST_PANIC:
        report_guest_panic(vm);
        return VM_EXIT_RUNTIME_ERROR;
    case MACHINE_RUNNING:
        break;
    }
    abort(); /* machine_run never returns MACHINE_RUNNING */
}

/* At the very end, with the last machine: what --print-state and
 * --save-on-exit ask for. */
static int report_last_machine(struct vm *vm, int status)
{
    if (vm->options.print_state) {
        fprintf(stderr, "state: pc=0x%016" PRIx64 " instret=%" PRIu64 " hart=%016" PRIx64 " ram=%016" PRIx64 "\n",
                machine_pc(vm->machine), machine_instructions_retired(vm->machine), machine_hart_hash(vm->machine),
                machine_ram_hash(vm->machine));
    }
    struct error err;
    struct vm_save_file_records records = vm_replication_save_records(vm->replication);
    if (vm->options.save_on_exit &&
        vm_save_file_write(vm->options.save_on_exit, vm->machine, vm->config, &records, &err) < 0) {
        fprintf(stderr, "colo run: %s\n", err.message);
        return VM_EXIT_RUNTIME_ERROR;
    }
    return status;
}

/* Subscribers (`colo events`) learn why the VM is about to stop. */
static void post_guest_panicked(struct vm *vm)
{
    json_t *event = json_pack("{s:s}", "event", "guest-panicked");
    if (event) {
        vm_control_post_event(vm->control, event);
        json_decref(event);
    }
}

int vm_run(struct vm *vm)
{
    struct error err;
    for (bool first_run = true;; first_run = false) {
        if (build_machine(vm, first_run, &err) < 0) {
            fprintf(stderr, "%s: %s\n", program_name(vm), err.message);
            if (vm->machine)
                destroy_machine(vm);
            return VM_EXIT_RUNTIME_ERROR;
        }
        vm_control_machine_starting(vm->control, vm->machine);
        /* An interruption before the control knew this machine. */
        if (atomic_load(&vm->interrupted))
            machine_request_stop(vm->machine);
        enum machine_exit_reason reason = machine_run(vm->machine, vm->options.max_instructions);
        bool reboot = reason == MACHINE_EXIT_RESET && vm->config;
        enum colo_ending_reason ending;
        if (ends_on_purpose(vm, reason, reboot, &ending))
            vm_replication_vm_ending(vm->replication, ending);
        vm_replication_machine_stopped(vm->replication);
        /* A secondary's SVM is no VM of its own: its guest's reset ends
         * it (the primary's PRIMARY_ENDING says what the pair does). */
        if (reboot && vm_replication_secondary_without_vm(vm->replication))
            reboot = false;
        if (reason == MACHINE_EXIT_GUEST_PANIC)
            post_guest_panicked(vm);
        vm_control_machine_stopped(vm->control, reboot);
        if (!reboot) {
            int status = report_last_machine(vm, exit_status(vm, reason));
            destroy_machine(vm);
            return status;
        }
        /* A guest reboot: a fresh machine with the same devices. */
        fprintf(stderr, "colo run: %s rebooted\n", vm->config->name);
        vm_replication_machine_replaced(vm->replication);
        destroy_machine(vm);
    }
}

/* The control knows the running machine (under its lock); the flag covers
 * a machine still being built, which vm_run stops as it starts. */
void vm_interrupt(struct vm *vm)
{
    atomic_store(&vm->interrupted, true);
    vm_control_interrupt(vm->control);
    if (vm->replication)
        vm_replication_stop_waiting(vm->replication);
}

void vm_destroy(struct vm *vm)
{
    if (!vm)
        return;
    /* The control server's threads may call into the replication: stop
     * them first. */
    vm_control_destroy(vm->control);
    vm_replication_destroy(vm->replication);
    vm_save_file_close(&vm->save_file);
    free(vm->config);
    free(vm);
}
