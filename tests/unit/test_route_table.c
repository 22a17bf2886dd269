/*
 * test_route_table.c - routes-file validation, host and path matching (including the
 * Kubernetes documentation's path-matching examples), endpoint picking, and publishing
 * under concurrent readers.
 */
#include "check.h"
#include "route_table.h"
#include "yaml_json.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct route_table *from_yaml(const char *text, char *err, size_t errlen)
{
    struct yaml_error yerr;
    json_t *docs = yaml_parse_stream(text, strlen(text), &yerr);
    if (!docs) {
        snprintf(err, errlen, "yaml: %s", yerr.reason);
        return NULL;
    }
    struct route_table *t = route_table_from_json(json_array_get(docs, 0), err, errlen);
    json_decref(docs);
    return t;
}

/* Which backend serves host+path: its name, "404" when none. */
static const char *serve(const struct route_table *t, const char *host, const char *path)
{
    struct route_match m;
    route_table_match(t, host, host ? strlen(host) : 0, path, strlen(path), &m);
    return m.backend ? m.backend->name : "404";
}

static const char *label(const struct route_table *t, const char *host, const char *path)
{
    struct route_match m;
    route_table_match(t, host, strlen(host), path, strlen(path), &m);
    return m.host_label;
}

/* One host entry "x" with the given paths, each to backend "b<i>"; "T:/path" with T = E or P. */
static struct route_table *paths_table(const char *const *rules, size_t n)
{
    char text[4096];
    size_t len = (size_t)snprintf(text, sizeof text, "version: 1\nbackends:\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "- {name: b%zu, endpoints: [\"10.0.0.%zu:80\"]}\n", i, i + 1);
    len += (size_t)snprintf(text + len, sizeof text - len, "hosts:\n- host: x\n  paths:\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "  - {path: \"%s\", type: %s, backend: b%zu}\n",
                                rules[i] + 2, rules[i][0] == 'E' ? "Exact" : "Prefix", i);
    char err[256];
    struct route_table *t = from_yaml(text, err, sizeof err);
    if (!t)
        fprintf(stderr, "paths_table: %s\n", err);
    return t;
}

/* The "Examples" table of https://kubernetes.io/docs/concepts/services-networking/ingress/
 * (path types). want: index of the rule that serves, or -1 for no match. */
static void test_kubernetes_examples(void)
{
    static const struct {
        const char *rules[3];
        const char *request;
        int want;
    } cases[] = {
        { { "P:/" }, "/anything/at/all", 0 },         /* (all paths) */
        { { "P:/" }, "/", 0 },
        { { "P:/" }, "//x", 0 },
        { { "E:/foo" }, "/foo", 0 },
        { { "E:/foo" }, "/bar", -1 },
        { { "E:/foo" }, "/foo/", -1 },
        { { "E:/foo/" }, "/foo", -1 },
        { { "P:/foo" }, "/foo", 0 },
        { { "P:/foo" }, "/foo/", 0 },
        { { "P:/foo/" }, "/foo", 0 },
        { { "P:/foo/" }, "/foo/", 0 },
        { { "P:/aaa/bb" }, "/aaa/bbb", -1 },
        { { "P:/aaa/bbb" }, "/aaa/bbb", 0 },
        { { "P:/aaa/bbb/" }, "/aaa/bbb", 0 },         /* ignores trailing slash */
        { { "P:/aaa/bbb" }, "/aaa/bbb/", 0 },         /* matches trailing slash */
        { { "P:/aaa/bbb" }, "/aaa/bbb/ccc", 0 },      /* matches subpath */
        { { "P:/aaa/bbb" }, "/aaa/bbbxyz", -1 },      /* not a string prefix match */
        { { "P:/", "P:/aaa" }, "/aaa/ccc", 1 },
        { { "P:/", "P:/aaa", "P:/aaa/bbb" }, "/aaa/bbb", 2 },
        { { "P:/", "P:/aaa", "P:/aaa/bbb" }, "/ccc", 0 },
        { { "P:/aaa" }, "/ccc", -1 },                 /* default backend */
        { { "P:/foo", "E:/foo" }, "/foo", 1 },        /* mixed: Exact preferred */
        { { "E:/foo", "P:/foo" }, "/foo", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = 0;
        while (n < 3 && cases[i].rules[n])
            n++;
        struct route_table *t = paths_table(cases[i].rules, n);
        CHECK(t != NULL);
        if (!t)
            continue;
        char want[16];
        if (cases[i].want < 0) snprintf(want, sizeof want, "404");
        else snprintf(want, sizeof want, "b%d", cases[i].want);
        const char *got = serve(t, "x", cases[i].request);
        if (strcmp(got, want) != 0)
            fprintf(stderr, "kubernetes example %zu (%s): got %s, want %s\n", i, cases[i].request, got, want);
        CHECK_STR(got, want);
        route_table_unref(t);
    }
}

static const char *sample =
    "version: 1\n"
    "generation: 17\n"
    "backends:\n"
    "- name: default/web:80\n"
    "  endpoints: [\"10.1.0.4:8080\", \"[fd00::4]:8080\"]\n"
    "- {name: default/api:80, endpoints: [\"10.1.0.5:9000\"]}\n"
    "- {name: default/star:80, endpoints: [\"10.1.0.6:80\"]}\n"
    "- {name: default/any:80, endpoints: [\"10.1.0.7:80\"]}\n"
    "- {name: default/fallback:80, endpoints: []}\n"
    "- {name: default/res:80, endpoints: [], error: resource backends are not supported}\n"
    "hosts:\n"
    "- host: foo.example.com\n"
    "  paths:\n"
    "  - {path: /, type: Prefix, backend: default/web:80, ingress: default/web}\n"
    "  - {path: /api, type: Prefix, backend: default/api:80, ingress: default/api}\n"
    "- host: \"*.example.com\"\n"
    "  paths:\n"
    "  - {path: /, type: Prefix, backend: default/star:80, ingress: default/star}\n"
    "- host: \"*\"\n"
    "  paths:\n"
    "  - {path: /any, type: Exact, backend: default/any:80}\n"
    "- host: only-exact.example.org\n"
    "  paths:\n"
    "  - {path: /x, type: Exact, backend: default/res:80}\n"
    "defaultBackend: default/fallback:80\n";

static void test_hosts(void)
{
    char err[256] = "";
    struct route_table *t = from_yaml(sample, err, sizeof err);
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK_INT(route_table_generation(t), 17);
    CHECK_INT(route_table_num_hosts(t), 4);
    CHECK_INT(route_table_num_routes(t), 5);

    CHECK_STR(serve(t, "foo.example.com", "/api/v1"), "default/api:80");
    CHECK_STR(serve(t, "foo.example.com", "/apix"), "default/web:80");
    CHECK_STR(serve(t, "FOO.Example.COM", "/api"), "default/api:80");
    CHECK_STR(serve(t, "foo.example.com:8080", "/api"), "default/api:80");
    CHECK_STR(serve(t, "foo.example.com.", "/api"), "default/api:80");
    CHECK_STR(serve(t, "Foo.Example.Com.:443", "/api"), "default/api:80");
    CHECK_STR(label(t, "FOO.example.com:80", "/"), "foo.example.com");

    /* wildcard: exactly one extra label */
    CHECK_STR(serve(t, "bar.example.com", "/"), "default/star:80");
    CHECK_STR(label(t, "BAR.example.com", "/"), "*.example.com");
    CHECK_STR(serve(t, "a.bar.example.com", "/any"), "default/any:80");
    CHECK_STR(label(t, "a.bar.example.com", "/any"), "*");
    CHECK_STR(serve(t, "example.com", "/any"), "default/any:80");

    /* only the chosen entry is searched: a miss there goes to defaultBackend */
    CHECK_STR(serve(t, "a.b.example.com", "/elsewhere"), "default/fallback:80");
    CHECK_STR(label(t, "a.b.example.com", "/elsewhere"), "*");
    CHECK_STR(serve(t, "only-exact.example.org", "/y"), "default/fallback:80");

    /* IP literals and missing Host fall to "*" */
    CHECK_STR(serve(t, "[fd00::1]:8080", "/any"), "default/any:80");
    CHECK_STR(serve(t, "[fd00::1]", "/any"), "default/any:80");
    CHECK_STR(serve(t, "192.0.2.1:80", "/any"), "default/any:80");
    CHECK_STR(serve(t, NULL, "/any"), "default/any:80");
    char long_host[400];
    memset(long_host, 'a', sizeof long_host - 1);
    long_host[sizeof long_host - 1] = '\0';
    CHECK_STR(serve(t, long_host, "/any"), "default/any:80");

    struct route_match m;
    route_table_match(t, "foo.example.com", 15, "/api", 4, &m);
    CHECK_STR(m.ingress, "default/api");
    CHECK_INT(m.backend->num_endpoints, 1);
    CHECK_STR(m.backend->endpoints[0].text, "10.1.0.5:9000");
    route_table_match(t, "foo.example.com", 15, "/", 1, &m);
    CHECK_INT(m.backend->num_endpoints, 2);
    CHECK_STR(m.backend->endpoints[1].text, "[fd00::4]:8080");
    route_table_match(t, "only-exact.example.org", 22, "/x", 2, &m);
    CHECK_STR(m.backend->error, "resource backends are not supported");
    route_table_match(t, "foo.example.com", 15, "/a", 2, &m);
    CHECK(m.backend->error == NULL);
    route_table_match(t, "nothing.example.net", 19, "/", 1, &m);
    CHECK_STR(m.backend->name, "default/fallback:80");
    CHECK(m.ingress == NULL);
    route_table_unref(t);

    /* Without "*" and defaultBackend: 404 with label "_" */
    t = from_yaml("version: 1\nbackends: [{name: a, endpoints: [\"10.0.0.1:1\"]}]\n"
                  "hosts: [{host: a.example.com, paths: [{path: /, type: Prefix, backend: a}]}]\n",
                  err, sizeof err);
    CHECK(t != NULL);
    route_table_match(t, "b.example.com", 13, "/", 1, &m);
    CHECK(m.backend == NULL);
    CHECK_STR(m.host_label, "_");
    route_table_match(t, "a.example.com", 13, "/", 1, &m);
    CHECK_STR(m.host_label, "a.example.com");
    route_table_unref(t);

    t = route_table_empty();
    CHECK_STR(serve(t, "a", "/"), "404");
    CHECK_STR(label(t, "a", "/"), "_");
    CHECK_INT(route_table_num_hosts(t), 0);
    route_table_unref(t);
}

static void test_dns_endpoint(void)
{
    char err[256];
    struct route_table *t = from_yaml(
        "version: 1\nbackends: [{name: ext, endpoints: [\"localhost:8080\", \"no-such-host.invalid:80\"]}]\n"
        "hosts: [{host: \"*\", paths: [{path: /, type: Prefix, backend: ext}]}]\n", err, sizeof err);
    CHECK(t != NULL);
    if (!t)
        return;
    struct route_match m;
    route_table_match(t, "x", 1, "/", 1, &m);
    CHECK(m.backend->num_endpoints >= 1);   /* localhost: 127.0.0.1 and maybe ::1 */
    int found = 0;
    for (size_t i = 0; i < m.backend->num_endpoints; i++)
        found |= strcmp(m.backend->endpoints[i].text, "127.0.0.1:8080") == 0 ||
                 strcmp(m.backend->endpoints[i].text, "[::1]:8080") == 0;
    CHECK(found);
    route_table_unref(t);
}

static void expect_invalid(const char *body, const char *fragment)
{
    char text[2048], err[512] = "";
    snprintf(text, sizeof text, "%s", body);
    struct route_table *t = from_yaml(text, err, sizeof err);
    CHECK(t == NULL);
    route_table_unref(t);
    if (!strstr(err, fragment))
        fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, fragment);
    CHECK(strstr(err, fragment) != NULL);
}

#define B "backends: [{name: a, endpoints: [\"10.0.0.1:80\"]}]\n"
#define H(paths) "hosts: [{host: a.example.com, paths: [" paths "]}]\n"

static void test_validation(void)
{
    expect_invalid("- 1\n", "must be a mapping");
    expect_invalid(B "hosts: []\n", "version: required");
    expect_invalid("version: 2\n" B "hosts: []\n", "version 1 only");
    expect_invalid("version: \"1\"\n" B "hosts: []\n", "version 1 only");
    expect_invalid("version: 1\ngeneration: x\n" B "hosts: []\n", "generation: expected an integer");
    expect_invalid("version: 1\nhosts: []\n", "backends: required");
    expect_invalid("version: 1\nbackends: {}\nhosts: []\n", "backends: expected a list");
    expect_invalid("version: 1\n" B, "hosts: required");
    expect_invalid("version: 1\n" B "hosts: {}\n", "hosts: expected a list");
    expect_invalid("version: 1\nbackends: [{name: a}, {name: b}, {name: a}]\nhosts: []\n",
                   "backends: duplicate name \"a\"");
    expect_invalid("version: 1\nbackends: [{endpoints: []}]\nhosts: []\n", "backends[0]: name is required");
    expect_invalid("version: 1\nbackends: [{name: 5}]\nhosts: []\n", "backends[0].name: expected a string");
    expect_invalid("version: 1\nbackends: [x]\nhosts: []\n", "backends[0]: expected a mapping");
    expect_invalid("version: 1\nbackends: [{name: a, endpoints: x}]\nhosts: []\n",
                   "backends[0] (a).endpoints: expected a list");
    expect_invalid("version: 1\nbackends: [{name: a, endpoints: [8080]}]\nhosts: []\n",
                   "backends[0] (a).endpoints[0]: expected a string");
    expect_invalid("version: 1\nbackends: [{name: a, endpoints: [\"10.0.0.1:80\\0x\"]}]\nhosts: []\n",
                   "backends[0] (a).endpoints[0]: expected a string");
    static const char *const bad_endpoints[] = {
        "10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:http", "10.0.0.1:-1", "[fd00::1]",
        "[fd00::1]80", "[zz::1]:80", "fd00::1:80", "bad_name:80", "-x.example.com:80", ":80",
        "10.0.0.1: 80", "a..b:80",
    };
    for (size_t i = 0; i < sizeof bad_endpoints / sizeof *bad_endpoints; i++) {
        char text[512];
        snprintf(text, sizeof text, "version: 1\nbackends:\n- {name: ok, endpoints: []}\n"
                 "- {name: a, endpoints: [\"10.0.0.2:1\", \"%s\"]}\nhosts: []\n", bad_endpoints[i]);
        expect_invalid(text, "backends[1] (a).endpoints[1]: \"");
    }
    expect_invalid("version: 1\n" B "hosts: [x]\n", "hosts[0]: expected a mapping");
    expect_invalid("version: 1\n" B "hosts: [{paths: []}]\n", "hosts[0]: host is required");
    static const char *const bad_hosts[] = { "a b.com", "*.", "**.a.com", "a.*.com", "foo.*",
        "a_b.com", "-a.com", "a-.com", "a..com", ".a.com", "a.com.", "", "*a.com",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com" };
    for (size_t i = 0; i < sizeof bad_hosts / sizeof *bad_hosts; i++) {
        char text[512];
        snprintf(text, sizeof text, "version: 1\n" B "hosts: [{host: ok.com}, {host: \"%s\"}]\n", bad_hosts[i]);
        expect_invalid(text, "hosts[1]: host \"");
    }
    expect_invalid("version: 1\n" B "hosts: [{host: a.com}, {host: b.com}, {host: A.com}]\n",
                   "hosts[2]: duplicate host entry \"a.com\", also hosts[0]");
    expect_invalid("version: 1\n" B "hosts: [{host: \"*\"}, {host: \"*\"}]\n",
                   "hosts[1]: duplicate host entry \"*\", also hosts[0]");
    expect_invalid("version: 1\n" B "hosts: [{host: a.com, paths: {}}]\n", "hosts[0] (a.com).paths: expected a list");
    expect_invalid("version: 1\n" B H("x"), "hosts[0] (a.example.com).paths[0]: expected a mapping");
    expect_invalid("version: 1\n" B H("{type: Prefix, backend: a}"), "paths[0]: path is required");
    expect_invalid("version: 1\n" B H("{path: api, type: Prefix, backend: a}"), "paths[0]: path must begin with /");
    expect_invalid("version: 1\n" B H("{path: \"\", type: Prefix, backend: a}"), "paths[0]: path must begin with /");
    expect_invalid("version: 1\n" B H("{path: \"/a b\", type: Prefix, backend: a}"), "space or control");
    expect_invalid("version: 1\n" B H("{path: \"/a\\r\\nX: y\", type: Prefix, backend: a}"), "space or control");
    expect_invalid("version: 1\n" B H("{path: \"/a\\0\", type: Prefix, backend: a}"), "paths[0].path: expected a string");
    expect_invalid("version: 1\n" B H("{path: \"/a?b\", type: Prefix, backend: a}"), "? or #");
    expect_invalid("version: 1\n" B H("{path: \"/a#b\", type: Prefix, backend: a}"), "? or #");
    expect_invalid("version: 1\n" B H("{path: /a, backend: a}"), "paths[0]: type is required");
    expect_invalid("version: 1\n" B H("{path: /a, type: ImplementationSpecific, backend: a}"),
                   "paths[0]: type \"ImplementationSpecific\" is not Exact or Prefix");
    expect_invalid("version: 1\n" B H("{path: /a, type: Prefix}"), "paths[0]: backend is required");
    expect_invalid("version: 1\n" B H("{path: /a, type: Prefix, backend: nope}"),
                   "hosts[0] (a.example.com).paths[0]: backend \"nope\" is not in backends");
    expect_invalid("version: 1\n" B H("{path: /a, type: Prefix, backend: a}, {path: /b, type: Exact, backend: a},"
                                      "{path: /a, type: Prefix, backend: a}"),
                   "paths[2]: duplicate path \"/a\" (Prefix), also paths[0]");
    expect_invalid("version: 1\n" B H("{path: /a, type: Prefix, backend: a, ingress: [x]}"), "paths[0].ingress: expected a string");
    expect_invalid("version: 1\n" B "hosts: []\ndefaultBackend: nope\n", "defaultBackend: \"nope\" is not in backends");
    expect_invalid("version: 1\n" B "hosts: []\ndefaultBackend: [a]\n", "defaultBackend: expected a string");

    /* Same path with different types is fine. */
    char err[256];
    struct route_table *t = from_yaml("version: 1\n" B H("{path: /a, type: Prefix, backend: a}, {path: /a, type: Exact, backend: a}"),
                                      err, sizeof err);
    CHECK(t != NULL);
    route_table_unref(t);
}

static void test_load_file(void)
{
    char path[] = "/tmp/test_route_table_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(sample, f);
    fclose(f);
    char err[512] = "";
    struct route_table *t = route_table_load_file(path, err, sizeof err);
    CHECK(t != NULL);
    if (t)
        CHECK_STR(serve(t, "foo.example.com", "/api"), "default/api:80");
    route_table_unref(t);

    f = fopen(path, "w");
    fputs("version: 1\nbackends: [\nhosts: []\n", f);
    fclose(f);
    CHECK(route_table_load_file(path, err, sizeof err) == NULL);
    CHECK(strncmp(err, path, strlen(path)) == 0);
    CHECK(strstr(err, ":4:1: did not find expected") != NULL);   /* line of the problem */

    f = fopen(path, "w");
    fputs("version: 1\nbackends: []\nhosts: [{host: a.com, paths: [{path: /, type: Prefix, backend: x}]}]\n", f);
    fclose(f);
    CHECK(route_table_load_file(path, err, sizeof err) == NULL);
    CHECK(strstr(err, "hosts[0] (a.com).paths[0]: backend \"x\" is not in backends") != NULL);
    unlink(path);

    CHECK(route_table_load_file("/nonexistent/routes.yaml", err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/routes.yaml: cannot open") != NULL);
}

static void test_many_hosts(void)
{
    json_t *backends = json_array(), *hosts = json_array();
    char name[64], host[64], ep[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof name, "ns/svc-%d:80", i);
        snprintf(host, sizeof host, "host-%d.example.com", i);
        snprintf(ep, sizeof ep, "10.%d.%d.1:8080", i / 256, i % 256);
        json_array_append_new(backends, json_pack("{s:s, s:[s]}", "name", name, "endpoints", ep));
        json_array_append_new(hosts, json_pack("{s:s, s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}]}",
            "host", host, "paths", "path", "/", "type", "Prefix", "backend", name,
            "path", "/health", "type", "Exact", "backend", name));
    }
    json_t *doc = json_pack("{s:i, s:o, s:o}", "version", 1, "backends", backends, "hosts", hosts);
    size_t len;
    char *text = yaml_emit(doc, &len);
    json_decref(doc);
    char path[] = "/tmp/test_route_table_many_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, text, len) == (ssize_t)len);
    close(fd);
    free(text);

    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char err[256];
    struct route_table *t = route_table_load_file(path, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    unlink(path);
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK_INT(route_table_num_hosts(t), 10000);
    CHECK_INT(route_table_num_routes(t), 20000);
    int wrong = 0;
    for (int round = 0; round < 10; round++)
        for (int i = 0; i < 10000; i++) {
            snprintf(host, sizeof host, "Host-%d.Example.com:443", i);
            snprintf(name, sizeof name, "ns/svc-%d:80", i);
            struct route_match m;
            route_table_match(t, host, strlen(host), "/some/path", 10, &m);
            wrong += !m.backend || strcmp(m.backend->name, name) != 0;
        }
    clock_gettime(CLOCK_MONOTONIC, &t2);
    CHECK_INT(wrong, 0);
    double load = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    double match = ((double)(t2.tv_sec - t1.tv_sec) + (t2.tv_nsec - t1.tv_nsec) / 1e9) / 100000;
    /* Informational only: speed is measured by make bench, never asserted in unit tests. */
    printf("10,000 hosts: load %.3f s, match %.0f ns (ASan build)\n", load, match * 1e9);
    CHECK_STR(serve(t, "host-10000.example.com", "/"), "404");
    route_table_unref(t);
}

static void test_backend_pick(void)
{
    char err[256];
    struct route_table *t = from_yaml(
        "version: 1\nbackends: [{name: a, endpoints: [\"10.0.0.1:80\", \"10.0.0.2:80\", \"10.0.0.3:80\"]},"
        " {name: none, endpoints: []}, {name: one, endpoints: [\"10.0.0.9:80\"]}]\n"
        "hosts: [{host: a.com, paths: [{path: /, type: Prefix, backend: a}, {path: /none, type: Exact, backend: none},"
        " {path: /one, type: Exact, backend: one}]}]\n", err, sizeof err);
    CHECK(t != NULL);
    if (!t)
        return;
    struct route_match m;
    route_table_match(t, "a.com", 5, "/", 1, &m);
    const struct backend *b = m.backend;
    int counts[3] = { 0 };
    for (int i = 0; i < 300; i++)
        counts[backend_pick(b, NULL, 1000) - b->endpoints]++;
    CHECK(counts[0] == 100 && counts[1] == 100 && counts[2] == 100);

    endpoint_mark_down(&b->endpoints[1], 1000, 5000);
    for (int i = 0; i < 30; i++)
        CHECK(backend_pick(b, NULL, 2000) != &b->endpoints[1]);
    CHECK(backend_pick(b, NULL, 6000) != NULL);   /* down until 6000: up again at 6000 */
    int saw1 = 0;
    for (int i = 0; i < 3; i++)
        saw1 |= backend_pick(b, NULL, 6000) == &b->endpoints[1];
    CHECK(saw1);

    for (int i = 0; i < 30; i++)
        CHECK(backend_pick(b, &b->endpoints[0], 1000) != &b->endpoints[0]);

    /* all down: the one that comes back first */
    endpoint_mark_down(&b->endpoints[0], 1000, 3000);
    endpoint_mark_down(&b->endpoints[1], 1000, 1000);
    endpoint_mark_down(&b->endpoints[2], 1000, 2000);
    for (int i = 0; i < 5; i++)
        CHECK(backend_pick(b, NULL, 1500) == &b->endpoints[1]);
    CHECK(backend_pick(b, &b->endpoints[1], 1500) == &b->endpoints[2]);

    route_table_match(t, "a.com", 5, "/none", 5, &m);
    CHECK(backend_pick(m.backend, NULL, 0) == NULL);
    route_table_match(t, "a.com", 5, "/one", 4, &m);
    CHECK(backend_pick(m.backend, NULL, 0) == &m.backend->endpoints[0]);
    CHECK(backend_pick(m.backend, &m.backend->endpoints[0], 0) == NULL);   /* no other to try */
    route_table_unref(t);
}

/* Readers acquire, match and release while a publisher keeps replacing the table; ASan
 * reports any use after free, and every match must succeed on whichever table it got. */
static _Atomic int stop_readers;
static _Atomic long reader_errors, reader_rounds;

static void *reader(void *arg)
{
    uint64_t seen = 0;
    struct route_table *t = NULL;
    while (!atomic_load(&stop_readers)) {
        uint64_t gen = route_table_published_generation();
        if (!t || gen != seen) {   /* as the workers do: re-acquire on a new generation */
            route_table_unref(t);
            seen = gen;
            t = route_table_acquire();
        }
        if (strcmp(serve(t, "foo.example.com", "/api"), "default/api:80") != 0)
            atomic_fetch_add(&reader_errors, 1);
        atomic_fetch_add(&reader_rounds, 1);
    }
    route_table_unref(t);
    return arg;
}

static void test_publish(void)
{
    char err[256];
    struct route_table *first = from_yaml(sample, err, sizeof err);
    CHECK(first != NULL);
    if (!first)
        return;
    uint64_t gen0 = route_table_published_generation();
    route_table_publish(first);
    CHECK(route_table_published_generation() == gen0 + 1);

    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&threads[i], NULL, reader, NULL);
    for (int i = 0; i < 300; i++) {
        struct route_table *next = from_yaml(sample, err, sizeof err);
        route_table_publish(next);
        if (i % 50 == 0)
            usleep(1000);
    }
    atomic_store(&stop_readers, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    CHECK_INT(atomic_load(&reader_errors), 0);
    CHECK(atomic_load(&reader_rounds) > 0);
    CHECK(route_table_published_generation() == gen0 + 301);

    /* A table a request still holds survives its replacement. */
    struct route_table *held = route_table_acquire();
    route_table_publish(route_table_empty());
    CHECK_STR(serve(held, "foo.example.com", "/api"), "default/api:80");
    route_table_unref(held);
    struct route_table *now = route_table_acquire();
    CHECK_STR(serve(now, "foo.example.com", "/api"), "404");
    route_table_unref(now);
    route_table_publish(NULL);   /* drop the last one so ASan's leak check stays quiet */
    now = route_table_acquire();   /* nothing published: an empty table, not NULL */
    CHECK(now != NULL && route_table_num_hosts(now) == 0);
    route_table_unref(now);
}

int main(void)
{
    test_kubernetes_examples();
    test_hosts();
    test_dns_endpoint();
    test_validation();
    test_load_file();
    test_many_hosts();
    test_backend_pick();
    test_publish();
    return check_summary("test_route_table");
}
