/* Save files (`colo save`, `--save-on-exit`, `colo restore`): the VM's
 * configuration followed by a stream (docs/stream.md), so a saved VM
 * carries everything needed to start it again, devices included.
 *
 *   "COLOVMSF"  u32 version (1)  u32 config_length
 *   config[config_length]   VM.cfg text with absolute paths; empty for a
 *                           bare-metal program
 *   stream                  header, PAGE_DATA for all of RAM, the
 *                           records' own (a survivor's TCP_SHIFT), the
 *                           machine state (HART_STATE, DEVICE_STATE), END
 *
 * Loading reads the whole stream before it changes the machine. */
#ifndef COLO_CONTROL_VM_SAVE_FILE_H
#define COLO_CONTROL_VM_SAVE_FILE_H

#include <stdint.h>

#include "error.h"
#include "vm_config.h"

struct machine;
struct stream_reader;
struct stream_writer;

/* Records beyond the machine that go into a save file and come back out
 * of it (a survivor's shifted TCP connections, vm/vm_replication.h). NULL,
 * or any hook NULL: none. */
struct vm_save_file_records {
    void *opaque;
    /* Writing, the machine paused: after the pages, before its state. */
    int (*write)(void *opaque, struct stream_writer *writer, struct error *err);
    /* Loading, once the stream was applied to the machine (not running):
     * the records are the reader's (stream_received_tcp_shift_next). */
    int (*loaded)(void *opaque, struct machine *machine, const struct stream_reader *reader, struct error *err);
};

struct vm_save_file {
    int fd;
    char *config_text; /* NUL-terminated, may be empty */
    uint64_t ram_size; /* from the stream header */
};

/* Writes the machine (which must be paused or stopped). config may be NULL
 * (a bare-metal program). The file appears complete or not at all (written
 * to PATH.partial, then renamed). Returns the bytes written, or -1. */
int64_t vm_save_file_write(const char *path, struct machine *machine, const struct vm_config *config,
                           const struct vm_save_file_records *records, struct error *err);
/* Opens a save file and reads its configuration and RAM size. */
int vm_save_file_open(struct vm_save_file *file, const char *path, struct error *err);
/* Reads the stream into the machine (created from the configuration). */
int vm_save_file_load(struct vm_save_file *file, struct machine *machine, const char *path,
                      const struct vm_save_file_records *records, struct error *err);
void vm_save_file_close(struct vm_save_file *file);

#endif
