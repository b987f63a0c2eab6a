/* Who a replication peer must be: the credentials a pair shares, loaded
 * once per protection (docs/security.md). Either a pre-shared key (both
 * hosts hold the same IDENTITY:HEXKEY file, the format of GnuTLS's
 * psktool) or certificates (each host its own certificate and key, both
 * signed by the pair's CA), or, asked for explicitly, none: plain TCP
 * that anyone on the network can speak. */
#ifndef COLO_CLUSTER_PEER_CREDENTIALS_H
#define COLO_CLUSTER_PEER_CREDENTIALS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum peer_auth {
    PEER_AUTH_UNSET,       /* nothing configured: replication refuses to start */
    PEER_AUTH_PSK,         /* TLS 1.3 with a pre-shared key (and ECDHE) */
    PEER_AUTH_CERTIFICATE, /* TLS 1.3, both sides present a certificate of the CA */
    PEER_AUTH_NONE,        /* plain TCP, unauthenticated, only when asked for */
};

#define PEER_PATH_MAX 4096
#define PEER_PSK_IDENTITY_MAX 64
#define PEER_PSK_KEY_MIN 16
#define PEER_PSK_KEY_MAX 64

/* What the configuration says (VM.cfg's replication_* keys). */
struct peer_auth_config {
    enum peer_auth auth;
    char psk_path[PEER_PATH_MAX];
    char certificate_path[PEER_PATH_MAX];
    char key_path[PEER_PATH_MAX];
    char ca_path[PEER_PATH_MAX];
};

/* A parsed pre-shared key file. */
struct peer_psk {
    char identity[PEER_PSK_IDENTITY_MAX + 1];
    uint8_t key[PEER_PSK_KEY_MAX];
    size_t key_size;
};

/* The loaded credentials (GnuTLS handles behind an opaque pointer). */
struct peer_credentials;

/* "psk", "certificate", "none" (and "unset"). */
const char *peer_auth_name(enum peer_auth auth);

/* Parses the text of a key file: one line IDENTITY:HEXKEY (identity: 1..64
 * of letters, digits, '-', '_', '.', '@'; key: 16..64 bytes in hex), an
 * optional newline after it. file_name is for messages. */
int peer_psk_parse(const char *text, size_t length, const char *file_name, struct peer_psk *psk, struct error *err);

/* Makes a new key file at path (mode 0600; an existing file is an error):
 * 32 random bytes under the identity. */
int peer_psk_generate_file(const char *path, const char *identity, struct error *err);

/* Loads what config names: reads the key file, or the certificate, its key
 * and the CA (and checks the certificate is valid now and signed by the
 * CA, so a mistake shows at protect, not as a refused handshake). Every
 * error names the file. PEER_AUTH_UNSET is an error that says how to
 * configure. */
int peer_credentials_load(struct peer_credentials **credentials, const struct peer_auth_config *config,
                          struct error *err);
void peer_credentials_destroy(struct peer_credentials *credentials);
enum peer_auth peer_credentials_auth(const struct peer_credentials *credentials);
/* For status and logs: "TLS 1.3, pre-shared key of identity web", "TLS 1.3,
 * certificate CN=a", "plain TCP (unauthenticated)". */
const char *peer_credentials_describe(const struct peer_credentials *credentials);

#endif
