/* libFuzzer target: the pre-shared key file (cluster/peer_credentials.h),
 * whatever an operator's editor or a wrong path puts in it. Anything is
 * either rejected with a message that names the file, or a key whose
 * identity and bytes write back as the line that was read (hex case and
 * the newline aside): never a crash, never a key the parser made up. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "peer_credentials.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    struct peer_psk psk;
    struct error err;
    err.message[0] = '\0';
    if (peer_psk_parse(text, size, "fuzz.psk", &psk, &err) == 0) {
        size_t identity_length = strlen(psk.identity);
        if (identity_length == 0 || identity_length > PEER_PSK_IDENTITY_MAX || psk.key_size < PEER_PSK_KEY_MIN ||
            psk.key_size > PEER_PSK_KEY_MAX)
            abort();
        char line[PEER_PSK_IDENTITY_MAX + 2 + 2 * PEER_PSK_KEY_MAX + 1];
        int used = snprintf(line, sizeof line, "%s:", psk.identity);
        for (size_t i = 0; i < psk.key_size; i++)
            used += snprintf(line + used, sizeof line - (size_t)used, "%02x", psk.key[i]);
        size_t length = size;
        if (length > 0 && text[length - 1] == '\n')
            length--;
        if (length > 0 && text[length - 1] == '\r')
            length--;
        if (length != (size_t)used)
            abort();
        for (size_t i = 0; i < length; i++) {
            if (tolower((unsigned char)text[i]) != tolower((unsigned char)line[i]) ||
                (i < identity_length && text[i] != line[i]))
                abort();
        }
    } else if (strncmp(err.message, "fuzz.psk:", 9) != 0) {
        abort(); /* an error that does not name the file */
    }
    free(text);
    return 0;
}
