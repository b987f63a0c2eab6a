/* A network backend: where a virtio-net device's frames go on the host and
 * where the frames for the guest come from (after TinyEMU's EthernetDevice).
 * A TAP device is one (net_tap.h); whatever else is put between the NIC and
 * the host network (a filter, a proxy, a test's loopback) is another, and
 * virtio_net talks to nothing but this interface.
 *
 * Every frame travels with its virtio-net header, so offloads can pass
 * through: a backend that takes_offloads finishes what the guest left
 * unfinished (checksums, TCP segmentation) and may hand the guest frames
 * that are unfinished in the ways set_offloads allowed.
 *
 * Receiving is pulled by the device: it polls `fd` through the machine's
 * run loop and calls receive until there is nothing more. Switching
 * receiving off (a COLO secondary's NIC, whose input comes from the
 * primary) or holding back while the guest has no receive buffers is the
 * device's business: it simply stops polling. A backend without an fd is
 * never polled (its frames reach the guest through
 * virtio_net_receive_with_header).
 *
 * Everything here runs on the machine's thread, or with the machine
 * paused, like the device that owns the backend. */
#ifndef COLO_MACHINE_NET_BACKEND_H
#define COLO_MACHINE_NET_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "virtio_net_header.h"

/* What the guest accepts to receive, for set_offloads. The device keeps
 * the spec's order: CSUM under TSO, TSO under ECN. */
#define NET_BACKEND_OFFLOAD_CSUM 1u    /* partial checksums (NEEDS_CSUM) */
#define NET_BACKEND_OFFLOAD_TSO4 2u    /* TCP/IPv4 super-segments */
#define NET_BACKEND_OFFLOAD_TSO6 4u    /* TCP/IPv6 super-segments */
#define NET_BACKEND_OFFLOAD_TSO_ECN 8u /* super-segments with CWR set */

struct net_backend;

struct net_backend_ops {
    const char *kind; /* for messages: "TAP" */
    /* Sends one frame of the guest's. Returns 0, or a negative errno when
     * the frame was dropped (the device counts a transmit error); never
     * waits for room. */
    int (*send)(struct net_backend *backend, const struct virtio_net_header *header, const uint8_t *frame,
                size_t length);
    /* Reads one frame for the guest into frame (capacity
     * VIRTIO_NET_MAX_FRAME) and its header. Returns the frame's length, 0
     * for something to skip (not a frame), -EAGAIN when there is nothing
     * more now, or another negative errno when the backend failed (the
     * device then stops polling it until the guest adds receive buffers,
     * so a persistent error cannot spin the machine's thread). NULL for a
     * backend that never has frames for the guest. */
    ssize_t (*receive)(struct net_backend *backend, struct virtio_net_header *header, uint8_t *frame, size_t capacity);
    /* The NET_BACKEND_OFFLOAD_* the guest accepts now (0 after a reset).
     * A failure keeps the previous setting. NULL: nothing to tell. */
    void (*set_offloads)(struct net_backend *backend, unsigned offloads);
    /* Releases everything, the backend itself included. */
    void (*destroy)(struct net_backend *backend);
};

struct net_backend {
    const struct net_backend_ops *ops;
    char name[32]; /* e.g. the TAP's name, for status */
    int fd;        /* readable when receive has frames; -1: none */
    /* It finishes offloaded frames from the guest and passes headers both
     * ways: the device may offer the offloads. */
    bool takes_offloads;
};

static inline int net_backend_send(struct net_backend *backend, const struct virtio_net_header *header,
                                   const uint8_t *frame, size_t length)
{
    return backend->ops->send(backend, header, frame, length);
}

static inline void net_backend_destroy(struct net_backend *backend)
{
    if (backend)
        backend->ops->destroy(backend);
}

#endif
