/* The byte-level writer and reader behind machine state save/load.
 *
 * Every piece of guest-visible state is written field by field as
 * little-endian fixed-width integers, inside sections that carry an id, a
 * version and a length (see docs/machine-state.md). Nothing is ever copied
 * as a raw struct, so host pointers never leak into a saved state and the
 * layout does not depend on the compiler. */
#ifndef COLO_MACHINE_STATE_BUFFER_H
#define COLO_MACHINE_STATE_BUFFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct state_writer {
    uint8_t *data;
    size_t length;
    size_t capacity;
    bool out_of_memory;
    size_t section_start; /* offset of the open section's length field */
};

void state_writer_init(struct state_writer *writer);
void state_writer_free(struct state_writer *writer);
void state_put_u8(struct state_writer *writer, uint8_t value);
void state_put_u16(struct state_writer *writer, uint16_t value);
void state_put_u32(struct state_writer *writer, uint32_t value);
void state_put_u64(struct state_writer *writer, uint64_t value);
void state_put_bytes(struct state_writer *writer, const void *bytes, size_t length);
/* Sections: {u32 id, u32 version, u32 body length, body}. Not nested. */
void state_section_begin(struct state_writer *writer, uint32_t id, uint32_t version);
void state_section_end(struct state_writer *writer);

struct state_reader {
    const uint8_t *data;
    size_t length;
    size_t position;
    size_t section_end; /* reads past this fail while a section is open */
    bool failed;
    char error[200];
};

void state_reader_init(struct state_reader *reader, const void *data, size_t length);
/* Getters return 0 once the reader has failed; check reader->failed once at
 * the end of a section instead of after every field. */
uint8_t state_get_u8(struct state_reader *reader);
uint16_t state_get_u16(struct state_reader *reader);
uint32_t state_get_u32(struct state_reader *reader);
uint64_t state_get_u64(struct state_reader *reader);
void state_get_bytes(struct state_reader *reader, void *bytes, size_t length);
/* Opens the next section, which must have the given id; fails (with a
 * message naming the section) on another id or a version above max_version.
 * Returns the version found. */
uint32_t state_section_open(struct state_reader *reader, uint32_t id, uint32_t max_version, const char *name);
/* Closes the section; fails if its body was not consumed exactly. */
void state_section_close(struct state_reader *reader, const char *name);
void state_reader_fail(struct state_reader *reader, const char *format, ...) __attribute__((format(printf, 2, 3)));

#endif
