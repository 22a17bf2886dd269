/*
 * agent_metrics.c - see agent_metrics.h.
 */
#include "agent_metrics.h"

#include "file_io.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static size_t render_text(char *buf, size_t cap, const struct agent_metrics *m)
{
    int n = snprintf(buf, cap,
        "# HELP gatehouse_agent_renders_total Routes renders by the agent, by result.\n"
        "# TYPE gatehouse_agent_renders_total counter\n"
        "gatehouse_agent_renders_total{result=\"ok\"} %llu\n"
        "gatehouse_agent_renders_total{result=\"failed\"} %llu\n"
        "# HELP gatehouse_agent_tls_secrets_refused TLS Secrets refused by the last render "
        "(missing, malformed, key mismatch, expired).\n"
        "# TYPE gatehouse_agent_tls_secrets_refused gauge\n"
        "gatehouse_agent_tls_secrets_refused %u\n"
        "# HELP gatehouse_agent_diagnostics Problems reported by the last render, by severity.\n"
        "# TYPE gatehouse_agent_diagnostics gauge\n"
        "gatehouse_agent_diagnostics{severity=\"error\"} %u\n"
        "gatehouse_agent_diagnostics{severity=\"warning\"} %u\n"
        "# HELP gatehouse_agent_last_render_timestamp_seconds When the last render succeeded.\n"
        "# TYPE gatehouse_agent_last_render_timestamp_seconds gauge\n"
        "gatehouse_agent_last_render_timestamp_seconds %lld\n",
        m->renders_ok, m->renders_failed, m->tls_refused, m->diag_errors, m->diag_warnings,
        (long long)m->last_ok_seconds);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

int agent_metrics_write(const char *state_dir, const struct agent_metrics *m, char *err,
                        size_t errlen)
{
    char text[2048], path[4352], temp[4400];
    size_t len = render_text(text, sizeof text, m);
    snprintf(path, sizeof path, "%s/" AGENT_METRICS_FILE_NAME, state_dir);
    snprintf(temp, sizeof temp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return set_err(err, errlen, "cannot create %s: %s", temp, strerror(errno));
    int failed = file_write_all(fd, text, len) < 0;
    int saved = errno;
    if (close(fd) < 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    if (failed) {
        set_err(err, errlen, "cannot write %s: %s", temp, strerror(saved));
        unlink(temp);
        return -1;
    }
    if (rename(temp, path) < 0) {
        set_err(err, errlen, "cannot rename %s to %s: %s", temp, path, strerror(errno));
        unlink(temp);
        return -1;
    }
    return 0;
}
