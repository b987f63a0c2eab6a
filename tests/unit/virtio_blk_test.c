/* virtio-blk against a temporary image: registers and configuration, the
 * request types (read, write, flush, get-id), every kind of bad request,
 * read-only disks, the dirty log of device writes, image checks at init
 * and save/load. The test drives the virtio-mmio registers like Linux.
 * Prints "FAIL: ..." for each failed check and exits 1 if any failed. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block_file.h"
#include "machine_devices.h"
#include "virtio_blk_device.h"
#include "virtio_test_driver.h"

#include "test_check.h"
#include "test_machine.h"

#define SECTOR 512u
#define IMAGE_SECTORS 64u

#define VIRTIO_BLK_F_SEG_MAX (1ull << 2)
#define VIRTIO_BLK_F_RO (1ull << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ull << 6)
#define VIRTIO_BLK_F_FLUSH (1ull << 9)

#define T_IN 0u
#define T_OUT 1u
#define T_FLUSH 4u
#define T_GET_ID 8u
#define S_OK 0u
#define S_IOERR 1u
#define S_UNSUPP 2u

/* Guest RAM layout used by the test (offsets from the RAM base). */
#define QUEUE_AREA 0x10000ull
#define HEADER_AREA 0x20000ull      /* request headers, 32 bytes apart */
#define STATUS_AREA 0x21000ull      /* status bytes, 1 apart */
#define DATA_AREA 0x100000ull       /* request data */
#define DIRTY_DATA_AREA 0x300000ull /* a page range used only by the dirty log check */

static struct machine *machine;
static char directory[64];

static uint64_t ram(uint64_t offset)
{
    return MACHINE_RAM_BASE + offset;
}

static char *path_in_directory(const char *name)
{
    static char paths[8][256];
    static unsigned next;
    char *path = paths[next++ % 8];
    snprintf(path, sizeof paths[0], "%s/%s", directory, name);
    return path;
}

/* An image whose sector s is filled with bytes (s * 7 + i) & 0xff. */
static void make_image(const char *path, uint64_t length)
{
    FILE *file = fopen(path, "wb");
    if (!file) {
        printf("FAIL: cannot create %s\n", path);
        exit(1);
    }
    for (uint64_t i = 0; i < length; i++)
        fputc((int)(((i / SECTOR) * 7 + i) & 0xff), file);
    fclose(file);
}

static void read_image(const char *path, uint64_t offset, void *data, size_t length)
{
    int fd = open(path, O_RDONLY);
    ssize_t done = fd >= 0 ? pread(fd, data, length, (off_t)offset) : -1;
    CHECK(done == (ssize_t)length, "cannot read back %s", path);
    if (fd >= 0)
        close(fd);
}

/* One request: header at HEADER_AREA + 32 * n, status at STATUS_AREA + n. */
struct request {
    unsigned number;
    uint16_t head;
};

static uint64_t header_address(unsigned number)
{
    return ram(HEADER_AREA + 32ull * number);
}
static uint64_t status_address(unsigned number)
{
    return ram(STATUS_AREA + number);
}

static void write_header(unsigned number, uint32_t type, uint64_t sector)
{
    uint8_t *header = test_guest_pointer(machine, header_address(number));
    test_put_le(header, type, 4);
    test_put_le(header + 4, 0, 4);
    test_put_le(header + 8, sector, 8);
    *test_guest_pointer(machine, status_address(number)) = 0xee;
}

/* Adds header + data buffers + status as one chain. */
static uint16_t add_request(struct test_queue *queue, unsigned number, uint32_t type, uint64_t sector,
                            const struct test_buffer *data, unsigned data_count)
{
    write_header(number, type, sector);
    struct test_buffer buffers[VIRTIO_CHAIN_MAX_BUFFERS];
    unsigned count = 0;
    buffers[count++] = (struct test_buffer){ header_address(number), 16, false };
    for (unsigned i = 0; i < data_count; i++)
        buffers[count++] = data[i];
    buffers[count++] = (struct test_buffer){ status_address(number), 1, true };
    return test_queue_add(machine, queue, buffers, count);
}

static uint8_t status_of(unsigned number)
{
    return *test_guest_pointer(machine, status_address(number));
}

/* A disk over the image file `path` in virtio-mmio slot `slot`. */
static int init_disk(struct virtio_blk *disk, unsigned slot, const char *path, bool read_only, struct error *err)
{
    struct block_backend *image = block_file_open(path, read_only, err);
    if (!image || virtio_blk_init(disk, machine, slot, image, err) < 0) {
        block_backend_destroy(image);
        return -1;
    }
    return 0;
}

/* The number the next open file gets: the lowest one free. */
static int lowest_free_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
    return fd;
}

/* Expects the next used element to be `head` with `length` bytes written. */
static void expect_used(struct test_queue *queue, uint16_t head, uint32_t length, const char *what)
{
    uint32_t id = 0, written = 0;
    bool got = test_queue_take_used(machine, queue, &id, &written);
    CHECK(got, "%s: no used element", what);
    if (!got)
        return;
    CHECK(id == head, "%s: used id %u, expected %u", what, id, head);
    CHECK(written == length, "%s: used length %u, expected %u", what, written, length);
}

static void expect_no_used(struct test_queue *queue, const char *what)
{
    uint32_t id, written;
    CHECK(!test_queue_take_used(machine, queue, &id, &written), "%s: unexpected used element", what);
}

static void set_up_driver(struct virtio_blk *disk, struct test_queue *queue, uint64_t queue_base)
{
    uint64_t features = VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE;
    if (disk->backend->read_only)
        features |= VIRTIO_BLK_F_RO;
    CHECK(test_driver_negotiate(&disk->transport, features), "FEATURES_OK did not stick");
    CHECK(test_queue_setup(&disk->transport, queue, 0, 128, queue_base), "queue 0 setup failed");
    test_driver_ok(&disk->transport);
}

/* ---- registers and configuration ------------------------------------- */

static void test_registers_and_config(struct virtio_blk *disk)
{
    struct virtio_mmio *transport = &disk->transport;
    CHECK(test_mmio_read(transport, VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976, "magic value");
    CHECK(test_mmio_read(transport, VIRTIO_MMIO_VERSION) == 2, "transport version");
    CHECK(test_mmio_read(transport, VIRTIO_MMIO_DEVICE_ID) == 2, "device id is not 2 (block)");
    uint64_t features = test_device_features(transport);
    CHECK(features & VIRTIO_F_VERSION_1, "VERSION_1 not offered");
    CHECK(features & VIRTIO_BLK_F_FLUSH, "FLUSH not offered");
    CHECK(features & VIRTIO_BLK_F_SEG_MAX, "SEG_MAX not offered");
    CHECK(features & VIRTIO_BLK_F_BLK_SIZE, "BLK_SIZE not offered");
    CHECK(!(features & VIRTIO_BLK_F_RO), "RO offered on a read-write disk");
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_SEL, 0);
    uint32_t queue_max = test_mmio_read(transport, VIRTIO_MMIO_QUEUE_NUM_MAX);
    CHECK(queue_max == 128 || queue_max == 256, "queue size max %u", queue_max);
    test_mmio_write(transport, VIRTIO_MMIO_QUEUE_SEL, 1);
    CHECK(test_mmio_read(transport, VIRTIO_MMIO_QUEUE_NUM_MAX) == 0, "a second queue exists");

    /* Config space, every size, little-endian. */
    uint64_t value = 0;
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG, 8, &value) && value == IMAGE_SECTORS,
          "capacity (8-byte read) is %llu", (unsigned long long)value);
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG, 4, &value) && value == IMAGE_SECTORS, "capacity low word");
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + 4, 4, &value) && value == 0, "capacity high word");
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG, 1, &value) && value == IMAGE_SECTORS, "capacity low byte");
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + 12, 4, &value) && value == VIRTIO_CHAIN_MAX_BUFFERS - 2,
          "seg_max is %llu", (unsigned long long)value);
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + 20, 4, &value) && value == SECTOR, "blk_size is %llu",
          (unsigned long long)value);
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + 20, 2, &value) && value == SECTOR, "blk_size 2-byte read");
    CHECK(virtio_mmio_read(transport, VIRTIO_MMIO_CONFIG + 16, 4, &value) && value == 0, "geometry is not zero");

    /* The device's own limits, asked directly (what the transport makes of
     * a refused access is its business). */
    const struct virtio_device_ops *ops = transport->ops;
    CHECK(ops->config_read(disk, 56, 4, &value), "config read of the last word refused");
    CHECK(!ops->config_read(disk, 60, 1, &value), "config read past the struct accepted");
    CHECK(!ops->config_read(disk, 58, 4, &value), "config read straddling the end accepted");
    CHECK(!ops->config_read(disk, 0, 3, &value), "3-byte config read accepted");
}

/* ---- requests ------------------------------------------------------------ */

static void test_write_then_read(struct virtio_blk *disk, struct test_queue *queue, const char *image)
{
    struct virtio_mmio *transport = &disk->transport;
    /* Write two sectors at sector 3 from two unequal buffers. */
    uint8_t *data = test_guest_pointer(machine, ram(DATA_AREA));
    for (unsigned i = 0; i < 2 * SECTOR; i++)
        data[i] = (uint8_t)(0xa5 ^ (i * 13));
    struct test_buffer out[2] = {
        { ram(DATA_AREA), 700, false },
        { ram(DATA_AREA + 700), 2 * SECTOR - 700, false },
    };
    uint16_t head = add_request(queue, 0, T_OUT, 3, out, 2);
    test_queue_kick(transport, queue);
    expect_used(queue, head, 1, "write");
    CHECK(status_of(0) == S_OK, "write status %u", status_of(0));
    uint8_t on_disk[2 * SECTOR];
    read_image(image, 3 * SECTOR, on_disk, sizeof on_disk);
    CHECK(memcmp(on_disk, data, sizeof on_disk) == 0, "written data differs on disk");
    CHECK(test_mmio_read(transport, VIRTIO_MMIO_INTERRUPT_STATUS) & 1, "no used-buffer interrupt");
    test_mmio_write(transport, VIRTIO_MMIO_INTERRUPT_ACK, 1);

    /* Read sectors 2..4 back into three writable buffers. */
    uint8_t *in = test_guest_pointer(machine, ram(DATA_AREA + 0x10000));
    memset(in, 0, 3 * SECTOR);
    struct test_buffer in_buffers[3] = {
        { ram(DATA_AREA + 0x10000), 100, true },
        { ram(DATA_AREA + 0x10000 + 100), 1000, true },
        { ram(DATA_AREA + 0x10000 + 1100), 3 * SECTOR - 1100, true },
    };
    head = add_request(queue, 1, T_IN, 2, in_buffers, 3);
    test_queue_kick(transport, queue);
    expect_used(queue, head, 3 * SECTOR + 1, "read");
    CHECK(status_of(1) == S_OK, "read status %u", status_of(1));
    uint8_t expected[3 * SECTOR];
    read_image(image, 2 * SECTOR, expected, sizeof expected);
    CHECK(memcmp(in, expected, sizeof expected) == 0, "read data differs from the image");
    CHECK(memcmp(in + SECTOR, data, 2 * SECTOR) == 0, "read does not return what was written");
    CHECK(disk->read_requests == 1 && disk->write_requests == 1, "request counters %llu/%llu",
          (unsigned long long)disk->read_requests, (unsigned long long)disk->write_requests);

    /* Last sector of the disk: in range. */
    struct test_buffer last = { ram(DATA_AREA), SECTOR, true };
    head = add_request(queue, 2, T_IN, IMAGE_SECTORS - 1, &last, 1);
    test_queue_kick(transport, queue);
    expect_used(queue, head, SECTOR + 1, "read of the last sector");
    CHECK(status_of(2) == S_OK, "read of the last sector: status %u", status_of(2));
}

static void test_flush_and_get_id(struct virtio_blk *disk, struct test_queue *queue)
{
    struct virtio_mmio *transport = &disk->transport;
    uint16_t head = add_request(queue, 0, T_FLUSH, 0, NULL, 0);
    test_queue_kick(transport, queue);
    expect_used(queue, head, 1, "flush");
    CHECK(status_of(0) == S_OK, "flush status %u", status_of(0));
    CHECK(disk->flush_requests == 1, "flush not counted");

    uint8_t *id = test_guest_pointer(machine, ram(DATA_AREA));
    memset(id, 0xff, 20);
    struct test_buffer id_buffer = { ram(DATA_AREA), 20, true };
    head = add_request(queue, 1, T_GET_ID, 0, &id_buffer, 1);
    test_queue_kick(transport, queue);
    expect_used(queue, head, 21, "get-id");
    CHECK(status_of(1) == S_OK, "get-id status %u", status_of(1));
    static const char expected[20] = "colo-vblk-test.img"; /* zero-padded */
    CHECK(memcmp(id, expected, 20) == 0, "id is '%.20s'", (const char *)id);
}

static void test_bad_requests(struct virtio_blk *disk, struct test_queue *queue, const char *image)
{
    struct virtio_mmio *transport = &disk->transport;
    uint64_t failed_before = disk->failed_requests;
    uint8_t before[IMAGE_SECTORS * SECTOR], after[IMAGE_SECTORS * SECTOR];
    read_image(image, 0, before, sizeof before);

    /* Several requests, one notification: served in order, all answered. */
    struct test_buffer two_sectors = { ram(DATA_AREA), 2 * SECTOR, true };
    struct test_buffer out_sector = { ram(DATA_AREA), SECTOR, false };
    struct test_buffer odd_length = { ram(DATA_AREA), 100, true };
    uint16_t heads[7];
    heads[0] = add_request(queue, 0, T_IN, IMAGE_SECTORS - 1, &two_sectors, 1); /* crosses the end */
    heads[1] = add_request(queue, 1, T_OUT, IMAGE_SECTORS, &out_sector, 1);     /* starts at the end */
    heads[2] = add_request(queue, 2, T_IN, UINT64_MAX, &two_sectors, 1);        /* overflows */
    heads[3] = add_request(queue, 3, T_IN, 0, &odd_length, 1);                  /* not whole sectors */
    heads[4] = add_request(queue, 4, 5, 0, NULL, 0);                            /* unknown type */
    /* A header of 8 bytes: too short to be a request. */
    write_header(5, T_IN, 0);
    struct test_buffer short_header[2] = {
        { header_address(5), 8, false },
        { status_address(5), 1, true },
    };
    heads[5] = test_queue_add(machine, queue, short_header, 2);
    /* A request that follows the bad ones is still served. */
    heads[6] = add_request(queue, 6, T_FLUSH, 0, NULL, 0);
    test_queue_kick(transport, queue);

    expect_used(queue, heads[0], 1, "read across the end");
    CHECK(status_of(0) == S_IOERR, "read across the end: status %u", status_of(0));
    expect_used(queue, heads[1], 1, "write at the end");
    CHECK(status_of(1) == S_IOERR, "write at the end: status %u", status_of(1));
    expect_used(queue, heads[2], 1, "read at sector 2^64-1");
    CHECK(status_of(2) == S_IOERR, "read at sector 2^64-1: status %u", status_of(2));
    expect_used(queue, heads[3], 1, "read of 100 bytes");
    CHECK(status_of(3) == S_IOERR, "read of 100 bytes: status %u", status_of(3));
    expect_used(queue, heads[4], 1, "unknown type");
    CHECK(status_of(4) == S_UNSUPP, "unknown type: status %u", status_of(4));
    expect_used(queue, heads[5], 1, "short header");
    CHECK(status_of(5) == S_IOERR, "short header: status %u", status_of(5));
    expect_used(queue, heads[6], 1, "flush after bad requests");
    CHECK(status_of(6) == S_OK, "flush after bad requests: status %u", status_of(6));
    expect_no_used(queue, "after the batch");
    CHECK(disk->failed_requests == failed_before + 6, "failed_requests grew by %llu, expected 6",
          (unsigned long long)(disk->failed_requests - failed_before));

    read_image(image, 0, after, sizeof after);
    CHECK(memcmp(before, after, sizeof before) == 0, "a failed request changed the image");

    /* No writable byte at all: the chain comes back with nothing written. */
    write_header(7, T_IN, 0);
    struct test_buffer no_status = { header_address(7), 16, false };
    uint16_t head = test_queue_add(machine, queue, &no_status, 1);
    test_queue_kick(transport, queue);
    expect_used(queue, head, 0, "request without a status byte");
}

static void test_dirty_log(struct virtio_blk *disk, struct test_queue *queue)
{
    size_t words = guest_ram_bitmap_words(&machine->ram);
    uint64_t *bitmap = calloc(words, sizeof *bitmap);
    machine_dirty_log_enable(machine, true);
    machine_dirty_log_read_and_clear(machine, bitmap);

    /* A write request reads guest memory only: its data page stays clean. */
    struct test_buffer out = { ram(DIRTY_DATA_AREA + 0x10000), SECTOR, false };
    uint16_t head = add_request(queue, 0, T_OUT, 0, &out, 1);
    test_queue_kick(&disk->transport, queue);
    expect_used(queue, head, 1, "write (dirty log)");
    /* A read of 16 sectors into two pages, starting mid-page: three pages. */
    struct test_buffer in = { ram(DIRTY_DATA_AREA + 0x800), 16 * SECTOR, true };
    head = add_request(queue, 1, T_IN, 0, &in, 1);
    test_queue_kick(&disk->transport, queue);
    expect_used(queue, head, 16 * SECTOR + 1, "read (dirty log)");

    memset(bitmap, 0, words * sizeof *bitmap);
    machine_dirty_log_read_and_clear(machine, bitmap);
    machine_dirty_log_enable(machine, false);
#define PAGE_DIRTY(offset) ((bitmap[((offset) >> GUEST_PAGE_SHIFT) / 64] >> (((offset) >> GUEST_PAGE_SHIFT) % 64)) & 1)
    for (uint64_t page = 0; page < 3; page++)
        CHECK(PAGE_DIRTY(DIRTY_DATA_AREA + page * GUEST_PAGE_SIZE), "read data page %llu not in the dirty log",
              (unsigned long long)page);
    CHECK(!PAGE_DIRTY(DIRTY_DATA_AREA + 3 * GUEST_PAGE_SIZE), "page after the read data is dirty");
    CHECK(!PAGE_DIRTY(DIRTY_DATA_AREA + 0x10000), "write request's data page is dirty");
    CHECK(PAGE_DIRTY(STATUS_AREA), "status page not in the dirty log");
    CHECK(PAGE_DIRTY(QUEUE_AREA + 0x2000), "used ring page not in the dirty log");
    CHECK(!PAGE_DIRTY(QUEUE_AREA), "descriptor page dirty (the device only reads it)");
    CHECK(!PAGE_DIRTY(HEADER_AREA), "header page dirty (the device only reads it)");
#undef PAGE_DIRTY
    free(bitmap);
}

/* ---- read-only disks, image checks, save/load ------------------------- */

static void test_read_only(const char *image)
{
    static struct virtio_blk disk;
    struct error err;
    if (init_disk(&disk, 1, image, true, &err) < 0) {
        CHECK(0, "read-only init: %s", err.message);
        return;
    }
    CHECK(test_device_features(&disk.transport) & VIRTIO_BLK_F_RO, "RO not offered on a read-only disk");
    struct test_queue queue;
    set_up_driver(&disk, &queue, ram(QUEUE_AREA + 0x8000));

    uint8_t before[SECTOR], after[SECTOR];
    read_image(image, 0, before, sizeof before);
    memset(test_guest_pointer(machine, ram(DATA_AREA)), 0x5a, SECTOR);
    struct test_buffer out = { ram(DATA_AREA), SECTOR, false };
    uint16_t head = add_request(&queue, 0, T_OUT, 0, &out, 1);
    test_queue_kick(&disk.transport, &queue);
    expect_used(&queue, head, 1, "write to a read-only disk");
    CHECK(status_of(0) == S_IOERR, "write to a read-only disk: status %u", status_of(0));
    read_image(image, 0, after, sizeof after);
    CHECK(memcmp(before, after, sizeof before) == 0, "a read-only disk was written");
    CHECK(disk.failed_requests == 1, "refused write not counted");

    struct test_buffer in = { ram(DATA_AREA), SECTOR, true };
    head = add_request(&queue, 1, T_IN, 0, &in, 1);
    test_queue_kick(&disk.transport, &queue);
    expect_used(&queue, head, SECTOR + 1, "read from a read-only disk");
    CHECK(status_of(1) == S_OK, "read from a read-only disk: status %u", status_of(1));
    CHECK(memcmp(test_guest_pointer(machine, ram(DATA_AREA)), before, SECTOR) == 0,
          "read from a read-only disk returned wrong data");
    virtio_blk_destroy(&disk);
}

static void test_init_errors(void)
{
    static struct virtio_blk disk;
    struct error err;
    int free_fd = lowest_free_fd();
    const char *empty = path_in_directory("empty.img");
    make_image(empty, 0);
    CHECK(init_disk(&disk, 2, empty, false, &err) < 0, "empty image accepted");
    CHECK(strstr(err.message, empty) != NULL, "error does not name the image: %s", err.message);
    const char *odd = path_in_directory("odd.img");
    make_image(odd, 1000);
    CHECK(init_disk(&disk, 2, odd, false, &err) < 0, "1000-byte image accepted");
    CHECK(strstr(err.message, odd) != NULL, "error does not name the image: %s", err.message);
    const char *missing = path_in_directory("missing.img");
    CHECK(init_disk(&disk, 2, missing, false, &err) < 0, "missing image accepted");
    CHECK(strstr(err.message, missing) != NULL, "error does not name the image: %s", err.message);
    CHECK(lowest_free_fd() == free_fd && disk.backend == NULL, "a failed init left an open fd");
}

static void test_save_load(struct virtio_blk *disk, struct test_queue *queue, const char *image)
{
    struct state_writer writer;
    state_writer_init(&writer);
    virtio_blk_save(disk, &writer);
    CHECK(!writer.out_of_memory, "save ran out of memory");

    /* Back into the same device: accepted, queues keep working. */
    struct state_reader reader;
    state_reader_init(&reader, writer.data, writer.length);
    virtio_blk_load(disk, &reader);
    CHECK(!reader.failed, "load into the same disk failed: %s", reader.error);
    CHECK(reader.position == reader.length, "load left %zu bytes", reader.length - reader.position);
    struct test_buffer in = { ram(DATA_AREA), SECTOR, true };
    uint16_t head = add_request(queue, 0, T_IN, 1, &in, 1);
    test_queue_kick(&disk->transport, queue);
    expect_used(queue, head, SECTOR + 1, "read after load");
    CHECK(status_of(0) == S_OK, "read after load: status %u", status_of(0));

    /* Into a disk of another size: refused, device unchanged. */
    static struct virtio_blk other;
    struct error err;
    const char *bigger = path_in_directory("bigger.img");
    make_image(bigger, 2 * IMAGE_SECTORS * SECTOR);
    if (init_disk(&other, 3, bigger, false, &err) < 0) {
        CHECK(0, "init of a second disk: %s", err.message);
    } else {
        struct virtio_mmio_state state_before = other.transport.state;
        state_reader_init(&reader, writer.data, writer.length);
        virtio_blk_load(&other, &reader);
        CHECK(reader.failed, "load into a disk of another size accepted");
        CHECK(strstr(reader.error, "sectors") != NULL, "unclear error: %s", reader.error);
        CHECK(memcmp(&state_before, &other.transport.state, sizeof state_before) == 0,
              "a refused load changed the transport");
        virtio_blk_destroy(&other);
    }

    /* Into the same image opened read-only: refused (F_RO was negotiated
     * differently). */
    if (init_disk(&other, 3, image, true, &err) < 0) {
        CHECK(0, "init of a read-only twin: %s", err.message);
    } else {
        state_reader_init(&reader, writer.data, writer.length);
        virtio_blk_load(&other, &reader);
        CHECK(reader.failed, "load of a read-write disk into a read-only one accepted");
        virtio_blk_destroy(&other);
    }

    /* Truncated state: refused. */
    state_reader_init(&reader, writer.data, writer.length - 1);
    virtio_blk_load(disk, &reader);
    CHECK(reader.failed, "truncated state accepted");
    state_writer_free(&writer);
}

int main(void)
{
    snprintf(directory, sizeof directory, "/tmp/virtio_blk_test.XXXXXX");
    if (!mkdtemp(directory)) {
        printf("FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    machine = test_machine_create(&(struct test_machine_options){ .ram_size = 16ull << 20 });
    struct error err;

    const char *image = path_in_directory("vblk-test.img");
    make_image(image, IMAGE_SECTORS * SECTOR);
    static struct virtio_blk disk;
    if (init_disk(&disk, 0, image, false, &err) < 0) {
        printf("FAIL: virtio_blk_init: %s\n", err.message);
        return 1;
    }
    test_registers_and_config(&disk);
    struct test_queue queue;
    set_up_driver(&disk, &queue, ram(QUEUE_AREA));
    test_write_then_read(&disk, &queue, image);
    test_flush_and_get_id(&disk, &queue);
    test_bad_requests(&disk, &queue, image);
    test_dirty_log(&disk, &queue);
    test_read_only(image);
    test_init_errors();
    test_save_load(&disk, &queue, image);
    int image_fd = block_file_of(disk.backend)->fd;
    virtio_blk_destroy(&disk);
    CHECK(fcntl(image_fd, F_GETFD) < 0 && disk.backend == NULL, "destroy left the fd open");
    test_machine_destroy(machine);

    const char *names[] = { "vblk-test.img", "empty.img", "odd.img", "bigger.img" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(path_in_directory(names[i]));
    rmdir(directory);
    if (test_check_failures) {
        printf("%d check(s) failed\n", test_check_failures);
        return 1;
    }
    printf("virtio_blk_test: all checks passed\n");
    return 0;
}
