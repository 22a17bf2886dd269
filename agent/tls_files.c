/*
 * tls_files.c - see tls_files.h. Check each name against its content's hash, write what is not
 * already there (temp, fsync, rename; fsync the folder once), and later delete what is no
 * longer named.
 */
#include "tls_files.h"

#include "file_io.h"
#include "log.h"

#include <bearssl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_BYTES  4096
#define PATH_BYTES (DIR_BYTES + 320)
#define HASH_HEX   64
#define PREFIX     TLS_DIR_NAME "/"
/* "<64 hex>.crt": what a file of ours is called inside the folder */
#define FILE_NAME_LEN (HASH_HEX + 4)

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* "<64 lower-case hex>.crt" or ".key", nothing else: the only names this module writes or
 * deletes, so no name from elsewhere can reach outside the folder or touch a stranger's file. */
static int is_our_file_name(const char *name)
{
    return strlen(name) == FILE_NAME_LEN && is_lower_hex(name, HASH_HEX) &&
           (strcmp(name + HASH_HEX, ".crt") == 0 || strcmp(name + HASH_HEX, ".key") == 0);
}

/* A temp file of ours: "." + our file name + ".tmp." + anything. */
static int is_our_temp_name(const char *name)
{
    char base[FILE_NAME_LEN + 1];
    if (name[0] != '.' || strlen(name) < 1 + FILE_NAME_LEN + 5 ||
        strncmp(name + 1 + FILE_NAME_LEN, ".tmp.", 5) != 0)
        return 0;
    memcpy(base, name + 1, FILE_NAME_LEN);
    base[FILE_NAME_LEN] = '\0';
    return is_our_file_name(base);
}

static void sha256_hex(const void *data, size_t len, char out[HASH_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char hash[br_sha256_SIZE];
    br_sha256_context ctx;
    br_sha256_init(&ctx);
    br_sha256_update(&ctx, data, len);
    br_sha256_out(&ctx, hash);
    for (size_t i = 0; i < sizeof hash; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[HASH_HEX] = '\0';
}

void tls_files_name(const void *data, size_t len, const char *ext, char out[TLS_FILE_KEY_MAX])
{
    char hex[HASH_HEX + 1];
    sha256_hex(data, len, hex);
    snprintf(out, TLS_FILE_KEY_MAX, PREFIX "%s.%.3s", hex, ext);
}

/* Who reads the files: the proxy, which may run as another user than the agent. */
static uid_t reader_uid = (uid_t)-1;
static gid_t reader_gid = (gid_t)-1;

void tls_files_set_reader(uid_t uid, gid_t gid)
{
    reader_uid = uid;
    reader_gid = gid;
}

/* Gives fd (described by st) to the reader, when one is set and is not already its owner. */
static int hand_to_reader(int fd, const struct stat *st)
{
    if (reader_uid == (uid_t)-1 || (st->st_uid == reader_uid && st->st_gid == reader_gid))
        return 0;
    return fchown(fd, reader_uid, reader_gid);
}

/* 1 when path is a regular file (not a symlink) holding exactly these bytes; any trouble counts
 * as "no". */
static int file_has_content(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    struct stat st;
    int same = file_fd_holds(fd, data, len) && fstat(fd, &st) == 0;
    /* a file left with a looser mode (copied in by hand, restored from a backup) is tightened */
    if (same && (st.st_mode & 0777) != 0600 && fchmod(fd, 0600) < 0)
        same = 0;
    if (same && hand_to_reader(fd, &st) < 0)
        same = 0;
    close(fd);
    return same;
}

/* STATE/tls, 0700 whatever the umask, also when it was there with a looser mode. */
static int make_tls_dir(const char *state_dir, const char *dir, char *err, size_t errlen)
{
    int created = mkdir(dir, 0700) == 0;
    if (!created && errno != EEXIST)
        return set_err(err, errlen, "cannot create %s: %s", dir, strerror(errno));
    struct stat st;
    if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return set_err(err, errlen, "%s is not a folder", dir);
    if ((st.st_mode & 0777) != 0700 && chmod(dir, 0700) < 0)
        return set_err(err, errlen, "cannot make %s private (mode 0700): %s", dir,
                       strerror(errno));
    if (reader_uid != (uid_t)-1 && (st.st_uid != reader_uid || st.st_gid != reader_gid) &&
        lchown(dir, reader_uid, reader_gid) < 0)
        return set_err(err, errlen, "cannot give %s to the proxy's user: %s", dir,
                       strerror(errno));
    return created ? file_sync_dir(state_dir, err, errlen) : 0;
}

/* The file name inside the folder for a key of files, or NULL when the key is not ours or the
 * content's hash is not the one in the name. */
static const char *checked_name(const char *key, const json_t *content, char *err, size_t errlen)
{
    const char *name = key + strlen(PREFIX);
    char hex[HASH_HEX + 1];
    if (strncmp(key, PREFIX, strlen(PREFIX)) != 0 || !is_our_file_name(name) ||
        !json_is_string(content)) {
        set_err(err, errlen, "refusing to write TLS file \"%.80s\": not a name of the form "
                "tls/<sha256>.crt|.key with string content", key);
        return NULL;
    }
    sha256_hex(json_string_value(content), json_string_length(content), hex);
    if (memcmp(hex, name, HASH_HEX) != 0) {
        set_err(err, errlen, "refusing to write TLS file %s: its content does not have that "
                "SHA-256", key);
        return NULL;
    }
    return name;
}

int tls_files_write(const char *state_dir, const json_t *files, char *err, size_t errlen)
{
    char dir[DIR_BYTES];
    const char *key;
    const json_t *content;
    int written = 0;
    if (!json_is_object(files) || json_object_size(files) == 0)
        return 0;
    if (!state_dir[0] || snprintf(dir, sizeof dir, "%s/" TLS_DIR_NAME, state_dir) >=
                             (int)sizeof dir)
        return set_err(err, errlen, "bad state folder name");
    json_object_foreach((json_t *)files, key, content) {
        if (!checked_name(key, content, err, errlen))
            return -1;
    }
    if (make_tls_dir(state_dir, dir, err, errlen) < 0)
        return -1;
    json_object_foreach((json_t *)files, key, content) {
        const char *name = key + strlen(PREFIX), *data = json_string_value(content);
        size_t len = json_string_length(content);
        char path[PATH_BYTES];
        snprintf(path, sizeof path, "%s/%.68s", dir, name);
        if (file_has_content(path, data, len))
            continue;
        if (file_replace(dir, name, data, len, 0600, reader_uid, reader_gid, err, errlen) < 0)
            return -1;
        written++;
    }
    if (written && file_sync_dir(dir, err, errlen) < 0)
        return -1;
    if (written)
        log_info("TLS files written: %d (under %s)", written, dir);
    return written;
}

int tls_files_prune(const char *state_dir, const json_t *keep, char *err, size_t errlen)
{
    char dir[DIR_BYTES];
    if (!state_dir[0] || snprintf(dir, sizeof dir, "%s/" TLS_DIR_NAME, state_dir) >=
                             (int)sizeof dir)
        return set_err(err, errlen, "bad state folder name");
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : set_err(err, errlen, "cannot read %s: %s", dir,
                                             strerror(errno));
    int removed = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char key[sizeof e->d_name + 8], path[PATH_BYTES];
        snprintf(key, sizeof key, PREFIX "%s", e->d_name);
        int stale = is_our_file_name(e->d_name) ? !json_object_get(keep, key)
                                                : is_our_temp_name(e->d_name);
        if (!stale)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0)
            removed++;
        else if (errno != ENOENT && !failed++)
            set_err(err, errlen, "cannot remove %s: %s", path, strerror(errno));
    }
    closedir(d);
    if (removed && file_sync_dir(dir, failed ? NULL : err, failed ? 0 : errlen) < 0)
        failed++;
    if (removed)
        log_info("TLS files removed: %d no longer named by the routes file", removed);
    return failed ? -1 : removed;
}

void tls_files_free(json_t *files)
{
    const char *key;
    json_t *content;
    json_object_foreach(files, key, content) {
        /* jansson owns the buffer; wiping it in place before the last reference goes is the
         * only way to not leave private keys in freed heap memory */
        if (json_is_string(content))
            explicit_bzero((char *)json_string_value(content), json_string_length(content));
    }
    json_decref(files);
}
