/*
 * kube_source.c - see kube_source.h.
 */
#include "kube_source.h"

#include "log.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* A burst of events is taken in for at most this long before rendering, so a steady stream
 * cannot hold a render back. */
#define DRAIN_MAX_MS 50
/* API counters (errors, restarts) that change without a render reach metrics.prom this often. */
#define STATS_INTERVAL_MS 5000
/* At stop, how long the leader waits for its Lease release to reach the API server. */
#define RELEASE_WAIT_MS 1000

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int earliest(int a, int b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

static int kube_source_watch(struct source *src, char *err, size_t errlen)
{
    struct kube_source *ks = (struct kube_source *)src;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    ks->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (ks->signal_fd < 0)
        return set_err(err, errlen, "signalfd: %s", strerror(errno));
    kube_informers_start(ks->informers, monotonic_ms());
    return 0;
}

static json_t *kube_source_snapshot(struct source *src, manifest_diag_fn *diag, void *diag_ctx,
                                    char *err, size_t errlen)
{
    struct kube_source *ks = (struct kube_source *)src;
    if (!kube_informers_synced(ks->informers)) {
        set_err(err, errlen, "the cluster's objects are not all listed yet");
        return NULL;
    }
    ks->rendered_generation = kube_informers_generation(ks->informers);
    return kube_informers_snapshot(ks->informers);
}

static int changed_since_render(const struct kube_source *ks)
{
    return kube_informers_synced(ks->informers)
           && kube_informers_generation(ks->informers) != ks->rendered_generation;
}

static int tick(struct kube_source *ks)
{
    int64_t now = monotonic_ms();
    int timeout = kube_informers_tick(ks->informers, now);
    if (ks->status)
        timeout = earliest(timeout, kube_status_tick(ks->status, now));
    return timeout;
}

/* Takes in what has already arrived, so a burst of events becomes one render. */
static void drain(struct kube_source *ks)
{
    int64_t until = monotonic_ms() + DRAIN_MAX_MS;
    while (monotonic_ms() < until) {
        unsigned long long before = kube_informers_generation(ks->informers);
        if (kube_client_poll(ks->client, NULL, 0, 0, NULL, 0) < 0)
            return;
        tick(ks);
        if (kube_informers_generation(ks->informers) == before)
            return;
    }
}

static int read_signal(struct kube_source *ks, enum source_event *out, char *err, size_t errlen)
{
    struct signalfd_siginfo si;
    ssize_t n = read(ks->signal_fd, &si, sizeof si);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n != (ssize_t)sizeof si) {
        set_err(err, errlen, "reading signalfd: %s", n < 0 ? strerror(errno) : "short read");
        *out = SOURCE_ERROR;
        return 1;
    }
    *out = si.ssi_signo == SIGHUP ? SOURCE_RELOAD : SOURCE_STOP;
    return 1;
}

static int is_leader(const struct kube_source *ks)
{
    return ks->status ? kube_status_is_leader(ks->status) : 0;
}

static int stats_changed(struct kube_source *ks)
{
    struct kube_informer_stats now;
    kube_informers_stats(ks->informers, &now);
    const struct kube_informer_stats *was = &ks->last_stats;
    return now.events != was->events || now.lists != was->lists
           || now.watch_restarts != was->watch_restarts || now.errors != was->errors
           || now.watching != was->watching || now.objects != was->objects
           || is_leader(ks) != ks->last_leader;
}

static void log_first_sync(struct kube_source *ks)
{
    if (ks->synced_logged || !kube_informers_synced(ks->informers))
        return;
    struct kube_informer_stats st;
    kube_informers_stats(ks->informers, &st);
    log_info("cluster objects listed (%zu cached); rendering", st.objects);
    ks->synced_logged = 1;
}

static enum source_event kube_source_wait(struct source *src, int timeout_ms, char *err,
                                          size_t errlen)
{
    struct kube_source *ks = (struct kube_source *)src;
    int64_t deadline = timeout_ms >= 0 ? monotonic_ms() + timeout_ms : -1;
    for (;;) {
        int timeout = tick(ks);
        if (changed_since_render(ks)) {
            drain(ks);
            log_first_sync(ks);
            return SOURCE_CHANGED;
        }
        int64_t now = monotonic_ms();
        if (stats_changed(ks)) {
            int64_t due = ks->stats_written_ms + STATS_INTERVAL_MS;
            if (now >= due) {
                ks->stats_written_ms = now;   /* even if the caller does not write them */
                return SOURCE_STATS;
            }
            timeout = earliest(timeout, (int)(due - now));
        }
        if (deadline >= 0) {
            if (now >= deadline)
                return SOURCE_TIMEOUT;
            timeout = earliest(timeout, (int)(deadline - now));
        }
        struct kube_waitfd sig = { .fd = ks->signal_fd, .events = POLLIN };
        int ready = kube_client_poll(ks->client, &sig, 1, timeout, err, errlen);
        if (ready < 0)
            return SOURCE_ERROR;
        enum source_event event;
        if (ready > 0 && read_signal(ks, &event, err, errlen))
            return event;
    }
}

static void kube_source_rendered(struct source *src, const json_t *objects,
                                 const json_t *served)
{
    struct kube_source *ks = (struct kube_source *)src;
    if (ks->status)
        kube_status_set_ingresses(ks->status, objects, served);
}

static size_t kube_source_metrics(struct source *src, char *buf, size_t cap)
{
    struct kube_source *ks = (struct kube_source *)src;
    struct kube_informer_stats st;
    kube_informers_stats(ks->informers, &st);
    ks->last_stats = st;
    ks->last_leader = is_leader(ks);
    ks->stats_written_ms = monotonic_ms();
    int n = snprintf(buf, cap,
        "# HELP gatehouse_agent_api_synced 1 once every watched resource has been listed.\n"
        "# TYPE gatehouse_agent_api_synced gauge\n"
        "gatehouse_agent_api_synced %d\n"
        "# HELP gatehouse_agent_api_objects Objects held in the agent's cache.\n"
        "# TYPE gatehouse_agent_api_objects gauge\n"
        "gatehouse_agent_api_objects %zu\n"
        "# HELP gatehouse_agent_api_watches Resources being watched now (of %d).\n"
        "# TYPE gatehouse_agent_api_watches gauge\n"
        "gatehouse_agent_api_watches %u\n"
        "# HELP gatehouse_agent_api_events_total Watch events applied.\n"
        "# TYPE gatehouse_agent_api_events_total counter\n"
        "gatehouse_agent_api_events_total %llu\n"
        "# HELP gatehouse_agent_api_lists_total Complete lists (first ones and relists).\n"
        "# TYPE gatehouse_agent_api_lists_total counter\n"
        "gatehouse_agent_api_lists_total %llu\n"
        "# HELP gatehouse_agent_api_watch_restarts_total Watches resumed after ending or failing.\n"
        "# TYPE gatehouse_agent_api_watch_restarts_total counter\n"
        "gatehouse_agent_api_watch_restarts_total %llu\n"
        "# HELP gatehouse_agent_api_errors_total Failed API requests of the informers.\n"
        "# TYPE gatehouse_agent_api_errors_total counter\n"
        "gatehouse_agent_api_errors_total %llu\n"
        "# HELP gatehouse_agent_status_leader 1 while this agent writes Ingress status.\n"
        "# TYPE gatehouse_agent_status_leader gauge\n"
        "gatehouse_agent_status_leader %d\n",
        kube_informers_synced(ks->informers), st.objects, KUBE_RESOURCE_COUNT, st.watching,
        st.events, st.lists, st.watch_restarts, st.errors, ks->last_leader);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static void release_leadership(struct kube_source *ks)
{
    if (!ks->status || !kube_status_release(ks->status))
        return;
    int64_t until = monotonic_ms() + RELEASE_WAIT_MS;
    while (kube_client_running(ks->client) && monotonic_ms() < until)
        if (kube_client_poll(ks->client, NULL, 0, 100, NULL, 0) < 0)
            break;
}

static void kube_source_close(struct source *src)
{
    struct kube_source *ks = (struct kube_source *)src;
    if (ks->informers)
        kube_informers_free(ks->informers);
    ks->informers = NULL;
    release_leadership(ks);
    kube_status_free(ks->status);
    ks->status = NULL;
    kube_client_free(ks->client);
    ks->client = NULL;
    kube_config_free(&ks->config);
    if (ks->signal_fd >= 0)
        close(ks->signal_fd);
    ks->signal_fd = -1;
}

static int load_config(struct kube_source *ks, char *err, size_t errlen)
{
    const struct kube_source_options *o = &ks->opt;
    if (o->kubeconfig && o->kubeconfig[0])
        return kubeconfig_load(o->kubeconfig, o->context && o->context[0] ? o->context : NULL,
                               &ks->config, err, errlen);
    return kube_incluster_load(KUBE_SERVICE_ACCOUNT_DIR, &ks->config, err, errlen);
}

static int copy_field(char *dst, size_t size, const char *value, const char *what, char *err,
                      size_t errlen)
{
    if (strlen(value) >= size)
        return set_err(err, errlen, "%s is too long", what);
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

static int status_init(struct kube_source *ks, char *err, size_t errlen)
{
    const struct kube_source_options *o = &ks->opt;
    const char *ns = o->lease_namespace && o->lease_namespace[0] ? o->lease_namespace
                     : ks->config.ns ? ks->config.ns : "default";
    if (copy_field(ks->lease_namespace, sizeof ks->lease_namespace, ns, "lease namespace", err,
                   errlen) < 0)
        return -1;
    if (o->addresses && o->addresses[0]) {
        if (copy_field(ks->addresses, sizeof ks->addresses, o->addresses, "node address", err,
                       errlen) < 0)
            return -1;
    } else if (kube_status_default_address(ks->addresses, sizeof ks->addresses, err,
                                           errlen) < 0) {
        return -1;
    }
    struct kube_status_options so = {
        .lease_namespace = ks->lease_namespace,
        .node_name = o->node_name,
        .addresses = ks->addresses,
        .lease_duration_s = (o->lease_duration_ms + 999) / 1000,
        .renew_deadline_s = (o->renew_deadline_ms + 999) / 1000,
        .retry_period_s = (o->retry_period_ms + 999) / 1000,
    };
    ks->status = kube_status_new(ks->client, &so);
    if (!ks->status)
        return set_err(err, errlen, "out of memory");
    log_info("publishing Ingress status: this node is %s (%s), Leases in namespace %s",
             o->node_name, ks->addresses, ks->lease_namespace);
    return 0;
}

int kube_source_init(struct kube_source *ks, const struct kube_source_options *opt, char *err,
                     size_t errlen)
{
    *ks = (struct kube_source){
        .base = { .watch = kube_source_watch, .snapshot = kube_source_snapshot,
                  .wait = kube_source_wait, .rendered = kube_source_rendered,
                  .metrics = kube_source_metrics, .close = kube_source_close,
                  .render_at_start = 0 },
        .opt = *opt,
        .signal_fd = -1,
    };
    if (load_config(ks, err, errlen) < 0)
        return -1;
    ks->client = kube_client_new(&ks->config, err, errlen);
    if (!ks->client)
        goto fail;
    struct kube_watch_options wo = {
        .ns = opt->ns && opt->ns[0] ? opt->ns : NULL,
        .idle_timeout_s = (opt->watch_idle_timeout_ms + 999) / 1000,
        .seed = (unsigned)time(NULL) ^ (unsigned)getpid(),
    };
    ks->informers = kube_informers_new(ks->client, &wo);
    if (!ks->informers) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    if (opt->publish_status && status_init(ks, err, errlen) < 0)
        goto fail;
    return 0;
fail:
    kube_source_close(&ks->base);
    return -1;
}

const char *kube_source_describe(const struct kube_source *ks)
{
    return ks->config.origin ? ks->config.origin : "the cluster";
}
