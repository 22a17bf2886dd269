/*
 * test_dns_records.c - the names to publish, from Kubernetes objects: rule, TLS and annotation
 * hosts of served Ingresses only, validation, TTLs (smallest wins), order independence; node
 * addresses; the TTL parser.
 */
#include "check.h"
#include "dns_records.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CONTROLLER "gatehouse.dev/ingress-controller"

struct diags {
    int count;
    char last[600];
};

static void collect(void *ctx, const char *severity, const char *msg)
{
    struct diags *d = ctx;
    d->count++;
    snprintf(d->last, sizeof d->last, "%s: %s", severity, msg);
}

static json_t *ingress_class(void)
{
    return json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "apiVersion", "networking.k8s.io/v1",
                     "kind", "IngressClass", "metadata", "name", "gatehouse", "spec",
                     "controller", CONTROLLER);
}

/* An Ingress with one rule per host (NULL-terminated), of class cls (NULL: none). */
static json_t *ingress(const char *name, const char *cls, const char *const *hosts)
{
    json_t *rules = json_array();
    for (size_t i = 0; hosts && hosts[i]; i++)
        json_array_append_new(rules, json_pack(
            "{s:s, s:{s:[{s:s, s:s, s:{s:{s:s, s:{s:i}}}}]}}", "host", hosts[i], "http", "paths",
            "path", "/", "pathType", "Prefix", "backend", "service", "name", "web", "port",
            "number", 80));
    json_t *spec = json_pack("{s:o}", "rules", rules);
    if (cls)
        json_object_set_new(spec, "ingressClassName", json_string(cls));
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:o}", "apiVersion", "networking.k8s.io/v1",
                     "kind", "Ingress", "metadata", "name", name, "namespace", "default",
                     "creationTimestamp", "2020-01-01T00:00:00Z", "spec", spec);
}

static void annotate(json_t *obj, const char *key, const char *value)
{
    json_t *meta = json_object_get(obj, "metadata");
    if (!json_object_get(meta, "annotations"))
        json_object_set_new(meta, "annotations", json_object());
    json_object_set_new(json_object_get(meta, "annotations"), key, json_string(value));
}

static void add_tls(json_t *obj, const char *const *hosts)
{
    json_t *list = json_array();
    for (size_t i = 0; hosts[i]; i++)
        json_array_append_new(list, json_string(hosts[i]));
    json_object_set_new(json_object_get(obj, "spec"), "tls",
                        json_pack("[{s:o, s:s}]", "hosts", list, "secretName", "cert"));
}

static struct dns_desired desired_of(json_t *objects, struct diags *d)
{
    struct translate_options opt = { .controller = CONTROLLER, .diag = collect, .diag_ctx = d };
    struct translate_options quiet = { .controller = CONTROLLER };
    json_t *served = translate_served_ingresses(objects, &quiet);
    struct dns_desired out;
    CHECK_INT(dns_desired_from_objects(objects, served, &opt, &out), 0);
    json_decref(served);
    return out;
}

static unsigned ttl_of(const struct dns_desired *d, const char *name)
{
    const struct dns_host *h = dns_desired_find(d, name);
    return h ? h->ttl : 999999;
}

static void test_hosts_from_rules_tls_and_annotation(void)
{
    struct diags d = { 0 };
    json_t *objects = json_array();
    json_array_append_new(objects, ingress_class());
    json_t *shop = ingress("shop", "gatehouse",
                           (const char *const[]){ "Shop.Example.com", "*.apps.example.com", NULL });
    add_tls(shop, (const char *const[]){ "secure.example.com", "shop.example.com", NULL });
    annotate(shop, DNS_RECORDS_HOSTNAME_ANNOTATION, " extra.example.com ,alias.example.com,,");
    json_array_append_new(objects, shop);
    /* not served: another class */
    json_array_append_new(objects, ingress("other", "nginx",
                                           (const char *const[]){ "nginx.example.com", NULL }));
    struct dns_desired out = desired_of(objects, &d);
    CHECK_INT(out.count, 5);
    const char *want[] = { "*.apps.example.com", "alias.example.com", "extra.example.com",
                           "secure.example.com", "shop.example.com" };
    for (size_t i = 0; i < 5 && i < out.count; i++) {
        CHECK_STR(out.names[i].name, want[i]);
        CHECK_INT(out.names[i].ttl, 0);
    }
    CHECK(dns_desired_find(&out, "nginx.example.com") == NULL);
    CHECK_INT(d.count, 0);
    dns_desired_free(&out);
    json_decref(objects);
}

static void test_bad_hosts_are_reported_and_skipped(void)
{
    struct diags d = { 0 };
    json_t *objects = json_array();
    json_array_append_new(objects, ingress_class());
    json_t *web = ingress("web", "gatehouse", (const char *const[]){ "ok.example.com", NULL });
    add_tls(web, (const char *const[]){ "bad host.example.com", NULL });
    json_array_append_new(objects, web);
    struct dns_desired out = desired_of(objects, &d);
    CHECK_INT(out.count, 1);
    CHECK_INT(d.count, 1);
    CHECK(strstr(d.last, "Ingress default/web") != NULL);
    CHECK(strstr(d.last, "bad host.example.com") != NULL);
    dns_desired_free(&out);
    json_decref(objects);

    static const char *const bad_annotations[] = {
        "1.2.3.4", "a..b", "*foo.example.com", "x.*.example.com", "-a.example.com",
        "a_b.example.com", "\x01.example.com",
    };
    for (size_t i = 0; i < sizeof bad_annotations / sizeof *bad_annotations; i++) {
        struct diags e = { 0 };
        objects = json_array();
        json_array_append_new(objects, ingress_class());
        web = ingress("web", "gatehouse", NULL);
        annotate(web, DNS_RECORDS_HOSTNAME_ANNOTATION, bad_annotations[i]);
        json_array_append_new(objects, web);
        out = desired_of(objects, &e);
        CHECK_INT(out.count, 0);
        CHECK_INT(e.count, 1);
        dns_desired_free(&out);
        json_decref(objects);
    }

    /* a 300-character name in the annotation */
    char long_name[301];
    memset(long_name, 'a', 300);
    long_name[300] = '\0';
    struct diags f = { 0 };
    objects = json_array();
    json_array_append_new(objects, ingress_class());
    web = ingress("web", "gatehouse", NULL);
    annotate(web, DNS_RECORDS_HOSTNAME_ANNOTATION, long_name);
    json_array_append_new(objects, web);
    out = desired_of(objects, &f);
    CHECK_INT(out.count, 0);
    CHECK_INT(f.count, 1);
    dns_desired_free(&out);
    json_decref(objects);
}

static void test_ttl_smallest_wins_in_any_order(void)
{
    for (int order = 0; order < 2; order++) {
        struct diags d = { 0 };
        json_t *objects = json_array();
        json_array_append_new(objects, ingress_class());
        json_t *a = ingress("a", "gatehouse", (const char *const[]){ "x.example.com", NULL });
        annotate(a, DNS_RECORDS_TTL_ANNOTATION, "5m");
        json_t *b = ingress("b", "gatehouse",
                            (const char *const[]){ "x.example.com", "y.example.com", NULL });
        annotate(b, DNS_RECORDS_TTL_ANNOTATION, "120");
        json_t *c = ingress("c", "gatehouse",
                            (const char *const[]){ "y.example.com", "z.example.com", NULL });
        json_array_append_new(objects, order ? b : a);
        json_array_append_new(objects, order ? a : b);
        json_array_append_new(objects, c);
        struct dns_desired out = desired_of(objects, &d);
        CHECK_INT(out.count, 3);
        CHECK_INT(ttl_of(&out, "x.example.com"), 120);
        CHECK_INT(ttl_of(&out, "y.example.com"), 120);   /* an explicit TTL beats the default */
        CHECK_INT(ttl_of(&out, "z.example.com"), 0);
        dns_desired_free(&out);
        json_decref(objects);
    }

    struct diags d = { 0 };
    json_t *objects = json_array();
    json_array_append_new(objects, ingress_class());
    json_t *a = ingress("a", "gatehouse", (const char *const[]){ "x.example.com", NULL });
    annotate(a, DNS_RECORDS_TTL_ANNOTATION, "soon");
    json_array_append_new(objects, a);
    struct dns_desired out = desired_of(objects, &d);
    CHECK_INT(ttl_of(&out, "x.example.com"), 0);
    CHECK_INT(d.count, 1);
    CHECK(strstr(d.last, DNS_RECORDS_TTL_ANNOTATION) != NULL);
    dns_desired_free(&out);
    json_decref(objects);
}

static void test_malformed_objects(void)
{
    struct diags d = { 0 };
    /* not an array, wrong shapes: no names, no crash */
    json_t *objects = json_string("nope");
    struct dns_desired out = desired_of(objects, &d);
    CHECK_INT(out.count, 0);
    dns_desired_free(&out);
    json_decref(objects);

    objects = json_array();
    json_array_append_new(objects, ingress_class());
    json_t *web = ingress("web", "gatehouse", (const char *const[]){ "ok.example.com", NULL });
    json_object_set_new(json_object_get(web, "spec"), "tls",
                        json_pack("[{s:[i, s]}, s, {s:s}]", "hosts", 7, "t.example.com", "x",
                                  "hosts", "notalist"));
    json_array_append_new(objects, web);
    json_array_append_new(objects, json_integer(3));
    out = desired_of(objects, &d);
    CHECK_INT(out.count, 2);
    CHECK(dns_desired_find(&out, "t.example.com") != NULL);
    CHECK(strstr(d.last, "must be a string") != NULL);
    struct dns_desired copy;
    CHECK_INT(dns_desired_copy(&out, &copy), 0);
    CHECK_INT(copy.count, 2);
    CHECK_STR(copy.names[1].name, "t.example.com");
    dns_desired_free(&copy);
    dns_desired_free(&out);
    CHECK(out.names == NULL && out.count == 0);
    json_decref(objects);
}

static void test_ttl_parse(void)
{
    unsigned t = 0;
    CHECK_INT(dns_ttl_parse("60", &t), 0);
    CHECK_INT(t, 60);
    CHECK_INT(dns_ttl_parse("1h30m", &t), 0);
    CHECK_INT(t, 5400);
    CHECK_INT(dns_ttl_parse("45s", &t), 0);
    CHECK_INT(t, 45);
    CHECK_INT(dns_ttl_parse("2147483647", &t), 0);
    static const char *const bad[] = { "", "0", "-5", "5x", "m", "1.5m", "2147483648",
                                       "99999999999999999999", "5 m", "5m3", "0s" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_INT(dns_ttl_parse(bad[i], &t), -1);
}

static void test_addresses(void)
{
    struct dns_address a[DNS_ADDRESSES_MAX];
    char err[200];
    CHECK_INT(dns_address_parse("192.0.2.10,2001:DB8::0:10,192.0.2.10", a, DNS_ADDRESSES_MAX,
                                err, sizeof err), 2);
    CHECK_INT(a[0].family, AF_INET);
    CHECK_STR(a[0].text, "192.0.2.10");
    CHECK_INT(a[1].family, AF_INET6);
    CHECK_STR(a[1].text, "2001:db8::10");
    CHECK_INT(dns_address_parse("192.0.2.300", a, DNS_ADDRESSES_MAX, err, sizeof err), -1);
    CHECK(strstr(err, "192.0.2.300") != NULL);
    CHECK_INT(dns_address_parse("192.0.2.1,,192.0.2.2", a, DNS_ADDRESSES_MAX, err, sizeof err), -1);
    CHECK_INT(dns_address_parse("host.example", a, DNS_ADDRESSES_MAX, err, sizeof err), -1);
    CHECK_INT(dns_address_parse("192.0.2.1,192.0.2.2", a, 1, err, sizeof err), -1);
    CHECK_INT(dns_address_parse("", a, DNS_ADDRESSES_MAX, err, sizeof err), 0);
}

int main(void)
{
    test_hosts_from_rules_tls_and_annotation();
    test_bad_hosts_are_reported_and_skipped();
    test_ttl_smallest_wins_in_any_order();
    test_malformed_objects();
    test_ttl_parse();
    test_addresses();
    return check_summary("test_dns_records");
}
