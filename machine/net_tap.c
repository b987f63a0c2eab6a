/* The TAP backend (net_tap.h). Non-blocking in both directions: a full
 * queue drops the frame, as a real NIC would, and never stalls the
 * machine's thread. */
#include "net_tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

static const struct net_backend_ops tap_ops;

struct net_tap *net_tap_of(struct net_backend *backend)
{
    return backend && backend->ops == &tap_ops ? (struct net_tap *)backend : NULL;
}

static int tap_send(struct net_backend *backend, const struct virtio_net_header *header, const uint8_t *frame,
                    size_t length)
{
    struct net_tap *tap = (struct net_tap *)backend;
    uint8_t header_bytes[VIRTIO_NET_HEADER_SIZE];
    struct iovec pieces[2];
    unsigned count = 0;
    if (tap->vnet_header) {
        virtio_net_header_encode(header, header_bytes);
        pieces[count++] = (struct iovec){ header_bytes, sizeof header_bytes };
    } else if (header->flags != 0 || header->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
        /* An unfinished frame (from a hook that takes offloads) and a TAP
         * that cannot finish it: sending it would put a bad checksum or
         * an oversized frame on the wire. */
        return -EINVAL;
    }
    pieces[count++] = (struct iovec){ (void *)frame, length };
    size_t expected = (count == 2 ? sizeof header_bytes : 0) + length;
    ssize_t done;
    do
        done = writev(backend->fd, pieces, (int)count);
    while (done < 0 && errno == EINTR);
    /* The TAP is non-blocking: a full queue (EAGAIN, ENOBUFS), a header
     * the kernel refuses (EINVAL) or any other failure drops the frame;
     * never wait. */
    if (done < 0)
        return -errno;
    return done == (ssize_t)expected ? 0 : -EIO;
}

/* One packet, laid out as header + frame whether or not the TAP carries
 * headers (without, the header is all zero). */
static ssize_t tap_receive(struct net_backend *backend, struct virtio_net_header *header, uint8_t *frame,
                           size_t capacity)
{
    struct net_tap *tap = (struct net_tap *)backend;
    uint8_t header_bytes[VIRTIO_NET_HEADER_SIZE];
    for (;;) {
        ssize_t got;
        /* The kernel skips num_buffers rather than writing it. */
        memset(header_bytes, 0, sizeof header_bytes);
        if (tap->vnet_header) {
            struct iovec pieces[2] = { { header_bytes, sizeof header_bytes }, { frame, capacity } };
            got = readv(backend->fd, pieces, 2);
        } else {
            got = read(backend->fd, frame, capacity);
            if (got > 0)
                got += VIRTIO_NET_HEADER_SIZE;
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (got == 0)
            return -EAGAIN;
        /* The kernel always writes a whole header; anything less (or a
         * header alone) is no frame. */
        if (got <= VIRTIO_NET_HEADER_SIZE)
            return 0;
        virtio_net_header_decode(header_bytes, header);
        return got - VIRTIO_NET_HEADER_SIZE;
    }
}

/* The kernel wants CSUM under TSO and TSO under ECN (the device asks no
 * other combination). */
static unsigned tun_offloads(unsigned offloads)
{
    unsigned tun = 0;
    if (offloads & NET_BACKEND_OFFLOAD_CSUM)
        tun |= TUN_F_CSUM;
    if (offloads & NET_BACKEND_OFFLOAD_TSO4)
        tun |= TUN_F_TSO4;
    if (offloads & NET_BACKEND_OFFLOAD_TSO6)
        tun |= TUN_F_TSO6;
    if (offloads & NET_BACKEND_OFFLOAD_TSO_ECN)
        tun |= TUN_F_TSO_ECN;
    return tun;
}

/* A failure keeps the old setting, which is never more than the guest
 * took before a reset, or 0; frames that still do not suit the guest are
 * dropped by the device on delivery. */
static void tap_set_offloads(struct net_backend *backend, unsigned offloads)
{
    struct net_tap *tap = (struct net_tap *)backend;
    if (!tap->vnet_header)
        return;
    unsigned tun = tun_offloads(offloads);
    if (ioctl(backend->fd, TUNSETOFFLOAD, tun) == 0)
        tap->offloads = tun;
}

static void tap_destroy(struct net_backend *backend)
{
    if (backend->fd >= 0)
        close(backend->fd);
    free(backend);
}

static const struct net_backend_ops tap_ops = {
    .kind = "TAP",
    .send = tap_send,
    .receive = tap_receive,
    .set_offloads = tap_set_offloads,
    .destroy = tap_destroy,
};

/* The 12-byte little-endian header on every packet, or false (the TAP
 * then has to be opened again without IFF_VNET_HDR). TUNSETVNETLE is only
 * needed on a big-endian host: the TAP's default is the host's order. */
static bool configure_vnet_header(int fd)
{
    int size = VIRTIO_NET_HEADER_SIZE;
    int little_endian = 1;
    const uint16_t probe = 1;
    bool host_is_little_endian = *(const uint8_t *)&probe == 1;
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0)
        return false;
    return ioctl(fd, TUNSETVNETLE, &little_endian) == 0 || host_is_little_endian;
}

/* Opens and attaches to the TAP, with vnet headers if asked and possible.
 * Returns the fd or -1 (err set). */
static int open_tap(const char *name, bool want_vnet_header, bool *vnet_header, struct error *err)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "cannot open /dev/net/tun for TAP %s", name);
    unsigned supported = 0;
    *vnet_header = want_vnet_header && ioctl(fd, TUNGETFEATURES, &supported) == 0 && (supported & IFF_VNET_HDR);
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strcpy(request.ifr_name, name);
    request.ifr_flags = (short)(IFF_TAP | IFF_NO_PI | (*vnet_header ? IFF_VNET_HDR : 0));
    if (ioctl(fd, TUNSETIFF, &request) < 0) {
        error_set_errno(err, "cannot attach to TAP %s", name);
        close(fd);
        return -1;
    }
    return fd;
}

struct net_backend *net_tap_open(const char *name, struct error *err)
{
    struct net_tap *tap = calloc(1, sizeof *tap);
    if (!tap) {
        error_set(err, "out of memory for TAP %s", name);
        return NULL;
    }
    if (strlen(name) >= IFNAMSIZ || strlen(name) >= sizeof tap->backend.name) {
        error_set(err, "TAP name '%s' is longer than %d characters", name, IFNAMSIZ - 1);
        free(tap);
        return NULL;
    }
    bool vnet_header;
    int fd = open_tap(name, true, &vnet_header, err);
    if (fd >= 0 && vnet_header && !configure_vnet_header(fd)) {
        close(fd);
        fd = open_tap(name, false, &vnet_header, err);
    }
    if (fd < 0) {
        free(tap);
        return NULL;
    }
    /* A persistent TAP keeps the offloads its last user set (QEMU sets
     * CSUM and TSO): the kernel would then hand us frames with unfinished
     * checksums, which a guest that did not ask for them drops, every TCP
     * segment of them. Start from none; the device sets what the guest
     * accepts once its driver is ready. */
    if (ioctl(fd, TUNSETOFFLOAD, 0u) < 0) {
        error_set_errno(err, "cannot reset the offloads of TAP %s", name);
        close(fd);
        free(tap);
        return NULL;
    }
    tap->backend.ops = &tap_ops;
    strcpy(tap->backend.name, name);
    tap->backend.fd = fd;
    tap->backend.takes_offloads = vnet_header;
    tap->vnet_header = vnet_header;
    tap->offloads = 0;
    return &tap->backend;
}
