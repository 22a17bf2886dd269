/*
 * kubeconfig.c - a kubeconfig file or the in-cluster environment turned into struct kube_config.
 *
 * The kubeconfig is read by lib/yaml_json into a jansson tree and walked with type checks: it is
 * a user's file, often hand-edited, so every wrong shape gets a message naming the file and the
 * item. The pieces here:
 *  - the walk: current-context (or the caller's) -> context -> cluster and user;
 *  - file and -data values (strict base64, decoded here: BearSSL has no general decoder);
 *  - the server URL, rewritten for curl over BearSSL, which cannot verify a certificate for an IP
 *    address: with an IP server the URL names the certificate's DNS name and `resolve` maps it
 *    back to the IP (CURLOPT_RESOLVE). A tls-server-name different from a DNS host is handled
 *    the same way, with the host resolved once here (curl's resolve list takes addresses only);
 *  - the in-cluster variant, from KUBERNETES_SERVICE_HOST/_PORT and the service-account folder.
 * http:// servers are accepted (test clusters, kubectl proxy); TLS settings then do nothing.
 */
#include "kubeconfig.h"

#include "base64.h"
#include "file_read.h"
#include "k8s_object.h"
#include "log.h"
#include "yaml_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define KUBE_FILE_MAX (16u << 20)   /* a CA bundle, certificate or key larger than this is a mistake */

/* ---- small helpers ---- */

void kube_wipe_free(void *p, size_t len)
{
    if (p) {
        explicit_bzero(p, len);
        free(p);
    }
}

void kube_wipe_free_str(char *p)
{
    if (p)
        kube_wipe_free(p, strlen(p));
}

static void free_strv(char **v, int secret)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        secret ? kube_wipe_free_str(*p) : free(*p);
    free(v);
}

static const char *file_error(void)
{
    return errno == EFBIG ? "file is too large" : strerror(errno);
}

/* A -data value: standard base64 with padding; line breaks are skipped, as Go's decoder skips
 * the ones long values are often wrapped with. Empty is not a value. */
static int base64_decode_alloc(const char *in, char **out, size_t *outlen)
{
    size_t n = strlen(in), cap = BASE64_DECODED_MAX(n);
    char *buf = malloc(cap + 1);
    if (!buf)
        return -1;
    long used = base64_decode(in, n, (unsigned char *)buf, cap, BASE64_SKIP_SPACE, NULL);
    if (used <= 0) {
        kube_wipe_free(buf, cap + 1);
        return -1;
    }
    buf[used] = '\0';
    *out = buf;
    *outlen = (size_t)used;
    return 0;
}

/* ---- the server URL ---- */

struct server_parts {
    int tls;                 /* https */
    char host[256];          /* without brackets */
    int family;              /* AF_INET / AF_INET6 for an IP literal, else 0 */
    unsigned port;
    const char *prefix;      /* points into the server string; trailing '/' cut by prefix_len */
    size_t prefix_len;
};

static int valid_dns_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.' || ch == '_'))
            return 0;
    }
    return 1;
}

static int parse_port(const char *s, size_t n, unsigned *port)
{
    if (n == 0 || n > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = v;
    return 0;
}

static int parse_authority(const char *a, size_t n, struct server_parts *sp, char *why, size_t whylen)
{
    const char *end = a + n, *host = a, *hend, *rest;
    int bracketed = n > 0 && a[0] == '[';
    if (bracketed) {
        const char *close = memchr(a, ']', n);
        if (!close)
            return set_err(why, whylen, "has an unclosed '[' in its host");
        host = a + 1;
        hend = close;
        rest = close + 1;
    } else {
        hend = memchr(a, ':', n);
        if (!hend)
            hend = end;
        rest = hend;
    }
    size_t hlen = (size_t)(hend - host);
    if (hlen == 0 || hlen >= sizeof sp->host)
        return set_err(why, whylen, "has no valid host");
    memcpy(sp->host, host, hlen);
    sp->host[hlen] = '\0';
    if (rest < end && (*rest != ':' || parse_port(rest + 1, (size_t)(end - rest - 1), &sp->port) < 0))
        return set_err(why, whylen, "has an invalid port");
    unsigned char addr[16];
    if (bracketed) {
        if (inet_pton(AF_INET6, sp->host, addr) != 1)
            return set_err(why, whylen, "has an invalid IPv6 address (zone indexes are not supported)");
        sp->family = AF_INET6;
    } else if (inet_pton(AF_INET, sp->host, addr) == 1) {
        sp->family = AF_INET;
    } else if (!valid_dns_name(sp->host)) {
        return set_err(why, whylen, "has an invalid host name");
    }
    return 0;
}

static int parse_server(const char *server, struct server_parts *sp, char *why, size_t whylen)
{
    memset(sp, 0, sizeof *sp);
    const char *p;
    if (strncasecmp(server, "https://", 8) == 0) {
        sp->tls = 1;
        sp->port = 443;
        p = server + 8;
    } else if (strncasecmp(server, "http://", 7) == 0) {
        sp->port = 80;
        p = server + 7;
    } else {
        return set_err(why, whylen, "must start with https:// (or http://)");
    }
    if (strpbrk(p, "?#"))
        return set_err(why, whylen, "must not have a query or fragment");
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f)
            return set_err(why, whylen, "must not contain spaces or control characters");
    size_t alen = strcspn(p, "/");
    if (memchr(p, '@', alen))
        return set_err(why, whylen, "must not carry user information");
    if (parse_authority(p, alen, sp, why, whylen) < 0)
        return -1;
    sp->prefix = p + alen;
    sp->prefix_len = strlen(sp->prefix);
    while (sp->prefix_len > 0 && sp->prefix[sp->prefix_len - 1] == '/')
        sp->prefix_len--;
    return 0;
}

/* The first address of a DNS name, as text, for CURLOPT_RESOLVE. */
static int resolve_once(const char *host, char *ip, size_t iplen, int *family, char *why, size_t whylen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0)
        return set_err(why, whylen, "cannot resolve \"%s\": %s", host,
                       rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    rc = getnameinfo(res->ai_addr, res->ai_addrlen, ip, (socklen_t)iplen, NULL, 0, NI_NUMERICHOST);
    *family = res->ai_family;
    freeaddrinfo(res);
    if (rc != 0)
        return set_err(why, whylen, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
    return 0;
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* Sets out->url and out->resolve from the configured server and tls-server-name (may be NULL). */
static int make_url(const char *server, const char *tls_name, struct kube_config *out, char *why,
                    size_t whylen)
{
    struct server_parts sp;
    if (parse_server(server, &sp, why, whylen) < 0)
        return -1;
    if (tls_name && !valid_dns_name(tls_name))
        return set_err(why, whylen, "tls-server-name \"%s\" is not a DNS name", tls_name);
    const char *name = sp.host;
    char ip[sizeof sp.host] = "";
    int family = sp.family;
    if (sp.tls && sp.family) {
        name = tls_name ? tls_name : KUBE_IP_SERVER_NAME;
        snprintf(ip, sizeof ip, "%s", sp.host);
    } else if (sp.tls && tls_name && strcasecmp(tls_name, sp.host) != 0) {
        if (resolve_once(sp.host, ip, sizeof ip, &family, why, whylen) < 0)
            return -1;
        name = tls_name;
    }
    int v6 = !ip[0] && family == AF_INET6;   /* an http:// IPv6 server keeps its literal */
    out->url = str_printf("%s://%s%s%s:%u%.*s", sp.tls ? "https" : "http", v6 ? "[" : "", name,
                          v6 ? "]" : "", sp.port, (int)sp.prefix_len, sp.prefix);
    if (ip[0])
        out->resolve = str_printf(family == AF_INET6 ? "%s:%u:[%s]" : "%s:%u:%s", name, sp.port, ip);
    if (!out->url || (ip[0] && !out->resolve))
        return set_err(why, whylen, "out of memory");
    return 0;
}

/* ---- walking the kubeconfig ---- */

struct loader {
    const char *path;        /* the kubeconfig, for messages */
    char dir[4096];          /* its folder, for relative paths */
    char *err;
    size_t errlen;
};

static int fail(struct loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct loader *ld, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return set_err(ld->err, ld->errlen, "kubeconfig %s: %s", ld->path, msg);
}

/* A string field: 0 absent (or ""), 1 present, -1 wrong type (reported; what names the item). */
static int get_str(struct loader *ld, const json_t *obj, const char *key, const char *what,
                   const char **out)
{
    *out = NULL;
    switch (k8s_string(obj, key, out)) {
    case K8S_ABSENT:
        return 0;
    case K8S_WRONG_TYPE:
        return fail(ld, "%s: %s must be a string, got %s", what, key,
                    k8s_type_name(json_object_get(obj, key)));
    default:
        if (!**out) {
            *out = NULL;
            return 0;
        }
        return 1;
    }
}

/* A relative path is relative to the kubeconfig's folder, as kubectl reads it. */
static char *resolve_path(struct loader *ld, const char *p)
{
    if (p[0] == '/' || !ld->dir[0])
        return strdup(p);
    return str_printf("%s/%s", ld->dir, p);
}

/* FILE / FILE-data pair (e.g. certificate-authority): -data wins when both are given. Leaves
 * *out NULL when neither is. */
static int get_blob(struct loader *ld, const json_t *obj, const char *key, const char *what,
                    char **out, size_t *len)
{
    char data_key[64];
    snprintf(data_key, sizeof data_key, "%s-data", key);
    const char *file, *data;
    if (get_str(ld, obj, key, what, &file) < 0 || get_str(ld, obj, data_key, what, &data) < 0)
        return -1;
    if (data) {
        if (base64_decode_alloc(data, out, len) < 0)
            return fail(ld, "%s: %s is not valid base64", what, data_key);
        return 0;
    }
    if (!file)
        return 0;
    char *full = resolve_path(ld, file);
    if (!full)
        return fail(ld, "out of memory");
    *out = file_read_all(full, KUBE_FILE_MAX, len);
    int rc = *out ? 0 : -1;
    if (rc < 0)
        fail(ld, "%s: %s %s: %s", what, key, full, file_error());
    else if (*len == 0)
        rc = fail(ld, "%s: %s %s is empty", what, key, full);
    free(full);
    return rc;
}

/* The inner mapping of the entry called name in a named list (contexts, clusters, users).
 * 0 found, 1 not found, -1 malformed (reported). */
static int find_named(struct loader *ld, const json_t *root, const char *list, const char *inner,
                      const char *name, const json_t **out)
{
    const json_t *arr;
    enum k8s_field f = k8s_array(root, list, &arr);
    if (f == K8S_ABSENT)
        return 1;
    if (f == K8S_WRONG_TYPE)
        return fail(ld, "%s must be a list, got %s", list, k8s_type_name(json_object_get(root, list)));
    size_t i;
    const json_t *entry;
    json_array_foreach(arr, i, entry) {
        char what[64];
        snprintf(what, sizeof what, "%s[%zu]", list, i);
        if (!json_is_object(entry))
            return fail(ld, "%s must be a mapping, got %s", what, k8s_type_name(entry));
        const char *n;
        if (get_str(ld, entry, "name", what, &n) < 0)
            return -1;
        if (!n || strcmp(n, name) != 0)
            continue;
        f = k8s_object(entry, inner, out);
        if (f == K8S_PRESENT)
            return 0;
        if (f == K8S_WRONG_TYPE)
            return fail(ld, "%s \"%s\": %s must be a mapping, got %s", inner, name, inner,
                        k8s_type_name(json_object_get(entry, inner)));
        return fail(ld, "%s \"%s\" has no %s mapping", inner, name, inner);
    }
    return 1;
}

static int load_cluster(struct loader *ld, const json_t *cl, const char *name, struct kube_config *out)
{
    char what[300];
    snprintf(what, sizeof what, "cluster \"%s\"", name);
    const char *server, *tls_name;
    if (get_str(ld, cl, "server", what, &server) < 0 || get_str(ld, cl, "tls-server-name", what, &tls_name) < 0)
        return -1;
    if (!server)
        return fail(ld, "%s has no server", what);
    if (k8s_boolean(cl, "insecure-skip-tls-verify", &out->insecure) == K8S_WRONG_TYPE)
        return fail(ld, "%s: insecure-skip-tls-verify must be a boolean, got %s", what,
                    k8s_type_name(json_object_get(cl, "insecure-skip-tls-verify")));
    if (!(out->server = strdup(server)))
        return fail(ld, "out of memory");
    char why[300];
    if (make_url(server, tls_name, out, why, sizeof why) < 0)
        return fail(ld, "%s: server \"%s\" %s", what, server, why);
    return get_blob(ld, cl, "certificate-authority", what, &out->ca_pem, &out->ca_len);
}

static int load_exec_args(struct loader *ld, const json_t *ex, const char *what, const char *cmd,
                          struct kube_exec_plugin *pl)
{
    const json_t *args = NULL;
    enum k8s_field f = k8s_array(ex, "args", &args);
    if (f == K8S_WRONG_TYPE)
        return fail(ld, "%s: exec.args must be a list, got %s", what,
                    k8s_type_name(json_object_get(ex, "args")));
    size_t n = args ? json_array_size(args) : 0;
    if (!(pl->argv = calloc(n + 2, sizeof *pl->argv)))
        return fail(ld, "out of memory");
    char *full = strchr(cmd, '/') ? resolve_path(ld, cmd) : strdup(cmd);
    if (!(pl->argv[0] = full))
        return fail(ld, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *a = json_string_value(json_array_get(args, i));
        if (!a)
            return fail(ld, "%s: exec.args[%zu] must be a string, got %s", what, i,
                        k8s_type_name(json_array_get(args, i)));
        if (!(pl->argv[i + 1] = strdup(a)))
            return fail(ld, "out of memory");
    }
    return 0;
}

static int load_exec_env(struct loader *ld, const json_t *ex, const char *what, struct kube_exec_plugin *pl)
{
    const json_t *env = NULL;
    enum k8s_field f = k8s_array(ex, "env", &env);
    if (f == K8S_WRONG_TYPE)
        return fail(ld, "%s: exec.env must be a list, got %s", what,
                    k8s_type_name(json_object_get(ex, "env")));
    size_t n = env ? json_array_size(env) : 0;
    if (!(pl->env = calloc(n + 1, sizeof *pl->env)))
        return fail(ld, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(env, i);
        char item[340];
        snprintf(item, sizeof item, "%s: exec.env[%zu]", what, i);
        if (!json_is_object(e))
            return fail(ld, "%s must be a mapping, got %s", item, k8s_type_name(e));
        const char *name, *value;
        if (get_str(ld, e, "name", item, &name) < 0 || k8s_string(e, "value", &value) == K8S_WRONG_TYPE)
            return fail(ld, "%s: name and value must be strings", item);
        if (!name || strchr(name, '='))
            return fail(ld, "%s: name must be a non-empty string without '='", item);
        if (!(pl->env[i] = str_printf("%s=%s", name, value ? value : "")))
            return fail(ld, "out of memory");
    }
    return 0;
}

static int load_exec(struct loader *ld, const json_t *ex, const char *what, struct kube_config *out)
{
    const char *api, *cmd, *mode;
    if (get_str(ld, ex, "apiVersion", what, &api) < 0 || get_str(ld, ex, "command", what, &cmd) < 0 ||
        get_str(ld, ex, "interactiveMode", what, &mode) < 0)
        return -1;
    if (!api || (strcmp(api, "client.authentication.k8s.io/v1") != 0 &&
                 strcmp(api, "client.authentication.k8s.io/v1beta1") != 0))
        return fail(ld, "%s: exec.apiVersion must be client.authentication.k8s.io/v1 or /v1beta1", what);
    if (!cmd)
        return fail(ld, "%s: exec has no command", what);
    if (mode && strcmp(mode, "Always") == 0)
        return fail(ld, "%s: exec plugin \"%s\" needs a terminal (interactiveMode Always)", what, cmd);
    struct kube_exec_plugin *pl = calloc(1, sizeof *pl);
    if (!pl)
        return fail(ld, "out of memory");
    out->exec = pl;
    if (!(pl->api_version = strdup(api)))
        return fail(ld, "out of memory");
    if (load_exec_args(ld, ex, what, cmd, pl) < 0)
        return -1;
    return load_exec_env(ld, ex, what, pl);
}

static int load_token_sources(struct loader *ld, const json_t *u, const char *what, struct kube_config *out)
{
    const char *token, *token_file;
    if (get_str(ld, u, "token", what, &token) < 0 || get_str(ld, u, "tokenFile", what, &token_file) < 0)
        return -1;
    if (token && !(out->token = strdup(token)))
        return fail(ld, "out of memory");
    if (!token_file)
        return 0;
    if (!(out->token_file = resolve_path(ld, token_file)))
        return fail(ld, "out of memory");
    if (access(out->token_file, R_OK) < 0)
        return fail(ld, "%s: tokenFile %s: %s", what, out->token_file, strerror(errno));
    return 0;
}

static int load_user(struct loader *ld, const json_t *u, const char *name, struct kube_config *out)
{
    char what[300];
    snprintf(what, sizeof what, "user \"%s\"", name);
    if (json_object_get(u, "auth-provider") && !json_is_null(json_object_get(u, "auth-provider")))
        return fail(ld, "%s: auth-provider is not supported (use an exec plugin)", what);
    if (json_object_get(u, "username") || json_object_get(u, "password"))
        return fail(ld, "%s: basic authentication (username/password) is not supported", what);
    if (get_blob(ld, u, "client-certificate", what, &out->client_cert_pem, &out->client_cert_len) < 0 ||
        get_blob(ld, u, "client-key", what, &out->client_key_pem, &out->client_key_len) < 0)
        return -1;
    if (!out->client_cert_pem != !out->client_key_pem)
        return fail(ld, "%s: %s", what, out->client_cert_pem ? "client-certificate without client-key"
                                                             : "client-key without client-certificate");
    if (load_token_sources(ld, u, what, out) < 0)
        return -1;
    const json_t *ex;
    enum k8s_field f = k8s_object(u, "exec", &ex);
    if (f == K8S_WRONG_TYPE)
        return fail(ld, "%s: exec must be a mapping, got %s", what, k8s_type_name(json_object_get(u, "exec")));
    return f == K8S_PRESENT ? load_exec(ld, ex, what, out) : 0;
}

/* The context named (or current), its cluster and user, into out. */
static int load_context(struct loader *ld, const json_t *root, const char *context, struct kube_config *out)
{
    const char *name = context;
    if (!name && get_str(ld, root, "current-context", "top level", &name) < 0)
        return -1;
    if (!name)
        return fail(ld, "current-context is not set and no context was given");
    const json_t *ctx, *cl, *u = NULL;
    int rc = find_named(ld, root, "contexts", "context", name, &ctx);
    if (rc != 0)
        return rc < 0 ? -1 : fail(ld, "%s\"%s\" is not in contexts", context ? "context " : "current-context ", name);
    char what[300];
    snprintf(what, sizeof what, "context \"%s\"", name);
    const char *cluster, *user, *ns;
    if (get_str(ld, ctx, "cluster", what, &cluster) < 0 || get_str(ld, ctx, "user", what, &user) < 0 ||
        get_str(ld, ctx, "namespace", what, &ns) < 0)
        return -1;
    if (!cluster)
        return fail(ld, "%s names no cluster", what);
    if ((rc = find_named(ld, root, "clusters", "cluster", cluster, &cl)) != 0)
        return rc < 0 ? -1 : fail(ld, "%s names cluster \"%s\", which is not in clusters", what, cluster);
    if (user && (rc = find_named(ld, root, "users", "user", user, &u)) != 0)
        return rc < 0 ? -1 : fail(ld, "%s names user \"%s\", which is not in users", what, user);
    if (ns && !(out->ns = strdup(ns)))
        return fail(ld, "out of memory");
    if (!(out->origin = str_printf("kubeconfig %s (context %s)", ld->path, name)))
        return fail(ld, "out of memory");
    if (load_cluster(ld, cl, cluster, out) < 0)
        return -1;
    return u ? load_user(ld, u, user, out) : 0;
}

int kubeconfig_load(const char *path, const char *context, struct kube_config *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct loader ld = {.path = path, .err = err, .errlen = errlen};
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(ld.dir, sizeof ld.dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    struct yaml_error yerr;
    json_t *root = yaml_load_file_single(path, &yerr);
    if (!root) {
        if (yerr.line)
            return set_err(err, errlen, "kubeconfig %s:%zu:%zu: %s", path, yerr.line, yerr.column, yerr.reason);
        return set_err(err, errlen, "kubeconfig %s: %s", path, yerr.reason);
    }
    int rc = json_is_object(root) ? load_context(&ld, root, context, out)
                                  : fail(&ld, "must be a mapping, got %s", k8s_type_name(root));
    json_decref(root);
    if (rc < 0)
        kube_config_free(out);
    return rc < 0 ? -1 : 0;
}

/* ---- in-cluster ---- */

static int sa_file(const char *sa_dir, const char *name, char **data, size_t *len, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", sa_dir, name);
    if (!(*data = file_read_all(path, KUBE_FILE_MAX, len)))
        return set_err(err, errlen, "in-cluster: %s: %s", path, file_error());
    return 0;
}

static char *trimmed_copy(const char *s, size_t len)
{
    while (len > 0 && strchr(" \t\r\n", s[len - 1]))
        len--;
    while (len > 0 && strchr(" \t\r\n", *s))
        s++, len--;
    return len ? strndup(s, len) : NULL;
}

static int incluster_files(const char *sa_dir, struct kube_config *out, char *err, size_t errlen)
{
    char *data;
    size_t len;
    if (sa_file(sa_dir, "token", &data, &len, err, errlen) < 0)
        return -1;
    char *token = trimmed_copy(data, len);
    kube_wipe_free(data, len);
    if (!token)
        return set_err(err, errlen, "in-cluster: %s/token is empty", sa_dir);
    kube_wipe_free_str(token);
    if (!(out->token_file = str_printf("%s/token", sa_dir)))
        return set_err(err, errlen, "out of memory");
    if (sa_file(sa_dir, "ca.crt", &out->ca_pem, &out->ca_len, err, errlen) < 0)
        return -1;
    if (out->ca_len == 0)
        return set_err(err, errlen, "in-cluster: %s/ca.crt is empty", sa_dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/namespace", sa_dir);
    if ((data = file_read_all(path, 4096, &len))) {
        out->ns = trimmed_copy(data, len);
        free(data);
    } else if (errno != ENOENT) {
        return set_err(err, errlen, "in-cluster: %s: %s", path, file_error());
    }
    return 0;
}

int kube_incluster_load(const char *sa_dir, struct kube_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host)
        return set_err(err, errlen, "not in a cluster: KUBERNETES_SERVICE_HOST is not set, and no kubeconfig was given");
    if (!port || !*port)
        port = "443";
    int v6 = strchr(host, ':') != NULL;
    char why[300];
    if (!(out->server = str_printf("https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port)) ||
        !(out->origin = strdup("in-cluster"))) {
        kube_config_free(out);
        return set_err(err, errlen, "out of memory");
    }
    if (make_url(out->server, NULL, out, why, sizeof why) < 0) {
        set_err(err, errlen, "in-cluster: server \"%s\" (KUBERNETES_SERVICE_HOST/_PORT) %s", out->server, why);
        kube_config_free(out);
        return -1;
    }
    if (incluster_files(sa_dir, out, err, errlen) < 0) {
        kube_config_free(out);
        return -1;
    }
    return 0;
}

void kube_config_free(struct kube_config *c)
{
    free(c->url);
    free(c->resolve);
    free(c->server);
    free(c->ca_pem);
    free(c->client_cert_pem);
    kube_wipe_free(c->client_key_pem, c->client_key_len);
    kube_wipe_free_str(c->token);
    free(c->token_file);
    if (c->exec) {
        free(c->exec->api_version);
        free_strv(c->exec->argv, 0);
        free_strv(c->exec->env, 1);     /* plugin env often carries secrets */
        free(c->exec);
    }
    free(c->ns);
    free(c->origin);
    memset(c, 0, sizeof *c);
}
