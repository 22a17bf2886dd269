/*
 * http1_parser.h - strict, zero-copy HTTP/1.1 message-head and chunked-body parsing (RFC 9112).
 *
 * The parser never allocates and never copies: names, values, method and target point into the
 * caller's buffer. It is table-driven (one 256-entry class table for tchar, field-vchar, etc.)
 * and re-entrant: call it again with a longer buffer when it returns HTTP1_INCOMPLETE.
 *
 * Strictness is the point: everything that lets two HTTP implementations disagree about where a
 * message ends is an error (request smuggling). On error, req->error_status holds the status to
 * answer with (400, 431, 501, 505) and error_reason a short static string for the log.
 */
#ifndef GATEHOUSE_HTTP1_PARSER_H
#define GATEHOUSE_HTTP1_PARSER_H

#include <stddef.h>
#include <stdint.h>

#define HTTP1_INCOMPLETE (-2)
#define HTTP1_ERROR      (-1)

struct http1_header {
    const char *name;  size_t name_len;
    const char *value; size_t value_len;   /* leading/trailing OWS removed */
};

enum http1_body_kind {
    HTTP1_BODY_NONE = 0,      /* no body (request without CL/TE; 1xx/204/304; response to HEAD) */
    HTTP1_BODY_LENGTH,        /* content_length bytes follow */
    HTTP1_BODY_CHUNKED,       /* chunked coding follows; scan it with http1_chunked_scan() */
    HTTP1_BODY_UNTIL_CLOSE,   /* responses only: body ends when the server closes */
};

/* message flags */
#define HTTP1_F_CONN_CLOSE      0x01u  /* Connection: close (or HTTP/1.0 without keep-alive) */
#define HTTP1_F_CONN_KEEPALIVE  0x02u  /* Connection: keep-alive seen */
#define HTTP1_F_CONN_UPGRADE    0x04u  /* Connection: upgrade token present */
#define HTTP1_F_UPGRADE         0x08u  /* an Upgrade header field is present */
#define HTTP1_F_EXPECT_CONTINUE 0x10u  /* Expect: 100-continue */
#define HTTP1_F_HAS_HOST        0x20u

struct http1_request {
    const char *method; size_t method_len;
    const char *target; size_t target_len;   /* as sent: origin-form, absolute-form, '*' or authority */
    const char *path;   size_t path_len;     /* target's path without query ("/" for '*'/authority) */
    const char *host;   size_t host_len;     /* Host field value, or authority of absolute-form */
    int minor_version;                       /* 0 or 1 */
    struct http1_header *headers;            /* in: array of capacity max_headers */
    size_t num_headers;                      /* out */
    enum http1_body_kind body;
    uint64_t content_length;
    unsigned flags;
    int error_status;                        /* set on HTTP1_ERROR */
    const char *error_reason;
};

struct http1_response {
    int minor_version;
    int status;
    const char *reason; size_t reason_len;
    struct http1_header *headers;
    size_t num_headers;
    enum http1_body_kind body;
    uint64_t content_length;
    unsigned flags;
    const char *error_reason;               /* set on HTTP1_ERROR */
};

/* Parses a request head from buf[0..len). Returns the head's length in bytes (through the empty
 * line), HTTP1_INCOMPLETE, or HTTP1_ERROR. A head longer than max_head_bytes is an error with
 * status 431; more than max_headers fields likewise 431. req->headers must point at an array of
 * max_headers entries. */
int http1_parse_request(const char *buf, size_t len, struct http1_request *req,
                        size_t max_headers, size_t max_head_bytes);

/* Parses a response head. request_was_head / request_method_connect select the body rules of
 * RFC 9112 section 6.3. */
int http1_parse_response(const char *buf, size_t len, struct http1_response *resp,
                         size_t max_headers, size_t max_head_bytes,
                         int request_was_head);

/* Chunked body scanner. It does not decode: it walks the bytes so the proxy can forward the
 * chunked coding verbatim while knowing exactly where the body ends, and validates it
 * (hex sizes without overflow, CRLF after each chunk, chunk-ext and trailer syntax). */
struct http1_chunked {
    int state;               /* private */
    uint64_t remaining;      /* private: data bytes left in the current chunk */
    size_t line_len;         /* private: bytes in the current size/trailer line (bounded) */
    uint64_t body_bytes;     /* data bytes seen so far (without framing) */
    int done;                /* set once the last-chunk and trailer section are complete */
};

void http1_chunked_init(struct http1_chunked *c);

/* Consumes bytes of chunked coding. Returns the number of bytes consumed (<= len; fewer than len
 * only when the body ended inside buf, c->done then set), or HTTP1_ERROR on malformed input. */
long http1_chunked_scan(struct http1_chunked *c, const char *buf, size_t len);

/* Case-insensitive comparison of a header name with a lower-case literal. */
int http1_name_is(const struct http1_header *h, const char *lower_name);

/* True when a comma-separated field value contains token (case-insensitive), e.g. "Upgrade". */
int http1_value_has_token(const char *value, size_t value_len, const char *lower_token);

/* True for hop-by-hop fields the proxy must not forward (RFC 9110 7.6.1): Connection,
 * Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authenticate,
 * Proxy-Authorization... (Transfer-Encoding and Upgrade are re-added by the proxy itself when
 * they apply.) */
int http1_is_hop_by_hop(const struct http1_header *h);

#endif
