/* virtio-net (VIRTIO_NET_F_MAC, STATUS, VERSION_1; 12-byte
 * virtio_net_hdr_v1), with a TAP device as the backend.
 *
 * Offloads: when the TAP carries a virtio-net header with each frame
 * (IFF_VNET_HDR, always on Linux), the device offers checksum and TCP
 * segmentation offloads in both directions (CSUM, HOST_TSO4/6, HOST_ECN;
 * GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN) and mergeable receive buffers
 * (MRG_RXBUF). The guest's header then goes to the TAP with its frame (the
 * host kernel completes checksums and segments), and the TAP's header goes
 * to the guest, so a frame may be a 64 KiB TCP super-segment. Without such
 * a TAP (none attached, or a transmit hook that did not say it takes
 * offloads) nothing is offered: every header is zero but num_buffers = 1.
 *
 * Every frame passes one well-defined point in each direction, where the
 * replication layer will later mirror, hold or compare it, and it passes
 * together with its virtio-net header (struct virtio_net_header), which
 * says how the receiver must finish the frame:
 * - out of the VM: the transmit hook (default: write to the TAP);
 * - into the VM: virtio_net_receive_with_header, or virtio_net_receive for
 *   a plain frame (called for each frame read from the TAP, and by whoever
 *   else delivers frames).
 *
 * Receive flow control: when the guest has too few receive buffers for a
 * frame read from the TAP, that frame is parked and the TAP is no longer
 * polled until the guest adds buffers; that "parked" flag is host-side
 * state, recomputed after a state load so a restored VM never stops
 * receiving. */
#ifndef COLO_MACHINE_VIRTIO_NET_H
#define COLO_MACHINE_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "virtio_mmio.h"

/* struct virtio_net_hdr_v1 as it lies in guest memory and on the TAP. */
#define VIRTIO_NET_HEADER_SIZE 12
/* The largest frame (without the header) the device moves: a 64 KiB GSO
 * packet (an IP datagram is at most 65,535 bytes, an IPv6 header comes on
 * top) plus the Ethernet and VLAN headers, rounded up. */
#define VIRTIO_NET_MAX_FRAME (65536 + 128)
#define VIRTIO_NET_RECEIVE_QUEUE 0
#define VIRTIO_NET_TRANSMIT_QUEUE 1

/* virtio_net_hdr_v1 (virtio 1.1 section 5.1.6) in host byte order. */
struct virtio_net_header {
    uint8_t flags;                    /* VIRTIO_NET_HDR_F_* */
    uint8_t gso_type;                 /* VIRTIO_NET_HDR_GSO_*, maybe | _ECN */
    uint16_t header_length;           /* hdr_len: bytes of headers before the payload */
    uint16_t gso_size;                /* payload bytes per segment */
    uint16_t checksum_start;          /* csum_start: where checksumming starts */
    uint16_t checksum_offset;         /* csum_offset: where the sum goes, from start */
    uint16_t buffer_count;            /* num_buffers: receive only, the device's */
};

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1     /* the checksum is still to be done */
#define VIRTIO_NET_HDR_F_DATA_VALID 2     /* the checksum was already checked */
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_UDP 3
#define VIRTIO_NET_HDR_GSO_TCPV6 4
#define VIRTIO_NET_HDR_GSO_ECN 0x80

/* Between the struct and the 12 little-endian bytes of the wire form. */
void virtio_net_header_encode(const struct virtio_net_header *header,
                              uint8_t bytes[VIRTIO_NET_HEADER_SIZE]);
void virtio_net_header_decode(const uint8_t bytes[VIRTIO_NET_HEADER_SIZE],
                              struct virtio_net_header *header);

struct virtio_net_state {
    uint8_t mac[6];
};

struct virtio_net;
/* A transmitted frame with its header. Without negotiated offloads the
 * header is all zero; with them it is the guest's (buffer_count 0), and a
 * frame may need its checksum finished or be a GSO super-segment. */
typedef void (*virtio_net_frame_hook)(void *opaque, struct virtio_net *net,
                                      const struct virtio_net_header *header,
                                      const uint8_t *frame, size_t length);

struct virtio_net {
    struct virtio_mmio transport;
    struct virtio_net_state state;
    /* host side */
    int tap_fd;                       /* -1 when no backend */
    char tap_name[16];
    bool tap_vnet_header;             /* the TAP carries a header with each frame */
    unsigned tap_offloads;            /* TUN_F_* last set with TUNSETOFFLOAD */
    int watch;                        /* machine fd watch id, or -1 */
    /* False: the TAP is not read at all (a COLO secondary's NIC, whose
     * input comes from the primary until failover). */
    bool tap_receive_enabled;
    /* Sees every frame read from the TAP, before the guest gets it (the
     * COLO primary mirrors them to the secondary); NULL: none. */
    virtio_net_frame_hook tap_frame_observer;
    void *tap_frame_observer_opaque;
    virtio_net_frame_hook transmit_hook;
    void *transmit_hook_opaque;
    bool transmit_hook_takes_offloads;  /* see virtio_net_set_transmit_hook */
    /* Wire header + frame: what the TAP gave us, parked when the guest had
     * no room for it (VIRTIO_NET_HEADER_SIZE + VIRTIO_NET_MAX_FRAME). */
    uint8_t *parked_frame;
    size_t parked_length;             /* frame bytes after the header; 0: none */
    uint8_t *transmit_buffer;         /* the same size, for gathering a chain */
    struct virtio_chain *receive_chains;  /* one frame's chains (MRG_RXBUF) */
    /* counters */
    uint64_t received_frames, transmitted_frames;
    uint64_t dropped_no_buffers, dropped_too_large, transmit_errors;
    uint64_t dropped_offloads;        /* a header the guest did not negotiate */
};

int virtio_net_init(struct virtio_net *net, struct machine *machine, unsigned slot,
                    const uint8_t mac[6], struct error *err);
/* Opens /dev/net/tun and attaches to TAP device `name` (IFF_TAP|IFF_NO_PI,
 * non-blocking, and IFF_VNET_HDR with a 12-byte little-endian header when
 * the kernel has it), resets the TAP's offloads (a persistent TAP keeps
 * those of its previous user), and starts polling it through the machine.
 * Before the guest's driver starts (it then sees the offer). */
int virtio_net_attach_tap(struct virtio_net *net, const char *name, struct error *err);
void virtio_net_destroy(struct virtio_net *net);
/* Replaces the transmit hook. A hook that `takes_offloads` gets frames as
 * the guest made them (partial checksums, GSO super-segments, described by
 * the header); only then, or with the default hook on a vnet-header TAP,
 * are offloads offered. The offer changes at the driver's next device
 * reset (at once if the driver has not started), so install the hook
 * before the guest boots. Assigning transmit_hook directly keeps the
 * offer as it is. */
void virtio_net_set_transmit_hook(struct virtio_net *net, virtio_net_frame_hook hook,
                                  void *opaque, bool takes_offloads);
/* Stops or starts reading the TAP (machine thread, or with the machine
 * paused). While stopped, frames queue in the kernel up to the TAP's
 * queue length and are then dropped there. */
void virtio_net_set_tap_receive(struct virtio_net *net, bool enabled);
/* Installs the observer of frames read from the TAP (the header is the
 * TAP's, buffer_count 0). Same threads as above. */
void virtio_net_set_tap_frame_observer(struct virtio_net *net, virtio_net_frame_hook observer, void *opaque);
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
/* The default transmit hook: writes the frame to the TAP, with the header
 * when the TAP carries one. */
void virtio_net_transmit_to_tap(void *opaque, struct virtio_net *net,
                                const struct virtio_net_header *header,
                                const uint8_t *frame, size_t length);
/* Reads what the TAP has (at most 64 frames) into the guest: the
 * machine's fd watch calls this when the TAP is readable; tests call it
 * directly. */
void virtio_net_poll_tap(struct virtio_net *net);
/* Tells the network where the VM's MAC now lives (after a migration or a
 * failover): a broadcast RARP announcement from the VM's MAC, as QEMU's
 * self-announce sends, so bridges and switches learn its new port at once.
 * Goes out through the transmit hook like any VM frame. */
void virtio_net_announce(struct virtio_net *net);
/* Host side after a state load: re-arm polling, forget parked frames, set
 * the TAP's offloads to what the loaded driver negotiated. */
void virtio_net_after_load(struct virtio_net *net);
void virtio_net_save(const struct virtio_net *net, struct state_writer *writer);
void virtio_net_load(struct virtio_net *net, struct state_reader *reader);

#endif
