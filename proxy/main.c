/*
 * main.c - gatehouse-proxy's process shell: flags and node config, start-up order, signals.
 *
 * Start-up order is chosen so that each step can rely on the previous one: the routes are
 * loaded before any port is open (the first request already sees them), the ports are bound
 * while still root, privileges are dropped before the watcher can parse anything new, and every
 * signal of interest is blocked before the first thread exists so that only the main thread,
 * waiting in sigwait(), ever receives them. SIGTERM drains: /readyz turns 503 at once so the
 * load balancer stops sending, in-flight requests finish, and the exit status is 0.
 */
#include "admin.h"
#include "log.h"
#include "metrics.h"
#include "node_config.h"
#include "privileges.h"
#include "reload.h"
#include "server.h"
#include "tls_session_cache.h"
#include "tls_store.h"
#include "tls_transport.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef GATEHOUSE_VERSION
#define GATEHOUSE_VERSION "unknown"
#endif

#define PROGRAM "gatehouse-proxy"
#define DEFAULT_USER "gatehouse"
#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: " PROGRAM " --routes FILE --http ADDR:PORT --admin ADDR:PORT [options]\n"
    "\n"
    "Serves HTTP/1.1 as a reverse proxy for the routes in FILE (written by gatehouse-agent)\n"
    "and reloads them whenever the file is replaced. Flags override the node config.\n"
    "\n"
    "  --routes FILE                  routes file (default /var/lib/gatehouse/routes.yaml)\n"
    "  --http ADDR:PORT               where to serve HTTP, e.g. 0.0.0.0:80\n"
    "  --https ADDR:PORT              where to serve HTTPS (TLS 1.2), e.g. 0.0.0.0:443\n"
    "  --admin ADDR:PORT              /healthz, /readyz, /metrics (default 127.0.0.1:9901)\n"
    "  --workers N                    worker threads, 0 = one per CPU (default 0)\n"
    "  --config FILE                  node config (default " NODE_CONFIG_DEFAULT_PATH ")\n"
    "  --no-access-log                no JSON access log lines on stdout\n"
    "  --default-cert FILE            PEM chain for names without a tls entry (with --default-key;\n"
    "                                 default: a self-signed certificate made at start)\n"
    "  --default-key FILE             its PEM private key (RSA or EC)\n"
    "  --tls-session-cache N          TLS sessions kept for resumption, 0 = off (default 10000)\n"
    "  --hsts SECONDS                 Strict-Transport-Security max-age on HTTPS responses for\n"
    "                                 hosts with a tls entry, 0 = off (default 0)\n"
    "  --user NAME                    when started as root, run as NAME after binding\n"
    "  --max-header-bytes N           larger request heads get 431 (default 16384)\n"
    "  --max-body-bytes N             larger request bodies get 413, 0 = unlimited\n"
    "  --client-header-timeout MS     slower request heads get 408\n"
    "  --upstream-connect-timeout MS  slower upstream connects get 502\n"
    "  --upstream-read-timeout MS     slower upstream responses get 504\n"
    "  --drain-timeout MS             on SIGTERM, wait this long for requests in flight\n"
    "  --help, --version\n"
    "\n"
    "Signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads the routes file.\n";

/* Flag values as given; NULL = not given, so the node config decides. */
struct flags {
    const char *routes, *http, *https, *admin, *config, *user, *default_cert, *default_key;
    const char *workers, *max_header_bytes, *max_body_bytes, *client_header_timeout,
               *upstream_connect_timeout, *upstream_read_timeout, *drain_timeout,
               *tls_session_cache, *hsts;
    int no_access_log;
};

__attribute__((format(printf, 1, 2), noreturn))
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROGRAM ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n%s", usage_text);
    va_end(ap);
    exit(EXIT_USAGE);
}

static void parse_flags(int argc, char **argv, struct flags *f)
{
    enum { O_ROUTES = 256, O_HTTP, O_HTTPS, O_ADMIN, O_WORKERS, O_CONFIG, O_NO_ACCESS_LOG, O_USER,
           O_MAX_HEADER, O_MAX_BODY, O_HEADER_TIMEOUT, O_CONNECT_TIMEOUT, O_READ_TIMEOUT,
           O_DRAIN_TIMEOUT, O_DEFAULT_CERT, O_DEFAULT_KEY, O_TLS_SESSION_CACHE, O_HSTS,
           O_HELP, O_VERSION };
    static const struct option options[] = {
        { "routes", required_argument, NULL, O_ROUTES },
        { "http", required_argument, NULL, O_HTTP },
        { "https", required_argument, NULL, O_HTTPS },
        { "admin", required_argument, NULL, O_ADMIN },
        { "workers", required_argument, NULL, O_WORKERS },
        { "config", required_argument, NULL, O_CONFIG },
        { "no-access-log", no_argument, NULL, O_NO_ACCESS_LOG },
        { "user", required_argument, NULL, O_USER },
        { "max-header-bytes", required_argument, NULL, O_MAX_HEADER },
        { "max-body-bytes", required_argument, NULL, O_MAX_BODY },
        { "client-header-timeout", required_argument, NULL, O_HEADER_TIMEOUT },
        { "upstream-connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT },
        { "upstream-read-timeout", required_argument, NULL, O_READ_TIMEOUT },
        { "drain-timeout", required_argument, NULL, O_DRAIN_TIMEOUT },
        { "default-cert", required_argument, NULL, O_DEFAULT_CERT },
        { "default-key", required_argument, NULL, O_DEFAULT_KEY },
        { "tls-session-cache", required_argument, NULL, O_TLS_SESSION_CACHE },
        { "hsts", required_argument, NULL, O_HSTS },
        { "help", no_argument, NULL, O_HELP },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 },
    };
    opterr = 0;                  /* our own message names the flag and shows the usage */
    for (;;) {
        int opt = getopt_long(argc, argv, ":", options, NULL);
        if (opt == -1)
            break;
        switch (opt) {
        case O_ROUTES: f->routes = optarg; break;
        case O_HTTP: f->http = optarg; break;
        case O_HTTPS: f->https = optarg; break;
        case O_ADMIN: f->admin = optarg; break;
        case O_WORKERS: f->workers = optarg; break;
        case O_CONFIG: f->config = optarg; break;
        case O_NO_ACCESS_LOG: f->no_access_log = 1; break;
        case O_USER: f->user = optarg; break;
        case O_MAX_HEADER: f->max_header_bytes = optarg; break;
        case O_MAX_BODY: f->max_body_bytes = optarg; break;
        case O_HEADER_TIMEOUT: f->client_header_timeout = optarg; break;
        case O_CONNECT_TIMEOUT: f->upstream_connect_timeout = optarg; break;
        case O_READ_TIMEOUT: f->upstream_read_timeout = optarg; break;
        case O_DRAIN_TIMEOUT: f->drain_timeout = optarg; break;
        case O_DEFAULT_CERT: f->default_cert = optarg; break;
        case O_DEFAULT_KEY: f->default_key = optarg; break;
        case O_TLS_SESSION_CACHE: f->tls_session_cache = optarg; break;
        case O_HSTS: f->hsts = optarg; break;
        case O_HELP: fputs(usage_text, stdout); exit(0);
        case O_VERSION: printf(PROGRAM " %s\n", GATEHOUSE_VERSION); exit(0);
        case ':': usage_error("%s needs a value", argv[optind - 1]); break;
        default: usage_error("unknown option %s", argv[optind - 1]); break;
        }
    }
    if (optind < argc)
        usage_error("unexpected argument \"%s\"", argv[optind]);
}

/* ---- settings: node config, then flags over it, then one range check for both ---- */

/* A numeric setting: the flag's text when given, else the config's value; must be in range. */
static long long numeric_setting(const char *flag, const char *text, long long from_config,
                                 long long min, long long max)
{
    long long v = from_config;
    if (text) {
        char *end;
        errno = 0;
        v = strtoll(text, &end, 10);
        if (errno || end == text || *end)
            usage_error("--%s: \"%s\" is not a whole number", flag, text);
    }
    if (v < min || v > max)
        usage_error("%s%s: %lld is out of range %lld..%lld",
                    text ? "--" : "node config setting for --", flag, v, min, max);
    return v;
}

static int cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

static int choose_workers(long long configured)
{
    if (configured > 0)
        return (int)configured;
    int n = cpu_count();
    if (n > METRICS_MAX_WORKERS) {
        log_info("%d CPUs: using %d workers, the most supported", n, METRICS_MAX_WORKERS);
        n = METRICS_MAX_WORKERS;
    }
    return n;
}

static void apply_flags(const struct flags *f, struct node_config *cfg, struct server_options *opt)
{
#define COPY(field, text) \
    do { if (text) snprintf(cfg->field, sizeof cfg->field, "%s", text); } while (0)
    COPY(proxy_routes, f->routes);
    COPY(proxy_http, f->http);
    COPY(proxy_https, f->https);
    COPY(proxy_admin, f->admin);
    COPY(proxy_user, f->user);
    COPY(proxy_default_cert, f->default_cert);
    COPY(proxy_default_key, f->default_key);
#undef COPY
    cfg->proxy_tls_session_cache = (int)numeric_setting("tls-session-cache", f->tls_session_cache,
                                                        cfg->proxy_tls_session_cache, 0, 10000000);
    if (f->no_access_log)
        cfg->proxy_access_log = 0;
    const long long hour_ms = 3600 * 1000;
    *opt = (struct server_options){
        .http_addr = cfg->proxy_http,
        .https_addr = cfg->proxy_https,
        .hsts_seconds = (int)numeric_setting("hsts", f->hsts, cfg->proxy_hsts_seconds,
                                             0, 10LL * 365 * 24 * 3600),
        .workers = choose_workers(numeric_setting("workers", f->workers, cfg->proxy_workers,
                                                  0, METRICS_MAX_WORKERS)),
        .access_log = cfg->proxy_access_log,
        .max_header_bytes = (size_t)numeric_setting("max-header-bytes", f->max_header_bytes,
                                                    cfg->proxy_max_header_bytes, 1024, 1 << 20),
        .max_body_bytes = numeric_setting("max-body-bytes", f->max_body_bytes,
                                          cfg->proxy_max_body_bytes, 0, LLONG_MAX),
        .client_header_timeout_ms = (int)numeric_setting("client-header-timeout",
            f->client_header_timeout, cfg->proxy_client_header_timeout_ms, 1, hour_ms),
        .client_idle_timeout_ms = (int)numeric_setting("client-idle-timeout", NULL,
            cfg->proxy_client_idle_timeout_ms, 1, hour_ms),
        .upstream_connect_timeout_ms = (int)numeric_setting("upstream-connect-timeout",
            f->upstream_connect_timeout, cfg->proxy_upstream_connect_timeout_ms, 1, hour_ms),
        .upstream_read_timeout_ms = (int)numeric_setting("upstream-read-timeout",
            f->upstream_read_timeout, cfg->proxy_upstream_read_timeout_ms, 1, hour_ms),
        .upstream_send_timeout_ms = (int)numeric_setting("upstream-send-timeout", NULL,
            cfg->proxy_upstream_send_timeout_ms, 1, hour_ms),
        .endpoint_down_ms = (int)numeric_setting("endpoint-down", NULL,
            cfg->proxy_endpoint_down_ms, 0, hour_ms),
        .drain_timeout_ms = (int)numeric_setting("drain-timeout", f->drain_timeout,
            cfg->proxy_drain_timeout_ms, 0, hour_ms),
    };
    if (!cfg->proxy_http[0])
        usage_error("no HTTP address: give --http ADDR:PORT or set proxy.http in the node config");
    if (!cfg->proxy_admin[0] || !cfg->proxy_routes[0])
        usage_error("--admin and --routes must not be empty");
    /* SO_REUSEPORT would let both bind and share the connections between them. */
    if (cfg->proxy_https[0] && strcmp(cfg->proxy_https, cfg->proxy_http) == 0)
        usage_error("HTTP and HTTPS cannot both listen on %s", cfg->proxy_http);
    if (!cfg->proxy_default_cert[0] != !cfg->proxy_default_key[0])
        usage_error("--default-cert and --default-key go together");
}

static void load_settings(int argc, char **argv, struct node_config *cfg,
                          struct server_options *opt)
{
    struct flags f = { 0 };
    parse_flags(argc, argv, &f);
    node_config_defaults(cfg);
    char err[512];
    const char *path = f.config ? f.config : NODE_CONFIG_DEFAULT_PATH;
    if (node_config_load(cfg, path, f.config == NULL, err, sizeof err) != 0) {
        log_error("%s", err);
        exit(1);
    }
    apply_flags(&f, cfg, opt);
}

/* ---- TLS: before the routes are loaded, so the first table's handshakes find both ---- */

static void start_tls(const struct node_config *cfg)
{
    char err[512];
    if (!cfg->proxy_https[0]) {
        if (cfg->proxy_default_cert[0])
            log_warn("no HTTPS listener: the default certificate is not used");
        return;
    }
    if (tls_session_cache_init((size_t)cfg->proxy_tls_session_cache) != 0) {
        log_error("out of memory for a TLS session cache of %d entries",
                  cfg->proxy_tls_session_cache);
        exit(1);
    }
    int rc = cfg->proxy_default_cert[0]
             ? tls_default_cert_load(cfg->proxy_default_cert, cfg->proxy_default_key, err, sizeof err)
             : tls_default_cert_generate(err, sizeof err);
    if (rc != 0) {
        log_error("default certificate: %s", err);
        exit(1);
    }
    char cache[64] = "off";
    if (cfg->proxy_tls_session_cache > 0)
        snprintf(cache, sizeof cache, "%d entries", cfg->proxy_tls_session_cache);
    log_info("TLS: default certificate %s; session cache %s; %zu bytes per TLS connection",
             cfg->proxy_default_cert[0] ? cfg->proxy_default_cert : "self-signed (made at start)",
             cache, tls_transport_size());
}

/* ---- privileges ---- */

/* Root is only worth keeping to bind ports, which is done. A user named on the command line or
 * in the config must exist; the conventional "gatehouse" user is used only if it is there. */
static void drop_privileges(const struct node_config *cfg)
{
    const char *user = cfg->proxy_user[0] ? cfg->proxy_user : DEFAULT_USER;
    int required = cfg->proxy_user[0] && strcmp(cfg->proxy_user, DEFAULT_USER) != 0;
    if (geteuid() != 0) {
        if (required)
            log_info("not started as root: nothing to drop, user \"%s\" ignored", user);
        return;
    }
    if (!required && !privileges_user_exists(user)) {
        log_warn("running as root: no user \"%s\" to drop privileges to (use --user NAME)", user);
        return;
    }
    char err[256];
    if (privileges_drop(user, err, sizeof err) != 0) {
        log_error("%s", err);
        exit(1);
    }
    log_info("dropped privileges: running as user %s (uid %u, gid %u)", user,
             (unsigned)getuid(), (unsigned)getgid());
}

/* ---- signals ---- */

static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Returns the signal that asked us to stop. */
static int wait_for_stop(const sigset_t *set)
{
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            return sig;
        log_info("SIGHUP: reloading the routes file");
        reload_request();
    }
}

static void start_or_exit(int rc, const char *err)
{
    if (rc != 0) {
        log_error("%s", err);
        exit(1);
    }
}

/* The agent writes its metrics files beside the routes file: /metrics adds them. */
static void set_state_metrics_dir(const char *routes_path)
{
    char dir[4200];
    const char *slash = strrchr(routes_path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", slash == routes_path ? 1 : (int)(slash - routes_path), routes_path);
    else
        snprintf(dir, sizeof dir, ".");
    admin_set_state_metrics_dir(dir);
}

int main(int argc, char **argv)
{
    sigset_t signals;
    block_signals(&signals);              /* before any thread: they all inherit the mask */
    log_init(PROGRAM, LOG_INFO);

    struct node_config *cfg = malloc(sizeof *cfg);   /* large: paths are PATH_MAX-sized */
    if (!cfg) {
        log_error("out of memory");
        return 1;
    }
    struct server_options opt;
    load_settings(argc, argv, cfg, &opt);

    char err[512] = "";
    metrics_init(opt.workers);
    start_tls(cfg);
    reload_initial(cfg->proxy_routes);
    set_state_metrics_dir(cfg->proxy_routes);
    start_or_exit(admin_start(cfg->proxy_admin, err, sizeof err), err);
    start_or_exit(server_start(&opt, err, sizeof err), err);
    admin_set_serving(1);
    drop_privileges(cfg);
    start_or_exit(reload_start(cfg->proxy_routes, err, sizeof err), err);
    log_info(PROGRAM " %s: serving HTTP on %s%s%s with %d workers, routes from %s",
             GATEHOUSE_VERSION, opt.http_addr, opt.https_addr[0] ? ", HTTPS on " : "",
             opt.https_addr, opt.workers, cfg->proxy_routes);

    int sig = wait_for_stop(&signals);
    log_info("%s: draining (up to %d ms)", strsignal(sig), opt.drain_timeout_ms);
    admin_set_serving(0);
    server_stop();
    int cut = server_wait();
    reload_stop();
    admin_stop();
    if (cut > 0)
        log_warn("stopped: %d connections were cut off by the drain timeout", cut);
    else
        log_info("stopped: all connections finished");
    free(cfg);
    return 0;
}
