/* error_prefix and error_append: context before and after a message that
 * is already there, cut at the message's size, and nothing for NULL. */
#include <errno.h>
#include <string.h>

#include "error.h"

#include "test_check.h"

static int fails_inside(struct error *err)
{
    errno = ECONNREFUSED;
    return error_set_errno(err, "cannot connect to %s", "b:7000");
}

int main(void)
{
    struct error err;
    CHECK(fails_inside(&err) == -1, "error_set_errno returns -1");
    CHECK(error_prefix(&err, "migration to %s failed: ", "b:7000") == -1, "error_prefix returns -1");
    CHECK(strcmp(err.message, "migration to b:7000 failed: cannot connect to b:7000: Connection refused") == 0,
          "prefixed: '%s'", err.message);
    CHECK(error_append(&err, "; the VM keeps running %s", "here") == -1, "error_append returns -1");
    CHECK(strcmp(err.message, "migration to b:7000 failed: cannot connect to b:7000: Connection refused; "
                              "the VM keeps running here") == 0,
          "appended: '%s'", err.message);

    /* An empty prefix or suffix changes nothing. */
    error_set(&err, "as it was");
    error_prefix(&err, "%s", "");
    error_append(&err, "%s", "");
    CHECK(strcmp(err.message, "as it was") == 0, "empty context: '%s'", err.message);

    /* Prefixes nest, innermost last. */
    error_set(&err, "bad magic");
    error_prefix(&err, "state: ");
    error_prefix(&err, "%s: ", "/tmp/web.colo");
    CHECK(strcmp(err.message, "/tmp/web.colo: state: bad magic") == 0, "nested: '%s'", err.message);

    /* Too long: cut at the end, always terminated, the prefix kept whole. */
    char long_text[700];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    error_set(&err, "%s", long_text);
    error_prefix(&err, "context: ");
    CHECK(strlen(err.message) == sizeof err.message - 1, "prefixed length %zu", strlen(err.message));
    CHECK(strncmp(err.message, "context: xxx", 12) == 0, "prefix of a long message: '%.20s'", err.message);
    error_append(&err, " and more");
    CHECK(strlen(err.message) == sizeof err.message - 1, "appended length %zu", strlen(err.message));
    CHECK(err.message[sizeof err.message - 2] == 'x', "a full message stays as it was");
    error_set(&err, "short");
    error_prefix(&err, "%s", long_text);
    CHECK(strlen(err.message) == sizeof err.message - 1 && err.message[0] == 'x',
          "a prefix longer than the message is cut too (length %zu)", strlen(err.message));

    /* NULL: nothing to write, still -1. */
    CHECK(error_prefix(NULL, "x %d", 1) == -1, "error_prefix(NULL) returns -1");
    CHECK(error_append(NULL, "x %d", 1) == -1, "error_append(NULL) returns -1");

    return test_check_finish("error_test");
}
