/*
 * dns_tsig.h - TSIG (RFC 8945): signing our requests, verifying the server's responses.
 *
 * A key is a name, an algorithm (hmac-sha256 by default, hmac-sha512, hmac-sha1; on the wire
 * "hmac-sha256." etc.) and a secret given in base64 (strict: the standard alphabet, '=' padding
 * only at the end, no spaces; between 1 and DNS_TSIG_SECRET_MAX octets once decoded). The secret
 * never appears in a message from here, and dns_tsig_key_wipe clears it.
 *
 * Signing appends the TSIG RR to a finished message and bumps ARCOUNT. The MAC covers the
 * message as it was, then the TSIG variables (key name and algorithm in canonical lower-case
 * form, class ANY, TTL 0, time signed, fudge, error 0, no other data). What the response check
 * needs (our MAC, ID, time) goes into a struct dns_tsig_request.
 *
 * Verifying a response: the last additional RR must be a TSIG with our key name and algorithm;
 * a TSIG error from the server (BADSIG, BADKEY, BADTIME) is reported as such, since then the
 * server could not check us and answers unsigned or with its clock; otherwise the MAC (full
 * length, no truncation) must match HMAC over our request MAC, the response without its TSIG
 * (ARCOUNT one lower, ID = original ID) and its TSIG variables; time signed must be within
 * fudge of our clock. Only single-message exchanges are covered (no AXFR envelopes).
 */
#ifndef GATEHOUSE_DNS_TSIG_H
#define GATEHOUSE_DNS_TSIG_H

#include <stddef.h>
#include <stdint.h>

#include "dns_wire.h"

#define DNS_TSIG_SECRET_MAX 128   /* octets; a generated hmac-sha512 key is 64 */
#define DNS_TSIG_MAC_MAX 64       /* sha512 */
#define DNS_TSIG_FUDGE 300        /* seconds, as RFC 8945 recommends */

enum dns_tsig_algorithm { DNS_TSIG_HMAC_SHA256 = 0, DNS_TSIG_HMAC_SHA512, DNS_TSIG_HMAC_SHA1 };

/* "hmac-sha256" (with or without the trailing dot, any case) -> algorithm. 0, or -1. */
int dns_tsig_algorithm_from_text(const char *text, enum dns_tsig_algorithm *out);
/* The wire name's text: "hmac-sha256.", "hmac-sha512.", "hmac-sha1.". */
const char *dns_tsig_algorithm_name(enum dns_tsig_algorithm alg);
/* MAC length in octets: 32, 64, 20. */
size_t dns_tsig_mac_size(enum dns_tsig_algorithm alg);

struct dns_tsig_key {
    struct dns_name name;             /* lower-cased */
    enum dns_tsig_algorithm algorithm;
    uint8_t secret[DNS_TSIG_SECRET_MAX];
    size_t secret_len;
};

/* name: a key name ("gatehouse" or "gatehouse."); algorithm: text as above, NULL for
 * hmac-sha256; secret_base64: the secret. Returns 0, or -1 with err (which never quotes the
 * secret: "secret is not valid base64 (character 17)"). */
int dns_tsig_key_init(struct dns_tsig_key *key, const char *name, const char *algorithm,
                      const char *secret_base64, char *err, size_t errlen);
/* Overwrites the secret. */
void dns_tsig_key_wipe(struct dns_tsig_key *key);


/* Octets the TSIG RR of this key adds to a message. */
size_t dns_tsig_rr_size(const struct dns_tsig_key *key);

/* What verifying the response needs to remember from the request. */
struct dns_tsig_request {
    uint8_t mac[DNS_TSIG_MAC_MAX];
    size_t mac_len;
    uint16_t id;
    uint64_t time_signed;
};

/* Signs msg[0..*len) in place, with time_signed = now (seconds since the epoch) and fudge
 * DNS_TSIG_FUDGE: appends the TSIG RR, increments ARCOUNT, updates *len. The message must be a
 * finished one (dns_build_query, dns_update_finish) without a TSIG. Returns 0, or -1 with err
 * when cap is too small or the message is malformed. */
int dns_tsig_sign(const struct dns_tsig_key *key, uint8_t *msg, size_t *len, size_t cap,
                  uint64_t now, struct dns_tsig_request *request, char *err, size_t errlen);

enum dns_tsig_result {
    DNS_TSIG_OK = 0,
    DNS_TSIG_UNSIGNED,        /* the response has no TSIG (a server that does not know TSIG, or
                                 a forged answer) */
    DNS_TSIG_MALFORMED,       /* a TSIG that is not last, another key or algorithm, bad sizes */
    DNS_TSIG_BAD_MAC,         /* the response's MAC does not verify: wrong key or altered */
    DNS_TSIG_BAD_TIME,        /* the response's time signed is outside its fudge of our clock */
    DNS_TSIG_SERVER_BADSIG,   /* the server could not verify our MAC: different secret */
    DNS_TSIG_SERVER_BADKEY,   /* the server does not know our key name or algorithm */
    DNS_TSIG_SERVER_BADTIME,  /* the server says our clock is off by more than the fudge */
    DNS_TSIG_SERVER_ERROR,    /* another TSIG error (BADTRUNC, ...) */
};

/* Checks a parsed response to the request signed with key. now: our clock in seconds. Returns
 * DNS_TSIG_OK, or another result with err saying what went wrong in words an operator can act
 * on ("server rejected our TSIG key \"gatehouse.\": BADKEY - is the key configured on the
 * server, with the same algorithm?"). */
enum dns_tsig_result dns_tsig_verify(const struct dns_tsig_key *key,
                                     const struct dns_message *response,
                                     const struct dns_tsig_request *request, uint64_t now,
                                     char *err, size_t errlen);

#endif
