/* The secondary's copy of the output the primary held behind the last
 * applied checkpoint (its OUTPUT records, output_buffer.h). The primary
 * releases that output after SVM_READY; if it dies first, the failover
 * sends it. The next CHECKPOINT_NEW proves the primary released it (it
 * resumed the PVM only after): then the copy is dropped.
 *
 * A checkpoint device of the secondary: load keeps a checkpoint's records,
 * postsuspend drops them, failover sends them (before the SVM's own held
 * output, which is newer). */
#ifndef COLO_PROXY_COMMITTED_OUTPUT_H
#define COLO_PROXY_COMMITTED_OUTPUT_H

#include <pthread.h>
#include <stdint.h>

#include "checkpoint_device.h"
#include "output_buffer.h"

struct machine;

struct committed_output {
    struct machine *machine;
    pthread_mutex_t lock;
    struct held_frame frames[OUTPUT_HELD_FRAMES_MAX];
    size_t count;
    uint64_t sent_at_failover;
};

extern const struct colo_checkpoint_device_ops committed_output_device;

void committed_output_init(struct committed_output *output, struct machine *machine);
void committed_output_destroy(struct committed_output *output);
uint64_t committed_output_sent_at_failover(struct committed_output *output);
/* A planned switchover: the primary released its output behind the last
 * checkpoint itself (as the next CHECKPOINT_NEW would prove): the copy
 * goes, and the failover sends nothing of it. */
void committed_output_forget(struct committed_output *output);

#endif
