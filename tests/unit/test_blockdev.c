/*
 * test_blockdev.c - labels read from real filesystem images made by mkfs.ext4, mkfs.vfat (FAT12,
 * FAT16, FAT32) and genisoimage/xorriso, and the search over a sysfs-like folder. A format
 * whose tool is not installed is skipped and named on stdout.
 */
#include "check.h"
#include "temp_dir.h"
#include "blockdev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[] = "/tmp/test_blockdev_XXXXXX";

static int have(const char *tool)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1 || test -x /usr/sbin/%s || test -x /sbin/%s",
             tool, tool, tool);
    return system(cmd) == 0;
}

static void expect_label(const char *image, enum blockdev_fs want_fs, const char *want_label)
{
    enum blockdev_fs fs;
    char label[BLOCKDEV_LABEL_MAX], err[256];
    CHECK_INT(blockdev_read_label(image, &fs, label, err, sizeof err), 0);
    CHECK_STR(blockdev_fs_name(fs), blockdev_fs_name(want_fs));
    CHECK_STR(label, want_label);
}

static char *image_path(const char *name)
{
    static char path[4][128];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/dev/%s", tmp, name);
    return p;
}

static void test_ext4(void)
{
    if (!have("mkfs.ext4")) { printf("test_blockdev: mkfs.ext4 not installed: ext4 skipped\n"); return; }
    char *img = image_path("vdb2");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "PATH=$PATH:/usr/sbin:/sbin; truncate -s 4M %s && mkfs.ext4 -q -F -L GATEHOUSE_DATA %s", img, img);
    CHECK_INT(system(cmd), 0);
    expect_label(img, BLOCKDEV_FS_EXT4, "GATEHOUSE_DATA");

    char *plain = image_path("vdb3");          /* an unlabelled ext4 */
    snprintf(cmd, sizeof cmd, "PATH=$PATH:/usr/sbin:/sbin; truncate -s 4M %s && mkfs.ext4 -q -F %s", plain, plain);
    CHECK_INT(system(cmd), 0);
    expect_label(plain, BLOCKDEV_FS_EXT4, "");
}

static void test_vfat(void)
{
    if (!have("mkfs.vfat")) { printf("test_blockdev: mkfs.vfat not installed: vfat skipped\n"); return; }
    static const struct { const char *name, *size, *fat, *label; } cases[] = {
        {"vdc", "2M", "12", "CIDATA"},
        {"vdd", "20M", "16", "cidata"},
        {"vde", "40M", "32", "CIDATA"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *img = image_path(cases[i].name), cmd[4096];
        snprintf(cmd, sizeof cmd, "PATH=$PATH:/usr/sbin:/sbin; truncate -s %s %s && "
                 "mkfs.vfat -F %s -n %s %s >/dev/null 2>&1", cases[i].size, img, cases[i].fat,
                 cases[i].label, img);
        CHECK_INT(system(cmd), 0);
        expect_label(img, BLOCKDEV_FS_VFAT, cases[i].label);   /* the search ignores case */
    }
    char *plain = image_path("vdf"), cmd[4096];
    snprintf(cmd, sizeof cmd, "PATH=$PATH:/usr/sbin:/sbin; truncate -s 2M %s && mkfs.vfat %s >/dev/null", plain, plain);
    CHECK_INT(system(cmd), 0);
    expect_label(plain, BLOCKDEV_FS_VFAT, "");
}

static void test_iso9660(void)
{
    const char *tool = have("genisoimage") ? "genisoimage" : have("xorriso") ? "xorriso -as mkisofs" : NULL;
    if (!tool) { printf("test_blockdev: neither genisoimage nor xorriso installed: iso9660 skipped\n"); return; }
    char src[128], cmd[4096];
    snprintf(src, sizeof src, "%s/isosrc", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && printf '#cloud-config\\n' > %s/user-data && "
             "%s -quiet -V cidata -J -r -o %s %s 2>/dev/null", src, src, tool, image_path("sr0"), src);
    CHECK_INT(system(cmd), 0);
    expect_label(image_path("sr0"), BLOCKDEV_FS_ISO9660, "cidata");
}

static void test_not_a_filesystem(void)
{
    char *img = image_path("vdz"), cmd[4096];
    snprintf(cmd, sizeof cmd, "head -c 65536 /dev/urandom > %s", img);
    CHECK_INT(system(cmd), 0);
    expect_label(img, BLOCKDEV_FS_NONE, "");

    char *tiny = image_path("ram0");           /* shorter than any superblock */
    FILE *f = fopen(tiny, "w");
    fputs("x", f);
    fclose(f);
    expect_label(tiny, BLOCKDEV_FS_NONE, "");

    enum blockdev_fs fs;
    char label[BLOCKDEV_LABEL_MAX], err[256];
    CHECK_INT(blockdev_read_label("/nonexistent/vda", &fs, label, err, sizeof err), -1);
    CHECK(strstr(err, "/nonexistent/vda: cannot open: No such file") != NULL);
}

/* Every image in dev/ gets an entry in block/, plus one whose device node is missing. */
static void test_find(void)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/block && for f in %s/dev/*; do mkdir -p %s/block/$(basename $f); done "
             "&& mkdir -p %s/block/vanished", tmp, tmp, tmp, tmp);
    CHECK_INT(system(cmd), 0);
    char sys[512], dev[512], path[512], err[256];
    snprintf(sys, sizeof sys, "%s/block", tmp);
    snprintf(dev, sizeof dev, "%s/dev", tmp);
    enum blockdev_fs fs = BLOCKDEV_FS_NONE;

    if (have("mkfs.ext4")) {
        CHECK_INT(blockdev_find(sys, dev, "GATEHOUSE_DATA", 0, BLOCKDEV_FS_EXT4, path, sizeof path, &fs,
                                err, sizeof err), 0);
        CHECK_STR(path, image_path("vdb2"));
        CHECK_INT(fs, BLOCKDEV_FS_EXT4);
        /* the data label must sit on ext4, and case matters for it */
        CHECK_INT(blockdev_find(sys, dev, "GATEHOUSE_DATA", 0, BLOCKDEV_FS_VFAT, path, sizeof path, &fs,
                                err, sizeof err), 1);
        CHECK_INT(blockdev_find(sys, dev, "gatehouse_data", 0, BLOCKDEV_FS_EXT4, path, sizeof path, &fs,
                                err, sizeof err), 1);
    }
    unsigned cidata_fs = BLOCKDEV_FS_ISO9660 | BLOCKDEV_FS_VFAT;
    if (have("mkfs.vfat") || have("genisoimage") || have("xorriso")) {
        CHECK_INT(blockdev_find(sys, dev, "cidata", 1, cidata_fs, path, sizeof path, &fs, err, sizeof err), 0);
        /* name order: sr0 sorts before vd*; the other matches are logged as warnings */
        int iso = have("genisoimage") || have("xorriso");
        CHECK_STR(path, image_path(iso ? "sr0" : "vdc"));
        CHECK_INT(fs, iso ? BLOCKDEV_FS_ISO9660 : BLOCKDEV_FS_VFAT);
    }
    CHECK_INT(blockdev_find(sys, dev, "cidata", 0, BLOCKDEV_FS_EXT4, path, sizeof path, &fs, err, sizeof err), 1);
    CHECK_INT(blockdev_find("/nonexistent/block", dev, "cidata", 1, cidata_fs, path, sizeof path, &fs,
                            err, sizeof err), -1);
    CHECK(strstr(err, "/nonexistent/block: cannot list") != NULL);
}

int main(void)
{
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    char dev[600];
    snprintf(dev, sizeof dev, "%s/dev", tmp);
    mkdir(dev, 0700);
    test_ext4();
    test_vfat();
    test_iso9660();
    test_not_a_filesystem();
    test_find();
    temp_dir_remove(tmp);
    return check_summary("test_blockdev");
}
