/*
 * conn.h - one worker's state and the client connection ("session") state machine.
 *
 * A worker is one thread with one epoll loop; everything in struct worker belongs to that
 * thread alone, so nothing here takes a lock. server.c owns the loop (listener, wakeup,
 * dispatch, drain); conn.c owns what happens on a client connection: read a request head,
 * route it, stream it to an upstream, stream the response back, then either read the next
 * request or close.
 *
 * All sockets are registered once, edge-triggered, for both directions. Each side remembers
 * whether its last read/write used up the readiness (rd_ready/wr_ready); the state machine
 * simply retries whatever it can until every side would block, so no epoll_ctl() is needed
 * on the hot path and flow control falls out naturally: a side is only read while the other
 * side has buffer room.
 *
 * A client connection is plain or TLS (from the HTTPS listener); the difference stays inside
 * conn.c's client transport functions (tls_transport.h does the TLS), so the HTTP state machine
 * is the same for both.
 */
#ifndef GATEHOUSE_CONN_H
#define GATEHOUSE_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "access_log.h"
#include "http1_parser.h"
#include "server.h"
#include "timer.h"
#include "upstream.h"

#define CONN_MAX_HEADERS     100
#define CONN_BODY_WINDOW     16384      /* per direction, beyond the head */

struct route_table;
struct session;
struct buffer_block;
struct tls_transport;

struct worker {
    int index;
    const struct server_options *opt;
    int epoll_fd;
    enum watch_kind listener_tag;       /* data.ptr targets for the listener and wakeup fds */
    enum watch_kind https_listener_tag; /* WATCH_LISTENER too: told apart by its address */
    enum watch_kind wakeup_tag;
    int listen_fd;                      /* -1 once draining */
    int https_listen_fd;                /* -1: no HTTPS listener, or draining */
    int64_t accept_paused_until;        /* after EMFILE: monotonic ms; 0 = accepting */
    int wakeup_fd;                      /* eventfd: server_stop() pokes it */
    char port_text[8];                  /* X-Forwarded-Port */
    char https_port_text[8];            /* same for HTTPS; "" when HTTPS is not served */
    char hsts_line[64];                 /* "Strict-Transport-Security: ...\r\n", "" = off */
    pthread_t thread;

    int64_t now_ms;                     /* monotonic, read once per loop iteration */
    int64_t wall_ms;
    struct timer_wheel wheel;
    struct upstream_pool pool;
    struct access_log *log;             /* NULL: access log off */

    struct route_table *table;          /* cached current table (one reference) */
    uint64_t table_gen;

    struct session *sessions;           /* every open session (drain walks it) */
    long num_sessions;
    struct session *free_sessions;      /* recycled session objects */
    struct buffer_block *free_buffers;  /* recycled in+out buffer pairs */
    struct tls_transport *free_tls;     /* recycled TLS engines */
    size_t in_cap, out_cap;
    uint64_t rng[2];                    /* request ids */

    int draining;
    int64_t drain_deadline_ms;
    int cut_off;

    struct http1_header headers[CONN_MAX_HEADERS];   /* parse scratch */
    _Alignas(64) _Atomic long active;   /* read by other threads: own cache line */
};

/* A new client connection from accept4(); tls: from the HTTPS listener. Closes fd on failure. */
void session_open(struct worker *w, int fd, const struct sockaddr *peer, socklen_t peer_len,
                  int tls);

/* epoll events for a session or for an upstream connection (owned or idle). */
void session_event(struct session *s, uint32_t events);
void upstream_conn_event(struct upstream_conn *c, uint32_t events);

/* Drain: close sessions idle between requests; the rest finish with Connection: close. */
void worker_drain_idle(struct worker *w);
/* Drain timeout: close every session left; returns how many. */
int worker_cut_off(struct worker *w);
/* Frees the recycled session memory (worker exit). */
void worker_free_sessions(struct worker *w);

#endif
