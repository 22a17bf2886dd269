/*
 * shell_fixture.h - fixtures made by shell commands (openssl) in a temporary folder, for unit
 * tests that need real certificates and keys without committing key material.
 *
 * The test sets dir (e.g. with mkdtemp) before calling sh(). A failing command aborts the test
 * program: without its fixture a test cannot say anything. sh_status() is for commands whose
 * failure is the point (a check of the test), fixture_path() names a file in dir.
 */
#ifndef GATEHOUSE_SHELL_FIXTURE_H
#define GATEHOUSE_SHELL_FIXTURE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static char dir[64];

/* Runs a shell command in the fixture folder, its output discarded. */
static inline void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void sh(const char *fmt, ...)
{
    char cmd[2048];
    int n = snprintf(cmd, sizeof cmd, "cd '%s' && { ", dir);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof cmd - (size_t)n, "; } >/dev/null 2>&1");
    if (system(cmd) != 0) {
        fprintf(stderr, "fixture command failed (is openssl installed?): %s\n", cmd);
        exit(2);
    }
}

/* Runs a shell command as given (no cd, output not redirected) for tests that check how it
 * went: its exit status as system() returns it. */
static inline int sh_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int sh_status(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* dir/name, in one of 8 buffers used in turn (so a call can take several). */
static inline const char *fixture_path(const char *name)
{
    static char paths[8][160];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

#endif
