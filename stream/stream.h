/* The stream: the record format that carries a VM's state between hosts
 * (save files, live migration, COLO checkpoints). docs/stream.md specifies
 * it byte for byte.
 *
 *   header:  "COLOSTRM" (8 bytes), u32 version, u32 header_length (32),
 *            u64 ram_size, u64 configuration_hash
 *   records: u32 type, u32 length, u32 crc32c(type, length, body), u32 zero,
 *            body[length], zero padding to a multiple of 8
 *
 * Record types and bodies:
 *   PAGE_DATA         u32 count, u32 zero, u64 page_index[count], then
 *                     count pages of 4096 bytes
 *   PAGE_ZERO         u32 count, u32 zero, u64 page_index[count]: pages
 *                     whose 4096 bytes are all zero
 *   OUTPUT            u32 nic, u32 zero, 12-byte virtio-net header, frame:
 *                     network output the sender held back behind this run
 *   DISK_WRITE        u32 disk, u32 zero, u64 offset, data (512 to 1 MiB,
 *                     whole 512-byte sectors): a guest disk write of the
 *                     run's epoch, for the receiver's disk replication
 *   DISK_HASHES       u32 disk, u32 chunk_size, u64 disk_size, u64
 *                     first_chunk, then 16-byte hashes of chunks
 *                     first_chunk, first_chunk + 1, ...: what a migration
 *                     destination's image holds, so the source sends only
 *                     the chunks that differ (disk/disk_sync.h); sent
 *                     destination -> source, never inside a run
 *   MACHINE           the sender's machine_description (120 bytes): sent
 *                     first in a migration that copies disks, so the
 *                     receiver can name what differs
 *   REFUSAL           1..1024 bytes of text, no NUL: why the receiver
 *                     will not take the stream (receiver -> sender,
 *                     instead of its DISK_HASHES)
 *   DISK_HISTORY      u32 disk, u32 flags, u64 disk_size, u8
 *                     protection[16], u64 checkpoint: the initial
 *                     sync's exchange about an image's history
 *                     (disk/disk_sync.h), outside any run: destination
 *                     -> source, what its image holds (flags bit 0: the
 *                     history is known); source -> destination, the
 *                     plan (bit 0: only the blocks written since come,
 *                     no hashes needed) and the new protection's id
 *   HART_STATE        one "HART" section of the machine state
 *                     (docs/machine-state.md)
 *   DEVICE_STATE      u32 device id, u32 version, then that device's
 *                     section body (the machine section is device "MACH")
 *   CHECKPOINT_STATE  u32 id (replication protocol messages, issue 5)
 *   CHECKPOINT_END    empty: a checkpoint (or one migration round) is whole
 *   END               empty: the stream is complete
 *
 * The reader checks every record (length bounds, known type, CRC, page
 * indices inside RAM, state versions) and never applies part of a stream:
 * stream_receive stages everything until CHECKPOINT_END or END has arrived
 * whole, then applies it to the machine in one step. OUTPUT and DISK_WRITE
 * records change nothing in the machine: they are handed to the caller
 * once the run is whole (stream_received_output_next,
 * stream_received_disk_write_next). */
#ifndef COLO_STREAM_STREAM_H
#define COLO_STREAM_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct machine;

#define STREAM_MAGIC "COLOSTRM"
#define STREAM_VERSION 2u
#define STREAM_HEADER_LENGTH 32u
#define STREAM_RECORD_HEADER_LENGTH 16u
/* Longest record body: a PAGE_DATA of 1024 pages (4 MiB + index). A
 * PAGE_ZERO record carries at most as many indices. */
#define STREAM_MAX_PAGES_PER_RECORD 1024u
#define STREAM_MAX_RECORD_LENGTH (8u + STREAM_MAX_PAGES_PER_RECORD * (8u + 4096u))

enum stream_record_type {
    STREAM_RECORD_PAGE_DATA = 1,
    STREAM_RECORD_HART_STATE = 2,
    STREAM_RECORD_DEVICE_STATE = 3,
    STREAM_RECORD_CHECKPOINT_STATE = 4,
    STREAM_RECORD_CHECKPOINT_END = 5,
    STREAM_RECORD_END = 6,
    STREAM_RECORD_PAGE_ZERO = 7,
    STREAM_RECORD_OUTPUT = 8,
    STREAM_RECORD_DISK_WRITE = 9,
    STREAM_RECORD_DISK_HASHES = 10,
    STREAM_RECORD_MACHINE = 11,
    STREAM_RECORD_REFUSAL = 12,
    STREAM_RECORD_DISK_HISTORY = 13,
    STREAM_RECORD_TCP_SHIFT = 14,
    STREAM_RECORD_MIRRORED = 15,
};

/* MACHINE: u64 ram_size, u32 hart_count, u32 disk_count, u32 nic_count,
 * u32 flags (bit 0: an entropy device), 4 disk slots of u64 size, u32
 * read_only, u32 zero, 4 NIC slots of a 6-byte MAC and 2 zero bytes;
 * slots past the counts are zero. */
#define STREAM_MACHINE_LENGTH 120u
/* REFUSAL: text, at most this long. */
#define STREAM_MAX_REFUSAL 1024u

/* OUTPUT: u32 nic, u32 zero, the NIC's 12-byte header, then the frame. */
#define STREAM_OUTPUT_PREFIX 20u
#define STREAM_MAX_OUTPUT_FRAME (65536u + 128u)

/* DISK_WRITE: u32 disk, u32 zero, u64 offset, then the data: whole
 * sectors at a sector-aligned offset, at most STREAM_MAX_DISK_WRITE bytes
 * per record (the writer splits longer writes). */
#define STREAM_DISK_WRITE_PREFIX 16u
#define STREAM_DISK_SECTOR_SIZE 512u
#define STREAM_MAX_DISK_WRITE (1u << 20)

/* DISK_HASHES: u32 disk, u32 chunk_size, u64 disk_size, u64 first_chunk,
 * then 16-byte hashes. The chunk size is a power of two from 4 KiB to
 * STREAM_MAX_DISK_WRITE; the reader checks the shape, the consumer the
 * rest. */
#define STREAM_DISK_HASHES_PREFIX 24u
#define STREAM_DISK_HASH_SIZE 16u
#define STREAM_MAX_DISK_HASHES ((STREAM_MAX_RECORD_LENGTH - STREAM_DISK_HASHES_PREFIX) / STREAM_DISK_HASH_SIZE)

/* DISK_HISTORY: u32 disk, u32 flags, u64 disk_size, u8 protection[16],
 * u64 checkpoint. */
#define STREAM_DISK_HISTORY_LENGTH 40u
#define STREAM_DISK_HISTORY_KNOWN 1u       /* destination -> source */
#define STREAM_DISK_HISTORY_INCREMENTAL 1u /* source -> destination */

/* TCP_SHIFT: u32 count, u32 zero, then count entries of
 * STREAM_TCP_SHIFT_ENTRY_LENGTH bytes: a connection's 48-byte key (the
 * proxy's, opaque here), u32 flags (bit 0: the offset is known; bit 1:
 * the VM's SYN carried a TCP timestamp), u32 the VM's initial sequence
 * number, u32 the offset, u32 the TSval of the VM's SYN, u32 the
 * timestamp offset. At most STREAM_MAX_TCP_SHIFT_ENTRIES per record. */
#define STREAM_TCP_SHIFT_PREFIX 8u
#define STREAM_TCP_SHIFT_KEY_LENGTH 48u
#define STREAM_TCP_SHIFT_ENTRY_LENGTH (STREAM_TCP_SHIFT_KEY_LENGTH + 20u)
#define STREAM_TCP_SHIFT_OFFSET_KNOWN 1u
#define STREAM_TCP_SHIFT_SYN_TIMESTAMP 2u
#define STREAM_MAX_TCP_SHIFT_ENTRIES 4096u

/* MIRRORED: u64 how many client frames the primary had mirrored to the
 * secondary when its VM paused for this checkpoint. */
#define STREAM_MIRRORED_LENGTH 8u

struct stream_header {
    uint32_t version;
    uint64_t ram_size;
    uint64_t configuration_hash; /* machine_configuration_hash() */
};

/* Records a stream_receive run hands to its caller whole (OUTPUT,
 * DISK_WRITE, TCP_SHIFT): the bodies back to back, each after its u32 length. The
 * memory stays from run to run. */
struct stream_staged_records {
    uint8_t *data;
    size_t length, capacity;
    size_t count;
};

/* ---- writing ---- */

struct stream_writer {
    int fd;
    uint8_t *buffer; /* batches records; stream_flush sends */
    size_t used, capacity;
    uint64_t bytes_written;      /* total, for progress and statistics */
    uint64_t pages_written;      /* PAGE_DATA and PAGE_ZERO pages */
    uint64_t zero_pages_written; /* of those, sent as PAGE_ZERO */
};

int stream_writer_init(struct stream_writer *writer, int fd, struct error *err);
void stream_writer_destroy(struct stream_writer *writer);
int stream_write_header(struct stream_writer *writer, const struct stream_header *header, struct error *err);
/* Writes pages of guest RAM (page indices relative to RAM base), split into
 * records of at most STREAM_MAX_PAGES_PER_RECORD; pages that are all zero
 * go as indices only (PAGE_ZERO). A page index must not appear twice in
 * one call (the order of zero and data pages within a call is not kept). */
int stream_write_pages(struct stream_writer *writer, const struct machine *machine, const uint64_t *page_indices,
                       size_t count, struct error *err);
/* The machine state (harts and devices) as HART_STATE and DEVICE_STATE
 * records. The caller makes sure the machine is paused. */
int stream_write_machine_state(struct stream_writer *writer, struct machine *machine, struct error *err);
int stream_write_checkpoint_state(struct stream_writer *writer, uint32_t id, struct error *err);
/* One frame of held network output (the COLO primary's, so that the
 * secondary can send it if the primary dies before releasing it). */
int stream_write_output(struct stream_writer *writer, uint32_t nic, const uint8_t header[12], const void *frame,
                        size_t length, struct error *err);
/* A guest write to disk `disk` (its index in the machine's configuration)
 * of `length` bytes at byte `offset`: both whole 512-byte sectors, length
 * at least one sector. A write longer than STREAM_MAX_DISK_WRITE goes as
 * several DISK_WRITE records of at most that much, in offset order (the
 * same bytes in the same order, so the receiver need not know). The
 * arguments are checked before anything is buffered: a call that fails
 * its checks leaves no record behind. */
int stream_write_disk_write(struct stream_writer *writer, uint32_t disk, uint64_t offset, const void *data,
                            size_t length, struct error *err);
/* The machine's description (MACHINE). */
struct machine_description;
int stream_write_machine(struct stream_writer *writer, const struct machine_description *description,
                         struct error *err);
/* Why this side refuses (REFUSAL); a longer text is cut to
 * STREAM_MAX_REFUSAL bytes. */
int stream_write_refusal(struct stream_writer *writer, const char *text, struct error *err);
/* Hashes of `count` chunks (1 .. STREAM_MAX_DISK_HASHES) of disk `disk`,
 * from chunk first_chunk on; chunk_size and disk_size as the record says. */
int stream_write_disk_hashes(struct stream_writer *writer, uint32_t disk, uint32_t chunk_size, uint64_t disk_size,
                             uint64_t first_chunk, const uint8_t *hashes, size_t count, struct error *err);
/* One disk's DISK_HISTORY. */
int stream_write_disk_history(struct stream_writer *writer, uint32_t disk, uint32_t flags, uint64_t disk_size,
                              const uint8_t protection[16], uint64_t checkpoint, struct error *err);
/* The TCP sequence shift of a survivor's connections (TCP_SHIFT): `count`
 * entries (0 .. STREAM_MAX_TCP_SHIFT_ENTRIES) of
 * STREAM_TCP_SHIFT_ENTRY_LENGTH bytes, as the proxy packs them. */
int stream_write_tcp_shift(struct stream_writer *writer, const uint8_t *entries, size_t count, struct error *err);
/* MIRRORED: frames mirrored so far (a COLO checkpoint's, VM paused). */
int stream_write_mirrored(struct stream_writer *writer, uint64_t frames, struct error *err);
int stream_write_checkpoint_end(struct stream_writer *writer, struct error *err);
int stream_write_end(struct stream_writer *writer, struct error *err);
/* Sends everything buffered (writes are only batched, never reordered). */
int stream_flush(struct stream_writer *writer, struct error *err);

/* ---- reading ---- */

struct stream_record {
    uint32_t type;
    uint32_t length;
    const uint8_t *body; /* valid until the next read */
};

#define STREAM_RECENT_CHECKPOINT_STATES 4u

struct stream_reader {
    int fd;
    uint8_t *buffer;             /* one record body */
    uint64_t ram_size;           /* from the header, to check page indices */
    uint64_t configuration_hash; /* from the header */
    /* Disks of the machine the stream is for, to check DISK_WRITE disk
     * indices: MACHINE_MAX_DISKS until stream_receive sets its machine's. */
    uint32_t disk_count;
    uint64_t records_read, bytes_read, pages_read;
    uint64_t rejected_records; /* counted before returning an error */
    /* CHECKPOINT_STATE ids that arrived inside the last stream_receive run
     * (which stages them and goes on): how many, and the last few of
     * them, oldest first. */
    uint64_t checkpoint_states_received;
    uint32_t recent_checkpoint_states[STREAM_RECENT_CHECKPOINT_STATES];
    /* The OUTPUT and the DISK_WRITE records of the last stream_receive
     * run, kept until the next stream_receive starts
     * (stream_received_output_next, stream_received_disk_write_next). */
    struct stream_staged_records output, disk_writes, tcp_shifts;
    /* The MIRRORED record of the last stream_receive run, if it had one. */
    bool mirrored_known;
    uint64_t mirrored_frames;
    /* Optional: DISK_WRITE records are handed to this as they arrive,
     * before the run is whole, instead of being staged (so
     * stream_received_disk_write_next gives none). A run cut off or
     * rejected later has handed some: the sink's owner must drop them (a
     * COLO secondary's failover drops the epoch's buffer). A sink that
     * fails ends the run like a bad record, nothing applied. */
    int (*disk_write_sink)(void *opaque, const uint8_t *body, size_t length, struct error *err);
    void *disk_write_sink_opaque;
    /* Optional: called with each CHECKPOINT_STATE id inside a run as it
     * arrives (after it is noted), so that the receiver can answer before
     * the run is whole (a COLO secondary confirms the pre-copy). A sink
     * that fails ends the run like a bad record, nothing applied. */
    int (*message_sink)(void *opaque, uint32_t id, struct error *err);
    void *message_sink_opaque;
    /* stream_receive's page staging, kept from run to run so that a small
     * checkpoint does not pay for setting it up (stream_receive.c). */
    struct stream_page_staging *staging;
};

int stream_reader_init(struct stream_reader *reader, int fd, struct error *err);
void stream_reader_destroy(struct stream_reader *reader);
/* Reads and checks the header against the expected machine (ram size and
 * configuration hash); the error says what differs. An expected RAM size
 * or configuration hash of 0 is not checked: the caller checks
 * reader->configuration_hash later (a migration that copies disks first
 * lets the source compare the disks, to name what differs). */
int stream_read_header(struct stream_reader *reader, const struct stream_header *expected, struct error *err);
/* Reads one record and checks it. 1: a record; 0: clean end of file
 * before any byte of a record; -1: error (names the record number, its
 * type and what was wrong). */
int stream_read_record(struct stream_reader *reader, struct stream_record *record, struct error *err);

/* Reads records until CHECKPOINT_END or END, staging pages and state, then
 * applies all of it to the machine (which must not be running). Nothing is
 * applied if any record is bad or the stream ends early. *terminator is the
 * record type that ended it.
 */
int stream_receive(struct stream_reader *reader, struct machine *machine, uint32_t *terminator, struct error *err);

/* The same, calling before_apply (if not NULL) once the run has arrived
 * whole and just before anything is applied: a COLO secondary rolls its
 * VM back there (replication/colo_secondary.c), so a checkpoint that never
 * arrives whole leaves the VM untouched. If before_apply fails (returns -1
 * and sets err), nothing is applied. */
typedef int (*stream_before_apply)(void *opaque, struct machine *machine, struct error *err);
/* After a stream_receive that succeeded: the run's OUTPUT records, in
 * order. Start with *cursor = 0; each call gives the next record's body
 * (u32 nic, u32 zero, header, frame), valid until the next stream_receive,
 * and false after the last. */
bool stream_received_output_next(const struct stream_reader *reader, size_t *cursor, const uint8_t **body,
                                 size_t *length);
/* After a stream_receive that succeeded: the run's TCP_SHIFT records, in
 * order, like stream_received_output_next (body: u32 count, u32 zero, the
 * entries; its shape checked by the reader). */
bool stream_received_tcp_shift_next(const struct stream_reader *reader, size_t *cursor, const uint8_t **body,
                                    size_t *length);
/* One TCP_SHIFT entry, its fields: stream_tcp_shift_entry_put packs it
 * (STREAM_TCP_SHIFT_ENTRY_LENGTH bytes), stream_tcp_shift_entry_fields
 * unpacks it; the key is the proxy's, opaque here. */
struct stream_tcp_shift_entry {
    const uint8_t *key; /* STREAM_TCP_SHIFT_KEY_LENGTH bytes */
    uint32_t flags;     /* STREAM_TCP_SHIFT_OFFSET_KNOWN, STREAM_TCP_SHIFT_SYN_TIMESTAMP */
    uint32_t isn, offset, syn_timestamp, timestamp_offset;
};
void stream_tcp_shift_entry_put(uint8_t *bytes, const struct stream_tcp_shift_entry *entry);
void stream_tcp_shift_entry_fields(const uint8_t *bytes, struct stream_tcp_shift_entry *entry);
/* An OUTPUT record's body (as stream_received_output_next gives it, its
 * shape checked by the reader) split into its fields. */
struct stream_output_frame {
    uint32_t nic;
    const uint8_t *header; /* 12 bytes, virtio-net wire form */
    const uint8_t *frame;
    size_t length;
};
void stream_output_frame_fields(const uint8_t *body, size_t length, struct stream_output_frame *fields);

/* The run's DISK_WRITE records, in order, like stream_received_output_next:
 * after a stream_receive that succeeded, or inside its before_apply (the
 * run is whole by then); none after a run that was rejected or cut off.
 * The reader has checked each record's shape, that its disk is one of the
 * machine's disks, and that offset + length does not wrap; whether the
 * range lies inside the disk is the consumer's to check (the stream does
 * not know disk sizes: secondary_disk_buffer_write refuses a range
 * outside its image). */
bool stream_received_disk_write_next(const struct stream_reader *reader, size_t *cursor, const uint8_t **body,
                                     size_t *length);
/* A DISK_WRITE record's body (as stream_received_disk_write_next gives it)
 * split into its fields. */
struct stream_disk_write {
    uint32_t disk;
    uint64_t offset; /* bytes, a multiple of STREAM_DISK_SECTOR_SIZE */
    const uint8_t *data;
    size_t length; /* 512 .. STREAM_MAX_DISK_WRITE, whole sectors */
};
void stream_disk_write_fields(const uint8_t *body, size_t length, struct stream_disk_write *fields);

/* A DISK_HASHES record's body (from stream_read_record, its shape checked)
 * split into its fields. */
struct stream_disk_hashes {
    uint32_t disk;
    uint32_t chunk_size;
    uint64_t disk_size;
    uint64_t first_chunk;
    const uint8_t *hashes; /* count * STREAM_DISK_HASH_SIZE bytes */
    size_t count;
};
void stream_disk_hashes_fields(const uint8_t *body, size_t length, struct stream_disk_hashes *fields);

/* A DISK_HISTORY record's body (from stream_read_record, checked). */
struct stream_disk_history {
    uint32_t disk;
    uint32_t flags;
    uint64_t disk_size;
    uint8_t protection[16];
    uint64_t checkpoint;
};
void stream_disk_history_fields(const uint8_t *body, struct stream_disk_history *fields);

/* A MACHINE record's body (from stream_read_record, checked). */
struct machine_description;
void stream_machine_fields(const uint8_t *body, struct machine_description *description);
/* A REFUSAL record's text, NUL-terminated into text (cut to size). */
void stream_refusal_text(const uint8_t *body, size_t length, char *text, size_t size);
/* Inside before_apply: true when the run about to be applied writes this
 * RAM page (as data or as a zero page). */
bool stream_receive_writes_page(const struct stream_reader *reader, uint64_t page);
int stream_receive_with_hook(struct stream_reader *reader, struct machine *machine, uint32_t *terminator,
                             stream_before_apply before_apply, void *opaque, struct error *err);

#endif
