/*
 * kube_client.c - requests to the Kubernetes API server over one libcurl multi handle.
 *
 * Every request is its own easy handle, duplicated from a template that carries what all
 * requests share (CA, RESOLVE, TLS verification, keepalive, timeouts, User-Agent), so a libcurl
 * that cannot take these options fails once, in kube_client_new. Connection reuse across
 * requests (HTTP/1.1 keep-alive) is libcurl's, through the multi's connection cache.
 *
 * libcurl forbids most of its API inside its own callbacks, and our callers want to start and
 * cancel requests from theirs. So libcurl's callbacks only record: body bytes go into a
 * per-request buffer, Retry-After into a field. kube_client_poll, once curl_multi_perform has
 * returned, hands streamed bytes to on_data and runs on_done for finished requests. While it
 * does (c->dispatching), a cancelled or finished request is only marked; it is freed when the
 * walk is over, so a callback may cancel any request, its own included, without pulling memory
 * from under the walk or from under the on_data running with that request's buffer.
 *
 * Client certificates. libcurl's BearSSL backend ignores CURLOPT_SSLCERT*, so with it the chain
 * and key are parsed here (lib/tls_material) and installed into the BearSSL client context from
 * CURLOPT_SSL_CTX_FUNCTION; with other backends CURLOPT_SSLCERT_BLOB/SSLKEY_BLOB do it. Either
 * way the certificate PEM is handed to libcurl as CURLOPT_SSLCERT_BLOB: libcurl compares it when
 * it picks a connection or a TLS session to reuse (Curl_ssl_config_matches in lib/vtls/vtls.c,
 * libcurl 7.88), so a connection or session made with another certificate is never reused, on
 * BearSSL too, where the blob is otherwise unused. That is the whole of "a certificate change
 * never reuses an old connection": no bookkeeping of which connection has which certificate.
 * Parsed material is reference-counted by the requests using it, since a handshake may still
 * need it after the credential moved on; renegotiation is disabled, so no connection needs it
 * once its handshake is over.
 *
 * Response bodies may hold Secrets (private keys): buffers are wiped before they are freed.
 */
#include "kube_client.h"

#include "kube_credentials.h"
#include "log.h"
#include "tls_material.h"

#include <bearssl.h>
#include <curl/curl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef GATEHOUSE_VERSION
#define GATEHOUSE_VERSION "unknown"
#endif

#define CONNECT_TIMEOUT_MS 10000
#define KEEPALIVE_IDLE_S 30
#define KEEPALIVE_INTERVAL_S 10
#define DAYS_0000_TO_1970 719528
#define STATUS_PREFIX_MAX 200

/* A parsed client certificate for the BearSSL context; shared by the requests started while it
 * was current, and by the client while it is. */
struct cert_material {
    struct tls_material tls;
    unsigned refs;
};

enum request_state {
    REQ_RUNNING,    /* in the multi */
    REQ_OVER,       /* done (its on_done may be running) or cancelled; freed by the walk */
};

struct kube_request {
    struct kube_request *prev, *next;
    enum request_state state;
    CURL *easy;
    struct curl_slist *headers;
    struct cert_material *material;
    kube_data_fn *on_data;
    kube_done_fn *on_done;
    void *ctx;
    char *buf;                     /* the body so far; for a 2xx stream, bytes not yet handed on */
    size_t len, cap;
    int retry_after_s;
    int finished;                  /* libcurl reported it done; result holds how */
    CURLcode result;
    const char *write_failure;     /* why our write callback refused bytes, or NULL */
    char errbuf[CURL_ERROR_SIZE];
};

struct kube_client {
    const struct kube_config *cfg;
    struct kube_credentials *creds;
    CURLM *multi;
    CURL *template;                /* options every request shares; duplicated per request */
    struct curl_slist *resolve;
    int bearssl;                   /* libcurl's TLS backend is BearSSL: certificates go by hand */
    unsigned cert_gen;             /* credential generation `material` was made for */
    int cert_gen_known;
    struct cert_material *material;
    char last_refresh_error[256];  /* logged once, not once per request */
    struct kube_request *head, *tail;
    unsigned running;
    int dispatching;
};

/* ---- small helpers ---- */

static void slist_wipe_free(struct curl_slist *l)
{
    for (struct curl_slist *i = l; i; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
}

static int64_t wall_clock(void)
{
    return (int64_t)time(NULL);
}

/* ---- client certificates ---- */

static void material_unref(struct cert_material *m)
{
    if (m && --m->refs == 0) {
        tls_material_free(&m->tls);
        free(m);
    }
}

static void pem_to_x509(void *ctx, const void *data, size_t len)
{
    br_x509_decoder_push(ctx, data, len);
}

/* The leaf certificate's validity period. Whether the certificate is still good is the API
 * server's call on its own clock, so the material is parsed at a time inside that period. */
static int leaf_validity(const char *pem, size_t len, int64_t *not_before, int64_t *not_after)
{
    br_pem_decoder_context pc;
    br_x509_decoder_context xc;
    int in_cert = 0;
    br_pem_decoder_init(&pc);
    while (len > 0) {
        size_t n = br_pem_decoder_push(&pc, pem, len);
        pem += n;
        len -= n;
        switch (br_pem_decoder_event(&pc)) {
        case BR_PEM_BEGIN_OBJ:
            in_cert = strcmp(br_pem_decoder_name(&pc), "CERTIFICATE") == 0;
            if (in_cert)
                br_x509_decoder_init(&xc, NULL, NULL);
            br_pem_decoder_setdest(&pc, in_cert ? pem_to_x509 : NULL, &xc);
            break;
        case BR_PEM_END_OBJ:
            if (in_cert) {
                if (!br_x509_decoder_get_pkey(&xc))
                    return -1;
                *not_before = ((int64_t)xc.notbefore_days - DAYS_0000_TO_1970) * 86400 +
                              xc.notbefore_seconds;
                *not_after = ((int64_t)xc.notafter_days - DAYS_0000_TO_1970) * 86400 +
                             xc.notafter_seconds;
                return 0;
            }
            break;
        case BR_PEM_ERROR:
            return -1;
        }
    }
    return -1;
}

/* Parses the current client certificate for the BearSSL path; NULL (logged) when unusable. */
static struct cert_material *material_new(struct kube_client *c, const char *cert, size_t cert_len,
                                          const char *key, size_t key_len)
{
    int64_t now = wall_clock(), not_before, not_after;
    if (leaf_validity(cert, cert_len, &not_before, &not_after) == 0 &&
        (now < not_before || now > not_after)) {
        char when[32];
        time_t t = (time_t)(now < not_before ? not_before : not_after);
        struct tm tm;
        if (!gmtime_r(&t, &tm) || !strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm))
            snprintf(when, sizeof when, "@%lld", (long long)t);
        log_warn("%s: client certificate %s %s (UTC) by this clock; sending it anyway",
                 c->cfg->origin, now < not_before ? "is not valid before" : "expired on", when);
        now = now < not_before ? not_before : not_after;
    }
    struct cert_material *m = calloc(1, sizeof *m);
    char why[256];
    if (!m) {
        log_warn("%s: client certificate: out of memory; requests go without it", c->cfg->origin);
        return NULL;
    }
    if (tls_material_parse(cert, cert_len, key, key_len, now, &m->tls, why, sizeof why) < 0) {
        log_warn("%s: client certificate not usable (%s); requests go without it",
                 c->cfg->origin, why);
        free(m);
        return NULL;
    }
    m->refs = 1;
    return m;
}

/* CURLOPT_SSL_CTX_FUNCTION on BearSSL: runs before br_ssl_client_reset of each new connection. */
static CURLcode install_client_cert(CURL *easy, void *ssl_ctx, void *userptr)
{
    br_ssl_client_context *cc = ssl_ctx;
    const struct tls_material *t = &((struct cert_material *)userptr)->tls;
    br_ssl_engine_add_flags(&cc->eng, BR_OPT_NO_RENEGOTIATION);
    if (t->key_type == BR_KEYTYPE_RSA)
        br_ssl_client_set_single_rsa(cc, t->chain, t->chain_len, &t->rsa,
                                     br_rsa_pkcs1_sign_get_default());
    else
        br_ssl_client_set_single_ec(cc, t->chain, t->chain_len, &t->ec, BR_KEYTYPE_SIGN, 0,
                                    br_ec_get_default(), br_ecdsa_sign_asn1_get_default());
    return CURLE_OK;
}

/* Brings the credential up to date before a request; a failure keeps the old one. */
static void refresh_credentials(struct kube_client *c)
{
    char why[sizeof c->last_refresh_error];
    if (kube_credentials_refresh(c->creds, wall_clock(), why, sizeof why) == 0) {
        c->last_refresh_error[0] = '\0';
    } else if (strcmp(why, c->last_refresh_error) != 0) {
        log_warn("%s: refreshing the credential failed, going on with the last one: %s",
                 c->cfg->origin, why);
        memcpy(c->last_refresh_error, why, sizeof why);
    }
    unsigned gen = kube_credentials_cert_generation(c->creds);
    if (c->cert_gen_known && gen == c->cert_gen)
        return;
    c->cert_gen = gen;
    c->cert_gen_known = 1;
    material_unref(c->material);
    c->material = NULL;
    size_t cert_len = 0, key_len = 0;
    const char *cert = kube_credentials_client_cert(c->creds, &cert_len);
    const char *key = kube_credentials_client_key(c->creds, &key_len);
    if (c->bearssl && cert && key)
        c->material = material_new(c, cert, cert_len, key, key_len);
}

/* ---- libcurl callbacks: record only ---- */

/* Grows by copying, so the old buffer can be wiped (it may hold a Secret). */
static int buf_reserve(struct kube_request *r, size_t more)
{
    if (r->cap - r->len > more)
        return 0;
    size_t cap = r->cap ? r->cap : 16384;
    while (cap - r->len <= more)
        cap *= 2;
    char *p = malloc(cap);
    if (!p)
        return -1;
    if (r->len)
        memcpy(p, r->buf, r->len);
    kube_wipe_free(r->buf, r->cap);
    r->buf = p;
    r->cap = cap;
    return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    struct kube_request *r = userp;
    size_t len = size * n;
    if (len > KUBE_CLIENT_MAX_BODY - r->len) {
        r->write_failure = "response body larger than 512 MiB";
        return 0;
    }
    if (buf_reserve(r, len) < 0) {
        r->write_failure = "out of memory for the response body";
        return 0;
    }
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    return len;
}

/* Retry-After: delta-seconds or an HTTP-date (RFC 9110 10.2.3); -1 when neither. */
static int parse_retry_after(const char *v, size_t len)
{
    char s[64];
    while (len > 0 && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
        len--;
    if (len == 0 || len >= sizeof s)
        return -1;
    memcpy(s, v, len);
    s[len] = '\0';
    if (strspn(s, "0123456789") == len) {
        long long secs = len > 9 ? INT_MAX : atoll(s);
        return secs > INT_MAX ? INT_MAX : (int)secs;
    }
    time_t when = curl_getdate(s, NULL);
    if (when == (time_t)-1)
        return -1;
    int64_t delta = (int64_t)when - wall_clock();
    return delta < 0 ? 0 : delta > INT_MAX ? INT_MAX : (int)delta;
}

static size_t on_header(char *line, size_t size, size_t n, void *userp)
{
    struct kube_request *r = userp;
    size_t len = size * n;
    static const char name[] = "Retry-After:";
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0)
        r->retry_after_s = -1;   /* a new response (after 100 Continue): forget the last one's */
    else if (len > sizeof name - 1 && strncasecmp(line, name, sizeof name - 1) == 0)
        r->retry_after_s = parse_retry_after(line + sizeof name - 1, len - (sizeof name - 1));
    return len;
}

/* ---- client ---- */

static CURL *make_template(const struct kube_config *cfg, struct curl_slist *resolve,
                           char *err, size_t errlen)
{
    CURL *e = curl_easy_init();
    if (!e) {
        set_err(err, errlen, "curl_easy_init failed");
        return NULL;
    }
    CURLcode rc = CURLE_OK;
#define SET(opt, val) do { if (rc == CURLE_OK && (rc = curl_easy_setopt(e, opt, val)) != CURLE_OK) \
                               set_err(err, errlen, "libcurl refuses %s: %s", #opt, \
                                       curl_easy_strerror(rc)); } while (0)
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, (long)KEEPALIVE_IDLE_S);
    SET(CURLOPT_TCP_KEEPINTVL, (long)KEEPALIVE_INTERVAL_S);
    SET(CURLOPT_USERAGENT, "gatehouse-agent/" GATEHOUSE_VERSION);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    if (resolve)
        SET(CURLOPT_RESOLVE, resolve);
    if (cfg->ca_pem) {
        struct curl_blob ca = { .data = cfg->ca_pem, .len = cfg->ca_len, .flags = CURL_BLOB_COPY };
        SET(CURLOPT_CAINFO_BLOB, &ca);
    }
    if (cfg->insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    }
#undef SET
    if (rc != CURLE_OK) {
        curl_easy_cleanup(e);
        return NULL;
    }
    return e;
}

struct kube_client *kube_client_new(const struct kube_config *cfg, char *err, size_t errlen)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        set_err(err, errlen, "curl_global_init failed");
        return NULL;
    }
    struct kube_client *c = calloc(1, sizeof *c);
    if (!c) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    c->bearssl = v->ssl_version && strncmp(v->ssl_version, "BearSSL", 7) == 0;
    if (cfg->resolve && !(c->resolve = curl_slist_append(NULL, cfg->resolve)))
        set_err(err, errlen, "out of memory");
    else if (!(c->creds = kube_credentials_new(cfg)))
        set_err(err, errlen, "out of memory");
    else if (!(c->multi = curl_multi_init()))
        set_err(err, errlen, "curl_multi_init failed");
    else if ((c->template = make_template(cfg, c->resolve, err, errlen)))
        return c;
    kube_client_free(c);
    return NULL;
}

static void release_handle(struct kube_client *c, struct kube_request *r)
{
    curl_multi_remove_handle(c->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    slist_wipe_free(r->headers);
    r->headers = NULL;
    material_unref(r->material);
    r->material = NULL;
    r->state = REQ_OVER;
    c->running--;
}

static void request_free(struct kube_client *c, struct kube_request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        c->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        c->tail = r->prev;
    kube_wipe_free(r->buf, r->cap);
    free(r);
}

void kube_client_free(struct kube_client *c)
{
    if (!c)
        return;
    while (c->head) {
        if (c->head->state == REQ_RUNNING)
            release_handle(c, c->head);
        request_free(c, c->head);
    }
    if (c->template)
        curl_easy_cleanup(c->template);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    material_unref(c->material);
    kube_credentials_free(c->creds);
    curl_slist_free_all(c->resolve);
    free(c);
}

/* ---- starting requests ---- */

static struct curl_slist *request_headers(struct kube_client *c,
                                          const struct kube_request_spec *spec)
{
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    /* An empty "Expect:" keeps libcurl from waiting for 100 Continue on large bodies. */
    if (h && !curl_slist_append(h, "Expect:"))
        goto fail;
    if (h && spec->content_type) {
        char line[256];
        snprintf(line, sizeof line, "Content-Type: %s", spec->content_type);
        if (!curl_slist_append(h, line))
            goto fail;
    }
    const char *token = kube_credentials_token(c->creds);
    if (h && token) {
        size_t len = strlen("Authorization: Bearer ") + strlen(token) + 1;
        char *line = malloc(len);
        if (!line)
            goto fail;
        snprintf(line, len, "Authorization: Bearer %s", token);
        struct curl_slist *added = curl_slist_append(h, line);
        kube_wipe_free(line, len);
        if (!added)
            goto fail;
    }
    return h;
fail:
    slist_wipe_free(h);
    return NULL;
}

static int set_method(CURL *e, const struct kube_request_spec *spec)
{
    const char *method = spec->method ? spec->method : "GET";
    int ok = 1;
    if (spec->body || strcmp(method, "POST") == 0) {
        ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)spec->body_len) == CURLE_OK;
        ok &= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, spec->body ? spec->body : "") == CURLE_OK;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
    return ok ? 0 : -1;
}

/* The certificate options of one request (see the file comment for why the blob is always set). */
static int set_client_cert(struct kube_client *c, struct kube_request *r)
{
    size_t cert_len = 0, key_len = 0;
    const char *cert = kube_credentials_client_cert(c->creds, &cert_len);
    const char *key = kube_credentials_client_key(c->creds, &key_len);
    if (!cert || !key)
        return 0;
    struct curl_blob cb = { .data = (void *)cert, .len = cert_len, .flags = CURL_BLOB_COPY };
    int ok = curl_easy_setopt(r->easy, CURLOPT_SSLCERT_BLOB, &cb) == CURLE_OK;
    if (!c->bearssl) {
        struct curl_blob kb = { .data = (void *)key, .len = key_len, .flags = CURL_BLOB_COPY };
        ok &= curl_easy_setopt(r->easy, CURLOPT_SSLCERTTYPE, "PEM") == CURLE_OK;
        ok &= curl_easy_setopt(r->easy, CURLOPT_SSLKEY_BLOB, &kb) == CURLE_OK;
        ok &= curl_easy_setopt(r->easy, CURLOPT_SSLKEYTYPE, "PEM") == CURLE_OK;
    } else if (c->material) {
        r->material = c->material;
        r->material->refs++;
        ok &= curl_easy_setopt(r->easy, CURLOPT_SSL_CTX_FUNCTION, install_client_cert) == CURLE_OK;
        ok &= curl_easy_setopt(r->easy, CURLOPT_SSL_CTX_DATA, r->material) == CURLE_OK;
    }
    return ok ? 0 : -1;
}

static int configure(struct kube_client *c, struct kube_request *r,
                     const struct kube_request_spec *spec)
{
    size_t url_len = strlen(c->cfg->url) + strlen(spec->path) + 1;
    char *url = malloc(url_len);
    if (!url)
        return -1;
    snprintf(url, url_len, "%s%s", c->cfg->url, spec->path);
    int ok = curl_easy_setopt(r->easy, CURLOPT_URL, url) == CURLE_OK;
    free(url);
    ok &= (r->headers = request_headers(c, spec)) != NULL;
    ok &= curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers) == CURLE_OK;
    ok &= curl_easy_setopt(r->easy, CURLOPT_PRIVATE, (char *)r) == CURLE_OK;
    ok &= curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r) == CURLE_OK;
    ok &= curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r) == CURLE_OK;
    ok &= curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf) == CURLE_OK;
    if (spec->timeout_ms > 0)
        ok &= curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)spec->timeout_ms) == CURLE_OK;
    if (spec->idle_timeout_s > 0) {
        ok &= curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_LIMIT, 1L) == CURLE_OK;
        ok &= curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_TIME, (long)spec->idle_timeout_s) == CURLE_OK;
    }
    ok &= set_method(r->easy, spec) == 0;
    ok &= set_client_cert(c, r) == 0;
    return ok ? 0 : -1;
}

struct kube_request *kube_client_start(struct kube_client *c, const struct kube_request_spec *spec)
{
    struct kube_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    refresh_credentials(c);
    *r = (struct kube_request){ .on_data = spec->on_data, .on_done = spec->on_done,
                                .ctx = spec->ctx, .retry_after_s = -1 };
    if (!(r->easy = curl_easy_duphandle(c->template)) || configure(c, r, spec) < 0 ||
        curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
        if (r->easy)
            curl_easy_cleanup(r->easy);
        slist_wipe_free(r->headers);
        material_unref(r->material);
        free(r);
        return NULL;
    }
    r->prev = c->tail;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->running++;
    return r;
}

void kube_client_cancel(struct kube_client *c, struct kube_request *r)
{
    if (!r || r->state != REQ_RUNNING)
        return;   /* finishing (its on_done is running) or already cancelled */
    release_handle(c, r);
    if (!c->dispatching)
        request_free(c, r);
}

unsigned kube_client_running(const struct kube_client *c)
{
    return c->running;
}

/* ---- moving data and running callbacks ---- */

static long response_status(const struct kube_request *r)
{
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* Streamed bytes of a 2xx answer go to on_data; any other answer is a Status, kept whole for
 * on_done. Returns on_data's verdict. */
static int deliver(struct kube_request *r)
{
    if (!r->on_data || r->len == 0)
        return 0;
    long status = response_status(r);
    if (status < 200 || status > 299)
        return 0;
    int rc = r->on_data(r->ctx, r->buf, r->len);
    r->len = 0;   /* also after a cancel: the buffer is freed with the request */
    return rc;
}

static void complete(struct kube_client *c, struct kube_request *r, const char *abort_reason)
{
    struct kube_response resp = { .status = response_status(r), .body = "",
                                  .retry_after_s = r->retry_after_s };
    if (abort_reason)
        resp.error = abort_reason;
    else if (r->result != CURLE_OK)
        resp.error = r->write_failure ? r->write_failure
                   : r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result);
    else if (resp.status == 0)
        resp.error = "no HTTP response";
    if (resp.error) {
        resp.status = 0;
    } else if (r->len > 0 && (!r->on_data || resp.status < 200 || resp.status > 299) &&
               buf_reserve(r, 1) == 0) {
        r->buf[r->len] = '\0';
        resp.body = r->buf;
        resp.body_len = r->len;
    }
    release_handle(c, r);
    if (resp.status == 401)
        kube_credentials_invalidate(c->creds);
    if (r->on_done)
        r->on_done(r->ctx, &resp);
}

/* Requests are only marked while callbacks run; this frees the ones that are over. */
static void reap(struct kube_client *c)
{
    for (struct kube_request *r = c->head, *next; r; r = next) {
        next = r->next;
        if (r->state != REQ_RUNNING)
            request_free(c, r);
    }
}

static void dispatch(struct kube_client *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        char *p = NULL;
        if (msg->msg != CURLMSG_DONE ||
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p) != CURLE_OK || !p)
            continue;
        struct kube_request *r = (struct kube_request *)p;
        r->finished = 1;
        r->result = msg->data.result;
    }
    c->dispatching++;
    /* Requests started by callbacks are appended and may be visited: they have nothing yet. */
    for (struct kube_request *r = c->head; r; r = r->next) {
        if (r->state != REQ_RUNNING)
            continue;
        if (deliver(r) < 0) {
            if (r->state == REQ_RUNNING)
                complete(c, r, "aborted");
        } else if (r->state == REQ_RUNNING && r->finished) {
            complete(c, r, NULL);
        }
    }
    c->dispatching--;
    reap(c);
}

static short to_curl_events(short ev)
{
    return (short)(((ev & POLLIN) ? CURL_WAIT_POLLIN : 0) | ((ev & POLLPRI) ? CURL_WAIT_POLLPRI : 0) |
                   ((ev & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
}

static short from_curl_events(short ev)
{
    return (short)(((ev & CURL_WAIT_POLLIN) ? POLLIN : 0) | ((ev & CURL_WAIT_POLLPRI) ? POLLPRI : 0) |
                   ((ev & CURL_WAIT_POLLOUT) ? POLLOUT : 0));
}

int kube_client_poll(struct kube_client *c, struct kube_waitfd *extra, unsigned nextra,
                     int timeout_ms, char *err, size_t errlen)
{
    if (c->dispatching)
        return set_err(err, errlen, "kube_client_poll called from a request callback");
    struct curl_waitfd local[8], *wfd = local;
    if (nextra > sizeof local / sizeof local[0] && !(wfd = calloc(nextra, sizeof *wfd)))
        return set_err(err, errlen, "out of memory");
    for (unsigned i = 0; i < nextra; i++)
        wfd[i] = (struct curl_waitfd){ .fd = extra[i].fd, .events = to_curl_events(extra[i].events) };
    int ready = 0, still;
    CURLMcode mc = curl_multi_poll(c->multi, wfd, nextra, timeout_ms < 0 ? INT_MAX : timeout_ms,
                                   NULL);
    for (unsigned i = 0; mc == CURLM_OK && i < nextra; i++) {
        extra[i].revents = from_curl_events(wfd[i].revents);
        ready += extra[i].revents != 0;
    }
    if (wfd != local)
        free(wfd);
    if (mc != CURLM_OK)
        return set_err(err, errlen, "waiting for the API server: curl_multi_poll: %s",
                       curl_multi_strerror(mc));
    if ((mc = curl_multi_perform(c->multi, &still)) != CURLM_OK)
        return set_err(err, errlen, "talking to the API server: curl_multi_perform: %s",
                       curl_multi_strerror(mc));
    dispatch(c);
    return ready;
}

/* ---- text helpers ---- */

char *kube_client_escape(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   (*p >= '0' && *p <= '9') || strchr("-._~", *p);
        if (o + (keep ? 1 : 3) >= outlen)
            return NULL;
        if (keep) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (o >= outlen)
        return NULL;
    out[o] = '\0';
    return out;
}

/* Copies at most `max` bytes of untrusted text, control characters made spaces (log lines). */
static void copy_printable(char *out, size_t outlen, const char *s, size_t len, size_t max)
{
    if (outlen == 0)
        return;
    size_t n = len < max ? len : max;
    if (n > outlen - 1)
        n = outlen - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    out[n] = '\0';
}

void kube_client_status_message(const char *body, size_t len, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *msg = json_is_object(j) ? json_object_get(j, "message") : NULL;
    if (json_is_string(msg) && json_string_length(msg) > 0)
        copy_printable(out, outlen, json_string_value(msg), json_string_length(msg), SIZE_MAX);
    else if (body && len)
        copy_printable(out, outlen, body, len, STATUS_PREFIX_MAX);
    else
        copy_printable(out, outlen, "(empty body)", 12, SIZE_MAX);
    json_decref(j);
}
