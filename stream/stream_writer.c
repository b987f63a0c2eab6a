/* The stream writer: builds records in a buffer and sends the buffer to the
 * file descriptor when the next record would not fit, or on stream_flush.
 *
 * A record is built in place: header, body, padding, then the CRC over the
 * finished bytes. Pages are copied out of guest RAM into the buffer before
 * the CRC is computed, so a guest that keeps running during a pre-copy
 * round can at worst make us send a torn page (which the dirty log sends
 * again in the next round), never a record whose CRC does not match. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crc32c.h"
#include "machine.h"
#include "stream.h"
#include "stream_internal.h"

/* Enough for every record except big PAGE_DATA ones; the buffer grows to
 * the largest record it has to hold (about 4 MiB). */
#define STREAM_WRITER_INITIAL_CAPACITY (256u * 1024u)

int stream_writer_init(struct stream_writer *writer, int fd, struct error *err)
{
    memset(writer, 0, sizeof *writer);
    writer->fd = fd;
    writer->buffer = malloc(STREAM_WRITER_INITIAL_CAPACITY);
    if (!writer->buffer)
        return error_set(err, "out of memory for the stream writer's buffer");
    writer->capacity = STREAM_WRITER_INITIAL_CAPACITY;
    return 0;
}

/* Does not flush: a writer destroyed after an error must not send more. */
void stream_writer_destroy(struct stream_writer *writer)
{
    free(writer->buffer);
    writer->buffer = NULL;
    writer->used = writer->capacity = 0;
}

/* Blocks until fd can take more bytes (it is non-blocking and full). */
static void wait_until_writable(int fd)
{
    struct pollfd poll_fd = { .fd = fd, .events = POLLOUT };
    while (poll(&poll_fd, 1, -1) < 0 && errno == EINTR) {
    }
}

int stream_flush(struct stream_writer *writer, struct error *err)
{
    size_t sent = 0;
    /* send() with MSG_NOSIGNAL, so a peer that went away is an EPIPE error
     * here rather than a SIGPIPE that kills the process; write() for
     * pipes and files, which send() refuses with ENOTSOCK. */
    bool is_socket = true;
    int result = 0;
    while (sent < writer->used) {
        size_t left = writer->used - sent;
        ssize_t written = is_socket ? send(writer->fd, writer->buffer + sent, left, MSG_NOSIGNAL)
                                    : write(writer->fd, writer->buffer + sent, left);
        if (written < 0) {
            if (errno == ENOTSOCK && is_socket) {
                is_socket = false;
            } else if (errno == EINTR) {
                /* interrupted before anything was written: try again */
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                wait_until_writable(writer->fd);
            } else {
                result = error_set_errno(err, "cannot write the stream (%zu bytes not sent)", left);
                break;
            }
            continue;
        }
        if (written == 0) {
            result = error_set(err, "cannot write the stream: the file descriptor takes no more bytes");
            break;
        }
        sent += (size_t)written;
        writer->bytes_written += (uint64_t)written;
    }
    /* Keep what was not sent, in order, and never send a byte twice. */
    memmove(writer->buffer, writer->buffer + sent, writer->used - sent);
    writer->used -= sent;
    return result;
}

/* Room for `length` more bytes at the end of the buffer: sends what is
 * buffered first when they do not fit, and grows the buffer when even an
 * empty one is too small. */
static uint8_t *reserve(struct stream_writer *writer, size_t length, struct error *err)
{
    if (writer->capacity - writer->used < length) {
        if (writer->used > 0 && stream_flush(writer, err) < 0)
            return NULL;
        if (writer->capacity - writer->used < length) {
            size_t capacity = writer->used + length;
            uint8_t *buffer = realloc(writer->buffer, capacity);
            if (!buffer) {
                error_set(err, "out of memory growing the stream writer's buffer to %zu bytes", capacity);
                return NULL;
            }
            writer->buffer = buffer;
            writer->capacity = capacity;
        }
    }
    return writer->buffer + writer->used;
}

/* Starts a record with a body of body_length bytes; the caller fills the
 * body at the returned record + STREAM_RECORD_HEADER_LENGTH, then calls
 * finish_record. */
static uint8_t *begin_record(struct stream_writer *writer, size_t body_length, struct error *err)
{
    if (body_length > STREAM_MAX_RECORD_LENGTH) {
        error_set(err, "a record body of %zu bytes is longer than the maximum %u", body_length,
                  STREAM_MAX_RECORD_LENGTH);
        return NULL;
    }
    return reserve(writer, STREAM_RECORD_HEADER_LENGTH + stream_padded_length(body_length), err);
}

static void finish_record(struct stream_writer *writer, uint8_t *record, uint32_t type, size_t body_length)
{
    size_t padded = stream_padded_length(body_length);
    stream_put_u32(record, type);
    stream_put_u32(record + 4, (uint32_t)body_length);
    stream_put_u32(record + 12, 0);
    memset(record + STREAM_RECORD_HEADER_LENGTH + body_length, 0, padded - body_length);
    /* The CRC covers type and length (the first 8 bytes) and the body. */
    uint32_t crc = crc32c(record, 8);
    crc = crc32c_extend(crc, record + STREAM_RECORD_HEADER_LENGTH, body_length);
    stream_put_u32(record + 8, crc);
    writer->used += STREAM_RECORD_HEADER_LENGTH + padded;
}

/* A record whose body is prefix followed by data (either may be empty). */
static int write_record(struct stream_writer *writer, uint32_t type, const void *prefix, size_t prefix_length,
                        const void *data, size_t data_length, struct error *err)
{
    size_t body_length = prefix_length + data_length;
    uint8_t *record = begin_record(writer, body_length, err);
    if (!record)
        return -1;
    uint8_t *body = record + STREAM_RECORD_HEADER_LENGTH;
    if (prefix_length)
        memcpy(body, prefix, prefix_length);
    if (data_length)
        memcpy(body + prefix_length, data, data_length);
    finish_record(writer, record, type, body_length);
    return 0;
}

int stream_write_header(struct stream_writer *writer, const struct stream_header *header, struct error *err)
{
    uint8_t *bytes = reserve(writer, STREAM_HEADER_LENGTH, err);
    if (!bytes)
        return -1;
    memcpy(bytes, STREAM_MAGIC, 8);
    /* Version 0 means "this implementation's version"; another value is
     * written as given (tests use it to make streams of other versions). */
    stream_put_u32(bytes + 8, header->version ? header->version : STREAM_VERSION);
    stream_put_u32(bytes + 12, STREAM_HEADER_LENGTH);
    stream_put_u64(bytes + 16, header->ram_size);
    stream_put_u64(bytes + 24, header->configuration_hash);
    writer->used += STREAM_HEADER_LENGTH;
    return 0;
}

/* One record of `count` pages: PAGE_DATA with their contents copied out
 * of the machine's RAM, or, when machine is NULL, PAGE_ZERO (the indices
 * only). */
static int write_page_record(struct stream_writer *writer, const struct machine *machine, const uint64_t *pages,
                             size_t count, struct error *err)
{
    uint32_t type = machine ? STREAM_RECORD_PAGE_DATA : STREAM_RECORD_PAGE_ZERO;
    size_t body_length = STREAM_PAGE_DATA_PREFIX + count * (machine ? STREAM_BYTES_PER_PAGE : 8);
    uint8_t *record = begin_record(writer, body_length, err);
    if (!record)
        return -1;
    uint8_t *body = record + STREAM_RECORD_HEADER_LENGTH;
    stream_put_u32(body, (uint32_t)count);
    stream_put_u32(body + 4, 0);
    uint8_t *indices = body + STREAM_PAGE_DATA_PREFIX;
    uint8_t *contents = indices + 8 * count;
    for (size_t i = 0; i < count; i++) {
        stream_put_u64(indices + 8 * i, pages[i]);
        if (machine)
            memcpy(contents + i * STREAM_PAGE_SIZE, machine_ram_page(machine, pages[i]), STREAM_PAGE_SIZE);
    }
    finish_record(writer, record, type, body_length);
    writer->pages_written += count;
    if (!machine)
        writer->zero_pages_written += count;
    return 0;
}

int stream_write_pages(struct stream_writer *writer, const struct machine *machine, const uint64_t *page_indices,
                       size_t count, struct error *err)
{
    uint64_t page_count = machine_ram_page_count(machine);
    /* Check every index before buffering anything, so a bad list leaves
     * no half-written run of records behind. */
    for (size_t i = 0; i < count; i++)
        if (page_indices[i] >= page_count)
            return error_set(err, "page index %llu is outside RAM (%llu pages)", (unsigned long long)page_indices[i],
                             (unsigned long long)page_count);
    /* Windows of at most a record's worth, split into zero and data pages.
     * A page of a running VM may change between the test and the copy;
     * the dirty log sends it again in the next round either way. */
    uint64_t zero[STREAM_MAX_PAGES_PER_RECORD], data[STREAM_MAX_PAGES_PER_RECORD];
    for (size_t done = 0; done < count;) {
        size_t window = count - done;
        if (window > STREAM_MAX_PAGES_PER_RECORD)
            window = STREAM_MAX_PAGES_PER_RECORD;
        size_t zero_count = 0, data_count = 0;
        for (size_t i = 0; i < window; i++) {
            uint64_t page = page_indices[done + i];
            if (guest_ram_page_is_zero(machine_ram_page(machine, page)))
                zero[zero_count++] = page;
            else
                data[data_count++] = page;
        }
        if (zero_count && write_page_record(writer, NULL, zero, zero_count, err) < 0)
            return -1;
        if (data_count && write_page_record(writer, machine, data, data_count, err) < 0)
            return -1;
        done += window;
    }
    return 0;
}

int stream_write_machine_state(struct stream_writer *writer, struct machine *machine, struct error *err)
{
    struct state_writer state;
    state_writer_init(&state);
    machine_save_state(machine, &state);
    int result = 0;
    if (state.out_of_memory) {
        result = error_set(err, "out of memory saving the machine state");
        goto done;
    }
    /* One record per section, in the order the machine wrote them. */
    for (size_t position = 0; position < state.length;) {
        const uint8_t *section = state.data + position;
        size_t left = state.length - position;
        if (left < STREAM_SECTION_HEADER_LENGTH || stream_get_u32(section + 8) > left - STREAM_SECTION_HEADER_LENGTH) {
            result = error_set(err, "the machine state is malformed at byte %zu", position);
            goto done;
        }
        uint32_t id = stream_get_u32(section);
        size_t body_length = stream_get_u32(section + 8);
        if (id == STREAM_HART_SECTION_ID) {
            /* The whole section, header included. */
            result = write_record(writer, STREAM_RECORD_HART_STATE, NULL, 0, section,
                                  STREAM_SECTION_HEADER_LENGTH + body_length, err);
        } else {
            /* id and version, then the section body without its length
             * (the record length implies it). */
            result = write_record(writer, STREAM_RECORD_DEVICE_STATE, section, 8,
                                  section + STREAM_SECTION_HEADER_LENGTH, body_length, err);
        }
        if (result < 0)
            goto done;
        position += STREAM_SECTION_HEADER_LENGTH + body_length;
    }
done:
    state_writer_free(&state);
    return result;
}

int stream_write_checkpoint_state(struct stream_writer *writer, uint32_t id, struct error *err)
{
    uint8_t body[4];
    stream_put_u32(body, id);
    return write_record(writer, STREAM_RECORD_CHECKPOINT_STATE, NULL, 0, body, sizeof body, err);
}

int stream_write_output(struct stream_writer *writer, uint32_t nic, const uint8_t header[12], const void *frame,
                        size_t length, struct error *err)
{
    if (length == 0 || length > STREAM_MAX_OUTPUT_FRAME)
        return error_set(err, "an output frame of %zu bytes cannot be sent (1 to %u)", length, STREAM_MAX_OUTPUT_FRAME);
    uint8_t prefix[STREAM_OUTPUT_PREFIX];
    stream_put_u32(prefix, nic);
    stream_put_u32(prefix + 4, 0);
    memcpy(prefix + 8, header, 12);
    return write_record(writer, STREAM_RECORD_OUTPUT, prefix, sizeof prefix, frame, length, err);
}

void stream_tcp_shift_entry_put(uint8_t *bytes, const struct stream_tcp_shift_entry *entry)
{
    memcpy(bytes, entry->key, STREAM_TCP_SHIFT_KEY_LENGTH);
    uint8_t *fields = bytes + STREAM_TCP_SHIFT_KEY_LENGTH;
    stream_put_u32(fields, entry->flags);
    stream_put_u32(fields + 4, entry->isn);
    stream_put_u32(fields + 8, entry->offset);
    stream_put_u32(fields + 12, entry->syn_timestamp);
    stream_put_u32(fields + 16, entry->timestamp_offset);
}

int stream_write_tcp_shift(struct stream_writer *writer, const uint8_t *entries, size_t count, struct error *err)
{
    if (count > STREAM_MAX_TCP_SHIFT_ENTRIES)
        return error_set(err, "a TCP shift of %zu connections cannot be sent (at most %u)", count,
                         STREAM_MAX_TCP_SHIFT_ENTRIES);
    uint8_t prefix[STREAM_TCP_SHIFT_PREFIX];
    stream_put_u32(prefix, (uint32_t)count);
    stream_put_u32(prefix + 4, 0);
    return write_record(writer, STREAM_RECORD_TCP_SHIFT, prefix, sizeof prefix, entries,
                        count * STREAM_TCP_SHIFT_ENTRY_LENGTH, err);
}

int stream_write_mirrored(struct stream_writer *writer, uint64_t frames, struct error *err)
{
    uint8_t body[STREAM_MIRRORED_LENGTH];
    stream_put_u64(body, frames);
    return write_record(writer, STREAM_RECORD_MIRRORED, body, sizeof body, NULL, 0, err);
}

int stream_write_disk_write(struct stream_writer *writer, uint32_t disk, uint64_t offset, const void *data,
                            size_t length, struct error *err)
{
    if (disk >= MACHINE_MAX_DISKS)
        return error_set(err, "disk %u cannot be written to the stream (a machine has at most %u disks)", disk,
                         MACHINE_MAX_DISKS);
    if (length == 0 || length % STREAM_DISK_SECTOR_SIZE != 0)
        return error_set(err, "a disk write of %zu bytes is not a whole number of %u-byte sectors", length,
                         STREAM_DISK_SECTOR_SIZE);
    if (offset % STREAM_DISK_SECTOR_SIZE != 0)
        return error_set(err, "a disk write at offset %llu does not start on a %u-byte sector",
                         (unsigned long long)offset, STREAM_DISK_SECTOR_SIZE);
    if (offset > UINT64_MAX - length)
        return error_set(err, "a disk write of %zu bytes at offset %llu runs past the end of any disk", length,
                         (unsigned long long)offset);
    const uint8_t *bytes = data;
    for (size_t done = 0; done < length;) {
        size_t part = length - done;
        if (part > STREAM_MAX_DISK_WRITE)
            part = STREAM_MAX_DISK_WRITE;
        uint8_t prefix[STREAM_DISK_WRITE_PREFIX];
        stream_put_u32(prefix, disk);
        stream_put_u32(prefix + 4, 0);
        stream_put_u64(prefix + 8, offset + done);
        if (write_record(writer, STREAM_RECORD_DISK_WRITE, prefix, sizeof prefix, bytes + done, part, err) < 0)
            return -1;
        done += part;
    }
    return 0;
}

int stream_write_disk_hashes(struct stream_writer *writer, uint32_t disk, uint32_t chunk_size, uint64_t disk_size,
                             uint64_t first_chunk, const uint8_t *hashes, size_t count, struct error *err)
{
    if (disk >= MACHINE_MAX_DISKS)
        return error_set(err, "disk %u cannot be written to the stream (a machine has at most %u disks)", disk,
                         MACHINE_MAX_DISKS);
    if (count == 0 || count > STREAM_MAX_DISK_HASHES)
        return error_set(err, "a DISK_HASHES record holds 1 to %u hashes, not %zu", STREAM_MAX_DISK_HASHES, count);
    if (chunk_size < 4096 || chunk_size > STREAM_MAX_DISK_WRITE || (chunk_size & (chunk_size - 1)) != 0)
        return error_set(err, "disk chunk size %u is not a power of two from 4096 to %u", chunk_size,
                         STREAM_MAX_DISK_WRITE);
    uint8_t prefix[STREAM_DISK_HASHES_PREFIX];
    stream_put_u32(prefix, disk);
    stream_put_u32(prefix + 4, chunk_size);
    stream_put_u64(prefix + 8, disk_size);
    stream_put_u64(prefix + 16, first_chunk);
    return write_record(writer, STREAM_RECORD_DISK_HASHES, prefix, sizeof prefix, hashes, count * STREAM_DISK_HASH_SIZE,
                        err);
}

int stream_write_disk_history(struct stream_writer *writer, uint32_t disk, uint32_t flags, uint64_t disk_size,
                              const uint8_t protection[16], uint64_t checkpoint, struct error *err)
{
    if (disk >= MACHINE_MAX_DISKS)
        return error_set(err, "disk %u cannot be written to the stream (a machine has at most %u disks)", disk,
                         MACHINE_MAX_DISKS);
    uint8_t body[STREAM_DISK_HISTORY_LENGTH];
    stream_put_u32(body, disk);
    stream_put_u32(body + 4, flags);
    stream_put_u64(body + 8, disk_size);
    memcpy(body + 16, protection, 16);
    stream_put_u64(body + 32, checkpoint);
    return write_record(writer, STREAM_RECORD_DISK_HISTORY, body, sizeof body, NULL, 0, err);
}

int stream_write_machine(struct stream_writer *writer, const struct machine_description *description, struct error *err)
{
    if (description->disk_count > MACHINE_MAX_DISKS || description->nic_count > MACHINE_MAX_NICS)
        return error_set(err, "a machine of %u disks and %u NICs cannot be described (at most %u and %u)",
                         description->disk_count, description->nic_count, MACHINE_MAX_DISKS, MACHINE_MAX_NICS);
    uint8_t body[STREAM_MACHINE_LENGTH] = { 0 };
    stream_put_u64(body, description->ram_size);
    stream_put_u32(body + 8, description->hart_count);
    stream_put_u32(body + 12, description->disk_count);
    stream_put_u32(body + 16, description->nic_count);
    stream_put_u32(body + 20, description->has_rng ? 1 : 0);
    for (unsigned i = 0; i < description->disk_count; i++) {
        stream_put_u64(body + 24 + 16 * i, description->disk_sizes[i]);
        stream_put_u32(body + 32 + 16 * i, description->disk_read_only[i] ? 1 : 0);
    }
    for (unsigned i = 0; i < description->nic_count; i++)
        memcpy(body + 88 + 8 * i, description->nic_macs[i], 6);
    return write_record(writer, STREAM_RECORD_MACHINE, body, sizeof body, NULL, 0, err);
}

int stream_write_refusal(struct stream_writer *writer, const char *text, struct error *err)
{
    size_t length = strnlen(text, STREAM_MAX_REFUSAL);
    if (length == 0)
        return error_set(err, "a refusal needs a reason");
    return write_record(writer, STREAM_RECORD_REFUSAL, text, length, NULL, 0, err);
}

int stream_write_checkpoint_end(struct stream_writer *writer, struct error *err)
{
    return write_record(writer, STREAM_RECORD_CHECKPOINT_END, NULL, 0, NULL, 0, err);
}

int stream_write_end(struct stream_writer *writer, struct error *err)
{
    return write_record(writer, STREAM_RECORD_END, NULL, 0, NULL, 0, err);
}
