/*
 * agent_metrics.c - see agent_metrics.h.
 */
#include "agent_metrics.h"

#include "file_io.h"
#include "image_digest.h"

#include <stdio.h>
#include <string.h>

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
        "gatehouse_agent_last_render_timestamp_seconds %lld\n"
        "# HELP gatehouse_agent_info The agent's version and the appliance image it runs in.\n"
        "# TYPE gatehouse_agent_info gauge\n"
        "gatehouse_agent_info{version=\"%s\",image_digest=\"%s\"} 1\n",
        m->renders_ok, m->renders_failed, m->tls_refused, m->diag_errors, m->diag_warnings,
        (long long)m->last_ok_seconds, m->version ? m->version : "", m->image_digest);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

int agent_metrics_write(const char *state_dir, const struct agent_metrics *m,
                        const char *source_text, char *err, size_t errlen)
{
    char text[8192];
    size_t len = render_text(text, sizeof text, m);
    int n = snprintf(text + len, sizeof text - len, "%s", source_text);
    if (n > 0)
        len += (size_t)n < sizeof text - len ? (size_t)n : sizeof text - len - 1;
    return file_replace(state_dir, AGENT_METRICS_FILE_NAME, text, len, 0644, (uid_t)-1,
                        (gid_t)-1, err, errlen);
}

void agent_metrics_read_image_digest(struct agent_metrics *m, const char *path)
{
    char line[128] = "";
    m->image_digest[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    if (fgets(line, sizeof line, f))
        line[strcspn(line, "\n")] = '\0';
    fclose(f);
    if (image_digest_valid(line))
        memcpy(m->image_digest, line, strlen(line) + 1);
}
