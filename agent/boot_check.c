/*
 * boot_check.c - `gatehouse-agent boot-check`: is this boot good? (see upgrade.h)
 *
 * Health is what a user of the node would see: the proxy's admin /readyz says 200 (routes
 * loaded, listeners open, not draining) and its HTTP listener answers a request with an HTTP
 * response. Booting, or the agent running, is not enough. Only a trial boot (its entry still
 * counting) is judged; a blessed one is just reported.
 *
 * The verdict goes three ways: the log (console and s6-log), STATE/boot.prom (which the proxy's
 * /metrics appends), and the boot entry itself (blessed, or left counting and the machine
 * rebooted so the boot loader spends a try).
 */
#include "upgrade.h"

#include "boot_slots.h"
#include "file_io.h"
#include "log.h"
#include "node_config.h"
#include "node_reboot.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define BOOT_METRICS_FILE "boot.prom"
#define DEFAULT_HTTP_LISTENER "0.0.0.0:80"   /* the proxy's s6 run script's default */

struct check_cli {
    const char *config, *esp, *cmdline, *state_dir;
    long timeout_ms;
    int no_reboot;
};

/* ---- health ---- */

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* GET url; returns the HTTP status, or 0 when nothing answered. */
static long http_status(const char *url)
{
    CURL *h = curl_easy_init();
    if (!h)
        return 0;
    long status = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return status;
}

/* A listen address as a URL reaching it from this machine: wildcards become loopback. */
static void local_url(const char *listen, const char *path, char *url, size_t len)
{
    const char *port = strrchr(listen, ':');
    if (strncmp(listen, "0.0.0.0:", 8) == 0 || listen[0] == ':')
        snprintf(url, len, "http://127.0.0.1%s%s", port, path);
    else if (strncmp(listen, "[::]:", 5) == 0)
        snprintf(url, len, "http://[::1]%s%s", port, path);
    else
        snprintf(url, len, "http://%s%s", listen, path);
}

/* 1 when the proxy is ready and its HTTP listener answers; why says what is missing. */
static int proxy_healthy(const struct node_config *cfg, char *why, size_t len)
{
    char ready_url[300], http_url[300];
    local_url(cfg->proxy_admin, "/readyz", ready_url, sizeof ready_url);
    long ready = http_status(ready_url);
    if (ready != 200) {
        if (ready)
            snprintf(why, len, "%s answered %ld", ready_url, ready);
        else
            snprintf(why, len, "no answer from %s", ready_url);
        return 0;
    }
    local_url(cfg->proxy_http[0] ? cfg->proxy_http : DEFAULT_HTTP_LISTENER, "/", http_url,
              sizeof http_url);
    if (http_status(http_url) == 0) {
        snprintf(why, len, "ready, but %s gave no HTTP answer", http_url);
        return 0;
    }
    snprintf(why, len, "ready and answering on %s", http_url);
    return 1;
}

static int wait_healthy(const struct node_config *cfg, long timeout_ms, char *why, size_t len)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (proxy_healthy(cfg, why, len))
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (elapsed >= timeout_ms)
            return 0;
        usleep(500 * 1000);
    }
}

/* ---- reporting ---- */

/* STATE/boot.prom, replaced atomically like the agent's metrics.prom (file_io). */
static void write_boot_metrics(const char *state_dir, const struct boot_state *st)
{
    char text[4096], err[512];
    if (boot_state_metrics(st, text, sizeof text) < 0)
        return;
    if (file_replace(state_dir, BOOT_METRICS_FILE, text, strlen(text), 0644, (uid_t)-1,
                     (gid_t)-1, err, sizeof err) < 0)
        log_warn("%s", err);
}

static void report_boot(const struct boot_state *st)
{
    const struct boot_entry *e = &st->entries[st->active];
    log_info("booted slot %c, image %s, entry %s%s", st->active_slot,
             st->active_image[0] ? st->active_image : e->image_digest, e->file,
             e->counting ? " (on trial)" : "");
    if (st->fallback >= 0) {
        const struct boot_entry *f = &st->entries[st->fallback];
        log_warn("fell back: slot %c (image %s, entry %s) used up its %u tries without becoming "
                 "healthy; running slot %c again", f->slot, f->image_digest, f->file,
                 f->tries_done, st->active_slot);
    }
}

static int read_state(const struct check_cli *cli, const struct node_config *cfg,
                      struct boot_state *st)
{
    char err[1024];
    int rc = boot_state_load(cfg->upgrade_esp, cli->cmdline, st, err, sizeof err);
    if (rc < 0)
        log_error("boot state: %s", err);
    return rc;
}

/* ---- the check ---- */

static int check_boot(const struct check_cli *cli, const struct node_config *cfg)
{
    static struct boot_state st;
    struct stat sb;
    if (stat(cfg->upgrade_esp, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
        log_info("no EFI system partition at %s: not booted from a Gatehouse disk, nothing to "
                 "check", cfg->upgrade_esp);
        return 0;
    }
    if (read_state(cli, cfg, &st) < 0)
        return 1;
    if (st.active < 0) {
        log_warn("no boot entry for this boot (gatehouse.slot=%c) in %s/loader/entries",
                 st.active_slot ? st.active_slot : '?', st.esp);
        write_boot_metrics(cfg->agent_state_dir, &st);
        return 0;
    }
    report_boot(&st);
    write_boot_metrics(cfg->agent_state_dir, &st);
    if (!boot_is_trial(&st))
        return 0;

    char why[512], err[1024];
    long timeout = cli->timeout_ms >= 0 ? cli->timeout_ms : cfg->upgrade_health_timeout_ms;
    log_info("trial boot: waiting up to %ld s for the proxy to be ready and serving", timeout / 1000);
    if (wait_healthy(cfg, timeout, why, sizeof why)) {
        if (boot_bless(&st, err, sizeof err) < 0) {
            log_error("slot %c is healthy (%s) but cannot be marked good: %s", st.active_slot,
                      why, err);
            return 1;
        }
        log_info("slot %c (image %s) is healthy (%s): marked good", st.active_slot,
                 st.entries[st.active].image_digest, why);
        if (read_state(cli, cfg, &st) == 0)
            write_boot_metrics(cfg->agent_state_dir, &st);
        return 0;
    }
    const struct boot_entry *e = &st.entries[st.active];
    char reason[1024];
    snprintf(reason, sizeof reason, "slot %c (image %s) not healthy after %ld s (%s); %u "
             "tries left", st.active_slot, e->image_digest, timeout / 1000, why, e->tries_left);
    log_error("%s", reason);
    if (cli->no_reboot)
        return 1;
    node_reboot(reason);
    return 1;
}

static int parse_duration_seconds(const char *text, long *ms)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end || v < 0 || v > 86400)
        return -1;
    *ms = v * 1000;
    return 0;
}

int boot_check_command(int argc, char **argv)
{
    enum { O_CONFIG = 256, O_ESP, O_CMDLINE, O_STATE, O_TIMEOUT, O_NO_REBOOT };
    static const struct option options[] = {
        { "config", required_argument, NULL, O_CONFIG }, { "esp", required_argument, NULL, O_ESP },
        { "cmdline", required_argument, NULL, O_CMDLINE },
        { "state-dir", required_argument, NULL, O_STATE },
        { "timeout", required_argument, NULL, O_TIMEOUT },
        { "no-reboot", no_argument, NULL, O_NO_REBOOT },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    struct check_cli cli = { .cmdline = "/proc/cmdline", .timeout_ms = -1 };
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case O_CONFIG: cli.config = optarg; break;
        case O_ESP: cli.esp = optarg; break;
        case O_CMDLINE: cli.cmdline = optarg; break;
        case O_STATE: cli.state_dir = optarg; break;
        case O_TIMEOUT:
            if (parse_duration_seconds(optarg, &cli.timeout_ms) < 0) {
                fprintf(stderr, "gatehouse-agent boot-check: --timeout: seconds, 0..86400\n");
                return EXIT_USAGE;
            }
            break;
        case O_NO_REBOOT: cli.no_reboot = 1; break;
        case 'h':
            printf("usage: gatehouse-agent boot-check [--config FILE] [--esp DIR] [--timeout S]\n"
                   "       [--no-reboot] [--state-dir DIR] [--cmdline FILE]\n"
                   "On a trial boot, marks the boot entry good once the proxy is ready and\n"
                   "serving, or reboots after upgrade.healthTimeout (default 180 s) so the boot\n"
                   "loader spends a try. Reports the slot, image and any fallback in the log and\n"
                   "STATE/boot.prom.\n");
            return 0;
        default: return EXIT_USAGE;
        }
    }
    static struct node_config cfg;
    char err[1024];
    node_config_defaults(&cfg);
    if (node_config_load(&cfg, cli.config ? cli.config : NODE_CONFIG_DEFAULT_PATH, !cli.config,
                         err, sizeof err) < 0) {
        /* A trial boot must still be judged (and rebooted if it does not serve): a check that
         * gave up here would leave the node on the new image for good. */
        log_error("%s; judging this boot with the default settings", err);
        node_config_defaults(&cfg);
    }
    if (cli.esp)
        snprintf(cfg.upgrade_esp, sizeof cfg.upgrade_esp, "%s", cli.esp);
    if (cli.state_dir)
        snprintf(cfg.agent_state_dir, sizeof cfg.agent_state_dir, "%s", cli.state_dir);
    return check_boot(&cli, &cfg);
}
