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

/* The folder of the routes file, where the agent writes metrics.prom (gatehouse_agent_* lines)
 * and boot.prom (gatehouse_node_boot_* lines): /metrics appends both, so one scrape of the node
 * covers every program. Set once before admin_start. A missing file adds nothing. */
void admin_set_state_metrics_dir(const char *dir);
void admin_set_serving(int serving);

#endif
