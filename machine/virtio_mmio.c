/* virtio-mmio transport, register layout version 2 (virtio 1.1 section
 * 4.2.2), and split virtqueues (section 2.6).
 *
 * The transport keeps every guest-visible register and each queue's ring
 * addresses and indices in struct virtio_mmio_state. Devices never touch
 * guest memory for the rings: they pop chains (validated here), copy
 * through them with virtio_chain_read/write, push them back and notify.
 *
 * Guest memory is read straight from the RAM mapping after a bounds check
 * and written with machine_ram_write, which marks the dirty log and drops
 * decoded instructions. Everything runs on the machine's thread, so there
 * are no barriers; the one field the guest may change under us between
 * two reads, the available index, is read once per pop.
 *
 * A driver that hands us nonsense (a descriptor outside RAM, a loop, a
 * chain that breaks the rules) gets DEVICE_NEEDS_RESET and a configuration
 * change interrupt, and the queues stay unusable until it resets the
 * device. The host never crashes and never touches memory outside RAM.
 *
 * Not supported: packed virtqueues, VIRTIO_F_EVENT_IDX (devices must not
 * offer them). Indirect descriptors work when the device offers
 * VIRTIO_F_INDIRECT_DESC (bit 28) and the driver accepts it; otherwise an
 * INDIRECT descriptor is malformed. */
#include "virtio_mmio.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "machine_devices.h"
#include "plic.h"

#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */
#define VIRTIO_MMIO_VERSION_MODERN 2u
#define VIRTIO_MMIO_VENDOR 0x554d4551u /* "QEMU", as QEMU's devices say */

#define VIRTIO_F_INDIRECT_DESC (1ull << 28)

#define VIRTIO_INTERRUPT_USED_BUFFER 1u
#define VIRTIO_INTERRUPT_CONFIG_CHANGE 2u
#define VIRTIO_INTERRUPT_ALL 3u

/* Split virtqueue layout. */
#define VIRTQ_DESCRIPTOR_SIZE 16u
#define VIRTQ_DESC_F_NEXT 1u
#define VIRTQ_DESC_F_WRITE 2u
#define VIRTQ_DESC_F_INDIRECT 4u
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
#define VIRTQ_RING_HEADER_SIZE 4u /* u16 flags, u16 idx */
#define VIRTQ_AVAIL_ENTRY_SIZE 2u
#define VIRTQ_USED_ENTRY_SIZE 8u /* u32 id, u32 len */
#define VIRTQ_MAX_SIZE 32768u    /* the largest power of two in a u16 */

#define VIRTIO_SECTION_ID 0x5649524fu /* "VIRO" */
#define VIRTIO_SECTION_VERSION 1u

/* ---- small helpers ---- */

static unsigned queue_count(const struct virtio_mmio *transport)
{
    if (!transport->ops)
        return 0;
    return transport->ops->queue_count < VIRTIO_MAX_QUEUES ? transport->ops->queue_count : VIRTIO_MAX_QUEUES;
}

/* The largest queue size the driver may choose: the device's maximum,
 * rounded down to a power of two (split queues must be powers of two). */
static uint32_t queue_size_max(const struct virtio_mmio *transport)
{
    uint32_t limit = transport->ops ? transport->ops->queue_size_max : 0;
    if (limit > VIRTQ_MAX_SIZE)
        limit = VIRTQ_MAX_SIZE;
    uint32_t size = 0;
    for (uint32_t power = 1; power <= limit; power <<= 1)
        size = power;
    return size;
}

static bool is_power_of_two(uint32_t value)
{
    return value != 0 && (value & (value - 1)) == 0;
}

static uint64_t offered_features(const struct virtio_mmio *transport)
{
    return transport->ops ? transport->ops->features | VIRTIO_F_VERSION_1 : 0;
}

/* What FEATURES_OK requires: nothing that was not offered, and VERSION_1
 * (this transport speaks only the virtio 1 ring layout and endianness). */
static bool features_acceptable(const struct virtio_mmio *transport, uint64_t features)
{
    return (features & ~offered_features(transport)) == 0 && (features & VIRTIO_F_VERSION_1);
}

/* The queue that QueueSel points at, or NULL if the device has no such
 * queue. */
static struct virtio_queue_state *selected_queue(struct virtio_mmio *transport)
{
    if (transport->state.queue_select >= queue_count(transport))
        return NULL;
    return &transport->state.queues[transport->state.queue_select];
}

/* A queue the device may work on: it exists and the driver made it ready. */
static struct virtio_queue_state *usable_queue(struct virtio_mmio *transport, unsigned queue)
{
    if (queue >= queue_count(transport) || !transport->state.queues[queue].ready)
        return NULL;
    return &transport->state.queues[queue];
}

static void update_interrupt_line(struct virtio_mmio *transport)
{
    plic_set_line(&transport->machine->plic, transport->irq, transport->state.interrupt_status != 0);
}

static void raise_interrupt(struct virtio_mmio *transport, uint32_t reason)
{
    transport->state.interrupt_status |= reason;
    update_interrupt_line(transport);
}

/* Puts the transport in its reset state: no features, no queues, no
 * interrupt. config_generation keeps counting, so a driver never sees an
 * old generation number come back. */
static void reset_state(struct virtio_mmio *transport)
{
    uint32_t generation = transport->state.config_generation;
    memset(&transport->state, 0, sizeof transport->state);
    transport->state.config_generation = generation;
    for (unsigned queue = 0; queue < queue_count(transport); queue++)
        transport->state.queues[queue].size = queue_size_max(transport);
}

void virtio_mmio_init(struct virtio_mmio *transport, struct machine *machine, unsigned slot,
                      const struct virtio_device_ops *ops, void *device)
{
    memset(transport, 0, sizeof *transport);
    transport->ops = ops;
    transport->device = device;
    transport->machine = machine;
    transport->irq = VIRTIO_MMIO_FIRST_IRQ + slot;
    /* The line starts low; nothing to drive (the PLIC may not exist yet). */
    reset_state(transport);
}

/* ---- guest memory ---- */

/* Host pointer to [address, address + length) of guest RAM, or NULL if any
 * of it lies outside RAM. */
static uint8_t *guest_bytes(struct virtio_mmio *transport, uint64_t address, uint64_t length)
{
    struct guest_ram *ram = &transport->machine->ram;
    if (!guest_ram_contains(ram, address, length))
        return NULL;
    return ram->host + (address - ram->base);
}

/* Guest memory is little-endian whatever the host is. */
static uint16_t load_u16(const uint8_t *bytes)
{
    return (uint16_t)(bytes[0] | bytes[1] << 8);
}

static uint32_t load_u32(const uint8_t *bytes)
{
    return (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 | (uint32_t)bytes[3] << 24;
}

static uint64_t load_u64(const uint8_t *bytes)
{
    return load_u32(bytes) | (uint64_t)load_u32(bytes + 4) << 32;
}

static void store_u16(uint8_t *bytes, uint16_t value)
{
    bytes[0] = (uint8_t)value;
    bytes[1] = (uint8_t)(value >> 8);
}

static void store_u32(uint8_t *bytes, uint32_t value)
{
    for (unsigned i = 0; i < 4; i++)
        bytes[i] = (uint8_t)(value >> (8 * i));
}

/* ---- malformed queues ---- */

/* The driver broke the virtqueue rules: the device needs a reset. Returns
 * -1 so that callers can `return queue_malformed(...)`. */
static int queue_malformed(struct virtio_mmio *transport, unsigned queue, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int queue_malformed(struct virtio_mmio *transport, unsigned queue, const char *format, ...)
{
    /* One line per transport: a broken driver may hit this in a loop. */
    if (transport->malformed_queue_errors == 0) {
        char reason[160];
        va_list args;
        va_start(args, format);
        vsnprintf(reason, sizeof reason, format, args);
        va_end(args);
        fprintf(stderr,
                "virtio-mmio (device %u, irq %u): queue %u is malformed: %s; "
                "the device needs a reset (further errors are only counted)\n",
                transport->ops ? transport->ops->device_id : 0, transport->irq, queue, reason);
    }
    transport->malformed_queue_errors++;
    transport->state.status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    raise_interrupt(transport, VIRTIO_INTERRUPT_CONFIG_CHANGE);
    return -1;
}

/* Whether the three rings of a queue lie in RAM. The rings are only read
 * through the checked accessors below, but checking them as a whole first
 * gives the driver one clear error instead of a half-done operation.
 * (used_event / avail_event exist only with EVENT_IDX, not checked.) */
static bool rings_in_ram(struct virtio_mmio *transport, const struct virtio_queue_state *q)
{
    uint64_t size = q->size;
    return guest_bytes(transport, q->descriptor_address, VIRTQ_DESCRIPTOR_SIZE * size) &&
           guest_bytes(transport, q->driver_address, VIRTQ_RING_HEADER_SIZE + VIRTQ_AVAIL_ENTRY_SIZE * size) &&
           guest_bytes(transport, q->device_address, VIRTQ_RING_HEADER_SIZE + VIRTQ_USED_ENTRY_SIZE * size);
}

static uint16_t available_flags(struct virtio_mmio *transport, const struct virtio_queue_state *q)
{
    return load_u16(guest_bytes(transport, q->driver_address, 2));
}

static uint16_t available_index(struct virtio_mmio *transport, const struct virtio_queue_state *q)
{
    return load_u16(guest_bytes(transport, q->driver_address + 2, 2));
}

/* ---- popping chains ---- */

struct descriptor {
    uint64_t address;
    uint32_t length;
    uint16_t flags;
    uint16_t next;
};

/* Walks the chain starting at head into chain. The descriptor table is
 * known to be in RAM; an indirect table is checked before it is used.
 * The walk is bounded: each step either adds a buffer (at most
 * VIRTIO_CHAIN_MAX_BUFFERS) or enters the one allowed indirect table. */
static int walk_chain(struct virtio_mmio *transport, unsigned queue, const struct virtio_queue_state *q, uint16_t head,
                      struct virtio_chain *chain)
{
    memset(chain, 0, sizeof *chain);
    chain->head = head;
    uint64_t table = q->descriptor_address;
    uint32_t table_size = q->size;
    uint32_t index = head;
    uint32_t visited = 0; /* descriptors of the current table */
    bool indirect = false;
    bool seen_writable = false;
    for (;;) {
        if (index >= table_size)
            return queue_malformed(transport, queue, "descriptor %u is beyond a table of %u", index, table_size);
        if (++visited > table_size)
            return queue_malformed(transport, queue, "chain from head %u loops or is longer than its table (%u)", head,
                                   table_size);
        const uint8_t *bytes = guest_bytes(transport, table + (uint64_t)index * VIRTQ_DESCRIPTOR_SIZE,
                                           VIRTQ_DESCRIPTOR_SIZE);
        if (!bytes) /* only possible for a table we did not check */
            return queue_malformed(transport, queue, "descriptor %u is outside RAM", index);
        struct descriptor descriptor = {
            .address = load_u64(bytes),
            .length = load_u32(bytes + 8),
            .flags = load_u16(bytes + 12),
            .next = load_u16(bytes + 14),
        };

        if (descriptor.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!(transport->state.driver_features & VIRTIO_F_INDIRECT_DESC))
                return queue_malformed(transport, queue,
                                       "indirect descriptor, but VIRTIO_F_INDIRECT_DESC "
                                       "was not negotiated");
            /* The driver must not nest indirect tables, chain on after one,
             * or put one after direct buffers. */
            if (indirect || (descriptor.flags & VIRTQ_DESC_F_NEXT) || chain->count > 0)
                return queue_malformed(transport, queue, "indirect descriptor %u is nested or chained", index);
            if (descriptor.length == 0 || descriptor.length % VIRTQ_DESCRIPTOR_SIZE != 0)
                return queue_malformed(transport, queue, "indirect table of %u bytes", descriptor.length);
            if (!guest_bytes(transport, descriptor.address, descriptor.length))
                return queue_malformed(transport, queue, "indirect table at 0x%llx (%u bytes) is outside RAM",
                                       (unsigned long long)descriptor.address, descriptor.length);
            table = descriptor.address;
            table_size = descriptor.length / VIRTQ_DESCRIPTOR_SIZE;
            index = 0;
            visited = 0;
            indirect = true;
            continue;
        }

        if (!guest_bytes(transport, descriptor.address, descriptor.length))
            return queue_malformed(transport, queue, "buffer at 0x%llx (%u bytes) is outside RAM",
                                   (unsigned long long)descriptor.address, descriptor.length);
        bool writable = descriptor.flags & VIRTQ_DESC_F_WRITE;
        if (!writable && seen_writable)
            return queue_malformed(transport, queue, "readable buffer after a writable one in chain %u", head);
        if (chain->count == VIRTIO_CHAIN_MAX_BUFFERS)
            return queue_malformed(transport, queue, "chain %u has more than %u buffers", head,
                                   VIRTIO_CHAIN_MAX_BUFFERS);
        chain->buffers[chain->count++] = (struct virtio_buffer){
            .address = descriptor.address,
            .length = descriptor.length,
            .device_writable = writable,
        };
        if (writable) {
            seen_writable = true;
            chain->writable_length += descriptor.length;
        } else {
            chain->readable_length += descriptor.length;
        }
        if (!(descriptor.flags & VIRTQ_DESC_F_NEXT))
            return 0;
        index = descriptor.next;
    }
}

int virtio_queue_pop(struct virtio_mmio *transport, unsigned queue, struct virtio_chain *chain)
{
    struct virtio_queue_state *q = usable_queue(transport, queue);
    if (!q)
        return 0;
    if (transport->state.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
        return -1; /* already reported; nothing is used until the reset */
    if (!rings_in_ram(transport, q))
        return queue_malformed(transport, queue,
                               "rings (descriptors 0x%llx, available 0x%llx, used 0x%llx, "
                               "size %u) are not all in RAM",
                               (unsigned long long)q->descriptor_address, (unsigned long long)q->driver_address,
                               (unsigned long long)q->device_address, q->size);
    /* Read once: the driver may move it while we work. */
    uint16_t driver_index = available_index(transport, q);
    uint16_t outstanding = (uint16_t)(driver_index - q->next_available);
    if (outstanding == 0)
        return 0;
    if (outstanding > q->size)
        return queue_malformed(transport, queue, "available index %u is more than %u ahead of %u", driver_index,
                               q->size, q->next_available);
    uint64_t slot_address = q->driver_address + VIRTQ_RING_HEADER_SIZE +
                            (uint64_t)(q->next_available % q->size) * VIRTQ_AVAIL_ENTRY_SIZE;
    uint16_t head = load_u16(guest_bytes(transport, slot_address, VIRTQ_AVAIL_ENTRY_SIZE));
    if (walk_chain(transport, queue, q, head, chain) < 0)
        return -1;
    q->next_available++;
    return 1;
}

bool virtio_queue_has_available(struct virtio_mmio *transport, unsigned queue)
{
    struct virtio_queue_state *q = usable_queue(transport, queue);
    if (!q || (transport->state.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) || !rings_in_ram(transport, q))
        return false;
    return available_index(transport, q) != q->next_available;
}

/* ---- copying through chains ---- */

size_t virtio_chain_read(struct virtio_mmio *transport, const struct virtio_chain *chain, uint64_t offset, void *data,
                         size_t length)
{
    uint8_t *out = data;
    size_t copied = 0;
    for (unsigned i = 0; i < chain->count && copied < length; i++) {
        const struct virtio_buffer *buffer = &chain->buffers[i];
        if (buffer->device_writable)
            break; /* readable buffers come first */
        if (offset >= buffer->length) {
            offset -= buffer->length;
            continue;
        }
        uint64_t available = buffer->length - offset;
        size_t piece = length - copied < available ? length - copied : (size_t)available;
        /* Checked at pop time; checked again because the chain is the
         * device's to keep and pass back. */
        const uint8_t *source = guest_bytes(transport, buffer->address + offset, piece);
        if (!source)
            break;
        memcpy(out + copied, source, piece);
        copied += piece;
        offset = 0;
    }
    return copied;
}

size_t virtio_chain_write(struct virtio_mmio *transport, const struct virtio_chain *chain, uint64_t offset,
                          const void *data, size_t length)
{
    const uint8_t *in = data;
    size_t copied = 0;
    for (unsigned i = 0; i < chain->count && copied < length; i++) {
        const struct virtio_buffer *buffer = &chain->buffers[i];
        if (!buffer->device_writable)
            continue;
        if (offset >= buffer->length) {
            offset -= buffer->length;
            continue;
        }
        uint64_t available = buffer->length - offset;
        size_t piece = length - copied < available ? length - copied : (size_t)available;
        if (machine_ram_write(transport->machine, buffer->address + offset, in + copied, piece) < 0)
            break;
        copied += piece;
        offset = 0;
    }
    return copied;
}

/* ---- returning chains and interrupts ---- */

void virtio_queue_push(struct virtio_mmio *transport, unsigned queue, const struct virtio_chain *chain,
                       uint32_t written)
{
    struct virtio_queue_state *q = usable_queue(transport, queue);
    if (!q || (transport->state.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET))
        return;
    if (!rings_in_ram(transport, q)) {
        queue_malformed(transport, queue, "rings are not all in RAM");
        return;
    }
    /* The driver trusts len as "bytes written"; never claim more than the
     * chain could hold. */
    if (written > chain->writable_length)
        written = (uint32_t)chain->writable_length;
    uint8_t element[VIRTQ_USED_ENTRY_SIZE];
    store_u32(element, chain->head);
    store_u32(element + 4, written);
    uint64_t element_address = q->device_address + VIRTQ_RING_HEADER_SIZE +
                               (uint64_t)(q->next_used % q->size) * VIRTQ_USED_ENTRY_SIZE;
    machine_ram_write(transport->machine, element_address, element, sizeof element);
    /* The element is in place before the index that publishes it. */
    q->next_used++;
    uint8_t index[2];
    store_u16(index, q->next_used);
    machine_ram_write(transport->machine, q->device_address + 2, index, sizeof index);
}

void virtio_queue_notify(struct virtio_mmio *transport, unsigned queue)
{
    struct virtio_queue_state *q = usable_queue(transport, queue);
    if (!q)
        return;
    if (!rings_in_ram(transport, q)) {
        queue_malformed(transport, queue, "rings are not all in RAM");
        return;
    }
    /* Without EVENT_IDX the driver suppresses interrupts with this flag.
     * It is only a hint, but honouring it saves the guest an interrupt. */
    if (available_flags(transport, q) & VIRTQ_AVAIL_F_NO_INTERRUPT)
        return;
    raise_interrupt(transport, VIRTIO_INTERRUPT_USED_BUFFER);
}

void virtio_config_changed(struct virtio_mmio *transport)
{
    transport->state.config_generation++;
    raise_interrupt(transport, VIRTIO_INTERRUPT_CONFIG_CHANGE);
}

/* ---- registers ---- */

bool virtio_mmio_read(struct virtio_mmio *transport, uint64_t offset, unsigned size, uint64_t *value)
{
    if (offset >= VIRTIO_MMIO_CONFIG) {
        if (!transport->ops || !transport->ops->config_read)
            return false;
        return transport->ops->config_read(transport->device, offset - VIRTIO_MMIO_CONFIG, size, value);
    }
    /* The registers are 32 bits wide and accessed as such. */
    if (size != 4 || offset % 4 != 0)
        return false;
    const struct virtio_mmio_state *state = &transport->state;
    struct virtio_queue_state *q = selected_queue(transport);
    uint64_t features = offered_features(transport);
    switch (offset) {
    case VIRTIO_MMIO_MAGIC_VALUE:
        *value = VIRTIO_MMIO_MAGIC;
        return true;
    case VIRTIO_MMIO_VERSION:
        *value = VIRTIO_MMIO_VERSION_MODERN;
        return true;
    case VIRTIO_MMIO_DEVICE_ID:
        /* 0 for an empty slot: drivers skip it. */
        *value = transport->ops ? transport->ops->device_id : 0;
        return true;
    case VIRTIO_MMIO_VENDOR_ID:
        *value = VIRTIO_MMIO_VENDOR;
        return true;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        if (state->device_features_select == 0)
            *value = (uint32_t)features;
        else if (state->device_features_select == 1)
            *value = (uint32_t)(features >> 32);
        else
            *value = 0;
        return true;
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        /* 0 says "no such queue". */
        *value = q ? queue_size_max(transport) : 0;
        return true;
    case VIRTIO_MMIO_QUEUE_NUM:
        *value = q ? q->size : 0;
        return true;
    case VIRTIO_MMIO_QUEUE_READY:
        *value = q ? q->ready : 0;
        return true;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        *value = state->interrupt_status;
        return true;
    case VIRTIO_MMIO_STATUS:
        *value = state->status;
        return true;
    case VIRTIO_MMIO_CONFIG_GENERATION:
        *value = state->config_generation;
        return true;
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
    case VIRTIO_MMIO_DRIVER_FEATURES:
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
    case VIRTIO_MMIO_QUEUE_SEL:
    case VIRTIO_MMIO_QUEUE_NOTIFY:
    case VIRTIO_MMIO_INTERRUPT_ACK:
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
    case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
    case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
    case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
        /* Write-only registers read as 0. */
        *value = 0;
        return true;
    }
    return false;
}

static uint64_t with_low_half(uint64_t old, uint64_t value)
{
    return (old & 0xffffffff00000000ull) | (uint32_t)value;
}

static uint64_t with_high_half(uint64_t old, uint64_t value)
{
    return (old & 0x00000000ffffffffull) | (uint64_t)(uint32_t)value << 32;
}

static void write_status(struct virtio_mmio *transport, uint32_t value)
{
    struct virtio_mmio_state *state = &transport->state;
    if (value == 0) {
        reset_state(transport);
        update_interrupt_line(transport);
        if (transport->ops->reset)
            transport->ops->reset(transport->device);
        return;
    }
    uint32_t old = state->status;
    /* DEVICE_NEEDS_RESET is the device's to set and only a reset clears
     * it; the status register is 8 bits. */
    uint32_t status = (value & 0xffu & ~(uint32_t)VIRTIO_STATUS_DEVICE_NEEDS_RESET) |
                      (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    if ((status & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK) &&
        !features_acceptable(transport, state->driver_features))
        status &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK; /* the driver reads it back and gives up */
    state->status = status;
    if ((status & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK) && transport->ops->driver_ready)
        transport->ops->driver_ready(transport->device);
}

bool virtio_mmio_write(struct virtio_mmio *transport, uint64_t offset, unsigned size, uint64_t value)
{
    if (offset >= VIRTIO_MMIO_CONFIG) {
        if (!transport->ops || !transport->ops->config_write)
            return false;
        return transport->ops->config_write(transport->device, offset - VIRTIO_MMIO_CONFIG, size, value);
    }
    if (size != 4 || offset % 4 != 0)
        return false;
    switch (offset) {
    case VIRTIO_MMIO_MAGIC_VALUE:
    case VIRTIO_MMIO_VERSION:
    case VIRTIO_MMIO_DEVICE_ID:
    case VIRTIO_MMIO_VENDOR_ID:
    case VIRTIO_MMIO_DEVICE_FEATURES:
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
    case VIRTIO_MMIO_INTERRUPT_STATUS:
    case VIRTIO_MMIO_CONFIG_GENERATION:
        return true; /* read-only */
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
    case VIRTIO_MMIO_DRIVER_FEATURES:
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
    case VIRTIO_MMIO_QUEUE_SEL:
    case VIRTIO_MMIO_QUEUE_NUM:
    case VIRTIO_MMIO_QUEUE_READY:
    case VIRTIO_MMIO_QUEUE_NOTIFY:
    case VIRTIO_MMIO_INTERRUPT_ACK:
    case VIRTIO_MMIO_STATUS:
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
    case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
    case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
    case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
        break;
    default:
        return false;
    }
    if (!transport->ops)
        return true; /* an empty slot ignores everything */

    struct virtio_mmio_state *state = &transport->state;
    struct virtio_queue_state *q = selected_queue(transport);
    /* The driver sets a queue up before it makes it ready, and must not
     * change it afterwards; we ignore such changes rather than act on a
     * half-updated queue. */
    struct virtio_queue_state *configurable = q && !q->ready ? q : NULL;
    uint32_t word = (uint32_t)value;
    switch (offset) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        state->device_features_select = word;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        /* Features are fixed once FEATURES_OK was accepted. */
        if (state->status & VIRTIO_STATUS_FEATURES_OK)
            break;
        if (state->driver_features_select == 0)
            state->driver_features = with_low_half(state->driver_features, word);
        else if (state->driver_features_select == 1)
            state->driver_features = with_high_half(state->driver_features, word);
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        state->driver_features_select = word;
        break;
    case VIRTIO_MMIO_QUEUE_SEL:
        /* QueueSel is write-only, so any number past the last queue can
         * be kept as VIRTIO_MAX_QUEUES, which selects no queue. */
        state->queue_select = word < VIRTIO_MAX_QUEUES ? word : VIRTIO_MAX_QUEUES;
        break;
    case VIRTIO_MMIO_QUEUE_NUM:
        /* A size the queue cannot have is ignored; the driver reads back
         * nothing, but a valid size is all it may write. */
        if (configurable && is_power_of_two(word) && word <= queue_size_max(transport))
            configurable->size = word;
        break;
    case VIRTIO_MMIO_QUEUE_READY:
        if (q)
            q->ready = word & 1u;
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        /* Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index. */
        if (usable_queue(transport, word) && !(state->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) &&
            transport->ops->queue_notify)
            transport->ops->queue_notify(transport->device, word);
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK:
        state->interrupt_status &= ~word;
        update_interrupt_line(transport);
        break;
    case VIRTIO_MMIO_STATUS:
        write_status(transport, word);
        break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
        if (configurable)
            configurable->descriptor_address = with_low_half(configurable->descriptor_address, word);
        break;
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        if (configurable)
            configurable->descriptor_address = with_high_half(configurable->descriptor_address, word);
        break;
    case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
        if (configurable)
            configurable->driver_address = with_low_half(configurable->driver_address, word);
        break;
    case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
        if (configurable)
            configurable->driver_address = with_high_half(configurable->driver_address, word);
        break;
    case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
        if (configurable)
            configurable->device_address = with_low_half(configurable->device_address, word);
        break;
    case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
        if (configurable)
            configurable->device_address = with_high_half(configurable->device_address, word);
        break;
    }
    return true;
}

/* ---- save / load ---- */

/* Layout (version 1): u32 device_id (checked, so that a state cannot be
 * loaded into another kind of device), u32 status, u32
 * device_features_select, u32 driver_features_select, u64 driver_features,
 * u32 queue_select, u32 interrupt_status, u32 config_generation, then for
 * each of the VIRTIO_MAX_QUEUES queues: u32 size, u8 ready, u64
 * descriptor_address, u64 driver_address, u64 device_address, u16
 * next_available, u16 next_used. Host-side fields (ops, machine, irq, the
 * error counter) are not saved. */
void virtio_mmio_save(const struct virtio_mmio *transport, struct state_writer *writer)
{
    const struct virtio_mmio_state *state = &transport->state;
    state_section_begin(writer, VIRTIO_SECTION_ID, VIRTIO_SECTION_VERSION);
    state_put_u32(writer, transport->ops ? transport->ops->device_id : 0);
    state_put_u32(writer, state->status);
    state_put_u32(writer, state->device_features_select);
    state_put_u32(writer, state->driver_features_select);
    state_put_u64(writer, state->driver_features);
    state_put_u32(writer, state->queue_select);
    state_put_u32(writer, state->interrupt_status);
    state_put_u32(writer, state->config_generation);
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        const struct virtio_queue_state *q = &state->queues[i];
        state_put_u32(writer, q->size);
        state_put_u8(writer, q->ready);
        state_put_u64(writer, q->descriptor_address);
        state_put_u64(writer, q->driver_address);
        state_put_u64(writer, q->device_address);
        state_put_u16(writer, q->next_available);
        state_put_u16(writer, q->next_used);
    }
    state_section_end(writer);
}

/* Rejects what the registers can never hold. Ring addresses are not
 * checked: a driver may legally write any address, and a bad one is
 * caught when the queue is used. */
static void validate(const struct virtio_mmio *transport, const struct virtio_mmio_state *state,
                     struct state_reader *reader)
{
    if (state->status > 0xffu)
        state_reader_fail(reader, "virtio: status 0x%x is wider than 8 bits", state->status);
    if ((state->status & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(transport, state->driver_features))
        state_reader_fail(reader, "virtio: FEATURES_OK with features 0x%llx (offered 0x%llx)",
                          (unsigned long long)state->driver_features, (unsigned long long)offered_features(transport));
    if (state->queue_select > VIRTIO_MAX_QUEUES)
        state_reader_fail(reader, "virtio: queue select %u (at most %u)", state->queue_select, VIRTIO_MAX_QUEUES);
    if (state->interrupt_status & ~VIRTIO_INTERRUPT_ALL)
        state_reader_fail(reader, "virtio: interrupt status 0x%x", state->interrupt_status);
    uint32_t size_max = queue_size_max(transport);
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        const struct virtio_queue_state *q = &state->queues[i];
        if (i >= queue_count(transport)) {
            static const struct virtio_queue_state absent;
            if (memcmp(q, &absent, sizeof *q) != 0)
                state_reader_fail(reader, "virtio: queue %u is set up, but the device has %u queues", i,
                                  queue_count(transport));
            continue;
        }
        if (!is_power_of_two(q->size) || q->size > size_max)
            state_reader_fail(reader, "virtio: queue %u has size %u (a power of two up to %u)", i, q->size, size_max);
        if (q->ready > 1)
            state_reader_fail(reader, "virtio: queue %u ready is %u", i, q->ready);
    }
}

void virtio_mmio_load(struct virtio_mmio *transport, struct state_reader *reader)
{
    /* Read into a copy so that a failed load leaves the transport alone. */
    struct virtio_mmio_state loaded;
    memset(&loaded, 0, sizeof loaded);
    state_section_open(reader, VIRTIO_SECTION_ID, VIRTIO_SECTION_VERSION, "virtio");
    uint32_t device_id = state_get_u32(reader);
    loaded.status = state_get_u32(reader);
    loaded.device_features_select = state_get_u32(reader);
    loaded.driver_features_select = state_get_u32(reader);
    loaded.driver_features = state_get_u64(reader);
    loaded.queue_select = state_get_u32(reader);
    loaded.interrupt_status = state_get_u32(reader);
    loaded.config_generation = state_get_u32(reader);
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        struct virtio_queue_state *q = &loaded.queues[i];
        q->size = state_get_u32(reader);
        q->ready = state_get_u8(reader);
        q->descriptor_address = state_get_u64(reader);
        q->driver_address = state_get_u64(reader);
        q->device_address = state_get_u64(reader);
        q->next_available = state_get_u16(reader);
        q->next_used = state_get_u16(reader);
    }
    state_section_close(reader, "virtio");
    if (reader->failed)
        return;
    uint32_t expected_id = transport->ops ? transport->ops->device_id : 0;
    if (device_id != expected_id) {
        state_reader_fail(reader, "virtio: saved device id %u, this slot holds device %u", device_id, expected_id);
        return;
    }
    validate(transport, &loaded, reader);
    if (reader->failed)
        return;
    /* The interrupt line is not re-driven here: the machine loads into
     * scratch copies (touching the real PLIC would change it even if a
     * later section fails), and the PLIC section carries the line level,
     * which equals interrupt_status != 0 in any saved state. */
    transport->state = loaded;
}
