/*
 * test_http1_parser.c - the HTTP/1.1 parser: valid heads, every smuggling vector we refuse,
 * limits, response framing, and the chunked scanner, each also fed in pieces.
 */
#include "http1_parser.h"

#include "check.h"

#include <stdlib.h>

#define S(lit) lit, sizeof(lit) - 1       /* a literal with its length, NULs included */
#define MAX_HEADERS 16
#define MAX_HEAD 4096

static struct http1_header headers[MAX_HEADERS];

static int parse_request(const char *buf, size_t len, struct http1_request *req)
{
    req->headers = headers;
    return http1_parse_request(buf, len, req, MAX_HEADERS, MAX_HEAD);
}

static int parse_response(const char *buf, size_t len, struct http1_response *resp, int was_head)
{
    resp->headers = headers;
    return http1_parse_response(buf, len, resp, MAX_HEADERS, MAX_HEAD, was_head);
}

static int span_is(const char *p, size_t n, const char *want)
{
    return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* Feeding a request a byte at a time: every proper prefix must give INCOMPLETE, or for bad
 * input possibly the same error early, or for pipelined input the first head's length once it
 * is all there. (The whole buffer is checked by the caller.) */
static void check_request_prefixes(const char *buf, size_t len, int want_rc, int want_status,
                                   const char *label)
{
    struct http1_request req;
    for (size_t i = 0; i < len; i++) {
        char *copy = malloc(i ? i : 1);   /* exact-size copy: ASan catches reads past the end */
        memcpy(copy, buf, i);
        int rc = parse_request(copy, i, &req);
        int ok = rc == HTTP1_INCOMPLETE
              || (want_rc == HTTP1_ERROR && rc == HTTP1_ERROR && req.error_status == want_status)
              || (want_rc > 0 && rc == want_rc && (size_t)want_rc <= i);
        if (!ok)
            fprintf(stderr, "prefix %zu of %s: rc %d status %d\n", i, label, rc, req.error_status);
        free(copy);
        CHECK(ok);
    }
}

/* ---- valid requests ---- */

static void test_simple_get(void)
{
    struct http1_request req;
    static const char in[] = "GET /index.html?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\n"
                             "User-Agent: t\r\nAccept:  */*  \t\r\nX-Empty:\r\n\r\n";
    CHECK_INT(parse_request(in, sizeof in - 1, &req), sizeof in - 1);
    CHECK(span_is(req.method, req.method_len, "GET"));
    CHECK(span_is(req.target, req.target_len, "/index.html?x=1&y=2"));
    CHECK(span_is(req.path, req.path_len, "/index.html"));
    CHECK(span_is(req.host, req.host_len, "example.com"));
    CHECK_INT(req.minor_version, 1);
    CHECK_INT(req.num_headers, 4);
    CHECK(span_is(headers[2].name, headers[2].name_len, "Accept"));
    CHECK(span_is(headers[2].value, headers[2].value_len, "*/*"));
    CHECK_INT(headers[3].value_len, 0);
    CHECK_INT(req.body, HTTP1_BODY_NONE);
    CHECK_INT(req.flags, HTTP1_F_HAS_HOST);
}

static void test_methods(void)
{
    static const char *const methods[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                           "OPTIONS", "TRACE", "M-SEARCH", "PROPFIND", "X!#$%&'*+.^_`|~1" };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        char buf[256];
        int n = snprintf(buf, sizeof buf, "%s /a HTTP/1.1\r\nHost: h\r\n\r\n", methods[i]);
        struct http1_request req;
        CHECK_INT(parse_request(buf, (size_t)n, &req), n);
        CHECK(span_is(req.method, req.method_len, methods[i]));
    }
}

struct target_case {
    const char *line;       /* request line without CRLF */
    const char *path, *host;
};

static void test_targets(void)
{
    static const struct target_case cases[] = {
        { "GET / HTTP/1.1", "/", "h" },
        { "GET /?q HTTP/1.1", "/", "h" },
        { "GET /a/b/c?d=/e HTTP/1.1", "/a/b/c", "h" },
        { "GET /%7Euser;p=1 HTTP/1.1", "/%7Euser;p=1", "h" },
        { "GET http://Example.COM:8080/p/q?r HTTP/1.1", "/p/q", "Example.COM:8080" },
        { "GET HTTP://a.b HTTP/1.1", "/", "a.b" },
        { "GET https://a.b?x=/y HTTP/1.1", "/", "a.b" },
        { "GET http://[::1]:8080/v6 HTTP/1.1", "/v6", "[::1]:8080" },
        { "OPTIONS * HTTP/1.1", "/", "h" },
        { "CONNECT backend.local:443 HTTP/1.1", "/", "h" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[256];
        int n = snprintf(buf, sizeof buf, "%s\r\nHost: h\r\n\r\n", cases[i].line);
        struct http1_request req;
        int rc = parse_request(buf, (size_t)n, &req);
        if (rc != n)
            fprintf(stderr, "target case %s: rc %d (%s)\n", cases[i].line, rc,
                    req.error_reason ? req.error_reason : "");
        CHECK_INT(rc, n);
        CHECK(span_is(req.path, req.path_len, cases[i].path));
        CHECK(span_is(req.host, req.host_len, cases[i].host));
        CHECK(req.flags & HTTP1_F_HAS_HOST);
    }
}

static void test_connection_flags(void)
{
    static const struct { const char *in; unsigned flags; int minor; } cases[] = {
        { "GET / HTTP/1.0\r\n\r\n", HTTP1_F_CONN_CLOSE, 0 },
        { "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", HTTP1_F_CONN_KEEPALIVE, 0 },
        { "GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
          HTTP1_F_CONN_KEEPALIVE | HTTP1_F_HAS_HOST, 0 },
        { "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
          HTTP1_F_CONN_CLOSE | HTTP1_F_HAS_HOST, 1 },
        { "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
          HTTP1_F_CONN_KEEPALIVE | HTTP1_F_CONN_UPGRADE | HTTP1_F_UPGRADE | HTTP1_F_HAS_HOST, 1 },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n",
          HTTP1_F_EXPECT_CONTINUE | HTTP1_F_HAS_HOST, 1 },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: something-else\r\n\r\n",
          HTTP1_F_HAS_HOST, 1 },
        { "GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", HTTP1_F_HAS_HOST, 1 },
        { "POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\nUpgrade: x\r\n\r\n",
          HTTP1_F_CONN_CLOSE, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http1_request req;
        size_t n = strlen(cases[i].in);
        CHECK_INT(parse_request(cases[i].in, n, &req), n);
        CHECK_INT(req.flags, cases[i].flags);
        CHECK_INT(req.minor_version, cases[i].minor);
    }
}

static void test_body_framing(void)
{
    static const struct { const char *fields; enum http1_body_kind body; uint64_t cl; } cases[] = {
        { "", HTTP1_BODY_NONE, 0 },
        { "Content-Length: 0\r\n", HTTP1_BODY_LENGTH, 0 },
        { "Content-Length: 42\r\n", HTTP1_BODY_LENGTH, 42 },
        { "Content-Length: 007\r\n", HTTP1_BODY_LENGTH, 7 },
        { "Content-Length: 5, 5\r\n", HTTP1_BODY_LENGTH, 5 },
        { "Content-Length: 5\r\ncontent-length: 5\r\n", HTTP1_BODY_LENGTH, 5 },
        { "Content-Length: 9223372036854775807\r\n", HTTP1_BODY_LENGTH, 9223372036854775807ull },
        { "Transfer-Encoding: chunked\r\n", HTTP1_BODY_CHUNKED, 0 },
        { "Transfer-Encoding: CHUNKED\r\n", HTTP1_BODY_CHUNKED, 0 },
        { "Transfer-Encoding: gzip, chunked\r\n", HTTP1_BODY_CHUNKED, 0 },
        { "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", HTTP1_BODY_CHUNKED, 0 },
        { "Transfer-Encoding: ,chunked,\r\n", HTTP1_BODY_CHUNKED, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[512];
        int n = snprintf(buf, sizeof buf, "POST /u HTTP/1.1\r\nHost: h\r\n%s\r\nBODY", cases[i].fields);
        struct http1_request req;
        CHECK_INT(parse_request(buf, (size_t)n, &req), n - 4);
        CHECK_INT(req.body, cases[i].body);
        CHECK_INT(req.content_length, cases[i].cl);
    }
}

static void test_pipelined_and_leading_crlf(void)
{
    static const char two[] = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    static const char leading[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    struct http1_request req;
    int first = parse_request(two, sizeof two - 1, &req);
    CHECK_INT(first, strlen("GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"));
    CHECK(span_is(req.path, req.path_len, "/1"));
    CHECK_INT(parse_request(two + first, sizeof two - 1 - (size_t)first, &req), first);
    CHECK(span_is(req.path, req.path_len, "/2"));
    CHECK_INT(parse_request(leading, sizeof leading - 1, &req), sizeof leading - 1);
    CHECK(span_is(req.method, req.method_len, "GET"));
    check_request_prefixes(two, sizeof two - 1, first, 0, "pipelined");
    check_request_prefixes(leading, sizeof leading - 1, sizeof leading - 1, 0, "leading CRLF");
}

static void test_obs_text_and_values(void)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9 \t au lait\r\n\r\n";
    struct http1_request req;
    CHECK_INT(parse_request(in, sizeof in - 1, &req), sizeof in - 1);
    CHECK(span_is(headers[1].value, headers[1].value_len, "caf\xe9 \t au lait"));
}

/* ---- refused requests ---- */

struct bad_request {
    const char *in;
    size_t len;
    int status;
};

static const struct bad_request bad_requests[] = {
    /* smuggling: conflicting framing */
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ,5\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunkedx\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked chunked\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: br, chunked\r\n\r\n"), 501 },
    { S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400 },
    /* Content-Length syntax */
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5a\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n"), 400 },
    { S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 400 },
    /* field syntax */
    { S("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\nNo-Colon\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\nX(A): v\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\nX\0A: a\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n"), 400 },
    /* bare LF line endings (refused everywhere) */
    { S("GET / HTTP/1.1\nHost: h\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h\r\n\n"), 400 },
    { S("GET / HTTP/1.1\nHost: h\n\n"), 400 },
    { S("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    /* Host */
    { S("GET / HTTP/1.1\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: user@h\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h:80x\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h/x\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: h%zz\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), 400 },
    { S("GET http://h/ HTTP/1.1\r\n\r\n"), 400 },
    /* request line */
    { S("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400 },
    { S("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET /\r\nHost: h\r\n\r\n"), 400 },
    { S("GET / \r\nHost: h\r\n\r\n"), 400 },
    { S(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET /\x80 HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET /#frag HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("CONNECT h: HTTP/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET / http/1.1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), 400 },
    { S("GET / HTTP/1\r\nHost: h\r\n\r\n"), 400 },
    { S("GET / HTTP/1.1\rHost: h\r\n\r\n"), 400 },
    { S("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), 505 },
    { S("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505 },
    { S("GET / HTTP/0.9\r\nHost: h\r\n\r\n"), 505 },
    { S("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), 400 },   /* TLS hello on the plain port */
};

static void test_bad_requests(void)
{
    for (size_t i = 0; i < sizeof bad_requests / sizeof bad_requests[0]; i++) {
        const struct bad_request *b = &bad_requests[i];
        struct http1_request req;
        int rc = parse_request(b->in, b->len, &req);
        if (rc != HTTP1_ERROR || req.error_status != b->status)
            fprintf(stderr, "bad request #%zu: rc %d status %d, want %d\n", i, rc,
                    req.error_status, b->status);
        CHECK_INT(rc, HTTP1_ERROR);
        CHECK_INT(req.error_status, b->status);
        CHECK(req.error_reason != NULL && req.error_reason[0] != '\0');
        char label[32];
        snprintf(label, sizeof label, "bad request #%zu", i);
        check_request_prefixes(b->in, b->len, HTTP1_ERROR, b->status, label);
    }
}

/* A bad byte at every position of a long value or target, so it lands in every lane of the
 * eight-byte fast path and in the byte-wise tail; harmless bytes likewise must pass. */
static void test_every_position(void)
{
    static const char bad_value_bytes[] = { '\0', '\x01', '\x1f', '\x7f', '\r', '\n' };
    static const char good_value_bytes[] = { '\t', ' ', '\x80', '\xff', '"', '~' };
    static const char bad_target_bytes[] = { '\0', '\t', '\x7f', '\x80', '\xff', '#', '\r' };
    char buf[256];
    struct http1_request req;
    for (size_t pos = 0; pos < 40; pos++) {
        for (size_t k = 0; k < sizeof bad_value_bytes; k++) {
            int n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX-Long: a%040d\r\n\r\n", 0);
            buf[33 + pos] = bad_value_bytes[k];
            CHECK_INT(parse_request(buf, (size_t)n, &req), HTTP1_ERROR);
            CHECK_INT(req.error_status, 400);
        }
        for (size_t k = 0; k < sizeof good_value_bytes; k++) {
            int n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX-Long: a%040d\r\n\r\n", 0);
            buf[33 + pos] = good_value_bytes[k];
            CHECK_INT(parse_request(buf, (size_t)n, &req), n);
            int leading_ows = pos == 0 && (good_value_bytes[k] == ' ' || good_value_bytes[k] == '\t');
            CHECK_INT(headers[1].value_len, leading_ows ? 40 : 41);
        }
        for (size_t k = 0; k < sizeof bad_target_bytes; k++) {
            int n = snprintf(buf, sizeof buf, "GET /%040d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
            buf[5 + pos] = bad_target_bytes[k];
            CHECK_INT(parse_request(buf, (size_t)n, &req), HTTP1_ERROR);
            CHECK_INT(req.error_status, 400);
        }
    }
}

/* Every byte value in a field name, a field value, a method and a target, against the
 * grammar written out independently of the parser's class table. */
static int is_tchar_ref(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void test_every_byte(void)
{
    char buf[128];
    struct http1_request req;
    for (int c = 0; c < 256; c++) {
        int n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nXaY: v\r\n\r\n");
        buf[26] = (char)c;
        int rc = parse_request(buf, (size_t)n, &req);
        CHECK_INT(rc, is_tchar_ref(c) || c == ':' ? n : HTTP1_ERROR);   /* "X:Y: v" is fine */

        n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX: vav\r\n\r\n");
        buf[29] = (char)c;
        int value_ok = (c >= 0x20 && c != 0x7f) || c == '\t';
        CHECK_INT(parse_request(buf, (size_t)n, &req), value_ok ? n : HTTP1_ERROR);

        n = snprintf(buf, sizeof buf, "GaT / HTTP/1.1\r\nHost: h\r\n\r\n");
        buf[1] = (char)c;
        CHECK_INT(parse_request(buf, (size_t)n, &req), is_tchar_ref(c) ? n : HTTP1_ERROR);

        n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: hah\r\n\r\n");
        buf[23] = (char)c;
        int host_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                   || (c != 0 && strchr("-._~!$&'()*+,;=", c) != NULL);
        CHECK_INT(parse_request(buf, (size_t)n, &req), host_ok ? n : HTTP1_ERROR);

        n = snprintf(buf, sizeof buf, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
        buf[5] = (char)c;
        int target_ok = c > 0x20 && c < 0x7f && c != '#';
        CHECK_INT(parse_request(buf, (size_t)n, &req), target_ok ? n : HTTP1_ERROR);
    }
}

static void test_incremental_valid(void)
{
    static const char in[] = "POST http://h.example/upload?x HTTP/1.1\r\nHost: ignored\r\n"
                             "Content-Length: 10\r\nConnection: keep-alive\r\n\r\n";
    check_request_prefixes(in, sizeof in - 1, sizeof in - 1, 0, "absolute-form POST");
    struct http1_request req;
    CHECK_INT(parse_request(in, sizeof in - 1, &req), sizeof in - 1);
    CHECK(span_is(req.host, req.host_len, "h.example"));
    CHECK(span_is(req.path, req.path_len, "/upload"));
    CHECK_INT(req.content_length, 10);
}

/* ---- limits ---- */

static void test_limits(void)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";   /* 40 bytes */
    struct http1_header small[3];
    struct http1_request req;
    req.headers = small;
    CHECK_INT(http1_parse_request(in, sizeof in - 1, &req, 3, 4096), sizeof in - 1);
    CHECK_INT(req.num_headers, 3);
    req.headers = small;
    CHECK_INT(http1_parse_request(in, sizeof in - 1, &req, 2, 4096), HTTP1_ERROR);
    CHECK_INT(req.error_status, 431);
    /* exactly at the limit is fine; one byte less is 431 */
    req.headers = small;
    CHECK_INT(http1_parse_request(in, sizeof in - 1, &req, 3, sizeof in - 1), sizeof in - 1);
    req.headers = small;
    CHECK_INT(http1_parse_request(in, sizeof in - 1, &req, 3, sizeof in - 2), HTTP1_ERROR);
    CHECK_INT(req.error_status, 431);
    /* incomplete: INCOMPLETE below the limit, 431 once the buffer reaches it */
    req.headers = small;
    CHECK_INT(http1_parse_request(in, 30, &req, 3, 31), HTTP1_INCOMPLETE);
    req.headers = small;
    CHECK_INT(http1_parse_request(in, 31, &req, 3, 31), HTTP1_ERROR);
    CHECK_INT(req.error_status, 431);
    /* a pipelined request behind a head that fits does not count */
    static const char two[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    req.headers = small;
    CHECK_INT(http1_parse_request(two, sizeof two - 1, &req, 3, 30), (sizeof two - 1) / 2);
    /* a long header value */
    char big[8192];
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: h\r\nX: %05000d\r\n\r\n", 0);
    req.headers = small;
    CHECK_INT(http1_parse_request(big, (size_t)n, &req, 3, 4096), HTTP1_ERROR);
    CHECK_INT(req.error_status, 431);
    req.headers = small;
    CHECK_INT(http1_parse_request(big, (size_t)n, &req, 3, 8192), n);
}

/* ---- responses ---- */

struct response_case {
    const char *in;
    int was_head;
    int status;
    enum http1_body_kind body;
    uint64_t cl;
    unsigned flags;
};

static void test_responses(void)
{
    static const struct response_case cases[] = {
        { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 0, 200, HTTP1_BODY_LENGTH, 5, 0 },
        { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 1, 200, HTTP1_BODY_NONE, 0, 0 },
        { "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 0, 204, HTTP1_BODY_NONE, 0, 0 },
        { "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 304, HTTP1_BODY_NONE, 0, 0 },
        { "HTTP/1.1 100 Continue\r\n\r\n", 0, 100, HTTP1_BODY_NONE, 0, 0 },
        { "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 0,
          101, HTTP1_BODY_NONE, 0, HTTP1_F_CONN_UPGRADE | HTTP1_F_UPGRADE },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 200, HTTP1_BODY_CHUNKED, 0, 0 },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, 200, HTTP1_BODY_CHUNKED, 0, 0 },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, 200, HTTP1_BODY_UNTIL_CLOSE, 0,
          HTTP1_F_CONN_CLOSE },
        { "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 200,
          HTTP1_BODY_CHUNKED, 0, HTTP1_F_CONN_CLOSE },
        { "HTTP/1.1 200 OK\r\n\r\n", 0, 200, HTTP1_BODY_UNTIL_CLOSE, 0, HTTP1_F_CONN_CLOSE },
        { "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", 0, 404, HTTP1_BODY_LENGTH, 0, 0 },
        { "HTTP/1.1 200 \r\nContent-Length: 1, 1\r\n\r\n", 0, 200, HTTP1_BODY_LENGTH, 1, 0 },
        { "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", 0, 200, HTTP1_BODY_LENGTH, 2, HTTP1_F_CONN_CLOSE },
        { "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", 0, 200,
          HTTP1_BODY_LENGTH, 2, HTTP1_F_CONN_KEEPALIVE },
        { "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", 0, 503,
          HTTP1_BODY_LENGTH, 2, HTTP1_F_CONN_CLOSE },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct response_case *c = &cases[i];
        size_t n = strlen(c->in);
        struct http1_response resp;
        char buf[512];
        memcpy(buf, c->in, n);
        memcpy(buf + n, "body!", 5);   /* the body behind the head is not part of it */
        int rc = parse_response(buf, n + 5, &resp, c->was_head);
        if (rc != (int)n)
            fprintf(stderr, "response #%zu: rc %d (%s)\n", i, rc, resp.error_reason ? resp.error_reason : "");
        CHECK_INT(rc, n);
        CHECK_INT(resp.status, c->status);
        CHECK_INT(resp.body, c->body);
        CHECK_INT(resp.content_length, c->cl);
        CHECK_INT(resp.flags, c->flags);
        for (size_t k = 0; k < n; k++)
            CHECK_INT(parse_response(buf, k, &resp, c->was_head), HTTP1_INCOMPLETE);
    }
    struct http1_response resp;
    static const char ok[] = "HTTP/1.1 200 Very OK\r\n\r\n";
    CHECK_INT(parse_response(ok, sizeof ok - 1, &resp, 0), sizeof ok - 1);
    CHECK(span_is(resp.reason, resp.reason_len, "Very OK"));
}

static void test_bad_responses(void)
{
    static const struct { const char *in; size_t len; } cases[] = {
        { S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n") },
        { S("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") },
        { S("HTTP/1.1 20 OK\r\n\r\n") },
        { S("HTTP/1.1 600 Nope\r\n\r\n") },
        { S("HTTP/1.1 099 Nope\r\n\r\n") },
        { S("HTTP/1.1 2000 OK\r\n\r\n") },
        { S("HTTP/1.1  200 OK\r\n\r\n") },
        { S("HTTP/2 200 OK\r\n\r\n") },
        { S("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n") },
        { S("HTTP/1.1 200 O\x01K\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nX : a\r\n\r\n") },
        { S("\r\nHTTP/1.1 200 OK\r\n\r\n") },
        { S("SSH-2.0-OpenSSH_9.2\r\n") },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http1_response resp;
        int rc = parse_response(cases[i].in, cases[i].len, &resp, 0);
        if (rc != HTTP1_ERROR)
            fprintf(stderr, "bad response #%zu: rc %d\n", i, rc);
        CHECK_INT(rc, HTTP1_ERROR);
        CHECK(resp.error_reason != NULL);
    }
    struct http1_response resp;
    static const char big[] = "HTTP/1.1 200 OK\r\nX: 0123456789\r\n\r\n";
    resp.headers = headers;
    CHECK_INT(http1_parse_response(big, sizeof big - 1, &resp, 4, 20, 0), HTTP1_ERROR);
    resp.headers = headers;
    CHECK_INT(http1_parse_response(big, 20, &resp, 4, 20, 0), HTTP1_ERROR);
    resp.headers = headers;
    CHECK_INT(http1_parse_response(big, sizeof big - 1, &resp, 0, 4096, 0), HTTP1_ERROR);
}

/* ---- chunked scanner ---- */

struct chunked_case {
    const char *in;
    size_t len;
    long consumed;        /* HTTP1_ERROR, or where the body ends */
    uint64_t body_bytes;
};

static const struct chunked_case chunked_cases[] = {
    { S("0\r\n\r\n"), 5, 0 },
    { S("5\r\nhello\r\n0\r\n\r\n"), 15, 5 },
    { S("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n"), 26, 11 },
    { S("A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"), 35, 20 },
    { S("0005\r\nhello\r\n000\r\n\r\n"), 20, 5 },
    { S("5;name\r\nhello\r\n0;last=yes\r\n\r\n"), 29, 5 },
    { S("5 ; a = b ;c=\"q \\\" ;x\"\r\nhello\r\n0\r\n\r\n"), 36, 5 },
    { S("0\r\nX-Checksum: abc\r\nX-Other:\r\n\r\n"), 32, 0 },
    { S("1\r\n\r\r\n0\r\n\r\n"), 11, 1 },             /* data bytes are not framing */
    /* refused */
    { S("0x10\r\n"), HTTP1_ERROR, 0 },
    { S("-1\r\n"), HTTP1_ERROR, 0 },
    { S("+1\r\n"), HTTP1_ERROR, 0 },
    { S(" 1\r\n"), HTTP1_ERROR, 0 },
    { S("\r\n"), HTTP1_ERROR, 0 },
    { S("g\r\n"), HTTP1_ERROR, 0 },
    { S("fffffffffffffffffff\r\n"), HTTP1_ERROR, 0 },
    { S("4000000000000000\r\n"), HTTP1_ERROR, 0 },
    { S("10000000000000000\r\n"), HTTP1_ERROR, 0 },
    { S("5\r\nhelloX\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5\r\nhello\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5\r\nhelloX\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5\r\nhello\rX0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("0\r\nX: v\rX\r\n"), HTTP1_ERROR, 0 },
    { S("0\r\n\rX"), HTTP1_ERROR, 0 },
    { S("5;a\rX\nhello\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5\r\nhello\r0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5\nhello\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5\r\rhello\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5 \r\nhello\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5;\r\nhello\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5;a=\r\nhello\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5;a=\"x\r\nhello\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5;a b\r\nhello\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5;a=b c\r\nhello\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("5;a\0\r\nhello\r\n0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("0\r\nX : v\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("0\r\n X: v\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("0\r\nX: v\0\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("0\r\nX: v\n\r\n"), HTTP1_ERROR, 0 },
    { S("0\r\nNoColon\r\n\r\n"), HTTP1_ERROR, 0 },
    { S("0\r\n\n"), HTTP1_ERROR, 0 },
    { S("0\r\n\r\r"), HTTP1_ERROR, 0 },
};

/* Feeds buf in two pieces split at `split`; returns the total consumed or HTTP1_ERROR. */
static long scan_split(const char *buf, size_t len, size_t split, struct http1_chunked *c)
{
    http1_chunked_init(c);
    long a = http1_chunked_scan(c, buf, split);
    if (a < 0)
        return a;
    if (c->done)
        return a;
    if ((size_t)a != split)
        return -100;   /* fewer than offered without being done breaks the contract */
    long b = http1_chunked_scan(c, buf + split, len - split);
    return b < 0 ? b : a + b;
}

static void test_chunked(void)
{
    for (size_t i = 0; i < sizeof chunked_cases / sizeof chunked_cases[0]; i++) {
        const struct chunked_case *t = &chunked_cases[i];
        struct http1_chunked c;
        for (size_t split = 0; split <= t->len; split++) {
            long rc = scan_split(t->in, t->len, split, &c);
            if (rc != t->consumed)
                fprintf(stderr, "chunked #%zu split %zu: %ld, want %ld\n", i, split, rc, t->consumed);
            CHECK_INT(rc, t->consumed);
            if (t->consumed >= 0) {
                CHECK_INT(c.done, 1);
                CHECK_INT(c.body_bytes, t->body_bytes);
            }
        }
        /* one byte at a time */
        http1_chunked_init(&c);
        long total = 0, rc = 0;
        for (size_t k = 0; k < t->len && !c.done; k++) {
            rc = http1_chunked_scan(&c, t->in + k, 1);
            if (rc < 0)
                break;
            total += rc;
        }
        CHECK_INT(rc < 0 ? rc : total, t->consumed);
        if (t->consumed < 0) {   /* an error sticks */
            CHECK_INT(http1_chunked_scan(&c, "0\r\n\r\n", 5), HTTP1_ERROR);
        } else {                 /* and so does done */
            CHECK_INT(http1_chunked_scan(&c, "0\r\n\r\n", 5), 0);
        }
    }
}

static void test_chunked_limits(void)
{
    struct http1_chunked c;
    /* largest size accepted: 2^62 - 1; it streams without buffering */
    http1_chunked_init(&c);
    CHECK_INT(http1_chunked_scan(&c, S("3fffffffffffffff\r\n")), 18);
    static char data[65536];
    CHECK_INT(http1_chunked_scan(&c, data, sizeof data), (long)sizeof data);
    CHECK_INT(c.body_bytes, sizeof data);
    CHECK_INT(c.done, 0);
    /* a trailer line longer than 8 KiB */
    static char trailer[9000];
    memset(trailer, 'a', sizeof trailer);
    memcpy(trailer, "0\r\nX: ", 6);
    http1_chunked_init(&c);
    CHECK_INT(http1_chunked_scan(&c, trailer, sizeof trailer), HTTP1_ERROR);
    /* a chunk-size line padded with extensions past 8 KiB */
    memcpy(trailer, "5;a=", 4);
    http1_chunked_init(&c);
    CHECK_INT(http1_chunked_scan(&c, trailer, sizeof trailer), HTTP1_ERROR);
    /* many short trailer lines add up to more than the trailer section allows */
    http1_chunked_init(&c);
    CHECK_INT(http1_chunked_scan(&c, S("0\r\n")), 3);
    long rc = 0;
    for (int i = 0; i < 20000 && rc >= 0; i++)
        rc = http1_chunked_scan(&c, S("X: y\r\n"));
    CHECK_INT(rc, HTTP1_ERROR);
}

/* ---- helpers ---- */

static void test_helpers(void)
{
    CHECK(http1_value_has_token(S("keep-alive, Upgrade"), "upgrade"));
    CHECK(http1_value_has_token(S("close"), "close"));
    CHECK(!http1_value_has_token(S("upgrades"), "upgrade"));
    CHECK(!http1_value_has_token(S("xclose, keep"), "close"));
    CHECK(!http1_value_has_token(S(""), "close"));
    struct http1_header h = { S("Transfer-Encoding"), S("chunked") };
    CHECK(http1_is_hop_by_hop(&h));
    struct http1_header te = { S("TE"), S("trailers") };
    CHECK(http1_is_hop_by_hop(&te));
    struct http1_header ct = { S("Content-Type"), S("text/plain") };
    CHECK(!http1_is_hop_by_hop(&ct));
    struct http1_header tes = { S("Tes"), S("x") };
    CHECK(!http1_is_hop_by_hop(&tes));
    CHECK(http1_name_is(&ct, "content-type"));
    CHECK(!http1_name_is(&ct, "content-typ"));
}

int main(void)
{
    test_simple_get();
    test_methods();
    test_targets();
    test_connection_flags();
    test_body_framing();
    test_pipelined_and_leading_crlf();
    test_obs_text_and_values();
    test_bad_requests();
    test_every_position();
    test_every_byte();
    test_incremental_valid();
    test_limits();
    test_responses();
    test_bad_responses();
    test_chunked();
    test_chunked_limits();
    test_helpers();
    return check_summary("test_http1_parser");
}
