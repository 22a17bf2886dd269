/*
 * upstream.h - connections to endpoints and the per-worker keep-alive pool.
 *
 * A worker owns its pool outright (no locks). Idle connections are keyed by the endpoint's
 * socket address, not by the endpoint object, so they survive a route reload that keeps the
 * endpoint. Idle connections stay registered in epoll: an EOF or stray byte from the server
 * closes them at once instead of failing the next request. Each endpoint keeps at most
 * UPSTREAM_IDLE_PER_ENDPOINT idle connections, each for at most UPSTREAM_IDLE_TIMEOUT_MS.
 */
#ifndef GATEHOUSE_UPSTREAM_H
#define GATEHOUSE_UPSTREAM_H

#include <stdint.h>
#include <sys/socket.h>

#include "timer.h"

#define UPSTREAM_IDLE_PER_ENDPOINT 128
#define UPSTREAM_IDLE_TIMEOUT_MS   60000
#define UPSTREAM_POOL_BUCKETS      256         /* distinct endpoint addresses pooled per worker */

/* What an epoll event's data.ptr points at: every watched object starts with this tag. */
enum watch_kind { WATCH_LISTENER = 1, WATCH_WAKEUP, WATCH_CLIENT, WATCH_UPSTREAM };

struct pool_bucket;
struct upstream_pool;

struct upstream_conn {
    enum watch_kind kind;                      /* WATCH_UPSTREAM */
    int fd;
    unsigned char connecting;                  /* non-blocking connect not yet confirmed */
    unsigned char reused;                      /* taken from the idle pool */
    unsigned char rd_ready, wr_ready;          /* edge-triggered readiness not yet used up */
    void *owner;                               /* the client session using it; NULL when idle */
    struct pool_bucket *bucket;                /* its endpoint's bucket (NULL: never pooled) */
    struct upstream_conn *idle_prev, *idle_next;
    struct timer idle_timer;
    struct upstream_pool *pool;
    struct upstream_conn *free_next;
};

struct upstream_pool {
    int epoll_fd;
    struct timer_wheel *wheel;
    struct pool_bucket *buckets;               /* UPSTREAM_POOL_BUCKETS, open addressing */
    struct upstream_conn *free_list;
    long open_conns;
};

int upstream_pool_init(struct upstream_pool *p, int epoll_fd, struct timer_wheel *wheel);
void upstream_pool_destroy(struct upstream_pool *p);

/* An idle pooled connection to addr, or NULL. */
struct upstream_conn *upstream_take_idle(struct upstream_pool *p,
                                         const struct sockaddr *addr, socklen_t addr_len);

/* Starts a non-blocking connect to addr. NULL with errno set when it failed at once
 * (e.g. ECONNREFUSED on loopback, EMFILE). */
struct upstream_conn *upstream_connect(struct upstream_pool *p,
                                       const struct sockaddr *addr, socklen_t addr_len);

/* Returns a connection after use: pooled when reusable and there is room, else closed. */
void upstream_release(struct upstream_pool *p, struct upstream_conn *c, int reusable,
                      int64_t now_ms);
void upstream_close(struct upstream_pool *p, struct upstream_conn *c);

/* An epoll event on an idle pooled connection: the server closed it or misbehaved. */
void upstream_idle_event(struct upstream_conn *c);

/* Closes every idle connection (drain). */
void upstream_close_idle(struct upstream_pool *p);

#endif
