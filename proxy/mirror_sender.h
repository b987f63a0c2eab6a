/* The primary's side of the mirror: every frame the PVM reads from its
 * network backend goes to the SVM too, over the mirror connection
 * (mirror_framing.h), and the heartbeat shares that connection. A checkpoint
 * device: its setup (after the initial copy, the SVM built) starts the
 * mirroring. */
#ifndef COLO_PROXY_MIRROR_SENDER_H
#define COLO_PROXY_MIRROR_SENDER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint_device.h"

struct machine;

struct failure_detector;

struct mirror_sender {
    struct machine *machine;
    int fd;
    /* The watch: the secondary's beats coming back on the connection. */
    struct failure_detector *detector;
    atomic_bool watch_stop;
    pthread_t watch_thread;
    bool watching;
    atomic_uint_fast64_t beats_heard;
    pthread_mutex_t lock;  /* one writer at a time on fd: frames and heartbeats */
    atomic_bool mirroring; /* the SVM exists: send it the PVM's input */
    atomic_bool broken;    /* a write failed: stop writing (the loop notices the loss) */
    atomic_uint_fast64_t frames, dropped;
};

/* The device: setup starts the mirroring. */
extern const struct colo_checkpoint_device_ops mirror_sender_device;

/* Observes every NIC's backend input (machine paused by the caller or not
 * yet running); nothing is sent before the device's setup. */
void mirror_sender_init(struct mirror_sender *sender, struct machine *machine, int fd);
void mirror_sender_destroy(struct mirror_sender *sender);
/* Sends one heartbeat (cluster/heartbeat.h's send_beat). */
bool mirror_sender_send_heartbeat(void *sender);
/* No more frames (the end of protection). */
void mirror_sender_stop(struct mirror_sender *sender);
/* The other direction: the secondary sends its own heartbeats back on the
 * mirror connection (mirror_reader_send_heartbeat), so the primary learns
 * of a hung secondary within the detector's timeout instead of blocking
 * in a checkpoint. Starts a thread that reads them, tells the detector
 * what it hears, checks it every few ms, and declares the secondary dead
 * when the connection closes or carries anything but beats. */
int mirror_sender_watch_start(struct mirror_sender *sender, struct failure_detector *detector, struct error *err);
void mirror_sender_watch_stop(struct mirror_sender *sender);

#endif
