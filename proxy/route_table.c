/*
 * route_table.c - see route_table.h and docs/routes-format.md.
 *
 * Layout of a built table (everything lives in one arena, freed at once with the table):
 *   backends[]   in file order; each owns its endpoints[]
 *   hosts[]      exact ("foo.example.com") and wildcard ("*.example.com") entries, sorted by
 *                name for binary search; the "*" entry is kept apart in any_host
 *   each entry's routes[] sorted so that the first match is the right one: longer (normalised)
 *   path first, Exact before Prefix at equal length, file order last.
 * Prefix paths are stored without trailing slashes ("/" becomes ""), so a Prefix rule of
 * length L matches a request path that starts with it and continues with '/' or ends there.
 *
 * The "tls" entries become a tls_store owned by the table (tls_store.c loads and checks the
 * certificate files while the table is built); it is freed with the table, so a handshake
 * holding the table keeps its certificate.
 *
 * DNS names among endpoints (ExternalName Services) are resolved with getaddrinfo while the
 * table is built; the build runs in the proxy's reload thread, never on the data path. A name
 * that does not resolve is logged and contributes no endpoint (that backend may then answer
 * 503); it does not refuse the file, because the file itself is valid.
 *
 * Publishing: route_table_acquire() takes a mutex around "read pointer, add reference", so a
 * concurrent publish cannot drop the last reference in between. Workers call acquire rarely:
 * they keep their table and re-acquire only when route_table_published_generation() changes.
 */
#include "route_table.h"

#include "log.h"
#include "tls_store.h"
#include "yaml_json.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_HOST_LEN 253
#define ARENA_CHUNK 65536

enum path_type { PATH_PREFIX, PATH_EXACT };

struct route {
    const char *path;              /* normalised, see above */
    size_t path_len;
    enum path_type type;
    size_t file_order;
    const struct backend *backend;
    const char *ingress;
};

struct host_entry {
    const char *host;
    struct route *routes;
    size_t num_routes;
    size_t file_index;             /* hosts[i] in the file, for messages */
    int ssl_redirect;              /* sslRedirect: true */
};

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, size;
    max_align_t data[];
};

struct route_table {
    _Atomic long refs;
    int64_t generation;
    struct backend *backends;
    size_t num_backends;
    struct host_entry *hosts;      /* sorted by host */
    size_t num_hosts;
    struct host_entry *any_host;   /* the "*" entry, or NULL */
    const struct backend *default_backend;
    size_t num_routes;
    struct tls_store *tls;         /* NULL only for route_table_empty() */
    struct arena_chunk *arena;
};

/* ---- arena ---- */

static void *arena_alloc(struct route_table *t, size_t size)
{
    size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    struct arena_chunk *c = t->arena;
    if (!c || c->size - c->used < size) {
        size_t chunk = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        c = malloc(sizeof *c + chunk);
        if (!c)
            return NULL;
        c->size = chunk;
        c->used = 0;
        c->next = t->arena;
        t->arena = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

static char *arena_strndup(struct route_table *t, const char *s, size_t n)
{
    char *p = arena_alloc(t, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void table_free(struct route_table *t)
{
    tls_store_free(t->tls);
    for (struct arena_chunk *c = t->arena, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(t);
}

/* ---- lifetime ---- */

struct route_table *route_table_empty(void)
{
    struct route_table *t = calloc(1, sizeof *t);
    if (t)
        atomic_init(&t->refs, 1);
    return t;
}

void route_table_ref(struct route_table *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void route_table_unref(struct route_table *t)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        table_free(t);
}

size_t route_table_num_hosts(const struct route_table *t)
{
    return t->num_hosts + (t->any_host != NULL);
}

size_t route_table_num_routes(const struct route_table *t) { return t->num_routes; }
int64_t route_table_generation(const struct route_table *t) { return t->generation; }

/* ---- building: error reporting ---- */

struct build {
    struct route_table *t;
    char *err;
    size_t errlen;
    const struct backend **by_name;   /* backends sorted by name, for lookups */
    const char *base_dir;             /* relative tls file paths start here; NULL: the cwd */
};

static int fail(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct build *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int oom(struct build *b) { return fail(b, "out of memory"); }

/* ---- building: validation helpers ---- */

static int valid_dns_name(const char *s, size_t n)
{
    if (n == 0 || n > MAX_HOST_LEN)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
        } else if (isalnum((unsigned char)c) || c == '-') {
            if (c == '-' && label == 0)
                return 0;
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return label > 0 && s[n - 1] != '-';
}

static const char *path_problem(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/')
        return "path must begin with /";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == 0x7f)
            return "path contains a space or control character";
        if (c == '?' || c == '#')
            return "path contains ? or #";
    }
    return NULL;
}

static int parse_port(const char *s, uint16_t *port)
{
    if (!*s || strlen(s) > 5 || strspn(s, "0123456789") != strlen(s))
        return 0;
    long v = strtol(s, NULL, 10);
    if (v < 1 || v > 65535)
        return 0;
    *port = (uint16_t)v;
    return 1;
}

static int compare_backend_names(const void *a, const void *b)
{
    return strcmp((*(const struct backend *const *)a)->name, (*(const struct backend *const *)b)->name);
}

static const struct backend *find_backend(const struct build *b, const char *name)
{
    if (b->t->num_backends == 0)
        return NULL;
    struct backend key = { .name = name };
    const struct backend *keyp = &key;
    const struct backend **found = bsearch(&keyp, b->by_name, b->t->num_backends,
                                           sizeof *b->by_name, compare_backend_names);
    return found ? *found : NULL;
}

/* ---- building: endpoints ---- */

struct endpoint_list {
    struct endpoint *items;
    size_t len, cap;
};

static struct endpoint *endpoint_push(struct endpoint_list *l)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        struct endpoint *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown)
            return NULL;
        l->items = grown;
        l->cap = cap;
    }
    struct endpoint *e = &l->items[l->len++];
    memset(e, 0, sizeof *e);
    return e;
}

static void endpoint_set_text(struct endpoint *e)
{
    char addr[INET6_ADDRSTRLEN];
    if (e->addr.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&e->addr;
        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof addr);
        snprintf(e->text, sizeof e->text, "%s:%u", addr, ntohs(sin->sin_port));
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&e->addr;
        inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof addr);
        snprintf(e->text, sizeof e->text, "[%s]:%u", addr, ntohs(sin6->sin6_port));
    }
}

static int add_ip_endpoint(struct build *b, struct endpoint_list *l, int family,
                           const void *ip, uint16_t port)
{
    struct endpoint *e = endpoint_push(l);
    if (!e)
        return oom(b);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&e->addr;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, ip, sizeof sin->sin_addr);
        e->addr_len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&e->addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, ip, sizeof sin6->sin6_addr);
        e->addr_len = sizeof *sin6;
    }
    endpoint_set_text(e);
    return 0;
}

static int resolve_endpoint(struct build *b, struct endpoint_list *l, const char *name,
                            uint16_t port, const char *where)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0) {
        log_warn("routes: %s: cannot resolve %s: %s (no endpoint from it)", where, name,
                 gai_strerror(rc));
        return 0;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        const void *ip = ai->ai_family == AF_INET
            ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
            : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            add_ip_endpoint(b, l, ai->ai_family, ip, port) < 0) {
            freeaddrinfo(res);
            return -1;
        }
    }
    freeaddrinfo(res);
    return 0;
}

/* "10.0.0.1:80", "[fd00::1]:80" or "name.example.com:80". */
static int parse_endpoint(struct build *b, struct endpoint_list *l, const char *text,
                          const char *where)
{
    char buf[300];
    if (strlen(text) >= sizeof buf)
        return fail(b, "%s: endpoint is too long", where);
    strcpy(buf, text);
    char *host = buf, *port_text;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || close[1] != ':')
            return fail(b, "%s: \"%s\" is not [IPv6]:port", where, text);
        *close = '\0';
        host = buf + 1;
        port_text = close + 2;
    } else {
        port_text = strrchr(buf, ':');
        if (!port_text)
            return fail(b, "%s: \"%s\" has no :port", where, text);
        *port_text++ = '\0';
    }
    uint16_t port;
    if (!parse_port(port_text, &port))
        return fail(b, "%s: \"%s\": port must be a number in 1..65535", where, text);
    unsigned char ip[sizeof(struct in6_addr)];
    if (buf[0] == '[') {
        if (inet_pton(AF_INET6, host, ip) != 1)
            return fail(b, "%s: \"%s\": not an IPv6 address", where, text);
        return add_ip_endpoint(b, l, AF_INET6, ip, port);
    }
    if (inet_pton(AF_INET, host, ip) == 1)
        return add_ip_endpoint(b, l, AF_INET, ip, port);
    if (!valid_dns_name(host, strlen(host)))
        return fail(b, "%s: \"%s\": not an IPv4 address or DNS name", where, text);
    return resolve_endpoint(b, l, host, port, where);
}

/* ---- building: sections ---- */

static const char *optional_string(struct build *b, const json_t *obj, const char *key,
                                   const char *where, int *bad)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return NULL;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        *bad = fail(b, "%s.%s: expected a string", where, key);
        return NULL;
    }
    return json_string_value(v);
}

static int build_backend(struct build *b, const json_t *jb, size_t i, struct backend *out)
{
    char where[64];
    snprintf(where, sizeof where, "backends[%zu]", i);
    if (!json_is_object(jb))
        return fail(b, "%s: expected a mapping", where);
    int bad = 0;
    const char *name = optional_string(b, jb, "name", where, &bad);
    const char *error = optional_string(b, jb, "error", where, &bad);
    if (bad)
        return -1;
    if (!name || !*name)
        return fail(b, "%s: name is required", where);
    if (!(out->name = arena_strndup(b->t, name, strlen(name))))
        return oom(b);
    if (error && !(out->error = arena_strndup(b->t, error, strlen(error))))
        return oom(b);

    const json_t *eps = json_object_get(jb, "endpoints");
    if (eps && !json_is_array(eps) && !json_is_null(eps))
        return fail(b, "%s (%s).endpoints: expected a list", where, name);
    struct endpoint_list list = { 0 };
    size_t j;
    const json_t *ep;
    json_array_foreach(eps, j, ep) {
        char ep_where[400];
        snprintf(ep_where, sizeof ep_where, "%s (%s).endpoints[%zu]", where, name, j);
        if (!json_is_string(ep) || strlen(json_string_value(ep)) != json_string_length(ep)) {
            free(list.items);
            return fail(b, "%s: expected a string", ep_where);
        }
        if (parse_endpoint(b, &list, json_string_value(ep), ep_where) < 0) {
            free(list.items);
            return -1;
        }
    }
    if (list.len) {
        out->endpoints = arena_alloc(b->t, list.len * sizeof *out->endpoints);
        if (!out->endpoints) {
            free(list.items);
            return oom(b);
        }
        memcpy(out->endpoints, list.items, list.len * sizeof *out->endpoints);
    }
    out->num_endpoints = list.len;
    free(list.items);
    return 0;
}

static int build_backends(struct build *b, const json_t *doc)
{
    const json_t *jbs = json_object_get(doc, "backends");
    if (!jbs)
        return fail(b, "backends: required (may be an empty list)");
    if (!json_is_array(jbs))
        return fail(b, "backends: expected a list");
    struct route_table *t = b->t;
    t->num_backends = json_array_size(jbs);
    if (t->num_backends == 0)
        return 0;
    t->backends = arena_alloc(t, t->num_backends * sizeof *t->backends);
    b->by_name = malloc(t->num_backends * sizeof *b->by_name);
    if (!t->backends || !b->by_name)
        return oom(b);
    for (size_t i = 0; i < t->num_backends; i++) {
        if (build_backend(b, json_array_get(jbs, i), i, &t->backends[i]) < 0)
            return -1;
        b->by_name[i] = &t->backends[i];
    }
    qsort(b->by_name, t->num_backends, sizeof *b->by_name, compare_backend_names);
    for (size_t i = 1; i < t->num_backends; i++)
        if (strcmp(b->by_name[i - 1]->name, b->by_name[i]->name) == 0)
            return fail(b, "backends: duplicate name \"%s\"", b->by_name[i]->name);
    return 0;
}

static int compare_routes(const void *a, const void *b)
{
    const struct route *x = a, *y = b;
    if (x->path_len != y->path_len)
        return x->path_len > y->path_len ? -1 : 1;
    if (x->type != y->type)
        return x->type == PATH_EXACT ? -1 : 1;
    return x->file_order < y->file_order ? -1 : x->file_order > y->file_order;
}

static int build_route(struct build *b, const json_t *jp, const char *where, struct route *r,
                       const char **raw_path, enum path_type *raw_type)
{
    if (!json_is_object(jp))
        return fail(b, "%s: expected a mapping", where);
    int bad = 0;
    const char *path = optional_string(b, jp, "path", where, &bad);
    const char *type = optional_string(b, jp, "type", where, &bad);
    const char *backend = optional_string(b, jp, "backend", where, &bad);
    const char *ingress = optional_string(b, jp, "ingress", where, &bad);
    if (bad)
        return -1;
    if (!path)
        return fail(b, "%s: path is required", where);
    const char *problem = path_problem(path, strlen(path));
    if (problem)
        return fail(b, "%s: %s", where, problem);
    if (!type)
        return fail(b, "%s: type is required (Exact or Prefix)", where);
    if (strcmp(type, "Exact") == 0) r->type = PATH_EXACT;
    else if (strcmp(type, "Prefix") == 0) r->type = PATH_PREFIX;
    else return fail(b, "%s: type \"%.40s\" is not Exact or Prefix", where, type);
    if (!backend)
        return fail(b, "%s: backend is required", where);
    if (!(r->backend = find_backend(b, backend)))
        return fail(b, "%s: backend \"%.200s\" is not in backends", where, backend);

    size_t len = strlen(path);
    if (r->type == PATH_PREFIX)
        while (len > 0 && path[len - 1] == '/')
            len--;
    r->path = arena_strndup(b->t, path, len);
    r->path_len = len;
    r->ingress = ingress ? arena_strndup(b->t, ingress, strlen(ingress)) : NULL;
    if (!r->path || (ingress && !r->ingress))
        return oom(b);
    *raw_path = path;
    *raw_type = r->type;
    return 0;
}

static int build_host(struct build *b, const json_t *jh, size_t i, struct host_entry *h)
{
    char where[300];
    snprintf(where, sizeof where, "hosts[%zu]", i);
    if (!json_is_object(jh))
        return fail(b, "%s: expected a mapping", where);
    int bad = 0;
    const char *host = optional_string(b, jh, "host", where, &bad);
    if (bad)
        return -1;
    if (!host)
        return fail(b, "%s: host is required", where);
    size_t n = strlen(host);
    int wildcard = n > 2 && host[0] == '*' && host[1] == '.';
    if (!(n == 1 && host[0] == '*') && !valid_dns_name(host + 2 * wildcard, n - 2 * wildcard))
        return fail(b, "%s: host \"%.100s\" is not \"*\", a DNS name or \"*.\" + a DNS name",
                    where, host);
    char *lower = arena_strndup(b->t, host, n);
    if (!lower)
        return oom(b);
    for (char *p = lower; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    h->host = lower;
    h->file_index = i;
    snprintf(where, sizeof where, "hosts[%zu] (%s)", i, lower);
    const json_t *redirect = json_object_get(jh, "sslRedirect");
    if (redirect && !json_is_boolean(redirect))
        return fail(b, "%s.sslRedirect: expected true or false", where);
    h->ssl_redirect = json_is_true(redirect);

    const json_t *paths = json_object_get(jh, "paths");
    if (paths && !json_is_array(paths))
        return fail(b, "%s.paths: expected a list", where);
    h->num_routes = json_array_size(paths);
    if (h->num_routes == 0)
        return 0;
    h->routes = arena_alloc(b->t, h->num_routes * sizeof *h->routes);
    const char **raw_paths = calloc(h->num_routes, sizeof *raw_paths);
    enum path_type *raw_types = calloc(h->num_routes, sizeof *raw_types);
    int rc = 0;
    if (!h->routes || !raw_paths || !raw_types)
        rc = oom(b);
    for (size_t j = 0; rc == 0 && j < h->num_routes; j++) {
        char path_where[340];
        snprintf(path_where, sizeof path_where, "%s.paths[%zu]", where, j);
        h->routes[j].file_order = j;
        rc = build_route(b, json_array_get(paths, j), path_where, &h->routes[j],
                         &raw_paths[j], &raw_types[j]);
        for (size_t k = 0; rc == 0 && k < j; k++)   /* entries hold a handful of paths */
            if (raw_types[k] == raw_types[j] && strcmp(raw_paths[k], raw_paths[j]) == 0)
                rc = fail(b, "%s: duplicate path \"%.200s\" (%s), also paths[%zu]", path_where,
                          raw_paths[j], raw_types[j] == PATH_EXACT ? "Exact" : "Prefix", k);
    }
    free(raw_paths);
    free(raw_types);
    if (rc == 0)
        qsort(h->routes, h->num_routes, sizeof *h->routes, compare_routes);
    b->t->num_routes += h->num_routes;
    return rc;
}

static int compare_hosts(const void *a, const void *b)
{
    return strcmp(((const struct host_entry *)a)->host, ((const struct host_entry *)b)->host);
}

static int build_hosts(struct build *b, const json_t *doc)
{
    const json_t *jhs = json_object_get(doc, "hosts");
    if (!jhs)
        return fail(b, "hosts: required (may be an empty list)");
    if (!json_is_array(jhs))
        return fail(b, "hosts: expected a list");
    struct route_table *t = b->t;
    size_t n = json_array_size(jhs);
    if (n == 0)
        return 0;
    t->hosts = arena_alloc(t, n * sizeof *t->hosts);
    if (!t->hosts)
        return oom(b);
    for (size_t i = 0; i < n; i++) {
        struct host_entry h = { 0 };
        if (build_host(b, json_array_get(jhs, i), i, &h) < 0)
            return -1;
        if (strcmp(h.host, "*") == 0) {
            if (t->any_host)
                return fail(b, "hosts[%zu]: duplicate host entry \"*\", also hosts[%zu]", i,
                            t->any_host->file_index);
            if (!(t->any_host = arena_alloc(t, sizeof *t->any_host)))
                return oom(b);
            *t->any_host = h;
        } else {
            t->hosts[t->num_hosts++] = h;
        }
    }
    qsort(t->hosts, t->num_hosts, sizeof *t->hosts, compare_hosts);
    for (size_t i = 1; i < t->num_hosts; i++)
        if (strcmp(t->hosts[i - 1].host, t->hosts[i].host) == 0) {
            size_t first = t->hosts[i - 1].file_index, second = t->hosts[i].file_index;
            return fail(b, "hosts[%zu]: duplicate host entry \"%s\", also hosts[%zu]",
                        first > second ? first : second, t->hosts[i].host,
                        first > second ? second : first);
        }
    return 0;
}

/* Last, so a file refused for any other reason loads no key. */
static int build_tls(struct build *b, const json_t *doc)
{
    const json_t *tls = json_object_get(doc, "tls");
    if (tls && !json_is_null(tls) && !json_is_array(tls))
        return fail(b, "tls: expected a list");
    if (!(b->t->tls = tls_store_build(json_is_array(tls) ? tls : NULL, b->base_dir,
                                      (int64_t)time(NULL))))
        return oom(b);
    return 0;
}

static int build_table(struct build *b, const json_t *doc)
{
    if (!json_is_object(doc))
        return fail(b, "the routes file must be a mapping");
    const json_t *version = json_object_get(doc, "version");
    if (!version)
        return fail(b, "version: required (1)");
    if (!json_is_integer(version) || json_integer_value(version) != 1)
        return fail(b, "version: this proxy reads version 1 only");
    const json_t *generation = json_object_get(doc, "generation");
    if (generation && !json_is_integer(generation))
        return fail(b, "generation: expected an integer");
    b->t->generation = generation ? (int64_t)json_integer_value(generation) : 0;

    if (build_backends(b, doc) < 0 || build_hosts(b, doc) < 0)
        return -1;
    const json_t *def = json_object_get(doc, "defaultBackend");
    if (def && !json_is_null(def)) {
        if (!json_is_string(def))
            return fail(b, "defaultBackend: expected a string");
        if (!(b->t->default_backend = find_backend(b, json_string_value(def))))
            return fail(b, "defaultBackend: \"%.200s\" is not in backends", json_string_value(def));
    }
    return build_tls(b, doc);
}

static struct route_table *table_from_json(const json_t *doc, const char *base_dir, char *err,
                                           size_t errlen)
{
    struct build b = { .t = route_table_empty(), .err = err, .errlen = errlen, .base_dir = base_dir };
    if (!b.t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = build_table(&b, doc);
    free(b.by_name);
    if (rc < 0) {
        route_table_unref(b.t);
        return NULL;
    }
    return b.t;
}

struct route_table *route_table_from_json(const json_t *doc, char *err, size_t errlen)
{
    return table_from_json(doc, NULL, err, errlen);
}

struct route_table *route_table_load_file(const char *path, char *err, size_t errlen)
{
    struct yaml_error yerr;
    json_t *doc = yaml_load_file_single(path, &yerr);
    if (!doc) {
        if (yerr.line)
            snprintf(err, errlen, "%s:%zu:%zu: %s", path, yerr.line, yerr.column, yerr.reason);
        else
            snprintf(err, errlen, "%s: %s", path, yerr.reason);
        return NULL;
    }
    /* The routes file's folder: "dir/routes.yaml" -> "dir", "routes.yaml" -> the cwd. */
    char dir[4096] = "", why[512];
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    struct route_table *t = table_from_json(doc, slash ? dir : NULL, why, sizeof why);
    json_decref(doc);
    if (!t)
        snprintf(err, errlen, "%s: %s", path, why);
    return t;
}

/* ---- matching ---- */

static const struct host_entry *find_host(const struct route_table *t, const char *host)
{
    if (t->num_hosts == 0)
        return NULL;
    struct host_entry key = { .host = host };
    return bsearch(&key, t->hosts, t->num_hosts, sizeof *t->hosts, compare_hosts);
}

/* Lower-cased host without port or trailing dot into buf; 0 when it can name no entry
 * (empty, too long, or an IP literal in brackets). */
static size_t normalise_host(const char *host, size_t len, char *buf)
{
    if (len > 0 && host[0] == '[')
        return 0;
    const char *colon = memchr(host, ':', len);
    if (colon)
        len = (size_t)(colon - host);
    if (len > 0 && host[len - 1] == '.')
        len--;
    if (len == 0 || len > MAX_HOST_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)tolower((unsigned char)host[i]);
    buf[len] = '\0';
    return len;
}

static const struct host_entry *match_host(const struct route_table *t, const char *host,
                                           size_t host_len)
{
    char name[MAX_HOST_LEN + 2];
    size_t len = host ? normalise_host(host, host_len, name + 1) : 0;
    if (len > 0) {
        const struct host_entry *h = find_host(t, name + 1);
        if (h)
            return h;
        char *dot = memchr(name + 1, '.', len);
        if (dot) {   /* "*.rest" for "label.rest", written in place before ".rest" */
            dot[-1] = '*';
            h = find_host(t, dot - 1);
            if (h)
                return h;
        }
    }
    return t->any_host;
}

static const struct route *match_path(const struct host_entry *h, const char *path, size_t len)
{
    for (size_t i = 0; i < h->num_routes; i++) {
        const struct route *r = &h->routes[i];
        if (r->type == PATH_EXACT) {
            if (len == r->path_len && memcmp(path, r->path, len) == 0)
                return r;
        } else if (len >= r->path_len && memcmp(path, r->path, r->path_len) == 0 &&
                   (len == r->path_len || path[r->path_len] == '/')) {
            return r;
        }
    }
    return NULL;
}

void route_table_match(const struct route_table *t, const char *host, size_t host_len,
                       const char *path, size_t path_len, struct route_match *out)
{
    const struct host_entry *h = match_host(t, host, host_len);
    const struct route *r = h ? match_path(h, path, path_len) : NULL;
    out->host_label = h ? h->host : "_";
    out->backend = r ? r->backend : t->default_backend;
    out->ingress = r ? r->ingress : NULL;
    out->ssl_redirect = h ? h->ssl_redirect : 0;
}

const struct tls_store *route_table_tls(const struct route_table *t)
{
    return t->tls;
}

/* ---- endpoints ---- */

struct endpoint *backend_pick(const struct backend *b, const struct endpoint *exclude, int64_t now_ms)
{
    size_t n = b->num_endpoints;
    if (n == 0)
        return NULL;
    uint32_t start = atomic_fetch_add_explicit((_Atomic uint32_t *)&b->rr_cursor, 1,
                                               memory_order_relaxed);
    struct endpoint *least_down = NULL;
    int64_t least_until = 0;
    for (size_t i = 0; i < n; i++) {
        struct endpoint *e = &b->endpoints[(start + i) % n];
        if (e == exclude)
            continue;
        int64_t until = atomic_load_explicit(&e->down_until_ms, memory_order_relaxed);
        if (until <= now_ms)
            return e;
        if (!least_down || until < least_until)
            least_down = e, least_until = until;
    }
    return least_down;
}

void endpoint_mark_down(struct endpoint *e, int64_t now_ms, int backoff_ms)
{
    atomic_store_explicit(&e->down_until_ms, now_ms + backoff_ms, memory_order_relaxed);
}

/* ---- the process-wide current table ---- */

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct route_table *current;
static _Atomic uint64_t current_generation;

void route_table_publish(struct route_table *t)
{
    pthread_mutex_lock(&current_lock);
    struct route_table *old = current;
    current = t;
    atomic_fetch_add_explicit(&current_generation, 1, memory_order_release);
    pthread_mutex_unlock(&current_lock);
    route_table_unref(old);
}

/* Never NULL unless memory runs out: before the first publish, an empty table (all 404). */
struct route_table *route_table_acquire(void)
{
    pthread_mutex_lock(&current_lock);
    struct route_table *t = current;
    if (t)
        route_table_ref(t);
    pthread_mutex_unlock(&current_lock);
    return t ? t : route_table_empty();
}

uint64_t route_table_published_generation(void)
{
    return atomic_load_explicit(&current_generation, memory_order_acquire);
}
