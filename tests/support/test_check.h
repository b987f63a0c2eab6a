/* The check macro of the C tests: a failed check prints where and why and
 * is counted; the test goes on, so one run shows every failure.
 * test_check_finish ends main: the count of failures decides the status. */
#ifndef COLO_TESTS_TEST_CHECK_H
#define COLO_TESTS_TEST_CHECK_H

#include <stdio.h>

static int test_check_failures;

#define CHECK(condition, ...) CHECK_AT(__LINE__, condition, __VA_ARGS__)
/* For a helper that checks on its caller's behalf: the caller's line. */
#define CHECK_AT(line, condition, ...)                              \
    do {                                                            \
        if (!(condition)) {                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, (int)(line)); \
            fprintf(stderr, __VA_ARGS__);                           \
            fprintf(stderr, "\n");                                  \
            test_check_failures++;                                  \
        }                                                           \
    } while (0)

/* Prints the summary; returns main's exit status. */
static inline int test_check_finish(const char *test_name)
{
    if (test_check_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", test_name, test_check_failures);
        return 1;
    }
    printf("%s: all checks passed\n", test_name);
    return 0;
}

#endif
