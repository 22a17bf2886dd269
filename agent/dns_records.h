/*
 * dns_records.h - the DNS names the node should publish, from the Kubernetes objects.
 *
 * Every host of a served Ingress becomes a name: spec.rules[].host, spec.tls[].hosts[] and the
 * comma-separated annotation gatehouse.dev/hostname. The annotation gatehouse.dev/ttl (seconds,
 * or a duration like "5m") sets the records' TTL; when several Ingresses name the same host the
 * smallest TTL wins, so the result never depends on the order of the objects. Wildcard hosts
 * ("*.foo.com") stay in the list as such; each sink decides whether it publishes them.
 *
 * Which address a name points at is not decided here: every name points at the node's own
 * addresses (dns_address_parse), A for IPv4 and AAAA for IPv6.
 *
 * Pure: no I/O, no clock. Problems (a bad host in a TLS entry or the annotation, a bad TTL) are
 * reported through the diagnostic callback naming the Ingress; the rest still counts.
 */
#ifndef GATEHOUSE_DNS_RECORDS_H
#define GATEHOUSE_DNS_RECORDS_H

#include "translate.h"

#include <jansson.h>
#include <stddef.h>

#define DNS_RECORDS_HOSTNAME_ANNOTATION "gatehouse.dev/hostname"
#define DNS_RECORDS_TTL_ANNOTATION "gatehouse.dev/ttl"
#define DNS_RECORDS_TTL_MAX 2147483647u

struct dns_host {
    char name[254];      /* lower case, no trailing dot; may start with "*." */
    unsigned ttl;        /* 0: the sink's default */
};

/* A snapshot of the desired names: sorted by name (strcmp), unique. */
struct dns_desired {
    struct dns_host *names;
    size_t count;
};

/* Fills *out (free with dns_desired_free). served: the served Ingresses ("namespace/name"), as
 * translate_routes reports them; opt's diag callback receives this module's problems. Returns
 * 0, or -1 when out of memory. */
int dns_desired_from_objects(const json_t *objects, const json_t *served,
                             const struct translate_options *opt, struct dns_desired *out);

void dns_desired_free(struct dns_desired *d);

/* A deep copy (for handing one snapshot to another thread). Returns 0 or -1. */
int dns_desired_copy(const struct dns_desired *from, struct dns_desired *to);

/* The entry for name, or NULL. */
const struct dns_host *dns_desired_find(const struct dns_desired *d, const char *name);

/* A node address to publish. */
struct dns_address {
    int family;                  /* AF_INET or AF_INET6 */
    unsigned char bytes[16];     /* 4 or 16 significant bytes */
    char text[46];               /* canonical text form (inet_ntop) */
};

#define DNS_ADDRESSES_MAX 8

/* Parses "192.0.2.10" or a comma-separated list "192.0.2.10,2001:db8::10" into out (at most
 * DNS_ADDRESSES_MAX, duplicates dropped). Returns the count, or -1 with a reason in err. */
int dns_address_parse(const char *list, struct dns_address *out, size_t max, char *err,
                      size_t errlen);

/* "30", "30s", "5m", "1h30m" -> seconds in 1..DNS_RECORDS_TTL_MAX. Returns 0 or -1. */
int dns_ttl_parse(const char *s, unsigned *out);

#endif
