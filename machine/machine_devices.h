/* The inside of the machine, for its harts and devices and for the tests
 * of the machine layer: struct machine itself, the memory map of the
 * devices, and what devices call on the machine (interrupts, RAM writes
 * with their bookkeeping, decoded code, guest exits). The layers above use
 * machine.h only. */
#ifndef COLO_MACHINE_MACHINE_DEVICES_H
#define COLO_MACHINE_MACHINE_DEVICES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "clint.h"
#include "decode_cache.h"
#include "guest_ram.h"
#include "hart.h"
#include "machine.h"
#include "plic.h"
#include "pvpanic.h"
#include "rtc_goldfish.h"
#include "sifive_test.h"
#include "state_buffer.h"
#include "uart_ns16550a.h"
#include "virtio_blk_device.h"
#include "virtio_mmio.h"
#include "virtio_net_device.h"
#include "virtio_rng_device.h"

/* The rest of the QEMU virt memory map (RAM: MACHINE_RAM_BASE). */
#define MACHINE_CLINT_BASE 0x02000000ull
#define MACHINE_CLINT_SIZE 0x00010000ull
#define MACHINE_SIFIVE_TEST_BASE 0x00100000ull
#define MACHINE_SIFIVE_TEST_SIZE 0x00001000ull
#define MACHINE_PVPANIC_BASE 0x00102000ull
#define MACHINE_PVPANIC_SIZE 0x00001000ull
#define MACHINE_UART_BASE 0x10000000ull
#define MACHINE_UART_SIZE 0x00000100ull
#define MACHINE_PLIC_BASE 0x0c000000ull
#define MACHINE_UART_IRQ 10
#define MACHINE_RTC_BASE 0x00101000ull
#define MACHINE_RTC_SIZE 0x00001000ull
#define MACHINE_RTC_IRQ 11
/* The entropy device's slot: the last, so that disks (from slot 0) and
 * NICs (after the disks) keep theirs whether it is there or not. */
#define MACHINE_RNG_SLOT (VIRTIO_MMIO_SLOTS - 1)
#define MACHINE_MAX_FD_WATCHES 16

struct machine {
    struct machine_config config;
    struct guest_ram ram;
    struct decode_cache decode_cache;
    struct hart harts[MACHINE_MAX_HARTS];
    struct clint clint;
    struct plic plic;
    struct uart_ns16550a uart;
    struct sifive_test sifive_test;
    struct pvpanic pvpanic;
    struct rtc_goldfish rtc;
    /* virtio devices; slots[s] is the transport in virtio-mmio slot s */
    struct virtio_mmio *virtio_slots[VIRTIO_MMIO_SLOTS];
    struct virtio_blk *disks[MACHINE_MAX_DISKS];
    struct virtio_net *nics[MACHINE_MAX_NICS];
    struct virtio_rng *rng; /* NULL when config.rng is off */

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
    /* Host time of the last look at the watched descriptors between
     * slices (real-time mode looks at most every MACHINE_POLL_INTERVAL_NS). */
    uint64_t last_poll_ns;

    uint64_t tohost_address; /* 0 when the ELF had no tohost */

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

/* Guest time in timebase ticks (CLINT mtime). */
uint64_t machine_mtime(struct machine *machine);
/* Recomputes MTIP/MSIP of every hart from the CLINT. */
void machine_update_timer_interrupts(struct machine *machine);

/* Physical accesses that are not RAM (MMIO). Return false for no device:
 * the hart turns that into an access fault. */
bool machine_mmio_read(struct machine *machine, uint64_t address, unsigned size, uint64_t *value);
bool machine_mmio_write(struct machine *machine, uint64_t address, unsigned size, uint64_t value);

/* After the host wrote guest RAM directly (PTE A/D updates): dirty log and
 * decoded-code bookkeeping for [address, address + length). */
void machine_ram_write_done(struct machine *machine, uint64_t address, uint64_t length);
/* The decoded page for a RAM page, allocated on first use; marks the page
 * as holding code so no hart maps it for writing. NULL if out of memory. */
struct decoded_page *machine_decoded_page(struct machine *machine, uint64_t page_index);
/* Forgets a page's decoded instructions (a store hit it). */
void machine_drop_decoded_page(struct machine *machine, uint64_t page_index);
/* Called for every store to the watched (tohost) page. */
void machine_note_ram_store(struct machine *machine, struct hart *hart, uint64_t address, unsigned size,
                            uint64_t value);

/* External interrupt outputs of the PLIC: context 0 drives hart 0's
 * mip.MEIP, context 1 its mip.SEIP. */
void machine_set_external_interrupt(struct machine *machine, unsigned context, bool level);

/* Called by guest devices to end the run (power off, exit code). */
void machine_guest_exit(struct machine *machine, enum machine_exit_reason reason, uint32_t code);

#endif
