/* The virtio-rng device (virtio_rng.h says what it does): its state, for
 * the machine that makes it and for tests. */
#ifndef COLO_MACHINE_VIRTIO_RNG_DEVICE_H
#define COLO_MACHINE_VIRTIO_RNG_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "state_buffer.h"
#include "virtio_mmio.h"
#include "virtio_rng.h"

/* The most the device puts in one chain: the spec lets it use less than
 * the whole buffer, and a guest's crng asks for far less anyway. */
#define VIRTIO_RNG_MAX_BYTES_PER_REQUEST 4096u

/* Where the bytes come from: fills up to `length` bytes of `buffer` and
 * returns how many it filled (0 when it has none). */
typedef size_t (*virtio_rng_source)(void *opaque, void *buffer, size_t length);

/* Guest-visible state besides the transport's: the deterministic stream
 * decides which bytes the guest gets next. */
struct virtio_rng_state {
    uint64_t generator; /* splitmix64 state (entropy.h) */
};

struct virtio_rng {
    struct virtio_mmio transport;
    struct virtio_rng_state state;
    /* Host side: the source (default: the machine's, see
     * virtio_rng_default_source) and counters. */
    virtio_rng_source source;
    void *source_opaque;
    uint64_t requests, bytes_supplied, failed_requests;
};

/* Sets up the device in virtio-mmio slot `slot` with the default source
 * and the generator at ENTROPY_SEED_VIRTIO_RNG. */
void virtio_rng_init(struct virtio_rng *rng, struct machine *machine, unsigned slot);
/* The default source (opaque: the device): the deterministic stream in
 * state.generator when the machine runs in deterministic time, else the
 * host's getrandom(2). */
size_t virtio_rng_default_source(void *opaque, void *buffer, size_t length);
/* Replaces the source (tests); NULL restores the default. */
void virtio_rng_set_source(struct virtio_rng *rng, virtio_rng_source source, void *opaque);

/* The transport's state plus a section with the generator. */
void virtio_rng_save(const struct virtio_rng *rng, struct state_writer *writer);
void virtio_rng_load(struct virtio_rng *rng, struct state_reader *reader);

#endif
