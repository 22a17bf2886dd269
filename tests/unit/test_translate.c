/*
 * test_translate.c - Ingress semantics: Kubernetes objects in, routes document out.
 *
 * Inputs are written as JSON with single quotes (turned into double quotes before parsing) so
 * the objects read like the manifests they stand for.
 */
#include "check.h"
#include "temp_dir.h"
#include "translate.h"

#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

#define CONTROLLER "gatehouse.dev/ingress-controller"

/* ---- diagnostics ---- */

static char diags[64 * 1024];
static size_t num_errors, num_warnings;

static void collect(void *ctx, const char *severity, const char *msg)
{
    (void)ctx;
    if (strcmp(severity, "error") == 0)
        num_errors++;
    else if (strcmp(severity, "warning") == 0)
        num_warnings++;
    size_t used = strlen(diags);
    snprintf(diags + used, sizeof diags - used, "%s: %s\n", severity, msg);
    if (getenv("SHOW_DIAGS"))
        fprintf(stderr, "  diag %s: %s\n", severity, msg);
}

static struct translate_options options = { .controller = CONTROLLER, .diag = collect };

static void reset_diags(void)
{
    diags[0] = '\0';
    num_errors = num_warnings = 0;
}

static int diag_has(const char *a, const char *b)
{
    for (const char *line = diags; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char one[2048];
        snprintf(one, sizeof one, "%.*s", (int)len, line);
        if (strstr(one, a) && (!b || strstr(one, b)))
            return 1;
        line += len + (end != NULL);
    }
    return 0;
}

/* ---- building inputs ---- */

static char input[1 << 20];

static void begin(void)
{
    snprintf(input, sizeof input, "[");
}

static void add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void add(const char *fmt, ...)
{
    size_t used = strlen(input);
    if (used > 1)
        input[used++] = ',';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(input + used, sizeof input - used, fmt, ap);
    va_end(ap);
}

static json_t *parse_quoted(char *text)
{
    for (char *p = text; *p; p++) {
        if (*p == '\'')
            *p = '"';
    }
    json_error_t error;
    json_t *j = json_loads(text, 0, &error);
    if (!j)
        fprintf(stderr, "test input does not parse: %s: %s\n", error.text, text);
    return j;
}

static json_t *end(void)
{
    strcat(input, "]");
    return parse_quoted(input);
}

static void our_class(const char *name, int is_default)
{
    add("{'apiVersion':'networking.k8s.io/v1','kind':'IngressClass','metadata':{'name':'%s'%s},"
        "'spec':{'controller':'" CONTROLLER "'}}", name,
        is_default ? ",'annotations':{'ingressclass.kubernetes.io/is-default-class':'true'}" : "");
}

static void other_class(const char *name)
{
    add("{'apiVersion':'networking.k8s.io/v1','kind':'IngressClass','metadata':{'name':'%s'},"
        "'spec':{'controller':'k8s.io/ingress-nginx'}}", name);
}

/* An Ingress in namespace default. meta: extra metadata members (leading comma) or "". */
static void ingress(const char *name, const char *created, const char *meta, const char *spec)
{
    add("{'apiVersion':'networking.k8s.io/v1','kind':'Ingress','metadata':{'name':'%s',"
        "'namespace':'default','creationTimestamp':'%s'%s},'spec':%s}", name, created, meta, spec);
}

/* A one-path rule: host, path, backend service and port (a JSON fragment). */
static void simple_ingress(const char *name, const char *created, const char *host,
                           const char *path, const char *service, const char *port)
{
    char spec[1024];
    snprintf(spec, sizeof spec, "{'ingressClassName':'gatehouse','rules':[{'host':'%s','http':"
             "{'paths':[{'path':'%s','pathType':'Prefix','backend':{'service':{'name':'%s',"
             "'port':%s}}}]}}]}", host, path, service, port);
    ingress(name, created, "", spec);
}

static void service(const char *name, const char *ports)
{
    add("{'apiVersion':'v1','kind':'Service','metadata':{'name':'%s','namespace':'default'},"
        "'spec':{'type':'ClusterIP','ports':%s}}", name, ports);
}

static void slice(const char *name, const char *service_name, const char *type,
                  const char *ports, const char *endpoints)
{
    add("{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice','metadata':{'name':'%s',"
        "'namespace':'default','labels':{'kubernetes.io/service-name':'%s'}},'addressType':'%s',"
        "'ports':%s,'endpoints':%s}", name, service_name, type, ports, endpoints);
}

/* The web Service: port 80 named http -> 8080, port 9090 unnamed -> 9191. */
static void web_service(const char *endpoints)
{
    service("web", "[{'name':'http','port':80,'targetPort':8080},{'port':9090}]");
    slice("web-abc", "web", "IPv4", "[{'name':'http','port':8080},{'name':'','port':9191}]",
          endpoints);
}

/* Fragments of an Ingress spec: a path entry and a service backend. */
#define PATH(path, type, backend) \
    "{'path':'" path "','pathType':'" type "','backend':" backend "}"
#define SVC(name, port) "{'service':{'name':'" name "','port':" port "}}"

/* ---- reading the output ---- */

static json_t *translate(void)
{
    json_t *objects = end();
    reset_diags();
    json_t *doc = translate_routes(objects, &options, NULL);
    json_decref(objects);
    return doc;
}

static json_t *find_by(json_t *list, const char *key, const char *value)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        const char *v = json_string_value(json_object_get(item, key));
        if (v && strcmp(v, value) == 0)
            return item;
    }
    return NULL;
}

static json_t *backend(json_t *doc, const char *name)
{
    return find_by(json_object_get(doc, "backends"), "name", name);
}

static json_t *host(json_t *doc, const char *name)
{
    return find_by(json_object_get(doc, "hosts"), "host", name);
}

/* The route for host+path, or NULL. */
static json_t *route(json_t *doc, const char *host_name, const char *path)
{
    return find_by(json_object_get(host(doc, host_name), "paths"), "path", path);
}

static const char *route_field(json_t *doc, const char *host_name, const char *path,
                               const char *field)
{
    return json_string_value(json_object_get(route(doc, host_name, path), field));
}

/* "a b c": a backend's endpoints joined by spaces; "(none)" for a missing backend. */
static const char *endpoints_of(json_t *doc, const char *name)
{
    static char text[4096];
    json_t *b = backend(doc, name), *e;
    size_t i;
    if (!b)
        return "(none)";
    text[0] = '\0';
    json_array_foreach(json_object_get(b, "endpoints"), i, e) {
        size_t used = strlen(text);
        snprintf(text + used, sizeof text - used, "%s%s", i ? " " : "", json_string_value(e));
    }
    return text;
}

/* What the proxy checks when it loads the file (docs/routes-format.md), for every output. */
static int well_formed(json_t *doc)
{
    json_t *backends = json_object_get(doc, "backends"), *hosts = json_object_get(doc, "hosts");
    json_t *names = json_object(), *seen_hosts = json_object(), *item, *path;
    size_t i, j;
    int ok = json_integer_value(json_object_get(doc, "version")) == 1 && json_is_array(backends) &&
             json_is_array(hosts);
    json_array_foreach(backends, i, item) {
        const char *name = json_string_value(json_object_get(item, "name"));
        ok = ok && name && !json_object_get(names, name) &&
             json_is_array(json_object_get(item, "endpoints"));
        if (name)
            json_object_set_new(names, name, json_true());
    }
    json_array_foreach(hosts, i, item) {
        const char *h = json_string_value(json_object_get(item, "host"));
        json_t *seen_paths = json_object();
        ok = ok && h && !json_object_get(seen_hosts, h);
        if (h)
            json_object_set_new(seen_hosts, h, json_true());
        json_array_foreach(json_object_get(item, "paths"), j, path) {
            const char *p = json_string_value(json_object_get(path, "path"));
            const char *t = json_string_value(json_object_get(path, "type"));
            const char *b = json_string_value(json_object_get(path, "backend"));
            char key[8192];
            ok = ok && p && p[0] == '/' && !strpbrk(p, " ?#\r\n") && t &&
                 (!strcmp(t, "Exact") || !strcmp(t, "Prefix")) && b && json_object_get(names, b);
            snprintf(key, sizeof key, "%s %s", t ? t : "", p ? p : "");
            ok = ok && !json_object_get(seen_paths, key);
            json_object_set_new(seen_paths, key, json_true());
        }
        json_decref(seen_paths);
    }
    json_t *def = json_object_get(doc, "defaultBackend");
    ok = ok && (!def || (json_is_string(def) && json_object_get(names, json_string_value(def))));
    json_decref(names);
    json_decref(seen_hosts);
    return ok;
}

static const char *served(void)
{
    static char text[4096];
    json_t *objects = end();
    reset_diags();
    json_t *list = translate_served_ingresses(objects, &options), *e;
    /* translate_routes reports the same list through options.served */
    json_t *from_routes = NULL;
    struct translate_options quiet = options;
    quiet.diag = NULL;
    quiet.served = &from_routes;
    json_decref(translate_routes(objects, &quiet, NULL));
    CHECK(json_equal(list, from_routes));
    json_decref(from_routes);
    size_t i;
    text[0] = '\0';
    json_array_foreach(list, i, e) {
        size_t used = strlen(text);
        snprintf(text + used, sizeof text - used, "%s%s", i ? " " : "", json_string_value(e));
    }
    json_decref(list);
    json_decref(objects);
    return text;
}

/* ---- class selection ---- */

#define ANY_SPEC(cls) "{" cls "'rules':[{'host':'a.example.com','http':{'paths':[{'path':'/'," \
    "'pathType':'Prefix','backend':{'service':{'name':'web','port':{'number':80}}}}]}}]}"

static void test_class_selection(void)
{
    const char *legacy_ours = ",'annotations':{'kubernetes.io/ingress.class':'gatehouse'}";
    const char *legacy_other = ",'annotations':{'kubernetes.io/ingress.class':'nginx'}";
    begin();
    our_class("gatehouse", 0);
    other_class("nginx");
    ingress("ours", "2024-01-01T00:00:00Z", "", ANY_SPEC("'ingressClassName':'gatehouse',"));
    ingress("theirs", "2024-01-01T00:00:00Z", "", ANY_SPEC("'ingressClassName':'nginx',"));
    ingress("unknown-class", "2024-01-01T00:00:00Z", "", ANY_SPEC("'ingressClassName':'x',"));
    ingress("classless", "2024-01-01T00:00:00Z", "", ANY_SPEC(""));
    ingress("legacy-ours", "2024-01-01T00:00:00Z", legacy_ours,
            ANY_SPEC("'ingressClassName':'nginx',"));
    ingress("legacy-theirs", "2024-01-01T00:00:00Z", legacy_other,
            ANY_SPEC("'ingressClassName':'gatehouse',"));
    CHECK_STR(served(), "default/legacy-ours default/ours");
    CHECK_INT(num_errors + num_warnings, 0);            /* others' Ingresses: silently ignored */

    /* a default class of ours takes the class-less Ingress */
    begin();
    our_class("gatehouse", 1);
    ingress("classless", "2024-01-01T00:00:00Z", "", ANY_SPEC(""));
    ingress("theirs", "2024-01-01T00:00:00Z", "", ANY_SPEC("'ingressClassName':'nginx',"));
    CHECK_STR(served(), "default/classless");

    /* someone else's default class does not */
    begin();
    our_class("gatehouse", 0);
    add("{'apiVersion':'networking.k8s.io/v1','kind':'IngressClass','metadata':{'name':'nginx',"
        "'annotations':{'ingressclass.kubernetes.io/is-default-class':'true'}},"
        "'spec':{'controller':'k8s.io/ingress-nginx'}}");
    ingress("classless", "2024-01-01T00:00:00Z", "", ANY_SPEC(""));
    CHECK_STR(served(), "");

    /* watch_without_class takes class-less Ingresses even without a default class */
    begin();
    ingress("classless", "2024-01-01T00:00:00Z", "", ANY_SPEC(""));
    options.watch_without_class = 1;
    CHECK_STR(served(), "default/classless");
    options.watch_without_class = 0;
    begin();
    ingress("classless", "2024-01-01T00:00:00Z", "", ANY_SPEC(""));
    CHECK_STR(served(), "");

    /* a class of ours named in an Ingress, but the IngressClass is not ours: not served */
    begin();
    other_class("gatehouse");
    ingress("ours", "2024-01-01T00:00:00Z", "", ANY_SPEC("'ingressClassName':'gatehouse',"));
    CHECK_STR(served(), "");

    /* only served Ingresses produce routes */
    begin();
    our_class("gatehouse", 0);
    ingress("theirs", "2024-01-01T00:00:00Z", "", ANY_SPEC("'ingressClassName':'nginx',"));
    json_t *doc = translate();
    CHECK(well_formed(doc));
    CHECK_INT(json_array_size(json_object_get(doc, "hosts")), 0);
    CHECK_INT(json_array_size(json_object_get(doc, "backends")), 0);
    json_decref(doc);
}

/* ---- backends and endpoints ---- */

static void test_ports_and_endpoints(void)
{
    begin();
    our_class("gatehouse", 0);
    web_service("[{'addresses':['10.0.0.3']},{'addresses':['10.0.0.1'],"
                "'conditions':{'ready':true}},{'addresses':['10.0.0.2','10.0.0.1']}]");
    simple_ingress("by-number", "2024-01-01T00:00:00Z", "a.example.com", "/num", "web",
                   "{'number':80}");
    simple_ingress("by-name", "2024-01-01T00:00:00Z", "a.example.com", "/name", "web",
                   "{'name':'http'}");
    simple_ingress("unnamed", "2024-01-01T00:00:00Z", "a.example.com", "/unnamed", "web",
                   "{'number':9090}");
    json_t *doc = translate();
    CHECK(well_formed(doc));
    CHECK_INT(num_errors + num_warnings, 0);
    /* three ready endpoints, one listed twice: sorted and de-duplicated */
    CHECK_STR(endpoints_of(doc, "default/web:80"), "10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080");
    CHECK_STR(endpoints_of(doc, "default/web:http"), "10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080");
    CHECK_STR(endpoints_of(doc, "default/web:9090"), "10.0.0.1:9191 10.0.0.2:9191 10.0.0.3:9191");
    CHECK_STR(route_field(doc, "a.example.com", "/num", "backend"), "default/web:80");
    CHECK_STR(route_field(doc, "a.example.com", "/name", "backend"), "default/web:http");
    CHECK_STR(route_field(doc, "a.example.com", "/name", "ingress"), "default/by-name");
    json_decref(doc);
}

static void test_not_ready_and_ipv6(void)
{
    begin();
    our_class("gatehouse", 0);
    web_service("[{'addresses':['10.0.0.1'],'conditions':{'ready':false}},"
                "{'addresses':['10.0.0.2'],'conditions':{'ready':true,'terminating':false}},"
                "{'addresses':['10.0.0.3'],'conditions':{}}]");
    slice("web-v6", "web", "IPv6", "[{'name':'http','port':8080}]",
          "[{'addresses':['fd00:0::4']},{'addresses':['fd00::5'],'conditions':{'ready':false}}]");
    slice("web-dns", "web", "FQDN", "[{'name':'http','port':8080}]",
          "[{'addresses':['vm1.internal']}]");
    slice("other", "api", "IPv4", "[{'name':'http','port':8080}]", "[{'addresses':['10.9.9.9']}]");
    simple_ingress("web", "2024-01-01T00:00:00Z", "a.example.com", "/", "web", "{'number':80}");
    json_t *doc = translate();
    CHECK(well_formed(doc));
    CHECK_STR(endpoints_of(doc, "default/web:80"),
              "10.0.0.2:8080 10.0.0.3:8080 [fd00::4]:8080 vm1.internal:8080");
    json_decref(doc);
}

static void test_no_endpoints(void)
{
    begin();
    our_class("gatehouse", 0);
    service("web", "[{'name':'http','port':80}]");
    slice("web-abc", "web", "IPv4", "[{'name':'http','port':8080}]",
          "[{'addresses':['10.0.0.1'],'conditions':{'ready':false}}]");
    simple_ingress("web", "2024-01-01T00:00:00Z", "a.example.com", "/", "web", "{'number':80}");
    service("lonely", "[{'port':80}]");                   /* no slice at all */
    simple_ingress("lonely", "2024-01-01T00:00:00Z", "b.example.com", "/", "lonely",
                   "{'number':80}");
    json_t *doc = translate();
    CHECK(well_formed(doc));
    CHECK(backend(doc, "default/web:80") != NULL);
    CHECK_STR(endpoints_of(doc, "default/web:80"), "");
    CHECK(json_object_get(backend(doc, "default/web:80"), "error") == NULL);
    CHECK_STR(endpoints_of(doc, "default/lonely:80"), "");
    CHECK_INT(num_errors, 0);
    json_decref(doc);
}

static void test_missing_service_and_port(void)
{
    begin();
    our_class("gatehouse", 0);
    web_service("[{'addresses':['10.0.0.1']}]");
    simple_ingress("ghost", "2024-01-01T00:00:00Z", "a.example.com", "/", "nope", "{'number':80}");
    simple_ingress("badport", "2024-01-01T00:00:00Z", "b.example.com", "/", "web",
                   "{'number':81}");
    simple_ingress("badname", "2024-01-01T00:00:00Z", "c.example.com", "/", "web",
                   "{'name':'grpc'}");
    json_t *doc = translate();
    CHECK(well_formed(doc));
    CHECK_STR(json_string_value(json_object_get(backend(doc, "default/nope:80"), "error")),
              "service default/nope not found");
    CHECK_STR(endpoints_of(doc, "default/nope:80"), "");
    CHECK(diag_has("error: Ingress default/ghost", "service default/nope not found"));
    CHECK(json_object_get(backend(doc, "default/web:81"), "error") != NULL);
    CHECK(diag_has("Ingress default/badport", "has no port 81"));
    CHECK(json_object_get(backend(doc, "default/web:grpc"), "error") != NULL);
    CHECK(diag_has("Ingress default/badname", "no port named \"grpc\""));
    CHECK_STR(route_field(doc, "a.example.com", "/", "backend"), "default/nope:80");
    json_decref(doc);
}

static void test_external_name(void)
{
    begin();
    our_class("gatehouse", 0);
    add("{'apiVersion':'v1','kind':'Service','metadata':{'name':'ext','namespace':'default'},"
        "'spec':{'type':'ExternalName','externalName':'db.example.org.','ports':"
        "[{'name':'https','port':443}]}}");
    simple_ingress("num", "2024-01-01T00:00:00Z", "a.example.com", "/n", "ext", "{'number':8443}");
    simple_ingress("named", "2024-01-01T00:00:00Z", "a.example.com", "/s", "ext",
                   "{'name':'https'}");
    json_t *doc = translate();
    CHECK(well_formed(doc));
    CHECK_STR(endpoints_of(doc, "default/ext:8443"), "db.example.org:8443");
    CHECK_STR(endpoints_of(doc, "default/ext:https"), "db.example.org:443");
    CHECK_INT(num_errors, 0);
    json_decref(doc);
}

static void test_resource_backend(void)
{
    begin();
    our_class("gatehouse", 0);
    ingress("res", "2024-01-01T00:00:00Z", "", "{'ingressClassName':'gatehouse','rules':[{'host':"
            "'a.example.com','http':{'paths':[{'path':'/static','pathType':'Prefix','backend':"
            "{'resource':{'apiGroup':'k8s.example.com','kind':'StorageBucket',"
            "'name':'assets'}}}]}}]}");
    json_t *doc = translate();
    CHECK(well_formed(doc));
    const char *name = route_field(doc, "a.example.com", "/static", "backend");
    CHECK_STR(name, "default/StorageBucket/assets");
    CHECK_STR(json_string_value(json_object_get(backend(doc, name ? name : ""), "error")),
              "resource backends are not supported");
    CHECK(diag_has("error: Ingress default/res", "resource backends are not supported"));
    json_decref(doc);
}

/* ---- hosts, paths, merging ---- */

static void test_merge_and_order(void)
{
    begin();
    our_class("gatehouse", 0);
    web_service("[{'addresses':['10.0.0.1']}]");
    ingress("one", "2024-01-01T00:00:00Z", "", "{'ingressClassName':'gatehouse','rules':["
            "{'host':'a.example.com','http':{'paths':["
            PATH("/a", "Prefix", SVC("web", "{'number':80}")) ","
            PATH("/api", "Exact", SVC("web", "{'number':80}")) "]}},"
            "{'http':{'paths':[{'pathType':'ImplementationSpecific','backend':{'service':"
            "{'name':'web','port':{'number':80}}}}]}}]}");
    ingress("two", "2024-01-02T00:00:00Z", "", "{'ingressClassName':'gatehouse','rules':["
            "{'host':'A.Example.COM','http':{'paths':["
            PATH("/api", "Prefix", SVC("web", "{'name':'http'}")) ","
            PATH("/b", "Exact", SVC("web", "{'number':80}")) "]}}]}");
    json_t *doc = translate();
    CHECK(well_formed(doc));
    CHECK_INT(num_errors + num_warnings, 0);
    CHECK_INT(json_array_size(json_object_get(doc, "hosts")), 2);
    /* hosts sorted: "*" before letters; the rule without host became "*" */
    CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(doc, "hosts"), 0),
                                                "host")), "*");
    CHECK_STR(route_field(doc, "*", "/", "type"), "Prefix");   /* ImplementationSpecific */
    json_t *paths = json_object_get(host(doc, "a.example.com"), "paths");
    CHECK_INT(json_array_size(paths), 4);
    const char *want[][3] = { { "/api", "Exact", "default/one" },
                              { "/api", "Prefix", "default/two" },
                              { "/b", "Exact", "default/two" },
                              { "/a", "Prefix", "default/one" } };
    for (size_t i = 0; i < 4; i++) {
        json_t *p = json_array_get(paths, i);
        CHECK_STR(json_string_value(json_object_get(p, "path")), want[i][0]);
        CHECK_STR(json_string_value(json_object_get(p, "type")), want[i][1]);
        CHECK_STR(json_string_value(json_object_get(p, "ingress")), want[i][2]);
    }
    CHECK_INT(json_array_size(json_object_get(doc, "backends")), 2);
    json_decref(doc);
}

static void test_conflict_oldest_wins(void)
{
    for (int order = 0; order < 2; order++) {
        begin();
        our_class("gatehouse", 0);
        service("old", "[{'port':80}]");
        service("new", "[{'port':80}]");
        if (order == 0)
            simple_ingress("newer", "2024-03-01T00:00:00Z", "a.example.com", "/x", "new",
                           "{'number':80}");
        simple_ingress("older", "2024-02-01T00:00:00Z", "a.example.com", "/x", "old",
                       "{'number':80}");
        if (order == 1)
            simple_ingress("newer", "2024-03-01T00:00:00Z", "a.example.com", "/x", "new",
                           "{'number':80}");
        json_t *doc = translate();
        CHECK(well_formed(doc));
        CHECK_STR(route_field(doc, "a.example.com", "/x", "ingress"), "default/older");
        CHECK_STR(route_field(doc, "a.example.com", "/x", "backend"), "default/old:80");
        CHECK(backend(doc, "default/new:80") == NULL);   /* the loser's backend is unused */
        CHECK(diag_has("warning: Ingress default/newer", "default/older"));
        json_decref(doc);
    }

    /* equal timestamps: namespace/name decides; offsets and fractions compare as times */
    begin();
    our_class("gatehouse", 0);
    service("web", "[{'port':80}]");
    simple_ingress("b", "2024-02-01T00:00:00Z", "a.example.com", "/", "web", "{'number':80}");
    simple_ingress("a", "2024-02-01T00:00:00Z", "a.example.com", "/", "web", "{'number':80}");
    simple_ingress("c", "2024-02-01T01:30:00+02:00", "b.example.com", "/", "web", "{'number':80}");
    simple_ingress("d", "2024-01-31T23:59:59.5Z", "b.example.com", "/", "web", "{'number':80}");
    json_t *doc = translate();
    CHECK_STR(route_field(doc, "a.example.com", "/", "ingress"), "default/a");
    CHECK_STR(route_field(doc, "b.example.com", "/", "ingress"), "default/c");
    CHECK(diag_has("Ingress default/b", "default/a"));
    CHECK(diag_has("Ingress default/d", "default/c"));
    json_decref(doc);

    /* without a usable timestamp an Ingress loses to one that has one (a bad one is reported);
     * the same path twice in one Ingress: the first is kept */
    begin();
    our_class("gatehouse", 0);
    service("web", "[{'port':80}]");
    service("api", "[{'port':80}]");
    add("{'apiVersion':'networking.k8s.io/v1','kind':'Ingress','metadata':{'name':'a',"
        "'namespace':'default'},'spec':" ANY_SPEC("'ingressClassName':'gatehouse',") "}");
    simple_ingress("b", "yesterday", "a.example.com", "/", "api", "{'number':80}");
    simple_ingress("z", "2024-02-01T00:00:00Z", "a.example.com", "/", "api", "{'number':80}");
    ingress("twice", "2024-02-01T00:00:00Z", "", "{'ingressClassName':'gatehouse','rules':["
            "{'host':'b.example.com','http':{'paths':["
            PATH("/p", "Exact", SVC("web", "{'number':80}")) ","
            PATH("/p", "Exact", SVC("api", "{'number':80}")) "]}}]}");
    doc = translate();
    CHECK_STR(route_field(doc, "a.example.com", "/", "ingress"), "default/z");
    CHECK(diag_has("warning: Ingress default/b", "creationTimestamp \"yesterday\""));
    CHECK_STR(route_field(doc, "b.example.com", "/p", "backend"), "default/web:80");
    CHECK(diag_has("warning: Ingress default/twice: rule 0 path 1", "listed twice"));
    json_decref(doc);

    /* one Ingress defined twice (two manifest files): the first definition counts */
    begin();
    our_class("gatehouse", 0);
    service("web", "[{'port':80}]");
    service("api", "[{'port':80}]");
    simple_ingress("dup", "2024-02-01T00:00:00Z", "a.example.com", "/", "web", "{'number':80}");
    simple_ingress("dup", "2024-01-01T00:00:00Z", "a.example.com", "/", "api", "{'number':80}");
    doc = translate();
    CHECK_STR(route_field(doc, "a.example.com", "/", "backend"), "default/web:80");
    CHECK(diag_has("error: Ingress default/dup", "defined twice"));
    json_decref(doc);
}

static void test_default_backend(void)
{
    begin();
    our_class("gatehouse", 0);
    service("fallback", "[{'port':80}]");
    service("late", "[{'port':80}]");
    ingress("late", "2024-05-01T00:00:00Z", "", "{'ingressClassName':'gatehouse','defaultBackend':"
            "{'service':{'name':'late','port':{'number':80}}}}");
    ingress("early", "2024-04-01T00:00:00Z", "", "{'ingressClassName':'gatehouse','defaultBackend':"
            "{'service':{'name':'fallback','port':{'number':80}}}}");
    json_t *doc = translate();
    CHECK(well_formed(doc));
    CHECK_STR(json_string_value(json_object_get(doc, "defaultBackend")), "default/fallback:80");
    CHECK(backend(doc, "default/fallback:80") != NULL);
    CHECK(diag_has("warning: Ingress default/late: spec.defaultBackend", "default/early"));
    json_decref(doc);

    /* none: no defaultBackend key at all */
    begin();
    our_class("gatehouse", 0);
    json_t *empty = translate();
    CHECK(json_object_get(empty, "defaultBackend") == NULL);
    CHECK(well_formed(empty));
    json_decref(empty);
}

static void test_rejected_paths(void)
{
    static const char *const bad[] = { "api", "", "/a//b", "/a/./b", "/a/../b", "/a%2fb", "/a%2Fb",
                                       "/a/..", "/a/.", "/a b", "/a?x", "/a#x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        begin();
        our_class("gatehouse", 0);
        service("web", "[{'port':80}]");
        simple_ingress("web", "2024-01-01T00:00:00Z", "a.example.com", bad[i], "web",
                       "{'number':80}");
        simple_ingress("fine", "2024-01-01T00:00:00Z", "a.example.com", "/ok", "web",
                       "{'number':80}");
        json_t *doc = translate();
        CHECK(well_formed(doc));
        CHECK(route(doc, "a.example.com", "/ok") != NULL);        /* the rest still works */
        CHECK_INT(json_array_size(json_object_get(host(doc, "a.example.com"), "paths")), 1);
        if (!diag_has("error: Ingress default/web: rule 0 path 0: path", NULL))
            fprintf(stderr, "path \"%s\" was not refused\n", bad[i]);
        CHECK(diag_has("error: Ingress default/web: rule 0 path 0: path", NULL));
        json_decref(doc);
    }
    /* allowed: dots inside names, "/" alone, a trailing slash, percent-encoding of other bytes */
    static const char *const good[] = { "/", "/a/", "/a.b/c..d", "/.well-known", "/a%20b" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        begin();
        our_class("gatehouse", 0);
        service("web", "[{'port':80}]");
        simple_ingress("web", "2024-01-01T00:00:00Z", "a.example.com", good[i], "web",
                       "{'number':80}");
        json_t *doc = translate();
        CHECK(route(doc, "a.example.com", good[i]) != NULL);
        CHECK_INT(num_errors, 0);
        json_decref(doc);
    }
    /* missing or unknown pathType */
    begin();
    our_class("gatehouse", 0);
    service("web", "[{'port':80}]");
    ingress("notype", "2024-01-01T00:00:00Z", "", "{'ingressClassName':'gatehouse','rules':["
            "{'host':'a.example.com','http':{'paths':[{'path':'/a','backend':{'service':"
            "{'name':'web','port':{'number':80}}}},{'path':'/b','pathType':'Regex','backend':"
            "{'service':{'name':'web','port':{'number':80}}}}]}}]}");
    json_t *doc = translate();
    CHECK(host(doc, "a.example.com") == NULL);
    CHECK(diag_has("Ingress default/notype: rule 0 path 0", "pathType"));
    CHECK(diag_has("Ingress default/notype: rule 0 path 1", "pathType"));
    json_decref(doc);
}

static void test_hosts(void)
{
    static const char *const good[][2] = {
        { "*.example.com", "*.example.com" }, { "Shop.Example.COM", "shop.example.com" },
        { "xn--bcher-kva.example", "xn--bcher-kva.example" }, { "localhost", "localhost" } };
    static const char *const bad[] = { "*", "*example.com", "a.*.example.com", "**.example.com",
                                       "example.com.", "-a.example.com", "a_b.example.com",
                                       "10.0.0.1", "::1", "a..b", "exa mple.com",
                                       "foo.example.com:80" };
    begin();
    our_class("gatehouse", 0);
    service("web", "[{'port':80}]");
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "good%zu", i);
        simple_ingress(name, "2024-01-01T00:00:00Z", good[i][0], "/", "web", "{'number':80}");
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu", i);
        simple_ingress(name, "2024-01-01T00:00:00Z", bad[i], "/", "web", "{'number':80}");
    }
    json_t *doc = translate();
    CHECK(well_formed(doc));
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_STR(route_field(doc, good[i][1], "/", "ingress") ? good[i][1] : "(missing)",
                  good[i][1]);
    CHECK_INT(json_array_size(json_object_get(doc, "hosts")), sizeof good / sizeof good[0]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char who[64];
        snprintf(who, sizeof who, "error: Ingress default/bad%zu: rule 0: host", i);
        if (!diag_has(who, NULL))
            fprintf(stderr, "host \"%s\" was not refused\n", bad[i]);
        CHECK(diag_has(who, NULL));
    }
    json_decref(doc);
}

/* ---- robustness ---- */

static void test_ignored_objects(void)
{
    begin();
    our_class("gatehouse", 0);
    service("web", "[{'port':80}]");
    add("{'apiVersion':'networking.k8s.io/v1','kind':'Ingress','metadata':{'name':'going',"
        "'namespace':'default','deletionTimestamp':'2024-01-01T00:00:00Z'},'spec':"
        ANY_SPEC("'ingressClassName':'gatehouse',") "}");
    add("{'apiVersion':'extensions/v1beta1','kind':'Ingress','metadata':{'name':'old',"
        "'namespace':'default'},'spec':{'backend':{'serviceName':'web','servicePort':80}}}");
    add("{'apiVersion':'v1','kind':'ConfigMap','metadata':{'name':7}}");
    add("{'apiVersion':'v1','kind':'Secret','metadata':{'name':'tls','namespace':'default'},"
        "'type':'kubernetes.io/tls','data':{}}");
    json_t *doc = translate();
    CHECK(well_formed(doc));
    CHECK_INT(json_array_size(json_object_get(doc, "hosts")), 0);
    CHECK_INT(num_errors, 0);
    CHECK(diag_has("warning: Ingress default/old", "apiVersion extensions/v1beta1"));
    json_decref(doc);
}

static const char *full_input =
    "[{'apiVersion':'networking.k8s.io/v1','kind':'IngressClass','metadata':{'name':'gatehouse',"
    "  'annotations':{'ingressclass.kubernetes.io/is-default-class':'true'}},"
    "  'spec':{'controller':'" CONTROLLER "'}},"
    " {'apiVersion':'networking.k8s.io/v1','kind':'Ingress','metadata':{'name':'web',"
    "  'namespace':'shop','creationTimestamp':'2024-01-01T00:00:00Z'},"
    "  'spec':{'defaultBackend':{'service':{'name':'web','port':{'number':80}}},"
    "   'rules':[{'host':'shop.example.com','http':{'paths':["
    "    " PATH("/", "Prefix", SVC("web", "{'name':'http'}")) ","
    "    {'path':'/x','pathType':'Exact',"
    "     'backend':{'resource':{'kind':'Bucket','name':'b'}}}]}}]}},"
    " {'apiVersion':'networking.k8s.io/v1','kind':'Ingress','metadata':{'name':'ext',"
    "  'namespace':'shop','annotations':{'kubernetes.io/ingress.class':'gatehouse'}},"
    "  'spec':{'rules':[{'host':'*.example.com','http':{'paths':["
    "    " PATH("/db", "Prefix", SVC("db", "{'number':5432}")) "]}}]}},"
    " {'apiVersion':'v1','kind':'Service','metadata':{'name':'web','namespace':'shop'},"
    "  'spec':{'ports':[{'name':'http','port':80,'protocol':'TCP'}]}},"
    " {'apiVersion':'v1','kind':'Service','metadata':{'name':'db','namespace':'shop'},"
    "  'spec':{'type':'ExternalName','externalName':'db.example.org'}},"
    " {'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice','metadata':{'name':'web-1',"
    "  'namespace':'shop','labels':{'kubernetes.io/service-name':'web'}},'addressType':'IPv4',"
    "  'ports':[{'name':'http','port':8080,'protocol':'TCP'}],"
    "  'endpoints':[{'addresses':['10.0.0.1'],'conditions':{'ready':true}},"
    "   {'addresses':['10.0.0.2'],'conditions':{'ready':false}}]}]";

/* null last: it means "absent", which may legitimately change the output without a word. */
static json_t *const *wrong_values(size_t *count)
{
    static json_t *values[7];
    if (!values[0]) {
        values[0] = json_integer(7);
        values[1] = json_string("x");
        values[2] = json_array();
        values[3] = json_object();
        values[4] = json_true();
        values[5] = json_real(1.5);
        values[6] = json_null();
    }
    *count = 7;
    return values;
}

static size_t mutations, mutations_silent;

static void translate_mutant(json_t *root, const char *baseline, const char *what,
                             const json_t *value)
{
    reset_diags();
    json_t *doc = translate_routes(root, &options, NULL);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    mutations++;
    CHECK(well_formed(doc));
    if (text && strcmp(text, baseline) != 0 && num_errors + num_warnings == 0 &&
        !json_is_null(value)) {
        mutations_silent++;
        fprintf(stderr, "output changed without a diagnostic: %s\n", what);
    }
    free(text);
    json_decref(doc);
}

/* Replaces each node of the tree under root, in turn, by values of every other JSON type and
 * translates: never a crash, always a well-formed document, and any change to the output that
 * came from a wrong type was reported. */
static void mutate_all(json_t *root, json_t *node, const char *baseline)
{
    size_t count, i;
    json_t *const *values = wrong_values(&count);
    const char *key;
    json_t *child;
    void *tmp;
    if (json_is_object(node)) {
        json_object_foreach_safe(node, tmp, key, child) {
            json_t *saved = json_incref(child);
            for (i = 0; i < count; i++) {
                if (json_typeof(values[i]) == json_typeof(saved) ||
                    (json_is_boolean(values[i]) && json_is_boolean(saved)))
                    continue;
                json_object_set(node, key, values[i]);
                translate_mutant(root, baseline, key, values[i]);
            }
            json_object_set(node, key, saved);
            json_decref(saved);
            mutate_all(root, saved, baseline);
        }
    } else if (json_is_array(node)) {
        size_t n = json_array_size(node);
        for (size_t idx = 0; idx < n; idx++) {
            json_t *saved = json_incref(json_array_get(node, idx));
            for (i = 0; i < count; i++) {
                if (json_typeof(values[i]) == json_typeof(saved))
                    continue;
                json_array_set(node, idx, values[i]);
                translate_mutant(root, baseline, "an array element", values[i]);
            }
            json_array_set(node, idx, saved);
            json_decref(saved);
            mutate_all(root, saved, baseline);
        }
    }
}

static void test_malformed_input(void)
{
    char text[8192];
    snprintf(text, sizeof text, "%s", full_input);
    json_t *root = parse_quoted(text);
    reset_diags();
    json_t *doc = translate_routes(root, &options, NULL);
    char *baseline = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    /* the unmutated input is sound: everything but the resource backend is served */
    CHECK(well_formed(doc));
    CHECK_STR(endpoints_of(doc, "shop/web:http"), "10.0.0.1:8080");
    CHECK_STR(endpoints_of(doc, "shop/db:5432"), "db.example.org:5432");
    CHECK_STR(json_string_value(json_object_get(doc, "defaultBackend")), "shop/web:80");
    CHECK_INT(num_errors, 1);                                  /* the resource backend */
    json_decref(doc);

    mutate_all(root, root, baseline);
    CHECK(mutations > 300);
    CHECK_INT(mutations_silent, 0);
    free(baseline);
    json_decref(root);

    /* not even an array */
    json_t *wrong[] = { json_object(), json_string("x"), json_null(), NULL };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        reset_diags();
        doc = translate_routes(wrong[i], &options, NULL);
        CHECK(well_formed(doc));
        CHECK_INT(num_errors, 1);
        json_decref(doc);
        json_decref(wrong[i]);
    }
    json_decref(translate_served_ingresses(NULL, &options));

    /* a few specific messages a user would need */
    begin();
    our_class("gatehouse", 0);
    add("{'apiVersion':'v1','kind':'Service','metadata':{'name':'web','namespace':'default'},"
        "'spec':{'ports':[{'name':'http','port':'80'}]}}");
    add("{'apiVersion':'networking.k8s.io/v1','kind':'Ingress','metadata':{'name':'x',"
        "'namespace':'default','labels':{'app':1}},'spec':{}}");
    add("{'kind':'Ingress','metadata':{'name':'y'}}");
    add("42");
    json_t *d = translate();
    CHECK(diag_has("Service default/web: spec.ports[0]", "port must be an integer"));
    CHECK(diag_has("Ingress", "metadata.labels[\"app\"] must be a string"));
    CHECK(diag_has("objects[3] Ingress", "apiVersion is missing"));
    CHECK(diag_has("objects[4]", "expected an object, got integer"));
    json_decref(d);

    /* no options at all: nothing is ours, nothing is reported, nothing crashes */
    json_t *objects = parse_quoted(strcpy(text, full_input));
    d = translate_routes(objects, NULL, NULL);
    CHECK(well_formed(d));
    CHECK_INT(json_array_size(json_object_get(d, "hosts")), 0);
    json_decref(d);
    json_decref(objects);
}

/* ---- determinism and speed ---- */

static json_t *big_input(size_t n)
{
    json_t *list = json_array();
    char text[2048];
    snprintf(text, sizeof text, "{'apiVersion':'networking.k8s.io/v1','kind':'IngressClass',"
             "'metadata':{'name':'gatehouse'},'spec':{'controller':'" CONTROLLER "'}}");
    json_array_append_new(list, parse_quoted(text));
    for (size_t i = 0; i < n; i++) {
        snprintf(text, sizeof text, "{'apiVersion':'networking.k8s.io/v1','kind':'Ingress',"
                 "'metadata':{'name':'app%zu','namespace':'ns%zu','creationTimestamp':"
                 "'2024-01-%02zuT00:00:00Z'},'spec':{'ingressClassName':'gatehouse','rules':"
                 "[{'host':'app%zu.example.com','http':{'paths':[{'path':'/','pathType':'Prefix',"
                 "'backend':{'service':{'name':'svc%zu','port':{'number':80}}}},{'path':'/shared',"
                 "'pathType':'Prefix','backend':{'service':{'name':'svc%zu','port':"
                 "{'name':'http'}}}}]}},"
                 "{'host':'shared.example.com','http':{'paths':[{'path':'/p%zu','pathType':'Exact',"
                 "'backend':{'service':{'name':'svc%zu','port':{'number':80}}}}]}}]}}",
                 i, i % 50, i % 28 + 1, i % 5000, i, i, i % 700, i);
        json_array_append_new(list, parse_quoted(text));
        snprintf(text, sizeof text, "{'apiVersion':'v1','kind':'Service','metadata':{'name':"
                 "'svc%zu','namespace':'ns%zu'},'spec':{'ports':[{'name':'http','port':80}]}}",
                 i, i % 50);
        json_array_append_new(list, parse_quoted(text));
        snprintf(text, sizeof text, "{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice',"
                 "'metadata':{'name':'svc%zu-x','namespace':'ns%zu','labels':"
                 "{'kubernetes.io/service-name':'svc%zu'}},'addressType':'IPv4','ports':"
                 "[{'name':'http','port':8080}],'endpoints':[{'addresses':['10.%zu.%zu.1']},"
                 "{'addresses':['10.%zu.%zu.2']},{'addresses':['10.%zu.%zu.3'],"
                 "'conditions':{'ready':false}}]}", i, i % 50, i, i / 250, i % 250, i / 250,
                 i % 250, i / 250, i % 250);
        json_array_append_new(list, parse_quoted(text));
    }
    return list;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
}

static void test_deterministic_at_scale(void)
{
    json_t *objects = big_input(10000);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    reset_diags();
    options.diag = NULL;                    /* thousands of conflicts: count, do not store */
    json_t *doc = translate_routes(objects, &options, NULL);
    double elapsed = seconds_since(&start);
    printf("test_translate: 10,000 Ingresses + Services + EndpointSlices in %.3f s\n", elapsed);
    CHECK(well_formed(doc));
    CHECK_INT(json_array_size(json_object_get(doc, "hosts")), 5001);
    CHECK_INT(json_array_size(json_object_get(host(doc, "shared.example.com"), "paths")), 700);
    CHECK_STR(endpoints_of(doc, "ns7/svc7:80"), "10.0.7.1:8080 10.0.7.2:8080");
    char *first = json_dumps(doc, JSON_COMPACT);

    /* the same objects in another order give the same document, byte for byte */
    json_t *shuffled = json_array();
    size_t n = json_array_size(objects);
    for (size_t i = 0; i < n; i++)
        json_array_append(shuffled, json_array_get(objects, (i * 7919) % n));
    CHECK_INT(json_array_size(shuffled), n);
    clock_gettime(CLOCK_MONOTONIC, &start);
    json_t *again = translate_routes(shuffled, &options, NULL);
    double elapsed_again = seconds_since(&start);
    char *second = json_dumps(again, JSON_COMPACT);
    /* Timings are printed, not asserted: speed is measured by make bench. */
    printf("test_translate: shuffled input in %.3f s\n", elapsed_again);
    CHECK(first && second && strcmp(first, second) == 0);
    options.diag = collect;
    free(first);
    free(second);
    json_decref(doc);
    json_decref(again);
    json_decref(shuffled);
    json_decref(objects);
}

/* ---- certificates (spec.tls) and redirects ----
 *
 * Keys and certificates are made at test time with the openssl command, in a temp folder. */

struct pem {
    char crt[8192], key[8192];       /* PEM text */
    char crt64[12288], key64[12288]; /* base64 of it, as in a Secret's data */
};

static struct pem rsa_pem, ec_pem, other_rsa_pem;
static char tls_dir[64];
static json_t *tls_files;

static int read_text(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(out, 1, len - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
    return n > 0 ? 0 : -1;
}

/* A key (newkey: openssl req's -newkey argument) and a certificate for a.example.com, valid
 * from now for 30 days. */
static int make_pem(const char *tag, const char *newkey, struct pem *out)
{
    char cmd[1024], path[256];
    snprintf(cmd, sizeof cmd, "cd %s && openssl req -x509 -nodes -newkey %s -keyout %s.key "
             "-out %s.crt -days 30 -subj /CN=a.example.com 2>/dev/null && "
             "openssl base64 -A -in %s.crt -out %s.crt64 && "
             "openssl base64 -A -in %s.key -out %s.key64", tls_dir, newkey, tag, tag, tag, tag,
             tag, tag);
    if (system(cmd) != 0)
        return -1;
    int bad = 0;
    snprintf(path, sizeof path, "%s/%s.crt", tls_dir, tag);
    bad |= read_text(path, out->crt, sizeof out->crt);
    snprintf(path, sizeof path, "%s/%s.key", tls_dir, tag);
    bad |= read_text(path, out->key, sizeof out->key);
    snprintf(path, sizeof path, "%s/%s.crt64", tls_dir, tag);
    bad |= read_text(path, out->crt64, sizeof out->crt64);
    snprintf(path, sizeof path, "%s/%s.key64", tls_dir, tag);
    bad |= read_text(path, out->key64, sizeof out->key64);
    return bad;
}

/* PEM text as a JSON string body: newlines escaped. */
static const char *escaped(const char *text)
{
    static char out[2][16384];
    static int which;
    char *o = out[which ^= 1];
    size_t used = 0;
    for (const char *p = text; *p && used + 3 < sizeof out[0]; p++) {
        if (*p == '\n') {
            o[used++] = '\\';
            o[used++] = 'n';
        } else {
            o[used++] = *p;
        }
    }
    o[used] = '\0';
    return o;
}

static void secret(const char *name, const char *type, const char *data)
{
    add("{'apiVersion':'v1','kind':'Secret','metadata':{'name':'%s','namespace':'default'}%s%s%s,"
        "%s}", name, type ? ",'type':'" : "", type ? type : "", type ? "'" : "", data);
}

static void tls_secret(const char *name, const struct pem *pem)
{
    char data[32768];
    snprintf(data, sizeof data, "'data':{'tls.crt':'%s','tls.key':'%s'}", pem->crt64, pem->key64);
    secret(name, "kubernetes.io/tls", data);
}

/* An Ingress with one rule for host ("/" -> web:80) and the given tls list. */
static void tls_ingress(const char *name, const char *created, const char *meta,
                        const char *host_name, const char *tls)
{
    char spec[2048];
    snprintf(spec, sizeof spec, "{'ingressClassName':'gatehouse','tls':%s,'rules':[{'host':'%s',"
             "'http':{'paths':[" PATH("/", "Prefix", SVC("web", "{'number':80}")) "]}}]}", tls,
             host_name);
    ingress(name, created, meta, spec);
}

static void tls_begin(void)
{
    begin();
    our_class("gatehouse", 0);
    web_service("[{'addresses':['10.0.0.1']}]");
}

static json_t *translate_tls(void)
{
    json_t *objects = end();
    reset_diags();
    json_decref(tls_files);
    tls_files = NULL;
    json_t *doc = translate_routes(objects, &options, &tls_files);
    json_decref(objects);
    return doc;
}

static json_t *tls_entry(json_t *doc, const char *secret_key)
{
    return find_by(json_object_get(doc, "tls"), "secret", secret_key);
}

static int redirects(json_t *doc, const char *host_name)
{
    return json_is_true(json_object_get(host(doc, host_name), "sslRedirect"));
}

/* The file the entry names (field "cert" or "key"), as handed over for writing, or "". */
static const char *file_of(json_t *entry, const char *field)
{
    const char *name = json_string_value(json_object_get(entry, field));
    const char *content = json_string_value(json_object_get(tls_files, name ? name : ""));
    return content ? content : "";
}

static int names_hash_file(json_t *entry, const char *field, const char *ext)
{
    const char *name = json_string_value(json_object_get(entry, field));
    return name && strlen(name) == 4 + 64 + 4 && strncmp(name, "tls/", 4) == 0 &&
           strspn(name + 4, "0123456789abcdef") == 64 && strcmp(name + 68, ext) == 0;
}

static int hosts_are(json_t *entry, const char *want)
{
    char text[1024] = "";
    json_t *h;
    size_t i;
    json_array_foreach(json_object_get(entry, "hosts"), i, h) {
        size_t used = strlen(text);
        snprintf(text + used, sizeof text - used, "%s%s", i ? " " : "", json_string_value(h));
    }
    if (strcmp(text, want) != 0)
        fprintf(stderr, "  hosts: \"%s\", want \"%s\"\n", text, want);
    return strcmp(text, want) == 0;
}

/* No byte of key material anywhere but in the files handed over. */
static int no_key_material(json_t *doc)
{
    char *text = json_dumps(doc, 0);
    int clean = text && !strstr(text, "PRIVATE KEY") && !strstr(text, "BEGIN CERT") &&
                !strstr(diags, "PRIVATE KEY") && !strstr(diags, rsa_pem.key64 + 100);
    free(text);
    return clean;
}

static void test_tls_valid_secrets(void)
{
    /* RSA from data (base64), ECDSA from stringData (as written in manifests) */
    tls_begin();
    tls_secret("rsa-tls", &rsa_pem);
    char data[32768];
    snprintf(data, sizeof data, "'stringData':{'tls.crt':'%s','tls.key':'%s'}",
             escaped(ec_pem.crt), escaped(ec_pem.key));
    secret("ec-tls", "kubernetes.io/tls", data);
    tls_ingress("rsa", "2024-01-01T00:00:00Z", "", "a.example.com",
                "[{'hosts':['A.example.com'],'secretName':'rsa-tls'}]");
    tls_ingress("ec", "2024-01-02T00:00:00Z", "", "b.example.com",
                "[{'secretName':'ec-tls'}]");                /* no hosts: its rule hosts */
    json_t *doc = translate_tls();
    CHECK(well_formed(doc));
    CHECK_INT(num_errors + num_warnings, 0);
    json_t *rsa = tls_entry(doc, "default/rsa-tls"), *ec = tls_entry(doc, "default/ec-tls");
    CHECK(rsa && hosts_are(rsa, "a.example.com"));
    CHECK_STR(json_string_value(json_object_get(rsa, "ingress")), "default/rsa");
    CHECK(names_hash_file(rsa, "cert", ".crt") && names_hash_file(rsa, "key", ".key"));
    CHECK_STR(file_of(rsa, "cert"), rsa_pem.crt);
    CHECK_STR(file_of(rsa, "key"), rsa_pem.key);
    CHECK(ec && hosts_are(ec, "b.example.com"));
    CHECK_STR(file_of(ec, "cert"), ec_pem.crt);
    CHECK_STR(file_of(ec, "key"), ec_pem.key);
    CHECK_INT(json_object_size(tls_files), 4);
    CHECK(redirects(doc, "a.example.com") && redirects(doc, "b.example.com"));
    CHECK(no_key_material(doc));

    /* Same input, same document and files (the writer skips unchanged ones). */
    char *first = json_dumps(doc, JSON_SORT_KEYS);
    json_t *files_before = json_deep_copy(tls_files);
    json_decref(doc);
    tls_begin();
    tls_secret("rsa-tls", &rsa_pem);
    secret("ec-tls", "kubernetes.io/tls", data);
    tls_ingress("rsa", "2024-01-01T00:00:00Z", "", "a.example.com",
                "[{'hosts':['A.example.com'],'secretName':'rsa-tls'}]");
    tls_ingress("ec", "2024-01-02T00:00:00Z", "", "b.example.com", "[{'secretName':'ec-tls'}]");
    doc = translate_tls();
    char *second = json_dumps(doc, JSON_SORT_KEYS);
    CHECK(first && second && strcmp(first, second) == 0);
    CHECK(json_equal(files_before, tls_files));
    free(first);
    free(second);
    json_decref(files_before);
    json_decref(doc);

    /* Without the out parameter the document is the same; nobody gets the bytes. */
    tls_begin();
    tls_secret("rsa-tls", &rsa_pem);
    tls_ingress("rsa", "2024-01-01T00:00:00Z", "", "a.example.com",
                "[{'hosts':['a.example.com'],'secretName':'rsa-tls'}]");
    json_t *objects = end();
    doc = translate_routes(objects, &options, NULL);
    CHECK(tls_entry(doc, "default/rsa-tls") != NULL);
    json_decref(objects);
    json_decref(doc);
}

/* One Ingress with a good Secret for good.example.com and one whose Secret (data given) is
 * refused: the refusal names both, its host keeps its routes without a certificate entry or
 * redirect, and the good one is untouched. */
static void check_refused(const char *type, const char *data, const char *reason)
{
    tls_begin();
    tls_secret("good-tls", &rsa_pem);
    if (data)
        secret("bad-tls", type, data);
    tls_ingress("good", "2024-01-01T00:00:00Z", "", "good.example.com",
                "[{'hosts':['good.example.com'],'secretName':'good-tls'}]");
    tls_ingress("bad", "2024-01-02T00:00:00Z", "", "bad.example.com",
                "[{'hosts':['bad.example.com'],'secretName':'bad-tls'}]");
    json_t *doc = translate_tls();
    CHECK(well_formed(doc));
    CHECK(diag_has("error: Ingress default/bad: spec.tls[0]: Secret default/bad-tls refused",
                   reason));
    CHECK(diag_has("Secret default/bad-tls", "host bad.example.com gets the default certificate"));
    CHECK_INT(num_errors, 1);
    CHECK(tls_entry(doc, "default/bad-tls") == NULL);
    CHECK(route(doc, "bad.example.com", "/") != NULL);
    CHECK(!redirects(doc, "bad.example.com"));
    CHECK(tls_entry(doc, "default/good-tls") != NULL);
    CHECK(redirects(doc, "good.example.com"));
    CHECK_INT(json_object_size(tls_files), 2);
    CHECK(no_key_material(doc));
    if (getenv("SHOW_DIAGS"))
        fprintf(stderr, "%s", diags);
    json_decref(doc);
}

static void test_tls_refused_secrets(void)
{
    char data[32768];
    check_refused(NULL, NULL, "not found");
    snprintf(data, sizeof data, "'data':{'tls.crt':'%s','tls.key':'%s'}", rsa_pem.crt64,
             rsa_pem.key64);
    check_refused("Opaque", data, "has type Opaque, not kubernetes.io/tls");
    check_refused(NULL, data, "has type Opaque (none given)");
    check_refused("kubernetes.io/tls", "'data':{'tls.crt':'abc'}", "not valid base64");
    snprintf(data, sizeof data, "'data':{'tls.crt':'%s','tls.key':'%s'}", rsa_pem.crt64,
             "LS0t LS0t");                                /* a space: not base64 */
    check_refused("kubernetes.io/tls", data, "data.tls.key is not valid base64");
    snprintf(data, sizeof data, "'data':{'tls.crt':'%.*s','tls.key':'%s'}",
             (int)strlen(rsa_pem.crt64) - 1, rsa_pem.crt64, rsa_pem.key64);   /* padding cut */
    check_refused("kubernetes.io/tls", data, "data.tls.crt is not valid base64");
    snprintf(data, sizeof data, "'data':{'tls.crt':'%s'}", rsa_pem.crt64);
    check_refused("kubernetes.io/tls", data, "has no tls.key");
    snprintf(data, sizeof data, "'data':{'tls.crt':'%s','tls.key':'%s'}", rsa_pem.crt64,
             other_rsa_pem.key64);
    check_refused("kubernetes.io/tls", data, "tls.key does not match the certificate");
    snprintf(data, sizeof data, "'data':{'tls.crt':'%s','tls.key':'%s'}", ec_pem.crt64,
             ec_pem.key64);
    int64_t saved = options.now;
    options.now = saved + 40 * 86400;                   /* after the 30 days they are valid */
    tls_begin();
    secret("late-tls", "kubernetes.io/tls", data);
    tls_ingress("late", "2024-01-01T00:00:00Z", "", "late.example.com",
                "[{'hosts':['late.example.com'],'secretName':'late-tls'}]");
    json_t *doc = translate_tls();
    CHECK(diag_has("Ingress default/late: spec.tls[0]: Secret default/late-tls refused",
                   "expired"));
    CHECK(tls_entry(doc, "default/late-tls") == NULL && !redirects(doc, "late.example.com"));
    CHECK(route(doc, "late.example.com", "/") != NULL);
    CHECK_INT(json_object_size(tls_files), 0);
    json_decref(doc);
    options.now = saved;

    /* Line breaks inside base64 are accepted, as the API server accepts them. */
    char wrapped[16384];
    size_t used = 0, len = strlen(rsa_pem.crt64);
    for (size_t i = 0; i < len; i += 64)
        used += (size_t)snprintf(wrapped + used, sizeof wrapped - used, "%.64s\\n",
                                 rsa_pem.crt64 + i);
    tls_begin();
    snprintf(data, sizeof data, "'data':{'tls.crt':'%s','tls.key':'%s'}", wrapped,
             rsa_pem.key64);
    secret("wrapped-tls", "kubernetes.io/tls", data);
    tls_ingress("w", "2024-01-01T00:00:00Z", "", "a.example.com",
                "[{'hosts':['a.example.com'],'secretName':'wrapped-tls'}]");
    doc = translate_tls();
    CHECK_STR(file_of(tls_entry(doc, "default/wrapped-tls"), "cert"), rsa_pem.crt);
    json_decref(doc);
}

static void test_tls_conflicts_and_hosts(void)
{
    /* Two Ingresses name a.example.com with different Secrets: the oldest wins. */
    tls_begin();
    tls_secret("new-tls", &ec_pem);
    tls_secret("old-tls", &rsa_pem);
    tls_ingress("newer", "2024-03-01T00:00:00Z", "", "a.example.com",
                "[{'hosts':['a.example.com','c.example.com'],'secretName':'new-tls'}]");
    tls_ingress("older", "2024-01-01T00:00:00Z", "", "a.example.com",
                "[{'hosts':['a.example.com'],'secretName':'old-tls'}]");
    json_t *doc = translate_tls();
    CHECK(hosts_are(tls_entry(doc, "default/old-tls"), "a.example.com"));
    CHECK(hosts_are(tls_entry(doc, "default/new-tls"), "c.example.com"));
    CHECK(diag_has("warning: Ingress default/newer: spec.tls[0]: host a.example.com already gets "
                   "its certificate from Secret default/old-tls", "Ingress default/older"));
    /* c.example.com is no rule's host: served by the certificate, but reported */
    CHECK(diag_has("warning: Ingress default/newer: spec.tls[0]: host c.example.com has no rule",
                   NULL));
    CHECK(host(doc, "c.example.com") == NULL);
    CHECK_INT(num_warnings, 3);              /* and the path / both Ingresses define */
    json_decref(doc);

    /* The same Secret through two Ingresses is no conflict; bad tls hosts are reported. */
    tls_begin();
    tls_secret("shared-tls", &rsa_pem);
    tls_ingress("one", "2024-01-01T00:00:00Z", "", "a.example.com",
                "[{'hosts':['a.example.com'],'secretName':'shared-tls'}]");
    tls_ingress("two", "2024-01-02T00:00:00Z", "", "*.example.com",
                "[{'hosts':['a.example.com','*.example.com','bad_host!',7],"
                "'secretName':'shared-tls'}]");
    doc = translate_tls();
    CHECK(hosts_are(find_by(json_object_get(doc, "tls"), "ingress", "default/one"),
                    "a.example.com"));
    CHECK(hosts_are(find_by(json_object_get(doc, "tls"), "ingress", "default/two"),
                    "*.example.com"));
    CHECK(diag_has("error: Ingress default/two: spec.tls[0]: hosts[2] \"bad_host!\"", NULL));
    CHECK(diag_has("error: Ingress default/two: spec.tls[0]: hosts[3]", "must be a string"));
    CHECK_INT(num_warnings, 0);
    CHECK(redirects(doc, "*.example.com") && redirects(doc, "a.example.com"));
    CHECK_INT(json_object_size(tls_files), 2);         /* one certificate, one key */
    json_decref(doc);

    /* Malformed tls sections are reported and change nothing else. */
    tls_begin();
    tls_ingress("x", "2024-01-01T00:00:00Z", "", "a.example.com", "{'secretName':'s'}");
    tls_ingress("y", "2024-01-02T00:00:00Z", "", "b.example.com",
                "[{'hosts':'b.example.com','secretName':'s'},{'secretName':'Bad/Name'},"
                "{'hosts':['b.example.com']}]");
    doc = translate_tls();
    CHECK(diag_has("error: Ingress default/x: spec.tls must be an array", NULL));
    CHECK(diag_has("error: Ingress default/y: spec.tls[0]: hosts must be an array", NULL));
    CHECK(diag_has("error: Ingress default/y: spec.tls[1]: secretName \"Bad/Name\"", NULL));
    CHECK_INT(num_errors, 3);                /* tls[2]: no secretName = the default certificate */
    CHECK(json_object_get(doc, "tls") == NULL);
    CHECK(route(doc, "a.example.com", "/") && route(doc, "b.example.com", "/"));
    CHECK(!redirects(doc, "b.example.com"));
    json_decref(doc);
}

#define NO_REDIRECT(key, value) ",'annotations':{'" key "':'" value "'}"

static void test_ssl_redirect_annotations(void)
{
    tls_begin();
    tls_secret("t", &rsa_pem);
    tls_ingress("on", "2024-01-01T00:00:00Z", "", "on.example.com",
                "[{'hosts':['on.example.com'],'secretName':'t'}]");
    tls_ingress("off", "2024-01-01T00:00:00Z",
                NO_REDIRECT("gatehouse.dev/ssl-redirect", "false"), "off.example.com",
                "[{'hosts':['off.example.com'],'secretName':'t'}]");
    tls_ingress("nginx-off", "2024-01-01T00:00:00Z",
                NO_REDIRECT("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
                "nginx.example.com", "[{'hosts':['nginx.example.com'],'secretName':'t'}]");
    tls_ingress("ours-win", "2024-01-01T00:00:00Z",
                ",'annotations':{'gatehouse.dev/ssl-redirect':'true',"
                "'nginx.ingress.kubernetes.io/ssl-redirect':'false'}",
                "win.example.com", "[{'hosts':['win.example.com'],'secretName':'t'}]");
    tls_ingress("junk", "2024-01-01T00:00:00Z",
                NO_REDIRECT("gatehouse.dev/ssl-redirect", "nope"), "junk.example.com",
                "[{'hosts':['junk.example.com'],'secretName':'t'}]");
    tls_ingress("plain", "2024-01-01T00:00:00Z", "", "plain.example.com", "[]");
    json_t *doc = translate_tls();
    CHECK(redirects(doc, "on.example.com"));
    CHECK(!redirects(doc, "off.example.com"));
    CHECK(!redirects(doc, "nginx.example.com"));
    CHECK(redirects(doc, "win.example.com"));
    CHECK(redirects(doc, "junk.example.com"));
    CHECK(diag_has("warning: Ingress default/junk: annotation gatehouse.dev/ssl-redirect \"nope\"",
                   NULL));
    CHECK(!redirects(doc, "plain.example.com"));
    CHECK(json_object_get(host(doc, "plain.example.com"), "sslRedirect") == NULL);
    /* the flag only turns redirects off: the certificate is still served */
    CHECK(hosts_are(find_by(json_object_get(doc, "tls"), "ingress", "default/on"),
                    "on.example.com"));
    CHECK(find_by(json_object_get(doc, "tls"), "ingress", "default/off") != NULL);
    json_decref(doc);

    /* A merged host: an Ingress adding a path there (an ACME solver, say) with redirects off
     * turns them off for the host, whichever is older. */
    tls_begin();
    tls_secret("t", &rsa_pem);
    tls_ingress("site", "2024-01-01T00:00:00Z", "", "a.example.com",
                "[{'hosts':['a.example.com'],'secretName':'t'}]");
    ingress("solver", "2024-02-01T00:00:00Z",
            NO_REDIRECT("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
            "{'ingressClassName':'gatehouse','rules':[{'host':'a.example.com','http':{'paths':["
            PATH("/.well-known/acme-challenge/x", "Exact", SVC("web", "{'number':80}")) "]}}]}");
    doc = translate_tls();
    CHECK(route(doc, "a.example.com", "/.well-known/acme-challenge/x") != NULL);
    CHECK(!redirects(doc, "a.example.com"));
    CHECK(tls_entry(doc, "default/t") != NULL);
    json_decref(doc);
}

/* Every node of a Secret and of an Ingress's tls section replaced by wrong types, as in
 * test_malformed_input: no crash, a well-formed document, every change reported. */
static void test_tls_malformed(void)
{
    char data[32768];
    tls_begin();
    snprintf(data, sizeof data, "'data':{'tls.crt':'%s'},'stringData':{'tls.key':'%s'}",
             ec_pem.crt64, escaped(ec_pem.key));
    secret("t", "kubernetes.io/tls", data);
    tls_ingress("x", "2024-01-01T00:00:00Z",
                NO_REDIRECT("nginx.ingress.kubernetes.io/ssl-redirect", "true"), "a.example.com",
                "[{'hosts':['a.example.com'],'secretName':'t'}]");
    json_t *root = end();
    reset_diags();
    json_t *doc = translate_routes(root, &options, NULL);
    char *baseline = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_INT(num_errors + num_warnings, 0);
    CHECK(redirects(doc, "a.example.com") && tls_entry(doc, "default/t"));
    json_decref(doc);
    size_t before = mutations;
    mutate_all(root, json_array_get(root, 3), baseline);          /* the Secret */
    mutate_all(root, json_array_get(root, 4), baseline);          /* the Ingress */
    CHECK(mutations - before > 50);
    CHECK_INT(mutations_silent, 0);
    free(baseline);
    json_decref(root);
}

static void test_tls(void)
{
    snprintf(tls_dir, sizeof tls_dir, "/tmp/test_translate_tls.XXXXXX");
    if (!mkdtemp(tls_dir) || make_pem("rsa", "rsa:2048", &rsa_pem) < 0 ||
        make_pem("ec", "ec -pkeyopt ec_paramgen_curve:P-256", &ec_pem) < 0 ||
        make_pem("other", "rsa:2048", &other_rsa_pem) < 0) {
        CHECK(!"openssl could make test keys and certificates");
        return;
    }
    options.now = (int64_t)time(NULL);
    test_tls_valid_secrets();
    test_tls_refused_secrets();
    test_tls_conflicts_and_hosts();
    test_ssl_redirect_annotations();
    test_tls_malformed();
    json_decref(tls_files);
    tls_files = NULL;
    temp_dir_remove(tls_dir);
}

int main(void)
{
    test_class_selection();
    test_ports_and_endpoints();
    test_not_ready_and_ipv6();
    test_no_endpoints();
    test_missing_service_and_port();
    test_external_name();
    test_resource_backend();
    test_merge_and_order();
    test_conflict_oldest_wins();
    test_default_backend();
    test_rejected_paths();
    test_hosts();
    test_ignored_objects();
    test_malformed_input();
    test_deterministic_at_scale();
    test_tls();
    return check_summary("test_translate");
}
