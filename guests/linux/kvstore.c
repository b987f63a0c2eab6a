// KV store on TCP 7000: the service whose state colo must keep across a
// failover. Line protocol, one command per line, replies in order:
//   SET key value   -> OK             (value: the rest of the line, may hold spaces)
//   GET key         -> VALUE value | NOTFOUND
//   CHECK           -> CHECK count hash
//   CHURN n         -> OK             (memory churner: n pages per second)
//   POWEROFF        -> OK, then the VM powers off
//   REBOOT          -> OK, then the VM reboots
//   anything wrong  -> ERR reason
// CHECK's hash is FNV-1a 64 over "key=value\n" for every pair in ascending
// byte order of the keys, printed as 16 hex digits; count is the number of
// keys. Tests compute the same over what they stored.
//
// SET replies OK only once the value is in memory and, with a disk, its log
// record is on the disk and flushed (kvlog.c). One process serves every
// client with poll(), so commands from all clients apply in one order and
// need no locks.
#include "guest.h"
#include "kvlog.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <unistd.h>

#define KV_MAX_CLIENTS 1000
// A line longer than this (without its "\n") is refused and the client cut off.
#define KV_MAX_LINE (16 + KV_MAX_KEY_LENGTH + KV_MAX_VALUE_LENGTH)
// A client that sends commands without reading the replies is not read from
// until it has fewer than this many reply bytes waiting.
#define KV_MAX_PENDING_OUTPUT (1u << 20)

// --- The table: a chained hash table keyed by FNV-1a ---

struct kv_entry {
    struct kv_entry *next;  // next entry in the same bucket
    uint64_t hash;
    char *value;
    size_t value_length;
    size_t key_length;
    char key[];
};

struct kv_table {
    struct kv_entry **buckets;
    size_t bucket_count;  // a power of two
    size_t entry_count;
};

static const uint64_t FNV_OFFSET_BASIS = 0xcbf29ce484222325u;
static const uint64_t FNV_PRIME = 0x100000001b3u;

static uint64_t fnv1a_update(uint64_t hash, const void *data, size_t length) {
    const unsigned char *bytes = data;
    for (size_t i = 0; i < length; i++) {
        hash ^= bytes[i];
        hash *= FNV_PRIME;
    }
    return hash;
}

static void *checked_malloc(size_t size) {
    void *memory = malloc(size);
    if (memory == NULL) {
        guest_log("kvstore", "out of memory");
        exit(1);  // init restarts the service, which replays the disk log
    }
    return memory;
}

static struct kv_entry *table_find(const struct kv_table *table, const char *key, size_t key_length,
                                   uint64_t hash) {
    struct kv_entry *entry = table->buckets[hash & (table->bucket_count - 1)];
    for (; entry != NULL; entry = entry->next)
        if (entry->hash == hash && entry->key_length == key_length &&
            memcmp(entry->key, key, key_length) == 0)
            return entry;
    return NULL;
}

static void table_grow(struct kv_table *table) {
    size_t new_count = table->bucket_count * 2;
    struct kv_entry **new_buckets = calloc(new_count, sizeof *new_buckets);
    if (new_buckets == NULL)
        return;  // keep the longer chains; still correct
    for (size_t i = 0; i < table->bucket_count; i++) {
        struct kv_entry *entry = table->buckets[i];
        while (entry != NULL) {
            struct kv_entry *next = entry->next;
            size_t bucket = entry->hash & (new_count - 1);
            entry->next = new_buckets[bucket];
            new_buckets[bucket] = entry;
            entry = next;
        }
    }
    free(table->buckets);
    table->buckets = new_buckets;
    table->bucket_count = new_count;
}

static void table_set(struct kv_table *table, const char *key, size_t key_length, const char *value,
                      size_t value_length) {
    uint64_t hash = fnv1a_update(FNV_OFFSET_BASIS, key, key_length);
    char *value_copy = checked_malloc(value_length + 1);
    memcpy(value_copy, value, value_length);
    value_copy[value_length] = '\0';

    struct kv_entry *entry = table_find(table, key, key_length, hash);
    if (entry != NULL) {
        free(entry->value);
        entry->value = value_copy;
        entry->value_length = value_length;
        return;
    }
    entry = checked_malloc(sizeof *entry + key_length);
    entry->hash = hash;
    entry->key_length = key_length;
    memcpy(entry->key, key, key_length);
    entry->value = value_copy;
    entry->value_length = value_length;
    size_t bucket = hash & (table->bucket_count - 1);
    entry->next = table->buckets[bucket];
    table->buckets[bucket] = entry;
    table->entry_count++;
    if (table->entry_count > table->bucket_count)
        table_grow(table);
}

// Replay callback for kv_log_open.
static void apply_logged_set(void *context, const char *key, size_t key_length, const char *value,
                             size_t value_length) {
    table_set(context, key, key_length, value, value_length);
}

static int compare_entries_by_key(const void *left, const void *right) {
    const struct kv_entry *a = *(const struct kv_entry *const *)left;
    const struct kv_entry *b = *(const struct kv_entry *const *)right;
    size_t shorter = a->key_length < b->key_length ? a->key_length : b->key_length;
    int order = memcmp(a->key, b->key, shorter);
    if (order != 0)
        return order;
    return (a->key_length > b->key_length) - (a->key_length < b->key_length);
}

static uint64_t table_checksum(const struct kv_table *table) {
    struct kv_entry **sorted = checked_malloc((table->entry_count + 1) * sizeof *sorted);
    size_t count = 0;
    for (size_t i = 0; i < table->bucket_count; i++)
        for (struct kv_entry *entry = table->buckets[i]; entry != NULL; entry = entry->next)
            sorted[count++] = entry;
    qsort(sorted, count, sizeof *sorted, compare_entries_by_key);
    uint64_t hash = FNV_OFFSET_BASIS;
    for (size_t i = 0; i < count; i++) {
        hash = fnv1a_update(hash, sorted[i]->key, sorted[i]->key_length);
        hash = fnv1a_update(hash, "=", 1);
        hash = fnv1a_update(hash, sorted[i]->value, sorted[i]->value_length);
        hash = fnv1a_update(hash, "\n", 1);
    }
    free(sorted);
    return hash;
}

// --- Clients ---

struct kv_client {
    int fd;
    char *input;  // bytes received, not yet a whole line past input_used
    size_t input_used, input_capacity;
    char *output;  // replies not yet sent: output[output_sent..output_used)
    size_t output_sent, output_used, output_capacity;
    bool close_after_output;  // protocol error: send the ERR, then hang up
};

struct kv_service {
    struct kv_table table;
    struct kv_log log;  // log.fd < 0: no disk
    struct churn_control *churn;
    struct kv_client *clients[KV_MAX_CLIENTS];
    size_t client_count;
    bool poweroff_requested;
    int shutdown_command;  // RB_POWER_OFF or RB_AUTOBOOT, once requested
};

static void append_output(struct kv_client *client, const char *data, size_t length) {
    if (client->output_used + length > client->output_capacity) {
        size_t capacity = client->output_capacity ? client->output_capacity : 4096;
        while (capacity < client->output_used + length)
            capacity *= 2;
        char *grown = realloc(client->output, capacity);
        if (grown == NULL) {
            client->close_after_output = true;  // drop the reply; hang up
            return;
        }
        client->output = grown;
        client->output_capacity = capacity;
    }
    memcpy(client->output + client->output_used, data, length);
    client->output_used += length;
}

static void append_text(struct kv_client *client, const char *text) {
    append_output(client, text, strlen(text));
}

static void reply_error(struct kv_client *client, const char *reason) {
    append_text(client, "ERR ");
    append_text(client, reason);
    append_text(client, "\n");
}

// Splits the first word off text[0..length): returns its length, and sets
// *rest to what follows the single space after it (or to the end).
static size_t split_word(const char *text, size_t length, const char **rest, size_t *rest_length) {
    const char *space = memchr(text, ' ', length);
    size_t word_length = space ? (size_t)(space - text) : length;
    size_t skipped = space ? word_length + 1 : length;
    *rest = text + skipped;
    *rest_length = length - skipped;
    return word_length;
}

static void command_set(struct kv_service *service, struct kv_client *client, const char *arguments,
                        size_t length) {
    // The key ends at the first space; the value is everything after it.
    const char *space = memchr(arguments, ' ', length);
    if (space == NULL || space == arguments) {
        reply_error(client, "usage: SET key value");
        return;
    }
    size_t key_length = (size_t)(space - arguments);
    const char *value = space + 1;
    size_t value_length = length - key_length - 1;
    if (key_length > KV_MAX_KEY_LENGTH || value_length > KV_MAX_VALUE_LENGTH) {
        reply_error(client, "key or value too long");
        return;
    }
    if (service->log.fd >= 0) {
        int error = kv_log_append(&service->log, arguments, key_length, value, value_length);
        if (error == ENOSPC) {
            reply_error(client, "disk full");
            return;
        }
        if (error != 0) {
            char reason[96];
            snprintf(reason, sizeof reason, "disk write failed: %s", strerror(error));
            reply_error(client, reason);
            return;
        }
    }
    table_set(&service->table, arguments, key_length, value, value_length);
    append_text(client, "OK\n");
}

static void command_get(struct kv_service *service, struct kv_client *client, const char *key,
                        size_t key_length) {
    if (key_length == 0 || memchr(key, ' ', key_length) != NULL) {
        reply_error(client, "usage: GET key");
        return;
    }
    uint64_t hash = fnv1a_update(FNV_OFFSET_BASIS, key, key_length);
    struct kv_entry *entry = table_find(&service->table, key, key_length, hash);
    if (entry == NULL) {
        append_text(client, "NOTFOUND\n");
        return;
    }
    append_text(client, "VALUE ");
    append_output(client, entry->value, entry->value_length);
    append_text(client, "\n");
}

static void command_check(struct kv_service *service, struct kv_client *client) {
    char reply[64];
    snprintf(reply, sizeof reply, "CHECK %zu %016llx\n", service->table.entry_count,
             (unsigned long long)table_checksum(&service->table));
    append_text(client, reply);
}

static void command_churn(struct kv_service *service, struct kv_client *client,
                          const char *argument, size_t length) {
    uint64_t rate;
    if (!parse_u64(argument, length, CHURN_MAX_RATE, &rate)) {
        reply_error(client, "usage: CHURN pages-per-second (0 to 1000000)");
        return;
    }
    atomic_store(&service->churn->pages_per_second, rate);
    append_text(client, "OK\n");
}

static void handle_line(struct kv_service *service, struct kv_client *client, const char *line,
                        size_t length) {
    if (length > 0 && line[length - 1] == '\r')
        length--;  // tolerate telnet-style line ends
    const char *arguments;
    size_t arguments_length;
    size_t command_length = split_word(line, length, &arguments, &arguments_length);
#define IS_COMMAND(name) \
    (command_length == sizeof name - 1 && memcmp(line, name, command_length) == 0)
    if (IS_COMMAND("SET"))
        command_set(service, client, arguments, arguments_length);
    else if (IS_COMMAND("GET"))
        command_get(service, client, arguments, arguments_length);
    else if (IS_COMMAND("CHECK") && length == command_length)
        command_check(service, client);
    else if (IS_COMMAND("CHURN"))
        command_churn(service, client, arguments, arguments_length);
    else if (IS_COMMAND("POWEROFF") && length == command_length) {
        append_text(client, "OK\n");
        service->poweroff_requested = true;
        service->shutdown_command = RB_POWER_OFF;
    } else if (IS_COMMAND("REBOOT") && length == command_length) {
        append_text(client, "OK\n");
        service->poweroff_requested = true;
        service->shutdown_command = RB_AUTOBOOT;
    } else
        reply_error(client, "unknown command (SET, GET, CHECK, CHURN, POWEROFF, REBOOT)");
#undef IS_COMMAND
}

// Handles every whole line in the client's input and keeps the partial rest.
static void handle_input(struct kv_service *service, struct kv_client *client) {
    size_t start = 0;
    for (;;) {
        char *newline = memchr(client->input + start, '\n', client->input_used - start);
        if (newline == NULL)
            break;
        size_t length = (size_t)(newline - (client->input + start));
        handle_line(service, client, client->input + start, length);
        start += length + 1;
        if (service->poweroff_requested)
            break;
    }
    memmove(client->input, client->input + start, client->input_used - start);
    client->input_used -= start;
    if (client->input_used > KV_MAX_LINE) {
        reply_error(client, "line too long");
        client->close_after_output = true;
        client->input_used = 0;
    }
}

// Reads what the client sent. False when the connection is over.
static bool receive_from(struct kv_service *service, struct kv_client *client) {
    if (client->input_capacity - client->input_used < 4096) {
        size_t capacity = client->input_capacity * 2;
        char *grown = realloc(client->input, capacity);
        if (grown == NULL)
            return false;
        client->input = grown;
        client->input_capacity = capacity;
    }
    ssize_t received = read(client->fd, client->input + client->input_used,
                            client->input_capacity - client->input_used);
    if (received < 0)
        return errno == EINTR || errno == EAGAIN;
    if (received == 0)
        return false;
    client->input_used += (size_t)received;
    handle_input(service, client);
    return true;
}

// Sends as much pending output as the socket takes. False on error, or when
// a client marked for closing has been sent everything.
static bool send_to(struct kv_client *client) {
    while (client->output_sent < client->output_used) {
        ssize_t sent = send(client->fd, client->output + client->output_sent,
                            client->output_used - client->output_sent, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN;
        }
        client->output_sent += (size_t)sent;
    }
    client->output_sent = client->output_used = 0;
    return !client->close_after_output;
}

static void add_client(struct kv_service *service, int fd) {
    if (service->client_count == KV_MAX_CLIENTS) {
        static const char busy[] = "ERR too many clients\n";
        (void)!write(fd, busy, sizeof busy - 1);
        close(fd);
        return;
    }
    struct kv_client *client = checked_malloc(sizeof *client);
    *client = (struct kv_client){.fd = fd, .input_capacity = 8192};
    client->input = checked_malloc(client->input_capacity);
    service->clients[service->client_count++] = client;
}

static void remove_client(struct kv_service *service, size_t index) {
    struct kv_client *client = service->clients[index];
    close(client->fd);
    free(client->input);
    free(client->output);
    free(client);
    service->clients[index] = service->clients[--service->client_count];
}

// Sends the pending replies (the POWEROFF's OK among them) as far as the
// network lets within about a second, then powers the machine off.
static void power_off(struct kv_service *service) {
    bool reboot_requested = service->shutdown_command == RB_AUTOBOOT;
    guest_log("kvstore", "%s requested; %s", reboot_requested ? "REBOOT" : "POWEROFF",
              reboot_requested ? "rebooting" : "powering off");
    for (size_t i = 0; i < service->client_count; i++) {
        struct kv_client *client = service->clients[i];
        fcntl(client->fd, F_SETFL, fcntl(client->fd, F_GETFL) & ~O_NONBLOCK);
        struct timeval limit = {.tv_sec = 1};
        setsockopt(client->fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        send_to(client);
        shutdown(client->fd, SHUT_WR);  // FIN: the client sees the end at once
    }
    usleep(100 * 1000);  // let the last segments leave the NIC
    sync();
    reboot(service->shutdown_command);
    guest_log("kvstore", "%s failed: %s", reboot_requested ? "reboot" : "power off",
              strerror(errno));
    service->poweroff_requested = false;
}

void kvstore_main(int ready_fd, const char *disk_path, struct churn_control *churn) {
    prctl(PR_SET_NAME, "colo-kvstore");
    static struct kv_service service;
    service.churn = churn;
    service.table.bucket_count = 1024;
    service.table.buckets = calloc(service.table.bucket_count, sizeof *service.table.buckets);
    service.log.fd = -1;
    if (disk_path[0] != '\0')
        kv_log_open(&service.log, disk_path, apply_logged_set, &service.table);
    if (service.log.fd < 0)
        guest_log("kvstore", "no disk: data lives in memory only");
    guest_log("kvstore", "%zu keys", service.table.entry_count);

    int listener = listen_tcp("kvstore", KVSTORE_PORT);
    signal_ready(ready_fd);

    struct pollfd polled[1 + KV_MAX_CLIENTS];
    for (;;) {
        polled[0] = (struct pollfd){.fd = listener, .events = POLLIN};
        for (size_t i = 0; i < service.client_count; i++) {
            struct kv_client *client = service.clients[i];
            short events = 0;
            if (client->output_used - client->output_sent < KV_MAX_PENDING_OUTPUT &&
                !client->close_after_output)
                events |= POLLIN;
            if (client->output_sent < client->output_used)
                events |= POLLOUT;
            polled[1 + i] = (struct pollfd){.fd = client->fd, .events = events};
        }
        size_t polled_clients = service.client_count;
        if (poll(polled, 1 + polled_clients, -1) < 0) {
            if (errno != EINTR)
                guest_log("kvstore", "poll: %s", strerror(errno));
            continue;
        }

        // Walk backwards: remove_client moves the last client into the gap.
        for (size_t i = polled_clients; i-- > 0;) {
            struct kv_client *client = service.clients[i];
            short revents = polled[1 + i].revents;
            bool alive = true;
            if (revents & (POLLIN | POLLHUP | POLLERR))
                alive = receive_from(&service, client);
            if (alive)
                alive = send_to(client);
            if (!alive)
                remove_client(&service, i);
            if (service.poweroff_requested)
                power_off(&service);
        }

        if (polled[0].revents & POLLIN) {
            int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0)
                add_client(&service, fd);
        }
    }
}
