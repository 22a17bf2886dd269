/*
 * tls_material.h - certificate chains and private keys from PEM (BearSSL), checked the way both
 * programs need them: the agent checks a Secret's tls.crt/tls.key before writing them to disk,
 * the proxy loads the files the routes file names.
 *
 * Accepted: a chain of one or more X.509 certificates (leaf first) and one private key, RSA
 * (2048 to 4096 bits) or EC (P-256, P-384), in PEM ("CERTIFICATE"; "RSA PRIVATE KEY",
 * "EC PRIVATE KEY" or unencrypted PKCS#8 "PRIVATE KEY"). Refused, each with a clear reason: no
 * certificate, undecodable DER, an unsupported key type or size, a key that does not match the
 * leaf certificate's public key, a leaf that is not yet valid or has expired at `now`.
 */
#ifndef GATEHOUSE_TLS_MATERIAL_H
#define GATEHOUSE_TLS_MATERIAL_H

#include <bearssl.h>
#include <stddef.h>
#include <stdint.h>

struct tls_material {
    br_x509_certificate *chain;      /* DER certificates, leaf first (owned) */
    size_t chain_len;
    int key_type;                    /* BR_KEYTYPE_RSA or BR_KEYTYPE_EC */
    br_rsa_private_key rsa;          /* valid when key_type == BR_KEYTYPE_RSA (owned buffers) */
    br_ec_private_key ec;            /* valid when key_type == BR_KEYTYPE_EC (owned buffer) */
    unsigned key_bits;               /* RSA modulus bits, or curve size (256, 384) */
    int64_t not_before, not_after;   /* leaf validity, seconds since the Unix epoch */
};

/* Parses and checks. now: seconds since the epoch (the caller's clock, so tests can pass any
 * time). Returns 0, or -1 with a one-line reason in err ("tls.key does not match the
 * certificate", "certificate expired on 2024-01-31 (UTC)", ...). Never logs key material. */
int tls_material_parse(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                       int64_t now, struct tls_material *out, char *err, size_t errlen);

/* Same, from two files (the proxy). The reason names the file when reading fails. */
int tls_material_load_files(const char *cert_path, const char *key_path, int64_t now,
                            struct tls_material *out, char *err, size_t errlen);

/* Frees what parse/load allocated; wipes private key bytes first. Safe on a zeroed struct. */
void tls_material_free(struct tls_material *m);

#endif
