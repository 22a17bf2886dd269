/*
 * test_dns_hosts.c - the hosts-file sink: content (every address for every name, wildcards left
 * out), written only on change, replaced by rename (never rewritten in place), edits undone,
 * clear errors.
 */
#include "check.h"
#include "dns_hosts.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct dns_desired names_of(const char *const *list)
{
    struct dns_desired d = { 0 };
    size_t n = 0;
    while (list[n])
        n++;
    d.names = calloc(n ? n : 1, sizeof *d.names);
    for (size_t i = 0; i < n; i++)
        snprintf(d.names[i].name, sizeof d.names[i].name, "%s", list[i]);
    d.count = n;
    return d;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Entries in a folder, "." and ".." aside. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    return n;
}

static void test_render(void)
{
    struct dns_address addrs[2];
    char err[200];
    CHECK_INT(dns_address_parse("192.0.2.10,2001:db8::10", addrs, 2, err, sizeof err), 2);
    struct dns_desired d = names_of((const char *const[]){ "*.apps.example.com", "a.example.com",
                                                           "b.example.com", NULL });
    size_t len;
    char *text = dns_hosts_render(&d, addrs, 2, &len);
    CHECK(text != NULL);
    CHECK_INT(len, strlen(text));
    const char *body = text ? strchr(text, '\n') + 1 : "";
    CHECK(text && text[0] == '#');
    CHECK_STR(body, "192.0.2.10 a.example.com\n2001:db8::10 a.example.com\n"
                    "192.0.2.10 b.example.com\n2001:db8::10 b.example.com\n");
    free(text);

    struct dns_desired empty = { 0 };
    text = dns_hosts_render(&empty, addrs, 2, &len);
    CHECK(text && strchr(text, '\n') == text + len - 1);   /* the comment line only */
    free(text);
    dns_desired_free(&d);
}

static void test_write(void)
{
    char dir[] = "/tmp/test_dns_hosts.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[200], err[300];
    snprintf(path, sizeof path, "%s/hosts", dir);
    struct dns_address addr;
    CHECK_INT(dns_address_parse("192.0.2.10", &addr, 1, err, sizeof err), 1);
    struct dns_desired d = names_of((const char *const[]){ "a.example.com", NULL });

    CHECK_INT(dns_hosts_write(path, &d, &addr, 1, err, sizeof err), DNS_HOSTS_WRITTEN);
    char *text = slurp(path);
    CHECK(text && strstr(text, "\n192.0.2.10 a.example.com\n") != NULL);
    struct stat st1, st2;
    CHECK_INT(stat(path, &st1), 0);
    CHECK_INT(st1.st_mode & 0777, 0644);
    CHECK_INT(dns_hosts_write(path, &d, &addr, 1, err, sizeof err), DNS_HOSTS_UNCHANGED);
    CHECK_INT(stat(path, &st2), 0);
    CHECK(st1.st_ino == st2.st_ino);

    /* someone edits the file: the next write puts it back, as a new file */
    FILE *f = fopen(path, "a");
    fputs("203.0.113.1 intruder.example.com\n", f);
    fclose(f);
    CHECK_INT(dns_hosts_write(path, &d, &addr, 1, err, sizeof err), DNS_HOSTS_WRITTEN);
    text = slurp(path);
    CHECK(text && strstr(text, "intruder") == NULL);
    CHECK_INT(stat(path, &st2), 0);
    CHECK(st1.st_ino != st2.st_ino);

    /* a truncated file (same prefix) is also rewritten */
    CHECK_INT(truncate(path, 10), 0);
    CHECK_INT(dns_hosts_write(path, &d, &addr, 1, err, sizeof err), DNS_HOSTS_WRITTEN);

    /* no temporary files left behind */
    CHECK_INT(entries(dir), 1);

    /* a folder that does not exist */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope/hosts", dir);
    CHECK_INT(dns_hosts_write(missing, &d, &addr, 1, err, sizeof err), DNS_HOSTS_FAILED);
    CHECK(strstr(err, missing) != NULL);

    unlink(path);
    rmdir(dir);
    dns_desired_free(&d);
}

int main(void)
{
    test_render();
    test_write();
    return check_summary("test_dns_hosts");
}
