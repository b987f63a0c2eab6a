/* A whole machine: harts, guest RAM with its dirty log, and the devices of
 * the QEMU `virt` memory map. This is the machine layer's API for the
 * layers above (stream, replication, control, vm, programs): struct
 * machine is opaque to them, and everything they need is a function here
 * or in the NIC and disk APIs (virtio_net.h, virtio_blk.h). Devices, the
 * harts and tests of the machine itself use machine_devices.h.
 *
 * The machine runs on one thread (machine_run); other threads pause,
 * resume and inspect it through the functions below, which wait for an
 * instruction boundary. */
#ifndef COLO_MACHINE_MACHINE_H
#define COLO_MACHINE_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "guest_ram.h"
#include "state_buffer.h"
#include "virtio_blk.h"
#include "virtio_net.h"
#include "virtio_rng.h"

#define MACHINE_RAM_BASE 0x80000000ull /* the QEMU virt map's RAM */
#define MACHINE_TIMEBASE_HZ 10000000ull
#define MACHINE_MAX_HARTS 1
#define MACHINE_MAX_DISKS 4
#define MACHINE_MAX_NICS 4

struct machine;

typedef void (*machine_fd_handler)(void *opaque);

struct machine_disk_config {
    char path[4096];
    bool read_only;
};

struct machine_nic_config {
    char tap[16]; /* empty: no backend (frames dropped) */
    uint8_t mac[6];
};

struct machine_config {
    uint64_t ram_size; /* bytes */
    unsigned hart_count;
    /* Deterministic time: mtime advances by one tick every
     * instructions_per_tick retired instructions (WFI skips ahead), so a
     * run depends on nothing but its input. Otherwise mtime follows the
     * host's monotonic clock at MACHINE_TIMEBASE_HZ. */
    bool deterministic_time;
    uint64_t instructions_per_tick;
    int console_output_fd; /* UART output; -1 discards */
    int console_input_fd;  /* UART input; -1 for none */
    unsigned disk_count;
    struct machine_disk_config disks[MACHINE_MAX_DISKS];
    unsigned nic_count;
    struct machine_nic_config nics[MACHINE_MAX_NICS];
    /* A virtio-rng in the last virtio-mmio slot (default on: a Linux guest
     * without one waits seconds for its crng). Off leaves all 8 slots to
     * disks and NICs. */
    bool rng;
};

void machine_config_defaults(struct machine_config *config);

enum machine_exit_reason {
    MACHINE_RUNNING = 0,
    MACHINE_EXIT_POWEROFF, /* sifive_test 0x5555 */
    MACHINE_EXIT_RESET,    /* sifive_test 0x7777 */
    MACHINE_EXIT_CODE,     /* sifive_test code<<16|0x3333, or tohost */
    MACHINE_EXIT_INSTRUCTION_LIMIT,
    MACHINE_EXIT_STOPPED,     /* machine_request_stop() */
    MACHINE_EXIT_GUEST_PANIC, /* pvpanic: the guest kernel panicked */
};

/* A new machine with the configuration's devices (disks over their image
 * files, NICs on their TAPs), or NULL with err set. */
struct machine *machine_create(const struct machine_config *config, struct error *err);
/* Frees the machine and its devices; NULL is fine. */
void machine_destroy(struct machine *machine);

/* Loads a bare-metal ELF at its physical link addresses, points every hart
 * at its entry, and arms HTIF if it has a `tohost` symbol. */
int machine_load_elf(struct machine *machine, const char *path, struct error *err);

/* Runs until the guest exits, the limit is reached (0 = no limit) or
 * machine_request_stop(). Pauses in between when asked. */
enum machine_exit_reason machine_run(struct machine *machine, uint64_t instruction_limit);

/* From another thread: stop at the next instruction boundary and wait,
 * with a bounded wait (one slice). Returns once paused. */
void machine_pause(struct machine *machine);
/* How many machine_pause calls are in force, read under the control lock
 * (any thread; a value at one instant, for checks and status). */
unsigned machine_pause_depth(struct machine *machine);
void machine_resume(struct machine *machine);
void machine_request_stop(struct machine *machine);

/* Dirty log. read_and_clear is atomic with respect to the harts: it pauses
 * them (if running) around the exchange. */
void machine_dirty_log_enable(struct machine *machine, bool enable);
uint64_t machine_dirty_log_read_and_clear(struct machine *machine, uint64_t *bitmap);

/* Pre-images (for a COLO secondary): with the dirty log on, the first
 * write to each page since the last reset copies the page first, so
 * rollback can undo everything the VM (or a device) wrote since then with
 * one copy of RAM plus the pages written. Each pauses the harts around its
 * work. rollback returns the pages restored, or -1 if memory ran out while
 * capturing (the interval cannot be undone). */
void machine_preimages_enable(struct machine *machine, bool enable);
int64_t machine_preimages_rollback(struct machine *machine);
/* The rollback a COLO secondary does once a checkpoint has arrived whole
 * and before it is applied (guest_ram_preimages_rollback_before_load):
 * pages the checkpoint overwrites are not restored, and writes are not
 * captured until machine_preimages_reset, which the caller does once the
 * checkpoint is applied. Returns the pages restored, or -1. */
int64_t machine_preimages_rollback_before_load(struct machine *machine, bool (*overwritten)(void *, uint64_t),
                                               void *opaque);
void machine_preimages_reset(struct machine *machine);

/* A write into guest RAM from outside the guest (a device's DMA, the
 * loader, an incoming checkpoint): marks the dirty log, captures
 * pre-images and drops decoded instructions of the pages it touches. -1
 * if outside RAM. Machine thread, or with the machine paused. */
int machine_ram_write(struct machine *machine, uint64_t address, const void *data, uint64_t length);
/* Makes `count` RAM pages from page index `first` all zero, with the same
 * bookkeeping as machine_ram_write (dirty log, pre-images, decoded code).
 * Long runs go back to the kernel (they read as zero and hold no memory,
 * and a fresh machine's untouched RAM is never faulted in); short ones are
 * cleared by hand unless they are zero already. -1 if outside RAM. */
int machine_ram_clear_pages(struct machine *machine, uint64_t first, uint64_t count);

/* Host file descriptors the run loop polls between slices and while the
 * harts wait for interrupts. on_readable runs on the machine's thread.
 * Returns a watch id (>= 0) or -1 when the table is full. */
int machine_watch_fd(struct machine *machine, int fd, machine_fd_handler on_readable, void *opaque);
void machine_watch_enable(struct machine *machine, int watch, bool enabled);
void machine_unwatch_fd(struct machine *machine, int watch);

/* Whole machine state: harts and devices (not RAM). */
void machine_save_state(struct machine *machine, struct state_writer *writer);
int machine_load_state(struct machine *machine, const void *data, size_t length, struct error *err);

/* What the layers above may know of a machine, without its fields.
 * Counts and devices are fixed at machine_create; the rest is read on the
 * machine's thread or with the machine paused (machine_pause) to get a
 * value that agrees with the others. */
const struct machine_config *machine_get_config(const struct machine *machine);
unsigned machine_nic_count(const struct machine *machine);
/* NIC `index` (0 .. machine_nic_count - 1), or NULL. */
struct virtio_net *machine_nic(struct machine *machine, unsigned index);
/* The index of one of this machine's NICs, or -1 if it is not ours. */
int machine_nic_index(const struct machine *machine, const struct virtio_net *nic);
unsigned machine_disk_count(const struct machine *machine);
/* Disk `index` (0 .. machine_disk_count - 1), or NULL. */
struct virtio_blk *machine_disk(struct machine *machine, unsigned index);
/* The entropy device, or NULL when the machine has none (config.rng). */
struct virtio_rng *machine_rng(struct machine *machine);
uint64_t machine_ram_size(const struct machine *machine);       /* bytes */
uint64_t machine_ram_page_count(const struct machine *machine); /* GUEST_PAGE_SIZE pages */
/* Words of a dirty bitmap for this machine (machine_dirty_log_read_and_clear). */
size_t machine_dirty_bitmap_words(const struct machine *machine);
/* Guest RAM page `page_index` for reading (GUEST_PAGE_SIZE bytes), or
 * NULL outside RAM. While the machine runs, the guest may be changing it. */
const uint8_t *machine_ram_page(const struct machine *machine, uint64_t page_index);
bool machine_dirty_log_enabled(const struct machine *machine);
/* Pages captured as pre-images since the last reset (machine paused). */
size_t machine_preimage_count(const struct machine *machine);
/* The guest's exit code once machine_run returned MACHINE_EXIT_CODE. */
uint32_t machine_exit_code(const struct machine *machine);
/* Hart 0's retired instructions (instret) and program counter. */
uint64_t machine_instructions_retired(const struct machine *machine);
uint64_t machine_pc(const struct machine *machine);

/* A hash of what a machine's state must agree with to be loaded into it:
 * RAM size, harts, and the devices (kinds, order, NIC MACs, disk sizes). */
uint64_t machine_configuration_hash(const struct machine *machine);

/* What machine_configuration_hash covers, field by field: two machines
 * with equal descriptions have equal hashes. Exchanged before a copy
 * between hosts (stream MACHINE_DESCRIPTION), so a refusal can name what
 * differs instead of a hash. */
struct machine_description {
    uint64_t ram_size; /* bytes */
    uint32_t hart_count;
    uint32_t disk_count;
    uint64_t disk_sizes[MACHINE_MAX_DISKS]; /* bytes */
    bool disk_read_only[MACHINE_MAX_DISKS];
    uint32_t nic_count;
    uint8_t nic_macs[MACHINE_MAX_NICS][6];
    bool has_rng; /* the entropy device (virtio-rng) */
};

void machine_describe(const struct machine *machine, struct machine_description *description);

/* Every way `here` differs from `there`, as one sentence into text (at
 * most size bytes, cut short if need be), each side called by its name
 * ("secondary", "primary"): "the secondary's RAM is 256 MiB, the
 * primary's 512 MiB; nic 0: MAC 52:54:00:00:00:01 on the secondary,
 * 52:54:00:00:00:02 on the primary". False (text empty) when they agree. */
bool machine_description_difference(const struct machine_description *here, const char *here_name,
                                    const struct machine_description *there, const char *there_name, char *text,
                                    size_t size);

/* FNV-1a 64-bit hash of all of guest RAM, for tests. */
uint64_t machine_ram_hash(const struct machine *machine);
/* FNV-1a 64-bit hash of hart 0's saved state (exactly what is guest
 * visible), for tests. */
uint64_t machine_hart_hash(const struct machine *machine);

#endif
