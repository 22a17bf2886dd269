/*
 * node_reboot.c - see node_reboot.h.
 *
 * The supervisor is asked with a fixed argument vector (no shell): s6-svc -wD -T 20000 -d
 * SERVICE waits until the proxy is down (or 20 s). The reboot itself is reboot(2); s6-svscan
 * as PID 1 has nothing to save, and the data partition is ext4 with a journal, synced first.
 */
#include "node_reboot.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop_proxy(void)
{
    struct stat st;
    if (stat(NODE_PROXY_SERVICE, &st) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = { "s6-svc", "-wD", "-T", "20000", "-d", NODE_PROXY_SERVICE, NULL };
        execvp(argv[0], argv);
        _exit(127);
    }
    if (pid > 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
}

/* Only a Gatehouse node is rebooted: PID 1 there is s6-svscan. The same commands run by hand
 * on a workstation or a build machine (tests do) must not take it down. */
static int on_gatehouse_node(char *pid1, size_t len)
{
    FILE *f = fopen("/proc/1/comm", "re");
    pid1[0] = '\0';
    if (f) {
        if (fgets(pid1, (int)len, f))
            pid1[strcspn(pid1, "\n")] = '\0';
        fclose(f);
    }
    return strcmp(pid1, "s6-svscan") == 0;
}

int node_reboot(const char *why)
{
    char pid1[64];
    if (!on_gatehouse_node(pid1, sizeof pid1)) {
        log_error("not rebooting (%s): this is not a Gatehouse node (PID 1 is %s, not s6-svscan)",
                  why, pid1[0] ? pid1 : "unknown");
        return -1;
    }
    if (geteuid() != 0) {
        log_error("cannot reboot (%s): not running as root", why);
        return -1;
    }
    log_warn("rebooting: %s", why);
    stop_proxy();
    sync();
    reboot(RB_AUTOBOOT);
    log_error("reboot: %s", strerror(errno));
    return -1;
}
