/* The pair's credentials, loaded into GnuTLS. */
#include "peer_credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "peer_credentials_internal.h"

const char *peer_auth_name(enum peer_auth auth)
{
    switch (auth) {
    case PEER_AUTH_PSK:
        return "psk";
    case PEER_AUTH_CERTIFICATE:
        return "certificate";
    case PEER_AUTH_NONE:
        return "none";
    case PEER_AUTH_UNSET:
        break;
    }
    return "unset";
}

static bool identity_character(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '@';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int peer_psk_parse(const char *text, size_t length, const char *file_name, struct peer_psk *psk, struct error *err)
{
    memset(psk, 0, sizeof *psk);
    /* One line; a trailing newline (and a CR before it) is allowed. */
    if (length > 0 && text[length - 1] == '\n')
        length--;
    if (length > 0 && text[length - 1] == '\r')
        length--;
    const char *colon = memchr(text, ':', length);
    if (!colon)
        return error_set(err, "%s:1: expected IDENTITY:HEXKEY (as `colo keygen psk` or `psktool` write it)", file_name);
    size_t identity_length = (size_t)(colon - text);
    if (identity_length == 0 || identity_length > PEER_PSK_IDENTITY_MAX)
        return error_set(err, "%s:1: the identity before ':' must be 1 to %d characters", file_name,
                         PEER_PSK_IDENTITY_MAX);
    for (size_t i = 0; i < identity_length; i++) {
        if (!identity_character(text[i]))
            return error_set(err, "%s:1: the identity may hold letters, digits, '-', '_', '.' and '@', not byte %zu",
                             file_name, i + 1);
    }
    const char *hex = colon + 1;
    size_t hex_length = length - identity_length - 1;
    if (hex_length % 2 != 0 || hex_length < 2 * PEER_PSK_KEY_MIN || hex_length > 2 * PEER_PSK_KEY_MAX)
        return error_set(err,
                         "%s:1: the key after ':' must be %d to %d bytes in hex (an even count of 0-9a-f), got %zu "
                         "characters",
                         file_name, PEER_PSK_KEY_MIN, PEER_PSK_KEY_MAX, hex_length);
    for (size_t i = 0; i < hex_length; i += 2) {
        int high = hex_value(hex[i]), low = hex_value(hex[i + 1]);
        if (high < 0 || low < 0)
            return error_set(err, "%s:1: the key holds a character that is not hex at column %zu", file_name,
                             identity_length + 2 + i + (high < 0 ? 0 : 1));
        psk->key[i / 2] = (uint8_t)(high << 4 | low);
    }
    memcpy(psk->identity, text, identity_length);
    psk->key_size = hex_length / 2;
    return 0;
}

int peer_psk_generate_file(const char *path, const char *identity, struct error *err)
{
    size_t identity_length = strlen(identity);
    if (identity_length == 0 || identity_length > PEER_PSK_IDENTITY_MAX)
        return error_set(err, "the identity must be 1 to %d characters", PEER_PSK_IDENTITY_MAX);
    for (size_t i = 0; i < identity_length; i++) {
        if (!identity_character(identity[i]))
            return error_set(err, "the identity may hold letters, digits, '-', '_', '.' and '@' only");
    }
    gnutls_datum_t key = { 0 };
    int status = gnutls_key_generate(&key, 32);
    if (status < 0)
        return error_set(err, "no random key: %s", gnutls_strerror(status));
    char line[PEER_PSK_IDENTITY_MAX + 2 + 2 * 32 + 2];
    int used = snprintf(line, sizeof line, "%s:", identity);
    for (unsigned i = 0; i < key.size; i++)
        used += snprintf(line + used, sizeof line - (size_t)used, "%02x", key.data[i]);
    used += snprintf(line + used, sizeof line - (size_t)used, "\n");
    gnutls_memset(key.data, 0, key.size);
    gnutls_free(key.data);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        gnutls_memset(line, 0, sizeof line);
        return error_set_errno(err, "cannot create %s%s", path,
                               errno == EEXIST ? " (it exists; keys are never overwritten)" : "");
    }
    bool written = write(fd, line, (size_t)used) == used;
    gnutls_memset(line, 0, sizeof line);
    if (close(fd) < 0 || !written) {
        unlink(path);
        return error_set_errno(err, "cannot write %s", path);
    }
    return 0;
}

/* The whole of a small file (a key, a certificate), or -1. */
static int read_small_file(const char *path, const char *what, char *text, size_t capacity, size_t *length,
                           struct error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "cannot open the %s %s", what, path);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, text + got, capacity - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return error_set_errno(err, "cannot read the %s %s", what, path);
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got == capacity) {
            close(fd);
            return error_set(err, "the %s %s is larger than %zu bytes: is it the right file?", what, path,
                             capacity - 1);
        }
    }
    close(fd);
    *length = got;
    return 0;
}

/* The server's side of a PSK handshake: the key of the one identity the
 * pair's file names; any other identity is refused. */
static int psk_for_identity(gnutls_session_t session, const gnutls_datum_t *identity, gnutls_datum_t *key)
{
    const struct peer_credentials *credentials = gnutls_session_get_ptr(session);
    const struct peer_psk *psk = &credentials->psk;
    if (!identity || identity->size != strlen(psk->identity) || memcmp(identity->data, psk->identity, identity->size))
        return -1;
    key->data = gnutls_malloc(psk->key_size);
    if (!key->data)
        return -1;
    memcpy(key->data, psk->key, psk->key_size);
    key->size = (unsigned)psk->key_size;
    return 0;
}

static int load_psk(struct peer_credentials *credentials, const char *path, struct error *err)
{
    char text[512];
    size_t length;
    if (read_small_file(path, "pre-shared key file", text, sizeof text, &length, err) < 0)
        return -1;
    int parsed = peer_psk_parse(text, length, path, &credentials->psk, err);
    gnutls_memset(text, 0, sizeof text);
    if (parsed < 0)
        return -1;
    int status = gnutls_psk_allocate_client_credentials(&credentials->psk_client);
    if (status == 0)
        status = gnutls_psk_allocate_server_credentials(&credentials->psk_server);
    if (status < 0)
        return error_set(err, "GnuTLS: %s", gnutls_strerror(status));
    gnutls_datum_t key = { .data = credentials->psk.key, .size = (unsigned)credentials->psk.key_size };
    status = gnutls_psk_set_client_credentials(credentials->psk_client, credentials->psk.identity, &key,
                                               GNUTLS_PSK_KEY_RAW);
    if (status < 0)
        return error_set(err, "%s: GnuTLS refuses the key: %s", path, gnutls_strerror(status));
    gnutls_psk_set_server_credentials_function2(credentials->psk_server, psk_for_identity);
    snprintf(credentials->description, sizeof credentials->description, "TLS 1.3, pre-shared key of identity %s",
             credentials->psk.identity);
    return 0;
}

/* The subject's DN of a certificate, for messages. */
static void certificate_subject(gnutls_x509_crt_t certificate, char *text, size_t size)
{
    size_t length = size;
    if (gnutls_x509_crt_get_dn(certificate, text, &length) < 0)
        snprintf(text, size, "(no readable subject)");
}

/* Our own certificate, checked now: an expired certificate or one the CA
 * did not sign would only show as a refused handshake on the other host. */
static int check_own_certificate(struct peer_credentials *credentials, const struct peer_auth_config *config,
                                 struct error *err)
{
    gnutls_x509_crt_t *chain = NULL;
    unsigned chain_size = 0;
    gnutls_x509_crt_t *authorities = NULL;
    unsigned authority_count = 0;
    int result = -1;
    int status = gnutls_certificate_get_x509_crt(credentials->certificate, 0, &chain, &chain_size);
    if (status < 0 || chain_size == 0) {
        error_set(err, "%s: no certificate in it: %s", config->certificate_path, gnutls_strerror(status));
        goto done;
    }
    certificate_subject(chain[0], credentials->subject, sizeof credentials->subject);
    time_t now = time(NULL);
    time_t expires = gnutls_x509_crt_get_expiration_time(chain[0]);
    time_t activates = gnutls_x509_crt_get_activation_time(chain[0]);
    char when[64];
    if (expires != (time_t)-1 && expires < now) {
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&expires));
        error_set(err, "%s: the certificate (%s) expired on %s", config->certificate_path, credentials->subject, when);
        goto done;
    }
    if (activates != (time_t)-1 && activates > now) {
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&activates));
        error_set(err, "%s: the certificate (%s) is not valid before %s", config->certificate_path,
                  credentials->subject, when);
        goto done;
    }
    char ca_text[65536];
    size_t ca_length;
    if (read_small_file(config->ca_path, "CA certificate", ca_text, sizeof ca_text, &ca_length, err) < 0)
        goto done;
    gnutls_datum_t ca_data = { .data = (unsigned char *)ca_text, .size = (unsigned)ca_length };
    status = gnutls_x509_crt_list_import2(&authorities, &authority_count, &ca_data, GNUTLS_X509_FMT_PEM, 0);
    if (status < 0 || authority_count == 0) {
        error_set(err, "%s: no CA certificate in it: %s", config->ca_path, gnutls_strerror(status));
        goto done;
    }
    unsigned verify = 0;
    status = gnutls_x509_crt_list_verify(chain, chain_size, authorities, authority_count, NULL, 0, 0, &verify);
    if (status < 0 || verify != 0) {
        gnutls_datum_t printed = { 0 };
        gnutls_certificate_verification_status_print(verify, GNUTLS_CRT_X509, &printed, 0);
        error_set(err, "%s: the certificate (%s) does not verify against the CA in %s: %s", config->certificate_path,
                  credentials->subject, config->ca_path,
                  status < 0     ? gnutls_strerror(status)
                  : printed.data ? (const char *)printed.data
                                 : "invalid");
        gnutls_free(printed.data);
        goto done;
    }
    result = 0;
done:
    for (unsigned i = 0; i < chain_size; i++)
        gnutls_x509_crt_deinit(chain[i]);
    gnutls_free(chain);
    for (unsigned i = 0; i < authority_count; i++)
        gnutls_x509_crt_deinit(authorities[i]);
    gnutls_free(authorities);
    return result;
}

static int load_certificate(struct peer_credentials *credentials, const struct peer_auth_config *config,
                            struct error *err)
{
    if (!config->certificate_path[0] || !config->key_path[0] || !config->ca_path[0])
        return error_set(err, "replication_auth \"certificate\" needs replication_certificate, replication_key and "
                              "replication_ca");
    int status = gnutls_certificate_allocate_credentials(&credentials->certificate);
    if (status < 0)
        return error_set(err, "GnuTLS: %s", gnutls_strerror(status));
    status = gnutls_certificate_set_x509_trust_file(credentials->certificate, config->ca_path, GNUTLS_X509_FMT_PEM);
    if (status <= 0)
        return error_set(err, "%s: no CA certificate could be read from it%s%s", config->ca_path,
                         status < 0 ? ": " : "", status < 0 ? gnutls_strerror(status) : "");
    status = gnutls_certificate_set_x509_key_file(credentials->certificate, config->certificate_path, config->key_path,
                                                  GNUTLS_X509_FMT_PEM);
    if (status < 0)
        return error_set(err, "%s with %s: %s%s", config->certificate_path, config->key_path, gnutls_strerror(status),
                         status == GNUTLS_E_CERTIFICATE_KEY_MISMATCH ? " (the key is not this certificate's)" : "");
    if (check_own_certificate(credentials, config, err) < 0)
        return -1;
    snprintf(credentials->description, sizeof credentials->description, "TLS 1.3, certificate %s",
             credentials->subject);
    return 0;
}

int peer_credentials_load(struct peer_credentials **result, const struct peer_auth_config *config, struct error *err)
{
    *result = NULL;
    if (config->auth == PEER_AUTH_UNSET)
        return error_set(err, "no replication credentials configured: set replication_auth in VM.cfg to \"psk\" "
                              "(with replication_psk = \"FILE\", made by `colo keygen psk FILE`), \"certificate\" "
                              "(with replication_certificate, replication_key, replication_ca), or \"none\" for "
                              "unauthenticated plain TCP (docs/security.md)");
    struct peer_credentials *credentials = calloc(1, sizeof *credentials);
    if (!credentials)
        return error_set(err, "out of memory");
    credentials->auth = config->auth;
    int status = 0;
    if (config->auth == PEER_AUTH_PSK) {
        status = config->psk_path[0] ? load_psk(credentials, config->psk_path, err)
                                     : error_set(err, "replication_auth \"psk\" needs replication_psk = \"FILE\"");
    } else if (config->auth == PEER_AUTH_CERTIFICATE) {
        status = load_certificate(credentials, config, err);
    } else {
        snprintf(credentials->description, sizeof credentials->description, "plain TCP (unauthenticated)");
    }
    if (status < 0) {
        peer_credentials_destroy(credentials);
        return -1;
    }
    *result = credentials;
    return 0;
}

void peer_credentials_destroy(struct peer_credentials *credentials)
{
    if (!credentials)
        return;
    if (credentials->psk_client)
        gnutls_psk_free_client_credentials(credentials->psk_client);
    if (credentials->psk_server)
        gnutls_psk_free_server_credentials(credentials->psk_server);
    if (credentials->certificate)
        gnutls_certificate_free_credentials(credentials->certificate);
    gnutls_memset(&credentials->psk, 0, sizeof credentials->psk);
    free(credentials);
}

enum peer_auth peer_credentials_auth(const struct peer_credentials *credentials)
{
    return credentials->auth;
}

const char *peer_credentials_describe(const struct peer_credentials *credentials)
{
    return credentials->description;
}
