/* Image files for the tests of block backends: make one with given bytes,
 * read bytes back (each exits the test on failure), and a byte check. */
#ifndef COLO_TESTS_TEST_IMAGE_FILE_H
#define COLO_TESTS_TEST_IMAGE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void test_image_file_create(const char *path, const uint8_t *data, size_t length);
void test_image_file_read(const char *path, uint64_t offset, uint8_t *data, size_t length);
/* True when every byte of data is value. */
bool test_bytes_all(const uint8_t *data, size_t length, uint8_t value);

#endif
