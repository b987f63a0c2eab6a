#include "vm_save_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine.h"
#include "stream.h"

#define SAVE_FILE_MAGIC "COLOVMSF"
#define SAVE_FILE_VERSION 1u
#define SAVE_FILE_PREFIX 16u
#define SAVE_FILE_MAX_CONFIG (1u << 20)

static void put_u32(uint8_t *out, uint32_t value)
{
    for (unsigned i = 0; i < 4; i++)
        out[i] = (uint8_t)(value >> (8 * i));
}

static uint32_t get_u32(const uint8_t *in)
{
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
}

static int write_all(int fd, const void *data, size_t length)
{
    const uint8_t *bytes = data;
    while (length) {
        ssize_t written = write(fd, bytes, length);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return -1;
        bytes += written;
        length -= (size_t)written;
    }
    return 0;
}

static int read_all(int fd, void *data, size_t length)
{
    uint8_t *bytes = data;
    while (length) {
        ssize_t got = read(fd, bytes, length);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        bytes += got;
        length -= (size_t)got;
    }
    return 0;
}

int64_t vm_save_file_write(const char *path, struct machine *machine, const struct vm_config *config,
                           const struct vm_save_file_records *records, struct error *err)
{
    char *config_text = NULL;
    size_t config_length = 0;
    if (config) {
        config_text = malloc(SAVE_FILE_MAX_CONFIG);
        if (!config_text)
            return error_set(err, "out of memory saving %s", path);
        if (vm_config_format(config, config_text, SAVE_FILE_MAX_CONFIG, err) < 0) {
            free(config_text);
            return -1;
        }
        config_length = strlen(config_text);
    }
    char partial[4200];
    snprintf(partial, sizeof partial, "%s.partial", path);
    int fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(config_text);
        return error_set_errno(err, "cannot create save file %s", partial);
    }
    uint8_t prefix[SAVE_FILE_PREFIX];
    memcpy(prefix, SAVE_FILE_MAGIC, 8);
    put_u32(prefix + 8, SAVE_FILE_VERSION);
    put_u32(prefix + 12, (uint32_t)config_length);
    int64_t result = -1;
    struct stream_writer writer;
    bool writer_ready = false;
    if (write_all(fd, prefix, sizeof prefix) < 0 || write_all(fd, config_text ? config_text : "", config_length) < 0) {
        error_set_errno(err, "cannot write save file %s", partial);
        goto done;
    }
    if (stream_writer_init(&writer, fd, err) < 0)
        goto done;
    writer_ready = true;
    struct stream_header header = { STREAM_VERSION, machine_ram_size(machine), machine_configuration_hash(machine) };
    uint64_t *pages = malloc(machine_ram_page_count(machine) * sizeof *pages);
    if (!pages) {
        error_set(err, "out of memory saving %s", path);
        goto done;
    }
    for (uint64_t i = 0; i < machine_ram_page_count(machine); i++)
        pages[i] = i;
    int status = stream_write_header(&writer, &header, err) < 0 ||
                         stream_write_pages(&writer, machine, pages, machine_ram_page_count(machine), err) < 0 ||
                         (records && records->write && records->write(records->opaque, &writer, err) < 0) ||
                         stream_write_machine_state(&writer, machine, err) < 0 || stream_write_end(&writer, err) < 0 ||
                         stream_flush(&writer, err) < 0
                     ? -1
                     : 0;
    free(pages);
    if (status < 0)
        goto done;
    if (fdatasync(fd) < 0) {
        error_set_errno(err, "cannot flush save file %s", partial);
        goto done;
    }
    result = (int64_t)(SAVE_FILE_PREFIX + config_length + writer.bytes_written);
done:
    if (writer_ready)
        stream_writer_destroy(&writer);
    free(config_text);
    if (close(fd) < 0 && result >= 0) {
        error_set_errno(err, "cannot write save file %s", partial);
        result = -1;
    }
    if (result >= 0 && rename(partial, path) < 0) {
        error_set_errno(err, "cannot rename %s to %s", partial, path);
        result = -1;
    }
    if (result < 0)
        unlink(partial);
    return result;
}

int vm_save_file_open(struct vm_save_file *file, const char *path, struct error *err)
{
    memset(file, 0, sizeof *file);
    file->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (file->fd < 0)
        return error_set_errno(err, "cannot open save file %s", path);
    uint8_t prefix[SAVE_FILE_PREFIX];
    if (read_all(file->fd, prefix, sizeof prefix) < 0) {
        vm_save_file_close(file);
        return error_set(err, "%s: too short for a colo save file", path);
    }
    if (memcmp(prefix, SAVE_FILE_MAGIC, 8) != 0) {
        vm_save_file_close(file);
        return error_set(err, "%s: not a colo save file (it does not start with %s)", path, SAVE_FILE_MAGIC);
    }
    uint32_t version = get_u32(prefix + 8), config_length = get_u32(prefix + 12);
    if (version != SAVE_FILE_VERSION) {
        vm_save_file_close(file);
        return error_set(err, "%s: save file version %u, this colo reads version %u", path, version, SAVE_FILE_VERSION);
    }
    if (config_length >= SAVE_FILE_MAX_CONFIG) {
        vm_save_file_close(file);
        return error_set(err, "%s: configuration of %u bytes is implausible", path, config_length);
    }
    file->config_text = malloc(config_length + 1);
    uint8_t stream_header[STREAM_HEADER_LENGTH];
    if (!file->config_text || read_all(file->fd, file->config_text, config_length) < 0 ||
        pread(file->fd, stream_header, sizeof stream_header, (off_t)(SAVE_FILE_PREFIX + config_length)) !=
            (ssize_t)sizeof stream_header) {
        vm_save_file_close(file);
        return error_set(err, "%s: truncated (it ends inside the configuration or the stream header)", path);
    }
    file->config_text[config_length] = '\0';
    if (memchr(file->config_text, '\0', config_length)) {
        vm_save_file_close(file);
        return error_set(err, "%s: the saved configuration contains a NUL byte", path);
    }
    file->ram_size = 0;
    for (unsigned i = 0; i < 8; i++)
        file->ram_size |= (uint64_t)stream_header[16 + i] << (8 * i);
    return 0;
}

int vm_save_file_load(struct vm_save_file *file, struct machine *machine, const char *path,
                      const struct vm_save_file_records *records, struct error *err)
{
    struct stream_reader reader;
    if (stream_reader_init(&reader, file->fd, err) < 0)
        return -1;
    struct stream_header expected = { STREAM_VERSION, machine_ram_size(machine), machine_configuration_hash(machine) };
    uint32_t terminator = 0;
    int status = 0;
    if (stream_read_header(&reader, &expected, err) < 0 || stream_receive(&reader, machine, &terminator, err) < 0)
        status = -1;
    else if (terminator != STREAM_RECORD_END)
        status = error_set(err, "the stream has no END record");
    else if (records && records->loaded && records->loaded(records->opaque, machine, &reader, err) < 0)
        status = -1;
    stream_reader_destroy(&reader);
    if (status < 0)
        return error_prefix(err, "%s: ", path);
    return 0;
}

void vm_save_file_close(struct vm_save_file *file)
{
    if (file->fd >= 0)
        close(file->fd);
    file->fd = -1;
    free(file->config_text);
    file->config_text = NULL;
}
