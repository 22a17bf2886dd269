/*
 * access_log.c - JSON access-log lines (access_log.h).
 *
 * A line longer than the space left flushes first; a field that would not fit even in an empty
 * buffer is truncated (the line stays valid JSON) rather than split across writes.
 */
#include "access_log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_FIELD_BYTES 1024      /* per string field, before escaping */
#define MAX_LINE_BYTES  (7 * 6 * MAX_FIELD_BYTES + 512)   /* 7 strings, worst-case escaping */

void access_log_init(struct access_log *log)
{
    log->len = 0;
    log->stamp_second = -1;
}

void access_log_flush(struct access_log *log)
{
    size_t off = 0;
    while (off < log->len) {
        ssize_t n = write(STDOUT_FILENO, log->buf + off, log->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;                 /* stdout gone or full: drop the batch rather than block */
        off += (size_t)n;
    }
    log->len = 0;
}

static char *put_raw(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static char *put_string(char *p, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!s)
        return put_raw(p, "null");
    if (n > MAX_FIELD_BYTES)
        n = MAX_FIELD_BYTES;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            /* Bytes, not characters: non-ASCII is escaped so the line is always valid UTF-8. */
            p = put_raw(p, "\\u00");
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        } else {
            *p++ = (char)c;
        }
    }
    *p++ = '"';
    return p;
}

static const char *stamp_for(struct access_log *log, int64_t wall_ms)
{
    int64_t second = wall_ms / 1000;
    if (second != log->stamp_second) {
        time_t t = (time_t)second;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(log->stamp, sizeof log->stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        log->stamp_second = second;
    }
    return log->stamp;
}

void access_log_append(struct access_log *log, const struct access_log_entry *e)
{
    if (ACCESS_LOG_BUFFER - log->len < MAX_LINE_BYTES)
        access_log_flush(log);
    char *p = log->buf + log->len;
    p = put_raw(p, "{\"time\":\"");
    p = put_raw(p, stamp_for(log, e->wall_ms));
    p = put_raw(p, "\",\"remote\":");
    p = put_string(p, e->remote, e->remote ? strlen(e->remote) : 0);
    p = put_raw(p, ",\"method\":");
    p = put_string(p, e->method, e->method_len);
    p = put_raw(p, ",\"host\":");
    p = put_string(p, e->host, e->host_len);
    p = put_raw(p, ",\"path\":");
    p = put_string(p, e->path, e->path_len);
    p += sprintf(p, ",\"status\":%d,\"bytes_sent\":%llu,\"duration_ms\":%ld,\"upstream\":",
                 e->status, (unsigned long long)e->bytes_sent, e->duration_ms);
    p = put_string(p, e->upstream, e->upstream ? strlen(e->upstream) : 0);
    p = put_raw(p, ",\"request_id\":");
    p = put_string(p, e->request_id, e->request_id_len);
    p = put_raw(p, ",\"ingress\":");
    p = put_string(p, e->ingress, e->ingress ? strlen(e->ingress) : 0);
    p = put_raw(p, "}\n");
    log->len = (size_t)(p - log->buf);
}
