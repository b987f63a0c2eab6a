/* The machine: composition of harts, RAM and devices; the run loop; and
 * the cross-thread controls (pause, resume, dirty log). */
#include "machine_devices.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "block_file.h"
#include "clock.h"
#include "elf_loader.h"
#include "hart_decode.h"
#include "net_tap.h"

/* Instructions per slice: the longest a pause request waits (about 0.2 ms
 * at 300 MIPS) and the granularity of real-time timer interrupts. */
#define MACHINE_SLICE_INSTRUCTIONS 65536
/* In real-time mode the run loop looks at the host descriptors (network,
 * console, wakeups) at most this often between slices: slices end early
 * on traps and device accesses, and a ppoll after each cost a third of a
 * Linux guest's boot. 50 us is far below a network round trip. */
#define MACHINE_POLL_INTERVAL_NS 50000
#define NANOSECONDS_PER_TICK (1000000000ull / MACHINE_TIMEBASE_HZ)

void machine_config_defaults(struct machine_config *config)
{
    memset(config, 0, sizeof *config);
    config->ram_size = 128ull << 20;
    config->hart_count = 1;
    config->deterministic_time = false;
    config->instructions_per_tick = 10;
    config->console_output_fd = 1;
    config->console_input_fd = -1;
    config->rng = true;
}

static void console_feed_uart(struct machine *machine);
static void flush_all_write_tlbs(struct machine *machine);

static void on_console_readable(void *opaque)
{
    struct machine *machine = opaque;
    size_t room = sizeof machine->console_input - machine->console_input_length;
    if (room > 0) {
        ssize_t got = read(machine->config.console_input_fd, machine->console_input + machine->console_input_length,
                           room);
        if (got > 0) {
            machine->console_input_length += (size_t)got;
        } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
            /* End of input (or a broken terminal): stop watching it. */
            machine_unwatch_fd(machine, machine->console_watch);
            machine->console_watch = -1;
        }
    }
    console_feed_uart(machine);
}

/* Moves console input into the UART as its FIFO has room; stops reading
 * the host side while our buffer is full, so no byte is ever lost. */
static void console_feed_uart(struct machine *machine)
{
    size_t moved = 0;
    while (moved < machine->console_input_length && uart_ns16550a_receive_space(&machine->uart) > 0) {
        uart_ns16550a_receive(&machine->uart, machine->console_input[moved]);
        moved++;
    }
    if (moved) {
        memmove(machine->console_input, machine->console_input + moved, machine->console_input_length - moved);
        machine->console_input_length -= moved;
    }
    if (machine->console_watch >= 0)
        machine_watch_enable(machine, machine->console_watch,
                             machine->console_input_length < sizeof machine->console_input);
}

static int attach_tap(struct virtio_net *nic, const char *name, struct error *err)
{
    struct net_backend *tap = net_tap_open(name, err);
    if (!tap)
        return -1;
    if (virtio_net_attach_backend(nic, tap, err) < 0) {
        net_backend_destroy(tap);
        return -1;
    }
    return 0;
}

static int create_devices(struct machine *machine, struct error *err)
{
    const struct machine_config *config = &machine->config;
    unsigned slot = 0;
    if (config->disk_count > MACHINE_MAX_DISKS || config->nic_count > MACHINE_MAX_NICS)
        return error_set(err, "%u disks and %u NICs: at most %d of each", config->disk_count, config->nic_count,
                         MACHINE_MAX_DISKS);
    unsigned free_slots = config->rng ? VIRTIO_MMIO_SLOTS - 1 : VIRTIO_MMIO_SLOTS;
    if (config->disk_count + config->nic_count > free_slots)
        return error_set(err, "%u disks and %u NICs need more than the %u virtio-mmio slots%s", config->disk_count,
                         config->nic_count, free_slots,
                         config->rng ? " left beside the entropy device (the last slot)" : "");
    if (config->rng) {
        machine->rng = calloc(1, sizeof *machine->rng);
        if (!machine->rng)
            return error_set(err, "out of memory for the entropy device");
        virtio_rng_init(machine->rng, machine, MACHINE_RNG_SLOT);
        machine->virtio_slots[MACHINE_RNG_SLOT] = &machine->rng->transport;
    }
    for (unsigned i = 0; i < config->disk_count; i++, slot++) {
        struct virtio_blk *disk = calloc(1, sizeof *disk);
        if (!disk)
            return error_set(err, "out of memory for disk %u", i);
        struct block_backend *image = block_file_open(config->disks[i].path, config->disks[i].read_only, err);
        if (!image || virtio_blk_init(disk, machine, slot, image, err) < 0) {
            block_backend_destroy(image);
            free(disk);
            return -1;
        }
        machine->disks[i] = disk;
        machine->virtio_slots[slot] = &disk->transport;
    }
    for (unsigned i = 0; i < config->nic_count; i++, slot++) {
        struct virtio_net *nic = calloc(1, sizeof *nic);
        if (!nic)
            return error_set(err, "out of memory for NIC %u", i);
        nic->watch = -1;
        if (virtio_net_init(nic, machine, slot, config->nics[i].mac, err) < 0) {
            free(nic);
            return -1;
        }
        machine->nics[i] = nic;
        machine->virtio_slots[slot] = &nic->transport;
        if (config->nics[i].tap[0] && attach_tap(nic, config->nics[i].tap, err) < 0)
            return -1;
    }
    return 0;
}

struct machine *machine_create(const struct machine_config *config, struct error *err)
{
    if (config->hart_count < 1 || config->hart_count > MACHINE_MAX_HARTS) {
        error_set(err, "hart count %u is not supported (1..%u)", config->hart_count, MACHINE_MAX_HARTS);
        return NULL;
    }
    if (config->instructions_per_tick == 0) {
        error_set(err, "instructions per timer tick must be at least 1");
        return NULL;
    }
    /* Large (the harts' TLBs): never on a caller's stack. */
    struct machine *machine = calloc(1, sizeof *machine);
    if (!machine) {
        error_set(err, "out of memory for the machine");
        return NULL;
    }
    machine->config = *config;
    if (guest_ram_init(&machine->ram, MACHINE_RAM_BASE, config->ram_size, err) < 0) {
        free(machine);
        return NULL;
    }
    if (decode_cache_init(&machine->decode_cache, machine->ram.page_count, err) < 0) {
        guest_ram_destroy(&machine->ram);
        free(machine);
        return NULL;
    }
    for (unsigned i = 0; i < config->hart_count; i++)
        hart_init(&machine->harts[i], machine, i);
    clint_init(&machine->clint, machine, config->hart_count);
    plic_init(&machine->plic, machine);
    uart_ns16550a_init(&machine->uart, config->console_output_fd);
    uart_ns16550a_connect_interrupt(&machine->uart, &machine->plic, MACHINE_UART_IRQ);
    sifive_test_init(&machine->sifive_test, machine);
    pvpanic_init(&machine->pvpanic, machine);
    machine->time_offset_ns = (int64_t)clock_monotonic_ns();
    /* The wall clock: the host's, or a fixed date when runs must be
     * identical. From here on it advances with guest time only. */
    rtc_goldfish_init(&machine->rtc, machine, &machine->plic, MACHINE_RTC_IRQ,
                      config->deterministic_time ? RTC_GOLDFISH_DETERMINISTIC_EPOCH_NS : clock_realtime_ns());
    pthread_mutex_init(&machine->control_lock, NULL);
    pthread_cond_init(&machine->control_changed, NULL);
    machine->console_watch = -1;
    machine->wakeup_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (machine->wakeup_fd < 0) {
        error_set_errno(err, "cannot create the machine's wakeup eventfd");
        machine_destroy(machine);
        return NULL;
    }
    if (create_devices(machine, err) < 0) {
        machine_destroy(machine);
        return NULL;
    }
    if (config->console_input_fd >= 0) {
        machine->console_watch = machine_watch_fd(machine, config->console_input_fd, on_console_readable, machine);
    }
    return machine;
}

void machine_destroy(struct machine *machine)
{
    if (!machine)
        return;
    for (unsigned i = 0; i < MACHINE_MAX_DISKS; i++) {
        if (machine->disks[i]) {
            virtio_blk_destroy(machine->disks[i]);
            free(machine->disks[i]);
        }
    }
    for (unsigned i = 0; i < MACHINE_MAX_NICS; i++) {
        if (machine->nics[i]) {
            virtio_net_destroy(machine->nics[i]);
            free(machine->nics[i]);
        }
    }
    free(machine->rng);
    if (machine->wakeup_fd > 0)
        close(machine->wakeup_fd);
    decode_cache_destroy(&machine->decode_cache);
    guest_ram_destroy(&machine->ram);
    pthread_mutex_destroy(&machine->control_lock);
    pthread_cond_destroy(&machine->control_changed);
    free(machine);
}

int machine_load_elf(struct machine *machine, const char *path, struct error *err)
{
    struct elf_load_result result;
    if (elf_load(machine, path, &result, err) < 0)
        return -1;
    for (unsigned i = 0; i < machine->config.hart_count; i++)
        hart_reset(&machine->harts[i], result.entry);
    machine->tohost_address = result.tohost_address;
    machine->ram.watched_page = UINT64_MAX;
    if (result.tohost_address && guest_ram_contains(&machine->ram, result.tohost_address, 8)) {
        machine->ram.watched_page = (result.tohost_address - machine->ram.base) >> GUEST_PAGE_SHIFT;
        for (unsigned i = 0; i < machine->config.hart_count; i++)
            hart_tlb_flush_all(&machine->harts[i]);
    }
    return 0;
}

/* ---- time ---- */

uint64_t machine_mtime(struct machine *machine)
{
    if (machine->config.deterministic_time)
        return machine->guest_clock / machine->config.instructions_per_tick;
    return (uint64_t)((int64_t)clock_monotonic_ns() - machine->time_offset_ns) / NANOSECONDS_PER_TICK;
}

void machine_update_timer_interrupts(struct machine *machine)
{
    if (machine->rtc.state.alarm_armed)
        rtc_goldfish_check_alarm(&machine->rtc);
    uint64_t now = machine_mtime(machine);
    for (unsigned i = 0; i < machine->config.hart_count; i++) {
        struct hart *hart = &machine->harts[i];
        uint64_t mip = hart->state.mip & ~(MIP_MTIP | MIP_MSIP);
        if (now >= machine->clint.state.mtimecmp[i])
            mip |= MIP_MTIP;
        if (machine->clint.state.msip[i] & 1)
            mip |= MIP_MSIP;
        if (mip != hart->state.mip) {
            hart->state.mip = mip;
            /* Leave the run loop now, so an interrupt is taken at the same
             * instruction however the run is sliced (deterministic mode). */
            hart->interrupt_check_needed = true;
            hart->leave_run_loop = true;
        }
    }
}

void machine_set_external_interrupt(struct machine *machine, unsigned context, bool level)
{
    /* Context 2h is hart h's M-mode, 2h + 1 its S-mode. */
    unsigned hart_index = context / 2;
    if (hart_index >= machine->config.hart_count)
        return;
    struct hart *hart = &machine->harts[hart_index];
    uint64_t bit = (context & 1) ? MIP_SEIP : MIP_MEIP;
    uint64_t mip = level ? hart->state.mip | bit : hart->state.mip & ~bit;
    if (mip != hart->state.mip) {
        hart->state.mip = mip;
        hart->interrupt_check_needed = true;
        hart->leave_run_loop = true;
    }
}

/* ---- host file descriptors ---- */

int machine_watch_fd(struct machine *machine, int fd, machine_fd_handler on_readable, void *opaque)
{
    for (int i = 0; i < MACHINE_MAX_FD_WATCHES; i++) {
        struct machine_fd_watch *watch = &machine->fd_watches[i];
        if (!watch->in_use) {
            *watch = (struct machine_fd_watch){ fd, on_readable, opaque, true, true };
            return i;
        }
    }
    return -1;
}

void machine_watch_enable(struct machine *machine, int watch, bool enabled)
{
    if (watch >= 0 && watch < MACHINE_MAX_FD_WATCHES)
        machine->fd_watches[watch].enabled = enabled;
}

void machine_unwatch_fd(struct machine *machine, int watch)
{
    if (watch >= 0 && watch < MACHINE_MAX_FD_WATCHES)
        machine->fd_watches[watch].in_use = false;
}

/* Polls the watched descriptors (and the wakeup eventfd) for up to
 * timeout_ns (0: just look) and runs the handlers of the readable ones. */
static void poll_host_descriptors(struct machine *machine, int64_t timeout_ns)
{
    struct pollfd fds[MACHINE_MAX_FD_WATCHES + 1];
    int owners[MACHINE_MAX_FD_WATCHES + 1];
    nfds_t count = 0;
    for (int i = 0; i < MACHINE_MAX_FD_WATCHES; i++) {
        const struct machine_fd_watch *watch = &machine->fd_watches[i];
        if (watch->in_use && watch->enabled) {
            fds[count] = (struct pollfd){ .fd = watch->fd, .events = POLLIN };
            owners[count++] = i;
        }
    }
    if (count == 0 && timeout_ns == 0)
        return;
    fds[count] = (struct pollfd){ .fd = machine->wakeup_fd, .events = POLLIN };
    owners[count++] = -1;
    struct timespec timeout = { timeout_ns / 1000000000, timeout_ns % 1000000000 };
    int ready = ppoll(fds, count, &timeout, NULL);
    if (ready <= 0)
        return;
    for (nfds_t i = 0; i < count; i++) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        if (owners[i] < 0) {
            uint64_t drained;
            if (read(machine->wakeup_fd, &drained, sizeof drained) < 0) { /* nothing to drain */
            }
            continue;
        }
        struct machine_fd_watch *watch = &machine->fd_watches[owners[i]];
        if (watch->in_use && watch->enabled)
            watch->on_readable(watch->opaque);
    }
}

static void wake_run_loop(struct machine *machine)
{
    uint64_t one = 1;
    if (machine->wakeup_fd >= 0 && write(machine->wakeup_fd, &one, sizeof one) < 0) {
        /* the counter is saturated: the loop is being woken anyway */
    }
}

/* ---- memory ---- */

bool machine_mmio_read(struct machine *machine, uint64_t address, unsigned size, uint64_t *value)
{
    if (address - MACHINE_CLINT_BASE < MACHINE_CLINT_SIZE)
        return clint_read(&machine->clint, address - MACHINE_CLINT_BASE, size, value);
    if (address - MACHINE_UART_BASE < MACHINE_UART_SIZE)
        return uart_ns16550a_read(&machine->uart, address - MACHINE_UART_BASE, size, value);
    if (address - MACHINE_SIFIVE_TEST_BASE < MACHINE_SIFIVE_TEST_SIZE)
        return sifive_test_read(&machine->sifive_test, address - MACHINE_SIFIVE_TEST_BASE, size, value);
    if (address - MACHINE_PVPANIC_BASE < MACHINE_PVPANIC_SIZE)
        return pvpanic_read(&machine->pvpanic, address - MACHINE_PVPANIC_BASE, size, value);
    if (address - MACHINE_RTC_BASE < MACHINE_RTC_SIZE)
        return rtc_goldfish_read(&machine->rtc, address - MACHINE_RTC_BASE, size, value);
    if (address - MACHINE_PLIC_BASE < PLIC_SIZE)
        return plic_read(&machine->plic, address - MACHINE_PLIC_BASE, size, value);
    if (address - VIRTIO_MMIO_BASE < VIRTIO_MMIO_STRIDE * VIRTIO_MMIO_SLOTS) {
        struct virtio_mmio *slot = machine->virtio_slots[(address - VIRTIO_MMIO_BASE) / VIRTIO_MMIO_STRIDE];
        if (!slot) {
            *value = 0; /* an empty slot reads as zeros: no magic, no device */
            return true;
        }
        return virtio_mmio_read(slot, (address - VIRTIO_MMIO_BASE) % VIRTIO_MMIO_STRIDE, size, value);
    }
    return false;
}

bool machine_mmio_write(struct machine *machine, uint64_t address, unsigned size, uint64_t value)
{
    if (address - MACHINE_CLINT_BASE < MACHINE_CLINT_SIZE)
        return clint_write(&machine->clint, address - MACHINE_CLINT_BASE, size, value);
    if (address - MACHINE_UART_BASE < MACHINE_UART_SIZE)
        return uart_ns16550a_write(&machine->uart, address - MACHINE_UART_BASE, size, value);
    if (address - MACHINE_SIFIVE_TEST_BASE < MACHINE_SIFIVE_TEST_SIZE)
        return sifive_test_write(&machine->sifive_test, address - MACHINE_SIFIVE_TEST_BASE, size, value);
    if (address - MACHINE_PVPANIC_BASE < MACHINE_PVPANIC_SIZE)
        return pvpanic_write(&machine->pvpanic, address - MACHINE_PVPANIC_BASE, size, value);
    if (address - MACHINE_RTC_BASE < MACHINE_RTC_SIZE)
        return rtc_goldfish_write(&machine->rtc, address - MACHINE_RTC_BASE, size, value);
    if (address - MACHINE_PLIC_BASE < PLIC_SIZE)
        return plic_write(&machine->plic, address - MACHINE_PLIC_BASE, size, value);
    if (address - VIRTIO_MMIO_BASE < VIRTIO_MMIO_STRIDE * VIRTIO_MMIO_SLOTS) {
        struct virtio_mmio *slot = machine->virtio_slots[(address - VIRTIO_MMIO_BASE) / VIRTIO_MMIO_STRIDE];
        if (!slot)
            return true; /* writes to an empty slot are ignored */
        return virtio_mmio_write(slot, (address - VIRTIO_MMIO_BASE) % VIRTIO_MMIO_STRIDE, size, value);
    }
    return false;
}

struct decoded_page *machine_decoded_page(struct machine *machine, uint64_t page_index)
{
    struct decoded_page *page = machine->decode_cache.pages[page_index];
    if (!page) {
        page = malloc(sizeof *page);
        if (!page)
            return NULL;
        hart_decoded_page_reset(page);
        machine->decode_cache.pages[page_index] = page;
    }
    if (!machine->ram.has_decoded_code[page_index]) {
        machine->ram.has_decoded_code[page_index] = 1;
        const uint8_t *host_page = machine->ram.host + (page_index << GUEST_PAGE_SHIFT);
        for (unsigned i = 0; i < machine->config.hart_count; i++)
            hart_tlb_flush_writes_to_host_page(&machine->harts[i], host_page);
    }
    return page;
}

void machine_drop_decoded_page(struct machine *machine, uint64_t page_index)
{
    struct decoded_page *page = machine->decode_cache.pages[page_index];
    if (page)
        hart_decoded_page_reset(page);
    machine->ram.has_decoded_code[page_index] = 0;
    machine->decode_cache.invalidations++;
    /* Fetch entries must go too: a fetch through them would decode into
     * the page without marking it as code again. */
    for (unsigned h = 0; h < machine->config.hart_count; h++) {
        struct hart *hart = &machine->harts[h];
        for (unsigned p = 0; p < 4; p++)
            for (unsigned i = 0; i < HART_TLB_ENTRIES; i++)
                if (hart->tlb[p].fetch[i].decoded == page)
                    hart->tlb[p].fetch[i].page = UINT64_MAX;
        hart->leave_run_loop = true;
    }
}

void machine_ram_write_done(struct machine *machine, uint64_t address, uint64_t length)
{
    struct guest_ram *ram = &machine->ram;
    if (length == 0)
        return;
    uint64_t first = (address - ram->base) >> GUEST_PAGE_SHIFT;
    uint64_t last = (address + length - 1 - ram->base) >> GUEST_PAGE_SHIFT;
    for (uint64_t page = first; page <= last; page++) {
        if (ram->has_decoded_code[page])
            machine_drop_decoded_page(machine, page);
    }
}

int machine_ram_write(struct machine *machine, uint64_t address, const void *data, uint64_t length)
{
    if (!guest_ram_contains(&machine->ram, address, length))
        return -1;
    guest_ram_before_write(&machine->ram, address, length);
    memcpy(machine->ram.host + (address - machine->ram.base), data, length);
    machine_ram_write_done(machine, address, length);
    return 0;
}

/* Runs of zero pages at least this long are dropped with MADV_DONTNEED
 * (one system call) rather than compared and cleared page by page. */
#define MACHINE_CLEAR_BY_KERNEL_PAGES 16

int machine_ram_clear_pages(struct machine *machine, uint64_t first, uint64_t count)
{
    struct guest_ram *ram = &machine->ram;
    if (first > ram->page_count || count > ram->page_count - first)
        return -1;
    if (count == 0)
        return 0;
    uint64_t address = ram->base + (first << GUEST_PAGE_SHIFT);
    uint64_t length = count << GUEST_PAGE_SHIFT;
    uint8_t *host = ram->host + (first << GUEST_PAGE_SHIFT);
    if (count >= MACHINE_CLEAR_BY_KERNEL_PAGES) {
        guest_ram_before_write(ram, address, length);
        /* Private anonymous memory reads as zero after MADV_DONTNEED. */
        if (madvise(host, length, MADV_DONTNEED) < 0)
            memset(host, 0, length);
        machine_ram_write_done(machine, address, length);
        return 0;
    }
    for (uint64_t i = 0; i < count; i++) {
        uint8_t *page = host + (i << GUEST_PAGE_SHIFT);
        if (guest_ram_page_is_zero(page))
            continue;
        guest_ram_before_write(ram, address + (i << GUEST_PAGE_SHIFT), GUEST_PAGE_SIZE);
        memset(page, 0, GUEST_PAGE_SIZE);
        machine_ram_write_done(machine, address + (i << GUEST_PAGE_SHIFT), GUEST_PAGE_SIZE);
    }
    return 0;
}

void machine_preimages_enable(struct machine *machine, bool enable)
{
    machine_pause(machine);
    guest_ram_preimages_enable(&machine->ram, enable);
    flush_all_write_tlbs(machine);
    machine_resume(machine);
}

/* After a rollback: the pages of the pre-image set may hold code the harts
 * had decoded from the writes being undone (or, for pages a checkpoint is
 * about to overwrite, from what it replaces). */
static void drop_decoded_code_of_preimages(struct machine *machine)
{
    const struct guest_ram_preimages *set = &machine->ram.preimages;
    for (size_t i = 0; i < set->count; i++) {
        uint64_t page = set->page_indices[i];
        if (machine->ram.has_decoded_code[page])
            machine_drop_decoded_page(machine, page);
    }
}

int64_t machine_preimages_rollback(struct machine *machine)
{
    machine_pause(machine);
    int64_t restored = guest_ram_preimages_rollback(&machine->ram);
    if (restored > 0)
        drop_decoded_code_of_preimages(machine);
    machine_resume(machine);
    return restored;
}

int64_t machine_preimages_rollback_before_load(struct machine *machine, bool (*overwritten)(void *, uint64_t),
                                               void *opaque)
{
    machine_pause(machine);
    int64_t restored = guest_ram_preimages_rollback_before_load(&machine->ram, overwritten, opaque);
    if (restored >= 0)
        drop_decoded_code_of_preimages(machine);
    machine_resume(machine);
    return restored;
}

void machine_preimages_reset(struct machine *machine)
{
    machine_pause(machine);
    guest_ram_preimages_reset(&machine->ram);
    flush_all_write_tlbs(machine);
    machine_resume(machine);
}

void machine_note_ram_store(struct machine *machine, struct hart *hart, uint64_t address, unsigned size, uint64_t value)
{
    (void)size;
    (void)value;
    uint64_t tohost = machine->tohost_address;
    if (!tohost || address < tohost || address >= tohost + 8)
        return;
    uint64_t word;
    memcpy(&word, machine->ram.host + (tohost - machine->ram.base), 8);
    /* HTIF: an odd value ends the run with status value >> 1. Even values
     * are syscall requests of the riscv-tests proxy, which we do not serve. */
    if (word & 1) {
        machine_guest_exit(machine, MACHINE_EXIT_CODE, (uint32_t)(word >> 1));
        hart->leave_run_loop = true;
    }
}

void machine_guest_exit(struct machine *machine, enum machine_exit_reason reason, uint32_t code)
{
    if (machine->exit_reason != MACHINE_RUNNING)
        return;
    machine->exit_reason = reason;
    machine->exit_code = code;
    for (unsigned i = 0; i < machine->config.hart_count; i++)
        machine->harts[i].leave_run_loop = true;
}

static uint64_t fnv1a_mix(uint64_t hash, uint64_t value)
{
    for (unsigned i = 0; i < 8; i++) {
        hash ^= (value >> (8 * i)) & 0xff;
        hash *= 0x100000001b3ull;
    }
    return hash;
}

uint64_t machine_configuration_hash(const struct machine *machine)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    hash = fnv1a_mix(hash, machine->ram.base);
    hash = fnv1a_mix(hash, machine->ram.size);
    hash = fnv1a_mix(hash, machine->config.hart_count);
    hash = fnv1a_mix(hash, machine->config.disk_count);
    for (unsigned i = 0; i < machine->config.disk_count; i++) {
        hash = fnv1a_mix(hash, machine->disks[i]->capacity_sectors);
        hash = fnv1a_mix(hash, machine->disks[i]->backend->read_only);
    }
    hash = fnv1a_mix(hash, machine->config.nic_count);
    for (unsigned i = 0; i < machine->config.nic_count; i++) {
        uint64_t mac = 0;
        for (unsigned b = 0; b < 6; b++)
            mac = mac << 8 | machine->config.nics[i].mac[b];
        hash = fnv1a_mix(hash, mac);
    }
    /* The entropy device counts only when absent: the usual machine (with
     * one) keeps the hash machines had before the device existed, so
     * their save files still pass the stream header's check and load
     * (docs/machine-state.md: a version 1 state gets the new devices in
     * their initial state). The RTC is in every machine. */
    if (!machine->rng)
        hash = fnv1a_mix(hash, 0x6e6f2d726e67ull); /* "no-rng" */
    return hash;
}

void machine_describe(const struct machine *machine, struct machine_description *description)
{
    memset(description, 0, sizeof *description);
    description->ram_size = machine->ram.size;
    description->hart_count = machine->config.hart_count;
    description->disk_count = machine->config.disk_count;
    for (unsigned i = 0; i < machine->config.disk_count; i++) {
        description->disk_sizes[i] = machine->disks[i]->backend->size;
        description->disk_read_only[i] = machine->disks[i]->backend->read_only;
    }
    description->nic_count = machine->config.nic_count;
    for (unsigned i = 0; i < machine->config.nic_count; i++)
        memcpy(description->nic_macs[i], machine->config.nics[i].mac, 6);
    description->has_rng = machine->rng != NULL;
}

/* "256 MiB" when whole MiB, else bytes. */
static void describe_bytes(uint64_t bytes, char *text, size_t size)
{
    if (bytes % (1024 * 1024) == 0)
        snprintf(text, size, "%llu MiB", (unsigned long long)(bytes >> 20));
    else
        snprintf(text, size, "%llu bytes", (unsigned long long)bytes);
}

static void describe_mac(const uint8_t mac[6], char *text, size_t size)
{
    snprintf(text, size, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

/* Appends "; " (after the first) and one difference; cut short at the end. */
__attribute__((format(printf, 4, 5))) static void add_difference(char *text, size_t size, size_t *used,
                                                                 const char *format, ...)
{
    if (*used + 1 >= size)
        return;
    if (*used) {
        int wrote = snprintf(text + *used, size - *used, "; ");
        *used += wrote > 0 ? (size_t)wrote : 0;
        if (*used >= size)
            *used = size - 1;
    }
    va_list arguments;
    va_start(arguments, format);
    int wrote = vsnprintf(text + *used, size - *used, format, arguments);
    va_end(arguments);
    *used += wrote > 0 ? (size_t)wrote : 0;
    if (*used >= size)
        *used = size - 1;
}

bool machine_description_difference(const struct machine_description *here, const char *here_name,
                                    const struct machine_description *there, const char *there_name, char *text,
                                    size_t size)
{
    size_t used = 0;
    if (size)
        text[0] = '\0';
    char ours[48], theirs[48];
    if (here->ram_size != there->ram_size) {
        describe_bytes(here->ram_size, ours, sizeof ours);
        describe_bytes(there->ram_size, theirs, sizeof theirs);
        add_difference(text, size, &used, "the %s's RAM is %s, the %s's %s", here_name, ours, there_name, theirs);
    }
    if (here->hart_count != there->hart_count)
        add_difference(text, size, &used, "the %s has %u harts, the %s %u", here_name, here->hart_count, there_name,
                       there->hart_count);
    if (here->disk_count != there->disk_count)
        add_difference(text, size, &used, "the %s has %u disks, the %s %u", here_name, here->disk_count, there_name,
                       there->disk_count);
    for (unsigned i = 0; i < here->disk_count && i < there->disk_count && i < MACHINE_MAX_DISKS; i++) {
        if (here->disk_sizes[i] != there->disk_sizes[i])
            add_difference(text, size, &used, "disk %u: the %s's image is %llu bytes, the %s's %llu", i, here_name,
                           (unsigned long long)here->disk_sizes[i], there_name,
                           (unsigned long long)there->disk_sizes[i]);
        if (here->disk_read_only[i] != there->disk_read_only[i])
            add_difference(text, size, &used, "disk %u is %s on the %s, %s on the %s", i,
                           here->disk_read_only[i] ? "read-only" : "writable", here_name,
                           there->disk_read_only[i] ? "read-only" : "writable", there_name);
    }
    if (here->nic_count != there->nic_count)
        add_difference(text, size, &used, "the %s has %u NICs, the %s %u", here_name, here->nic_count, there_name,
                       there->nic_count);
    for (unsigned i = 0; i < here->nic_count && i < there->nic_count && i < MACHINE_MAX_NICS; i++) {
        if (memcmp(here->nic_macs[i], there->nic_macs[i], 6) == 0)
            continue;
        describe_mac(here->nic_macs[i], ours, sizeof ours);
        describe_mac(there->nic_macs[i], theirs, sizeof theirs);
        add_difference(text, size, &used, "nic %u: MAC %s on the %s, %s on the %s", i, ours, here_name, theirs,
                       there_name);
    }
    if (here->has_rng != there->has_rng)
        add_difference(text, size, &used, "the %s has %s entropy device (virtio-rng), the %s %s", here_name,
                       here->has_rng ? "an" : "no", there_name, there->has_rng ? "has one" : "none");
    return used > 0;
}

uint64_t machine_ram_hash(const struct machine *machine)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    const uint64_t *words = (const uint64_t *)machine->ram.host;
    for (uint64_t i = 0; i < machine->ram.size / 8; i++) {
        hash ^= words[i];
        hash *= 0x100000001b3ull;
    }
    return hash;
}

uint64_t machine_hart_hash(const struct machine *machine)
{
    struct state_writer writer;
    state_writer_init(&writer);
    /* Hash the saved form: exactly the guest-visible state. */
    hart_save(&machine->harts[0], &writer);
    uint64_t hash = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < writer.length; i++) {
        hash ^= writer.data[i];
        hash *= 0x100000001b3ull;
    }
    state_writer_free(&writer);
    return hash;
}

/* ---- what the layers above may know ---- */

const struct machine_config *machine_get_config(const struct machine *machine)
{
    return &machine->config;
}

unsigned machine_nic_count(const struct machine *machine)
{
    return machine->config.nic_count;
}

struct virtio_net *machine_nic(struct machine *machine, unsigned index)
{
    return index < machine->config.nic_count ? machine->nics[index] : NULL;
}

int machine_nic_index(const struct machine *machine, const struct virtio_net *nic)
{
    for (unsigned i = 0; i < machine->config.nic_count; i++)
        if (machine->nics[i] == nic)
            return (int)i;
    return -1;
}

unsigned machine_disk_count(const struct machine *machine)
{
    return machine->config.disk_count;
}

struct virtio_rng *machine_rng(struct machine *machine)
{
    return machine->rng;
}

struct virtio_blk *machine_disk(struct machine *machine, unsigned index)
{
    return index < machine->config.disk_count ? machine->disks[index] : NULL;
}

uint64_t machine_ram_size(const struct machine *machine)
{
    return machine->ram.size;
}

uint64_t machine_ram_page_count(const struct machine *machine)
{
    return machine->ram.page_count;
}

size_t machine_dirty_bitmap_words(const struct machine *machine)
{
    return guest_ram_bitmap_words(&machine->ram);
}

const uint8_t *machine_ram_page(const struct machine *machine, uint64_t page_index)
{
    if (page_index >= machine->ram.page_count)
        return NULL;
    return machine->ram.host + (page_index << GUEST_PAGE_SHIFT);
}

bool machine_dirty_log_enabled(const struct machine *machine)
{
    return machine->ram.dirty_log_enabled;
}

size_t machine_preimage_count(const struct machine *machine)
{
    return machine->ram.preimages.count;
}

uint32_t machine_exit_code(const struct machine *machine)
{
    return machine->exit_code;
}

uint64_t machine_instructions_retired(const struct machine *machine)
{
    return machine->harts[0].state.instret;
}

uint64_t machine_pc(const struct machine *machine)
{
    return machine->harts[0].state.pc;
}

/* ---- cross-thread control ---- */

static void refresh_attention(struct machine *machine)
{
    atomic_store(&machine->attention, machine->pause_depth > 0 || atomic_load(&machine->stop_requested));
}

void machine_pause(struct machine *machine)
{
    pthread_mutex_lock(&machine->control_lock);
    machine->pause_depth++;
    refresh_attention(machine);
    wake_run_loop(machine);
    while (machine->running && !machine->paused)
        pthread_cond_wait(&machine->control_changed, &machine->control_lock);
    pthread_mutex_unlock(&machine->control_lock);
}

unsigned machine_pause_depth(struct machine *machine)
{
    pthread_mutex_lock(&machine->control_lock);
    unsigned depth = machine->pause_depth;
    pthread_mutex_unlock(&machine->control_lock);
    return depth;
}

void machine_resume(struct machine *machine)
{
    pthread_mutex_lock(&machine->control_lock);
    if (machine->pause_depth > 0)
        machine->pause_depth--;
    refresh_attention(machine);
    pthread_cond_broadcast(&machine->control_changed);
    pthread_mutex_unlock(&machine->control_lock);
}

void machine_request_stop(struct machine *machine)
{
    pthread_mutex_lock(&machine->control_lock);
    atomic_store(&machine->stop_requested, true);
    refresh_attention(machine);
    wake_run_loop(machine);
    pthread_cond_broadcast(&machine->control_changed);
    pthread_mutex_unlock(&machine->control_lock);
}

/* Called by the run loop when attention is set: parks while paused.
 * Returns true when the machine should stop. */
static bool serve_requests(struct machine *machine)
{
    pthread_mutex_lock(&machine->control_lock);
    while (machine->pause_depth > 0 && !atomic_load(&machine->stop_requested)) {
        machine->paused = true;
        pthread_cond_broadcast(&machine->control_changed);
        pthread_cond_wait(&machine->control_changed, &machine->control_lock);
    }
    machine->paused = false;
    bool stop = atomic_load(&machine->stop_requested);
    pthread_mutex_unlock(&machine->control_lock);
    return stop;
}

static void flush_all_write_tlbs(struct machine *machine)
{
    for (unsigned h = 0; h < machine->config.hart_count; h++)
        for (unsigned p = 0; p < 4; p++)
            for (unsigned i = 0; i < HART_TLB_ENTRIES; i++)
                machine->harts[h].tlb[p].write[i].page_address = UINT64_MAX;
}

void machine_dirty_log_enable(struct machine *machine, bool enable)
{
    machine_pause(machine);
    memset(machine->ram.dirty, 0, machine->ram.page_count);
    machine->ram.dirty_log_enabled = enable;
    if (!enable)
        machine->ram.preimages_enabled = false; /* they ride on the dirty log */
    flush_all_write_tlbs(machine);
    machine_resume(machine);
}

uint64_t machine_dirty_log_read_and_clear(struct machine *machine, uint64_t *bitmap)
{
    machine_pause(machine);
    uint64_t count = guest_ram_dirty_log_read_and_clear(&machine->ram, bitmap);
    /* Cleared pages must take the slow path again on their next store. */
    flush_all_write_tlbs(machine);
    machine_resume(machine);
    return count;
}

/* ---- the run loop ---- */

/* The mtime of the next timer event (a CLINT timer or the RTC's alarm),
 * UINT64_MAX if none is armed. */
static uint64_t next_timer_deadline(struct machine *machine)
{
    uint64_t deadline = clint_next_deadline(&machine->clint);
    if (machine->rtc.state.alarm_armed) {
        uint64_t alarm = rtc_goldfish_alarm_deadline(&machine->rtc);
        if (alarm < deadline)
            deadline = alarm;
    }
    return deadline;
}

/* How many instructions may run before the next timer event, in
 * deterministic mode; UINT64_MAX if no timer is armed. */
static uint64_t instructions_until_timer(struct machine *machine)
{
    uint64_t deadline = next_timer_deadline(machine);
    uint64_t per_tick = machine->config.instructions_per_tick;
    if (deadline == UINT64_MAX || deadline > UINT64_MAX / per_tick)
        return UINT64_MAX;
    uint64_t target = deadline * per_tick;
    return target > machine->guest_clock ? target - machine->guest_clock : 0;
}

/* The harts wait for an interrupt: sleep until the next timer deadline or
 * until a host descriptor (network, console, a pause request) is ready. */
static void idle_until_event(struct machine *machine)
{
    if (machine->config.deterministic_time) {
        poll_host_descriptors(machine, 0);
        uint64_t wait = instructions_until_timer(machine);
        if (wait != UINT64_MAX) {
            machine->guest_clock += wait;
            return;
        }
        /* Nothing but a host event can wake the hart. */
        poll_host_descriptors(machine, 1000000);
        return;
    }
    uint64_t deadline = next_timer_deadline(machine);
    uint64_t now = machine_mtime(machine);
    if (deadline <= now)
        return;
    int64_t wait_ns = 100000000; /* bounded anyway */
    if ((deadline - now) < (uint64_t)wait_ns / NANOSECONDS_PER_TICK)
        wait_ns = (int64_t)((deadline - now) * NANOSECONDS_PER_TICK);
    poll_host_descriptors(machine, wait_ns);
}

enum machine_exit_reason machine_run(struct machine *machine, uint64_t instruction_limit)
{
    pthread_mutex_lock(&machine->control_lock);
    machine->running = true;
    pthread_mutex_unlock(&machine->control_lock);
    uint64_t executed = 0;
    struct hart *hart = &machine->harts[0];

    while (machine->exit_reason == MACHINE_RUNNING) {
        if (atomic_load(&machine->attention) && serve_requests(machine)) {
            atomic_store(&machine->stop_requested, false);
            machine->exit_reason = MACHINE_EXIT_STOPPED;
            break;
        }
        if (instruction_limit && executed >= instruction_limit) {
            machine->exit_reason = MACHINE_EXIT_INSTRUCTION_LIMIT;
            break;
        }
        machine_update_timer_interrupts(machine);
        uint64_t slice = MACHINE_SLICE_INSTRUCTIONS;
        if (instruction_limit && instruction_limit - executed < slice)
            slice = instruction_limit - executed;
        if (machine->config.deterministic_time) {
            uint64_t until_timer = instructions_until_timer(machine);
            if (until_timer > 0 && until_timer < slice)
                slice = until_timer;
        }
        if (machine->config.deterministic_time) {
            poll_host_descriptors(machine, 0);
        } else {
            uint64_t now_ns = clock_monotonic_ns();
            if (now_ns - machine->last_poll_ns >= MACHINE_POLL_INTERVAL_NS) {
                machine->last_poll_ns = now_ns;
                poll_host_descriptors(machine, 0);
            }
        }
        if (machine->console_input_length)
            console_feed_uart(machine);
        uint64_t used = hart_run(hart, slice);
        if (used == 0 && hart->state.waiting_for_interrupt) {
            idle_until_event(machine);
            continue;
        }
        executed += used;
        machine->guest_clock += used;
    }

    pthread_mutex_lock(&machine->control_lock);
    machine->running = false;
    machine->paused = false;
    pthread_cond_broadcast(&machine->control_changed);
    pthread_mutex_unlock(&machine->control_lock);
    return machine->exit_reason;
}
