/*
 * main.c - gatehouse-agent: Kubernetes objects in, STATE/routes.yaml out.
 *
 * One pipeline, whatever the source: the source hands over a snapshot (a json array of objects),
 * translate turns it into the routes document and the TLS files it names, routes_publish puts
 * both on disk (files first). Then the source waits for the next change. Two sources
 * (source.h): a manifest folder (dir_source) and the cluster API (kube_source, which also
 * publishes Ingress status after each render).
 *
 * Diagnostics from reading and translating are the same on every render until the input
 * changes, so they are logged when they first appear (and when they go away), not every time.
 *
 * DNS: when the node config lists DNS sinks, each successful render also computes the names to
 * publish (dns_records) and hands them to the DNS thread (dns_sync), which never holds up the
 * next render. With --once the sinks are reconciled once, in line, after the routes are written.
 */
#include "agent_metrics.h"
#include "dir_source.h"
#include "dns_config.h"
#include "dns_records.h"
#include "dns_sync.h"
#include "kube_source.h"
#include "log.h"
#include "manifest_dir.h"
#include "node_config.h"
#include "routes_writer.h"
#include "tls_files.h"
#include "translate.h"
#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef GATEHOUSE_VERSION
#define GATEHOUSE_VERSION "unknown"
#endif

#define EXIT_USAGE 2

/* After a failed write (disk full, read-only remount) the same render is tried again this often:
 * no change may come to trigger one, and the proxy would serve stale routes meanwhile. */
#define WRITE_RETRY_MS 5000

/* ---- diagnostics, logged when the set changes ---- */

struct diag_set {
    json_t *previous;   /* message -> severity, from the last completed render */
    json_t *current;    /* being collected */
};

static void diag_collect(void *ctx, const char *severity, const char *msg)
{
    struct diag_set *d = ctx;
    if (!json_object_get(d->current, msg))
        json_object_set_new(d->current, msg, json_string(severity));
}

static void diag_begin(struct diag_set *d)
{
    json_decref(d->current);
    d->current = json_object();
}

/* Logs what is new since the last render and what went away, then remembers this set. */
static void diag_publish(struct diag_set *d)
{
    const char *msg;
    json_t *severity;
    json_object_foreach(d->current, msg, severity) {
        if (json_object_get(d->previous, msg))
            continue;
        if (strcmp(json_string_value(severity), "error") == 0)
            log_error("%s", msg);
        else
            log_warn("%s", msg);
    }
    json_object_foreach(d->previous, msg, severity)
        if (!json_object_get(d->current, msg))
            log_info("fixed: %s", msg);
    json_decref(d->previous);
    d->previous = d->current;
    d->current = NULL;
}

/* ---- the pipeline ---- */

struct agent {
    const char *state_dir;
    int notify_fd;                   /* s6 readiness: written once the first routes are out */
    struct source *src;
    struct translate_options translate;
    struct diag_set diags;
    struct dns_sync_options dns;     /* dns.config->count == 0: no DNS */
    struct dns_sync *dns_sync;       /* the DNS thread, once started */
    struct dns_desired dns_desired;  /* from the last successful render */
    struct agent_metrics metrics;    /* written to STATE/metrics.prom after each render */
};

/* The names to publish, when DNS is configured (else none). */
static struct dns_desired dns_collect(struct agent *a, const json_t *objects,
                                      const json_t *served)
{
    struct dns_desired names = { 0 };
    if (a->dns.config->count
        && dns_desired_from_objects(objects, served, &a->translate, &names) < 0)
        log_error("DNS: out of memory; the names are not updated");
    return names;
}

/* After a successful render: the names become the ones DNS is kept in line with. */
static void dns_publish(struct agent *a, struct dns_desired *names)
{
    if (!a->dns.config->count)
        return;
    dns_desired_free(&a->dns_desired);
    a->dns_desired = *names;
    *names = (struct dns_desired){ 0 };
    if (a->dns_sync)
        dns_sync_submit(a->dns_sync, &a->dns_desired);
}

enum render_result { RENDER_OK, RENDER_READ_FAILED, RENDER_WRITE_FAILED };

/* The agent's counters and the source's, in one file. Failing to write it is logged and
 * changes nothing else: metrics never block routing. */
static void write_metrics(struct agent *a)
{
    char source_text[4096] = "";
    if (a->src->metrics)
        a->src->metrics(a->src, source_text, sizeof source_text);
    char err[512];
    if (agent_metrics_write(a->state_dir, &a->metrics, source_text, err, sizeof err) < 0)
        log_warn("metrics not written: %s", err);
}

/* Counts the diagnostics of the render just published, then writes the metrics file. */
static void publish_metrics(struct agent *a, enum render_result result)
{
    struct agent_metrics *m = &a->metrics;
    if (result == RENDER_OK) {
        m->renders_ok++;
        m->last_ok_seconds = (int64_t)time(NULL);
        m->diag_errors = m->diag_warnings = 0;
        const char *msg;
        json_t *severity;
        json_object_foreach(a->diags.previous, msg, severity) {
            if (strcmp(json_string_value(severity), "error") == 0)
                m->diag_errors++;
            else
                m->diag_warnings++;
        }
    } else {
        m->renders_failed++;
    }
    write_metrics(a);
}

static enum render_result render_once(struct agent *a, struct source *src)
{
    char err[512];
    diag_begin(&a->diags);
    json_t *objects = src->snapshot(src, diag_collect, &a->diags, err, sizeof err);
    if (!objects) {
        log_error("%s; keeping the previous routes", err);
        return RENDER_READ_FAILED;
    }
    json_t *tls_files = NULL, *served = NULL;
    a->translate.now = (int64_t)time(NULL);   /* certificates are checked against it */
    a->metrics.tls_refused = 0;
    a->translate.tls_refused = &a->metrics.tls_refused;
    a->translate.served = &served;
    json_t *routes = translate_routes(objects, &a->translate, &tls_files);
    a->translate.served = NULL;
    struct dns_desired names = dns_collect(a, objects, served);
    diag_publish(&a->diags);
    enum routes_write_result result = routes_publish(a->state_dir, routes, tls_files, err,
                                                     sizeof err);
    json_decref(routes);
    tls_files_free(tls_files);
    if (result == ROUTES_FAILED) {
        log_error("cannot write routes: %s", err);
        dns_desired_free(&names);
        json_decref(served);
        json_decref(objects);
        return RENDER_WRITE_FAILED;
    }
    if (src->rendered)
        src->rendered(src, objects, served);
    json_decref(served);
    json_decref(objects);
    if (result == ROUTES_UNCHANGED)
        log_debug("routes unchanged");
    dns_publish(a, &names);
    return RENDER_OK;
}

/* s6's readiness protocol: one newline on the descriptor, then close it. */
static void notify_ready(struct agent *a)
{
    if (a->notify_fd < 0)
        return;
    if (write(a->notify_fd, "\n", 1) != 1)
        log_warn("--notify-fd %d: %s", a->notify_fd, strerror(errno));
    close(a->notify_fd);
    a->notify_fd = -1;
}

static enum render_result render(struct agent *a, struct source *src)
{
    enum render_result result = render_once(a, src);
    publish_metrics(a, result);
    if (result == RENDER_OK)
        notify_ready(a);
    return result;
}

static int run_watching(struct agent *a, struct source *src)
{
    char err[512];
    if (src->watch(src, err, sizeof err) < 0) {
        log_error("%s", err);
        return 1;
    }
    /* after watch: the thread inherits the signal mask dir_watch set up */
    if (a->dns.config->count && !(a->dns_sync = dns_sync_start(&a->dns, err, sizeof err))) {
        log_error("%s", err);
        return 1;
    }
    /* A read failure needs no timer: the folder coming back or changing is an event. The
     * cluster source renders once its first lists are complete: its first CHANGED. */
    enum render_result last = src->render_at_start ? render(a, src) : RENDER_OK;
    for (;;) {
        int timeout = last == RENDER_WRITE_FAILED ? WRITE_RETRY_MS : -1;
        switch (src->wait(src, timeout, err, sizeof err)) {
        case SOURCE_CHANGED:
        case SOURCE_TIMEOUT:
            last = render(a, src);
            break;
        case SOURCE_RELOAD:
            log_info("SIGHUP: reading everything again");
            json_object_clear(a->diags.previous);   /* and show every problem again */
            last = render(a, src);
            break;
        case SOURCE_STATS:
            write_metrics(a);
            break;
        case SOURCE_STOP:
            log_info("stopping");
            return 0;
        case SOURCE_ERROR:
            log_error("%s", err);
            return 1;
        }
    }
}

/* ---- command line ---- */

struct cli {
    const char *manifests, *kubeconfig, *state_dir, *config, *controller, *node_address;
    int once, watch_without_class, verbose, notify_fd;
};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: gatehouse-agent [--manifests DIR | --kubeconfig FILE] [--state-dir DIR]\n"
        "                       [--once] [options]\n"
        "Reads Kubernetes Ingress, Service, EndpointSlice, IngressClass and Secret objects and\n"
        "writes the proxy's routes file, STATE/routes.yaml (certificates under STATE/tls/).\n"
        "\n"
        "  --manifests DIR        read *.yaml, *.yml, *.json from DIR, again on every change\n"
        "  --kubeconfig FILE      list and watch the cluster API (config\n"
        "                         kubernetes.kubeconfig); with neither this nor\n"
        "                         --manifests: in-cluster service account\n"
        "  --state-dir DIR        where routes.yaml goes (config agent.stateDir,\n"
        "                         default /var/lib/gatehouse)\n"
        "  --once                 render once and exit (0: written, 1: not written)\n"
        "  --config FILE          node config (default " NODE_CONFIG_DEFAULT_PATH ",\n"
        "                         which may be absent)\n"
        "  --controller NAME      IngressClass spec.controller to serve (config\n"
        "                         ingress.controller)\n"
        "  --watch-without-class  serve Ingresses without a class even with no default class\n"
        "  --node-address IP[,IP] the addresses DNS records point at (config node.address)\n"
        "  --notify-fd FD         write a newline to FD once the first routes are written\n"
        "                         (s6 readiness notification)\n"
        "  --verbose              log debug lines too\n"
        "  --help, --version\n"
        "Flags override the config file. SIGHUP re-reads now; SIGTERM/SIGINT stop.\n"
        "\n"
        "       gatehouse-agent upgrade --image REF [--reboot] | --follow   (see upgrade --help)\n"
        "       gatehouse-agent boot-check                                  (see boot-check --help)\n");
}

/* A descriptor number given by the supervisor, which must be open. */
static int parse_fd(const char *text, int *fd)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (*text < '0' || *text > '9' || *end || v < 0 || v > 1 << 20 || fcntl((int)v, F_GETFD) < 0)
        return -1;
    *fd = (int)v;
    return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct cli *cli)
{
    enum { OPT_MANIFESTS = 256, OPT_KUBECONFIG, OPT_STATE_DIR, OPT_ONCE, OPT_CONFIG,
           OPT_CONTROLLER, OPT_WITHOUT_CLASS, OPT_VERBOSE, OPT_VERSION, OPT_NODE_ADDRESS, OPT_NOTIFY_FD };
    static const struct option options[] = {
        { "manifests", required_argument, NULL, OPT_MANIFESTS },
        { "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
        { "state-dir", required_argument, NULL, OPT_STATE_DIR },
        { "once", no_argument, NULL, OPT_ONCE },
        { "config", required_argument, NULL, OPT_CONFIG },
        { "controller", required_argument, NULL, OPT_CONTROLLER },
        { "watch-without-class", no_argument, NULL, OPT_WITHOUT_CLASS },
        { "node-address", required_argument, NULL, OPT_NODE_ADDRESS },
        { "verbose", no_argument, NULL, OPT_VERBOSE },
        { "notify-fd", required_argument, NULL, OPT_NOTIFY_FD },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 },
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_MANIFESTS: cli->manifests = optarg; break;
        case OPT_KUBECONFIG: cli->kubeconfig = optarg; break;
        case OPT_STATE_DIR: cli->state_dir = optarg; break;
        case OPT_ONCE: cli->once = 1; break;
        case OPT_CONFIG: cli->config = optarg; break;
        case OPT_CONTROLLER: cli->controller = optarg; break;
        case OPT_WITHOUT_CLASS: cli->watch_without_class = 1; break;
        case OPT_NODE_ADDRESS: cli->node_address = optarg; break;
        case OPT_VERBOSE: cli->verbose = 1; break;
        case OPT_NOTIFY_FD:
            if (parse_fd(optarg, &cli->notify_fd) < 0) {
                fprintf(stderr, "gatehouse-agent: --notify-fd: '%s' is not an open descriptor\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return 0;
        case OPT_VERSION: printf("gatehouse-agent %s\n", GATEHOUSE_VERSION); return 0;
        default:
            fprintf(stderr, "try 'gatehouse-agent --help'\n");
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gatehouse-agent: unexpected argument '%s'; try --help\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (cli->manifests && cli->kubeconfig) {
        fprintf(stderr, "gatehouse-agent: --manifests and --kubeconfig exclude each other\n");
        return EXIT_USAGE;
    }
    return -1;
}

/* Copies a flag value over a config field. Returns -1 (logged) when it is empty or too long. */
static int set_field(char *field, size_t size, const char *value, const char *flag)
{
    if (!value)
        return 0;
    if (!value[0] || strlen(value) >= size) {
        log_error("%s: value must be 1 to %zu bytes long", flag, size - 1);
        return -1;
    }
    memcpy(field, value, strlen(value) + 1);
    return 0;
}

static int controller_name_ok(const char *name)
{
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return 0;
    return name[0] != '\0';
}

static int same_folder(const char *a, const char *b)
{
    struct stat sa, sb;
    return a[0] && b[0] && stat(a, &sa) == 0 && stat(b, &sb) == 0
           && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Config file first, flags over it. Returns 0, or an exit status. */
/* Run as root, the agent writes the proxy's key files for the user the proxy drops to
 * (proxy.user, else "gatehouse" when it exists: the proxy's own rule), and for no one else. */
static void hand_tls_files_to_proxy_user(const struct node_config *cfg)
{
    if (geteuid() != 0)
        return;
    const char *user = cfg->proxy_user[0] ? cfg->proxy_user : "gatehouse";
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        if (cfg->proxy_user[0])
            log_warn("proxy.user %s does not exist: TLS key files stay root's", user);
        return;
    }
    tls_files_set_reader(pw->pw_uid, pw->pw_gid);
    log_info("TLS files are written for user %s (the proxy's)", user);
}

static int load_config(const struct cli *cli, struct node_config *cfg)
{
    char err[512];
    node_config_defaults(cfg);
    const char *path = cli->config ? cli->config : NODE_CONFIG_DEFAULT_PATH;
    if (node_config_load(cfg, path, !cli->config, err, sizeof err) < 0) {
        log_error("%s", err);
        return EXIT_USAGE;
    }
    if (set_field(cfg->kube_manifests, sizeof cfg->kube_manifests, cli->manifests, "--manifests")
        || set_field(cfg->kube_kubeconfig, sizeof cfg->kube_kubeconfig, cli->kubeconfig,
                     "--kubeconfig")
        || set_field(cfg->agent_state_dir, sizeof cfg->agent_state_dir, cli->state_dir,
                     "--state-dir")
        || set_field(cfg->ingress_controller, sizeof cfg->ingress_controller, cli->controller,
                     "--controller"))
        return EXIT_USAGE;
    if (cli->kubeconfig)
        cfg->kube_manifests[0] = '\0';   /* the flag picks the source over the config file */
    if (cli->watch_without_class)
        cfg->ingress_watch_without_class = 1;
    if (!controller_name_ok(cfg->ingress_controller)) {
        log_error("ingress controller name \"%s\" is empty or has spaces or control characters",
                  cfg->ingress_controller);
        return EXIT_USAGE;
    }
    if (!cfg->agent_state_dir[0]) {
        log_error("no state folder: pass --state-dir DIR");
        return EXIT_USAGE;
    }
    if (same_folder(cfg->kube_manifests, cfg->agent_state_dir)) {
        log_error("the state folder must not be the manifest folder (routes.yaml would be read "
                  "as a manifest)");
        return EXIT_USAGE;
    }
    return 0;
}

/* The `dns:` list of the same config file, and the addresses the records point at. Returns 0,
 * or an exit status. */
static int load_dns(const struct cli *cli, const struct node_config *cfg, struct dns_config *dns,
                    struct dns_address *addrs, size_t *naddrs)
{
    char err[512];
    const char *path = cli->config ? cli->config : NODE_CONFIG_DEFAULT_PATH;
    *naddrs = 0;
    if (dns_config_load(dns, path, !cli->config, cfg->node_name, err, sizeof err) < 0) {
        log_error("%s", err);
        return EXIT_USAGE;
    }
    const char *list = cli->node_address ? cli->node_address : cfg->node_address;
    if (!dns->count)
        return 0;
    if (!list[0]) {
        log_error("DNS sinks are configured but the node has no address: set node.address or "
                  "pass --node-address IP");
        return EXIT_USAGE;
    }
    int n = dns_address_parse(list, addrs, DNS_ADDRESSES_MAX, err, sizeof err);
    if (n <= 0) {
        log_error("%s: %s", cli->node_address ? "--node-address" : "node.address",
                  n < 0 ? err : "no address");
        return EXIT_USAGE;
    }
    *naddrs = (size_t)n;
    return 0;
}

/* The cluster source waits for its first complete listing (ONCE_SYNC_TIMEOUT_MS at most); the
 * folder is read at once. */
#define ONCE_SYNC_TIMEOUT_MS 60000

static int run_once(struct agent *a, struct source *src)
{
    char err[512];
    if (!src->render_at_start) {
        if (src->watch(src, err, sizeof err) < 0) {
            log_error("%s", err);
            return 1;
        }
        time_t give_up = time(NULL) + ONCE_SYNC_TIMEOUT_MS / 1000;
        enum source_event ev;
        while ((ev = src->wait(src, ONCE_SYNC_TIMEOUT_MS, err, sizeof err)) == SOURCE_STATS
               && time(NULL) < give_up)
            write_metrics(a);
        if (ev != SOURCE_CHANGED) {
            log_error("%s", ev == SOURCE_ERROR ? err : ev != SOURCE_STOP
                      ? "the cluster's objects could not be listed in time; routes not written"
                      : "stopped before the cluster's objects were listed");
            return 1;
        }
    }
    int status = render(a, src) == RENDER_OK ? 0 : 1;
    if (status == 0 && a->dns.config->count)   /* DNS failures are logged; routes are written */
        dns_sync_run_once(&a->dns, &a->dns_desired);
    return status;
}

/* The node's name for its status Lease: node.name, else the host name. */
static const char *node_name(const struct node_config *cfg)
{
    static char host[256];
    if (cfg->node_name[0])
        return cfg->node_name;
    if (gethostname(host, sizeof host - 1) < 0 || !host[0])
        snprintf(host, sizeof host, "gatehouse");
    return host;
}

/* The manifest folder when one is named, else the cluster (kubeconfig, or in-cluster). */
static struct source *open_source(const struct cli *cli, const struct node_config *cfg,
                                  struct dir_source *dir, struct kube_source *kube)
{
    if (cfg->kube_manifests[0]) {
        dir_source_init(dir, cfg->kube_manifests);
        log_info("gatehouse-agent %s: manifests %s -> %s/%s", GATEHOUSE_VERSION,
                 cfg->kube_manifests, cfg->agent_state_dir, ROUTES_FILE_NAME);
        return &dir->base;
    }
    struct kube_source_options opt = {
        .kubeconfig = cfg->kube_kubeconfig,
        .context = cfg->kube_context,
        .ns = cfg->kube_namespace,
        .watch_idle_timeout_ms = cfg->kube_watch_idle_timeout_ms,
        .publish_status = cfg->ingress_publish_status && !cli->once,
        .lease_namespace = cfg->kube_lease_namespace,
        .node_name = node_name(cfg),
        .addresses = cli->node_address ? cli->node_address : cfg->node_address,
        .lease_duration_ms = cfg->kube_lease_duration_ms,
        .renew_deadline_ms = cfg->kube_renew_deadline_ms,
        .retry_period_ms = cfg->kube_retry_period_ms,
    };
    char err[512];
    if (kube_source_init(kube, &opt, err, sizeof err) < 0) {
        log_error("%s", err);
        return NULL;
    }
    log_info("gatehouse-agent %s: cluster %s, %s -> %s/%s", GATEHOUSE_VERSION,
             kube_source_describe(kube), cfg->kube_namespace[0] ? cfg->kube_namespace
             : "all namespaces", cfg->agent_state_dir, ROUTES_FILE_NAME);
    return &kube->base;
}

int main(int argc, char **argv)
{
    log_init("gatehouse-agent", LOG_INFO);
    if (argc > 1 && strcmp(argv[1], "upgrade") == 0)
        return upgrade_command(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "boot-check") == 0)
        return boot_check_command(argc - 1, argv + 1);
    struct cli cli = { .notify_fd = -1 };
    int status = parse_args(argc, argv, &cli);
    if (status >= 0)
        return status;
    if (cli.verbose)
        log_init("gatehouse-agent", LOG_DEBUG);

    static struct node_config cfg;
    if ((status = load_config(&cli, &cfg)) != 0)
        return status;
    static struct dns_config dns;
    static struct dns_address addrs[DNS_ADDRESSES_MAX];
    size_t naddrs;
    if ((status = load_dns(&cli, &cfg, &dns, addrs, &naddrs)) != 0)
        return status;

    static union { struct dir_source dir; struct kube_source kube; } sources;
    struct source *src = open_source(&cli, &cfg, &sources.dir, &sources.kube);
    if (!src) {
        dns_config_free(&dns);
        return EXIT_USAGE;
    }
    hand_tls_files_to_proxy_user(&cfg);

    struct agent agent = {
        .state_dir = cfg.agent_state_dir,
        .notify_fd = cli.notify_fd,
        .src = src,
        .translate = { .controller = cfg.ingress_controller,
                       .watch_without_class = cfg.ingress_watch_without_class },
        .diags = { .previous = json_object() },
        .dns = { .config = &dns, .addrs = addrs, .naddrs = naddrs,
                 .state_dir = cfg.agent_state_dir },
    };
    agent.translate.diag = diag_collect;
    agent.translate.diag_ctx = &agent.diags;
    agent.metrics.version = GATEHOUSE_VERSION;
    agent_metrics_read_image_digest(&agent.metrics, AGENT_IMAGE_DIGEST_FILE);

    status = cli.once ? run_once(&agent, src) : run_watching(&agent, src);
    dns_sync_stop(agent.dns_sync);
    dns_desired_free(&agent.dns_desired);
    dns_config_free(&dns);
    src->close(src);
    json_decref(agent.diags.previous);
    json_decref(agent.diags.current);
    return status;
}
