/* The virtio-net device (virtio_net.h says what it does): its state, for
 * the machine that makes it and for tests. */
#ifndef COLO_MACHINE_VIRTIO_NET_DEVICE_H
#define COLO_MACHINE_VIRTIO_NET_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "net_backend.h"
#include "state_buffer.h"
#include "virtio_mmio.h"
#include "virtio_net.h"

#define VIRTIO_NET_RECEIVE_QUEUE 0
#define VIRTIO_NET_TRANSMIT_QUEUE 1

struct virtio_net_state {
    uint8_t mac[6];
};

struct virtio_net {
    struct virtio_mmio transport;
    struct virtio_net_state state;
    /* host side */
    struct net_backend *backend; /* owned; NULL: none (frames dropped) */
    int watch;                   /* machine fd watch of the backend, or -1 */
    /* False: the backend is not read at all (a COLO secondary's NIC, whose
     * input comes from the primary until failover). */
    bool backend_receive_enabled;
    /* Sees every frame read from the backend, before the guest gets it
     * (the COLO primary mirrors them to the secondary); NULL: none. */
    virtio_net_frame_hook backend_frame_observer;
    void *backend_frame_observer_opaque;
    /* Rewrites each frame read from the backend in place, after the
     * observer and before the guest gets it (a COLO secondary that took
     * over keeps shifting TCP sequence numbers); NULL: none. */
    virtio_net_receive_filter backend_receive_filter;
    void *backend_receive_filter_opaque;
    /* Told of new receive buffers (virtio_net_set_receive_room_hook). */
    void (*receive_room_hook)(void *opaque);
    void *receive_room_hook_opaque;
    virtio_net_frame_hook transmit_hook;
    void *transmit_hook_opaque;
    bool transmit_hook_takes_offloads; /* see virtio_net_set_transmit_hook */
    /* A frame the backend gave us, parked with its header when the guest
     * had no room for it (VIRTIO_NET_MAX_FRAME bytes). */
    uint8_t *parked_frame;
    struct virtio_net_header parked_header;
    size_t parked_length; /* 0: none */
    /* Wire header + frame, for gathering a transmit chain
     * (VIRTIO_NET_HEADER_SIZE + VIRTIO_NET_MAX_FRAME). */
    uint8_t *transmit_buffer;
    struct virtio_chain *receive_chains; /* one frame's chains (MRG_RXBUF) */
    /* counters */
    uint64_t received_frames, transmitted_frames;
    uint64_t dropped_no_buffers, dropped_too_large, transmit_errors;
    uint64_t dropped_offloads; /* a header the guest did not negotiate */
};

int virtio_net_init(struct virtio_net *net, struct machine *machine, unsigned slot, const uint8_t mac[6],
                    struct error *err);
/* Connects the NIC to its backend and starts polling the backend's fd
 * through the machine. On success the NIC owns the backend (destroyed
 * with it); on failure (a backend already attached, the machine's fd
 * table full) the caller still does. Before the guest's driver starts (it
 * then sees the offer). */
int virtio_net_attach_backend(struct virtio_net *net, struct net_backend *backend, struct error *err);
void virtio_net_destroy(struct virtio_net *net);
/* Reads what the backend has (at most 64 frames) into the guest: the
 * machine's fd watch calls this when the backend is readable; tests call
 * it directly. */
void virtio_net_poll_backend(struct virtio_net *net);
/* Host side after a state load: re-arm polling, forget parked frames, set
 * the backend's offloads to what the loaded driver negotiated. */
void virtio_net_after_load(struct virtio_net *net);
void virtio_net_save(const struct virtio_net *net, struct state_writer *writer);
void virtio_net_load(struct virtio_net *net, struct state_reader *reader);

#endif
