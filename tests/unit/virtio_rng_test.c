/* virtio-rng in the machine's last virtio-mmio slot, driven like Linux:
 * registers, buffers filled and their used lengths (capped per request),
 * the deterministic stream giving the same bytes on every run and across
 * save/load, real-time machines differing, chains with read-only buffers
 * (left alone, per spec), a failing source, and malformed queues that must
 * not crash. Prints "FAIL ..." for each failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entropy.h"
#include "machine_devices.h"
#include "virtio_rng_device.h"
#include "virtio_test_driver.h"

#include "test_check.h"
#include "test_machine.h"

#define QUEUE_AREA 0x10000ull
#define DATA_AREA 0x100000ull
#define DATA_AREA_BYTES 0x10000ull

static uint64_t ram(uint64_t offset)
{
    return MACHINE_RAM_BASE + offset;
}

static struct machine *new_machine(bool deterministic)
{
    return test_machine_create(&(struct test_machine_options){ .deterministic_time = deterministic });
}

static void set_up_driver(struct machine *machine, struct test_queue *queue)
{
    struct virtio_mmio *transport = &machine_rng(machine)->transport;
    CHECK(test_driver_negotiate(transport, VIRTIO_F_VERSION_1), "FEATURES_OK did not stick");
    CHECK(test_queue_setup(transport, queue, 0, 64, ram(QUEUE_AREA)), "queue 0 setup failed");
    test_driver_ok(transport);
}

/* Posts one writable buffer of `length` at DATA_AREA + offset, kicks, and
 * returns the used length (UINT32_MAX: no used element). */
static uint32_t request(struct machine *machine, struct test_queue *queue, uint64_t offset, uint32_t length)
{
    struct test_buffer buffer = { ram(DATA_AREA + offset), length, true };
    uint16_t head = test_queue_add(machine, queue, &buffer, 1);
    test_queue_kick(&machine_rng(machine)->transport, queue);
    uint32_t id = 0, written = 0;
    if (!test_queue_take_used(machine, queue, &id, &written))
        return UINT32_MAX;
    CHECK(id == head, "used id %u, expected %u", id, head);
    return written;
}

static bool all_bytes(const uint8_t *bytes, size_t length, uint8_t value)
{
    for (size_t i = 0; i < length; i++)
        if (bytes[i] != value)
            return false;
    return true;
}

static void test_registers(void)
{
    struct machine *machine = new_machine(false);
    struct virtio_rng *rng = machine_rng(machine);
    CHECK(rng != NULL, "the machine has no entropy device");
    if (!rng) {
        test_machine_destroy(machine);
        return;
    }
    CHECK(machine->virtio_slots[VIRTIO_MMIO_SLOTS - 1] == &rng->transport,
          "the entropy device is not in the last slot");
    CHECK(rng->transport.irq == VIRTIO_MMIO_FIRST_IRQ + VIRTIO_MMIO_SLOTS - 1, "irq %u", rng->transport.irq);
    uint64_t base = VIRTIO_MMIO_BASE + (VIRTIO_MMIO_SLOTS - 1) * VIRTIO_MMIO_STRIDE, value = 0;
    CHECK(machine_mmio_read(machine, base + VIRTIO_MMIO_MAGIC_VALUE, 4, &value) && value == 0x74726976, "magic");
    CHECK(machine_mmio_read(machine, base + VIRTIO_MMIO_DEVICE_ID, 4, &value) && value == 4, "device id %llu",
          (unsigned long long)value);
    CHECK(test_device_features(&rng->transport) == VIRTIO_F_VERSION_1, "features beyond VERSION_1 offered");
    test_mmio_write(&rng->transport, VIRTIO_MMIO_QUEUE_SEL, 1);
    CHECK(test_mmio_read(&rng->transport, VIRTIO_MMIO_QUEUE_NUM_MAX) == 0, "a second queue exists");
    CHECK(!virtio_mmio_read(&rng->transport, VIRTIO_MMIO_CONFIG, 4, &value), "config space read accepted");
    test_machine_destroy(machine);

    /* Off: no device, and the last slot is free. */
    struct machine_config config;
    machine_config_defaults(&config);
    config.ram_size = 16u << 20;
    config.console_output_fd = -1;
    config.rng = false;
    struct error err;
    machine = machine_create(&config, &err);
    CHECK(machine && !machine_rng(machine) && !machine->virtio_slots[VIRTIO_MMIO_SLOTS - 1],
          "config.rng = false still has an entropy device");
    machine_destroy(machine);
}

static void test_fill(bool deterministic)
{
    struct machine *machine = new_machine(deterministic);
    struct test_queue queue;
    set_up_driver(machine, &queue);
    uint8_t *data = test_guest_pointer(machine, ram(DATA_AREA));
    memset(data, 0, DATA_AREA_BYTES);
    CHECK(request(machine, &queue, 0, 64) == 64, "64-byte request");
    CHECK(!all_bytes(data, 64, 0), "64 bytes of zeros");
    CHECK(all_bytes(data + 64, 64, 0), "bytes written past the buffer");
    CHECK(test_mmio_read(&machine_rng(machine)->transport, VIRTIO_MMIO_INTERRUPT_STATUS) & 1,
          "no used-buffer interrupt");
    CHECK(request(machine, &queue, 0x1000, 1) == 1, "1-byte request");
    /* Larger than one request's cap: filled up to the cap, rest untouched. */
    CHECK(request(machine, &queue, 0x2000, 3 * VIRTIO_RNG_MAX_BYTES_PER_REQUEST) == VIRTIO_RNG_MAX_BYTES_PER_REQUEST,
          "large request not capped");
    CHECK(all_bytes(data + 0x2000 + VIRTIO_RNG_MAX_BYTES_PER_REQUEST, 2 * VIRTIO_RNG_MAX_BYTES_PER_REQUEST, 0),
          "bytes past the cap written");
    /* Two buffers in one chain: both are writable room. */
    struct test_buffer two[2] = { { ram(DATA_AREA + 0x8000), 10, true }, { ram(DATA_AREA + 0x9000), 20, true } };
    uint16_t head = test_queue_add(machine, &queue, two, 2);
    test_queue_kick(&machine_rng(machine)->transport, &queue);
    uint32_t id, written;
    CHECK(test_queue_take_used(machine, &queue, &id, &written) && id == head && written == 30,
          "two-buffer chain: used length %u", written);
    CHECK(!all_bytes(data + 0x9000, 20, 0), "second buffer of a chain not filled");
    struct virtio_rng_stats stats;
    virtio_rng_get_stats(machine_rng(machine), &stats);
    CHECK(stats.requests == 4 && stats.bytes_supplied == 64 + 1 + VIRTIO_RNG_MAX_BYTES_PER_REQUEST + 30 &&
              stats.failed_requests == 0,
          "stats: %llu requests, %llu bytes, %llu failed", (unsigned long long)stats.requests,
          (unsigned long long)stats.bytes_supplied, (unsigned long long)stats.failed_requests);
    test_machine_destroy(machine);
}

/* The first `length` bytes a fresh machine's device hands out. */
static void first_bytes(bool deterministic, uint8_t *bytes, size_t length)
{
    struct machine *machine = new_machine(deterministic);
    struct test_queue queue;
    set_up_driver(machine, &queue);
    CHECK(request(machine, &queue, 0, (uint32_t)length) == length, "request of %zu bytes", length);
    memcpy(bytes, test_guest_pointer(machine, ram(DATA_AREA)), length);
    test_machine_destroy(machine);
}

static void test_determinism(void)
{
    uint8_t first[256], second[256], expected[256];
    first_bytes(true, first, sizeof first);
    first_bytes(true, second, sizeof second);
    CHECK(memcmp(first, second, sizeof first) == 0, "deterministic machines handed out different bytes");
    uint64_t state = ENTROPY_SEED_VIRTIO_RNG;
    entropy_deterministic_fill(&state, expected, sizeof expected);
    CHECK(memcmp(first, expected, sizeof first) == 0, "deterministic bytes are not the seeded stream");
    first_bytes(false, first, sizeof first);
    first_bytes(false, second, sizeof second);
    CHECK(memcmp(first, second, sizeof first) != 0, "real-time machines handed out the same bytes");
    CHECK(memcmp(first, expected, sizeof first) != 0, "real-time machine handed out the deterministic stream");
}

/* Read-only buffers: the driver must not post them; the device leaves
 * them alone, fills what is writable, and counts the request as failed. */
static void test_read_only_buffers(void)
{
    struct machine *machine = new_machine(true);
    struct test_queue queue;
    set_up_driver(machine, &queue);
    struct virtio_rng *rng = machine_rng(machine);
    uint8_t *data = test_guest_pointer(machine, ram(DATA_AREA));
    memset(data, 0x5a, 0x3000);
    struct test_buffer mixed[2] = { { ram(DATA_AREA), 32, false }, { ram(DATA_AREA + 0x1000), 16, true } };
    uint16_t head = test_queue_add(machine, &queue, mixed, 2);
    test_queue_kick(&rng->transport, &queue);
    uint32_t id, written;
    CHECK(test_queue_take_used(machine, &queue, &id, &written) && id == head && written == 16,
          "readable+writable chain: used length %u", written);
    CHECK(all_bytes(data, 32, 0x5a), "a readable buffer was written");
    CHECK(!all_bytes(data + 0x1000, 16, 0x5a), "the writable buffer was not filled");

    struct test_buffer readable = { ram(DATA_AREA + 0x2000), 64, false };
    head = test_queue_add(machine, &queue, &readable, 1);
    test_queue_kick(&rng->transport, &queue);
    CHECK(test_queue_take_used(machine, &queue, &id, &written) && id == head && written == 0,
          "readable-only chain: used length %u", written);
    CHECK(all_bytes(data + 0x2000, 64, 0x5a), "a readable-only buffer was written");
    CHECK(rng->failed_requests == 2, "failed requests %llu, expected 2", (unsigned long long)rng->failed_requests);
    CHECK(!(test_mmio_read(&rng->transport, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET),
          "a readable buffer made the device need a reset");
    test_machine_destroy(machine);
}

/* A source that fills `limit` bytes with 0xab, whatever is asked. */
static size_t short_source(void *opaque, void *buffer, size_t length)
{
    size_t limit = *(size_t *)opaque;
    size_t filled = length < limit ? length : limit;
    memset(buffer, 0xab, filled);
    return filled;
}

static void test_source(void)
{
    struct machine *machine = new_machine(false);
    struct test_queue queue;
    set_up_driver(machine, &queue);
    struct virtio_rng *rng = machine_rng(machine);
    size_t limit = 10;
    virtio_rng_set_source(rng, short_source, &limit);
    uint8_t *data = test_guest_pointer(machine, ram(DATA_AREA));
    memset(data, 0, 64);
    CHECK(request(machine, &queue, 0, 64) == 10, "a short source's used length is not what it filled");
    CHECK(all_bytes(data, 10, 0xab) && all_bytes(data + 10, 54, 0), "a short source's bytes");
    limit = 0;
    CHECK(request(machine, &queue, 0, 64) == 0, "a source with nothing: used length not 0");
    CHECK(rng->failed_requests == 1, "an empty fill not counted as failed");
    virtio_rng_set_source(rng, NULL, NULL);
    CHECK(request(machine, &queue, 0, 64) == 64, "default source not restored");
    test_machine_destroy(machine);
}

/* Descriptors outside RAM, and a loop: no crash, NEEDS_RESET, and a reset
 * brings the device back. */
static void test_bad_descriptors(void)
{
    struct machine *machine = new_machine(true);
    struct test_queue queue;
    set_up_driver(machine, &queue);
    struct virtio_rng *rng = machine_rng(machine);
    struct test_buffer outside = { 0x1000, 64, true };
    test_queue_add(machine, &queue, &outside, 1);
    test_queue_kick(&rng->transport, &queue);
    uint32_t id, written;
    bool used = test_queue_take_used(machine, &queue, &id, &written);
    uint32_t status = test_mmio_read(&rng->transport, VIRTIO_MMIO_STATUS);
    CHECK(used ? written == 0 : (status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) != 0,
          "buffer outside RAM: used %d length %u status 0x%x", used, written, status);

    set_up_driver(machine, &queue);
    /* A descriptor chained to itself. */
    uint8_t *descriptor = test_guest_pointer(machine, queue.descriptors);
    test_put_le(descriptor, ram(DATA_AREA), 8);
    test_put_le(descriptor + 8, 16, 4);
    test_put_le(descriptor + 12, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    test_put_le(descriptor + 14, 0, 2);
    uint8_t *available = test_guest_pointer(machine, queue.available);
    test_put_le(available + 4, 0, 2);
    test_put_le(available + 2, 1, 2);
    test_queue_kick(&rng->transport, &queue);
    CHECK(test_mmio_read(&rng->transport, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET,
          "a descriptor loop did not set NEEDS_RESET");

    set_up_driver(machine, &queue);
    CHECK(request(machine, &queue, 0, 32) == 32, "the device did not come back after a reset");
    test_machine_destroy(machine);
}

/* Saved mid-stream, loaded into a fresh machine: the same next bytes as
 * the original machine gives. */
static void test_save_load(void)
{
    struct machine *machine = new_machine(true);
    struct test_queue queue;
    set_up_driver(machine, &queue);
    CHECK(request(machine, &queue, 0, 48) == 48, "request before save");
    struct state_writer writer;
    state_writer_init(&writer);
    machine_save_state(machine, &writer);
    struct test_queue saved_queue = queue;
    uint8_t original[64];
    CHECK(request(machine, &queue, 0x1000, 64) == 64, "request after save");
    memcpy(original, test_guest_pointer(machine, ram(DATA_AREA + 0x1000)), 64);

    /* The fresh machine gets the guest's RAM (rings) and the state. */
    struct machine *copy = new_machine(true);
    memcpy(copy->ram.host, machine->ram.host, machine->ram.size);
    struct error err;
    CHECK(machine_load_state(copy, writer.data, writer.length, &err) == 0, "load: %s", err.message);
    CHECK(request(copy, &saved_queue, 0x1000, 64) == 64, "request after load");
    CHECK(memcmp(original, test_guest_pointer(copy, ram(DATA_AREA + 0x1000)), 64) == 0,
          "the loaded machine handed out other bytes");

    /* Corrupt: a truncated state is refused and changes nothing. */
    struct virtio_rng_state before = copy->rng->state;
    struct virtio_mmio_state transport_before = copy->rng->transport.state;
    CHECK(machine_load_state(copy, writer.data, writer.length - 1, &err) < 0, "truncated state accepted");
    CHECK(memcmp(&before, &copy->rng->state, sizeof before) == 0 &&
              memcmp(&transport_before, &copy->rng->transport.state, sizeof transport_before) == 0,
          "a refused load changed the device");

    /* Into a machine without the device: refused. */
    struct machine_config config;
    machine_config_defaults(&config);
    config.ram_size = machine->ram.size;
    config.deterministic_time = true;
    config.console_output_fd = -1;
    config.rng = false;
    struct machine *without = machine_create(&config, &err);
    CHECK(without && machine_load_state(without, writer.data, writer.length, &err) < 0,
          "a state with an entropy device loaded into a machine without one");
    machine_destroy(without);
    state_writer_free(&writer);
    test_machine_destroy(copy);
    test_machine_destroy(machine);
}

int main(void)
{
    test_registers();
    test_fill(false);
    test_fill(true);
    test_determinism();
    test_read_only_buffers();
    test_source();
    test_bad_descriptors();
    test_save_load();
    return test_check_finish("virtio_rng_test");
}
