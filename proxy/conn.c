/*
 * conn.c - the client connection state machine (conn.h): HTTP/1.1 in, HTTP/1.1 out.
 *
 * Phases of a session:
 *   HEAD    reading a request head (keep-alive idle before its first byte)
 *   PROXY   request streamed to an upstream, response streamed back
 *   TUNNEL  after a 101: bytes copied both ways until either side closes
 *   REPLY   sending a response the proxy made itself (errors, 404, 503...)
 *   LINGER  after an error reply with Connection: close: discard input until the client
 *           closes, so our close() does not reset the connection before the reply is read
 *
 * Buffers. `in` holds the request head and, after it, a window of request body; the head stays
 * in place until the request is finished (the access log points into it, and a request that
 * failed on a stale pooled connection can be replayed). `out` first holds the request head
 * rebuilt for the upstream; once that is sent, it receives the response. Response heads are
 * rewritten in place (hop-by-hop fields squeezed out) and sent with writev() together with the
 * proxy's own Connection line and the first body bytes.
 *
 * Pipelining: bytes after the current request stay in `in` and are parsed only once the
 * current response is complete, so responses go out in order.
 *
 * The client transport: every client read, write and half-close goes through client_read(),
 * client_writev() and client_shutdown(), which are read/writev/shutdown on a plain connection
 * and the BearSSL engine (tls_transport.c) on an HTTPS one. On TLS, "written" means on the
 * socket, not in the engine (flush_client waits for both), and a half-close is close_notify.
 * HTTPS requests carry X-Forwarded-Proto https and the HTTPS port; plain requests for a host
 * with sslRedirect are answered 308 to https:// (when HTTPS is served); with --hsts, HTTPS
 * responses for names with a certificate of their own carry Strict-Transport-Security.
 *
 * Expect: 100-continue is answered by the proxy itself once the request head has reached the
 * upstream (the field is not forwarded, so the client never sees two 100s); other interim
 * responses from the upstream are relayed. Timeouts use one timer per session whose meaning
 * follows the phase: header/idle while reading a head, connect while connecting, read/send
 * while proxying (any progress re-arms it), idle while tunnelling.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "route_table.h"
#include "tls_store.h"
#include "tls_transport.h"

#define MAX_CONNECT_TRIES   3
#define LINGER_MS           2000
#define REQUEST_ID_MAX      128

enum phase { PH_HEAD, PH_PROXY, PH_TUNNEL, PH_REPLY, PH_LINGER };
enum resp_state { R_WAIT, R_BODY, R_DONE };
/* What a step of the state machine reports to session_drive(). */
enum step { STEP_WAIT, STEP_AGAIN, STEP_CLOSED };

struct session {
    enum watch_kind kind;                 /* WATCH_CLIENT; 0 once closed */
    int fd;
    struct tls_transport *tls;            /* NULL: plain HTTP */
    struct worker *w;
    struct session *prev, *next;
    struct session *free_next;
    struct timer timer;
    enum phase phase;
    unsigned char rd_ready, wr_ready;
    unsigned char first_request;
    char remote[48];

    char *in;  size_t in_len;
    char *out;

    /* request */
    struct http1_request req;
    size_t head_len;
    int64_t started_ms, started_wall_ms;
    unsigned char keepalive;              /* the client allows another request */
    unsigned char unlogged;               /* a request began and is not yet logged/counted */
    unsigned char wants_upgrade, send_continue;
    unsigned char hsts;                   /* responses carry Strict-Transport-Security */
    const char *upgrade;  size_t upgrade_len;
    const char *request_id; size_t request_id_len;
    char request_id_buf[33];
    size_t body_end;                      /* in[head_len, body_end): body received so far */
    size_t in_sent;                       /* next byte of `in` to send upstream */
    uint64_t body_left;                   /* Content-Length bytes not yet received */
    struct http1_chunked req_chunk;
    unsigned char body_done, replayable;
    unsigned char req_abandoned;          /* the upstream stopped taking the request */

    /* routing */
    struct route_table *table;            /* referenced for this request's lifetime */
    struct route_match match;
    struct endpoint *endpoint;
    int tries;
    unsigned attach_count;                /* changes whenever the upstream is replaced */
    unsigned char fresh_retry_used;

    /* upstream */
    struct upstream_conn *up;
    size_t up_head_len, up_head_sent;
    unsigned char up_head_done, up_reusable, up_eof;

    /* response */
    enum resp_state resp_state;
    size_t out_len, resp_base;
    enum http1_body_kind resp_body;
    uint64_t resp_left;
    struct http1_chunked resp_chunk;
    unsigned char dechunk;                /* HTTP/1.0 client: relay chunked data decoded */
    unsigned char dechunk_state;
    uint64_t dechunk_left;
    int status;
    unsigned char client_eof;
    uint64_t bytes_sent;
    struct iovec pending[4];              /* queued for the client, in order */
    int num_pending;
};

static void session_close(struct session *s);
static enum step reply_local(struct session *s, int status, int keep);
static void arm(struct session *s, int ms);
static void refresh_table(struct worker *w);

/* ---------------------------------------------------------------- buffers */

/* A session holds its two buffers only while a request is on the wire: a connection idle
 * between requests costs a few hundred bytes, not two buffers. Blocks are recycled LIFO, so
 * the next request gets cache-warm memory. */
struct buffer_block { struct buffer_block *next; };

static int take_buffers(struct session *s)
{
    struct worker *w = s->w;
    char *block = (char *)w->free_buffers;
    if (block)
        w->free_buffers = w->free_buffers->next;
    else if (!(block = malloc(w->in_cap + w->out_cap)))
        return -1;
    s->in = block;
    s->out = block + w->in_cap;
    return 0;
}

static void release_buffers(struct session *s)
{
    if (!s->in)
        return;
    struct buffer_block *b = (struct buffer_block *)s->in;
    b->next = s->w->free_buffers;
    s->w->free_buffers = b;
    s->in = s->out = NULL;
    s->in_len = 0;
}

/* ---------------------------------------------------------------- small helpers */

static int would_block(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK;
}

/* ---------------------------------------------------------------- client transport */

/* The client side's I/O, plain or TLS, with read(2)/writev(2) semantics either way. The
 * readiness hints (rd_ready/wr_ready) are cleared when the transport would block; on a plain
 * socket a short transfer means the same, while TLS moves one record at a time and decides
 * for itself. */
static ssize_t client_read(struct session *s, void *buf, size_t len)
{
    ssize_t n;
    if (s->tls) {
        n = tls_transport_read(s->tls, buf, len);
    } else {
        n = read(s->fd, buf, len);
        if (n > 0 && (size_t)n < len)
            s->rd_ready = 0;
    }
    if (n < 0 && would_block())
        s->rd_ready = 0;
    return n;
}

static ssize_t client_writev(struct session *s, const struct iovec *iov, int cnt)
{
    return s->tls ? tls_transport_writev(s->tls, iov, cnt) : writev(s->fd, iov, cnt);
}

/* Ends our direction: FIN on a plain socket, close_notify on TLS. */
static void client_shutdown(struct session *s)
{
    if (s->tls)
        tls_transport_shutdown(s->tls);
    else
        shutdown(s->fd, SHUT_WR);
}

static void queue_client(struct session *s, const void *p, size_t n)
{
    if (n == 0)
        return;
    s->pending[s->num_pending].iov_base = (void *)p;
    s->pending[s->num_pending].iov_len = n;
    s->num_pending++;
}

/* Writes the queued iovecs. 1: all written; 0: would block; -1: client gone. */
static int flush_client(struct session *s)
{
    while (s->num_pending) {
        if (!s->wr_ready)
            return 0;
        ssize_t n = client_writev(s, s->pending, s->num_pending);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (would_block()) {
                s->wr_ready = 0;
                return 0;
            }
            return -1;
        }
        s->bytes_sent += (uint64_t)n;
        size_t left = (size_t)n;
        int i = 0;
        while (i < s->num_pending && left >= s->pending[i].iov_len)
            left -= s->pending[i++].iov_len;
        if (i < s->num_pending) {
            s->pending[i].iov_base = (char *)s->pending[i].iov_base + left;
            s->pending[i].iov_len -= left;
            s->wr_ready = 0;      /* a short write means the socket buffer is full */
        }
        memmove(s->pending, s->pending + i, (size_t)(s->num_pending - i) * sizeof s->pending[0]);
        s->num_pending -= i;
    }
    if (!s->tls)
        return 1;
    int r = tls_transport_flush(s->tls);     /* "written" means on the socket, not in the engine */
    if (r == 0)
        s->wr_ready = 0;
    return r;
}

static void arm(struct session *s, int ms)
{
    timer_set(&s->w->wheel, &s->timer, s->w->now_ms + ms);
}

static uint64_t rng_next(uint64_t st[2])
{
    uint64_t a = st[0], b = st[1];
    st[0] = b;
    a ^= a << 23;
    st[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return st[1] + b;
}

static int request_id_is_sane(const char *v, size_t n)
{
    if (n == 0 || n > REQUEST_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static void generate_request_id(struct session *s)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t r[2] = { rng_next(s->w->rng), rng_next(s->w->rng) };
    for (int i = 0; i < 32; i++)
        s->request_id_buf[i] = hex[(r[i / 16] >> ((i % 16) * 4)) & 15];
    s->request_id_buf[32] = 0;
    s->request_id = s->request_id_buf;
    s->request_id_len = 32;
}

/* Connection: names fields that are hop-by-hop for this message only. */
struct conn_tokens { const struct http1_header *fields[4]; int n; };

static void collect_connection_fields(const struct http1_header *h, size_t n,
                                      struct conn_tokens *ct)
{
    ct->n = 0;
    for (size_t i = 0; i < n && ct->n < 4; i++)
        if (h[i].name_len == 10 && http1_name_is(&h[i], "connection"))
            ct->fields[ct->n++] = &h[i];
}

static int named_by_connection(const struct http1_header *h, const struct conn_tokens *ct)
{
    char lower[64];
    if (ct->n == 0 || h->name_len >= sizeof lower)
        return 0;
    for (size_t i = 0; i < h->name_len; i++) {
        char c = h->name[i];
        lower[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    lower[h->name_len] = 0;
    for (int i = 0; i < ct->n; i++)
        if (http1_value_has_token(ct->fields[i]->value, ct->fields[i]->value_len, lower))
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- the upstream request head */

struct writer { char *p, *end; int full; };

static void put(struct writer *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n) {
        o->full = 1;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

/* The origin-form of the request target (absolute-form loses its scheme and authority). */
static void origin_form(const struct http1_request *r, const char **t, size_t *n)
{
    *t = r->target;
    *n = r->target_len;
    if (*n == 0 || **t == '/' || (*n == 1 && **t == '*'))
        return;
    const char *end = r->target + r->target_len;
    const char *p = memmem(r->target, r->target_len, "://", 3);
    p = p ? p + 3 : r->target;
    while (p < end && *p != '/' && *p != '?')
        p++;
    *t = p;
    *n = (size_t)(end - p);
}

/* Fields the proxy sets itself: whatever the client sent under these names is dropped. */
static int is_proxy_owned(const struct http1_header *h)
{
    char c = h->name[0] | 0x20;
    if (c == 'h')
        return http1_name_is(h, "host");
    if (c == 'e')
        return http1_name_is(h, "expect");
    if (c == 'c')                   /* re-sent from the parsed value: "5, 5" never leaks on */
        return http1_name_is(h, "content-length");
    if (c != 'x' || h->name_len < 9)
        return 0;
    return http1_name_is(h, "x-forwarded-proto") || http1_name_is(h, "x-forwarded-host") ||
           http1_name_is(h, "x-forwarded-port") || http1_name_is(h, "x-real-ip") ||
           http1_name_is(h, "x-request-id");
}

static size_t build_upstream_head(struct session *s)
{
    struct worker *w = s->w;
    const struct http1_request *r = &s->req;
    struct writer o = { s->out, s->out + w->out_cap, 0 };
    const char *target;
    size_t target_len;
    origin_form(r, &target, &target_len);

    put(&o, r->method, r->method_len);
    PUT_LIT(&o, " ");
    if (target_len && target[0] == '?')         /* "http://h?q" has the path "/" */
        PUT_LIT(&o, "/");
    if (target_len)
        put(&o, target, target_len);
    else
        PUT_LIT(&o, "/");
    PUT_LIT(&o, " HTTP/1.1\r\n");
    if (r->host_len) {
        PUT_LIT(&o, "Host: ");
        put(&o, r->host, r->host_len);
        PUT_LIT(&o, "\r\n");
    }

    struct conn_tokens ct;
    collect_connection_fields(r->headers, r->num_headers, &ct);
    const struct http1_header *xff[8];
    int num_xff = 0;
    for (size_t i = 0; i < r->num_headers; i++) {
        const struct http1_header *h = &r->headers[i];
        if (http1_is_hop_by_hop(h) || is_proxy_owned(h) || named_by_connection(h, &ct))
            continue;
        if (h->name_len == 15 && http1_name_is(h, "x-forwarded-for")) {
            if (num_xff < 8)
                xff[num_xff++] = h;
            continue;
        }
        put(&o, h->name, h->name_len);
        PUT_LIT(&o, ": ");
        put(&o, h->value, h->value_len);
        PUT_LIT(&o, "\r\n");
    }

    size_t remote_len = strlen(s->remote);
    PUT_LIT(&o, "X-Forwarded-For: ");
    for (int i = 0; i < num_xff; i++) {
        put(&o, xff[i]->value, xff[i]->value_len);
        PUT_LIT(&o, ", ");
    }
    put(&o, s->remote, remote_len);
    if (s->tls)
        PUT_LIT(&o, "\r\nX-Forwarded-Proto: https\r\n");
    else
        PUT_LIT(&o, "\r\nX-Forwarded-Proto: http\r\n");
    if (r->host_len) {
        PUT_LIT(&o, "X-Forwarded-Host: ");
        put(&o, r->host, r->host_len);
        PUT_LIT(&o, "\r\n");
    }
    PUT_LIT(&o, "X-Forwarded-Port: ");
    const char *port = s->tls ? w->https_port_text : w->port_text;
    put(&o, port, strlen(port));
    PUT_LIT(&o, "\r\nX-Real-IP: ");
    put(&o, s->remote, remote_len);
    PUT_LIT(&o, "\r\nX-Request-ID: ");
    put(&o, s->request_id, s->request_id_len);
    if (s->wants_upgrade) {
        PUT_LIT(&o, "\r\nConnection: upgrade\r\nUpgrade: ");
        put(&o, s->upgrade, s->upgrade_len);
        PUT_LIT(&o, "\r\n");
    } else {
        PUT_LIT(&o, "\r\nConnection: keep-alive\r\n");
    }
    if (r->body == HTTP1_BODY_CHUNKED) {
        PUT_LIT(&o, "Transfer-Encoding: chunked\r\n");
    } else if (r->body == HTTP1_BODY_LENGTH) {
        char cl[40];
        int n = snprintf(cl, sizeof cl, "Content-Length: %llu\r\n",
                         (unsigned long long)r->content_length);
        put(&o, cl, (size_t)n);
    }
    PUT_LIT(&o, "\r\n");
    return o.full ? 0 : (size_t)(o.p - s->out);
}

/* ---------------------------------------------------------------- finishing a request */

static void release_upstream(struct session *s, int reusable)
{
    if (!s->up)
        return;
    struct upstream_conn *c = s->up;
    s->up = NULL;
    if (reusable) {
        c->reused = 0;
        upstream_release(&s->w->pool, c, 1, s->w->now_ms);
    } else {
        upstream_close(&s->w->pool, c);
    }
}

static void log_request(struct session *s)
{
    struct worker *w = s->w;
    int64_t elapsed = w->now_ms - s->started_ms;
    s->unlogged = 0;
    const char *label = s->match.host_label ? s->match.host_label : "_";
    metrics_request_done(w->index, label, s->status, (double)elapsed / 1000.0);
    if (!w->log)
        return;
    struct access_log_entry e = {
        .wall_ms = s->started_wall_ms,
        .remote = s->remote,
        .method = s->req.method, .method_len = s->req.method_len,
        .host = s->req.host, .host_len = s->req.host_len,
        .path = s->req.path, .path_len = s->req.path_len,
        .status = s->status,
        .bytes_sent = s->bytes_sent,
        .duration_ms = (long)elapsed,
        .upstream = s->endpoint ? s->endpoint->text : NULL,
        .request_id = s->request_id, .request_id_len = s->request_id_len,
        .ingress = s->match.ingress,
    };
    access_log_append(w->log, &e);
}

static void forget_request(struct session *s)
{
    if (s->table) {
        route_table_unref(s->table);
        s->table = NULL;
    }
    memset(&s->req, 0, sizeof s->req);
    memset(&s->match, 0, sizeof s->match);
    s->endpoint = NULL;
    s->request_id = NULL;
    s->request_id_len = 0;
    s->status = 0;
    s->bytes_sent = 0;
    s->tries = 0;
    s->fresh_retry_used = 0;
    s->num_pending = 0;
    s->out_len = s->resp_base = 0;
    s->up_head_len = s->up_head_sent = 0;
    s->up_head_done = s->up_eof = 0;
    s->resp_state = R_WAIT;
    s->send_continue = 0;
    s->wants_upgrade = 0;
    s->req_abandoned = 0;
    s->hsts = 0;
}

/* The response is complete. Either wait for the next request or close. */
static enum step finish_request(struct session *s, int keep)
{
    struct worker *w = s->w;
    log_request(s);
    int up_ok = s->up_reusable && s->body_done && s->in_sent == s->body_end &&
                s->resp_state == R_DONE;
    release_upstream(s, up_ok);
    keep = keep && s->body_done && !w->draining && !s->client_eof;
    size_t rest = s->in_len > s->body_end ? s->in_len - s->body_end : 0;
    if (rest && keep)
        memmove(s->in, s->in + s->body_end, rest);
    int unread_body = !s->body_done;
    forget_request(s);
    if (!keep && unread_body) {
        /* Closing with request bytes unread would reset the connection and could destroy
         * the response in flight: half-close and drain first. */
        client_shutdown(s);
        s->phase = PH_LINGER;
        arm(s, LINGER_MS);
        return STEP_AGAIN;
    }
    if (!keep) {
        session_close(s);
        return STEP_CLOSED;
    }
    s->in_len = rest;
    s->head_len = s->body_end = s->in_sent = 0;
    s->phase = PH_HEAD;
    s->first_request = 0;
    if (rest) {
        arm(s, w->opt->client_header_timeout_ms);
    } else {
        release_buffers(s);
        timer_set(&w->wheel, &s->timer, w->now_ms + w->opt->client_idle_timeout_ms);
    }
    return STEP_AGAIN;
}

/* ---------------------------------------------------------------- proxy-made responses */

static const char *reason_for(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return "Error";
    }
}

/* The response the proxy made in out[0, len) goes to the client; then PH_REPLY. */
static enum step send_local(struct session *s, int status, size_t len, int keep)
{
    struct worker *w = s->w;
    s->status = status;
    s->num_pending = 0;
    queue_client(s, s->out, len);
    s->resp_state = R_DONE;
    s->up_reusable = 0;
    s->keepalive = (unsigned char)keep;
    s->phase = PH_REPLY;
    arm(s, w->opt->client_idle_timeout_ms);
    return STEP_AGAIN;
}

/* Answers the current request ourselves. keep: the connection may carry another request
 * (only when the request body, if any, has been read to its end). */
static enum step reply_local(struct session *s, int status, int keep)
{
    struct worker *w = s->w;
    release_upstream(s, 0);
    keep = keep && s->body_done && !w->draining;
    const char *reason = reason_for(status);
    int body_len = (int)strlen(reason) + 1;
    int head_only = s->req.method_len == 4 && memcmp(s->req.method, "HEAD", 4) == 0;
    int n = snprintf(s->out, w->out_cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "%sConnection: %s\r\n\r\n%s\n",
                     status, reason, body_len, s->hsts ? w->hsts_line : "",
                     keep ? "keep-alive" : "close", reason);
    if (head_only)
        n -= body_len;
    return send_local(s, status, (size_t)n, keep);
}

/* Length of a Host value without its port ("[v6]:443" keeps its brackets). */
static size_t host_without_port(const char *host, size_t len)
{
    if (len && host[0] == '[') {
        const char *close_bracket = memchr(host, ']', len);
        return close_bracket ? (size_t)(close_bracket - host) + 1 : 0;
    }
    const char *colon = memchr(host, ':', len);
    return colon ? (size_t)(colon - host) : len;
}

/* Client data goes into our Location field only if it cannot end the field or the head:
 * the parser already refused control bytes, this check does not rely on it. */
static int is_safe_for_location(const char *p, size_t n, int is_host)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
        if (is_host && !((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
                         c == '.' || c == '-' || c == '_' || c == '[' || c == ']' || c == ':'))
            return 0;
    }
    return 1;
}

/* Plain HTTP for a host with sslRedirect: 308 to https:// + the same host, path and query. */
static enum step reply_redirect(struct session *s)
{
    struct worker *w = s->w;
    const struct http1_request *r = &s->req;
    size_t host_len = host_without_port(r->host, r->host_len);
    const char *target;
    size_t target_len;
    origin_form(r, &target, &target_len);
    if (target_len == 0 || (target[0] != '/' && target[0] != '?'))
        target_len = 0;                                /* "*" and the like: the root */
    if (host_len == 0 || !is_safe_for_location(r->host, host_len, 1) ||
        !is_safe_for_location(target, target_len, 0))
        return reply_local(s, 400, 0);
    int default_port = strcmp(w->https_port_text, "443") == 0;
    int keep = s->body_done && !w->draining;
    int n = snprintf(s->out, w->out_cap,
                     "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://%.*s%s%s%s%.*s\r\n"
                     "Content-Length: 0\r\nConnection: %s\r\n\r\n",
                     (int)host_len, r->host, default_port ? "" : ":",
                     default_port ? "" : w->https_port_text,
                     target_len && target[0] == '/' ? "" : "/", (int)target_len, target,
                     keep ? "keep-alive" : "close");
    if (n < 0 || (size_t)n >= w->out_cap)
        return reply_local(s, 431, 0);
    return send_local(s, 308, (size_t)n, keep);
}

/* HSTS only for names with a certificate of their own (a tls entry), never for names that
 * get the default certificate. */
static int host_has_certificate(const struct session *s)
{
    char name[256];
    size_t n = host_without_port(s->req.host, s->req.host_len);
    if (!s->table || n == 0 || n >= sizeof name)
        return 0;
    memcpy(name, s->req.host, n);
    name[n] = 0;
    const struct tls_cert *cert = tls_store_select(route_table_tls(s->table), name);
    return cert && cert != tls_default_cert();
}

static enum step reply_step(struct session *s)
{
    int r = flush_client(s);
    if (r < 0) {
        s->client_eof = 1;
        return finish_request(s, 0);
    }
    if (r == 0)
        return STEP_WAIT;
    if (s->keepalive)
        return finish_request(s, 1);
    /* Closing after an error: half-close, then discard what the client still sends. */
    log_request(s);
    forget_request(s);
    client_shutdown(s);
    s->phase = PH_LINGER;
    arm(s, LINGER_MS);
    return STEP_AGAIN;
}

static enum step linger_step(struct session *s)
{
    while (s->rd_ready) {
        ssize_t n = client_read(s, s->in, s->w->in_cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && would_block())
            break;
        if (n <= 0) {
            session_close(s);
            return STEP_CLOSED;
        }
    }
    return STEP_WAIT;
}

/* ---------------------------------------------------------------- connecting upstream */

static int is_connect_failure(int err)
{
    return err == ECONNREFUSED || err == ENETUNREACH || err == EHOSTUNREACH ||
           err == ETIMEDOUT || err == ECONNRESET || err == EADDRNOTAVAIL || err == ENETDOWN;
}

/* Makes c the request's upstream; the rebuilt head (and any body still in the window) is
 * (re)sent from the start. */
static enum step adopt_upstream(struct session *s, struct upstream_conn *c)
{
    struct worker *w = s->w;
    c->owner = s;
    s->up = c;
    s->attach_count++;
    s->up_head_sent = 0;
    s->up_head_done = 0;
    s->in_sent = s->head_len;
    s->up_reusable = 1;
    s->up_eof = 0;
    s->req_abandoned = 0;
    arm(s, c->connecting ? w->opt->upstream_connect_timeout_ms
                         : w->opt->upstream_read_timeout_ms);
    return STEP_AGAIN;
}

/* Attaches an upstream connection for the request: pooled if allow_pool and one is idle,
 * else a new one to the next endpoint. On failure answers 502/503 itself. */
static enum step attach_upstream(struct session *s, int allow_pool)
{
    struct worker *w = s->w;
    const struct backend *b = s->match.backend;
    while (s->tries < MAX_CONNECT_TRIES) {
        struct endpoint *e = backend_pick(b, s->endpoint, w->now_ms);
        if (!e) {
            if (s->tries)
                return reply_local(s, 502, 0);
            metrics_upstream_error(w->index, "no_endpoint");
            return reply_local(s, 503, 0);
        }
        s->endpoint = e;
        s->tries++;
        struct upstream_conn *c = NULL;
        if (allow_pool)
            c = upstream_take_idle(&w->pool, (const struct sockaddr *)&e->addr, e->addr_len);
        if (!c)
            c = upstream_connect(&w->pool, (const struct sockaddr *)&e->addr, e->addr_len);
        if (!c) {
            int err = errno;
            if (!is_connect_failure(err)) {
                log_warn("upstream socket for %s: %s", e->text, strerror(err));
                metrics_upstream_error(w->index, "connect");
                return reply_local(s, 502, 0);
            }
            endpoint_mark_down(e, w->now_ms, w->opt->endpoint_down_ms);
            metrics_upstream_error(w->index, "connect");
            continue;
        }
        return adopt_upstream(s, c);
    }
    return reply_local(s, 502, 0);
}

/* The upstream failed before the response began. kind: metrics label. */
static enum step upstream_failed(struct session *s, const char *kind, int status)
{
    struct worker *w = s->w;
    struct upstream_conn *c = s->up;
    int nothing_sent = c && c->connecting;
    int stale_pooled = c && c->reused && !c->connecting && s->resp_state == R_WAIT &&
                       s->out_len == 0 && s->status == 0 && status != 504;
    metrics_upstream_error(w->index, kind);
    if (nothing_sent) {
        endpoint_mark_down(s->endpoint, w->now_ms, w->opt->endpoint_down_ms);
        release_upstream(s, 0);
        return attach_upstream(s, 0);
    }
    if (stale_pooled && s->replayable && !s->fresh_retry_used) {
        s->fresh_retry_used = 1;
        s->tries--;            /* a stale idle connection is not the endpoint's fault */
        struct endpoint *e = s->endpoint;
        release_upstream(s, 0);
        struct upstream_conn *fresh = upstream_connect(&w->pool,
                                                       (const struct sockaddr *)&e->addr, e->addr_len);
        if (!fresh)
            return attach_upstream(s, 0);
        s->tries++;
        return adopt_upstream(s, fresh);
    }
    release_upstream(s, 0);
    if (s->resp_state == R_WAIT && s->num_pending == 0)
        return reply_local(s, status, 0);
    session_close(s);             /* the response has begun: all we can do is cut it */
    return STEP_CLOSED;
}

/* ---------------------------------------------------------------- request head */

static void refresh_table(struct worker *w)
{
    uint64_t gen = route_table_published_generation();
    if (w->table && gen == w->table_gen)
        return;
    struct route_table *t = route_table_acquire();
    if (w->table)
        route_table_unref(w->table);
    w->table = t;
    w->table_gen = gen;
}

static enum step scan_request_body(struct session *s);

static enum step start_request(struct session *s, size_t head_len)
{
    struct worker *w = s->w;
    struct http1_request *r = &s->req;
    s->head_len = head_len;
    s->body_end = s->in_sent = head_len;
    s->unlogged = 1;
    s->started_ms = w->now_ms;
    s->started_wall_ms = w->wall_ms;
    s->keepalive = !(r->flags & HTTP1_F_CONN_CLOSE);
    s->body_done = r->body == HTTP1_BODY_NONE;
    s->replayable = 1;
    s->body_left = r->content_length;
    http1_chunked_init(&s->req_chunk);

    s->wants_upgrade = 0;
    s->upgrade = NULL;
    for (size_t i = 0; i < r->num_headers; i++) {
        const struct http1_header *h = &r->headers[i];
        if (h->name_len == 12 && http1_name_is(h, "x-request-id") &&
            request_id_is_sane(h->value, h->value_len)) {
            s->request_id = h->value;
            s->request_id_len = h->value_len;
        } else if (h->name_len == 7 && http1_name_is(h, "upgrade")) {
            s->upgrade = h->value;
            s->upgrade_len = h->value_len;
        }
    }
    if (!s->request_id)
        generate_request_id(s);
    s->wants_upgrade = (r->flags & HTTP1_F_CONN_UPGRADE) && (r->flags & HTTP1_F_UPGRADE) &&
                       s->upgrade != NULL;
    s->send_continue = (r->flags & HTTP1_F_EXPECT_CONTINUE) && r->minor_version >= 1 &&
                       !s->body_done;

    if (r->method_len == 7 && memcmp(r->method, "CONNECT", 7) == 0)
        return reply_local(s, 501, 0);
    if (r->body == HTTP1_BODY_LENGTH && w->opt->max_body_bytes > 0 &&
        r->content_length > (uint64_t)w->opt->max_body_bytes)
        return reply_local(s, 413, 0);

    refresh_table(w);
    if (w->table) {
        route_table_ref(w->table);
        s->table = w->table;
        route_table_match(s->table, r->host, r->host_len, r->path, r->path_len, &s->match);
    }
    if (s->match.ssl_redirect && !s->tls && w->https_port_text[0])
        return reply_redirect(s);
    s->hsts = s->tls && w->hsts_line[0] && host_has_certificate(s);
    if (!s->match.backend)
        return reply_local(s, 404, 1);
    if (s->match.backend->error || s->match.backend->num_endpoints == 0) {
        metrics_upstream_error(w->index, "no_endpoint");
        return reply_local(s, 503, 1);
    }
    s->up_head_len = build_upstream_head(s);
    if (s->up_head_len == 0)
        return reply_local(s, 431, 0);
    if (scan_request_body(s) != STEP_WAIT)
        return STEP_AGAIN;                /* the body already turned out bad: replied */
    s->phase = PH_PROXY;
    s->resp_state = R_WAIT;
    return attach_upstream(s, 1);
}

static enum step head_step(struct session *s)
{
    struct worker *w = s->w;
    for (;;) {
        if (s->in_len) {
            s->req.headers = w->headers;
            int r = http1_parse_request(s->in, s->in_len, &s->req, CONN_MAX_HEADERS,
                                        w->opt->max_header_bytes);
            if (r > 0)
                return start_request(s, (size_t)r);
            if (r == HTTP1_ERROR) {
                int status = s->req.error_status ? s->req.error_status : 400;
                metrics_bad_request(w->index);
                memset(&s->req, 0, sizeof s->req);
                s->started_ms = w->now_ms;
                s->started_wall_ms = w->wall_ms;
                s->body_done = 1;
                return reply_local(s, status, 0);
            }
            if (s->in_len >= w->in_cap) {
                metrics_bad_request(w->index);
                memset(&s->req, 0, sizeof s->req);
                s->started_ms = w->now_ms;
                s->body_done = 1;
                return reply_local(s, 431, 0);
            }
        }
        if (!s->rd_ready)
            return STEP_WAIT;
        if (!s->in && take_buffers(s) < 0) {
            log_warn("out of memory for connection buffers");
            session_close(s);
            return STEP_CLOSED;
        }
        ssize_t n = client_read(s, s->in + s->in_len, w->in_cap - s->in_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (would_block()) {
                if (s->in_len == 0)
                    release_buffers(s);
                return STEP_WAIT;
            }
        }
        if (n <= 0) {
            session_close(s);
            return STEP_CLOSED;
        }
        if (s->in_len == 0) {
            s->started_wall_ms = w->wall_ms;
            if (!s->first_request)
                arm(s, w->opt->client_header_timeout_ms);
        }
        s->in_len += (size_t)n;
    }
}

/* ---------------------------------------------------------------- request body */

/* Accounts the request-body bytes newly received in in[body_end, in_len). */
static enum step scan_request_body(struct session *s)
{
    struct worker *w = s->w;
    size_t avail = s->in_len - s->body_end;
    if (s->body_done || avail == 0)
        return STEP_WAIT;
    if (s->req.body == HTTP1_BODY_LENGTH) {
        size_t take = avail < s->body_left ? avail : (size_t)s->body_left;
        s->body_end += take;
        s->body_left -= take;
        s->body_done = s->body_left == 0;
        return STEP_WAIT;
    }
    long n = http1_chunked_scan(&s->req_chunk, s->in + s->body_end, avail);
    if (n < 0) {
        metrics_bad_request(w->index);
        if (s->resp_state != R_WAIT || s->num_pending) {
            session_close(s);
            return STEP_CLOSED;
        }
        s->body_done = 1;
        return reply_local(s, 400, 0);
    }
    s->body_end += (size_t)n;
    s->body_done = s->req_chunk.done;
    if (w->opt->max_body_bytes > 0 &&
        s->req_chunk.body_bytes > (uint64_t)w->opt->max_body_bytes) {
        if (s->resp_state != R_WAIT || s->num_pending) {
            session_close(s);
            return STEP_CLOSED;
        }
        s->body_done = 1;
        return reply_local(s, 413, 0);
    }
    return STEP_WAIT;
}

/* Client -> upstream: the rebuilt head, then the body as it arrives. */
static enum step request_pump(struct session *s)
{
    struct worker *w = s->w;
    struct upstream_conn *c = s->up;
    if (s->req_abandoned)
        return STEP_WAIT;
    for (;;) {
        size_t head_left = s->up_head_len - s->up_head_sent;
        size_t body_left = s->body_end - s->in_sent;
        if ((head_left || body_left) && c->wr_ready && !c->connecting) {
            struct iovec iov[2];
            int cnt = 0;
            if (head_left)
                iov[cnt++] = (struct iovec){ s->out + s->up_head_sent, head_left };
            if (body_left)
                iov[cnt++] = (struct iovec){ s->in + s->in_sent, body_left };
            ssize_t n = writev(c->fd, iov, cnt);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (would_block()) {
                    c->wr_ready = 0;
                    if (s->w->opt->upstream_send_timeout_ms > 0)
                        arm(s, w->opt->upstream_send_timeout_ms);
                    return STEP_WAIT;
                }
                /* The upstream stopped reading: often it has answered already (413, 401...).
                 * Stop sending and let the response side read that answer, or report the
                 * failure (502, or a retry for a stale pooled connection). */
                s->req_abandoned = 1;
                s->up_reusable = 0;
                c->rd_ready = 1;
                return STEP_WAIT;
            }
            size_t wrote = (size_t)n;
            if (wrote < head_left + body_left)
                c->wr_ready = 0;
            size_t h = wrote < head_left ? wrote : head_left;
            s->up_head_sent += h;
            s->in_sent += wrote - h;
            arm(s, w->opt->upstream_read_timeout_ms);
            if (!s->up_head_done && s->up_head_sent == s->up_head_len) {
                s->up_head_done = 1;
                if (s->send_continue && s->num_pending == 0 && s->in_len == s->head_len) {
                    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                    queue_client(s, cont, sizeof cont - 1);
                }
                s->send_continue = 0;
            }
            continue;
        }
        if (head_left || body_left)
            return STEP_WAIT;                       /* upstream not writable yet */
        if (s->body_done)
            return STEP_WAIT;
        if (s->in_sent == s->in_len && s->in_len > s->head_len) {
            s->in_len = s->body_end = s->in_sent = s->head_len;   /* window reused */
            s->replayable = 0;
        }
        size_t space = w->in_cap - s->in_len;
        if (space == 0 || !s->rd_ready)
            return STEP_WAIT;
        ssize_t n = client_read(s, s->in + s->in_len, space);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (would_block())
                return STEP_WAIT;
        }
        if (n <= 0) {
            s->client_eof = 1;
            session_close(s);                       /* client gave up mid-body */
            return STEP_CLOSED;
        }
        s->in_len += (size_t)n;
        enum step st = scan_request_body(s);
        if (st != STEP_WAIT)
            return st;
    }
}

/* ---------------------------------------------------------------- response */

static const char *const connection_lines[2][2] = {
    { "Connection: close\r\n\r\n", "Connection: keep-alive\r\n\r\n" },
    { "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n" },
};

/* Squeezes hop-by-hop fields out of the response head at `head` in place; returns the new
 * length, without the final empty line. keep_upgrade: leave the Upgrade field (101). */
static size_t compact_response_head(char *head, size_t head_len, const struct http1_response *r,
                                    int keep_upgrade)
{
    char *end = head + head_len;
    char *last = end - (head_len >= 2 && end[-2] == '\r' ? 2 : 1);   /* the empty line */
    char *dst = r->num_headers ? (char *)r->headers[0].name : last;
    if (head_len > 8 && memcmp(head, "HTTP/1.0", 8) == 0)
        head[7] = '1';              /* we speak HTTP/1.1 to the client */
    struct conn_tokens ct;
    collect_connection_fields(r->headers, r->num_headers, &ct);
    /* A body framed by chunked coding or by the close must not also carry a Content-Length
     * (RFC 9112 6.3: Transfer-Encoding overrides it; the client must not see both). */
    int drop_length = r->body == HTTP1_BODY_CHUNKED || r->body == HTTP1_BODY_UNTIL_CLOSE;
    for (size_t i = 0; i < r->num_headers; i++) {
        const struct http1_header *h = &r->headers[i];
        const char *start = h->name;
        const char *stop = i + 1 < r->num_headers ? r->headers[i + 1].name : last;
        int keep = keep_upgrade && h->name_len == 7 && http1_name_is(h, "upgrade");
        if (!keep && (http1_is_hop_by_hop(h) || named_by_connection(h, &ct)))
            continue;
        if (drop_length && h->name_len == 14 && http1_name_is(h, "content-length"))
            continue;
        size_t n = (size_t)(stop - start);
        if (dst != start)
            memmove(dst, start, n);
        dst += n;
    }
    return (size_t)(dst - head);
}

/* Decodes chunked coding in place (the bytes were validated by http1_chunked_scan already)
 * for HTTP/1.0 clients, which cannot parse it; returns the number of data bytes now at p. */
enum { DC_SIZE, DC_SIZE_LINE, DC_DATA, DC_DATA_END, DC_TRAILER_START, DC_TRAILER_LINE, DC_DONE };

static size_t dechunk(struct session *s, char *p, size_t n)
{
    char *dst = p;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        switch (s->dechunk_state) {
        case DC_SIZE:
            if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')) {
                s->dechunk_left = s->dechunk_left * 16 +
                                  (uint64_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
                break;
            }
            s->dechunk_state = DC_SIZE_LINE;
            /* fall through */
        case DC_SIZE_LINE:
            if (c == '\n')
                s->dechunk_state = s->dechunk_left ? DC_DATA : DC_TRAILER_START;
            break;
        case DC_DATA: {
            size_t take = n - i < s->dechunk_left ? n - i : (size_t)s->dechunk_left;
            memmove(dst, p + i, take);
            dst += take;
            i += take - 1;
            s->dechunk_left -= take;
            if (s->dechunk_left == 0)
                s->dechunk_state = DC_DATA_END;
            break;
        }
        case DC_DATA_END:
            if (c == '\n')
                s->dechunk_state = DC_SIZE;
            break;
        case DC_TRAILER_START:
            if (c == '\n')
                s->dechunk_state = DC_DONE;
            else if (c != '\r')
                s->dechunk_state = DC_TRAILER_LINE;
            break;
        case DC_TRAILER_LINE:
            if (c == '\n')
                s->dechunk_state = DC_TRAILER_START;
            break;
        default:
            break;
        }
    }
    return (size_t)(dst - p);
}

/* Response-body bytes just read into out: queue what belongs to the body. */
static enum step response_body_bytes(struct session *s, char *p, size_t n)
{
    switch (s->resp_body) {
    case HTTP1_BODY_LENGTH: {
        size_t take = n < s->resp_left ? n : (size_t)s->resp_left;
        queue_client(s, p, take);
        s->resp_left -= take;
        if (take < n)
            s->up_reusable = 0;     /* the server sent more than it announced */
        if (s->resp_left == 0)
            s->resp_state = R_DONE;
        break;
    }
    case HTTP1_BODY_CHUNKED: {
        long k = http1_chunked_scan(&s->resp_chunk, p, n);
        if (k < 0) {
            metrics_upstream_error(s->w->index, "bad_response");
            session_close(s);
            return STEP_CLOSED;
        }
        queue_client(s, p, s->dechunk ? dechunk(s, p, (size_t)k) : (size_t)k);
        if (s->resp_chunk.done) {
            s->resp_state = R_DONE;
            if ((size_t)k < n)
                s->up_reusable = 0;
        }
        break;
    }
    case HTTP1_BODY_UNTIL_CLOSE:
        queue_client(s, p, n);
        break;
    default:
        if (n)
            s->up_reusable = 0;
        s->resp_state = R_DONE;
        break;
    }
    return STEP_WAIT;
}

static enum step start_tunnel(struct session *s, char *head, size_t compacted, size_t head_len)
{
    static const char upgrade_line[] = "Connection: upgrade\r\n\r\n";
    s->status = 101;
    queue_client(s, head, compacted);
    queue_client(s, upgrade_line, sizeof upgrade_line - 1);
    char *rest = head + head_len;
    queue_client(s, rest, (size_t)(s->out + s->out_len - rest));
    log_request(s);
    /* The request head is no longer needed: client bytes not yet sent are tunnel data. */
    size_t early = s->in_len - s->in_sent;
    memmove(s->in, s->in + s->in_sent, early);
    s->in_len = early;
    s->in_sent = 0;
    s->phase = PH_TUNNEL;
    s->up_reusable = 0;
    if (s->table) {
        route_table_unref(s->table);
        s->table = NULL;
    }
    arm(s, s->w->opt->client_idle_timeout_ms);
    return STEP_AGAIN;
}

/* A response head is (perhaps) complete in out[resp_base, out_len). Returns STEP_WAIT when
 * more bytes are needed, STEP_AGAIN when it was handled. */
static enum step response_head(struct session *s, int *need_more)
{
    struct worker *w = s->w;
    struct http1_response r;
    r.headers = w->headers;
    char *head = s->out + s->resp_base;
    size_t avail = s->out_len - s->resp_base;
    int is_head = s->req.method_len == 4 && memcmp(s->req.method, "HEAD", 4) == 0;
    int n = http1_parse_response(head, avail, &r, CONN_MAX_HEADERS, w->out_cap, is_head);
    *need_more = 0;
    if (n == HTTP1_INCOMPLETE) {
        if (s->resp_base == 0 && s->out_len == w->out_cap)
            return upstream_failed(s, "bad_response", 502);    /* head too large */
        *need_more = 1;
        return STEP_WAIT;
    }
    if (n < 0) {
        log_info("bad response from %s: %s", s->endpoint->text,
                 r.error_reason ? r.error_reason : "?");
        s->up_reusable = 0;
        release_upstream(s, 0);
        metrics_upstream_error(w->index, "bad_response");
        return reply_local(s, 502, 0);
    }
    size_t head_len = (size_t)n;
    if (r.status == 101) {
        if (!s->wants_upgrade)
            return upstream_failed(s, "bad_response", 502);
        size_t compacted = compact_response_head(head, head_len, &r, 1);
        return start_tunnel(s, head, compacted, head_len);
    }
    if (r.status < 200) {
        /* Interim response: relay it (HTTP/1.1 clients only), then parse the next head. */
        if (s->req.minor_version >= 1) {
            size_t compacted = compact_response_head(head, head_len, &r, 0);
            queue_client(s, head, compacted);
            queue_client(s, "\r\n", 2);
        }
        s->resp_base += head_len;
        return STEP_AGAIN;
    }
    s->status = r.status;
    /* An HTTP/1.0 client gets a chunked body decoded, delimited by our close. */
    s->dechunk = r.body == HTTP1_BODY_CHUNKED && s->req.minor_version == 0;
    s->dechunk_state = DC_SIZE;
    s->dechunk_left = 0;
    int keep = s->keepalive && !w->draining && s->body_done &&
               r.body != HTTP1_BODY_UNTIL_CLOSE && !s->dechunk;
    s->keepalive = (unsigned char)keep;
    s->up_reusable = !(r.flags & HTTP1_F_CONN_CLOSE) && r.body != HTTP1_BODY_UNTIL_CLOSE;
    size_t compacted = compact_response_head(head, head_len, &r, 0);
    queue_client(s, head, compacted);
    if (s->hsts)
        queue_client(s, w->hsts_line, strlen(w->hsts_line));
    const char *line = connection_lines[r.body == HTTP1_BODY_CHUNKED && !s->dechunk][keep];
    queue_client(s, line, strlen(line));
    s->resp_state = R_BODY;
    s->resp_body = r.body;
    s->resp_left = r.content_length;
    http1_chunked_init(&s->resp_chunk);
    if (r.body == HTTP1_BODY_LENGTH && r.content_length == 0)
        s->resp_body = HTTP1_BODY_NONE;
    char *rest = head + head_len;
    size_t rest_len = (size_t)(s->out + s->out_len - rest);
    if (s->resp_body == HTTP1_BODY_NONE) {
        s->resp_state = R_DONE;
        if (rest_len)
            s->up_reusable = 0;
        return STEP_AGAIN;
    }
    enum step st = response_body_bytes(s, rest, rest_len);
    return st == STEP_CLOSED ? st : STEP_AGAIN;
}

/* Upstream -> client. */
static enum step response_pump(struct session *s)
{
    struct worker *w = s->w;
    for (;;) {
        int f = flush_client(s);
        if (f < 0) {
            s->client_eof = 1;
            session_close(s);
            return STEP_CLOSED;
        }
        if (f == 0)
            return STEP_WAIT;
        if (s->resp_state == R_DONE)
            return STEP_WAIT;
        if (s->resp_state == R_WAIT && s->out_len > s->resp_base) {
            int need_more;
            unsigned attached = s->attach_count;
            enum step st = response_head(s, &need_more);
            if (st == STEP_CLOSED || s->phase != PH_PROXY || s->attach_count != attached)
                return st == STEP_CLOSED ? st : STEP_AGAIN;
            if (!need_more)
                continue;
        }
        if (!s->up_head_done || !s->up)
            return STEP_WAIT;
        if (s->resp_state == R_BODY) {
            s->out_len = 0;                       /* everything queued has been written */
        } else if (s->resp_base) {
            memmove(s->out, s->out + s->resp_base, s->out_len - s->resp_base);
            s->out_len -= s->resp_base;
            s->resp_base = 0;
        }
        struct upstream_conn *c = s->up;
        if (!c->rd_ready)
            return STEP_WAIT;
        size_t space = w->out_cap - s->out_len;
        ssize_t n = read(c->fd, s->out + s->out_len, space);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (would_block()) {
                c->rd_ready = 0;
                return STEP_WAIT;
            }
            if (s->resp_state == R_WAIT)
                return upstream_failed(s, "reset", 502);
            session_close(s);
            return STEP_CLOSED;
        }
        if (n == 0) {
            if (s->resp_state == R_WAIT)
                return upstream_failed(s, "reset", 502);
            if (s->resp_body == HTTP1_BODY_UNTIL_CLOSE) {
                s->resp_state = R_DONE;
                s->up_reusable = 0;
                s->keepalive = 0;
                release_upstream(s, 0);
                continue;
            }
            session_close(s);                       /* truncated body */
            return STEP_CLOSED;
        }
        if ((size_t)n < space)
            c->rd_ready = 0;
        arm(s, w->opt->upstream_read_timeout_ms);
        char *p = s->out + s->out_len;
        s->out_len += (size_t)n;
        if (s->resp_state == R_BODY) {
            if (response_body_bytes(s, p, (size_t)n) == STEP_CLOSED)
                return STEP_CLOSED;
        }
    }
}

/* Runs both directions; STEP_AGAIN whenever the phase or the upstream changed. */
static enum step proxy_step(struct session *s)
{
    unsigned attached = s->attach_count;
    if (s->up && s->up->connecting)
        return STEP_WAIT;
    if (s->up) {
        enum step st = request_pump(s);
        if (st == STEP_CLOSED)
            return st;
        if (s->phase != PH_PROXY || s->attach_count != attached)
            return STEP_AGAIN;
    }
    enum step st = response_pump(s);
    if (st == STEP_CLOSED)
        return st;
    if (s->phase != PH_PROXY || s->attach_count != attached)
        return STEP_AGAIN;
    if (s->resp_state == R_DONE && s->num_pending == 0)
        return finish_request(s, s->keepalive);
    return STEP_WAIT;
}

/* ---------------------------------------------------------------- tunnel */

static enum step tunnel_step(struct session *s)
{
    struct worker *w = s->w;
    struct upstream_conn *c = s->up;
    int progress = 1;
    while (progress) {
        progress = 0;
        if (s->in_sent < s->in_len && c->wr_ready) {
            ssize_t n = write(c->fd, s->in + s->in_sent, s->in_len - s->in_sent);
            if (n < 0 && !would_block() && errno != EINTR)
                goto done;
            if (n < 0)
                c->wr_ready = 0;
            else {
                s->in_sent += (size_t)n;
                progress = 1;
            }
        }
        if (s->in_sent == s->in_len) {
            s->in_sent = s->in_len = 0;
            if (s->client_eof)
                goto done;
        }
        if (s->in_len < w->in_cap && s->rd_ready && !s->client_eof) {
            ssize_t n = client_read(s, s->in + s->in_len, w->in_cap - s->in_len);
            if (n < 0 && !would_block() && errno != EINTR)
                goto done;
            if (n == 0)
                s->client_eof = 1;
            else if (n > 0)
                s->in_len += (size_t)n;
            progress = 1;
        }
        int f = flush_client(s);
        if (f < 0)
            goto done;
        if (f == 1) {
            s->out_len = 0;
            if (s->up_eof)
                goto done;
            if (c->rd_ready) {
                ssize_t n = read(c->fd, s->out, w->out_cap);
                if (n < 0 && would_block())
                    c->rd_ready = 0;
                else if (n < 0 && errno != EINTR)
                    goto done;
                else if (n == 0)
                    s->up_eof = 1;
                else if (n > 0) {
                    s->out_len = (size_t)n;
                    queue_client(s, s->out, (size_t)n);
                }
                progress = 1;
            }
        }
    }
    arm(s, w->opt->client_idle_timeout_ms);
    return STEP_WAIT;
done:
    session_close(s);
    return STEP_CLOSED;
}

/* ---------------------------------------------------------------- driving */

static void session_drive(struct session *s)
{
    for (;;) {
        enum step st;
        switch (s->phase) {
        case PH_HEAD:   st = head_step(s); break;
        case PH_PROXY:  st = proxy_step(s); break;
        case PH_TUNNEL: st = tunnel_step(s); break;
        case PH_REPLY:  st = reply_step(s); break;
        default:        st = linger_step(s); break;
        }
        if (st != STEP_AGAIN)
            return;
    }
}

static void session_timer_fired(struct timer *t)
{
    struct session *s = (struct session *)((char *)t - offsetof(struct session, timer));
    struct worker *w = s->w;
    enum step st = STEP_AGAIN;
    switch (s->phase) {
    case PH_HEAD:
        if (s->in_len == 0) {
            session_close(s);                       /* idle keep-alive: close silently */
            return;
        }
        memset(&s->req, 0, sizeof s->req);
        s->started_ms = w->now_ms;
        s->body_done = 1;
        st = reply_local(s, 408, 0);
        break;
    case PH_PROXY:
        if (s->up && s->up->connecting) {
            log_info("connect to %s timed out", s->endpoint->text);
            st = upstream_failed(s, "timeout", 502);
        } else if (s->resp_state == R_WAIT && s->num_pending == 0) {
            st = upstream_failed(s, "timeout", 504);
        } else {
            metrics_upstream_error(w->index, "timeout");
            session_close(s);
            return;
        }
        break;
    default:
        session_close(s);
        return;
    }
    if (st != STEP_CLOSED)
        session_drive(s);
}

void session_event(struct session *s, uint32_t events)
{
    if (s->kind != WATCH_CLIENT)
        return;                                     /* closed earlier in this batch */
    int readable = (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    int writable = (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
    if (s->tls) {
        /* Either socket direction may unblock either plaintext direction: retry both. */
        tls_transport_socket_ready(s->tls, readable, writable);
        s->rd_ready = s->wr_ready = 1;
    } else {
        s->rd_ready |= (unsigned char)readable;
        s->wr_ready |= (unsigned char)writable;
    }
    session_drive(s);
}

void upstream_conn_event(struct upstream_conn *c, uint32_t events)
{
    if (c->kind != WATCH_UPSTREAM)
        return;
    struct session *s = c->owner;
    if (!s) {
        upstream_idle_event(c);                     /* idle: the server closed or babbled */
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->rd_ready = 1;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->wr_ready = 1;
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        /* SO_ERROR, not the event bits, decides: the event may be a stale one meant for an
         * earlier connection that used this (recycled) object. */
        if ((events & (EPOLLERR | EPOLLHUP)) &&
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            log_info("connect to %s: %s", s->endpoint->text, strerror(err));
            if (upstream_failed(s, "connect", 502) == STEP_CLOSED)
                return;
            session_drive(s);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        c->connecting = 0;
        arm(s, s->w->opt->upstream_read_timeout_ms);
    }
    session_drive(s);
}

/* ---------------------------------------------------------------- open / close */

static void format_remote(char *dst, size_t len, const struct sockaddr *sa)
{
    dst[0] = 0;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, dst, (socklen_t)len);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], dst, (socklen_t)len);
        else
            inet_ntop(AF_INET6, a, dst, (socklen_t)len);
    }
}

void session_open(struct worker *w, int fd, const struct sockaddr *peer, socklen_t peer_len,
                  int tls)
{
    struct session *s = w->free_sessions;
    if (s) {
        w->free_sessions = s->free_next;
    } else if (!(s = malloc(sizeof *s))) {
        close(fd);
        return;
    }
    memset(s, 0, sizeof *s);
    if (tls) {
        refresh_table(w);             /* new handshakes get the newest certificates */
        s->tls = tls_transport_open(&w->free_tls, fd, w->table);
        if (!s->tls) {
            log_warn("cannot start a TLS connection: out of memory or entropy");
            close(fd);
            s->free_next = w->free_sessions;
            w->free_sessions = s;
            return;
        }
    }
    s->kind = WATCH_CLIENT;
    s->fd = fd;
    s->w = w;
    s->rd_ready = 1;          /* the request may well be there already */
    s->wr_ready = 1;
    s->first_request = 1;
    s->phase = PH_HEAD;
    s->timer.fire = session_timer_fired;
    format_remote(s->remote, sizeof s->remote, peer);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s };
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        if (s->tls)
            tls_transport_close(&w->free_tls, s->tls);
        close(fd);
        s->kind = 0;
        s->free_next = w->free_sessions;
        w->free_sessions = s;
        return;
    }
    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->num_sessions++;
    atomic_fetch_add_explicit(&w->active, 1, memory_order_relaxed);
    metrics_connection_opened(w->index);
    arm(s, w->opt->client_header_timeout_ms);
    session_drive(s);
}

static void session_close(struct session *s)
{
    struct worker *w = s->w;
    if (s->unlogged) {
        /* Cut short: 499 (nginx's "client closed request") when the client left first. */
        if (!s->status)
            s->status = s->client_eof ? 499 : 502;
        log_request(s);
    }
    release_buffers(s);
    if (s->up) {
        upstream_close(&w->pool, s->up);
        s->up = NULL;
    }
    if (s->table) {
        route_table_unref(s->table);
        s->table = NULL;
    }
    timer_cancel(&w->wheel, &s->timer);
    if (s->tls) {
        tls_transport_close(&w->free_tls, s->tls);
        s->tls = NULL;
    }
    close(s->fd);
    s->fd = -1;
    s->kind = 0;
    if (s->prev)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->num_sessions--;
    atomic_fetch_sub_explicit(&w->active, 1, memory_order_relaxed);
    metrics_connection_closed(w->index);
    s->free_next = w->free_sessions;
    w->free_sessions = s;
}

void worker_drain_idle(struct worker *w)
{
    struct session *s = w->sessions;
    while (s) {
        struct session *next = s->next;
        if (s->phase == PH_HEAD && s->in_len == 0)
            session_close(s);
        s = next;
    }
    upstream_close_idle(&w->pool);
}

int worker_cut_off(struct worker *w)
{
    int n = 0;
    while (w->sessions) {
        session_close(w->sessions);
        n++;
    }
    return n;
}

void worker_free_sessions(struct worker *w)
{
    tls_transport_free_all(&w->free_tls);
    while (w->free_buffers) {
        struct buffer_block *b = w->free_buffers;
        w->free_buffers = b->next;
        free(b);
    }
    while (w->free_sessions) {
        struct session *s = w->free_sessions;
        w->free_sessions = s->free_next;
        free(s);
    }
}
