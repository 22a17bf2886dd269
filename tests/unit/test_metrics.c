/*
 * test_metrics.c - what a Prometheus scrape of /metrics shows: counters from several workers
 * add up, label values are escaped, the host-series cap holds, and host labels survive the
 * route table they came from.
 */
#include "check.h"
#include "metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The cap documented in metrics.c: (host, status) series before host="_other". */
#define SERIES_CAP 1000

/* Value of the sample whose name-and-labels is exactly `series`, or -1 when absent. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    }
    return -1;
}

static size_t count_lines_starting(const char *text, const char *prefix)
{
    size_t count = 0, n = strlen(prefix);
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (strncmp(line, prefix, n) == 0)
            count++;
    return count;
}

static char *render(void)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    CHECK(text != NULL);
    CHECK_INT(strlen(text ? text : ""), len);
    return text;
}

static void test_counters_sum_across_workers(void)
{
    metrics_init(3);
    metrics_request_done(0, "a.example", 200, 0.001);
    metrics_request_done(1, "a.example", 200, 0.02);
    metrics_request_done(1, "a.example", 200, 0.3);
    metrics_request_done(2, "b.example", 404, 20);
    metrics_connection_opened(0);
    metrics_connection_opened(1);
    metrics_connection_opened(2);
    metrics_connection_closed(1);
    metrics_upstream_error(0, "connect");
    metrics_upstream_error(2, "connect");
    metrics_upstream_error(1, "something-new");
    metrics_bad_request(2);
    metrics_route_reload(1);
    metrics_route_reload(0);
    metrics_route_reload(1);
    metrics_set_routes_loaded(1, 7, 12);

    char *t = render();
    if (!t)
        return;
    CHECK(sample(t, "gatehouse_http_requests_total{host=\"a.example\",code=\"200\"}") == 3);
    CHECK(sample(t, "gatehouse_http_requests_total{host=\"b.example\",code=\"404\"}") == 1);
    CHECK_INT(count_lines_starting(t, "gatehouse_http_requests_total{"), 2);
    const char *h = "gatehouse_http_request_duration_seconds";
    char name[128];
    snprintf(name, sizeof name, "%s_bucket{le=\"0.005\"}", h);
    CHECK(sample(t, name) == 1);
    snprintf(name, sizeof name, "%s_bucket{le=\"0.025\"}", h);
    CHECK(sample(t, name) == 2);
    snprintf(name, sizeof name, "%s_bucket{le=\"0.5\"}", h);
    CHECK(sample(t, name) == 3);
    snprintf(name, sizeof name, "%s_bucket{le=\"10\"}", h);
    CHECK(sample(t, name) == 3);
    snprintf(name, sizeof name, "%s_bucket{le=\"+Inf\"}", h);
    CHECK(sample(t, name) == 4);
    snprintf(name, sizeof name, "%s_count", h);
    CHECK(sample(t, name) == 4);
    snprintf(name, sizeof name, "%s_sum", h);
    double sum = sample(t, name);
    CHECK(sum > 20.320 && sum < 20.322);
    CHECK(sample(t, "gatehouse_connections_active") == 2);
    CHECK(sample(t, "gatehouse_connections_total") == 3);
    CHECK(sample(t, "gatehouse_upstream_errors_total{kind=\"connect\"}") == 2);
    CHECK(sample(t, "gatehouse_upstream_errors_total{kind=\"timeout\"}") == 0);
    CHECK(sample(t, "gatehouse_upstream_errors_total{kind=\"other\"}") == 1);
    CHECK(sample(t, "gatehouse_bad_requests_total") == 1);
    CHECK(sample(t, "gatehouse_route_reloads_total{result=\"ok\"}") == 2);
    CHECK(sample(t, "gatehouse_route_reloads_total{result=\"failed\"}") == 1);
    CHECK(sample(t, "gatehouse_routes_loaded") == 1);
    CHECK(sample(t, "gatehouse_route_hosts") == 7);
    CHECK(sample(t, "gatehouse_routes") == 12);
    CHECK(sample(t, "process_resident_memory_bytes") > 0);
    CHECK(sample(t, "process_start_time_seconds") > 1.5e9);
    CHECK(strstr(t, "# TYPE gatehouse_http_requests_total counter\n") != NULL);
    CHECK(strstr(t, "# TYPE gatehouse_http_request_duration_seconds histogram\n") != NULL);
    CHECK(strstr(t, "# TYPE gatehouse_connections_active gauge\n") != NULL);
    /* Every metric family announces itself once with HELP and TYPE. */
    CHECK_INT(count_lines_starting(t, "# HELP "), count_lines_starting(t, "# TYPE "));
    CHECK_INT(count_lines_starting(t, "# TYPE "), 12);
    free(t);
}

static void test_label_escaping(void)
{
    metrics_init(1);
    metrics_request_done(0, "we\"ird\\host\nname", 500, 0.1);
    char *t = render();
    if (!t)
        return;
    CHECK(sample(t, "gatehouse_http_requests_total{host=\"we\\\"ird\\\\host\\nname\",code=\"500\"}") == 1);
    free(t);
}

static void test_host_label_is_copied(void)
{
    metrics_init(2);
    char *host = strdup("shop.example");
    metrics_request_done(1, host, 200, 0.01);
    strcpy(host, "XXXX.XXXXXXX");     /* as if a reload freed the old route table */
    free(host);
    metrics_request_done(1, "shop.example", 200, 0.01);
    char *t = render();
    if (!t)
        return;
    CHECK(sample(t, "gatehouse_http_requests_total{host=\"shop.example\",code=\"200\"}") == 2);
    CHECK(strstr(t, "XXXX") == NULL);
    free(t);
}

static void test_series_cap(void)
{
    metrics_init(2);
    char host[64];
    for (int i = 0; i < SERIES_CAP + 200; i++) {
        snprintf(host, sizeof host, "h%d.example", i);
        metrics_request_done(0, host, 200, 0.001);
    }
    /* Known series keep counting after the cap; new ones, on any worker, become "_other". */
    metrics_request_done(1, "h0.example", 200, 0.001);
    metrics_request_done(1, "late.example", 200, 0.001);
    metrics_request_done(1, "late.example", 503, 0.001);
    char *t = render();
    if (!t)
        return;
    CHECK_INT(count_lines_starting(t, "gatehouse_http_requests_total{"), SERIES_CAP + 2);
    CHECK(sample(t, "gatehouse_http_requests_total{host=\"h0.example\",code=\"200\"}") == 2);
    CHECK(sample(t, "gatehouse_http_requests_total{host=\"_other\",code=\"200\"}") == 201);
    CHECK(sample(t, "gatehouse_http_requests_total{host=\"_other\",code=\"503\"}") == 1);
    CHECK(sample(t, "gatehouse_http_requests_total{host=\"late.example\",code=\"200\"}") == -1);
    CHECK(sample(t, "gatehouse_http_request_duration_seconds_count") == SERIES_CAP + 203);
    free(t);
}

static void test_bad_worker_index_is_ignored(void)
{
    metrics_init(1);
    metrics_request_done(-1, "a", 200, 0.1);
    metrics_request_done(5, "a", 200, 0.1);
    metrics_connection_opened(METRICS_MAX_WORKERS);
    char *t = render();
    if (!t)
        return;
    CHECK(sample(t, "gatehouse_http_request_duration_seconds_count") == 0);
    CHECK(sample(t, "gatehouse_connections_total") == 0);
    free(t);
}

/* Workers counting while scrapes run: no request may be lost or counted twice. */
#define STRESS_WORKERS 4
#define STRESS_REQUESTS 20000

static void *stress_worker(void *arg)
{
    int w = (int)(long)arg;
    char host[32];
    for (int i = 0; i < STRESS_REQUESTS; i++) {
        snprintf(host, sizeof host, "h%d.example", i % 50);
        metrics_request_done(w, host, i % 3 ? 200 : 404, 0.001);
        metrics_connection_opened(w);
    }
    return NULL;
}

static double sum_requests(const char *text)
{
    double total = 0;
    const char *prefix = "gatehouse_http_requests_total{";
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            total += strtod(strchr(line, ' ') + 1, NULL);
    return total;
}

static void test_concurrent_workers_and_scrapes(void)
{
    metrics_init(STRESS_WORKERS);
    pthread_t threads[STRESS_WORKERS];
    for (long w = 0; w < STRESS_WORKERS; w++)
        pthread_create(&threads[w], NULL, stress_worker, (void *)w);
    double previous = 0;
    int went_backwards = 0;
    for (int i = 0; i < 20; i++) {
        char *t = metrics_render(NULL);
        if (t) {
            double now = sample(t, "gatehouse_connections_total");
            went_backwards |= now < previous;
            previous = now;
            free(t);
        }
    }
    for (int w = 0; w < STRESS_WORKERS; w++)
        pthread_join(threads[w], NULL);
    CHECK(!went_backwards);
    char *t = render();
    if (!t)
        return;
    CHECK(sum_requests(t) == STRESS_WORKERS * STRESS_REQUESTS);
    CHECK(sample(t, "gatehouse_connections_total") == STRESS_WORKERS * STRESS_REQUESTS);
    CHECK_INT(count_lines_starting(t, "gatehouse_http_requests_total{"), 100);
    free(t);
}

int main(void)
{
    test_counters_sum_across_workers();
    test_label_escaping();
    test_host_label_is_copied();
    test_series_cap();
    test_bad_worker_index_is_ignored();
    test_concurrent_workers_and_scrapes();
    return check_summary("test_metrics");
}
