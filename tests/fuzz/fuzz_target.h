/* The entry points libFuzzer calls, and tests/fuzz/replay_main.c, which
 * replays a corpus without it. Every target defines the first; one that
 * must set up before the first input may define the second. */
#ifndef COLO_TESTS_FUZZ_TARGET_H
#define COLO_TESTS_FUZZ_TARGET_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
