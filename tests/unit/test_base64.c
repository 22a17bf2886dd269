/*
 * test_base64.c - lib/base64: the canonical form TSIG secrets need, and the leniencies kubeconfig
 * (wrapped lines) and cloud-config (wrapped, unpadded) values get.
 */
#include "base64.h"
#include "check.h"

#include <stdint.h>
#include <string.h>

/* TSIG's rules: padding, no spaces, canonical. */
static long D(const char *text, uint8_t *out, size_t cap, size_t *bad)
{
    return base64_decode(text, strlen(text), out, cap, BASE64_CANONICAL, bad);
}

static void test_canonical(void)
{
    uint8_t out[64];
    size_t bad = 0;
    CHECK_INT(D("Zm9vYmFy", out, sizeof out, &bad), 6);
    CHECK(memcmp(out, "foobar", 6) == 0);
    CHECK_INT(D("Zm9vYg==", out, sizeof out, &bad), 4);
    CHECK(memcmp(out, "foob", 4) == 0);
    CHECK_INT(D("Zm9vYmE=", out, sizeof out, &bad), 5);
    CHECK(memcmp(out, "fooba", 5) == 0);
    CHECK_INT(D("+/+/", out, sizeof out, &bad), 3);
    CHECK(out[0] == 0xFB && out[1] == 0xFF && out[2] == 0xBF);

    CHECK_INT(D("", out, sizeof out, &bad), 0);          /* nothing: callers refuse empty */
    CHECK_INT(D("Zg=", out, sizeof out, &bad), -1);       /* length */
    CHECK_INT(D("Zh==", out, sizeof out, &bad), -1);      /* stray bits */
    CHECK_INT(D("Zm9=", out, sizeof out, &bad), -1);      /* stray bits */
    CHECK_INT(D("Z===", out, sizeof out, &bad), -1);
    CHECK_INT(D("Zg==Zg==", out, sizeof out, &bad), -1);  /* padding inside */
    CHECK_INT(D("Zm9v YmFy", out, sizeof out, &bad), -1);
    CHECK_INT(D("Zm9vYmF\n", out, sizeof out, &bad), -1);
    CHECK_INT(bad, 7);
    CHECK_INT(D("Zm-_", out, sizeof out, &bad), -1);      /* url alphabet */
    CHECK_INT(bad, 2);
    CHECK_INT(D("Zm9vYmFy", out, 5, &bad), -1);           /* does not fit */
}

static void test_lenient(void)
{
    unsigned char out[64];
    const char *wrapped = "Zm9v\nYmFy\r\n YmF6 ";
    CHECK_INT(base64_decode(wrapped, strlen(wrapped), out, sizeof out, BASE64_SKIP_SPACE, NULL), 9);
    CHECK(memcmp(out, "foobarbaz", 9) == 0);
    CHECK_INT(base64_decode("Zm9vYg", 6, out, sizeof out, BASE64_SKIP_SPACE, NULL), -1);
    CHECK_INT(base64_decode("Zm9vYg", 6, out, sizeof out, BASE64_PAD_OPTIONAL, NULL), 4);
    CHECK(memcmp(out, "foob", 4) == 0);
    CHECK_INT(base64_decode("Zm9vYmE", 7, out, sizeof out, BASE64_PAD_OPTIONAL, NULL), 5);
    CHECK_INT(base64_decode("Zg=", 3, out, sizeof out, BASE64_PAD_OPTIONAL, NULL), -1);
    CHECK_INT(base64_decode("Zh==", 4, out, sizeof out, 0, NULL), 1);      /* not canonical: ok */
    CHECK_INT(base64_decode("Zg= =", 5, out, sizeof out, BASE64_SKIP_SPACE, NULL), 1);
    CHECK_INT(base64_decode("Zg==Zg==", 8, out, sizeof out, BASE64_SKIP_SPACE, NULL), -1);
    CHECK_INT(base64_decode("Z", 1, out, sizeof out, BASE64_PAD_OPTIONAL, NULL), -1);
    CHECK_INT(base64_decode("", 0, out, sizeof out, 0, NULL), 0);
    CHECK_INT(base64_decode("Zm9vYmE=", 8, out, 4, 0, NULL), -1);         /* does not fit */
}

int main(void)
{
    test_canonical();
    test_lenient();
    return check_summary("test_base64");
}
