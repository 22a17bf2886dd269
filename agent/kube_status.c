/*
 * kube_status.c - the edge nodes' addresses in the status of the Ingresses they serve (see
 * kube_status.h).
 *
 * Three loops, each with one request at a time, restarted every retry period from tick():
 *  - heartbeat: GET our Lease, then PUT it renewed (POST it when missing);
 *  - election: GET the leader Lease, then PUT/POST it when it is ours, empty or expired;
 *  - leader work: LIST the heartbeat Leases, then PATCH every served Ingress that differs.
 * Request callbacks only keep the answer; tick() handles it with the caller's monotonic time, so
 * every "first seen at" is on one clock and none of the logic runs from inside the client.
 * Expiry follows client-go: a Lease record is judged by how long ago we first saw it unchanged,
 * never by the renewTime another machine's clock wrote (that is only compared for change).
 */
#include "kube_status.h"

#include "k8s_object.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEARTBEAT_LABEL "gatehouse.dev/heartbeat"
#define ADDRESSES_ANNOTATION "gatehouse.dev/addresses"
#define LEASES_API "/apis/coordination.k8s.io/v1/namespaces/"
#define MAX_PATCHES 8              /* Ingress patches in flight at once */
#define PATCH_TIMEOUT_MS 10000
#define MAX_LEASE_SECONDS 3600     /* a Lease's own duration is untrusted: bound it */
#define IDLE_WAKE_MS 60000

/* One request and, once it finished, its answer until tick() handles it. */
struct call {
    struct kube_request *req;  /* while running */
    int done;
    long status;               /* 0: no answer; body then holds curl's reason */
    char *body;
    size_t body_len;
};

enum phase { IDLE, READING, WRITING };

struct loop {
    struct call call;
    enum phase phase;
    int64_t due_ms;
    char failing[128];         /* what last failed and how ("renew 403"), "" when fine */
};

struct patch {
    struct call call;
    char *key;                 /* "namespace/name" while in flight */
    char *set;                 /* the address set sent */
    char *rv;                  /* the object's resourceVersion when sent */
};

/* The last leader Lease record seen, and when we first saw it. */
struct observed {
    char *holder, *renew, *rv;
    int64_t at_ms;
};

struct kube_status {
    struct kube_client *client;
    const char *node;
    const char *ns;            /* of the Leases */
    int64_t duration_ms, deadline_ms, retry_ms;
    int lease_duration_s;
    int timeout_ms;
    json_t *own;               /* this node's addresses, sorted and unique */
    char *own_csv;
    char node_lease[256];
    char beat_path[512], leader_path[512], leases_path[512], list_path[600];
    struct loop beat, elect, work;
    struct observed seen_leader;
    json_t *leader_lease;      /* the leader Lease as we last wrote it (for release) */
    int leader;
    int64_t renewed_ms;
    int stopped;
    int64_t now_ms;            /* of the tick being handled, for live_heartbeat */
    json_t *seen;              /* heartbeat Lease name -> [renewTime, first seen ms] */
    json_t *desired;           /* the addresses every served Ingress should show (leader) */
    char *desired_str;
    json_t *objects, *served;
    int dirty;                 /* a patch pass is due */
    json_t *patched;           /* key -> {"rv","set"} sent, or {"retry": ms, "failed": status} */
    struct patch patches[MAX_PATCHES];
    struct call release;       /* its callbacks get s, not the call */
    int release_reread;
};

/* ---- addresses ---- */

static int is_ip(const char *a)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1;
}

/* Addresses come from annotations anyone with Lease write access can set: only IP literals and
 * DNS names reach an Ingress status. */
static int valid_address(const char *a)
{
    if (is_ip(a))
        return 1;
    size_t n = strlen(a);
    if (n == 0 || n > 253 || a[0] == '.' || a[0] == '-' || strstr(a, ".."))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = a[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* Appends the valid addresses of "a, b,c" to arr; returns how many were refused. */
static int add_csv(json_t *arr, const char *csv)
{
    int refused = 0;
    while (csv && *csv) {
        const char *end = strchr(csv, ',');
        size_t len = end ? (size_t)(end - csv) : strlen(csv);
        while (len && (*csv == ' ' || *csv == '\t'))
            csv++, len--;
        while (len && (csv[len - 1] == ' ' || csv[len - 1] == '\t'))
            len--;
        if (len > 0 && len < 256) {
            char a[256];
            memcpy(a, csv, len);
            a[len] = '\0';
            if (valid_address(a))
                json_array_append_new(arr, json_string(a));
            else
                refused++;
        } else if (len) {
            refused++;
        }
        csv = end ? end + 1 : NULL;
    }
    return refused;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A new array of the strings in arr, sorted, without duplicates. */
static json_t *sorted_unique(const json_t *arr)
{
    size_t n = json_array_size(arr), m = 0;
    const char **v = calloc(n ? n : 1, sizeof *v);
    json_t *out = json_array();
    if (!v || !out) {
        free(v);
        json_decref(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (json_is_string(json_array_get(arr, i)))
            v[m++] = json_string_value(json_array_get(arr, i));
    qsort(v, m, sizeof *v, compare_strings);
    for (size_t i = 0; i < m; i++)
        if (i == 0 || strcmp(v[i], v[i - 1]) != 0)
            json_array_append_new(out, json_string(v[i]));
    free(v);
    return out;
}

json_t *kube_status_live_addresses(const json_t *lease_list,
                                   int (*live_fn)(void *ctx, const json_t *lease), void *ctx)
{
    const json_t *items = NULL;
    json_t *all = json_array();
    if (!all)
        return NULL;
    if (k8s_array(lease_list, "items", &items) == K8S_PRESENT) {
        size_t i;
        const json_t *lease;
        json_array_foreach(items, i, lease) {
            /* list items carry no kind: metadata is read directly, not with k8s_meta_read */
            const json_t *meta = NULL, *labels = NULL, *notes = NULL;
            const char *label = NULL, *csv = NULL;
            k8s_object(lease, "metadata", &meta);
            k8s_object(meta, "labels", &labels);
            k8s_object(meta, "annotations", &notes);
            if (k8s_string(labels, HEARTBEAT_LABEL, &label) != K8S_PRESENT ||
                strcmp(label, "true") != 0 || (live_fn && !live_fn(ctx, lease)))
                continue;
            if (k8s_string(notes, ADDRESSES_ANNOTATION, &csv) == K8S_PRESENT)
                add_csv(all, csv);
        }
    }
    json_t *out = sorted_unique(all);
    json_decref(all);
    return out;
}

/* "i:1.2.3.4" / "h:name": an address with the status field it belongs in. */
static char *tagged(const char *field, const char *value)
{
    size_t n = strlen(value) + 3;
    char *t = malloc(n);
    if (t)
        snprintf(t, n, "%c:%s", field[0], value);
    return t;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The status entries as tagged strings, or -1 when an entry is neither ip nor hostname. */
static long status_entries(const json_t *ingress, char ***out)
{
    const json_t *status = NULL, *lb = NULL, *entries = NULL;
    k8s_object(ingress, "status", &status);
    k8s_object(status, "loadBalancer", &lb);
    if (k8s_array(lb, "ingress", &entries) == K8S_WRONG_TYPE)
        return -1;
    size_t n = json_array_size(entries);
    char **v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(entries, i);
        const char *ip = NULL, *host = NULL;
        int has_ip = k8s_string(e, "ip", &ip) == K8S_PRESENT;
        int has_host = k8s_string(e, "hostname", &host) == K8S_PRESENT;
        if (has_ip == has_host || !(v[i] = tagged(has_ip ? "ip" : "hostname", has_ip ? ip : host))) {
            free_strings(v, i);
            return -1;
        }
    }
    *out = v;
    return (long)n;
}

int kube_status_matches(const json_t *ingress, const json_t *addresses)
{
    char **have = NULL;
    long n = status_entries(ingress, &have);
    if (n < 0)
        return 0;
    size_t m = json_array_size(addresses);
    char **want = calloc(m ? m : 1, sizeof *want);
    int same = want && (size_t)n == m;
    for (size_t i = 0; same && i < m; i++) {
        const char *a = json_string_value(json_array_get(addresses, i));
        same = a && (want[i] = tagged(is_ip(a) ? "ip" : "hostname", a)) != NULL;
    }
    if (same) {
        qsort(have, (size_t)n, sizeof *have, compare_strings);
        qsort(want, m, sizeof *want, compare_strings);
        for (size_t i = 0; same && i < m; i++)
            same = strcmp(have[i], want[i]) == 0;
    }
    free_strings(have, (size_t)n);
    if (want)
        free_strings(want, m);
    return same;
}

char *kube_status_patch_body(const json_t *addresses)
{
    json_t *entries = json_array();
    size_t i;
    const json_t *a;
    json_array_foreach(addresses, i, a) {
        if (json_is_string(a))
            json_array_append_new(entries, json_pack("{ss}", is_ip(json_string_value(a)) ?
                                                     "ip" : "hostname", json_string_value(a)));
    }
    json_t *doc = json_pack("{s{s{so}}}", "status", "loadBalancer", "ingress", entries);
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return body;
}

int kube_status_default_address(char *out, size_t outlen, char *err, size_t errlen)
{
    /* connect() on a UDP socket only picks the route and source address: nothing is sent.
     * The targets are documentation addresses (RFC 5737, RFC 3849). */
    struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_port = htons(9) };
    struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_port = htons(9) };
    inet_pton(AF_INET, "192.0.2.1", &v4.sin_addr);
    inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr);
    const struct sockaddr *targets[2] = { (const struct sockaddr *)&v4,
                                          (const struct sockaddr *)&v6 };
    const socklen_t lens[2] = { sizeof v4, sizeof v6 };
    int saved = 0;
    for (int i = 0; i < 2; i++) {
        int fd = socket(targets[i]->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (fd >= 0 && connect(fd, targets[i], lens[i]) == 0 &&
            getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
            const void *addr = ss.ss_family == AF_INET ?
                (const void *)&((struct sockaddr_in *)&ss)->sin_addr :
                (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
            int ok = inet_ntop(ss.ss_family, addr, out, (socklen_t)outlen) != NULL;
            close(fd);
            if (ok)
                return 0;
            return set_err(err, errlen, "default address: buffer too small");
        }
        if (i == 0)
            saved = errno;
        if (fd >= 0)
            close(fd);
    }
    return set_err(err, errlen, "no default route to find this node's address from "
                   "(connect 192.0.2.1:9: %s); set the node's addresses explicitly",
                   strerror(saved));
}

/* ---- requests ---- */

static void call_reset(struct call *c)
{
    free(c->body);
    c->body = NULL;
    c->body_len = 0;
    c->done = 0;
    c->status = 0;
}

static void call_done(void *ctx, const struct kube_response *r)
{
    struct call *c = ctx;
    const char *text = r->status ? r->body : (r->error ? r->error : "no answer");
    size_t len = text ? (r->status ? r->body_len : strlen(text)) : 0;
    c->req = NULL;
    c->done = 1;
    c->status = r->status;
    free(c->body);
    c->body = malloc(len + 1);
    c->body_len = c->body ? len : 0;
    if (c->body) {
        if (len)
            memcpy(c->body, text, len);
        c->body[len] = '\0';
    }
}

static int call_start(struct kube_status *s, struct call *c, const char *method, const char *path,
                      const char *content_type, const char *body, int timeout_ms,
                      kube_done_fn *on_done)
{
    call_reset(c);
    struct kube_request_spec spec = {
        .method = method, .path = path, .content_type = body ? content_type : NULL,
        .body = body, .body_len = body ? strlen(body) : 0, .timeout_ms = timeout_ms,
        /* the default callback fills the call; a specific one (release) gets s itself */
        .on_done = on_done ? on_done : call_done, .ctx = on_done ? (void *)s : (void *)c,
    };
    c->req = kube_client_start(s->client, &spec);
    return c->req ? 0 : -1;
}

static void call_cancel(struct kube_status *s, struct call *c)
{
    if (c->req)
        kube_client_cancel(s->client, c->req);
    c->req = NULL;
    call_reset(c);
}

static json_t *call_json(const struct call *c)
{
    json_t *doc = c->body ? json_loadb(c->body, c->body_len, 0, NULL) : NULL;
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}

static const char *reason_phrase(long status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

/* "403 Forbidden: <the Status message>", or curl's reason when no answer came. */
static void describe(long status, const char *body, size_t len, char *out, size_t outlen)
{
    if (status == 0) {
        snprintf(out, outlen, "%s", body ? body : "no answer");
        return;
    }
    char msg[256] = "";
    kube_client_status_message(body ? body : "", body ? len : 0, msg, sizeof msg);
    snprintf(out, outlen, "%ld%s%s%s%s", status, *reason_phrase(status) ? " " : "",
             reason_phrase(status), *msg ? ": " : "", msg);
}

/* Logs a failure when it differs from the last one logged (by what failed and the status, so a
 * varying message - a timeout's duration - does not log again). */
static void loop_failed(struct loop *l, const char *what, const struct call *c)
{
    char key[sizeof l->failing], why[400];
    snprintf(key, sizeof key, "%s %ld", what, c->status);
    if (strcmp(key, l->failing) == 0)
        return;
    snprintf(l->failing, sizeof l->failing, "%s", key);
    describe(c->status, c->body, c->body_len, why, sizeof why);
    log_warn("status: cannot %s: %s (retrying every period)", what, why);
}

static void loop_ok(struct loop *l, const char *what)
{
    if (l->failing[0])
        log_info("status: could %s again", what);
    l->failing[0] = '\0';
}

/* ---- Lease documents ---- */

static void micro_time(char out[40])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%06ldZ", ts.tv_nsec / 1000);
}

static json_t *ensure_object(json_t *parent, const char *key)
{
    json_t *v = json_object_get(parent, key);
    if (!json_is_object(v)) {
        v = json_object();
        json_object_set_new(parent, key, v);
    }
    return v;
}

static json_t *new_lease(const struct kube_status *s, const char *name)
{
    const char *ns = s->ns;
    return json_pack("{ss ss s{ss ss} s{}}", "apiVersion", "coordination.k8s.io/v1",
                     "kind", "Lease", "metadata", "name", name, "namespace", ns, "spec");
}

/* Stamps lease (a GET answer, or new) as our heartbeat. */
static void heartbeat_fill(const struct kube_status *s, json_t *lease, const char *now)
{
    json_t *meta = ensure_object(lease, "metadata");
    json_object_set_new(ensure_object(meta, "labels"), HEARTBEAT_LABEL, json_string("true"));
    json_object_set_new(ensure_object(meta, "annotations"), ADDRESSES_ANNOTATION,
                        json_string(s->own_csv));
    json_t *spec = ensure_object(lease, "spec");
    json_object_set_new(spec, "holderIdentity", json_string(s->node));
    json_object_set_new(spec, "leaseDurationSeconds", json_integer(s->lease_duration_s));
    if (!json_is_string(json_object_get(spec, "acquireTime")))
        json_object_set_new(spec, "acquireTime", json_string(now));
    json_object_set_new(spec, "renewTime", json_string(now));
}

/* Stamps lease as held by us; a change of holder (an emptied one included) is a transition,
 * as in client-go. */
static void leader_fill(const struct kube_status *s, json_t *lease, const char *now, int created)
{
    json_t *spec = ensure_object(lease, "spec");
    const char *holder = json_string_value(json_object_get(spec, "holderIdentity"));
    long long transitions = 0;
    if (k8s_integer(spec, "leaseTransitions", &transitions) != K8S_PRESENT || transitions < 0)
        transitions = 0;
    if (!holder || strcmp(holder, s->node) != 0 ||
        !json_is_string(json_object_get(spec, "acquireTime"))) {
        json_object_set_new(spec, "acquireTime", json_string(now));
        if (!created && (!holder || strcmp(holder, s->node) != 0))
            transitions++;
    }
    json_object_set_new(spec, "holderIdentity", json_string(s->node));
    json_object_set_new(spec, "leaseDurationSeconds", json_integer(s->lease_duration_s));
    json_object_set_new(spec, "renewTime", json_string(now));
    json_object_set_new(spec, "leaseTransitions", json_integer(transitions));
}

static char *dump(const json_t *doc)
{
    return doc ? json_dumps(doc, JSON_COMPACT) : NULL;
}

/* Starts PUT (with the answer's resourceVersion) or POST of lease; 0, or -1 out of memory. */
static int write_lease(struct kube_status *s, struct call *c, json_t *lease, const char *path,
                       int create)
{
    char *body = dump(lease);
    int rc = body ? call_start(s, c, create ? "POST" : "PUT", create ? s->leases_path : path,
                               "application/json", body, s->timeout_ms, NULL) : -1;
    free(body);
    return rc;
}

static const char *spec_string(const json_t *lease, const char *key)
{
    const json_t *spec = NULL;
    const char *v = NULL;
    k8s_object(lease, "spec", &spec);
    k8s_string(spec, key, &v);
    return v;
}

static const char *resource_version(const json_t *obj)
{
    const json_t *meta = NULL;
    const char *v = NULL;
    k8s_object(obj, "metadata", &meta);
    k8s_string(meta, "resourceVersion", &v);
    return v;
}

/* The Lease's own duration, the one its holder promised (client-go judges by it). */
static int64_t lease_duration_ms(const struct kube_status *s, const json_t *lease)
{
    const json_t *spec = NULL;
    long long d;
    k8s_object(lease, "spec", &spec);
    if (k8s_integer(spec, "leaseDurationSeconds", &d) != K8S_PRESENT || d <= 0)
        return s->duration_ms;
    return (d > MAX_LEASE_SECONDS ? MAX_LEASE_SECONDS : d) * 1000;
}

/* ---- heartbeat: our own Lease, renewed every period ---- */

static void beat_start(struct kube_status *s, int64_t now)
{
    s->beat.due_ms = now + s->retry_ms;
    if (call_start(s, &s->beat.call, "GET", s->beat_path, NULL, NULL, s->timeout_ms, NULL) == 0)
        s->beat.phase = READING;
}

static void beat_answer(struct kube_status *s)
{
    struct call *c = &s->beat.call;
    char what[300], stamp[40];
    enum phase phase = s->beat.phase;
    s->beat.phase = IDLE;
    snprintf(what, sizeof what, "renew lease %s", s->node_lease);
    if (phase == WRITING && (c->status == 200 || c->status == 201)) {
        loop_ok(&s->beat, what);
    } else if (phase == READING && (c->status == 200 || c->status == 404)) {
        int create = c->status == 404;
        json_t *lease = create ? new_lease(s, s->node_lease) : call_json(c);
        if (!lease) {
            loop_failed(&s->beat, what, c);
        } else {
            micro_time(stamp);
            heartbeat_fill(s, lease, stamp);
            if (write_lease(s, c, lease, s->beat_path, create) == 0)
                s->beat.phase = WRITING;
            json_decref(lease);
        }
    } else if (c->status != 409) {
        /* a conflict only means someone wrote in between: the next period reads afresh */
        loop_failed(&s->beat, what, c);
    }
    if (s->beat.phase == IDLE)
        call_reset(c);
}

/* Frees a patch slot, cancelling its request if still running. */
static void patch_clear(struct kube_status *s, struct patch *p)
{
    call_cancel(s, &p->call);
    free(p->key);
    free(p->set);
    free(p->rv);
    p->key = p->set = p->rv = NULL;
}

/* ---- leader election ---- */

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v ? v : "");
}

static int same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Remembers the record and when it was first seen in this form. */
static void observe_leader(struct kube_status *s, const json_t *lease, int64_t now)
{
    struct observed *o = &s->seen_leader;
    const char *holder = spec_string(lease, "holderIdentity");
    const char *renew = spec_string(lease, "renewTime");
    const char *rv = resource_version(lease);
    if (o->holder && same_str(o->holder, holder) && same_str(o->renew, renew) &&
        same_str(o->rv, rv))
        return;
    set_str(&o->holder, holder);
    set_str(&o->renew, renew);
    set_str(&o->rv, rv);
    o->at_ms = now;
}

static void become_leader(struct kube_status *s, int64_t now)
{
    log_info("status: this node (%s) now publishes Ingress status (it holds Lease %s/%s)",
             s->node, s->ns, KUBE_STATUS_LEADER_LEASE);
    s->leader = 1;
    s->work.due_ms = now;
    s->dirty = 1;
}

static void step_down(struct kube_status *s, const char *why)
{
    log_warn("status: this node (%s) stops publishing Ingress status: %s", s->node, why);
    s->leader = 0;
    call_cancel(s, &s->work.call);
    s->work.phase = IDLE;
    for (size_t i = 0; i < MAX_PATCHES; i++)
        patch_clear(s, &s->patches[i]);
    json_object_clear(s->patched);
    json_decref(s->desired);
    s->desired = NULL;
    free(s->desired_str);
    s->desired_str = NULL;
}

static void elect_start(struct kube_status *s, int64_t now)
{
    s->elect.due_ms = now + s->retry_ms;
    if (call_start(s, &s->elect.call, "GET", s->leader_path, NULL, NULL, s->timeout_ms, NULL) == 0)
        s->elect.phase = READING;
}

/* The leader Lease as read: leave it to its holder while valid, else write ourselves in. */
static void elect_read(struct kube_status *s, int64_t now, int create)
{
    struct call *c = &s->elect.call;
    json_t *lease = create ? new_lease(s, KUBE_STATUS_LEADER_LEASE) : call_json(c);
    char stamp[40];
    if (!lease) {
        loop_failed(&s->elect, "read lease " KUBE_STATUS_LEADER_LEASE " (not a JSON object)", c);
        return;
    }
    if (!create) {
        observe_leader(s, lease, now);
        const char *holder = s->seen_leader.holder ? s->seen_leader.holder : "";
        if (*holder && strcmp(holder, s->node) != 0 &&
            now < s->seen_leader.at_ms + lease_duration_ms(s, lease)) {
            if (s->leader) {
                char why[300];
                snprintf(why, sizeof why, "lease %s is now held by %s",
                         KUBE_STATUS_LEADER_LEASE, holder);
                step_down(s, why);
            }
            loop_ok(&s->elect, "read lease " KUBE_STATUS_LEADER_LEASE);
            json_decref(lease);
            return;
        }
    }
    micro_time(stamp);
    leader_fill(s, lease, stamp, create);
    if (write_lease(s, c, lease, s->leader_path, create) == 0)
        s->elect.phase = WRITING;
    json_decref(lease);
}

static void elect_written(struct kube_status *s, int64_t now)
{
    struct call *c = &s->elect.call;
    json_t *lease = call_json(c);
    if (!lease) {
        loop_failed(&s->elect, "renew lease " KUBE_STATUS_LEADER_LEASE
                    " (answer not a JSON object)", c);
        return;
    }
    loop_ok(&s->elect, "write lease " KUBE_STATUS_LEADER_LEASE);
    observe_leader(s, lease, now);
    json_decref(s->leader_lease);
    s->leader_lease = lease;
    s->renewed_ms = now;
    if (!s->leader)
        become_leader(s, now);
}

static void elect_answer(struct kube_status *s, int64_t now)
{
    struct call *c = &s->elect.call;
    enum phase phase = s->elect.phase;
    s->elect.phase = IDLE;
    if (phase == READING && (c->status == 200 || c->status == 404))
        elect_read(s, now, c->status == 404);
    else if (phase == WRITING && (c->status == 200 || c->status == 201))
        elect_written(s, now);
    else if (c->status == 409)
        log_debug("status: lost the race for lease %s", KUBE_STATUS_LEADER_LEASE);
    else
        loop_failed(&s->elect, s->leader ? "renew lease " KUBE_STATUS_LEADER_LEASE
                                         : "acquire lease " KUBE_STATUS_LEADER_LEASE, c);
    if (s->elect.phase == IDLE)
        call_reset(c);
}

/* ---- leader work: which nodes are alive, and the Ingresses that should show them ---- */

static int live_heartbeat(void *ctx, const json_t *lease)
{
    struct kube_status *s = ctx;
    const json_t *meta = NULL;
    const char *name = NULL;
    k8s_object(lease, "metadata", &meta);
    if (k8s_string(meta, "name", &name) != K8S_PRESENT || strcmp(name, s->node_lease) == 0)
        return 0;   /* our own addresses are added as configured, not as last written */
    json_t *seen = json_object_get(s->seen, name);
    return seen && s->now_ms < json_integer_value(json_array_get(seen, 1)) +
                               lease_duration_ms(s, lease);
}

/* Refreshes name -> [renewTime, first seen] for the listed Leases and forgets the others. */
static void observe_heartbeats(struct kube_status *s, const json_t *items, int64_t now)
{
    json_t *seen = json_object();
    size_t i;
    const json_t *lease;
    json_array_foreach(items, i, lease) {
        const json_t *meta = NULL;
        const char *name = NULL;
        k8s_object(lease, "metadata", &meta);
        if (k8s_string(meta, "name", &name) != K8S_PRESENT)
            continue;
        const char *renew = spec_string(lease, "renewTime");
        json_t *old = json_object_get(s->seen, name);
        if (old && same_str(json_string_value(json_array_get(old, 0)), renew))
            json_object_set(seen, name, old);
        else
            json_object_set_new(seen, name, json_pack("[sI]", renew ? renew : "", (json_int_t)now));
    }
    json_decref(s->seen);
    s->seen = seen;
}

static void start_work(struct kube_status *s, int64_t now)
{
    s->work.due_ms = now + s->retry_ms;
    if (call_start(s, &s->work.call, "GET", s->list_path, NULL, NULL, s->timeout_ms, NULL) == 0)
        s->work.phase = READING;
}

static void work_answer(struct kube_status *s, int64_t now)
{
    struct call *c = &s->work.call;
    json_t *list = c->status == 200 ? call_json(c) : NULL;
    const json_t *items = NULL;
    s->work.phase = IDLE;
    if (!list || k8s_array(list, "items", &items) != K8S_PRESENT) {
        loop_failed(&s->work, "list heartbeat leases", c);
        json_decref(list);
        call_reset(c);
        return;
    }
    loop_ok(&s->work, "list heartbeat leases");
    observe_heartbeats(s, items, now);
    json_t *live = kube_status_live_addresses(list, live_heartbeat, s);
    json_decref(list);
    call_reset(c);
    if (!live)
        return;
    json_array_extend(live, s->own);
    json_t *desired = sorted_unique(live);
    json_decref(live);
    char *str = dump(desired);
    if (!desired || !str) {
        json_decref(desired);
        free(str);
        return;
    }
    if (!s->desired_str || strcmp(str, s->desired_str) != 0)
        log_info("status: live edge addresses: %s", str);
    json_decref(s->desired);
    free(s->desired_str);
    s->desired = desired;
    s->desired_str = str;
    s->dirty = 1;   /* every period, so failed patches are retried and drift is repaired */
}

/* ---- patching Ingress status ---- */

/* "namespace/name" -> Ingress, over the objects given. */
static json_t *ingress_index(const json_t *objects)
{
    json_t *index = json_object();
    size_t i;
    const json_t *obj;
    json_array_foreach(objects, i, obj) {
        struct k8s_meta m;
        char err[128], key[512];
        if (k8s_meta_read(obj, &m, err, sizeof err) != 0 || !m.kind || !m.name ||
            strcmp(m.kind, "Ingress") != 0)
            continue;
        snprintf(key, sizeof key, "%s/%s", m.ns ? m.ns : "default", m.name);
        json_object_set(index, key, (json_t *)obj);
    }
    return index;
}

static struct patch *patch_slot(struct kube_status *s, const char *key, int *running)
{
    struct patch *free_slot = NULL;
    *running = 0;
    for (size_t i = 0; i < MAX_PATCHES; i++) {
        struct patch *p = &s->patches[i];
        if (p->key && strcmp(p->key, key) == 0)
            *running = 1;
        else if (!p->key && !free_slot)
            free_slot = p;
    }
    return free_slot;
}

/* Skips an Ingress whose last patch the informer has not shown yet, or that failed lately. */
static int patch_pending(const struct kube_status *s, const char *key, const json_t *ingress,
                         int64_t now)
{
    json_t *rec = json_object_get(s->patched, key);
    if (!rec)
        return 0;
    json_t *retry = json_object_get(rec, "retry");
    if (retry)
        return now < json_integer_value(retry);
    return same_str(json_string_value(json_object_get(rec, "rv")), resource_version(ingress)) &&
           same_str(json_string_value(json_object_get(rec, "set")), s->desired_str);
}

static void patch_start(struct kube_status *s, struct patch *p, const char *key,
                        const json_t *ingress)
{
    char ns[256], name[256], ens[768], ename[768], path[1800];
    const char *slash = strchr(key, '/');
    if (!slash || (size_t)(slash - key) >= sizeof ns || strlen(slash + 1) >= sizeof name)
        return;
    memcpy(ns, key, (size_t)(slash - key));
    ns[slash - key] = '\0';
    snprintf(name, sizeof name, "%s", slash + 1);
    if (!kube_client_escape(ns, ens, sizeof ens) || !kube_client_escape(name, ename, sizeof ename))
        return;
    snprintf(path, sizeof path, "/apis/networking.k8s.io/v1/namespaces/%s/ingresses/%s/status",
             ens, ename);
    char *body = kube_status_patch_body(s->desired);
    p->key = strdup(key);
    p->set = strdup(s->desired_str);
    p->rv = strdup(resource_version(ingress) ? resource_version(ingress) : "");
    if (!body || !p->key || !p->set || !p->rv ||
        call_start(s, &p->call, "PATCH", path, "application/merge-patch+json", body,
                   PATCH_TIMEOUT_MS, NULL) != 0)
        patch_clear(s, p);
    free(body);
}

static void patch_pass(struct kube_status *s, int64_t now)
{
    s->dirty = 0;
    if (!s->objects || !s->served)
        return;
    json_t *index = ingress_index(s->objects);
    json_t *kept = json_object();   /* records of Ingresses still served */
    size_t i;
    const json_t *k;
    json_array_foreach(s->served, i, k) {
        const char *key = json_string_value(k);
        json_t *ingress = key ? json_object_get(index, key) : NULL;
        if (!ingress)
            continue;
        if (json_object_get(s->patched, key))
            json_object_set(kept, key, json_object_get(s->patched, key));
        int running;
        struct patch *slot = patch_slot(s, key, &running);
        if (running || kube_status_matches(ingress, s->desired) ||
            patch_pending(s, key, ingress, now))
            continue;
        if (slot)
            patch_start(s, slot, key, ingress);
        /* without a free slot, the next patch to finish brings another pass */
    }
    json_decref(s->patched);
    s->patched = kept;
    json_decref(index);
}

static void patch_answer(struct kube_status *s, struct patch *p, int64_t now)
{
    struct call *c = &p->call;
    if (c->status == 200 || c->status == 201) {
        log_info("status: Ingress %s now shows %s", p->key, p->set);
        json_object_set_new(s->patched, p->key, json_pack("{ss ss}", "rv", p->rv, "set", p->set));
    } else if (c->status == 404) {
        json_object_del(s->patched, p->key);   /* deleted meanwhile: the informer will say so */
    } else {
        /* logged once per Ingress and kind of failure; retried every period */
        json_t *rec = json_object_get(s->patched, p->key);
        json_t *was = json_object_get(rec, "failed");
        if (!was || json_integer_value(was) != c->status) {
            char why[400];
            describe(c->status, c->body, c->body_len, why, sizeof why);
            log_warn("status: cannot update the status of Ingress %s: %s (retrying every "
                     "period)", p->key, why);
        }
        json_object_set_new(s->patched, p->key, json_pack("{sI sI}", "retry",
                                                          (json_int_t)(now + s->retry_ms),
                                                          "failed", (json_int_t)c->status));
    }
    patch_clear(s, p);
    s->dirty = 1;
}

/* ---- the public face ---- */

static int build_path(char *out, size_t outlen, const char *ns, const char *name)
{
    char ens[768], ename[768];
    if (!kube_client_escape(ns, ens, sizeof ens) ||
        (name && !kube_client_escape(name, ename, sizeof ename)))
        return -1;
    int n = snprintf(out, outlen, LEASES_API "%s/leases%s%s", ens, name ? "/" : "",
                     name ? ename : "");
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

struct kube_status *kube_status_new(struct kube_client *client,
                                    const struct kube_status_options *opt)
{
    struct kube_status *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    const char *ns = opt->lease_namespace && *opt->lease_namespace ? opt->lease_namespace
                                                                     : "default";
    s->client = client;
    s->node = opt->node_name ? opt->node_name : "";
    s->ns = ns;
    s->lease_duration_s = opt->lease_duration_s > 0 ? opt->lease_duration_s : 15;
    s->duration_ms = (int64_t)s->lease_duration_s * 1000;
    s->deadline_ms = (int64_t)(opt->renew_deadline_s > 0 ? opt->renew_deadline_s : 10) * 1000;
    s->retry_ms = (int64_t)(opt->retry_period_s > 0 ? opt->retry_period_s : 2) * 1000;
    /* a request outliving half the renew deadline would leave no time for another try */
    s->timeout_ms = (int)(s->deadline_ms / 2 > 1000 ? s->deadline_ms / 2 : 1000);
    snprintf(s->node_lease, sizeof s->node_lease, KUBE_STATUS_NODE_LEASE_PREFIX "%s", s->node);
    s->own = json_array();
    s->seen = json_object();
    s->patched = json_object();
    if (!s->own || !s->seen || !s->patched ||
        build_path(s->beat_path, sizeof s->beat_path, ns, s->node_lease) != 0 ||
        build_path(s->leader_path, sizeof s->leader_path, ns, KUBE_STATUS_LEADER_LEASE) != 0 ||
        build_path(s->leases_path, sizeof s->leases_path, ns, NULL) != 0) {
        kube_status_free(s);
        return NULL;
    }
    snprintf(s->list_path, sizeof s->list_path, "%s?labelSelector=gatehouse.dev%%2Fheartbeat%%3Dtrue",
             s->leases_path);
    if (add_csv(s->own, opt->addresses) > 0)
        log_warn("status: ignoring addresses that are neither IPs nor DNS names in \"%s\"",
                 opt->addresses);
    json_t *own = sorted_unique(s->own);
    json_decref(s->own);
    s->own = own;
    size_t len = 1, i;
    json_t *a;
    json_array_foreach(own, i, a)
        len += json_string_length(a) + 1;
    s->own_csv = calloc(1, len);
    if (!own || !s->own_csv) {
        kube_status_free(s);
        return NULL;
    }
    json_array_foreach(own, i, a) {
        if (i)
            strcat(s->own_csv, ",");
        strcat(s->own_csv, json_string_value(a));
    }
    return s;
}

static void cancel_all(struct kube_status *s)
{
    call_cancel(s, &s->beat.call);
    call_cancel(s, &s->elect.call);
    s->beat.phase = s->elect.phase = IDLE;
    call_cancel(s, &s->work.call);
    for (size_t i = 0; i < MAX_PATCHES; i++)
        patch_clear(s, &s->patches[i]);
}

void kube_status_free(struct kube_status *s)
{
    if (!s)
        return;
    cancel_all(s);
    call_cancel(s, &s->release);
    json_decref(s->own);
    free(s->own_csv);
    free(s->seen_leader.holder);
    free(s->seen_leader.renew);
    free(s->seen_leader.rv);
    json_decref(s->leader_lease);
    json_decref(s->seen);
    json_decref(s->desired);
    free(s->desired_str);
    json_decref(s->objects);
    json_decref(s->served);
    json_decref(s->patched);
    free(s);
}

void kube_status_set_ingresses(struct kube_status *s, const json_t *objects, const json_t *served)
{
    /* jansson's reference counts live in the value: keeping a reference means casting */
    json_t *o = json_incref((json_t *)objects), *v = json_incref((json_t *)served);
    json_decref(s->objects);
    json_decref(s->served);
    s->objects = o;
    s->served = v;
    s->dirty = 1;
}

static void handle_answers(struct kube_status *s, int64_t now)
{
    if (s->beat.call.done)
        beat_answer(s);
    if (s->elect.call.done)
        elect_answer(s, now);
    if (s->work.call.done) {
        if (s->leader)
            work_answer(s, now);
        else
            call_reset(&s->work.call);
    }
    for (size_t i = 0; i < MAX_PATCHES; i++)
        if (s->patches[i].call.done)
            patch_answer(s, &s->patches[i], now);
}

static int64_t until(int64_t due, int64_t now, int64_t best)
{
    int64_t d = due > now ? due - now : 0;
    return d < best ? d : best;
}

int kube_status_tick(struct kube_status *s, int64_t now_ms)
{
    s->now_ms = now_ms;
    if (s->stopped)
        return IDLE_WAKE_MS;
    handle_answers(s, now_ms);
    if (s->leader && now_ms - s->renewed_ms >= s->deadline_ms) {
        char why[200];
        snprintf(why, sizeof why, "lease %s not renewed for %lld s", KUBE_STATUS_LEADER_LEASE,
                 (long long)(s->deadline_ms / 1000));
        step_down(s, why);
    }
    if (s->beat.phase == IDLE && now_ms >= s->beat.due_ms)
        beat_start(s, now_ms);
    if (s->elect.phase == IDLE && now_ms >= s->elect.due_ms)
        elect_start(s, now_ms);
    if (s->leader && s->work.phase == IDLE && now_ms >= s->work.due_ms)
        start_work(s, now_ms);
    if (s->leader && s->desired && s->dirty)
        patch_pass(s, now_ms);
    int64_t next = IDLE_WAKE_MS;
    if (s->beat.phase == IDLE)
        next = until(s->beat.due_ms, now_ms, next);
    if (s->elect.phase == IDLE)
        next = until(s->elect.due_ms, now_ms, next);
    if (s->leader) {
        next = until(s->renewed_ms + s->deadline_ms, now_ms, next);
        if (s->work.phase == IDLE)
            next = until(s->work.due_ms, now_ms, next);
    }
    return (int)next;
}

/* Release runs from the client's callbacks alone: after it, tick() is not called any more. */
static void release_read(void *ctx, const struct kube_response *r);

static void release_failed(const struct kube_response *r)
{
    char why[400];
    describe(r->status, r->status ? r->body : r->error,
             r->status ? r->body_len : (r->error ? strlen(r->error) : 0), why, sizeof why);
    log_warn("status: cannot release lease %s: %s; it expires by itself", KUBE_STATUS_LEADER_LEASE,
             why);
}

static void release_answer(void *ctx, const struct kube_response *r)
{
    struct kube_status *s = ctx;
    s->release.req = NULL;
    if (r->status == 200) {
        log_info("status: released lease %s", KUBE_STATUS_LEADER_LEASE);
    } else if (r->status == 409 && !s->release_reread) {
        /* a renewal cancelled on its way still reached the server: read, then try once more */
        s->release_reread = 1;
        if (call_start(s, &s->release, "GET", s->leader_path, NULL, NULL, s->timeout_ms,
                       release_read) != 0)
            release_failed(r);
    } else {
        release_failed(r);
    }
}

/* client-go's ReleaseOnCancel: the same resourceVersion, nobody holding, 1 s to expiry. */
static int release_put(struct kube_status *s, json_t *lease)
{
    char stamp[40];
    micro_time(stamp);
    json_t *spec = ensure_object(lease, "spec");
    json_object_set_new(spec, "holderIdentity", json_string(""));
    json_object_set_new(spec, "leaseDurationSeconds", json_integer(1));
    json_object_set_new(spec, "acquireTime", json_string(stamp));
    json_object_set_new(spec, "renewTime", json_string(stamp));
    char *body = dump(lease);
    int rc = body ? call_start(s, &s->release, "PUT", s->leader_path, "application/json", body,
                               s->timeout_ms, release_answer) : -1;
    free(body);
    return rc;
}

static void release_read(void *ctx, const struct kube_response *r)
{
    struct kube_status *s = ctx;
    s->release.req = NULL;
    json_t *lease = r->status == 200 ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    const char *holder = spec_string(lease, "holderIdentity");
    if (!json_is_object(lease))
        release_failed(r);
    else if (!holder || strcmp(holder, s->node) != 0)
        log_info("status: lease %s is no longer ours to release", KUBE_STATUS_LEADER_LEASE);
    else if (release_put(s, lease) != 0)
        release_failed(r);
    json_decref(lease);
}

int kube_status_release(struct kube_status *s)
{
    int was_leader = s->leader && s->leader_lease;
    s->stopped = 1;
    s->leader = 0;
    cancel_all(s);
    if (!was_leader)
        return 0;
    log_info("status: giving up lease %s", KUBE_STATUS_LEADER_LEASE);
    return release_put(s, s->leader_lease) == 0;
}

int kube_status_is_leader(const struct kube_status *s)
{
    return s->leader;
}
