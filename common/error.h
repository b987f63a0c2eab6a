/* Host-side errors: a message that says what went wrong, carried back to
 * whoever can report it. Guest-visible faults are never errors: they are
 * trap causes (see machine/hart.h). */
#ifndef COLO_COMMON_ERROR_H
#define COLO_COMMON_ERROR_H

struct error {
    char message[512];
};

/* Formats the message into err (if not NULL) and returns -1, so that
 * `return error_set(err, "...")` reads naturally. */
int error_set(struct error *err, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Like error_set, with ": strerror(errno)" appended. */
int error_set_errno(struct error *err, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

#endif
