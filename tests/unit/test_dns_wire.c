/*
 * test_dns_wire.c - DNS names, the query and UPDATE builders, and the strict response parser;
 * plus dns_client against small loopback servers run by the test itself (no real DNS server).
 *
 * Messages the parser must refuse are written out byte by byte here, so a test never depends
 * on the builder it might be checking.
 */
#include "check.h"
#include "dns_client.h"
#include "dns_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char err[512];

static struct dns_name name_of(const char *text)
{
    struct dns_name n;
    if (dns_name_from_text(&n, text, err, sizeof err) < 0) {
        fprintf(stderr, "test setup: %s: %s\n", text, err);
        exit(2);
    }
    return n;
}

static int name_ok(const char *text)
{
    struct dns_name n;
    return dns_name_from_text(&n, text, err, sizeof err) == 0;
}

/* ---- names ---- */

static void test_name_from_text(void)
{
    CHECK(name_ok("www.example.com"));
    CHECK(name_ok("www.example.com."));
    CHECK(name_ok("."));
    CHECK(name_ok("*.example.com"));
    CHECK(name_ok("_acme-challenge.example.com"));
    CHECK(name_ok("a-www.Example.COM"));
    CHECK(name_ok("x"));

    CHECK(!name_ok(""));
    CHECK(!name_ok("a..b"));
    CHECK(!name_ok(".a"));
    CHECK(!name_ok("a.b.."));
    CHECK(!name_ok("a.*.com"));
    CHECK(!name_ok("**.com"));
    CHECK(!name_ok("*a.com"));
    CHECK(!name_ok("-a.com"));
    CHECK(!name_ok("a-.com"));
    CHECK(!name_ok("a b.com"));
    CHECK(!name_ok("a\\.b.com"));
    CHECK(!name_ok("a\\065.com"));
    CHECK(!name_ok("caf\xc3\xa9.com"));
    CHECK(!name_ok("a/b.com"));
    CHECK(!name_ok("a\tb"));
    CHECK(!name_ok(NULL));

    CHECK(!name_ok("a b.com"));
    CHECK(strstr(err, "' '") == NULL && strstr(err, "a b") != NULL);
    CHECK(!name_ok("a\x01" "b.com"));
    CHECK(strstr(err, "0x01") != NULL);

    char label63[64], label64[65];
    memset(label63, 'a', 63);
    label63[63] = '\0';
    memset(label64, 'b', 64);
    label64[64] = '\0';
    CHECK(name_ok(label63));
    CHECK(!name_ok(label64));
    CHECK(strstr(err, "63") != NULL);

    /* 3 x 63 + 61 octet labels: 3*64 + 62 + 1 = 255 on the wire; one more octet is too many. */
    char longest[300];
    snprintf(longest, sizeof longest, "%s.%s.%s.%.61s", label63, label63, label63, label63);
    struct dns_name n;
    CHECK_INT(dns_name_from_text(&n, longest, err, sizeof err), 0);
    CHECK_INT(n.len, 255);
    snprintf(longest, sizeof longest, "%s.%s.%s.%.62s", label63, label63, label63, label63);
    CHECK(!name_ok(longest));
    CHECK(strstr(err, "255") != NULL);

    n = name_of("WWW.example.com");
    static const uint8_t wire[] = { 3, 'W', 'W', 'W', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e',
                                    3, 'c', 'o', 'm', 0 };
    CHECK_INT(n.len, sizeof wire);
    CHECK(memcmp(n.wire, wire, sizeof wire) == 0);
    CHECK_INT(dns_name_label_count(&n), 3);
    n = name_of(".");
    CHECK_INT(n.len, 1);
    CHECK_INT(dns_name_label_count(&n), 0);
}

static void test_name_to_text(void)
{
    char text[DNS_WIRE_NAME_TEXT_MAX + 1];
    struct dns_name n = name_of("Www.Example.com");
    CHECK_INT(dns_name_to_text(&n, text, sizeof text), 16);
    CHECK_STR(text, "Www.Example.com.");
    n = name_of(".");
    dns_name_to_text(&n, text, sizeof text);
    CHECK_STR(text, ".");
    n = name_of("a.b");
    CHECK_INT(dns_name_to_text(&n, text, 4), -1);
    CHECK_STR(text, "");
    CHECK_INT(dns_name_to_text(&n, text, 5), 4);

    /* Octets from the wire that no text name holds are escaped. */
    struct dns_name raw = { .len = 6, .wire = { 4, 'a', '.', 0x00, '\\', 0 } };
    char wide[64];
    dns_name_to_text(&raw, wide, sizeof wide);
    CHECK_STR(wide, "a\\046\\000\\092.");

    dns_name_lower(&n);
    struct dns_name upper = name_of("A.B");
    dns_name_lower(&upper);
    dns_name_to_text(&upper, text, sizeof text);
    CHECK_STR(text, "a.b.");
}

static void test_name_compare(void)
{
    struct dns_name a = name_of("WWW.Example.COM"), b = name_of("www.example.com.");
    CHECK(dns_name_equal(&a, &b));
    struct dns_name c = name_of("www.example.co");
    CHECK(!dns_name_equal(&a, &c));

    struct dns_name zone = name_of("example.com"), root = name_of(".");
    struct dns_name inside = name_of("a.b.EXAMPLE.com"), apex = name_of("Example.Com.");
    struct dns_name glued = name_of("notexample.com"), other = name_of("example.org");
    struct dns_name shorter = name_of("com");
    CHECK(dns_name_in_zone(&inside, &zone));
    CHECK(dns_name_in_zone(&apex, &zone));
    CHECK(!dns_name_in_zone(&glued, &zone));
    CHECK(!dns_name_in_zone(&other, &zone));
    CHECK(!dns_name_in_zone(&shorter, &zone));
    CHECK(dns_name_in_zone(&glued, &root));
    CHECK(dns_name_in_zone(&root, &root));
    CHECK(!dns_name_in_zone(&root, &zone));
    /* A label that holds the zone's text as a suffix is not a boundary: "xexample.com". */
    struct dns_name tricky = name_of("a.xexample.com");
    CHECK(!dns_name_in_zone(&tricky, &zone));

    CHECK(dns_text_name_equal("App.Example.com", "app.example.com."));
    CHECK(!dns_text_name_equal("app.example.com", "app.example.org"));
    CHECK(!dns_text_name_equal("a b", "a b"));
    CHECK(dns_text_name_in_zone("x.edge.example", "edge.example."));
    CHECK(!dns_text_name_in_zone("x.notedge.example", "edge.example"));
    CHECK(!dns_text_name_in_zone("bad..name", "."));
}

static void test_rcode_and_type_names(void)
{
    CHECK_STR(dns_rcode_name(0), "NOERROR");
    CHECK_STR(dns_rcode_name(5), "REFUSED");
    CHECK_STR(dns_rcode_name(8), "NXRRSET");
    CHECK_STR(dns_rcode_name(9), "NOTAUTH");
    CHECK_STR(dns_rcode_name(10), "NOTZONE");
    CHECK_STR(dns_rcode_name(16), "BADSIG");
    CHECK_STR(dns_rcode_name(17), "BADKEY");
    CHECK_STR(dns_rcode_name(18), "BADTIME");
    CHECK_STR(dns_rcode_name(22), "BADTRUNC");
    CHECK_STR(dns_rcode_name(11), "unknown rcode");
    CHECK_STR(dns_rcode_name(4000), "unknown rcode");
    CHECK_STR(dns_type_name(28), "AAAA");
    CHECK_STR(dns_type_name(16), "TXT");
    CHECK_STR(dns_type_name(999), "unknown type");
}

/* ---- rdata ---- */

static void test_rdata(void)
{
    uint8_t a[4], aaaa[16], txt[600];
    CHECK_INT(dns_rdata_a("192.0.2.10", a), 4);
    CHECK(a[0] == 192 && a[1] == 0 && a[2] == 2 && a[3] == 10);
    CHECK_INT(dns_rdata_a("192.0.2", a), -1);
    CHECK_INT(dns_rdata_a("::1", a), -1);
    CHECK_INT(dns_rdata_aaaa("2001:db8::1", aaaa), 16);
    CHECK(aaaa[0] == 0x20 && aaaa[1] == 0x01 && aaaa[15] == 1);
    CHECK_INT(dns_rdata_aaaa("192.0.2.1", aaaa), -1);

    CHECK_INT(dns_rdata_txt("", txt, sizeof txt), 1);
    CHECK_INT(txt[0], 0);
    CHECK_INT(dns_rdata_txt("hi", txt, sizeof txt), 3);
    CHECK(txt[0] == 2 && txt[1] == 'h' && txt[2] == 'i');
    char text[301];
    memset(text, 'x', 300);
    text[300] = '\0';
    CHECK_INT(dns_rdata_txt(text, txt, sizeof txt), 302);
    CHECK_INT(txt[0], 255);
    CHECK_INT(txt[256], 45);
    CHECK_INT(dns_rdata_txt(text, txt, 301), -1);
}

/* ---- building ---- */

static void test_query_round_trip(void)
{
    uint8_t buf[512];
    struct dns_name q = name_of("app.edge.example");
    int len = dns_build_query(buf, sizeof buf, 0xBEEF, &q, DNS_TYPE_AAAA, 1);
    CHECK_INT(len, 12 + q.len + 4);
    struct dns_message m;
    CHECK_INT(dns_parse(&m, buf, (size_t)len, err, sizeof err), 0);
    CHECK_INT(m.id, 0xBEEF);
    CHECK(m.flags & DNS_FLAG_RD);
    CHECK(!(m.flags & DNS_FLAG_QR));
    CHECK_INT(m.opcode, DNS_OPCODE_QUERY);
    CHECK_INT(m.count[DNS_SECTION_QUESTION], 1);
    CHECK_INT(m.count[DNS_SECTION_ANSWER], 0);
    CHECK(dns_name_equal(&m.qname, &q));
    CHECK_INT(m.qtype, DNS_TYPE_AAAA);
    CHECK_INT(m.qclass, DNS_CLASS_IN);
    CHECK(!m.has_tsig);
    CHECK_INT(dns_build_query(buf, (size_t)len - 1, 1, &q, DNS_TYPE_A, 0), -1);
    CHECK_INT(dns_build_query(buf, 11, 1, &q, DNS_TYPE_A, 0), -1);
}

struct expect_rr {
    const char *name;
    uint16_t type, rclass;
    uint32_t ttl;
    uint16_t rdlen;
};

static void check_section(const struct dns_message *m, enum dns_section s,
                          const struct expect_rr *want, size_t n)
{
    CHECK_INT(m->count[s], n);
    struct dns_rr_iter it;
    struct dns_rr rr;
    dns_rr_iter_init(&it, m, s);
    for (size_t i = 0; i < n; i++) {
        CHECK(dns_rr_iter_next(&it, &rr));
        struct dns_name wn = name_of(want[i].name);
        CHECK(dns_name_equal(&rr.name, &wn));
        CHECK_INT(rr.type, want[i].type);
        CHECK_INT(rr.rclass, want[i].rclass);
        CHECK_INT(rr.ttl, want[i].ttl);
        CHECK_INT(rr.rdlen, want[i].rdlen);
    }
    CHECK(!dns_rr_iter_next(&it, &rr));
}

static void test_update_every_form(void)
{
    uint8_t buf[1024], a[4], txt[64];
    dns_rdata_a("192.0.2.10", a);
    int txtlen = dns_rdata_txt("heritage=external-dns,external-dns/owner=edge-1", txt, sizeof txt);
    struct dns_name zone = name_of("edge.example"), app = name_of("app.edge.example");
    struct dns_name owner = name_of("a-app.edge.example"), apex = name_of("EDGE.example.");
    struct dns_update u;
    CHECK_INT(dns_update_begin(&u, buf, sizeof buf, 0x1234, &zone), 0);
    CHECK_INT(dns_update_require_rrset(&u, &app, DNS_TYPE_A), 0);
    CHECK_INT(dns_update_require_rr(&u, &owner, DNS_TYPE_TXT, txt, (uint16_t)txtlen), 0);
    CHECK_INT(dns_update_require_no_rrset(&u, &app, DNS_TYPE_AAAA), 0);
    CHECK_INT(dns_update_require_name(&u, &app), 0);
    CHECK_INT(dns_update_require_no_name(&u, &apex), 0);
    CHECK_INT(dns_update_add(&u, &app, DNS_TYPE_A, 60, a, 4), 0);
    CHECK_INT(dns_update_delete_rrset(&u, &app, DNS_TYPE_AAAA), 0);
    CHECK_INT(dns_update_delete_name(&u, &owner), 0);
    CHECK_INT(dns_update_delete_rr(&u, &app, DNS_TYPE_A, a, 4), 0);
    int len = dns_update_finish(&u, err, sizeof err);
    CHECK(len > 0);

    struct dns_message m;
    CHECK_INT(dns_parse(&m, buf, (size_t)len, err, sizeof err), 0);
    CHECK_INT(m.id, 0x1234);
    CHECK_INT(m.opcode, DNS_OPCODE_UPDATE);
    CHECK_INT(m.flags, 5u << 11);
    CHECK_INT(m.count[DNS_SECTION_QUESTION], 1);
    CHECK(dns_name_equal(&m.qname, &zone));
    CHECK_INT(m.qtype, DNS_TYPE_SOA);
    CHECK_INT(m.qclass, DNS_CLASS_IN);
    static const struct expect_rr prereqs[] = {
        { "app.edge.example", DNS_TYPE_A, DNS_CLASS_ANY, 0, 0 },
        { "a-app.edge.example", DNS_TYPE_TXT, DNS_CLASS_IN, 0, 48 },
        { "app.edge.example", DNS_TYPE_AAAA, DNS_CLASS_NONE, 0, 0 },
        { "app.edge.example", DNS_TYPE_ANY, DNS_CLASS_ANY, 0, 0 },
        { "edge.example", DNS_TYPE_ANY, DNS_CLASS_NONE, 0, 0 },
    };
    static const struct expect_rr updates[] = {
        { "app.edge.example", DNS_TYPE_A, DNS_CLASS_IN, 60, 4 },
        { "app.edge.example", DNS_TYPE_AAAA, DNS_CLASS_ANY, 0, 0 },
        { "a-app.edge.example", DNS_TYPE_ANY, DNS_CLASS_ANY, 0, 0 },
        { "app.edge.example", DNS_TYPE_A, DNS_CLASS_NONE, 0, 4 },
    };
    check_section(&m, DNS_SECTION_ANSWER, prereqs, 5);
    check_section(&m, DNS_SECTION_AUTHORITY, updates, 4);
    CHECK_INT(m.count[DNS_SECTION_ADDITIONAL], 0);

    struct dns_rr_iter it;
    struct dns_rr rr;
    dns_rr_iter_init(&it, &m, DNS_SECTION_AUTHORITY);
    CHECK(dns_rr_iter_next(&it, &rr));
    CHECK(memcmp(rr.u.a, a, 4) == 0);
    dns_rr_iter_init(&it, &m, DNS_SECTION_ANSWER);
    dns_rr_iter_next(&it, &rr);
    dns_rr_iter_next(&it, &rr);
    char value[128];
    CHECK_INT(dns_rr_txt(&rr, value, sizeof value), 47);
    CHECK_STR(value, "heritage=external-dns,external-dns/owner=edge-1");
    CHECK_INT(dns_rr_txt(&rr, value, 47), -1);
}

static void test_update_refusals(void)
{
    uint8_t buf[512], a[4] = { 192, 0, 2, 1 };
    struct dns_name zone = name_of("example.com"), in = name_of("www.example.com");
    struct dns_name glued = name_of("www.notexample.com");
    struct dns_update u;

    dns_update_begin(&u, buf, sizeof buf, 1, &zone);
    CHECK_INT(dns_update_add(&u, &glued, DNS_TYPE_A, 60, a, 4), -1);
    CHECK_INT(dns_update_add(&u, &in, DNS_TYPE_A, 60, a, 4), -1);       /* stays failed */
    CHECK_INT(dns_update_finish(&u, err, sizeof err), -1);
    CHECK(strstr(err, "outside") && strstr(err, "www.notexample.com."));

    dns_update_begin(&u, buf, sizeof buf, 1, &zone);
    CHECK_INT(dns_update_add(&u, &in, DNS_TYPE_A, 60, a, 4), 0);
    CHECK_INT(dns_update_require_name(&u, &in), -1);
    CHECK_INT(dns_update_finish(&u, err, sizeof err), -1);
    CHECK(strstr(err, "prerequisite after an update") != NULL);

    dns_update_begin(&u, buf, sizeof buf, 1, &zone);
    CHECK_INT(dns_update_add(&u, &in, DNS_TYPE_ANY, 60, a, 4), -1);
    dns_update_begin(&u, buf, sizeof buf, 1, &zone);
    CHECK_INT(dns_update_add(&u, &in, DNS_TYPE_TSIG, 60, a, 4), -1);
    dns_update_begin(&u, buf, sizeof buf, 1, &zone);
    CHECK_INT(dns_update_delete_rrset(&u, &in, DNS_TYPE_ANY), -1);
    dns_update_begin(&u, buf, sizeof buf, 1, &zone);
    CHECK_INT(dns_update_add(&u, &in, DNS_TYPE_A, 0x80000000u, a, 4), -1);

    /* A buffer that fills up: the message built so far is not returned. */
    uint8_t small[64];
    CHECK_INT(dns_update_begin(&u, small, sizeof small, 1, &zone), 0);
    CHECK_INT(dns_update_add(&u, &in, DNS_TYPE_A, 60, a, 4), 0);
    CHECK_INT(dns_update_add(&u, &in, DNS_TYPE_A, 60, a, 4), -1);
    CHECK_INT(dns_update_finish(&u, err, sizeof err), -1);
    CHECK(strstr(err, "does not fit") != NULL);
    CHECK_INT(dns_update_begin(&u, small, 20, 1, &zone), -1);
}

/* ---- parsing: hand-written messages ---- */

struct raw {
    uint8_t b[4096];
    size_t n;
};

static void raw_bytes(struct raw *r, const void *p, size_t n)
{
    memcpy(r->b + r->n, p, n);
    r->n += n;
}
static void raw16(struct raw *r, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    raw_bytes(r, b, 2);
}
static void raw32(struct raw *r, uint32_t v)
{
    raw16(r, (uint16_t)(v >> 16));
    raw16(r, (uint16_t)v);
}
static void raw_header(struct raw *r, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
                       uint16_t ns, uint16_t ar)
{
    r->n = 0;
    raw16(r, id);
    raw16(r, flags);
    raw16(r, qd);
    raw16(r, an);
    raw16(r, ns);
    raw16(r, ar);
}
static void raw_name(struct raw *r, const char *text)
{
    struct dns_name n = name_of(text);
    raw_bytes(r, n.wire, n.len);
}
static void raw_rr_head(struct raw *r, uint16_t type, uint16_t rclass, uint32_t ttl,
                        uint16_t rdlen)
{
    raw16(r, type);
    raw16(r, rclass);
    raw32(r, ttl);
    raw16(r, rdlen);
}

/* A response to "www.example.com A" with compression everywhere:
 * answer: www (ptr) A, www TXT, example.com SOA (names compressed), authority AAAA. */
static void make_response(struct raw *r)
{
    raw_header(r, 0x4242, DNS_FLAG_QR | DNS_FLAG_AA | 3 /* NXDOMAIN */, 1, 3, 1, 0);
    raw_name(r, "www.example.com");                   /* at 12; "example.com" at 16 */
    raw16(r, DNS_TYPE_A);
    raw16(r, DNS_CLASS_IN);
    raw16(r, 0xC00C);
    raw_rr_head(r, DNS_TYPE_A, DNS_CLASS_IN, 300, 4);
    raw_bytes(r, "\xC0\x00\x02\x0A", 4);
    raw16(r, 0xC00C);
    raw_rr_head(r, DNS_TYPE_TXT, DNS_CLASS_IN, 60, 9);
    raw_bytes(r, "\x03one\x00\x03two", 9);
    raw16(r, 0xC010);
    raw_rr_head(r, DNS_TYPE_SOA, DNS_CLASS_IN, 3600, 2 + 7 + 20);
    raw16(r, 0xC010);                                   /* mname = example.com */
    raw_bytes(r, "\x04host\xC0\x10", 7);                /* rname = host.example.com */
    raw32(r, 2024010101);
    raw32(r, 7200);
    raw32(r, 900);
    raw32(r, 1209600);
    raw32(r, 86400);
    raw16(r, 0xC00C);
    raw_rr_head(r, DNS_TYPE_AAAA, DNS_CLASS_IN, 5, 16);
    raw_bytes(r, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
}

static void test_parse_response(void)
{
    struct raw r;
    make_response(&r);
    struct dns_message m;
    CHECK_INT(dns_parse(&m, r.b, r.n, err, sizeof err), 0);
    CHECK_INT(m.id, 0x4242);
    CHECK_INT(m.rcode, DNS_RCODE_NXDOMAIN);
    CHECK(m.flags & DNS_FLAG_QR);
    CHECK(m.flags & DNS_FLAG_AA);
    CHECK(!(m.flags & DNS_FLAG_TC));
    struct dns_name www = name_of("www.example.com"), ex = name_of("example.com");
    struct dns_name host = name_of("host.example.com");
    CHECK(dns_name_equal(&m.qname, &www));

    struct dns_rr_iter it;
    struct dns_rr rr;
    dns_rr_iter_init(&it, &m, DNS_SECTION_ANSWER);
    CHECK(dns_rr_iter_next(&it, &rr));
    CHECK(dns_name_equal(&rr.name, &www));
    CHECK_INT(rr.type, DNS_TYPE_A);
    CHECK_INT(rr.ttl, 300);
    CHECK(rr.u.a[0] == 192 && rr.u.a[3] == 10);
    CHECK(dns_rr_iter_next(&it, &rr));
    char txt[64];
    /* "one", "", "two" - the empty middle string is legal */
    CHECK_INT(dns_rr_txt(&rr, txt, sizeof txt), 6);
    CHECK_STR(txt, "onetwo");
    CHECK(dns_rr_iter_next(&it, &rr));
    CHECK(dns_name_equal(&rr.name, &ex));
    CHECK_INT(rr.type, DNS_TYPE_SOA);
    CHECK(dns_name_equal(&rr.u.soa.mname, &ex));
    CHECK(dns_name_equal(&rr.u.soa.rname, &host));
    CHECK_INT(rr.u.soa.serial, 2024010101);
    CHECK_INT(rr.u.soa.refresh, 7200);
    CHECK_INT(rr.u.soa.retry, 900);
    CHECK_INT(rr.u.soa.expire, 1209600);
    CHECK_INT(rr.u.soa.minimum, 86400);
    CHECK(!dns_rr_iter_next(&it, &rr));
    dns_rr_iter_init(&it, &m, DNS_SECTION_AUTHORITY);
    CHECK(dns_rr_iter_next(&it, &rr));
    CHECK_INT(rr.type, DNS_TYPE_AAAA);
    CHECK(rr.u.aaaa[0] == 0x20 && rr.u.aaaa[15] == 1);
    CHECK_INT(dns_rr_txt(&rr, txt, sizeof txt), -1);

    /* Every proper prefix is refused (the counts promise more), and so is a trailing byte. */
    int refused = 0;
    for (size_t n = 0; n < r.n; n++)
        refused += dns_parse(&m, r.b, n, err, sizeof err) < 0;
    CHECK_INT(refused, r.n);
    r.b[r.n++] = 0;
    CHECK_INT(dns_parse(&m, r.b, r.n, err, sizeof err), -1);
    CHECK(strstr(err, "after the last record") != NULL);
}

static int parse_fails_with(const struct raw *r, const char *fragment)
{
    struct dns_message m;
    if (dns_parse(&m, r->b, r->n, err, sizeof err) == 0)
        return 0;
    if (!strstr(err, fragment)) {
        fprintf(stderr, "  error was: %s\n", err);
        return 0;
    }
    return 1;
}

static void test_compression_attacks(void)
{
    struct raw r;
    /* A question name that is a pointer to itself. */
    raw_header(&r, 1, DNS_FLAG_QR, 1, 0, 0, 0);
    raw16(&r, 0xC00C);
    raw16(&r, 1);
    raw16(&r, 1);
    CHECK(parse_fails_with(&r, "does not point backwards"));

    /* Two pointers that point at each other: the second one points forwards. */
    raw_header(&r, 1, DNS_FLAG_QR, 1, 1, 0, 0);
    raw_name(&r, "a");                 /* 12..14 */
    raw16(&r, 1);
    raw16(&r, 1);
    raw16(&r, 0xC000 | 21);            /* answer name at 19: points forwards to 21 */
    raw16(&r, 0xC000 | 19);            /* at 21: back to 19 */
    raw_rr_head(&r, DNS_TYPE_A, DNS_CLASS_IN, 1, 4);
    raw32(&r, 0);
    CHECK(parse_fails_with(&r, "does not point backwards"));

    /* A label, then a pointer back to that same label: a loop through a label. */
    raw_header(&r, 1, DNS_FLAG_QR, 1, 0, 0, 0);
    raw_bytes(&r, "\x01" "a", 2);
    raw16(&r, 0xC00C);
    raw16(&r, 1);
    raw16(&r, 1);
    CHECK(parse_fails_with(&r, "does not point backwards"));

    /* A pointer beyond the end of the message, and one into the header. */
    raw_header(&r, 1, DNS_FLAG_QR, 1, 0, 0, 0);
    raw16(&r, 0xCFFF);
    raw16(&r, 1);
    raw16(&r, 1);
    CHECK(parse_fails_with(&r, "pointer"));
    raw_header(&r, 1, DNS_FLAG_QR, 1, 0, 0, 0);
    raw16(&r, 0xC002);
    raw16(&r, 1);
    raw16(&r, 1);
    CHECK(parse_fails_with(&r, "pointer"));

    /* A pointer cut off by the end of the message. */
    raw_header(&r, 1, DNS_FLAG_QR, 1, 0, 0, 0);
    raw_bytes(&r, "\xC0", 1);
    CHECK(parse_fails_with(&r, "cut off"));

    /* Label types 01 and 10 (extended, obsolete). */
    raw_header(&r, 1, DNS_FLAG_QR, 1, 0, 0, 0);
    raw_bytes(&r, "\x41\x00", 2);
    raw16(&r, 1);
    raw16(&r, 1);
    CHECK(parse_fails_with(&r, "label type"));

    /* A chain of backward pointers that builds a name longer than 255 octets:
     * name k = 63-octet label + pointer to name k-1. */
    raw_header(&r, 1, DNS_FLAG_QR, 5, 0, 0, 0);
    size_t prev = 0;
    for (int k = 0; k < 5; k++) {
        size_t here = r.n;
        uint8_t label[64];
        label[0] = 63;
        memset(label + 1, 'a' + k, 63);
        raw_bytes(&r, label, 64);
        if (k == 0)
            raw_bytes(&r, "", 1);
        else
            raw16(&r, (uint16_t)(0xC000 | prev));
        raw16(&r, 1);
        raw16(&r, 1);
        prev = here;
    }
    CHECK(parse_fails_with(&r, "longer than 255"));
}

static void test_malformed_records(void)
{
    struct raw r;
    raw_header(&r, 1, DNS_FLAG_QR, 0, 1, 0, 0);
    raw_name(&r, "a");
    raw_rr_head(&r, DNS_TYPE_A, DNS_CLASS_IN, 1, 5);
    raw_bytes(&r, "\1\2\3\4\5", 5);
    CHECK(parse_fails_with(&r, "A rdata has 5 octets"));

    raw_header(&r, 1, DNS_FLAG_QR, 0, 1, 0, 0);
    raw_name(&r, "a");
    raw_rr_head(&r, DNS_TYPE_AAAA, DNS_CLASS_IN, 1, 4);
    raw_bytes(&r, "\1\2\3\4", 4);
    CHECK(parse_fails_with(&r, "AAAA rdata"));

    raw_header(&r, 1, DNS_FLAG_QR, 0, 1, 0, 0);
    raw_name(&r, "a");
    raw_rr_head(&r, DNS_TYPE_TXT, DNS_CLASS_IN, 1, 3);
    raw_bytes(&r, "\x05" "ab", 3);
    CHECK(parse_fails_with(&r, "TXT"));

    raw_header(&r, 1, DNS_FLAG_QR, 0, 1, 0, 0);
    raw_name(&r, "a");
    raw_rr_head(&r, DNS_TYPE_TXT, DNS_CLASS_IN, 1, 0);
    CHECK(parse_fails_with(&r, "TXT"));

    /* SOA whose second name runs into the numbers; SOA one octet short. */
    raw_header(&r, 1, DNS_FLAG_QR, 0, 1, 0, 0);
    raw_name(&r, "a");
    raw_rr_head(&r, DNS_TYPE_SOA, DNS_CLASS_IN, 1, 2 + 19);
    raw_bytes(&r, "\0\0", 2);
    raw_bytes(&r, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 19);
    CHECK(parse_fails_with(&r, "SOA"));
    raw_header(&r, 1, DNS_FLAG_QR, 0, 1, 0, 0);
    raw_name(&r, "a");
    raw_rr_head(&r, DNS_TYPE_SOA, DNS_CLASS_IN, 1, 4);
    raw_bytes(&r, "\x05" "abc", 4);
    raw_bytes(&r, "\0\0\0", 3);        /* bytes after the rdata the name must not reach */
    CHECK(parse_fails_with(&r, "runs past the end"));

    /* rdlength beyond the message. */
    raw_header(&r, 1, DNS_FLAG_QR, 0, 1, 0, 0);
    raw_name(&r, "a");
    raw_rr_head(&r, 99, DNS_CLASS_IN, 1, 100);
    raw_bytes(&r, "xyz", 3);
    CHECK(parse_fails_with(&r, "runs past the end"));

    /* A header promising an answer that is not there; a header alone is fine. */
    raw_header(&r, 1, DNS_FLAG_QR, 0, 1, 0, 0);
    CHECK(parse_fails_with(&r, "runs past the end"));
    raw_header(&r, 1, DNS_FLAG_QR | DNS_RCODE_REFUSED, 0, 0, 0, 0);
    struct dns_message m;
    CHECK_INT(dns_parse(&m, r.b, r.n, err, sizeof err), 0);
    CHECK_INT(m.rcode, DNS_RCODE_REFUSED);
    CHECK_INT(dns_parse(&m, r.b, 11, err, sizeof err), -1);
    CHECK(strstr(err, "shorter than a DNS header") != NULL);

    /* A TSIG that is not the last additional record, and one in the answer section. */
    raw_header(&r, 1, DNS_FLAG_QR, 0, 0, 0, 2);
    raw_name(&r, "key");
    raw_rr_head(&r, DNS_TYPE_TSIG, DNS_CLASS_ANY, 0, 13 + 16);
    raw_name(&r, "hmac-sha256");
    raw_bytes(&r, "\0\0\0\0\0\1\x01\x2c\0\0\0\1\0\0\0\0", 16);
    raw_name(&r, "x");
    raw_rr_head(&r, DNS_TYPE_A, DNS_CLASS_IN, 1, 4);
    raw32(&r, 0);
    CHECK(parse_fails_with(&r, "TSIG that is not the last"));

    /* The same TSIG alone is accepted and decoded; with its MAC size too large it is not. */
    raw_header(&r, 1, DNS_FLAG_QR, 0, 0, 0, 1);
    raw_name(&r, "key");
    raw_rr_head(&r, DNS_TYPE_TSIG, DNS_CLASS_ANY, 0, 13 + 16);
    raw_name(&r, "hmac-sha256");
    size_t mac_size_at = r.n + 8;
    raw_bytes(&r, "\0\0\0\0\0\1\x01\x2c\0\0\0\7\0\x11\0\0", 16);
    CHECK_INT(dns_parse(&m, r.b, r.n, err, sizeof err), 0);
    CHECK(m.has_tsig);
    CHECK_INT(m.tsig.u.tsig.time_signed, 1);
    CHECK_INT(m.tsig.u.tsig.fudge, 300);
    CHECK_INT(m.tsig.u.tsig.original_id, 7);
    CHECK_INT(m.tsig.u.tsig.error, DNS_RCODE_BADKEY);
    r.b[mac_size_at + 1] = 1;
    CHECK(parse_fails_with(&r, "MAC"));
}

/* Flipping bits and cutting a valid message must never crash; whatever parses must also
 * iterate to exactly its counts. */
static void test_mutations(void)
{
    struct raw base, r;
    make_response(&base);
    unsigned seed = 12345, parsed = 0, consistent = 0;
    for (int round = 0; round < 20000; round++) {
        r = base;
        int flips = 1 + (int)(rand_r(&seed) % 4);
        for (int f = 0; f < flips; f++)
            r.b[rand_r(&seed) % r.n] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
        if (rand_r(&seed) % 4 == 0)
            r.n = rand_r(&seed) % r.n;
        struct dns_message m;
        if (dns_parse(&m, r.b, r.n, err, sizeof err) < 0)
            continue;
        parsed++;
        unsigned seen = 0;
        for (int s = DNS_SECTION_ANSWER; s <= DNS_SECTION_ADDITIONAL; s++) {
            struct dns_rr_iter it;
            struct dns_rr rr;
            dns_rr_iter_init(&it, &m, (enum dns_section)s);
            while (dns_rr_iter_next(&it, &rr))
                seen++;
        }
        consistent += seen == (unsigned)m.count[1] + m.count[2] + m.count[3];
    }
    CHECK(parsed > 0);
    CHECK_INT(consistent, parsed);
}

/* ---- dns_client against loopback servers ---- */

struct fake_server {
    int udp, tcp;                  /* bound sockets (tcp may be -1) */
    uint16_t port;
    int mode;                      /* what the UDP side does, see serve_udp */
    int udp_seen;
};

enum { FAKE_ANSWER, FAKE_SILENT_ONCE, FAKE_WRONG_ID_FIRST, FAKE_TRUNCATE, FAKE_GARBAGE_FIRST };

/* An answer to request q (len octets): QR set, rcode NOERROR, one A record. */
static size_t make_answer(const uint8_t *q, size_t len, uint8_t *out, uint16_t extra_flags)
{
    memcpy(out, q, len);
    out[2] |= 0x80 | (uint8_t)(extra_flags >> 8);
    out[7] = 1;                                      /* ANCOUNT */
    static const uint8_t rr[] = { 0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7 };
    memcpy(out + len, rr, sizeof rr);
    return len + sizeof rr;
}

static void *serve_udp(void *arg)
{
    struct fake_server *s = arg;
    uint8_t q[600], a[700];
    struct sockaddr_storage from;
    for (;;) {
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s->udp, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
        if (n < 12)
            return NULL;
        int seen = s->udp_seen++;
        if (s->mode == FAKE_SILENT_ONCE && seen == 0)
            continue;
        size_t alen = make_answer(q, (size_t)n, a, s->mode == FAKE_TRUNCATE ? DNS_FLAG_TC : 0);
        if (s->mode == FAKE_WRONG_ID_FIRST && seen == 0) {
            uint8_t wrong[700];
            memcpy(wrong, a, alen);
            wrong[0] ^= 0xFF;
            sendto(s->udp, wrong, alen, 0, (struct sockaddr *)&from, fl);
        }
        if (s->mode == FAKE_GARBAGE_FIRST && seen == 0)
            sendto(s->udp, a, 20, 0, (struct sockaddr *)&from, fl);
        if (s->mode == FAKE_TRUNCATE)
            alen = n;                                 /* truncated: no answer RR */
        if (s->mode == FAKE_TRUNCATE)
            a[7] = 0;
        sendto(s->udp, a, alen, 0, (struct sockaddr *)&from, fl);
    }
}

static void *serve_tcp(void *arg)
{
    struct fake_server *s = arg;
    int c = accept(s->tcp, NULL, NULL);
    if (c < 0)
        return NULL;
    uint8_t q[2 + 1200], a[2 + 1300];
    size_t got = 0;
    while (got < 2 || got < 2u + (size_t)(q[0] << 8 | q[1])) {
        ssize_t n = read(c, q + got, sizeof q - got);
        if (n <= 0) {
            close(c);
            return NULL;
        }
        got += (size_t)n;
    }
    size_t alen = make_answer(q + 2, got - 2, a + 2, 0);
    a[0] = (uint8_t)(alen >> 8);
    a[1] = (uint8_t)alen;
    if (write(c, a, alen + 2) < 0)
        perror("fake tcp write");
    close(c);
    return NULL;
}

/* UDP and TCP on the same loopback port (the kernel picks it; retried when the TCP side of
 * that port happens to be taken). */
static int fake_open(struct fake_server *s, int mode, int with_tcp)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        memset(s, 0, sizeof *s);
        s->mode = mode;
        s->tcp = -1;
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        s->udp = socket(AF_INET, SOCK_DGRAM, 0);
        socklen_t sl = sizeof sa;
        if (bind(s->udp, (struct sockaddr *)&sa, sizeof sa) < 0 ||
            getsockname(s->udp, (struct sockaddr *)&sa, &sl) < 0) {
            close(s->udp);
            continue;
        }
        s->port = ntohs(sa.sin_port);
        if (!with_tcp)
            return 0;
        s->tcp = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(s->tcp, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(s->tcp, 4) == 0)
            return 0;
        close(s->tcp);
        close(s->udp);
    }
    return -1;
}

static int client_query(uint16_t port, const char *qname, size_t padding, int timeout_ms,
                        struct dns_message *m, uint8_t *resp, size_t respcap)
{
    struct dns_client c = { .timeout_ms = timeout_ms, .udp_tries = 2 };
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%u", port);
    if (dns_server_parse(&c.server, server, err, sizeof err) < 0)
        return -2;
    uint8_t msg[1200];
    struct dns_name n = name_of(qname);
    int len = dns_build_query(msg, sizeof msg, dns_client_new_id(), &n, DNS_TYPE_A, 0);
    if (padding) {                                    /* an OPT-less filler: a big question */
        msg[11] = 1;                                  /* ARCOUNT: one unknown RR of padding */
        static const uint8_t head[] = { 0, 0, 99, 0, 1, 0, 0, 0, 0 };
        memcpy(msg + len, head, sizeof head);
        msg[len + 9] = (uint8_t)(padding >> 8);
        msg[len + 10] = (uint8_t)padding;
        memset(msg + len + 11, 'p', padding);
        len += 11 + (int)padding;
    }
    return dns_client_exchange(&c, msg, (size_t)len, sizeof msg, resp, respcap, m, err,
                               sizeof err);
}

static void run_fake(int mode, int with_tcp, size_t padding, int want_rc, int want_udp_seen)
{
    struct fake_server s;
    if (fake_open(&s, mode, with_tcp) < 0) {
        CHECK(!"fake server could not bind");
        return;
    }
    pthread_t tu, tt;
    pthread_create(&tu, NULL, serve_udp, &s);
    if (with_tcp)
        pthread_create(&tt, NULL, serve_tcp, &s);
    uint8_t resp[DNS_WIRE_MSG_MAX];
    struct dns_message m;
    int rc = client_query(s.port, "www.example.com", padding, 1000, &m, resp, sizeof resp);
    CHECK_INT(rc, want_rc);
    if (rc == 0) {
        CHECK_INT(m.count[DNS_SECTION_ANSWER], 1);
        CHECK(!(m.flags & DNS_FLAG_TC));
    } else {
        fprintf(stderr, "  (client said: %s)\n", err);
    }
    shutdown(s.udp, SHUT_RDWR);
    /* recvfrom on a UDP socket is woken by a zero-length datagram to itself */
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(s.port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int kick = socket(AF_INET, SOCK_DGRAM, 0);
    sendto(kick, "", 0, 0, (struct sockaddr *)&sa, sizeof sa);
    close(kick);
    pthread_join(tu, NULL);
    if (with_tcp) {
        if (rc != 0 || padding == 0) {
            int poke = socket(AF_INET, SOCK_STREAM, 0);  /* unblock accept when unused */
            connect(poke, (struct sockaddr *)&sa, sizeof sa);
            close(poke);
        }
        pthread_join(tt, NULL);
        close(s.tcp);
    }
    if (want_udp_seen >= 0)
        CHECK_INT(s.udp_seen, want_udp_seen);
    close(s.udp);
}

static void test_client(void)
{
    run_fake(FAKE_ANSWER, 0, 0, 0, 1);
    run_fake(FAKE_SILENT_ONCE, 0, 0, 0, 2);          /* first try lost: retried */
    run_fake(FAKE_WRONG_ID_FIRST, 0, 0, 0, 1);       /* wrong ID dropped, right one taken */
    run_fake(FAKE_GARBAGE_FIRST, 0, 0, 0, 1);        /* malformed datagram dropped */
    run_fake(FAKE_TRUNCATE, 1, 0, 0, 1);             /* TC: asked again over TCP */
    run_fake(FAKE_ANSWER, 1, 600, 0, 0);             /* > 512 octets: TCP straight away */

    /* Nobody answers: the message names the server, the timeout and the tries. */
    struct fake_server s;
    if (fake_open(&s, FAKE_ANSWER, 0) == 0) {
        uint8_t resp[512];
        struct dns_message m;
        CHECK_INT(client_query(s.port, "a.example", 0, 100, &m, resp, sizeof resp), -1);
        char want[96];
        snprintf(want, sizeof want, "127.0.0.1:%u: timed out after 100 ms (2 tries over UDP)",
                 s.port);
        CHECK_STR(err, want);
        close(s.udp);
        /* The port is closed now: ICMP port unreachable comes back as refused. */
        CHECK_INT(client_query(s.port, "a.example", 0, 1000, &m, resp, sizeof resp), -1);
        CHECK(strstr(err, "connection refused") != NULL);
    }
}

static void test_server_parse(void)
{
    struct dns_server s;
    CHECK_INT(dns_server_parse(&s, "192.0.2.53:53", err, sizeof err), 0);
    CHECK_STR(s.text, "192.0.2.53:53");
    CHECK_INT(s.addr.ss_family, AF_INET);
    CHECK_INT(dns_server_parse(&s, "192.0.2.53", err, sizeof err), 0);
    CHECK_STR(s.text, "192.0.2.53:53");
    CHECK_INT(dns_server_parse(&s, "[2001:db8::53]:5353", err, sizeof err), 0);
    CHECK_STR(s.text, "[2001:db8::53]:5353");
    CHECK_INT(s.addr.ss_family, AF_INET6);
    CHECK_INT(dns_server_parse(&s, "2001:db8::53", err, sizeof err), 0);
    CHECK_STR(s.text, "[2001:db8::53]:53");
    CHECK_INT(dns_server_parse(&s, "[::1]", err, sizeof err), 0);
    CHECK_INT(dns_server_parse(&s, "ns1.example.com:53", err, sizeof err), -1);
    CHECK(strstr(err, "not an IP address") != NULL);
    CHECK_INT(dns_server_parse(&s, "192.0.2.53:0", err, sizeof err), -1);
    CHECK_INT(dns_server_parse(&s, "192.0.2.53:65536", err, sizeof err), -1);
    CHECK_INT(dns_server_parse(&s, "192.0.2.53:", err, sizeof err), -1);
    CHECK_INT(dns_server_parse(&s, "192.0.2.53:5x", err, sizeof err), -1);
    CHECK_INT(dns_server_parse(&s, "[::1]x", err, sizeof err), -1);
    CHECK_INT(dns_server_parse(&s, "[::1", err, sizeof err), -1);
    CHECK_INT(dns_server_parse(&s, "", err, sizeof err), -1);
    CHECK(dns_client_new_id() != dns_client_new_id());
}

int main(void)
{
    test_name_from_text();
    test_name_to_text();
    test_name_compare();
    test_rcode_and_type_names();
    test_rdata();
    test_query_round_trip();
    test_update_every_form();
    test_update_refusals();
    test_parse_response();
    test_compression_attacks();
    test_malformed_records();
    test_mutations();
    test_server_parse();
    test_client();
    return check_summary("test_dns_wire");
}
