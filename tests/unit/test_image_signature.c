/*
 * test_image_signature.c - trusted keys and image signatures, with keys and signatures made by
 * the openssl command exactly as tools/image/sign makes them: what the node accepts is what an
 * operator's openssl produced, not something this test built with the same library.
 */
#include "image_signature.h"

#include "check.h"
#include "shell_fixture.h"
#include "temp_dir.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *DIGEST_A =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char *DIGEST_B =
    "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

static int make_p256_key(const char *name)
{
    return sh_status("cd %s && openssl ecparam -name prime256v1 -genkey -noout -out %s.pem 2>/dev/null "
              "&& openssl ec -in %s.pem -pubout -out %s.pub 2>/dev/null", dir, name, name, name);
}

/* The base64 signature by key name over text, as the annotation holds it. */
static const char *sign(const char *key, const char *text)
{
    static char b64[256];
    b64[0] = 0;
    if (sh_status("cd %s && printf %%s '%s' | openssl dgst -sha256 -sign %s.pem | base64 -w0 > sig.b64",
           dir, text, key) != 0)
        return b64;
    FILE *f = fopen(fixture_path("sig.b64"), "r");
    if (f) {
        size_t n = fread(b64, 1, sizeof b64 - 1, f);
        b64[n] = 0;
        fclose(f);
    }
    return b64;
}

static void test_tag(void)
{
    char tag[80];
    image_signature_tag(DIGEST_A, tag, sizeof tag);
    CHECK_STR(tag, "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig");
}

static void test_good_and_bad_signatures(void)
{
    struct image_trust trust = { 0 };
    char err[512];
    const char *who = NULL;
    CHECK_INT(make_p256_key("a"), 0);
    CHECK_INT(make_p256_key("b"), 0);
    CHECK_INT(image_trust_add_file(&trust, fixture_path("a.pub"), err, sizeof err), 0);
    CHECK_INT(trust.count, 1);

    CHECK_INT(image_signature_verify_b64(&trust, DIGEST_A, sign("a", DIGEST_A), &who,
                                         err, sizeof err), 0);
    CHECK_STR(who, fixture_path("a.pub"));

    /* Another key's signature, and a's signature over another digest. */
    CHECK_INT(image_signature_verify_b64(&trust, DIGEST_A, sign("b", DIGEST_A), NULL,
                                         err, sizeof err), -1);
    CHECK(strstr(err, "not made by any") != NULL);
    CHECK_INT(image_signature_verify_b64(&trust, DIGEST_A, sign("a", DIGEST_B), NULL,
                                         err, sizeof err), -1);

    /* With b trusted too, b's signature verifies and names b's file. */
    CHECK_INT(image_trust_add_file(&trust, fixture_path("b.pub"), err, sizeof err), 0);
    who = NULL;
    CHECK_INT(image_signature_verify_b64(&trust, DIGEST_B, sign("b", DIGEST_B), &who,
                                         err, sizeof err), 0);
    CHECK_STR(who, fixture_path("b.pub"));

    /* Only b trusted: a's signature is refused. */
    struct image_trust only_b = { 0 };
    CHECK_INT(image_trust_add_file(&only_b, fixture_path("b.pub"), err, sizeof err), 0);
    CHECK_INT(image_signature_verify_b64(&only_b, DIGEST_A, sign("a", DIGEST_A), NULL,
                                         err, sizeof err), -1);
}

static void test_bad_input(void)
{
    struct image_trust trust = { 0 }, none = { 0 };
    char err[512];
    CHECK_INT(image_trust_add_file(&trust, fixture_path("a.pub"), err, sizeof err), 0);
    const char *good = sign("a", DIGEST_A);

    CHECK_INT(image_signature_verify_b64(&none, DIGEST_A, good, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "no trusted keys") != NULL);

    CHECK_INT(image_signature_verify_b64(&trust, DIGEST_A, "MEUCIQ*bad", NULL, err, sizeof err),
              -1);
    CHECK(strstr(err, "base64") != NULL);
    CHECK_INT(image_signature_verify_b64(&trust, DIGEST_A, "", NULL, err, sizeof err), -1);

    char truncated[256];
    snprintf(truncated, sizeof truncated, "%s", good);
    truncated[strlen(truncated) / 2 / 4 * 4] = 0;
    CHECK_INT(image_signature_verify_b64(&trust, DIGEST_A, truncated, NULL, err, sizeof err), -1);

    CHECK_INT(image_signature_verify_b64(&trust, "sha256:0123", good, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "not a sha256 digest") != NULL);
}

static void test_refused_keys(void)
{
    struct image_trust trust = { 0 };
    char err[512];

    CHECK_INT(sh_status("cd %s && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out r.pem "
                 "2>/dev/null && openssl pkey -in r.pem -pubout -out r.pub", dir), 0);
    CHECK_INT(image_trust_add_file(&trust, fixture_path("r.pub"), err, sizeof err), -1);
    CHECK(strstr(err, "RSA") != NULL);
    CHECK(strstr(err, "r.pub") != NULL);

    CHECK_INT(sh_status("cd %s && openssl ecparam -name secp384r1 -genkey -noout -out p384.pem "
                 "&& openssl ec -in p384.pem -pubout -out p384.pub 2>/dev/null", dir), 0);
    CHECK_INT(image_trust_add_file(&trust, fixture_path("p384.pub"), err, sizeof err), -1);
    CHECK(strstr(err, "P-384") != NULL);
    CHECK(strstr(err, "not P-256") != NULL);

    CHECK_INT(sh_status("cd %s && openssl genpkey -algorithm ed25519 -out ed.pem && "
                 "openssl pkey -in ed.pem -pubout -out ed.pub", dir), 0);
    CHECK_INT(image_trust_add_file(&trust, fixture_path("ed.pub"), err, sizeof err), -1);
    CHECK(strstr(err, "Ed25519") != NULL);

    CHECK_INT(sh_status("cd %s && openssl ec -in a.pem -pubout -conv_form compressed -out ac.pub "
                 "2>/dev/null", dir), 0);
    CHECK_INT(image_trust_add_file(&trust, fixture_path("ac.pub"), err, sizeof err), -1);
    CHECK(strstr(err, "uncompressed") != NULL);

    /* The private key by mistake: refused, and the message says what to use instead. */
    CHECK_INT(image_trust_add_file(&trust, fixture_path("a.pem"), err, sizeof err), -1);
    CHECK(strstr(err, "private key") != NULL);

    const char *garbage =
        "-----BEGIN PUBLIC KEY-----\n!!!! not base64 !!!!\n-----END PUBLIC KEY-----\n";
    CHECK_INT(image_trust_add_pem(&trust, garbage, strlen(garbage), "garbage", err, sizeof err),
              -1);
    CHECK(strstr(err, "garbage") != NULL);
    const char *text = "just some text\n";
    CHECK_INT(image_trust_add_pem(&trust, text, strlen(text), "text", err, sizeof err), -1);
    CHECK(strstr(err, "no PEM") != NULL);
    /* Valid PEM, valid base64, but not DER. */
    const char *notder = "-----BEGIN PUBLIC KEY-----\naGVsbG8gd29ybGQ=\n-----END PUBLIC KEY-----\n";
    CHECK_INT(image_trust_add_pem(&trust, notder, strlen(notder), "notder", err, sizeof err), -1);

    CHECK_INT(image_trust_add_file(&trust, fixture_path("missing.pub"), err, sizeof err), -1);
    CHECK(strstr(err, "missing.pub") != NULL);
    CHECK_INT(trust.count, 0);
}

static void test_key_limit(void)
{
    struct image_trust trust = { 0 };
    char err[512];
    for (int i = 0; i < IMAGE_TRUST_MAX_KEYS; i++)
        CHECK_INT(image_trust_add_file(&trust, fixture_path("a.pub"), err, sizeof err), 0);
    CHECK_INT(image_trust_add_file(&trust, fixture_path("b.pub"), err, sizeof err), -1);
    CHECK(strstr(err, "too many") != NULL);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_image_signature.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_tag();
    test_good_and_bad_signatures();
    test_bad_input();
    test_refused_keys();
    test_key_limit();
    temp_dir_remove(dir);
    return check_summary("test_image_signature");
}
