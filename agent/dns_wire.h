/*
 * dns_wire.h - DNS messages on the wire (RFC 1035, RFC 2136 UPDATE): names, builders, a strict
 * response parser.
 *
 * Everything works on caller buffers: nothing here allocates, reads a clock or does I/O.
 *
 * Names. A struct dns_name holds a name in uncompressed wire form, as given (case kept) and
 * always absolute. Names come from text through dns_name_from_text, which accepts only what a
 * record the agent publishes can need: labels of letters, digits, '-' and '_' (1-63 octets, no
 * '-' at either end), '*' only as the whole first label, at most 255 octets on the wire; no
 * backslash escapes, no empty labels. A trailing dot is optional. Comparisons ignore ASCII case.
 *
 * Building. A query holds one question. An UPDATE (dns_update_*) is built section by section in
 * RFC 2136 order: the zone, then prerequisites, then updates; a call out of that order, a name
 * outside the zone (at a label boundary: "notexample.com." is not in "example.com.") or a full
 * buffer makes the builder fail, and it stays failed (every later call returns -1 and
 * dns_update_finish reports the first problem), so a caller may check once at the end.
 *
 * Parsing. dns_parse checks a whole message before anything is read from it: header, every
 * question and RR in every section, compression pointers (which must point backwards, to where
 * an earlier label starts - so no loops - and never out of the message), rdata of the types we
 * decode (A, AAAA, TXT, SOA, TSIG) against their rdlength, no bytes after the last RR, at most
 * one TSIG and only as the last additional RR. After that, dns_rr_iter walks a section and
 * cannot fail. The message struct points into the caller's buffer, which must outlive it.
 */
#ifndef GATEHOUSE_DNS_WIRE_H
#define GATEHOUSE_DNS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define DNS_WIRE_NAME_MAX 255        /* octets of an uncompressed wire name, root label included */
#define DNS_WIRE_LABEL_MAX 63
#define DNS_WIRE_NAME_TEXT_MAX 254   /* "a.b.c." text form of the longest name, without NUL */
#define DNS_WIRE_HEADER_SIZE 12
#define DNS_WIRE_UDP_MAX 512         /* larger messages go over TCP (RFC 1035 4.2.1, no EDNS) */
#define DNS_WIRE_MSG_MAX 65535       /* the TCP length prefix is 16 bits */
#define DNS_WIRE_TXT_STRING_MAX 255  /* one <character-string> */

enum dns_type {
    DNS_TYPE_A = 1,
    DNS_TYPE_NS = 2,
    DNS_TYPE_CNAME = 5,
    DNS_TYPE_SOA = 6,
    DNS_TYPE_PTR = 12,
    DNS_TYPE_MX = 15,
    DNS_TYPE_TXT = 16,
    DNS_TYPE_AAAA = 28,
    DNS_TYPE_OPT = 41,
    DNS_TYPE_TSIG = 250,
    DNS_TYPE_ANY = 255,
};

enum dns_class {
    DNS_CLASS_IN = 1,
    DNS_CLASS_NONE = 254,   /* RFC 2136: "RRset does not exist", "delete one RR" */
    DNS_CLASS_ANY = 255,
};

enum dns_opcode { DNS_OPCODE_QUERY = 0, DNS_OPCODE_UPDATE = 5 };

/* Header rcodes (4 bits) and the TSIG error values (RFC 8945 5.3), one number space. */
enum dns_rcode {
    DNS_RCODE_NOERROR = 0,
    DNS_RCODE_FORMERR = 1,
    DNS_RCODE_SERVFAIL = 2,
    DNS_RCODE_NXDOMAIN = 3,
    DNS_RCODE_NOTIMP = 4,
    DNS_RCODE_REFUSED = 5,
    DNS_RCODE_YXDOMAIN = 6,   /* UPDATE prerequisite "name not in use" failed */
    DNS_RCODE_YXRRSET = 7,    /* "RRset does not exist" failed */
    DNS_RCODE_NXRRSET = 8,    /* "RRset exists" (either form) failed */
    DNS_RCODE_NOTAUTH = 9,    /* not authoritative for the zone, or TSIG refused */
    DNS_RCODE_NOTZONE = 10,   /* a name outside the zone section's zone */
    DNS_RCODE_BADSIG = 16,
    DNS_RCODE_BADKEY = 17,
    DNS_RCODE_BADTIME = 18,
    DNS_RCODE_BADTRUNC = 22,
};

/* "NOERROR", "REFUSED", "NOTAUTH", "BADSIG", ...; "unknown rcode" for anything else. */
const char *dns_rcode_name(unsigned rcode);
/* "A", "AAAA", "TXT", "SOA", "TSIG", "ANY", ...; "unknown type" for anything else. */
const char *dns_type_name(unsigned type);

/* Header flag bits (the 16-bit word after the ID). */
#define DNS_FLAG_QR 0x8000u
#define DNS_FLAG_AA 0x0400u
#define DNS_FLAG_TC 0x0200u
#define DNS_FLAG_RD 0x0100u
#define DNS_FLAG_RA 0x0080u

/* ---- names ---- */

struct dns_name {
    uint8_t len;                           /* octets used in wire, root label included (>= 1) */
    uint8_t wire[DNS_WIRE_NAME_MAX];
};

/* Text -> name (rules above). Returns 0, or -1 with err naming the problem and the offending
 * label ("label \"a b\" holds ' '", "name longer than 255 octets", ...). "." is the root. */
int dns_name_from_text(struct dns_name *out, const char *text, char *err, size_t errlen);
/* Name -> "www.example.com." (the root is "."). Octets other than printable ASCII, '.' and '\\'
 * (possible in names read from the wire) are written as \DDD. outlen > DNS_WIRE_NAME_TEXT_MAX
 * fits any name made by dns_name_from_text; 4 * DNS_WIRE_NAME_MAX fits any name. Returns the
 * length written, or -1 when it does not fit (out then holds ""). */
int dns_name_to_text(const struct dns_name *name, char *out, size_t outlen);
/* 1 when equal ignoring ASCII case. */
int dns_name_equal(const struct dns_name *a, const struct dns_name *b);
/* 1 when name is zone or below it, at a label boundary, ignoring case. */
int dns_name_in_zone(const struct dns_name *name, const struct dns_name *zone);
/* Number of labels, the root not counted ("www.example.com." -> 3). */
unsigned dns_name_label_count(const struct dns_name *name);
/* Lower-cases the name in place (canonical form, RFC 4034 6.2). */
void dns_name_lower(struct dns_name *name);

/* The same comparisons on text names; a trailing dot is optional on either side. Text that is
 * not a valid name (dns_name_from_text) is never equal to, or inside, anything: these return 0. */
int dns_text_name_equal(const char *a, const char *b);
int dns_text_name_in_zone(const char *name, const char *zone);

/* ---- rdata encoders (into caller buffers; each returns the rdata length, or -1) ---- */

/* "192.0.2.10" -> 4 octets. */
int dns_rdata_a(const char *ipv4, uint8_t out[4]);
/* "2001:db8::1" -> 16 octets. */
int dns_rdata_aaaa(const char *ipv6, uint8_t out[16]);
/* Text of any length -> <character-string>s of at most 255 octets each, in order (an empty text
 * gives one empty string). -1 when it does not fit in cap. */
int dns_rdata_txt(const char *text, uint8_t *out, size_t cap);

/* ---- building a query ---- */

/* One question, class IN, with the RD bit when recursion_desired. Returns the message length,
 * or -1 when it does not fit in cap. */
int dns_build_query(uint8_t *buf, size_t cap, uint16_t id, const struct dns_name *qname,
                    uint16_t qtype, int recursion_desired);

/* ---- building an UPDATE (RFC 2136) ---- */

struct dns_update {
    uint8_t *buf;
    size_t cap;
    size_t len;
    struct dns_name zone;
    int stage;                   /* internal: which section calls may still go to */
    char problem[160];           /* first failure, "" while none */
};

/* Header (opcode UPDATE) and the zone section: zone, SOA, IN. Returns 0 or -1 (u->problem). */
int dns_update_begin(struct dns_update *u, uint8_t *buf, size_t cap, uint16_t id,
                     const struct dns_name *zone);

/* Prerequisites (RFC 2136 2.4). All of them must hold or the server applies nothing. */
/* RRset exists (value-independent): CLASS ANY, TTL 0, no rdata. Fails with NXRRSET. */
int dns_update_require_rrset(struct dns_update *u, const struct dns_name *name, uint16_t type);
/* RRset exists (value-dependent): one call per RR; the server compares the whole RRset made of
 * the calls with the same name and type. CLASS IN, TTL 0. Fails with NXRRSET. */
int dns_update_require_rr(struct dns_update *u, const struct dns_name *name, uint16_t type,
                          const uint8_t *rdata, uint16_t rdlen);
/* RRset does not exist: CLASS NONE, TTL 0, no rdata. Fails with YXRRSET. */
int dns_update_require_no_rrset(struct dns_update *u, const struct dns_name *name,
                                uint16_t type);
/* Name is in use (owns some RR): CLASS ANY, TYPE ANY. Fails with NXDOMAIN. */
int dns_update_require_name(struct dns_update *u, const struct dns_name *name);
/* Name is not in use: CLASS NONE, TYPE ANY. Fails with YXDOMAIN. */
int dns_update_require_no_name(struct dns_update *u, const struct dns_name *name);

/* Updates (RFC 2136 2.5), applied in order, all or nothing. */
/* Add one RR (class IN). Adding an RR that exists changes nothing but its TTL. */
int dns_update_add(struct dns_update *u, const struct dns_name *name, uint16_t type,
                   uint32_t ttl, const uint8_t *rdata, uint16_t rdlen);
/* Delete an RRset: CLASS ANY, TTL 0, no rdata. */
int dns_update_delete_rrset(struct dns_update *u, const struct dns_name *name, uint16_t type);
/* Delete all RRsets at a name: CLASS ANY, TYPE ANY. */
int dns_update_delete_name(struct dns_update *u, const struct dns_name *name);
/* Delete one RR: CLASS NONE, TTL 0, the RR's rdata. */
int dns_update_delete_rr(struct dns_update *u, const struct dns_name *name, uint16_t type,
                         const uint8_t *rdata, uint16_t rdlen);

/* Returns the message length, or -1 with the first problem copied to err. */
int dns_update_finish(struct dns_update *u, char *err, size_t errlen);

/* ---- parsing ---- */

enum dns_section { DNS_SECTION_QUESTION, DNS_SECTION_ANSWER, DNS_SECTION_AUTHORITY,
                   DNS_SECTION_ADDITIONAL };
/* In an UPDATE the four sections are zone, prerequisite, update, additional. */

struct dns_soa {
    struct dns_name mname, rname;
    uint32_t serial, refresh, retry, expire, minimum;
};

struct dns_tsig_rdata {
    struct dns_name algorithm;
    uint64_t time_signed;        /* 48 bits */
    uint16_t fudge;
    uint16_t mac_len;
    const uint8_t *mac;          /* into the message */
    uint16_t original_id;
    uint16_t error;              /* a dns_rcode, 0 when none */
    uint16_t other_len;
    const uint8_t *other;        /* BADTIME: the server's time as 6 octets */
};

struct dns_rr {
    struct dns_name name;        /* decompressed, case as sent */
    uint16_t type, rclass;
    uint32_t ttl;
    uint16_t rdlen;
    const uint8_t *rdata;        /* into the message (compressed names inside stay compressed) */
    union {                      /* decoded when type (and class IN, except TSIG) says so */
        uint8_t a[4];
        uint8_t aaaa[16];
        struct dns_soa soa;
        struct dns_tsig_rdata tsig;
    } u;
};

struct dns_message {
    const uint8_t *wire;         /* the caller's buffer */
    size_t len;
    uint16_t id;
    uint16_t flags;              /* DNS_FLAG_* bits, opcode and rcode included as sent */
    unsigned opcode;             /* DNS_OPCODE_* */
    unsigned rcode;              /* header rcode (4 bits) */
    uint16_t count[4];           /* per enum dns_section */
    size_t section_offset[4];    /* where each section starts */
    /* The first question (zone in an UPDATE); valid when count[DNS_SECTION_QUESTION] > 0. */
    struct dns_name qname;
    uint16_t qtype, qclass;
    /* The TSIG record, when the last additional RR is one. */
    int has_tsig;
    size_t tsig_offset;          /* where that RR starts */
    struct dns_rr tsig;
};

/* Validates and indexes a whole message (rules above). Returns 0, or -1 with err saying what
 * and where ("answer RR 2: compression pointer at offset 40 does not point backwards"). */
int dns_parse(struct dns_message *m, const uint8_t *wire, size_t len, char *err, size_t errlen);

struct dns_rr_iter {
    const struct dns_message *m;
    size_t offset;
    unsigned left;
    enum dns_section section;
};

/* Walks the RRs of one section of a parsed message (not the question section). */
void dns_rr_iter_init(struct dns_rr_iter *it, const struct dns_message *m,
                      enum dns_section section);
/* Fills rr and returns 1, or returns 0 at the end of the section. */
int dns_rr_iter_next(struct dns_rr_iter *it, struct dns_rr *rr);

/* A TXT RR's strings joined, NUL-terminated (as external-dns and SPF read them). Returns the
 * length, or -1 when rr is not TXT or out is too small. Octets are copied as they are, except
 * that a NUL inside makes it -1 (a TXT value with NUL is nothing we wrote). */
int dns_rr_txt(const struct dns_rr *rr, char *out, size_t outlen);

#endif
