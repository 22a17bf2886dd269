/*
 * translate.c - Kubernetes objects -> the proxy's routes document (see translate.h).
 *
 * Three steps. Index: our IngressClasses; Services, EndpointSlices and Secrets by
 * "namespace/name" in jansson objects used as hash maps (10,000 of each must translate well
 * under a second); the Ingresses we serve, sorted oldest first. Build: walk those Ingresses in
 * that order, so the first to claim a host+path+type (or the default backend) keeps it and later
 * claimants are reported; a backend is resolved to endpoints once, the first time a kept route
 * needs it. Then walk them again for spec.tls, the same way: the first to claim a host's
 * certificate keeps it, and a Secret is checked the first time an Ingress names it (see
 * "certificates" below for the TLS and redirect rules). Emit: hosts, paths, backends and tls
 * entries in a fixed order, so unchanged input gives an identical document and the agent can
 * skip rewriting the file.
 *
 * Input objects are borrowed. Index maps take references on them (jansson counts atomically),
 * all dropped before returning, so the caller's tree is left as it was.
 */
#include "translate.h"

#include "log.h"

#include "ingress_validate.h"
#include "k8s_object.h"
#include "tls_files.h"
#include "tls_material.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEGACY_CLASS_ANNOTATION  "kubernetes.io/ingress.class"
#define DEFAULT_CLASS_ANNOTATION "ingressclass.kubernetes.io/is-default-class"
#define SERVICE_NAME_LABEL       "kubernetes.io/service-name"
#define SSL_REDIRECT_ANNOTATION  "gatehouse.dev/ssl-redirect"
#define NGINX_SSL_REDIRECT_ANNOTATION "nginx.ingress.kubernetes.io/ssl-redirect"
#define TLS_SECRET_TYPE          "kubernetes.io/tls"
#define RESOURCE_UNSUPPORTED     "resource backends are not supported"

#define KEY_MAX   (63 + 1 + DNS_NAME_MAX + 1)     /* "namespace/name" */
#define ID_MAX    (KEY_MAX + 64)                  /* "EndpointSlice namespace/name" */
#define WHERE_MAX (ID_MAX + 64)                   /* "Ingress ns/name: rule 3 path 7" */
#define ERR_MAX   512

/* ---- diagnostics ---- */

static void report(const struct translate_options *opt, const char *severity, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Names and values in messages come from the input: control characters are replaced so one
 * diagnostic stays one log line. */
static void report(const struct translate_options *opt, const char *severity, const char *fmt, ...)
{
    if (!opt->diag)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
    opt->diag(opt->diag_ctx, severity, msg);
}

#define report_error(opt, ...)   report(opt, "error", __VA_ARGS__)
#define report_warning(opt, ...) report(opt, "warning", __VA_ARGS__)

/* ---- the index ---- */

struct ingress {
    const json_t *spec;          /* NULL when the Ingress has none */
    const char *ns;
    const char *name;
    const char *class_name;      /* annotation or spec.ingressClassName; NULL = no class */
    const char *ssl_redirect;    /* the gatehouse.dev annotation, NULL when absent */
    const char *nginx_ssl_redirect;   /* the ingress-nginx one, for migrating users */
    int has_time;                /* creationTimestamp present and valid */
    struct k8s_time created;
    char key[KEY_MAX];           /* "namespace/name" */
};

struct index {
    const struct translate_options *opt;
    json_t *our_classes;         /* IngressClass name -> true, for classes we control */
    int have_default_class;
    json_t *services;            /* "ns/name" -> Service, or false when it was malformed */
    json_t *slices;              /* "ns/service" -> array of EndpointSlices */
    json_t *secrets;             /* "ns/name" -> Secret (checked only when an Ingress names it) */
    json_t *ingress_keys;        /* "ns/name" -> true: catches duplicates in a manifest dir */
    struct ingress *ingresses;   /* every well-formed Ingress, then only the served ones */
    size_t num_ingresses, cap_ingresses;
};

/* An object of one of our kinds, as read_object hands it to that kind's index function. */
struct object_ref {
    const json_t *json;
    struct k8s_meta meta;
    char id[ID_MAX];             /* "Service default/web", for messages */
    char key[KEY_MAX];           /* "default/web" (just the name when cluster-scoped) */
};

static int valid_port_number(long long port)
{
    return port >= 1 && port <= 65535;
}

static void index_class(struct index *ix, const struct object_ref *o)
{
    const json_t *spec = NULL;
    const char *controller = NULL;
    if (k8s_object(o->json, "spec", &spec) == K8S_WRONG_TYPE ||
        k8s_string(spec, "controller", &controller) == K8S_WRONG_TYPE) {
        report_error(ix->opt, "%s: spec.controller must be a string; class ignored", o->id);
        return;
    }
    if (!controller || !ix->opt->controller || strcmp(controller, ix->opt->controller) != 0)
        return;
    json_object_set_new(ix->our_classes, o->meta.name, json_true());
    const char *is_default = k8s_annotation(&o->meta, DEFAULT_CLASS_ANNOTATION);
    if (is_default && strcmp(is_default, "true") == 0)
        ix->have_default_class = 1;
}

/* The class an Ingress asks for. The legacy annotation wins over the field, as it does in
 * ingress-nginx, so that old manifests keep their meaning. Empty means no class. */
static int ingress_class_name(const struct object_ref *o, const json_t *spec, const char **out)
{
    const char *field = NULL;
    if (k8s_string(spec, "ingressClassName", &field) == K8S_WRONG_TYPE)
        return -1;
    const char *legacy = k8s_annotation(&o->meta, LEGACY_CLASS_ANNOTATION);
    *out = (legacy && *legacy) ? legacy : (field && *field) ? field : NULL;
    return 0;
}

static struct ingress *ingress_append(struct index *ix)
{
    if (ix->num_ingresses == ix->cap_ingresses) {
        size_t cap = ix->cap_ingresses ? ix->cap_ingresses * 2 : 64;
        struct ingress *grown = realloc(ix->ingresses, cap * sizeof *grown);
        if (!grown)
            return NULL;
        ix->ingresses = grown;
        ix->cap_ingresses = cap;
    }
    return &ix->ingresses[ix->num_ingresses++];
}

static void index_ingress(struct index *ix, const struct object_ref *o)
{
    const json_t *spec = NULL;
    const char *class_name = NULL;
    if (k8s_object(o->json, "spec", &spec) == K8S_WRONG_TYPE) {
        report_error(ix->opt, "%s: spec must be an object; Ingress ignored", o->id);
        return;
    }
    if (ingress_class_name(o, spec, &class_name) < 0) {
        report_error(ix->opt, "%s: spec.ingressClassName must be a string; Ingress ignored", o->id);
        return;
    }
    if (json_object_get(ix->ingress_keys, o->key)) {
        report_error(ix->opt, "%s: defined twice; the first definition is used", o->id);
        return;
    }
    struct ingress *ing = ingress_append(ix);
    if (!ing) {
        report_error(ix->opt, "%s: out of memory; Ingress ignored", o->id);
        return;
    }
    json_object_set_new(ix->ingress_keys, o->key, json_true());
    *ing = (struct ingress){ .spec = spec, .ns = o->meta.ns, .name = o->meta.name,
                             .class_name = class_name,
                             .ssl_redirect = k8s_annotation(&o->meta, SSL_REDIRECT_ANNOTATION),
                             .nginx_ssl_redirect = k8s_annotation(&o->meta,
                                                                  NGINX_SSL_REDIRECT_ANNOTATION) };
    snprintf(ing->key, sizeof ing->key, "%s", o->key);
    if (o->meta.created) {
        ing->has_time = k8s_time_parse(o->meta.created, &ing->created) == 0;
        if (!ing->has_time)
            report_warning(ix->opt, "%s: metadata.creationTimestamp \"%.64s\" is not an RFC 3339 "
                           "time; the Ingress counts as the newest", o->id, o->meta.created);
    }
}

/* Services and EndpointSlices are checked once, here, so that resolving a backend can trust
 * their shape; a malformed one is reported once and left out whole. The checks return 0, or -1
 * with the reason in err. */

/* A port of a Service (where = "spec.ports[0]") or of an EndpointSlice ("ports[0]"); only a
 * Service port must carry a number (a slice port without one means "all ports"). */
static int check_port(const json_t *port, const char *where, int number_required, char *err,
                      size_t errlen)
{
    long long number = 0;
    const char *name = NULL, *protocol = NULL;
    if (!json_is_object(port))
        return set_err(err, errlen, "%s must be an object, got %s", where, k8s_type_name(port));
    enum k8s_field state = k8s_integer(port, "port", &number);
    if (state == K8S_WRONG_TYPE || (state == K8S_ABSENT && number_required) ||
        (state == K8S_PRESENT && !valid_port_number(number)))
        return set_err(err, errlen, "%s.port must be an integer in 1..65535", where);
    if (k8s_string(port, "name", &name) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "%s.name must be a string", where);
    if (k8s_string(port, "protocol", &protocol) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "%s.protocol must be a string", where);
    return 0;
}

static int check_ports(const json_t *ports, const char *prefix, int number_required, char *err,
                       size_t errlen)
{
    const json_t *port;
    size_t i;
    json_array_foreach(ports, i, port) {
        char where[32];
        snprintf(where, sizeof where, "%sports[%zu]", prefix, i);
        if (check_port(port, where, number_required, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static const char *external_name_problem(const char *name)
{
    char copy[DNS_NAME_MAX + 2];
    size_t len = strlen(name);
    if (len > DNS_NAME_MAX + 1)
        return "is longer than 253 characters";
    memcpy(copy, name, len + 1);
    if (len > 1 && copy[len - 1] == '.')
        copy[len - 1] = '\0';                 /* a fully qualified name is fine */
    return dns_subdomain_problem(copy);
}

static int check_service(const json_t *service, char *err, size_t errlen)
{
    const json_t *spec = NULL, *ports = NULL;
    const char *type = NULL, *external = NULL, *why;
    enum k8s_field has_spec = k8s_object(service, "spec", &spec);
    if (has_spec != K8S_PRESENT)
        return set_err(err, errlen, has_spec == K8S_ABSENT ? "spec is missing"
                                                         : "spec must be an object");
    if (k8s_string(spec, "type", &type) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "spec.type must be a string");
    if (k8s_array(spec, "ports", &ports) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "spec.ports must be an array");
    if (k8s_string(spec, "externalName", &external) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "spec.externalName must be a string");
    if (check_ports(ports, "spec.", 1, err, errlen) < 0)
        return -1;
    if (type && strcmp(type, "ExternalName") == 0) {
        if (!external)
            return set_err(err, errlen, "spec.externalName is missing (type ExternalName)");
        if ((why = external_name_problem(external)))
            return set_err(err, errlen, "spec.externalName \"%.64s\" %s", external, why);
    }
    return 0;
}

static void index_service(struct index *ix, const struct object_ref *o)
{
    char err[ERR_MAX];
    if (json_object_get(ix->services, o->key)) {
        report_error(ix->opt, "%s: defined twice; the first definition is used", o->id);
        return;
    }
    int bad = check_service(o->json, err, sizeof err) < 0;
    if (bad)
        report_error(ix->opt, "%s: %s; Service ignored", o->id, err);
    json_object_set_new(ix->services, o->key, bad ? json_false() : json_incref((json_t *)o->json));
}

static const char *address_problem(const char *type, const char *address)
{
    unsigned char buf[16];
    if (strcmp(type, "IPv4") == 0)
        return inet_pton(AF_INET, address, buf) == 1 ? NULL : "is not an IPv4 address";
    if (strcmp(type, "IPv6") == 0)
        return inet_pton(AF_INET6, address, buf) == 1 ? NULL : "is not an IPv6 address";
    return dns_subdomain_problem(address);
}

static int check_slice_endpoint(const char *type, const json_t *endpoint, size_t i, char *err,
                                size_t errlen)
{
    const json_t *addresses = NULL, *conditions = NULL, *address;
    const char *why;
    int ready;
    size_t j;
    if (!json_is_object(endpoint))
        return set_err(err, errlen, "endpoints[%zu] must be an object, got %s", i,
                    k8s_type_name(endpoint));
    if (k8s_array(endpoint, "addresses", &addresses) != K8S_PRESENT)
        return set_err(err, errlen, "endpoints[%zu].addresses must be an array", i);
    if (k8s_object(endpoint, "conditions", &conditions) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "endpoints[%zu].conditions must be an object", i);
    if (k8s_boolean(conditions, "ready", &ready) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "endpoints[%zu].conditions.ready must be a boolean", i);
    json_array_foreach(addresses, j, address) {
        if (!json_is_string(address))
            return set_err(err, errlen, "endpoints[%zu].addresses[%zu] must be a string, got %s",
                           i, j, k8s_type_name(address));
        if ((why = address_problem(type, json_string_value(address))))
            return set_err(err, errlen,
                           "endpoints[%zu].addresses[%zu] \"%.64s\" %s (addressType %s)",
                           i, j, json_string_value(address), why, type);
    }
    return 0;
}

static int check_slice(const json_t *slice, char *err, size_t errlen)
{
    const char *type = NULL;
    const json_t *ports = NULL, *endpoints = NULL, *endpoint;
    size_t i;
    if (k8s_string(slice, "addressType", &type) != K8S_PRESENT ||
        (strcmp(type, "IPv4") && strcmp(type, "IPv6") && strcmp(type, "FQDN")))
        return set_err(err, errlen, "addressType must be IPv4, IPv6 or FQDN");
    if (k8s_array(slice, "ports", &ports) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "ports must be an array");
    if (k8s_array(slice, "endpoints", &endpoints) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "endpoints must be an array");
    if (check_ports(ports, "", 0, err, errlen) < 0)
        return -1;
    json_array_foreach(endpoints, i, endpoint) {
        if (check_slice_endpoint(type, endpoint, i, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static void index_slice(struct index *ix, const struct object_ref *o)
{
    const char *service = k8s_label(&o->meta, SERVICE_NAME_LABEL), *why;
    char key[KEY_MAX], err[ERR_MAX];
    if (!service)
        return;                   /* not tied to a Service: nothing routes to it */
    if ((why = dns1035_label_problem(service))) {
        report_error(ix->opt, "%s: label %s \"%.64s\" %s; EndpointSlice ignored", o->id,
                     SERVICE_NAME_LABEL, service, why);
        return;
    }
    if (check_slice(o->json, err, sizeof err) < 0) {
        report_error(ix->opt, "%s: %s; EndpointSlice ignored", o->id, err);
        return;
    }
    snprintf(key, sizeof key, "%s/%s", o->meta.ns, service);
    json_t *list = json_object_get(ix->slices, key);
    if (!list) {
        list = json_array();
        json_object_set_new(ix->slices, key, list);
    }
    json_array_append(list, (json_t *)o->json);
}

/* Secrets are many and mostly not ours (service-account tokens, app config): they are only
 * looked at when an Ingress names one, so nothing is reported about the others. */
static void index_secret(struct index *ix, const struct object_ref *o)
{
    if (json_object_get(ix->secrets, o->key)) {
        report_error(ix->opt, "%s: defined twice; the first definition is used", o->id);
        return;
    }
    json_object_set(ix->secrets, o->key, (json_t *)o->json);
}

struct kind {
    const char *kind;
    const char *api_version;
    int namespaced;
    const char *(*name_problem)(const char *name);
    void (*index)(struct index *ix, const struct object_ref *o);
};

static const struct kind kinds[] = {
    { "IngressClass",  "networking.k8s.io/v1", 0, dns_subdomain_problem,  index_class },
    { "Ingress",       "networking.k8s.io/v1", 1, dns_subdomain_problem,  index_ingress },
    { "Service",       "v1",                   1, dns1035_label_problem,  index_service },
    { "EndpointSlice", "discovery.k8s.io/v1",  1, dns_subdomain_problem,  index_slice },
    { "Secret",        "v1",                   1, dns_subdomain_problem,  index_secret },
};

static const struct kind *find_kind(const char *name)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(kinds[i].kind, name) == 0)
            return &kinds[i];
    }
    return NULL;
}

/* Reads kind, apiVersion and metadata; fills o and returns its kind, or NULL when the object
 * is none of ours, is being deleted, or is malformed (reported). */
static const struct kind *read_object(struct index *ix, size_t i, const json_t *json,
                                      struct object_ref *o)
{
    char err[ERR_MAX];
    const char *kind_name = NULL, *why;
    if (k8s_string(json, "kind", &kind_name) == K8S_PRESENT && !find_kind(kind_name))
        return NULL;              /* another kind: not our business */
    o->json = json;
    if (k8s_meta_read(json, &o->meta, err, sizeof err) < 0) {
        /* the name, when it could be read, tells the user which object to look at */
        report_error(ix->opt, "objects[%zu]%s%.40s%s%.253s: %s; ignored", i, kind_name ? " " : "",
                     kind_name ? kind_name : "", o->meta.name ? " " : "",
                     o->meta.name ? o->meta.name : "", err);
        return NULL;
    }
    const struct kind *k = find_kind(o->meta.kind);
    if (k->namespaced && !o->meta.ns)
        o->meta.ns = "default";   /* as kubectl does for manifests that name none */
    snprintf(o->id, sizeof o->id, "%s %.63s%s%.253s", k->kind, k->namespaced ? o->meta.ns : "",
             k->namespaced ? "/" : "", o->meta.name);
    if (o->meta.deleting)
        return NULL;
    if (strcmp(o->meta.api_version, k->api_version) != 0) {
        report_warning(ix->opt, "%s: apiVersion %.64s is not supported (want %s); ignored", o->id,
                       o->meta.api_version, k->api_version);
        return NULL;
    }
    if ((why = k->name_problem(o->meta.name)) ||
        (k->namespaced && (why = dns_label_problem(o->meta.ns)))) {
        report_error(ix->opt, "%s: metadata.%s %s; ignored", o->id,
                     k->name_problem(o->meta.name) ? "name" : "namespace", why);
        return NULL;
    }
    snprintf(o->key, sizeof o->key, "%s%s%s", k->namespaced ? o->meta.ns : "",
             k->namespaced ? "/" : "", o->meta.name);
    return k;
}

static int ingress_is_served(const struct index *ix, const struct ingress *ing)
{
    if (ing->class_name)
        return json_object_get(ix->our_classes, ing->class_name) != NULL;
    return ix->have_default_class || ix->opt->watch_without_class;
}

/* Oldest first; Ingresses without a usable timestamp after all others; then by namespace and
 * name. A total order, so the outcome never depends on the input's order. */
static int compare_ingress_age(const void *pa, const void *pb)
{
    const struct ingress *a = pa, *b = pb;
    if (a->has_time != b->has_time)
        return a->has_time ? -1 : 1;
    int c = a->has_time ? k8s_time_compare(&a->created, &b->created) : 0;
    if (!c)
        c = strcmp(a->ns, b->ns);
    return c ? c : strcmp(a->name, b->name);
}

static void index_build(struct index *ix, const json_t *objects,
                        const struct translate_options *opt)
{
    static const struct translate_options no_options;
    *ix = (struct index){ .opt = opt ? opt : &no_options, .our_classes = json_object(),
                          .services = json_object(), .slices = json_object(),
                          .secrets = json_object(), .ingress_keys = json_object() };
    if (!json_is_array(objects)) {
        report_error(ix->opt, "objects must be an array of Kubernetes objects, got %s",
                     k8s_type_name(objects));
        return;
    }
    size_t i;
    const json_t *json;
    json_array_foreach(objects, i, json) {
        struct object_ref o;
        const struct kind *k = read_object(ix, i, json, &o);
        if (k)
            k->index(ix, &o);
    }
    size_t kept = 0;
    for (i = 0; i < ix->num_ingresses; i++) {
        if (ingress_is_served(ix, &ix->ingresses[i]))
            ix->ingresses[kept++] = ix->ingresses[i];
    }
    ix->num_ingresses = kept;
    if (kept > 1)
        qsort(ix->ingresses, kept, sizeof ix->ingresses[0], compare_ingress_age);
}

static void index_free(struct index *ix)
{
    json_decref(ix->our_classes);
    json_decref(ix->services);
    json_decref(ix->slices);
    json_decref(ix->secrets);
    json_decref(ix->ingress_keys);
    free(ix->ingresses);
}

/* ---- endpoints ---- */

static const json_t *find_service_port(const json_t *spec, long long number, const char *name)
{
    const json_t *ports = NULL, *port;
    size_t i;
    k8s_array(spec, "ports", &ports);
    json_array_foreach(ports, i, port) {
        long long p = 0;
        const char *n = NULL;
        k8s_integer(port, "port", &p);
        k8s_string(port, "name", &n);
        if (name ? (n && strcmp(n, name) == 0) : p == number)
            return port;
    }
    return NULL;
}

/* The target port of a slice for the ServicePort named service_port_name ("" when unnamed). */
static long long slice_target_port(const json_t *slice, const char *service_port_name)
{
    const json_t *ports = NULL, *port;
    size_t i;
    k8s_array(slice, "ports", &ports);
    json_array_foreach(ports, i, port) {
        const char *name = NULL;
        long long number = 0;
        k8s_string(port, "name", &name);
        if (strcmp(name ? name : "", service_port_name) == 0 &&
            k8s_integer(port, "port", &number) == K8S_PRESENT)
            return number;
    }
    return 0;
}

/* "10.0.0.1:80", "[fd00::1]:80", "db.example.com:5432": addresses are re-printed in canonical
 * form so that two spellings of one address count once. */
static void format_endpoint(const char *type, const char *address, long long port, char *out,
                            size_t outlen)
{
    unsigned char buf[16];
    char text[INET6_ADDRSTRLEN];
    int family = strcmp(type, "IPv4") == 0 ? AF_INET : strcmp(type, "IPv6") == 0 ? AF_INET6 : 0;
    if (family && inet_pton(family, address, buf) == 1 && inet_ntop(family, buf, text, sizeof text))
        address = text;
    snprintf(out, outlen, family == AF_INET6 ? "[%s]:%lld" : "%s:%lld", address, port);
}

static int endpoint_is_ready(const json_t *endpoint)
{
    const json_t *conditions = NULL;
    int ready = 1;                          /* absent means ready (API convention) */
    k8s_object(endpoint, "conditions", &conditions);
    k8s_boolean(conditions, "ready", &ready);
    return ready;
}

static void add_slice_endpoints(const json_t *slice, const char *service_port_name, json_t *set)
{
    const char *type = NULL;
    const json_t *endpoints = NULL, *endpoint, *addresses, *address;
    size_t i, j;
    long long port = slice_target_port(slice, service_port_name);
    if (!port || k8s_string(slice, "addressType", &type) != K8S_PRESENT)
        return;
    k8s_array(slice, "endpoints", &endpoints);
    json_array_foreach(endpoints, i, endpoint) {
        addresses = NULL;
        if (!endpoint_is_ready(endpoint) ||
            k8s_array(endpoint, "addresses", &addresses) != K8S_PRESENT)
            continue;
        json_array_foreach(addresses, j, address) {
            char text[DNS_NAME_MAX + 16];
            if (!json_is_string(address))
                continue;
            format_endpoint(type, json_string_value(address), port, text, sizeof text);
            json_object_set_new(set, text, json_true());
        }
    }
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of a json object, sorted; a malloc'd array the caller frees (NULL when empty). */
static const char **sorted_keys(json_t *obj, size_t *count)
{
    size_t n = json_object_size(obj), i = 0;
    const char **keys = n ? malloc(n * sizeof *keys) : NULL;
    const char *key;
    json_t *value;
    *count = 0;
    if (!keys)
        return NULL;
    json_object_foreach(obj, key, value)
        keys[i++] = key;
    qsort(keys, n, sizeof *keys, compare_strings);
    *count = n;
    return keys;
}

static json_t *sorted_key_array(json_t *set)
{
    size_t n;
    const char **keys = sorted_keys(set, &n);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_string(keys[i]));
    free(keys);
    return list;
}

static json_t *slice_endpoints(const struct index *ix, const char *service_key,
                               const json_t *service_port)
{
    const char *port_name = NULL;
    const json_t *slice;
    size_t i;
    json_t *set = json_object();
    k8s_string(service_port, "name", &port_name);
    json_array_foreach(json_object_get(ix->slices, service_key), i, slice)
        add_slice_endpoints(slice, port_name ? port_name : "", set);
    json_t *list = sorted_key_array(set);
    json_decref(set);
    return list;
}

static json_t *external_name_endpoints(const json_t *spec, long long port)
{
    const char *name = NULL;
    char text[DNS_NAME_MAX + 16];
    json_t *list = json_array();
    if (k8s_string(spec, "externalName", &name) != K8S_PRESENT)
        return list;                        /* check_service made sure it is there */
    size_t len = strlen(name);
    if (len > 1 && name[len - 1] == '.')
        len--;                              /* the proxy resolves the bare name */
    snprintf(text, sizeof text, "%.*s:%lld", (int)len, name, port);
    json_array_append_new(list, json_string(text));
    return list;
}

/* Endpoints of Service ns/name at a port given by number (port_name NULL) or by name. NULL
 * with a reason in err when the Service or the port does not exist. */
static json_t *service_endpoints(const struct index *ix, const char *ns, const char *name,
                                 long long number, const char *port_name, char *err, size_t errlen)
{
    char key[KEY_MAX];
    const char *type = NULL;
    snprintf(key, sizeof key, "%s/%s", ns, name);
    const json_t *service = json_object_get(ix->services, key);
    if (!service || !json_is_object(service)) {
        snprintf(err, errlen, service ? "service %s is malformed (reported above)"
                                      : "service %s not found", key);
        return NULL;
    }
    const json_t *spec = json_object_get(service, "spec");
    const json_t *port = find_service_port(spec, number, port_name);
    k8s_string(spec, "type", &type);
    int external = type && strcmp(type, "ExternalName") == 0;
    if (!port && !(external && !port_name)) {
        if (port_name)
            snprintf(err, errlen, "service %s has no port named \"%s\"", key, port_name);
        else
            snprintf(err, errlen, "service %s has no port %lld", key, number);
        return NULL;
    }
    if (external) {
        if (port)
            k8s_integer(port, "port", &number);
        return external_name_endpoints(spec, number);
    }
    return slice_endpoints(ix, key, port);
}

/* ---- building the routes ---- */

struct builder {
    const struct index *ix;
    const struct translate_options *opt;
    json_t *hosts;               /* host -> object: "Type path" -> route */
    json_t *backends;            /* backend name -> backend */
    const char *default_backend; /* a key of backends */
    const struct ingress *default_owner;
    json_t *redirect_off;        /* host -> first Ingress with paths there refusing sslRedirect */
    json_t *certs;               /* "ns/secret" -> {cert, key} file names, or {error} */
    json_t *pems;                /* file name -> content, for every Secret that passed */
    json_t *cert_owner;          /* host -> {where, ingress, secret, cert}: its first tls entry */
    json_t *tls_entries;         /* the routes file's tls entries, oldest Ingress first */
};

/* ---- certificates (spec.tls) ----
 *
 * What ingress-nginx users expect, in the routes file's terms:
 * - Each spec.tls entry names a Secret of type kubernetes.io/tls in the Ingress's namespace.
 *   Its tls.crt (the chain, leaf first) and tls.key, from data (base64) or stringData (as
 *   written in manifests; kubectl would convert it), are checked with tls_material_parse at
 *   opt->now. A Secret that is missing, of another type, undecodable, whose key does not match,
 *   or expired is reported naming the Ingress and the Secret, and its hosts get the proxy's
 *   default certificate; nothing else changes. Each Secret is checked once per translation.
 * - hosts are the names the certificate serves (SNI). The API documents an empty list as "the
 *   wildcard host setting of the controller"; here that means the Ingress's own rule hosts.
 *   An entry without secretName asks for the default certificate: it claims no host.
 * - A host named by several Ingresses keeps the oldest one's Secret, even when that Secret is
 *   refused (as with paths, which Ingress wins never depends on what a Secret holds); the
 *   others are reported unless they name the same certificate.
 * - sslRedirect (plain HTTP -> 308 to https) is set on a host entry when a valid certificate
 *   serves exactly that host, unless an Ingress owning any of the entry's paths says "false"
 *   in gatehouse.dev/ssl-redirect or, failing that, nginx.ingress.kubernetes.io/ssl-redirect.
 *   ingress-nginx decides per path; the routes file has one flag per host, so one Ingress
 *   opting out turns it off for the whole host: whoever asks for plain HTTP (typically an ACME
 *   http-01 solver) keeps getting it, and the host still serves HTTPS.
 *
 * Certificate and key bytes never enter the document or a message: the document names files by
 * content hash and the bytes go out through the separate tls_files object.
 */

/* An annotation value as Go's strconv.ParseBool reads it (what ingress-nginx uses). */
static int annotation_bool(const char *value, int *out)
{
    static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
    static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(value, yes[i]) == 0 || strcmp(value, no[i]) == 0) {
            *out = strcmp(value, yes[i]) == 0;
            return 0;
        }
    }
    return -1;
}

static int ssl_redirect_wanted(const struct ingress *ing)
{
    int on;
    if (ing->ssl_redirect && annotation_bool(ing->ssl_redirect, &on) == 0)
        return on;
    if (ing->nginx_ssl_redirect && annotation_bool(ing->nginx_ssl_redirect, &on) == 0)
        return on;
    return 1;
}

static void check_redirect_annotations(struct builder *b, const struct ingress *ing)
{
    int on;
    if (ing->ssl_redirect && annotation_bool(ing->ssl_redirect, &on) < 0)
        report_warning(b->opt, "Ingress %s: annotation " SSL_REDIRECT_ANNOTATION " \"%.64s\" is "
                       "not true or false; ignored", ing->key, ing->ssl_redirect);
    if (ing->nginx_ssl_redirect && annotation_bool(ing->nginx_ssl_redirect, &on) < 0)
        report_warning(b->opt, "Ingress %s: annotation " NGINX_SSL_REDIRECT_ANNOTATION " \"%.64s\" "
                       "is not true or false; ignored", ing->key, ing->nginx_ssl_redirect);
}

static int base64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 exactly as the API server accepts Secret data (Go's StdEncoding): padding
 * required, CR and LF skipped, anything else - other whitespace, URL-safe letters, text after
 * the padding - refused. out needs room for len / 4 * 3 bytes. Returns the length, or -1. */
static long base64_decode(const char *in, size_t len, unsigned char *out)
{
    unsigned quad[4];
    size_t have = 0, padding = 0, used = 0;
    for (size_t i = 0; i < len; i++) {
        int v = in[i] == '=' ? 0 : base64_value(in[i]);
        if (in[i] == '\r' || in[i] == '\n')
            continue;
        if (v < 0 || (padding && in[i] != '=') || (in[i] == '=' && have < 2) ||
            (padding && have == 0))
            return -1;
        padding += in[i] == '=';
        quad[have++] = (unsigned)v;
        if (have < 4)
            continue;
        out[used++] = (unsigned char)(quad[0] << 2 | quad[1] >> 4);
        if (padding < 2)
            out[used++] = (unsigned char)(quad[1] << 4 | quad[2] >> 2);
        if (padding < 1)
            out[used++] = (unsigned char)(quad[2] << 6 | quad[3]);
        have = 0;
    }
    return have == 0 ? (long)used : -1;
}

static void wipe_free(unsigned char *p, size_t len)
{
    if (p)
        explicit_bzero(p, len);
    free(p);
}

/* A Secret's field ("tls.crt"), from stringData (which wins, as the API server merges it over
 * data) or base64 data. *out is malloc'd; 0, or -1 with the reason in err. */
static int secret_value(const json_t *secret, const char *field, unsigned char **out,
                        size_t *len, char *err, size_t errlen)
{
    const json_t *string_data = NULL, *data = NULL;
    const char *text = NULL;
    if (k8s_object(secret, "stringData", &string_data) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "stringData must be an object");
    if (k8s_object(secret, "data", &data) == K8S_WRONG_TYPE)
        return set_err(err, errlen, "data must be an object");
    enum k8s_field plain = k8s_string(string_data, field, &text);
    if (plain == K8S_WRONG_TYPE)
        return set_err(err, errlen, "stringData.%s must be a string", field);
    if (plain == K8S_PRESENT) {
        *len = strlen(text);
        if (!(*out = malloc(*len + 1)))
            return set_err(err, errlen, "out of memory");
        memcpy(*out, text, *len + 1);
        return 0;
    }
    enum k8s_field encoded = k8s_string(data, field, &text);
    if (encoded != K8S_PRESENT)
        return set_err(err, errlen,
                       encoded == K8S_ABSENT ? "has no %s" : "data.%s must be a string", field);
    size_t room = strlen(text) / 4 * 3 + 1;
    if (!(*out = malloc(room)))
        return set_err(err, errlen, "out of memory");
    long decoded = base64_decode(text, strlen(text), *out);
    if (decoded < 0) {
        wipe_free(*out, room);
        *out = NULL;
        return set_err(err, errlen, "data.%s is not valid base64", field);
    }
    *len = (size_t)decoded;
    return 0;
}

/* Names the two files and keeps their bytes in b->pems. Returns {cert, key} (file names). */
static json_t *remember_files(struct builder *b, const unsigned char *cert, size_t cert_len,
                              const unsigned char *key, size_t key_len)
{
    char cert_name[TLS_FILE_KEY_MAX], key_name[TLS_FILE_KEY_MAX];
    tls_files_name(cert, cert_len, "crt", cert_name);
    tls_files_name(key, key_len, "key", key_name);
    json_object_set_new(b->pems, cert_name, json_stringn_nocheck((const char *)cert, cert_len));
    json_object_set_new(b->pems, key_name, json_stringn_nocheck((const char *)key, key_len));
    return json_pack("{s:s, s:s}", "cert", cert_name, "key", key_name);
}

/* Checks Secret key ("ns/name"): {cert, key} file names, or {error: reason}. */
static json_t *check_secret(struct builder *b, const char *key)
{
    char err[ERR_MAX];
    const json_t *secret = json_object_get(b->ix->secrets, key);
    const char *type = NULL;
    unsigned char *cert = NULL, *tls_key = NULL;
    size_t cert_len = 0, key_len = 0;
    json_t *result = NULL;
    enum k8s_field has_type = secret ? k8s_string(secret, "type", &type) : K8S_ABSENT;
    if (!secret)
        snprintf(err, sizeof err, "not found");
    else if (has_type == K8S_WRONG_TYPE)
        snprintf(err, sizeof err, "type must be a string");
    else if (!type || strcmp(type, TLS_SECRET_TYPE) != 0)
        snprintf(err, sizeof err, "has type %.64s, not " TLS_SECRET_TYPE,
                 type ? type : "Opaque (none given)");
    else if (secret_value(secret, "tls.crt", &cert, &cert_len, err, sizeof err) == 0 &&
             secret_value(secret, "tls.key", &tls_key, &key_len, err, sizeof err) == 0) {
        struct tls_material material = {0};
        if (tls_material_parse((const char *)cert, cert_len, (const char *)tls_key, key_len,
                               b->opt->now, &material, err, sizeof err) == 0)
            result = remember_files(b, cert, cert_len, tls_key, key_len);
        tls_material_free(&material);
    }
    wipe_free(cert, cert_len);
    wipe_free(tls_key, key_len);
    return result ? result : json_pack("{s:s}", "error", err);
}

/* The checked certificate of Secret key, or NULL with the reason in err. */
static const json_t *secret_certificate(struct builder *b, const char *key, char *err,
                                        size_t errlen)
{
    json_t *cached = json_object_get(b->certs, key);
    if (!cached) {
        cached = check_secret(b, key);
        json_object_set_new(b->certs, key, cached);
    }
    const char *error = json_string_value(json_object_get(cached, "error"));
    if (error) {
        snprintf(err, errlen, "%s", error);
        return NULL;
    }
    return cached;
}

static void add_host_once(json_t *hosts, const char *host)
{
    size_t i;
    const json_t *h;
    json_array_foreach(hosts, i, h) {
        if (strcmp(json_string_value(h), host) == 0)
            return;
    }
    json_array_append_new(hosts, json_string(host));
}

/* The hosts of the Ingress's rules, when a tls entry lists none (the errors in them are
 * reported with the rules). */
static void add_rule_hosts(const struct ingress *ing, json_t *names)
{
    const json_t *rules = NULL, *rule;
    size_t i;
    k8s_array(ing->spec, "rules", &rules);
    json_array_foreach(rules, i, rule) {
        const char *host = NULL;
        char lower[DNS_NAME_MAX + 1];
        if (json_is_object(rule) && k8s_string(rule, "host", &host) == K8S_PRESENT && *host &&
            !ingress_host_problem(host, lower, sizeof lower))
            add_host_once(names, lower);
    }
}

/* The names a tls entry serves: validated, lower case, each once, in the order given. */
static json_t *tls_entry_hosts(struct builder *b, const struct ingress *ing, const char *where,
                               const json_t *hosts)
{
    json_t *names = json_array();
    const json_t *host;
    size_t i;
    if (json_array_size(hosts) == 0)
        add_rule_hosts(ing, names);
    json_array_foreach(hosts, i, host) {
        char lower[DNS_NAME_MAX + 1];
        const char *why = !json_is_string(host) ? "must be a string"
                          : ingress_host_problem(json_string_value(host), lower, sizeof lower);
        if (why)
            report_error(b->opt, "%s: hosts[%zu] \"%.253s\" %s; ignored", where, i,
                         json_is_string(host) ? json_string_value(host) : "", why);
        else
            add_host_once(names, lower);
    }
    return names;
}

/* Gives each still unclaimed name to this Secret (cert NULL: refused); returns those it got. */
static json_t *claim_hosts(struct builder *b, const struct ingress *ing, const char *where,
                           const char *secret_key, const json_t *cert, const json_t *names)
{
    json_t *claimed = json_array();
    const char *cert_name = cert ? json_string_value(json_object_get(cert, "cert")) : NULL;
    const json_t *name;
    size_t i;
    json_array_foreach(names, i, name) {
        const char *host = json_string_value(name);
        const json_t *owner = json_object_get(b->cert_owner, host);
        if (!owner) {
            json_object_set_new(b->cert_owner, host,
                                json_pack("{s:s, s:s, s:s, s:s?}", "where", where,
                                          "ingress", ing->key, "secret", secret_key,
                                          "cert", cert_name));
            json_array_append(claimed, (json_t *)name);
            continue;
        }
        const char *owner_secret = json_string_value(json_object_get(owner, "secret"));
        const char *owner_cert = json_string_value(json_object_get(owner, "cert"));
        const char *owner_ingress = json_string_value(json_object_get(owner, "ingress"));
        if (strcmp(owner_secret, secret_key) == 0 ||
            (cert_name && owner_cert && strcmp(cert_name, owner_cert) == 0))
            continue;                          /* the same certificate either way */
        if (strcmp(owner_ingress, ing->key) == 0)
            report_warning(b->opt, "%s: host %s already gets its certificate from Secret %s "
                           "(listed earlier); Secret %s is not used for it", where, host,
                           owner_secret, secret_key);
        else
            report_warning(b->opt, "%s: host %s already gets its certificate from Secret %s of "
                           "Ingress %s (older); Secret %s is not used for it", where, host,
                           owner_secret, owner_ingress, secret_key);
    }
    return claimed;
}

static void join_hosts(const json_t *hosts, char *out, size_t outlen)
{
    const json_t *host;
    size_t i, used = 0;
    out[0] = '\0';
    json_array_foreach(hosts, i, host) {
        if (used >= outlen)
            break;
        int n = snprintf(out + used, outlen - used, "%s%s", i ? ", " : "",
                         json_string_value(host));
        used += n > 0 ? (size_t)n : 0;
    }
}

static void add_tls_entry(struct builder *b, const struct ingress *ing, size_t index,
                          const json_t *item)
{
    char where[WHERE_MAX], secret_key[KEY_MAX], err[ERR_MAX], hosts_text[512];
    const char *secret_name = NULL, *why;
    const json_t *hosts = NULL;
    snprintf(where, sizeof where, "Ingress %s: spec.tls[%zu]", ing->key, index);
    const char *wrong = !json_is_object(item) ? "must be an object"
        : k8s_array(item, "hosts", &hosts) == K8S_WRONG_TYPE ? "hosts must be an array"
        : k8s_string(item, "secretName", &secret_name) == K8S_WRONG_TYPE
            ? "secretName must be a string" : NULL;
    if (wrong) {
        report_error(b->opt, "%s: %s; ignored", where, wrong);
        return;
    }
    if (!secret_name || !*secret_name)
        return;                                /* the default certificate, by request */
    if ((why = dns_subdomain_problem(secret_name))) {
        report_error(b->opt, "%s: secretName \"%.253s\" %s; ignored", where, secret_name, why);
        return;
    }
    snprintf(secret_key, sizeof secret_key, "%s/%s", ing->ns, secret_name);
    json_t *names = tls_entry_hosts(b, ing, where, hosts);
    const json_t *cert = secret_certificate(b, secret_key, err, sizeof err);
    json_t *claimed = claim_hosts(b, ing, where, secret_key, cert, names);
    join_hosts(claimed, hosts_text, sizeof hosts_text);
    size_t num_claimed = json_array_size(claimed);
    if (!cert && b->opt->tls_refused)
        (*b->opt->tls_refused)++;
    if (!cert && num_claimed)
        report_error(b->opt, "%s: Secret %s refused: %s; %s %s %s the default certificate",
                     where, secret_key, err, num_claimed > 1 ? "hosts" : "host", hosts_text,
                     num_claimed > 1 ? "get" : "gets");
    else if (!cert)
        report_error(b->opt, "%s: Secret %s refused: %s", where, secret_key, err);
    else if (num_claimed)
        json_array_append_new(b->tls_entries,
                              json_pack("{s:O, s:O, s:O, s:s, s:s}", "hosts", claimed,
                                        "cert", json_object_get(cert, "cert"),
                                        "key", json_object_get(cert, "key"),
                                        "ingress", ing->key, "secret", secret_key));
    json_decref(names);
    json_decref(claimed);
}

static void add_tls(struct builder *b, const struct ingress *ing)
{
    const json_t *tls = NULL, *item;
    size_t i;
    if (k8s_array(ing->spec, "tls", &tls) == K8S_WRONG_TYPE) {
        report_error(b->opt, "Ingress %s: spec.tls must be an array; ignored", ing->key);
        return;
    }
    json_array_foreach(tls, i, item)
        add_tls_entry(b, ing, i, item);
}

/* A request for host would reach a host entry: the exact one, the wildcard for one more
 * label, or the any-host one. */
static int host_has_rules(const struct builder *b, const char *host)
{
    const char *dot = strchr(host, '.');
    char wildcard[DNS_NAME_MAX + 2];
    if (json_object_get(b->hosts, host) || json_object_get(b->hosts, "*"))
        return 1;
    if (host[0] == '*' || !dot)
        return 0;
    snprintf(wildcard, sizeof wildcard, "*%s", dot);
    return json_object_get(b->hosts, wildcard) != NULL;
}

/* After every Ingress's tls: names served by a certificate that no rule routes are worth a
 * warning (a typo, usually); they still get the certificate. */
static void check_tls_hosts(struct builder *b)
{
    const char *host;
    json_t *owner;
    json_object_foreach(b->cert_owner, host, owner) {
        if (json_is_string(json_object_get(owner, "cert")) && !host_has_rules(b, host))
            report_warning(b->opt, "%s: host %s has no rule in any served Ingress; its "
                           "requests get the default backend",
                           json_string_value(json_object_get(owner, "where")), host);
    }
}

static int host_redirects(const struct builder *b, const char *host)
{
    const json_t *owner = json_object_get(b->cert_owner, host);
    return owner && json_is_string(json_object_get(owner, "cert")) &&
           !json_object_get(b->redirect_off, host);
}

/* ---- backends and paths ---- */

static json_t *error_backend(const char *name, const char *error)
{
    return json_pack("{s:s, s:[], s:s}", "name", name, "endpoints", "error", error);
}

struct service_ref {
    const char *ns;
    const char *name;
    long long number;            /* the port by number, or */
    const char *port_name;       /* by name (then non-NULL) */
};

/* The backend called name, resolved on first use; service NULL means a resource backend. Its
 * error, if any, is reported for every route that uses it, naming that route's Ingress, since
 * each of them answers 503. Returns the name as stored in b->backends, or NULL. */
static const char *use_backend(struct builder *b, const char *where, const char *name,
                               const struct service_ref *service)
{
    char err[ERR_MAX];
    json_t *backend = json_object_get(b->backends, name);
    if (!backend) {
        json_t *endpoints = NULL;
        if (service)
            endpoints = service_endpoints(b->ix, service->ns, service->name, service->number,
                                          service->port_name, err, sizeof err);
        else
            snprintf(err, sizeof err, "%s", RESOURCE_UNSUPPORTED);
        if (endpoints)
            backend = json_pack("{s:s, s:o}", "name", name, "endpoints", endpoints);
        else
            backend = error_backend(name, err);
        if (!backend || json_object_set_new(b->backends, name, backend) < 0)
            return NULL;
    }
    const char *error = json_string_value(json_object_get(backend, "error"));
    if (error)
        report_error(b->opt, "%s: %s (answers 503)", where, error);
    return json_string_value(json_object_get(backend, "name"));
}

static const char *service_backend(struct builder *b, const struct ingress *ing,
                                   const char *where, const json_t *service)
{
    struct service_ref s = { .ns = ing->ns };
    const json_t *port = NULL;
    const char *why;
    char name[KEY_MAX + 24];
    enum k8s_field has_number = K8S_ABSENT, has_name = K8S_ABSENT;
    if (k8s_string(service, "name", &s.name) != K8S_PRESENT) {
        report_error(b->opt, "%s: backend service.name must be a string", where);
        return NULL;
    }
    if ((why = dns1035_label_problem(s.name))) {
        report_error(b->opt, "%s: backend service.name \"%.64s\" %s", where, s.name, why);
        return NULL;
    }
    if (k8s_object(service, "port", &port) != K8S_PRESENT ||
        (has_number = k8s_integer(port, "number", &s.number)) == K8S_WRONG_TYPE ||
        (has_name = k8s_string(port, "name", &s.port_name)) == K8S_WRONG_TYPE ||
        (has_number == K8S_PRESENT) == (has_name == K8S_PRESENT)) {
        report_error(b->opt, "%s: backend service.port must hold either number (an integer) or "
                     "name (a string)", where);
        return NULL;
    }
    if (has_number == K8S_PRESENT && !valid_port_number(s.number)) {
        report_error(b->opt, "%s: backend service.port.number %lld is not in 1..65535", where,
                     s.number);
        return NULL;
    }
    if (s.port_name && (why = port_name_problem(s.port_name))) {
        report_error(b->opt, "%s: backend service.port.name \"%.64s\" %s", where, s.port_name, why);
        return NULL;
    }
    if (s.port_name)
        snprintf(name, sizeof name, "%s/%s:%s", s.ns, s.name, s.port_name);
    else
        snprintf(name, sizeof name, "%s/%s:%lld", s.ns, s.name, s.number);
    return use_backend(b, where, name, &s);
}

static const char *resource_backend(struct builder *b, const struct ingress *ing,
                                    const char *where, const json_t *resource)
{
    const char *kind = NULL, *name = NULL, *why;
    char backend_name[KEY_MAX + 80];
    if (k8s_string(resource, "kind", &kind) != K8S_PRESENT ||
        k8s_string(resource, "name", &name) != K8S_PRESENT) {
        report_error(b->opt, "%s: backend resource.kind and resource.name must be strings", where);
        return NULL;
    }
    static const char kind_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "abcdefghijklmnopqrstuvwxyz0123456789";
    size_t kind_len = strlen(kind);
    if (kind_len == 0 || kind_len > 63 || strspn(kind, kind_chars) != kind_len) {
        report_error(b->opt, "%s: backend resource.kind \"%.64s\" is not a kind name", where, kind);
        return NULL;
    }
    if ((why = dns_subdomain_problem(name))) {
        report_error(b->opt, "%s: backend resource.name \"%.64s\" %s", where, name, why);
        return NULL;
    }
    /* "ns/Kind/name": Service backends ("ns/service:port") never hold a second '/'. */
    snprintf(backend_name, sizeof backend_name, "%s/%s/%s", ing->ns, kind, name);
    return use_backend(b, where, backend_name, NULL);
}

/* The backend an IngressBackend object names: its name in b->backends, or NULL (reported). */
static const char *ingress_backend(struct builder *b, const struct ingress *ing, const char *where,
                                   const json_t *backend)
{
    const json_t *service = NULL, *resource = NULL;
    enum k8s_field has_service = k8s_object(backend, "service", &service);
    enum k8s_field has_resource = k8s_object(backend, "resource", &resource);
    if (!json_is_object(backend) || has_service == K8S_WRONG_TYPE ||
        has_resource == K8S_WRONG_TYPE ||
        (has_service == K8S_PRESENT) == (has_resource == K8S_PRESENT)) {
        report_error(b->opt, "%s: backend must be an object naming either a service or a resource",
                     where);
        return NULL;
    }
    return service ? service_backend(b, ing, where, service)
                   : resource_backend(b, ing, where, resource);
}

static const char *path_type_for_proxy(const char *type)
{
    if (strcmp(type, "Exact") == 0)
        return "Exact";
    if (strcmp(type, "Prefix") == 0 || strcmp(type, "ImplementationSpecific") == 0)
        return "Prefix";
    return NULL;
}

static void add_path(struct builder *b, const struct ingress *ing, const char *host,
                     const char *where, const json_t *item)
{
    const char *path = "/", *type = NULL, *proxy_type, *why, *backend_name;
    const json_t *backend = NULL;
    char route_key[16 + 4096];
    if (!json_is_object(item)) {
        report_error(b->opt, "%s: must be an object, got %s", where, k8s_type_name(item));
        return;
    }
    if (k8s_string(item, "path", &path) == K8S_WRONG_TYPE) {
        report_error(b->opt, "%s: path must be a string; path ignored", where);
        return;
    }
    if (k8s_string(item, "pathType", &type) == K8S_WRONG_TYPE) {
        report_error(b->opt, "%s: pathType must be a string; path ignored", where);
        return;
    }
    if (!type || !(proxy_type = path_type_for_proxy(type))) {
        report_error(b->opt, "%s: pathType must be Exact, Prefix or ImplementationSpecific%s; "
                     "path ignored", where, type ? "" : " (it is missing)");
        return;
    }
    if ((why = ingress_path_problem(path))) {
        report_error(b->opt, "%s: path \"%.200s\" %s; path ignored", where, path, why);
        return;
    }
    if (strlen(path) > 4000) {
        report_error(b->opt, "%s: path is longer than 4000 characters; path ignored", where);
        return;
    }
    snprintf(route_key, sizeof route_key, "%s %s", proxy_type, path);
    json_t *routes = json_object_get(b->hosts, host);
    const json_t *taken = routes ? json_object_get(routes, route_key) : NULL;
    if (taken) {
        const char *owner = json_string_value(json_object_get(taken, "ingress"));
        if (owner && strcmp(owner, ing->key) == 0)
            report_warning(b->opt, "%s: host %s path %.200s (%s) is listed twice in this Ingress; "
                           "the first is used", where, host, path, proxy_type);
        else
            report_warning(b->opt, "%s: host %s path %.200s (%s) is already served by Ingress %s "
                           "(older); ignored here", where, host, path, proxy_type, owner);
        return;
    }
    k8s_object(item, "backend", &backend);
    if (!(backend_name = ingress_backend(b, ing, where, backend)))
        return;
    if (!routes) {
        routes = json_object();
        json_object_set_new(b->hosts, host, routes);
    }
    json_object_set_new(routes, route_key,
                        json_pack("{s:s, s:s, s:s, s:s}", "path", path, "type", proxy_type,
                                  "backend", backend_name, "ingress", ing->key));
    if (!ssl_redirect_wanted(ing) && !json_object_get(b->redirect_off, host))
        json_object_set_new(b->redirect_off, host, json_string(ing->key));
}

static void add_rule(struct builder *b, const struct ingress *ing, size_t rule_index,
                     const json_t *rule)
{
    const char *host = NULL, *why;
    const json_t *http = NULL, *paths = NULL, *item;
    char host_lower[DNS_NAME_MAX + 1], where[WHERE_MAX];
    size_t i;
    const char *wrong = !json_is_object(rule) ? "must be an object"
        : k8s_string(rule, "host", &host) == K8S_WRONG_TYPE ? "host must be a string"
        : k8s_object(rule, "http", &http) == K8S_WRONG_TYPE ? "http must be an object"
        : k8s_array(http, "paths", &paths) == K8S_WRONG_TYPE ? "http.paths must be an array"
        : NULL;
    if (wrong) {
        report_error(b->opt, "Ingress %s: rule %zu: %s; rule ignored", ing->key, rule_index, wrong);
        return;
    }
    if (!host || !*host) {
        snprintf(host_lower, sizeof host_lower, "*");
    } else if ((why = ingress_host_problem(host, host_lower, sizeof host_lower))) {
        report_error(b->opt, "Ingress %s: rule %zu: host \"%.253s\" %s; rule ignored", ing->key,
                     rule_index, host, why);
        return;
    }
    json_array_foreach(paths, i, item) {
        snprintf(where, sizeof where, "Ingress %s: rule %zu path %zu", ing->key, rule_index, i);
        add_path(b, ing, host_lower, where, item);
    }
}

static void add_default_backend(struct builder *b, const struct ingress *ing)
{
    const json_t *backend = NULL;
    char where[WHERE_MAX];
    snprintf(where, sizeof where, "Ingress %s: spec.defaultBackend", ing->key);
    enum k8s_field state = k8s_object(ing->spec, "defaultBackend", &backend);
    if (state == K8S_ABSENT)
        return;
    if (state == K8S_WRONG_TYPE) {
        report_error(b->opt, "%s: must be an object", where);
        return;
    }
    if (b->default_owner) {
        report_warning(b->opt, "%s: ignored: Ingress %s (older) already provides the default "
                       "backend", where, b->default_owner->key);
        return;
    }
    const char *name = ingress_backend(b, ing, where, backend);
    if (name) {
        b->default_backend = name;
        b->default_owner = ing;
    }
}

static void add_ingress(struct builder *b, const struct ingress *ing)
{
    const json_t *rules = NULL, *rule;
    size_t i;
    if (k8s_array(ing->spec, "rules", &rules) == K8S_WRONG_TYPE)
        report_error(b->opt, "Ingress %s: spec.rules must be an array; rules ignored", ing->key);
    check_redirect_annotations(b, ing);
    json_array_foreach(rules, i, rule)
        add_rule(b, ing, i, rule);
    add_default_backend(b, ing);
}

/* ---- emitting ---- */

/* Longest first, Exact before Prefix at equal length (the order the proxy matches in), then
 * by path. Keys are unique per (type, path), so this is a total order. */
static int compare_routes(const void *pa, const void *pb)
{
    const json_t *a = *(const json_t *const *)pa, *b = *(const json_t *const *)pb;
    const char *path_a = json_string_value(json_object_get(a, "path"));
    const char *path_b = json_string_value(json_object_get(b, "path"));
    size_t len_a = strlen(path_a), len_b = strlen(path_b);
    if (len_a != len_b)
        return len_a > len_b ? -1 : 1;
    int c = strcmp(json_string_value(json_object_get(a, "type")),
                   json_string_value(json_object_get(b, "type")));
    return c ? c : strcmp(path_a, path_b);
}

static json_t *emit_paths(json_t *routes)
{
    size_t n = json_object_size(routes), i = 0;
    json_t **list = malloc((n ? n : 1) * sizeof *list);
    json_t *paths = json_array(), *route;
    const char *key;
    if (!list)
        return paths;
    json_object_foreach(routes, key, route)
        list[i++] = route;
    qsort(list, n, sizeof *list, compare_routes);
    for (i = 0; i < n; i++)
        json_array_append(paths, list[i]);
    free(list);
    return paths;
}

static json_t *emit(struct builder *b)
{
    json_t *doc = json_object(), *backends = json_array(), *hosts = json_array();
    size_t n, i;
    const char **keys = sorted_keys(b->backends, &n);
    for (i = 0; i < n; i++)
        json_array_append(backends, json_object_get(b->backends, keys[i]));
    free(keys);
    keys = sorted_keys(b->hosts, &n);
    for (i = 0; i < n; i++) {
        json_t *paths = emit_paths(json_object_get(b->hosts, keys[i]));
        json_t *entry = json_pack("{s:s, s:o}", "host", keys[i], "paths", paths);
        if (host_redirects(b, keys[i]))
            json_object_set_new(entry, "sslRedirect", json_true());
        json_array_append_new(hosts, entry);
    }
    free(keys);
    json_object_set_new(doc, "version", json_integer(1));
    json_object_set_new(doc, "backends", backends);
    json_object_set_new(doc, "hosts", hosts);
    if (b->default_backend)
        json_object_set_new(doc, "defaultBackend", json_string(b->default_backend));
    if (json_array_size(b->tls_entries))
        json_object_set(doc, "tls", b->tls_entries);
    return doc;
}

/* The contents of the files the tls entries name; what stays behind in b->pems (certificates
 * that serve no host, or every one when the caller wants none) is wiped. */
static void move_file(struct builder *b, json_t *files, const json_t *name)
{
    json_t *content = json_object_get(b->pems, json_string_value(name));
    if (!content)
        return;                                /* already moved: a Secret serving two entries */
    json_object_set(files, json_string_value(name), content);
    json_object_del(b->pems, json_string_value(name));
}

static json_t *take_tls_files(struct builder *b, int wanted)
{
    json_t *files = json_object(), *entry, *content;
    const char *name;
    size_t i;
    json_array_foreach(b->tls_entries, i, entry) {
        if (!wanted)
            break;
        move_file(b, files, json_object_get(entry, "cert"));
        move_file(b, files, json_object_get(entry, "key"));
    }
    json_object_foreach(b->pems, name, content)
        explicit_bzero((char *)json_string_value(content), json_string_length(content));
    return files;
}

/* ---- the interface ---- */

static int compare_ingress_keys(const void *pa, const void *pb)
{
    const struct ingress *a = pa, *b = pb;
    return strcmp(a->key, b->key);
}

/* The served Ingresses' keys, sorted (reorders the index's list: call it last). */
static json_t *served_keys(struct index *ix)
{
    if (ix->num_ingresses > 1)
        qsort(ix->ingresses, ix->num_ingresses, sizeof ix->ingresses[0], compare_ingress_keys);
    json_t *list = json_array();
    for (size_t i = 0; i < ix->num_ingresses; i++)
        json_array_append_new(list, json_string(ix->ingresses[i].key));
    return list;
}

json_t *translate_routes(const json_t *objects, const struct translate_options *opt,
                         json_t **tls_files)
{
    struct index ix;
    index_build(&ix, objects, opt);
    struct builder b = { .ix = &ix, .opt = ix.opt, .hosts = json_object(),
                         .backends = json_object(), .redirect_off = json_object(),
                         .certs = json_object(), .pems = json_object(),
                         .cert_owner = json_object(), .tls_entries = json_array() };
    for (size_t i = 0; i < ix.num_ingresses; i++)
        add_ingress(&b, &ix.ingresses[i]);
    /* after every rule, so that each certificate's hosts can be checked against them all */
    for (size_t i = 0; i < ix.num_ingresses; i++)
        add_tls(&b, &ix.ingresses[i]);
    check_tls_hosts(&b);
    json_t *doc = emit(&b);
    json_t *files = take_tls_files(&b, tls_files != NULL);
    if (tls_files)
        *tls_files = files;
    else
        json_decref(files);
    json_decref(b.hosts);
    json_decref(b.backends);
    json_decref(b.redirect_off);
    json_decref(b.certs);
    json_decref(b.pems);
    json_decref(b.cert_owner);
    json_decref(b.tls_entries);
    if (opt && opt->served)
        *opt->served = served_keys(&ix);   /* one index serves status and DNS too */
    index_free(&ix);
    return doc;
}

json_t *translate_served_ingresses(const json_t *objects, const struct translate_options *opt)
{
    struct index ix;
    index_build(&ix, objects, opt);
    json_t *list = served_keys(&ix);
    index_free(&ix);
    return list;
}
