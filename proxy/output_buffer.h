/* The VM's network output while it is replicated: every frame its NICs
 * send passes the transmit hook, which passes it to the backend or holds
 * it.
 *
 * Primary: from the device's setup on, frames are held until the SVM has
 * the checkpoint that follows them (the release phase, after SVM_READY:
 * DESIGN.md's output commit). The PVM may run on while the secondary
 * applies a checkpoint (colo_primary_options.resume_before_ready_bytes), so the
 * checkpoint's pause (postsuspend) marks how many of the held frames are
 * its own, and the release lets out only those. The first frame held
 * after that mark asks the primary's loop for a checkpoint within
 * output_delay_ms; a copy of
 * what is held travels with each checkpoint as OUTPUT records (the save
 * phase), for the secondary to send if the primary dies before releasing.
 *
 * Secondary: the SVM must not talk to the network, but its output since the
 * last checkpoint is what the VM said in the timeline the SVM continues
 * after a failover: dropped when the next checkpoint replaces that timeline
 * (preresume), sent when the SVM takes over (failover; so a client waiting
 * for a reply the dead primary held gets it at once, not at its next TCP
 * retransmission).
 *
 * Bounded: a secondary that stops answering costs dropped frames (counted;
 * TCP retransmits them), not host memory. */
#ifndef COLO_PROXY_OUTPUT_BUFFER_H
#define COLO_PROXY_OUTPUT_BUFFER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint_device.h"
#include "compare_capture.h"
#include "output_compare.h"
#include "tcp_sequence_shift.h"
#include "virtio_net.h"

struct machine;
struct colo_primary;
struct mirror_reader;

/* How a primary releases its output (issue 14, docs/proxy.md). */
enum output_mode {
    /* Every frame waits for the checkpoint that follows it (Remus-like). */
    OUTPUT_MODE_BUFFERED,
    /* A frame leaves as soon as the SVM sent its twin; a difference or a
     * frame without a twin after compare_timeout_ms asks for a
     * checkpoint. A checkpoint storm falls back to buffered for a while. */
    OUTPUT_MODE_COMPARE,
};

const char *output_mode_name(enum output_mode mode);

struct output_compare_options {
    enum output_mode mode;
    unsigned compare_timeout_ms;
    /* A storm: storm_checkpoints checkpoints forced by differences
     * (timeouts included) within storm_window_ms, while fewer than half of
     * the frames released since the first of them left by a match (a bulk
     * transfer whose timing differs now and then still matches nearly
     * every frame, and buffering would hold them all), or three times as
     * many checkpoints whatever matched. Then output is released per
     * checkpoint for fallback_ms, and compared again after. */
    unsigned storm_checkpoints, storm_window_ms, fallback_ms;
};

#define OUTPUT_COMPARE_DEFAULT_TIMEOUT_MS 5
#define OUTPUT_STORM_CHECKPOINTS 20
#define OUTPUT_STORM_WINDOW_MS 1000
#define OUTPUT_FALLBACK_MS 2000
#define OUTPUT_STORM_RING 64 /* storm_checkpoints is at most this */

void output_compare_options_defaults(struct output_compare_options *options);

#define OUTPUT_HELD_FRAMES_MAX 8192
#define OUTPUT_HELD_BYTES_MAX (64u << 20)
/* A secondary's failover sends, of each flow's held frames, the newest
 * this many that carry data (and the newest TCP segment without), at most
 * OUTPUT_FAILOVER_FRAMES_MAX such frames in all; TCP's SYN, FIN and RST
 * and fragments always (secondary_failover). */
#define OUTPUT_MATCH_WAIT_HISTORY 1024
#define OUTPUT_FAILOVER_FRAMES_PER_FLOW 8
#define OUTPUT_FAILOVER_FRAMES_MAX 512

struct held_frame {
    struct virtio_net *net;
    struct virtio_net_header header;
    size_t length;
    uint8_t *data;
    uint64_t handle;     /* the comparator's (OUTPUT_COMPARE_HANDLE_NONE: not compared) */
    bool matched;        /* its twin came: it leaves at the next chance */
    uint64_t held_at_us; /* clock_monotonic_us when the guest sent it */
};

struct output_buffer_stats {
    uint64_t held_now, held_total, released_total, dropped_full;
    uint64_t dropped_by_checkpoint; /* secondary: SVM frames a checkpoint made void */
    uint64_t released_at_failover;  /* secondary: SVM frames sent at the failover */
    uint64_t skipped_at_failover;   /* ... and older frames of their flows left out */
    uint64_t releases_refused;      /* primary: releases the gate said no to */
    uint64_t dropped_muted;         /* frames dropped after output_buffer_mute */
    /* Primary, compare mode. */
    uint64_t released_matched;          /* frames that left because the SVM sent the same */
    uint64_t checkpoints_by_difference; /* checkpoints a difference or a timeout asked for */
    uint64_t storms;                    /* falls back to buffered */
    uint64_t secondary_frames_stale;    /* SVM frames of an epoch already checkpointed: ignored */
    uint64_t secondary_frames_compared; /* SVM frames given to the comparator */
    uint64_t shift_carried;             /* a survivor's shifted connections the last checkpoint carried */
    /* How long the frames released by a match waited for their twins:
     * percentiles of the last OUTPUT_MATCH_WAIT_HISTORY (0 before any). */
    uint64_t match_wait_p50_us, match_wait_p99_us;
    enum output_mode mode_now; /* what it does now */
    char mode_reason[160];     /* ... and why */
    /* Secondary: the TCP sequence shift (tcp_sequence_shift.h), if it
     * has one (shifting). */
    bool shifting;
    struct tcp_sequence_shift_counters shift;
};

struct output_buffer {
    struct machine *machine;
    pthread_mutex_t lock; /* guards everything below */
    bool holding;
    struct colo_primary *primary; /* primary: asked for checkpoints; NULL on a secondary */
    unsigned output_delay_ms;
    bool muted; /* stood down: nothing leaves, ever */
    /* Asked right before each release on a primary (the cluster's word:
     * takeover_guard_may_release); NULL: always. */
    bool (*may_release)(void *opaque);
    void *may_release_opaque;
    struct held_frame held[OUTPUT_HELD_FRAMES_MAX];
    size_t held_count, held_bytes;
    /* Primary: of the held frames, how many the checkpoint in progress
     * covers (set at its pause; the rest came after the PVM resumed). */
    size_t checkpoint_frames;
    struct output_buffer_stats stats;

    /* Primary, compare mode (output_buffer_set_compare). */
    struct output_compare_options compare_options;
    struct output_compare compare;
    bool compare_ready;                                 /* compare is initialized */
    uint64_t match_waits_us[OUTPUT_MATCH_WAIT_HISTORY]; /* a ring: frame n at n % the size */
    uint64_t match_waits;                               /* frames released by a match, ever */
    bool comparing;                /* compare mode and not fallen back: PVM frames go to the comparator */
    bool difference_seen;          /* this epoch: a difference or timeout asked for its checkpoint */
    uint64_t epochs_expected;      /* the SVM's boundaries this protection should have sent by now */
    uint64_t boundaries_heard;     /* ... and has: equal means its frames are of the PVM's epoch */
    uint64_t svm_epoch_started_us; /* when the latest boundary came: the SVM runs the latest checkpoint */
    uint64_t fallback_until_us;
    uint64_t deadline_us; /* what the primary's loop was told last */
    /* The last checkpoints forced by differences: when, and the frames
     * released in all and by a match until then. */
    uint64_t storm_times_us[OUTPUT_STORM_RING];
    uint64_t storm_released[OUTPUT_STORM_RING], storm_matched[OUTPUT_STORM_RING];
    unsigned storm_next;
    char mode_reason[160];
    bool mode_changed;              /* since output_buffer_take_mode_change */
    struct compare_capture capture; /* output_buffer_capture_compare; closed by default */

    /* Secondary (output_buffer_set_secondary_return): the SVM's frames are
     * shifted onto the PVM's sequence space and sent back to the primary. */
    struct mirror_reader *return_to;
    struct tcp_sequence_shift *shift; /* NULL: none; stays after a failover */
    uint8_t *shift_scratch;           /* a frame passed after the failover, shifted */
    uint8_t *shift_entries;           /* a primary that took over: the TCP_SHIFT a checkpoint carries */
};

/* The primary's device (setup: hold; postsuspend: mark; save: OUTPUT
 * records; release) and the
 * secondary's (preresume: drop; failover: send and pass). */
extern const struct colo_checkpoint_device_ops output_buffer_primary_device;
extern const struct colo_checkpoint_device_ops output_buffer_secondary_device;

/* Installs the transmit hook on every NIC (with the machine paused or not
 * yet running). holding: hold from now on (a secondary: at once); else
 * pass until the primary's device setup. */
void output_buffer_init(struct output_buffer *buffer, struct machine *machine, bool holding);
/* Primary: the loop asked for checkpoints by held output (before setup). */
void output_buffer_set_primary(struct output_buffer *buffer, struct colo_primary *primary, unsigned output_delay_ms);
/* The bounds of a primary's comparator (also the captured flows' replay). */
struct output_compare_limits output_buffer_compare_limits(void);
/* Primary, before its device's setup: how output is released. Compare
 * mode allocates the comparator. */
int output_buffer_set_compare(struct output_buffer *buffer, const struct output_compare_options *options,
                              struct error *err);
/* Primary, compare mode, before its device's setup: records what the
 * comparator is given into a pcapng file (compare_capture.h) until the
 * buffer is destroyed. For the tests' captured flows. */
int output_buffer_capture_compare(struct output_buffer *buffer, const char *path, struct error *err);
/* Primary, the mirror sender's watch thread: a frame the SVM sent, and the
 * SVM's checkpoint boundary (mirror_framing.h). */
void output_buffer_secondary_frame(void *buffer, unsigned nic, const struct virtio_net_header *header,
                                   const uint8_t *frame, size_t length);
void output_buffer_secondary_boundary(void *buffer);
/* Primary, the loop's thread after a checkpoint: whether the mode changed
 * since the last call, and why (for an event). */
bool output_buffer_take_mode_change(struct output_buffer *buffer, enum output_mode *mode, char *reason, size_t size);
/* Primary: the comparator's counters (zero when it never compared). */
void output_buffer_get_compare_counters(struct output_buffer *buffer, struct output_compare_counters *counters);
/* Secondary, before the machine runs: the SVM's frames go back to the
 * primary through the mirror reader, shifted (TCP sequence numbers), and
 * frames into the SVM are shifted back: the mirrored ones and, after a
 * failover, the NICs' own. */
int output_buffer_set_secondary_return(struct output_buffer *buffer, struct mirror_reader *reader, struct error *err);
/* A survivor (its host took over and shifts some of its VM's TCP
 * connections, tcp_sequence_shift.h) whose VM moves by a plain live
 * migration: its shifted connections as one TCP_SHIFT record, written
 * with the VM paused; nothing when there are none. Returns how many
 * connections it wrote, or -1 with err set. */
int output_buffer_save_shift(struct output_buffer *buffer, struct stream_writer *writer, struct error *err);
/* The destination of that migration, its VM not yet running, the buffer
 * passing frames (output_buffer_init with holding false): if the run the
 * reader received last has a TCP_SHIFT record, the VM's frames are shifted
 * from now on as the survivor shifted them, both ways. Returns how many
 * connections it took (0: no record), or -1 with err set (a table no
 * survivor could send). */
int output_buffer_adopt_shift(struct output_buffer *buffer, const struct stream_reader *reader, struct error *err);

/* Primary: a release whose gate says no keeps the frames held (they leave
 * with a later release once the gate agrees, or never). */
void output_buffer_set_release_gate(struct output_buffer *buffer, bool (*may_release)(void *opaque), void *opaque);
/* Sends what is held (in order) and passes frames from now on: the end of
 * protection on a primary. */
void output_buffer_release_and_pass(struct output_buffer *buffer);
/* Drops what is held and every frame from now on: a copy that stood down
 * (another one owns the VM) must never be heard again. */
void output_buffer_mute(struct output_buffer *buffer);
/* Frees what is held; the hooks stay installed and pass frames. */
void output_buffer_destroy(struct output_buffer *buffer);
void output_buffer_get_stats(struct output_buffer *buffer, struct output_buffer_stats *stats);

/* Sends frames to their NICs' backends, in order, and frees them. */
void held_frames_send_and_free(struct held_frame *frames, size_t count);

#endif
