/*
 * dns_records.c - served Ingresses -> the names to publish (see dns_records.h).
 *
 * The names are collected in a json object (name -> smallest TTL seen, 0 when none was set),
 * which deduplicates them, then copied into a sorted array.
 */
#include "dns_records.h"

#include "ingress_validate.h"
#include "k8s_object.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct collector {
    const struct translate_options *opt;
    json_t *names;            /* name -> integer TTL (0: not set) */
    const char *ingress;      /* "namespace/name" of the Ingress being read */
};

static void report(const struct collector *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void report(const struct collector *c, const char *fmt, ...)
{
    if (!c->opt || !c->opt->diag)
        return;
    char msg[600];
    int n = snprintf(msg, sizeof msg, "DNS: Ingress %s: ", c->ingress);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    c->opt->diag(c->opt->diag_ctx, "warning", msg);
}

int dns_ttl_parse(const char *s, unsigned *out)
{
    unsigned long long total = 0;
    int plain = 1;
    if (!*s)
        return -1;
    while (*s) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned long long v = 0;
        while (*s >= '0' && *s <= '9') {
            v = v * 10 + (unsigned)(*s++ - '0');
            if (v > DNS_RECORDS_TTL_MAX)
                return -1;
        }
        unsigned long long unit = 1;
        if (*s == 's') unit = 1, s++, plain = 0;
        else if (*s == 'm') unit = 60, s++, plain = 0;
        else if (*s == 'h') unit = 3600, s++, plain = 0;
        else if (*s || !plain) return -1;   /* a bare number only on its own */
        total += v * unit;
        if (total > DNS_RECORDS_TTL_MAX)
            return -1;
    }
    if (total == 0)
        return -1;
    *out = (unsigned)total;
    return 0;
}

/* Records host with ttl (0 = default); the smallest explicit TTL wins. */
static void add_name(struct collector *c, const char *host, unsigned ttl)
{
    json_t *seen = json_object_get(c->names, host);
    if (seen) {
        unsigned old = (unsigned)json_integer_value(seen);
        if (ttl == 0 || (old != 0 && old <= ttl))
            return;
    }
    json_object_set_new(c->names, host, json_integer(ttl));
}

/* quiet: the host was already reported by translate (rule hosts), do not report it again. */
static void add_host(struct collector *c, const char *host, unsigned ttl, const char *where,
                     int quiet)
{
    char lower[DNS_NAME_MAX + 1];
    const char *why = ingress_host_problem(host, lower, sizeof lower);
    if (why) {
        if (!quiet)
            report(c, "%s host \"%.100s\" %s; not published", where, host, why);
        return;
    }
    add_name(c, lower, ttl);
}

static void add_rule_hosts(struct collector *c, const json_t *spec, unsigned ttl)
{
    const json_t *rules, *rule;
    size_t i;
    if (k8s_array(spec, "rules", &rules) != K8S_PRESENT)
        return;
    json_array_foreach(rules, i, rule) {
        const char *host;
        if (k8s_string(rule, "host", &host) == K8S_PRESENT)
            add_host(c, host, ttl, "rule", 1);
    }
}

static void add_tls_hosts(struct collector *c, const json_t *spec, unsigned ttl)
{
    const json_t *tls, *entry, *hosts, *host;
    size_t i, j;
    if (k8s_array(spec, "tls", &tls) != K8S_PRESENT)
        return;
    json_array_foreach(tls, i, entry) {
        if (k8s_array(entry, "hosts", &hosts) != K8S_PRESENT)
            continue;
        json_array_foreach(hosts, j, host) {
            if (json_is_string(host))
                add_host(c, json_string_value(host), ttl, "tls", 0);
            else
                report(c, "spec.tls[%zu].hosts[%zu] must be a string; not published", i, j);
        }
    }
}

static void add_annotation_hosts(struct collector *c, const char *list, unsigned ttl)
{
    char host[DNS_NAME_MAX + 2];
    while (*list) {
        size_t len = strcspn(list, ",");
        const char *start = list;
        list += len + (list[len] == ',');
        while (len && (*start == ' ' || *start == '\t'))
            start++, len--;
        while (len && (start[len - 1] == ' ' || start[len - 1] == '\t'))
            len--;
        if (!len)
            continue;
        if (len > DNS_NAME_MAX) {
            report(c, "annotation " DNS_RECORDS_HOSTNAME_ANNOTATION ": a host is longer than "
                   "253 characters; not published");
            continue;
        }
        memcpy(host, start, len);
        host[len] = '\0';
        add_host(c, host, ttl, "annotation " DNS_RECORDS_HOSTNAME_ANNOTATION, 0);
    }
}

static unsigned ingress_ttl(struct collector *c, const struct k8s_meta *meta)
{
    const char *text = k8s_annotation(meta, DNS_RECORDS_TTL_ANNOTATION);
    unsigned ttl;
    if (!text)
        return 0;
    if (dns_ttl_parse(text, &ttl) < 0) {
        report(c, "annotation " DNS_RECORDS_TTL_ANNOTATION " \"%.40s\" is not a TTL (seconds, or "
               "like \"30s\", \"5m\"); using the default", text);
        return 0;
    }
    return ttl;
}

static void add_ingress(struct collector *c, const json_t *obj, const json_t *served)
{
    struct k8s_meta meta;
    char err[200], key[600];
    const json_t *spec;
    if (k8s_meta_read(obj, &meta, err, sizeof err) < 0 || strcmp(meta.kind, "Ingress") != 0
        || !meta.ns)
        return;
    snprintf(key, sizeof key, "%s/%s", meta.ns, meta.name);
    if (!json_object_get(served, key))
        return;
    c->ingress = key;
    unsigned ttl = ingress_ttl(c, &meta);
    if (k8s_object(obj, "spec", &spec) == K8S_PRESENT) {
        add_rule_hosts(c, spec, ttl);
        add_tls_hosts(c, spec, ttl);
    }
    const char *annotated = k8s_annotation(&meta, DNS_RECORDS_HOSTNAME_ANNOTATION);
    if (annotated)
        add_annotation_hosts(c, annotated, ttl);
}

/* The served list as a set, for lookups per Ingress. */
static json_t *served_set(const json_t *served)
{
    json_t *set = json_object();
    size_t i;
    json_t *key;
    json_array_foreach(served, i, key)
        if (json_is_string(key))
            json_object_set_new(set, json_string_value(key), json_true());
    return set;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(((const struct dns_host *)a)->name, ((const struct dns_host *)b)->name);
}

int dns_desired_from_objects(const json_t *objects, const json_t *served_list,
                             const struct translate_options *opt, struct dns_desired *out)
{
    struct collector c = { .opt = opt, .names = json_object(), .ingress = "" };
    json_t *served = served_set(served_list);
    size_t i;
    const json_t *obj;
    *out = (struct dns_desired){ 0 };
    if (json_is_array(objects))
        json_array_foreach(objects, i, obj)
            add_ingress(&c, obj, served);
    json_decref(served);

    size_t n = json_object_size(c.names);
    out->names = calloc(n ? n : 1, sizeof *out->names);
    if (!out->names) {
        json_decref(c.names);
        return -1;
    }
    const char *name;
    json_t *ttl;
    json_object_foreach(c.names, name, ttl) {
        struct dns_host *d = &out->names[out->count++];
        snprintf(d->name, sizeof d->name, "%s", name);
        d->ttl = (unsigned)json_integer_value(ttl);
    }
    json_decref(c.names);
    qsort(out->names, out->count, sizeof *out->names, compare_names);
    return 0;
}

void dns_desired_free(struct dns_desired *d)
{
    free(d->names);
    *d = (struct dns_desired){ 0 };
}

int dns_desired_copy(const struct dns_desired *from, struct dns_desired *to)
{
    to->names = calloc(from->count ? from->count : 1, sizeof *to->names);
    if (!to->names)
        return -1;
    if (from->count)
        memcpy(to->names, from->names, from->count * sizeof *to->names);
    to->count = from->count;
    return 0;
}

const struct dns_host *dns_desired_find(const struct dns_desired *d, const char *name)
{
    struct dns_host key;
    if (strlen(name) >= sizeof key.name)
        return NULL;
    snprintf(key.name, sizeof key.name, "%s", name);
    return d->count ? bsearch(&key, d->names, d->count, sizeof key, compare_names) : NULL;
}

static int address_known(const struct dns_address *list, size_t n, const struct dns_address *a)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].family == a->family && memcmp(list[i].bytes, a->bytes, 16) == 0)
            return 1;
    return 0;
}

int dns_address_parse(const char *list, struct dns_address *out, size_t max, char *err,
                      size_t errlen)
{
    size_t count = 0;
    char item[64];
    while (*list) {
        size_t len = strcspn(list, ",");
        if (len == 0 || len >= sizeof item) {
            snprintf(err, errlen, "\"%.80s\": expected IP addresses separated by commas", list);
            return -1;
        }
        memcpy(item, list, len);
        item[len] = '\0';
        list += len + (list[len] == ',');
        struct dns_address a = { 0 };
        if (inet_pton(AF_INET, item, a.bytes) == 1)
            a.family = AF_INET;
        else if (inet_pton(AF_INET6, item, a.bytes) == 1)
            a.family = AF_INET6;
        else {
            snprintf(err, errlen, "\"%s\" is not an IPv4 or IPv6 address", item);
            return -1;
        }
        inet_ntop(a.family, a.bytes, a.text, sizeof a.text);
        if (address_known(out, count, &a))
            continue;
        if (count == max) {
            snprintf(err, errlen, "at most %zu addresses", max);
            return -1;
        }
        out[count++] = a;
    }
    return (int)count;
}
