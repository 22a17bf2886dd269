/*
 * test_tls_material.c - certificate chains and keys as users hand them over: RSA 2048/4096 and
 * ECDSA P-256/P-384 pairs with a CA in the chain, PKCS#1, RFC 5915 and PKCS#8 keys; and what
 * must be refused with a clear reason: a key of another certificate, expired and not yet valid
 * leaves, garbage, empty input, encrypted keys, unsupported sizes and curves.
 *
 * Fixtures are made at test time by the openssl command in a temporary folder (no key material
 * is committed). Leaves are valid for one day from now; validity is tested by passing other
 * `now` values, which is exactly how the proxy and agent call the parser.
 */
#include "check.h"
#include "temp_dir.h"
#include "shell_fixture.h"
#include "tls_material.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *slurp(const char *name, size_t *len)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "missing fixture %s\n", path);
        exit(2);
    }
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, 1 << 16, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* A CA, and leaves signed by it: <name>.key and <name>-chain.crt (leaf, then the CA). */
static void make_fixtures(void)
{
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
       "-out ca.crt -subj /CN=test-ca -days 30");
    sh("openssl genrsa -traditional -out rsa2048.key 2048");            /* RSA PRIVATE KEY */
    sh("openssl genrsa -traditional -out rsa-other.key 2048");
    sh("openssl genrsa -out rsa4096.key 4096");
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-pk8.key"); /* PRIVATE KEY */
    sh("openssl genrsa -traditional -out rsa1024.key 1024");
    sh("openssl ecparam -name prime256v1 -genkey -noout -out p256.key");   /* EC PRIVATE KEY */
    sh("openssl ecparam -name prime256v1 -genkey -noout -out p256-other.key");
    sh("openssl ecparam -name secp384r1 -genkey -out p384.key");       /* EC PARAMETERS first */
    sh("openssl ecparam -name secp521r1 -genkey -noout -out p521.key");
    sh("openssl pkcs8 -topk8 -nocrypt -in p256.key -out p256-pk8.key");
    sh("openssl pkcs8 -topk8 -v2 aes-128-cbc -passout pass:secret -in p256.key -out p256-enc.key");
    const char *leaves[] = { "rsa2048", "rsa4096", "rsa-pk8", "rsa1024", "p256", "p384", "p521" };
    for (size_t i = 0; i < sizeof leaves / sizeof *leaves; i++) {
        sh("openssl req -new -key %s.key -subj /CN=%s.example.com -out %s.csr", leaves[i], leaves[i], leaves[i]);
        sh("openssl x509 -req -in %s.csr -CA ca.crt -CAkey ca.key -set_serial %zu -days 1 -out %s.crt",
           leaves[i], i + 2, leaves[i]);
        sh("cat %s.crt ca.crt > %s-chain.crt", leaves[i], leaves[i]);
        sh("openssl x509 -in %s.crt -outform DER -out %s.der", leaves[i], leaves[i]);
    }
    sh("openssl x509 -in ca.crt -outform DER -out ca.der");
}

struct result {
    int rc;
    char err[256];
    struct tls_material m;
};

static void parse_files(const char *crt, const char *key, int64_t now, struct result *r)
{
    size_t clen, klen;
    char *c = slurp(crt, &clen), *k = slurp(key, &klen);
    r->err[0] = '\0';
    r->rc = tls_material_parse(c, clen, k, klen, now, &r->m, r->err, sizeof r->err);
    free(c);
    free(k);
}

static int contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) {
        fprintf(stderr, "  \"%s\" does not contain \"%s\"\n", haystack, needle);
        return 0;
    }
    return 1;
}

static int same_der(const br_x509_certificate *c, const char *der_file)
{
    size_t len;
    char *der = slurp(der_file, &len);
    int same = c->data_len == len && memcmp(c->data, der, len) == 0;
    free(der);
    return same;
}

static void test_valid_pairs(int64_t now)
{
    struct { const char *crt, *key, *leaf_der; int type; unsigned bits; } ok[] = {
        { "rsa2048-chain.crt", "rsa2048.key", "rsa2048.der", BR_KEYTYPE_RSA, 2048 },
        { "rsa4096-chain.crt", "rsa4096.key", "rsa4096.der", BR_KEYTYPE_RSA, 4096 },
        { "rsa-pk8-chain.crt", "rsa-pk8.key", "rsa-pk8.der", BR_KEYTYPE_RSA, 2048 },
        { "p256-chain.crt", "p256.key", "p256.der", BR_KEYTYPE_EC, 256 },
        { "p256-chain.crt", "p256-pk8.key", "p256.der", BR_KEYTYPE_EC, 256 },
        { "p384-chain.crt", "p384.key", "p384.der", BR_KEYTYPE_EC, 384 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        struct result r;
        parse_files(ok[i].crt, ok[i].key, now, &r);
        CHECK_INT(r.rc, 0);
        if (r.rc != 0) {
            fprintf(stderr, "  %s + %s: %s\n", ok[i].crt, ok[i].key, r.err);
            continue;
        }
        CHECK_INT(r.m.key_type, ok[i].type);
        CHECK_INT(r.m.key_bits, ok[i].bits);
        CHECK_INT(r.m.chain_len, 2);                        /* the whole chain is kept ... */
        CHECK(same_der(&r.m.chain[0], ok[i].leaf_der));     /* ... leaf first */
        CHECK(same_der(&r.m.chain[1], "ca.der"));
        /* -days 1 from about now: the dates convert to the Unix epoch correctly */
        CHECK_INT(r.m.not_after - r.m.not_before, 86400);
        CHECK(r.m.not_before >= now - 600 && r.m.not_before <= now + 600);
        tls_material_free(&r.m);
        CHECK(r.m.chain == NULL);
    }
}

static void test_refused(int64_t now)
{
    struct { const char *crt, *key, *why; } bad[] = {
        { "rsa2048-chain.crt", "rsa-other.key", "tls.key does not match the certificate" },
        { "p256-chain.crt", "p256-other.key", "tls.key does not match the certificate" },
        { "p256-chain.crt", "p384.key", "tls.key does not match the certificate" },
        { "rsa2048-chain.crt", "p256.key", "tls.key does not match the certificate" },
        { "rsa4096-chain.crt", "rsa2048.key", "tls.key does not match the certificate" },
        { "p256-chain.crt", "rsa2048.key", "tls.key does not match the certificate" },
        { "rsa1024-chain.crt", "rsa1024.key", "RSA key of 1024 bits (supported: 2048 to 4096)" },
        { "p521-chain.crt", "p521.key", "EC curve not supported" },
        { "p256-chain.crt", "p256-enc.key", "encrypted private keys are not supported" },
        { "p256.key", "p256.key", "tls.crt: no certificate" },
        { "p256-chain.crt", "p256-chain.crt", "tls.key: no private key" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct result r;
        parse_files(bad[i].crt, bad[i].key, now, &r);
        CHECK_INT(r.rc, -1);
        CHECK(contains(r.err, bad[i].why));
        CHECK(r.m.chain == NULL && r.m.key_type == 0);      /* nothing half-built is left */
    }
}

static void test_validity(int64_t now)
{
    struct result r;
    parse_files("p256-chain.crt", "p256.key", now + 2 * 86400, &r);
    CHECK_INT(r.rc, -1);
    CHECK(contains(r.err, "certificate expired on "));
    CHECK(contains(r.err, "(UTC)"));
    parse_files("p256-chain.crt", "p256.key", now - 2 * 86400, &r);
    CHECK_INT(r.rc, -1);
    CHECK(contains(r.err, "certificate is not valid before "));

    /* the date in the message is the certificate's, as openssl prints it */
    parse_files("p256-chain.crt", "p256.key", now, &r);
    CHECK_INT(r.rc, 0);
    int64_t not_after = r.m.not_after;
    tls_material_free(&r.m);
    sh("openssl x509 -in p256.crt -noout -enddate -dateopt iso_8601 | sed 's/notAfter=//; s/Z$//' > enddate");
    size_t len;
    char *want = slurp("enddate", &len), got[64];
    want[strcspn(want, "\n")] = '\0';
    parse_files("p256-chain.crt", "p256.key", not_after + 1, &r);
    snprintf(got, sizeof got, "certificate expired on %s (UTC)", want);
    CHECK_STR(r.err, got);
    free(want);
    parse_files("p256-chain.crt", "p256.key", not_after, &r);   /* the last valid second */
    CHECK_INT(r.rc, 0);
    tls_material_free(&r.m);
}

static void test_garbage(int64_t now)
{
    size_t klen;
    char *key = slurp("p256.key", &klen);
    struct { const char *crt, *why; } bad[] = {
        { "", "tls.crt is empty" },
        { "hello, I am not a certificate\n", "tls.crt: no certificate" },
        { "-----BEGIN CERTIFICATE-----\nMIIB\n", "tls.crt: truncated PEM" },
        { "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
          "tls.crt: certificate 1 of the chain is not valid X.509" },
        { "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "tls.crt: malformed PEM" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct tls_material m;
        char err[256] = "";
        CHECK_INT(tls_material_parse(bad[i].crt, strlen(bad[i].crt), key, klen, now, &m, err, sizeof err), -1);
        CHECK(contains(err, bad[i].why));
    }
    size_t clen;
    char *crt = slurp("p256-chain.crt", &clen);
    struct tls_material m;
    char err[256] = "";
    CHECK_INT(tls_material_parse(crt, clen, "", 0, now, &m, err, sizeof err), -1);
    CHECK(contains(err, "tls.key is empty"));
    const char *junk_key = "-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n";
    CHECK_INT(tls_material_parse(crt, clen, junk_key, strlen(junk_key), now, &m, err, sizeof err), -1);
    CHECK(contains(err, "tls.key: not a valid RSA or EC private key"));
    /* A second certificate in the chain that is garbage is caught too. */
    char *broken = malloc(clen + 200);
    int n = snprintf(broken, clen + 200, "%s-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n", crt);
    CHECK_INT(tls_material_parse(broken, (size_t)n, key, klen, now, &m, err, sizeof err), -1);
    CHECK(contains(err, "certificate 3 of the chain is not valid X.509"));
    free(broken);
    free(crt);
    free(key);
}

/* What real files look like: no final newline, CRLF line ends, key and certificate in one file. */
static void test_formats(int64_t now)
{
    sh("printf %%s \"$(cat p256-chain.crt)\" > nonl.crt");
    sh("sed 's/$/\\r/' p256-chain.crt > crlf.crt");
    sh("cat p256.key p256-chain.crt > combined.pem");
    const char *crts[] = { "nonl.crt", "crlf.crt", "combined.pem" };
    for (size_t i = 0; i < sizeof crts / sizeof *crts; i++) {
        struct result r;
        parse_files(crts[i], i == 2 ? "combined.pem" : "p256.key", now, &r);
        CHECK_INT(r.rc, 0);
        if (r.rc)
            fprintf(stderr, "  %s: %s\n", crts[i], r.err);
        CHECK_INT(r.m.chain_len, 2);
        tls_material_free(&r.m);
    }
}

static void test_load_files(int64_t now)
{
    char crt[128], key[128], missing[128], err[512];
    snprintf(crt, sizeof crt, "%s/rsa2048-chain.crt", dir);
    snprintf(key, sizeof key, "%s/rsa2048.key", dir);
    snprintf(missing, sizeof missing, "%s/nope.key", dir);
    struct tls_material m;
    CHECK_INT(tls_material_load_files(crt, key, now, &m, err, sizeof err), 0);
    CHECK_INT(m.key_bits, 2048);
    tls_material_free(&m);
    CHECK_INT(tls_material_load_files(crt, missing, now, &m, err, sizeof err), -1);
    CHECK(contains(err, missing));
    CHECK(contains(err, "No such file"));
    snprintf(key, sizeof key, "%s/rsa-other.key", dir);
    CHECK_INT(tls_material_load_files(crt, key, now, &m, err, sizeof err), -1);
    CHECK(contains(err, "rsa2048-chain.crt"));                 /* names the files ... */
    CHECK(contains(err, "tls.key does not match the certificate"));   /* ... and the reason */
    CHECK(!strstr(err, "PRIVATE"));                            /* and never key text */
    CHECK_INT(tls_material_load_files(dir, key, now, &m, err, sizeof err), -1);
    CHECK(contains(err, "not a regular file"));
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_tls_material.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    make_fixtures();
    int64_t now = (int64_t)time(NULL);
    test_valid_pairs(now);
    test_refused(now);
    test_validity(now);
    test_garbage(now);
    test_formats(now);
    test_load_files(now);
    temp_dir_remove(dir);
    return check_summary("test_tls_material");
}
