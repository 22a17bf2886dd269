/*
 * privileges.c - see privileges.h.
 *
 * Order matters: supplementary groups and the gid can only be changed while still root, so
 * setgroups and setgid come before setuid. The C library applies each call to every thread
 * (glibc and musl both broadcast set*id), which is why this may run after the workers started.
 */
#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

int privileges_user_exists(const char *user)
{
    return user && *user && getpwnam(user) != NULL;
}

int privileges_drop(const char *user, char *err, size_t errlen)
{
    errno = 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "cannot drop privileges: no user \"%s\"%s%s", user,
                 errno ? ": " : " in the user database", errno ? strerror(errno) : "");
        return -1;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    if (uid == 0) {
        snprintf(err, errlen, "refusing to \"drop\" privileges to user \"%s\": it is uid 0", user);
        return -1;
    }
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        snprintf(err, errlen, "cannot drop privileges to user \"%s\" (uid %u, gid %u): %s",
                 user, (unsigned)uid, (unsigned)gid, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || geteuid() != uid || getegid() != gid) {
        snprintf(err, errlen, "dropping privileges to user \"%s\" did not stick", user);
        return -1;
    }
    return 0;
}
