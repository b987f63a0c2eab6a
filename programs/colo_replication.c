#include "colo_replication.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "colo_primary.h"
#include "colo_secondary.h"
#include "control_client.h"
#include "live_migration.h"
#include "virtio_net.h"

/* ---- the mirror connection's framing -------------------------------------
 *
 * Primary -> secondary, one message per frame the PVM read from its TAP:
 *   u32 little-endian word: bits 0..23 the frame's length, bits 24..31 the
 *       NIC's index (a frame is at most VIRTIO_NET_MAX_FRAME < 2^24 bytes)
 *   the frame
 *   the 12-byte virtio-net header the TAP gave with it (wire form)
 * A word of 0 (no frame, no header) is a heartbeat: the primary sends one
 * every HEARTBEAT_INTERVAL_MS, whatever else it sends, and a secondary that
 * hears nothing for its heartbeat timeout takes the primary for dead. The
 * mirror connection carries it (not the replication connection) because
 * that one is silent for as long as a checkpoint interval or busy for as
 * long as a checkpoint, while a heartbeat must keep its pace. */
#define HEARTBEAT_INTERVAL_MS 20
#define MIRROR_WORD_SIZE 4
#define MIRROR_LENGTH_MASK 0xffffffu
#define MIRROR_MESSAGE_MAX (MIRROR_WORD_SIZE + VIRTIO_NET_MAX_FRAME + VIRTIO_NET_HEADER_SIZE)

/* The PVM's held output: bounded, so a secondary that stops answering
 * costs dropped frames (counted; TCP retransmits them), not host memory. */
#define HELD_FRAMES_MAX 8192
#define HELD_BYTES_MAX (64u << 20)
/* Without the comparing proxy every frame of the PVM waits for the next
 * checkpoint; a held frame asks for one within this (protect
 * --output-delay). 0, at once, measured best for both latency and
 * throughput (docs/benchmarks.md). */
#define COLO_DEFAULT_OUTPUT_DELAY_MS 0
/* Mirrored frames waiting for the SVM's machine thread. */
#define MIRROR_QUEUE_MAX 1024

struct mirrored_frame {
    unsigned nic;
    struct virtio_net_header header;
    size_t length;
    uint8_t *data;
};

/* What the transmit hook does with a frame the guest sent. */
enum nic_mode {
    NIC_PASS,                           /* to the TAP (no replication, or the primary lost its secondary) */
    /* Queue the frames. Primary: until the SVM has the checkpoint that
     * follows them (then released). Secondary: the SVM must not talk to
     * the network, but its output since the last checkpoint is what the
     * VM said in the timeline the SVM continues after a failover: dropped
     * when the next checkpoint replaces that timeline, sent when the SVM
     * takes over (so a client waiting for a reply the dead primary held
     * gets it at once, not at its next TCP retransmission). */
    NIC_HOLD,
};

struct held_frame {
    struct virtio_net *net;
    struct virtio_net_header header;
    size_t length;
    uint8_t *data;
};

enum role { ROLE_NONE, ROLE_PRIMARY, ROLE_SECONDARY };

/* One per process: a colo process runs one VM, which is at most one side
 * of one replication. */
struct replication {
    struct vm_control *control;
    char name[64];
    pthread_mutex_t lock;               /* guards everything below but the atomics */
    enum role role;
    const char *phase;                  /* what status says beside the loop's state */
    struct machine *machine;

    /* Both sides: the transmit hook. */
    enum nic_mode nic_mode;
    struct held_frame held[HELD_FRAMES_MAX];
    size_t held_count, held_bytes;
    uint64_t held_total, released_total, dropped_held;
    uint64_t dropped_secondary;         /* SVM frames a checkpoint made void */
    uint64_t svm_output_released;       /* SVM frames sent at the failover */
    /* Secondary: the output the primary held behind the last applied
     * checkpoint (its OUTPUT records). The primary releases it after
     * SVM_READY; if it dies first, the failover sends it. The next
     * CHECKPOINT_NEW proves it was released: then it is dropped. */
    struct held_frame committed[HELD_FRAMES_MAX];
    size_t committed_count;
    uint64_t pvm_output_released;       /* of those, sent at the failover */

    /* Primary. */
    char destination[300];
    unsigned interval_ms;
    unsigned output_delay_ms;           /* held output asks for a checkpoint within this */
    struct colo_primary primary;
    bool primary_initialized;
    int replication_fd, mirror_fd;
    pthread_mutex_t mirror_lock;        /* one writer at a time on mirror_fd: frames and heartbeats */
    atomic_bool mirroring;              /* the SVM exists: send it the PVM's input */
    atomic_bool mirror_broken;          /* a write failed: stop writing (the loop notices the loss) */
    atomic_uint_fast64_t mirrored_frames, mirror_dropped;
    pthread_t primary_thread;
    pthread_t heartbeat_thread;
    atomic_bool heartbeat_stop;

    /* Secondary. */
    struct colo_secondary secondary;
    bool secondary_initialized;
    int heartbeat_timeout_ms;
    /* The mirror reader thread reads mirror_fd (frames and heartbeats),
     * queues frames and wakes the SVM's machine thread through
     * frames_ready (a machine fd watch), which delivers them. */
    pthread_t mirror_reader;
    atomic_bool svm_built;              /* after the initial copy: frames go in from now on */
    atomic_bool reader_stop;
    int frames_ready;                   /* eventfd */
    int frames_watch;                   /* machine fd watch of frames_ready, or -1 */
    uint8_t *mirror_buffer;             /* a partial message, MIRROR_MESSAGE_MAX */
    size_t mirror_buffered;
    struct mirrored_frame queue[MIRROR_QUEUE_MAX];   /* under lock */
    size_t queued;
    uint64_t mirror_received, mirror_delivered, mirror_queue_dropped;   /* under lock */
    uint64_t heartbeats_received;
    bool failover_done, failover_refused;
    pthread_cond_t failover_finished;
    char end_reason[512];
    pthread_t monitor_thread;
    bool monitor_joinable;
};

static struct replication the_replication = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .mirror_lock = PTHREAD_MUTEX_INITIALIZER,
    .replication_fd = -1, .mirror_fd = -1, .frames_ready = -1, .frames_watch = -1,
};

static void log_line(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    fprintf(stderr, "colo %s: %s: ", the_replication.role == ROLE_PRIMARY ? "protect" : "secondary",
            the_replication.name);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
}

static void post_event(const char *what, const char *detail)
{
    json_t *event = json_pack("{s:s, s:s, s:s}", "event", "replication", "what", what,
                              "detail", detail ? detail : "");
    if (event) {
        vm_control_post_event(the_replication.control, event);
        json_decref(event);
    }
}

static json_t *checkpoint_report_json(const struct colo_checkpoint_report *report)
{
    return json_pack("{s:I, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f}", "number", (json_int_t)report->number,
                     "trigger", colo_checkpoint_trigger_name(report->trigger),
                     "dirty_pages", (json_int_t)report->dirty_pages,
                     "precopy_pages", (json_int_t)report->precopy_pages,
                     "bytes", (json_int_t)report->bytes, "downtime_ms", (double)report->downtime_us / 1000,
                     "suspend_ms", (double)report->suspend_us / 1000, "send_ms", (double)report->send_us / 1000,
                     "apply_ms", (double)report->apply_us / 1000, "resume_ms", (double)report->resume_us / 1000);
}

/* Every checkpoint is an event ("colo events NAME" shows them): where each
 * pause went, for an operator asking why the service stutters, and for
 * bench/run_replication.sh. */
static void post_checkpoint_event(void *opaque, const struct colo_checkpoint_report *report)
{
    struct replication *r = opaque;
    json_t *event = json_pack("{s:s, s:s, s:o}", "event", "replication", "what", "checkpoint", "checkpoint",
                              checkpoint_report_json(report));
    if (event) {
        vm_control_post_event(r->control, event);
        json_decref(event);
    }
}

/* ---- the transmit hook (machine thread) ---- */

static void transmit_frame(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                           const uint8_t *frame, size_t length)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    switch (r->nic_mode) {
    case NIC_PASS:
        virtio_net_transmit_to_tap(NULL, net, header, frame, length);
        break;
    case NIC_HOLD: {
        uint8_t *copy = r->held_count < HELD_FRAMES_MAX && r->held_bytes + length <= HELD_BYTES_MAX
                            ? malloc(length) : NULL;
        if (!copy) {
            r->dropped_held++;
            break;
        }
        memcpy(copy, frame, length);
        r->held[r->held_count++] = (struct held_frame){ net, *header, length, copy };
        r->held_bytes += length;
        r->held_total++;
        /* The first frame held since the last release: it may wait at
         * most output_delay_ms for the checkpoint that lets it out. */
        if (r->held_count == 1 && r->role == ROLE_PRIMARY && r->primary_initialized)
            colo_primary_request_checkpoint_within(&r->primary, r->output_delay_ms);
        break;
    }
    }
    pthread_mutex_unlock(&r->lock);
}

/* Sends what is held to the TAPs, in order. Lock held. The machine is
 * paused (release_output) or the hook is blocked on the lock, so the NIC
 * is not used concurrently. */
static void release_held_locked(struct replication *r)
{
    for (size_t i = 0; i < r->held_count; i++) {
        struct held_frame *f = &r->held[i];
        virtio_net_transmit_to_tap(NULL, f->net, &f->header, f->data, f->length);
        free(f->data);
    }
    r->released_total += r->held_count;
    r->held_count = 0;
    r->held_bytes = 0;
}

static void install_transmit_hooks(struct replication *r, struct machine *machine)
{
    /* takes_offloads: the hook forwards the guest's frames with their
     * headers to a vnet-header TAP, so both sides offer what a plain TAP
     * would, and the PVM's and the SVM's negotiated features match. */
    for (unsigned i = 0; i < machine->config.nic_count; i++)
        virtio_net_set_transmit_hook(machine->nics[i], transmit_frame, r, true);
}

/* ---- the primary ---- */

/* Writes one whole message to the mirror connection. Never blocks long: a
 * full socket drops a frame (the SVM misses it; after a failover TCP
 * retransmits it), and a partial write is finished within a bounded wait
 * or the connection is given up (the framing would be lost). Returns
 * false when the message was dropped. */
static bool mirror_send(struct replication *r, struct iovec *parts, int part_count, bool is_frame)
{
    if (atomic_load(&r->mirror_broken))
        return false;
    size_t total = 0;
    for (int i = 0; i < part_count; i++)
        total += parts[i].iov_len;
    pthread_mutex_lock(&r->mirror_lock);
    struct msghdr message = { .msg_iov = parts, .msg_iovlen = (size_t)part_count };
    ssize_t sent = sendmsg(r->mirror_fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    bool ok = sent == (ssize_t)total;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (is_frame)
            atomic_fetch_add(&r->mirror_dropped, 1);
    } else if (sent < 0) {
        atomic_store(&r->mirror_broken, true);
    } else if (!ok) {
        size_t done = (size_t)sent;
        for (int i = 0; i < part_count && done < total; i++) {
            size_t skip = done;
            for (int j = 0; j < i; j++)
                skip -= parts[j].iov_len;
            if (skip >= parts[i].iov_len)
                continue;
            const uint8_t *bytes = (const uint8_t *)parts[i].iov_base + skip;
            size_t left = parts[i].iov_len - skip;
            while (left > 0) {
                struct pollfd p = { .fd = r->mirror_fd, .events = POLLOUT };
                if (poll(&p, 1, 1000) <= 0)
                    break;
                ssize_t n = send(r->mirror_fd, bytes, left, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    break;
                if (n > 0) {
                    bytes += n;
                    left -= (size_t)n;
                    done += (size_t)n;
                }
            }
            if (left > 0)
                break;
        }
        ok = done == total;
        if (!ok)
            atomic_store(&r->mirror_broken, true);
    }
    pthread_mutex_unlock(&r->mirror_lock);
    return ok;
}

/* Machine thread: a frame the PVM read from its TAP goes to the SVM too. */
static void mirror_frame(void *opaque, struct virtio_net *net, const struct virtio_net_header *header,
                         const uint8_t *frame, size_t length)
{
    struct replication *r = opaque;
    if (!atomic_load(&r->mirroring))
        return;
    unsigned index = 0;
    while (index < r->machine->config.nic_count && r->machine->nics[index] != net)
        index++;
    uint32_t word = (uint32_t)length | (uint32_t)index << 24;
    uint8_t word_bytes[MIRROR_WORD_SIZE] = { (uint8_t)word, (uint8_t)(word >> 8), (uint8_t)(word >> 16),
                                             (uint8_t)(word >> 24) };
    uint8_t header_bytes[VIRTIO_NET_HEADER_SIZE];
    virtio_net_header_encode(header, header_bytes);
    struct iovec parts[3] = {
        { word_bytes, sizeof word_bytes }, { (void *)frame, length }, { header_bytes, sizeof header_bytes },
    };
    if (mirror_send(r, parts, 3, true))
        atomic_fetch_add(&r->mirrored_frames, 1);
}

/* The checkpoint's pre-copy is sent while the PVM runs; the PVM pauses
 * once the primary's flush returns. Whatever still sits in socket buffers
 * then is read by the secondary during the downtime, and loopback TCP
 * buffers grow to megabytes. Small buffers on the replication connection
 * keep that backlog to a few hundred KiB (throughput on a LAN or loopback
 * does not need more). */
#define REPLICATION_SOCKET_BUFFER (256 * 1024)
static void limit_in_flight(int fd, int option)
{
    int size = REPLICATION_SOCKET_BUFFER;
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, option, &size, sizeof size);
}

static void sleep_ms(unsigned ms)
{
    struct timespec pause = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
    nanosleep(&pause, NULL);
}

/* Its own thread, from the connection to the end of protection: the
 * heartbeat keeps its pace whatever the PVM and the loop are doing. */
static void *heartbeat_thread(void *opaque)
{
    struct replication *r = opaque;
    while (!atomic_load(&r->heartbeat_stop)) {
        uint8_t beat[MIRROR_WORD_SIZE] = { 0 };
        struct iovec part = { beat, sizeof beat };
        mirror_send(r, &part, 1, false);
        sleep_ms(HEARTBEAT_INTERVAL_MS);
    }
    return NULL;
}

/* Called with the PVM paused, inside the checkpoint: a copy of what it
 * holds goes to the secondary with the checkpoint. */
static int write_held_output(void *opaque, struct stream_writer *writer, struct error *err)
{
    struct replication *r = opaque;
    int result = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->held_count && result == 0; i++) {
        struct held_frame *f = &r->held[i];
        uint32_t nic = 0;
        while (nic < r->machine->config.nic_count && r->machine->nics[nic] != f->net)
            nic++;
        uint8_t header[VIRTIO_NET_HEADER_SIZE];
        virtio_net_header_encode(&f->header, header);
        result = stream_write_output(writer, nic, header, f->data, f->length, err);
    }
    pthread_mutex_unlock(&r->lock);
    return result;
}

/* Called with the PVM paused once the SVM has applied the checkpoint:
 * what the PVM sent before it may leave now (output commit). */
static void release_output(void *opaque)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    release_held_locked(r);
    pthread_mutex_unlock(&r->lock);
}

/* The network as a checkpoint device of the primary: its setup runs after
 * the initial copy, with the PVM paused and the SVM built; from then on the
 * PVM's output is held and its input mirrored. */
static int primary_network_setup(void *opaque)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    r->nic_mode = NIC_HOLD;
    pthread_mutex_unlock(&r->lock);
    atomic_store(&r->mirroring, true);
    return 0;
}

static const struct colo_checkpoint_device_ops primary_network_ops = { .setup = primary_network_setup };

static void *primary_thread(void *opaque)
{
    struct replication *r = opaque;
    struct error err;
    int status = -1;
    struct colo_primary_options options;
    colo_primary_options_defaults(&options);
    options.max_interval_ms = r->interval_ms;
    options.release_output = release_output;
    options.release_output_opaque = r;
    options.on_checkpoint = post_checkpoint_event;
    options.on_checkpoint_opaque = r;
    options.write_held_output = write_held_output;
    options.write_held_output_opaque = r;

    r->replication_fd = migration_connect(r->destination, &err);
    limit_in_flight(r->replication_fd, SO_SNDBUF);
    if (r->replication_fd >= 0) {
        r->mirror_fd = migration_connect(r->destination, &err);
    }
    atomic_store(&r->mirror_broken, false);
    atomic_store(&r->heartbeat_stop, false);
    bool heartbeating = r->mirror_fd >= 0 && pthread_create(&r->heartbeat_thread, NULL, heartbeat_thread, r) == 0;
    if (r->replication_fd >= 0 && r->mirror_fd >= 0 &&
        colo_primary_init(&r->primary, r->machine, r->replication_fd, &options, &err) == 0) {
        pthread_mutex_lock(&r->lock);
        r->primary_initialized = true;
        r->phase = NULL;
        pthread_mutex_unlock(&r->lock);
        if (colo_primary_add_device(&r->primary, "network", &primary_network_ops, r, &err) == 0) {
            log_line("protecting with %s (checkpoint at least every %u ms, and within %u ms of held output)",
                     r->destination, r->interval_ms, r->output_delay_ms);
            post_event("protecting", r->destination);
            status = colo_primary_run(&r->primary, &err);
        }
    }
    /* The loop left the PVM running with its dirty log off. Whatever it
     * holds goes out now: nothing else will ever release it. */
    atomic_store(&r->mirroring, false);
    atomic_store(&r->heartbeat_stop, true);
    if (heartbeating)
        pthread_join(r->heartbeat_thread, NULL);
    pthread_mutex_lock(&r->lock);
    release_held_locked(r);
    r->nic_mode = NIC_PASS;
    r->phase = "unprotected";
    snprintf(r->end_reason, sizeof r->end_reason, "%s", status < 0 ? err.message : "stopped");
    pthread_mutex_unlock(&r->lock);
    log_line("the secondary is lost (%s); running on unprotected", r->end_reason);
    post_event("unprotected", r->end_reason);
    if (r->replication_fd >= 0)
        close(r->replication_fd);
    if (r->mirror_fd >= 0)
        close(r->mirror_fd);
    vm_control_end_operation(r->control, false);
    return NULL;
}

static int handle_protect(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    struct replication *r = opaque;
    const char *destination = json_string_value(json_object_get(request, "destination"));
    if (!destination || !*destination || strlen(destination) >= sizeof r->destination)
        return error_set(err, "protect needs \"destination\": \"HOST:PORT\"");
    unsigned interval_ms = 100;
    json_t *interval = json_object_get(request, "interval_ms");
    if (interval) {
        if (!json_is_integer(interval) || json_integer_value(interval) < 1 || json_integer_value(interval) > 600000)
            return error_set(err, "\"interval_ms\" must be a whole number from 1 to 600000");
        interval_ms = (unsigned)json_integer_value(interval);
    }
    unsigned output_delay_ms = COLO_DEFAULT_OUTPUT_DELAY_MS;
    json_t *output_delay = json_object_get(request, "output_delay_ms");
    if (output_delay) {
        if (!json_is_integer(output_delay) || json_integer_value(output_delay) < 0 ||
            json_integer_value(output_delay) > 600000)
            return error_set(err, "\"output_delay_ms\" must be a whole number from 0 to 600000");
        output_delay_ms = (unsigned)json_integer_value(output_delay);
    }
    pthread_mutex_lock(&r->lock);
    /* A secondary that failed over is a plain VM and may be protected in
     * turn; a primary whose secondary went away too. */
    bool busy = !(r->role == ROLE_NONE || (r->role == ROLE_SECONDARY && r->failover_done) ||
                  (r->role == ROLE_PRIMARY && r->phase && strcmp(r->phase, "unprotected") == 0));
    pthread_mutex_unlock(&r->lock);
    if (busy)
        return error_set(err, "this VM is already %s (protecting it again is not supported yet)",
                         r->role == ROLE_PRIMARY ? "a primary" : "a secondary");
    /* The operation keeps the machine alive while the loop uses it, and
     * the VM shows "protected". */
    struct machine *machine = vm_control_begin_operation(r->control, VM_STATE_PROTECTED, false, err);
    if (!machine)
        return -1;
    pthread_mutex_lock(&r->lock);
    if (r->primary_initialized)
        colo_primary_destroy(&r->primary);
    r->primary_initialized = false;
    r->role = ROLE_PRIMARY;
    r->phase = "connecting";
    r->end_reason[0] = 0;
    r->replication_fd = r->mirror_fd = -1;
    r->machine = machine;
    r->interval_ms = interval_ms;
    r->output_delay_ms = output_delay_ms;
    snprintf(r->destination, sizeof r->destination, "%s", destination);
    pthread_mutex_unlock(&r->lock);
    /* Hooks are installed with the PVM paused; they pass frames through
     * until the SVM exists (primary_network_setup). */
    machine_pause(machine);
    install_transmit_hooks(r, machine);
    for (unsigned i = 0; i < machine->config.nic_count; i++)
        virtio_net_set_tap_frame_observer(machine->nics[i], mirror_frame, r);
    machine_resume(machine);
    if (pthread_create(&r->primary_thread, NULL, primary_thread, r) != 0) {
        vm_control_end_operation(r->control, false);
        return error_set(err, "cannot start the primary's thread");
    }
    pthread_detach(r->primary_thread);
    json_object_set_new(reply, "destination", json_string(destination));
    json_object_set_new(reply, "interval_ms", json_integer(interval_ms));
    json_object_set_new(reply, "output_delay_ms", json_integer(output_delay_ms));
    return 0;
}

/* ---- the secondary ---- */

static double monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1000 + (double)now.tv_nsec / 1e6;
}

/* The primary is gone (or must be taken for gone): shutting the
 * replication connection down ends the secondary loop at once, wherever it
 * waits, and the monitor thread fails over. */
static void declare_primary_lost(struct replication *r, const char *why)
{
    log_line("%s", why);
    shutdown(r->replication_fd, SHUT_RDWR);
}

/* Parses whole messages in mirror_buffer: heartbeats are only heard,
 * frames are queued for the SVM once it exists. Returns false on a
 * message that is not our framing. */
static bool take_mirror_messages(struct replication *r)
{
    size_t offset = 0;
    bool queued_any = false, ok = true;
    while (r->mirror_buffered - offset >= MIRROR_WORD_SIZE) {
        const uint8_t *m = r->mirror_buffer + offset;
        uint32_t word = (uint32_t)m[0] | (uint32_t)m[1] << 8 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 24;
        size_t length = word & MIRROR_LENGTH_MASK;
        unsigned index = word >> 24;
        if (length > VIRTIO_NET_MAX_FRAME || index >= r->machine->config.nic_count) {
            ok = false;
            break;
        }
        size_t size = length == 0 ? MIRROR_WORD_SIZE : MIRROR_WORD_SIZE + length + VIRTIO_NET_HEADER_SIZE;
        if (r->mirror_buffered - offset < size)
            break;
        offset += size;
        if (length == 0) {
            r->heartbeats_received++;
            continue;
        }
        pthread_mutex_lock(&r->lock);
        r->mirror_received++;
        uint8_t *copy = atomic_load(&r->svm_built) && r->queued < MIRROR_QUEUE_MAX ? malloc(length) : NULL;
        if (copy) {
            memcpy(copy, m + MIRROR_WORD_SIZE, length);
            struct mirrored_frame *f = &r->queue[r->queued++];
            f->nic = index;
            f->length = length;
            f->data = copy;
            virtio_net_header_decode(m + MIRROR_WORD_SIZE + length, &f->header);
            queued_any = true;
        } else {
            r->mirror_queue_dropped++;
        }
        pthread_mutex_unlock(&r->lock);
    }
    memmove(r->mirror_buffer, r->mirror_buffer + offset, r->mirror_buffered - offset);
    r->mirror_buffered -= offset;
    if (queued_any) {
        uint64_t one = 1;
        ssize_t ignored = write(r->frames_ready, &one, sizeof one);
        (void)ignored;
    }
    return ok;
}

/* Its own thread: reads the mirror connection, so heartbeats are heard
 * even while the SVM is paused for a checkpoint. Ends on silence longer
 * than the heartbeat timeout, on the end of the connection, or at
 * failover (reader_stop). */
static void *mirror_reader_thread(void *opaque)
{
    struct replication *r = opaque;
    double last_heard = monotonic_ms();
    while (!atomic_load(&r->reader_stop)) {
        struct pollfd p = { .fd = r->mirror_fd, .events = POLLIN };
        int ready = poll(&p, 1, HEARTBEAT_INTERVAL_MS);
        double now = monotonic_ms();
        if (ready < 0 && errno != EINTR) {
            declare_primary_lost(r, "cannot poll the mirror connection; taking the primary for lost");
            return NULL;
        }
        if (ready <= 0) {
            if (r->heartbeat_timeout_ms > 0 && now - last_heard > r->heartbeat_timeout_ms) {
                char why[160];
                snprintf(why, sizeof why, "no heartbeat from the primary for %.0f ms (timeout %d ms)",
                         now - last_heard, r->heartbeat_timeout_ms);
                declare_primary_lost(r, why);
                return NULL;
            }
            continue;
        }
        ssize_t got = recv(r->mirror_fd, r->mirror_buffer + r->mirror_buffered,
                           MIRROR_MESSAGE_MAX - r->mirror_buffered, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (got <= 0) {
            if (!atomic_load(&r->reader_stop))
                declare_primary_lost(r, got == 0 ? "the primary closed the mirror connection"
                                                 : "the mirror connection broke");
            return NULL;
        }
        last_heard = now;
        r->mirror_buffered += (size_t)got;
        if (!take_mirror_messages(r)) {
            declare_primary_lost(r, "the mirror connection carried something that is not a frame");
            return NULL;
        }
    }
    return NULL;
}

/* Machine thread: delivers the queued mirrored frames to the SVM. */
static void on_frames_ready(void *opaque)
{
    struct replication *r = opaque;
    uint64_t count;
    ssize_t ignored = read(r->frames_ready, &count, sizeof count);
    (void)ignored;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->queued; i++) {
        struct mirrored_frame *f = &r->queue[i];
        if (virtio_net_receive_with_header(r->machine->nics[f->nic], &f->header, f->data, f->length))
            r->mirror_delivered++;
        free(f->data);
    }
    r->queued = 0;
    pthread_mutex_unlock(&r->lock);
}

/* The secondary's network device: its setup runs with the SVM paused and
 * built, so mirrored frames go in only once there is a VM. */
static int secondary_network_setup(void *opaque)
{
    struct replication *r = opaque;
    r->frames_watch = machine_watch_fd(r->machine, r->frames_ready, on_frames_ready, r);
    if (r->frames_watch < 0)
        return -1;
    atomic_store(&r->svm_built, true);
    return 0;
}

static void drop_committed_locked(struct replication *r)
{
    for (size_t i = 0; i < r->committed_count; i++)
        free(r->committed[i].data);
    r->committed_count = 0;
}

/* Secondary thread, after a checkpoint was applied: the primary's output
 * behind it (its OUTPUT records) replaces the previous checkpoint's. */
static void keep_checkpoint_output(void *opaque, const struct stream_reader *reader)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    drop_committed_locked(r);
    size_t cursor = 0, length;
    const uint8_t *body;
    while (stream_received_output_next(reader, &cursor, &body, &length) && r->committed_count < HELD_FRAMES_MAX) {
        uint32_t nic = (uint32_t)body[0] | (uint32_t)body[1] << 8 | (uint32_t)body[2] << 16 | (uint32_t)body[3] << 24;
        size_t frame_length = length - STREAM_OUTPUT_PREFIX;
        uint8_t *copy = nic < r->machine->config.nic_count ? malloc(frame_length) : NULL;
        if (!copy)
            continue;   /* a NIC this VM does not have (cannot happen: same configuration), or no memory */
        memcpy(copy, body + STREAM_OUTPUT_PREFIX, frame_length);
        struct held_frame *f = &r->committed[r->committed_count++];
        f->net = r->machine->nics[nic];
        virtio_net_header_decode(body + 8, &f->header);
        f->length = frame_length;
        f->data = copy;
    }
    pthread_mutex_unlock(&r->lock);
}

/* CHECKPOINT_NEW arrived: the primary released the output behind the last
 * checkpoint before it resumed the PVM, so our copy is not needed. */
static int secondary_network_postsuspend(void *opaque)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    drop_committed_locked(r);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

/* The checkpoint has been applied: what the SVM sent before it belongs to
 * a timeline that is gone. (The SVM is paused: nothing transmits now.) */
static int secondary_network_preresume(void *opaque)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->held_count; i++)
        free(r->held[i].data);
    r->dropped_secondary += r->held_count;
    r->held_count = 0;
    r->held_bytes = 0;
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static const struct colo_checkpoint_device_ops secondary_network_ops = {
    .setup = secondary_network_setup, .postsuspend = secondary_network_postsuspend,
    .preresume = secondary_network_preresume,
};

/* Makes the SVM's NICs the VM's own: its TAP, its output, and an announce
 * so the network learns where its MAC lives now. */
/* After the reader stopped: what is left in the mirror socket. A primary
 * that died closed its connections, but the replication loop may notice
 * before the reader has read everything the primary mirrored; those
 * frames reached the PVM, and the client would otherwise wait for its
 * TCP retransmission (200 ms or more) to get them to the SVM. */
static void drain_mirror(struct replication *r)
{
    for (int reads = 0; reads < 4096 && r->mirror_buffered < MIRROR_MESSAGE_MAX; reads++) {
        ssize_t got = recv(r->mirror_fd, r->mirror_buffer + r->mirror_buffered,
                           MIRROR_MESSAGE_MAX - r->mirror_buffered, MSG_DONTWAIT);
        if (got <= 0)
            break;   /* end of the connection, nothing more now, or an error */
        r->mirror_buffered += (size_t)got;
        if (!take_mirror_messages(r))
            break;
    }
}

static void switch_network_to_local(struct replication *r)
{
    struct machine *machine = r->machine;
    atomic_store(&r->reader_stop, true);
    pthread_join(r->mirror_reader, NULL);
    drain_mirror(r);
    machine_pause(machine);
    /* Mirrored frames still queued go to the SVM: the frames watch stays,
     * and the machine thread delivers them when it runs again (the reader
     * is stopped, so nothing new is queued). */
    for (unsigned i = 0; i < machine->config.nic_count; i++) {
        virtio_net_set_tap_receive(machine->nics[i], true);
        virtio_net_announce(machine->nics[i]);
    }
    /* The primary's output behind the SVM's last checkpoint, if no
     * CHECKPOINT_NEW since showed that the primary released it (it may have
     * sent some of it before dying: a receiver's TCP drops duplicates),
     * then what the SVM said since that checkpoint (see NIC_HOLD), after
     * the announce and before anything newer. */
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->committed_count; i++) {
        struct held_frame *f = &r->committed[i];
        virtio_net_transmit_to_tap(NULL, f->net, &f->header, f->data, f->length);
    }
    r->pvm_output_released = r->committed_count;
    drop_committed_locked(r);
    r->svm_output_released = r->held_count;
    release_held_locked(r);
    r->nic_mode = NIC_PASS;
    pthread_mutex_unlock(&r->lock);
    machine_resume(machine);
}

/* Runs the failover when the loop ends: by itself (the primary died or the
 * stream broke) or because of `colo failover`, which shuts the connection
 * down so that both take this one path. */
static void *monitor_thread(void *opaque)
{
    struct replication *r = opaque;
    struct error err;
    colo_secondary_join(&r->secondary, &err);
    enum colo_secondary_state state = colo_secondary_state(&r->secondary);
    log_line("replication ended in state %s: %s", colo_secondary_state_name(state), err.message);
    struct error failover_err;
    if (colo_secondary_failover(&r->secondary, &failover_err) < 0) {
        log_line("failover refused: %s; stopping", failover_err.message);
        pthread_mutex_lock(&r->lock);
        r->failover_refused = true;
        r->phase = "failover refused";
        snprintf(r->end_reason, sizeof r->end_reason, "%s", failover_err.message);
        pthread_cond_broadcast(&r->failover_finished);
        pthread_mutex_unlock(&r->lock);
        post_event("failover refused", failover_err.message);
        machine_request_stop(r->machine);
        return NULL;
    }
    switch_network_to_local(r);
    pthread_mutex_lock(&r->lock);
    r->failover_done = true;
    r->phase = "failed over";
    snprintf(r->end_reason, sizeof r->end_reason, "%s", err.message);
    pthread_cond_broadcast(&r->failover_finished);
    pthread_mutex_unlock(&r->lock);
    log_line("failed over: the VM runs here now (from state %s; sent %" PRIu64 " frames the primary held "
             "behind the last checkpoint and %" PRIu64 " the SVM sent since)", colo_secondary_state_name(state),
             r->pvm_output_released, r->svm_output_released);
    post_event("failed over", err.message);
    return NULL;
}

int colo_replication_start_secondary(struct vm_control *control, struct machine *machine,
                                     const char *address, const char *name, int heartbeat_timeout_ms,
                                     struct error *err)
{
    struct replication *r = &the_replication;
    (void)control;
    r->heartbeat_timeout_ms = heartbeat_timeout_ms;
    r->frames_ready = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->frames_ready < 0)
        return error_set_errno(err, "cannot create an eventfd");
    r->role = ROLE_SECONDARY;
    r->phase = "waiting";
    r->machine = machine;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->mirror_buffer = malloc(MIRROR_MESSAGE_MAX);
    if (!r->mirror_buffer)
        return error_set(err, "out of memory");
    /* Mute the NICs before anything runs: no frame out, no TAP read. */
    install_transmit_hooks(r, machine);
    r->nic_mode = NIC_HOLD;
    for (unsigned i = 0; i < machine->config.nic_count; i++)
        virtio_net_set_tap_receive(machine->nics[i], false);

    int listener = migration_listen(address, err);
    if (listener < 0)
        return -1;
    log_line("waiting for the primary on %s", address);
    /* The primary connects twice, in this order: replication, mirror. */
    r->replication_fd = migration_accept(listener, err);
    limit_in_flight(r->replication_fd, SO_RCVBUF);
    if (r->replication_fd >= 0)
        r->mirror_fd = migration_accept(listener, err);
    close(listener);
    if (r->replication_fd < 0 || r->mirror_fd < 0)
        return -1;
    machine_pause(machine);            /* handed to the loop paused, once */
    struct colo_secondary_options options;
    colo_secondary_options_defaults(&options);
    options.on_checkpoint_output = keep_checkpoint_output;
    options.output_opaque = r;
    if (colo_secondary_init(&r->secondary, machine, r->replication_fd, &options, err) < 0)
        return -1;
    r->secondary_initialized = true;
    if (colo_secondary_add_device(&r->secondary, "network", &secondary_network_ops, r, err) < 0 ||
        colo_secondary_start(&r->secondary, err) < 0)
        return -1;
    pthread_mutex_lock(&r->lock);
    r->phase = NULL;
    pthread_mutex_unlock(&r->lock);
    if (pthread_create(&r->mirror_reader, NULL, mirror_reader_thread, r) != 0)
        return error_set(err, "cannot start the mirror reader thread");
    if (pthread_create(&r->monitor_thread, NULL, monitor_thread, r) != 0)
        return error_set(err, "cannot start the secondary's monitor thread");
    r->monitor_joinable = true;
    log_line("the primary connected; receiving the initial copy");
    return 0;
}

void colo_replication_machine_stopped(void)
{
    struct replication *r = &the_replication;
    pthread_mutex_lock(&r->lock);
    bool stop_primary = r->role == ROLE_PRIMARY && r->primary_initialized && !r->phase;
    bool end_secondary = r->role == ROLE_SECONDARY && r->monitor_joinable;
    pthread_mutex_unlock(&r->lock);
    /* The primary ends at its next wait for a trigger and ends its
     * operation, which vm_control_machine_stopped waits for. */
    if (stop_primary)
        colo_primary_stop(&r->primary);
    /* The secondary's threads use the machine: end them before it goes.
     * (The monitor's failover then acts on a machine that no longer runs.) */
    if (end_secondary) {
        shutdown(r->replication_fd, SHUT_RDWR);
        pthread_join(r->monitor_thread, NULL);
        r->monitor_joinable = false;
    }
}

bool colo_replication_failover_refused(void)
{
    pthread_mutex_lock(&the_replication.lock);
    bool refused = the_replication.failover_refused;
    pthread_mutex_unlock(&the_replication.lock);
    return refused;
}

static int handle_failover(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request;
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    if (r->role != ROLE_SECONDARY || r->phase) {
        const char *phase = r->phase;
        bool secondary = r->role == ROLE_SECONDARY;
        pthread_mutex_unlock(&r->lock);
        if (!secondary)
            return error_set(err, "this VM is not a COLO secondary");
        return error_set(err, "nothing to fail over: the secondary is %s", phase);
    }
    pthread_mutex_unlock(&r->lock);
    /* End the loop the way a dead primary would: the monitor thread then
     * fails over. */
    shutdown(r->replication_fd, SHUT_RDWR);
    pthread_mutex_lock(&r->lock);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    int waited = 0;
    while (!r->failover_done && !r->failover_refused && waited == 0)
        waited = pthread_cond_timedwait(&r->failover_finished, &r->lock, &deadline);
    bool done = r->failover_done;
    char reason[sizeof r->end_reason];
    snprintf(reason, sizeof reason, "%s", r->failover_refused ? r->end_reason : "no answer within 10 s");
    pthread_mutex_unlock(&r->lock);
    if (!done)
        return error_set(err, "failover failed: %s", reason);
    json_object_set_new(reply, "failed_over", json_true());
    return 0;
}

/* A checkpoint on request (the control socket's trigger): answers once a
 * requested checkpoint has completed, with its report. */
static int handle_checkpoint(void *opaque, const json_t *request, json_t *reply, struct error *err)
{
    (void)request;
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    bool protecting = r->role == ROLE_PRIMARY && r->primary_initialized && !r->phase;
    pthread_mutex_unlock(&r->lock);
    if (!protecting)
        return error_set(err, "this VM is not a protected COLO primary (no checkpoint to take)");
    struct colo_primary_stats stats;
    colo_primary_get_stats(&r->primary, &stats);
    uint64_t before = stats.checkpoints;
    colo_primary_request_checkpoint(&r->primary);
    /* Checkpoints take milliseconds; a loop that stopped meanwhile (the
     * secondary went away) never serves the request. */
    for (int waited_ms = 0; waited_ms < 5000; waited_ms++) {
        colo_primary_get_stats(&r->primary, &stats);
        if (stats.checkpoints > before && stats.last.trigger == COLO_TRIGGER_REQUEST) {
            json_object_set_new(reply, "checkpoint", checkpoint_report_json(&stats.last));
            return 0;
        }
        pthread_mutex_lock(&r->lock);
        const char *phase = r->phase;
        pthread_mutex_unlock(&r->lock);
        if (phase)
            return error_set(err, "the replication ended before the checkpoint (%s)", phase);
        sleep_ms(1);
    }
    return error_set(err, "no checkpoint completed within 5 s of the request");
}

/* ---- status ---- */

static void status_fields(void *opaque, json_t *reply)
{
    struct replication *r = opaque;
    pthread_mutex_lock(&r->lock);
    if (r->role == ROLE_NONE) {
        pthread_mutex_unlock(&r->lock);
        return;
    }
    json_t *replication = json_object();
    json_object_set_new(replication, "role", json_string(r->role == ROLE_PRIMARY ? "primary" : "secondary"));
    const char *state = r->phase;
    if (r->role == ROLE_PRIMARY) {
        if (!state)
            state = colo_primary_state_name(colo_primary_state(&r->primary));
        json_object_set_new(replication, "peer", json_string(r->destination));
        if (r->primary_initialized) {
            struct colo_primary_stats stats;
            colo_primary_get_stats(&r->primary, &stats);
            json_object_set_new(replication, "checkpoints", json_integer((json_int_t)stats.checkpoints));
            json_object_set_new(replication, "downtime_p50_ms",
                                json_real((double)colo_primary_downtime_percentile(&r->primary, 50) / 1000));
            json_object_set_new(replication, "downtime_p99_ms",
                                json_real((double)colo_primary_downtime_percentile(&r->primary, 99) / 1000));
            json_object_set_new(replication, "downtime_max_ms", json_real((double)stats.max_downtime_us / 1000));
            json_object_set_new(replication, "checkpoints_by_output", json_integer((json_int_t)stats.output_checkpoints));
            json_object_set_new(replication, "checkpoints_by_request",
                                json_integer((json_int_t)stats.requested_checkpoints));
            json_object_set_new(replication, "interval_ms", json_integer(r->interval_ms));
            json_object_set_new(replication, "output_delay_ms", json_integer(r->output_delay_ms));
            if (stats.checkpoints)
                json_object_set_new(replication, "last_checkpoint", checkpoint_report_json(&stats.last));
        } else {
            json_object_set_new(replication, "checkpoints", json_integer(0));
        }
        json_object_set_new(replication, "held_frames", json_integer((json_int_t)r->held_count));
        json_object_set_new(replication, "held_total", json_integer((json_int_t)r->held_total));
        json_object_set_new(replication, "released_total", json_integer((json_int_t)r->released_total));
        json_object_set_new(replication, "held_dropped", json_integer((json_int_t)r->dropped_held));
        json_object_set_new(replication, "mirrored_frames",
                            json_integer((json_int_t)atomic_load(&r->mirrored_frames)));
        json_object_set_new(replication, "mirror_dropped", json_integer((json_int_t)atomic_load(&r->mirror_dropped)));
    } else {
        if (!state)
            state = colo_secondary_state_name(colo_secondary_state(&r->secondary));
        if (r->secondary_initialized) {
            struct colo_secondary_stats stats;
            colo_secondary_get_stats(&r->secondary, &stats);
            json_object_set_new(replication, "checkpoints", json_integer((json_int_t)stats.checkpoints));
        } else {
            json_object_set_new(replication, "checkpoints", json_integer(0));
        }
        json_object_set_new(replication, "dropped_transmits", json_integer((json_int_t)r->dropped_secondary));
        json_object_set_new(replication, "held_frames", json_integer((json_int_t)r->held_count));
        if (r->failover_done) {
            json_object_set_new(replication, "released_at_failover",
                                json_integer((json_int_t)r->svm_output_released));
            json_object_set_new(replication, "primary_output_sent_at_failover",
                                json_integer((json_int_t)r->pvm_output_released));
        }
        /* Machine-thread counters, read while status has the VM paused. */
        json_object_set_new(replication, "mirrored_frames_received", json_integer((json_int_t)r->mirror_received));
        json_object_set_new(replication, "mirrored_frames_delivered", json_integer((json_int_t)r->mirror_delivered));
        json_object_set_new(replication, "mirrored_frames_dropped", json_integer((json_int_t)r->mirror_queue_dropped));
        json_object_set_new(replication, "heartbeat_timeout_ms", json_integer(r->heartbeat_timeout_ms));
    }
    json_object_set_new(replication, "state", json_string(state));
    if (r->end_reason[0])
        json_object_set_new(replication, "ended", json_string(r->end_reason));
    pthread_mutex_unlock(&r->lock);
    json_object_set_new(reply, "replication", replication);
}

int colo_replication_register(struct vm_control *control, const char *name, struct error *err)
{
    struct replication *r = &the_replication;
    r->control = control;
    snprintf(r->name, sizeof r->name, "%s", name);
    pthread_cond_init(&r->failover_finished, NULL);
    /* A peer that goes away must be an error, never a signal. */
    signal(SIGPIPE, SIG_IGN);
    struct control_server *server = vm_control_server(control);
    if (control_server_register(server, "protect", handle_protect, r, err) < 0 ||
        control_server_register(server, "failover", handle_failover, r, err) < 0 ||
        control_server_register(server, "checkpoint", handle_checkpoint, r, err) < 0)
        return -1;
    vm_control_set_status_hook(control, status_fields, r);
    return 0;
}

/* ---- the clients ---- */

static int call_vm(const char *program, const char *name, json_t *request, json_t **reply)
{
    char socket_path[4096];
    struct error err;
    if (control_socket_path(name, socket_path, sizeof socket_path, &err) < 0) {
        fprintf(stderr, "%s: %s\n", program, err.message);
        return 2;
    }
    struct control_client client;
    if (control_client_connect(&client, socket_path, 5000, &err) < 0) {
        fprintf(stderr, "%s: no VM named %s is running: %s\n", program, name, err.message);
        return 1;
    }
    int status = control_client_call(&client, request, reply, 15000, &err);
    control_client_close(&client);
    if (status != CONTROL_CLIENT_OK) {
        fprintf(stderr, "%s: %s\n", program, status == CONTROL_CLIENT_ERROR ? err.message : "no answer");
        return 1;
    }
    if (!json_is_true(json_object_get(*reply, "ok"))) {
        fprintf(stderr, "%s: %s\n", program, json_string_value(json_object_get(*reply, "error")));
        return 1;
    }
    return 0;
}

int colo_protect_main(int argc, char **argv)
{
    const char *name = NULL, *destination = NULL;
    long interval_ms = -1, output_delay_ms = -1;
    const char *usage = "usage: colo protect NAME HOST:PORT [--interval MS] [--output-delay MS]\n";
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "--interval") == 0 || strcmp(argv[i], "--output-delay") == 0) && i + 1 < argc) {
            bool interval = strcmp(argv[i], "--interval") == 0;
            char *end;
            long value = strtol(argv[++i], &end, 10);
            if (*end || !*argv[i] || value < (interval ? 1 : 0) || value > 600000) {
                fprintf(stderr, "colo protect: %s needs %s..600000 ms, got '%s'\n", argv[i - 1],
                        interval ? "1" : "0", argv[i]);
                return 2;
            }
            *(interval ? &interval_ms : &output_delay_ms) = value;
        } else if (argv[i][0] == '-' || (name && destination)) {
            fprintf(stderr, "colo protect: unexpected '%s'\n%s", argv[i], usage);
            return 2;
        } else if (!name) {
            name = argv[i];
        } else {
            destination = argv[i];
        }
    }
    if (!name || !destination) {
        fputs(usage, stderr);
        return 2;
    }
    json_t *request = json_pack("{s:s, s:s}", "command", "protect", "destination", destination), *reply = NULL;
    if (interval_ms > 0)
        json_object_set_new(request, "interval_ms", json_integer(interval_ms));
    if (output_delay_ms >= 0)
        json_object_set_new(request, "output_delay_ms", json_integer(output_delay_ms));
    int status = call_vm("colo protect", name, request, &reply);
    json_decref(request);
    if (status == 0)
        printf("protecting %s with the secondary at %s (checkpoint at least every %" JSON_INTEGER_FORMAT
               " ms, and within %" JSON_INTEGER_FORMAT " ms of held output); `colo status %s` shows the "
               "replication\n", name, destination, json_integer_value(json_object_get(reply, "interval_ms")),
               json_integer_value(json_object_get(reply, "output_delay_ms")), name);
    json_decref(reply);
    return status;
}

int colo_checkpoint_main(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: colo checkpoint NAME   (on the primary's host)\n");
        return 2;
    }
    json_t *request = json_pack("{s:s}", "command", "checkpoint"), *reply = NULL;
    int status = call_vm("colo checkpoint", argv[0], request, &reply);
    json_decref(request);
    if (status == 0) {
        json_t *report = json_object_get(reply, "checkpoint");
        printf("checkpoint %" JSON_INTEGER_FORMAT " of %s: %" JSON_INTEGER_FORMAT " dirty pages, %.1f KiB, "
               "PVM paused %.2f ms (secondary suspending %.2f, sending %.2f, secondary applying %.2f, "
               "resuming %.2f)\n",
               json_integer_value(json_object_get(report, "number")), argv[0],
               json_integer_value(json_object_get(report, "dirty_pages")),
               (double)json_integer_value(json_object_get(report, "bytes")) / 1024,
               json_number_value(json_object_get(report, "downtime_ms")),
               json_number_value(json_object_get(report, "suspend_ms")),
               json_number_value(json_object_get(report, "send_ms")),
               json_number_value(json_object_get(report, "apply_ms")),
               json_number_value(json_object_get(report, "resume_ms")));
    }
    json_decref(reply);
    return status;
}

int colo_failover_main(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: colo failover NAME   (on the secondary's host)\n");
        return 2;
    }
    json_t *request = json_pack("{s:s}", "command", "failover"), *reply = NULL;
    int status = call_vm("colo failover", argv[0], request, &reply);
    json_decref(request);
    json_decref(reply);
    if (status == 0)
        printf("%s failed over: it runs here now\n", argv[0]);
    return status;
}
