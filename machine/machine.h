/* A whole machine: harts, guest RAM with its dirty log, and the devices of
 * the QEMU `virt` memory map. The machine runs on one thread (machine_run);
 * other threads pause, resume and inspect it through the functions below,
 * which wait for an instruction boundary. */
#ifndef COLO_MACHINE_MACHINE_H
#define COLO_MACHINE_MACHINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "clint.h"
#include "decode_cache.h"
#include "error.h"
#include "guest_ram.h"
#include "hart.h"
#include "plic.h"
#include "sifive_test.h"
#include "state_buffer.h"
#include "uart_ns16550a.h"
#include "virtio_blk.h"
#include "virtio_mmio.h"
#include "virtio_net.h"

/* The QEMU virt memory map. */
#define MACHINE_RAM_BASE          0x80000000ull
#define MACHINE_CLINT_BASE        0x02000000ull
#define MACHINE_CLINT_SIZE        0x00010000ull
#define MACHINE_SIFIVE_TEST_BASE  0x00100000ull
#define MACHINE_SIFIVE_TEST_SIZE  0x00001000ull
#define MACHINE_UART_BASE         0x10000000ull
#define MACHINE_UART_SIZE         0x00000100ull
#define MACHINE_PLIC_BASE         0x0c000000ull
#define MACHINE_UART_IRQ          10
#define MACHINE_TIMEBASE_HZ       10000000ull
#define MACHINE_MAX_HARTS         1
#define MACHINE_MAX_DISKS         4
#define MACHINE_MAX_NICS          4
#define MACHINE_MAX_FD_WATCHES    16

typedef void (*machine_fd_handler)(void *opaque);

struct machine_disk_config {
    char path[4096];
    bool read_only;
};

struct machine_nic_config {
    char tap[16];                       /* empty: no backend (frames dropped) */
    uint8_t mac[6];
};

struct machine_config {
    uint64_t ram_size;                  /* bytes */
    unsigned hart_count;
    /* Deterministic time: mtime advances by one tick every
     * instructions_per_tick retired instructions (WFI skips ahead), so a
     * run depends on nothing but its input. Otherwise mtime follows the
     * host's monotonic clock at MACHINE_TIMEBASE_HZ. */
    bool deterministic_time;
    uint64_t instructions_per_tick;
    int console_output_fd;              /* UART output; -1 discards */
    int console_input_fd;               /* UART input; -1 for none */
    unsigned disk_count;
    struct machine_disk_config disks[MACHINE_MAX_DISKS];
    unsigned nic_count;
    struct machine_nic_config nics[MACHINE_MAX_NICS];
};

void machine_config_defaults(struct machine_config *config);

enum machine_exit_reason {
    MACHINE_RUNNING = 0,
    MACHINE_EXIT_POWEROFF,              /* sifive_test 0x5555 */
    MACHINE_EXIT_RESET,                 /* sifive_test 0x7777 */
    MACHINE_EXIT_CODE,                  /* sifive_test code<<16|0x3333, or tohost */
    MACHINE_EXIT_INSTRUCTION_LIMIT,
    MACHINE_EXIT_STOPPED,               /* machine_request_stop() */
};

struct machine {
    struct machine_config config;
    struct guest_ram ram;
    struct decode_cache decode_cache;
    struct hart harts[MACHINE_MAX_HARTS];
    struct clint clint;
    struct plic plic;
    struct uart_ns16550a uart;
    struct sifive_test sifive_test;
    /* virtio devices; slots[s] is the transport in virtio-mmio slot s */
    struct virtio_mmio *virtio_slots[VIRTIO_MMIO_SLOTS];
    struct virtio_blk *disks[MACHINE_MAX_DISKS];
    struct virtio_net *nics[MACHINE_MAX_NICS];

    /* Host file descriptors polled by the run loop (see machine_watch_fd),
     * and an eventfd that other threads write to wake it. */
    struct machine_fd_watch {
        int fd;
        machine_fd_handler on_readable;
        void *opaque;
        bool in_use, enabled;
    } fd_watches[MACHINE_MAX_FD_WATCHES];
    int wakeup_fd;
    /* Console input waiting for room in the UART's receive FIFO. */
    uint8_t console_input[4096];
    size_t console_input_length;
    int console_watch;

    /* Guest time. Deterministic mode: guest_clock counts retired
     * instructions plus those skipped by WFI. Real-time mode: mtime is host
     * time minus time_offset_ns (kept continuous across save/load). */
    uint64_t guest_clock;
    int64_t time_offset_ns;

    uint64_t tohost_address;            /* 0 when the ELF had no tohost */

    enum machine_exit_reason exit_reason;
    uint32_t exit_code;

    /* Cross-thread control (see machine_pause). pause_depth, paused and
     * running change under control_lock; attention is read every slice
     * without the lock and says "look at the requests". */
    pthread_mutex_t control_lock;
    pthread_cond_t control_changed;
    unsigned pause_depth;
    bool paused;
    bool running;
    atomic_bool stop_requested;
    atomic_bool attention;
};

int machine_create(struct machine *machine, const struct machine_config *config, struct error *err);
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

/* Guest time in timebase ticks (CLINT mtime). */
uint64_t machine_mtime(struct machine *machine);
/* Recomputes MTIP/MSIP of every hart from the CLINT. */
void machine_update_timer_interrupts(struct machine *machine);

/* Physical accesses that are not RAM (MMIO). Return false for no device:
 * the hart turns that into an access fault. */
bool machine_mmio_read(struct machine *machine, uint64_t address, unsigned size, uint64_t *value);
bool machine_mmio_write(struct machine *machine, uint64_t address, unsigned size, uint64_t value);

/* A device (DMA) or loader write into guest RAM: marks the dirty log and
 * drops decoded instructions of the pages it touches. */
int machine_ram_write(struct machine *machine, uint64_t address, const void *data, uint64_t length);
/* Makes `count` RAM pages from page index `first` all zero, with the same
 * bookkeeping as machine_ram_write (dirty log, pre-images, decoded code).
 * Long runs go back to the kernel (they read as zero and hold no memory,
 * and a fresh machine's untouched RAM is never faulted in); short ones are
 * cleared by hand unless they are zero already. -1 if outside RAM. */
int machine_ram_clear_pages(struct machine *machine, uint64_t first, uint64_t count);
/* After the host wrote guest RAM directly (PTE A/D updates): dirty log and
 * decoded-code bookkeeping for [address, address + length). */
void machine_ram_write_done(struct machine *machine, uint64_t address, uint64_t length);
/* The decoded page for a RAM page, allocated on first use; marks the page
 * as holding code so no hart maps it for writing. NULL if out of memory. */
struct decoded_page *machine_decoded_page(struct machine *machine, uint64_t page_index);
/* Forgets a page's decoded instructions (a store hit it). */
void machine_drop_decoded_page(struct machine *machine, uint64_t page_index);
/* Called for every store to the watched (tohost) page. */
void machine_note_ram_store(struct machine *machine, struct hart *hart, uint64_t address, unsigned size, uint64_t value);

/* External interrupt outputs of the PLIC: context 0 drives hart 0's
 * mip.MEIP, context 1 its mip.SEIP. */
void machine_set_external_interrupt(struct machine *machine, unsigned context, bool level);

/* Host file descriptors the run loop polls between slices and while the
 * harts wait for interrupts. on_readable runs on the machine's thread.
 * Returns a watch id (>= 0) or -1 when the table is full. */
int machine_watch_fd(struct machine *machine, int fd, machine_fd_handler on_readable, void *opaque);
void machine_watch_enable(struct machine *machine, int watch, bool enabled);
void machine_unwatch_fd(struct machine *machine, int watch);

/* Called by guest devices to end the run (power off, exit code). */
void machine_guest_exit(struct machine *machine, enum machine_exit_reason reason, uint32_t code);

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
uint64_t machine_ram_size(const struct machine *machine);      /* bytes */
uint64_t machine_ram_page_count(const struct machine *machine);  /* GUEST_PAGE_SIZE pages */
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

/* FNV-1a 64-bit hash of all of guest RAM, for tests. */
uint64_t machine_ram_hash(const struct machine *machine);
/* FNV-1a 64-bit hash of hart 0's saved state (exactly what is guest
 * visible), for tests. */
uint64_t machine_hart_hash(const struct machine *machine);

#endif
