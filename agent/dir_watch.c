/*
 * dir_watch.c - see dir_watch.h. One poll(2) over an inotify descriptor and a signalfd; the
 * debounce is the poll timeout.
 */
#include "dir_watch.h"

#include "log.h"
#include "manifest_dir.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | \
                    IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct dir_watch {
    char *dir;
    int inotify_fd;
    int signal_fd;
    int wd;                      /* -1 while the folder is missing */
    sigset_t old_mask;
    int pending;                 /* a change seen, not yet reported */
    long long first_event_ms, last_event_ms, last_retry_ms;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void note_change(struct dir_watch *w)
{
    long long now = now_ms();
    if (!w->pending)
        w->first_event_ms = now;
    w->last_event_ms = now;
    w->pending = 1;
}

/* Returns 1 when the watch is (now) in place. */
static int try_watch(struct dir_watch *w)
{
    w->last_retry_ms = now_ms();
    w->wd = inotify_add_watch(w->inotify_fd, w->dir, WATCH_MASK);
    if (w->wd >= 0)
        return 1;
    if (errno != ENOENT && errno != ENOTDIR)
        log_warn("cannot watch %s: %s; retrying", w->dir, strerror(errno));
    return 0;
}

static void drop_watch(struct dir_watch *w)
{
    inotify_rm_watch(w->inotify_fd, w->wd);   /* fails harmlessly when the kernel dropped it */
    w->wd = -1;
    log_warn("manifest folder %s went away; waiting for it to come back", w->dir);
    note_change(w);
    if (try_watch(w))
        log_info("watching %s again", w->dir);
}

static int name_matters(const char *name)
{
    return manifest_dir_wants_name(name) || strcmp(name, "..data") == 0;
}

static void handle_event(struct dir_watch *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        note_change(w);
        return;
    }
    if (ev->wd != w->wd)
        return;   /* a watch we already dropped */
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
        drop_watch(w);
        return;
    }
    if (ev->len && name_matters(ev->name))
        note_change(w);
}

static int drain_inotify(struct dir_watch *w, char *err, size_t errlen)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(w->inotify_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            set_err(err, errlen, "reading inotify events: %s", n < 0 ? strerror(errno) : "EOF");
            return -1;
        }
        for (char *p = buf; p < buf + n; ) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            handle_event(w, ev);
            p += sizeof *ev + ev->len;
        }
    }
}

/* The poll timeout: until the debounce is due, the next retry, the caller's deadline (-1: none),
 * or forever. */
static int poll_timeout(const struct dir_watch *w, long long deadline)
{
    long long now = now_ms(), due = deadline;
    if (w->pending) {
        due = w->last_event_ms + DIR_WATCH_DEBOUNCE_MS;
        if (due > w->first_event_ms + DIR_WATCH_MAX_DELAY_MS)
            due = w->first_event_ms + DIR_WATCH_MAX_DELAY_MS;
        if (deadline >= 0 && deadline < due)
            due = deadline;
    }
    if (w->wd < 0) {
        long long retry = w->last_retry_ms + DIR_WATCH_RETRY_MS;
        if (due < 0 || retry < due)
            due = retry;
    }
    if (due < 0)
        return -1;
    return due <= now ? 0 : (int)(due - now);
}

static int debounce_due(const struct dir_watch *w)
{
    long long now = now_ms();
    return w->pending && (now >= w->last_event_ms + DIR_WATCH_DEBOUNCE_MS ||
                          now >= w->first_event_ms + DIR_WATCH_MAX_DELAY_MS);
}

static enum dir_watch_event read_signal(struct dir_watch *w, char *err, size_t errlen)
{
    struct signalfd_siginfo si;
    ssize_t n = read(w->signal_fd, &si, sizeof si);
    if (n != (ssize_t)sizeof si) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return DIR_WATCH_CHANGED;   /* nothing after all: the caller loops */
        set_err(err, errlen, "reading signalfd: %s", n < 0 ? strerror(errno) : "short read");
        return DIR_WATCH_ERROR;
    }
    if (si.ssi_signo == SIGHUP) {
        w->pending = 0;   /* the re-read covers whatever was pending */
        return DIR_WATCH_RELOAD;
    }
    return DIR_WATCH_STOP;
}

enum dir_watch_event dir_watch_next(struct dir_watch *w, int timeout_ms, char *err,
                                    size_t errlen)
{
    long long deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        struct pollfd fds[2] = {
            { .fd = w->signal_fd, .events = POLLIN },
            { .fd = w->inotify_fd, .events = POLLIN },
        };
        int n = poll(fds, 2, poll_timeout(w, deadline));
        if (n < 0 && errno != EINTR) {
            set_err(err, errlen, "poll: %s", strerror(errno));
            return DIR_WATCH_ERROR;
        }
        if (n > 0 && (fds[0].revents & POLLIN)) {
            enum dir_watch_event ev = read_signal(w, err, errlen);
            if (ev != DIR_WATCH_CHANGED)
                return ev;
        }
        if (n > 0 && (fds[1].revents & POLLIN) && drain_inotify(w, err, errlen) < 0)
            return DIR_WATCH_ERROR;
        if (w->wd < 0 && now_ms() >= w->last_retry_ms + DIR_WATCH_RETRY_MS && try_watch(w)) {
            log_info("watching %s again", w->dir);
            note_change(w);
        }
        if (debounce_due(w)) {
            w->pending = 0;
            return DIR_WATCH_CHANGED;
        }
        if (deadline >= 0 && now_ms() >= deadline)
            return DIR_WATCH_TIMEOUT;
    }
}

struct dir_watch *dir_watch_open(const char *dir, char *err, size_t errlen)
{
    struct dir_watch *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    w->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->inotify_fd < 0) {
        set_err(err, errlen, "inotify: %s", strerror(errno));
        free(w->dir);
        free(w);
        return NULL;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &w->old_mask);
    w->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (w->signal_fd < 0) {
        set_err(err, errlen, "signalfd: %s", strerror(errno));
        sigprocmask(SIG_SETMASK, &w->old_mask, NULL);
        close(w->inotify_fd);
        free(w->dir);
        free(w);
        return NULL;
    }
    if (!try_watch(w))
        log_warn("manifest folder %s is not there yet; waiting for it", dir);
    return w;
}

void dir_watch_close(struct dir_watch *w)
{
    if (!w)
        return;
    close(w->inotify_fd);
    close(w->signal_fd);
    sigprocmask(SIG_SETMASK, &w->old_mask, NULL);
    free(w->dir);
    free(w);
}
