/*
 * test_oci_registry.c - oci_registry against a small registry running in threads of the test
 * (plain HTTP on 127.0.0.1): image references; manifests by tag and digest, a body that does not
 * hash to its digest, a 404; blobs with Range, resumed after a connection cut halfway, started
 * over by a registry that ignores Range, refused when the bytes do not match; already present
 * files; token auth (Basic at the token endpoint, then Bearer), wrong credentials, Basic auth;
 * and a redirect to "storage" on another port that must not receive the token.
 */
#include "check.h"
#include "loopback_server.h"
#include "oci_registry.h"
#include "temp_dir.h"

#include <arpa/inet.h>
#include <bearssl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the registry's content ---- */

#define BLOB_SIZE 300000
static unsigned char blob_big[BLOB_SIZE], blob_cut[BLOB_SIZE], blob_norange[BLOB_SIZE],
                     blob_other[BLOB_SIZE];
static char dig_big[80], dig_cut[80], dig_norange[80], dig_other[80], dig_manifest[80],
            dig_config[80], dig_wrong[80];
static const char manifest[] = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\"}";
static const char config[] = "{\"architecture\":\"amd64\"}";
static int port, storage_port;

static void digest_hex(const void *p, size_t n, char *out)
{
    br_sha256_context c;
    unsigned char h[32];
    br_sha256_init(&c);
    br_sha256_update(&c, p, n);
    br_sha256_out(&c, h);
    strcpy(out, "sha256:");
    for (int i = 0; i < 32; i++)
        sprintf(out + 7 + 2 * i, "%02x", h[i]);
}

static void make_content(void)
{
    uint32_t x = 12345;
    unsigned char *blobs[] = { blob_big, blob_cut, blob_norange, blob_other };
    for (int b = 0; b < 4; b++)
        for (size_t i = 0; i < BLOB_SIZE; i++) {
            x = x * 1103515245u + 12345u;
            blobs[b][i] = (unsigned char)(x >> 16);
        }
    digest_hex(blob_big, BLOB_SIZE, dig_big);
    digest_hex(blob_cut, BLOB_SIZE, dig_cut);
    digest_hex(blob_norange, BLOB_SIZE, dig_norange);
    digest_hex(blob_other, BLOB_SIZE, dig_other);
    digest_hex(manifest, strlen(manifest), dig_manifest);
    digest_hex(config, strlen(config), dig_config);
    digest_hex("something else", 14, dig_wrong);
}

/* ---- the server ---- */

struct req {
    char method[16], target[512], auth[256], accept[512], range[64];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char seen_accept[512], seen_range[64], seen_token_query[512], seen_storage_auth[256];
static int cut_requests, storage_requests;

static int send_all(int fd, const void *p, size_t len)
{
    const char *s = p;
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

static int reply(int fd, const char *status, const char *headers, const char *body)
{
    char head[1024];
    snprintf(head, sizeof head, "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\n\r\n", status, headers,
             strlen(body));
    return send_all(fd, head, strlen(head)) || send_all(fd, body, strlen(body)) ? -1 : 0;
}

static int read_request(int fd, struct req *r)
{
    char buf[8192];
    size_t len = 0;
    char *end;
    buf[0] = '\0';
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        if (len + 1 >= sizeof buf)
            return -1;
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
    }
    end[2] = '\0';
    memset(r, 0, sizeof *r);
    if (sscanf(buf, "%15s %511s", r->method, r->target) != 2)
        return -1;
    loopback_header_value(buf, "Authorization", r->auth, sizeof r->auth);
    loopback_header_value(buf, "Accept", r->accept, sizeof r->accept);
    loopback_header_value(buf, "Range", r->range, sizeof r->range);
    return 0;   /* GET only: no body follows */
}

/* Sends data, from the Range start when honour_range; stops halfway (and closes) when cut. */
static int serve_blob(int fd, const struct req *r, const void *data, size_t len,
                      int honour_range, int cut)
{
    unsigned long long from = 0;
    char head[512];
    if (honour_range && sscanf(r->range, "bytes=%llu-", &from) == 1) {
        if (from >= len)
            return reply(fd, "416 Range Not Satisfiable", "", "");
        snprintf(head, sizeof head, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes "
                 "%llu-%zu/%zu\r\nContent-Length: %zu\r\n\r\n", from, len - 1, len,
                 len - (size_t)from);
    } else {
        from = 0;
        snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", len);
    }
    size_t send_len = len - (size_t)from;
    if (cut)
        send_len /= 2;
    if (send_all(fd, head, strlen(head)) || send_all(fd, (const char *)data + from, send_len))
        return -1;
    return cut ? -1 : 0;
}

static const char *blob_digest(const char *target, const char *repo)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "/v2/%s/blobs/", repo);
    return strncmp(target, prefix, strlen(prefix)) == 0 ? target + strlen(prefix) : NULL;
}

static int manifest_reply(int fd, const char *body)
{
    return reply(fd, "200 OK", "Content-Type: " OCI_MT_MANIFEST "; charset=utf-8\r\n", body);
}

static int answer_team(int fd, const struct req *r)
{
    const char *t = r->target;
    pthread_mutex_lock(&lock);
    snprintf(seen_accept, sizeof seen_accept, "%s", r->accept);
    snprintf(seen_range, sizeof seen_range, "%s", r->range);
    pthread_mutex_unlock(&lock);
    if (strcmp(t, "/v2/team/app/manifests/v1") == 0 ||
        (strncmp(t, "/v2/team/app/manifests/", 23) == 0 && strcmp(t + 23, dig_manifest) == 0))
        return manifest_reply(fd, manifest);
    if (strncmp(t, "/v2/team/app/manifests/", 23) == 0 && strcmp(t + 23, dig_wrong) == 0)
        return manifest_reply(fd, manifest);   /* not what was asked for */
    const char *d = blob_digest(t, "team/app");
    if (d && strcmp(d, dig_big) == 0)
        return serve_blob(fd, r, blob_big, BLOB_SIZE, 1, 0);
    if (d && strcmp(d, dig_cut) == 0) {
        pthread_mutex_lock(&lock);
        int first = cut_requests++ == 0;
        pthread_mutex_unlock(&lock);
        return serve_blob(fd, r, blob_cut, BLOB_SIZE, 1, first);
    }
    if (d && strcmp(d, dig_norange) == 0)
        return serve_blob(fd, r, blob_norange, BLOB_SIZE, 0, 0);
    if (d && strcmp(d, dig_other) == 0)
        return serve_blob(fd, r, blob_big, BLOB_SIZE, 1, 0);   /* the wrong bytes */
    if (d && strcmp(d, dig_config) == 0)
        return reply(fd, "200 OK", "", config);
    return reply(fd, "404 Not Found", "Content-Type: application/json\r\n",
                 "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}");
}

static int answer_secure(int fd, const struct req *r)
{
    if (strcmp(r->auth, "Bearer good-token") != 0) {
        char h[512];
        snprintf(h, sizeof h, "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\","
                 "service=\"test registry\",scope=\"repository:secure/app:pull,push\"\r\n", port);
        return reply(fd, "401 Unauthorized", h,
                     "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}");
    }
    if (strcmp(r->target, "/v2/secure/app/manifests/v1") == 0)
        return manifest_reply(fd, manifest);
    const char *d = blob_digest(r->target, "secure/app");
    if (d && strcmp(d, dig_big) == 0) {
        char h[256];
        snprintf(h, sizeof h, "Location: http://127.0.0.1:%d/storage/big\r\n", storage_port);
        return reply(fd, "307 Temporary Redirect", h, "");
    }
    return reply(fd, "404 Not Found", "", "");
}

static int answer(int fd, const struct req *r)
{
    if (strncmp(r->target, "/v2/strict/app/blobs/", 21) == 0) {   /* 416 to any Range */
        if (r->range[0])
            return reply(fd, "416 Range Not Satisfiable", "Content-Range: bytes */1\r\n", "");
        return serve_blob(fd, r, blob_big, BLOB_SIZE, 0, 0);
    }
    if (strncmp(r->target, "/v2/team/", 9) == 0)
        return answer_team(fd, r);
    if (strncmp(r->target, "/v2/secure/", 11) == 0)
        return answer_secure(fd, r);
    if (strncmp(r->target, "/token", 6) == 0) {
        pthread_mutex_lock(&lock);
        snprintf(seen_token_query, sizeof seen_token_query, "%s", r->target);
        pthread_mutex_unlock(&lock);
        if (strcmp(r->auth, "Basic dXNlcjpwYXNz") == 0)              /* user:pass */
            return reply(fd, "200 OK", "", "{\"token\":\"good-token\",\"expires_in\":300}");
        if (strcmp(r->auth, "Basic b3RoZXI6cGFzcw==") == 0)          /* other:pass */
            return reply(fd, "200 OK", "", "{\"access_token\":\"useless-token\"}");
        return reply(fd, "401 Unauthorized", "", "{\"details\":\"incorrect username or password\"}");
    }
    if (strncmp(r->target, "/v2/basic/", 10) == 0) {
        if (strcmp(r->auth, "Basic dXNlcjpwYXNz") != 0)
            return reply(fd, "401 Unauthorized", "WWW-Authenticate: Basic realm=\"test\"\r\n", "");
        return manifest_reply(fd, manifest);
    }
    if (strcmp(r->target, "/storage/big") == 0) {
        pthread_mutex_lock(&lock);
        snprintf(seen_storage_auth, sizeof seen_storage_auth, "%s", r->auth);
        storage_requests++;
        pthread_mutex_unlock(&lock);
        return serve_blob(fd, r, blob_big, BLOB_SIZE, 1, 0);
    }
    return reply(fd, "404 Not Found", "", "");
}

static void *serve_connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct req r;
    while (read_request(fd, &r) == 0 && answer(fd, &r) == 0)
        ;
    close(fd);
    return NULL;
}

static int start_server(void)
{
    return loopback_server_start(serve_connection);
}

/* ---- helpers ---- */

static char tmp[256];

static struct oci_registry *open_repo(const char *repo, const char *user, const char *pass)
{
    char text[512], err[512] = "";
    struct oci_ref ref;
    snprintf(text, sizeof text, "127.0.0.1:%d/%s:v1", port, repo);
    if (oci_ref_parse(text, &ref, err, sizeof err) < 0) {
        fprintf(stderr, "parse %s: %s\n", text, err);
        exit(2);
    }
    struct oci_registry_options o = { .plain_http = 1, .username = user, .password = pass,
                                      .timeout_seconds = 30 };
    struct oci_registry *reg = oci_registry_open(&ref, &o, err, sizeof err);
    if (!reg) {
        fprintf(stderr, "open: %s\n", err);
        exit(2);
    }
    return reg;
}

static int file_equals(const char *path, const void *data, size_t len)
{
    static unsigned char buf[BLOB_SIZE + 1];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf && (n = read(fd, buf + got, sizeof buf - got)) > 0)
        got += (size_t)n;
    close(fd);
    return got == len && memcmp(buf, data, len) == 0;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len)
        exit(2);
    close(fd);
}

/* ---- tests ---- */

static void test_ref_parse(void)
{
    struct oci_ref r;
    char err[256];
    CHECK_INT(oci_ref_parse("registry.example.com:5000/team/app:v1.2", &r, err, sizeof err), 0);
    CHECK_STR(r.registry, "registry.example.com:5000");
    CHECK_STR(r.repository, "team/app");
    CHECK_STR(r.tag, "v1.2");
    CHECK_STR(r.digest, "");

    CHECK_INT(oci_ref_parse("localhost/app", &r, err, sizeof err), 0);
    CHECK_STR(r.registry, "localhost");
    CHECK_STR(r.repository, "app");
    CHECK_STR(r.tag, "latest");

    CHECK_INT(oci_ref_parse("ghcr.io/org/team/sub-app_x", &r, err, sizeof err), 0);
    CHECK_STR(r.repository, "org/team/sub-app_x");

    char text[256];
    snprintf(text, sizeof text, "ghcr.io/org/app@%s", dig_big);
    CHECK_INT(oci_ref_parse(text, &r, err, sizeof err), 0);
    CHECK_STR(r.tag, "");
    CHECK_STR(r.digest, dig_big);

    snprintf(text, sizeof text, "localhost:5000/org/app:v2@%s", dig_big);
    CHECK_INT(oci_ref_parse(text, &r, err, sizeof err), 0);
    CHECK_STR(r.registry, "localhost:5000");
    CHECK_STR(r.tag, "v2");
    CHECK_STR(r.digest, dig_big);

    CHECK_INT(oci_ref_parse("ghcr.io/Org/App:v1", &r, err, sizeof err), -1);
    CHECK(strstr(err, "Org/App") != NULL);
    CHECK_INT(oci_ref_parse("library/nginx:1.25", &r, err, sizeof err), -1);
    CHECK(strstr(err, "no registry") != NULL);
    CHECK_INT(oci_ref_parse("nginx", &r, err, sizeof err), -1);
    CHECK_INT(oci_ref_parse("ghcr.io/org/app@sha256:abc", &r, err, sizeof err), -1);
    CHECK(strstr(err, "digest") != NULL);
    CHECK_INT(oci_ref_parse("ghcr.io/org/app@md5:d41d8cd98f00b204e9800998ecf8427e", &r, err,
                            sizeof err), -1);
    CHECK_INT(oci_ref_parse("ghcr.io/org//app", &r, err, sizeof err), -1);
    CHECK_INT(oci_ref_parse("ghcr.io/org/app:bad/tag", &r, err, sizeof err), -1);
    CHECK_INT(oci_ref_parse("ghcr.io/org/app:", &r, err, sizeof err), -1);
}

static void test_manifests(void)
{
    struct oci_registry *reg = open_repo("team/app", NULL, NULL);
    struct oci_manifest_reply m;
    char err[512] = "";

    CHECK_INT(oci_registry_get_manifest(reg, "v1", &m, err, sizeof err), 0);
    CHECK_STR(m.body, manifest);
    CHECK_INT(m.len, strlen(manifest));
    CHECK_STR(m.media_type, OCI_MT_MANIFEST);
    CHECK_STR(m.digest, dig_manifest);
    pthread_mutex_lock(&lock);
    CHECK(strstr(seen_accept, OCI_MT_INDEX) && strstr(seen_accept, OCI_MT_MANIFEST) &&
          strstr(seen_accept, DOCKER_MT_LIST) && strstr(seen_accept, DOCKER_MT_MANIFEST));
    pthread_mutex_unlock(&lock);
    free(m.body);

    CHECK_INT(oci_registry_get_manifest(reg, dig_manifest, &m, err, sizeof err), 0);
    CHECK_STR(m.digest, dig_manifest);
    free(m.body);

    CHECK_INT(oci_registry_get_manifest(reg, dig_wrong, &m, err, sizeof err), -1);
    CHECK(strstr(err, "hashes to") != NULL);
    CHECK(m.body == NULL);

    CHECK_INT(oci_registry_get_manifest(reg, "missing", &m, err, sizeof err), 1);
    CHECK(strstr(err, "team/app:missing") && strstr(err, "404") && strstr(err, "MANIFEST_UNKNOWN"));

    CHECK_INT(oci_registry_get_manifest(reg, "../../etc", &m, err, sizeof err), -1);

    char *cfg = oci_registry_get_small_blob(reg, dig_config, strlen(config), 4096, err, sizeof err);
    CHECK(cfg && strcmp(cfg, config) == 0);
    free(cfg);
    cfg = oci_registry_get_small_blob(reg, dig_config, strlen(config) - 1, 4096, err, sizeof err);
    CHECK(cfg == NULL);
    cfg = oci_registry_get_small_blob(reg, dig_config, strlen(config), 4, err, sizeof err);
    CHECK(cfg == NULL);
    oci_registry_close(reg);
}

static void test_blobs(void)
{
    struct oci_registry *reg = open_repo("team/app", NULL, NULL);
    struct oci_blob_result res;
    char err[512] = "", path[400], partial[420];

    /* plain download, then already there */
    snprintf(path, sizeof path, "%s/big", tmp);
    snprintf(partial, sizeof partial, "%s.partial", path);
    CHECK_INT(oci_registry_get_blob(reg, dig_big, BLOB_SIZE, path, &res, err, sizeof err), 0);
    CHECK(file_equals(path, blob_big, BLOB_SIZE));
    CHECK_INT(res.fetched, BLOB_SIZE);
    CHECK_INT(res.resumed_from, 0);
    CHECK_INT(file_size(partial), -1);
    CHECK_INT(oci_registry_get_blob(reg, dig_big, BLOB_SIZE, path, &res, err, sizeof err), 0);
    CHECK_INT(res.already_present, 1);
    CHECK_INT(res.fetched, 0);

    /* a partial file made earlier is resumed with Range */
    snprintf(path, sizeof path, "%s/big2", tmp);
    snprintf(partial, sizeof partial, "%s.partial", path);
    write_file(partial, blob_big, 1000);
    CHECK_INT(oci_registry_get_blob(reg, dig_big, BLOB_SIZE, path, &res, err, sizeof err), 0);
    CHECK_INT(res.resumed_from, 1000);
    CHECK_INT(res.fetched, BLOB_SIZE - 1000);
    pthread_mutex_lock(&lock);
    CHECK_STR(seen_range, "bytes=1000-");
    pthread_mutex_unlock(&lock);
    CHECK(file_equals(path, blob_big, BLOB_SIZE));

    /* the connection is cut halfway: the bytes stay for the next call */
    snprintf(path, sizeof path, "%s/cut", tmp);
    snprintf(partial, sizeof partial, "%s.partial", path);
    CHECK_INT(oci_registry_get_blob(reg, dig_cut, BLOB_SIZE, path, &res, err, sizeof err), -1);
    CHECK(err[0] != '\0');
    CHECK(strstr(err, "kept in") != NULL);
    long long kept = file_size(partial);
    CHECK(kept > 0 && kept < BLOB_SIZE);
    CHECK(file_equals(partial, blob_cut, (size_t)(kept > 0 ? kept : 0)));
    CHECK_INT(file_size(path), -1);
    CHECK_INT(oci_registry_get_blob(reg, dig_cut, BLOB_SIZE, path, &res, err, sizeof err), 0);
    CHECK(res.resumed_from > 0);
    CHECK_INT(res.resumed_from, kept);
    CHECK_INT(res.fetched, BLOB_SIZE - res.resumed_from);
    CHECK(file_equals(path, blob_cut, BLOB_SIZE));
    CHECK_INT(file_size(partial), -1);

    /* a registry that ignores Range: start over, even on top of garbage */
    snprintf(path, sizeof path, "%s/norange", tmp);
    snprintf(partial, sizeof partial, "%s.partial", path);
    write_file(partial, "garbage garbage garbage", 23);
    CHECK_INT(oci_registry_get_blob(reg, dig_norange, BLOB_SIZE, path, &res, err, sizeof err), 0);
    CHECK_INT(res.resumed_from, 0);
    CHECK_INT(res.fetched, BLOB_SIZE);
    CHECK(file_equals(path, blob_norange, BLOB_SIZE));

    /* a .partial longer than the blob, and one holding every byte already */
    snprintf(path, sizeof path, "%s/whole", tmp);
    snprintf(partial, sizeof partial, "%s.partial", path);
    write_file(partial, blob_big, BLOB_SIZE);
    CHECK_INT(oci_registry_get_blob(reg, dig_big, BLOB_SIZE, path, &res, err, sizeof err), 0);
    CHECK_INT(res.fetched, 0);
    CHECK(file_equals(path, blob_big, BLOB_SIZE));

    /* bytes that do not hash to the digest are refused and dropped */
    snprintf(path, sizeof path, "%s/bad", tmp);
    snprintf(partial, sizeof partial, "%s.partial", path);
    CHECK_INT(oci_registry_get_blob(reg, dig_other, BLOB_SIZE, path, &res, err, sizeof err), -1);
    CHECK(strstr(err, "hash") != NULL);
    CHECK_INT(file_size(partial), -1);
    CHECK_INT(file_size(path), -1);

    /* a size smaller than what the registry sends */
    CHECK_INT(oci_registry_get_blob(reg, dig_big, 5000, path, &res, err, sizeof err), -1);
    CHECK(strstr(err, "more than") != NULL);
    CHECK_INT(file_size(partial), -1);

    /* a missing blob */
    CHECK_INT(oci_registry_get_blob(reg, dig_wrong, 10, path, &res, err, sizeof err), -1);
    CHECK(strstr(err, "404") != NULL);
    CHECK_INT(file_size(partial), -1);   /* nothing to keep */
    oci_registry_close(reg);

    /* a registry that answers 416 to the Range: start over once */
    reg = open_repo("strict/app", NULL, NULL);
    snprintf(path, sizeof path, "%s/strict", tmp);
    snprintf(partial, sizeof partial, "%s.partial", path);
    write_file(partial, "stale", 5);
    CHECK_INT(oci_registry_get_blob(reg, dig_big, BLOB_SIZE, path, &res, err, sizeof err), 0);
    CHECK_INT(res.resumed_from, 0);
    CHECK_INT(res.fetched, BLOB_SIZE);
    CHECK(file_equals(path, blob_big, BLOB_SIZE));
    oci_registry_close(reg);
}

static void test_auth(void)
{
    struct oci_registry *reg = open_repo("secure/app", "user", "pass");
    struct oci_manifest_reply m;
    struct oci_blob_result res;
    char err[512] = "", path[400];

    CHECK_INT(oci_registry_get_manifest(reg, "v1", &m, err, sizeof err), 0);
    CHECK_STR(m.body, manifest);
    free(m.body);
    pthread_mutex_lock(&lock);
    CHECK(strstr(seen_token_query, "service=test%20registry") != NULL);
    CHECK(strstr(seen_token_query, "scope=repository%3Asecure%2Fapp%3Apull%2Cpush") != NULL);
    pthread_mutex_unlock(&lock);

    /* the blob is redirected to storage on another port, which must not see the token */
    snprintf(path, sizeof path, "%s/secure-big", tmp);
    CHECK_INT(oci_registry_get_blob(reg, dig_big, BLOB_SIZE, path, &res, err, sizeof err), 0);
    CHECK(file_equals(path, blob_big, BLOB_SIZE));
    pthread_mutex_lock(&lock);
    CHECK_INT(storage_requests, 1);
    CHECK_STR(seen_storage_auth, "");
    pthread_mutex_unlock(&lock);
    oci_registry_close(reg);

    reg = open_repo("secure/app", "user", "wrong");
    CHECK_INT(oci_registry_get_manifest(reg, "v1", &m, err, sizeof err), -1);
    CHECK(strstr(err, "authentication refused") && strstr(err, "127.0.0.1"));
    CHECK(strstr(err, "wrong") == NULL || strstr(err, "wrong username") != NULL);
    oci_registry_close(reg);

    reg = open_repo("secure/app", "other", "pass");   /* a token the registry does not take */
    CHECK_INT(oci_registry_get_manifest(reg, "v1", &m, err, sizeof err), -1);
    CHECK(strstr(err, "authentication refused") != NULL);
    CHECK(strstr(err, "useless-token") == NULL);
    oci_registry_close(reg);

    reg = open_repo("basic/app", "user", "pass");
    CHECK_INT(oci_registry_get_manifest(reg, "v1", &m, err, sizeof err), 0);
    free(m.body);
    oci_registry_close(reg);

    reg = open_repo("basic/app", NULL, NULL);
    CHECK_INT(oci_registry_get_manifest(reg, "v1", &m, err, sizeof err), -1);
    CHECK(strstr(err, "username") != NULL);
    oci_registry_close(reg);
}

int main(void)
{
    make_content();
    port = start_server();
    storage_port = start_server();
    snprintf(tmp, sizeof tmp, "/tmp/test_oci_registry.XXXXXX");
    if (!mkdtemp(tmp))
        return 2;
    test_ref_parse();
    test_manifests();
    test_blobs();
    test_auth();
    temp_dir_remove(tmp);
    return check_summary("test_oci_registry");
}
