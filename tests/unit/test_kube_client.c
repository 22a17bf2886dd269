/*
 * test_kube_client.c - kube_client against a small HTTP/1.1 server running in a thread of the
 * test: buffered bodies, streams delivered piece by piece, Retry-After, connection errors, the
 * bearer token (and its re-read after a 401), and callbacks that start and cancel requests -
 * their own included - while the client walks its requests.
 */
#include "check.h"
#include "loopback_server.h"
#include "kube_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the server ---- */

struct seen {                       /* what the last request brought, for checks */
    char auth[256], method[16], body[256], user_agent[128], accept[64];
};

static pthread_mutex_t server_lock = PTHREAD_MUTEX_INITIALIZER;
static struct seen last;
static char expected_token[64] = "tok-1";

static int send_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_str(int fd, const char *s)
{
    return send_all(fd, s, strlen(s));
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int send_chunk(int fd, const char *data)
{
    char head[32];
    snprintf(head, sizeof head, "%zx\r\n", strlen(data));
    return send_str(fd, head) || send_str(fd, data) || send_str(fd, "\r\n") ? -1 : 0;
}

static int reply(int fd, const char *status, const char *extra_headers, const char *body)
{
    char head[512];
    snprintf(head, sizeof head, "HTTP/1.1 %s\r\nContent-Type: application/json\r\n%s"
             "Content-Length: %zu\r\n\r\n", status, extra_headers, strlen(body));
    return send_str(fd, head) || send_str(fd, body) ? -1 : 0;
}

/* Answers one request by its path; returns 0 to keep the connection, -1 to close it. */
static int answer(int fd, const char *path, const struct seen *s)
{
    if (strcmp(path, "/ok") == 0)
        return reply(fd, "200 OK", "", "hello world");
    if (strcmp(path, "/echo") == 0) {
        char body[512];
        snprintf(body, sizeof body, "%s %s", s->method, s->body);
        return reply(fd, "200 OK", "", body);
    }
    if (strcmp(path, "/auth") == 0) {
        char want[128];
        pthread_mutex_lock(&server_lock);
        snprintf(want, sizeof want, "Bearer %s", expected_token);
        pthread_mutex_unlock(&server_lock);
        if (strcmp(s->auth, want) == 0)
            return reply(fd, "200 OK", "", "authorized");
        return reply(fd, "401 Unauthorized", "",
                     "{\"kind\":\"Status\",\"message\":\"Unauthorized\",\"code\":401}");
    }
    if (strcmp(path, "/busy") == 0)
        return reply(fd, "429 Too Many Requests", "Retry-After: 3\r\n",
                     "{\"kind\":\"Status\",\"message\":\"slow down\",\"code\":429}");
    if (strcmp(path, "/busy-date") == 0) {
        char h[128];
        time_t when = time(NULL) + 100;
        struct tm tm;
        gmtime_r(&when, &tm);
        strftime(h, sizeof h, "Retry-After: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        return reply(fd, "503 Service Unavailable", h, "{}");
    }
    if (strcmp(path, "/gone") == 0)
        return reply(fd, "410 Gone", "",
                     "{\"kind\":\"Status\",\"message\":\"too old resource version\",\"code\":410}");
    if (strcmp(path, "/cut") == 0) {
        send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..");
        return -1;
    }
    if (strcmp(path, "/stream") == 0 || strcmp(path, "/endless") == 0 ||
        strcmp(path, "/silent") == 0) {
        if (send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
            return -1;
        if (strcmp(path, "/silent") == 0) {
            char b;
            while (recv(fd, &b, 1, 0) > 0)
                ;   /* until the client gives up */
            return -1;
        }
        int pieces = strcmp(path, "/stream") == 0 ? 3 : 500;
        for (int i = 1; i <= pieces; i++) {
            char piece[32];
            snprintf(piece, sizeof piece, "piece%d\n", i);
            if (send_chunk(fd, piece))
                return -1;
            sleep_ms(30);
        }
        return send_str(fd, "0\r\n\r\n");
    }
    return reply(fd, "404 Not Found", "", "{\"kind\":\"Status\",\"message\":\"no such path\"}");
}

/* One request from the connection (headers, then a Content-Length body); -1 at its end. */
static int read_request(int fd, char *path, size_t pathlen, struct seen *s)
{
    char buf[8192];
    size_t len = 0;
    char *end;
    buf[0] = '\0';
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        if (len + 1 >= sizeof buf)
            return -1;
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
    }
    *end = '\0';
    memset(s, 0, sizeof *s);
    char target[512];
    if (sscanf(buf, "%15s %511s", s->method, target) != 2)
        return -1;
    snprintf(path, pathlen, "%s", target);
    char cl[32];
    loopback_header_value(buf, "Authorization", s->auth, sizeof s->auth);
    loopback_header_value(buf, "User-Agent", s->user_agent, sizeof s->user_agent);
    loopback_header_value(buf, "Accept", s->accept, sizeof s->accept);
    loopback_header_value(buf, "Content-Length", cl, sizeof cl);
    size_t want = (size_t)atol(cl), have = len - (size_t)(end + 4 - buf);
    if (want >= sizeof s->body)
        return -1;
    memcpy(s->body, end + 4, have < want ? have : want);
    while (have < want) {
        ssize_t n = recv(fd, s->body + have, want - have, 0);
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    return 0;
}

static void *serve_connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char path[512];
    struct seen s;
    while (read_request(fd, path, sizeof path, &s) == 0) {
        pthread_mutex_lock(&server_lock);
        last = s;
        pthread_mutex_unlock(&server_lock);
        if (answer(fd, path, &s) < 0)
            break;
    }
    close(fd);
    return NULL;
}

static int start_server(void)
{
    return loopback_server_start(serve_connection);
}

/* ---- client side helpers ---- */

struct result {
    int done;
    long status;
    char error[256];
    char body[512];
    size_t body_len;
    int retry_after_s;
    char streamed[8192];
    size_t streamed_len;
    int pieces;
};

static void on_done(void *ctx, const struct kube_response *r)
{
    struct result *res = ctx;
    res->done++;
    res->status = r->status;
    snprintf(res->error, sizeof res->error, "%s", r->error ? r->error : "");
    snprintf(res->body, sizeof res->body, "%s", r->body);
    res->body_len = r->body_len;
    res->retry_after_s = r->retry_after_s;
}

static int on_data(void *ctx, const char *data, size_t len)
{
    struct result *res = ctx;
    if (res->streamed_len + len < sizeof res->streamed) {
        memcpy(res->streamed + res->streamed_len, data, len);
        res->streamed_len += len;
    }
    res->pieces++;
    return 0;
}

static struct kube_request *get(struct kube_client *c, const char *path, struct result *res,
                                kube_data_fn *data_fn)
{
    memset(res, 0, sizeof *res);
    struct kube_request_spec spec = { .method = "GET", .path = path, .timeout_ms = 20000,
                                      .on_data = data_fn, .on_done = on_done, .ctx = res };
    return kube_client_start(c, &spec);
}

/* Polls until *flag is set or nothing is running; gives up after about 20 s (a broken client
 * must fail the test, not hang it). */
static void run_until(struct kube_client *c, const int *flag)
{
    char err[256];
    for (int i = 0; i < 200 && !*flag && kube_client_running(c) > 0; i++)
        if (kube_client_poll(c, NULL, 0, 100, err, sizeof err) < 0) {
            fprintf(stderr, "kube_client_poll: %s\n", err);
            break;
        }
}

static struct seen last_seen(void)
{
    pthread_mutex_lock(&server_lock);
    struct seen s = last;
    pthread_mutex_unlock(&server_lock);
    return s;
}

static void test_basic(const char *base)
{
    struct kube_config cfg = { .url = (char *)base, .token = "static-token", .origin = "test" };
    char err[256];
    struct kube_client *c = kube_client_new(&cfg, err, sizeof err);
    CHECK(c != NULL);
    struct result res;

    CHECK(get(c, "/ok", &res, NULL) != NULL);
    CHECK_INT(kube_client_running(c), 1);
    run_until(c, &res.done);
    CHECK_INT(res.done, 1);
    CHECK_INT(res.status, 200);
    CHECK_STR(res.body, "hello world");
    CHECK_INT(res.body_len, 11);
    CHECK_INT(res.retry_after_s, -1);
    CHECK_STR(res.error, "");
    CHECK_INT(kube_client_running(c), 0);
    struct seen s = last_seen();
    CHECK_STR(s.auth, "Bearer static-token");
    CHECK_STR(s.accept, "application/json");
    CHECK(strncmp(s.user_agent, "gatehouse-agent/", 16) == 0);

    struct kube_request_spec post = { .method = "PATCH", .path = "/echo",
                                      .content_type = "application/merge-patch+json",
                                      .body = "{\"a\":1}", .body_len = 7, .timeout_ms = 5000,
                                      .on_done = on_done, .ctx = &res };
    memset(&res, 0, sizeof res);
    CHECK(kube_client_start(c, &post) != NULL);
    run_until(c, &res.done);
    CHECK_STR(res.body, "PATCH {\"a\":1}");

    get(c, "/busy", &res, NULL);
    run_until(c, &res.done);
    CHECK_INT(res.status, 429);
    CHECK_INT(res.retry_after_s, 3);
    char msg[128];
    kube_client_status_message(res.body, res.body_len, msg, sizeof msg);
    CHECK_STR(msg, "slow down");

    get(c, "/busy-date", &res, NULL);
    run_until(c, &res.done);
    CHECK_INT(res.status, 503);
    CHECK(res.retry_after_s > 50 && res.retry_after_s <= 101);

    get(c, "/cut", &res, NULL);
    run_until(c, &res.done);
    CHECK_INT(res.done, 1);
    CHECK_INT(res.status, 0);
    CHECK(res.error[0] != '\0');

    kube_client_free(c);

    /* An IP server is reached under a certificate name through CURLOPT_RESOLVE. */
    char url[64], resolve[80];
    const char *port = strrchr(base, ':') + 1;
    snprintf(url, sizeof url, "http://kubernetes.default.svc:%s", port);
    snprintf(resolve, sizeof resolve, "kubernetes.default.svc:%s:127.0.0.1", port);
    struct kube_config named = { .url = url, .resolve = resolve, .origin = "test" };
    c = kube_client_new(&named, err, sizeof err);
    get(c, "/ok", &res, NULL);
    run_until(c, &res.done);
    CHECK_INT(res.status, 200);
    kube_client_free(c);
}

static void test_stream(const char *base)
{
    struct kube_config cfg = { .url = (char *)base, .origin = "test" };
    char err[256];
    struct kube_client *c = kube_client_new(&cfg, err, sizeof err);
    struct result res;

    get(c, "/stream", &res, on_data);
    run_until(c, &res.done);
    CHECK_INT(res.status, 200);
    CHECK_INT(res.streamed_len, 21);
    CHECK(memcmp(res.streamed, "piece1\npiece2\npiece3\n", 21) == 0);
    CHECK(res.pieces >= 2);                /* delivered as they came, not at the end */
    CHECK_STR(res.body, "");
    CHECK_STR(last_seen().auth, "");       /* no credential, no header */

    /* An error answer to a streamed request is a Status for on_done, not stream data. */
    get(c, "/gone", &res, on_data);
    run_until(c, &res.done);
    CHECK_INT(res.status, 410);
    CHECK_INT(res.streamed_len, 0);
    char msg[128];
    kube_client_status_message(res.body, res.body_len, msg, sizeof msg);
    CHECK_STR(msg, "too old resource version");

    /* A stream that goes quiet ends on the idle timeout. */
    memset(&res, 0, sizeof res);
    struct kube_request_spec idle = { .method = "GET", .path = "/silent", .idle_timeout_s = 1,
                                      .on_data = on_data, .on_done = on_done, .ctx = &res };
    kube_client_start(c, &idle);
    run_until(c, &res.done);
    CHECK_INT(res.done, 1);
    CHECK_INT(res.status, 0);
    CHECK(res.error[0] != '\0');
    kube_client_free(c);
}

/* ---- callbacks that start and cancel requests ---- */

struct juggler {
    struct kube_client *c;
    struct kube_request *self, *other;
    struct result followup;
    int data_calls, done_calls;
    int mode;                  /* 0: cancel self from on_data; 1: abort with -1 */
};

static int juggle_data(void *ctx, const char *data, size_t len)
{
    struct juggler *j = ctx;
    j->data_calls++;
    if (j->mode == 1)
        return -1;
    kube_client_cancel(j->c, j->self);
    kube_client_cancel(j->c, j->self);   /* twice: still harmless */
    get(j->c, "/ok", &j->followup, NULL);
    return 0;
}

static void juggle_done(void *ctx, const struct kube_response *r)
{
    struct juggler *j = ctx;
    j->done_calls++;
    snprintf(j->followup.error, sizeof j->followup.error, "%s", r->error ? r->error : "");
    j->followup.status = r->status;
}

/* on_done of the first request cancels a running stream and itself. */
static struct kube_request *victim, *canceller;
static int victim_done;
static struct kube_client *victim_client;

static void cancel_others_done(void *ctx, const struct kube_response *r)
{
    struct result *res = ctx;
    res->done++;
    kube_client_cancel(victim_client, victim);
    kube_client_cancel(victim_client, canceller);   /* itself, finishing: a no-op */
}

static void victim_on_done(void *ctx, const struct kube_response *r)
{
    victim_done++;
}

static void test_callbacks(const char *base)
{
    struct kube_config cfg = { .url = (char *)base, .origin = "test" };
    char err[256];
    struct kube_client *c = kube_client_new(&cfg, err, sizeof err);

    struct juggler j = { .c = c };
    struct kube_request_spec spec = { .method = "GET", .path = "/endless", .on_data = juggle_data,
                                      .on_done = juggle_done, .ctx = &j };
    j.self = kube_client_start(c, &spec);
    run_until(c, &j.followup.done);
    CHECK_INT(j.data_calls, 1);
    CHECK_INT(j.done_calls, 0);            /* cancelled: no on_done */
    CHECK_INT(j.followup.status, 200);
    CHECK_STR(j.followup.body, "hello world");
    CHECK_INT(kube_client_running(c), 0);

    struct juggler k = { .c = c, .mode = 1 };
    spec.ctx = &k;
    k.self = kube_client_start(c, &spec);
    run_until(c, &k.done_calls);
    CHECK_INT(k.data_calls, 1);
    CHECK_INT(k.done_calls, 1);
    CHECK_INT(k.followup.status, 0);
    CHECK_STR(k.followup.error, "aborted");

    /* A request's on_done cancels another, still streaming. */
    struct result first, stream;
    victim_client = c;
    memset(&stream, 0, sizeof stream);
    struct kube_request_spec vs = { .method = "GET", .path = "/endless", .on_data = on_data,
                                    .on_done = victim_on_done, .ctx = &stream };
    victim = kube_client_start(c, &vs);
    struct kube_request_spec fs = { .method = "GET", .path = "/ok", .on_done = cancel_others_done,
                                    .ctx = &first };
    memset(&first, 0, sizeof first);
    canceller = kube_client_start(c, &fs);
    run_until(c, &first.done);
    CHECK_INT(first.done, 1);
    run_until(c, &victim_done);            /* returns at once: nothing else runs */
    CHECK_INT(victim_done, 0);
    CHECK_INT(kube_client_running(c), 0);

    /* Free with requests still running: no callbacks, no leaks. */
    struct result left;
    get(c, "/endless", &left, on_data);
    get(c, "/ok", &left, NULL);
    kube_client_free(c);
}

static void test_errors_and_fds(const char *base)
{
    int fd, port = loopback_listen(&fd);
    close(fd);                             /* nothing listens there now: connection refused */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    struct kube_config cfg = { .url = url, .origin = "test" };
    char err[256];
    struct kube_client *c = kube_client_new(&cfg, err, sizeof err);
    struct result res;
    get(c, "/ok", &res, NULL);
    run_until(c, &res.done);
    CHECK_INT(res.done, 1);
    CHECK_INT(res.status, 0);
    CHECK(res.error[0] != '\0');
    CHECK_STR(res.body, "");

    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "x", 1) == 1);
    struct kube_waitfd w[2] = { { .fd = p[0], .events = POLLIN }, { .fd = p[1], .events = 0 } };
    CHECK_INT(kube_client_poll(c, w, 2, 1000, err, sizeof err), 1);
    CHECK(w[0].revents & POLLIN);
    CHECK_INT(w[1].revents, 0);
    close(p[0]);
    close(p[1]);
    kube_client_free(c);
}

/* The token file is re-read at once after a 401, so the next request carries the new token. */
static void test_token_rotation(const char *base)
{
    char dir[] = "/tmp/test_kube_client.XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/token", dir);
    FILE *f = fopen(path, "w");
    fputs("tok-1\n", f);
    fclose(f);
    struct kube_config cfg = { .url = (char *)base, .token_file = path, .origin = "test" };
    char err[256];
    struct kube_client *c = kube_client_new(&cfg, err, sizeof err);
    struct result res;
    get(c, "/auth", &res, NULL);
    run_until(c, &res.done);
    CHECK_INT(res.status, 200);
    CHECK_STR(last_seen().auth, "Bearer tok-1");

    f = fopen(path, "w");
    fputs("tok-2\n", f);
    fclose(f);
    pthread_mutex_lock(&server_lock);
    snprintf(expected_token, sizeof expected_token, "tok-2");
    pthread_mutex_unlock(&server_lock);
    get(c, "/auth", &res, NULL);
    run_until(c, &res.done);
    CHECK_INT(res.status, 401);            /* the file is younger than a minute: not re-read */
    get(c, "/auth", &res, NULL);
    run_until(c, &res.done);
    CHECK_INT(res.status, 200);
    CHECK_STR(last_seen().auth, "Bearer tok-2");
    kube_client_free(c);
    unlink(path);
    rmdir(dir);
}

static void test_text(void)
{
    char out[64];
    CHECK_STR(kube_client_escape("a b/c?d=e&f~g.h-i_j", out, sizeof out),
              "a%20b%2Fc%3Fd%3De%26f~g.h-i_j");
    CHECK_STR(kube_client_escape("type=kubernetes.io/tls", out, sizeof out),
              "type%3Dkubernetes.io%2Ftls");
    CHECK_STR(kube_client_escape("", out, sizeof out), "");
    CHECK(kube_client_escape("abcd", out, 4) == NULL);
    CHECK_STR(kube_client_escape("abc", out, 4), "abc");
    CHECK(kube_client_escape("a/", out, 4) == NULL);
    CHECK_STR(kube_client_escape("\xc3\xa9", out, sizeof out), "%C3%A9");

    char msg[64];
    const char *st = "{\"kind\":\"Status\",\"message\":\"ingresses is forbidden\\nline\"}";
    kube_client_status_message(st, strlen(st), msg, sizeof msg);
    CHECK_STR(msg, "ingresses is forbidden line");
    kube_client_status_message("<html>\r\nBad Gateway", 19, msg, sizeof msg);
    CHECK_STR(msg, "<html>  Bad Gateway");
    kube_client_status_message("", 0, msg, sizeof msg);
    CHECK_STR(msg, "(empty body)");
    char big[400];
    memset(big, 'x', sizeof big);
    char wide[512];
    kube_client_status_message(big, sizeof big, wide, sizeof wide);
    CHECK_INT(strlen(wide), 200);
    kube_client_status_message(big, sizeof big, msg, sizeof msg);
    CHECK_INT(strlen(msg), 63);
}

int main(void)
{
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", start_server());
    test_text();
    test_basic(base);
    test_stream(base);
    test_callbacks(base);
    test_errors_and_fds(base);
    test_token_rotation(base);
    return check_summary("test_kube_client");
}
