/*
 * upstream.c - upstream connections and the idle keep-alive pool (upstream.h).
 *
 * Pooled connections are reused most-recently-idle first: the hottest connection is the least
 * likely to have been closed by the server's own idle timer.
 */
#include "upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

struct pool_bucket {
    struct sockaddr_storage addr;
    socklen_t addr_len;                        /* 0: empty bucket */
    int idle_count;
    struct upstream_conn *idle_head;           /* most recently idle first */
};

int upstream_pool_init(struct upstream_pool *p, int epoll_fd, struct timer_wheel *wheel)
{
    memset(p, 0, sizeof *p);
    p->epoll_fd = epoll_fd;
    p->wheel = wheel;
    p->buckets = calloc(UPSTREAM_POOL_BUCKETS, sizeof *p->buckets);
    return p->buckets ? 0 : -1;
}

static uint32_t addr_hash(const struct sockaddr *addr, socklen_t len)
{
    const unsigned char *b = (const unsigned char *)addr;
    uint32_t h = 2166136261u;
    for (socklen_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

/* The bucket for addr, created on first use; NULL when the table is full (no pooling then). */
static struct pool_bucket *bucket_for(struct upstream_pool *p, const struct sockaddr *addr,
                                      socklen_t len, int create)
{
    uint32_t i = addr_hash(addr, len);
    for (int probe = 0; probe < UPSTREAM_POOL_BUCKETS; probe++, i++) {
        struct pool_bucket *b = &p->buckets[i % UPSTREAM_POOL_BUCKETS];
        if (b->addr_len == len && memcmp(&b->addr, addr, len) == 0)
            return b;
        if (b->addr_len == 0) {
            if (!create)
                return NULL;
            memcpy(&b->addr, addr, len);
            b->addr_len = len;
            return b;
        }
    }
    return NULL;
}

static void idle_unlink(struct upstream_conn *c)
{
    struct pool_bucket *b = c->bucket;
    if (c->idle_prev)
        c->idle_prev->idle_next = c->idle_next;
    else
        b->idle_head = c->idle_next;
    if (c->idle_next)
        c->idle_next->idle_prev = c->idle_prev;
    c->idle_prev = c->idle_next = NULL;
    b->idle_count--;
}

struct upstream_conn *upstream_take_idle(struct upstream_pool *p,
                                         const struct sockaddr *addr, socklen_t addr_len)
{
    struct pool_bucket *b = bucket_for(p, addr, addr_len, 0);
    if (!b || !b->idle_head)
        return NULL;
    struct upstream_conn *c = b->idle_head;
    idle_unlink(c);
    timer_cancel(p->wheel, &c->idle_timer);
    c->reused = 1;
    c->wr_ready = 1;        /* an idle connection's send buffer is empty */
    return c;
}

static void idle_timer_fired(struct timer *t)
{
    struct upstream_conn *c = (struct upstream_conn *)((char *)t - offsetof(struct upstream_conn, idle_timer));
    idle_unlink(c);
    upstream_close(c->pool, c);
}

struct upstream_conn *upstream_connect(struct upstream_pool *p,
                                       const struct sockaddr *addr, socklen_t addr_len)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int connecting = 0;
    if (connect(fd, addr, addr_len) < 0) {
        if (errno != EINPROGRESS) {
            int saved = errno;
            close(fd);
            errno = saved;
            return NULL;
        }
        connecting = 1;
    }
    struct upstream_conn *c = p->free_list;
    if (c)
        p->free_list = c->free_next;
    else if (!(c = malloc(sizeof *c))) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    memset(c, 0, sizeof *c);
    c->kind = WATCH_UPSTREAM;
    c->fd = fd;
    c->connecting = (unsigned char)connecting;
    c->wr_ready = (unsigned char)!connecting;
    c->pool = p;
    c->bucket = bucket_for(p, addr, addr_len, 1);
    c->idle_timer.fire = idle_timer_fired;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
    if (epoll_ctl(p->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int saved = errno;
        close(fd);
        c->free_next = p->free_list;
        p->free_list = c;
        errno = saved;
        return NULL;
    }
    p->open_conns++;
    return c;
}

void upstream_close(struct upstream_pool *p, struct upstream_conn *c)
{
    timer_cancel(p->wheel, &c->idle_timer);
    close(c->fd);                     /* also removes it from epoll */
    c->fd = -1;
    c->kind = 0;                      /* a stale event later in this epoll batch is ignored */
    c->owner = NULL;
    c->free_next = p->free_list;
    p->free_list = c;
    p->open_conns--;
}

void upstream_release(struct upstream_pool *p, struct upstream_conn *c, int reusable,
                      int64_t now_ms)
{
    struct pool_bucket *b = c->bucket;
    if (!reusable || !b || b->idle_count >= UPSTREAM_IDLE_PER_ENDPOINT) {
        upstream_close(p, c);
        return;
    }
    c->owner = NULL;
    c->idle_prev = NULL;
    c->idle_next = b->idle_head;
    if (b->idle_head)
        b->idle_head->idle_prev = c;
    b->idle_head = c;
    b->idle_count++;
    timer_set(p->wheel, &c->idle_timer, now_ms + UPSTREAM_IDLE_TIMEOUT_MS);
}

void upstream_idle_event(struct upstream_conn *c)
{
    /* Edge-triggered events can trail behind data already read: only close on real news. */
    char byte;
    if (recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    idle_unlink(c);
    upstream_close(c->pool, c);
}

void upstream_close_idle(struct upstream_pool *p)
{
    for (int i = 0; i < UPSTREAM_POOL_BUCKETS; i++) {
        struct pool_bucket *b = &p->buckets[i];
        while (b->idle_head) {
            struct upstream_conn *c = b->idle_head;
            idle_unlink(c);
            upstream_close(p, c);
        }
    }
}

void upstream_pool_destroy(struct upstream_pool *p)
{
    upstream_close_idle(p);
    while (p->free_list) {
        struct upstream_conn *c = p->free_list;
        p->free_list = c->free_next;
        free(c);
    }
    free(p->buckets);
    p->buckets = NULL;
}
