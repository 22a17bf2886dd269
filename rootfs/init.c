/*
 * init.c - stage 1 of the appliance: PID 1 in the initramfs, until it execs s6-svscan.
 *
 * The whole userland lives in the initramfs (RAM, never written back), so this program only
 * prepares what the s6 tree expects and gets out of the way:
 *   1. mount /proc, /sys, /dev (devtmpfs), /run and /tmp (tmpfs); console on stdout/stderr
 *   2. load the modules listed in /lib/modules/load.order (finit_module, in file order)
 *   3. find the GATEHOUSE_DATA ext4 partition (-> /var/lib/gatehouse, else a tmpfs there),
 *      the NoCloud cidata volume (iso9660/vfat -> /run/cidata, read-only) and the EFI system
 *      partition (vfat GH_ESP -> /boot/efi, read-write: the agent installs A/B slots there, see
 *      agent/boot_slots.h; absent when the kernel was booted directly, which is fine)
 *   4. apply cloud-config (or the last good one, see cloud_config.h): hostname (or meta-data's
 *      local-hostname), files, and the network plan in /run/gatehouse/network.env for an s6
 *      oneshot to apply
 *   5. note gatehouse.debug_shell=1 from the kernel command line in /run/gatehouse/debug_shell,
 *      and gatehouse.image=sha256:... (the boot entry knows which image it boots; the image
 *      cannot hold its own digest) in /run/gatehouse/image-digest
 *   6. exec s6-svscan on /etc/s6/services
 * The decisions live in cloud_config.c and blockdev.c, which are unit tested; what is left here
 * is system calls in order. PID 1 must never exit (the kernel panics): a fatal error before the
 * exec prints why, then runs the serial debug shell if the command line enabled it, else waits.
 */
#include "blockdev.h"
#include "cloud_config.h"
#include "file_read.h"
#include "image_digest.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- every path and constant the image and the s6 tree agree on ---- */
#define MODULES_DIR       "/lib/modules"
#define MODULES_ORDER     MODULES_DIR "/load.order"
#define SYS_BLOCK_DIR     "/sys/class/block"
#define CIDATA_LABEL      "cidata"              /* matched ignoring case */
#define CIDATA_DIR        "/run/cidata"
#define USER_DATA         CIDATA_DIR "/user-data"
#define META_DATA         CIDATA_DIR "/meta-data"
#define DATA_LABEL        "GATEHOUSE_DATA"      /* matched exactly */
#define ESP_LABEL         "GH_ESP"              /* matched exactly; tools/image/mkdisk writes it */
#define ESP_DIR           "/boot/efi"           /* BOOT_ESP_DEFAULT in agent/boot_slots.h */
#define ESP_OPTIONS       "umask=0077,shortname=mixed,errors=remount-ro"
#define DATA_DIR          "/var/lib/gatehouse"
#define LAST_GOOD_DIR     DATA_DIR "/cloud-config"
#define LAST_GOOD         LAST_GOOD_DIR "/last-good.yaml"
#define RUN_DIR           "/run/gatehouse"
#define NETWORK_ENV       RUN_DIR "/network.env"        /* NET_* assignments, see cloud_config.h */
#define DEBUG_SHELL_FLAG  RUN_DIR "/debug_shell"        /* present = s6 starts a shell on ttyS0 */
#define IMAGE_DIGEST_FILE RUN_DIR "/image-digest"       /* gatehouse.image=, for the agent's metrics */
#define STORAGE_FLAG      RUN_DIR "/storage"            /* "persistent" or "tmpfs" */
#define CC_STATUS         RUN_DIR "/cloud-config.status" /* current, last-good or none */
#define SVSCAN            "/bin/s6-svscan"
#define SERVICES_DIR      "/etc/s6/services"
#define SHELL             "/bin/sh"
#define SERIAL_TTY        "/dev/ttyS0"
#define DEFAULT_HOSTNAME  "gatehouse"
#define ENV_PATH          "PATH=/bin:/sbin:/usr/bin:/usr/sbin"
#define USER_DATA_MAX     (1 << 20)
#define DEVWAIT_MS        1000      /* disks probed asynchronously (NVMe, USB) get this long;
                                     * gatehouse.devwait=MS on the command line overrides */
#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

static int debug_shell;     /* from the command line; read by fatal() */

/* ---- the end states ---- */

static void run_debug_shell_forever(void)
{
    for (;;) {
        pid_t pid = fork();
        if (pid == 0) {
            setsid();
            int fd = open(SERIAL_TTY, O_RDWR | O_NOCTTY);
            if (fd < 0)
                fd = open("/dev/console", O_RDWR | O_NOCTTY);
            if (fd >= 0) {
                ioctl(fd, TIOCSCTTY, 0);
                dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
            }
            char *const argv[] = {"-sh", NULL}, *const envp[] = {ENV_PATH, "TERM=vt100", NULL};
            execve(SHELL, argv, envp);
            _exit(127);
        }
        while (wait(NULL) > 0 || errno == EINTR)    /* reap the shell and orphans */
            ;
        sleep(1);
    }
}

__attribute__((noreturn, format(printf, 1, 2)))
static void fatal(const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    log_error("%s; cannot start the services", why);
    if (debug_shell) {
        log_error("gatehouse.debug_shell is set: starting a shell on %s", SERIAL_TTY);
        run_debug_shell_forever();
    }
    log_error("halted (boot with gatehouse.debug_shell=1 for a shell on %s)", SERIAL_TTY);
    for (;;)
        if (wait(NULL) < 0)
            sleep(3600);
}

/* ---- small file helpers ---- */

static void mkdirs(const char *path, mode_t mode)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(buf, 0755);
        *p = '/';
    }
    mkdir(buf, mode);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    char err[300];
    if (cloud_config_write_file("", path, (const unsigned char *)text, strlen(text), mode, err, sizeof err) < 0)
        log_error("%s", err);
}

/* ---- 1. mounts ---- */

static void mount_or_die(const char *src, const char *dir, const char *type, unsigned long flags,
                         const char *data)
{
    mkdirs(dir, 0755);
    if (mount(src, dir, type, flags, data) < 0 && errno != EBUSY)
        fatal("mount %s on %s: %s", type, dir, strerror(errno));
}

static void mount_early(void)
{
    mount_or_die("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_or_die("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_or_die("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    mount_or_die("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666");
    mount_or_die("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    mount_or_die("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
}

/* The kernel opens /dev/console for PID 1 only if the initramfs has it; devtmpfs always does. */
static void console_stdio(void)
{
    int null = open("/dev/null", O_RDWR), con = open("/dev/console", O_RDWR | O_NOCTTY);
    if (null >= 0)
        dup2(null, 0);
    if (con >= 0)
        dup2(con, 1), dup2(con, 2);
    if (null > 2)
        close(null);
    if (con > 2)
        close(con);
}

/* ---- 2. modules ---- */

static void load_module(char *line, const char *where)
{
    char *params = line + strcspn(line, " \t");
    if (*params)
        *params++ = '\0';
    params += strspn(params, " \t");
    char path[512];
    snprintf(path, sizeof path, "%s%s%s", line[0] == '/' ? "" : MODULES_DIR, line[0] == '/' ? "" : "/", line);
    size_t n = strlen(path);
    int compressed = (n > 3 && strcmp(path + n - 3, ".xz") == 0) || (n > 4 && strcmp(path + n - 4, ".zst") == 0) ||
                     (n > 3 && strcmp(path + n - 3, ".gz") == 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_warn("%s: %s: cannot open: %s", where, path, strerror(errno));
        return;
    }
    /* One list serves every machine: a driver without its hardware (or CPU feature) says ENODEV,
     * which is normal; EEXIST means built in or loaded already. */
    if (syscall(SYS_finit_module, fd, params, compressed ? MODULE_INIT_COMPRESSED_FILE : 0) < 0 && errno != EEXIST)
        log_msg(errno == ENODEV ? LOG_DEBUG : LOG_WARN, "%s: %s: cannot load: %s", where, path, strerror(errno));
    close(fd);
}

static void load_modules(void)
{
    FILE *f = fopen(MODULES_ORDER, "re");
    if (!f) {
        if (errno != ENOENT)
            log_warn("%s: cannot open: %s", MODULES_ORDER, strerror(errno));
        return;
    }
    char line[1024], where[300];
    for (unsigned lineno = 1; fgets(line, sizeof line, f); lineno++) {
        line[strcspn(line, "#\r\n")] = '\0';
        char *start = line + strspn(line, " \t");
        if (*start) {
            snprintf(where, sizeof where, "%s:%u", MODULES_ORDER, lineno);
            load_module(start, where);
        }
    }
    fclose(f);
}

/* ---- 3. volumes ---- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct volume {
    const char *label;
    int ignore_case;
    unsigned fs_mask;
    int found;
    char dev[300];
    enum blockdev_fs fs;
};

/* Polls sysfs until both volumes are there or the wait is over. */
static void find_volumes(struct volume *vols, int n, long wait_ms)
{
    long long deadline = now_ms() + wait_ms;
    for (;;) {
        int missing = 0;
        for (int i = 0; i < n; i++) {
            char err[300];
            if (!vols[i].found)
                vols[i].found = blockdev_find(SYS_BLOCK_DIR, "/dev", vols[i].label, vols[i].ignore_case,
                                              vols[i].fs_mask, vols[i].dev, sizeof vols[i].dev, &vols[i].fs,
                                              err, sizeof err) == 0;
            missing += !vols[i].found;
        }
        if (!missing || now_ms() >= deadline)
            return;
        usleep(50 * 1000);
    }
}

/* Returns 1 when the state folder is the data partition, 0 when it fell back to tmpfs. */
static int mount_data(const struct volume *data)
{
    mkdirs(DATA_DIR, 0755);
    if (data->found) {
        if (mount(data->dev, DATA_DIR, "ext4", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME, NULL) == 0) {
            log_info("%s (%s) mounted on %s", data->dev, DATA_LABEL, DATA_DIR);
            return 1;
        }
        log_error("%s (%s): cannot mount as ext4 on %s: %s; state goes to a tmpfs and is lost at reboot",
                  data->dev, DATA_LABEL, DATA_DIR, strerror(errno));
    } else {
        log_warn("no ext4 partition labelled %s: state goes to a tmpfs on %s and is lost at reboot",
                 DATA_LABEL, DATA_DIR);
    }
    if (mount("tmpfs", DATA_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755") < 0)
        fatal("mount tmpfs on %s: %s", DATA_DIR, strerror(errno));
    return 0;
}

static int mount_cidata(const struct volume *cidata)
{
    if (!cidata->found) {
        log_info("no iso9660/vfat volume labelled %s: no new cloud-config", CIDATA_LABEL);
        return 0;
    }
    mkdirs(CIDATA_DIR, 0755);
    if (mount(cidata->dev, CIDATA_DIR, blockdev_fs_name(cidata->fs), MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              NULL) < 0) {
        log_error("%s (%s): cannot mount as %s: %s", cidata->dev, CIDATA_LABEL, blockdev_fs_name(cidata->fs),
                  strerror(errno));
        return 0;
    }
    log_info("%s (%s, %s) mounted read-only on %s", cidata->dev, CIDATA_LABEL, blockdev_fs_name(cidata->fs),
             CIDATA_DIR);
    return 1;
}

/* Read-write (the agent installs slots), but nothing on it ever runs from Linux; umask=0077
 * because vfat has no owners. A failure is logged, not fatal: the node still serves, it only
 * cannot install updates. */
static void mount_esp(const struct volume *esp)
{
    if (!esp->found) {
        log_info("no vfat partition labelled %s: not booted from a Gatehouse disk, no %s", ESP_LABEL, ESP_DIR);
        return;
    }
    mkdirs(ESP_DIR, 0755);
    if (mount(esp->dev, ESP_DIR, "vfat", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME, ESP_OPTIONS) < 0) {
        log_error("%s (%s): cannot mount as vfat on %s: %s", esp->dev, ESP_LABEL, ESP_DIR, strerror(errno));
        return;
    }
    log_info("%s (%s, EFI system partition) mounted on %s", esp->dev, ESP_LABEL, ESP_DIR);
}

/* ---- 4. cloud-config ---- */

/* user-data's hostname, else the cidata meta-data's local-hostname, else the default. */
static const char *pick_hostname(const struct cc_plan *plan, int have_cidata, char meta_name[CC_HOSTNAME_MAX + 1])
{
    if (plan->hostname[0])
        return plan->hostname;
    size_t len;
    char *meta = have_cidata ? file_read_all(META_DATA, USER_DATA_MAX, &len) : NULL;
    int ok = meta && cloud_config_meta_hostname(meta, len, meta_name);
    free(meta);
    return ok ? meta_name : DEFAULT_HOSTNAME;
}

static void apply_plan(const struct cc_plan *plan, int have_cidata)
{
    char meta_name[CC_HOSTNAME_MAX + 1];
    const char *name = pick_hostname(plan, have_cidata, meta_name);
    if (sethostname(name, strlen(name)) < 0)
        log_error("sethostname %s: %s", name, strerror(errno));
    char line[CC_HOSTNAME_MAX + 2];
    snprintf(line, sizeof line, "%s\n", name);
    write_text("/etc/hostname", line, 0644);
    for (size_t i = 0; i < plan->nfiles; i++) {
        const struct cc_file *f = &plan->files[i];
        char err[300];
        if (cloud_config_write_file("", f->path, f->data, f->len, f->mode, err, sizeof err) < 0)
            log_error("write_files: %s", err);
        else
            log_info("wrote %s (%zu bytes, mode %04o)", f->path, f->len, (unsigned)f->mode);
    }
    char *env = cloud_config_network_env(&plan->net);
    if (env)
        write_text(NETWORK_ENV, env, 0644);
    else
        log_error("%s: out of memory", NETWORK_ENV);
    free(env);
}

/* Parses a file into plan; CC_ABSENT when it cannot be read. Reports problems on the console. */
static enum cc_status parse_file(const char *path, struct cc_plan *plan, char **text, size_t *len)
{
    char msg[512];
    cloud_config_plan_init(plan);
    *text = file_read_all(path, USER_DATA_MAX, len);
    if (!*text) {
        if (errno != ENOENT)
            log_error("%s: cannot read: %s", path, strerror(errno));
        return CC_ABSENT;
    }
    enum cc_status st = cloud_config_parse(*text, *len, plan, msg, sizeof msg);
    if (st == CC_INVALID)
        log_error("%s: %s", path, msg);
    else if (st == CC_IGNORED)
        log_warn("%s: %s", path, msg);
    return st;
}

static void store_last_good(const char *text, size_t len)
{
    size_t old_len;
    char *old = file_read_all(LAST_GOOD, USER_DATA_MAX, &old_len);
    int same = old && old_len == len && memcmp(old, text, len) == 0;
    free(old);
    if (same)
        return;
    mkdirs(LAST_GOOD_DIR, 0700);    /* user-data may hold secrets */
    char err[300];
    if (cloud_config_write_file("", LAST_GOOD, (const unsigned char *)text, len, 0600, err, sizeof err) < 0)
        log_error("cannot keep this user-data as the last good one: %s", err);
}

static void configure(int have_cidata, int persistent)
{
    struct cc_plan current, last, none;
    char *cur_text = NULL, *last_text = NULL;
    size_t cur_len = 0, last_len = 0;
    enum cc_status st = CC_ABSENT;
    cloud_config_plan_init(&last);
    cloud_config_plan_init(&none);
    if (have_cidata)
        st = parse_file(USER_DATA, &current, &cur_text, &cur_len);
    else
        cloud_config_plan_init(&current);
    int last_ok = 0, store;
    if (st != CC_OK)
        last_ok = parse_file(LAST_GOOD, &last, &last_text, &last_len) == CC_OK;
    enum cc_choice choice = cloud_config_choose(st, last_ok, &store);
    if (choice == CC_APPLY_CURRENT)
        log_info("applying %s", USER_DATA);
    else if (choice == CC_APPLY_LAST_GOOD)
        log_warn("applying the last good user-data, %s", LAST_GOOD);
    else
        log_warn("no usable cloud-config: defaults (DHCP, no %s)", CC_CONFIG_PATH);
    apply_plan(choice == CC_APPLY_CURRENT ? &current : choice == CC_APPLY_LAST_GOOD ? &last : &none, have_cidata);
    if (store && persistent)
        store_last_good(cur_text, cur_len);
    char status[32];
    snprintf(status, sizeof status, "%s\n", cloud_config_choice_name(choice));
    write_text(CC_STATUS, status, 0644);
    cloud_config_plan_free(&current);
    cloud_config_plan_free(&last);
    free(cur_text);
    free(last_text);
}

/* ---- main ---- */

/* sha256:<64 lowercase hex>, or nothing: the agent puts it in a metric label. */
static void note_image_digest(const char *digest)
{
    if (!digest)
        return;
    if (!image_digest_valid(digest)) {
        log_warn("gatehouse.image=%.80s is not sha256:<64 hex digits>: ignored", digest);
        return;
    }
    char line[80];
    snprintf(line, sizeof line, "%s\n", digest);
    write_text(IMAGE_DIGEST_FILE, line, 0644);
}

int main(int argc, char **argv)
{
    if (getpid() != 1) {
        fprintf(stderr, "gatehouse-init: must run as PID 1 (the appliance's /init)\n");
        return 1;
    }
    umask(022);
    log_init("gatehouse-init", LOG_INFO);
    mount_early();
    console_stdio();

    size_t len;
    char *cmdline = file_read_all("/proc/cmdline", 4096, &len);
    char wait_arg[16] = "", image[80] = "";
    int have_image = cmdline && cmdline_get(cmdline, "gatehouse.image", image, sizeof image);
    debug_shell = cmdline && cmdline_flag(cmdline, "gatehouse.debug_shell");
    long wait_ms = cmdline && cmdline_get(cmdline, "gatehouse.devwait", wait_arg, sizeof wait_arg)
                   ? strtol(wait_arg, NULL, 10) : DEVWAIT_MS;
    free(cmdline);
    mkdirs(RUN_DIR, 0755);
    if (debug_shell) {
        write_text(DEBUG_SHELL_FLAG, "1\n", 0644);
        log_warn("gatehouse.debug_shell=1: a root shell will be started on %s", SERIAL_TTY);
    }
    note_image_digest(have_image ? image : NULL);

    load_modules();
    struct volume vols[2] = {
        {.label = DATA_LABEL, .ignore_case = 0, .fs_mask = BLOCKDEV_FS_EXT4},
        {.label = CIDATA_LABEL, .ignore_case = 1, .fs_mask = BLOCKDEV_FS_ISO9660 | BLOCKDEV_FS_VFAT},
    };
    find_volumes(vols, 2, wait_ms);
    /* No wait of its own: the ESP sits on the boot disk, whose partitions appear together with
     * GATEHOUSE_DATA's; a direct kernel boot has none and should not pay for looking. */
    struct volume esp = {.label = ESP_LABEL, .ignore_case = 0, .fs_mask = BLOCKDEV_FS_VFAT};
    find_volumes(&esp, 1, 0);
    int persistent = mount_data(&vols[0]);
    mount_esp(&esp);
    write_text(STORAGE_FLAG, persistent ? "persistent\n" : "tmpfs\n", 0644);
    configure(mount_cidata(&vols[1]), persistent);

    if (chdir("/") < 0)
        fatal("chdir /: %s", strerror(errno));
    char *const sv_argv[] = {SVSCAN, SERVICES_DIR, NULL}, *const envp[] = {ENV_PATH, NULL};
    execve(SVSCAN, sv_argv, envp);
    fatal("exec %s: %s", SVSCAN, strerror(errno));
}
