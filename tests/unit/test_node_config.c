/*
 * test_node_config.c - node config defaults, overrides, durations and sizes, and errors that
 * name the file, line and key.
 */
#include "check.h"
#include "node_config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[] = "/tmp/test_node_config_XXXXXX";

static void write_config(const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* Loads text over the defaults; returns the load's result, message in err. */
static int load(const char *text, struct node_config *cfg, char *err, size_t errlen)
{
    write_config(text);
    node_config_defaults(cfg);
    err[0] = '\0';
    return node_config_load(cfg, path, 0, err, errlen);
}

static void test_defaults(void)
{
    struct node_config cfg;
    node_config_defaults(&cfg);
    CHECK_STR(cfg.node_name, "");
    CHECK_STR(cfg.proxy_admin, "127.0.0.1:9901");
    CHECK_STR(cfg.proxy_routes, "/var/lib/gatehouse/routes.yaml");
    CHECK_STR(cfg.proxy_http, "");
    CHECK_INT(cfg.proxy_workers, 0);
    CHECK_INT(cfg.proxy_access_log, 1);
    CHECK_INT(cfg.proxy_max_header_bytes, 16384);
    CHECK_INT(cfg.proxy_max_body_bytes, 1048576);
    CHECK_INT(cfg.proxy_client_header_timeout_ms, 60000);
    CHECK_INT(cfg.proxy_client_idle_timeout_ms, 75000);
    CHECK_INT(cfg.proxy_upstream_connect_timeout_ms, 5000);
    CHECK_INT(cfg.proxy_upstream_read_timeout_ms, 60000);
    CHECK_INT(cfg.proxy_upstream_send_timeout_ms, 60000);
    CHECK_INT(cfg.proxy_endpoint_down_ms, 10000);
    CHECK_INT(cfg.proxy_drain_timeout_ms, 10000);
    CHECK_STR(cfg.ingress_class_name, "gatehouse");
    CHECK_STR(cfg.ingress_controller, "gatehouse.dev/ingress-controller");
    CHECK_INT(cfg.ingress_publish_status, 1);
    CHECK_INT(cfg.ingress_watch_without_class, 0);
    CHECK_STR(cfg.agent_state_dir, "/var/lib/gatehouse");

    char err[512];
    CHECK_INT(node_config_load(&cfg, "/nonexistent/config.yaml", 1, err, sizeof err), 0);
    CHECK_STR(cfg.proxy_admin, "127.0.0.1:9901");
    CHECK_INT(node_config_load(&cfg, "/nonexistent/config.yaml", 0, err, sizeof err), -1);
    CHECK(strstr(err, "/nonexistent/config.yaml: cannot open: No such file") != NULL);

    CHECK_INT(node_config_load(&cfg, "/tmp", 1, err, sizeof err), -1);   /* exists: not "missing" */
    CHECK(strstr(err, "/tmp: cannot read: Is a directory") != NULL);

    CHECK_INT(load("", &cfg, err, sizeof err), 0);               /* empty file: defaults */
    CHECK_INT(load("# only a comment\n", &cfg, err, sizeof err), 0);
    CHECK_INT(cfg.proxy_max_header_bytes, 16384);
}

static void test_overrides(void)
{
    struct node_config cfg;
    char err[512];
    int rc = load(
        "node:       {name: edge-1, address: 192.0.2.10}\n"
        "proxy:      {http: \"0.0.0.0:80\", https: \"[::]:443\", admin: \"127.0.0.1:9902\", workers: 4,\n"
        "             accessLog: false, user: gatehouse, routes: /data/routes.yaml,\n"
        "             maxHeaderBytes: 32Ki, maxBodyBytes: 0}\n"
        "kubernetes: {kubeconfig: /var/lib/gatehouse/kubeconfig, namespace: prod}\n"
        "ingress:    {className: edge, controller: example.com/edge, publishStatus: false,\n"
        "             watchWithoutClass: true}\n"
        "agent:      {stateDir: /data}\n"
        "dns:\n"
        "  - {type: rfc2136, server: \"192.0.2.53:53\", zone: edge.example., ttl: 60}\n"
        "  - {type: hosts, path: /run/gatehouse/hosts}\n", &cfg, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc)
        fprintf(stderr, "%s\n", err);
    CHECK_STR(cfg.node_name, "edge-1");
    CHECK_STR(cfg.node_address, "192.0.2.10");
    CHECK_STR(cfg.proxy_http, "0.0.0.0:80");
    CHECK_STR(cfg.proxy_https, "[::]:443");
    CHECK_STR(cfg.proxy_admin, "127.0.0.1:9902");
    CHECK_INT(cfg.proxy_workers, 4);
    CHECK_INT(cfg.proxy_access_log, 0);
    CHECK_STR(cfg.proxy_user, "gatehouse");
    CHECK_STR(cfg.proxy_routes, "/data/routes.yaml");   /* explicit routes beats stateDir */
    CHECK_INT(cfg.proxy_max_header_bytes, 32768);
    CHECK_INT(cfg.proxy_max_body_bytes, 0);
    CHECK_STR(cfg.kube_kubeconfig, "/var/lib/gatehouse/kubeconfig");
    CHECK_STR(cfg.kube_namespace, "prod");
    CHECK_STR(cfg.kube_manifests, "");
    CHECK_STR(cfg.ingress_class_name, "edge");
    CHECK_STR(cfg.ingress_controller, "example.com/edge");
    CHECK_INT(cfg.ingress_publish_status, 0);
    CHECK_INT(cfg.ingress_watch_without_class, 1);
    CHECK_STR(cfg.agent_state_dir, "/data");

    /* stateDir alone moves the routes file with it */
    CHECK_INT(load("agent: {stateDir: /srv/gh}\n", &cfg, err, sizeof err), 0);
    CHECK_STR(cfg.proxy_routes, "/srv/gh/routes.yaml");

    /* loading over values already set (flags are applied after, callers may load twice) */
    CHECK_INT(load("proxy: {workers: 2}\n", &cfg, err, sizeof err), 0);
    write_config("node: {name: edge-2}\n");
    CHECK_INT(node_config_load(&cfg, path, 0, err, sizeof err), 0);
    CHECK_INT(cfg.proxy_workers, 2);
    CHECK_STR(cfg.node_name, "edge-2");

    /* null leaves the default; empty sections are fine */
    CHECK_INT(load("proxy:\n  user:\n  workers: ~\nkubernetes:\n", &cfg, err, sizeof err), 0);
    CHECK_STR(cfg.proxy_user, "");
    CHECK_INT(cfg.proxy_workers, 0);

    /* unknown keys and sections are warnings (on stderr), not errors */
    char log_path[] = "/tmp/test_node_config_log_XXXXXX";
    int log_fd = mkstemp(log_path), saved_stderr = dup(2);
    dup2(log_fd, 2);
    CHECK_INT(load("proxy: {workerz: 3, workers: 3}\nfuture: {x: 1}\ndns: []\n", &cfg, err, sizeof err), 0);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    char logged[1024] = "";
    ssize_t n = pread(log_fd, logged, sizeof logged - 1, 0);
    logged[n > 0 ? n : 0] = '\0';
    close(log_fd);
    unlink(log_path);
    CHECK_INT(cfg.proxy_workers, 3);
    CHECK(strstr(logged, "warning: ") != NULL);
    CHECK(strstr(logged, "unknown key proxy.workerz (ignored)") != NULL);
    CHECK(strstr(logged, "unknown section future (ignored)") != NULL);
    CHECK(strstr(logged, "dns") == NULL);   /* read by the DNS sinks, not unknown */
}

static void test_durations(void)
{
    static const struct { const char *text; long long ms; } ok[] = {
        { "5000", 5000 }, { "\"5s\"", 5000 }, { "500ms", 500 }, { "1m", 60000 }, { "1h", 3600000 },
        { "1m30s", 90000 }, { "1.5s", 1500 }, { "0", 0 }, { "\"0\"", 0 }, { "2h1m1s1ms", 7261001 },
    };
    struct node_config cfg;
    char err[512], text[256];
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        snprintf(text, sizeof text, "proxy:\n  drainTimeout: %s\n", ok[i].text);
        CHECK_INT(load(text, &cfg, err, sizeof err), 0);
        CHECK_INT(cfg.proxy_drain_timeout_ms, ok[i].ms);
    }
    CHECK_INT(load("proxy: {clientHeaderTimeout: 10s, clientIdleTimeout: 2m, upstreamConnectTimeout: 250ms,"
                   " upstreamReadTimeout: 90s, upstreamSendTimeout: 30000, endpointDownTime: 0}\n",
                   &cfg, err, sizeof err), 0);
    CHECK_INT(cfg.proxy_client_header_timeout_ms, 10000);
    CHECK_INT(cfg.proxy_client_idle_timeout_ms, 120000);
    CHECK_INT(cfg.proxy_upstream_connect_timeout_ms, 250);
    CHECK_INT(cfg.proxy_upstream_read_timeout_ms, 90000);
    CHECK_INT(cfg.proxy_upstream_send_timeout_ms, 30000);
    CHECK_INT(cfg.proxy_endpoint_down_ms, 0);

    static const char *const bad[] = { "5", "\"5\"", "5 s", "-1s", "-5", "5d", "s", "1.5", "true",
                                       "[5s]", "\"\"", "30000000000", "1000h" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(text, sizeof text, "proxy:\n  drainTimeout: %s\n", bad[i]);
        if (strcmp(bad[i], "5") == 0)   /* a bare integer is milliseconds: fine */
            continue;
        CHECK_INT(load(text, &cfg, err, sizeof err), -1);
        CHECK(strstr(err, ":2: proxy.drainTimeout: ") != NULL);
        CHECK_INT(cfg.proxy_drain_timeout_ms, 10000);   /* unchanged on error */
    }
    CHECK_INT(load("proxy: {upstreamReadTimeout: 0}\n", &cfg, err, sizeof err), -1);
    CHECK(strstr(err, "proxy.upstreamReadTimeout: a timeout must be longer than 0") != NULL);
}

static void test_sizes(void)
{
    static const struct { const char *text; long long bytes; } ok[] = {
        { "8192", 8192 }, { "16Ki", 16384 }, { "1Mi", 1048576 }, { "2Gi", 2147483648LL },
        { "64k", 64000 }, { "1M", 1000000 }, { "\"100\"", 100 },
    };
    struct node_config cfg;
    char err[512], text[256];
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        snprintf(text, sizeof text, "proxy: {maxBodyBytes: %s}\n", ok[i].text);
        CHECK_INT(load(text, &cfg, err, sizeof err), 0);
        CHECK_INT(cfg.proxy_max_body_bytes, ok[i].bytes);
    }
    static const char *const bad[] = { "-1", "1KB", "Ki", "1.5Mi", "true", "1 Mi" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(text, sizeof text, "proxy: {maxBodyBytes: %s}\n", bad[i]);
        CHECK_INT(load(text, &cfg, err, sizeof err), -1);
        CHECK(strstr(err, "proxy.maxBodyBytes: ") != NULL);
    }
}

static void expect_error(const char *text, const char *fragment)
{
    struct node_config cfg;
    char err[512];
    int rc = load(text, &cfg, err, sizeof err);
    CHECK_INT(rc, -1);
    if (!strstr(err, fragment))
        fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, fragment);
    CHECK(strstr(err, fragment) != NULL);
    CHECK(strncmp(err, path, strlen(path)) == 0);   /* names the file */
}

static void test_errors(void)
{
    expect_error("node: {name: a}\nproxy:\n  http: \"0.0.0.0:80\"\n  workers: many\n",
                 ":4: proxy.workers: expected an integer");
    expect_error("proxy:\n  workers: -1\n", ":2: proxy.workers: expected an integer in 0..4096");
    expect_error("proxy: {workers: 1.5}\n", ":1: proxy.workers: expected an integer");
    expect_error("proxy: {accessLog: 1}\n", "proxy.accessLog: expected true or false");
    expect_error("proxy: {accessLog: \"true\"}\n", "proxy.accessLog: expected true or false");
    expect_error("ingress:\n  publishStatus: maybe\n", ":2: ingress.publishStatus: expected true or false");
    expect_error("node: {name: [a]}\n", "node.name: expected a string");
    expect_error("node: {address: edge.example.com}\n", "node.address: expected an IPv4 or IPv6 address");
    expect_error("proxy: {http: 80}\n", "proxy.http: expected a string");
    expect_error("proxy: {http: \"0.0.0.0\"}\n", "proxy.http: expected ADDR:PORT");
    expect_error("proxy: {admin: \"127.0.0.1:99999\"}\n", "proxy.admin: expected ADDR:PORT with a port");
    expect_error("proxy: {https: \"::1:443\"}\n", "proxy.https:");
    expect_error("proxy: [1, 2]\n", ":1: proxy: expected a mapping");
    expect_error("a: 1\nkubernetes: yes\n", ":2: kubernetes: expected a mapping");
    expect_error("node:\n  name: a\n  name: b\n", ":3:");   /* duplicate key, from the parser */
    expect_error("proxy: {workers: 1\n", "did not find expected");
    expect_error("- 1\n", "the node config must be a mapping");
    expect_error("a: 1\n---\nb: 2\n", "expected one");
    char long_name[600];
    snprintf(long_name, sizeof long_name, "node: {name: %0300d}\n", 1);
    memset(long_name + 13, 'a', 300);
    expect_error(long_name, "node.name: is too long");
    /* the key is found for the line even when the same name appears elsewhere first */
    expect_error("node: {name: workers}\nagent: {workers: 1}\nproxy:\n  user: x\n  workers: lots\n",
                 ":5: proxy.workers");
}

/* upgrade: the defaults a node upgrades with, and a config that changes them. */
static void test_upgrade_section(void)
{
    struct node_config cfg;
    char err[512];
    CHECK_INT(load("node: {name: a}\n", &cfg, err, sizeof err), 0);
    CHECK_STR(cfg.upgrade_image, "");
    CHECK_STR(cfg.upgrade_trusted_keys, "/etc/gatehouse/trusted-keys");
    CHECK_STR(cfg.upgrade_esp, "/boot/efi");
    CHECK_INT(cfg.upgrade_tries, 3);
    CHECK_INT(cfg.upgrade_health_timeout_ms, 180000);
    CHECK_INT(cfg.upgrade_check_interval_ms, 300000);
    CHECK_INT(cfg.upgrade_reboot, 1);
    CHECK_INT(cfg.upgrade_plain_http, 0);
    CHECK_INT(load("upgrade:\n  image: reg.example:5000/gatehouse:stable\n  tries: 2\n"
                   "  healthTimeout: 30s\n  checkInterval: 1m\n  plainHttp: true\n"
                   "  reboot: false\n  trustedKeys: /k.pem\n", &cfg, err, sizeof err), 0);
    CHECK_STR(cfg.upgrade_image, "reg.example:5000/gatehouse:stable");
    CHECK_INT(cfg.upgrade_tries, 2);
    CHECK_INT(cfg.upgrade_health_timeout_ms, 30000);
    CHECK_INT(cfg.upgrade_check_interval_ms, 60000);
    CHECK_INT(cfg.upgrade_plain_http, 1);
    CHECK_INT(cfg.upgrade_reboot, 0);
    CHECK_STR(cfg.upgrade_trusted_keys, "/k.pem");
    expect_error("upgrade:\n  tries: many\n", ":2: upgrade.tries: expected an integer");
    expect_error("upgrade: {plainHttp: 1}\n", "upgrade.plainHttp: expected true or false");
}

int main(void)
{
    int fd = mkstemp(path);
    if (fd < 0)
        return 1;
    close(fd);
    test_defaults();
    test_overrides();
    test_durations();
    test_sizes();
    test_errors();
    test_upgrade_section();
    unlink(path);
    return check_summary("test_node_config");
}
