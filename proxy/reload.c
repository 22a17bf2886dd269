/*
 * reload.c - the routes-file watcher (see reload.h).
 *
 * The agent replaces the file by rename, so the watch is on the directory, not the file: an
 * inotify watch on the file itself would follow the old inode away. Events for the file's name
 * (IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_MOVED_FROM) only mark a reload as
 * pending; the load happens once the directory has been quiet for COALESCE_MS, so a burst of
 * writes costs one parse - except a file renamed into place (the agent's way), which is whole
 * and loaded at once: the quiet period would be pure latency. The watcher's states are plain: NO_WATCH (directory missing or
 * unreadable, retried every second) and WATCHING. Whenever a watch is (re)established the
 * file's identity is compared with the one last loaded, so a change made while nobody was
 * watching (before the thread started, or while the directory was gone) is not missed.
 */
#include "reload.h"

#include "admin.h"
#include "log.h"
#include "metrics.h"
#include "route_table.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COALESCE_MS 20
#define MAX_DELAY_MS 500             /* a never-quiet directory still gets reloaded */
#define DIR_RETRY_MS 1000
#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM | \
                    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

/* What was last loaded (or found missing): a different identity means a different file. */
struct file_identity {
    int exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

static struct file_identity last_seen;
static char watch_path[PATH_MAX], watch_dir[PATH_MAX], watch_base[NAME_MAX + 1];
static int control_pipe[2] = { -1, -1 };     /* 'r': reload now, 'q': quit */
static pthread_t watcher;
static int watcher_running;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct file_identity identify(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return (struct file_identity){ .exists = 0 };
    return (struct file_identity){ .exists = 1, .dev = st.st_dev, .ino = st.st_ino,
                                   .size = st.st_size, .mtime = st.st_mtim };
}

static int same_identity(const struct file_identity *a, const struct file_identity *b)
{
    if (a->exists != b->exists)
        return 0;
    return !a->exists || (a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
                          a->mtime.tv_sec == b->mtime.tv_sec &&
                          a->mtime.tv_nsec == b->mtime.tv_nsec);
}

/* ---- loading ---- */

/* fallback: what serves instead when the file is refused, for the log line. */
static int load_and_publish(const char *routes_path, const char *fallback)
{
    char err[512];
    int64_t started = now_ms();
    last_seen = identify(routes_path);
    struct route_table *t = route_table_load_file(routes_path, err, sizeof err);
    if (!t) {
        log_error("routes file refused, %s: %s", fallback, err);
        metrics_route_reload(0);
        return -1;
    }
    size_t hosts = route_table_num_hosts(t), routes = route_table_num_routes(t);
    long long generation = (long long)route_table_generation(t);
    route_table_publish(t);
    metrics_route_reload(1);
    metrics_set_routes_loaded(1, hosts, routes);
    admin_set_ready(1);
    log_info("routes loaded: %zu hosts, %zu routes (generation %lld) in %lld ms",
             hosts, routes, generation, (long long)(now_ms() - started));
    return 0;
}

int reload_now(const char *routes_path)
{
    return load_and_publish(routes_path, "the current table keeps serving");
}

int reload_initial(const char *routes_path)
{
    struct route_table *empty = route_table_empty();
    if (empty)
        route_table_publish(empty);
    last_seen = identify(routes_path);
    if (!last_seen.exists) {
        log_warn("routes file %s does not exist yet: every request gets 404 until it appears",
                 routes_path);
        return -1;
    }
    return load_and_publish(routes_path, "starting with an empty table (every request 404)");
}

/* After the quiet period: load the file, or keep the table if it was removed. */
static void settle(void)
{
    struct file_identity now = identify(watch_path);
    if (!now.exists) {
        if (last_seen.exists)
            log_warn("routes file %s was removed: the current table keeps serving", watch_path);
        last_seen = now;
        return;
    }
    reload_now(watch_path);
}

/* ---- watching ---- */

struct watch_state {
    int inotify_fd;
    int wd;                       /* -1: NO_WATCH */
    int add_errno;                /* last failure, so it is logged once, not every second */
    int pending;
    int64_t first_event_ms, last_event_ms;
};

static void mark_pending(struct watch_state *w)
{
    int64_t now = now_ms();
    if (!w->pending)
        w->first_event_ms = now;
    w->pending = 1;
    w->last_event_ms = now;
}

static void try_watch(struct watch_state *w)
{
    w->wd = inotify_add_watch(w->inotify_fd, watch_dir, WATCH_MASK);
    if (w->wd < 0) {
        if (errno != w->add_errno)
            log_warn("cannot watch %s (%s): checking again every second", watch_dir,
                     strerror(errno));
        w->add_errno = errno;
        return;
    }
    if (w->add_errno)
        log_info("now watching %s", watch_dir);
    w->add_errno = 0;
    struct file_identity now = identify(watch_path);
    if (!same_identity(&now, &last_seen))
        mark_pending(w);
}

static void read_events(struct watch_state *w)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(w->inotify_fd, buf, sizeof buf);
        if (n <= 0)
            return;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW)
                mark_pending(w);
            if (ev->wd == w->wd && (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))) {
                log_warn("directory %s went away: the current table keeps serving", watch_dir);
                inotify_rm_watch(w->inotify_fd, w->wd);
                w->wd = -1;
                w->add_errno = ENOENT;
            }
            if (ev->len && strcmp(ev->name, watch_base) == 0) {
                mark_pending(w);
                if (ev->mask & IN_MOVED_TO)   /* renamed into place: complete, load now */
                    w->first_event_ms -= MAX_DELAY_MS;
            }
        }
    }
}

static int poll_timeout(const struct watch_state *w)
{
    if (w->pending)
        return COALESCE_MS;
    return w->wd < 0 ? DIR_RETRY_MS : -1;
}

/* Returns 0 to keep going, -1 to quit. */
static int read_control(struct watch_state *w)
{
    char cmd[16];
    ssize_t n = read(control_pipe[0], cmd, sizeof cmd);
    for (ssize_t i = 0; i < n; i++) {
        if (cmd[i] == 'q')
            return -1;
        if (cmd[i] == 'r') {
            mark_pending(w);
            w->first_event_ms -= MAX_DELAY_MS;    /* asked for explicitly: no coalescing */
        }
    }
    return 0;
}

static void *watch_loop(void *unused)
{
    struct watch_state w = { .inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC), .wd = -1 };
    if (w.inotify_fd < 0) {
        log_error("inotify: %s: routes file changes will not be noticed", strerror(errno));
        return NULL;
    }
    try_watch(&w);
    for (;;) {
        struct pollfd fds[2] = { { .fd = control_pipe[0], .events = POLLIN },
                                 { .fd = w.inotify_fd, .events = POLLIN } };
        int ready = poll(fds, 2, poll_timeout(&w));
        if (ready < 0 && errno != EINTR) {
            log_error("reload watcher: poll: %s", strerror(errno));
            break;
        }
        if (fds[0].revents && read_control(&w) < 0)
            break;
        if (fds[1].revents)
            read_events(&w);
        if (w.wd < 0 && ready == 0)
            try_watch(&w);
        int64_t now = now_ms();
        if (w.pending && (now - w.last_event_ms >= COALESCE_MS ||
                          now - w.first_event_ms >= MAX_DELAY_MS)) {
            w.pending = 0;
            settle();
        }
    }
    close(w.inotify_fd);
    return NULL;
}

static int split_path(const char *routes_path, char *err, size_t errlen)
{
    char copy_dir[PATH_MAX], copy_base[PATH_MAX];
    if (snprintf(watch_path, sizeof watch_path, "%s", routes_path) >= (int)sizeof watch_path ||
        snprintf(copy_dir, sizeof copy_dir, "%s", routes_path) >= (int)sizeof copy_dir) {
        snprintf(err, errlen, "routes path is too long");
        return -1;
    }
    snprintf(copy_base, sizeof copy_base, "%s", routes_path);
    const char *base = basename(copy_base);
    if (!*base || strcmp(base, "/") == 0 || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 ||
        routes_path[strlen(routes_path) - 1] == '/') {
        snprintf(err, errlen, "routes path \"%s\" does not name a file", routes_path);
        return -1;
    }
    snprintf(watch_base, sizeof watch_base, "%s", base);
    snprintf(watch_dir, sizeof watch_dir, "%s", dirname(copy_dir));
    return 0;
}

int reload_start(const char *routes_path, char *err, size_t errlen)
{
    if (split_path(routes_path, err, errlen) < 0)
        return -1;
    if (pipe2(control_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        snprintf(err, errlen, "reload watcher: pipe: %s", strerror(errno));
        return -1;
    }
    int rc = pthread_create(&watcher, NULL, watch_loop, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "reload watcher: cannot start thread: %s", strerror(rc));
        close(control_pipe[0]);
        close(control_pipe[1]);
        return -1;
    }
    watcher_running = 1;
    return 0;
}

static void send_control(char cmd)
{
    if (control_pipe[1] >= 0) {
        ssize_t n = write(control_pipe[1], &cmd, 1);
        (void)n;
    }
}

void reload_request(void)
{
    send_control('r');
}

void reload_stop(void)
{
    if (!watcher_running)
        return;
    send_control('q');
    pthread_join(watcher, NULL);
    close(control_pipe[0]);
    close(control_pipe[1]);
    control_pipe[0] = control_pipe[1] = -1;
    watcher_running = 0;
}
