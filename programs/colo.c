/* colo: the user's one command. `colo run` runs a VM (a Linux VM from a
 * configuration file, a bare-metal RISC-V program, or a saved machine) on
 * the machine layer, with a control socket (colo_vm_control.c); `colo
 * status`, `pause` and the other client commands talk to that socket
 * (colo_client.c). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "colo_client.h"
#include "colo_primary.h"
#include "colo_migration.h"
#include "colo_replication.h"
#include "colo_vm_control.h"
#include "machine.h"
#include "machine_boot.h"
#include "vm_config.h"
#include "vm_save_file.h"

#define EXIT_USAGE 2
#define EXIT_RUNTIME_ERROR 1
#define EXIT_INTERRUPTED 130

static void print_usage(FILE *out)
{
    fprintf(out,
        "usage: colo run VM.cfg [options]\n"
        "       colo run PROGRAM.elf [options]\n"
        "       colo run [VM.cfg] --load FILE [options]\n"
        "       colo restore FILE [options]   (same as colo run --load FILE)\n"
        "       colo receive --listen ADDR:PORT VM.cfg [options]\n"
        "       colo migrate NAME HOST:PORT [--max-downtime MS] [--max-rounds N]\n"
        "       colo secondary --listen ADDR:PORT VM.cfg [--heartbeat-timeout MS] [options]\n"
        "       colo protect NAME HOST:PORT [--interval MS] [--output-delay MS]\n"
        "       colo checkpoint NAME\n"
        "       colo failover NAME\n"
        "\n"
        "Runs a VM on colo's RV64GC machine (QEMU virt memory map). VM.cfg (a\n"
        "name ending in .cfg) describes a Linux VM: kernel, initrd, disks, NICs\n"
        "on TAP devices (see docs/vm-config.md); its console is the terminal,\n"
        "and Ctrl-C stops it. PROGRAM.elf is a bare-metal program: its UART is\n"
        "standard output and colo exits with its exit status (sifive_test or\n"
        "HTIF tohost).\n"
        "\n"
        "options:\n"
        "  --memory MIB              guest RAM in MiB (default 128; VM.cfg sets its own)\n"
        "  --deterministic           guest time follows retired instructions\n"
        "  --instructions-per-tick N with --deterministic: instructions per 100 ns tick (default 10)\n"
        "  --max-instructions N      stop after N instructions (exit status 0)\n"
        "  --load FILE               start from a saved machine instead of an ELF\n"
        "  --save-on-exit FILE       save the whole machine when the run stops\n"
        "  --print-state             print pc, instret and state hashes on exit (stderr)\n"
        "  --name NAME               the VM's name (default: VM.cfg's name, else the file's\n"
        "                            base name: PROGRAM.elf -> PROGRAM)\n"
        "  --control-socket PATH     listen here instead of $COLO_RUN_DIR/NAME.sock\n"
        "                            (COLO_RUN_DIR defaults to /run/colo)\n"
        "  --paused                  start paused: `colo resume NAME` starts the VM\n"
        "\n"
        "colo receive waits on ADDR:PORT for `colo migrate` from another host and\n"
        "then runs the VM like `colo run VM.cfg`; VM.cfg must describe the same\n"
        "machine (memory, disks, NIC MACs; its TAP may differ). colo migrate\n"
        "moves a running VM there live: the full copy and rounds of dirty pages\n"
        "while it runs, then a stop-and-copy within --max-downtime (default 5 ms)\n"
        "if the guest's dirty rate allows.\n"
        "\n"
        "colo secondary builds a COLO secondary (SVM) from VM.cfg and waits on\n"
        "ADDR:PORT for `colo protect` of the primary VM: an initial live copy,\n"
        "then a checkpoint at least every --interval ms (default 100). The\n"
        "primary's network output is held until the SVM has each checkpoint,\n"
        "and held output asks for one within --output-delay ms (default 0: at\n"
        "once);\n"
        "`colo checkpoint NAME` takes one now and prints where its pause went.\n"
        "When the primary goes away (or `colo failover NAME`), the SVM takes\n"
        "over on its own TAP. --heartbeat-timeout MS (default 200, 0: none) is\n"
        "how long the secondary waits without a heartbeat from the primary (one\n"
        "every 20 ms) before it takes it for dead. docs/replication.md has the details.\n"
        "  --help                    this text\n");
}

static int usage_error(const char *format, const char *argument)
{
    fprintf(stderr, "colo run: ");
    fprintf(stderr, format, argument);
    fprintf(stderr, "\n(see `colo run --help`)\n");
    return EXIT_USAGE;
}

static bool parse_unsigned(const char *text, uint64_t *value)
{
    if (!text || !*text || *text == '-')
        return false;
    char *end;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, 10);
    if (errno || *end)
        return false;
    *value = parsed;
    return true;
}

struct run_options {
    const char *program;
    bool program_is_config;
    const char *load_path;
    const char *save_path;
    uint64_t memory_mib;
    bool deterministic;
    uint64_t instructions_per_tick;
    uint64_t max_instructions;
    bool print_state;
    const char *name;                   /* --name */
    const char *control_socket;         /* --control-socket */
    bool start_paused;                  /* --paused */
    const char *incoming;               /* colo receive --listen ADDR:PORT */
    uint64_t heartbeat_timeout_ms;      /* colo secondary --heartbeat-timeout MS */
};

/* The machine `colo run` runs (a new one after each guest reboot). Only
 * the main thread changes it; the signal thread reads it under the lock,
 * so it never stops a machine that is being destroyed. */
static pthread_mutex_t the_machine_lock = PTHREAD_MUTEX_INITIALIZER;
static struct machine *the_machine;

static void set_the_machine(struct machine *machine)
{
    pthread_mutex_lock(&the_machine_lock);
    the_machine = machine;
    pthread_mutex_unlock(&the_machine_lock);
}

static void destroy_the_machine(void)
{
    struct machine *machine = the_machine;
    set_the_machine(NULL);
    machine_destroy(machine);
}

/* SIGINT/SIGTERM are blocked in every thread; this one waits for them and
 * asks the machine to stop at the next instruction boundary. */
static void *signal_thread(void *argument)
{
    sigset_t *signals = argument;
    int signal_number;
    if (sigwait(signals, &signal_number) == 0) {
        pthread_mutex_lock(&the_machine_lock);
        if (the_machine)
            machine_request_stop(the_machine);
        pthread_mutex_unlock(&the_machine_lock);
    }
    return NULL;
}

/* What `colo run` does with the machine it creates: boot or load it, or
 * wait for it from another host (receive: one migration; secondary: a COLO
 * primary's initial copy and checkpoints). */
enum run_mode { RUN_LOCAL, RUN_RECEIVE, RUN_SECONDARY };

static int command_run(int argc, char **argv, enum run_mode mode)
{
    bool incoming_allowed = mode != RUN_LOCAL;
    struct run_options options = { .memory_mib = 128, .instructions_per_tick = 10, .heartbeat_timeout_ms = 200 };
    for (int i = 0; i < argc; i++) {
        const char *argument = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argument, "--help") == 0 || strcmp(argument, "-h") == 0) {
            print_usage(stdout);
            return 0;
        } else if (strcmp(argument, "--memory") == 0) {
            if (!parse_unsigned(next, &options.memory_mib))
                return usage_error("--memory needs a size in MiB, got '%s'", next ? next : "nothing");
            i++;
        } else if (strcmp(argument, "--deterministic") == 0) {
            options.deterministic = true;
        } else if (strcmp(argument, "--instructions-per-tick") == 0) {
            if (!parse_unsigned(next, &options.instructions_per_tick) || options.instructions_per_tick == 0)
                return usage_error("--instructions-per-tick needs a positive number, got '%s'",
                                   next ? next : "nothing");
            i++;
        } else if (strcmp(argument, "--max-instructions") == 0) {
            if (!parse_unsigned(next, &options.max_instructions) || options.max_instructions == 0)
                return usage_error("--max-instructions needs a positive number, got '%s'",
                                   next ? next : "nothing");
            i++;
        } else if (strcmp(argument, "--load") == 0) {
            if (!next)
                return usage_error("%s needs a file", argument);
            options.load_path = next;
            i++;
        } else if (strcmp(argument, "--save-on-exit") == 0) {
            if (!next)
                return usage_error("%s needs a file", argument);
            options.save_path = next;
            i++;
        } else if (strcmp(argument, "--listen") == 0 && incoming_allowed) {
            if (!next)
                return usage_error("%s needs ADDR:PORT", argument);
            options.incoming = next;
            i++;
        } else if (strcmp(argument, "--heartbeat-timeout") == 0 && mode == RUN_SECONDARY) {
            if (!parse_unsigned(next, &options.heartbeat_timeout_ms) || options.heartbeat_timeout_ms > 3600000)
                return usage_error("--heartbeat-timeout needs milliseconds (0: none), got '%s'", next ? next : "nothing");
            i++;
        } else if (strcmp(argument, "--print-state") == 0) {
            options.print_state = true;
        } else if (strcmp(argument, "--name") == 0) {
            if (!next || !vm_name_is_valid(next))
                return usage_error("--name needs a name of 1..63 letters, digits, '-', '_' and '.', got '%s'",
                                   next ? next : "nothing");
            options.name = next;
            i++;
        } else if (strcmp(argument, "--control-socket") == 0) {
            if (!next || !*next)
                return usage_error("%s needs a path", argument);
            options.control_socket = next;
            i++;
        } else if (strcmp(argument, "--paused") == 0) {
            options.start_paused = true;
        } else if (argument[0] == '-') {
            return usage_error("unknown option '%s'", argument);
        } else if (!options.program) {
            options.program = argument;
        } else {
            return usage_error("unexpected argument '%s' (only one program)", argument);
        }
    }
    size_t program_length = options.program ? strlen(options.program) : 0;
    options.program_is_config = program_length > 4 && strcmp(options.program + program_length - 4, ".cfg") == 0;
    if (!options.program && !options.load_path)
        return usage_error("%s", "needs a VM.cfg, a PROGRAM.elf or --load FILE");
    if (options.program && !options.program_is_config && options.load_path)
        return usage_error("%s", "give either a PROGRAM.elf or --load FILE, not both");

    /* A save file carries its VM's configuration: without a VM.cfg on the
     * command line, the VM is rebuilt from it (TAPs, disks, MACs). */
    struct vm_save_file save_file = { .fd = -1 };
    struct error err;
    if (options.load_path) {
        if (vm_save_file_open(&save_file, options.load_path, &err) < 0) {
            fprintf(stderr, "colo run: %s\n", err.message);
            return EXIT_RUNTIME_ERROR;
        }
        options.memory_mib = save_file.ram_size >> 20;
    }

    struct machine_config config;
    machine_config_defaults(&config);
    config.deterministic_time = options.deterministic;
    config.instructions_per_tick = options.instructions_per_tick;
    config.console_output_fd = STDOUT_FILENO;
    struct vm_config *vm = NULL;
    bool config_from_save_file = !options.program && save_file.config_text && save_file.config_text[0];
    if (options.program_is_config || config_from_save_file) {
        vm = malloc(sizeof *vm);
        char source[4200];
        snprintf(source, sizeof source, "%s (the configuration saved in it)", options.load_path ? options.load_path : "");
        int parsed = !vm ? -1
            : config_from_save_file
                ? vm_config_parse_text(save_file.config_text, strlen(save_file.config_text), source, "", vm, &err)
                : vm_config_parse_file(options.program, vm, &err);
        if (parsed < 0) {
            fprintf(stderr, "colo run: %s\n", vm ? err.message : "out of memory");
            free(vm);
            vm_save_file_close(&save_file);
            return EXIT_USAGE;
        }
        options.memory_mib = vm->memory_mib;
        config.disk_count = vm->disk_count;
        memcpy(config.disks, vm->disks, sizeof config.disks);
        config.nic_count = vm->nic_count;
        memcpy(config.nics, vm->nics, sizeof config.nics);
        if (vm->console == VM_CONSOLE_STDIO) {
            config.console_input_fd = STDIN_FILENO;
        } else {
            config.console_output_fd = -1;
        }
    }

    long host_pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    uint64_t host_mib = host_pages > 0 && page_size > 0
                            ? (uint64_t)host_pages * (uint64_t)page_size >> 20 : UINT64_MAX;
    /* RAM sits at 0x80000000 and must end below 2^39 (Sv39 physical reach
     * we support) and fit the host. */
    if (options.memory_mib < 1 || options.memory_mib > host_mib || options.memory_mib > (UINT64_C(256) << 10)) {
        fprintf(stderr, "colo run: %s %" PRIu64 " MiB does not fit: it must be 1..%" PRIu64
                " MiB (this host has %" PRIu64 " MiB)\n", vm ? "memory" : "--memory", options.memory_mib,
                host_mib < (UINT64_C(256) << 10) ? host_mib : (UINT64_C(256) << 10), host_mib);
        free(vm);
        return EXIT_USAGE;
    }
    config.ram_size = options.memory_mib << 20;

    /* ---- the control socket: from here on every return destroys it ---- */
    char vm_name[64];
    if (options.name || vm) {
        snprintf(vm_name, sizeof vm_name, "%s", options.name ? options.name : vm->name);
    } else if (vm_name_from_path(options.program ? options.program : options.load_path, vm_name,
                                 sizeof vm_name, &err) < 0) {
        fprintf(stderr, "colo run: %s\n", err.message);
        return EXIT_USAGE;
    }
    struct vm_control_options control_options = {
        .name = vm_name, .socket_path = options.control_socket, .start_paused = options.start_paused,
        .config = vm,
    };
    struct vm_control *control;
    if (vm_control_create(&control, &control_options, &err) < 0) {
        fprintf(stderr, "colo run: %s\n", err.message);
        free(vm);
        return EXIT_RUNTIME_ERROR;
    }

    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    pthread_t signal_waiter;
    pthread_create(&signal_waiter, NULL, signal_thread, &signals);
    pthread_detach(signal_waiter);

    int status = 0;
    if (incoming_allowed && (!options.incoming || !options.program_is_config || options.load_path)) {
        fprintf(stderr, "usage: colo %s --listen ADDR:PORT VM.cfg [options]\n",
                mode == RUN_SECONDARY ? "secondary" : "receive");
        vm_control_destroy(control);
        free(vm);
        return EXIT_USAGE;
    }
    if (colo_migration_register(control, &err) < 0 || colo_replication_register(control, vm_name, &err) < 0) {
        fprintf(stderr, "colo run: %s\n", err.message);
        vm_control_destroy(control);
        free(vm);
        return EXIT_RUNTIME_ERROR;
    }
    bool restore = options.load_path != NULL;
    bool receive = options.incoming != NULL;
    for (;;) {
        struct machine *machine = machine_create(&config, &err);
        if (!machine) {
            fprintf(stderr, "colo run: %s\n", err.message);
            vm_control_destroy(control);
            free(vm);
            return EXIT_RUNTIME_ERROR;
        }
        set_the_machine(machine);
        int load_result;
        if (receive && mode == RUN_SECONDARY) {
            /* The SVM: built here, filled and run by the secondary loop. */
            load_result = colo_replication_start_secondary(control, the_machine, options.incoming, vm_name,
                                                           (int)options.heartbeat_timeout_ms, &err);
        } else if (receive) {
            load_result = colo_migration_receive(the_machine, options.incoming, vm_name, &err);
        } else if (restore) {
            load_result = vm_save_file_load(&save_file, the_machine, options.load_path, &err);
            vm_save_file_close(&save_file);
        } else if (vm) {
            struct machine_boot_config boot = {
                .firmware = vm->firmware, .kernel = vm->kernel,
                .initrd = vm->initrd[0] ? vm->initrd : NULL, .cmdline = vm->cmdline,
            };
            load_result = machine_boot_linux(the_machine, &boot, &err);
        } else {
            load_result = machine_load_elf(the_machine, options.program, &err);
        }
        if (load_result < 0) {
            fprintf(stderr, "colo run: %s\n", err.message);
            destroy_the_machine();
            vm_control_destroy(control);
            free(vm);
            return EXIT_RUNTIME_ERROR;
        }

        vm_control_machine_starting(control, the_machine);
        enum machine_exit_reason reason = machine_run(the_machine, options.max_instructions);
        colo_replication_machine_stopped();
        vm_control_machine_stopped(control, reason == MACHINE_EXIT_RESET && vm);
        if (reason == MACHINE_EXIT_RESET && vm) {
            /* A guest reboot: a fresh machine with the same devices. */
            fprintf(stderr, "colo run: %s rebooted\n", vm->name);
            destroy_the_machine();
            restore = false;
            receive = false;
            continue;
        }
        switch (reason) {
        case MACHINE_EXIT_POWEROFF: status = 0; break;
        case MACHINE_EXIT_RESET:
            fprintf(stderr, "colo run: the guest asked for a reset; stopping\n");
            status = 0;
            break;
        case MACHINE_EXIT_CODE: status = (int)(machine_exit_code(the_machine) & 0xff); break;
        case MACHINE_EXIT_INSTRUCTION_LIMIT: status = 0; break;
        case MACHINE_EXIT_STOPPED:
            /* quit (or save) from the control socket ends the VM cleanly;
             * Ctrl-C or SIGTERM interrupts it. */
            if (mode == RUN_SECONDARY && colo_replication_failover_refused()) {
                fprintf(stderr, "colo secondary: %s: stopped: the primary went away before the initial copy "
                        "was complete, so there is no VM to fail over to\n", vm_name);
                status = EXIT_RUNTIME_ERROR;
            } else if (vm_control_quit_requested(control)) {
                fprintf(stderr, "colo run: %s stopped by its control socket\n", vm_name);
                status = 0;
            } else {
                fprintf(stderr, "colo run: stopped\n");
                status = EXIT_INTERRUPTED;
            }
            break;
        case MACHINE_RUNNING: abort();      /* machine_run never returns this */
        }
        break;
    }
    if (options.print_state) {
        fprintf(stderr, "state: pc=0x%016" PRIx64 " instret=%" PRIu64 " hart=%016" PRIx64
                " ram=%016" PRIx64 "\n", machine_pc(the_machine), machine_instructions_retired(the_machine),
                machine_hart_hash(the_machine), machine_ram_hash(the_machine));
    }
    if (options.save_path && vm_save_file_write(options.save_path, the_machine, vm, &err) < 0) {
        fprintf(stderr, "colo run: %s\n", err.message);
        status = EXIT_RUNTIME_ERROR;
    }
    destroy_the_machine();
    vm_control_destroy(control);
    free(vm);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        colo_client_print_usage(stderr);
        return EXIT_USAGE;
    }
    /* The failover tests' kill hook (colo_primary.h): read once, before
     * any primary can start; a misspelt step stops us here rather than
     * letting a test run without its kill. */
    struct error kill_hook_error;
    if (colo_primary_test_kill_from_env(&kill_hook_error) < 0) {
        fprintf(stderr, "colo: %s\n", kill_hook_error.message);
        return EXIT_USAGE;
    }
    const char *command = argv[1];
    if (strcmp(command, "run") == 0)
        return command_run(argc - 2, argv + 2, RUN_LOCAL);
    if (strcmp(command, "restore") == 0) {
        /* colo restore FILE [options] is colo run --load FILE [options] */
        if (argc < 3 || argv[2][0] == '-') {
            fprintf(stderr, "usage: colo restore FILE [options]\n");
            return EXIT_USAGE;
        }
        char **arguments = calloc((size_t)argc + 1, sizeof *arguments);
        if (!arguments)
            return EXIT_RUNTIME_ERROR;
        arguments[0] = "--load";
        for (int i = 2; i < argc; i++)
            arguments[i - 1] = argv[i];
        int result = command_run(argc - 1, arguments, RUN_LOCAL);
        free(arguments);
        return result;
    }
    if (strcmp(command, "receive") == 0)
        return command_run(argc - 2, argv + 2, RUN_RECEIVE);
    if (strcmp(command, "secondary") == 0)
        return command_run(argc - 2, argv + 2, RUN_SECONDARY);
    if (strcmp(command, "protect") == 0)
        return colo_protect_main(argc - 2, argv + 2);
    if (strcmp(command, "failover") == 0)
        return colo_failover_main(argc - 2, argv + 2);
    if (strcmp(command, "checkpoint") == 0)
        return colo_checkpoint_main(argc - 2, argv + 2);
    if (strcmp(command, "migrate") == 0)
        return colo_migrate_main(argc - 2, argv + 2);
    if (colo_client_is_command(command))
        return colo_client_main(command, argc - 2, argv + 2);
    if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
        print_usage(stdout);
        colo_client_print_usage(stdout);
        return 0;
    }
    fprintf(stderr, "colo: unknown command '%s' (known: run, restore, receive, migrate, secondary, protect, checkpoint, failover, status, pause, resume, save, quit, events, help)\n",
            command);
    return EXIT_USAGE;
}
