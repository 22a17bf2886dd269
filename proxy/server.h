/*
 * server.h - the data plane: worker threads, each with its own epoll loop and its own
 * SO_REUSEPORT listening sockets (HTTP, and HTTPS when configured), its own upstream keep-alive
 * pools and its own metrics slot.
 *
 * main.c parses flags/config into struct server_options and calls server_start(). The admin
 * listener is separate (admin.h) so a busy data plane never starves health checks. Listening
 * sockets are bound by server_start() (before privileges are dropped by main). TLS needs the
 * default certificate and the session cache set up (tls_store.h, tls_session_cache.h) before
 * server_start(). server_stop() begins a graceful drain; server_wait() joins the workers.
 */
#ifndef GATEHOUSE_SERVER_H
#define GATEHOUSE_SERVER_H

#include <stddef.h>

struct server_options {
    const char *http_addr;               /* "ADDR:PORT" */
    const char *https_addr;              /* "ADDR:PORT", or NULL/"": no HTTPS listener */
    int hsts_seconds;                    /* > 0: HTTPS responses for hosts with a certificate of
                                            their own carry Strict-Transport-Security */
    int workers;                         /* >= 1 */
    int access_log;                      /* JSON line per request on stdout */
    size_t max_header_bytes;             /* -> 431 */
    long long max_body_bytes;            /* -> 413; 0 = unlimited */
    int client_header_timeout_ms;        /* -> 408 */
    int client_idle_timeout_ms;          /* keep-alive idle close */
    int upstream_connect_timeout_ms;     /* -> 502 */
    int upstream_read_timeout_ms;        /* -> 504 */
    int upstream_send_timeout_ms;
    int endpoint_down_ms;
    int drain_timeout_ms;
};

/* Binds the listeners (each worker gets its own SO_REUSEPORT socket) and starts the workers.
 * Returns 0, or -1 with a message in err (e.g. "cannot listen on 0.0.0.0:80: Permission denied"). */
int server_start(const struct server_options *opt, char *err, size_t errlen);

/* Graceful stop: close listeners, finish in-flight requests, close idle keep-alive connections,
 * and give up on what is left after drain_timeout_ms. Async-signal-unsafe: call from a thread. */
void server_stop(void);

/* Joins the workers. Returns the number of connections cut off by the drain timeout. */
int server_wait(void);

/* Active client connections across workers (for /metrics and the drain log). */
long server_active_connections(void);

#endif
