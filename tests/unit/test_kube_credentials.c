/*
 * test_kube_credentials.c - the credential sent to the API server, kept current: token files
 * re-read after a minute or a 401, exec plugins (small /bin/sh scripts here) re-run after a 401
 * or near their expiry, and failures that keep the old credential and say what went wrong.
 */
#include "check.h"
#include "temp_dir.h"
#include "kube_credentials.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[64];

static void write_file(const char *name, const char *content, int mode)
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
    chmod(path, (mode_t)mode);
}

static int has(const char *s, const char *part)
{
    if (!s || !strstr(s, part)) {
        fprintf(stderr, "  \"%s\" does not contain \"%s\"\n", s ? s : "(null)", part);
        return 0;
    }
    return 1;
}

/* How often the counting plugins ran (each appends a line to TMP/runs). */
static int runs(void)
{
    char path[256], line[64];
    snprintf(path, sizeof path, "%s/runs", tmp);
    FILE *f = fopen(path, "r");
    int n = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        n++;
    fclose(f);
    return n;
}

static void reset_runs(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/runs", tmp);
    unlink(path);
}

static const int64_t T0 = 1900000000;   /* 2030-03-17T17:46:40Z */

static void test_static_token(void)
{
    struct kube_config cfg = {.token = "static"};
    struct kube_credentials *c = kube_credentials_new(&cfg);
    char err[256];
    size_t len = 99;
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), 0);
    CHECK_STR(kube_credentials_token(c), "static");
    CHECK(kube_credentials_client_cert(c, &len) == NULL);
    CHECK_INT(len, 0);
    kube_credentials_free(c);

    cfg = (struct kube_config){.client_cert_pem = "CERT", .client_cert_len = 4,
                               .client_key_pem = "KEY", .client_key_len = 3};
    c = kube_credentials_new(&cfg);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), 0);
    CHECK(kube_credentials_token(c) == NULL);
    CHECK_STR(kube_credentials_client_cert(c, &len), "CERT");
    CHECK_INT(len, 4);
    CHECK_STR(kube_credentials_client_key(c, &len), "KEY");
    CHECK_INT(len, 3);
    kube_credentials_free(c);
}

static void test_token_file(void)
{
    char path[256], err[256];
    snprintf(path, sizeof path, "%s/token", tmp);
    write_file("token", "  tok-1\n", 0600);
    struct kube_config cfg = {.token = "static", .token_file = path};
    struct kube_credentials *c = kube_credentials_new(&cfg);

    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), 0);
    CHECK_STR(kube_credentials_token(c), "tok-1");

    write_file("token", "tok-2", 0600);            /* rotated, but read less than a minute ago */
    CHECK_INT(kube_credentials_refresh(c, T0 + 30, err, sizeof err), 0);
    CHECK_STR(kube_credentials_token(c), "tok-1");
    kube_credentials_invalidate(c);               /* a 401: read it at once */
    CHECK_INT(kube_credentials_refresh(c, T0 + 30, err, sizeof err), 0);
    CHECK_STR(kube_credentials_token(c), "tok-2");

    write_file("token", "\ttok-3\r\n", 0600);
    CHECK_INT(kube_credentials_refresh(c, T0 + 89, err, sizeof err), 0);
    CHECK_STR(kube_credentials_token(c), "tok-2");
    CHECK_INT(kube_credentials_refresh(c, T0 + 91, err, sizeof err), 0);   /* a minute old */
    CHECK_STR(kube_credentials_token(c), "tok-3");

    write_file("token", " \n", 0600);
    kube_credentials_invalidate(c);
    CHECK_INT(kube_credentials_refresh(c, T0 + 92, err, sizeof err), -1);
    CHECK(has(err, "token file "));
    CHECK(has(err, "/token is empty"));
    CHECK_STR(kube_credentials_token(c), "tok-3");   /* the old one is kept */

    unlink(path);
    CHECK_INT(kube_credentials_refresh(c, T0 + 93, err, sizeof err), -1);   /* still due: retried */
    CHECK(has(err, "/token: No such file or directory"));
    CHECK_STR(kube_credentials_token(c), "tok-3");

    write_file("token", "tok-4", 0600);
    CHECK_INT(kube_credentials_refresh(c, T0 + 94, err, sizeof err), 0);
    CHECK_STR(kube_credentials_token(c), "tok-4");
    kube_credentials_free(c);
}

/* A plugin config running TMP/NAME with one argument and one extra env variable. */
struct plugin {
    struct kube_exec_plugin pl;
    struct kube_config cfg;
    char *argv[3];
    char *env[2];
    char cmd[256];
};

static void plugin_init(struct plugin *p, const char *name, const char *api)
{
    memset(p, 0, sizeof *p);
    snprintf(p->cmd, sizeof p->cmd, "%s/%s", tmp, name);
    p->argv[0] = p->cmd;
    p->argv[1] = "arg1";
    p->env[0] = "PLUGIN_VAR=from-kubeconfig";
    p->pl.api_version = (char *)(api ? api : "client.authentication.k8s.io/v1");
    p->pl.argv = p->argv;
    p->pl.env = p->env;
    p->cfg.exec = &p->pl;
}

/* Prints a token made of its argument, its env and its run count; checks KUBERNETES_EXEC_INFO.
 * Exits 1 while TMP/fail exists. */
static void write_token_plugin(void)
{
    char script[2048];
    snprintf(script, sizeof script,
             "#!/bin/sh\n"
             "echo run >> '%s/runs'\n"
             "[ -e '%s/fail' ] && exit 1\n"
             "case \"$KUBERNETES_EXEC_INFO\" in\n"
             "  *'\"apiVersion\":\"client.authentication.k8s.io/v1\"'*'\"interactive\":false'*) ;;\n"
             "  *) exit 7 ;;\n"
             "esac\n"
             "n=$(wc -l < '%s/runs' | tr -d ' ')\n"
             "exp=''\n"
             "[ -e '%s/expiry' ] && exp=\",\\\"expirationTimestamp\\\":\\\"$(cat '%s/expiry')\\\"\"\n"
             "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
             "\"status\":{\"token\":\"%%s-%%s-%%s\"%%s}}\\n' \"$1\" \"$PLUGIN_VAR\" \"$n\" \"$exp\"\n",
             tmp, tmp, tmp, tmp, tmp);
    write_file("token-plugin", script, 0755);
}

static void test_exec_token(void)
{
    struct plugin p;
    char err[512], path[256];
    write_token_plugin();
    reset_runs();
    plugin_init(&p, "token-plugin", NULL);
    struct kube_credentials *c = kube_credentials_new(&p.cfg);

    /* the kubeconfig's env and our KUBERNETES_EXEC_INFO replace what the agent inherited */
    setenv("PLUGIN_VAR", "from-environ", 1);
    setenv("KUBERNETES_EXEC_INFO", "stale", 1);
    CHECK(kube_credentials_token(c) == NULL);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), 0);
    CHECK_STR(kube_credentials_token(c), "arg1-from-kubeconfig-1");
    unsetenv("PLUGIN_VAR");
    unsetenv("KUBERNETES_EXEC_INFO");
    CHECK_INT(kube_credentials_refresh(c, T0 + 3600, err, sizeof err), 0);   /* no expiry: kept */
    CHECK_INT(runs(), 1);
    kube_credentials_invalidate(c);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), 0);
    CHECK_STR(kube_credentials_token(c), "arg1-from-kubeconfig-2");

    /* expiring at T0+120: kept until less than a minute is left */
    write_file("expiry", "2030-03-17T17:48:40Z", 0644);
    kube_credentials_invalidate(c);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), 0);
    CHECK_STR(kube_credentials_token(c), "arg1-from-kubeconfig-3");
    CHECK_INT(kube_credentials_refresh(c, T0 + 59, err, sizeof err), 0);
    CHECK_INT(runs(), 3);
    CHECK_INT(kube_credentials_refresh(c, T0 + 61, err, sizeof err), 0);
    CHECK_INT(runs(), 4);
    CHECK_STR(kube_credentials_token(c), "arg1-from-kubeconfig-4");
    /* the plugin hands out credentials already near expiry: each refresh runs it */
    CHECK_INT(kube_credentials_refresh(c, T0 + 62, err, sizeof err), 0);
    CHECK_INT(runs(), 5);
    snprintf(path, sizeof path, "%s/expiry", tmp);
    unlink(path);

    /* a failing run keeps the old credential and is retried on the next refresh */
    write_file("fail", "", 0644);
    kube_credentials_invalidate(c);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), -1);
    CHECK(has(err, "exec plugin \""));
    CHECK(has(err, "token-plugin\": exited with status 1"));
    CHECK_STR(kube_credentials_token(c), "arg1-from-kubeconfig-5");
    snprintf(path, sizeof path, "%s/fail", tmp);
    unlink(path);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), 0);
    CHECK_STR(kube_credentials_token(c), "arg1-from-kubeconfig-7");
    CHECK_INT(kube_credentials_cert_generation(c), 0);
    kube_credentials_free(c);
}

static void test_exec_cert(void)
{
    struct plugin p;
    char err[512];
    size_t len;
    write_file("cert-plugin", "#!/bin/sh\n"
               "printf '%s' '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\","
               "\"status\":{\"clientCertificateData\":\"-----BEGIN CERTIFICATE-----\\nX\\n\","
               "\"clientKeyData\":\"-----BEGIN PRIVATE KEY-----\\nY\\n\","
               "\"expirationTimestamp\":\"2030-03-17T18:46:40.5+00:00\"}}'\n", 0755);
    plugin_init(&p, "cert-plugin", "client.authentication.k8s.io/v1beta1");
    p.cfg.token = "static";
    struct kube_credentials *c = kube_credentials_new(&p.cfg);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), 0);
    CHECK_STR(kube_credentials_client_cert(c, &len), "-----BEGIN CERTIFICATE-----\nX\n");
    CHECK_INT(len, strlen("-----BEGIN CERTIFICATE-----\nX\n"));
    CHECK_STR(kube_credentials_client_key(c, &len), "-----BEGIN PRIVATE KEY-----\nY\n");
    CHECK_STR(kube_credentials_token(c), "static");
    CHECK_INT(kube_credentials_cert_generation(c), 1);
    kube_credentials_invalidate(c);                     /* the same certificate again */
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), 0);
    CHECK_INT(kube_credentials_cert_generation(c), 1);
    CHECK_INT(kube_credentials_refresh(c, T0 + 3550, err, sizeof err), 0);   /* 50 s before expiry */
    CHECK_INT(kube_credentials_cert_generation(c), 1);

    write_file("cert-plugin", "#!/bin/sh\n"
               "printf '%s' '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\","
               "\"status\":{\"clientCertificateData\":\"-----BEGIN CERTIFICATE-----\\nZ\\n\","
               "\"clientKeyData\":\"-----BEGIN PRIVATE KEY-----\\nY\\n\"}}'\n", 0755);
    kube_credentials_invalidate(c);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), 0);
    CHECK_INT(kube_credentials_cert_generation(c), 2);
    CHECK_STR(kube_credentials_client_cert(c, &len), "-----BEGIN CERTIFICATE-----\nZ\n");
    kube_credentials_free(c);
}

/* A plugin printing `output`; its refresh must fail with an error containing `part`. */
static void expect_plugin_error(const char *output, const char *part, const char *absent)
{
    struct plugin p;
    char err[512], script[1024];
    snprintf(script, sizeof script, "#!/bin/sh\ncat <<'EOF'\n%s\nEOF\n", output);
    write_file("bad-plugin", script, 0755);
    plugin_init(&p, "bad-plugin", NULL);
    struct kube_credentials *c = kube_credentials_new(&p.cfg);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), -1);
    CHECK(has(err, "bad-plugin\": "));
    CHECK(has(err, part));
    if (absent && strstr(err, absent)) {
        fprintf(stderr, "  \"%s\" must not contain \"%s\"\n", err, absent);
        CHECK(0);
    }
    CHECK(kube_credentials_token(c) == NULL);
    kube_credentials_free(c);
}

static void test_exec_bad_output(void)
{
    expect_plugin_error("here is your token: s3cr3t", "output is not an ExecCredential: line 1", "s3cr3t");
    expect_plugin_error("{\"token\": \"s3cr3t\"", "output is not an ExecCredential", "s3cr3t");
    expect_plugin_error("[]", "output is not an ExecCredential: a JSON object was expected, got array", NULL);
    expect_plugin_error("{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"Secret\",\"status\":{\"token\":\"t\"}}",
                        "kind is not ExecCredential", NULL);
    expect_plugin_error("{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t\"}}",
                        "output has apiVersion \"client.authentication.k8s.io/v1beta1\", want \"client.authentication.k8s.io/v1\"", NULL);
    expect_plugin_error("{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\"}",
                        "it has no status", NULL);
    expect_plugin_error("{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{}}",
                        "neither a token nor clientCertificateData", NULL);
    expect_plugin_error("{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":5}}",
                        "must be strings", NULL);
    expect_plugin_error("{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"clientKeyData\":\"k\"}}",
                        "status has clientKeyData without clientCertificateData", NULL);
    expect_plugin_error("{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
                        "\"status\":{\"token\":\"s3cr3t\",\"expirationTimestamp\":\"tomorrow\"}}",
                        "expirationTimestamp is not an RFC 3339 time", "s3cr3t");
}

static void test_exec_failures(void)
{
    struct plugin p;
    char err[512];

    plugin_init(&p, "no-such-plugin", NULL);
    struct kube_credentials *c = kube_credentials_new(&p.cfg);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), -1);
    CHECK(has(err, "no-such-plugin\": cannot run: No such file or directory"));
    kube_credentials_free(c);

    /* a plugin that hangs (and whose child would too) is killed at the limit and reaped */
    write_file("slow-plugin", "#!/bin/sh\nsleep 1000 &\nsleep 1000\n", 0755);
    plugin_init(&p, "slow-plugin", NULL);
    c = kube_credentials_new(&p.cfg);
    kube_credentials_set_exec_timeout(c, 1);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), -1);
    CHECK(has(err, "slow-plugin\": timed out after 1 s"));
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);   /* no zombie left */
    kube_credentials_free(c);

    write_file("chatty-plugin", "#!/bin/sh\nyes 0123456789abcdef0123456789abcdef\n", 0755);
    plugin_init(&p, "chatty-plugin", NULL);
    c = kube_credentials_new(&p.cfg);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), -1);
    CHECK(has(err, "chatty-plugin\": output is larger than 1048576 bytes"));
    kube_credentials_free(c);

    write_file("signal-plugin", "#!/bin/sh\nkill -TERM $$\n", 0755);
    plugin_init(&p, "signal-plugin", NULL);
    c = kube_credentials_new(&p.cfg);
    CHECK_INT(kube_credentials_refresh(c, T0, err, sizeof err), -1);
    CHECK(has(err, "signal-plugin\": was killed by signal 15"));
    kube_credentials_free(c);
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/test_kube_credentials.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 2;
    }
    test_static_token();
    test_token_file();
    test_exec_token();
    test_exec_cert();
    test_exec_bad_output();
    test_exec_failures();
    temp_dir_remove(tmp);
    return check_summary("test_kube_credentials");
}
