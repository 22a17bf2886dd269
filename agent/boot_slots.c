/*
 * boot_slots.c - see boot_slots.h. Reads the Gatehouse entries of ESP/loader/entries and the
 * kernel command line into a boot_state, installs a new kernel and initrd into the slot that
 * is not running (in the order the header's Safety paragraph gives), blesses the running
 * entry, and describes the state as Prometheus gauges.
 *
 * Decisions:
 * - Only names of the exact form gatehouse-SEQ-SLOT[+LEFT[-DONE]].conf are ours (SEQ, LEFT,
 *   DONE: 1 to 9 decimal digits, SLOT 'a' or 'b'). Everything else in loader/entries is
 *   ignored, including near misses such as gatehouse-x-a.conf: such a file was not written
 *   by this code or by mkdisk, and refusing to work because of it would stop every update.
 * - A file with our name whose content does not parse is an error: no options line, a line
 *   that does not fit its field, a malformed gatehouse.image=, or a gatehouse.slot= / linux /
 *   initrd that names another slot than the file name does. The last matters for safety:
 *   an entry named for slot B that boots with gatehouse.slot=a would make the agent believe
 *   A is running and overwrite the running slot's files.
 * - Several options lines are joined with a space, as systemd-boot does.
 * - An install finds the inactive slot's entries to remove by listing the folder again, not
 *   from st, so a state read a while ago cannot leave an old entry pointing at new files.
 * - An install is refused while the running entry is on trial: the inactive slot is then
 *   the way back, and removing its entry would leave nothing to fall back to. Bless first.
 * - Durability on FAT: every renamed file is fsync'd under its new name and the whole file
 *   system is synced (syncfs) at the end of an install or a bless (see rename_file).
 * - The metric's entry label is the entry id (no counter): it stays the same when the boot
 *   loader counts down or the entry is blessed.
 */
#include "boot_slots.h"

#include "file_io.h"
#include "file_read.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENTRIES_DIR   "loader/entries"
#define ENTRY_MAX     (16 * 1024)
#define DIR_BYTES     (sizeof ((struct boot_state *)0)->esp + 64)    /* ESP/loader/entries */
#define PATH_BYTES    (DIR_BYTES + sizeof ((struct boot_entry *)0)->file + 2)
#define COPY_CHUNK    (256 * 1024)
#define CMDLINE_MAX   65536                 /* /proc/cmdline is at most a page or two */
#define VERSION_MAX   64
#define DIGITS_MAX    9

/* ---- names ---- */

/* 1..DIGITS_MAX decimal digits at *p; advances *p. -1 when there are none or too many. */
static int parse_number(const char **p, unsigned *out)
{
    unsigned v = 0;
    int n = 0;
    while (**p >= '0' && **p <= '9') {
        if (++n > DIGITS_MAX)
            return -1;
        v = v * 10 + (unsigned)(**p - '0');
        (*p)++;
    }
    if (n == 0)
        return -1;
    *out = v;
    return 0;
}

/* Fills the name fields of e from a gatehouse-SEQ-SLOT[+LEFT[-DONE]].conf file name.
 * Returns -1 (e untouched in part) when the name is not of that form. */
static int parse_entry_name(const char *name, struct boot_entry *e)
{
    const char *p = name;
    if (strncmp(p, "gatehouse-", 10) != 0)
        return -1;
    p += 10;
    if (parse_number(&p, &e->seq) < 0 || *p++ != '-')
        return -1;
    if (*p != 'a' && *p != 'b')
        return -1;
    e->slot = *p++;
    size_t idlen = (size_t)(p - name);
    e->counting = 0;
    e->tries_left = e->tries_done = 0;
    if (*p == '+') {
        p++;
        e->counting = 1;
        if (parse_number(&p, &e->tries_left) < 0)
            return -1;
        if (*p == '-') {
            p++;
            if (parse_number(&p, &e->tries_done) < 0)
                return -1;
        }
    }
    if (strcmp(p, ".conf") != 0 || strlen(name) >= sizeof e->file || idlen >= sizeof e->id)
        return -1;
    memcpy(e->id, name, idlen);
    e->id[idlen] = '\0';
    strcpy(e->file, name);
    return 0;
}

/* ---- command line and options tokens ---- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The next space-separated token at *p (advancing *p past it); its length in *len, 0 at the end. */
static const char *next_token(const char **p, size_t *len)
{
    while (is_space(**p))
        (*p)++;
    const char *start = *p;
    while (**p && !is_space(**p))
        (*p)++;
    *len = (size_t)(*p - start);
    return start;
}

/* The value of the last KEY=value token in a space-separated line, copied into out; 0 when
 * found (even if it did not fit: then out is ""), -1 when absent. Last wins, as for the
 * kernel's own parameters. */
static int find_token(const char *line, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    int found = -1;
    const char *p = line;
    while (*p) {
        size_t len;
        const char *start = next_token(&p, &len);
        if (len >= klen && strncmp(start, key, klen) == 0) {
            found = 0;
            size_t vlen = len - klen;
            if (vlen < outlen) {
                memcpy(out, start + klen, vlen);
                out[vlen] = '\0';
            } else if (outlen) {
                out[0] = '\0';
            }
        }
    }
    return found;
}

/* ---- entry content ---- */

static int read_small_file(const char *path, char *buf, size_t bufsize, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return set_err(err, errlen, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size >= (off_t)bufsize) {
        close(fd);
        return set_err(err, errlen, "%s: not a regular file of at most %zu bytes", path,
                       bufsize - 1);
    }
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, bufsize - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return set_err(err, errlen, "%s: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        have += (size_t)n;
        if (have == bufsize - 1) {
            close(fd);
            return set_err(err, errlen, "%s: longer than %zu bytes", path, bufsize - 1);
        }
    }
    close(fd);
    buf[have] = '\0';
    if (memchr(buf, '\0', have))
        return set_err(err, errlen, "%s: contains a NUL byte", path);
    return 0;
}

/* Appends value to field (a space between values) for keys that may repeat; -1 when full. */
static int append_field(char *field, size_t size, const char *value, size_t vlen)
{
    size_t have = strlen(field);
    size_t sep = have ? 1 : 0;
    if (have + sep + vlen >= size)
        return -1;
    if (sep)
        field[have++] = ' ';
    memcpy(field + have, value, vlen);
    field[have + vlen] = '\0';
    return 0;
}

static int set_field(char *field, size_t size, const char *value, size_t vlen)
{
    if (vlen >= size)
        return -1;
    memcpy(field, value, vlen);
    field[vlen] = '\0';
    return 0;
}

/* One "key value" line into e (and the linux/initrd paths into the caller's buffers). */
static int parse_entry_line(const char *line, size_t len, struct boot_entry *e,
                            char *linux_path, char *initrd_path, size_t pathsize)
{
    const char *end = line + len;
    while (line < end && is_space(*line))
        line++;
    while (end > line && is_space(end[-1]))
        end--;
    if (line == end || *line == '#')
        return 0;
    const char *k = line;
    while (line < end && !is_space(*line))
        line++;
    size_t klen = (size_t)(line - k);
    while (line < end && is_space(*line))
        line++;
    size_t vlen = (size_t)(end - line);
#define KEY_IS(s) (klen == sizeof(s) - 1 && memcmp(k, s, klen) == 0)
    if (KEY_IS("options"))
        return append_field(e->options, sizeof e->options, line, vlen);
    if (KEY_IS("version"))
        return set_field(e->version, sizeof e->version, line, vlen);
    if (KEY_IS("linux"))
        return set_field(linux_path, pathsize, line, vlen);
    if (KEY_IS("initrd"))
        return set_field(initrd_path, pathsize, line, vlen);
#undef KEY_IS
    return 0;   /* title, machine-id, sort-key, ...: nothing we need */
}

/* Checks that what the entry boots agrees with its name: see the header comment. */
static int check_entry(struct boot_entry *e, const char *linux_path,
                       const char *initrd_path, const char *path, char *err, size_t errlen)
{
    char slot[8], want[64];
    if (!e->options[0])
        return set_err(err, errlen, "%s: no options line", path);
    if (find_token(e->options, "gatehouse.slot=", slot, sizeof slot) < 0)
        return set_err(err, errlen, "%s: options have no gatehouse.slot=", path);
    if (slot[0] != e->slot || slot[1])
        return set_err(err, errlen, "%s: options say gatehouse.slot=%s, the name says %c",
                       path, slot, e->slot);
    snprintf(want, sizeof want, "/gatehouse/%c/vmlinuz", e->slot);
    if (linux_path[0] && strcmp(linux_path, want) != 0)
        return set_err(err, errlen, "%s: linux is not %s", path, want);
    snprintf(want, sizeof want, "/gatehouse/%c/initrd", e->slot);
    if (initrd_path[0] && strcmp(initrd_path, want) != 0)
        return set_err(err, errlen, "%s: initrd is not %s", path, want);
    char digest[IMAGE_DIGEST_LEN + 2];
    if (find_token(e->options, "gatehouse.image=", digest, sizeof digest) == 0) {
        if (!image_digest_valid(digest))
            return set_err(err, errlen, "%s: gatehouse.image= is not sha256:<64 hex>", path);
        strcpy(e->image_digest, digest);
    }
    return 0;
}

static int read_entry(const char *dir, struct boot_entry *e, char *err, size_t errlen)
{
    char path[PATH_BYTES];
    snprintf(path, sizeof path, "%s/%s", dir, e->file);
    char *buf = malloc(ENTRY_MAX + 1);
    if (!buf)
        return set_err(err, errlen, "%s: out of memory", path);
    if (read_small_file(path, buf, ENTRY_MAX + 1, err, errlen) < 0) {
        free(buf);
        return -1;
    }
    char linux_path[256] = "", initrd_path[256] = "";
    e->options[0] = e->version[0] = e->image_digest[0] = '\0';
    const char *p = buf;
    int rc = 0;
    while (*p && rc == 0) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (parse_entry_line(p, len, e, linux_path, initrd_path, sizeof linux_path) < 0)
            rc = set_err(err, errlen, "%s: a line is too long for its field", path);
        p += len + (nl ? 1 : 0);
    }
    free(buf);
    if (rc < 0)
        return -1;
    return check_entry(e, linux_path, initrd_path, path, err, errlen);
}

/* ---- reading the state ---- */

static int entry_order(const void *a, const void *b)
{
    const struct boot_entry *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return strcmp(x->file, y->file);
}

static int read_entries(struct boot_state *st, char *err, size_t errlen)
{
    char dir[DIR_BYTES];
    snprintf(dir, sizeof dir, "%s/" ENTRIES_DIR, st->esp);
    DIR *d = opendir(dir);
    if (!d)
        return set_err(err, errlen, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct boot_entry e;
        if (parse_entry_name(de->d_name, &e) < 0)
            continue;
        if (st->count == BOOT_MAX_ENTRIES)
            rc = set_err(err, errlen, "%s: more than %d gatehouse entries", dir,
                         BOOT_MAX_ENTRIES);
        else if ((rc = read_entry(dir, &e, err, errlen)) == 0)
            st->entries[st->count++] = e;
    }
    closedir(d);
    if (rc == 0)
        qsort(st->entries, st->count, sizeof st->entries[0], entry_order);
    return rc;
}

static void read_cmdline(const char *cmdline, struct boot_state *st)
{
    char slot[8], image[IMAGE_DIGEST_LEN + 2];
    if (find_token(cmdline, "gatehouse.slot=", slot, sizeof slot) == 0 &&
        (slot[0] == 'a' || slot[0] == 'b') && slot[1] == '\0')
        st->active_slot = slot[0];
    if (find_token(cmdline, "gatehouse.image=", image, sizeof image) == 0 &&
        image_digest_valid(image))
        strcpy(st->active_image, image);
}

/* active: the newest entry of the running slot. fallback: the newest entry of the other
 * slot, newer than active, that ran out of tries - the boot loader came back from it. */
static void find_active_and_fallback(struct boot_state *st)
{
    for (size_t i = 0; i < st->count; i++)
        if (st->active_slot && st->entries[i].slot == st->active_slot)
            st->active = (int)i;
    if (st->active < 0)
        return;
    const struct boot_entry *a = &st->entries[st->active];
    for (size_t i = 0; i < st->count; i++) {
        const struct boot_entry *e = &st->entries[i];
        if (e->slot != a->slot && e->seq > a->seq && e->counting && e->tries_left == 0)
            st->fallback = (int)i;
    }
}

int boot_state_read(const char *esp_dir, const char *cmdline, struct boot_state *st,
                    char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    st->active = st->fallback = -1;
    if (strlen(esp_dir) >= sizeof st->esp)
        return set_err(err, errlen, "ESP path too long");
    strcpy(st->esp, esp_dir);
    read_cmdline(cmdline ? cmdline : "", st);
    if (read_entries(st, err, errlen) < 0)
        return -1;
    find_active_and_fallback(st);
    return 0;
}

int boot_state_load(const char *esp_dir, const char *cmdline_path, struct boot_state *st,
                    char *err, size_t errlen)
{
    size_t len;
    char *cmdline = file_read_all(cmdline_path, CMDLINE_MAX, &len);
    if (!cmdline)
        return set_err(err, errlen, "%s: %s", cmdline_path, strerror(errno));
    int rc = boot_state_read(esp_dir, cmdline, st, err, errlen);
    free(cmdline);
    return rc;
}

char boot_inactive_slot(const struct boot_state *st)
{
    if (st->active_slot == 'a')
        return 'b';
    if (st->active_slot == 'b')
        return 'a';
    return 0;
}

int boot_is_trial(const struct boot_state *st)
{
    return st->active >= 0 && st->entries[st->active].counting;
}

/* ---- writing files durably ---- */

/* fsync of the file or folder at path; with whole_fs, syncfs of the file system it is on. */
static int sync_path(const char *path, int whole_fs, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return set_err(err, errlen, "%s: %s", path, strerror(errno));
    int rc = whole_fs ? syncfs(fd) : fsync(fd);
    int e = errno;
    close(fd);
    if (rc < 0)
        return set_err(err, errlen, "%s: %s: %s", path, whole_fs ? "syncfs" : "fsync", strerror(e));
    return 0;
}

/* fsync and close fd (the file at path); -1 with err naming path. Closes fd either way. */
static int finish_file(int fd, const char *path, char *err, size_t errlen)
{
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        return set_err(err, errlen, "%s: fsync: %s", path, strerror(e));
    }
    if (close(fd) < 0)
        return set_err(err, errlen, "%s: close: %s", path, strerror(errno));
    return 0;
}

static int create_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        set_err(err, errlen, "%s: %s", path, strerror(errno));
    return fd;
}

/* Streams src into dst (created or truncated), then fsyncs it. */
static int copy_file(const char *src, const char *dst, char *err, size_t errlen)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return set_err(err, errlen, "%s: %s", src, strerror(errno));
    char *buf = malloc(COPY_CHUNK);
    int out = buf ? create_file(dst, err, errlen) : -1;
    if (out < 0) {
        if (!buf)
            set_err(err, errlen, "%s: out of memory", dst);
        free(buf);
        close(in);
        return -1;
    }
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = set_err(err, errlen, "%s: %s", src, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (file_write_all(out, buf, (size_t)n) < 0) {
            rc = set_err(err, errlen, "%s: %s", dst, strerror(errno));
            break;
        }
    }
    free(buf);
    close(in);
    if (rc < 0) {
        close(out);
        return -1;
    }
    return finish_file(out, dst, err, errlen);
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return set_err(err, errlen, "%s: %s", path, strerror(errno));
}

/* Renames, then fsyncs the file under its new name: on vfat a rename writes the new directory
 * entry with size 0 and no first cluster, and the file's real size and cluster reach it only
 * when the inode is written back (fsync of the folder does not do that). Seen under qemu: a
 * power cut ~20 s after a bless left the running entry as an empty file, and systemd-boot with
 * nothing to boot. */
static int rename_file(const char *from, const char *to, char *err, size_t errlen)
{
    if (rename(from, to) < 0)
        return set_err(err, errlen, "%s: rename to %s: %s", from, to, strerror(errno));
    return sync_path(to, 0, err, errlen);
}

/* Everything of the ESP's file system to the disk (FAT tables, directory entries), once an
 * install or a bless is done: FAT has no journal to replay. */
static int sync_esp(const char *esp, char *err, size_t errlen)
{
    return sync_path(esp, 1, err, errlen);
}

/* ---- install ---- */

/* ".gatehouse-SEQ-SLOT.tmp": an entry an earlier install did not finish. */
static int is_our_tmp(const char *name)
{
    size_t n = strlen(name);
    return strncmp(name, ".gatehouse-", 11) == 0 && n > 15 && strcmp(name + n - 4, ".tmp") == 0;
}

/* Removes every entry of slot, found by listing the folder (see the header comment), and
 * entries left half-written by an install that was cut off. */
static int remove_slot_entries(const char *esp, char slot, char *err, size_t errlen)
{
    char dir[DIR_BYTES], path[PATH_BYTES];
    snprintf(dir, sizeof dir, "%s/" ENTRIES_DIR, esp);
    DIR *d = opendir(dir);
    if (!d)
        return set_err(err, errlen, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct boot_entry e;
        int ours = parse_entry_name(de->d_name, &e) == 0 && e.slot == slot;
        if (!ours && !is_our_tmp(de->d_name))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) < 0 && errno != ENOENT)
            rc = set_err(err, errlen, "%s: %s", path, strerror(errno));
    }
    closedir(d);
    return rc < 0 ? -1 : file_sync_dir(dir, err, errlen);
}

/* Copies kernel and initrd to SLOTDIR/{vmlinuz,initrd}.new, then renames both into place and
 * fsyncs the folder. The .new files are removed again when something fails. */
static int install_files(const char *esp, char slot, const struct boot_install *in,
                         char *err, size_t errlen)
{
    char top[DIR_BYTES], dir[DIR_BYTES];
    char knew[PATH_BYTES], inew[PATH_BYTES], kfin[PATH_BYTES], ifin[PATH_BYTES];
    snprintf(top, sizeof top, "%s/gatehouse", esp);
    snprintf(dir, sizeof dir, "%s/gatehouse/%c", esp, slot);
    snprintf(knew, sizeof knew, "%s/vmlinuz.new", dir);
    snprintf(inew, sizeof inew, "%s/initrd.new", dir);
    snprintf(kfin, sizeof kfin, "%s/vmlinuz", dir);
    snprintf(ifin, sizeof ifin, "%s/initrd", dir);
    if (make_dir(top, err, errlen) < 0 || make_dir(dir, err, errlen) < 0 ||
        file_sync_dir(top, err, errlen) < 0 || file_sync_dir(esp, err, errlen) < 0)
        return -1;
    if (copy_file(in->kernel_path, knew, err, errlen) < 0 ||
        copy_file(in->initrd_path, inew, err, errlen) < 0 ||
        rename_file(knew, kfin, err, errlen) < 0 ||
        rename_file(inew, ifin, err, errlen) < 0) {
        unlink(knew);
        unlink(inew);
        return -1;
    }
    return file_sync_dir(dir, err, errlen);
}

static void sanitise_version(const char *in, char *out)
{
    size_t n = 0;
    for (; in && in[n] && n < VERSION_MAX; n++) {
        char c = in[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '+' || c == '-';
        out[n] = ok ? c : '_';
    }
    out[n] = '\0';
    if (n == 0)
        strcpy(out, "unknown");
}

/* The active entry's options without our tokens and initrd=, then ours for the new slot. */
static int build_options(const char *base, char slot, const char *digest, char *out, size_t size)
{
    static const char *const drop[] = { "gatehouse.slot=", "gatehouse.image=", "initrd=" };
    size_t have = 0;
    out[0] = '\0';
    const char *p = base;
    while (*p) {
        size_t len;
        const char *start = next_token(&p, &len);
        int keep = len > 0;
        for (size_t i = 0; keep && i < sizeof drop / sizeof drop[0]; i++)
            if (strncmp(start, drop[i], strlen(drop[i])) == 0)
                keep = 0;
        if (keep && append_field(out, size, start, len) < 0)
            return -1;
        have = strlen(out);
    }
    int n = snprintf(out + have, size - have, "%sgatehouse.slot=%c gatehouse.image=%s",
                     have ? " " : "", slot, digest);
    return n < 0 || (size_t)n >= size - have ? -1 : 0;
}

/* Writes the entry under a name the boot loader ignores, fsyncs, renames it to NAME. */
static int write_entry(const char *esp, const char *tmpname, const char *name, const char *text,
                       char *err, size_t errlen)
{
    char dir[DIR_BYTES], tmp[PATH_BYTES], fin[PATH_BYTES];
    snprintf(dir, sizeof dir, "%s/" ENTRIES_DIR, esp);
    snprintf(tmp, sizeof tmp, "%s/%s", dir, tmpname);
    snprintf(fin, sizeof fin, "%s/%s", dir, name);
    int fd = create_file(tmp, err, errlen);
    if (fd < 0)
        return -1;
    if (file_write_all(fd, text, strlen(text)) < 0) {
        set_err(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (finish_file(fd, tmp, err, errlen) < 0 || rename_file(tmp, fin, err, errlen) < 0) {
        unlink(tmp);
        return -1;
    }
    return file_sync_dir(dir, err, errlen);
}

static int check_install(const struct boot_state *st, const struct boot_install *in,
                         char *err, size_t errlen)
{
    if (!boot_inactive_slot(st) || st->active < 0)
        return set_err(err, errlen, "not booted from a Gatehouse boot entry (no gatehouse.slot= "
                       "on the command line matching an entry in %s/" ENTRIES_DIR "): "
                       "refusing to install", st->esp);
    if (boot_is_trial(st))
        return set_err(err, errlen, "%s/" ENTRIES_DIR "/%s: this boot is on trial; refusing to "
                       "replace slot %c, the way back, before it is blessed", st->esp,
                       st->entries[st->active].file, boot_inactive_slot(st));
    if (in->tries < 1 || in->tries > 9)
        return set_err(err, errlen, "boot tries %u: must be 1 to 9", in->tries);
    if (!in->image_digest || !image_digest_valid(in->image_digest))
        return set_err(err, errlen, "image digest is not sha256:<64 lowercase hex>");
    if (!in->kernel_path || !in->initrd_path)
        return set_err(err, errlen, "no kernel or initrd to install");
    unsigned top = 0;
    for (size_t i = 0; i < st->count; i++)
        if (st->entries[i].seq > top)
            top = st->entries[i].seq;
    if (top >= 999999999u)
        return set_err(err, errlen, "%s/" ENTRIES_DIR ": entry sequence number %u is at its end",
                       st->esp, top);
    return 0;
}

int boot_install_slot(const struct boot_state *st, const struct boot_install *in,
                      char *entry_out, size_t entry_outlen, char *err, size_t errlen)
{
    if (check_install(st, in, err, errlen) < 0)
        return -1;
    char slot = boot_inactive_slot(st);
    unsigned seq = 0;
    for (size_t i = 0; i < st->count; i++)
        if (st->entries[i].seq > seq)
            seq = st->entries[i].seq;
    seq++;

    char name[64], tmpname[64], version[VERSION_MAX + 1];
    char options[sizeof st->entries[0].options];
    snprintf(name, sizeof name, "gatehouse-%u-%c+%u.conf", seq, slot, in->tries);
    snprintf(tmpname, sizeof tmpname, ".gatehouse-%u-%c.tmp", seq, slot);
    if (strlen(name) >= entry_outlen)
        return set_err(err, errlen, "%s: name does not fit the caller's buffer", name);
    if (build_options(st->entries[st->active].options, slot, in->image_digest, options,
                      sizeof options) < 0)
        return set_err(err, errlen, "%s/" ENTRIES_DIR "/%s: options would be too long",
                       st->esp, name);
    sanitise_version(in->version, version);

    char *text = malloc(sizeof options + 512);
    if (!text)
        return set_err(err, errlen, "%s: out of memory", name);
    snprintf(text, sizeof options + 512,
             "title Gatehouse %s (slot %c)\nversion %s\nlinux /gatehouse/%c/vmlinuz\n"
             "initrd /gatehouse/%c/initrd\noptions %s\n",
             version, slot == 'a' ? 'A' : 'B', version, slot, slot, options);
    int rc = -1;
    if (remove_slot_entries(st->esp, slot, err, errlen) == 0 &&
        install_files(st->esp, slot, in, err, errlen) == 0 &&
        write_entry(st->esp, tmpname, name, text, err, errlen) == 0 &&
        sync_esp(st->esp, err, errlen) == 0)
        rc = 0;
    free(text);
    if (rc == 0)
        strcpy(entry_out, name);
    return rc;
}

/* ---- bless ---- */

int boot_bless(const struct boot_state *st, char *err, size_t errlen)
{
    if (st->active < 0)
        return set_err(err, errlen, "no active Gatehouse boot entry in %s/" ENTRIES_DIR
                       " to bless", st->esp);
    const struct boot_entry *e = &st->entries[st->active];
    if (!e->counting)
        return 0;
    char dir[DIR_BYTES], from[PATH_BYTES], to[PATH_BYTES];
    snprintf(dir, sizeof dir, "%s/" ENTRIES_DIR, st->esp);
    snprintf(from, sizeof from, "%s/%s", dir, e->file);
    snprintf(to, sizeof to, "%s/%s.conf", dir, e->id);
    if (rename_file(from, to, err, errlen) < 0 || file_sync_dir(dir, err, errlen) < 0)
        return -1;
    return sync_esp(st->esp, err, errlen);
}

/* ---- metrics ---- */

struct out_buf {
    char *p;
    size_t size, len;
    int full;
};

static void put(struct out_buf *o, const char *s, size_t n)
{
    if (o->full || o->len + n >= o->size) {
        o->full = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void puts_(struct out_buf *o, const char *s)
{
    put(o, s, strlen(s));
}

/* A label value in Prometheus text format: \ " and newline escaped. */
static void put_label(struct out_buf *o, const char *name, const char *value, int first)
{
    if (!first)
        puts_(o, ",");
    puts_(o, name);
    puts_(o, "=\"");
    for (const char *v = value; *v; v++) {
        if (*v == '\\')
            puts_(o, "\\\\");
        else if (*v == '"')
            puts_(o, "\\\"");
        else if (*v == '\n')
            puts_(o, "\\n");
        else
            put(o, v, 1);
    }
    puts_(o, "\"");
}

static void put_family(struct out_buf *o, const char *name, const char *help)
{
    puts_(o, "# HELP ");
    puts_(o, name);
    puts_(o, " ");
    puts_(o, help);
    puts_(o, "\n# TYPE ");
    puts_(o, name);
    puts_(o, " gauge\n");
}

int boot_state_metrics(const struct boot_state *st, char *out, size_t outlen)
{
    struct out_buf o = { out, outlen, 0, outlen == 0 };
    if (outlen)
        out[0] = '\0';
    const struct boot_entry *a = st->active >= 0 ? &st->entries[st->active] : NULL;
    put_family(&o, "gatehouse_node_boot_info",
               "The A/B slot, image and boot entry this node started from.");
    if (st->active_slot) {
        char slot[2] = { st->active_slot, '\0' };
        puts_(&o, "gatehouse_node_boot_info{");
        put_label(&o, "slot", slot, 1);
        put_label(&o, "image_digest",
                  st->active_image[0] ? st->active_image : a ? a->image_digest : "", 0);
        put_label(&o, "entry", a ? a->id : "", 0);
        puts_(&o, "} 1\n");
    }
    put_family(&o, "gatehouse_node_boot_trial",
               "1 while the running boot entry is on trial (not yet blessed).");
    puts_(&o, boot_is_trial(st) ? "gatehouse_node_boot_trial 1\n"
                                : "gatehouse_node_boot_trial 0\n");
    put_family(&o, "gatehouse_node_boot_fallback",
               "1 when a newer install ran out of boot tries and the node fell back.");
    const struct boot_entry *f = st->fallback >= 0 ? &st->entries[st->fallback] : NULL;
    char fslot[2] = { f ? f->slot : '\0', '\0' };
    puts_(&o, "gatehouse_node_boot_fallback{");
    put_label(&o, "failed_slot", fslot, 1);
    put_label(&o, "failed_image", f ? f->image_digest : "", 0);
    puts_(&o, f ? "} 1\n" : "} 0\n");
    return o.full ? -1 : (int)o.len;
}
