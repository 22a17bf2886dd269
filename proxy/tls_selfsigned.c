/*
 * tls_selfsigned.c - see tls_selfsigned.h.
 *
 * The certificate (RFC 5280), built inside out: each structure is written into its own small
 * buffer and then wrapped as the content of its parent, so every length is known when its
 * header is written. Sizes are fixed and small (the whole certificate is under 400 bytes);
 * a buffer that would overflow makes the result an error, never a truncated certificate.
 *
 *   Certificate  SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }
 *   tbs          SEQUENCE { [0] version 2 (v3), serial, signatureAlgorithm, issuer, validity,
 *                           subject, subjectPublicKeyInfo, [3] extensions }
 *
 * Randomness (key and serial): HMAC-DRBG over SHA-256 seeded by BearSSL's system seeder
 * (getrandom or /dev/urandom). The signature is deterministic (RFC 6979).
 */
#include "tls_selfsigned.h"

#include "log.h"

#include <bearssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DER_MAX 512
#define MAX_CN_LEN 64

enum {
    TAG_BOOLEAN = 0x01, TAG_INTEGER = 0x02, TAG_BIT_STRING = 0x03, TAG_OCTET_STRING = 0x04,
    TAG_OID = 0x06, TAG_UTF8_STRING = 0x0c, TAG_UTC_TIME = 0x17, TAG_GENERALIZED_TIME = 0x18,
    TAG_SEQUENCE = 0x30, TAG_SET = 0x31, TAG_CONTEXT_0 = 0xa0, TAG_CONTEXT_3 = 0xa3,
};

/* Object identifiers, DER content bytes only. */
static const unsigned char OID_ECDSA_WITH_SHA256[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };
static const unsigned char OID_EC_PUBLIC_KEY[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01 };
static const unsigned char OID_PRIME256V1[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const unsigned char OID_COMMON_NAME[] = { 0x55, 0x04, 0x03 };
static const unsigned char OID_BASIC_CONSTRAINTS[] = { 0x55, 0x1d, 0x13 };

struct der {
    unsigned char buf[DER_MAX];
    size_t len;
    int overflow;
};

/* ---- DER writing ---- */

static void der_bytes(struct der *d, const void *p, size_t n)
{
    if (d->overflow || DER_MAX - d->len < n) {
        d->overflow = 1;
        return;
    }
    memcpy(d->buf + d->len, p, n);
    d->len += n;
}

static void der_tlv(struct der *d, unsigned tag, const void *content, size_t n)
{
    unsigned char head[4] = { (unsigned char)tag };
    size_t head_len;
    if (n < 0x80) {
        head[1] = (unsigned char)n;
        head_len = 2;
    } else if (n < 0x100) {
        head[1] = 0x81, head[2] = (unsigned char)n;
        head_len = 3;
    } else {
        head[1] = 0x82, head[2] = (unsigned char)(n >> 8), head[3] = (unsigned char)n;
        head_len = 4;
    }
    der_bytes(d, head, head_len);
    der_bytes(d, content, n);
}

/* Appends `inner` wrapped in tag to d. */
static void der_wrap(struct der *d, unsigned tag, const struct der *inner)
{
    if (inner->overflow)
        d->overflow = 1;
    der_tlv(d, tag, inner->buf, inner->len);
}

/* BIT STRING with no unused bits. */
static void der_bit_string(struct der *d, const void *bits, size_t n)
{
    struct der content = { .len = 0 };
    der_bytes(&content, "", 1);
    der_bytes(&content, bits, n);
    der_wrap(d, TAG_BIT_STRING, &content);
}

static void der_algorithm(struct der *d, const unsigned char *oid, size_t oid_len,
                          const unsigned char *param_oid, size_t param_len)
{
    struct der seq = { .len = 0 };
    der_tlv(&seq, TAG_OID, oid, oid_len);
    if (param_oid)
        der_tlv(&seq, TAG_OID, param_oid, param_len);
    der_wrap(d, TAG_SEQUENCE, &seq);
}

/* Name ::= SEQUENCE { SET { SEQUENCE { commonName, UTF8String } } } */
static void der_name(struct der *d, const char *common_name)
{
    struct der atv = { .len = 0 }, rdn = { .len = 0 }, name = { .len = 0 };
    der_tlv(&atv, TAG_OID, OID_COMMON_NAME, sizeof OID_COMMON_NAME);
    der_tlv(&atv, TAG_UTF8_STRING, common_name, strlen(common_name));
    der_wrap(&rdn, TAG_SEQUENCE, &atv);
    der_wrap(&name, TAG_SET, &rdn);
    der_wrap(d, TAG_SEQUENCE, &name);
}

/* RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
static int der_time(struct der *d, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char text[20];
    if (!gmtime_r(&tt, &tm) || tm.tm_year + 1900 < 1950 || tm.tm_year + 1900 > 9999)
        return -1;
    int utc = tm.tm_year + 1900 < 2050;
    strftime(text, sizeof text, utc ? "%y%m%d%H%M%SZ" : "%Y%m%d%H%M%SZ", &tm);
    der_tlv(d, utc ? TAG_UTC_TIME : TAG_GENERALIZED_TIME, text, strlen(text));
    return 0;
}

/* ---- the certificate ---- */

/* extensions [3] EXPLICIT SEQUENCE { basicConstraints critical, CA:FALSE (an empty SEQUENCE) } */
static void der_extensions(struct der *d)
{
    static const unsigned char critical = 0xff;
    static const unsigned char empty_sequence[] = { TAG_SEQUENCE, 0x00 };
    struct der ext = { .len = 0 }, list = { .len = 0 }, wrapped = { .len = 0 };
    der_tlv(&ext, TAG_OID, OID_BASIC_CONSTRAINTS, sizeof OID_BASIC_CONSTRAINTS);
    der_tlv(&ext, TAG_BOOLEAN, &critical, 1);
    der_tlv(&ext, TAG_OCTET_STRING, empty_sequence, sizeof empty_sequence);
    der_wrap(&list, TAG_SEQUENCE, &ext);
    der_wrap(&wrapped, TAG_SEQUENCE, &list);
    der_wrap(d, TAG_CONTEXT_3, &wrapped);
}

static int der_tbs(struct der *tbs, const char *cn, const unsigned char serial[16], int64_t now,
                   int days, const br_ec_public_key *pub)
{
    static const unsigned char v3[] = { TAG_INTEGER, 0x01, 0x02 };
    struct der body = { .len = 0 }, validity = { .len = 0 }, spki = { .len = 0 };
    der_tlv(&body, TAG_CONTEXT_0, v3, sizeof v3);
    der_tlv(&body, TAG_INTEGER, serial, 16);
    der_algorithm(&body, OID_ECDSA_WITH_SHA256, sizeof OID_ECDSA_WITH_SHA256, NULL, 0);
    der_name(&body, cn);
    if (der_time(&validity, now - 3600) < 0 || der_time(&validity, now + (int64_t)days * 86400) < 0)
        return -1;
    der_wrap(&body, TAG_SEQUENCE, &validity);
    der_name(&body, cn);
    der_algorithm(&spki, OID_EC_PUBLIC_KEY, sizeof OID_EC_PUBLIC_KEY,
                  OID_PRIME256V1, sizeof OID_PRIME256V1);
    der_bit_string(&spki, pub->q, pub->qlen);
    der_wrap(&body, TAG_SEQUENCE, &spki);
    der_extensions(&body);
    der_wrap(tbs, TAG_SEQUENCE, &body);
    return tbs->overflow ? -1 : 0;
}

static int der_certificate(struct der *cert, const struct der *tbs, const br_ec_private_key *sk)
{
    unsigned char hash[br_sha256_SIZE], sig[80];
    br_sha256_context sha;
    br_sha256_init(&sha);
    br_sha256_update(&sha, tbs->buf, tbs->len);
    br_sha256_out(&sha, hash);
    size_t sig_len = br_ecdsa_i31_sign_asn1(br_ec_get_default(), &br_sha256_vtable, hash, sk, sig);
    if (sig_len == 0)
        return -1;
    struct der body = { .len = 0 };
    der_bytes(&body, tbs->buf, tbs->len);
    der_algorithm(&body, OID_ECDSA_WITH_SHA256, sizeof OID_ECDSA_WITH_SHA256, NULL, 0);
    der_bit_string(&body, sig, sig_len);
    der_wrap(cert, TAG_SEQUENCE, &body);
    return cert->overflow ? -1 : 0;
}

/* ---- PEM and the whole ---- */

static char *pem(const void *der, size_t len, const char *banner, size_t *out_len)
{
    size_t n = br_pem_encode(NULL, der, len, banner, BR_PEM_LINE64);
    char *text = malloc(n + 1);
    if (text)
        *out_len = br_pem_encode(text, der, len, banner, BR_PEM_LINE64);
    return text;
}

/* Everything secret lives here, so one explicit_bzero clears it. */
struct secrets {
    br_hmac_drbg_context rng;
    unsigned char key[BR_EC_KBUF_PRIV_MAX_SIZE];
    unsigned char key_der[160];
    br_ec_private_key sk;
};

static int make(const char *cn, int64_t now, int days, struct secrets *x, struct tls_selfsigned *out,
                char *err, size_t errlen)
{
    br_prng_seeder seeder = br_prng_seeder_system(NULL);
    br_hmac_drbg_init(&x->rng, &br_sha256_vtable, NULL, 0);
    if (!seeder || !seeder(&x->rng.vtable))
        return set_err(err, errlen, "no system randomness for the default certificate's key");
    unsigned char serial[16], pub_buf[BR_EC_KBUF_PUB_MAX_SIZE];
    br_hmac_drbg_generate(&x->rng, serial, sizeof serial);
    serial[0] = (serial[0] & 0x7f) | 0x40;   /* positive, and no leading zero byte to strip */
    br_ec_public_key pub;
    if (!br_ec_keygen(&x->rng.vtable, br_ec_get_default(), &x->sk, x->key, BR_EC_secp256r1) ||
        !br_ec_compute_pub(br_ec_get_default(), &pub, pub_buf, &x->sk))
        return set_err(err, errlen, "P-256 key generation failed");
    struct der tbs = { .len = 0 }, cert = { .len = 0 };
    if (der_tbs(&tbs, cn, serial, now, days, &pub) < 0 || der_certificate(&cert, &tbs, &x->sk) < 0)
        return set_err(err, errlen, "cannot encode the default certificate");
    size_t key_der_len = br_encode_ec_raw_der(NULL, &x->sk, &pub);
    if (key_der_len == 0 || key_der_len > sizeof x->key_der ||
        br_encode_ec_raw_der(x->key_der, &x->sk, &pub) != key_der_len)
        return set_err(err, errlen, "cannot encode the default certificate's key");
    out->cert_pem = pem(cert.buf, cert.len, "CERTIFICATE", &out->cert_len);
    out->key_pem = pem(x->key_der, key_der_len, "EC PRIVATE KEY", &out->key_len);
    if (!out->cert_pem || !out->key_pem)
        return set_err(err, errlen, "out of memory");
    return 0;
}

int tls_selfsigned_make(const char *common_name, int64_t now, int days, struct tls_selfsigned *out,
                        char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t cn_len = strlen(common_name);
    if (cn_len == 0 || cn_len > MAX_CN_LEN)
        return set_err(err, errlen, "common name must be 1 to %d characters", MAX_CN_LEN);
    if (days < 1)
        return set_err(err, errlen, "validity must be at least one day");
    struct secrets x;
    int rc = make(common_name, now, days, &x, out, err, errlen);
    explicit_bzero(&x, sizeof x);
    if (rc < 0)
        tls_selfsigned_free(out);
    return rc;
}

void tls_selfsigned_free(struct tls_selfsigned *s)
{
    if (s->key_pem) {
        explicit_bzero(s->key_pem, s->key_len);
        free(s->key_pem);
    }
    free(s->cert_pem);
    memset(s, 0, sizeof *s);
}
