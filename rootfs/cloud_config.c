/*
 * cloud_config.c - NoCloud user-data to a plan, the last-good choice, the network plan file,
 * the one file writer, and the kernel command line.
 *
 * User-data is untrusted input that arrives before anything else runs, so every value is
 * checked here against a small schema (cloud_config.h) and a refused value refuses the whole
 * user-data: a node half-configured from a broken file is worse than one that boots with its
 * last good configuration. YAML errors carry line and column (from lib/yaml_json); schema
 * errors name the key ("write_files[1].path: ...") since the tree has no positions.
 */
#include "cloud_config.h"

#include "base64.h"
#include "log.h"
#include "yaml_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CC_PATH_MAX 1024

/* ---- plan ---- */

void cloud_config_plan_init(struct cc_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->net.mode = CC_NET_DHCP;
}

void cloud_config_plan_free(struct cc_plan *plan)
{
    for (size_t i = 0; i < plan->nfiles; i++) {
        free(plan->files[i].path);
        free(plan->files[i].data);
    }
    free(plan->files);
    cloud_config_plan_init(plan);
}

/* Takes ownership of data. */
static int plan_add_file(struct cc_plan *plan, const char *path, unsigned char *data, size_t len,
                         mode_t mode)
{
    struct cc_file *files = realloc(plan->files, (plan->nfiles + 1) * sizeof *files);
    char *p = strdup(path);
    if (!files || !p) {
        free(p);
        free(data);
        if (files)
            plan->files = files;
        return -1;
    }
    plan->files = files;
    files[plan->nfiles++] = (struct cc_file){p, data, len, mode};
    return 0;
}

static int plan_has_file(const struct cc_plan *plan, const char *path)
{
    for (size_t i = 0; i < plan->nfiles; i++)
        if (strcmp(plan->files[i].path, path) == 0)
            return 1;
    return 0;
}

/* ---- single values ---- */

static int label_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

/* RFC 1123 host name; Linux keeps at most 64 bytes (HOST_NAME_MAX). */
int cloud_config_hostname_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > CC_HOSTNAME_MAX)
        return 0;
    for (const char *p = name;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (!label_ok(p, n))
            return 0;
        if (!dot)
            return 1;
        p = dot + 1;
    }
}

static int under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && path[n] == '/' && path[n + 1] != '\0';
}

/* Absolute, normalised, printable, and inside the allow-list of cloud_config.h. */
int cloud_config_path_allowed(const char *path)
{
    size_t len = strlen(path);
    if (len < 2 || len >= CC_PATH_MAX || path[0] != '/' || path[len - 1] == '/')
        return 0;
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return 0;
    if (strstr(path, "//") || strstr(path, "/./") || strstr(path, "/../"))
        return 0;
    if ((len >= 2 && strcmp(path + len - 2, "/.") == 0) || (len >= 3 && strcmp(path + len - 3, "/..") == 0))
        return 0;
    if (strcmp(path, "/etc/hosts") == 0 || under(path, "/etc/gatehouse"))
        return 1;
    return under(path, "/var/lib/gatehouse") && strcmp(path, "/var/lib/gatehouse/cloud-config") != 0 &&
           !under(path, "/var/lib/gatehouse/cloud-config");
}

/* Padding optional, line breaks skipped: cloud-config writers differ on both. */
static unsigned char *b64_decode(const char *s, size_t n, size_t *out_len)
{
    unsigned char *out = malloc(BASE64_DECODED_MAX(n));
    long len = out ? base64_decode(s, n, out, BASE64_DECODED_MAX(n),
                                   BASE64_SKIP_SPACE | BASE64_PAD_OPTIONAL, NULL) : -1;
    if (len < 0) {
        free(out);
        return NULL;
    }
    *out_len = (size_t)len;
    return out;
}

static int is_ip(const char *s, int *family)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, s, buf) == 1)
        return *family = AF_INET, 1;
    if (inet_pton(AF_INET6, s, buf) == 1)
        return *family = AF_INET6, 1;
    return 0;
}

static int cidr_ok(const char *s, int *family)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    if (!slash || (size_t)(slash - s) >= sizeof addr)
        return 0;
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    if (!is_ip(addr, family))
        return 0;
    const char *p = slash + 1;
    if (!*p || strlen(p) > 3 || strspn(p, "0123456789") != strlen(p))
        return 0;
    return atoi(p) <= (*family == AF_INET ? 32 : 128);
}

static int ifname_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 16 && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n &&
           strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* ---- sections ---- */

/* A refused value: the message names where, the caller turns it into CC_INVALID. */
#define REFUSE(...) (set_err(msg, msglen, __VA_ARGS__))

static int parse_permissions(const json_t *v, const char *where, mode_t *mode, char *msg, size_t msglen)
{
    long long m;
    if (json_is_integer(v)) {
        m = json_integer_value(v);      /* 0644 unquoted is already octal (YAML 1.1 typing) */
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = strlen(s);
        if (n < 3 || n > 5 || strspn(s, "01234567") != n)
            return REFUSE("%s.permissions: \"%s\" is not an octal mode such as '0644'", where, s);
        m = strtoll(s, NULL, 8);
    } else {
        return REFUSE("%s.permissions: expected an octal string such as '0644'", where);
    }
    if (m < 0 || m > 0777)
        return REFUSE("%s.permissions: mode 0%llo is outside 0000..0777 (setuid, setgid and sticky bits "
                      "are refused; an unquoted 644 is read as decimal: write '0644')", where, m);
    *mode = (mode_t)m;
    return 0;
}

static int parse_content(const json_t *entry, const char *where, unsigned char **data, size_t *len,
                         char *msg, size_t msglen)
{
    const json_t *content = json_object_get(entry, "content");
    const json_t *encoding = json_object_get(entry, "encoding");
    if (content && !json_is_string(content))
        return REFUSE("%s.content: expected a string", where);
    if (encoding && !json_is_string(encoding))
        return REFUSE("%s.encoding: expected a string", where);
    const char *text = content ? json_string_value(content) : "";
    size_t n = content ? json_string_length(content) : 0;
    const char *enc = encoding ? json_string_value(encoding) : "text/plain";
    if (strcasecmp(enc, "b64") == 0 || strcasecmp(enc, "base64") == 0) {
        *data = b64_decode(text, n, len);
        return *data ? 0 : REFUSE("%s.content: not valid base64", where);
    }
    if (strcasestr(enc, "gz"))
        return REFUSE("%s.encoding: \"%s\" is not supported: gzip is refused, use b64 of the plain "
                      "content", where, enc);
    if (strcasecmp(enc, "text/plain") != 0 && strcasecmp(enc, "text") != 0)
        return REFUSE("%s.encoding: \"%s\" is not one of text/plain, b64, base64", where, enc);
    *data = malloc(n ? n : 1);
    if (!*data)
        return REFUSE("%s: out of memory", where);
    memcpy(*data, text, n);
    *len = n;
    return 0;
}

static int parse_file_entry(const json_t *entry, size_t index, struct cc_plan *plan,
                            char *msg, size_t msglen)
{
    char where[48];
    snprintf(where, sizeof where, "write_files[%zu]", index);
    if (!json_is_object(entry))
        return REFUSE("%s: expected a mapping with path and content", where);
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)entry, key, value) {
        if (strcmp(key, "defer") == 0)
            log_warn("user-data: %s.defer: ignored (files are written before any service starts)", where);
        else if (strcmp(key, "path") != 0 && strcmp(key, "content") != 0 && strcmp(key, "encoding") != 0 &&
                 strcmp(key, "permissions") != 0 && strcmp(key, "owner") != 0)
            return REFUSE("%s.%s: not supported (path, content, encoding, permissions, owner)", where, key);
    }
    const json_t *path = json_object_get(entry, "path");
    if (!json_is_string(path))
        return REFUSE("%s.path: expected a string", where);
    const char *p = json_string_value(path);
    if (strlen(p) != json_string_length(path) || !cloud_config_path_allowed(p))
        return REFUSE("%s.path: \"%s\" is not allowed: write_files may write /etc/hosts and files under "
                      "/etc/gatehouse/ and /var/lib/gatehouse/ (not .../cloud-config/), as normalised "
                      "absolute paths", where, p);
    if (plan_has_file(plan, p))
        return REFUSE("%s.path: %s is written twice%s", where, p,
                      strcmp(p, CC_CONFIG_PATH) == 0 ? " (the gatehouse: key writes it)" : "");
    const json_t *owner = json_object_get(entry, "owner");
    if (owner && (!json_is_string(owner) || (strcmp(json_string_value(owner), "root") != 0 &&
                                             strcmp(json_string_value(owner), "root:root") != 0)))
        return REFUSE("%s.owner: only root (or root:root) is supported", where);
    mode_t mode = 0644;
    const json_t *perms = json_object_get(entry, "permissions");
    if (perms && parse_permissions(perms, where, &mode, msg, msglen) < 0)
        return -1;
    unsigned char *data = NULL;
    size_t len = 0;
    if (parse_content(entry, where, &data, &len, msg, msglen) < 0)
        return -1;
    return plan_add_file(plan, p, data, len, mode) < 0 ? REFUSE("%s: out of memory", where) : 0;
}

static int parse_write_files(const json_t *v, struct cc_plan *plan, char *msg, size_t msglen)
{
    if (!json_is_array(v))
        return REFUSE("write_files: expected a list");
    size_t i;
    const json_t *entry;
    json_array_foreach(v, i, entry)
        if (parse_file_entry(entry, i, plan, msg, msglen) < 0)
            return -1;
    return 0;
}

static int parse_gatehouse(const json_t *v, struct cc_plan *plan, char *msg, size_t msglen)
{
    if (!json_is_object(v))
        return REFUSE("gatehouse: expected a mapping (the node config)");
    size_t len;
    char *text = yaml_emit(v, &len);
    if (!text)
        return REFUSE("gatehouse: cannot be written back as YAML");
    /* 0600: the node config may hold a TSIG secret */
    return plan_add_file(plan, CC_CONFIG_PATH, (unsigned char *)text, len, 0600) < 0
           ? REFUSE("gatehouse: out of memory") : 0;
}

static int copy_string(const json_t *v, const char *key, char *out, size_t size, char *msg, size_t msglen)
{
    if (!json_is_string(v))
        return REFUSE("network.%s: expected a string", key);
    if (json_string_length(v) >= size)
        return REFUSE("network.%s: too long", key);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int parse_dns(const json_t *v, struct cc_network *net, char *msg, size_t msglen)
{
    json_t *list = json_is_array(v) ? json_incref((json_t *)v) : json_pack("[O]", v);
    size_t i;
    json_t *item;
    int rc = 0, family;
    if (json_array_size(list) > CC_DNS_MAX)
        rc = REFUSE("network.dns: at most %d servers", CC_DNS_MAX);
    json_array_foreach(list, i, item) {
        if (rc < 0)
            break;
        if ((rc = copy_string(item, "dns", net->dns[i], sizeof net->dns[i], msg, msglen)) < 0)
            break;
        if (!is_ip(net->dns[i], &family))
            rc = REFUSE("network.dns: \"%s\" is not an IP address", net->dns[i]);
        net->ndns = (int)i + 1;
    }
    json_decref(list);
    return rc;
}

static int parse_network(const json_t *v, struct cc_network *net, char *msg, size_t msglen)
{
    if (!json_is_object(v))
        return REFUSE("network: expected a mapping (dhcp, interface, address, gateway, dns)");
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)v, key, value)
        if (strcmp(key, "dhcp") && strcmp(key, "interface") && strcmp(key, "address") &&
            strcmp(key, "gateway") && strcmp(key, "dns"))
            return REFUSE("network.%s: not supported (dhcp, interface, address, gateway, dns)", key);
    const json_t *dhcp = json_object_get(v, "dhcp"), *iface = json_object_get(v, "interface");
    const json_t *addr = json_object_get(v, "address"), *gw = json_object_get(v, "gateway");
    const json_t *dns = json_object_get(v, "dns");
    if (dhcp && !json_is_boolean(dhcp))
        return REFUSE("network.dhcp: expected true or false");
    if (iface && (copy_string(iface, "interface", net->interface, sizeof net->interface, msg, msglen) < 0 ||
                  !ifname_ok(net->interface)))
        return REFUSE("network.interface: expected an interface name such as eth0");
    int family = 0, gw_family = 0;
    if (addr) {
        if (json_is_true(dhcp))
            return REFUSE("network: address and dhcp: true exclude each other");
        if (copy_string(addr, "address", net->address, sizeof net->address, msg, msglen) < 0)
            return -1;
        if (!cidr_ok(net->address, &family))
            return REFUSE("network.address: \"%s\" is not ADDRESS/PREFIX (e.g. 192.0.2.10/24)", net->address);
        net->mode = CC_NET_STATIC;
    } else {
        net->mode = json_is_false(dhcp) ? CC_NET_NONE : CC_NET_DHCP;
    }
    if (gw) {
        if (!addr)
            return REFUSE("network.gateway: needs a static address");
        if (copy_string(gw, "gateway", net->gateway, sizeof net->gateway, msg, msglen) < 0)
            return -1;
        if (!is_ip(net->gateway, &gw_family) || gw_family != family)
            return REFUSE("network.gateway: \"%s\" is not an address of the same family as %s",
                          net->gateway, net->address);
    }
    return dns ? parse_dns(dns, net, msg, msglen) : 0;
}

static int parse_hostname(const json_t *v, struct cc_plan *plan, char *msg, size_t msglen)
{
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
        !cloud_config_hostname_ok(json_string_value(v)))
        return REFUSE("hostname: expected an RFC 1123 host name (letters, digits, '-', dots; at most %d "
                      "characters)", CC_HOSTNAME_MAX);
    snprintf(plan->hostname, sizeof plan->hostname, "%s", json_string_value(v));
    return 0;
}

/* The gatehouse: file goes first so write_files cannot claim its path. */
static int parse_document(const json_t *doc, struct cc_plan *plan, char *msg, size_t msglen)
{
    const json_t *v;
    if ((v = json_object_get(doc, "gatehouse")) && parse_gatehouse(v, plan, msg, msglen) < 0)
        return -1;
    if ((v = json_object_get(doc, "hostname")) && parse_hostname(v, plan, msg, msglen) < 0)
        return -1;
    if ((v = json_object_get(doc, "write_files")) && parse_write_files(v, plan, msg, msglen) < 0)
        return -1;
    if ((v = json_object_get(doc, "network")) && parse_network(v, &plan->net, msg, msglen) < 0)
        return -1;
    const char *key;
    json_object_foreach((json_t *)doc, key, v)
        if (strcmp(key, "gatehouse") && strcmp(key, "hostname") && strcmp(key, "write_files") &&
            strcmp(key, "network"))
            log_warn("user-data: %s: not supported by Gatehouse: ignored", key);
    return 0;
}

static int starts_cloud_config(const char *data, size_t len)
{
    static const char magic[] = "#cloud-config";
    size_t n = sizeof magic - 1;
    if (len < n || memcmp(data, magic, n) != 0)
        return 0;
    return len == n || data[n] == '\n' || data[n] == '\r' || data[n] == ' ' || data[n] == '\t';
}

enum cc_status cloud_config_parse(const char *data, size_t len, struct cc_plan *plan,
                                  char *msg, size_t msglen)
{
    cloud_config_plan_init(plan);
    if (len == 0) {
        set_err(msg, msglen, "user-data is empty: ignored");
        return CC_IGNORED;
    }
    if (!starts_cloud_config(data, len)) {
        set_err(msg, msglen, "user-data does not start with #cloud-config (scripts and MIME multipart "
                "are not supported): ignored");
        return CC_IGNORED;
    }
    struct yaml_error yerr;
    json_t *docs = yaml_parse_stream(data, len, &yerr);
    if (!docs) {
        if (yerr.line)
            set_err(msg, msglen, "line %zu, column %zu: %s", yerr.line, yerr.column, yerr.reason);
        else
            set_err(msg, msglen, "%s", yerr.reason);
        return CC_INVALID;
    }
    int rc = 0;
    if (json_array_size(docs) > 1)
        rc = set_err(msg, msglen, "holds %zu YAML documents; expected one", json_array_size(docs));
    else if (json_array_size(docs) == 1 && !json_is_object(json_array_get(docs, 0)))
        rc = set_err(msg, msglen, "the top level must be a mapping (hostname, gatehouse, write_files, network)");
    else if (json_array_size(docs) == 1)
        rc = parse_document(json_array_get(docs, 0), plan, msg, msglen);
    json_decref(docs);
    if (rc < 0) {
        cloud_config_plan_free(plan);
        return CC_INVALID;
    }
    return CC_OK;
}

int cloud_config_meta_hostname(const char *data, size_t len, char name[CC_HOSTNAME_MAX + 1])
{
    struct yaml_error err;
    json_t *docs = yaml_parse_stream(data, len, &err);
    const json_t *v = json_object_get(json_array_get(docs, 0), "local-hostname");
    int ok = json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
             cloud_config_hostname_ok(json_string_value(v));
    if (ok)
        snprintf(name, CC_HOSTNAME_MAX + 1, "%s", json_string_value(v));
    json_decref(docs);
    return ok;
}

/* ---- last-good ---- */

enum cc_choice cloud_config_choose(enum cc_status current, int last_good_ok, int *store_current)
{
    *store_current = current == CC_OK;
    if (current == CC_OK)
        return CC_APPLY_CURRENT;
    return last_good_ok ? CC_APPLY_LAST_GOOD : CC_APPLY_NOTHING;
}

const char *cloud_config_choice_name(enum cc_choice choice)
{
    switch (choice) {
    case CC_APPLY_CURRENT: return "current";
    case CC_APPLY_LAST_GOOD: return "last-good";
    default: return "none";
    }
}

/* ---- network plan ---- */

char *cloud_config_network_env(const struct cc_network *net)
{
    static const char *const modes[] = {"dhcp", "static", "none"};
    char dns[CC_DNS_MAX * 48 + CC_DNS_MAX] = "";
    for (int i = 0; i < net->ndns; i++) {
        if (i)
            strcat(dns, " ");
        strcat(dns, net->dns[i]);
    }
    char *out;
    if (asprintf(&out, "NET_MODE='%s'\nNET_INTERFACE='%s'\nNET_ADDRESS='%s'\nNET_GATEWAY='%s'\nNET_DNS='%s'\n",
                 modes[net->mode], net->interface, net->address, net->gateway, dns) < 0)
        return NULL;
    return out;
}

/* ---- writing ---- */

static int make_parents(char *full, size_t root_len, char *err, size_t errlen)
{
    for (char *p = full + root_len + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        int rc = mkdir(full, 0755);
        int saved = errno;
        if (rc < 0 && saved != EEXIST) {
            set_err(err, errlen, "%s: cannot create: %s", full, strerror(saved));
            *p = '/';
            return -1;
        }
        *p = '/';
    }
    return 0;
}

static int write_all(int fd, const unsigned char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int cloud_config_write_file(const char *root, const char *path, const unsigned char *data,
                            size_t len, mode_t mode, char *err, size_t errlen)
{
    char full[CC_PATH_MAX + 512], tmp[sizeof full + 16];
    if ((size_t)snprintf(full, sizeof full, "%s%s", root, path) >= sizeof full)
        return set_err(err, errlen, "%s: path too long", path);
    snprintf(tmp, sizeof tmp, "%s.cc-tmp", full);
    if (make_parents(full, strlen(root), err, errlen) < 0)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return set_err(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    if (write_all(fd, data, len) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0) {
        int saved = errno;
        close(fd);
        unlink(tmp);
        return set_err(err, errlen, "%s: cannot write: %s", tmp, strerror(saved));
    }
    close(fd);
    if (rename(tmp, full) < 0) {
        int saved = errno;
        unlink(tmp);
        return set_err(err, errlen, "%s: cannot rename into place: %s", full, strerror(saved));
    }
    /* The rename must reach the disk too when path is on the data partition. */
    char *slash = strrchr(full, '/');
    *slash = '\0';
    int dir = open(slash == full ? "/" : full, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
    return 0;
}

/* ---- kernel command line ---- */

int cmdline_get(const char *cmdline, const char *key, char *value, size_t valuesize)
{
    size_t keylen = strlen(key);
    int found = 0;
    const char *p = cmdline;
    while (*p) {
        p += strspn(p, " \t\n");
        const char *start = p;
        int quoted = 0;
        while (*p && (quoted || !strchr(" \t\n", *p)))
            quoted ^= *p++ == '"';
        size_t n = (size_t)(p - start);
        if (n < keylen || strncmp(start, key, keylen) != 0 || (n > keylen && start[keylen] != '='))
            continue;
        const char *v = n > keylen ? start + keylen + 1 : start + n;
        size_t vlen = (size_t)(start + n - v);
        if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"')
            v++, vlen -= 2;
        if (valuesize)
            snprintf(value, valuesize, "%.*s", (int)vlen, v);
        found = 1;
    }
    return found;
}

int cmdline_flag(const char *cmdline, const char *key)
{
    char v[16];
    if (!cmdline_get(cmdline, key, v, sizeof v))
        return 0;
    return v[0] == '\0' || strcmp(v, "1") == 0 || strcasecmp(v, "y") == 0 || strcasecmp(v, "yes") == 0 ||
           strcasecmp(v, "true") == 0 || strcasecmp(v, "on") == 0;
}
