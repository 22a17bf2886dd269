/*
 * ingress_validate.h - the names, hosts and paths Kubernetes allows, checked before any of them
 * reaches the routes file.
 *
 * The API server validates these too, but a manifest directory has no API server in front of it
 * and the proxy refuses a whole routes file over one bad entry, so the agent checks again and
 * drops only the offending piece. Each function returns NULL when the input is acceptable, else
 * a short reason (a string constant) to put in a diagnostic.
 */
#ifndef GATEHOUSE_INGRESS_VALIDATE_H
#define GATEHOUSE_INGRESS_VALIDATE_H

#include <stddef.h>

#define DNS_NAME_MAX 253

/* RFC 1123 label, lower case, at most 63 characters (namespaces). */
const char *dns_label_problem(const char *s);
/* RFC 1035 label: an RFC 1123 label that starts with a letter (Service names). */
const char *dns1035_label_problem(const char *s);
/* RFC 1123 subdomain, lower case, at most 253 characters (object names, FQDN endpoints). */
const char *dns_subdomain_problem(const char *s);
/* IANA service name: at most 15 of [a-z0-9-], at least one letter, no "--", no '-' at an end. */
const char *port_name_problem(const char *s);

/* An Ingress rule's host: a DNS name or "*." + a DNS name, any case, not an IP address.
 * On success writes the lower-cased host to out (outlen > DNS_NAME_MAX). */
const char *ingress_host_problem(const char *host, char *out, size_t outlen);

/* An Ingress path. Every path must begin with "/" and hold nothing the proxy refuses (control
 * characters, space, '?', '#'); paths matched as prefixes or exactly also must not hold the
 * sequences the API server refuses for Exact/Prefix ("//", "/./", "/../", "%2f", "%2F", or end
 * in "/." or "/.."). The proxy matches ImplementationSpecific as Prefix, so it is held to the
 * same rules. */
const char *ingress_path_problem(const char *path);

#endif
