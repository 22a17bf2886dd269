/*
 * admin.h - the admin listener: GET /healthz, /readyz, /metrics on its own thread, so a
 * saturated data plane never delays a health check or a scrape. Listens where the config says
 * (loopback by default).
 */
#ifndef GATEHOUSE_ADMIN_H
#define GATEHOUSE_ADMIN_H

#include <stddef.h>

int admin_start(const char *addr, char *err, size_t errlen);
void admin_stop(void);
/* /readyz answers 200 only while both hold: routes are loaded (admin_set_ready, from the
 * reloader) and the data listeners accept connections (admin_set_serving, from main: set after
 * server_start, cleared when draining starts). A load balancer never sees "ready" for a port
 * that would refuse it. */
void admin_set_ready(int ready);

/* A Prometheus text file (the agent's STATE/metrics.prom) whose gatehouse_agent_* lines /metrics
 * appends, so one scrape of the node covers both programs. Set once before admin_start. A
 * missing file adds nothing. */
void admin_set_agent_metrics_file(const char *path);
void admin_set_serving(int serving);

#endif
