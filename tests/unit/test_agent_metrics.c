/*
 * test_agent_metrics.c - the agent's metrics file: counters, and the info line naming the
 * version and the appliance image (only a well-formed digest from the init's file gets in).
 */
#include "agent_metrics.h"
#include "check.h"
#include "temp_dir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void write_file(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static char *read_metrics(void)
{
    static char text[8192];
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, AGENT_METRICS_FILE_NAME);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[n] = '\0';
    if (f)
        fclose(f);
    return text;
}

static const char digest[] =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void test_image_digest(void)
{
    struct agent_metrics m = { .version = "v1.2-3-gabc", .renders_ok = 4 };
    char path[128];
    snprintf(path, sizeof path, "%s/digest", dir);

    write_file("digest", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n");
    agent_metrics_read_image_digest(&m, path);
    CHECK_STR(m.image_digest, digest);
    char err[256];
    CHECK_INT(agent_metrics_write(dir, &m, "extra_metric 1\n", err, sizeof err), 0);
    char *text = read_metrics();
    CHECK(strstr(text, "gatehouse_agent_info{version=\"v1.2-3-gabc\",image_digest=\"sha256:0123"));
    CHECK(strstr(text, "gatehouse_agent_renders_total{result=\"ok\"} 4\n"));
    CHECK(strstr(text, "extra_metric 1\n"));

    write_file("digest", "sha256:\"}injected 1\n");           /* not a digest: left out */
    agent_metrics_read_image_digest(&m, path);
    CHECK_STR(m.image_digest, "");
    write_file("digest", "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\n");
    agent_metrics_read_image_digest(&m, path);
    CHECK_STR(m.image_digest, "");
    snprintf(path, sizeof path, "%s/absent", dir);
    agent_metrics_read_image_digest(&m, path);
    CHECK_STR(m.image_digest, "");
    CHECK_INT(agent_metrics_write(dir, &m, "", err, sizeof err), 0);
    CHECK(strstr(read_metrics(), "image_digest=\"\"} 1\n"));
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_agent_metrics.XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    test_image_digest();
    temp_dir_remove(dir);
    return check_summary("test_agent_metrics");
}
