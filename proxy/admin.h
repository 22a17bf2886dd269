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
/* /readyz answers 200 once routes are loaded and until draining starts. */
void admin_set_ready(int ready);

#endif
