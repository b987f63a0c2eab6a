/* virtio-mmio transport (virtio 1.1 section 4.2, register layout version
 * 2) and split virtqueues, shared by every virtio device.
 *
 * The QEMU virt map has 8 slots at 0x10001000 + 0x1000 * slot, slot s on
 * PLIC source 1 + s. The transport owns the registers and the queues'
 * guest-visible state; a device supplies an ops table and works on its
 * queues with virtio_queue_pop / virtio_chain_read / virtio_chain_write /
 * virtio_queue_push / virtio_queue_notify. Every write into guest memory
 * goes through the machine's dirty log.
 *
 * A malformed queue (a descriptor outside RAM, a loop, a chain longer than
 * the queue) never crashes the host: the transport sets DEVICE_NEEDS_RESET
 * in the status, counts the error, logs it once, and stops using the
 * queue until the driver resets the device. */
#ifndef COLO_MACHINE_VIRTIO_MMIO_H
#define COLO_MACHINE_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state_buffer.h"

/* Register offsets of a slot (virtio 1.1 section 4.2.2, version 2). */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

#define VIRTIO_MMIO_BASE 0x10001000ull
#define VIRTIO_MMIO_STRIDE 0x1000ull
#define VIRTIO_MMIO_SLOTS 8
#define VIRTIO_MMIO_FIRST_IRQ 1
#define VIRTIO_MAX_QUEUES 4
#define VIRTIO_CHAIN_MAX_BUFFERS 64

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_ENTROPY 4
#define VIRTIO_F_VERSION_1 (1ull << 32)

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

struct virtio_queue_state {
    uint32_t size; /* QueueNum chosen by the driver */
    uint8_t ready;
    uint64_t descriptor_address; /* QueueDesc */
    uint64_t driver_address;     /* QueueDriver: the available ring */
    uint64_t device_address;     /* QueueDevice: the used ring */
    uint16_t next_available;     /* next available ring index to consume */
    uint16_t next_used;          /* next used ring index to fill */
};

struct virtio_mmio_state {
    uint32_t status;
    uint32_t device_features_select;
    uint32_t driver_features_select;
    uint64_t driver_features;
    uint32_t queue_select;
    uint32_t interrupt_status; /* bit 0: used buffer, bit 1: config change */
    uint32_t config_generation;
    struct virtio_queue_state queues[VIRTIO_MAX_QUEUES];
};

/* What a device tells the transport about itself. */
struct virtio_device_ops {
    uint32_t device_id;
    uint64_t features; /* offered; VIRTIO_F_VERSION_1 is added */
    unsigned queue_count;
    uint16_t queue_size_max;
    /* Device configuration space at offset 0x100 (offset is relative). */
    bool (*config_read)(void *device, uint64_t offset, unsigned size, uint64_t *value);
    bool (*config_write)(void *device, uint64_t offset, unsigned size, uint64_t value);
    /* The driver wrote QueueNotify. */
    void (*queue_notify)(void *device, unsigned queue);
    /* The driver reset the device (status 0): drop in-flight work. */
    void (*reset)(void *device);
    /* DRIVER_OK was set: the device may start (e.g. poll its backend). */
    void (*driver_ready)(void *device);
};

struct machine;

struct virtio_mmio {
    struct virtio_mmio_state state;
    const struct virtio_device_ops *ops;
    void *device;
    struct machine *machine;
    unsigned irq;                    /* PLIC source */
    uint64_t malformed_queue_errors; /* counted, see above */
};

/* A descriptor chain popped from a queue: readable buffers first, then
 * device-writable ones (virtio requires that order). */
struct virtio_buffer {
    uint64_t address; /* guest physical, checked to be in RAM */
    uint32_t length;
    bool device_writable;
};

struct virtio_chain {
    uint16_t head; /* descriptor index, for the used ring */
    unsigned count;
    struct virtio_buffer buffers[VIRTIO_CHAIN_MAX_BUFFERS];
    uint64_t readable_length; /* bytes in the readable buffers */
    uint64_t writable_length; /* bytes in the writable buffers */
};

void virtio_mmio_init(struct virtio_mmio *transport, struct machine *machine, unsigned slot,
                      const struct virtio_device_ops *ops, void *device);
bool virtio_mmio_read(struct virtio_mmio *transport, uint64_t offset, unsigned size, uint64_t *value);
bool virtio_mmio_write(struct virtio_mmio *transport, uint64_t offset, unsigned size, uint64_t value);

/* 1: a chain was popped; 0: the queue is empty or not ready; -1: the queue
 * is malformed (the device now needs a reset). */
int virtio_queue_pop(struct virtio_mmio *transport, unsigned queue, struct virtio_chain *chain);
/* Whether the driver has made buffers available that were not popped. */
bool virtio_queue_has_available(struct virtio_mmio *transport, unsigned queue);
/* Copy from the readable part at offset / into the writable part at
 * offset; return the number of bytes copied (short at the end). */
size_t virtio_chain_read(struct virtio_mmio *transport, const struct virtio_chain *chain, uint64_t offset, void *data,
                         size_t length);
size_t virtio_chain_write(struct virtio_mmio *transport, const struct virtio_chain *chain, uint64_t offset,
                          const void *data, size_t length);
/* Returns a chain to the driver with the number of bytes written. */
void virtio_queue_push(struct virtio_mmio *transport, unsigned queue, const struct virtio_chain *chain,
                       uint32_t written);
/* Raises the used-buffer interrupt (unless the driver suppressed it). */
void virtio_queue_notify(struct virtio_mmio *transport, unsigned queue);
/* The device's configuration changed (config_generation++, interrupt). */
void virtio_config_changed(struct virtio_mmio *transport);

/* Transport state (registers and queues); the device saves its own. */
void virtio_mmio_save(const struct virtio_mmio *transport, struct state_writer *writer);
void virtio_mmio_load(struct virtio_mmio *transport, struct state_reader *reader);

#endif
