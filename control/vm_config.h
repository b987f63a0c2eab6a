/* VM configuration files, in the spirit of xl.cfg:
 *
 *     # a comment
 *     name    = "web"
 *     memory  = 256                       # MiB
 *     kernel  = "guests/linux/out/Image"  # relative paths: to this file
 *     initrd  = "guests/linux/out/initramfs.cpio"
 *     cmdline = "console=ttyS0 colo.ip=10.0.0.2/24"
 *     disks   = [ "path=disk.img", "path=seed.img,readonly" ]
 *     nics    = [ "tap=tap0,mac=52:54:00:12:34:56" ]
 *     console = "stdio"                   # or "none"
 *     firmware = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf"
 *     replication_auth = "psk"            # or "certificate", or "none" (plain TCP)
 *     replication_psk = "web.psk"         # `colo keygen psk web.psk`
 *     # replication_certificate = "a.pem", replication_key = "a.key",
 *     # replication_ca = "ca.pem"         # with "certificate"
 *
 * Every error names the file, the line, the key and what was expected. */
#ifndef COLO_CONTROL_VM_CONFIG_H
#define COLO_CONTROL_VM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "machine.h"
#include "machine_boot.h"

#define VM_CONFIG_PATH_MAX 4096

/* How replication peers authenticate (docs/security.md); unset: protect
 * and `colo secondary` refuse to start and say how to set it. */
enum vm_replication_auth {
    VM_REPLICATION_AUTH_UNSET,
    VM_REPLICATION_AUTH_PSK,
    VM_REPLICATION_AUTH_CERTIFICATE,
    VM_REPLICATION_AUTH_NONE,
};

enum vm_console {
    VM_CONSOLE_STDIO,
    VM_CONSOLE_NONE,
};

struct vm_config {
    char name[64];
    uint64_t memory_mib;
    char firmware[VM_CONFIG_PATH_MAX];
    char kernel[VM_CONFIG_PATH_MAX];
    char initrd[VM_CONFIG_PATH_MAX]; /* empty: none */
    char cmdline[VM_CONFIG_PATH_MAX];
    unsigned disk_count;
    struct machine_disk_config disks[MACHINE_MAX_DISKS];
    unsigned nic_count;
    struct machine_nic_config nics[MACHINE_MAX_NICS];
    enum vm_console console;
    enum vm_replication_auth replication_auth;
    char replication_psk[VM_CONFIG_PATH_MAX];
    char replication_certificate[VM_CONFIG_PATH_MAX];
    char replication_key[VM_CONFIG_PATH_MAX];
    char replication_ca[VM_CONFIG_PATH_MAX];
};

/* Parses a configuration file. */
int vm_config_parse_file(const char *path, struct vm_config *config, struct error *err);
/* Parses text; file_name is used in messages, base_directory to resolve
 * relative paths. */
int vm_config_parse_text(const char *text, size_t length, const char *file_name, const char *base_directory,
                         struct vm_config *config, struct error *err);

/* Writes the configuration back as VM.cfg text, with absolute paths, so
 * that parsing it gives the same configuration (used in save files). */
int vm_config_format(const struct vm_config *config, char *text, size_t capacity, struct error *err);

#endif
