/* virtio-rng (virtio 1.1 section 5.4): requests are served synchronously
 * when the driver notifies the queue, so nothing is in flight between
 * notifications and all guest-visible state is the transport's plus the
 * deterministic generator. */
#include "virtio_rng_device.h"

#include <string.h>

#include "entropy.h"
#include "machine_devices.h"

#define VIRTIO_RNG_SECTION_ID 0x56524e47u /* "VRNG" */
#define VIRTIO_RNG_SECTION_VERSION 1
#define VIRTIO_RNG_QUEUE_SIZE_MAX 64
#define VIRTIO_RNG_REQUEST_QUEUE 0

size_t virtio_rng_default_source(void *opaque, void *buffer, size_t length)
{
    struct virtio_rng *rng = opaque;
    return entropy_fill(rng->transport.machine->config.deterministic_time, &rng->state.generator, buffer, length);
}

/* Fills the writable part of one chain and returns it. Readable buffers
 * break the driver's side of the spec ("MUST NOT place driver-readable
 * buffers"): they are left alone, the writable ones are still filled, and
 * the request is counted as failed. */
static void serve_request(struct virtio_rng *rng, const struct virtio_chain *chain)
{
    uint8_t bytes[VIRTIO_RNG_MAX_BYTES_PER_REQUEST];
    uint64_t room = chain->writable_length;
    size_t wanted = room < sizeof bytes ? (size_t)room : sizeof bytes;
    size_t filled = wanted ? rng->source(rng->source_opaque, bytes, wanted) : 0;
    if (filled > wanted)
        filled = wanted; /* a source that overstates what it filled */
    size_t written = virtio_chain_write(&rng->transport, chain, 0, bytes, filled);
    if (chain->readable_length > 0 || written == 0)
        rng->failed_requests++;
    rng->requests++;
    rng->bytes_supplied += written;
    virtio_queue_push(&rng->transport, VIRTIO_RNG_REQUEST_QUEUE, chain, (uint32_t)written);
}

static void rng_queue_notify(void *device, unsigned queue)
{
    struct virtio_rng *rng = device;
    if (queue != VIRTIO_RNG_REQUEST_QUEUE)
        return;
    struct virtio_chain chain;
    unsigned served = 0;
    while (virtio_queue_pop(&rng->transport, queue, &chain) == 1) {
        serve_request(rng, &chain);
        served++;
    }
    if (served > 0)
        virtio_queue_notify(&rng->transport, queue);
}

/* No configuration space (section 5.4.4: none), no feature bits, nothing
 * in flight to drop on reset: config accesses fault as on any device
 * without one. */
static const struct virtio_device_ops rng_ops = {
    .device_id = VIRTIO_ID_ENTROPY,
    .features = 0,
    .queue_count = 1,
    .queue_size_max = VIRTIO_RNG_QUEUE_SIZE_MAX,
    .queue_notify = rng_queue_notify,
};

void virtio_rng_init(struct virtio_rng *rng, struct machine *machine, unsigned slot)
{
    memset(rng, 0, sizeof *rng);
    rng->state.generator = ENTROPY_SEED_VIRTIO_RNG;
    virtio_rng_set_source(rng, NULL, NULL);
    virtio_mmio_init(&rng->transport, machine, slot, &rng_ops, rng);
}

void virtio_rng_set_source(struct virtio_rng *rng, virtio_rng_source source, void *opaque)
{
    rng->source = source ? source : virtio_rng_default_source;
    rng->source_opaque = source ? opaque : rng;
}

void virtio_rng_get_stats(const struct virtio_rng *rng, struct virtio_rng_stats *stats)
{
    *stats = (struct virtio_rng_stats){
        .requests = rng->requests,
        .bytes_supplied = rng->bytes_supplied,
        .failed_requests = rng->failed_requests,
    };
}

void virtio_rng_save(const struct virtio_rng *rng, struct state_writer *writer)
{
    virtio_mmio_save(&rng->transport, writer);
    state_section_begin(writer, VIRTIO_RNG_SECTION_ID, VIRTIO_RNG_SECTION_VERSION);
    state_put_u64(writer, rng->state.generator);
    state_section_end(writer);
}

/* Every generator value is a valid state: nothing to check beyond the
 * transport's own checks (which include the device id). */
void virtio_rng_load(struct virtio_rng *rng, struct state_reader *reader)
{
    /* Into copies, so that a failed load leaves the device untouched. */
    struct virtio_mmio transport = rng->transport;
    virtio_mmio_load(&transport, reader);
    state_section_open(reader, VIRTIO_RNG_SECTION_ID, VIRTIO_RNG_SECTION_VERSION, "virtio-rng");
    uint64_t generator = state_get_u64(reader);
    state_section_close(reader, "virtio-rng");
    if (reader->failed)
        return;
    rng->transport.state = transport.state;
    rng->state.generator = generator;
}
