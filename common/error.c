#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int error_set(struct error *err, const char *format, ...)
{
    if (err) {
        va_list args;
        va_start(args, format);
        vsnprintf(err->message, sizeof err->message, format, args);
        va_end(args);
    }
    return -1;
}

int error_set_errno(struct error *err, const char *format, ...)
{
    int saved_errno = errno;
    if (err) {
        va_list args;
        va_start(args, format);
        int used = vsnprintf(err->message, sizeof err->message, format, args);
        va_end(args);
        if (used >= 0 && (size_t)used < sizeof err->message)
            snprintf(err->message + used, sizeof err->message - (size_t)used, ": %s", strerror(saved_errno));
    }
    errno = saved_errno;
    return -1;
}

int error_prefix(struct error *err, const char *format, ...)
{
    if (err) {
        char message[sizeof err->message];
        memcpy(message, err->message, sizeof message);
        message[sizeof message - 1] = '\0';
        va_list args;
        va_start(args, format);
        int used = vsnprintf(err->message, sizeof err->message, format, args);
        va_end(args);
        if (used >= 0 && (size_t)used < sizeof err->message)
            snprintf(err->message + used, sizeof err->message - (size_t)used, "%s", message);
    }
    return -1;
}

int error_append(struct error *err, const char *format, ...)
{
    if (err) {
        size_t used = strnlen(err->message, sizeof err->message - 1);
        va_list args;
        va_start(args, format);
        vsnprintf(err->message + used, sizeof err->message - used, format, args);
        va_end(args);
    }
    return -1;
}
