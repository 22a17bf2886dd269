/*
 * cloud_config.h - the node's boot-time inputs: NoCloud user-data and the kernel command line.
 *
 * Parsing is pure: user-data text in, a plan out (hostname, files to write, network plan), or a
 * message with line and column. The stage-1 init does the system calls. Only the file writer
 * (cloud_config_write_file) touches the filesystem, under a root folder the tests choose.
 *
 * User-data accepted (anything else at the top level is ignored with a warning, so a
 * cloud-config shared with other images still works):
 *   #cloud-config                  first line, exactly (else the user-data is ignored)
 *   hostname: edge-1               RFC 1123 name, at most 64 characters, dots allowed;
 *                                  default: meta-data's local-hostname, else "gatehouse"
 *   gatehouse: {...}               mapping -> /etc/gatehouse/config.yaml (re-emitted as YAML)
 *   write_files:                   list of {path, content, encoding, permissions, owner, defer}
 *     - path: /etc/gatehouse/kubeconfig
 *       content: ...               default ""
 *       encoding: b64              absent/text/plain, or b64/base64; gzip is refused
 *       permissions: '0600'        octal string (or a YAML octal integer), default 0644,
 *                                  at most 0777 (no setuid/setgid/sticky)
 *       owner: root:root           only root (the appliance has no other users)
 *   network:                       absent = DHCP on the first non-loopback interface
 *     dhcp: true|false             false without address = loopback only
 *     interface: eth0              default: the first non-loopback interface
 *     address: 192.0.2.10/24       static (IPv4 or IPv6 CIDR); excludes dhcp: true
 *     gateway: 192.0.2.1           optional, same family as address
 *     dns: [192.0.2.53]            optional, a string or a list of up to 3 addresses
 *
 * Paths write_files may write (the allow-list; why: everything else is the image's, and a
 * user-data that could replace /bin or /etc/s6 would bypass the image's guarantees):
 *   /etc/gatehouse/...             node config and files it names (kubeconfig, keys)
 *   /var/lib/gatehouse/...         persistent state (routes seed, TLS material), except
 *                                  /var/lib/gatehouse/cloud-config/ which holds last-good
 *   /etc/hosts                     extra static names
 * Paths must be absolute and normalised (no "..", ".", "//", trailing "/"). Files are written
 * with temp + rename, so a symlink at the path is replaced, never followed.
 */
#ifndef GATEHOUSE_CLOUD_CONFIG_H
#define GATEHOUSE_CLOUD_CONFIG_H

#include <stddef.h>
#include <sys/types.h>

#define CC_CONFIG_PATH "/etc/gatehouse/config.yaml"
#define CC_HOSTNAME_MAX 64
#define CC_DNS_MAX 3

struct cc_file {
    char *path;
    unsigned char *data;
    size_t len;
    mode_t mode;
};

enum cc_net_mode { CC_NET_DHCP, CC_NET_STATIC, CC_NET_NONE };

struct cc_network {
    enum cc_net_mode mode;
    char interface[16];         /* "" = first non-loopback interface */
    char address[64];           /* static: "ADDR/PREFIX" */
    char gateway[48];           /* "" = none */
    char dns[CC_DNS_MAX][48];
    int ndns;
};

struct cc_plan {
    char hostname[CC_HOSTNAME_MAX + 1];     /* "" = not given */
    struct cc_file *files;                  /* the gatehouse: config first, then write_files */
    size_t nfiles;
    struct cc_network net;
};

enum cc_status {
    CC_OK,          /* a #cloud-config that passed every check: plan filled in */
    CC_IGNORED,     /* not #cloud-config (or empty): nothing to apply, message says why */
    CC_INVALID,     /* bad YAML or a refused value: message has line/column or the key */
    CC_ABSENT,      /* no cidata volume or no user-data file (set by the caller) */
};

/* Sets *plan to the defaults (no hostname, no files, DHCP). */
void cloud_config_plan_init(struct cc_plan *plan);
void cloud_config_plan_free(struct cc_plan *plan);

/* Parses user-data. On CC_OK the plan holds what to apply; otherwise the plan is left at its
 * defaults and msg says why ("line 3, column 5: ..." for YAML errors). */
enum cc_status cloud_config_parse(const char *data, size_t len, struct cc_plan *plan,
                                  char *msg, size_t msglen);

/* The NoCloud meta-data file's local-hostname, the host name when user-data has none. Returns 1
 * with name filled in when the file parses and holds a valid one, else 0. */
int cloud_config_meta_hostname(const char *data, size_t len, char name[CC_HOSTNAME_MAX + 1]);

/* Checks one piece of user-data on its own (exposed for the tests). Return 1 when accepted. */
int cloud_config_hostname_ok(const char *name);
int cloud_config_path_allowed(const char *path);

/* What to apply, given how the current user-data parsed and whether a stored last-good copy
 * parses. Only a current CC_OK is stored as the new last-good (*store_current set). Bad,
 * ignored or absent user-data falls back to last-good, so a node rebooted without its cidata
 * volume, or with a broken one, keeps the configuration it had. */
enum cc_choice { CC_APPLY_CURRENT, CC_APPLY_LAST_GOOD, CC_APPLY_NOTHING };
enum cc_choice cloud_config_choose(enum cc_status current, int last_good_ok, int *store_current);
const char *cloud_config_choice_name(enum cc_choice choice);

/* The network plan as shell variable assignments for the s6 oneshot that applies it
 * (NET_MODE=dhcp|static|none, NET_INTERFACE, NET_ADDRESS, NET_GATEWAY, NET_DNS space-separated).
 * Values are validated, so the file can be sourced. Returns a malloc'd string. */
char *cloud_config_network_env(const struct cc_network *net);

/* Writes data to root + path (root "" on the appliance): parent folders are made (0755),
 * the file is written to a temp name, fsynced, chmod'ed and renamed over path. -1 with err. */
int cloud_config_write_file(const char *root, const char *path, const unsigned char *data,
                            size_t len, mode_t mode, char *err, size_t errlen);

/* Looks for KEY or KEY=VALUE in a kernel command line. Returns 1 and copies the value ("" for a
 * bare KEY) when found, 0 otherwise. The last occurrence wins, as with the kernel's own. */
int cmdline_get(const char *cmdline, const char *key, char *value, size_t valuesize);
/* True for a bare KEY and for 1/y/yes/true/on. */
int cmdline_flag(const char *cmdline, const char *key);

#endif
