/*
 * translate.h - Kubernetes objects -> the proxy's routes document (docs/routes-format.md).
 *
 * The one place where Ingress semantics live (networking.k8s.io/v1 plus what ingress-nginx users
 * rely on). Both sources, the manifest directory and the cluster API, feed it the same json_t
 * objects; it is pure: no I/O, no clock (the caller passes the time certificates are checked
 * against), no globals. Every problem it finds is reported through the diagnostic callback
 * naming the object (e.g. "Ingress default/web: rule 0 path 2: ...") and the rest still
 * translates.
 */
#ifndef GATEHOUSE_TRANSLATE_H
#define GATEHOUSE_TRANSLATE_H

#include <jansson.h>
#include <stdint.h>

struct translate_options {
    const char *controller;          /* IngressClass spec.controller we serve */
    int watch_without_class;         /* serve class-less Ingresses even with no default class */
    void (*diag)(void *ctx, const char *severity /* "warning"|"error" */, const char *msg);
    void *diag_ctx;
    int64_t now;                     /* seconds since the epoch: expired certificates are refused */
    unsigned *tls_refused;           /* out, may be NULL: incremented per Secret refused */
    json_t **served;                 /* out, may be NULL: set by translate_routes to a new array
                                      * of the served Ingresses, as translate_served_ingresses */
};

/* objects: a json array of Kubernetes objects (any kinds; unknown kinds are ignored). Each must
 * carry apiVersion/kind/metadata as the API server returns them. Returns a new routes document
 * (never NULL: with nothing to serve, an empty one).
 *
 * Certificates stay out of the document: its "tls" entries name files "tls/<sha256>.crt" and
 * ".key" (relative to the routes file), and tls_files, when not NULL, receives a new json object
 * mapping each of those names to the file's content (PEM; a string that may hold any byte, so
 * use json_string_length), for routes_publish to write before the document. It holds private
 * keys: free it with tls_files_free, which wipes them. */
json_t *translate_routes(const json_t *objects, const struct translate_options *opt,
                         json_t **tls_files);

/* The served Ingresses (namespace/name strings, sorted) - for status publishing and DNS later. */
json_t *translate_served_ingresses(const json_t *objects, const struct translate_options *opt);

#endif
