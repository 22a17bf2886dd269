/*
 * dns_hosts.c - the hosts-file sink (see dns_hosts.h).
 */
#include "dns_hosts.h"

#include "file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOSTS_HEADER "# Written by gatehouse-agent: the hosts this node serves. Replaced on every " \
                     "change; do not edit.\n"

char *dns_hosts_render(const struct dns_desired *desired, const struct dns_address *addrs,
                       size_t naddrs, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (!out)
        return NULL;
    fputs(HOSTS_HEADER, out);
    for (size_t i = 0; i < desired->count; i++) {
        if (desired->names[i].name[0] == '*')
            continue;
        for (size_t a = 0; a < naddrs; a++)
            fprintf(out, "%s %s\n", addrs[a].text, desired->names[i].name);
    }
    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}

/* Replaced atomically (temp file, fsync, rename, folder sync); 0644: resolvers read it. */
static int replace_file(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
    char folder[4096], name[4096], why[512];
    snprintf(folder, sizeof folder, "%s", path);
    snprintf(name, sizeof name, "%s", path);
    const char *dir = dirname(folder), *base = basename(name);
    if (file_replace(dir, base, data, len, 0644, (uid_t)-1, (gid_t)-1, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        return -1;
    }
    if (file_sync_dir(dir, NULL, 0) < 0) {
        snprintf(err, errlen, "%s: written, but its folder did not sync: %s", path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

enum dns_hosts_result dns_hosts_write(const char *path, const struct dns_desired *desired,
                                      const struct dns_address *addrs, size_t naddrs,
                                      char *err, size_t errlen)
{
    size_t len;
    char *data = dns_hosts_render(desired, addrs, naddrs, &len);
    if (!data) {
        snprintf(err, errlen, "%s: out of memory", path);
        return DNS_HOSTS_FAILED;
    }
    enum dns_hosts_result result = DNS_HOSTS_UNCHANGED;
    if (!file_holds(path, data, len))
        result = replace_file(path, data, len, err, errlen) < 0 ? DNS_HOSTS_FAILED
                                                                : DNS_HOSTS_WRITTEN;
    free(data);
    return result;
}
