// /init of the colo Linux guest: process 1 of a VM whose whole userland is
// this one static program.
//
// It mounts the virtual file systems, reads its settings from the kernel
// command line, configures the network, forks one process per service
// (kvstore.c, echo.c, stream.c, churn.c), prints
//   colo-guest: services ready
// once they all accept work (tests wait for that line), then reaps children
// forever and restarts a service that dies.
//
// Kernel command line settings:
//   colo.ip=A.B.C.D/NN     address of eth0 (without it eth0 stays down)
//   colo.gw=A.B.C.D        default route (optional)
//   colo.churn=N           memory churner, pages per second (default 0)
//   colo.disk=/dev/vda     block device the KV store persists to; "none" for
//                          none (default: /dev/vda if there is one)
#include "guest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// How long the services get to become ready before init says they did not.
#define READY_TIMEOUT_MS 20000
// How long to wait for a device named on the command line to show up.
#define DEVICE_WAIT_MS 2000

struct guest_config {
    bool has_address;
    struct in_addr address;
    unsigned prefix_length;
    bool has_gateway;
    struct in_addr gateway;
    uint64_t churn_rate;
    bool disk_given;  // colo.disk= was on the command line
    char disk[128];   // "" for none
};

static void say(const char *format, ...) __attribute__((format(printf, 1, 2)));

// "colo-guest: <message>" on the console, in one write.
static void say(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    guest_vlog(STDOUT_FILENO, NULL, format, arguments);
    va_end(arguments);
}

static double seconds_since_boot(void) {
    struct timespec now;
    clock_gettime(CLOCK_BOOTTIME, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void sleep_ms(long milliseconds) {
    struct timespec duration = {milliseconds / 1000, (milliseconds % 1000) * 1000000L};
    while (nanosleep(&duration, &duration) != 0 && errno == EINTR) {
    }
}

// --- File systems and console ---

static void mount_or_complain(const char *source, const char *target, const char *type,
                              const char *options) {
    mkdir(target, 0755);  // the cpio has it already; harmless if it does
    if (mount(source, target, type, MS_NOSUID, options) != 0)
        say("cannot mount %s on %s: %s", type, target, strerror(errno));
}

static void mount_file_systems(void) {
    mount_or_complain("proc", "/proc", "proc", NULL);
    mount_or_complain("sysfs", "/sys", "sysfs", NULL);
    // The kernel does not mount devtmpfs on an initramfs root by itself.
    mount_or_complain("devtmpfs", "/dev", "devtmpfs", "mode=0755");
    mount_or_complain("tmpfs", "/tmp", "tmpfs", "mode=1777");
}

// The kernel opens /dev/console as fds 0-2 for /init when the cpio has that
// node. Without it we start with no output at all: open it from devtmpfs.
static void ensure_console(void) {
    if (fcntl(STDOUT_FILENO, F_GETFD) != -1)
        return;
    int console = open("/dev/console", O_RDWR);
    if (console < 0)
        return;  // nowhere to report it either
    dup2(console, STDIN_FILENO);
    dup2(console, STDOUT_FILENO);
    dup2(console, STDERR_FILENO);
    if (console > STDERR_FILENO)
        close(console);
}

// Console input: every line typed on the console comes back as
// "colo-guest: console: LINE", so the whole path (host terminal, UART
// receive interrupt, tty) is visible and testable.
static void start_console_echo(void) {
    pid_t pid = fork();
    if (pid != 0)
        return;
    prctl(PR_SET_NAME, "colo-console");
    char line[256];
    size_t used = 0;
    for (;;) {
        char byte;
        ssize_t got = read(STDIN_FILENO, &byte, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            sleep_ms(1000);  // no console input (yet): try again later
            continue;
        }
        if (byte == '\r' || byte == '\n') {
            if (used > 0)
                say("console: %.*s", (int)used, line);
            used = 0;
        } else if (used < sizeof line) {
            line[used++] = byte;
        }
    }
}

// --- Kernel command line ---

static bool parse_ipv4(const char *text, struct in_addr *address) {
    return inet_pton(AF_INET, text, address) == 1;
}

// Applies one "name=value" word of the command line, if it is ours.
static void apply_setting(struct guest_config *config, const char *word) {
    const char *equals = strchr(word, '=');
    if (strncmp(word, "colo.", 5) != 0 || equals == NULL)
        return;
    size_t name_length = (size_t)(equals - word);
    const char *value = equals + 1;
#define IS_SETTING(name) (name_length == sizeof name - 1 && memcmp(word, name, name_length) == 0)
    if (IS_SETTING("colo.ip")) {
        char address[32];
        const char *slash = strchr(value, '/');
        uint64_t prefix;
        size_t address_length = slash ? (size_t)(slash - value) : 0;
        if (slash == NULL || address_length >= sizeof address ||
            !parse_u64(slash + 1, strlen(slash + 1), 32, &prefix)) {
            say("ignoring colo.ip=%s: expected A.B.C.D/NN", value);
            return;
        }
        memcpy(address, value, address_length);
        address[address_length] = '\0';
        if (!parse_ipv4(address, &config->address)) {
            say("ignoring colo.ip=%s: bad address", value);
            return;
        }
        config->prefix_length = (unsigned)prefix;
        config->has_address = true;
    } else if (IS_SETTING("colo.gw")) {
        config->has_gateway = parse_ipv4(value, &config->gateway);
        if (!config->has_gateway)
            say("ignoring colo.gw=%s: bad address", value);
    } else if (IS_SETTING("colo.churn")) {
        if (!parse_u64(value, strlen(value), CHURN_MAX_RATE, &config->churn_rate))
            say("ignoring colo.churn=%s: expected 0 to %u pages per second", value, CHURN_MAX_RATE);
    } else if (IS_SETTING("colo.disk")) {
        config->disk_given = true;
        snprintf(config->disk, sizeof config->disk, "%s", strcmp(value, "none") == 0 ? "" : value);
    } else {
        say("ignoring unknown setting %s", word);
    }
#undef IS_SETTING
}

static void read_config(struct guest_config *config) {
    *config = (struct guest_config){0};
    char cmdline[4096] = "";
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t length = read(fd, cmdline, sizeof cmdline - 1);
        cmdline[length > 0 ? length : 0] = '\0';
        close(fd);
    }
    for (char *save = NULL, *word = strtok_r(cmdline, " \t\n", &save); word != NULL;
         word = strtok_r(NULL, " \t\n", &save))
        apply_setting(config, word);

    if (!config->disk_given && access("/dev/vda", F_OK) == 0)
        snprintf(config->disk, sizeof config->disk, "/dev/vda");
    // A disk named explicitly may still be probing: give it a moment.
    for (long waited = 0; config->disk[0] != '\0' && access(config->disk, F_OK) != 0;
         waited += 50) {
        if (waited >= DEVICE_WAIT_MS) {
            say("disk %s not found; the KV store runs without a disk", config->disk);
            config->disk[0] = '\0';
            break;
        }
        sleep_ms(50);
    }
}

// --- Network ---

static bool set_interface_address(int sock, const char *name, unsigned long request,
                                  struct in_addr address) {
    struct ifreq interface = {0};
    snprintf(interface.ifr_name, sizeof interface.ifr_name, "%s", name);
    struct sockaddr_in *field = (struct sockaddr_in *)&interface.ifr_addr;
    field->sin_family = AF_INET;
    field->sin_addr = address;
    return ioctl(sock, request, &interface) == 0;
}

static bool bring_interface_up(int sock, const char *name) {
    struct ifreq interface = {0};
    snprintf(interface.ifr_name, sizeof interface.ifr_name, "%s", name);
    if (ioctl(sock, SIOCGIFFLAGS, &interface) != 0)
        return false;
    interface.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(sock, SIOCSIFFLAGS, &interface) == 0;
}

static bool interface_exists(int sock, const char *name) {
    struct ifreq interface = {0};
    snprintf(interface.ifr_name, sizeof interface.ifr_name, "%s", name);
    return ioctl(sock, SIOCGIFINDEX, &interface) == 0;
}

static bool add_default_route(int sock, struct in_addr gateway) {
    struct rtentry route = {0};
    struct sockaddr_in *destination = (struct sockaddr_in *)&route.rt_dst;
    struct sockaddr_in *mask = (struct sockaddr_in *)&route.rt_genmask;
    struct sockaddr_in *via = (struct sockaddr_in *)&route.rt_gateway;
    destination->sin_family = mask->sin_family = via->sin_family = AF_INET;
    via->sin_addr = gateway;  // destination and mask 0.0.0.0: every address
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    return ioctl(sock, SIOCADDRT, &route) == 0;
}

static void configure_network(const struct guest_config *config) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        say("no IPv4 socket: %s", strerror(errno));
        return;
    }
    struct in_addr loopback = {htonl(INADDR_LOOPBACK)};
    struct in_addr loopback_mask = {htonl(0xff000000u)};
    if (!set_interface_address(sock, "lo", SIOCSIFADDR, loopback) ||
        !set_interface_address(sock, "lo", SIOCSIFNETMASK, loopback_mask) ||
        !bring_interface_up(sock, "lo"))
        say("cannot bring lo up: %s", strerror(errno));

    if (!config->has_address) {
        say("no colo.ip= on the kernel command line: eth0 stays down");
        close(sock);
        return;
    }
    for (long waited = 0; !interface_exists(sock, "eth0"); waited += 50) {
        if (waited >= DEVICE_WAIT_MS) {
            say("no eth0 (no virtio-net device?): network stays down");
            close(sock);
            return;
        }
        sleep_ms(50);
    }
    uint32_t mask_bits = config->prefix_length == 0 ? 0 : ~0u << (32 - config->prefix_length);
    struct in_addr mask = {htonl(mask_bits)};
    char address_text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &config->address, address_text, sizeof address_text);
    if (!set_interface_address(sock, "eth0", SIOCSIFADDR, config->address) ||
        !set_interface_address(sock, "eth0", SIOCSIFNETMASK, mask) ||
        !bring_interface_up(sock, "eth0")) {
        say("cannot configure eth0 as %s/%u: %s", address_text, config->prefix_length,
            strerror(errno));
        close(sock);
        return;
    }
    say("eth0 %s/%u up", address_text, config->prefix_length);
    if (config->has_gateway) {
        char gateway_text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &config->gateway, gateway_text, sizeof gateway_text);
        if (add_default_route(sock, config->gateway))
            say("default route via %s", gateway_text);
        else
            say("cannot add a default route via %s: %s", gateway_text, strerror(errno));
    }
    close(sock);
}

// --- Services ---

enum service_id { SERVICE_KVSTORE, SERVICE_ECHO, SERVICE_STREAM, SERVICE_CHURN, SERVICE_COUNT };

static const char *const service_names[SERVICE_COUNT] = {"kvstore", "echo", "stream", "churn"};

struct supervisor {
    const struct guest_config *config;
    struct churn_control *churn;  // shared with the children (MAP_SHARED)
    pid_t pids[SERVICE_COUNT];
};

// Forks the service; the child never returns. ready_fd goes to the child
// (-1: nobody waits for it).
static void start_service(struct supervisor *supervisor, enum service_id id, int ready_fd,
                          int ready_read_fd) {
    pid_t pid = fork();
    if (pid < 0) {
        say("cannot start %s: %s", service_names[id], strerror(errno));
        supervisor->pids[id] = -1;
        return;
    }
    if (pid > 0) {
        supervisor->pids[id] = pid;
        return;
    }
    if (ready_read_fd >= 0)
        close(ready_read_fd);
    switch (id) {
    case SERVICE_KVSTORE:
        kvstore_main(ready_fd, supervisor->config->disk, supervisor->churn);
        break;
    case SERVICE_ECHO:
        echo_main(ready_fd);
        break;
    case SERVICE_STREAM:
        stream_main(ready_fd);
        break;
    case SERVICE_CHURN:
        churn_main(ready_fd, supervisor->churn);
        break;
    default:
        break;
    }
    _exit(1);  // the service loops forever; getting here is a failure
}

// Waits until every service has written its ready byte (or died, or the
// time is up) and says which.
static void wait_until_ready(int ready_read_fd) {
    unsigned ready = 0;
    long deadline_ms = READY_TIMEOUT_MS;
    while (ready < SERVICE_COUNT && deadline_ms > 0) {
        struct pollfd polled = {.fd = ready_read_fd, .events = POLLIN};
        double before = seconds_since_boot();
        int result = poll(&polled, 1, (int)deadline_ms);
        deadline_ms -= (long)((seconds_since_boot() - before) * 1000);
        if (result < 0 && errno == EINTR)
            continue;
        if (result <= 0)
            break;
        char bytes[SERVICE_COUNT];
        ssize_t got = read(ready_read_fd, bytes, sizeof bytes);
        if (got <= 0)
            break;  // every writer is gone: a service died before it was ready
        ready += (unsigned)got;
    }
    close(ready_read_fd);
    if (ready >= SERVICE_COUNT)
        say("services ready (%.6f s since boot)", seconds_since_boot());
    else
        say("only %u of %u services became ready", ready, (unsigned)SERVICE_COUNT);
}

static void start_services(struct supervisor *supervisor) {
    int ready_pipe[2];
    if (pipe2(ready_pipe, O_CLOEXEC) != 0) {
        say("pipe: %s", strerror(errno));
        ready_pipe[0] = ready_pipe[1] = -1;
    }
    for (enum service_id id = 0; id < SERVICE_COUNT; id++)
        start_service(supervisor, id, ready_pipe[1], ready_pipe[0]);
    close(ready_pipe[1]);  // so a read sees the end once every service closed its copy
    if (ready_pipe[0] >= 0)
        wait_until_ready(ready_pipe[0]);
}

// Process 1 must never exit (the kernel panics), and it inherits every
// orphan: reap them all, and restart any service that ended.
static _Noreturn void supervise(struct supervisor *supervisor) {
    for (;;) {
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            if (errno != EINTR)
                sleep_ms(1000);  // no children at all: nothing to do but wait
            continue;
        }
        for (enum service_id id = 0; id < SERVICE_COUNT; id++) {
            if (supervisor->pids[id] != pid)
                continue;
            if (WIFSIGNALED(status))
                say("%s killed by signal %d; restarting it in 1 s", service_names[id],
                    WTERMSIG(status));
            else
                say("%s exited with status %d; restarting it in 1 s", service_names[id],
                    WEXITSTATUS(status));
            sleep_ms(1000);  // a service failing at once must not spin
            start_service(supervisor, id, -1, -1);
        }
    }
}

int main(void) {
    mount_file_systems();
    ensure_console();
    say("init started (%.6f s since boot)", seconds_since_boot());

    struct guest_config config;
    read_config(&config);
    configure_network(&config);
    say("disk: %s; churn: %llu pages per second", config.disk[0] ? config.disk : "none",
        (unsigned long long)config.churn_rate);

    struct churn_control *churn = mmap(NULL, sizeof *churn, PROT_READ | PROT_WRITE,
                                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (churn == MAP_FAILED) {
        say("cannot map shared memory: %s", strerror(errno));
        static struct churn_control private_churn;  // CHURN then cannot reach the churner
        churn = &private_churn;
    }
    atomic_store(&churn->pages_per_second, config.churn_rate);

    start_console_echo();
    struct supervisor supervisor = {.config = &config, .churn = churn};
    start_services(&supervisor);
    supervise(&supervisor);
}
