/* colo: the user's one command. One table of commands; each parses its
 * arguments and calls the layers: `colo run` (and restore, receive,
 * secondary) is a struct vm (vm/vm.h) built from the options, run until
 * it ends; the other commands are clients of a running VM's control
 * socket. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colo_client.h"
#include "colo_migration.h"
#include "colo_replication_commands.h"
#include "vm.h"

static void print_usage(FILE *out)
{
    fprintf(out, "usage: colo run VM.cfg [options]\n"
                 "       colo run PROGRAM.elf [options]\n"
                 "       colo run [VM.cfg] --load FILE [options]\n"
                 "       colo restore FILE [options]   (same as colo run --load FILE)\n"
                 "       colo receive --listen ADDR:PORT VM.cfg [--copy-disks] [options]\n"
                 "       colo migrate NAME HOST:PORT [--max-downtime MS] [--max-rounds N] [--copy-disks]\n"
                 "       colo secondary --listen ADDR:PORT VM.cfg [--heartbeat-timeout MS] [options]\n"
                 "       colo protect NAME HOST:PORT [--interval MS] [--output-delay MS] [--heartbeat-timeout MS]\n"
                 "                    [--connect-timeout MS] [--wait-timeout MS | --no-wait]   (colo protect --help)\n"
                 "       colo checkpoint NAME\n"
                 "       colo failover NAME\n"
                 "       colo switchover NAME [--timeout S]\n"
                 "       colo keygen psk FILE [--identity NAME]\n"
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
                 "  --cluster corosync|none   who may take over when the pair loses touch: with\n"
                 "                            corosync (both hosts), Corosync's membership and\n"
                 "                            quorum decide (docs/cluster.md); none (default): the\n"
                 "                            side that suspects acts alone, and split brain is possible\n"
                 "\n"
                 "colo receive waits on ADDR:PORT for `colo migrate` from another host and\n"
                 "then runs the VM like `colo run VM.cfg`; VM.cfg must describe the same\n"
                 "machine (memory, disks, NIC MACs; its TAP may differ). colo migrate\n"
                 "moves a running VM there live: the full copy and rounds of dirty pages\n"
                 "while it runs, then a stop-and-copy within --max-downtime (default 5 ms)\n"
                 "if the guest's dirty rate allows. The disks stay where they are (shared\n"
                 "storage) unless both sides say --copy-disks: then the VM's disks move\n"
                 "with it, into the receiving VM.cfg's images (same sizes), which end up\n"
                 "identical to the source's; only the chunks that differ are sent. One side\n"
                 "alone with --copy-disks: both refuse, and the VM keeps running.\n"
                 "\n"
                 "colo secondary builds a COLO secondary (SVM) from VM.cfg and waits on\n"
                 "ADDR:PORT for `colo protect` of the primary VM: an initial live copy,\n"
                 "then a checkpoint at least every --interval ms. In compare mode (the\n"
                 "default; interval 1000) a reply of the primary leaves once the SVM sent\n"
                 "the same, and a difference asks for a checkpoint; in buffered mode\n"
                 "(interval 100) every reply waits for the checkpoint after it, and held\n"
                 "output asks for one within --output-delay ms (default 0: at once);\n"
                 "`colo checkpoint NAME` takes one now and prints where its pause went.\n"
                 "`colo switchover NAME` on the primary's host moves the VM to the\n"
                 "secondary on purpose (a final checkpoint, then the SVM takes over;\n"
                 "the primary's colo exits 0).\n"
                 "When the primary goes away (or `colo failover NAME`), the SVM takes\n"
                 "over on its own TAP; when the VM ends on purpose (a guest poweroff or\n"
                 "`colo quit` on the primary) both copies end and colo secondary exits 0;\n"
                 "after a guest reboot the primary runs on unprotected and colo secondary\n"
                 "exits 4. --heartbeat-timeout MS (default 200, 0: none) is\n"
                 "how long the secondary waits without a heartbeat from the primary (one\n"
                 "every 20 ms) before it takes it for dead; the secondary beats back, and\n"
                 "protect's --heartbeat-timeout (default 200; 5000 without a cluster) bounds\n"
                 "how long the primary waits for a hung secondary. With --cluster corosync\n"
                 "neither acts on a suspicion alone: the cluster's verdict decides who owns\n"
                 "the VM, and the other copy stands down (exit status 3). colo protect\n"
                 "returns once the initial copy has started, or exits 1 saying why it\n"
                 "cannot (refused, unreachable, timed out within --connect-timeout, or\n"
                 "what differs between the two machines). docs/replication.md has the\n"
                 "details.\n"
                 "  --help                    this text\n");
}

static int usage_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *format, ...)
{
    va_list args;
    fprintf(stderr, "colo run: ");
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fprintf(stderr, "\n(see `colo run --help`)\n");
    return VM_EXIT_USAGE;
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

/* SIGINT/SIGTERM are blocked in every thread; this one waits for them and
 * interrupts the VM at the next instruction boundary. */
struct signal_waiter {
    sigset_t signals;
    struct vm *vm;
};

static void *signal_thread(void *argument)
{
    pthread_setname_np(pthread_self(), "signal-waiter");
    struct signal_waiter *waiter = argument;
    int signal_number;
    if (sigwait(&waiter->signals, &signal_number) == 0)
        vm_interrupt(waiter->vm);
    return NULL;
}

/* What `colo run` does with the machine it creates: boot or load it, or
 * wait for it from another host (receive: one migration; secondary: a COLO
 * primary's initial copy and checkpoints). */
enum run_mode { RUN_LOCAL, RUN_RECEIVE, RUN_SECONDARY };

static int command_run(int argc, char **argv, enum run_mode mode)
{
    bool incoming_allowed = mode != RUN_LOCAL;
    const char *program = NULL;
    uint64_t memory_mib = 128, instructions_per_tick = 10, max_instructions = 0, heartbeat_timeout_ms = 200;
    struct {
        const char *load_path, *save_path, *name, *control_socket, *incoming;
        bool deterministic, print_state, start_paused, copy_disks, cluster;
    } options = { 0 };
    for (int i = 0; i < argc; i++) {
        const char *argument = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argument, "--help") == 0 || strcmp(argument, "-h") == 0) {
            print_usage(stdout);
            return 0;
        } else if (strcmp(argument, "--memory") == 0) {
            if (!parse_unsigned(next, &memory_mib))
                return usage_error("--memory needs a size in MiB, got '%s'", next ? next : "nothing");
            i++;
        } else if (strcmp(argument, "--deterministic") == 0) {
            options.deterministic = true;
        } else if (strcmp(argument, "--instructions-per-tick") == 0) {
            if (!parse_unsigned(next, &instructions_per_tick) || instructions_per_tick == 0)
                return usage_error("--instructions-per-tick needs a positive number, got '%s'",
                                   next ? next : "nothing");
            i++;
        } else if (strcmp(argument, "--max-instructions") == 0) {
            if (!parse_unsigned(next, &max_instructions) || max_instructions == 0)
                return usage_error("--max-instructions needs a positive number, got '%s'", next ? next : "nothing");
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
        } else if (strcmp(argument, "--copy-disks") == 0 && mode == RUN_RECEIVE) {
            options.copy_disks = true;
        } else if (strcmp(argument, "--heartbeat-timeout") == 0 && mode == RUN_SECONDARY) {
            if (!parse_unsigned(next, &heartbeat_timeout_ms) || heartbeat_timeout_ms > 3600000)
                return usage_error("--heartbeat-timeout needs milliseconds (0: none), got '%s'",
                                   next ? next : "nothing");
            i++;
        } else if (strcmp(argument, "--cluster") == 0) {
            if (!next || (strcmp(next, "corosync") != 0 && strcmp(next, "none") != 0))
                return usage_error("--cluster needs 'corosync' or 'none', got '%s'", next ? next : "nothing");
            options.cluster = strcmp(next, "corosync") == 0;
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
        } else if (!program) {
            program = argument;
        } else {
            return usage_error("unexpected argument '%s' (only one program)", argument);
        }
    }
    size_t program_length = program ? strlen(program) : 0;
    bool program_is_config = program_length > 4 && strcmp(program + program_length - 4, ".cfg") == 0;
    if (!program && !options.load_path)
        return usage_error("%s", "needs a VM.cfg, a PROGRAM.elf or --load FILE");
    if (program && !program_is_config && options.load_path)
        return usage_error("%s", "give either a PROGRAM.elf or --load FILE, not both");
    if (incoming_allowed && (!options.incoming || !program_is_config || options.load_path)) {
        fprintf(stderr, "usage: colo %s --listen ADDR:PORT VM.cfg [options]\n",
                mode == RUN_SECONDARY ? "secondary" : "receive");
        return VM_EXIT_USAGE;
    }

    struct vm_options vm_options = {
        .start = mode == RUN_SECONDARY ? VM_START_SECONDARY
                 : mode == RUN_RECEIVE ? VM_START_RECEIVE
                 : options.load_path   ? VM_START_RESTORE
                 : program_is_config   ? VM_START_BOOT
                                       : VM_START_ELF,
        .config_path = program_is_config ? program : NULL,
        .elf_path = program_is_config ? NULL : program,
        .load_path = options.load_path,
        .listen_address = options.incoming,
        .copy_disks = options.copy_disks,
        .name = options.name,
        .control_socket = options.control_socket,
        .start_paused = options.start_paused,
        .memory_mib = memory_mib,
        .deterministic = options.deterministic,
        .instructions_per_tick = instructions_per_tick,
        .max_instructions = max_instructions,
        .heartbeat_timeout_ms = (int)heartbeat_timeout_ms,
        .cluster = options.cluster,
        .print_state = options.print_state,
        .save_on_exit = options.save_path,
    };
    struct signal_waiter waiter;
    sigemptyset(&waiter.signals);
    sigaddset(&waiter.signals, SIGINT);
    sigaddset(&waiter.signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &waiter.signals, NULL);
    struct error err;
    int status = vm_create(&waiter.vm, &vm_options, &err);
    if (status != 0) {
        fprintf(stderr, "colo %s: %s\n",
                mode == RUN_SECONDARY ? "secondary"
                : mode == RUN_RECEIVE ? "receive"
                                      : "run",
                err.message);
        return status;
    }
    pthread_t signal_waiter;
    if (pthread_create(&signal_waiter, NULL, signal_thread, &waiter) == 0)
        pthread_detach(signal_waiter);
    status = vm_run(waiter.vm);
    vm_destroy(waiter.vm);
    return status;
}

static int run_main(const char *command, int argc, char **argv)
{
    (void)command;
    return command_run(argc, argv, RUN_LOCAL);
}

/* colo restore FILE [options] is colo run --load FILE [options]. */
static int restore_main(const char *command, int argc, char **argv)
{
    (void)command;
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: colo restore FILE [options]\n");
        return VM_EXIT_USAGE;
    }
    char **arguments = calloc((size_t)argc + 2, sizeof *arguments);
    if (!arguments)
        return VM_EXIT_RUNTIME_ERROR;
    arguments[0] = "--load";
    for (int i = 0; i < argc; i++)
        arguments[i + 1] = argv[i];
    int result = command_run(argc + 1, arguments, RUN_LOCAL);
    free(arguments);
    return result;
}

static int receive_main(const char *command, int argc, char **argv)
{
    (void)command;
    return command_run(argc, argv, RUN_RECEIVE);
}

static int secondary_main(const char *command, int argc, char **argv)
{
    (void)command;
    return command_run(argc, argv, RUN_SECONDARY);
}

static int migrate_main(const char *command, int argc, char **argv)
{
    (void)command;
    return colo_migrate_main(argc, argv);
}

static int protect_main(const char *command, int argc, char **argv)
{
    (void)command;
    return colo_protect_main(argc, argv);
}

static int keygen_main(const char *command, int argc, char **argv)
{
    (void)command;
    return colo_keygen_main(argc, argv);
}

static int checkpoint_main(const char *command, int argc, char **argv)
{
    (void)command;
    return colo_checkpoint_main(argc, argv);
}

static int failover_main(const char *command, int argc, char **argv)
{
    (void)command;
    return colo_failover_main(argc, argv);
}

static int switchover_main(const char *command, int argc, char **argv)
{
    (void)command;
    return colo_switchover_main(argc, argv);
}

static int help_main(const char *command, int argc, char **argv)
{
    (void)command, (void)argc, (void)argv;
    print_usage(stdout);
    colo_client_print_usage(stdout);
    return 0;
}

/* Every command of `colo`, in the order `colo help` and errors list them. */
static const struct {
    const char *name;
    int (*main)(const char *command, int argc, char **argv);
} commands[] = {
    { "run", run_main },
    { "restore", restore_main },
    { "receive", receive_main },
    { "migrate", migrate_main },
    { "secondary", secondary_main },
    { "protect", protect_main },
    { "checkpoint", checkpoint_main },
    { "failover", failover_main },
    { "switchover", switchover_main },
    { "keygen", keygen_main },
    { "status", colo_client_main },
    { "metrics", colo_client_main },
    { "pause", colo_client_main },
    { "resume", colo_client_main },
    { "save", colo_client_main },
    { "quit", colo_client_main },
    { "events", colo_client_main },
    { "help", help_main },
    { "--help", help_main },
    { "-h", help_main },
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        colo_client_print_usage(stderr);
        return VM_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, argv[1]) == 0)
            return commands[i].main(argv[1], argc - 2, argv + 2);
    fprintf(stderr, "colo: unknown command '%s' (known:", argv[1]);
    for (size_t i = 0; commands[i].name[0] != '-'; i++)
        fprintf(stderr, "%s %s", i ? "," : "", commands[i].name);
    fprintf(stderr, ")\n");
    return VM_EXIT_USAGE;
}
