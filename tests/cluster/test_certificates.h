/* Certificates made on the spot for the TLS tests (GnuTLS's x509 API): a
 * CA, and certificates it signs with any validity window, written as PEM
 * files. ECDSA P-256 keys: quick to make, even under ASan. */
#ifndef COLO_TESTS_CLUSTER_TEST_CERTIFICATES_H
#define COLO_TESTS_CLUSTER_TEST_CERTIFICATES_H

#include <time.h>

#include <gnutls/x509.h>

#include "error.h"

struct test_certificate_authority {
    gnutls_x509_crt_t certificate;
    gnutls_x509_privkey_t key;
};

/* A self-signed CA named common_name, its certificate written to path. */
int test_certificate_authority_create(struct test_certificate_authority *authority, const char *common_name,
                                      const char *path, struct error *err);
void test_certificate_authority_destroy(struct test_certificate_authority *authority);

/* A node certificate for common_name, signed by authority, valid from
 * activation to expiration, with a new key: the certificate written to
 * certificate_path, the key to key_path. */
int test_certificate_issue(const struct test_certificate_authority *authority, const char *common_name,
                           time_t activation, time_t expiration, const char *certificate_path, const char *key_path,
                           struct error *err);

/* A new key that belongs to no certificate, written to path. */
int test_certificate_write_stray_key(const char *path, struct error *err);

#endif
