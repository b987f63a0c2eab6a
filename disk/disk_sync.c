/* The disks' initial sync (disk_sync.h). */
#include "disk_sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "clock.h"
#include "colo_protocol.h"
#include "disk_runs.h"
#include "disk_tracker.h"
#include "stream.h"
#include "virtio_blk.h"

/* A run of dirty blocks is at most one DISK_WRITE record. */
#define BLOCKS_PER_WRITE (STREAM_MAX_DISK_WRITE / PRIMARY_DISK_BLOCK_SIZE)
/* Chunks between two progress reports of the full pass: 1 MiB. */
#define PROGRESS_CHUNKS 16u
/* Hashes per DISK_HASHES record: 1 MiB of hashes. */
#define HASHES_PER_RECORD 65536u

void disk_sync_hash(const void *data, size_t length, uint8_t hash[16])
{
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits(data, length));
    memcpy(hash, canonical.digest, 16);
}

const char *disk_sync_mode_name(enum disk_sync_mode mode)
{
    switch (mode) {
    case DISK_SYNC_MODE_INCREMENTAL:
        return "incremental";
    case DISK_SYNC_MODE_HASHES:
        return "hashes";
    case DISK_SYNC_MODE_UNDECIDED:
        break;
    }
    return "undecided";
}

static const uint8_t zero_chunk[DISK_SYNC_CHUNK_SIZE];

/* The chunk's hash without reading it when it lies in a hole (all zeros):
 * 1; 0 when it must be read. zero_hash is a whole zero chunk's, hashed
 * once by the caller (only a short last chunk needs its own). */
static int hash_if_hole(struct block_backend *image, uint64_t offset, size_t length, const uint8_t zero_hash[16],
                        uint8_t hash[16])
{
    if (block_backend_next_data(image, offset) < offset + length)
        return 0;
    if (length == DISK_SYNC_CHUNK_SIZE)
        memcpy(hash, zero_hash, 16);
    else
        disk_sync_hash(zero_chunk, length, hash);
    return 1;
}

static uint64_t chunk_count(uint64_t size)
{
    return (size + DISK_SYNC_CHUNK_SIZE - 1) / DISK_SYNC_CHUNK_SIZE;
}

static size_t chunk_length(uint64_t size, uint64_t chunk)
{
    uint64_t offset = chunk * DISK_SYNC_CHUNK_SIZE;
    return size - offset < DISK_SYNC_CHUNK_SIZE ? (size_t)(size - offset) : DISK_SYNC_CHUNK_SIZE;
}

/* ---- source ---- */

static int before_copy(void *opaque, struct stream_writer *writer, struct error *err);
static int round_blocks(void *opaque, struct stream_writer *writer, struct error *err);
static int stop_and_copy(void *opaque, struct stream_writer *writer, struct error *err);

int disk_sync_source_init(struct disk_sync_source *sync, struct machine *machine,
                          const struct primary_disk_options *options, struct error *err)
{
    memset(sync, 0, sizeof *sync);
    sync->machine = machine;
    sync->disk_count = machine_disk_count(machine);
    struct primary_disk_options defaults = { 0 };
    if (!options)
        options = &defaults;
    sync->buffer = malloc(STREAM_MAX_DISK_WRITE > DISK_SYNC_CHUNK_SIZE ? STREAM_MAX_DISK_WRITE : DISK_SYNC_CHUNK_SIZE);
    if (!sync->buffer)
        return error_set(err, "out of memory for the disk sync");
    uint64_t total = 0;
    for (unsigned i = 0; i < sync->disk_count; i++) {
        struct disk_sync_source_disk *disk = &sync->disks[i];
        disk->device = machine_disk(machine, i);
        disk->image = virtio_blk_backend(disk->device);
        disk->tracker = disk_tracker_of(disk->image);
        total += disk->image->size;
        if (disk->image->read_only)
            continue;
        /* The image changes from now on (the VM runs on, protected or
         * migrated): a history it still had would soon be stale. */
        if (disk_history_invalidate(disk->image->name, err) < 0) {
            sync->disk_count = i;
            disk_sync_source_destroy(sync);
            return error_prefix(err, "disk %u: ", i);
        }
        disk->primary = primary_disk_create(disk->image, options, err);
        size_t words = disk->primary ? primary_disk_bitmap_words(disk->primary) : 0;
        disk->bitmap = disk->primary ? calloc(words ? words : 1, sizeof *disk->bitmap) : NULL;
        if (!disk->bitmap) {
            if (disk->primary) {
                primary_disk_unwrap(disk->primary);
                error_set(err, "out of memory for the dirty log of image %s", disk->image->name);
            }
            disk->primary = NULL;
            sync->disk_count = i;
            disk_sync_source_destroy(sync);
            return error_prefix(err, "disk %u: ", i);
        }
        if (!virtio_blk_replace_backend(disk->device, primary_disk_backend(disk->primary)))
            abort(); /* same size and flag by construction */
        primary_disk_dirty_log_enable(disk->primary, true);
    }
    atomic_store(&sync->bytes_total, total);
    disk_history_new_protection(sync->protection);
    sync->companion = (struct migration_companion){
        .opaque = sync,
        .before_copy = before_copy,
        .round = round_blocks,
        .stop_and_copy = stop_and_copy,
    };
    return 0;
}

void disk_sync_source_destroy(struct disk_sync_source *sync)
{
    for (unsigned i = 0; i < sync->disk_count; i++) {
        struct disk_sync_source_disk *disk = &sync->disks[i];
        if (disk->primary) {
            if (!virtio_blk_replace_backend(disk->device, disk->image))
                abort();
            primary_disk_unwrap(disk->primary);
        }
        free(disk->bitmap);
        memset(disk, 0, sizeof *disk);
    }
    free(sync->buffer);
    sync->buffer = NULL;
    sync->disk_count = 0;
}

const struct migration_companion *disk_sync_source_companion(struct disk_sync_source *sync)
{
    return &sync->companion;
}

struct primary_disk *disk_sync_source_primary_disk(struct disk_sync_source *sync, unsigned index)
{
    return index < sync->disk_count ? sync->disks[index].primary : NULL;
}

void disk_sync_source_get_progress(struct disk_sync_source *sync, struct disk_sync_progress *progress)
{
    *progress = (struct disk_sync_progress){
        .bytes_total = atomic_load(&sync->bytes_total),
        .bytes_compared = atomic_load(&sync->bytes_compared),
        .chunks_differing = atomic_load(&sync->chunks_differing),
        .bytes_sent = atomic_load(&sync->bytes_sent),
        .dirty_rounds = atomic_load(&sync->dirty_rounds),
        .dirty_blocks_sent = atomic_load(&sync->dirty_blocks_sent),
        .final_blocks = atomic_load(&sync->final_blocks),
        .tracked_blocks_sent = atomic_load(&sync->tracked_blocks_sent),
        .bytes_planned = atomic_load(&sync->bytes_planned),
        .bytes_done = atomic_load(&sync->bytes_done),
        .disk_count = sync->disk_count,
        .planned = atomic_load(&sync->planned),
        .compared = atomic_load(&sync->compared),
        .done = atomic_load(&sync->done),
    };
    for (unsigned i = 0; i < sync->disk_count && i < MACHINE_MAX_DISKS; i++) {
        progress->modes[i] = (enum disk_sync_mode)atomic_load(&sync->disks[i].mode);
        progress->incremental_disks += progress->modes[i] == DISK_SYNC_MODE_INCREMENTAL;
        progress->hashed_disks += progress->modes[i] == DISK_SYNC_MODE_HASHES;
    }
}

static int send_data(struct disk_sync_source *sync, struct stream_writer *writer, unsigned index, uint64_t offset,
                     size_t length, struct error *err)
{
    if (stream_write_disk_write(writer, index, offset, sync->buffer, length, err) < 0)
        return -1;
    sync->run_bytes += length;
    atomic_fetch_add(&sync->bytes_sent, length);
    return 0;
}

static int read_image(struct disk_sync_source_disk *disk, unsigned index, uint64_t offset, void *buffer, size_t length,
                      struct error *err)
{
    int result = block_backend_read(disk->image, offset, buffer, length);
    if (result < 0) {
        errno = -result;
        return error_set_errno(err, "disk %u (%s): reading %zu bytes at %llu", index, disk->image->name, length,
                               (unsigned long long)offset);
    }
    return 0;
}

/* What the destination sends, until its CHECKPOINT_END: DISK_HISTORY
 * records (its images' histories, into theirs / known) and DISK_HASHES
 * (into one array per disk, freed by the caller; received counts them).
 * Each disk's size must be ours: the error names both. */
struct from_destination {
    uint8_t *hashes[MACHINE_MAX_DISKS];
    uint64_t received[MACHINE_MAX_DISKS];
    struct disk_history theirs[MACHINE_MAX_DISKS];
    bool known[MACHINE_MAX_DISKS];
    bool histories, any_hashes;
};

static int check_size(struct disk_sync_source_disk *disk, unsigned index, uint64_t theirs, struct error *err)
{
    if (theirs == disk->image->size)
        return 0;
    return error_set(err,
                     "disk %u: this image (%s) is %llu bytes, the destination's is %llu bytes: the images must "
                     "be the same size",
                     index, disk->image->name, (unsigned long long)disk->image->size, (unsigned long long)theirs);
}

static int receive_from_destination(struct disk_sync_source *sync, int fd, struct from_destination *from,
                                    struct error *err)
{
    struct stream_reader reader;
    if (stream_reader_init(&reader, fd, err) < 0)
        return -1;
    reader.disk_count = sync->disk_count;
    int status = -1;
    for (;;) {
        int readable = colo_wait_readable(fd, DISK_SYNC_HASH_TIMEOUT_MS);
        if (readable <= 0) {
            if (readable == 0)
                error_set(err, "the destination sent no disk hashes within %d s", DISK_SYNC_HASH_TIMEOUT_MS / 1000);
            else
                error_set_errno(err, "waiting for the destination's disk hashes");
            goto done;
        }
        struct stream_record record;
        int got = stream_read_record(&reader, &record, err);
        if (got < 0) {
            error_prefix(err, "the destination's disk hashes: ");
            goto done;
        }
        if (got == 0) {
            error_set(err, "the destination closed the connection before sending its disk hashes (see its log)");
            goto done;
        }
        if (record.type == STREAM_RECORD_CHECKPOINT_END)
            break;
        if (record.type == STREAM_RECORD_DISK_HISTORY) {
            struct stream_disk_history fields;
            stream_disk_history_fields(record.body, &fields);
            if (check_size(&sync->disks[fields.disk], fields.disk, fields.disk_size, err) < 0)
                goto done;
            from->histories = true;
            from->known[fields.disk] = (fields.flags & STREAM_DISK_HISTORY_KNOWN) != 0;
            memcpy(from->theirs[fields.disk].protection, fields.protection, DISK_HISTORY_PROTECTION_SIZE);
            from->theirs[fields.disk].checkpoint = fields.checkpoint;
            from->theirs[fields.disk].disk_size = fields.disk_size;
            continue;
        }
        if (record.type != STREAM_RECORD_DISK_HASHES) {
            error_set(err, "the destination sent a record of type %u where its disk hashes were expected", record.type);
            goto done;
        }
        struct stream_disk_hashes fields;
        stream_disk_hashes_fields(record.body, record.length, &fields);
        struct disk_sync_source_disk *disk = &sync->disks[fields.disk];
        uint64_t ours = disk->image->size;
        if (check_size(disk, fields.disk, fields.disk_size, err) < 0)
            goto done;
        uint64_t *received = &from->received[fields.disk];
        if (fields.chunk_size != DISK_SYNC_CHUNK_SIZE || fields.first_chunk != *received ||
            fields.count > chunk_count(ours) - *received) {
            error_set(err, "disk %u: the destination's hashes are not the chunks expected (chunk size %u, from %llu)",
                      fields.disk, fields.chunk_size, (unsigned long long)fields.first_chunk);
            goto done;
        }
        if (!from->hashes[fields.disk]) {
            from->hashes[fields.disk] = malloc(chunk_count(ours) * STREAM_DISK_HASH_SIZE);
            if (!from->hashes[fields.disk]) {
                error_set(err, "out of memory for the destination's disk hashes");
                goto done;
            }
        }
        memcpy(from->hashes[fields.disk] + *received * STREAM_DISK_HASH_SIZE, fields.hashes,
               fields.count * STREAM_DISK_HASH_SIZE);
        *received += fields.count;
        from->any_hashes = true;
    }
    status = 0;
done:
    stream_reader_destroy(&reader);
    return status;
}

/* Every hashed disk's hashes arrived whole. */
static int check_hashes_complete(struct disk_sync_source *sync, const struct from_destination *from, struct error *err)
{
    for (unsigned i = 0; i < sync->disk_count; i++) {
        uint64_t expected = chunk_count(sync->disks[i].image->size);
        if (atomic_load(&sync->disks[i].mode) == DISK_SYNC_MODE_HASHES && from->received[i] != expected)
            return error_set(err, "disk %u: the destination sent %llu of %llu chunk hashes", i,
                             (unsigned long long)from->received[i], (unsigned long long)expected);
    }
    return 0;
}

static void report_progress(struct disk_sync_source *sync)
{
    if (sync->on_progress)
        sync->on_progress(sync->on_progress_opaque);
}

/* Ends the current run once it holds DISK_SYNC_RUN_BYTES. */
static int end_full_run(struct disk_sync_source *sync, struct stream_writer *writer, struct error *err)
{
    if (sync->run_bytes < DISK_SYNC_RUN_BYTES)
        return 0;
    if (migration_end_round(writer, err) < 0)
        return -1;
    sync->run_bytes = 0;
    return 0;
}

/* The full pass of a hashed disk: every chunk whose hash differs from the
 * destination's. */
static int send_differing_chunks(struct disk_sync_source *sync, struct stream_writer *writer, unsigned i,
                                 const uint8_t *hashes, struct error *err)
{
    uint8_t zero_hash[16];
    disk_sync_hash(zero_chunk, sizeof zero_chunk, zero_hash);
    struct disk_sync_source_disk *disk = &sync->disks[i];
    uint64_t size = disk->image->size;
    for (uint64_t chunk = 0; chunk < chunk_count(size); chunk++) {
        uint64_t offset = chunk * DISK_SYNC_CHUNK_SIZE;
        size_t length = chunk_length(size, chunk);
        uint8_t hash[16];
        bool hole = hash_if_hole(disk->image, offset, length, zero_hash, hash);
        if (!hole && read_image(disk, i, offset, sync->buffer, length, err) < 0)
            return -1;
        if (!hole)
            disk_sync_hash(sync->buffer, length, hash);
        if (memcmp(hash, hashes + chunk * STREAM_DISK_HASH_SIZE, 16) != 0) {
            /* A hole here and data there: the zeros go over. */
            if (hole)
                memset(sync->buffer, 0, length);
            atomic_fetch_add(&sync->chunks_differing, 1);
            if (send_data(sync, writer, i, offset, length, err) < 0)
                return -1;
        }
        atomic_fetch_add(&sync->bytes_compared, length);
        atomic_fetch_add(&sync->bytes_done, length);
        if (end_full_run(sync, writer, err) < 0)
            return -1;
        /* Every 1 MiB compared: the callback limits its own rate. */
        if (chunk % PROGRESS_CHUNKS == PROGRESS_CHUNKS - 1)
            report_progress(sync);
    }
    return 0;
}

/* Sends the blocks set in disk i's bitmap, in runs of at most one record;
 * full_pass: counts them as the first pass's work, ending runs on the way. */
static int send_bitmap_blocks(struct disk_sync_source *sync, struct stream_writer *writer, unsigned i, bool full_pass,
                              struct error *err)
{
    struct disk_sync_source_disk *disk = &sync->disks[i];
    uint64_t count = primary_disk_block_count(disk->primary);
    uint64_t size = disk->image->size;
    for (uint64_t block = disk_bit_next(disk->bitmap, 0, count); block < count;
         block = disk_bit_next(disk->bitmap, block, count)) {
        uint64_t first = block;
        while (block < count && block - first < BLOCKS_PER_WRITE && disk_bit_test(disk->bitmap, block))
            block++;
        uint64_t offset = first * PRIMARY_DISK_BLOCK_SIZE;
        uint64_t end = block * PRIMARY_DISK_BLOCK_SIZE < size ? block * PRIMARY_DISK_BLOCK_SIZE : size;
        size_t length = (size_t)(end - offset);
        if (read_image(disk, i, offset, sync->buffer, length, err) < 0 ||
            send_data(sync, writer, i, offset, length, err) < 0)
            return -1;
        if (full_pass) {
            atomic_fetch_add(&sync->tracked_blocks_sent, block - first);
            atomic_fetch_add(&sync->bytes_done, length);
            if (end_full_run(sync, writer, err) < 0)
                return -1;
            report_progress(sync);
        }
    }
    return 0;
}

/* The first pass of an incremental disk: the blocks written since the
 * history both sides share (read with the VM paused; a block written
 * after is in the dirty log too, and goes again in a round). */
static int send_tracked_blocks(struct disk_sync_source *sync, struct stream_writer *writer, unsigned i,
                               struct error *err)
{
    struct disk_sync_source_disk *disk = &sync->disks[i];
    machine_pause(sync->machine);
    memset(disk->bitmap, 0, primary_disk_bitmap_words(disk->primary) * sizeof *disk->bitmap);
    disk_tracker_read(disk->tracker, disk->bitmap);
    machine_resume(sync->machine);
    return send_bitmap_blocks(sync, writer, i, true, err);
}

/* The blocks written since the last call, VM running or paused (paused:
 * the caller paused it). The logs are read with the VM paused, so a
 * write is either wholly before (and in this round) or after (and in the
 * next); the blocks are read after. */
static int send_dirty_blocks(struct disk_sync_source *sync, struct stream_writer *writer, bool paused,
                             uint64_t *blocks_sent, struct error *err)
{
    uint64_t total = 0;
    if (!paused)
        machine_pause(sync->machine);
    for (unsigned i = 0; i < sync->disk_count; i++)
        if (sync->disks[i].primary)
            total += primary_disk_dirty_log_read_and_clear(sync->disks[i].primary, sync->disks[i].bitmap);
    if (!paused)
        machine_resume(sync->machine);
    *blocks_sent = total;
    for (unsigned i = 0; i < sync->disk_count && total; i++)
        if (sync->disks[i].primary && send_bitmap_blocks(sync, writer, i, false, err) < 0)
            return -1;
    return 0;
}

/* Decides each disk's mode from the destination's histories (none: a
 * destination of the version before, which sent its hashes at once) and
 * tells it the plan. */
static int send_plan(struct disk_sync_source *sync, struct stream_writer *writer, const struct from_destination *from,
                     struct error *err)
{
    uint64_t planned = 0;
    for (unsigned i = 0; i < sync->disk_count; i++) {
        struct disk_sync_source_disk *disk = &sync->disks[i];
        struct disk_history ours;
        bool incremental = from->histories && from->known[i] && disk->primary && disk->tracker &&
                           disk_tracker_history(disk->tracker, &ours) && disk_history_equal(&ours, &from->theirs[i]) &&
                           ours.disk_size == disk->image->size;
        atomic_store(&disk->mode, incremental ? DISK_SYNC_MODE_INCREMENTAL : DISK_SYNC_MODE_HASHES);
        if (incremental) {
            uint64_t *scratch = calloc(disk_tracker_bitmap_words(disk->tracker) + 1, sizeof *scratch);
            if (!scratch)
                return error_set(err, "out of memory for the disk sync's plan");
            machine_pause(sync->machine);
            uint64_t blocks = disk_tracker_read(disk->tracker, scratch);
            machine_resume(sync->machine);
            free(scratch);
            planned += blocks * PRIMARY_DISK_BLOCK_SIZE;
        } else {
            planned += disk->image->size;
        }
        if (from->histories && stream_write_disk_history(writer, i, incremental ? STREAM_DISK_HISTORY_INCREMENTAL : 0,
                                                         disk->image->size, sync->protection, 0, err) < 0)
            return -1;
    }
    atomic_store(&sync->bytes_planned, planned);
    atomic_store(&sync->planned, true);
    report_progress(sync);
    if (!from->histories)
        return 0;
    if (stream_write_checkpoint_end(writer, err) < 0 || stream_flush(writer, err) < 0)
        return error_prefix(err, "sending the disk sync's plan: ");
    return 0;
}

static int before_copy(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct disk_sync_source *sync = opaque;
    struct from_destination *from = calloc(1, sizeof *from);
    int status = -1;
    if (!from)
        return error_set(err, "out of memory for the disk sync");
    if (stream_flush(writer, err) < 0 || receive_from_destination(sync, writer->fd, from, err) < 0)
        goto done;
    if (from->histories && from->any_hashes) {
        error_set(err, "the destination sent disk hashes before the source's plan");
        goto done;
    }
    if (send_plan(sync, writer, from, err) < 0)
        goto done;
    /* With the plan sent, the hashes of the disks that need them. */
    if (from->histories && receive_from_destination(sync, writer->fd, from, err) < 0)
        goto done;
    if (check_hashes_complete(sync, from, err) < 0)
        goto done;
    sync->run_bytes = 0;
    for (unsigned i = 0; i < sync->disk_count; i++) {
        int sent = atomic_load(&sync->disks[i].mode) == DISK_SYNC_MODE_INCREMENTAL
                       ? send_tracked_blocks(sync, writer, i, err)
                       : send_differing_chunks(sync, writer, i, from->hashes[i], err);
        if (sent < 0)
            goto done;
    }
    if (migration_end_round(writer, err) < 0)
        goto done;
    atomic_store(&sync->compared, true);
    report_progress(sync);
    /* What the guest wrote during the pass, in rounds while they shrink. */
    for (unsigned round = 0; round < DISK_SYNC_MAX_DIRTY_ROUNDS; round++) {
        uint64_t blocks;
        sync->run_bytes = 0;
        if (send_dirty_blocks(sync, writer, false, &blocks, err) < 0 || migration_end_round(writer, err) < 0)
            goto done;
        atomic_fetch_add(&sync->dirty_rounds, 1);
        atomic_fetch_add(&sync->dirty_blocks_sent, blocks);
        report_progress(sync);
        if (blocks < DISK_SYNC_SMALL_DIRTY_BLOCKS)
            break;
    }
    status = 0;
done:
    for (unsigned i = 0; i < MACHINE_MAX_DISKS; i++)
        free(from->hashes[i]);
    free(from);
    return status;
}

static int round_blocks(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct disk_sync_source *sync = opaque;
    uint64_t blocks;
    if (send_dirty_blocks(sync, writer, false, &blocks, err) < 0)
        return -1;
    atomic_fetch_add(&sync->dirty_blocks_sent, blocks);
    return 0;
}

/* VM paused: the last blocks, and from here on the primary disks' epochs
 * hold exactly what the guest writes after the state the destination
 * gets (a COLO primary's first checkpoint sends them). The trackers'
 * history is the old protection's: the new one has its own from here on. */
static int stop_and_copy(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct disk_sync_source *sync = opaque;
    uint64_t blocks;
    if (send_dirty_blocks(sync, writer, true, &blocks, err) < 0)
        return -1;
    atomic_store(&sync->final_blocks, blocks);
    for (unsigned i = 0; i < sync->disk_count; i++) {
        if (sync->disks[i].primary) {
            primary_disk_dirty_log_enable(sync->disks[i].primary, false);
            primary_disk_epoch_clear(sync->disks[i].primary);
        }
        if (sync->disks[i].tracker)
            disk_tracker_stop(sync->disks[i].tracker);
    }
    atomic_store(&sync->done, true);
    report_progress(sync);
    return 0;
}

/* ---- destination ---- */

static int send_hashes(void *opaque, int fd, struct error *err);
static int write_run(void *opaque, const struct stream_reader *reader, bool final, struct error *err);

void disk_sync_destination_init(struct disk_sync_destination *sync, struct machine *machine)
{
    memset(sync, 0, sizeof *sync);
    sync->machine = machine;
    sync->companion = (struct migration_companion){
        .opaque = sync,
        .receive_start = send_hashes,
        .run_received = write_run,
    };
}

const struct migration_companion *disk_sync_destination_companion(struct disk_sync_destination *sync)
{
    return &sync->companion;
}

void disk_sync_destination_read_histories(struct disk_sync_destination *sync,
                                          void (*why)(void *opaque, unsigned disk, const char *reason), void *opaque)
{
    for (unsigned i = 0; i < machine_disk_count(sync->machine); i++) {
        struct block_backend *image = virtio_blk_backend(machine_disk(sync->machine, i));
        char reason[600];
        sync->history_known[i] = false;
        if (image->read_only)
            continue;
        sync->history_known[i] = disk_history_read(image->name, &sync->history[i], reason, sizeof reason);
        if (sync->history_known[i] && sync->history[i].disk_size != image->size) {
            snprintf(reason, sizeof reason, "its history is for another size");
            sync->history_known[i] = false;
        }
        if (!sync->history_known[i] && why)
            why(opaque, i, reason);
    }
}

/* The source's plan: a DISK_HISTORY per disk, then CHECKPOINT_END. */
static int receive_plan(struct disk_sync_destination *sync, int fd, struct error *err)
{
    struct stream_reader reader;
    if (stream_reader_init(&reader, fd, err) < 0)
        return -1;
    reader.disk_count = machine_disk_count(sync->machine);
    int status = -1;
    for (;;) {
        int readable = colo_wait_readable(fd, DISK_SYNC_HASH_TIMEOUT_MS);
        if (readable <= 0) {
            if (readable == 0)
                error_set(err, "the source sent no disk sync plan within %d s", DISK_SYNC_HASH_TIMEOUT_MS / 1000);
            else
                error_set_errno(err, "waiting for the source's disk sync plan");
            goto done;
        }
        struct stream_record record;
        int got = stream_read_record(&reader, &record, err);
        if (got < 0) {
            error_prefix(err, "the source's disk sync plan: ");
            goto done;
        }
        if (got == 0) {
            error_set(err, "the source closed the connection before sending its disk sync plan");
            goto done;
        }
        if (record.type == STREAM_RECORD_CHECKPOINT_END)
            break;
        if (record.type != STREAM_RECORD_DISK_HISTORY) {
            error_set(err, "the source sent a record of type %u where its disk sync plan was expected", record.type);
            goto done;
        }
        struct stream_disk_history fields;
        stream_disk_history_fields(record.body, &fields);
        bool incremental = (fields.flags & STREAM_DISK_HISTORY_INCREMENTAL) != 0;
        if (incremental && !sync->history_known[fields.disk]) {
            error_set(err, "the source plans to send disk %u's recent writes only, but its history is unknown here",
                      fields.disk);
            goto done;
        }
        sync->modes[fields.disk] = incremental ? DISK_SYNC_MODE_INCREMENTAL : DISK_SYNC_MODE_HASHES;
        memcpy(sync->protection, fields.protection, DISK_HISTORY_PROTECTION_SIZE);
        sync->protection_known = true;
    }
    for (unsigned i = 0; i < machine_disk_count(sync->machine); i++)
        if (sync->modes[i] == DISK_SYNC_MODE_UNDECIDED) {
            error_set(err, "the source's disk sync plan leaves out disk %u", i);
            goto done;
        }
    status = 0;
done:
    stream_reader_destroy(&reader);
    return status;
}

/* The images change from now on: their histories go first, so a crash
 * never leaves one that says "valid". */
static int invalidate_histories(struct disk_sync_destination *sync, struct error *err)
{
    for (unsigned i = 0; i < machine_disk_count(sync->machine); i++) {
        struct block_backend *image = virtio_blk_backend(machine_disk(sync->machine, i));
        if (!image->read_only && disk_history_invalidate(image->name, err) < 0)
            return error_prefix(err, "disk %u: ", i);
    }
    return 0;
}

/* The exchange (disk_sync.h): the histories, the source's plan, then the
 * chunk hashes of the disks the plan compares, then CHECKPOINT_END. */
static int send_hashes(void *opaque, int fd, struct error *err)
{
    struct disk_sync_destination *sync = opaque;
    double started = clock_monotonic_seconds();
    uint8_t zero_hash[16];
    disk_sync_hash(zero_chunk, sizeof zero_chunk, zero_hash);
    struct stream_writer writer;
    if (stream_writer_init(&writer, fd, err) < 0)
        return -1;
    uint8_t *chunk = malloc(DISK_SYNC_CHUNK_SIZE);
    uint8_t *hashes = malloc((size_t)HASHES_PER_RECORD * STREAM_DISK_HASH_SIZE);
    int status = -1;
    if (!chunk || !hashes) {
        error_set(err, "out of memory for the disk hashes");
        goto done;
    }
    static const uint8_t unknown[DISK_HISTORY_PROTECTION_SIZE];
    for (unsigned i = 0; i < machine_disk_count(sync->machine); i++) {
        struct block_backend *image = virtio_blk_backend(machine_disk(sync->machine, i));
        sync->modes[i] = DISK_SYNC_MODE_UNDECIDED;
        bool known = sync->history_known[i];
        if (stream_write_disk_history(&writer, i, known ? STREAM_DISK_HISTORY_KNOWN : 0, image->size,
                                      known ? sync->history[i].protection : unknown,
                                      known ? sync->history[i].checkpoint : 0, err) < 0)
            goto done;
    }
    if (stream_write_checkpoint_end(&writer, err) < 0 || stream_flush(&writer, err) < 0) {
        error_prefix(err, "sending the images' histories to the source: ");
        goto done;
    }
    if (receive_plan(sync, fd, err) < 0 || invalidate_histories(sync, err) < 0)
        goto done;
    for (unsigned i = 0; i < machine_disk_count(sync->machine); i++) {
        if (sync->modes[i] != DISK_SYNC_MODE_HASHES)
            continue;
        struct block_backend *image = virtio_blk_backend(machine_disk(sync->machine, i));
        uint64_t chunks = chunk_count(image->size), first = 0;
        for (uint64_t c = 0; c < chunks; c++) {
            size_t length = chunk_length(image->size, c);
            uint8_t *hash = hashes + (c - first) * STREAM_DISK_HASH_SIZE;
            if (!hash_if_hole(image, c * DISK_SYNC_CHUNK_SIZE, length, zero_hash, hash)) {
                int result = block_backend_read(image, c * DISK_SYNC_CHUNK_SIZE, chunk, length);
                if (result < 0) {
                    errno = -result;
                    error_set_errno(err, "disk %u (%s): reading it to compare with the source's", i, image->name);
                    goto done;
                }
                disk_sync_hash(chunk, length, hash);
            }
            sync->bytes_hashed += length;
            if (c + 1 - first == HASHES_PER_RECORD || c + 1 == chunks) {
                if (stream_write_disk_hashes(&writer, i, DISK_SYNC_CHUNK_SIZE, image->size, first, hashes,
                                             (size_t)(c + 1 - first), err) < 0)
                    goto done;
                first = c + 1;
            }
        }
    }
    if (stream_write_checkpoint_end(&writer, err) < 0 || stream_flush(&writer, err) < 0) {
        error_prefix(err, "sending the disk hashes to the source: ");
        goto done;
    }
    status = 0;
done:
    sync->hash_seconds = clock_monotonic_seconds() - started;
    free(chunk);
    free(hashes);
    stream_writer_destroy(&writer);
    return status;
}

/* The run's blocks, into the images (the VM does not run yet). The last
 * run's end flushes what was written: the source may stop its VM then. */
static int write_run(void *opaque, const struct stream_reader *reader, bool final, struct error *err)
{
    struct disk_sync_destination *sync = opaque;
    size_t cursor = 0, length;
    const uint8_t *body;
    while (stream_received_disk_write_next(reader, &cursor, &body, &length)) {
        struct stream_disk_write write;
        stream_disk_write_fields(body, length, &write);
        struct block_backend *image = virtio_blk_backend(machine_disk(sync->machine, write.disk));
        if (write.offset > image->size || write.length > image->size - write.offset)
            return error_set(
                err, "disk %u (%s): the source writes %zu bytes at %llu, past the image's end (%llu bytes)", write.disk,
                image->name, write.length, (unsigned long long)write.offset, (unsigned long long)image->size);
        if (image->read_only)
            return error_set(err,
                             "disk %u (%s) is read-only here, but differs from the source's image: give this side "
                             "a copy of it",
                             write.disk, image->name);
        int result = block_backend_write(image, write.offset, write.data, write.length);
        if (result < 0) {
            errno = -result;
            return error_set_errno(err, "disk %u (%s): writing %zu bytes at %llu", write.disk, image->name,
                                   write.length, (unsigned long long)write.offset);
        }
        sync->written[write.disk] = true;
        sync->bytes_written += write.length;
        sync->writes++;
    }
    if (!final)
        return 0;
    for (unsigned i = 0; i < machine_disk_count(sync->machine); i++) {
        if (!sync->written[i])
            continue;
        struct block_backend *image = virtio_blk_backend(machine_disk(sync->machine, i));
        int result = block_backend_flush(image);
        if (result < 0) {
            errno = -result;
            return error_set_errno(err, "disk %u (%s): flushing the copied image", i, image->name);
        }
    }
    return 0;
}
