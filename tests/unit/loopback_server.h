/*
 * loopback_server.h - a TCP server on 127.0.0.1 for the unit tests of HTTP clients (the API
 * client, the registry client): one thread accepts, one thread per connection runs the test's
 * serve_connection(fd), which closes fd when done; loopback_header_value reads a request's
 * headers. Failing to listen aborts the test program:
 * without its server a client test cannot say anything.
 */
#ifndef GATEHOUSE_LOOPBACK_SERVER_H
#define GATEHOUSE_LOOPBACK_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* A listening socket on an ephemeral port of 127.0.0.1 in *fd_out; returns the port. */
static inline int loopback_listen(int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        perror("test server");
        exit(2);
    }
    *fd_out = fd;
    return ntohs(a.sin_port);
}

struct loopback_server {
    int fd;
    void *(*serve_connection)(void *);   /* gets the connection's fd as (void *)(intptr_t) */
};

static inline void *loopback_accept_loop(void *arg)
{
    struct loopback_server *s = arg;
    for (;;) {
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        if (pthread_create(&t, NULL, s->serve_connection, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
    return NULL;
}

/* Starts a server whose connections serve_connection handles; returns its port. */
static inline int loopback_server_start(void *(*serve_connection)(void *))
{
    struct loopback_server *s = malloc(sizeof *s);   /* lives as long as the test program */
    if (!s)
        exit(2);
    s->serve_connection = serve_connection;
    int port = loopback_listen(&s->fd);
    pthread_t t;
    if (pthread_create(&t, NULL, loopback_accept_loop, s) != 0)
        exit(2);
    pthread_detach(t);
    return port;
}

/* The value of header name (any case) in a request head whose lines end in CRLF, the request
 * line first; "" when absent. */
static inline void loopback_header_value(const char *headers, const char *name, char *out,
                                         size_t outlen)
{
    out[0] = '\0';
    for (const char *p = headers; (p = strstr(p, "\r\n")); ) {
        p += 2;
        size_t n = strlen(name);
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            p += n + 1;
            while (*p == ' ')
                p++;
            size_t len = strcspn(p, "\r\n");
            snprintf(out, outlen, "%.*s", (int)(len < outlen ? len : outlen - 1), p);
            return;
        }
    }
}

#endif
