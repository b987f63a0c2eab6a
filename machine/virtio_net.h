/* virtio-net (VIRTIO_NET_F_MAC, STATUS, VERSION_1; 12-byte
 * virtio_net_hdr_v1), with a network backend (net_backend.h: a TAP, or
 * whatever sits between the NIC and the host) or none (frames dropped).
 *
 * Offloads: when the backend carries a virtio-net header with each frame
 * and finishes offloaded frames (a TAP with IFF_VNET_HDR, always on
 * Linux), the device offers checksum and TCP segmentation offloads in both
 * directions (CSUM, HOST_TSO4/6, HOST_ECN; GUEST_CSUM, GUEST_TSO4/6,
 * GUEST_ECN) and mergeable receive buffers (MRG_RXBUF). The guest's header
 * then goes to the backend with its frame (the host kernel completes
 * checksums and segments), and the backend's header goes to the guest, so
 * a frame may be a 64 KiB TCP super-segment. Without such a backend (none
 * attached, or a transmit hook that did not say it takes offloads)
 * nothing is offered: every header is zero but num_buffers = 1.
 *
 * Every frame passes one well-defined point in each direction, where the
 * replication layer mirrors, holds or compares it, and it passes together
 * with its virtio-net header (struct virtio_net_header), which says how
 * the receiver must finish the frame:
 * - out of the VM: the transmit hook (default: send to the backend);
 * - into the VM: virtio_net_receive_with_header, or virtio_net_receive for
 *   a plain frame (called for each frame read from the backend, and by
 *   whoever else delivers frames).
 *
 * This is the NIC's API for the layers above (struct virtio_net is opaque
 * to them); the device itself, for the machine and tests, is
 * virtio_net_device.h.
 *
 * Receive flow control: when the guest has too few receive buffers for a
 * frame read from the backend, that frame is parked and the backend is no
 * longer polled until the guest adds buffers; that "parked" flag is
 * host-side state, recomputed after a state load so a restored VM never
 * stops receiving. */
#ifndef COLO_MACHINE_VIRTIO_NET_H
#define COLO_MACHINE_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio_net_header.h"

struct virtio_net;

/* A transmitted frame with its header. Without negotiated offloads the
 * header is all zero; with them it is the guest's (buffer_count 0), and a
 * frame may need its checksum finished or be a GSO super-segment. */
typedef void (*virtio_net_frame_hook)(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                                      const uint8_t *frame, size_t length);

/* A frame read from the backend, which the filter may rewrite in place
 * (same length) before the guest gets it. */
typedef void (*virtio_net_receive_filter)(void *opaque, const struct virtio_net_header *header, uint8_t *frame,
                                          size_t length);

/* What a NIC says about itself, for status and metrics. */
struct virtio_net_stats {
    uint8_t mac[6];
    char backend[32]; /* the backend's name (a TAP's); "" when none */
    uint64_t received_frames, transmitted_frames;
    uint64_t dropped_no_buffers, dropped_too_large, dropped_offloads, transmit_errors;
};

/* Replaces the transmit hook. A hook that `takes_offloads` gets frames as
 * the guest made them (partial checksums, GSO super-segments, described by
 * the header); only then, or with the default hook on a backend that
 * takes offloads, are offloads offered. The offer changes at the driver's
 * next device reset (at once if the driver has not started), so install
 * the hook before the guest boots. (A test that assigns the device's
 * transmit_hook field directly keeps the offer as it is.) */
void virtio_net_set_transmit_hook(struct virtio_net *net, virtio_net_frame_hook hook, void *opaque,
                                  bool takes_offloads);
/* Stops or starts reading the backend (machine thread, or with the
 * machine paused). While stopped, a TAP's frames queue in the kernel up to
 * its queue length and are then dropped there. */
void virtio_net_set_backend_receive(struct virtio_net *net, bool enabled);
/* Installs the observer of frames read from the backend (the header is
 * the backend's, buffer_count 0). Same threads as above. */
void virtio_net_set_backend_frame_observer(struct virtio_net *net, virtio_net_frame_hook observer, void *opaque);
/* Installs the filter of frames read from the backend (runs after the
 * observer). Same threads as above. */
void virtio_net_set_backend_receive_filter(struct virtio_net *net, virtio_net_receive_filter filter, void *opaque);
/* With the machine paused for good (a COLO primary that handed the VM to
 * its secondary): reads every frame the backend has queued and shows it
 * to the observer only (the mirror takes it to the VM's new home); the
 * guest never gets it. How many; 0 without a backend or observer. */
size_t virtio_net_drain_backend_to_observer(struct virtio_net *net);
/* Delivers one Ethernet frame with its header to the guest; header NULL
 * means a plain frame (all zero). The device sets buffer_count, and drops
 * DATA_VALID if the guest did not negotiate GUEST_CSUM. Returns false when
 * it could not deliver: no (or not enough) receive buffers
 * (dropped_no_buffers), a frame that can never fit (dropped_too_large;
 * without MRG_RXBUF the chain goes back empty), or a header asking for an
 * offload the guest did not negotiate (dropped_offloads). Machine thread
 * only, like everything that touches the queues. */
bool virtio_net_receive_with_header(struct virtio_net *net, const struct virtio_net_header *header,
                                    const uint8_t *frame, size_t length);
bool virtio_net_receive(struct virtio_net *net, const uint8_t *frame, size_t length);
/* What became of a frame offered with virtio_net_offer_frame. */
enum virtio_net_offer_result {
    VIRTIO_NET_OFFER_DELIVERED,
    VIRTIO_NET_OFFER_NO_ROOM, /* not taken, not counted: offer it again later */
    VIRTIO_NET_OFFER_DROPPED, /* never fits, or offloads not negotiated (counted) */
};
/* Like virtio_net_receive_with_header, except that a frame the guest has
 * no receive buffers for yet is left to the caller (NO_ROOM), who offers
 * it again once the guest added some (virtio_net_set_receive_room_hook),
 * as the NIC's own backend frames wait in the backend. Machine thread. */
enum virtio_net_offer_result virtio_net_offer_frame(struct virtio_net *net, const struct virtio_net_header *header,
                                                    const uint8_t *frame, size_t length);
/* Called on the machine thread each time the guest notifies the receive
 * queue (it added buffers): frames that found no room may go now. NULL:
 * none. Machine thread, or with the machine paused. */
void virtio_net_set_receive_room_hook(struct virtio_net *net, void (*hook)(void *opaque), void *opaque);
/* The default transmit hook: sends the frame to the backend (a transmit
 * error when it refuses it; dropped silently without a backend, like an
 * unplugged cable). A transmit hook may also call it from another thread,
 * as long as it serializes its own calls (the backends' send is
 * thread-safe; the error count is atomic). */
void virtio_net_transmit_to_backend(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                                    const uint8_t *frame, size_t length);
/* Tells the network where the VM's MAC now lives (after a migration or a
 * failover): a broadcast RARP announcement from the VM's MAC, as QEMU's
 * self-announce sends, so bridges and switches learn its new port at once.
 * Goes out through the transmit hook like any VM frame. */
void virtio_net_announce(struct virtio_net *net);
/* The NIC's MAC, backend and counters. The counters change on the
 * machine's thread: read them there or with the machine paused. */
void virtio_net_get_stats(const struct virtio_net *net, struct virtio_net_stats *stats);

#endif
