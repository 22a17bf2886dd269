/*
 * test_kubeconfig.c - kubeconfig files and the in-cluster environment as the agent sees them:
 * the context chosen, files read relative to the kubeconfig, -data values decoded, servers
 * rewritten for IP addresses and tls-server-name, and errors that name the file and the item.
 */
#include "check.h"
#include "temp_dir.h"
#include "kubeconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[64];

static void write_file(const char *name, const char *content)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(content, f);
    fclose(f);
}

/* Writes a kubeconfig called "config" and loads it; err receives the reason on failure. */
static int load(const char *yaml, const char *context, struct kube_config *c, char *err, size_t errlen)
{
    char path[256];
    write_file("config", yaml);
    snprintf(path, sizeof path, "%s/config", tmp);
    err[0] = '\0';
    return kubeconfig_load(path, context, c, err, errlen);
}

static int has(const char *s, const char *part)
{
    if (!s || !strstr(s, part)) {
        fprintf(stderr, "  \"%s\" does not contain \"%s\"\n", s ? s : "(null)", part);
        return 0;
    }
    return 1;
}

/* A kubeconfig with one context "main" whose cluster has the given lines. */
static int load_cluster(const char *cluster_lines, struct kube_config *c, char *err, size_t errlen)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "apiVersion: v1\nkind: Config\ncurrent-context: main\n"
             "clusters:\n- name: c\n  cluster:\n%s"
             "contexts:\n- name: main\n  context: {cluster: c}\n", cluster_lines);
    return load(yaml, NULL, c, err, errlen);
}

static void test_all_fields(void)
{
    struct kube_config c;
    char err[512], want[256];
    write_file("ca.pem", "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n");
    write_file("client.crt", "CLIENT CERT\n");
    write_file("tok", "file-token\n");
    /* client-key-data: base64("KEY DATA\n") */
    int rc = load("apiVersion: v1\n"
                  "kind: Config\n"
                  "current-context: dev\n"
                  "clusters:\n"
                  "- name: other\n"
                  "  cluster: {server: 'https://other.example.com'}\n"
                  "- name: prod-cluster\n"
                  "  cluster:\n"
                  "    server: https://api.example.com:6443/prefix/\n"
                  "    certificate-authority: ca.pem\n"
                  "users:\n"
                  "- name: admin\n"
                  "  user:\n"
                  "    client-certificate: client.crt\n"
                  "    client-key-data: S0VZIERBVEEK\n"
                  "    token: static-token\n"
                  "    tokenFile: tok\n"
                  "contexts:\n"
                  "- name: dev\n"
                  "  context: {cluster: prod-cluster, user: admin, namespace: team-a}\n",
                  NULL, &c, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    CHECK_STR(c.url, "https://api.example.com:6443/prefix");
    CHECK(c.resolve == NULL);
    CHECK_STR(c.server, "https://api.example.com:6443/prefix/");
    CHECK(has(c.ca_pem, "BEGIN CERTIFICATE"));
    CHECK_INT(c.ca_len, strlen("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"));
    CHECK_STR(c.client_cert_pem, "CLIENT CERT\n");
    CHECK_INT(c.client_cert_len, 12);
    CHECK_INT(c.client_key_len, 9);
    CHECK(c.client_key_pem && memcmp(c.client_key_pem, "KEY DATA\n", 9) == 0);
    CHECK_STR(c.token, "static-token");
    snprintf(want, sizeof want, "%s/tok", tmp);
    CHECK_STR(c.token_file, want);
    CHECK_STR(c.ns, "team-a");
    CHECK_INT(c.insecure, 0);
    CHECK(c.exec == NULL);
    snprintf(want, sizeof want, "kubeconfig %s/config (context dev)", tmp);
    CHECK_STR(c.origin, want);
    kube_config_free(&c);
    CHECK(c.url == NULL && c.token == NULL);
    kube_config_free(&c);   /* a freed (zeroed) struct may be freed again */
}

static void test_named_context_and_data(void)
{
    struct kube_config c;
    char err[512];
    /* base64("CA-DATA\n"); the -data value wins over a file that does not even exist */
    int rc = load("current-context: a\n"
                  "clusters:\n"
                  "- name: ca\n"
                  "  cluster: {server: 'https://a.example.com'}\n"
                  "- name: cb\n"
                  "  cluster:\n"
                  "    server: https://b.example.com:8443\n"
                  "    certificate-authority: /nonexistent/ca.pem\n"
                  "    certificate-authority-data: |\n"
                  "      Q0EtREFU\n"
                  "      QQo=\n"
                  "    insecure-skip-tls-verify: true\n"
                  "contexts:\n"
                  "- name: a\n"
                  "  context: {cluster: ca}\n"
                  "- name: b\n"
                  "  context: {cluster: cb}\n",
                  "b", &c, err, sizeof err);
    CHECK_INT(rc, 0);
    CHECK_STR(c.url, "https://b.example.com:8443");
    CHECK_INT(c.ca_len, 8);
    CHECK(c.ca_pem && memcmp(c.ca_pem, "CA-DATA\n", 8) == 0);
    CHECK_INT(c.insecure, 1);
    CHECK(c.ns == NULL && c.token == NULL && c.client_cert_pem == NULL);
    CHECK(has(c.origin, "(context b)"));
    kube_config_free(&c);
}

static void test_exec_user(void)
{
    struct kube_config c;
    char err[512], want[256];
    int rc = load("current-context: x\n"
                  "clusters: [{name: c, cluster: {server: 'https://k.example.com'}}]\n"
                  "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                  "users:\n"
                  "- name: u\n"
                  "  user:\n"
                  "    exec:\n"
                  "      apiVersion: client.authentication.k8s.io/v1beta1\n"
                  "      command: ./bin/plugin\n"
                  "      args: [token, --cluster, prod]\n"
                  "      env:\n"
                  "      - {name: AWS_PROFILE, value: prod}\n"
                  "      - {name: EMPTY, value: ''}\n"
                  "      interactiveMode: Never\n",
                  NULL, &c, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    CHECK(c.exec != NULL);
    if (c.exec) {
        CHECK_STR(c.exec->api_version, "client.authentication.k8s.io/v1beta1");
        snprintf(want, sizeof want, "%s/./bin/plugin", tmp);
        CHECK_STR(c.exec->argv[0], want);
        CHECK_STR(c.exec->argv[1], "token");
        CHECK_STR(c.exec->argv[3], "prod");
        CHECK(c.exec->argv[4] == NULL);
        CHECK_STR(c.exec->env[0], "AWS_PROFILE=prod");
        CHECK_STR(c.exec->env[1], "EMPTY=");
        CHECK(c.exec->env[2] == NULL);
    }
    kube_config_free(&c);

    rc = load("current-context: x\n"
              "clusters: [{name: c, cluster: {server: 'https://k.example.com'}}]\n"
              "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
              "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}}}]\n",
              NULL, &c, err, sizeof err);
    CHECK_INT(rc, 0);
    CHECK(c.exec && strcmp(c.exec->argv[0], "aws") == 0 && c.exec->argv[1] == NULL && c.exec->env[0] == NULL);
    kube_config_free(&c);

    rc = load("current-context: x\n"
              "clusters: [{name: c, cluster: {server: 'https://k.example.com'}}]\n"
              "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
              "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: aws}}}]\n",
              NULL, &c, err, sizeof err);
    CHECK_INT(rc, -1);
    CHECK(has(err, "user \"u\": exec.apiVersion must be"));
}

static void expect_error(const char *yaml, const char *context, const char *part)
{
    struct kube_config c;
    char err[512], prefix[128];
    CHECK_INT(load(yaml, context, &c, err, sizeof err), -1);
    snprintf(prefix, sizeof prefix, "kubeconfig %s/config", tmp);
    CHECK(has(err, prefix));
    CHECK(has(err, part));
    CHECK(c.url == NULL && c.server == NULL && c.origin == NULL);   /* nothing left to free */
}

static void test_errors(void)
{
    const char *base = "clusters: [{name: c, cluster: {server: 'https://k.example.com'}}]\n"
                       "users: [{name: admin, user: {token: t}}]\n";
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "%scurrent-context: prod\ncontexts: [{name: dev, context: {cluster: c}}]\n", base);
    expect_error(yaml, NULL, "current-context \"prod\" is not in contexts");
    expect_error(yaml, "staging", "context \"staging\" is not in contexts");
    snprintf(yaml, sizeof yaml, "%scontexts: [{name: dev, context: {cluster: c}}]\n", base);
    expect_error(yaml, NULL, "current-context is not set");
    snprintf(yaml, sizeof yaml, "%scurrent-context: dev\ncontexts: [{name: dev, context: {cluster: c, user: root}}]\n", base);
    expect_error(yaml, NULL, "context \"dev\" names user \"root\", which is not in users");
    snprintf(yaml, sizeof yaml, "%scurrent-context: dev\ncontexts: [{name: dev, context: {cluster: x, user: admin}}]\n", base);
    expect_error(yaml, NULL, "context \"dev\" names cluster \"x\", which is not in clusters");
    snprintf(yaml, sizeof yaml, "%scurrent-context: dev\ncontexts: [{name: dev, context: {user: admin}}]\n", base);
    expect_error(yaml, NULL, "context \"dev\" names no cluster");

    const char *ctx = "current-context: dev\ncontexts: [{name: dev, context: {cluster: c, user: admin}}]\n"
                      "clusters: [{name: c, cluster: {server: 'https://k.example.com'}}]\n";
    snprintf(yaml, sizeof yaml, "%susers: [{name: admin, user: {client-certificate-data: QUJD, client-key-data: 'not*base64'}}]\n", ctx);
    expect_error(yaml, NULL, "user \"admin\": client-key-data is not valid base64");
    snprintf(yaml, sizeof yaml, "%susers: [{name: admin, user: {client-certificate-data: QUJD, client-key-data: QUJ}}]\n", ctx);
    expect_error(yaml, NULL, "client-key-data is not valid base64");     /* missing padding */
    snprintf(yaml, sizeof yaml, "%susers: [{name: admin, user: {client-certificate-data: QUJD, client-key-data: 'QQ==QUJD'}}]\n", ctx);
    expect_error(yaml, NULL, "client-key-data is not valid base64");     /* data after padding */
    snprintf(yaml, sizeof yaml, "%susers: [{name: admin, user: {client-certificate-data: QUJD}}]\n", ctx);
    expect_error(yaml, NULL, "user \"admin\": client-certificate without client-key");
    snprintf(yaml, sizeof yaml, "%susers: [{name: admin, user: {client-key: missing.key, client-certificate-data: QUJD}}]\n", ctx);
    expect_error(yaml, NULL, "client-key ");
    expect_error(yaml, NULL, "/missing.key: No such file or directory");
    snprintf(yaml, sizeof yaml, "%susers: [{name: admin, user: {tokenFile: /nonexistent/token}}]\n", ctx);
    expect_error(yaml, NULL, "user \"admin\": tokenFile /nonexistent/token: No such file");
    snprintf(yaml, sizeof yaml, "%susers: [{name: admin, user: {token: 5}}]\n", ctx);
    expect_error(yaml, NULL, "user \"admin\": token must be a string, got integer");
    snprintf(yaml, sizeof yaml, "%susers: [{name: admin, user: {auth-provider: {name: gcp}}}]\n", ctx);
    expect_error(yaml, NULL, "auth-provider is not supported");
    snprintf(yaml, sizeof yaml, "%susers: [{name: admin, user: {exec: {apiVersion: client.authentication.k8s.io/v1, "
             "command: x, interactiveMode: Always}}}]\n", ctx);
    expect_error(yaml, NULL, "needs a terminal");

    expect_error("current-context: dev\nclusters: {}\ncontexts: [{name: dev, context: {cluster: c}}]\n",
                 NULL, "clusters must be a list, got object");
    expect_error("current-context: dev\ncontexts: [{name: dev, context: {cluster: c}}]\n"
                 "clusters: [{name: c, cluster: {certificate-authority: ca.pem}}]\n",
                 NULL, "cluster \"c\" has no server");
    expect_error("current-context: dev\ncontexts: [{name: dev, context: {cluster: c}}]\n"
                 "clusters: [{name: c, cluster: {server: 'https://k', certificate-authority: no-ca.pem}}]\n",
                 NULL, "cluster \"c\": certificate-authority ");
    expect_error("current-context: dev\ncontexts: [{name: dev, context: {cluster: c}}]\n"
                 "clusters: [{name: c, cluster: {server: 'https://k', insecure-skip-tls-verify: 'yes'}}]\n",
                 NULL, "insecure-skip-tls-verify must be a boolean, got string");
    expect_error("clusters: [\n", NULL, "config:");          /* YAML syntax: file:line:column */

    struct kube_config c;
    char err[512];
    CHECK_INT(kubeconfig_load("/nonexistent/kubeconfig", NULL, &c, err, sizeof err), -1);
    CHECK(has(err, "kubeconfig /nonexistent/kubeconfig"));
}

static void test_servers(void)
{
    struct kube_config c;
    char err[512];
    CHECK_INT(load_cluster("    server: https://k.example.com\n", &c, err, sizeof err), 0);
    CHECK_STR(c.url, "https://k.example.com:443");
    kube_config_free(&c);

    CHECK_INT(load_cluster("    server: https://10.0.0.1:6443/\n", &c, err, sizeof err), 0);
    CHECK_STR(c.url, "https://" KUBE_IP_SERVER_NAME ":6443");
    CHECK_STR(c.resolve, KUBE_IP_SERVER_NAME ":6443:10.0.0.1");
    CHECK_STR(c.server, "https://10.0.0.1:6443/");
    kube_config_free(&c);

    CHECK_INT(load_cluster("    server: https://192.168.1.5\n    tls-server-name: api.corp.example\n",
                           &c, err, sizeof err), 0);
    CHECK_STR(c.url, "https://api.corp.example:443");
    CHECK_STR(c.resolve, "api.corp.example:443:192.168.1.5");
    kube_config_free(&c);

    CHECK_INT(load_cluster("    server: 'https://[fd00::1]:6443/k8s'\n", &c, err, sizeof err), 0);
    CHECK_STR(c.url, "https://" KUBE_IP_SERVER_NAME ":6443/k8s");
    CHECK_STR(c.resolve, KUBE_IP_SERVER_NAME ":6443:[fd00::1]");
    kube_config_free(&c);

    /* a DNS host with a different tls-server-name: resolved once, at load time */
    CHECK_INT(load_cluster("    server: https://localhost:6443\n    tls-server-name: api.internal\n",
                           &c, err, sizeof err), 0);
    CHECK_STR(c.url, "https://api.internal:6443");
    CHECK(c.resolve && (strcmp(c.resolve, "api.internal:6443:127.0.0.1") == 0 ||
                        strcmp(c.resolve, "api.internal:6443:[::1]") == 0));
    kube_config_free(&c);

    CHECK_INT(load_cluster("    server: https://K.example.com\n    tls-server-name: k.example.com\n",
                           &c, err, sizeof err), 0);
    CHECK_STR(c.url, "https://K.example.com:443");
    CHECK(c.resolve == NULL);
    kube_config_free(&c);

    /* plain http (kubectl proxy, test clusters): no certificate, so the IP stays */
    CHECK_INT(load_cluster("    server: http://127.0.0.1:8001\n", &c, err, sizeof err), 0);
    CHECK_STR(c.url, "http://127.0.0.1:8001");
    CHECK(c.resolve == NULL);
    kube_config_free(&c);
    CHECK_INT(load_cluster("    server: 'http://[::1]'\n", &c, err, sizeof err), 0);
    CHECK_STR(c.url, "http://[::1]:80");
    kube_config_free(&c);

    static const struct { const char *server, *why; } bad[] = {
        {"ftp://k.example.com", "must start with https://"},
        {"k.example.com:6443", "must start with https://"},
        {"https://k.example.com:0", "invalid port"},
        {"https://k.example.com:65536", "invalid port"},
        {"https://k.example.com:6443x", "invalid port"},
        {"https://user@k.example.com", "user information"},
        {"https://k.example.com/?x=1", "query or fragment"},
        {"'https://[fd00::1'", "unclosed"},
        {"'https://[nonsense]'", "invalid IPv6"},
        {"https://", "no valid host"},
        {"https://bad!host", "invalid host name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char lines[256];
        snprintf(lines, sizeof lines, "    server: %s\n", bad[i].server);
        CHECK_INT(load_cluster(lines, &c, err, sizeof err), -1);
        CHECK(has(err, "cluster \"c\": server"));
        CHECK(has(err, bad[i].why));
    }
    CHECK_INT(load_cluster("    server: https://10.0.0.1\n    tls-server-name: 'a b'\n", &c, err, sizeof err), -1);
    CHECK(has(err, "tls-server-name \"a b\" is not a DNS name"));
}

/* ---- in-cluster ---- */

static void make_sa(const char *name, const char *token, const char *ca, const char *ns, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", tmp, name);
    mkdir(out, 0700);
    char file[300];
    if (token) {
        snprintf(file, sizeof file, "%s/token", name);
        write_file(file, token);
    }
    if (ca) {
        snprintf(file, sizeof file, "%s/ca.crt", name);
        write_file(file, ca);
    }
    if (ns) {
        snprintf(file, sizeof file, "%s/namespace", name);
        write_file(file, ns);
    }
}

static void test_incluster(void)
{
    struct kube_config c;
    char err[512], sa[256], want[300];
    make_sa("sa", "eyJtoken\n", "CA PEM\n", "gatehouse\n", sa, sizeof sa);

    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    CHECK_INT(kube_incluster_load(sa, &c, err, sizeof err), -1);
    CHECK(has(err, "not in a cluster: KUBERNETES_SERVICE_HOST is not set"));

    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    CHECK_INT(kube_incluster_load(sa, &c, err, sizeof err), 0);
    CHECK_STR(c.url, "https://" KUBE_IP_SERVER_NAME ":443");
    CHECK_STR(c.resolve, KUBE_IP_SERVER_NAME ":443:10.96.0.1");
    CHECK_STR(c.server, "https://10.96.0.1:443");
    snprintf(want, sizeof want, "%s/token", sa);
    CHECK_STR(c.token_file, want);
    CHECK(c.token == NULL);
    CHECK_STR(c.ca_pem, "CA PEM\n");
    CHECK_INT(c.ca_len, 7);
    CHECK_STR(c.ns, "gatehouse");
    CHECK_STR(c.origin, "in-cluster");
    kube_config_free(&c);

    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    CHECK_INT(kube_incluster_load(sa, &c, err, sizeof err), 0);
    CHECK_STR(c.url, "https://" KUBE_IP_SERVER_NAME ":6443");
    CHECK_STR(c.resolve, KUBE_IP_SERVER_NAME ":6443:[fd00:10:96::1]");
    kube_config_free(&c);

    setenv("KUBERNETES_SERVICE_PORT", "http", 1);
    CHECK_INT(kube_incluster_load(sa, &c, err, sizeof err), -1);
    CHECK(has(err, "invalid port"));
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);

    make_sa("sa-nons", "tok", "CA", NULL, sa, sizeof sa);
    CHECK_INT(kube_incluster_load(sa, &c, err, sizeof err), 0);
    CHECK(c.ns == NULL);
    kube_config_free(&c);

    make_sa("sa-noca", "tok", NULL, "ns", sa, sizeof sa);
    CHECK_INT(kube_incluster_load(sa, &c, err, sizeof err), -1);
    CHECK(has(err, "sa-noca/ca.crt: No such file or directory"));
    CHECK(c.url == NULL && c.token_file == NULL);

    make_sa("sa-notoken", NULL, "CA", "ns", sa, sizeof sa);
    CHECK_INT(kube_incluster_load(sa, &c, err, sizeof err), -1);
    CHECK(has(err, "sa-notoken/token: No such file or directory"));

    make_sa("sa-emptytoken", " \n", "CA", "ns", sa, sizeof sa);
    CHECK_INT(kube_incluster_load(sa, &c, err, sizeof err), -1);
    CHECK(has(err, "sa-emptytoken/token is empty"));

    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/test_kubeconfig.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 2;
    }
    test_all_fields();
    test_named_context_and_data();
    test_exec_user();
    test_errors();
    test_servers();
    test_incluster();
    temp_dir_remove(tmp);
    return check_summary("test_kubeconfig");
}
