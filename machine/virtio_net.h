/* virtio-net (VIRTIO_NET_F_MAC, VERSION_1; 12-byte virtio_net_hdr_v1, no
 * offloads), with a TAP device as the backend.
 *
 * Every frame passes one well-defined point in each direction, where the
 * replication layer will later mirror, hold or compare it:
 * - out of the VM: virtio_net_transmit_hook (default: write to the TAP);
 * - into the VM: virtio_net_receive (called for each frame read from the
 *   TAP, and by whoever else delivers frames).
 *
 * Receive flow control: when the guest has no receive buffers, one frame
 * is parked and the TAP is no longer polled until the guest adds buffers;
 * that "parked" flag is host-side state, recomputed after a state load so
 * a restored VM never stops receiving. */
#ifndef COLO_MACHINE_VIRTIO_NET_H
#define COLO_MACHINE_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "virtio_mmio.h"

#define VIRTIO_NET_MAX_FRAME 65536
#define VIRTIO_NET_RECEIVE_QUEUE 0
#define VIRTIO_NET_TRANSMIT_QUEUE 1

struct virtio_net_state {
    uint8_t mac[6];
};

struct virtio_net;
typedef void (*virtio_net_frame_hook)(void *opaque, struct virtio_net *net,
                                      const uint8_t *frame, size_t length);

struct virtio_net {
    struct virtio_mmio transport;
    struct virtio_net_state state;
    /* host side */
    int tap_fd;                       /* -1 when no backend */
    char tap_name[16];
    int watch;                        /* machine fd watch id, or -1 */
    virtio_net_frame_hook transmit_hook;
    void *transmit_hook_opaque;
    uint8_t *parked_frame;            /* VIRTIO_NET_MAX_FRAME bytes */
    size_t parked_length;             /* 0 when nothing is parked */
    /* counters */
    uint64_t received_frames, transmitted_frames;
    uint64_t dropped_no_buffers, dropped_too_large, transmit_errors;
};

int virtio_net_init(struct virtio_net *net, struct machine *machine, unsigned slot,
                    const uint8_t mac[6], struct error *err);
/* Opens /dev/net/tun and attaches to TAP device `name` (IFF_TAP|IFF_NO_PI,
 * non-blocking), and starts polling it through the machine. */
int virtio_net_attach_tap(struct virtio_net *net, const char *name, struct error *err);
void virtio_net_destroy(struct virtio_net *net);
/* Delivers one Ethernet frame to the guest. Returns false when it could
 * not: no receive buffers (dropped_no_buffers) or a receive chain too small
 * for it (dropped_too_large; the chain goes back empty). Machine thread
 * only, like everything that touches the queues. */
bool virtio_net_receive(struct virtio_net *net, const uint8_t *frame, size_t length);
/* The default transmit hook: writes the frame to the TAP. */
void virtio_net_transmit_to_tap(void *opaque, struct virtio_net *net,
                                const uint8_t *frame, size_t length);
/* Reads what the TAP has (at most 64 frames) into the guest: the
 * machine's fd watch calls this when the TAP is readable; tests call it
 * directly. */
void virtio_net_poll_tap(struct virtio_net *net);
/* Host side after a state load: re-arm polling, forget parked frames. */
void virtio_net_after_load(struct virtio_net *net);
void virtio_net_save(const struct virtio_net *net, struct state_writer *writer);
void virtio_net_load(struct virtio_net *net, struct state_reader *reader);

#endif
