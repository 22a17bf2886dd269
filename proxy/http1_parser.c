/*
 * http1_parser.c - strict HTTP/1.1 message heads and chunked framing (RFC 9112, RFC 9110).
 *
 * A request head is parsed in one forward pass, line by line; each byte is classified by one
 * lookup in char_class[] and nothing is copied or allocated. When the buffer ends first the
 * answer is HTTP1_INCOMPLETE and the caller simply parses again from the start with more bytes;
 * errors in the bytes already seen are reported at once, so garbage (a TLS hello on the plain
 * port, binary noise) is refused without waiting for a timeout.
 *
 * Everything that could make two HTTP implementations disagree about where a message ends is an
 * error. The choices this file makes where the RFCs leave room:
 *   - Lines end with CRLF only. A bare LF or bare CR anywhere in a head or a chunked body's
 *     framing is an error (400). Empty lines (CRLF) before a request line are skipped (RFC 9112
 *     2.2); they count towards the returned length and max_head_bytes.
 *   - Whitespace before the first field line, before a colon, or starting a line (obs-fold): 400.
 *   - Content-Length: repeated fields and lists ("5, 5") with identical values are collapsed;
 *     differing values, signs, empty elements, or a value above 2^63-1: 400.
 *   - Transfer-Encoding (request): HTTP/1.0, together with Content-Length, a final coding other
 *     than chunked, chunked twice, or transfer-parameters: 400; a coding other than chunked,
 *     gzip, deflate, compress (and their x- aliases): 501.
 *   - Host: exactly one field in HTTP/1.1 (also with absolute-form, whose authority wins);
 *     the value must be uri-host [":" port] with no userinfo.
 *   - Request target: visible ASCII, no '#'; absolute-form only for http/https; "*" only with
 *     OPTIONS; authority-form only (and always) with CONNECT. path is "/" for "*" and CONNECT.
 *   - Expect values other than 100-continue are ignored (passed on), not answered with 417.
 *   - Responses: the reason phrase may be missing ("HTTP/1.1 200\r\n"); status 100-599 only;
 *     HTTP/1.0 response with Transfer-Encoding is refused as faulty framing (RFC 9112 6.1).
 */
#include "http1_parser.h"

#include <limits.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum {
    CC_TCHAR  = 0x01,   /* token character (RFC 9110 5.6.2) */
    CC_VALUE  = 0x02,   /* field-vchar, obs-text, SP, HTAB: may appear inside a field value */
    CC_TARGET = 0x04,   /* visible ASCII: may appear in a request target */
    CC_DIGIT  = 0x08,
    CC_HEX    = 0x10,
    CC_HOST   = 0x20,   /* reg-name: unreserved, sub-delims, '%' */
    CC_QDTEXT = 0x40,   /* inside a quoted-string, besides quoted-pair */
};

static const unsigned char char_class[256] = {
    0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x42,0x00,0x00,0x00,0x00,0x00,0x00, /* 00 */
    0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00, /* 10 */
    0x42,0x67,0x06,0x47,0x67,0x67,0x67,0x67,0x66,0x66,0x67,0x67,0x66,0x67,0x67,0x46, /* 20 */
    0x7f,0x7f,0x7f,0x7f,0x7f,0x7f,0x7f,0x7f,0x7f,0x7f,0x46,0x66,0x46,0x66,0x46,0x46, /* 30 */
    0x46,0x77,0x77,0x77,0x77,0x77,0x77,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67, /* 40 */
    0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x46,0x06,0x46,0x47,0x67, /* 50 */
    0x47,0x77,0x77,0x77,0x77,0x77,0x77,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67, /* 60 */
    0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x67,0x46,0x47,0x46,0x67,0x00, /* 70 */
    0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42, /* 80 */
    0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42, /* 90 */
    0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42, /* a0 */
    0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42, /* b0 */
    0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42, /* c0 */
    0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42, /* d0 */
    0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42, /* e0 */
    0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42,0x42, /* f0 */
};

#define IS(c, cls) (char_class[(unsigned char)(c)] & (cls))

static int is_ows(char c) { return c == ' ' || c == '\t'; }

static unsigned char lower(char c)
{
    unsigned char u = (unsigned char)c;
    return u >= 'A' && u <= 'Z' ? (unsigned char)(u | 0x20) : u;
}

/* s[0..n) equals the lower-case literal lit, ignoring ASCII case. */
static int equals_ci(const char *s, size_t n, const char *lit)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (lit[i] == '\0' || lower(s[i]) != (unsigned char)lit[i])
            return 0;
    return lit[i] == '\0';
}

/* ---- many bytes at a time ----
 * Field values and targets are most of a head. skip_plain() passes over bytes that are plainly
 * fine - printable ASCII from `floor` up, except DEL - sixteen (SSE2) or eight (any 64-bit
 * arithmetic) at a time, and stops at or shortly before the first other byte. The byte-wise
 * table loop after it then finds and judges that byte: HTAB and obs-text are allowed in values
 * but take the slow path, as they are rare. */

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Any byte below n (n <= 0x80)? Bytes with the high bit set never count. */
static int has_byte_below(uint64_t w, unsigned n)
{
    return ((w - ONES * n) & ~w & HIGHS) != 0;
}

static int has_byte(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (ONES * c);
    return ((x - ONES) & ~x & HIGHS) != 0;
}

static const char *skip_plain(const char *p, const char *end, char floor)
{
#ifdef __SSE2__
    const __m128i below = _mm_set1_epi8(floor), del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* signed compare: obs-text (0x80-0xff) counts as below the floor too */
        __m128i odd = _mm_or_si128(_mm_cmplt_epi8(x, below), _mm_cmpeq_epi8(x, del));
        unsigned mask = (unsigned)_mm_movemask_epi8(odd);
        if (mask)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, sizeof w);
        if ((w & HIGHS) || has_byte_below(w, (unsigned char)floor) || has_byte(w, 0x7f))
            break;
        p += 8;
    }
    return p;
}

static const char *skip_value(const char *p, const char *end)
{
    p = skip_plain(p, end, 0x20);
    while (p < end && IS(*p, CC_VALUE))
        p++;
    return p;
}

static const char *skip_target(const char *p, const char *end)
{
    p = skip_plain(p, end, 0x21);
    while (p < end && IS(*p, CC_TARGET))
        p++;
    return p;
}

/* ---- scanning state shared by requests and responses ---- */

struct scan {
    const char *p, *end;      /* end = buf + min(len, max_head_bytes) */
    int status;               /* on error: what a server answers */
    const char *reason;
};

static int fail(struct scan *s, int status, const char *reason)
{
    s->status = status;
    s->reason = reason;
    return HTTP1_ERROR;
}

/* The byte at p ends a line: CRLF is fine, anything else is an error or incomplete. */
static int expect_crlf(struct scan *s, const char *p, const char *what_bad)
{
    if (p == s->end)
        return HTTP1_INCOMPLETE;
    if (*p == '\n')
        return fail(s, 400, "bare LF line ending");
    if (*p != '\r')
        return fail(s, 400, what_bad);
    if (p + 1 == s->end)
        return HTTP1_INCOMPLETE;
    if (p[1] != '\n')
        return fail(s, 400, "bare CR");
    return 0;
}

/* "HTTP/1.0" or "HTTP/1.1" at p (the CRLF after it is the caller's); other HTTP/x.y is 505. */
static int parse_version(struct scan *s, const char *p, int *minor)
{
    static const char prefix[] = "HTTP/";
    size_t avail = (size_t)(s->end - p);
    for (size_t i = 0; i < 5 && i < avail; i++)
        if (p[i] != prefix[i])
            return fail(s, 400, "invalid HTTP version");
    if (avail < 8)
        return HTTP1_INCOMPLETE;
    if (!IS(p[5], CC_DIGIT) || p[6] != '.' || !IS(p[7], CC_DIGIT))
        return fail(s, 400, "invalid HTTP version");
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return fail(s, 505, "unsupported HTTP version");
    *minor = p[7] - '0';
    return 0;
}

/* Field lines up to and including the empty line. */
static int parse_fields(struct scan *s, struct http1_header *headers, size_t max_headers,
                        size_t *num_headers)
{
    const char *p = s->p, *end = s->end;
    size_t n = 0;
    for (;;) {
        if (p == end)
            return HTTP1_INCOMPLETE;
        if (*p == '\r' || *p == '\n') {
            int rc = expect_crlf(s, p, "bare CR");
            if (rc)
                return rc;
            s->p = p + 2;
            *num_headers = n;
            return 0;
        }
        if (is_ows(*p))
            return fail(s, 400, n == 0 ? "whitespace before the first header field"
                                       : "obsolete line folding");
        const char *name = p;
        while (p < end && IS(*p, CC_TCHAR))
            p++;
        if (p == end)
            return HTTP1_INCOMPLETE;
        if (*p != ':') {
            if (is_ows(*p))
                return fail(s, 400, "whitespace between header field name and colon");
            if (*p == '\r' || *p == '\n')
                return fail(s, 400, "header field without colon");
            return fail(s, 400, "invalid character in header field name");
        }
        if (p == name)
            return fail(s, 400, "empty header field name");
        const char *name_end = p++;
        while (p < end && is_ows(*p))
            p++;
        const char *value = p;
        p = skip_value(p, end);
        const char *value_end = p;
        int rc = expect_crlf(s, p, p < end && *p == '\0' ? "NUL in header field value"
                                   : "control character in header field value");
        if (rc)
            return rc;
        while (value_end > value && is_ows(value_end[-1]))
            value_end--;
        if (n == max_headers)
            return fail(s, 431, "too many header fields");
        headers[n].name = name;
        headers[n].name_len = (size_t)(name_end - name);
        headers[n].value = value;
        headers[n].value_len = (size_t)(value_end - value);
        n++;
        p += 2;
    }
}

/* ---- what the fields say about framing and the connection ---- */

struct fields {
    int has_cl;
    uint64_t content_length;
    int has_te;
    int te_chunked_count;     /* how often "chunked" appears among the codings */
    int te_final_chunked;     /* the last coding is chunked */
    int te_unknown;           /* a coding we do not know (request: 501) */
    int hosts;
    const char *host;
    size_t host_len;
    unsigned flags;
};

/* Content-Length = 1*DIGIT, possibly as a list of identical values. 0, or -1 invalid, -2 differ. */
static int parse_content_length(const char *p, const char *end, uint64_t *out)
{
    int seen = 0;
    uint64_t first = 0;
    for (;;) {
        const char *digits = p;
        uint64_t v = 0;
        while (p < end && IS(*p, CC_DIGIT)) {
            unsigned d = (unsigned)(*p++ - '0');
            if (v > ((uint64_t)INT64_MAX - d) / 10)
                return -1;
            v = v * 10 + d;
        }
        if (p == digits)
            return -1;
        if (seen && v != first)
            return -2;
        first = v;
        seen = 1;
        while (p < end && is_ows(*p))
            p++;
        if (p == end)
            break;
        if (*p++ != ',')
            return -1;
        while (p < end && is_ows(*p))
            p++;
    }
    *out = first;
    return 0;
}

static int known_coding(const char *t, size_t n)
{
    return equals_ci(t, n, "gzip") || equals_ci(t, n, "x-gzip") || equals_ci(t, n, "deflate")
        || equals_ci(t, n, "compress") || equals_ci(t, n, "x-compress");
}

/* One Transfer-Encoding field: a list of codings, without transfer-parameters. Empty list
 * elements are allowed (RFC 9110 5.6.1); a field with no coding at all is not. */
static int add_transfer_codings(struct fields *f, const char *p, const char *end)
{
    int codings = 0;
    for (;;) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        if (p == end)
            return codings ? 0 : -1;
        const char *token = p;
        while (p < end && IS(*p, CC_TCHAR))
            p++;
        size_t n = (size_t)(p - token);
        while (p < end && is_ows(*p))
            p++;
        if (n == 0 || (p < end && *p != ','))
            return -1;
        codings++;
        if (equals_ci(token, n, "chunked")) {
            f->te_chunked_count++;
            f->te_final_chunked = 1;
        } else {
            f->te_final_chunked = 0;
            if (!known_coding(token, n))
                f->te_unknown = 1;
        }
    }
}

/* The next element of a comma-separated field value (RFC 9110 5.6.1), OWS trimmed; empty
 * elements are skipped. Returns 0 when the list is exhausted. */
static int next_list_element(const char **p, const char *end, const char **elem, size_t *len)
{
    const char *q = *p;
    while (q < end && (is_ows(*q) || *q == ','))
        q++;
    if (q == end)
        return 0;
    const char *start = q;
    while (q < end && *q != ',')
        q++;
    const char *stop = q;
    while (stop > start && is_ows(stop[-1]))
        stop--;
    *p = q;
    *elem = start;
    *len = (size_t)(stop - start);
    return 1;
}

static void add_connection_tokens(struct fields *f, const char *p, const char *end)
{
    const char *token;
    size_t n;
    while (next_list_element(&p, end, &token, &n)) {
        if (equals_ci(token, n, "close"))
            f->flags |= HTTP1_F_CONN_CLOSE;
        else if (equals_ci(token, n, "keep-alive"))
            f->flags |= HTTP1_F_CONN_KEEPALIVE;
        else if (equals_ci(token, n, "upgrade"))
            f->flags |= HTTP1_F_CONN_UPGRADE;
    }
}

/* Walks the fields once; the names that matter are told apart by length first. */
static int read_fields(struct scan *s, const struct http1_header *h, size_t n, struct fields *f)
{
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < n; i++, h++) {
        const char *v = h->value, *v_end = h->value + h->value_len;
        switch (h->name_len) {
        case 4:
            if (http1_name_is(h, "host")) {
                if (f->hosts++ == 0) {
                    f->host = h->value;
                    f->host_len = h->value_len;
                }
            }
            break;
        case 6:
            if (http1_name_is(h, "expect") && equals_ci(v, h->value_len, "100-continue"))
                f->flags |= HTTP1_F_EXPECT_CONTINUE;
            break;
        case 7:
            if (http1_name_is(h, "upgrade"))
                f->flags |= HTTP1_F_UPGRADE;
            break;
        case 10:
            if (http1_name_is(h, "connection"))
                add_connection_tokens(f, v, v_end);
            break;
        case 14:
            if (http1_name_is(h, "content-length")) {
                uint64_t cl;
                int rc = parse_content_length(v, v_end, &cl);
                if (rc == -2 || (rc == 0 && f->has_cl && cl != f->content_length))
                    return fail(s, 400, "conflicting Content-Length values");
                if (rc < 0)
                    return fail(s, 400, "invalid Content-Length");
                f->has_cl = 1;
                f->content_length = cl;
            }
            break;
        case 17:
            if (http1_name_is(h, "transfer-encoding")) {
                f->has_te = 1;
                if (add_transfer_codings(f, v, v_end) < 0)
                    return fail(s, 400, "invalid Transfer-Encoding");
            }
            break;
        default:
            break;
        }
    }
    return 0;
}

/* Host = uri-host [":" port] (RFC 9110 7.2): reg-name with valid %XX escapes, or an IP literal
 * in brackets; no userinfo. An empty value is allowed (RFC 9112 3.2), an empty host with a port
 * is not. */
static int valid_authority(const char *h, size_t n)
{
    size_t i = 0;
    if (n == 0)
        return 1;
    if (h[0] == '[') {
        for (i = 1; i < n && h[i] != ']'; i++)
            if (!IS(h[i], CC_HEX) && h[i] != ':' && h[i] != '.')
                return 0;
        if (i == n || i == 1)
            return 0;
        i++;
    } else {
        while (i < n && IS(h[i], CC_HOST)) {
            if (h[i] == '%' && (i + 2 >= n || !IS(h[i + 1], CC_HEX) || !IS(h[i + 2], CC_HEX)))
                return 0;
            i++;
        }
        if (i == 0)
            return 0;
    }
    if (i == n)
        return 1;
    if (h[i++] != ':')
        return 0;
    for (; i < n; i++)
        if (!IS(h[i], CC_DIGIT))
            return 0;
    return 1;
}

static void connection_defaults(unsigned *flags, int minor_version)
{
    if (minor_version == 0 && !(*flags & HTTP1_F_CONN_KEEPALIVE))
        *flags |= HTTP1_F_CONN_CLOSE;
}

/* ---- requests ---- */

static int parse_request_line(struct scan *s, struct http1_request *req)
{
    const char *p = s->p, *end = s->end;
    while (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
        p += 2;
    if (p == end || (*p == '\r' && p + 1 == end))
        return HTTP1_INCOMPLETE;
    if (*p == '\r' || *p == '\n')
        return fail(s, 400, *p == '\r' ? "bare CR" : "bare LF line ending");

    req->method = p;
    while (p < end && IS(*p, CC_TCHAR))
        p++;
    if (p == end)
        return HTTP1_INCOMPLETE;
    if (*p != ' ' || p == req->method)
        return fail(s, 400, "invalid method");
    req->method_len = (size_t)(p - req->method);

    req->target = ++p;
    p = skip_target(p, end);
    if (p == end)
        return HTTP1_INCOMPLETE;
    if (*p != ' ' || p == req->target)
        return fail(s, 400, p == req->target ? "missing request target"
                          : *p == '\r' || *p == '\n' ? "missing HTTP version"
                          : "invalid character in request target");
    req->target_len = (size_t)(p - req->target);

    int rc = parse_version(s, ++p, &req->minor_version);
    if (rc)
        return rc;
    rc = expect_crlf(s, p + 8, "invalid HTTP version");
    if (rc)
        return rc;
    s->p = p + 10;
    return 0;
}

static int method_is(const struct http1_request *req, const char *m)
{
    size_t n = strlen(m);
    return req->method_len == n && memcmp(req->method, m, n) == 0;
}

static void set_path_until_query(struct http1_request *req, const char *p, const char *end)
{
    const char *q = memchr(p, '?', (size_t)(end - p));
    req->path = p;
    req->path_len = (size_t)((q ? q : end) - p);
    if (req->path_len == 0) {
        req->path = "/";
        req->path_len = 1;
    }
}

/* Sets path, and for absolute-form the authority (which then routes instead of Host). */
static int read_target(struct scan *s, struct http1_request *req,
                       const char **authority, size_t *authority_len)
{
    const char *t = req->target, *end = t + req->target_len;
    *authority = NULL;
    if (memchr(t, '#', req->target_len))
        return fail(s, 400, "fragment in request target");
    if (method_is(req, "CONNECT")) {
        const char *colon = memrchr(t, ':', req->target_len);
        if (t[0] == '[' ? !colon || colon[-1] != ']' : !colon)
            return fail(s, 400, "CONNECT target is not host:port");
        if (colon + 1 == end || !valid_authority(t, req->target_len))
            return fail(s, 400, "CONNECT target is not host:port");
        req->path = "/";
        req->path_len = 1;
        return 0;
    }
    if (t[0] == '/') {
        set_path_until_query(req, t, end);
        return 0;
    }
    if (req->target_len == 1 && t[0] == '*') {
        if (!method_is(req, "OPTIONS"))
            return fail(s, 400, "asterisk-form target outside OPTIONS");
        req->path = "/";
        req->path_len = 1;
        return 0;
    }
    const char *p;
    if (req->target_len > 7 && equals_ci(t, 7, "http://"))
        p = t + 7;
    else if (req->target_len > 8 && equals_ci(t, 8, "https://"))
        p = t + 8;
    else
        return fail(s, 400, "request target is not origin-form or an http(s) absolute URI");
    const char *a = p;
    while (p < end && *p != '/' && *p != '?')
        p++;
    if (p == a)
        return fail(s, 400, "empty authority in request target");
    if (memchr(a, '@', (size_t)(p - a)))
        return fail(s, 400, "userinfo in request target");
    if (!valid_authority(a, (size_t)(p - a)))
        return fail(s, 400, "invalid authority in request target");
    *authority = a;
    *authority_len = (size_t)(p - a);
    set_path_until_query(req, p, end);
    return 0;
}

static int request_framing(struct scan *s, struct http1_request *req, const struct fields *f)
{
    if (f->has_te) {
        if (req->minor_version == 0)
            return fail(s, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (f->has_cl)
            return fail(s, 400, "both Transfer-Encoding and Content-Length");
        if (!f->te_final_chunked)
            return fail(s, 400, "final transfer coding is not chunked");
        if (f->te_chunked_count > 1)
            return fail(s, 400, "chunked applied more than once");
        if (f->te_unknown)
            return fail(s, 501, "unknown transfer coding");
        req->body = HTTP1_BODY_CHUNKED;
    } else if (f->has_cl) {
        req->body = HTTP1_BODY_LENGTH;
        req->content_length = f->content_length;
    }
    return 0;
}

static int request_host(struct scan *s, struct http1_request *req, const struct fields *f,
                        const char *authority, size_t authority_len)
{
    if (f->hosts > 1)
        return fail(s, 400, "more than one Host field");
    if (f->hosts == 0 && req->minor_version == 1)
        return fail(s, 400, "missing Host field");
    if (f->hosts == 1 && !valid_authority(f->host, f->host_len))
        return fail(s, 400, "invalid Host field");
    if (authority) {
        req->host = authority;
        req->host_len = authority_len;
    } else if (f->hosts == 1) {
        req->host = f->host;
        req->host_len = f->host_len;
    }
    if (req->host)
        req->flags |= HTTP1_F_HAS_HOST;
    return 0;
}

static int parse_request(struct scan *s, struct http1_request *req, size_t max_headers)
{
    const char *authority;
    size_t authority_len = 0;
    struct fields f;
    int rc = parse_request_line(s, req);
    if (rc)
        return rc;
    rc = read_target(s, req, &authority, &authority_len);
    if (rc)
        return rc;
    rc = parse_fields(s, req->headers, max_headers, &req->num_headers);
    if (rc)
        return rc;
    rc = read_fields(s, req->headers, req->num_headers, &f);
    if (rc)
        return rc;
    req->flags = f.flags;
    if (req->minor_version == 0)   /* RFC 9110 10.1.1, 7.8: both are ignored in HTTP/1.0 */
        req->flags &= ~(HTTP1_F_EXPECT_CONTINUE | HTTP1_F_UPGRADE);
    connection_defaults(&req->flags, req->minor_version);
    rc = request_host(s, req, &f, authority, authority_len);
    if (rc)
        return rc;
    return request_framing(s, req, &f);
}

/* The head must fit in max_head_bytes (and an int); what lies beyond is not looked at. */
static const char *head_limit(const char *buf, size_t len, size_t max_head_bytes)
{
    if (max_head_bytes > INT_MAX)
        max_head_bytes = INT_MAX;
    return buf + (len < max_head_bytes ? len : max_head_bytes);
}

int http1_parse_request(const char *buf, size_t len, struct http1_request *req,
                        size_t max_headers, size_t max_head_bytes)
{
    struct http1_header *headers = req->headers;
    memset(req, 0, sizeof *req);
    req->headers = headers;
    struct scan s = { buf, head_limit(buf, len, max_head_bytes), 0, NULL };
    int rc = parse_request(&s, req, max_headers);
    if (rc == HTTP1_INCOMPLETE && (len >= max_head_bytes || s.end != buf + len))
        rc = fail(&s, 431, "request head too large");
    if (rc == HTTP1_ERROR) {
        req->error_status = s.status;
        req->error_reason = s.reason;
        return HTTP1_ERROR;
    }
    if (rc)
        return rc;
    return (int)(s.p - buf);
}

/* ---- responses ---- */

static int parse_status_line(struct scan *s, struct http1_response *resp)
{
    const char *p = s->p, *end = s->end;
    int rc = parse_version(s, p, &resp->minor_version);
    if (rc)
        return rc;
    p += 8;
    if (end - p < 4)
        return HTTP1_INCOMPLETE;
    if (p[0] != ' ' || !IS(p[1], CC_DIGIT) || !IS(p[2], CC_DIGIT) || !IS(p[3], CC_DIGIT))
        return fail(s, 502, "invalid status code");
    resp->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    if (resp->status < 100 || resp->status > 599)
        return fail(s, 502, "invalid status code");
    p += 4;
    if (p < end && *p == ' ') {
        resp->reason = ++p;
        while (p < end && IS(*p, CC_VALUE))
            p++;
        resp->reason_len = (size_t)(p - resp->reason);
    }
    rc = expect_crlf(s, p, "invalid character in reason phrase");
    if (rc)
        return rc;
    s->p = p + 2;
    return 0;
}

/* RFC 9112 6.3, in its order. */
static int response_framing(struct scan *s, struct http1_response *resp, const struct fields *f,
                            int request_was_head)
{
    int st = resp->status;
    if (request_was_head || (st >= 100 && st < 200) || st == 204 || st == 304) {
        resp->body = HTTP1_BODY_NONE;
        return 0;
    }
    if (f->has_te) {
        if (resp->minor_version == 0)
            return fail(s, 502, "Transfer-Encoding in an HTTP/1.0 response");
        if (f->te_chunked_count > 1)
            return fail(s, 502, "chunked applied more than once");
        if (f->te_final_chunked) {
            resp->body = HTTP1_BODY_CHUNKED;
        } else {
            resp->body = HTTP1_BODY_UNTIL_CLOSE;
            resp->flags |= HTTP1_F_CONN_CLOSE;
        }
        if (f->has_cl)
            resp->flags |= HTTP1_F_CONN_CLOSE;
    } else if (f->has_cl) {
        resp->body = HTTP1_BODY_LENGTH;
        resp->content_length = f->content_length;
    } else {
        resp->body = HTTP1_BODY_UNTIL_CLOSE;
        resp->flags |= HTTP1_F_CONN_CLOSE;
    }
    return 0;
}

int http1_parse_response(const char *buf, size_t len, struct http1_response *resp,
                         size_t max_headers, size_t max_head_bytes,
                         int request_was_head)
{
    struct http1_header *headers = resp->headers;
    memset(resp, 0, sizeof *resp);
    resp->headers = headers;
    struct scan s = { buf, head_limit(buf, len, max_head_bytes), 0, NULL };
    struct fields f;
    int rc = parse_status_line(&s, resp);
    if (rc == 0)
        rc = parse_fields(&s, resp->headers, max_headers, &resp->num_headers);
    if (rc == 0)
        rc = read_fields(&s, resp->headers, resp->num_headers, &f);
    if (rc == 0) {
        resp->flags = f.flags;
        connection_defaults(&resp->flags, resp->minor_version);
        rc = response_framing(&s, resp, &f, request_was_head);
    }
    if (rc == HTTP1_INCOMPLETE && (len >= max_head_bytes || s.end != buf + len))
        rc = fail(&s, 502, "response head too large");
    if (rc == HTTP1_ERROR) {
        resp->error_reason = s.reason;
        return HTTP1_ERROR;
    }
    if (rc)
        return rc;
    return (int)(s.p - buf);
}

/* ---- chunked framing (RFC 9112 7.1) ---- */

#define CHUNK_LINE_MAX     8192              /* a chunk-size line or one trailer field line */
#define CHUNK_TRAILERS_MAX (64 * 1024)       /* the whole trailer section */
#define CHUNK_SIZE_LIMIT   ((uint64_t)1 << 58) /* a size at or above this, times 16, passes 2^62 */

enum chunk_state {
    CH_SIZE_START = 0,   /* http1_chunked_init leaves a zeroed struct here */
    CH_SIZE,
    CH_SIZE_BWS,         /* whitespace after the size: only a chunk-ext may follow */
    CH_EXT_NAME_START,
    CH_EXT_NAME,
    CH_EXT_AFTER_NAME,
    CH_EXT_VALUE_START,
    CH_EXT_TOKEN,
    CH_EXT_QUOTED,
    CH_EXT_QUOTED_PAIR,
    CH_EXT_AFTER_VALUE,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START,    /* remaining counts the trailer section's bytes from here on */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_FINAL_LF,
    CH_DONE,
    CH_ERROR,
};

void http1_chunked_init(struct http1_chunked *c)
{
    memset(c, 0, sizeof *c);
    c->state = CH_SIZE_START;
}

static unsigned hex_value(char ch)
{
    return IS(ch, CC_DIGIT) ? (unsigned)(ch - '0') : (unsigned)(lower(ch) - 'a' + 10);
}

static int after_ext_name(char ch)
{
    return is_ows(ch) ? CH_EXT_AFTER_NAME : ch == '=' ? CH_EXT_VALUE_START
         : ch == ';' ? CH_EXT_NAME_START : ch == '\r' ? CH_SIZE_LF : CH_ERROR;
}

static int after_ext_value(char ch)
{
    return is_ows(ch) ? CH_EXT_AFTER_VALUE : ch == ';' ? CH_EXT_NAME_START
         : ch == '\r' ? CH_SIZE_LF : CH_ERROR;
}

/* The state after one framing byte, or CH_ERROR. */
static int chunk_step(struct http1_chunked *c, char ch)
{
    switch (c->state) {
    case CH_SIZE_START:
        if (!IS(ch, CC_HEX))
            return CH_ERROR;
        c->remaining = hex_value(ch);
        return CH_SIZE;
    case CH_SIZE:
        if (IS(ch, CC_HEX)) {
            if (c->remaining >= CHUNK_SIZE_LIMIT)
                return CH_ERROR;
            c->remaining = c->remaining * 16 + hex_value(ch);
            return CH_SIZE;
        }
        return ch == ';' ? CH_EXT_NAME_START : is_ows(ch) ? CH_SIZE_BWS
             : ch == '\r' ? CH_SIZE_LF : CH_ERROR;
    case CH_SIZE_BWS:
        return is_ows(ch) ? CH_SIZE_BWS : ch == ';' ? CH_EXT_NAME_START : CH_ERROR;
    case CH_EXT_NAME_START:
        return is_ows(ch) ? CH_EXT_NAME_START : IS(ch, CC_TCHAR) ? CH_EXT_NAME : CH_ERROR;
    case CH_EXT_NAME:
        return IS(ch, CC_TCHAR) ? CH_EXT_NAME : after_ext_name(ch);
    case CH_EXT_AFTER_NAME:
        return after_ext_name(ch);
    case CH_EXT_VALUE_START:
        return is_ows(ch) ? CH_EXT_VALUE_START : ch == '"' ? CH_EXT_QUOTED
             : IS(ch, CC_TCHAR) ? CH_EXT_TOKEN : CH_ERROR;
    case CH_EXT_TOKEN:
        return IS(ch, CC_TCHAR) ? CH_EXT_TOKEN : after_ext_value(ch);
    case CH_EXT_AFTER_VALUE:
        return after_ext_value(ch);
    case CH_EXT_QUOTED:
        return ch == '"' ? CH_EXT_AFTER_VALUE : ch == '\\' ? CH_EXT_QUOTED_PAIR
             : IS(ch, CC_QDTEXT) ? CH_EXT_QUOTED : CH_ERROR;
    case CH_EXT_QUOTED_PAIR:
        return IS(ch, CC_VALUE) ? CH_EXT_QUOTED : CH_ERROR;
    case CH_SIZE_LF:
        if (ch != '\n')
            return CH_ERROR;
        c->line_len = 0;
        return c->remaining == 0 ? CH_TRAILER_START : CH_DATA;
    case CH_DATA_CR:
        return ch == '\r' ? CH_DATA_LF : CH_ERROR;
    case CH_DATA_LF:
        c->line_len = 0;
        return ch == '\n' ? CH_SIZE_START : CH_ERROR;
    case CH_TRAILER_START:
        return ch == '\r' ? CH_FINAL_LF : IS(ch, CC_TCHAR) ? CH_TRAILER_NAME : CH_ERROR;
    case CH_TRAILER_NAME:
        return IS(ch, CC_TCHAR) ? CH_TRAILER_NAME : ch == ':' ? CH_TRAILER_VALUE : CH_ERROR;
    case CH_TRAILER_VALUE:
        return IS(ch, CC_VALUE) ? CH_TRAILER_VALUE : ch == '\r' ? CH_TRAILER_LF : CH_ERROR;
    case CH_TRAILER_LF:
        c->line_len = 0;
        return ch == '\n' ? CH_TRAILER_START : CH_ERROR;
    case CH_FINAL_LF:
        return ch == '\n' ? CH_DONE : CH_ERROR;
    default:
        return CH_ERROR;
    }
}

long http1_chunked_scan(struct http1_chunked *c, const char *buf, size_t len)
{
    const char *p = buf, *end = buf + (len > LONG_MAX ? LONG_MAX : len);
    while (p < end && c->state != CH_DONE) {
        if (c->state == CH_ERROR)
            return HTTP1_ERROR;
        if (c->state == CH_DATA) {
            size_t n = (size_t)(end - p);
            if (n > c->remaining)
                n = (size_t)c->remaining;
            p += n;
            c->remaining -= n;
            c->body_bytes += n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            continue;
        }
        if (++c->line_len > CHUNK_LINE_MAX)
            c->state = CH_ERROR;
        else if (c->state >= CH_TRAILER_START && ++c->remaining > CHUNK_TRAILERS_MAX)
            c->state = CH_ERROR;
        else
            c->state = chunk_step(c, *p++);
    }
    if (c->state == CH_ERROR)
        return HTTP1_ERROR;
    c->done = c->state == CH_DONE;
    return (long)(p - buf);
}

/* ---- helpers for the proxy ---- */

int http1_name_is(const struct http1_header *h, const char *lower_name)
{
    return equals_ci(h->name, h->name_len, lower_name);
}

int http1_value_has_token(const char *value, size_t value_len, const char *lower_token)
{
    const char *p = value, *end = value + value_len, *token;
    size_t n;
    while (next_list_element(&p, end, &token, &n))
        if (equals_ci(token, n, lower_token))
            return 1;
    return 0;
}

int http1_is_hop_by_hop(const struct http1_header *h)
{
    static const char *const names[] = {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade", "proxy-authenticate", "proxy-authorization",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (http1_name_is(h, names[i]))
            return 1;
    return 0;
}
