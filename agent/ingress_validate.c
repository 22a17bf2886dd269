/*
 * ingress_validate.c - names, hosts and paths as Kubernetes allows them (see ingress_validate.h).
 */
#include "ingress_validate.h"

#include <arpa/inet.h>
#include <string.h>

static int is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One label of a DNS name, [a-z0-9-], alphanumeric at both ends. len >= 1. */
static const char *label_problem(const char *s, size_t len)
{
    if (len > 63)
        return "has a label longer than 63 characters";
    for (size_t i = 0; i < len; i++) {
        if (!is_lower_alnum(s[i]) && s[i] != '-')
            return "may contain only lower-case letters, digits, '-' and '.'";
    }
    if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
        return "must start and end each label with a letter or digit";
    return NULL;
}

const char *dns_label_problem(const char *s)
{
    size_t len = strlen(s);
    if (len == 0)
        return "must not be empty";
    if (memchr(s, '.', len))
        return "must not contain '.'";
    return label_problem(s, len);
}

const char *dns1035_label_problem(const char *s)
{
    const char *why = dns_label_problem(s);
    if (!why && !(s[0] >= 'a' && s[0] <= 'z'))
        why = "must start with a letter";
    return why;
}

const char *dns_subdomain_problem(const char *s)
{
    size_t len = strlen(s);
    if (len == 0)
        return "must not be empty";
    if (len > DNS_NAME_MAX)
        return "is longer than 253 characters";
    for (const char *label = s;;) {
        const char *dot = strchr(label, '.');
        size_t label_len = dot ? (size_t)(dot - label) : strlen(label);
        if (label_len == 0)
            return "has an empty label";
        const char *why = label_problem(label, label_len);
        if (why)
            return why;
        if (!dot)
            return NULL;
        label = dot + 1;
    }
}

const char *port_name_problem(const char *s)
{
    size_t len = strlen(s);
    int letters = 0;
    if (len == 0)
        return "must not be empty";
    if (len > 15)
        return "must be at most 15 characters";
    for (size_t i = 0; i < len; i++) {
        if (!is_lower_alnum(s[i]) && s[i] != '-')
            return "may contain only lower-case letters, digits and '-'";
        letters += s[i] >= 'a' && s[i] <= 'z';
    }
    if (!letters)
        return "must contain at least one letter";
    if (s[0] == '-' || s[len - 1] == '-' || strstr(s, "--"))
        return "must not begin or end with '-' or contain \"--\"";
    return NULL;
}

const char *ingress_host_problem(const char *host, char *out, size_t outlen)
{
    size_t len = strlen(host);
    if (len == 0)
        return "must not be empty";
    if (len > DNS_NAME_MAX || len >= outlen)
        return "is longer than 253 characters";
    for (size_t i = 0; i <= len; i++)
        out[i] = (host[i] >= 'A' && host[i] <= 'Z') ? (char)(host[i] - 'A' + 'a') : host[i];
    unsigned char addr[16];
    if (inet_pton(AF_INET, out, addr) == 1 || inet_pton(AF_INET6, out, addr) == 1)
        return "must be a DNS name, not an IP address";
    const char *name = out;
    if (out[0] == '*') {
        if (out[1] != '.')
            return "may hold a wildcard only as \"*.\" followed by a DNS name";
        name = out + 2;
    }
    if (strchr(name, '*'))
        return "may hold a wildcard only as \"*.\" followed by a DNS name";
    return dns_subdomain_problem(name);
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

const char *ingress_path_problem(const char *path)
{
    static const char *const forbidden[] = { "//", "/./", "/../", "%2f", "%2F" };
    if (path[0] != '/')
        return "must begin with \"/\"";
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == 0x7f)
            return "must not contain spaces or control characters";
        if (c == '?' || c == '#')
            return "must not contain '?' or '#' (a path is matched without query or fragment)";
    }
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++) {
        if (strstr(path, forbidden[i]))
            return "must not contain \"//\", \"/./\", \"/../\" or an encoded '/' (\"%2f\")";
    }
    size_t len = strlen(path);
    if (ends_with(path, len, "/..") || ends_with(path, len, "/."))
        return "must not end with \"/.\" or \"/..\"";
    return NULL;
}
