/*
 * test_cloud_config.c - NoCloud user-data as the appliance reads it: the gatehouse: key round
 * trip, write_files (allow-list, base64, permissions), host names, the network schema and its
 * env file, errors with line/column, the last-good choice, the file writer, and the kernel
 * command line.
 */
#include "check.h"
#include "temp_dir.h"
#include "cloud_config.h"
#include "yaml_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static enum cc_status parse(const char *text, struct cc_plan *plan, char *msg, size_t msglen)
{
    msg[0] = '\0';
    return cloud_config_parse(text, strlen(text), plan, msg, msglen);
}

static const struct cc_file *find_file(const struct cc_plan *plan, const char *path)
{
    for (size_t i = 0; i < plan->nfiles; i++)
        if (strcmp(plan->files[i].path, path) == 0)
            return &plan->files[i];
    return NULL;
}

/* Parses text expecting CC_INVALID and a message containing want. */
static void expect_invalid(const char *text, const char *want)
{
    struct cc_plan plan;
    char msg[512];
    CHECK_INT(parse(text, &plan, msg, sizeof msg), CC_INVALID);
    if (!strstr(msg, want))
        fprintf(stderr, "message was: %s\n", msg);
    CHECK(strstr(msg, want) != NULL);
    CHECK_INT(plan.nfiles, 0);              /* nothing half-applied */
    CHECK_STR(plan.hostname, "");
    cloud_config_plan_free(&plan);
}

static void test_gatehouse_round_trip(void)
{
    const char *text =
        "#cloud-config\n"
        "gatehouse:\n"
        "  node: {name: edge-1, address: 192.0.2.10}\n"
        "  proxy: {http: \"0.0.0.0:80\", admin: \"127.0.0.1:9901\", workers: 0, accessLog: false}\n"
        "  kubernetes: {manifests: /var/lib/gatehouse/manifests}\n"
        "  dns:\n"
        "    - {type: hosts, path: /run/gatehouse/hosts}\n"
        "    - {type: rfc2136, server: \"192.0.2.53:53\", zone: edge.example., ttl: 60,\n"
        "       tsig: {name: gh, algorithm: hmac-sha256, secret: \"c2VjcmV0\"}}\n";
    struct cc_plan plan;
    char msg[512];
    CHECK_INT(parse(text, &plan, msg, sizeof msg), CC_OK);
    const struct cc_file *f = find_file(&plan, "/etc/gatehouse/config.yaml");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK_INT(f->mode, 0600);
    struct yaml_error err;
    json_t *written = yaml_parse_stream((const char *)f->data, f->len, &err);
    json_t *input = yaml_parse_stream(text, strlen(text), &err);
    CHECK(written && input);
    if (written && input)
        CHECK(json_equal(json_array_get(written, 0), json_object_get(json_array_get(input, 0), "gatehouse")));
    json_decref(written);
    json_decref(input);
    CHECK_INT(plan.net.mode, CC_NET_DHCP);      /* no network: key = DHCP */
    cloud_config_plan_free(&plan);

    expect_invalid("#cloud-config\ngatehouse: [a, b]\n", "gatehouse: expected a mapping");
}

static void test_write_files(void)
{
    const char *text =
        "#cloud-config\n"
        "write_files:\n"
        "  - path: /etc/gatehouse/kubeconfig\n"
        "    content: |\n"
        "      apiVersion: v1\n"
        "    permissions: '0600'\n"
        "    owner: root:root\n"
        "  - path: /var/lib/gatehouse/tls/key.bin\n"
        "    encoding: b64\n"
        "    content: AAEC/w==\n"
        "  - path: /etc/hosts\n"
        "    content: \"192.0.2.1 gw\\n\"\n"
        "    permissions: 0640\n"           /* unquoted octal integer */
        "  - path: /var/lib/gatehouse/manifests/demo.yaml\n"
        "    encoding: base64\n"
        "    content: |\n"
        "      a2luZDog\n"
        "      TGlzdA\n";                   /* line-wrapped, unpadded */
    struct cc_plan plan;
    char msg[512];
    CHECK_INT(parse(text, &plan, msg, sizeof msg), CC_OK);
    CHECK_INT(plan.nfiles, 4);
    const struct cc_file *f = find_file(&plan, "/etc/gatehouse/kubeconfig");
    CHECK(f && f->len == 15 && memcmp(f->data, "apiVersion: v1\n", 15) == 0 && f->mode == 0600);
    f = find_file(&plan, "/var/lib/gatehouse/tls/key.bin");
    CHECK(f && f->len == 4 && memcmp(f->data, "\x00\x01\x02\xff", 4) == 0 && f->mode == 0644);
    f = find_file(&plan, "/etc/hosts");
    CHECK(f && f->mode == 0640);
    f = find_file(&plan, "/var/lib/gatehouse/manifests/demo.yaml");
    CHECK(f && f->len == 10 && memcmp(f->data, "kind: List", 10) == 0);
    cloud_config_plan_free(&plan);

    /* the allow-list */
    CHECK(cloud_config_path_allowed("/etc/gatehouse/config.yaml"));
    CHECK(cloud_config_path_allowed("/etc/gatehouse/a/b"));
    CHECK(cloud_config_path_allowed("/var/lib/gatehouse/routes.yaml"));
    CHECK(cloud_config_path_allowed("/etc/hosts"));
    CHECK(!cloud_config_path_allowed("/etc/passwd"));
    CHECK(!cloud_config_path_allowed("/etc/s6/services/proxy/run"));
    CHECK(!cloud_config_path_allowed("/bin/sh"));
    CHECK(!cloud_config_path_allowed("/etc/gatehouse"));
    CHECK(!cloud_config_path_allowed("/etc/gatehouse/"));
    CHECK(!cloud_config_path_allowed("/etc/gatehousex/f"));
    CHECK(!cloud_config_path_allowed("/etc/gatehouse/../passwd"));
    CHECK(!cloud_config_path_allowed("/etc/gatehouse/./f"));
    CHECK(!cloud_config_path_allowed("/etc/gatehouse//f"));
    CHECK(!cloud_config_path_allowed("/etc/gatehouse/.."));
    CHECK(!cloud_config_path_allowed("etc/gatehouse/f"));
    CHECK(!cloud_config_path_allowed("/etc/gatehouse/a\nb"));
    CHECK(!cloud_config_path_allowed("/var/lib/gatehouse/cloud-config/last-good.yaml"));
    CHECK(!cloud_config_path_allowed("/var/lib/gatehouse/cloud-config"));
    CHECK(!cloud_config_path_allowed("/etc/hosts.allow"));

    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/passwd, content: x}\n",
                   "write_files[0].path: \"/etc/passwd\" is not allowed");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts}\n  - {path: /usr/bin/x}\n",
                   "write_files[1].path");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts, encoding: gzip, content: x}\n",
                   "gzip is refused");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts, encoding: gz+b64, content: x}\n",
                   "gzip is refused");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts, encoding: b64, content: \"a$b=\"}\n",
                   "write_files[0].content: not valid base64");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts, encoding: b64, content: \"QQ==QQ==\"}\n",
                   "not valid base64");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts, permissions: '4755'}\n",
                   "setuid");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts, permissions: 644}\n",
                   "write '0644'");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts, permissions: rw-r--r--}\n",
                   "not an octal mode");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts, owner: www-data}\n",
                   "only root");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts, append: true}\n",
                   "write_files[0].append: not supported");
    expect_invalid("#cloud-config\nwrite_files:\n  - {path: /etc/hosts}\n  - {path: /etc/hosts}\n",
                   "written twice");
    expect_invalid("#cloud-config\ngatehouse: {node: {name: a}}\n"
                   "write_files:\n  - {path: /etc/gatehouse/config.yaml}\n",
                   "the gatehouse: key writes it");
    expect_invalid("#cloud-config\nwrite_files: {path: /etc/hosts}\n", "write_files: expected a list");
}

static void test_hostname(void)
{
    CHECK(cloud_config_hostname_ok("edge-1"));
    CHECK(cloud_config_hostname_ok("1edge"));               /* RFC 1123 allows a leading digit */
    CHECK(cloud_config_hostname_ok("edge-1.example.com"));
    CHECK(cloud_config_hostname_ok("EDGE"));
    CHECK(!cloud_config_hostname_ok(""));
    CHECK(!cloud_config_hostname_ok("-edge"));
    CHECK(!cloud_config_hostname_ok("edge-"));
    CHECK(!cloud_config_hostname_ok("edge_1"));
    CHECK(!cloud_config_hostname_ok("edge..example"));
    CHECK(!cloud_config_hostname_ok("edge."));
    CHECK(!cloud_config_hostname_ok("ed ge"));
    char label64[65];
    memset(label64, 'a', 64);
    label64[64] = '\0';
    CHECK(!cloud_config_hostname_ok(label64));              /* a label is at most 63 */
    label64[63] = '\0';
    CHECK(cloud_config_hostname_ok(label64));
    char long_name[80];
    snprintf(long_name, sizeof long_name, "%.40s.%.30s", label64, label64);
    CHECK(!cloud_config_hostname_ok(long_name));            /* 71 > HOST_NAME_MAX */

    struct cc_plan plan;
    char msg[512];
    CHECK_INT(parse("#cloud-config\nhostname: edge-7\n", &plan, msg, sizeof msg), CC_OK);
    CHECK_STR(plan.hostname, "edge-7");
    cloud_config_plan_free(&plan);
    char name[CC_HOSTNAME_MAX + 1] = "";
    const char *meta = "instance-id: i-1\nlocal-hostname: edge-9\n";
    CHECK_INT(cloud_config_meta_hostname(meta, strlen(meta), name), 1);
    CHECK_STR(name, "edge-9");
    meta = "{\"instance-id\": \"i-1\", \"local-hostname\": \"bad_name\"}";
    CHECK_INT(cloud_config_meta_hostname(meta, strlen(meta), name), 0);
    meta = "instance-id: [\n";
    CHECK_INT(cloud_config_meta_hostname(meta, strlen(meta), name), 0);
    CHECK_INT(cloud_config_meta_hostname("", 0, name), 0);
    expect_invalid("#cloud-config\nhostname: edge_7\n", "hostname: expected an RFC 1123 host name");
    expect_invalid("#cloud-config\nhostname: 12\n", "hostname:");
}

static void test_network(void)
{
    struct cc_plan plan;
    char msg[512];
    CHECK_INT(parse("#cloud-config\n", &plan, msg, sizeof msg), CC_OK);
    char *env = cloud_config_network_env(&plan.net);
    CHECK_STR(env, "NET_MODE='dhcp'\nNET_INTERFACE=''\nNET_ADDRESS=''\nNET_GATEWAY=''\nNET_DNS=''\n");
    free(env);
    cloud_config_plan_free(&plan);

    CHECK_INT(parse("#cloud-config\nnetwork: {dhcp: true, interface: ens3}\n", &plan, msg, sizeof msg), CC_OK);
    CHECK_INT(plan.net.mode, CC_NET_DHCP);
    CHECK_STR(plan.net.interface, "ens3");
    cloud_config_plan_free(&plan);

    CHECK_INT(parse("#cloud-config\nnetwork:\n  interface: eth0\n  address: 192.0.2.10/24\n"
                    "  gateway: 192.0.2.1\n  dns: [192.0.2.53, \"2001:db8::53\"]\n", &plan, msg, sizeof msg), CC_OK);
    env = cloud_config_network_env(&plan.net);
    CHECK_STR(env, "NET_MODE='static'\nNET_INTERFACE='eth0'\nNET_ADDRESS='192.0.2.10/24'\n"
                   "NET_GATEWAY='192.0.2.1'\nNET_DNS='192.0.2.53 2001:db8::53'\n");
    free(env);
    cloud_config_plan_free(&plan);

    CHECK_INT(parse("#cloud-config\nnetwork: {address: \"2001:db8::10/64\", dns: 2001:db8::53}\n",
                    &plan, msg, sizeof msg), CC_OK);
    CHECK_INT(plan.net.mode, CC_NET_STATIC);
    CHECK_INT(plan.net.ndns, 1);
    cloud_config_plan_free(&plan);

    CHECK_INT(parse("#cloud-config\nnetwork: {dhcp: false}\n", &plan, msg, sizeof msg), CC_OK);
    CHECK_INT(plan.net.mode, CC_NET_NONE);
    cloud_config_plan_free(&plan);

    expect_invalid("#cloud-config\nnetwork: {address: 192.0.2.10}\n", "is not ADDRESS/PREFIX");
    expect_invalid("#cloud-config\nnetwork: {address: 192.0.2.10/33}\n", "is not ADDRESS/PREFIX");
    expect_invalid("#cloud-config\nnetwork: {address: 192.0.2.300/24}\n", "is not ADDRESS/PREFIX");
    expect_invalid("#cloud-config\nnetwork: {address: 192.0.2.10/}\n", "is not ADDRESS/PREFIX");
    expect_invalid("#cloud-config\nnetwork: {address: 192.0.2.10/24, gateway: \"2001:db8::1\"}\n",
                   "same family");
    expect_invalid("#cloud-config\nnetwork: {dhcp: true, address: 192.0.2.10/24}\n", "exclude each other");
    expect_invalid("#cloud-config\nnetwork: {gateway: 192.0.2.1}\n", "needs a static address");
    expect_invalid("#cloud-config\nnetwork: {interface: \"eth0; reboot\"}\n", "network.interface");
    expect_invalid("#cloud-config\nnetwork: {address: 192.0.2.10/24, dns: [a.example]}\n",
                   "\"a.example\" is not an IP address");
    expect_invalid("#cloud-config\nnetwork: {address: 192.0.2.10/24, dns: [1.1.1.1, 1.0.0.1, 8.8.8.8, 9.9.9.9]}\n",
                   "at most 3");
    expect_invalid("#cloud-config\nnetwork: {version: 2}\n", "network.version: not supported");
    expect_invalid("#cloud-config\nnetwork: dhcp\n", "network: expected a mapping");
}

static void test_errors(void)
{
    struct cc_plan plan;
    char msg[512];
    expect_invalid("#cloud-config\nhostname: a\nwrite_files:\n  - path: /etc/hosts\n   content: x\n",
                   "line 5, column");
    expect_invalid("#cloud-config\ngatehouse: {node: [}\n", "line 2, column");
    expect_invalid("#cloud-config\n- a\n- b\n", "the top level must be a mapping");
    expect_invalid("#cloud-config\na: 1\n---\nb: 2\n", "holds 2 YAML documents");

    CHECK_INT(parse("#!/bin/sh\necho hi\n", &plan, msg, sizeof msg), CC_IGNORED);
    CHECK(strstr(msg, "does not start with #cloud-config") != NULL);
    CHECK_INT(parse("", &plan, msg, sizeof msg), CC_IGNORED);
    CHECK(strstr(msg, "empty") != NULL);
    CHECK_INT(parse("#cloud-configuration\n", &plan, msg, sizeof msg), CC_IGNORED);
    CHECK_INT(parse("#cloud-config", &plan, msg, sizeof msg), CC_OK);
    /* keys of other cloud-init images are ignored with a warning, not refused */
    CHECK_INT(parse("#cloud-config\r\nusers: [default]\r\nruncmd: [[ls]]\r\nhostname: a\r\n", &plan, msg,
                    sizeof msg), CC_OK);
    CHECK_STR(plan.hostname, "a");
    cloud_config_plan_free(&plan);
}

static void test_choose(void)
{
    int store = -1;
    CHECK_INT(cloud_config_choose(CC_OK, 1, &store), CC_APPLY_CURRENT);
    CHECK_INT(store, 1);
    CHECK_INT(cloud_config_choose(CC_OK, 0, &store), CC_APPLY_CURRENT);
    CHECK_INT(store, 1);
    CHECK_INT(cloud_config_choose(CC_INVALID, 1, &store), CC_APPLY_LAST_GOOD);
    CHECK_INT(store, 0);
    CHECK_INT(cloud_config_choose(CC_INVALID, 0, &store), CC_APPLY_NOTHING);
    CHECK_INT(store, 0);
    CHECK_INT(cloud_config_choose(CC_ABSENT, 1, &store), CC_APPLY_LAST_GOOD);
    CHECK_INT(cloud_config_choose(CC_ABSENT, 0, &store), CC_APPLY_NOTHING);
    CHECK_INT(cloud_config_choose(CC_IGNORED, 1, &store), CC_APPLY_LAST_GOOD);
    CHECK_INT(store, 0);
    CHECK_STR(cloud_config_choice_name(CC_APPLY_LAST_GOOD), "last-good");
}

static void test_write_file(void)
{
    char root[] = "/tmp/test_cloud_config_XXXXXX", err[512], path[256], buf[64];
    CHECK(mkdtemp(root) != NULL);
    CHECK_INT(cloud_config_write_file(root, "/etc/gatehouse/sub/kubeconfig", (const unsigned char *)"abc", 3,
                                      0600, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/etc/gatehouse/sub/kubeconfig", root);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    CHECK_INT(st.st_size, 3);

    /* a symlink at the path is replaced, never written through */
    char target[300];
    snprintf(target, sizeof target, "%s/outside", root);
    FILE *f = fopen(target, "w");
    fputs("keep", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/etc/hosts", root);
    CHECK_INT(symlink(target, path), 0);
    CHECK_INT(cloud_config_write_file(root, "/etc/hosts", (const unsigned char *)"x\n", 2, 0644, err, sizeof err), 0);
    CHECK_INT(lstat(path, &st), 0);
    CHECK(S_ISREG(st.st_mode));
    f = fopen(target, "r");
    CHECK(fgets(buf, sizeof buf, f) && strcmp(buf, "keep") == 0);
    fclose(f);

    CHECK_INT(cloud_config_write_file("/nonexistent", "/etc/hosts", (const unsigned char *)"x", 1, 0644, err,
                                      sizeof err), -1);
    CHECK(strstr(err, "/nonexistent/etc: cannot create") != NULL);
    CHECK_INT(temp_dir_remove(root), 0);
}

static void test_cmdline(void)
{
    const char *cl = "console=ttyS0 root=/dev/vda gatehouse.debug_shell=1 quiet x=\"a b\" gatehouse.devwait=500\n";
    char v[32];
    CHECK(cmdline_flag(cl, "gatehouse.debug_shell"));
    CHECK(!cmdline_flag(cl, "gatehouse.debug"));            /* a prefix is not the key */
    CHECK(!cmdline_flag("gatehouse.debug_shell=0", "gatehouse.debug_shell"));
    CHECK(cmdline_flag("gatehouse.debug_shell", "gatehouse.debug_shell"));
    CHECK(!cmdline_flag("gatehouse.debug_shell=1 gatehouse.debug_shell=0", "gatehouse.debug_shell"));
    CHECK(!cmdline_flag("xgatehouse.debug_shell=1", "gatehouse.debug_shell"));
    CHECK(!cmdline_flag("", "gatehouse.debug_shell"));
    CHECK_INT(cmdline_get(cl, "x", v, sizeof v), 1);
    CHECK_STR(v, "a b");
    CHECK_INT(cmdline_get(cl, "gatehouse.devwait", v, sizeof v), 1);
    CHECK_STR(v, "500");
    CHECK_INT(cmdline_get(cl, "quiet", v, sizeof v), 1);
    CHECK_STR(v, "");
    CHECK_INT(cmdline_get(cl, "nothere", v, sizeof v), 0);
}

int main(void)
{
    test_gatehouse_round_trip();
    test_write_files();
    test_hostname();
    test_network();
    test_errors();
    test_choose();
    test_write_file();
    test_cmdline();
    return check_summary("test_cloud_config");
}
