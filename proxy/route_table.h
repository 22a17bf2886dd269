/*
 * route_table.h - the proxy's immutable route table: built from the routes file
 * (docs/routes-format.md), matched per request, published by one atomic pointer swap.
 *
 * A table is never modified after it is built (except the endpoints' soft state: round-robin
 * cursor and down-until time, which are atomics). Requests hold a reference to the table they
 * started with, so a reload never pulls a backend out from under an in-flight request.
 */
#ifndef GATEHOUSE_ROUTE_TABLE_H
#define GATEHOUSE_ROUTE_TABLE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct endpoint {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char text[80];                       /* "10.0.0.1:8080" / "[fd00::1]:80", for logs */
    _Atomic int64_t down_until_ms;       /* monotonic ms; 0 = up */
};

struct backend {
    const char *name;                    /* "namespace/service:port" */
    const char *error;                   /* non-NULL: always 503, this is why */
    struct endpoint *endpoints;
    size_t num_endpoints;                /* 0 -> 503 */
    _Atomic uint32_t rr_cursor;
};

struct route_match {
    const struct backend *backend;       /* NULL -> 404 */
    const char *host_label;              /* matched host entry ("*" / "_" when none): metrics label */
    const char *ingress;                 /* "namespace/name" or NULL */
    int ssl_redirect;                    /* the host entry has sslRedirect: plain HTTP gets 308 */
};

struct route_table;

/* Loads and validates a routes file. NULL with a message in err when anything is wrong; the
 * message names the offending entry (e.g. "hosts[3].paths[0]: path must begin with /"). */
struct route_table *route_table_load_file(const char *path, char *err, size_t errlen);
struct route_table *route_table_from_json(const json_t *doc, char *err, size_t errlen);

/* An empty table (every request 404). */
struct route_table *route_table_empty(void);

void route_table_ref(struct route_table *t);
void route_table_unref(struct route_table *t);   /* frees on last reference */

/* host: Host header value (a port is ignored, case-insensitive); path: without query. */
void route_table_match(const struct route_table *t, const char *host, size_t host_len,
                       const char *path, size_t path_len, struct route_match *out);

/* The table's certificates (its "tls" entries); never NULL for a loaded table. */
struct tls_store;
const struct tls_store *route_table_tls(const struct route_table *t);

size_t route_table_num_hosts(const struct route_table *t);
size_t route_table_num_routes(const struct route_table *t);
int64_t route_table_generation(const struct route_table *t);

/* Picks the next endpoint by round robin, skipping endpoints marked down (unless all are down,
 * then the least recently failed). exclude: an endpoint already tried for this request, or NULL.
 * Returns NULL when the backend has none. */
struct endpoint *backend_pick(const struct backend *b, const struct endpoint *exclude, int64_t now_ms);

/* Marks an endpoint down until now_ms + backoff_ms after a connect failure. */
void endpoint_mark_down(struct endpoint *e, int64_t now_ms, int backoff_ms);

/* The current table, process-wide. Publishing is one atomic swap; acquire returns a referenced
 * table that the caller must unref. Safe from any thread. */
void route_table_publish(struct route_table *t);          /* takes over the caller's reference */
struct route_table *route_table_acquire(void);
uint64_t route_table_published_generation(void);          /* increments on every publish */

#endif
