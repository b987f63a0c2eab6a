/* A recording of what a primary's comparator was given: the PVM's frames,
 * the SVM's (after the secondary's sequence shift) and each epoch's end,
 * in the order and at the times the comparator got them. The file is
 * pcapng, so Wireshark opens it (interfaces "pvm", "svm" and
 * "epoch-end"); tests/proxy/output_compare_captured_test.c replays such
 * recordings of a real guest's traffic through output_compare and checks
 * that it gives the verdicts the live run gave (docs/proxy.md, "Captured
 * flows").
 *
 * An epoch's end is a record of its own (link type USER0) whose text says
 * whether the output buffer noted a timeout in it and the comparator's
 * counters after that, before the reset:
 *   "epoch end: timeout=0 released_matched=12 released_at_once=30
 *    differences=0,0,0,0,0,0 primary_frames=42 secondary_frames=44"
 * (differences by enum output_compare_cause, in its order).
 *
 * Test builds only set one up (COLO_TEST_COMPARE_CAPTURE=FILE; see
 * vm_replication_primary.c). Bounded: it stops recording at
 * COMPARE_CAPTURE_MAX_BYTES and says so in its last record. */
#ifndef COLO_PROXY_COMPARE_CAPTURE_H
#define COLO_PROXY_COMPARE_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "output_compare.h"

#define COMPARE_CAPTURE_MAX_BYTES (256u << 20)

/* The pcapng parts it writes (for its readers too): block types, the
 * section header's byte-order magic, the interface-name option. */
#define COMPARE_CAPTURE_BLOCK_SECTION 0x0A0D0D0Au
#define COMPARE_CAPTURE_BLOCK_INTERFACE 0x00000001u
#define COMPARE_CAPTURE_BLOCK_PACKET 0x00000006u
#define COMPARE_CAPTURE_BYTE_ORDER_MAGIC 0x1A2B3C4Du
#define COMPARE_CAPTURE_OPTION_NAME 2

/* The pcapng interfaces, in the order the file describes them. */
enum compare_capture_interface {
    COMPARE_CAPTURE_PVM,
    COMPARE_CAPTURE_SVM,
    COMPARE_CAPTURE_EPOCH_END,
    COMPARE_CAPTURE_INTERFACE_COUNT
};

/* "pvm", "svm", "epoch-end": the interfaces' names in the file. */
const char *compare_capture_interface_name(enum compare_capture_interface interface);

struct compare_capture {
    FILE *file;         /* NULL: not recording */
    uint64_t bytes;     /* written so far */
    uint64_t max_bytes; /* COMPARE_CAPTURE_MAX_BYTES from open (a test may lower it) */
    bool full;
};

/* Creates (or truncates) path and writes the file's header. */
int compare_capture_open(struct compare_capture *capture, const char *path, struct error *err);
/* Closes the file; a capture never opened is a no-op. */
void compare_capture_close(struct compare_capture *capture);

void compare_capture_frame(struct compare_capture *capture, enum output_compare_side side, uint64_t now_us,
                           const uint8_t *frame, size_t length);
/* After output_compare_note_timeout (when timeout_noted) and before
 * output_compare_reset: counters are the comparator's at that moment. */
void compare_capture_epoch_end(struct compare_capture *capture, uint64_t now_us, bool timeout_noted,
                               const struct output_compare_counters *counters);

#endif
