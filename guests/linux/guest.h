// Shared declarations of the colo Linux guest userland.
//
// Everything runs from one static executable, /init: process 1 sets the
// machine up, then forks one process per service and calls the service's
// entry point below. Forking without exec lets the services share memory
// that init mapped before the fork (the churn rate) and keeps the
// initramfs to a single small binary.
#ifndef COLO_GUEST_H
#define COLO_GUEST_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    KVSTORE_PORT = 7000,
    ECHO_PORT = 7001,
    STREAM_PORT = 7002,
};

// Set by init before forking, read and written by the services: a
// MAP_SHARED page, so a CHURN command in the KV store changes the rate the
// churner uses within one of its ticks.
struct churn_control {
    _Atomic uint64_t pages_per_second;
};

// Highest churn rate accepted (pages per second); about 4 GB/s of writes,
// far more than any guest here can dirty.
#define CHURN_MAX_RATE 1000000u

// Each service writes one byte to ready_fd once it accepts work (listening
// socket open, buffer mapped) and closes it; init prints "services ready"
// when it has one byte per service. ready_fd is -1 when nobody waits (a
// service restarted after a crash).
//
// disk_path is the block device the KV store persists to, or "" for none.
void kvstore_main(int ready_fd, const char *disk_path, struct churn_control *churn);
void echo_main(int ready_fd);
void stream_main(int ready_fd);
void churn_main(int ready_fd, struct churn_control *churn);

// --- Helpers shared by the services (util.c) ---

// Prints "colo-guest: <tag>: <message>\n" on stderr (the console) in one
// write, so lines from different processes do not interleave.
void guest_log(const char *tag, const char *format, ...) __attribute__((format(printf, 2, 3)));
// The same line on descriptor fd, without the "<tag>: " part when tag is
// NULL (init's own lines).
void guest_vlog(int fd, const char *tag, const char *format, va_list arguments)
    __attribute__((format(printf, 3, 0)));

// A TCP socket listening on 0.0.0.0:port with SO_REUSEADDR (so a restarted
// service can bind again at once). Exits the process on failure: a service
// that cannot listen is useless, and init restarts it.
int listen_tcp(const char *tag, uint16_t port);

// Writes all of buffer, retrying on short writes and EINTR. Returns false on
// error (the peer went away).
bool write_all(int fd, const void *buffer, size_t length);

// Signals readiness on ready_fd (see above) and closes it.
void signal_ready(int ready_fd);

// Parses a decimal unsigned number that fills the whole of text; false if
// text is empty, has other characters or exceeds max.
bool parse_u64(const char *text, size_t length, uint64_t max, uint64_t *value);

#endif
