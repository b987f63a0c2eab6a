/* The TAP network backend: frames to and from a Linux TAP device.
 *
 * When the kernel has it, the TAP carries the same 12-byte little-endian
 * virtio-net header with each frame (IFF_VNET_HDR, TUNSETVNETHDRSZ 12), so
 * headers simply cross over: the guest's goes to the TAP and the host
 * kernel finishes checksums and segments; the TAP's goes to the guest, and
 * TUNSETOFFLOAD tells the kernel what the guest accepts, so it only hands
 * over frames the guest can take (it finishes the rest itself). Without
 * that header the backend takes no offloads. */
#ifndef COLO_MACHINE_NET_TAP_H
#define COLO_MACHINE_NET_TAP_H

#include <stdbool.h>

#include "error.h"
#include "net_backend.h"

struct net_tap {
    struct net_backend backend; /* name: the TAP's; fd: the TAP */
    bool vnet_header;           /* the TAP carries a header with each frame */
    unsigned offloads;          /* TUN_F_* last set with TUNSETOFFLOAD */
};

/* Opens /dev/net/tun and attaches to TAP device `name` (IFF_TAP|IFF_NO_PI,
 * non-blocking, and IFF_VNET_HDR when the kernel has it), and resets the
 * TAP's offloads (a persistent TAP keeps those of its previous user).
 * Returns the backend (hand it to virtio_net_attach_backend), or NULL with
 * err set. */
struct net_backend *net_tap_open(const char *name, struct error *err);

/* The TAP behind a backend made by net_tap_open; NULL for any other. */
struct net_tap *net_tap_of(struct net_backend *backend);

#endif
