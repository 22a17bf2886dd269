/*
 * routes_writer.c - see routes_writer.h. Emit, compare with the file on disk, then
 * write-temp / fsync / rename / fsync-dir. routes_publish puts the TLS files around that.
 */
#include "routes_writer.h"

#include "file_io.h"
#include "log.h"
#include "tls_files.h"
#include "yaml_json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_BYTES 4352

static int join_path(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_BYTES, "%s/%s", dir, name);
    return n > 0 && n < PATH_BYTES ? 0 : -1;
}

/* mkdir -p; every folder it creates gets mode 0755 whatever the umask. */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
    char path[PATH_BYTES];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        set_err(err, errlen, "state folder name too long: %.64s...", dir);
        return -1;
    }
    for (char *p = path + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0755) == 0)
            chmod(path, 0755);   /* the proxy, maybe another user, must reach routes.yaml */
        else if (errno != EEXIST) {
            set_err(err, errlen, "cannot create state folder %s: %s", path, strerror(errno));
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "state folder %s is not a folder", dir);
        return -1;
    }
    return 0;
}

static void count_routes(const json_t *routes, size_t *hosts_out, size_t *paths_out)
{
    const json_t *hosts = json_object_get(routes, "hosts");
    size_t paths = 0, i;
    const json_t *host;
    json_array_foreach(hosts, i, host)
        paths += json_array_size(json_object_get(host, "paths"));
    *hosts_out = json_array_size(hosts);
    *paths_out = paths;
}

enum routes_write_result routes_write(const char *state_dir, const json_t *routes,
                                      char *err, size_t errlen)
{
    char path[PATH_BYTES];
    if (!state_dir[0] || join_path(path, state_dir, ROUTES_FILE_NAME) < 0) {
        set_err(err, errlen, "bad state folder name");
        return ROUTES_FAILED;
    }
    size_t len;
    char *text = yaml_emit(routes, &len);
    if (!text) {
        set_err(err, errlen, "cannot serialise the routes document");
        return ROUTES_FAILED;
    }
    enum routes_write_result result = ROUTES_FAILED;
    if (make_dirs(state_dir, err, errlen) < 0)
        goto out;
    if (file_holds(path, text, len)) {
        result = ROUTES_UNCHANGED;
        goto out;
    }
    /* 0644 whatever the umask: the proxy (maybe another user) must be able to read routes. */
    if (file_replace(state_dir, ROUTES_FILE_NAME, text, len, 0644, (uid_t)-1, (gid_t)-1, err,
                     errlen) < 0 || file_sync_dir(state_dir, err, errlen) < 0)
        goto out;
    size_t hosts, paths;
    count_routes(routes, &hosts, &paths);
    log_info("routes written: %zu hosts, %zu routes", hosts, paths);
    result = ROUTES_WRITTEN;
out:
    free(text);
    return result;
}

enum routes_write_result routes_publish(const char *state_dir, const json_t *routes,
                                        const json_t *tls_files, char *err, size_t errlen)
{
    char prune_err[512];
    if (!state_dir[0]) {
        set_err(err, errlen, "bad state folder name");
        return ROUTES_FAILED;
    }
    if (json_object_size(tls_files) &&
        (make_dirs(state_dir, err, errlen) < 0 || tls_files_write(state_dir, tls_files, err,
                                                                   errlen) < 0))
        return ROUTES_FAILED;
    enum routes_write_result result = routes_write(state_dir, routes, err, errlen);
    if (result == ROUTES_FAILED)
        return result;
    /* A file that cannot be removed costs only disk space; the routes are in place. */
    if (tls_files_prune(state_dir, tls_files, prune_err, sizeof prune_err) < 0)
        log_warn("%s", prune_err);
    return result;
}
