/*
 * kube_watch.h - informers: a local copy of the objects the agent routes from, kept in step with
 * the API server by list-then-watch, as client-go's reflectors do.
 *
 * One reflector per resource (IngressClass, Ingress, Service, EndpointSlice, Secret of type
 * kubernetes.io/tls by field selector), in one namespace or all. Each:
 *  - lists in pages (limit/continue); the new list replaces the cached objects only once its last
 *    page arrived, so a failed list never shrinks the cache. An expired continue token (410)
 *    restarts the list.
 *  - watches from the list's resourceVersion with allowWatchBookmarks=true and a random
 *    timeoutSeconds in 300-600; ADDED/MODIFIED/DELETED update the cache, BOOKMARK moves the
 *    resourceVersion on. A watch that ends (server timeout, dropped stream, silent for longer than
 *    idle_timeout_s) is resumed from the last resourceVersion at once; its first failure to
 *    restart backs off like any error.
 *  - relists on 410 Gone (HTTP status, or an ERROR event with code 410).
 *  - backs off on connection errors, 401/403, 429 and 5xx: exponential from backoff_initial_ms to
 *    backoff_max_ms with +-20% jitter, never less than a Retry-After; resuming the watch when it
 *    was the watch that failed, relisting when it was the list. A success resets the backoff.
 *  - logs an error once per change of state (not per retry), naming the resource and the
 *    server's reason; 403 says which permission is missing and points at docs/rbac.yaml.
 * Each list item gets the apiVersion and kind its list omits. metadata.managedFields and the
 * kubectl.kubernetes.io/last-applied-configuration annotation are dropped on arrival (memory).
 * Cached objects are never modified in place (replaced whole), so snapshots may share them.
 */
#ifndef GATEHOUSE_KUBE_WATCH_H
#define GATEHOUSE_KUBE_WATCH_H

#include "kube_client.h"

#include <jansson.h>
#include <stdint.h>

struct kube_resource {
    const char *kind;            /* "Ingress" */
    const char *api_version;     /* "networking.k8s.io/v1" */
    const char *group_path;      /* "/apis/networking.k8s.io/v1" */
    const char *plural;          /* "ingresses" */
    int namespaced;
    const char *field_selector;  /* "type=kubernetes.io/tls", or NULL */
};

#define KUBE_RESOURCE_COUNT 5
extern const struct kube_resource kube_resources[KUBE_RESOURCE_COUNT];

struct kube_watch_options {
    const char *ns;              /* NULL: all namespaces (cluster-scoped kinds always are) */
    int page_size;               /* default 500 */
    int idle_timeout_s;          /* default 90 */
    int backoff_initial_ms;      /* default 800 */
    int backoff_max_ms;          /* default 30000 */
    unsigned seed;               /* for the jitter and timeoutSeconds */
};

struct kube_informers;

/* Borrows client and opt->ns. Zero fields of opt take the defaults. NULL when out of memory. */
struct kube_informers *kube_informers_new(struct kube_client *client,
                                          const struct kube_watch_options *opt);
void kube_informers_free(struct kube_informers *k);   /* cancels its requests */

/* Starts the first lists. */
void kube_informers_start(struct kube_informers *k, int64_t now_ms);

/* Starts what is due (backoff retries, idle watches torn down). now_ms: monotonic clock.
 * Returns the ms until it next needs calling, or -1 when no timer is pending. Call it after
 * every kube_client_poll. */
int kube_informers_tick(struct kube_informers *k, int64_t now_ms);

/* 1 once every resource has completed a list (the cache is then a whole picture). */
int kube_informers_synced(const struct kube_informers *k);

/* Increases whenever the cached objects change (each applied event, each completed list that
 * differs in any way). */
unsigned long long kube_informers_generation(const struct kube_informers *k);

/* A new json array holding (references to) every cached object of every resource. */
json_t *kube_informers_snapshot(const struct kube_informers *k);

struct kube_informer_stats {
    unsigned long long events;          /* watch events applied */
    unsigned long long lists;           /* lists completed (first ones and relists) */
    unsigned long long watch_restarts;  /* watches resumed after ending or failing */
    unsigned long long errors;          /* failed requests */
    unsigned watching;                  /* resources with a watch streaming now */
    size_t objects;                     /* cached objects */
};
void kube_informers_stats(const struct kube_informers *k, struct kube_informer_stats *out);

/* ---- exposed for unit tests ---- */

/* Splits a watch stream into events: feed bytes as they come, get one callback per complete
 * newline-terminated JSON line (blank lines skipped). */
struct kube_event_splitter {
    char *buf;
    size_t len, cap;
};
typedef void kube_event_fn(void *ctx, json_t *event);   /* event borrowed during the call; NULL
                                                        * when a line is not JSON */
int kube_event_split(struct kube_event_splitter *s, const char *data, size_t len,
                     kube_event_fn *fn, void *ctx);     /* -1 when a line exceeds 64 MiB */
void kube_event_splitter_free(struct kube_event_splitter *s);

/* The delay before retry `attempt` (0-based) with jitter from *seed, and at least retry_after_s
 * seconds when >= 0. */
int kube_backoff_ms(const struct kube_watch_options *opt, unsigned attempt, int retry_after_s,
                    unsigned *seed);

#endif
