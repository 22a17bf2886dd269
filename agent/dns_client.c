/*
 * dns_client.c - a bounded, blocking DNS exchange over UDP, then TCP (see dns_client.h).
 *
 * The UDP socket is connect()ed to the server: the kernel then drops datagrams from other
 * addresses for us, and an ICMP port unreachable comes back as ECONNREFUSED, which is how
 * "connection refused" is told apart from silence. Every wait is a poll() against a deadline
 * on the monotonic clock, so a server that trickles bytes cannot stretch the exchange.
 */
#include "dns_client.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- the server's address ---- */

static int parse_port(const char *s, uint16_t *port)
{
    if (!*s || strlen(s) > 5 || strspn(s, "0123456789") != strlen(s))
        return -1;
    long v = strtol(s, NULL, 10);
    if (v < 1 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* Splits text into an address and a port (53 when absent). */
static int split_host_port(const char *text, char *host, size_t hostlen, uint16_t *port)
{
    const char *port_text = NULL;
    size_t n;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || (close[1] != '\0' && close[1] != ':'))
            return -1;
        n = (size_t)(close - text - 1);
        text++;
        port_text = close[1] == ':' ? close + 2 : NULL;
    } else {
        const char *colon = strchr(text, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL;                   /* a bare IPv6 address */
        n = colon ? (size_t)(colon - text) : strlen(text);
        port_text = colon ? colon + 1 : NULL;
    }
    if (n == 0 || n >= hostlen)
        return -1;
    memcpy(host, text, n);
    host[n] = '\0';
    *port = DNS_CLIENT_DEFAULT_PORT;
    return port_text ? parse_port(port_text, port) : 0;
}

int dns_server_parse(struct dns_server *server, const char *text, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 1];
    uint16_t port;
    memset(server, 0, sizeof *server);
    if (!text || split_host_port(text, host, sizeof host, &port) < 0) {
        set_err(err, errlen, "DNS server \"%.80s\" is not IP:port or [IPv6]:port",
                text ? text : "");
        return -1;
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)&server->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&server->addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        server->addrlen = sizeof *v4;
        snprintf(server->text, sizeof server->text, "%s:%u", host, port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        server->addrlen = sizeof *v6;
        snprintf(server->text, sizeof server->text, "[%s]:%u", host, port);
    } else {
        set_err(err, errlen, "DNS server \"%.80s\": \"%s\" is not an IP address", text, host);
        return -1;
    }
    return 0;
}

/* ---- time ---- */

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t wall_seconds(void)
{
    return (uint64_t)time(NULL);
}

/* "2 s" or "500 ms", for messages. */
static void describe_ms(int ms, char *out, size_t outlen)
{
    if (ms % 1000 == 0)
        snprintf(out, outlen, "%d s", ms / 1000);
    else
        snprintf(out, outlen, "%d ms", ms);
}

/* Waits for events on fd until deadline. 1: ready, 0: deadline passed, -1: poll failed. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - monotonic_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* ---- matching a response to the request ---- */

struct request_info {
    uint16_t id;
    unsigned opcode;
    struct dns_name qname;
    uint16_t qtype, qclass;
};

static int response_matches(const struct request_info *q, const struct dns_message *m)
{
    if (m->id != q->id || !(m->flags & DNS_FLAG_QR) || m->opcode != q->opcode)
        return 0;
    if (m->count[DNS_SECTION_QUESTION] == 0)
        return m->rcode != DNS_RCODE_NOERROR;    /* FORMERR, NOTIMP may drop the question */
    return m->count[DNS_SECTION_QUESTION] == 1 && dns_name_equal(&m->qname, &q->qname) &&
           m->qtype == q->qtype && m->qclass == q->qclass;
}

/* ---- UDP ---- */

enum udp_outcome { UDP_ANSWERED, UDP_TRUNCATED, UDP_FAILED };

/* Waits for a matching datagram until deadline. 1: got one, 0: deadline, -1: error (err). */
static int udp_receive(int fd, const struct request_info *q, uint8_t *resp, size_t respcap,
                       struct dns_message *out, int64_t deadline, char *bad, size_t badlen,
                       char *err, size_t errlen)
{
    for (;;) {
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            if (w < 0)
                set_err(err, errlen, "poll: %s", strerror(errno));
            return w;
        }
        ssize_t n = recv(fd, resp, respcap, MSG_TRUNC);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            set_err(err, errlen, "%s", errno == ECONNREFUSED ? "connection refused"
                                                             : strerror(errno));
            return -1;
        }
        char why[200];
        if ((size_t)n > respcap) {
            snprintf(bad, badlen, "a response of %zd octets did not fit", n);
            continue;
        }
        if (dns_parse(out, resp, (size_t)n, why, sizeof why) < 0) {
            snprintf(bad, badlen, "a malformed response was dropped: %s", why);
            continue;
        }
        if (response_matches(q, out))
            return 1;
        snprintf(bad, badlen, "a response that did not match the request was dropped");
    }
}

static enum udp_outcome exchange_udp(const struct dns_client *c, const uint8_t *msg, size_t len,
                                     const struct request_info *q, uint8_t *resp, size_t respcap,
                                     struct dns_message *out, char *err, size_t errlen)
{
    int timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : DNS_CLIENT_DEFAULT_TIMEOUT_MS;
    int tries = c->udp_tries > 0 ? c->udp_tries : DNS_CLIENT_DEFAULT_UDP_TRIES;
    int fd = socket(c->server.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        set_err(err, errlen, "%s: socket: %s", c->server.text, strerror(errno));
        return UDP_FAILED;
    }
    if (connect(fd, (const struct sockaddr *)&c->server.addr, c->server.addrlen) < 0) {
        set_err(err, errlen, "%s: %s", c->server.text, strerror(errno));
        close(fd);
        return UDP_FAILED;
    }
    char bad[300] = "", why[200];
    for (int i = 0; i < tries; i++) {
        if (send(fd, msg, len, 0) != (ssize_t)len) {
            set_err(err, errlen, "%s: %s", c->server.text,
                    errno == ECONNREFUSED ? "connection refused" : strerror(errno));
            close(fd);
            return UDP_FAILED;
        }
        int r = udp_receive(fd, q, resp, respcap, out, monotonic_ms() + timeout_ms, bad,
                            sizeof bad, why, sizeof why);
        if (r != 0) {
            close(fd);
            if (r < 0) {
                set_err(err, errlen, "%s: %s", c->server.text, why);
                return UDP_FAILED;
            }
            return (out->flags & DNS_FLAG_TC) ? UDP_TRUNCATED : UDP_ANSWERED;
        }
    }
    close(fd);
    char per_try[32];
    describe_ms(timeout_ms, per_try, sizeof per_try);
    set_err(err, errlen, "%s: timed out after %s (%d %s over UDP)%s%s", c->server.text, per_try,
            tries, tries == 1 ? "try" : "tries", bad[0] ? "; " : "", bad);
    return UDP_FAILED;
}

/* ---- TCP ---- */

static int tcp_connect(const struct dns_server *s, int64_t deadline, char *err, size_t errlen)
{
    int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        set_err(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)&s->addr, s->addrlen) < 0 && errno != EINPROGRESS) {
        set_err(err, errlen, "%s", errno == ECONNREFUSED ? "connection refused" : strerror(errno));
        close(fd);
        return -1;
    }
    int w = wait_fd(fd, POLLOUT, deadline);
    int so_error = 0;
    socklen_t sl = sizeof so_error;
    if (w <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &sl) < 0 || so_error) {
        if (w == 0)
            set_err(err, errlen, "timed out connecting over TCP");
        else
            set_err(err, errlen, "%s", so_error == ECONNREFUSED ? "connection refused"
                                       : strerror(so_error ? so_error : errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int tcp_write_all(int fd, const uint8_t *p, size_t n, int64_t deadline, char *err,
                         size_t errlen)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            set_err(err, errlen, "sending over TCP: %s", strerror(errno));
            return -1;
        }
        if (wait_fd(fd, POLLOUT, deadline) <= 0) {
            set_err(err, errlen, "timed out sending over TCP");
            return -1;
        }
    }
    return 0;
}

static int tcp_read_all(int fd, uint8_t *p, size_t n, int64_t deadline, char *err,
                        size_t errlen)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0) {
            set_err(err, errlen, "server closed the TCP connection before answering in full");
            return -1;
        }
        if (errno != EAGAIN && errno != EINTR) {
            set_err(err, errlen, "reading over TCP: %s", strerror(errno));
            return -1;
        }
        if (wait_fd(fd, POLLIN, deadline) <= 0) {
            set_err(err, errlen, "timed out reading the response over TCP");
            return -1;
        }
    }
    return 0;
}

static int exchange_tcp_fd(int fd, const uint8_t *msg, size_t len, const struct request_info *q,
                           uint8_t *resp, size_t respcap, struct dns_message *out,
                           int64_t deadline, char *err, size_t errlen)
{
    uint8_t prefix[2] = { (uint8_t)(len >> 8), (uint8_t)len };
    if (tcp_write_all(fd, prefix, 2, deadline, err, errlen) < 0 ||
        tcp_write_all(fd, msg, len, deadline, err, errlen) < 0 ||
        tcp_read_all(fd, prefix, 2, deadline, err, errlen) < 0)
        return -1;
    size_t n = (size_t)prefix[0] << 8 | prefix[1];
    if (n > respcap) {
        set_err(err, errlen, "response of %zu octets does not fit the buffer", n);
        return -1;
    }
    if (tcp_read_all(fd, resp, n, deadline, err, errlen) < 0)
        return -1;
    char why[200];
    if (dns_parse(out, resp, n, why, sizeof why) < 0) {
        set_err(err, errlen, "response is malformed: %s", why);
        return -1;
    }
    if (!response_matches(q, out)) {
        set_err(err, errlen, "response does not match the request (ID or question)");
        return -1;
    }
    return 0;
}

static int exchange_tcp(const struct dns_client *c, const uint8_t *msg, size_t len,
                        const struct request_info *q, uint8_t *resp, size_t respcap,
                        struct dns_message *out, char *err, size_t errlen)
{
    int timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : DNS_CLIENT_DEFAULT_TIMEOUT_MS;
    int64_t deadline = monotonic_ms() + timeout_ms;
    char why[300];
    int fd = tcp_connect(&c->server, deadline, why, sizeof why);
    int r = fd < 0 ? -1 : exchange_tcp_fd(fd, msg, len, q, resp, respcap, out, deadline, why,
                                          sizeof why);
    if (fd >= 0)
        close(fd);
    if (r < 0)
        set_err(err, errlen, "%s: %s", c->server.text, why);
    return r;
}

/* ---- the exchange ---- */

int dns_client_exchange(const struct dns_client *client, uint8_t *msg, size_t len, size_t cap,
                        uint8_t *resp, size_t respcap, struct dns_message *response,
                        char *err, size_t errlen)
{
    struct dns_tsig_request signed_request;
    char why[300];
    uint64_t (*now)(void) = client->now ? client->now : wall_seconds;
    if (client->key && dns_tsig_sign(client->key, msg, &len, cap, now(), &signed_request, why,
                                     sizeof why) < 0) {
        set_err(err, errlen, "%s: %s", client->server.text, why);
        return -1;
    }
    struct dns_message request;
    if (dns_parse(&request, msg, len, why, sizeof why) < 0 ||
        request.count[DNS_SECTION_QUESTION] != 1) {
        set_err(err, errlen, "%s: refusing to send a malformed request", client->server.text);
        return -1;
    }
    struct request_info q = { .id = request.id, .opcode = request.opcode,
                              .qname = request.qname, .qtype = request.qtype,
                              .qclass = request.qclass };
    int use_tcp = len > DNS_WIRE_UDP_MAX;
    if (!use_tcp) {
        enum udp_outcome u = exchange_udp(client, msg, len, &q, resp, respcap, response, err,
                                          errlen);
        if (u == UDP_FAILED)
            return -1;
        use_tcp = u == UDP_TRUNCATED;
    }
    if (use_tcp && exchange_tcp(client, msg, len, &q, resp, respcap, response, err, errlen) < 0)
        return -1;
    if (client->key) {
        enum dns_tsig_result t = dns_tsig_verify(client->key, response, &signed_request, now(),
                                                 why, sizeof why);
        if (t != DNS_TSIG_OK) {
            set_err(err, errlen, "%s: %s", client->server.text, why);
            return -1;
        }
    }
    return 0;
}

uint16_t dns_client_new_id(void)
{
    static _Thread_local uint16_t last;
    uint16_t id = last;
    while (id == last) {
        if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id)
            id = (uint16_t)(last + 1 + (monotonic_ms() & 0xFF));
    }
    last = id;
    return id;
}
