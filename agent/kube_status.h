/*
 * kube_status.h - the node's addresses in status.loadBalancer.ingress of every Ingress it serves,
 * agreed between the edge nodes through coordination.k8s.io/v1 Leases.
 *
 * Every agent holds a heartbeat Lease "gatehouse-node-<node name>" (label
 * gatehouse.dev/heartbeat=true, annotation gatehouse.dev/addresses="ip1,ip2"), renewed every
 * retry period. One agent at a time also holds the leader Lease "gatehouse-status-leader" (the
 * client-go scheme: lease duration 15 s, renew deadline 10 s, retry period 2 s; expiry judged by
 * when this agent last saw the record change, not by the holder's clock). The leader lists the
 * heartbeat Leases every retry period; those renewed within their duration are live; the sorted
 * union of their addresses is what every served Ingress should show. An Ingress whose status
 * differs (compared as a set) gets a merge patch on its /status subresource; an equal one gets
 * no request. Ingresses the agent does not serve are never touched. Addresses that parse as IPs
 * go in "ip", others in "hostname".
 *
 * Failures (403, conflicts, unreachable API) are logged once per change of state and retried on
 * the next period; a leader that cannot renew within the renew deadline steps down.
 */
#ifndef GATEHOUSE_KUBE_STATUS_H
#define GATEHOUSE_KUBE_STATUS_H

#include "kube_client.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define KUBE_STATUS_LEADER_LEASE "gatehouse-status-leader"
#define KUBE_STATUS_NODE_LEASE_PREFIX "gatehouse-node-"

struct kube_status_options {
    const char *lease_namespace;   /* where the Leases live */
    const char *node_name;         /* names the heartbeat Lease; the holder identity */
    const char *addresses;         /* this node's addresses, comma-separated */
    int lease_duration_s;          /* default 15 */
    int renew_deadline_s;          /* default 10 */
    int retry_period_s;            /* default 2 */
};

struct kube_status;

/* Borrows client and the option strings. NULL when out of memory. */
struct kube_status *kube_status_new(struct kube_client *client,
                                    const struct kube_status_options *opt);
void kube_status_free(struct kube_status *s);   /* cancels its requests */

/* After each render: the informers' objects and the served Ingresses ("namespace/name" strings
 * from translate_served_ingresses). Keeps references; compared and patched on the next tick. */
void kube_status_set_ingresses(struct kube_status *s, const json_t *objects, const json_t *served);

/* Does what is due. now_ms: monotonic; the wall clock is read for Lease times. Returns the ms
 * until it next needs calling. Call it after every kube_client_poll. */
int kube_status_tick(struct kube_status *s, int64_t now_ms);

/* Gives up leadership (holder emptied, as client-go's ReleaseOnCancel) when held; the heartbeat
 * Lease is left to expire (the proxy may well go on serving). Returns 1 when a request was
 * started (poll the client until kube_client_running is 0, briefly), else 0. */
int kube_status_release(struct kube_status *s);

int kube_status_is_leader(const struct kube_status *s);

/* ---- exposed for unit tests ---- */

/* The addresses of the live heartbeat Leases in a LeaseList, sorted and unique, as a json array
 * of strings. live_fn says whether a lease (by name) counts as live. */
json_t *kube_status_live_addresses(const json_t *lease_list,
                                   int (*live_fn)(void *ctx, const json_t *lease), void *ctx);

/* 1 when the Ingress's status.loadBalancer.ingress holds exactly these addresses (any order). */
int kube_status_matches(const json_t *ingress, const json_t *addresses);

/* The merge-patch body setting status.loadBalancer.ingress to these addresses (malloc'd). */
char *kube_status_patch_body(const json_t *addresses);

/* The node's address when none is configured: the source address of the default route (an
 * unconnected-UDP getsockname trick, no packet is sent). 0, or -1 with err. */
int kube_status_default_address(char *out, size_t outlen, char *err, size_t errlen);

#endif
