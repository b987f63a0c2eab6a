// The KV store's persistence: an append-only log of SET records on a raw
// block device (no file system), replayed at start.
//
// Record layout, little-endian, records back to back from byte 0:
//   0  u32 magic  "CKV1"
//   4  u32 sequence number: 1 for the first record, +1 for each next one
//   8  u32 key length
//  12  u32 value length
//  16  u32 CRC-32 of bytes 0..15 and of the key and value bytes
//  20  key bytes, then value bytes
//
// Replay stops at the first record that is not valid: bad magic (the end of
// the log: a new disk is all zeros), wrong sequence, impossible lengths or a
// CRC mismatch (a record torn by a crash before its write was flushed, whose
// SET was therefore never acknowledged). The next record is written there,
// over the torn one. The sequence number keeps a stale record from an older
// log from being taken as part of this one.
#ifndef COLO_KVLOG_H
#define COLO_KVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_MAX_KEY_LENGTH 1024u
#define KV_MAX_VALUE_LENGTH 60000u

struct kv_log {
    int fd;  // the block device, opened O_DSYNC; -1 if none
    char path[128];
    uint64_t device_size;  // bytes
    uint64_t end;          // where the next record goes
    uint32_t next_sequence;
};

// Called for every valid record during replay, in log order.
typedef void kv_log_apply_fn(void *context, const char *key, size_t key_length, const char *value,
                             size_t value_length);

// Opens the device and replays its log through apply. Returns false (and
// logs why) if the device cannot be opened; a corrupt tail is not an error.
bool kv_log_open(struct kv_log *log, const char *path, kv_log_apply_fn *apply, void *context);

// Appends one SET record and returns once it is on the disk (O_DSYNC: the
// write and a cache flush). Returns 0, or an errno value: ENOSPC when the
// log is full, others from the device.
int kv_log_append(struct kv_log *log, const char *key, size_t key_length, const char *value,
                  size_t value_length);

#endif
