/*
 * access_log.h - one JSON line per request on stdout, batched per worker.
 *
 * Lines are appended to the worker's own buffer and written with one write(2) per loop
 * iteration (or when the buffer fills), so logging costs no lock and few system calls. Every
 * string is JSON-escaped: method, host, path and request id come straight from clients.
 */
#ifndef GATEHOUSE_ACCESS_LOG_H
#define GATEHOUSE_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

#define ACCESS_LOG_BUFFER 65536

struct access_log {
    char buf[ACCESS_LOG_BUFFER];
    size_t len;
    int64_t stamp_second;        /* wall second that `stamp` spells */
    char stamp[24];              /* "2026-01-02T03:04:05Z" */
};

struct access_log_entry {
    int64_t wall_ms;
    const char *remote;
    const char *method;     size_t method_len;
    const char *host;       size_t host_len;
    const char *path;       size_t path_len;
    int status;
    uint64_t bytes_sent;
    long duration_ms;
    const char *upstream;                      /* NULL: no upstream was used */
    const char *request_id; size_t request_id_len;
    const char *ingress;                       /* NULL: no route */
};

void access_log_init(struct access_log *log);
void access_log_append(struct access_log *log, const struct access_log_entry *e);
void access_log_flush(struct access_log *log);

#endif
