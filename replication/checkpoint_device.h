/* Checkpoint devices: the parts of a replicated VM beyond RAM and machine
 * state that take part in every checkpoint (network output buffering, disk
 * replication; none is built yet). Each has the phases of the protocol:
 *
 *   setup       once, after the initial copy, before the VM first runs
 *   commit      at the start of every interval (the previous checkpoint is
 *               now the committed state)
 *   postsuspend after the VM paused for a checkpoint
 *   preresume   before the VM resumes after a checkpoint
 *   teardown    once, when replication ends (for any reason)
 *
 * Any of the functions may be NULL. setup, commit, postsuspend and
 * preresume return 0 or -1; a failure stops the loop like a stream error. */
#ifndef COLO_REPLICATION_CHECKPOINT_DEVICE_H
#define COLO_REPLICATION_CHECKPOINT_DEVICE_H

#include <stddef.h>

#include "error.h"

struct colo_checkpoint_device_ops {
    int (*setup)(void *opaque);
    int (*postsuspend)(void *opaque);
    int (*preresume)(void *opaque);
    int (*commit)(void *opaque);
    void (*teardown)(void *opaque);
};

struct colo_checkpoint_device {
    const char *name;                  /* for error messages */
    const struct colo_checkpoint_device_ops *ops;
    void *opaque;
};

#define COLO_MAX_CHECKPOINT_DEVICES 8

struct colo_checkpoint_devices {
    struct colo_checkpoint_device devices[COLO_MAX_CHECKPOINT_DEVICES];
    size_t count;
    size_t set_up;                     /* how many have had setup (teardown undoes these) */
};

enum colo_device_phase {
    COLO_DEVICE_SETUP,
    COLO_DEVICE_COMMIT,
    COLO_DEVICE_POSTSUSPEND,
    COLO_DEVICE_PRERESUME,
};

int colo_checkpoint_devices_add(struct colo_checkpoint_devices *devices, const char *name,
                                const struct colo_checkpoint_device_ops *ops, void *opaque,
                                struct error *err);
/* Calls the phase on every device in order; stops at the first failure,
 * whose error names the device and the phase. */
int colo_checkpoint_devices_call(struct colo_checkpoint_devices *devices, enum colo_device_phase phase,
                                 struct error *err);
/* Tears down the devices that were set up, in reverse order. */
void colo_checkpoint_devices_teardown(struct colo_checkpoint_devices *devices);

#endif
