/*
 * dns_sync.h - the DNS thread: keeps every configured sink in line with the latest snapshot.
 *
 * The render loop hands over each new set of desired names (dns_sync_submit copies it and
 * returns at once: DNS never holds up routing, whatever the servers do). The thread then
 * reconciles every sink with the newest snapshot only - snapshots that arrive while a sync runs
 * replace each other - so a change reaches DNS as soon as the previous sync is done. Such a pass
 * reads only the names that changed (dns_rfc2136). Every `resync` (default 5 min) a full pass
 * reads every name, which repairs drift: a record someone deleted comes back, a stale one of
 * ours goes away. The first pass after start, and the one after a failure, are full passes.
 *
 * A sink that fails (server down, REFUSED, NOTAUTH, BADSIG, BADTIME, a file that cannot be
 * written) is logged with the reason and retried after 1 s, 2 s, 4 s ... up to 60 s; the other
 * sinks carry on. Recovery is logged too.
 *
 * Each name goes to the rfc2136 sink whose zone is the longest that contains it at a label
 * boundary (sinks with that same zone all get it); names outside every zone are reported once
 * and skipped. The hosts sinks get every name.
 */
#ifndef GATEHOUSE_DNS_SYNC_H
#define GATEHOUSE_DNS_SYNC_H

#include "dns_config.h"
#include "dns_records.h"

#include <stddef.h>

#define DNS_SYNC_BACKOFF_FIRST_MS 1000
#define DNS_SYNC_BACKOFF_MAX_MS 60000

struct dns_sync_options {
    const struct dns_config *config;      /* must outlive the sync */
    const struct dns_address *addrs;      /* copied */
    size_t naddrs;
    const char *state_dir;                /* where rfc2136 sinks remember their names */
};

struct dns_sync;

/* Starts the thread (signals should already be blocked in the caller: the thread inherits its
 * mask). NULL with err on failure. */
struct dns_sync *dns_sync_start(const struct dns_sync_options *opt, char *err, size_t errlen);

/* Hands over a snapshot (copied). Never blocks on DNS. */
void dns_sync_submit(struct dns_sync *s, const struct dns_desired *desired);

/* Stops the thread (an exchange in flight ends at its deadline) and frees everything. */
void dns_sync_stop(struct dns_sync *s);

/* For --once: reconciles every sink once, in the calling thread. Returns 0 when all succeeded. */
int dns_sync_run_once(const struct dns_sync_options *opt, const struct dns_desired *desired);

#endif
