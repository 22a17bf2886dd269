/*
 * metrics.c - the proxy's counters (see metrics.h) and their Prometheus text exposition 0.0.4.
 *
 * Each worker owns one cache-line aligned slot. Only that worker writes its counters, so an
 * increment is a relaxed load plus a relaxed store (plain moves on x86, no lock prefix); the
 * atomics exist so a concurrent scrape reads whole values.
 *
 * Requests by (host, status) live in a per-worker open-addressing table. The worker looks series
 * up without a lock: it is the only thread that ever writes the table's keys. It takes its
 * slot's mutex only to insert a new series, and a scrape takes the same mutex to read the keys,
 * so the lock is contended only when a scrape meets an insertion - both rare.
 *
 * A series met for the first time is admitted by a process-wide registry, which copies the host
 * label (the caller's string lives in a route table that a reload may free) and enforces the
 * cap: past SERIES_CAP distinct series, new ones are counted as host="_other", so a flood of
 * host entries cannot grow memory or the scrape. A series admitted once is never dropped, so
 * every worker counts it under its own name.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SERIES_CAP 1000            /* (host, status) series before host="_other" */
#define SERIES_SLOTS 2048          /* power of two: the cap plus one "_other" per status fits */
#define SERIES_MAX_FILL (SERIES_SLOTS * 3 / 4)
#define OTHER_HOST "_other"

static const double duration_bounds[] = { .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10 };
#define NUM_BOUNDS (sizeof duration_bounds / sizeof duration_bounds[0])

static const char *const upstream_error_kinds[] = {
    "connect", "timeout", "reset", "bad_response", "no_endpoint", "other"
};
#define NUM_KINDS (sizeof upstream_error_kinds / sizeof upstream_error_kinds[0])

typedef _Atomic uint64_t counter;

struct series {
    const char *host;              /* the registry's copy; NULL marks an empty slot */
    uint32_t hash;
    int status;
    counter requests;
};

struct worker_slot {
    _Alignas(64) pthread_mutex_t insert_lock;
    counter duration_buckets[NUM_BOUNDS + 1];   /* per bucket, not cumulative; last is +Inf */
    counter duration_sum_ns;
    counter duration_count;
    counter connections_opened;
    counter connections_closed;
    counter bad_requests;
    counter upstream_errors[NUM_KINDS];
    struct series series[SERIES_SLOTS];
};

static struct worker_slot *slots;
static int num_slots;
/* Every admitted (host, status): owns the host strings, enforces the cap. Workers consult it
 * only when they meet a series for the first time. */
static struct {
    pthread_mutex_t lock;
    size_t count;
    size_t hosts_admitted;         /* series other than "_other" */
    struct series keys[SERIES_SLOTS];
} registry = { .lock = PTHREAD_MUTEX_INITIALIZER };
static counter reloads_ok, reloads_failed;
static _Atomic int routes_loaded;
static _Atomic size_t route_hosts, route_count;
static double start_time_seconds;

/* Only the owning worker writes a slot's counters: no read-modify-write instruction needed. */
static inline void bump(counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t peek(counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static struct worker_slot *slot_for(int w)
{
    if (w < 0 || w >= num_slots)
        return NULL;
    return &slots[w];
}

static void free_slots(void)
{
    for (int w = 0; w < num_slots; w++)
        pthread_mutex_destroy(&slots[w].insert_lock);
    for (size_t i = 0; i < SERIES_SLOTS; i++)
        free((char *)registry.keys[i].host);
    memset(registry.keys, 0, sizeof registry.keys);
    registry.count = 0;
    registry.hosts_admitted = 0;
    free(slots);
    slots = NULL;
    num_slots = 0;
}

void metrics_init(int num_workers)
{
    free_slots();
    if (num_workers < 1)
        num_workers = 1;
    if (num_workers > METRICS_MAX_WORKERS)
        num_workers = METRICS_MAX_WORKERS;
    size_t bytes = sizeof(struct worker_slot) * (size_t)num_workers;
    slots = aligned_alloc(_Alignof(struct worker_slot), bytes);
    if (!slots) {
        fprintf(stderr, "metrics: out of memory for %d worker slots\n", num_workers);
        abort();
    }
    memset(slots, 0, bytes);
    for (int w = 0; w < num_workers; w++)
        pthread_mutex_init(&slots[w].insert_lock, NULL);
    num_slots = num_workers;
    atomic_store(&reloads_ok, 0);
    atomic_store(&reloads_failed, 0);
    atomic_store(&routes_loaded, 0);
    atomic_store(&route_hosts, 0);
    atomic_store(&route_count, 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    start_time_seconds = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* ---- requests by (host, status) ---- */

static uint32_t series_hash(const char *host, int status)
{
    uint32_t h = 2166136261u;                       /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)host; *p; p++)
        h = (h ^ *p) * 16777619u;
    return (h ^ (uint32_t)status) * 16777619u;
}

/* Returns the matching key or the empty slot where it belongs (NULL only if the table is full). */
static struct series *series_probe(struct series *table, const char *host, int status,
                                   uint32_t hash)
{
    for (size_t n = 0, i = hash & (SERIES_SLOTS - 1); n < SERIES_SLOTS;
         n++, i = (i + 1) & (SERIES_SLOTS - 1)) {
        struct series *e = &table[i];
        if (!e->host)
            return e;
        if (e->hash == hash && e->status == status && strcmp(e->host, host) == 0)
            return e;
    }
    return NULL;
}

/* Admits a series process-wide, so the cap counts distinct series and a series known on one
 * worker is never sent to "_other" by another. Returns the registry's copy of the host. */
static const char *registry_admit(const char *host, int status, uint32_t hash)
{
    const char *canonical = NULL;
    pthread_mutex_lock(&registry.lock);
    struct series *e = series_probe(registry.keys, host, status, hash);
    if (e && e->host) {
        canonical = e->host;
    } else if (e && registry.count < SERIES_MAX_FILL &&
               (registry.hosts_admitted < SERIES_CAP || strcmp(host, OTHER_HOST) == 0)) {
        char *copy = strdup(host);
        if (copy) {
            *e = (struct series){ .host = copy, .hash = hash, .status = status };
            registry.count++;
            registry.hosts_admitted += strcmp(host, OTHER_HOST) != 0;
            canonical = copy;
        }
    }
    pthread_mutex_unlock(&registry.lock);
    return canonical;
}

static struct series *series_find_or_add(struct worker_slot *s, const char *host, int status)
{
    uint32_t hash = series_hash(host, status);
    struct series *e = series_probe(s->series, host, status, hash);
    if (e && e->host)
        return e;
    const char *canonical = e ? registry_admit(host, status, hash) : NULL;
    if (canonical) {
        pthread_mutex_lock(&s->insert_lock);
        *e = (struct series){ .host = canonical, .hash = hash, .status = status };
        pthread_mutex_unlock(&s->insert_lock);
        return e;
    }
    if (strcmp(host, OTHER_HOST) == 0)
        return NULL;
    return series_find_or_add(s, OTHER_HOST, status);
}

static void observe_duration(struct worker_slot *s, double seconds)
{
    if (!(seconds >= 0))                            /* also catches NaN */
        seconds = 0;
    size_t b = 0;
    while (b < NUM_BOUNDS && seconds > duration_bounds[b])
        b++;
    bump(&s->duration_buckets[b], 1);
    bump(&s->duration_sum_ns, seconds < 1e9 ? (uint64_t)(seconds * 1e9) : UINT64_MAX / 2);
    bump(&s->duration_count, 1);
}

void metrics_request_done(int w, const char *host_label, int status, double seconds)
{
    struct worker_slot *s = slot_for(w);
    if (!s)
        return;
    struct series *e = series_find_or_add(s, host_label ? host_label : "_", status);
    if (e)
        bump(&e->requests, 1);
    observe_duration(s, seconds);
}

/* ---- other per-worker counters ---- */

void metrics_connection_opened(int w)
{
    struct worker_slot *s = slot_for(w);
    if (s)
        bump(&s->connections_opened, 1);
}

void metrics_connection_closed(int w)
{
    struct worker_slot *s = slot_for(w);
    if (s)
        bump(&s->connections_closed, 1);
}

void metrics_upstream_error(int w, const char *kind)
{
    struct worker_slot *s = slot_for(w);
    if (!s)
        return;
    size_t k = 0;
    while (k < NUM_KINDS - 1 && strcmp(upstream_error_kinds[k], kind ? kind : "") != 0)
        k++;
    bump(&s->upstream_errors[k], 1);
}

void metrics_bad_request(int w)
{
    struct worker_slot *s = slot_for(w);
    if (s)
        bump(&s->bad_requests, 1);
}

/* ---- process-wide values, any thread ---- */

void metrics_route_reload(int ok)
{
    atomic_fetch_add_explicit(ok ? &reloads_ok : &reloads_failed, 1, memory_order_relaxed);
}

void metrics_set_routes_loaded(int loaded, size_t hosts, size_t routes)
{
    atomic_store(&routes_loaded, loaded ? 1 : 0);
    atomic_store(&route_hosts, hosts);
    atomic_store(&route_count, routes);
}

/* ---- exposition ---- */

struct text {
    char *p;
    size_t len, cap;
    int failed;
};

__attribute__((format(printf, 2, 3)))
static void put(struct text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

/* Label values escape backslash, double quote and newline (text format 0.0.4). */
static void put_label_value(struct text *t, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            put(t, "\\\\");
        else if (*v == '"')
            put(t, "\\\"");
        else if (*v == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *v);
    }
}

static void put_header(struct text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

struct series_row {
    const char *host;
    int status;
    uint64_t requests;
};

static int compare_rows(const void *a, const void *b)
{
    const struct series_row *x = a, *y = b;
    int c = strcmp(x->host, y->host);
    return c ? c : (x->status > y->status) - (x->status < y->status);
}

/* Host strings stay valid after the lock is released: the registry never drops a series. */
static size_t collect_series(struct series_row *rows)
{
    size_t n = 0;
    for (int w = 0; w < num_slots; w++) {
        struct worker_slot *s = &slots[w];
        pthread_mutex_lock(&s->insert_lock);
        for (size_t i = 0; i < SERIES_SLOTS; i++) {
            struct series *e = &s->series[i];
            if (e->host)
                rows[n++] = (struct series_row){ e->host, e->status, peek(&e->requests) };
        }
        pthread_mutex_unlock(&s->insert_lock);
    }
    qsort(rows, n, sizeof *rows, compare_rows);
    return n;
}

static void render_requests(struct text *t)
{
    put_header(t, "gatehouse_http_requests_total", "counter",
               "Requests answered, by matched host entry and status code.");
    struct series_row *rows = malloc(sizeof *rows * SERIES_SLOTS * (size_t)(num_slots ? num_slots : 1));
    if (!rows) {
        t->failed = 1;
        return;
    }
    size_t n = collect_series(rows);
    for (size_t i = 0; i < n;) {
        uint64_t sum = 0;
        size_t j = i;
        for (; j < n && compare_rows(&rows[i], &rows[j]) == 0; j++)
            sum += rows[j].requests;
        put(t, "gatehouse_http_requests_total{host=\"");
        put_label_value(t, rows[i].host);
        put(t, "\",code=\"%d\"} %llu\n", rows[i].status, (unsigned long long)sum);
        i = j;
    }
    free(rows);
}

static uint64_t sum_slots(size_t offset)
{
    uint64_t sum = 0;
    for (int w = 0; w < num_slots; w++)
        sum += peek((counter *)((char *)&slots[w] + offset));
    return sum;
}

#define SUM(field) sum_slots(offsetof(struct worker_slot, field))

static void render_duration(struct text *t)
{
    const char *name = "gatehouse_http_request_duration_seconds";
    put_header(t, name, "histogram", "Time from request head received to response complete.");
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= NUM_BOUNDS; b++) {
        cumulative += sum_slots(offsetof(struct worker_slot, duration_buckets) +
                                b * sizeof(counter));
        if (b < NUM_BOUNDS)
            put(t, "%s_bucket{le=\"%g\"} %llu\n", name, duration_bounds[b],
                (unsigned long long)cumulative);
        else
            put(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    }
    put(t, "%s_sum %.9f\n", name, (double)SUM(duration_sum_ns) / 1e9);
    put(t, "%s_count %llu\n", name, (unsigned long long)SUM(duration_count));
}

static void render_connections(struct text *t)
{
    uint64_t opened = SUM(connections_opened), closed = SUM(connections_closed);
    put_header(t, "gatehouse_connections_active", "gauge", "Client connections open now.");
    put(t, "gatehouse_connections_active %llu\n",
        (unsigned long long)(opened > closed ? opened - closed : 0));
    put_header(t, "gatehouse_connections_total", "counter", "Client connections accepted.");
    put(t, "gatehouse_connections_total %llu\n", (unsigned long long)opened);
}

static void render_errors(struct text *t)
{
    put_header(t, "gatehouse_upstream_errors_total", "counter",
               "Failed attempts to get a response from an upstream, by kind.");
    for (size_t k = 0; k < NUM_KINDS; k++)
        put(t, "gatehouse_upstream_errors_total{kind=\"%s\"} %llu\n", upstream_error_kinds[k],
            (unsigned long long)sum_slots(offsetof(struct worker_slot, upstream_errors) +
                                          k * sizeof(counter)));
    put_header(t, "gatehouse_bad_requests_total", "counter",
               "Client requests refused as malformed or too large.");
    put(t, "gatehouse_bad_requests_total %llu\n", (unsigned long long)SUM(bad_requests));
}

static void render_routes(struct text *t)
{
    put_header(t, "gatehouse_route_reloads_total", "counter",
               "Attempts to load the routes file, by result.");
    put(t, "gatehouse_route_reloads_total{result=\"ok\"} %llu\n",
        (unsigned long long)peek(&reloads_ok));
    put(t, "gatehouse_route_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)peek(&reloads_failed));
    put_header(t, "gatehouse_routes_loaded", "gauge",
               "1 once a routes file has been loaded successfully.");
    put(t, "gatehouse_routes_loaded %d\n", atomic_load(&routes_loaded));
    put_header(t, "gatehouse_route_hosts", "gauge", "Host entries in the current route table.");
    put(t, "gatehouse_route_hosts %zu\n", atomic_load(&route_hosts));
    put_header(t, "gatehouse_routes", "gauge", "Paths in the current route table.");
    put(t, "gatehouse_routes %zu\n", atomic_load(&route_count));
}

static unsigned long long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (unsigned long long)sysconf(_SC_PAGESIZE);
}

static void render_process(struct text *t)
{
    put_header(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    put(t, "process_resident_memory_bytes %llu\n", resident_bytes());
    put_header(t, "process_start_time_seconds", "gauge",
               "Start time of the process since unix epoch in seconds.");
    put(t, "process_start_time_seconds %.3f\n", start_time_seconds);
}

char *metrics_render(size_t *len_out)
{
    struct text t = { .cap = 8192 };
    t.p = malloc(t.cap);
    if (!t.p)
        return NULL;
    t.p[0] = '\0';
    render_requests(&t);
    render_duration(&t);
    render_connections(&t);
    render_errors(&t);
    render_routes(&t);
    render_process(&t);
    if (t.failed) {
        free(t.p);
        return NULL;
    }
    if (len_out)
        *len_out = t.len;
    return t.p;
}
