/* virtio-rng, the entropy device (virtio 1.1 section 5.4): one request
 * queue; the driver posts device-writable buffers and the device fills
 * them with random bytes from its source: the host's getrandom(2), or in
 * deterministic time mode a deterministic stream whose state is part of
 * the machine state, so that two runs give the guest the same bytes.
 *
 * Every machine has one (machine_config.rng, default on) in the last
 * virtio-mmio slot, so disks and NICs keep their slots.
 *
 * This is the device's API for the layers above (struct virtio_rng is
 * opaque to them); the device itself, for the machine and tests, is
 * virtio_rng_device.h. */
#ifndef COLO_MACHINE_VIRTIO_RNG_H
#define COLO_MACHINE_VIRTIO_RNG_H

#include <stdint.h>

struct virtio_rng;

/* What the device has handed out, for status and metrics. */
struct virtio_rng_stats {
    uint64_t requests;        /* chains returned to the driver */
    uint64_t bytes_supplied;  /* random bytes written into them */
    uint64_t failed_requests; /* chains with no writable room, readable buffers, or a failing source */
};

/* The counters change on the machine's thread: read them there or with
 * the machine paused. */
void virtio_rng_get_stats(const struct virtio_rng *rng, struct virtio_rng_stats *stats);

#endif
