/* Unit tests for the virtio-mmio transport and split virtqueues, with a
 * fake device (an ops table that records what the transport tells it) on a
 * real machine with 1 MiB of RAM. The test plays the driver: it programs
 * the registers as Linux does and builds descriptor chains in guest RAM by
 * hand; the device side pops, reads, writes and pushes through the
 * transport API.
 * Prints "FAIL: ..." for each failed check and exits 1 if any failed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

static struct machine *machine;

/* ---- registers and layout, from the specification ---- */

enum {
    MAGIC_VALUE = 0x000,
    VERSION = 0x004,
    DEVICE_ID = 0x008,
    VENDOR_ID = 0x00c,
    DEVICE_FEATURES = 0x010,
    DEVICE_FEATURES_SEL = 0x014,
    DRIVER_FEATURES = 0x020,
    DRIVER_FEATURES_SEL = 0x024,
    QUEUE_SEL = 0x030,
    QUEUE_NUM_MAX = 0x034,
    QUEUE_NUM = 0x038,
    QUEUE_READY = 0x044,
    QUEUE_NOTIFY = 0x050,
    INTERRUPT_STATUS = 0x060,
    INTERRUPT_ACK = 0x064,
    STATUS = 0x070,
    QUEUE_DESC_LOW = 0x080,
    QUEUE_DESC_HIGH = 0x084,
    QUEUE_DRIVER_LOW = 0x090,
    QUEUE_DRIVER_HIGH = 0x094,
    QUEUE_DEVICE_LOW = 0x0a0,
    QUEUE_DEVICE_HIGH = 0x0a4,
    CONFIG_GENERATION = 0x0fc,
    CONFIG = 0x100,
};

#define DESC_F_NEXT 1u
#define DESC_F_WRITE 2u
#define DESC_F_INDIRECT 4u
#define AVAIL_F_NO_INTERRUPT 1u
#define F_INDIRECT_DESC (1ull << 28)
#define F_TEST_FEATURE (1ull << 5) /* a device-specific feature the fake offers */

#define TEST_SLOT 3
#define TEST_IRQ (VIRTIO_MMIO_FIRST_IRQ + TEST_SLOT)
#define TEST_QUEUE_MAX 16
#define RAM_BASE MACHINE_RAM_BASE

/* Guest RAM layout of the test driver. */
#define DESCRIPTORS (RAM_BASE + 0x1000)
#define AVAILABLE (RAM_BASE + 0x2000)
#define USED (RAM_BASE + 0x3000)
#define DESCRIPTORS_1 (RAM_BASE + 0x4000) /* queue 1 */
#define AVAILABLE_1 (RAM_BASE + 0x5000)
#define USED_1 (RAM_BASE + 0x6000)
#define INDIRECT_TABLE (RAM_BASE + 0x8000)
#define BUFFERS (RAM_BASE + 0x10000) /* one page per buffer */

/* ---- the fake device ---- */

struct fake_device {
    struct virtio_mmio transport;
    unsigned notifications[VIRTIO_MAX_QUEUES];
    unsigned resets;
    unsigned ready_calls;
    uint8_t config[8];
};

static bool fake_config_read(void *opaque, uint64_t offset, unsigned size, uint64_t *value)
{
    struct fake_device *device = opaque;
    if (offset + size > sizeof device->config)
        return false;
    uint64_t result = 0;
    for (unsigned i = 0; i < size; i++)
        result |= (uint64_t)device->config[offset + i] << (8 * i);
    *value = result;
    return true;
}

static bool fake_config_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct fake_device *device = opaque;
    if (offset + size > sizeof device->config)
        return false;
    for (unsigned i = 0; i < size; i++)
        device->config[offset + i] = (uint8_t)(value >> (8 * i));
    return true;
}

static void fake_queue_notify(void *opaque, unsigned queue)
{
    struct fake_device *device = opaque;
    device->notifications[queue]++;
}

static void fake_reset(void *opaque)
{
    struct fake_device *device = opaque;
    device->resets++;
}

static void fake_driver_ready(void *opaque)
{
    struct fake_device *device = opaque;
    device->ready_calls++;
}

static const struct virtio_device_ops fake_ops = {
    .device_id = VIRTIO_ID_BLOCK,
    .features = F_TEST_FEATURE | F_INDIRECT_DESC,
    .queue_count = 2,
    .queue_size_max = TEST_QUEUE_MAX,
    .config_read = fake_config_read,
    .config_write = fake_config_write,
    .queue_notify = fake_queue_notify,
    .reset = fake_reset,
    .driver_ready = fake_driver_ready,
};

static void fake_init(struct fake_device *device)
{
    memset(device, 0, sizeof *device);
    virtio_mmio_init(&device->transport, machine, TEST_SLOT, &fake_ops, device);
    memcpy(device->config, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
}

/* ---- the test driver ---- */

static uint32_t reg_read(struct fake_device *device, uint64_t offset)
{
    uint64_t value = 0xdeadbeefdeadbeefull;
    CHECK(virtio_mmio_read(&device->transport, offset, 4, &value), "read at 0x%llx refused",
          (unsigned long long)offset);
    CHECK(value <= UINT32_MAX, "read at 0x%llx returned more than 32 bits", (unsigned long long)offset);
    return (uint32_t)value;
}

static void reg_write(struct fake_device *device, uint64_t offset, uint32_t value)
{
    CHECK(virtio_mmio_write(&device->transport, offset, 4, value), "write at 0x%llx refused",
          (unsigned long long)offset);
}

static uint8_t *guest(uint64_t address)
{
    return machine->ram.host + (address - machine->ram.base);
}

static void put_le(uint64_t address, uint64_t value, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        guest(address)[i] = (uint8_t)(value >> (8 * i));
}

static uint64_t get_le(uint64_t address, unsigned size)
{
    uint64_t value = 0;
    for (unsigned i = 0; i < size; i++)
        value |= (uint64_t)guest(address)[i] << (8 * i);
    return value;
}

static void put_descriptor(uint64_t table, unsigned index, uint64_t address, uint32_t length, uint16_t flags,
                           uint16_t next)
{
    uint64_t at = table + 16ull * index;
    put_le(at, address, 8);
    put_le(at + 8, length, 4);
    put_le(at + 12, flags, 2);
    put_le(at + 14, next, 2);
}

/* Publishes a chain head in the available ring, as a driver does. */
static void make_available(uint64_t available, uint16_t queue_size, uint16_t head)
{
    uint16_t index = (uint16_t)get_le(available + 2, 2);
    put_le(available + 4 + 2ull * (index % queue_size), head, 2);
    put_le(available + 2, (uint16_t)(index + 1), 2);
}

static bool line_high(void)
{
    return (machine->plic.state.line_level[TEST_IRQ / 32] >> (TEST_IRQ % 32)) & 1;
}

static void set_up_queue(struct fake_device *device, unsigned queue, uint32_t size, uint64_t descriptors,
                         uint64_t available, uint64_t used)
{
    reg_write(device, QUEUE_SEL, queue);
    CHECK(reg_read(device, QUEUE_READY) == 0, "queue %u ready before set-up", queue);
    CHECK(reg_read(device, QUEUE_NUM_MAX) == TEST_QUEUE_MAX, "QueueNumMax of queue %u", queue);
    reg_write(device, QUEUE_NUM, size);
    reg_write(device, QUEUE_DESC_LOW, (uint32_t)descriptors);
    reg_write(device, QUEUE_DESC_HIGH, (uint32_t)(descriptors >> 32));
    reg_write(device, QUEUE_DRIVER_LOW, (uint32_t)available);
    reg_write(device, QUEUE_DRIVER_HIGH, (uint32_t)(available >> 32));
    reg_write(device, QUEUE_DEVICE_LOW, (uint32_t)used);
    reg_write(device, QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
    memset(guest(descriptors), 0, 16 * size);
    memset(guest(available), 0, 6 + 2 * size);
    memset(guest(used), 0, 6 + 8 * size);
    reg_write(device, QUEUE_READY, 1);
    CHECK(reg_read(device, QUEUE_READY) == 1, "queue %u not ready after set-up", queue);
}

/* The whole Linux start-up sequence: reset, ACKNOWLEDGE, DRIVER, features,
 * FEATURES_OK, queue 0 (size 8) and queue 1 (size 4), DRIVER_OK. */
static void driver_start(struct fake_device *device, uint64_t features)
{
    reg_write(device, STATUS, 0);
    reg_write(device, STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    reg_write(device, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    reg_write(device, DRIVER_FEATURES_SEL, 1);
    reg_write(device, DRIVER_FEATURES, (uint32_t)(features >> 32));
    reg_write(device, DRIVER_FEATURES_SEL, 0);
    reg_write(device, DRIVER_FEATURES, (uint32_t)features);
    uint32_t status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
    reg_write(device, STATUS, status);
    CHECK(reg_read(device, STATUS) == status, "FEATURES_OK refused for 0x%llx", (unsigned long long)features);
    set_up_queue(device, 0, 8, DESCRIPTORS, AVAILABLE, USED);
    set_up_queue(device, 1, 4, DESCRIPTORS_1, AVAILABLE_1, USED_1);
    reg_write(device, STATUS, status | VIRTIO_STATUS_DRIVER_OK);
}

#define ALL_FEATURES (VIRTIO_F_VERSION_1 | F_TEST_FEATURE | F_INDIRECT_DESC)

/* ---- tests ---- */

static void test_identity_and_decoding(void)
{
    struct fake_device device;
    fake_init(&device);
    uint64_t value;

    CHECK(reg_read(&device, MAGIC_VALUE) == 0x74726976u, "magic");
    CHECK(reg_read(&device, VERSION) == 2, "version");
    CHECK(reg_read(&device, DEVICE_ID) == VIRTIO_ID_BLOCK, "device id");
    CHECK(reg_read(&device, VENDOR_ID) != 0, "vendor id is 0");
    CHECK(device.transport.irq == TEST_IRQ, "slot %u is on irq %u", TEST_SLOT, device.transport.irq);
    CHECK(reg_read(&device, STATUS) == 0 && reg_read(&device, INTERRUPT_STATUS) == 0, "status at reset");

    /* Registers are 32-bit; undefined offsets and other sizes are refused. */
    CHECK(!virtio_mmio_read(&device.transport, MAGIC_VALUE, 2, &value), "2-byte register read accepted");
    CHECK(!virtio_mmio_read(&device.transport, MAGIC_VALUE, 8, &value), "8-byte register read accepted");
    CHECK(!virtio_mmio_read(&device.transport, VERSION + 1, 4, &value), "misaligned read accepted");
    CHECK(!virtio_mmio_read(&device.transport, 0x028, 4, &value), "legacy GuestPageSize read accepted");
    CHECK(!virtio_mmio_read(&device.transport, 0x0c0, 4, &value), "read at 0x0c0 accepted");
    CHECK(!virtio_mmio_write(&device.transport, 0x040, 4, 1), "legacy QueuePFN write accepted");
    /* Read-only registers ignore writes. */
    reg_write(&device, MAGIC_VALUE, 0);
    reg_write(&device, INTERRUPT_STATUS, 3);
    CHECK(reg_read(&device, MAGIC_VALUE) == 0x74726976u && reg_read(&device, INTERRUPT_STATUS) == 0,
          "read-only registers were written");

    /* Configuration space goes to the device, any width. */
    CHECK(virtio_mmio_read(&device.transport, CONFIG + 1, 1, &value) && value == 0x22, "config byte read");
    CHECK(virtio_mmio_read(&device.transport, CONFIG + 4, 4, &value) && value == 0x88776655, "config word read");
    CHECK(virtio_mmio_write(&device.transport, CONFIG + 2, 2, 0xbeef) && device.config[2] == 0xef &&
              device.config[3] == 0xbe,
          "config write");
    CHECK(!virtio_mmio_read(&device.transport, CONFIG + 8, 1, &value), "config read past the device's space");

    /* An empty slot: a valid header with device id 0, nothing else. */
    struct virtio_mmio empty;
    virtio_mmio_init(&empty, machine, 7, NULL, NULL);
    CHECK(virtio_mmio_read(&empty, MAGIC_VALUE, 4, &value) && value == 0x74726976u, "empty slot magic");
    CHECK(virtio_mmio_read(&empty, DEVICE_ID, 4, &value) && value == 0, "empty slot device id");
    CHECK(virtio_mmio_read(&empty, QUEUE_NUM_MAX, 4, &value) && value == 0, "empty slot has a queue");
    CHECK(virtio_mmio_write(&empty, STATUS, 4, 1) && virtio_mmio_read(&empty, STATUS, 4, &value) && value == 0,
          "empty slot took a status");
    CHECK(!virtio_mmio_read(&empty, CONFIG, 4, &value), "empty slot has a configuration space");
}

static void test_features_and_status(void)
{
    struct fake_device device;
    fake_init(&device);

    reg_write(&device, DEVICE_FEATURES_SEL, 0);
    CHECK(reg_read(&device, DEVICE_FEATURES) == (uint32_t)(F_TEST_FEATURE | F_INDIRECT_DESC), "features 0..31");
    reg_write(&device, DEVICE_FEATURES_SEL, 1);
    CHECK(reg_read(&device, DEVICE_FEATURES) == 1, "features 32..63 lack VERSION_1");
    reg_write(&device, DEVICE_FEATURES_SEL, 2);
    CHECK(reg_read(&device, DEVICE_FEATURES) == 0, "features 64..95 are not 0");

    reg_write(&device, STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    reg_write(&device, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    uint32_t features_ok = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;

    /* A legacy driver (no VERSION_1) is refused. */
    reg_write(&device, DRIVER_FEATURES_SEL, 0);
    reg_write(&device, DRIVER_FEATURES, (uint32_t)F_TEST_FEATURE);
    reg_write(&device, STATUS, features_ok);
    CHECK(reg_read(&device, STATUS) == (features_ok & ~(uint32_t)VIRTIO_STATUS_FEATURES_OK),
          "FEATURES_OK kept without VERSION_1: 0x%x", reg_read(&device, STATUS));

    /* A feature that was not offered is refused. */
    reg_write(&device, DRIVER_FEATURES_SEL, 1);
    reg_write(&device, DRIVER_FEATURES, 1);
    reg_write(&device, DRIVER_FEATURES_SEL, 0);
    reg_write(&device, DRIVER_FEATURES, (uint32_t)F_TEST_FEATURE | (1u << 6));
    CHECK(device.transport.state.driver_features == (VIRTIO_F_VERSION_1 | F_TEST_FEATURE | (1ull << 6)),
          "driver features not assembled from both halves");
    reg_write(&device, STATUS, features_ok);
    CHECK(!(reg_read(&device, STATUS) & VIRTIO_STATUS_FEATURES_OK), "FEATURES_OK kept with an unoffered feature");

    /* A subset of the offer with VERSION_1 is accepted, and then fixed. */
    reg_write(&device, DRIVER_FEATURES, (uint32_t)F_TEST_FEATURE);
    reg_write(&device, DRIVER_FEATURES_SEL, 5);
    reg_write(&device, DRIVER_FEATURES, 0xffffffffu); /* no such half: ignored */
    reg_write(&device, STATUS, features_ok);
    CHECK(reg_read(&device, STATUS) == features_ok, "FEATURES_OK refused for VERSION_1|bit 5");
    reg_write(&device, DRIVER_FEATURES_SEL, 0);
    reg_write(&device, DRIVER_FEATURES, 0);
    CHECK(device.transport.state.driver_features == (VIRTIO_F_VERSION_1 | F_TEST_FEATURE),
          "features changed after FEATURES_OK");

    /* The driver cannot set DEVICE_NEEDS_RESET. */
    reg_write(&device, STATUS, features_ok | VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    CHECK(reg_read(&device, STATUS) == features_ok, "driver set DEVICE_NEEDS_RESET");

    /* DRIVER_OK tells the device, once. */
    CHECK(device.ready_calls == 0, "driver_ready before DRIVER_OK");
    reg_write(&device, STATUS, features_ok | VIRTIO_STATUS_DRIVER_OK);
    CHECK(device.ready_calls == 1, "driver_ready not called on DRIVER_OK");
    reg_write(&device, STATUS, features_ok | VIRTIO_STATUS_DRIVER_OK);
    CHECK(device.ready_calls == 1, "driver_ready called again");

    /* Configuration change: generation moves, interrupt bit 1. */
    uint32_t generation = reg_read(&device, CONFIG_GENERATION);
    virtio_config_changed(&device.transport);
    CHECK(reg_read(&device, CONFIG_GENERATION) == generation + 1, "config generation did not move");
    CHECK(reg_read(&device, INTERRUPT_STATUS) == 2 && line_high(), "config change interrupt");
    reg_write(&device, INTERRUPT_ACK, 2);
    CHECK(reg_read(&device, INTERRUPT_STATUS) == 0 && !line_high(), "ack of the config interrupt");

    /* Reset. */
    reg_write(&device, STATUS, 0);
    CHECK(device.resets == 1, "reset not passed to the device");
    CHECK(reg_read(&device, STATUS) == 0 && device.transport.state.driver_features == 0, "reset left state");
    CHECK(reg_read(&device, CONFIG_GENERATION) == generation + 1, "reset moved the config generation back");
}

static void test_queue_registers(void)
{
    struct fake_device device;
    fake_init(&device);
    reg_write(&device, QUEUE_SEL, 0);
    CHECK(reg_read(&device, QUEUE_NUM_MAX) == TEST_QUEUE_MAX, "QueueNumMax");
    CHECK(reg_read(&device, QUEUE_NUM) == TEST_QUEUE_MAX, "queue size does not default to the maximum");
    reg_write(&device, QUEUE_NUM, 6);
    CHECK(reg_read(&device, QUEUE_NUM) == TEST_QUEUE_MAX, "a size that is not a power of two was taken");
    reg_write(&device, QUEUE_NUM, 2 * TEST_QUEUE_MAX);
    CHECK(reg_read(&device, QUEUE_NUM) == TEST_QUEUE_MAX, "a size above the maximum was taken");
    reg_write(&device, QUEUE_NUM, 0);
    CHECK(reg_read(&device, QUEUE_NUM) == TEST_QUEUE_MAX, "size 0 was taken");
    reg_write(&device, QUEUE_NUM, 4);
    CHECK(reg_read(&device, QUEUE_NUM) == 4, "size 4 refused");
    reg_write(&device, QUEUE_DESC_LOW, 0x89abc000u);
    reg_write(&device, QUEUE_DESC_HIGH, 0x1u);
    reg_write(&device, QUEUE_DRIVER_LOW, 0x2000u);
    reg_write(&device, QUEUE_DEVICE_HIGH, 0x3u);
    const struct virtio_queue_state *q = &device.transport.state.queues[0];
    CHECK(q->descriptor_address == 0x189abc000ull && q->driver_address == 0x2000 && q->device_address == 0x300000000ull,
          "queue addresses");

    /* Queue 1 is separate; queues 2 and up do not exist. */
    reg_write(&device, QUEUE_SEL, 1);
    CHECK(reg_read(&device, QUEUE_NUM) == TEST_QUEUE_MAX, "queue 1 shares queue 0's size");
    reg_write(&device, QUEUE_SEL, 2);
    CHECK(reg_read(&device, QUEUE_NUM_MAX) == 0, "queue 2 exists");
    reg_write(&device, QUEUE_READY, 1);
    reg_write(&device, QUEUE_NUM, 4);
    CHECK(reg_read(&device, QUEUE_READY) == 0, "queue 2 became ready");
    reg_write(&device, QUEUE_SEL, 1000);
    CHECK(reg_read(&device, QUEUE_NUM_MAX) == 0, "queue 1000 exists");
    CHECK(device.transport.state.queue_select <= VIRTIO_MAX_QUEUES, "queue select out of range");
    CHECK(device.transport.state.queues[2].size == 0 && device.transport.state.queues[3].ready == 0,
          "a queue that does not exist was changed");

    /* Once ready, a queue's layout is fixed. */
    reg_write(&device, QUEUE_SEL, 0);
    reg_write(&device, QUEUE_READY, 1);
    reg_write(&device, QUEUE_NUM, 8);
    reg_write(&device, QUEUE_DESC_LOW, 0);
    CHECK(q->size == 4 && q->descriptor_address == 0x189abc000ull, "a ready queue was reconfigured");
    reg_write(&device, QUEUE_READY, 0);
    CHECK(reg_read(&device, QUEUE_READY) == 0, "QueueReady 0 ignored");

    /* A device whose maximum is not a power of two offers the power of
     * two below it. */
    struct virtio_device_ops odd_ops = fake_ops;
    odd_ops.queue_size_max = 100;
    struct virtio_mmio odd;
    virtio_mmio_init(&odd, machine, 0, &odd_ops, &device);
    uint64_t value;
    CHECK(virtio_mmio_read(&odd, QUEUE_NUM_MAX, 4, &value) && value == 64, "QueueNumMax for a maximum of 100");
}

static void test_chains(void)
{
    struct fake_device device;
    fake_init(&device);
    driver_start(&device, ALL_FEATURES);
    CHECK(device.ready_calls == 1, "driver_ready not called");
    struct virtio_mmio *transport = &device.transport;
    struct virtio_chain chain;

    /* Nothing there yet. */
    CHECK(!virtio_queue_has_available(transport, 0), "empty queue has buffers");
    CHECK(virtio_queue_pop(transport, 0, &chain) == 0, "pop of an empty queue");

    /* Notifications reach the device for ready queues only. */
    reg_write(&device, QUEUE_NOTIFY, 0);
    reg_write(&device, QUEUE_NOTIFY, 1);
    reg_write(&device, QUEUE_NOTIFY, 2);
    reg_write(&device, QUEUE_NOTIFY, 0xffffffffu);
    CHECK(device.notifications[0] == 1 && device.notifications[1] == 1 && device.notifications[2] == 0 &&
              device.notifications[3] == 0,
          "notifications %u %u %u %u", device.notifications[0], device.notifications[1], device.notifications[2],
          device.notifications[3]);

    /* A request: two readable buffers, then two writable ones. */
    uint64_t header = BUFFERS, payload = BUFFERS + 0x1000, data = BUFFERS + 0x2000, status = BUFFERS + 0x3000;
    memcpy(guest(header), "0123456789abcdef", 16);
    memcpy(guest(payload), "ABCDEFGH", 8);
    memset(guest(data), 0, 64);
    memset(guest(status), 0xee, 1);
    put_descriptor(DESCRIPTORS, 5, header, 16, DESC_F_NEXT, 2);
    put_descriptor(DESCRIPTORS, 2, payload, 8, DESC_F_NEXT, 7);
    put_descriptor(DESCRIPTORS, 7, data, 32, DESC_F_NEXT | DESC_F_WRITE, 0);
    put_descriptor(DESCRIPTORS, 0, status, 1, DESC_F_WRITE, 0);
    make_available(AVAILABLE, 8, 5);
    CHECK(virtio_queue_has_available(transport, 0), "queue with a chain has nothing available");
    CHECK(!virtio_queue_has_available(transport, 1), "queue 1 has something");

    CHECK(virtio_queue_pop(transport, 0, &chain) == 1, "pop of a good chain");
    CHECK(chain.head == 5 && chain.count == 4, "chain head %u count %u", chain.head, chain.count);
    CHECK(chain.readable_length == 24 && chain.writable_length == 33, "chain lengths %llu/%llu",
          (unsigned long long)chain.readable_length, (unsigned long long)chain.writable_length);
    CHECK(chain.buffers[0].address == header && !chain.buffers[0].device_writable && chain.buffers[2].address == data &&
              chain.buffers[2].device_writable && chain.buffers[2].length == 32,
          "chain buffers");
    CHECK(!virtio_queue_has_available(transport, 0), "popped chain still available");
    CHECK(virtio_queue_pop(transport, 0, &chain) == 0, "second pop found something");
    /* Pop again for the rest of the test (the first one is consumed):
     * rebuild the chain struct from the same descriptors. */
    make_available(AVAILABLE, 8, 5);
    CHECK(virtio_queue_pop(transport, 0, &chain) == 1, "pop of the re-published chain");

    /* Reads span buffers and stop at the end of the readable part. */
    char text[64];
    memset(text, 0, sizeof text);
    CHECK(virtio_chain_read(transport, &chain, 0, text, sizeof text) == 24, "read of the whole readable part");
    CHECK(memcmp(text, "0123456789abcdefABCDEFGH", 24) == 0, "readable bytes: %.24s", text);
    CHECK(virtio_chain_read(transport, &chain, 14, text, 5) == 5 && memcmp(text, "efABC", 5) == 0,
          "read across buffers");
    CHECK(virtio_chain_read(transport, &chain, 22, text, 10) == 2 && memcmp(text, "GH", 2) == 0,
          "short read at the end");
    CHECK(virtio_chain_read(transport, &chain, 24, text, 10) == 0, "read past the end");

    /* Writes go to the writable part only, are logged, and drop decoded
     * code (checked by the dirty log here). */
    uint64_t *bitmap = calloc(guest_ram_bitmap_words(&machine->ram), sizeof *bitmap);
    machine_dirty_log_enable(machine, true);
    CHECK(virtio_chain_write(transport, &chain, 30, "wxyz", 4) == 3,
          "write across writable buffers (short at the end)");
    CHECK(memcmp(guest(data + 30), "wx", 2) == 0 && guest(status)[0] == 'y', "written bytes");
    CHECK(virtio_chain_write(transport, &chain, 32, "!", 1) == 1 && guest(status)[0] == '!', "status byte");
    CHECK(virtio_chain_write(transport, &chain, 33, "?", 1) == 0, "write past the writable part");
    CHECK(memcmp(guest(header), "0123", 4) == 0, "a write touched a readable buffer");
    virtio_queue_push(transport, 0, &chain, 33);
    uint64_t dirty = machine_dirty_log_read_and_clear(machine, bitmap);
    uint64_t data_page = (data - RAM_BASE) >> GUEST_PAGE_SHIFT;
    uint64_t status_page = (status - RAM_BASE) >> GUEST_PAGE_SHIFT;
    uint64_t used_page = (USED - RAM_BASE) >> GUEST_PAGE_SHIFT;
    uint64_t header_page = (header - RAM_BASE) >> GUEST_PAGE_SHIFT;
    CHECK(dirty == 3, "%llu pages dirty, expected 3 (data, status, used ring)", (unsigned long long)dirty);
    CHECK((bitmap[0] >> data_page & 1) && (bitmap[0] >> status_page & 1) && (bitmap[0] >> used_page & 1),
          "device writes not in the dirty log");
    CHECK(!(bitmap[0] >> header_page & 1), "a readable buffer is marked dirty");
    machine_dirty_log_enable(machine, false);
    free(bitmap);

    /* The used ring: element 0 of the chain, then the index. */
    CHECK(get_le(USED + 2, 2) == 1, "used index after one push: %llu", (unsigned long long)get_le(USED + 2, 2));
    CHECK(get_le(USED + 4, 4) == 5 && get_le(USED + 8, 4) == 33, "used element {%llu, %llu}",
          (unsigned long long)get_le(USED + 4, 4), (unsigned long long)get_le(USED + 8, 4));
    CHECK(!line_high() && reg_read(&device, INTERRUPT_STATUS) == 0, "push alone interrupted");

    /* Notify: interrupt bit 0 and the PLIC line, until acknowledged. */
    virtio_queue_notify(transport, 0);
    CHECK(reg_read(&device, INTERRUPT_STATUS) == 1 && line_high(), "used-buffer interrupt");
    reg_write(&device, INTERRUPT_ACK, 1);
    CHECK(reg_read(&device, INTERRUPT_STATUS) == 0 && !line_high(), "ack did not lower the line");

    /* NO_INTERRUPT suppresses the notification. */
    put_le(AVAILABLE, AVAIL_F_NO_INTERRUPT, 2);
    virtio_queue_notify(transport, 0);
    CHECK(reg_read(&device, INTERRUPT_STATUS) == 0 && !line_high(), "interrupt despite NO_INTERRUPT");
    put_le(AVAILABLE, 0, 2);

    /* A written length larger than the chain is clamped. */
    put_descriptor(DESCRIPTORS, 3, data, 16, DESC_F_WRITE, 0);
    make_available(AVAILABLE, 8, 3);
    CHECK(virtio_queue_pop(transport, 0, &chain) == 1, "pop of a single writable buffer");
    virtio_queue_push(transport, 0, &chain, 1000);
    CHECK(get_le(USED + 4 + 8 + 4, 4) == 16, "written length not clamped to the chain");

    /* Many round trips: both ring indices wrap around the queue size. */
    put_descriptor(DESCRIPTORS, 1, payload, 8, 0, 0);
    for (unsigned i = 0; i < 21; i++) {
        make_available(AVAILABLE, 8, 1);
        CHECK(virtio_queue_pop(transport, 0, &chain) == 1 && chain.head == 1 && chain.count == 1,
              "pop %u of the wrap loop", i);
        virtio_queue_push(transport, 0, &chain, 0);
    }
    uint16_t pushed = 2 + 21; /* the first request, the clamped one, the loop */
    CHECK(get_le(USED + 2, 2) == pushed, "used index %llu after %u pushes", (unsigned long long)get_le(USED + 2, 2),
          pushed);
    CHECK(get_le(USED + 4 + 8 * ((pushed - 1) % 8), 4) == 1, "last used element in the wrong slot");
    /* One more pop than push: the first chain was popped twice. */
    CHECK(transport->state.queues[0].next_available == pushed + 1u, "next_available %u",
          transport->state.queues[0].next_available);

    /* Indirect descriptors (negotiated): one ring slot, a table of three. */
    put_descriptor(INDIRECT_TABLE, 0, header, 4, DESC_F_NEXT, 2);
    put_descriptor(INDIRECT_TABLE, 2, payload, 2, DESC_F_NEXT, 1);
    put_descriptor(INDIRECT_TABLE, 1, status, 1, DESC_F_WRITE, 0);
    put_descriptor(DESCRIPTORS, 4, INDIRECT_TABLE, 3 * 16, DESC_F_INDIRECT, 0);
    make_available(AVAILABLE, 8, 4);
    CHECK(virtio_queue_pop(transport, 0, &chain) == 1, "pop of an indirect chain");
    CHECK(chain.head == 4 && chain.count == 3 && chain.readable_length == 6 && chain.writable_length == 1,
          "indirect chain head %u count %u", chain.head, chain.count);
    CHECK(virtio_chain_read(transport, &chain, 0, text, 6) == 6 && memcmp(text, "0123AB", 6) == 0,
          "indirect readable bytes");
    virtio_queue_push(transport, 0, &chain, 1);

    /* The second queue works independently. */
    put_descriptor(DESCRIPTORS_1, 3, payload, 8, 0, 0);
    make_available(AVAILABLE_1, 4, 3);
    CHECK(virtio_queue_pop(transport, 1, &chain) == 1 && chain.head == 3, "pop on queue 1");
    virtio_queue_push(transport, 1, &chain, 0);
    CHECK(get_le(USED_1 + 2, 2) == 1 && get_le(USED_1 + 4, 4) == 3, "queue 1 used ring");
    CHECK(get_le(USED + 2, 2) == pushed + 1u, "queue 1 push touched queue 0");
    CHECK(transport->malformed_queue_errors == 0, "a good chain was counted as malformed");
}

/* Expects the next pop of queue 0 to find a malformed queue, then resets
 * and restarts the device for the next case. */
static void expect_malformed(struct fake_device *device, const char *what)
{
    struct virtio_mmio *transport = &device->transport;
    struct virtio_chain chain;
    uint64_t errors = transport->malformed_queue_errors;
    CHECK(virtio_queue_pop(transport, 0, &chain) == -1, "pop of %s did not fail", what);
    CHECK(transport->malformed_queue_errors == errors + 1, "%s not counted", what);
    CHECK(reg_read(device, STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, "%s: no DEVICE_NEEDS_RESET", what);
    CHECK((reg_read(device, INTERRUPT_STATUS) & 2) && line_high(), "%s: no configuration interrupt", what);
    /* The queue stays dead until a reset, without more reports. */
    CHECK(virtio_queue_pop(transport, 0, &chain) == -1, "%s: second pop did not fail", what);
    CHECK(transport->malformed_queue_errors == errors + 1, "%s counted twice", what);
    CHECK(!virtio_queue_has_available(transport, 0), "%s: broken queue has buffers", what);
    unsigned notifications = device->notifications[0];
    reg_write(device, QUEUE_NOTIFY, 0);
    CHECK(device->notifications[0] == notifications, "%s: notification passed to a broken device", what);
    /* The driver reads STATUS, sees NEEDS_RESET, resets. */
    driver_start(device, ALL_FEATURES);
    CHECK(!(reg_read(device, STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET) && !line_high(),
          "%s: reset did not clear DEVICE_NEEDS_RESET and the interrupt", what);
}

static void test_malformed(void)
{
    struct fake_device device;
    fake_init(&device);
    driver_start(&device, ALL_FEATURES);
    uint64_t good = BUFFERS;
    uint64_t ram_end = RAM_BASE + machine->ram.size;

    put_descriptor(DESCRIPTORS, 0, RAM_BASE - 0x100, 16, 0, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "a buffer below RAM");

    put_descriptor(DESCRIPTORS, 0, ram_end - 8, 16, 0, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "a buffer crossing the end of RAM");

    put_descriptor(DESCRIPTORS, 0, 0xfffffffffffffff0ull, 0x20, 0, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "a buffer whose end wraps around");

    put_descriptor(DESCRIPTORS, 0, good, 16, DESC_F_NEXT, 1);
    put_descriptor(DESCRIPTORS, 1, good, 16, DESC_F_NEXT, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "a loop");

    put_descriptor(DESCRIPTORS, 0, good, 16, DESC_F_NEXT, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "a descriptor chained to itself");

    /* Descriptors 8 and 9 lie past a table of 8: good-looking ones there
     * must not be used. */
    put_descriptor(DESCRIPTORS, 0, good, 16, DESC_F_NEXT, 8);
    put_descriptor(DESCRIPTORS, 8, good, 16, 0, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "a next index beyond the queue");

    put_descriptor(DESCRIPTORS, 9, good, 16, 0, 0);
    make_available(AVAILABLE, 8, 9);
    expect_malformed(&device, "a head index beyond the queue");

    put_descriptor(DESCRIPTORS, 0, good, 16, DESC_F_WRITE | DESC_F_NEXT, 1);
    put_descriptor(DESCRIPTORS, 1, good, 16, 0, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "a readable buffer after a writable one");

    put_descriptor(DESCRIPTORS, 0, good, 16, 0, 0); /* every slot would be a good chain */
    put_le(AVAILABLE + 2, 9, 2);                    /* but 9 chains in a queue of 8 */
    expect_malformed(&device, "an available index too far ahead");

    /* Indirect tables: too many buffers, nesting, bad sizes, outside RAM. */
    for (unsigned i = 0; i < VIRTIO_CHAIN_MAX_BUFFERS + 1; i++)
        put_descriptor(INDIRECT_TABLE, i, good, 1, DESC_F_NEXT, (uint16_t)(i + 1));
    put_descriptor(INDIRECT_TABLE, VIRTIO_CHAIN_MAX_BUFFERS, good, 1, 0, 0);
    put_descriptor(DESCRIPTORS, 0, INDIRECT_TABLE, 16 * (VIRTIO_CHAIN_MAX_BUFFERS + 1), DESC_F_INDIRECT, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "more buffers than VIRTIO_CHAIN_MAX_BUFFERS");

    put_descriptor(INDIRECT_TABLE, 0, INDIRECT_TABLE, 32, DESC_F_INDIRECT, 0);
    put_descriptor(DESCRIPTORS, 0, INDIRECT_TABLE, 32, DESC_F_INDIRECT, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "a nested indirect table");

    put_descriptor(INDIRECT_TABLE, 0, good, 1, DESC_F_NEXT, 1);
    put_descriptor(INDIRECT_TABLE, 1, good, 1, DESC_F_NEXT, 0);
    put_descriptor(DESCRIPTORS, 0, INDIRECT_TABLE, 32, DESC_F_INDIRECT, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "a loop in an indirect table");

    put_descriptor(DESCRIPTORS, 0, INDIRECT_TABLE, 24, DESC_F_INDIRECT, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "an indirect table of 24 bytes");

    put_descriptor(DESCRIPTORS, 0, ram_end - 16, 32, DESC_F_INDIRECT, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "an indirect table crossing the end of RAM");

    /* Indirect without negotiating it. */
    driver_start(&device, VIRTIO_F_VERSION_1);
    put_descriptor(INDIRECT_TABLE, 0, good, 1, 0, 0);
    put_descriptor(DESCRIPTORS, 0, INDIRECT_TABLE, 16, DESC_F_INDIRECT, 0);
    make_available(AVAILABLE, 8, 0);
    expect_malformed(&device, "an indirect descriptor without VIRTIO_F_INDIRECT_DESC");

    /* Rings outside RAM (a driver that never set the addresses). */
    reg_write(&device, STATUS, 0);
    reg_write(&device, QUEUE_SEL, 0);
    reg_write(&device, QUEUE_READY, 1);
    expect_malformed(&device, "rings at address 0");

    /* The used ring outside RAM is found at push time. */
    struct virtio_mmio *transport = &device.transport;
    put_descriptor(DESCRIPTORS, 0, good, 16, 0, 0);
    make_available(AVAILABLE, 8, 0);
    struct virtio_chain chain;
    CHECK(virtio_queue_pop(transport, 0, &chain) == 1, "pop before moving the used ring");
    transport->state.queues[0].device_address = ram_end - 8;
    uint64_t errors = transport->malformed_queue_errors;
    virtio_queue_push(transport, 0, &chain, 0);
    CHECK(transport->malformed_queue_errors == errors + 1 &&
              (reg_read(&device, STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET),
          "push to a used ring outside RAM");
    CHECK(get_le(ram_end - 8, 8) == 0, "push wrote next to the end of RAM");

    /* Reset clears everything guest-visible (not the host counter). */
    reg_write(&device, INTERRUPT_ACK, 0);
    reg_write(&device, STATUS, 0);
    struct fake_device fresh;
    fake_init(&fresh);
    fresh.transport.state.config_generation = transport->state.config_generation;
    CHECK(memcmp(&transport->state, &fresh.transport.state, sizeof fresh.transport.state) == 0,
          "reset left guest-visible state behind");
    CHECK(!line_high(), "line high after reset");
    CHECK(transport->malformed_queue_errors == errors + 1, "reset cleared the error counter");
}

/* VIRO section body offsets (after the 12-byte header). */
#define AT_DEVICE_ID 12
#define AT_STATUS 16
#define AT_DRIVER_FEATURES 28
#define AT_QUEUE_SELECT 36
#define AT_INTERRUPT_STATUS 40
#define AT_QUEUE(i) (48 + 33 * (i))
#define AT_QUEUE_SIZE(i) AT_QUEUE(i)
#define AT_QUEUE_READY(i) (AT_QUEUE(i) + 4)
#define SECTION_LENGTH AT_QUEUE(VIRTIO_MAX_QUEUES)

static void expect_load_rejected(const struct state_writer *writer, size_t at, uint64_t value, unsigned size,
                                 const char *what)
{
    uint8_t copy[SECTION_LENGTH];
    memcpy(copy, writer->data, sizeof copy);
    for (unsigned i = 0; i < size; i++)
        copy[at + i] = (uint8_t)(value >> (8 * i));
    struct fake_device target;
    fake_init(&target);
    driver_start(&target, VIRTIO_F_VERSION_1);
    struct virtio_mmio_state before = target.transport.state;
    struct state_reader reader;
    state_reader_init(&reader, copy, sizeof copy);
    virtio_mmio_load(&target.transport, &reader);
    CHECK(reader.failed, "virtio load accepted %s", what);
    CHECK(strstr(reader.error, "virtio") != NULL, "error for %s does not say virtio: %s", what, reader.error);
    CHECK(memcmp(&before, &target.transport.state, sizeof before) == 0, "failed load (%s) changed the transport", what);
}

static void test_save_load(void)
{
    struct fake_device original;
    fake_init(&original);
    driver_start(&original, ALL_FEATURES);
    struct virtio_mmio *transport = &original.transport;
    /* Some progress: two chains published, one popped and pushed, an
     * interrupt pending, a config change, odd selectors. */
    put_descriptor(DESCRIPTORS, 0, BUFFERS, 8, 0, 0);
    put_descriptor(DESCRIPTORS, 1, BUFFERS + 8, 8, DESC_F_WRITE, 0);
    make_available(AVAILABLE, 8, 0);
    make_available(AVAILABLE, 8, 1);
    struct virtio_chain chain;
    CHECK(virtio_queue_pop(transport, 0, &chain) == 1, "setup pop");
    virtio_queue_push(transport, 0, &chain, 0);
    virtio_queue_notify(transport, 0);
    virtio_config_changed(transport);
    reg_write(&original, QUEUE_SEL, 1);
    reg_write(&original, DEVICE_FEATURES_SEL, 1);
    reg_write(&original, DRIVER_FEATURES_SEL, 7);

    struct state_writer writer;
    state_writer_init(&writer);
    virtio_mmio_save(transport, &writer);
    CHECK(!writer.out_of_memory, "save ran out of memory");
    CHECK(writer.length == SECTION_LENGTH, "virtio section is %zu bytes, expected %u", writer.length, SECTION_LENGTH);

    struct fake_device restored;
    fake_init(&restored);
    struct state_reader reader;
    state_reader_init(&reader, writer.data, writer.length);
    virtio_mmio_load(&restored.transport, &reader);
    CHECK(!reader.failed, "virtio load failed: %s", reader.error);
    CHECK(reader.position == writer.length, "load left bytes unread");
    CHECK(memcmp(&restored.transport.state, &transport->state, sizeof transport->state) == 0,
          "transport state differs after save/load");
    CHECK(restored.resets == 0 && restored.ready_calls == 0, "load called into the device");
    CHECK(restored.transport.ops == &fake_ops && restored.transport.device == &restored &&
              restored.transport.machine == machine && restored.transport.irq == TEST_IRQ,
          "load changed host fields");
    /* The restored transport carries on where the original was. */
    CHECK(virtio_queue_pop(&restored.transport, 0, &chain) == 1 && chain.head == 1, "restored pop");
    virtio_queue_push(&restored.transport, 0, &chain, 8);
    CHECK(get_le(USED + 2, 2) == 2 && get_le(USED + 12, 4) == 1, "restored push");
    CHECK(reg_read(&restored, INTERRUPT_STATUS) == 3, "restored interrupt status");

    /* Values the registers cannot hold. */
    expect_load_rejected(&writer, AT_DEVICE_ID, VIRTIO_ID_NET, 4, "another device's state");
    expect_load_rejected(&writer, AT_STATUS, 0x100, 4, "a 9-bit status");
    expect_load_rejected(&writer, AT_DRIVER_FEATURES, F_TEST_FEATURE, 8, "FEATURES_OK without VERSION_1");
    expect_load_rejected(&writer, AT_DRIVER_FEATURES, VIRTIO_F_VERSION_1 | (1ull << 7), 8,
                         "FEATURES_OK with an unoffered feature");
    expect_load_rejected(&writer, AT_QUEUE_SELECT, VIRTIO_MAX_QUEUES + 1, 4, "queue select 5");
    expect_load_rejected(&writer, AT_INTERRUPT_STATUS, 4, 4, "interrupt status 4");
    expect_load_rejected(&writer, AT_QUEUE_SIZE(0), 6, 4, "queue size 6");
    expect_load_rejected(&writer, AT_QUEUE_SIZE(0), 0, 4, "queue size 0");
    expect_load_rejected(&writer, AT_QUEUE_SIZE(1), 2 * TEST_QUEUE_MAX, 4, "a queue above its maximum");
    expect_load_rejected(&writer, AT_QUEUE_READY(0), 2, 1, "ready 2");
    expect_load_rejected(&writer, AT_QUEUE_SIZE(2), 4, 4, "a queue the device does not have");
    expect_load_rejected(&writer, AT_QUEUE_READY(3), 1, 1, "a ready queue the device does not have");

    struct fake_device target;
    fake_init(&target);
    struct virtio_mmio_state before = target.transport.state;
    state_reader_init(&reader, writer.data, writer.length - 1);
    virtio_mmio_load(&target.transport, &reader);
    CHECK(reader.failed, "truncated virtio section accepted");
    CHECK(memcmp(&before, &target.transport.state, sizeof before) == 0, "truncated load changed the transport");
    struct state_writer other;
    state_writer_init(&other);
    plic_save(&machine->plic, &other);
    state_reader_init(&reader, other.data, other.length);
    virtio_mmio_load(&target.transport, &reader);
    CHECK(reader.failed && strstr(reader.error, "virtio"), "virtio load of a plic section: %s", reader.error);
    state_writer_free(&other);
    state_writer_free(&writer);

    reg_write(&restored, STATUS, 0);
    reg_write(&original, STATUS, 0);
}

int main(void)
{
    machine = test_machine_create(&(struct test_machine_options){ .ram_size = 1u << 20, .deterministic_time = true });

    test_identity_and_decoding();
    test_features_and_status();
    test_queue_registers();
    test_chains();
    test_malformed();
    test_save_load();

    test_machine_destroy(machine);
    if (test_check_failures) {
        printf("%d check(s) failed\n", test_check_failures);
        return 1;
    }
    printf("virtio_mmio_test: all checks passed\n");
    return 0;
}
