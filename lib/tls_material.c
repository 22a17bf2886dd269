/*
 * tls_material.c - see tls_material.h.
 *
 * Steps, each with its own refusal message:
 *   1. PEM -> DER objects (br_pem_decoder). The certificate file contributes its CERTIFICATE
 *      objects in order; the key file its first private key. Other objects (EC PARAMETERS that
 *      `openssl ecparam -genkey` writes first, a key pasted into the certificate file) are
 *      skipped, so ordinary tooling output is accepted.
 *   2. Every certificate must decode as X.509 (br_x509_decoder); the first is the leaf, whose
 *      public key and validity are kept.
 *   3. The key (br_skey_decoder: PKCS#1, RFC 5915 and PKCS#8) must be of a supported kind and
 *      size and must be the leaf's key. For EC the public point is recomputed from the private
 *      scalar and compared. For RSA the modulus p*q is recomputed and compared: a certificate
 *      for another key has another modulus, so this catches every mix-up of files. The public
 *      exponent is compared too when BearSSL can recover it (only when p and q are 3 mod 4,
 *      a quarter of generated keys). A private-then-public round trip would prove the
 *      exponents in every case, but costs 3 ms (RSA 2048) to 30 ms (4096) per certificate on
 *      every reload, where a certificate with the right modulus and a wrong exponent can only
 *      be made on purpose by the key's owner.
 *
 * Memory: the whole chain (array + DER bytes) is one allocation and the key's elements are
 * another, so thousands of certificates stay compact. Every buffer that held private key bytes
 * is wiped before it is freed.
 */
#include "tls_material.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_PEM_OBJECTS 16
#define MAX_PEM_FILE (1024 * 1024)
/* Days from 0000-01-01 (BearSSL's origin, proleptic Gregorian) to 1970-01-01. */
#define DAYS_0000_TO_1970 719528

enum pem_kind { PEM_CERTIFICATE, PEM_PRIVATE_KEY, PEM_ENCRYPTED_KEY, PEM_OTHER };

struct pem_object {
    enum pem_kind kind;
    size_t offset, len;            /* into pem_objects.der */
};

/* Every object of a PEM text, decoded; der grows as objects arrive. */
struct pem_objects {
    unsigned char *der;
    size_t der_len, der_cap;
    int oom;
    struct pem_object objects[MAX_PEM_OBJECTS];
    size_t count;
};

static void wipe_free(void *p, size_t len)
{
    if (p) {
        explicit_bzero(p, len);
        free(p);
    }
}

/* ---- PEM ---- */

static enum pem_kind pem_kind_of(const char *name)
{
    if (strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "X509 CERTIFICATE") == 0)
        return PEM_CERTIFICATE;
    if (strcmp(name, "RSA PRIVATE KEY") == 0 || strcmp(name, "EC PRIVATE KEY") == 0 ||
        strcmp(name, "PRIVATE KEY") == 0)
        return PEM_PRIVATE_KEY;
    if (strcmp(name, "ENCRYPTED PRIVATE KEY") == 0)
        return PEM_ENCRYPTED_KEY;
    return PEM_OTHER;
}

static void pem_append(void *ctx, const void *data, size_t len)
{
    struct pem_objects *po = ctx;
    if (po->oom)
        return;
    if (po->der_cap - po->der_len < len) {
        size_t cap = po->der_cap ? po->der_cap : 4096;
        while (cap - po->der_len < len)
            cap *= 2;
        unsigned char *grown = malloc(cap);
        if (!grown) {
            po->oom = 1;
            return;
        }
        /* Not realloc: the old buffer may hold key bytes, which must be wiped, not left behind. */
        if (po->der_len)
            memcpy(grown, po->der, po->der_len);
        wipe_free(po->der, po->der_cap);
        po->der = grown;
        po->der_cap = cap;
    }
    memcpy(po->der + po->der_len, data, len);
    po->der_len += len;
}

static void pem_objects_free(struct pem_objects *po)
{
    wipe_free(po->der, po->der_cap);
    memset(po, 0, sizeof *po);
}

/* One BearSSL decoder event; returns -1 (with err) on a malformed text. */
static int pem_event(br_pem_decoder_context *pc, struct pem_objects *po, int *inside,
                     const char *what, char *err, size_t errlen)
{
    switch (br_pem_decoder_event(pc)) {
    case BR_PEM_BEGIN_OBJ:
        if (po->count == MAX_PEM_OBJECTS)
            return set_err(err, errlen, "%s: more than %d PEM objects", what, MAX_PEM_OBJECTS);
        po->objects[po->count] = (struct pem_object){
            .kind = pem_kind_of(br_pem_decoder_name(pc)), .offset = po->der_len };
        br_pem_decoder_setdest(pc, pem_append, po);
        *inside = 1;
        return 0;
    case BR_PEM_END_OBJ:
        po->objects[po->count].len = po->der_len - po->objects[po->count].offset;
        po->count++;
        *inside = 0;
        return 0;
    case BR_PEM_ERROR:
        return set_err(err, errlen, "%s: malformed PEM", what);
    default:
        return 0;
    }
}

/* Pushes text to the decoder, handling each event as it comes. */
static int pem_push(br_pem_decoder_context *pc, const char *text, size_t len, struct pem_objects *po,
                    int *inside, const char *what, char *err, size_t errlen)
{
    while (len > 0) {
        size_t used = br_pem_decoder_push(pc, text, len);
        text += used;
        len -= used;
        if (pem_event(pc, po, inside, what, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int pem_decode(const char *text, size_t len, const char *what, struct pem_objects *po,
                      char *err, size_t errlen)
{
    br_pem_decoder_context pc;
    br_pem_decoder_init(&pc);
    int inside = 0;
    /* BearSSL does not take "-----END ...-----\r" for an END line: CRs (files saved on
     * Windows) are left out. */
    for (const char *end = text + len; text < end; ) {
        const char *cr = memchr(text, '\r', (size_t)(end - text));
        size_t n = (size_t)((cr ? cr : end) - text);
        if (pem_push(&pc, text, n, po, &inside, what, err, errlen) < 0)
            return -1;
        text += n + (cr != NULL);
    }
    /* The decoder acts on an END line only once it sees the line's end: add one. */
    if (pem_push(&pc, "\n", 1, po, &inside, what, err, errlen) < 0)
        return -1;
    if (po->oom)
        return set_err(err, errlen, "out of memory");
    if (inside)
        return set_err(err, errlen, "%s: truncated PEM (no END line)", what);
    return 0;
}

/* ---- certificates ---- */

static int64_t x509_time(uint32_t days, uint32_t seconds)
{
    return ((int64_t)days - DAYS_0000_TO_1970) * 86400 + seconds;
}

static void format_date(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, len, "@%lld", (long long)t);
}

/* The leaf's public key, copied out of the decoder (its buffers live in the context). */
struct leaf_key {
    int type;
    unsigned char n[512], e[8], q[BR_EC_KBUF_PUB_MAX_SIZE];
    size_t nlen, elen, qlen;
    int curve;
};

static int decode_certificate(const unsigned char *der, size_t len, size_t index,
                              struct tls_material *m, struct leaf_key *leaf, char *err, size_t errlen)
{
    br_x509_decoder_context dc;
    br_x509_decoder_init(&dc, NULL, NULL);
    br_x509_decoder_push(&dc, der, len);
    const br_x509_pkey *pk = br_x509_decoder_get_pkey(&dc);
    if (!pk)
        return set_err(err, errlen, "tls.crt: certificate %zu of the chain is not valid X.509 "
                     "(BearSSL error %d)", index + 1, br_x509_decoder_last_error(&dc));
    if (index > 0)
        return 0;
    m->not_before = x509_time(dc.notbefore_days, dc.notbefore_seconds);
    m->not_after = x509_time(dc.notafter_days, dc.notafter_seconds);
    leaf->type = pk->key_type;
    if (pk->key_type == BR_KEYTYPE_RSA) {
        if (pk->key.rsa.nlen > sizeof leaf->n || pk->key.rsa.elen > sizeof leaf->e)
            return set_err(err, errlen, "tls.crt: the certificate's RSA key is too large");
        memcpy(leaf->n, pk->key.rsa.n, leaf->nlen = pk->key.rsa.nlen);
        memcpy(leaf->e, pk->key.rsa.e, leaf->elen = pk->key.rsa.elen);
    } else if (pk->key_type == BR_KEYTYPE_EC) {
        if (pk->key.ec.qlen > sizeof leaf->q)
            return set_err(err, errlen, "tls.crt: the certificate's EC key is malformed");
        memcpy(leaf->q, pk->key.ec.q, leaf->qlen = pk->key.ec.qlen);
        leaf->curve = pk->key.ec.curve;
    } else {
        return set_err(err, errlen, "tls.crt: unsupported public key type in the certificate");
    }
    return 0;
}

/* Copies the CERTIFICATE objects into m->chain (one allocation) and decodes each. */
static int take_chain(const struct pem_objects *po, struct tls_material *m, struct leaf_key *leaf,
                      char *err, size_t errlen)
{
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < po->count; i++)
        if (po->objects[i].kind == PEM_CERTIFICATE)
            n++, bytes += po->objects[i].len;
    if (n == 0)
        return set_err(err, errlen, "tls.crt: no certificate (expected PEM \"BEGIN CERTIFICATE\")");
    m->chain = malloc(n * sizeof *m->chain + bytes);
    if (!m->chain)
        return set_err(err, errlen, "out of memory");
    unsigned char *data = (unsigned char *)(m->chain + n);
    for (size_t i = 0; i < po->count; i++) {
        const struct pem_object *o = &po->objects[i];
        if (o->kind != PEM_CERTIFICATE)
            continue;
        memcpy(data, po->der + o->offset, o->len);
        m->chain[m->chain_len] = (br_x509_certificate){ .data = data, .data_len = o->len };
        if (decode_certificate(data, o->len, m->chain_len, m, leaf, err, errlen) < 0)
            return -1;
        m->chain_len++;
        data += o->len;
    }
    return 0;
}

static int check_validity(const struct tls_material *m, int64_t now, char *err, size_t errlen)
{
    char date[40];
    if (now < m->not_before) {
        format_date(m->not_before, date, sizeof date);
        return set_err(err, errlen, "certificate is not valid before %s (UTC)", date);
    }
    if (now > m->not_after) {
        format_date(m->not_after, date, sizeof date);
        return set_err(err, errlen, "certificate expired on %s (UTC)", date);
    }
    return 0;
}

/* ---- private keys ---- */

static int copy_rsa_key(const br_rsa_private_key *src, struct tls_material *m, char *err, size_t errlen)
{
    size_t total = src->plen + src->qlen + src->dplen + src->dqlen + src->iqlen;
    unsigned char *buf = malloc(total);
    if (!buf)
        return set_err(err, errlen, "out of memory");
    m->rsa = (br_rsa_private_key){ .n_bitlen = src->n_bitlen };
    unsigned char *p = buf;
#define TAKE(field) do { memcpy(p, src->field, src->field##len); m->rsa.field = p; \
                         m->rsa.field##len = src->field##len; p += src->field##len; } while (0)
    TAKE(p); TAKE(q); TAKE(dp); TAKE(dq); TAKE(iq);
#undef TAKE
    m->key_type = BR_KEYTYPE_RSA;
    m->key_bits = src->n_bitlen;
    return 0;
}

static int copy_ec_key(const br_ec_private_key *src, struct tls_material *m, char *err, size_t errlen)
{
    unsigned char *buf = malloc(src->xlen);
    if (!buf)
        return set_err(err, errlen, "out of memory");
    memcpy(buf, src->x, src->xlen);
    m->ec = (br_ec_private_key){ .curve = src->curve, .x = buf, .xlen = src->xlen };
    m->key_type = BR_KEYTYPE_EC;
    m->key_bits = src->curve == BR_EC_secp256r1 ? 256 : 384;
    return 0;
}

static int take_key(const struct pem_objects *po, struct tls_material *m, char *err, size_t errlen)
{
    const struct pem_object *key = NULL;
    for (size_t i = 0; i < po->count && !key; i++) {
        if (po->objects[i].kind == PEM_ENCRYPTED_KEY)
            return set_err(err, errlen, "tls.key: encrypted private keys are not supported");
        if (po->objects[i].kind == PEM_PRIVATE_KEY)
            key = &po->objects[i];
    }
    if (!key)
        return set_err(err, errlen, "tls.key: no private key (expected PEM \"BEGIN PRIVATE KEY\", "
                     "\"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")");
    br_skey_decoder_context kc;
    br_skey_decoder_init(&kc);
    br_skey_decoder_push(&kc, po->der + key->offset, key->len);
    int rc;
    const br_rsa_private_key *rsa = br_skey_decoder_get_rsa(&kc);
    const br_ec_private_key *ec = br_skey_decoder_get_ec(&kc);
    if (br_skey_decoder_last_error(&kc) != 0 || (!rsa && !ec))
        rc = set_err(err, errlen, "tls.key: not a valid RSA or EC private key");
    else if (rsa && (rsa->n_bitlen < 2048 || rsa->n_bitlen > 4096))
        rc = set_err(err, errlen, "tls.key: RSA key of %u bits (supported: 2048 to 4096)",
                   (unsigned)rsa->n_bitlen);
    else if (rsa)
        rc = copy_rsa_key(rsa, m, err, errlen);
    else if (ec->curve != BR_EC_secp256r1 && ec->curve != BR_EC_secp384r1)
        rc = set_err(err, errlen, "tls.key: EC curve not supported (supported: P-256, P-384)");
    else
        rc = copy_ec_key(ec, m, err, errlen);
    explicit_bzero(&kc, sizeof kc);
    return rc;
}

/* ---- key <-> certificate ---- */

static const unsigned char *skip_zeros(const unsigned char *p, size_t *len)
{
    while (*len > 0 && *p == 0)
        p++, (*len)--;
    return p;
}

static int same_unsigned(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    a = skip_zeros(a, &alen);
    b = skip_zeros(b, &blen);
    return alen == blen && memcmp(a, b, alen) == 0;
}

static int rsa_key_matches(const struct tls_material *m, const struct leaf_key *leaf)
{
    /* i15, not the default (i31): BearSSL 0.6's i31 version returns 0 for 4096-bit keys. */
    unsigned char n[512];
    size_t nlen = br_rsa_i15_compute_modulus(NULL, &m->rsa);
    if (nlen == 0 || nlen > sizeof n || br_rsa_i15_compute_modulus(n, &m->rsa) != nlen ||
        !same_unsigned(n, nlen, leaf->n, leaf->nlen))
        return 0;
    uint32_t e = br_rsa_compute_pubexp_get_default()(&m->rsa);
    unsigned char e_bytes[4] = { (unsigned char)(e >> 24), (unsigned char)(e >> 16),
                                 (unsigned char)(e >> 8), (unsigned char)e };
    return e == 0 || same_unsigned(e_bytes, sizeof e_bytes, leaf->e, leaf->elen);
}

static int ec_key_matches(const struct tls_material *m, const struct leaf_key *leaf)
{
    unsigned char q[BR_EC_KBUF_PUB_MAX_SIZE];
    br_ec_public_key pub;
    size_t qlen = br_ec_compute_pub(br_ec_get_default(), &pub, q, &m->ec);
    return qlen > 0 && leaf->curve == m->ec.curve && qlen == leaf->qlen &&
           memcmp(q, leaf->q, qlen) == 0;
}

static int check_key_matches(const struct tls_material *m, const struct leaf_key *leaf,
                             char *err, size_t errlen)
{
    int ok = leaf->type == m->key_type &&
             (m->key_type == BR_KEYTYPE_RSA ? rsa_key_matches(m, leaf) : ec_key_matches(m, leaf));
    return ok ? 0 : set_err(err, errlen, "tls.key does not match the certificate");
}

/* ---- public ---- */

int tls_material_parse(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                       int64_t now, struct tls_material *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct pem_objects certs = { 0 }, keys = { 0 };
    struct leaf_key leaf = { 0 };
    int rc = -1;
    if (cert_len == 0)
        set_err(err, errlen, "tls.crt is empty");
    else if (key_len == 0)
        set_err(err, errlen, "tls.key is empty");
    else if (pem_decode(cert_pem, cert_len, "tls.crt", &certs, err, errlen) == 0 &&
             pem_decode(key_pem, key_len, "tls.key", &keys, err, errlen) == 0 &&
             take_chain(&certs, out, &leaf, err, errlen) == 0 &&
             take_key(&keys, out, err, errlen) == 0 &&
             check_key_matches(out, &leaf, err, errlen) == 0 &&
             check_validity(out, now, err, errlen) == 0)
        rc = 0;
    pem_objects_free(&certs);
    pem_objects_free(&keys);
    if (rc < 0)
        tls_material_free(out);
    return rc;
}

/* Reads a whole (small) file into *buf (allocated with exactly *len + 1 bytes); the caller
 * wipes and frees it. */
static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        return set_err(err, errlen, "%s: %s", path, strerror(saved));
    }
    const char *problem = !S_ISREG(st.st_mode) ? "not a regular file"
                        : st.st_size > MAX_PEM_FILE ? "larger than 1 MiB" : NULL;
    if (!problem && !(*buf = malloc((size_t)st.st_size + 1)))
        problem = "out of memory";
    size_t got = 0;
    while (!problem && got < (size_t)st.st_size) {
        ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            problem = n < 0 ? strerror(errno) : "file shrank while being read";
        else
            got += (size_t)n;
    }
    close(fd);
    if (problem) {
        wipe_free(*buf, (size_t)st.st_size + 1);
        *buf = NULL;
        return set_err(err, errlen, "%s: %s", path, problem);
    }
    *len = got;
    return 0;
}

int tls_material_load_files(const char *cert_path, const char *key_path, int64_t now,
                            struct tls_material *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t cert_len = 0, key_len = 0;
    char *cert = NULL, *key = NULL;
    int rc = -1;
    if (read_file(cert_path, &cert, &cert_len, err, errlen) == 0 &&
        read_file(key_path, &key, &key_len, err, errlen) == 0) {
        char why[256];
        rc = tls_material_parse(cert, cert_len, key, key_len, now, out, why, sizeof why);
        if (rc < 0)
            set_err(err, errlen, "%s, %s: %s", cert_path, key_path, why);
    }
    wipe_free(cert, cert_len + 1);
    wipe_free(key, key_len + 1);
    return rc;
}

void tls_material_free(struct tls_material *m)
{
    free(m->chain);
    if (m->key_type == BR_KEYTYPE_RSA && m->rsa.p)
        wipe_free(m->rsa.p, m->rsa.plen + m->rsa.qlen + m->rsa.dplen + m->rsa.dqlen + m->rsa.iqlen);
    if (m->key_type == BR_KEYTYPE_EC && m->ec.x)
        wipe_free(m->ec.x, m->ec.xlen);
    memset(m, 0, sizeof *m);
}
