/*
 * kube_source.h - the cluster API as a source (source.h).
 *
 * One thread, one libcurl multi (kube_client): the informers (kube_watch) list and watch the
 * five resources; the status publisher (kube_status, when ingress.publishStatus is on) keeps
 * Leases and Ingress status; a signalfd takes SIGTERM/SIGINT/SIGHUP in the same poll. wait()
 * returns SOURCE_CHANGED once every resource has been listed and whenever the cache changed
 * after that, having first taken in whatever else had already arrived (so a burst of events is
 * one render). Until the first complete listing nothing is rendered: the routes on disk keep
 * serving, however long the API stays away.
 */
#ifndef GATEHOUSE_KUBE_SOURCE_H
#define GATEHOUSE_KUBE_SOURCE_H

#include "kube_client.h"
#include "kube_status.h"
#include "kube_watch.h"
#include "kubeconfig.h"
#include "source.h"

#include <stdint.h>

struct kube_source_options {
    const char *kubeconfig;          /* NULL or "": in-cluster */
    const char *context;             /* NULL or "": current-context */
    const char *ns;                  /* NULL or "": all namespaces */
    int watch_idle_timeout_ms;
    int publish_status;
    const char *lease_namespace;     /* NULL or "": the config's namespace, else "default" */
    const char *node_name;
    const char *addresses;           /* comma-separated; NULL or "": the default route's */
    int lease_duration_ms, renew_deadline_ms, retry_period_ms;
};

struct kube_source {
    struct source base;
    struct kube_source_options opt;
    struct kube_config config;
    struct kube_client *client;
    struct kube_informers *informers;
    struct kube_status *status;
    int signal_fd;
    unsigned long long rendered_generation;
    int synced_logged;
    struct kube_informer_stats last_stats;   /* as last written to metrics.prom */
    int last_leader;
    int64_t stats_written_ms;
    char lease_namespace[256];
    char addresses[256];
};

/* Loads the kubeconfig (or in-cluster config) and sets the source up. Returns 0, or -1 with err
 * (a bad kubeconfig is a startup error: nothing is rendered from a cluster we cannot name). */
int kube_source_init(struct kube_source *ks, const struct kube_source_options *opt, char *err,
                     size_t errlen);
/* What the source talks to, for the start-up log line. */
const char *kube_source_describe(const struct kube_source *ks);

#endif
