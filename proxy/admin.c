/*
 * admin.c - the admin listener (see admin.h): /healthz, /readyz and /metrics.
 *
 * One thread and one poll(2) loop serve up to ADMIN_MAX_CLIENTS connections at once, so a
 * client that connects and says nothing cannot hold up the next health check (and when all
 * slots are taken, the longest-waiting reader is dropped to make room). Each connection
 * is a two-state machine: READING its request head (at most 8 KiB, within ADMIN_TIMEOUT_MS),
 * then WRITING one complete response, then closed. Only GET and HEAD are served, every
 * response says "Connection: close": probes and scrapers need nothing more, and the small
 * surface is easy to trust on a port that may be reachable from a management network.
 */
#include "admin.h"

#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_MAX_CLIENTS 32
#define ADMIN_HEAD_MAX 8192
#define ADMIN_TIMEOUT_MS 5000
#define ACCEPT_PAUSE_MS 100

enum client_state { CLIENT_FREE, CLIENT_READING, CLIENT_WRITING };

struct admin_client {
    enum client_state state;
    int fd;
    int64_t deadline_ms;
    size_t head_len;
    char head[ADMIN_HEAD_MAX];
    char *reply;                 /* malloc'd status line, headers and body */
    size_t reply_len, reply_sent;
};

static struct admin_client clients[ADMIN_MAX_CLIENTS];
static int listen_fd = -1;
static int wake_pipe[2] = { -1, -1 };
static pthread_t admin_thread;
static int admin_running;
static int64_t accept_paused_until_ms;
static atomic_int ready;      /* a routes file is loaded */
static atomic_int serving;    /* the data listeners accept and we are not draining */

void admin_set_serving(int is_serving)
{
    atomic_store(&serving, is_serving ? 1 : 0);
}

void admin_set_ready(int is_ready)
{
    atomic_store(&ready, is_ready ? 1 : 0);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- responses ---- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default:  return "Unknown";
    }
}

static void set_reply(struct admin_client *c, int status, const char *content_type,
                      const char *body, size_t body_len, int send_body)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     status, reason_phrase(status), content_type, body_len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    size_t total = (size_t)n + (send_body ? body_len : 0);
    c->reply = malloc(total);
    if (!c->reply) {
        c->reply_len = 0;           /* nothing to say: the connection just closes */
    } else {
        memcpy(c->reply, head, (size_t)n);
        if (send_body)
            memcpy(c->reply + n, body, body_len);
        c->reply_len = total;
    }
    c->reply_sent = 0;
    c->state = CLIENT_WRITING;
}

static void set_text_reply(struct admin_client *c, int status, const char *text, int send_body)
{
    set_reply(c, status, "text/plain; charset=utf-8", text, strlen(text), send_body);
}

/* Files beside the routes file that /metrics appends, each limited to its own metric names:
 * the agent's counters (STATE/metrics.prom) and the node's boot slot, written by
 * `gatehouse-agent boot-check` (STATE/boot.prom). */
static const struct { const char *name, *prefix; } state_metrics[] = {
    { "metrics.prom", "gatehouse_agent_" },
    { "boot.prom", "gatehouse_node_boot_" },
};
static char state_metrics_dir[4096];

void admin_set_state_metrics_dir(const char *dir)
{
    snprintf(state_metrics_dir, sizeof state_metrics_dir, "%s", dir);
}

/* Keeps only comment lines and samples whose names start with prefix. The files are ours, but
 * they are still read as data: anything else in them never reaches a scraper. */
static int is_allowed_metrics_line(const char *line, size_t len, const char *prefix)
{
    size_t plen = strlen(prefix);
    if (len > 0 && line[0] == '#')
        return 1;
    return len > plen && memcmp(line, prefix, plen) == 0;
}

/* Appends one metrics file (at most 64 KiB of it) to text; text is freed on failure. */
static char *append_metrics_file(char *text, size_t *len, const char *path, const char *prefix)
{
    if (!text)
        return text;
    FILE *f = fopen(path, "re");
    if (!f)
        return text;
    char *extra = malloc(65536);
    size_t got = extra ? fread(extra, 1, 65536, f) : 0;
    fclose(f);
    char *out = extra ? realloc(text, *len + got + 1) : NULL;
    if (!out) {
        free(extra);
        return text;
    }
    size_t at = *len;
    for (size_t i = 0; i < got;) {
        const char *nl = memchr(extra + i, '\n', got - i);
        size_t line_len = nl ? (size_t)(nl - (extra + i)) : got - i;
        if (nl && is_allowed_metrics_line(extra + i, line_len, prefix)) {   /* whole lines only */
            memcpy(out + at, extra + i, line_len + 1);
            at += line_len + 1;
        }
        i += line_len + 1;
    }
    out[at] = '\0';
    *len = at;
    free(extra);
    return out;
}

static char *append_state_metrics(char *text, size_t *len)
{
    if (!state_metrics_dir[0])
        return text;
    for (size_t i = 0; i < sizeof state_metrics / sizeof state_metrics[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", state_metrics_dir, state_metrics[i].name);
        text = append_metrics_file(text, len, path, state_metrics[i].prefix);
    }
    return text;
}

static void route_request(struct admin_client *c, const char *path, int send_body)
{
    if (strcmp(path, "/healthz") == 0) {
        set_text_reply(c, 200, "ok\n", send_body);
    } else if (strcmp(path, "/readyz") == 0) {
        if (atomic_load(&ready) && atomic_load(&serving))
            set_text_reply(c, 200, "ready\n", send_body);
        else
            set_text_reply(c, 503, "not ready\n", send_body);
    } else if (strcmp(path, "/metrics") == 0) {
        size_t len = 0;
        char *text = append_state_metrics(metrics_render(&len), &len);
        if (text)
            set_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, send_body);
        else
            set_text_reply(c, 500, "cannot render metrics: out of memory\n", send_body);
        free(text);
    } else {
        set_text_reply(c, 404, "not found\n", send_body);
    }
}

/* The request line is all that matters: "METHOD SP TARGET SP HTTP/1.x". Headers are ignored. */
static void handle_request(struct admin_client *c)
{
    char *line = c->head;
    line[strcspn(line, "\r\n")] = '\0';
    char *method = line, *target = strchr(line, ' ');
    char *version = target ? strchr(target + 1, ' ') : NULL;
    if (!target || !version || target[1] != '/' ||
        (strcmp(version + 1, "HTTP/1.1") != 0 && strcmp(version + 1, "HTTP/1.0") != 0)) {
        set_text_reply(c, 400, "bad request line\n", 1);
        return;
    }
    *target++ = '\0';
    *version = '\0';
    target[strcspn(target, "?")] = '\0';
    int is_head = strcmp(method, "HEAD") == 0;
    if (!is_head && strcmp(method, "GET") != 0) {
        set_text_reply(c, 405, "only GET and HEAD are served here\n", 1);
        return;
    }
    route_request(c, target, !is_head);
}

/* ---- connections ---- */

static void client_close(struct admin_client *c)
{
    close(c->fd);
    free(c->reply);
    c->reply = NULL;
    c->fd = -1;
    c->state = CLIENT_FREE;
}

static int head_complete(const struct admin_client *c)
{
    return memmem(c->head, c->head_len, "\r\n\r\n", 4) || memmem(c->head, c->head_len, "\n\n", 2);
}

static void client_read(struct admin_client *c)
{
    ssize_t n = recv(c->fd, c->head + c->head_len, sizeof c->head - 1 - c->head_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        client_close(c);
        return;
    }
    c->head_len += (size_t)n;
    c->head[c->head_len] = '\0';
    if (head_complete(c))
        handle_request(c);
    else if (c->head_len == sizeof c->head - 1)
        set_text_reply(c, 431, "request head larger than 8 KiB\n", 1);
}

static void client_write(struct admin_client *c)
{
    while (c->reply_sent < c->reply_len) {
        ssize_t n = send(c->fd, c->reply + c->reply_sent, c->reply_len - c->reply_sent,
                         MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0)
            break;
        c->reply_sent += (size_t)n;
    }
    client_close(c);
}

/* With every slot busy, the client that has been reading longest makes room: an idle
 * connection must not keep a health check waiting for its timeout. */
static struct admin_client *free_slot(void)
{
    struct admin_client *oldest = NULL;
    for (int i = 0; i < ADMIN_MAX_CLIENTS; i++) {
        struct admin_client *c = &clients[i];
        if (c->state == CLIENT_FREE)
            return c;
        if (c->state == CLIENT_READING && (!oldest || c->deadline_ms < oldest->deadline_ms))
            oldest = c;
    }
    if (oldest)
        client_close(oldest);
    return oldest;
}

static void accept_clients(void)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                /* out of descriptors or memory: poll would report the listener at once again */
                log_warn("admin: accept: %s (pausing 100 ms)", strerror(errno));
                accept_paused_until_ms = now_ms() + ACCEPT_PAUSE_MS;
            }
            return;
        }
        struct admin_client *c = free_slot();
        if (!c) {                   /* every slot is mid-reply: those finish quickly */
            close(fd);
            continue;
        }
        *c = (struct admin_client){ .state = CLIENT_READING, .fd = fd,
                                    .deadline_ms = now_ms() + ADMIN_TIMEOUT_MS };
    }
}

/* Fills pollfds: [0] the wake pipe, [1] the listener, then the busy clients (index in owner). */
static nfds_t build_pollset(struct pollfd *fds, int *owner, int *timeout_ms)
{
    int64_t now = now_ms(), soonest = -1;
    nfds_t n = 0;
    fds[n++] = (struct pollfd){ .fd = wake_pipe[0], .events = POLLIN };
    fds[n++] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
    for (int i = 0; i < ADMIN_MAX_CLIENTS; i++) {
        struct admin_client *c = &clients[i];
        if (c->state == CLIENT_FREE)
            continue;
        owner[n] = i;
        fds[n++] = (struct pollfd){ .fd = c->fd,
                                    .events = c->state == CLIENT_READING ? POLLIN : POLLOUT };
        if (soonest < 0 || c->deadline_ms < soonest)
            soonest = c->deadline_ms;
    }
    if (now < accept_paused_until_ms) {
        fds[1].fd = -1;
        if (soonest < 0 || accept_paused_until_ms < soonest)
            soonest = accept_paused_until_ms;
    }
    *timeout_ms = soonest < 0 ? -1 : soonest <= now ? 0 : (int)(soonest - now);
    return n;
}

static void expire_clients(void)
{
    int64_t now = now_ms();
    for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
        if (clients[i].state != CLIENT_FREE && clients[i].deadline_ms <= now)
            client_close(&clients[i]);
}

static void *admin_loop(void *unused)
{
    struct pollfd fds[ADMIN_MAX_CLIENTS + 2];
    int owner[ADMIN_MAX_CLIENTS + 2];
    for (;;) {
        int timeout_ms;
        nfds_t n = build_pollset(fds, owner, &timeout_ms);
        if (poll(fds, n, timeout_ms) < 0 && errno != EINTR) {
            log_error("admin: poll: %s", strerror(errno));
            break;
        }
        if (fds[0].revents)
            break;
        for (nfds_t i = 2; i < n; i++) {
            struct admin_client *c = &clients[owner[i]];
            if (!fds[i].revents)
                continue;
            if (c->state == CLIENT_READING)
                client_read(c);
            if (c->state == CLIENT_WRITING)
                client_write(c);
        }
        if (fds[1].revents)
            accept_clients();
        expire_clients();
    }
    return NULL;
}

/* ---- setup ---- */

/* "ADDR:PORT", "[IPv6]:PORT" or ":PORT" (any address). */
static int open_listener(const char *addr, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr + strlen(addr) - 1 || (size_t)(colon - addr) >= sizeof host) {
        snprintf(err, errlen, "admin address \"%s\" is not ADDR:PORT", addr);
        return -1;
    }
    const char *port = colon + 1;
    if (strspn(port, "0123456789") != strlen(port) || atoi(port) < 1 || atoi(port) > 65535) {
        snprintf(err, errlen, "admin address \"%s\": port must be 1..65535", addr);
        return -1;
    }
    size_t host_len = (size_t)(colon - addr);
    memcpy(host, addr, host_len);
    host[host_len] = '\0';
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        memmove(host, host + 1, host_len - 2);
        host[host_len - 2] = '\0';
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "admin address \"%s\": %s", addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "cannot listen on %s (admin): %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int admin_start(const char *addr, char *err, size_t errlen)
{
    listen_fd = open_listener(addr, err, errlen);
    if (listen_fd < 0)
        return -1;
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        snprintf(err, errlen, "admin: pipe: %s", strerror(errno));
        close(listen_fd);
        return -1;
    }
    for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
        clients[i] = (struct admin_client){ .state = CLIENT_FREE, .fd = -1 };
    int rc = pthread_create(&admin_thread, NULL, admin_loop, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "admin: cannot start thread: %s", strerror(rc));
        close(listen_fd);
        close(wake_pipe[0]);
        close(wake_pipe[1]);
        return -1;
    }
    admin_running = 1;
    log_info("admin listening on %s", addr);
    return 0;
}

void admin_stop(void)
{
    if (!admin_running)
        return;
    ssize_t w = write(wake_pipe[1], "x", 1);
    (void)w;
    pthread_join(admin_thread, NULL);
    for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
        if (clients[i].state != CLIENT_FREE)
            client_close(&clients[i]);
    close(listen_fd);
    close(wake_pipe[0]);
    close(wake_pipe[1]);
    listen_fd = wake_pipe[0] = wake_pipe[1] = -1;
    admin_running = 0;
}
