/*
 * dns_sync.c - the DNS thread (see dns_sync.h).
 *
 * Shared with the render thread: only the pending snapshot and the stop flag, under one mutex.
 * Everything else (the sinks, their schedules, the current snapshot) belongs to the thread.
 * Each sink has a due time on the monotonic clock: now when a snapshot arrives, after a success
 * its resync period, after a failure its back-off.
 */
#include "dns_sync.h"

#include "dns_hosts.h"
#include "dns_rfc2136.h"
#include "dns_wire.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* musl gives threads 128 KiB by default; TSIG, parsing and message building stay far below
 * this, the margin is for libc and the sanitizers. */
#define THREAD_STACK_BYTES (512 * 1024)

struct sink {
    const struct dns_sink_config *cfg;
    struct dns_rfc2136 *zone;        /* rfc2136 sinks */
    struct dns_desired assigned;     /* the names this sink publishes */
    long long due_ms;                /* -1: nothing to do */
    long long resync_ms;             /* when the next full pass is due (0: the first one) */
    int backoff_ms;
    int failing;
};

struct dns_sync {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct dns_desired pending;      /* under lock */
    int have_pending;                /* under lock */
    volatile int stop;               /* under lock; read without it between exchanges */
    struct dns_address addrs[DNS_ADDRESSES_MAX];
    size_t naddrs;
    struct sink *sinks;
    size_t nsinks;
    json_t *outside;                 /* names outside every zone, reported once */
};

static long long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- assigning names to sinks ---- */

static size_t zone_length(const struct sink *k, const char *name)
{
    if (k->cfg->type != DNS_SINK_RFC2136 || !dns_text_name_in_zone(name, k->cfg->zone))
        return 0;
    return strlen(k->cfg->zone);
}

static void report_outside(struct dns_sync *s, json_t *outside_now)
{
    const char *name;
    json_t *v;
    json_object_foreach(outside_now, name, v)
        if (!json_object_get(s->outside, name))
            log_warn("DNS: %s is outside every configured zone; not published", name);
    json_decref(s->outside);
    s->outside = outside_now;
}

static int assign(struct dns_sync *s, const struct dns_desired *desired)
{
    json_t *outside_now = json_object();
    int have_zones = 0;
    for (size_t k = 0; k < s->nsinks; k++) {
        dns_desired_free(&s->sinks[k].assigned);
        s->sinks[k].assigned.names = calloc(desired->count ? desired->count : 1,
                                            sizeof *desired->names);
        if (!s->sinks[k].assigned.names)
            return -1;
        have_zones |= s->sinks[k].cfg->type == DNS_SINK_RFC2136;
    }
    for (size_t i = 0; i < desired->count; i++) {
        const struct dns_host *h = &desired->names[i];
        size_t best = 0;
        for (size_t k = 0; k < s->nsinks; k++) {
            size_t len = zone_length(&s->sinks[k], h->name);
            best = len > best ? len : best;
        }
        if (have_zones && !best)
            json_object_set_new(outside_now, h->name, json_true());
        for (size_t k = 0; k < s->nsinks; k++) {
            struct sink *sk = &s->sinks[k];
            if (sk->cfg->type == DNS_SINK_HOSTS || (best && zone_length(sk, h->name) == best))
                sk->assigned.names[sk->assigned.count++] = *h;
        }
    }
    report_outside(s, outside_now);
    return 0;
}

/* ---- running one sink ---- */

static int run_rfc2136(struct dns_sync *s, struct sink *k, char *err, size_t errlen)
{
    struct dns_rfc2136_stats st;
    long long start = monotonic_ms();
    int full = start >= k->resync_ms;
    int rc = dns_rfc2136_reconcile(k->zone, &k->assigned, full, &st, &s->stop, err, errlen);
    long long took = monotonic_ms() - start;
    if (rc == 0 && full)
        k->resync_ms = start + k->cfg->resync_ms;
    if (rc == 0 && (st.changed || k->failing))
        log_info("DNS %s: in sync (%s): %u names, %u changed in %u UPDATE messages (%u queries, "
                 "%u conflicts retried, %u foreign) in %lld ms", k->cfg->label,
                 full ? "full pass" : "changes", st.names, st.changed, st.updates, st.queries,
                 st.conflicts, st.foreign, took);
    else if (rc == 0)
        log_debug("DNS %s: in sync (%s): %u names, nothing to change (%u queries) in %lld ms",
                  k->cfg->label, full ? "full pass" : "changes", st.names, st.queries, took);
    return rc;
}

static int run_hosts(struct dns_sync *s, struct sink *k, char *err, size_t errlen)
{
    struct dns_desired list = k->assigned;
    enum dns_hosts_result r = dns_hosts_write(k->cfg->path, &list, s->addrs, s->naddrs, err,
                                              errlen);
    size_t wildcards = 0;
    for (size_t i = 0; i < list.count; i++)
        wildcards += list.names[i].name[0] == '*';
    if (r == DNS_HOSTS_WRITTEN)
        log_info("DNS %s: written (%zu names; %zu wildcards left out)", k->cfg->label,
                 list.count - wildcards, wildcards);
    return r == DNS_HOSTS_FAILED ? -1 : 0;
}

static int run_sink(struct dns_sync *s, struct sink *k, char *err, size_t errlen)
{
    return k->cfg->type == DNS_SINK_RFC2136 ? run_rfc2136(s, k, err, errlen)
                                             : run_hosts(s, k, err, errlen);
}

/* Runs the sink and sets its next due time. */
static void run_scheduled(struct dns_sync *s, struct sink *k)
{
    char err[600];
    if (run_sink(s, k, err, sizeof err) == 0) {
        if (k->failing)
            log_info("DNS %s: working again", k->cfg->label);
        k->failing = 0;
        k->backoff_ms = 0;
        k->due_ms = k->cfg->type == DNS_SINK_RFC2136 ? k->resync_ms
                                                     : monotonic_ms() + k->cfg->resync_ms;
        return;
    }
    if (s->stop)
        return;
    k->backoff_ms = k->backoff_ms ? k->backoff_ms * 2 : DNS_SYNC_BACKOFF_FIRST_MS;
    if (k->backoff_ms > DNS_SYNC_BACKOFF_MAX_MS)
        k->backoff_ms = DNS_SYNC_BACKOFF_MAX_MS;
    k->failing = 1;
    log_error("DNS %s: %s; retrying in %d s", k->cfg->label, err, k->backoff_ms / 1000);
    k->due_ms = monotonic_ms() + k->backoff_ms;
}

/* ---- the thread ---- */

/* The earliest due time, or -1 when nothing is scheduled. */
static long long next_due(const struct dns_sync *s)
{
    long long due = -1;
    for (size_t k = 0; k < s->nsinks; k++)
        if (s->sinks[k].due_ms >= 0 && (due < 0 || s->sinks[k].due_ms < due))
            due = s->sinks[k].due_ms;
    return due;
}

static void take_pending(struct dns_sync *s)
{
    struct dns_desired fresh = s->pending;
    s->pending = (struct dns_desired){ 0 };
    s->have_pending = 0;
    pthread_mutex_unlock(&s->lock);
    if (assign(s, &fresh) < 0)
        log_error("DNS: out of memory; keeping the previous names");
    else
        for (size_t k = 0; k < s->nsinks; k++)
            s->sinks[k].due_ms = monotonic_ms();   /* a change goes out now, back-off or not */
    dns_desired_free(&fresh);
    pthread_mutex_lock(&s->lock);
}

static void wait_until_due(struct dns_sync *s, long long due)
{
    if (due < 0) {
        pthread_cond_wait(&s->wake, &s->lock);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long wait = due - monotonic_ms();
    ts.tv_sec += wait / 1000;
    ts.tv_nsec += (wait % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&s->wake, &s->lock, &ts);
}

static void *sync_thread(void *arg)
{
    struct dns_sync *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        if (s->have_pending) {
            take_pending(s);
            continue;
        }
        long long due = next_due(s);
        if (due < 0 || due > monotonic_ms()) {
            wait_until_due(s, due);
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        for (size_t k = 0; k < s->nsinks && !s->stop; k++)
            if (s->sinks[k].due_ms >= 0 && s->sinks[k].due_ms <= monotonic_ms())
                run_scheduled(s, &s->sinks[k]);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- life cycle ---- */

static void state_path(const struct dns_sync_options *opt, const struct dns_sink_config *cfg,
                       char *out, size_t outlen)
{
    char server[64];
    snprintf(server, sizeof server, "%s", cfg->server.text);
    for (char *p = server; *p; p++)
        if (*p == ':' || *p == '[' || *p == ']')
            *p = '_';
    snprintf(out, outlen, "%s/dns-%.255s@%s.json", opt->state_dir ? opt->state_dir : ".",
             cfg->zone, server);
}

static void free_sinks(struct dns_sync *s)
{
    for (size_t k = 0; k < s->nsinks; k++) {
        dns_rfc2136_free(s->sinks[k].zone);
        dns_desired_free(&s->sinks[k].assigned);
    }
    free(s->sinks);
    json_decref(s->outside);
}

static struct dns_sync *sync_new(const struct dns_sync_options *opt)
{
    struct dns_sync *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->naddrs = opt->naddrs < DNS_ADDRESSES_MAX ? opt->naddrs : DNS_ADDRESSES_MAX;
    memcpy(s->addrs, opt->addrs, s->naddrs * sizeof *s->addrs);
    s->outside = json_object();
    s->sinks = calloc(opt->config->count ? opt->config->count : 1, sizeof *s->sinks);
    if (!s->sinks) {
        free(s);
        return NULL;
    }
    s->nsinks = opt->config->count;
    for (size_t k = 0; k < s->nsinks; k++) {
        struct sink *sk = &s->sinks[k];
        sk->cfg = &opt->config->sinks[k];
        sk->due_ms = -1;
        if (sk->cfg->type != DNS_SINK_RFC2136)
            continue;
        char path[4400];
        state_path(opt, sk->cfg, path, sizeof path);
        if (!(sk->zone = dns_rfc2136_new(sk->cfg, s->addrs, s->naddrs, path))) {
            free_sinks(s);
            free(s);
            return NULL;
        }
    }
    return s;
}

struct dns_sync *dns_sync_start(const struct dns_sync_options *opt, char *err, size_t errlen)
{
    struct dns_sync *s = sync_new(opt);
    if (!s) {
        snprintf(err, errlen, "DNS: out of memory");
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&s->lock, NULL);
    pthread_attr_t thread_attr;
    pthread_attr_init(&thread_attr);
    pthread_attr_setstacksize(&thread_attr, THREAD_STACK_BYTES);
    int rc = pthread_create(&s->thread, &thread_attr, sync_thread, s);
    pthread_attr_destroy(&thread_attr);
    if (rc != 0) {
        snprintf(err, errlen, "DNS: cannot start the thread: %s", strerror(rc));
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->lock);
        free_sinks(s);
        free(s);
        return NULL;
    }
    return s;
}

void dns_sync_submit(struct dns_sync *s, const struct dns_desired *desired)
{
    struct dns_desired copy;
    if (dns_desired_copy(desired, &copy) < 0) {
        log_error("DNS: out of memory; this change is not published");
        return;
    }
    pthread_mutex_lock(&s->lock);
    dns_desired_free(&s->pending);
    s->pending = copy;
    s->have_pending = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

void dns_sync_stop(struct dns_sync *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    dns_desired_free(&s->pending);
    free_sinks(s);
    free(s);
}

int dns_sync_run_once(const struct dns_sync_options *opt, const struct dns_desired *desired)
{
    struct dns_sync *s = sync_new(opt);
    char err[600];
    int failed = 0;
    if (!s || assign(s, desired) < 0) {
        log_error("DNS: out of memory");
        failed = 1;
    }
    for (size_t k = 0; s && k < s->nsinks; k++) {
        if (run_sink(s, &s->sinks[k], err, sizeof err) < 0) {
            log_error("DNS %s: %s", s->sinks[k].cfg->label, err);
            failed = 1;
        }
    }
    if (s) {
        free_sinks(s);
        free(s);
    }
    return failed ? -1 : 0;
}
