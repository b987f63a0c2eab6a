/* Certificates for the TLS tests (test_certificates.h). */
#include "test_certificates.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

static int write_datum(const char *path, const gnutls_datum_t *datum, struct error *err)
{
    FILE *file = fopen(path, "w");
    if (!file)
        return error_set_errno(err, "cannot create %s", path);
    bool written = fwrite(datum->data, 1, datum->size, file) == datum->size;
    if (fclose(file) != 0 || !written)
        return error_set_errno(err, "cannot write %s", path);
    return 0;
}

static int gnutls_failed(struct error *err, const char *what, int status)
{
    return error_set(err, "%s: %s", what, gnutls_strerror(status));
}

static int new_key(gnutls_x509_privkey_t *key, struct error *err)
{
    int status = gnutls_x509_privkey_init(key);
    if (status < 0)
        return gnutls_failed(err, "privkey_init", status);
    status = gnutls_x509_privkey_generate(*key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
    if (status < 0) {
        gnutls_x509_privkey_deinit(*key);
        return gnutls_failed(err, "privkey_generate", status);
    }
    return 0;
}

static int write_key(gnutls_x509_privkey_t key, const char *path, struct error *err)
{
    gnutls_datum_t pem = { 0 };
    int status = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &pem);
    if (status < 0)
        return gnutls_failed(err, "privkey_export2", status);
    int result = write_datum(path, &pem, err);
    gnutls_free(pem.data);
    return result;
}

static int write_certificate(gnutls_x509_crt_t certificate, const char *path, struct error *err)
{
    gnutls_datum_t pem = { 0 };
    int status = gnutls_x509_crt_export2(certificate, GNUTLS_X509_FMT_PEM, &pem);
    if (status < 0)
        return gnutls_failed(err, "crt_export2", status);
    int result = write_datum(path, &pem, err);
    gnutls_free(pem.data);
    return result;
}

/* The fields every certificate here has; the caller adds its own and signs. */
static int fill_certificate(gnutls_x509_crt_t certificate, gnutls_x509_privkey_t key, const char *common_name,
                            time_t activation, time_t expiration, bool authority, struct error *err)
{
    unsigned char serial[8];
    int status = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial);
    serial[0] &= 0x7f; /* positive */
    serial[0] |= 0x01; /* nonzero */
    if (status == 0)
        status = gnutls_x509_crt_set_version(certificate, 3);
    if (status == 0)
        status = gnutls_x509_crt_set_serial(certificate, serial, sizeof serial);
    if (status == 0)
        status = gnutls_x509_crt_set_activation_time(certificate, activation);
    if (status == 0)
        status = gnutls_x509_crt_set_expiration_time(certificate, expiration);
    if (status == 0)
        status = gnutls_x509_crt_set_dn_by_oid(certificate, GNUTLS_OID_X520_COMMON_NAME, 0, common_name,
                                               (unsigned)strlen(common_name));
    if (status == 0)
        status = gnutls_x509_crt_set_key(certificate, key);
    if (status == 0)
        status = gnutls_x509_crt_set_basic_constraints(certificate, authority ? 1 : 0, -1);
    if (status == 0)
        status = gnutls_x509_crt_set_key_usage(certificate, authority ? GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN
                                                                      : GNUTLS_KEY_DIGITAL_SIGNATURE);
    unsigned char key_id[64];
    size_t key_id_size = sizeof key_id;
    if (status == 0)
        status = gnutls_x509_crt_get_key_id(certificate, 0, key_id, &key_id_size);
    if (status == 0)
        status = gnutls_x509_crt_set_subject_key_id(certificate, key_id, key_id_size);
    if (status == 0 && !authority) {
        /* Both ends of a pair are client and server in turn. */
        status = gnutls_x509_crt_set_key_purpose_oid(certificate, GNUTLS_KP_TLS_WWW_SERVER, 0);
        if (status == 0)
            status = gnutls_x509_crt_set_key_purpose_oid(certificate, GNUTLS_KP_TLS_WWW_CLIENT, 0);
    }
    return status < 0 ? gnutls_failed(err, "filling a certificate", status) : 0;
}

int test_certificate_authority_create(struct test_certificate_authority *authority, const char *common_name,
                                      const char *path, struct error *err)
{
    memset(authority, 0, sizeof *authority);
    if (new_key(&authority->key, err) < 0)
        return -1;
    int status = gnutls_x509_crt_init(&authority->certificate);
    if (status < 0) {
        gnutls_x509_privkey_deinit(authority->key);
        authority->key = NULL;
        return gnutls_failed(err, "crt_init", status);
    }
    time_t now = time(NULL);
    if (fill_certificate(authority->certificate, authority->key, common_name, now - 86400, now + 365 * 86400, true,
                         err) < 0)
        goto fail;
    status = gnutls_x509_crt_sign2(authority->certificate, authority->certificate, authority->key, GNUTLS_DIG_SHA256,
                                   0);
    if (status < 0) {
        gnutls_failed(err, "signing the CA", status);
        goto fail;
    }
    if (write_certificate(authority->certificate, path, err) < 0)
        goto fail;
    return 0;
fail:
    test_certificate_authority_destroy(authority);
    return -1;
}

void test_certificate_authority_destroy(struct test_certificate_authority *authority)
{
    if (authority->certificate)
        gnutls_x509_crt_deinit(authority->certificate);
    if (authority->key)
        gnutls_x509_privkey_deinit(authority->key);
    authority->certificate = NULL;
    authority->key = NULL;
}

int test_certificate_issue(const struct test_certificate_authority *authority, const char *common_name,
                           time_t activation, time_t expiration, const char *certificate_path, const char *key_path,
                           struct error *err)
{
    gnutls_x509_privkey_t key;
    if (new_key(&key, err) < 0)
        return -1;
    gnutls_x509_crt_t certificate;
    int status = gnutls_x509_crt_init(&certificate);
    if (status < 0) {
        gnutls_x509_privkey_deinit(key);
        return gnutls_failed(err, "crt_init", status);
    }
    int result = -1;
    if (fill_certificate(certificate, key, common_name, activation, expiration, false, err) < 0)
        goto done;
    unsigned char authority_id[64];
    size_t authority_id_size = sizeof authority_id;
    status = gnutls_x509_crt_get_subject_key_id(authority->certificate, authority_id, &authority_id_size, NULL);
    if (status == 0)
        status = gnutls_x509_crt_set_authority_key_id(certificate, authority_id, authority_id_size);
    if (status == 0)
        status = gnutls_x509_crt_sign2(certificate, authority->certificate, authority->key, GNUTLS_DIG_SHA256, 0);
    if (status < 0) {
        gnutls_failed(err, "signing a certificate", status);
        goto done;
    }
    if (write_certificate(certificate, certificate_path, err) < 0 || write_key(key, key_path, err) < 0)
        goto done;
    result = 0;
done:
    gnutls_x509_crt_deinit(certificate);
    gnutls_x509_privkey_deinit(key);
    return result;
}

int test_certificate_write_stray_key(const char *path, struct error *err)
{
    gnutls_x509_privkey_t key;
    if (new_key(&key, err) < 0)
        return -1;
    int result = write_key(key, path, err);
    gnutls_x509_privkey_deinit(key);
    return result;
}
