/*
 * dns_config.c - the `dns:` list of the node config (see dns_config.h).
 *
 * One function per sink type reads an entry's keys from a table of the keys it knows; shared
 * value readers (TTL, duration, server address, secret) each say what they expected.
 */
#include "dns_config.h"

#include "dns_records.h"
#include "log.h"
#include "yaml_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_MAX_BYTES (1u << 20)

struct reader {
    const char *path;
    size_t index;              /* entry number, for messages */
    char *err;
    size_t errlen;
};

static int fail(const struct reader *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(const struct reader *r, const char *key, const char *fmt, ...)
{
    int n = snprintf(r->err, r->errlen, "%s: dns[%zu]%s%s: ", r->path, r->index, key ? "." : "",
                     key ? key : "");
    if (n < 0 || (size_t)n >= r->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int read_string(const struct reader *r, const json_t *entry, const char *key,
                       char *out, size_t size)
{
    const json_t *v = json_object_get(entry, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(r, key, "must be a string");
    const char *s = json_string_value(v);
    if (!s[0] || strlen(s) >= size)
        return fail(r, key, "must be 1 to %zu characters long", size - 1);
    snprintf(out, size, "%s", s);
    return 0;
}

/* "5m", "30s", "500ms" or integer milliseconds. */
static int parse_duration_ms(const char *s, long long *ms)
{
    long long total = 0;
    if (!*s)
        return -1;
    while (*s) {
        if (*s < '0' || *s > '9')
            return -1;
        long long v = 0;
        while (*s >= '0' && *s <= '9') {
            v = v * 10 + (*s++ - '0');
            if (v > 1000000000LL)
                return -1;
        }
        long long unit;
        if (strncmp(s, "ms", 2) == 0) unit = 1, s += 2;
        else if (*s == 's') unit = 1000, s++;
        else if (*s == 'm') unit = 60000, s++;
        else if (*s == 'h') unit = 3600000, s++;
        else return -1;
        total += v * unit;
        if (total > 24LL * 3600 * 1000)
            return -1;
    }
    *ms = total;
    return 0;
}

static int read_duration(const struct reader *r, const json_t *entry, const char *key,
                         long long min_ms, int *out)
{
    const json_t *v = json_object_get(entry, key);
    long long ms;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v))
        ms = json_integer_value(v);
    else if (!json_is_string(v) || parse_duration_ms(json_string_value(v), &ms) < 0)
        return fail(r, key, "expected a duration: milliseconds, or like \"500ms\", \"5s\", \"5m\" "
                    "(at most 24h)");
    if (ms < min_ms || ms > 24LL * 3600 * 1000)
        return fail(r, key, "must be between %lldms and 24h", min_ms);
    *out = (int)ms;
    return 0;
}

static int read_ttl(const struct reader *r, const json_t *entry, unsigned *out)
{
    const json_t *v = json_object_get(entry, "ttl");
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 1
        && json_integer_value(v) <= DNS_RECORDS_TTL_MAX) {
        *out = (unsigned)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && dns_ttl_parse(json_string_value(v), out) == 0)
        return 0;
    return fail(r, "ttl", "expected seconds (1 or more) or a duration like \"60s\", \"5m\"");
}

static int read_bool(const struct reader *r, const json_t *entry, const char *key, int *out)
{
    const json_t *v = json_object_get(entry, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return fail(r, key, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

static int ensure_trailing_dot(char *name, size_t size)
{
    size_t len = strlen(name);
    if (name[len - 1] == '.')
        return 0;
    if (len + 1 >= size)
        return -1;
    name[len] = '.';
    name[len + 1] = '\0';
    return 0;
}

static int name_ok(const char *name)
{
    /* the wire layer validates for real when the name is encoded; this keeps text sane */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (!(*p == '-' || *p == '.' || *p == '_' || (*p >= '0' && *p <= '9')
              || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return 0;
    return name[0] && name[0] != '.' && !strstr(name, "..");
}

static int read_tsig(const struct reader *r, const json_t *entry, struct dns_sink_config *s)
{
    const json_t *tsig = json_object_get(entry, "tsig");
    if (!tsig || json_is_null(tsig))
        return fail(r, "tsig", "is required: {name, algorithm, secret}");
    if (!json_is_object(tsig))
        return fail(r, "tsig", "must be a mapping {name, algorithm, secret}");
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)tsig, key, value)
        if (strcmp(key, "name") && strcmp(key, "algorithm") && strcmp(key, "secret"))
            log_warn("%s: dns[%zu].tsig: unknown key \"%.64s\" ignored", r->path, r->index, key);
    char name[256] = "", algorithm[32] = "hmac-sha256", secret[512] = "", why[200];
    if (read_string(r, tsig, "name", name, sizeof name) < 0
        || read_string(r, tsig, "algorithm", algorithm, sizeof algorithm) < 0
        || read_string(r, tsig, "secret", secret, sizeof secret) < 0)
        return -1;
    if (!name[0])
        return fail(r, "tsig.name", "is required");
    if (!secret[0])
        return fail(r, "tsig.secret", "is required (base64, as tsig-keygen prints it)");
    int rc = dns_tsig_key_init(&s->key, name, algorithm, secret, why, sizeof why);
    explicit_bzero(secret, sizeof secret);
    if (rc < 0)
        return fail(r, "tsig", "%s", why);
    return 0;
}

static void warn_unknown_keys(const struct reader *r, const json_t *entry,
                              const char *const *known)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)entry, key, value) {
        size_t i = 0;
        while (known[i] && strcmp(known[i], key))
            i++;
        if (!known[i])
            log_warn("%s: dns[%zu]: unknown key \"%.64s\" ignored", r->path, r->index, key);
    }
}

static int owner_ok(const char *owner)
{
    for (const unsigned char *p = (const unsigned char *)owner; *p; p++)
        if (!(*p == '-' || *p == '.' || *p == '_' || (*p >= '0' && *p <= '9')
              || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return 0;
    return owner[0] != '\0';
}

static int read_rfc2136(const struct reader *r, const json_t *entry, const char *default_owner,
                        struct dns_sink_config *s)
{
    static const char *const known[] = { "type", "server", "zone", "owner", "ttl", "wildcards",
                                         "resync", "timeout", "tsig", NULL };
    warn_unknown_keys(r, entry, known);
    char server[128] = "", why[200];
    s->timeout_ms = DNS_CONFIG_DEFAULT_TIMEOUT_MS;
    if (read_string(r, entry, "server", server, sizeof server) < 0
        || read_string(r, entry, "zone", s->zone, sizeof s->zone - 1) < 0
        || read_string(r, entry, "owner", s->owner, sizeof s->owner) < 0
        || read_duration(r, entry, "timeout", 10, &s->timeout_ms) < 0
        || read_tsig(r, entry, s) < 0)
        return -1;
    if (!server[0])
        return fail(r, "server", "is required (\"IP:PORT\")");
    if (dns_server_parse(&s->server, server, why, sizeof why) < 0)
        return fail(r, "server", "%s", why);
    if (!s->zone[0] || !name_ok(s->zone))
        return fail(r, "zone", "must be a DNS name like edge.example.");
    ensure_trailing_dot(s->zone, sizeof s->zone);
    for (char *p = s->zone; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (!s->owner[0] && default_owner)
        snprintf(s->owner, sizeof s->owner, "%s", default_owner);
    if (!s->owner[0])
        return fail(r, "owner", "is required (or set node.name)");
    if (!owner_ok(s->owner))
        return fail(r, "owner", "may hold only letters, digits, '-', '_' and '.'");
    snprintf(s->label, sizeof s->label, "rfc2136 %s at %s", s->zone, s->server.text);
    return 0;
}

static int read_hosts(const struct reader *r, const json_t *entry, struct dns_sink_config *s)
{
    static const char *const known[] = { "type", "path", "ttl", "wildcards", "resync", NULL };
    warn_unknown_keys(r, entry, known);
    if (read_string(r, entry, "path", s->path, sizeof s->path) < 0)
        return -1;
    if (s->path[0] != '/')
        return fail(r, "path", "is required and must be absolute");
    snprintf(s->label, sizeof s->label, "hosts file %.300s", s->path);
    return 0;
}

static int read_entry(const struct reader *r, const json_t *entry, const char *default_owner,
                      struct dns_sink_config *s)
{
    if (!json_is_object(entry))
        return fail(r, NULL, "must be a mapping with a type (rfc2136 or hosts)");
    const json_t *type = json_object_get(entry, "type");
    if (!json_is_string(type))
        return fail(r, "type", "is required: rfc2136 or hosts");
    *s = (struct dns_sink_config){ .ttl = DNS_CONFIG_DEFAULT_TTL, .wildcards = 1,
                                   .resync_ms = DNS_CONFIG_DEFAULT_RESYNC_MS };
    if (read_ttl(r, entry, &s->ttl) < 0 || read_bool(r, entry, "wildcards", &s->wildcards) < 0
        || read_duration(r, entry, "resync", 100, &s->resync_ms) < 0)
        return -1;
    if (strcmp(json_string_value(type), "rfc2136") == 0) {
        s->type = DNS_SINK_RFC2136;
        return read_rfc2136(r, entry, default_owner, s);
    }
    if (strcmp(json_string_value(type), "hosts") == 0) {
        s->type = DNS_SINK_HOSTS;
        return read_hosts(r, entry, s);
    }
    return fail(r, "type", "\"%.40s\" is not rfc2136 or hosts", json_string_value(type));
}

/* The file's one document, or NULL for none. *failed on error (err filled in). */
static json_t *load_document(const char *path, int missing_ok, int *failed, char *err,
                             size_t errlen)
{
    *failed = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT && missing_ok)
            return NULL;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        *failed = 1;
        return NULL;
    }
    char *data = malloc(CONFIG_MAX_BYTES + 1);
    size_t len = data ? fread(data, 1, CONFIG_MAX_BYTES + 1, f) : 0;
    int read_error = ferror(f);
    fclose(f);
    if (!data || read_error || len > CONFIG_MAX_BYTES) {
        snprintf(err, errlen, "%s: cannot read (or larger than 1 MiB)", path);
        free(data);
        *failed = 1;
        return NULL;
    }
    struct yaml_error yerr;
    json_t *docs = yaml_parse_stream(data, len, &yerr);
    free(data);
    if (!docs) {
        snprintf(err, errlen, "%s:%zu:%zu: %s", path, yerr.line, yerr.column, yerr.reason);
        *failed = 1;
        return NULL;
    }
    json_t *doc = json_incref(json_array_get(docs, 0));
    json_decref(docs);
    return doc;
}

int dns_config_load(struct dns_config *cfg, const char *path, int missing_ok,
                    const char *default_owner, char *err, size_t errlen)
{
    int failed;
    *cfg = (struct dns_config){ 0 };
    json_t *doc = load_document(path, missing_ok, &failed, err, errlen);
    if (failed)
        return -1;
    const json_t *list = json_object_get(doc, "dns");
    if (!list || json_is_null(list)) {
        json_decref(doc);
        return 0;
    }
    if (!json_is_array(list)) {
        snprintf(err, errlen, "%s: dns must be a list of sinks", path);
        json_decref(doc);
        return -1;
    }
    size_t n = json_array_size(list);
    cfg->sinks = calloc(n ? n : 1, sizeof *cfg->sinks);
    if (!cfg->sinks) {
        snprintf(err, errlen, "out of memory");
        json_decref(doc);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct reader r = { path, i, err, errlen };
        if (read_entry(&r, json_array_get(list, i), default_owner, &cfg->sinks[i]) < 0) {
            cfg->count = i + 1;
            dns_config_free(cfg);
            json_decref(doc);
            return -1;
        }
        cfg->count = i + 1;
    }
    json_decref(doc);
    return 0;
}

void dns_config_free(struct dns_config *cfg)
{
    if (cfg->sinks) {
        for (size_t i = 0; i < cfg->count; i++)
            dns_tsig_key_wipe(&cfg->sinks[i].key);
        free(cfg->sinks);
    }
    *cfg = (struct dns_config){ 0 };
}
