/*
 * test_routes_writer.c - STATE/routes.yaml is created with its folder, replaced atomically (a new
 * inode, no temp file left behind, mode 0644 whatever the umask), left alone when unchanged, and
 * kept when writing fails.
 */
#include "check.h"
#include "temp_dir.h"
#include "routes_writer.h"
#include "yaml_json.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static json_t *routes_doc(const char *host)
{
    return json_pack("{s:i, s:[{s:s, s:[s]}], s:[{s:s, s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}]}]}",
                     "version", 1,
                     "backends", "name", "default/web:80", "endpoints", "10.1.0.4:8080",
                     "hosts", "host", host, "paths",
                     "path", "/", "type", "Prefix", "backend", "default/web:80",
                     "path", "/api", "type", "Exact", "backend", "default/web:80");
}

/* Runs routes_write with stderr captured into log (the log lines a user sees). */
static enum routes_write_result write_capturing(const char *state, const json_t *doc,
                                                char *log, size_t loglen)
{
    char err[256] = "";
    FILE *capture = tmpfile();
    int saved = dup(2);
    dup2(fileno(capture), 2);
    enum routes_write_result r = routes_write(state, doc, err, sizeof err);
    dup2(saved, 2);
    close(saved);
    rewind(capture);
    size_t n = fread(log, 1, loglen - 1, capture);
    log[n] = '\0';
    fclose(capture);
    if (r == ROUTES_FAILED)
        snprintf(log, loglen, "%s", err);
    return r;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    if (d)
        closedir(d);
    return n;
}

static void test_write_and_rewrite(const char *base)
{
    char state[512], file[600], log[1024];
    snprintf(state, sizeof state, "%s/var/lib/gatehouse", base);
    snprintf(file, sizeof file, "%s/routes.yaml", state);
    json_t *doc = routes_doc("foo.example.com");
    mode_t old_umask = umask(077);

    /* First write: folders created 0755, file 0644 despite the umask. */
    CHECK_INT(write_capturing(state, doc, log, sizeof log), ROUTES_WRITTEN);
    CHECK(strstr(log, "routes written: 1 hosts, 2 routes") != NULL);
    struct stat st_dir, st1, st2;
    CHECK_INT(stat(state, &st_dir), 0);
    CHECK(S_ISDIR(st_dir.st_mode));
    CHECK_INT(st_dir.st_mode & 0777, 0755);
    CHECK_INT(stat(file, &st1), 0);
    CHECK_INT(st1.st_mode & 0777, 0644);
    CHECK_INT(count_entries(state), 1);              /* no temp file left */

    /* What is on disk reads back as the document. */
    struct yaml_error yerr;
    json_t *back = yaml_load_file_single(file, &yerr);
    CHECK(back != NULL && json_equal(back, doc));
    json_decref(back);

    /* Same content: not rewritten, same inode, nothing logged. */
    CHECK_INT(write_capturing(state, doc, log, sizeof log), ROUTES_UNCHANGED);
    CHECK_STR(log, "");
    CHECK_INT(stat(file, &st2), 0);
    CHECK_INT(st2.st_ino, st1.st_ino);

    /* New content: replaced by rename, so a reader holding the old file keeps the old bytes. */
    int reader = open(file, O_RDONLY);
    json_t *doc2 = routes_doc("bar.example.com");
    CHECK_INT(write_capturing(state, doc2, log, sizeof log), ROUTES_WRITTEN);
    CHECK_INT(stat(file, &st2), 0);
    CHECK(st2.st_ino != st1.st_ino);
    char old_bytes[4096] = "";
    ssize_t n = read(reader, old_bytes, sizeof old_bytes - 1);
    CHECK(n > 0 && strstr(old_bytes, "foo.example.com") != NULL);
    close(reader);
    back = yaml_load_file_single(file, &yerr);
    CHECK(back != NULL && json_equal(back, doc2));
    json_decref(back);
    CHECK_INT(count_entries(state), 1);

    /* A temp file left by a crash (same pid) does not block the next write. */
    char stale[700];
    snprintf(stale, sizeof stale, "%s/.routes.yaml.tmp.%ld", state, (long)getpid());
    FILE *f = fopen(stale, "w");
    fputs("half a file", f);
    fclose(f);
    CHECK_INT(write_capturing(state, doc, log, sizeof log), ROUTES_WRITTEN);
    CHECK_INT(count_entries(state), 1);

    umask(old_umask);
    json_decref(doc);
    json_decref(doc2);
}

static void test_failure_keeps_file(const char *base)
{
    char state[512], log[1024];
    /* The state "folder" is a file: the write fails with a reason, nothing is created. */
    snprintf(state, sizeof state, "%s/not-a-folder", base);
    FILE *f = fopen(state, "w");
    fputs("x", f);
    fclose(f);
    json_t *doc = routes_doc("foo.example.com");
    CHECK_INT(write_capturing(state, doc, log, sizeof log), ROUTES_FAILED);
    CHECK(strstr(log, "not-a-folder") != NULL);

    /* routes.yaml is a folder: rename cannot replace it; the old entry stays, no temp is left. */
    snprintf(state, sizeof state, "%s/blocked", base);
    char file[600];
    snprintf(file, sizeof file, "%s/routes.yaml", state);
    mkdir(state, 0755);
    mkdir(file, 0755);
    CHECK_INT(write_capturing(state, doc, log, sizeof log), ROUTES_FAILED);
    CHECK(strstr(log, "routes.yaml") != NULL);
    struct stat st;
    CHECK(stat(file, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_INT(count_entries(state), 1);
    json_decref(doc);
}

int main(void)
{
    char base[] = "/tmp/test_routes_writer.XXXXXX";
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 2;
    }
    test_write_and_rewrite(base);
    test_failure_keeps_file(base);
    CHECK_INT(temp_dir_remove(base), 0);
    return check_summary("test_routes_writer");
}
