#include "test_machine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio_net_device.h"

static void give_up(const char *what, const struct error *err)
{
    fprintf(stderr, "FAIL: cannot set up the test machine: %s%s%s\n", what, err ? ": " : "", err ? err->message : "");
    exit(1);
}

struct machine *test_machine_create(const struct test_machine_options *options)
{
    struct machine_config config;
    machine_config_defaults(&config);
    config.ram_size = options->ram_size ? options->ram_size : 16u << 20;
    config.deterministic_time = options->deterministic_time;
    config.console_output_fd = -1;
    config.console_input_fd = -1;
    if (options->disk_image) {
        if (strlen(options->disk_image) >= sizeof config.disks[0].path)
            give_up("disk image path too long", NULL);
        strcpy(config.disks[0].path, options->disk_image);
        config.disks[0].read_only = options->disk_read_only;
        config.disk_count = 1;
    }
    if (options->nic || options->nic_tap) {
        static const uint8_t mac[6] = TEST_MACHINE_MAC;
        memcpy(config.nics[0].mac, mac, sizeof mac);
        if (options->nic_tap)
            snprintf(config.nics[0].tap, sizeof config.nics[0].tap, "%s", options->nic_tap);
        config.nic_count = 1;
    }
    struct error err;
    struct machine *machine = machine_create(&config, &err);
    if (!machine)
        give_up("machine_create", &err);
    if (options->elf && machine_load_elf(machine, options->elf, &err) < 0)
        give_up("machine_load_elf", &err);
    return machine;
}

void test_machine_destroy(struct machine *machine)
{
    machine_destroy(machine);
}

static int wire_send(struct net_backend *backend, const struct virtio_net_header *header, const uint8_t *frame,
                     size_t length)
{
    struct test_wire *wire = (struct test_wire *)backend;
    wire->on_frame(wire, header, frame, length);
    return 0;
}

static void wire_destroy(struct net_backend *backend)
{
    (void)backend; /* the test owns it */
}

static const struct net_backend_ops wire_ops = { .kind = "test wire", .send = wire_send, .destroy = wire_destroy };

void test_wire_attach(struct machine *machine, struct test_wire *wire, test_wire_frame_fn on_frame)
{
    wire->backend = (struct net_backend){ .ops = &wire_ops, .fd = -1 };
    wire->on_frame = on_frame;
    struct error err = { 0 };
    if (virtio_net_attach_backend(machine_nic(machine, 0), &wire->backend, &err) < 0)
        give_up("attaching the test wire", &err);
}

static void *run_machine(void *machine)
{
    machine_run(machine, 0);
    return NULL;
}

pthread_t test_machine_start(struct machine *machine)
{
    pthread_t thread;
    int failed = pthread_create(&thread, NULL, run_machine, machine);
    if (failed) {
        fprintf(stderr, "FAIL: cannot start a machine's thread: %s\n", strerror(failed));
        exit(1);
    }
    return thread;
}

void test_machine_stop(struct machine *machine, pthread_t thread)
{
    machine_request_stop(machine);
    pthread_join(thread, NULL);
}
