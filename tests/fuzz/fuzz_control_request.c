/* libFuzzer target: one control socket request line, as the server parses
 * it (control_request_parse). Any bytes may be refused, but only with a
 * message, and what is accepted is an object with a string "command" that
 * the server can write back (it echoes the request's "id" in replies): it
 * serializes, and the text parses again to an equal value. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control_server.h"
#include "fuzz_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The server never hands the parser a newline: it splits lines there. */
    if (memchr(data, '\n', size))
        return 0;
    json_t *request;
    struct error err = { "" };
    int result = control_request_parse((const char *)data, size, &request, &err);
    if (result < 0) {
        if (!err.message[0] || (request && !json_is_object(request)))
            abort();
    } else if (result == 0) {
        if (request)
            abort();
        for (size_t i = 0; i < size; i++)
            if (data[i] != ' ' && data[i] != '\t' && data[i] != '\r')
                abort(); /* only a blank line is ignored */
    } else {
        if (!json_is_object(request) || !json_is_string(json_object_get(request, "command")))
            abort();
        char *text = json_dumps(request, JSON_COMPACT);
        if (!text)
            abort();
        json_t *again = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        if (!again || !json_equal(request, again)) {
            fprintf(stderr, "request does not survive a write and a read: %s\n", text);
            abort();
        }
        json_decref(again);
        free(text);
    }
    json_decref(request);
    return 0;
}
