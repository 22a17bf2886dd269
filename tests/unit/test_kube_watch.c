/*
 * test_kube_watch.c - the informers: the watch stream splitter, the backoff, and list-then-watch
 * end to end against a small scripted API server.
 *
 * The server is a thread on 127.0.0.1 speaking plain HTTP/1.1, one thread per connection, every
 * answer closed after it. It serves Ingresses in two pages, a watch that applies each kind of
 * event and ends, a resumed watch that answers ERROR 410, a relist that fails with 500, and a
 * relist that succeeds; the other four resources list almost empty and then watch quietly. Gates
 * hold the script at the points the test looks at the cache, so nothing depends on timing.
 */
#include "check.h"
#include "kube_client.h"
#include "kube_watch.h"
#include "log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- kube_event_split ---- */

struct collected {
    int events, not_json;
    char last[256];
};

static void collect(void *ctx, json_t *ev)
{
    struct collected *c = ctx;
    if (!ev) {
        c->not_json++;
        return;
    }
    c->events++;
    char *s = json_dumps(ev, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(c->last, sizeof c->last, "%s", s ? s : "");
    free(s);
}

static void test_split(void)
{
    struct kube_event_splitter s = { 0 };
    struct collected c = { 0 };
    const char *two = "{\"type\":\"ADDED\"}\n{\"type\":\"DELETED\"}\n";
    CHECK_INT(kube_event_split(&s, two, strlen(two), collect, &c), 0);
    CHECK_INT(c.events, 2);
    CHECK_STR(c.last, "{\"type\":\"DELETED\"}");

    /* One line fed a byte at a time: nothing until its newline. */
    memset(&c, 0, sizeof c);
    const char *line = "{\"type\":\"MODIFIED\",\"object\":{\"a\":[1,2,3]}}\n";
    for (size_t i = 0; i + 1 < strlen(line); i++)
        CHECK_INT(kube_event_split(&s, line + i, 1, collect, &c), 0);
    CHECK_INT(c.events, 0);
    CHECK_INT(kube_event_split(&s, "\n", 1, collect, &c), 0);
    CHECK_INT(c.events, 1);
    CHECK_STR(c.last, "{\"type\":\"MODIFIED\",\"object\":{\"a\":[1,2,3]}}");

    /* The end of one line and the start of the next in one chunk. */
    memset(&c, 0, sizeof c);
    CHECK_INT(kube_event_split(&s, "{\"n\":", 5, collect, &c), 0);
    CHECK_INT(kube_event_split(&s, "1}\n{\"n\"", 7, collect, &c), 0);
    CHECK_INT(c.events, 1);
    CHECK_STR(c.last, "{\"n\":1}");
    CHECK_INT(kube_event_split(&s, ":2}\r\n", 5, collect, &c), 0);
    CHECK_INT(c.events, 2);
    CHECK_STR(c.last, "{\"n\":2}");

    /* Blank lines are no events; a line that is not JSON is a NULL one. */
    memset(&c, 0, sizeof c);
    const char *blank = "\n\r\n   \n\t\r\n";
    CHECK_INT(kube_event_split(&s, blank, strlen(blank), collect, &c), 0);
    CHECK_INT(c.events + c.not_json, 0);
    const char *bad = "<html>bad gateway</html>\n{\"ok\":true}\n";
    CHECK_INT(kube_event_split(&s, bad, strlen(bad), collect, &c), 0);
    CHECK_INT(c.not_json, 1);
    CHECK_INT(c.events, 1);

    /* A line without end is cut off at 64 MiB instead of growing the buffer forever. */
    size_t mib = (size_t)1 << 20;
    char *chunk = malloc(mib);
    memset(chunk, 'x', mib);
    int rc = 0;
    for (int i = 0; i < 70 && rc == 0; i++)
        rc = kube_event_split(&s, chunk, mib, collect, &c);
    CHECK_INT(rc, -1);
    free(chunk);
    /* ... and the splitter is usable again afterwards. */
    memset(&c, 0, sizeof c);
    CHECK_INT(kube_event_split(&s, "{}\n", 3, collect, &c), 0);
    CHECK_INT(c.events, 1);
    kube_event_splitter_free(&s);
}

/* ---- kube_backoff_ms ---- */

static void test_backoff(void)
{
    struct kube_watch_options opt = { .backoff_initial_ms = 100, .backoff_max_ms = 1000 };
    unsigned seed = 7;
    int lo[6] = { 80, 160, 320, 640, 800, 800 }, hi[6] = { 120, 240, 480, 960, 1200, 1200 };
    unsigned attempts[6] = { 0, 1, 2, 3, 4, 40 };
    for (int a = 0; a < 6; a++) {
        int min = 1 << 30, max = 0;
        for (int i = 0; i < 500; i++) {
            int d = kube_backoff_ms(&opt, attempts[a], -1, &seed);
            min = d < min ? d : min;
            max = d > max ? d : max;
        }
        CHECK(min >= lo[a]);
        CHECK(max <= hi[a]);
        CHECK(max > min);   /* jittered, not a constant */
    }
    /* Retry-After is a floor, not a replacement. */
    CHECK(kube_backoff_ms(&opt, 0, 5, &seed) >= 5000);
    int d = kube_backoff_ms(&opt, 3, 0, &seed);
    CHECK(d >= 640 && d <= 960);
    /* Zero options take the defaults: 800 ms first, 30 s at most. */
    struct kube_watch_options zero = { 0 };
    d = kube_backoff_ms(&zero, 0, -1, &seed);
    CHECK(d >= 640 && d <= 960);
    d = kube_backoff_ms(&zero, 20, -1, &seed);
    CHECK(d >= 24000 && d <= 36000);
}

/* ---- the scripted API server ---- */

#define MAX_CONNS 128
#define MAX_PATHS 128

struct server {
    int scenario;              /* 1: the Ingress script; 2: the Service script */
    int fd, port;
    pthread_t thread;
    pthread_mutex_t lock;
    int stop;
    char *paths[MAX_PATHS];
    int npaths;
    int ingress_first_pages;   /* list requests without continue */
    int ingress_watches;
    int service_first_pages, service_watches;
    int slice_watches;
    int open_events;           /* gates the test opens */
    int open_410;
    int open_relist;
    pthread_t conns[MAX_CONNS];
    int nconns;
};

struct conn {
    struct server *srv;
    int fd;
};

static int locked_get(struct server *srv, const int *v)
{
    pthread_mutex_lock(&srv->lock);
    int x = *v;
    pthread_mutex_unlock(&srv->lock);
    return x;
}

static void send_all(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

static void send_json(int fd, int status, const char *body)
{
    char head[256];
    snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n", status,
             status == 200 ? "OK" : "Error", strlen(body));
    send_all(fd, head);
    send_all(fd, body);
}

static void start_stream(int fd)
{
    send_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
}

/* Keeps a watch open until the client goes away or the server stops. */
static void hold(struct server *srv, int fd)
{
    for (;;) {
        if (locked_get(srv, &srv->stop))
            return;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 20) > 0) {
            char buf[256];
            if (recv(fd, buf, sizeof buf, 0) <= 0)
                return;
        }
    }
}

/* Waits until the test opens a gate (or the server stops). */
static void wait_gate(struct server *srv, const int *gate)
{
    while (!locked_get(srv, gate) && !locked_get(srv, &srv->stop))
        usleep(5000);
}

#define INGRESS_LIST "/apis/networking.k8s.io/v1/ingresses?limit="
#define INGRESS_WATCH "/apis/networking.k8s.io/v1/ingresses?watch=1"

static const char PAGE1[] =
    "{\"kind\":\"IngressList\",\"apiVersion\":\"networking.k8s.io/v1\","
    "\"metadata\":{\"resourceVersion\":\"100\",\"continue\":\"p2\"},\"items\":["
    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"default\",\"resourceVersion\":\"10\","
    "\"managedFields\":[{\"manager\":\"kubectl\"}],\"annotations\":{"
    "\"kubectl.kubernetes.io/last-applied-configuration\":\"{...}\",\"keep\":\"me\"}},"
    "\"spec\":{\"rules\":[]}},"
    "{\"metadata\":{\"namespace\":\"default\"}},"
    "{\"metadata\":{\"name\":\"b\",\"namespace\":\"default\",\"resourceVersion\":\"11\"}}]}";
static const char PAGE2[] =
    "{\"kind\":\"IngressList\",\"apiVersion\":\"networking.k8s.io/v1\","
    "\"metadata\":{\"resourceVersion\":\"100\"},\"items\":["
    "{\"metadata\":{\"name\":\"c\",\"namespace\":\"other\",\"resourceVersion\":\"12\"}}]}";
static const char RELIST[] =
    "{\"kind\":\"IngressList\",\"apiVersion\":\"networking.k8s.io/v1\","
    "\"metadata\":{\"resourceVersion\":\"200\"},\"items\":["
    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"default\",\"resourceVersion\":\"102\"}},"
    "{\"metadata\":{\"name\":\"c\",\"namespace\":\"other\",\"resourceVersion\":\"12\"}},"
    "{\"metadata\":{\"name\":\"d\",\"namespace\":\"default\",\"resourceVersion\":\"101\"}},"
    "{\"metadata\":{\"name\":\"e\",\"namespace\":\"default\",\"resourceVersion\":\"150\"}}]}";
static const char STATUS_500[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
    "\"message\":\"etcdserver: request timed out\",\"code\":500}";

static void serve_ingress_list(struct server *srv, int fd, const char *path)
{
    if (strstr(path, "continue=p2")) {
        send_json(fd, 200, PAGE2);
        return;
    }
    pthread_mutex_lock(&srv->lock);
    int n = ++srv->ingress_first_pages;
    pthread_mutex_unlock(&srv->lock);
    if (n == 1) {
        send_json(fd, 200, PAGE1);
    } else if (n == 2) {
        send_json(fd, 500, STATUS_500);
    } else {
        wait_gate(srv, &srv->open_relist);
        send_json(fd, 200, RELIST);
    }
}

static void serve_ingress_watch(struct server *srv, int fd)
{
    pthread_mutex_lock(&srv->lock);
    int n = ++srv->ingress_watches;
    pthread_mutex_unlock(&srv->lock);
    start_stream(fd);
    if (n == 1) {
        wait_gate(srv, &srv->open_events);
        send_all(fd, "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Ingress\",\"apiVersion\":"
                 "\"networking.k8s.io/v1\",\"metadata\":{\"name\":\"d\",\"namespace\":"
                 "\"default\",\"resourceVersion\":\"101\"}}}\n{\"type\":\"MODIFIED\",\"obj");
        usleep(20000);   /* an event split across two reads */
        send_all(fd, "ect\":{\"kind\":\"Ingress\",\"apiVersion\":\"networking.k8s.io/v1\","
                 "\"metadata\":{\"name\":\"a\",\"namespace\":\"default\",\"resourceVersion\":"
                 "\"102\",\"managedFields\":[{}]}}}\n\n");
        send_all(fd, "{\"type\":\"DELETED\",\"object\":{\"kind\":\"Ingress\",\"apiVersion\":"
                 "\"networking.k8s.io/v1\",\"metadata\":{\"name\":\"b\",\"namespace\":"
                 "\"default\",\"resourceVersion\":\"103\"}}}\n"
                 "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Ingress\",\"apiVersion\":"
                 "\"networking.k8s.io/v1\",\"metadata\":{\"resourceVersion\":\"104\"}}}\n");
        return;   /* the server ends the watch, as at timeoutSeconds */
    }
    if (n == 2) {
        wait_gate(srv, &srv->open_410);
        send_all(fd, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                 "\"status\":\"Failure\",\"message\":\"too old resource version: 104 (150)\","
                 "\"reason\":\"Expired\",\"code\":410}}\n");
    }
    hold(srv, fd);
}

#define SERVICE_LIST "/api/v1/services?limit="
#define SERVICE_WATCH "/api/v1/services?watch=1"

static const char STATUS_403[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":"
    "\"services is forbidden: User \\\"system:serviceaccount:gatehouse:agent\\\" cannot list "
    "resource \\\"services\\\" in API group \\\"\\\" at the cluster scope\",\"code\":403}";
static const char STATUS_410[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":"
    "\"too old resource version\",\"reason\":\"Expired\",\"code\":410}";

static void service_page(int fd, const char *name, const char *rv, const char *cont)
{
    char body[512];
    snprintf(body, sizeof body, "{\"metadata\":{\"resourceVersion\":\"%s\",\"continue\":\"%s\"},"
             "\"items\":[{\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\","
             "\"resourceVersion\":\"%s\"}}]}", rv, cont, name, rv);
    send_json(fd, 200, body);
}

/* Forbidden, then a continue token that expires, then watches that break in two ways. */
static void serve_service_list(struct server *srv, int fd, const char *path)
{
    if (strstr(path, "continue=stale")) {
        send_json(fd, 410, STATUS_410);
        return;
    }
    pthread_mutex_lock(&srv->lock);
    int n = ++srv->service_first_pages;
    pthread_mutex_unlock(&srv->lock);
    if (n == 1)
        send_json(fd, 403, STATUS_403);
    else if (n == 2)
        service_page(fd, "s", "20", "stale");
    else if (n == 3)
        service_page(fd, "x", "30", "");
    else
        service_page(fd, "y", "40", "");
}

static void serve_service_watch(struct server *srv, int fd)
{
    pthread_mutex_lock(&srv->lock);
    int n = ++srv->service_watches;
    pthread_mutex_unlock(&srv->lock);
    if (n == 2) {
        send_json(fd, 410, STATUS_410);
        return;
    }
    start_stream(fd);
    if (n == 1)
        send_all(fd, "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Service\",\"apiVersion\":"
                 "\"v1\",\"metadata\":{\"name\":\"z\",\"namespace\":\"default\","
                 "\"resourceVersion\":\"31\"}}}\nthis is not JSON\n");
    hold(srv, fd);
}

#define SLICE_WATCH "/apis/discovery.k8s.io/v1/endpointslices?watch=1"

/* Two watches that end at once without a byte: the first is resumed, the second a failure. */
static void serve_slice_watch(struct server *srv, int fd)
{
    pthread_mutex_lock(&srv->lock);
    int n = ++srv->slice_watches;
    pthread_mutex_unlock(&srv->lock);
    start_stream(fd);
    if (n > 2)
        hold(srv, fd);
}

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void serve(struct server *srv, int fd, const char *path)
{
    if (srv->scenario == 1 && starts(path, INGRESS_LIST))
        serve_ingress_list(srv, fd, path);
    else if (srv->scenario == 1 && starts(path, INGRESS_WATCH))
        serve_ingress_watch(srv, fd);
    else if (srv->scenario == 2 && starts(path, SERVICE_LIST))
        serve_service_list(srv, fd, path);
    else if (srv->scenario == 2 && starts(path, SERVICE_WATCH))
        serve_service_watch(srv, fd);
    else if (srv->scenario == 2 && starts(path, SLICE_WATCH))
        serve_slice_watch(srv, fd);
    else if (strstr(path, "watch=1")) {
        start_stream(fd);
        hold(srv, fd);
    } else if (starts(path, "/apis/networking.k8s.io/v1/ingressclasses?"))
        send_json(fd, 200, "{\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[{\"metadata\":"
                  "{\"name\":\"gatehouse\",\"resourceVersion\":\"5\"}}]}");
    else if (starts(path, "/api/v1/secrets?"))
        send_json(fd, 200, "{\"metadata\":{\"resourceVersion\":\"7\"},\"items\":[{\"metadata\":"
                  "{\"name\":\"tls\",\"namespace\":\"default\",\"resourceVersion\":\"7\"},"
                  "\"type\":\"kubernetes.io/tls\"}]}");
    else if (strstr(path, "?limit="))
        send_json(fd, 200, "{\"metadata\":{\"resourceVersion\":\"9\"},\"items\":[]}");
    else
        send_json(fd, 404, "{\"kind\":\"Status\",\"message\":\"not found\",\"code\":404}");
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    char req[8192];
    size_t len = 0;
    while (len < sizeof req - 1) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        if (poll(&p, 1, 50) <= 0) {
            if (locked_get(c->srv, &c->srv->stop))
                break;
            continue;
        }
        ssize_t n = recv(c->fd, req + len, sizeof req - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[len] = '\0';
    char path[4096];
    if (strstr(req, "\r\n\r\n") && sscanf(req, "GET %4095s HTTP/1.1", path) == 1) {
        pthread_mutex_lock(&c->srv->lock);
        if (c->srv->npaths < MAX_PATHS)
            c->srv->paths[c->srv->npaths++] = strdup(path);
        pthread_mutex_unlock(&c->srv->lock);
        serve(c->srv, c->fd, path);
    }
    close(c->fd);
    free(c);
    return NULL;
}

static void *server_main(void *arg)
{
    struct server *srv = arg;
    while (!locked_get(srv, &srv->stop)) {
        struct pollfd p = { .fd = srv->fd, .events = POLLIN };
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(srv->fd, NULL, NULL);
        if (fd < 0)
            continue;
        struct conn *c = malloc(sizeof *c);
        c->srv = srv;
        c->fd = fd;
        pthread_mutex_lock(&srv->lock);
        int ok = srv->nconns < MAX_CONNS
                 && pthread_create(&srv->conns[srv->nconns], NULL, conn_main, c) == 0;
        if (ok)
            srv->nconns++;
        pthread_mutex_unlock(&srv->lock);
        if (!ok) {
            close(fd);
            free(c);
        }
    }
    return NULL;
}

static int server_start(struct server *srv, int scenario)
{
    memset(srv, 0, sizeof *srv);
    srv->scenario = scenario;
    pthread_mutex_init(&srv->lock, NULL);
    srv->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t salen = sizeof sa;
    if (srv->fd < 0 || bind(srv->fd, (struct sockaddr *)&sa, sizeof sa) < 0
        || listen(srv->fd, 64) < 0 || getsockname(srv->fd, (struct sockaddr *)&sa, &salen) < 0)
        return -1;
    srv->port = ntohs(sa.sin_port);
    return pthread_create(&srv->thread, NULL, server_main, srv) == 0 ? 0 : -1;
}

static void server_stop(struct server *srv)
{
    pthread_mutex_lock(&srv->lock);
    srv->stop = 1;
    pthread_mutex_unlock(&srv->lock);
    pthread_join(srv->thread, NULL);
    for (int i = 0; i < srv->nconns; i++)
        pthread_join(srv->conns[i], NULL);
    for (int i = 0; i < srv->npaths; i++)
        free(srv->paths[i]);
    close(srv->fd);
    pthread_mutex_destroy(&srv->lock);
}

static void open_gate(struct server *srv, int *gate)
{
    pthread_mutex_lock(&srv->lock);
    *gate = 1;
    pthread_mutex_unlock(&srv->lock);
}

/* The nth (1-based) request path that starts with prefix, or NULL. */
static const char *find_path(struct server *srv, const char *prefix, int nth)
{
    const char *found = NULL;
    pthread_mutex_lock(&srv->lock);
    for (int i = 0; i < srv->npaths && !found; i++)
        if (strncmp(srv->paths[i], prefix, strlen(prefix)) == 0 && --nth == 0)
            found = srv->paths[i];
    pthread_mutex_unlock(&srv->lock);
    return found;   /* never freed before server_stop */
}

/* ---- driving the informers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct world {
    struct server srv;
    struct kube_client *client;
    struct kube_informers *k;
};

typedef int condition_fn(struct world *w);

/* Polls and ticks until cond holds; 0 when it did before the (generous) deadline. */
static int run_until(struct world *w, condition_fn *cond)
{
    int64_t deadline = now_ms() + 15000;
    char err[256];
    while (now_ms() < deadline) {
        int t = kube_informers_tick(w->k, now_ms());
        if (cond(w))
            return 0;
        if (t < 0 || t > 20)
            t = 20;
        if (kube_client_poll(w->client, NULL, 0, t, err, sizeof err) < 0) {
            fprintf(stderr, "kube_client_poll: %s\n", err);
            return -1;
        }
    }
    return -1;
}

static const char *str(const json_t *v)
{
    return json_is_string(v) ? json_string_value(v) : "";
}

/* The cached Ingress "ns/name" from a snapshot, or NULL. */
static const json_t *find_ingress(const json_t *snap, const char *ns, const char *name)
{
    size_t i;
    const json_t *obj;
    json_array_foreach(snap, i, obj) {
        const json_t *meta = json_object_get(obj, "metadata");
        if (strcmp(str(json_object_get(obj, "kind")), "Ingress") == 0
            && strcmp(str(json_object_get(meta, "name")), name) == 0
            && strcmp(str(json_object_get(meta, "namespace")), ns) == 0)
            return obj;
    }
    return NULL;
}

static const char *rv_of(const json_t *obj)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"),
                                             "resourceVersion"));
}

/* The Ingresses of a snapshot as "name@rv name@rv", sorted by key. */
static void ingress_summary(struct kube_informers *k, char *out, size_t len)
{
    json_t *snap = kube_informers_snapshot(k);
    size_t i, used = 0;
    json_t *obj;
    out[0] = '\0';
    json_array_foreach(snap, i, obj) {
        if (strcmp(str(json_object_get(obj, "kind")), "Ingress") != 0)
            continue;
        const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"),
                                                             "name"));
        used += (size_t)snprintf(out + used, len - used, "%s%s@%s", used ? " " : "", name,
                                 rv_of(obj));
    }
    json_decref(snap);
}

#define CLASS_WATCH "/apis/networking.k8s.io/v1/ingressclasses?watch=1"

/* Listed, and the watches that follow have reached the server. */
static int watching(struct world *w)
{
    return kube_informers_synced(w->k) && find_path(&w->srv, INGRESS_WATCH, 1)
           && find_path(&w->srv, CLASS_WATCH, 1);
}

static int watch_applied(struct world *w)
{
    char s[256];
    ingress_summary(w->k, s, sizeof s);
    return strcmp(s, "a@102 d@101 c@12") == 0 && locked_get(&w->srv, &w->srv.ingress_watches) >= 2;
}

static int relist_requested(struct world *w)
{
    return locked_get(&w->srv, &w->srv.ingress_first_pages) >= 3;
}

static int relisted(struct world *w)
{
    return locked_get(&w->srv, &w->srv.ingress_watches) >= 3;
}

static void check_first_list(struct world *w)
{
    CHECK_INT(kube_informers_synced(w->k), 1);
    json_t *snap = kube_informers_snapshot(w->k);
    CHECK_INT(json_array_size(snap), 5);   /* 3 Ingresses (one nameless skipped), class, secret */
    const json_t *a = find_ingress(snap, "default", "a");
    CHECK(a != NULL);
    CHECK_STR(json_string_value(json_object_get(a, "kind")), "Ingress");
    CHECK_STR(json_string_value(json_object_get(a, "apiVersion")), "networking.k8s.io/v1");
    const json_t *meta = json_object_get(a, "metadata");
    CHECK(json_object_get(meta, "managedFields") == NULL);
    const json_t *ann = json_object_get(meta, "annotations");
    CHECK(json_object_get(ann, "kubectl.kubernetes.io/last-applied-configuration") == NULL);
    CHECK_STR(json_string_value(json_object_get(ann, "keep")), "me");
    CHECK(find_ingress(snap, "default", "b") != NULL);
    CHECK(find_ingress(snap, "other", "c") != NULL);
    json_decref(snap);

    const char *page2 = find_path(&w->srv, INGRESS_LIST, 2);
    CHECK(page2 && strstr(page2, "continue=p2") && strstr(page2, "limit=2"));
    const char *secrets = find_path(&w->srv, "/api/v1/secrets?limit=", 1);
    CHECK(secrets && strstr(secrets, "fieldSelector=type%3Dkubernetes.io%2Ftls"));
    const char *watch = find_path(&w->srv, INGRESS_WATCH, 1);
    CHECK(watch && strstr(watch, "allowWatchBookmarks=true") && strstr(watch, "resourceVersion=100"));
    const char *t = watch ? strstr(watch, "timeoutSeconds=") : NULL;
    int secs = t ? atoi(t + 15) : 0;
    CHECK(secs >= 300 && secs <= 600);
    const char *cls = find_path(&w->srv, CLASS_WATCH, 1);
    CHECK(cls && strstr(cls, "resourceVersion=5"));
}

/* A server for the scenario, a client on it and started informers; -1 when any is missing. */
static int world_start(struct world *w, int scenario, struct kube_config *cfg, char *url,
                       size_t urllen)
{
    memset(w, 0, sizeof *w);
    if (server_start(&w->srv, scenario) < 0) {
        CHECK(!"cannot start the test server");
        return -1;
    }
    char err[256];
    snprintf(url, urllen, "http://127.0.0.1:%d", w->srv.port);
    *cfg = (struct kube_config){ .url = url, .server = url, .origin = "test" };
    w->client = kube_client_new(cfg, err, sizeof err);
    CHECK(w->client != NULL);
    if (!w->client) {
        fprintf(stderr, "kube_client_new: %s\n", err);
        server_stop(&w->srv);
        return -1;
    }
    struct kube_watch_options opt = { .page_size = 2, .backoff_initial_ms = 20,
                                      .backoff_max_ms = 100, .seed = 42 };
    w->k = kube_informers_new(w->client, &opt);
    CHECK(w->k != NULL);
    kube_informers_start(w->k, now_ms());
    return 0;
}

static void world_stop(struct world *w)
{
    kube_informers_free(w->k);
    kube_client_free(w->client);
    server_stop(&w->srv);
}

static void test_informers(void)
{
    struct world w;
    struct kube_config cfg;
    char url[64];
    if (world_start(&w, 1, &cfg, url, sizeof url) < 0)
        return;

    CHECK_INT(run_until(&w, watching), 0);
    check_first_list(&w);
    unsigned long long gen_listed = kube_informers_generation(w.k);
    struct kube_informer_stats st;
    kube_informers_stats(w.k, &st);
    CHECK_INT(st.lists, 5);
    CHECK_INT(st.objects, 5);

    /* The watch: d added, a modified, b deleted, a bookmark, then the server ends it and the
     * informer resumes from the bookmark's resourceVersion. */
    open_gate(&w.srv, &w.srv.open_events);
    CHECK_INT(run_until(&w, watch_applied), 0);
    const char *resumed = find_path(&w.srv, INGRESS_WATCH, 2);
    CHECK(resumed && strstr(resumed, "resourceVersion=104"));
    kube_informers_stats(w.k, &st);
    CHECK_INT(st.events, 3);
    CHECK(st.watch_restarts >= 1);
    CHECK(kube_informers_generation(w.k) > gen_listed);
    json_t *snap = kube_informers_snapshot(w.k);
    CHECK(json_object_get(json_object_get(find_ingress(snap, "default", "a"), "metadata"),
                          "managedFields") == NULL);
    json_decref(snap);

    /* ERROR 410 on the watch: a relist, which fails with 500 first: nothing is lost. */
    unsigned long long gen_watched = kube_informers_generation(w.k);
    open_gate(&w.srv, &w.srv.open_410);
    CHECK_INT(run_until(&w, relist_requested), 0);
    char summary[256];
    ingress_summary(w.k, summary, sizeof summary);
    CHECK_STR(summary, "a@102 d@101 c@12");
    CHECK_INT(kube_informers_synced(w.k), 1);
    CHECK_INT(kube_informers_generation(w.k), gen_watched);
    kube_informers_stats(w.k, &st);
    CHECK(st.errors >= 1);
    CHECK_INT(st.lists, 5);

    /* The retried relist succeeds: its objects replace the cache, the watch starts from it. */
    open_gate(&w.srv, &w.srv.open_relist);
    CHECK_INT(run_until(&w, relisted), 0);
    ingress_summary(w.k, summary, sizeof summary);
    CHECK_STR(summary, "a@102 d@101 e@150 c@12");
    CHECK(kube_informers_generation(w.k) > gen_watched);
    const char *third = find_path(&w.srv, INGRESS_WATCH, 3);
    CHECK(third && strstr(third, "resourceVersion=200"));
    kube_informers_stats(w.k, &st);
    CHECK_INT(st.lists, 6);
    CHECK_INT(st.objects, 6);
    if (st.objects != 6) {
        json_t *dbg = kube_informers_snapshot(w.k);
        json_dumpf(dbg, stderr, JSON_COMPACT);
        json_decref(dbg);
    }

    world_stop(&w);
}

static int services_settled(struct world *w)
{
    return locked_get(&w->srv, &w->srv.service_watches) >= 3
           && locked_get(&w->srv, &w->srv.slice_watches) >= 3;
}

/* 403 then success; an expired continue token; a line that is not JSON; HTTP 410 on a watch;
 * watches that end at once. */
static void test_failures(void)
{
    struct world w;
    struct kube_config cfg;
    char url[64];
    if (world_start(&w, 2, &cfg, url, sizeof url) < 0)
        return;
    CHECK_INT(run_until(&w, services_settled), 0);
    CHECK_INT(kube_informers_synced(w.k), 1);
    const char *list[5];
    for (int i = 0; i < 5; i++)
        list[i] = find_path(&w.srv, SERVICE_LIST, i + 1);
    CHECK(list[0] && !strstr(list[0], "continue="));           /* 403 */
    CHECK(list[1] && !strstr(list[1], "continue="));           /* retried: page one */
    CHECK(list[2] && strstr(list[2], "continue=stale"));        /* 410 */
    CHECK(list[3] && !strstr(list[3], "continue="));           /* listed again from the start */
    CHECK(list[4] && !strstr(list[4], "continue="));           /* relist after the watch's 410 */
    CHECK(find_path(&w.srv, SERVICE_LIST, 6) == NULL);
    const char *watch2 = find_path(&w.srv, SERVICE_WATCH, 2);
    const char *watch3 = find_path(&w.srv, SERVICE_WATCH, 3);
    CHECK(watch2 && strstr(watch2, "resourceVersion=31"));      /* resumed after the bad line */
    CHECK(watch3 && strstr(watch3, "resourceVersion=40"));
    json_t *snap = kube_informers_snapshot(w.k);
    size_t i;
    json_t *obj;
    char names[64] = "";
    json_array_foreach(snap, i, obj) {
        if (strcmp(str(json_object_get(obj, "kind")), "Service") == 0)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s ",
                     str(json_object_get(json_object_get(obj, "metadata"), "name")));
    }
    CHECK_STR(names, "y ");
    json_decref(snap);
    struct kube_informer_stats st;
    kube_informers_stats(w.k, &st);
    /* The 403, the bad line and the second empty slice watch; 410s are not failures. */
    CHECK_INT(st.errors, 3);
    CHECK_INT(st.watch_restarts, 3);   /* Services once (not after a list), slices twice */
    CHECK_INT(st.events, 1);
    CHECK_INT(st.lists, 6);      /* four others, and the Services twice */
    world_stop(&w);
}

int main(void)
{
    log_init("test_kube_watch", LOG_INFO);
    test_split();
    test_backoff();
    test_informers();
    test_failures();
    return check_summary("test_kube_watch");
}
