/*
 * server.c - the data plane's skeleton (server.h): listeners, worker threads, the epoll loop,
 * graceful drain. What happens on a connection is conn.c's business.
 *
 * Every worker owns a SO_REUSEPORT listening socket per listener (HTTP, HTTPS), so the kernel
 * spreads new connections over workers and no accept lock exists. The loop reads the clock once per iteration, runs
 * the events, then the timers, then writes the batched access-log lines.
 *
 * Stopping: server_stop() sets each worker's drain flag through its eventfd. A draining worker
 * closes its listener, closes connections idle between requests, lets the rest finish (their
 * responses say Connection: close) and exits when none are left or drain_timeout_ms passed.
 */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "route_table.h"

#define EVENTS_PER_WAIT  256
#define ACCEPTS_PER_WAKE 64
#define LISTEN_BACKLOG   4096
#define BODY_SLACK       1024      /* room in `out` for the fields the proxy adds */
#define ACCEPT_PAUSE_MS  100       /* after EMFILE and friends */

static struct worker *workers;
static int num_workers;
static struct server_options options;

static void resume_accepting(struct worker *w)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &w->listener_tag };
    struct epoll_event tev = { .events = EPOLLIN, .data.ptr = &w->https_listener_tag };
    w->accept_paused_until = 0;
    if ((w->listen_fd >= 0 && epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &ev) < 0) ||
        (w->https_listen_fd >= 0 &&
         epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->https_listen_fd, &tev) < 0))
        log_warn("worker %d: cannot resume accepting: %s", w->index, strerror(errno));
}

/* ---------------------------------------------------------------- listening */

/* "ADDR:PORT", "[V6]:PORT" or ":PORT" into host and port strings. */
static int split_address(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    const char *h = addr;
    size_t hlen;
    if (addr[0] == '[') {
        const char *close_bracket = strchr(addr, ']');
        if (!close_bracket || close_bracket[1] != ':')
            return -1;
        h = addr + 1;
        hlen = (size_t)(close_bracket - h);
        colon = close_bracket + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - addr);
    }
    if (hlen >= hostlen || strlen(colon + 1) >= portlen || colon[1] == 0)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = 0;
    strcpy(port, colon + 1);
    return 0;
}

static int open_listener(const char *addr, char *err, size_t errlen)
{
    char host[256], port[16];
    if (split_address(addr, host, sizeof host, port, sizeof port) < 0) {
        snprintf(err, errlen, "bad listen address %s (want ADDR:PORT or [ADDR]:PORT)", addr);
        return -1;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res;
    int rc = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* inherited by accept */
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int listener_port(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    snprintf(out, len, "%d", port);
    return 0;
}

/* ---------------------------------------------------------------- the loop */

static void pause_accepting(struct worker *w)
{
    if (w->listen_fd >= 0)
        epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->listen_fd, NULL);
    if (w->https_listen_fd >= 0)
        epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->https_listen_fd, NULL);
    w->accept_paused_until = w->now_ms + ACCEPT_PAUSE_MS;
}

static void accept_connections(struct worker *w, int tls)
{
    const int *listen_fd = tls ? &w->https_listen_fd : &w->listen_fd;
    for (int i = 0; i < ACCEPTS_PER_WAKE && *listen_fd >= 0 && !w->accept_paused_until; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int fd = accept4(*listen_fd, (struct sockaddr *)&peer, &peer_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The listener stays readable: pause it instead of spinning on the error. */
                log_warn("worker %d: accept: %s; pausing new connections for %d ms",
                         w->index, strerror(errno), ACCEPT_PAUSE_MS);
                pause_accepting(w);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_warn("worker %d: accept: %s", w->index, strerror(errno));
            }
            return;
        }
        session_open(w, fd, (struct sockaddr *)&peer, peer_len, tls);
    }
}

static void begin_drain(struct worker *w)
{
    uint64_t v;
    if (read(w->wakeup_fd, &v, sizeof v) < 0 && errno != EAGAIN)
        log_warn("worker %d: wakeup: %s", w->index, strerror(errno));
    if (w->draining)
        return;
    w->draining = 1;
    w->drain_deadline_ms = w->now_ms + options.drain_timeout_ms;
    if (w->listen_fd >= 0) {
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    if (w->https_listen_fd >= 0) {
        close(w->https_listen_fd);
        w->https_listen_fd = -1;
    }
    worker_drain_idle(w);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event events[EVENTS_PER_WAIT];
    for (;;) {
        int timeout = timer_wheel_sleep_ms(&w->wheel);
        if ((w->draining || w->accept_paused_until) && (timeout < 0 || timeout > 100))
            timeout = 100;
        int n = epoll_wait(w->epoll_fd, events, EVENTS_PER_WAIT, timeout);
        if (n < 0 && errno != EINTR) {
            log_error("worker %d: epoll_wait: %s", w->index, strerror(errno));
            break;
        }
        w->now_ms = clock_monotonic_ms();
        if (w->log)
            w->wall_ms = clock_wall_ms();
        for (int i = 0; i < n; i++) {
            enum watch_kind *kind = events[i].data.ptr;
            switch (*kind) {
            case WATCH_CLIENT:   session_event((struct session *)kind, events[i].events); break;
            case WATCH_UPSTREAM: upstream_conn_event((struct upstream_conn *)kind, events[i].events); break;
            case WATCH_LISTENER: accept_connections(w, kind == &w->https_listener_tag); break;
            case WATCH_WAKEUP:   begin_drain(w); break;
            default:             break;      /* closed earlier in this batch */
            }
        }
        timer_wheel_run(&w->wheel, w->now_ms);
        if (w->accept_paused_until && w->now_ms >= w->accept_paused_until)
            resume_accepting(w);
        if (w->log && w->log->len)
            access_log_flush(w->log);
        if (w->draining) {
            if (w->num_sessions == 0)
                break;
            if (w->now_ms >= w->drain_deadline_ms) {
                w->cut_off = worker_cut_off(w);
                break;
            }
        }
    }
    if (w->log && w->log->len)
        access_log_flush(w->log);
    return NULL;
}

/* ---------------------------------------------------------------- start / stop */

static int worker_init(struct worker *w, int index, char *err, size_t errlen)
{
    w->index = index;
    w->opt = &options;
    w->listen_fd = -1;
    w->https_listen_fd = -1;
    w->wakeup_fd = -1;
    w->listener_tag = WATCH_LISTENER;
    w->https_listener_tag = WATCH_LISTENER;
    w->wakeup_tag = WATCH_WAKEUP;
    w->in_cap = options.max_header_bytes + CONN_BODY_WINDOW;
    w->out_cap = options.max_header_bytes + BODY_SLACK + CONN_BODY_WINDOW;
    w->now_ms = clock_monotonic_ms();
    w->wall_ms = clock_wall_ms();
    timer_wheel_init(&w->wheel, w->now_ms);
    if (getrandom(w->rng, sizeof w->rng, 0) != sizeof w->rng) {
        w->rng[0] = (uint64_t)w->now_ms * 0x9e3779b97f4a7c15ull + (uint64_t)index;
        w->rng[1] = (uint64_t)getpid() << 32 | (uint64_t)index;
    }
    w->rng[1] |= 1;
    w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    w->wakeup_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epoll_fd < 0 || w->wakeup_fd < 0 ||
        upstream_pool_init(&w->pool, w->epoll_fd, &w->wheel) < 0) {
        snprintf(err, errlen, "worker %d: %s", index, strerror(errno));
        return -1;
    }
    if (options.access_log) {
        w->log = malloc(sizeof *w->log);
        if (!w->log) {
            snprintf(err, errlen, "worker %d: out of memory", index);
            return -1;
        }
        access_log_init(w->log);
    }
    w->listen_fd = open_listener(options.http_addr, err, errlen);
    if (w->listen_fd < 0)
        return -1;
    listener_port(w->listen_fd, w->port_text, sizeof w->port_text);
    if (options.https_addr && options.https_addr[0]) {
        w->https_listen_fd = open_listener(options.https_addr, err, errlen);
        if (w->https_listen_fd < 0)
            return -1;
        listener_port(w->https_listen_fd, w->https_port_text, sizeof w->https_port_text);
        if (options.hsts_seconds > 0)
            snprintf(w->hsts_line, sizeof w->hsts_line,
                     "Strict-Transport-Security: max-age=%d\r\n", options.hsts_seconds);
    }
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &w->listener_tag };
    struct epoll_event tev = { .events = EPOLLIN, .data.ptr = &w->https_listener_tag };
    struct epoll_event wev = { .events = EPOLLIN, .data.ptr = &w->wakeup_tag };
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &lev) < 0 ||
        (w->https_listen_fd >= 0 &&
         epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->https_listen_fd, &tev) < 0) ||
        epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->wakeup_fd, &wev) < 0) {
        snprintf(err, errlen, "worker %d: epoll_ctl: %s", index, strerror(errno));
        return -1;
    }
    return 0;
}

static void worker_release(struct worker *w)
{
    worker_cut_off(w);
    worker_free_sessions(w);
    if (w->pool.buckets)
        upstream_pool_destroy(&w->pool);
    if (w->table)
        route_table_unref(w->table);
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    if (w->https_listen_fd >= 0)
        close(w->https_listen_fd);
    if (w->wakeup_fd >= 0)
        close(w->wakeup_fd);
    if (w->epoll_fd >= 0)
        close(w->epoll_fd);
    free(w->log);
}

int server_start(const struct server_options *opt, char *err, size_t errlen)
{
    options = *opt;
    if (options.workers < 1)
        options.workers = 1;
    if (options.max_header_bytes < 1024)
        options.max_header_bytes = 1024;
    signal(SIGPIPE, SIG_IGN);      /* a client gone mid-write is an EPIPE, not a death */
    workers = calloc((size_t)options.workers, sizeof *workers);
    if (!workers) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < options.workers; i++) {
        workers[i].epoll_fd = -1;
        if (worker_init(&workers[i], i, err, errlen) < 0) {
            for (int j = 0; j <= i; j++)
                worker_release(&workers[j]);
            free(workers);
            workers = NULL;
            return -1;
        }
    }
    for (int i = 0; i < options.workers; i++) {
        int rc = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start worker %d: %s", i, strerror(rc));
            num_workers = i;
            server_stop();
            server_wait();
            return -1;
        }
    }
    num_workers = options.workers;
    return 0;
}

void server_stop(void)
{
    uint64_t one = 1;
    for (int i = 0; i < num_workers; i++)
        if (write(workers[i].wakeup_fd, &one, sizeof one) < 0)
            log_warn("worker %d: cannot wake: %s", i, strerror(errno));
}

int server_wait(void)
{
    int cut = 0;
    for (int i = 0; i < num_workers; i++) {
        pthread_join(workers[i].thread, NULL);
        cut += workers[i].cut_off;
    }
    for (int i = 0; i < num_workers; i++)
        worker_release(&workers[i]);
    free(workers);
    workers = NULL;
    num_workers = 0;
    return cut;
}

long server_active_connections(void)
{
    long n = 0;
    for (int i = 0; i < num_workers; i++)
        n += atomic_load_explicit(&workers[i].active, memory_order_relaxed);
    return n;
}
