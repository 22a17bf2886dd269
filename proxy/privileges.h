/*
 * privileges.h - giving up root once the listening sockets are bound.
 *
 * The proxy binds ports 80/443 as root, then runs as an unprivileged user: a bug in request
 * handling then cannot rewrite the system. Dropping is all or nothing; a half-dropped process
 * (say, root group but another uid) must not keep running.
 */
#ifndef GATEHOUSE_PRIVILEGES_H
#define GATEHOUSE_PRIVILEGES_H

#include <stddef.h>

/* 1 if the user is in the user database (/etc/passwd for static musl builds), else 0. */
int privileges_user_exists(const char *user);

/* Switches every thread of the process to the user's uid and primary gid, with no
 * supplementary groups, and checks that root cannot be regained. Returns 0, or -1 with a
 * message in err; the caller must then exit. */
int privileges_drop(const char *user, char *err, size_t errlen);

#endif
