/*
 * test_tls_files.c - certificates and keys under STATE/tls/: private modes whatever the umask,
 * names checked against content, unchanged files left alone, and - through routes_publish -
 * written before the routes file that names them and removed only after one that does not.
 */
#include "check.h"
#include "temp_dir.h"
#include "routes_writer.h"
#include "tls_files.h"

#include <bearssl.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[256];

/* "tls/<sha256 of content>.<ext>" */
static void file_key(const char *content, const char *ext, char *out, size_t outlen)
{
    unsigned char hash[br_sha256_SIZE];
    br_sha256_context ctx;
    br_sha256_init(&ctx);
    br_sha256_update(&ctx, content, strlen(content));
    br_sha256_out(&ctx, hash);
    size_t used = (size_t)snprintf(out, outlen, "tls/");
    for (size_t i = 0; i < sizeof hash; i++)
        used += (size_t)snprintf(out + used, outlen - used, "%02x", hash[i]);
    snprintf(out + used, outlen - used, ".%s", ext);
}

/* A files object with a certificate and a key; their keys are returned in crt/key. */
static json_t *pair(const char *tag, char *crt, char *key, size_t len)
{
    char cert_text[128], key_text[128];
    snprintf(cert_text, sizeof cert_text, "-----BEGIN CERTIFICATE-----\n%s\n", tag);
    snprintf(key_text, sizeof key_text, "-----BEGIN PRIVATE KEY-----\n%s\n", tag);
    file_key(cert_text, "crt", crt, len);
    file_key(key_text, "key", key, len);
    return json_pack("{s:s, s:s}", crt, cert_text, key, key_text);
}

static json_t *routes_naming(const char *crt, const char *key)
{
    json_t *doc = json_pack("{s:i, s:[], s:[]}", "version", 1, "backends", "hosts");
    if (crt)
        json_object_set_new(doc, "tls", json_pack("[{s:[s], s:s, s:s}]", "hosts",
                                                  "a.example.com", "cert", crt, "key", key));
    return doc;
}

static int exists(const char *state, const char *key)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", state, key);
    return stat(path, &st) == 0;
}

static int mode_of(const char *state, const char *key)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", state, key);
    return stat(path, &st) == 0 ? (int)(st.st_mode & 0777) : -1;
}

static ino_t inode_of(const char *state, const char *key)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", state, key);
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

static void touch(const char *state, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tls/%s", state, name);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
}

static int routes_file_names(const char *state, const char *key)
{
    char path[1024], text[8192];
    snprintf(path, sizeof path, "%s/routes.yaml", state);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return strstr(text, key) != NULL;
}

static void test_modes_and_unchanged(void)
{
    char state[512], err[256], crt[128], key[128];
    snprintf(state, sizeof state, "%s/modes", base);
    mkdir(state, 0755);
    json_t *files = pair("one", crt, key, sizeof crt);
    mode_t old_umask = umask(0);                 /* the modes must not come from the umask */

    CHECK_INT(tls_files_write(state, files, err, sizeof err), 2);
    CHECK_INT(mode_of(state, "tls"), 0700);
    CHECK_INT(mode_of(state, crt), 0600);
    CHECK_INT(mode_of(state, key), 0600);
    ino_t before = inode_of(state, key);

    /* Same content again: nothing is rewritten. */
    CHECK_INT(tls_files_write(state, files, err, sizeof err), 0);
    CHECK(inode_of(state, key) == before);

    /* A folder or file loosened by hand is made private again. */
    char path[1024];
    snprintf(path, sizeof path, "%s/tls", state);
    chmod(path, 0755);
    snprintf(path, sizeof path, "%s/%s", state, key);
    chmod(path, 0644);
    CHECK_INT(tls_files_write(state, files, err, sizeof err), 0);
    CHECK_INT(mode_of(state, "tls"), 0700);
    CHECK_INT(mode_of(state, key), 0600);
    umask(old_umask);
    tls_files_free(files);
}

static void test_refused_names(void)
{
    char state[512], err[256] = "", crt[128], key[128];
    snprintf(state, sizeof state, "%s/refused", base);
    mkdir(state, 0755);

    json_t *bad = json_pack("{s:s}", "tls/../../etc/passwd", "x");
    CHECK_INT(tls_files_write(state, bad, err, sizeof err), -1);
    CHECK(strstr(err, "tls/<sha256>") != NULL);
    json_decref(bad);

    /* A name whose hash is not its content's */
    json_t *files = pair("two", crt, key, sizeof crt);
    json_object_set_new(files, crt, json_string("something else"));
    CHECK_INT(tls_files_write(state, files, err, sizeof err), -1);
    CHECK(strstr(err, "does not have that SHA-256") != NULL);
    CHECK(!exists(state, "tls"));                /* checked before anything is written */
    tls_files_free(files);
}

static void test_publish_order(void)
{
    char state[512], err[256], crt1[128], key1[128], crt2[128], key2[128];
    snprintf(state, sizeof state, "%s/publish/state", base);   /* parents made too */
    json_t *files1 = pair("first", crt1, key1, sizeof crt1);
    json_t *files2 = pair("second", crt2, key2, sizeof crt2);
    json_t *routes1 = routes_naming(crt1, key1), *routes2 = routes_naming(crt2, key2);

    CHECK_INT(routes_publish(state, routes1, files1, err, sizeof err), ROUTES_WRITTEN);
    CHECK(exists(state, crt1) && exists(state, key1) && routes_file_names(state, crt1));
    touch(state, "README");                      /* not ours: never removed */
    char leftover[200];
    snprintf(leftover, sizeof leftover, ".%s.tmp.99999", key1 + 4);
    touch(state, leftover);                      /* a temp file of ours from a crash */

    /* Writing the routes file fails (a folder is in its way): the new files are there, the
     * old ones are kept, since the routes file in place still names them. */
    char routes_path[1024];
    snprintf(routes_path, sizeof routes_path, "%s/routes.yaml", state);
    char aside[1040];
    snprintf(aside, sizeof aside, "%s.aside", routes_path);
    CHECK_INT(rename(routes_path, aside), 0);
    CHECK_INT(mkdir(routes_path, 0755), 0);
    char inner[1100];
    snprintf(inner, sizeof inner, "%s/x", routes_path);
    touch(state, "../routes.yaml/x");            /* a non-empty folder cannot be renamed over */
    CHECK_INT(routes_publish(state, routes2, files2, err, sizeof err), ROUTES_FAILED);
    CHECK(exists(state, crt2) && exists(state, key2));
    CHECK(exists(state, crt1) && exists(state, key1));
    unlink(inner);
    rmdir(routes_path);
    CHECK_INT(rename(aside, routes_path), 0);

    /* The TLS files cannot be written (STATE/tls is not a folder): the routes file is not
     * replaced, so the proxy never sees a routes file naming files that are not there. */
    char tls_dir[1024], tls_aside[1040];
    snprintf(tls_dir, sizeof tls_dir, "%s/tls", state);
    snprintf(tls_aside, sizeof tls_aside, "%s.aside", tls_dir);
    CHECK_INT(rename(tls_dir, tls_aside), 0);
    FILE *f = fopen(tls_dir, "w");
    if (f)
        fclose(f);
    CHECK_INT(routes_publish(state, routes2, files2, err, sizeof err), ROUTES_FAILED);
    CHECK(routes_file_names(state, crt1) && !routes_file_names(state, crt2));
    unlink(tls_dir);
    CHECK_INT(rename(tls_aside, tls_dir), 0);

    /* Now it works: new routes in place, then the old files and the leftover go. */
    CHECK_INT(routes_publish(state, routes2, files2, err, sizeof err), ROUTES_WRITTEN);
    CHECK(routes_file_names(state, crt2));
    CHECK(exists(state, crt2) && exists(state, key2));
    CHECK(!exists(state, crt1) && !exists(state, key1));
    char name[300];
    snprintf(name, sizeof name, "tls/%s", leftover);
    CHECK(!exists(state, name));
    CHECK(exists(state, "tls/README"));

    /* No certificates any more: the routes file drops them, then the files go. */
    json_t *plain = routes_naming(NULL, NULL);
    CHECK_INT(routes_publish(state, plain, NULL, err, sizeof err), ROUTES_WRITTEN);
    CHECK(!exists(state, crt2) && !exists(state, key2));
    CHECK(exists(state, "tls/README"));

    json_decref(plain);
    json_decref(routes1);
    json_decref(routes2);
    tls_files_free(files1);
    tls_files_free(files2);
}

int main(void)
{
    snprintf(base, sizeof base, "/tmp/test_tls_files.XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    test_modes_and_unchanged();
    test_refused_names();
    test_publish_order();
    temp_dir_remove(base);
    return check_summary("test_tls_files");
}
