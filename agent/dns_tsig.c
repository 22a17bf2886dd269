/*
 * dns_tsig.c - RFC 8945 TSIG with BearSSL's HMAC (see dns_tsig.h).
 *
 * The digest is fed to the HMAC piece by piece, straight from the message buffer, so nothing is
 * copied or allocated; only the two header words that differ between the digest and the wire
 * (ID and ARCOUNT) are rewritten on the way. Secrets and HMAC states are wiped after use.
 */
#include "dns_tsig.h"

#include "base64.h"
#include "log.h"

#include <bearssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define TSIG_OTHER_TIME_LEN 6

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put48(uint8_t *p, uint64_t v)
{
    for (int i = 5; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* memset that the compiler may not drop as a dead store. */
static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n--)
        *v++ = 0;
}

/* ---- algorithms ---- */

static const struct {
    const char *name;              /* wire name as text */
    const br_hash_class *hash;
    size_t mac_size;
} algorithms[] = {
    [DNS_TSIG_HMAC_SHA256] = { "hmac-sha256.", &br_sha256_vtable, 32 },
    [DNS_TSIG_HMAC_SHA512] = { "hmac-sha512.", &br_sha512_vtable, 64 },
    [DNS_TSIG_HMAC_SHA1] = { "hmac-sha1.", &br_sha1_vtable, 20 },
};
#define ALGORITHM_COUNT (sizeof algorithms / sizeof algorithms[0])

int dns_tsig_algorithm_from_text(const char *text, enum dns_tsig_algorithm *out)
{
    for (size_t i = 0; i < ALGORITHM_COUNT; i++) {
        size_t n = strlen(algorithms[i].name) - 1;     /* without the dot */
        if (strncasecmp(text, algorithms[i].name, n) == 0 &&
            (text[n] == '\0' || (text[n] == '.' && text[n + 1] == '\0'))) {
            *out = (enum dns_tsig_algorithm)i;
            return 0;
        }
    }
    return -1;
}

const char *dns_tsig_algorithm_name(enum dns_tsig_algorithm alg)
{
    return (size_t)alg < ALGORITHM_COUNT ? algorithms[alg].name : "unknown";
}

size_t dns_tsig_mac_size(enum dns_tsig_algorithm alg)
{
    return (size_t)alg < ALGORITHM_COUNT ? algorithms[alg].mac_size : 0;
}

static void algorithm_wire_name(enum dns_tsig_algorithm alg, struct dns_name *out)
{
    /* The table's names are valid by construction. */
    if (dns_name_from_text(out, algorithms[alg].name, NULL, 0) < 0)
        out->len = 0;
}

/* ---- keys ---- */

int dns_tsig_key_init(struct dns_tsig_key *key, const char *name, const char *algorithm,
                      const char *secret_base64, char *err, size_t errlen)
{
    char why[160];
    memset(key, 0, sizeof *key);
    if (dns_name_from_text(&key->name, name ? name : "", why, sizeof why) < 0) {
        set_err(err, errlen, "TSIG key name: %s", why);
        return -1;
    }
    dns_name_lower(&key->name);
    key->algorithm = DNS_TSIG_HMAC_SHA256;
    if (algorithm && dns_tsig_algorithm_from_text(algorithm, &key->algorithm) < 0) {
        set_err(err, errlen,
                "TSIG algorithm \"%.40s\" is not supported (hmac-sha256, hmac-sha512, hmac-sha1)",
                algorithm);
        return -1;
    }
    size_t bad_at = 0;
    const char *text = secret_base64 ? secret_base64 : "";
    long n = base64_decode(text, strlen(text), key->secret, sizeof key->secret,
                           BASE64_CANONICAL, &bad_at);
    if (n <= 0) {
        wipe(key->secret, sizeof key->secret);
        if (!secret_base64 || !*secret_base64)
            set_err(err, errlen, "TSIG secret is empty");
        else if (strlen(secret_base64) > 4 * ((DNS_TSIG_SECRET_MAX + 2) / 3))
            set_err(err, errlen, "TSIG secret is longer than %d octets", DNS_TSIG_SECRET_MAX);
        else
            set_err(err, errlen, "TSIG secret is not valid base64 (at character %zu)", bad_at);
        return -1;
    }
    key->secret_len = (size_t)n;
    return 0;
}

void dns_tsig_key_wipe(struct dns_tsig_key *key)
{
    wipe(key->secret, sizeof key->secret);
    key->secret_len = 0;
}

/* ---- the digest ---- */

size_t dns_tsig_rr_size(const struct dns_tsig_key *key)
{
    struct dns_name alg;
    algorithm_wire_name(key->algorithm, &alg);
    /* owner, type/class/ttl/rdlen, algorithm, time, fudge, mac size, mac, id, error, other len */
    return key->name.len + 10u + alg.len + 6 + 2 + 2 + dns_tsig_mac_size(key->algorithm) + 6;
}

struct tsig_vars {
    uint64_t time_signed;
    uint16_t fudge;
    uint16_t error;
    uint16_t other_len;
    const uint8_t *other;
};

/* HMAC over: [prior MAC as u16 length + bytes] the message msg[0..len) with its ID replaced
 * by id and its ARCOUNT by arcount, then the TSIG variables. Returns the MAC length. */
static size_t tsig_digest(const struct dns_tsig_key *key, const uint8_t *prior_mac,
                          size_t prior_len, const uint8_t *msg, size_t len, uint16_t id,
                          uint16_t arcount, const struct tsig_vars *v, uint8_t *mac)
{
    br_hmac_key_context kc;
    br_hmac_context hc;
    br_hmac_key_init(&kc, algorithms[key->algorithm].hash, key->secret, key->secret_len);
    br_hmac_init(&hc, &kc, 0);
    uint8_t word[2];
    if (prior_mac) {
        put16(word, (uint16_t)prior_len);
        br_hmac_update(&hc, word, 2);
        br_hmac_update(&hc, prior_mac, prior_len);
    }
    put16(word, id);
    br_hmac_update(&hc, word, 2);
    br_hmac_update(&hc, msg + 2, 8);               /* flags, QD, AN, NS counts */
    put16(word, arcount);
    br_hmac_update(&hc, word, 2);
    br_hmac_update(&hc, msg + DNS_WIRE_HEADER_SIZE, len - DNS_WIRE_HEADER_SIZE);

    struct dns_name alg;
    algorithm_wire_name(key->algorithm, &alg);
    uint8_t fixed[16];
    br_hmac_update(&hc, key->name.wire, key->name.len);    /* lower-cased at key_init */
    put16(fixed, DNS_CLASS_ANY);
    memset(fixed + 2, 0, 4);                               /* TTL */
    br_hmac_update(&hc, fixed, 6);
    br_hmac_update(&hc, alg.wire, alg.len);
    put48(fixed, v->time_signed);
    put16(fixed + 6, v->fudge);
    put16(fixed + 8, v->error);
    put16(fixed + 10, v->other_len);
    br_hmac_update(&hc, fixed, 12);
    if (v->other_len)
        br_hmac_update(&hc, v->other, v->other_len);
    size_t n = br_hmac_out(&hc, mac);
    wipe(&kc, sizeof kc);
    wipe(&hc, sizeof hc);
    return n;
}

/* ---- signing ---- */

int dns_tsig_sign(const struct dns_tsig_key *key, uint8_t *msg, size_t *len, size_t cap,
                  uint64_t now, struct dns_tsig_request *request, char *err, size_t errlen)
{
    struct dns_message m;
    char why[160];
    if (dns_parse(&m, msg, *len, why, sizeof why) < 0) {
        set_err(err, errlen, "cannot sign a malformed message: %s", why);
        return -1;
    }
    if (m.has_tsig || m.count[DNS_SECTION_ADDITIONAL] == UINT16_MAX) {
        set_err(err, errlen, "message is already signed");
        return -1;
    }
    size_t rr_size = dns_tsig_rr_size(key);
    if (cap < *len || cap - *len < rr_size || *len + rr_size > DNS_WIRE_MSG_MAX) {
        set_err(err, errlen, "no room for the TSIG record (%zu octets)", rr_size);
        return -1;
    }
    struct tsig_vars v = { .time_signed = now & 0xFFFFFFFFFFFFull, .fudge = DNS_TSIG_FUDGE };
    size_t mac_len = tsig_digest(key, NULL, 0, msg, *len, m.id,
                                 m.count[DNS_SECTION_ADDITIONAL], &v, request->mac);
    request->mac_len = mac_len;
    request->id = m.id;
    request->time_signed = v.time_signed;

    struct dns_name alg;
    algorithm_wire_name(key->algorithm, &alg);
    uint8_t *p = msg + *len;
    memcpy(p, key->name.wire, key->name.len);
    p += key->name.len;
    put16(p, DNS_TYPE_TSIG);
    put16(p + 2, DNS_CLASS_ANY);
    memset(p + 4, 0, 4);
    put16(p + 8, (uint16_t)(rr_size - key->name.len - 10));
    p += 10;
    memcpy(p, alg.wire, alg.len);
    p += alg.len;
    put48(p, v.time_signed);
    put16(p + 6, v.fudge);
    put16(p + 8, (uint16_t)mac_len);
    p += 10;
    memcpy(p, request->mac, mac_len);
    p += mac_len;
    put16(p, m.id);
    memset(p + 2, 0, 4);                            /* error, other len */
    *len += rr_size;
    put16(msg + 10, (uint16_t)(m.count[DNS_SECTION_ADDITIONAL] + 1));
    return 0;
}

/* ---- verifying ---- */

static int equal_in_constant_time(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

static uint64_t get48(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 6; i++)
        v = v << 8 | p[i];
    return v;
}

/* The server refused our TSIG: its error field says why. */
static enum dns_tsig_result server_error(const struct dns_tsig_key *key,
                                         const struct dns_tsig_rdata *t, uint64_t now,
                                         char *err, size_t errlen)
{
    char name[DNS_WIRE_NAME_TEXT_MAX + 1];
    if (dns_name_to_text(&key->name, name, sizeof name) < 0)
        name[0] = '\0';
    switch (t->error) {
    case DNS_RCODE_BADSIG:
        set_err(err, errlen, "server could not verify our TSIG signature with key \"%s\": "
                "BADSIG - does the server have the same secret?", name);
        return DNS_TSIG_SERVER_BADSIG;
    case DNS_RCODE_BADKEY:
        set_err(err, errlen, "server rejected our TSIG key \"%s\": BADKEY - is the key "
                "configured on the server, with algorithm %.*s?", name,
                (int)strlen(dns_tsig_algorithm_name(key->algorithm)) - 1,
                dns_tsig_algorithm_name(key->algorithm));
        return DNS_TSIG_SERVER_BADKEY;
    case DNS_RCODE_BADTIME:
        if (t->other_len == TSIG_OTHER_TIME_LEN)
            set_err(err, errlen, "server says our clock is off: BADTIME (server time %llu, "
                    "ours %llu, fudge %u s) - is NTP running?",
                    (unsigned long long)get48(t->other), (unsigned long long)now, t->fudge);
        else
            set_err(err, errlen, "server says our clock is off: BADTIME - is NTP running?");
        return DNS_TSIG_SERVER_BADTIME;
    default:
        set_err(err, errlen, "server reported TSIG error %s (%u)", dns_rcode_name(t->error),
                t->error);
        return DNS_TSIG_SERVER_ERROR;
    }
}

static enum dns_tsig_result check_identity(const struct dns_tsig_key *key,
                                           const struct dns_tsig_rdata *t,
                                           const struct dns_rr *rr, char *err, size_t errlen)
{
    struct dns_name alg;
    algorithm_wire_name(key->algorithm, &alg);
    if (!dns_name_equal(&rr->name, &key->name) || !dns_name_equal(&t->algorithm, &alg)) {
        char name[4 * DNS_WIRE_NAME_MAX], alg_text[4 * DNS_WIRE_NAME_MAX];
        dns_name_to_text(&rr->name, name, sizeof name);
        dns_name_to_text(&t->algorithm, alg_text, sizeof alg_text);
        set_err(err, errlen, "response is signed with key \"%.80s\" (%.40s), not ours",
                name, alg_text);
        return DNS_TSIG_MALFORMED;
    }
    return DNS_TSIG_OK;
}

enum dns_tsig_result dns_tsig_verify(const struct dns_tsig_key *key,
                                     const struct dns_message *response,
                                     const struct dns_tsig_request *request, uint64_t now,
                                     char *err, size_t errlen)
{
    if (!response->has_tsig) {
        set_err(err, errlen, "response (%s) is not TSIG-signed", dns_rcode_name(response->rcode));
        return DNS_TSIG_UNSIGNED;
    }
    const struct dns_tsig_rdata *t = &response->tsig.u.tsig;
    enum dns_tsig_result r = check_identity(key, t, &response->tsig, err, errlen);
    if (r != DNS_TSIG_OK)
        return r;
    if (t->error != 0)
        return server_error(key, t, now, err, errlen);
    size_t mac_size = dns_tsig_mac_size(key->algorithm);
    if (t->mac_len != mac_size) {
        set_err(err, errlen, "response MAC is %u octets, not %zu", t->mac_len, mac_size);
        return DNS_TSIG_MALFORMED;
    }
    if (t->original_id != request->id) {
        set_err(err, errlen, "response TSIG is for message ID %u, not %u", t->original_id,
                request->id);
        return DNS_TSIG_MALFORMED;
    }
    struct tsig_vars v = { .time_signed = t->time_signed, .fudge = t->fudge,
                           .error = t->error, .other_len = t->other_len, .other = t->other };
    uint8_t mac[DNS_TSIG_MAC_MAX];
    tsig_digest(key, request->mac, request->mac_len, response->wire, response->tsig_offset,
                t->original_id, (uint16_t)(response->count[DNS_SECTION_ADDITIONAL] - 1), &v, mac);
    int same = equal_in_constant_time(mac, t->mac, mac_size);
    wipe(mac, sizeof mac);
    if (!same) {
        set_err(err, errlen, "response TSIG signature does not verify (BADSIG): wrong key "
                "secret, or the response was altered");
        return DNS_TSIG_BAD_MAC;
    }
    uint64_t fudge = t->fudge < DNS_TSIG_FUDGE ? t->fudge : DNS_TSIG_FUDGE;
    uint64_t skew = now > t->time_signed ? now - t->time_signed : t->time_signed - now;
    if (skew > fudge) {
        set_err(err, errlen, "response was signed at %llu, %llu s from our clock %llu (fudge "
                "%llu s): BADTIME - is NTP running?", (unsigned long long)t->time_signed,
                (unsigned long long)skew, (unsigned long long)now, (unsigned long long)fudge);
        return DNS_TSIG_BAD_TIME;
    }
    return DNS_TSIG_OK;
}
