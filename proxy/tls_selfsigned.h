/*
 * tls_selfsigned.h - a self-signed ECDSA P-256 certificate and its key, made in memory: the
 * proxy's default certificate when no --default-cert is given (tls_default_cert_generate).
 *
 * BearSSL has no X.509 encoder, so tls_selfsigned.c writes the DER itself: a v3 certificate
 * with subject = issuer = CN, a random positive 128-bit serial, validity from one hour before
 * `now` (clock skew) to `now` + days, basicConstraints CA:FALSE, signed ecdsa-with-SHA256.
 */
#ifndef GATEHOUSE_TLS_SELFSIGNED_H
#define GATEHOUSE_TLS_SELFSIGNED_H

#include <stddef.h>
#include <stdint.h>

struct tls_selfsigned {
    char *cert_pem;                  /* "CERTIFICATE", NUL-terminated (owned) */
    size_t cert_len;
    char *key_pem;                   /* "EC PRIVATE KEY" (RFC 5915), NUL-terminated (owned) */
    size_t key_len;
};

/* common_name: 1 to 64 characters. Returns 0, or -1 with a reason in err. */
int tls_selfsigned_make(const char *common_name, int64_t now, int days, struct tls_selfsigned *out,
                        char *err, size_t errlen);

/* Wipes the key text and frees both; safe on a zeroed struct. */
void tls_selfsigned_free(struct tls_selfsigned *s);

#endif
