/* virtio-blk (virtio 1.1 section 5.2) over a block backend.
 *
 * Requests are served synchronously, in queue order, when the driver
 * notifies the request queue: each one is read from its chain, executed
 * on the backend (read, write, flush), and pushed back with its status
 * byte before the next one is looked at. Nothing is in flight
 * between notifications, so reset and save/load have no device work to
 * drain: all guest-visible state lives in the transport. */
#include "virtio_blk_device.h"

#include <string.h>

#include "machine_devices.h"

#define VIRTIO_BLK_SECTION_ID 0x56424c4bu /* "VBLK" */
#define VIRTIO_BLK_SECTION_VERSION 1

#define VIRTIO_BLK_SECTOR_SIZE 512u
#define VIRTIO_BLK_QUEUE_SIZE_MAX 256
#define VIRTIO_BLK_REQUEST_QUEUE 0

/* Feature bits (virtio 1.1 section 5.2.3). */
#define VIRTIO_BLK_F_SEG_MAX (1ull << 2)
#define VIRTIO_BLK_F_RO (1ull << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ull << 6)
#define VIRTIO_BLK_F_FLUSH (1ull << 9)

/* Request types and status values (section 5.2.6). */
#define VIRTIO_BLK_T_IN 0u
#define VIRTIO_BLK_T_OUT 1u
#define VIRTIO_BLK_T_FLUSH 4u
#define VIRTIO_BLK_T_GET_ID 8u
#define VIRTIO_BLK_S_OK 0u
#define VIRTIO_BLK_S_IOERR 1u
#define VIRTIO_BLK_S_UNSUPP 2u

#define VIRTIO_BLK_REQUEST_HEADER_SIZE 16u /* u32 type, u32 reserved, u64 sector */
#define VIRTIO_BLK_ID_BYTES 20u

/* The header and the status byte take one descriptor each; the data gets
 * the rest of what the transport accepts in one chain. */
#define VIRTIO_BLK_SEG_MAX (VIRTIO_CHAIN_MAX_BUFFERS - 2)

/* Configuration space layout (struct virtio_blk_config, section 5.2.4),
 * up to and including write_zeroes_may_unmap and its padding. Fields of
 * features we do not offer read as zero. */
#define CONFIG_CAPACITY 0
#define CONFIG_SIZE_MAX 8
#define CONFIG_SEG_MAX 12
#define CONFIG_GEOMETRY 16
#define CONFIG_BLK_SIZE 20
#define CONFIG_SIZE 60

/* Requests move through a bounce buffer of this size, so a large request
 * never needs a large allocation. */
#define TRANSFER_CHUNK (64u * 1024u)

static uint32_t load_le32(const uint8_t *bytes)
{
    return (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 | (uint32_t)bytes[3] << 24;
}

static uint64_t load_le64(const uint8_t *bytes)
{
    return (uint64_t)load_le32(bytes) | (uint64_t)load_le32(bytes + 4) << 32;
}

static void store_le(uint8_t *bytes, uint64_t value, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        bytes[i] = (uint8_t)(value >> (8 * i));
}

/* ---- requests ------------------------------------------------------------ */

/* Whether `length` bytes starting at `sector` are inside the image and
 * whole sectors (the driver must send whole sectors; we refuse the rest). */
static bool request_in_range(const struct virtio_blk *disk, uint64_t sector, uint64_t length)
{
    if (length % VIRTIO_BLK_SECTOR_SIZE != 0)
        return false;
    return sector <= disk->capacity_sectors && length / VIRTIO_BLK_SECTOR_SIZE <= disk->capacity_sectors - sector;
}

/* IN: image -> the writable buffers before the status byte. */
static uint8_t serve_read(struct virtio_blk *disk, const struct virtio_chain *chain, uint64_t sector, uint64_t length,
                          uint8_t *buffer, uint64_t *written)
{
    if (!request_in_range(disk, sector, length))
        return VIRTIO_BLK_S_IOERR;
    uint64_t image_offset = sector * VIRTIO_BLK_SECTOR_SIZE;
    for (uint64_t done = 0; done < length;) {
        size_t chunk = length - done < TRANSFER_CHUNK ? (size_t)(length - done) : TRANSFER_CHUNK;
        if (block_backend_read(disk->backend, image_offset + done, buffer, chunk) < 0)
            return VIRTIO_BLK_S_IOERR;
        size_t copied = virtio_chain_write(&disk->transport, chain, done, buffer, chunk);
        *written += copied;
        if (copied != chunk)
            return VIRTIO_BLK_S_IOERR;
        done += chunk;
    }
    return VIRTIO_BLK_S_OK;
}

/* OUT: the readable buffers after the header -> image. */
static uint8_t serve_write(struct virtio_blk *disk, const struct virtio_chain *chain, uint64_t sector, uint8_t *buffer)
{
    uint64_t length = chain->readable_length - VIRTIO_BLK_REQUEST_HEADER_SIZE;
    /* The backend refuses it too; this says why in one place. */
    if (disk->backend->read_only || !request_in_range(disk, sector, length))
        return VIRTIO_BLK_S_IOERR;
    uint64_t image_offset = sector * VIRTIO_BLK_SECTOR_SIZE;
    for (uint64_t done = 0; done < length;) {
        size_t chunk = length - done < TRANSFER_CHUNK ? (size_t)(length - done) : TRANSFER_CHUNK;
        if (virtio_chain_read(&disk->transport, chain, VIRTIO_BLK_REQUEST_HEADER_SIZE + done, buffer, chunk) != chunk)
            return VIRTIO_BLK_S_IOERR;
        if (block_backend_write(disk->backend, image_offset + done, buffer, chunk) < 0)
            return VIRTIO_BLK_S_IOERR;
        done += chunk;
    }
    return VIRTIO_BLK_S_OK;
}

static uint8_t serve_flush(struct virtio_blk *disk)
{
    return block_backend_flush(disk->backend) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

/* GET_ID: "colo-" + the image's file name, zero-padded to 20 bytes (not
 * terminated when it fills all 20, as the spec allows). A driver that
 * offers less room gets the start of it: the spec says "at most 20". */
static uint8_t serve_get_id(struct virtio_blk *disk, const struct virtio_chain *chain, uint64_t room, uint64_t *written)
{
    static const char prefix[] = "colo-";
    const char *path = disk->backend->name;
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    uint8_t id_bytes[VIRTIO_BLK_ID_BYTES] = { 0 };
    size_t prefix_length = sizeof prefix - 1;
    size_t name_length = strlen(name);
    if (name_length > VIRTIO_BLK_ID_BYTES - prefix_length)
        name_length = VIRTIO_BLK_ID_BYTES - prefix_length; /* truncated, by design */
    memcpy(id_bytes, prefix, prefix_length);
    memcpy(id_bytes + prefix_length, name, name_length);
    size_t length = room < VIRTIO_BLK_ID_BYTES ? (size_t)room : VIRTIO_BLK_ID_BYTES;
    *written += virtio_chain_write(&disk->transport, chain, 0, id_bytes, length);
    return VIRTIO_BLK_S_OK;
}

/* Serves one request and returns its chain to the driver. `buffer` is
 * TRANSFER_CHUNK bytes of scratch space for the data. */
static void serve_request(struct virtio_blk *disk, const struct virtio_chain *chain, uint8_t *buffer)
{
    /* No room for a status byte: nothing can be reported, so the chain
     * just goes back untouched. */
    if (chain->writable_length == 0) {
        disk->failed_requests++;
        virtio_queue_push(&disk->transport, VIRTIO_BLK_REQUEST_QUEUE, chain, 0);
        return;
    }
    uint64_t status_offset = chain->writable_length - 1;
    uint64_t written = 0; /* into the writable buffers, before the status */
    uint8_t status;

    uint8_t header[VIRTIO_BLK_REQUEST_HEADER_SIZE];
    if (chain->readable_length < sizeof header ||
        virtio_chain_read(&disk->transport, chain, 0, header, sizeof header) != sizeof header) {
        status = VIRTIO_BLK_S_IOERR;
    } else if (status_offset >= UINT32_MAX) {
        /* The used ring's length field could not say how much we wrote. */
        status = VIRTIO_BLK_S_IOERR;
    } else {
        uint32_t type = load_le32(header);
        uint64_t sector = load_le64(header + 8);
        switch (type) {
        case VIRTIO_BLK_T_IN:
            disk->read_requests++;
            status = serve_read(disk, chain, sector, status_offset, buffer, &written);
            break;
        case VIRTIO_BLK_T_OUT:
            disk->write_requests++;
            status = serve_write(disk, chain, sector, buffer);
            break;
        case VIRTIO_BLK_T_FLUSH:
            disk->flush_requests++;
            status = serve_flush(disk);
            break;
        case VIRTIO_BLK_T_GET_ID:
            status = serve_get_id(disk, chain, status_offset, &written);
            break;
        default:
            status = VIRTIO_BLK_S_UNSUPP;
            break;
        }
    }
    if (status != VIRTIO_BLK_S_OK)
        disk->failed_requests++;
    written += virtio_chain_write(&disk->transport, chain, status_offset, &status, 1);
    virtio_queue_push(&disk->transport, VIRTIO_BLK_REQUEST_QUEUE, chain, (uint32_t)written);
}

/* ---- transport callbacks ---------------------------------------------- */

static void blk_queue_notify(void *device, unsigned queue)
{
    struct virtio_blk *disk = device;
    if (queue != VIRTIO_BLK_REQUEST_QUEUE)
        return;
    /* One chain and one bounce buffer per notification, on the machine
     * thread's stack (64 KiB; the default stack is 8 MiB). */
    struct virtio_chain chain;
    uint8_t buffer[TRANSFER_CHUNK];
    unsigned served = 0;
    while (virtio_queue_pop(&disk->transport, queue, &chain) == 1) {
        serve_request(disk, &chain, buffer);
        served++;
    }
    if (served > 0)
        virtio_queue_notify(&disk->transport, queue);
}

static void blk_config_image(const struct virtio_blk *disk, uint8_t config[CONFIG_SIZE])
{
    memset(config, 0, CONFIG_SIZE);
    store_le(config + CONFIG_CAPACITY, disk->capacity_sectors, 8);
    store_le(config + CONFIG_SEG_MAX, VIRTIO_BLK_SEG_MAX, 4);
    store_le(config + CONFIG_BLK_SIZE, VIRTIO_BLK_SECTOR_SIZE, 4);
}

static bool blk_config_read(void *device, uint64_t offset, unsigned size, uint64_t *value)
{
    const struct virtio_blk *disk = device;
    if ((size != 1 && size != 2 && size != 4 && size != 8) || offset > CONFIG_SIZE || size > CONFIG_SIZE - offset)
        return false;
    uint8_t config[CONFIG_SIZE];
    blk_config_image(disk, config);
    uint64_t result = 0;
    for (unsigned i = 0; i < size; i++)
        result |= (uint64_t)config[offset + i] << (8 * i);
    *value = result;
    return true;
}

/* Nothing in our configuration is writable (writeback needs CONFIG_WCE,
 * which we do not offer): writes inside it are accepted and ignored. */
static bool blk_config_write(void *device, uint64_t offset, unsigned size, uint64_t value)
{
    (void)device;
    (void)value;
    return offset <= CONFIG_SIZE && size <= CONFIG_SIZE - offset;
}

/* Requests complete before queue_notify returns: nothing to drop. */
static void blk_reset(void *device)
{
    (void)device;
}

static void blk_driver_ready(void *device)
{
    (void)device;
}

#define BLK_COMMON_FEATURES (VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE)

static const struct virtio_device_ops blk_ops_read_write = {
    .device_id = VIRTIO_ID_BLOCK,
    .features = BLK_COMMON_FEATURES,
    .queue_count = 1,
    .queue_size_max = VIRTIO_BLK_QUEUE_SIZE_MAX,
    .config_read = blk_config_read,
    .config_write = blk_config_write,
    .queue_notify = blk_queue_notify,
    .reset = blk_reset,
    .driver_ready = blk_driver_ready,
};

static const struct virtio_device_ops blk_ops_read_only = {
    .device_id = VIRTIO_ID_BLOCK,
    .features = BLK_COMMON_FEATURES | VIRTIO_BLK_F_RO,
    .queue_count = 1,
    .queue_size_max = VIRTIO_BLK_QUEUE_SIZE_MAX,
    .config_read = blk_config_read,
    .config_write = blk_config_write,
    .queue_notify = blk_queue_notify,
    .reset = blk_reset,
    .driver_ready = blk_driver_ready,
};

/* ---- lifetime -------------------------------------------------------------- */

int virtio_blk_init(struct virtio_blk *disk, struct machine *machine, unsigned slot, struct block_backend *backend,
                    struct error *err)
{
    memset(disk, 0, sizeof *disk);
    if (backend->size == 0 || backend->size % VIRTIO_BLK_SECTOR_SIZE != 0)
        return error_set(err,
                         "virtio-blk: image %s is %llu bytes; it must be a non-zero "
                         "multiple of %u bytes",
                         backend->name, (unsigned long long)backend->size, VIRTIO_BLK_SECTOR_SIZE);
    disk->backend = backend;
    disk->capacity_sectors = backend->size / VIRTIO_BLK_SECTOR_SIZE;
    virtio_mmio_init(&disk->transport, machine, slot, backend->read_only ? &blk_ops_read_only : &blk_ops_read_write,
                     disk);
    return 0;
}

void virtio_blk_destroy(struct virtio_blk *disk)
{
    block_backend_destroy(disk->backend);
    disk->backend = NULL;
}

void virtio_blk_get_stats(const struct virtio_blk *disk, struct virtio_blk_stats *stats)
{
    *stats = (struct virtio_blk_stats){
        .path = disk->backend ? disk->backend->name : NULL,
        .read_only = disk->backend && disk->backend->read_only,
        .read_requests = disk->read_requests,
        .write_requests = disk->write_requests,
        .flush_requests = disk->flush_requests,
        .failed_requests = disk->failed_requests,
    };
}

struct block_backend *virtio_blk_backend(struct virtio_blk *disk)
{
    return disk->backend;
}

struct block_backend *virtio_blk_replace_backend(struct virtio_blk *disk, struct block_backend *backend)
{
    struct block_backend *old = disk->backend;
    if (!old || !backend || backend->size != old->size || backend->read_only != old->read_only)
        return NULL;
    disk->backend = backend;
    return old;
}

/* ---- state ----------------------------------------------------------------- */

void virtio_blk_save(const struct virtio_blk *disk, struct state_writer *writer)
{
    virtio_mmio_save(&disk->transport, writer);
    state_section_begin(writer, VIRTIO_BLK_SECTION_ID, VIRTIO_BLK_SECTION_VERSION);
    state_put_u64(writer, disk->capacity_sectors);
    state_put_u8(writer, disk->backend->read_only);
    state_section_end(writer);
}

/* The image itself is not in the state (disk replication keeps the two
 * images equal); what we check is that it is the same kind of disk the
 * driver negotiated with: same size, same read-only flag (F_RO). */
void virtio_blk_load(struct virtio_blk *disk, struct state_reader *reader)
{
    /* Into a copy, so that a failed load leaves the device untouched. */
    struct virtio_mmio transport = disk->transport;
    virtio_mmio_load(&transport, reader);
    state_section_open(reader, VIRTIO_BLK_SECTION_ID, VIRTIO_BLK_SECTION_VERSION, "virtio-blk");
    uint64_t capacity = state_get_u64(reader);
    uint8_t read_only = state_get_u8(reader);
    state_section_close(reader, "virtio-blk");
    if (reader->failed)
        return;
    if (capacity != disk->capacity_sectors) {
        state_reader_fail(reader, "virtio-blk: saved disk has %llu sectors, image %s has %llu",
                          (unsigned long long)capacity, disk->backend->name,
                          (unsigned long long)disk->capacity_sectors);
        return;
    }
    if (read_only > 1 || (read_only != 0) != disk->backend->read_only) {
        state_reader_fail(reader, "virtio-blk: saved disk was %s, image %s is opened %s",
                          read_only ? "read-only" : "read-write", disk->backend->name,
                          disk->backend->read_only ? "read-only" : "read-write");
        return;
    }
    disk->transport = transport;
}
