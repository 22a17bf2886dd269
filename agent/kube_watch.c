/*
 * kube_watch.c - the informers (see kube_watch.h).
 *
 * Each resource has one reflector: a small state machine with at most one request in flight.
 * It lists page after page into a new cache object, swaps it in after the last page, then
 * watches, one watch after another. Every outcome leads to one of two places: the next step at
 * once (a page, a watch resumed after a clean end, a relist after 410), or the failed step again
 * after a backoff.
 *
 * Callbacks run inside kube_client_poll, which hands them no clock, so a backoff decided there is
 * kept as a delay and anchored at the next kube_informers_tick (the caller ticks after every
 * poll); anchoring it at the previous tick would shorten it by however long poll slept.
 *
 * Watch lines are parsed while the stream runs; a line that calls for ending the watch (not
 * JSON, ERROR) only sets abort_why, and the data callback returns -1 so the request ends through
 * its on_done like every other request.
 */
#include "kube_watch.h"

#include "k8s_object.h"
#include "log.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct kube_resource kube_resources[KUBE_RESOURCE_COUNT] = {
    { "IngressClass", "networking.k8s.io/v1", "/apis/networking.k8s.io/v1", "ingressclasses", 0,
      NULL },
    { "Ingress", "networking.k8s.io/v1", "/apis/networking.k8s.io/v1", "ingresses", 1, NULL },
    { "Service", "v1", "/api/v1", "services", 1, NULL },
    { "EndpointSlice", "discovery.k8s.io/v1", "/apis/discovery.k8s.io/v1", "endpointslices", 1,
      NULL },
    { "Secret", "v1", "/api/v1", "secrets", 1, "type=kubernetes.io/tls" },
};

#define DEFAULT_PAGE_SIZE 500
#define DEFAULT_IDLE_TIMEOUT_S 90
#define DEFAULT_BACKOFF_INITIAL_MS 800
#define DEFAULT_BACKOFF_MAX_MS 30000
/* The API server closes a watch after timeoutSeconds; spreading them keeps the five watches
 * (and many agents) from all reconnecting in the same second. */
#define WATCH_TIMEOUT_MIN_S 300
#define WATCH_TIMEOUT_SPREAD_S 301
/* A Retry-After beyond this is taken as this: an API server will not mean days. */
#define RETRY_AFTER_MAX_S 3600
#define ATTEMPT_MAX 32
#define LINE_MAX_BYTES ((size_t)64 << 20)
/* A splitter buffer grown past this for one big line is given back after it. */
#define SPLIT_KEEP_BYTES ((size_t)1 << 20)
/* Continue tokens are a few hundred bytes; escaping may triple them. */
#define PATH_BYTES 8192
#define KEY_BYTES 600
#define LAST_APPLIED "kubectl.kubernetes.io/last-applied-configuration"

enum step { STEP_NONE, STEP_LIST, STEP_WATCH };

/* Why the informer itself ended a watch (its on_done then sees status 0, "aborted"). */
enum watch_end { END_NONE, END_GONE, END_FAILED };

struct reflector {
    struct kube_informers *k;
    const struct kube_resource *res;
    char rbac_name[96];            /* "ingresses.networking.k8s.io", as RBAC rules name it */
    json_t *cache;                 /* "namespace/name" or "name" -> object */
    json_t *building;              /* the list being received, page by page, or NULL */
    char *continue_token;          /* the next page's, or NULL */
    char *rv;                      /* resourceVersion to watch from, or NULL */
    struct kube_request *req;      /* the request in flight, or NULL */
    enum step running;             /* what req is */
    enum step due;                 /* what the timer starts */
    int64_t due_ms;                /* -1: no timer */
    int delay_ms;                  /* >= 0: a timer set in a callback, anchored at the next tick */
    unsigned attempt;              /* failures since the last success, for the backoff */
    int synced;                    /* a list has completed */
    int resuming;                  /* the next watch resumes one that ended (stats) */
    int watch_bytes;               /* the running watch delivered a byte */
    int watch_events;              /* ... a well-formed event */
    int resume_armed;              /* a watch that ends may be resumed at once (see watch_ended) */
    enum watch_end abort_why;
    char status_msg[256];          /* a Status body that came down the watch stream */
    struct kube_event_splitter split;
    char failure[48];              /* the failure last logged, "" while healthy */
};

struct kube_informers {
    struct kube_client *client;
    struct kube_watch_options opt;
    unsigned long long generation;
    unsigned long long events, lists, watch_restarts, errors;
    struct reflector r[KUBE_RESOURCE_COUNT];
};

static void start_list(struct reflector *r);
static void start_watch(struct reflector *r);

/* ---- small helpers ---- */

static unsigned next_random(unsigned *seed)
{
    unsigned x = *seed ? *seed : 0x9e3779b9u;   /* xorshift32 never leaves 0 */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *seed = x;
    return x;
}

static void set_string(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;   /* out of memory reads as "none": a full list follows */
}

static const char *resource_version(const json_t *obj)
{
    const json_t *meta = NULL;
    const char *rv = NULL;
    if (k8s_object(obj, "metadata", &meta) == K8S_PRESENT)
        k8s_string(meta, "resourceVersion", &rv);
    return rv;
}

/* Logs a failure unless the same one (sig) is what was logged last: one line per change of
 * state, not one per retry. */
static void report(struct reflector *r, enum log_level level, const char *sig, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));
static void report(struct reflector *r, enum log_level level, const char *sig, const char *fmt,
                   ...)
{
    if (strcmp(r->failure, sig) == 0)
        return;
    snprintf(r->failure, sizeof r->failure, "%s", sig);
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_msg(level, "%s", line);
}

static void recovered(struct reflector *r)
{
    if (!r->failure[0])
        return;
    r->failure[0] = '\0';
    log_info("%s: watching again", r->res->plural);
}

/* ---- timers ---- */

static void schedule(struct reflector *r, enum step step, int delay_ms)
{
    r->due = step;
    r->due_ms = -1;
    r->delay_ms = delay_ms;
}

static void backoff(struct reflector *r, enum step step, int retry_after_s)
{
    struct kube_informers *k = r->k;
    schedule(r, step, kube_backoff_ms(&k->opt, r->attempt, retry_after_s, &k->opt.seed));
    if (r->attempt < ATTEMPT_MAX)
        r->attempt++;
}

static void anchor(struct reflector *r, int64_t now_ms)
{
    if (r->delay_ms < 0)
        return;
    r->due_ms = now_ms + r->delay_ms;
    r->delay_ms = -1;
}

int kube_backoff_ms(const struct kube_watch_options *opt, unsigned attempt, int retry_after_s,
                    unsigned *seed)
{
    long long base = opt->backoff_initial_ms > 0 ? opt->backoff_initial_ms
                                                 : DEFAULT_BACKOFF_INITIAL_MS;
    long long cap = opt->backoff_max_ms > 0 ? opt->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
    if (cap < base)
        cap = base;
    for (unsigned i = 0; i < attempt && base < cap; i++)
        base *= 2;
    if (base > cap)
        base = cap;
    long long delay = base * (80 + (long long)(next_random(seed) % 41)) / 100;
    if (retry_after_s >= 0) {
        int s = retry_after_s < RETRY_AFTER_MAX_S ? retry_after_s : RETRY_AFTER_MAX_S;
        if (delay < (long long)s * 1000)
            delay = (long long)s * 1000;
    }
    return delay > INT_MAX ? INT_MAX : (int)delay;
}

/* ---- request paths ---- */

struct path {
    char s[PATH_BYTES];
    size_t len;
    int overflow;
};

static void path_add(struct path *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void path_add(struct path *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->s + p->len, sizeof p->s - p->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof p->s - p->len)
        p->overflow = 1;
    else
        p->len += (size_t)n;
}

static void path_escaped(struct path *p, const char *value)
{
    if (p->overflow)
        return;
    if (!kube_client_escape(value, p->s + p->len, sizeof p->s - p->len)) {
        p->overflow = 1;
        return;
    }
    p->len += strlen(p->s + p->len);
}

static void path_param(struct path *p, const char *key, const char *value)
{
    path_add(p, "%c%s=", strchr(p->s, '?') ? '&' : '?', key);
    path_escaped(p, value);
}

static void resource_path(const struct reflector *r, struct path *p)
{
    const char *ns = r->res->namespaced ? r->k->opt.ns : NULL;
    p->len = 0;
    p->overflow = 0;
    p->s[0] = '\0';
    path_add(p, "%s", r->res->group_path);
    if (ns && *ns) {
        path_add(p, "/namespaces/");
        path_escaped(p, ns);
    }
    path_add(p, "/%s", r->res->plural);
}

/* ---- objects ---- */

/* Fits a freshly parsed object (not yet shared) for the cache and writes its key. Returns -1
 * when it cannot be cached. */
static int prepare_object(const struct reflector *r, json_t *obj, char *key, size_t keylen)
{
    json_t *meta = json_object_get(obj, "metadata");
    const char *name = NULL, *ns = NULL;
    if (!json_is_object(meta) || k8s_string(meta, "name", &name) != K8S_PRESENT || !*name) {
        log_debug("%s: skipping an object without metadata.name", r->res->plural);
        return -1;
    }
    if (k8s_string(meta, "namespace", &ns) == K8S_WRONG_TYPE) {
        log_debug("%s: skipping %s: metadata.namespace is not a string", r->res->plural, name);
        return -1;
    }
    int n = ns && *ns ? snprintf(key, keylen, "%s/%s", ns, name) : snprintf(key, keylen, "%s", name);
    if (n < 0 || (size_t)n >= keylen) {
        log_debug("%s: skipping an object whose name is too long", r->res->plural);
        return -1;
    }
    if (!json_is_string(json_object_get(obj, "kind")))
        json_object_set_new(obj, "kind", json_string(r->res->kind));
    if (!json_is_string(json_object_get(obj, "apiVersion")))
        json_object_set_new(obj, "apiVersion", json_string(r->res->api_version));
    json_object_del(meta, "managedFields");
    json_t *annotations = json_object_get(meta, "annotations");
    if (json_is_object(annotations))
        json_object_del(annotations, LAST_APPLIED);
    return 0;
}

/* Whether a completed list changes what is cached: other keys, or another resourceVersion. */
static int cache_differs(json_t *old, json_t *fresh)
{
    if (json_object_size(old) != json_object_size(fresh))
        return 1;
    const char *key;
    json_t *obj;
    json_object_foreach(fresh, key, obj) {
        json_t *was = json_object_get(old, key);
        if (!was)
            return 1;
        const char *a = resource_version(obj), *b = resource_version(was);
        if (a && b ? strcmp(a, b) != 0 : !json_equal(obj, was))
            return 1;
    }
    return 0;
}

/* ---- failures ---- */

/* A request that failed: logged once per state, then the same step after a backoff. reason:
 * the server's, when it came some other way than the body. */
static void request_failed(struct reflector *r, enum step step, const struct kube_response *resp,
                           const char *reason)
{
    const char *verb = step == STEP_LIST ? "list" : "watch";
    char msg[512], why[600], sig[48];
    if (resp->status == 0)
        snprintf(msg, sizeof msg, "%s", resp->error ? resp->error : "no response");
    else if (reason)
        snprintf(msg, sizeof msg, "%s", reason);
    else
        kube_client_status_message(resp->body, resp->body_len, msg, sizeof msg);
    if (!msg[0])
        snprintf(msg, sizeof msg, "no reason given");
    if (resp->status == 0)
        snprintf(why, sizeof why, "%s", msg);
    else
        snprintf(why, sizeof why, "%s (HTTP %ld)", msg, resp->status);
    snprintf(sig, sizeof sig, "%s %ld", verb, resp->status);
    r->k->errors++;
    if (resp->status == 403)
        report(r, LOG_ERROR, sig,
               "the API server refused to %s %s: %s; the agent's service account needs the "
               "permissions in docs/rbac.yaml", verb, r->rbac_name, msg);
    else
        report(r, step == STEP_LIST || resp->status == 401 ? LOG_ERROR : LOG_WARN, sig,
               "%s: %s failed: %s; retrying with backoff", r->res->plural, verb, why);
    backoff(r, step, resp->retry_after_s);
}

/* ---- list ---- */

static void reset_list(struct reflector *r)
{
    json_decref(r->building);
    r->building = NULL;
    set_string(&r->continue_token, NULL);
}

static void start_request(struct reflector *r, enum step step, const struct path *p,
                          kube_data_fn *on_data, kube_done_fn *on_done)
{
    struct kube_request_spec spec = {
        .method = "GET",
        .path = p->s,
        .idle_timeout_s = r->k->opt.idle_timeout_s,
        .on_data = on_data,
        .on_done = on_done,
        .ctx = r,
    };
    r->req = kube_client_start(r->k->client, &spec);
    if (!r->req) {
        log_error("%s: cannot start a request: out of memory", r->res->plural);
        backoff(r, step, -1);
        return;
    }
    r->running = step;
}

static void list_done(void *ctx, const struct kube_response *resp);

static void start_list(struct reflector *r)
{
    struct path p;
    resource_path(r, &p);
    path_add(&p, "?limit=%d", r->k->opt.page_size);
    if (r->continue_token)
        path_param(&p, "continue", r->continue_token);
    if (r->res->field_selector)
        path_param(&p, "fieldSelector", r->res->field_selector);
    if (p.overflow) {
        /* Only a continue token can be this long; starting over drops it. */
        report(r, LOG_ERROR, "list path", "%s: the list request is too long; listing again",
               r->res->plural);
        reset_list(r);
        backoff(r, STEP_LIST, -1);
        return;
    }
    start_request(r, STEP_LIST, &p, NULL, list_done);
}

static void relist(struct reflector *r)
{
    reset_list(r);
    r->resuming = 0;
    start_list(r);
}

static void finish_list(struct reflector *r, const char *rv)
{
    struct kube_informers *k = r->k;
    if (cache_differs(r->cache, r->building))
        k->generation++;
    json_decref(r->cache);
    r->cache = r->building;
    r->building = NULL;
    set_string(&r->rv, rv);
    r->synced = 1;
    r->attempt = 0;
    r->resume_armed = 1;
    r->resuming = 0;
    k->lists++;
    log_debug("%s: listed %zu objects at resourceVersion %s", r->res->plural,
              json_object_size(r->cache), rv ? rv : "(none)");
    recovered(r);
    start_watch(r);
}

/* One page: its items join the list being built; the last one replaces the cache. */
static void list_page(struct reflector *r, const struct kube_response *resp)
{
    json_t *list = json_loadb(resp->body, resp->body_len, 0, NULL);
    const json_t *items = NULL, *meta = NULL;
    const char *rv = NULL, *cont = NULL;
    if (!json_is_object(list) || k8s_array(list, "items", &items) == K8S_WRONG_TYPE
        || k8s_object(list, "metadata", &meta) == K8S_WRONG_TYPE
        || k8s_string(meta, "resourceVersion", &rv) == K8S_WRONG_TYPE
        || k8s_string(meta, "continue", &cont) == K8S_WRONG_TYPE) {
        json_decref(list);
        r->k->errors++;
        report(r, LOG_ERROR, "list shape", "%s: list failed: the answer is not a %sList; "
               "retrying with backoff", r->res->plural, r->res->kind);
        reset_list(r);
        backoff(r, STEP_LIST, -1);
        return;
    }
    if (!r->building)
        r->building = json_object();
    size_t i;
    json_t *item;
    char key[KEY_BYTES];
    json_array_foreach(items, i, item) {
        if (json_is_object(item) && prepare_object(r, item, key, sizeof key) == 0)
            json_object_set(r->building, key, item);
    }
    if (cont && *cont) {
        set_string(&r->continue_token, cont);
        json_decref(list);
        start_list(r);
        return;
    }
    finish_list(r, rv);
    json_decref(list);
}

static void list_done(void *ctx, const struct kube_response *resp)
{
    struct reflector *r = ctx;
    r->req = NULL;
    r->running = STEP_NONE;
    if (resp->status == 200) {
        list_page(r, resp);
        return;
    }
    if (resp->status == 410 && r->continue_token) {
        log_info("%s: the list's continue token expired, listing again from the start",
                 r->res->plural);
        relist(r);
        return;
    }
    request_failed(r, STEP_LIST, resp, NULL);
    reset_list(r);
}

/* ---- watch ---- */

static void put_object(struct reflector *r, json_t *obj)
{
    char key[KEY_BYTES];
    if (prepare_object(r, obj, key, sizeof key) < 0)
        return;
    json_object_set(r->cache, key, obj);
    r->k->generation++;
}

static void delete_object(struct reflector *r, json_t *obj)
{
    char key[KEY_BYTES];
    if (prepare_object(r, obj, key, sizeof key) < 0)
        return;
    if (json_object_del(r->cache, key) == 0)
        r->k->generation++;
}

static void error_event(struct reflector *r, const json_t *status)
{
    long long code = 0;
    const char *message = NULL;
    k8s_integer(status, "code", &code);
    k8s_string(status, "message", &message);
    if (code == 410) {
        log_info("%s: resourceVersion expired, listing again", r->res->plural);
        r->abort_why = END_GONE;
        return;
    }
    r->abort_why = END_FAILED;
    report(r, LOG_WARN, "watch error", "%s: watch failed: %s (code %lld); retrying with backoff",
           r->res->plural, message ? message : "no reason given", code);
}

static void watch_event(void *ctx, json_t *ev)
{
    struct reflector *r = ctx;
    if (r->abort_why != END_NONE)
        return;
    if (!ev) {
        r->abort_why = END_FAILED;
        report(r, LOG_WARN, "watch json", "%s: the watch stream sent a line that is not JSON; "
               "watching again after a backoff", r->res->plural);
        return;
    }
    const char *type = NULL, *kind = NULL, *message = NULL;
    json_t *obj = json_object_get(ev, "object");
    if (k8s_string(ev, "type", &type) != K8S_PRESENT) {
        /* An error status answers with a Status body, which arrives here as one line. */
        if (k8s_string(ev, "kind", &kind) == K8S_PRESENT && strcmp(kind, "Status") == 0
            && k8s_string(ev, "message", &message) == K8S_PRESENT)
            snprintf(r->status_msg, sizeof r->status_msg, "%s", message);
        else
            log_warn("%s: ignoring a watch event without a type", r->res->plural);
        return;
    }
    if (!json_is_object(obj)) {
        log_warn("%s: ignoring a %s watch event without an object", r->res->plural, type);
        return;
    }
    if (strcmp(type, "ERROR") == 0) {
        error_event(r, obj);
        return;
    }
    if (!r->watch_events) {
        r->watch_events = 1;
        r->attempt = 0;
        recovered(r);
    }
    const char *rv = resource_version(obj);
    if (rv && *rv)
        set_string(&r->rv, rv);
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0)
        put_object(r, obj);
    else if (strcmp(type, "DELETED") == 0)
        delete_object(r, obj);
    else if (strcmp(type, "BOOKMARK") == 0)
        return;
    else {
        log_warn("%s: ignoring a watch event of unknown type %s", r->res->plural, type);
        return;
    }
    r->k->events++;
}

static int watch_data(void *ctx, const char *data, size_t len)
{
    struct reflector *r = ctx;
    if (len)
        r->watch_bytes = 1;
    if (kube_event_split(&r->split, data, len, watch_event, r) < 0 && r->abort_why == END_NONE) {
        r->abort_why = END_FAILED;
        report(r, LOG_WARN, "watch line", "%s: a watch event is larger than 64 MiB or memory "
               "ran out; watching again after a backoff", r->res->plural);
    }
    return r->abort_why == END_NONE ? 0 : -1;
}

/* The watch ended with its stream (server timeout, dropped connection, idle timeout: status
 * 200 or 0): resume from the last resourceVersion at once. Only once in a row without a byte
 * from the server, though: when the resume itself fails, or a broken proxy keeps ending watches
 * at once, it is a failure and backs off. */
static void watch_ended(struct reflector *r, const struct kube_response *resp)
{
    if (r->watch_bytes) {
        recovered(r);
        r->attempt = 0;
        r->resume_armed = 1;
    }
    if (r->resume_armed) {
        r->resume_armed = 0;
        start_watch(r);
        return;
    }
    request_failed(r, STEP_WATCH, resp,
                   resp->status == 200 ? "the watch ended without sending anything" : NULL);
}

static void watch_done(void *ctx, const struct kube_response *resp)
{
    struct reflector *r = ctx;
    enum watch_end why = r->abort_why;
    r->req = NULL;
    r->running = STEP_NONE;
    r->abort_why = END_NONE;
    r->resuming = 1;
    if (why == END_GONE) {
        relist(r);
    } else if (why == END_FAILED) {
        r->k->errors++;
        backoff(r, STEP_WATCH, -1);
    } else if (resp->status == 200 || resp->status == 0) {
        watch_ended(r, resp);
    } else if (resp->status == 410) {
        log_info("%s: resourceVersion expired, listing again", r->res->plural);
        relist(r);
    } else {
        /* The error's Status body went down the stream: whole (status_msg) or in part. */
        char reason[256] = "";
        if (r->status_msg[0])
            snprintf(reason, sizeof reason, "%s", r->status_msg);
        else if (r->split.len)
            kube_client_status_message(r->split.buf, r->split.len, reason, sizeof reason);
        request_failed(r, STEP_WATCH, resp, reason[0] ? reason : NULL);
    }
}

static void start_watch(struct reflector *r)
{
    struct kube_informers *k = r->k;
    struct path p;
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%u",
             WATCH_TIMEOUT_MIN_S + next_random(&k->opt.seed) % WATCH_TIMEOUT_SPREAD_S);
    resource_path(r, &p);
    path_add(&p, "?watch=1&allowWatchBookmarks=true");
    if (r->rv && *r->rv)
        path_param(&p, "resourceVersion", r->rv);
    path_param(&p, "timeoutSeconds", timeout);
    if (r->res->field_selector)
        path_param(&p, "fieldSelector", r->res->field_selector);
    if (p.overflow) {   /* a resourceVersion of kilobytes: not one we can use */
        report(r, LOG_ERROR, "watch path", "%s: the watch request is too long; listing again",
               r->res->plural);
        reset_list(r);
        backoff(r, STEP_LIST, -1);
        return;
    }
    r->split.len = 0;
    r->watch_bytes = 0;
    r->watch_events = 0;
    r->abort_why = END_NONE;
    r->status_msg[0] = '\0';
    if (r->resuming)
        k->watch_restarts++;
    start_request(r, STEP_WATCH, &p, watch_data, watch_done);
}

/* ---- the informers ---- */

static int or_default(int v, int def)
{
    return v > 0 ? v : def;
}

struct kube_informers *kube_informers_new(struct kube_client *client,
                                          const struct kube_watch_options *opt)
{
    struct kube_informers *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->client = client;
    k->opt = *opt;
    k->opt.page_size = or_default(opt->page_size, DEFAULT_PAGE_SIZE);
    k->opt.idle_timeout_s = or_default(opt->idle_timeout_s, DEFAULT_IDLE_TIMEOUT_S);
    k->opt.backoff_initial_ms = or_default(opt->backoff_initial_ms, DEFAULT_BACKOFF_INITIAL_MS);
    k->opt.backoff_max_ms = or_default(opt->backoff_max_ms, DEFAULT_BACKOFF_MAX_MS);
    for (int i = 0; i < KUBE_RESOURCE_COUNT; i++) {
        struct reflector *r = &k->r[i];
        const char *slash = strchr(kube_resources[i].api_version, '/');
        r->k = k;
        r->res = &kube_resources[i];
        r->due_ms = -1;
        r->delay_ms = -1;
        if (slash)
            snprintf(r->rbac_name, sizeof r->rbac_name, "%s.%.*s", r->res->plural,
                     (int)(slash - r->res->api_version), r->res->api_version);
        else
            snprintf(r->rbac_name, sizeof r->rbac_name, "%s", r->res->plural);
        r->cache = json_object();
        if (!r->cache) {
            kube_informers_free(k);
            return NULL;
        }
    }
    return k;
}

void kube_informers_free(struct kube_informers *k)
{
    if (!k)
        return;
    for (int i = 0; i < KUBE_RESOURCE_COUNT; i++) {
        struct reflector *r = &k->r[i];
        if (r->req)
            kube_client_cancel(k->client, r->req);
        json_decref(r->cache);
        json_decref(r->building);
        free(r->continue_token);
        free(r->rv);
        kube_event_splitter_free(&r->split);
    }
    free(k);
}

void kube_informers_start(struct kube_informers *k, int64_t now_ms)
{
    for (int i = 0; i < KUBE_RESOURCE_COUNT; i++) {
        start_list(&k->r[i]);
        anchor(&k->r[i], now_ms);
    }
}

int kube_informers_tick(struct kube_informers *k, int64_t now_ms)
{
    int64_t next = -1;
    for (int i = 0; i < KUBE_RESOURCE_COUNT; i++) {
        struct reflector *r = &k->r[i];
        anchor(r, now_ms);
        if (r->due_ms >= 0 && r->due_ms <= now_ms && !r->req) {
            enum step step = r->due;
            r->due = STEP_NONE;
            r->due_ms = -1;
            if (step == STEP_WATCH)
                start_watch(r);
            else
                start_list(r);
            anchor(r, now_ms);   /* a start that failed at once */
        }
        if (r->due_ms >= 0 && (next < 0 || r->due_ms - now_ms < next))
            next = r->due_ms - now_ms;
    }
    return next > INT_MAX ? INT_MAX : (int)next;
}

int kube_informers_synced(const struct kube_informers *k)
{
    for (int i = 0; i < KUBE_RESOURCE_COUNT; i++)
        if (!k->r[i].synced)
            return 0;
    return 1;
}

unsigned long long kube_informers_generation(const struct kube_informers *k)
{
    return k->generation;
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* In key order, so the same objects always make the same snapshot. */
static int append_sorted(json_t *out, json_t *cache)
{
    size_t n = json_object_size(cache), i = 0;
    if (n == 0)
        return 0;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys)
        return -1;
    const char *key;
    json_t *obj;
    json_object_foreach(cache, key, obj) {
        keys[i++] = key;
    }
    qsort(keys, n, sizeof *keys, compare_keys);
    int rc = 0;
    for (i = 0; i < n && rc == 0; i++)
        rc = json_array_append(out, json_object_get(cache, keys[i]));
    free(keys);
    return rc;
}

json_t *kube_informers_snapshot(const struct kube_informers *k)
{
    json_t *out = json_array();
    for (int i = 0; out && i < KUBE_RESOURCE_COUNT; i++) {
        if (append_sorted(out, k->r[i].cache) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

void kube_informers_stats(const struct kube_informers *k, struct kube_informer_stats *out)
{
    *out = (struct kube_informer_stats){
        .events = k->events,
        .lists = k->lists,
        .watch_restarts = k->watch_restarts,
        .errors = k->errors,
    };
    for (int i = 0; i < KUBE_RESOURCE_COUNT; i++) {
        if (k->r[i].req && k->r[i].running == STEP_WATCH)
            out->watching++;
        out->objects += json_object_size(k->r[i].cache);
    }
}

/* ---- the watch stream splitter ---- */

static void emit_line(const char *line, size_t len, kube_event_fn *fn, void *ctx)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
        i++;
    if (i == len)
        return;
    json_t *ev = json_loadb(line, len, JSON_DECODE_ANY, NULL);
    fn(ctx, ev);
    json_decref(ev);
}

static int splitter_append(struct kube_event_splitter *s, const char *data, size_t len)
{
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + len)
            cap *= 2;
        char *buf = realloc(s->buf, cap);
        if (!buf)
            return -1;
        s->buf = buf;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return 0;
}

int kube_event_split(struct kube_event_splitter *s, const char *data, size_t len,
                     kube_event_fn *fn, void *ctx)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (s->len + take > LINE_MAX_BYTES) {
            s->len = 0;
            return -1;
        }
        if (s->len == 0 && nl) {
            emit_line(data, take, fn, ctx);   /* the common case: no copy */
        } else {
            if (splitter_append(s, data, take) < 0) {
                s->len = 0;
                return -1;
            }
            if (nl) {
                emit_line(s->buf, s->len, fn, ctx);
                s->len = 0;
                if (s->cap > SPLIT_KEEP_BYTES)
                    kube_event_splitter_free(s);
            }
        }
        if (!nl)
            break;
        data = nl + 1;
        len -= take + 1;
    }
    return 0;
}

void kube_event_splitter_free(struct kube_event_splitter *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}
