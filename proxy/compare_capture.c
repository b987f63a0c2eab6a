/* The comparator's inputs as pcapng (compare_capture.h). The format:
 * https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-01.html; written
 * in host byte order, which the section header's magic tells readers. */
#include "compare_capture.h"

#include <errno.h>
#include <string.h>

#define LINKTYPE_ETHERNET 1
#define LINKTYPE_USER0 147

static size_t padded(size_t length)
{
    return (length + 3u) & ~(size_t)3u;
}

/* One block: its type, the body (a fixed part, then data; padded to 32
 * bits here) and the length at both ends. A write that fails ends the
 * recording. */
static void write_block(struct compare_capture *capture, uint32_t type, const void *fixed, size_t fixed_length,
                        const void *data, size_t data_length)
{
    static const uint8_t zeros[4];
    if (!capture->file || capture->full)
        return;
    size_t body_length = fixed_length + data_length;
    uint32_t total = (uint32_t)(12 + padded(body_length));
    bool written = fwrite(&type, 4, 1, capture->file) == 1 && fwrite(&total, 4, 1, capture->file) == 1 &&
                   fwrite(fixed, fixed_length, 1, capture->file) == 1 &&
                   (data_length == 0 || fwrite(data, data_length, 1, capture->file) == 1) &&
                   (padded(body_length) == body_length ||
                    fwrite(zeros, padded(body_length) - body_length, 1, capture->file) == 1) &&
                   fwrite(&total, 4, 1, capture->file) == 1;
    capture->bytes += total;
    if (!written)
        capture->full = true;
}

static void write_interface(struct compare_capture *capture, uint16_t linktype,
                            enum compare_capture_interface interface)
{
    const char *name = compare_capture_interface_name(interface);
    uint8_t body[64] = { 0 };
    size_t name_length = strlen(name);
    memcpy(body, &linktype, 2);
    /* bytes 2-3 reserved, 4-7 the snap length: 0, no limit */
    uint16_t option[2] = { COMPARE_CAPTURE_OPTION_NAME, (uint16_t)name_length };
    memcpy(body + 8, option, 4);
    memcpy(body + 12, name, name_length);
    size_t at = 12 + padded(name_length);
    /* the end-of-options option: four zero bytes, already there */
    write_block(capture, COMPARE_CAPTURE_BLOCK_INTERFACE, body, at + 4, NULL, 0);
}

const char *compare_capture_interface_name(enum compare_capture_interface interface)
{
    static const char *const names[COMPARE_CAPTURE_INTERFACE_COUNT] = {
        [COMPARE_CAPTURE_PVM] = "pvm",
        [COMPARE_CAPTURE_SVM] = "svm",
        [COMPARE_CAPTURE_EPOCH_END] = "epoch-end",
    };
    return (unsigned)interface < COMPARE_CAPTURE_INTERFACE_COUNT ? names[interface] : "";
}

int compare_capture_open(struct compare_capture *capture, const char *path, struct error *err)
{
    memset(capture, 0, sizeof *capture);
    capture->max_bytes = COMPARE_CAPTURE_MAX_BYTES;
    capture->file = fopen(path, "wb");
    if (!capture->file)
        return error_set(err, "cannot create the compare capture %s: %s", path, strerror(errno));
    uint8_t header[16];
    uint32_t magic = COMPARE_CAPTURE_BYTE_ORDER_MAGIC;
    uint16_t version[2] = { 1, 0 };
    int64_t section_length = -1; /* not given */
    memcpy(header, &magic, 4);
    memcpy(header + 4, version, 4);
    memcpy(header + 8, &section_length, 8);
    write_block(capture, COMPARE_CAPTURE_BLOCK_SECTION, header, sizeof header, NULL, 0);
    write_interface(capture, LINKTYPE_ETHERNET, COMPARE_CAPTURE_PVM);
    write_interface(capture, LINKTYPE_ETHERNET, COMPARE_CAPTURE_SVM);
    write_interface(capture, LINKTYPE_USER0, COMPARE_CAPTURE_EPOCH_END);
    if (capture->full || fflush(capture->file) != 0) {
        compare_capture_close(capture);
        return error_set(err, "cannot write the compare capture %s", path);
    }
    return 0;
}

void compare_capture_close(struct compare_capture *capture)
{
    if (capture->file)
        fclose(capture->file);
    capture->file = NULL;
}

static void write_packet(struct compare_capture *capture, enum compare_capture_interface interface, uint64_t now_us,
                         const void *data, size_t length)
{
    if (!capture->file || capture->full)
        return;
    static const char full_text[] = "capture full: nothing recorded after this";
    bool last = capture->bytes + 32 + padded(length) + 32 + sizeof full_text > capture->max_bytes;
    if (last) {
        interface = COMPARE_CAPTURE_EPOCH_END;
        data = full_text;
        length = sizeof full_text - 1;
    }
    /* interface, the time's high and low words, captured and original length */
    uint32_t fields[5] = { interface, (uint32_t)(now_us >> 32), (uint32_t)now_us, (uint32_t)length, (uint32_t)length };
    write_block(capture, COMPARE_CAPTURE_BLOCK_PACKET, fields, sizeof fields, data, length);
    if (last) {
        fflush(capture->file);
        capture->full = true;
    }
}

void compare_capture_frame(struct compare_capture *capture, enum output_compare_side side, uint64_t now_us,
                           const uint8_t *frame, size_t length)
{
    write_packet(capture, side == OUTPUT_COMPARE_PRIMARY ? COMPARE_CAPTURE_PVM : COMPARE_CAPTURE_SVM, now_us, frame,
                 length);
}

void compare_capture_epoch_end(struct compare_capture *capture, uint64_t now_us, bool timeout_noted,
                               const struct output_compare_counters *counters)
{
    if (!capture->file || capture->full)
        return;
    char text[256];
    const uint64_t *differences = counters->differences;
    _Static_assert(OUTPUT_COMPARE_CAUSE_COUNT == 6, "the text lists six causes");
    int length = snprintf(text, sizeof text,
                          "epoch end: timeout=%d released_matched=%llu released_at_once=%llu "
                          "differences=%llu,%llu,%llu,%llu,%llu,%llu primary_frames=%llu secondary_frames=%llu",
                          timeout_noted ? 1 : 0, (unsigned long long)counters->released_matched,
                          (unsigned long long)counters->released_at_once, (unsigned long long)differences[0],
                          (unsigned long long)differences[1], (unsigned long long)differences[2],
                          (unsigned long long)differences[3], (unsigned long long)differences[4],
                          (unsigned long long)differences[5], (unsigned long long)counters->primary_frames,
                          (unsigned long long)counters->secondary_frames);
    write_packet(capture, COMPARE_CAPTURE_EPOCH_END, now_us, text, (size_t)length);
    /* Whole epochs on disk: a primary killed later leaves a file to read. */
    if (capture->file)
        fflush(capture->file);
}
