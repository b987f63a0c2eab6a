/* struct peer_credentials, for the cluster layer's own files
 * (peer_connection.c sets up sessions with it). */
#ifndef COLO_CLUSTER_PEER_CREDENTIALS_INTERNAL_H
#define COLO_CLUSTER_PEER_CREDENTIALS_INTERNAL_H

#include <gnutls/gnutls.h>

#include "peer_credentials.h"

struct peer_credentials {
    enum peer_auth auth;
    struct peer_psk psk;
    gnutls_psk_client_credentials_t psk_client;
    gnutls_psk_server_credentials_t psk_server;
    gnutls_certificate_credentials_t certificate;
    char subject[256]; /* our certificate's */
    char description[320];
};

#endif
