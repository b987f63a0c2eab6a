#include "checkpoint_device.h"

#include <stdio.h>

int colo_checkpoint_devices_add(struct colo_checkpoint_devices *devices, const char *name,
                                const struct colo_checkpoint_device_ops *ops, void *opaque, struct error *err)
{
    if (devices->count >= COLO_MAX_CHECKPOINT_DEVICES)
        return error_set(err, "cannot add checkpoint device %s: at most %d", name, COLO_MAX_CHECKPOINT_DEVICES);
    devices->devices[devices->count++] = (struct colo_checkpoint_device){ name, ops, opaque };
    return 0;
}

static const char *phase_name(enum colo_device_phase phase)
{
    switch (phase) {
    case COLO_DEVICE_SETUP:
        return "setup";
    case COLO_DEVICE_COMMIT:
        return "commit";
    case COLO_DEVICE_POSTSUSPEND:
        return "postsuspend";
    case COLO_DEVICE_PRERESUME:
        return "preresume";
    }
    return "?";
}

int colo_checkpoint_devices_call(struct colo_checkpoint_devices *devices, enum colo_device_phase phase,
                                 struct error *err)
{
    for (size_t i = 0; i < devices->count; i++) {
        const struct colo_checkpoint_device *device = &devices->devices[i];
        int (*function)(void *) = NULL;
        switch (phase) {
        case COLO_DEVICE_SETUP:
            function = device->ops->setup;
            break;
        case COLO_DEVICE_COMMIT:
            function = device->ops->commit;
            break;
        case COLO_DEVICE_POSTSUSPEND:
            function = device->ops->postsuspend;
            break;
        case COLO_DEVICE_PRERESUME:
            function = device->ops->preresume;
            break;
        }
        if (function && function(device->opaque) < 0)
            return error_set(err, "checkpoint device %s failed in %s", device->name, phase_name(phase));
        if (phase == COLO_DEVICE_SETUP)
            devices->set_up = i + 1;
    }
    return 0;
}

/* Puts "checkpoint device NAME failed in PHASE: " before the device's own
 * message. */
static int device_failed(struct error *err, const struct colo_checkpoint_device *device, const char *phase,
                         const struct error *cause)
{
    return error_set(err, "checkpoint device %s failed in %s: %s", device->name, phase, cause->message);
}

/* The phases that write records: the device's function for one of them. */
enum writer_phase { WRITER_STREAM, WRITER_PRECOPY, WRITER_SAVE, WRITER_INITIAL_SAVE };

static int call_writer_phase(struct colo_checkpoint_devices *devices, enum writer_phase phase,
                             struct stream_writer *writer, struct error *err)
{
    static const char *const names[] = { "stream", "precopy", "save", "initial_save" };
    for (size_t i = 0; i < devices->count; i++) {
        const struct colo_checkpoint_device *device = &devices->devices[i];
        const struct colo_checkpoint_device_ops *ops = device->ops;
        int (*function)(void *, struct stream_writer *, struct error *) = phase == WRITER_STREAM    ? ops->stream
                                                                          : phase == WRITER_PRECOPY ? ops->precopy
                                                                          : phase == WRITER_SAVE    ? ops->save
                                                                                                    : ops->initial_save;
        struct error cause = { "" };
        if (function && function(device->opaque, writer, &cause) < 0)
            return device_failed(err, device, names[phase], &cause);
    }
    return 0;
}

int colo_checkpoint_devices_stream(struct colo_checkpoint_devices *devices, struct stream_writer *writer,
                                   struct error *err)
{
    return call_writer_phase(devices, WRITER_STREAM, writer, err);
}

bool colo_checkpoint_devices_streaming(const struct colo_checkpoint_devices *devices)
{
    for (size_t i = 0; i < devices->count; i++)
        if (devices->devices[i].ops->stream)
            return true;
    return false;
}

int colo_checkpoint_devices_precopy(struct colo_checkpoint_devices *devices, struct stream_writer *writer,
                                    struct error *err)
{
    return call_writer_phase(devices, WRITER_PRECOPY, writer, err);
}

int colo_checkpoint_devices_save(struct colo_checkpoint_devices *devices, struct stream_writer *writer,
                                 struct error *err)
{
    return call_writer_phase(devices, WRITER_SAVE, writer, err);
}

int colo_checkpoint_devices_initial_save(struct colo_checkpoint_devices *devices, struct stream_writer *writer,
                                         struct error *err)
{
    return call_writer_phase(devices, WRITER_INITIAL_SAVE, writer, err);
}

int colo_checkpoint_devices_receive(void *opaque, const uint8_t *body, size_t length, struct error *err)
{
    struct colo_checkpoint_devices *devices = opaque;
    for (size_t i = 0; i < devices->count; i++) {
        const struct colo_checkpoint_device *device = &devices->devices[i];
        struct error cause = { "" };
        if (device->ops->receive && device->ops->receive(device->opaque, body, length, &cause) < 0)
            return device_failed(err, device, "receive", &cause);
    }
    return 0;
}

static int call_reader_phase(struct colo_checkpoint_devices *devices, bool initial, const struct stream_reader *reader,
                             struct error *err)
{
    for (size_t i = 0; i < devices->count; i++) {
        const struct colo_checkpoint_device *device = &devices->devices[i];
        int (*function)(void *, const struct stream_reader *, struct error *) = initial ? device->ops->initial_load
                                                                                        : device->ops->load;
        struct error cause = { "" };
        if (function && function(device->opaque, reader, &cause) < 0)
            return device_failed(err, device, initial ? "initial_load" : "load", &cause);
    }
    return 0;
}

int colo_checkpoint_devices_load(struct colo_checkpoint_devices *devices, const struct stream_reader *reader,
                                 struct error *err)
{
    return call_reader_phase(devices, false, reader, err);
}

int colo_checkpoint_devices_initial_load(struct colo_checkpoint_devices *devices, const struct stream_reader *reader,
                                         struct error *err)
{
    return call_reader_phase(devices, true, reader, err);
}

void colo_checkpoint_devices_release(struct colo_checkpoint_devices *devices)
{
    for (size_t i = 0; i < devices->count; i++)
        if (devices->devices[i].ops->release)
            devices->devices[i].ops->release(devices->devices[i].opaque);
}

int colo_checkpoint_devices_failover(struct colo_checkpoint_devices *devices, struct error *err)
{
    int result = 0;
    for (size_t i = 0; i < devices->count; i++) {
        const struct colo_checkpoint_device *device = &devices->devices[i];
        struct error cause = { "" };
        if (device->ops->failover && device->ops->failover(device->opaque, &cause) < 0 && result == 0)
            result = device_failed(err, device, "failover", &cause);
    }
    return result;
}

void colo_checkpoint_devices_teardown(struct colo_checkpoint_devices *devices)
{
    for (size_t i = devices->set_up; i > 0; i--) {
        const struct colo_checkpoint_device *device = &devices->devices[i - 1];
        if (device->ops->teardown)
            device->ops->teardown(device->opaque);
    }
    devices->set_up = 0;
}
