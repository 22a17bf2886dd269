/*
 * dns_hosts.h - the hosts-file sink: the served names in /etc/hosts format.
 *
 * One line per address and name ("192.0.2.10 shop.example.com"), names sorted, after a comment
 * saying who writes the file. dnsmasq (addn-hosts=FILE) and CoreDNS (hosts FILE) read it and
 * notice replacements. The hosts format has no wildcards, so wildcard names are left out.
 *
 * The file is replaced atomically (a temporary file in the same folder, fsync, rename, fsync of
 * the folder) and only when its content would change, so a reader never sees half a file and an
 * unchanged set costs one read. A file someone edited is put back on the next write.
 */
#ifndef GATEHOUSE_DNS_HOSTS_H
#define GATEHOUSE_DNS_HOSTS_H

#include "dns_records.h"

#include <stddef.h>

/* The file's content (malloc'd, NUL-terminated, *len without the NUL), or NULL when out of
 * memory. */
char *dns_hosts_render(const struct dns_desired *desired, const struct dns_address *addrs,
                       size_t naddrs, size_t *len);

enum dns_hosts_result { DNS_HOSTS_FAILED = -1, DNS_HOSTS_UNCHANGED = 0, DNS_HOSTS_WRITTEN = 1 };

/* Writes the file at path when its content differs. DNS_HOSTS_FAILED with err saying why. */
enum dns_hosts_result dns_hosts_write(const char *path, const struct dns_desired *desired,
                                      const struct dns_address *addrs, size_t naddrs,
                                      char *err, size_t errlen);

#endif
