/*
 * test_dns_tsig.c - TSIG signing and verification, checked against implementations that are
 * not ours.
 *
 * Known answers: the RFC 8945 digest input is written out here octet by octet and its HMAC is
 * taken by `openssl dgst -mac HMAC` (signing), and a query signed by BIND's `dig -y`, caught by
 * a loopback listener, must get the same MAC from our signer (skipped, loudly, when dig is not
 * installed). Responses are signed here with openssl's HMAC too, then altered one way at a
 * time: flipped byte, other key, stale time, server-side TSIG errors.
 */
#include "check.h"
#include "base64.h"
#include "dns_tsig.h"

#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SECRET "tu8CMB/A6cg8j0UqfoQssXQQgDw2z95492UOE9aSOjA="
#define OTHER_SECRET "c2VjcmV0LW51bWJlci10d28tMDEyMzQ1Njc4OWFiY2Q="
#define T0 1700000000ull            /* 0x6553F100 */

static char err[512];

/* ---- helpers: bytes, openssl ---- */

struct bytes {
    uint8_t b[4096];
    size_t n;
};

static void add(struct bytes *x, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(x->b + x->n, p, n);
    x->n += n;
}
static void add16(struct bytes *x, unsigned v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    add(x, b, 2);
}
static void add48(struct bytes *x, uint64_t v)
{
    uint8_t b[6];
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(v >> (40 - 8 * i));
    add(x, b, 6);
}

static void to_hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * n] = '\0';
}

/* HMAC(key, data) by the openssl command, as lower-case hex in out. 0, or -1. */
static int openssl_hmac(const char *digest, const uint8_t *key, size_t keylen,
                        const struct bytes *data, char *out, size_t outlen)
{
    char path[] = "/tmp/test_dns_tsig.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, data->b, data->n) != (ssize_t)data->n) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    char hexkey[2 * DNS_TSIG_SECRET_MAX + 1], cmd[600];
    to_hex(key, keylen, hexkey);
    snprintf(cmd, sizeof cmd, "openssl dgst -%s -mac HMAC -macopt hexkey:%s -r %s", digest,
             hexkey, path);
    FILE *p = popen(cmd, "r");
    int ok = p && fgets(out, (int)outlen, p) != NULL;
    if (p)
        pclose(p);
    unlink(path);
    if (!ok)
        return -1;
    out[strcspn(out, " \n")] = '\0';
    return 0;
}

static struct dns_name name_of(const char *text)
{
    struct dns_name n;
    if (dns_name_from_text(&n, text, err, sizeof err) < 0)
        exit(2);
    return n;
}

static void add_name(struct bytes *x, const char *text)
{
    struct dns_name n = name_of(text);
    add(x, n.wire, n.len);
}

/* ---- base64, algorithms, keys ---- */

static void test_algorithms_and_keys(void)
{
    enum dns_tsig_algorithm a;
    CHECK_INT(dns_tsig_algorithm_from_text("hmac-sha256", &a), 0);
    CHECK_INT(a, DNS_TSIG_HMAC_SHA256);
    CHECK_INT(dns_tsig_algorithm_from_text("HMAC-SHA512.", &a), 0);
    CHECK_INT(a, DNS_TSIG_HMAC_SHA512);
    CHECK_INT(dns_tsig_algorithm_from_text("hmac-sha1", &a), 0);
    CHECK_INT(a, DNS_TSIG_HMAC_SHA1);
    CHECK_INT(dns_tsig_algorithm_from_text("hmac-md5", &a), -1);
    CHECK_INT(dns_tsig_algorithm_from_text("hmac-sha2567", &a), -1);
    CHECK_INT(dns_tsig_algorithm_from_text("hmac-sha256..", &a), -1);
    CHECK_STR(dns_tsig_algorithm_name(DNS_TSIG_HMAC_SHA512), "hmac-sha512.");
    CHECK_INT(dns_tsig_mac_size(DNS_TSIG_HMAC_SHA1), 20);

    struct dns_tsig_key k;
    CHECK_INT(dns_tsig_key_init(&k, "GateHouse", NULL, SECRET, err, sizeof err), 0);
    CHECK_INT(k.algorithm, DNS_TSIG_HMAC_SHA256);
    CHECK_INT(k.secret_len, 32);
    struct dns_name lower = name_of("gatehouse.");
    CHECK(memcmp(k.name.wire, lower.wire, lower.len) == 0);     /* canonical: lower case */
    dns_tsig_key_wipe(&k);
    CHECK_INT(k.secret_len, 0);
    CHECK(k.secret[0] == 0 && k.secret[31] == 0);

    CHECK_INT(dns_tsig_key_init(&k, "gh", "hmac-md5", SECRET, err, sizeof err), -1);
    CHECK(strstr(err, "hmac-md5") != NULL);
    CHECK_INT(dns_tsig_key_init(&k, "bad name", NULL, SECRET, err, sizeof err), -1);
    CHECK(strstr(err, "key name") != NULL);
    CHECK_INT(dns_tsig_key_init(&k, "gh", NULL, "", err, sizeof err), -1);
    CHECK(strstr(err, "empty") != NULL);
    /* A secret with a typo: the error says where, and never quotes the secret. */
    const char *typo = "tu8CMB/A6cg8j0Uq*oQssXQQgDw2z95492UOE9aSOjA=";
    CHECK_INT(dns_tsig_key_init(&k, "gh", NULL, typo, err, sizeof err), -1);
    CHECK(strstr(err, "base64") != NULL && strstr(err, "16") != NULL);
    CHECK(strstr(err, "tu8C") == NULL && strstr(err, "SOjA") == NULL);
    char huge[400];
    memset(huge, 'A', 396);
    huge[396] = '\0';
    CHECK_INT(dns_tsig_key_init(&k, "gh", NULL, huge, err, sizeof err), -1);
    CHECK(strstr(err, "longer") != NULL);
}

/* ---- signing: known answers from openssl ---- */

static size_t make_query(uint8_t *buf, size_t cap, uint16_t id)
{
    struct dns_name q = name_of("app.edge.example");
    return (size_t)dns_build_query(buf, cap, id, &q, DNS_TYPE_SOA, 0);
}

static void check_sign_known_answer(const char *alg, const char *digest, size_t mac_size)
{
    struct dns_tsig_key k;
    CHECK_INT(dns_tsig_key_init(&k, "gatehouse", alg, SECRET, err, sizeof err), 0);
    uint8_t msg[512];
    size_t len = make_query(msg, sizeof msg, 0x1234);
    struct bytes input = { .n = 0 };
    add(&input, msg, len);                  /* the message as it was, ARCOUNT 0 */
    add(&input, "\x09gatehouse\x00", 11);   /* key name, canonical */
    add(&input, "\x00\xff", 2);             /* class ANY */
    add(&input, "\x00\x00\x00\x00", 4);     /* TTL */
    add_name(&input, dns_tsig_algorithm_name(k.algorithm));
    add(&input, "\x00\x00\x65\x53\xf1\x00", 6);   /* time signed T0 */
    add(&input, "\x01\x2c", 2);             /* fudge 300 */
    add(&input, "\x00\x00\x00\x00", 4);     /* error, other len */
    char want[2 * DNS_TSIG_MAC_MAX + 2];
    CHECK_INT(openssl_hmac(digest, k.secret, k.secret_len, &input, want, sizeof want), 0);

    size_t unsigned_len = len;
    struct dns_tsig_request req;
    CHECK_INT(dns_tsig_sign(&k, msg, &len, sizeof msg, T0, &req, err, sizeof err), 0);
    CHECK_INT(len, unsigned_len + dns_tsig_rr_size(&k));
    CHECK_INT(req.mac_len, mac_size);
    CHECK_INT(req.id, 0x1234);
    CHECK_INT(req.time_signed, T0);
    char got[2 * DNS_TSIG_MAC_MAX + 1];
    to_hex(req.mac, req.mac_len, got);
    CHECK_STR(got, want);

    /* The TSIG RR on the wire, read back by the parser. */
    struct dns_message m;
    CHECK_INT(dns_parse(&m, msg, len, err, sizeof err), 0);
    CHECK_INT(m.count[DNS_SECTION_ADDITIONAL], 1);
    CHECK(m.has_tsig);
    CHECK_INT(m.tsig_offset, unsigned_len);
    struct dns_name key_name = name_of("gatehouse");
    CHECK(dns_name_equal(&m.tsig.name, &key_name));
    CHECK_INT(m.tsig.rclass, DNS_CLASS_ANY);
    CHECK_INT(m.tsig.ttl, 0);
    struct dns_name alg_name = name_of(dns_tsig_algorithm_name(k.algorithm));
    CHECK(dns_name_equal(&m.tsig.u.tsig.algorithm, &alg_name));
    CHECK_INT(m.tsig.u.tsig.time_signed, T0);
    CHECK_INT(m.tsig.u.tsig.fudge, 300);
    CHECK_INT(m.tsig.u.tsig.mac_len, mac_size);
    to_hex(m.tsig.u.tsig.mac, m.tsig.u.tsig.mac_len, got);
    CHECK_STR(got, want);
    CHECK_INT(m.tsig.u.tsig.original_id, 0x1234);
    CHECK_INT(m.tsig.u.tsig.error, 0);
    CHECK_INT(m.tsig.u.tsig.other_len, 0);

    /* Signed twice, or without room: refused. */
    CHECK_INT(dns_tsig_sign(&k, msg, &len, sizeof msg, T0, &req, err, sizeof err), -1);
    len = make_query(msg, sizeof msg, 1);
    CHECK_INT(dns_tsig_sign(&k, msg, &len, len + dns_tsig_rr_size(&k) - 1, T0, &req, err,
                            sizeof err), -1);
    CHECK(strstr(err, "no room") != NULL);
}

/* ---- signing: the same MAC as BIND's dig ---- */

static void test_sign_matches_dig(void)
{
    if (system("command -v dig >/dev/null 2>&1") != 0) {
        printf("test_dns_tsig: dig not installed (package bind9-dnsutils): dig comparison "
               "SKIPPED\n");
        return;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char cmd[300];
    /* dig gives up by itself after its 1 s timeout; nobody waits for it. */
    snprintf(cmd, sizeof cmd, "dig -p %u @127.0.0.1 -y hmac-sha256:Gatehouse:%s +tries=1 "
             "+time=1 app.edge.example TXT >/dev/null 2>&1 &", ntohs(sa.sin_port), SECRET);
    CHECK_INT(system(cmd), 0);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    uint8_t q[1500];
    ssize_t n = poll(&p, 1, 10000) == 1 ? recv(fd, q, sizeof q, 0) : -1;
    close(fd);
    CHECK(n > 0);
    if (n <= 0)
        return;
    struct dns_message m;
    CHECK_INT(dns_parse(&m, q, (size_t)n, err, sizeof err), 0);
    CHECK(m.has_tsig);
    if (!m.has_tsig)
        return;
    struct dns_tsig_rdata dig_tsig = m.tsig.u.tsig;

    /* Strip dig's TSIG and sign what is left, at dig's time: the MACs must agree. */
    uint8_t mine[1500];
    size_t len = m.tsig_offset;
    memcpy(mine, q, len);
    mine[11] = (uint8_t)(mine[11] - 1);
    struct dns_tsig_key k;
    dns_tsig_key_init(&k, "gatehouse", "hmac-sha256", SECRET, err, sizeof err);
    struct dns_tsig_request req;
    CHECK_INT(dns_tsig_sign(&k, mine, &len, sizeof mine, dig_tsig.time_signed, &req, err,
                            sizeof err), 0);
    CHECK_INT(dig_tsig.mac_len, 32);
    CHECK(req.mac_len == dig_tsig.mac_len && memcmp(req.mac, dig_tsig.mac, 32) == 0);
    CHECK_INT(len, (size_t)n);
    CHECK(memcmp(mine, q, len) == 0);                /* byte for byte the same message */
}

/* ---- verifying responses ---- */

struct signed_exchange {
    struct dns_tsig_key key;
    struct dns_tsig_request req;
    struct bytes resp;            /* the response without TSIG; ARCOUNT still 0 */
};

/* Our signed query, and the server's answer to it (not yet signed). */
static void make_exchange(struct signed_exchange *x, const char *alg)
{
    dns_tsig_key_init(&x->key, "gatehouse", alg, SECRET, err, sizeof err);
    uint8_t msg[512];
    size_t len = make_query(msg, sizeof msg, 0x5151);
    x->resp.n = 0;
    add(&x->resp, msg, len);
    dns_tsig_sign(&x->key, msg, &len, sizeof msg, T0, &x->req, err, sizeof err);
    x->resp.b[2] |= 0x84;                          /* QR, AA */
    x->resp.b[7] = 1;                              /* ANCOUNT */
    add(&x->resp, "\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x0a", 16);
}

struct tsig_fields {
    const char *key_name;
    const char *secret;           /* NULL: no MAC at all (an unsigned error answer) */
    uint64_t time_signed;
    unsigned error;
    size_t mac_len;               /* 0: the algorithm's */
    const uint8_t *other;
    size_t other_len;
};

/* Appends a TSIG RR to x->resp, its MAC computed by openssl over the RFC 8945 input. */
static struct bytes sign_response(const struct signed_exchange *x, const struct tsig_fields *f)
{
    const char *alg = dns_tsig_algorithm_name(x->key.algorithm);
    const char *digest = x->key.algorithm == DNS_TSIG_HMAC_SHA512 ? "sha512"
                         : x->key.algorithm == DNS_TSIG_HMAC_SHA1 ? "sha1" : "sha256";
    char hex[2 * DNS_TSIG_MAC_MAX + 2] = "";
    uint8_t mac[DNS_TSIG_MAC_MAX];
    size_t mac_len = 0;
    if (f->secret) {
        struct bytes input = { .n = 0 };
        add16(&input, (unsigned)x->req.mac_len);
        add(&input, x->req.mac, x->req.mac_len);
        add(&input, x->resp.b, x->resp.n);
        add_name(&input, f->key_name);
        add(&input, "\x00\xff\x00\x00\x00\x00", 6);
        add_name(&input, alg);
        add48(&input, f->time_signed);
        add16(&input, 300);
        add16(&input, f->error);
        add16(&input, (unsigned)f->other_len);
        add(&input, f->other, f->other_len);
        uint8_t secret[DNS_TSIG_SECRET_MAX];
        long sl = base64_decode(f->secret, strlen(f->secret), secret, sizeof secret,
                                BASE64_CANONICAL, NULL);
        if (sl < 0 || openssl_hmac(digest, secret, (size_t)sl, &input, hex, sizeof hex) < 0)
            CHECK(!"openssl dgst failed");
        mac_len = f->mac_len ? f->mac_len : strlen(hex) / 2;
        for (size_t i = 0; i < mac_len; i++)
            sscanf(hex + 2 * i, "%2hhx", &mac[i]);
    }
    struct bytes out = x->resp;
    out.b[11] = 1;                                 /* ARCOUNT */
    add_name(&out, f->key_name);
    struct dns_name an = name_of(alg);
    add16(&out, DNS_TYPE_TSIG);
    add16(&out, DNS_CLASS_ANY);
    add(&out, "\0\0\0\0", 4);
    add16(&out, (unsigned)(an.len + 16 + mac_len + f->other_len));
    add(&out, an.wire, an.len);
    add48(&out, f->time_signed);
    add16(&out, 300);
    add16(&out, (unsigned)mac_len);
    add(&out, mac, mac_len);
    add16(&out, 0x5151);
    add16(&out, f->error);
    add16(&out, (unsigned)f->other_len);
    add(&out, f->other, f->other_len);
    return out;
}

static enum dns_tsig_result verify(const struct signed_exchange *x, const struct bytes *resp,
                                   uint64_t now)
{
    struct dns_message m;
    if (dns_parse(&m, resp->b, resp->n, err, sizeof err) < 0) {
        fprintf(stderr, "  response does not parse: %s\n", err);
        return (enum dns_tsig_result)-1;
    }
    err[0] = '\0';
    enum dns_tsig_result r = dns_tsig_verify(&x->key, &m, &x->req, now, err, sizeof err);
    CHECK(strstr(err, SECRET) == NULL);
    return r;
}

static void check_verify(const char *alg)
{
    struct signed_exchange x;
    make_exchange(&x, alg);
    struct tsig_fields good = { .key_name = "gatehouse", .secret = SECRET,
                                .time_signed = T0 + 1 };
    struct bytes r = sign_response(&x, &good);
    CHECK_INT(verify(&x, &r, T0 + 5), DNS_TSIG_OK);
    CHECK_INT(verify(&x, &r, T0 + 1 - 300), DNS_TSIG_OK);      /* the fudge, inclusive */
    CHECK_INT(verify(&x, &r, T0 + 1 + 300), DNS_TSIG_OK);

    /* Any flipped byte before the TSIG breaks the MAC - except the ID's two: the MAC covers
     * the original ID from the TSIG instead (the client matches the header ID itself). */
    int broken = 0;
    for (size_t i = 2; i < x.resp.n; i++) {
        struct bytes f = r;
        f.b[i] ^= 0x20;
        struct dns_message m;
        if (dns_parse(&m, f.b, f.n, err, sizeof err) < 0 ||
            dns_tsig_verify(&x.key, &m, &x.req, T0, err, sizeof err) != DNS_TSIG_OK)
            broken++;
    }
    CHECK_INT(broken, x.resp.n - 2);
    struct bytes f = r;
    f.b[f.n - 7] ^= 1;                             /* last octet of the MAC */
    CHECK_INT(verify(&x, &f, T0), DNS_TSIG_BAD_MAC);
    CHECK(strstr(err, "does not verify") != NULL);

    /* Stale, and from the future. */
    CHECK_INT(verify(&x, &r, T0 + 302), DNS_TSIG_BAD_TIME);
    CHECK(strstr(err, "BADTIME") != NULL);
    CHECK_INT(verify(&x, &r, T0 - 400), DNS_TSIG_BAD_TIME);

    /* Signed with another secret, or verified against another request MAC. */
    struct tsig_fields other = good;
    other.secret = OTHER_SECRET;
    r = sign_response(&x, &other);
    CHECK_INT(verify(&x, &r, T0), DNS_TSIG_BAD_MAC);
    r = sign_response(&x, &good);
    struct signed_exchange y = x;
    y.req.mac[0] ^= 1;
    CHECK_INT(verify(&y, &r, T0), DNS_TSIG_BAD_MAC);

    /* Another key name; a truncated MAC. */
    struct tsig_fields renamed = good;
    renamed.key_name = "someone-else";
    r = sign_response(&x, &renamed);
    CHECK_INT(verify(&x, &r, T0), DNS_TSIG_MALFORMED);
    CHECK(strstr(err, "someone-else") != NULL);
    struct tsig_fields shortened = good;
    shortened.mac_len = 10;
    r = sign_response(&x, &shortened);
    CHECK_INT(verify(&x, &r, T0), DNS_TSIG_MALFORMED);

    /* No TSIG at all. */
    CHECK_INT(verify(&x, &x.resp, T0), DNS_TSIG_UNSIGNED);
    CHECK(strstr(err, "not TSIG-signed") != NULL);
}

static void test_server_errors(void)
{
    struct signed_exchange x;
    make_exchange(&x, NULL);
    x.resp.b[3] = (uint8_t)((x.resp.b[3] & 0xF0) | DNS_RCODE_NOTAUTH);
    struct tsig_fields f = { .key_name = "gatehouse", .time_signed = T0 };

    f.error = DNS_RCODE_BADKEY;
    struct bytes r = sign_response(&x, &f);
    CHECK_INT(verify(&x, &r, T0), DNS_TSIG_SERVER_BADKEY);
    CHECK(strstr(err, "BADKEY") && strstr(err, "gatehouse.") && strstr(err, "hmac-sha256"));

    f.error = DNS_RCODE_BADSIG;
    r = sign_response(&x, &f);
    CHECK_INT(verify(&x, &r, T0), DNS_TSIG_SERVER_BADSIG);
    CHECK(strstr(err, "BADSIG") != NULL);

    /* BADTIME comes signed, with the server's clock in other data. */
    static const uint8_t server_time[6] = { 0, 0, 0x65, 0x53, 0xf4, 0xe8 };  /* T0 + 1000 */
    struct tsig_fields t = { .key_name = "gatehouse", .secret = SECRET, .time_signed = T0,
                             .error = DNS_RCODE_BADTIME, .other = server_time, .other_len = 6 };
    r = sign_response(&x, &t);
    CHECK_INT(verify(&x, &r, T0), DNS_TSIG_SERVER_BADTIME);
    CHECK(strstr(err, "BADTIME") && strstr(err, "1700001000"));

    f.error = DNS_RCODE_BADTRUNC;
    r = sign_response(&x, &f);
    CHECK_INT(verify(&x, &r, T0), DNS_TSIG_SERVER_ERROR);
    CHECK(strstr(err, "BADTRUNC") != NULL);
}

int main(void)
{
    test_algorithms_and_keys();
    check_sign_known_answer(NULL, "sha256", 32);
    check_sign_known_answer("hmac-sha512", "sha512", 64);
    check_sign_known_answer("hmac-sha1", "sha1", 20);
    test_sign_matches_dig();
    check_verify("hmac-sha256");
    check_verify("hmac-sha512");
    check_verify("hmac-sha1");
    test_server_errors();
    return check_summary("test_dns_tsig");
}
