/* The stream reader: the header, then one checked record at a time.
 *
 * Reads are unbuffered on purpose: the reader takes exactly the bytes of
 * the header and of each record from the file descriptor and never a byte
 * more, so whatever follows a stream's END (or a checkpoint's
 * CHECKPOINT_END) on a connection stays there for its next reader. Records
 * are large (a PAGE_DATA is up to 4 MiB), so this costs two read calls per
 * record at least, which is nothing next to the data. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"
#include "machine.h"
#include "stream.h"
#include "stream_internal.h"

const char *stream_record_type_name(uint32_t type)
{
    switch (type) {
    case STREAM_RECORD_PAGE_DATA:
        return "PAGE_DATA";
    case STREAM_RECORD_PAGE_ZERO:
        return "PAGE_ZERO";
    case STREAM_RECORD_OUTPUT:
        return "OUTPUT";
    case STREAM_RECORD_DISK_WRITE:
        return "DISK_WRITE";
    case STREAM_RECORD_DISK_HASHES:
        return "DISK_HASHES";
    case STREAM_RECORD_MACHINE:
        return "MACHINE";
    case STREAM_RECORD_REFUSAL:
        return "REFUSAL";
    case STREAM_RECORD_DISK_HISTORY:
        return "DISK_HISTORY";
    case STREAM_RECORD_TCP_SHIFT:
        return "TCP_SHIFT";
    case STREAM_RECORD_MIRRORED:
        return "MIRRORED";
    case STREAM_RECORD_HART_STATE:
        return "HART_STATE";
    case STREAM_RECORD_DEVICE_STATE:
        return "DEVICE_STATE";
    case STREAM_RECORD_CHECKPOINT_STATE:
        return "CHECKPOINT_STATE";
    case STREAM_RECORD_CHECKPOINT_END:
        return "CHECKPOINT_END";
    case STREAM_RECORD_END:
        return "END";
    default:
        return NULL;
    }
}

int stream_reader_init(struct stream_reader *reader, int fd, struct error *err)
{
    memset(reader, 0, sizeof *reader);
    reader->fd = fd;
    reader->disk_count = MACHINE_MAX_DISKS;
    /* The largest body with its padding. Allocated once: malloc maps this
     * lazily, so the memory a stream of small records touches stays small. */
    reader->buffer = malloc(stream_padded_length(STREAM_MAX_RECORD_LENGTH));
    if (!reader->buffer)
        return error_set(err, "out of memory for the stream reader's buffer");
    return 0;
}

void stream_reader_destroy(struct stream_reader *reader)
{
    free(reader->buffer);
    reader->buffer = NULL;
    stream_page_staging_free(reader->staging);
    reader->staging = NULL;
    free(reader->output.data);
    reader->output = (struct stream_staged_records){ 0 };
    free(reader->disk_writes.data);
    reader->disk_writes = (struct stream_staged_records){ 0 };
    free(reader->tcp_shifts.data);
    reader->tcp_shifts = (struct stream_staged_records){ 0 };
}

/* Reads up to length bytes, stopping early only at end of file. *got says
 * how many arrived. Returns -1 with errno on a read error. */
static int read_fully(int fd, uint8_t *data, size_t length, size_t *got)
{
    *got = 0;
    while (*got < length) {
        ssize_t n = read(fd, data + *got, length - *got);
        if (n > 0) {
            *got += (size_t)n;
        } else if (n == 0) {
            return 0;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* a non-blocking descriptor with nothing yet: wait for more */
            struct pollfd poll_fd = { .fd = fd, .events = POLLIN };
            while (poll(&poll_fd, 1, -1) < 0 && errno == EINTR) {
            }
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

/* Describes a size as "256 MiB" when it is whole MiB, else in bytes. */
static const char *describe_size(uint64_t bytes, char *text, size_t text_size)
{
    if (bytes % (1u << 20) == 0)
        snprintf(text, text_size, "%llu MiB", (unsigned long long)(bytes >> 20));
    else
        snprintf(text, text_size, "%llu bytes", (unsigned long long)bytes);
    return text;
}

int stream_read_header(struct stream_reader *reader, const struct stream_header *expected, struct error *err)
{
    /* expected->version is not consulted: the reader accepts the versions
     * it can read, which is STREAM_VERSION. */
    uint8_t header[STREAM_HEADER_LENGTH];
    size_t got;
    if (read_fully(reader->fd, header, sizeof header, &got) < 0)
        return error_set_errno(err, "cannot read the stream header");
    reader->bytes_read += got;
    if (got == 0)
        return error_set(err, "the stream is empty (no header)");
    if (memcmp(header, STREAM_MAGIC, got < 8 ? got : 8) != 0)
        return error_set(err, "not a colo stream (it does not start with \"%s\")", STREAM_MAGIC);
    if (got < sizeof header)
        return error_set(err, "the stream ends inside its header (%zu of %u bytes)", got, STREAM_HEADER_LENGTH);
    uint32_t version = stream_get_u32(header + 8);
    uint32_t header_length = stream_get_u32(header + 12);
    uint64_t ram_size = stream_get_u64(header + 16);
    uint64_t configuration_hash = stream_get_u64(header + 24);
    if (version != STREAM_VERSION)
        return error_set(err, "stream version %u is not supported (this reader reads version %u)", version,
                         STREAM_VERSION);
    if (header_length != STREAM_HEADER_LENGTH)
        return error_set(err, "stream header length is %u, version %u headers are %u bytes", header_length,
                         STREAM_VERSION, STREAM_HEADER_LENGTH);
    if (expected->ram_size != 0 && ram_size != expected->ram_size) {
        char theirs[40], ours[40];
        return error_set(err, "stream is for a machine with %s of RAM, this one has %s",
                         describe_size(ram_size, theirs, sizeof theirs),
                         describe_size(expected->ram_size, ours, sizeof ours));
    }
    if (expected->configuration_hash != 0 && configuration_hash != expected->configuration_hash)
        return error_set(err, "stream was made for another machine configuration (devices or MACs differ)");
    reader->ram_size = ram_size;
    reader->configuration_hash = configuration_hash;
    return 0;
}

/* Counts a rejected record and sets "record N (TYPE): <what>". */
__attribute__((format(printf, 5, 6))) static int
reject(struct stream_reader *reader, uint64_t number, const char *type_name, struct error *err, const char *format, ...)
{
    char what[400];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(what, sizeof what, format, arguments);
    va_end(arguments);
    reader->rejected_records++;
    return error_set(err, "record %llu (%s): %s", (unsigned long long)number, type_name, what);
}

/* The checks that need only the record header: is a body of this length
 * possible for this type? NULL if so, else what is wrong. */
static const char *length_problem(uint32_t type, uint32_t length)
{
    switch (type) {
    case STREAM_RECORD_PAGE_DATA:
        if (length < STREAM_PAGE_DATA_PREFIX + STREAM_BYTES_PER_PAGE ||
            (length - STREAM_PAGE_DATA_PREFIX) % STREAM_BYTES_PER_PAGE != 0)
            return "is not 8 + count * 4104 for a count of 1 to 1024 pages";
        return NULL;
    case STREAM_RECORD_PAGE_ZERO:
        if (length < STREAM_PAGE_DATA_PREFIX + 8 || (length - STREAM_PAGE_DATA_PREFIX) % 8 != 0 ||
            length > STREAM_PAGE_DATA_PREFIX + 8 * STREAM_MAX_PAGES_PER_RECORD)
            return "is not 8 + count * 8 for a count of 1 to 1024 pages";
        return NULL;
    case STREAM_RECORD_OUTPUT:
        if (length <= STREAM_OUTPUT_PREFIX || length > STREAM_OUTPUT_PREFIX + STREAM_MAX_OUTPUT_FRAME)
            return "is not 20 + a frame of 1 to 65664 bytes";
        return NULL;
    case STREAM_RECORD_DISK_WRITE:
        if (length < STREAM_DISK_WRITE_PREFIX + STREAM_DISK_SECTOR_SIZE ||
            length > STREAM_DISK_WRITE_PREFIX + STREAM_MAX_DISK_WRITE ||
            (length - STREAM_DISK_WRITE_PREFIX) % STREAM_DISK_SECTOR_SIZE != 0)
            return "is not 16 + 512 * count bytes of data for a count of 1 to 2048 sectors";
        return NULL;
    case STREAM_RECORD_DISK_HASHES:
        if (length < STREAM_DISK_HASHES_PREFIX + STREAM_DISK_HASH_SIZE ||
            (length - STREAM_DISK_HASHES_PREFIX) % STREAM_DISK_HASH_SIZE != 0)
            return "is not 24 + 16 * count bytes for a count of at least 1";
        return NULL;
    case STREAM_RECORD_MACHINE:
        return length != STREAM_MACHINE_LENGTH ? "is not 120" : NULL;
    case STREAM_RECORD_REFUSAL:
        return length == 0 || length > STREAM_MAX_REFUSAL ? "is not 1 to 1024 bytes of text" : NULL;
    case STREAM_RECORD_DISK_HISTORY:
        return length != STREAM_DISK_HISTORY_LENGTH ? "is not 40" : NULL;
    case STREAM_RECORD_TCP_SHIFT:
        if (length < STREAM_TCP_SHIFT_PREFIX ||
            (length - STREAM_TCP_SHIFT_PREFIX) % STREAM_TCP_SHIFT_ENTRY_LENGTH != 0 ||
            length > STREAM_TCP_SHIFT_PREFIX + STREAM_TCP_SHIFT_ENTRY_LENGTH * STREAM_MAX_TCP_SHIFT_ENTRIES)
            return "is not 8 + count * 68 for a count of 0 to 4096 connections";
        return NULL;
    case STREAM_RECORD_MIRRORED:
        return length != STREAM_MIRRORED_LENGTH ? "is not 8" : NULL;
    case STREAM_RECORD_HART_STATE:
        return length < STREAM_SECTION_HEADER_LENGTH ? "is shorter than a section header (12)" : NULL;
    case STREAM_RECORD_DEVICE_STATE:
        return length < 8 ? "is shorter than a device id and version (8)" : NULL;
    case STREAM_RECORD_CHECKPOINT_STATE:
        return length != 4 ? "is not 4" : NULL;
    default:
        return length != 0 ? "is not 0" : NULL;
    }
}

int stream_read_record(struct stream_reader *reader, struct stream_record *record, struct error *err)
{
    uint64_t number = reader->records_read + reader->rejected_records + 1;
    uint8_t header[STREAM_RECORD_HEADER_LENGTH];
    size_t got;
    if (read_fully(reader->fd, header, sizeof header, &got) < 0)
        return error_set_errno(err, "record %llu: cannot read the stream", (unsigned long long)number);
    reader->bytes_read += got;
    if (got == 0)
        return 0;
    if (got < sizeof header) {
        reader->rejected_records++;
        return error_set(err, "record %llu: the stream ends inside the record header (%zu of %u bytes)",
                         (unsigned long long)number, got, STREAM_RECORD_HEADER_LENGTH);
    }

    uint32_t type = stream_get_u32(header);
    uint32_t length = stream_get_u32(header + 4);
    uint32_t stored_crc = stream_get_u32(header + 8);
    uint32_t reserved = stream_get_u32(header + 12);
    const char *name = stream_record_type_name(type);
    if (!name) {
        char unknown[32];
        snprintf(unknown, sizeof unknown, "type %u", type);
        return reject(reader, number, unknown, err, "unknown record type");
    }
    if (length > STREAM_MAX_RECORD_LENGTH)
        return reject(reader, number, name, err, "length %u is above the maximum %u", length, STREAM_MAX_RECORD_LENGTH);
    const char *problem = length_problem(type, length);
    if (problem)
        return reject(reader, number, name, err, "length %u %s", length, problem);
    if (reserved != 0)
        return reject(reader, number, name, err, "reserved header field is 0x%08x, not zero", reserved);

    size_t padded = stream_padded_length(length);
    uint8_t *body = reader->buffer;
    if (read_fully(reader->fd, body, padded, &got) < 0)
        return error_set_errno(err, "record %llu (%s): cannot read the stream", (unsigned long long)number, name);
    reader->bytes_read += got;
    if (got < padded)
        return reject(reader, number, name, err,
                      "the stream ends inside the record (%zu of %zu body and padding bytes)", got, padded);

    uint32_t crc = crc32c_extend(crc32c(header, 8), body, length);
    if (crc != stored_crc)
        return reject(reader, number, name, err, "CRC mismatch (record has 0x%08x, contents give 0x%08x)", stored_crc,
                      crc);
    for (size_t i = length; i < padded; i++)
        if (body[i] != 0)
            return reject(reader, number, name, err, "padding byte %zu is 0x%02x, not zero", i - length, body[i]);

    /* The body: right shape for its type. */
    uint32_t page_count = 0;
    if (type == STREAM_RECORD_PAGE_DATA || type == STREAM_RECORD_PAGE_ZERO) {
        page_count = stream_get_u32(body);
        uint32_t bytes_per_page = type == STREAM_RECORD_PAGE_DATA ? STREAM_BYTES_PER_PAGE : 8;
        uint32_t pages_in_length = (length - STREAM_PAGE_DATA_PREFIX) / bytes_per_page;
        if (page_count != pages_in_length)
            return reject(reader, number, name, err, "page count %u does not match the length %u (%u pages)",
                          page_count, length, pages_in_length);
        if (stream_get_u32(body + 4) != 0)
            return reject(reader, number, name, err, "the field after the page count is 0x%08x, not zero",
                          stream_get_u32(body + 4));
        uint64_t ram_pages = reader->ram_size / STREAM_PAGE_SIZE;
        for (uint32_t i = 0; i < page_count; i++) {
            uint64_t page = stream_get_u64(body + STREAM_PAGE_DATA_PREFIX + 8 * (size_t)i);
            if (page >= ram_pages)
                return reject(reader, number, name, err, "page index %llu is outside RAM (%llu pages)",
                              (unsigned long long)page, (unsigned long long)ram_pages);
        }
    } else if (type == STREAM_RECORD_OUTPUT) {
        if (stream_get_u32(body + 4) != 0)
            return reject(reader, number, name, err, "the field after the NIC is 0x%08x, not zero",
                          stream_get_u32(body + 4));
    } else if (type == STREAM_RECORD_TCP_SHIFT) {
        uint32_t count = stream_get_u32(body);
        if (count != (length - STREAM_TCP_SHIFT_PREFIX) / STREAM_TCP_SHIFT_ENTRY_LENGTH)
            return reject(reader, number, name, err, "connection count %u does not match the length %u", count, length);
        if (stream_get_u32(body + 4) != 0)
            return reject(reader, number, name, err, "the field after the count is 0x%08x, not zero",
                          stream_get_u32(body + 4));
        for (uint32_t i = 0; i < count; i++) {
            struct stream_tcp_shift_entry entry;
            stream_tcp_shift_entry_fields(body + STREAM_TCP_SHIFT_PREFIX + (size_t)i * STREAM_TCP_SHIFT_ENTRY_LENGTH,
                                          &entry);
            if (entry.flags & ~(STREAM_TCP_SHIFT_OFFSET_KNOWN | STREAM_TCP_SHIFT_SYN_TIMESTAMP))
                return reject(reader, number, name, err, "connection %u has unknown flags 0x%08x", i, entry.flags);
        }
    } else if (type == STREAM_RECORD_DISK_WRITE) {
        uint32_t disk = stream_get_u32(body);
        uint64_t offset = stream_get_u64(body + 8);
        uint32_t data_length = length - STREAM_DISK_WRITE_PREFIX;
        if (stream_get_u32(body + 4) != 0)
            return reject(reader, number, name, err, "the field after the disk is 0x%08x, not zero",
                          stream_get_u32(body + 4));
        if (offset % STREAM_DISK_SECTOR_SIZE != 0)
            return reject(reader, number, name, err, "offset %llu is not a multiple of %u", (unsigned long long)offset,
                          STREAM_DISK_SECTOR_SIZE);
        if (offset > UINT64_MAX - data_length)
            return reject(reader, number, name, err, "offset %llu + %u bytes wraps around", (unsigned long long)offset,
                          data_length);
        if (disk >= reader->disk_count)
            return reject(reader, number, name, err, "disk %u is outside the machine's %u disks", disk,
                          reader->disk_count);
    } else if (type == STREAM_RECORD_DISK_HASHES) {
        uint32_t disk = stream_get_u32(body);
        uint32_t chunk_size = stream_get_u32(body + 4);
        if (disk >= reader->disk_count)
            return reject(reader, number, name, err, "disk %u is outside the machine's %u disks", disk,
                          reader->disk_count);
        if (chunk_size < 4096 || chunk_size > STREAM_MAX_DISK_WRITE || (chunk_size & (chunk_size - 1)) != 0)
            return reject(reader, number, name, err, "chunk size %u is not a power of two from 4096 to %u", chunk_size,
                          STREAM_MAX_DISK_WRITE);
    } else if (type == STREAM_RECORD_MACHINE) {
        uint32_t disks = stream_get_u32(body + 12), nics = stream_get_u32(body + 16);
        if (disks > MACHINE_MAX_DISKS || nics > MACHINE_MAX_NICS)
            return reject(reader, number, name, err, "%u disks and %u NICs, more than a machine has (%u, %u)", disks,
                          nics, MACHINE_MAX_DISKS, MACHINE_MAX_NICS);
        if (stream_get_u32(body + 20) > 1)
            return reject(reader, number, name, err, "flags 0x%08x has unknown bits", stream_get_u32(body + 20));
        for (uint32_t i = 0; i < MACHINE_MAX_DISKS; i++) {
            uint32_t read_only = stream_get_u32(body + 32 + 16 * i), zero = stream_get_u32(body + 36 + 16 * i);
            if (read_only > 1 || zero != 0 || (i >= disks && (stream_get_u64(body + 24 + 16 * i) || read_only)))
                return reject(reader, number, name, err, "disk slot %u is not a size, 0 or 1, and 0", i);
        }
        for (uint32_t i = 0; i < MACHINE_MAX_NICS; i++) {
            static const uint8_t zero[8];
            const uint8_t *slot = body + 88 + 8 * i;
            if (memcmp(slot + 6, zero, 2) != 0 || (i >= nics && memcmp(slot, zero, 6) != 0))
                return reject(reader, number, name, err, "NIC slot %u is not a MAC and 2 zero bytes", i);
        }
    } else if (type == STREAM_RECORD_DISK_HISTORY) {
        uint32_t disk = stream_get_u32(body), flags = stream_get_u32(body + 4);
        if (disk >= reader->disk_count)
            return reject(reader, number, name, err, "disk %u is outside the machine's %u disks", disk,
                          reader->disk_count);
        if (flags > 1)
            return reject(reader, number, name, err, "flags 0x%08x has unknown bits", flags);
    } else if (type == STREAM_RECORD_REFUSAL) {
        if (memchr(body, 0, length))
            return reject(reader, number, name, err, "the text has a NUL byte");
    } else if (type == STREAM_RECORD_HART_STATE) {
        uint32_t section_id = stream_get_u32(body);
        uint32_t section_length = stream_get_u32(body + 8);
        if (section_id != STREAM_HART_SECTION_ID)
            return reject(reader, number, name, err, "section id 0x%08x is not HART (0x%08x)", section_id,
                          STREAM_HART_SECTION_ID);
        if (section_length != length - STREAM_SECTION_HEADER_LENGTH)
            return reject(reader, number, name, err,
                          "section length %u does not match the record length %u (12 + section)", section_length,
                          length);
    }

    record->type = type;
    record->length = length;
    record->body = body;
    reader->records_read++;
    reader->pages_read += page_count;
    return 1;
}
