/*
 * dns_rfc2136.h - the RFC 2136 sink: makes one zone on one server hold this node's records.
 *
 * Ownership. Next to every name it publishes, a node keeps one TXT record of its own:
 *
 *     shop.edge.example. 60 IN A   192.0.2.10
 *     shop.edge.example. 60 IN TXT "heritage=gatehouse,owner=edge-1,addresses=192.0.2.10"
 *
 * owner is the sink's `owner` (default node.name); addresses lists, separated by ';', the
 * A/AAAA records this owner put there. A name is Gatehouse's to touch when it has no A, AAAA or
 * CNAME record at all, or when it carries at least one TXT starting "heritage=gatehouse,".
 * Anything else is a foreign name: it is reported and never changed. Several nodes (different
 * owners) may publish the same name - each adds its own address and its own TXT - and a node
 * that stops publishing removes only its TXT and the addresses its TXT lists that no other
 * owner's TXT also lists. So round-robin DNS across nodes works, and one node leaving (or
 * changing its address) takes away only what it added.
 *
 * Races. Every name is read first (A, AAAA, TXT; queries signed like the updates), and the
 * UPDATE carries prerequisites pinning what was seen: the TXT RRset exactly as read
 * (value-dependent "RRset exists", or "RRset does not exist" when there was none), plus "no A
 * RRset", "no AAAA RRset" and "no CNAME RRset" for a name no Gatehouse owner held yet. If
 * another node, a person or another tool changes a name in between, the server refuses the
 * whole message (NXRRSET, YXRRSET) and nothing is applied. The message's names are then read
 * again and sent in two halves (recursively; a single name is tried 3 times), so a contested
 * name costs a few messages, not one per name.
 *
 * Wildcards. A query for a name below a wildcard ("*.apps.edge.example.") that owns nothing
 * itself is answered with the wildcard's records, but prerequisites and updates only see what
 * the name owns. When a name's records equal those of the nearest wildcard above it, an UPDATE
 * holding only the prerequisite "name is in use" (it changes nothing) tells the two apart.
 *
 * Batching. Names are read and updated in chunks; all the changes of a chunk go into as few
 * UPDATE messages as fit in 64 KiB (TCP), each applied atomically by the server. A name with
 * nothing to change costs its three queries and no update.
 *
 * TTL. Records get the Ingress's TTL or the sink's; while other owners share a name, their
 * RRset's TTL is kept (an RRset has one TTL, and two nodes configured differently would
 * otherwise rewrite it back and forth).
 *
 * Forgetting. Names this node published are remembered in a state file (one per sink) so that
 * removals still happen after a restart, without zone transfers.
 */
#ifndef GATEHOUSE_DNS_RFC2136_H
#define GATEHOUSE_DNS_RFC2136_H

#include "dns_config.h"
#include "dns_records.h"

#include <stddef.h>

#define DNS_RFC2136_HERITAGE "heritage=gatehouse,"

struct dns_rfc2136;

struct dns_rfc2136_stats {
    unsigned names;         /* names looked at */
    unsigned queries;       /* DNS queries sent */
    unsigned updates;       /* UPDATE messages the server applied */
    unsigned changed;       /* names changed */
    unsigned conflicts;     /* UPDATEs refused by a prerequisite (then retried) */
    unsigned foreign;       /* desired names left alone because someone else owns them */
};

/* cfg must outlive the sink. state_path: where the published names are remembered ("" or NULL:
 * only in memory). NULL when out of memory. */
struct dns_rfc2136 *dns_rfc2136_new(const struct dns_sink_config *cfg,
                                    const struct dns_address *addrs, size_t naddrs,
                                    const char *state_path);
void dns_rfc2136_free(struct dns_rfc2136 *z);

/* Makes the zone hold desired's names that lie in this zone and were assigned to it (the caller
 * assigns each name to its longest zone; names outside are ignored here) and removes what this
 * owner published for names no longer desired. full: read every name (the periodic resync,
 * which repairs drift); otherwise only names added, removed or given another TTL since the last
 * successful pass are read (a change costs a few queries, not three per name) - after a failed
 * pass the next one is full anyway. Returns 0 when the zone is in sync (foreign names aside),
 * -1 with err (the server's reason: "REFUSED", "NOTAUTH", TSIG problems, time-outs) when it is
 * worth retrying later. stop (may be NULL) is polled between exchanges. */
int dns_rfc2136_reconcile(struct dns_rfc2136 *z, const struct dns_desired *desired, int full,
                          struct dns_rfc2136_stats *stats, volatile int *stop,
                          char *err, size_t errlen);

/* The TXT value this owner writes for these addresses (for tests and documentation). */
int dns_rfc2136_ownership_text(const char *owner, const struct dns_address *addrs,
                               size_t naddrs, char *out, size_t outlen);

#endif
