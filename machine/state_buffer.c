#include "state_buffer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void state_writer_init(struct state_writer *writer)
{
    memset(writer, 0, sizeof *writer);
    writer->section_start = SIZE_MAX;
}

void state_writer_free(struct state_writer *writer)
{
    free(writer->data);
    state_writer_init(writer);
}

static uint8_t *writer_reserve(struct state_writer *writer, size_t length)
{
    if (writer->out_of_memory)
        return NULL;
    if (writer->capacity - writer->length < length) {
        size_t capacity = writer->capacity ? writer->capacity : 4096;
        while (capacity - writer->length < length)
            capacity *= 2;
        uint8_t *data = realloc(writer->data, capacity);
        if (!data) {
            writer->out_of_memory = true;
            return NULL;
        }
        writer->data = data;
        writer->capacity = capacity;
    }
    uint8_t *place = writer->data + writer->length;
    writer->length += length;
    return place;
}

static void put_little_endian(struct state_writer *writer, uint64_t value, unsigned bytes)
{
    uint8_t *place = writer_reserve(writer, bytes);
    if (!place)
        return;
    for (unsigned i = 0; i < bytes; i++)
        place[i] = (uint8_t)(value >> (8 * i));
}

void state_put_u8(struct state_writer *w, uint8_t v)
{
    put_little_endian(w, v, 1);
}
void state_put_u16(struct state_writer *w, uint16_t v)
{
    put_little_endian(w, v, 2);
}
void state_put_u32(struct state_writer *w, uint32_t v)
{
    put_little_endian(w, v, 4);
}
void state_put_u64(struct state_writer *w, uint64_t v)
{
    put_little_endian(w, v, 8);
}

void state_put_bytes(struct state_writer *writer, const void *bytes, size_t length)
{
    uint8_t *place = writer_reserve(writer, length);
    if (place && length)
        memcpy(place, bytes, length);
}

void state_section_begin(struct state_writer *writer, uint32_t id, uint32_t version)
{
    state_put_u32(writer, id);
    state_put_u32(writer, version);
    writer->section_start = writer->length;
    state_put_u32(writer, 0);
}

void state_section_end(struct state_writer *writer)
{
    if (writer->out_of_memory || writer->section_start == SIZE_MAX)
        return;
    size_t body = writer->length - writer->section_start - 4;
    for (unsigned i = 0; i < 4; i++)
        writer->data[writer->section_start + i] = (uint8_t)(body >> (8 * i));
    writer->section_start = SIZE_MAX;
}

void state_reader_init(struct state_reader *reader, const void *data, size_t length)
{
    memset(reader, 0, sizeof *reader);
    reader->data = data;
    reader->length = length;
    reader->section_end = length;
}

void state_reader_fail(struct state_reader *reader, const char *format, ...)
{
    if (reader->failed)
        return;
    reader->failed = true;
    va_list args;
    va_start(args, format);
    vsnprintf(reader->error, sizeof reader->error, format, args);
    va_end(args);
}

static uint64_t get_little_endian(struct state_reader *reader, unsigned bytes)
{
    if (reader->failed)
        return 0;
    if (reader->section_end - reader->position < bytes) {
        state_reader_fail(reader, "truncated at byte %zu (needed %u more bytes)", reader->position, bytes);
        return 0;
    }
    uint64_t value = 0;
    for (unsigned i = 0; i < bytes; i++)
        value |= (uint64_t)reader->data[reader->position + i] << (8 * i);
    reader->position += bytes;
    return value;
}

uint8_t state_get_u8(struct state_reader *r)
{
    return (uint8_t)get_little_endian(r, 1);
}
uint16_t state_get_u16(struct state_reader *r)
{
    return (uint16_t)get_little_endian(r, 2);
}
uint32_t state_get_u32(struct state_reader *r)
{
    return (uint32_t)get_little_endian(r, 4);
}
uint64_t state_get_u64(struct state_reader *r)
{
    return get_little_endian(r, 8);
}

void state_get_bytes(struct state_reader *reader, void *bytes, size_t length)
{
    if (reader->failed)
        return;
    if (reader->section_end - reader->position < length) {
        state_reader_fail(reader, "truncated at byte %zu (needed %zu more bytes)", reader->position, length);
        return;
    }
    memcpy(bytes, reader->data + reader->position, length);
    reader->position += length;
}

uint32_t state_section_open(struct state_reader *reader, uint32_t id, uint32_t max_version, const char *name)
{
    reader->section_end = reader->length;
    uint32_t found_id = state_get_u32(reader);
    uint32_t version = state_get_u32(reader);
    uint32_t body = state_get_u32(reader);
    if (reader->failed)
        return 0;
    if (found_id != id) {
        state_reader_fail(reader, "expected section '%s' (id %u), found id %u", name, id, found_id);
        return 0;
    }
    if (version == 0 || version > max_version) {
        state_reader_fail(reader, "section '%s' has version %u, this build reads 1..%u", name, version, max_version);
        return 0;
    }
    if (reader->length - reader->position < body) {
        state_reader_fail(reader, "section '%s' claims %u bytes, only %zu remain", name, body,
                          reader->length - reader->position);
        return 0;
    }
    reader->section_end = reader->position + body;
    return version;
}

void state_section_close(struct state_reader *reader, const char *name)
{
    if (!reader->failed && reader->position != reader->section_end)
        state_reader_fail(reader, "section '%s' has %zu unread bytes", name, reader->section_end - reader->position);
    reader->section_end = reader->length;
}
