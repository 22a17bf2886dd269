/*
 * image_signature.c - trusted P-256 keys from PEM files, and ECDSA checks of image signatures.
 *
 * A key file goes PEM -> DER (BearSSL's PEM decoder) -> SubjectPublicKeyInfo, read by a small
 * DER walk that accepts exactly one shape: id-ecPublicKey on prime256v1 with an uncompressed
 * point. Anything else is refused at load with what it is, when that can be told (RSA, another
 * curve, a private key), so a wrong key file shows up when the node starts, not as a refused
 * image hours later. The point is also checked to lie on the curve then, for the same reason.
 *
 * Verification hashes the 71-byte digest text with SHA-256 and tries each trusted key in turn
 * with br_ecdsa_i31_vrfy_asn1 (the DER signature form `openssl dgst -sign` writes).
 */
#include "image_signature.h"

#include "base64.h"
#include "file_read.h"
#include "image_digest.h"
#include "log.h"

#include <bearssl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An RSA-16384 SubjectPublicKeyInfo is about 2100 bytes: room to recognise any sane key. */
#define SPKI_MAX 4096
#define KEY_FILE_MAX 65536

/* Algorithm and curve OIDs, as their DER content bytes. */
static const unsigned char OID_EC_PUBLIC_KEY[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01 };
static const unsigned char OID_P256[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const unsigned char OID_RSA[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01 };
static const unsigned char OID_P384[] = { 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const unsigned char OID_P521[] = { 0x2b, 0x81, 0x04, 0x00, 0x23 };
static const unsigned char OID_SECP256K1[] = { 0x2b, 0x81, 0x04, 0x00, 0x0a };
static const unsigned char OID_ED25519[] = { 0x2b, 0x65, 0x70 };
static const unsigned char OID_ED448[] = { 0x2b, 0x65, 0x71 };
static const unsigned char OID_DSA[] = { 0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01 };

/* ---- DER ---- */

struct der {
    const unsigned char *p;
    size_t len;
};

/* Takes the next element off *in, which must have tag; its content goes to *out. Definite
 * lengths up to 2 length bytes only: nothing in a P-256 key needs more. */
static int der_take(struct der *in, unsigned char tag, struct der *out)
{
    if (in->len < 2 || in->p[0] != tag)
        return -1;
    size_t n = in->p[1], hdr = 2;
    if (n == 0x81 || n == 0x82) {
        size_t k = n & 0x7f;
        if (in->len < 2 + k)
            return -1;
        n = 0;
        for (size_t i = 0; i < k; i++)
            n = n << 8 | in->p[2 + i];
        hdr += k;
    } else if (n > 0x7f) {
        return -1;
    }
    if (n > in->len - hdr)
        return -1;
    out->p = in->p + hdr;
    out->len = n;
    in->p += hdr + n;
    in->len -= hdr + n;
    return 0;
}

static int oid_is(const struct der *oid, const unsigned char *want, size_t wantlen)
{
    return oid->len == wantlen && memcmp(oid->p, want, wantlen) == 0;
}

static const char *algorithm_name(const struct der *oid)
{
    if (oid_is(oid, OID_RSA, sizeof OID_RSA))
        return "an RSA key";
    if (oid_is(oid, OID_DSA, sizeof OID_DSA))
        return "a DSA key";
    if (oid_is(oid, OID_ED25519, sizeof OID_ED25519))
        return "an Ed25519 key";
    if (oid_is(oid, OID_ED448, sizeof OID_ED448))
        return "an Ed448 key";
    return "a key of an unknown algorithm";
}

static const char *curve_name(const struct der *oid)
{
    if (oid_is(oid, OID_P384, sizeof OID_P384))
        return "P-384";
    if (oid_is(oid, OID_P521, sizeof OID_P521))
        return "P-521";
    if (oid_is(oid, OID_SECP256K1, sizeof OID_SECP256K1))
        return "secp256k1";
    return "an unknown curve";
}

/* SEQUENCE { SEQUENCE { OID ecPublicKey, OID prime256v1 }, BIT STRING 00 04|X|Y }, nothing
 * else, nothing after. */
static int spki_p256_point(const unsigned char *der, size_t len, unsigned char point[65],
                           const char *name, char *err, size_t errlen)
{
    struct der in = { der, len }, spki, alg, oid, curve, bits;
    if (der_take(&in, 0x30, &spki) != 0 || in.len != 0 || der_take(&spki, 0x30, &alg) != 0
        || der_take(&alg, 0x06, &oid) != 0)
        return set_err(err, errlen, "%s: not a well-formed SubjectPublicKeyInfo", name);
    if (!oid_is(&oid, OID_EC_PUBLIC_KEY, sizeof OID_EC_PUBLIC_KEY))
        return set_err(err, errlen, "%s: %s, not an ECDSA P-256 key", name, algorithm_name(&oid));
    if (der_take(&alg, 0x06, &curve) != 0 || alg.len != 0)
        return set_err(err, errlen, "%s: EC key without a named curve: not P-256", name);
    if (!oid_is(&curve, OID_P256, sizeof OID_P256))
        return set_err(err, errlen, "%s: EC key on %s, not P-256", name, curve_name(&curve));
    if (der_take(&spki, 0x03, &bits) != 0 || spki.len != 0)
        return set_err(err, errlen, "%s: not a well-formed SubjectPublicKeyInfo", name);
    if (bits.len != 66 || bits.p[0] != 0x00 || bits.p[1] != 0x04)
        return set_err(err, errlen, "%s: P-256 key not in uncompressed form (write it with "
                       "openssl ec -pubout -conv_form uncompressed)", name);
    memcpy(point, bits.p + 1, 65);
    return 0;
}

/* ---- PEM ---- */

struct der_sink {
    unsigned char buf[SPKI_MAX];
    size_t len;
    int overflow;
};

static void der_append(void *ctx, const void *data, size_t len)
{
    struct der_sink *s = ctx;
    if (len > sizeof s->buf - s->len) {
        s->overflow = 1;
        return;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
}

/* Why a PEM object of another type is not usable, or NULL when it is a PUBLIC KEY. */
static const char *pem_type_problem(const char *type)
{
    if (strcmp(type, "PUBLIC KEY") == 0)
        return NULL;
    if (strcmp(type, "RSA PUBLIC KEY") == 0)
        return "an RSA key, not an ECDSA P-256 key";
    if (strstr(type, "PRIVATE KEY"))
        return "a private key: trust needs the public key (openssl ec -pubout)";
    if (strcmp(type, "CERTIFICATE") == 0)
        return "a certificate: trust needs the bare public key (openssl x509 -pubkey)";
    return "not a PEM PUBLIC KEY";
}

/* Exactly one PEM object, "PUBLIC KEY", decoded into *sink. */
static int pem_one_public_key(const char *pem, size_t len, struct der_sink *sink,
                              const char *name, char *err, size_t errlen)
{
    br_pem_decoder_context pc;
    int objects = 0, inside = 0;
    br_pem_decoder_init(&pc);
    /* The decoder needs a line end to see the END line: one is pushed after the text. */
    for (int pass = 0; pass < 2; pass++) {
        const char *p = pass ? "\n" : pem;
        size_t left = pass ? 1 : len;
        while (left > 0) {
            size_t used = br_pem_decoder_push(&pc, p, left);
            p += used;
            left -= used;
            switch (br_pem_decoder_event(&pc)) {
            case BR_PEM_BEGIN_OBJ: {
                const char *why = pem_type_problem(br_pem_decoder_name(&pc));
                if (why)
                    return set_err(err, errlen, "%s: %s", name, why);
                if (++objects > 1)
                    return set_err(err, errlen, "%s: more than one PEM object (one key a file)",
                                   name);
                br_pem_decoder_setdest(&pc, der_append, sink);
                inside = 1;
                break;
            }
            case BR_PEM_END_OBJ:
                inside = 0;
                br_pem_decoder_setdest(&pc, NULL, NULL);
                break;
            case BR_PEM_ERROR:
                return set_err(err, errlen, "%s: not valid PEM", name);
            default:
                break;
            }
        }
    }
    if (objects == 0)
        return set_err(err, errlen, "%s: no PEM PUBLIC KEY in it", name);
    if (inside)
        return set_err(err, errlen, "%s: PEM object without its END line", name);
    if (sink->overflow)
        return set_err(err, errlen, "%s: key far too large for ECDSA P-256", name);
    return 0;
}

/* ---- the trust list ---- */

int image_trust_add_pem(struct image_trust *trust, const char *pem, size_t len, const char *name,
                        char *err, size_t errlen)
{
    struct der_sink *sink = calloc(1, sizeof *sink);
    unsigned char point[65], check[65];
    if (!sink)
        return set_err(err, errlen, "%s: out of memory", name);
    int rc = pem_one_public_key(pem, len, sink, name, err, errlen);
    if (rc == 0)
        rc = spki_p256_point(sink->buf, sink->len, point, name, err, errlen);
    free(sink);
    if (rc != 0)
        return -1;
    /* Multiplying by 1 decodes the point: 0 when it is not on the curve. */
    memcpy(check, point, sizeof check);
    if (!br_ec_p256_m31.mul(check, sizeof check, (const unsigned char *)"\x01", 1,
                            BR_EC_secp256r1))
        return set_err(err, errlen, "%s: P-256 key whose point is not on the curve", name);
    if (trust->count >= IMAGE_TRUST_MAX_KEYS)
        return set_err(err, errlen, "%s: too many trusted keys (at most %d)", name,
                       IMAGE_TRUST_MAX_KEYS);
    memcpy(trust->point[trust->count], point, 65);
    snprintf(trust->name[trust->count], sizeof trust->name[0], "%s", name);
    trust->count++;
    return 0;
}

int image_trust_add_file(struct image_trust *trust, const char *path, char *err, size_t errlen)
{
    size_t len;
    char *pem = file_read_all(path, KEY_FILE_MAX, &len);
    if (!pem)
        return set_err(err, errlen, "%s: %s", path,
                       errno == EFBIG ? "too large for a public key file" : strerror(errno));
    int rc = image_trust_add_pem(trust, pem, len, path, err, errlen);
    free(pem);
    return rc;
}

/* ---- signatures ---- */

void image_signature_tag(const char *manifest_digest, char *out, size_t outlen)
{
    const char *colon = strchr(manifest_digest, ':');
    if (colon)
        snprintf(out, outlen, "%.*s-%s.sig", (int)(colon - manifest_digest), manifest_digest,
                 colon + 1);
    else
        snprintf(out, outlen, "%s.sig", manifest_digest);
}

int image_signature_verify_b64(const struct image_trust *trust, const char *manifest_digest,
                               const char *signature_b64, const char **key_name,
                               char *err, size_t errlen)
{
    unsigned char sig[IMAGE_SIGNATURE_MAX_DER + 3], hash[32];
    size_t bad_at;
    if (!image_digest_valid(manifest_digest))
        return set_err(err, errlen, "signature check: \"%.80s\" is not a sha256 digest",
                       manifest_digest);
    if (trust->count == 0)
        return set_err(err, errlen, "signature over %s: no trusted keys configured",
                       manifest_digest);
    size_t b64len = strlen(signature_b64);
    if (b64len > IMAGE_SIGNATURE_MAX_DER / 3 * 4 + 4)
        return set_err(err, errlen, "signature over %s: %zu base64 characters, too long for a "
                       "P-256 signature", manifest_digest, b64len);
    long n = base64_decode(signature_b64, b64len, sig, sizeof sig, 0, &bad_at);
    if (n < 0)
        return set_err(err, errlen, "signature over %s: bad base64 at offset %zu",
                       manifest_digest, bad_at);
    br_sha256_context sc;
    br_sha256_init(&sc);
    br_sha256_update(&sc, manifest_digest, IMAGE_DIGEST_LEN);
    br_sha256_out(&sc, hash);
    for (size_t i = 0; i < trust->count; i++) {
        unsigned char q[65];
        memcpy(q, trust->point[i], sizeof q);   /* br_ec_public_key wants it writable */
        br_ec_public_key pk = { .curve = BR_EC_secp256r1, .q = q, .qlen = sizeof q };
        if (br_ecdsa_i31_vrfy_asn1(&br_ec_p256_m31, hash, sizeof hash, &pk, sig, (size_t)n)) {
            if (key_name)
                *key_name = trust->name[i];
            return 0;
        }
    }
    return set_err(err, errlen, "signature over %s: not made by any of the %zu trusted key(s)",
                   manifest_digest, trust->count);
}
