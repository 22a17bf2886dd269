/*
 * test_boot_slots.c - the A/B slot life cycle on a temporary ESP laid out as mkdisk does:
 * read, install into B, a trial boot, bless, install back into A, a fallback, and the
 * entries and command lines that must be refused or ignored.
 */
#include "boot_slots.h"

#include "check.h"
#include "temp_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIGEST_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DIGEST_B "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIGEST_C "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static char esp[256], stage[256];

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

/* The whole file in a malloc'd buffer (NULL when missing); *len its size. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t have = 0, cap = 0, n;
    do {
        if (have == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap + 1);
        }
        n = fread(buf + have, 1, cap - have, f);
        have += n;
    } while (n > 0);
    fclose(f);
    buf[have] = '\0';
    *len = have;
    return buf;
}

static int same_content(const char *a, const char *b)
{
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static void path_in(char *out, size_t size, const char *rel)
{
    snprintf(out, size, "%s/%s", esp, rel);
}

static int exists(const char *rel)
{
    char p[512];
    path_in(p, sizeof p, rel);
    return access(p, F_OK) == 0;
}

static void put_entry(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/loader/entries/%s", esp, name);
    write_text(p, text);
}

static void rm_entry(const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/loader/entries/%s", esp, name);
    unlink(p);
}

static void rename_entry(const char *from, const char *to)
{
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/loader/entries/%s", esp, from);
    snprintf(b, sizeof b, "%s/loader/entries/%s", esp, to);
    CHECK_INT(rename(a, b), 0);
}

/* Names in loader/entries and gatehouse/SLOT that an install must not leave behind. */
static int leftovers(void)
{
    const char *dirs[] = { "loader/entries", "gatehouse/a", "gatehouse/b" };
    int found = 0;
    for (size_t i = 0; i < 3; i++) {
        char p[512];
        path_in(p, sizeof p, dirs[i]);
        DIR *d = opendir(p);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            if (strstr(de->d_name, ".tmp") || strstr(de->d_name, ".new"))
                found++;
        closedir(d);
    }
    return found;
}

/* A file of n pseudo-random bytes, so a byte-for-byte comparison means something. */
static void write_blob(const char *path, size_t n, unsigned seed)
{
    FILE *f = fopen(path, "wb");
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        fputc((int)(seed >> 16) & 0xff, f);
    }
    fclose(f);
}

static void make_esp(void)
{
    char p[512];
    const char *dirs[] = { "loader", "loader/entries", "gatehouse", "gatehouse/a", "EFI" };
    for (size_t i = 0; i < 5; i++) {
        path_in(p, sizeof p, dirs[i]);
        mkdir(p, 0755);
    }
    path_in(p, sizeof p, "loader/loader.conf");
    write_text(p, "timeout 0\neditor no\n");
    put_entry("gatehouse-1-a.conf",
              "title Gatehouse 1.0 (slot A)\nversion 1.0\nlinux /gatehouse/a/vmlinuz\n"
              "initrd /gatehouse/a/initrd\n"
              "options console=ttyS0 gatehouse.slot=a gatehouse.image=" DIGEST_A "\n");
    path_in(p, sizeof p, "gatehouse/a/vmlinuz");
    write_blob(p, 300000, 1);
    path_in(p, sizeof p, "gatehouse/a/initrd");
    write_blob(p, 200000, 2);
    /* Others' entries and a half-written file: all to be ignored. */
    put_entry("debian.conf", "title Debian\nlinux /vmlinuz\n");
    put_entry("gatehouse-7-a.conf.swp", "junk");
    put_entry("gatehouse-x-a.conf", "junk");
    put_entry("gatehouse-4-c.conf", "junk");
    put_entry("gatehouse-4-a+.conf", "junk");
    put_entry("gatehouse-4-a+1-.conf", "junk");
}

static struct boot_install staged(const char *digest, unsigned tries)
{
    static char kernel[300], initrd[300];
    snprintf(kernel, sizeof kernel, "%s/vmlinuz", stage);
    snprintf(initrd, sizeof initrd, "%s/initrd", stage);
    struct boot_install in = { kernel, initrd, digest, "2.0", tries };
    return in;
}

static void test_initial_state(void)
{
    struct boot_state st;
    char err[512] = "";
    CHECK_INT(boot_state_read(esp, "initrd=\\gatehouse\\a\\initrd console=ttyS0 gatehouse.slot=a "
                              "gatehouse.image=" DIGEST_A "\n", &st, err, sizeof err), 0);
    CHECK_STR(err, "");
    CHECK_INT(st.count, 1);
    CHECK_INT(st.active_slot, 'a');
    CHECK_STR(st.active_image, DIGEST_A);
    CHECK_INT(st.active, 0);
    CHECK_INT(st.fallback, -1);
    CHECK_INT(boot_inactive_slot(&st), 'b');
    CHECK_INT(boot_is_trial(&st), 0);
    CHECK_STR(st.entries[0].id, "gatehouse-1-a");
    CHECK_STR(st.entries[0].version, "1.0");
    CHECK_STR(st.entries[0].image_digest, DIGEST_A);
    CHECK_INT(st.entries[0].counting, 0);

    char m[4096];
    CHECK(boot_state_metrics(&st, m, sizeof m) > 0);
    CHECK(strstr(m, "# HELP gatehouse_node_boot_info ") != NULL);
    CHECK(strstr(m, "# TYPE gatehouse_node_boot_info gauge\n") != NULL);
    CHECK(strstr(m, "# HELP gatehouse_node_boot_trial ") != NULL);
    CHECK(strstr(m, "# TYPE gatehouse_node_boot_trial gauge\n") != NULL);
    CHECK(strstr(m, "# HELP gatehouse_node_boot_fallback ") != NULL);
    CHECK(strstr(m, "# TYPE gatehouse_node_boot_fallback gauge\n") != NULL);
    CHECK(strstr(m, "gatehouse_node_boot_info{slot=\"a\",image_digest=\"" DIGEST_A
                 "\",entry=\"gatehouse-1-a\"} 1\n") != NULL);
    CHECK(strstr(m, "gatehouse_node_boot_trial 0\n") != NULL);
    CHECK(strstr(m, "gatehouse_node_boot_fallback{failed_slot=\"\",failed_image=\"\"} 0\n")
          != NULL);
    CHECK_INT(boot_state_metrics(&st, m, 100), -1);
    /* Blessing a blessed entry does nothing. */
    CHECK_INT(boot_bless(&st, err, sizeof err), 0);
    CHECK(exists("loader/entries/gatehouse-1-a.conf"));
}

static void test_install_b(void)
{
    struct boot_state st;
    char err[512] = "", entry[64] = "", p[512], q[512];
    struct stat before_k, before_i, after_k, after_i;
    path_in(p, sizeof p, "gatehouse/a/vmlinuz");
    stat(p, &before_k);
    path_in(p, sizeof p, "gatehouse/a/initrd");
    stat(p, &before_i);
    size_t alen;
    char *a_initrd = slurp(p, &alen);

    CHECK_INT(boot_state_read(esp, "console=ttyS0 gatehouse.slot=a gatehouse.image=" DIGEST_A,
                              &st, err, sizeof err), 0);
    /* A stale half-written entry from an earlier cut-off install goes away too. */
    put_entry(".gatehouse-9-b.tmp", "partial");
    struct boot_install in = staged(DIGEST_B, 3);
    CHECK_INT(boot_install_slot(&st, &in, entry, sizeof entry, err, sizeof err), 0);
    CHECK_STR(err, "");
    CHECK_STR(entry, "gatehouse-2-b+3.conf");

    size_t len;
    char *text = slurp((snprintf(q, sizeof q, "%s/loader/entries/gatehouse-2-b+3.conf", esp), q),
                       &len);
    CHECK(text != NULL);
    CHECK_STR(text ? text : "",
              "title Gatehouse 2.0 (slot B)\nversion 2.0\nlinux /gatehouse/b/vmlinuz\n"
              "initrd /gatehouse/b/initrd\n"
              "options console=ttyS0 gatehouse.slot=b gatehouse.image=" DIGEST_B "\n");
    free(text);

    snprintf(p, sizeof p, "%s/vmlinuz", stage);
    path_in(q, sizeof q, "gatehouse/b/vmlinuz");
    CHECK(same_content(p, q));
    snprintf(p, sizeof p, "%s/initrd", stage);
    path_in(q, sizeof q, "gatehouse/b/initrd");
    CHECK(same_content(p, q));

    path_in(p, sizeof p, "gatehouse/a/vmlinuz");
    stat(p, &after_k);
    path_in(p, sizeof p, "gatehouse/a/initrd");
    stat(p, &after_i);
    size_t alen2;
    char *a_after = slurp(p, &alen2);
    CHECK(a_initrd && a_after && alen == alen2 && memcmp(a_initrd, a_after, alen) == 0);
    free(a_initrd);
    free(a_after);
    CHECK(before_k.st_ino == after_k.st_ino && before_k.st_mtim.tv_nsec == after_k.st_mtim.tv_nsec &&
          before_k.st_mtime == after_k.st_mtime);
    CHECK(before_i.st_ino == after_i.st_ino && before_i.st_mtim.tv_nsec == after_i.st_mtim.tv_nsec &&
          before_i.st_mtime == after_i.st_mtime);
    CHECK(exists("loader/entries/gatehouse-1-a.conf"));
    CHECK(exists("loader/entries/debian.conf"));
    CHECK_INT(leftovers(), 0);
}

static void test_trial_bless_and_back(void)
{
    struct boot_state st;
    char err[512] = "", entry[64] = "", m[4096];
    const char *cmdline = "console=ttyS0 gatehouse.slot=b gatehouse.image=" DIGEST_B;

    /* systemd-boot counted one try down and booted B. */
    rename_entry("gatehouse-2-b+3.conf", "gatehouse-2-b+2-1.conf");
    CHECK_INT(boot_state_read(esp, cmdline, &st, err, sizeof err), 0);
    CHECK_INT(st.count, 2);
    CHECK_INT(st.active, 1);
    CHECK_STR(st.entries[1].file, "gatehouse-2-b+2-1.conf");
    CHECK_INT(st.entries[1].tries_left, 2);
    CHECK_INT(st.entries[1].tries_done, 1);
    CHECK_INT(boot_is_trial(&st), 1);
    CHECK_INT(st.fallback, -1);
    CHECK(boot_state_metrics(&st, m, sizeof m) > 0);
    CHECK(strstr(m, "gatehouse_node_boot_trial 1\n") != NULL);
    CHECK(strstr(m, "entry=\"gatehouse-2-b\"") != NULL);

    /* Before blessing, A is the way back: not to be replaced. */
    struct boot_install in = staged(DIGEST_C, 2);
    CHECK_INT(boot_install_slot(&st, &in, entry, sizeof entry, err, sizeof err), -1);
    CHECK(strstr(err, "on trial") != NULL);
    CHECK(exists("loader/entries/gatehouse-1-a.conf"));

    CHECK_INT(boot_bless(&st, err, sizeof err), 0);
    CHECK(exists("loader/entries/gatehouse-2-b.conf"));
    CHECK(!exists("loader/entries/gatehouse-2-b+2-1.conf"));

    CHECK_INT(boot_state_read(esp, cmdline, &st, err, sizeof err), 0);
    CHECK_INT(boot_is_trial(&st), 0);
    CHECK_INT(boot_inactive_slot(&st), 'a');
    CHECK_INT(boot_install_slot(&st, &in, entry, sizeof entry, err, sizeof err), 0);
    CHECK_STR(entry, "gatehouse-3-a+2.conf");
    CHECK(!exists("loader/entries/gatehouse-1-a.conf"));
    CHECK(exists("loader/entries/gatehouse-2-b.conf"));
    char p[512], q[512];
    snprintf(p, sizeof p, "%s/vmlinuz", stage);
    path_in(q, sizeof q, "gatehouse/a/vmlinuz");
    CHECK(same_content(p, q));
    CHECK_INT(leftovers(), 0);
}

/* The new A ran out of tries; systemd-boot went back to B. */
static void test_fallback(void)
{
    struct boot_state st;
    char err[512] = "", m[4096];
    rename_entry("gatehouse-3-a+2.conf", "gatehouse-3-a+0-3.conf");
    CHECK_INT(boot_state_read(esp, "gatehouse.slot=b gatehouse.image=" DIGEST_B, &st, err,
                              sizeof err), 0);
    CHECK_INT(st.count, 2);
    CHECK_INT(st.active, 0);
    CHECK_STR(st.entries[0].file, "gatehouse-2-b.conf");
    CHECK_INT(st.fallback, 1);
    CHECK_STR(st.entries[1].file, "gatehouse-3-a+0-3.conf");
    CHECK_INT(boot_is_trial(&st), 0);
    CHECK(boot_state_metrics(&st, m, sizeof m) > 0);
    CHECK(strstr(m, "gatehouse_node_boot_fallback{failed_slot=\"a\",failed_image=\"" DIGEST_C
                 "\"} 1\n") != NULL);
    CHECK(strstr(m, "gatehouse_node_boot_info{slot=\"b\",image_digest=\"" DIGEST_B
                 "\",entry=\"gatehouse-2-b\"} 1\n") != NULL);
}

static void test_refusals(void)
{
    struct boot_state st;
    char err[512] = "", entry[64] = "", m[4096];
    struct boot_install in = staged(DIGEST_C, 3);

    CHECK_INT(boot_state_read("/nonexistent/esp", "gatehouse.slot=a", &st, err, sizeof err), -1);
    CHECK(strstr(err, "/nonexistent/esp/loader/entries: ") != NULL);

    /* Not booted from a Gatehouse entry. */
    CHECK_INT(boot_state_read(esp, "console=ttyS0 root=/dev/sda1\n", &st, err, sizeof err), 0);
    CHECK_INT(st.active_slot, 0);
    CHECK_INT(boot_inactive_slot(&st), 0);
    CHECK_INT(st.active, -1);
    CHECK_INT(boot_install_slot(&st, &in, entry, sizeof entry, err, sizeof err), -1);
    CHECK(strstr(err, "not booted from a Gatehouse boot entry") != NULL);
    CHECK_INT(boot_bless(&st, err, sizeof err), -1);
    CHECK(boot_state_metrics(&st, m, sizeof m) > 0);
    CHECK(strstr(m, "gatehouse_node_boot_info{") == NULL);
    CHECK(strstr(m, "# TYPE gatehouse_node_boot_info gauge") != NULL);
    CHECK(strstr(m, "gatehouse_node_boot_trial 0\n") != NULL);

    CHECK_INT(boot_state_read(esp, "gatehouse.slot=c", &st, err, sizeof err), 0);
    CHECK_INT(st.active_slot, 0);

    CHECK_INT(boot_state_read(esp, "gatehouse.slot=b gatehouse.image=sha256:zz", &st, err,
                              sizeof err), 0);
    CHECK_STR(st.active_image, "");
    in.tries = 0;
    CHECK_INT(boot_install_slot(&st, &in, entry, sizeof entry, err, sizeof err), -1);
    CHECK(strstr(err, "1 to 9") != NULL);
    in.tries = 10;
    CHECK_INT(boot_install_slot(&st, &in, entry, sizeof entry, err, sizeof err), -1);
    CHECK(strstr(err, "1 to 9") != NULL);
    in.tries = 1;
    in.image_digest = "sha256:ABC";
    CHECK_INT(boot_install_slot(&st, &in, entry, sizeof entry, err, sizeof err), -1);
    CHECK(strstr(err, "digest") != NULL);
    /* Nothing was touched by the refusals. */
    CHECK(exists("loader/entries/gatehouse-3-a+0-3.conf"));

    /* A missing staged file: the entry of the inactive slot is gone, nothing half-done stays. */
    in.image_digest = DIGEST_C;
    in.kernel_path = "/nonexistent/vmlinuz";
    CHECK_INT(boot_install_slot(&st, &in, entry, sizeof entry, err, sizeof err), -1);
    CHECK(strstr(err, "/nonexistent/vmlinuz") != NULL);
    CHECK(!exists("loader/entries/gatehouse-3-a+0-3.conf"));
    CHECK(exists("loader/entries/gatehouse-2-b.conf"));
    CHECK_INT(leftovers(), 0);
}

static void test_bad_entries(void)
{
    struct boot_state st;
    char err[512] = "";
    const char *cmd = "gatehouse.slot=b";

    put_entry("gatehouse-5-a.conf", "title x\nlinux /gatehouse/a/vmlinuz\n");
    CHECK_INT(boot_state_read(esp, cmd, &st, err, sizeof err), -1);
    CHECK(strstr(err, "gatehouse-5-a.conf: no options line") != NULL);

    put_entry("gatehouse-5-a.conf", "options gatehouse.slot=b\n");
    CHECK_INT(boot_state_read(esp, cmd, &st, err, sizeof err), -1);
    CHECK(strstr(err, "gatehouse-5-a.conf") != NULL && strstr(err, "slot") != NULL);

    put_entry("gatehouse-5-a.conf", "linux /gatehouse/b/vmlinuz\noptions gatehouse.slot=a\n");
    CHECK_INT(boot_state_read(esp, cmd, &st, err, sizeof err), -1);
    CHECK(strstr(err, "linux") != NULL);

    put_entry("gatehouse-5-a.conf", "options gatehouse.slot=a gatehouse.image=sha256:12\n");
    CHECK_INT(boot_state_read(esp, cmd, &st, err, sizeof err), -1);
    CHECK(strstr(err, "gatehouse.image") != NULL);

    /* Options longer than the field. */
    char *big = malloc(4000);
    memset(big, 'x', 3000);
    strcpy(big + 3000, "\noptions gatehouse.slot=a\n");
    memcpy(big, "options ", 8);
    put_entry("gatehouse-5-a.conf", big);
    CHECK_INT(boot_state_read(esp, cmd, &st, err, sizeof err), -1);
    CHECK(strstr(err, "too long") != NULL);
    free(big);

    /* Larger than 16 kB. */
    big = malloc(20000);
    memset(big, '#', 19999);
    big[19999] = '\0';
    put_entry("gatehouse-5-a.conf", big);
    CHECK_INT(boot_state_read(esp, cmd, &st, err, sizeof err), -1);
    CHECK(strstr(err, "gatehouse-5-a.conf") != NULL);
    free(big);

    /* Comments, blank lines, tabs, CRLF and two options lines are fine. */
    put_entry("gatehouse-5-a.conf", "# made by hand\r\n\r\ntitle\tX\r\nversion\t 5\r\n"
              "options quiet\r\noptions  gatehouse.slot=a\r\nsort-key z\r\n");
    CHECK_INT(boot_state_read(esp, cmd, &st, err, sizeof err), 0);
    CHECK_INT(st.count, 2);
    CHECK_STR(st.entries[1].version, "5");
    CHECK_STR(st.entries[1].options, "quiet gatehouse.slot=a");
    CHECK_STR(st.entries[1].image_digest, "");
    rm_entry("gatehouse-5-a.conf");
}

static void test_version_and_options(void)
{
    struct boot_state st;
    char err[512] = "", entry[64] = "", p[512];
    /* The running entry has odd options: initrd= and an old digest must not carry over. */
    put_entry("gatehouse-2-b.conf",
              "version 2.0\noptions initrd=\\x gatehouse.slot=b  quiet gatehouse.image=" DIGEST_B
              " console=ttyS0\n");
    CHECK_INT(boot_state_read(esp, "gatehouse.slot=b", &st, err, sizeof err), 0);
    struct boot_install in = staged(DIGEST_C, 1);
    in.version = "1.2 beta/\"x\"\n;rm -rf"
                 "0123456789012345678901234567890123456789012345678901234567890123456789";
    CHECK_INT(boot_install_slot(&st, &in, entry, sizeof entry, err, sizeof err), 0);
    CHECK_STR(entry, "gatehouse-3-a+1.conf");
    CHECK_INT(boot_state_read(esp, "gatehouse.slot=b", &st, err, sizeof err), 0);
    CHECK_INT(st.count, 2);
    const struct boot_entry *e = &st.entries[1];
    CHECK_STR(e->version,
              "1.2_beta__x___rm_-rf01234567890123456789012345678901234567890123");
    CHECK_INT(strlen(e->version), 64);
    CHECK_STR(e->options, "quiet console=ttyS0 gatehouse.slot=a gatehouse.image=" DIGEST_C);

    in.version = "";
    in.tries = 9;
    rm_entry(e->file);
    CHECK_INT(boot_state_read(esp, "gatehouse.slot=b", &st, err, sizeof err), 0);
    CHECK_INT(boot_install_slot(&st, &in, entry, sizeof entry, err, sizeof err), 0);
    CHECK_STR(entry, "gatehouse-3-a+9.conf");
    size_t len;
    snprintf(p, sizeof p, "%s/loader/entries/%s", esp, entry);
    char *text = slurp(p, &len);
    CHECK(text && strncmp(text, "title Gatehouse unknown (slot A)\nversion unknown\n", 49) == 0);
    free(text);

    /* entry_out too small: refused before anything is written. */
    char tiny[8];
    CHECK_INT(boot_install_slot(&st, &in, tiny, sizeof tiny, err, sizeof err), -1);
    CHECK(exists("loader/entries/gatehouse-3-a+9.conf"));
}

static void test_metrics_escaping(void)
{
    struct boot_state st;
    memset(&st, 0, sizeof st);
    st.active = st.fallback = -1;
    st.active_slot = 'a';
    st.count = 1;
    st.active = 0;
    st.entries[0].slot = 'a';
    strcpy(st.entries[0].id, "we\"ird\\id\n");
    char m[4096];
    CHECK(boot_state_metrics(&st, m, sizeof m) > 0);
    CHECK(strstr(m, "entry=\"we\\\"ird\\\\id\\n\"} 1\n") != NULL);
    CHECK(strstr(m, "image_digest=\"\"") != NULL);
}

int main(void)
{
    char tmpl[] = "/tmp/test_boot_slots.XXXXXX";
    char *root = mkdtemp(tmpl);
    if (!root)
        return 2;
    snprintf(esp, sizeof esp, "%s/esp", root);
    snprintf(stage, sizeof stage, "%s/stage", root);
    mkdir(esp, 0755);
    mkdir(stage, 0755);
    char p[300];
    snprintf(p, sizeof p, "%s/vmlinuz", stage);
    write_blob(p, 3 * 1024 * 1024 + 17, 7);   /* more than one copy chunk */
    snprintf(p, sizeof p, "%s/initrd", stage);
    write_blob(p, 1024 * 1024 + 5, 8);
    make_esp();

    test_initial_state();
    test_install_b();
    test_trial_bless_and_back();
    test_fallback();
    test_refusals();
    test_bad_entries();
    test_version_and_options();
    test_metrics_escaping();

    temp_dir_remove(root);
    return check_summary("test_boot_slots");
}
