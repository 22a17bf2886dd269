/*
 * kube_credentials.c - the bearer token / client certificate of struct kube_config, kept current.
 *
 * Three sources, any of which may be configured: a static token (never changes), a token file
 * (re-read when a minute old or after a 401: kubelet rotates projected service-account tokens in
 * place) and an exec credential plugin (re-run after a 401, or when its expirationTimestamp is
 * less than a minute away). The plugin's credential wins over the file's, which wins over the
 * static token, as in client-go.
 *
 * Running a plugin: posix_spawnp with our environment plus the kubeconfig's env and
 * KUBERNETES_EXEC_INFO, stdin from /dev/null, stdout into a pipe read with poll() against one
 * deadline, in a process group of its own so a timeout kills whatever it started too. The child
 * is always reaped. Its output is bounded and then parsed as an ExecCredential with jansson.
 *
 * Tokens and keys live in buffers wiped before they are freed; no message carries them (JSON
 * parse errors are cut before jansson quotes the offending text).
 */
#include "kube_credentials.h"

#include "file_read.h"
#include "k8s_object.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOKEN_FILE_MAX (1u << 20)
#define EXEC_OUTPUT_MAX (1u << 20)
#define EXPIRY_MARGIN_S 60

struct kube_credentials {
    const struct kube_config *cfg;
    int exec_timeout_s;

    char *file_token;          /* the token file's content, trimmed; NULL until read */
    int64_t file_read_at;
    int file_stale;            /* a 401 came since the last read */

    char *exec_token;          /* the plugin's last credential (any part may be NULL) */
    char *exec_cert;
    size_t exec_cert_len;
    char *exec_key;
    size_t exec_key_len;
    int exec_have;
    int exec_stale;
    int exec_expires;          /* exec_expiry is meaningful */
    int64_t exec_expiry;

    unsigned cert_generation;
};

struct kube_credentials *kube_credentials_new(const struct kube_config *cfg)
{
    struct kube_credentials *c = calloc(1, sizeof *c);
    if (c) {
        c->cfg = cfg;
        c->exec_timeout_s = KUBE_EXEC_TIMEOUT_S;
    }
    return c;
}

void kube_credentials_free(struct kube_credentials *c)
{
    if (!c)
        return;
    kube_wipe_free_str(c->file_token);
    kube_wipe_free_str(c->exec_token);
    kube_wipe_free(c->exec_cert, c->exec_cert_len);
    kube_wipe_free(c->exec_key, c->exec_key_len);
    free(c);
}

void kube_credentials_set_exec_timeout(struct kube_credentials *c, int seconds)
{
    c->exec_timeout_s = seconds > 0 ? seconds : 1;
}

void kube_credentials_invalidate(struct kube_credentials *c)
{
    c->file_stale = 1;
    c->exec_stale = 1;
}

/* ---- token file ---- */

static int token_file_due(const struct kube_credentials *c, int64_t now)
{
    return !c->file_token || c->file_stale || now - c->file_read_at >= KUBE_TOKEN_FILE_MAX_AGE_S ||
           now < c->file_read_at;     /* the clock went back: do not trust the age */
}

static int read_token_file(struct kube_credentials *c, int64_t now, char *err, size_t errlen)
{
    const char *path = c->cfg->token_file;
    char *data;
    size_t len;
    if (!(data = file_read_all(path, TOKEN_FILE_MAX, &len)))
        return set_err(err, errlen, "token file %s: %s", path,
                       errno == EFBIG ? "file is too large" : strerror(errno));
    size_t start = 0, end = len;
    while (end > 0 && strchr(" \t\r\n", data[end - 1]))
        end--;
    while (start < end && strchr(" \t\r\n", data[start]))
        start++;
    char *token = end > start ? strndup(data + start, end - start) : NULL;
    kube_wipe_free(data, len);
    if (!token)
        return set_err(err, errlen, end > start ? "token file %s: out of memory" : "token file %s is empty", path);
    kube_wipe_free_str(c->file_token);
    c->file_token = token;
    c->file_read_at = now;
    c->file_stale = 0;
    return 0;
}

/* ---- exec plugin: running it ---- */

static const char *plugin_name(const struct kube_credentials *c)
{
    return c->cfg->exec->argv[0];
}

static int same_name(const char *a, const char *b)
{
    size_t n = strcspn(a, "=");
    return strncmp(a, b, n) == 0 && b[n] == '=';
}

/* environ + the kubeconfig's env + KUBERNETES_EXEC_INFO (info), later entries replacing earlier
 * ones of the same name. The strings are borrowed; only the array is allocated. */
static char **plugin_env(const struct kube_exec_plugin *pl, char *info)
{
    size_t n = 0, extra = 0;
    while (environ && environ[n])
        n++;
    while (pl->env[extra])
        extra++;
    char **env = calloc(n + extra + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        int replaced = same_name(environ[i], info);
        for (size_t j = 0; j < extra && !replaced; j++)
            replaced = same_name(environ[i], pl->env[j]);
        if (!replaced)
            env[used++] = environ[i];
    }
    for (size_t j = 0; j < extra; j++)
        env[used++] = pl->env[j];
    env[used] = info;
    return env;
}

/* The plugin with stdout into a pipe (*out_fd), stdin from /dev/null, signals back to default,
 * in its own process group. */
static int spawn_plugin(const struct kube_exec_plugin *pl, char **env, pid_t *pid, int *out_fd)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return errno;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    int sigs[] = {SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&defaults, sigs[i]);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    int rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!rc)
        rc = posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    if (!rc)
        rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                 POSIX_SPAWN_SETSIGDEF);
    if (!rc)
        rc = posix_spawnattr_setpgroup(&attr, 0);
    if (!rc)
        rc = posix_spawnattr_setsigmask(&attr, &none);
    if (!rc)
        rc = posix_spawnattr_setsigdefault(&attr, &defaults);
    if (!rc)
        rc = posix_spawnp(pid, pl->argv[0], &fa, &attr, pl->argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        return rc;
    }
    *out_fd = fds[0];
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct output {
    char *buf;
    size_t len, cap;
};

static int output_grow(struct output *o)
{
    size_t cap = o->cap ? o->cap * 2 : 4096;
    char *bigger = malloc(cap);
    if (!bigger)
        return -1;
    if (o->len)
        memcpy(bigger, o->buf, o->len);
    kube_wipe_free(o->buf, o->cap);     /* it may hold a token already */
    o->buf = bigger;
    o->cap = cap;
    return 0;
}

/* Reads fd to EOF. Returns 0, or -1 with why (timeout, too much output, read error). */
static int read_output(int fd, int64_t deadline, int timeout_s, struct output *o, char *why, size_t whylen)
{
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            return set_err(why, whylen, "timed out after %d s", timeout_s);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, left > 1000 ? 1000 : (int)left);
        if (n < 0 && errno != EINTR)
            return set_err(why, whylen, "poll: %s", strerror(errno));
        if (n <= 0)
            continue;
        if (o->len + 1 >= o->cap && output_grow(o) < 0)
            return set_err(why, whylen, "out of memory");
        ssize_t got = read(fd, o->buf + o->len, o->cap - 1 - o->len);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0)
            return set_err(why, whylen, "reading its output: %s", strerror(errno));
        if (got == 0)
            return 0;
        o->len += (size_t)got;
        if (o->len > EXEC_OUTPUT_MAX)
            return set_err(why, whylen, "output is larger than %u bytes", EXEC_OUTPUT_MAX);
    }
}

/* Waits for the child (it may linger after closing stdout) until the deadline. */
static int wait_child(pid_t pid, int64_t deadline, int timeout_s, int *status, char *why, size_t whylen)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return set_err(why, whylen, "waitpid: %s", strerror(errno));
        if (mono_ms() >= deadline)
            return set_err(why, whylen, "timed out after %d s", timeout_s);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void kill_and_reap(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Runs the plugin; on success o holds its stdout (NUL-terminated). */
static int run_plugin(struct kube_credentials *c, struct output *o, char *why, size_t whylen)
{
    const struct kube_exec_plugin *pl = c->cfg->exec;
    char info[256];
    snprintf(info, sizeof info, "KUBERNETES_EXEC_INFO={\"apiVersion\":\"%s\",\"kind\":\"ExecCredential\","
             "\"spec\":{\"interactive\":false}}", pl->api_version);
    char **env = plugin_env(pl, info);
    if (!env)
        return set_err(why, whylen, "out of memory");
    pid_t pid = -1;
    int fd = -1;
    int rc = spawn_plugin(pl, env, &pid, &fd);
    free(env);
    if (rc)
        return set_err(why, whylen, "cannot run: %s", strerror(rc));
    int64_t deadline = mono_ms() + (int64_t)c->exec_timeout_s * 1000;
    int status = 0;
    rc = read_output(fd, deadline, c->exec_timeout_s, o, why, whylen);
    close(fd);
    if (rc == 0)
        rc = wait_child(pid, deadline, c->exec_timeout_s, &status, why, whylen);
    if (rc < 0) {
        kill_and_reap(pid);
        return -1;
    }
    if (WIFSIGNALED(status))
        return set_err(why, whylen, "was killed by signal %d", WTERMSIG(status));
    if (WEXITSTATUS(status) != 0)
        return set_err(why, whylen, "exited with status %d", WEXITSTATUS(status));
    if (o->cap == 0 && output_grow(o) < 0)
        return set_err(why, whylen, "out of memory");
    o->buf[o->len] = '\0';
    return 0;
}

/* ---- exec plugin: its answer ---- */

struct exec_result {
    char *token, *cert, *key;
    int expires;
    int64_t expiry;
};

static void result_clear(struct exec_result *r)
{
    kube_wipe_free_str(r->token);
    kube_wipe_free_str(r->cert);
    kube_wipe_free_str(r->key);
    memset(r, 0, sizeof *r);
}

/* Copies a string out of the parsed document and wipes jansson's copy (it is a secret, and
 * jansson frees without wiping). */
static int take_secret(json_t *status, const char *key, char **out)
{
    const char *v = NULL;
    enum k8s_field f = k8s_string(status, key, &v);
    if (f == K8S_WRONG_TYPE)
        return -1;
    if (f == K8S_ABSENT || !*v)
        return 0;
    *out = strdup(v);
    explicit_bzero((char *)v, strlen(v));
    return *out ? 0 : -1;
}

static int parse_status(json_t *status, struct exec_result *r, char *why, size_t whylen)
{
    if (take_secret(status, "token", &r->token) < 0 ||
        take_secret(status, "clientCertificateData", &r->cert) < 0 ||
        take_secret(status, "clientKeyData", &r->key) < 0)
        return set_err(why, whylen, "output is not an ExecCredential: status.token, "
                       "clientCertificateData and clientKeyData must be strings");
    if (!r->cert != !r->key)
        return set_err(why, whylen, "output is not an ExecCredential: status has %s without %s",
                       r->cert ? "clientCertificateData" : "clientKeyData",
                       r->cert ? "clientKeyData" : "clientCertificateData");
    if (!r->token && !r->cert)
        return set_err(why, whylen, "output is not an ExecCredential: status holds neither a token "
                       "nor clientCertificateData and clientKeyData");
    const char *ts;
    enum k8s_field f = k8s_string(status, "expirationTimestamp", &ts);
    struct k8s_time t;
    if (f == K8S_WRONG_TYPE || (f == K8S_PRESENT && k8s_time_parse(ts, &t) < 0))
        return set_err(why, whylen, "output is not an ExecCredential: status.expirationTimestamp "
                       "is not an RFC 3339 time");
    if (f == K8S_PRESENT) {
        r->expires = 1;
        r->expiry = t.seconds;
    }
    return 0;
}

static int parse_credential(const struct kube_exec_plugin *pl, const struct output *o,
                            struct exec_result *r, char *why, size_t whylen)
{
    json_error_t je;
    json_t *doc = json_loadb(o->buf, o->len, 0, &je);
    if (!doc) {
        char *near = strstr(je.text, " near ");   /* jansson would quote the output: a token? */
        if (near)
            *near = '\0';
        return set_err(why, whylen, "output is not an ExecCredential: line %d column %d: %s",
                       je.line, je.column, je.text);
    }
    const char *kind = NULL, *api = NULL;
    json_t *status = NULL;
    int rc;
    if (!json_is_object(doc))
        rc = set_err(why, whylen, "output is not an ExecCredential: a JSON object was expected, got %s",
                     k8s_type_name(doc));
    else if (k8s_string(doc, "kind", &kind) != K8S_PRESENT || strcmp(kind, "ExecCredential") != 0)
        rc = set_err(why, whylen, "output is not an ExecCredential: kind is not ExecCredential");
    else if (k8s_string(doc, "apiVersion", &api) != K8S_PRESENT)
        rc = set_err(why, whylen, "output is not an ExecCredential: it has no apiVersion");
    else if (strcmp(api, pl->api_version) != 0)
        rc = set_err(why, whylen, "output has apiVersion \"%.100s\", want \"%s\"", api, pl->api_version);
    else if (!json_is_object(status = json_object_get(doc, "status")))
        rc = set_err(why, whylen, "output is not an ExecCredential: it has no status mapping");
    else
        rc = parse_status(status, r, why, whylen);
    json_decref(doc);
    return rc;
}

static int same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    return (!a && !b) || (a && b && alen == blen && memcmp(a, b, alen) == 0);
}

static void install_result(struct kube_credentials *c, struct exec_result *r)
{
    size_t cert_len = r->cert ? strlen(r->cert) : 0, key_len = r->key ? strlen(r->key) : 0;
    if (!same_bytes(c->exec_cert, c->exec_cert_len, r->cert, cert_len) ||
        !same_bytes(c->exec_key, c->exec_key_len, r->key, key_len))
        c->cert_generation++;
    kube_wipe_free_str(c->exec_token);
    kube_wipe_free(c->exec_cert, c->exec_cert_len);
    kube_wipe_free(c->exec_key, c->exec_key_len);
    c->exec_token = r->token;
    c->exec_cert = r->cert;
    c->exec_cert_len = cert_len;
    c->exec_key = r->key;
    c->exec_key_len = key_len;
    c->exec_expires = r->expires;
    c->exec_expiry = r->expiry;
    c->exec_have = 1;
    c->exec_stale = 0;
    memset(r, 0, sizeof *r);
}

static int exec_due(const struct kube_credentials *c, int64_t now)
{
    return !c->exec_have || c->exec_stale || (c->exec_expires && c->exec_expiry < now + EXPIRY_MARGIN_S);
}

static int refresh_exec(struct kube_credentials *c, char *err, size_t errlen)
{
    struct output o = {0};
    struct exec_result r = {0};
    char why[300];
    int rc = run_plugin(c, &o, why, sizeof why);
    if (rc == 0)
        rc = parse_credential(c->cfg->exec, &o, &r, why, sizeof why);
    kube_wipe_free(o.buf, o.cap);
    if (rc < 0) {
        result_clear(&r);
        return set_err(err, errlen, "exec plugin \"%s\": %s", plugin_name(c), why);
    }
    install_result(c, &r);
    return 0;
}

/* ---- the interface ---- */

int kube_credentials_refresh(struct kube_credentials *c, int64_t now, char *err, size_t errlen)
{
    int rc = 0;
    if (c->cfg->token_file && token_file_due(c, now))
        rc = read_token_file(c, now, err, errlen);
    if (c->cfg->exec && exec_due(c, now)) {
        char why[512];
        if (refresh_exec(c, why, sizeof why) < 0) {
            if (rc == 0)
                set_err(err, errlen, "%s", why);
            rc = -1;
        }
    }
    return rc;
}

const char *kube_credentials_token(const struct kube_credentials *c)
{
    if (c->exec_token)
        return c->exec_token;
    if (c->file_token)
        return c->file_token;
    return c->cfg->token;
}

const char *kube_credentials_client_cert(const struct kube_credentials *c, size_t *len)
{
    if (c->exec_cert) {
        *len = c->exec_cert_len;
        return c->exec_cert;
    }
    *len = c->cfg->client_cert_pem ? c->cfg->client_cert_len : 0;
    return c->cfg->client_cert_pem;
}

const char *kube_credentials_client_key(const struct kube_credentials *c, size_t *len)
{
    if (c->exec_key) {
        *len = c->exec_key_len;
        return c->exec_key;
    }
    *len = c->cfg->client_key_pem ? c->cfg->client_key_len : 0;
    return c->cfg->client_key_pem;
}

unsigned kube_credentials_cert_generation(const struct kube_credentials *c)
{
    return c->cert_generation;
}
