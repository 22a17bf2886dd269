/*
 * metrics.h - the proxy's counters and their Prometheus text exposition.
 *
 * Hot-path updates touch only the calling worker's own slot (no shared cache lines, no locks);
 * a scrape sums the slots. Label cardinality is bounded: the host label is the matched host
 * entry of the route table (never the raw Host header), and hosts beyond a cap share "_other".
 */
#ifndef GATEHOUSE_METRICS_H
#define GATEHOUSE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_WORKERS 64

/* Called once at start, before workers run. */
void metrics_init(int num_workers);

/* Per request, from worker `w` (0-based): host label, final status, duration in seconds. */
void metrics_request_done(int w, const char *host_label, int status, double seconds);
void metrics_connection_opened(int w);
void metrics_connection_closed(int w);
/* kind: "connect", "timeout", "reset", "bad_response", "no_endpoint" */
void metrics_upstream_error(int w, const char *kind);
void metrics_bad_request(int w);
void metrics_route_reload(int ok);      /* any thread */
void metrics_set_routes_loaded(int loaded, size_t hosts, size_t routes);

/* Writes the whole exposition into a malloc'd buffer (caller frees). */
char *metrics_render(size_t *len_out);

#endif
