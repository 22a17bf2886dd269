/*
 * test_kube_status.c - Ingress status publishing: which heartbeat Leases count and what addresses
 * they give, when an Ingress already shows them, the patch sent; then, against a small in-test
 * API server keeping Leases and Ingresses in memory, two agents: one leads and patches only the
 * Ingress it serves, the other waits while the first renews and takes over once it stops.
 */
#include "check.h"
#include "kube_client.h"
#include "kube_status.h"
#include "log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v)
        fprintf(stderr, "bad test JSON: %s: %s\n", e.text, text);
    return v;
}

static char *joined(const json_t *arr)
{
    return json_dumps(arr, JSON_COMPACT);
}

/* ---- kube_status_live_addresses ---- */

static int live_unless_dead(void *ctx, const json_t *lease)
{
    const char *name = json_string_value(json_object_get(json_object_get(lease, "metadata"), "name"));
    return !(name && strstr(name, "dead"));
}

static void test_live_addresses(void)
{
    json_t *list = parse(
        "{\"kind\":\"LeaseList\",\"items\":["
        "{\"metadata\":{\"name\":\"gatehouse-node-b\",\"labels\":{\"gatehouse.dev/heartbeat\":\"true\"},"
        "  \"annotations\":{\"gatehouse.dev/addresses\":\"10.0.0.2, edge-b.example.com ,,10.0.0.1\"}}},"
        "{\"metadata\":{\"name\":\"gatehouse-node-a\",\"labels\":{\"gatehouse.dev/heartbeat\":\"true\"},"
        "  \"annotations\":{\"gatehouse.dev/addresses\":\"10.0.0.1,2001:db8::7\"}}},"
        "{\"metadata\":{\"name\":\"gatehouse-node-dead\",\"labels\":{\"gatehouse.dev/heartbeat\":\"true\"},"
        "  \"annotations\":{\"gatehouse.dev/addresses\":\"10.9.9.9\"}}},"
        "{\"metadata\":{\"name\":\"unlabelled\",\"annotations\":{\"gatehouse.dev/addresses\":\"10.8.8.8\"}}},"
        "{\"metadata\":{\"name\":\"label-false\",\"labels\":{\"gatehouse.dev/heartbeat\":\"false\"},"
        "  \"annotations\":{\"gatehouse.dev/addresses\":\"10.7.7.7\"}}},"
        "{\"metadata\":{\"name\":\"gatehouse-node-evil\",\"labels\":{\"gatehouse.dev/heartbeat\":\"true\"},"
        "  \"annotations\":{\"gatehouse.dev/addresses\":\"bad name/x,\\\"q\\\",10.0.0.3\"}}},"
        "{\"metadata\":{\"name\":\"gatehouse-node-none\",\"labels\":{\"gatehouse.dev/heartbeat\":\"true\"}}},"
        "{\"metadata\":{\"name\":\"gatehouse-node-badtype\",\"labels\":{\"gatehouse.dev/heartbeat\":\"true\"},"
        "  \"annotations\":{\"gatehouse.dev/addresses\":7}}},"
        "\"not an object\""
        "]}");
    json_t *got = kube_status_live_addresses(list, live_unless_dead, NULL);
    char *s = joined(got);
    CHECK_STR(s, "[\"10.0.0.1\",\"10.0.0.2\",\"10.0.0.3\",\"2001:db8::7\",\"edge-b.example.com\"]");
    free(s);
    json_decref(got);

    got = kube_status_live_addresses(list, NULL, NULL);   /* no filter: the dead one counts */
    CHECK(json_array_size(got) == 6);
    json_decref(got);
    json_decref(list);

    list = parse("{\"items\":\"nope\"}");
    got = kube_status_live_addresses(list, NULL, NULL);
    CHECK(json_is_array(got) && json_array_size(got) == 0);
    json_decref(got);
    json_decref(list);
}

/* ---- kube_status_matches ---- */

static void test_matches(void)
{
    json_t *want = parse("[\"10.0.0.1\",\"10.0.0.2\",\"edge.example.com\"]");
    json_t *ing = parse("{\"kind\":\"Ingress\",\"status\":{\"loadBalancer\":{\"ingress\":["
                        "{\"hostname\":\"edge.example.com\"},{\"ip\":\"10.0.0.2\"},{\"ip\":\"10.0.0.1\"}]}}}");
    CHECK(kube_status_matches(ing, want));
    json_decref(ing);

    /* an IP given as a hostname is not what the patch would write */
    ing = parse("{\"status\":{\"loadBalancer\":{\"ingress\":["
                "{\"hostname\":\"10.0.0.1\"},{\"ip\":\"10.0.0.2\"},{\"hostname\":\"edge.example.com\"}]}}}");
    CHECK(!kube_status_matches(ing, want));
    json_decref(ing);

    /* an extra entry, or a missing one */
    ing = parse("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"10.0.0.1\"},{\"ip\":\"10.0.0.2\"},"
                "{\"hostname\":\"edge.example.com\"},{\"ip\":\"10.0.0.9\"}]}}}");
    CHECK(!kube_status_matches(ing, want));
    json_decref(ing);
    ing = parse("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"10.0.0.1\"},{\"ip\":\"10.0.0.2\"}]}}}");
    CHECK(!kube_status_matches(ing, want));
    json_decref(ing);

    /* a duplicate entry is not the set the patch writes */
    ing = parse("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"10.0.0.1\"},{\"ip\":\"10.0.0.1\"},"
                "{\"ip\":\"10.0.0.2\"},{\"hostname\":\"edge.example.com\"}]}}}");
    CHECK(!kube_status_matches(ing, want));
    json_decref(ing);

    /* an entry with neither, or both */
    ing = parse("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"10.0.0.1\"},{\"ip\":\"10.0.0.2\"},"
                "{\"ports\":[]}]}}}");
    CHECK(!kube_status_matches(ing, want));
    json_decref(ing);

    /* no status at all: matches only the empty set */
    ing = parse("{\"kind\":\"Ingress\",\"metadata\":{\"name\":\"x\"}}");
    CHECK(!kube_status_matches(ing, want));
    json_t *none = json_array();
    CHECK(kube_status_matches(ing, none));
    json_decref(ing);
    ing = parse("{\"status\":{\"loadBalancer\":{}}}");
    CHECK(kube_status_matches(ing, none));
    CHECK(!kube_status_matches(ing, want));
    json_decref(ing);
    ing = parse("{\"status\":{\"loadBalancer\":{\"ingress\":\"10.0.0.1\"}}}");
    CHECK(!kube_status_matches(ing, none));
    json_decref(ing);
    json_decref(none);

    /* IPv6 goes in ip */
    json_t *v6 = parse("[\"2001:db8::1\"]");
    ing = parse("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"2001:db8::1\"}]}}}");
    CHECK(kube_status_matches(ing, v6));
    json_decref(ing);
    json_decref(v6);
    json_decref(want);
}

/* ---- kube_status_patch_body ---- */

static void test_patch_body(void)
{
    json_t *addrs = parse("[\"10.0.0.1\",\"2001:db8::1\",\"edge.example.com\",\"10.0.0.1.example\"]");
    char *body = kube_status_patch_body(addrs);
    CHECK_STR(body, "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"10.0.0.1\"},"
                    "{\"ip\":\"2001:db8::1\"},{\"hostname\":\"edge.example.com\"},"
                    "{\"hostname\":\"10.0.0.1.example\"}]}}}");
    /* what the patch writes is what matches */
    json_t *patched = parse(body);
    CHECK(kube_status_matches(patched, addrs));
    json_decref(patched);
    free(body);
    json_decref(addrs);

    json_t *none = json_array();
    body = kube_status_patch_body(none);
    CHECK_STR(body, "{\"status\":{\"loadBalancer\":{\"ingress\":[]}}}");
    free(body);
    json_decref(none);
}

static void test_default_address(void)
{
    char addr[64], err[256];
    if (kube_status_default_address(addr, sizeof addr, err, sizeof err) == 0) {
        unsigned char buf[16];
        CHECK(inet_pton(AF_INET, addr, buf) == 1 || inet_pton(AF_INET6, addr, buf) == 1);
    } else {
        /* a sandbox without a default route: the reason must say so */
        CHECK(strstr(err, "default route") != NULL);
    }
    CHECK(kube_status_default_address(addr, 3, err, sizeof err) == -1 || strlen(addr) < 3);
}

/* ---- a tiny API server: Leases and Ingresses in memory, plain HTTP/1.1 ---- */

#define MAX_CONNS 16

struct conn {
    int fd;
    char *buf;
    size_t len, cap;
};

struct fake_api {
    int listen_fd, port;
    pthread_t thread;
    pthread_mutex_t lock;
    int stop;                  /* under lock */
    long rv;
    json_t *leases;            /* name -> Lease */
    json_t *ingresses;         /* "ns/name" -> Ingress */
    json_t *patches;           /* "ns/name" -> count of PATCH requests */
    struct conn conns[MAX_CONNS];
};

static void send_json(int fd, int code, const char *reason, json_t *doc)
{
    char *body = json_dumps(doc, JSON_COMPACT);
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n", code, reason, strlen(body));
    if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
        perror("fake api write");
    free(body);
    json_decref(doc);
}

static void send_status(int fd, int code, const char *reason, const char *message)
{
    send_json(fd, code, reason, json_pack("{ss ss ss ss si}", "kind", "Status", "apiVersion", "v1",
                                          "status", "Failure", "message", message, "code", code));
}

static void stamp_rv(struct fake_api *api, json_t *obj)
{
    char rv[32];
    snprintf(rv, sizeof rv, "%ld", ++api->rv);
    json_t *meta = json_object_get(obj, "metadata");
    if (!json_is_object(meta))
        json_object_set_new(obj, "metadata", meta = json_object());
    json_object_set_new(meta, "resourceVersion", json_string(rv));
}

static const char *rv_of(const json_t *obj)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
}

#define LEASES "/apis/coordination.k8s.io/v1/namespaces/gh/leases"
#define INGRESSES "/apis/networking.k8s.io/v1/namespaces/"

static void serve_leases(struct fake_api *api, int fd, const char *method, const char *path,
                         const char *query, json_t *body)
{
    const char *name = path[strlen(LEASES)] == '/' ? path + strlen(LEASES) + 1 : NULL;
    json_t *have = name ? json_object_get(api->leases, name) : NULL;
    if (!strcmp(method, "GET") && !name) {
        json_t *items = json_array();
        const char *key;
        json_t *lease;
        json_object_foreach(api->leases, key, lease) {
            json_t *labels = json_object_get(json_object_get(lease, "metadata"), "labels");
            if (query && !strcmp(query, "labelSelector=gatehouse.dev%2Fheartbeat%3Dtrue") &&
                !json_object_get(labels, "gatehouse.dev/heartbeat"))
                continue;
            /* as the API server lists them: items without kind and apiVersion */
            json_t *item = json_deep_copy(lease);
            json_object_del(item, "kind");
            json_object_del(item, "apiVersion");
            json_array_append_new(items, item);
        }
        send_json(fd, 200, "OK", json_pack("{ss s{ss} so}", "kind", "LeaseList", "metadata",
                                           "resourceVersion", "1", "items", items));
    } else if (!strcmp(method, "GET")) {
        if (have)
            send_json(fd, 200, "OK", json_deep_copy(have));
        else
            send_status(fd, 404, "Not Found", "leases.coordination.k8s.io not found");
    } else if (!strcmp(method, "POST") && !name && body) {
        const char *n = json_string_value(json_object_get(json_object_get(body, "metadata"), "name"));
        if (!n || json_object_get(api->leases, n)) {
            send_status(fd, 409, "Conflict", "leases.coordination.k8s.io already exists");
            return;
        }
        stamp_rv(api, body);
        json_object_set(api->leases, n, body);
        send_json(fd, 201, "Created", json_deep_copy(body));
    } else if (!strcmp(method, "PUT") && name && body) {
        if (!have) {
            send_status(fd, 404, "Not Found", "leases.coordination.k8s.io not found");
        } else if (!rv_of(body) || strcmp(rv_of(body), rv_of(have))) {
            send_status(fd, 409, "Conflict", "the object has been modified; please apply your "
                        "changes to the latest version and try again");
        } else {
            stamp_rv(api, body);
            json_object_set(api->leases, name, body);
            send_json(fd, 200, "OK", json_deep_copy(body));
        }
    } else {
        send_status(fd, 405, "Method Not Allowed", "not in this fake");
    }
}

static void serve_ingress_status(struct fake_api *api, int fd, const char *method,
                                 const char *path, json_t *body)
{
    char ns[128], name[128], key[300];
    if (sscanf(path, INGRESSES "%127[^/]/ingresses/%127[^/]/status", ns, name) != 2 ||
        strcmp(method, "PATCH") || !body) {
        send_status(fd, 405, "Method Not Allowed", "not in this fake");
        return;
    }
    snprintf(key, sizeof key, "%s/%s", ns, name);
    json_object_set_new(api->patches, key,
                        json_integer(json_integer_value(json_object_get(api->patches, key)) + 1));
    json_t *ing = json_object_get(api->ingresses, key);
    if (!strcmp(name, "denied")) {
        send_status(fd, 403, "Forbidden", "ingresses.networking.k8s.io \"denied\" is forbidden: "
                    "User \"system:serviceaccount:gh:gatehouse\" cannot patch resource "
                    "\"ingresses/status\"");
        return;
    }
    if (!ing) {
        send_status(fd, 404, "Not Found", "ingresses.networking.k8s.io not found");
        return;
    }
    /* enough of a merge patch for this test: status is replaced */
    json_object_set(ing, "status", json_object_get(body, "status"));
    stamp_rv(api, ing);
    send_json(fd, 200, "OK", json_deep_copy(ing));
}

/* Handles one complete request at the start of c->buf; returns its length, or 0 when more
 * bytes are needed. */
static size_t serve_one(struct fake_api *api, struct conn *c)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head_len = (size_t)(end - c->buf) + 4, body_len = 0;
    char *cl = memmem(c->buf, head_len, "Content-Length:", 15);
    if (!cl)
        cl = memmem(c->buf, head_len, "content-length:", 15);
    if (cl)
        body_len = strtoul(cl + 15, NULL, 10);
    if (c->len < head_len + body_len) {
        if (memmem(c->buf, head_len, "100-continue", 12) && c->len == head_len &&
            write(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
            perror("fake api write");
        return 0;
    }
    char method[16], target[1024];
    if (sscanf(c->buf, "%15s %1023s", method, target) != 2)
        return head_len + body_len;
    json_t *body = body_len ? json_loadb(end + 4, body_len, 0, NULL) : NULL;
    char *query = strchr(target, '?');
    if (query)
        *query++ = '\0';
    pthread_mutex_lock(&api->lock);
    if (!strncmp(target, LEASES, strlen(LEASES)))
        serve_leases(api, c->fd, method, target, query, body);
    else if (!strncmp(target, INGRESSES, strlen(INGRESSES)))
        serve_ingress_status(api, c->fd, method, target, body);
    else
        send_status(c->fd, 404, "Not Found", "no such path in this fake");
    pthread_mutex_unlock(&api->lock);
    json_decref(body);
    return head_len + body_len;
}

static void conn_read(struct fake_api *api, struct conn *c)
{
    if (c->cap - c->len < 4096) {
        c->cap = c->cap * 2 + 8192;
        c->buf = realloc(c->buf, c->cap);
    }
    ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (n <= 0) {
        close(c->fd);
        c->fd = -1;
        c->len = 0;
        return;
    }
    c->len += (size_t)n;
    size_t used;
    while ((used = serve_one(api, c)) > 0) {
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }
}

static void *fake_api_run(void *arg)
{
    struct fake_api *api = arg;
    for (;;) {
        pthread_mutex_lock(&api->lock);
        int stop = api->stop;
        pthread_mutex_unlock(&api->lock);
        if (stop)
            break;
        struct pollfd pfd[MAX_CONNS + 1];
        pfd[0] = (struct pollfd){ .fd = api->listen_fd, .events = POLLIN };
        for (int i = 0; i < MAX_CONNS; i++)
            pfd[i + 1] = (struct pollfd){ .fd = api->conns[i].fd, .events = POLLIN };
        if (poll(pfd, MAX_CONNS + 1, 50) <= 0)
            continue;
        if (pfd[0].revents & POLLIN) {
            int fd = accept(api->listen_fd, NULL, NULL);
            int placed = 0;
            for (int i = 0; fd >= 0 && i < MAX_CONNS && !placed; i++)
                if (api->conns[i].fd < 0)
                    api->conns[i].fd = fd, placed = 1;
            if (fd >= 0 && !placed)
                close(fd);
        }
        for (int i = 0; i < MAX_CONNS; i++)
            if (pfd[i + 1].fd >= 0 && (pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                conn_read(api, &api->conns[i]);
    }
    return NULL;
}

static int fake_api_start(struct fake_api *api)
{
    memset(api, 0, sizeof *api);
    for (int i = 0; i < MAX_CONNS; i++)
        api->conns[i].fd = -1;
    pthread_mutex_init(&api->lock, NULL);
    api->leases = json_object();
    api->ingresses = json_object();
    api->patches = json_object();
    api->rv = 100;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    api->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (api->listen_fd < 0 || bind(api->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(api->listen_fd, 16) != 0 ||
        getsockname(api->listen_fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    api->port = ntohs(sa.sin_port);
    return pthread_create(&api->thread, NULL, fake_api_run, api);
}

static void fake_api_stop(struct fake_api *api)
{
    pthread_mutex_lock(&api->lock);
    api->stop = 1;
    pthread_mutex_unlock(&api->lock);
    pthread_join(api->thread, NULL);
    for (int i = 0; i < MAX_CONNS; i++) {
        if (api->conns[i].fd >= 0)
            close(api->conns[i].fd);
        free(api->conns[i].buf);
    }
    close(api->listen_fd);
    json_decref(api->leases);
    json_decref(api->ingresses);
    json_decref(api->patches);
    pthread_mutex_destroy(&api->lock);
}

static void add_ingress(struct fake_api *api, const char *ns, const char *name)
{
    char key[300];
    snprintf(key, sizeof key, "%s/%s", ns, name);
    json_t *ing = json_pack("{ss ss s{ss ss} s{s[{ss}]}}", "apiVersion", "networking.k8s.io/v1",
                            "kind", "Ingress", "metadata", "name", name, "namespace", ns,
                            "spec", "rules", "host", "www.example.com");
    stamp_rv(api, ing);
    json_object_set_new(api->ingresses, key, ing);
}

/* What an informer would hold now: copies of the server's Ingresses. */
static json_t *informer_objects(struct fake_api *api)
{
    json_t *objects = json_array();
    const char *key;
    json_t *ing;
    pthread_mutex_lock(&api->lock);
    json_object_foreach(api->ingresses, key, ing)
        json_array_append_new(objects, json_deep_copy(ing));
    pthread_mutex_unlock(&api->lock);
    return objects;
}

static char *ingress_status(struct fake_api *api, const char *key)
{
    pthread_mutex_lock(&api->lock);
    json_t *st = json_object_get(json_object_get(api->ingresses, key), "status");
    char *s = st ? json_dumps(st, JSON_COMPACT) : strdup("null");
    pthread_mutex_unlock(&api->lock);
    return s;
}

static long long patch_count(struct fake_api *api, const char *key)
{
    pthread_mutex_lock(&api->lock);
    long long n = json_integer_value(json_object_get(api->patches, key));
    pthread_mutex_unlock(&api->lock);
    return n;
}

static int status_is(struct fake_api *api, const char *key, const char *want_json)
{
    char *have = ingress_status(api, key);
    json_t *want = parse(want_json);
    json_t *ing = json_pack("{s o}", "status", parse(have));
    int same = kube_status_matches(ing, want);
    json_decref(ing);
    json_decref(want);
    free(have);
    return same;
}

/* ---- what the agents log ---- */

/* Sends stderr to a new file named in path (a crash's report stays there); returns the old
 * stderr. */
static int capture_stderr(char path[64])
{
    snprintf(path, 64, "/tmp/test_kube_status.XXXXXX");
    int fd = mkstemp(path);
    int saved = dup(STDERR_FILENO);
    if (fd < 0 || saved < 0) {
        perror(path);
        return saved;
    }
    dup2(fd, STDERR_FILENO);
    close(fd);
    return saved;
}

/* Restores stderr, copies what was captured to it, and returns that text. */
static char *release_stderr(int saved, const char *path)
{
    if (saved >= 0) {
        dup2(saved, STDERR_FILENO);
        close(saved);
    }
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 1 << 20);
    size_t n = f && text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    if (f)
        fclose(f);
    unlink(path);
    if (text)
        fwrite(text, 1, n, stderr);
    return text;
}

static int count_lines(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* ---- the two agents ---- */

struct agent {
    struct kube_client *client;
    struct kube_status *status;
    int active;
    int ever_leader;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One round for every active agent: the informer's view, the network, the tick. */
static void round_all(struct fake_api *api, struct agent *agents, int n, const json_t *served)
{
    json_t *objects = informer_objects(api);
    for (int i = 0; i < n; i++) {
        struct agent *a = &agents[i];
        if (!a->active)
            continue;
        char err[256];
        kube_status_set_ingresses(a->status, objects, served);
        kube_client_poll(a->client, NULL, 0, 10, err, sizeof err);
        kube_status_tick(a->status, mono_ms());
        if (kube_status_is_leader(a->status))
            a->ever_leader = 1;
    }
    json_decref(objects);
}

typedef int cond_fn(struct fake_api *api, struct agent *agents);

static int run_until(struct fake_api *api, struct agent *agents, int n, const json_t *served,
                     cond_fn *cond, int64_t budget_ms)
{
    int64_t deadline = mono_ms() + budget_ms;
    while (mono_ms() < deadline) {
        round_all(api, agents, n, served);
        if (cond && cond(api, agents))
            return 1;
    }
    return cond ? 0 : 1;
}

static int first_leads(struct fake_api *api, struct agent *agents)
{
    return kube_status_is_leader(agents[0].status);
}

static int second_leads(struct fake_api *api, struct agent *agents)
{
    return kube_status_is_leader(agents[1].status);
}

static int all_three_shown(struct fake_api *api, struct agent *agents)
{
    return status_is(api, "gh/web", "[\"10.0.0.1\",\"10.0.0.2\",\"edge2.example.com\"]");
}

static int only_second_shown(struct fake_api *api, struct agent *agents)
{
    return status_is(api, "gh/web", "[\"10.0.0.2\",\"edge2.example.com\"]");
}

static struct agent agent_new(const struct kube_config *cfg, const char *node, const char *addrs)
{
    struct agent a = { .active = 1 };
    char err[256];
    a.client = kube_client_new(cfg, err, sizeof err);
    if (!a.client) {
        fprintf(stderr, "kube_client_new: %s\n", err);
        return a;
    }
    struct kube_status_options opt = {
        .lease_namespace = "gh", .node_name = node, .addresses = addrs,
        .lease_duration_s = 3, .renew_deadline_s = 2, .retry_period_s = 1,
    };
    a.status = kube_status_new(a.client, &opt);
    return a;
}

static void agent_free(struct agent *a)
{
    kube_status_free(a->status);
    kube_client_free(a->client);
}

static json_t *lease_spec(struct fake_api *api, const char *name)
{
    pthread_mutex_lock(&api->lock);
    json_t *spec = json_deep_copy(json_object_get(json_object_get(api->leases, name), "spec"));
    pthread_mutex_unlock(&api->lock);
    return spec;
}

static void test_two_agents(void)
{
    struct fake_api api;
    if (fake_api_start(&api) != 0) {
        CHECK(!"fake API server starts");
        return;
    }
    pthread_mutex_lock(&api.lock);
    add_ingress(&api, "gh", "web");
    add_ingress(&api, "gh", "other");
    add_ingress(&api, "gh", "denied");
    pthread_mutex_unlock(&api.lock);
    json_t *served = parse("[\"gh/web\",\"gh/gone\",\"gh/denied\"]");

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", api.port);
    struct kube_config cfg = { .url = url, .server = url, .origin = (char *)"test" };
    struct agent agents[2] = { agent_new(&cfg, "edge1", "10.0.0.1"),
                               agent_new(&cfg, "edge2", "edge2.example.com, 10.0.0.2") };
    CHECK(agents[0].status && agents[1].status);
    if (!agents[0].status || !agents[1].status)
        goto out;

    /* the first agent alone becomes the leader; then the second joins and is published */
    char log_path[64];
    int saved_stderr = capture_stderr(log_path);
    agents[1].active = 0;
    CHECK(run_until(&api, agents, 2, served, first_leads, 10000));
    agents[1].active = 1;
    CHECK(run_until(&api, agents, 2, served, all_three_shown, 10000));
    char *other = ingress_status(&api, "gh/other");
    CHECK_STR(other, "null");
    free(other);
    CHECK_INT(patch_count(&api, "gh/other"), 0);
    pthread_mutex_lock(&api.lock);
    json_t *meta = json_object_get(json_object_get(api.leases, "gatehouse-node-edge2"), "metadata");
    CHECK_STR(json_string_value(json_object_get(json_object_get(meta, "annotations"),
                                                "gatehouse.dev/addresses")),
              "10.0.0.2,edge2.example.com");
    CHECK_STR(json_string_value(json_object_get(json_object_get(meta, "labels"),
                                                "gatehouse.dev/heartbeat")), "true");
    pthread_mutex_unlock(&api.lock);
    json_t *hb = lease_spec(&api, "gatehouse-node-edge2");
    CHECK_STR(json_string_value(json_object_get(hb, "holderIdentity")), "edge2");
    CHECK_INT(json_integer_value(json_object_get(hb, "leaseDurationSeconds")), 3);
    json_decref(hb);

    /* while the first renews, the second waits, and an equal status gets no request */
    long long patches = patch_count(&api, "gh/web");
    run_until(&api, agents, 2, served, NULL, 4500);
    CHECK(!agents[1].ever_leader);
    CHECK(kube_status_is_leader(agents[0].status));
    CHECK_INT(patch_count(&api, "gh/web"), patches);
    /* the refused Ingress: retried every period, not in a loop, and reported once */
    char *log = release_stderr(saved_stderr, log_path);
    CHECK_INT(count_lines(log, "cannot update the status of Ingress gh/denied: 403 Forbidden: "
                               "ingresses.networking.k8s.io \"denied\" is forbidden"), 1);
    free(log);
    CHECK(patch_count(&api, "gh/denied") >= 2 && patch_count(&api, "gh/denied") < 30);

    /* the first stops; after the lease duration the second takes over and drops its address */
    agents[0].active = 0;
    CHECK(run_until(&api, agents, 2, served, second_leads, 15000));
    CHECK(run_until(&api, agents, 2, served, only_second_shown, 15000));
    json_t *spec = lease_spec(&api, KUBE_STATUS_LEADER_LEASE);
    CHECK_STR(json_string_value(json_object_get(spec, "holderIdentity")), "edge2");
    CHECK_INT(json_integer_value(json_object_get(spec, "leaseTransitions")), 1);
    json_decref(spec);
    CHECK_INT(patch_count(&api, "gh/other"), 0);

    /* release: holder emptied, duration 1 s - even when a renewal cancelled on its way had
     * already changed the Lease (here: its resourceVersion moves on behind the agent's back) */
    pthread_mutex_lock(&api.lock);
    stamp_rv(&api, json_object_get(api.leases, KUBE_STATUS_LEADER_LEASE));
    pthread_mutex_unlock(&api.lock);
    CHECK_INT(kube_status_release(agents[1].status), 1);
    char err[256];
    for (int64_t end = mono_ms() + 5000; kube_client_running(agents[1].client) && mono_ms() < end;)
        kube_client_poll(agents[1].client, NULL, 0, 50, err, sizeof err);
    CHECK(!kube_status_is_leader(agents[1].status));
    spec = lease_spec(&api, KUBE_STATUS_LEADER_LEASE);
    CHECK_STR(json_string_value(json_object_get(spec, "holderIdentity")), "");
    CHECK_INT(json_integer_value(json_object_get(spec, "leaseDurationSeconds")), 1);
    CHECK_INT(json_integer_value(json_object_get(spec, "leaseTransitions")), 1);
    json_decref(spec);
out:
    agent_free(&agents[0]);
    agent_free(&agents[1]);
    json_decref(served);
    fake_api_stop(&api);
}

int main(void)
{
    log_init("test_kube_status", LOG_INFO);
    test_live_addresses();
    test_matches();
    test_patch_body();
    test_default_address();
    test_two_agents();
    return check_summary("test_kube_status");
}
