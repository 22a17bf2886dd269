/*
 * agent_metrics.h - the agent's own counters, for Prometheus.
 *
 * The agent serves no port of its own (one listener fewer on the node): it writes its metrics in
 * Prometheus text format to STATE/metrics.prom after every render, replaced atomically, and the
 * proxy's admin /metrics appends that file, so one scrape of a node sees both programs. The
 * same file also suits node_exporter's textfile collector.
 */
#ifndef GATEHOUSE_AGENT_METRICS_H
#define GATEHOUSE_AGENT_METRICS_H

#include "image_digest.h"

#include <stddef.h>
#include <stdint.h>

#define AGENT_METRICS_FILE_NAME "metrics.prom"

struct agent_metrics {
    unsigned long long renders_ok;     /* routes written or found unchanged */
    unsigned long long renders_failed; /* folder unreadable or routes not written */
    unsigned tls_refused;              /* Secrets refused by the last render */
    unsigned diag_errors;              /* problems reported by the last render, by severity */
    unsigned diag_warnings;
    int64_t last_ok_seconds;           /* wall clock of the last successful render */
    const char *version;               /* gatehouse_agent_info labels: the agent's version, */
    char image_digest[IMAGE_DIGEST_LEN + 1]; /* and the appliance image booted ("" elsewhere) */
};

/* Where the appliance's init notes the image digest given on the kernel command line. */
#define AGENT_IMAGE_DIGEST_FILE "/run/gatehouse/image-digest"

/* Reads the image digest from path into m->image_digest when the file holds sha256:<64 hex>;
 * leaves it empty otherwise (not on the appliance, or a value that is not a digest). */
void agent_metrics_read_image_digest(struct agent_metrics *m, const char *path);

/* Writes STATE/metrics.prom (temp file + rename): the counters, then source_text (the source's
 * own lines, may be ""). Returns 0, or -1 with err saying why. */
int agent_metrics_write(const char *state_dir, const struct agent_metrics *m,
                        const char *source_text, char *err, size_t errlen);

#endif
