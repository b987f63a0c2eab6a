/* The machine of a C test: a few options instead of a machine_config
 * filled in by hand. Console output is discarded and there is no console
 * input; everything else is machine_config_defaults. A machine that
 * cannot be made ends the test (exit status 1, with a FAIL line). */
#ifndef COLO_TESTS_TEST_MACHINE_H
#define COLO_TESTS_TEST_MACHINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "machine.h"
#include "net_backend.h"

/* The MAC of the NIC asked for with `nic`. */
#define TEST_MACHINE_MAC                   \
    {                                      \
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56 \
    }

struct test_machine_options {
    uint64_t ram_size; /* bytes; 0: 16 MiB */
    /* mtime from retired instructions, so a run depends on nothing but
     * its input (else the host's clock, as machine_config_defaults). */
    bool deterministic_time;
    const char *elf;        /* loaded (entry, tohost) when not NULL */
    const char *disk_image; /* one disk over this raw image when not NULL */
    bool disk_read_only;
    bool nic;            /* one NIC, MAC TEST_MACHINE_MAC */
    const char *nic_tap; /* its TAP; NULL: none (frames dropped) */
};

struct machine *test_machine_create(const struct test_machine_options *options);
void test_machine_destroy(struct machine *machine);
/* machine_run(machine, 0) on a thread of its own, until test_machine_stop
 * (which asks the machine to stop and joins the thread). */
pthread_t test_machine_start(struct machine *machine);
void test_machine_stop(struct machine *machine, pthread_t thread);

/* A net backend for NIC 0 of a test machine that hands every frame sent
 * to it to on_frame: the test's wire. A test's recorder puts it first
 * and casts back in on_frame. */
struct test_wire;
typedef void (*test_wire_frame_fn)(struct test_wire *wire, const struct virtio_net_header *header, const uint8_t *frame,
                                   size_t length);
struct test_wire {
    struct net_backend backend; /* first: the backend is the struct */
    test_wire_frame_fn on_frame;
};

/* Attaches the wire to NIC 0 (the machine made with `nic`); a failure
 * ends the test. */
void test_wire_attach(struct machine *machine, struct test_wire *wire, test_wire_frame_fn on_frame);

#endif
