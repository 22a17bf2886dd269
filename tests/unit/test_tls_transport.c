/*
 * test_tls_transport.c - the proxy's TLS transport against a BearSSL client over a socketpair.
 *
 * The client runs in a thread with blocking br_sslio calls; the server side is driven here the
 * way conn.c drives it: a non-blocking socket, poll() for readiness, tls_transport_read/writev
 * until EAGAIN. The client trusts whatever key the server shows (the certificate is the
 * self-signed default one made at start): what is tested is the record I/O and the policy
 * (suite choice, refusals), not X.509 validation.
 */
#include "check.h"
#include "tls_session_cache.h"
#include "tls_store.h"
#include "tls_transport.h"

#include <bearssl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BIG_RESPONSE (200 * 1000)

/* ---------------------------------------------------------------- a trust-anything X.509 engine */

struct any_x509 {
    const br_x509_class *vtable;
    br_x509_decoder_context leaf;
    int depth;
};

static void ax_start_chain(const br_x509_class **ctx, const char *server_name)
{
    struct any_x509 *x = (struct any_x509 *)ctx;
    br_x509_decoder_init(&x->leaf, NULL, NULL);
    x->depth = 0;
}

static void ax_start_cert(const br_x509_class **ctx, uint32_t length) { }

static void ax_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
    struct any_x509 *x = (struct any_x509 *)ctx;
    if (x->depth == 0)
        br_x509_decoder_push(&x->leaf, buf, len);
}

static void ax_end_cert(const br_x509_class **ctx)
{
    ((struct any_x509 *)ctx)->depth++;
}

static unsigned ax_end_chain(const br_x509_class **ctx)
{
    return 0;
}

static const br_x509_pkey *ax_get_pkey(const br_x509_class *const *ctx, unsigned *usages)
{
    struct any_x509 *x = (struct any_x509 *)ctx;
    if (usages)
        *usages = BR_KEYTYPE_KEYX | BR_KEYTYPE_SIGN;
    return br_x509_decoder_get_pkey(&x->leaf);
}

static const br_x509_class any_x509_class = {
    sizeof(struct any_x509), ax_start_chain, ax_start_cert, ax_append, ax_end_cert,
    ax_end_chain, ax_get_pkey,
};

/* ---------------------------------------------------------------- the client thread */

struct client {
    int fd;
    int trickle;                           /* write 1 byte, read at most 7 bytes per call */
    const uint16_t *suites;                /* NULL: BearSSL's full list */
    size_t num_suites;
    int handshake_ok;
    uint16_t suite;
    size_t received;
    int saw_request_echo;
    int server_closed_cleanly;
};

static int sock_read(void *ctx, unsigned char *buf, size_t len)
{
    struct client *c = ctx;
    ssize_t n = read(c->fd, buf, c->trickle && len > 7 ? 7 : len);
    return n > 0 ? (int)n : -1;
}

static int sock_write(void *ctx, const unsigned char *buf, size_t len)
{
    struct client *c = ctx;
    if (c->trickle)
        usleep(100);                       /* the server sees partial records, one byte each */
    ssize_t n = write(c->fd, buf, c->trickle ? 1 : len);
    return n > 0 ? (int)n : -1;
}

struct client_state {
    br_ssl_client_context cc;
    br_x509_minimal_context xc;
    struct any_x509 ax;
    unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
    br_sslio_context io;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    struct client_state *st = calloc(1, sizeof *st);
    if (!st)
        goto out;
    br_ssl_client_context *cc = &st->cc;
    br_sslio_context *io = &st->io;
    br_ssl_client_init_full(cc, &st->xc, NULL, 0);
    if (c->suites)
        br_ssl_engine_set_suites(&cc->eng, c->suites, c->num_suites);
    st->ax.vtable = &any_x509_class;
    br_ssl_engine_set_x509(&cc->eng, &st->ax.vtable);
    br_ssl_engine_set_buffer(&cc->eng, st->iobuf, sizeof st->iobuf, 1);
    br_ssl_client_reset(cc, "gatehouse.test", 0);
    br_sslio_init(io, &cc->eng, sock_read, c, sock_write, c);

    static const char request[] = "GET / HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n";
    if (br_sslio_write_all(io, request, sizeof request - 1) < 0 || br_sslio_flush(io) < 0)
        goto out;
    c->handshake_ok = 1;
    br_ssl_session_parameters params;
    br_ssl_engine_get_session_parameters(&cc->eng, &params);
    c->suite = params.cipher_suite;
    unsigned char buf[4096];
    for (;;) {
        int n = br_sslio_read(io, buf, sizeof buf);
        if (n < 0)
            break;
        if (c->received == 0 && n >= 4 && memcmp(buf, "GET ", 4) == 0)
            c->saw_request_echo = 1;
        c->received += (size_t)n;
    }
    c->server_closed_cleanly = br_ssl_engine_last_error(&cc->eng) == BR_ERR_OK;
out:
    free(st);
    close(c->fd);
    return NULL;
}

/* ---------------------------------------------------------------- the server side */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wait_ready(struct tls_transport *t, int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };
    if (poll(&p, 1, 20) > 0)
        tls_transport_socket_ready(t, (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0,
                                   (p.revents & (POLLOUT | POLLHUP | POLLERR)) != 0);
}

/* Reads the request head, echoes it, then sends a large body in iovec pieces and closes.
 * Returns the plaintext bytes written, or -1 when the server side saw the connection fail. */
static long serve_one(struct tls_transport **free_list, int fd, char *head, size_t head_cap)
{
    struct tls_transport *t = tls_transport_open(free_list, fd, NULL);
    long long deadline = now_ms() + 10000;
    size_t got = 0;
    long result = -1;
    if (!t)
        return -1;
    while (now_ms() < deadline && !(got >= 4 && memmem(head, got, "\r\n\r\n", 4))) {
        ssize_t n = tls_transport_read(t, head + got, head_cap - got);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno == EAGAIN)
            wait_ready(t, fd);
        else
            goto done;
    }
    static char body[BIG_RESPONSE];
    memset(body, 'x', sizeof body);
    size_t sent = 0, total = got + sizeof body;
    while (now_ms() < deadline && sent < total) {
        struct iovec iov[2];
        int cnt = 0;
        if (sent < got)
            iov[cnt++] = (struct iovec){ head + sent, got - sent };
        size_t body_off = sent < got ? 0 : sent - got;
        iov[cnt++] = (struct iovec){ body + body_off, sizeof body - body_off };
        ssize_t n = tls_transport_writev(t, iov, cnt);
        if (n > 0)
            sent += (size_t)n;
        else if (n < 0 && errno == EAGAIN)
            wait_ready(t, fd);
        else
            goto done;
    }
    while (now_ms() < deadline && tls_transport_flush(t) == 0)
        wait_ready(t, fd);
    tls_transport_shutdown(t);
    while (now_ms() < deadline && tls_transport_flush(t) == 0)
        wait_ready(t, fd);
    result = (long)sent;
done:
    tls_transport_close(free_list, t);
    return result;
}

static int run(struct tls_transport **free_list, struct client *c, long *server_sent)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return -1;
    if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0)
        return -1;
    c->fd = sv[1];
    pthread_t th;
    pthread_create(&th, NULL, client_main, c);
    char head[1024];
    *server_sent = serve_one(free_list, sv[0], head, sizeof head);
    close(sv[0]);
    pthread_join(th, NULL);
    return 0;
}

int main(void)
{
    char err[256];
    signal(SIGPIPE, SIG_IGN);              /* as the proxy does: a peer gone is an EPIPE */
    CHECK_INT(tls_session_cache_init(16), 0);
    CHECK_INT(tls_default_cert_generate(err, sizeof err), 0);
    struct tls_transport *free_list = NULL;
    long sent;

    /* Memory: one record in, a smaller record out, the engine, little else. */
    CHECK(tls_transport_size() > BR_SSL_BUFSIZE_INPUT + TLS_TRANSPORT_OUT_PLAINTEXT);
    CHECK(tls_transport_size() < 36 * 1024);

    /* BearSSL's client lists ChaCha20 first; the server's order (AES-GCM) wins. Request in,
     * echo + 200 kB out through a socket that fills up, then a clean close_notify. */
    struct client c1 = { 0 };
    CHECK_INT(run(&free_list, &c1, &sent), 0);
    CHECK(c1.handshake_ok);
    CHECK_INT(c1.suite, BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    CHECK(c1.saw_request_echo);
    CHECK(sent > BIG_RESPONSE);
    CHECK_INT(c1.received, sent);
    CHECK(c1.server_closed_cleanly);
    CHECK(free_list != NULL);                      /* recycled for the next connection */

    /* A client with ChaCha20 only gets it, on the recycled engine. */
    static const uint16_t chacha_only[] = { BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 };
    struct client c2 = { .suites = chacha_only, .num_suites = 1 };
    CHECK_INT(run(&free_list, &c2, &sent), 0);
    CHECK(c2.handshake_ok);
    CHECK_INT(c2.suite, BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256);
    CHECK_INT(c2.received, sent);

    /* CBC and RSA key exchange are refused: no handshake, the server read fails. */
    static const uint16_t weak[] = { BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
                                     BR_TLS_RSA_WITH_AES_128_GCM_SHA256 };
    struct client c3 = { .suites = weak, .num_suites = 2 };
    CHECK_INT(run(&free_list, &c3, &sent), 0);
    CHECK(!c3.handshake_ok);
    CHECK_INT(sent, -1);

    /* An ECDSA certificate cannot serve ECDHE_RSA suites. */
    static const uint16_t rsa_only[] = { BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 };
    struct client c4 = { .suites = rsa_only, .num_suites = 1 };
    CHECK_INT(run(&free_list, &c4, &sent), 0);
    CHECK(!c4.handshake_ok);

    /* An engine recycled after failed handshakes serves the next client normally. */
    struct client c5 = { 0 };
    CHECK_INT(run(&free_list, &c5, &sent), 0);
    CHECK(c5.handshake_ok);
    CHECK_INT(c5.received, sent);
    CHECK(c5.server_closed_cleanly);

    /* A client that sends one byte at a time and reads in small pieces. */
    struct client c6 = { .trickle = 1 };
    CHECK_INT(run(&free_list, &c6, &sent), 0);
    CHECK(c6.handshake_ok);
    CHECK(c6.saw_request_echo);
    CHECK_INT(c6.received, sent);

    tls_transport_free_all(&free_list);
    CHECK(free_list == NULL);
    return check_summary("test_tls_transport");
}
