/* libFuzzer target: the secondary's parser of the mirror connection
 * (proxy/mirror_framing.h) over any bytes a peer could send. The first
 * byte picks the VM's NIC count (0..4); the rest is the stream, parsed
 * message by message as the mirror reader does. Every message is either
 * whole and inside the buffer, incomplete, or malformed: never a crash or
 * a read past the end, and a parsed frame, heartbeat, boundary or "keep
 * the SVM's frames" re-encodes to the same bytes. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "mirror_framing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned nic_count = data[0] % 5;
    /* A copy of exactly the input's length, so ASan sees any overread. */
    uint8_t *buffer = malloc(size - 1 ? size - 1 : 1);
    if (!buffer)
        return 0;
    memcpy(buffer, data + 1, size - 1);
    size_t offset = 0, length = size - 1;
    for (;;) {
        struct mirror_message message;
        long parsed = mirror_parse(buffer + offset, length - offset, nic_count, &message);
        if (parsed <= 0)
            break;
        if ((size_t)parsed > length - offset)
            abort(); /* a message longer than what was there */
        int words = message.heartbeat + message.boundary + message.no_return;
        if (words > 0) {
            if (parsed != MIRROR_WORD_SIZE || words > 1)
                abort(); /* a bare word, one kind */
            uint8_t word[MIRROR_WORD_SIZE];
            mirror_encode_word(word,
                               message.boundary    ? MIRROR_BOUNDARY_NIC
                               : message.no_return ? MIRROR_NO_RETURN_NIC
                                                   : 0,
                               0);
            if (memcmp(word, buffer + offset, sizeof word) != 0)
                abort();
        } else {
            if (message.nic >= nic_count || message.length == 0 || message.length > VIRTIO_NET_MAX_FRAME ||
                message.frame != buffer + offset + MIRROR_WORD_SIZE)
                abort();
            uint8_t word[MIRROR_WORD_SIZE], header[VIRTIO_NET_HEADER_SIZE];
            mirror_encode_word(word, message.nic, message.length);
            virtio_net_header_encode(&message.header, header);
            if (memcmp(word, buffer + offset, sizeof word) != 0 ||
                memcmp(header, message.frame + message.length, sizeof header) != 0)
                abort(); /* parse and encode disagree */
        }
        offset += (size_t)parsed;
    }
    free(buffer);
    return 0;
}
