/* A minimal virtio-mmio driver for device unit tests: it programs the
 * transport's registers the way Linux does (status handshake, features,
 * split queues in guest RAM) and builds descriptor chains by writing guest
 * RAM directly, as a guest would. The device under test only ever sees
 * register accesses and guest memory. */
#ifndef COLO_TESTS_VIRTIO_TEST_DRIVER_H
#define COLO_TESTS_VIRTIO_TEST_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "machine_devices.h"
#include "virtio_mmio.h"

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

struct test_queue {
    unsigned index;
    uint16_t size;
    uint64_t descriptors, available, used; /* guest-physical */
    uint16_t next_descriptor;              /* handed out round-robin */
    uint16_t available_index;
    uint16_t used_seen;
};

struct test_buffer {
    uint64_t address;
    uint32_t length;
    bool device_writable;
};

static inline uint8_t *test_guest_pointer(struct machine *machine, uint64_t address)
{
    return machine->ram.host + (address - machine->ram.base);
}

static inline void test_put_le(uint8_t *bytes, uint64_t value, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        bytes[i] = (uint8_t)(value >> (8 * i));
}

static inline uint64_t test_get_le(const uint8_t *bytes, unsigned size)
{
    uint64_t value = 0;
    for (unsigned i = 0; i < size; i++)
        value |= (uint64_t)bytes[i] << (8 * i);
    return value;
}

static inline uint32_t test_mmio_read(struct virtio_mmio *transport, uint64_t offset)
{
    uint64_t value = 0xdeadbeef;
    if (!virtio_mmio_read(transport, offset, 4, &value))
        return 0xdeadbeef;
    return (uint32_t)value;
}

static inline void test_mmio_write(struct virtio_mmio *transport, uint64_t offset, uint32_t value)
{
    virtio_mmio_write(transport, offset, 4, value);
}

static inline uint64_t test_device_features(struct virtio_mmio *transport)
{
    test_mmio_write(transport, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint64_t low = test_mmio_read(transport, VIRTIO_MMIO_DEVICE_FEATURES);
    test_mmio_write(transport, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    uint64_t high = test_mmio_read(transport, VIRTIO_MMIO_DEVICE_FEATURES);
    return low | high << 32;
}

/* Lays out queue `index` at `base` (descriptors, then the available ring
 * at +4 KiB, the used ring at +8 KiB) and makes it ready. The rings start
 * zeroed, as a driver allocates them, so that a queue can be set up again
 * where an earlier one was (after a reset) without stale indices. */
static inline bool test_queue_setup(struct virtio_mmio *transport, struct test_queue *queue, unsigned index,
                                    uint16_t size, uint64_t base)
{
    memset(test_guest_pointer(transport->machine, base), 0, 0x3000);
    memset(queue, 0, sizeof *queue);
    queue->index = index;
    queue->size = size;
    queue->descriptors = base;
    queue->available = base + 0x1000;
    queue->used = base + 0x2000;
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_SEL, index);
    if (test_mmio_read(transport, VIRTIO_MMIO_QUEUE_NUM_MAX) < size)
        return false;
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_NUM, size);
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)queue->descriptors);
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(queue->descriptors >> 32));
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)queue->available);
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(queue->available >> 32));
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)queue->used);
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(queue->used >> 32));
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_READY, 1);
    return test_mmio_read(transport, VIRTIO_MMIO_QUEUE_READY) == 1;
}

/* The Linux probe sequence up to (not including) DRIVER_OK: reset,
 * ACKNOWLEDGE, DRIVER, features, FEATURES_OK (checked to stick). */
static inline bool test_driver_negotiate(struct virtio_mmio *transport, uint64_t features)
{
    test_mmio_write(transport, VIRTIO_MMIO_STATUS, 0);
    test_mmio_write(transport, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    test_mmio_write(transport, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    test_mmio_write(transport, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    test_mmio_write(transport, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
    test_mmio_write(transport, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    test_mmio_write(transport, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
    uint32_t status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
    test_mmio_write(transport, VIRTIO_MMIO_STATUS, status);
    return test_mmio_read(transport, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK;
}

static inline void test_driver_ok(struct virtio_mmio *transport)
{
    test_mmio_write(transport, VIRTIO_MMIO_STATUS,
                    VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                        VIRTIO_STATUS_DRIVER_OK);
}

/* Writes a chain into the descriptor table and makes it available.
 * Returns its head. Does not notify. */
static inline uint16_t test_queue_add(struct machine *machine, struct test_queue *queue,
                                      const struct test_buffer *buffers, unsigned count)
{
    uint16_t head = queue->next_descriptor;
    for (unsigned i = 0; i < count; i++) {
        uint16_t index = (uint16_t)((head + i) % queue->size);
        uint16_t next = (uint16_t)((head + i + 1) % queue->size);
        uint8_t *descriptor = test_guest_pointer(machine, queue->descriptors + 16u * index);
        uint16_t flags = (uint16_t)((i + 1 < count ? VIRTQ_DESC_F_NEXT : 0) |
                                    (buffers[i].device_writable ? VIRTQ_DESC_F_WRITE : 0));
        test_put_le(descriptor, buffers[i].address, 8);
        test_put_le(descriptor + 8, buffers[i].length, 4);
        test_put_le(descriptor + 12, flags, 2);
        test_put_le(descriptor + 14, next, 2);
    }
    queue->next_descriptor = (uint16_t)((head + count) % queue->size);
    uint8_t *available = test_guest_pointer(machine, queue->available);
    test_put_le(available + 4 + 2u * (queue->available_index % queue->size), head, 2);
    queue->available_index++;
    test_put_le(available + 2, queue->available_index, 2);
    return head;
}

static inline void test_queue_kick(struct virtio_mmio *transport, const struct test_queue *queue)
{
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_NOTIFY, queue->index);
}

/* Takes the next used element, if the device has published one. */
static inline bool test_queue_take_used(struct machine *machine, struct test_queue *queue, uint32_t *id,
                                        uint32_t *length)
{
    const uint8_t *used = test_guest_pointer(machine, queue->used);
    uint16_t used_index = (uint16_t)test_get_le(used + 2, 2);
    if (used_index == queue->used_seen)
        return false;
    const uint8_t *element = used + 4 + 8u * (queue->used_seen % queue->size);
    *id = (uint32_t)test_get_le(element, 4);
    *length = (uint32_t)test_get_le(element + 4, 4);
    queue->used_seen++;
    return true;
}

#endif
