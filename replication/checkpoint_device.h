/* Checkpoint devices: the parts of a replicated VM beyond RAM and machine
 * state that take part in every checkpoint (the proxy's output buffer and
 * mirror, later disk replication). They are the one way to extend the
 * loops: each has the phases of the protocol:
 *
 *   initial_save  primary, the initial copy's stop-and-copy (VM paused):
 *               records that go with the VM's state into the new SVM (a
 *               survivor's shifted connections, which the SVM needs from
 *               its first instruction on)
 *   initial_load  secondary, once the initial copy was applied whole,
 *               before setup: the device's records of its last run
 *   setup       once, after the initial copy, before the VM first runs
 *   commit      at the start of every interval (the previous checkpoint is
 *               now the committed state)
 *   stream      primary, between checkpoints (the VM running), on the
 *               loop's thread, every colo_primary_options.stream_interval_ms
 *               at most: records that go ahead of the next checkpoint (a
 *               disk's writes so far); the secondary's receive takes them
 *               as they arrive
 *   precopy     primary, after CHECKPOINT_NEW with the VM still running
 *               (the pre-copy, colo_primary_options.precopy): records that
 *               go in the checkpoint ahead of the pause, so it sends less
 *               (a disk's writes of the epoch so far)
 *   postsuspend after the VM paused for a checkpoint
 *   save        primary, VM paused: the device's part of the checkpoint, as
 *               stream records after the pages and before the machine state
 *   receive     secondary, on the loop's thread: a DISK_WRITE record as
 *               soon as it is read, streamed between checkpoints (the SVM
 *               running) or inside one (the SVM paused); the checkpoint
 *               may still fail: then load never comes, and failover must
 *               drop what receive took
 *   load        secondary, once a checkpoint was applied whole and before
 *               SVM_READY: the device's records of that checkpoint
 *   release     primary, VM paused, after SVM_READY: the SVM holds the
 *               checkpoint, so what the PVM did before it may be shown to
 *               the world (DESIGN.md, output commit)
 *   preresume   before the VM resumes after a checkpoint
 *   failover    secondary, when the SVM takes over (after the loop ended
 *               and the SVM runs from a consistent state)
 *   teardown    once, when replication ends (for any reason)
 *
 * Any of the functions may be NULL. The phases that return int give 0 or
 * -1; a failure stops the loop like a stream error. */
#ifndef COLO_REPLICATION_CHECKPOINT_DEVICE_H
#define COLO_REPLICATION_CHECKPOINT_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct stream_reader;
struct stream_writer;

struct colo_checkpoint_device_ops {
    int (*setup)(void *opaque);
    int (*postsuspend)(void *opaque);
    int (*preresume)(void *opaque);
    int (*commit)(void *opaque);
    int (*stream)(void *opaque, struct stream_writer *writer, struct error *err);
    int (*precopy)(void *opaque, struct stream_writer *writer, struct error *err);
    int (*save)(void *opaque, struct stream_writer *writer, struct error *err);
    int (*receive)(void *opaque, const uint8_t *body, size_t length, struct error *err);
    int (*load)(void *opaque, const struct stream_reader *reader, struct error *err);
    int (*initial_save)(void *opaque, struct stream_writer *writer, struct error *err);
    int (*initial_load)(void *opaque, const struct stream_reader *reader, struct error *err);
    void (*release)(void *opaque);
    int (*failover)(void *opaque, struct error *err);
    void (*teardown)(void *opaque);
};

struct colo_checkpoint_device {
    const char *name; /* for error messages */
    const struct colo_checkpoint_device_ops *ops;
    void *opaque;
};

#define COLO_MAX_CHECKPOINT_DEVICES 8

struct colo_checkpoint_devices {
    struct colo_checkpoint_device devices[COLO_MAX_CHECKPOINT_DEVICES];
    size_t count;
    size_t set_up; /* how many have had setup (teardown undoes these) */
};

enum colo_device_phase {
    COLO_DEVICE_SETUP,
    COLO_DEVICE_COMMIT,
    COLO_DEVICE_POSTSUSPEND,
    COLO_DEVICE_PRERESUME,
};

int colo_checkpoint_devices_add(struct colo_checkpoint_devices *devices, const char *name,
                                const struct colo_checkpoint_device_ops *ops, void *opaque, struct error *err);
/* Calls the phase on every device in order; stops at the first failure,
 * whose error names the device and the phase. */
int colo_checkpoint_devices_call(struct colo_checkpoint_devices *devices, enum colo_device_phase phase,
                                 struct error *err);
/* The phases with arguments: each device in order; the first failure stops
 * and its error names the device. */
int colo_checkpoint_devices_stream(struct colo_checkpoint_devices *devices, struct stream_writer *writer,
                                   struct error *err);
/* Whether any device has a stream phase. */
bool colo_checkpoint_devices_streaming(const struct colo_checkpoint_devices *devices);
int colo_checkpoint_devices_precopy(struct colo_checkpoint_devices *devices, struct stream_writer *writer,
                                    struct error *err);
int colo_checkpoint_devices_save(struct colo_checkpoint_devices *devices, struct stream_writer *writer,
                                 struct error *err);
/* For stream_reader.disk_write_sink: every device's receive, in order
 * (opaque: the struct colo_checkpoint_devices). */
int colo_checkpoint_devices_receive(void *opaque, const uint8_t *body, size_t length, struct error *err);
int colo_checkpoint_devices_load(struct colo_checkpoint_devices *devices, const struct stream_reader *reader,
                                 struct error *err);
int colo_checkpoint_devices_initial_save(struct colo_checkpoint_devices *devices, struct stream_writer *writer,
                                         struct error *err);
int colo_checkpoint_devices_initial_load(struct colo_checkpoint_devices *devices, const struct stream_reader *reader,
                                         struct error *err);
void colo_checkpoint_devices_release(struct colo_checkpoint_devices *devices);
/* Every device's failover, even after one failed (the VM runs here now
 * whatever happens; each device does what it can); the first error. */
int colo_checkpoint_devices_failover(struct colo_checkpoint_devices *devices, struct error *err);
/* Tears down the devices that were set up, in reverse order. */
void colo_checkpoint_devices_teardown(struct colo_checkpoint_devices *devices);

#endif
