/* libFuzzer target: virtio descriptor chains. A machine with a virtio-blk
 * (on a small in-memory image) and a virtio-net (no backend) gets a split
 * virtqueue laid out in guest RAM from the input, is notified, and walks
 * whatever chains the input describes; a virtio-net may also receive a
 * frame into them. The host must never crash or touch memory outside RAM
 * (ASan), a malformed queue must set DEVICE_NEEDS_RESET and be counted
 * (and nothing else may set it), and a driver reset must always bring the
 * device back: a well-formed request after it completes.
 *
 * Input layout (little-endian):
 *   u8  options          bit 0: virtio-net (else virtio-blk)
 *                        bit 1: virtio-net's transmit queue (else receive)
 *                        bit 2: accept every offered feature (else VERSION_1)
 *                        bit 3: virtio-net: a frame arrives after the kick
 *                        bit 4: virtio-net: its transmitted frames go to a
 *                        hook that takes offloads (as COLO's output
 *                        buffering does), so offloads and mergeable receive
 *                        buffers are on offer, and the frame received has
 *                        a header: the first 12 bytes of the RAM contents
 *   u8  size_log2        queue size 1 << (size_log2 & 15); sizes over the
 *                        device's maximum are refused, as for a driver
 *   u8  descriptor_count descriptors that follow
 *   u8  head_count       available ring entries that follow
 *   u16 ring_offset      rings at RAM + 16 * ring_offset (descriptors, then
 *                        the available ring 4 KiB on, the used ring 8 KiB on:
 *                        near the end of RAM they leave it)
 *   u16 available_index  the available ring's idx as the driver publishes it
 *   u16 frame_length     of the frame received (bit 3)
 *   descriptors          16 bytes each, as in the descriptor table, except
 *                        that the address is relative to the RAM base
 *                        (wrapping: any address can be expressed)
 *   heads                u16 each, the available ring's entries
 *   the rest             guest RAM from DATA_AREA on: request headers,
 *                        frames, indirect tables
 *
 * Every input starts from the same state: RAM zeroed, the disk image
 * rewritten, the device reset. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_target.h"
#include "test_machine.h"
#include "virtio_net.h"
#include "virtio_test_driver.h"

#define RAM_SIZE (1u << 20)
#define IMAGE_SIZE (64u * 512u)
#define HEADER_LENGTH 10
#define DESCRIPTOR_SIZE 16u
#define AVAILABLE_RING_OFFSET 0x1000u
#define USED_RING_OFFSET 0x2000u
#define DATA_AREA 0x10000u
/* Where the recovery check puts its queue and request (it writes all it
 * needs there first, whatever the input left). */
#define RECOVERY_QUEUE_AREA 0x80000u
#define RECOVERY_REQUEST_AREA 0x84000u

#define BLK_T_GET_ID 8u
#define BLK_S_OK 0u
#define BLK_ID_BYTES 20u
#define NET_RECEIVE_QUEUE 0u
#define NET_TRANSMIT_QUEUE 1u

static struct machine *machine;
static bool created;
static int image_fd = -1;
static char image_path[64];
static unsigned blk_slot, net_slot;
static uint8_t zeros[RAM_SIZE];
static uint8_t image_pattern[IMAGE_SIZE];
static uint8_t frame[VIRTIO_NET_MAX_FRAME];

/* ---- what a guest cannot see ----------------------------------------------
 * The target otherwise sees the devices as a guest does (MMIO registers,
 * RAM); the functions below go through the host side, each for a reason
 * given. */

/* The transport's count of malformed queues (not a guest-visible
 * register; struct machine from machine_devices.h, as the machine layer's
 * tests read it): checks that every NEEDS_RESET was counted. */
static uint64_t malformed_queue_errors(unsigned slot)
{
    return machine->virtio_slots[slot]->malformed_queue_errors;
}

/* Whatever takes the NIC's frames never gets one longer than a frame. */
static void take_transmitted_frame(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                                   const uint8_t *data, size_t length)
{
    (void)opaque, (void)net, (void)header, (void)data;
    if (length > VIRTIO_NET_MAX_FRAME)
        abort();
}

/* The NIC's frames go to take_transmitted_frame (it has no backend), which
 * may say it takes offloads: the NIC then offers them, and mergeable
 * receive buffers. The offer changes only while the driver has not
 * started, so this goes right after a reset. */
static void set_nic_offloads(bool offloads)
{
    virtio_net_set_transmit_hook(machine_nic(machine, 0), take_transmitted_frame, NULL, offloads);
}

/* A frame from the network: with no backend, the only way into the
 * receive queue's chains. */
static void receive_frame(const struct virtio_net_header *header, size_t length)
{
    (void)virtio_net_receive_with_header(machine_nic(machine, 0), header, frame, length);
}

/* ---- the guest's side ---------------------------------------------------- */

static uint64_t slot_address(unsigned slot, uint64_t offset)
{
    return VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_STRIDE + offset;
}

static uint32_t register_read(unsigned slot, uint64_t offset)
{
    uint64_t value = 0;
    if (!machine_mmio_read(machine, slot_address(slot, offset), 4, &value))
        abort();
    return (uint32_t)value;
}

static void register_write(unsigned slot, uint64_t offset, uint32_t value)
{
    if (!machine_mmio_write(machine, slot_address(slot, offset), 4, value))
        abort();
}

/* Writes what lies in RAM; a part outside RAM is left out, as a guest
 * could not have put it there either. */
static void ram_write(uint64_t offset, const void *data, size_t length)
{
    if (offset >= RAM_SIZE)
        return;
    if (length > RAM_SIZE - offset)
        length = RAM_SIZE - offset;
    if (machine_ram_write(machine, MACHINE_RAM_BASE + offset, data, length) < 0)
        abort();
}

static uint64_t offered_features(unsigned slot)
{
    register_write(slot, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint64_t low = register_read(slot, VIRTIO_MMIO_DEVICE_FEATURES);
    register_write(slot, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    uint64_t high = register_read(slot, VIRTIO_MMIO_DEVICE_FEATURES);
    return low | high << 32;
}

/* Reset, the status handshake and features, as Linux probes a device.
 * Returns whether FEATURES_OK stuck. */
static bool negotiate(unsigned slot, uint64_t features)
{
    register_write(slot, VIRTIO_MMIO_STATUS, 0);
    register_write(slot, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    register_write(slot, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    register_write(slot, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    register_write(slot, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
    register_write(slot, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    register_write(slot, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
    register_write(slot, VIRTIO_MMIO_STATUS,
                   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    return register_read(slot, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK;
}

static void driver_ok(unsigned slot)
{
    register_write(slot, VIRTIO_MMIO_STATUS,
                   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                       VIRTIO_STATUS_DRIVER_OK);
}

/* Points queue `queue` at rings from RAM offset `base`; whether the device
 * took it (a size over its maximum is refused). */
static bool queue_setup(unsigned slot, unsigned queue, uint32_t size, uint64_t base)
{
    uint64_t descriptors = MACHINE_RAM_BASE + base;
    uint64_t available = descriptors + AVAILABLE_RING_OFFSET, used = descriptors + USED_RING_OFFSET;
    register_write(slot, VIRTIO_MMIO_QUEUE_SEL, queue);
    if (register_read(slot, VIRTIO_MMIO_QUEUE_NUM_MAX) < size)
        return false;
    register_write(slot, VIRTIO_MMIO_QUEUE_NUM, size);
    register_write(slot, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)descriptors);
    register_write(slot, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(descriptors >> 32));
    register_write(slot, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)available);
    register_write(slot, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(available >> 32));
    register_write(slot, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
    register_write(slot, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
    register_write(slot, VIRTIO_MMIO_QUEUE_READY, 1);
    return register_read(slot, VIRTIO_MMIO_QUEUE_READY) == 1;
}

/* After a driver reset, one well-formed request must go through: the
 * device is never wedged by what a driver did before the reset. A GET_ID
 * for the disk, a minimal frame for the NIC's transmit queue. */
static void check_recovery(unsigned slot, bool is_net)
{
    register_write(slot, VIRTIO_MMIO_STATUS, 0);
    if (register_read(slot, VIRTIO_MMIO_STATUS) != 0) {
        fprintf(stderr, "status is 0x%x after a reset\n", register_read(slot, VIRTIO_MMIO_STATUS));
        abort();
    }
    uint8_t rings[USED_RING_OFFSET + 0x1000] = { 0 };
    ram_write(RECOVERY_QUEUE_AREA, rings, sizeof rings);
    unsigned queue = is_net ? NET_TRANSMIT_QUEUE : 0;
    if (!negotiate(slot, VIRTIO_F_VERSION_1) || !queue_setup(slot, queue, 8, RECOVERY_QUEUE_AREA)) {
        fprintf(stderr, "the device refuses a plain driver after a reset\n");
        abort();
    }
    driver_ok(slot);

    uint64_t request = MACHINE_RAM_BASE + RECOVERY_REQUEST_AREA;
    struct test_buffer buffers[3];
    unsigned count;
    if (is_net) {
        uint8_t packet[VIRTIO_NET_HEADER_SIZE + 60] = { 0 };
        ram_write(RECOVERY_REQUEST_AREA, packet, sizeof packet);
        buffers[0] = (struct test_buffer){ request, sizeof packet, false };
        count = 1;
    } else {
        uint8_t header[16] = { BLK_T_GET_ID };
        uint8_t status = 0xee;
        ram_write(RECOVERY_REQUEST_AREA, header, sizeof header);
        ram_write(RECOVERY_REQUEST_AREA + 0x100, &status, 1);
        buffers[0] = (struct test_buffer){ request, sizeof header, false };
        buffers[1] = (struct test_buffer){ request + 0x40, BLK_ID_BYTES, true };
        buffers[2] = (struct test_buffer){ request + 0x100, 1, true };
        count = 3;
    }
    struct test_queue test_queue = {
        .index = queue,
        .size = 8,
        .descriptors = MACHINE_RAM_BASE + RECOVERY_QUEUE_AREA,
        .available = MACHINE_RAM_BASE + RECOVERY_QUEUE_AREA + AVAILABLE_RING_OFFSET,
        .used = MACHINE_RAM_BASE + RECOVERY_QUEUE_AREA + USED_RING_OFFSET,
    };
    test_queue_add(machine, &test_queue, buffers, count);
    register_write(slot, VIRTIO_MMIO_QUEUE_NOTIFY, queue);
    uint32_t id, length;
    if (!test_queue_take_used(machine, &test_queue, &id, &length) || id != 0 ||
        (!is_net && *test_guest_pointer(machine, request + 0x100) != BLK_S_OK)) {
        fprintf(stderr, "a well-formed request after a reset did not complete\n");
        abort();
    }
}

static void create(void)
{
    /* The image as an in-memory file: the disk opens it by path. */
    image_fd = memfd_create("fuzz-virtio-image", 0);
    if (image_fd < 0)
        abort();
    snprintf(image_path, sizeof image_path, "/proc/self/fd/%d", image_fd);
    for (unsigned i = 0; i < IMAGE_SIZE; i++)
        image_pattern[i] = (uint8_t)(i * 7 + i / 512);
    if (pwrite(image_fd, image_pattern, IMAGE_SIZE, 0) != IMAGE_SIZE)
        abort();
    for (unsigned i = 0; i < sizeof frame; i++)
        frame[i] = (uint8_t)(i * 13);

    machine = test_machine_create(&(struct test_machine_options){
        .ram_size = RAM_SIZE, .deterministic_time = true, .disk_image = image_path, .nic = true });
    /* Which slot holds which device, as a guest finds out. */
    bool found_blk = false, found_net = false;
    for (unsigned slot = 0; slot < VIRTIO_MMIO_SLOTS; slot++) {
        uint64_t id = 0;
        if (!machine_mmio_read(machine, slot_address(slot, VIRTIO_MMIO_DEVICE_ID), 4, &id))
            continue;
        if (id == VIRTIO_ID_BLOCK && !found_blk)
            blk_slot = slot, found_blk = true;
        else if (id == VIRTIO_ID_NET && !found_net)
            net_slot = slot, found_net = true;
    }
    if (!found_blk || !found_net)
        abort();
    created = true;
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!created)
        create();
    if (size < HEADER_LENGTH)
        return 0;
    uint8_t options = data[0];
    uint32_t queue_size = 1u << (data[1] & 15);
    unsigned descriptor_count = data[2], head_count = data[3];
    uint64_t ring_base = 16ull * get_u16(data + 4);
    uint16_t available_index = get_u16(data + 6);
    size_t frame_length = get_u16(data + 8);
    data += HEADER_LENGTH, size -= HEADER_LENGTH;
    size_t descriptor_bytes = DESCRIPTOR_SIZE * descriptor_count, head_bytes = 2u * head_count;
    if (size < descriptor_bytes + head_bytes)
        return 0;
    const uint8_t *descriptors = data, *heads = data + descriptor_bytes;
    const uint8_t *ram_contents = heads + head_bytes;
    size_t ram_length = size - descriptor_bytes - head_bytes;

    bool is_net = options & 1;
    unsigned slot = is_net ? net_slot : blk_slot;
    unsigned queue = is_net && (options & 2) ? NET_TRANSMIT_QUEUE : 0;

    /* The same start for every input. */
    ram_write(0, zeros, RAM_SIZE);
    if (pwrite(image_fd, image_pattern, IMAGE_SIZE, 0) != IMAGE_SIZE)
        abort();
    register_write(slot, VIRTIO_MMIO_STATUS, 0);
    bool offloads = options & 16;
    if (is_net)
        set_nic_offloads(offloads);
    uint64_t errors_before = malformed_queue_errors(slot);

    /* RAM as the driver left it: data first, rings over it. */
    ram_write(DATA_AREA, ram_contents, ram_length);
    for (unsigned i = 0; i < descriptor_count; i++) {
        uint8_t descriptor[DESCRIPTOR_SIZE];
        memcpy(descriptor, descriptors + DESCRIPTOR_SIZE * i, DESCRIPTOR_SIZE);
        test_put_le(descriptor, MACHINE_RAM_BASE + test_get_le(descriptor, 8), 8);
        ram_write(ring_base + DESCRIPTOR_SIZE * i, descriptor, DESCRIPTOR_SIZE);
    }
    uint8_t available_header[4] = { 0, 0, (uint8_t)available_index, (uint8_t)(available_index >> 8) };
    ram_write(ring_base + AVAILABLE_RING_OFFSET, available_header, sizeof available_header);
    ram_write(ring_base + AVAILABLE_RING_OFFSET + 4, heads, head_bytes);

    uint64_t features = options & 4 ? offered_features(slot) : VIRTIO_F_VERSION_1;
    if (negotiate(slot, features) && queue_setup(slot, queue, queue_size, ring_base)) {
        driver_ok(slot);
        register_write(slot, VIRTIO_MMIO_QUEUE_NOTIFY, queue);
        if (is_net && (options & 8)) {
            struct virtio_net_header header = { 0 };
            if (offloads && ram_length >= VIRTIO_NET_HEADER_SIZE)
                virtio_net_header_decode(ram_contents, &header);
            receive_frame(offloads ? &header : NULL, frame_length);
        }
        /* A second kick, from the indices the first one left. */
        register_write(slot, VIRTIO_MMIO_QUEUE_NOTIFY, queue);
    }

    bool needs_reset = register_read(slot, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    bool counted = malformed_queue_errors(slot) != errors_before;
    if (needs_reset != counted) {
        fprintf(stderr, "DEVICE_NEEDS_RESET is %s, but the malformed-queue count %s\n", needs_reset ? "set" : "clear",
                counted ? "grew" : "did not grow");
        abort();
    }
    check_recovery(slot, is_net);
    return 0;
}
