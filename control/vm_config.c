#include "vm_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LIST_ITEMS 8
#define MAX_VALUE 4096

struct parser {
    const char *text;
    size_t length;
    size_t position;
    unsigned line;
    const char *file_name;
    const char *base_directory;
    struct error *err;
};

/* A parsed value: a string, a number, or a list of strings. */
struct value {
    enum { VALUE_STRING, VALUE_NUMBER, VALUE_LIST } kind;
    char string[MAX_VALUE];
    uint64_t number;
    unsigned item_count;
    char items[MAX_LIST_ITEMS][512];
    unsigned line;
};

static int parse_error(struct parser *parser, unsigned line, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int parse_error(struct parser *parser, unsigned line, const char *format, ...)
{
    char message[400];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    return error_set(parser->err, "%s:%u: %s", parser->file_name, line, message);
}

static int peek(const struct parser *parser)
{
    return parser->position < parser->length ? (unsigned char)parser->text[parser->position] : -1;
}

static int next(struct parser *parser)
{
    int c = peek(parser);
    if (c >= 0) {
        parser->position++;
        if (c == '\n')
            parser->line++;
    }
    return c;
}

/* Skips spaces, tabs and comments; newlines too when across_lines. */
static void skip_blank(struct parser *parser, bool across_lines)
{
    for (;;) {
        int c = peek(parser);
        if (c == ' ' || c == '\t' || c == '\r' || (across_lines && c == '\n')) {
            next(parser);
        } else if (c == '#') {
            while (peek(parser) >= 0 && peek(parser) != '\n')
                next(parser);
        } else {
            return;
        }
    }
}

static int parse_string(struct parser *parser, char *out, size_t capacity, const char *key)
{
    unsigned line = parser->line;
    next(parser); /* the opening quote */
    size_t used = 0;
    for (;;) {
        int c = next(parser);
        if (c < 0 || c == '\n')
            return parse_error(parser, line, "%s: string is not closed with \"", key);
        if (c == '"')
            break;
        if (c == '\\') {
            c = next(parser);
            if (c != '"' && c != '\\')
                return parse_error(parser, line, "%s: unknown escape in string (only \\\" and \\\\)", key);
        }
        if (c == 0)
            return parse_error(parser, line, "%s: string contains a NUL byte", key);
        if (used + 1 >= capacity)
            return parse_error(parser, line, "%s: string is longer than %zu characters", key, capacity - 1);
        out[used++] = (char)c;
    }
    out[used] = '\0';
    return 0;
}

static int parse_value(struct parser *parser, struct value *value, const char *key)
{
    skip_blank(parser, false);
    value->line = parser->line;
    int c = peek(parser);
    if (c == '"') {
        value->kind = VALUE_STRING;
        return parse_string(parser, value->string, sizeof value->string, key);
    }
    if (c >= '0' && c <= '9') {
        value->kind = VALUE_NUMBER;
        uint64_t number = 0;
        while (peek(parser) >= '0' && peek(parser) <= '9') {
            unsigned digit = (unsigned)(next(parser) - '0');
            if (number > (UINT64_MAX - digit) / 10)
                return parse_error(parser, value->line, "%s: number is too large", key);
            number = number * 10 + digit;
        }
        c = peek(parser);
        if (c >= 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '#')
            return parse_error(parser, value->line, "%s: expected a whole number, found '%c' in it", key, c);
        value->number = number;
        return 0;
    }
    if (c == '[') {
        value->kind = VALUE_LIST;
        value->item_count = 0;
        next(parser);
        for (;;) {
            skip_blank(parser, true);
            c = peek(parser);
            if (c == ']') {
                next(parser);
                return 0;
            }
            if (c != '"')
                return parse_error(parser, parser->line, "%s: expected a quoted string or ']' in the list", key);
            if (value->item_count == MAX_LIST_ITEMS)
                return parse_error(parser, parser->line, "%s: more than %d items", key, MAX_LIST_ITEMS);
            if (parse_string(parser, value->items[value->item_count], sizeof value->items[0], key) < 0)
                return -1;
            value->item_count++;
            skip_blank(parser, true);
            c = peek(parser);
            if (c == ',')
                next(parser);
            else if (c != ']')
                return parse_error(parser, parser->line, "%s: expected ',' or ']' after a list item", key);
        }
    }
    if (c < 0 || c == '\n')
        return parse_error(parser, value->line, "%s: missing value after '='", key);
    return parse_error(parser, value->line, "%s: expected a \"string\", a number or a [ \"list\" ], found '%c'", key,
                       c);
}

/* Relative paths are relative to the directory of the config file. */
static int set_path(struct parser *parser, const struct value *value, const char *key, char *out, size_t capacity)
{
    if (value->kind != VALUE_STRING || value->string[0] == '\0')
        return parse_error(parser, value->line, "%s: expected a file path in quotes", key);
    int written;
    if (value->string[0] == '/' || !parser->base_directory || !parser->base_directory[0])
        written = snprintf(out, capacity, "%s", value->string);
    else
        written = snprintf(out, capacity, "%s/%s", parser->base_directory, value->string);
    if (written < 0 || (size_t)written >= capacity)
        return parse_error(parser, value->line, "%s: path is too long", key);
    return 0;
}

static int parse_mac(const char *text, uint8_t mac[6])
{
    unsigned bytes[6];
    char trailing;
    if (sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &bytes[0], &bytes[1], &bytes[2], &bytes[3], &bytes[4], &bytes[5],
               &trailing) != 6 ||
        strlen(text) != 17)
        return -1;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)bytes[i];
    if (mac[0] & 1) /* multicast addresses cannot be a NIC's */
        return -1;
    return 0;
}

/* Splits "a=b,c,d=e" items; calls back for each key (value may be NULL). */
static int parse_options(struct parser *parser, unsigned line, const char *key, const char *item,
                         int (*option)(struct parser *, unsigned, const char *, const char *, const char *, void *),
                         void *target)
{
    char copy[512];
    snprintf(copy, sizeof copy, "%s", item);
    char *saveptr = NULL;
    for (char *part = strtok_r(copy, ",", &saveptr); part; part = strtok_r(NULL, ",", &saveptr)) {
        char *equals = strchr(part, '=');
        if (equals)
            *equals = '\0';
        if (option(parser, line, key, part, equals ? equals + 1 : NULL, target) < 0)
            return -1;
    }
    return 0;
}

static int disk_option(struct parser *parser, unsigned line, const char *key, const char *name, const char *value,
                       void *target)
{
    struct machine_disk_config *disk = target;
    if (strcmp(name, "path") == 0 && value && value[0]) {
        struct value path = { .kind = VALUE_STRING, .line = line };
        snprintf(path.string, sizeof path.string, "%s", value);
        return set_path(parser, &path, key, disk->path, sizeof disk->path);
    }
    if (strcmp(name, "readonly") == 0 && (!value || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)) {
        disk->read_only = true;
        return 0;
    }
    if (strcmp(name, "readonly") == 0 && value && (strcmp(value, "no") == 0 || strcmp(value, "0") == 0)) {
        disk->read_only = false;
        return 0;
    }
    return parse_error(parser, line, "%s: unknown disk option '%s%s%s' (expected path=FILE or readonly)", key, name,
                       value ? "=" : "", value ? value : "");
}

static int nic_option(struct parser *parser, unsigned line, const char *key, const char *name, const char *value,
                      void *target)
{
    struct machine_nic_config *nic = target;
    if (strcmp(name, "tap") == 0 && value) {
        size_t length = strlen(value);
        if (length == 0 || length >= sizeof nic->tap)
            return parse_error(parser, line, "%s: tap name '%s' must be 1..15 characters", key, value);
        for (size_t i = 0; i < length; i++)
            if (!isalnum((unsigned char)value[i]) && value[i] != '-' && value[i] != '_' && value[i] != '.')
                return parse_error(parser, line,
                                   "%s: tap name '%s' has a character other than "
                                   "letters, digits, '-', '_' and '.'",
                                   key, value);
        memcpy(nic->tap, value, length + 1);
        return 0;
    }
    if (strcmp(name, "mac") == 0 && value) {
        if (parse_mac(value, nic->mac) < 0)
            return parse_error(parser, line, "%s: mac '%s' is not a unicast MAC address like 52:54:00:12:34:56", key,
                               value);
        return 0;
    }
    return parse_error(parser, line, "%s: unknown nic option '%s' (expected tap=NAME and mac=XX:XX:XX:XX:XX:XX)", key,
                       name);
}

/* replication_auth's values, as VM.cfg spells them (parse and format). */
static const char *const replication_auth_names[] = {
    [VM_REPLICATION_AUTH_PSK] = "psk",
    [VM_REPLICATION_AUTH_CERTIFICATE] = "certificate",
    [VM_REPLICATION_AUTH_NONE] = "none",
};

static const char *const known_keys[] = {
    "name",
    "memory",
    "firmware",
    "kernel",
    "initrd",
    "cmdline",
    "disks",
    "nics",
    "console",
    "vcpus",
    "replication_auth",
    "replication_psk",
    "replication_certificate",
    "replication_key",
    "replication_ca",
};

static int apply(struct parser *parser, const char *key, const struct value *value, struct vm_config *config)
{
    if (strcmp(key, "name") == 0) {
        if (value->kind != VALUE_STRING || value->string[0] == '\0' || strlen(value->string) >= sizeof config->name)
            return parse_error(parser, value->line, "name: expected a name in quotes, 1..%zu characters",
                               sizeof config->name - 1);
        for (const char *c = value->string; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
                return parse_error(parser, value->line, "name: '%s' may only hold letters, digits, '-', '_' and '.'",
                                   value->string);
        memcpy(config->name, value->string, strlen(value->string) + 1);
    } else if (strcmp(key, "memory") == 0) {
        if (value->kind != VALUE_NUMBER || value->number < 64 || value->number > (256u << 10))
            return parse_error(parser, value->line, "memory: expected a whole number of MiB from 64 to %u", 256u << 10);
        config->memory_mib = value->number;
    } else if (strcmp(key, "vcpus") == 0) {
        if (value->kind != VALUE_NUMBER || value->number != 1)
            return parse_error(parser, value->line, "vcpus: expected 1 (one hart per VM for now)");
    } else if (strcmp(key, "firmware") == 0) {
        return set_path(parser, value, key, config->firmware, sizeof config->firmware);
    } else if (strcmp(key, "kernel") == 0) {
        return set_path(parser, value, key, config->kernel, sizeof config->kernel);
    } else if (strcmp(key, "initrd") == 0) {
        return set_path(parser, value, key, config->initrd, sizeof config->initrd);
    } else if (strcmp(key, "cmdline") == 0) {
        if (value->kind != VALUE_STRING)
            return parse_error(parser, value->line, "cmdline: expected the kernel command line in quotes");
        if (strlen(value->string) >= sizeof config->cmdline)
            return parse_error(parser, value->line, "cmdline: longer than %zu characters", sizeof config->cmdline - 1);
        memcpy(config->cmdline, value->string, strlen(value->string) + 1);
    } else if (strcmp(key, "console") == 0) {
        if (value->kind == VALUE_STRING && strcmp(value->string, "stdio") == 0)
            config->console = VM_CONSOLE_STDIO;
        else if (value->kind == VALUE_STRING && strcmp(value->string, "none") == 0)
            config->console = VM_CONSOLE_NONE;
        else
            return parse_error(parser, value->line, "console: expected \"stdio\" or \"none\"");
    } else if (strcmp(key, "replication_auth") == 0) {
        for (size_t i = VM_REPLICATION_AUTH_PSK;
             value->kind == VALUE_STRING && i < sizeof replication_auth_names / sizeof replication_auth_names[0]; i++) {
            if (strcmp(value->string, replication_auth_names[i]) == 0) {
                config->replication_auth = (enum vm_replication_auth)i;
                return 0;
            }
        }
        return parse_error(parser, value->line,
                           "replication_auth: expected \"psk\", \"certificate\" or \"none\" (plain TCP, "
                           "unauthenticated)");
    } else if (strcmp(key, "replication_psk") == 0) {
        return set_path(parser, value, key, config->replication_psk, sizeof config->replication_psk);
    } else if (strcmp(key, "replication_certificate") == 0) {
        return set_path(parser, value, key, config->replication_certificate, sizeof config->replication_certificate);
    } else if (strcmp(key, "replication_key") == 0) {
        return set_path(parser, value, key, config->replication_key, sizeof config->replication_key);
    } else if (strcmp(key, "replication_ca") == 0) {
        return set_path(parser, value, key, config->replication_ca, sizeof config->replication_ca);
    } else if (strcmp(key, "disks") == 0) {
        if (value->kind != VALUE_LIST)
            return parse_error(parser, value->line, "disks: expected a list like [ \"path=disk.img\" ]");
        if (value->item_count > MACHINE_MAX_DISKS)
            return parse_error(parser, value->line, "disks: at most %d disks", MACHINE_MAX_DISKS);
        for (unsigned i = 0; i < value->item_count; i++) {
            struct machine_disk_config *disk = &config->disks[i];
            memset(disk, 0, sizeof *disk);
            if (parse_options(parser, value->line, key, value->items[i], disk_option, disk) < 0)
                return -1;
            if (!disk->path[0])
                return parse_error(parser, value->line, "disks: item %u has no path=FILE", i + 1);
        }
        config->disk_count = value->item_count;
    } else if (strcmp(key, "nics") == 0) {
        if (value->kind != VALUE_LIST)
            return parse_error(parser, value->line,
                               "nics: expected a list like [ \"tap=tap0,mac=52:54:00:12:34:56\" ]");
        if (value->item_count > MACHINE_MAX_NICS)
            return parse_error(parser, value->line, "nics: at most %d NICs", MACHINE_MAX_NICS);
        for (unsigned i = 0; i < value->item_count; i++) {
            struct machine_nic_config *nic = &config->nics[i];
            memset(nic, 0, sizeof *nic);
            /* A locally administered default MAC, different per NIC. */
            const uint8_t default_mac[6] = { 0x52, 0x54, 0x00, 0xc0, 0x10, (uint8_t)(i + 1) };
            memcpy(nic->mac, default_mac, 6);
            if (parse_options(parser, value->line, key, value->items[i], nic_option, nic) < 0)
                return -1;
            if (!nic->tap[0])
                return parse_error(parser, value->line, "nics: item %u has no tap=NAME", i + 1);
        }
        config->nic_count = value->item_count;
    } else {
        char known[512] = "";
        for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++) {
            strncat(known, known_keys[i], sizeof known - strlen(known) - 1);
            if (i + 1 < sizeof known_keys / sizeof known_keys[0])
                strncat(known, ", ", sizeof known - strlen(known) - 1);
        }
        return parse_error(parser, value->line, "unknown key '%s' (known: %s)", key, known);
    }
    return 0;
}

int vm_config_parse_text(const char *text, size_t length, const char *file_name, const char *base_directory,
                         struct vm_config *config, struct error *err)
{
    memset(config, 0, sizeof *config);
    snprintf(config->firmware, sizeof config->firmware, "%s", MACHINE_DEFAULT_FIRMWARE_PATH);
    config->console = VM_CONSOLE_STDIO;
    struct parser parser = { text, length, 0, 1, file_name, base_directory, err };
    struct value *value = malloc(sizeof *value);
    if (!value)
        return error_set(err, "%s: out of memory", file_name);
    char seen[sizeof known_keys / sizeof known_keys[0]] = { 0 };
    int result = -1;

    for (;;) {
        skip_blank(&parser, true);
        int c = peek(&parser);
        if (c < 0)
            break;
        unsigned line = parser.line;
        char key[32];
        size_t key_length = 0;
        while ((c = peek(&parser)) >= 0 && (isalnum(c) || c == '_')) {
            if (key_length + 1 >= sizeof key) {
                parse_error(&parser, line, "key is longer than %zu characters", sizeof key - 1);
                goto done;
            }
            key[key_length++] = (char)next(&parser);
        }
        key[key_length] = '\0';
        if (key_length == 0) {
            parse_error(&parser, line, "expected a key (like memory = 256), found '%c'", c);
            goto done;
        }
        skip_blank(&parser, false);
        if (peek(&parser) != '=') {
            parse_error(&parser, line, "%s: expected '=' after the key", key);
            goto done;
        }
        next(&parser);
        if (parse_value(&parser, value, key) < 0)
            goto done;
        for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++) {
            if (strcmp(key, known_keys[i]) == 0) {
                if (seen[i]) {
                    parse_error(&parser, line, "%s: given twice", key);
                    goto done;
                }
                seen[i] = 1;
            }
        }
        if (apply(&parser, key, value, config) < 0)
            goto done;
        skip_blank(&parser, false);
        c = peek(&parser);
        if (c >= 0 && c != '\n') {
            parse_error(&parser, parser.line, "%s: unexpected '%c' after the value", key, c);
            goto done;
        }
    }
    if (!config->name[0])
        error_set(err, "%s: missing key 'name' (e.g. name = \"web\")", file_name);
    else if (!config->memory_mib)
        error_set(err, "%s: missing key 'memory' (MiB, e.g. memory = 256)", file_name);
    else if (!config->kernel[0])
        error_set(err, "%s: missing key 'kernel' (path to a RISC-V Linux Image)", file_name);
    else if (config->replication_auth == VM_REPLICATION_AUTH_PSK && !config->replication_psk[0])
        error_set(err,
                  "%s: replication_auth = \"psk\" needs replication_psk = \"FILE\" (make one with `colo "
                  "keygen psk FILE`)",
                  file_name);
    else if (config->replication_auth == VM_REPLICATION_AUTH_CERTIFICATE &&
             (!config->replication_certificate[0] || !config->replication_key[0] || !config->replication_ca[0]))
        error_set(err,
                  "%s: replication_auth = \"certificate\" needs replication_certificate, replication_key and "
                  "replication_ca",
                  file_name);
    else if (config->replication_auth != VM_REPLICATION_AUTH_PSK && config->replication_psk[0])
        error_set(err, "%s: replication_psk is set but replication_auth is not \"psk\"", file_name);
    else if (config->replication_auth != VM_REPLICATION_AUTH_CERTIFICATE &&
             (config->replication_certificate[0] || config->replication_key[0] || config->replication_ca[0]))
        error_set(err, "%s: replication_certificate, _key or _ca is set but replication_auth is not \"certificate\"",
                  file_name);
    else
        result = 0;
done:
    free(value);
    return result;
}

int vm_config_parse_file(const char *path, struct vm_config *config, struct error *err)
{
    FILE *file = fopen(path, "rb");
    if (!file)
        return error_set_errno(err, "cannot open VM config %s", path);
    char *text = malloc(1 << 20);
    if (!text) {
        fclose(file);
        return error_set(err, "out of memory reading %s", path);
    }
    size_t length = fread(text, 1, 1 << 20, file);
    bool too_long = length == (1 << 20);
    bool failed = ferror(file);
    fclose(file);
    if (failed || too_long) {
        free(text);
        return failed ? error_set(err, "cannot read VM config %s", path)
                      : error_set(err, "VM config %s is larger than 1 MiB", path);
    }
    char directory[VM_CONFIG_PATH_MAX];
    snprintf(directory, sizeof directory, "%s", path);
    char *slash = strrchr(directory, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(directory, sizeof directory, ".");
    int result = vm_config_parse_text(text, length, path, directory, config, err);
    free(text);
    return result;
}

/* Quotes a string for the config syntax (\" and \\ escaped). */
static void append_quoted(char *text, size_t capacity, size_t *used, const char *value)
{
    if (*used < capacity)
        text[(*used)++] = '"';
    for (const char *c = value; *c && *used + 2 < capacity; c++) {
        if (*c == '"' || *c == '\\')
            text[(*used)++] = '\\';
        text[(*used)++] = *c;
    }
    if (*used < capacity)
        text[(*used)++] = '"';
}

static void append_text(char *text, size_t capacity, size_t *used, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static void append_text(char *text, size_t capacity, size_t *used, const char *format, ...)
{
    if (*used >= capacity)
        return;
    va_list args;
    va_start(args, format);
    int written = vsnprintf(text + *used, capacity - *used, format, args);
    va_end(args);
    if (written > 0)
        *used += (size_t)written < capacity - *used ? (size_t)written : capacity - *used;
}

static void absolute_path(const char *path, char *out, size_t size)
{
    char *resolved = realpath(path, NULL);
    snprintf(out, size, "%s", resolved ? resolved : path);
    free(resolved);
}

int vm_config_format(const struct vm_config *config, char *text, size_t capacity, struct error *err)
{
    size_t used = 0;
    char path[VM_CONFIG_PATH_MAX];
    append_text(text, capacity, &used, "name = ");
    append_quoted(text, capacity, &used, config->name);
    append_text(text, capacity, &used, "\nmemory = %llu\nfirmware = ", (unsigned long long)config->memory_mib);
    absolute_path(config->firmware, path, sizeof path);
    append_quoted(text, capacity, &used, path);
    append_text(text, capacity, &used, "\nkernel = ");
    absolute_path(config->kernel, path, sizeof path);
    append_quoted(text, capacity, &used, path);
    if (config->initrd[0]) {
        append_text(text, capacity, &used, "\ninitrd = ");
        absolute_path(config->initrd, path, sizeof path);
        append_quoted(text, capacity, &used, path);
    }
    append_text(text, capacity, &used, "\ncmdline = ");
    append_quoted(text, capacity, &used, config->cmdline);
    append_text(text, capacity, &used, "\ndisks = [");
    for (unsigned i = 0; i < config->disk_count; i++) {
        char item[VM_CONFIG_PATH_MAX + 32];
        absolute_path(config->disks[i].path, path, sizeof path);
        snprintf(item, sizeof item, "path=%s%s", path, config->disks[i].read_only ? ",readonly" : "");
        append_text(text, capacity, &used, "%s ", i ? "," : "");
        append_quoted(text, capacity, &used, item);
    }
    append_text(text, capacity, &used, " ]\nnics = [");
    for (unsigned i = 0; i < config->nic_count; i++) {
        const uint8_t *mac = config->nics[i].mac;
        char item[64];
        snprintf(item, sizeof item, "tap=%s,mac=%02x:%02x:%02x:%02x:%02x:%02x", config->nics[i].tap, mac[0], mac[1],
                 mac[2], mac[3], mac[4], mac[5]);
        append_text(text, capacity, &used, "%s ", i ? "," : "");
        append_quoted(text, capacity, &used, item);
    }
    append_text(text, capacity, &used, " ]\nconsole = \"%s\"\n",
                config->console == VM_CONSOLE_STDIO ? "stdio" : "none");
    if (config->replication_auth != VM_REPLICATION_AUTH_UNSET)
        append_text(text, capacity, &used, "replication_auth = \"%s\"\n",
                    replication_auth_names[config->replication_auth]);
    const struct {
        const char *key, *path;
    } auth_paths[] = { { "replication_psk", config->replication_psk },
                       { "replication_certificate", config->replication_certificate },
                       { "replication_key", config->replication_key },
                       { "replication_ca", config->replication_ca } };
    for (size_t i = 0; i < sizeof auth_paths / sizeof auth_paths[0]; i++) {
        if (!auth_paths[i].path[0])
            continue;
        absolute_path(auth_paths[i].path, path, sizeof path);
        append_text(text, capacity, &used, "%s = ", auth_paths[i].key);
        append_quoted(text, capacity, &used, path);
        append_text(text, capacity, &used, "\n");
    }
    if (used >= capacity - 1)
        return error_set(err, "the configuration of %s is too long to save", config->name);
    text[used] = '\0';
    return 0;
}
