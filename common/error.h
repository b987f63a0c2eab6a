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
int error_set(struct error *err, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Like error_set, with ": strerror(errno)" appended. */
int error_set_errno(struct error *err, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Puts context before the message err already holds ("migration to B
 * failed: " + "cannot connect to B: ..."), for a caller that passed err down
 * and now says what it was doing. Returns -1; nothing if err is NULL. */
int error_prefix(struct error *err, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Adds to the end of the message err already holds (a hint, what happens
 * now). Returns -1; nothing if err is NULL. */
int error_append(struct error *err, const char *format, ...) __attribute__((format(printf, 2, 3)));

#endif
