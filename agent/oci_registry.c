/*
 * oci_registry.c - see oci_registry.h: image references, and manifests and blobs fetched over
 * the OCI distribution API with one libcurl easy handle (kept for its connection cache).
 *
 * One request is perform_once(): libcurl's header callback records the status line and the few
 * headers we use, afresh for each response of a redirect chain; its write callback hands the body
 * of a 2xx answer to a sink (memory, or the blob's .partial file) and keeps a bounded copy of any
 * other body for the error message. request() adds authentication on top: a 401 is answered once
 * (a token from the challenge's realm, or basic credentials) and the request is retried; the
 * token stays cached in the struct for the following requests.
 *
 * Credentials and tokens cross redirects only to the same host: a blob is usually redirected to
 * object storage, which must not see them. The bearer token is a custom "Authorization:" header
 * and the basic credentials go through CURLOPT_USERNAME/PASSWORD; libcurl drops both when a
 * redirect leaves the host (custom Authorization headers since 7.58.0, CVE-2018-1000007) or
 * changes port or scheme (since 7.83.0, CVE-2022-27776), unless CURLOPT_UNRESTRICTED_AUTH is
 * set, which it never is here. The unit test checks it against the redirect target.
 */
#include "oci_registry.h"

#include "file_io.h"
#include "kubeconfig.h"   /* kube_wipe_free_str: credentials are wiped before they are freed */
#include "log.h"

#include <bearssl.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_S 10L
#define DEFAULT_TIMEOUT_S 600L
#define DEFAULT_LOW_SPEED_S 30L
#define LOW_SPEED_BYTES 1000L
#define MAX_REDIRECTS 5L
#define ERROR_BODY_MAX 4096
#define TOKEN_REPLY_MAX (64u << 10)
#define URL_MAX 2048

enum auth_mode { AUTH_NONE, AUTH_BEARER, AUTH_BASIC };

struct oci_registry {
    CURL *easy;
    char registry[256];
    char repository[256];
    int plain_http;
    char *ca_file, *username, *password, *user_agent;
    long timeout_s, low_speed_s;
    enum auth_mode auth;
    char *token;                   /* AUTH_BEARER: the cached token (never logged) */
};

/* ---- references ---- */

static int repo_component_valid(const char *s, size_t len)
{
    if (len == 0 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[len - 1]))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(islower(c) || isdigit(c) || c == '.' || c == '_' || c == '-'))
            return 0;
        /* separators: one '.', one or two '_', any run of '-' (the distribution grammar) */
        if (c == '.' && s[i + 1] == '.')
            return 0;
        if (c == '_' && s[i + 1] == '_' && s[i + 2] == '_')
            return 0;
        if ((c == '.' || c == '_') && s[i + 1] == '-')
            return 0;
        if (c == '-' && (s[i + 1] == '.' || s[i + 1] == '_'))
            return 0;
    }
    return 1;
}

static int repository_valid(const char *s)
{
    for (;;) {
        size_t len = strcspn(s, "/");
        if (!repo_component_valid(s, len))
            return 0;
        if (s[len] == '\0')
            return 1;
        s += len + 1;
    }
}

static int tag_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 128 || !(isalnum((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

static int registry_valid(const char *s)
{
    if (s[0] == '\0' || s[0] == '-' || s[0] == '.')
        return 0;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || strchr(".-:[]", *p)))
            return 0;
    return 1;
}

int oci_ref_parse(const char *text, struct oci_ref *ref, char *err, size_t errlen)
{
    memset(ref, 0, sizeof *ref);
    char buf[1024];
    if (strlen(text) >= sizeof buf)
        return set_err(err, errlen, "image reference is too long");
    snprintf(buf, sizeof buf, "%s", text);

    char *at = strchr(buf, '@');
    if (at) {
        *at = '\0';
        if (!image_digest_valid(at + 1))
            return set_err(err, errlen, "image reference %s: digest must be sha256: and 64 "
                           "lowercase hex digits", text);
        memcpy(ref->digest, at + 1, IMAGE_DIGEST_LEN + 1);
    }
    char *slash = strchr(buf, '/');
    size_t host_len = slash ? (size_t)(slash - buf) : 0;
    if (!slash || !(memchr(buf, '.', host_len) || memchr(buf, ':', host_len) ||
                    (host_len == 9 && strncmp(buf, "localhost", 9) == 0)))
        return set_err(err, errlen, "image reference %s names no registry (write it out, "
                       "e.g. registry.example.com/%s)", text, buf);
    *slash = '\0';
    if (host_len >= sizeof ref->registry || !registry_valid(buf))
        return set_err(err, errlen, "image reference %s: bad registry \"%s\"", text, buf);
    memcpy(ref->registry, buf, host_len + 1);

    char *repo = slash + 1, *colon = strrchr(repo, ':');
    if (colon) {
        *colon = '\0';
        if (!tag_valid(colon + 1))
            return set_err(err, errlen, "image reference %s: bad tag \"%s\"", text, colon + 1);
        memcpy(ref->tag, colon + 1, strlen(colon + 1) + 1);   /* tag_valid: at most 128 */
    }
    if (strlen(repo) >= sizeof ref->repository || !repository_valid(repo))
        return set_err(err, errlen, "image reference %s: bad repository \"%s\" (lowercase "
                       "letters, digits and . _ - between /)", text, repo);
    memcpy(ref->repository, repo, strlen(repo) + 1);
    if (!ref->tag[0] && !ref->digest[0])
        snprintf(ref->tag, sizeof ref->tag, "latest");
    return 0;
}

/* ---- open / close ---- */

static char *dup_opt(const char *s, int *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = 0;
    return d;
}

struct oci_registry *oci_registry_open(const struct oci_ref *ref,
                                       const struct oci_registry_options *opts,
                                       char *err, size_t errlen)
{
    static const struct oci_registry_options none;
    if (!opts)
        opts = &none;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        set_err(err, errlen, "registry %s: libcurl would not initialise", ref->registry);
        return NULL;
    }
    struct oci_registry *reg = calloc(1, sizeof *reg);
    int ok = reg != NULL;
    if (ok) {
        snprintf(reg->registry, sizeof reg->registry, "%s", ref->registry);
        snprintf(reg->repository, sizeof reg->repository, "%s", ref->repository);
        reg->plain_http = opts->plain_http;
        reg->ca_file = dup_opt(opts->ca_file, &ok);
        reg->username = dup_opt(opts->username, &ok);
        reg->password = dup_opt(opts->username ? (opts->password ? opts->password : "") : NULL,
                                &ok);
        reg->user_agent = dup_opt(opts->user_agent ? opts->user_agent : "gatehouse-agent", &ok);
        reg->timeout_s = opts->timeout_seconds > 0 ? opts->timeout_seconds : DEFAULT_TIMEOUT_S;
        reg->low_speed_s = opts->low_speed_seconds > 0 ? opts->low_speed_seconds
                                                       : DEFAULT_LOW_SPEED_S;
        reg->easy = curl_easy_init();
        ok = ok && reg->easy;
    }
    if (!ok) {
        set_err(err, errlen, "registry %s: out of memory", ref->registry);
        int had_easy = reg && reg->easy;   /* then close balances curl_global_init */
        oci_registry_close(reg);
        if (!had_easy)
            curl_global_cleanup();
        return NULL;
    }
    return reg;
}

void oci_registry_close(struct oci_registry *reg)
{
    if (!reg)
        return;
    if (reg->easy) {
        curl_easy_cleanup(reg->easy);
        curl_global_cleanup();
    }
    free(reg->ca_file);
    free(reg->user_agent);
    kube_wipe_free_str(reg->username);
    kube_wipe_free_str(reg->password);
    kube_wipe_free_str(reg->token);
    free(reg);
}

/* ---- one HTTP exchange ---- */

struct response {
    long status;
    char content_type[128];
    char content_range[128];
    char challenge[1024];            /* WWW-Authenticate (a Bearer one preferred) */
    char body[ERROR_BODY_MAX + 1];   /* non-2xx bodies, cut at ERROR_BODY_MAX */
    size_t body_len;
};

/* Where a 2xx body goes. begin() runs once, before the first byte (or after an empty body). */
struct sink {
    int (*begin)(void *ctx, const struct response *r);
    int (*data)(void *ctx, const char *p, size_t n);
    void *ctx;
};

struct exchange {
    struct response resp;
    const struct sink *sink;
    int began;
    int sink_failed;                 /* the sink aborted the transfer (its ctx says why) */
};

static int is_2xx(long status)
{
    return status >= 200 && status < 300;
}

static void copy_header_value(char *out, size_t outlen, const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    snprintf(out, outlen, "%.*s", (int)(n < outlen ? n : outlen - 1), v);
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *arg)
{
    struct exchange *x = arg;
    size_t n = size * nmemb;
    if (n > 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* a new response (after a redirect or a 100): forget the previous one's headers */
        memset(&x->resp, 0, sizeof x->resp);
        const char *sp = memchr(line, ' ', n);
        if (sp)
            x->resp.status = strtol(sp + 1, NULL, 10);
        return n;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon)
        return n;
    size_t name = (size_t)(colon - line), rest = n - name - 1;
    if (name == 12 && strncasecmp(line, "Content-Type", 12) == 0)
        copy_header_value(x->resp.content_type, sizeof x->resp.content_type, colon + 1, rest);
    else if (name == 13 && strncasecmp(line, "Content-Range", 13) == 0)
        copy_header_value(x->resp.content_range, sizeof x->resp.content_range, colon + 1, rest);
    else if (name == 16 && strncasecmp(line, "WWW-Authenticate", 16) == 0 &&
             (!x->resp.challenge[0] || strncasecmp(x->resp.challenge, "Bearer", 6) != 0))
        copy_header_value(x->resp.challenge, sizeof x->resp.challenge, colon + 1, rest);
    return n;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct exchange *x = arg;
    size_t n = size * nmemb;
    if (!is_2xx(x->resp.status)) {
        size_t room = ERROR_BODY_MAX - x->resp.body_len, take = n < room ? n : room;
        memcpy(x->resp.body + x->resp.body_len, p, take);
        x->resp.body_len += take;
        x->resp.body[x->resp.body_len] = '\0';
        return n;
    }
    if (!x->began) {
        x->began = 1;
        if (x->sink->begin && x->sink->begin(x->sink->ctx, &x->resp) < 0) {
            x->sink_failed = 1;
            return 0;
        }
    }
    if (x->sink->data(x->sink->ctx, p, n) < 0) {
        x->sink_failed = 1;
        return 0;
    }
    return n;
}

struct request {
    const char *url;
    const char *what;          /* for messages: "manifest team/app:v1" */
    const char *accept;        /* NULL: none */
    uint64_t range_from;       /* > 0: ask for bytes range_from- */
    int send_auth;             /* the cached registry credentials */
    const char *basic_user, *basic_password;   /* the token endpoint's credentials */
};

static int setup(struct oci_registry *reg, const struct request *rq, struct exchange *x,
                 struct curl_slist **headers, char *errbuf)
{
    CURL *e = reg->easy;
    curl_easy_reset(e);   /* keeps the connection cache */
    CURLcode rc = CURLE_OK;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, rq->url);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, reg->plain_http ? "http,https" : "https");
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    SET(CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    SET(CURLOPT_TIMEOUT, reg->timeout_s);
    SET(CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_BYTES);
    SET(CURLOPT_LOW_SPEED_TIME, reg->low_speed_s);
    SET(CURLOPT_USERAGENT, reg->user_agent);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, x);
    if (reg->ca_file)
        SET(CURLOPT_CAINFO, reg->ca_file);
    if (rq->basic_user || (rq->send_auth && reg->auth == AUTH_BASIC)) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, rq->basic_user ? rq->basic_user : reg->username);
        SET(CURLOPT_PASSWORD, rq->basic_user ? rq->basic_password : reg->password);
    }
    if (rq->range_from > 0) {
        char range[48];
        snprintf(range, sizeof range, "%llu-", (unsigned long long)rq->range_from);
        SET(CURLOPT_RANGE, range);    /* libcurl copies strings */
    }
#undef SET
    struct curl_slist *h = NULL;
    int ok = rc == CURLE_OK;
    char line[8192];
    if (ok && rq->accept) {
        snprintf(line, sizeof line, "Accept: %s", rq->accept);
        ok = (h = curl_slist_append(h, line)) != NULL;
    }
    if (ok && rq->send_auth && reg->auth == AUTH_BEARER && reg->token) {
        if ((size_t)snprintf(line, sizeof line, "Authorization: Bearer %s", reg->token) >= sizeof line)
            ok = 0;
        struct curl_slist *h2 = ok ? curl_slist_append(h, line) : NULL;
        ok = h2 != NULL;
        h = h2 ? h2 : h;
        explicit_bzero(line, sizeof line);
    }
    if (ok && h)
        ok = curl_easy_setopt(e, CURLOPT_HTTPHEADER, h) == CURLE_OK;
    *headers = h;
    return ok ? 0 : -1;
}

/* Runs one exchange. 0 when an HTTP answer came (any status, in x->resp), -1 with err when not
 * (connection, timeout, or the sink refused; a sink puts its own reason into its ctx). */
static int perform_once(struct oci_registry *reg, const struct request *rq, const struct sink *sink,
                        struct exchange *x, char *err, size_t errlen)
{
    memset(x, 0, sizeof *x);
    x->sink = sink;
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL;
    int rc = -1;
    if (setup(reg, rq, x, &headers, errbuf) < 0) {
        set_err(err, errlen, "registry %s: %s: could not set up the request", reg->registry,
                rq->what);
    } else {
        CURLcode cc = curl_easy_perform(reg->easy);
        /* the handle must not keep pointers into this frame */
        curl_easy_setopt(reg->easy, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(reg->easy, CURLOPT_HTTPHEADER, NULL);
        if (cc == CURLE_OK) {
            rc = 0;
            if (is_2xx(x->resp.status) && !x->began) {
                x->began = 1;
                if (sink->begin && sink->begin(sink->ctx, &x->resp) < 0) {
                    x->sink_failed = 1;
                    rc = -1;
                }
            }
        } else if (!x->sink_failed) {
            set_err(err, errlen, "registry %s: %s: %s", reg->registry, rq->what,
                    errbuf[0] ? errbuf : curl_easy_strerror(cc));
        }
    }
    curl_slist_free_all(headers);
    return rc;
}

/* "HTTP 404: MANIFEST_UNKNOWN: manifest unknown" from a registry's error answer. */
static void describe_status(const struct response *r, char *out, size_t outlen)
{
    char detail[300] = "";
    json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *first = json_array_get(json_object_get(root, "errors"), 0);
    const char *code = json_string_value(json_object_get(first, "code"));
    const char *msg = json_string_value(json_object_get(first, "message"));
    if (code || msg)
        snprintf(detail, sizeof detail, ": %s%s%s", code ? code : "", code && msg ? ": " : "",
                 msg ? msg : "");
    else if (r->body_len > 0 && !root)
        snprintf(detail, sizeof detail, ": %.*s", (int)strcspn(r->body, "\r\n"), r->body);
    json_decref(root);
    for (char *p = detail; *p; p++)
        if (!isprint((unsigned char)*p))
            *p = '?';
    snprintf(out, outlen, "HTTP %ld%s", r->status, detail);
}

/* ---- authentication ---- */

struct challenge {
    char scheme[16];
    char realm[1024], service[256], scope[512];
};

/* Parses `Bearer realm="...",service="...",scope="..."` (quoted values may hold commas and
 * backslash escapes) or `Basic realm="..."`. */
static int parse_challenge(const char *s, struct challenge *c)
{
    memset(c, 0, sizeof *c);
    size_t n = strcspn(s, " \t");
    if (n == 0 || n >= sizeof c->scheme)
        return -1;
    memcpy(c->scheme, s, n);
    s += n;
    for (;;) {
        s += strspn(s, " \t,");
        if (!*s)
            return 0;
        size_t klen = strcspn(s, "= \t,");
        const char *key = s;
        s += klen;
        if (*s != '=')
            return -1;
        s++;
        char *out = NULL;
        size_t cap = 0;
        if (klen == 5 && strncasecmp(key, "realm", 5) == 0)
            out = c->realm, cap = sizeof c->realm;
        else if (klen == 7 && strncasecmp(key, "service", 7) == 0)
            out = c->service, cap = sizeof c->service;
        else if (klen == 5 && strncasecmp(key, "scope", 5) == 0)
            out = c->scope, cap = sizeof c->scope;
        char ignored[2];
        if (!out)
            out = ignored, cap = 0;
        size_t len = 0;
        if (*s == '"') {
            for (s++; *s && *s != '"'; s++) {
                if (*s == '\\' && s[1])
                    s++;
                if (cap && len + 1 >= cap)
                    return -1;
                if (cap)
                    out[len++] = *s;
            }
            if (*s != '"')
                return -1;
            s++;
        } else {
            for (; *s && *s != ',' && *s != ' '; s++) {
                if (cap && len + 1 >= cap)
                    return -1;
                if (cap)
                    out[len++] = *s;
            }
        }
        if (cap)
            out[len] = '\0';
    }
}

struct mem_sink {
    char *buf;
    size_t len, cap, max;
    char why[128];
};

static int mem_data(void *ctx, const char *p, size_t n)
{
    struct mem_sink *m = ctx;
    if (n > m->max - m->len) {
        snprintf(m->why, sizeof m->why, "answer larger than %zu bytes", m->max);
        return -1;
    }
    if (m->len + n + 1 > m->cap) {
        size_t cap = m->cap ? m->cap : 16384;
        while (cap < m->len + n + 1)
            cap *= 2;
        char *b = realloc(m->buf, cap);
        if (!b) {
            snprintf(m->why, sizeof m->why, "out of memory");
            return -1;
        }
        m->buf = b;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, p, n);
    m->len += n;
    m->buf[m->len] = '\0';
    return 0;
}

static int token_from_reply(const char *body, size_t len, char **token)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *t = json_string_value(json_object_get(root, "token"));
    if (!t || !*t)
        t = json_string_value(json_object_get(root, "access_token"));
    int ok = t && *t && strlen(t) < 4096;
    for (const char *p = t; ok && *p; p++)
        ok = *p > ' ' && *p < 127;    /* it goes into a header line */
    *token = ok ? strdup(t) : NULL;
    json_decref(root);
    return *token ? 0 : -1;
}

static int append_param(char *url, size_t cap, CURL *e, const char *name, const char *value)
{
    if (!value[0])
        return 0;
    char *esc = curl_easy_escape(e, value, 0);
    if (!esc)
        return -1;
    size_t used = strlen(url);
    int n = snprintf(url + used, cap - used, "%s%s=%s", strchr(url, '?') ? "&" : "?", name, esc);
    curl_free(esc);
    return n < 0 || (size_t)n >= cap - used ? -1 : 0;
}

static int fetch_token(struct oci_registry *reg, const struct challenge *c, char *err, size_t errlen)
{
    int https = strncasecmp(c->realm, "https://", 8) == 0;
    if (!https && !(reg->plain_http && strncasecmp(c->realm, "http://", 7) == 0))
        return set_err(err, errlen, "registry %s: token realm \"%.200s\" is not an %s URL",
                       reg->registry, c->realm, reg->plain_http ? "http(s)" : "https");
    char scope[600];
    snprintf(scope, sizeof scope, "repository:%s:pull", reg->repository);
    char url[URL_MAX];
    snprintf(url, sizeof url, "%s", c->realm);
    if (append_param(url, sizeof url, reg->easy, "service", c->service) < 0 ||
        append_param(url, sizeof url, reg->easy, "scope", c->scope[0] ? c->scope : scope) < 0)
        return set_err(err, errlen, "registry %s: token URL too long", reg->registry);

    struct mem_sink m = { .max = TOKEN_REPLY_MAX };
    struct sink sink = { NULL, mem_data, &m };
    struct request rq = { .url = url, .what = "token request", .accept = "application/json",
                          .basic_user = reg->username, .basic_password = reg->password };
    struct exchange x;
    int rc = perform_once(reg, &rq, &sink, &x, err, errlen);
    if (rc < 0 && x.sink_failed)
        set_err(err, errlen, "registry %s: token request: %s", reg->registry, m.why);
    else if (rc == 0 && !is_2xx(x.resp.status)) {
        char st[400];
        describe_status(&x.resp, st, sizeof st);
        rc = set_err(err, errlen, "registry %s: authentication refused by the token service "
                     "(%s, %s)", reg->registry, st,
                     reg->username ? "wrong username or password?" : "no credentials given");
    } else if (rc == 0) {
        kube_wipe_free_str(reg->token);
        reg->token = NULL;
        if (token_from_reply(m.buf ? m.buf : "", m.len, &reg->token) < 0)
            rc = set_err(err, errlen, "registry %s: the token service answered no usable token",
                         reg->registry);
        else
            reg->auth = AUTH_BEARER;
    }
    if (m.buf)
        explicit_bzero(m.buf, m.len);
    free(m.buf);
    return rc;
}

static int authenticate(struct oci_registry *reg, const struct response *r, char *err,
                        size_t errlen)
{
    struct challenge c;
    if (!r->challenge[0] || parse_challenge(r->challenge, &c) < 0)
        return set_err(err, errlen, "registry %s: authentication required, and the challenge "
                       "(WWW-Authenticate) is missing or unreadable", reg->registry);
    if (strcasecmp(c.scheme, "Bearer") == 0) {
        if (!c.realm[0])
            return set_err(err, errlen, "registry %s: Bearer challenge without a realm",
                           reg->registry);
        return fetch_token(reg, &c, err, errlen);
    }
    if (strcasecmp(c.scheme, "Basic") == 0) {
        if (!reg->username)
            return set_err(err, errlen, "registry %s: asks for a username and password, and "
                           "none were given", reg->registry);
        reg->auth = AUTH_BASIC;
        return 0;
    }
    return set_err(err, errlen, "registry %s: unsupported authentication scheme %s",
                   reg->registry, c.scheme);
}

/* perform_once, answering one 401 by authenticating and retrying. */
static int request(struct oci_registry *reg, struct request *rq, const struct sink *sink,
                   struct exchange *x, char *err, size_t errlen)
{
    rq->send_auth = 1;
    for (int attempt = 0;; attempt++) {
        if (perform_once(reg, rq, sink, x, err, errlen) < 0)
            return -1;
        if (x->resp.status != 401)
            return 0;
        if (attempt > 0) {
            char st[400];
            describe_status(&x->resp, st, sizeof st);
            return set_err(err, errlen, "registry %s: authentication refused for %s (%s)",
                           reg->registry, rq->what, st);
        }
        if (authenticate(reg, &x->resp, err, errlen) < 0)
            return -1;
    }
}

/* ---- digests ---- */

static void digest_string(const br_sha256_context *sha, char out[IMAGE_DIGEST_LEN + 1])
{
    unsigned char h[32];
    br_sha256_out(sha, h);
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", h[i]);
}

static void digest_of(const char *p, size_t n, char out[IMAGE_DIGEST_LEN + 1])
{
    br_sha256_context sha;
    br_sha256_init(&sha);
    br_sha256_update(&sha, p, n);
    digest_string(&sha, out);
}

/* ---- manifests ---- */

static int make_url(const struct oci_registry *reg, const char *kind, const char *ref,
                    char *url, size_t cap)
{
    int n = snprintf(url, cap, "%s://%s/v2/%s/%s/%s", reg->plain_http ? "http" : "https",
                     reg->registry, reg->repository, kind, ref);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* GET url into memory (at most max bytes). Returns 0 with the body in *m and the response in
 * *x; 1 when the registry answered 404; -1 otherwise, err saying why. */
static int fetch_to_memory(struct oci_registry *reg, struct request *rq, size_t max,
                           struct mem_sink *m, struct exchange *x, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->max = max;
    struct sink sink = { NULL, mem_data, m };
    int rc = request(reg, rq, &sink, x, err, errlen);
    if (rc < 0 && x->sink_failed)
        set_err(err, errlen, "registry %s: %s: %s", reg->registry, rq->what, m->why);
    if (rc == 0 && !is_2xx(x->resp.status)) {
        char st[400];
        describe_status(&x->resp, st, sizeof st);
        set_err(err, errlen, "registry %s: %s %s (%s)", reg->registry, rq->what,
                x->resp.status == 404 ? "not found" : "could not be fetched", st);
        rc = x->resp.status == 404 ? 1 : -1;
    }
    if (rc != 0) {
        free(m->buf);
        m->buf = NULL;
    }
    return rc;
}

int oci_registry_get_manifest(struct oci_registry *reg, const char *reference,
                              struct oci_manifest_reply *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int by_digest = strncmp(reference, "sha256:", 7) == 0;
    if (by_digest ? !image_digest_valid(reference) : !tag_valid(reference))
        return set_err(err, errlen, "manifest %s:%.140s: not a tag or sha256 digest",
                       reg->repository, reference);
    char what[512], url[URL_MAX];
    snprintf(what, sizeof what, "manifest %s%s%s", reg->repository, by_digest ? "@" : ":",
             reference);
    if (make_url(reg, "manifests", reference, url, sizeof url) < 0)
        return set_err(err, errlen, "registry %s: %s: URL too long", reg->registry, what);

    struct mem_sink m;
    struct request rq = { .url = url, .what = what,
                          .accept = OCI_MT_INDEX ", " OCI_MT_MANIFEST ", " DOCKER_MT_LIST ", "
                                    DOCKER_MT_MANIFEST };
    struct exchange x;
    int rc = fetch_to_memory(reg, &rq, OCI_MANIFEST_MAX, &m, &x, err, errlen);
    if (rc == 0) {
        digest_of(m.buf ? m.buf : "", m.len, out->digest);
        if (by_digest && strcmp(out->digest, reference) != 0)
            rc = set_err(err, errlen, "registry %s: %s: the body hashes to %s instead",
                         reg->registry, what, out->digest);
    }
    if (rc != 0) {
        free(m.buf);
        memset(out, 0, sizeof *out);
        return rc;
    }
    out->body = m.buf ? m.buf : calloc(1, 1);
    if (!out->body)
        return set_err(err, errlen, "registry %s: %s: out of memory", reg->registry, what);
    out->len = m.len;
    size_t tlen = strcspn(x.resp.content_type, ";");
    while (tlen > 0 && x.resp.content_type[tlen - 1] == ' ')
        tlen--;
    snprintf(out->media_type, sizeof out->media_type, "%.*s", (int)tlen, x.resp.content_type);
    return 0;
}

/* ---- blobs ---- */

struct blob_file {
    int fd;
    const char *partial;
    br_sha256_context sha;
    uint64_t have;           /* bytes in the file (all hashed) */
    uint64_t asked_from;     /* the Range start of this request, 0 for none */
    uint64_t size;
    struct oci_blob_result *result;
    int too_long;            /* more bytes than the descriptor's size: the file is spoilt */
    char why[300];
};

static int restart_file(struct blob_file *b)
{
    if (ftruncate(b->fd, 0) < 0) {
        snprintf(b->why, sizeof b->why, "truncating %s: %s", b->partial, strerror(errno));
        return -1;
    }
    br_sha256_init(&b->sha);
    b->have = 0;
    b->result->resumed_from = 0;
    return 0;
}

static int blob_begin(void *ctx, const struct response *r)
{
    struct blob_file *b = ctx;
    if (r->status != 206)
        return b->have > 0 ? restart_file(b) : 0;   /* the registry sends it all again */
    unsigned long long start = 0, total = 0;
    char end[32] = "", tot[32] = "";
    if (sscanf(r->content_range, "bytes %llu-%31[0-9]/%31s", &start, end, tot) < 2 ||
        start != b->asked_from) {
        snprintf(b->why, sizeof b->why, "asked for bytes from %llu, the registry answered "
                 "Content-Range \"%.100s\"", (unsigned long long)b->asked_from, r->content_range);
        return -1;
    }
    if (tot[0] && strcmp(tot, "*") != 0 &&
        (sscanf(tot, "%llu", &total) != 1 || total != b->size)) {
        snprintf(b->why, sizeof b->why, "the registry says the blob has %.31s bytes, not %llu",
                 tot, (unsigned long long)b->size);
        b->too_long = 1;     /* not the blob we want: do not keep resuming it */
        return -1;
    }
    b->result->resumed_from = b->asked_from;
    return 0;
}

static int blob_data(void *ctx, const char *p, size_t n)
{
    struct blob_file *b = ctx;
    if (n > b->size - b->have) {
        snprintf(b->why, sizeof b->why, "the registry sent more than the %llu bytes of the descriptor",
                 (unsigned long long)b->size);
        b->too_long = 1;
        return -1;
    }
    br_sha256_update(&b->sha, p, n);
    if (file_write_all(b->fd, p, n) < 0) {
        snprintf(b->why, sizeof b->why, "writing %s: %s", b->partial, strerror(errno));
        return -1;   /* the hash is ahead of the file now: the caller drops the file */
    }
    b->have += n;
    b->result->fetched += n;
    return 0;
}

/* Hashes fd's bytes from the start; their count in *len. */
static int hash_file(int fd, br_sha256_context *sha, uint64_t *len)
{
    char buf[65536];
    br_sha256_init(sha);
    *len = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, (off_t)*len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        br_sha256_update(sha, buf, (size_t)n);
        *len += (uint64_t)n;
    }
}

static int file_has_digest(const char *path, const char *digest, uint64_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    br_sha256_context sha;
    uint64_t len;
    char got[IMAGE_DIGEST_LEN + 1];
    int ok = hash_file(fd, &sha, &len) == 0 && len == size;
    close(fd);
    if (ok)
        digest_string(&sha, got);
    return ok && strcmp(got, digest) == 0;
}

static void fsync_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    file_sync_dir(dir, NULL, 0);   /* if the rename is lost in a crash, the blob is fetched again */
}

/* The bytes are all there: keep them under path if they are the blob, drop them if not. */
static int finish_blob(struct blob_file *b, const char *digest, const char *path,
                       const char *registry, char *err, size_t errlen)
{
    char got[IMAGE_DIGEST_LEN + 1];
    digest_string(&b->sha, got);
    if (b->have != b->size || strcmp(got, digest) != 0) {
        close(b->fd);
        unlink(b->partial);
        if (b->have != b->size)
            return set_err(err, errlen, "registry %s: blob %s: got %llu bytes, expected %llu; "
                           "dropped", registry, digest, (unsigned long long)b->have,
                           (unsigned long long)b->size);
        return set_err(err, errlen, "registry %s: blob %s: the bytes hash to %s; dropped",
                       registry, digest, got);
    }
    int rc = 0;
    if (fsync(b->fd) < 0)
        rc = set_err(err, errlen, "fsync %s: %s", b->partial, strerror(errno));
    close(b->fd);
    if (rc == 0 && rename(b->partial, path) < 0)
        rc = set_err(err, errlen, "rename %s to %s: %s", b->partial, path, strerror(errno));
    if (rc == 0)
        fsync_parent(path);
    return rc;
}

/* The transfer stopped short: keep what arrived for the next call, unless it is spoilt (or
 * there is nothing to keep). */
static void keep_partial(struct blob_file *b, int spoilt)
{
    if (spoilt || b->have == 0) {
        close(b->fd);
        unlink(b->partial);
        return;
    }
    fsync(b->fd);
    close(b->fd);
}

static int open_partial(struct blob_file *b, char *err, size_t errlen)
{
    b->fd = open(b->partial, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (b->fd < 0)
        return set_err(err, errlen, "open %s: %s", b->partial, strerror(errno));
    if (hash_file(b->fd, &b->sha, &b->have) < 0) {
        set_err(err, errlen, "read %s: %s", b->partial, strerror(errno));
        close(b->fd);
        return -1;
    }
    if (b->have > b->size && restart_file(b) < 0) {
        set_err(err, errlen, "%s", b->why);
        close(b->fd);
        return -1;
    }
    return 0;
}

int oci_registry_get_blob(struct oci_registry *reg, const char *digest, uint64_t size,
                          const char *path, struct oci_blob_result *result,
                          char *err, size_t errlen)
{
    memset(result, 0, sizeof *result);
    if (!image_digest_valid(digest))
        return set_err(err, errlen, "blob digest \"%.80s\" is not sha256: and 64 hex digits",
                       digest);
    if (file_has_digest(path, digest, size)) {
        result->already_present = 1;
        return 0;
    }
    char partial[4096], url[URL_MAX], what[128];
    if ((size_t)snprintf(partial, sizeof partial, "%s.partial", path) >= sizeof partial)
        return set_err(err, errlen, "path %s is too long", path);
    if (make_url(reg, "blobs", digest, url, sizeof url) < 0)
        return set_err(err, errlen, "registry %s: blob URL too long", reg->registry);
    snprintf(what, sizeof what, "blob %s", digest);

    struct blob_file b = { .partial = partial, .size = size, .result = result };
    if (open_partial(&b, err, errlen) < 0)
        return -1;
    if (b.have == size) {   /* a previous call got every byte and stopped before the rename */
        result->resumed_from = size;
        return finish_blob(&b, digest, path, reg->registry, err, errlen);
    }
    struct sink sink = { blob_begin, blob_data, &b };
    for (int restarted = 0;;) {
        b.asked_from = b.have;
        b.result->resumed_from = b.have;
        struct request rq = { .url = url, .what = what, .range_from = b.have };
        struct exchange x;
        if (request(reg, &rq, &sink, &x, err, errlen) < 0) {
            if (x.sink_failed)
                set_err(err, errlen, "registry %s: %s: %s", reg->registry, what, b.why);
            else if (b.have > 0) {
                size_t used = strlen(err);
                if (errlen > used)
                    snprintf(err + used, errlen - used, " (%llu bytes kept in %s for the "
                             "next try)", (unsigned long long)b.have, partial);
            }
            keep_partial(&b, b.too_long);
            return -1;
        }
        if (x.resp.status == 416 && b.have > 0 && !restarted) {
            restarted = 1;    /* the registry will not resume this: start over once */
            if (restart_file(&b) < 0) {
                keep_partial(&b, 1);
                return set_err(err, errlen, "%s", b.why);
            }
            continue;
        }
        if (!is_2xx(x.resp.status)) {
            char st[400];
            describe_status(&x.resp, st, sizeof st);
            keep_partial(&b, 0);
            return set_err(err, errlen, "registry %s: %s %s (%s)", reg->registry, what,
                           x.resp.status == 404 ? "not found" : "could not be fetched", st);
        }
        return finish_blob(&b, digest, path, reg->registry, err, errlen);
    }
}

char *oci_registry_get_small_blob(struct oci_registry *reg, const char *digest, uint64_t size,
                                  size_t max, char *err, size_t errlen)
{
    if (!image_digest_valid(digest)) {
        set_err(err, errlen, "blob digest \"%.80s\" is not sha256: and 64 hex digits", digest);
        return NULL;
    }
    char url[URL_MAX], what[128];
    snprintf(what, sizeof what, "blob %s", digest);
    if (size > max) {
        set_err(err, errlen, "registry %s: %s: %llu bytes is more than the %zu allowed",
                reg->registry, what, (unsigned long long)size, max);
        return NULL;
    }
    if (make_url(reg, "blobs", digest, url, sizeof url) < 0) {
        set_err(err, errlen, "registry %s: blob URL too long", reg->registry);
        return NULL;
    }
    struct mem_sink m;
    struct request rq = { .url = url, .what = what };
    struct exchange x;
    int rc = fetch_to_memory(reg, &rq, (size_t)size, &m, &x, err, errlen) == 0 ? 0 : -1;
    char got[IMAGE_DIGEST_LEN + 1];
    if (rc == 0) {
        digest_of(m.buf ? m.buf : "", m.len, got);
        if (m.len != size)
            rc = set_err(err, errlen, "registry %s: %s: got %zu bytes, expected %llu",
                         reg->registry, what, m.len, (unsigned long long)size);
        else if (strcmp(got, digest) != 0)
            rc = set_err(err, errlen, "registry %s: %s: the bytes hash to %s", reg->registry,
                         what, got);
    }
    if (rc != 0) {
        free(m.buf);
        return NULL;
    }
    char *body = m.buf ? m.buf : calloc(1, 1);
    if (!body)
        set_err(err, errlen, "registry %s: %s: out of memory", reg->registry, what);
    return body;
}
