/*
 * node_config.c - see node_config.h. One table lists every known key with its section, kind
 * and place in struct node_config; loading walks the YAML tree against that table.
 *
 * Value kinds:
 *   string     a YAML string (null leaves the default in place, as for every kind)
 *   address    "HOST:PORT" / "[IPv6]:PORT" listen address, or "" for not set
 *   ip         an IPv4 or IPv6 address, or ""
 *   bool       true/false
 *   count      integer >= 0
 *   number     integer >= 0, up to INT_MAX (counts that may be large: cache entries, seconds)
 *   bytes      integer >= 0, or a string with a k8s-style suffix: "16Ki", "1Mi", "1Gi", "64k", "1M"
 *   duration   integer milliseconds, or "500ms", "5s", "1m", "1h", "1m30s", "1.5s"
 * The `dns` section belongs to the DNS sinks (read elsewhere) and is skipped here.
 * agent.stateDir also moves the default of proxy.routes to STATE/routes.yaml unless the file
 * sets proxy.routes itself: both programs on one node then agree on where the file lives.
 *
 * The json tree carries no positions, so error messages find the line of the offending key
 * with a second, cheap libyaml event pass over the text (only when there is an error).
 */
#include "node_config.h"

#include "log.h"
#include "yaml_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define CONFIG_MAX_BYTES (1u << 20)

enum field_kind { F_STRING, F_ADDRESS, F_IP, F_BOOL, F_COUNT, F_NUMBER, F_BYTES, F_DURATION,
                  F_TIMEOUT };

struct field {
    const char *section, *key;
    enum field_kind kind;
    size_t offset, size;
};

#define FIELD(section, key, kind, member) \
    { section, key, kind, offsetof(struct node_config, member), sizeof(((struct node_config *)0)->member) }

static const struct field fields[] = {
    FIELD("node", "name", F_STRING, node_name),
    FIELD("node", "address", F_IP, node_address),
    FIELD("proxy", "http", F_ADDRESS, proxy_http),
    FIELD("proxy", "https", F_ADDRESS, proxy_https),
    FIELD("proxy", "admin", F_ADDRESS, proxy_admin),
    FIELD("proxy", "routes", F_STRING, proxy_routes),
    FIELD("proxy", "workers", F_COUNT, proxy_workers),
    FIELD("proxy", "accessLog", F_BOOL, proxy_access_log),
    FIELD("proxy", "maxHeaderBytes", F_BYTES, proxy_max_header_bytes),
    FIELD("proxy", "maxBodyBytes", F_BYTES, proxy_max_body_bytes),
    FIELD("proxy", "clientHeaderTimeout", F_TIMEOUT, proxy_client_header_timeout_ms),
    FIELD("proxy", "clientIdleTimeout", F_TIMEOUT, proxy_client_idle_timeout_ms),
    FIELD("proxy", "upstreamConnectTimeout", F_TIMEOUT, proxy_upstream_connect_timeout_ms),
    FIELD("proxy", "upstreamReadTimeout", F_TIMEOUT, proxy_upstream_read_timeout_ms),
    FIELD("proxy", "upstreamSendTimeout", F_TIMEOUT, proxy_upstream_send_timeout_ms),
    FIELD("proxy", "endpointDownTime", F_DURATION, proxy_endpoint_down_ms),
    FIELD("proxy", "drainTimeout", F_DURATION, proxy_drain_timeout_ms),
    FIELD("proxy", "user", F_STRING, proxy_user),
    FIELD("proxy", "defaultCert", F_STRING, proxy_default_cert),
    FIELD("proxy", "defaultKey", F_STRING, proxy_default_key),
    FIELD("proxy", "tlsSessionCache", F_NUMBER, proxy_tls_session_cache),
    FIELD("proxy", "hsts", F_NUMBER, proxy_hsts_seconds),
    FIELD("kubernetes", "kubeconfig", F_STRING, kube_kubeconfig),
    FIELD("kubernetes", "manifests", F_STRING, kube_manifests),
    FIELD("kubernetes", "namespace", F_STRING, kube_namespace),
    FIELD("kubernetes", "context", F_STRING, kube_context),
    FIELD("kubernetes", "leaseNamespace", F_STRING, kube_lease_namespace),
    FIELD("kubernetes", "watchIdleTimeout", F_DURATION, kube_watch_idle_timeout_ms),
    FIELD("kubernetes", "leaseDuration", F_DURATION, kube_lease_duration_ms),
    FIELD("kubernetes", "renewDeadline", F_DURATION, kube_renew_deadline_ms),
    FIELD("kubernetes", "retryPeriod", F_DURATION, kube_retry_period_ms),
    FIELD("ingress", "className", F_STRING, ingress_class_name),
    FIELD("ingress", "controller", F_STRING, ingress_controller),
    FIELD("ingress", "publishStatus", F_BOOL, ingress_publish_status),
    FIELD("ingress", "watchWithoutClass", F_BOOL, ingress_watch_without_class),
    FIELD("agent", "stateDir", F_STRING, agent_state_dir),
    FIELD("upgrade", "image", F_STRING, upgrade_image),
    FIELD("upgrade", "trustedKeys", F_STRING, upgrade_trusted_keys),
    FIELD("upgrade", "plainHttp", F_BOOL, upgrade_plain_http),
    FIELD("upgrade", "caFile", F_STRING, upgrade_ca_file),
    FIELD("upgrade", "credentialsFile", F_STRING, upgrade_credentials_file),
    FIELD("upgrade", "tries", F_COUNT, upgrade_tries),
    FIELD("upgrade", "healthTimeout", F_DURATION, upgrade_health_timeout_ms),
    FIELD("upgrade", "checkInterval", F_DURATION, upgrade_check_interval_ms),
    FIELD("upgrade", "esp", F_STRING, upgrade_esp),
    FIELD("upgrade", "reboot", F_BOOL, upgrade_reboot),
};

static const char *const sections[] = { "node", "proxy", "kubernetes", "ingress", "agent", "upgrade",
                                         NULL };
static const char *const skipped_sections[] = { "dns", NULL };

void node_config_defaults(struct node_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->proxy_admin, sizeof cfg->proxy_admin, "127.0.0.1:9901");
    snprintf(cfg->proxy_routes, sizeof cfg->proxy_routes, "/var/lib/gatehouse/routes.yaml");
    cfg->proxy_access_log = 1;
    cfg->proxy_max_header_bytes = 16384;
    cfg->proxy_max_body_bytes = 1 << 20;
    cfg->proxy_client_header_timeout_ms = 60000;
    cfg->proxy_client_idle_timeout_ms = 75000;
    cfg->proxy_upstream_connect_timeout_ms = 5000;
    cfg->proxy_upstream_read_timeout_ms = 60000;
    cfg->proxy_upstream_send_timeout_ms = 60000;
    cfg->proxy_endpoint_down_ms = 10000;
    cfg->proxy_drain_timeout_ms = 10000;
    cfg->proxy_tls_session_cache = 10000;
    snprintf(cfg->ingress_class_name, sizeof cfg->ingress_class_name, "gatehouse");
    snprintf(cfg->ingress_controller, sizeof cfg->ingress_controller,
             "gatehouse.dev/ingress-controller");
    cfg->ingress_publish_status = 1;
    cfg->kube_watch_idle_timeout_ms = 90000;
    cfg->kube_lease_duration_ms = 15000;
    cfg->kube_renew_deadline_ms = 10000;
    cfg->kube_retry_period_ms = 2000;
    snprintf(cfg->agent_state_dir, sizeof cfg->agent_state_dir, "/var/lib/gatehouse");
    snprintf(cfg->upgrade_trusted_keys, sizeof cfg->upgrade_trusted_keys, "/etc/gatehouse/trusted-keys");
    snprintf(cfg->upgrade_esp, sizeof cfg->upgrade_esp, "/boot/efi");
    cfg->upgrade_tries = 3;
    cfg->upgrade_health_timeout_ms = 180000;
    cfg->upgrade_check_interval_ms = 300000;
    cfg->upgrade_reboot = 1;
}

/* ---- value parsers: return NULL on success, else what was expected ---- */

/* "1m30s", "1.5s", "500ms", "0" -> milliseconds. */
static const char *parse_duration(const char *s, long long *ms)
{
    static const char *const expected =
        "expected a duration: milliseconds, or a string like \"500ms\", \"5s\", \"1m\", \"1h\"";
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return NULL;
    }
    double total = 0;
    if (!*s)
        return expected;
    while (*s) {
        if (!(*s >= '0' && *s <= '9') && *s != '.')
            return expected;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno)
            return expected;
        s = end;
        double unit;
        if (strncmp(s, "ms", 2) == 0) unit = 1, s += 2;
        else if (*s == 's') unit = 1000, s++;
        else if (*s == 'm') unit = 60000, s++;
        else if (*s == 'h') unit = 3600000, s++;
        else return expected;
        total += v * unit;
    }
    if (!(total <= INT_MAX))
        return "duration is too long (at most 24 days)";
    *ms = (long long)(total + 0.5);
    return NULL;
}

static const char *parse_bytes(const char *s, long long *out)
{
    static const struct { const char *suffix; long long factor; } units[] = {
        { "Ki", 1LL << 10 }, { "Mi", 1LL << 20 }, { "Gi", 1LL << 30 },
        { "k", 1000 }, { "M", 1000000 }, { "G", 1000000000 }, { "", 1 },
    };
    static const char *const expected = "expected a size: bytes, or a string like \"16Ki\", \"1Mi\"";
    if (!*s || !(*s >= '0' && *s <= '9'))
        return expected;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return expected;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (strcmp(end, units[i].suffix) == 0) {
            if (v > (unsigned long long)(LLONG_MAX / units[i].factor))
                return "size is too large";
            *out = (long long)v * units[i].factor;
            return NULL;
        }
    return expected;
}

static const char *check_address(const char *s)
{
    if (!*s)
        return NULL;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return "expected ADDR:PORT (e.g. \"0.0.0.0:80\" or \"[::]:80\")";
    if (s[0] == '[' && colon[-1] != ']')
        return "expected [IPv6]:PORT";
    if (s[0] != '[' && memchr(s, ':', (size_t)(colon - s)))
        return "an IPv6 address needs brackets: [IPv6]:PORT";
    const char *port = colon + 1;
    long p = strspn(port, "0123456789") == strlen(port) && strlen(port) <= 5 && *port
             ? strtol(port, NULL, 10) : 0;
    if (p < 1 || p > 65535)
        return "expected ADDR:PORT with a port in 1..65535";
    return NULL;
}

static const char *check_ip(const char *s)
{
    unsigned char buf[16];
    if (!*s || inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1)
        return NULL;
    return "expected an IPv4 or IPv6 address";
}

static void store_int(void *where, size_t size, long long v)
{
    if (size == sizeof(int)) {
        int i = (int)v;
        memcpy(where, &i, sizeof i);
    } else {
        memcpy(where, &v, sizeof v);
    }
}

/* Stores v into the field; NULL on success, else the problem. */
static const char *set_field(struct node_config *cfg, const struct field *f, const json_t *v)
{
    char *where = (char *)cfg + f->offset;
    long long n = 0;
    const char *problem = NULL;
    switch (f->kind) {
    case F_STRING:
    case F_ADDRESS:
    case F_IP: {
        if (!json_is_string(v))
            return "expected a string";
        const char *s = json_string_value(v);
        if (strlen(s) != json_string_length(v))
            return "contains a NUL character";
        if (json_string_length(v) >= f->size)
            return "is too long";
        if (f->kind == F_ADDRESS && (problem = check_address(s)))
            return problem;
        if (f->kind == F_IP && (problem = check_ip(s)))
            return problem;
        memcpy(where, s, json_string_length(v) + 1);
        return NULL;
    }
    case F_BOOL:
        if (!json_is_boolean(v))
            return "expected true or false";
        store_int(where, f->size, json_is_true(v));
        return NULL;
    case F_COUNT:
        if (!json_is_integer(v))
            return "expected an integer";
        n = json_integer_value(v);
        if (n < 0 || n > 4096)
            return "expected an integer in 0..4096";
        break;
    case F_NUMBER:
        if (!json_is_integer(v))
            return "expected an integer";
        n = json_integer_value(v);
        if (n < 0 || n > INT_MAX)
            return "expected an integer in 0..2147483647";
        break;
    case F_BYTES:
        if (json_is_integer(v))
            n = json_integer_value(v);
        else if (json_is_string(v))
            problem = parse_bytes(json_string_value(v), &n);
        else
            return "expected an integer or a string like \"16Ki\"";
        if (problem)
            return problem;
        if (n < 0)
            return "must not be negative";
        break;
    case F_DURATION:
    case F_TIMEOUT:
        if (json_is_integer(v))
            n = json_integer_value(v);
        else if (json_is_string(v))
            problem = parse_duration(json_string_value(v), &n);
        else
            return "expected a duration: milliseconds, or a string like \"5s\"";
        if (problem)
            return problem;
        if (n < 0 || n > INT_MAX)
            return "expected a duration of 0 ms to 24 days";
        if (f->kind == F_TIMEOUT && n == 0)
            return "a timeout must be longer than 0";
        break;
    }
    store_int(where, f->size, n);
    return NULL;
}

/* ---- locating keys for messages ---- */

/* Line (1-based) of the key section[.key] in the YAML text, 0 if not found. */
static size_t find_key_line(const char *data, size_t len, const char *section, const char *key)
{
    const char *path[2] = { section, key };
    size_t want_depth = key ? 2 : 1;
    struct level { int is_map, want_key, on_path, key_matched; } st[64];
    size_t depth = 0, line = 0;
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    for (int done = 0; !done && !line;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev))
            break;
        struct level *top = depth ? &st[depth - 1] : NULL;
        int is_key = top && top->is_map && top->want_key;
        switch (ev.type) {
        case YAML_SCALAR_EVENT:
        case YAML_ALIAS_EVENT:
            if (is_key) {
                top->want_key = 0;
                top->key_matched = top->on_path && depth <= want_depth &&
                    ev.type == YAML_SCALAR_EVENT &&
                    strcmp((const char *)ev.data.scalar.value, path[depth - 1]) == 0;
                if (top->key_matched && depth == want_depth)
                    line = ev.start_mark.line + 1;
            } else if (top && top->is_map) {
                top->want_key = 1;
            }
            break;
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            if (depth == sizeof st / sizeof *st) {
                done = 1;
                break;
            }
            st[depth] = (struct level){ .is_map = ev.type == YAML_MAPPING_START_EVENT,
                                        .want_key = 1,
                                        .on_path = depth == 0 || (top->is_map && top->key_matched) };
            if (is_key)
                top->want_key = 0, top->key_matched = 0;
            depth++;
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            if (depth > 0 && --depth > 0 && st[depth - 1].is_map)
                st[depth - 1].want_key = 1;
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return line;
}

/* ---- loading ---- */

struct load {
    const char *path;
    const char *data;
    size_t len;
    char *err;
    size_t errlen;
};

static int key_error(const struct load *l, const char *section, const char *key,
                     const char *problem)
{
    size_t line = find_key_line(l->data, l->len, section, key);
    char where[300];
    if (line)
        snprintf(where, sizeof where, "%s:%zu", l->path, line);
    else
        snprintf(where, sizeof where, "%s", l->path);
    snprintf(l->err, l->errlen, "%s: %s%s%s: %s", where, section, key ? "." : "", key ? key : "",
             problem);
    return -1;
}

static const struct field *find_field(const char *section, const char *key)
{
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        if (strcmp(fields[i].section, section) == 0 && strcmp(fields[i].key, key) == 0)
            return &fields[i];
    return NULL;
}

static int is_one_of(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

static int apply_section(const struct load *l, struct node_config *cfg, const char *section,
                         const json_t *obj)
{
    if (json_is_null(obj))
        return 0;
    if (!json_is_object(obj))
        return key_error(l, section, NULL, "expected a mapping");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        const struct field *f = find_field(section, key);
        if (!f) {
            log_warn("%s: unknown key %s.%s (ignored)", l->path, section, key);
            continue;
        }
        if (json_is_null(v))
            continue;
        const char *problem = set_field(cfg, f, v);
        if (problem)
            return key_error(l, section, key, problem);
    }
    return 0;
}

static int apply_document(const struct load *l, struct node_config *cfg, const json_t *doc)
{
    if (!json_is_object(doc)) {
        snprintf(l->err, l->errlen, "%s: the node config must be a mapping", l->path);
        return -1;
    }
    const char *section;
    const json_t *body;
    json_object_foreach((json_t *)doc, section, body) {
        if (is_one_of(section, skipped_sections))
            continue;
        if (!is_one_of(section, sections)) {
            log_warn("%s: unknown section %s (ignored)", l->path, section);
            continue;
        }
        if (apply_section(l, cfg, section, body) < 0)
            return -1;
    }
    const json_t *agent = json_object_get(doc, "agent");
    const json_t *proxy = json_object_get(doc, "proxy");
    if (json_is_string(json_object_get(agent, "stateDir")) && !json_object_get(proxy, "routes"))
        snprintf(cfg->proxy_routes, sizeof cfg->proxy_routes, "%.*s/routes.yaml",
                 (int)(sizeof cfg->proxy_routes - sizeof "/routes.yaml"), cfg->agent_state_dir);
    return 0;
}

static char *read_small_file(const char *path, size_t *len, int *missing, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rbe");
    if (!f) {
        *missing = errno == ENOENT;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, CONFIG_MAX_BYTES + 1, f) : 0;
    int failed = !buf || ferror(f);
    const char *why = !buf ? "out of memory" : failed ? strerror(errno) : "larger than 1 MiB";
    fclose(f);
    if (failed || n > CONFIG_MAX_BYTES) {
        snprintf(err, errlen, "%s: cannot read: %s", path, why);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int node_config_load(struct node_config *cfg, const char *path, int missing_ok,
                     char *err, size_t errlen)
{
    size_t len = 0;
    int missing = 0;
    char *data = read_small_file(path, &len, &missing, err, errlen);
    if (!data)
        return missing && missing_ok ? 0 : -1;

    struct yaml_error yerr;
    json_t *docs = yaml_parse_stream(data, len, &yerr);
    int rc = 0;
    if (!docs) {
        snprintf(err, errlen, "%s:%zu:%zu: %s", path, yerr.line, yerr.column, yerr.reason);
        rc = -1;
    } else if (json_array_size(docs) > 1) {
        snprintf(err, errlen, "%s: holds %zu YAML documents, expected one", path,
                 json_array_size(docs));
        rc = -1;
    } else if (json_array_size(docs) == 1) {   /* an empty file leaves the defaults */
        /* Work on a copy: a file with an error changes nothing. */
        struct node_config *next = malloc(sizeof *next);
        struct load l = { path, data, len, err, errlen };
        if (!next) {
            snprintf(err, errlen, "%s: out of memory", path);
            rc = -1;
        } else {
            *next = *cfg;
            rc = apply_document(&l, next, json_array_get(docs, 0));
            if (rc == 0)
                *cfg = *next;
            free(next);
        }
    }
    json_decref(docs);
    free(data);
    return rc;
}
