/*
 * dns_wire.c - DNS names, message builders and the strict response parser (see dns_wire.h).
 *
 * Builders write names uncompressed: our messages are small and the server never needs
 * compression to understand them, so the writer stays trivially correct. The parser is the part
 * that meets untrusted bytes; every read goes through a bounds check against the message end
 * (or the rdata end), and a name's compression pointers must point strictly backwards, which
 * bounds every name walk without a hop counter.
 */
#include "dns_wire.h"
#include "log.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static uint8_t ascii_lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c; }

/* ---- names for messages ---- */

const char *dns_rcode_name(unsigned rcode)
{
    static const char *const names[] = {
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
        "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE",
    };
    static const char *const tsig_names[] = {
        "BADSIG", "BADKEY", "BADTIME", "BADMODE", "BADNAME", "BADALG", "BADTRUNC", "BADCOOKIE",
    };
    if (rcode < sizeof names / sizeof names[0])
        return names[rcode];
    if (rcode >= 16 && rcode - 16 < sizeof tsig_names / sizeof tsig_names[0])
        return tsig_names[rcode - 16];
    return "unknown rcode";
}

const char *dns_type_name(unsigned type)
{
    switch (type) {
    case DNS_TYPE_A: return "A";
    case DNS_TYPE_NS: return "NS";
    case DNS_TYPE_CNAME: return "CNAME";
    case DNS_TYPE_SOA: return "SOA";
    case DNS_TYPE_PTR: return "PTR";
    case DNS_TYPE_MX: return "MX";
    case DNS_TYPE_TXT: return "TXT";
    case DNS_TYPE_AAAA: return "AAAA";
    case DNS_TYPE_OPT: return "OPT";
    case DNS_TYPE_TSIG: return "TSIG";
    case DNS_TYPE_ANY: return "ANY";
    default: return "unknown type";
    }
}

/* ---- names ---- */

static int label_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

/* Checks one label of text (len octets at s); first says whether it is the leftmost label. */
static int label_problem(const char *s, size_t len, int first, char *err, size_t errlen)
{
    if (len == 0) {
        set_err(err, errlen, "empty label");
        return -1;
    }
    if (len > DNS_WIRE_LABEL_MAX) {
        set_err(err, errlen, "label \"%.*s...\" is longer than 63 octets", 20, s);
        return -1;
    }
    if (len == 1 && s[0] == '*') {
        if (first)
            return 0;
        set_err(err, errlen, "'*' is allowed only as the whole first label");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (label_char_ok(s[i]))
            continue;
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7f)
            set_err(err, errlen, "label \"%.*s\" holds '%c'", (int)len, s, c);
        else
            set_err(err, errlen, "label \"%.*s\" holds the octet 0x%02x", (int)len, s, c);
        return -1;
    }
    if (s[0] == '-' || s[len - 1] == '-') {
        set_err(err, errlen, "label \"%.*s\" starts or ends with '-'", (int)len, s);
        return -1;
    }
    return 0;
}

int dns_name_from_text(struct dns_name *out, const char *text, char *err, size_t errlen)
{
    out->len = 0;
    if (!text || !*text) {
        set_err(err, errlen, "empty name");
        return -1;
    }
    size_t len = 0;
    if (strcmp(text, ".") != 0) {
        const char *p = text;
        while (*p) {
            const char *dot = strchr(p, '.');
            size_t n = dot ? (size_t)(dot - p) : strlen(p);
            if (label_problem(p, n, p == text, err, errlen) < 0)
                return -1;
            if (len + 1 + n + 1 > DNS_WIRE_NAME_MAX) {
                set_err(err, errlen, "name is longer than 255 octets");
                return -1;
            }
            out->wire[len] = (uint8_t)n;
            memcpy(out->wire + len + 1, p, n);
            len += 1 + n;
            p += n;
            if (*p == '.')
                p++;
        }
    }
    out->wire[len++] = 0;
    out->len = (uint8_t)len;
    return 0;
}

static int text_put(char *out, size_t outlen, size_t *at, const char *s, size_t n)
{
    if (*at + n >= outlen)
        return -1;
    memcpy(out + *at, s, n);
    *at += n;
    return 0;
}

int dns_name_to_text(const struct dns_name *name, char *out, size_t outlen)
{
    if (outlen == 0)
        return -1;
    size_t at = 0;
    size_t i = 0;
    int ok = 1;
    while (ok && i < name->len && name->wire[i] != 0) {
        uint8_t n = name->wire[i++];
        for (uint8_t k = 0; ok && k < n && i < name->len; k++, i++) {
            uint8_t c = name->wire[i];
            char esc[8];
            if (c > 0x20 && c < 0x7f && c != '.' && c != '\\') {
                ok = text_put(out, outlen, &at, (const char *)&c, 1) == 0;
            } else {
                snprintf(esc, sizeof esc, "\\%03u", (unsigned)c);
                ok = text_put(out, outlen, &at, esc, 4) == 0;
            }
        }
        if (ok)
            ok = text_put(out, outlen, &at, ".", 1) == 0;
    }
    if (ok && at == 0)
        ok = text_put(out, outlen, &at, ".", 1) == 0;
    if (!ok) {
        out[0] = '\0';
        return -1;
    }
    out[at] = '\0';
    return (int)at;
}

int dns_name_equal(const struct dns_name *a, const struct dns_name *b)
{
    if (a->len != b->len)
        return 0;
    for (size_t i = 0; i < a->len; i++)
        if (ascii_lower(a->wire[i]) != ascii_lower(b->wire[i]))
            return 0;
    return 1;
}

int dns_name_in_zone(const struct dns_name *name, const struct dns_name *zone)
{
    /* Walk name's labels until the rest is as long as the zone: only a label start counts. */
    size_t i = 0;
    while (name->len - i > zone->len) {
        if (name->wire[i] == 0)
            return 0;
        i += 1u + name->wire[i];
    }
    if (name->len - i != zone->len)
        return 0;
    for (size_t k = 0; k < zone->len; k++)
        if (ascii_lower(name->wire[i + k]) != ascii_lower(zone->wire[k]))
            return 0;
    return 1;
}

unsigned dns_name_label_count(const struct dns_name *name)
{
    unsigned count = 0;
    for (size_t i = 0; i < name->len && name->wire[i] != 0; i += 1u + name->wire[i])
        count++;
    return count;
}

void dns_name_lower(struct dns_name *name)
{
    for (size_t i = 0; i < name->len && name->wire[i] != 0; i += 1u + name->wire[i])
        for (size_t k = i + 1; k <= i + name->wire[i] && k < name->len; k++)
            name->wire[k] = ascii_lower(name->wire[k]);
}

int dns_text_name_equal(const char *a, const char *b)
{
    struct dns_name na, nb;
    if (dns_name_from_text(&na, a, NULL, 0) < 0 || dns_name_from_text(&nb, b, NULL, 0) < 0)
        return 0;
    return dns_name_equal(&na, &nb);
}

int dns_text_name_in_zone(const char *name, const char *zone)
{
    struct dns_name nn, nz;
    if (dns_name_from_text(&nn, name, NULL, 0) < 0 || dns_name_from_text(&nz, zone, NULL, 0) < 0)
        return 0;
    return dns_name_in_zone(&nn, &nz);
}

/* ---- rdata encoders ---- */

int dns_rdata_a(const char *ipv4, uint8_t out[4])
{
    return inet_pton(AF_INET, ipv4, out) == 1 ? 4 : -1;
}

int dns_rdata_aaaa(const char *ipv6, uint8_t out[16])
{
    return inet_pton(AF_INET6, ipv6, out) == 1 ? 16 : -1;
}

int dns_rdata_txt(const char *text, uint8_t *out, size_t cap)
{
    size_t left = strlen(text), at = 0;
    do {
        size_t n = left > DNS_WIRE_TXT_STRING_MAX ? DNS_WIRE_TXT_STRING_MAX : left;
        if (at + 1 + n > cap || at + 1 + n > UINT16_MAX)
            return -1;
        out[at] = (uint8_t)n;
        memcpy(out + at + 1, text, n);
        at += 1 + n;
        text += n;
        left -= n;
    } while (left > 0);
    return (int)at;
}

/* ---- building ---- */

static int append(uint8_t *buf, size_t cap, size_t *len, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (n > cap || *len > cap - n)
        return -1;
    memcpy(buf + *len, data, n);
    *len += n;
    return 0;
}

static void write_header(uint8_t *buf, uint16_t id, uint16_t flags)
{
    memset(buf, 0, DNS_WIRE_HEADER_SIZE);
    put16(buf, id);
    put16(buf + 2, flags);
}

/* name, type, class: a question, or the zone section's entry. */
static int append_question(uint8_t *buf, size_t cap, size_t *len, const struct dns_name *name,
                           uint16_t type, uint16_t rclass)
{
    uint8_t tail[4];
    put16(tail, type);
    put16(tail + 2, rclass);
    if (append(buf, cap, len, name->wire, name->len) < 0)
        return -1;
    return append(buf, cap, len, tail, sizeof tail);
}

int dns_build_query(uint8_t *buf, size_t cap, uint16_t id, const struct dns_name *qname,
                    uint16_t qtype, int recursion_desired)
{
    if (cap < DNS_WIRE_HEADER_SIZE)
        return -1;
    write_header(buf, id, recursion_desired ? DNS_FLAG_RD : 0);
    put16(buf + 4, 1);
    size_t len = DNS_WIRE_HEADER_SIZE;
    if (append_question(buf, cap, &len, qname, qtype, DNS_CLASS_IN) < 0)
        return -1;
    return (int)len;
}

enum { STAGE_FAILED = -1, STAGE_PREREQ = 0, STAGE_UPDATE = 1 };

static int update_fail(struct dns_update *u, const char *what, const struct dns_name *name)
{
    if (u->stage != STAGE_FAILED) {
        char text[DNS_WIRE_NAME_TEXT_MAX * 4 + 1];
        if (name && dns_name_to_text(name, text, sizeof text) >= 0)
            snprintf(u->problem, sizeof u->problem, "%s: %.100s", what, text);
        else
            snprintf(u->problem, sizeof u->problem, "%s", what);
        u->stage = STAGE_FAILED;
    }
    return -1;
}

int dns_update_begin(struct dns_update *u, uint8_t *buf, size_t cap, uint16_t id,
                     const struct dns_name *zone)
{
    u->buf = buf;
    u->cap = cap;
    u->len = 0;
    u->zone = *zone;
    u->stage = STAGE_PREREQ;
    u->problem[0] = '\0';
    if (cap < DNS_WIRE_HEADER_SIZE)
        return update_fail(u, "UPDATE does not fit in the buffer", NULL);
    write_header(buf, id, DNS_OPCODE_UPDATE << 11);
    put16(buf + 4, 1);
    u->len = DNS_WIRE_HEADER_SIZE;
    if (append_question(buf, cap, &u->len, zone, DNS_TYPE_SOA, DNS_CLASS_IN) < 0)
        return update_fail(u, "UPDATE does not fit in the buffer", NULL);
    return 0;
}

/* Appends one RR to the prerequisite (stage STAGE_PREREQ) or update section, bumping its count.
 * Prerequisites after the first update are refused: the sections are in a fixed order. */
static int update_rr(struct dns_update *u, int stage, const struct dns_name *name, uint16_t type,
                     uint16_t rclass, uint32_t ttl, const uint8_t *rdata, uint16_t rdlen)
{
    if (u->stage == STAGE_FAILED)
        return -1;
    if (stage < u->stage)
        return update_fail(u, "prerequisite after an update for", name);
    if (!dns_name_in_zone(name, &u->zone))
        return update_fail(u, "name is outside the UPDATE's zone", name);
    size_t count_at = stage == STAGE_PREREQ ? 6 : 8;
    uint16_t count = get16(u->buf + count_at);
    if (count == UINT16_MAX)
        return update_fail(u, "too many records in one UPDATE", NULL);
    uint8_t fixed[10];
    put16(fixed, type);
    put16(fixed + 2, rclass);
    put32(fixed + 4, ttl);
    put16(fixed + 8, rdlen);
    size_t len = u->len;
    if (append(u->buf, u->cap, &len, name->wire, name->len) < 0 ||
        append(u->buf, u->cap, &len, fixed, sizeof fixed) < 0 ||
        append(u->buf, u->cap, &len, rdata, rdlen) < 0)
        return update_fail(u, "UPDATE does not fit in the buffer at", name);
    u->len = len;
    put16(u->buf + count_at, (uint16_t)(count + 1));
    u->stage = stage;
    return 0;
}

/* Types an RR with data can have: no meta types (OPT, TSIG, ANY, ...), no type 0. */
static int data_type_ok(uint16_t type)
{
    return type != 0 && type != DNS_TYPE_OPT && !(type >= 128 && type <= 255);
}

int dns_update_require_rrset(struct dns_update *u, const struct dns_name *name, uint16_t type)
{
    if (!data_type_ok(type))
        return update_fail(u, "prerequisite with a meta type for", name);
    return update_rr(u, STAGE_PREREQ, name, type, DNS_CLASS_ANY, 0, NULL, 0);
}

int dns_update_require_rr(struct dns_update *u, const struct dns_name *name, uint16_t type,
                          const uint8_t *rdata, uint16_t rdlen)
{
    if (!data_type_ok(type))
        return update_fail(u, "prerequisite with a meta type for", name);
    return update_rr(u, STAGE_PREREQ, name, type, DNS_CLASS_IN, 0, rdata, rdlen);
}

int dns_update_require_no_rrset(struct dns_update *u, const struct dns_name *name,
                                uint16_t type)
{
    if (!data_type_ok(type))
        return update_fail(u, "prerequisite with a meta type for", name);
    return update_rr(u, STAGE_PREREQ, name, type, DNS_CLASS_NONE, 0, NULL, 0);
}

int dns_update_require_name(struct dns_update *u, const struct dns_name *name)
{
    return update_rr(u, STAGE_PREREQ, name, DNS_TYPE_ANY, DNS_CLASS_ANY, 0, NULL, 0);
}

int dns_update_require_no_name(struct dns_update *u, const struct dns_name *name)
{
    return update_rr(u, STAGE_PREREQ, name, DNS_TYPE_ANY, DNS_CLASS_NONE, 0, NULL, 0);
}

int dns_update_add(struct dns_update *u, const struct dns_name *name, uint16_t type,
                   uint32_t ttl, const uint8_t *rdata, uint16_t rdlen)
{
    if (!data_type_ok(type))
        return update_fail(u, "cannot add a record of a meta type at", name);
    if (ttl > INT32_MAX)
        return update_fail(u, "TTL above 2^31-1 for", name);
    return update_rr(u, STAGE_UPDATE, name, type, DNS_CLASS_IN, ttl, rdata, rdlen);
}

int dns_update_delete_rrset(struct dns_update *u, const struct dns_name *name, uint16_t type)
{
    if (!data_type_ok(type))
        return update_fail(u, "cannot delete an RRset of a meta type at", name);
    return update_rr(u, STAGE_UPDATE, name, type, DNS_CLASS_ANY, 0, NULL, 0);
}

int dns_update_delete_name(struct dns_update *u, const struct dns_name *name)
{
    return update_rr(u, STAGE_UPDATE, name, DNS_TYPE_ANY, DNS_CLASS_ANY, 0, NULL, 0);
}

int dns_update_delete_rr(struct dns_update *u, const struct dns_name *name, uint16_t type,
                         const uint8_t *rdata, uint16_t rdlen)
{
    if (!data_type_ok(type))
        return update_fail(u, "cannot delete a record of a meta type at", name);
    return update_rr(u, STAGE_UPDATE, name, type, DNS_CLASS_NONE, 0, rdata, rdlen);
}

int dns_update_finish(struct dns_update *u, char *err, size_t errlen)
{
    if (u->stage == STAGE_FAILED) {
        set_err(err, errlen, "%s", u->problem);
        return -1;
    }
    return (int)u->len;
}

/* ---- parsing ---- */

static const char *const section_names[] = { "question", "answer", "authority", "additional" };

/* Reads the name at *at. Inline labels must end by limit (the rdata end, or the message end);
 * pointers may go anywhere earlier in the message. On success *at is just past the name as
 * written (past its first pointer, if any). */
static int read_name(const uint8_t *msg, size_t msglen, size_t *at, size_t limit,
                     struct dns_name *out, char *err, size_t errlen)
{
    size_t pos = *at, segment_start = *at, after = 0, len = 0;
    int jumped = 0;
    for (;;) {
        size_t end = jumped ? msglen : limit;
        if (pos >= end) {
            set_err(err, errlen, "name at offset %zu runs past the end", *at);
            return -1;
        }
        uint8_t c = msg[pos];
        if ((c & 0xC0) == 0xC0) {
            if (pos + 1 >= end) {
                set_err(err, errlen, "compression pointer at offset %zu is cut off", pos);
                return -1;
            }
            size_t target = (size_t)(c & 0x3F) << 8 | msg[pos + 1];
            if (target >= segment_start || target < DNS_WIRE_HEADER_SIZE) {
                set_err(err, errlen,
                        "compression pointer at offset %zu to %zu does not point backwards",
                        pos, target);
                return -1;
            }
            if (!jumped)
                after = pos + 2;
            jumped = 1;
            segment_start = pos = target;
            continue;
        }
        if (c & 0xC0) {
            set_err(err, errlen, "label type 0x%02x at offset %zu is not supported", c, pos);
            return -1;
        }
        if (pos + 1 + c > end) {
            set_err(err, errlen, "label at offset %zu runs past the end", pos);
            return -1;
        }
        if (len + 1 + c > DNS_WIRE_NAME_MAX) {
            set_err(err, errlen, "name at offset %zu is longer than 255 octets", *at);
            return -1;
        }
        memcpy(out->wire + len, msg + pos, 1u + c);
        len += 1u + c;
        pos += 1u + c;
        if (c == 0)
            break;
    }
    out->len = (uint8_t)len;
    *at = jumped ? after : pos;
    return 0;
}

static int read_soa(const uint8_t *msg, size_t msglen, size_t at, size_t end,
                    struct dns_soa *soa, char *err, size_t errlen)
{
    if (read_name(msg, msglen, &at, end, &soa->mname, err, errlen) < 0 ||
        read_name(msg, msglen, &at, end, &soa->rname, err, errlen) < 0)
        return -1;
    if (end - at != 20) {
        set_err(err, errlen, "SOA rdata has %zu octets after its names, not 20", end - at);
        return -1;
    }
    const uint8_t *p = msg + at;
    soa->serial = get32(p);
    soa->refresh = get32(p + 4);
    soa->retry = get32(p + 8);
    soa->expire = get32(p + 12);
    soa->minimum = get32(p + 16);
    return 0;
}

static int check_txt(const uint8_t *rdata, size_t rdlen, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < rdlen)
        i += 1u + rdata[i];
    if (i != rdlen || rdlen == 0) {
        set_err(err, errlen, "TXT rdata does not hold whole strings");
        return -1;
    }
    return 0;
}

static int read_tsig(const uint8_t *msg, size_t msglen, size_t at, size_t end,
                     struct dns_tsig_rdata *t, char *err, size_t errlen)
{
    if (read_name(msg, msglen, &at, end, &t->algorithm, err, errlen) < 0)
        return -1;
    if (end - at < 10) {
        set_err(err, errlen, "TSIG rdata is cut off");
        return -1;
    }
    const uint8_t *p = msg + at;
    t->time_signed = (uint64_t)get16(p) << 32 | get32(p + 2);
    t->fudge = get16(p + 6);
    t->mac_len = get16(p + 8);
    at += 10;
    if (end - at < (size_t)t->mac_len + 6) {
        set_err(err, errlen, "TSIG MAC of %u octets does not fit its rdata", t->mac_len);
        return -1;
    }
    t->mac = msg + at;
    at += t->mac_len;
    t->original_id = get16(msg + at);
    t->error = get16(msg + at + 2);
    t->other_len = get16(msg + at + 4);
    at += 6;
    if (end - at != t->other_len) {
        set_err(err, errlen, "TSIG other data does not match its rdata length");
        return -1;
    }
    t->other = msg + at;
    return 0;
}

/* Decodes the rdata of the types we understand. RRs with no rdata (UPDATE prerequisites and
 * deletions: class ANY or NONE) are left undecoded. */
static int decode_rdata(const uint8_t *msg, size_t msglen, size_t at, struct dns_rr *rr,
                        char *err, size_t errlen)
{
    size_t end = at + rr->rdlen;
    if (rr->type == DNS_TYPE_TSIG)
        return read_tsig(msg, msglen, at, end, &rr->u.tsig, err, errlen);
    if (rr->rdlen == 0 && rr->rclass != DNS_CLASS_IN)
        return 0;
    switch (rr->type) {
    case DNS_TYPE_A:
    case DNS_TYPE_AAAA: {
        size_t want = rr->type == DNS_TYPE_A ? 4 : 16;
        if (rr->rdlen != want) {
            set_err(err, errlen, "%s rdata has %u octets, not %zu", dns_type_name(rr->type),
                    rr->rdlen, want);
            return -1;
        }
        memcpy(rr->type == DNS_TYPE_A ? rr->u.a : rr->u.aaaa, rr->rdata, want);
        return 0;
    }
    case DNS_TYPE_SOA:
        return read_soa(msg, msglen, at, end, &rr->u.soa, err, errlen);
    case DNS_TYPE_TXT:
        return check_txt(rr->rdata, rr->rdlen, err, errlen);
    default:
        return 0;
    }
}

static int read_rr(const uint8_t *msg, size_t msglen, size_t *at, struct dns_rr *rr,
                   char *err, size_t errlen)
{
    if (read_name(msg, msglen, at, msglen, &rr->name, err, errlen) < 0)
        return -1;
    if (msglen - *at < 10) {
        set_err(err, errlen, "record at offset %zu is cut off", *at);
        return -1;
    }
    const uint8_t *p = msg + *at;
    rr->type = get16(p);
    rr->rclass = get16(p + 2);
    rr->ttl = get32(p + 4);
    rr->rdlen = get16(p + 8);
    *at += 10;
    if (msglen - *at < rr->rdlen) {
        set_err(err, errlen, "rdata of %u octets at offset %zu runs past the end", rr->rdlen,
                *at);
        return -1;
    }
    rr->rdata = msg + *at;
    size_t rdata_at = *at;
    *at += rr->rdlen;
    return decode_rdata(msg, msglen, rdata_at, rr, err, errlen);
}

static int parse_questions(struct dns_message *m, size_t *at, char *err, size_t errlen)
{
    for (unsigned i = 0; i < m->count[DNS_SECTION_QUESTION]; i++) {
        struct dns_name name;
        char why[160];
        if (read_name(m->wire, m->len, at, m->len, &name, why, sizeof why) < 0) {
            set_err(err, errlen, "question %u: %s", i, why);
            return -1;
        }
        if (m->len - *at < 4) {
            set_err(err, errlen, "question %u is cut off", i);
            return -1;
        }
        if (i == 0) {
            m->qname = name;
            m->qtype = get16(m->wire + *at);
            m->qclass = get16(m->wire + *at + 2);
        }
        *at += 4;
    }
    return 0;
}

static int parse_records(struct dns_message *m, enum dns_section s, size_t *at, char *err,
                         size_t errlen)
{
    for (unsigned i = 0; i < m->count[s]; i++) {
        struct dns_rr rr;
        size_t start = *at;
        char why[160];
        if (read_rr(m->wire, m->len, at, &rr, why, sizeof why) < 0) {
            set_err(err, errlen, "%s RR %u: %s", section_names[s], i, why);
            return -1;
        }
        if (rr.type != DNS_TYPE_TSIG)
            continue;
        if (s != DNS_SECTION_ADDITIONAL || i + 1 != m->count[s]) {
            set_err(err, errlen, "%s RR %u: TSIG that is not the last additional record",
                    section_names[s], i);
            return -1;
        }
        if (rr.rclass != DNS_CLASS_ANY || rr.ttl != 0) {
            set_err(err, errlen, "TSIG record with class %u and TTL %u, not ANY and 0",
                    rr.rclass, rr.ttl);
            return -1;
        }
        m->has_tsig = 1;
        m->tsig_offset = start;
        m->tsig = rr;
    }
    return 0;
}

int dns_parse(struct dns_message *m, const uint8_t *wire, size_t len, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->wire = wire;
    m->len = len;
    if (len < DNS_WIRE_HEADER_SIZE) {
        set_err(err, errlen, "message of %zu octets is shorter than a DNS header", len);
        return -1;
    }
    if (len > DNS_WIRE_MSG_MAX) {
        set_err(err, errlen, "message of %zu octets is longer than 65535", len);
        return -1;
    }
    m->id = get16(wire);
    m->flags = get16(wire + 2);
    m->opcode = (m->flags >> 11) & 0xF;
    m->rcode = m->flags & 0xF;
    for (int s = 0; s < 4; s++)
        m->count[s] = get16(wire + 4 + 2 * s);
    size_t at = DNS_WIRE_HEADER_SIZE;
    m->section_offset[DNS_SECTION_QUESTION] = at;
    if (parse_questions(m, &at, err, errlen) < 0)
        return -1;
    for (int s = DNS_SECTION_ANSWER; s <= DNS_SECTION_ADDITIONAL; s++) {
        m->section_offset[s] = at;
        if (parse_records(m, (enum dns_section)s, &at, err, errlen) < 0)
            return -1;
    }
    if (at != len) {
        set_err(err, errlen, "%zu octets after the last record", len - at);
        return -1;
    }
    return 0;
}

void dns_rr_iter_init(struct dns_rr_iter *it, const struct dns_message *m,
                      enum dns_section section)
{
    it->m = m;
    it->section = section;
    it->offset = m->section_offset[section];
    it->left = section == DNS_SECTION_QUESTION ? 0 : m->count[section];
}

int dns_rr_iter_next(struct dns_rr_iter *it, struct dns_rr *rr)
{
    if (it->left == 0)
        return 0;
    /* dns_parse read this very record already, so it cannot fail here. */
    if (read_rr(it->m->wire, it->m->len, &it->offset, rr, NULL, 0) < 0) {
        it->left = 0;
        return 0;
    }
    it->left--;
    return 1;
}

int dns_rr_txt(const struct dns_rr *rr, char *out, size_t outlen)
{
    if (rr->type != DNS_TYPE_TXT || outlen == 0)
        return -1;
    size_t at = 0;
    for (size_t i = 0; i < rr->rdlen; i += 1u + rr->rdata[i]) {
        uint8_t n = rr->rdata[i];
        if (i + 1u + n > rr->rdlen || at + n >= outlen || memchr(rr->rdata + i + 1, 0, n)) {
            out[0] = '\0';
            return -1;
        }
        memcpy(out + at, rr->rdata + i + 1, n);
        at += n;
    }
    out[at] = '\0';
    return (int)at;
}
