/*
 * test_server_access_log.c - access-log lines are one valid JSON object each, whatever bytes
 * the client put in the method, host, path or request id.
 */
#include "access_log.h"
#include "check.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static struct access_log log_buf;

int main(void)
{
    access_log_init(&log_buf);
    static const char evil_path[] = "/a\"b\\c\n\x01\xff\xc3\xa9";
    struct access_log_entry e = {
        .wall_ms = 1767312245123LL,                 /* 2026-01-02T00:04:05Z */
        .remote = "192.0.2.7",
        .method = "GET", .method_len = 3,
        .host = "ex\"ample", .host_len = 8,
        .path = evil_path, .path_len = sizeof evil_path - 1,
        .status = 200, .bytes_sent = 1234, .duration_ms = 7,
        .upstream = NULL,
        .request_id = "abc", .request_id_len = 3,
        .ingress = "default/web",
    };
    access_log_append(&log_buf, &e);
    CHECK(log_buf.len > 0);
    CHECK(log_buf.buf[log_buf.len - 1] == '\n');
    CHECK(memchr(log_buf.buf, '\n', log_buf.len) == log_buf.buf + log_buf.len - 1);

    json_error_t err;
    json_t *doc = json_loadb(log_buf.buf, log_buf.len - 1, 0, &err);
    CHECK(doc != NULL);
    if (doc) {
        CHECK_STR(json_string_value(json_object_get(doc, "time")), "2026-01-02T00:04:05Z");
        CHECK_STR(json_string_value(json_object_get(doc, "host")), "ex\"ample");
        CHECK_STR(json_string_value(json_object_get(doc, "path")),
                  "/a\"b\\c\n\x01\xc3\xbf\xc3\x83\xc2\xa9");   /* bytes >= 0x7f as \u00XX */
        CHECK_INT(json_integer_value(json_object_get(doc, "status")), 200);
        CHECK_INT(json_integer_value(json_object_get(doc, "bytes_sent")), 1234);
        CHECK(json_is_null(json_object_get(doc, "upstream")));
        CHECK_STR(json_string_value(json_object_get(doc, "ingress")), "default/web");
        json_decref(doc);
    }

    /* Huge fields are truncated, never split across lines or overflowing the buffer. */
    size_t big = 100000;
    char *huge = malloc(big);
    memset(huge, '"', big);
    e.path = huge;
    e.path_len = big;
    log_buf.len = 0;
    for (int i = 0; i < 3; i++) {
        size_t before = log_buf.len;
        access_log_append(&log_buf, &e);
        CHECK(log_buf.len <= ACCESS_LOG_BUFFER);
        if (log_buf.len > before) {
            json_t *d = json_loadb(log_buf.buf + before, log_buf.len - before - 1, 0, &err);
            CHECK(d != NULL);
            json_decref(d);
        }
        log_buf.len = 0;   /* instead of flushing to stdout */
    }
    free(huge);
    return check_summary("test_server_access_log");
}
