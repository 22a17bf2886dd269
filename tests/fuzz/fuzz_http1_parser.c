/*
 * fuzz_http1_parser.c - libFuzzer target for the HTTP/1.1 parser.
 *
 * The same input goes through the request parser, the response parser (as a reply to GET and to
 * HEAD) and the chunked scanner, whole and split in two. Beyond "no crash, no sanitizer report"
 * it checks the contracts the proxy relies on: a returned head length fits the buffer and the
 * limit, every pointer handed out lies inside the buffer, errors carry a status and a reason,
 * parsing a longer buffer never changes a finished answer, and the scanner's result does not
 * depend on where the input was split.
 */
#include "http1_parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADERS 32
#define MAX_HEAD 4096

static void require(int cond)
{
    if (!cond)
        abort();
}

static void require_inside(const char *p, size_t n, const uint8_t *data, size_t size)
{
    const char *start = (const char *)data;
    require(p != NULL);
    require(p >= start && p + n <= start + size);
}

/* Bytes a field value may hold: VCHAR, obs-text, and SP/HTAB only between other bytes. */
static void check_value_bytes(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        require(c >= 0x20 || c == '\t');
        require(c != 0x7f);
    }
    if (n)
        require(v[0] != ' ' && v[0] != '\t' && v[n - 1] != ' ' && v[n - 1] != '\t');
}

static void check_headers(const struct http1_header *h, size_t n, size_t max, int head_len,
                          const uint8_t *data)
{
    require(n <= max);
    for (size_t i = 0; i < n; i++) {
        require(h[i].name_len > 0);
        require_inside(h[i].name, h[i].name_len, data, (size_t)head_len);
        require(memchr(h[i].name, ':', h[i].name_len) == NULL);
        if (h[i].value_len)
            require_inside(h[i].value, h[i].value_len, data, (size_t)head_len);
        check_value_bytes(h[i].value, h[i].value_len);
    }
}

static int fuzz_request(const uint8_t *data, size_t size)
{
    struct http1_header headers[MAX_HEADERS];
    struct http1_request req;
    req.headers = headers;
    int rc = http1_parse_request((const char *)data, size, &req, MAX_HEADERS, MAX_HEAD);
    if (rc == HTTP1_ERROR) {
        require(req.error_status == 400 || req.error_status == 431 || req.error_status == 501
                || req.error_status == 505);
        require(req.error_reason != NULL);
        return rc;
    }
    if (rc == HTTP1_INCOMPLETE) {
        require(size < MAX_HEAD);
        return rc;
    }
    require(rc > 0 && (size_t)rc <= size && rc <= MAX_HEAD);
    require_inside(req.method, req.method_len, data, (size_t)rc);
    require_inside(req.target, req.target_len, data, (size_t)rc);
    for (size_t i = 0; i < req.target_len; i++)
        require(req.target[i] > 0x20 && req.target[i] < 0x7f && req.target[i] != '#');
    require(req.path_len > 0 && req.path[0] == '/');
    if (req.flags & HTTP1_F_HAS_HOST)
        require(req.host != NULL);
    require(req.minor_version == 0 || req.minor_version == 1);
    require(req.body != HTTP1_BODY_UNTIL_CLOSE);
    require(req.body == HTTP1_BODY_LENGTH || req.content_length == 0);
    require(req.content_length <= (uint64_t)INT64_MAX);
    check_headers(headers, req.num_headers, MAX_HEADERS, rc, data);
    return rc;
}

/* A finished answer must not change when more bytes follow: the proxy may parse a head that
 * arrived with the start of the next request or the body. */
static void fuzz_request_prefix(const uint8_t *data, size_t size)
{
    int whole = fuzz_request(data, size);
    if (size == 0)
        return;
    size_t cut = data[0] % (size + 1);
    int part = fuzz_request(data, cut);
    if (part >= 0)
        require(whole == part);
    else if (part == HTTP1_ERROR && cut < MAX_HEAD)
        require(whole == HTTP1_ERROR);
}

/* Small limits taken from the input reach the 431 paths at every length. */
static void fuzz_request_limits(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    struct http1_header headers[4];
    struct http1_request req;
    size_t max_headers = data[1] % 5, max_head = (size_t)data[0] * 2;
    req.headers = headers;
    int rc = http1_parse_request((const char *)data, size, &req, max_headers, max_head);
    if (rc > 0) {
        require((size_t)rc <= max_head && (size_t)rc <= size);
        require(req.num_headers <= max_headers);
        check_headers(headers, req.num_headers, max_headers, rc, data);
    } else if (rc == HTTP1_INCOMPLETE) {
        require(size < max_head);
    } else {
        require(rc == HTTP1_ERROR && req.error_status >= 400 && req.error_reason != NULL);
    }
}

static void fuzz_response(const uint8_t *data, size_t size, int was_head)
{
    struct http1_header headers[MAX_HEADERS];
    struct http1_response resp;
    resp.headers = headers;
    int rc = http1_parse_response((const char *)data, size, &resp, MAX_HEADERS, MAX_HEAD, was_head);
    if (rc == HTTP1_ERROR) {
        require(resp.error_reason != NULL);
        return;
    }
    if (rc == HTTP1_INCOMPLETE)
        return;
    require(rc > 0 && (size_t)rc <= size && rc <= MAX_HEAD);
    require(resp.status >= 100 && resp.status <= 599);
    if (resp.reason_len)
        require_inside(resp.reason, resp.reason_len, data, (size_t)rc);
    if (was_head || resp.status < 200 || resp.status == 204 || resp.status == 304)
        require(resp.body == HTTP1_BODY_NONE);
    if (resp.body == HTTP1_BODY_UNTIL_CLOSE)
        require(resp.flags & HTTP1_F_CONN_CLOSE);
    check_headers(headers, resp.num_headers, MAX_HEADERS, rc, data);
}

static long scan_all(const uint8_t *data, size_t size, size_t split, struct http1_chunked *c)
{
    http1_chunked_init(c);
    long a = http1_chunked_scan(c, (const char *)data, split);
    if (a < 0)
        return a;
    require((size_t)a <= split);
    if (c->done)
        return a;
    require((size_t)a == split);
    long b = http1_chunked_scan(c, (const char *)data + split, size - split);
    if (b < 0)
        return b;
    require((size_t)b <= size - split);
    require(c->done || (size_t)b == size - split);
    return a + b;
}

static void fuzz_chunked(const uint8_t *data, size_t size)
{
    struct http1_chunked whole, split;
    long rc = scan_all(data, size, size, &whole);
    require(rc == HTTP1_ERROR || (rc >= 0 && (size_t)rc <= size));
    if (rc >= 0)
        require(whole.body_bytes <= (uint64_t)rc);
    size_t at = size ? (size_t)data[size - 1] * 257 % (size + 1) : 0;
    long rc2 = scan_all(data, size, at, &split);
    require(rc2 == rc);
    if (rc >= 0) {
        require(split.done == whole.done);
        require(split.body_bytes == whole.body_bytes);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copy into an exact-size allocation so ASan sees any read past the end. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    fuzz_request_prefix(copy, size);
    fuzz_request_limits(copy, size);
    fuzz_response(copy, size, 0);
    fuzz_response(copy, size, 1);
    fuzz_chunked(copy, size);
    free(copy);
    return 0;
}
