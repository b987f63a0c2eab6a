/* Entropy for the guest (the virtio-rng device, the device tree's
 * rng-seed): the host's, or a deterministic stream for runs that must be
 * bit-identical (machine_config.deterministic_time).
 *
 * The deterministic stream is splitmix64: a 64-bit state advanced by a
 * constant and mixed. It is not secret and not meant to be; it only has to
 * be the same every run and to look random to a guest's crng. Its state is
 * a plain integer, so a device keeps it in its saved state. */
#ifndef COLO_MACHINE_ENTROPY_H
#define COLO_MACHINE_ENTROPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where a deterministic stream starts (a fixed constant). Different users
 * start from different seeds so that they do not hand out the same bytes. */
#define ENTROPY_SEED_VIRTIO_RNG 0x636f6c6f2d726e67ull  /* "colo-rng" */
#define ENTROPY_SEED_DEVICE_TREE 0x636f6c6f2d736564ull /* "colo-sed" */

/* Fills `length` bytes from the host (getrandom(2)). Returns the number of
 * bytes filled: short only when the host refuses (no getrandom). */
size_t entropy_host_fill(void *buffer, size_t length);

/* Fills `length` bytes from the deterministic stream whose state is
 * *state, and advances it. */
void entropy_deterministic_fill(uint64_t *state, void *buffer, size_t length);

/* Fills from the deterministic stream when `deterministic`, else from the
 * host. Returns the bytes filled (always `length` when deterministic). */
size_t entropy_fill(bool deterministic, uint64_t *state, void *buffer, size_t length);

#endif
